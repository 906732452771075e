// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @title IEstuaryConsumer
/// @notice What a contract implements to receive the results of the Estuary jobs it requested
///         from `EstuaryOracle`.
interface IEstuaryConsumer {
    /// @notice The result of job `jobId`. Called by the oracle contract only, with at most the gas
    ///         limit the consumer asked for; a revert here is recorded and never retried.
    /// @param jobId The job, as returned by `EstuaryOracle.requestJob`.
    /// @param ok Whether the job succeeded.
    /// @param result ABI-encoded result (see `EstuaryResults`, which decodes and checks them):
    ///        for a pin `(bytes pieceCid, uint64 paddedSize)`; for a store job
    ///        `EstuaryResults.StoreResult` (the piece, and per deal its ID, provider and FRC-0058
    ///        inclusion proof, verified by the oracle contract); for a failure, the reason as a
    ///        string.
    function onEstuaryResult(uint256 jobId, bool ok, bytes calldata result) external;
}
