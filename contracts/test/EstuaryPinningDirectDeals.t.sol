// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {DealClient} from "../src/DealClient.sol";
import {EstuaryPinning} from "../src/EstuaryPinning.sol";
import {FilAddress} from "../src/lib/FilAddress.sol";
import {Operated} from "../src/lib/Operated.sol";
import {PoDSI} from "../src/lib/PoDSI.sol";
import {MinerActorSimulator} from "../src/sim/MinerActorSimulator.sol";
import {PinnedPieces} from "./utils/PinnedPieces.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {Vm} from "forge-std/Test.sol";

/// A client the owner could trust by mistake: it answers `getProposal` with whatever it is
/// given, so `EstuaryPinning`'s own checks of a record can be tried.
contract FakeDealClient {
    DealClient.ProposalView internal view_;

    function set(DealClient.ProposalView memory v) external {
        view_.request = v.request;
        delete view_.deals;
        for (uint256 k; k < v.deals.length; ++k) {
            view_.deals.push(v.deals[k]);
        }
    }

    function getProposal(bytes32) external view returns (DealClient.ProposalView memory) {
        return view_;
    }
}

/// `reportDirectDeal`: deals made without the market (Curio DDO) for a `DealClient` proposal,
/// activated through the simulated miner actor's `ProveCommitSectors3` notification as Curio's
/// sectors are, and the pins in them proven with the proofs `crates/piece` makes.
contract EstuaryPinningDirectDealsTest is PinnedPieces {
    DealClient internal dc;
    address internal constant SP = address(0x5B1);
    address internal constant SP2 = address(0x5B2);
    uint64 internal constant MINER = 1000;
    uint64 internal constant MINER2 = 1001;
    uint64 internal constant NO_DEAL = type(uint64).max;

    /// A proposal of the fixture's "estuary payloads" aggregate, open to any two miners.
    bytes32 internal proposalId;

    function setUp() public {
        installMarket();
        useDevPolicy();
        vm.roll(1000);
        createMiner(MINER, SP);
        createMiner(MINER2, SP2);
        setUpPinning();
        dc = new DealClient(OWNER, codec, policy());
        vm.startPrank(OWNER);
        pinning.setDealClient(address(dc), true);
        dc.setOperator(ORACLE, true);
        vm.stopPrank();
        vm.prank(ORACLE);
        proposalId = dc.makeDealProposal(request());
    }

    function policy() internal pure returns (DealClient.DealPolicy memory) {
        return DealClient.DealPolicy({
            minDuration: 300,
            maxDuration: 3_680_640,
            minStartDelay: 10,
            maxEndDelay: 3_680_640,
            minProviderCollateralPerByte: 0,
            acceptDirect: true
        });
    }

    function request() internal view returns (DealClient.DealRequest memory r) {
        r.pieceCid = PoDSI.pieceCidOf(cases[payloads].commPa);
        r.pieceSize = cases[payloads].sizePa;
        r.label = PAYLOAD_TEXT;
        r.startEpoch = int64(uint64(block.number)) + 100;
        r.endEpoch = r.startEpoch + 1000;
        r.replicas = 2;
        r.locationRef = "https://estuary.example/piece/1";
        r.carSize = 7 << 20;
    }

    // ------------------------------------------------------------------ helpers

    /// `miner` seals the proposal's piece and, proving the sector, notifies the client with the
    /// proposal id (a deal made without the market).
    function activateDirect(uint64 miner, address controller) internal {
        activateDirect(miner, controller, proposalId);
    }

    function activateDirect(uint64 miner, address controller, bytes32 id) internal {
        MinerActorSimulator.SectorActivation[] memory s = new MinerActorSimulator.SectorActivation[](1);
        s[0].sector = 9;
        s[0].expiration = request().endEpoch + 10; // past the renewal's end too
        s[0].pieces = new MinerActorSimulator.PieceActivation[](1);
        s[0].pieces[0].pieceCid = request().pieceCid;
        s[0].pieces[0].size = cases[payloads].sizePa;
        s[0].pieces[0].notify = new MinerActorSimulator.Notification[](1);
        s[0].pieces[0].notify[0] =
            MinerActorSimulator.Notification(FilAddress.delegatedAddress(address(dc)), abi.encodePacked(id));
        vm.prank(controller);
        assertTrue(minerAt(miner).proveCommitSectors3(s, true)[0], "activated");
    }

    function reportOf(uint64 provider, uint256[] memory ids)
        internal
        view
        returns (EstuaryPinning.DirectDealReport memory r)
    {
        r.client = address(dc);
        r.proposal = proposalId;
        r.provider = provider;
        r.pins = inclusions(payloads, ids);
    }

    /// The next call is refused: `client` records no direct deal of `provider` for the proposal
    /// that counts.
    function expectUnavailable(address client, uint64 provider) internal {
        vm.expectRevert(
            abi.encodeWithSelector(
                EstuaryPinning.EstuaryPinningDirectDealUnavailable.selector, client, proposalId, provider
            )
        );
    }

    function report(EstuaryPinning.DirectDealReport memory r) internal returns (uint256) {
        vm.prank(ORACLE);
        return pinning.reportDirectDeal(r);
    }

    // ------------------------------------------------------------------ proven

    /// Every pin of the direct deal is proven at its offset, as `NO_DEAL` at the provider that
    /// activated it; the request keeps it.
    function test_ReportDirectDeal_ProvesEachPin() public {
        uint256[] memory ids = pinned(payloads, 5);
        activateDirect(MINER, SP);
        for (uint256 k; k < 5; ++k) {
            vm.expectEmit(address(pinning));
            emit EstuaryPinning.DealProven(ids[k], NO_DEAL, MINER, cases[payloads + k].offset);
            vm.expectEmit(address(pinning));
            emit EstuaryPinning.DirectDealProven(ids[k], address(dc), proposalId);
        }
        vm.expectEmit(address(pinning));
        emit EstuaryPinning.DirectDealReported(
            address(dc), proposalId, MINER, ORACLE, cases[payloads].commPa, 8 << 20, 5
        );
        assertEq(report(reportOf(MINER, ids)), 5);
        for (uint256 k; k < 5; ++k) {
            EstuaryPinning.RequestStatus memory s = pinning.getRequest(ids[k]);
            assertTrue(s.pinned && s.dealMade);
            assertEq(s.dealId, NO_DEAL);
            assertEq(s.provider, MINER);
        }
    }

    /// Two providers' direct deals of one proposal are each proven; a report of the direct
    /// deal a request holds last is skipped, another provider's is not.
    function test_ReportDirectDeal_Replicas_AndRepeatsSkipped() public {
        uint256[] memory ids = pinned(payloads, 5);
        activateDirect(MINER, SP);
        activateDirect(MINER2, SP2);
        assertEq(report(reportOf(MINER, ids)), 5);
        vm.recordLogs();
        assertEq(report(reportOf(MINER, ids)), 0, "the same deal again");
        assertEq(vm.getRecordedLogs().length, 1, "only DirectDealReported");
        assertEq(report(reportOf(MINER2, ids)), 5, "another provider's");
        assertEq(pinning.getRequest(ids[0]).provider, MINER2);
        assertEq(report(reportOf(MINER, ids)), 5, "no longer the last one recorded");
    }

    /// A renewal at the same provider (another proposal of the same piece) is another deal:
    /// proven again, and so is the first after it.
    function test_ReportDirectDeal_RenewalAtTheSameProvider() public {
        uint256[] memory ids = pinned(payloads, 5);
        activateDirect(MINER, SP);
        DealClient.DealRequest memory r = request();
        r.endEpoch += 1;
        vm.prank(ORACLE);
        bytes32 renewal = dc.makeDealProposal(r);
        activateDirect(MINER, SP, renewal);
        assertEq(report(reportOf(MINER, ids)), 5);
        EstuaryPinning.DirectDealReport memory again = reportOf(MINER, ids);
        again.proposal = renewal;
        vm.expectEmit(address(pinning));
        emit EstuaryPinning.DirectDealProven(ids[0], address(dc), renewal);
        assertEq(report(again), 5, "the renewal");
        assertEq(report(again), 0, "the renewal again");
        assertEq(report(reportOf(MINER, ids)), 5, "the first, no longer the last recorded");
    }

    // ------------------------------------------------------------------ refused

    /// A cancelled proposal's deal is over for its client (Curio is told `Finalized`): refused.
    function test_ReportDirectDeal_RefusedOnceCancelled() public {
        uint256[] memory ids = pinned(payloads, 5);
        activateDirect(MINER, SP);
        vm.prank(ORACLE);
        dc.cancelDealProposal(proposalId);
        expectUnavailable(address(dc), MINER);
        report(reportOf(MINER, ids));
    }

    /// What `EstuaryPinning` checks itself, whatever a trusted client says: a record of a
    /// market deal is no direct deal, and an ID that is not a miner actor holds no sector.
    function test_ReportDirectDeal_ChecksTheRecordItself() public {
        uint256[] memory ids = pinned(payloads, 5);
        FakeDealClient fake = new FakeDealClient();
        vm.prank(OWNER);
        pinning.setDealClient(address(fake), true);
        DealClient.ProposalView memory v;
        v.request = request();
        v.deals = new DealClient.DealRecord[](2);
        v.deals[0] = DealClient.DealRecord(MINER, 7, int64(uint64(block.number)), 9);
        v.deals[1] = DealClient.DealRecord(5555, NO_DEAL, int64(uint64(block.number)), 9);
        fake.set(v);
        EstuaryPinning.DirectDealReport memory r = reportOf(MINER, ids);
        r.client = address(fake);
        for (uint64 provider = 0; provider < 2; ++provider) {
            r.provider = provider == 0 ? MINER : 5555;
            expectUnavailable(address(fake), r.provider);
            report(r);
        }
        // The same record of a miner's direct deal is taken.
        v.deals[1].provider = MINER2;
        fake.set(v);
        r.provider = MINER2;
        assertEq(report(r), 5);
    }

    /// Only a provider that activated the proposal without the market has a direct deal to
    /// report: any other miner actor id is refused and nothing is recorded.
    function testFuzz_ReportDirectDeal_OnlyTheActivatingProvider(uint64 provider) public {
        vm.assume(provider != MINER);
        uint256[] memory ids = pinned(payloads, 5);
        activateDirect(MINER, SP);
        expectUnavailable(address(dc), provider);
        report(reportOf(provider, ids));
        assertFalse(pinning.getRequest(ids[0]).dealMade);
    }

    function test_ReportDirectDeal_OnlyTheActivatingProvider() public {
        testFuzz_ReportDirectDeal_OnlyTheActivatingProvider(MINER2);
    }

    /// Past the proposal's term the deal is over: refused.
    function test_ReportDirectDeal_RefusedAfterItsTerm() public {
        uint256[] memory ids = pinned(payloads, 5);
        activateDirect(MINER, SP);
        vm.roll(uint64(request().endEpoch));
        expectUnavailable(address(dc), MINER);
        report(reportOf(MINER, ids));
    }

    /// A client the owner does not trust (or no longer trusts) is not asked; an unknown
    /// proposal is refused by the client.
    function test_ReportDirectDeal_UntrustedClientAndUnknownProposal() public {
        uint256[] memory ids = pinned(payloads, 5);
        activateDirect(MINER, SP);
        EstuaryPinning.DirectDealReport memory r = reportOf(MINER, ids);
        r.client = address(0xBAD);
        vm.expectRevert(
            abi.encodeWithSelector(EstuaryPinning.EstuaryPinningUnknownDealClient.selector, r.client)
        );
        report(r);
        vm.expectEmit(address(pinning));
        emit EstuaryPinning.DealClientSet(address(dc), false);
        vm.prank(OWNER);
        pinning.setDealClient(address(dc), false);
        assertFalse(pinning.isDealClient(address(dc)));
        vm.expectRevert(
            abi.encodeWithSelector(EstuaryPinning.EstuaryPinningUnknownDealClient.selector, address(dc))
        );
        report(reportOf(MINER, ids));
        vm.prank(OWNER);
        pinning.setDealClient(address(dc), true);
        r = reportOf(MINER, ids);
        r.proposal = bytes32(uint256(7));
        vm.expectRevert(abi.encodeWithSelector(DealClient.DealClientUnknownProposal.selector, r.proposal));
        report(r);
    }

    /// A proof that does not lead to the proposal's piece reverts the report; only operators
    /// report, and only the owner sets clients.
    function test_ReportDirectDeal_BadProofAndAccess() public {
        uint256[] memory ids = pinned(payloads, 5);
        activateDirect(MINER, SP);
        EstuaryPinning.DirectDealReport memory r = reportOf(MINER, ids);
        r.pins[2].proof.proofSubtree.path[0] ^= bytes32(uint256(1));
        vm.expectPartialRevert(EstuaryPinning.EstuaryPinningBadProof.selector);
        report(r);
        vm.prank(ALICE);
        vm.expectRevert(abi.encodeWithSelector(Operated.NotOperator.selector, ALICE));
        pinning.reportDirectDeal(reportOf(MINER, ids));
        vm.prank(ALICE);
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, ALICE));
        pinning.setDealClient(ALICE, true);
    }

    // ------------------------------------------------------------------ gas

    /// One pin alone, as `test_Gas_ReportDealOf1` (the client's one read against the market's
    /// two queries).
    function test_Gas_ReportDirectDealOf1() public {
        uint256[] memory ids = pinned(payloads, 5);
        activateDirect(MINER, SP);
        uint256[] memory one = new uint256[](1);
        one[0] = ids[0];
        EstuaryPinning.DirectDealReport memory r = reportOf(MINER, one);
        vm.cool(address(pinning));
        vm.cool(address(dc));
        vm.prank(ORACLE);
        pinning.reportDirectDeal(r);
        uint256 used = vm.snapshotGasLastCall("EstuaryPinning", "reportDirectDeal of 1 (8 MiB deal)");
        emit log_named_uint("reportDirectDeal gas, one pin", used);
    }
}
