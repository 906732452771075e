// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {CidLib} from "./CidLib.sol";

/// @title CidString
/// @notice CIDs as the text a deal label carries. Boost reads a contract deal's label with
///         `Label.ToString()` and `cid.Parse` (boost `storagemarket/contract_deal_monitor.go`), so
///         the label must be a text string holding a CID. This library writes the canonical text
///         of a binary CID (base58btc for a CIDv0, `b` + base32 lower for a CIDv1, as go-cid and
///         the multiformats JavaScript libraries print them) and checks that a label is one.
/// @dev Only those two canonical forms are written and accepted; other multibase prefixes that
///      go-cid would also parse (`z`, `k`, `B`, ...) are refused here, which is stricter than Boost.
library CidString {
    bytes internal constant BASE32 = "abcdefghijklmnopqrstuvwxyz234567";
    bytes internal constant BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

    /// @notice The canonical text of a binary CID: base58btc for a CIDv0 (34-byte sha2-256
    ///         multihash), else `b` and RFC 4648 base32 in lower case without padding.
    function toText(bytes memory cid) internal pure returns (bytes memory) {
        if (cid.length == 34 && cid[0] == 0x12 && cid[1] == 0x20) return base58(cid);
        bytes memory out = new bytes(1 + (cid.length * 8 + 4) / 5);
        out[0] = "b";
        uint256 buffer;
        uint256 bits;
        uint256 o = 1;
        for (uint256 k; k < cid.length; ++k) {
            buffer = (buffer << 8) | uint8(cid[k]);
            bits += 8;
            while (bits >= 5) {
                bits -= 5;
                out[o++] = BASE32[(buffer >> bits) & 31];
            }
            buffer &= (1 << bits) - 1;
        }
        if (bits > 0) out[o] = BASE32[(buffer << (5 - bits)) & 31];
        return out;
    }

    /// @notice Whether `text` is the canonical text of a valid CID (see `toText`).
    function isCidText(bytes memory text) internal pure returns (bool) {
        (bool ok, bytes memory cid) = parse(text);
        return ok && CidLib.checkMemory(cid) == CidLib.CidError.None;
    }

    /// @notice Decodes the canonical text of a CID (no validation of the binary CID itself).
    /// @return ok False unless `text` is `b` + base32 lower (with zero trailing bits) or a
    ///         46-character base58btc string starting with `Qm` that decodes to 34 bytes.
    function parse(bytes memory text) internal pure returns (bool ok, bytes memory cid) {
        if (text.length == 46 && text[0] == "Q" && text[1] == "m") return unbase58(text);
        if (text.length < 2 || text[0] != "b") return (false, "");
        uint256 n = text.length - 1;
        cid = new bytes(n * 5 / 8);
        uint256 buffer;
        uint256 bits;
        uint256 o;
        for (uint256 k = 1; k < text.length; ++k) {
            uint8 c = uint8(text[k]);
            uint256 v;
            if (c >= 0x61 && c <= 0x7a) v = c - 0x61;
            else if (c >= 0x32 && c <= 0x37) v = c - 0x32 + 26;
            else return (false, "");
            buffer = (buffer << 5) | v;
            bits += 5;
            if (bits >= 8) {
                bits -= 8;
                cid[o++] = bytes1(uint8(buffer >> bits));
                buffer &= (1 << bits) - 1;
            }
        }
        // Canonical: the unused trailing bits are zero and fewer than a character.
        if (buffer != 0 || bits >= 5) return (false, "");
        return (true, cid);
    }

    function base58(bytes memory data) private pure returns (bytes memory) {
        uint256 zeros;
        while (zeros < data.length && data[zeros] == 0) {
            ++zeros;
        }
        // log(256) / log(58) < 1.37
        bytes memory digits = new bytes(data.length * 137 / 100 + 1);
        uint256 used;
        for (uint256 k = zeros; k < data.length; ++k) {
            uint256 carry = uint8(data[k]);
            for (uint256 j; j < used || carry != 0; ++j) {
                if (j < used) carry += uint256(uint8(digits[j])) * 256;
                digits[j] = bytes1(uint8(carry % 58));
                carry /= 58;
                if (j >= used) used = j + 1;
            }
        }
        bytes memory out = new bytes(zeros + used);
        for (uint256 k; k < zeros; ++k) {
            out[k] = "1";
        }
        for (uint256 k; k < used; ++k) {
            out[zeros + k] = BASE58[uint8(digits[used - 1 - k])];
        }
        return out;
    }

    function unbase58(bytes memory text) private pure returns (bool ok, bytes memory out) {
        // A 46-character string starting with "Qm" has no leading "1": 34 bytes at most.
        bytes memory acc = new bytes(35);
        for (uint256 k; k < text.length; ++k) {
            uint256 v = 58;
            for (uint256 d; d < 58; ++d) {
                if (BASE58[d] == text[k]) {
                    v = d;
                    break;
                }
            }
            if (v == 58) return (false, "");
            uint256 carry = v;
            for (uint256 j = acc.length; j > 0; --j) {
                carry += uint256(uint8(acc[j - 1])) * 58;
                acc[j - 1] = bytes1(uint8(carry));
                carry >>= 8;
            }
            if (carry != 0) return (false, "");
        }
        if (acc[0] != 0) return (false, "");
        out = new bytes(34);
        for (uint256 k; k < 34; ++k) {
            out[k] = acc[k + 1];
        }
        return (true, out);
    }
}
