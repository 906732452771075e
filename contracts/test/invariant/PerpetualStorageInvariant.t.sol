// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {PerpetualStorage} from "../../src/PerpetualStorage.sol";
import {FilAddress} from "../../src/lib/FilAddress.sol";
import {MarketSimulator} from "../../src/sim/MarketSimulator.sol";
import {FilecoinTest} from "../utils/FilecoinTest.sol";
import {CommonBase} from "forge-std/Base.sol";
import {StdCheats} from "forge-std/StdCheats.sol";
import {StdUtils} from "forge-std/StdUtils.sol";

/// Drives PerpetualStorage through clients, providers, keepers and the market, keeping ghost
/// sums of every wei in and out.
contract PerpetualStorageHandler is CommonBase, StdCheats, StdUtils {
    PerpetualStorage internal immutable ps;
    MarketSimulator internal immutable market;
    bytes internal piece;
    bytes internal payload;

    address[2] public clients = [address(0xC1), address(0xC2)];
    address[2] public claimants = [address(0x51), address(0x52)];
    address public constant KEEPER = address(0x4EE9);
    uint64[4] public providers = [uint64(1001), 1002, 1003, 1004];

    uint256 public depositedByClients;
    uint256 public withdrawnByClients;
    uint256 public paidToProviders;
    uint256 public bondsIn;
    /// Bonds of claims that expired: they go to the orders, so clients may get them back.
    uint256 public bondsForfeited;
    mapping(uint64 dealId => uint256) public publishes;
    uint64[] public dealIds;

    constructor(PerpetualStorage ps_, MarketSimulator market_, bytes memory piece_, bytes memory payload_) {
        ps = ps_;
        market = market_;
        piece = piece_;
        payload = payload_;
    }

    function orderId(uint256 seed) internal view returns (uint256) {
        uint256 n = ps.orderCount();
        return n == 0 ? 0 : 1 + seed % n;
    }

    function createOrder(uint256 clientSeed, uint96 funding, uint8 replicas, uint96 bounty) external {
        address client = clients[clientSeed % 2];
        funding = uint96(bound(funding, 0, 20 ether));
        PerpetualStorage.OrderParams memory p;
        p.pieceCid = piece;
        p.payloadCid = payload;
        p.paddedSize = 1 << 20;
        p.replicas = uint16(bound(replicas, 1, 3));
        p.bounty = uint96(bound(bounty, 0.01 ether, 2 ether));
        p.term = 1000;
        vm.deal(client, funding);
        vm.prank(client);
        ps.createOrder{value: funding}(p);
        depositedByClients += funding;
    }

    function fund(uint256 seed, uint96 amount) external {
        uint256 id = orderId(seed);
        if (id == 0 || ps.getOrder(id).cancelled) return;
        amount = uint96(bound(amount, 0, 5 ether));
        address client = ps.getOrder(id).client;
        vm.deal(client, amount);
        vm.prank(client);
        ps.fund{value: amount}(id);
        depositedByClients += amount;
    }

    function claim(uint256 seed, uint256 providerSeed, uint256 claimantSeed) external {
        uint256 id = orderId(seed);
        if (id == 0) return;
        uint64 provider = providers[providerSeed % 4];
        address claimant = claimants[claimantSeed % 2];
        uint96 bond = ps.bondFor(id);
        vm.deal(claimant, bond);
        vm.prank(claimant);
        try ps.claim{value: bond}(id, provider) {
            bondsIn += bond;
        } catch {}
    }

    function publish(uint256 seed, uint256 providerSeed, bool wrongProvider) external {
        uint256 id = orderId(seed);
        if (id == 0) return;
        uint64 provider = providers[providerSeed % 4];
        uint64 dealProvider = wrongProvider ? provider + 100 : provider;
        int64 start = int64(uint64(block.number));
        uint64 dealId = market.publishDeal(piece, 1 << 20, 1, dealProvider, start, start + 1500, false, "");
        market.activate(dealId);
        dealIds.push(dealId);
        try ps.publish(id, provider, dealId) {
            publishes[dealId] += 1;
        } catch {}
    }

    function collect(uint256 seed, uint256 providerSeed) external {
        uint256 id = orderId(seed);
        if (id == 0) return;
        uint64 provider = providers[providerSeed % 4];
        uint256 before = FilAddress.maskedAddress(provider).balance;
        try ps.collect(id, provider) {} catch {}
        paidToProviders += FilAddress.maskedAddress(provider).balance - before;
    }

    function terminate(uint256 dealSeed, bool removeIt) external {
        if (dealIds.length == 0) return;
        uint64 dealId = dealIds[dealSeed % dealIds.length];
        if (removeIt) {
            try market.remove(dealId) {} catch {}
        } else {
            try market.terminate(dealId) {} catch {}
        }
    }

    function reopen(uint256 seed, uint256 providerSeed) external {
        uint256 id = orderId(seed);
        if (id == 0) return;
        uint64 provider = providers[providerSeed % 4];
        uint256 before = FilAddress.maskedAddress(provider).balance;
        PerpetualStorage.Slot memory slot = ps.getSlot(id, provider);
        vm.prank(KEEPER);
        try ps.reopen(id, provider) {
            if (slot.state == PerpetualStorage.SlotState.Claimed) bondsForfeited += ps.bondOf(slot.bounty);
        } catch {}
        paidToProviders += FilAddress.maskedAddress(provider).balance - before;
    }

    function cancel(uint256 seed) external {
        uint256 id = orderId(seed);
        if (id == 0) return;
        vm.prank(ps.getOrder(id).client);
        try ps.cancel(id) {} catch {}
    }

    function withdraw(uint256 seed) external {
        address who = seed % 3 == 0 ? clients[seed % 2] : seed % 3 == 1 ? claimants[seed % 2] : KEEPER;
        uint256 amount = ps.withdrawable(who);
        if (amount == 0) return;
        vm.prank(who);
        ps.withdraw();
        if (who == clients[0] || who == clients[1]) withdrawnByClients += amount;
    }

    function roll(uint16 blocks) external {
        vm.roll(block.number + bound(blocks, 1, 800));
    }

    function dealCount() external view returns (uint256) {
        return dealIds.length;
    }

    /// Every wei the contract should hold: order balances, claimed slots' locked bounties and
    /// bonds, active slots' unpaid bounties, and everything waiting for `withdraw`.
    function owed() external view returns (uint256 total) {
        uint256 n = ps.orderCount();
        for (uint256 id = 1; id <= n; ++id) {
            PerpetualStorage.OrderView memory o = ps.getOrder(id);
            total += o.balance;
            for (uint256 k; k < o.holders.length; ++k) {
                PerpetualStorage.Slot memory s = ps.getSlot(id, o.holders[k]);
                if (s.state == PerpetualStorage.SlotState.Claimed) total += s.bounty + ps.bondOf(s.bounty);
                else total += s.bounty - s.paid;
            }
        }
        for (uint256 k; k < 2; ++k) {
            total += ps.withdrawable(clients[k]) + ps.withdrawable(claimants[k]);
        }
        total += ps.withdrawable(KEEPER);
        for (uint256 k; k < 4; ++k) {
            total += ps.withdrawable(FilAddress.maskedAddress(providers[k]));
        }
    }
}

contract PerpetualStorageInvariantTest is FilecoinTest {
    PerpetualStorage internal ps;
    PerpetualStorageHandler internal handler;

    function setUp() public {
        installMarket();
        vm.roll(10_000);
        ps = new PerpetualStorage(100, 1000, 0.01 ether);
        handler = new PerpetualStorageHandler(ps, market, PIECE, PAYLOAD);
        targetContract(address(handler));
    }

    /// Funds held == order balances + locked bounties and bonds + unpaid bounties + withdrawable.
    function invariant_FundsHeldEqualWhatIsOwed() public view {
        assertEq(address(ps).balance, handler.owed());
    }

    /// Active replicas never exceed the target, and the holder list matches the count.
    function invariant_SlotsInUseWithinTarget() public view {
        uint256 n = ps.orderCount();
        for (uint256 id = 1; id <= n; ++id) {
            PerpetualStorage.OrderView memory o = ps.getOrder(id);
            assertLe(o.inUse, o.replicas);
            assertEq(o.holders.length, o.inUse);
            for (uint256 k; k < o.holders.length; ++k) {
                PerpetualStorage.Slot memory s = ps.getSlot(id, o.holders[k]);
                assertTrue(s.state != PerpetualStorage.SlotState.Open);
                assertLe(s.paid, s.bounty);
            }
        }
    }

    /// No deal backs two slots, so no slot is paid twice for one replica.
    function invariant_NoDealPublishedTwice() public view {
        uint256 n = handler.dealCount();
        for (uint256 k; k < n; ++k) {
            assertLe(handler.publishes(handler.dealIds(k)), 1);
        }
    }

    /// Clients never get back more than they put in, plus the bonds forfeited to their orders.
    function invariant_RefundsNeverExceedDeposits() public view {
        assertLe(handler.withdrawnByClients(), handler.depositedByClients() + handler.bondsForfeited());
    }
}
