// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// A deliberately plain reading of `ProviderRegistry`'s URL rules, to compare `setUrl` against:
/// the `at` of `ProviderRegistryBadUrl`, or `ACCEPTED` for a URL it must accept.
library UrlRules {
    uint256 internal constant ACCEPTED = type(uint256).max;

    function expectedAt(bytes memory u) internal pure returns (uint256) {
        if (u.length > 256) return u.length;
        uint256 start;
        if (startsWith(u, "https://")) start = 8;
        else if (startsWith(u, "http://")) start = 7;
        else return u.length;
        if (u.length == start) return u.length;
        for (uint256 i = start; i < u.length; ++i) {
            uint8 c = uint8(u[i]);
            if (c < 33 || c > 126) return i;
        }
        return ACCEPTED;
    }

    function isValid(bytes memory u) internal pure returns (bool) {
        return expectedAt(u) == ACCEPTED;
    }

    function startsWith(bytes memory u, bytes memory prefix) internal pure returns (bool) {
        if (u.length < prefix.length) return false;
        for (uint256 i; i < prefix.length; ++i) {
            if (u[i] != prefix[i]) return false;
        }
        return true;
    }

    /// `n` printable ASCII bytes (0x21..0x7e), varied by `seed`.
    function printable(uint256 n, uint256 seed) internal pure returns (bytes memory out) {
        out = new bytes(n);
        for (uint256 i; i < n; ++i) {
            out[i] = bytes1(uint8(0x21 + (seed % 94 + i * 7) % 94));
        }
    }

    /// `n` times the byte `c`.
    function repeat(bytes1 c, uint256 n) internal pure returns (bytes memory out) {
        out = new bytes(n);
        for (uint256 i; i < n; ++i) {
            out[i] = c;
        }
    }
}
