// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {EstuaryConsumer, EstuaryOracle} from "../src/EstuaryOracle.sol";
import {CidLib} from "../src/lib/CidLib.sol";
import {Operated} from "../src/lib/Operated.sol";
import {Test} from "forge-std/Test.sol";

contract GoodConsumer is EstuaryConsumer {
    uint256 public lastJob;
    bytes public lastPiece;
    uint64 public lastSize;
    uint64 public lastDeal;
    string public lastFailure;

    constructor(EstuaryOracle oracle) EstuaryConsumer(oracle) {}

    receive() external payable {}

    function pin(bytes memory cid) external returns (uint256) {
        return requestPin(cid, 200_000);
    }

    function store(bytes memory cid) external returns (uint256) {
        return requestStore(cid, 3, false, 200_000);
    }

    function onPinned(uint256 jobId, bytes memory pieceCid, uint64 paddedSize) internal override {
        lastJob = jobId;
        lastPiece = pieceCid;
        lastSize = paddedSize;
    }

    function onStored(uint256 jobId, uint64 dealId, uint64) internal override {
        lastJob = jobId;
        lastDeal = dealId;
    }

    function onFailed(uint256 jobId, string memory reason) internal override {
        lastJob = jobId;
        lastFailure = reason;
    }
}

/// Misbehaving consumers: revert, burn all gas, return a huge revert payload.
contract BadConsumer {
    uint8 public mode;

    function setMode(uint8 m) external {
        mode = m;
    }

    function request(EstuaryOracle oracle, bytes memory cid) external returns (uint256) {
        return oracle.requestJob(EstuaryOracle.JobKind.Pin, cid, "", 100_000);
    }

    function onEstuaryResult(uint256, bool, bytes calldata) external view {
        if (mode == 0) revert("no");
        if (mode == 1) {
            while (true) {}
        }
        assembly {
            revert(0, 1000000)
        }
    }
}

contract EstuaryOracleTest is Test {
    EstuaryOracle internal oracle;
    GoodConsumer internal consumer;
    address internal constant OWNER = address(0x0A);
    address internal constant OPERATOR = address(0x0C);
    bytes internal constant CID =
        hex"01551220c7d01489080858c500065836c658f847a6ca67c4864619212be4f8200e4bbace";
    bytes internal constant PIECE =
        hex"0181e2039220201111111111111111111111111111111111111111111111111111111111111111";

    function setUp() public {
        oracle = new EstuaryOracle(OWNER);
        vm.startPrank(OWNER);
        oracle.setOperator(OPERATOR, true);
        oracle.setPrice(EstuaryOracle.JobKind.Pin, 0.001 ether);
        oracle.setPrice(EstuaryOracle.JobKind.Store, 0.01 ether);
        vm.stopPrank();
        consumer = new GoodConsumer(oracle);
        vm.deal(address(consumer), 1 ether);
    }

    function test_PinJob_RoundTrip() public {
        vm.expectEmit(address(oracle));
        emit EstuaryOracle.JobRequested(1, address(consumer), EstuaryOracle.JobKind.Pin, CID, "", 200_000);
        uint256 id = consumer.pin(CID);
        assertEq(oracle.feesHeld(), 0.001 ether);
        vm.expectEmit(address(oracle));
        emit EstuaryOracle.JobFulfilled(id, true, true);
        vm.prank(OPERATOR);
        oracle.fulfill(id, true, abi.encode(PIECE, uint64(1 << 20)));
        assertEq(consumer.lastJob(), id);
        assertEq(consumer.lastPiece(), PIECE);
        assertEq(consumer.lastSize(), 1 << 20);
        vm.prank(OPERATOR);
        vm.expectRevert(abi.encodeWithSelector(EstuaryOracle.EstuaryOracleAlreadyFulfilled.selector, id));
        oracle.fulfill(id, true, "");
    }

    function test_StoreJob_AndFailure() public {
        uint256 id = consumer.store(CID);
        vm.prank(OPERATOR);
        oracle.fulfill(id, true, abi.encode(uint64(77), uint64(1001)));
        assertEq(consumer.lastDeal(), 77);
        uint256 failed = consumer.pin(CID);
        vm.prank(OPERATOR);
        oracle.fulfill(failed, false, abi.encode("content not found"));
        assertEq(consumer.lastFailure(), "content not found");
    }

    function test_RevertWhen_BadRequest() public {
        vm.expectRevert(
            abi.encodeWithSelector(EstuaryOracle.EstuaryOracleWrongPayment.selector, 0.001 ether, 0)
        );
        oracle.requestJob(EstuaryOracle.JobKind.Pin, CID, "", 1);
        vm.expectRevert(
            abi.encodeWithSelector(EstuaryOracle.EstuaryOracleInvalidCid.selector, CidLib.CidError.Empty)
        );
        oracle.requestJob(EstuaryOracle.JobKind.Pin, "", "", 1);
        vm.deal(address(this), 1 ether);
        vm.expectRevert(
            abi.encodeWithSelector(EstuaryOracle.EstuaryOracleGasLimitTooHigh.selector, 2_000_000)
        );
        oracle.requestJob{value: 0.001 ether}(EstuaryOracle.JobKind.Pin, CID, "", 2_000_000);
    }

    function test_RevertWhen_NotOperatorOrUnknownJob() public {
        vm.expectRevert(abi.encodeWithSelector(Operated.NotOperator.selector, address(this)));
        oracle.fulfill(1, true, "");
        vm.prank(OPERATOR);
        vm.expectRevert(abi.encodeWithSelector(EstuaryOracle.EstuaryOracleUnknownJob.selector, 5));
        oracle.fulfill(5, true, "");
    }

    function test_RevertWhen_CallbackNotFromOracle() public {
        vm.expectRevert(
            abi.encodeWithSelector(EstuaryConsumer.EstuaryConsumerNotOracle.selector, address(this))
        );
        consumer.onEstuaryResult(1, true, "");
    }

    /// A reverting, gas-burning or return-bombing consumer never blocks the oracle.
    function test_BadConsumers_NeverBlock() public {
        vm.prank(OWNER);
        oracle.setPrice(EstuaryOracle.JobKind.Pin, 0);
        BadConsumer bad = new BadConsumer();
        for (uint8 mode; mode < 3; ++mode) {
            bad.setMode(mode);
            uint256 id = bad.request(oracle, CID);
            vm.expectEmit(address(oracle));
            emit EstuaryOracle.JobFulfilled(id, true, false);
            vm.prank(OPERATOR);
            oracle.fulfill{gas: 500_000}(id, true, "");
            (,,, bool done) = oracle.jobs(id);
            assertTrue(done);
        }
    }

    /// The operator must give the callback its full gas limit.
    function test_RevertWhen_OperatorStarvesTheCallback() public {
        uint256 id = consumer.pin(CID);
        vm.prank(OPERATOR);
        vm.expectPartialRevert(EstuaryOracle.EstuaryOracleNotEnoughGas.selector);
        oracle.fulfill{gas: 150_000}(id, true, abi.encode(PIECE, uint64(128)));
        (,,, bool done) = oracle.jobs(id);
        assertFalse(done);
    }

    function test_SetPrice_Emits() public {
        vm.expectEmit(address(oracle));
        emit EstuaryOracle.PriceSet(EstuaryOracle.JobKind.Store, 7);
        vm.prank(OWNER);
        oracle.setPrice(EstuaryOracle.JobKind.Store, 7);
        assertEq(oracle.price(EstuaryOracle.JobKind.Store), 7);
    }

    function test_WithdrawFees() public {
        consumer.pin(CID);
        vm.expectEmit(address(oracle));
        emit EstuaryOracle.FeesWithdrawn(address(0xFEE), 0.001 ether);
        vm.prank(OWNER);
        oracle.withdrawFees(payable(address(0xFEE)));
        assertEq(address(0xFEE).balance, 0.001 ether);
        assertEq(oracle.feesHeld(), 0);
    }

    function test_RevertWhen_FeeRecipientRefuses() public {
        consumer.pin(CID);
        vm.prank(OWNER);
        vm.expectRevert(EstuaryOracle.EstuaryOracleTransferFailed.selector);
        oracle.withdrawFees(payable(address(this)));
        assertEq(oracle.feesHeld(), 0.001 ether);
    }

    /// Any payload delivered to a good consumer completes the job exactly once.
    function testFuzz_FulfilOnce(bool ok, bytes memory junk) public {
        uint256 id = consumer.pin(CID);
        vm.prank(OPERATOR);
        oracle.fulfill(id, ok, junk);
        (,,, bool done) = oracle.jobs(id);
        assertTrue(done);
        vm.prank(OPERATOR);
        vm.expectRevert(abi.encodeWithSelector(EstuaryOracle.EstuaryOracleAlreadyFulfilled.selector, id));
        oracle.fulfill(id, ok, junk);
    }

    /// Concrete twin: a failure whose reason does not decode.
    function test_FulfilOnce_Concrete() public {
        testFuzz_FulfilOnce(false, hex"00");
    }
}
