// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {Cbor} from "../../src/lib/Cbor.sol";
import {DataCapActor} from "../../src/lib/DataCapActor.sol";
import {DealCodec} from "../../src/lib/DealCodec.sol";
import {DealProposal} from "../../src/lib/DealProposal.sol";
import {FilAddress} from "../../src/lib/FilAddress.sol";
import {FvmActor} from "../../src/lib/FvmActor.sol";
import {MarketActor} from "../../src/lib/MarketActor.sol";
import {PoDSI} from "../../src/lib/PoDSI.sol";
import {DataCapSimulator} from "../../src/sim/DataCapSimulator.sol";
import {ActorCallForwarder, MarketSimulator} from "../../src/sim/MarketSimulator.sol";
import {MinerActorSimulator} from "../../src/sim/MinerActorSimulator.sol";
import {SimActors} from "../../src/sim/SimActors.sol";
import {Test} from "forge-std/Test.sol";

/// A deal client for tests of the market itself: authenticates every proposal (answering
/// AuthenticateMessage read-only, as a contract client must) and counts notifications.
contract AcceptingClient {
    uint256 public notified;
    uint64 public lastDealId;
    bytes public lastProposal;
    bool public refuseNotify;

    function setRefuseNotify(bool refuse) external {
        refuseNotify = refuse;
    }

    function handle_filecoin_method(uint64 method, uint64, bytes calldata params)
        external
        returns (uint32, uint64, bytes memory)
    {
        if (method == MarketActor.AUTHENTICATE_MESSAGE) return (0, 0x51, hex"f5");
        if (method == MarketActor.MARKET_NOTIFY_DEAL) {
            if (refuseNotify) revert("refused");
            (bytes memory proposal, uint256 i) = Cbor.readBytes(params, 1);
            (lastDealId,) = Cbor.readUint(params, i);
            lastProposal = proposal;
            notified += 1;
            return (0, 0, "");
        }
        return (22, 0, "");
    }

    receive() external payable {}
}

/// Installs the simulated Filecoin actors where the FEVM has the real ones, as the deploy script
/// does on a local chain, so the contracts under test run their production code path.
abstract contract FilecoinTest is Test {
    MarketSimulator internal market;
    /// The codec the contracts under test are deployed with.
    DealCodec internal codec;
    /// A client contract that accepts every deal (for tests of the market model).
    AcceptingClient internal acceptingClient;

    /// A v1 piece CID (fil-commitment-unsealed, sha2-256-trunc254-padded) with digest 0x11…
    bytes internal constant PIECE =
        hex"0181e2039220201111111111111111111111111111111111111111111111111111111111111111";
    bytes internal constant OTHER_PIECE =
        hex"0181e2039220202222222222222222222222222222222222222222222222222222222222222222";
    uint64 internal constant PIECE_SIZE = 1 << 20;
    /// A CAR that fits the piece.
    uint64 internal constant CAR_SIZE = 1_000_000;
    /// bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy
    bytes internal constant PAYLOAD =
        hex"01551220c7d01489080858c500065836c658f847a6ca67c4864619212be4f8200e4bbace";
    string internal constant PAYLOAD_TEXT = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy";

    /// The local profile's policy: deals from 300 epochs.
    int64 internal constant DEV_MIN_DURATION = 300;

    function installMarket() internal {
        vm.etch(MarketActor.ETH_ADDRESS, type(MarketSimulator).runtimeCode);
        vm.etch(FvmActor.CALL_ACTOR_ID, type(ActorCallForwarder).runtimeCode);
        vm.etch(SimActors.CODEC, type(DealCodec).runtimeCode);
        vm.etch(DataCapActor.ETH_ADDRESS, type(DataCapSimulator).runtimeCode);
        market = MarketSimulator(payable(MarketActor.ETH_ADDRESS));
        codec = new DealCodec();
        acceptingClient = new AcceptingClient();
    }

    /// The local chain's policy (deals from 300 epochs); the production one applies otherwise.
    function useDevPolicy() internal {
        market.setPolicy(
            MarketSimulator.Policy({
                minDuration: DEV_MIN_DURATION,
                maxDuration: 3_680_640,
                circulatingSupply: 600_000_000 ether,
                networkRawPower: 1 << 64,
                baselinePower: 1 << 66
            })
        );
    }

    /// Installs a miner actor at `0xff…<id>` controlled by `controller` (owner and worker), with
    /// 10 FIL of market escrow for provider collateral.
    function createMiner(uint64 id, address controller) internal returns (MinerActorSimulator miner) {
        vm.etch(FilAddress.maskedAddress(id), type(MinerActorSimulator).runtimeCode);
        market.registerMiner(id, controller, controller, new address[](0));
        vm.deal(address(this), address(this).balance + 10 ether);
        market.addBalance{value: 10 ether}(FilAddress.idAddress(id));
        return MinerActorSimulator(payable(FilAddress.maskedAddress(id)));
    }

    function minerAt(uint64 id) internal pure returns (MinerActorSimulator) {
        return MinerActorSimulator(payable(FilAddress.maskedAddress(id)));
    }

    /// A proposal from `client` (a contract) to `provider`, label `label` (text).
    function proposal(address client, uint64 provider, bytes memory piece, int64 start, int64 end)
        internal
        view
        returns (DealProposal.Fields memory f)
    {
        f.pieceCid = piece;
        f.pieceSize = PIECE_SIZE;
        f.client = FilAddress.delegatedAddress(client);
        f.provider = FilAddress.idAddress(provider);
        f.label = bytes(PAYLOAD_TEXT);
        f.labelIsText = true;
        f.start = start;
        f.end = end;
        f.providerCollateral = market.minProviderCollateral(PIECE_SIZE);
    }

    /// Publishes proposals as a PublishStorageDeals message sent by `controller`.
    function publish(address controller, bytes[] memory proposals) internal returns (uint64[] memory ids) {
        MarketSimulator.ClientDealProposal[] memory batch =
            new MarketSimulator.ClientDealProposal[](proposals.length);
        for (uint256 k; k < proposals.length; ++k) {
            batch[k] = MarketSimulator.ClientDealProposal(proposals[k], hex"dead");
        }
        vm.prank(controller);
        (ids,) = market.publishStorageDeals(batch);
    }

    function publishOne(address controller, bytes memory p) internal returns (uint64) {
        bytes[] memory ps = new bytes[](1);
        ps[0] = p;
        return publish(controller, ps)[0];
    }

    /// Activates market deal `dealId` of miner `provider` in `sector`, as its controller.
    function activateDeal(uint64 provider, address controller, uint64 dealId, uint64 sector)
        internal
        returns (bool)
    {
        uint64[] memory ids = new uint64[](1);
        ids[0] = dealId;
        vm.prank(controller);
        return minerAt(provider).activateDeals(sector, type(int64).max, ids)[0];
    }

    /// Terminates sector `sector` of miner `provider`.
    function terminateSector(uint64 provider, address controller, uint64 sector) internal {
        uint64[] memory sectors = new uint64[](1);
        sectors[0] = sector;
        vm.prank(controller);
        minerAt(provider).terminateSectors(sectors);
    }

    /// Runs the market's settlement (cron) for one deal.
    function settle(uint64 dealId) internal returns (int256) {
        uint64[] memory ids = new uint64[](1);
        ids[0] = dealId;
        return market.settleDealPayments(ids)[0];
    }

    /// Publishes a deal of `acceptingClient` for the piece (`commP`, `size`) by `provider` (as
    /// `controller`), starting in `delay` epochs and lasting the local profile's shortest term
    /// plus `extra` epochs (distinct `extra`s make distinct proposals within a block).
    function publishPiece(
        bytes32 commP,
        uint64 size,
        uint64 provider,
        address controller,
        int64 delay,
        int64 extra
    ) internal returns (uint64) {
        int64 start = int64(uint64(block.number)) + delay;
        DealProposal.Fields memory f = proposal(
            address(acceptingClient),
            provider,
            PoDSI.pieceCidOf(commP),
            start,
            start + DEV_MIN_DURATION + extra
        );
        f.pieceSize = size;
        f.providerCollateral = market.minProviderCollateral(size);
        return publishOne(controller, codec.encodeProposal(f));
    }

    /// A deal of `acceptingClient` for `piece` by `provider`, published and activated now,
    /// lasting `duration` epochs from the next block (`sector` = its deal ID).
    function activeDeal(bytes memory piece, uint64 provider, address controller, int64 duration)
        internal
        returns (uint64 dealId)
    {
        int64 start = int64(uint64(block.number)) + 1;
        dealId = publishOne(
            controller,
            codec.encodeProposal(proposal(address(acceptingClient), provider, piece, start, start + duration))
        );
        assertTrue(activateDeal(provider, controller, dealId, dealId), "activated");
    }

    function masked(uint64 id) internal pure returns (address) {
        return FilAddress.maskedAddress(id);
    }

    /// Calls an actor through `call_actor_id` from this test contract (as a contract would).
    function callActor(uint64 actorId, uint64 method, bytes memory params, uint256 value, bool readOnly)
        internal
        returns (bool ok, int256 exitCode, uint64 codec_, bytes memory ret)
    {
        return FvmActor.call(actorId, method, params, value, readOnly);
    }
}
