// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {CidLib} from "./lib/CidLib.sol";
import {FilAddress} from "./lib/FilAddress.sol";
import {MarketActor} from "./lib/MarketActor.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";

/// @title PerpetualStorage
/// @notice Storage orders that keep N replicas of a piece on Filecoin for as long as they are
///         funded. A client creates and funds an order; storage providers `claim` an open replica
///         slot with a bond, make a Filecoin deal for the piece, and `publish` it. The contract
///         checks the deal with the market actor and streams the slot's bounty to the provider
///         over the replica term. When the deal ends or is terminated anyone may `reopen` the
///         slot for a keeper tip; a claim with no deal by its deadline reopens too, and its bond
///         goes to the order.
/// @dev Providers are identified by their miner actor ID, whoever sends the transaction: a
///      provider's ID address and the EVM accounts that act for it are one account, and bounties
///      go to the miner actor itself (its masked ID address), so a claim made for someone else's
///      miner can never divert a payment. The bounty is streamed rather than paid up front:
///      Filecoin deals can be terminated early and a paid bounty cannot be clawed back, so paying
///      for the epochs a replica actually lived is what protects the client; the unpaid rest of a
///      terminated replica's bounty returns to the order.
contract PerpetualStorage is ReentrancyGuard {
    /// @notice Most replicas one order may ask for.
    uint16 public constant MAX_REPLICAS = 32;
    /// @notice Most origins (CAR URLs or multiaddrs) per order, and the longest one.
    uint256 public constant MAX_ORIGINS = 8;
    uint256 public constant MAX_ORIGIN_LENGTH = 256;
    /// @notice The bounty of an open slot rises linearly over this many epochs (one day)...
    uint64 public constant RISE_EPOCHS = 2880;
    /// @notice ...by at most this fraction of the base bounty (100 %: up to twice the base).
    uint256 public constant MAX_RISE_BPS = 10_000;
    /// @notice A claim's bond, as a fraction of the slot's bounty.
    uint256 public constant BOND_BPS = 1_000;
    /// @notice The keeper's tip for a `reopen`, as a fraction of the base bounty.
    uint256 public constant TIP_BPS = 100;

    /// @notice Epochs a provider has from `claim` to `publish`.
    uint64 public immutable claimWindow;
    /// @notice Shortest replica term an order may ask for, in epochs.
    uint64 public immutable minTerm;
    /// @notice Smallest bond, whatever the bounty.
    uint96 public immutable minBond;

    enum SlotState {
        Open,
        Claimed,
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
        uint8 flags;
        /// First provider of the list of slots in use (linked through `Slot.next`).
        uint64 head;
        uint96 balance;
        uint96 bounty;
        uint64 openSince;
        uint64 paddedSize;
        uint64 term;
        bytes pieceCid;
        bytes payloadCid;
        string[] origins;
    }

    /// @notice A storage order as `getOrder` returns it.
    struct OrderView {
        address client;
        uint16 replicas;
        uint16 inUse;
        bool verified;
        bool suspended;
        bool cancelled;
        uint96 balance;
        uint96 bounty;
        uint64 openSince;
        uint64 paddedSize;
        uint64 term;
        bytes pieceCid;
        bytes payloadCid;
        string[] origins;
        /// Providers holding (or having claimed) a replica.
        uint64[] holders;
    }

    /// @notice One provider's replica slot in an order. The claimant's bond is not stored: it
    ///         is `bondOf(bounty)`.
    struct Slot {
        address claimant;
        uint64 deadline;
        SlotState state;
        uint96 bounty;
        uint64 dealId;
        /// Next provider in the order's list of slots in use (0: none).
        uint64 next;
        uint96 paid;
        uint64 start;
        uint64 payEnd;
    }

    /// @notice What a client chooses when creating an order.
    struct OrderParams {
        bytes pieceCid;
        bytes payloadCid;
        uint64 paddedSize;
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
    /// @notice Deals already backing a slot; a deal backs one slot only, ever.
    mapping(uint64 dealId => bool) public dealUsed;
    /// @notice Refunds and returned bonds waiting for `withdraw`.
    mapping(address account => uint256) public withdrawable;
    /// @notice Orders created so far.
    uint256 public orderCount;

    event OrderCreated(
        uint256 indexed orderId, address indexed client, bytes pieceCid, uint64 paddedSize, uint16 replicas
    );
    event OrderFunded(uint256 indexed orderId, address indexed from, uint256 amount);
    event BountyChanged(uint256 indexed orderId, uint96 bounty);
    event ReplicaTargetChanged(uint256 indexed orderId, uint16 replicas);
    event OrderSuspended(uint256 indexed orderId, bool suspended);
    event OrderCancelled(uint256 indexed orderId, uint256 refund);
    event OriginsChanged(uint256 indexed orderId, string[] origins);
    event SlotClaimed(
        uint256 indexed orderId,
        uint64 indexed provider,
        address claimant,
        uint96 bounty,
        uint96 bond,
        uint64 deadline
    );
    event SlotActivated(
        uint256 indexed orderId, uint64 indexed provider, uint64 dealId, uint64 start, uint64 payEnd
    );
    event BountyPaid(uint256 indexed orderId, uint64 indexed provider, uint256 amount);
    event SlotReopened(
        uint256 indexed orderId, uint64 indexed provider, address keeper, uint256 tip, bool bondForfeited
    );
    event Withdrawn(address indexed account, uint256 amount);

    error PerpetualStorageBadPieceCid();
    error PerpetualStorageBadPayloadCid(CidLib.CidError reason);
    error PerpetualStorageBadSize(uint64 paddedSize);
    error PerpetualStorageBadReplicas(uint16 replicas);
    error PerpetualStorageBadBounty();
    error PerpetualStorageBadTerm(uint64 term);
    error PerpetualStorageBadOrigins();
    error PerpetualStorageNoOrder(uint256 orderId);
    error PerpetualStorageNotClient(uint256 orderId, address caller);
    error PerpetualStorageOrderClosed(uint256 orderId);
    error PerpetualStorageNoOpenSlot(uint256 orderId);
    error PerpetualStorageBadProvider();
    error PerpetualStorageAlreadyHolds(uint256 orderId, uint64 provider);
    error PerpetualStorageUnderfunded(uint256 orderId, uint256 needed, uint256 balance);
    error PerpetualStorageWrongBond(uint256 expected, uint256 sent);
    error PerpetualStorageNotClaimed(uint256 orderId, uint64 provider);
    error PerpetualStorageClaimExpired(uint256 orderId, uint64 provider);
    error PerpetualStorageDealUsed(uint64 dealId);
    error PerpetualStorageDealNotLive(uint64 dealId, MarketActor.Status status);
    error PerpetualStorageDealMismatch(uint64 dealId, string what);
    error PerpetualStorageTargetBelowInUse(uint16 replicas, uint16 inUse);
    error PerpetualStorageSlotStillLive(uint256 orderId, uint64 provider);
    error PerpetualStorageNothingToWithdraw();
    error PerpetualStorageTransferFailed();

    /// @param claimWindow_ Epochs from claim to publish (e.g. 2 days = 5,760).
    /// @param minTerm_ Shortest replica term in epochs (Filecoin's shortest deal: 518,400).
    /// @param minBond_ Smallest claim bond in wei.
    constructor(uint64 claimWindow_, uint64 minTerm_, uint96 minBond_) {
        claimWindow = claimWindow_;
        minTerm = minTerm_;
        minBond = minBond_;
    }

    // ------------------------------------------------------------------ clients

    /// @notice Creates an order; the value sent is its first funding.
    /// @param p The piece (v1 binary piece CID and padded size), the payload root CID, the
    ///        number of replicas, the bounty per replica term, the term in epochs, whether deals
    ///        must be verified (Fil+), and where providers can download the CAR.
    /// @return orderId The new order's ID.
    function createOrder(OrderParams calldata p) external payable returns (uint256 orderId) {
        if (!CidLib.isPieceCid(p.pieceCid)) revert PerpetualStorageBadPieceCid();
        CidLib.CidError err = CidLib.check(p.payloadCid);
        if (err != CidLib.CidError.None) revert PerpetualStorageBadPayloadCid(err);
        if (!CidLib.isPaddedSize(p.paddedSize)) revert PerpetualStorageBadSize(p.paddedSize);
        if (p.replicas == 0 || p.replicas > MAX_REPLICAS) revert PerpetualStorageBadReplicas(p.replicas);
        if (p.bounty == 0) revert PerpetualStorageBadBounty();
        if (p.term < minTerm || p.term > uint64(type(int64).max)) revert PerpetualStorageBadTerm(p.term);
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
        o.pieceCid = p.pieceCid;
        o.payloadCid = p.payloadCid;
        storeOrigins(o, p.origins);
        emit OrderCreated(orderId, msg.sender, p.pieceCid, p.paddedSize, p.replicas);
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

    /// @notice Changes the number of replicas; never below the slots now in use.
    function setReplicaTarget(uint256 orderId, uint16 replicas) external {
        Order storage o = clientOrder(orderId);
        if (replicas == 0 || replicas > MAX_REPLICAS) revert PerpetualStorageBadReplicas(replicas);
        if (replicas < o.inUse) revert PerpetualStorageTargetBelowInUse(replicas, o.inUse);
        if (o.inUse == o.replicas && replicas > o.replicas) o.openSince = uint64(block.number);
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
    ///         expired claim, a terminated replica) is refunded as it returns.
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
    ///         the order has had an open slot, up to twice the base.
    function currentBounty(uint256 orderId) public view returns (uint96) {
        Order storage o = existing(orderId);
        uint256 elapsed = block.number - o.openSince;
        if (elapsed > RISE_EPOCHS) elapsed = RISE_EPOCHS;
        uint256 rise = uint256(o.bounty) * MAX_RISE_BPS * elapsed / (10_000 * RISE_EPOCHS);
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

    /// @notice Claims an open slot for miner `provider`, locking its bounty from the order's
    ///         balance. The bond (`bondFor`; any excess sent waits for `withdraw`) comes back on
    ///         `publish`; it goes to the order if no
    ///         deal is published within `claimWindow` epochs. Where to download the CAR and which
    ///         providers already hold replicas are in `getOrder` (`origins`, `holders`).
    /// @return deadline Last epoch for `publish`.
    function claim(uint256 orderId, uint64 provider) external payable returns (uint64 deadline) {
        Order storage o = openOrder(orderId);
        if (o.flags & SUSPENDED != 0 || o.inUse >= o.replicas) revert PerpetualStorageNoOpenSlot(orderId);
        if (provider == 0) revert PerpetualStorageBadProvider();
        Slot storage s = slots[orderId][provider];
        if (s.state != SlotState.Open) revert PerpetualStorageAlreadyHolds(orderId, provider);
        uint96 bounty = currentBounty(orderId);
        uint96 bond = bondOf(bounty);
        // The bounty (and so the bond) rises block by block: take at least the bond, keep the
        // rest for `withdraw`.
        if (msg.value < bond) revert PerpetualStorageWrongBond(bond, msg.value);
        if (msg.value > bond) withdrawable[msg.sender] += msg.value - bond;
        if (o.balance < bounty) revert PerpetualStorageUnderfunded(orderId, bounty, o.balance);

        o.balance -= bounty;
        o.inUse += 1;
        o.openSince = uint64(block.number);
        deadline = uint64(block.number) + claimWindow;
        s.claimant = msg.sender;
        s.deadline = deadline;
        s.state = SlotState.Claimed;
        s.bounty = bounty;
        s.next = o.head;
        o.head = provider;
        emit SlotClaimed(orderId, provider, msg.sender, bounty, bond, deadline);
    }

    /// @notice Proves a claimed slot's replica with Filecoin deal `dealId`: the market actor must
    ///         report this order's piece and size, `provider` as the deal's provider, a term of
    ///         at least the order's, the order's verified flag, and an activated deal that is
    ///         neither terminated nor past its end. Returns the claimant's bond and starts
    ///         streaming the bounty to the provider.
    // The calls before its writes are read-only queries of the market actor (the FEVM
    // precompile), and it is nonReentrant.
    // slither-disable-next-line reentrancy-no-eth
    function publish(uint256 orderId, uint64 provider, uint64 dealId) external nonReentrant {
        Order storage o = existing(orderId);
        Slot storage s = slots[orderId][provider];
        if (s.state != SlotState.Claimed) revert PerpetualStorageNotClaimed(orderId, provider);
        if (block.number > s.deadline) revert PerpetualStorageClaimExpired(orderId, provider);
        if (dealUsed[dealId]) revert PerpetualStorageDealUsed(dealId);

        (MarketActor.Status status, MarketActor.Deal memory d) = MarketActor.getDeal(dealId);
        if (status != MarketActor.Status.Ok) revert PerpetualStorageDealNotLive(dealId, status);
        if (keccak256(d.pieceCid) != keccak256(o.pieceCid)) {
            revert PerpetualStorageDealMismatch(dealId, "piece");
        }
        if (d.pieceSize != o.paddedSize) revert PerpetualStorageDealMismatch(dealId, "size");
        if (d.provider != provider) revert PerpetualStorageDealMismatch(dealId, "provider");
        if (d.verified != (o.flags & VERIFIED != 0)) revert PerpetualStorageDealMismatch(dealId, "verified");
        if (d.duration < 0 || uint64(d.duration) < o.term) {
            revert PerpetualStorageDealMismatch(dealId, "term");
        }
        if (d.activated < 0 || d.terminated >= 0 || int256(block.number) >= int256(d.start) + d.duration) {
            revert PerpetualStorageDealNotLive(dealId, status);
        }

        dealUsed[dealId] = true;
        uint64 start = uint64(d.activated) > block.number ? uint64(block.number) : uint64(d.activated);
        s.state = SlotState.Active;
        s.dealId = dealId;
        s.start = start;
        s.payEnd = start + o.term;
        withdrawable[s.claimant] += bondOf(s.bounty);
        emit SlotActivated(orderId, provider, dealId, start, start + o.term);
    }

    /// @notice Pays a replica's provider the bounty accrued so far (anyone may call).
    function collect(uint256 orderId, uint64 provider) external nonReentrant {
        Slot storage s = slots[orderId][provider];
        if (s.state != SlotState.Active) revert PerpetualStorageNotClaimed(orderId, provider);
        uint96 due = settle(orderId, provider, s, uint64(block.number));
        sendBounty(provider, due);
    }

    /// @notice Reopens a slot whose claim passed its deadline without a deal (the bond pays the
    ///         keeper and the rest goes to the order) or whose deal has ended, been terminated or
    ///         left the market's state (the provider is paid up to then, the keeper's tip comes
    ///         from the unpaid bounty and then the order, and the rest returns to the order).
    // The calls before its writes are read-only queries of the market actor (the FEVM
    // precompile), and it is nonReentrant.
    // slither-disable-next-line reentrancy-no-eth
    function reopen(uint256 orderId, uint64 provider) external nonReentrant {
        Order storage o = existing(orderId);
        Slot storage s = slots[orderId][provider];
        uint256 tip = uint256(o.bounty) * TIP_BPS / 10_000;
        uint256 returned;
        uint96 due;
        bool forfeited = s.state == SlotState.Claimed;
        if (forfeited) {
            if (block.number <= s.deadline) revert PerpetualStorageSlotStillLive(orderId, provider);
            uint256 bond = bondOf(s.bounty);
            if (tip > bond) tip = bond;
            returned = uint256(s.bounty) + bond - tip;
        } else if (s.state == SlotState.Active) {
            uint64 endedAt = replicaEnd(s.dealId);
            // slither-disable-next-line incorrect-equality (a sentinel, not a balance)
            if (endedAt == type(uint64).max) revert PerpetualStorageSlotStillLive(orderId, provider);
            due = settle(orderId, provider, s, endedAt);
            uint256 remaining = s.bounty - s.paid;
            uint256 fromRemaining = tip < remaining ? tip : remaining;
            uint256 fromBalance = tip - fromRemaining;
            uint256 balance = o.flags & CANCELLED != 0 ? 0 : o.balance;
            if (fromBalance > balance) fromBalance = balance;
            o.balance -= uint96(fromBalance);
            tip = fromRemaining + fromBalance;
            returned = remaining - fromRemaining;
        } else {
            revert PerpetualStorageNotClaimed(orderId, provider);
        }
        removeHolder(orderId, o, provider);
        delete slots[orderId][provider];
        if (o.inUse == o.replicas) o.openSince = uint64(block.number);
        o.inUse -= 1;
        credit(o, returned);
        withdrawable[msg.sender] += tip;
        emit SlotReopened(orderId, provider, msg.sender, tip, forfeited);
        sendBounty(provider, due);
    }

    /// @notice Sends the caller's refunds and returned bonds.
    function withdraw() external nonReentrant {
        uint256 amount = withdrawable[msg.sender];
        if (amount == 0) revert PerpetualStorageNothingToWithdraw();
        withdrawable[msg.sender] = 0;
        emit Withdrawn(msg.sender, amount);
        (bool ok,) = msg.sender.call{value: amount}("");
        if (!ok) revert PerpetualStorageTransferFailed();
    }

    // ------------------------------------------------------------------ views

    /// @notice An order's terms and state, with the providers holding its slots.
    function getOrder(uint256 orderId) external view returns (OrderView memory v) {
        Order storage o = existing(orderId);
        v.client = o.client;
        v.replicas = o.replicas;
        v.inUse = o.inUse;
        v.verified = o.flags & VERIFIED != 0;
        v.suspended = o.flags & SUSPENDED != 0;
        v.cancelled = o.flags & CANCELLED != 0;
        v.balance = o.balance;
        v.bounty = o.bounty;
        v.openSince = o.openSince;
        v.paddedSize = o.paddedSize;
        v.term = o.term;
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
    function getSlot(uint256 orderId, uint64 provider) external view returns (Slot memory) {
        return slots[orderId][provider];
    }

    /// @notice Bounty accrued to a replica and not yet paid.
    function accrued(uint256 orderId, uint64 provider) external view returns (uint256) {
        Slot storage s = slots[orderId][provider];
        if (s.state != SlotState.Active) return 0;
        return earned(s, uint64(block.number)) - s.paid;
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

    /// @dev The bounty earned by `at`: linear over [start, payEnd).
    function earned(Slot storage s, uint64 epoch) internal view returns (uint96) {
        if (epoch <= s.start) return 0;
        if (epoch >= s.payEnd) return s.bounty;
        return uint96(uint256(s.bounty) * (epoch - s.start) / (s.payEnd - s.start));
    }

    /// @dev Books the bounty accrued by `until` as paid; the caller sends it last.
    function settle(uint256 orderId, uint64 provider, Slot storage s, uint64 until)
        internal
        returns (uint96 due)
    {
        due = earned(s, until) - s.paid;
        // slither-disable-next-line incorrect-equality (an amount computed here, not a balance)
        if (due == 0) return 0;
        s.paid += due;
        emit BountyPaid(orderId, provider, due);
    }

    /// @dev Pays a miner actor. They run no EVM code; if a transfer still fails, the amount waits
    ///      for `withdraw` from the masked ID address.
    function sendBounty(uint64 provider, uint96 due) internal {
        // slither-disable-next-line incorrect-equality (an amount computed here, not a balance)
        if (due == 0) return;
        address payee = FilAddress.maskedAddress(provider);
        // The payee is the miner actor the market actor named as the deal's provider, checked
        // in `publish`; the amount is what its replica earned. Not an arbitrary recipient.
        // slither-disable-next-line arbitrary-send-eth
        (bool ok,) = payee.call{value: due}("");
        if (!ok) withdrawable[payee] += due;
    }

    /// @dev When a replica stopped counting: its termination epoch, its end, the current epoch
    ///      if the market no longer has it, or `type(uint64).max` while it is live.
    function replicaEnd(uint64 dealId) internal returns (uint64) {
        (MarketActor.Status status, int64 start, int64 duration) = MarketActor.getDealTerm(dealId);
        if (status != MarketActor.Status.Ok) return uint64(block.number);
        int64 terminated;
        (status,, terminated) = MarketActor.getDealActivation(dealId);
        if (status != MarketActor.Status.Ok) return uint64(block.number);
        if (terminated >= 0) return uint64(terminated);
        int256 end = int256(start) + duration;
        if (int256(block.number) >= end) return uint64(uint256(end));
        return type(uint64).max;
    }
}
