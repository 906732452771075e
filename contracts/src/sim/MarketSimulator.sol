// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {Cbor} from "../lib/Cbor.sol";
import {DataCapActor} from "../lib/DataCapActor.sol";
import {DealCodec} from "../lib/DealCodec.sol";
import {DealProposal} from "../lib/DealProposal.sol";
import {FilAddress} from "../lib/FilAddress.sol";
import {FvmActor} from "../lib/FvmActor.sol";
import {MarketActor} from "../lib/MarketActor.sol";
import {MinerActorSimulator} from "./MinerActorSimulator.sol";
import {ActorKind, ISimActor, ISimRegistry, SimActors} from "./SimActors.sol";

/// @title MarketSimulator
/// @notice A stand-in for Filecoin's storage market actor (f05) on a local chain, following
///         builtin-actors v18 (`actors/market/src/lib.rs`, `deal.rs`, `policy.rs`, `state.rs`)
///         wherever Estuary's contracts can observe it; `docs/filecoin-model.md` maps each
///         behaviour to its source and its test. Its runtime code is installed at the market's
///         masked ID address (`0xff…05`, so its callbacks come from where the real market's do)
///         and `ActorCallForwarder` at the `call_actor_id` precompile.
///
///         It also keeps the chain's actor registry (IDs of EVM actors and miners) and plays
///         the parts of the network the storage providers drive with messages on Filecoin:
///         `publishStorageDeals` stands for a provider's PublishStorageDeals message (sent by a
///         controlling address of the miner), `addBalance` for an AddBalance message,
///         `settleDealPayments` for SettleDealPayments (and the cron that ends deals), and the
///         miner actors (`MinerActorSimulator`) activate and terminate deals through it.
/// @dev Never deployed on a real network. Runtime code copied to an address must work as is, so
///      there is no constructor: an unset policy is the production policy, and the first
///      `setPolicy` caller becomes the simulator's admin. The FIL it holds is the simulated
///      escrow (`escrowOf`) and the burnt collateral (`burnt`).
contract MarketSimulator is ISimActor, ISimRegistry {
    // ------------------------------------------------------------------ policy

    /// @notice The market's policy and the network figures its collateral bound uses.
    struct Policy {
        /// Deal duration bounds in epochs (builtin-actors `deal_duration_bounds`).
        int64 minDuration;
        int64 maxDuration;
        /// FIL in circulation, network raw byte power and baseline power, for
        /// `deal_provider_collateral_bounds`.
        uint256 circulatingSupply;
        uint256 networkRawPower;
        uint256 baselinePower;
    }

    /// @notice Production duration bounds: 180 and 1278 days of 30-second epochs.
    int64 public constant MIN_DURATION = 518_400;
    int64 public constant MAX_DURATION = 3_680_640;
    /// @notice `TOTAL_FILECOIN` (2 billion FIL), the upper bound of price and collateral.
    uint256 public constant TOTAL_FILECOIN = 2e27;
    /// @notice The verified registry's bounds on an allocation, as mainnet and Calibration build
    ///         them (builtin-actors v18 `runtime/src/runtime/policy.rs`: 1 MiB without the
    ///         `small-deals` feature, 180 days, 5 years of 1,051,897 epochs).
    uint64 public constant MIN_VERIFIED_ALLOCATION_SIZE = 1 << 20;
    int64 public constant MIN_VERIFIED_ALLOCATION_TERM = 518_400;
    int64 public constant MAX_VERIFIED_ALLOCATION_TERM = 5_259_485;
    /// @notice Longest label (`DEAL_MAX_LABEL_SIZE`).
    uint256 public constant MAX_LABEL_SIZE = 256;
    /// @notice IDs the registry gives EVM actors start here (miners register below).
    uint64 public constant FIRST_EVM_ACTOR_ID = 100_000;

    /// @notice Exit codes the market answers with.
    int256 internal constant USR_ILLEGAL_ARGUMENT = 16;
    int256 internal constant USR_NOT_FOUND = 17;
    int256 internal constant USR_FORBIDDEN = 18;
    int256 internal constant USR_SERIALIZATION = 21;
    int256 internal constant USR_UNHANDLED_MESSAGE = 22;

    Policy internal policy_;
    bool internal configured;
    /// @notice Who may change the policy: the first caller of `setPolicy`.
    address public admin;

    // ------------------------------------------------------------------ registry

    uint64 internal assignedIds;
    mapping(address account => uint64) internal idOf;
    mapping(uint64 id => address) internal addressOf;
    mapping(uint64 id => ActorKind) internal kindOf;

    // ------------------------------------------------------------------ deals

    /// @notice A deal as stored: the normalized proposal and its state.
    struct SimDeal {
        bytes pieceCid;
        uint64 pieceSize;
        bool verified;
        uint64 client;
        uint64 provider;
        bytes label;
        bool labelIsText;
        int64 start;
        int64 end;
        uint256 price;
        uint256 providerCollateral;
        uint256 clientCollateral;
        /// Epoch of activation (the sector's proof), -1 before.
        int64 activated;
        uint64 sector;
        /// Last epoch payments were settled to, -1 before.
        int64 lastUpdated;
        /// The proposal's CID stand-in: keccak256 of the normalized CBOR.
        bytes32 proposalCid;
        /// Removed from state (expired, terminated, timed out): queries answer 32.
        bool removed;
    }

    /// @notice Why a deal of a PublishStorageDeals batch was dropped (the real market only logs
    ///         it; the simulator also says it in `DealRejected`).
    enum Rejection {
        None,
        AuthenticationFailed,
        LabelTooLong,
        BadPieceSize,
        BadPieceCid,
        EndBeforeStart,
        StartElapsed,
        DurationOutOfBounds,
        PriceOutOfBounds,
        ProviderCollateralOutOfBounds,
        ClientCollateralOutOfBounds,
        OtherProvider,
        ClientUnresolved,
        ClientFundsShort,
        ProviderFundsShort,
        Duplicate,
        DataCapShort
    }

    /// @notice One deal of a PublishStorageDeals message.
    struct ClientDealProposal {
        /// The `DealProposal` CBOR, with the provider this batch publishes for.
        bytes proposal;
        /// The client's signature bytes (Boost sends `0xdead` for a contract client).
        bytes clientSignature;
    }

    struct Escrow {
        uint256 balance;
        uint256 locked;
    }

    /// @notice The next deal ID; deal IDs start at 0 (`State::new`, `next_id: 0`).
    uint64 public nextDealId;
    mapping(uint64 dealId => SimDeal) internal deals;
    /// @notice Proposal CIDs published and not yet processed (`pending_proposals`).
    mapping(bytes32 proposalCid => bool) public pendingProposals;
    mapping(uint64 miner => mapping(uint64 sector => uint64[])) internal sectorDeals;
    mapping(uint64 id => Escrow) internal escrow;
    /// @notice Verified-client DataCap per actor ID, in bytes.
    mapping(uint64 id => uint256) public dataCap;
    /// @notice Provider collateral slashed (sent to the burnt-funds actor on Filecoin).
    uint256 public burnt;
    /// @notice The deal codec the installer puts at `SimActors.CODEC` (runtime code, like this).
    DealCodec internal constant CODEC = DealCodec(SimActors.CODEC);

    // ------------------------------------------------------------------ events

    /// @notice The market's `deal-published` actor event (FIP-0083): a deal of a
    ///         PublishStorageDeals message was published, after its client was notified.
    event DealPublished(uint64 indexed id, uint64 indexed client, uint64 indexed provider);
    /// @notice `deal-activated`: the provider proved the sector holding the deal.
    event DealActivated(uint64 indexed id, uint64 indexed client, uint64 indexed provider);
    /// @notice `deal-terminated`: the sector was terminated; the deal left the state at once.
    event DealTerminated(uint64 indexed id, uint64 indexed client, uint64 indexed provider);
    /// @notice `deal-completed`: the deal reached its end and was settled out of the state.
    event DealCompleted(uint64 indexed id, uint64 indexed client, uint64 indexed provider);
    /// @notice Simulator only: a deal that was never activated by its start epoch was removed
    ///         and its provider collateral slashed.
    event DealTimedOut(uint64 indexed id, uint64 indexed client, uint64 indexed provider);
    /// @notice Simulator only: deal `index` of a PublishStorageDeals batch was dropped.
    event DealRejected(uint64 indexed provider, uint256 index, Rejection reason);
    /// @notice Escrow was added for an actor.
    event BalanceAdded(uint64 indexed account, uint256 amount);
    /// @notice Escrow was withdrawn for an actor.
    event BalanceWithdrawn(uint64 indexed account, address to, uint256 amount);
    /// @notice Simulator only: a miner actor was registered.
    event MinerRegistered(uint64 indexed id, address owner, address worker, address[] controls);
    /// @notice Simulator only: an actor's DataCap was set.
    event DataCapSet(uint64 indexed id, uint256 amount);
    /// @notice Simulator only: the policy changed.
    event PolicySet(Policy policy);

    // ------------------------------------------------------------------ errors

    /// @notice Not the simulator's admin.
    error MarketSimulatorNotAdmin(address caller);
    /// @notice A policy that cannot be right (a bound of zero or crossed bounds).
    error MarketSimulatorBadPolicy();
    /// @notice No code is installed at the miner's masked address, or the ID is taken.
    error MarketSimulatorBadMiner(uint64 id);
    /// @notice The message has no deal (`illegal_argument`, "Empty deals parameter").
    error MarketSimulatorNoDeals();
    /// @notice Deal `index` does not deserialize (bad CBOR or a label that is not UTF-8): the
    ///         whole message fails, as its parameters would not deserialize on Filecoin.
    error MarketSimulatorBadParams(uint256 index);
    /// @notice The batch's provider is not a storage miner actor.
    error MarketSimulatorNotMiner(bytes provider);
    /// @notice The sender is not the owner, worker or a control address of the provider.
    error MarketSimulatorNotControlling(uint64 provider, address caller);
    /// @notice Every deal of the batch was dropped (`illegal_argument`, "All deal proposals
    ///         invalid"); `reasons` gives each one's.
    error MarketSimulatorAllDealsInvalid(Rejection[] reasons);
    /// @notice A client refused MarketNotifyDeal: the whole message fails.
    error MarketSimulatorNotifyFailed(uint64 dealId, int256 exitCode);
    /// @notice The verified registry refused the allocation a verified deal of the batch asks
    ///         for (its piece under 1 MiB, or its duration outside 180 days to 5 years): the
    ///         client's DataCap transfer fails, and with it the whole message.
    error MarketSimulatorAllocationRefused(uint256 index, uint64 pieceSize, int64 duration);
    /// @notice The caller is not a registered miner actor.
    error MarketSimulatorCallerNotMiner(address caller);
    /// @notice Nothing to add (AddBalance needs a positive value), or an address the market
    ///         cannot resolve.
    error MarketSimulatorBadBalance();

    // ================================================================== the actor's methods

    /// @notice Answers a message to the market as the actor would: `(exit code, codec, CBOR)`.
    ///         `msg.sender` is the sender (through the precompile: the contract using it).
    /// @inheritdoc ISimActor
    function handle(uint64 method, uint64, bytes calldata params)
        external
        payable
        returns (int256 exitCode, uint64 retCodec, bytes memory ret)
    {
        if (method == MarketActor.ADD_BALANCE) return addBalanceMethod(params);
        if (msg.value != 0) return (USR_UNHANDLED_MESSAGE, 0, ""); // no other method is payable
        if (method == MarketActor.WITHDRAW_BALANCE) return withdrawBalanceMethod(params);
        if (method == MarketActor.GET_BALANCE) return getBalanceMethod(params);
        if (method == MarketActor.SECTOR_CONTENT_CHANGED) return sectorContentChanged(params);
        if (isDealQuery(method)) return dealQuery(method, params);
        // Internal methods from a non-built-in caller are forbidden (runtime
        // `restrict_internal_api`); anything else is unhandled.
        if (method >= 1024 && method < 1 << 24) return (USR_FORBIDDEN, 0, "");
        return (USR_UNHANDLED_MESSAGE, 0, "");
    }

    function isDealQuery(uint64 m) private pure returns (bool) {
        return m == MarketActor.GET_DEAL_DATA_COMMITMENT || m == MarketActor.GET_DEAL_CLIENT
            || m == MarketActor.GET_DEAL_PROVIDER || m == MarketActor.GET_DEAL_LABEL
            || m == MarketActor.GET_DEAL_TERM || m == MarketActor.GET_DEAL_TOTAL_PRICE
            || m == MarketActor.GET_DEAL_CLIENT_COLLATERAL || m == MarketActor.GET_DEAL_PROVIDER_COLLATERAL
            || m == MarketActor.GET_DEAL_VERIFIED || m == MarketActor.GET_DEAL_ACTIVATION
            || m == MarketActor.GET_DEAL_SECTOR;
    }

    /// @dev `get_proposal`: 17 for an ID never used, 32 for one removed from state.
    function dealQuery(uint64 method, bytes calldata params)
        private
        view
        returns (int256 exitCode, uint64 retCodec, bytes memory ret)
    {
        (bool ok, uint64 id) = tryReadUint(params);
        if (!ok) return (USR_SERIALIZATION, 0, "");
        if (id >= nextDealId) return (USR_NOT_FOUND, 0, "");
        SimDeal storage d = deals[id];
        if (d.removed) return (MarketActor.EX_DEAL_EXPIRED, 0, "");
        retCodec = MarketActor.CODEC_CBOR;
        if (method == MarketActor.GET_DEAL_DATA_COMMITMENT) {
            ret = bytes.concat(Cbor.encodeArray(2), Cbor.encodeCid(d.pieceCid), Cbor.encodeUint(d.pieceSize));
        } else if (method == MarketActor.GET_DEAL_CLIENT) {
            ret = Cbor.encodeUint(d.client);
        } else if (method == MarketActor.GET_DEAL_PROVIDER) {
            ret = Cbor.encodeUint(d.provider);
        } else if (method == MarketActor.GET_DEAL_LABEL) {
            ret = d.labelIsText ? Cbor.encodeText(d.label) : Cbor.encodeBytes(d.label);
        } else if (method == MarketActor.GET_DEAL_TERM) {
            ret = bytes.concat(Cbor.encodeArray(2), Cbor.encodeInt(d.start), Cbor.encodeInt(d.end - d.start));
        } else if (method == MarketActor.GET_DEAL_TOTAL_PRICE) {
            ret = Cbor.encodeBigUint(d.price * uint64(d.end - d.start));
        } else if (method == MarketActor.GET_DEAL_CLIENT_COLLATERAL) {
            ret = Cbor.encodeBigUint(d.clientCollateral);
        } else if (method == MarketActor.GET_DEAL_PROVIDER_COLLATERAL) {
            ret = Cbor.encodeBigUint(d.providerCollateral);
        } else if (method == MarketActor.GET_DEAL_VERIFIED) {
            ret = Cbor.encodeBool(d.verified);
        } else if (method == MarketActor.GET_DEAL_ACTIVATION) {
            // A terminated deal is removed at once (v13+), so `terminated` is always -1 here.
            ret = bytes.concat(Cbor.encodeArray(2), Cbor.encodeInt(d.activated), Cbor.encodeInt(-1));
        } else {
            // GetDealSector: EX_DEAL_NOT_ACTIVATED before activation.
            if (d.activated < 0) return (MarketActor.EX_DEAL_NOT_ACTIVATED, 0, "");
            ret = Cbor.encodeUint(d.sector);
        }
    }

    function tryReadUint(bytes calldata params) private pure returns (bool ok, uint64 value) {
        if (params.length == 0 || uint8(params[0]) >> 5 != 0) return (false, 0);
        (value,) = Cbor.readUint(params, 0);
        return (true, value);
    }

    /// @dev AddBalance: a positive value for an address that resolves (`escrow_address`).
    function addBalanceMethod(bytes calldata params) private returns (int256, uint64, bytes memory) {
        if (msg.value == 0) return (USR_ILLEGAL_ARGUMENT, 0, "");
        (bytes memory account,) = Cbor.readBytes(params, 0);
        (bool ok, uint64 id) = resolve(account, true);
        if (!ok) return (USR_ILLEGAL_ARGUMENT, 0, "");
        escrow[id].balance += msg.value;
        emit BalanceAdded(id, msg.value);
        return (0, 0, "");
    }

    /// @dev WithdrawBalance: a client withdraws to itself; a miner's owner or worker withdraws
    ///      to the owner. Yields at most the unlocked balance.
    function withdrawBalanceMethod(bytes calldata params) private returns (int256, uint64, bytes memory) {
        bytes memory p = params;
        (uint64 n, uint256 i) = Cbor.readArray(p, 0);
        if (n != 2) return (USR_SERIALIZATION, 0, "");
        bytes memory account;
        uint256 amount;
        (account, i) = Cbor.readBytes(p, i);
        (amount,) = Cbor.readBigUint(p, i);
        (bool ok, uint64 id) = resolve(account, false);
        if (!ok) return (USR_ILLEGAL_ARGUMENT, 0, "");
        address recipient;
        if (kindOf[id] == ActorKind.Miner) {
            MinerActorSimulator miner = MinerActorSimulator(payable(FilAddress.maskedAddress(id)));
            recipient = miner.owner();
            if (msg.sender != recipient && msg.sender != miner.worker()) return (USR_FORBIDDEN, 0, "");
        } else {
            recipient = addressOf[id];
            if (msg.sender != recipient) return (USR_FORBIDDEN, 0, "");
        }
        Escrow storage e = escrow[id];
        uint256 available = e.balance - e.locked;
        if (amount > available) amount = available;
        e.balance -= amount;
        emit BalanceWithdrawn(id, recipient, amount);
        SimActors.pay(recipient, amount);
        return (0, MarketActor.CODEC_CBOR, Cbor.encodeBigUint(amount));
    }

    function getBalanceMethod(bytes calldata params) private view returns (int256, uint64, bytes memory) {
        (bytes memory account,) = Cbor.readBytes(params, 0);
        (bool ok, uint64 id) = lookup(account);
        if (!ok) {
            // A contract the registry has not met yet exists all the same, with no escrow (and
            // a read-only query must not register it).
            (bool isDelegated, address a) = FilAddress.parseDelegated(account);
            if (!isDelegated || a.code.length == 0) return (USR_ILLEGAL_ARGUMENT, 0, "");
        }
        Escrow storage e = escrow[id];
        return (
            0,
            MarketActor.CODEC_CBOR,
            bytes.concat(Cbor.encodeArray(2), Cbor.encodeBigUint(e.balance), Cbor.encodeBigUint(e.locked))
        );
    }

    /// @dev SectorContentChanged from a miner actor (`sector_content_changed`): each piece's
    ///      payload is a CBOR deal ID; a deal activates when it is this miner's, not yet active,
    ///      its start epoch has not passed, it ends by the sector's commitment, and the piece
    ///      matches. Returns `[[accepted, ...], ...]` per sector and piece.
    function sectorContentChanged(bytes calldata params) private returns (int256, uint64, bytes memory) {
        (bool isMiner, uint64 miner) = FilAddress.idOfMasked(msg.sender);
        if (!isMiner || kindOf[miner] != ActorKind.Miner) return (USR_FORBIDDEN, 0, "");
        DealCodec.PieceChanges memory c = CODEC.decodeSectorChanges(params);
        bool[] memory accepted = new bool[](c.data.length);
        for (uint256 k; k < accepted.length; ++k) {
            accepted[k] = activate(miner, c, k);
        }
        return (0, MarketActor.CODEC_CBOR, CODEC.encodeAccepted(c.perSector, accepted));
    }

    function activate(uint64 miner, DealCodec.PieceChanges memory c, uint256 k) private returns (bool) {
        bytes memory payload = c.payload[k];
        if (payload.length == 0 || uint8(payload[0]) >> 5 != 0) return false;
        (uint64 id, uint256 end) = Cbor.readUint(payload, 0);
        if (end != payload.length || id >= nextDealId) return false;
        SimDeal storage d = deals[id];
        // `preactivate_deal` / `validate_deal_can_activate`, then the piece check.
        if (d.removed || d.activated >= 0 || d.provider != miner) return false;
        if (epoch() > d.start || d.end > c.commitment[k]) return false;
        if (keccak256(c.data[k]) != keccak256(d.pieceCid) || c.size[k] != d.pieceSize) return false;
        d.activated = epoch();
        d.sector = c.sector[k];
        sectorDeals[miner][c.sector[k]].push(id);
        emit DealActivated(id, d.client, d.provider);
        return true;
    }

    // ================================================================== storage providers

    /// @notice Stands for a provider's PublishStorageDeals message (`publish_storage_deals`),
    ///         sent by the owner, worker or a control address of the miner every deal names.
    ///         In the real order: each deal is authenticated with its client first (a
    ///         read-only AuthenticateMessage, a STATICCALL from f05, before any state changes)
    ///         and checked against the policy; deals from another provider, with a client short
    ///         of escrow or DataCap, or duplicating a pending proposal are dropped; the rest get
    ///         IDs (from 0) and their normalized proposal (client and provider as f0 IDs) is
    ///         stored; then each client is sent MarketNotifyDeal with that normalized proposal,
    ///         and any refusal fails the whole message.
    /// @param batch The deals, all for one provider.
    /// @return ids The new deals' IDs, in the order of the valid deals.
    /// @return valid Bit `i` set when deal `i` was published (the real `valid_deals` bitfield).
    // As the real market: AuthenticateMessage goes out (read-only, a STATICCALL) before the state
    // is read or written, and clients are notified after it is written; a client's refusal
    // reverts the whole message. A simulator with no funds of its own at stake in the callbacks.
    // slither-disable-next-line reentrancy-eth,reentrancy-no-eth,reentrancy-benign,reentrancy-events
    function publishStorageDeals(ClientDealProposal[] calldata batch)
        external
        returns (uint64[] memory ids, uint256 valid)
    {
        if (batch.length == 0 || batch.length > 256) revert MarketSimulatorNoDeals();
        DealProposal.Fields[] memory fs = new DealProposal.Fields[](batch.length);
        for (uint256 k; k < batch.length; ++k) {
            fs[k] = decodeChecked(batch[k].proposal, k);
        }
        (bool resolved, uint64 provider) = resolve(fs[0].provider, false);
        if (!resolved || kindOf[provider] != ActorKind.Miner) revert MarketSimulatorNotMiner(fs[0].provider);
        if (!MinerActorSimulator(payable(FilAddress.maskedAddress(provider))).isControlling(msg.sender)) {
            revert MarketSimulatorNotControlling(provider, msg.sender);
        }
        Rejection[] memory why = new Rejection[](batch.length);
        // Read-only checks first: the market authenticates before it loads its state.
        for (uint256 k; k < batch.length; ++k) {
            why[k] = validate(fs[k], batch[k].clientSignature);
        }
        uint256 count;
        (why, count) = admit(fs, why, provider, fs[0].provider);
        if (count == 0) revert MarketSimulatorAllDealsInvalid(why);
        // The clients' DataCap transfers for the verified deals admitted: the registry validates
        // each allocation (`alloc_request_for_deal`: term_min = the deal's duration, term_max
        // that plus 90 days, at most 5 years; `validate_new_allocation`), and a transfer is
        // all-or-nothing, so one it refuses fails the whole message.
        for (uint256 k; k < batch.length; ++k) {
            if (why[k] != Rejection.None || !fs[k].verified) continue;
            int64 duration = fs[k].end - fs[k].start;
            if (
                fs[k].pieceSize < MIN_VERIFIED_ALLOCATION_SIZE || duration < MIN_VERIFIED_ALLOCATION_TERM
                    || duration > MAX_VERIFIED_ALLOCATION_TERM
            ) revert MarketSimulatorAllocationRefused(k, fs[k].pieceSize, duration);
        }
        ids = new uint64[](count);
        uint256 n;
        for (uint256 k; k < batch.length; ++k) {
            if (why[k] != Rejection.None) {
                emit DealRejected(provider, k, why[k]);
                continue;
            }
            ids[n++] = store(fs[k]);
            valid |= 1 << k;
        }
        // Notify clients; any failure aborts the whole message.
        n = 0;
        for (uint256 k; k < batch.length; ++k) {
            if (why[k] != Rejection.None) continue;
            uint64 id = ids[n++];
            SimDeal storage d = deals[id];
            bytes memory params = bytes.concat(
                Cbor.encodeArray(2), Cbor.encodeBytes(normalized(d)), Cbor.encodeUint(uint64(id))
            );
            (int256 code,,) = SimActors.send(d.client, MarketActor.MARKET_NOTIFY_DEAL, params, 0, false);
            if (code != 0) revert MarketSimulatorNotifyFailed(id, code);
            emit DealPublished(id, d.client, d.provider);
        }
    }

    function decodeChecked(bytes calldata proposal, uint256 index)
        private
        view
        returns (DealProposal.Fields memory f)
    {
        try CODEC.decodeProposal(proposal) returns (DealProposal.Fields memory decoded) {
            f = decoded;
        } catch {
            revert MarketSimulatorBadParams(index);
        }
        if (f.labelIsText && !isUtf8(f.label)) revert MarketSimulatorBadParams(index);
    }

    /// @dev `validate_deal`: authentication (read-only), then the policy checks, in order.
    function validate(DealProposal.Fields memory f, bytes calldata signature) private returns (Rejection) {
        if (!authenticate(f, signature)) return Rejection.AuthenticationFailed;
        if (f.label.length > MAX_LABEL_SIZE) return Rejection.LabelTooLong;
        if (f.pieceSize < 128 || f.pieceSize & (f.pieceSize - 1) != 0) return Rejection.BadPieceSize;
        if (f.pieceCid.length != 39 || bytes7(f.pieceCid) != bytes7(hex"0181e203922020")) {
            return Rejection.BadPieceCid;
        }
        if (f.end <= f.start) return Rejection.EndBeforeStart;
        if (epoch() > f.start) return Rejection.StartElapsed;
        Policy memory p = policy();
        int64 duration = f.end - f.start;
        if (duration < p.minDuration || duration > p.maxDuration) return Rejection.DurationOutOfBounds;
        if (f.price > TOTAL_FILECOIN) return Rejection.PriceOutOfBounds;
        if (
            f.providerCollateral < minProviderCollateral(f.pieceSize) || f.providerCollateral > TOTAL_FILECOIN
        ) {
            return Rejection.ProviderCollateralOutOfBounds;
        }
        if (f.clientCollateral > TOTAL_FILECOIN) return Rejection.ClientCollateralOutOfBounds;
        return Rejection.None;
    }

    /// @dev `deal_proposal_is_internally_valid`: AuthenticateMessage sent to the client with
    ///      `SendFlags::READ_ONLY` (a STATICCALL), params `[signature, proposal CBOR]`; valid
    ///      only if the call succeeds and returns CBOR `true`.
    function authenticate(DealProposal.Fields memory f, bytes calldata signature) private returns (bool) {
        (bool ok, address client) = FilAddress.toEvm(f.client);
        if (!ok) return false;
        (bool isMasked, uint64 id) = FilAddress.idOfMasked(client);
        if (isMasked) client = actorAddress(id);
        bytes memory params = bytes.concat(
            Cbor.encodeArray(2), Cbor.encodeBytes(signature), Cbor.encodeBytes(CODEC.encodeProposal(f))
        );
        (int256 code, uint64 retCodec, bytes memory ret) =
            SimActors.invokeEvm(client, MarketActor.AUTHENTICATE_MESSAGE, params, 0, true);
        if (code != 0 || retCodec != MarketActor.CODEC_CBOR || ret.length != 1) return false;
        return uint8(ret[0]) == 0xf5;
    }

    /// @dev Running totals of a PublishStorageDeals batch.
    struct Batch {
        uint64 provider;
        bytes providerRaw;
        uint256 providerLockup;
        uint64[] clients;
        uint256[] clientLockup;
        uint256[] capUsed;
        bytes32[] cids;
    }

    /// @dev The state-dependent part of `publish_storage_deals`: one provider per batch,
    ///      resolvable clients with escrow (and DataCap) for the running totals, no duplicates.
    function admit(
        DealProposal.Fields[] memory fs,
        Rejection[] memory why,
        uint64 provider,
        bytes memory providerRaw
    ) private returns (Rejection[] memory, uint256 count) {
        Batch memory b;
        b.provider = provider;
        b.providerRaw = providerRaw;
        b.clients = new uint64[](fs.length);
        b.clientLockup = new uint256[](fs.length);
        b.capUsed = new uint256[](fs.length);
        b.cids = new bytes32[](fs.length);
        for (uint256 k; k < fs.length; ++k) {
            if (why[k] != Rejection.None) continue;
            why[k] = admitOne(b, fs[k], why, k);
            if (why[k] == Rejection.None) ++count;
        }
        return (why, count);
    }

    function admitOne(Batch memory b, DealProposal.Fields memory f, Rejection[] memory why, uint256 k)
        private
        returns (Rejection)
    {
        (bool sameProvider, uint64 pid) = resolve(f.provider, false);
        if (!(sameProvider && pid == b.provider) && keccak256(f.provider) != keccak256(b.providerRaw)) {
            return Rejection.OtherProvider;
        }
        (bool ok, uint64 client) = resolve(f.client, true);
        if (!ok) return Rejection.ClientUnresolved;
        uint256 slot = clientSlot(b, why, k, client);
        uint256 need = b.clientLockup[slot] + f.clientCollateral + f.price * uint64(f.end - f.start);
        if (free(client) < need) return Rejection.ClientFundsShort;
        if (free(b.provider) < b.providerLockup + f.providerCollateral) return Rejection.ProviderFundsShort;
        f.provider = FilAddress.idAddress(b.provider);
        f.client = FilAddress.idAddress(client);
        bytes32 pcid = keccak256(CODEC.encodeProposal(f));
        if (isDuplicate(b, why, k, pcid)) return Rejection.Duplicate;
        if (f.verified) {
            if (dataCap[client] < b.capUsed[slot] + f.pieceSize) return Rejection.DataCapShort;
            b.capUsed[slot] += f.pieceSize;
        }
        b.clientLockup[slot] = need;
        b.providerLockup += f.providerCollateral;
        b.cids[k] = pcid;
        return Rejection.None;
    }

    /// @dev Where the batch's running totals for `client` are kept: its first valid deal's index.
    function clientSlot(Batch memory b, Rejection[] memory why, uint256 k, uint64 client)
        private
        pure
        returns (uint256)
    {
        b.clients[k] = client;
        for (uint256 j; j < k; ++j) {
            if (b.clients[j] == client && why[j] == Rejection.None) return j;
        }
        return k;
    }

    function isDuplicate(Batch memory b, Rejection[] memory why, uint256 k, bytes32 pcid)
        private
        view
        returns (bool)
    {
        if (pendingProposals[pcid]) return true;
        for (uint256 j; j < k; ++j) {
            if (why[j] == Rejection.None && b.cids[j] == pcid) return true;
        }
        return false;
    }

    function free(uint64 id) private view returns (uint256) {
        Escrow storage e = escrow[id];
        return e.balance - e.locked;
    }

    /// @dev Stores a valid deal (normalized proposal), locks both parties' funds and DataCap.
    function store(DealProposal.Fields memory f) private returns (uint64 id) {
        id = nextDealId++;
        (, uint64 client) = FilAddress.parseIdAddress(f.client);
        (, uint64 provider) = FilAddress.parseIdAddress(f.provider);
        SimDeal storage d = deals[id];
        d.pieceCid = f.pieceCid;
        d.pieceSize = f.pieceSize;
        d.verified = f.verified;
        d.client = client;
        d.provider = provider;
        d.label = f.label;
        d.labelIsText = f.labelIsText;
        d.start = f.start;
        d.end = f.end;
        d.price = f.price;
        d.providerCollateral = f.providerCollateral;
        d.clientCollateral = f.clientCollateral;
        d.activated = -1;
        d.lastUpdated = -1;
        d.proposalCid = keccak256(CODEC.encodeProposal(f));
        pendingProposals[d.proposalCid] = true;
        escrow[client].locked += f.clientCollateral + f.price * uint64(f.end - f.start);
        escrow[provider].locked += f.providerCollateral;
        if (f.verified) dataCap[client] -= f.pieceSize;
    }

    /// @notice The normalized CBOR of a stored deal's proposal (client and provider as f0 IDs):
    ///         what MarketNotifyDeal carries.
    function normalized(SimDeal storage d) internal view returns (bytes memory) {
        return CODEC.encodeProposal(fields(d));
    }

    function fields(SimDeal storage d) internal view returns (DealProposal.Fields memory f) {
        f.pieceCid = d.pieceCid;
        f.pieceSize = d.pieceSize;
        f.verified = d.verified;
        f.client = FilAddress.idAddress(d.client);
        f.provider = FilAddress.idAddress(d.provider);
        f.label = d.label;
        f.labelIsText = d.labelIsText;
        f.start = d.start;
        f.end = d.end;
        f.price = d.price;
        f.providerCollateral = d.providerCollateral;
        f.clientCollateral = d.clientCollateral;
    }

    /// @notice Stands for an AddBalance message: escrows the value sent for `account` (a binary
    ///         `f0` or `f410` address).
    function addBalance(bytes calldata account) external payable {
        if (msg.value == 0) revert MarketSimulatorBadBalance();
        (bool ok, uint64 id) = resolve(account, true);
        if (!ok) revert MarketSimulatorBadBalance();
        escrow[id].balance += msg.value;
        emit BalanceAdded(id, msg.value);
    }

    /// @notice Stands for SettleDealPayments (and the market's cron, which does the same on its
    ///         schedule): pays each deal's provider up to now; removes a deal past its end
    ///         (completed) or one never activated by its start epoch (timed out, provider
    ///         collateral slashed).
    /// @return codes Per deal: 0, or 32 (EX_DEAL_EXPIRED) for a deal not in state or timed out.
    function settleDealPayments(uint64[] calldata ids) external returns (int256[] memory codes) {
        codes = new int256[](ids.length);
        int64 now_ = epoch();
        for (uint256 k; k < ids.length; ++k) {
            uint64 id = ids[k];
            if (id >= nextDealId || deals[id].removed) {
                codes[k] = MarketActor.EX_DEAL_EXPIRED;
                continue;
            }
            SimDeal storage d = deals[id];
            if (d.activated < 0) {
                if (now_ < d.start) continue; // too early: a no-op
                codes[k] = MarketActor.EX_DEAL_EXPIRED;
                slash(d);
                unlockClient(d, d.clientCollateral + d.price * uint64(d.end - d.start));
                removeDeal(d);
                emit DealTimedOut(id, d.client, d.provider);
                continue;
            }
            delete pendingProposals[d.proposalCid];
            payUpTo(d, now_);
            if (now_ >= d.end) {
                unlockClient(d, d.clientCollateral);
                escrow[d.provider].locked -= d.providerCollateral;
                removeDeal(d);
                emit DealCompleted(id, d.client, d.provider);
            }
        }
    }

    /// @notice OnMinerSectorsTerminate, from a miner actor: its deals in `sectors` that have not
    ///         ended are paid up to now, their provider collateral is slashed, and they are
    ///         removed from state at once (builtin-actors v13+); ended ones are left to settle.
    function onMinerSectorsTerminate(uint64[] calldata sectors) external {
        (bool isMiner, uint64 miner) = FilAddress.idOfMasked(msg.sender);
        if (!isMiner || kindOf[miner] != ActorKind.Miner) revert MarketSimulatorCallerNotMiner(msg.sender);
        int64 now_ = epoch();
        for (uint256 s; s < sectors.length; ++s) {
            uint64[] storage list = sectorDeals[miner][sectors[s]];
            for (uint256 k; k < list.length; ++k) {
                SimDeal storage d = deals[list[k]];
                if (d.removed || d.end <= now_) continue;
                delete pendingProposals[d.proposalCid];
                payUpTo(d, now_);
                slash(d);
                unlockClient(d, d.clientCollateral + d.price * uint64(d.end - max(d.start, d.lastUpdated)));
                removeDeal(d);
                emit DealTerminated(list[k], d.client, d.provider);
            }
            delete sectorDeals[miner][sectors[s]];
        }
    }

    function payUpTo(SimDeal storage d, int64 now_) private {
        int64 from = max(d.start, d.lastUpdated);
        int64 to = now_ < d.end ? now_ : d.end;
        if (to > from) {
            uint256 amount = d.price * uint64(to - from);
            Escrow storage c = escrow[d.client];
            c.balance -= amount;
            c.locked -= amount;
            escrow[d.provider].balance += amount;
        }
        if (to > d.lastUpdated) d.lastUpdated = to;
    }

    function slash(SimDeal storage d) private {
        Escrow storage p = escrow[d.provider];
        p.balance -= d.providerCollateral;
        p.locked -= d.providerCollateral;
        burnt += d.providerCollateral;
    }

    function unlockClient(SimDeal storage d, uint256 amount) private {
        escrow[d.client].locked -= amount;
    }

    function removeDeal(SimDeal storage d) private {
        delete pendingProposals[d.proposalCid];
        d.removed = true;
    }

    // ================================================================== registry and admin

    /// @notice Registers a miner actor whose `MinerActorSimulator` code is already installed at
    ///         its masked ID address (`anvil_setCode` on a local chain, `vm.etch` in tests), with
    ///         its owner, worker and control addresses (EVM accounts here). First come, first
    ///         served: the ID must not be taken.
    function registerMiner(uint64 id, address owner, address worker, address[] calldata controls) external {
        address code = FilAddress.maskedAddress(id);
        if (id < 1000 || id >= FIRST_EVM_ACTOR_ID || kindOf[id] != ActorKind.None || code.code.length == 0) {
            revert MarketSimulatorBadMiner(id);
        }
        kindOf[id] = ActorKind.Miner;
        MinerActorSimulator(payable(code)).initialize(owner, worker, controls);
        emit MinerRegistered(id, owner, worker, controls);
    }

    /// @notice The DataCap, in bytes, of the actor binary address `addr` resolves to (0 when it
    ///         resolves to none): what `DataCapSimulator` (f07) answers `Balance` from.
    function dataCapOf(bytes calldata addr) external view returns (uint256) {
        (bool ok, uint64 id) = lookup(addr);
        return ok ? dataCap[id] : 0;
    }

    /// @notice Sets an actor's verified-client DataCap (in bytes), as a notary's allocation does.
    function setDataCap(address account, uint256 amount) external {
        onlyAdmin();
        uint64 id = registerEvm(account);
        dataCap[id] = amount;
        emit DataCapSet(id, amount);
    }

    /// @notice Sets the policy; the first caller becomes the admin. Until then the production
    ///         policy applies (`policy`).
    function setPolicy(Policy calldata p) external {
        if (admin == address(0)) admin = msg.sender;
        onlyAdmin();
        if (p.minDuration <= 0 || p.maxDuration < p.minDuration) revert MarketSimulatorBadPolicy();
        policy_ = p;
        configured = true;
        emit PolicySet(p);
    }

    function onlyAdmin() private view {
        if (admin == address(0) || msg.sender != admin) revert MarketSimulatorNotAdmin(msg.sender);
    }

    /// @notice The policy in force: the production one until `setPolicy` (180 to 1278 days,
    ///         600 million FIL circulating, 16 EiB raw power, 64 EiB baseline).
    function policy() public view returns (Policy memory p) {
        if (configured) return policy_;
        return Policy(MIN_DURATION, MAX_DURATION, 600_000_000 ether, 1 << 64, 1 << 66);
    }

    /// @notice `deal_provider_collateral_bounds`' minimum: 1 % of the circulating supply times
    ///         the deal's share of max(baseline power, network raw power, deal size).
    function minProviderCollateral(uint64 pieceSize) public view returns (uint256) {
        Policy memory p = policy();
        uint256 denom = p.baselinePower > p.networkRawPower ? p.baselinePower : p.networkRawPower;
        if (pieceSize > denom) denom = pieceSize;
        return uint256(pieceSize) * p.circulatingSupply / (denom * 100);
    }

    /// @inheritdoc ISimRegistry
    function actorKind(uint64 id) public view returns (ActorKind) {
        if (id == MarketActor.ACTOR_ID || id == DataCapActor.ACTOR_ID) return ActorKind.Builtin;
        return kindOf[id];
    }

    /// @inheritdoc ISimRegistry
    function actorAddress(uint64 id) public view returns (address) {
        ActorKind kind = actorKind(id);
        if (kind == ActorKind.Evm) return addressOf[id];
        if (kind == ActorKind.None) return address(0);
        return FilAddress.maskedAddress(id);
    }

    /// @notice The ID of EVM actor `account` (0 when it has none yet).
    function actorIdOf(address account) external view returns (uint64) {
        (bool isMasked, uint64 id) = FilAddress.idOfMasked(account);
        return isMasked ? id : idOf[account];
    }

    /// @notice Gives EVM actor `account` an ID if it has none (as its creation does on
    ///         Filecoin) and returns it.
    function registerEvm(address account) public returns (uint64 id) {
        (bool isMasked, uint64 masked) = FilAddress.idOfMasked(account);
        if (isMasked) return masked;
        id = idOf[account];
        if (id != 0) return id;
        id = FIRST_EVM_ACTOR_ID + assignedIds++;
        idOf[account] = id;
        addressOf[id] = account;
        kindOf[id] = ActorKind.Evm;
    }

    /// @dev Resolves a binary address to an actor ID: an `f0` that exists, or an `f410` (given
    ///      an ID when `create`, as a send to it would create its actor).
    function resolve(bytes memory addr, bool create) internal returns (bool ok, uint64 id) {
        (ok, id) = lookup(addr);
        if (ok) return (ok, id);
        address a;
        (ok, a) = FilAddress.parseDelegated(addr);
        // A contract always has an actor (and so an ID) on Filecoin; an account only once
        // something created it.
        if (!ok || (!create && a.code.length == 0)) return (false, 0);
        return (true, registerEvm(a));
    }

    /// @dev `resolve` of an actor the registry knows.
    function lookup(bytes memory addr) internal view returns (bool ok, uint64 id) {
        (ok, id) = FilAddress.parseIdAddress(addr);
        if (ok) return (actorKind(id) != ActorKind.None, id);
        address a;
        (ok, a) = FilAddress.parseDelegated(addr);
        if (!ok) return (false, 0);
        id = idOf[a];
        return (id != 0, id);
    }

    // ================================================================== views

    /// @notice A deal as stored.
    function deal(uint64 dealId) external view returns (SimDeal memory) {
        return deals[dealId];
    }

    /// @notice A deal's piece, if the deal is in state (for the miner simulator).
    function dealPiece(uint64 dealId)
        external
        view
        returns (bool exists, bytes memory pieceCid, uint64 size)
    {
        SimDeal storage d = deals[dealId];
        if (dealId >= nextDealId || d.removed) return (false, "", 0);
        return (true, d.pieceCid, d.pieceSize);
    }

    /// @notice A deal's normalized proposal CBOR (what its client was notified with).
    function dealProposal(uint64 dealId) external view returns (bytes memory) {
        return normalized(deals[dealId]);
    }

    /// @notice An actor's escrow and the part locked in deals.
    function escrowOf(uint64 id) external view returns (uint256 balance, uint256 locked) {
        Escrow storage e = escrow[id];
        return (e.balance, e.locked);
    }

    /// @notice Deals activated in a miner's sector.
    function dealsInSector(uint64 miner, uint64 sector) external view returns (uint64[] memory) {
        return sectorDeals[miner][sector];
    }

    /// @notice Helper for off-chain providers: `proposal` with its provider replaced by `f0<id>`
    ///         (as Boost does with a contract's proposal before it publishes it).
    function withProvider(bytes calldata proposal, uint64 provider) external view returns (bytes memory) {
        DealProposal.Fields memory f = CODEC.decodeProposal(proposal);
        f.provider = FilAddress.idAddress(provider);
        return CODEC.encodeProposal(f);
    }

    // ================================================================== helpers

    function epoch() internal view returns (int64) {
        return int64(uint64(block.number));
    }

    function max(int64 a, int64 b) private pure returns (int64) {
        return a > b ? a : b;
    }

    /// @dev Strict UTF-8 (Rust's `str::from_utf8`): no overlong forms, surrogates or code
    ///      points above U+10FFFF.
    function isUtf8(bytes memory s) internal pure returns (bool) {
        uint256 i;
        while (i < s.length) {
            uint8 c = uint8(s[i]);
            uint256 n;
            uint8 lo = 0x80;
            uint8 hi = 0xbf;
            if (c < 0x80) n = 0;
            else if (c >= 0xc2 && c <= 0xdf) n = 1;
            else if (c >= 0xe0 && c <= 0xef) n = 2;
            else if (c >= 0xf0 && c <= 0xf4) n = 3;
            else return false;
            if (c == 0xe0) lo = 0xa0;
            else if (c == 0xed) hi = 0x9f;
            else if (c == 0xf0) lo = 0x90;
            else if (c == 0xf4) hi = 0x8f;
            if (i + n >= s.length && n > 0) return false;
            for (uint256 k = 1; k <= n; ++k) {
                uint8 b = uint8(s[i + k]);
                if (k == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xbf)) return false;
            }
            i += n + 1;
        }
        return true;
    }

    /// @notice An EVM CALL to a built-in actor runs its InvokeEVM method, which it does not
    ///         have: exit code 22, the call fails and no value moves.
    receive() external payable {
        revert();
    }

    /// @notice See `receive`.
    fallback() external payable {
        revert();
    }
}

/// @title ActorCallForwarder
/// @notice Runtime code for the `call_actor_id` precompile address on a local chain, with the
///         precompile's rules (builtin-actors `actors/evm/src/interpreter/precompiles/fvm.rs`,
///         `call_actor_shared`): only a DELEGATECALL is served; methods 1–1023, unknown flags,
///         and a codec other than CBOR (0x51) or none with empty params make the precompile fail;
///         the answer is `abi.encode(int256 exitCode, uint64 codec, bytes ret)`, with negative
///         exit codes for syscall errors: -6 when no actor has the ID (`call_actor_resolved`,
///         `NotFound`), -13 for value sent read-only, -5 for value the caller does not have.
///         Messages go to simulated built-in actors (the market, miners) and to EVM actors
///         through `SimActors`, which the simulated market's registry resolves.
contract ActorCallForwarder {
    fallback(bytes calldata input) external payable returns (bytes memory) {
        // Running as itself means a CALL or STATICCALL: `PrecompileError::CallForbidden`.
        if (address(this) == FvmActor.CALL_ACTOR_ID) fail();
        (uint64 method, uint256 value, uint64 flags, uint64 codec, bytes memory params, uint64 target) =
            abi.decode(input, (uint64, uint256, uint64, uint64, bytes, uint64));
        if (flags > FvmActor.FLAG_READ_ONLY) fail();
        if (method != 0 && method <= 1023) fail();
        if (codec != FvmActor.CODEC_CBOR && !(codec == FvmActor.CODEC_NONE && params.length == 0)) fail();
        (int256 exitCode, uint64 retCodec, bytes memory ret) =
            SimActors.send(target, method, params, value, flags == FvmActor.FLAG_READ_ONLY);
        return abi.encode(exitCode, retCodec, ret);
    }

    /// @dev A failed precompile: the CALL returns 0 with no data.
    function fail() private pure {
        assembly ("memory-safe") {
            revert(0, 0)
        }
    }
}
