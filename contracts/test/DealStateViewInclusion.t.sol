// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {DealStateView} from "../src/DealStateView.sol";
import {PoDSI} from "../src/lib/PoDSI.sol";
import {FilecoinTest} from "./utils/FilecoinTest.sol";
import {PoDSIFixture} from "./utils/PoDSIFixture.sol";

/// `checkInclusion`: what a client's browser asks to see its own piece inside an SP's deal,
/// with the proofs `crates/piece` makes (the oracle's `GET /inclusion/{piece}`) and deals in
/// the (simulated) market, read through `call_actor_id` as on Calibration.
contract DealStateViewInclusionTest is FilecoinTest, PoDSIFixture {
    DealStateView internal view_;
    address internal constant SP = address(0x5B1);
    uint64 internal constant MINER = 1000;

    /// The fixture's "estuary payloads" aggregate: five real pieces in 8 MiB.
    uint256 internal payloads;

    function setUp() public {
        installMarket();
        useDevPolicy();
        vm.roll(1000);
        createMiner(MINER, SP);
        view_ = new DealStateView();
        loadFixture();
        payloads = firstOf("e");
    }

    function dealOfPayloads() internal returns (uint64) {
        return publishPiece(cases[payloads].commPa, cases[payloads].sizePa, MINER, SP, 10, 0);
    }

    function check(uint64 dealId, Case storage c, PoDSI.InclusionProof memory proof)
        internal
        returns (DealStateView.DealState memory deal, bool proven, PoDSI.Failure failure, uint64 offset)
    {
        return view_.checkInclusion(dealId, proof, dataOf(c));
    }

    /// Each piece of a published deal's aggregate is proven, at its offset; then again once the
    /// deal is active.
    function test_CheckInclusion_EachPiece_PublishedThenActive() public {
        uint64 dealId = dealOfPayloads();
        for (uint256 k; k < 5; ++k) {
            Case storage c = cases[payloads + k];
            (DealStateView.DealState memory deal, bool proven, PoDSI.Failure failure, uint64 offset) =
                check(dealId, c, proofOf(c));
            assertEq(uint8(deal.status), uint8(DealStateView.Status.Published));
            assertEq(deal.provider, MINER);
            assertEq(deal.commP, c.commPa);
            assertEq(deal.pieceSize, c.sizePa);
            assertTrue(proven);
            assertEq(uint8(failure), uint8(PoDSI.Failure.None));
            assertEq(offset, c.offset);
        }
        assertTrue(activateDeal(MINER, SP, dealId, 3));
        Case storage last = cases[payloads + 4];
        (DealStateView.DealState memory active, bool again,,) = check(dealId, last, proofOf(last));
        assertEq(uint8(active.status), uint8(DealStateView.Status.Active));
        assertEq(active.sector, 3);
        assertTrue(again);
    }

    /// A proof of another aggregate's piece leads elsewhere: refused, as PoDSI says why.
    function test_CheckInclusion_OtherAggregate_NotProven() public {
        uint64 dealId = dealOfPayloads();
        Case storage other = cases[0];
        assertTrue(other.commPa != cases[payloads].commPa);
        (, bool proven, PoDSI.Failure failure, uint64 offset) = check(dealId, other, proofOf(other));
        assertFalse(proven);
        assertEq(uint8(failure), uint8(PoDSI.Failure.AggregateMismatch));
        assertEq(offset, 0);
    }

    /// The right proof for a piece it was not made for (the client's piece swapped) fails.
    function test_CheckInclusion_WrongPiece_NotProven() public {
        uint64 dealId = dealOfPayloads();
        Case storage c = cases[payloads + 1];
        PoDSI.InclusionVerifierData memory wrong =
            PoDSI.InclusionVerifierData(cases[payloads + 2].commPc, c.sizePc);
        (, bool proven, PoDSI.Failure failure,) = view_.checkInclusion(dealId, proofOf(c), wrong);
        assertFalse(proven);
        assertTrue(failure != PoDSI.Failure.None);
    }

    /// A deal the market does not have (never published, or gone) judges nothing.
    function test_CheckInclusion_DealNotInMarket_NothingJudged() public {
        Case storage c = cases[payloads];
        (DealStateView.DealState memory none, bool proven, PoDSI.Failure failure,) = check(999, c, proofOf(c));
        assertEq(uint8(none.status), uint8(DealStateView.Status.NotFound));
        assertFalse(proven);
        assertEq(uint8(failure), uint8(PoDSI.Failure.None));

        uint64 dealId = publishPiece(c.commPa, c.sizePa, MINER, SP, 10, 0);
        assertTrue(activateDeal(MINER, SP, dealId, 4));
        terminateSector(MINER, SP, 4);
        (DealStateView.DealState memory gone, bool provenGone,,) = check(dealId, c, proofOf(c));
        assertEq(uint8(gone.status), uint8(DealStateView.Status.Expired));
        assertFalse(provenGone);
    }

    /// Any one bit of either path changed: never proven.
    function testFuzz_CheckInclusion_TamperedNode_NotProven(uint256 piece, uint256 node, uint8 bit) public {
        uint64 dealId = dealOfPayloads();
        Case storage c = cases[payloads + bound(piece, 0, 4)];
        PoDSI.InclusionProof memory proof = proofOf(c);
        flip(proof, node, bit);
        (, bool proven, PoDSI.Failure failure,) = check(dealId, c, proof);
        assertFalse(proven);
        assertTrue(failure != PoDSI.Failure.None);
    }

    /// The fuzz test's concrete twin: the first subtree node of the first piece, its low bit
    /// flipped.
    function test_CheckInclusion_TamperedNode_NotProven() public {
        testFuzz_CheckInclusion_TamperedNode_NotProven(0, 0, 0);
    }

    /// What a client's check costs (an `eth_call`: gas is not paid, but bounds the node's work).
    function test_Gas_CheckInclusion() public {
        uint64 dealId = dealOfPayloads();
        Case storage c = cases[payloads + 2];
        view_.checkInclusion(dealId, proofOf(c), dataOf(c));
        vm.snapshotGasLastCall("DealStateView", "checkInclusion of a piece in an 8 MiB aggregate");
    }
}
