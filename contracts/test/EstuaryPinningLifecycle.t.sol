// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {EstuaryPinning} from "../src/EstuaryPinning.sol";
import {Operated} from "../src/lib/Operated.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";
import {Test, Vm} from "forge-std/Test.sol";

/// Options, fees, operators' reports, cancellation, views, pausing and ownership.
contract EstuaryPinningLifecycleTest is Test {
    EstuaryPinning internal pinning;
    address internal constant OWNER = address(0x0A);
    address internal constant ORACLE = address(0x0C);
    address internal constant ALICE = address(0xA11CE);
    address internal constant BOB = address(0xB0B);
    bytes internal constant CID =
        hex"01551220c7d01489080858c500065836c658f847a6ca67c4864619212be4f8200e4bbace";
    bytes internal constant PIECE =
        hex"0181e2039220201111111111111111111111111111111111111111111111111111111111111111";

    bytes32 internal constant COMMP = 0x1111111111111111111111111111111111111111111111111111111111111111;
    /// What every report names: keccak256 of the request's binary CID.
    bytes32 internal constant H = keccak256(CID);
    EstuaryPinning.FailureCode internal constant NOT_FOUND = EstuaryPinning.FailureCode.NotFound;

    function setUp() public {
        pinning = new EstuaryPinning(OWNER, 1 days);
        vm.prank(OWNER);
        pinning.setOperator(ORACLE, true);
    }

    function pin(address who) internal returns (uint256) {
        vm.prank(who);
        return pinning.pinToEstuary(CID);
    }

    function options(string memory name, uint256 origins)
        internal
        pure
        returns (EstuaryPinning.PinOptions memory o)
    {
        o.name = name;
        o.origins = new string[](origins);
        for (uint256 k; k < origins; ++k) {
            o.origins[k] = "/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWExample";
        }
        o.sizeHint = 1234;
    }

    // ------------------------------------------------------------------ options

    function test_PinWithOptions_EmitsThem() public {
        EstuaryPinning.PinOptions memory o = options("photos", 2);
        vm.expectEmit(true, false, false, true, address(pinning));
        emit EstuaryPinning.PinRequestOptions(1, "photos", o.origins, 1234);
        vm.prank(ALICE);
        assertEq(pinning.pinToEstuary(CID, o), 1);
        assertEq(pinning.requesterOf(1), ALICE);
    }

    function test_RevertWhen_NameTooLong() public {
        vm.expectRevert(abi.encodeWithSelector(EstuaryPinning.EstuaryPinningBadOption.selector, "name"));
        pinning.pinToEstuary(CID, options(string(new bytes(256)), 0));
    }

    function test_RevertWhen_TooManyOrigins() public {
        vm.expectRevert(abi.encodeWithSelector(EstuaryPinning.EstuaryPinningBadOption.selector, "origins"));
        pinning.pinToEstuary(CID, options("", 9));
    }

    function test_RevertWhen_OriginIsNotAMultiaddr() public {
        EstuaryPinning.PinOptions memory o = options("", 1);
        o.origins[0] = "https://example.com/x.car";
        vm.expectRevert(abi.encodeWithSelector(EstuaryPinning.EstuaryPinningBadOption.selector, "origin"));
        pinning.pinToEstuary(CID, o);
    }

    // ------------------------------------------------------------------ fees

    /// The fee is charged exactly, held in escrow until the request's outcome, earned when it is
    /// reported pinned, and withdrawn by the owner.
    function test_Fee_IsEscrowedThenEarnedAndWithdrawn() public {
        vm.expectEmit(address(pinning));
        emit EstuaryPinning.FeeSet(0.01 ether, 1);
        vm.prank(OWNER);
        pinning.setFee(0.01 ether);
        vm.deal(ALICE, 1 ether);
        vm.prank(ALICE);
        vm.expectRevert(abi.encodeWithSelector(EstuaryPinning.EstuaryPinningWrongFee.selector, 0.01 ether, 0));
        pinning.pinToEstuary(CID);
        vm.prank(ALICE);
        uint256 id = pinning.pinToEstuary{value: 0.01 ether}(CID);
        assertEq(pinning.feesEscrowed(), 0.01 ether);
        assertEq(pinning.feesHeld(), 0);
        vm.prank(ORACLE);
        pinning.reportPinned(id, H, PIECE, 128);
        assertEq(pinning.feesEscrowed(), 0);
        assertEq(pinning.feesHeld(), 0.01 ether);
        vm.expectEmit(address(pinning));
        emit EstuaryPinning.FeesWithdrawn(BOB, 0.01 ether);
        vm.prank(OWNER);
        pinning.withdrawFees(payable(BOB));
        assertEq(BOB.balance, 0.01 ether);
        assertEq(pinning.feesHeld(), 0);
        assertEq(pinning.getRequest(id).fee, 0.01 ether);
    }

    function test_RevertWhen_ValueSentWithoutFee() public {
        vm.deal(ALICE, 1 ether);
        vm.prank(ALICE);
        vm.expectRevert(abi.encodeWithSelector(EstuaryPinning.EstuaryPinningWrongFee.selector, 0, 1));
        pinning.pinToEstuary{value: 1}(CID);
    }

    function test_RevertWhen_NotOwnerSetsFee() public {
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, ALICE));
        vm.prank(ALICE);
        pinning.setFee(1);
    }

    function test_RevertWhen_FeeRecipientRefuses() public {
        vm.prank(OWNER);
        pinning.setFee(1);
        vm.deal(ALICE, 1);
        vm.prank(ALICE);
        pinning.pinToEstuary{value: 1}(CID);
        vm.prank(OWNER);
        vm.expectRevert(EstuaryPinning.EstuaryPinningTransferFailed.selector);
        pinning.withdrawFees(payable(address(this)));
    }

    // ------------------------------------------------------------------ reports

    /// Deals are reported with proofs against the market: `EstuaryPinningDeals.t.sol`.
    function test_Report_Pinned() public {
        uint256 id = pin(ALICE);
        vm.expectEmit(address(pinning));
        emit EstuaryPinning.Pinned(id, ORACLE, COMMP, 1 << 20);
        vm.prank(ORACLE);
        pinning.reportPinned(id, H, PIECE, 1 << 20);
        EstuaryPinning.RequestStatus memory s = pinning.getRequest(id);
        assertEq(s.requester, ALICE);
        assertTrue(s.pinned && !s.dealMade && !s.failed && !s.cancelled);
        assertEq(s.commP, COMMP);
        assertEq(s.paddedSize, 1 << 20);
    }

    function test_RevertWhen_ReportedTwice() public {
        uint256 id = pin(ALICE);
        vm.startPrank(ORACLE);
        pinning.reportPinned(id, H, PIECE, 1 << 20);
        vm.expectRevert(
            abi.encodeWithSelector(
                EstuaryPinning.EstuaryPinningAlreadyReported.selector, id, EstuaryPinning.Report.Pinned
            )
        );
        pinning.reportPinned(id, H, PIECE, 1 << 20);
        pinning.reportFailed(id, H, NOT_FOUND, "provider dropped it");
        vm.expectRevert(
            abi.encodeWithSelector(
                EstuaryPinning.EstuaryPinningAlreadyReported.selector, id, EstuaryPinning.Report.Failed
            )
        );
        pinning.reportFailed(id, H, NOT_FOUND, "again");
        vm.stopPrank();
    }

    function test_Failed_ClosesTheRequest() public {
        uint256 id = pin(ALICE);
        vm.expectEmit(address(pinning));
        emit EstuaryPinning.PinFailed(id, ORACLE, NOT_FOUND, "not found");
        vm.prank(ORACLE);
        pinning.reportFailed(id, H, NOT_FOUND, "not found");
        vm.prank(ORACLE);
        vm.expectRevert(abi.encodeWithSelector(EstuaryPinning.EstuaryPinningRequestClosed.selector, id));
        pinning.reportPinned(id, H, PIECE, 128);
        assertEq(uint8(pinning.getRequest(id).failure), uint8(NOT_FOUND));
        vm.prank(ALICE);
        vm.expectRevert(abi.encodeWithSelector(EstuaryPinning.EstuaryPinningRequestClosed.selector, id));
        pinning.cancel(id);
    }

    /// A failure is a code and at most 64 bytes of detail, emitted and not stored.
    function test_FailureDetailIsCutAndNotStored() public {
        uint256 id = pin(ALICE);
        string memory longDetail = string(new bytes(2000));
        vm.expectEmit(address(pinning));
        emit EstuaryPinning.PinFailed(id, ORACLE, EstuaryPinning.FailureCode.TooLarge, string(new bytes(64)));
        vm.record();
        vm.prank(ORACLE);
        pinning.reportFailed(id, H, EstuaryPinning.FailureCode.TooLarge, longDetail);
        (, bytes32[] memory writes) = vm.accesses(address(pinning));
        assertEq(writes.length, 2, "the request's bits and the failure code");
        assertEq(uint8(pinning.getRequest(id).failure), uint8(EstuaryPinning.FailureCode.TooLarge));
    }

    function test_RevertWhen_NotOperator() public {
        uint256 id = pin(ALICE);
        vm.prank(ALICE);
        vm.expectRevert(abi.encodeWithSelector(Operated.NotOperator.selector, ALICE));
        pinning.reportPinned(id, H, PIECE, 128);
    }

    function test_RevertWhen_UnknownRequest() public {
        vm.prank(ORACLE);
        vm.expectRevert(abi.encodeWithSelector(EstuaryPinning.EstuaryPinningUnknownRequest.selector, 9));
        pinning.reportPinned(9, H, PIECE, 128);
        vm.expectRevert(abi.encodeWithSelector(EstuaryPinning.EstuaryPinningUnknownRequest.selector, 9));
        pinning.getRequest(9);
    }

    function test_RevertWhen_BadPiece() public {
        uint256 id = pin(ALICE);
        vm.startPrank(ORACLE);
        vm.expectRevert(EstuaryPinning.EstuaryPinningBadPiece.selector);
        pinning.reportPinned(id, H, CID, 128);
        vm.expectRevert(EstuaryPinning.EstuaryPinningBadPiece.selector);
        pinning.reportPinned(id, H, PIECE, 1000);
        vm.expectRevert(EstuaryPinning.EstuaryPinningBadPiece.selector);
        pinning.reportPinned(id, H, PIECE, 64);
        vm.stopPrank();
    }

    function test_OperatorRemoval() public {
        vm.expectEmit(address(pinning));
        emit Operated.OperatorSet(ORACLE, false);
        vm.prank(OWNER);
        pinning.setOperator(ORACLE, false);
        uint256 id = pin(ALICE);
        vm.prank(ORACLE);
        vm.expectRevert(abi.encodeWithSelector(Operated.NotOperator.selector, ORACLE));
        pinning.reportFailed(id, H, NOT_FOUND, "x");
    }

    // ------------------------------------------------------------------ cancel

    function test_Cancel_ByRequesterOnly() public {
        uint256 id = pin(ALICE);
        vm.prank(BOB);
        vm.expectRevert(abi.encodeWithSelector(EstuaryPinning.EstuaryPinningNotRequester.selector, id, BOB));
        pinning.cancel(id);
        vm.expectEmit(address(pinning));
        emit EstuaryPinning.PinCancelled(id);
        vm.prank(ALICE);
        pinning.cancel(id);
        assertTrue(pinning.getRequest(id).cancelled);
        vm.prank(ORACLE);
        vm.expectRevert(abi.encodeWithSelector(EstuaryPinning.EstuaryPinningRequestClosed.selector, id));
        pinning.reportPinned(id, H, PIECE, 128);
        vm.prank(ALICE);
        vm.expectRevert(abi.encodeWithSelector(EstuaryPinning.EstuaryPinningRequestClosed.selector, id));
        pinning.cancel(id);
    }

    // ------------------------------------------------------------------ reorg safety

    /// A report names the CID's hash: after a reorg put another request at the same id, a
    /// report in flight for the old one is refused instead of marking the new one.
    function test_RevertWhen_ReportNamesAnotherCid() public {
        bytes memory cidB = hex"01551220aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        // The chain the report was prepared on had Alice's CID as request 1; after the reorg
        // request 1 is Bob's.
        vm.prank(BOB);
        uint256 id = pinning.pinToEstuary(cidB);
        vm.startPrank(ORACLE);
        vm.expectRevert(abi.encodeWithSelector(EstuaryPinning.EstuaryPinningCidMismatch.selector, id, H));
        pinning.reportPinned(id, H, PIECE, 1 << 20);
        vm.expectRevert(abi.encodeWithSelector(EstuaryPinning.EstuaryPinningCidMismatch.selector, id, H));
        pinning.reportFailed(id, H, NOT_FOUND, "");
        // A batch skips it (as a deal report does: `EstuaryPinningDeals.t.sol`).
        uint256[] memory ids = new uint256[](1);
        ids[0] = id;
        assertEq(pinning.reportPinnedBatch(batchOf(ids)), 0);
        pinning.reportPinned(id, keccak256(cidB), PIECE, 1 << 20);
        vm.stopPrank();
        assertTrue(pinning.getRequest(id).pinned);
    }

    /// Any report whose CID hash differs from the request's is refused.
    function testFuzz_ReportWithAnotherCidHashIsRefused(bytes32 other) public {
        vm.assume(bytes8(other) != bytes8(H));
        uint256 id = pin(ALICE);
        vm.prank(ORACLE);
        vm.expectRevert(abi.encodeWithSelector(EstuaryPinning.EstuaryPinningCidMismatch.selector, id, other));
        pinning.reportPinned(id, other, PIECE, 1 << 20);
    }

    /// Concrete twin: a hash differing in its first byte only.
    function test_ReportWithAnotherCidHashIsRefused_Concrete() public {
        testFuzz_ReportWithAnotherCidHashIsRefused(H ^ bytes32(uint256(1) << 255));
    }

    // ------------------------------------------------------------------ refunds

    function paidPin(address who) internal returns (uint256 id) {
        vm.prank(OWNER);
        pinning.setFee(0.01 ether);
        vm.deal(who, who.balance + 0.01 ether);
        vm.prank(who);
        id = pinning.pinToEstuary{value: 0.01 ether}(CID);
    }

    /// A failed request's fee is refunded to its requester, once.
    function test_Refund_WhenFailed() public {
        uint256 id = paidPin(ALICE);
        assertEq(pinning.refundable(id), 0);
        vm.prank(ALICE);
        vm.expectRevert(abi.encodeWithSelector(EstuaryPinning.EstuaryPinningNotRefundable.selector, id));
        pinning.claimRefund(id, payable(ALICE));
        vm.prank(ORACLE);
        pinning.reportFailed(id, H, NOT_FOUND, "");
        assertEq(pinning.refundable(id), 0.01 ether);
        vm.prank(BOB);
        vm.expectRevert(abi.encodeWithSelector(EstuaryPinning.EstuaryPinningNotRequester.selector, id, BOB));
        pinning.claimRefund(id, payable(BOB));
        vm.expectEmit(address(pinning));
        emit EstuaryPinning.FeeRefunded(id, ALICE, 0.01 ether);
        vm.prank(ALICE);
        pinning.claimRefund(id, payable(ALICE));
        assertEq(ALICE.balance, 0.01 ether);
        assertTrue(pinning.getRequest(id).refunded);
        vm.prank(ALICE);
        vm.expectRevert(abi.encodeWithSelector(EstuaryPinning.EstuaryPinningNotRefundable.selector, id));
        pinning.claimRefund(id, payable(ALICE));
        assertEq(address(pinning).balance, pinning.feesHeld() + pinning.feesEscrowed());
    }

    /// A request not pinned within the refund delay (quarantined by the oracle, or the oracle
    /// stopped) is refundable, cancelled or not; the refund closes it.
    function test_Refund_WhenNotPinnedInTime() public {
        uint256 id = paidPin(ALICE);
        vm.prank(ALICE);
        pinning.cancel(id);
        vm.prank(ALICE);
        vm.expectRevert(abi.encodeWithSelector(EstuaryPinning.EstuaryPinningNotRefundable.selector, id));
        pinning.claimRefund(id, payable(ALICE));
        vm.warp(block.timestamp + 1 days + 1 hours);
        vm.prank(ALICE);
        pinning.claimRefund(id, payable(ALICE));
        uint256 open = paidPin(BOB);
        vm.warp(block.timestamp + 1 days + 1 hours);
        vm.expectEmit(address(pinning));
        emit EstuaryPinning.PinCancelled(open);
        vm.prank(BOB);
        pinning.claimRefund(open, payable(BOB));
        assertTrue(pinning.getRequest(open).cancelled, "a refund closes the request");
        vm.prank(ORACLE);
        vm.expectRevert(abi.encodeWithSelector(EstuaryPinning.EstuaryPinningRequestClosed.selector, open));
        pinning.reportPinned(open, H, PIECE, 128);
    }

    /// A pinned request's fee is earned, never refunded.
    function test_Refund_NeverOncePinned() public {
        uint256 id = paidPin(ALICE);
        vm.prank(ORACLE);
        pinning.reportPinned(id, H, PIECE, 128);
        vm.warp(block.timestamp + 30 days);
        vm.prank(ALICE);
        vm.expectRevert(abi.encodeWithSelector(EstuaryPinning.EstuaryPinningNotRefundable.selector, id));
        pinning.claimRefund(id, payable(ALICE));
    }

    /// Each request pays (and is refunded) the fee in force when it was made.
    function test_FeeOf_FollowsTheSchedule() public {
        uint256 free = pin(ALICE);
        uint256 a = paidPin(ALICE);
        vm.prank(OWNER);
        pinning.setFee(0.02 ether);
        vm.deal(ALICE, 0.02 ether);
        vm.prank(ALICE);
        uint256 b = pinning.pinToEstuary{value: 0.02 ether}(CID);
        vm.prank(OWNER);
        pinning.setFee(0);
        uint256 c = pin(ALICE);
        assertEq(pinning.feeOf(free), 0);
        assertEq(pinning.feeOf(a), 0.01 ether);
        assertEq(pinning.feeOf(b), 0.02 ether);
        assertEq(pinning.feeOf(c), 0);
        assertEq(pinning.feesEscrowed(), 0.03 ether);
    }

    // ------------------------------------------------------------------ pause and ownership

    function test_Pause_StopsRequestsNotReports() public {
        uint256 id = pin(ALICE);
        vm.prank(OWNER);
        pinning.pause();
        vm.expectRevert(Pausable.EnforcedPause.selector);
        pin(BOB);
        vm.prank(ORACLE);
        pinning.reportPinned(id, H, PIECE, 128);
        vm.prank(OWNER);
        pinning.unpause();
        assertEq(pin(BOB), 2);
    }

    function test_RevertWhen_NotOwnerPauses() public {
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, ALICE));
        vm.prank(ALICE);
        pinning.pause();
    }

    function test_Ownership_IsTwoStep() public {
        vm.prank(OWNER);
        pinning.transferOwnership(BOB);
        assertEq(pinning.owner(), OWNER);
        vm.prank(BOB);
        pinning.acceptOwnership();
        assertEq(pinning.owner(), BOB);
    }

    // ------------------------------------------------------------------ fuzz

    /// Whatever order the oracle's reports come in, each is accepted at most once and never
    /// after the request closed.
    function testFuzz_ReportsAtMostOnce(uint8[8] memory ops) public {
        uint256 id = pin(ALICE);
        bool pinned;
        bool closed;
        for (uint256 k; k < ops.length; ++k) {
            uint8 op = ops[k] % 3;
            if (op == 2) {
                vm.prank(ALICE);
                (bool ok,) = address(pinning).call(abi.encodeCall(pinning.cancel, (id)));
                assertEq(ok, !closed);
                closed = true;
                continue;
            }
            vm.prank(ORACLE);
            bool success;
            if (op == 0) {
                (success,) = address(pinning).call(abi.encodeCall(pinning.reportPinned, (id, H, PIECE, 128)));
                assertEq(success, !pinned && !closed);
                pinned = pinned || success;
            } else {
                (success,) =
                    address(pinning).call(abi.encodeCall(pinning.reportFailed, (id, H, NOT_FOUND, "x")));
                assertEq(success, !closed);
                closed = closed || success;
            }
        }
    }

    /// Concrete twin: pin, pin again, fail, cancel, fail again, pin again.
    function test_ReportsAtMostOnce_Concrete() public {
        testFuzz_ReportsAtMostOnce([uint8(0), 0, 1, 2, 1, 0, 2, 1]);
    }

    // ------------------------------------------------------------------ batched reports

    function batchOf(uint256[] memory ids) internal pure returns (EstuaryPinning.PinnedReport[] memory out) {
        out = new EstuaryPinning.PinnedReport[](ids.length);
        for (uint256 i; i < ids.length; ++i) {
            out[i] = EstuaryPinning.PinnedReport(ids[i], H, PIECE, 1 << 20);
        }
    }

    function test_ReportPinnedBatch_RecordsOpenRequestsAndSkipsTheRest() public {
        uint256 done = pin(ALICE);
        uint256 gone = pin(ALICE);
        uint256 a = pin(BOB);
        uint256 b = pin(BOB);
        vm.prank(ORACLE);
        pinning.reportPinned(done, H, PIECE, 128);
        vm.prank(ALICE);
        pinning.cancel(gone);
        uint256[] memory ids = new uint256[](6);
        (ids[0], ids[1], ids[2], ids[3], ids[4], ids[5]) = (done, a, gone, 99, b, a);
        vm.expectEmit(address(pinning));
        emit EstuaryPinning.Pinned(a, ORACLE, COMMP, 1 << 20);
        vm.expectEmit(address(pinning));
        emit EstuaryPinning.Pinned(b, ORACLE, COMMP, 1 << 20);
        vm.recordLogs();
        vm.prank(ORACLE);
        assertEq(pinning.reportPinnedBatch(batchOf(ids)), 2);
        assertEq(vm.getRecordedLogs().length, 2, "one event per recorded report, none for skipped ones");
        assertTrue(pinning.getRequest(a).pinned && pinning.getRequest(b).pinned);
        assertEq(pinning.getRequest(done).paddedSize, 128, "an earlier report is kept");
        assertFalse(pinning.getRequest(gone).pinned);
    }

    function test_RevertWhen_BatchHasABadPiece() public {
        uint256 a = pin(ALICE);
        EstuaryPinning.PinnedReport[] memory reports = new EstuaryPinning.PinnedReport[](2);
        reports[0] = EstuaryPinning.PinnedReport(a, H, PIECE, 1 << 20);
        reports[1] = EstuaryPinning.PinnedReport(a, H, CID, 1 << 20);
        vm.prank(ORACLE);
        vm.expectRevert(EstuaryPinning.EstuaryPinningBadPiece.selector);
        pinning.reportPinnedBatch(reports);
        assertFalse(pinning.getRequest(a).pinned, "nothing of a reverted batch is kept");
    }

    function test_RevertWhen_BatchNotFromAnOperator() public {
        uint256[] memory ids = new uint256[](1);
        ids[0] = pin(ALICE);
        EstuaryPinning.PinnedReport[] memory reports = batchOf(ids);
        vm.expectRevert(abi.encodeWithSelector(Operated.NotOperator.selector, ALICE));
        vm.prank(ALICE);
        pinning.reportPinnedBatch(reports);
    }

    /// Any mix of ids (repeats, unknown ones) in any number of batches: each request is recorded
    /// pinned exactly once, and only if it exists.
    function testFuzz_BatchesRecordEachRequestOnce(uint8[12] memory picks, uint8 split) public {
        for (uint256 i; i < 5; ++i) {
            pin(ALICE);
        }
        uint256 cut = split % 13;
        uint256[] memory first = new uint256[](cut);
        uint256[] memory second = new uint256[](12 - cut);
        for (uint256 i; i < 12; ++i) {
            uint256 id = 1 + picks[i] % 7; // 6 and 7 are unknown
            if (i < cut) first[i] = id;
            else second[i - cut] = id;
        }
        vm.recordLogs();
        vm.startPrank(ORACLE);
        uint256 recorded =
            pinning.reportPinnedBatch(batchOf(first)) + pinning.reportPinnedBatch(batchOf(second));
        vm.stopPrank();
        uint256[8] memory events;
        Vm.Log[] memory logs = vm.getRecordedLogs();
        for (uint256 i; i < logs.length; ++i) {
            assertEq(logs[i].topics[0], EstuaryPinning.Pinned.selector);
            events[uint256(logs[i].topics[1])] += 1;
        }
        uint256 distinct;
        for (uint256 id = 1; id <= 7; ++id) {
            bool asked;
            for (uint256 i; i < 12; ++i) {
                if (1 + picks[i] % 7 == id) asked = true;
            }
            uint256 expected = asked && id <= 5 ? 1 : 0;
            assertEq(events[id], expected);
            distinct += expected;
        }
        assertEq(recorded, distinct);
    }

    function test_BatchesRecordEachRequestOnce_Concrete() public {
        testFuzz_BatchesRecordEachRequestOnce([uint8(0), 0, 6, 1, 5, 1, 2, 2, 3, 4, 0, 6], 5);
    }

    // ------------------------------------------------------------------ gas goal

    /// Per report in a batch of 32, cold: what the oracle pays per pin when it batches.
    function test_Gas_ReportPinnedBatchOf32() public {
        uint256[] memory ids = new uint256[](32);
        for (uint256 i; i < 32; ++i) {
            ids[i] = pin(ALICE);
        }
        EstuaryPinning.PinnedReport[] memory reports = batchOf(ids);
        vm.cool(address(pinning));
        vm.prank(ORACLE);
        pinning.reportPinnedBatch(reports);
        uint256 used = vm.snapshotGasLastCall("EstuaryPinning", "reportPinnedBatch of 32");
        emit log_named_uint("reportPinnedBatch gas per report", used / 32);
        assertLe(used / 32, 60_000);
    }

    /// Goal: `pinToEstuary` ≤ 40,000 gas, measured cold (as in a fresh transaction).
    function test_Gas_PinToEstuary() public {
        pin(BOB);
        vm.cool(address(pinning));
        vm.prank(ALICE);
        pinning.pinToEstuary(CID);
        uint256 used = vm.snapshotGasLastCall("EstuaryPinning", "pinToEstuary");
        emit log_named_uint("pinToEstuary gas", used);
        assertLe(used, 40_000);
    }
}
