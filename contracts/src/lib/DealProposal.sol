// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {Cbor} from "./Cbor.sol";

/// @title DealProposal
/// @notice The CBOR of a storage market `DealProposal` (builtin-actors
///         `actors/market/src/deal.rs`: a tuple of piece CID, padded size, verified flag,
///         client, provider, label, start and end epochs, price per epoch, provider and client
///         collateral), and of the parameters the market sends a client: AuthenticateMessage
///         `[signature, message]` and MarketNotifyDeal `[proposal, deal_id]`.
/// @dev Writing is canonical (the market serializes proposals with serde_cbor, Boost with
///      cbor-gen: both shortest form); reading is strict about shapes and refuses trailing bytes.
library DealProposal {
    /// @notice A decoded proposal.
    struct Fields {
        /// Binary piece CID (v1).
        bytes pieceCid;
        uint64 pieceSize;
        bool verified;
        /// Binary Filecoin addresses, as serialized.
        bytes client;
        bytes provider;
        bytes label;
        /// Whether the label is a CBOR text string (else a byte string).
        bool labelIsText;
        int64 start;
        int64 end;
        uint256 price;
        uint256 providerCollateral;
        uint256 clientCollateral;
    }

    /// @notice The parameters of a callback are not in the shape the market sends.
    error DealProposalBadParams();

    /// @notice A proposal's CBOR.
    function encode(Fields memory f) internal pure returns (bytes memory out) {
        out = bytes.concat(Cbor.encodeArray(11), Cbor.encodeCid(f.pieceCid), Cbor.encodeUint(f.pieceSize));
        out = bytes.concat(out, Cbor.encodeBool(f.verified), Cbor.encodeBytes(f.client));
        out = bytes.concat(out, Cbor.encodeBytes(f.provider));
        out = bytes.concat(out, f.labelIsText ? Cbor.encodeText(f.label) : Cbor.encodeBytes(f.label));
        out = bytes.concat(out, Cbor.encodeInt(f.start), Cbor.encodeInt(f.end));
        out = bytes.concat(out, Cbor.encodeBigUint(f.price), Cbor.encodeBigUint(f.providerCollateral));
        out = bytes.concat(out, Cbor.encodeBigUint(f.clientCollateral));
    }

    /// @notice A digest of every term but the client and the provider: piece, size, verified
    ///         flag, label and its CBOR type, epochs, price and both collaterals.
    function termsKey(Fields memory f) internal pure returns (bytes32) {
        bytes32 what = keccak256(abi.encode(f.pieceCid, f.pieceSize, f.verified, f.label, f.labelIsText));
        return keccak256(abi.encode(what, f.start, f.end, f.price, f.providerCollateral, f.clientCollateral));
    }

    /// @notice Reads a proposal's CBOR; reverts with a `Cbor` error on anything else.
    function decode(bytes memory m) internal pure returns (Fields memory f) {
        (uint64 n, uint256 i) = Cbor.readArray(m, 0);
        if (n != 11) revert Cbor.CborUnexpected(0);
        (f.pieceCid, i) = Cbor.readCid(m, i);
        (f.pieceSize, i) = Cbor.readUint(m, i);
        (f.verified, i) = Cbor.readBool(m, i);
        (f.client, i) = Cbor.readBytes(m, i);
        (f.provider, i) = Cbor.readBytes(m, i);
        (f.label, f.labelIsText, i) = Cbor.readTextOrBytes(m, i);
        (f.start, i) = Cbor.readInt(m, i);
        (f.end, i) = Cbor.readInt(m, i);
        (f.price, i) = Cbor.readBigUint(m, i);
        (f.providerCollateral, i) = Cbor.readBigUint(m, i);
        (f.clientCollateral, i) = Cbor.readBigUint(m, i);
        if (i != m.length) revert Cbor.CborUnexpected(i);
    }

    /// @notice AuthenticateMessage's parameters `[signature bytes, message bytes]`: the message.
    function authenticateMessage(bytes memory params) internal pure returns (bytes memory message) {
        (uint64 n, uint256 i) = Cbor.readArray(params, 0);
        if (n != 2) revert DealProposalBadParams();
        i = Cbor.skip(params, i); // the signature: the market vouches for who sent the proposal
        (message, i) = Cbor.readBytes(params, i);
        if (i != params.length) revert DealProposalBadParams();
    }

    /// @notice MarketNotifyDeal's parameters `[proposal bytes, deal_id]`.
    function notifyDeal(bytes memory params) internal pure returns (bytes memory proposal, uint64 dealId) {
        (uint64 n, uint256 i) = Cbor.readArray(params, 0);
        if (n != 2) revert DealProposalBadParams();
        (proposal, i) = Cbor.readBytes(params, i);
        (dealId, i) = Cbor.readUint(params, i);
        if (i != params.length) revert DealProposalBadParams();
    }

    /// @notice Boost's contract-deal extra parameters, version 1 (boost
    ///         `storagemarket/types/contract_deal_proposal_types.go`, `ContractParamsVersion1`):
    ///         `[location_ref text, car_size, skip_ipni_announce, remove_unsealed_copy]`.
    function extraParams(bytes memory locationRef, uint64 carSize, bool skipIpni, bool removeUnsealed)
        internal
        pure
        returns (bytes memory)
    {
        return bytes.concat(
            Cbor.encodeArray(4),
            Cbor.encodeText(locationRef),
            Cbor.encodeUint(carSize),
            Cbor.encodeBool(skipIpni),
            Cbor.encodeBool(removeUnsealed)
        );
    }
}
