// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @title Cbor
/// @notice The small part of CBOR (RFC 8949) that Filecoin's built-in actors speak: unsigned and
///         negative integers, byte and text strings, arrays, booleans and CIDs (tag 42). Reading
///         is bounds-checked and refuses indefinite lengths; writing is canonical (shortest form).
/// @dev Written here because the FEVM libraries on npm revert on any actor exit code and carry a
///      general CBOR stack far larger than the few shapes the market actor uses.
library Cbor {
    uint8 internal constant MAJOR_UINT = 0;
    uint8 internal constant MAJOR_NINT = 1;
    uint8 internal constant MAJOR_BYTES = 2;
    uint8 internal constant MAJOR_TEXT = 3;
    uint8 internal constant MAJOR_ARRAY = 4;
    uint8 internal constant MAJOR_MAP = 5;
    uint8 internal constant MAJOR_TAG = 6;
    uint8 internal constant MAJOR_SIMPLE = 7;
    uint64 internal constant TAG_CID = 42;

    /// @notice The input ends inside an item.
    /// @param offset Offset of the item.
    error CborTruncated(uint256 offset);
    /// @notice The item at `at` is not what the caller expected, or uses a form this reader
    ///         refuses (indefinite length, reserved additional information).
    /// @param offset Offset of the item.
    error CborUnexpected(uint256 offset);

    // ------------------------------------------------------------------ reading

    /// @notice Reads an item's head.
    /// @param b Input.
    /// @param i Offset of the head.
    /// @return major Major type (0–7).
    /// @return value Argument: the integer, length, tag or simple value.
    /// @return next Offset after the head.
    function readHead(bytes memory b, uint256 i)
        internal
        pure
        returns (uint8 major, uint64 value, uint256 next)
    {
        if (i >= b.length) revert CborTruncated(i);
        uint8 first = uint8(b[i]);
        major = first >> 5;
        uint8 info = first & 0x1f;
        if (info < 24) return (major, info, i + 1);
        uint256 size;
        if (info == 24) size = 1;
        else if (info == 25) size = 2;
        else if (info == 26) size = 4;
        else if (info == 27) size = 8;
        else revert CborUnexpected(i);
        if (i + 1 + size > b.length) revert CborTruncated(i);
        for (uint256 k = 1; k <= size; ++k) {
            value = (value << 8) | uint64(uint8(b[i + k]));
        }
        return (major, value, i + 1 + size);
    }

    function expect(bytes memory b, uint256 i, uint8 major)
        private
        pure
        returns (uint64 value, uint256 next)
    {
        uint8 got;
        (got, value, next) = readHead(b, i);
        if (got != major) revert CborUnexpected(i);
    }

    /// @notice Reads an unsigned integer.
    function readUint(bytes memory b, uint256 i) internal pure returns (uint64 value, uint256 next) {
        return expect(b, i, MAJOR_UINT);
    }

    /// @notice Reads a signed integer (major type 0 or 1) that fits an int64.
    function readInt(bytes memory b, uint256 i) internal pure returns (int64 value, uint256 next) {
        uint8 major;
        uint64 raw;
        (major, raw, next) = readHead(b, i);
        if (raw > uint64(type(int64).max)) revert CborUnexpected(i);
        if (major == MAJOR_UINT) return (int64(raw), next);
        if (major == MAJOR_NINT) return (-1 - int64(raw), next);
        revert CborUnexpected(i);
    }

    /// @notice Reads a boolean.
    function readBool(bytes memory b, uint256 i) internal pure returns (bool value, uint256 next) {
        if (i >= b.length) revert CborTruncated(i);
        uint8 first = uint8(b[i]);
        if (first == 0xf4) return (false, i + 1);
        if (first == 0xf5) return (true, i + 1);
        revert CborUnexpected(i);
    }

    /// @notice Reads an array head; the items follow.
    function readArray(bytes memory b, uint256 i) internal pure returns (uint64 length, uint256 next) {
        return expect(b, i, MAJOR_ARRAY);
    }

    /// @notice Reads a byte string (copied).
    function readBytes(bytes memory b, uint256 i) internal pure returns (bytes memory value, uint256 next) {
        uint64 len;
        (len, next) = expect(b, i, MAJOR_BYTES);
        return (slice(b, next, len), next + len);
    }

    /// @notice Reads a text string as bytes (copied).
    function readText(bytes memory b, uint256 i) internal pure returns (bytes memory value, uint256 next) {
        uint64 len;
        (len, next) = expect(b, i, MAJOR_TEXT);
        return (slice(b, next, len), next + len);
    }

    /// @notice Reads a CID: tag 42 around a byte string holding 0x00 and the binary CID.
    /// @return cid The binary CID, without the 0x00 prefix.
    function readCid(bytes memory b, uint256 i) internal pure returns (bytes memory cid, uint256 next) {
        uint64 tag;
        (tag, next) = expect(b, i, MAJOR_TAG);
        if (tag != TAG_CID) revert CborUnexpected(i);
        uint64 len;
        uint256 start;
        (len, start) = expect(b, next, MAJOR_BYTES);
        if (start + len > b.length) revert CborTruncated(next);
        if (len < 2 || b[start] != 0x00) revert CborUnexpected(next);
        return (slice(b, start + 1, len - 1), start + len);
    }

    /// @notice Reads a Filecoin big integer (a token amount) that must not be negative: a byte
    ///         string, empty for zero, else a sign byte 0x00 and at most 32 big-endian bytes.
    function readBigUint(bytes memory b, uint256 i) internal pure returns (uint256 value, uint256 next) {
        uint64 len;
        uint256 start;
        (len, start) = expect(b, i, MAJOR_BYTES);
        next = start + len;
        if (next > b.length) revert CborTruncated(i);
        if (len == 0) return (0, next);
        if (b[start] != 0x00 || len > 33) revert CborUnexpected(i);
        for (uint256 k = start + 1; k < next; ++k) {
            value = (value << 8) | uint8(b[k]);
        }
    }

    /// @notice Reads a text or a byte string (a deal label is either), copied.
    /// @return value The string's bytes.
    /// @return isText Whether it is a text string (major type 3).
    function readTextOrBytes(bytes memory b, uint256 i)
        internal
        pure
        returns (bytes memory value, bool isText, uint256 next)
    {
        (uint8 major, uint64 len, uint256 start) = readHead(b, i);
        if (major != MAJOR_TEXT && major != MAJOR_BYTES) revert CborUnexpected(i);
        return (slice(b, start, len), major == MAJOR_TEXT, start + len);
    }

    /// @notice Whether the item at `i` is CBOR null.
    function isNull(bytes memory b, uint256 i) internal pure returns (bool) {
        return i < b.length && uint8(b[i]) == 0xf6;
    }

    /// @notice Skips one item, nested ones included (at most 16 levels deep).
    function skip(bytes memory b, uint256 i) internal pure returns (uint256 next) {
        return skipDepth(b, i, 16);
    }

    function skipDepth(bytes memory b, uint256 i, uint256 depth) private pure returns (uint256 next) {
        if (depth == 0) revert CborUnexpected(i);
        (uint8 major, uint64 value, uint256 after_) = readHead(b, i);
        if (major == MAJOR_BYTES || major == MAJOR_TEXT) {
            next = after_ + value;
            if (next > b.length) revert CborTruncated(i);
            return next;
        }
        if (major == MAJOR_ARRAY || major == MAJOR_MAP) {
            uint256 items = major == MAJOR_MAP ? uint256(value) * 2 : value;
            // Every item takes at least one byte: refuse counts the input cannot hold.
            if (items > b.length - after_) revert CborTruncated(i);
            next = after_;
            for (uint256 k; k < items; ++k) {
                next = skipDepth(b, next, depth - 1);
            }
            return next;
        }
        if (major == MAJOR_TAG) return skipDepth(b, after_, depth - 1);
        return after_;
    }

    /// @notice Copies `len` bytes of `b` from `start`.
    function slice(bytes memory b, uint256 start, uint256 len) internal pure returns (bytes memory out) {
        if (start + len > b.length) revert CborTruncated(start);
        out = new bytes(len);
        for (uint256 k; k < len; ++k) {
            out[k] = b[start + k];
        }
    }

    // ------------------------------------------------------------------ writing

    /// @notice A head in its shortest form.
    function head(uint8 major, uint64 value) internal pure returns (bytes memory) {
        bytes1 m = bytes1(major << 5);
        if (value < 24) return abi.encodePacked(m | bytes1(uint8(value)));
        if (value <= type(uint8).max) return abi.encodePacked(m | bytes1(0x18), uint8(value));
        if (value <= type(uint16).max) return abi.encodePacked(m | bytes1(0x19), uint16(value));
        if (value <= type(uint32).max) return abi.encodePacked(m | bytes1(0x1a), uint32(value));
        return abi.encodePacked(m | bytes1(0x1b), value);
    }

    /// @notice An unsigned integer.
    function encodeUint(uint64 value) internal pure returns (bytes memory) {
        return head(MAJOR_UINT, value);
    }

    /// @notice A signed integer.
    function encodeInt(int64 value) internal pure returns (bytes memory) {
        if (value >= 0) return head(MAJOR_UINT, uint64(value));
        return head(MAJOR_NINT, uint64(-1 - value));
    }

    /// @notice A boolean.
    function encodeBool(bool value) internal pure returns (bytes memory) {
        return abi.encodePacked(value ? bytes1(0xf5) : bytes1(0xf4));
    }

    /// @notice A byte string.
    function encodeBytes(bytes memory value) internal pure returns (bytes memory) {
        return bytes.concat(head(MAJOR_BYTES, uint64(value.length)), value);
    }

    /// @notice A text string (the caller vouches for UTF-8).
    function encodeText(bytes memory value) internal pure returns (bytes memory) {
        return bytes.concat(head(MAJOR_TEXT, uint64(value.length)), value);
    }

    /// @notice CBOR null.
    function encodeNull() internal pure returns (bytes memory) {
        return hex"f6";
    }

    /// @notice An array head; the caller appends the items.
    function encodeArray(uint64 length) internal pure returns (bytes memory) {
        return head(MAJOR_ARRAY, length);
    }

    /// @notice A CID (tag 42, byte string of 0x00 and the binary CID).
    function encodeCid(bytes memory cid) internal pure returns (bytes memory) {
        return bytes.concat(head(MAJOR_TAG, TAG_CID), encodeBytes(bytes.concat(bytes1(0x00), cid)));
    }

    /// @notice A Filecoin big integer (token amounts): a byte string, empty for zero, else a sign
    ///         byte (0x00, non-negative) and the big-endian magnitude without leading zeros.
    function encodeBigUint(uint256 value) internal pure returns (bytes memory) {
        if (value == 0) return encodeBytes("");
        uint256 len;
        for (uint256 v = value; v != 0; v >>= 8) {
            ++len;
        }
        bytes memory mag = new bytes(len + 1);
        for (uint256 k; k < len; ++k) {
            mag[len - k] = bytes1(uint8(value >> (8 * k)));
        }
        return encodeBytes(mag);
    }
}
