// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {Cbor} from "../lib/Cbor.sol";
import {FilAddress} from "../lib/FilAddress.sol";

/// @notice What every simulated built-in actor (market, miners) answers for FVM messages.
interface ISimActor {
    /// @notice A message to the actor: `(exit code, codec, CBOR result)`.
    function handle(uint64 method, uint64 codec, bytes calldata params)
        external
        payable
        returns (int256 exitCode, uint64 retCodec, bytes memory ret);
}

/// @notice The FEVM entry point of an EVM actor for any method other than InvokeEVM.
interface IFilecoinMethodHandler {
    /// @notice FRC-0042 method dispatch for an actor's calls into a contract.
    function handle_filecoin_method(uint64 method, uint64 codec, bytes calldata params)
        external
        returns (uint32 exitCode, uint64 retCodec, bytes memory ret);
}

/// @notice How the simulated market's actor registry classifies an ID.
enum ActorKind {
    /// No actor has this ID.
    None,
    /// An EVM actor (a contract, or an Ethereum account) with an `f410` address.
    Evm,
    /// A storage miner actor, simulated by `MinerActorSimulator` at its masked ID address.
    Miner,
    /// Another built-in actor simulated at its masked ID address (the market, f05).
    Builtin
}

/// @notice The actor registry the call forwarder consults: the simulated market's.
interface ISimRegistry {
    /// @notice The kind of actor `id`.
    function actorKind(uint64 id) external view returns (ActorKind);
    /// @notice The EVM address of actor `id`: its masked ID address for a built-in actor.
    function actorAddress(uint64 id) external view returns (address);
}

/// @notice Created with value and destroyed in its constructor: the value reaches `to` without
///         running any of `to`'s code, as a Filecoin method-0 send to an EVM actor does.
contract SimPayment {
    /// @param to Receives the value.
    // A simulated FVM value transfer (method 0) must not run the receiver's code; a
    // SELFDESTRUCT in the creating transaction (EIP-6780) is the EVM's only such transfer.
    // slither-disable-next-line suicidal
    constructor(address payable to) payable {
        selfdestruct(to);
    }
}

/// @title SimActors
/// @notice How the FVM delivers a message to an actor, for the simulators: built-in actors get
///         `handle(method, codec, params)` at their masked ID address; an EVM actor gets
///         `handle_filecoin_method` (builtin-actors `actors/evm/src/lib.rs`,
///         `handle_filecoin_method` / `handle_filecoin_method_output`), in a STATICCALL when the
///         message is read-only; a method-0 send moves value and runs no code.
library SimActors {
    /// @notice The simulated market (and actor registry) at f05's masked address.
    address internal constant MARKET = address((uint160(0xff) << 152) | 5);
    /// @notice Where the installer puts `DealCodec`'s runtime code for the simulators: an
    ///         address no key or CREATE can reach (`0xfe…ec0dec`, next to the precompiles).
    address internal constant CODEC = address((uint160(0xfe) << 152) | 0xec0dec);

    int256 internal constant SYS_INSUFFICIENT_FUNDS = -5;
    int256 internal constant SYS_NOT_FOUND = -6;
    int256 internal constant SYS_READ_ONLY = -13;
    int256 internal constant USR_SERIALIZATION = 21;
    int256 internal constant USR_UNHANDLED_MESSAGE = 22;
    int256 internal constant EVM_CONTRACT_REVERTED = 33;

    /// @notice A nested call ran out of gas: the whole message fails, as on Filecoin.
    error SimActorsOutOfGas();

    /// @notice Sends a message to actor `id` (a syscall error is a negative exit code).
    function send(uint64 id, uint64 method, bytes memory params, uint256 value, bool readOnly)
        internal
        returns (int256 exitCode, uint64 codec, bytes memory ret)
    {
        if (readOnly && value != 0) return (SYS_READ_ONLY, 0, "");
        if (address(this).balance < value) return (SYS_INSUFFICIENT_FUNDS, 0, "");
        ISimRegistry registry = ISimRegistry(MARKET);
        ActorKind kind = registry.actorKind(id);
        if (kind == ActorKind.None) return (SYS_NOT_FOUND, 0, "");
        address target = registry.actorAddress(id);
        if (kind == ActorKind.Evm) return invokeEvm(target, method, params, value, readOnly);
        return invokeBuiltin(target, method, params, value, readOnly);
    }

    /// @notice A message to a simulated built-in actor.
    function invokeBuiltin(address target, uint64 method, bytes memory params, uint256 value, bool readOnly)
        internal
        returns (int256 exitCode, uint64 codec, bytes memory ret)
    {
        bytes memory data = abi.encodeCall(ISimActor.handle, (method, params.length == 0 ? 0 : 0x51, params));
        bool ok;
        bytes memory out;
        uint256 gasBefore = gasleft();
        // slither-disable-next-line arbitrary-send-eth (a simulated FVM send: the caller chose it)
        if (readOnly) (ok, out) = target.staticcall(data);
        else (ok, out) = target.call{value: value}(data);
        if (!ok) abortIfOutOfGas(gasBefore);
        if (!ok || out.length < 96) return (USR_UNHANDLED_MESSAGE, 0, "");
        return abi.decode(out, (int256, uint64, bytes));
    }

    /// @notice A message to an EVM actor: method 0 moves value without running code; any other
    ///         method runs `handle_filecoin_method`. A revert is exit code 33
    ///         (EVM_CONTRACT_REVERTED); a non-zero exit code returned is the actor's.
    function invokeEvm(address target, uint64 method, bytes memory params, uint256 value, bool readOnly)
        internal
        returns (int256 exitCode, uint64 codec, bytes memory ret)
    {
        if (method == 0) {
            pay(target, value);
            return (0, 0, "");
        }
        // An Ethereum account (EthAccount actor) accepts every FRC-0042 method and returns nothing.
        if (target.code.length == 0) {
            if (value != 0) pay(target, value);
            if (method >= 1 << 24) return (0, 0, "");
            return (USR_UNHANDLED_MESSAGE, 0, "");
        }
        bytes memory data = abi.encodeCall(
            IFilecoinMethodHandler.handle_filecoin_method, (method, params.length == 0 ? 0 : 0x51, params)
        );
        bool ok;
        bytes memory out;
        if (readOnly) {
            (ok, out) = staticCallCapped(target, data);
        } else {
            uint256 gasBefore = gasleft();
            // slither-disable-next-line arbitrary-send-eth (a simulated FVM send: the caller chose it)
            (ok, out) = target.call{value: value}(data);
            if (!ok) abortIfOutOfGas(gasBefore);
        }
        if (!ok) return (EVM_CONTRACT_REVERTED, 0x51, Cbor.encodeBytes(out));
        if (out.length == 0) return (0, 0, "");
        if (out.length < 96) return (USR_SERIALIZATION, 0, "");
        uint32 code;
        (code, codec, ret) = abi.decode(out, (uint32, uint64, bytes));
        if (codec == 0 && ret.length != 0) return (USR_SERIALIZATION, 0, "");
        if (codec != 0 && codec != 0x51) return (USR_SERIALIZATION, 0, "");
        return (int256(uint256(code)), codec, ret);
    }

    /// @notice Gas is the whole message's on Filecoin: running out of it in a nested call aborts
    ///         the message, it is not a callee's exit code. A failed EVM call that left less than
    ///         1/64 of the gas it had was starved (EIP-150): revert the whole transaction, so
    ///         that gas estimation never settles on a limit at which actors silently fail.
    function abortIfOutOfGas(uint256 gasBefore) internal view {
        if (gasleft() <= gasBefore / 63) revert SimActorsOutOfGas();
    }

    /// @notice Gas a read-only call to an EVM actor may use (a STATICCALL that writes or logs
    ///         also ends having used all it was given, so it is told from running out of gas by
    ///         this cap: a call given the cap had enough).
    uint256 internal constant READ_ONLY_GAS = 10_000_000;

    /// @dev A STATICCALL given at most `READ_ONLY_GAS`; if it fails having used all it was given
    ///      and that was less than the cap, the transaction was short of gas: abort it.
    function staticCallCapped(address target, bytes memory data)
        internal
        view
        returns (bool ok, bytes memory out)
    {
        uint256 available = gasleft() - gasleft() / 64 - 20_000;
        uint256 given = available < READ_ONLY_GAS ? available : READ_ONLY_GAS;
        uint256 before = gasleft();
        (ok, out) = target.staticcall{gas: given}(data);
        if (!ok && given < READ_ONLY_GAS && before - gasleft() >= given) revert SimActorsOutOfGas();
    }

    /// @notice Moves value to `to` the way a Filecoin method-0 send does: no code of `to` runs.
    function pay(address to, uint256 value) internal {
        if (value == 0) return;
        if (to.code.length == 0) {
            // slither-disable-next-line arbitrary-send-eth,low-level-calls (an account: no code runs)
            (bool ok,) = to.call{value: value}("");
            ok;
            return;
        }
        new SimPayment{value: value}(payable(to));
    }

    /// @notice The binary Filecoin address of an actor known by EVM address `a`, as the
    ///         simulated registry sees it (`FilAddress.fromEvm`).
    function filAddress(address a) internal pure returns (bytes memory) {
        return FilAddress.fromEvm(a);
    }
}
