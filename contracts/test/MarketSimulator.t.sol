// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {Cbor} from "../src/lib/Cbor.sol";
import {DealProposal} from "../src/lib/DealProposal.sol";
import {FilAddress} from "../src/lib/FilAddress.sol";
import {FvmActor} from "../src/lib/FvmActor.sol";
import {MarketActor} from "../src/lib/MarketActor.sol";
import {MinerActor} from "../src/lib/MinerActor.sol";
import {MarketSimulator} from "../src/sim/MarketSimulator.sol";
import {MinerActorSimulator} from "../src/sim/MinerActorSimulator.sol";
import {AcceptingClient, FilecoinTest} from "./utils/FilecoinTest.sol";

/// A client that emits an event while answering AuthenticateMessage: the market sends it
/// read-only, so the EVM refuses the LOG and the deal is dropped.
contract LoggingClient {
    event Authenticated();

    function handle_filecoin_method(uint64 method, uint64, bytes calldata)
        external
        returns (uint32, uint64, bytes memory)
    {
        if (method == MarketActor.AUTHENTICATE_MESSAGE) emit Authenticated();
        return (0, 0x51, hex"f5");
    }
}

/// A client that writes storage while answering AuthenticateMessage.
contract WritingClient {
    uint256 public seen;

    function handle_filecoin_method(uint64, uint64, bytes calldata)
        external
        returns (uint32, uint64, bytes memory)
    {
        seen += 1;
        return (0, 0x51, hex"f5");
    }
}

/// A client that authenticates only while the market has published no deal: it sees the
/// market's state as it was before the message.
contract ObservingClient {
    function handle_filecoin_method(uint64 method, uint64, bytes calldata)
        external
        view
        returns (uint32, uint64, bytes memory)
    {
        if (method == MarketActor.AUTHENTICATE_MESSAGE) {
            bool before = MarketSimulator(payable(MarketActor.ETH_ADDRESS)).nextDealId() == 0;
            return (0, 0x51, before ? bytes(hex"f5") : bytes(hex"f4"));
        }
        return (0, 0, "");
    }
}

/// A client contract with no receive or fallback: a method-0 send still reaches it.
contract NoReceiveClient {
    function withdraw(uint256 amount) external returns (int256 exitCode, bytes memory ret) {
        bytes memory params = bytes.concat(
            Cbor.encodeArray(2),
            Cbor.encodeBytes(FilAddress.delegatedAddress(address(this))),
            Cbor.encodeBigUint(amount)
        );
        (, exitCode,, ret) = FvmActor.call(5, MarketActor.WITHDRAW_BALANCE, params, 0, false);
    }

    function addBalance(uint256 amount) external payable {
        MarketActor.addBalance(FilAddress.delegatedAddress(address(this)), amount);
    }
}

contract MarketSimulatorTest is FilecoinTest {
    uint64 internal constant MINER = 1001;
    uint64 internal constant MINER2 = 1002;
    address internal constant SP = address(0x5B);
    address internal constant SP2 = address(0x5C);
    address internal constant CONTROL = address(0xC0);
    address internal constant STRANGER = address(0xBAD);

    function setUp() public {
        installMarket();
        vm.roll(10_000);
        createMiner(MINER, SP);
        createMiner(MINER2, SP2);
    }

    function start() internal view returns (int64) {
        return int64(uint64(block.number)) + 10;
    }

    /// A production-length deal (the default policy) from `client`.
    function prodProposal(address client, uint64 provider)
        internal
        view
        returns (DealProposal.Fields memory)
    {
        return proposal(client, provider, PIECE, start(), start() + 518_400);
    }

    /// Publishes one proposal as `SP` and expects the whole message to fail because its only
    /// deal is dropped for `reason`.
    function expectRejected(bytes memory p, MarketSimulator.Rejection reason) internal {
        MarketSimulator.Rejection[] memory why = new MarketSimulator.Rejection[](1);
        why[0] = reason;
        MarketSimulator.ClientDealProposal[] memory batch = new MarketSimulator.ClientDealProposal[](1);
        batch[0] = MarketSimulator.ClientDealProposal(p, hex"dead");
        vm.prank(SP);
        vm.expectRevert(abi.encodeWithSelector(MarketSimulator.MarketSimulatorAllDealsInvalid.selector, why));
        market.publishStorageDeals(batch);
    }

    // ------------------------------------------------------------------ AuthenticateMessage

    /// builtin-actors `deal_proposal_is_internally_valid`: AuthenticateMessage is sent with
    /// `SendFlags::READ_ONLY`; a client that emits an event (or writes) there fails, and the
    /// deal is dropped.
    function test_AuthenticateMessage_IsReadOnly() public {
        LoggingClient logging = new LoggingClient();
        bytes memory p = codec.encodeProposal(prodProposal(address(logging), MINER));
        expectRejected(p, MarketSimulator.Rejection.AuthenticationFailed);

        WritingClient writing = new WritingClient();
        p = codec.encodeProposal(prodProposal(address(writing), MINER));
        expectRejected(p, MarketSimulator.Rejection.AuthenticationFailed);

        // The same call, for a client that only reads, publishes the deal.
        uint64 id = publishOne(SP, codec.encodeProposal(prodProposal(address(acceptingClient), MINER)));
        assertEq(id, 0);
    }

    /// AuthenticateMessage comes from f05 in a STATICCALL before the market stores anything of
    /// the message: every client of a batch sees the state from before it.
    function test_AuthenticateMessage_BeforeAnyStateChange() public {
        ObservingClient observing = new ObservingClient();
        bytes[] memory ps = new bytes[](2);
        ps[0] = codec.encodeProposal(prodProposal(address(observing), MINER));
        DealProposal.Fields memory f = prodProposal(address(observing), MINER);
        f.pieceCid = OTHER_PIECE;
        ps[1] = codec.encodeProposal(f);
        uint64[] memory ids = publish(SP, ps);
        assertEq(ids.length, 2, "both authenticated against the state before the message");
    }

    /// An Ethereum account (EthAccount actor) has no AuthenticateMessage: it cannot be a client.
    function test_AuthenticateMessage_EthAccountClientIsRefused() public {
        bytes memory p = codec.encodeProposal(prodProposal(address(0xE0A), MINER));
        expectRejected(p, MarketSimulator.Rejection.AuthenticationFailed);
    }

    // ------------------------------------------------------------------ MarketNotifyDeal

    /// `publish_storage_deals` normalizes client and provider to f0 ID addresses before it
    /// serializes the proposal for MarketNotifyDeal.
    function test_MarketNotifyDeal_CarriesTheNormalizedProposal() public {
        DealProposal.Fields memory f = prodProposal(address(acceptingClient), MINER);
        uint64 id = publishOne(SP, codec.encodeProposal(f));
        assertEq(acceptingClient.notified(), 1);
        assertEq(acceptingClient.lastDealId(), id);
        uint64 clientId = market.actorIdOf(address(acceptingClient));
        assertGt(clientId, 0);
        f.client = FilAddress.idAddress(clientId);
        f.provider = FilAddress.idAddress(MINER);
        assertEq(acceptingClient.lastProposal(), codec.encodeProposal(f));
        assertEq(market.dealProposal(id), codec.encodeProposal(f));
        (, int256 code,, bytes memory ret) =
            callActor(5, MarketActor.GET_DEAL_CLIENT, Cbor.encodeUint(id), 0, true);
        assertEq(code, 0);
        assertEq(ret, Cbor.encodeUint(clientId));
    }

    /// A client refusing MarketNotifyDeal fails the whole message: other deals of the batch
    /// are not published either.
    function test_MarketNotifyDeal_RefusalFailsTheWholeBatch() public {
        AcceptingClient refusing = new AcceptingClient();
        refusing.setRefuseNotify(true);
        bytes[] memory ps = new bytes[](2);
        ps[0] = codec.encodeProposal(prodProposal(address(acceptingClient), MINER));
        ps[1] = codec.encodeProposal(prodProposal(address(refusing), MINER));
        MarketSimulator.ClientDealProposal[] memory batch = new MarketSimulator.ClientDealProposal[](2);
        batch[0] = MarketSimulator.ClientDealProposal(ps[0], hex"dead");
        batch[1] = MarketSimulator.ClientDealProposal(ps[1], hex"dead");
        vm.prank(SP);
        vm.expectPartialRevert(MarketSimulator.MarketSimulatorNotifyFailed.selector);
        market.publishStorageDeals(batch);
        assertEq(market.nextDealId(), 0);
        assertEq(acceptingClient.notified(), 0);
    }

    // ------------------------------------------------------------------ deal IDs and exit codes

    /// `State::new` starts `next_id` at 0.
    function test_DealIds_StartAtZero() public {
        assertEq(publishOne(SP, codec.encodeProposal(prodProposal(address(acceptingClient), MINER))), 0);
        DealProposal.Fields memory f = prodProposal(address(acceptingClient), MINER);
        f.pieceCid = OTHER_PIECE;
        assertEq(publishOne(SP, codec.encodeProposal(f)), 1);
    }

    function query(uint64 method, uint64 id) internal returns (int256 code, bytes memory ret) {
        bool ok;
        (ok, code,, ret) = callActor(5, method, Cbor.encodeUint(id), 0, true);
        assertTrue(ok);
    }

    /// `get_proposal`: 17 for an ID never used; `get_deal_sector`: 33 before activation.
    function test_ExitCodes_NotFoundAndNotActivated() public {
        (int256 code,) = query(MarketActor.GET_DEAL_TERM, 0);
        assertEq(code, 17);
        uint64 id = publishOne(SP, codec.encodeProposal(prodProposal(address(acceptingClient), MINER)));
        (code,) = query(MarketActor.GET_DEAL_SECTOR, id);
        assertEq(code, 33);
        bytes memory ret;
        (code, ret) = query(MarketActor.GET_DEAL_ACTIVATION, id);
        assertEq(code, 0);
        assertEq(ret, hex"822020", "[-1, -1]");
        assertTrue(activateDeal(MINER, SP, id, 7));
        (code, ret) = query(MarketActor.GET_DEAL_SECTOR, id);
        assertEq(ret, Cbor.encodeUint(7));
        (code, ret) = query(MarketActor.GET_DEAL_ACTIVATION, id);
        assertEq(ret, bytes.concat(hex"82", Cbor.encodeInt(int64(uint64(block.number))), hex"20"));
        (code,) = query(MarketActor.GET_DEAL_TERM, id + 1);
        assertEq(code, 17);
    }

    /// Since builtin-actors v13 a terminated deal is removed at once: every query answers 32.
    function test_TerminatedDeal_IsRemovedAtOnce() public {
        useDevPolicy();
        uint64 id = activeDeal(PIECE, MINER, SP, 1000);
        vm.roll(block.number + 100);
        terminateSector(MINER, SP, id);
        uint64[4] memory methods = [
            MarketActor.GET_DEAL_ACTIVATION,
            MarketActor.GET_DEAL_TERM,
            MarketActor.GET_DEAL_DATA_COMMITMENT,
            MarketActor.GET_DEAL_SECTOR
        ];
        for (uint256 k; k < methods.length; ++k) {
            (int256 code,) = query(methods[k], id);
            assertEq(code, 32);
        }
        (uint256 balance, uint256 locked) = market.escrowOf(MINER);
        assertEq(locked, 0, "collateral unlocked");
        assertEq(balance, 10 ether - market.minProviderCollateral(PIECE_SIZE), "and slashed");
    }

    /// A deal that ran its course stays in state until it is settled (cron), then answers 32.
    function test_ExpiredDeal_AnswersExpiredOnceSettled() public {
        useDevPolicy();
        uint64 id = activeDeal(PIECE, MINER, SP, 1000);
        vm.roll(block.number + 2000);
        (int256 code,) = query(MarketActor.GET_DEAL_ACTIVATION, id);
        assertEq(code, 0, "still in state after its end");
        assertEq(settle(id), 0);
        (code,) = query(MarketActor.GET_DEAL_ACTIVATION, id);
        assertEq(code, 32);
    }

    /// A deal never activated by its start epoch times out: its provider collateral is slashed
    /// and it answers 32 once processed.
    function test_UnactivatedDeal_TimesOut() public {
        uint64 id = publishOne(SP, codec.encodeProposal(prodProposal(address(acceptingClient), MINER)));
        assertEq(settle(id), 0, "too early: a no-op");
        vm.roll(uint64(start()) + 1);
        assertFalse(activateDeal(MINER, SP, id, 1), "too late to activate");
        assertEq(settle(id), 32);
        (int256 code,) = query(MarketActor.GET_DEAL_TERM, id);
        assertEq(code, 32);
    }

    // ------------------------------------------------------------------ policy

    /// `deal_duration_bounds` on the production policy: 180 to 1278 days.
    function test_Policy_ProductionDurationBounds() public {
        DealProposal.Fields memory f = prodProposal(address(acceptingClient), MINER);
        f.end = f.start + 518_399;
        expectRejected(codec.encodeProposal(f), MarketSimulator.Rejection.DurationOutOfBounds);
        f.end = f.start + 3_680_641;
        expectRejected(codec.encodeProposal(f), MarketSimulator.Rejection.DurationOutOfBounds);
        f.end = f.start + 3_680_640;
        publishOne(SP, codec.encodeProposal(f));
        f.end = f.start + 518_400;
        publishOne(SP, codec.encodeProposal(f));
    }

    /// Any duration: accepted exactly within the policy's bounds.
    function testFuzz_DurationBounds(uint32 duration, bool dev) public {
        if (dev) useDevPolicy();
        MarketSimulator.Policy memory pol = market.policy();
        DealProposal.Fields memory f = prodProposal(address(acceptingClient), MINER);
        f.end = f.start + int64(uint64(bound(duration, 1, 4_000_000)));
        int64 d = f.end - f.start;
        if (d < pol.minDuration || d > pol.maxDuration) {
            expectRejected(codec.encodeProposal(f), MarketSimulator.Rejection.DurationOutOfBounds);
        }
    }

    /// Concrete twin: the local profile's shortest deal.
    function test_DurationBounds_Concrete() public {
        testFuzz_DurationBounds(300, true);
    }

    /// `deal_provider_collateral_bounds`: at least 1 % of the supply times the deal's share of
    /// the network; at most TOTAL_FILECOIN.
    function test_Policy_ProviderCollateralBounds() public {
        DealProposal.Fields memory f = prodProposal(address(acceptingClient), MINER);
        uint256 min = market.minProviderCollateral(PIECE_SIZE);
        assertEq(min, uint256(PIECE_SIZE) * 600_000_000 ether / (uint256(1 << 66) * 100));
        f.providerCollateral = min - 1;
        expectRejected(codec.encodeProposal(f), MarketSimulator.Rejection.ProviderCollateralOutOfBounds);
        f.providerCollateral = 0;
        expectRejected(codec.encodeProposal(f), MarketSimulator.Rejection.ProviderCollateralOutOfBounds);
        f.providerCollateral = min;
        publishOne(SP, codec.encodeProposal(f));
    }

    function test_Policy_StartEpochInThePast() public {
        DealProposal.Fields memory f = prodProposal(address(acceptingClient), MINER);
        f.start = int64(uint64(block.number)) - 1;
        f.end = f.start + 518_400;
        expectRejected(codec.encodeProposal(f), MarketSimulator.Rejection.StartElapsed);
        f.start = int64(uint64(block.number));
        f.end = f.start + 518_400;
        publishOne(SP, codec.encodeProposal(f));
    }

    function test_Policy_PieceAndLabel() public {
        DealProposal.Fields memory f = prodProposal(address(acceptingClient), MINER);
        f.pieceSize = 1000;
        expectRejected(codec.encodeProposal(f), MarketSimulator.Rejection.BadPieceSize);
        f = prodProposal(address(acceptingClient), MINER);
        f.pieceCid = PAYLOAD;
        expectRejected(codec.encodeProposal(f), MarketSimulator.Rejection.BadPieceCid);
        f = prodProposal(address(acceptingClient), MINER);
        f.label = new bytes(257);
        expectRejected(codec.encodeProposal(f), MarketSimulator.Rejection.LabelTooLong);
    }

    /// A text label must be valid UTF-8 or the message's parameters do not deserialize: the
    /// whole message fails. The same bytes as a byte-string label are a valid deal, and
    /// GetDealLabel answers with the CBOR type the deal was made with.
    function test_Policy_LabelUtf8AndCborType() public {
        DealProposal.Fields memory f = prodProposal(address(acceptingClient), MINER);
        f.label = hex"c328";
        bytes memory p = codec.encodeProposal(f);
        MarketSimulator.ClientDealProposal[] memory batch = new MarketSimulator.ClientDealProposal[](1);
        batch[0] = MarketSimulator.ClientDealProposal(p, "");
        vm.prank(SP);
        vm.expectRevert(abi.encodeWithSelector(MarketSimulator.MarketSimulatorBadParams.selector, 0));
        market.publishStorageDeals(batch);

        f.labelIsText = false;
        uint64 id = publishOne(SP, codec.encodeProposal(f));
        (int256 code, bytes memory ret) = query(MarketActor.GET_DEAL_LABEL, id);
        assertEq(code, 0);
        assertEq(ret, hex"42c328", "a byte string");
        f = prodProposal(address(acceptingClient), MINER);
        f.pieceCid = OTHER_PIECE;
        id = publishOne(SP, codec.encodeProposal(f));
        (, ret) = query(MarketActor.GET_DEAL_LABEL, id);
        assertEq(ret, Cbor.encodeText(bytes(PAYLOAD_TEXT)), "a text string");
    }

    /// Valid and invalid UTF-8 sequences, as Rust's `str::from_utf8` sees them.
    function test_Utf8_Validation() public {
        bytes[6] memory good = [bytes("ascii"), hex"c3a9", hex"e282ac", hex"f0908d88", hex"", hex"efbfbf"];
        bytes[7] memory bad =
            [bytes(hex"c0af"), hex"e080af", hex"eda080", hex"f4908080", hex"ff", hex"c3", hex"80"];
        for (uint256 k; k < good.length; ++k) {
            assertTrue(labelAccepted(good[k], k), "valid UTF-8");
        }
        for (uint256 k; k < bad.length; ++k) {
            assertFalse(labelAccepted(bad[k], 100 + k), "invalid UTF-8");
        }
    }

    function labelAccepted(bytes memory label, uint256 salt) internal returns (bool) {
        DealProposal.Fields memory f = prodProposal(address(acceptingClient), MINER);
        f.label = label;
        f.start += int64(uint64(salt)); // distinct proposals
        f.end += int64(uint64(salt));
        MarketSimulator.ClientDealProposal[] memory batch = new MarketSimulator.ClientDealProposal[](1);
        batch[0] = MarketSimulator.ClientDealProposal(codec.encodeProposal(f), "");
        vm.prank(SP);
        try market.publishStorageDeals(batch) {
            return true;
        } catch {
            return false;
        }
    }

    // ------------------------------------------------------------------ batches

    /// Two identical proposals in one message: the second is a duplicate (same proposal CID)
    /// and is dropped; its client is notified once. Across messages too (pending proposals).
    function test_Batch_IdenticalProposalsPublishedOnce() public {
        bytes memory p = codec.encodeProposal(prodProposal(address(acceptingClient), MINER));
        bytes[] memory ps = new bytes[](2);
        ps[0] = p;
        ps[1] = p;
        vm.expectEmit(address(market));
        emit MarketSimulator.DealRejected(MINER, 1, MarketSimulator.Rejection.Duplicate);
        uint64[] memory ids = publish(SP, ps);
        assertEq(ids.length, 1);
        assertEq(acceptingClient.notified(), 1);
        expectRejected(p, MarketSimulator.Rejection.Duplicate);
    }

    function test_Batch_OneProviderAndItsControllersOnly() public {
        bytes[] memory ps = new bytes[](2);
        ps[0] = codec.encodeProposal(prodProposal(address(acceptingClient), MINER));
        ps[1] = codec.encodeProposal(prodProposal(address(acceptingClient), MINER2));
        vm.expectEmit(address(market));
        emit MarketSimulator.DealRejected(MINER, 1, MarketSimulator.Rejection.OtherProvider);
        assertEq(publish(SP, ps).length, 1);

        bytes memory p = codec.encodeProposal(prodProposal(address(acceptingClient), MINER2));
        MarketSimulator.ClientDealProposal[] memory batch = new MarketSimulator.ClientDealProposal[](1);
        batch[0] = MarketSimulator.ClientDealProposal(p, "");
        vm.prank(SP);
        vm.expectRevert(
            abi.encodeWithSelector(MarketSimulator.MarketSimulatorNotControlling.selector, MINER2, SP)
        );
        market.publishStorageDeals(batch);

        DealProposal.Fields memory f = prodProposal(address(acceptingClient), 4242);
        batch[0] = MarketSimulator.ClientDealProposal(codec.encodeProposal(f), "");
        vm.prank(SP);
        vm.expectRevert(
            abi.encodeWithSelector(
                MarketSimulator.MarketSimulatorNotMiner.selector, FilAddress.idAddress(4242)
            )
        );
        market.publishStorageDeals(batch);
    }

    /// The client's escrow must cover collateral plus the total price; DataCap, the piece size.
    function test_Batch_ClientEscrowAndDataCap() public {
        NoReceiveClient client = new NoReceiveClient();
        vm.etch(address(client), address(acceptingClient).code);
        DealProposal.Fields memory f = prodProposal(address(client), MINER);
        f.price = 1 gwei;
        expectRejected(codec.encodeProposal(f), MarketSimulator.Rejection.ClientFundsShort);
        market.addBalance{value: 1 gwei * 518_400}(FilAddress.delegatedAddress(address(client)));
        publishOne(SP, codec.encodeProposal(f));

        f = prodProposal(address(acceptingClient), MINER);
        f.verified = true;
        expectRejected(codec.encodeProposal(f), MarketSimulator.Rejection.DataCapShort);
        market.setPolicy(market.policy()); // become the simulator's admin
        market.setDataCap(address(acceptingClient), PIECE_SIZE);
        publishOne(SP, codec.encodeProposal(f));
        assertEq(market.dataCap(market.actorIdOf(address(acceptingClient))), 0);
    }

    /// The verified registry's bounds, as mainnet and Calibration build them: a verified deal of a
    /// piece under 1 MiB, or lasting under 180 days, has its allocation refused, and the DataCap
    /// transfer with it the whole message; the same deal unverified is published. (Five years,
    /// the longest allocation, is past the market's own longest deal, 1,278 days.)
    function test_Batch_VerifiedAllocationBounds() public {
        // The local chain's policy: deals from 300 epochs, so only the registry's term bound bites.
        useDevPolicy();
        market.setDataCap(address(acceptingClient), 1 << 30);
        DealProposal.Fields memory f = prodProposal(address(acceptingClient), MINER);
        f.verified = true;
        int64 start_ = f.start;
        f.end = start_ + 518_399;
        expectAllocationRefused(codec.encodeProposal(f), PIECE_SIZE, 518_399);
        f.end = start_ + 518_400;
        f.pieceSize = PIECE_SIZE / 2;
        expectAllocationRefused(codec.encodeProposal(f), PIECE_SIZE / 2, 518_400);
        f.pieceSize = PIECE_SIZE;
        publishOne(SP, codec.encodeProposal(f));
        f = prodProposal(address(acceptingClient), MINER);
        f.end = f.start + 518_399;
        f.label = "unverified";
        publishOne(SP, codec.encodeProposal(f));
    }

    function expectAllocationRefused(bytes memory p, uint64 size, int64 duration) internal {
        MarketSimulator.ClientDealProposal[] memory batch = new MarketSimulator.ClientDealProposal[](1);
        batch[0] = MarketSimulator.ClientDealProposal(p, hex"dead");
        vm.prank(SP);
        vm.expectRevert(
            abi.encodeWithSelector(
                MarketSimulator.MarketSimulatorAllocationRefused.selector, 0, size, duration
            )
        );
        market.publishStorageDeals(batch);
    }

    function test_Batch_ProviderEscrowCoversCollateral() public {
        createMiner(1003, SP);
        DealProposal.Fields memory f = prodProposal(address(acceptingClient), 1003);
        f.providerCollateral = 11 ether;
        expectRejected(codec.encodeProposal(f), MarketSimulator.Rejection.ProviderFundsShort);
    }

    // ------------------------------------------------------------------ actors through call_actor_id

    /// An EVM CALL with value to a miner actor runs InvokeEVM, which it does not have: exit 22,
    /// the call fails, no value moves. A method-0 send through call_actor_id pays it.
    function test_MinerActor_RefusesEvmValueCall_AcceptsMethod0() public {
        vm.deal(address(this), 2 ether);
        (bool ok,) = payable(masked(MINER)).call{value: 1 ether}("");
        assertFalse(ok);
        (ok,) = masked(MINER).call{value: 1 ether}(abi.encodeWithSignature("anything()"));
        assertFalse(ok);
        assertEq(masked(MINER).balance, 0);
        (bool precompiled, int256 code,,) = callActor(MINER, 0, "", 1 ether, false);
        assertTrue(precompiled);
        assertEq(code, 0);
        assertEq(masked(MINER).balance, 1 ether);
        // The market refuses an EVM CALL the same way.
        (ok,) = payable(MarketActor.ETH_ADDRESS).call{value: 1}("");
        assertFalse(ok);
    }

    /// Unknown methods answer 22; FRC-0042-reserved numbers from a non-built-in caller 18; the
    /// precompile itself refuses methods 1–1023 (the call fails with no data).
    function test_Actors_UnknownMethods() public {
        (bool ok, int256 code,,) = callActor(MINER, 0xdeadbeef, "", 0, false);
        assertTrue(ok);
        assertEq(code, 22);
        (ok, code,,) = callActor(5, 0xdeadbeef, "", 0, false);
        assertEq(code, 22);
        (ok, code,,) = callActor(MINER, 5000, "", 0, false);
        assertEq(code, 18);
        (ok,,,) = callActor(5, 3, hex"00", 0, false);
        assertFalse(ok, "method 3 (WithdrawBalance) is refused by the precompile");
    }

    /// A missing actor: the send fails with the syscall error NotFound (exit code -6).
    function test_Actors_MissingActorAnswersNotFound() public {
        (bool ok, int256 code, uint64 retCodec, bytes memory ret) = callActor(77_777, 0, "", 0, false);
        assertTrue(ok);
        assertEq(code, -6);
        assertEq(retCodec, 0);
        assertEq(ret.length, 0);
    }

    /// The precompile's own rules: DELEGATECALL only, value never with READ_ONLY (-13), codec
    /// CBOR or none.
    function test_Precompile_Rules() public {
        (bool ok, bytes memory out) = FvmActor.CALL_ACTOR_ID
            .call(abi.encode(uint64(0), uint256(0), uint64(0), uint64(0), bytes(""), uint64(MINER)));
        assertFalse(ok, "a CALL is forbidden");
        assertEq(out.length, 0);
        vm.deal(address(this), 1);
        (bool precompiled, int256 code,,) = callActor(MINER, 0, "", 1, true);
        assertTrue(precompiled);
        assertEq(code, -13);
        (ok,) = FvmActor.CALL_ACTOR_ID
            .delegatecall(
                abi.encode(MinerActor.GET_OWNER, uint256(0), uint64(0), uint64(0x71), hex"80", uint64(MINER))
            );
        assertFalse(ok, "DAG-CBOR parameters are refused");
        (ok,) = FvmActor.CALL_ACTOR_ID
            .delegatecall(
                abi.encode(MinerActor.GET_OWNER, uint256(0), uint64(2), uint64(0), bytes(""), uint64(MINER))
            );
        assertFalse(ok, "unknown flags are refused");
    }

    // ------------------------------------------------------------------ miner exported methods

    function controlling(uint64 miner, bytes memory addr) internal returns (bool yes) {
        (bool ok, int256 code,, bytes memory ret) =
            callActor(miner, MinerActor.IS_CONTROLLING_ADDRESS, Cbor.encodeBytes(addr), 0, true);
        assertTrue(ok);
        assertEq(code, 0);
        (yes,) = Cbor.readBool(ret, 0);
    }

    /// IsControllingAddressExported: owner, worker and control addresses, in any address form
    /// the miner can resolve.
    function test_MinerActor_IsControllingAddress() public {
        address[] memory controls = new address[](1);
        controls[0] = CONTROL;
        vm.prank(SP);
        minerAt(MINER).changeControlAddresses(address(0x3E), controls);
        assertTrue(controlling(MINER, FilAddress.delegatedAddress(SP)), "owner");
        assertTrue(controlling(MINER, FilAddress.delegatedAddress(address(0x3E))), "worker");
        assertTrue(controlling(MINER, FilAddress.delegatedAddress(CONTROL)), "control");
        assertFalse(controlling(MINER, FilAddress.delegatedAddress(STRANGER)));
        assertFalse(controlling(MINER, hex"01aabb"), "an address it cannot resolve");
        uint64 id = market.registerEvm(CONTROL);
        assertTrue(controlling(MINER, FilAddress.idAddress(id)), "the control address by its ID");
        (bool exists, bool yes) = MinerActor.isControllingAddress(MINER, CONTROL);
        assertTrue(exists && yes);
        (exists, yes) = MinerActor.isControllingAddress(77_777, CONTROL);
        assertFalse(exists || yes, "no such miner");
    }

    /// GetOwnerExported `[owner, proposed]`, GetAvailableBalanceExported and
    /// WithdrawBalanceExported (owner only; the miner sends to the owner).
    function test_MinerActor_OwnerBalanceAndWithdraw() public {
        (bytes memory owner, bytes memory proposed) = MinerActor.getOwner(MINER);
        assertEq(owner, FilAddress.delegatedAddress(SP));
        assertEq(proposed.length, 0);
        vm.deal(address(this), 3 ether);
        callActor(MINER, 0, "", 3 ether, false);
        (, int256 code,, bytes memory ret) = callActor(MINER, MinerActor.GET_AVAILABLE_BALANCE, "", 0, true);
        assertEq(code, 0);
        assertEq(ret, Cbor.encodeBigUint(3 ether));
        bytes memory params = bytes.concat(Cbor.encodeArray(1), Cbor.encodeBigUint(1 ether));
        (, code,,) = callActor(MINER, MinerActor.WITHDRAW_BALANCE, params, 0, false);
        assertEq(code, 18, "only the owner");
        vm.prank(SP);
        assertEq(minerAt(MINER).withdrawBalance(5 ether), 3 ether);
        assertEq(SP.balance, 3 ether);
    }

    // ------------------------------------------------------------------ sector activation

    /// `sector_content_changed` / `validate_deal_can_activate`: the deal's own miner, before its
    /// start epoch, ending by the sector's expiration, with its piece.
    function test_Activation_Rules() public {
        uint64 id = publishOne(SP, codec.encodeProposal(prodProposal(address(acceptingClient), MINER)));
        uint64[] memory ids = new uint64[](1);
        ids[0] = id;
        vm.prank(SP2);
        assertFalse(minerAt(MINER2).activateDeals(1, type(int64).max, ids)[0], "another miner");
        vm.prank(SP);
        assertFalse(minerAt(MINER).activateDeals(1, start() + 100, ids)[0], "sector expires first");
        vm.prank(STRANGER);
        vm.expectRevert(
            abi.encodeWithSelector(MinerActorSimulator.MinerActorSimulatorNotControlling.selector, STRANGER)
        );
        minerAt(MINER).activateDeals(1, type(int64).max, ids);
        // The same piece with a wrong size, through ProveCommitSectors3.
        MinerActorSimulator.SectorActivation[] memory sectors = new MinerActorSimulator.SectorActivation[](1);
        sectors[0].sector = 2;
        sectors[0].expiration = type(int64).max;
        sectors[0].pieces = new MinerActorSimulator.PieceActivation[](1);
        sectors[0].pieces[0].pieceCid = PIECE;
        sectors[0].pieces[0].size = PIECE_SIZE * 2;
        sectors[0].pieces[0].notify = new MinerActorSimulator.Notification[](1);
        sectors[0].pieces[0].notify[0] = MinerActorSimulator.Notification(hex"0005", Cbor.encodeUint(id));
        vm.prank(SP);
        vm.expectRevert(
            abi.encodeWithSelector(
                MinerActorSimulator.MinerActorSimulatorNotificationRejected.selector, hex"0005", int256(1004)
            )
        );
        minerAt(MINER).proveCommitSectors3(sectors, true);
        sectors[0].pieces[0].size = PIECE_SIZE;
        vm.prank(SP);
        assertTrue(minerAt(MINER).proveCommitSectors3(sectors, true)[0]);
        assertEq(market.deal(id).sector, 2);
    }

    // ------------------------------------------------------------------ escrow

    /// Payments move from the client's escrow to the provider's as the deal runs; WithdrawBalance
    /// sends a client contract its free escrow with method 0, which runs none of its code (it
    /// has no receive function).
    function test_Escrow_PaymentsAndWithdrawToAContract() public {
        useDevPolicy();
        NoReceiveClient client = new NoReceiveClient();
        vm.deal(address(client), 10 ether);
        client.addBalance(10 ether);
        bytes memory code = address(acceptingClient).code;
        bytes memory own = address(client).code;
        vm.etch(address(client), code);
        DealProposal.Fields memory f = proposal(address(client), MINER, PIECE, start(), start() + 1000);
        f.price = 1 gwei;
        f.clientCollateral = 1 ether;
        uint64 id = publishOne(SP, codec.encodeProposal(f));
        assertTrue(activateDeal(MINER, SP, id, 1));
        uint64 clientId = market.actorIdOf(address(client));
        (uint256 balance, uint256 locked) = market.escrowOf(clientId);
        assertEq(locked, 1 ether + 1000 gwei);
        vm.roll(uint64(start()) + 400);
        settle(id);
        (balance, locked) = market.escrowOf(clientId);
        assertEq(balance, 10 ether - 400 gwei);
        (uint256 providerBalance,) = market.escrowOf(MINER);
        assertEq(providerBalance, 10 ether + 400 gwei);
        vm.roll(uint64(start()) + 1000);
        settle(id);
        (balance, locked) = market.escrowOf(clientId);
        assertEq(locked, 0);
        vm.etch(address(client), own);
        (int256 exitCode, bytes memory ret) = client.withdraw(100 ether);
        assertEq(exitCode, 0);
        assertEq(ret, Cbor.encodeBigUint(10 ether - 1000 gwei), "what was free");
        assertEq(address(client).balance, 10 ether - 1000 gwei);
    }
}
