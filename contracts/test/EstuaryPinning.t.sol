// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {EstuaryPinning} from "../src/EstuaryPinning.sol";
import {CidLib} from "../src/lib/CidLib.sol";
import {Test} from "forge-std/Test.sol";

contract EstuaryPinningTest is Test {
    EstuaryPinning internal pinning;

    address internal constant ALICE = address(0xA11CE);
    address internal constant BOB = address(0xB0B);

    // bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy (raw, sha2-256)
    bytes internal constant CID_V1_RAW =
        hex"01551220c7d01489080858c500065836c658f847a6ca67c4864619212be4f8200e4bbace";
    // A CIDv0: sha2-256 multihash of "hello world".
    bytes internal constant CID_V0 =
        hex"1220b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9";

    function setUp() public {
        pinning = new EstuaryPinning(address(this), 1 days);
    }

    // ---------------------------------------------------------------- helpers

    function varint(uint256 value) internal pure returns (bytes memory out) {
        out = new bytes(0);
        do {
            uint8 b = uint8(value & 0x7f);
            value >>= 7;
            if (value != 0) b |= 0x80;
            out = bytes.concat(out, bytes1(b));
        } while (value != 0);
    }

    function cidV1(uint256 codec, uint256 hashCode, bytes memory digest)
        internal
        pure
        returns (bytes memory)
    {
        return bytes.concat(varint(1), varint(codec), varint(hashCode), varint(digest.length), digest);
    }

    function expectInvalid(CidLib.CidError reason) internal {
        vm.expectRevert(abi.encodeWithSelector(EstuaryPinning.EstuaryPinningInvalidCid.selector, reason));
    }

    // ---------------------------------------------------------------- accepted

    function test_PinCidV1_EmitsAndRecords() public {
        vm.expectEmit(true, true, false, true, address(pinning));
        emit EstuaryPinning.PinRequested(1, ALICE, CID_V1_RAW);
        vm.prank(ALICE);
        uint256 id = pinning.pinToEstuary(CID_V1_RAW);
        assertEq(id, 1);
        assertEq(pinning.requestCount(), 1);
        assertEq(pinning.requesterOf(1), ALICE);
    }

    function test_PinCidV0() public {
        vm.expectEmit(true, true, false, true, address(pinning));
        emit EstuaryPinning.PinRequested(1, BOB, CID_V0);
        vm.prank(BOB);
        assertEq(pinning.pinToEstuary(CID_V0), 1);
    }

    function test_RequestIdsIncreaseFromOne() public {
        vm.prank(ALICE);
        assertEq(pinning.pinToEstuary(CID_V1_RAW), 1);
        vm.prank(BOB);
        assertEq(pinning.pinToEstuary(CID_V0), 2);
        vm.prank(ALICE);
        assertEq(pinning.pinToEstuary(CID_V1_RAW), 3);
        assertEq(pinning.requesterOf(2), BOB);
        assertEq(pinning.requestCount(), 3);
    }

    function test_AcceptsMultiByteVarints() public {
        // dag-json (0x0129) with blake2b-256 (0xb220): both two- or three-byte varints.
        bytes memory cid = cidV1(0x0129, 0xb220, new bytes(32));
        assertEq(pinning.pinToEstuary(cid), 1);
    }

    function test_AcceptsMaximumDigest() public {
        assertEq(pinning.pinToEstuary(cidV1(0x71, 0x13, new bytes(64))), 1);
    }

    uint256[9] internal codecs = [uint256(0x55), 0x70, 0x71, 0x0129, 0x85, 0x72, 0x0200, 0x51, 0x0202];

    /// Any well-formed CIDv1 with a known codec and an identity or blake3 digest of any length
    /// is accepted and echoed in the event.
    function testFuzz_AcceptsWellFormedCidV1(uint8 codecIndex, bool blake3, bytes memory digest, address who)
        public
    {
        vm.assume(digest.length >= 1 && digest.length <= CidLib.MAX_DIGEST_LENGTH);
        vm.assume(who != address(0));
        bytes memory cid = cidV1(codecs[codecIndex % codecs.length], blake3 ? 0x1e : 0x00, digest);
        vm.assume(cid.length <= CidLib.MAX_CID_LENGTH);
        vm.expectEmit(true, true, false, true, address(pinning));
        emit EstuaryPinning.PinRequested(1, who, cid);
        vm.prank(who);
        assertEq(pinning.pinToEstuary(cid), 1);
    }

    /// Concrete twin of `testFuzz_AcceptsWellFormedCidV1`: car (two-byte codec), blake3, one byte.
    function test_AcceptsWellFormedCidV1_Concrete() public {
        testFuzz_AcceptsWellFormedCidV1(8, true, hex"ff", address(0xCAFE));
    }

    function test_RevertWhen_UnknownCodec() public {
        expectInvalid(CidLib.CidError.UnknownCodec);
        pinning.pinToEstuary(cidV1(0x99, 0x12, new bytes(32)));
    }

    function test_RevertWhen_DigestLengthWrongForHash() public {
        expectInvalid(CidLib.CidError.BadHash);
        pinning.pinToEstuary(cidV1(0x55, 0x12, new bytes(20)));
    }

    function test_RevertWhen_UnknownHash() public {
        expectInvalid(CidLib.CidError.BadHash);
        pinning.pinToEstuary(cidV1(0x55, 0x4242, new bytes(32)));
    }

    // ---------------------------------------------------------------- rejected

    function test_RevertWhen_Empty() public {
        expectInvalid(CidLib.CidError.Empty);
        pinning.pinToEstuary("");
    }

    function test_RevertWhen_TooLong() public {
        expectInvalid(CidLib.CidError.TooLong);
        pinning.pinToEstuary(new bytes(129));
    }

    function test_RevertWhen_VersionIsNotOne() public {
        expectInvalid(CidLib.CidError.UnsupportedVersion);
        pinning.pinToEstuary(hex"02551220c7d01489080858c500065836c658f847a6ca67c4864619212be4f8200e4bbace");
    }

    function test_RevertWhen_CidV0HasWrongLength() public {
        // 0x12 0x20 prefix but one byte short: read as a CIDv1 with version 18.
        expectInvalid(CidLib.CidError.UnsupportedVersion);
        pinning.pinToEstuary(hex"1220b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcd");
    }

    function test_RevertWhen_DigestTruncated() public {
        expectInvalid(CidLib.CidError.LengthMismatch);
        pinning.pinToEstuary(hex"01551220c7d01489080858c500065836c658f847a6ca67c4864619212be4f8200e4bba");
    }

    function test_RevertWhen_TrailingBytes() public {
        expectInvalid(CidLib.CidError.LengthMismatch);
        pinning.pinToEstuary(bytes.concat(CID_V1_RAW, hex"00"));
    }

    function test_RevertWhen_VarintTruncated() public {
        expectInvalid(CidLib.CidError.MalformedVarint);
        pinning.pinToEstuary(hex"0180");
    }

    function test_RevertWhen_VarintNotMinimal() public {
        // version 1 written as 0x81 0x00.
        expectInvalid(CidLib.CidError.MalformedVarint);
        pinning.pinToEstuary(hex"8100551220c7d01489080858c500065836c658f847a6ca67c4864619212be4f8200e4bbace");
    }

    function test_RevertWhen_VarintTooLong() public {
        expectInvalid(CidLib.CidError.MalformedVarint);
        pinning.pinToEstuary(hex"01ffffffffffffffffff01");
    }

    function test_RevertWhen_DigestEmpty() public {
        expectInvalid(CidLib.CidError.BadDigestLength);
        pinning.pinToEstuary(hex"01551200");
    }

    function test_RevertWhen_DigestTooLong() public {
        expectInvalid(CidLib.CidError.BadDigestLength);
        pinning.pinToEstuary(cidV1(0x55, 0x12, new bytes(65)));
    }

    /// Cutting a valid CID anywhere short of its end never yields an accepted request.
    function testFuzz_RevertWhen_Truncated(bytes32 digest, uint8 cut) public {
        bytes memory cid = cidV1(0x70, 0x12, abi.encodePacked(digest));
        uint256 keep = bound(cut, 1, cid.length - 1);
        bytes memory short = new bytes(keep);
        for (uint256 i; i < keep; ++i) {
            short[i] = cid[i];
        }
        vm.expectPartialRevert(EstuaryPinning.EstuaryPinningInvalidCid.selector);
        pinning.pinToEstuary(short);
        assertEq(pinning.requestCount(), 0);
    }

    /// Concrete twin of `testFuzz_RevertWhen_Truncated`: cut right after the version.
    function test_RevertWhen_Truncated_Concrete() public {
        testFuzz_RevertWhen_Truncated(keccak256("estuary"), 1);
    }

    /// Arbitrary bytes either revert with `EstuaryPinningInvalidCid` or are a CID the reference
    /// decoder in this test accepts.
    function testFuzz_ArbitraryBytesMatchReference(bytes calldata data) public {
        bool valid = referenceIsCid(data);
        if (!valid) vm.expectPartialRevert(EstuaryPinning.EstuaryPinningInvalidCid.selector);
        pinning.pinToEstuary(data);
        assertEq(pinning.requestCount(), valid ? 1 : 0);
    }

    /// Concrete twin of `testFuzz_ArbitraryBytesMatchReference`.
    function test_ArbitraryBytesMatchReference_Concrete() public {
        this.testFuzz_ArbitraryBytesMatchReference(hex"0171a0e40220");
    }

    /// An independent, deliberately plain decoder to compare `CidLib` against.
    function referenceIsCid(bytes memory data) internal view returns (bool) {
        if (data.length == 0 || data.length > 128) return false;
        if (data.length == 34 && data[0] == 0x12 && data[1] == 0x20) return true;
        uint256[4] memory values;
        uint256 pos;
        for (uint256 v; v < 4; ++v) {
            uint256 value;
            uint256 count;
            while (true) {
                if (pos >= data.length || count == 9) return false;
                uint8 b = uint8(data[pos++]);
                value += uint256(b & 0x7f) * (2 ** (7 * count));
                count++;
                if (b < 0x80) {
                    if (b == 0 && count > 1) return false;
                    break;
                }
            }
            values[v] = value;
        }
        if (values[0] != 1 || values[3] < 1 || values[3] > 64 || data.length - pos != values[3]) {
            return false;
        }
        bool codecKnown;
        for (uint256 k; k < codecs.length; ++k) {
            if (values[1] == codecs[k]) codecKnown = true;
        }
        if (!codecKnown) return false;
        uint256 h = values[2];
        uint256 n = values[3];
        if (h == 0x00 || h == 0x1e) return true;
        if (h == 0x11) return n == 20;
        if (h == 0x15) return n == 48;
        if (h == 0x13 || h == 0x14 || h == 0x1d || h == 0xb240) return n == 64;
        return (h == 0x12 || h == 0x16 || h == 0x1b || h == 0xb220 || h == 0xb260 || h == 0x1012) && n == 32;
    }
}
