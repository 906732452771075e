// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {ProviderRegistry} from "../src/ProviderRegistry.sol";
import {MarketActor} from "../src/lib/MarketActor.sol";
import {MinerActorSimulator} from "../src/sim/MinerActorSimulator.sol";
import {FilecoinTest} from "./utils/FilecoinTest.sol";
import {UrlRules} from "./utils/UrlRules.sol";

contract ProviderRegistryTest is FilecoinTest {
    ProviderRegistry internal reg;

    uint64 internal constant MINER = 1001;
    uint64 internal constant MINER2 = 1002;
    /// No actor has this ID.
    uint64 internal constant NOBODY = 1500;
    address internal constant OWNER = address(0x0A);
    address internal constant WORKER = address(0x0B);
    address internal constant CONTROL = address(0x0C);
    address internal constant SP2 = address(0x5C);
    address internal constant STRANGER = address(0xBAD);
    string internal constant URL = "https://sp1.example.com:8443";

    function setUp() public {
        installMarket();
        reg = new ProviderRegistry();
        // MINER has distinct owner, worker and control addresses; MINER2 one controller.
        vm.etch(masked(MINER), type(MinerActorSimulator).runtimeCode);
        address[] memory controls = new address[](1);
        controls[0] = CONTROL;
        market.registerMiner(MINER, OWNER, WORKER, controls);
        createMiner(MINER2, SP2);
    }

    function setAs(address who, uint64 provider, string memory url) internal {
        vm.prank(who);
        reg.setUrl(provider, url);
    }

    function expectBadUrl(uint64 provider, uint256 index) internal {
        vm.expectRevert(
            abi.encodeWithSelector(ProviderRegistry.ProviderRegistryBadUrl.selector, provider, index)
        );
    }

    function expectNotController(uint64 provider, address caller) internal {
        vm.expectRevert(
            abi.encodeWithSelector(ProviderRegistry.ProviderRegistryNotController.selector, provider, caller)
        );
    }

    function longest() internal pure returns (string memory) {
        return string(bytes.concat("https://", UrlRules.repeat("a", 248)));
    }

    // ------------------------------------------------------------------ who may write

    function test_Constants() public view {
        assertEq(reg.MAX_URL_LENGTH(), 256);
        assertEq(reg.MAX_BATCH(), 256);
    }

    function test_SetUrl_ByOwnerWorkerAndControlAddress() public {
        setAs(OWNER, MINER, "http://owner.example");
        assertEq(reg.urlOf(MINER), "http://owner.example");
        setAs(WORKER, MINER, "http://worker.example");
        assertEq(reg.urlOf(MINER), "http://worker.example");
        setAs(CONTROL, MINER, URL);
        assertEq(reg.urlOf(MINER), URL);
        // Each miner has its own entry.
        setAs(SP2, MINER2, "http://10.0.0.2:8080");
        assertEq(reg.urlOf(MINER2), "http://10.0.0.2:8080");
        assertEq(reg.urlOf(MINER), URL);
    }

    function test_RevertWhen_CallerNotController() public {
        expectNotController(MINER, STRANGER);
        setAs(STRANGER, MINER, URL);
        // The controller of another miner controls only its own.
        expectNotController(MINER, SP2);
        setAs(SP2, MINER, URL);
        expectNotController(MINER2, OWNER);
        setAs(OWNER, MINER2, URL);
        assertEq(reg.urlOf(MINER), "");
        assertEq(reg.urlOf(MINER2), "");
    }

    function test_RevertWhen_NotAMiner() public {
        // No actor at all.
        expectNotController(NOBODY, OWNER);
        setAs(OWNER, NOBODY, URL);
        expectNotController(0, OWNER);
        setAs(OWNER, 0, URL);
        // A built-in actor that is not a miner (the market, f05).
        expectNotController(MarketActor.ACTOR_ID, OWNER);
        setAs(OWNER, MarketActor.ACTOR_ID, URL);
        // An account's own actor ID: not a miner, even to itself.
        uint64 accountId = market.registerEvm(STRANGER);
        expectNotController(accountId, STRANGER);
        setAs(STRANGER, accountId, URL);
        // Removing is a write too.
        expectNotController(NOBODY, OWNER);
        setAs(OWNER, NOBODY, "");
    }

    /// A former control address may no longer write; what it set stays until a controller
    /// changes it.
    function test_RevertWhen_ControlAddressRemoved() public {
        setAs(CONTROL, MINER, URL);
        vm.prank(OWNER);
        minerAt(MINER).changeControlAddresses(WORKER, new address[](0));
        expectNotController(MINER, CONTROL);
        setAs(CONTROL, MINER, "http://other.example");
        assertEq(reg.urlOf(MINER), URL);
        setAs(WORKER, MINER, "");
        assertEq(reg.urlOf(MINER), "");
    }

    /// The URL is checked before the miner is asked: a stranger's bad URL is a bad URL.
    function test_RevertWhen_BadUrlFromStranger_UrlCheckedFirst() public {
        expectBadUrl(MINER, 3);
        setAs(STRANGER, MINER, "sp1");
    }

    // ------------------------------------------------------------------ writes and events

    function test_SetUrl_Emits() public {
        vm.expectEmit(address(reg));
        emit ProviderRegistry.ProviderUrlSet(MINER, WORKER, URL);
        setAs(WORKER, MINER, URL);
    }

    function test_SetUrl_EmptyRemovesAndEmits() public {
        setAs(OWNER, MINER, URL);
        vm.expectEmit(address(reg));
        emit ProviderRegistry.ProviderUrlSet(MINER, CONTROL, "");
        setAs(CONTROL, MINER, "");
        assertEq(reg.urlOf(MINER), "");
    }

    /// Setting the stored URL again, or removing an absent one, is accepted and emits.
    function test_SetUrl_RepeatsAreAcceptedAndEmit() public {
        setAs(OWNER, MINER, URL);
        vm.expectEmit(address(reg));
        emit ProviderRegistry.ProviderUrlSet(MINER, OWNER, URL);
        setAs(OWNER, MINER, URL);
        assertEq(reg.urlOf(MINER), URL);
        vm.expectEmit(address(reg));
        emit ProviderRegistry.ProviderUrlSet(MINER2, SP2, "");
        setAs(SP2, MINER2, "");
        assertEq(reg.urlOf(MINER2), "");
    }

    /// A long URL replaced by a short one, then removed, leaves none of its bytes in storage.
    function test_SetUrl_ShorterAndRemovedLeaveNoBytesBehind() public {
        setAs(OWNER, MINER, longest());
        assertEq(reg.urlOf(MINER), longest());
        // `urls` is slot 0: the string's slot, then its 8 data slots from keccak256(slot).
        bytes32 slot = keccak256(abi.encode(uint256(MINER), uint256(0)));
        uint256 data = uint256(keccak256(abi.encode(slot)));
        assertEq(uint256(vm.load(address(reg), slot)), 256 * 2 + 1);
        setAs(OWNER, MINER, "http://x");
        assertEq(reg.urlOf(MINER), "http://x");
        for (uint256 k; k < 8; ++k) {
            assertEq(vm.load(address(reg), bytes32(data + k)), bytes32(0));
        }
        setAs(OWNER, MINER, longest());
        setAs(OWNER, MINER, "");
        assertEq(vm.load(address(reg), slot), bytes32(0));
        for (uint256 k; k < 8; ++k) {
            assertEq(vm.load(address(reg), bytes32(data + k)), bytes32(0));
        }
    }

    // ------------------------------------------------------------------ URL rules

    function test_SetUrl_AcceptsTheBounds() public {
        // Shortest: one byte after either scheme.
        setAs(OWNER, MINER, "http://a");
        assertEq(reg.urlOf(MINER), "http://a");
        setAs(OWNER, MINER, "https://a");
        assertEq(reg.urlOf(MINER), "https://a");
        // Longest: 256 bytes.
        setAs(OWNER, MINER, longest());
        assertEq(reg.urlOf(MINER), longest());
        // Both ends of the printable range, and what a real endpoint may look like.
        setAs(OWNER, MINER, "http://!~");
        assertEq(reg.urlOf(MINER), "http://!~");
        string memory real = "https://[2001:db8::1]:8443/retrieval?token=a%20b#x";
        setAs(OWNER, MINER, real);
        assertEq(reg.urlOf(MINER), real);
    }

    function test_RevertWhen_UrlTooLong() public {
        expectBadUrl(MINER, 257);
        setAs(OWNER, MINER, string(bytes.concat("https://", UrlRules.repeat("a", 249))));
        // Too long is reported before any bad byte.
        expectBadUrl(MINER, 307);
        setAs(OWNER, MINER, string(bytes.concat("http://", UrlRules.repeat(" ", 300))));
    }

    function test_RevertWhen_NoScheme() public {
        expectBadUrl(MINER, 10);
        setAs(OWNER, MINER, "sp.example");
        expectBadUrl(MINER, 20);
        setAs(OWNER, MINER, "//sp.example:8443/ab");
    }

    function test_RevertWhen_OtherScheme() public {
        expectBadUrl(MINER, 16);
        setAs(OWNER, MINER, "ftp://sp.example");
        expectBadUrl(MINER, 15);
        setAs(OWNER, MINER, "ws://sp.example");
        expectBadUrl(MINER, 15);
        setAs(OWNER, MINER, "http:sp.example");
    }

    /// The scheme must be lowercase.
    function test_RevertWhen_SchemeNotLowercase() public {
        expectBadUrl(MINER, 14);
        setAs(OWNER, MINER, "HTTP://example");
        expectBadUrl(MINER, 15);
        setAs(OWNER, MINER, "Https://example");
    }

    function test_RevertWhen_NothingAfterScheme() public {
        expectBadUrl(MINER, 7);
        setAs(OWNER, MINER, "http://");
        expectBadUrl(MINER, 8);
        setAs(OWNER, MINER, "https://");
        // Shorter than a scheme.
        expectBadUrl(MINER, 1);
        setAs(OWNER, MINER, "h");
    }

    function test_RevertWhen_Space() public {
        expectBadUrl(MINER, 9);
        setAs(OWNER, MINER, "http://sp example");
        // Right after the scheme, and as the last byte.
        expectBadUrl(MINER, 8);
        setAs(OWNER, MINER, "https:// sp");
        expectBadUrl(MINER, 9);
        setAs(OWNER, MINER, "http://sp ");
    }

    function test_RevertWhen_ControlCharacter() public {
        expectBadUrl(MINER, 9);
        setAs(OWNER, MINER, "http://sp\n.example");
        expectBadUrl(MINER, 9);
        setAs(OWNER, MINER, "http://sp\r\nX-Evil: 1");
        expectBadUrl(MINER, 8);
        setAs(OWNER, MINER, string(bytes.concat("https://", bytes1(0x00), "sp")));
        expectBadUrl(MINER, 7);
        setAs(OWNER, MINER, "http://\tsp");
        // DEL (0x7f).
        expectBadUrl(MINER, 9);
        setAs(OWNER, MINER, string(bytes.concat("http://sp", bytes1(0x7f))));
    }

    function test_RevertWhen_NonAscii() public {
        // "é" in UTF-8 (0xc3 0xa9): its first byte is reported.
        expectBadUrl(MINER, 9);
        setAs(OWNER, MINER, unicode"http://spé.example");
        expectBadUrl(MINER, 8);
        setAs(OWNER, MINER, string(bytes.concat("https://", bytes1(0x80))));
        expectBadUrl(MINER, 7);
        setAs(OWNER, MINER, string(bytes.concat("http://", bytes1(0xff), "x")));
    }

    // ------------------------------------------------------------------ urlsOf

    function test_UrlsOf_InOrderWithUnknownsAndRepeats() public {
        setAs(OWNER, MINER, URL);
        setAs(SP2, MINER2, "http://sp2");
        uint64[] memory ids = new uint64[](5);
        (ids[0], ids[1], ids[2], ids[3], ids[4]) = (MINER2, NOBODY, MINER, 0, MINER2);
        string[] memory urls = reg.urlsOf(ids);
        assertEq(urls.length, 5);
        assertEq(urls[0], "http://sp2");
        assertEq(urls[1], "");
        assertEq(urls[2], URL);
        assertEq(urls[3], "");
        assertEq(urls[4], "http://sp2");
        assertEq(reg.urlsOf(new uint64[](0)).length, 0);
    }

    function test_UrlsOf_MaxBatch() public {
        setAs(OWNER, MINER, URL);
        uint64[] memory ids = new uint64[](256);
        for (uint256 k; k < ids.length; ++k) {
            ids[k] = uint64(1000 + k);
        }
        string[] memory urls = reg.urlsOf(ids);
        assertEq(urls.length, 256);
        assertEq(urls[1], URL);
        assertEq(urls[2], "");
    }

    function test_RevertWhen_UrlsOfTooMany() public {
        vm.expectRevert(abi.encodeWithSelector(ProviderRegistry.ProviderRegistryTooMany.selector, 257, 256));
        reg.urlsOf(new uint64[](257));
    }

    // ------------------------------------------------------------------ fuzz (+ twins)

    /// Any bytes: accepted (stored, emitted) exactly when the plain reading of the rules accepts
    /// them, else refused with its `at`. Empty bytes remove.
    function testFuzz_UrlRulesMatchReference(bytes calldata url) public {
        setAs(OWNER, MINER, URL);
        uint256 want = url.length == 0 ? UrlRules.ACCEPTED : UrlRules.expectedAt(url);
        if (want != UrlRules.ACCEPTED) {
            expectBadUrl(MINER, want);
        } else {
            vm.expectEmit(address(reg));
            emit ProviderRegistry.ProviderUrlSet(MINER, OWNER, string(url));
        }
        setAs(OWNER, MINER, string(url));
        assertEq(reg.urlOf(MINER), want != UrlRules.ACCEPTED ? URL : string(url));
    }

    /// Concrete twin: a CR LF header injection after a valid host.
    function test_UrlRulesMatchReference_Concrete() public {
        this.testFuzz_UrlRulesMatchReference("http://sp.example\r\nHost: evil");
    }

    /// A printable URL of any length under either scheme, with one byte replaced: refused at
    /// that byte when it is outside 0x21..0x7e, accepted otherwise (refused at its length when
    /// too long, whatever its bytes).
    function testFuzz_OneBadByteIsFound(uint16 len, uint16 pos, uint8 bad, bool https, uint256 seed) public {
        bytes memory scheme = https ? bytes("https://") : bytes("http://");
        uint256 n = bound(len, 1, 300 - scheme.length);
        bytes memory u = bytes.concat(scheme, UrlRules.printable(n, seed));
        uint256 p = scheme.length + bound(pos, 0, n - 1);
        u[p] = bytes1(bad);
        uint256 want = UrlRules.expectedAt(u);
        if (u.length > 256) assertEq(want, u.length);
        else if (bad < 0x21 || bad > 0x7e) assertEq(want, p);
        else assertEq(want, UrlRules.ACCEPTED);
        if (want != UrlRules.ACCEPTED) expectBadUrl(MINER, want);
        setAs(WORKER, MINER, string(u));
        assertEq(reg.urlOf(MINER), want == UrlRules.ACCEPTED ? string(u) : "");
    }

    /// Concrete twin: a 40-byte https URL with a DEL in its middle.
    function test_OneBadByteIsFound_Concrete() public {
        testFuzz_OneBadByteIsFound(40, 20, 0x7f, true, 7);
    }

    /// No one but the owner, worker and control address may write, for any URL.
    function testFuzz_OnlyControllersMaySet(address caller, bool remove) public {
        bool controlling = caller == OWNER || caller == WORKER || caller == CONTROL;
        if (!controlling) expectNotController(MINER, caller);
        setAs(caller, MINER, remove ? "" : URL);
        assertEq(reg.urlOf(MINER), controlling && !remove ? URL : "");
    }

    /// Concrete twin: the other miner's controller.
    function test_OnlyControllersMaySet_Concrete() public {
        testFuzz_OnlyControllersMaySet(SP2, false);
    }

    /// `urlsOf` answers what `urlOf` does, one by one, for any list within the batch limit.
    function testFuzz_UrlsOfMatchesUrlOf(uint64[] memory ids, uint8 which) public {
        if (ids.length > 256) {
            assembly ("memory-safe") {
                mstore(ids, 256)
            }
        }
        if (ids.length > 0) ids[which % ids.length] = MINER;
        setAs(OWNER, MINER, URL);
        string[] memory urls = reg.urlsOf(ids);
        assertEq(urls.length, ids.length);
        for (uint256 k; k < ids.length; ++k) {
            assertEq(urls[k], reg.urlOf(ids[k]));
            assertEq(urls[k], ids[k] == MINER ? URL : "");
        }
    }

    /// Concrete twin: the miner among an unknown ID, the largest one and another miner.
    function test_UrlsOfMatchesUrlOf_Concrete() public {
        uint64[] memory ids = new uint64[](3);
        (ids[0], ids[1], ids[2]) = (type(uint64).max, 0, MINER2);
        testFuzz_UrlsOfMatchesUrlOf(ids, 1);
    }

    // ------------------------------------------------------------------ gas

    /// Goals, measured cold (as in a fresh transaction): a typical URL (one storage slot)
    /// ≤ 65,000, of which the simulated miner-control check is ~30,000; its removal ≤ 40,000;
    /// the longest URL (nine fresh slots) ≤ 240,000.
    function test_Gas_SetUrl() public {
        coolAll();
        setAs(WORKER, MINER, URL);
        uint256 typical = vm.snapshotGasLastCall("ProviderRegistry", "setUrl (28-byte URL)");
        coolAll();
        setAs(WORKER, MINER, "");
        uint256 removal = vm.snapshotGasLastCall("ProviderRegistry", "setUrl (remove)");
        coolAll();
        setAs(SP2, MINER2, longest());
        uint256 longestGas = vm.snapshotGasLastCall("ProviderRegistry", "setUrl (256-byte URL)");
        emit log_named_uint("setUrl gas, 28-byte URL", typical);
        emit log_named_uint("setUrl gas, removal", removal);
        emit log_named_uint("setUrl gas, 256-byte URL", longestGas);
        assertLe(typical, 65_000);
        assertLe(removal, 40_000);
        assertLe(longestGas, 240_000);
    }

    function coolAll() internal {
        vm.cool(address(reg));
        vm.cool(masked(MINER));
        vm.cool(masked(MINER2));
        vm.cool(address(market));
    }
}
