// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {IEstuaryConsumer} from "./interfaces/IEstuaryConsumer.sol";
import {CidLib} from "./lib/CidLib.sol";
import {Operated} from "./lib/Operated.sol";

/// @title EstuaryOracle
/// @notice Lets any contract request an Estuary job — pin a CID, or store a piece in a Filecoin
///         deal — and receive the result in a callback. Requests are paid (`price`); the
///         Estuary oracle service (an operator) does the work and calls `fulfill`, which calls the
///         consumer with the gas limit the consumer chose. A consumer that reverts, runs out of
///         gas or returns huge data never blocks the oracle: the failure is recorded and the job
///         is done.
contract EstuaryOracle is Operated {
    /// @notice Kinds of job.
    enum JobKind {
        /// Pin a CID on IPFS; result `(bytes pieceCid, uint64 paddedSize)`.
        Pin,
        /// Put a pinned CID in a Filecoin deal; result `(uint64 dealId, uint64 provider)`.
        Store
    }

    /// @notice A job's record.
    struct Job {
        address consumer;
        uint32 callbackGasLimit;
        JobKind kind;
        bool done;
    }

    /// @notice Most gas a consumer may ask for its callback.
    uint32 public constant MAX_CALLBACK_GAS = 1_000_000;
    /// @notice Gas kept back for the oracle's own bookkeeping after the callback.
    uint256 internal constant RESERVE_GAS = 20_000;

    /// @notice Price per job kind, in wei.
    mapping(JobKind kind => uint256) public price;
    /// @notice Jobs by ID, from 1.
    mapping(uint256 jobId => Job) public jobs;
    /// @notice Jobs requested so far.
    uint256 public jobCount;
    /// @notice Payments received and not yet withdrawn.
    uint256 public feesHeld;

    event JobRequested(
        uint256 indexed jobId,
        address indexed consumer,
        JobKind kind,
        bytes cid,
        bytes params,
        uint32 callbackGasLimit
    );
    event JobFulfilled(uint256 indexed jobId, bool ok, bool callbackSucceeded);
    event PriceSet(JobKind kind, uint256 price);
    event FeesWithdrawn(address indexed to, uint256 amount);

    error EstuaryOracleInvalidCid(CidLib.CidError reason);
    error EstuaryOracleWrongPayment(uint256 price, uint256 sent);
    error EstuaryOracleGasLimitTooHigh(uint32 limit);
    error EstuaryOracleUnknownJob(uint256 jobId);
    error EstuaryOracleAlreadyFulfilled(uint256 jobId);
    error EstuaryOracleNotEnoughGas(uint256 needed, uint256 left);
    error EstuaryOracleTransferFailed();

    constructor(address owner_) Operated(owner_) {}

    /// @notice Requests a job; `msg.sender` receives the callback.
    /// @param kind What to do.
    /// @param cid The binary CID of the content.
    /// @param params Kind-specific parameters (for `Store`: ABI `(uint16 replicas, bool verified)`).
    /// @param callbackGasLimit Gas for `onEstuaryResult` (at most `MAX_CALLBACK_GAS`).
    /// @return jobId The job's ID.
    function requestJob(JobKind kind, bytes calldata cid, bytes calldata params, uint32 callbackGasLimit)
        external
        payable
        returns (uint256 jobId)
    {
        CidLib.CidError err = CidLib.check(cid);
        if (err != CidLib.CidError.None) revert EstuaryOracleInvalidCid(err);
        if (msg.value != price[kind]) revert EstuaryOracleWrongPayment(price[kind], msg.value);
        if (callbackGasLimit > MAX_CALLBACK_GAS) revert EstuaryOracleGasLimitTooHigh(callbackGasLimit);
        feesHeld += msg.value;
        jobId = ++jobCount;
        jobs[jobId] = Job(msg.sender, callbackGasLimit, kind, false);
        emit JobRequested(jobId, msg.sender, kind, cid, params, callbackGasLimit);
    }

    /// @notice Delivers a job's result to its consumer, once.
    /// @dev The transaction must carry enough gas for the consumer's full limit (checked, so an
    ///      operator cannot starve a callback); the callback's return data is never copied.
    function fulfill(uint256 jobId, bool ok, bytes calldata result) external onlyOperator {
        Job storage job = jobs[jobId];
        if (job.consumer == address(0)) revert EstuaryOracleUnknownJob(jobId);
        if (job.done) revert EstuaryOracleAlreadyFulfilled(jobId);
        job.done = true;
        uint256 limit = job.callbackGasLimit;
        // EIP-150 passes at most 63/64 of what is left: make sure the consumer gets its limit.
        uint256 needed = limit + limit / 63 + RESERVE_GAS;
        if (gasleft() < needed) revert EstuaryOracleNotEnoughGas(needed, gasleft());
        bytes memory data = abi.encodeCall(IEstuaryConsumer.onEstuaryResult, (jobId, ok, result));
        address consumer = job.consumer;
        bool called;
        assembly ("memory-safe") {
            called := call(limit, consumer, 0, add(data, 32), mload(data), 0, 0)
        }
        emit JobFulfilled(jobId, ok, called);
    }

    /// @notice Sets the price of a job kind.
    function setPrice(JobKind kind, uint256 price_) external onlyOwner {
        price[kind] = price_;
        emit PriceSet(kind, price_);
    }

    /// @notice Sends the payments held to `to`.
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
///         `requestStore` and implement `onPinned` / `onStored` / `onFailed`.
abstract contract EstuaryConsumer is IEstuaryConsumer {
    /// @notice The oracle this consumer trusts.
    EstuaryOracle public immutable estuaryOracle;

    /// @notice The callback did not come from `estuaryOracle`.
    error EstuaryConsumerNotOracle(address caller);

    constructor(EstuaryOracle oracle) {
        estuaryOracle = oracle;
    }

    /// @notice Requests a pin of `cid`, paying the oracle's price from this contract's balance.
    function requestPin(bytes memory cid, uint32 callbackGasLimit) internal returns (uint256 jobId) {
        uint256 cost = estuaryOracle.price(EstuaryOracle.JobKind.Pin);
        return estuaryOracle.requestJob{value: cost}(EstuaryOracle.JobKind.Pin, cid, "", callbackGasLimit);
    }

    /// @notice Requests a Filecoin deal for `cid`, paying the oracle's price.
    function requestStore(bytes memory cid, uint16 replicas, bool verified, uint32 callbackGasLimit)
        internal
        returns (uint256 jobId)
    {
        uint256 cost = estuaryOracle.price(EstuaryOracle.JobKind.Store);
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
        (,, EstuaryOracle.JobKind kind,) = estuaryOracle.jobs(jobId);
        if (kind == EstuaryOracle.JobKind.Pin) {
            (bytes memory pieceCid, uint64 paddedSize) = abi.decode(result, (bytes, uint64));
            onPinned(jobId, pieceCid, paddedSize);
        } else {
            (uint64 dealId, uint64 provider) = abi.decode(result, (uint64, uint64));
            onStored(jobId, dealId, provider);
        }
    }

    /// @notice A pin job succeeded.
    function onPinned(uint256 jobId, bytes memory pieceCid, uint64 paddedSize) internal virtual;
    /// @notice A store job succeeded.
    function onStored(uint256 jobId, uint64 dealId, uint64 provider) internal virtual;
    /// @notice A job failed.
    function onFailed(uint256 jobId, string memory reason) internal virtual;
}
