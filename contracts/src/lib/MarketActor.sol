// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {Cbor} from "./Cbor.sol";
import {FvmActor} from "./FvmActor.sol";

/// @title MarketActor
/// @notice Reads deals from Filecoin's built-in storage market actor (f05) through the FEVM
///         `call_actor_id` precompile, with the actor's real method numbers (FRC-0042) and CBOR
///         (builtin-actors `actors/market/src/lib.rs` and `types.rs`). Exit codes become typed
///         results: a deal never published is `NotFound` (USR_NOT_FOUND, 17); one that expired,
///         was terminated (removed at once since builtin-actors v13) or cleaned up is `Expired`
///         (EX_DEAL_EXPIRED, 32); `GetDealSector` before activation is `NotActivated`
///         (EX_DEAL_NOT_ACTIVATED, 33). Anything else that fails reverts with `MarketCallFailed`.
/// @dev On a local chain the same precompile address is served by `ActorCallForwarder` and the
///      market by `MarketSimulator` (see `src/sim/`), so tests run this exact code path.
library MarketActor {
    /// @notice The FEVM precompile that calls an actor by ID.
    address internal constant CALL_ACTOR_ID = FvmActor.CALL_ACTOR_ID;
    /// @notice The market actor's ID.
    uint64 internal constant ACTOR_ID = 5;
    /// @notice The market actor's masked ID address: the `msg.sender` of its callbacks.
    address internal constant ETH_ADDRESS = address((uint160(0xff) << 152) | 5);

    uint64 internal constant ADD_BALANCE = 822473126;
    uint64 internal constant WITHDRAW_BALANCE = 2280458852;
    uint64 internal constant GET_BALANCE = 726108461;
    uint64 internal constant GET_DEAL_DATA_COMMITMENT = 1157985802;
    uint64 internal constant GET_DEAL_CLIENT = 128053329;
    uint64 internal constant GET_DEAL_PROVIDER = 935081690;
    uint64 internal constant GET_DEAL_LABEL = 46363526;
    uint64 internal constant GET_DEAL_TERM = 163777312;
    uint64 internal constant GET_DEAL_TOTAL_PRICE = 4287162428;
    uint64 internal constant GET_DEAL_CLIENT_COLLATERAL = 200567895;
    uint64 internal constant GET_DEAL_PROVIDER_COLLATERAL = 2986712137;
    uint64 internal constant GET_DEAL_VERIFIED = 2627389465;
    uint64 internal constant GET_DEAL_ACTIVATION = 2567238399;
    uint64 internal constant GET_DEAL_SECTOR = 2611213344;
    uint64 internal constant PUBLISH_STORAGE_DEALS = 2236929350;
    uint64 internal constant SETTLE_DEAL_PAYMENTS = 1900091594;

    /// @notice Methods the market actor calls on a deal's client.
    uint64 internal constant AUTHENTICATE_MESSAGE = 2643134072;
    uint64 internal constant MARKET_NOTIFY_DEAL = 4186741094;
    /// @notice The DataCap actor's receiver hook (FRC-0046), called on a token transfer.
    uint64 internal constant DATACAP_RECEIVER_HOOK = 3726118371;
    /// @notice What a miner actor sends to the actors a piece names when its sector is proven
    ///         (builtin-actors `actors/miner/src/notifications.rs`), the market included.
    uint64 internal constant SECTOR_CONTENT_CHANGED = 2034386435;

    /// @notice Codecs of the precompile's parameters and results.
    uint64 internal constant CODEC_NONE = 0;
    uint64 internal constant CODEC_CBOR = 0x51;
    uint64 internal constant CODEC_DAG_CBOR = 0x71;

    /// @notice FVM exit codes with a meaning for deal queries.
    int256 internal constant USR_NOT_FOUND = 17;
    int256 internal constant EX_DEAL_EXPIRED = 32;
    int256 internal constant EX_DEAL_NOT_ACTIVATED = 33;

    /// @notice The outcome of a deal query.
    enum Status {
        /// The deal is in the market's state; the values returned are its own.
        Ok,
        /// No deal with this ID was ever published.
        NotFound,
        /// The deal existed and has left the market's state (expired, terminated, cleaned up).
        Expired,
        /// The deal is published and not yet activated (only `GetDealSector` says so).
        NotActivated
    }

    /// @notice What a deal query returns when `Status.Ok`.
    struct Deal {
        bytes pieceCid;
        uint64 pieceSize;
        uint64 provider;
        int64 start;
        int64 duration;
        int64 activated;
        int64 terminated;
        bool verified;
    }

    /// @notice The precompile is missing or failed, or the actor exited with an unexpected code.
    /// @param method The method number called.
    /// @param exitCode The exit code (-1 when the precompile itself failed).
    error MarketCallFailed(uint64 method, int256 exitCode);
    /// @notice The precompile's answer is not `(int256, uint64, bytes)` with a CBOR codec.
    /// @param method The method number called.
    error MarketBadResponse(uint64 method);

    /// @notice Calls a market method.
    /// @return exitCode The actor's exit code (0 on success).
    /// @return ret The CBOR result (empty unless `exitCode` is 0).
    function call(uint64 method, bytes memory params, uint256 value, bool readOnly)
        internal
        returns (int256 exitCode, bytes memory ret)
    {
        bool ok;
        uint64 retCodec;
        (ok, exitCode, retCodec, ret) = FvmActor.call(ACTOR_ID, method, params, value, readOnly);
        if (!ok) revert MarketCallFailed(method, -1);
        if (exitCode == 0 && retCodec != CODEC_CBOR && retCodec != CODEC_DAG_CBOR && ret.length != 0) {
            revert MarketBadResponse(method);
        }
    }

    /// @notice Asks a read-only deal query (`method` with the deal ID as parameter) and returns
    ///         the market's exit code as it is, whatever it is; reverts only when the precompile
    ///         fails or the answer is malformed.
    /// @return exitCode 0, or the actor's exit code (e.g. 17, 32, 33).
    /// @return ret The CBOR answer (non-empty when `exitCode` is 0).
    function ask(uint64 method, uint64 dealId) internal returns (int256 exitCode, bytes memory ret) {
        (exitCode, ret) = call(method, Cbor.encodeUint(dealId), 0, true);
        if (exitCode == 0 && ret.length == 0) revert MarketBadResponse(method);
    }

    function query(uint64 method, uint64 dealId) private returns (Status status, bytes memory ret) {
        int256 exitCode;
        (exitCode, ret) = ask(method, dealId);
        if (exitCode == 0) return (Status.Ok, ret);
        if (exitCode == USR_NOT_FOUND) return (Status.NotFound, ret);
        if (exitCode == EX_DEAL_EXPIRED) return (Status.Expired, ret);
        if (exitCode == EX_DEAL_NOT_ACTIVATED) return (Status.NotActivated, ret);
        revert MarketCallFailed(method, exitCode);
    }

    /// @notice GetDealDataCommitment's answer `[piece CID, padded size]`.
    function decodeDataCommitment(bytes memory ret)
        internal
        pure
        returns (bytes memory pieceCid, uint64 size)
    {
        (uint64 n, uint256 i) = Cbor.readArray(ret, 0);
        if (n != 2) revert MarketBadResponse(GET_DEAL_DATA_COMMITMENT);
        (pieceCid, i) = Cbor.readCid(ret, i);
        (size,) = Cbor.readUint(ret, i);
    }

    /// @notice GetDealTerm's answer `[start, duration]`.
    function decodeTerm(bytes memory ret) internal pure returns (int64 start, int64 duration) {
        (uint64 n, uint256 i) = Cbor.readArray(ret, 0);
        if (n != 2) revert MarketBadResponse(GET_DEAL_TERM);
        (start, i) = Cbor.readInt(ret, i);
        (duration,) = Cbor.readInt(ret, i);
    }

    /// @notice GetDealActivation's answer `[activated, terminated]`.
    function decodeActivation(bytes memory ret) internal pure returns (int64 activated, int64 terminated) {
        (uint64 n, uint256 i) = Cbor.readArray(ret, 0);
        if (n != 2) revert MarketBadResponse(GET_DEAL_ACTIVATION);
        (activated, i) = Cbor.readInt(ret, i);
        (terminated,) = Cbor.readInt(ret, i);
    }

    /// @notice GetDealDataCommitment: the deal's piece CID and padded size.
    function getDealDataCommitment(uint64 dealId)
        internal
        returns (Status status, bytes memory pieceCid, uint64 size)
    {
        bytes memory ret;
        (status, ret) = query(GET_DEAL_DATA_COMMITMENT, dealId);
        if (status != Status.Ok) return (status, "", 0);
        (pieceCid, size) = decodeDataCommitment(ret);
    }

    /// @notice GetDealProvider: the provider's actor ID.
    function getDealProvider(uint64 dealId) internal returns (Status status, uint64 provider) {
        bytes memory ret;
        (status, ret) = query(GET_DEAL_PROVIDER, dealId);
        if (status == Status.Ok) (provider,) = Cbor.readUint(ret, 0);
    }

    /// @notice GetDealClient: the client's actor ID.
    function getDealClient(uint64 dealId) internal returns (Status status, uint64 client) {
        bytes memory ret;
        (status, ret) = query(GET_DEAL_CLIENT, dealId);
        if (status == Status.Ok) (client,) = Cbor.readUint(ret, 0);
    }

    /// @notice GetDealLabel: the label, and whether it is a text string (else bytes).
    function getDealLabel(uint64 dealId) internal returns (Status status, bytes memory label, bool isText) {
        bytes memory ret;
        (status, ret) = query(GET_DEAL_LABEL, dealId);
        if (status == Status.Ok) (label, isText,) = Cbor.readTextOrBytes(ret, 0);
    }

    /// @notice GetDealTerm: the start epoch and the duration in epochs.
    function getDealTerm(uint64 dealId) internal returns (Status status, int64 start, int64 duration) {
        bytes memory ret;
        (status, ret) = query(GET_DEAL_TERM, dealId);
        if (status != Status.Ok) return (status, 0, 0);
        (start, duration) = decodeTerm(ret);
    }

    /// @notice GetDealTotalPrice: price per epoch times duration.
    function getDealTotalPrice(uint64 dealId) internal returns (Status status, uint256 price) {
        bytes memory ret;
        (status, ret) = query(GET_DEAL_TOTAL_PRICE, dealId);
        if (status == Status.Ok) (price,) = Cbor.readBigUint(ret, 0);
    }

    /// @notice GetDealProviderCollateral.
    function getDealProviderCollateral(uint64 dealId) internal returns (Status status, uint256 collateral) {
        bytes memory ret;
        (status, ret) = query(GET_DEAL_PROVIDER_COLLATERAL, dealId);
        if (status == Status.Ok) (collateral,) = Cbor.readBigUint(ret, 0);
    }

    /// @notice GetDealClientCollateral.
    function getDealClientCollateral(uint64 dealId) internal returns (Status status, uint256 collateral) {
        bytes memory ret;
        (status, ret) = query(GET_DEAL_CLIENT_COLLATERAL, dealId);
        if (status == Status.Ok) (collateral,) = Cbor.readBigUint(ret, 0);
    }

    /// @notice GetDealActivation: the epoch of activation and of termination, each -1 when it
    ///         has not happened. A terminated deal is removed from state at once (v13+), so a
    ///         live answer has `terminated == -1`; the termination shows as `Status.Expired`.
    function getDealActivation(uint64 dealId)
        internal
        returns (Status status, int64 activated, int64 terminated)
    {
        bytes memory ret;
        (status, ret) = query(GET_DEAL_ACTIVATION, dealId);
        if (status != Status.Ok) return (status, -1, -1);
        (activated, terminated) = decodeActivation(ret);
    }

    /// @notice GetDealSector: the sector holding an activated deal (`NotActivated` before).
    function getDealSector(uint64 dealId) internal returns (Status status, uint64 sector) {
        bytes memory ret;
        (status, ret) = query(GET_DEAL_SECTOR, dealId);
        if (status == Status.Ok) (sector,) = Cbor.readUint(ret, 0);
    }

    /// @notice GetDealVerified: whether the deal uses DataCap (Fil+).
    function getDealVerified(uint64 dealId) internal returns (Status status, bool verified) {
        bytes memory ret;
        (status, ret) = query(GET_DEAL_VERIFIED, dealId);
        if (status == Status.Ok) (verified,) = Cbor.readBool(ret, 0);
    }

    /// @notice Everything about a deal that its piece, provider, term and activation say, in
    ///         five queries. Stops at the first query that is not `Ok` and returns its status.
    function getDeal(uint64 dealId) internal returns (Status status, Deal memory deal) {
        (status, deal.pieceCid, deal.pieceSize) = getDealDataCommitment(dealId);
        if (status != Status.Ok) return (status, deal);
        (status, deal.provider) = getDealProvider(dealId);
        if (status != Status.Ok) return (status, deal);
        (status, deal.start, deal.duration) = getDealTerm(dealId);
        if (status != Status.Ok) return (status, deal);
        (status, deal.activated, deal.terminated) = getDealActivation(dealId);
        if (status != Status.Ok) return (status, deal);
        (status, deal.verified) = getDealVerified(dealId);
    }

    /// @notice AddBalance: escrows `value` in the market for `account` (a binary Filecoin address).
    function addBalance(bytes memory account, uint256 value) internal {
        (int256 exitCode,) = call(ADD_BALANCE, Cbor.encodeBytes(account), value, false);
        if (exitCode != 0) revert MarketCallFailed(ADD_BALANCE, exitCode);
    }

    /// @notice WithdrawBalance: takes up to `amount` of `account`'s unlocked escrow out of the
    ///         market; the market sends it (method 0) to the account itself (for a client) and
    ///         only the account itself may ask.
    /// @return withdrawn What the market sent (less than `amount` if less was available).
    function withdrawBalance(bytes memory account, uint256 amount) internal returns (uint256 withdrawn) {
        bytes memory params =
            bytes.concat(Cbor.encodeArray(2), Cbor.encodeBytes(account), Cbor.encodeBigUint(amount));
        (int256 exitCode, bytes memory ret) = call(WITHDRAW_BALANCE, params, 0, false);
        if (exitCode != 0) revert MarketCallFailed(WITHDRAW_BALANCE, exitCode);
        (withdrawn,) = Cbor.readBigUint(ret, 0);
    }

    /// @notice GetBalance: `account`'s escrow and the part of it locked in deals.
    function getBalance(bytes memory account) internal returns (uint256 balance, uint256 locked) {
        (int256 exitCode, bytes memory ret) = call(GET_BALANCE, Cbor.encodeBytes(account), 0, true);
        if (exitCode != 0) revert MarketCallFailed(GET_BALANCE, exitCode);
        (uint64 n, uint256 i) = Cbor.readArray(ret, 0);
        if (n != 2) revert MarketBadResponse(GET_BALANCE);
        (balance, i) = Cbor.readBigUint(ret, i);
        (locked,) = Cbor.readBigUint(ret, i);
    }
}
