// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {EstuaryPinning} from "../src/EstuaryPinning.sol";
import {MarketActor} from "../src/lib/MarketActor.sol";
import {Operated} from "../src/lib/Operated.sol";
import {PoDSI} from "../src/lib/PoDSI.sol";
import {PinnedPieces} from "./utils/PinnedPieces.sol";
import {Vm} from "forge-std/Test.sol";

/// `reportDeal`: deals in the (simulated) market, pins proven in them with the proofs
/// `crates/piece` makes, and everything a wrong report can get wrong refused.
contract EstuaryPinningDealsTest is PinnedPieces {
    address internal constant SP = address(0x5B1);
    address internal constant SP2 = address(0x5B2);
    uint64 internal constant MINER = 1000;
    uint64 internal constant MINER2 = 1001;

    function setUp() public {
        installMarket();
        useDevPolicy();
        vm.roll(1000);
        createMiner(MINER, SP);
        createMiner(MINER2, SP2);
        setUpPinning();
    }

    // ------------------------------------------------------------------ helpers

    /// Publishes `provider`'s deal for the piece (commP, size), starting in 10 epochs.
    function dealFor(bytes32 commP, uint64 size, uint64 provider, address controller)
        internal
        returns (uint64)
    {
        return publishPiece(commP, size, provider, controller, 10, 0);
    }

    function dealOf(uint256 first, uint64 provider, address controller) internal returns (uint64) {
        return dealFor(cases[first].commPa, cases[first].sizePa, provider, controller);
    }

    /// The report of deal `dealId` for requests `ids`, request k holding piece `cases[first + k]`.
    function reportOf(uint64 dealId, uint64 provider, uint256 first, uint256[] memory ids)
        internal
        view
        returns (EstuaryPinning.DealReport memory r)
    {
        r.dealId = dealId;
        r.provider = provider;
        r.aggregateCommP = cases[first].commPa;
        r.aggregateSize = cases[first].sizePa;
        r.pins = inclusions(first, ids);
    }

    function report(EstuaryPinning.DealReport memory r) internal returns (uint256) {
        vm.prank(ORACLE);
        return pinning.reportDeal(r);
    }

    // ------------------------------------------------------------------ proven

    /// Every pin of the deal is proven, at its offset; the request keeps the deal.
    function test_ReportDeal_ProvesEachPin() public {
        uint256[] memory ids = pinned(payloads, 5);
        uint64 dealId = dealOf(payloads, MINER, SP);
        for (uint256 k; k < 5; ++k) {
            vm.expectEmit(address(pinning));
            emit EstuaryPinning.DealProven(ids[k], dealId, MINER, cases[payloads + k].offset);
        }
        vm.expectEmit(address(pinning));
        emit EstuaryPinning.DealReported(dealId, MINER, ORACLE, cases[payloads].commPa, 8 << 20, 5);
        assertEq(report(reportOf(dealId, MINER, payloads, ids)), 5);
        for (uint256 k; k < 5; ++k) {
            EstuaryPinning.RequestStatus memory s = pinning.getRequest(ids[k]);
            assertTrue(s.pinned && s.dealMade);
            assertEq(s.dealId, dealId);
            assertEq(s.provider, MINER);
            assertEq(s.commP, cases[payloads + k].commPc, "the pinned piece is kept");
        }
    }

    /// Replicas: the same pins in a second provider's deal are proven again; a report of the
    /// deal a request holds last is skipped (a resent transaction).
    function test_ReportDeal_Replicas_AndRepeatsSkipped() public {
        uint256[] memory ids = pinned(payloads, 5);
        uint64 first = dealOf(payloads, MINER, SP);
        uint64 second = dealOf(payloads, MINER2, SP2);
        assertEq(report(reportOf(first, MINER, payloads, ids)), 5);
        vm.recordLogs();
        assertEq(report(reportOf(first, MINER, payloads, ids)), 0, "the same deal again");
        assertEq(vm.getRecordedLogs().length, 1, "only DealReported");
        assertEq(report(reportOf(second, MINER2, payloads, ids)), 5);
        EstuaryPinning.RequestStatus memory s = pinning.getRequest(ids[0]);
        assertEq(s.dealId, second);
        assertEq(s.provider, MINER2);
    }

    /// What `reportPinnedBatch` skips is skipped here too: unknown, not pinned, cancelled,
    /// failed, another CID.
    function test_ReportDeal_SkipsWhatBatchesSkip() public {
        uint256[] memory ids = pinned(payloads, 5);
        vm.prank(ALICE);
        pinning.cancel(ids[1]);
        vm.prank(ORACLE);
        pinning.reportFailed(ids[2], H, EstuaryPinning.FailureCode.Internal, "");
        vm.prank(ALICE);
        uint256 notPinned = pinning.pinToEstuary(CID);
        uint64 dealId = dealOf(payloads, MINER, SP);
        EstuaryPinning.DealReport memory r = reportOf(dealId, MINER, payloads, ids);
        r.pins[0].requestId = 99;
        r.pins[3].requestId = notPinned;
        r.pins[4].cidHash = keccak256("another CID");
        vm.recordLogs();
        assertEq(report(r), 0);
        Vm.Log[] memory logs = vm.getRecordedLogs();
        assertEq(logs.length, 1);
        assertEq(logs[0].topics[0], EstuaryPinning.DealReported.selector);
        assertFalse(pinning.getRequest(ids[1]).dealMade);
        assertFalse(pinning.getRequest(ids[4]).dealMade);
    }

    // ------------------------------------------------------------------ refused

    /// A deal the market does not have (never published, reorged out) or no longer has
    /// (terminated: removed at once): refused with the market's answer.
    function test_RevertWhen_DealUnavailable() public {
        uint256[] memory ids = pinned(payloads, 1);
        EstuaryPinning.DealReport memory r = reportOf(7, MINER, payloads, ids);
        vm.expectRevert(
            abi.encodeWithSelector(
                EstuaryPinning.EstuaryPinningDealUnavailable.selector, 7, MarketActor.Status.NotFound
            )
        );
        report(r);
        uint64 dealId = dealOf(payloads, MINER, SP);
        assertTrue(activateDeal(MINER, SP, dealId, 1));
        terminateSector(MINER, SP, 1);
        r.dealId = dealId;
        vm.expectRevert(
            abi.encodeWithSelector(
                EstuaryPinning.EstuaryPinningDealUnavailable.selector, dealId, MarketActor.Status.Expired
            )
        );
        report(r);
    }

    function test_RevertWhen_AnotherProvidersDeal() public {
        uint256[] memory ids = pinned(payloads, 1);
        uint64 dealId = dealOf(payloads, MINER, SP);
        vm.expectRevert(
            abi.encodeWithSelector(EstuaryPinning.EstuaryPinningWrongProvider.selector, dealId, MINER2, MINER)
        );
        report(reportOf(dealId, MINER2, payloads, ids));
    }

    /// An SP that published another piece (or size) than the aggregate: the deal counts for
    /// nothing.
    function test_RevertWhen_TheDealHoldsAnotherPiece() public {
        uint256[] memory ids = pinned(payloads, 1);
        bytes32 other = cases[0].commPa;
        uint64 dealId = dealFor(other, 8 << 20, MINER, SP);
        vm.expectRevert(
            abi.encodeWithSelector(
                EstuaryPinning.EstuaryPinningWrongAggregate.selector, dealId, other, 8 << 20
            )
        );
        report(reportOf(dealId, MINER, payloads, ids));
        uint64 bigger = dealFor(cases[payloads].commPa, 16 << 20, MINER, SP);
        vm.expectRevert(
            abi.encodeWithSelector(
                EstuaryPinning.EstuaryPinningWrongAggregate.selector, bigger, cases[payloads].commPa, 16 << 20
            )
        );
        report(reportOf(bigger, MINER, payloads, ids));
    }

    /// A pin named with another piece than it was reported pinned with.
    function test_RevertWhen_PinNamesAnotherPiece() public {
        uint256[] memory ids = pinned(payloads, 2);
        uint64 dealId = dealOf(payloads, MINER, SP);
        EstuaryPinning.DealReport memory r = reportOf(dealId, MINER, payloads, ids);
        (r.pins[0].commP, r.pins[0].paddedSize) = (r.pins[1].commP, r.pins[1].paddedSize);
        vm.expectRevert(
            abi.encodeWithSelector(
                EstuaryPinning.EstuaryPinningPieceMismatch.selector,
                ids[0],
                r.pins[1].commP,
                r.pins[1].paddedSize
            )
        );
        report(r);
    }

    /// Any bit of any proof node flipped: the whole report is refused. (Each run pins five
    /// requests and publishes a deal: fewer runs; PoDSI.t.sol fuzzes the proofs themselves.)
    /// forge-config: default.fuzz.runs = 1000
    function testFuzz_RevertWhen_ProofTampered(uint256 pin, uint256 node, uint8 bit) public {
        uint256[] memory ids = pinned(payloads, 5);
        uint64 dealId = dealOf(payloads, MINER, SP);
        EstuaryPinning.DealReport memory r = reportOf(dealId, MINER, payloads, ids);
        pin %= 5;
        flip(r.pins[pin].proof, node, bit);
        vm.expectPartialRevert(EstuaryPinning.EstuaryPinningBadProof.selector);
        report(r);
        assertFalse(pinning.getRequest(ids[0]).dealMade, "nothing of a refused report is kept");
    }

    function test_RevertWhen_ProofTampered_Concrete() public {
        testFuzz_RevertWhen_ProofTampered(4, 0, 0);
        // The next block: the same proposal again would be a duplicate the market drops.
        vm.roll(block.number + 1);
        testFuzz_RevertWhen_ProofTampered(0, 1000, 254);
    }

    /// A proof of another pin's place (a wrong offset) is refused with PoDSI's reason.
    function test_RevertWhen_ProofOfAnotherPlace() public {
        uint256[] memory ids = pinned(payloads, 2);
        uint64 dealId = dealOf(payloads, MINER, SP);
        EstuaryPinning.DealReport memory r = reportOf(dealId, MINER, payloads, ids);
        r.pins[0].proof.proofSubtree.index += 1;
        vm.expectRevert(
            abi.encodeWithSelector(
                EstuaryPinning.EstuaryPinningBadProof.selector, ids[0], PoDSI.Failure.CommitmentsDiffer
            )
        );
        report(r);
    }

    function test_RevertWhen_NotOperator() public {
        uint256[] memory ids = pinned(payloads, 1);
        uint64 dealId = dealOf(payloads, MINER, SP);
        EstuaryPinning.DealReport memory r = reportOf(dealId, MINER, payloads, ids);
        vm.expectRevert(abi.encodeWithSelector(Operated.NotOperator.selector, SP));
        vm.prank(SP);
        pinning.reportDeal(r);
    }

    // ------------------------------------------------------------------ gas

    /// A report of 32 pins in a 64 GiB deal, each with the deepest proof a deal can have (29 +
    /// 30 nodes), cold: what the oracle pays per pin proven.
    function test_Gas_ReportDealOf32Deepest() public {
        uint256[] memory ids = pinned(deepest, 32);
        uint64 dealId = dealOf(deepest, MINER, SP);
        EstuaryPinning.DealReport memory r = reportOf(dealId, MINER, deepest, ids);
        vm.cool(address(pinning));
        vm.prank(ORACLE);
        assertEq(pinning.reportDeal(r), 32);
        uint256 used = vm.snapshotGasLastCall("EstuaryPinning", "reportDeal of 32 (64 GiB, deepest proofs)");
        emit log_named_uint("reportDeal gas per pin (32 in a 64 GiB deal)", used / 32);
        assertLe(used / 32, 60_000);
    }

    /// One pin alone: the market's two queries are not shared.
    function test_Gas_ReportDealOf1() public {
        uint256[] memory ids = pinned(payloads, 1);
        uint64 dealId = dealOf(payloads, MINER, SP);
        EstuaryPinning.DealReport memory r = reportOf(dealId, MINER, payloads, ids);
        vm.cool(address(pinning));
        vm.prank(ORACLE);
        pinning.reportDeal(r);
        uint256 used = vm.snapshotGasLastCall("EstuaryPinning", "reportDeal of 1 (8 MiB deal)");
        emit log_named_uint("reportDeal gas, one pin", used);
    }
}
