// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {EstuaryConsumer, EstuaryOracle} from "../src/EstuaryOracle.sol";
import {CidLib} from "../src/lib/CidLib.sol";
import {EstuaryResults} from "../src/lib/EstuaryResults.sol";
import {Operated} from "../src/lib/Operated.sol";
import {Test} from "forge-std/Test.sol";

contract GoodConsumer is EstuaryConsumer {
    uint256 public lastJob;
    bytes public lastPiece;
    uint64 public lastSize;
    uint64 public lastDeal;
    uint256 public lastDeals;
    bytes32 public lastCommP;
    string public lastFailure;

    constructor(EstuaryOracle oracle) EstuaryConsumer(oracle) {}

    receive() external payable {}

    function pin(bytes memory cid) external returns (uint256) {
        return requestPin(cid, 200_000);
    }

    function store(bytes memory cid) external returns (uint256) {
        return requestStore(cid, 3, false, 200_000);
    }

    function cancel(uint256 jobId) external {
        estuaryOracle.cancelJob(jobId, payable(address(this)));
    }

    function onPinned(uint256 jobId, bytes memory pieceCid, uint64 paddedSize) internal override {
        lastJob = jobId;
        lastPiece = pieceCid;
        lastSize = paddedSize;
    }

    function onStored(uint256 jobId, EstuaryResults.StoreResult memory result) internal override {
        lastJob = jobId;
        lastCommP = result.commP;
        lastDeals = result.deals.length;
        lastDeal = result.deals[0].dealId;
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
        return oracle.requestJob{value: oracle.quote(EstuaryOracle.JobKind.Pin, 100_000)}(
            EstuaryOracle.JobKind.Pin, cid, "", 100_000
        );
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

    uint256 internal constant GAS_PRICE = 2 gwei;
    uint256 internal constant PIN_QUOTE = 0.001 ether + 200_000 * GAS_PRICE;

    function setUp() public {
        oracle = new EstuaryOracle(OWNER, 1 days, 4);
        vm.startPrank(OWNER);
        oracle.setOperator(OPERATOR, true);
        oracle.setBaseFee(EstuaryOracle.JobKind.Pin, 0.001 ether);
        oracle.setBaseFee(EstuaryOracle.JobKind.Store, 0.01 ether);
        oracle.setCallbackGasPrice(GAS_PRICE);
        vm.stopPrank();
        consumer = new GoodConsumer(oracle);
        vm.deal(address(consumer), 1 ether);
    }

    function test_PinJob_RoundTrip() public {
        vm.expectEmit(address(oracle));
        emit EstuaryOracle.JobRequested(1, address(consumer), EstuaryOracle.JobKind.Pin, CID, "", 200_000);
        uint256 id = consumer.pin(CID);
        assertEq(oracle.feesEscrowed(), PIN_QUOTE);
        assertEq(oracle.feesHeld(), 0);
        vm.expectEmit(address(oracle));
        emit EstuaryOracle.JobFulfilled(id, true, true);
        vm.prank(OPERATOR);
        oracle.fulfill(id, true, abi.encode(PIECE, uint64(1 << 20)));
        assertEq(consumer.lastJob(), id);
        assertEq(consumer.lastPiece(), PIECE);
        assertEq(consumer.lastSize(), 1 << 20);
        assertEq(oracle.feesHeld(), PIN_QUOTE, "earned on fulfilment");
        assertEq(oracle.feesEscrowed(), 0);
        vm.prank(OPERATOR);
        vm.expectRevert(abi.encodeWithSelector(EstuaryOracle.EstuaryOracleAlreadyFulfilled.selector, id));
        oracle.fulfill(id, true, "");
    }

    /// Store jobs with deals: `EstuaryOracleStore.t.sol`.
    function test_Failure() public {
        uint256 failed = consumer.pin(CID);
        vm.prank(OPERATOR);
        oracle.fulfill(failed, false, abi.encode("content not found"));
        assertEq(consumer.lastFailure(), "content not found");
    }

    function test_RevertWhen_BadRequest() public {
        vm.expectRevert(
            abi.encodeWithSelector(
                EstuaryOracle.EstuaryOracleWrongPayment.selector, 0.001 ether + GAS_PRICE, 0
            )
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
        oracle.requestJob{value: 1 ether}(EstuaryOracle.JobKind.Pin, CID, "", 2_000_000);
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
        vm.startPrank(OWNER);
        oracle.setBaseFee(EstuaryOracle.JobKind.Pin, 0);
        oracle.setCallbackGasPrice(0);
        vm.stopPrank();
        BadConsumer bad = new BadConsumer();
        for (uint8 mode; mode < 3; ++mode) {
            bad.setMode(mode);
            uint256 id = bad.request(oracle, CID);
            vm.expectEmit(address(oracle));
            emit EstuaryOracle.JobFulfilled(id, true, false);
            vm.prank(OPERATOR);
            oracle.fulfill{gas: 500_000}(id, true, "");
            (,,, EstuaryOracle.JobState state,,) = oracle.jobs(id);
            assertEq(uint8(state), uint8(EstuaryOracle.JobState.Fulfilled));
        }
    }

    /// The operator must give the callback its full gas limit.
    function test_RevertWhen_OperatorStarvesTheCallback() public {
        uint256 id = consumer.pin(CID);
        vm.prank(OPERATOR);
        vm.expectPartialRevert(EstuaryOracle.EstuaryOracleNotEnoughGas.selector);
        oracle.fulfill{gas: 150_000}(id, true, abi.encode(PIECE, uint64(128)));
        (,,, EstuaryOracle.JobState state,,) = oracle.jobs(id);
        assertEq(uint8(state), uint8(EstuaryOracle.JobState.Open));
    }

    /// The price covers the callback gas asked for: base fee + limit × gas price.
    function test_Quote_CoversTheCallbackGas() public {
        vm.expectEmit(address(oracle));
        emit EstuaryOracle.BaseFeeSet(EstuaryOracle.JobKind.Store, 7);
        vm.prank(OWNER);
        oracle.setBaseFee(EstuaryOracle.JobKind.Store, 7);
        assertEq(oracle.quote(EstuaryOracle.JobKind.Store, 0), 7);
        assertEq(oracle.quote(EstuaryOracle.JobKind.Store, 70_000), 7 + 70_000 * GAS_PRICE);
        assertEq(oracle.quote(EstuaryOracle.JobKind.Pin, 1_000_000), 0.001 ether + 1_000_000 * GAS_PRICE);
    }

    /// Any limit: the payment must be exactly the quote, and it grows with the limit.
    function testFuzz_QuoteCoversTheCallbackGas(uint32 limit) public {
        limit = uint32(bound(limit, 0, oracle.MAX_CALLBACK_GAS()));
        uint256 cost = oracle.quote(EstuaryOracle.JobKind.Pin, limit);
        assertEq(cost, 0.001 ether + uint256(limit) * GAS_PRICE);
        vm.deal(address(this), cost);
        if (cost > 0) {
            vm.expectRevert(
                abi.encodeWithSelector(EstuaryOracle.EstuaryOracleWrongPayment.selector, cost, cost - 1)
            );
            oracle.requestJob{value: cost - 1}(EstuaryOracle.JobKind.Pin, CID, "", limit);
        }
        oracle.requestJob{value: cost}(EstuaryOracle.JobKind.Pin, CID, "", limit);
    }

    /// Concrete twin: the 70k-gas request of the issue.
    function test_QuoteCoversTheCallbackGas_Concrete() public {
        testFuzz_QuoteCoversTheCallbackGas(70_000);
    }

    /// Each consumer has at most its cap of open jobs; fulfilment frees a place.
    function test_ConsumerCap() public {
        for (uint256 k; k < 4; ++k) {
            consumer.pin(CID);
        }
        vm.expectRevert(
            abi.encodeWithSelector(
                EstuaryOracle.EstuaryOracleConsumerCapReached.selector, address(consumer), 4
            )
        );
        consumer.pin(CID);
        vm.prank(OPERATOR);
        oracle.fulfill(1, true, abi.encode(PIECE, uint64(128)));
        consumer.pin(CID);
        vm.expectEmit(address(oracle));
        emit EstuaryOracle.ConsumerCapSet(address(consumer), 6);
        vm.prank(OWNER);
        oracle.setConsumerCap(address(consumer), 6);
        consumer.pin(CID);
        assertEq(oracle.openJobs(address(consumer)), 5);
        assertEq(oracle.capOf(address(consumer)), 6);
    }

    /// A job unfulfilled past the timeout may be cancelled by its consumer, refunded in full.
    function test_CancelJob_AfterTimeoutRefunds() public {
        uint256 id = consumer.pin(CID);
        vm.expectRevert(abi.encodeWithSelector(EstuaryOracle.EstuaryOracleNotCancellable.selector, id));
        consumer.cancel(id);
        vm.expectRevert(
            abi.encodeWithSelector(EstuaryOracle.EstuaryOracleNotConsumer.selector, id, address(this))
        );
        oracle.cancelJob(id, payable(address(this)));
        vm.warp(block.timestamp + 1 days);
        uint256 before = address(consumer).balance;
        vm.expectEmit(address(oracle));
        emit EstuaryOracle.JobCancelled(id, address(consumer), PIN_QUOTE);
        consumer.cancel(id);
        assertEq(address(consumer).balance, before + PIN_QUOTE);
        assertEq(oracle.openJobs(address(consumer)), 0);
        assertEq(oracle.feesEscrowed(), 0);
        vm.prank(OPERATOR);
        vm.expectRevert(abi.encodeWithSelector(EstuaryOracle.EstuaryOracleAlreadyFulfilled.selector, id));
        oracle.fulfill(id, true, "");
    }

    function test_WithdrawFees() public {
        uint256 id = consumer.pin(CID);
        vm.prank(OPERATOR);
        oracle.fulfill(id, false, abi.encode("gone"));
        vm.expectEmit(address(oracle));
        emit EstuaryOracle.FeesWithdrawn(address(0xFEE), PIN_QUOTE);
        vm.prank(OWNER);
        oracle.withdrawFees(payable(address(0xFEE)));
        assertEq(address(0xFEE).balance, PIN_QUOTE);
        assertEq(oracle.feesHeld(), 0);
    }

    function test_RevertWhen_FeeRecipientRefuses() public {
        uint256 id = consumer.pin(CID);
        vm.prank(OPERATOR);
        oracle.fulfill(id, false, abi.encode("gone"));
        vm.prank(OWNER);
        vm.expectRevert(EstuaryOracle.EstuaryOracleTransferFailed.selector);
        oracle.withdrawFees(payable(address(this)));
        assertEq(oracle.feesHeld(), PIN_QUOTE);
    }

    /// Any payload delivered to a good consumer completes the job exactly once.
    function testFuzz_FulfilOnce(bool ok, bytes memory junk) public {
        uint256 id = consumer.pin(CID);
        vm.prank(OPERATOR);
        oracle.fulfill(id, ok, junk);
        (,,, EstuaryOracle.JobState state,,) = oracle.jobs(id);
        assertEq(uint8(state), uint8(EstuaryOracle.JobState.Fulfilled));
        vm.prank(OPERATOR);
        vm.expectRevert(abi.encodeWithSelector(EstuaryOracle.EstuaryOracleAlreadyFulfilled.selector, id));
        oracle.fulfill(id, ok, junk);
    }

    /// Concrete twin: a failure whose reason does not decode.
    function test_FulfilOnce_Concrete() public {
        testFuzz_FulfilOnce(false, hex"00");
    }
}
