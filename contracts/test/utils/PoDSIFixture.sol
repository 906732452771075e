// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {PoDSI} from "../../src/lib/PoDSI.sol";
import {Test} from "forge-std/Test.sol";

/// The FRC-0058 proofs `crates/piece` writes to `test/fixtures/podsi.json`
/// (`tests/podsi_fixture.rs`): aggregates (go-data-segment's published ones among them) and the
/// proof of every piece in them, loaded into storage once per test contract.
abstract contract PoDSIFixture is Test {
    /// One piece of one aggregate of the fixture.
    struct Case {
        string name;
        bytes32 commPa;
        uint64 sizePa;
        bytes32 commPc;
        uint64 sizePc;
        uint64 offset;
        uint64 subtreeIndex;
        bytes32[] subtreePath;
        uint64 indexIndex;
        bytes32[] indexPath;
    }

    Case[] internal cases;
    /// Index in `cases` of the first piece of the deepest aggregate (32 pieces of 128 bytes in
    /// 64 GiB: the longest proofs a deal can have).
    uint256 internal deepest;

    function loadFixture() internal {
        string memory json = vm.readFile(string.concat(vm.projectRoot(), "/test/fixtures/podsi.json"));
        uint256 aggregates = vm.parseJsonUint(json, ".count");
        for (uint256 a; a < aggregates; ++a) {
            string memory agg = string.concat(".aggregates[", vm.toString(a), "]");
            string memory name = vm.parseJsonString(json, string.concat(agg, ".name"));
            if (bytes(name)[0] == "d") deepest = cases.length;
            bytes32 commPa = vm.parseJsonBytes32(json, string.concat(agg, ".commPa"));
            uint64 sizePa = uint64(vm.parseJsonUint(json, string.concat(agg, ".sizePa")));
            uint256 pieces = vm.parseJsonUint(json, string.concat(agg, ".count"));
            for (uint256 k; k < pieces; ++k) {
                string memory p = string.concat(agg, ".pieces[", vm.toString(k), "]");
                Case storage c = cases.push();
                c.name = name;
                c.commPa = commPa;
                c.sizePa = sizePa;
                c.commPc = vm.parseJsonBytes32(json, string.concat(p, ".commPc"));
                c.sizePc = uint64(vm.parseJsonUint(json, string.concat(p, ".sizePc")));
                c.offset = uint64(vm.parseJsonUint(json, string.concat(p, ".offset")));
                c.subtreeIndex = uint64(vm.parseJsonUint(json, string.concat(p, ".subtreeIndex")));
                c.subtreePath = vm.parseJsonBytes32Array(json, string.concat(p, ".subtreePath"));
                c.indexIndex = uint64(vm.parseJsonUint(json, string.concat(p, ".indexIndex")));
                c.indexPath = vm.parseJsonBytes32Array(json, string.concat(p, ".indexPath"));
            }
        }
    }

    function proofOf(Case storage c) internal view returns (PoDSI.InclusionProof memory p) {
        p.proofSubtree = PoDSI.ProofData(c.subtreeIndex, c.subtreePath);
        p.proofIndex = PoDSI.ProofData(c.indexIndex, c.indexPath);
    }

    /// Index in `cases` of the first piece of the first aggregate whose name starts with
    /// `initial` ("e": the "estuary payloads" aggregate, five real pieces in 8 MiB).
    function firstOf(bytes1 initial) internal view returns (uint256) {
        for (uint256 i; i < cases.length; ++i) {
            if (bytes(cases[i].name)[0] == initial) return i;
        }
        revert("no such aggregate in the fixture");
    }

    function dataOf(Case storage c) internal view returns (PoDSI.InclusionVerifierData memory) {
        return PoDSI.InclusionVerifierData(c.commPc, c.sizePc);
    }

    function auxOf(Case storage c) internal view returns (PoDSI.InclusionAuxData memory) {
        return PoDSI.InclusionAuxData(c.commPa, c.sizePa);
    }

    /// Flips bit `bit` of node `node` (any of the two paths, subtree first; taken modulo their
    /// length) of a proof, in place.
    function flip(PoDSI.InclusionProof memory p, uint256 node, uint8 bit) internal pure {
        uint256 n = p.proofSubtree.path.length;
        node %= n + p.proofIndex.path.length;
        bytes32 mask = bytes32(uint256(1) << bit);
        if (node < n) p.proofSubtree.path[node] ^= mask;
        else p.proofIndex.path[node - n] ^= mask;
    }
}
