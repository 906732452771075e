// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {Cbor} from "./Cbor.sol";

/// @title MarketActor
/// @notice Reads deals from Filecoin's built-in storage market actor (f05) through the FEVM
///         `call_actor_id` precompile, with the actor's real method numbers (FRC-0042) and CBOR.
///         Exit codes become typed results: a deal that was never published is `NotFound`, one
///         that expired and was removed from state is `Expired`; anything else that fails reverts
///         with `MarketCallFailed`.
/// @dev On a local chain the same precompile address is served by `MarketSimulator`'s
///      forwarder (see `src/sim/`), so tests run this exact code path.
library MarketActor {
    /// @notice The FEVM precompile that calls an actor by ID.
    address internal constant CALL_ACTOR_ID = address((uint160(0xfe) << 152) | 5);
    /// @notice The market actor's ID.
    uint64 internal constant ACTOR_ID = 5;
    /// @notice The market actor's masked ID address: the `msg.sender` of its callbacks.
    address internal constant ETH_ADDRESS = address((uint160(0xff) << 152) | 5);

    uint64 internal constant ADD_BALANCE = 822473126;
    uint64 internal constant GET_DEAL_DATA_COMMITMENT = 1157985802;
    uint64 internal constant GET_DEAL_CLIENT = 128053329;
    uint64 internal constant GET_DEAL_PROVIDER = 935081690;
    uint64 internal constant GET_DEAL_LABEL = 46363526;
    uint64 internal constant GET_DEAL_TERM = 163777312;
    uint64 internal constant GET_DEAL_VERIFIED = 2627389465;
    uint64 internal constant GET_DEAL_ACTIVATION = 2567238399;

    /// @notice Methods the market actor calls on a deal's client.
    uint64 internal constant AUTHENTICATE_MESSAGE = 2643134072;
    uint64 internal constant MARKET_NOTIFY_DEAL = 4186741094;
    /// @notice The DataCap actor's receiver hook (FRC-0046), called on a token transfer.
    uint64 internal constant DATACAP_RECEIVER_HOOK = 3726118371;

    /// @notice Codecs of the precompile's parameters and results.
    uint64 internal constant CODEC_NONE = 0;
    uint64 internal constant CODEC_CBOR = 0x51;
    uint64 internal constant CODEC_DAG_CBOR = 0x71;

    /// @notice FVM exit codes with a meaning for deal queries.
    int256 internal constant USR_NOT_FOUND = 17;
    int256 internal constant EX_DEAL_EXPIRED = 32;

    uint64 private constant FLAG_READ_ONLY = 1;

    /// @notice The outcome of a deal query.
    enum Status {
        /// The deal is in the market's state; the values returned are its own.
        Ok,
        /// No deal with this ID was ever published.
        NotFound,
        /// The deal existed and has left the market's state (expired, or terminated and cleaned up).
        Expired
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
        uint64 codec = params.length == 0 ? CODEC_NONE : CODEC_CBOR;
        (bool ok, bytes memory data) = CALL_ACTOR_ID.delegatecall(
            abi.encode(method, value, readOnly ? FLAG_READ_ONLY : uint64(0), codec, params, ACTOR_ID)
        );
        if (!ok) revert MarketCallFailed(method, -1);
        if (data.length < 96) revert MarketBadResponse(method);
        uint64 retCodec;
        (exitCode, retCodec, ret) = abi.decode(data, (int256, uint64, bytes));
        if (exitCode == 0 && retCodec != CODEC_CBOR && retCodec != CODEC_DAG_CBOR && ret.length != 0) {
            revert MarketBadResponse(method);
        }
    }

    function query(uint64 method, uint64 dealId) private returns (Status status, bytes memory ret) {
        int256 exitCode;
        (exitCode, ret) = call(method, Cbor.encodeUint(dealId), 0, true);
        if (exitCode == 0) {
            if (ret.length == 0) revert MarketBadResponse(method);
            return (Status.Ok, ret);
        }
        if (exitCode == USR_NOT_FOUND) return (Status.NotFound, ret);
        if (exitCode == EX_DEAL_EXPIRED) return (Status.Expired, ret);
        revert MarketCallFailed(method, exitCode);
    }

    /// @notice GetDealDataCommitment: the deal's piece CID and padded size.
    function getDealDataCommitment(uint64 dealId)
        internal
        returns (Status status, bytes memory pieceCid, uint64 size)
    {
        bytes memory ret;
        (status, ret) = query(GET_DEAL_DATA_COMMITMENT, dealId);
        if (status != Status.Ok) return (status, "", 0);
        (uint64 n, uint256 i) = Cbor.readArray(ret, 0);
        if (n != 2) revert MarketBadResponse(GET_DEAL_DATA_COMMITMENT);
        (pieceCid, i) = Cbor.readCid(ret, i);
        (size,) = Cbor.readUint(ret, i);
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

    /// @notice GetDealTerm: the start epoch and the duration in epochs.
    function getDealTerm(uint64 dealId) internal returns (Status status, int64 start, int64 duration) {
        bytes memory ret;
        (status, ret) = query(GET_DEAL_TERM, dealId);
        if (status != Status.Ok) return (status, 0, 0);
        (uint64 n, uint256 i) = Cbor.readArray(ret, 0);
        if (n != 2) revert MarketBadResponse(GET_DEAL_TERM);
        (start, i) = Cbor.readInt(ret, i);
        (duration,) = Cbor.readInt(ret, i);
    }

    /// @notice GetDealActivation: the epoch of activation and of termination, each -1 when it
    ///         has not happened.
    function getDealActivation(uint64 dealId)
        internal
        returns (Status status, int64 activated, int64 terminated)
    {
        bytes memory ret;
        (status, ret) = query(GET_DEAL_ACTIVATION, dealId);
        if (status != Status.Ok) return (status, -1, -1);
        (uint64 n, uint256 i) = Cbor.readArray(ret, 0);
        if (n != 2) revert MarketBadResponse(GET_DEAL_ACTIVATION);
        (activated, i) = Cbor.readInt(ret, i);
        (terminated,) = Cbor.readInt(ret, i);
    }

    /// @notice GetDealVerified: whether the deal uses DataCap (Fil+).
    function getDealVerified(uint64 dealId) internal returns (Status status, bool verified) {
        bytes memory ret;
        (status, ret) = query(GET_DEAL_VERIFIED, dealId);
        if (status == Status.Ok) (verified,) = Cbor.readBool(ret, 0);
    }

    /// @notice Everything `PerpetualStorage` checks about a deal, in five queries. Stops at the
    ///         first query that is not `Ok` and returns its status.
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
}
