// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {DealClient} from "../../src/DealClient.sol";
import {MarketActor} from "../../src/lib/MarketActor.sol";
import {MarketSimulator} from "../../src/sim/MarketSimulator.sol";
import {FilecoinTest} from "../utils/FilecoinTest.sol";
import {CommonBase} from "forge-std/Base.sol";
import {StdUtils} from "forge-std/StdUtils.sol";

/// Calls `handle_filecoin_method` from anyone with anything, and publishes real proposals through
/// the simulated market.
contract DealClientHandler is CommonBase, StdUtils {
    DealClient internal immutable dc;
    MarketSimulator internal immutable market;
    bytes internal piece;
    uint64[3] internal methods =
        [MarketActor.AUTHENTICATE_MESSAGE, MarketActor.MARKET_NOTIFY_DEAL, MarketActor.DATACAP_RECEIVER_HOOK];

    uint256 public acceptedFromOthers;
    uint256 public proposals;
    uint256 public published;
    bytes32[] internal ids;

    constructor(DealClient dc_, MarketSimulator market_, bytes memory piece_) {
        dc = dc_;
        market = market_;
        piece = piece_;
    }

    function forge(address sender, uint8 methodSeed, bytes calldata params, uint256 idSeed, bool realProposal)
        external
    {
        if (sender == MarketActor.ETH_ADDRESS || sender == address((uint160(0xff) << 152) | 7)) return;
        bytes memory p = params;
        if (realProposal && ids.length > 0) {
            bytes memory proposal = dc.getDealProposal(ids[idSeed % ids.length]);
            p = abi.encodePacked(hex"8240", bytes1(0x59), uint16(proposal.length), proposal);
        }
        vm.prank(sender);
        (bool ok,) = address(dc)
            .call(abi.encodeCall(DealClient.handle_filecoin_method, (methods[methodSeed % 3], 0x51, p)));
        if (ok) acceptedFromOthers += 1;
    }

    function propose(uint64 start, uint8 sizeLog) external {
        DealClient.DealRequest memory r;
        r.pieceCid = piece;
        r.pieceSize = uint64(1) << bound(sizeLog, 7, 35);
        r.label = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy";
        r.startEpoch = int64(uint64(bound(start, 0, 1e9)));
        r.endEpoch = r.startEpoch + 518_400;
        r.locationRef = "https://estuary.example/car";
        try dc.makeDealProposal(r) returns (bytes32 id) {
            ids.push(id);
            proposals += 1;
        } catch {}
    }

    function publish(uint256 idSeed) external {
        if (ids.length == 0) return;
        bytes memory proposal = dc.getDealProposal(ids[idSeed % ids.length]);
        try market.publishContractDeal(address(dc), proposal) {
            published += 1;
        } catch {}
    }
}

contract DealClientInvariantTest is FilecoinTest {
    DealClient internal dc;
    DealClientHandler internal handler;

    function setUp() public {
        installMarket();
        dc = new DealClient(address(this));
        handler = new DealClientHandler(dc, market, PIECE);
        dc.setOperator(address(handler), true);
        targetContract(address(handler));
    }

    /// `handle_filecoin_method` accepts nothing that did not come from the market (or, for the
    /// receiver hook, the DataCap actor).
    function invariant_AcceptsOnlyTheMarket() public view {
        assertEq(handler.acceptedFromOthers(), 0);
    }

    /// Each proposal is published at most once.
    function invariant_PublishedAtMostOncePerProposal() public view {
        assertLe(handler.published(), handler.proposals());
    }
}
