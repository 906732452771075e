// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {MarketActor} from "./MarketActor.sol";
import {PoDSI} from "./PoDSI.sol";

/// @title EstuaryResults
/// @notice The results `EstuaryOracle` delivers to consumers (`IEstuaryConsumer.onEstuaryResult`),
///         their encoding, and the checks a consumer can run on a stored result at any time.
///
///         - A pin job's result: `abi.encode(bytes pieceCid, uint64 paddedSize)`, the content's
///           v1 piece CID (binary) and padded size.
///         - A store job's result: `abi.encode(StoreResult)`, the content's piece and, for each
///           deal holding it, the deal, its provider and the FRC-0058 proof that the piece is in
///           the deal's piece. `EstuaryOracle.fulfill` verifies every deal against the market
///           (`verifyStore`) before it delivers the result, so a consumer receives only deals
///           that were active, its provider's and provably holding the piece at delivery.
///           Deals end: `verifyDeal` asks the market again whenever the consumer wants.
///         - A failure: `abi.encode(string reason)`.
library EstuaryResults {
    /// @notice Most deals a store result may carry (the replicas a job may ask for).
    uint256 internal constant MAX_DEALS = 10;

    /// @notice One deal holding the content.
    struct StoredDeal {
        uint64 dealId;
        /// The deal's provider (miner actor ID).
        uint64 provider;
        /// That the content's piece is a data segment of the deal's piece (FRC-0058).
        PoDSI.InclusionProof proof;
    }

    /// @notice A store job's result.
    struct StoreResult {
        /// The content's piece (its CAR's commP, as a pin job reports it) and padded size.
        bytes32 commP;
        uint64 paddedSize;
        /// The deals holding it (1 to `MAX_DEALS`, each at a different provider or not).
        StoredDeal[] deals;
    }

    /// @notice What the market says of a stored deal now.
    enum Verdict {
        /// Active, the provider's, and the proof leads to its piece.
        Valid,
        /// No such deal (17).
        DealNotFound,
        /// The deal left the market: ended, terminated, timed out (32).
        DealExpired,
        /// Published, not activated yet.
        NotActive,
        /// Another provider's deal.
        WrongProvider,
        /// The proof does not lead to the deal's piece (`failure` says why).
        InvalidProof
    }

    /// @notice A pin job's result.
    function decodePin(bytes memory result) internal pure returns (bytes memory pieceCid, uint64 paddedSize) {
        return abi.decode(result, (bytes, uint64));
    }

    /// @notice A store job's result.
    function decodeStore(bytes memory result) internal pure returns (StoreResult memory) {
        return abi.decode(result, (StoreResult));
    }

    /// @notice A store job's result, encoded as `fulfill` takes it.
    function encodeStore(StoreResult memory result) internal pure returns (bytes memory) {
        return abi.encode(result);
    }

    /// @notice Asks the market about one deal of a store result, now: GetDealActivation (active,
    ///         not terminated), GetDealProvider, then GetDealDataCommitment and the proof.
    /// @return verdict `Verdict.Valid` when every check holds.
    /// @return failure PoDSI's reason when `verdict` is `InvalidProof`.
    function verifyDeal(bytes32 commP, uint64 paddedSize, StoredDeal memory deal)
        internal
        returns (Verdict verdict, PoDSI.Failure failure)
    {
        (MarketActor.Status status, int64 activated,) = MarketActor.getDealActivation(deal.dealId);
        if (status != MarketActor.Status.Ok) return (gone(status), failure);
        if (activated < 0) return (Verdict.NotActive, failure);
        uint64 provider;
        (status, provider) = MarketActor.getDealProvider(deal.dealId);
        if (status != MarketActor.Status.Ok) return (gone(status), failure);
        if (provider != deal.provider) return (Verdict.WrongProvider, failure);
        (status, failure) =
            PoDSI.checkDeal(deal.dealId, deal.proof, PoDSI.InclusionVerifierData(commP, paddedSize));
        if (status != MarketActor.Status.Ok) return (gone(status), failure);
        return (failure == PoDSI.Failure.None ? Verdict.Valid : Verdict.InvalidProof, failure);
    }

    /// @notice Checks every deal of a store result (`verifyDeal`); stops at the first that
    ///         does not hold. A result without deals, or with more than `MAX_DEALS`, is refused
    ///         as `InvalidProof` at index `deals.length`.
    /// @return valid Whether every deal holds.
    /// @return index The first deal that does not.
    /// @return verdict Its verdict.
    /// @return failure PoDSI's reason, for `InvalidProof`.
    function verifyStore(StoreResult memory result)
        internal
        returns (bool valid, uint256 index, Verdict verdict, PoDSI.Failure failure)
    {
        uint256 n = result.deals.length;
        if (n == 0 || n > MAX_DEALS) return (false, n, Verdict.InvalidProof, PoDSI.Failure.None);
        for (; index < n; ++index) {
            (verdict, failure) = verifyDeal(result.commP, result.paddedSize, result.deals[index]);
            if (verdict != Verdict.Valid) return (false, index, verdict, failure);
        }
        return (true, n, Verdict.Valid, PoDSI.Failure.None);
    }

    function gone(MarketActor.Status status) private pure returns (Verdict) {
        return status == MarketActor.Status.NotFound ? Verdict.DealNotFound : Verdict.DealExpired;
    }
}
