// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {Cbor} from "./lib/Cbor.sol";
import {CidLib} from "./lib/CidLib.sol";
import {DealCodec} from "./lib/DealCodec.sol";
import {DealProposal} from "./lib/DealProposal.sol";
import {FilAddress} from "./lib/FilAddress.sol";
import {MarketActor} from "./lib/MarketActor.sol";
import {MinerActor} from "./lib/MinerActor.sol";
import {Operated} from "./lib/Operated.sol";

/// @title DealClient
/// @notice Filecoin deals made by a contract (FRC-0068), for Boost's contract-deal flow as Boost
///         runs it (boost `storagemarket/contract_deal_monitor.go`): `DealProposalCreate`
///         announces a proposal; Boost reads `getDealProposal` (CBOR `DealProposal`, label = the
///         payload CID as text) and `getExtraParams` (CBOR `[location_ref, car_size,
///         skip_ipni_announce, remove_unsealed_copy]`), puts its own miner in as provider,
///         checks the proposal with an AuthenticateMessage call, downloads, and publishes it in
///         a PublishStorageDeals batch. The market then sends AuthenticateMessage read-only (so
///         it is answered without an event or a state write) and, after publishing, the
///         normalized proposal (client and provider as f0 IDs) in MarketNotifyDeal, which records
///         the deal. Also answers Curio's contract-deal check (`version`, `verifyDeal`,
///         `getDealState` of curio `market/mk20/contract/CurioDealViewV1.sol`) and records
///         activation from a miner actor's SectorContentChanged notification, for deals made
///         through Curio (DDO) as well as Boost. The Estuary oracle (an operator) makes proposals.
/// @dev Matching a published proposal: everything but the client and the provider must be the
///      exact terms offered (piece, size, verified flag, label and its CBOR type, epochs, price,
///      both collaterals); the provider must be the one named, or any when none was; the client
///      is this contract by construction (the market sends both calls to the deal's client).
contract DealClient is Operated {
    /// @notice The DataCap actor's masked ID address (f07): the caller of the receiver hook.
    address internal constant DATACAP_ACTOR = address((uint160(0xff) << 152) | 7);
    /// @notice FRC-0046 token receiver type the DataCap actor sends.
    uint32 internal constant FRC46_TOKEN_TYPE = 2233613279;
    /// @notice `TOTAL_FILECOIN`: the market's upper bound of price and collateral.
    uint256 public constant TOTAL_FILECOIN = 2e27;
    /// @notice Longest label the market accepts (`DEAL_MAX_LABEL_SIZE`).
    uint256 public constant MAX_LABEL_LENGTH = 256;
    /// @notice Longest download URL kept.
    uint256 public constant MAX_LOCATION_LENGTH = 2048;
    /// @notice Most replicas of one proposal open to any provider.
    uint16 public constant MAX_REPLICAS = 16;
    /// @notice The deal ID recorded for a deal made without the market (Curio DDO).
    uint64 public constant NO_DEAL = type(uint64).max;

    /// @notice A deal to propose.
    struct DealRequest {
        /// Binary v1 piece CID.
        bytes pieceCid;
        /// Padded piece size.
        uint64 pieceSize;
        /// Whether the deal uses DataCap.
        bool verifiedDeal;
        /// The payload's root CID as text (Boost parses it from the label).
        string label;
        int64 startEpoch;
        int64 endEpoch;
        uint256 storagePricePerEpoch;
        uint256 providerCollateral;
        uint256 clientCollateral;
        /// The only provider that may take the deal (0: any).
        uint64 provider;
        /// How many providers may take it: 1 when a provider is named, up to `MAX_REPLICAS`.
        uint16 replicas;
        /// Where the provider downloads the CAR (URL).
        string locationRef;
        /// Size of the CAR in bytes.
        uint64 carSize;
        bool skipIpniAnnounce;
        bool removeUnsealedCopy;
    }

    /// @notice What `makeDealProposal` checks a request against, so that what the market or
    ///         Boost would refuse later is refused now.
    struct DealPolicy {
        /// Deal duration bounds (the market's: 518,400 to 3,680,640 epochs in production).
        int64 minDuration;
        int64 maxDuration;
        /// Fewest epochs from now to the start epoch (time to download and seal).
        int64 minStartDelay;
        /// Most epochs from now to the end epoch (Boost: `MaxSectorExpirationExtension`).
        int64 maxEndDelay;
        /// Provider collateral per padded byte, at least (the market's minimum grows with the
        /// piece size; Boost refuses a proposal below it).
        uint256 minProviderCollateralPerByte;
        /// Whether a provider may fill a replica with a deal made without the market (Curio's
        /// DDO deals, recorded as `NO_DEAL`). Such a deal puts up no market collateral and has
        /// no market deal a store job can name (`EstuaryPinning.reportDirectDeal` proves pins
        /// in it from this contract's record), and nothing on chain tells this contract of its
        /// sector ending early; when false, `verifyDeal` says no and the activation is refused,
        /// so only market deals fill replicas.
        bool acceptDirect;
    }

    /// @notice One deal made for a proposal.
    struct DealRecord {
        /// The miner actor ID.
        uint64 provider;
        /// The market's deal ID (`NO_DEAL` for a deal made without the market).
        uint64 dealId;
        /// Epoch the miner reported the sector proven (-1 before).
        int64 activated;
        uint64 sector;
    }

    /// @notice A proposal as `getProposal` returns it.
    struct ProposalView {
        DealRequest request;
        /// Who proposed it.
        address proposer;
        bool cancelled;
        /// Deals made for it so far.
        DealRecord[] deals;
    }

    struct Proposal {
        DealRequest request;
        address proposer;
        bool cancelled;
        uint16 published;
        /// Its number (`proposalCount` when made): Curio's `market_deal_id`, a uint64.
        uint64 number;
    }

    /// @notice The deal CBOR and CID text codec.
    DealCodec public immutable codec;
    /// @notice The check policy.
    DealPolicy public dealPolicy;
    /// @notice Proposals made so far.
    uint256 public proposalCount;
    /// @notice Market escrow promised to replicas not yet published (the client's balance
    ///         requirement of each open replica: collateral plus price times duration).
    uint256 public reservedEscrow;
    /// @notice Proposal by terms: keccak256 of the terms (all but client and provider) and the
    ///         named provider (0 for any).
    mapping(bytes32 key => bytes32 id) public proposalByKey;
    /// @notice The proposal a market deal was made for (zero when none).
    mapping(uint64 dealId => bytes32 id) public proposalOfDeal;

    mapping(bytes32 id => Proposal) internal proposals;
    mapping(bytes32 id => DealRecord[]) internal records;
    /// @dev Index + 1 in `records[id]` of a provider's deal.
    mapping(bytes32 id => mapping(uint64 provider => uint256)) internal recordOf;

    /// @notice FRC-0068: a proposal for Boost to pick up (Boost subscribes to exactly this
    ///         signature and reads the id from the first topic).
    event DealProposalCreate(bytes32 indexed id, uint64 size, bool indexed verified, uint256 price);
    /// @notice The same proposal for Estuary's SP agents: who may take it and its terms.
    event DealProposalOffered(
        bytes32 indexed id,
        uint64 indexed provider,
        bytes pieceCid,
        uint64 pieceSize,
        int64 startEpoch,
        int64 endEpoch,
        uint16 replicas
    );
    /// @notice The market published a deal for a proposal (MarketNotifyDeal).
    event DealPublished(bytes32 indexed id, uint64 indexed dealId, uint64 indexed provider);
    /// @notice A miner reported the sector holding a proposal's deal proven
    ///         (SectorContentChanged); `dealId` is `NO_DEAL` for a deal made without the market.
    event DealActivated(bytes32 indexed id, uint64 indexed provider, uint64 dealId, uint64 sector);
    /// @notice A proposal was withdrawn: no more deals are accepted for it.
    event DealProposalCancelled(bytes32 indexed id);
    /// @notice DataCap arrived through the FRC-0046 receiver hook.
    event DataCapReceived(bytes payload);
    /// @notice Escrow was added to the market for this contract.
    event MarketBalanceAdded(uint256 amount);
    /// @notice Escrow was taken back from the market (to this contract's balance).
    event MarketBalanceWithdrawn(uint256 requested, uint256 withdrawn);
    /// @notice The owner sent FIL held by this contract.
    event Withdrawn(address indexed to, uint256 amount);
    /// @notice The check policy changed.
    event DealPolicySet(DealPolicy policy);

    /// @notice The piece CID is not a binary v1 piece CID.
    error DealClientBadPieceCid();
    /// @notice The piece size is not a power of two from 128 bytes to 64 GiB.
    error DealClientBadPieceSize(uint64 pieceSize);
    /// @notice The label is not the text of a CID (base32 `b…` CIDv1 or `Qm…` CIDv0), or is too long.
    error DealClientBadLabel();
    /// @notice The start epoch is earlier than `earliest`.
    error DealClientBadStart(int64 startEpoch, int64 earliest);
    /// @notice The duration is outside the policy's bounds.
    error DealClientBadDuration(int64 duration, int64 min, int64 max);
    /// @notice The end epoch is later than `latest`.
    error DealClientBadEnd(int64 endEpoch, int64 latest);
    /// @notice The provider collateral is below the policy's minimum for the piece.
    error DealClientCollateralTooLow(uint256 providerCollateral, uint256 minimum);
    /// @notice A price or collateral above the market's bound.
    error DealClientAmountTooLarge();
    /// @notice Replicas must be 1 with a named provider, else 1 to `MAX_REPLICAS`.
    error DealClientBadReplicas(uint16 replicas);
    /// @notice The download location is empty or too long.
    error DealClientBadLocation();
    /// @notice The CAR does not fit the piece (or is empty).
    error DealClientBadCarSize(uint64 carSize, uint64 pieceSize);
    /// @notice A live proposal with these exact terms and provider exists.
    error DealClientDuplicate(bytes32 id);
    /// @notice The market escrow not yet promised does not cover the proposal's replicas.
    error DealClientEscrowTooLow(uint256 needed, uint256 available);
    /// @notice No proposal has this id.
    error DealClientUnknownProposal(bytes32 id);
    /// @notice Curio's interface error: no deal (proposal) has this id.
    error DealNotFound(uint256 dealId);
    /// @notice A market callback from someone else than the market actor.
    error DealClientNotMarket(address caller);
    /// @notice A DataCap receiver hook from someone else than the DataCap actor.
    error DealClientNotDataCap(address caller);
    /// @notice A SectorContentChanged from an EVM account or contract (not a miner actor).
    error DealClientNotMiner(address caller);
    /// @notice A method this contract does not handle.
    error DealClientUnsupportedMethod(uint64 method);
    /// @notice The callback's parameters are not what the market or DataCap actor sends.
    error DealClientBadParams();
    /// @notice The proposal's provider is not an `f0` ID address.
    error DealClientBadProvider(bytes provider);
    /// @notice No proposal offered here has these terms for this provider.
    error DealClientNotOffered(bytes32 terms, uint64 provider);
    /// @notice The proposal was cancelled.
    error DealClientProposalClosed(bytes32 id);
    /// @notice All of the proposal's replicas have deals.
    error DealClientReplicasFilled(bytes32 id);
    /// @notice This provider already has a deal for the proposal.
    error DealClientAlreadyPublished(bytes32 id, uint64 provider);
    /// @notice Only the owner or an operator may cancel before the start epoch.
    error DealClientNotCancellable(bytes32 id);
    /// @notice The policy has a bound of zero or crossed bounds.
    error DealClientBadPolicy();
    /// @notice The amount is more than what is free to withdraw.
    error DealClientEscrowReserved(uint256 requested, uint256 free);
    /// @notice Sending FIL failed.
    error DealClientTransferFailed();

    /// @param owner_ The owner: manages operators, the policy and the escrow.
    /// @param codec_ The deal CBOR and CID text codec (a shared, stateless `DealCodec`).
    /// @param policy_ The check policy (see `DealPolicy`).
    constructor(address owner_, DealCodec codec_, DealPolicy memory policy_) Operated(owner_) {
        codec = codec_;
        setPolicy(policy_);
    }

    /// @notice FIL for the market escrow (see `addMarketBalance`).
    receive() external payable {}

    modifier onlyOwnerOrOperator() {
        if (msg.sender != owner() && !isOperator[msg.sender]) revert NotOperator(msg.sender);
        _;
    }

    // ------------------------------------------------------------------ proposals

    /// @notice Proposes a deal; emits `DealProposalCreate` (for Boost) and `DealProposalOffered`.
    ///         Refuses, with a specific error and no event, what the market or Boost would refuse
    ///         later: a piece that is not one, a label that is not a CID's text, epochs or a
    ///         duration outside the policy, provider collateral below the policy's minimum, more
    ///         replicas than allowed, a CAR that does not fit the piece, and a client balance
    ///         requirement the free market escrow does not cover.
    /// @return id The proposal's id (the `DealProposalCreate` topic).
    function makeDealProposal(DealRequest calldata r) external onlyOwnerOrOperator returns (bytes32 id) {
        check(r);
        uint16 replicas = r.replicas == 0 ? 1 : r.replicas;
        uint256 need = requirement(r) * replicas;
        if (need != 0) {
            (uint256 balance, uint256 locked) =
                MarketActor.getBalance(FilAddress.delegatedAddress(address(this)));
            uint256 free = balance - locked > reservedEscrow ? balance - locked - reservedEscrow : 0;
            if (need > free) revert DealClientEscrowTooLow(need, free);
        }
        bytes32 key = keccak256(abi.encode(termsKey(r), r.provider));
        bytes32 existing = proposalByKey[key];
        if (existing != bytes32(0) && !proposals[existing].cancelled) revert DealClientDuplicate(existing);
        id = keccak256(abi.encode(address(this), ++proposalCount));
        proposalByKey[key] = id;
        Proposal storage p = proposals[id];
        p.request = r;
        p.request.replicas = replicas;
        p.proposer = msg.sender;
        p.number = uint64(proposalCount);
        reservedEscrow += need;
        emit DealProposalCreate(id, r.pieceSize, r.verifiedDeal, r.storagePricePerEpoch);
        emit DealProposalOffered(id, r.provider, r.pieceCid, r.pieceSize, r.startEpoch, r.endEpoch, replicas);
    }

    function check(DealRequest calldata r) internal view {
        if (!CidLib.isPieceCid(r.pieceCid)) revert DealClientBadPieceCid();
        if (!CidLib.isPaddedSize(r.pieceSize)) revert DealClientBadPieceSize(r.pieceSize);
        bytes memory label = bytes(r.label);
        if (label.length > MAX_LABEL_LENGTH || !codec.isCidText(label)) revert DealClientBadLabel();
        DealPolicy memory pol = dealPolicy;
        int64 now_ = int64(uint64(block.number));
        if (r.startEpoch < now_ + pol.minStartDelay) {
            revert DealClientBadStart(r.startEpoch, now_ + pol.minStartDelay);
        }
        int64 duration = r.endEpoch - r.startEpoch;
        if (duration < pol.minDuration || duration > pol.maxDuration) {
            revert DealClientBadDuration(duration, pol.minDuration, pol.maxDuration);
        }
        if (r.endEpoch > now_ + pol.maxEndDelay) revert DealClientBadEnd(r.endEpoch, now_ + pol.maxEndDelay);
        uint256 minCollateral = uint256(r.pieceSize) * pol.minProviderCollateralPerByte;
        if (r.providerCollateral < minCollateral) {
            revert DealClientCollateralTooLow(r.providerCollateral, minCollateral);
        }
        if (
            r.storagePricePerEpoch > TOTAL_FILECOIN || r.providerCollateral > TOTAL_FILECOIN
                || r.clientCollateral > TOTAL_FILECOIN
        ) revert DealClientAmountTooLarge();
        if (r.provider != 0 ? r.replicas > 1 : r.replicas > MAX_REPLICAS) {
            revert DealClientBadReplicas(r.replicas);
        }
        uint256 location = bytes(r.locationRef).length;
        if (location == 0 || location > MAX_LOCATION_LENGTH) revert DealClientBadLocation();
        // The CAR, Fr32-padded, must fit the piece: car * 128 / 127 <= pieceSize.
        if (r.carSize == 0 || uint256(r.carSize) * 128 > uint256(r.pieceSize) * 127) {
            revert DealClientBadCarSize(r.carSize, r.pieceSize);
        }
    }

    /// @notice Withdraws a proposal: no more deals for it. The owner or an operator may at any
    ///         time; anyone once its start epoch has passed (it can no longer be published).
    ///         Frees the escrow promised to its open replicas.
    function cancelDealProposal(bytes32 id) external {
        Proposal storage p = known(id);
        bool authorized = msg.sender == owner() || isOperator[msg.sender];
        if (p.cancelled || (!authorized && int256(block.number) <= p.request.startEpoch)) {
            revert DealClientNotCancellable(id);
        }
        p.cancelled = true;
        reservedEscrow -= requirement(p.request) * (p.request.replicas - p.published);
        emit DealProposalCancelled(id);
    }

    /// @notice FRC-0068: the CBOR `DealProposal` of a proposal (provider: the named one, or
    ///         f0 0 when any may take it; Boost replaces it with its own).
    function getDealProposal(bytes32 id) external view returns (bytes memory) {
        return
            codec.encodeProposal(terms(known(id).request, FilAddress.idAddress(known(id).request.provider)));
    }

    /// @notice FRC-0068 / Boost: the CBOR extra parameters (version 1) of a proposal.
    function getExtraParams(bytes32 id) external view returns (bytes memory) {
        DealRequest storage r = known(id).request;
        return codec.extraParams(bytes(r.locationRef), r.carSize, r.skipIpniAnnounce, r.removeUnsealedCopy);
    }

    /// @notice A proposal: its request, proposer, whether cancelled, and the deals made for it.
    function getProposal(bytes32 id) external view returns (ProposalView memory v) {
        Proposal storage p = known(id);
        v.request = p.request;
        v.proposer = p.proposer;
        v.cancelled = p.cancelled;
        v.deals = records[id];
    }

    /// @notice A proposal's number (1, 2, …, in the order made): the deal ID Curio's `mk20`
    ///         market takes (`ddo_v1.market_deal_id`, a uint64) and passes to `verifyDeal` and
    ///         `getDealState`. A proposal's id is `keccak256(abi.encode(this, number))`.
    function proposalNumber(bytes32 id) external view returns (uint64) {
        return known(id).number;
    }

    /// @notice The CBOR `DealProposal` for a request with a given provider (`f0` ID).
    function encodeProposal(DealRequest memory r) external view returns (bytes memory) {
        return codec.encodeProposal(terms(r, FilAddress.idAddress(r.provider)));
    }

    function terms(DealRequest memory r, bytes memory provider)
        internal
        view
        returns (DealProposal.Fields memory f)
    {
        f.pieceCid = r.pieceCid;
        f.pieceSize = r.pieceSize;
        f.verified = r.verifiedDeal;
        f.client = FilAddress.delegatedAddress(address(this));
        f.provider = provider;
        f.label = bytes(r.label);
        f.labelIsText = true;
        f.start = r.startEpoch;
        f.end = r.endEpoch;
        f.price = r.storagePricePerEpoch;
        f.providerCollateral = r.providerCollateral;
        f.clientCollateral = r.clientCollateral;
    }

    // ------------------------------------------------------------------ actors' calls

    /// @notice FRC-0042 entry point for calls from built-in actors: AuthenticateMessage and
    ///         MarketNotifyDeal from the market, SectorContentChanged from a miner, the DataCap
    ///         receiver hook from the DataCap actor.
    function handle_filecoin_method(uint64 method, uint64, bytes calldata params)
        external
        returns (uint32 exitCode, uint64 retCodec, bytes memory ret)
    {
        if (method == MarketActor.AUTHENTICATE_MESSAGE) {
            // Sent read-only: no event, no state write, or the market drops the deal.
            if (msg.sender != MarketActor.ETH_ADDRESS) revert DealClientNotMarket(msg.sender);
            matchProposal(params, false);
            return (0, MarketActor.CODEC_CBOR, Cbor.encodeBool(true));
        }
        if (method == MarketActor.MARKET_NOTIFY_DEAL) {
            if (msg.sender != MarketActor.ETH_ADDRESS) revert DealClientNotMarket(msg.sender);
            (bytes32 id, uint64 provider, uint64 dealId) = matchProposal(params, true);
            record(id, provider, dealId, -1, 0);
            proposalOfDeal[dealId] = id;
            emit DealPublished(id, dealId, provider);
            return (0, MarketActor.CODEC_NONE, "");
        }
        if (method == MarketActor.SECTOR_CONTENT_CHANGED) {
            (bool isActor, uint64 miner) = FilAddress.idOfMasked(msg.sender);
            if (!isActor) revert DealClientNotMiner(msg.sender);
            return (0, MarketActor.CODEC_CBOR, sectorContentChanged(miner, params));
        }
        if (method == MarketActor.DATACAP_RECEIVER_HOOK) {
            if (msg.sender != DATACAP_ACTOR) revert DealClientNotDataCap(msg.sender);
            bytes memory p = params;
            (uint64 n, uint256 i) = Cbor.readArray(p, 0);
            if (n != 2) revert DealClientBadParams();
            uint64 tokenType;
            (tokenType, i) = Cbor.readUint(p, i);
            if (tokenType != FRC46_TOKEN_TYPE) revert DealClientBadParams();
            (bytes memory payload,) = Cbor.readBytes(p, i);
            emit DataCapReceived(payload);
            return (0, MarketActor.CODEC_NONE, "");
        }
        revert DealClientUnsupportedMethod(method);
    }

    /// @dev The open proposal a serialized `DealProposal` stands for: the exact terms offered,
    ///      with the named provider (or any when none was named), a replica left, and no deal
    ///      yet from this provider.
    function matchProposal(bytes calldata params, bool notify)
        internal
        view
        returns (bytes32 id, uint64 provider, uint64 dealId)
    {
        (bytes memory providerAddr,, uint64 deal, bytes32 base) = codec.readCallback(params, notify);
        bool ok;
        (ok, provider) = FilAddress.parseIdAddress(providerAddr);
        if (!ok) revert DealClientBadProvider(providerAddr);
        id = proposalByKey[keccak256(abi.encode(base, provider))];
        if (id == bytes32(0)) id = proposalByKey[keccak256(abi.encode(base, uint64(0)))];
        if (id == bytes32(0)) revert DealClientNotOffered(base, provider);
        open(id, provider);
        dealId = deal;
    }

    function open(bytes32 id, uint64 provider) internal view {
        Proposal storage p = proposals[id];
        if (p.cancelled) revert DealClientProposalClosed(id);
        if (p.published >= p.request.replicas) revert DealClientReplicasFilled(id);
        if (recordOf[id][provider] != 0) revert DealClientAlreadyPublished(id, provider);
    }

    function record(bytes32 id, uint64 provider, uint64 dealId, int64 activated, uint64 sector) internal {
        Proposal storage p = proposals[id];
        records[id].push(DealRecord(provider, dealId, activated, sector));
        recordOf[id][provider] = records[id].length;
        p.published += 1;
        reservedEscrow -= requirement(p.request);
    }

    /// @dev SectorContentChanged (builtin-actors `actors/miner/src/notifications.rs`):
    ///      `[[sector, minimum_commitment_epoch, [[piece CID, size, payload]]]]`, answered with
    ///      `[[accepted]]`. A payload is either a CBOR market deal ID (a deal published here) or
    ///      the 32-byte proposal id (a deal made without the market, e.g. Curio DDO; accepted only
    ///      when `DealPolicy.acceptDirect`).
    function sectorContentChanged(uint64 miner, bytes calldata params) internal returns (bytes memory) {
        DealCodec.PieceChanges memory c = codec.decodeSectorChanges(params);
        bool[] memory accepted = new bool[](c.data.length);
        for (uint256 k; k < accepted.length; ++k) {
            accepted[k] = activatePiece(miner, c, k);
        }
        return codec.encodeAccepted(c.perSector, accepted);
    }

    function activatePiece(uint64 miner, DealCodec.PieceChanges memory c, uint256 k) internal returns (bool) {
        bytes memory payload = c.payload[k];
        int64 now_ = int64(uint64(block.number));
        if (payload.length == 32) {
            bytes32 id = bytes32(payload);
            Proposal storage p = proposals[id];
            DealRequest storage r = p.request;
            if (p.proposer == address(0) || p.cancelled || p.published >= r.replicas) return false;
            if (!dealPolicy.acceptDirect) return false;
            if ((r.provider != 0 && r.provider != miner) || recordOf[id][miner] != 0) return false;
            if (!samePiece(r, c, k) || now_ > r.startEpoch || c.commitment[k] < r.endEpoch) return false;
            // Only a miner actor holds a sector (an account actor can send this method too, and
            // may have the ID a proposal names); a miner answers GetOwner with its owner.
            if (!MinerActor.isMiner(miner)) return false;
            record(id, miner, NO_DEAL, now_, c.sector[k]);
            emit DealActivated(id, miner, NO_DEAL, c.sector[k]);
            return true;
        }
        if (payload.length == 0 || uint8(payload[0]) >> 5 != 0 || payload.length > 9) return false;
        (uint64 dealId, uint256 end) = Cbor.readUint(payload, 0);
        bytes32 pid = proposalOfDeal[dealId];
        if (end != payload.length || pid == bytes32(0)) return false;
        uint256 index = recordOf[pid][miner];
        if (index == 0) return false;
        DealRecord storage d = records[pid][index - 1];
        if (d.dealId != dealId || d.activated >= 0 || !samePiece(proposals[pid].request, c, k)) return false;
        d.activated = now_;
        d.sector = c.sector[k];
        emit DealActivated(pid, miner, dealId, c.sector[k]);
        return true;
    }

    function samePiece(DealRequest storage r, DealCodec.PieceChanges memory c, uint256 k)
        internal
        view
        returns (bool)
    {
        return c.size[k] == r.pieceSize && keccak256(c.data[k]) == keccak256(r.pieceCid);
    }

    // ------------------------------------------------------------------ Curio (mk20 DDO)

    /// @notice Curio's deal states (`ICurioDealViewV1.DealState`).
    enum CurioDealState {
        Open,
        Active,
        Finalized
    }

    /// @notice What Curio sends `verifyDeal` (`ICurioDealViewV1.CurioDealView`).
    struct CurioDealView {
        uint256 dealId;
        CurioDealState state;
        uint256 providerActorId;
        bytes clientId;
        bytes pieceCidV2;
        uint256 startEpoch;
        uint256 duration;
        uint256 allocationId;
        uint256 finalizedEpoch;
    }

    /// @notice Curio's contract-deal interface version.
    function version() external pure returns (uint256) {
        return 1;
    }

    /// @notice Curio's check before it accepts a DDO deal naming this contract as its market
    ///         (curio `market/mk20/ddo_v1.go`, `VerifyMarketDeal`: after `version()` is 1, an
    ///         `eth_call` with the deal's `market_deal_id` as `dealId`): `dealId` is a proposal's
    ///         number (`proposalNumber`), or its whole id; true when the policy accepts direct
    ///         deals (`DealPolicy.acceptDirect`) and the proposal is open to this provider with
    ///         this piece (piece CID v2 from the piece CID, size and CAR size), start epoch (0:
    ///         any), duration, no verified allocation and state Open. The client address is not
    ///         checked: a DDO deal moves no FIL from this contract, and whoever hands Curio the
    ///         deal, its sealing stores the data this contract asked for.
    function verifyDeal(CurioDealView calldata deal) external view returns (bool) {
        bytes32 id = curioProposal(deal.dealId);
        Proposal storage p = proposals[id];
        if (p.proposer == address(0)) revert DealNotFound(deal.dealId);
        DealRequest storage r = p.request;
        if (p.cancelled || p.published >= r.replicas || int256(block.number) > r.startEpoch) return false;
        if (!dealPolicy.acceptDirect) return false;
        if (deal.state != CurioDealState.Open || deal.finalizedEpoch != 0 || deal.allocationId != 0) {
            return false;
        }
        if (deal.providerActorId > type(uint64).max) return false;
        uint64 provider = uint64(deal.providerActorId);
        if ((r.provider != 0 && r.provider != provider) || recordOf[id][provider] != 0) return false;
        if (deal.startEpoch != 0 && deal.startEpoch != uint256(uint64(r.startEpoch))) return false;
        if (deal.duration != uint256(uint64(r.endEpoch - r.startEpoch))) return false;
        if (r.carSize < 127) return false;
        return keccak256(deal.pieceCidV2) == keccak256(codec.pieceCidV2(r.pieceCid, r.carSize));
    }

    /// @notice Curio's housekeeping view of a proposal (`dealId` as in `verifyDeal`): Finalized
    ///         once cancelled or past its end epoch, Active once a deal for it was reported
    ///         proven, else Open.
    function getDealState(uint256 dealId) external view returns (CurioDealState) {
        bytes32 id = curioProposal(dealId);
        Proposal storage p = proposals[id];
        if (p.proposer == address(0)) revert DealNotFound(dealId);
        if (p.cancelled || int256(block.number) >= p.request.endEpoch) return CurioDealState.Finalized;
        DealRecord[] storage ds = records[id];
        for (uint256 k; k < ds.length; ++k) {
            if (ds[k].activated >= 0) return CurioDealState.Active;
        }
        return CurioDealState.Open;
    }

    /// @dev The proposal Curio names by `dealId`: a proposal's number (Curio's `market_deal_id`
    ///      is a uint64) when it is one made so far, else the proposal id itself.
    function curioProposal(uint256 dealId) internal view returns (bytes32) {
        if (dealId != 0 && dealId <= proposalCount) return keccak256(abi.encode(address(this), dealId));
        return bytes32(dealId);
    }

    // ------------------------------------------------------------------ owner

    /// @notice Sets the check policy.
    function setDealPolicy(DealPolicy calldata policy_) external onlyOwner {
        setPolicy(policy_);
    }

    function setPolicy(DealPolicy memory p) internal {
        if (p.minDuration <= 0 || p.maxDuration < p.minDuration || p.minStartDelay < 0 || p.maxEndDelay <= 0)
        {
            revert DealClientBadPolicy();
        }
        dealPolicy = p;
        emit DealPolicySet(p);
    }

    /// @notice Escrows `amount` of this contract's balance in the market to pay for its deals.
    function addMarketBalance(uint256 amount) external onlyOwner {
        MarketActor.addBalance(FilAddress.delegatedAddress(address(this)), amount);
        emit MarketBalanceAdded(amount);
    }

    /// @notice Takes up to `amount` of free escrow back from the market (WithdrawBalance): the
    ///         market sends it to this contract. Escrow promised to open replicas stays.
    function withdrawMarketBalance(uint256 amount) external onlyOwner returns (uint256 withdrawn) {
        bytes memory self = FilAddress.delegatedAddress(address(this));
        (uint256 balance, uint256 locked) = MarketActor.getBalance(self);
        uint256 free = balance - locked > reservedEscrow ? balance - locked - reservedEscrow : 0;
        if (amount > free) revert DealClientEscrowReserved(amount, free);
        withdrawn = MarketActor.withdrawBalance(self, amount);
        emit MarketBalanceWithdrawn(amount, withdrawn);
    }

    /// @notice Sends `amount` of this contract's balance to `to`.
    function withdraw(address payable to, uint256 amount) external onlyOwner {
        emit Withdrawn(to, amount);
        (bool ok,) = to.call{value: amount}("");
        if (!ok) revert DealClientTransferFailed();
    }

    // ------------------------------------------------------------------ internals

    function known(bytes32 id) internal view returns (Proposal storage p) {
        p = proposals[id];
        if (p.proposer == address(0)) revert DealClientUnknownProposal(id);
    }

    /// @dev The market's client balance requirement of one deal: collateral plus total price.
    function requirement(DealRequest memory r) internal pure returns (uint256) {
        return r.clientCollateral + r.storagePricePerEpoch * uint64(r.endEpoch - r.startEpoch);
    }

    function termsKey(DealRequest calldata r) internal pure returns (bytes32) {
        bytes32 what = keccak256(abi.encode(r.pieceCid, r.pieceSize, r.verifiedDeal, bytes(r.label), true));
        return keccak256(
            abi.encode(
                what,
                r.startEpoch,
                r.endEpoch,
                r.storagePricePerEpoch,
                r.providerCollateral,
                r.clientCollateral
            )
        );
    }
}
