// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {MarketActor} from "./MarketActor.sol";
import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";

/// @title PoDSI
/// @notice Verifies FRC-0058 Proofs of Data Segment Inclusion on chain: that a client's piece
///         (commitment `commPc`, padded size `sizePc`) is a data segment of an aggregate (the
///         deal's piece, `commPa`/`sizePa`) at the offset the proof names, and that the
///         aggregate's data segment index holds the segment's entry (commitment, offset, size
///         and checksum) in its index area. Any contract can use it; `checkDeal` checks a proof
///         against a deal's piece as the storage market actor reports it.
/// @dev Follows filecoin-project/go-data-segment (commit a40dca9c, the reference FRC-0058
///      implementation) step by step, so that exactly the proofs it accepts are accepted:
///      `datasegment/inclusion.go` `ComputeExpectedAuxData` (the checks and their order),
///      `merkletree/proof.go` `ComputeRoot` (depth at most 63, index narrower than the tree,
///      SHA-256 with the top two bits of the last byte cleared), `datasegment/index.go`
///      (`MaxIndexEntriesInDeal`, `SegmentDesc` serialisation: commitment ‖ offset LE64 ‖ size
///      LE64 ‖ checksum, the checksum being the first 16 bytes of SHA-256 of the entry with a
///      zero checksum, truncated to 126 bits) and `datasegment/verifier.go` `VerifyActive` (the
///      computed aggregate must equal the deal's). Cross-checked with the proofs of
///      `crates/piece` (`contracts/test/fixtures/podsi.json`, go-data-segment's golden proof
///      included). Two deliberate representation choices: commitments are the 32-byte digests
///      (a v1 piece CID is `0x0181e203922020 ‖ digest`; `commPOf` and `pieceCidOf` convert),
///      and, as in go, a size of 0 counts as a power of two at the first check (such a proof
///      always fails later). The proof structs have the ABI of FRC-0058's Solidity types
///      (`ProofData {uint64 index; bytes32[] path}`, `InclusionProof {proofSubtree,
///      proofIndex}`), so proofs made for other FRC-0058 verifiers decode unchanged.
///
///      Cost: one SHA-256 precompile call per proof node and two for the entry; the deepest
///      proofs a 64 GiB deal can have (29 + 30 nodes) verify in about 33,000 gas
///      (`test_Gas_VerifyDeepest64GiB`).
library PoDSI {
    /// @notice Bytes per Merkle node, and per index entry (two nodes).
    uint256 internal constant NODE_SIZE = 32;
    uint256 internal constant ENTRY_SIZE = 64;
    /// @notice The deepest proof go-data-segment accepts.
    uint256 internal constant MAX_DEPTH = 63;
    /// @notice Binary prefix of a v1 piece CID: CIDv1, fil-commitment-unsealed,
    ///         sha2-256-trunc254-padded, 32-byte digest.
    bytes7 internal constant PIECE_CID_PREFIX = 0x0181e203922020;

    /// @notice A Merkle proof: the node's index within its level, and its siblings bottom up.
    struct ProofData {
        uint64 index;
        bytes32[] path;
    }

    /// @notice FRC-0058's proof: the client's subtree in the aggregate's tree (its position is
    ///         the segment's offset) and its index entry (a level-1 node) in the index area.
    struct InclusionProof {
        ProofData proofSubtree;
        ProofData proofIndex;
    }

    /// @notice The client's piece: its commitment (commP) and padded size.
    struct InclusionVerifierData {
        bytes32 commPc;
        uint64 sizePc;
    }

    /// @notice The aggregate a proof leads to: its commitment and padded size (the deal's).
    struct InclusionAuxData {
        bytes32 commPa;
        uint64 sizePa;
    }

    /// @notice Why a proof is refused (go-data-segment's error for each, in its order).
    enum Failure {
        /// The proof holds.
        None,
        /// "size of piece provided by verifier is not power of two".
        SizeNotPowerOfTwo,
        /// The subtree proof is deeper than 63 levels.
        SubtreeTooDeep,
        /// The subtree proof's index is not below 2^depth ("index greater than width of the tree").
        SubtreeIndexOutOfRange,
        /// 2^depth × sizePc does not fit 64 bits ("assumedSizePa overflow").
        AggregateSizeOverflow,
        /// The index proof is deeper than 63 levels.
        IndexTooDeep,
        /// The index proof's index is not below 2^depth.
        IndexIndexOutOfRange,
        /// The two proofs lead to different roots ("aggregator's data commitments don't match").
        CommitmentsDiffer,
        /// 2^depth × 64 does not fit 64 bits ("assumedSizePa2 overflow").
        IndexSizeOverflow,
        /// The two proofs imply different aggregate sizes.
        SizesDiffer,
        /// The entry lies before the index area ("index entry at wrong position").
        EntryOutsideIndexArea,
        /// The proof holds for another aggregate than the one expected (the deal's).
        AggregateMismatch
    }

    /// @notice A proof that does not hold, and why.
    error PoDSIInvalidProof(Failure failure);

    // ------------------------------------------------------------------ verification

    /// @notice The aggregate a proof leads to (go-data-segment `ComputeExpectedAuxData`).
    /// @return failure `Failure.None` when the proof is well formed and both of its halves lead
    ///         to the same aggregate; then `aux` is that aggregate.
    /// @return aux The aggregate's commitment and padded size (zero on failure).
    function computeExpectedAuxData(InclusionProof memory proof, InclusionVerifierData memory data)
        internal
        view
        returns (Failure failure, InclusionAuxData memory aux)
    {
        uint256 sizePc = data.sizePc;
        // util.IsPow2, for which 0 is a power of two.
        if (sizePc != 0 && sizePc & (sizePc - 1) != 0) return (Failure.SizeNotPowerOfTwo, aux);

        ProofData memory subtree = proof.proofSubtree;
        uint256 depth = subtree.path.length;
        if (depth > MAX_DEPTH) return (Failure.SubtreeTooDeep, aux);
        if (uint256(subtree.index) >> depth != 0) return (Failure.SubtreeIndexOutOfRange, aux);
        bytes32 commPa = root(subtree.index, subtree.path, data.commPc);
        uint256 sizePa = sizePc << depth;
        if (sizePa > type(uint64).max) return (Failure.AggregateSizeOverflow, aux);

        // The entry the aggregate's index must hold for this segment.
        uint256 offset = uint256(subtree.index) * sizePc;
        bytes32 entry = indexEntryNode(data.commPc, uint64(offset), uint64(sizePc));

        ProofData memory index = proof.proofIndex;
        uint256 indexDepth = index.path.length;
        if (indexDepth > MAX_DEPTH) return (Failure.IndexTooDeep, aux);
        if (uint256(index.index) >> indexDepth != 0) return (Failure.IndexIndexOutOfRange, aux);
        if (root(index.index, index.path, entry) != commPa) return (Failure.CommitmentsDiffer, aux);
        uint256 sizePa2 = ENTRY_SIZE << indexDepth;
        if (sizePa2 > type(uint64).max) return (Failure.IndexSizeOverflow, aux);
        if (sizePa2 != sizePa) return (Failure.SizesDiffer, aux);
        (bool fits, uint256 start) = indexAreaStart(uint64(sizePa));
        // go computes the start in uint64, where a deal too small for its index wraps to a start
        // past every entry: refused either way.
        if (!fits || uint256(index.index) * ENTRY_SIZE < start) return (Failure.EntryOutsideIndexArea, aux);
        return (Failure.None, InclusionAuxData(commPa, uint64(sizePa)));
    }

    /// @notice Whether the proof shows the client's piece in the aggregate `expected`.
    function verify(
        InclusionProof memory proof,
        InclusionVerifierData memory data,
        InclusionAuxData memory expected
    ) internal view returns (Failure failure) {
        InclusionAuxData memory aux;
        (failure, aux) = computeExpectedAuxData(proof, data);
        if (failure == Failure.None && (aux.commPa != expected.commPa || aux.sizePa != expected.sizePa)) {
            failure = Failure.AggregateMismatch;
        }
    }

    /// @notice `verify`, reverting with `PoDSIInvalidProof` unless the proof holds.
    function check(
        InclusionProof memory proof,
        InclusionVerifierData memory data,
        InclusionAuxData memory expected
    ) internal view {
        Failure failure = verify(proof, data, expected);
        if (failure != Failure.None) revert PoDSIInvalidProof(failure);
    }

    /// @notice Where the segment starts in the aggregate, in padded bytes (meaningful once the
    ///         proof is verified): the subtree's index times the piece's size.
    function offsetOf(InclusionProof memory proof, uint64 sizePc) internal pure returns (uint64) {
        return uint64(uint256(proof.proofSubtree.index) * sizePc);
    }

    // ------------------------------------------------------------------ against the market

    /// @notice The deal's piece as the storage market actor reports it (GetDealDataCommitment,
    ///         through `call_actor_id`), as the aggregate a proof must lead to.
    /// @return status `Ok`, or `NotFound` (never published) / `Expired` (gone from the market).
    /// @return aux The deal's commitment and padded size (zero unless `Ok`; a piece that is not
    ///         a v1 piece CID, which the market never holds, gives a zero commitment).
    function dealAuxData(uint64 dealId)
        internal
        returns (MarketActor.Status status, InclusionAuxData memory aux)
    {
        bytes memory pieceCid;
        uint64 size;
        (status, pieceCid, size) = MarketActor.getDealDataCommitment(dealId);
        if (status != MarketActor.Status.Ok) return (status, aux);
        (, aux.commPa) = commPOf(pieceCid);
        aux.sizePa = size;
    }

    /// @notice Checks a proof against deal `dealId`'s piece (go-data-segment `VerifyActive`
    ///         without the activation check: ask `MarketActor.getDealActivation` for that).
    /// @return status The market's answer for the deal; the proof is judged only when `Ok`.
    /// @return failure `Failure.None` when the proof leads to the deal's piece.
    function checkDeal(uint64 dealId, InclusionProof memory proof, InclusionVerifierData memory data)
        internal
        returns (MarketActor.Status status, Failure failure)
    {
        InclusionAuxData memory aux;
        (status, aux) = dealAuxData(dealId);
        if (status == MarketActor.Status.Ok) failure = verify(proof, data, aux);
    }

    // ------------------------------------------------------------------ building blocks

    /// @notice The root a Merkle path leads to from `leaf` at position `index` (no checks: see
    ///         `computeExpectedAuxData` for the depth and width rules).
    function root(uint64 index, bytes32[] memory path, bytes32 leaf) internal view returns (bytes32 acc) {
        acc = leaf;
        assembly ("memory-safe") {
            let pos := index
            let p := add(path, 0x20)
            let end := add(p, shl(5, mload(path)))
            for {} lt(p, end) { p := add(p, 0x20) } {
                switch and(pos, 1)
                case 0 {
                    mstore(0x00, acc)
                    mstore(0x20, mload(p))
                }
                default {
                    mstore(0x00, mload(p))
                    mstore(0x20, acc)
                }
                // SHA-256 precompile; it fails only when out of gas.
                if iszero(staticcall(gas(), 0x02, 0x00, 0x40, 0x00, 0x20)) { revert(0, 0) }
                // Truncate to 254 bits: clear the top two bits of the last byte.
                acc := and(mload(0x00), not(0xc0))
                pos := shr(1, pos)
            }
        }
    }

    /// @notice A node of the piece tree: truncated SHA-256 of its children.
    function node(bytes32 left, bytes32 right) internal view returns (bytes32 out) {
        assembly ("memory-safe") {
            mstore(0x00, left)
            mstore(0x20, right)
            if iszero(staticcall(gas(), 0x02, 0x00, 0x40, 0x00, 0x20)) { revert(0, 0) }
            out := and(mload(0x00), not(0xc0))
        }
    }

    /// @notice The index entry of a segment (`SegmentDesc`): its second half, offset LE64 ‖
    ///         size LE64 ‖ checksum, the first half being the commitment itself.
    function entryTail(bytes32 commP, uint64 offset, uint64 size) internal view returns (bytes32 tail) {
        uint256 word = (uint256(le64(offset)) << 192) | (uint256(le64(size)) << 128);
        assembly ("memory-safe") {
            mstore(0x00, commP)
            mstore(0x20, word)
            if iszero(staticcall(gas(), 0x02, 0x00, 0x40, 0x00, 0x20)) { revert(0, 0) }
            // The checksum: the digest's first 16 bytes, the top two bits of the 16th cleared.
            tail := or(word, and(shr(128, mload(0x00)), not(0xc0)))
        }
    }

    /// @notice The node an index entry makes in the tree (the hash of its two halves).
    function indexEntryNode(bytes32 commP, uint64 offset, uint64 size) internal view returns (bytes32) {
        return node(commP, entryTail(commP, offset, size));
    }

    /// @notice Index entries a deal of `dealSize` padded bytes holds:
    ///         `max(4, 2^ceil(log2(dealSize / 2048 / 64)))` (`MaxIndexEntriesInDeal`).
    function maxIndexEntries(uint64 dealSize) internal pure returns (uint256) {
        uint256 n = 1 << Math.log2(uint256(dealSize) / 2048 / ENTRY_SIZE, Math.Rounding.Ceil);
        return n < 4 ? 4 : n;
    }

    /// @notice Where the index area starts in a deal of `dealSize` padded bytes.
    /// @return fits False when the deal is smaller than its index area.
    /// @return start `dealSize - maxIndexEntries(dealSize) * 64`.
    function indexAreaStart(uint64 dealSize) internal pure returns (bool fits, uint256 start) {
        uint256 area = maxIndexEntries(dealSize) * ENTRY_SIZE;
        if (area > dealSize) return (false, 0);
        return (true, dealSize - area);
    }

    /// @notice The commitment of a binary v1 piece CID.
    /// @return ok False when `pieceCid` is not one (wrong length or prefix).
    function commPOf(bytes memory pieceCid) internal pure returns (bool ok, bytes32 commP) {
        if (pieceCid.length != 39 || bytes7(pieceCid) != PIECE_CID_PREFIX) return (false, 0);
        assembly ("memory-safe") {
            commP := mload(add(pieceCid, 39))
        }
        return (true, commP);
    }

    /// @notice The binary v1 piece CID of a commitment.
    function pieceCidOf(bytes32 commP) internal pure returns (bytes memory) {
        return abi.encodePacked(PIECE_CID_PREFIX, commP);
    }

    /// @notice `x` with its 8 bytes in reverse order (a little-endian uint64 read big-endian).
    function le64(uint64 x) internal pure returns (uint64) {
        x = ((x & 0xFF00FF00FF00FF00) >> 8) | ((x & 0x00FF00FF00FF00FF) << 8);
        x = ((x & 0xFFFF0000FFFF0000) >> 16) | ((x & 0x0000FFFF0000FFFF) << 16);
        return (x >> 32) | (x << 32);
    }
}
