// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {DataDAO} from "../src/DataDAO.sol";
import {DealClient} from "../src/DealClient.sol";
import {EstuaryOracle} from "../src/EstuaryOracle.sol";
import {EstuaryPinning} from "../src/EstuaryPinning.sol";
import {PerpetualStorage} from "../src/PerpetualStorage.sol";
import {MarketActor} from "../src/lib/MarketActor.sol";
import {ActorCallForwarder, MarketSimulator} from "../src/sim/MarketSimulator.sol";
import {Script} from "forge-std/Script.sol";
import {console} from "forge-std/console.sol";

/// @title Deploy
/// @notice Deploys every Estuary contract and writes their addresses to
///         `deployments/<chain id>.json`, where `estuary dev`, the oracle and the dapp read them.
///         On a local chain (31337) it first installs the simulated market actor at the market's
///         address and the `call_actor_id` precompile (with `anvil_setCode`), and uses short
///         windows; on Filecoin Calibration (314159) the real precompiles are used.
/// @dev Environment: `ESTUARY_OPERATOR` (the oracle's account; default: the deployer),
///      `ESTUARY_OWNER` (default: the deployer), `ESTUARY_DEPLOY_NAME` (the output file's name;
///      default: the chain id). Run:
///      `forge script script/Deploy.s.sol --rpc-url $RPC --broadcast --private-key $KEY`.
contract Deploy is Script {
    uint256 internal constant LOCAL = 31337;
    uint256 internal constant CALIBRATION = 314159;

    struct Params {
        uint64 claimWindow;
        uint64 minTerm;
        uint96 minBond;
        uint64 votingPeriod;
        uint96 orderBudget;
    }

    function params() internal view returns (Params memory p) {
        if (block.chainid == LOCAL) {
            // Seconds-long blocks: windows of minutes, a one-hour minimum term.
            return Params(120, 3600, 0.01 ether, 300, 1 ether);
        }
        if (block.chainid == CALIBRATION) {
            // 30-second epochs: two days to seal, 180-day terms (the market's minimum).
            return Params(5760, 518_400, 0.1 ether, 1 days, 5 ether);
        }
        revert("Deploy: unsupported chain (31337 or 314159)");
    }

    function run() external {
        Params memory p = params();
        address deployer = msg.sender;
        address owner = vm.envOr("ESTUARY_OWNER", deployer);
        address operator = vm.envOr("ESTUARY_OPERATOR", deployer);
        uint256 startBlock = block.number;

        if (block.chainid == LOCAL) installSimulatedMarket();

        vm.startBroadcast();
        EstuaryPinning pinning = new EstuaryPinning(deployer);
        PerpetualStorage perpetual = new PerpetualStorage(p.claimWindow, p.minTerm, p.minBond);
        DealClient dealClient = new DealClient(deployer);
        EstuaryOracle oracle = new EstuaryOracle(deployer);
        DataDAO dao = new DataDAO(deployer, pinning, perpetual, p.votingPeriod);
        pinning.setOperator(operator, true);
        dealClient.setOperator(operator, true);
        oracle.setOperator(operator, true);
        dao.setOperator(operator, true);
        dao.setOrderBudget(p.orderBudget);
        if (owner != deployer) {
            pinning.transferOwnership(owner);
            dealClient.transferOwnership(owner);
            oracle.transferOwnership(owner);
            dao.transferOwnership(owner);
        }
        vm.stopBroadcast();

        string memory key = "deployment";
        vm.serializeUint(key, "chainId", block.chainid);
        vm.serializeUint(key, "startBlock", startBlock);
        vm.serializeAddress(key, "operator", operator);
        vm.serializeAddress(key, "EstuaryPinning", address(pinning));
        vm.serializeAddress(key, "PerpetualStorage", address(perpetual));
        vm.serializeAddress(key, "DealClient", address(dealClient));
        vm.serializeAddress(key, "EstuaryOracle", address(oracle));
        vm.serializeBool(key, "simulatedMarket", block.chainid == LOCAL);
        string memory json = vm.serializeAddress(key, "DataDAO", address(dao));
        string memory name = vm.envOr("ESTUARY_DEPLOY_NAME", vm.toString(block.chainid));
        string memory path = string.concat(vm.projectRoot(), "/deployments/", name, ".json");
        vm.writeJson(json, path);
        console.log("deployed; addresses in", path);
    }

    /// Puts the simulator's runtime code at the market actor's address and the forwarder's at the
    /// `call_actor_id` precompile (both need no constructor state).
    function installSimulatedMarket() internal {
        setCode(MarketActor.ETH_ADDRESS, type(MarketSimulator).runtimeCode);
        setCode(MarketActor.CALL_ACTOR_ID, type(ActorCallForwarder).runtimeCode);
    }

    function setCode(address target, bytes memory code) internal {
        string memory args = string.concat('["', vm.toString(target), '","', vm.toString(code), '"]');
        vm.rpc("anvil_setCode", args);
        vm.etch(target, code);
    }
}
