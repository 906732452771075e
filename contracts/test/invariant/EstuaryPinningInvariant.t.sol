// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {EstuaryPinning} from "../../src/EstuaryPinning.sol";
import {CommonBase} from "forge-std/Base.sol";
import {StdUtils} from "forge-std/StdUtils.sol";
import {Test} from "forge-std/Test.sol";
import {Vm} from "forge-std/Vm.sol";

/// Requests, reports in any order, cancels and fee payments.
contract PinningHandler is CommonBase, StdUtils {
    EstuaryPinning internal immutable pinning;
    address internal immutable operator;
    bytes internal constant CID =
        hex"01551220c7d01489080858c500065836c658f847a6ca67c4864619212be4f8200e4bbace";
    bytes internal constant PIECE =
        hex"0181e2039220201111111111111111111111111111111111111111111111111111111111111111";

    bytes32 internal constant H = keccak256(CID);

    /// Accepted reports per request and kind (0 pinned, 1 deal, 2 failed).
    mapping(uint256 id => mapping(uint256 kind => uint256)) public accepted;
    uint256 public feesPaid;
    uint256 public refunded;
    uint256 public feesWithdrawn;
    /// Reports naming the wrong CID that were accepted (must stay 0).
    uint256 public wrongCidAccepted;

    constructor(EstuaryPinning pinning_, address operator_) {
        pinning = pinning_;
        operator = operator_;
    }

    function request(address who) external {
        // A person's account: not the zero address, not a contract (dealing to the pinning
        // contract itself would overwrite the fees it holds).
        if (who == address(0) || who.code.length != 0) return;
        uint256 fee = pinning.fee();
        vm.deal(who, who.balance + fee);
        vm.prank(who);
        pinning.pinToEstuary{value: fee}(CID);
        feesPaid += fee;
    }

    function report(uint256 seed, uint8 kind, bool wrongCid) external {
        uint256 n = pinning.requestCount();
        if (n == 0) return;
        uint256 id = 1 + seed % n;
        kind %= 3;
        bytes32 h = wrongCid ? keccak256(abi.encode(seed)) : H;
        vm.prank(operator);
        bool ok;
        if (kind == 0) {
            (ok,) =
                address(pinning).call(abi.encodeCall(EstuaryPinning.reportPinned, (id, h, PIECE, 1 << 20)));
        } else if (kind == 1) {
            (ok,) = address(pinning).call(abi.encodeCall(EstuaryPinning.reportDeal, (id, h, 1, 1001)));
        } else {
            (ok,) = address(pinning)
                .call(
                    abi.encodeCall(
                        EstuaryPinning.reportFailed, (id, h, EstuaryPinning.FailureCode.Timeout, "gone")
                    )
                );
        }
        if (ok) accepted[id][kind] += 1;
        if (ok && wrongCid) wrongCidAccepted += 1;
    }

    /// A requester takes back a refundable fee (after failures or the refund delay).
    function refund(uint256 seed) external {
        uint256 n = pinning.requestCount();
        if (n == 0) return;
        uint256 id = 1 + seed % n;
        uint256 amount = pinning.refundable(id);
        address who = pinning.requesterOf(id);
        vm.prank(who);
        try pinning.claimRefund(id, payable(address(0xEF0))) {
            refunded += amount;
        } catch {}
    }

    function withdrawFees() external {
        uint256 amount = pinning.feesHeld();
        vm.prank(pinning.owner());
        pinning.withdrawFees(payable(address(0xFEE)));
        feesWithdrawn += amount;
    }

    function warp(uint32 secondsLater) external {
        vm.warp(block.timestamp + bound(secondsLater, 1, 2 days));
    }

    /// Pinned reports in a batch (with repeats and unknown ids): counted from the `Pinned`
    /// events the batch emits, so a double record would show.
    function reportBatch(uint256 seed, uint8 size) external {
        uint256 n = pinning.requestCount();
        size = uint8(bound(size, 1, 16));
        EstuaryPinning.PinnedReport[] memory reports = new EstuaryPinning.PinnedReport[](size);
        for (uint256 i; i < size; ++i) {
            seed = uint256(keccak256(abi.encode(seed, i)));
            reports[i] = EstuaryPinning.PinnedReport(1 + seed % (n + 2), H, PIECE, 1 << 20);
        }
        vm.recordLogs();
        vm.prank(operator);
        pinning.reportPinnedBatch(reports);
        Vm.Log[] memory logs = vm.getRecordedLogs();
        for (uint256 i; i < logs.length; ++i) {
            if (logs[i].topics[0] == EstuaryPinning.Pinned.selector) {
                accepted[uint256(logs[i].topics[1])][0] += 1;
            }
        }
    }

    function cancel(uint256 seed) external {
        uint256 n = pinning.requestCount();
        if (n == 0) return;
        uint256 id = 1 + seed % n;
        vm.prank(pinning.requesterOf(id));
        (bool ok,) = address(pinning).call(abi.encodeCall(EstuaryPinning.cancel, (id)));
        ok;
    }

    function setFee(uint96 fee) external {
        vm.prank(pinning.owner());
        pinning.setFee(uint96(bound(fee, 0, 1 ether)));
    }
}

contract EstuaryPinningInvariantTest is Test {
    EstuaryPinning internal pinning;
    PinningHandler internal handler;

    function setUp() public {
        pinning = new EstuaryPinning(address(this), 1 days);
        handler = new PinningHandler(pinning, address(0x0C));
        pinning.setOperator(address(0x0C), true);
        pinning.transferOwnership(address(handler));
        vm.prank(address(handler));
        pinning.acceptOwnership();
        targetContract(address(handler));
    }

    /// Each state of each request is reported at most once.
    function invariant_EachStateReportedAtMostOnce() public view {
        uint256 n = pinning.requestCount();
        for (uint256 id = 1; id <= n; ++id) {
            for (uint256 kind; kind < 3; ++kind) {
                assertLe(handler.accepted(id, kind), 1);
            }
            EstuaryPinning.RequestStatus memory s = pinning.getRequest(id);
            if (s.dealMade) assertTrue(s.pinned);
        }
    }

    /// Regression: the fuzzer once passed the pinning contract's own address as a requester,
    /// and dealing it ether overwrote the fees it held.
    function test_RequestFromAContractAddressIsSkipped() public {
        handler.setFee(1_836_119_983);
        handler.request(address(0x9B0D2f92a3D5CaDe7942DB405c2ba1CAe756aB18));
        handler.request(address(pinning));
        handler.request(address(0x9B0D2f92a3D5CaDe7942DB405c2ba1CAe756aB18));
        invariant_FeesHeld();
        assertEq(pinning.requestCount(), 2);
    }

    /// Every fee paid is held (earned, or in escrow until its outcome) until withdrawn by the
    /// owner or refunded to its requester.
    function invariant_FeesHeld() public view {
        assertEq(address(pinning).balance, pinning.feesHeld() + pinning.feesEscrowed());
        assertEq(
            pinning.feesHeld() + pinning.feesEscrowed() + handler.refunded() + handler.feesWithdrawn(),
            handler.feesPaid()
        );
    }

    /// A report naming another CID than its request's is never accepted.
    function invariant_ReportsMatchTheirRequestsCid() public view {
        assertEq(handler.wrongCidAccepted(), 0);
    }
}
