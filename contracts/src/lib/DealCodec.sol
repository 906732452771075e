// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {Cbor} from "./Cbor.sol";
import {CidString} from "./CidString.sol";
import {DealProposal} from "./DealProposal.sol";

/// @title DealCodec
/// @notice The CBOR and text codecs of Filecoin deals, as a stateless contract that
///         `DealClient`, `PerpetualStorage` and the simulators call (one deployment, shared): it
///         keeps their bytecode under the EIP-170 size limit. Every function is
///         pure; a malformed input reverts with a `Cbor` or `DealProposal` error.
contract DealCodec {
    /// @notice The pieces of a SectorContentChanged notification, flattened: piece `k` is in
    ///         sector `sector[k]` (committed until `commitment[k]`), with its data commitment,
    ///         padded size and payload.
    struct PieceChanges {
        uint64[] sector;
        int64[] commitment;
        bytes[] data;
        uint64[] size;
        bytes[] payload;
        /// Pieces per sector, in order.
        uint64[] perSector;
    }

    /// @notice The deal a contract offers when it is the client and pays nothing through the
    ///         market (price 0, client collateral 0) and the label is its payload CID's text.
    struct Offer {
        bytes pieceCid;
        uint64 pieceSize;
        bool verified;
        /// The client contract (its `f410` address goes in the proposal).
        address client;
        uint64 provider;
        bytes payloadCid;
        int64 start;
        int64 end;
        uint256 providerCollateral;
    }

    /// @notice An offer's terms that differ from a published proposal's (0: none).
    enum Mismatch {
        None,
        Piece,
        Size,
        Verified,
        Label,
        End,
        Price,
        ClientCollateral
    }

    /// @notice The proposal of an offer (see `Offer`).
    function encodeOffer(Offer calldata o) external pure returns (bytes memory) {
        DealProposal.Fields memory f;
        f.pieceCid = o.pieceCid;
        f.pieceSize = o.pieceSize;
        f.verified = o.verified;
        f.client = abi.encodePacked(bytes2(0x040a), o.client);
        f.provider = idAddress(o.provider);
        f.label = CidString.toText(o.payloadCid);
        f.labelIsText = true;
        f.start = o.start;
        f.end = o.end;
        f.providerCollateral = o.providerCollateral;
        return DealProposal.encode(f);
    }

    /// @notice The proposal a market callback carries (AuthenticateMessage's `[signature,
    ///         message]` or, when `notify`, MarketNotifyDeal's `[proposal, deal_id]`): its
    ///         provider (binary address), start epoch, the deal ID (0 for AuthenticateMessage),
    ///         and the digest of its other terms (`DealProposal.termsKey`).
    function readCallback(bytes calldata params, bool notify)
        external
        pure
        returns (bytes memory provider, int64 start, uint64 dealId, bytes32 terms)
    {
        DealProposal.Fields memory f;
        if (notify) {
            bytes memory proposal;
            (proposal, dealId) = DealProposal.notifyDeal(params);
            f = DealProposal.decode(proposal);
        } else {
            f = DealProposal.decode(DealProposal.authenticateMessage(params));
        }
        return (f.provider, f.start, dealId, DealProposal.termsKey(f));
    }

    /// @notice Which term of the proposal in a market callback differs from an offer's (the
    ///         offer's provider collateral, client and provider are not compared).
    function compareOffer(bytes calldata params, bool notify, Offer calldata o)
        external
        pure
        returns (Mismatch)
    {
        DealProposal.Fields memory f;
        if (notify) {
            (bytes memory proposal,) = DealProposal.notifyDeal(params);
            f = DealProposal.decode(proposal);
        } else {
            f = DealProposal.decode(DealProposal.authenticateMessage(params));
        }
        if (keccak256(f.pieceCid) != keccak256(o.pieceCid)) return Mismatch.Piece;
        if (f.pieceSize != o.pieceSize) return Mismatch.Size;
        if (f.verified != o.verified) return Mismatch.Verified;
        if (!f.labelIsText || keccak256(f.label) != keccak256(CidString.toText(o.payloadCid))) {
            return Mismatch.Label;
        }
        if (f.start != o.start || f.end != o.end) return Mismatch.End;
        if (f.price != 0) return Mismatch.Price;
        if (f.clientCollateral != 0) return Mismatch.ClientCollateral;
        return Mismatch.None;
    }

    /// @notice The digest of a proposal's terms but client and provider (`DealProposal.termsKey`).
    function termsKey(DealProposal.Fields calldata f) external pure returns (bytes32) {
        return DealProposal.termsKey(f);
    }

    function idAddress(uint64 id) internal pure returns (bytes memory out) {
        out = abi.encodePacked(bytes1(0x00));
        do {
            uint8 b = uint8(id & 0x7f);
            id >>= 7;
            if (id != 0) b |= 0x80;
            out = bytes.concat(out, bytes1(b));
        } while (id != 0);
    }

    /// @notice A `DealProposal`'s CBOR.
    function encodeProposal(DealProposal.Fields calldata f) external pure returns (bytes memory) {
        return DealProposal.encode(f);
    }

    /// @notice Reads a `DealProposal`'s CBOR.
    function decodeProposal(bytes calldata m) external pure returns (DealProposal.Fields memory) {
        return DealProposal.decode(m);
    }

    /// @notice Reads AuthenticateMessage's parameters and the proposal they carry.
    function decodeAuthenticateMessage(bytes calldata params)
        external
        pure
        returns (DealProposal.Fields memory)
    {
        return DealProposal.decode(DealProposal.authenticateMessage(params));
    }

    /// @notice Reads MarketNotifyDeal's parameters: the proposal and the deal ID.
    function decodeNotifyDeal(bytes calldata params)
        external
        pure
        returns (DealProposal.Fields memory f, uint64 dealId)
    {
        bytes memory proposal;
        (proposal, dealId) = DealProposal.notifyDeal(params);
        f = DealProposal.decode(proposal);
    }

    /// @notice Boost's extra parameters, version 1.
    function extraParams(bytes calldata locationRef, uint64 carSize, bool skipIpni, bool removeUnsealed)
        external
        pure
        returns (bytes memory)
    {
        return DealProposal.extraParams(locationRef, carSize, skipIpni, removeUnsealed);
    }

    /// @notice The canonical text of a binary CID (see `CidString.toText`).
    function cidText(bytes calldata cid) external pure returns (bytes memory) {
        return CidString.toText(cid);
    }

    /// @notice Whether `text` is the canonical text of a valid CID.
    function isCidText(bytes calldata text) external pure returns (bool) {
        return CidString.isCidText(text);
    }

    /// @notice Reads SectorContentChanged's parameters (builtin-actors
    ///         `actors/miner/src/types.rs`: `[[sector, minimum_commitment_epoch, [[data, size,
    ///         payload]]]]`), flattened.
    function decodeSectorChanges(bytes calldata params) external pure returns (PieceChanges memory out) {
        bytes memory p = params;
        (uint64 sectors, uint256 i) = Cbor.readArray(p, 0);
        if (sectors > p.length) revert Cbor.CborTruncated(0);
        uint256 total = countPieces(p, i, sectors);
        out.sector = new uint64[](total);
        out.commitment = new int64[](total);
        out.data = new bytes[](total);
        out.size = new uint64[](total);
        out.payload = new bytes[](total);
        out.perSector = new uint64[](sectors);
        uint256 o;
        for (uint256 s; s < sectors; ++s) {
            uint64 sector;
            int64 commitment;
            (, i) = Cbor.readArray(p, i);
            (sector, i) = Cbor.readUint(p, i);
            (commitment, i) = Cbor.readInt(p, i);
            (out.perSector[s], i) = Cbor.readArray(p, i);
            for (uint256 k; k < out.perSector[s]; ++k) {
                out.sector[o] = sector;
                out.commitment[o] = commitment;
                (, i) = Cbor.readArray(p, i);
                (out.data[o], i) = Cbor.readCid(p, i);
                (out.size[o], i) = Cbor.readUint(p, i);
                (out.payload[o], i) = Cbor.readBytes(p, i);
                ++o;
            }
        }
        if (i != p.length) revert Cbor.CborUnexpected(i);
    }

    /// @dev Counts the pieces, checking each item's shape on the way.
    function countPieces(bytes memory p, uint256 i, uint64 sectors) internal pure returns (uint256 total) {
        for (uint256 s; s < sectors; ++s) {
            uint64 n;
            (n, i) = Cbor.readArray(p, i);
            if (n != 3) revert Cbor.CborUnexpected(i);
            i = Cbor.skip(p, i);
            i = Cbor.skip(p, i);
            uint64 pieces;
            (pieces, i) = Cbor.readArray(p, i);
            for (uint256 k; k < pieces; ++k) {
                (n, i) = Cbor.readArray(p, i);
                if (n != 3) revert Cbor.CborUnexpected(i);
                i = Cbor.skip(p, i);
                i = Cbor.skip(p, i);
                i = Cbor.skip(p, i);
            }
            total += pieces;
        }
    }

    /// @notice SectorContentChanged's return: `[[accepted]]`, `perSector[s]` pieces in sector `s`.
    function encodeAccepted(uint64[] calldata perSector, bool[] calldata accepted)
        external
        pure
        returns (bytes memory out)
    {
        out = Cbor.encodeArray(uint64(perSector.length));
        uint256 o;
        for (uint256 s; s < perSector.length; ++s) {
            out = bytes.concat(out, Cbor.encodeArray(perSector[s]));
            for (uint256 k; k < perSector[s]; ++k) {
                out = bytes.concat(out, Cbor.encodeBool(accepted[o++]));
            }
        }
    }

    /// @notice The FRC-0069 piece CID v2 of a v1 piece CID and its payload size: CIDv1, raw,
    ///         multihash fr32-sha256-trunc254-padbintree (0x1011) of `varint(padding) ‖ height
    ///         ‖ root` (go-fil-commcid `DataCommitmentToPieceCidv2`).
    // The divisions round exactly as go-fil-commcid's `PayloadSizeToV1TreeHeightAndPadding` does.
    // slither-disable-next-line divide-before-multiply
    function pieceCidV2(bytes calldata pieceCidV1, uint64 payloadSize) external pure returns (bytes memory) {
        uint256 fr32 = uint256(payloadSize) * 128 / 127;
        if (fr32 * 127 != uint256(payloadSize) * 128) fr32 += 1;
        uint8 height;
        while ((uint256(32) << height) < fr32) {
            ++height;
        }
        uint256 padding = ((uint256(32) << height) / 128 * 127) - payloadSize;
        bytes memory pad = varint(padding);
        return bytes.concat(hex"01559120", varint(pad.length + 33), pad, bytes1(height), pieceCidV1[7:39]);
    }

    function varint(uint256 v) internal pure returns (bytes memory out) {
        do {
            uint8 b = uint8(v & 0x7f);
            v >>= 7;
            if (v != 0) b |= 0x80;
            out = bytes.concat(out, bytes1(b));
        } while (v != 0);
    }
}
