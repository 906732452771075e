// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {DataDAO} from "../../src/DataDAO.sol";
import {EstuaryPinning} from "../../src/EstuaryPinning.sol";
import {PerpetualStorage} from "../../src/PerpetualStorage.sol";
import {PoDSI} from "../../src/lib/PoDSI.sol";
import {FilecoinTest} from "../utils/FilecoinTest.sol";
import {CommonBase} from "forge-std/Base.sol";
import {StdUtils} from "forge-std/StdUtils.sol";

/// Proposals, votes, acceptances, pins, the oracle funding orders (or not in time) and renewing
/// their replicas, expiries, and the owner setting orders' replicas and cancelling orders, in
/// any order.
contract DataDAOHandler is CommonBase, StdUtils {
    DataDAO internal immutable dao;
    EstuaryPinning internal immutable pinning;
    PerpetualStorage internal immutable perpetual;
    address internal immutable operator;
    address[3] internal members = [address(0xA1), address(0xB1), address(0xC1)];
    bytes internal constant CID =
        hex"01551220c7d01489080858c500065836c658f847a6ca67c4864619212be4f8200e4bbace";

    constructor(DataDAO dao_, EstuaryPinning pinning_, PerpetualStorage perpetual_, address operator_) {
        dao = dao_;
        pinning = pinning_;
        perpetual = perpetual_;
        operator = operator_;
    }

    function proposal(uint256 seed) internal view returns (uint256) {
        uint256 n = dao.proposalCount();
        return n == 0 ? 0 : 1 + seed % n;
    }

    function propose(uint256 who) external {
        vm.prank(members[who % 3]);
        dao.createCIDProposal(CID, 1 << 20);
    }

    function vote(uint256 seed, uint256 who, bool up) external {
        uint256 id = proposal(seed);
        if (id == 0) return;
        vm.prank(members[who % 3]);
        try dao.voteCIDProposal(id, up) {} catch {}
    }

    function warp(uint32 secondsLater) external {
        vm.warp(block.timestamp + bound(secondsLater, 1, 3 days));
        vm.roll(block.number + 1);
    }

    function execute(uint256 seed) external {
        uint256 id = proposal(seed);
        if (id == 0) return;
        try dao.execute(id) {} catch {}
    }

    /// The oracle reports an accepted proposal's CID pinned, with a piece of its choosing.
    function pin(uint256 seed, bytes32 commP, uint8 height) external {
        uint256 id = proposal(seed);
        if (id == 0 || dao.pinRequestOf(id) == 0) return;
        uint64 size = uint64(128) << bound(height, 0, 20);
        uint256 requestId = dao.pinRequestOf(id);
        vm.prank(operator);
        try pinning.reportPinned(requestId, keccak256(CID), PoDSI.pieceCidOf(commP), size) {} catch {}
    }

    function fund(uint256 seed, uint64 carSize) external {
        uint256 id = proposal(seed);
        if (id == 0) return;
        string[] memory origins = new string[](1);
        origins[0] = "https://oracle.example/piece";
        vm.prank(operator);
        try dao.fundOrder(id, uint64(bound(carSize, 1, 1 << 28)), origins) {
            funded += 1;
        } catch {}
    }

    function expire(uint256 seed) external {
        uint256 id = proposal(seed);
        if (id == 0) return;
        try dao.expireProposal(id) {} catch {}
    }

    /// Orders funded (to see that the campaign reaches them).
    uint256 public funded;

    /// The oracle sets a funded order's target for a renewal (any target: out of bounds refused).
    function renew(uint256 seed, uint16 target) external {
        uint256 id = proposal(seed);
        if (id == 0) return;
        vm.prank(operator);
        try dao.renewReplicas(id, uint16(bound(target, 0, 8))) {} catch {}
    }

    /// The replicas the owner last set for each proposal's order (0: never).
    mapping(uint256 id => uint16) public ownerReplicas;

    /// The owner sets a funded order's replicas.
    function setReplicas(uint256 seed, uint16 replicas) external {
        uint256 id = proposal(seed);
        if (id == 0) return;
        uint16 r = uint16(bound(replicas, 1, 8));
        vm.prank(dao.owner());
        try dao.setOrderReplicas(id, r) {
            ownerReplicas[id] = r;
        } catch {}
    }

    function cancelOrder(uint256 seed) external {
        uint256 id = proposal(seed);
        if (id == 0) return;
        vm.prank(dao.owner());
        try dao.cancelOrder(id) {
            dao.withdrawRefunds();
        } catch {}
    }
}

contract DataDAOInvariantTest is FilecoinTest {
    DataDAO internal dao;
    EstuaryPinning internal pinning;
    PerpetualStorage internal perpetual;
    DataDAOHandler internal handler;
    address internal constant ORACLE = address(0x0C);

    function setUp() public {
        installMarket();
        vm.roll(1000);
        pinning = new EstuaryPinning(address(this), 1 days);
        perpetual = new PerpetualStorage(codec, 100, 1000, 3_000_000, 0.01 ether);
        dao = new DataDAO(address(this), pinning, perpetual, 1 days, 7 days, 5000);
        pinning.setOperator(ORACLE, true);
        pinning.setFee(0.01 ether);
        dao.setOperator(ORACLE, true);
        dao.setOrderBudget(1 ether);
        dao.setOrderTerms(DataDAO.OrderTerms({replicas: 3, term: 1000, bounty: 0.2 ether, verified: false}));
        dao.setMember(address(0xA1), true);
        dao.setMember(address(0xB1), true);
        dao.setMember(address(0xC1), true);
        vm.deal(address(dao), 20 ether);
        vm.roll(block.number + 1);
        handler = new DataDAOHandler(dao, pinning, perpetual, ORACLE);
        targetContract(address(handler));
    }

    /// The handler's path reaches funded orders (propose, votes, execute, pin, fund).
    function test_HandlerFundsAnOrder() public {
        handler.propose(0);
        handler.vote(0, 1, true);
        handler.vote(0, 2, true);
        handler.warp(1 days);
        handler.execute(0);
        handler.pin(0, bytes32(uint256(7)), 13);
        handler.fund(0, 1000);
        assertEq(handler.funded(), 1);
        handler.renew(0, 5);
        handler.renew(0, 7);
        handler.setReplicas(0, 2);
        assertEq(handler.ownerReplicas(1), 2);
        handler.renew(0, 4);
        invariant_ReservedIsTheAcceptedBudgets();
        invariant_FundedOrdersAreThePinsPieceOnTheDaosTerms();
    }

    /// The reserved treasury is exactly the budgets of accepted proposals not yet funded or
    /// expired, and the treasury always holds it.
    function invariant_ReservedIsTheAcceptedBudgets() public view {
        uint256 sum;
        for (uint256 id = 1; id <= dao.proposalCount(); ++id) {
            DataDAO.Proposal memory p = dao.getProposal(id);
            if (p.state == DataDAO.State.Accepted) sum += p.budget;
        }
        assertEq(dao.reserved(), sum);
        assertGe(address(dao).balance, dao.reserved());
    }

    /// Every funded order is the DAO's, for the proposal's CID, for the piece its pin reported,
    /// on the DAO's terms (its replicas those of the terms or the owner's last setting, its target
    /// between them and twice them: renewals), with the proposal's budget; and only proposals
    /// pinned get funded.
    function invariant_FundedOrdersAreThePinsPieceOnTheDaosTerms() public view {
        (uint16 replicas, uint64 term, uint96 bounty, bool verified) = dao.orderTerms();
        for (uint256 id = 1; id <= dao.proposalCount(); ++id) {
            DataDAO.Proposal memory p = dao.getProposal(id);
            if (p.state != DataDAO.State.Funded) {
                assertEq(dao.orderOf(id), 0);
                continue;
            }
            EstuaryPinning.RequestStatus memory pin = pinning.getRequest(dao.pinRequestOf(id));
            assertTrue(pin.pinned);
            PerpetualStorage.OrderView memory o = perpetual.getOrder(dao.orderOf(id));
            assertEq(o.client, address(dao));
            assertEq(o.payloadCid, p.cid);
            assertEq(o.pieceCid, PoDSI.pieceCidOf(pin.commP));
            assertEq(o.paddedSize, pin.paddedSize);
            uint16 kept = handler.ownerReplicas(id) == 0 ? replicas : handler.ownerReplicas(id);
            assertEq(dao.orderReplicas(id), kept);
            assertGe(o.replicas, kept);
            assertLe(o.replicas, 2 * uint256(kept));
            assertEq(o.term, term);
            assertEq(o.bounty, bounty);
            assertEq(o.verified, verified);
            if (!o.cancelled) assertEq(o.balance, p.budget);
        }
    }
}
