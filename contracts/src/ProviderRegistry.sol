// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {MinerActor} from "./lib/MinerActor.sol";

/// @title ProviderRegistry
/// @notice Where storage providers publish their HTTP retrieval endpoint, by miner: the oracle
///         probes each replica at `{url}/piece/{pieceCid}` and `{url}/ipfs/{cid}`, and reads
///         here the URL of every miner holding one (`urlsOf`), besides those its operator
///         configured. A miner's owner, worker or control address sets it (`setUrl`), as the
///         miner actor answers IsControllingAddressExported (builtin-actors
///         `actors/miner/src/lib.rs` `is_controlling_address`); the same rule as for claiming a
///         `PerpetualStorage` slot. Filecoin Onchain Cloud's ServiceProviderRegistry (FilOzone
///         `filecoin-services`, `service_contracts/src/ServiceProviderRegistry.sol`) does the
///         same for PDP providers, with more fields; this keeps one URL per miner.
///         Permissionless: no owner, no operator, holds no value.
/// @dev A URL is at most `MAX_URL_LENGTH` bytes, begins with `http://` or `https://`
///      (lowercase), has at least one byte after the scheme, and is printable ASCII only
///      (0x21..0x7e: no space, control character or non-ASCII byte). Nothing else is checked
///      (host syntax, reachability): the oracle treats the URL as the provider's word and judges
///      the provider by what it serves there. A URL that passes here is safe to print and to put
///      in a log line or an HTTP request line as it is.
///      Setting the URL already stored is allowed and emits `ProviderUrlSet` again (a provider
///      may re-announce), as is removing one that is not set: every accepted `setUrl` emits.
///      A URL stays when the address that set it stops controlling the miner, until a
///      controlling address replaces or removes it. The actor is taken for a miner on its answer
///      alone: an EVM contract could answer IsControllingAddressExported for its own ID (its
///      `handle_filecoin_method`) and so write an entry for that ID, which names no deal's
///      provider; readers ask for the miners their deals name.
contract ProviderRegistry {
    /// @notice Most bytes of a URL.
    uint256 public constant MAX_URL_LENGTH = 256;
    /// @notice Most providers asked in one `urlsOf` call.
    uint256 public constant MAX_BATCH = 256;
    /// @dev 0x01 in each of 32 bytes, and 0x80 in each (`badBytes`).
    uint256 private constant ONES = 0x0101010101010101010101010101010101010101010101010101010101010101;
    uint256 private constant HIGH = 0x8080808080808080808080808080808080808080808080808080808080808080;

    /// @notice The retrieval URL of each miner, by actor ID ("": none).
    mapping(uint64 provider => string) internal urls;

    /// @notice Miner `provider`'s URL was set to `url` by its controlling address `by`; an empty
    ///         `url` means it was removed.
    /// @param provider The miner's actor ID (1000 for f01000).
    /// @param by The controlling address that sent `setUrl`.
    /// @param url The new URL, or "" when removed.
    event ProviderUrlSet(uint64 indexed provider, address indexed by, string url);

    /// @notice The caller is not the owner, worker or a control address of miner `provider`, or
    ///         `provider` is not a miner actor (no such actor, or one that does not answer
    ///         IsControllingAddressExported).
    /// @param provider The miner's actor ID.
    /// @param caller The refused caller.
    error ProviderRegistryNotController(uint64 provider, address caller);
    /// @notice The URL is refused.
    /// @param provider The miner's actor ID.
    /// @param position The URL's length when it is too long (more than `MAX_URL_LENGTH`
    ///        bytes), does not begin with `http://` or `https://`, or has nothing after the
    ///        scheme; otherwise the index of the first byte outside 0x21..0x7e.
    error ProviderRegistryBadUrl(uint64 provider, uint256 position);
    /// @notice More providers asked about than `MAX_BATCH`.
    /// @param count The number asked about.
    /// @param max `MAX_BATCH`.
    error ProviderRegistryTooMany(uint256 count, uint256 max);

    /// @notice Sets (or, with "", removes) miner `provider`'s retrieval URL. The caller must be
    ///         the miner's owner, worker or a control address (an EVM account or contract the
    ///         miner resolves to one of them); the URL is checked first (see the contract's
    ///         rules), then the miner is asked, then the URL stored.
    /// @param provider The miner's actor ID (1000 for f01000).
    /// @param url The base URL the provider serves `/piece/{pieceCid}` and `/ipfs/{cid}` under,
    ///        e.g. `https://sp.example:8443`; "" removes the entry.
    // The one external call asks the miner actor IsControllingAddress with the READ_ONLY flag
    // through the precompile: the callee cannot change any state, so cannot re-enter; the
    // writes follow it because they depend on its answer.
    // slither-disable-next-line reentrancy-benign,reentrancy-events
    function setUrl(uint64 provider, string calldata url) external {
        bytes calldata b = bytes(url);
        if (b.length != 0) {
            uint256 bad = firstBadByte(b);
            if (bad != type(uint256).max) revert ProviderRegistryBadUrl(provider, bad);
        }
        (, bool controlling) = MinerActor.isControllingAddress(provider, msg.sender);
        if (!controlling) revert ProviderRegistryNotController(provider, msg.sender);

        if (b.length == 0) delete urls[provider];
        else urls[provider] = url;
        emit ProviderUrlSet(provider, msg.sender, url);
    }

    /// @notice Miner `provider`'s retrieval URL.
    /// @param provider The miner's actor ID.
    /// @return The URL, or "" when none is set.
    function urlOf(uint64 provider) external view returns (string memory) {
        return urls[provider];
    }

    /// @notice The retrieval URLs of many miners, in one call.
    /// @param providers At most `MAX_BATCH` miner actor IDs (repeats are answered again).
    /// @return out One per provider, in the same order: its URL, or "" when none is set.
    function urlsOf(uint64[] calldata providers) external view returns (string[] memory out) {
        if (providers.length > MAX_BATCH) revert ProviderRegistryTooMany(providers.length, MAX_BATCH);
        out = new string[](providers.length);
        for (uint256 k; k < providers.length; ++k) {
            out[k] = urls[providers[k]];
        }
    }

    /// @notice Where a non-empty URL is refused (`ProviderRegistryBadUrl`'s `position`), or
    ///         `type(uint256).max` when it is accepted.
    /// @dev The bytes after the scheme are checked 32 at a time (`badBytes`); the scan for the
    ///      first bad byte runs only in a word that has one.
    function firstBadByte(bytes calldata b) internal pure returns (uint256) {
        uint256 n = b.length;
        if (n > MAX_URL_LENGTH) return n;
        uint256 start;
        if (n > 7 && bytes7(b[:7]) == "http://") start = 7;
        else if (n > 8 && bytes8(b[:8]) == "https://") start = 8;
        else return n;
        unchecked {
            for (uint256 i = start; i < n; i += 32) {
                uint256 word;
                assembly ("memory-safe") {
                    word := calldataload(add(b.offset, i))
                }
                uint256 bad = badBytes(word);
                // The last word may reach past the URL's end: keep its first `n - i` bytes.
                if (n - i < 32) bad &= ~(type(uint256).max >> ((n - i) * 8));
                if (bad != 0) {
                    uint256 j;
                    while (bad >> (248 - 8 * j) == 0) ++j;
                    return i + j;
                }
            }
        }
        return type(uint256).max;
    }

    /// @notice The bytes of `word` outside 0x21..0x7e, each marked by 0x80 in its place (the
    ///         others 0). Per byte `c` at once (SWAR): `c >= 0x80` is its high bit; with the high
    ///         bits cleared (`low`, each byte at most 0x7f), `low + 0x5f` has its high bit unset
    ///         when `low < 0x21`, and `low + 0x01` set when `low == 0x7f`; neither sum carries
    ///         into the next byte.
    function badBytes(uint256 word) internal pure returns (uint256) {
        unchecked {
            uint256 low = word & (ONES * 0x7f);
            return (word | ~(low + ONES * 0x5f) | (low + ONES)) & HIGH;
        }
    }
}
