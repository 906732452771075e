// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {EstuaryPinning} from "./EstuaryPinning.sol";
import {PerpetualStorage} from "./PerpetualStorage.sol";
import {CidLib} from "./lib/CidLib.sol";
import {Operated} from "./lib/Operated.sol";
import {PoDSI} from "./lib/PoDSI.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {Checkpoints} from "@openzeppelin/contracts/utils/structs/Checkpoints.sol";

/// @title DataDAO
/// @notice A DAO whose members decide which data to keep. A member proposes a CID; the members
///         as of the proposal's block (the proposer excepted) vote while it is open, one vote
///         each; after it closes anyone may `execute` it: accepted when the votes cast reach the
///         proposal's quorum and up-votes outnumber down-votes. An accepted CID is sent to
///         `EstuaryPinning` (paying its fee) and `orderBudget` of the treasury is reserved; once
///         the oracle has pinned it, the oracle (a DAO operator) calls `fundOrder` within
///         `fundingPeriod` to create a `PerpetualStorage` order for the piece the pin reported,
///         on the DAO's own `orderTerms` (replicas, term, bounty, verified), paid from that
///         budget, with the DAO as its client: the oracle brings only what it alone knows (the
///         CAR's size and where providers download it), so no one has a manual step and the
///         operator chooses nothing the members pay for. An accepted proposal not funded in
///         time expires: its budget is released and its pin request cancelled (the pin fee is
///         refundable under EstuaryPinning's rule). The owner manages the DAO's orders (cancel,
///         suspend, bounty, replicas, origins, more funds) and refunds come back to the treasury.
contract DataDAO is Operated, ReentrancyGuard {
    using Checkpoints for Checkpoints.Trace208;

    enum State {
        None,
        Open,
        Accepted,
        Rejected,
        Funded,
        Expired
    }

    struct Proposal {
        address proposer;
        uint64 deadline;
        uint32 up;
        uint32 down;
        State state;
        /// Block whose membership votes (membership at the end of the proposal's block).
        uint48 snapshot;
        /// Votes that must be cast for the proposal to pass.
        uint32 quorum;
        uint64 size;
        uint96 budget;
        /// Last second for `fundOrder` once accepted.
        uint64 fundBy;
        bytes cid;
    }

    /// @notice The terms of the storage orders the DAO funds (the owner sets them).
    struct OrderTerms {
        /// Replicas per order (1 to `PerpetualStorage.MAX_REPLICAS`).
        uint16 replicas;
        /// Epochs each replica's deal lasts (within PerpetualStorage's `minTerm`/`maxTerm`).
        uint64 term;
        /// The base bounty per replica term, paid from the order's budget.
        uint96 bounty;
        /// Whether deals must be verified (Fil+: the order pays with DataCap).
        bool verified;
    }

    EstuaryPinning public immutable pinning;
    PerpetualStorage public immutable perpetual;
    /// @notice Seconds a proposal stays open for votes.
    uint64 public immutable votingPeriod;
    /// @notice Seconds from acceptance within which the order must be funded.
    uint64 public immutable fundingPeriod;

    /// @notice Treasury set aside per accepted CID for its storage order.
    uint96 public orderBudget;
    /// @notice The terms of the orders `fundOrder` creates.
    OrderTerms public orderTerms;
    /// @notice Share of the eligible members (in basis points) whose votes make a quorum.
    uint16 public quorumBps;
    /// @notice Treasury reserved for accepted proposals not yet funded.
    uint256 public reserved;
    uint256 public proposalCount;
    Checkpoints.Trace208 internal members;
    mapping(address account => Checkpoints.Trace208) internal membership;
    mapping(uint256 id => Proposal) internal proposals;
    mapping(uint256 id => mapping(address member => bool)) public hasVoted;
    /// @notice The pin request made for an accepted proposal.
    mapping(uint256 id => uint256 requestId) public pinRequestOf;
    /// @notice The storage order made for a funded proposal.
    mapping(uint256 id => uint256 orderId) public orderOf;
    /// @notice The replicas the DAO keeps of a funded proposal's order: its terms' when funded,
    ///         then what the owner sets (`setOrderReplicas`). A renewal (`renewReplicas`) raises
    ///         the order's target above it for a while, never below it nor above twice it.
    mapping(uint256 id => uint16 replicas) public orderReplicas;

    event MemberSet(address indexed account, bool member);
    event OrderBudgetSet(uint96 budget);
    event OrderTermsSet(uint16 replicas, uint64 term, uint96 bounty, bool verified);
    event QuorumSet(uint16 quorumBps);
    event CIDProposed(
        uint256 indexed id, address indexed proposer, bytes cid, uint64 size, uint64 deadline, uint32 quorum
    );
    event CIDVoted(uint256 indexed id, address indexed member, bool up);
    /// @notice An accepted CID: the oracle pins it (request `pinRequestId`) and then calls `fundOrder`.
    event CIDAccepted(
        uint256 indexed id, bytes cid, uint64 size, uint256 pinRequestId, uint96 budget, uint64 fundBy
    );
    event CIDRejected(uint256 indexed id);
    /// @notice An accepted proposal was not funded in time; its budget is released.
    event ProposalExpired(uint256 indexed id, uint96 budget);
    event OrderFunded(uint256 indexed id, uint256 indexed orderId, uint96 budget);
    event TreasuryFunded(address indexed from, uint256 amount);

    error DataDAONotMember(address caller);
    error DataDAOInvalidCid(CidLib.CidError reason);
    error DataDAOBadSize();
    error DataDAOBadQuorum(uint16 quorumBps);
    error DataDAOUnknownProposal(uint256 id);
    error DataDAOSelfVote(uint256 id);
    error DataDAODoubleVote(uint256 id);
    error DataDAOVotingClosed(uint256 id);
    error DataDAOVotingOpen(uint256 id);
    error DataDAOWrongState(uint256 id, State state);
    error DataDAOTreasuryTooSmall(uint256 needed, uint256 available);
    /// @notice The order terms are out of PerpetualStorage's bounds, or not set yet.
    error DataDAOBadOrderTerms();
    /// @notice The proposal's CID is not reported pinned yet.
    error DataDAONotPinned(uint256 id, uint256 requestId);
    /// @notice The funding period is over (`expireProposal`), or not yet over.
    error DataDAOFundingClosed(uint256 id, uint64 fundBy);
    error DataDAOFundingOpen(uint256 id, uint64 fundBy);
    /// @notice A renewal's target is below the order's replicas or above twice them.
    error DataDAOBadRenewalTarget(uint256 id, uint16 replicas, uint16 orderReplicas);

    /// @param owner_ The owner: members, budget, quorum, and the DAO's orders.
    /// @param votingPeriod_ Seconds a proposal is open for votes.
    /// @param fundingPeriod_ Seconds an accepted proposal has to be funded.
    /// @param quorumBps_ Share of eligible members that must vote, in basis points.
    constructor(
        address owner_,
        EstuaryPinning pinning_,
        PerpetualStorage perpetual_,
        uint64 votingPeriod_,
        uint64 fundingPeriod_,
        uint16 quorumBps_
    ) Operated(owner_) {
        pinning = pinning_;
        perpetual = perpetual_;
        votingPeriod = votingPeriod_;
        fundingPeriod = fundingPeriod_;
        setQuorumBps(quorumBps_);
    }

    /// @notice Anyone may fund the treasury; refunds come back here too.
    receive() external payable {
        emit TreasuryFunded(msg.sender, msg.value);
    }

    modifier onlyMember() {
        if (!isMember(msg.sender)) revert DataDAONotMember(msg.sender);
        _;
    }

    // ------------------------------------------------------------------ membership

    /// @notice Whether `account` is a member now.
    function isMember(address account) public view returns (bool) {
        return membership[account].latest() != 0;
    }

    /// @notice Whether `account` was a member at the end of block `blockNumber`.
    function wasMember(address account, uint48 blockNumber) public view returns (bool) {
        return membership[account].upperLookupRecent(blockNumber) != 0;
    }

    /// @notice Members now.
    function memberCount() public view returns (uint256) {
        return members.latest();
    }

    /// @notice Members at the end of block `blockNumber`.
    function memberCountAt(uint48 blockNumber) public view returns (uint256) {
        return members.upperLookupRecent(blockNumber);
    }

    // ------------------------------------------------------------------ proposals

    /// @notice Proposes to keep `cid` (a binary CID) of about `size` bytes. The members as of
    ///         this block vote on it; the quorum is `quorumBps` of them, the proposer excepted.
    function createCIDProposal(bytes calldata cid, uint64 size) external onlyMember returns (uint256 id) {
        CidLib.CidError err = CidLib.check(cid);
        if (err != CidLib.CidError.None) revert DataDAOInvalidCid(err);
        if (size == 0) revert DataDAOBadSize();
        id = ++proposalCount;
        uint48 snapshot = uint48(block.number);
        uint256 eligible = memberCountAt(snapshot) - 1;
        uint32 quorum = uint32((eligible * quorumBps + 9_999) / 10_000);
        uint64 deadline = uint64(block.timestamp) + votingPeriod;
        Proposal storage p = proposals[id];
        p.proposer = msg.sender;
        p.deadline = deadline;
        p.state = State.Open;
        p.snapshot = snapshot;
        p.quorum = quorum;
        p.size = size;
        p.cid = cid;
        emit CIDProposed(id, msg.sender, cid, size, deadline, quorum);
    }

    /// @notice Votes on an open proposal: members as of its block only, once each, never on
    ///         one's own.
    function voteCIDProposal(uint256 id, bool up) external {
        Proposal storage p = known(id);
        if (!wasMember(msg.sender, p.snapshot)) revert DataDAONotMember(msg.sender);
        if (p.state != State.Open || block.timestamp >= p.deadline) revert DataDAOVotingClosed(id);
        if (p.proposer == msg.sender) revert DataDAOSelfVote(id);
        if (hasVoted[id][msg.sender]) revert DataDAODoubleVote(id);
        hasVoted[id][msg.sender] = true;
        if (up) p.up += 1;
        else p.down += 1;
        emit CIDVoted(id, msg.sender, up);
    }

    /// @notice Closes a proposal after its deadline: accepted (pinned, budget reserved until
    ///         `fundBy`) when the votes cast reach its quorum and up-votes outnumber down-votes,
    ///         else rejected.
    // The pin request goes to the immutable EstuaryPinning; the function is nonReentrant.
    // slither-disable-next-line reentrancy-benign,reentrancy-events
    function execute(uint256 id) external nonReentrant {
        Proposal storage p = known(id);
        if (p.state != State.Open) revert DataDAOWrongState(id, p.state);
        if (block.timestamp < p.deadline) revert DataDAOVotingOpen(id);
        if (uint256(p.up) + p.down < p.quorum || p.up <= p.down) {
            p.state = State.Rejected;
            emit CIDRejected(id);
            return;
        }
        // No pin fee is spent on an acceptance no order could follow.
        if (orderTerms.replicas == 0) revert DataDAOBadOrderTerms();
        uint256 fee = pinning.fee();
        uint256 needed = fee + orderBudget;
        uint256 available = address(this).balance - reserved;
        if (available < needed) revert DataDAOTreasuryTooSmall(needed, available);
        p.state = State.Accepted;
        p.budget = orderBudget;
        p.fundBy = uint64(block.timestamp) + fundingPeriod;
        reserved += orderBudget;
        uint256 requestId = pinning.pinToEstuary{value: fee}(p.cid);
        pinRequestOf[id] = requestId;
        emit CIDAccepted(id, p.cid, p.size, requestId, p.budget, p.fundBy);
    }

    /// @notice Creates the storage order of an accepted proposal, once its CID is pinned, with
    ///         its reserved budget: the proposal's CID as payload, the piece its pin request was
    ///         reported with (commitment and padded size), the DAO's `orderTerms`, the DAO as
    ///         client. The oracle gives only what it alone knows.
    /// @param carSize The CAR's size in bytes (providers download exactly this many).
    /// @param origins Where providers download the CAR (e.g. the oracle's `/piece/{pieceCid}`).
    // slither-disable-next-line reentrancy-benign,reentrancy-events
    function fundOrder(uint256 id, uint64 carSize, string[] calldata origins)
        external
        onlyOperator
        nonReentrant
        returns (uint256 orderId)
    {
        Proposal storage p = known(id);
        if (p.state != State.Accepted) revert DataDAOWrongState(id, p.state);
        if (block.timestamp > p.fundBy) revert DataDAOFundingClosed(id, p.fundBy);
        EstuaryPinning.RequestStatus memory pin = pinning.getRequest(pinRequestOf[id]);
        if (!pin.pinned) revert DataDAONotPinned(id, pinRequestOf[id]);
        OrderTerms memory terms = orderTerms;
        PerpetualStorage.OrderParams memory params = PerpetualStorage.OrderParams({
            pieceCid: PoDSI.pieceCidOf(pin.commP),
            payloadCid: p.cid,
            paddedSize: pin.paddedSize,
            carSize: carSize,
            replicas: terms.replicas,
            bounty: terms.bounty,
            term: terms.term,
            verified: terms.verified,
            origins: origins
        });
        p.state = State.Funded;
        uint96 budget = p.budget;
        reserved -= budget;
        orderId = perpetual.createOrder{value: budget}(params);
        orderOf[id] = orderId;
        orderReplicas[id] = terms.replicas;
        emit OrderFunded(id, orderId, budget);
    }

    /// @notice Expires an accepted proposal not funded by `fundBy` (anyone may call): its
    ///         budget is released and its pin request cancelled if still open.
    // slither-disable-next-line reentrancy-benign,reentrancy-events
    function expireProposal(uint256 id) external nonReentrant {
        Proposal storage p = known(id);
        if (p.state != State.Accepted) revert DataDAOWrongState(id, p.state);
        if (block.timestamp <= p.fundBy) revert DataDAOFundingOpen(id, p.fundBy);
        p.state = State.Expired;
        reserved -= p.budget;
        emit ProposalExpired(id, p.budget);
        EstuaryPinning.RequestStatus memory pin = pinning.getRequest(pinRequestOf[id]);
        if (!pin.cancelled && !pin.failed) pinning.cancel(pinRequestOf[id]);
    }

    /// @notice Takes back the pin fee of a proposal's request when EstuaryPinning's refund rule
    ///         allows it (failed, or not pinned in time); it returns to the treasury.
    function claimPinRefund(uint256 id) external nonReentrant {
        known(id);
        pinning.claimRefund(pinRequestOf[id], payable(address(this)));
    }

    /// @notice A proposal.
    function getProposal(uint256 id) external view returns (Proposal memory) {
        return known(id);
    }

    // ------------------------------------------------------------------ the DAO's orders

    /// @notice Cancels the order of a funded proposal; what it refunds waits in PerpetualStorage
    ///         for `withdrawRefunds`.
    function cancelOrder(uint256 id) external onlyOwner {
        perpetual.cancel(funded(id));
    }

    /// @notice Suspends or resumes claims on a proposal's order.
    function setOrderSuspended(uint256 id, bool suspended) external onlyOwner {
        perpetual.setSuspended(funded(id), suspended);
    }

    /// @notice Changes the bounty of a proposal's order.
    function setOrderBounty(uint256 id, uint96 bounty) external onlyOwner {
        perpetual.setBounty(funded(id), bounty);
    }

    /// @notice Changes the replicas the DAO keeps of a proposal's order (its target).
    function setOrderReplicas(uint256 id, uint16 replicas) external onlyOwner {
        uint256 orderId = funded(id);
        orderReplicas[id] = replicas;
        perpetual.setReplicaTarget(orderId, replicas);
    }

    /// @notice Sets a proposal's order's replica target for a renewal, for the DAO (the order's
    ///         client): while a replica nears its term's end, one more slot for another provider
    ///         to claim before it ends, then back to `orderReplicas` once claimed, as the oracle
    ///         does for its own orders (`PerpetualStorage.setReplicaTarget` may go below the
    ///         slots in use, so that the ending slot does not open again). Operators only, and
    ///         only between the order's replicas and twice them: a raise costs the DAO's order
    ///         one claim's bounty more per replica renewed.
    /// @param replicas The target, from `orderReplicas[id]` to twice it.
    function renewReplicas(uint256 id, uint16 replicas) external onlyOperator nonReentrant {
        uint256 orderId = funded(id);
        uint16 base = orderReplicas[id];
        if (replicas < base || uint256(replicas) > 2 * uint256(base)) {
            revert DataDAOBadRenewalTarget(id, replicas, base);
        }
        perpetual.setReplicaTarget(orderId, replicas);
    }

    /// @notice Replaces the download locations of a proposal's order.
    function setOrderOrigins(uint256 id, string[] calldata origins) external onlyOwner {
        perpetual.setOrigins(funded(id), origins);
    }

    /// @notice Adds `amount` of the free treasury to a proposal's order.
    function topUpOrder(uint256 id, uint256 amount) external onlyOwner nonReentrant {
        uint256 available = address(this).balance - reserved;
        if (amount > available) revert DataDAOTreasuryTooSmall(amount, available);
        perpetual.fund{value: amount}(funded(id));
    }

    /// @notice Marks an active replica of a proposal's order lost, for the DAO (the order's
    ///         client): the oracle's retrieval probes of it, checked against the piece's
    ///         commitment, failed. `PerpetualStorage.markLost` pays the provider what it earned
    ///         and a loss fee out of the order, reopens the slot, and excludes the provider from
    ///         the order. The mark is the operator's word and costs the DAO's order a bond's
    ///         worth: operators only.
    /// @param provider The miner actor id whose replica is lost.
    function markReplicaLost(uint256 id, uint64 provider) external onlyOperator nonReentrant {
        perpetual.markLost(funded(id), provider);
    }

    /// @notice Brings the DAO's refunds (cancelled orders, returned bounties) back to the
    ///         treasury. Anyone may call.
    function withdrawRefunds() external nonReentrant {
        perpetual.withdraw();
    }

    function funded(uint256 id) internal view returns (uint256 orderId) {
        Proposal storage p = known(id);
        if (p.state != State.Funded) revert DataDAOWrongState(id, p.state);
        return orderOf[id];
    }

    // ------------------------------------------------------------------ owner

    /// @notice Adds or removes a member (from the next proposal on).
    function setMember(address account, bool member) external onlyOwner {
        if (isMember(account) == member) return;
        uint48 now_ = uint48(block.number);
        membership[account].push(now_, member ? 1 : 0);
        members.push(now_, member ? members.latest() + 1 : members.latest() - 1);
        emit MemberSet(account, member);
    }

    /// @notice Sets the budget reserved for each accepted CID's storage order.
    function setOrderBudget(uint96 budget) external onlyOwner {
        orderBudget = budget;
        emit OrderBudgetSet(budget);
    }

    /// @notice Sets the terms of the orders funded from now on: within PerpetualStorage's
    ///         bounds (replicas 1 to `MAX_REPLICAS`, a bounty, a term from `minTerm` to
    ///         `maxTerm`).
    function setOrderTerms(OrderTerms calldata terms) external onlyOwner {
        if (
            terms.replicas == 0 || terms.replicas > perpetual.MAX_REPLICAS() || terms.bounty == 0
                || terms.term < perpetual.minTerm() || terms.term > perpetual.maxTerm()
        ) revert DataDAOBadOrderTerms();
        orderTerms = terms;
        emit OrderTermsSet(terms.replicas, terms.term, terms.bounty, terms.verified);
    }

    /// @notice Sets the quorum for proposals made from now on (1 to 10,000 basis points).
    function setQuorum(uint16 quorumBps_) external onlyOwner {
        setQuorumBps(quorumBps_);
    }

    function setQuorumBps(uint16 q) internal {
        if (q == 0 || q > 10_000) revert DataDAOBadQuorum(q);
        quorumBps = q;
        emit QuorumSet(q);
    }

    function known(uint256 id) internal view returns (Proposal storage p) {
        p = proposals[id];
        if (p.state == State.None) revert DataDAOUnknownProposal(id);
    }
}
