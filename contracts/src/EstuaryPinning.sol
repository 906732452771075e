// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {CidLib} from "./lib/CidLib.sol";
import {Operated} from "./lib/Operated.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";

/// @title EstuaryPinning
/// @notice Records requests to pin IPFS content with Estuary, and what became of them. Anyone
///         may call `pinToEstuary` (paying `fee`, if the owner set one); Estuary's oracles
///         (registered operators) follow `PinRequested`, fetch and pin the content, put it in a
///         Filecoin deal and report each step here, once. The requester may cancel.
/// @dev Only the CID's structure is checked on chain (see `CidLib`); whether the content exists is
///      for the oracle to find out. Reports are idempotent from the oracle's side: a repeated
///      report reverts with `EstuaryPinningAlreadyReported`, which it treats as done.
contract EstuaryPinning is Operated, Pausable {
    /// @notice Bits of `Request.reported`.
    uint8 internal constant PINNED = 1;
    uint8 internal constant DEAL_MADE = 2;
    uint8 internal constant FAILED = 4;
    uint8 internal constant CANCELLED = 8;

    /// @notice Most origins per request, the longest origin and the longest name.
    uint256 public constant MAX_ORIGINS = 8;
    uint256 public constant MAX_ORIGIN_LENGTH = 256;
    uint256 public constant MAX_NAME_LENGTH = 255;
    /// @notice Longest failure reason kept.
    uint256 public constant MAX_REASON_LENGTH = 512;

    /// @notice Options of a request.
    struct PinOptions {
        /// A name for the pin (at most 255 bytes).
        string name;
        /// Multiaddrs of peers that have the content (each starts with "/").
        string[] origins;
        /// The requester's estimate of the DAG's size in bytes (0: unknown).
        uint64 sizeHint;
    }

    /// @notice A request's compact record.
    struct Request {
        address requester;
        uint40 requestedAt;
        uint8 reported;
    }

    /// @notice What the oracles reported.
    struct Outcome {
        bytes32 commP;
        uint64 paddedSize;
        uint64 dealId;
        uint64 provider;
        string failure;
    }

    /// @notice A request's full status, as `getRequest` returns it.
    struct RequestStatus {
        address requester;
        uint40 requestedAt;
        bool pinned;
        bool dealMade;
        bool failed;
        bool cancelled;
        bytes32 commP;
        uint64 paddedSize;
        uint64 dealId;
        uint64 provider;
        string failure;
    }

    /// @notice Which report a revert or event is about.
    enum Report {
        Pinned,
        DealMade,
        Failed
    }

    /// @notice Number of requests made so far; request ids run from 1 to `requestCount`.
    uint256 public requestCount;
    /// @notice The fee per request, in wei.
    uint96 public fee;
    /// @notice Fees received and not yet withdrawn.
    uint256 public feesHeld;

    mapping(uint256 requestId => Request) internal requests;
    mapping(uint256 requestId => Outcome) internal outcomes;

    /// @notice A pin was requested.
    /// @param requestId The new request's id, increasing from 1.
    /// @param requester The caller of `pinToEstuary`.
    /// @param cid The binary CID to pin.
    event PinRequested(uint256 indexed requestId, address indexed requester, bytes cid);
    /// @notice The options of a request made with them (emitted right after its `PinRequested`).
    event PinRequestOptions(uint256 indexed requestId, string name, string[] origins, uint64 sizeHint);
    /// @notice An operator pinned the content and computed its piece.
    event Pinned(uint256 indexed requestId, address indexed operator, bytes32 commP, uint64 paddedSize);
    /// @notice An operator made a Filecoin deal holding the content.
    event DealMade(uint256 indexed requestId, address indexed operator, uint64 dealId, uint64 provider);
    /// @notice An operator gave up on the request.
    event PinFailed(uint256 indexed requestId, address indexed operator, string reason);
    /// @notice The requester cancelled.
    event PinCancelled(uint256 indexed requestId);
    /// @notice The owner changed the fee.
    event FeeSet(uint96 fee);
    /// @notice The owner withdrew fees.
    event FeesWithdrawn(address indexed to, uint256 amount);

    /// @notice The bytes given are not a binary CIDv0 or CIDv1.
    /// @param reason What is wrong with them.
    error EstuaryPinningInvalidCid(CidLib.CidError reason);
    /// @notice The value sent is not the fee.
    error EstuaryPinningWrongFee(uint256 fee, uint256 sent);
    /// @notice An option is out of bounds: "name", "origins" or "origin".
    error EstuaryPinningBadOption(string option);
    /// @notice No request has this id.
    error EstuaryPinningUnknownRequest(uint256 requestId);
    /// @notice This state was already reported for this request (the oracle treats it as done).
    error EstuaryPinningAlreadyReported(uint256 requestId, Report report);
    /// @notice The request was cancelled or has failed: nothing more can be reported.
    error EstuaryPinningRequestClosed(uint256 requestId);
    /// @notice A deal is reported before the pin.
    error EstuaryPinningNotPinned(uint256 requestId);
    /// @notice The piece CID is not a v1 piece CID, or the size is not a power of two ≥ 128.
    error EstuaryPinningBadPiece();
    /// @notice Only the requester may cancel.
    error EstuaryPinningNotRequester(uint256 requestId, address caller);
    /// @notice Sending fees failed.
    error EstuaryPinningTransferFailed();

    /// @param owner_ The owner: manages operators, the fee and pausing.
    constructor(address owner_) Operated(owner_) {}

    // ------------------------------------------------------------------ requests

    /// @notice Asks Estuary to pin `cid`.
    /// @param cid A binary CIDv0 or CIDv1 (not its string form).
    /// @return requestId The id of the new request.
    function pinToEstuary(bytes calldata cid) external payable whenNotPaused returns (uint256 requestId) {
        requestId = record(cid);
    }

    /// @notice Asks Estuary to pin `cid`, with a name, origins and a size hint.
    /// @param cid A binary CIDv0 or CIDv1.
    /// @param options Name, origin multiaddrs and size hint.
    /// @return requestId The id of the new request.
    function pinToEstuary(bytes calldata cid, PinOptions calldata options)
        external
        payable
        whenNotPaused
        returns (uint256 requestId)
    {
        if (bytes(options.name).length > MAX_NAME_LENGTH) {
            revert EstuaryPinningBadOption("name");
        }
        if (options.origins.length > MAX_ORIGINS) revert EstuaryPinningBadOption("origins");
        for (uint256 k; k < options.origins.length; ++k) {
            bytes calldata origin = bytes(options.origins[k]);
            if (origin.length < 2 || origin.length > MAX_ORIGIN_LENGTH || origin[0] != "/") {
                revert EstuaryPinningBadOption("origin");
            }
        }
        requestId = record(cid);
        emit PinRequestOptions(requestId, options.name, options.origins, options.sizeHint);
    }

    function record(bytes calldata cid) internal returns (uint256 requestId) {
        CidLib.CidError err = CidLib.check(cid);
        if (err != CidLib.CidError.None) revert EstuaryPinningInvalidCid(err);
        if (msg.value != fee) revert EstuaryPinningWrongFee(fee, msg.value);
        if (msg.value != 0) feesHeld += msg.value;
        requestId = ++requestCount;
        requests[requestId] = Request(msg.sender, uint40(block.timestamp), 0);
        emit PinRequested(requestId, msg.sender, cid);
    }

    /// @notice Cancels a request: the oracles stop working on it and unpin it.
    function cancel(uint256 requestId) external {
        Request storage r = known(requestId);
        if (msg.sender != r.requester) revert EstuaryPinningNotRequester(requestId, msg.sender);
        if (r.reported & (CANCELLED | FAILED) != 0) revert EstuaryPinningRequestClosed(requestId);
        r.reported |= CANCELLED;
        emit PinCancelled(requestId);
    }

    // ------------------------------------------------------------------ operators' reports

    /// @notice Reports that the content is pinned, with its piece (v1 piece CID and padded size).
    function reportPinned(uint256 requestId, bytes calldata pieceCid, uint64 paddedSize)
        external
        onlyOperator
    {
        checkPiece(pieceCid, paddedSize);
        recordPinned(open(requestId, PINNED, Report.Pinned), requestId, pieceCid, paddedSize);
    }

    /// @notice One report of a batch: a request, and the piece of its content (v1 piece CID and
    /// padded size).
    struct PinnedReport {
        uint256 requestId;
        bytes pieceCid;
        uint64 paddedSize;
    }

    /// @notice Reports many pins in one transaction, one `Pinned` event for each recorded. A
    /// request that is unknown, already reported pinned, cancelled or failed is skipped instead
    /// of reverting the batch: one late or repeated entry must not cost the others their report.
    /// The caller learns which were recorded from the `Pinned` events. A malformed piece still
    /// reverts the whole batch (the operator's software is broken).
    /// @return recorded How many reports were recorded.
    function reportPinnedBatch(PinnedReport[] calldata reports)
        external
        onlyOperator
        returns (uint256 recorded)
    {
        for (uint256 i; i < reports.length; ++i) {
            PinnedReport calldata p = reports[i];
            checkPiece(p.pieceCid, p.paddedSize);
            Request storage r = requests[p.requestId];
            if (r.requester == address(0) || r.reported & (PINNED | CANCELLED | FAILED) != 0) continue;
            recordPinned(r, p.requestId, p.pieceCid, p.paddedSize);
            ++recorded;
        }
    }

    function checkPiece(bytes calldata pieceCid, uint64 paddedSize) internal pure {
        if (!CidLib.isPieceCid(pieceCid) || !CidLib.isPaddedSize(paddedSize)) {
            revert EstuaryPinningBadPiece();
        }
    }

    function recordPinned(Request storage r, uint256 requestId, bytes calldata pieceCid, uint64 paddedSize)
        internal
    {
        r.reported |= PINNED;
        bytes32 commP = bytes32(pieceCid[7:]);
        Outcome storage o = outcomes[requestId];
        o.commP = commP;
        o.paddedSize = paddedSize;
        emit Pinned(requestId, msg.sender, commP, paddedSize);
    }

    /// @notice Reports the Filecoin deal that holds the content.
    function reportDeal(uint256 requestId, uint64 dealId, uint64 provider) external onlyOperator {
        Request storage r = open(requestId, DEAL_MADE, Report.DealMade);
        if (r.reported & PINNED == 0) revert EstuaryPinningNotPinned(requestId);
        r.reported |= DEAL_MADE;
        Outcome storage o = outcomes[requestId];
        o.dealId = dealId;
        o.provider = provider;
        emit DealMade(requestId, msg.sender, dealId, provider);
    }

    /// @notice Reports that the request cannot be served (content not found, too large, ...).
    function reportFailed(uint256 requestId, string calldata reason) external onlyOperator {
        Request storage r = open(requestId, FAILED, Report.Failed);
        r.reported |= FAILED;
        string calldata kept = bytes(reason).length > MAX_REASON_LENGTH ? reason[:MAX_REASON_LENGTH] : reason;
        outcomes[requestId].failure = kept;
        emit PinFailed(requestId, msg.sender, kept);
    }

    function known(uint256 requestId) internal view returns (Request storage r) {
        r = requests[requestId];
        if (r.requester == address(0)) revert EstuaryPinningUnknownRequest(requestId);
    }

    function open(uint256 requestId, uint8 bit, Report report) internal view returns (Request storage r) {
        r = known(requestId);
        if (r.reported & bit != 0) revert EstuaryPinningAlreadyReported(requestId, report);
        if (r.reported & (CANCELLED | FAILED) != 0) revert EstuaryPinningRequestClosed(requestId);
    }

    // ------------------------------------------------------------------ views

    /// @notice Who made a request (zero for an unknown id).
    function requesterOf(uint256 requestId) external view returns (address) {
        return requests[requestId].requester;
    }

    /// @notice A request's full status.
    function getRequest(uint256 requestId) external view returns (RequestStatus memory s) {
        Request storage r = known(requestId);
        Outcome storage o = outcomes[requestId];
        s.requester = r.requester;
        s.requestedAt = r.requestedAt;
        s.pinned = r.reported & PINNED != 0;
        s.dealMade = r.reported & DEAL_MADE != 0;
        s.failed = r.reported & FAILED != 0;
        s.cancelled = r.reported & CANCELLED != 0;
        s.commP = o.commP;
        s.paddedSize = o.paddedSize;
        s.dealId = o.dealId;
        s.provider = o.provider;
        s.failure = o.failure;
    }

    // ------------------------------------------------------------------ owner

    /// @notice Sets the fee for new requests.
    function setFee(uint96 fee_) external onlyOwner {
        fee = fee_;
        emit FeeSet(fee_);
    }

    /// @notice Sends the fees held to `to`.
    function withdrawFees(address payable to) external onlyOwner {
        uint256 amount = feesHeld;
        feesHeld = 0;
        emit FeesWithdrawn(to, amount);
        (bool ok,) = to.call{value: amount}("");
        if (!ok) revert EstuaryPinningTransferFailed();
    }

    /// @notice Stops new requests (reports and cancels continue).
    function pause() external onlyOwner {
        _pause();
    }

    /// @notice Accepts new requests again.
    function unpause() external onlyOwner {
        _unpause();
    }
}
