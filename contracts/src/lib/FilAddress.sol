// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @title FilAddress
/// @notice Filecoin addresses as the FEVM sees them. Every actor has an ID (`f0…`); in the EVM,
///         actors without an Ethereum address appear as the "masked ID" address
///         `0xff` ‖ 11 zero bytes ‖ uint64 id, and EVM accounts have a delegated `f410` address
///         (protocol 4, namespace 10 = the EAM) wrapping their 20 bytes.
library FilAddress {
    /// @notice The masked-ID prefix: the top 12 bytes of a masked ID address.
    uint160 internal constant MASK = uint160(0xff) << 152;

    /// @notice The EVM address of actor `id` (its masked ID address).
    function maskedAddress(uint64 id) internal pure returns (address) {
        return address(MASK | uint160(id));
    }

    /// @notice Whether `a` is a masked ID address, and the ID it names.
    function idOfMasked(address a) internal pure returns (bool isMasked, uint64 id) {
        uint160 v = uint160(a);
        if (v >> 64 != MASK >> 64) return (false, 0);
        return (true, uint64(v));
    }

    /// @notice The binary ID address `f0<id>`: protocol byte 0 and the ID as unsigned LEB128.
    function idAddress(uint64 id) internal pure returns (bytes memory out) {
        out = abi.encodePacked(bytes1(0x00));
        do {
            uint8 b = uint8(id & 0x7f);
            id >>= 7;
            if (id != 0) b |= 0x80;
            out = bytes.concat(out, bytes1(b));
        } while (id != 0);
    }

    /// @notice The binary delegated address `f410…` of an EVM account.
    function delegatedAddress(address a) internal pure returns (bytes memory) {
        return abi.encodePacked(bytes2(0x040a), a);
    }

    /// @notice The binary Filecoin address an actor calling from EVM address `a` is known by: its
    ///         ID address when `a` is a masked ID address (a non-EVM actor such as an account or
    ///         a miner), else its delegated `f410` address.
    function fromEvm(address a) internal pure returns (bytes memory) {
        (bool isMasked, uint64 id) = idOfMasked(a);
        return isMasked ? idAddress(id) : delegatedAddress(a);
    }

    /// @notice Reads a binary delegated address in the EAM's namespace (`f410…`).
    /// @return ok False unless `addr` is protocol 4, namespace 10, and 20 bytes.
    function parseDelegated(bytes memory addr) internal pure returns (bool ok, address a) {
        if (addr.length != 22 || addr[0] != 0x04 || addr[1] != 0x0a) return (false, address(0));
        uint160 v;
        for (uint256 k = 2; k < 22; ++k) {
            v = (v << 8) | uint8(addr[k]);
        }
        return (true, address(v));
    }

    /// @notice The EVM address of a binary `f0` or `f410` address: the masked ID address, or the
    ///         delegated address's 20 bytes.
    /// @return ok False for any other kind of address (f1, f2, f3, other namespaces).
    function toEvm(bytes memory addr) internal pure returns (bool ok, address a) {
        uint64 id;
        (ok, id) = parseIdAddress(addr);
        if (ok) return (true, maskedAddress(id));
        return parseDelegated(addr);
    }

    /// @notice Reads a binary ID address.
    /// @return ok False unless `addr` is protocol 0 with a minimal LEB128 of at most 10 bytes that
    ///         fits 64 bits.
    function parseIdAddress(bytes memory addr) internal pure returns (bool ok, uint64 id) {
        if (addr.length < 2 || addr.length > 11 || addr[0] != 0x00) return (false, 0);
        uint256 value;
        for (uint256 k = 1; k < addr.length; ++k) {
            uint256 b = uint8(addr[k]);
            value |= (b & 0x7f) << (7 * (k - 1));
            bool last = k == addr.length - 1;
            if ((b & 0x80 == 0) != last) return (false, 0);
            if (last && b == 0 && k != 1) return (false, 0);
        }
        if (value > type(uint64).max) return (false, 0);
        return (true, uint64(value));
    }
}
