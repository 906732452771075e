// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {CidLib} from "./lib/CidLib.sol";
import {DealCodec} from "./lib/DealCodec.sol";
import {FilAddress} from "./lib/FilAddress.sol";
import {FvmActor} from "./lib/FvmActor.sol";
import {MarketActor} from "./lib/MarketActor.sol";
import {MinerActor} from "./lib/MinerActor.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";

/// @title PerpetualStorage
/// @notice Storage orders that keep N replicas of a piece on Filecoin for as long as they are
///         funded. A client creates and funds an order. A storage provider claims an open
///         replica slot for its miner, from one of the miner's controlling addresses, with a
///         bond; the claim makes this contract offer the slot's deal, with this contract as
///         the deal's client ("the contract owns the storage deals"), the way Boost reads
///         contract deals: `DealProposalCreate`, then `getDealProposal` and `getExtraParams`.
///         When the provider publishes it, the market authenticates it here (AuthenticateMessage)
///         and notifies the deal (MarketNotifyDeal), which binds the deal to the slot. Once the
///         deal is active, `publish` starts streaming the slot's bounty to the miner over the
///         order's term and returns the bond; `collect` pays what has accrued. A slot whose claim
///         lapsed, whose deal ended or whose term is over can be `reopen`ed by anyone for a tip.
///         The order's client may `markLost` an active replica whose provider stopped serving it
///         (on its own word: its retrieval probes): the provider keeps what it earned and a
///         bond's worth of the rest, and may not claim the order again.
/// @dev Deals the provider made as its own client are not accepted, only deals offered here:
///      (1) the contract checks the exact terms when the market authenticates the deal, so
///      `publish` needs one market call, not five; (2) the market binds the deal to the slot when
///      it notifies this contract, so no one can present someone else's deal or the same deal
///      for two slots, and no deal can be swapped in later; (3) a self-dealt verified deal spends
///      the provider's own DataCap, the self-dealing Fil+ forbids. An SP running Boost with
///      contract deals enabled serves these orders unchanged.
///
///      Payments (bounties, returned bonds) go to the miner actor by a method-0 send through
///      `call_actor_id`: the FEVM turns an EVM value CALL to a miner into method InvokeEVM, which
///      a miner refuses (exit 22). Refunds and keeper tips wait in `withdrawable` for EVM
///      accounts. The bounty is streamed from the block of `publish`, never for an epoch no live
///      deal covered: a replica whose deal is seen gone (terminated deals leave the market's
///      state at once) is paid only up to the last epoch it was seen live, so providers (or
///      anyone) call `collect` now and then to record the deal live.
///
///      Bond rule (against squatting): claiming never resets the bounty's rise (`openSince`
///      moves only when the order stops having every replica active), so a squatter who claims
///      every open slot and lets the claims lapse gains at most the rise over each claim window
///      for each slot, `bounty * MAX_RISE_BPS / 10_000 * (claimWindow + 1) / riseEpochs`, and
///      loses the bond less the keeper's tip (even when it is its own keeper). `riseEpochs` is
///      set so that this rise is at most `(BOND_BPS - TIP_BPS) / 10_000` of the bounty:
///      `riseEpochs = ceil((claimWindow + 1) * MAX_RISE_BPS / (BOND_BPS - TIP_BPS))`, and the
///      bond is at least `BOND_BPS` of the bounty locked. Squatting thus costs at least what
///      it can gain, and the forfeited bonds go to the order it delayed.
contract PerpetualStorage is ReentrancyGuard {
    /// @notice Most replicas one order may ask for.
    uint16 public constant MAX_REPLICAS = 32;
    /// @notice Most origins (CAR URLs or multiaddrs) per order, and the longest one.
    uint256 public constant MAX_ORIGINS = 8;
    uint256 public constant MAX_ORIGIN_LENGTH = 256;
    /// @notice The bounty of an open slot rises linearly over `riseEpochs` by at most this
    ///         fraction of the base bounty (100 %: up to twice the base).
    uint256 public constant MAX_RISE_BPS = 10_000;
    /// @notice A claim's bond, as a fraction of the slot's bounty.
    uint256 public constant BOND_BPS = 2_000;
    /// @notice The keeper's tip for a `reopen`, as a fraction of the base bounty.
    uint256 public constant TIP_BPS = 100;
    /// @notice Largest provider collateral a claim may offer (it travels in the proposal id).
    uint256 public constant MAX_COLLATERAL = (1 << 88) - 1;

    /// @notice The deal CBOR and CID text codec.
    DealCodec public immutable codec;
    /// @notice Epochs a provider has from `claim` to `publish`.
    uint64 public immutable claimWindow;
    /// @notice Shortest and longest replica term an order may ask for, in epochs (the deal lasts
    ///         the term; the market's duration bounds: 518,400 to 3,680,640 in production).
    uint64 public immutable minTerm;
    uint64 public immutable maxTerm;
    /// @notice Smallest bond, whatever the bounty.
    uint96 public immutable minBond;
    /// @notice Epochs over which an open slot's bounty rises to its maximum (see the bond rule).
    uint64 public immutable riseEpochs;

    /// @notice A slot's state: open; claimed (deal offered); dealt (the market published it);
    ///         active (`publish` saw it active; the bounty streams).
    enum SlotState {
        Open,
        Claimed,
        Dealt,
        Active
    }

    uint8 internal constant VERIFIED = 1;
    uint8 internal constant SUSPENDED = 2;
    uint8 internal constant CANCELLED = 4;

    /// @notice A storage order as stored (packed so that a claim touches few slots).
    struct Order {
        address client;
        uint8 replicas;
        uint8 inUse;
        uint8 active;
        uint8 flags;
        /// First provider of the list of slots in use (linked through `Slot.next`).
        uint64 head;
        uint96 balance;
        uint96 bounty;
        /// Since when the order has lacked an active replica (drives the bounty's rise).
        uint64 openSince;
        uint64 paddedSize;
        uint64 term;
        uint64 carSize;
        bytes pieceCid;
        bytes payloadCid;
        string[] origins;
    }

    /// @notice A storage order as `getOrder` returns it.
    struct OrderView {
        address client;
        uint16 replicas;
        uint16 inUse;
        uint16 active;
        bool verified;
        bool suspended;
        bool cancelled;
        uint96 balance;
        uint96 bounty;
        uint64 openSince;
        uint64 paddedSize;
        uint64 term;
        uint64 carSize;
        bytes pieceCid;
        bytes payloadCid;
        string[] origins;
        /// Providers holding (or having claimed) a replica.
        uint64[] holders;
    }

    /// @notice One provider's replica slot in an order, in two storage slots: a claim writes
    ///         the first only. The bond is `bondOf(bounty)`; the deal's start epoch is the
    ///         deadline and its end `deadline + term`.
    struct Slot {
        SlotState state;
        uint40 deadline;
        uint96 bounty;
        /// Next provider in the order's list of slots in use (0: none).
        uint64 next;
        uint64 dealId;
        uint40 start;
        uint40 lastSeen;
        uint96 paid;
    }

    /// @notice A slot as `getSlot` returns it.
    struct SlotView {
        SlotState state;
        /// Last epoch for `publish`, and the deal's start epoch.
        uint64 deadline;
        uint96 bounty;
        uint96 bond;
        uint64 dealId;
        /// Streaming from `start` to `payEnd`.
        uint64 start;
        uint64 payEnd;
        /// Last epoch the deal was seen live.
        uint64 lastSeen;
        uint96 paid;
    }

    /// @notice What a client chooses when creating an order.
    struct OrderParams {
        bytes pieceCid;
        bytes payloadCid;
        uint64 paddedSize;
        /// Size of the CAR (Boost downloads exactly this many bytes).
        uint64 carSize;
        uint16 replicas;
        uint96 bounty;
        uint64 term;
        bool verified;
        string[] origins;
    }

    /// @notice Orders by ID, from 1.
    mapping(uint256 orderId => Order) internal orders;
    /// @notice Slots by order and provider ID.
    mapping(uint256 orderId => mapping(uint64 provider => Slot)) internal slots;
    /// @notice The order a claim's deal offer belongs to, by (provider, start epoch): what the
    ///         market's callbacks are matched with.
    mapping(bytes32 key => uint256 orderId) public offerOrder;
    /// @notice Providers the order's client found had lost their replica (`markLost`): they may
    ///         not claim a slot of that order again.
    mapping(uint256 orderId => mapping(uint64 provider => bool)) public excluded;
    /// @notice Refunds, returned excess bonds and keeper tips waiting for `withdraw`.
    mapping(address account => uint256) public withdrawable;
    /// @notice Payments to a miner whose send failed, waiting for `payMiner`.
    mapping(uint64 miner => uint256) public minerOwed;
    /// @notice Orders created so far.
    uint256 public orderCount;

    event OrderCreated(
        uint256 indexed orderId,
        address indexed client,
        bytes pieceCid,
        uint64 paddedSize,
        uint16 replicas,
        uint96 bounty,
        uint64 term,
        bool verified
    );
    event OrderFunded(uint256 indexed orderId, address indexed from, uint256 amount);
    event BountyChanged(uint256 indexed orderId, uint96 bounty);
    event ReplicaTargetChanged(uint256 indexed orderId, uint16 replicas);
    event OrderSuspended(uint256 indexed orderId, bool suspended);
    event OrderCancelled(uint256 indexed orderId, uint256 refund);
    event OriginsChanged(uint256 indexed orderId, string[] origins);
    /// @notice A slot was claimed and its deal offered (`proposalId` in `DealProposalCreate`).
    event SlotClaimed(
        uint256 indexed orderId,
        uint64 indexed provider,
        address claimant,
        uint96 bounty,
        uint96 bond,
        uint64 deadline,
        bytes32 proposalId
    );
    /// @notice FRC-0068, for Boost: the deal offered for a claimed slot.
    event DealProposalCreate(bytes32 indexed id, uint64 size, bool indexed verified, uint256 price);
    /// @notice The market published the slot's deal and notified it here.
    event SlotDealPublished(uint256 indexed orderId, uint64 indexed provider, uint64 indexed dealId);
    /// @notice The slot's deal is active: the bounty streams from `start` to `payEnd`.
    event SlotActivated(
        uint256 indexed orderId, uint64 indexed provider, uint64 dealId, uint64 start, uint64 payEnd
    );
    /// @notice Bounty accrued up to epoch `until` was settled to the miner.
    event BountyPaid(uint256 indexed orderId, uint64 indexed provider, uint256 amount, uint64 until);
    /// @notice The claim's bond was returned (to the miner).
    event BondReturned(uint256 indexed orderId, uint64 indexed provider, uint256 amount);
    /// @notice A payment reached a miner actor (method-0 send).
    event MinerPaid(uint64 indexed miner, uint256 amount);
    /// @notice A payment to a miner failed; it waits in `minerOwed` for `payMiner`.
    event MinerPaymentDeferred(uint64 indexed miner, uint256 amount, int256 exitCode);
    event SlotReopened(
        uint256 indexed orderId, uint64 indexed provider, address keeper, uint256 tip, bool bondForfeited
    );
    event Withdrawn(address indexed account, uint256 amount);
    /// @notice The order's client found the provider no longer serves its replica (its
    ///         retrieval probes failed): its slot reopens and it may not claim this order again.
    event SlotLost(uint256 indexed orderId, uint64 indexed provider, address client, uint256 lossFee);

    error PerpetualStorageBadPieceCid();
    error PerpetualStorageBadPayloadCid(CidLib.CidError reason);
    error PerpetualStorageBadSize(uint64 paddedSize, uint64 carSize);
    error PerpetualStorageBadReplicas(uint16 replicas);
    error PerpetualStorageBadBounty();
    error PerpetualStorageBadTerm(uint64 term);
    error PerpetualStorageBadOrigins();
    error PerpetualStorageNoOrder(uint256 orderId);
    error PerpetualStorageNotClient(uint256 orderId, address caller);
    error PerpetualStorageOrderClosed(uint256 orderId);
    error PerpetualStorageNoOpenSlot(uint256 orderId);
    error PerpetualStorageBadProvider();
    /// @notice The caller is not the owner, worker or a control address of the miner (or the
    ///         miner actor does not exist).
    error PerpetualStorageNotController(uint64 provider, address caller);
    error PerpetualStorageBadCollateral(uint256 providerCollateral);
    error PerpetualStorageAlreadyHolds(uint256 orderId, uint64 provider);
    error PerpetualStorageUnderfunded(uint256 orderId, uint256 needed, uint256 balance);
    error PerpetualStorageWrongBond(uint256 expected, uint256 sent);
    error PerpetualStorageNotClaimed(uint256 orderId, uint64 provider);
    /// @notice The slot is claimed but the market has not published its deal yet.
    error PerpetualStorageNoDeal(uint256 orderId, uint64 provider);
    error PerpetualStorageClaimExpired(uint256 orderId, uint64 provider);
    /// @notice The slot's deal is not active (not yet activated, or gone from the market).
    error PerpetualStorageDealNotActive(uint64 dealId, MarketActor.Status status);
    error PerpetualStorageSlotStillLive(uint256 orderId, uint64 provider);
    error PerpetualStorageNothingToWithdraw();
    error PerpetualStorageTransferFailed();
    /// @notice The order's client marked this provider's replica lost (`markLost`).
    error PerpetualStorageProviderExcluded(uint256 orderId, uint64 provider);
    /// @notice The replica's term is over: it is reopened (`reopen`), not marked lost.
    error PerpetualStorageTermOver(uint256 orderId, uint64 provider);
    /// @notice A market callback from someone else than the market actor.
    error PerpetualStorageNotMarket(address caller);
    /// @notice A method this contract does not handle.
    error PerpetualStorageUnsupportedMethod(uint64 method);
    /// @notice The proposal's provider is not an `f0` ID address.
    error PerpetualStorageBadDealProvider(bytes provider);
    /// @notice No open claim offered a deal for this provider and start epoch.
    error PerpetualStorageNotOffered(uint64 provider, int64 startEpoch);
    /// @notice The published proposal differs from the offer in `field`.
    error PerpetualStorageOfferMismatch(DealCodec.Mismatch field);
    /// @notice No claim made this proposal id, or it is no longer open.
    error PerpetualStorageUnknownProposal(bytes32 id);

    /// @param codec_ The deal CBOR and CID text codec (a shared, stateless `DealCodec`).
    /// @param claimWindow_ Epochs from claim to publish (e.g. 2 days = 5,760).
    /// @param minTerm_ Shortest replica term in epochs (the market's shortest deal: 518,400).
    /// @param maxTerm_ Longest replica term (the market's longest deal less the claim window).
    /// @param minBond_ Smallest claim bond in wei.
    constructor(DealCodec codec_, uint64 claimWindow_, uint64 minTerm_, uint64 maxTerm_, uint96 minBond_) {
        if (claimWindow_ == 0 || minTerm_ == 0 || maxTerm_ < minTerm_ || maxTerm_ > uint64(type(int64).max)) {
            revert PerpetualStorageBadTerm(maxTerm_);
        }
        codec = codec_;
        claimWindow = claimWindow_;
        minTerm = minTerm_;
        maxTerm = maxTerm_;
        minBond = minBond_;
        uint256 rise = (uint256(claimWindow_) + 1) * MAX_RISE_BPS;
        riseEpochs = uint64((rise + BOND_BPS - TIP_BPS - 1) / (BOND_BPS - TIP_BPS));
    }

    // ------------------------------------------------------------------ clients

    /// @notice Creates an order; the value sent is its first funding.
    /// @param p The piece (v1 binary piece CID, padded size, and the CAR's size), the payload
    ///        root CID, the number of replicas, the bounty per replica term, the term in epochs,
    ///        whether deals must be verified (Fil+), and where providers can download the CAR.
    /// @return orderId The new order's ID.
    function createOrder(OrderParams calldata p) external payable returns (uint256 orderId) {
        if (!CidLib.isPieceCid(p.pieceCid)) revert PerpetualStorageBadPieceCid();
        CidLib.CidError err = CidLib.check(p.payloadCid);
        if (err != CidLib.CidError.None) revert PerpetualStorageBadPayloadCid(err);
        if (
            !CidLib.isPaddedSize(p.paddedSize) || p.carSize == 0
                || uint256(p.carSize) * 128 > uint256(p.paddedSize) * 127
        ) revert PerpetualStorageBadSize(p.paddedSize, p.carSize);
        if (p.replicas == 0 || p.replicas > MAX_REPLICAS) revert PerpetualStorageBadReplicas(p.replicas);
        if (p.bounty == 0) revert PerpetualStorageBadBounty();
        if (p.term < minTerm || p.term > maxTerm) revert PerpetualStorageBadTerm(p.term);
        checkOrigins(p.origins);
        if (msg.value > type(uint96).max) revert PerpetualStorageBadBounty();

        orderId = ++orderCount;
        Order storage o = orders[orderId];
        o.client = msg.sender;
        o.replicas = uint8(p.replicas);
        if (p.verified) o.flags = VERIFIED;
        o.balance = uint96(msg.value);
        o.bounty = p.bounty;
        o.openSince = uint64(block.number);
        o.paddedSize = p.paddedSize;
        o.term = p.term;
        o.carSize = p.carSize;
        o.pieceCid = p.pieceCid;
        o.payloadCid = p.payloadCid;
        storeOrigins(o, p.origins);
        emit OrderCreated(
            orderId, msg.sender, p.pieceCid, p.paddedSize, p.replicas, p.bounty, p.term, p.verified
        );
        if (msg.value > 0) emit OrderFunded(orderId, msg.sender, msg.value);
    }

    /// @notice Adds funds to an order. Anyone may fund any open order.
    function fund(uint256 orderId) external payable {
        Order storage o = openOrder(orderId);
        uint256 balance = uint256(o.balance) + msg.value;
        if (balance > type(uint96).max) revert PerpetualStorageBadBounty();
        o.balance = uint96(balance);
        emit OrderFunded(orderId, msg.sender, msg.value);
    }

    /// @notice Changes the base bounty for slots claimed from now on.
    function setBounty(uint256 orderId, uint96 bounty) external {
        Order storage o = clientOrder(orderId);
        if (bounty == 0) revert PerpetualStorageBadBounty();
        o.bounty = bounty;
        emit BountyChanged(orderId, bounty);
    }

    /// @notice Changes the number of replicas. Below the slots now in use, no slot is taken from
    ///         its provider: none opens until enough are vacated (how a client renews a replica
    ///         ahead of its term's end: one more for another provider to claim, then back down
    ///         as soon as it is claimed, so the ending slot does not open again).
    function setReplicaTarget(uint256 orderId, uint16 replicas) external {
        Order storage o = clientOrder(orderId);
        if (replicas == 0 || replicas > MAX_REPLICAS) revert PerpetualStorageBadReplicas(replicas);
        // An order with every replica active starts lacking one now.
        if (o.active >= o.replicas && replicas > o.active) o.openSince = uint64(block.number);
        o.replicas = uint8(replicas);
        emit ReplicaTargetChanged(orderId, replicas);
    }

    /// @notice Replaces the download locations given to providers.
    function setOrigins(uint256 orderId, string[] calldata origins) external {
        Order storage o = clientOrder(orderId);
        checkOrigins(origins);
        storeOrigins(o, origins);
        emit OriginsChanged(orderId, origins);
    }

    /// @notice Stops (or resumes) new claims; replicas already made keep their terms.
    function setSuspended(uint256 orderId, bool suspended) external {
        Order storage o = clientOrder(orderId);
        o.flags = suspended ? o.flags | SUSPENDED : o.flags & ~SUSPENDED;
        emit OrderSuspended(orderId, suspended);
    }

    /// @notice Cancels the order and refunds what is not committed to a slot. Committed bounties
    ///         keep paying the providers that hold replicas; what returns from slots later (an
    ///         expired claim, an ended replica) is refunded as it returns.
    function cancel(uint256 orderId) external {
        Order storage o = clientOrder(orderId);
        o.flags |= CANCELLED;
        uint96 refund = o.balance;
        o.balance = 0;
        withdrawable[o.client] += refund;
        emit OrderCancelled(orderId, refund);
    }

    // ------------------------------------------------------------------ providers

    /// @notice The bounty a slot claimed now would lock: the base bounty, risen with the time
    ///         the order has lacked an active replica, up to `1 + MAX_RISE_BPS / 10_000` times.
    function currentBounty(uint256 orderId) public view returns (uint96) {
        Order storage o = existing(orderId);
        uint256 elapsed = block.number - o.openSince;
        if (elapsed > riseEpochs) elapsed = riseEpochs;
        uint256 rise = uint256(o.bounty) * MAX_RISE_BPS * elapsed / (10_000 * uint256(riseEpochs));
        uint256 bounty = uint256(o.bounty) + rise;
        return bounty > type(uint96).max ? type(uint96).max : uint96(bounty);
    }

    /// @notice The bond a claim of this order needs now.
    function bondFor(uint256 orderId) external view returns (uint96) {
        return bondOf(currentBounty(orderId));
    }

    /// @notice The bond for a slot of bounty `bounty`: `BOND_BPS` of it, at least `minBond`.
    function bondOf(uint96 bounty) public view returns (uint96) {
        uint256 bond = uint256(bounty) * BOND_BPS / 10_000;
        return bond < minBond ? minBond : uint96(bond);
    }

    /// @notice Claims an open slot for miner `provider`, from one of its controlling addresses
    ///         (owner, worker or control address, as the miner actor answers
    ///         IsControllingAddressExported), locking the slot's bounty from the order's balance
    ///         and offering its deal (`DealProposalCreate`): this contract as client, the miner
    ///         as provider, the order's piece, label = payload CID, start epoch = `deadline`,
    ///         end = `deadline + term`, price 0, client collateral 0, and the provider
    ///         collateral chosen here. The bond (`bondFor`; any excess sent waits for
    ///         `withdraw`) returns to the miner on `publish`; it goes to the order if the claim
    ///         lapses. Does not reset the bounty's rise for the slots left open.
    /// @param providerCollateral The provider collateral of the offered deal (the market's
    ///        minimum for the piece, or more: the provider's own stake).
    /// @return deadline Last epoch for `publish`, and the deal's start epoch.
    /// @return proposalId The offer's id (`getDealProposal`, `getExtraParams`).
    // The one call before the writes asks the miner actor IsControllingAddress with the READ_ONLY
    // flag through the precompile: the callee cannot change any state, so cannot re-enter.
    // slither-disable-next-line reentrancy-no-eth,reentrancy-benign,reentrancy-events
    function claim(uint256 orderId, uint64 provider, uint256 providerCollateral)
        external
        payable
        returns (uint64 deadline, bytes32 proposalId)
    {
        Order storage o = openOrder(orderId);
        if (o.flags & SUSPENDED != 0 || o.inUse >= o.replicas) revert PerpetualStorageNoOpenSlot(orderId);
        if (provider == 0) revert PerpetualStorageBadProvider();
        if (excluded[orderId][provider]) revert PerpetualStorageProviderExcluded(orderId, provider);
        if (providerCollateral > MAX_COLLATERAL) revert PerpetualStorageBadCollateral(providerCollateral);
        Slot storage s = slots[orderId][provider];
        if (s.state != SlotState.Open) revert PerpetualStorageAlreadyHolds(orderId, provider);
        uint96 bounty = currentBounty(orderId);
        uint96 bond = bondOf(bounty);
        if (msg.value < bond) revert PerpetualStorageWrongBond(bond, msg.value);
        if (o.balance < bounty) revert PerpetualStorageUnderfunded(orderId, bounty, o.balance);
        // A read-only query of the miner actor: it cannot call back into this contract.
        (, bool controlling) = MinerActor.isControllingAddress(provider, msg.sender);
        if (!controlling) revert PerpetualStorageNotController(provider, msg.sender);

        // The deal's start epoch identifies the offer among this provider's: take the first
        // free one from the end of the window.
        deadline = uint64(block.number) + claimWindow;
        bytes32 key = offerKey(provider, deadline);
        while (offerOrder[key] != 0) {
            key = offerKey(provider, ++deadline);
        }
        if (msg.value > bond) withdrawable[msg.sender] += msg.value - bond;
        o.balance -= bounty;
        o.inUse += 1;
        s.state = SlotState.Claimed;
        s.deadline = uint40(deadline);
        s.bounty = bounty;
        s.next = o.head;
        o.head = provider;
        offerOrder[key] = orderId;
        proposalId = bytes32(
            (orderId << 192) | (uint256(provider) << 128) | (uint256(deadline) << 88) | providerCollateral
        );
        emit SlotClaimed(orderId, provider, msg.sender, bounty, bond, deadline, proposalId);
        emit DealProposalCreate(proposalId, o.paddedSize, o.flags & VERIFIED != 0, 0);
    }

    /// @notice Starts a replica: the slot's deal (published by the market and notified here)
    ///         must be active (GetDealActivation) and the claim within its deadline, which leaves
    ///         the deal at least `term` epochs to run. Streams the bounty from this block over
    ///         the term and returns the bond to the miner.
    // The market query before the writes is read-only, and the function is nonReentrant.
    // slither-disable-next-line reentrancy-no-eth,reentrancy-benign,reentrancy-events
    function publish(uint256 orderId, uint64 provider) external nonReentrant {
        Order storage o = existing(orderId);
        Slot storage s = slots[orderId][provider];
        if (s.state == SlotState.Claimed) revert PerpetualStorageNoDeal(orderId, provider);
        if (s.state != SlotState.Dealt) revert PerpetualStorageNotClaimed(orderId, provider);
        if (block.number > s.deadline) revert PerpetualStorageClaimExpired(orderId, provider);
        (MarketActor.Status status, int64 activated,) = MarketActor.getDealActivation(s.dealId);
        if (status != MarketActor.Status.Ok || activated < 0) {
            revert PerpetualStorageDealNotActive(s.dealId, status);
        }

        uint64 start = uint64(block.number);
        s.state = SlotState.Active;
        s.start = uint40(start);
        s.lastSeen = uint40(start);
        o.active += 1;
        emit SlotActivated(orderId, provider, s.dealId, start, start + o.term);
        uint96 bond = bondOf(s.bounty);
        emit BondReturned(orderId, provider, bond);
        payMinerNow(provider, bond);
    }

    /// @notice Pays a replica's miner the bounty accrued so far (anyone may call): up to now if
    ///         its deal is live, else up to the last epoch it was seen live.
    // slither-disable-next-line reentrancy-no-eth,reentrancy-benign,reentrancy-events
    function collect(uint256 orderId, uint64 provider) external nonReentrant {
        Slot storage s = slots[orderId][provider];
        if (s.state != SlotState.Active) revert PerpetualStorageNotClaimed(orderId, provider);
        (, uint64 until) = observe(s, orders[orderId].term);
        uint96 due = settle(orderId, provider, s, orders[orderId].term, until);
        payMinerNow(provider, due);
    }

    /// @notice Reopens a slot whose claim passed its deadline without an active deal (the bond
    ///         pays the keeper's tip and the rest, with the bounty, goes to the order), or whose
    ///         replica is over: its term complete, or its deal gone from the market or past its
    ///         end. The miner is paid up to the last epoch its deal was seen live (the full term
    ///         when complete); the keeper's tip comes from the unpaid bounty and then the order,
    ///         and the rest returns to the order.
    // The market query before the writes is read-only, and the function is nonReentrant.
    // slither-disable-next-line reentrancy-no-eth,reentrancy-benign,reentrancy-events
    function reopen(uint256 orderId, uint64 provider) external nonReentrant {
        Order storage o = existing(orderId);
        Slot storage s = slots[orderId][provider];
        uint256 tip = uint256(o.bounty) * TIP_BPS / 10_000;
        uint256 returned;
        uint96 due;
        bool forfeited = s.state == SlotState.Claimed || s.state == SlotState.Dealt;
        bool wasFull = o.active >= o.replicas;
        if (forfeited) {
            if (block.number <= s.deadline) revert PerpetualStorageSlotStillLive(orderId, provider);
            uint256 bond = bondOf(s.bounty);
            if (tip > bond) tip = bond;
            returned = uint256(s.bounty) + bond - tip;
            if (s.state == SlotState.Claimed) delete offerOrder[offerKey(provider, s.deadline)];
        } else if (s.state == SlotState.Active) {
            (bool live, uint64 until) = observe(s, o.term);
            if (live && block.number < uint256(s.start) + o.term) {
                revert PerpetualStorageSlotStillLive(orderId, provider);
            }
            due = settle(orderId, provider, s, o.term, until);
            uint256 remaining = s.bounty - s.paid;
            uint256 fromRemaining = tip < remaining ? tip : remaining;
            uint256 fromBalance = tip - fromRemaining;
            uint256 balance = o.flags & CANCELLED != 0 ? 0 : o.balance;
            if (fromBalance > balance) fromBalance = balance;
            o.balance -= uint96(fromBalance);
            tip = fromRemaining + fromBalance;
            returned = remaining - fromRemaining;
            o.active -= 1;
        } else {
            revert PerpetualStorageNotClaimed(orderId, provider);
        }
        vacate(orderId, o, provider, wasFull, returned);
        withdrawable[msg.sender] += tip;
        emit SlotReopened(orderId, provider, msg.sender, tip, forfeited);
        payMinerNow(provider, due);
    }

    /// @notice The order's client marks an active replica lost: its provider keeps its deal
    ///         but no longer serves the data (the client's retrieval probes, checked against
    ///         the piece's commitment, failed). The contract cannot check that: the mark is the
    ///         client's word, so it costs the client. The miner is paid what it earned up to now
    ///         (up to the last epoch its deal was seen live, if it is gone) and a loss fee of a
    ///         bond's worth of the rest; what remains returns to the order; the slot reopens for
    ///         another provider; and this one may not claim a slot of the order again. Not on a
    ///         cancelled order (its committed bounties keep paying), nor once the term is over
    ///         (`reopen`). No tip: the client acts for itself.
    // The market query before the writes is read-only, and the function is nonReentrant.
    // slither-disable-next-line reentrancy-no-eth,reentrancy-benign,reentrancy-events
    function markLost(uint256 orderId, uint64 provider) external nonReentrant {
        Order storage o = openOrder(orderId);
        if (msg.sender != o.client) revert PerpetualStorageNotClient(orderId, msg.sender);
        Slot storage s = slots[orderId][provider];
        if (s.state != SlotState.Active) revert PerpetualStorageNotClaimed(orderId, provider);
        if (block.number >= uint256(s.start) + o.term) revert PerpetualStorageTermOver(orderId, provider);
        bool wasFull = o.active >= o.replicas;
        (, uint64 until) = observe(s, o.term);
        uint96 due = settle(orderId, provider, s, o.term, until);
        uint96 lossFee = bondOf(s.bounty);
        if (lossFee > s.bounty - s.paid) lossFee = s.bounty - s.paid;
        uint256 returned = s.bounty - s.paid - lossFee;
        o.active -= 1;
        excluded[orderId][provider] = true;
        vacate(orderId, o, provider, wasFull, returned);
        emit SlotLost(orderId, provider, msg.sender, lossFee);
        emit SlotReopened(orderId, provider, msg.sender, 0, false);
        payMinerNow(provider, due + lossFee);
    }

    /// @notice Retries the payments to a miner whose earlier send failed.
    function payMiner(uint64 miner) external nonReentrant {
        uint256 amount = minerOwed[miner];
        if (amount == 0) revert PerpetualStorageNothingToWithdraw();
        minerOwed[miner] = 0;
        payMinerNow(miner, amount);
    }

    /// @notice Sends the caller's refunds, returned excess bonds and tips.
    function withdraw() external nonReentrant {
        uint256 amount = withdrawable[msg.sender];
        if (amount == 0) revert PerpetualStorageNothingToWithdraw();
        withdrawable[msg.sender] = 0;
        emit Withdrawn(msg.sender, amount);
        (bool ok,) = msg.sender.call{value: amount}("");
        if (!ok) revert PerpetualStorageTransferFailed();
    }

    // ------------------------------------------------------------------ the market's calls

    /// @notice FRC-0042 entry point for the market actor: AuthenticateMessage (sent read-only:
    ///         answered without an event or a state write) accepts only the claimant's provider
    ///         for its claimed slot's exact offer; MarketNotifyDeal (the normalized proposal:
    ///         client and provider as f0 IDs) records the deal on the slot.
    function handle_filecoin_method(uint64 method, uint64, bytes calldata params)
        external
        returns (uint32 exitCode, uint64 retCodec, bytes memory ret)
    {
        if (msg.sender != MarketActor.ETH_ADDRESS) revert PerpetualStorageNotMarket(msg.sender);
        if (method == MarketActor.AUTHENTICATE_MESSAGE) {
            matchOffer(params, false);
            return (0, MarketActor.CODEC_CBOR, hex"f5"); // CBOR true
        }
        if (method == MarketActor.MARKET_NOTIFY_DEAL) {
            (uint256 orderId, uint64 provider, bytes32 key, uint64 dealId) = matchOffer(params, true);
            Slot storage s = slots[orderId][provider];
            s.state = SlotState.Dealt;
            s.dealId = dealId;
            delete offerOrder[key];
            emit SlotDealPublished(orderId, provider, dealId);
            return (0, MarketActor.CODEC_NONE, "");
        }
        revert PerpetualStorageUnsupportedMethod(method);
    }

    /// @dev The claimed slot the proposal in a market callback stands for (by its provider and
    ///      start epoch), its terms checked against the offer. The provider collateral is not
    ///      checked: it is the provider's own stake, the market enforces its bounds, and no
    ///      amount of it costs or earns this contract anything.
    function matchOffer(bytes calldata params, bool notify)
        internal
        view
        returns (uint256 orderId, uint64 provider, bytes32 key, uint64 dealId)
    {
        (bytes memory providerAddr, int64 start, uint64 id,) = codec.readCallback(params, notify);
        dealId = id;
        bool ok;
        (ok, provider) = FilAddress.parseIdAddress(providerAddr);
        if (!ok) revert PerpetualStorageBadDealProvider(providerAddr);
        if (start < 0) revert PerpetualStorageNotOffered(provider, start);
        key = offerKey(provider, uint64(start));
        orderId = offerOrder[key];
        Slot storage s = slots[orderId][provider];
        if (orderId == 0 || s.state != SlotState.Claimed || s.deadline != uint64(start)) {
            revert PerpetualStorageNotOffered(provider, start);
        }
        DealCodec.Mismatch field =
            codec.compareOffer(params, notify, offerOf(orderId, provider, uint64(start), 0));
        if (field != DealCodec.Mismatch.None) revert PerpetualStorageOfferMismatch(field);
    }

    function offerOf(uint256 orderId, uint64 provider, uint64 start, uint256 collateral)
        internal
        view
        returns (DealCodec.Offer memory f)
    {
        Order storage o = orders[orderId];
        f.pieceCid = o.pieceCid;
        f.pieceSize = o.paddedSize;
        f.verified = o.flags & VERIFIED != 0;
        f.client = address(this);
        f.provider = provider;
        f.payloadCid = o.payloadCid;
        f.start = int64(start);
        f.end = int64(start + o.term);
        f.providerCollateral = collateral;
    }

    /// @notice FRC-0068: the CBOR `DealProposal` of a claim's offer (see `claim`).
    function getDealProposal(bytes32 id) external view returns (bytes memory) {
        (uint256 orderId, uint64 provider, uint64 start, uint256 collateral) = offer(id);
        return codec.encodeOffer(offerOf(orderId, provider, start, collateral));
    }

    /// @notice FRC-0068 / Boost: the CBOR extra parameters (version 1) of a claim's offer: the
    ///         order's first HTTP(S) origin (else its first origin) and its CAR size.
    function getExtraParams(bytes32 id) external view returns (bytes memory) {
        (uint256 orderId,,,) = offer(id);
        Order storage o = orders[orderId];
        bytes memory location;
        for (uint256 k; k < o.origins.length; ++k) {
            bytes memory origin = bytes(o.origins[k]);
            if (k == 0 || (origin.length > 4 && bytes4(origin) == "http")) location = origin;
            if (bytes4(location) == "http") break;
        }
        return codec.extraParams(location, o.carSize, false, false);
    }

    /// @dev Decodes a proposal id and checks that its claim is still open.
    function offer(bytes32 id)
        internal
        view
        returns (uint256 orderId, uint64 provider, uint64 start, uint256 collateral)
    {
        uint256 v = uint256(id);
        orderId = v >> 192;
        provider = uint64(v >> 128);
        start = uint64(uint40(v >> 88));
        collateral = v & MAX_COLLATERAL;
        Slot storage s = slots[orderId][provider];
        if (orderId == 0 || s.state != SlotState.Claimed || s.deadline != start) {
            revert PerpetualStorageUnknownProposal(id);
        }
    }

    // ------------------------------------------------------------------ views

    /// @notice An order's terms and state, with the providers holding its slots.
    function getOrder(uint256 orderId) external view returns (OrderView memory v) {
        Order storage o = existing(orderId);
        v.client = o.client;
        v.replicas = o.replicas;
        v.inUse = o.inUse;
        v.active = o.active;
        v.verified = o.flags & VERIFIED != 0;
        v.suspended = o.flags & SUSPENDED != 0;
        v.cancelled = o.flags & CANCELLED != 0;
        v.balance = o.balance;
        v.bounty = o.bounty;
        v.openSince = o.openSince;
        v.paddedSize = o.paddedSize;
        v.term = o.term;
        v.carSize = o.carSize;
        v.pieceCid = o.pieceCid;
        v.payloadCid = o.payloadCid;
        v.origins = o.origins;
        v.holders = new uint64[](o.inUse);
        uint64 cur = o.head;
        for (uint256 k; cur != 0 && k < v.holders.length; ++k) {
            v.holders[k] = cur;
            cur = slots[orderId][cur].next;
        }
    }

    /// @notice A provider's slot in an order (state `Open` when it holds none).
    function getSlot(uint256 orderId, uint64 provider) external view returns (SlotView memory v) {
        Slot storage s = slots[orderId][provider];
        v.state = s.state;
        v.deadline = s.deadline;
        v.bounty = s.bounty;
        v.bond = s.state == SlotState.Open ? 0 : bondOf(s.bounty);
        v.dealId = s.dealId;
        v.start = s.start;
        v.payEnd = s.state == SlotState.Active ? uint64(s.start) + orders[orderId].term : 0;
        v.lastSeen = s.lastSeen;
        v.paid = s.paid;
    }

    /// @notice Bounty accrued to a replica and not yet paid, if its deal is still live.
    function accrued(uint256 orderId, uint64 provider) external view returns (uint256) {
        Slot storage s = slots[orderId][provider];
        if (s.state != SlotState.Active) return 0;
        return earned(s, orders[orderId].term, uint64(block.number)) - s.paid;
    }

    // ------------------------------------------------------------------ internals

    function existing(uint256 orderId) internal view returns (Order storage o) {
        o = orders[orderId];
        if (o.client == address(0)) revert PerpetualStorageNoOrder(orderId);
    }

    function openOrder(uint256 orderId) internal view returns (Order storage o) {
        o = existing(orderId);
        if (o.flags & CANCELLED != 0) revert PerpetualStorageOrderClosed(orderId);
    }

    function clientOrder(uint256 orderId) internal view returns (Order storage o) {
        o = openOrder(orderId);
        if (msg.sender != o.client) revert PerpetualStorageNotClient(orderId, msg.sender);
    }

    function offerKey(uint64 provider, uint64 start) internal pure returns (bytes32) {
        return keccak256(abi.encode(provider, start));
    }

    function checkOrigins(string[] calldata origins) internal pure {
        if (origins.length > MAX_ORIGINS) revert PerpetualStorageBadOrigins();
        for (uint256 k; k < origins.length; ++k) {
            uint256 len = bytes(origins[k]).length;
            if (len == 0 || len > MAX_ORIGIN_LENGTH) revert PerpetualStorageBadOrigins();
        }
    }

    function storeOrigins(Order storage o, string[] calldata origins) internal {
        delete o.origins;
        for (uint256 k; k < origins.length; ++k) {
            o.origins.push(origins[k]);
        }
    }

    /// @dev Funds coming back from a slot: to the order, or to the client once cancelled.
    function credit(Order storage o, uint256 amount) internal {
        // slither-disable-next-line incorrect-equality (an amount computed here, not a balance)
        if (amount == 0) return;
        if (o.flags & CANCELLED != 0) withdrawable[o.client] += amount;
        else o.balance += uint96(amount);
    }

    /// @dev Unlinks `provider` from the order's list of slots in use.
    /// @dev Frees `provider`'s slot of the order (`wasFull`: every replica was active before, as
    ///      many as the target or more)
    ///      and returns `returned` to the order.
    function vacate(uint256 orderId, Order storage o, uint64 provider, bool wasFull, uint256 returned)
        internal
    {
        removeHolder(orderId, o, provider);
        delete slots[orderId][provider];
        o.inUse -= 1;
        // The order had every replica active and lacks one from now: the rise starts.
        if (wasFull && o.active < o.replicas) o.openSince = uint64(block.number);
        credit(o, returned);
    }

    function removeHolder(uint256 orderId, Order storage o, uint64 provider) internal {
        uint64 next = slots[orderId][provider].next;
        if (o.head == provider) {
            o.head = next;
            return;
        }
        uint64 cur = o.head;
        while (cur != 0) {
            Slot storage c = slots[orderId][cur];
            if (c.next == provider) {
                c.next = next;
                return;
            }
            cur = c.next;
        }
    }

    /// @dev Asks the market whether the slot's deal is live now (in state, activated, before its
    ///      end) and records it. Returns the epoch the replica counts up to: now while live; the
    ///      deal's end when it ran its course (still in state with no termination: a
    ///      terminated deal is removed at once); else the last epoch it was seen live.
    // The market query is read-only (READ_ONLY flag), and every caller is nonReentrant.
    // slither-disable-next-line reentrancy-no-eth,reentrancy-benign
    function observe(Slot storage s, uint64 term) internal returns (bool live, uint64 until) {
        (MarketActor.Status status, int64 activated,) = MarketActor.getDealActivation(s.dealId);
        uint64 dealEnd = uint64(s.deadline) + term;
        if (status == MarketActor.Status.Ok && activated >= 0) {
            if (block.number < dealEnd) {
                s.lastSeen = uint40(block.number);
                return (true, uint64(block.number));
            }
            s.lastSeen = uint40(dealEnd);
            return (false, dealEnd);
        }
        return (false, s.lastSeen);
    }

    /// @dev The bounty earned by `epoch`: linear over [start, start + term).
    function earned(Slot storage s, uint64 term, uint64 epoch) internal view returns (uint96) {
        if (epoch <= s.start) return 0;
        if (epoch >= uint256(s.start) + term) return s.bounty;
        return uint96(uint256(s.bounty) * (epoch - s.start) / term);
    }

    /// @dev Books the bounty accrued by `until` as paid; the caller sends it last.
    function settle(uint256 orderId, uint64 provider, Slot storage s, uint64 term, uint64 until)
        internal
        returns (uint96 due)
    {
        due = earned(s, term, until) - s.paid;
        // slither-disable-next-line incorrect-equality (an amount computed here, not a balance)
        if (due == 0) return 0;
        s.paid += due;
        emit BountyPaid(orderId, provider, due, until);
    }

    /// @dev Pays a miner actor with a method-0 send through `call_actor_id` (an EVM value CALL
    ///      would reach the miner as InvokeEVM and fail with exit code 22). If the send fails,
    ///      the amount waits in `minerOwed`.
    function payMinerNow(uint64 miner, uint256 amount) internal {
        // slither-disable-next-line incorrect-equality (an amount computed here, not a balance)
        if (amount == 0) return;
        int256 exitCode = FvmActor.send(miner, amount);
        // slither-disable-next-line incorrect-equality (an exit code, not a balance)
        if (exitCode == 0) {
            emit MinerPaid(miner, amount);
        } else {
            minerOwed[miner] += amount;
            emit MinerPaymentDeferred(miner, amount, exitCode);
        }
    }
}
