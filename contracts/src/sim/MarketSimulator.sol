// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {Cbor} from "../lib/Cbor.sol";
import {FilAddress} from "../lib/FilAddress.sol";
import {MarketActor} from "../lib/MarketActor.sol";

/// @notice The FEVM entry point a market-actor client calls: `IFilecoinMethod`.
interface IFilecoinMethodHandler {
    /// @notice FRC-0042 method dispatch for an actor's calls into a contract.
    function handle_filecoin_method(uint64 method, uint64 codec, bytes calldata params)
        external
        returns (uint32 exitCode, uint64 retCodec, bytes memory ret);
}

/// @title MarketSimulator
/// @notice A stand-in for Filecoin's storage market actor on a local chain. Its runtime code is
///         installed at the market's masked ID address (`0xff…05`, so its callbacks come from
///         where the real market's do) and `ActorCallForwarder` at the `call_actor_id`
///         precompile, so contracts under test run their production code path: the same
///         precompile call, method numbers, CBOR and exit codes as on Filecoin.
/// @dev Never deployed on a real network. It has no constructor state: runtime code copied to
///      another address must work as is. The control functions (`publishDeal`, `activate`, ...)
///      let tests and the local stack play the storage providers' part. The FIL it receives is
///      the simulated market escrow, which a local chain never needs back.
// slither-disable-next-line locked-ether
contract MarketSimulator {
    struct SimDeal {
        bytes pieceCid;
        uint64 pieceSize;
        uint64 client;
        uint64 provider;
        int64 start;
        int64 end;
        int64 activated;
        int64 terminated;
        bool verified;
        bool removed;
        bytes label;
    }

    /// @notice Deals by ID; IDs start at 1.
    mapping(uint64 dealId => SimDeal) internal deals;
    /// @notice The last deal ID used.
    uint64 public lastDealId;
    /// @notice Market escrow per binary Filecoin address.
    mapping(bytes account => uint256) public escrow;

    /// @notice A deal was published.
    event SimDealPublished(uint64 indexed dealId, uint64 indexed provider, bytes pieceCid, uint64 pieceSize);
    /// @notice A deal's state changed: 1 activated, 2 terminated, 3 removed from state.
    event SimDealChanged(uint64 indexed dealId, uint8 change);

    /// @notice The deal does not exist or is not in the state the change needs.
    error SimBadDeal(uint64 dealId);
    /// @notice The client contract refused the deal.
    error SimClientRefused(uint64 method, uint32 exitCode);

    // ------------------------------------------------------------------ the precompile's view

    /// @notice Answers a market method as the actor would: `(exit code, codec, CBOR result)`.
    function handle(uint64 method, uint64, bytes calldata params)
        external
        payable
        returns (int256 exitCode, uint64 codec, bytes memory ret)
    {
        if (method == MarketActor.ADD_BALANCE) {
            (bytes memory account,) = Cbor.readBytes(params, 0);
            escrow[account] += msg.value;
            return (0, MarketActor.CODEC_NONE, "");
        }
        (uint64 id,) = Cbor.readUint(params, 0);
        if (id == 0 || id > lastDealId) return (MarketActor.USR_NOT_FOUND, 0, "");
        SimDeal storage d = deals[id];
        if (d.removed) return (MarketActor.EX_DEAL_EXPIRED, 0, "");
        codec = MarketActor.CODEC_CBOR;
        if (method == MarketActor.GET_DEAL_DATA_COMMITMENT) {
            ret = bytes.concat(Cbor.encodeArray(2), Cbor.encodeCid(d.pieceCid), Cbor.encodeUint(d.pieceSize));
        } else if (method == MarketActor.GET_DEAL_CLIENT) {
            ret = Cbor.encodeUint(d.client);
        } else if (method == MarketActor.GET_DEAL_PROVIDER) {
            ret = Cbor.encodeUint(d.provider);
        } else if (method == MarketActor.GET_DEAL_LABEL) {
            ret = Cbor.encodeText(d.label);
        } else if (method == MarketActor.GET_DEAL_TERM) {
            ret = bytes.concat(Cbor.encodeArray(2), Cbor.encodeInt(d.start), Cbor.encodeInt(d.end - d.start));
        } else if (method == MarketActor.GET_DEAL_VERIFIED) {
            ret = Cbor.encodeBool(d.verified);
        } else if (method == MarketActor.GET_DEAL_ACTIVATION) {
            ret = bytes.concat(Cbor.encodeArray(2), Cbor.encodeInt(d.activated), Cbor.encodeInt(d.terminated));
        } else {
            // USR_UNHANDLED_MESSAGE
            return (22, 0, "");
        }
    }

    // ------------------------------------------------------------------ playing the providers

    /// @notice Publishes a deal (not yet activated).
    function publishDeal(
        bytes calldata pieceCid,
        uint64 pieceSize,
        uint64 client,
        uint64 provider,
        int64 start,
        int64 end,
        bool verified,
        bytes calldata label
    ) public returns (uint64 dealId) {
        dealId = ++lastDealId;
        deals[dealId] =
            SimDeal(pieceCid, pieceSize, client, provider, start, end, -1, -1, verified, false, label);
        emit SimDealPublished(dealId, provider, pieceCid, pieceSize);
    }

    /// @notice Publishes a deal that a client contract proposed (FRC-0068): authenticates the
    ///         proposal with the client (`AuthenticateMessage`), records it and notifies the
    ///         client (`MarketNotifyDeal`), as the market does for a provider's PublishStorageDeals.
    function publishContractDeal(address client, bytes calldata proposal) external returns (uint64 dealId) {
        bytes memory params =
            bytes.concat(Cbor.encodeArray(2), Cbor.encodeBytes(""), Cbor.encodeBytes(proposal));
        callClient(client, MarketActor.AUTHENTICATE_MESSAGE, params);
        dealId = recordProposal(proposal);
        params = bytes.concat(Cbor.encodeArray(2), Cbor.encodeBytes(proposal), Cbor.encodeUint(dealId));
        callClient(client, MarketActor.MARKET_NOTIFY_DEAL, params);
    }

    function callClient(address client, uint64 method, bytes memory params) private {
        (uint32 exitCode,,) = IFilecoinMethodHandler(client).handle_filecoin_method(method, 0x51, params);
        if (exitCode != 0) revert SimClientRefused(method, exitCode);
    }

    function recordProposal(bytes calldata proposal) private returns (uint64 dealId) {
        bytes memory p = proposal;
        (, uint256 i) = Cbor.readArray(p, 0);
        SimDeal memory d;
        (d.pieceCid, i) = Cbor.readCid(p, i);
        (d.pieceSize, i) = Cbor.readUint(p, i);
        (d.verified, i) = Cbor.readBool(p, i);
        i = Cbor.skip(p, i); // client address (the contract)
        bytes memory providerAddr;
        (providerAddr, i) = Cbor.readBytes(p, i);
        (, d.provider) = FilAddress.parseIdAddress(providerAddr);
        (d.label, i) = Cbor.readText(p, i);
        (d.start, i) = Cbor.readInt(p, i);
        (d.end, i) = Cbor.readInt(p, i);
        dealId = ++lastDealId;
        d.activated = -1;
        d.terminated = -1;
        deals[dealId] = d;
        emit SimDealPublished(dealId, d.provider, d.pieceCid, d.pieceSize);
    }

    /// @notice The sector holding the deal was proven: the deal is active from this block.
    function activate(uint64 dealId) external {
        SimDeal storage d = live(dealId);
        if (d.activated >= 0) revert SimBadDeal(dealId);
        d.activated = int64(uint64(block.number));
        emit SimDealChanged(dealId, 1);
    }

    /// @notice The provider's sector was terminated: the deal ends early, from this block.
    function terminate(uint64 dealId) external {
        SimDeal storage d = live(dealId);
        if (d.terminated >= 0) revert SimBadDeal(dealId);
        d.terminated = int64(uint64(block.number));
        emit SimDealChanged(dealId, 2);
    }

    /// @notice The deal expired (or was terminated) and the market removed it from its state.
    function remove(uint64 dealId) external {
        live(dealId).removed = true;
        emit SimDealChanged(dealId, 3);
    }

    /// @notice A deal as stored.
    function deal(uint64 dealId) external view returns (SimDeal memory) {
        return deals[dealId];
    }

    function live(uint64 dealId) private view returns (SimDeal storage d) {
        d = deals[dealId];
        if (dealId == 0 || dealId > lastDealId || d.removed) revert SimBadDeal(dealId);
    }
}

/// @title ActorCallForwarder
/// @notice Runtime code for the `call_actor_id` precompile address on a local chain. Contracts
///         `delegatecall` the precompile with `abi.encode(method, value, flags, codec, params,
///         actorId)`; this forwards calls for the market actor (ID 5) to the `MarketSimulator`
///         at `0xff…05` and returns its `(exit code, codec, result)` as the precompile would.
contract ActorCallForwarder {
    fallback(bytes calldata input) external payable returns (bytes memory) {
        (uint64 method, uint256 value,, uint64 codec, bytes memory params, uint64 target) =
            abi.decode(input, (uint64, uint256, uint64, uint64, bytes, uint64));
        // Any other actor: SYS_INVALID_RECEIVER, as the FVM answers for a missing actor.
        if (target != MarketActor.ACTOR_ID) return abi.encode(int256(7), uint64(0), bytes(""));
        (bool ok, bytes memory ret) = MarketActor.ETH_ADDRESS.call{value: value}(
            abi.encodeCall(MarketSimulator.handle, (method, codec, params))
        );
        if (!ok) {
            assembly ("memory-safe") {
                revert(add(ret, 32), mload(ret))
            }
        }
        return ret;
    }
}
