// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {PoDSI} from "../src/lib/PoDSI.sol";
import {PieceTree} from "./utils/PieceTree.sol";
import {PoDSIFixture} from "./utils/PoDSIFixture.sol";

/// Calls the library from outside, as a contract using it would (calldata decoded to memory).
contract PoDSIHarness {
    function computeExpectedAuxData(
        PoDSI.InclusionProof calldata proof,
        PoDSI.InclusionVerifierData calldata data
    ) external view returns (PoDSI.Failure, PoDSI.InclusionAuxData memory) {
        return PoDSI.computeExpectedAuxData(proof, data);
    }

    function verify(
        PoDSI.InclusionProof calldata proof,
        PoDSI.InclusionVerifierData calldata data,
        PoDSI.InclusionAuxData calldata expected
    ) external view returns (PoDSI.Failure) {
        return PoDSI.verify(proof, data, expected);
    }

    function check(
        PoDSI.InclusionProof calldata proof,
        PoDSI.InclusionVerifierData calldata data,
        PoDSI.InclusionAuxData calldata expected
    ) external view {
        PoDSI.check(proof, data, expected);
    }
}

/// FRC-0058 proofs: every proof `crates/piece` writes (go-data-segment's published aggregates
/// among them) verifies, go-data-segment's golden proof verifies, and anything tampered with is
/// refused with go-data-segment's reason.
contract PoDSITest is PoDSIFixture {
    PoDSIHarness internal harness;

    function setUp() public {
        harness = new PoDSIHarness();
        loadFixture();
    }

    function failureOf(PoDSI.InclusionProof memory p, PoDSI.InclusionVerifierData memory d, Case storage c)
        internal
        view
        returns (PoDSI.Failure)
    {
        return harness.verify(p, d, auxOf(c));
    }

    // ------------------------------------------------------------------ the fixture

    /// Every proof of the fixture leads to its aggregate, at its offset.
    function test_Fixture_EveryProofVerifies() public view {
        assertGe(cases.length, 20, "the fixture's pieces");
        for (uint256 i; i < cases.length; ++i) {
            Case storage c = cases[i];
            (PoDSI.Failure failure, PoDSI.InclusionAuxData memory aux) =
                harness.computeExpectedAuxData(proofOf(c), dataOf(c));
            assertEq(uint8(failure), uint8(PoDSI.Failure.None), c.name);
            assertEq(aux.commPa, c.commPa, c.name);
            assertEq(aux.sizePa, c.sizePa, c.name);
            assertEq(PoDSI.offsetOf(proofOf(c), c.sizePc), c.offset, c.name);
            harness.check(proofOf(c), dataOf(c), auxOf(c));
        }
    }

    /// go-data-segment's `InclusionGolden1`, read from the vector file as its Go literals give
    /// it (piece CIDs and all): `ComputeExpectedAuxData` must give the published aggregate.
    function test_GoDataSegmentGolden1() public view {
        string memory json = vm.readFile(
            string.concat(vm.projectRoot(), "/../crates/piece/tests/vectors/go-data-segment-golden1.json")
        );
        (bool okC, bytes32 commPc) = PoDSI.commPOf(vm.parseJsonBytes(json, ".commPc"));
        (bool okA, bytes32 commPa) = PoDSI.commPOf(vm.parseJsonBytes(json, ".commPa"));
        assertTrue(okC && okA, "v1 piece CIDs");
        PoDSI.InclusionProof memory p;
        p.proofSubtree.index = uint64(vm.parseJsonUint(json, ".subtree.index"));
        p.proofSubtree.path = vm.parseJsonBytes32Array(json, ".subtree.path");
        p.proofIndex.index = uint64(vm.parseJsonUint(json, ".index.index"));
        p.proofIndex.path = vm.parseJsonBytes32Array(json, ".index.path");
        PoDSI.InclusionVerifierData memory d =
            PoDSI.InclusionVerifierData(commPc, uint64(vm.parseJsonUint(json, ".sizePc")));
        (PoDSI.Failure failure, PoDSI.InclusionAuxData memory aux) = harness.computeExpectedAuxData(p, d);
        assertEq(uint8(failure), uint8(PoDSI.Failure.None));
        assertEq(aux.commPa, commPa);
        assertEq(aux.sizePa, vm.parseJsonUint(json, ".sizePa"));
        assertEq(PoDSI.pieceCidOf(aux.commPa), vm.parseJsonBytes(json, ".commPa"));
    }

    /// Goal: the deepest proofs of a 64 GiB deal (a 128-byte piece: 29 subtree nodes, 30
    /// index nodes) verify in at most 60,000 gas.
    function test_Gas_VerifyDeepest64GiB() public {
        Case storage c = cases[deepest];
        assertEq(c.sizePa, 64 << 30);
        assertEq(c.subtreePath.length + c.indexPath.length, 59);
        PoDSI.InclusionProof memory p = proofOf(c);
        PoDSI.InclusionVerifierData memory d = dataOf(c);
        PoDSI.InclusionAuxData memory aux = auxOf(c);
        harness.verify(p, d, aux);
        uint256 used = vm.snapshotGasLastCall("PoDSI", "verify: deepest 64 GiB proof (29 + 30 nodes)");
        emit log_named_uint("PoDSI.verify gas, deepest 64 GiB proof", used);
        assertLe(used, 60_000);
    }

    // ------------------------------------------------------------------ tampering (fuzz + twins)

    /// Any bit flipped in any node of either path: refused.
    function testFuzz_TamperedPathIsRefused(uint256 which, uint256 node, uint8 bit) public view {
        Case storage c = cases[which % cases.length];
        PoDSI.InclusionProof memory p = proofOf(c);
        flip(p, node, bit);
        assertTrue(failureOf(p, dataOf(c), c) != PoDSI.Failure.None);
    }

    function test_TamperedPathIsRefused_Concrete() public view {
        // The first subtree node, the last index node, and a truncation bit (top of the last byte).
        testFuzz_TamperedPathIsRefused(0, 0, 0);
        testFuzz_TamperedPathIsRefused(deepest, 58, 7);
        testFuzz_TamperedPathIsRefused(3, 2, 255);
    }

    /// Any other position of the segment (the offset): refused.
    function testFuzz_WrongOffsetIsRefused(uint256 which, uint64 index) public view {
        Case storage c = cases[which % cases.length];
        vm.assume(index != c.subtreeIndex);
        PoDSI.InclusionProof memory p = proofOf(c);
        p.proofSubtree.index = index;
        PoDSI.Failure f = failureOf(p, dataOf(c), c);
        assertTrue(f == PoDSI.Failure.SubtreeIndexOutOfRange || f == PoDSI.Failure.CommitmentsDiffer);
    }

    function test_WrongOffsetIsRefused_Concrete() public view {
        Case storage c = cases[1];
        PoDSI.InclusionProof memory p = proofOf(c);
        p.proofSubtree.index ^= 1;
        assertEq(uint8(failureOf(p, dataOf(c), c)), uint8(PoDSI.Failure.CommitmentsDiffer));
        p.proofSubtree.index = uint64(1) << p.proofSubtree.path.length;
        assertEq(uint8(failureOf(p, dataOf(c), c)), uint8(PoDSI.Failure.SubtreeIndexOutOfRange));
        testFuzz_WrongOffsetIsRefused(deepest, 1);
    }

    /// Any other size claimed for the piece: refused.
    function testFuzz_WrongSizeIsRefused(uint256 which, uint64 size) public view {
        Case storage c = cases[which % cases.length];
        vm.assume(size != c.sizePc);
        PoDSI.InclusionVerifierData memory d = dataOf(c);
        d.sizePc = size;
        assertTrue(failureOf(proofOf(c), d, c) != PoDSI.Failure.None);
    }

    function test_WrongSizeIsRefused_Concrete() public view {
        Case storage c = cases[0];
        PoDSI.InclusionVerifierData memory d = dataOf(c);
        d.sizePc = c.sizePc * 2;
        assertEq(uint8(failureOf(proofOf(c), d, c)), uint8(PoDSI.Failure.CommitmentsDiffer));
        d.sizePc = c.sizePc + 1;
        assertEq(uint8(failureOf(proofOf(c), d, c)), uint8(PoDSI.Failure.SizeNotPowerOfTwo));
        d.sizePc = 0;
        assertTrue(failureOf(proofOf(c), d, c) != PoDSI.Failure.None);
        d.sizePc = uint64(1) << 63;
        assertEq(uint8(failureOf(proofOf(c), d, c)), uint8(PoDSI.Failure.AggregateSizeOverflow));
    }

    /// Any other index entry position: refused.
    function testFuzz_WrongIndexEntryIsRefused(uint256 which, uint64 index) public view {
        Case storage c = cases[which % cases.length];
        vm.assume(index != c.indexIndex);
        PoDSI.InclusionProof memory p = proofOf(c);
        p.proofIndex.index = index;
        assertTrue(failureOf(p, dataOf(c), c) != PoDSI.Failure.None);
    }

    function test_WrongIndexEntryIsRefused_Concrete() public view {
        Case storage c = cases[2];
        PoDSI.InclusionProof memory p = proofOf(c);
        p.proofIndex.index += 1;
        assertEq(uint8(failureOf(p, dataOf(c), c)), uint8(PoDSI.Failure.CommitmentsDiffer));
        p.proofIndex.index = uint64(1) << p.proofIndex.path.length;
        assertEq(uint8(failureOf(p, dataOf(c), c)), uint8(PoDSI.Failure.IndexIndexOutOfRange));
        testFuzz_WrongIndexEntryIsRefused(deepest + 1, 0);
    }

    /// Another piece's commitment, or another aggregate expected: refused.
    function testFuzz_WrongPieceOrAggregateIsRefused(uint256 which, bytes32 other, bool aggregate)
        public
        view
    {
        Case storage c = cases[which % cases.length];
        if (aggregate) {
            vm.assume(other != c.commPa);
            PoDSI.InclusionAuxData memory aux = auxOf(c);
            aux.commPa = other;
            assertEq(
                uint8(harness.verify(proofOf(c), dataOf(c), aux)), uint8(PoDSI.Failure.AggregateMismatch)
            );
        } else {
            vm.assume(other != c.commPc);
            PoDSI.InclusionVerifierData memory d = dataOf(c);
            d.commPc = other;
            assertEq(uint8(failureOf(proofOf(c), d, c)), uint8(PoDSI.Failure.CommitmentsDiffer));
        }
    }

    function test_WrongPieceOrAggregateIsRefused_Concrete() public {
        testFuzz_WrongPieceOrAggregateIsRefused(4, bytes32(0), true);
        testFuzz_WrongPieceOrAggregateIsRefused(4, bytes32(0), false);
        Case storage c = cases[4];
        PoDSI.InclusionAuxData memory aux = auxOf(c);
        aux.sizePa *= 2;
        assertEq(uint8(harness.verify(proofOf(c), dataOf(c), aux)), uint8(PoDSI.Failure.AggregateMismatch));
        vm.expectRevert(
            abi.encodeWithSelector(PoDSI.PoDSIInvalidProof.selector, PoDSI.Failure.AggregateMismatch)
        );
        harness.check(proofOf(c), dataOf(c), aux);
    }

    // ------------------------------------------------------------------ built aggregates

    /// Aggregates built here in full (any sizes that fit, any entry written wrong): a piece's
    /// proof holds exactly when its index entry is right, whatever is wrong with it: the
    /// checksum, the offset, the size or the commitment. (Each run hashes a whole 8 KiB tree
    /// twice: fewer runs.)
    /// forge-config: default.fuzz.runs = 2000
    function testFuzz_BuiltAggregates_RightEntriesOnly(
        uint8[3] memory heights,
        uint8[3] memory wrong,
        uint256 seed
    ) public view {
        PieceTree.Piece[] memory pieces = new PieceTree.Piece[](3);
        PieceTree.Corruption[] memory corruption = new PieceTree.Corruption[](3);
        for (uint256 k; k < 3; ++k) {
            pieces[k] = PieceTree.Piece(2 + heights[k] % 4, uint256(keccak256(abi.encode(seed, k))));
            corruption[k] = PieceTree.Corruption(wrong[k] % 5);
        }
        // 8 KiB: 256 leaves, 4 entries (the last 256 bytes); three pieces of at most 1 KiB fit.
        PieceTree.Aggregate memory a = PieceTree.build(8, pieces, corruption);
        PoDSI.InclusionAuxData memory aux = PoDSI.InclusionAuxData(PieceTree.root(a), a.dealSize);
        for (uint256 k; k < 3; ++k) {
            PoDSI.InclusionProof memory p = PieceTree.inclusion(a, k);
            PoDSI.InclusionVerifierData memory d = PoDSI.InclusionVerifierData(a.commPs[k], a.sizes[k]);
            PoDSI.Failure f = harness.verify(p, d, aux);
            if (corruption[k] == PieceTree.Corruption.None) {
                assertEq(uint8(f), uint8(PoDSI.Failure.None));
                assertEq(PoDSI.offsetOf(p, a.sizes[k]), a.offsets[k]);
            } else {
                assertEq(uint8(f), uint8(PoDSI.Failure.CommitmentsDiffer));
            }
        }
    }

    function test_BuiltAggregates_RightEntriesOnly_Concrete() public view {
        // Right; a wrong checksum; a wrong offset. Then a wrong size and a wrong commitment.
        testFuzz_BuiltAggregates_RightEntriesOnly([uint8(0), 1, 2], [uint8(0), 1, 2], 7);
        testFuzz_BuiltAggregates_RightEntriesOnly([uint8(3), 3, 0], [uint8(3), 4, 0], 8);
    }

    /// An entry outside the index area (a "proof" of an entry placed among the data): refused,
    /// even though both halves lead to the same root.
    function test_EntryOutsideTheIndexAreaIsRefused() public view {
        // A 4 KiB deal whose first piece is itself a valid-looking index entry at leaves 0-1.
        PieceTree.Piece[] memory none = new PieceTree.Piece[](0);
        PieceTree.Aggregate memory empty = PieceTree.build(7, none, new PieceTree.Corruption[](0));
        bytes32[] memory leaves = empty.levels[0];
        // A 128-byte piece at offset 1024 (leaves 32-35), its entry written at leaves 0-1.
        leaves[32] = bytes32(uint256(1));
        leaves[33] = bytes32(uint256(2));
        leaves[34] = bytes32(uint256(3));
        leaves[35] = bytes32(uint256(4));
        bytes32 commPc = PoDSI.node(PoDSI.node(leaves[32], leaves[33]), PoDSI.node(leaves[34], leaves[35]));
        leaves[0] = commPc;
        leaves[1] = PoDSI.entryTail(commPc, 1024, 128);
        bytes32[][] memory levels = PieceTree.levelsOf(leaves);
        PoDSI.InclusionProof memory p;
        p.proofSubtree = PieceTree.proofOf(levels, 2, 8);
        p.proofIndex = PieceTree.proofOf(levels, 1, 0);
        (PoDSI.Failure f,) = harness.computeExpectedAuxData(p, PoDSI.InclusionVerifierData(commPc, 128));
        assertEq(uint8(f), uint8(PoDSI.Failure.EntryOutsideIndexArea));
    }

    /// Proofs deeper than 63 levels are refused (a 64 GiB deal's are at most 31 deep).
    function test_TooDeepIsRefused() public view {
        PoDSI.InclusionProof memory p;
        p.proofSubtree.path = new bytes32[](64);
        (PoDSI.Failure f,) = harness.computeExpectedAuxData(p, PoDSI.InclusionVerifierData(0, 128));
        assertEq(uint8(f), uint8(PoDSI.Failure.SubtreeTooDeep));
        p.proofSubtree.path = new bytes32[](1);
        p.proofIndex.path = new bytes32[](64);
        (f,) = harness.computeExpectedAuxData(p, PoDSI.InclusionVerifierData(0, 128));
        assertEq(uint8(f), uint8(PoDSI.Failure.IndexTooDeep));
    }

    /// The index area of go-data-segment's `MaxIndexEntriesInDeal` (as `crates/piece` has it).
    function test_IndexArea() public pure {
        assertEq(PoDSI.maxIndexEntries(128), 4);
        assertEq(PoDSI.maxIndexEntries(4096), 4);
        assertEq(PoDSI.maxIndexEntries(1 << 20), 8);
        assertEq(PoDSI.maxIndexEntries(32 << 30), 1 << 18);
        assertEq(PoDSI.maxIndexEntries(64 << 30), 1 << 19);
        (bool fits, uint256 start) = PoDSI.indexAreaStart(1 << 20);
        assertTrue(fits);
        assertEq(start, (1 << 20) - 8 * 64);
        (fits,) = PoDSI.indexAreaStart(128);
        assertFalse(fits);
        (fits, start) = PoDSI.indexAreaStart(256);
        assertTrue(fits);
        assertEq(start, 0);
    }

    function test_PieceCidConversions() public pure {
        bytes memory cid = hex"0181e2039220201111111111111111111111111111111111111111111111111111111111111111";
        (bool ok, bytes32 commP) = PoDSI.commPOf(cid);
        assertTrue(ok);
        assertEq(commP, bytes32(0x1111111111111111111111111111111111111111111111111111111111111111));
        assertEq(PoDSI.pieceCidOf(commP), cid);
        (ok,) = PoDSI.commPOf(hex"01551220c7d01489080858c500065836c658f847a6ca67c4864619212be4f8200e4bbace");
        assertFalse(ok);
        assertEq(PoDSI.le64(0x0102030405060708), 0x0807060504030201);
    }
}
