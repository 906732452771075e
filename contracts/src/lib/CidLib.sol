// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @title CidLib
/// @notice Structural validation of binary CIDs (CIDv0 and CIDv1) as defined by the multiformats
///         CID specification, done in calldata without copying.
/// @dev A CIDv0 is exactly a sha2-256 multihash: `0x12 0x20` followed by a 32-byte digest.
///      A CIDv1 is `varint(1) varint(codec) varint(hash code) varint(digest length) digest`, where
///      every varint is an unsigned LEB128 of at most 9 bytes in its minimal encoding, and the
///      digest runs exactly to the end of the input.
library CidLib {
    /// @notice Why a byte string is not a binary CID.
    enum CidError {
        /// The input is a well-formed CID.
        None,
        /// The input is empty.
        Empty,
        /// The input is longer than `MAX_CID_LENGTH`.
        TooLong,
        /// A varint runs past the end of the input, is longer than 9 bytes, or is not minimal.
        MalformedVarint,
        /// The version is neither a CIDv0 multihash nor 1.
        UnsupportedVersion,
        /// The multihash digest is empty or longer than `MAX_DIGEST_LENGTH`.
        BadDigestLength,
        /// The digest length does not match the bytes that follow it.
        LengthMismatch,
        /// The content codec is not one IPFS can serve (raw, dag-pb, dag-cbor, dag-json, ...).
        UnknownCodec,
        /// The hash function is unknown, or the digest is not its length.
        BadHash
    }

    /// @notice Longest CID accepted, in bytes. Real CIDs with 64-byte digests are under 80 bytes.
    uint256 internal constant MAX_CID_LENGTH = 128;
    /// @notice Longest multihash digest accepted (sha2-512, blake2b-512 and shake-256 use 64).
    uint256 internal constant MAX_DIGEST_LENGTH = 64;

    /// @notice Checks that `cid` is a binary CIDv0 or CIDv1.
    /// @param cid The candidate CID bytes.
    /// @return err `CidError.None` when valid, otherwise the first problem found.
    function check(bytes calldata cid) internal pure returns (CidError err) {
        uint256 len = cid.length;
        if (len == 0) return CidError.Empty;
        if (len > MAX_CID_LENGTH) return CidError.TooLong;

        // CIDv0: a bare sha2-256 multihash.
        if (len == 34 && uint8(cid[0]) == 0x12 && uint8(cid[1]) == 0x20) return CidError.None;

        uint256 pos;
        uint256 value;
        bool ok;
        (value, pos, ok) = readVarint(cid, 0);
        if (!ok) return CidError.MalformedVarint;
        if (value != 1) return CidError.UnsupportedVersion;
        uint256 codec;
        (codec, pos, ok) = readVarint(cid, pos);
        if (!ok) return CidError.MalformedVarint;
        uint256 hashCode;
        (hashCode, pos, ok) = readVarint(cid, pos);
        if (!ok) return CidError.MalformedVarint;
        // multihash digest length
        (value, pos, ok) = readVarint(cid, pos);
        if (!ok) return CidError.MalformedVarint;
        if (value == 0 || value > MAX_DIGEST_LENGTH) return CidError.BadDigestLength;
        if (len - pos != value) return CidError.LengthMismatch;
        if (!knownCodec(codec)) return CidError.UnknownCodec;
        uint256 want = digestLength(hashCode);
        if (want == 0 || (want != type(uint256).max && want != value)) return CidError.BadHash;
        return CidError.None;
    }

    /// @notice `check` for a CID in memory (the same rules).
    function checkMemory(bytes memory cid) internal pure returns (CidError) {
        uint256 len = cid.length;
        if (len == 0) return CidError.Empty;
        if (len > MAX_CID_LENGTH) return CidError.TooLong;
        if (len == 34 && uint8(cid[0]) == 0x12 && uint8(cid[1]) == 0x20) return CidError.None;
        uint256[4] memory v;
        uint256 pos;
        bool ok;
        for (uint256 k; k < 4; ++k) {
            (v[k], pos, ok) = readVarintMemory(cid, pos);
            if (!ok) return CidError.MalformedVarint;
            if (k == 0 && v[0] != 1) return CidError.UnsupportedVersion;
        }
        if (v[3] == 0 || v[3] > MAX_DIGEST_LENGTH) return CidError.BadDigestLength;
        if (len - pos != v[3]) return CidError.LengthMismatch;
        if (!knownCodec(v[1])) return CidError.UnknownCodec;
        uint256 want = digestLength(v[2]);
        if (want == 0 || (want != type(uint256).max && want != v[3])) return CidError.BadHash;
        return CidError.None;
    }

    /// @notice Content codecs (multicodec table) accepted in a CIDv1: raw, dag-pb, dag-cbor,
    ///         dag-json, dag-jose, libp2p-key, json, cbor and car.
    function knownCodec(uint256 codec) internal pure returns (bool) {
        return codec == 0x55 || codec == 0x70 || codec == 0x71 || codec == 0x0129 || codec == 0x85
            || codec == 0x72 || codec == 0x0200 || codec == 0x51 || codec == 0x0202;
    }

    /// @notice The digest length of a known multihash function: 0 when unknown,
    ///         `type(uint256).max` when any length (identity, blake3) is valid.
    function digestLength(uint256 hashCode) internal pure returns (uint256) {
        if (hashCode == 0x00 || hashCode == 0x1e) return type(uint256).max; // identity, blake3
        if (hashCode == 0x12 || hashCode == 0x16 || hashCode == 0x1b) return 32; // sha2-256, sha3-256, keccak-256
        if (hashCode == 0xb220 || hashCode == 0xb260 || hashCode == 0x1012) return 32; // blake2b/2s-256, trunc254
        if (hashCode == 0x13 || hashCode == 0x14 || hashCode == 0x1d || hashCode == 0xb240) return 64;
        if (hashCode == 0x15) return 48; // sha3-384
        if (hashCode == 0x11) return 20; // sha1
        return 0;
    }

    /// @notice Binary prefix of a v1 piece CID: CIDv1, fil-commitment-unsealed,
    ///         sha2-256-trunc254-padded, 32-byte digest.
    bytes7 internal constant PIECE_CID_PREFIX = 0x0181e203922020;

    /// @notice Whether `cid` is a binary v1 piece CID (the prefix and a 32-byte commitment).
    function isPieceCid(bytes calldata cid) internal pure returns (bool) {
        return cid.length == 39 && bytes7(cid[:7]) == PIECE_CID_PREFIX;
    }

    /// @notice Whether `size` is a padded piece size: a power of two from 128 bytes to 64 GiB.
    function isPaddedSize(uint64 size) internal pure returns (bool) {
        return size >= 128 && size <= 1 << 36 && size & (size - 1) == 0;
    }

    /// @notice Reads one unsigned varint starting at `pos`.
    /// @return value The decoded value.
    /// @return next The offset just past the varint.
    /// @return ok False if the varint is truncated, longer than 9 bytes, or not minimally encoded.
    function readVarint(bytes calldata data, uint256 pos)
        internal
        pure
        returns (uint256 value, uint256 next, bool ok)
    {
        uint256 len = data.length;
        for (uint256 shift; shift < 63; shift += 7) {
            if (pos >= len) return (0, pos, false);
            uint256 b = uint8(data[pos]);
            unchecked {
                ++pos;
            }
            value |= (b & 0x7f) << shift;
            if (b & 0x80 == 0) {
                // A final zero byte after the first one means a non-minimal encoding.
                if (b == 0 && shift != 0) return (0, pos, false);
                return (value, pos, true);
            }
        }
        return (0, pos, false);
    }

    /// @notice `readVarint` for bytes in memory.
    function readVarintMemory(bytes memory data, uint256 pos)
        internal
        pure
        returns (uint256 value, uint256 next, bool ok)
    {
        uint256 len = data.length;
        for (uint256 shift; shift < 63; shift += 7) {
            if (pos >= len) return (0, pos, false);
            uint256 b = uint8(data[pos]);
            unchecked {
                ++pos;
            }
            value |= (b & 0x7f) << shift;
            if (b & 0x80 == 0) {
                if (b == 0 && shift != 0) return (0, pos, false);
                return (value, pos, true);
            }
        }
        return (0, pos, false);
    }
}
