// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {DealClient} from "../../src/DealClient.sol";
import {EstuaryPinning} from "../../src/EstuaryPinning.sol";
import {FilAddress} from "../../src/lib/FilAddress.sol";
import {PoDSI} from "../../src/lib/PoDSI.sol";
import {MinerActorSimulator} from "../../src/sim/MinerActorSimulator.sol";
import {FilecoinTest} from "../utils/FilecoinTest.sol";
import {PieceTree} from "../utils/PieceTree.sol";
import {CommonBase} from "forge-std/Base.sol";
import {StdUtils} from "forge-std/StdUtils.sol";
import {Vm} from "forge-std/Vm.sol";

/// Requests, reports in any order (deal reports with real and tampered proofs, against real and
/// wrong deals in the simulated market, and against direct deals a `DealClient` recorded or
/// did not), cancels and fee payments.
contract PinningHandler is CommonBase, StdUtils {
    EstuaryPinning internal immutable pinning;
    address internal immutable operator;
    bytes internal constant CID =
        hex"01551220c7d01489080858c500065836c658f847a6ca67c4864619212be4f8200e4bbace";

    bytes32 internal constant H = keccak256(CID);

    /// Request `id` is pinned with piece `id % 3` of the aggregate, whose deals are `deals`
    /// (`deals[2]` is a provider's deal for another piece).
    bytes32[3] internal commPs;
    uint64[3] internal sizes;
    PoDSI.InclusionProof[3] internal proofs;
    bytes32 internal aggregate;
    uint64 internal aggregateSize;
    uint64[3] internal deals;
    uint64[3] internal providers;

    /// Accepted reports per request and kind (0 pinned, 1 deal, 2 failed).
    mapping(uint256 id => mapping(uint256 kind => uint256)) public accepted;
    /// Deal proofs recorded for a request that was not pinned, was closed, or whose deal was
    /// already its latest (must stay 0), and tampered or wrong-deal reports accepted (0 too).
    uint256 public badProven;
    uint256 public forgedAccepted;
    /// The deal a request was last proven in (0: none): a market deal's id + 1, a direct deal's
    /// key (`keccak256(abi.encode(client, proposal, provider))`); and the deal id and provider
    /// the contract should give for it.
    mapping(uint256 id => uint256) public lastDeal;
    mapping(uint256 id => uint64) public lastDealId;
    mapping(uint256 id => uint64) public lastProvider;

    /// A direct deal: a proposal of `dealClient` and a provider.
    struct Direct {
        bytes32 proposal;
        uint64 provider;
    }

    /// `directs[0]` and `directs[1]` (a renewal at the same provider) were activated by their
    /// provider without the market; `directs[2]` names a provider that activated nothing.
    DealClient internal dealClient;
    Direct[3] internal directs;
    uint256 public feesPaid;
    uint256 public refunded;
    uint256 public feesWithdrawn;
    /// Reports naming the wrong CID that were accepted (must stay 0).
    uint256 public wrongCidAccepted;

    constructor(EstuaryPinning pinning_, address operator_) {
        pinning = pinning_;
        operator = operator_;
    }

    function setAggregate(
        PieceTree.Aggregate memory a,
        PoDSI.InclusionProof[3] memory proofs_,
        uint64[3] memory deals_,
        uint64[3] memory providers_
    ) external {
        if (aggregate != 0) return; // set once, by the test's setUp
        for (uint256 k; k < 3; ++k) {
            commPs[k] = a.commPs[k];
            sizes[k] = a.sizes[k];
            proofs[k] = proofs_[k];
        }
        aggregate = PieceTree.root(a);
        aggregateSize = a.dealSize;
        deals = deals_;
        providers = providers_;
    }

    function setDirect(DealClient client, Direct[3] memory directs_) external {
        if (address(dealClient) != address(0)) return; // set once, by the test's setUp
        dealClient = client;
        for (uint256 k; k < 3; ++k) {
            directs[k] = directs_[k];
        }
    }

    function request(address who) external {
        // A person's account: not the zero address, not a contract (dealing to the pinning
        // contract itself would overwrite the fees it holds).
        if (who == address(0) || who.code.length != 0) return;
        uint256 fee = pinning.fee();
        vm.deal(who, who.balance + fee);
        vm.prank(who);
        pinning.pinToEstuary{value: fee}(CID);
        feesPaid += fee;
    }

    function report(uint256 seed, uint8 kind, bool wrongCid) external {
        uint256 n = pinning.requestCount();
        if (n == 0) return;
        uint256 id = 1 + seed % n;
        kind %= 3;
        bytes32 h = wrongCid ? keccak256(abi.encode(seed)) : H;
        vm.prank(operator);
        bool ok;
        if (kind == 0) {
            bytes memory piece = PoDSI.pieceCidOf(commPs[id % 3]);
            (ok,) = address(pinning)
                .call(abi.encodeCall(EstuaryPinning.reportPinned, (id, h, piece, sizes[id % 3])));
        } else if (kind == 1) {
            return;
        } else {
            (ok,) = address(pinning)
                .call(
                    abi.encodeCall(
                        EstuaryPinning.reportFailed, (id, h, EstuaryPinning.FailureCode.Timeout, "gone")
                    )
                );
        }
        if (ok) accepted[id][kind] += 1;
        if (ok && wrongCid) wrongCidAccepted += 1;
    }

    /// A requester takes back a refundable fee (after failures or the refund delay).
    function refund(uint256 seed) external {
        uint256 n = pinning.requestCount();
        if (n == 0) return;
        uint256 id = 1 + seed % n;
        uint256 amount = pinning.refundable(id);
        address who = pinning.requesterOf(id);
        vm.prank(who);
        try pinning.claimRefund(id, payable(address(0xEF0))) {
            refunded += amount;
        } catch {}
    }

    function withdrawFees() external {
        uint256 amount = pinning.feesHeld();
        vm.prank(pinning.owner());
        pinning.withdrawFees(payable(address(0xFEE)));
        feesWithdrawn += amount;
    }

    function warp(uint32 secondsLater) external {
        vm.warp(block.timestamp + bound(secondsLater, 1, 2 days));
    }

    /// A deal report of up to 6 requests (repeats, unknown ids, any state), against one of the
    /// deals; `forge` 1 tampers with a proof, 2 names the deal holding another piece. Checks
    /// each `DealProven` against the request's state before the report.
    function reportDeal(uint256 seed, uint8 size, uint8 dealPick, uint8 forge) external {
        forge %= 3;
        uint256 pick = forge == 2 ? 2 : dealPick % 2;
        EstuaryPinning.DealReport memory r;
        r.dealId = deals[pick];
        r.provider = providers[pick];
        r.aggregateCommP = aggregate;
        r.aggregateSize = aggregateSize;
        uint256 tag = uint256(r.dealId) + 1;
        bool[] memory open;
        (r.pins, open) = pinsOf(seed, size, tag, forge == 1);
        vm.recordLogs();
        vm.prank(operator);
        try pinning.reportDeal(r) {
            // A tampered proof counts only if its pin was checked (skipped pins are not).
            if (forge == 2 || (forge == 1 && open[0])) forgedAccepted += 1;
        } catch {
            return;
        }
        proven(r.pins, open, tag, r.dealId, r.provider);
    }

    /// A direct-deal report of up to 6 requests, against one of `directs`; `forge` 1 tampers
    /// with a proof. `directs[2]`, never activated, is forged too. Checks each `DealProven` as
    /// `reportDeal` does.
    function reportDirect(uint256 seed, uint8 size, uint8 directPick, uint8 forge) external {
        forge %= 2;
        Direct memory d = directs[directPick % 3];
        EstuaryPinning.DirectDealReport memory r;
        r.client = address(dealClient);
        r.proposal = d.proposal;
        r.provider = d.provider;
        uint256 tag = uint256(keccak256(abi.encode(r.client, r.proposal, r.provider)));
        bool[] memory open;
        (r.pins, open) = pinsOf(seed, size, tag, forge == 1);
        vm.recordLogs();
        vm.prank(operator);
        try pinning.reportDirectDeal(r) {
            if (directPick % 3 == 2 || (forge == 1 && open[0])) forgedAccepted += 1;
        } catch {
            return;
        }
        proven(r.pins, open, tag, type(uint64).max, r.provider);
    }

    /// Up to 6 pins (repeats, unknown ids), each with whether it is open to a deal `tag`
    /// (pinned, not closed, its last deal another); the first proof tampered if `tamper` (its
    /// pin's `open` then says whether a check would see it).
    function pinsOf(uint256 seed, uint8 size, uint256 tag, bool tamper)
        internal
        view
        returns (EstuaryPinning.PinInclusion[] memory pins, bool[] memory open)
    {
        uint256 n = pinning.requestCount();
        size = uint8(bound(size, 1, 6));
        pins = new EstuaryPinning.PinInclusion[](size);
        open = new bool[](size);
        for (uint256 i; i < size; ++i) {
            seed = uint256(keccak256(abi.encode(seed, i)));
            uint256 id = 1 + seed % (n + 2);
            pins[i] = EstuaryPinning.PinInclusion(id, H, commPs[id % 3], sizes[id % 3], proofs[id % 3]);
            if (id <= n) {
                EstuaryPinning.RequestStatus memory st = pinning.getRequest(id);
                open[i] = st.pinned && !st.cancelled && !st.failed && lastDeal[id] != tag;
            }
        }
        if (tamper) pins[0].proof.proofIndex.path[seed % 6] ^= bytes32(uint256(1) << (seed % 256));
    }

    /// Each `DealProven` of the last call, against the pins' state before it.
    function proven(
        EstuaryPinning.PinInclusion[] memory pins,
        bool[] memory open,
        uint256 tag,
        uint64 dealId,
        uint64 provider
    ) internal {
        Vm.Log[] memory logs = vm.getRecordedLogs();
        for (uint256 i; i < logs.length; ++i) {
            if (logs[i].topics[0] != EstuaryPinning.DealProven.selector) continue;
            uint256 id = uint256(logs[i].topics[1]);
            bool wasOpen;
            for (uint256 k; k < pins.length; ++k) {
                if (pins[k].requestId == id && open[k]) wasOpen = true;
            }
            if (!wasOpen || lastDeal[id] == tag) badProven += 1;
            (lastDeal[id], lastDealId[id], lastProvider[id]) = (tag, dealId, provider);
            accepted[id][1] += 1;
        }
    }

    /// Pinned reports in a batch (with repeats and unknown ids): counted from the `Pinned`
    /// events the batch emits, so a double record would show.
    function reportBatch(uint256 seed, uint8 size) external {
        uint256 n = pinning.requestCount();
        size = uint8(bound(size, 1, 16));
        EstuaryPinning.PinnedReport[] memory reports = new EstuaryPinning.PinnedReport[](size);
        for (uint256 i; i < size; ++i) {
            seed = uint256(keccak256(abi.encode(seed, i)));
            uint256 id = 1 + seed % (n + 2);
            reports[i] = EstuaryPinning.PinnedReport(id, H, PoDSI.pieceCidOf(commPs[id % 3]), sizes[id % 3]);
        }
        vm.recordLogs();
        vm.prank(operator);
        pinning.reportPinnedBatch(reports);
        Vm.Log[] memory logs = vm.getRecordedLogs();
        for (uint256 i; i < logs.length; ++i) {
            if (logs[i].topics[0] == EstuaryPinning.Pinned.selector) {
                accepted[uint256(logs[i].topics[1])][0] += 1;
            }
        }
    }

    function cancel(uint256 seed) external {
        uint256 n = pinning.requestCount();
        if (n == 0) return;
        uint256 id = 1 + seed % n;
        vm.prank(pinning.requesterOf(id));
        (bool ok,) = address(pinning).call(abi.encodeCall(EstuaryPinning.cancel, (id)));
        ok;
    }

    function setFee(uint96 fee) external {
        vm.prank(pinning.owner());
        pinning.setFee(uint96(bound(fee, 0, 1 ether)));
    }
}

contract EstuaryPinningInvariantTest is FilecoinTest {
    EstuaryPinning internal pinning;
    PinningHandler internal handler;

    function setUp() public {
        installMarket();
        useDevPolicy();
        vm.roll(1000);
        pinning = new EstuaryPinning(address(this), 1 days);
        handler = new PinningHandler(pinning, address(0x0C));
        pinning.setOperator(address(0x0C), true);
        pinning.transferOwnership(address(handler));
        vm.prank(address(handler));
        pinning.acceptOwnership();

        // Three pieces in an 8 KiB aggregate, two providers' deals for it, and a deal for
        // another piece.
        PieceTree.Piece[] memory pieces = new PieceTree.Piece[](3);
        (pieces[0], pieces[1], pieces[2]) =
        (PieceTree.Piece(2, 1), PieceTree.Piece(3, 2), PieceTree.Piece(2, 3));
        PieceTree.Aggregate memory a = PieceTree.build(8, pieces, new PieceTree.Corruption[](0));
        PoDSI.InclusionProof[3] memory proofs;
        for (uint256 k; k < 3; ++k) {
            proofs[k] = PieceTree.inclusion(a, k);
        }
        createMiner(1000, address(0x5B1));
        createMiner(1001, address(0x5B2));
        uint64[3] memory deals = [
            dealFor(PieceTree.root(a), 1000, address(0x5B1)),
            dealFor(PieceTree.root(a), 1001, address(0x5B2)),
            dealFor(keccak256("another piece") & bytes32(~uint256(0xc0)), 1000, address(0x5B1))
        ];
        handler.setAggregate(a, proofs, deals, [uint64(1000), 1001, 1000]);

        // Direct deals: a DealClient's proposal of the aggregate, and a renewal of it, both
        // activated without the market by f01000; f01001 activates neither.
        DealClient client = new DealClient(
            address(this), codec, DealClient.DealPolicy(300, 3_680_640, 10, 3_680_640, 0, true)
        );
        vm.prank(address(handler));
        pinning.setDealClient(address(client), true);
        bytes32 first = proposeAndActivate(client, a, 0);
        bytes32 renewal = proposeAndActivate(client, a, 1);
        handler.setDirect(
            client,
            [
                PinningHandler.Direct(first, 1000),
                PinningHandler.Direct(renewal, 1000),
                PinningHandler.Direct(first, 1001)
            ]
        );
        targetContract(address(handler));
    }

    /// A proposal of aggregate `a` (its term longer by `longer` epochs), activated without the
    /// market by f01000's sector.
    function proposeAndActivate(DealClient client, PieceTree.Aggregate memory a, int64 longer)
        internal
        returns (bytes32 id)
    {
        DealClient.DealRequest memory r;
        r.pieceCid = PoDSI.pieceCidOf(PieceTree.root(a));
        r.pieceSize = a.dealSize;
        r.label = PAYLOAD_TEXT;
        r.startEpoch = int64(uint64(block.number)) + 100;
        r.endEpoch = r.startEpoch + 1000 + longer;
        r.replicas = 2;
        r.locationRef = "https://estuary.example/piece/1";
        r.carSize = a.dealSize / 2;
        id = client.makeDealProposal(r);
        MinerActorSimulator.SectorActivation[] memory s = new MinerActorSimulator.SectorActivation[](1);
        s[0].sector = 9;
        s[0].expiration = r.endEpoch;
        s[0].pieces = new MinerActorSimulator.PieceActivation[](1);
        s[0].pieces[0] = MinerActorSimulator.PieceActivation(
            r.pieceCid, r.pieceSize, new MinerActorSimulator.Notification[](1)
        );
        s[0].pieces[0].notify[0] = MinerActorSimulator.Notification(
            FilAddress.delegatedAddress(address(client)), abi.encodePacked(id)
        );
        vm.prank(address(0x5B1));
        require(minerAt(1000).proveCommitSectors3(s, true)[0], "activated");
    }

    function dealFor(bytes32 commP, uint64 provider, address controller) internal returns (uint64) {
        return publishPiece(commP, 8192, provider, controller, 10_000, 0);
    }

    /// Pinned and failed are reported at most once; a deal is proven only for a request pinned
    /// and open, with its piece in the deal, never twice in a row; dealMade implies pinned.
    function invariant_EachStateReportedAtMostOnce() public view {
        uint256 n = pinning.requestCount();
        for (uint256 id = 1; id <= n; ++id) {
            assertLe(handler.accepted(id, 0), 1);
            assertLe(handler.accepted(id, 2), 1);
            EstuaryPinning.RequestStatus memory s = pinning.getRequest(id);
            if (s.dealMade) assertTrue(s.pinned);
            assertEq(s.dealMade, handler.lastDeal(id) != 0);
            if (s.dealMade) {
                assertEq(s.dealId, handler.lastDealId(id));
                assertEq(s.provider, handler.lastProvider(id));
            }
        }
        assertEq(handler.badProven(), 0);
    }

    /// The handler's path reaches proven deals: request, pinned, deal report (then a tampered
    /// one and one for the deal holding another piece, both refused), then direct deals.
    function test_HandlerProvesADeal() public {
        handler.request(address(0xA11CE));
        handler.report(0, 0, false);
        // A seed whose single pin names request 1 (the others name unknown ones).
        for (uint256 seed; handler.accepted(1, 1) == 0 && seed < 20; ++seed) {
            handler.reportDeal(seed, 1, 0, 0);
        }
        assertEq(handler.accepted(1, 1), 1);
        assertEq(handler.lastDeal(1), 1);
        handler.reportDeal(0, 1, 1, 1);
        handler.reportDeal(0, 1, 0, 2);
        assertEq(handler.accepted(1, 1), 1);
        // Direct deals: f01000's, its renewal, then a tampered one and f01001's, refused.
        for (uint256 pick; pick < 2; ++pick) {
            for (uint256 seed; handler.accepted(1, 1) == 1 + pick && seed < 20; ++seed) {
                handler.reportDirect(seed, 1, uint8(pick), 0);
            }
            assertEq(handler.accepted(1, 1), 2 + pick);
            assertEq(handler.lastProvider(1), 1000);
            assertEq(handler.lastDealId(1), type(uint64).max);
        }
        handler.reportDirect(0, 1, 0, 1);
        handler.reportDirect(0, 1, 2, 0);
        assertEq(handler.accepted(1, 1), 3);
        invariant_EachStateReportedAtMostOnce();
        invariant_ReportsMatchTheirRequestsCidAndProofs();
    }

    /// Regression: the fuzzer once passed the pinning contract's own address as a requester,
    /// and dealing it ether overwrote the fees it held.
    function test_RequestFromAContractAddressIsSkipped() public {
        handler.setFee(1_836_119_983);
        handler.request(address(0x9B0D2f92a3D5CaDe7942DB405c2ba1CAe756aB18));
        handler.request(address(pinning));
        handler.request(address(0x9B0D2f92a3D5CaDe7942DB405c2ba1CAe756aB18));
        invariant_FeesHeld();
        assertEq(pinning.requestCount(), 2);
    }

    /// Every fee paid is held (earned, or in escrow until its outcome) until withdrawn by the
    /// owner or refunded to its requester.
    function invariant_FeesHeld() public view {
        assertEq(address(pinning).balance, pinning.feesHeld() + pinning.feesEscrowed());
        assertEq(
            pinning.feesHeld() + pinning.feesEscrowed() + handler.refunded() + handler.feesWithdrawn(),
            handler.feesPaid()
        );
    }

    /// A report naming another CID than its request's is never accepted; nor is a tampered
    /// proof or a deal holding another piece (one campaign for both: each costs minutes).
    function invariant_ReportsMatchTheirRequestsCidAndProofs() public view {
        assertEq(handler.wrongCidAccepted(), 0);
        assertEq(handler.forgedAccepted(), 0);
    }
}
