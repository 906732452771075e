// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {EstuaryOracle} from "../../src/EstuaryOracle.sol";
import {EstuaryResults} from "../../src/lib/EstuaryResults.sol";
import {PoDSI} from "../../src/lib/PoDSI.sol";
import {FilecoinTest} from "../utils/FilecoinTest.sol";
import {PieceTree} from "../utils/PieceTree.sol";
import {CommonBase} from "forge-std/Base.sol";
import {StdUtils} from "forge-std/StdUtils.sol";

/// A consumer that accepts every result (its callbacks only count).
contract CountingConsumer {
    uint256 public results;

    function onEstuaryResult(uint256, bool, bytes calldata) external {
        results += 1;
    }

    receive() external payable {}
}

/// Pin and store jobs requested by several consumers, fulfilled (store jobs with real, tampered
/// or inactive deals), cancelled after the timeout, fees withdrawn.
contract OracleHandler is CommonBase, StdUtils {
    EstuaryOracle internal immutable oracle;
    address internal immutable operator;
    CountingConsumer[3] internal consumers;
    bytes internal constant CID =
        hex"01551220c7d01489080858c500065836c658f847a6ca67c4864619212be4f8200e4bbace";

    bytes32 internal commP;
    uint64 internal paddedSize;
    PoDSI.InclusionProof internal proof;
    /// deals[0], deals[1]: active, providers 1000 and 1001; deals[2]: published, not active.
    uint64[3] internal deals;

    uint256 public paid;
    uint256 public refunded;
    uint256 public withdrawn;
    /// Store results accepted with a tampered proof or an inactive deal (must stay 0).
    uint256 public forgedAccepted;
    /// Store jobs delivered with valid deals (to see that the campaign reaches them).
    uint256 public stored;

    constructor(EstuaryOracle oracle_, address operator_) {
        oracle = oracle_;
        operator = operator_;
        for (uint256 k; k < 3; ++k) {
            consumers[k] = new CountingConsumer();
        }
    }

    function setDeals(
        bytes32 commP_,
        uint64 paddedSize_,
        PoDSI.InclusionProof memory proof_,
        uint64[3] memory deals_
    ) external {
        if (commP != 0) return; // set once, by the test's setUp
        commP = commP_;
        paddedSize = paddedSize_;
        proof = proof_;
        deals = deals_;
    }

    function request(uint256 who, bool store, uint32 gasLimit) external {
        CountingConsumer c = consumers[who % 3];
        gasLimit = uint32(bound(gasLimit, 0, 300_000));
        EstuaryOracle.JobKind kind = store ? EstuaryOracle.JobKind.Store : EstuaryOracle.JobKind.Pin;
        uint256 cost = oracle.quote(kind, gasLimit);
        vm.deal(address(c), cost);
        vm.prank(address(c));
        try oracle.requestJob{value: cost}(kind, CID, store ? abi.encode(2, false) : bytes(""), gasLimit) {
            paid += cost;
        } catch {}
    }

    /// Fulfils a job: `how` 0 a failure, 1 two valid deals, 2 a tampered proof, 3 an inactive deal.
    function fulfill(uint256 seed, uint8 how) external {
        uint256 n = oracle.jobCount();
        if (n == 0) return;
        uint256 id = 1 + seed % n;
        how %= 4;
        (,, EstuaryOracle.JobKind kind,,,) = oracle.jobs(id);
        bytes memory result = abi.encode("gone");
        if (how != 0 && kind == EstuaryOracle.JobKind.Store) {
            EstuaryResults.StoreResult memory r;
            r.commP = commP;
            r.paddedSize = paddedSize;
            r.deals = new EstuaryResults.StoredDeal[](2);
            r.deals[0] = EstuaryResults.StoredDeal(deals[0], 1000, proof);
            r.deals[1] =
                EstuaryResults.StoredDeal(how == 3 ? deals[2] : deals[1], how == 3 ? 1000 : 1001, proof);
            if (how == 2) {
                r.deals[1].proof = PoDSI.InclusionProof(proof.proofSubtree, proof.proofIndex);
                bytes32[] memory path = new bytes32[](proof.proofIndex.path.length);
                for (uint256 i; i < path.length; ++i) {
                    path[i] = proof.proofIndex.path[i];
                }
                path[seed % path.length] ^= bytes32(uint256(1) << (seed % 254));
                r.deals[1].proof.proofIndex.path = path;
            }
            result = EstuaryResults.encodeStore(r);
        } else if (how != 0) {
            result = abi.encode(PoDSI.pieceCidOf(commP), paddedSize);
        }
        vm.prank(operator);
        try oracle.fulfill{gas: 5_000_000}(id, how != 0, result) {
            if (kind == EstuaryOracle.JobKind.Store && how >= 2) forgedAccepted += 1;
            if (kind == EstuaryOracle.JobKind.Store && how == 1) stored += 1;
        } catch {}
    }

    function cancel(uint256 seed) external {
        uint256 n = oracle.jobCount();
        if (n == 0) return;
        uint256 id = 1 + seed % n;
        (address requester,,,,, uint96 amount) = oracle.jobs(id);
        vm.prank(requester);
        try oracle.cancelJob(id, payable(address(0xCA))) {
            refunded += amount;
        } catch {}
    }

    function warp(uint32 secondsLater) external {
        vm.warp(block.timestamp + bound(secondsLater, 1, 2 days));
    }

    function withdrawFees() external {
        uint256 amount = oracle.feesHeld();
        vm.prank(oracle.owner());
        oracle.withdrawFees(payable(address(0xFEE)));
        withdrawn += amount;
    }

    function consumer(uint256 k) external view returns (address) {
        return address(consumers[k]);
    }
}

contract EstuaryOracleInvariantTest is FilecoinTest {
    EstuaryOracle internal oracle;
    OracleHandler internal handler;
    address internal constant OPERATOR = address(0x0C);

    function setUp() public {
        installMarket();
        useDevPolicy();
        vm.roll(1000);
        oracle = new EstuaryOracle(address(this), 1 days, 4);
        oracle.setOperator(OPERATOR, true);
        oracle.setBaseFee(EstuaryOracle.JobKind.Pin, 0.001 ether);
        oracle.setBaseFee(EstuaryOracle.JobKind.Store, 0.01 ether);
        oracle.setCallbackGasPrice(1 gwei);
        handler = new OracleHandler(oracle, OPERATOR);
        oracle.transferOwnership(address(handler));
        vm.prank(address(handler));
        oracle.acceptOwnership();

        PieceTree.Piece[] memory pieces = new PieceTree.Piece[](2);
        (pieces[0], pieces[1]) = (PieceTree.Piece(3, 1), PieceTree.Piece(2, 2));
        PieceTree.Aggregate memory a = PieceTree.build(8, pieces, new PieceTree.Corruption[](0));
        createMiner(1000, address(0x5B1));
        createMiner(1001, address(0x5B2));
        uint64[3] memory deals = [
            dealFor(PieceTree.root(a), 1000, address(0x5B1), 0),
            dealFor(PieceTree.root(a), 1001, address(0x5B2), 0),
            dealFor(PieceTree.root(a), 1000, address(0x5B1), 1)
        ];
        assertTrue(activateDeal(1000, address(0x5B1), deals[0], 1));
        assertTrue(activateDeal(1001, address(0x5B2), deals[1], 1));
        handler.setDeals(a.commPs[0], a.sizes[0], PieceTree.inclusion(a, 0), deals);
        targetContract(address(handler));
    }

    function dealFor(bytes32 commP, uint64 provider, address controller, int64 n) internal returns (uint64) {
        return publishPiece(commP, 8192, provider, controller, 10, n);
    }

    /// Every payment is held (escrowed for open jobs, earned for fulfilled ones) until refunded
    /// or withdrawn.
    function invariant_PaymentsAreHeld() public view {
        assertEq(address(oracle).balance, oracle.feesHeld() + oracle.feesEscrowed());
        assertEq(
            oracle.feesHeld() + oracle.feesEscrowed() + handler.refunded() + handler.withdrawn(),
            handler.paid()
        );
    }

    /// Each consumer's open-job count is its jobs still open, never above its cap.
    function invariant_OpenJobsCounted() public view {
        uint256[3] memory open;
        for (uint256 id = 1; id <= oracle.jobCount(); ++id) {
            (address consumer,,, EstuaryOracle.JobState state,,) = oracle.jobs(id);
            for (uint256 k; k < 3; ++k) {
                if (consumer == handler.consumer(k) && state == EstuaryOracle.JobState.Open) open[k] += 1;
            }
        }
        for (uint256 k; k < 3; ++k) {
            assertEq(oracle.openJobs(handler.consumer(k)), open[k]);
            assertLe(open[k], oracle.capOf(handler.consumer(k)));
        }
    }

    /// No store result with a tampered proof or an inactive deal is ever delivered.
    function invariant_OnlyVerifiedStoreResults() public view {
        assertEq(handler.forgedAccepted(), 0);
    }

    /// The handler's path reaches a delivered store job, and refuses forged ones.
    function test_HandlerStoresAJob() public {
        handler.request(0, true, 100_000);
        handler.fulfill(0, 2);
        handler.fulfill(0, 3);
        handler.fulfill(0, 1);
        assertEq(handler.stored(), 1);
        invariant_OnlyVerifiedStoreResults();
        invariant_PaymentsAreHeld();
    }
}
