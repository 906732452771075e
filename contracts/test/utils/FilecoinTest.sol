// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {FilAddress} from "../../src/lib/FilAddress.sol";
import {MarketActor} from "../../src/lib/MarketActor.sol";
import {ActorCallForwarder, MarketSimulator} from "../../src/sim/MarketSimulator.sol";
import {Test} from "forge-std/Test.sol";

/// Installs the simulated market where the FEVM has the real one, as the deploy script does on
/// a local chain, so the contracts under test run their production code path.
abstract contract FilecoinTest is Test {
    MarketSimulator internal market;

    /// A v1 piece CID (fil-commitment-unsealed, sha2-256-trunc254-padded) with digest 0x11…
    bytes internal constant PIECE =
        hex"0181e2039220201111111111111111111111111111111111111111111111111111111111111111";
    bytes internal constant OTHER_PIECE =
        hex"0181e2039220202222222222222222222222222222222222222222222222222222222222222222";
    uint64 internal constant PIECE_SIZE = 1 << 20;
    /// bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy
    bytes internal constant PAYLOAD =
        hex"01551220c7d01489080858c500065836c658f847a6ca67c4864619212be4f8200e4bbace";

    function installMarket() internal {
        vm.etch(MarketActor.ETH_ADDRESS, address(new MarketSimulator()).code);
        vm.etch(MarketActor.CALL_ACTOR_ID, address(new ActorCallForwarder()).code);
        market = MarketSimulator(MarketActor.ETH_ADDRESS);
    }

    /// Publishes and activates a deal for `piece` by `provider` running `duration` epochs from now.
    function activeDeal(bytes memory piece, uint64 size, uint64 provider, int64 duration, bool verified)
        internal
        returns (uint64 dealId)
    {
        int64 start = int64(uint64(block.number));
        dealId = market.publishDeal(piece, size, 1000, provider, start, start + duration, verified, "label");
        market.activate(dealId);
    }

    function masked(uint64 id) internal pure returns (address) {
        return FilAddress.maskedAddress(id);
    }
}
