// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {PerpetualStorage} from "../src/PerpetualStorage.sol";
import {Cbor} from "../src/lib/Cbor.sol";
import {CidLib} from "../src/lib/CidLib.sol";
import {DealCodec} from "../src/lib/DealCodec.sol";
import {DealProposal} from "../src/lib/DealProposal.sol";
import {FilAddress} from "../src/lib/FilAddress.sol";
import {MarketActor} from "../src/lib/MarketActor.sol";
import {MarketSimulator} from "../src/sim/MarketSimulator.sol";
import {MinerActorSimulator} from "../src/sim/MinerActorSimulator.sol";
import {FilecoinTest} from "./utils/FilecoinTest.sol";
import {Vm} from "forge-std/Vm.sol";

contract PerpetualStorageTest is FilecoinTest {
    PerpetualStorage internal ps;
    address internal constant CLIENT = address(0xC11E);
    address internal constant SP = address(0x5B);
    address internal constant SP2 = address(0x5C);
    address internal constant SP3 = address(0x5D);
    address internal constant KEEPER = address(0x4EE9);
    address internal constant ATTACKER = address(0xBAD);
    uint64 internal constant MINER = 1001;
    uint64 internal constant MINER2 = 1002;
    uint64 internal constant MINER3 = 1009;
    uint64 internal constant WINDOW = 100;
    uint64 internal constant TERM = 1000;
    uint96 internal constant BOUNTY = 1 ether;
    uint96 internal constant BOND = 0.2 ether;
    uint256 internal collateral;

    function setUp() public {
        installMarket();
        useDevPolicy();
        vm.roll(10_000);
        ps = new PerpetualStorage(codec, WINDOW, TERM, 3_680_640 - WINDOW, 0.01 ether);
        createMiner(MINER, SP);
        createMiner(MINER2, SP2);
        createMiner(MINER3, SP3);
        collateral = market.minProviderCollateral(PIECE_SIZE);
        vm.deal(CLIENT, 100 ether);
        vm.deal(SP, 10 ether);
        vm.deal(SP2, 10 ether);
        vm.deal(ATTACKER, 10 ether);
    }

    function params() internal pure returns (PerpetualStorage.OrderParams memory p) {
        p.pieceCid = PIECE;
        p.payloadCid = PAYLOAD;
        p.paddedSize = PIECE_SIZE;
        p.carSize = CAR_SIZE;
        p.replicas = 2;
        p.bounty = BOUNTY;
        p.term = TERM;
        p.origins = new string[](2);
        p.origins[0] = "/ip4/127.0.0.1/tcp/4001";
        p.origins[1] = "https://origin.example/piece.car";
    }

    function order(uint256 funding) internal returns (uint256) {
        vm.prank(CLIENT);
        return ps.createOrder{value: funding}(params());
    }

    function claimAs(address who, uint256 orderId, uint64 provider) internal returns (bytes32 proposalId) {
        uint96 bond = ps.bondFor(orderId);
        vm.prank(who);
        (, proposalId) = ps.claim{value: bond}(orderId, provider, collateral);
    }

    /// The SP publishes the slot's offered deal (as Boost does with a contract deal).
    function publishOffer(bytes32 proposalId, address controller) internal returns (uint64) {
        return publishOne(controller, ps.getDealProposal(proposalId));
    }

    /// Claim, publish the deal, activate it, `publish` the replica: the whole path.
    function replica(uint256 orderId, uint64 provider, address controller) internal returns (uint64 dealId) {
        bytes32 proposalId = claimAs(controller, orderId, provider);
        dealId = publishOffer(proposalId, controller);
        assertTrue(activateDeal(provider, controller, dealId, dealId));
        ps.publish(orderId, provider);
    }

    // ------------------------------------------------------------------ orders

    function test_CreateOrder_EmitsAndStores() public {
        vm.expectEmit(address(ps));
        emit PerpetualStorage.OrderCreated(1, CLIENT, PIECE, PIECE_SIZE, 2, BOUNTY, TERM, false);
        vm.expectEmit(address(ps));
        emit PerpetualStorage.OrderFunded(1, CLIENT, 5 ether);
        uint256 id = order(5 ether);
        PerpetualStorage.OrderView memory o = ps.getOrder(id);
        assertEq(o.client, CLIENT);
        assertEq(o.balance, 5 ether);
        assertEq(o.replicas, 2);
        assertEq(o.pieceCid, PIECE);
        assertEq(o.carSize, CAR_SIZE);
        assertEq(o.origins.length, 2);
        assertEq(address(ps).balance, 5 ether);
    }

    function test_RevertWhen_OrderParamsBad() public {
        PerpetualStorage.OrderParams memory p = params();
        p.pieceCid = PAYLOAD;
        vm.expectRevert(PerpetualStorage.PerpetualStorageBadPieceCid.selector);
        ps.createOrder(p);
        p = params();
        p.payloadCid = hex"0155";
        vm.expectRevert(
            abi.encodeWithSelector(
                PerpetualStorage.PerpetualStorageBadPayloadCid.selector, CidLib.CidError.MalformedVarint
            )
        );
        ps.createOrder(p);
        p = params();
        p.paddedSize = 1000;
        vm.expectRevert(
            abi.encodeWithSelector(PerpetualStorage.PerpetualStorageBadSize.selector, 1000, CAR_SIZE)
        );
        ps.createOrder(p);
        p = params();
        p.carSize = PIECE_SIZE;
        vm.expectRevert(
            abi.encodeWithSelector(PerpetualStorage.PerpetualStorageBadSize.selector, PIECE_SIZE, PIECE_SIZE)
        );
        ps.createOrder(p);
        p = params();
        p.replicas = 33;
        vm.expectRevert(abi.encodeWithSelector(PerpetualStorage.PerpetualStorageBadReplicas.selector, 33));
        ps.createOrder(p);
        p = params();
        p.bounty = 0;
        vm.expectRevert(PerpetualStorage.PerpetualStorageBadBounty.selector);
        ps.createOrder(p);
        p = params();
        p.term = TERM - 1;
        vm.expectRevert(abi.encodeWithSelector(PerpetualStorage.PerpetualStorageBadTerm.selector, TERM - 1));
        ps.createOrder(p);
        p = params();
        p.origins = new string[](9);
        vm.expectRevert(PerpetualStorage.PerpetualStorageBadOrigins.selector);
        ps.createOrder(p);
    }

    function test_Fund_ByAnyone() public {
        uint256 id = order(0);
        vm.expectEmit(address(ps));
        emit PerpetualStorage.OrderFunded(id, ATTACKER, 1 ether);
        vm.prank(ATTACKER);
        ps.fund{value: 1 ether}(id);
        assertEq(ps.getOrder(id).balance, 1 ether);
        vm.expectRevert(abi.encodeWithSelector(PerpetualStorage.PerpetualStorageNoOrder.selector, 9));
        ps.fund(9);
    }

    function test_ClientSettings() public {
        uint256 id = order(5 ether);
        vm.startPrank(CLIENT);
        vm.expectEmit(address(ps));
        emit PerpetualStorage.BountyChanged(id, 2 ether);
        ps.setBounty(id, 2 ether);
        vm.expectEmit(address(ps));
        emit PerpetualStorage.ReplicaTargetChanged(id, 3);
        ps.setReplicaTarget(id, 3);
        vm.expectEmit(address(ps));
        emit PerpetualStorage.OrderSuspended(id, true);
        ps.setSuspended(id, true);
        string[] memory origins = new string[](1);
        origins[0] = "/dns/example.com/tcp/443/https";
        vm.expectEmit(address(ps));
        emit PerpetualStorage.OriginsChanged(id, origins);
        ps.setOrigins(id, origins);
        vm.expectRevert(PerpetualStorage.PerpetualStorageBadBounty.selector);
        ps.setBounty(id, 0);
        vm.stopPrank();
        PerpetualStorage.OrderView memory o = ps.getOrder(id);
        assertEq(o.bounty, 2 ether);
        assertEq(o.replicas, 3);
        assertTrue(o.suspended);
        assertEq(o.origins[0], origins[0]);
    }

    function test_RevertWhen_NotClient() public {
        uint256 id = order(1 ether);
        vm.startPrank(ATTACKER);
        bytes memory err =
            abi.encodeWithSelector(PerpetualStorage.PerpetualStorageNotClient.selector, id, ATTACKER);
        vm.expectRevert(err);
        ps.setBounty(id, 1);
        vm.expectRevert(err);
        ps.setReplicaTarget(id, 1);
        vm.expectRevert(err);
        ps.setSuspended(id, true);
        vm.expectRevert(err);
        ps.cancel(id);
        vm.stopPrank();
    }

    /// A target lowered below the slots in use takes no slot from its provider, and no slot
    /// opens until enough are vacated: the renewal an order's client makes ahead of a term's
    /// end (one more for another provider, then back down once it is claimed).
    function test_SetReplicaTarget_BelowSlotsInUseOpensNoSlot() public {
        uint256 id = order(5 ether);
        claimAs(SP, id, MINER);
        claimAs(SP2, id, MINER2);
        vm.expectEmit(address(ps));
        emit PerpetualStorage.ReplicaTargetChanged(id, 1);
        vm.prank(CLIENT);
        ps.setReplicaTarget(id, 1);
        PerpetualStorage.OrderView memory v = ps.getOrder(id);
        assertEq((uint256(v.replicas) << 16) | v.inUse, (1 << 16) | 2);
        // Both keep their slots; a third provider cannot claim.
        assertEq(uint256(ps.getSlot(id, MINER).state), uint256(PerpetualStorage.SlotState.Claimed));
        uint96 bond = ps.bondFor(id);
        vm.deal(SP3, bond);
        vm.prank(SP3);
        vm.expectRevert(abi.encodeWithSelector(PerpetualStorage.PerpetualStorageNoOpenSlot.selector, id));
        ps.claim{value: bond}(id, MINER3, collateral);
        // One lapses and is reopened: still none open (one in use, one wanted).
        vm.roll(block.number + ps.claimWindow() + 1);
        ps.reopen(id, MINER);
        vm.deal(SP3, bond);
        vm.prank(SP3);
        vm.expectRevert(abi.encodeWithSelector(PerpetualStorage.PerpetualStorageNoOpenSlot.selector, id));
        ps.claim{value: bond}(id, MINER3, collateral);
        // The second goes too: one opens.
        ps.reopen(id, MINER2);
        vm.deal(SP3, ps.bondFor(id));
        claimAs(SP3, id, MINER3);
        assertEq(ps.getOrder(id).inUse, 1);
    }

    function test_Cancel_RefundsWhatIsNotCommitted() public {
        uint256 id = order(5 ether);
        claimAs(SP, id, MINER);
        vm.expectEmit(address(ps));
        emit PerpetualStorage.OrderCancelled(id, 4 ether);
        vm.prank(CLIENT);
        ps.cancel(id);
        assertEq(ps.withdrawable(CLIENT), 4 ether);
        uint256 before = CLIENT.balance;
        vm.expectEmit(address(ps));
        emit PerpetualStorage.Withdrawn(CLIENT, 4 ether);
        vm.prank(CLIENT);
        ps.withdraw();
        assertEq(CLIENT.balance, before + 4 ether);
        vm.prank(CLIENT);
        vm.expectRevert(PerpetualStorage.PerpetualStorageNothingToWithdraw.selector);
        ps.withdraw();
        // The claim's locked bounty comes back to the client when the claim lapses.
        vm.roll(block.number + WINDOW + 1);
        vm.prank(KEEPER);
        ps.reopen(id, MINER);
        assertEq(ps.withdrawable(CLIENT), 1 ether + BOND - 0.01 ether);
        vm.expectRevert(abi.encodeWithSelector(PerpetualStorage.PerpetualStorageOrderClosed.selector, id));
        ps.fund{value: 0}(id);
    }

    // ------------------------------------------------------------------ claims

    /// Only a controlling address of the miner (owner, worker or control, as the miner actor
    /// answers IsControllingAddressExported) may claim for it.
    function test_Claim_OnlyAControllingAddressOfTheMiner() public {
        uint256 id = order(5 ether);
        vm.prank(ATTACKER);
        vm.expectRevert(
            abi.encodeWithSelector(PerpetualStorage.PerpetualStorageNotController.selector, MINER, ATTACKER)
        );
        ps.claim{value: BOND}(id, MINER, collateral);
        vm.prank(ATTACKER);
        vm.expectRevert(
            abi.encodeWithSelector(PerpetualStorage.PerpetualStorageNotController.selector, 4242, ATTACKER)
        );
        ps.claim{value: BOND}(id, 4242, collateral); // no such miner
        address[] memory controls = new address[](1);
        controls[0] = address(0xC0);
        vm.prank(SP);
        minerAt(MINER).changeControlAddresses(SP, controls);
        vm.deal(address(0xC0), 1 ether);
        claimAs(address(0xC0), id, MINER);
        assertEq(uint8(ps.getSlot(id, MINER).state), uint8(PerpetualStorage.SlotState.Claimed));
    }

    /// A claim offers the slot's deal the way Boost reads contract deals: `DealProposalCreate`
    /// (Boost's exact signature, the id in the first topic), `getDealProposal` naming the
    /// claimant's miner, `getExtraParams` with the order's HTTP origin and CAR size.
    function test_Claim_OffersTheDealLikeAContractDeal() public {
        uint256 id = order(5 ether);
        vm.recordLogs();
        vm.prank(SP);
        (uint64 deadline, bytes32 proposalId) = ps.claim{value: BOND}(id, MINER, collateral);
        Vm.Log[] memory logs = vm.getRecordedLogs();
        assertEq(logs[1].topics[0], keccak256("DealProposalCreate(bytes32,uint64,bool,uint256)"));
        assertEq(logs[1].topics[1], proposalId);
        assertEq(deadline, block.number + WINDOW);
        DealProposal.Fields memory f = codec.decodeProposal(ps.getDealProposal(proposalId));
        assertEq(f.pieceCid, PIECE);
        assertEq(f.pieceSize, PIECE_SIZE);
        assertEq(f.client, FilAddress.delegatedAddress(address(ps)));
        assertEq(f.provider, FilAddress.idAddress(MINER));
        assertEq(f.label, bytes(PAYLOAD_TEXT));
        assertTrue(f.labelIsText);
        assertEq(f.start, int64(deadline));
        assertEq(f.end, int64(deadline + TERM));
        assertEq(f.price, 0);
        assertEq(f.providerCollateral, collateral);
        assertEq(f.clientCollateral, 0);
        bytes memory extra = ps.getExtraParams(proposalId);
        (, uint256 i) = Cbor.readArray(extra, 0);
        (bytes memory location, uint256 j) = Cbor.readText(extra, i);
        assertEq(location, "https://origin.example/piece.car");
        (uint64 carSize,) = Cbor.readUint(extra, j);
        assertEq(carSize, CAR_SIZE);
        PerpetualStorage.SlotView memory s = ps.getSlot(id, MINER);
        assertEq(s.bond, BOND);
        assertEq(s.deadline, deadline);
    }

    /// The same provider claiming two orders in one block gets distinct start epochs.
    function test_Claim_TwoOffersOfOneProviderInOneBlock() public {
        uint256 a = order(5 ether);
        uint256 b = order(5 ether);
        bytes32 pa = claimAs(SP, a, MINER);
        bytes32 pb = claimAs(SP, b, MINER);
        assertEq(ps.getSlot(b, MINER).deadline, ps.getSlot(a, MINER).deadline + 1);
        uint64 da = publishOffer(pa, SP);
        uint64 db = publishOffer(pb, SP);
        assertEq(ps.getSlot(a, MINER).dealId, da);
        assertEq(ps.getSlot(b, MINER).dealId, db);
    }

    function test_RevertWhen_ClaimBondTooSmall() public {
        uint256 id = order(5 ether);
        vm.prank(SP);
        vm.expectRevert(abi.encodeWithSelector(PerpetualStorage.PerpetualStorageWrongBond.selector, BOND, 1));
        ps.claim{value: 1}(id, MINER, collateral);
    }

    function test_Claim_ExcessBondIsWithdrawable() public {
        uint256 id = order(5 ether);
        vm.prank(SP);
        ps.claim{value: BOND + 0.5 ether}(id, MINER, collateral);
        assertEq(ps.withdrawable(SP), 0.5 ether);
    }

    function test_RevertWhen_NoOpenSlotSuspendedOrUnderfunded() public {
        uint256 id = order(5 ether);
        claimAs(SP, id, MINER);
        claimAs(SP2, id, MINER2);
        createMiner(1003, SP);
        vm.prank(SP);
        vm.expectRevert(abi.encodeWithSelector(PerpetualStorage.PerpetualStorageNoOpenSlot.selector, id));
        ps.claim{value: BOND}(id, 1003, collateral);
        uint256 other = order(0.5 ether);
        uint96 bond = ps.bondFor(other);
        vm.prank(SP);
        vm.expectRevert(
            abi.encodeWithSelector(
                PerpetualStorage.PerpetualStorageUnderfunded.selector, other, BOUNTY, 0.5 ether
            )
        );
        ps.claim{value: bond}(other, MINER, collateral);
        vm.prank(CLIENT);
        ps.setSuspended(other, true);
        vm.prank(SP);
        vm.expectRevert(abi.encodeWithSelector(PerpetualStorage.PerpetualStorageNoOpenSlot.selector, other));
        ps.claim{value: bond}(other, MINER, collateral);
        uint256 third = order(5 ether);
        vm.prank(SP);
        vm.expectRevert(PerpetualStorage.PerpetualStorageBadProvider.selector);
        ps.claim{value: bond}(third, 0, collateral);
    }

    /// A claim does not reset the rise: the bounty of the slots left open keeps rising.
    function test_Bounty_ClaimDoesNotResetTheRise() public {
        uint256 id = order(5 ether);
        uint64 rise = ps.riseEpochs();
        assertEq(rise, 532, "ceil(101 * 10_000 / 1_900)");
        assertEq(ps.currentBounty(id), BOUNTY);
        vm.roll(block.number + rise / 2);
        claimAs(SP, id, MINER);
        assertEq(ps.getSlot(id, MINER).bounty, BOUNTY * 3 / 2);
        assertEq(ps.currentBounty(id), BOUNTY * 3 / 2, "not reset by the claim");
        vm.roll(block.number + 10 * rise);
        assertEq(ps.currentBounty(id), 2 * BOUNTY, "capped at twice the base");
    }

    // ------------------------------------------------------------------ the market's calls

    /// AuthenticateMessage accepts only the claimant's miner, for the slot's exact offer; the
    /// provider collateral is the provider's own business.
    function test_AuthenticateMessage_OnlyTheClaimantsOffer() public {
        uint256 id = order(5 ether);
        bytes32 proposalId = claimAs(SP, id, MINER);
        DealProposal.Fields memory f = codec.decodeProposal(ps.getDealProposal(proposalId));
        assertEq(authenticate(f), "");
        f.providerCollateral += 1 ether;
        assertEq(authenticate(f), "", "any provider collateral");
        f = codec.decodeProposal(ps.getDealProposal(proposalId));
        f.provider = FilAddress.idAddress(MINER2);
        assertEq(bytes4(authenticate(f)), PerpetualStorage.PerpetualStorageNotOffered.selector);
        f = codec.decodeProposal(ps.getDealProposal(proposalId));
        f.price = 1;
        assertEq(
            authenticate(f),
            abi.encodeWithSelector(
                PerpetualStorage.PerpetualStorageOfferMismatch.selector, DealCodec.Mismatch.Price
            )
        );
        f = codec.decodeProposal(ps.getDealProposal(proposalId));
        f.end += 1;
        assertEq(
            authenticate(f),
            abi.encodeWithSelector(
                PerpetualStorage.PerpetualStorageOfferMismatch.selector, DealCodec.Mismatch.End
            )
        );
        f = codec.decodeProposal(ps.getDealProposal(proposalId));
        f.label = bytes("bafkqaaa");
        assertEq(
            authenticate(f),
            abi.encodeWithSelector(
                PerpetualStorage.PerpetualStorageOfferMismatch.selector, DealCodec.Mismatch.Label
            )
        );
        f = codec.decodeProposal(ps.getDealProposal(proposalId));
        f.start += 1;
        f.end += 1;
        assertEq(bytes4(authenticate(f)), PerpetualStorage.PerpetualStorageNotOffered.selector);
    }

    /// Returns the revert data of AuthenticateMessage (empty when accepted), called read-only.
    function authenticate(DealProposal.Fields memory f) internal returns (bytes memory) {
        bytes memory auth = bytes.concat(
            Cbor.encodeArray(2), Cbor.encodeBytes(hex"dead"), Cbor.encodeBytes(codec.encodeProposal(f))
        );
        vm.prank(MarketActor.ETH_ADDRESS);
        (bool ok, bytes memory ret) = address(ps)
            .staticcall(
                abi.encodeCall(
                    PerpetualStorage.handle_filecoin_method, (MarketActor.AUTHENTICATE_MESSAGE, 0x51, auth)
                )
            );
        return ok ? bytes("") : ret;
    }

    /// MarketNotifyDeal (normalized proposal) binds the deal to the slot; the offer is then
    /// closed: the same terms cannot be published again.
    function test_MarketNotifyDeal_RecordsTheDealOnTheSlot() public {
        uint256 id = order(5 ether);
        bytes32 proposalId = claimAs(SP, id, MINER);
        bytes memory p = ps.getDealProposal(proposalId);
        vm.expectEmit(address(ps));
        emit PerpetualStorage.SlotDealPublished(id, MINER, 0);
        uint64 dealId = publishOne(SP, p);
        PerpetualStorage.SlotView memory s = ps.getSlot(id, MINER);
        assertEq(uint8(s.state), uint8(PerpetualStorage.SlotState.Dealt));
        assertEq(s.dealId, dealId);
        vm.expectRevert(
            abi.encodeWithSelector(PerpetualStorage.PerpetualStorageUnknownProposal.selector, proposalId)
        );
        ps.getDealProposal(proposalId);
        DealProposal.Fields memory f = codec.decodeProposal(p);
        assertEq(bytes4(authenticate(f)), PerpetualStorage.PerpetualStorageNotOffered.selector);
    }

    /// A deal the miner made as its own client (or any other client) cannot fill the slot.
    function test_SelfDeal_IsNotAccepted() public {
        uint256 id = order(5 ether);
        claimAs(SP, id, MINER);
        activeDeal(PIECE, MINER, SP, int64(uint64(TERM + 500)));
        vm.expectRevert(abi.encodeWithSelector(PerpetualStorage.PerpetualStorageNoDeal.selector, id, MINER));
        ps.publish(id, MINER);
    }

    function test_RevertWhen_CallbackNotFromMarket() public {
        vm.expectRevert(
            abi.encodeWithSelector(PerpetualStorage.PerpetualStorageNotMarket.selector, address(this))
        );
        ps.handle_filecoin_method(MarketActor.AUTHENTICATE_MESSAGE, 0x51, "");
        vm.prank(MarketActor.ETH_ADDRESS);
        vm.expectRevert(
            abi.encodeWithSelector(PerpetualStorage.PerpetualStorageUnsupportedMethod.selector, 7)
        );
        ps.handle_filecoin_method(7, 0x51, "");
    }

    // ------------------------------------------------------------------ publish

    /// `publish` needs the deal active; the bounty streams from the block of `publish` (not the
    /// deal's activation), and the bond returns to the miner by a method-0 send.
    function test_Publish_StreamsFromItsBlockAndReturnsTheBond() public {
        uint256 id = order(5 ether);
        bytes32 proposalId = claimAs(SP, id, MINER);
        vm.expectRevert(abi.encodeWithSelector(PerpetualStorage.PerpetualStorageNoDeal.selector, id, MINER));
        ps.publish(id, MINER);
        uint64 dealId = publishOffer(proposalId, SP);
        vm.expectRevert(
            abi.encodeWithSelector(
                PerpetualStorage.PerpetualStorageDealNotActive.selector, dealId, MarketActor.Status.Ok
            )
        );
        ps.publish(id, MINER);
        assertTrue(activateDeal(MINER, SP, dealId, 1));
        vm.roll(block.number + 50);
        uint64 start = uint64(block.number);
        vm.expectEmit(address(ps));
        emit PerpetualStorage.SlotActivated(id, MINER, dealId, start, start + TERM);
        vm.expectEmit(address(ps));
        emit PerpetualStorage.MinerPaid(MINER, BOND);
        ps.publish(id, MINER);
        assertEq(masked(MINER).balance, BOND, "bond returned to the miner actor");
        assertEq(ps.getOrder(id).active, 1);
        vm.roll(block.number + TERM / 4);
        assertEq(ps.accrued(id, MINER), BOUNTY / 4);
        vm.expectEmit(address(ps));
        emit PerpetualStorage.BountyPaid(id, MINER, BOUNTY / 4, uint64(block.number));
        ps.collect(id, MINER);
        assertEq(masked(MINER).balance, BOND + BOUNTY / 4);
        vm.roll(block.number + 10 * TERM);
        ps.collect(id, MINER);
        assertEq(masked(MINER).balance, BOND + BOUNTY, "paid in full: the deal outlives the term");
        ps.collect(id, MINER);
        assertEq(masked(MINER).balance, BOND + BOUNTY);
    }

    /// The offered deal ends `term` epochs after the claim's deadline, so a deal `publish`
    /// accepts (by the deadline) has at least `term` epochs left; after the deadline it is late.
    function test_Publish_NeedsTermEpochsOfDealLeft() public {
        uint256 id = order(5 ether);
        bytes32 proposalId = claimAs(SP, id, MINER);
        uint64 deadline = ps.getSlot(id, MINER).deadline;
        uint64 dealId = publishOffer(proposalId, SP);
        assertTrue(activateDeal(MINER, SP, dealId, 1));
        vm.roll(deadline + 1);
        vm.expectRevert(
            abi.encodeWithSelector(PerpetualStorage.PerpetualStorageClaimExpired.selector, id, MINER)
        );
        ps.publish(id, MINER);
        vm.roll(deadline);
        ps.publish(id, MINER);
        (, int256 code,, bytes memory ret) =
            callActor(5, MarketActor.GET_DEAL_TERM, Cbor.encodeUint(dealId), 0, true);
        assertEq(code, 0);
        (, uint256 i) = Cbor.readArray(ret, 0);
        (int64 start, uint256 j) = Cbor.readInt(ret, i);
        (int64 duration,) = Cbor.readInt(ret, j);
        assertEq(uint64(start + duration) - block.number, TERM, "exactly term epochs left at the deadline");
    }

    // ------------------------------------------------------------------ reopen and liveness

    /// The claim-and-never-seal SP loses its bond: the keeper's tip and the rest to the order.
    function test_Reopen_ExpiredClaimForfeitsBond() public {
        uint256 id = order(5 ether);
        claimAs(SP, id, MINER);
        vm.prank(KEEPER);
        vm.expectRevert(
            abi.encodeWithSelector(PerpetualStorage.PerpetualStorageSlotStillLive.selector, id, MINER)
        );
        ps.reopen(id, MINER);
        vm.roll(block.number + WINDOW + 1);
        vm.expectEmit(address(ps));
        emit PerpetualStorage.SlotReopened(id, MINER, KEEPER, 0.01 ether, true);
        vm.prank(KEEPER);
        ps.reopen(id, MINER);
        assertEq(ps.withdrawable(KEEPER), 0.01 ether);
        PerpetualStorage.OrderView memory o = ps.getOrder(id);
        assertEq(o.balance, 5 ether + BOND - 0.01 ether);
        assertEq(o.inUse, 0);
        assertEq(o.holders.length, 0);
    }

    /// A deal published but not activated (or not `publish`ed) by the deadline forfeits too.
    function test_Reopen_DealtButNeverStartedForfeitsBond() public {
        uint256 id = order(5 ether);
        publishOffer(claimAs(SP, id, MINER), SP);
        vm.roll(block.number + WINDOW + 1);
        ps.reopen(id, MINER);
        assertEq(ps.getOrder(id).balance, 5 ether + BOND - 0.01 ether);
    }

    /// A replica whose deal was terminated (removed at once from the market) is paid only up to
    /// the last epoch the deal was seen live, not up to when someone noticed.
    function test_Reopen_PaysOnlyUpToTheLastEpochSeenLive() public {
        uint256 id = order(5 ether);
        uint64 dealId = replica(id, MINER, SP);
        uint256 start = block.number;
        vm.roll(start + TERM / 4);
        ps.collect(id, MINER); // seen live at 1/4
        vm.roll(start + TERM / 2);
        terminateSector(MINER, SP, dealId); // nobody looked between 1/4 and now
        vm.roll(start + 3 * TERM / 4);
        ps.collect(id, MINER);
        assertEq(ps.getSlot(id, MINER).paid, BOUNTY / 4, "nothing for epochs not seen live");
        vm.prank(KEEPER);
        ps.reopen(id, MINER);
        assertEq(masked(MINER).balance, BOND + BOUNTY / 4);
        assertEq(ps.withdrawable(KEEPER), 0.01 ether);
        PerpetualStorage.OrderView memory o = ps.getOrder(id);
        assertEq(o.balance, 4 ether + BOUNTY * 3 / 4 - 0.01 ether);
        assertEq(o.inUse, 0);
        assertEq(o.active, 0);
        // The slot is open again: the same miner may claim it anew.
        claimAs(SP, id, MINER);
    }

    /// Once its term is complete a replica's slot reopens (paid in full) even with the deal
    /// still live: terms roll over, and the rise starts since the order now lacks a replica.
    function test_Reopen_AfterTheTermIsComplete() public {
        uint256 id = order(5 ether);
        vm.prank(CLIENT);
        ps.setReplicaTarget(id, 1);
        replica(id, MINER, SP);
        vm.roll(block.number + TERM / 2);
        vm.expectRevert(
            abi.encodeWithSelector(PerpetualStorage.PerpetualStorageSlotStillLive.selector, id, MINER)
        );
        ps.reopen(id, MINER);
        vm.roll(block.number + TERM / 2);
        ps.reopen(id, MINER);
        assertEq(masked(MINER).balance, BOND + BOUNTY);
        assertEq(ps.getOrder(id).openSince, block.number);
    }

    function test_RevertWhen_ReopenOpenSlot() public {
        uint256 id = order(5 ether);
        vm.expectRevert(
            abi.encodeWithSelector(PerpetualStorage.PerpetualStorageNotClaimed.selector, id, MINER)
        );
        ps.reopen(id, MINER);
    }

    // ------------------------------------------------------------------ lost replicas

    /// The client marks a replica lost (its probes failed): the miner is paid what it earned up
    /// to now and a bond's worth of the rest, what remains returns to the order with no tip,
    /// the slot reopens and the rise starts; the provider may not claim the order again,
    /// another may.
    function test_MarkLost_ReopensPaysWhatWasEarnedAndExcludes() public {
        uint256 id = order(5 ether);
        replica(id, MINER, SP);
        replica(id, MINER2, SP2);
        uint256 start = block.number;
        vm.roll(start + TERM / 4);
        vm.expectEmit(address(ps));
        emit PerpetualStorage.SlotLost(id, MINER, CLIENT, BOND);
        vm.expectEmit(address(ps));
        emit PerpetualStorage.SlotReopened(id, MINER, CLIENT, 0, false);
        vm.prank(CLIENT);
        ps.markLost(id, MINER);
        assertEq(masked(MINER).balance, BOND + BOUNTY / 4 + BOND, "bond at publish, a quarter, the fee");
        PerpetualStorage.OrderView memory o = ps.getOrder(id);
        assertEq(o.balance, 3 ether + BOUNTY * 3 / 4 - BOND);
        assertEq(o.inUse, 1);
        assertEq(o.active, 1);
        assertEq(o.openSince, block.number, "the order lacks a replica: the rise starts");
        assertEq(o.holders.length, 1);
        assertEq(o.holders[0], MINER2);
        assertTrue(ps.excluded(id, MINER));
        assertFalse(ps.excluded(id, MINER2));
        assertTrue(ps.getSlot(id, MINER).state == PerpetualStorage.SlotState.Open);
        uint96 bond = ps.bondFor(id);
        vm.prank(SP);
        vm.expectRevert(
            abi.encodeWithSelector(PerpetualStorage.PerpetualStorageProviderExcluded.selector, id, MINER)
        );
        ps.claim{value: bond}(id, MINER, collateral);
        // Another provider takes the slot.
        address sp3 = address(0x5D);
        createMiner(1003, sp3);
        vm.deal(sp3, 10 ether);
        replica(id, 1003, sp3);
        assertEq(ps.getOrder(id).active, 2);
        assertTrue(ps.excluded(id, MINER), "for the order's life");
    }

    function test_RevertWhen_MarkLostNotClientOrNotActive() public {
        uint256 id = order(5 ether);
        bytes32 proposalId = claimAs(SP, id, MINER);
        vm.prank(CLIENT);
        vm.expectRevert(
            abi.encodeWithSelector(PerpetualStorage.PerpetualStorageNotClaimed.selector, id, MINER)
        );
        ps.markLost(id, MINER);
        uint64 dealId = publishOffer(proposalId, SP);
        assertTrue(activateDeal(MINER, SP, dealId, dealId));
        ps.publish(id, MINER);
        for (uint256 k; k < 3; ++k) {
            address who = [ATTACKER, SP, KEEPER][k];
            vm.prank(who);
            vm.expectRevert(
                abi.encodeWithSelector(PerpetualStorage.PerpetualStorageNotClient.selector, id, who)
            );
            ps.markLost(id, MINER);
        }
        vm.expectRevert(abi.encodeWithSelector(PerpetualStorage.PerpetualStorageNoOrder.selector, id + 1));
        ps.markLost(id + 1, MINER);
        vm.prank(CLIENT);
        ps.markLost(id, MINER);
        vm.prank(CLIENT);
        vm.expectRevert(
            abi.encodeWithSelector(PerpetualStorage.PerpetualStorageNotClaimed.selector, id, MINER)
        );
        ps.markLost(id, MINER);
        // Not once the term is over (reopened instead), nor on a cancelled order.
        replica(id, MINER2, SP2);
        vm.roll(block.number + TERM);
        vm.prank(CLIENT);
        vm.expectRevert(
            abi.encodeWithSelector(PerpetualStorage.PerpetualStorageTermOver.selector, id, MINER2)
        );
        ps.markLost(id, MINER2);
        uint256 other = order(5 ether);
        replica(other, MINER2, SP2);
        vm.startPrank(CLIENT);
        ps.cancel(other);
        vm.expectRevert(abi.encodeWithSelector(PerpetualStorage.PerpetualStorageOrderClosed.selector, other));
        ps.markLost(other, MINER2);
        vm.stopPrank();
    }

    /// Whenever the client marks a replica lost within its term, its miner is paid exactly the
    /// epochs its deal was seen live and a bond's worth of the rest (all of it, if less), and
    /// what remains returns to the order; past the term, the mark is refused.
    function testFuzz_MarkLostPaysWhatWasEarnedAndTheFee(uint32 collectAt, uint32 terminateAt, uint32 lostAt)
        public
    {
        uint256 id = order(5 ether);
        uint64 dealId = replica(id, MINER, SP);
        uint256 start = block.number;
        uint256 t1 = start + bound(collectAt, 0, TERM / 2);
        uint256 t2 = t1 + bound(terminateAt, 1, TERM / 2);
        uint256 t3 = t2 + bound(lostAt, 0, TERM);
        vm.roll(t1);
        ps.collect(id, MINER);
        vm.roll(t2);
        bool terminated = t2 < start + TERM;
        if (terminated) terminateSector(MINER, SP, dealId);
        vm.roll(t3);
        uint256 balanceBefore = ps.getOrder(id).balance;
        vm.prank(CLIENT);
        if (t3 >= start + TERM) {
            vm.expectRevert(
                abi.encodeWithSelector(PerpetualStorage.PerpetualStorageTermOver.selector, id, MINER)
            );
            ps.markLost(id, MINER);
            return;
        }
        ps.markLost(id, MINER);
        uint256 paid = masked(MINER).balance - BOND;
        uint256 returned = ps.getOrder(id).balance - balanceBefore;
        assertEq(paid + returned, BOUNTY);
        uint256 earned = BOUNTY * ((terminated ? t1 : t3) - start) / TERM;
        uint256 fee = BOUNTY - earned < BOND ? BOUNTY - earned : BOND;
        assertEq(paid, earned + fee);
        assertTrue(ps.excluded(id, MINER));
    }

    /// Concrete twin: collect at a quarter, lost at a half with the deal live.
    function test_MarkLostPaysWhatWasEarnedAndTheFee_Concrete() public {
        testFuzz_MarkLostPaysWhatWasEarnedAndTheFee(250, 250, 0);
    }

    /// A payment to a miner that fails (no actor answers) waits in `minerOwed`; `payMiner`
    /// retries it.
    function test_MinerPayment_DeferredThenRetried() public {
        uint256 id = order(5 ether);
        replica(id, MINER, SP);
        vm.roll(block.number + TERM / 2);
        bytes memory code = masked(MINER).code;
        vm.etch(masked(MINER), ""); // the send finds no actor: -6
        vm.mockCall(
            MarketActor.ETH_ADDRESS, abi.encodeWithSignature("actorKind(uint64)", MINER), abi.encode(uint8(0))
        );
        vm.expectEmit(address(ps));
        emit PerpetualStorage.MinerPaymentDeferred(MINER, BOUNTY / 2, -6);
        ps.collect(id, MINER);
        assertEq(ps.minerOwed(MINER), BOUNTY / 2);
        vm.clearMockedCalls();
        vm.etch(masked(MINER), code);
        ps.payMiner(MINER);
        assertEq(ps.minerOwed(MINER), 0);
        assertEq(masked(MINER).balance, BOND + BOUNTY / 2);
        vm.expectRevert(PerpetualStorage.PerpetualStorageNothingToWithdraw.selector);
        ps.payMiner(MINER);
    }

    // ------------------------------------------------------------------ squatting

    /// The bond rule against an attacker that controls a miner per slot and squats every slot,
    /// window after window, reopening its own lapsed claims as keeper to recoup the tips: what it
    /// loses is at least what the bounty rose while it held the slots, and the order collects it.
    function testFuzz_SquattingCostsMoreThanItGains(uint8 windows) public {
        uint256 k = bound(windows, 1, 12);
        uint256 id = order(20 ether);
        uint64[2] memory miners = [uint64(2001), 2002];
        createMiner(miners[0], ATTACKER);
        createMiner(miners[1], ATTACKER);
        vm.deal(ATTACKER, 100 ether);
        uint256 spent;
        uint96 startBounty = ps.currentBounty(id);
        uint256 balance0 = ps.getOrder(id).balance;
        for (uint256 w; w < k; ++w) {
            for (uint256 m; m < 2; ++m) {
                uint96 bond = ps.bondFor(id);
                vm.prank(ATTACKER);
                ps.claim{value: bond}(id, miners[m], collateral);
                spent += bond;
            }
            vm.roll(block.number + WINDOW + 1);
            for (uint256 m; m < 2; ++m) {
                vm.prank(ATTACKER);
                ps.reopen(id, miners[m]);
            }
        }
        uint256 recouped = ps.withdrawable(ATTACKER);
        uint256 loss = spent - recouped;
        // What squatting gained: the rise of every slot's bounty while it was squatted.
        uint256 gain = 2 * (ps.currentBounty(id) - startBounty);
        assertGe(loss, gain, "squatting costs at least what it gains");
        assertEq(ps.getOrder(id).balance, balance0 + loss, "the order collects the forfeited bonds");
    }

    /// Concrete twin: six windows.
    function test_SquattingCostsMoreThanItGains_Concrete() public {
        testFuzz_SquattingCostsMoreThanItGains(6);
    }

    // ------------------------------------------------------------------ fuzz

    /// Whatever the timing, the miner never receives more than the slot's bounty, never for an
    /// epoch after the deal was last seen live, and what it received plus what returned is the
    /// bounty.
    function testFuzz_StreamNeverExceedsWhatWasSeenLive(uint32 collectAt, uint32 terminateAt, uint32 reopenAt)
        public
    {
        uint256 id = order(5 ether);
        uint64 dealId = replica(id, MINER, SP);
        uint256 start = block.number;
        uint256 t1 = start + bound(collectAt, 0, 3 * TERM);
        uint256 t2 = t1 + bound(terminateAt, 1, 3 * TERM);
        uint256 t3 = t2 + bound(reopenAt, 0, 3 * TERM);
        vm.roll(t1);
        ps.collect(id, MINER);
        vm.roll(t2);
        bool terminated = t2 < start + TERM;
        if (terminated) terminateSector(MINER, SP, dealId);
        vm.roll(t3);
        uint256 balanceBefore = ps.getOrder(id).balance;
        vm.prank(KEEPER);
        ps.reopen(id, MINER);
        uint256 paid = masked(MINER).balance - BOND;
        uint256 returned = ps.getOrder(id).balance + ps.withdrawable(KEEPER) - balanceBefore;
        assertLe(paid, BOUNTY);
        assertEq(paid + returned, BOUNTY);
        uint256 seen = terminated ? t1 : (t3 < start + TERM ? t3 : start + TERM);
        uint256 expected = seen - start >= TERM ? BOUNTY : BOUNTY * (seen - start) / TERM;
        assertEq(paid, expected);
    }

    /// Concrete twin: collect at a quarter, terminate at half, reopen later.
    function test_StreamNeverExceedsWhatWasSeenLive_Concrete() public {
        testFuzz_StreamNeverExceedsWhatWasSeenLive(250, 250, 100);
    }

    /// Refunds never exceed deposits: fund, claim some slots, cancel, expire the claims.
    function testFuzz_CancelRefundsAtMostDeposits(uint96 funding, uint8 claims) public {
        funding = uint96(bound(funding, 0, 50 ether));
        uint256 id = order(funding);
        uint256 n = bound(claims, 0, 2);
        uint64[2] memory miners = [MINER, MINER2];
        address[2] memory sps = [SP, SP2];
        uint256 claimed;
        for (uint256 k; k < n && ps.getOrder(id).balance >= BOUNTY; ++k) {
            claimAs(sps[k], id, miners[k]);
            ++claimed;
        }
        vm.prank(CLIENT);
        ps.cancel(id);
        vm.roll(block.number + WINDOW + 1);
        for (uint256 k; k < claimed; ++k) {
            ps.reopen(id, miners[k]);
        }
        assertLe(ps.withdrawable(CLIENT), uint256(funding) + claimed * BOND);
        assertEq(address(ps).balance, ps.withdrawable(CLIENT) + ps.withdrawable(address(this)));
    }

    /// Concrete twin: 3 ether, two claims.
    function test_CancelRefundsAtMostDeposits_Concrete() public {
        testFuzz_CancelRefundsAtMostDeposits(3 ether, 2);
    }

    // ------------------------------------------------------------------ gas goals

    /// Goals, measured cold (as in a fresh transaction): `claim` with the miner-control check
    /// (and its deal offer: one call) ≤ 110,000; `publish` with its market call and the bond's
    /// send to the miner ≤ 200,000.
    function test_Gas_ClaimAndPublish() public {
        uint256 id = order(5 ether);
        vm.cool(address(ps));
        vm.cool(masked(MINER));
        vm.cool(address(market));
        vm.prank(SP);
        (, bytes32 proposalId) = ps.claim{value: BOND}(id, MINER, collateral);
        uint256 claimGas = vm.snapshotGasLastCall("PerpetualStorage", "claim");
        uint64 dealId = publishOffer(proposalId, SP);
        assertTrue(activateDeal(MINER, SP, dealId, 1));
        vm.cool(address(ps));
        vm.cool(address(market));
        vm.cool(masked(MINER));
        ps.publish(id, MINER);
        uint256 publishGas = vm.snapshotGasLastCall("PerpetualStorage", "publish");
        emit log_named_uint("claim gas", claimGas);
        emit log_named_uint("publish gas", publishGas);
        assertLe(claimGas, 110_000);
        assertLe(publishGas, 200_000);
    }
}
