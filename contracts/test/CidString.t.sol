// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {CidLib} from "../src/lib/CidLib.sol";
import {CidString} from "../src/lib/CidString.sol";
import {Test} from "forge-std/Test.sol";

contract CidStringHarness {
    function toText(bytes memory cid) external pure returns (bytes memory) {
        return CidString.toText(cid);
    }

    function parse(bytes memory text) external pure returns (bool, bytes memory) {
        return CidString.parse(text);
    }

    function isCidText(bytes memory text) external pure returns (bool) {
        return CidString.isCidText(text);
    }
}

/// The text of a CID as a deal label carries it (what Boost's `cid.Parse` reads).
contract CidStringTest is Test {
    CidStringHarness internal h;
    bytes internal constant V1 =
        hex"01551220c7d01489080858c500065836c658f847a6ca67c4864619212be4f8200e4bbace";
    bytes internal constant V0 = hex"1220b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9";

    function setUp() public {
        h = new CidStringHarness();
    }

    /// Vectors printed by go-cid / multiformats: base32 lower for v1, base58btc for v0.
    function test_ToTextAndParse_KnownCids() public view {
        assertEq(h.toText(V1), "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy");
        assertEq(h.toText(V0), "QmaozNR7DZHQK1ZcU9p7QdrshMvXqWK6gpu5rmrkPdT3L4");
        (bool ok, bytes memory cid) = h.parse("bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy");
        assertTrue(ok);
        assertEq(cid, V1);
        (ok, cid) = h.parse("QmaozNR7DZHQK1ZcU9p7QdrshMvXqWK6gpu5rmrkPdT3L4");
        assertTrue(ok);
        assertEq(cid, V0);
    }

    function test_IsCidText_RefusesOtherText() public view {
        assertFalse(h.isCidText(""));
        assertFalse(h.isCidText("b"));
        assertFalse(h.isCidText("hello"));
        assertFalse(h.isCidText("BAFKREIGH2AKISCAILDCQABSYG3DFR6CHU3FGPREGIYMSCK7E7AQA4S52ZY"), "upper case");
        assertFalse(h.isCidText("bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52z"), "truncated");
        assertFalse(h.isCidText("QmaozNR7DZHQK1ZcU9p7QdrshMvXqWK6gpu5rmrkPdT3L0"), "0 is not base58");
        assertFalse(h.isCidText("bafkqaaa"), "an identity CID of nothing: CidLib refuses empty digests");
    }

    /// Any well-formed CIDv1: its text parses back to it and is accepted.
    function testFuzz_TextRoundTrips(bytes32 digest, uint8 codecIndex) public view {
        uint16[4] memory codecs = [uint16(0x55), 0x70, 0x71, 0x0129];
        uint16 codec = codecs[codecIndex % 4];
        bytes memory c = codec < 0x80
            ? abi.encodePacked(bytes1(0x01), uint8(codec), hex"1220", digest)
            : abi.encodePacked(bytes1(0x01), hex"a902", hex"1220", digest);
        assertEq(uint8(CidLib.checkMemory(c)), uint8(CidLib.CidError.None));
        bytes memory text = h.toText(c);
        (bool ok, bytes memory back) = h.parse(text);
        assertTrue(ok);
        assertEq(back, c);
        assertTrue(h.isCidText(text));
    }

    /// Concrete twin: a dag-json CID (two-byte codec varint).
    function test_TextRoundTrips_Concrete() public view {
        testFuzz_TextRoundTrips(bytes32(uint256(0xabcdef)), 3);
    }
}
