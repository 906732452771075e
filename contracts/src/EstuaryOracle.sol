// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {IEstuaryConsumer} from "./interfaces/IEstuaryConsumer.sol";
import {CidLib} from "./lib/CidLib.sol";
import {EstuaryResults} from "./lib/EstuaryResults.sol";
import {Operated} from "./lib/Operated.sol";
import {PoDSI} from "./lib/PoDSI.sol";

/// @title EstuaryOracle
/// @notice Lets any contract request an Estuary job — pin a CID, or store a piece in a Filecoin
///         deal — and receive the result in a callback. A request pays `quote(kind, gas)`: the
///         kind's base fee (the operator's own costs: the work and the fulfilling transaction)
///         plus the callback gas the consumer asks for at `callbackGasPrice`, so the operator is
///         never out of pocket for a consumer's gas. The Estuary oracle service (an operator)
///         does the work and calls `fulfill`, which calls the consumer with the gas limit the
///         consumer chose. A consumer that reverts, runs out of gas or returns huge data never
///         blocks the oracle: the failure is recorded and the job is done.
/// @dev Each consumer may have at most `capOf(consumer)` jobs open, so that one consumer cannot
///      flood the operator. A job left unfulfilled `jobTimeout` seconds may be cancelled by its
///      consumer, which gets its payment back and frees its place under the cap. Payments are
///      escrowed until fulfilment (then earned: `feesHeld`) or cancellation (refunded).
///
///      Store jobs are fulfilled once deals holding the content are active, with
///      `EstuaryResults.StoreResult` (the content's piece and, per deal, its ID, provider and
///      FRC-0058 inclusion proof); `fulfill` checks each deal against the market (active, the
///      provider's, the proof leading to its piece: `EstuaryResults.verifyStore`) and refuses
///      the result otherwise, so a consumer never receives a deal it could not verify itself.
///      The job asks for a number of replicas; the operator may deliver fewer (at least one)
///      if no more providers take the deal within its time.
contract EstuaryOracle is Operated {
    /// @notice Kinds of job.
    enum JobKind {
        /// Pin a CID on IPFS; result `abi.encode(bytes pieceCid, uint64 paddedSize)`.
        Pin,
        /// Keep a CID in Filecoin deals; params `abi.encode(uint16 replicas, bool verified)`
        /// (1 to `MAX_REPLICAS` replicas); result `abi.encode(EstuaryResults.StoreResult)`.
        Store
    }

    /// @notice A job's life.
    enum JobState {
        None,
        Open,
        Fulfilled,
        Cancelled
    }

    /// @notice A job's record.
    struct Job {
        address consumer;
        uint32 callbackGasLimit;
        JobKind kind;
        JobState state;
        uint40 requestedAt;
        uint96 paid;
    }

    /// @notice Most gas a consumer may ask for its callback.
    uint32 public constant MAX_CALLBACK_GAS = 1_000_000;
    /// @notice Most replicas a store job may ask for.
    uint16 public constant MAX_REPLICAS = uint16(EstuaryResults.MAX_DEALS);
    /// @notice Gas kept back for the oracle's own bookkeeping after the callback.
    uint256 internal constant RESERVE_GAS = 20_000;

    /// @notice Seconds after which an open job may be cancelled by its consumer.
    uint64 public immutable jobTimeout;

    /// @notice The base fee per job kind, in wei (the operator's costs besides the callback).
    mapping(JobKind kind => uint256) public baseFee;
    /// @notice The price of one unit of callback gas, in wei.
    uint256 public callbackGasPrice;
    /// @notice Open jobs a consumer may have, unless set per consumer.
    uint16 public defaultConsumerCap;
    /// @notice A consumer's own cap (0: the default).
    mapping(address consumer => uint16) public consumerCap;
    /// @notice A consumer's open jobs.
    mapping(address consumer => uint16) public openJobs;
    /// @notice Jobs by ID, from 1.
    mapping(uint256 jobId => Job) public jobs;
    /// @notice Jobs requested so far.
    uint256 public jobCount;
    /// @notice Payments of fulfilled jobs, not yet withdrawn.
    uint256 public feesHeld;
    /// @notice Payments of open jobs.
    uint256 public feesEscrowed;

    event JobRequested(
        uint256 indexed jobId,
        address indexed consumer,
        JobKind kind,
        bytes cid,
        bytes params,
        uint32 callbackGasLimit
    );
    event JobFulfilled(uint256 indexed jobId, bool ok, bool callbackSucceeded);
    event JobCancelled(uint256 indexed jobId, address indexed to, uint256 refund);
    event BaseFeeSet(JobKind kind, uint256 fee);
    event CallbackGasPriceSet(uint256 price);
    event ConsumerCapSet(address indexed consumer, uint16 cap);
    event DefaultConsumerCapSet(uint16 cap);
    event FeesWithdrawn(address indexed to, uint256 amount);

    error EstuaryOracleInvalidCid(CidLib.CidError reason);
    error EstuaryOracleWrongPayment(uint256 price, uint256 sent);
    error EstuaryOracleGasLimitTooHigh(uint32 limit);
    error EstuaryOracleConsumerCapReached(address consumer, uint16 cap);
    error EstuaryOracleUnknownJob(uint256 jobId);
    error EstuaryOracleAlreadyFulfilled(uint256 jobId);
    error EstuaryOracleNotConsumer(uint256 jobId, address caller);
    error EstuaryOracleNotCancellable(uint256 jobId);
    error EstuaryOracleNotEnoughGas(uint256 needed, uint256 left);
    /// @notice A store job's params are not `abi.encode(uint16 replicas, bool verified)` with 1 to
    ///         `MAX_REPLICAS` replicas.
    error EstuaryOracleBadParams();
    /// @notice Deal `index` of a store result does not hold (`verdict`; PoDSI's `failure` for
    ///         an invalid proof). `index == deals.length`: no deals, or more than `MAX_REPLICAS`.
    error EstuaryOracleInvalidDeal(
        uint256 jobId, uint256 index, EstuaryResults.Verdict verdict, PoDSI.Failure failure
    );
    error EstuaryOracleTransferFailed();

    /// @param owner_ The owner: manages operators, prices and caps.
    /// @param jobTimeout_ Seconds after which a consumer may cancel an unfulfilled job.
    /// @param defaultCap_ Open jobs a consumer may have by default.
    constructor(address owner_, uint64 jobTimeout_, uint16 defaultCap_) Operated(owner_) {
        jobTimeout = jobTimeout_;
        defaultConsumerCap = defaultCap_;
        emit DefaultConsumerCapSet(defaultCap_);
    }

    /// @notice The price of a job of `kind` whose callback gets `callbackGasLimit` gas:
    ///         `baseFee[kind] + callbackGasLimit * callbackGasPrice`.
    function quote(JobKind kind, uint32 callbackGasLimit) public view returns (uint256) {
        return baseFee[kind] + uint256(callbackGasLimit) * callbackGasPrice;
    }

    /// @notice The open jobs `consumer` may have.
    function capOf(address consumer) public view returns (uint16) {
        uint16 cap = consumerCap[consumer];
        return cap == 0 ? defaultConsumerCap : cap;
    }

    /// @notice Requests a job; `msg.sender` receives the callback. Pays exactly `quote`.
    /// @param kind What to do.
    /// @param cid The binary CID of the content.
    /// @param params Kind-specific parameters (for `Store`: `abi.encode(uint16 replicas, bool
    ///        verified)`, 1 to `MAX_REPLICAS` replicas).
    /// @param callbackGasLimit Gas for `onEstuaryResult` (at most `MAX_CALLBACK_GAS`).
    /// @return jobId The job's ID.
    function requestJob(JobKind kind, bytes calldata cid, bytes calldata params, uint32 callbackGasLimit)
        external
        payable
        returns (uint256 jobId)
    {
        CidLib.CidError err = CidLib.check(cid);
        if (err != CidLib.CidError.None) revert EstuaryOracleInvalidCid(err);
        if (callbackGasLimit > MAX_CALLBACK_GAS) revert EstuaryOracleGasLimitTooHigh(callbackGasLimit);
        if (kind == JobKind.Store) checkStoreParams(params);
        uint256 cost = quote(kind, callbackGasLimit);
        if (msg.value != cost) revert EstuaryOracleWrongPayment(cost, msg.value);
        uint16 cap = capOf(msg.sender);
        uint16 open = openJobs[msg.sender];
        if (open >= cap) revert EstuaryOracleConsumerCapReached(msg.sender, cap);
        openJobs[msg.sender] = open + 1;
        feesEscrowed += msg.value;
        jobId = ++jobCount;
        jobs[jobId] = Job(
            msg.sender, callbackGasLimit, kind, JobState.Open, uint40(block.timestamp), uint96(msg.value)
        );
        emit JobRequested(jobId, msg.sender, kind, cid, params, callbackGasLimit);
    }

    function checkStoreParams(bytes calldata params) internal pure {
        if (params.length != 64) revert EstuaryOracleBadParams();
        (uint256 replicas, uint256 verified) = abi.decode(params, (uint256, uint256));
        if (replicas == 0 || replicas > MAX_REPLICAS || verified > 1) revert EstuaryOracleBadParams();
    }

    /// @notice Delivers a job's result to its consumer, once. A successful store job's result
    ///         must be `abi.encode(EstuaryResults.StoreResult)` whose every deal is active, its
    ///         provider's and proven to hold the piece (else `EstuaryOracleInvalidDeal`).
    /// @dev The transaction must carry enough gas for the consumer's full limit (checked, so an
    ///      operator cannot starve a callback); the callback's return data is never copied.
    ///      Checking a store result costs about 3 market queries and one proof (≤ ~33k gas)
    ///      per deal, before the callback.
    // The market queries are sent READ_ONLY (they cannot call back or change state); the only
    // call after the writes is the consumer's callback, by design last.
    // slither-disable-next-line reentrancy-no-eth,reentrancy-benign,reentrancy-events
    function fulfill(uint256 jobId, bool ok, bytes calldata result) external onlyOperator {
        Job storage job = jobs[jobId];
        if (job.state == JobState.None) revert EstuaryOracleUnknownJob(jobId);
        if (job.state != JobState.Open) revert EstuaryOracleAlreadyFulfilled(jobId);
        if (ok && job.kind == JobKind.Store) {
            (bool valid, uint256 index, EstuaryResults.Verdict verdict, PoDSI.Failure failure) =
                EstuaryResults.verifyStore(EstuaryResults.decodeStore(result));
            if (!valid) revert EstuaryOracleInvalidDeal(jobId, index, verdict, failure);
        }
        job.state = JobState.Fulfilled;
        address consumer = job.consumer;
        openJobs[consumer] -= 1;
        feesEscrowed -= job.paid;
        feesHeld += job.paid;
        uint256 limit = job.callbackGasLimit;
        // EIP-150 passes at most 63/64 of what is left: make sure the consumer gets its limit.
        uint256 needed = limit + limit / 63 + RESERVE_GAS;
        if (gasleft() < needed) revert EstuaryOracleNotEnoughGas(needed, gasleft());
        bytes memory data = abi.encodeCall(IEstuaryConsumer.onEstuaryResult, (jobId, ok, result));
        bool called;
        assembly ("memory-safe") {
            called := call(limit, consumer, 0, add(data, 32), mload(data), 0, 0)
        }
        emit JobFulfilled(jobId, ok, called);
    }

    /// @notice Cancels a job not fulfilled within `jobTimeout`; its payment goes to `to`.
    ///         Consumer only.
    function cancelJob(uint256 jobId, address payable to) external {
        Job storage job = jobs[jobId];
        if (job.state == JobState.None) revert EstuaryOracleUnknownJob(jobId);
        if (msg.sender != job.consumer) revert EstuaryOracleNotConsumer(jobId, msg.sender);
        if (job.state != JobState.Open || block.timestamp < uint256(job.requestedAt) + jobTimeout) {
            revert EstuaryOracleNotCancellable(jobId);
        }
        job.state = JobState.Cancelled;
        openJobs[msg.sender] -= 1;
        uint256 refund = job.paid;
        feesEscrowed -= refund;
        emit JobCancelled(jobId, to, refund);
        (bool sent,) = to.call{value: refund}("");
        if (!sent) revert EstuaryOracleTransferFailed();
    }

    /// @notice Decodes a store job's result (`abi.encode(EstuaryResults.StoreResult)`): for
    ///         explorers and off-chain encoders, which get the type from this ABI.
    function decodeStoreResult(bytes calldata result)
        external
        pure
        returns (EstuaryResults.StoreResult memory)
    {
        return EstuaryResults.decodeStore(result);
    }

    /// @notice Sets the base fee of a job kind.
    function setBaseFee(JobKind kind, uint256 fee) external onlyOwner {
        baseFee[kind] = fee;
        emit BaseFeeSet(kind, fee);
    }

    /// @notice Sets the price of a unit of callback gas.
    function setCallbackGasPrice(uint256 price) external onlyOwner {
        callbackGasPrice = price;
        emit CallbackGasPriceSet(price);
    }

    /// @notice Sets a consumer's cap on open jobs (0: back to the default).
    function setConsumerCap(address consumer, uint16 cap) external onlyOwner {
        consumerCap[consumer] = cap;
        emit ConsumerCapSet(consumer, cap);
    }

    /// @notice Sets the default cap on open jobs per consumer.
    function setDefaultConsumerCap(uint16 cap) external onlyOwner {
        defaultConsumerCap = cap;
        emit DefaultConsumerCapSet(cap);
    }

    /// @notice Sends the payments earned to `to`.
    function withdrawFees(address payable to) external onlyOwner {
        uint256 amount = feesHeld;
        feesHeld = 0;
        emit FeesWithdrawn(to, amount);
        (bool sent,) = to.call{value: amount}("");
        if (!sent) revert EstuaryOracleTransferFailed();
    }
}

/// @title EstuaryConsumer
/// @notice Base for contracts that use `EstuaryOracle`: request jobs with `requestPin` /
///         `requestStore` and implement `onPinned` / `onStored` / `onFailed`. A stored result
///         was verified by the oracle contract at delivery; `EstuaryResults.verifyDeal` asks
///         the market again later (deals end). Decoding a store result in the callback costs
///         gas within the callback's limit: about 1.3 KB of proof per deal of a few MiB, 4 KB at
///         64 GiB, a few thousand gas each.
abstract contract EstuaryConsumer is IEstuaryConsumer {
    /// @notice The oracle this consumer trusts.
    EstuaryOracle public immutable estuaryOracle;

    /// @notice The callback did not come from `estuaryOracle`.
    error EstuaryConsumerNotOracle(address caller);

    constructor(EstuaryOracle oracle) {
        estuaryOracle = oracle;
    }

    /// @notice Requests a pin of `cid`, paying the oracle's quote from this contract's balance.
    function requestPin(bytes memory cid, uint32 callbackGasLimit) internal returns (uint256 jobId) {
        uint256 cost = estuaryOracle.quote(EstuaryOracle.JobKind.Pin, callbackGasLimit);
        return estuaryOracle.requestJob{value: cost}(EstuaryOracle.JobKind.Pin, cid, "", callbackGasLimit);
    }

    /// @notice Requests a Filecoin deal for `cid`, paying the oracle's quote.
    function requestStore(bytes memory cid, uint16 replicas, bool verified, uint32 callbackGasLimit)
        internal
        returns (uint256 jobId)
    {
        uint256 cost = estuaryOracle.quote(EstuaryOracle.JobKind.Store, callbackGasLimit);
        return estuaryOracle.requestJob{value: cost}(
            EstuaryOracle.JobKind.Store, cid, abi.encode(replicas, verified), callbackGasLimit
        );
    }

    /// @inheritdoc IEstuaryConsumer
    function onEstuaryResult(uint256 jobId, bool ok, bytes calldata result) external {
        if (msg.sender != address(estuaryOracle)) revert EstuaryConsumerNotOracle(msg.sender);
        if (!ok) {
            onFailed(jobId, abi.decode(result, (string)));
            return;
        }
        (,, EstuaryOracle.JobKind kind,,,) = estuaryOracle.jobs(jobId);
        if (kind == EstuaryOracle.JobKind.Pin) {
            (bytes memory pieceCid, uint64 paddedSize) = EstuaryResults.decodePin(result);
            onPinned(jobId, pieceCid, paddedSize);
        } else {
            onStored(jobId, EstuaryResults.decodeStore(result));
        }
    }

    /// @notice A pin job succeeded.
    function onPinned(uint256 jobId, bytes memory pieceCid, uint64 paddedSize) internal virtual;
    /// @notice A store job succeeded: the content's piece and the deals holding it, each
    ///         verified active and proven at delivery.
    function onStored(uint256 jobId, EstuaryResults.StoreResult memory result) internal virtual;
    /// @notice A job failed.
    function onFailed(uint256 jobId, string memory reason) internal virtual;
}
