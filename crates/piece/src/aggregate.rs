//! FRC-0058 data segment aggregation: several pieces packed into one deal with an index, and
//! proofs that a piece (and its index entry) is in the aggregate.
//!
//! Layout of a deal of padded size `S` (tree of height log2(S / 32)):
//! - pieces in the order given, each at the next offset aligned to its own padded size;
//! - the index at the end: `max(4, 2^ceil(log2(S / 2048 / 64)))` entries of 64 bytes, each
//!   `commP ‖ offset (u64 LE) ‖ size (u64 LE) ‖ checksum`, where the checksum is the first
//!   16 bytes of sha256 of the entry with a zero checksum, top two bits cleared;
//! - zeros everywhere else.
//!
//! The aggregate is a piece too: its piece CID v2 has padding 0 and the deal's height.
//!
//! Its payload, the bytes an SP downloads and fr32-pads into the deal, is the layout above in
//! unpadded units (offsets × 127/128): each piece's payload at its offset followed by zeros to
//! its size, the index fr32-unpadded at the index area, zeros elsewhere, `deal_size × 127/128`
//! bytes in all (`AggregateObjectReader` and `IndexReader` of filecoin-project/go-data-segment,
//! `datasegment/creation.go`).

use sha2::{Digest, Sha256};

use crate::{
    PieceCid,
    commp::{MAX_LEVELS, Node, node, zero_roots},
    fr32::{QUAD, QUAD_PAYLOAD, unpad_quad},
};

/// Bytes per index entry.
pub const ENTRY_SIZE: u64 = 64;

/// Why pieces cannot be aggregated, or a proof does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AggregateError {
    /// The deal size is not a power of two in 128 B..=64 GiB... (and room for an index).
    #[error("deal size {0} must be a power of two from 4 KiB to 64 GiB")]
    DealSize(u64),
    /// More pieces than index entries.
    #[error("{count} pieces need more than the {limit} index entries of a {deal_size}-byte deal")]
    TooManyPieces {
        /// Pieces given.
        count: usize,
        /// Index entries available.
        limit: u64,
        /// The deal size.
        deal_size: u64,
    },
    /// The pieces and the index do not fit.
    #[error(
        "pieces end at byte {end}, and the index needs {index} bytes: more than the {deal_size}-byte deal"
    )]
    DoesNotFit {
        /// Where the packed pieces end.
        end: u64,
        /// Bytes of index.
        index: u64,
        /// The deal size.
        deal_size: u64,
    },
    /// A piece's height is out of range.
    #[error("piece height {0} is outside 2..={MAX_LEVELS}")]
    PieceHeight(u8),
    /// A proof is malformed or does not lead to the root.
    #[error("inclusion proof is invalid: {0}")]
    BadProof(&'static str),
}

/// One piece's place in an aggregate: its index entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// The piece's commP.
    pub commp: Node,
    /// Offset in the padded deal, bytes.
    pub offset: u64,
    /// Padded size, bytes.
    pub size: u64,
}

impl Segment {
    /// The 64-byte index entry, checksum included.
    pub fn entry(&self) -> [u8; 64] {
        let mut e = [0u8; 64];
        e[..32].copy_from_slice(&self.commp);
        e[32..40].copy_from_slice(&self.offset.to_le_bytes());
        e[40..48].copy_from_slice(&self.size.to_le_bytes());
        let digest = Sha256::digest(e);
        e[48..].copy_from_slice(&digest[..16]);
        e[63] &= 0x3f;
        e
    }

    fn level(&self) -> u32 {
        (self.size / 32).trailing_zeros()
    }
}

/// A merkle proof: a node's index at its level and the siblings from there to the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MerkleProof {
    /// Index of the proven node among the nodes of its level.
    pub index: u64,
    /// Siblings, bottom up.
    pub path: Vec<Node>,
}

impl MerkleProof {
    /// The root this proof leads to from `leaf`.
    pub fn root(&self, leaf: &Node) -> Result<Node, AggregateError> {
        if self.path.len() > 63 {
            return Err(AggregateError::BadProof("deeper than 63 levels"));
        }
        if self.path.len() < 64 && self.index >> self.path.len() != 0 {
            return Err(AggregateError::BadProof("index wider than the tree"));
        }
        let mut at = self.index;
        let mut acc = *leaf;
        for sibling in &self.path {
            acc = if at & 1 == 1 { node(sibling, &acc) } else { node(&acc, sibling) };
            at >>= 1;
        }
        Ok(acc)
    }
}

/// A piece's inclusion in an aggregate: its subtree, and its index entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InclusionProof {
    /// From the piece's root to the aggregate's root.
    pub subtree: MerkleProof,
    /// From the index entry (a level-1 node) to the aggregate's root.
    pub index: MerkleProof,
}

/// Index entries in a deal of `deal_size` padded bytes.
pub fn max_index_entries(deal_size: u64) -> u64 {
    let n = deal_size / 2048 / ENTRY_SIZE;
    let ceil_log2 = if n <= 1 { 0 } else { 64 - (n - 1).leading_zeros() };
    (1u64 << ceil_log2).max(4)
}

/// Where the index starts in a deal of `deal_size` padded bytes.
pub fn index_area_start(deal_size: u64) -> u64 {
    deal_size - max_index_entries(deal_size) * ENTRY_SIZE
}

/// Where the next piece of `size` padded bytes goes when the pieces so far end at `end`:
/// aligned up to its own size (`ComputeDealPlacement` in go-data-segment). Returns its offset.
pub fn next_offset(end: u64, size: u64) -> u64 {
    end.div_ceil(size).saturating_mul(size)
}

/// The unpadded position of padded offset `padded` (a multiple of 128).
pub fn unpadded(padded: u64) -> u64 {
    padded / 128 * 127
}

/// The index of `segments` as it is in an aggregate's payload: the entries, fr32-unpadded 128
/// bytes at a time (the last quad zero-filled); the rest of the index area is zeros.
/// `IndexReader` in go-data-segment.
pub fn index_payload(segments: &[Segment]) -> Vec<u8> {
    let mut padded: Vec<u8> = segments.iter().flat_map(Segment::entry).collect();
    padded.resize(padded.len().div_ceil(QUAD) * QUAD, 0);
    let mut out = vec![0u8; padded.len() / QUAD * QUAD_PAYLOAD];
    for (quad, payload) in padded.chunks_exact(QUAD).zip(out.chunks_exact_mut(QUAD_PAYLOAD)) {
        let (Ok(quad), Ok(payload)) = (quad.try_into(), payload.try_into()) else {
            unreachable!("chunks_exact gives whole quads");
        };
        unpad_quad(quad, payload);
    }
    out
}

/// An item placed in the sparse tree: a node at (level, index).
#[derive(Debug, Clone, Copy)]
struct Placed {
    level: u32,
    index: u64,
    node: Node,
}

impl Placed {
    fn leaves(&self) -> (u64, u64) {
        (self.index << self.level, (self.index + 1) << self.level)
    }
}

/// Pieces packed into a deal.
#[derive(Debug, Clone)]
pub struct Aggregate {
    /// Padded deal size.
    pub deal_size: u64,
    /// Tree height: log2(deal size / 32).
    pub height: u32,
    /// The aggregate's commP.
    pub root: Node,
    /// One index entry per piece, in the order given.
    pub segments: Vec<Segment>,
    /// Index entries available.
    pub limit: u64,
    placed: Vec<Placed>,
    /// Per level, sorted by index: the nodes above placed items (whose subtree holds placed
    /// items but is not one), hashed once by `build`. Without them every proof re-hashed its
    /// siblings' subtrees, which hold half the aggregate at the top: N proofs cost O(N²).
    inner: Vec<Vec<(u64, Node)>>,
}

impl Aggregate {
    /// Packs pieces, each given as its commP and height, into a deal of `deal_size` bytes.
    pub fn build(pieces: &[(Node, u8)], deal_size: u64) -> Result<Self, AggregateError> {
        if !deal_size.is_power_of_two() || !(4096..=(1u64 << (MAX_LEVELS + 5))).contains(&deal_size)
        {
            return Err(AggregateError::DealSize(deal_size));
        }
        let limit = max_index_entries(deal_size);
        if pieces.len() as u64 > limit {
            return Err(AggregateError::TooManyPieces { count: pieces.len(), limit, deal_size });
        }
        let mut segments = Vec::with_capacity(pieces.len());
        let mut end_nodes = 0u64;
        for &(commp, height) in pieces {
            if !(2..=MAX_LEVELS as u8).contains(&height) {
                return Err(AggregateError::PieceHeight(height));
            }
            let size_nodes = 1u64 << height;
            let slot = next_offset(end_nodes, size_nodes) / size_nodes;
            end_nodes = (slot + 1) * size_nodes;
            let end = end_nodes * 32;
            if end.saturating_add(limit * ENTRY_SIZE) > deal_size {
                return Err(AggregateError::DoesNotFit {
                    end,
                    index: limit * ENTRY_SIZE,
                    deal_size,
                });
            }
            segments.push(Segment { commp, offset: slot * size_nodes * 32, size: size_nodes * 32 });
        }
        let mut placed: Vec<Placed> = segments
            .iter()
            .map(|s| Placed { level: s.level(), index: s.offset / s.size, node: s.commp })
            .collect();
        let index_start = index_area_start(deal_size) / 32;
        for (n, s) in segments.iter().enumerate() {
            let e = s.entry();
            let (a, b) = e.split_at(32);
            for (k, half) in [a, b].into_iter().enumerate() {
                placed.push(Placed {
                    level: 0,
                    index: index_start + 2 * n as u64 + k as u64,
                    node: half.try_into().unwrap_or([0; 32]),
                });
            }
        }
        placed.sort_by_key(|p| p.leaves().0);
        let height = (deal_size / 32).trailing_zeros();
        let mut agg =
            Self { deal_size, height, root: [0; 32], segments, limit, placed, inner: Vec::new() };
        let mut inner = vec![Vec::new(); height as usize + 1];
        agg.root = agg.hash_inner(height, 0, &mut inner);
        agg.inner = inner;
        Ok(agg)
    }

    /// The placed item or the empty subtree at (level, index); `None` for a node above placed
    /// items.
    fn placed_or_zero(&self, level: u32, index: u64) -> Option<Node> {
        let (start, end) = (index << level, (index + 1) << level);
        // The placed items overlapping [start, end), by leaf range (they never overlap).
        let first = self.placed.partition_point(|p| p.leaves().1 <= start);
        match self.placed.get(first).filter(|p| p.leaves().0 < end) {
            None => Some(zero_roots()[level as usize]),
            Some(item) if item.level == level && item.index == index => Some(item.node),
            Some(_) => None,
        }
    }

    /// The node at (level, index), recording every node above placed items in `inner`. Placed
    /// items are aligned and disjoint, so the descent stops at each one exactly and never enters
    /// one. Children are hashed before their parent and left before right, so each level's
    /// nodes arrive in index order.
    fn hash_inner(&self, level: u32, index: u64, inner: &mut [Vec<(u64, Node)>]) -> Node {
        if let Some(n) = self.placed_or_zero(level, index) {
            return n;
        }
        let left = self.hash_inner(level - 1, 2 * index, inner);
        let right = self.hash_inner(level - 1, 2 * index + 1, inner);
        let n = node(&left, &right);
        let nodes = &mut inner[level as usize];
        debug_assert!(nodes.last().is_none_or(|&(i, _)| i < index));
        nodes.push((index, n));
        n
    }

    /// The node at (level, index) of the sparse tree, at or above a placed item or in an empty
    /// subtree (what a proof names: never inside a piece).
    fn node_at(&self, level: u32, index: u64) -> Node {
        let nodes = &self.inner[level as usize];
        match nodes.binary_search_by_key(&index, |&(i, _)| i) {
            Ok(at) => nodes[at].1,
            Err(_) => self.placed_or_zero(level, index).expect(
                "build hashed every node above a placed item, and a proof names no node inside one",
            ),
        }
    }

    fn proof_for(&self, mut level: u32, mut index: u64) -> MerkleProof {
        let start = index;
        let mut path = Vec::with_capacity((self.height - level) as usize);
        while level < self.height {
            path.push(self.node_at(level, index ^ 1));
            index >>= 1;
            level += 1;
        }
        MerkleProof { index: start, path }
    }

    /// Payload bytes (unpadded) of the whole aggregate.
    pub fn payload_size(&self) -> u64 {
        unpadded(self.deal_size)
    }

    /// Where the `n`th piece's payload starts in the aggregate's payload.
    pub fn payload_offset(&self, n: usize) -> Option<u64> {
        self.segments.get(n).map(|s| unpadded(s.offset))
    }

    /// Where the index starts in the aggregate's payload.
    pub fn index_payload_offset(&self) -> u64 {
        unpadded(index_area_start(self.deal_size))
    }

    /// The index as it is in the payload (see [`index_payload`]).
    pub fn index_payload(&self) -> Vec<u8> {
        index_payload(&self.segments)
    }

    /// The inclusion proof of the `n`th piece.
    pub fn proof(&self, n: usize) -> Option<InclusionProof> {
        let s = self.segments.get(n)?;
        let subtree = self.proof_for(s.level(), s.offset / s.size);
        let index = self.proof_for(1, index_area_start(self.deal_size) / ENTRY_SIZE + n as u64);
        Some(InclusionProof { subtree, index })
    }
}

/// Checks that a piece (commP, height) is in the aggregate (root, height) at the place its
/// proof names, and that the index entry for it is there too.
pub fn verify(
    proof: &InclusionProof,
    piece: &Node,
    piece_height: u8,
    aggregate_root: &Node,
    aggregate_height: u32,
) -> Result<Segment, AggregateError> {
    if proof.subtree.path.len() as u32 + u32::from(piece_height) != aggregate_height {
        return Err(AggregateError::BadProof("subtree proof depth does not match the heights"));
    }
    if &proof.subtree.root(piece)? != aggregate_root {
        return Err(AggregateError::BadProof("subtree proof does not lead to the aggregate root"));
    }
    let size = 32u64 << piece_height;
    let segment = Segment { commp: *piece, offset: proof.subtree.index * size, size };
    let entry = segment.entry();
    let entry_node = node(
        entry[..32].try_into().unwrap_or(&[0; 32]),
        entry[32..].try_into().unwrap_or(&[0; 32]),
    );
    if proof.index.path.len() as u32 + 1 != aggregate_height {
        return Err(AggregateError::BadProof("index proof depth does not match the aggregate"));
    }
    let deal_size = 32u64 << aggregate_height;
    if proof.index.index < index_area_start(deal_size) / ENTRY_SIZE {
        return Err(AggregateError::BadProof("index entry lies outside the index area"));
    }
    if &proof.index.root(&entry_node)? != aggregate_root {
        return Err(AggregateError::BadProof("index proof does not lead to the aggregate root"));
    }
    Ok(segment)
}

/// [`verify`] for pieces named by their v2 piece CIDs, which carry the commitments and the sizes:
/// whether `piece` is a data segment of `aggregate` at the place `proof` names, with its index
/// entry there too. What a client runs on the proof an aggregator gives it.
pub fn verify_pieces(
    proof: &InclusionProof,
    piece: &PieceCid,
    aggregate: &PieceCid,
) -> Result<Segment, AggregateError> {
    let height = |p: &PieceCid| p.padded_size().map(|s| (s / 32).trailing_zeros());
    let (Some(piece_height), Some(aggregate_height)) = (height(piece), height(aggregate)) else {
        return Err(AggregateError::BadProof(
            "a v1 piece CID does not carry its piece's size: name both pieces by v2 piece CIDs",
        ));
    };
    let piece_height = u8::try_from(piece_height).unwrap_or(u8::MAX);
    verify(proof, piece.commp(), piece_height, aggregate.commp(), aggregate_height)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commp::commp;

    fn piece(seed: u8, len: usize) -> (Node, u8) {
        let data: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(seed)).collect();
        let info = commp(&data).unwrap();
        (info.commp, info.height())
    }

    /// The payload laid out as `payload_offset`, `index_payload_offset` and `index_payload` say
    /// has the aggregate's commP (what an SP computes over the download).
    #[test]
    fn the_payload_laid_out_has_the_aggregates_commp() {
        let datas: Vec<Vec<u8>> = [(3u8, 1000usize), (5, 200), (7, 5000), (11, 65), (13, 127)]
            .iter()
            .map(|&(seed, len)| (0..len).map(|i| (i as u8).wrapping_mul(seed) | 1).collect())
            .collect();
        let pieces: Vec<(Node, u8)> = datas
            .iter()
            .map(|d| {
                let info = commp(d).unwrap();
                (info.commp, info.height())
            })
            .collect();
        for deal_size in [1u64 << 20, 1 << 21] {
            let agg = Aggregate::build(&pieces, deal_size).unwrap();
            let mut payload = vec![0u8; agg.payload_size() as usize];
            for (n, d) in datas.iter().enumerate() {
                let at = agg.payload_offset(n).unwrap() as usize;
                payload[at..at + d.len()].copy_from_slice(d);
            }
            let index = agg.index_payload();
            assert_eq!(index.len(), 5usize.div_ceil(2) * 127);
            let at = agg.index_payload_offset() as usize;
            payload[at..at + index.len()].copy_from_slice(&index);
            let info = commp(&payload).unwrap();
            assert_eq!(info.padded_size, deal_size);
            assert_eq!(info.commp, agg.root, "deal size {deal_size}");
        }
    }

    #[test]
    fn index_sizes() {
        assert_eq!(max_index_entries(1 << 20), 8);
        assert_eq!(max_index_entries(4096), 4);
        assert_eq!(max_index_entries(32 << 30), 1 << 18);
        assert_eq!(index_area_start(1 << 20), (1 << 20) - 8 * 64);
    }

    #[test]
    fn proofs_verify_and_tampering_fails() {
        let pieces = [piece(3, 1000), piece(5, 200), piece(7, 5000), piece(11, 65)];
        let agg = Aggregate::build(&pieces, 1 << 20).unwrap();
        // Aligned placement in order: 1024, 256 (aligned up), 8192 (aligned), 128.
        let offsets: Vec<u64> = agg.segments.iter().map(|s| s.offset).collect();
        assert_eq!(offsets, [0, 1024, 8192, 16384]);
        for (n, (commp, height)) in pieces.iter().enumerate() {
            let proof = agg.proof(n).unwrap();
            let seg = verify(&proof, commp, *height, &agg.root, agg.height).unwrap();
            assert_eq!(seg, agg.segments[n]);
            let mut bad = proof.clone();
            bad.subtree.path[0][0] ^= 1;
            assert!(verify(&bad, commp, *height, &agg.root, agg.height).is_err());
            let mut bad = proof.clone();
            bad.index.index += 1;
            assert!(verify(&bad, commp, *height, &agg.root, agg.height).is_err());
            assert!(verify(&proof, &[9; 32], *height, &agg.root, agg.height).is_err());
        }
    }

    /// By piece CIDs: the v2 CIDs carry what `verify` needs; a v1 CID, a piece swapped for
    /// another or an aggregate of another size is refused.
    #[test]
    fn proofs_verify_by_piece_cids() {
        let datas: Vec<Vec<u8>> = [(3u8, 1000usize), (5, 200)]
            .iter()
            .map(|&(seed, len)| (0..len).map(|i| (i as u8).wrapping_mul(seed)).collect())
            .collect();
        let infos: Vec<_> = datas.iter().map(|d| commp(d).unwrap()).collect();
        let pieces: Vec<(Node, u8)> = infos.iter().map(|i| (i.commp, i.height())).collect();
        let agg = Aggregate::build(&pieces, 1 << 20).unwrap();
        let aggregate = PieceCid::V2 { commp: agg.root, height: agg.height as u8, padding: 0 };
        for (n, info) in infos.iter().enumerate() {
            let proof = agg.proof(n).unwrap();
            let piece = PieceCid::v2(info);
            assert_eq!(verify_pieces(&proof, &piece, &aggregate).unwrap(), agg.segments[n]);
            assert!(verify_pieces(&proof, &piece.to_v1(), &aggregate).is_err());
            assert!(verify_pieces(&proof, &piece, &aggregate.to_v1()).is_err());
            let other = PieceCid::v2(&infos[1 - n]);
            assert!(verify_pieces(&proof, &other, &aggregate).is_err());
            let bigger = PieceCid::V2 { commp: agg.root, height: agg.height as u8 + 1, padding: 0 };
            assert!(verify_pieces(&proof, &piece, &bigger).is_err());
        }
    }

    proptest::proptest! {
        /// Any pieces that fit: every proof verifies, and any flipped bit in it is caught.
        #[test]
        fn proofs_hold_and_tampering_is_caught(
            sizes in proptest::collection::vec(65usize..20_000, 1..6),
            flip in 0usize..64,
            bit in 0u8..8,
        ) {
            let pieces: Vec<(Node, u8)> =
                sizes.iter().enumerate().map(|(i, len)| piece(i as u8 * 2 + 1, *len)).collect();
            let agg = Aggregate::build(&pieces, 1 << 20).unwrap();
            for (n, (commp, height)) in pieces.iter().enumerate() {
                let proof = agg.proof(n).unwrap();
                proptest::prop_assert!(verify(&proof, commp, *height, &agg.root, agg.height).is_ok());
                let mut bad = proof.clone();
                let all = bad.subtree.path.len() + bad.index.path.len();
                let k = flip % all;
                let node = if k < bad.subtree.path.len() {
                    &mut bad.subtree.path[k]
                } else {
                    &mut bad.index.path[k - bad.subtree.path.len()]
                };
                node[flip % 32] ^= 1 << bit;
                proptest::prop_assert!(verify(&bad, commp, *height, &agg.root, agg.height).is_err());
            }
        }
    }

    /// Every proof, node by node, against the whole tree hashed a level at a time.
    #[test]
    fn proofs_match_the_whole_tree() {
        let deal_size = 4u64 << 20;
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let pieces: Vec<(Node, u8)> = (0..30)
            .map(|_| {
                let mut n = [0u8; 32];
                n.iter_mut().for_each(|b| *b = next() as u8);
                n[31] &= 0x3f;
                (n, 2 + (next() % 11) as u8)
            })
            .collect();
        let agg = Aggregate::build(&pieces, deal_size).unwrap();
        // levels[l][i]: the node at (l, i), each piece's commP put in place at its own level.
        let index_start = (index_area_start(deal_size) / 32) as usize;
        let mut layer = vec![[0u8; 32]; (deal_size / 32) as usize];
        for (n, s) in agg.segments.iter().enumerate() {
            let e = s.entry();
            layer[index_start + 2 * n].copy_from_slice(&e[..32]);
            layer[index_start + 2 * n + 1].copy_from_slice(&e[32..]);
        }
        let mut levels = vec![];
        for level in 0..=agg.height {
            for s in agg.segments.iter().filter(|s| s.level() == level) {
                layer[(s.offset / s.size) as usize] = s.commp;
            }
            let up = layer.chunks_exact(2).map(|p| node(&p[0], &p[1])).collect();
            levels.push(std::mem::replace(&mut layer, up));
        }
        assert_eq!(agg.root, levels[agg.height as usize][0]);
        let check = |level: u32, p: &MerkleProof| {
            for (k, sibling) in p.path.iter().enumerate() {
                assert_eq!(sibling, &levels[level as usize + k][((p.index >> k) ^ 1) as usize]);
            }
        };
        for n in 0..pieces.len() {
            let proof = agg.proof(n).unwrap();
            check(agg.segments[n].level(), &proof.subtree);
            check(1, &proof.index);
        }
    }

    #[test]
    fn refuses_what_does_not_fit() {
        assert!(matches!(
            Aggregate::build(&[piece(3, 1000)], 1000),
            Err(AggregateError::DealSize(1000))
        ));
        let big = piece(3, 4000); // 4096 padded
        assert!(matches!(Aggregate::build(&[big], 4096), Err(AggregateError::DoesNotFit { .. })));
        let small = piece(3, 100);
        assert!(matches!(
            Aggregate::build(&[small; 5], 4096),
            Err(AggregateError::TooManyPieces { .. })
        ));
    }
}
