// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {Cbor} from "../src/lib/Cbor.sol";
import {DealProposal} from "../src/lib/DealProposal.sol";
import {FilAddress} from "../src/lib/FilAddress.sol";
import {MarketActor} from "../src/lib/MarketActor.sol";
import {FilecoinTest} from "./utils/FilecoinTest.sol";

/// Exposes the libraries to external calls so reverts can be asserted.
contract MarketActorHarness {
    function getDeal(uint64 dealId) external returns (MarketActor.Status, MarketActor.Deal memory) {
        return MarketActor.getDeal(dealId);
    }

    function getDealClient(uint64 dealId) external returns (MarketActor.Status, uint64) {
        return MarketActor.getDealClient(dealId);
    }

    function getDealSector(uint64 dealId) external returns (MarketActor.Status, uint64) {
        return MarketActor.getDealSector(dealId);
    }

    function getDealLabel(uint64 dealId) external returns (MarketActor.Status, bytes memory, bool) {
        return MarketActor.getDealLabel(dealId);
    }

    function getDealAmounts(uint64 dealId) external returns (uint256 price, uint256 pc, uint256 cc) {
        (, price) = MarketActor.getDealTotalPrice(dealId);
        (, pc) = MarketActor.getDealProviderCollateral(dealId);
        (, cc) = MarketActor.getDealClientCollateral(dealId);
    }

    function readCid(bytes memory b) external pure returns (bytes memory cid) {
        (cid,) = Cbor.readCid(b, 0);
    }

    function skip(bytes memory b) external pure returns (uint256) {
        return Cbor.skip(b, 0);
    }

    function readInt(bytes memory b) external pure returns (int64 v) {
        (v,) = Cbor.readInt(b, 0);
    }
}

contract MarketActorTest is FilecoinTest {
    MarketActorHarness internal h;
    address internal constant SP = address(0x5B);

    function setUp() public {
        installMarket();
        useDevPolicy();
        h = new MarketActorHarness();
        vm.roll(5000);
        createMiner(1001, SP);
    }

    function test_GetDeal_ReadsEveryField() public {
        market.setDataCap(address(acceptingClient), PIECE_SIZE);
        // A verified deal lasts at least 180 days (the verified registry's shortest allocation).
        DealProposal.Fields memory f = proposal(address(acceptingClient), 1001, PIECE, 5001, 5001 + 518_400);
        f.verified = true;
        f.clientCollateral = 0;
        uint64 id = publishOne(SP, codec.encodeProposal(f));
        activateDeal(1001, SP, id, 9);
        (MarketActor.Status status, MarketActor.Deal memory d) = h.getDeal(id);
        assertEq(uint8(status), uint8(MarketActor.Status.Ok));
        assertEq(d.pieceCid, PIECE);
        assertEq(d.pieceSize, PIECE_SIZE);
        assertEq(d.provider, 1001);
        assertEq(d.start, 5001);
        assertEq(d.duration, 518_400);
        assertEq(d.activated, 5000);
        assertEq(d.terminated, -1);
        assertTrue(d.verified);
        (, uint64 client) = h.getDealClient(id);
        assertEq(client, market.actorIdOf(address(acceptingClient)));
        (, uint64 sector) = h.getDealSector(id);
        assertEq(sector, 9);
        (, bytes memory label, bool isText) = h.getDealLabel(id);
        assertEq(label, bytes(PAYLOAD_TEXT));
        assertTrue(isText);
        (uint256 price, uint256 pc, uint256 cc) = h.getDealAmounts(id);
        assertEq(price, 0);
        assertEq(pc, market.minProviderCollateral(PIECE_SIZE));
        assertEq(cc, 0);
    }

    function test_Status_NotFoundExpiredNotActivated() public {
        (MarketActor.Status status,) = h.getDeal(77);
        assertEq(uint8(status), uint8(MarketActor.Status.NotFound));
        uint64 id =
            publishOne(SP, codec.encodeProposal(proposal(address(acceptingClient), 1001, PIECE, 5001, 7001)));
        (status,) = h.getDealSector(id);
        assertEq(uint8(status), uint8(MarketActor.Status.NotActivated));
        activateDeal(1001, SP, id, id);
        terminateSector(1001, SP, id);
        (status,) = h.getDeal(id);
        assertEq(uint8(status), uint8(MarketActor.Status.Expired));
    }

    function test_RevertWhen_PrecompileMissing() public {
        vm.etch(MarketActor.CALL_ACTOR_ID, "");
        // An account without code "succeeds" with no data: a failed call, not a silent zero.
        vm.expectRevert(
            abi.encodeWithSelector(
                MarketActor.MarketCallFailed.selector, MarketActor.GET_DEAL_DATA_COMMITMENT, -1
            )
        );
        h.getDeal(1);
    }

    function test_RevertWhen_UnexpectedExitCode() public {
        // An actor answering USR_FORBIDDEN (18).
        vm.mockCall(
            MarketActor.ETH_ADDRESS,
            abi.encodeWithSignature("handle(uint64,uint64,bytes)"),
            abi.encode(int256(18), uint64(0), bytes(""))
        );
        vm.expectRevert(
            abi.encodeWithSelector(
                MarketActor.MarketCallFailed.selector, MarketActor.GET_DEAL_DATA_COMMITMENT, 18
            )
        );
        h.getDeal(1);
    }

    function test_RevertWhen_ResultIsNotTheExpectedCbor() public {
        vm.mockCall(
            MarketActor.ETH_ADDRESS,
            abi.encodeWithSignature("handle(uint64,uint64,bytes)"),
            abi.encode(int256(0), uint64(0x51), hex"83010203")
        );
        vm.expectRevert(
            abi.encodeWithSelector(
                MarketActor.MarketBadResponse.selector, MarketActor.GET_DEAL_DATA_COMMITMENT
            )
        );
        h.getDeal(1);
    }

    // ------------------------------------------------------------------ CBOR

    function test_Cbor_RoundTripsIntegers() public view {
        int64[6] memory values = [int64(0), 23, 24, -1, -25, type(int64).min];
        for (uint256 k; k < values.length; ++k) {
            assertEq(h.readInt(Cbor.encodeInt(values[k])), values[k]);
        }
        assertEq(Cbor.encodeUint(23), hex"17");
        assertEq(Cbor.encodeUint(24), hex"1818");
        assertEq(Cbor.encodeUint(65536), hex"1a00010000");
        assertEq(Cbor.encodeBigUint(0), hex"40");
        assertEq(Cbor.encodeBigUint(256), hex"43000100");
        (uint256 v,) = Cbor.readBigUint(hex"43000100", 0);
        assertEq(v, 256);
        (v,) = Cbor.readBigUint(hex"40", 0);
        assertEq(v, 0);
    }

    function test_Cbor_RefusesMalformed() public {
        vm.expectRevert(abi.encodeWithSelector(Cbor.CborTruncated.selector, 2));
        h.readCid(hex"d82a5828");
        vm.expectRevert(abi.encodeWithSelector(Cbor.CborUnexpected.selector, 0));
        h.readCid(hex"d82b4100");
        vm.expectRevert(abi.encodeWithSelector(Cbor.CborUnexpected.selector, 0));
        h.skip(hex"9f"); // indefinite-length array
        vm.expectRevert(abi.encodeWithSelector(Cbor.CborTruncated.selector, 0));
        h.skip(hex"9bffffffffffffffff"); // an array longer than the input
    }

    /// Arbitrary bytes either decode or revert with a typed CBOR error: never a panic.
    function testFuzz_CborReaderNeverPanics(bytes memory data) public {
        try h.skip(data) returns (uint256 next) {
            assertLe(next, data.length);
        } catch (bytes memory reason) {
            bytes4 sel = bytes4(reason);
            assertTrue(sel == Cbor.CborTruncated.selector || sel == Cbor.CborUnexpected.selector);
        }
    }

    /// Concrete twin: deeply nested arrays hit the depth limit.
    function test_CborReaderNeverPanics_Concrete() public {
        testFuzz_CborReaderNeverPanics(hex"818181818181818181818181818181818181818101");
    }

    function test_FilAddress() public pure {
        assertEq(FilAddress.idAddress(1001), hex"00e907");
        assertEq(FilAddress.idAddress(0), hex"0000");
        (bool ok, uint64 id) = FilAddress.parseIdAddress(hex"00e907");
        assertTrue(ok);
        assertEq(id, 1001);
        (ok,) = FilAddress.parseIdAddress(hex"00e987"); // runs off the end
        assertFalse(ok);
        (ok,) = FilAddress.parseIdAddress(hex"00e900"); // not minimal
        assertFalse(ok);
        (ok,) = FilAddress.parseIdAddress(hex"01e907"); // not protocol 0
        assertFalse(ok);
        (bool isMasked, uint64 mid) = FilAddress.idOfMasked(FilAddress.maskedAddress(1001));
        assertTrue(isMasked);
        assertEq(mid, 1001);
        (isMasked,) = FilAddress.idOfMasked(address(0xBEEF));
        assertFalse(isMasked);
        assertEq(FilAddress.fromEvm(FilAddress.maskedAddress(1001)), hex"00e907");
        assertEq(FilAddress.fromEvm(address(0xBEEF)), abi.encodePacked(hex"040a", address(0xBEEF)));
        (bool isEvm, address a) = FilAddress.toEvm(abi.encodePacked(hex"040a", address(0xBEEF)));
        assertTrue(isEvm);
        assertEq(a, address(0xBEEF));
        (isEvm, a) = FilAddress.toEvm(hex"00e907");
        assertEq(a, FilAddress.maskedAddress(1001));
        (isEvm,) = FilAddress.toEvm(hex"0155"); // an f1 address
        assertFalse(isEvm);
    }
}
