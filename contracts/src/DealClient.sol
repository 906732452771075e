// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {Cbor} from "./lib/Cbor.sol";
import {CidLib} from "./lib/CidLib.sol";
import {FilAddress} from "./lib/FilAddress.sol";
import {MarketActor} from "./lib/MarketActor.sol";
import {Operated} from "./lib/Operated.sol";

/// @title DealClient
/// @notice Filecoin deals made by a contract (FRC-0068), in the shape Boost's contract-deal
///         monitor reads: `DealProposalCreate` announces a proposal, `getDealProposal` returns its
///         CBOR `DealProposal` (label = the payload CID as a string) and `getExtraParams` the CBOR
///         `[location_ref, car_size, skip_ipni_announce, remove_unsealed_copy]`. When a provider
///         publishes the deal, the market actor calls `handle_filecoin_method`: AuthenticateMessage
///         is answered only for the market actor and only for a proposal made here with the same
///         piece, size and epochs; MarketNotifyDeal records the deal. The Estuary oracle
///         (an operator) makes the proposals.
contract DealClient is Operated {
    /// @notice The DataCap actor's masked ID address (f07): the caller of the receiver hook.
    address internal constant DATACAP_ACTOR = address((uint160(0xff) << 152) | 7);
    /// @notice FRC-0046 token receiver type the DataCap actor sends.
    uint32 internal constant FRC46_TOKEN_TYPE = 2233613279;

    /// @notice A deal to propose.
    struct DealRequest {
        /// Binary v1 piece CID.
        bytes pieceCid;
        /// Padded piece size.
        uint64 pieceSize;
        /// Whether the deal uses DataCap.
        bool verifiedDeal;
        /// The payload's root CID, as a string (Boost reads it from the label).
        string label;
        int64 startEpoch;
        int64 endEpoch;
        uint256 storagePricePerEpoch;
        uint256 providerCollateral;
        uint256 clientCollateral;
        /// The only provider that may take the deal (0: any).
        uint64 provider;
        /// Where the provider downloads the CAR (URL).
        string locationRef;
        /// Size of the CAR in bytes.
        uint64 carSize;
        bool skipIpniAnnounce;
        bool removeUnsealedCopy;
    }

    enum Status {
        None,
        Proposed,
        Published
    }

    struct Proposal {
        DealRequest request;
        Status status;
        uint64 dealId;
        uint64 provider;
    }

    mapping(bytes32 id => Proposal) internal proposals;
    /// @notice Proposal by (piece, size, start, end): what AuthenticateMessage matches on.
    mapping(bytes32 key => bytes32 id) public proposalByTerms;
    /// @notice Proposals made so far.
    uint256 public proposalCount;

    /// @notice FRC-0068: a proposal for Boost to pick up.
    event DealProposalCreate(bytes32 indexed id, uint64 size, bool indexed verified, uint256 price);
    /// @notice The market published the deal for a proposal.
    event DealPublished(bytes32 indexed id, uint64 dealId, uint64 provider);
    /// @notice The market authenticated a proposal with this contract.
    event DealAuthenticated(bytes32 indexed id, uint64 provider);
    /// @notice DataCap arrived through the FRC-0046 receiver hook.
    event DataCapReceived(bytes payload);
    /// @notice Escrow was added to the market for this contract.
    event MarketBalanceAdded(uint256 amount);

    error DealClientBadRequest(string field);
    error DealClientDuplicate(bytes32 id);
    error DealClientUnknownProposal(bytes32 id);
    error DealClientNotMarket(address caller);
    error DealClientNotDataCap(address caller);
    error DealClientUnsupportedMethod(uint64 method);
    error DealClientProposalMismatch(string field);
    error DealClientAlreadyPublished(bytes32 id);

    constructor(address owner_) Operated(owner_) {}

    receive() external payable {}

    // ------------------------------------------------------------------ proposals

    /// @notice Proposes a deal; emits `DealProposalCreate` for storage providers.
    function makeDealProposal(DealRequest calldata r) external returns (bytes32 id) {
        if (msg.sender != owner() && !isOperator[msg.sender]) revert NotOperator(msg.sender);
        if (!CidLib.isPieceCid(r.pieceCid)) revert DealClientBadRequest("pieceCid");
        if (!CidLib.isPaddedSize(r.pieceSize)) revert DealClientBadRequest("pieceSize");
        if (bytes(r.label).length == 0 || bytes(r.label).length > 256) revert DealClientBadRequest("label");
        if (r.startEpoch < 0 || r.endEpoch <= r.startEpoch) revert DealClientBadRequest("epochs");
        if (bytes(r.locationRef).length == 0) revert DealClientBadRequest("locationRef");
        bytes32 key = termsKey(r.pieceCid, r.pieceSize, r.startEpoch, r.endEpoch);
        if (proposalByTerms[key] != bytes32(0)) revert DealClientDuplicate(proposalByTerms[key]);
        id = keccak256(abi.encode(address(this), ++proposalCount));
        proposalByTerms[key] = id;
        Proposal storage p = proposals[id];
        p.request = r;
        p.status = Status.Proposed;
        emit DealProposalCreate(id, r.pieceSize, r.verifiedDeal, r.storagePricePerEpoch);
    }

    /// @notice FRC-0068: the CBOR DealProposal of a proposal.
    function getDealProposal(bytes32 id) external view returns (bytes memory) {
        return encodeProposal(known(id).request);
    }

    /// @notice FRC-0068 / Boost: the CBOR extra parameters (version 1) of a proposal.
    function getExtraParams(bytes32 id) external view returns (bytes memory) {
        DealRequest storage r = known(id).request;
        return bytes.concat(
            Cbor.encodeArray(4),
            Cbor.encodeText(bytes(r.locationRef)),
            Cbor.encodeUint(r.carSize),
            Cbor.encodeBool(r.skipIpniAnnounce),
            Cbor.encodeBool(r.removeUnsealedCopy)
        );
    }

    /// @notice A proposal's request, status, and once published its deal and provider.
    function getProposal(bytes32 id) external view returns (Proposal memory) {
        return known(id);
    }

    /// @notice The CBOR DealProposal (the market's field order) for a request.
    function encodeProposal(DealRequest memory r) public view returns (bytes memory out) {
        out = bytes.concat(Cbor.encodeArray(11), Cbor.encodeCid(r.pieceCid), Cbor.encodeUint(r.pieceSize));
        out = bytes.concat(out, Cbor.encodeBool(r.verifiedDeal));
        out = bytes.concat(out, Cbor.encodeBytes(FilAddress.delegatedAddress(address(this))));
        out = bytes.concat(out, Cbor.encodeBytes(FilAddress.idAddress(r.provider)));
        out = bytes.concat(out, Cbor.encodeText(bytes(r.label)));
        out = bytes.concat(out, Cbor.encodeInt(r.startEpoch), Cbor.encodeInt(r.endEpoch));
        out = bytes.concat(out, Cbor.encodeBigUint(r.storagePricePerEpoch));
        out = bytes.concat(
            out, Cbor.encodeBigUint(r.providerCollateral), Cbor.encodeBigUint(r.clientCollateral)
        );
    }

    // ------------------------------------------------------------------ the market's calls

    /// @notice FRC-0042 entry point for calls from built-in actors.
    function handle_filecoin_method(uint64 method, uint64, bytes calldata params)
        external
        returns (uint32 exitCode, uint64 retCodec, bytes memory ret)
    {
        if (method == MarketActor.AUTHENTICATE_MESSAGE) {
            if (msg.sender != MarketActor.ETH_ADDRESS) revert DealClientNotMarket(msg.sender);
            (uint64 n, uint256 i) = Cbor.readArray(params, 0);
            if (n != 2) revert DealClientProposalMismatch("params");
            i = Cbor.skip(params, i); // signature: the market vouches for the caller
            (bytes memory message,) = Cbor.readBytes(params, i);
            (bytes32 id, uint64 provider) = matchProposal(message);
            emit DealAuthenticated(id, provider);
            return (0, MarketActor.CODEC_CBOR, Cbor.encodeBool(true));
        }
        if (method == MarketActor.MARKET_NOTIFY_DEAL) {
            if (msg.sender != MarketActor.ETH_ADDRESS) revert DealClientNotMarket(msg.sender);
            (uint64 n, uint256 i) = Cbor.readArray(params, 0);
            if (n != 2) revert DealClientProposalMismatch("params");
            bytes memory message;
            (message, i) = Cbor.readBytes(params, i);
            (uint64 dealId,) = Cbor.readUint(params, i);
            (bytes32 id, uint64 provider) = matchProposal(message);
            Proposal storage p = proposals[id];
            p.status = Status.Published;
            p.dealId = dealId;
            p.provider = provider;
            emit DealPublished(id, dealId, provider);
            return (0, MarketActor.CODEC_NONE, "");
        }
        if (method == MarketActor.DATACAP_RECEIVER_HOOK) {
            if (msg.sender != DATACAP_ACTOR) revert DealClientNotDataCap(msg.sender);
            (uint64 n, uint256 i) = Cbor.readArray(params, 0);
            if (n != 2) revert DealClientProposalMismatch("params");
            uint64 tokenType;
            (tokenType, i) = Cbor.readUint(params, i);
            if (tokenType != FRC46_TOKEN_TYPE) revert DealClientProposalMismatch("token type");
            (bytes memory payload,) = Cbor.readBytes(params, i);
            emit DataCapReceived(payload);
            return (0, MarketActor.CODEC_NONE, "");
        }
        revert DealClientUnsupportedMethod(method);
    }

    /// @dev The fields of a serialized DealProposal that `matchProposal` checks.
    struct Terms {
        bytes pieceCid;
        uint64 size;
        bool verified;
        bytes client;
        bytes provider;
        int64 start;
        int64 end;
    }

    function decodeTerms(bytes memory m) internal pure returns (Terms memory t) {
        (uint64 n, uint256 i) = Cbor.readArray(m, 0);
        if (n != 11) revert DealClientProposalMismatch("proposal");
        (t.pieceCid, i) = Cbor.readCid(m, i);
        (t.size, i) = Cbor.readUint(m, i);
        (t.verified, i) = Cbor.readBool(m, i);
        (t.client, i) = Cbor.readBytes(m, i);
        (t.provider, i) = Cbor.readBytes(m, i);
        i = Cbor.skip(m, i); // label
        (t.start, i) = Cbor.readInt(m, i);
        (t.end,) = Cbor.readInt(m, i);
    }

    /// @dev Finds the unpublished proposal a serialized DealProposal stands for, checking piece,
    ///      size, epochs (through the key), verified flag, client and provider.
    function matchProposal(bytes memory m) internal view returns (bytes32 id, uint64 provider) {
        Terms memory t = decodeTerms(m);
        id = proposalByTerms[termsKey(t.pieceCid, t.size, t.start, t.end)];
        if (id == bytes32(0)) revert DealClientProposalMismatch("terms");
        Proposal storage p = proposals[id];
        if (p.status != Status.Proposed) revert DealClientAlreadyPublished(id);
        if (t.verified != p.request.verifiedDeal) revert DealClientProposalMismatch("verified");
        if (keccak256(t.client) != keccak256(FilAddress.delegatedAddress(address(this)))) {
            revert DealClientProposalMismatch("client");
        }
        bool ok;
        (ok, provider) = FilAddress.parseIdAddress(t.provider);
        if (!ok || (p.request.provider != 0 && provider != p.request.provider)) {
            revert DealClientProposalMismatch("provider");
        }
    }

    // ------------------------------------------------------------------ owner

    /// @notice Escrows `amount` of this contract's balance in the market to pay for its deals.
    function addMarketBalance(uint256 amount) external onlyOwner {
        MarketActor.addBalance(FilAddress.delegatedAddress(address(this)), amount);
        emit MarketBalanceAdded(amount);
    }

    function known(bytes32 id) internal view returns (Proposal storage p) {
        p = proposals[id];
        if (p.status == Status.None) revert DealClientUnknownProposal(id);
    }

    function termsKey(bytes memory pieceCid, uint64 size, int64 start, int64 end)
        internal
        pure
        returns (bytes32)
    {
        return keccak256(abi.encode(pieceCid, size, start, end));
    }
}
