// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {DealStateView} from "../src/DealStateView.sol";
import {Cbor} from "../src/lib/Cbor.sol";
import {DataCapActor} from "../src/lib/DataCapActor.sol";
import {DealProposal} from "../src/lib/DealProposal.sol";
import {FilAddress} from "../src/lib/FilAddress.sol";
import {FvmActor} from "../src/lib/FvmActor.sol";
import {MarketActor} from "../src/lib/MarketActor.sol";
import {ISimActor} from "../src/sim/SimActors.sol";
import {FilecoinTest} from "./utils/FilecoinTest.sol";

/// One call, many deals: every state the market can answer, read through `call_actor_id` from
/// the (simulated) market as the tracker reads it on Calibration.
contract DealStateViewTest is FilecoinTest {
    DealStateView internal view_;
    address internal constant SP = address(0x5B1);
    uint64 internal constant MINER = 1000;
    bytes32 internal constant COMMP = 0x1111111111111111111111111111111111111111111111111111111111111111;

    function setUp() public {
        installMarket();
        useDevPolicy();
        vm.roll(1000);
        createMiner(MINER, SP);
        view_ = new DealStateView();
    }

    /// A deal starting in `delay` epochs, lasting the shortest term; `n` makes each unique.
    function published(int64 delay, uint256 n) internal returns (uint64) {
        int64 start = int64(uint64(block.number)) + delay;
        DealProposal.Fields memory f = proposal(
            address(acceptingClient), MINER, PIECE, start, start + DEV_MIN_DURATION + int64(int256(n))
        );
        return publishOne(SP, codec.encodeProposal(f));
    }

    function ids(uint64 a, uint64 b, uint64 c, uint64 d, uint64 e)
        internal
        pure
        returns (uint64[] memory out)
    {
        out = new uint64[](5);
        (out[0], out[1], out[2], out[3], out[4]) = (a, b, c, d, e);
    }

    function test_GetDeals_EveryState() public {
        uint64 waiting = published(100, 0);
        uint64 active = published(10, 1);
        uint64 terminated = published(10, 2);
        uint64 ended = published(10, 3);
        assertTrue(activateDeal(MINER, SP, active, 7));
        assertTrue(activateDeal(MINER, SP, terminated, 8));
        assertTrue(activateDeal(MINER, SP, ended, 9));
        terminateSector(MINER, SP, 8);
        // `ended` runs past its end; the market has not settled it yet.
        vm.roll(block.number + 10 + uint64(DEV_MIN_DURATION) + 10);
        (uint64 epoch, DealStateView.DealState[] memory s) =
            view_.getDeals(ids(waiting, active, terminated, ended, 999));
        assertEq(epoch, block.number);

        assertEq(s[0].dealId, waiting);
        assertEq(uint8(s[0].status), uint8(DealStateView.Status.Published));
        assertEq(s[0].exitCode, 33, "GetDealSector before activation");
        assertEq(s[0].provider, MINER);
        assertEq(s[0].commP, COMMP);
        assertEq(s[0].pieceSize, PIECE_SIZE);
        assertEq(s[0].start, 1000 + 100);
        assertEq(s[0].duration, DEV_MIN_DURATION);
        assertEq(s[0].activated, -1);
        assertEq(s[0].terminated, -1);

        assertEq(uint8(s[1].status), uint8(DealStateView.Status.Active));
        assertEq(s[1].exitCode, 0);
        assertEq(s[1].activated, 1000);
        assertEq(s[1].sector, 7);
        assertEq(s[1].duration, DEV_MIN_DURATION + 1);

        // Terminated: removed at once, every query answers 32.
        assertEq(uint8(s[2].status), uint8(DealStateView.Status.Expired));
        assertEq(s[2].exitCode, 32);
        assertEq(s[2].provider, 0);
        assertEq(s[2].commP, 0);

        // Past its end, not settled: still active, its end (start + duration) before `epoch`.
        assertEq(uint8(s[3].status), uint8(DealStateView.Status.Active));
        assertLt(s[3].start + s[3].duration, int64(epoch));

        assertEq(uint8(s[4].status), uint8(DealStateView.Status.NotFound));
        assertEq(s[4].exitCode, 17);

        // Once settled, the ended deal is gone (32); the one never activated by its start timed
        // out and is gone too.
        uint64[] memory both = new uint64[](2);
        (both[0], both[1]) = (ended, waiting);
        market.settleDealPayments(both);
        (, s) = view_.getDeals(both);
        assertEq(uint8(s[0].status), uint8(DealStateView.Status.Expired));
        assertEq(uint8(s[1].status), uint8(DealStateView.Status.Expired));
    }

    /// Another exit code is passed through as it is (never taken for "expired").
    function test_GetDeals_OtherExitCodesAreUnknown() public {
        uint64 dealId = published(100, 0);
        vm.mockCall(
            MarketActor.ETH_ADDRESS,
            abi.encodeCall(
                ISimActor.handle, (MarketActor.GET_DEAL_ACTIVATION, 0x51, Cbor.encodeUint(dealId))
            ),
            abi.encode(int256(16), uint64(0), bytes(""))
        );
        DealStateView.DealState memory s = view_.getDeal(dealId);
        assertEq(uint8(s.status), uint8(DealStateView.Status.Unknown));
        assertEq(s.exitCode, 16);
    }

    /// A verified client's DataCap, read from the DataCap actor (f07) as the oracle reads it
    /// before it proposes a verified deal: whole tokens (bytes), spent by each verified deal the
    /// market publishes; an address with no actor has none.
    function test_DataCapOf_WhatVerifiedDealsMayStillTake() public {
        address client = address(acceptingClient);
        market.setDataCap(client, 3 * uint256(PIECE_SIZE));
        (int256 code, uint256 cap) = view_.dataCapOf(client);
        assertEq(code, 0);
        assertEq(cap, 3 * uint256(PIECE_SIZE));
        DealProposal.Fields memory f = proposal(client, MINER, PIECE, 1100, 1100 + 518_400);
        f.verified = true;
        f.clientCollateral = 0;
        publishOne(SP, codec.encodeProposal(f));
        (, cap) = view_.dataCapOf(client);
        assertEq(cap, 2 * uint256(PIECE_SIZE), "the market took the piece's size");
        (code, cap) = view_.dataCapOf(address(0xD0E5));
        assertEq(code, 0);
        assertEq(cap, 0, "no actor: nothing");
        (, cap) = view_.dataCapOf(FilAddress.maskedAddress(MINER));
        assertEq(cap, 0, "an ID address resolves; a miner has none");
    }

    /// The DataCap actor's `Balance` as a contract asks it, through the `call_actor_id`
    /// precompile (read-only, as `DealStateView` does): one CBOR byte string (the binary
    /// address) in, the balance in atto-tokens out (a CBOR big integer); another method or
    /// extra bytes are not handled (22), and a payment is refused (the stand-in reverts: 22).
    function test_DataCapActor_AnswersBalanceInAttoTokens() public {
        market.setDataCap(address(acceptingClient), 5);
        ActorCaller caller = new ActorCaller();
        bytes memory who = Cbor.encodeBytes(FilAddress.delegatedAddress(address(acceptingClient)));
        (bool ok, int256 code, uint64 codec_, bytes memory ret) =
            caller.call(DataCapActor.ACTOR_ID, DataCapActor.BALANCE, who, 0, true);
        assertTrue(ok);
        assertEq(code, 0);
        assertEq(codec_, 0x51);
        assertEq(ret, Cbor.encodeBigUint(5 * DataCapActor.TOKEN_PRECISION));
        (, code,,) = caller.call(DataCapActor.ACTOR_ID, DataCapActor.BALANCE + 1, who, 0, true);
        assertEq(code, 22);
        (, code,,) =
            caller.call(DataCapActor.ACTOR_ID, DataCapActor.BALANCE, bytes.concat(who, hex"00"), 0, true);
        assertEq(code, 22);
        vm.deal(address(caller), 1);
        (, code,,) = caller.call(DataCapActor.ACTOR_ID, DataCapActor.BALANCE, who, 1, false);
        assertEq(code, 22);
        assertEq(DataCapActor.ETH_ADDRESS.balance, 0, "nothing held");
    }

    /// No market (a chain without the precompile's actor): the whole call fails, nothing is
    /// answered.
    function test_RevertWhen_TheMarketCannotBeAsked() public {
        vm.etch(FvmActor.CALL_ACTOR_ID, "");
        vm.expectRevert(abi.encodeWithSelector(MarketActor.MarketCallFailed.selector, 2567238399, -1));
        view_.getDeal(0);
    }

    function test_RevertWhen_TooManyDeals() public {
        uint64[] memory many = new uint64[](201);
        vm.expectRevert(abi.encodeWithSelector(DealStateView.DealStateViewTooManyDeals.selector, 201, 200));
        view_.getDeals(many);
    }

    /// Deals checked per call and gas: `MAX_DEALS` active deals in one call (the most expensive
    /// answer: five queries each). The local chain's `eth_call` gas cap (30M) must hold it.
    function test_Gas_GetDealsOfMaxActive() public {
        uint256 n = view_.MAX_DEALS();
        uint64[] memory all = new uint64[](n);
        for (uint256 k; k < n; ++k) {
            all[k] = published(10, k);
            assertTrue(activateDeal(MINER, SP, all[k], uint64(k)));
        }
        (, DealStateView.DealState[] memory s) = view_.getDeals(all);
        uint256 used = vm.snapshotGasLastCall("DealStateView", "getDeals of 200 active deals");
        assertEq(uint8(s[n - 1].status), uint8(DealStateView.Status.Active));
        emit log_named_uint("getDeals gas per active deal", used / n);
        assertLe(used, 30_000_000);
    }
}

/// A contract calling an actor through the `call_actor_id` precompile, as Estuary's contracts do.
contract ActorCaller {
    function call(uint64 actorId, uint64 method, bytes memory params, uint256 value, bool readOnly)
        external
        returns (bool ok, int256 exitCode, uint64 codec, bytes memory ret)
    {
        return FvmActor.call(actorId, method, params, value, readOnly);
    }
}
