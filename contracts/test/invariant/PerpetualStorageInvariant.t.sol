// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {PerpetualStorage} from "../../src/PerpetualStorage.sol";
import {FilAddress} from "../../src/lib/FilAddress.sol";
import {MarketSimulator} from "../../src/sim/MarketSimulator.sol";
import {MinerActorSimulator} from "../../src/sim/MinerActorSimulator.sol";
import {FilecoinTest} from "../utils/FilecoinTest.sol";
import {CommonBase} from "forge-std/Base.sol";
import {StdCheats} from "forge-std/StdCheats.sol";
import {StdUtils} from "forge-std/StdUtils.sol";
import {Vm} from "forge-std/Vm.sol";

/// Drives PerpetualStorage through clients, storage providers (each the controller of its own
/// miner, publishing the offered deals through the simulated market and proving them), keepers
/// and the market's own life (terminations, settlement), keeping ghost records of every wei and
/// every epoch.
contract PerpetualStorageHandler is CommonBase, StdCheats, StdUtils {
    PerpetualStorage internal immutable ps;
    MarketSimulator internal immutable market;
    bytes internal piece;
    bytes internal payload;
    uint256 internal immutable collateral;

    address[2] public clients = [address(0xC1), address(0xC2)];
    address public constant KEEPER = address(0x4EE9);
    uint64[4] public miners = [uint64(1001), 1002, 1003, 1004];
    address[4] public controllers = [address(0x51), address(0x52), address(0x53), address(0x54)];

    uint256 public depositedByClients;
    uint256 public withdrawnByClients;
    uint256 public bondsForfeited;
    /// Bounty and bonds settled to miners (BountyPaid + BondReturned), and what reached them.
    uint256 public bountySettled;
    uint256 public bondsReturned;
    uint256 public minerReceived;
    /// A bounty paid for epochs past the last its deal was live (must stay 0).
    uint256 public overpaid;
    /// Replicas started (`publish` succeeded), terminated deals: how deep the runs went.
    uint256 public started;
    uint256 public terminations;
    /// Replicas the clients marked lost, and the loss fees their miners kept.
    uint256 public lost;
    uint256 public lossFees;
    /// Deals bound to slots, and how many times each was.
    mapping(uint64 dealId => uint256) public bindings;
    uint64[] public boundDeals;
    /// Whether a claim ever left an order with more slots in use than its target.
    bool public claimedPastTarget;
    /// Slots claimed so far (order, miner index), for the next steps to pick from.
    uint256[] internal claimedOrders;
    uint256[] internal claimedMiners;
    /// When the handler terminated a deal (its sector), or 0.
    mapping(uint64 dealId => uint256) public terminatedAt;

    constructor(
        PerpetualStorage ps_,
        MarketSimulator market_,
        bytes memory piece_,
        bytes memory payload_,
        uint256 c
    ) {
        ps = ps_;
        market = market_;
        piece = piece_;
        payload = payload_;
        collateral = c;
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
        p.carSize = 1_000_000;
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

    /// A provider claims for its miner, or (`wrongCaller`) someone claims for another's miner.
    function claim(uint256 seed, uint256 minerSeed, bool wrongCaller) external {
        uint256 id = orderId(seed);
        if (id == 0) return;
        uint256 m = minerSeed % 4;
        address who = wrongCaller ? controllers[(m + 1) % 4] : controllers[m];
        uint96 bond = ps.bondFor(id);
        vm.deal(who, bond);
        vm.prank(who);
        try ps.claim{value: bond}(id, miners[m], collateral) {
            claimedOrders.push(id);
            claimedMiners.push(m);
            PerpetualStorage.OrderView memory o = ps.getOrder(id);
            if (o.inUse > o.replicas) claimedPastTarget = true;
        } catch {}
    }

    /// The order's client changes its replica target, below the slots in use too (a renewal's
    /// lowering).
    function setTarget(uint256 seed, uint8 replicas) external {
        uint256 id = orderId(seed);
        if (id == 0 || ps.getOrder(id).cancelled) return;
        vm.prank(ps.getOrder(id).client);
        ps.setReplicaTarget(id, uint16(bound(replicas, 1, 4)));
    }

    /// Picks a slot claimed once (it may have moved on since).
    function pick(uint256 seed) internal view returns (bool ok, uint256 id, uint256 m) {
        uint256 n = claimedOrders.length;
        if (n == 0) return (false, 0, 0);
        uint256 k = seed % n;
        return (true, claimedOrders[k], claimedMiners[k]);
    }

    /// Moves a claimed slot on: publishes its deal, proves it, and `publish`es the replica.
    function progress(uint256 seed, uint8 steps) external {
        (bool ok, uint256 id, uint256 m) = pick(seed);
        if (!ok) return;
        uint256 n = bound(steps, 1, 3);
        this.publishDeal(id, m);
        if (n > 1) this.activate(id, m);
        if (n > 2) this.publish(id, m);
    }

    /// The provider publishes its claimed slot's offered deal (PublishStorageDeals).
    function publishDeal(uint256 id, uint256 m) external {
        if (msg.sender != address(this)) return;
        PerpetualStorage.SlotView memory s = ps.getSlot(id, miners[m]);
        if (s.state != PerpetualStorage.SlotState.Claimed || block.number > s.deadline) return;
        bytes32 proposalId =
            bytes32((id << 192) | (uint256(miners[m]) << 128) | (uint256(s.deadline) << 88) | collateral);
        MarketSimulator.ClientDealProposal[] memory batch = new MarketSimulator.ClientDealProposal[](1);
        batch[0] = MarketSimulator.ClientDealProposal(ps.getDealProposal(proposalId), hex"dead");
        vm.recordLogs();
        vm.prank(controllers[m]);
        market.publishStorageDeals(batch);
        countEvents(vm.getRecordedLogs());
    }

    /// The provider proves the sector holding the deal of a dealt slot.
    function activate(uint256 id, uint256 m) external {
        if (msg.sender != address(this)) return;
        PerpetualStorage.SlotView memory s = ps.getSlot(id, miners[m]);
        if (s.state != PerpetualStorage.SlotState.Dealt) return;
        uint64[] memory ids = new uint64[](1);
        ids[0] = s.dealId;
        vm.prank(controllers[m]);
        MinerActorSimulator(payable(FilAddress.maskedAddress(miners[m])))
            .activateDeals(s.dealId, type(int64).max, ids);
    }

    function publish(uint256 id, uint256 m) external {
        if (msg.sender != address(this)) return;
        vm.recordLogs();
        try ps.publish(id, miners[m]) {
            started += 1;
        } catch {}
        countEvents(vm.getRecordedLogs());
    }

    function collect(uint256 seed) external {
        (bool ok, uint256 id, uint256 m) = pick(seed);
        if (!ok) return;
        currentDeal = ps.getSlot(id, miners[m]).dealId;
        vm.recordLogs();
        try ps.collect(id, miners[m]) {} catch {}
        countEvents(vm.getRecordedLogs());
    }

    /// The provider terminates the sector of an active slot's deal (removed at once).
    function terminate(uint256 seed) external {
        (bool ok, uint256 id, uint256 m) = pick(seed);
        if (!ok) return;
        PerpetualStorage.SlotView memory s = ps.getSlot(id, miners[m]);
        if (s.state != PerpetualStorage.SlotState.Active && s.state != PerpetualStorage.SlotState.Dealt) {
            return;
        }
        MarketSimulator.SimDeal memory d = market.deal(s.dealId);
        if (d.removed || d.activated < 0 || int256(block.number) >= d.end) return;
        uint64[] memory sectors = new uint64[](1);
        sectors[0] = d.sector;
        vm.prank(controllers[m]);
        MinerActorSimulator(payable(FilAddress.maskedAddress(miners[m]))).terminateSectors(sectors);
        if (terminatedAt[s.dealId] == 0) terminatedAt[s.dealId] = block.number;
        terminations += 1;
        // Let epochs pass unobserved, as they do on chain between keepers' visits.
        vm.roll(block.number + 1 + seed % 50);
    }

    /// The market's cron settles a slot's deal (removing it once ended or timed out).
    function settle(uint256 seed) external {
        (bool ok, uint256 id, uint256 m) = pick(seed);
        if (!ok) return;
        PerpetualStorage.SlotView memory s = ps.getSlot(id, miners[m]);
        if (s.state == PerpetualStorage.SlotState.Open || s.state == PerpetualStorage.SlotState.Claimed) {
            return;
        }
        uint64[] memory ids = new uint64[](1);
        ids[0] = s.dealId;
        market.settleDealPayments(ids);
    }

    function reopen(uint256 seed) external {
        (bool ok, uint256 id, uint256 m) = pick(seed);
        if (!ok) return;
        uint64 miner = miners[m];
        PerpetualStorage.SlotView memory slot = ps.getSlot(id, miner);
        currentDeal = slot.dealId;
        vm.recordLogs();
        vm.prank(KEEPER);
        try ps.reopen(id, miner) {
            if (
                slot.state == PerpetualStorage.SlotState.Claimed
                    || slot.state == PerpetualStorage.SlotState.Dealt
            ) {
                bondsForfeited += slot.bond;
            }
        } catch {}
        countEvents(vm.getRecordedLogs());
    }

    /// The order's client marks a slot's replica lost (as its probes would).
    function markLost(uint256 seed) external {
        (bool ok, uint256 id, uint256 m) = pick(seed);
        if (!ok) return;
        currentDeal = ps.getSlot(id, miners[m]).dealId;
        vm.recordLogs();
        vm.prank(ps.getOrder(id).client);
        try ps.markLost(id, miners[m]) {
            lost += 1;
        } catch {}
        countEvents(vm.getRecordedLogs());
    }

    function cancel(uint256 seed) external {
        uint256 id = orderId(seed);
        if (id == 0) return;
        vm.prank(ps.getOrder(id).client);
        try ps.cancel(id) {} catch {}
    }

    function withdraw(uint256 seed) external {
        address who = seed % 3 == 0 ? clients[seed % 2] : seed % 3 == 1 ? controllers[seed % 4] : KEEPER;
        uint256 amount = ps.withdrawable(who);
        if (amount == 0) return;
        vm.prank(who);
        ps.withdraw();
        if (who == clients[0] || who == clients[1]) withdrawnByClients += amount;
    }

    function roll(uint16 blocks) external {
        vm.roll(block.number + bound(blocks, 1, 400));
    }

    /// The deal of the slot the current call settles (read before the call: `reopen` deletes it).
    uint64 internal currentDeal;

    /// Books the payment events of a call and checks each bounty against the deal's life.
    function countEvents(Vm.Log[] memory logs) internal {
        for (uint256 i; i < logs.length; ++i) {
            if (logs[i].emitter != address(ps)) continue;
            bytes32 topic = logs[i].topics[0];
            if (topic == PerpetualStorage.BountyPaid.selector) {
                (uint256 amount, uint64 until) = abi.decode(logs[i].data, (uint256, uint64));
                bountySettled += amount;
                uint256 ended = terminatedAt[currentDeal];
                if (ended != 0 && until > ended) overpaid += 1;
            } else if (topic == PerpetualStorage.SlotLost.selector) {
                (, uint256 fee) = abi.decode(logs[i].data, (address, uint256));
                lossFees += fee;
            } else if (topic == PerpetualStorage.BondReturned.selector) {
                bondsReturned += abi.decode(logs[i].data, (uint256));
            } else if (topic == PerpetualStorage.MinerPaid.selector) {
                minerReceived += abi.decode(logs[i].data, (uint256));
            } else if (topic == PerpetualStorage.SlotDealPublished.selector) {
                uint64 dealId = uint64(uint256(logs[i].topics[3]));
                if (bindings[dealId] == 0) boundDeals.push(dealId);
                bindings[dealId] += 1;
            }
        }
    }

    function boundCount() external view returns (uint256) {
        return boundDeals.length;
    }

    /// Every wei the contract owes: order balances, claimed and dealt slots' bounties and bonds,
    /// active slots' unpaid bounties, everything waiting for `withdraw`, and deferred miner
    /// payments.
    function owed() external view returns (uint256 total) {
        uint256 n = ps.orderCount();
        for (uint256 id = 1; id <= n; ++id) {
            PerpetualStorage.OrderView memory o = ps.getOrder(id);
            total += o.balance;
            for (uint256 k; k < o.holders.length; ++k) {
                PerpetualStorage.SlotView memory s = ps.getSlot(id, o.holders[k]);
                if (s.state == PerpetualStorage.SlotState.Active) total += s.bounty - s.paid;
                else total += s.bounty + s.bond;
            }
        }
        for (uint256 k; k < 2; ++k) {
            total += ps.withdrawable(clients[k]);
        }
        for (uint256 k; k < 4; ++k) {
            total += ps.withdrawable(controllers[k]) + ps.minerOwed(miners[k]);
        }
        total += ps.withdrawable(KEEPER);
    }

    /// What the miner actors hold (they only ever receive from PerpetualStorage here).
    function minerBalances() external view returns (uint256 total) {
        for (uint256 k; k < 4; ++k) {
            total += FilAddress.maskedAddress(miners[k]).balance;
        }
    }

    function minersOwed() external view returns (uint256 total) {
        for (uint256 k; k < 4; ++k) {
            total += ps.minerOwed(miners[k]);
        }
    }
}

contract PerpetualStorageInvariantTest is FilecoinTest {
    PerpetualStorage internal ps;
    PerpetualStorageHandler internal handler;

    function setUp() public {
        installMarket();
        useDevPolicy();
        vm.roll(10_000);
        ps = new PerpetualStorage(codec, 100, 1000, 3_000_000, 0.01 ether);
        handler =
            new PerpetualStorageHandler(ps, market, PIECE, PAYLOAD, market.minProviderCollateral(PIECE_SIZE));
        for (uint256 k; k < 4; ++k) {
            createMiner(handler.miners(k), handler.controllers(k));
        }
        targetContract(address(handler));
        // The steps `progress` chains are not called on their own.
        bytes4[] memory selectors = new bytes4[](3);
        selectors[0] = PerpetualStorageHandler.publishDeal.selector;
        selectors[1] = PerpetualStorageHandler.activate.selector;
        selectors[2] = PerpetualStorageHandler.publish.selector;
        excludeSelector(FuzzSelector(address(handler), selectors));
    }

    /// Funds held == order balances + locked bounties and bonds + unpaid bounties + withdrawable
    /// + payments owed to miners.
    function invariant_FundsHeldEqualWhatIsOwed() public view {
        assertEq(address(ps).balance, handler.owed());
    }

    /// No epoch is paid that no live deal covered: no bounty settled past its deal's termination.
    function invariant_NoEpochPaidWithoutALiveDeal() public view {
        assertEq(handler.overpaid(), 0);
    }

    /// Every bounty and bond paid out reaches a miner actor, or waits for it in `minerOwed`.
    function invariant_EveryPaymentReachesAMiner() public view {
        assertEq(
            handler.bountySettled() + handler.bondsReturned() + handler.lossFees(),
            handler.minerReceived() + handler.minersOwed()
        );
        assertEq(handler.minerBalances(), handler.minerReceived());
    }

    /// No deal backs two slots.
    function invariant_NoDealBacksTwoSlots() public view {
        uint256 n = handler.boundCount();
        for (uint256 k; k < n; ++k) {
            assertEq(handler.bindings(handler.boundDeals(k)), 1);
        }
    }

    /// No claim takes a slot past the target (a target lowered below the slots in use leaves
    /// them more, until they are vacated), active ones never exceed those in use, and the
    /// holder list matches the count.
    function invariant_SlotsInUseWithinTarget() public view {
        assertFalse(handler.claimedPastTarget(), "a claim took a slot past the target");
        uint256 n = ps.orderCount();
        for (uint256 id = 1; id <= n; ++id) {
            PerpetualStorage.OrderView memory o = ps.getOrder(id);
            assertLe(o.active, o.inUse);
            assertEq(o.holders.length, o.inUse);
            for (uint256 k; k < o.holders.length; ++k) {
                PerpetualStorage.SlotView memory s = ps.getSlot(id, o.holders[k]);
                assertTrue(s.state != PerpetualStorage.SlotState.Open);
                assertLe(s.paid, s.bounty);
                assertFalse(ps.excluded(id, o.holders[k]), "a provider marked lost holds no slot");
            }
        }
    }

    /// Clients never get back more than they put in, plus the bonds forfeited to their orders.
    function invariant_RefundsNeverExceedDeposits() public view {
        assertLe(handler.withdrawnByClients(), handler.depositedByClients() + handler.bondsForfeited());
    }
}
