// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @title FvmActor
/// @notice Calls any Filecoin actor by ID through the FEVM `call_actor_id` precompile
///         (builtin-actors `actors/evm/src/interpreter/precompiles/fvm.rs`, `call_actor_shared`):
///         the precompile must be DELEGATECALLed with `abi.encode(method, value, flags, codec,
///         params, actorId)` and answers `abi.encode(int256 exitCode, uint64 codec, bytes ret)`.
///         A negative exit code is a syscall error (`-6`: no such actor, `-13`: value sent
///         read-only, `-5`: insufficient funds), a positive one the actor's own exit code.
/// @dev Method numbers from 1 to 1023 are refused by the precompile itself (only method 0, a
///      plain send, and FRC-0042 numbers reach actors); so is a codec other than CBOR (0x51), or
///      0 with empty parameters. On a local chain `ActorCallForwarder` (src/sim) answers at the
///      precompile's address with the same rules.
library FvmActor {
    /// @notice The FEVM precompile that calls an actor by ID.
    address internal constant CALL_ACTOR_ID = address((uint160(0xfe) << 152) | 5);

    /// @notice Method 0: a plain value transfer; the receiving actor runs no code.
    uint64 internal constant METHOD_SEND = 0;
    /// @notice Codecs of parameters and results: none, and CBOR.
    uint64 internal constant CODEC_NONE = 0;
    uint64 internal constant CODEC_CBOR = 0x51;
    /// @notice `SendFlags::READ_ONLY`: the callee may not change state, emit events or move value.
    uint64 internal constant FLAG_READ_ONLY = 1;

    /// @notice Calls `method` of actor `actorId`.
    /// @param readOnly Send with `SendFlags::READ_ONLY`.
    /// @return ok False when the precompile itself failed (bad input or a missing precompile);
    ///         then the other values are zero.
    /// @return exitCode The exit code: 0 on success, negative for a syscall error.
    /// @return codec The codec of `ret` (0 when empty).
    /// @return ret The actor's return value.
    function call(uint64 actorId, uint64 method, bytes memory params, uint256 value, bool readOnly)
        internal
        returns (bool ok, int256 exitCode, uint64 codec, bytes memory ret)
    {
        bytes memory data;
        (ok, data) = CALL_ACTOR_ID.delegatecall(input(actorId, method, params, value, readOnly));
        // An address without code "succeeds" with no data: that is a missing precompile too.
        if (!ok || data.length < 96) return (false, 0, 0, "");
        (exitCode, codec, ret) = abi.decode(data, (int256, uint64, bytes));
    }

    /// @notice The precompile's input: `abi.encode(method, value, flags, codec, params, actorId)`.
    function input(uint64 actorId, uint64 method, bytes memory params, uint256 value, bool readOnly)
        internal
        pure
        returns (bytes memory)
    {
        uint64 flags = readOnly ? FLAG_READ_ONLY : 0;
        uint64 codec = params.length == 0 ? CODEC_NONE : CODEC_CBOR;
        return abi.encode(method, value, flags, codec, params, actorId);
    }

    /// @notice Sends `value` to actor `actorId` with method 0: the FVM credits the actor's
    ///         balance and runs none of its code, whatever kind of actor it is.
    /// @return exitCode 0 when paid; negative (a syscall error) or -1 (no precompile) otherwise.
    function send(uint64 actorId, uint256 value) internal returns (int256 exitCode) {
        (bool ok, int256 code,,) = call(actorId, METHOD_SEND, "", value, false);
        return ok ? code : -1;
    }
}
