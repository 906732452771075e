// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {DealClient} from "../src/DealClient.sol";
import {Cbor} from "../src/lib/Cbor.sol";
import {FilAddress} from "../src/lib/FilAddress.sol";
import {MarketActor} from "../src/lib/MarketActor.sol";
import {Operated} from "../src/lib/Operated.sol";
import {MarketSimulator} from "../src/sim/MarketSimulator.sol";
import {FilecoinTest} from "./utils/FilecoinTest.sol";

contract DealClientTest is FilecoinTest {
    DealClient internal dc;
    address internal constant OWNER = address(0x0A);
    address internal constant ORACLE = address(0x0C);
    string internal constant LABEL = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy";

    function setUp() public {
        installMarket();
        dc = new DealClient(OWNER);
        vm.prank(OWNER);
        dc.setOperator(ORACLE, true);
    }

    function request() internal pure returns (DealClient.DealRequest memory r) {
        r.pieceCid = PIECE;
        r.pieceSize = 2048;
        r.label = LABEL;
        r.startEpoch = 100;
        r.endEpoch = 200;
        r.clientCollateral = 1 ether;
        r.provider = 1001;
        r.locationRef = "https://estuary.example/car/1";
        r.carSize = 1900;
    }

    function propose(DealClient.DealRequest memory r) internal returns (bytes32) {
        vm.prank(ORACLE);
        return dc.makeDealProposal(r);
    }

    function test_MakeDealProposal_EmitsFrc0068Event() public {
        vm.expectEmit(false, false, true, true, address(dc));
        emit DealClient.DealProposalCreate(bytes32(0), 2048, false, 0);
        bytes32 id = propose(request());
        assertEq(uint8(dc.getProposal(id).status), uint8(DealClient.Status.Proposed));
    }

    /// The proposal's CBOR, assembled here by hand from the market's DealProposal layout.
    function test_GetDealProposal_IsTheMarketsCbor() public {
        bytes32 id = propose(request());
        bytes memory want = bytes.concat(
            hex"8b", // array(11)
            hex"d82a5828", // tag 42, bytes(40)
            hex"00",
            PIECE,
            hex"190800", // 2048
            hex"f4", // not verified
            hex"56040a",
            abi.encodePacked(address(dc)), // client: f410 of the contract
            hex"4300e907", // provider: f01001
            hex"783b",
            bytes(LABEL),
            hex"1864", // start 100
            hex"18c8", // end 200
            hex"40", // price 0
            hex"40", // provider collateral 0
            hex"4900", // client collateral 1e18: sign byte and magnitude
            hex"0de0b6b3a7640000"
        );
        assertEq(dc.getDealProposal(id), want);
    }

    function test_GetExtraParams_IsBoostsV1Cbor() public {
        bytes32 id = propose(request());
        bytes memory want = bytes.concat(
            hex"84", hex"781d", bytes("https://estuary.example/car/1"), hex"19076c", hex"f4", hex"f4"
        );
        assertEq(dc.getExtraParams(id), want);
    }

    function test_RevertWhen_NotOperator() public {
        vm.expectRevert(abi.encodeWithSelector(Operated.NotOperator.selector, address(this)));
        dc.makeDealProposal(request());
    }

    function test_RevertWhen_BadRequest() public {
        DealClient.DealRequest memory r = request();
        r.pieceCid = PAYLOAD;
        vm.expectRevert(abi.encodeWithSelector(DealClient.DealClientBadRequest.selector, "pieceCid"));
        propose(r);
        r = request();
        r.pieceSize = 100;
        vm.expectRevert(abi.encodeWithSelector(DealClient.DealClientBadRequest.selector, "pieceSize"));
        propose(r);
        r = request();
        r.label = "";
        vm.expectRevert(abi.encodeWithSelector(DealClient.DealClientBadRequest.selector, "label"));
        propose(r);
        r = request();
        r.endEpoch = 100;
        vm.expectRevert(abi.encodeWithSelector(DealClient.DealClientBadRequest.selector, "epochs"));
        propose(r);
        r = request();
        r.locationRef = "";
        vm.expectRevert(abi.encodeWithSelector(DealClient.DealClientBadRequest.selector, "locationRef"));
        propose(r);
    }

    function test_RevertWhen_DuplicateTerms() public {
        bytes32 id = propose(request());
        vm.expectRevert(abi.encodeWithSelector(DealClient.DealClientDuplicate.selector, id));
        propose(request());
    }

    function test_RevertWhen_UnknownProposal() public {
        vm.expectRevert(
            abi.encodeWithSelector(DealClient.DealClientUnknownProposal.selector, bytes32(uint256(1)))
        );
        dc.getDealProposal(bytes32(uint256(1)));
    }

    /// The market authenticates and notifies: the deal is recorded.
    function test_PublishedThroughTheMarket() public {
        bytes32 id = propose(request());
        bytes memory proposal = dc.getDealProposal(id);
        vm.expectEmit(address(dc));
        emit DealClient.DealAuthenticated(id, 1001);
        vm.expectEmit(address(dc));
        emit DealClient.DealPublished(id, 1, 1001);
        uint64 dealId = market.publishContractDeal(address(dc), proposal);
        DealClient.Proposal memory p = dc.getProposal(id);
        assertEq(uint8(p.status), uint8(DealClient.Status.Published));
        assertEq(p.dealId, dealId);
        assertEq(p.provider, 1001);
        MarketSimulator.SimDeal memory d = market.deal(dealId);
        assertEq(d.pieceCid, PIECE);
        assertEq(d.provider, 1001);
        // A second publication of the same proposal is refused.
        vm.expectRevert(abi.encodeWithSelector(DealClient.DealClientAlreadyPublished.selector, id));
        market.publishContractDeal(address(dc), proposal);
    }

    function authParams(bytes memory proposal) internal pure returns (bytes memory) {
        return bytes.concat(Cbor.encodeArray(2), Cbor.encodeBytes(""), Cbor.encodeBytes(proposal));
    }

    /// A forged callback: right params, wrong caller.
    function test_RevertWhen_CallbackNotFromMarket() public {
        bytes32 id = propose(request());
        bytes memory params = authParams(dc.getDealProposal(id));
        vm.expectRevert(abi.encodeWithSelector(DealClient.DealClientNotMarket.selector, address(this)));
        dc.handle_filecoin_method(MarketActor.AUTHENTICATE_MESSAGE, 0x51, params);
        vm.expectRevert(abi.encodeWithSelector(DealClient.DealClientNotMarket.selector, address(this)));
        dc.handle_filecoin_method(MarketActor.MARKET_NOTIFY_DEAL, 0x51, params);
    }

    /// A deal for a piece, provider or epochs this contract never proposed is refused.
    function test_RevertWhen_ProposalNotMadeHere() public {
        bytes32 id = propose(request());
        DealClient.DealRequest memory r = request();
        r.pieceCid = OTHER_PIECE;
        bytes memory forged = dc.encodeProposal(r);
        vm.prank(MarketActor.ETH_ADDRESS);
        vm.expectRevert(abi.encodeWithSelector(DealClient.DealClientProposalMismatch.selector, "terms"));
        dc.handle_filecoin_method(MarketActor.AUTHENTICATE_MESSAGE, 0x51, authParams(forged));

        r = request();
        r.provider = 2002;
        bytes memory wrongProvider = dc.encodeProposal(r);
        vm.prank(MarketActor.ETH_ADDRESS);
        vm.expectRevert(abi.encodeWithSelector(DealClient.DealClientProposalMismatch.selector, "provider"));
        dc.handle_filecoin_method(MarketActor.AUTHENTICATE_MESSAGE, 0x51, authParams(wrongProvider));

        r = request();
        r.verifiedDeal = true;
        bytes memory wrongFlag = authParams(dc.encodeProposal(r));
        vm.prank(MarketActor.ETH_ADDRESS);
        vm.expectRevert(abi.encodeWithSelector(DealClient.DealClientProposalMismatch.selector, "verified"));
        dc.handle_filecoin_method(MarketActor.AUTHENTICATE_MESSAGE, 0x51, wrongFlag);
        assertEq(uint8(dc.getProposal(id).status), uint8(DealClient.Status.Proposed));
    }

    function test_AnyProvider_WhenNoneIsNamed() public {
        DealClient.DealRequest memory r = request();
        r.provider = 0;
        bytes32 id = propose(r);
        r.provider = 4242; // Boost puts its own ID in the proposal it publishes.
        market.publishContractDeal(address(dc), dc.encodeProposal(r));
        assertEq(dc.getProposal(id).provider, 4242);
    }

    function test_RevertWhen_UnsupportedMethod() public {
        vm.prank(MarketActor.ETH_ADDRESS);
        vm.expectRevert(abi.encodeWithSelector(DealClient.DealClientUnsupportedMethod.selector, 42));
        dc.handle_filecoin_method(42, 0x51, "");
    }

    function test_DataCapHook_OnlyFromDataCapActor() public {
        bytes memory params =
            bytes.concat(Cbor.encodeArray(2), Cbor.encodeUint(2233613279), Cbor.encodeBytes(hex"01"));
        vm.expectRevert(abi.encodeWithSelector(DealClient.DealClientNotDataCap.selector, address(this)));
        dc.handle_filecoin_method(MarketActor.DATACAP_RECEIVER_HOOK, 0x51, params);
        vm.expectEmit(address(dc));
        emit DealClient.DataCapReceived(hex"01");
        vm.prank(FilAddress.maskedAddress(7));
        (uint32 exitCode,,) = dc.handle_filecoin_method(MarketActor.DATACAP_RECEIVER_HOOK, 0x51, params);
        assertEq(exitCode, 0);
    }

    function test_AddMarketBalance_EscrowsForTheContract() public {
        vm.deal(address(dc), 3 ether);
        vm.expectEmit(address(dc));
        emit DealClient.MarketBalanceAdded(2 ether);
        vm.prank(OWNER);
        dc.addMarketBalance(2 ether);
        assertEq(market.escrow(FilAddress.delegatedAddress(address(dc))), 2 ether);
        assertEq(address(dc).balance, 1 ether);
    }

    /// Arbitrary parameters from the market never authenticate anything.
    function testFuzz_GarbageFromMarketNeverAuthenticates(bytes memory params) public {
        propose(request());
        vm.prank(MarketActor.ETH_ADDRESS);
        (bool ok,) = address(dc)
            .call(
                abi.encodeCall(
                    DealClient.handle_filecoin_method, (MarketActor.AUTHENTICATE_MESSAGE, 0x51, params)
                )
            );
        assertFalse(ok);
    }

    /// Concrete twin: a well-formed envelope around a truncated proposal.
    function test_GarbageFromMarketNeverAuthenticates_Concrete() public {
        testFuzz_GarbageFromMarketNeverAuthenticates(hex"824058208b");
    }
}
