// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {Cbor} from "../lib/Cbor.sol";
import {DataCapActor} from "../lib/DataCapActor.sol";
import {FvmActor} from "../lib/FvmActor.sol";
import {ISimActor, SimActors} from "./SimActors.sol";

/// @notice The simulated market's DataCap ledger, as the DataCap simulator reads it.
interface IDataCapLedger {
    /// @notice The DataCap, in bytes, of the actor a binary address resolves to (0 if none).
    function dataCapOf(bytes calldata addr) external view returns (uint256);
}

/// @title DataCapSimulator
/// @notice A stand-in for Filecoin's DataCap token actor (f07) on a local chain, answering the
///         one method Estuary's contracts and oracle use: `Balance` (FRC-0042 number
///         3261979605), read-only, from any caller. Installed at f07's masked ID address.
/// @dev The ledger stays with `MarketSimulator` (`dataCap`, in bytes), which spends it when it
///      publishes a verified deal (the real market does so with TransferFrom to the verified
///      registry); this actor answers from that ledger, so both always agree. Behaviour followed
///      (builtin-actors v18 `actors/datacap/src/lib.rs` `balance`, `types.rs`
///      `BalanceParams`/`BalanceReturn`; frc46_token `Token::balance_of`):
///      - the parameter is one CBOR byte string, the owner's binary address; the answer is its
///        balance in atto-tokens (bytes * 10^18) as a CBOR big integer;
///      - an address that resolves to no actor has a zero balance, not an error;
///      - any other method is not handled (exit 22, USR_UNHANDLED_MESSAGE).
///      Deviations: parameters that are not a CBOR byte string make the simulator revert, which
///      the precompile stand-in reports as exit 22 (the real actor answers a serialization
///      error); a message with value reverts too (on Filecoin a method-0 send to f07 is
///      accepted; nothing in Estuary sends it value).
// `handle` is payable by `ISimActor`; a message with value is refused (reverted: the forwarder
// answers 22), so nothing is ever held.
// slither-disable-next-line locked-ether
contract DataCapSimulator is ISimActor {
    int256 internal constant USR_UNHANDLED_MESSAGE = 22;

    /// @notice A message with value: nothing of the DataCap actor is payable.
    error DataCapSimulatorNotPayable();

    /// @inheritdoc ISimActor
    function handle(uint64 method, uint64, bytes calldata params)
        external
        payable
        returns (int256 exitCode, uint64 retCodec, bytes memory ret)
    {
        if (msg.value != 0) revert DataCapSimulatorNotPayable();
        if (method != DataCapActor.BALANCE) return (USR_UNHANDLED_MESSAGE, 0, "");
        (bytes memory owner, uint256 next) = Cbor.readBytes(params, 0);
        if (next != params.length) return (USR_UNHANDLED_MESSAGE, 0, "");
        uint256 capBytes = IDataCapLedger(SimActors.MARKET).dataCapOf(owner);
        // A ledger entry past what atto-tokens can count (the simulator's admin set it) saturates.
        uint256 atto = capBytes > type(uint256).max / DataCapActor.TOKEN_PRECISION
            ? type(uint256).max
            : capBytes * DataCapActor.TOKEN_PRECISION;
        return (0, FvmActor.CODEC_CBOR, Cbor.encodeBigUint(atto));
    }
}
