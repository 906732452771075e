// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {Cbor} from "./Cbor.sol";
import {FilAddress} from "./FilAddress.sol";
import {FvmActor} from "./FvmActor.sol";

/// @title DataCapActor
/// @notice Reads the DataCap token actor (f07) through the FEVM `call_actor_id` precompile.
///         DataCap is the FRC-0046 token a verified (Fil+) client spends on verified deals:
///         the market takes `piece size` whole tokens (`piece size * 10^18` atto-tokens) from
///         the client's balance when it publishes a verified deal.
/// @dev Sources (builtin-actors v18): `actors/datacap/src/lib.rs` (`Method::BalanceExported =
///      method_hash!("Balance")`, `balance`: any caller, the owner's balance, zero for an
///      address that resolves to no actor, as frc46_token's `Token::balance_of` answers),
///      `actors/datacap/src/types.rs` (`BalanceParams`: the address, CBOR-transparent, so a
///      byte string; `BalanceReturn`: the `TokenAmount`, a big integer), and
///      `actors/market/src/lib.rs` (`publish_storage_deals`: a verified deal needs
///      `TokenAmount::from_whole(piece_size)` of the client's balance, read with `Balance`).
library DataCapActor {
    /// @notice The DataCap actor's ID.
    uint64 internal constant ACTOR_ID = 7;
    /// @notice Its masked ID address (`0xff…07`).
    address internal constant ETH_ADDRESS = address((uint160(0xff) << 152) | 7);
    /// @notice FRC-0042 number of `Balance`.
    uint64 internal constant BALANCE = 3261979605;
    /// @notice Atto-tokens per token: DataCap counts one whole token per byte.
    uint256 internal constant TOKEN_PRECISION = 1e18;

    /// @notice The DataCap balance of the actor at EVM address `account` (its `f410` address, or
    ///         its ID address when `account` is a masked ID address), in atto-tokens.
    /// @return ok False when the precompile itself failed (then the rest is zero).
    /// @return exitCode The actor's exit code (0 on success).
    /// @return balance The balance in atto-tokens (`balance / TOKEN_PRECISION` bytes).
    function balanceOf(address account) internal returns (bool ok, int256 exitCode, uint256 balance) {
        bytes memory params = Cbor.encodeBytes(FilAddress.fromEvm(account));
        uint64 codec;
        bytes memory ret;
        (ok, exitCode, codec, ret) = FvmActor.call(ACTOR_ID, BALANCE, params, 0, true);
        if (!ok || exitCode != 0) return (ok, exitCode, 0);
        (balance,) = Cbor.readBigUint(ret, 0);
    }
}
