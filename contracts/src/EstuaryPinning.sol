// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {DealClient} from "./DealClient.sol";
import {CidLib} from "./lib/CidLib.sol";
import {MarketActor} from "./lib/MarketActor.sol";
import {MinerActor} from "./lib/MinerActor.sol";
import {Operated} from "./lib/Operated.sol";
import {PoDSI} from "./lib/PoDSI.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";

/// @title EstuaryPinning
/// @notice Records requests to pin IPFS content with Estuary, and what became of them. Anyone
///         may call `pinToEstuary` (paying `fee`, if the owner set one); Estuary's oracles
///         (registered operators) follow `PinRequested`, fetch and pin the content (reporting
///         its piece once), and put it in Filecoin deals: each deal is reported with, for every
///         pin in it, an FRC-0058 inclusion proof that this contract checks against the deal's
///         piece as the storage market actor reports it (`reportDeal`). The requester may cancel.
/// @dev Reorg safety: every report names the request and the keccak256 of its binary CID, and is
///      refused (or, in a batch, skipped) unless the CID matches the request's. After a reorg
///      re-orders requests, a report in flight can therefore never mark a different request.
///      The request keeps the first 8 bytes of the hash (a second preimage of 64 bits cannot be
///      ground in a reorg's window) so that a request still fits one storage slot.
///
///      Fees (the refund rule): a request's fee is held in escrow until its outcome. A report
///      that it is pinned earns the fee for the owner. It is refunded to the requester
///      (`claimRefund`) when the request failed (an operator reported it could not be served,
///      for any reason), or when it was not reported pinned within `refundDelay` seconds of the
///      request (the oracle quarantined it, or stopped), whether or not the requester cancelled
///      meanwhile. A pinned request is never refunded, and each fee is refunded at most once.
///
///      Failure reasons are a code and at most `MAX_DETAIL_LENGTH` bytes of text, emitted and
///      not stored: a failure costs the operator no storage an attacker chose.
///
///      Deals (`reportDeal`): nothing is taken on the operator's word. The deal's piece comes from
///      the market actor (GetDealDataCommitment) and must be the report's; the deal must be the
///      named provider's (GetDealProvider); each pin's piece must be the one reported pinned and
///      its proof must lead to the deal's piece (`PoDSI`). A request holds any number of deals
///      (replicas, and later ones when deals end): each proven (request, deal) emits
///      `DealProven`, and the request keeps the last one (`getRequest`). The proofs are neither
///      stored nor emitted: about 2 KB each, storing one would cost ~1.3M gas and emitting it
///      ~20k, against ~2k for the event with the facts it proves; the proof stays in the
///      transaction's input, where anyone can read it to verify again, and the oracle serves it.
///      A deal's later life (activation, expiry, termination) is the market's to say: read it
///      with `DealStateView`.
///
///      Direct deals (`reportDirectDeal`): a deal made without the market (Curio's DDO deals)
///      has no market deal to ask. Its facts come from a `DealClient` the owner trusts
///      (`setDealClient`), which recorded the sector's activation when the miner actor notified
///      it: the proposal's piece, and that the named provider activated it (`NO_DEAL`). Such a
///      deal is proven as `DealProven(request, NO_DEAL, provider, offset)`; nothing on chain
///      says when its sector ends early (the market alone is told of terminations).
contract EstuaryPinning is Operated, Pausable {
    /// @notice Bits of `Request.reported`.
    uint8 internal constant PINNED = 1;
    uint8 internal constant DEAL_MADE = 2;
    uint8 internal constant FAILED = 4;
    uint8 internal constant CANCELLED = 8;
    uint8 internal constant REFUNDED = 16;

    /// @notice The deal ID of a direct deal (made without the market), as `DealClient.NO_DEAL`.
    uint64 public constant NO_DEAL = type(uint64).max;

    /// @notice Most origins per request, the longest origin and the longest name.
    uint256 public constant MAX_ORIGINS = 8;
    uint256 public constant MAX_ORIGIN_LENGTH = 256;
    uint256 public constant MAX_NAME_LENGTH = 255;
    /// @notice Longest failure detail emitted; longer ones are cut.
    uint256 public constant MAX_DETAIL_LENGTH = 64;

    /// @notice Seconds after a request from which, if it is not pinned, its fee is refundable.
    uint64 public immutable refundDelay;

    /// @notice Why a request could not be served.
    enum FailureCode {
        /// No more specific code applies.
        Unspecified,
        /// No origin or peer served the content within the limits.
        NotFound,
        /// The DAG is larger than the operator accepts.
        TooLarge,
        /// Fetching did not finish in time.
        Timeout,
        /// Blocks did not hash to their CIDs, or the DAG does not decode.
        InvalidContent,
        /// A codec or hash function the operator does not support.
        Unsupported,
        /// Refused by the operator's content policy.
        Refused,
        /// The operator's own failure.
        Internal
    }

    /// @notice Options of a request.
    struct PinOptions {
        /// A name for the pin (at most 255 bytes).
        string name;
        /// Multiaddrs of peers that have the content (each starts with "/").
        string[] origins;
        /// The requester's estimate of the DAG's size in bytes (0: unknown).
        uint64 sizeHint;
    }

    /// @notice A request's compact record: one storage slot.
    struct Request {
        address requester;
        /// The first 8 bytes of keccak256 of the binary CID.
        bytes8 cidTag;
        uint8 reported;
        /// Hours since the Unix epoch when requested.
        uint24 requestedHour;
    }

    /// @notice What the oracles reported.
    struct Outcome {
        bytes32 commP;
        uint64 paddedSize;
        uint64 dealId;
        uint64 provider;
        FailureCode failure;
    }

    /// @notice A request's full status, as `getRequest` returns it.
    struct RequestStatus {
        address requester;
        /// When requested, in seconds (rounded down to the hour).
        uint64 requestedAt;
        bool pinned;
        /// At least one deal was proven to hold the content (`dealId`/`provider`: the last).
        bool dealMade;
        bool failed;
        bool cancelled;
        bool refunded;
        /// The fee paid.
        uint96 fee;
        bytes32 commP;
        uint64 paddedSize;
        uint64 dealId;
        uint64 provider;
        FailureCode failure;
    }

    /// @notice A fee in force from a request on.
    struct FeeChange {
        uint64 fromRequest;
        uint96 fee;
    }

    /// @notice Which report a revert is about (`DealMade` is no longer raised: a repeated deal
    ///         report is skipped; the value keeps the numbering).
    enum Report {
        Pinned,
        DealMade,
        Failed
    }

    /// @notice Number of requests made so far; request ids run from 1 to `requestCount`.
    uint256 public requestCount;
    /// @notice The fee per request, in wei.
    uint96 public fee;
    /// @notice Fees earned (requests reported pinned) and not yet withdrawn.
    uint256 public feesHeld;
    /// @notice Fees of requests without an outcome yet, or refundable.
    uint256 public feesEscrowed;

    FeeChange[] internal feeSchedule;
    mapping(uint256 requestId => Request) internal requests;
    mapping(uint256 requestId => Outcome) internal outcomes;
    /// @notice The `DealClient`s whose records of direct deals `reportDirectDeal` takes as the
    ///         chain's word (set by the owner).
    mapping(address client => bool) public isDealClient;
    /// @notice For a request whose last recorded deal is a direct one: that deal's key
    ///         (`keccak256(abi.encode(client, proposal, provider))`).
    mapping(uint256 requestId => bytes32 key) internal lastDirectDeal;

    /// @notice A pin was requested.
    /// @param requestId The new request's id, increasing from 1.
    /// @param requester The caller of `pinToEstuary`.
    /// @param cid The binary CID to pin (reports name its keccak256).
    event PinRequested(uint256 indexed requestId, address indexed requester, bytes cid);
    /// @notice The options of a request made with them (emitted right after its `PinRequested`).
    event PinRequestOptions(uint256 indexed requestId, string name, string[] origins, uint64 sizeHint);
    /// @notice An operator pinned the content and computed its piece.
    event Pinned(uint256 indexed requestId, address indexed operator, bytes32 commP, uint64 paddedSize);
    /// @notice A deal was reported with the pins whose proofs held (`recorded` of them).
    /// @param aggregateCommP The deal's piece (its commitment), as the market reports it.
    event DealReported(
        uint64 indexed dealId,
        uint64 indexed provider,
        address indexed operator,
        bytes32 aggregateCommP,
        uint64 aggregateSize,
        uint256 recorded
    );
    /// @notice A request's content is proven to be in a deal: its piece is the data segment at
    ///         `offset` (padded bytes) of the deal's piece, and the deal's index lists it.
    event DealProven(
        uint256 indexed requestId, uint64 indexed dealId, uint64 indexed provider, uint64 offset
    );
    /// @notice A direct deal (made without the market) for a `DealClient` proposal was reported
    ///         with the pins whose proofs held (`recorded` of them).
    /// @param aggregateCommP The proposal's piece (its commitment), as the client records it.
    event DirectDealReported(
        address indexed client,
        bytes32 indexed proposal,
        uint64 indexed provider,
        address operator,
        bytes32 aggregateCommP,
        uint64 aggregateSize,
        uint256 recorded
    );
    /// @notice The direct deal the request's `DealProven(requestId, NO_DEAL, provider, offset)`
    ///         just before names: `client`'s `proposal`.
    event DirectDealProven(uint256 indexed requestId, address indexed client, bytes32 indexed proposal);
    /// @notice The owner trusts (or no longer trusts) a `DealClient`'s records of direct deals.
    event DealClientSet(address indexed client, bool trusted);
    /// @notice An operator gave up on the request: a code and a short detail.
    event PinFailed(uint256 indexed requestId, address indexed operator, FailureCode code, string detail);
    /// @notice The requester cancelled.
    event PinCancelled(uint256 indexed requestId);
    /// @notice A request's fee was refunded.
    event FeeRefunded(uint256 indexed requestId, address indexed to, uint256 amount);
    /// @notice The owner changed the fee (for requests from `fromRequest` on).
    event FeeSet(uint96 fee, uint64 fromRequest);
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
    /// @notice The report's CID hash is not the request's CID (a reorg, or a wrong id).
    error EstuaryPinningCidMismatch(uint256 requestId, bytes32 cidHash);
    /// @notice This state was already reported for this request (the oracle treats it as done).
    error EstuaryPinningAlreadyReported(uint256 requestId, Report report);
    /// @notice The request was cancelled or has failed: nothing more can be reported.
    error EstuaryPinningRequestClosed(uint256 requestId);
    /// @notice The market has no such deal (`NotFound`: never published, e.g. reorged out) or
    ///         no longer has it (`Expired`: ended, terminated or timed out).
    error EstuaryPinningDealUnavailable(uint64 dealId, MarketActor.Status status);
    /// @notice The deal is not the reported provider's (the market says `actual`).
    error EstuaryPinningWrongProvider(uint64 dealId, uint64 reported, uint64 actual);
    /// @notice The deal's piece is not the reported aggregate (the market says `commP`, `size`).
    error EstuaryPinningWrongAggregate(uint64 dealId, bytes32 commP, uint64 size);
    /// @notice A pin's piece is not the one its request was reported pinned with.
    error EstuaryPinningPieceMismatch(uint256 requestId, bytes32 commP, uint64 paddedSize);
    /// @notice A pin's inclusion proof does not lead to the deal's piece.
    error EstuaryPinningBadProof(uint256 requestId, PoDSI.Failure failure);
    /// @notice The piece CID is not a v1 piece CID, or the size is not a power of two ≥ 128.
    error EstuaryPinningBadPiece();
    /// @notice `client` is not a `DealClient` the owner trusts (`setDealClient`).
    error EstuaryPinningUnknownDealClient(address client);
    /// @notice `client` records no direct deal of `provider` for `proposal` that is active now
    ///         (activated, the proposal not cancelled, its term not ended), or `provider` is not
    ///         a miner actor.
    error EstuaryPinningDirectDealUnavailable(address client, bytes32 proposal, uint64 provider);
    /// @notice Only the requester may cancel or take a refund.
    error EstuaryPinningNotRequester(uint256 requestId, address caller);
    /// @notice The fee is not refundable (yet, or any more): see the refund rule.
    error EstuaryPinningNotRefundable(uint256 requestId);
    /// @notice Sending fees failed.
    error EstuaryPinningTransferFailed();

    /// @param owner_ The owner: manages operators, the fee and pausing.
    /// @param refundDelay_ Seconds after which an unpinned request's fee is refundable.
    constructor(address owner_, uint64 refundDelay_) Operated(owner_) {
        refundDelay = refundDelay_;
    }

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
        if (msg.value != 0) feesEscrowed += msg.value;
        requestId = ++requestCount;
        requests[requestId] =
            Request(msg.sender, bytes8(keccak256(cid)), 0, uint24(block.timestamp / 1 hours));
        emit PinRequested(requestId, msg.sender, cid);
    }

    /// @notice Cancels a request: the oracles stop working on it and unpin it. Its fee becomes
    ///         refundable once `refundDelay` has passed, unless it was pinned first.
    function cancel(uint256 requestId) external {
        Request storage r = known(requestId);
        if (msg.sender != r.requester) revert EstuaryPinningNotRequester(requestId, msg.sender);
        if (r.reported & (CANCELLED | FAILED) != 0) revert EstuaryPinningRequestClosed(requestId);
        r.reported |= CANCELLED;
        emit PinCancelled(requestId);
    }

    /// @notice Sends a request's fee back to `to`, under the refund rule (see the contract's
    ///         notes): failed, or not pinned within `refundDelay`. Requester only. A request
    ///         still open is cancelled by its refund.
    function claimRefund(uint256 requestId, address payable to) external {
        Request storage r = known(requestId);
        if (msg.sender != r.requester) revert EstuaryPinningNotRequester(requestId, msg.sender);
        if (!isRefundable(r)) revert EstuaryPinningNotRefundable(requestId);
        // A refund closes the request: no report can earn a fee that was given back.
        bool wasOpen = r.reported & (FAILED | CANCELLED) == 0;
        r.reported |= REFUNDED | (r.reported & FAILED == 0 ? CANCELLED : 0);
        if (wasOpen) emit PinCancelled(requestId);
        uint256 amount = feeOf(requestId);
        feesEscrowed -= amount;
        emit FeeRefunded(requestId, to, amount);
        (bool ok,) = to.call{value: amount}("");
        if (!ok) revert EstuaryPinningTransferFailed();
    }

    /// @notice The fee refundable for a request now (0 when none).
    function refundable(uint256 requestId) external view returns (uint256) {
        Request storage r = known(requestId);
        return isRefundable(r) ? feeOf(requestId) : 0;
    }

    function isRefundable(Request storage r) internal view returns (bool) {
        uint8 bits = r.reported;
        if (bits & (PINNED | REFUNDED) != 0) return false;
        return bits & FAILED != 0 || block.timestamp >= uint256(r.requestedHour) * 1 hours + refundDelay;
    }

    /// @notice The fee a request paid (the fee in force when it was made).
    function feeOf(uint256 requestId) public view returns (uint96) {
        uint256 n = feeSchedule.length;
        if (n == 0) return 0;
        FeeChange storage last = feeSchedule[n - 1];
        if (requestId >= last.fromRequest) return last.fee;
        uint256 lo;
        uint256 hi = n - 1;
        // The last change at or before `requestId` (entries are in increasing `fromRequest`).
        while (lo < hi) {
            uint256 mid = (lo + hi + 1) / 2;
            if (feeSchedule[mid].fromRequest <= requestId) lo = mid;
            else hi = mid - 1;
        }
        return feeSchedule[lo].fromRequest <= requestId ? feeSchedule[lo].fee : 0;
    }

    // ------------------------------------------------------------------ operators' reports

    /// @notice Reports that the content is pinned, with its piece (v1 piece CID and padded size).
    /// @param cidHash keccak256 of the request's binary CID, as the operator fetched it.
    function reportPinned(uint256 requestId, bytes32 cidHash, bytes calldata pieceCid, uint64 paddedSize)
        external
        onlyOperator
    {
        checkPiece(pieceCid, paddedSize);
        Request storage r = open(requestId, cidHash, PINNED, Report.Pinned);
        uint96 paid = recordPinned(r, requestId, pieceCid, paddedSize);
        if (paid != 0) earn(paid);
    }

    /// @notice One report of a batch: a request, its CID's hash, and the piece of its content
    ///         (v1 piece CID and padded size).
    struct PinnedReport {
        uint256 requestId;
        bytes32 cidHash;
        bytes pieceCid;
        uint64 paddedSize;
    }

    /// @notice Reports many pins in one transaction, one `Pinned` event for each recorded. A
    /// request that is unknown, whose CID does not match, already reported pinned, cancelled or
    /// failed is skipped instead of reverting the batch: one late, repeated or reorged entry must
    /// not cost the others their report. The caller learns which were recorded from the `Pinned`
    /// events. A malformed piece still reverts the whole batch (the operator's software is broken).
    /// @return recorded How many reports were recorded.
    function reportPinnedBatch(PinnedReport[] calldata reports)
        external
        onlyOperator
        returns (uint256 recorded)
    {
        uint256 earned;
        for (uint256 i; i < reports.length; ++i) {
            PinnedReport calldata p = reports[i];
            checkPiece(p.pieceCid, p.paddedSize);
            Request storage r = requests[p.requestId];
            if (r.requester == address(0) || r.reported & (PINNED | CANCELLED | FAILED) != 0) continue;
            if (r.cidTag != bytes8(p.cidHash)) continue;
            earned += recordPinned(r, p.requestId, p.pieceCid, p.paddedSize);
            ++recorded;
        }
        if (earned != 0) earn(earned);
    }

    function checkPiece(bytes calldata pieceCid, uint64 paddedSize) internal pure {
        if (!CidLib.isPieceCid(pieceCid) || !CidLib.isPaddedSize(paddedSize)) {
            revert EstuaryPinningBadPiece();
        }
    }

    function recordPinned(Request storage r, uint256 requestId, bytes calldata pieceCid, uint64 paddedSize)
        internal
        returns (uint96 paid)
    {
        r.reported |= PINNED;
        bytes32 commP = bytes32(pieceCid[7:]);
        Outcome storage o = outcomes[requestId];
        o.commP = commP;
        o.paddedSize = paddedSize;
        emit Pinned(requestId, msg.sender, commP, paddedSize);
        return feeOf(requestId);
    }

    function earn(uint256 amount) internal {
        feesEscrowed -= amount;
        feesHeld += amount;
    }

    /// @notice One pin of a deal report: the request, its CID's hash, its piece (commitment and
    ///         padded size, as reported pinned) and the FRC-0058 proof that this piece is a data
    ///         segment of the deal's piece, listed in its index.
    struct PinInclusion {
        uint256 requestId;
        bytes32 cidHash;
        bytes32 commP;
        uint64 paddedSize;
        PoDSI.InclusionProof proof;
    }

    /// @notice A deal and the pins it holds.
    struct DealReport {
        uint64 dealId;
        /// The deal's provider (miner actor ID).
        uint64 provider;
        /// The deal's piece (the aggregate): its commitment and padded size.
        bytes32 aggregateCommP;
        uint64 aggregateSize;
        PinInclusion[] pins;
    }

    /// @notice Reports a Filecoin deal (published, active or not) holding pinned requests, with
    ///         a proof for each. The deal must be in the market (else
    ///         `EstuaryPinningDealUnavailable`), be `provider`'s (`EstuaryPinningWrongProvider`)
    ///         and have the reported piece (`EstuaryPinningWrongAggregate`): an SP that put
    ///         another piece in the deal gets it counted for nothing. Each pin whose request is
    ///         unknown, not pinned, cancelled or failed, whose CID does not match, or whose
    ///         latest recorded deal is already this one, is skipped, as in `reportPinnedBatch`;
    ///         the others must carry their request's piece (`EstuaryPinningPieceMismatch`) and a
    ///         proof that holds (`EstuaryPinningBadProof`), or the whole report reverts (the
    ///         operator's software is broken). One `DealProven` per recorded pin, then one
    ///         `DealReported`.
    /// @dev The market is asked twice per report (read-only queries through `call_actor_id`),
    ///      then each proof costs at most ~33k gas (a 64 GiB deal's deepest). Memory used by a
    ///      pin's proof is released after it, so a large report costs linearly.
    /// @return recorded How many pins were recorded in this deal.
    // The two market queries are sent READ_ONLY: the market cannot call back or change state.
    // slither-disable-next-line reentrancy-no-eth,reentrancy-benign,reentrancy-events
    function reportDeal(DealReport calldata report) external onlyOperator returns (uint256 recorded) {
        uint64 dealId = report.dealId;
        (MarketActor.Status status, PoDSI.InclusionAuxData memory aggregate) = PoDSI.dealAuxData(dealId);
        if (status != MarketActor.Status.Ok) revert EstuaryPinningDealUnavailable(dealId, status);
        if (aggregate.commPa != report.aggregateCommP || aggregate.sizePa != report.aggregateSize) {
            revert EstuaryPinningWrongAggregate(dealId, aggregate.commPa, aggregate.sizePa);
        }
        uint64 provider;
        (status, provider) = MarketActor.getDealProvider(dealId);
        if (status != MarketActor.Status.Ok) revert EstuaryPinningDealUnavailable(dealId, status);
        if (provider != report.provider) {
            revert EstuaryPinningWrongProvider(dealId, report.provider, provider);
        }
        for (uint256 i; i < report.pins.length; ++i) {
            if (recordInclusion(report.pins[i], dealId, provider, aggregate, 0)) ++recorded;
        }
        emit DealReported(dealId, provider, msg.sender, aggregate.commPa, aggregate.sizePa, recorded);
    }

    /// @param direct A direct deal's key (`lastDirectDeal`); zero for a market deal.
    function recordInclusion(
        PinInclusion calldata pin,
        uint64 dealId,
        uint64 provider,
        PoDSI.InclusionAuxData memory aggregate,
        bytes32 direct
    ) internal returns (bool) {
        if (!toRecord(pin, dealId, direct)) return false;
        uint256 requestId = pin.requestId;
        uint256 freeMemory;
        assembly {
            freeMemory := mload(0x40)
        }
        PoDSI.InclusionProof memory proof = pin.proof;
        PoDSI.Failure failure =
            PoDSI.verify(proof, PoDSI.InclusionVerifierData(pin.commP, pin.paddedSize), aggregate);
        if (failure != PoDSI.Failure.None) revert EstuaryPinningBadProof(requestId, failure);
        uint64 offset = PoDSI.offsetOf(proof, pin.paddedSize);
        // Nothing allocated since is used any more: reuse the memory for the next pin.
        assembly {
            mstore(0x40, freeMemory)
        }
        requests[requestId].reported |= DEAL_MADE;
        Outcome storage o = outcomes[requestId];
        o.dealId = dealId;
        o.provider = provider;
        if (direct != 0) lastDirectDeal[requestId] = direct;
        emit DealProven(requestId, dealId, provider, offset);
        return true;
    }

    /// @dev Whether `pin` is to be recorded in the deal: its request known, pinned and open,
    ///      its CID the request's, and its last recorded deal another (a market deal by its id,
    ///      a direct one, `NO_DEAL`, by its key `direct`); reverts when it names another piece.
    function toRecord(PinInclusion calldata pin, uint64 dealId, bytes32 direct) internal view returns (bool) {
        uint256 requestId = pin.requestId;
        Request storage r = requests[requestId];
        uint8 bits = r.reported;
        if (r.requester == address(0) || bits & PINNED == 0 || bits & (CANCELLED | FAILED) != 0) {
            return false;
        }
        if (r.cidTag != bytes8(pin.cidHash)) return false;
        Outcome storage o = outcomes[requestId];
        if (
            bits & DEAL_MADE != 0 && o.dealId == dealId
                && (direct == 0 || lastDirectDeal[requestId] == direct)
        ) {
            return false;
        }
        if (o.commP != pin.commP || o.paddedSize != pin.paddedSize) {
            revert EstuaryPinningPieceMismatch(requestId, pin.commP, pin.paddedSize);
        }
        return true;
    }

    /// @notice Reports that the request cannot be served: a code and a short detail (cut to
    ///         `MAX_DETAIL_LENGTH` bytes, emitted only). Its fee becomes refundable unless it was
    ///         pinned.
    function reportFailed(uint256 requestId, bytes32 cidHash, FailureCode code, string calldata detail)
        external
        onlyOperator
    {
        Request storage r = open(requestId, cidHash, FAILED, Report.Failed);
        r.reported |= FAILED;
        outcomes[requestId].failure = code;
        string calldata kept = bytes(detail).length > MAX_DETAIL_LENGTH ? detail[:MAX_DETAIL_LENGTH] : detail;
        emit PinFailed(requestId, msg.sender, code, kept);
    }

    function known(uint256 requestId) internal view returns (Request storage r) {
        r = requests[requestId];
        if (r.requester == address(0)) revert EstuaryPinningUnknownRequest(requestId);
    }

    function open(uint256 requestId, bytes32 cidHash, uint8 bit, Report report)
        internal
        view
        returns (Request storage r)
    {
        r = known(requestId);
        if (r.cidTag != bytes8(cidHash)) revert EstuaryPinningCidMismatch(requestId, cidHash);
        if (r.reported & bit != 0) revert EstuaryPinningAlreadyReported(requestId, report);
        if (r.reported & (CANCELLED | FAILED) != 0) revert EstuaryPinningRequestClosed(requestId);
    }

    /// @notice A deal made without the market for a `DealClient` proposal, and the pins it holds.
    struct DirectDealReport {
        /// The `DealClient` that made the proposal (one the owner trusts).
        address client;
        /// The proposal's id.
        bytes32 proposal;
        /// The miner actor ID that activated it.
        uint64 provider;
        PinInclusion[] pins;
    }

    /// @notice Reports a deal made without the storage market (Curio DDO) that holds pinned
    ///         requests, with a proof for each. Its facts are the `DealClient`'s: `client` must
    ///         be trusted (else `EstuaryPinningUnknownDealClient`) and record `provider`'s
    ///         activation of `proposal` as `NO_DEAL`, within the proposal's term (else
    ///         `EstuaryPinningDirectDealUnavailable`), and `provider` must be a miner actor (an
    ///         account can send the activation notice too); the deal's piece is the proposal's.
    ///         Each pin is then recorded as in `reportDeal` (skipped, refused or proven by the
    ///         same rules), as `DealProven(request, NO_DEAL, provider, offset)` followed by
    ///         `DirectDealProven(request, client, proposal)`; a request whose last recorded deal
    ///         is this one is skipped. Then one `DirectDealReported`.
    /// @dev Two read-only calls (the client's `getProposal`, the miner's GetOwner), then ~33k
    ///      gas per proof at most.
    /// @return recorded How many pins were recorded in this deal.
    // The client is one the owner trusts, and it is called through a view (STATICCALL).
    // slither-disable-next-line reentrancy-no-eth,reentrancy-benign,reentrancy-events
    function reportDirectDeal(DirectDealReport calldata report)
        external
        onlyOperator
        returns (uint256 recorded)
    {
        address client = report.client;
        if (!isDealClient[client]) revert EstuaryPinningUnknownDealClient(client);
        uint64 provider = report.provider;
        DealClient.ProposalView memory p = DealClient(payable(client)).getProposal(report.proposal);
        if (!activeDirect(p, provider) || !MinerActor.isMiner(provider)) {
            revert EstuaryPinningDirectDealUnavailable(client, report.proposal, provider);
        }
        (bool ok, bytes32 commPa) = PoDSI.commPOf(p.request.pieceCid);
        if (!ok) revert EstuaryPinningBadPiece();
        PoDSI.InclusionAuxData memory aggregate = PoDSI.InclusionAuxData(commPa, p.request.pieceSize);
        bytes32 key = keccak256(abi.encode(client, report.proposal, provider));
        for (uint256 i; i < report.pins.length; ++i) {
            if (recordInclusion(report.pins[i], NO_DEAL, provider, aggregate, key)) {
                ++recorded;
                emit DirectDealProven(report.pins[i].requestId, client, report.proposal);
            }
        }
        emit DirectDealReported(
            client, report.proposal, provider, msg.sender, commPa, aggregate.sizePa, recorded
        );
    }

    /// @dev Whether `p` records `provider`'s direct deal, activated, the proposal not cancelled
    ///      (its client then tells Curio the deal is over) and within its term.
    function activeDirect(DealClient.ProposalView memory p, uint64 provider) internal view returns (bool) {
        if (p.cancelled || int256(block.number) >= int256(p.request.endEpoch)) return false;
        for (uint256 k; k < p.deals.length; ++k) {
            DealClient.DealRecord memory d = p.deals[k];
            if (d.provider == provider && d.dealId == NO_DEAL && d.activated >= 0) return true;
        }
        return false;
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
        s.requestedAt = uint64(r.requestedHour) * 1 hours;
        s.pinned = r.reported & PINNED != 0;
        s.dealMade = r.reported & DEAL_MADE != 0;
        s.failed = r.reported & FAILED != 0;
        s.cancelled = r.reported & CANCELLED != 0;
        s.refunded = r.reported & REFUNDED != 0;
        s.fee = feeOf(requestId);
        s.commP = o.commP;
        s.paddedSize = o.paddedSize;
        s.dealId = o.dealId;
        s.provider = o.provider;
        s.failure = o.failure;
    }

    // ------------------------------------------------------------------ owner

    /// @notice Trusts (or stops trusting) `client`'s records of direct deals (`reportDirectDeal`).
    ///         Trust only a `DealClient` deployed from this project's source: its records are
    ///         taken as the chain's word.
    function setDealClient(address client, bool trusted) external onlyOwner {
        isDealClient[client] = trusted;
        emit DealClientSet(client, trusted);
    }

    /// @notice Sets the fee for requests made from now on.
    function setFee(uint96 fee_) external onlyOwner {
        fee = fee_;
        uint64 from = uint64(requestCount + 1);
        uint256 n = feeSchedule.length;
        if (n != 0 && feeSchedule[n - 1].fromRequest == from) feeSchedule[n - 1].fee = fee_;
        else feeSchedule.push(FeeChange(from, fee_));
        emit FeeSet(fee_, from);
    }

    /// @notice Sends the fees earned to `to`.
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
