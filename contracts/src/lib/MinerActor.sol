// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {Cbor} from "./Cbor.sol";
import {FilAddress} from "./FilAddress.sol";
import {FvmActor} from "./FvmActor.sol";

/// @title MinerActor
/// @notice The exported methods of Filecoin's built-in miner actor that Estuary's contracts use,
///         with their real FRC-0042 method numbers and CBOR (builtin-actors
///         `actors/miner/src/lib.rs`: `is_controlling_address`, `get_owner`, `withdraw_balance`;
///         types in `actors/miner/src/types.rs`), called through the `call_actor_id` precompile.
library MinerActor {
    /// @notice `IsControllingAddressExported`: `Address` in (CBOR transparent), `bool` out.
    uint64 internal constant IS_CONTROLLING_ADDRESS = 348244887;
    /// @notice `GetOwnerExported`: no params, `[owner Address, proposed Address|null]` out.
    uint64 internal constant GET_OWNER = 3275365574;
    /// @notice `WithdrawBalanceExported`: `[amount_requested BigInt]` in, `BigInt` out.
    uint64 internal constant WITHDRAW_BALANCE = 2280458852;
    /// @notice `GetAvailableBalanceExported`: no params, `BigInt` out.
    uint64 internal constant GET_AVAILABLE_BALANCE = 4026106874;

    /// @notice A miner actor call failed or answered in an unexpected shape.
    /// @param miner The miner's actor ID.
    /// @param method The method number called.
    /// @param exitCode The exit code (-1 when the precompile itself failed).
    error MinerCallFailed(uint64 miner, uint64 method, int256 exitCode);

    /// @notice Whether `account` (an EVM address calling our contract) is the owner, the worker
    ///         or a control address of miner `miner`. The miner resolves the address to an ID and
    ///         compares it with its own; an address it cannot resolve is not controlling.
    /// @return exists False when no actor answered (no such actor, or not a miner: exit code
    ///         other than 0); then `controlling` is false.
    /// @return controlling The miner's answer.
    function isControllingAddress(uint64 miner, address account)
        internal
        returns (bool exists, bool controlling)
    {
        (bool ok, int256 exitCode,, bytes memory ret) = FvmActor.call(
            miner, IS_CONTROLLING_ADDRESS, Cbor.encodeBytes(FilAddress.fromEvm(account)), 0, true
        );
        if (!ok) revert MinerCallFailed(miner, IS_CONTROLLING_ADDRESS, -1);
        if (exitCode != 0 || ret.length == 0) return (false, false);
        (controlling,) = Cbor.readBool(ret, 0);
        return (true, controlling);
    }

    /// @notice Whether actor `id` answers GetOwnerExported like a miner (`[owner, proposed]`):
    ///         accounts, multisigs and EVM actors do not.
    function isMiner(uint64 id) internal returns (bool) {
        (bool ok, int256 exitCode,, bytes memory ret) = FvmActor.call(id, GET_OWNER, "", 0, true);
        return ok && exitCode == 0 && ret.length > 1 && uint8(ret[0]) == 0x82;
    }

    /// @notice The miner's owner address (binary Filecoin address) and a proposed new owner
    ///         (empty when none).
    function getOwner(uint64 miner) internal returns (bytes memory owner, bytes memory proposed) {
        (bool ok, int256 exitCode,, bytes memory ret) = FvmActor.call(miner, GET_OWNER, "", 0, true);
        if (!ok || exitCode != 0) revert MinerCallFailed(miner, GET_OWNER, ok ? exitCode : -1);
        (uint64 n, uint256 i) = Cbor.readArray(ret, 0);
        if (n != 2) revert MinerCallFailed(miner, GET_OWNER, 0);
        (owner, i) = Cbor.readBytes(ret, i);
        if (!Cbor.isNull(ret, i)) (proposed,) = Cbor.readBytes(ret, i);
    }
}
