// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {EstuaryPinning} from "./EstuaryPinning.sol";
import {PerpetualStorage} from "./PerpetualStorage.sol";
import {CidLib} from "./lib/CidLib.sol";
import {Operated} from "./lib/Operated.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";

/// @title DataDAO
/// @notice A DAO whose members decide which data to keep. A member proposes a CID; the other
///         members vote while the proposal is open (no self-vote, one vote each); after it
///         closes anyone may `execute` it: accepted when up-votes outnumber down-votes. An
///         accepted CID is sent to `EstuaryPinning` (paying its fee) and `orderBudget` of the
///         treasury is set aside; once the oracle has pinned it and knows its piece, the oracle
///         (a DAO operator) calls `fundOrder` to create a `PerpetualStorage` order, paid from that
///         budget, with the DAO as its client.
contract DataDAO is Operated, ReentrancyGuard {
    enum State {
        None,
        Open,
        Accepted,
        Rejected,
        Funded
    }

    struct Proposal {
        address proposer;
        uint64 deadline;
        uint32 up;
        uint32 down;
        State state;
        uint64 size;
        uint96 budget;
        bytes cid;
    }

    EstuaryPinning public immutable pinning;
    PerpetualStorage public immutable perpetual;
    /// @notice Seconds a proposal stays open for votes.
    uint64 public immutable votingPeriod;

    /// @notice Treasury set aside per accepted CID for its storage order.
    uint96 public orderBudget;
    /// @notice Treasury reserved for accepted proposals not yet funded.
    uint256 public reserved;
    uint256 public memberCount;
    uint256 public proposalCount;
    mapping(address account => bool) public isMember;
    mapping(uint256 id => Proposal) internal proposals;
    mapping(uint256 id => mapping(address member => bool)) public hasVoted;
    /// @notice The pin request made for an accepted proposal.
    mapping(uint256 id => uint256 requestId) public pinRequestOf;
    /// @notice The storage order made for a funded proposal.
    mapping(uint256 id => uint256 orderId) public orderOf;

    event MemberSet(address indexed account, bool member);
    event OrderBudgetSet(uint96 budget);
    event CIDProposed(uint256 indexed id, address indexed proposer, bytes cid, uint64 size, uint64 deadline);
    event CIDVoted(uint256 indexed id, address indexed member, bool up);
    /// @notice An accepted CID: the oracle pins it (request `pinRequestId`) and then calls `fundOrder`.
    event CIDAccepted(uint256 indexed id, bytes cid, uint64 size, uint256 pinRequestId, uint96 budget);
    event CIDRejected(uint256 indexed id);
    event OrderFunded(uint256 indexed id, uint256 indexed orderId, uint96 budget);
    event TreasuryFunded(address indexed from, uint256 amount);

    error DataDAONotMember(address caller);
    error DataDAOInvalidCid(CidLib.CidError reason);
    error DataDAOBadSize();
    error DataDAOUnknownProposal(uint256 id);
    error DataDAOSelfVote(uint256 id);
    error DataDAODoubleVote(uint256 id);
    error DataDAOVotingClosed(uint256 id);
    error DataDAOVotingOpen(uint256 id);
    error DataDAOWrongState(uint256 id, State state);
    error DataDAOTreasuryTooSmall(uint256 needed, uint256 available);
    error DataDAOPieceMismatch(uint256 id);

    constructor(address owner_, EstuaryPinning pinning_, PerpetualStorage perpetual_, uint64 votingPeriod_)
        Operated(owner_)
    {
        pinning = pinning_;
        perpetual = perpetual_;
        votingPeriod = votingPeriod_;
    }

    /// @notice Anyone may fund the treasury.
    receive() external payable {
        emit TreasuryFunded(msg.sender, msg.value);
    }

    modifier onlyMember() {
        if (!isMember[msg.sender]) revert DataDAONotMember(msg.sender);
        _;
    }

    /// @notice Proposes to keep `cid` (a binary CID) of about `size` bytes.
    function createCIDProposal(bytes calldata cid, uint64 size) external onlyMember returns (uint256 id) {
        CidLib.CidError err = CidLib.check(cid);
        if (err != CidLib.CidError.None) revert DataDAOInvalidCid(err);
        if (size == 0) revert DataDAOBadSize();
        id = ++proposalCount;
        uint64 deadline = uint64(block.timestamp) + votingPeriod;
        proposals[id] = Proposal(msg.sender, deadline, 0, 0, State.Open, size, 0, cid);
        emit CIDProposed(id, msg.sender, cid, size, deadline);
    }

    /// @notice Votes on an open proposal: once per member, never on one's own.
    function voteCIDProposal(uint256 id, bool up) external onlyMember {
        Proposal storage p = known(id);
        if (p.state != State.Open || block.timestamp >= p.deadline) revert DataDAOVotingClosed(id);
        if (p.proposer == msg.sender) revert DataDAOSelfVote(id);
        if (hasVoted[id][msg.sender]) revert DataDAODoubleVote(id);
        hasVoted[id][msg.sender] = true;
        if (up) p.up += 1;
        else p.down += 1;
        emit CIDVoted(id, msg.sender, up);
    }

    /// @notice Closes a proposal after its deadline: accepted (pinned, budget reserved) when
    ///         up-votes outnumber down-votes, else rejected.
    function execute(uint256 id) external nonReentrant {
        Proposal storage p = known(id);
        if (p.state != State.Open) revert DataDAOWrongState(id, p.state);
        if (block.timestamp < p.deadline) revert DataDAOVotingOpen(id);
        if (p.up <= p.down) {
            p.state = State.Rejected;
            emit CIDRejected(id);
            return;
        }
        uint256 fee = pinning.fee();
        uint256 needed = fee + orderBudget;
        uint256 available = address(this).balance - reserved;
        if (available < needed) revert DataDAOTreasuryTooSmall(needed, available);
        p.state = State.Accepted;
        p.budget = orderBudget;
        reserved += orderBudget;
        uint256 requestId = pinning.pinToEstuary{value: fee}(p.cid);
        pinRequestOf[id] = requestId;
        emit CIDAccepted(id, p.cid, p.size, requestId, p.budget);
    }

    /// @notice Creates the storage order of an accepted proposal with its reserved budget. The
    ///         order's payload CID must be the proposal's CID; the DAO is the order's client.
    function fundOrder(uint256 id, PerpetualStorage.OrderParams calldata params)
        external
        onlyOperator
        nonReentrant
        returns (uint256 orderId)
    {
        Proposal storage p = known(id);
        if (p.state != State.Accepted) revert DataDAOWrongState(id, p.state);
        if (keccak256(params.payloadCid) != keccak256(p.cid)) revert DataDAOPieceMismatch(id);
        p.state = State.Funded;
        uint96 budget = p.budget;
        reserved -= budget;
        orderId = perpetual.createOrder{value: budget}(params);
        orderOf[id] = orderId;
        emit OrderFunded(id, orderId, budget);
    }

    /// @notice A proposal.
    function getProposal(uint256 id) external view returns (Proposal memory) {
        return known(id);
    }

    /// @notice Adds or removes a member.
    function setMember(address account, bool member) external onlyOwner {
        if (isMember[account] == member) return;
        isMember[account] = member;
        if (member) memberCount += 1;
        else memberCount -= 1;
        emit MemberSet(account, member);
    }

    /// @notice Sets the budget reserved for each accepted CID's storage order.
    function setOrderBudget(uint96 budget) external onlyOwner {
        orderBudget = budget;
        emit OrderBudgetSet(budget);
    }

    function known(uint256 id) internal view returns (Proposal storage p) {
        p = proposals[id];
        if (p.state == State.None) revert DataDAOUnknownProposal(id);
    }
}
