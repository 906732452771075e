// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {DataDAO} from "../src/DataDAO.sol";
import {EstuaryPinning} from "../src/EstuaryPinning.sol";
import {PerpetualStorage} from "../src/PerpetualStorage.sol";
import {CidLib} from "../src/lib/CidLib.sol";
import {Operated} from "../src/lib/Operated.sol";
import {FilecoinTest} from "./utils/FilecoinTest.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";

contract DataDAOTest is FilecoinTest {
    DataDAO internal dao;
    EstuaryPinning internal pinning;
    PerpetualStorage internal ps;
    address internal constant OWNER = address(0x0A);
    address internal constant ORACLE = address(0x0C);
    address internal constant A = address(0xA1);
    address internal constant B = address(0xB1);
    address internal constant C = address(0xC1);
    address internal constant D = address(0xD1);
    uint64 internal constant PERIOD = 1 days;
    uint64 internal constant FUNDING = 7 days;
    bytes32 internal constant COMMP = 0x1111111111111111111111111111111111111111111111111111111111111111;

    function setUp() public {
        installMarket();
        vm.roll(1000);
        pinning = new EstuaryPinning(OWNER, 1 days);
        ps = new PerpetualStorage(codec, 100, 1000, 3_000_000, 0.01 ether);
        dao = new DataDAO(OWNER, pinning, ps, PERIOD, FUNDING, 5000);
        vm.startPrank(OWNER);
        dao.setMember(A, true);
        dao.setMember(B, true);
        dao.setMember(C, true);
        dao.setOperator(ORACLE, true);
        dao.setOrderBudget(3 ether);
        dao.setOrderTerms(DataDAO.OrderTerms({replicas: 3, term: 1000, bounty: 0.5 ether, verified: false}));
        pinning.setFee(0.01 ether);
        pinning.setOperator(ORACLE, true);
        vm.stopPrank();
        vm.deal(address(this), 10 ether);
        (bool ok,) = address(dao).call{value: 10 ether}("");
        assertTrue(ok);
        vm.roll(block.number + 1);
    }

    function propose() internal returns (uint256 id) {
        vm.prank(A);
        id = dao.createCIDProposal(PAYLOAD, 1 << 20);
    }

    function vote(address who, uint256 id, bool up) internal {
        vm.prank(who);
        dao.voteCIDProposal(id, up);
    }

    function origins() internal pure returns (string[] memory o) {
        o = new string[](1);
        o[0] = "https://oracle.example/piece/baga6ea4seaqcfcdwumhuvgkqxb7fzxqv3h6x7bqwcbj4v3jm2pxrhcmzr3b7rbi";
    }

    function fund(uint256 id) internal returns (uint256) {
        vm.prank(ORACLE);
        return dao.fundOrder(id, CAR_SIZE, origins());
    }

    /// Accepted (two up-votes of two eligible), then the oracle reports the pin.
    function accepted() internal returns (uint256 id) {
        id = propose();
        vote(B, id, true);
        vote(C, id, true);
        vm.warp(block.timestamp + PERIOD);
        dao.execute(id);
    }

    function reportPinned(uint256 id, bytes memory piece, uint64 size) internal {
        uint256 requestId = dao.pinRequestOf(id);
        vm.prank(ORACLE);
        pinning.reportPinned(requestId, keccak256(PAYLOAD), piece, size);
    }

    // ------------------------------------------------------------------ membership and admin

    function test_Admin_Emits() public {
        vm.startPrank(OWNER);
        vm.expectEmit(address(dao));
        emit DataDAO.MemberSet(D, true);
        dao.setMember(D, true);
        vm.expectEmit(address(dao));
        emit DataDAO.MemberSet(D, false);
        dao.setMember(D, false);
        vm.expectEmit(address(dao));
        emit DataDAO.OrderBudgetSet(2 ether);
        dao.setOrderBudget(2 ether);
        vm.expectEmit(address(dao));
        emit DataDAO.QuorumSet(6000);
        dao.setQuorum(6000);
        vm.expectRevert(abi.encodeWithSelector(DataDAO.DataDAOBadQuorum.selector, 0));
        dao.setQuorum(0);
        vm.stopPrank();
        assertEq(dao.memberCount(), 3);
        vm.deal(address(0xF), 1 ether);
        vm.expectEmit(address(dao));
        emit DataDAO.TreasuryFunded(address(0xF), 1 ether);
        vm.prank(address(0xF));
        (bool ok,) = address(dao).call{value: 1 ether}("");
        assertTrue(ok);
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, address(this)));
        dao.setMember(D, true);
    }

    function test_Propose_EmitsAndStores() public {
        vm.expectEmit(address(dao));
        // Quorum: half of the two eligible voters (the proposer excepted).
        emit DataDAO.CIDProposed(1, A, PAYLOAD, 1 << 20, uint64(block.timestamp) + PERIOD, 1);
        uint256 id = propose();
        DataDAO.Proposal memory p = dao.getProposal(id);
        assertEq(p.proposer, A);
        assertEq(uint8(p.state), uint8(DataDAO.State.Open));
        assertEq(p.snapshot, block.number);
        assertEq(p.quorum, 1);
    }

    function test_RevertWhen_NotMemberOrBadCid() public {
        vm.expectRevert(abi.encodeWithSelector(DataDAO.DataDAONotMember.selector, address(this)));
        dao.createCIDProposal(PAYLOAD, 1);
        vm.prank(A);
        vm.expectRevert(abi.encodeWithSelector(DataDAO.DataDAOInvalidCid.selector, CidLib.CidError.Empty));
        dao.createCIDProposal("", 1);
        vm.prank(A);
        vm.expectRevert(DataDAO.DataDAOBadSize.selector);
        dao.createCIDProposal(PAYLOAD, 0);
    }

    function test_Vote_RulesAreEnforced() public {
        uint256 id = propose();
        vm.prank(A);
        vm.expectRevert(abi.encodeWithSelector(DataDAO.DataDAOSelfVote.selector, id));
        dao.voteCIDProposal(id, true);
        vm.expectEmit(address(dao));
        emit DataDAO.CIDVoted(id, B, true);
        vote(B, id, true);
        vm.prank(B);
        vm.expectRevert(abi.encodeWithSelector(DataDAO.DataDAODoubleVote.selector, id));
        dao.voteCIDProposal(id, false);
        vm.warp(block.timestamp + PERIOD);
        vm.prank(C);
        vm.expectRevert(abi.encodeWithSelector(DataDAO.DataDAOVotingClosed.selector, id));
        dao.voteCIDProposal(id, true);
        vm.prank(D);
        vm.expectRevert(abi.encodeWithSelector(DataDAO.DataDAONotMember.selector, D));
        dao.voteCIDProposal(id, true);
        vm.prank(B);
        vm.expectRevert(abi.encodeWithSelector(DataDAO.DataDAOUnknownProposal.selector, 9));
        dao.voteCIDProposal(9, true);
    }

    /// Votes come from the membership as of the proposal: a member added later cannot vote, a
    /// member removed later still can.
    function test_Vote_MembershipAsOfTheProposal() public {
        uint256 id = propose();
        vm.roll(block.number + 1);
        vm.startPrank(OWNER);
        dao.setMember(D, true);
        dao.setMember(C, false);
        vm.stopPrank();
        vm.prank(D);
        vm.expectRevert(abi.encodeWithSelector(DataDAO.DataDAONotMember.selector, D));
        dao.voteCIDProposal(id, true);
        vote(C, id, true);
        assertEq(dao.getProposal(id).up, 1);
        assertTrue(dao.wasMember(C, dao.getProposal(id).snapshot));
        assertFalse(dao.isMember(C));
    }

    // ------------------------------------------------------------------ execution

    /// One up-vote against none no longer passes without a quorum.
    function test_Execute_QuorumIsNeeded() public {
        vm.prank(OWNER);
        dao.setQuorum(10_000);
        uint256 id = propose();
        vote(B, id, true);
        vm.warp(block.timestamp + PERIOD);
        vm.expectEmit(address(dao));
        emit DataDAO.CIDRejected(id);
        dao.execute(id);
        assertEq(pinning.requestCount(), 0);
    }

    function test_Execute_AcceptedPinsAndReserves() public {
        uint256 id = propose();
        vote(B, id, true);
        vote(C, id, true);
        vm.expectRevert(abi.encodeWithSelector(DataDAO.DataDAOVotingOpen.selector, id));
        dao.execute(id);
        vm.warp(block.timestamp + PERIOD);
        vm.expectEmit(address(pinning));
        emit EstuaryPinning.PinRequested(1, address(dao), PAYLOAD);
        vm.expectEmit(address(dao));
        emit DataDAO.CIDAccepted(id, PAYLOAD, 1 << 20, 1, 3 ether, uint64(block.timestamp) + FUNDING);
        dao.execute(id);
        assertEq(dao.reserved(), 3 ether);
        assertEq(dao.pinRequestOf(id), 1);
        vm.expectRevert(
            abi.encodeWithSelector(DataDAO.DataDAOWrongState.selector, id, DataDAO.State.Accepted)
        );
        dao.execute(id);
    }

    /// `fundOrder` needs the pin reported, and creates the order for the pin's piece on the DAO's
    /// terms: the oracle brings only the CAR's size and the origins.
    function test_FundOrder_ThePinsPieceOnTheDaosTerms() public {
        uint256 id = accepted();
        vm.prank(ORACLE);
        vm.expectRevert(abi.encodeWithSelector(DataDAO.DataDAONotPinned.selector, id, 1));
        dao.fundOrder(id, CAR_SIZE, origins());
        reportPinned(id, PIECE, PIECE_SIZE);
        vm.expectRevert(abi.encodeWithSelector(Operated.NotOperator.selector, address(this)));
        dao.fundOrder(id, CAR_SIZE, origins());
        // A CAR larger than the piece holds: PerpetualStorage refuses it.
        vm.prank(ORACLE);
        vm.expectRevert(
            abi.encodeWithSelector(PerpetualStorage.PerpetualStorageBadSize.selector, PIECE_SIZE, PIECE_SIZE)
        );
        dao.fundOrder(id, PIECE_SIZE, origins());
        vm.expectEmit(address(dao));
        emit DataDAO.OrderFunded(id, 1, 3 ether);
        uint256 orderId = fund(id);
        PerpetualStorage.OrderView memory o = ps.getOrder(orderId);
        assertEq(o.client, address(dao));
        assertEq(o.pieceCid, PIECE);
        assertEq(o.paddedSize, PIECE_SIZE);
        assertEq(o.payloadCid, PAYLOAD);
        assertEq(o.carSize, CAR_SIZE);
        assertEq(o.replicas, 3);
        assertEq(o.term, 1000);
        assertEq(o.bounty, 0.5 ether);
        assertFalse(o.verified);
        assertEq(o.origins[0], origins()[0]);
        assertEq(o.balance, 3 ether);
        assertEq(dao.reserved(), 0);
        assertEq(address(dao).balance, 10 ether - 3 ether - 0.01 ether);
        vm.prank(ORACLE);
        vm.expectRevert(abi.encodeWithSelector(DataDAO.DataDAOWrongState.selector, id, DataDAO.State.Funded));
        dao.fundOrder(id, CAR_SIZE, origins());
    }

    /// The order terms stay within PerpetualStorage's bounds; without them nothing is accepted
    /// (no pin fee is spent on a CID no order could follow).
    function test_OrderTerms() public {
        DataDAO.OrderTerms[4] memory bad = [
            DataDAO.OrderTerms(0, 1000, 1, false),
            DataDAO.OrderTerms(33, 1000, 1, false),
            DataDAO.OrderTerms(3, 999, 1, false),
            DataDAO.OrderTerms(3, 1000, 0, false)
        ];
        vm.startPrank(OWNER);
        for (uint256 k; k < 4; ++k) {
            vm.expectRevert(DataDAO.DataDAOBadOrderTerms.selector);
            dao.setOrderTerms(bad[k]);
        }
        vm.expectEmit(address(dao));
        emit DataDAO.OrderTermsSet(2, 3_000_000, 1 ether, true);
        dao.setOrderTerms(DataDAO.OrderTerms(2, 3_000_000, 1 ether, true));
        vm.stopPrank();
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, address(this)));
        dao.setOrderTerms(DataDAO.OrderTerms(2, 3_000_000, 1 ether, true));

        DataDAO unset = new DataDAO(OWNER, pinning, ps, PERIOD, FUNDING, 5000);
        vm.startPrank(OWNER);
        unset.setMember(A, true);
        unset.setMember(B, true);
        vm.stopPrank();
        vm.deal(address(unset), 1 ether);
        vm.roll(block.number + 1);
        vm.prank(A);
        uint256 id = unset.createCIDProposal(PAYLOAD, 1 << 20);
        vm.prank(B);
        unset.voteCIDProposal(id, true);
        vm.warp(block.timestamp + PERIOD);
        vm.expectRevert(DataDAO.DataDAOBadOrderTerms.selector);
        unset.execute(id);
    }

    /// An accepted proposal not funded in time expires: its budget is released, its pin request
    /// cancelled, and the pin fee comes back once EstuaryPinning's rule allows.
    function test_Expire_ReleasesTheBudget() public {
        uint256 id = accepted();
        vm.expectRevert(
            abi.encodeWithSelector(DataDAO.DataDAOFundingOpen.selector, id, dao.getProposal(id).fundBy)
        );
        dao.expireProposal(id);
        vm.warp(block.timestamp + FUNDING + 1);
        vm.prank(ORACLE);
        vm.expectPartialRevert(DataDAO.DataDAOFundingClosed.selector);
        dao.fundOrder(id, CAR_SIZE, origins());
        vm.expectEmit(address(dao));
        emit DataDAO.ProposalExpired(id, 3 ether);
        dao.expireProposal(id);
        assertEq(dao.reserved(), 0);
        assertTrue(pinning.getRequest(1).cancelled);
        uint256 before = address(dao).balance;
        dao.claimPinRefund(id);
        assertEq(address(dao).balance, before + 0.01 ether);
    }

    function test_Execute_TieIsRejected() public {
        uint256 id = propose();
        vote(B, id, true);
        vote(C, id, false);
        vm.warp(block.timestamp + PERIOD);
        vm.expectEmit(address(dao));
        emit DataDAO.CIDRejected(id);
        dao.execute(id);
        assertEq(uint8(dao.getProposal(id).state), uint8(DataDAO.State.Rejected));
        assertEq(pinning.requestCount(), 0);
    }

    function test_RevertWhen_TreasuryTooSmall() public {
        vm.prank(OWNER);
        dao.setOrderBudget(20 ether);
        uint256 id = propose();
        vote(B, id, true);
        vm.warp(block.timestamp + PERIOD);
        vm.expectRevert(
            abi.encodeWithSelector(DataDAO.DataDAOTreasuryTooSmall.selector, 20.01 ether, 10 ether)
        );
        dao.execute(id);
    }

    // ------------------------------------------------------------------ the DAO's orders

    /// The owner manages the DAO's order, cancels it and takes the refund back to the treasury.
    function test_Orders_ManageCancelAndTakeBackRefunds() public {
        uint256 id = accepted();
        reportPinned(id, PIECE, PIECE_SIZE);
        uint256 orderId = fund(id);
        vm.startPrank(OWNER);
        dao.setOrderBounty(id, 0.7 ether);
        dao.setOrderReplicas(id, 2);
        dao.setOrderSuspended(id, true);
        string[] memory other = new string[](1);
        other[0] = "https://origin.example/x.car";
        dao.setOrderOrigins(id, other);
        dao.topUpOrder(id, 1 ether);
        vm.stopPrank();
        PerpetualStorage.OrderView memory o = ps.getOrder(orderId);
        assertEq(o.bounty, 0.7 ether);
        assertEq(o.replicas, 2);
        assertTrue(o.suspended);
        assertEq(o.balance, 4 ether);
        vm.prank(OWNER);
        dao.cancelOrder(id);
        uint256 before = address(dao).balance;
        dao.withdrawRefunds();
        assertEq(address(dao).balance, before + 4 ether);
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, address(this)));
        dao.cancelOrder(id);
        vm.prank(OWNER);
        vm.expectRevert(abi.encodeWithSelector(DataDAO.DataDAOUnknownProposal.selector, 99));
        dao.cancelOrder(99);
    }

    /// The oracle, as the DAO's operator, marks a lost replica of the DAO's order: the slot
    /// reopens, its provider is excluded, the loss fee comes out of the order. No one else may,
    /// nor for a proposal without an order.
    function test_MarkReplicaLost_ForTheDaoByItsOperator() public {
        useDevPolicy();
        uint64 miner = 1001;
        address sp = address(0x5B);
        createMiner(miner, sp);
        vm.deal(sp, 10 ether);
        uint256 id = accepted();
        vm.prank(ORACLE);
        vm.expectRevert(
            abi.encodeWithSelector(DataDAO.DataDAOWrongState.selector, id, DataDAO.State.Accepted)
        );
        dao.markReplicaLost(id, miner);
        reportPinned(id, PIECE, PIECE_SIZE);
        uint256 orderId = fund(id);
        // The SP claims a slot, publishes its deal, and the replica is active.
        uint96 bond = ps.bondFor(orderId);
        uint256 collateral = market.minProviderCollateral(PIECE_SIZE);
        vm.prank(sp);
        (, bytes32 proposalId) = ps.claim{value: bond}(orderId, miner, collateral);
        uint64 dealId = publishOne(sp, ps.getDealProposal(proposalId));
        assertTrue(activateDeal(miner, sp, dealId, dealId));
        ps.publish(orderId, miner);
        assertEq(ps.getOrder(orderId).active, 1);
        for (uint256 k; k < 3; ++k) {
            address who = [A, OWNER, sp][k];
            vm.prank(who);
            vm.expectRevert(abi.encodeWithSelector(Operated.NotOperator.selector, who));
            dao.markReplicaLost(id, miner);
        }
        vm.expectEmit(address(ps));
        emit PerpetualStorage.SlotLost(orderId, miner, address(dao), bond);
        vm.prank(ORACLE);
        dao.markReplicaLost(id, miner);
        PerpetualStorage.OrderView memory o = ps.getOrder(orderId);
        assertEq(o.active, 0);
        assertEq(o.inUse, 0);
        assertTrue(ps.excluded(orderId, miner));
        assertTrue(ps.getSlot(orderId, miner).state == PerpetualStorage.SlotState.Open);
        vm.prank(ORACLE);
        vm.expectRevert(
            abi.encodeWithSelector(PerpetualStorage.PerpetualStorageNotClaimed.selector, orderId, miner)
        );
        dao.markReplicaLost(id, miner);
    }

    /// The oracle renews the DAO's replicas ahead of their end: the order's target raised for
    /// another provider to claim, then lowered back, only between the DAO's replicas and twice
    /// them; the owner's `setOrderReplicas` moves those bounds. No one else may renew, nor for
    /// a proposal without an order.
    function test_RenewReplicas_ByTheOperatorWithinTheDaosBounds() public {
        uint256 id = accepted();
        vm.prank(ORACLE);
        vm.expectRevert(
            abi.encodeWithSelector(DataDAO.DataDAOWrongState.selector, id, DataDAO.State.Accepted)
        );
        dao.renewReplicas(id, 4);
        reportPinned(id, PIECE, PIECE_SIZE);
        uint256 orderId = fund(id);
        assertEq(dao.orderReplicas(id), 3, "the terms' replicas");
        for (uint256 k; k < 3; ++k) {
            address who = [A, OWNER, address(this)][k];
            vm.prank(who);
            vm.expectRevert(abi.encodeWithSelector(Operated.NotOperator.selector, who));
            dao.renewReplicas(id, 4);
        }
        vm.expectEmit(address(ps));
        emit PerpetualStorage.ReplicaTargetChanged(orderId, 4);
        vm.prank(ORACLE);
        dao.renewReplicas(id, 4);
        assertEq(ps.getOrder(orderId).replicas, 4);
        vm.prank(ORACLE);
        dao.renewReplicas(id, 3);
        assertEq(ps.getOrder(orderId).replicas, 3);
        vm.startPrank(ORACLE);
        vm.expectRevert(abi.encodeWithSelector(DataDAO.DataDAOBadRenewalTarget.selector, id, 2, 3));
        dao.renewReplicas(id, 2);
        vm.expectRevert(abi.encodeWithSelector(DataDAO.DataDAOBadRenewalTarget.selector, id, 7, 3));
        dao.renewReplicas(id, 7);
        vm.stopPrank();
        // The owner keeps one replica: renewals go from one to two.
        vm.prank(OWNER);
        dao.setOrderReplicas(id, 1);
        assertEq(dao.orderReplicas(id), 1);
        vm.startPrank(ORACLE);
        dao.renewReplicas(id, 2);
        vm.expectRevert(abi.encodeWithSelector(DataDAO.DataDAOBadRenewalTarget.selector, id, 3, 1));
        dao.renewReplicas(id, 3);
        vm.stopPrank();
        assertEq(ps.getOrder(orderId).replicas, 2);
    }

    // ------------------------------------------------------------------ fuzz

    /// Any renewal target: taken exactly when it is between the DAO's replicas and twice them.
    function testFuzz_RenewReplicas_WithinBounds(uint16 base, uint16 target) public {
        base = uint16(bound(base, 1, 16));
        target = uint16(bound(target, 0, 40));
        uint256 id = accepted();
        reportPinned(id, PIECE, PIECE_SIZE);
        uint256 orderId = fund(id);
        vm.prank(OWNER);
        dao.setOrderReplicas(id, base);
        vm.prank(ORACLE);
        if (target < base || target > 2 * base) {
            vm.expectRevert(
                abi.encodeWithSelector(DataDAO.DataDAOBadRenewalTarget.selector, id, target, base)
            );
            dao.renewReplicas(id, target);
            assertEq(ps.getOrder(orderId).replicas, base);
        } else {
            dao.renewReplicas(id, target);
            assertEq(ps.getOrder(orderId).replicas, target);
        }
    }

    /// Concrete twins: twice the replicas (taken) and one more (refused).
    function test_RenewReplicas_WithinBounds_Concrete() public {
        testFuzz_RenewReplicas_WithinBounds(5, 10);
        testFuzz_RenewReplicas_WithinBounds(5, 11);
    }

    /// Any vote pattern: accepted exactly when the votes reach the quorum and up-votes
    /// outnumber down-votes.
    function testFuzz_AcceptedIffQuorumAndMajority(bool b, bool c, bool bVotes, bool cVotes, uint16 quorum)
        public
    {
        quorum = uint16(bound(quorum, 1, 10_000));
        vm.prank(OWNER);
        dao.setQuorum(quorum);
        uint256 id = propose();
        uint256 up;
        uint256 down;
        if (bVotes) {
            vote(B, id, b);
            b ? up++ : down++;
        }
        if (cVotes) {
            vote(C, id, c);
            c ? up++ : down++;
        }
        vm.warp(block.timestamp + PERIOD);
        dao.execute(id);
        uint256 needed = (2 * uint256(quorum) + 9_999) / 10_000;
        DataDAO.State want =
            up + down >= needed && up > down ? DataDAO.State.Accepted : DataDAO.State.Rejected;
        assertEq(uint8(dao.getProposal(id).state), uint8(want));
    }

    /// Concrete twin: one up, one down, half the members needed.
    function test_AcceptedIffQuorumAndMajority_Concrete() public {
        testFuzz_AcceptedIffQuorumAndMajority(true, false, true, true, 5000);
    }
}
