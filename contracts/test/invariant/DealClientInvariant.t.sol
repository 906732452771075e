// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {DealClient} from "../../src/DealClient.sol";
import {FilAddress} from "../../src/lib/FilAddress.sol";
import {MarketActor} from "../../src/lib/MarketActor.sol";
import {MarketSimulator} from "../../src/sim/MarketSimulator.sol";
import {MinerActorSimulator} from "../../src/sim/MinerActorSimulator.sol";
import {FilecoinTest} from "../utils/FilecoinTest.sol";
import {CommonBase} from "forge-std/Base.sol";
import {StdUtils} from "forge-std/StdUtils.sol";

/// The oracle proposes (priced or free, named or open to any provider), storage providers
/// publish through the simulated market (sometimes the same proposal twice in a batch), deals
/// are activated and settled, the owner moves escrow in and out, and anyone forges calls.
contract DealClientHandler is CommonBase, StdUtils {
    DealClient internal immutable dc;
    MarketSimulator internal immutable market;
    address internal immutable owner;
    bytes internal piece;
    uint64[3] internal methods =
        [MarketActor.AUTHENTICATE_MESSAGE, MarketActor.MARKET_NOTIFY_DEAL, MarketActor.DATACAP_RECEIVER_HOOK];
    uint64[3] public miners = [uint64(1001), 1002, 1003];
    address[3] public controllers = [address(0x51), address(0x52), address(0x53)];

    uint256 public acceptedFromOthers;
    uint256 public deposited;
    uint256 public withdrawn;
    /// What the market moved from the contract's escrow to providers.
    uint256 public paidToProviders;
    bytes32[] public ids;
    uint64[] internal dealIds;

    constructor(DealClient dc_, MarketSimulator market_, bytes memory piece_, address owner_) {
        dc = dc_;
        market = market_;
        piece = piece_;
        owner = owner_;
    }

    function forge(address sender, uint8 methodSeed, bytes calldata params, uint256 idSeed, bool realProposal)
        external
    {
        if (sender == MarketActor.ETH_ADDRESS || sender == address((uint160(0xff) << 152) | 7)) return;
        (bool masked,) = FilAddress.idOfMasked(sender);
        if (masked) return; // miners' notifications are exercised through `activate`
        bytes memory p = params;
        if (realProposal && ids.length > 0) {
            bytes memory proposal = dc.getDealProposal(ids[idSeed % ids.length]);
            p = abi.encodePacked(hex"8242dead", bytes1(0x59), uint16(proposal.length), proposal);
        }
        vm.prank(sender);
        (bool ok,) = address(dc)
            .call(abi.encodeCall(DealClient.handle_filecoin_method, (methods[methodSeed % 3], 0x51, p)));
        if (ok) acceptedFromOthers += 1;
    }

    function propose(uint64 delay, uint8 providerSeed, bool priced, uint8 replicas, uint256 salt) external {
        DealClient.DealRequest memory r;
        r.pieceCid = piece;
        r.pieceSize = 1 << 20;
        r.label = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy";
        r.startEpoch = int64(uint64(block.number + bound(delay, 10, 500)));
        r.endEpoch = r.startEpoch + 300 + int64(uint64(salt % 1000));
        r.providerCollateral = uint256(r.pieceSize) * 1e5;
        if (priced) r.storagePricePerEpoch = 1 gwei;
        uint256 p = providerSeed % 4;
        r.provider = p == 3 ? 0 : miners[p];
        r.replicas = p == 3 ? uint16(bound(replicas, 1, 3)) : 1;
        r.locationRef = "https://estuary.example/car";
        r.carSize = 1_000_000;
        vm.prank(owner);
        try dc.makeDealProposal(r) returns (bytes32 id) {
            ids.push(id);
        } catch {}
    }

    /// A provider publishes a proposal, once or twice in the same batch.
    function publish(uint256 idSeed, uint8 minerSeed, bool twice) external {
        if (ids.length == 0) return;
        uint256 m = minerSeed % 3;
        bytes memory p = market.withProvider(dc.getDealProposal(ids[idSeed % ids.length]), miners[m]);
        MarketSimulator.ClientDealProposal[] memory batch =
            new MarketSimulator.ClientDealProposal[](twice ? 2 : 1);
        for (uint256 k; k < batch.length; ++k) {
            batch[k] = MarketSimulator.ClientDealProposal(p, hex"dead");
        }
        vm.prank(controllers[m]);
        try market.publishStorageDeals(batch) returns (uint64[] memory newIds, uint256) {
            for (uint256 k; k < newIds.length; ++k) {
                dealIds.push(newIds[k]);
            }
        } catch {}
    }

    /// A provider proves a sector with a deal, notifying the market and the client.
    function activate(uint256 dealSeed) external {
        if (dealIds.length == 0) return;
        uint64 dealId = dealIds[dealSeed % dealIds.length];
        MarketSimulator.SimDeal memory d = market.deal(dealId);
        if (d.removed || d.activated >= 0) return;
        uint256 m = d.provider - 1001;
        MinerActorSimulator.SectorActivation[] memory s = new MinerActorSimulator.SectorActivation[](1);
        s[0].sector = dealId;
        s[0].expiration = type(int64).max;
        s[0].pieces = new MinerActorSimulator.PieceActivation[](1);
        s[0].pieces[0].pieceCid = d.pieceCid;
        s[0].pieces[0].size = d.pieceSize;
        s[0].pieces[0].notify = new MinerActorSimulator.Notification[](2);
        bytes memory payload = abi.encodePacked(bytes1(0x1b), dealId); // CBOR uint, 8-byte form
        s[0].pieces[0].notify[0] = MinerActorSimulator.Notification(hex"0005", payload);
        s[0].pieces[0].notify[1] =
            MinerActorSimulator.Notification(FilAddress.delegatedAddress(address(dc)), payload);
        vm.prank(controllers[m]);
        MinerActorSimulator(payable(FilAddress.maskedAddress(d.provider))).proveCommitSectors3(s, false);
    }

    /// The market's cron settles a deal: priced deals move escrow to the provider.
    function settle(uint256 dealSeed) external {
        if (dealIds.length == 0) return;
        uint64[] memory one = new uint64[](1);
        one[0] = dealIds[dealSeed % dealIds.length];
        uint64 self = market.actorIdOf(address(dc));
        (uint256 before,) = market.escrowOf(self);
        market.settleDealPayments(one);
        (uint256 afterwards,) = market.escrowOf(self);
        paidToProviders += before - afterwards;
    }

    function cancel(uint256 idSeed) external {
        if (ids.length == 0) return;
        vm.prank(owner);
        try dc.cancelDealProposal(ids[idSeed % ids.length]) {} catch {}
    }

    function addEscrow(uint96 amount) external {
        amount = uint96(bound(amount, 1, 5 ether));
        vm.deal(address(dc), address(dc).balance + amount);
        deposited += amount;
        vm.prank(owner);
        dc.addMarketBalance(amount);
    }

    function withdrawEscrow(uint96 amount) external {
        vm.prank(owner);
        try dc.withdrawMarketBalance(bound(amount, 0, 5 ether)) {} catch {}
    }

    function withdraw(uint96 amount) external {
        amount = uint96(bound(amount, 0, address(dc).balance));
        vm.prank(owner);
        dc.withdraw(payable(address(0x7EA5)), amount);
        withdrawn += amount;
    }

    function roll(uint16 blocks) external {
        vm.roll(block.number + bound(blocks, 1, 300));
    }

    function count() external view returns (uint256) {
        return ids.length;
    }
}

contract DealClientInvariantTest is FilecoinTest {
    DealClient internal dc;
    DealClientHandler internal handler;
    address internal constant OWNER = address(0x0A);

    function setUp() public {
        installMarket();
        useDevPolicy();
        vm.roll(10_000);
        dc = new DealClient(
            OWNER,
            codec,
            DealClient.DealPolicy({
                minDuration: 300,
                maxDuration: 3_680_640,
                minStartDelay: 10,
                maxEndDelay: 3_680_640,
                minProviderCollateralPerByte: 1e5,
                acceptDirect: true
            })
        );
        handler = new DealClientHandler(dc, market, PIECE, OWNER);
        for (uint256 k; k < 3; ++k) {
            createMiner(handler.miners(k), handler.controllers(k));
        }
        targetContract(address(handler));
    }

    /// `handle_filecoin_method` accepts nothing that did not come from the market (or, for the
    /// receiver hook, the DataCap actor; or, for SectorContentChanged, a miner actor).
    function invariant_AcceptsOnlyTheActors() public view {
        assertEq(handler.acceptedFromOthers(), 0);
    }

    /// Each proposal has at most `replicas` deals, each from a different provider (two identical
    /// proposals in a batch never both count).
    function invariant_OneDealPerProposalAndReplica() public view {
        uint256 n = handler.count();
        for (uint256 k; k < n; ++k) {
            DealClient.ProposalView memory v = dc.getProposal(handler.ids(k));
            assertLe(v.deals.length, v.request.replicas);
            for (uint256 i; i < v.deals.length; ++i) {
                for (uint256 j = i + 1; j < v.deals.length; ++j) {
                    assertTrue(v.deals[i].provider != v.deals[j].provider);
                }
            }
        }
    }

    /// Funds held (the contract's balance and its market escrow) == what was deposited, less
    /// what the owner took out and what the market paid providers for the contract's deals; the
    /// escrow promised to open replicas is free escrow.
    function invariant_FundsHeldEqualDepositsLessPayments() public view {
        (uint256 balance, uint256 locked) = market.escrowOf(market.actorIdOf(address(dc)));
        assertEq(
            address(dc).balance + balance,
            handler.deposited() - handler.withdrawn() - handler.paidToProviders()
        );
        assertLe(locked + dc.reservedEscrow(), balance);
    }
}
