// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {ProviderRegistry} from "../../src/ProviderRegistry.sol";
import {FilAddress} from "../../src/lib/FilAddress.sol";
import {MinerActorSimulator} from "../../src/sim/MinerActorSimulator.sol";
import {FilecoinTest} from "../utils/FilecoinTest.sol";
import {UrlRules} from "../utils/UrlRules.sol";
import {CommonBase} from "forge-std/Base.sol";
import {StdUtils} from "forge-std/StdUtils.sol";
import {Vm} from "forge-std/Vm.sol";

/// Owners, workers, control addresses and strangers set and remove the URLs of three miners and
/// of an ID with no miner, with good and bad URLs, while the owners rotate their workers and
/// control addresses; a ghost map mirrors what the registry must hold, and a ghost record says
/// who may write.
contract ProviderRegistryHandler is CommonBase, StdUtils {
    ProviderRegistry internal immutable reg;

    /// Three miners and, last, an ID no actor has.
    uint64[4] public ids = [uint64(1001), 1002, 1003, 1500];
    uint256 internal constant MINERS = 3;
    /// Who may be a caller, worker or control address (0x100 + 3m is miner m's owner).
    uint256 internal constant POOL = 12;
    address internal constant STRANGER = address(0xBAD);

    /// The miners' controlling addresses, as the handler set them.
    mapping(uint64 id => address) public ownerOf;
    mapping(uint64 id => address) public workerOf;
    mapping(uint64 id => address) public controlOf;

    /// What the registry must hold, who set it, and whether that caller controlled the miner
    /// when it did.
    mapping(uint64 id => string) public ghostUrl;
    mapping(uint64 id => address) public setBy;
    mapping(uint64 id => bool) public setByController;

    /// Calls whose outcome (accepted or refused, and with which error) differed from the rules.
    uint256 public wrongOutcomes;
    /// Accepted calls without their `ProviderUrlSet` event.
    uint256 public missingEvents;
    /// Accepted and refused calls, removals, rotations: how deep the runs went.
    uint256 public accepted;
    uint256 public refused;
    uint256 public removals;
    uint256 public rotations;

    constructor(ProviderRegistry reg_) {
        reg = reg_;
        for (uint256 m; m < MINERS; ++m) {
            ownerOf[ids[m]] = pool(3 * m);
            workerOf[ids[m]] = pool(3 * m + 1);
            controlOf[ids[m]] = pool(3 * m + 2);
        }
    }

    function pool(uint256 k) internal pure returns (address) {
        return address(uint160(0x100 + k));
    }

    function controlling(uint64 id, address who) public view returns (bool) {
        if (ownerOf[id] == address(0)) return false;
        return who == ownerOf[id] || who == workerOf[id] || who == controlOf[id];
    }

    /// A URL of one of five kinds: good, empty, good with one byte replaced, too long, or
    /// under another scheme.
    function url(uint256 seed, uint8 kind, uint8 len, uint8 bad) internal pure returns (bytes memory u) {
        bytes memory scheme = seed % 2 == 0 ? bytes("https://") : bytes("http://");
        uint256 n = bound(len, 1, 256 - scheme.length);
        kind %= 5;
        if (kind == 1) return "";
        if (kind == 3) n = 257 - scheme.length + seed % 8;
        u = bytes.concat(scheme, UrlRules.printable(n, seed));
        if (kind == 2) u[scheme.length + seed % n] = bytes1(bad);
        if (kind == 4) u[seed % 4] = "f";
    }

    /// Someone sets (or removes) the URL of a miner, or of the ID with no miner.
    function setUrl(uint256 idSeed, uint256 callerSeed, uint256 urlSeed, uint8 kind, uint8 len, uint8 bad)
        external
    {
        uint64 id = ids[idSeed % 4];
        uint256 c = callerSeed % (POOL + 1);
        address caller = c == POOL ? STRANGER : pool(c);
        bytes memory u = url(urlSeed, kind, len, bad);
        uint256 want = u.length == 0 ? UrlRules.ACCEPTED : UrlRules.expectedAt(u);
        bool allowed = controlling(id, caller);

        vm.recordLogs();
        vm.prank(caller);
        try reg.setUrl(id, string(u)) {
            accepted += 1;
            if (want != UrlRules.ACCEPTED || !allowed) wrongOutcomes += 1;
            if (!emitted(id, caller, u)) missingEvents += 1;
            ghostUrl[id] = string(u);
            setBy[id] = caller;
            setByController[id] = allowed;
            if (u.length == 0) removals += 1;
        } catch (bytes memory err) {
            refused += 1;
            // The URL is checked first, then the caller.
            bytes memory expected = want != UrlRules.ACCEPTED
                ? abi.encodeWithSelector(ProviderRegistry.ProviderRegistryBadUrl.selector, id, want)
                : abi.encodeWithSelector(ProviderRegistry.ProviderRegistryNotController.selector, id, caller);
            if (allowed && want == UrlRules.ACCEPTED) wrongOutcomes += 1;
            else if (keccak256(err) != keccak256(expected)) wrongOutcomes += 1;
        }
    }

    function emitted(uint64 id, address caller, bytes memory u) internal returns (bool) {
        Vm.Log[] memory logs = vm.getRecordedLogs();
        for (uint256 k; k < logs.length; ++k) {
            Vm.Log memory l = logs[k];
            if (
                l.emitter == address(reg) && l.topics.length == 3
                    && l.topics[0] == ProviderRegistry.ProviderUrlSet.selector
                    && l.topics[1] == bytes32(uint256(id)) && l.topics[2] == bytes32(uint256(uint160(caller)))
                    && keccak256(abi.decode(l.data, (bytes))) == keccak256(u)
            ) return true;
        }
        return false;
    }

    /// A miner's owner replaces its worker and control address (anyone of the pool).
    function rotate(uint256 minerSeed, uint256 workerSeed, uint256 controlSeed) external {
        uint64 id = ids[minerSeed % MINERS];
        address worker = pool(workerSeed % POOL);
        address control = pool(controlSeed % POOL);
        address[] memory controls = new address[](1);
        controls[0] = control;
        vm.prank(ownerOf[id]);
        MinerActorSimulator(payable(FilAddress.maskedAddress(id))).changeControlAddresses(worker, controls);
        workerOf[id] = worker;
        controlOf[id] = control;
        rotations += 1;
    }

    function idCount() external pure returns (uint256) {
        return 4;
    }
}

contract ProviderRegistryInvariantTest is FilecoinTest {
    ProviderRegistry internal reg;
    ProviderRegistryHandler internal handler;

    function setUp() public {
        installMarket();
        reg = new ProviderRegistry();
        handler = new ProviderRegistryHandler(reg);
        for (uint256 m; m < 3; ++m) {
            uint64 id = handler.ids(m);
            vm.etch(masked(id), type(MinerActorSimulator).runtimeCode);
            address[] memory controls = new address[](1);
            controls[0] = handler.controlOf(id);
            market.registerMiner(id, handler.ownerOf(id), handler.workerOf(id), controls);
        }
        targetContract(address(handler));
        bytes4[] memory selectors = new bytes4[](2);
        selectors[0] = ProviderRegistryHandler.setUrl.selector;
        selectors[1] = ProviderRegistryHandler.rotate.selector;
        targetSelector(FuzzSelector(address(handler), selectors));
    }

    function test_HandlerSetsRemovesAndRotates() public {
        // Miner 1001's owner (pool 0) sets a good URL; a stranger (pool 12) and a bad URL fail.
        handler.setUrl(0, 0, 2, 0, 20, 0);
        handler.setUrl(0, 12, 2, 0, 20, 0);
        handler.setUrl(0, 1, 2, 2, 20, 0x20);
        assertEq(handler.accepted(), 1);
        assertEq(handler.refused(), 2);
        // The worker (pool 1) is replaced by pool 5: it may no longer write; the new one may.
        handler.rotate(0, 5, 2);
        handler.setUrl(0, 1, 3, 0, 30, 0);
        handler.setUrl(0, 5, 3, 1, 30, 0);
        assertEq(handler.accepted(), 2);
        assertEq(handler.removals(), 1);
        // No one may write for the ID with no miner.
        handler.setUrl(3, 0, 4, 0, 30, 0);
        assertEq(handler.refused(), 4);
        handler.setUrl(1, 4, 5, 0, 200, 0);
        assertEq(handler.accepted(), 3);
        invariant_RegistryMirrorsTheGhostMap();
        invariant_StoredUrlsAreValidAndSetByAController();
        invariant_EveryOutcomeFollowsTheRules();
    }

    /// `urlOf` and `urlsOf` answer exactly what the accepted calls stored.
    function invariant_RegistryMirrorsTheGhostMap() public view {
        uint256 n = handler.idCount();
        uint64[] memory ids = new uint64[](n);
        for (uint256 k; k < n; ++k) {
            ids[k] = handler.ids(k);
            assertEq(reg.urlOf(ids[k]), handler.ghostUrl(ids[k]));
        }
        string[] memory urls = reg.urlsOf(ids);
        for (uint256 k; k < n; ++k) {
            assertEq(urls[k], handler.ghostUrl(ids[k]));
        }
        assertEq(reg.urlOf(1500), "", "no one writes for an ID with no miner");
    }

    /// Every stored URL follows the rules (length, scheme, printable bytes) and was last set by
    /// an address that controlled its miner at the time.
    function invariant_StoredUrlsAreValidAndSetByAController() public view {
        uint256 n = handler.idCount();
        for (uint256 k; k < n; ++k) {
            uint64 id = handler.ids(k);
            bytes memory u = bytes(reg.urlOf(id));
            if (u.length == 0) continue;
            assertLe(u.length, reg.MAX_URL_LENGTH());
            assertTrue(UrlRules.isValid(u), "a stored URL breaks the rules");
            assertTrue(handler.setByController(id), "a URL set by someone not controlling the miner");
        }
    }

    /// Each call was accepted or refused (with the expected error) as the rules say, and each
    /// accepted one emitted its event.
    function invariant_EveryOutcomeFollowsTheRules() public view {
        assertEq(handler.wrongOutcomes(), 0);
        assertEq(handler.missingEvents(), 0);
    }
}
