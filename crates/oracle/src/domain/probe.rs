//! Retrieval probes, pure: what the oracle keeps of a piece to check a read of it, what a probe
//! reads, whether the bytes a provider answered are the piece's, and what a replica's probes
//! say of it.
//!
//! ```text
//!   the hot copy, once ──► PieceLevels (one level of the piece tree: ≤ 4,096 nodes, 128 KiB)
//!   a probe: a random node i ──► GET /piece/{cid} bytes=span(i) ──► check: Fr32, hash up to
//!            the level ──► equal to node i?      + GET /ipfs/{root}?format=raw ──► its CID?
//!   outcome ──► after(view, ok, N) ──► in a row, totals; lost at N failures, found at N oks
//! ```
//!
//! - **The tree.** A piece's commitment is the root of a binary SHA-256 (truncated) tree over
//!   the Fr32 expansion of its payload, zero-padded to a power of two (FRC-0069; `crates/piece`,
//!   checked there against go-fil-commp-hashhash and the published vectors). A subtree of
//!   `2^level` leaves covers `127 · 2^(level − 2)` payload bytes, aligned, so a range of the
//!   payload read back hashes to one node of the tree without the rest of the piece. The level
//!   kept is the lowest at which a piece has at most [`MAX_NODES`] nodes, and at least the
//!   level of one run of `crates/piece` (2^13 leaves, 254 KiB of payload): a probe of a 32 GiB
//!   piece reads 8 MiB, one of a dev-stack aggregate 254 KiB.
//! - **Checked, not trusted.** The nodes are computed from the oracle's own copy and checked
//!   against the piece's commitment before they are kept (they hash up to it), so a probe is
//!   checked against the commitment the deal was made for, also after the copy is dropped.
//! - **Lost.** A replica whose last `N` probes all failed is lost: the scheduler replaces it
//!   elsewhere and asks its provider for the piece no more. It is still probed, less often;
//!   `N` probes in a row that verify find it again (it counts again, beside its
//!   replacement): a provider holding part of a piece does not flap back on one lucky span.

use estuary_piece::commp::{self, Node, RUN_PAYLOAD, node, run_roots, zero_roots};
use serde::Serialize;

/// Tree level of a run's root (2^13 leaves: [`RUN_PAYLOAD`] bytes of payload).
const RUN_LEVEL: u32 = 13;
/// Most nodes kept of one piece (32 bytes each).
pub const MAX_NODES: u64 = 4096;
/// The largest span a probe reads (the level kept for the largest piece, 64 GiB).
pub const MAX_SPAN: u64 = 127 << (31 - 12 - 2);

/// Payload bytes under one node of `level` (level ≥ 2).
pub fn span_of(level: u32) -> u64 {
    127u64 << level.saturating_sub(2)
}

/// Why a piece's levels cannot be made or a read does not check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    /// The bytes given do not hash to the piece's commitment (the copy is not the piece).
    #[error("the copy does not hash to the piece's commitment")]
    NotThePiece,
    /// The copy's size is not the piece's.
    #[error("the copy holds {got} bytes, more than a piece of {padded} padded bytes can")]
    Size {
        /// Bytes given.
        got: u64,
        /// The piece's padded size.
        padded: u64,
    },
    /// The padded size is not a power of two of at least 128 bytes.
    #[error("{0} is not a padded piece size")]
    PaddedSize(u64),
    /// No node has that index.
    #[error("node {index} is past the piece's {nodes} nodes")]
    Index {
        /// Asked.
        index: u64,
        /// Kept.
        nodes: u64,
    },
    /// The provider answered another number of bytes than the span holds.
    #[error("{got} bytes answered for a span of {want}")]
    Length {
        /// Bytes answered.
        got: u64,
        /// Bytes asked.
        want: u64,
    },
    /// The bytes answered hash to another node: not the piece's bytes.
    #[error("the bytes answered are not the piece's (node {index} differs)")]
    Mismatch {
        /// The node checked.
        index: u64,
    },
}

/// What is kept of a piece to check reads of it: the nodes of one level of its tree that
/// cover its payload (the rest are zero subtrees).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PieceLevels {
    /// The level, in leaves of 32 bytes: a node covers `2^level` leaves.
    pub level: u32,
    /// The payload's bytes (what `/piece` serves).
    pub payload_size: u64,
    /// The padded piece size.
    pub padded_size: u64,
    /// The nodes covering the payload, left to right.
    pub nodes: Vec<Node>,
}

/// The height of a piece of `padded` bytes (its root's level), if `padded` is one.
fn height(padded: u64) -> Result<u32, ProbeError> {
    if padded < 128 || !padded.is_power_of_two() || padded > commp::MAX_PADDED {
        return Err(ProbeError::PaddedSize(padded));
    }
    Ok((padded / 32).trailing_zeros())
}

/// The level kept for a piece of `padded` bytes.
pub fn level_for(padded: u64) -> Result<u32, ProbeError> {
    let h = height(padded)?;
    if h <= RUN_LEVEL {
        return Ok(h);
    }
    let max = MAX_NODES.trailing_zeros();
    Ok(RUN_LEVEL.max(h.saturating_sub(max)))
}

/// The root of `2^k` consecutive roots of one level, the missing ones zero subtrees of `below`.
fn fold(mut roots: Vec<Node>, k: u32, below: u32) -> Node {
    let zero = zero_roots();
    roots.resize(1 << k, zero[below as usize]);
    for _ in 0..k {
        roots = roots.chunks_exact(2).map(|p| node(&p[0], &p[1])).collect();
    }
    roots.first().copied().unwrap_or(zero[(below + k) as usize])
}

/// The node over `bytes`, the payload of one span of `level` (shorter at the payload's end:
/// zeros follow).
fn node_over(bytes: &[u8], level: u32) -> Node {
    if level <= RUN_LEVEL {
        // A piece no larger than one run: its commitment (at its own height).
        let mut c = commp::CommP::new();
        c.update(bytes);
        return match c.finish() {
            Ok(info) if (info.padded_size / 32).trailing_zeros() == level => info.commp,
            // Fewer bytes give a smaller tree: widen it with zero subtrees.
            Ok(info) => {
                let mut n = info.commp;
                let zero = zero_roots();
                for l in (info.padded_size / 32).trailing_zeros()..level {
                    n = node(&n, &zero[l as usize]);
                }
                n
            }
            Err(_) => [0; 32],
        };
    }
    let runs = 1usize << (level - RUN_LEVEL);
    let mut roots = Vec::with_capacity(runs);
    let mut run = vec![0u8; RUN_PAYLOAD];
    for chunk in bytes.chunks(RUN_PAYLOAD) {
        run[..chunk.len()].copy_from_slice(chunk);
        run[chunk.len()..].fill(0);
        roots.extend(run_roots(&run).unwrap_or_default());
    }
    fold(roots, level - RUN_LEVEL, RUN_LEVEL)
}

/// Builds a piece's [`PieceLevels`] from its payload, streamed.
#[derive(Debug)]
pub struct LevelsBuilder {
    level: u32,
    padded: u64,
    span: u64,
    buf: Vec<u8>,
    fed: u64,
    nodes: Vec<Node>,
}

impl LevelsBuilder {
    /// For a piece of `padded_size` bytes.
    pub fn new(padded_size: u64) -> Result<Self, ProbeError> {
        let level = level_for(padded_size)?;
        let span = span_of(level);
        Ok(Self { level, padded: padded_size, span, buf: Vec::new(), fed: 0, nodes: Vec::new() })
    }

    /// The next bytes of the payload.
    pub fn update(&mut self, mut data: &[u8]) -> Result<(), ProbeError> {
        self.fed += data.len() as u64;
        if self.fed > self.padded / 128 * 127 {
            return Err(ProbeError::Size { got: self.fed, padded: self.padded });
        }
        while !data.is_empty() {
            let room = (self.span as usize).saturating_sub(self.buf.len());
            let (now, rest) = data.split_at(room.min(data.len()));
            self.buf.extend_from_slice(now);
            data = rest;
            if self.buf.len() as u64 == self.span {
                self.nodes.push(node_over(&self.buf, self.level));
                self.buf.clear();
            }
        }
        Ok(())
    }

    /// The levels, checked against the piece's commitment `commp`.
    pub fn finish(mut self, commp: &Node) -> Result<PieceLevels, ProbeError> {
        if !self.buf.is_empty() || self.nodes.is_empty() {
            self.nodes.push(node_over(&self.buf, self.level));
        }
        let h = height(self.padded)?;
        if fold(self.nodes.clone(), h - self.level, self.level) != *commp {
            return Err(ProbeError::NotThePiece);
        }
        Ok(PieceLevels {
            level: self.level,
            payload_size: self.fed,
            padded_size: self.padded,
            nodes: self.nodes,
        })
    }
}

impl PieceLevels {
    /// The payload bytes `[start, end)` node `index` covers.
    pub fn span(&self, index: u64) -> Result<(u64, u64), ProbeError> {
        let nodes = self.nodes.len() as u64;
        if index >= nodes {
            return Err(ProbeError::Index { index, nodes });
        }
        let span = span_of(self.level);
        let start = index * span;
        Ok((start, (start + span).min(self.payload_size)))
    }

    /// Whether these are `piece`'s levels: its padded size, and nodes that hash up to its
    /// commitment (at most 4,095 hashes).
    pub fn is_of(&self, piece: &estuary_piece::PieceCid) -> bool {
        let Ok(h) = height(self.padded_size) else { return false };
        piece.padded_size() == Some(self.padded_size)
            && h >= self.level
            && self.nodes.len() as u64 <= 1u64 << (h - self.level).min(63)
            && fold(self.nodes.clone(), h - self.level, self.level) == *piece.commp()
    }

    /// The node whose span holds payload byte `offset` (the last node for an offset past the
    /// payload).
    pub fn index_of(&self, offset: u64) -> u64 {
        (offset / span_of(self.level)).min((self.nodes.len() as u64).saturating_sub(1))
    }

    /// Whether `bytes`, read as node `index`'s span, are the piece's.
    pub fn check(&self, index: u64, bytes: &[u8]) -> Result<(), ProbeError> {
        let (start, end) = self.span(index)?;
        if bytes.len() as u64 != end - start {
            return Err(ProbeError::Length { got: bytes.len() as u64, want: end - start });
        }
        let want = self.nodes.get(index as usize).copied();
        if want != Some(node_over(bytes, self.level)) {
            return Err(ProbeError::Mismatch { index });
        }
        Ok(())
    }

    /// The nodes as bytes (32 each), for the store.
    pub fn nodes_bytes(&self) -> Vec<u8> {
        self.nodes.concat()
    }

    /// Levels as the store kept them; `None` if the bytes are no whole nodes.
    pub fn from_parts(
        level: u32,
        payload_size: u64,
        padded_size: u64,
        nodes: &[u8],
    ) -> Option<Self> {
        // What a builder for this padded size would have made, or nothing (an edited row).
        if level_for(padded_size).ok()? != level
            || !nodes.len().is_multiple_of(32)
            || payload_size > padded_size / 128 * 127
        {
            return None;
        }
        // One node per span of the payload, the last one short (one for an empty payload):
        // so every node's span starts inside the payload.
        let want = payload_size.div_ceil(span_of(level)).max(1);
        if nodes.len() as u64 / 32 != want {
            return None;
        }
        let nodes = nodes.chunks_exact(32).map(|c| c.try_into().unwrap_or([0; 32])).collect();
        Some(Self { level, payload_size, padded_size, nodes })
    }
}

/// When the oracle's own copy of a deal's piece (its packed CAR) may go: the piece is then read
/// from its providers ([`crate::deals::cold`]), each span checked against its levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ColdRules {
    /// The order was made at least this long ago (ms).
    pub after_ms: u64,
    /// At least this many of its providers' replicas were read back and verified, each by its
    /// last `min_oks` probes in a row...
    pub min_verified: u32,
    /// ...(the probes in a row that find a lost replica again)...
    pub min_oks: u32,
    /// ...within this long (ms).
    pub verified_within_ms: u64,
    /// CARs of at least this many bytes (smaller ones cost little to keep).
    pub min_size: u64,
    /// The pins' blocks go too (read from the providers by the gateway and Bitswap).
    pub drop_blocks: bool,
}

/// What a replica's probes say, as kept (one row per replica).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ProbeView {
    /// When it was last probed (ms since the epoch).
    pub last_probe: u64,
    /// Whether that probe read verified bytes.
    pub last_probe_ok: bool,
    /// Failed probes since the last success.
    pub failures_in_a_row: u32,
    /// Verified probes since the last failure.
    pub oks_in_a_row: u32,
    /// Probes that read verified bytes.
    pub probes_ok: u64,
    /// Probes that did not.
    pub probes_failed: u64,
    /// When it was found lost (its last `N` probes failed), if it was.
    pub lost_at: Option<u64>,
}

impl ProbeView {
    /// Whether the replica is lost.
    pub fn lost(&self) -> bool {
        self.lost_at.is_some()
    }
}

/// The replica's view after a probe at `at_ms` that verified (`ok`) or not; lost once
/// `lost_after` probes in a row failed, found again once `lost_after` in a row verified.
pub fn after(prev: Option<&ProbeView>, ok: bool, at_ms: u64, lost_after: u32) -> ProbeView {
    let mut v = prev.copied().unwrap_or(ProbeView {
        last_probe: 0,
        last_probe_ok: false,
        failures_in_a_row: 0,
        oks_in_a_row: 0,
        probes_ok: 0,
        probes_failed: 0,
        lost_at: None,
    });
    v.last_probe = at_ms;
    v.last_probe_ok = ok;
    if ok {
        v.probes_ok += 1;
        v.failures_in_a_row = 0;
        v.oks_in_a_row = v.oks_in_a_row.saturating_add(1);
        // It serves the piece again, as many times in a row as it failed to be lost: found (a
        // lost replica is still probed, less often).
        if v.oks_in_a_row >= lost_after.max(1) {
            v.lost_at = None;
        }
    } else {
        v.probes_failed += 1;
        v.oks_in_a_row = 0;
        v.failures_in_a_row = v.failures_in_a_row.saturating_add(1);
        if v.failures_in_a_row >= lost_after.max(1) && v.lost_at.is_none() {
            v.lost_at = Some(at_ms);
        }
    }
    v
}

/// When a replica last probed at `last` (ms) is next due: `every` ms later, ±25 %, the jitter
/// drawn from `seed` (the replica's deal id), so that replicas made together spread out.
pub fn next_due(last: u64, every: u64, seed: u64) -> u64 {
    // splitmix64: a fixed, well-spread draw per (deal, probe).
    let mut z = seed.wrapping_add(last).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    let quarter = every / 4;
    let jitter = if quarter == 0 { 0 } else { z % (2 * quarter + 1) };
    last.saturating_add(every - quarter).saturating_add(jitter)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn payload(n: usize, seed: u8) -> Vec<u8> {
        (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
    }

    fn levels(data: &[u8]) -> PieceLevels {
        let info = commp::commp(data).unwrap();
        let mut b = LevelsBuilder::new(info.padded_size).unwrap();
        for chunk in data.chunks(100_003) {
            b.update(chunk).unwrap();
        }
        b.finish(&info.commp).unwrap()
    }

    #[test]
    fn every_span_of_a_piece_checks_and_a_flipped_byte_does_not() {
        // 2.3 MB: a 4 MiB piece, spans of one run (254 KiB), the last one short.
        let data = payload(2_300_000, 7);
        let l = levels(&data);
        assert_eq!(l.level, RUN_LEVEL);
        assert_eq!(l.nodes.len(), data.len().div_ceil(RUN_PAYLOAD));
        for i in 0..l.nodes.len() as u64 {
            let (a, b) = l.span(i).unwrap();
            let mut read = data[a as usize..b as usize].to_vec();
            assert_eq!(l.check(i, &read), Ok(()));
            let mid = read.len() / 2;
            read[mid] ^= 1;
            assert_eq!(l.check(i, &read), Err(ProbeError::Mismatch { index: i }));
            read.pop();
            assert!(matches!(l.check(i, &read), Err(ProbeError::Length { .. })));
        }
        // The wrong span's bytes are refused.
        let (a, b) = l.span(0).unwrap();
        let other = payload((b - a) as usize, 8);
        assert!(l.check(0, &other).is_err());
        assert!(matches!(l.check(99, &[]), Err(ProbeError::Index { .. })));
    }

    #[test]
    fn a_piece_smaller_than_a_run_is_one_node_its_commitment() {
        for n in [1usize, 127, 128, 1000, 65_000, RUN_PAYLOAD] {
            let data = payload(n, 3);
            let info = commp::commp(&data).unwrap();
            let l = levels(&data);
            assert_eq!(l.nodes, vec![info.commp], "{n}");
            assert_eq!(l.check(0, &data), Ok(()));
        }
    }

    #[test]
    fn a_large_piece_keeps_at_most_max_nodes_at_a_higher_level() {
        // The level only: a 64 GiB piece keeps 4,096 nodes of 16 MiB payload spans.
        let h = level_for(64 << 30).unwrap();
        assert_eq!((64u64 << 30) >> (h + 5), MAX_NODES);
        assert_eq!(span_of(h), MAX_SPAN);
        assert_eq!(level_for(32 << 30).unwrap(), h - 1);
        assert_eq!(level_for(1 << 20).unwrap(), RUN_LEVEL);
        assert_eq!(level_for(128).unwrap(), 2);
        assert!(level_for(100).is_err() && level_for(0).is_err());
    }

    #[test]
    fn a_copy_that_is_not_the_piece_gives_no_levels() {
        let data = payload(600_000, 1);
        let info = commp::commp(&data).unwrap();
        let mut b = LevelsBuilder::new(info.padded_size).unwrap();
        let mut wrong = data;
        wrong[500_000] ^= 0x80;
        b.update(&wrong).unwrap();
        assert_eq!(b.finish(&info.commp), Err(ProbeError::NotThePiece));
        let mut b = LevelsBuilder::new(1024).unwrap();
        assert!(matches!(b.update(&[0; 1017]), Err(ProbeError::Size { .. })));
    }

    #[test]
    fn levels_read_back_from_the_store_are_checked() {
        let l = levels(&payload(600_000, 2));
        let bytes = l.nodes_bytes();
        let back = PieceLevels::from_parts(l.level, l.payload_size, l.padded_size, &bytes);
        assert_eq!(back.as_ref(), Some(&l));
        // Of its piece, and of no other.
        let info = commp::commp(&payload(600_000, 2)).unwrap();
        assert!(l.is_of(&estuary_piece::PieceCid::v2(&info)));
        let other = commp::commp(&payload(600_000, 3)).unwrap();
        assert!(!l.is_of(&estuary_piece::PieceCid::v2(&other)));
        let mut edited = l.clone();
        edited.nodes[1][0] ^= 1;
        assert!(!edited.is_of(&estuary_piece::PieceCid::v2(&info)));
        for (level, payload, padded, nodes) in [
            (u32::MAX, l.payload_size, l.padded_size, &bytes[..]),
            (l.level + 1, l.payload_size, l.padded_size, &bytes[..]),
            (l.level, l.payload_size, 1000, &bytes[..]),
            (l.level, u64::MAX, l.padded_size, &bytes[..]),
            (l.level, l.payload_size, l.padded_size, &bytes[..31]),
            (l.level, l.payload_size, l.padded_size, &[]),
            (l.level, l.payload_size, l.padded_size, &[0; 32 * 64]),
            // Fewer nodes than the payload has spans, or a payload that ends before the last.
            (l.level, l.payload_size, l.padded_size, &bytes[..bytes.len() - 32]),
            (l.level, l.payload_size - span_of(l.level) - 1, l.padded_size, &bytes[..]),
        ] {
            assert_eq!(PieceLevels::from_parts(level, payload, padded, nodes), None);
        }
    }

    #[test]
    fn lost_after_n_failures_in_a_row_until_a_success() {
        let mut v = after(None, false, 1, 3);
        v = after(Some(&v), false, 2, 3);
        assert_eq!((v.failures_in_a_row, v.lost_at), (2, None));
        v = after(Some(&v), true, 3, 3);
        assert_eq!((v.failures_in_a_row, v.probes_ok, v.probes_failed), (0, 1, 2));
        for t in 4..7 {
            v = after(Some(&v), false, t, 3);
        }
        assert_eq!(v.lost_at, Some(6));
        v = after(Some(&v), false, 7, 3);
        assert_eq!(v.lost_at, Some(6), "lost when first found");
        v = after(Some(&v), true, 8, 3);
        v = after(Some(&v), true, 9, 3);
        assert!(v.lost() && v.last_probe_ok, "two verified of three: still lost");
        v = after(Some(&v), false, 10, 3);
        v = after(Some(&v), true, 11, 3);
        v = after(Some(&v), true, 12, 3);
        assert!(v.lost(), "a failure starts the count again");
        v = after(Some(&v), true, 13, 3);
        assert!(!v.lost(), "three verified in a row find it again");
        assert_eq!((v.oks_in_a_row, v.probes_ok, v.probes_failed), (3, 6, 7));
    }

    #[test]
    fn due_times_spread_within_a_quarter() {
        let every = 1_000_000;
        let dues: Vec<u64> = (0..200).map(|d| next_due(5_000, every, d)).collect();
        assert!(dues.iter().all(|d| (5_000 + 750_000..=5_000 + 1_250_000).contains(d)));
        let distinct: std::collections::BTreeSet<_> = dues.iter().collect();
        assert!(distinct.len() > 150, "spread out");
        assert_eq!(next_due(10, 0, 3), 10);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Any payload: its spans check; any other bytes of the same length do not.
        #[test]
        fn spans_check_exactly(len in 1usize..700_000, seed in any::<u8>(), flip in any::<usize>()) {
            let data = payload(len, seed);
            let l = levels(&data);
            let i = (flip % l.nodes.len()) as u64;
            let (a, b) = l.span(i).unwrap();
            let mut read = data[a as usize..b as usize].to_vec();
            prop_assert_eq!(l.check(i, &read), Ok(()));
            let at = flip % read.len();
            read[at] ^= 1 << (flip % 8);
            prop_assert!(l.check(i, &read).is_err());
            let back = PieceLevels::from_parts(l.level, l.payload_size, l.padded_size, &l.nodes_bytes());
            prop_assert_eq!(back, Some(l));
        }

        /// Whatever a row holds, levels read back give spans inside the payload, never a panic.
        #[test]
        fn stored_levels_give_spans_inside_the_payload(
            shift in 7u32..37,
            level_off in -1i32..2,
            n in 1u64..80,
            extra in 0u64..3,
            stored_off in -1i64..2,
        ) {
            let stored = usize::try_from(n as i64 + stored_off).unwrap_or(0);
            let padded = 1u64 << shift;
            let level = level_for(padded).unwrap().saturating_add_signed(level_off);
            let span = span_of(level);
            // Around each boundary: just under, at and just past whole spans.
            let payload = (n - 1) * span + [1, span, span + 1][extra as usize];
            let parsed = PieceLevels::from_parts(level, payload, padded, &vec![0; stored * 32]);
            // What a builder makes is always taken back.
            let made = level_off == 0 && stored_off == 0 && extra < 2 && payload <= padded / 128 * 127;
            prop_assert!(!made || parsed.is_some(), "{level} {payload} {padded} {stored}");
            if let Some(l) = parsed {
                for i in 0..l.nodes.len() as u64 {
                    let (a, b) = l.span(i).unwrap();
                    prop_assert!(a <= b && b <= l.payload_size);
                    prop_assert!(a < b || l.payload_size == 0);
                }
            }
        }
    }
}
