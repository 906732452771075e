// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {Cbor} from "./lib/Cbor.sol";
import {DataCapActor} from "./lib/DataCapActor.sol";
import {MarketActor} from "./lib/MarketActor.sol";
import {PoDSI} from "./lib/PoDSI.sol";

/// @title DealStateView
/// @notice What the storage market actor says of many deals, in one `eth_call`: for each deal
///         its state (published, active, not found, expired), the exit code that says so, and
///         when it is in the market its piece, provider, term, activation and sector. It asks the
///         market through the FEVM `call_actor_id` precompile with the actor's own methods, so
///         the same code answers on Filecoin (Calibration, mainnet) and on the local chain,
///         where `MarketSimulator` stands in for the market (see `docs/filecoin-model.md`).
///         Stateless: call it with `eth_call` (it is not a `view` only because the precompile
///         must be DELEGATECALLed); any contract may call it too.
/// @dev Per deal, in this order (builtin-actors v18 `actors/market/src/lib.rs`):
///      1. GetDealActivation: 17 (USR_NOT_FOUND: never published, or not yet), 32
///         (EX_DEAL_EXPIRED: ended and settled, terminated — removed at once since v13 — or
///         timed out before activation), else `[activated, terminated]` (-1 before activation;
///         `terminated` is always -1 when answered: a terminated deal answers 32).
///      2. GetDealDataCommitment `[piece CID, padded size]`, GetDealProvider, GetDealTerm
///         `[start, duration]`.
///      3. GetDealSector: the sector once activated, 33 (EX_DEAL_NOT_ACTIVATED) before.
///      A deal whose end has passed stays in the market's state until the market settles it
///      (its cron, within 30 days), answering as before: compare `start + duration` with
///      `epoch` to see it expiring. Any other exit code is returned as it is with status
///      `Unknown`; only a failing precompile (a node that cannot run the call) reverts the
///      whole call, so a read that fails is never mistaken for an expired deal.
///      At most `MAX_DEALS` deals per call.
contract DealStateView {
    /// @notice Most deals one call asks about (five market queries each at most).
    uint256 public constant MAX_DEALS = 200;

    /// @notice What the market says of a deal.
    enum Status {
        /// Published, not yet activated (GetDealSector answers 33).
        Published,
        /// Activated and in the market's state (possibly past its end, not yet settled).
        Active,
        /// Never published (17).
        NotFound,
        /// Gone from the market: ended, terminated or timed out (32).
        Expired,
        /// The market answered another exit code (`exitCode`).
        Unknown
    }

    /// @notice One deal's state, as the market reports it.
    struct DealState {
        uint64 dealId;
        Status status;
        /// The exit code that decided `status`: 0 (active), 33 (published), 17, 32, or another.
        int256 exitCode;
        /// The fields below are zero unless the deal is published or active.
        uint64 provider;
        /// The deal's piece: the commitment of its v1 piece CID, and its padded size.
        bytes32 commP;
        uint64 pieceSize;
        int64 start;
        int64 duration;
        /// The epoch of activation (-1: not activated).
        int64 activated;
        /// As GetDealActivation answers it (-1).
        int64 terminated;
        /// The sector holding the deal (once active).
        uint64 sector;
    }

    /// @notice More deals asked about than `MAX_DEALS`.
    error DealStateViewTooManyDeals(uint256 count, uint256 max);

    /// @notice The state of each deal of `dealIds`, and the epoch (block number) it holds at.
    /// @param dealIds At most `MAX_DEALS` deal IDs (repeats are answered again).
    /// @return epoch The current epoch.
    /// @return states One per deal ID, in the same order.
    function getDeals(uint64[] calldata dealIds) external returns (uint64 epoch, DealState[] memory states) {
        if (dealIds.length > MAX_DEALS) revert DealStateViewTooManyDeals(dealIds.length, MAX_DEALS);
        states = new DealState[](dealIds.length);
        for (uint256 k; k < dealIds.length; ++k) {
            states[k] = getDeal(dealIds[k]);
        }
        epoch = uint64(block.number);
    }

    /// @notice The state of one deal (`getDeals` for one).
    function getDeal(uint64 dealId) public returns (DealState memory s) {
        s.dealId = dealId;
        s.activated = -1;
        s.terminated = -1;
        (int256 code, bytes memory ret) = MarketActor.ask(MarketActor.GET_DEAL_ACTIVATION, dealId);
        if (code != 0) return gone(s, code);
        (s.activated, s.terminated) = MarketActor.decodeActivation(ret);

        (code, ret) = MarketActor.ask(MarketActor.GET_DEAL_DATA_COMMITMENT, dealId);
        if (code != 0) return gone(s, code);
        bytes memory pieceCid;
        (pieceCid, s.pieceSize) = MarketActor.decodeDataCommitment(ret);
        (, s.commP) = PoDSI.commPOf(pieceCid);

        (code, ret) = MarketActor.ask(MarketActor.GET_DEAL_PROVIDER, dealId);
        if (code != 0) return gone(s, code);
        (s.provider,) = Cbor.readUint(ret, 0);

        (code, ret) = MarketActor.ask(MarketActor.GET_DEAL_TERM, dealId);
        if (code != 0) return gone(s, code);
        (s.start, s.duration) = MarketActor.decodeTerm(ret);

        (code, ret) = MarketActor.ask(MarketActor.GET_DEAL_SECTOR, dealId);
        s.exitCode = code;
        if (code == 0) {
            (s.sector,) = Cbor.readUint(ret, 0);
            s.status = Status.Active;
        } else if (code == MarketActor.EX_DEAL_NOT_ACTIVATED) {
            s.status = Status.Published;
        } else {
            return gone(s, code);
        }
    }

    /// @notice What a deal proves of a client's piece, in one `eth_call`: the deal as `getDeal`
    ///         reports it, and whether the FRC-0058 proof leads from the piece to the deal's
    ///         piece as the market gives it (`PoDSI.verify`: go-data-segment's checks, in its
    ///         order), with where the piece lies in it. What a client runs to see, without
    ///         trusting the oracle that made the proof, that its own piece is inside an SP's deal.
    /// @param dealId The deal.
    /// @param proof The piece's inclusion proof (from the oracle's `GET /inclusion/{piece}`).
    /// @param piece The client's piece: its commitment and padded size.
    /// @return deal The deal's state, as `getDeal` gives it.
    /// @return proven Whether the deal is in the market (published or active) and the proof
    ///         leads from `piece` to the deal's piece.
    /// @return failure Why the proof does not hold (`None` when it does, and when the deal is
    ///         not in the market: then nothing was judged).
    /// @return offset Where the piece starts in the deal's piece, padded bytes (0 unless proven).
    function checkInclusion(
        uint64 dealId,
        PoDSI.InclusionProof calldata proof,
        PoDSI.InclusionVerifierData calldata piece
    ) external returns (DealState memory deal, bool proven, PoDSI.Failure failure, uint64 offset) {
        deal = getDeal(dealId);
        if (deal.status != Status.Published && deal.status != Status.Active) {
            return (deal, false, PoDSI.Failure.None, 0);
        }
        failure = PoDSI.verify(proof, piece, PoDSI.InclusionAuxData(deal.commP, deal.pieceSize));
        proven = failure == PoDSI.Failure.None;
        if (proven) offset = PoDSI.offsetOf(proof, piece.sizePc);
    }

    /// @notice The DataCap of a verified client (such as a `DealClient`), as the DataCap actor
    ///         (f07) answers `Balance`: what its verified deals may still take, in bytes of
    ///         padded piece (the market takes one whole token per byte when it publishes one).
    ///         What the oracle checks before it proposes a verified deal.
    /// @param account The client's EVM address (a masked ID address for a non-EVM actor).
    /// @return exitCode The actor's exit code (0 on success; then `dataCap` is the balance).
    /// @return dataCap Whole tokens: bytes of verified deals the balance covers.
    function dataCapOf(address account) external returns (int256 exitCode, uint256 dataCap) {
        bool ok;
        uint256 atto;
        (ok, exitCode, atto) = DataCapActor.balanceOf(account);
        if (!ok) revert MarketActor.MarketCallFailed(DataCapActor.BALANCE, -1);
        dataCap = atto / DataCapActor.TOKEN_PRECISION;
    }

    /// A query answered `code`: the deal as the market has it no longer (or never did).
    function gone(DealState memory s, int256 code) private pure returns (DealState memory) {
        DealState memory out;
        out.dealId = s.dealId;
        out.exitCode = code;
        out.activated = -1;
        out.terminated = -1;
        if (code == MarketActor.USR_NOT_FOUND) out.status = Status.NotFound;
        else if (code == MarketActor.EX_DEAL_EXPIRED) out.status = Status.Expired;
        else out.status = Status.Unknown;
        return out;
    }
}
