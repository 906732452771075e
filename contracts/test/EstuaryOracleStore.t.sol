// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {EstuaryOracle} from "../src/EstuaryOracle.sol";
import {EstuaryResults} from "../src/lib/EstuaryResults.sol";
import {PoDSI} from "../src/lib/PoDSI.sol";
import {GoodConsumer} from "./EstuaryOracle.t.sol";
import {FilecoinTest} from "./utils/FilecoinTest.sol";
import {PoDSIFixture} from "./utils/PoDSIFixture.sol";

/// What a consumer contract would call to check a result it kept, later.
contract ResultChecker {
    function verifyDeal(bytes32 commP, uint64 paddedSize, EstuaryResults.StoredDeal calldata deal)
        external
        returns (EstuaryResults.Verdict verdict, PoDSI.Failure failure)
    {
        return EstuaryResults.verifyDeal(commP, paddedSize, deal);
    }
}

/// Store jobs: fulfilled with active deals at their providers and FRC-0058 proofs, which the
/// oracle contract verifies against the (simulated) market before the consumer hears of them.
contract EstuaryOracleStoreTest is FilecoinTest, PoDSIFixture {
    EstuaryOracle internal oracle;
    GoodConsumer internal consumer;
    ResultChecker internal checker;
    address internal constant OWNER = address(0x0A);
    address internal constant OPERATOR = address(0x0C);
    address internal constant SP = address(0x5B1);
    address internal constant SP2 = address(0x5B2);
    address internal constant SP3 = address(0x5B3);
    bytes internal constant CID =
        hex"01551220c7d01489080858c500065836c658f847a6ca67c4864619212be4f8200e4bbace";

    /// The piece of the fixture's "estuary payloads" aggregate the content is.
    uint256 internal piece;
    /// Makes each deal's proposal unique (identical ones in a block are published once).
    int64 internal nonce;

    function setUp() public {
        installMarket();
        useDevPolicy();
        vm.roll(1000);
        createMiner(1000, SP);
        createMiner(1001, SP2);
        createMiner(1002, SP3);
        oracle = new EstuaryOracle(OWNER, 1 days, 4);
        vm.prank(OWNER);
        oracle.setOperator(OPERATOR, true);
        consumer = new GoodConsumer(oracle);
        checker = new ResultChecker();
        loadFixture();
        piece = firstOf("e") + 2;
    }

    /// An active deal of `provider` for the aggregate holding `cases[piece]`.
    function activeDealAt(uint64 provider, address controller, bool activate)
        internal
        returns (uint64 dealId)
    {
        Case storage c = cases[piece];
        dealId = publishPiece(c.commPa, c.sizePa, provider, controller, 10, ++nonce);
        if (activate) assertTrue(activateDeal(provider, controller, dealId, dealId));
    }

    function resultOf(uint64[] memory dealIds, uint64[] memory providers)
        internal
        view
        returns (EstuaryResults.StoreResult memory r)
    {
        Case storage c = cases[piece];
        r.commP = c.commPc;
        r.paddedSize = c.sizePc;
        r.deals = new EstuaryResults.StoredDeal[](dealIds.length);
        for (uint256 k; k < dealIds.length; ++k) {
            r.deals[k] = EstuaryResults.StoredDeal(dealIds[k], providers[k], proofOf(c));
        }
    }

    function three() internal returns (EstuaryResults.StoreResult memory) {
        uint64[] memory ids = new uint64[](3);
        uint64[] memory providers = new uint64[](3);
        (providers[0], providers[1], providers[2]) = (1000, 1001, 1002);
        ids[0] = activeDealAt(1000, SP, true);
        ids[1] = activeDealAt(1001, SP2, true);
        ids[2] = activeDealAt(1002, SP3, true);
        return resultOf(ids, providers);
    }

    function storeJob() internal returns (uint256) {
        vm.deal(address(consumer), 1 ether);
        return consumer.store(CID);
    }

    function expectInvalid(
        uint256 jobId,
        uint256 index,
        EstuaryResults.Verdict verdict,
        PoDSI.Failure failure
    ) internal {
        vm.expectRevert(
            abi.encodeWithSelector(
                EstuaryOracle.EstuaryOracleInvalidDeal.selector, jobId, index, verdict, failure
            )
        );
    }

    // ------------------------------------------------------------------ delivered

    /// Three replicas at three providers, each proven: the consumer gets them, and can check a
    /// deal again later (after a termination, the market says it is gone).
    function test_StoreJob_FulfilledWithProvenActiveDeals() public {
        uint256 id = storeJob();
        EstuaryResults.StoreResult memory r = three();
        vm.expectEmit(address(oracle));
        emit EstuaryOracle.JobFulfilled(id, true, true);
        vm.prank(OPERATOR);
        oracle.fulfill(id, true, EstuaryResults.encodeStore(r));
        assertEq(consumer.lastJob(), id);
        assertEq(consumer.lastDeals(), 3);
        assertEq(consumer.lastDeal(), r.deals[0].dealId);
        assertEq(consumer.lastCommP(), cases[piece].commPc);

        (EstuaryResults.Verdict v,) = checker.verifyDeal(r.commP, r.paddedSize, r.deals[1]);
        assertEq(uint8(v), uint8(EstuaryResults.Verdict.Valid));
        terminateSector(1001, SP2, r.deals[1].dealId);
        (v,) = checker.verifyDeal(r.commP, r.paddedSize, r.deals[1]);
        assertEq(uint8(v), uint8(EstuaryResults.Verdict.DealExpired));
    }

    /// The ABI's decoder gives back what was encoded (what off-chain encoders check against).
    function test_DecodeStoreResult_RoundTrips() public {
        EstuaryResults.StoreResult memory r = three();
        EstuaryResults.StoreResult memory back = oracle.decodeStoreResult(EstuaryResults.encodeStore(r));
        assertEq(keccak256(abi.encode(back)), keccak256(abi.encode(r)));
    }

    // ------------------------------------------------------------------ refused

    function test_RevertWhen_ADealDoesNotHold() public {
        uint256 id = storeJob();
        EstuaryResults.StoreResult memory r = three();

        // Published, not active yet.
        r.deals[2].dealId = activeDealAt(1002, SP3, false);
        expectInvalid(id, 2, EstuaryResults.Verdict.NotActive, PoDSI.Failure.None);
        vm.prank(OPERATOR);
        oracle.fulfill(id, true, EstuaryResults.encodeStore(r));

        // Another provider's.
        r = three();
        r.deals[1].provider = 1002;
        expectInvalid(id, 1, EstuaryResults.Verdict.WrongProvider, PoDSI.Failure.None);
        vm.prank(OPERATOR);
        oracle.fulfill(id, true, EstuaryResults.encodeStore(r));

        // Never published; gone.
        r = three();
        r.deals[0].dealId = 999;
        expectInvalid(id, 0, EstuaryResults.Verdict.DealNotFound, PoDSI.Failure.None);
        vm.prank(OPERATOR);
        oracle.fulfill(id, true, EstuaryResults.encodeStore(r));
        r = three();
        terminateSector(1000, SP, r.deals[0].dealId);
        expectInvalid(id, 0, EstuaryResults.Verdict.DealExpired, PoDSI.Failure.None);
        vm.prank(OPERATOR);
        oracle.fulfill(id, true, EstuaryResults.encodeStore(r));

        // Another piece than the one proven.
        r = three();
        r.commP = cases[piece + 1].commPc;
        expectInvalid(id, 0, EstuaryResults.Verdict.InvalidProof, PoDSI.Failure.CommitmentsDiffer);
        vm.prank(OPERATOR);
        oracle.fulfill(id, true, EstuaryResults.encodeStore(r));

        // No deals; too many.
        r.deals = new EstuaryResults.StoredDeal[](0);
        expectInvalid(id, 0, EstuaryResults.Verdict.InvalidProof, PoDSI.Failure.None);
        vm.prank(OPERATOR);
        oracle.fulfill(id, true, EstuaryResults.encodeStore(r));
        r.deals = new EstuaryResults.StoredDeal[](11);
        expectInvalid(id, 11, EstuaryResults.Verdict.InvalidProof, PoDSI.Failure.None);
        vm.prank(OPERATOR);
        oracle.fulfill(id, true, EstuaryResults.encodeStore(r));

        (,,, EstuaryOracle.JobState state,,) = oracle.jobs(id);
        assertEq(uint8(state), uint8(EstuaryOracle.JobState.Open), "still open: nothing delivered");
        // A failure needs no deal.
        vm.prank(OPERATOR);
        oracle.fulfill(id, false, abi.encode("no provider took it"));
        assertEq(consumer.lastFailure(), "no provider took it");
    }

    /// Any bit of any node of a deal's proof flipped: the result is refused. (Each run publishes
    /// and activates three deals: fewer runs; PoDSI.t.sol fuzzes the proofs themselves.)
    /// forge-config: default.fuzz.runs = 500
    function testFuzz_RevertWhen_ProofTampered(uint256 deal, uint256 node, uint8 bit) public {
        uint256 id = storeJob();
        EstuaryResults.StoreResult memory r = three();
        deal %= 3;
        // Each deal has its own copy of the proof (`proofOf` reads it from storage each time).
        flip(r.deals[deal].proof, node, bit);
        vm.expectPartialRevert(EstuaryOracle.EstuaryOracleInvalidDeal.selector);
        vm.prank(OPERATOR);
        oracle.fulfill(id, true, EstuaryResults.encodeStore(r));
    }

    function test_RevertWhen_ProofTampered_Concrete() public {
        testFuzz_RevertWhen_ProofTampered(2, 0, 0);
    }

    /// Any bytes as a store job's result that are not a valid `StoreResult`: refused, the job
    /// stays open (nothing reaches the consumer).
    /// forge-config: default.fuzz.runs = 2000
    function testFuzz_RevertWhen_StoreResultIsJunk(bytes memory junk) public {
        uint256 id = storeJob();
        vm.prank(OPERATOR);
        (bool ok,) = address(oracle).call(abi.encodeCall(EstuaryOracle.fulfill, (id, true, junk)));
        assertFalse(ok);
        (,,, EstuaryOracle.JobState state,,) = oracle.jobs(id);
        assertEq(uint8(state), uint8(EstuaryOracle.JobState.Open));
        assertEq(consumer.lastJob(), 0);
    }

    function test_RevertWhen_StoreResultIsJunk_Concrete() public {
        // A pin job's result given to a store job; then a store result cut short.
        testFuzz_RevertWhen_StoreResultIsJunk(abi.encode(PoDSI.pieceCidOf(bytes32(0)), uint64(128)));
        bytes memory cut = EstuaryResults.encodeStore(three());
        assembly {
            mstore(cut, 200)
        }
        testFuzz_RevertWhen_StoreResultIsJunk(cut);
    }

    /// Store params: `(uint16 replicas, bool verified)`, 1 to 10 replicas.
    function test_RevertWhen_BadStoreParams() public {
        uint256 cost = oracle.quote(EstuaryOracle.JobKind.Store, 0);
        bytes[4] memory bad =
            [abi.encode(0, false), abi.encode(11, false), abi.encode(uint256(3)), abi.encode(3, uint256(2))];
        for (uint256 k; k < 4; ++k) {
            vm.expectRevert(EstuaryOracle.EstuaryOracleBadParams.selector);
            oracle.requestJob{value: cost}(EstuaryOracle.JobKind.Store, CID, bad[k], 0);
        }
        oracle.requestJob{value: cost}(EstuaryOracle.JobKind.Store, CID, abi.encode(10, true), 0);
    }

    // ------------------------------------------------------------------ gas

    /// Fulfilling a store job with three replicas: the checks (market queries and proofs) and a
    /// callback that decodes the result.
    function test_Gas_FulfilStoreWithThreeDeals() public {
        uint256 id = storeJob();
        bytes memory result = EstuaryResults.encodeStore(three());
        vm.cool(address(oracle));
        vm.prank(OPERATOR);
        oracle.fulfill(id, true, result);
        uint256 used = vm.snapshotGasLastCall("EstuaryOracle", "fulfill store job, 3 deals (8 MiB)");
        emit log_named_uint("fulfill gas, store job with 3 deals", used);
    }
}
