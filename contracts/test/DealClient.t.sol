// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {DealClient} from "../src/DealClient.sol";
import {Cbor} from "../src/lib/Cbor.sol";
import {DealCodec} from "../src/lib/DealCodec.sol";
import {DealProposal} from "../src/lib/DealProposal.sol";
import {FilAddress} from "../src/lib/FilAddress.sol";
import {MarketActor} from "../src/lib/MarketActor.sol";
import {Operated} from "../src/lib/Operated.sol";
import {MarketSimulator} from "../src/sim/MarketSimulator.sol";
import {MinerActorSimulator} from "../src/sim/MinerActorSimulator.sol";
import {FilecoinTest} from "./utils/FilecoinTest.sol";
import {Vm} from "forge-std/Vm.sol";

contract DealClientTest is FilecoinTest {
    DealClient internal dc;
    address internal constant OWNER = address(0x0A);
    address internal constant ORACLE = address(0x0C);
    address internal constant SP = address(0x5B);
    address internal constant SP2 = address(0x5C);
    address internal constant SP3 = address(0x5D);
    uint64 internal constant MINER = 1001;
    uint64 internal constant MINER2 = 1002;
    uint64 internal constant MINER3 = 1003;
    uint256 internal constant PER_BYTE = 1e5;
    /// Boost's garbage signature for contract deals (BLS type byte dropped by the market).
    bytes internal constant SIGNATURE = hex"dead";

    function setUp() public {
        installMarket();
        useDevPolicy();
        vm.roll(10_000);
        dc = new DealClient(OWNER, codec, policy());
        vm.prank(OWNER);
        dc.setOperator(ORACLE, true);
        createMiner(MINER, SP);
        createMiner(MINER2, SP2);
        createMiner(MINER3, SP3);
    }

    function policy() internal pure returns (DealClient.DealPolicy memory) {
        return DealClient.DealPolicy({
            minDuration: 300,
            maxDuration: 3_680_640,
            minStartDelay: 10,
            maxEndDelay: 3_680_640,
            minProviderCollateralPerByte: PER_BYTE,
            acceptDirect: true
        });
    }

    function request() internal view returns (DealClient.DealRequest memory r) {
        r.pieceCid = PIECE;
        r.pieceSize = PIECE_SIZE;
        r.label = PAYLOAD_TEXT;
        r.startEpoch = int64(uint64(block.number)) + 100;
        r.endEpoch = r.startEpoch + 1000;
        r.providerCollateral = PIECE_SIZE * PER_BYTE;
        r.provider = MINER;
        r.replicas = 1;
        r.locationRef = "https://estuary.example/car/1";
        r.carSize = CAR_SIZE;
    }

    function propose(DealClient.DealRequest memory r) internal returns (bytes32) {
        vm.prank(ORACLE);
        return dc.makeDealProposal(r);
    }

    // ------------------------------------------------------------------ Boost's flow

    /// What Boost's contract-deal monitor does with a `DealProposalCreate` event: read the id
    /// from the first topic, `getDealProposal` and `getExtraParams` by raw selector, put its own
    /// miner in as provider (keeping everything else), and check the proposal with an
    /// AuthenticateMessage from f05 (a StateCall, not read-only).
    function boostReads(Vm.Log memory created, uint64 miner) internal returns (bytes memory proposal) {
        assertEq(created.topics[0], keccak256("DealProposalCreate(bytes32,uint64,bool,uint256)"));
        bytes32 id = created.topics[1];
        (bool ok, bytes memory ret) = address(dc).staticcall(abi.encodeWithSelector(0xf4b2e4d8, id));
        assertTrue(ok, "getDealProposal");
        DealProposal.Fields memory f = codec.decodeProposal(abi.decode(ret, (bytes)));
        (ok, ret) = address(dc).staticcall(abi.encodeWithSelector(0x4634aed5, id));
        assertTrue(ok, "getExtraParams");
        bytes memory extra = abi.decode(ret, (bytes));
        (uint64 n, uint256 i) = Cbor.readArray(extra, 0);
        assertEq(n, 4);
        bytes memory location;
        (location, i) = Cbor.readText(extra, i);
        assertEq(location, "https://estuary.example/car/1");
        (uint64 carSize,) = Cbor.readUint(extra, i);
        assertEq(carSize, CAR_SIZE);
        assertTrue(f.labelIsText, "the label is text: Label.ToString() then cid.Parse");
        f.provider = FilAddress.idAddress(miner);
        proposal = codec.encodeProposal(f);
        vm.prank(MarketActor.ETH_ADDRESS);
        (uint32 exitCode,,) =
            dc.handle_filecoin_method(MarketActor.AUTHENTICATE_MESSAGE, 0x51, authParams(proposal));
        assertEq(exitCode, 0, "Boost's pre-check");
    }

    function authParams(bytes memory p) internal pure returns (bytes memory) {
        return bytes.concat(Cbor.encodeArray(2), Cbor.encodeBytes(SIGNATURE), Cbor.encodeBytes(p));
    }

    function notifyParams(bytes memory p, uint64 dealId) internal pure returns (bytes memory) {
        return bytes.concat(Cbor.encodeArray(2), Cbor.encodeBytes(p), Cbor.encodeUint(dealId));
    }

    function proposeAndRecord(DealClient.DealRequest memory r) internal returns (Vm.Log memory created) {
        vm.recordLogs();
        propose(r);
        Vm.Log[] memory logs = vm.getRecordedLogs();
        assertEq(logs.length, 2, "DealProposalCreate and DealProposalOffered");
        return logs[0];
    }

    /// The whole contract-deal flow, the way Boost and the market run it: event →
    /// getDealProposal/getExtraParams → AuthenticateMessage (Boost's check, then the market's,
    /// read-only) → PublishStorageDeals → MarketNotifyDeal with the normalized proposal →
    /// activation (the market's, and the miner's notification to the client).
    function test_BoostFlow_EndToEnd() public {
        Vm.Log memory created = proposeAndRecord(request());
        bytes32 id = created.topics[1];
        bytes memory p = boostReads(created, MINER);

        vm.expectEmit(address(dc));
        emit DealClient.DealPublished(id, 0, MINER);
        uint64 dealId = publishOne(SP, p);
        assertEq(dealId, 0);
        DealClient.ProposalView memory v = dc.getProposal(id);
        assertEq(v.deals.length, 1);
        assertEq(v.deals[0].provider, MINER);
        assertEq(v.deals[0].dealId, 0);
        assertEq(v.deals[0].activated, -1);
        assertEq(dc.proposalOfDeal(0), id);
        // The market stored (and notified) the normalized proposal: f0 client and provider.
        DealProposal.Fields memory stored = codec.decodeProposal(market.dealProposal(dealId));
        assertEq(stored.client, FilAddress.idAddress(market.actorIdOf(address(dc))));
        assertEq(stored.provider, FilAddress.idAddress(MINER));

        // The SP proves the sector, notifying the market and the client.
        MinerActorSimulator.SectorActivation[] memory sectors = sectorWith(dealId, 42, true);
        vm.expectEmit(address(dc));
        emit DealClient.DealActivated(id, MINER, dealId, 42);
        vm.prank(SP);
        bool[] memory accepted = minerAt(MINER).proveCommitSectors3(sectors, true);
        assertTrue(accepted[0] && accepted[1]);
        (, int256 code,, bytes memory ret) =
            callActor(5, MarketActor.GET_DEAL_ACTIVATION, Cbor.encodeUint(dealId), 0, true);
        assertEq(code, 0);
        assertEq(ret, bytes.concat(hex"82", Cbor.encodeInt(int64(uint64(block.number))), hex"20"));
        assertEq(dc.getProposal(id).deals[0].activated, int64(uint64(block.number)));
        assertEq(dc.getProposal(id).deals[0].sector, 42);
    }

    /// A sector holding market deal `dealId`, notifying the market and (optionally) the client.
    function sectorWith(uint64 dealId, uint64 sector, bool notifyClient)
        internal
        view
        returns (MinerActorSimulator.SectorActivation[] memory s)
    {
        s = new MinerActorSimulator.SectorActivation[](1);
        s[0].sector = sector;
        s[0].expiration = type(int64).max;
        s[0].pieces = new MinerActorSimulator.PieceActivation[](1);
        s[0].pieces[0].pieceCid = PIECE;
        s[0].pieces[0].size = PIECE_SIZE;
        s[0].pieces[0].notify = new MinerActorSimulator.Notification[](notifyClient ? 2 : 1);
        s[0].pieces[0].notify[0] = MinerActorSimulator.Notification(hex"0005", Cbor.encodeUint(dealId));
        if (notifyClient) {
            s[0].pieces[0].notify[1] = MinerActorSimulator.Notification(
                FilAddress.delegatedAddress(address(dc)), Cbor.encodeUint(dealId)
            );
        }
    }

    /// The same flow with the proposal twice in one PublishStorageDeals batch: the market drops
    /// the duplicate, and the client is notified (and records the deal) once.
    function test_BoostFlow_TwoIdenticalProposalsInOneBatch() public {
        Vm.Log memory created = proposeAndRecord(request());
        bytes memory p = boostReads(created, MINER);
        bytes[] memory ps = new bytes[](2);
        ps[0] = p;
        ps[1] = p;
        uint64[] memory ids = publish(SP, ps);
        assertEq(ids.length, 1);
        assertEq(dc.getProposal(created.topics[1]).deals.length, 1);
        // Had the market notified it twice, the client itself refuses the second.
        bytes memory params = notifyParams(market.dealProposal(ids[0]), 9);
        vm.prank(MarketActor.ETH_ADDRESS);
        vm.expectRevert(
            abi.encodeWithSelector(DealClient.DealClientReplicasFilled.selector, created.topics[1])
        );
        dc.handle_filecoin_method(MarketActor.MARKET_NOTIFY_DEAL, 0x51, params);
    }

    /// The same flow with the price changed by the provider: Boost's own check and the market's
    /// read-only AuthenticateMessage both refuse it; nothing is published.
    function test_BoostFlow_ChangedPriceIsRefused() public {
        Vm.Log memory created = proposeAndRecord(request());
        bytes memory p = boostReads(created, MINER);
        DealProposal.Fields memory f = codec.decodeProposal(p);
        f.price = 1;
        bytes memory changed = codec.encodeProposal(f);
        vm.prank(MarketActor.ETH_ADDRESS);
        vm.expectPartialRevert(DealClient.DealClientNotOffered.selector);
        dc.handle_filecoin_method(MarketActor.AUTHENTICATE_MESSAGE, 0x51, authParams(changed));
        MarketSimulator.Rejection[] memory why = new MarketSimulator.Rejection[](1);
        why[0] = MarketSimulator.Rejection.AuthenticationFailed;
        MarketSimulator.ClientDealProposal[] memory batch = new MarketSimulator.ClientDealProposal[](1);
        batch[0] = MarketSimulator.ClientDealProposal(changed, SIGNATURE);
        vm.prank(SP);
        vm.expectRevert(abi.encodeWithSelector(MarketSimulator.MarketSimulatorAllDealsInvalid.selector, why));
        market.publishStorageDeals(batch);
        assertEq(dc.getProposal(created.topics[1]).deals.length, 0);
    }

    /// Any term changed (piece, size, verified, label text or type, epochs, price, either
    /// collateral) is refused by AuthenticateMessage.
    function testFuzz_AnyChangedTermIsRefused(uint8 field, uint64 delta) public {
        bytes32 id = propose(request());
        DealProposal.Fields memory f = codec.decodeProposal(dc.getDealProposal(id));
        delta = uint64(bound(delta, 1, 1000));
        field %= 10;
        if (field == 0) f.pieceCid = OTHER_PIECE;
        else if (field == 1) f.pieceSize *= 2;
        else if (field == 2) f.verified = !f.verified;
        else if (field == 3) f.label = "bafkqaaa";
        else if (field == 4) f.labelIsText = false;
        else if (field == 5) f.start += int64(delta);
        else if (field == 6) f.end += int64(delta);
        else if (field == 7) f.price += delta;
        else if (field == 8) f.providerCollateral += delta;
        else f.clientCollateral += delta;
        bytes memory params = authParams(codec.encodeProposal(f));
        vm.prank(MarketActor.ETH_ADDRESS);
        vm.expectPartialRevert(DealClient.DealClientNotOffered.selector);
        dc.handle_filecoin_method(MarketActor.AUTHENTICATE_MESSAGE, 0x51, params);
    }

    /// Concrete twin: the provider collateral changed by one attoFIL.
    function test_AnyChangedTermIsRefused_Concrete() public {
        testFuzz_AnyChangedTermIsRefused(8, 1);
    }

    /// AuthenticateMessage is pure: it writes nothing and emits nothing (the market sends it
    /// read-only), so it works in a STATICCALL.
    function test_AuthenticateMessage_IsPure() public {
        bytes32 id = propose(request());
        bytes memory params = authParams(dc.getDealProposal(id));
        vm.record();
        vm.recordLogs();
        vm.prank(MarketActor.ETH_ADDRESS);
        (bool ok, bytes memory ret) = address(dc)
            .staticcall(
                abi.encodeCall(
                    DealClient.handle_filecoin_method, (MarketActor.AUTHENTICATE_MESSAGE, 0x51, params)
                )
            );
        assertTrue(ok);
        (uint32 exitCode, uint64 retCodec, bytes memory value) = abi.decode(ret, (uint32, uint64, bytes));
        assertEq(exitCode, 0);
        assertEq(retCodec, 0x51);
        assertEq(value, hex"f5", "CBOR true");
        (, bytes32[] memory writes) = vm.accesses(address(dc));
        assertEq(writes.length, 0);
        assertEq(vm.getRecordedLogs().length, 0);
    }

    /// A named provider must be the one in the proposal.
    function test_NamedProviderMustMatch() public {
        bytes32 id = propose(request());
        DealProposal.Fields memory f = codec.decodeProposal(dc.getDealProposal(id));
        f.provider = FilAddress.idAddress(MINER2);
        bytes memory params = authParams(codec.encodeProposal(f));
        vm.prank(MarketActor.ETH_ADDRESS);
        vm.expectPartialRevert(DealClient.DealClientNotOffered.selector);
        dc.handle_filecoin_method(MarketActor.AUTHENTICATE_MESSAGE, 0x51, params);
        f.provider = hex"0155"; // not an ID address
        params = authParams(codec.encodeProposal(f));
        vm.prank(MarketActor.ETH_ADDRESS);
        vm.expectPartialRevert(DealClient.DealClientBadProvider.selector);
        dc.handle_filecoin_method(MarketActor.AUTHENTICATE_MESSAGE, 0x51, params);
    }

    /// A proposal open to any provider takes up to `replicas` deals, one per provider.
    function test_AnyProvider_OneDealPerProviderAndReplica() public {
        DealClient.DealRequest memory r = request();
        r.provider = 0;
        r.replicas = 2;
        bytes32 id = propose(r);
        bytes memory any = dc.getDealProposal(id);
        publishOne(SP, market.withProvider(any, MINER));
        bytes memory again = market.withProvider(any, MINER);
        vm.prank(MarketActor.ETH_ADDRESS);
        vm.expectRevert(abi.encodeWithSelector(DealClient.DealClientAlreadyPublished.selector, id, MINER));
        dc.handle_filecoin_method(MarketActor.AUTHENTICATE_MESSAGE, 0x51, authParams(again));
        publishOne(SP2, market.withProvider(any, MINER2));
        bytes memory third = market.withProvider(any, MINER3);
        vm.prank(MarketActor.ETH_ADDRESS);
        vm.expectRevert(abi.encodeWithSelector(DealClient.DealClientReplicasFilled.selector, id));
        dc.handle_filecoin_method(MarketActor.AUTHENTICATE_MESSAGE, 0x51, authParams(third));
        DealClient.ProposalView memory v = dc.getProposal(id);
        assertEq(v.deals.length, 2);
        assertEq(v.deals[1].provider, MINER2);
        assertEq(v.deals[1].dealId, 1);
    }

    /// MarketNotifyDeal with the f410 client and the normalized (f0) one both match: the
    /// client field is this contract by construction (the market sends the call to it).
    function test_MarketNotifyDeal_AcceptsTheNormalizedProposal() public {
        bytes32 id = propose(request());
        DealProposal.Fields memory f = codec.decodeProposal(dc.getDealProposal(id));
        f.client = FilAddress.idAddress(123_456);
        bytes memory params = notifyParams(codec.encodeProposal(f), 5);
        vm.prank(MarketActor.ETH_ADDRESS);
        dc.handle_filecoin_method(MarketActor.MARKET_NOTIFY_DEAL, 0x51, params);
        assertEq(dc.getProposal(id).deals[0].dealId, 5);
    }

    // ------------------------------------------------------------------ proposals

    function test_MakeDealProposal_EmitsFrc0068Event() public {
        DealClient.DealRequest memory r = request();
        vm.expectEmit(false, false, true, true, address(dc));
        emit DealClient.DealProposalCreate(bytes32(0), PIECE_SIZE, false, 0);
        vm.expectEmit(false, true, false, true, address(dc));
        emit DealClient.DealProposalOffered(bytes32(0), MINER, PIECE, PIECE_SIZE, r.startEpoch, r.endEpoch, 1);
        bytes32 id = propose(r);
        assertEq(dc.getProposal(id).proposer, ORACLE);
    }

    /// The proposal's CBOR, assembled here by hand from the market's DealProposal layout.
    function test_GetDealProposal_IsTheMarketsCbor() public {
        DealClient.DealRequest memory r = request();
        r.pieceSize = 2048;
        r.carSize = 2000;
        r.providerCollateral = 1 ether;
        r.startEpoch = 10_100;
        r.endEpoch = 11_100;
        bytes32 id = propose(r);
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
            bytes(PAYLOAD_TEXT),
            hex"192774", // start 10100
            hex"192b5c", // end 11100
            hex"40", // price 0
            hex"4900", // provider collateral 1e18: sign byte and magnitude
            hex"0de0b6b3a7640000",
            hex"40" // client collateral 0
        );
        assertEq(dc.getDealProposal(id), want);
    }

    function test_GetExtraParams_IsBoostsV1Cbor() public {
        bytes32 id = propose(request());
        bytes memory want = bytes.concat(
            hex"84", hex"781d", bytes("https://estuary.example/car/1"), hex"1a000f4240", hex"f4", hex"f4"
        );
        assertEq(dc.getExtraParams(id), want);
    }

    function test_RevertWhen_NotOperator() public {
        DealClient.DealRequest memory r = request();
        vm.expectRevert(abi.encodeWithSelector(Operated.NotOperator.selector, address(this)));
        dc.makeDealProposal(r);
    }

    function expectRefused(DealClient.DealRequest memory r, bytes memory err) internal {
        vm.prank(ORACLE);
        vm.expectRevert(err);
        dc.makeDealProposal(r);
    }

    /// What the market or Boost would refuse later is refused now, with a specific error.
    function test_RevertWhen_RequestWouldBeRefusedLater() public {
        DealClient.DealRequest memory r = request();
        r.pieceCid = PAYLOAD;
        expectRefused(r, abi.encodeWithSelector(DealClient.DealClientBadPieceCid.selector));
        r = request();
        r.pieceSize = 1000;
        expectRefused(r, abi.encodeWithSelector(DealClient.DealClientBadPieceSize.selector, 1000));
        r = request();
        r.label = "not a cid";
        expectRefused(r, abi.encodeWithSelector(DealClient.DealClientBadLabel.selector));
        r.label = "Bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy";
        expectRefused(r, abi.encodeWithSelector(DealClient.DealClientBadLabel.selector));
        r = request();
        int64 earliest = int64(uint64(block.number)) + 10;
        r.startEpoch = earliest - 1;
        expectRefused(
            r, abi.encodeWithSelector(DealClient.DealClientBadStart.selector, earliest - 1, earliest)
        );
        r = request();
        r.endEpoch = r.startEpoch + 299;
        expectRefused(
            r, abi.encodeWithSelector(DealClient.DealClientBadDuration.selector, 299, 300, 3_680_640)
        );
        r = request();
        r.startEpoch = int64(uint64(block.number)) + 100;
        r.endEpoch = r.startEpoch + 3_680_640;
        int64 latest = int64(uint64(block.number)) + 3_680_640;
        expectRefused(r, abi.encodeWithSelector(DealClient.DealClientBadEnd.selector, r.endEpoch, latest));
        r = request();
        r.providerCollateral = 0;
        expectRefused(
            r,
            abi.encodeWithSelector(DealClient.DealClientCollateralTooLow.selector, 0, PIECE_SIZE * PER_BYTE)
        );
        r = request();
        r.replicas = 2;
        expectRefused(r, abi.encodeWithSelector(DealClient.DealClientBadReplicas.selector, 2));
        r.provider = 0;
        r.replicas = 17;
        expectRefused(r, abi.encodeWithSelector(DealClient.DealClientBadReplicas.selector, 17));
        r = request();
        r.locationRef = "";
        expectRefused(r, abi.encodeWithSelector(DealClient.DealClientBadLocation.selector));
        r = request();
        r.carSize = PIECE_SIZE;
        expectRefused(
            r, abi.encodeWithSelector(DealClient.DealClientBadCarSize.selector, PIECE_SIZE, PIECE_SIZE)
        );
        r = request();
        r.storagePricePerEpoch = 1 gwei;
        expectRefused(r, abi.encodeWithSelector(DealClient.DealClientEscrowTooLow.selector, 1000 gwei, 0));
    }

    /// A CIDv0 label (base58btc `Qm…`) is a CID's text too.
    function test_MakeDealProposal_AcceptsCidV0Label() public {
        DealClient.DealRequest memory r = request();
        r.label = "QmaozNR7DZHQK1ZcU9p7QdrshMvXqWK6gpu5rmrkPdT3L4";
        propose(r);
    }

    function test_RevertWhen_DuplicateTerms() public {
        bytes32 id = propose(request());
        expectRefused(request(), abi.encodeWithSelector(DealClient.DealClientDuplicate.selector, id));
        vm.prank(ORACLE);
        dc.cancelDealProposal(id);
        propose(request());
    }

    function test_RevertWhen_UnknownProposal() public {
        vm.expectRevert(
            abi.encodeWithSelector(DealClient.DealClientUnknownProposal.selector, bytes32(uint256(1)))
        );
        dc.getDealProposal(bytes32(uint256(1)));
    }

    /// A cancelled proposal authenticates no more; anyone may cancel it once its start passed.
    function test_Cancel_ClosesTheProposal() public {
        bytes32 id = propose(request());
        bytes memory params = authParams(dc.getDealProposal(id));
        vm.expectRevert(abi.encodeWithSelector(DealClient.DealClientNotCancellable.selector, id));
        dc.cancelDealProposal(id);
        vm.roll(uint64(request().startEpoch) + 1);
        vm.expectEmit(address(dc));
        emit DealClient.DealProposalCancelled(id);
        dc.cancelDealProposal(id);
        vm.prank(MarketActor.ETH_ADDRESS);
        vm.expectRevert(abi.encodeWithSelector(DealClient.DealClientProposalClosed.selector, id));
        dc.handle_filecoin_method(MarketActor.AUTHENTICATE_MESSAGE, 0x51, params);
    }

    /// A forged callback: right params, wrong caller.
    function test_RevertWhen_CallbackNotFromMarket() public {
        bytes32 id = propose(request());
        bytes memory params = authParams(dc.getDealProposal(id));
        vm.expectRevert(abi.encodeWithSelector(DealClient.DealClientNotMarket.selector, address(this)));
        dc.handle_filecoin_method(MarketActor.AUTHENTICATE_MESSAGE, 0x51, params);
        vm.expectRevert(abi.encodeWithSelector(DealClient.DealClientNotMarket.selector, address(this)));
        dc.handle_filecoin_method(MarketActor.MARKET_NOTIFY_DEAL, 0x51, params);
        vm.expectRevert(abi.encodeWithSelector(DealClient.DealClientNotMiner.selector, address(this)));
        dc.handle_filecoin_method(MarketActor.SECTOR_CONTENT_CHANGED, 0x51, hex"80");
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

    // ------------------------------------------------------------------ escrow

    /// The owner escrows FIL for priced deals and takes back what no open replica needs
    /// (WithdrawBalance: the market sends it to the contract with method 0).
    function test_Escrow_AddReserveAndWithdraw() public {
        vm.deal(address(dc), 3 ether);
        vm.expectEmit(address(dc));
        emit DealClient.MarketBalanceAdded(2 ether);
        vm.prank(OWNER);
        dc.addMarketBalance(2 ether);
        (uint256 balance,) = market.escrowOf(market.actorIdOf(address(dc)));
        assertEq(balance, 2 ether);
        assertEq(address(dc).balance, 1 ether);

        DealClient.DealRequest memory r = request();
        r.storagePricePerEpoch = 1e15; // 1000 epochs: 1 FIL
        bytes32 id = propose(r);
        assertEq(dc.reservedEscrow(), 1 ether);
        vm.prank(OWNER);
        vm.expectRevert(
            abi.encodeWithSelector(DealClient.DealClientEscrowReserved.selector, 2 ether, 1 ether)
        );
        dc.withdrawMarketBalance(2 ether);

        // Published: the market locks the replica's requirement; the reservation is released.
        publishOne(SP, dc.getDealProposal(id));
        assertEq(dc.reservedEscrow(), 0);
        vm.prank(OWNER);
        assertEq(dc.withdrawMarketBalance(1 ether), 1 ether);
        assertEq(address(dc).balance, 2 ether);
        address payable treasury = payable(address(0x7EA5));
        vm.expectEmit(address(dc));
        emit DealClient.Withdrawn(treasury, 2 ether);
        vm.prank(OWNER);
        dc.withdraw(treasury, 2 ether);
        assertEq(treasury.balance, 2 ether);
    }

    // ------------------------------------------------------------------ Curio (mk20 DDO)

    function curioView(bytes32 id) internal view returns (DealClient.CurioDealView memory v) {
        DealClient.DealRequest memory r = request();
        v.dealId = uint256(id);
        v.state = DealClient.CurioDealState.Open;
        v.providerActorId = MINER;
        v.clientId = hex"0101";
        v.pieceCidV2 = codec.pieceCidV2(PIECE, CAR_SIZE);
        v.startEpoch = uint256(uint64(r.startEpoch));
        v.duration = 1000;
    }

    function test_Curio_VersionAndVerifyDeal() public {
        assertEq(dc.version(), 1);
        bytes32 id = propose(request());
        DealClient.CurioDealView memory v = curioView(id);
        assertTrue(dc.verifyDeal(v));
        v.startEpoch = 0; // "not used"
        assertTrue(dc.verifyDeal(v));
        v.providerActorId = MINER2;
        assertFalse(dc.verifyDeal(v), "another provider");
        v = curioView(id);
        v.pieceCidV2 = codec.pieceCidV2(PIECE, CAR_SIZE - 1);
        assertFalse(dc.verifyDeal(v), "another payload size");
        v = curioView(id);
        v.duration = 999;
        assertFalse(dc.verifyDeal(v));
        v = curioView(id);
        v.allocationId = 5;
        assertFalse(dc.verifyDeal(v), "no verified allocations");
        v = curioView(id);
        v.state = DealClient.CurioDealState.Active;
        assertFalse(dc.verifyDeal(v));
        v.dealId = 1234;
        vm.expectRevert(abi.encodeWithSelector(DealClient.DealNotFound.selector, 1234));
        dc.verifyDeal(v);
        vm.expectRevert(abi.encodeWithSelector(DealClient.DealNotFound.selector, 1234));
        dc.getDealState(1234);
    }

    /// Curio's `market_deal_id` is a uint64: a proposal's number names it as its id does.
    function test_Curio_DealIdIsTheProposalNumber() public {
        bytes32 id = propose(request());
        uint64 n = dc.proposalNumber(id);
        assertEq(n, dc.proposalCount());
        assertEq(keccak256(abi.encode(address(dc), uint256(n))), id);
        DealClient.CurioDealView memory v = curioView(id);
        v.dealId = n;
        assertTrue(dc.verifyDeal(v));
        assertEq(uint8(dc.getDealState(n)), uint8(DealClient.CurioDealState.Open));
        v.providerActorId = MINER2;
        assertFalse(dc.verifyDeal(v), "another provider, by number");
        v.dealId = uint256(n) + 1;
        vm.expectRevert(abi.encodeWithSelector(DealClient.DealNotFound.selector, uint256(n) + 1));
        dc.verifyDeal(v);
        vm.expectRevert(abi.encodeWithSelector(DealClient.DealNotFound.selector, 0));
        dc.getDealState(0);
        vm.expectRevert(
            abi.encodeWithSelector(DealClient.DealClientUnknownProposal.selector, bytes32(uint256(7)))
        );
        dc.proposalNumber(bytes32(uint256(7)));
    }

    /// A deal ID naming no proposal, by number or by id, is not found.
    function testFuzz_Curio_UnknownDealIdIsNotFound(uint256 dealId) public {
        bytes32 id = propose(request());
        vm.assume(dealId > dc.proposalCount() && dealId != uint256(id));
        vm.expectRevert(abi.encodeWithSelector(DealClient.DealNotFound.selector, dealId));
        dc.getDealState(dealId);
    }

    function test_Curio_UnknownDealIdIsNotFound() public {
        testFuzz_Curio_UnknownDealIdIsNotFound(2);
    }

    /// FRC-0069 piece CID v2 vectors of go-fil-commcid's `TestMultihashes`.
    function test_PieceCidV2_MatchesGoFilCommcid() public view {
        bytes memory root = hex"496dae0cc9e265efe5a006e80626a5dc5c409e5d3155c13984caf6c8d5cfd605";
        assertEq(
            codec.pieceCidV2(bytes.concat(hex"0181e203922020", root), 508),
            bytes.concat(hex"0155912022", hex"0004", root)
        );
        root = hex"05de6815dcb348843215a94de532954b60be550a4bec6e74555665e9a5ec4e0f";
        assertEq(
            codec.pieceCidV2(bytes.concat(hex"0181e203922020", root), 512),
            bytes.concat(hex"0155912023", hex"f80305", root)
        );
    }

    /// A deal made through Curio (DDO) reports activation with the proposal id as payload;
    /// Curio's state moves Open → Active → Finalized.
    function test_Curio_DdoActivationFromSectorContentChanged() public {
        bytes32 id = propose(request());
        assertEq(uint8(dc.getDealState(uint256(id))), uint8(DealClient.CurioDealState.Open));
        MinerActorSimulator.SectorActivation[] memory s = directActivation(id);
        vm.prank(SP2);
        assertFalse(minerAt(MINER2).proveCommitSectors3(s, false)[0], "not the named miner");
        vm.expectEmit(address(dc));
        emit DealClient.DealActivated(id, MINER, dc.NO_DEAL(), 9);
        vm.prank(SP);
        assertTrue(minerAt(MINER).proveCommitSectors3(s, true)[0]);
        DealClient.ProposalView memory v = dc.getProposal(id);
        assertEq(v.deals.length, 1);
        assertEq(v.deals[0].dealId, dc.NO_DEAL());
        assertEq(uint8(dc.getDealState(uint256(id))), uint8(DealClient.CurioDealState.Active));
        assertFalse(dc.verifyDeal(curioView(id)), "no replica left");
        vm.roll(uint64(request().endEpoch));
        assertEq(uint8(dc.getDealState(uint256(id))), uint8(DealClient.CurioDealState.Finalized));
    }

    /// A sector holding the request's piece whose activation notifies this contract with `id`
    /// as payload (a deal made without the market).
    function directActivation(bytes32 id)
        internal
        view
        returns (MinerActorSimulator.SectorActivation[] memory s)
    {
        s = new MinerActorSimulator.SectorActivation[](1);
        s[0].sector = 9;
        s[0].expiration = request().endEpoch;
        s[0].pieces = new MinerActorSimulator.PieceActivation[](1);
        s[0].pieces[0].pieceCid = PIECE;
        s[0].pieces[0].size = PIECE_SIZE;
        s[0].pieces[0].notify = new MinerActorSimulator.Notification[](1);
        s[0].pieces[0].notify[0] =
            MinerActorSimulator.Notification(FilAddress.delegatedAddress(address(dc)), abi.encodePacked(id));
    }

    /// An owner that refuses direct deals (`acceptDirect` false): Curio's check says no, and a
    /// sector's activation naming the proposal is refused, by the named miner or by any miner
    /// for a proposal open to all; nothing is recorded. Accepting them again lets the same
    /// activation through.
    function testFuzz_Curio_DirectDealsRefusedByPolicy(bool anyProvider, uint8 minerSeed) public {
        DealClient.DealPolicy memory p = policy();
        p.acceptDirect = false;
        vm.expectEmit(address(dc));
        emit DealClient.DealPolicySet(p);
        vm.prank(OWNER);
        dc.setDealPolicy(p);
        DealClient.DealRequest memory r = request();
        uint64[3] memory miners = [MINER, MINER2, MINER3];
        address[3] memory controllers = [SP, SP2, SP3];
        uint256 k = anyProvider ? minerSeed % 3 : 0;
        if (anyProvider) {
            r.provider = 0;
            r.replicas = 2;
        }
        bytes32 id = propose(r);
        DealClient.CurioDealView memory v = curioView(id);
        v.providerActorId = miners[k];
        assertFalse(dc.verifyDeal(v), "Curio is told no");
        v.dealId = dc.proposalNumber(id);
        assertFalse(dc.verifyDeal(v), "by number too");
        MinerActorSimulator.SectorActivation[] memory s = directActivation(id);
        vm.recordLogs();
        vm.prank(controllers[k]);
        assertFalse(minerAt(miners[k]).proveCommitSectors3(s, false)[0], "activation refused");
        Vm.Log[] memory logs = vm.getRecordedLogs();
        for (uint256 j; j < logs.length; ++j) {
            assertTrue(logs[j].emitter != address(dc), "no event of the contract's");
        }
        assertEq(dc.getProposal(id).deals.length, 0, "nothing recorded");
        assertEq(uint8(dc.getDealState(uint256(id))), uint8(DealClient.CurioDealState.Open));

        p.acceptDirect = true;
        vm.prank(OWNER);
        dc.setDealPolicy(p);
        assertTrue(dc.verifyDeal(v), "accepted again");
        vm.prank(controllers[k]);
        assertTrue(minerAt(miners[k]).proveCommitSectors3(s, true)[0]);
        assertEq(dc.getProposal(id).deals[0].dealId, dc.NO_DEAL());
    }

    function test_Curio_DirectDealsRefusedByPolicy() public {
        testFuzz_Curio_DirectDealsRefusedByPolicy(false, 0);
    }

    function test_Curio_DirectDealsRefusedByPolicyForAnyMiner() public {
        testFuzz_Curio_DirectDealsRefusedByPolicy(true, 2);
    }

    /// An account actor (not a miner) cannot take a replica open to any provider by sending
    /// SectorContentChanged itself.
    function test_SectorContentChanged_OnlyFromAMinerActor() public {
        sectorContentChangedOnlyFromAMinerActor(0);
    }

    /// A proposal naming an ID that an account holds: the account's notice is refused too (it
    /// has no sector).
    function test_SectorContentChanged_OnlyFromAMinerActor_Named() public {
        sectorContentChangedOnlyFromAMinerActor(5555);
    }

    function sectorContentChangedOnlyFromAMinerActor(uint64 named) internal {
        DealClient.DealRequest memory r = request();
        r.provider = named;
        bytes32 id = propose(r);
        bytes memory piece = bytes.concat(
            hex"83",
            Cbor.encodeCid(PIECE),
            Cbor.encodeUint(PIECE_SIZE),
            Cbor.encodeBytes(abi.encodePacked(id))
        );
        bytes memory params = bytes.concat(
            hex"81", hex"83", Cbor.encodeUint(1), Cbor.encodeInt(type(int64).max), hex"81", piece
        );
        vm.prank(FilAddress.maskedAddress(5555));
        (uint32 code,, bytes memory ret) =
            dc.handle_filecoin_method(MarketActor.SECTOR_CONTENT_CHANGED, 0x51, params);
        assertEq(code, 0);
        assertEq(ret, hex"8181f4", "[[false]]");
        if (named != 0) return;
        vm.prank(FilAddress.maskedAddress(MINER2));
        (,, ret) = dc.handle_filecoin_method(MarketActor.SECTOR_CONTENT_CHANGED, 0x51, params);
        assertEq(ret, hex"8181f5", "[[true]]");
    }

    // ------------------------------------------------------------------ fuzz and gas

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

    /// `makeDealProposal`, measured cold (as in a fresh transaction).
    function test_Gas_MakeDealProposal() public {
        propose(request());
        DealClient.DealRequest memory r = request();
        r.pieceCid = OTHER_PIECE;
        vm.cool(address(dc));
        vm.cool(address(codec));
        vm.prank(ORACLE);
        dc.makeDealProposal(r);
        uint256 used = vm.snapshotGasLastCall("DealClient", "makeDealProposal");
        emit log_named_uint("makeDealProposal gas", used);
    }
}
