// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {DataDAO} from "../src/DataDAO.sol";
import {EstuaryPinning} from "../src/EstuaryPinning.sol";
import {PerpetualStorage} from "../src/PerpetualStorage.sol";
import {CidLib} from "../src/lib/CidLib.sol";
import {Operated} from "../src/lib/Operated.sol";
import {FilecoinTest} from "./utils/FilecoinTest.sol";

contract DataDAOTest is FilecoinTest {
    DataDAO internal dao;
    EstuaryPinning internal pinning;
    PerpetualStorage internal ps;
    address internal constant OWNER = address(0x0A);
    address internal constant ORACLE = address(0x0C);
    address internal constant A = address(0xA);
    address internal constant B = address(0xB);
    address internal constant C = address(0xC);
    uint64 internal constant PERIOD = 1 days;

    function setUp() public {
        pinning = new EstuaryPinning(OWNER);
        ps = new PerpetualStorage(100, 1000, 0.01 ether);
        dao = new DataDAO(OWNER, pinning, ps, PERIOD);
        vm.startPrank(OWNER);
        dao.setMember(A, true);
        dao.setMember(B, true);
        dao.setMember(C, true);
        dao.setOperator(ORACLE, true);
        dao.setOrderBudget(3 ether);
        pinning.setFee(0.01 ether);
        vm.stopPrank();
        vm.deal(address(this), 10 ether);
        (bool ok,) = address(dao).call{value: 10 ether}("");
        assertTrue(ok);
    }

    function propose() internal returns (uint256 id) {
        vm.prank(A);
        id = dao.createCIDProposal(PAYLOAD, 1 << 20);
    }

    function vote(address who, uint256 id, bool up) internal {
        vm.prank(who);
        dao.voteCIDProposal(id, up);
    }

    function test_Admin_Emits() public {
        vm.startPrank(OWNER);
        vm.expectEmit(address(dao));
        emit DataDAO.MemberSet(address(0xD), true);
        dao.setMember(address(0xD), true);
        vm.expectEmit(address(dao));
        emit DataDAO.MemberSet(address(0xD), false);
        dao.setMember(address(0xD), false);
        vm.expectEmit(address(dao));
        emit DataDAO.OrderBudgetSet(2 ether);
        dao.setOrderBudget(2 ether);
        vm.stopPrank();
        assertEq(dao.memberCount(), 3);
        vm.deal(address(0xF), 1 ether);
        vm.expectEmit(address(dao));
        emit DataDAO.TreasuryFunded(address(0xF), 1 ether);
        vm.prank(address(0xF));
        (bool ok,) = address(dao).call{value: 1 ether}("");
        assertTrue(ok);
    }

    function test_Propose_EmitsAndStores() public {
        vm.expectEmit(address(dao));
        emit DataDAO.CIDProposed(1, A, PAYLOAD, 1 << 20, uint64(block.timestamp) + PERIOD);
        uint256 id = propose();
        DataDAO.Proposal memory p = dao.getProposal(id);
        assertEq(p.proposer, A);
        assertEq(uint8(p.state), uint8(DataDAO.State.Open));
        assertEq(dao.memberCount(), 3);
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
        vm.prank(address(0xD));
        vm.expectRevert(abi.encodeWithSelector(DataDAO.DataDAONotMember.selector, address(0xD)));
        dao.voteCIDProposal(id, true);
        vm.prank(B);
        vm.expectRevert(abi.encodeWithSelector(DataDAO.DataDAOUnknownProposal.selector, 9));
        dao.voteCIDProposal(9, true);
    }

    function test_Execute_AcceptedPinsAndFunds() public {
        uint256 id = propose();
        vote(B, id, true);
        vote(C, id, true);
        vm.expectRevert(abi.encodeWithSelector(DataDAO.DataDAOVotingOpen.selector, id));
        dao.execute(id);
        vm.warp(block.timestamp + PERIOD);
        vm.expectEmit(address(pinning));
        emit EstuaryPinning.PinRequested(1, address(dao), PAYLOAD);
        vm.expectEmit(address(dao));
        emit DataDAO.CIDAccepted(id, PAYLOAD, 1 << 20, 1, 3 ether);
        dao.execute(id);
        assertEq(dao.reserved(), 3 ether);
        assertEq(dao.pinRequestOf(id), 1);
        vm.expectRevert(
            abi.encodeWithSelector(DataDAO.DataDAOWrongState.selector, id, DataDAO.State.Accepted)
        );
        dao.execute(id);

        PerpetualStorage.OrderParams memory p;
        p.pieceCid = PIECE;
        p.payloadCid = PAYLOAD;
        p.paddedSize = PIECE_SIZE;
        p.replicas = 3;
        p.bounty = 0.5 ether;
        p.term = 1000;
        vm.expectRevert(abi.encodeWithSelector(Operated.NotOperator.selector, address(this)));
        dao.fundOrder(id, p);
        vm.expectEmit(address(dao));
        emit DataDAO.OrderFunded(id, 1, 3 ether);
        vm.prank(ORACLE);
        uint256 orderId = dao.fundOrder(id, p);
        PerpetualStorage.OrderView memory o = ps.getOrder(orderId);
        assertEq(o.client, address(dao));
        assertEq(o.balance, 3 ether);
        assertEq(dao.reserved(), 0);
        assertEq(address(dao).balance, 10 ether - 3 ether - 0.01 ether);
        vm.prank(ORACLE);
        vm.expectRevert(abi.encodeWithSelector(DataDAO.DataDAOWrongState.selector, id, DataDAO.State.Funded));
        dao.fundOrder(id, p);
    }

    function test_RevertWhen_OrderIsForAnotherCid() public {
        uint256 id = propose();
        vote(B, id, true);
        vm.warp(block.timestamp + PERIOD);
        dao.execute(id);
        PerpetualStorage.OrderParams memory p;
        p.pieceCid = PIECE;
        p.payloadCid = hex"1220b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9";
        vm.prank(ORACLE);
        vm.expectRevert(abi.encodeWithSelector(DataDAO.DataDAOPieceMismatch.selector, id));
        dao.fundOrder(id, p);
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

    /// Any vote pattern: accepted exactly when up-votes outnumber down-votes.
    function testFuzz_AcceptedIffMajorityUp(bool b, bool c, bool bVotes, bool cVotes) public {
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
        DataDAO.State want = up > down ? DataDAO.State.Accepted : DataDAO.State.Rejected;
        assertEq(uint8(dao.getProposal(id).state), uint8(want));
    }

    /// Concrete twin: one up, one down.
    function test_AcceptedIffMajorityUp_Concrete() public {
        testFuzz_AcceptedIffMajorityUp(true, false, true, true);
    }
}
