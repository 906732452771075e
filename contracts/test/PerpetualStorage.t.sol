// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {PerpetualStorage} from "../src/PerpetualStorage.sol";
import {CidLib} from "../src/lib/CidLib.sol";
import {MarketActor} from "../src/lib/MarketActor.sol";
import {FilecoinTest} from "./utils/FilecoinTest.sol";

/// A claimant whose receive hook tries to re-enter the contract.
contract ReentrantClaimant {
    PerpetualStorage internal immutable ps;
    uint256 public reentered;
    bool public reentrySucceeded;

    constructor(PerpetualStorage ps_) {
        ps = ps_;
    }

    function claim(uint256 orderId, uint64 provider) external payable {
        ps.claim{value: msg.value}(orderId, provider);
    }

    function withdraw() external {
        ps.withdraw();
    }

    receive() external payable {
        reentered += 1;
        (bool ok,) = address(ps).call(abi.encodeCall(PerpetualStorage.withdraw, ()));
        reentrySucceeded = reentrySucceeded || ok;
    }
}

/// Code etched at a provider's masked address, re-entering on payment.
contract ReentrantPayee {
    fallback() external payable {
        (bool ok,) = msg.sender.call(abi.encodeCall(PerpetualStorage.collect, (1, 1001)));
        require(ok, "reentry failed");
    }
}

contract PerpetualStorageTest is FilecoinTest {
    PerpetualStorage internal ps;
    address internal constant CLIENT = address(0xC11E);
    address internal constant SP = address(0x5B);
    address internal constant KEEPER = address(0x4EE9);
    address internal constant ATTACKER = address(0xBAD);
    uint64 internal constant MINER = 1001;
    uint64 internal constant MINER2 = 1002;
    uint64 internal constant WINDOW = 100;
    uint64 internal constant TERM = 1000;
    uint96 internal constant BOUNTY = 1 ether;

    function setUp() public {
        installMarket();
        ps = new PerpetualStorage(WINDOW, TERM, 0.01 ether);
        vm.deal(CLIENT, 100 ether);
        vm.deal(SP, 10 ether);
        vm.deal(ATTACKER, 10 ether);
        vm.roll(10_000);
    }

    function params() internal pure returns (PerpetualStorage.OrderParams memory p) {
        p.pieceCid = PIECE;
        p.payloadCid = PAYLOAD;
        p.paddedSize = PIECE_SIZE;
        p.replicas = 2;
        p.bounty = BOUNTY;
        p.term = TERM;
        p.origins = new string[](1);
        p.origins[0] = "https://origin.example/piece.car";
    }

    function order(uint256 funding) internal returns (uint256) {
        vm.prank(CLIENT);
        return ps.createOrder{value: funding}(params());
    }

    function claimAs(address who, uint256 orderId, uint64 provider) internal {
        uint96 bond = ps.bondFor(orderId);
        vm.prank(who);
        ps.claim{value: bond}(orderId, provider);
    }

    function deal(uint64 provider) internal returns (uint64) {
        return activeDeal(PIECE, PIECE_SIZE, provider, int64(uint64(TERM + 500)), false);
    }

    // ------------------------------------------------------------------ orders

    function test_CreateOrder_EmitsAndStores() public {
        vm.expectEmit(address(ps));
        emit PerpetualStorage.OrderCreated(1, CLIENT, PIECE, PIECE_SIZE, 2);
        vm.expectEmit(address(ps));
        emit PerpetualStorage.OrderFunded(1, CLIENT, 5 ether);
        uint256 id = order(5 ether);
        PerpetualStorage.OrderView memory o = ps.getOrder(id);
        assertEq(o.client, CLIENT);
        assertEq(o.balance, 5 ether);
        assertEq(o.replicas, 2);
        assertEq(o.pieceCid, PIECE);
        assertEq(o.origins.length, 1);
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
        vm.expectRevert(abi.encodeWithSelector(PerpetualStorage.PerpetualStorageBadSize.selector, 1000));
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
        vm.deal(ATTACKER, 1 ether);
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

    function test_RevertWhen_TargetBelowSlotsInUse() public {
        uint256 id = order(5 ether);
        claimAs(SP, id, MINER);
        claimAs(SP, id, MINER2);
        vm.prank(CLIENT);
        vm.expectRevert(
            abi.encodeWithSelector(PerpetualStorage.PerpetualStorageTargetBelowInUse.selector, 1, 2)
        );
        ps.setReplicaTarget(id, 1);
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
        // The claim's locked bounty comes back to the client when the claim expires.
        vm.roll(block.number + WINDOW + 1);
        vm.prank(KEEPER);
        ps.reopen(id, MINER);
        assertEq(ps.withdrawable(CLIENT), 1 ether + 0.1 ether - 0.01 ether);
        vm.expectRevert(abi.encodeWithSelector(PerpetualStorage.PerpetualStorageOrderClosed.selector, id));
        ps.fund{value: 0}(id);
    }

    // ------------------------------------------------------------------ claims

    function test_Claim_LocksBountyAndReturnsDownloadInfo() public {
        uint256 id = order(5 ether);
        claimAs(SP, id, MINER);
        uint96 bond = ps.bondFor(id);
        vm.expectEmit(address(ps));
        emit PerpetualStorage.SlotClaimed(id, MINER2, SP, BOUNTY, bond, uint64(block.number) + WINDOW);
        vm.prank(SP);
        uint64 deadline = ps.claim{value: bond}(id, MINER2);
        assertEq(deadline, block.number + WINDOW);
        PerpetualStorage.OrderView memory o = ps.getOrder(id);
        assertEq(o.origins[0], "https://origin.example/piece.car");
        assertEq(o.holders.length, 2);
        assertEq(o.holders[0], MINER2);
        assertEq(o.holders[1], MINER);
        assertEq(o.balance, 3 ether);
        assertEq(o.inUse, 2);
        PerpetualStorage.Slot memory s = ps.getSlot(id, MINER2);
        assertEq(uint8(s.state), uint8(PerpetualStorage.SlotState.Claimed));
        assertEq(s.claimant, SP);
        assertEq(ps.bondOf(s.bounty), bond);
    }

    function test_RevertWhen_ClaimBondTooSmall() public {
        uint256 id = order(5 ether);
        uint96 bond = ps.bondFor(id);
        vm.prank(SP);
        vm.expectRevert(abi.encodeWithSelector(PerpetualStorage.PerpetualStorageWrongBond.selector, bond, 1));
        ps.claim{value: 1}(id, MINER);
    }

    function test_RevertWhen_ClaimForProviderZero() public {
        uint256 id = order(5 ether);
        uint96 bond = ps.bondFor(id);
        vm.prank(SP);
        vm.expectRevert(PerpetualStorage.PerpetualStorageBadProvider.selector);
        ps.claim{value: bond}(id, 0);
    }

    /// A recipient that refuses the refund keeps it in `withdrawable`: nothing is lost.
    function test_RevertWhen_WithdrawRecipientRefuses() public {
        uint256 id = order(5 ether);
        uint96 bond = ps.bondFor(id);
        vm.deal(address(this), bond + 1);
        ps.claim{value: bond + 1}(id, MINER);
        vm.expectRevert(PerpetualStorage.PerpetualStorageTransferFailed.selector);
        ps.withdraw();
        assertEq(ps.withdrawable(address(this)), 1);
    }

    function test_Claim_ExcessBondIsWithdrawable() public {
        uint256 id = order(5 ether);
        uint96 bond = ps.bondFor(id);
        vm.prank(SP);
        ps.claim{value: bond + 0.5 ether}(id, MINER);
        assertEq(ps.withdrawable(SP), 0.5 ether);
    }

    function test_RevertWhen_NoOpenSlot() public {
        uint256 id = order(5 ether);
        claimAs(SP, id, MINER);
        claimAs(SP, id, MINER2);
        uint96 bond = ps.bondFor(id);
        vm.prank(SP);
        vm.expectRevert(abi.encodeWithSelector(PerpetualStorage.PerpetualStorageNoOpenSlot.selector, id));
        ps.claim{value: bond}(id, 1003);
    }

    function test_RevertWhen_Suspended() public {
        uint256 id = order(5 ether);
        vm.prank(CLIENT);
        ps.setSuspended(id, true);
        uint96 bond = ps.bondFor(id);
        vm.prank(SP);
        vm.expectRevert(abi.encodeWithSelector(PerpetualStorage.PerpetualStorageNoOpenSlot.selector, id));
        ps.claim{value: bond}(id, MINER);
    }

    function test_RevertWhen_Underfunded() public {
        uint256 id = order(0.5 ether);
        uint96 bond = ps.bondFor(id);
        vm.prank(SP);
        vm.expectRevert(
            abi.encodeWithSelector(
                PerpetualStorage.PerpetualStorageUnderfunded.selector, id, BOUNTY, 0.5 ether
            )
        );
        ps.claim{value: bond}(id, MINER);
    }

    /// One SP, one slot: its ID (masked) address and its EVM account are the same provider.
    function test_RevertWhen_SameProviderClaimsTwice_IdVsEvmAddress() public {
        uint256 id = order(5 ether);
        vm.deal(masked(MINER), 1 ether);
        claimAs(masked(MINER), id, MINER);
        uint96 bond = ps.bondFor(id);
        vm.prank(SP);
        vm.expectRevert(
            abi.encodeWithSelector(PerpetualStorage.PerpetualStorageAlreadyHolds.selector, id, MINER)
        );
        ps.claim{value: bond}(id, MINER);
    }

    function test_Bounty_RisesWhileASlotStaysOpen_UpToTwice() public {
        uint256 id = order(5 ether);
        assertEq(ps.currentBounty(id), BOUNTY);
        vm.roll(block.number + ps.RISE_EPOCHS() / 2);
        assertEq(ps.currentBounty(id), BOUNTY * 3 / 2);
        vm.roll(block.number + 10 * ps.RISE_EPOCHS());
        assertEq(ps.currentBounty(id), 2 * BOUNTY);
        claimAs(SP, id, MINER);
        assertEq(ps.getSlot(id, MINER).bounty, 2 * BOUNTY);
        // The clock restarts for the slot still open.
        assertEq(ps.currentBounty(id), BOUNTY);
    }

    // ------------------------------------------------------------------ publish

    function test_Publish_ReturnsBondAndStartsStream() public {
        uint256 id = order(5 ether);
        claimAs(SP, id, MINER);
        uint64 dealId = deal(MINER);
        vm.expectEmit(address(ps));
        emit PerpetualStorage.SlotActivated(
            id, MINER, dealId, uint64(block.number), uint64(block.number) + TERM
        );
        ps.publish(id, MINER, dealId);
        assertEq(ps.withdrawable(SP), 0.1 ether);
        assertTrue(ps.dealUsed(dealId));
        PerpetualStorage.Slot memory s = ps.getSlot(id, MINER);
        assertEq(uint8(s.state), uint8(PerpetualStorage.SlotState.Active));
        assertEq(s.dealId, dealId);
        vm.roll(block.number + TERM / 4);
        assertEq(ps.accrued(id, MINER), BOUNTY / 4);
        vm.expectEmit(address(ps));
        emit PerpetualStorage.BountyPaid(id, MINER, BOUNTY / 4);
        ps.collect(id, MINER);
        assertEq(masked(MINER).balance, BOUNTY / 4);
        vm.roll(block.number + 10 * TERM);
        ps.collect(id, MINER);
        assertEq(masked(MINER).balance, BOUNTY);
        // Paid in full: nothing more, ever.
        ps.collect(id, MINER);
        assertEq(masked(MINER).balance, BOUNTY);
    }

    function expectMismatch(uint256 id, uint64 provider, uint64 dealId, string memory what) internal {
        vm.expectRevert(
            abi.encodeWithSelector(PerpetualStorage.PerpetualStorageDealMismatch.selector, dealId, what)
        );
        ps.publish(id, provider, dealId);
    }

    function test_RevertWhen_DealForWrongPieceSizeProviderFlagOrTerm() public {
        uint256 id = order(5 ether);
        claimAs(SP, id, MINER);
        int64 d = int64(uint64(TERM));
        expectMismatch(id, MINER, activeDeal(OTHER_PIECE, PIECE_SIZE, MINER, d, false), "piece");
        expectMismatch(id, MINER, activeDeal(PIECE, PIECE_SIZE * 2, MINER, d, false), "size");
        expectMismatch(id, MINER, activeDeal(PIECE, PIECE_SIZE, MINER2, d, false), "provider");
        expectMismatch(id, MINER, activeDeal(PIECE, PIECE_SIZE, MINER, d, true), "verified");
        expectMismatch(id, MINER, activeDeal(PIECE, PIECE_SIZE, MINER, d - 1, false), "term");
    }

    function test_RevertWhen_DealNotLive() public {
        uint256 id = order(5 ether);
        claimAs(SP, id, MINER);
        int64 start = int64(uint64(block.number));
        uint64 inactive = market.publishDeal(PIECE, PIECE_SIZE, 1, MINER, start, start + 2000, false, "");
        vm.expectRevert(
            abi.encodeWithSelector(
                PerpetualStorage.PerpetualStorageDealNotLive.selector, inactive, MarketActor.Status.Ok
            )
        );
        ps.publish(id, MINER, inactive);

        uint64 terminated = deal(MINER);
        market.terminate(terminated);
        vm.expectRevert(
            abi.encodeWithSelector(
                PerpetualStorage.PerpetualStorageDealNotLive.selector, terminated, MarketActor.Status.Ok
            )
        );
        ps.publish(id, MINER, terminated);

        uint64 removed = deal(MINER);
        market.remove(removed);
        vm.expectRevert(
            abi.encodeWithSelector(
                PerpetualStorage.PerpetualStorageDealNotLive.selector, removed, MarketActor.Status.Expired
            )
        );
        ps.publish(id, MINER, removed);

        vm.expectRevert(
            abi.encodeWithSelector(
                PerpetualStorage.PerpetualStorageDealNotLive.selector, 999, MarketActor.Status.NotFound
            )
        );
        ps.publish(id, MINER, 999);
    }

    function test_RevertWhen_DealPastItsEnd() public {
        uint256 id = order(5 ether);
        claimAs(SP, id, MINER);
        int64 start = int64(uint64(block.number)) - 2000;
        uint64 old = market.publishDeal(PIECE, PIECE_SIZE, 1, MINER, start, start + 1500, false, "");
        market.activate(old);
        vm.expectRevert(
            abi.encodeWithSelector(
                PerpetualStorage.PerpetualStorageDealNotLive.selector, old, MarketActor.Status.Ok
            )
        );
        ps.publish(id, MINER, old);
    }

    function test_RevertWhen_DealReused() public {
        uint256 a = order(5 ether);
        uint256 b = order(5 ether);
        claimAs(SP, a, MINER);
        claimAs(SP, b, MINER);
        uint64 dealId = deal(MINER);
        ps.publish(a, MINER, dealId);
        vm.expectRevert(abi.encodeWithSelector(PerpetualStorage.PerpetualStorageDealUsed.selector, dealId));
        ps.publish(b, MINER, dealId);
    }

    function test_RevertWhen_PublishWithoutClaimOrTooLate() public {
        uint256 id = order(5 ether);
        uint64 dealId = deal(MINER);
        vm.expectRevert(
            abi.encodeWithSelector(PerpetualStorage.PerpetualStorageNotClaimed.selector, id, MINER)
        );
        ps.publish(id, MINER, dealId);
        claimAs(SP, id, MINER);
        vm.roll(block.number + WINDOW + 1);
        vm.expectRevert(
            abi.encodeWithSelector(PerpetualStorage.PerpetualStorageClaimExpired.selector, id, MINER)
        );
        ps.publish(id, MINER, dealId);
    }

    // ------------------------------------------------------------------ reopen

    /// The claim-and-never-seal SP loses its bond: the keeper's tip and the rest to the order.
    function test_Reopen_ExpiredClaimForfeitsBond() public {
        uint256 id = order(5 ether);
        claimAs(ATTACKER, id, MINER);
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
        assertEq(ps.withdrawable(ATTACKER), 0);
        PerpetualStorage.OrderView memory o = ps.getOrder(id);
        assertEq(o.balance, 5 ether + 0.1 ether - 0.01 ether);
        assertEq(o.inUse, 0);
        assertEq(o.holders.length, 0);
    }

    /// A front-running claim for someone else's miner gains nothing: the slot reopens, the bond
    /// is lost, and the real miner claims and is paid.
    function test_FrontRunClaim_IsHarmless() public {
        uint256 id = order(5 ether);
        claimAs(ATTACKER, id, MINER);
        // If the real miner publishes the deal anyway, the bounty still goes to the miner.
        uint64 dealId = deal(MINER);
        ps.publish(id, MINER, dealId);
        vm.roll(block.number + TERM);
        ps.collect(id, MINER);
        assertEq(masked(MINER).balance, BOUNTY);
        // The front-runner only gets its bond back: no bounty.
        uint96 bond = ps.bondOf(ps.getSlot(id, MINER).bounty);
        assertEq(ATTACKER.balance, 10 ether - bond);
        assertEq(ps.withdrawable(ATTACKER), bond);
    }

    function test_Reopen_TerminatedDealPaysUntilTermination() public {
        uint256 id = order(5 ether);
        claimAs(SP, id, MINER);
        uint64 dealId = deal(MINER);
        ps.publish(id, MINER, dealId);
        vm.roll(block.number + TERM / 2);
        vm.prank(KEEPER);
        vm.expectRevert(
            abi.encodeWithSelector(PerpetualStorage.PerpetualStorageSlotStillLive.selector, id, MINER)
        );
        ps.reopen(id, MINER);
        market.terminate(dealId);
        vm.roll(block.number + TERM / 4);
        vm.prank(KEEPER);
        ps.reopen(id, MINER);
        assertEq(masked(MINER).balance, BOUNTY / 2);
        assertEq(ps.withdrawable(KEEPER), 0.01 ether);
        PerpetualStorage.OrderView memory o = ps.getOrder(id);
        assertEq(o.balance, 4 ether + BOUNTY / 2 - 0.01 ether);
        assertEq(o.inUse, 0);
        // The slot is open again: the same miner may claim it anew.
        claimAs(SP, id, MINER);
    }

    function test_Reopen_AfterDealEndsOrLeavesState() public {
        uint256 id = order(5 ether);
        claimAs(SP, id, MINER);
        claimAs(SP, id, MINER2);
        uint64 a = deal(MINER);
        uint64 b = deal(MINER2);
        ps.publish(id, MINER, a);
        ps.publish(id, MINER2, b);
        vm.roll(block.number + TERM + 500);
        ps.reopen(id, MINER);
        market.remove(b);
        ps.reopen(id, MINER2);
        assertEq(masked(MINER).balance, BOUNTY);
        assertEq(masked(MINER2).balance, BOUNTY);
        assertEq(ps.getOrder(id).inUse, 0);
    }

    function test_RevertWhen_ReopenOpenSlot() public {
        uint256 id = order(5 ether);
        vm.expectRevert(
            abi.encodeWithSelector(PerpetualStorage.PerpetualStorageNotClaimed.selector, id, MINER)
        );
        ps.reopen(id, MINER);
    }

    // ------------------------------------------------------------------ attacks

    function test_ReentrantClaimant_CannotWithdrawTwice() public {
        uint256 id = order(5 ether);
        ReentrantClaimant evil = new ReentrantClaimant(ps);
        uint96 bond = ps.bondFor(id);
        vm.deal(address(evil), 0);
        evil.claim{value: bond}(id, MINER);
        ps.publish(id, MINER, deal(MINER));
        evil.withdraw();
        assertEq(address(evil).balance, bond);
        assertEq(evil.reentered(), 1);
        assertFalse(evil.reentrySucceeded());
        assertEq(ps.withdrawable(address(evil)), 0);
    }

    function test_ReentrantPayee_IsCreditedNotLost() public {
        uint256 id = order(5 ether);
        claimAs(SP, id, MINER);
        ps.publish(id, MINER, deal(MINER));
        vm.etch(masked(MINER), address(new ReentrantPayee()).code);
        vm.roll(block.number + TERM / 2);
        ps.collect(id, MINER);
        // The re-entrant transfer failed, so the payment waits in `withdrawable`.
        assertEq(ps.withdrawable(masked(MINER)), BOUNTY / 2);
        assertEq(ps.getSlot(id, MINER).paid, BOUNTY / 2);
    }

    // ------------------------------------------------------------------ fuzz

    /// Whatever the timing, the provider never receives more than the slot's bounty, and what
    /// it received plus what returned to the order equals the bounty.
    function testFuzz_StreamNeverExceedsBounty(uint32 collectAt, uint32 terminateAt, uint32 reopenAt) public {
        uint256 id = order(5 ether);
        claimAs(SP, id, MINER);
        uint64 dealId = deal(MINER);
        ps.publish(id, MINER, dealId);
        uint256 start = block.number;
        uint256 t1 = start + bound(collectAt, 0, 3 * TERM);
        uint256 t2 = t1 + bound(terminateAt, 0, 3 * TERM);
        uint256 t3 = t2 + bound(reopenAt, 0, 3 * TERM);
        vm.roll(t1);
        ps.collect(id, MINER);
        vm.roll(t2);
        if (t2 < start + TERM + 500) market.terminate(dealId);
        vm.roll(t3);
        uint256 balanceBefore = ps.getOrder(id).balance;
        vm.prank(KEEPER);
        ps.reopen(id, MINER);
        uint256 paid = masked(MINER).balance;
        uint256 returned = ps.getOrder(id).balance + ps.withdrawable(KEEPER) - balanceBefore;
        assertLe(paid, BOUNTY);
        assertEq(paid + returned, BOUNTY);
        uint256 expected = t2 - start >= TERM ? BOUNTY : BOUNTY * (t2 - start) / TERM;
        assertEq(paid, expected);
    }

    /// Concrete twin: collect at a quarter, terminate at half, reopen later.
    function test_StreamNeverExceedsBounty_Concrete() public {
        testFuzz_StreamNeverExceedsBounty(250, 250, 100);
    }

    /// Refunds never exceed deposits: fund, claim some slots, cancel, expire the claims.
    function testFuzz_CancelRefundsAtMostDeposits(uint96 funding, uint8 claims) public {
        funding = uint96(bound(funding, 0, 50 ether));
        uint256 id = order(funding);
        uint256 n = bound(claims, 0, 2);
        for (uint256 k; k < n && ps.getOrder(id).balance >= BOUNTY; ++k) {
            claimAs(SP, id, uint64(2000 + k));
        }
        vm.prank(CLIENT);
        ps.cancel(id);
        vm.roll(block.number + WINDOW + 1);
        for (uint256 k; k < n; ++k) {
            if (ps.getSlot(id, uint64(2000 + k)).claimant != address(0)) ps.reopen(id, uint64(2000 + k));
        }
        assertLe(ps.withdrawable(CLIENT), uint256(funding) + n * ps.bondFor(id));
        assertEq(
            address(ps).balance,
            ps.withdrawable(CLIENT) + ps.withdrawable(address(this)) + ps.getOrder(id).balance
        );
    }

    /// Concrete twin: 3 ether, two claims.
    function test_CancelRefundsAtMostDeposits_Concrete() public {
        testFuzz_CancelRefundsAtMostDeposits(3 ether, 2);
    }

    // ------------------------------------------------------------------ gas goals

    /// Goals: `claim` ≤ 100,000 gas and `publish` ≤ 200,000 including the market calls, both
    /// measured cold (as in a fresh transaction).
    function test_Gas_ClaimAndPublish() public {
        uint256 id = order(5 ether);
        uint96 bond = ps.bondFor(id);
        uint64 dealId = deal(MINER);
        vm.cool(address(ps));
        vm.prank(SP);
        ps.claim{value: bond}(id, MINER);
        uint256 claimGas = vm.snapshotGasLastCall("PerpetualStorage", "claim");
        vm.cool(address(ps));
        vm.cool(address(market));
        ps.publish(id, MINER, dealId);
        uint256 publishGas = vm.snapshotGasLastCall("PerpetualStorage", "publish");
        emit log_named_uint("claim gas", claimGas);
        emit log_named_uint("publish gas", publishGas);
        assertLe(claimGas, 100_000);
        assertLe(publishGas, 200_000);
    }
}
