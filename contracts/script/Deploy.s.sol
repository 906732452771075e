// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {DataDAO} from "../src/DataDAO.sol";
import {DealClient} from "../src/DealClient.sol";
import {DealStateView} from "../src/DealStateView.sol";
import {EstuaryOracle} from "../src/EstuaryOracle.sol";
import {EstuaryPinning} from "../src/EstuaryPinning.sol";
import {PerpetualStorage} from "../src/PerpetualStorage.sol";
import {ProviderRegistry} from "../src/ProviderRegistry.sol";
import {DataCapActor} from "../src/lib/DataCapActor.sol";
import {DealCodec} from "../src/lib/DealCodec.sol";
import {FilAddress} from "../src/lib/FilAddress.sol";
import {FvmActor} from "../src/lib/FvmActor.sol";
import {MarketActor} from "../src/lib/MarketActor.sol";
import {DataCapSimulator} from "../src/sim/DataCapSimulator.sol";
import {ActorCallForwarder, MarketSimulator} from "../src/sim/MarketSimulator.sol";
import {MinerActorSimulator} from "../src/sim/MinerActorSimulator.sol";
import {SimActors} from "../src/sim/SimActors.sol";
import {Script} from "forge-std/Script.sol";
import {console} from "forge-std/console.sol";

/// @title Deploy
/// @notice Deploys every Estuary contract with the profile of the chain and writes their
///         addresses to `deployments/<name>.json`, where `estuary dev`, the oracle, the SP agents
///         and the dapp read them.
///
///         On the local chain (31337, one block a second) it first installs the simulated
///         Filecoin actors with `anvil_setCode`: the market (`MarketSimulator` at `0xff…05`), the
///         `call_actor_id` precompile (`ActorCallForwarder` at `0xfe…05`), the simulators' codec,
///         and miner actors (`MinerActorSimulator` at `0xff…<id>`) registered with their
///         controlling addresses and given market escrow; the market gets the local policy
///         (deals from 300 epochs, so that terms of minutes work) and DataCap for the contracts.
///         On Filecoin Calibration (314159) the real actors and precompiles are used.
///
///         Every chain gets the same contracts: EstuaryPinning, PerpetualStorage (with its
///         DealCodec), DealClient, EstuaryOracle, DataDAO, DealStateView and ProviderRegistry
///         (where providers publish their retrieval URLs; no constructor arguments, no owner).
/// @dev Environment:
///      - `ESTUARY_OWNER`: the owner of every contract (default: the deployer). Ownership is
///        two-step: when the owner is not the deployer, the script proposes it, and accepts it
///        too when `ESTUARY_OWNER_KEY` (the owner's private key) is given.
///      - `ESTUARY_OWNER_KEY`: optional, see above (the owner is then this key's address).
///      - `ESTUARY_OPERATOR`: the oracle's account, made operator of the contracts that have
///        operators (default on the local chain: the deployer). Required on Calibration, and it
///        must differ from the owner there: the oracle's hot key must not own the contracts.
///      - `ESTUARY_DEPLOY_NAME`: the output file's name (default: the chain id).
///      - `ESTUARY_PIN_FEE`: EstuaryPinning's fee in wei (default: the profile's).
///      - `ESTUARY_ACCEPT_DIRECT_DEALS`: whether DealClient lets providers fill replicas with
///        deals made without the market (Curio DDO; `DealPolicy.acceptDirect`; default: true on
///        the local chain, false on Calibration). The owner changes it with `setDealPolicy`.
///      - `ESTUARY_SIM_MINERS` / `ESTUARY_SIM_MINER_CONTROLS` (local only): comma-separated miner
///        IDs and, for each, the EVM account that owns and works it (default: f01000, f01001,
///        f01002 controlled by anvil's accounts 1, 2 and 3).
///      Run: `forge script script/Deploy.s.sol --rpc-url $RPC --broadcast --private-key $KEY`.
contract Deploy is Script {
    uint256 internal constant LOCAL = 31337;
    uint256 internal constant CALIBRATION = 314159;
    /// @notice anvil's well-known development mnemonic (local chain only).
    string internal constant ANVIL_MNEMONIC = "test test test test test test test test test test test junk";

    /// @notice Everything that differs between chains.
    struct Profile {
        string name;
        // PerpetualStorage
        uint64 claimWindow;
        uint64 minTerm;
        uint64 maxTerm;
        uint96 minBond;
        // DataDAO
        uint64 votingPeriod;
        uint64 fundingPeriod;
        uint16 quorumBps;
        uint96 orderBudget;
        DataDAO.OrderTerms orderTerms;
        // EstuaryPinning
        uint96 pinFee;
        uint64 refundDelay;
        // EstuaryOracle
        uint256 pinBaseFee;
        uint256 storeBaseFee;
        uint256 callbackGasPrice;
        uint64 jobTimeout;
        uint16 consumerCap;
        // DealClient
        DealClient.DealPolicy dealPolicy;
    }

    /// @notice Addresses the script produced.
    struct Deployed {
        DealCodec codec;
        EstuaryPinning pinning;
        PerpetualStorage perpetual;
        DealClient dealClient;
        EstuaryOracle oracle;
        DataDAO dao;
        DealStateView dealStateView;
        ProviderRegistry providerRegistry;
    }

    function profile() internal view returns (Profile memory p) {
        if (block.chainid == LOCAL) {
            // One block a second: windows of minutes, one-hour terms, deals from 5 minutes.
            p.name = "local";
            p.claimWindow = 120;
            p.minTerm = 3600;
            p.maxTerm = 3_680_640 - 120;
            p.minBond = 0.01 ether;
            p.votingPeriod = 300;
            p.fundingPeriod = 3600;
            p.quorumBps = 5000;
            p.orderBudget = 1 ether;
            // Three one-hour replicas; a claim locks at most twice the bounty of the budget.
            p.orderTerms = DataDAO.OrderTerms({replicas: 3, term: 3600, bounty: 0.1 ether, verified: false});
            // Pins cost something even locally (a request made for free is a request made by the
            // thousand to stall the oracle): 0.0001 ETH, which the SDK, the dapp and the tests pay.
            p.pinFee = 0.0001 ether;
            p.refundDelay = 600;
            // anvil's gas price is about 1-2 gwei; a fulfil without callback uses ~100k gas.
            p.pinBaseFee = 0.0003 ether;
            p.storeBaseFee = 0.003 ether;
            p.callbackGasPrice = 2 gwei;
            p.jobTimeout = 3600;
            p.consumerCap = 64;
            p.dealPolicy = DealClient.DealPolicy({
                minDuration: 300,
                maxDuration: 3_680_640,
                minStartDelay: 10,
                maxEndDelay: 3_680_640,
                // The simulated market's minimum is ~8.2e4 attoFIL per byte (its default figures).
                minProviderCollateralPerByte: 1e5,
                // The dev stack's agents may seal without the market (--sim-direct, Curio).
                acceptDirect: true
            });
            return p;
        }
        if (block.chainid == CALIBRATION) {
            // 30-second epochs: two days to seal, terms of 180 days to 1278 days less a window.
            p.name = "calibration";
            p.claimWindow = 5760;
            p.minTerm = 518_400;
            p.maxTerm = 3_680_640 - 5760;
            p.minBond = 0.1 ether;
            p.votingPeriod = 1 days;
            p.fundingPeriod = 7 days;
            p.quorumBps = 5000;
            p.orderBudget = 5 ether;
            // Three replicas of the market's shortest term (180 days).
            p.orderTerms =
                DataDAO.OrderTerms({replicas: 3, term: 518_400, bounty: 0.5 ether, verified: false});
            p.pinFee = 0.001 ether;
            p.refundDelay = 7 days;
            // FEVM gas: fees are in attoFIL per FVM gas unit (base fee ~100, premium ~1e5);
            // a fulfil runs to tens of millions of units. The base fee also pays the work.
            p.pinBaseFee = 0.001 ether;
            p.storeBaseFee = 0.01 ether;
            p.callbackGasPrice = 1e6;
            p.jobTimeout = 2 days;
            p.consumerCap = 64;
            p.dealPolicy = DealClient.DealPolicy({
                minDuration: 518_400,
                maxDuration: 3_680_640,
                // A day to fetch and seal before the deal must be active.
                minStartDelay: 2880,
                maxEndDelay: 3_680_640,
                // A floor that refuses zero; the deal engine takes the real bound from
                // StateDealProviderCollateralBounds.
                minProviderCollateralPerByte: 1e4,
                // Only market deals, which put up collateral and can be proven, unless asked.
                acceptDirect: false
            });
            return p;
        }
        revert("Deploy: unsupported chain (31337 or 314159)");
    }

    function run() external {
        Profile memory p = profile();
        // The account the transactions are sent from (`--private-key`, `--sender`, ...).
        vm.startBroadcast();
        (, address deployer,) = vm.readCallers();
        vm.stopBroadcast();
        uint256 ownerKey = vm.envOr("ESTUARY_OWNER_KEY", uint256(0));
        address owner = ownerKey != 0 ? vm.addr(ownerKey) : vm.envOr("ESTUARY_OWNER", deployer);
        address operator = vm.envOr("ESTUARY_OPERATOR", block.chainid == LOCAL ? deployer : address(0));
        if (block.chainid != LOCAL) {
            require(operator != address(0), "Deploy: set ESTUARY_OPERATOR");
            require(operator != owner, "Deploy: the operator must not be the owner");
        }
        p.pinFee = uint96(vm.envOr("ESTUARY_PIN_FEE", uint256(p.pinFee)));
        p.dealPolicy.acceptDirect = vm.envOr("ESTUARY_ACCEPT_DIRECT_DEALS", p.dealPolicy.acceptDirect);
        uint256 startBlock = block.number;

        vm.startBroadcast();
        Deployed memory d = deploy(p, deployer, operator);
        uint256[] memory miners;
        if (block.chainid == LOCAL) miners = installSimulatedNetwork(d);
        if (owner != deployer) {
            d.pinning.transferOwnership(owner);
            d.dealClient.transferOwnership(owner);
            d.oracle.transferOwnership(owner);
            d.dao.transferOwnership(owner);
        }
        vm.stopBroadcast();
        if (owner != deployer && ownerKey != 0) {
            vm.startBroadcast(ownerKey);
            d.pinning.acceptOwnership();
            d.dealClient.acceptOwnership();
            d.oracle.acceptOwnership();
            d.dao.acceptOwnership();
            vm.stopBroadcast();
        }
        write(p, d, owner, operator, startBlock, miners);
    }

    function deploy(Profile memory p, address deployer, address operator)
        internal
        returns (Deployed memory d)
    {
        d.codec = new DealCodec();
        d.pinning = new EstuaryPinning(deployer, p.refundDelay);
        d.perpetual = new PerpetualStorage(d.codec, p.claimWindow, p.minTerm, p.maxTerm, p.minBond);
        d.dealClient = new DealClient(deployer, d.codec, p.dealPolicy);
        d.oracle = new EstuaryOracle(deployer, p.jobTimeout, p.consumerCap);
        d.dao = new DataDAO(deployer, d.pinning, d.perpetual, p.votingPeriod, p.fundingPeriod, p.quorumBps);
        d.dealStateView = new DealStateView();
        d.providerRegistry = new ProviderRegistry();
        d.pinning.setOperator(operator, true);
        // Its direct deals (made without the market) are proven against this client's records.
        d.pinning.setDealClient(address(d.dealClient), true);
        d.dealClient.setOperator(operator, true);
        d.oracle.setOperator(operator, true);
        d.dao.setOperator(operator, true);
        d.pinning.setFee(p.pinFee);
        d.oracle.setBaseFee(EstuaryOracle.JobKind.Pin, p.pinBaseFee);
        d.oracle.setBaseFee(EstuaryOracle.JobKind.Store, p.storeBaseFee);
        d.oracle.setCallbackGasPrice(p.callbackGasPrice);
        d.dao.setOrderBudget(p.orderBudget);
        d.dao.setOrderTerms(p.orderTerms);
    }

    /// @notice The simulated actors (local chain only): market, precompile, codec, miners.
    function installSimulatedNetwork(Deployed memory d) internal returns (uint256[] memory miners) {
        setCode(MarketActor.ETH_ADDRESS, type(MarketSimulator).runtimeCode);
        setCode(FvmActor.CALL_ACTOR_ID, type(ActorCallForwarder).runtimeCode);
        setCode(SimActors.CODEC, type(DealCodec).runtimeCode);
        setCode(DataCapActor.ETH_ADDRESS, type(DataCapSimulator).runtimeCode);
        MarketSimulator market = MarketSimulator(payable(MarketActor.ETH_ADDRESS));
        market.setPolicy(
            MarketSimulator.Policy({
                minDuration: 300,
                maxDuration: 3_680_640,
                circulatingSupply: 600_000_000 ether,
                networkRawPower: 1 << 64,
                baselinePower: 1 << 66
            })
        );
        market.setDataCap(address(d.dealClient), 1 << 50);
        market.setDataCap(address(d.perpetual), 1 << 50);

        miners = vm.envOr("ESTUARY_SIM_MINERS", ",", defaultMiners());
        address[] memory controls = vm.envOr("ESTUARY_SIM_MINER_CONTROLS", ",", defaultControls());
        require(controls.length == miners.length, "Deploy: one control address per simulated miner");
        for (uint256 k; k < miners.length; ++k) {
            uint64 id = uint64(miners[k]);
            setCode(FilAddress.maskedAddress(id), type(MinerActorSimulator).runtimeCode);
            market.registerMiner(id, controls[k], controls[k], new address[](0));
            // Escrow for the miner's provider collateral.
            market.addBalance{value: 10 ether}(FilAddress.idAddress(id));
        }
    }

    function defaultMiners() internal pure returns (uint256[] memory ids) {
        ids = new uint256[](3);
        (ids[0], ids[1], ids[2]) = (1000, 1001, 1002);
    }

    function defaultControls() internal returns (address[] memory a) {
        a = new address[](3);
        for (uint32 k; k < 3; ++k) {
            a[k] = vm.addr(vm.deriveKey(ANVIL_MNEMONIC, k + 1));
        }
    }

    function write(
        Profile memory p,
        Deployed memory d,
        address owner,
        address operator,
        uint256 startBlock,
        uint256[] memory miners
    ) internal {
        string memory key = "deployment";
        vm.serializeUint(key, "chainId", block.chainid);
        vm.serializeString(key, "profile", p.name);
        vm.serializeUint(key, "startBlock", startBlock);
        vm.serializeAddress(key, "owner", owner);
        vm.serializeAddress(key, "operator", operator);
        vm.serializeAddress(key, "DealCodec", address(d.codec));
        vm.serializeAddress(key, "EstuaryPinning", address(d.pinning));
        vm.serializeAddress(key, "PerpetualStorage", address(d.perpetual));
        vm.serializeAddress(key, "DealClient", address(d.dealClient));
        vm.serializeAddress(key, "EstuaryOracle", address(d.oracle));
        vm.serializeAddress(key, "DealStateView", address(d.dealStateView));
        vm.serializeAddress(key, "ProviderRegistry", address(d.providerRegistry));
        vm.serializeAddress(key, "MarketActor", MarketActor.ETH_ADDRESS);
        vm.serializeUint(key, "simulatedMiners", miners);
        vm.serializeBool(key, "simulatedMarket", block.chainid == LOCAL);
        string memory json = vm.serializeAddress(key, "DataDAO", address(d.dao));
        string memory name = vm.envOr("ESTUARY_DEPLOY_NAME", vm.toString(block.chainid));
        string memory path = string.concat(vm.projectRoot(), "/deployments/", name, ".json");
        vm.writeJson(json, path);
        console.log("deployed; addresses in", path);
    }

    /// Puts runtime code at an address on the chain (anvil) and in the script's own EVM.
    function setCode(address target, bytes memory code) internal {
        string memory args = string.concat('["', vm.toString(target), '","', vm.toString(code), '"]');
        vm.rpc("anvil_setCode", args);
        vm.etch(target, code);
    }
}
