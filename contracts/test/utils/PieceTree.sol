// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {PoDSI} from "../../src/lib/PoDSI.sol";

/// Small FRC-0058 aggregates built in full in memory (up to a few hundred leaves), for tests:
/// pieces placed as go-data-segment's `ComputeDealPlacement` places them, their index entries
/// written at the index area (optionally wrong), and proofs collected from the whole tree. An
/// independent path to the same trees `crates/piece` builds sparsely.
library PieceTree {
    /// A piece to place: its height (log2 of its size in 32-byte nodes) and its leaves' seed.
    struct Piece {
        uint8 height;
        uint256 seed;
    }

    /// How an index entry is written wrong (`None`: right).
    enum Corruption {
        None,
        Checksum,
        Offset,
        Size,
        Commitment
    }

    /// A built aggregate: every level of its tree, each piece's commitment, offset and size.
    struct Aggregate {
        bytes32[][] levels;
        bytes32[] commPs;
        uint64[] offsets;
        uint64[] sizes;
        uint64 dealSize;
    }

    /// Builds a deal of `2^height` nodes from `pieces` (in order, each aligned to its size);
    /// entry `k` is written with `corruption[k]`. Reverts if they do not fit.
    function build(uint8 height, Piece[] memory pieces, Corruption[] memory corruption)
        internal
        view
        returns (Aggregate memory a)
    {
        uint256 width = 1 << height;
        a.dealSize = uint64(width * 32);
        bytes32[] memory leaves = new bytes32[](width);
        a.commPs = new bytes32[](pieces.length);
        a.offsets = new uint64[](pieces.length);
        a.sizes = new uint64[](pieces.length);
        uint256 end;
        for (uint256 k; k < pieces.length; ++k) {
            uint256 n = 1 << pieces[k].height;
            uint256 first = (end + n - 1) / n * n;
            end = first + n;
            for (uint256 i; i < n; ++i) {
                // Any 254-bit values: the tree does not care whether they are Fr32 data.
                leaves[first + i] = keccak256(abi.encode(pieces[k].seed, i)) & bytes32(~uint256(0xc0));
            }
            a.offsets[k] = uint64(first * 32);
            a.sizes[k] = uint64(n * 32);
        }
        (bool fits, uint256 start) = PoDSI.indexAreaStart(a.dealSize);
        require(fits && end * 32 + pieces.length * 64 <= a.dealSize && end * 32 <= start, "does not fit");
        a.levels = levelsOf(leaves);
        for (uint256 k; k < pieces.length; ++k) {
            uint8 h = pieces[k].height;
            a.commPs[k] = a.levels[h][a.offsets[k] / a.sizes[k]];
        }
        // The index: two leaves per entry from the start of the index area.
        for (uint256 k; k < pieces.length; ++k) {
            Corruption c = k < corruption.length ? corruption[k] : Corruption.None;
            bytes32 commP = a.commPs[k];
            uint64 offset = a.offsets[k];
            uint64 size = a.sizes[k];
            bytes32 tail = PoDSI.entryTail(commP, offset, size);
            if (c == Corruption.Checksum) tail ^= bytes32(uint256(1) << 64);
            if (c == Corruption.Offset) tail = PoDSI.entryTail(commP, offset + uint64(size), size);
            if (c == Corruption.Size) tail = PoDSI.entryTail(commP, offset, size * 2);
            if (c == Corruption.Commitment) commP ^= bytes32(uint256(1) << 8);
            leaves[start / 32 + 2 * k] = commP;
            leaves[start / 32 + 2 * k + 1] = tail;
        }
        a.levels = levelsOf(leaves);
    }

    /// Every level of the tree over `leaves` (a power of two of them), leaves first.
    function levelsOf(bytes32[] memory leaves) internal view returns (bytes32[][] memory levels) {
        uint256 height;
        while ((1 << height) < leaves.length) ++height;
        levels = new bytes32[][](height + 1);
        levels[0] = leaves;
        for (uint256 h = 1; h <= height; ++h) {
            bytes32[] memory below = levels[h - 1];
            bytes32[] memory here = new bytes32[](below.length / 2);
            for (uint256 i; i < here.length; ++i) {
                here[i] = PoDSI.node(below[2 * i], below[2 * i + 1]);
            }
            levels[h] = here;
        }
    }

    /// The proof of the node at (`level`, `index`).
    function proofOf(bytes32[][] memory levels, uint256 level, uint256 index)
        internal
        pure
        returns (PoDSI.ProofData memory p)
    {
        p.index = uint64(index);
        p.path = new bytes32[](levels.length - 1 - level);
        for (uint256 h = level; h < levels.length - 1; ++h) {
            p.path[h - level] = levels[h][index ^ 1];
            index >>= 1;
        }
    }

    /// The inclusion proof of piece `k` (its subtree and its index entry).
    function inclusion(Aggregate memory a, uint256 k) internal pure returns (PoDSI.InclusionProof memory p) {
        uint256 level = log2(a.sizes[k] / 32);
        p.proofSubtree = proofOf(a.levels, level, a.offsets[k] / a.sizes[k]);
        (, uint256 start) = PoDSI.indexAreaStart(a.dealSize);
        p.proofIndex = proofOf(a.levels, 1, start / 64 + k);
    }

    function root(Aggregate memory a) internal pure returns (bytes32) {
        return a.levels[a.levels.length - 1][0];
    }

    function log2(uint256 x) internal pure returns (uint256 r) {
        while (x > 1) {
            x >>= 1;
            ++r;
        }
    }
}
