//! The streaming piece commitment.

use sha2::digest::generic_array::GenericArray;

use crate::fr32::{QUAD, QUAD_PAYLOAD, pad_quad};

/// A tree node: 32 bytes.
pub type Node = [u8; 32];

/// The smallest payload with a defined commitment (FRC-0069, go-fil-commp-hashhash).
pub const MIN_PAYLOAD: u64 = 65;
/// Tree levels of the largest piece Filecoin seals: 64 GiB padded, 2^31 leaves.
pub const MAX_LEVELS: usize = 31;
/// The largest padded piece.
pub const MAX_PADDED: u64 = 1 << (MAX_LEVELS + 5);
/// The largest payload (the Fr32-unpadded size of the largest piece).
pub const MAX_PAYLOAD: u64 = MAX_PADDED / 128 * 127;

/// Why a commitment could not be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PieceError {
    /// Fewer than 65 bytes: the commitment is not defined.
    #[error("a piece needs at least {MIN_PAYLOAD} bytes of payload, got {0}")]
    TooSmall(u64),
    /// More than fits the largest piece (64 GiB padded).
    #[error("a piece holds at most {MAX_PAYLOAD} bytes of payload")]
    TooLarge,
    /// The prefix given at the end is longer than the quad kept aside for it.
    #[error("a prefix of {0} bytes is longer than the 127 bytes that can be replaced")]
    PrefixTooLong(usize),
}

/// A computed piece: its commitment and sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PieceInfo {
    /// The commitment (the tree's root).
    pub commp: Node,
    /// The padded piece size: a power of two, at least 128.
    pub padded_size: u64,
    /// The payload bytes committed to.
    pub payload_size: u64,
}

impl PieceInfo {
    /// Levels above the leaves: log2(padded size / 32).
    pub fn height(&self) -> u8 {
        (self.padded_size / 32).trailing_zeros() as u8
    }

    /// Zero bytes added to the payload to fill the piece before Fr32 (FRC-0069's padding).
    pub fn padding(&self) -> u64 {
        self.padded_size / 128 * 127 - self.payload_size
    }
}

const H0: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];

/// The second SHA-256 block of any 64-byte message: 0x80, zeros, and the length (512 bits).
const PAD_BLOCK: [u8; 64] = {
    let mut b = [0u8; 64];
    b[0] = 0x80;
    b[62] = 0x02;
    b
};

/// sha256(left ‖ right) with the two top bits of the last byte cleared (sha2-256-trunc254).
pub fn node(left: &Node, right: &Node) -> Node {
    let mut block = [0u8; 64];
    block[..32].copy_from_slice(left);
    block[32..].copy_from_slice(right);
    let mut state = H0;
    sha2::compress256(
        &mut state,
        &[*GenericArray::from_slice(&block), *GenericArray::from_slice(&PAD_BLOCK)],
    );
    let mut out = [0u8; 32];
    for (chunk, word) in out.chunks_exact_mut(4).zip(state) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    out[31] &= 0x3f;
    out
}

/// Roots of all-zero subtrees: `zero_roots()[l]` covers 2^l leaves.
pub fn zero_roots() -> &'static [Node; MAX_LEVELS + 1] {
    static ZERO: std::sync::OnceLock<[Node; MAX_LEVELS + 1]> = std::sync::OnceLock::new();
    ZERO.get_or_init(|| {
        let mut z = [[0u8; 32]; MAX_LEVELS + 1];
        for l in 1..=MAX_LEVELS {
            z[l] = node(&z[l - 1], &z[l - 1]);
        }
        z
    })
}

/// The root of one Fr32-expanded quad (4 leaves → level 2).
fn quad_root(quad: &[u8; QUAD_PAYLOAD]) -> Node {
    let mut fr = [0u8; QUAD];
    pad_quad(quad, &mut fr);
    let leaf = |i: usize| -> Node { fr[i * 32..(i + 1) * 32].try_into().unwrap_or([0; 32]) };
    node(&node(&leaf(0), &leaf(1)), &node(&leaf(2), &leaf(3)))
}

/// Quads per subtree hashed on its own thread (about 254 KiB of payload).
#[cfg(not(target_arch = "wasm32"))]
const PAR_QUADS: u64 = 1 << 11;

/// The root over exactly a power-of-two number of whole quads.
#[cfg(not(target_arch = "wasm32"))]
fn subtree_root(data: &[u8]) -> Node {
    let mut stack: Vec<(u32, Node)> = Vec::with_capacity(16);
    for quad in data.chunks_exact(QUAD_PAYLOAD) {
        let mut item = (0u32, quad_root(quad.try_into().unwrap_or(&[0; QUAD_PAYLOAD])));
        while let Some(&(level, left)) = stack.last() {
            if level != item.0 {
                break;
            }
            stack.pop();
            item = (level + 1, node(&left, &item.1));
        }
        stack.push(item);
    }
    stack.pop().map_or([0; 32], |(_, n)| n)
}

/// A pending subtree: known, or the leftmost one, which waits for the first quad.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    Known(Node),
    Leftmost,
}

/// Streaming commP: push bytes, then finish.
#[derive(Debug, Clone)]
pub struct CommP {
    quad: [u8; QUAD_PAYLOAD],
    fill: usize,
    first: Option<[u8; QUAD_PAYLOAD]>,
    quads: u64,
    /// `levels[i]` is the pending node at tree level `i + 2` (quad roots are level 2).
    levels: Vec<Option<Pending>>,
    /// Right siblings met by the leftmost subtree, by level (index `i` is level `i + 2`).
    right: Vec<Option<Node>>,
}

impl Default for CommP {
    fn default() -> Self {
        Self::new()
    }
}

impl CommP {
    /// An empty accumulator.
    pub fn new() -> Self {
        Self {
            quad: [0; QUAD_PAYLOAD],
            fill: 0,
            first: None,
            quads: 0,
            levels: Vec::new(),
            right: Vec::new(),
        }
    }

    /// Payload bytes pushed so far.
    pub fn payload_size(&self) -> u64 {
        self.quads * QUAD_PAYLOAD as u64 + self.fill as u64
    }

    /// Adds payload bytes.
    pub fn update(&mut self, mut data: &[u8]) {
        if self.fill > 0 {
            let take = (QUAD_PAYLOAD - self.fill).min(data.len());
            self.quad[self.fill..self.fill + take].copy_from_slice(&data[..take]);
            self.fill += take;
            data = &data[take..];
            if self.fill < QUAD_PAYLOAD {
                return;
            }
            let quad = self.quad;
            self.push_quad(&quad);
            self.fill = 0;
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            data = self.update_parallel(data);
        }
        let mut quads = data.chunks_exact(QUAD_PAYLOAD);
        for quad in &mut quads {
            self.push_quad(quad.try_into().unwrap_or(&[0; QUAD_PAYLOAD]));
        }
        let rest = quads.remainder();
        self.quad[..rest.len()].copy_from_slice(rest);
        self.fill = rest.len();
    }

    /// Hashes whole runs of [`PAR_QUADS`] quads on all cores while the tree is aligned to them;
    /// returns the input left for the sequential path.
    #[cfg(not(target_arch = "wasm32"))]
    fn update_parallel<'a>(&mut self, mut data: &'a [u8]) -> &'a [u8] {
        const RUN: usize = PAR_QUADS as usize * QUAD_PAYLOAD;
        let threads = std::thread::available_parallelism().map_or(1, usize::from);
        if threads < 2 || self.fill != 0 {
            return data;
        }
        // Reach a multiple of PAR_QUADS sequentially (the first run always is: its first quad
        // stays aside for `finish_with_prefix`), if enough input follows to be worth it.
        let align = if self.quads == 0 {
            PAR_QUADS
        } else {
            (PAR_QUADS - self.quads % PAR_QUADS) % PAR_QUADS
        };
        let align_bytes = align as usize * QUAD_PAYLOAD;
        if data.len() < align_bytes + 2 * RUN {
            return data;
        }
        let (head, tail) = data.split_at(align_bytes);
        for quad in head.chunks_exact(QUAD_PAYLOAD) {
            self.push_quad(quad.try_into().unwrap_or(&[0; QUAD_PAYLOAD]));
        }
        data = tail;
        while data.len() >= 2 * RUN {
            let runs = (data.len() / RUN).min(threads * 8);
            let (batch, rest) = data.split_at(runs * RUN);
            let per_thread = runs.div_ceil(threads);
            let roots: Vec<Node> = std::thread::scope(|scope| {
                let handles: Vec<_> = batch
                    .chunks(per_thread * RUN)
                    .map(|part| {
                        scope.spawn(move || {
                            part.chunks_exact(RUN).map(subtree_root).collect::<Vec<_>>()
                        })
                    })
                    .collect();
                handles.into_iter().flat_map(|h| h.join().unwrap_or_default()).collect()
            });
            for root in roots {
                self.quads += PAR_QUADS;
                self.carry(PAR_QUADS.trailing_zeros() as usize, Pending::Known(root));
            }
            data = rest;
        }
        data
    }

    fn push_quad(&mut self, quad: &[u8; QUAD_PAYLOAD]) {
        self.quads += 1;
        let pending = if self.first.is_none() {
            self.first = Some(*quad);
            Pending::Leftmost
        } else {
            Pending::Known(quad_root(quad))
        };
        self.carry(0, pending);
    }

    /// Adds a completed subtree at `level` (relative to quad roots), merging upward.
    fn carry(&mut self, mut level: usize, mut node: Pending) {
        loop {
            if self.levels.len() <= level {
                self.levels.resize(level + 1, None);
                self.right.resize(level + 1, None);
            }
            match (self.levels[level].take(), node) {
                (None, n) => {
                    self.levels[level] = Some(n);
                    return;
                }
                (Some(left), right) => node = self.merge(level, left, right),
            }
            level += 1;
        }
    }

    fn merge(&mut self, level: usize, left: Pending, right: Pending) -> Pending {
        match (left, right) {
            (Pending::Known(l), Pending::Known(r)) => Pending::Known(node(&l, &r)),
            (Pending::Leftmost, Pending::Known(r)) => {
                self.right[level] = Some(r);
                Pending::Leftmost
            }
            // The leftmost subtree is always on the left.
            (_, Pending::Leftmost) => Pending::Leftmost,
        }
    }

    /// The commitment of everything pushed.
    pub fn finish(self) -> Result<PieceInfo, PieceError> {
        self.finish_with_prefix(&[])
    }

    /// The commitment of everything pushed, with its first `prefix.len()` bytes (at most 127)
    /// replaced by `prefix`.
    pub fn finish_with_prefix(mut self, prefix: &[u8]) -> Result<PieceInfo, PieceError> {
        let payload_size = self.payload_size();
        if payload_size < MIN_PAYLOAD {
            return Err(PieceError::TooSmall(payload_size));
        }
        if payload_size > MAX_PAYLOAD {
            return Err(PieceError::TooLarge);
        }
        if prefix.len() > QUAD_PAYLOAD || prefix.len() as u64 > payload_size {
            return Err(PieceError::PrefixTooLong(prefix.len()));
        }
        if self.fill > 0 {
            self.quad[self.fill..].fill(0);
            let quad = self.quad;
            self.push_quad(&quad);
            self.fill = 0;
        }
        let padded_size = (self.quads * QUAD as u64).next_power_of_two();
        let height = (padded_size / 32).trailing_zeros() as usize; // ≥ 2
        let zero = zero_roots();

        // Fill the tree to a power of two with zero subtrees, from the bottom up.
        let mut carry: Option<Pending> = None;
        for level in 0..height - 2 {
            let pending = self.levels.get_mut(level).and_then(Option::take);
            let zero_here = Pending::Known(zero[level + 2]);
            carry = match (pending, carry) {
                (Some(p), Some(c)) => Some(self.merge(level, p, c)),
                (Some(p), None) => Some(self.merge(level, p, zero_here)),
                (None, Some(c)) => Some(self.merge(level, c, zero_here)),
                (None, None) => None,
            };
        }
        let root = carry
            .or_else(|| self.levels.get_mut(height - 2).and_then(Option::take))
            .unwrap_or(Pending::Leftmost);

        // Resolve the leftmost spine now that the first quad is final.
        let mut first = self.first.unwrap_or([0; QUAD_PAYLOAD]);
        first[..prefix.len()].copy_from_slice(prefix);
        let commp = match root {
            Pending::Known(n) => n,
            Pending::Leftmost => {
                let mut acc = quad_root(&first);
                for level in 0..height - 2 {
                    let sibling =
                        self.right.get(level).copied().flatten().unwrap_or(zero[level + 2]);
                    acc = node(&acc, &sibling);
                }
                acc
            }
        };
        Ok(PieceInfo { commp, padded_size, payload_size })
    }
}

/// The commitment of `data` in one call.
pub fn commp(data: &[u8]) -> Result<PieceInfo, PieceError> {
    let mut c = CommP::new();
    c.update(data);
    c.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use sha2::{Digest, Sha256};

    /// A plain, obviously correct reference: Fr32 everything, pad with zero leaves, hash up.
    fn reference(data: &[u8]) -> Node {
        let quads = data.len().div_ceil(QUAD_PAYLOAD).max(1);
        let padded = (quads * QUAD).next_power_of_two();
        let mut payload = data.to_vec();
        payload.resize(padded / QUAD * QUAD_PAYLOAD, 0);
        let mut layer: Vec<Node> = Vec::new();
        for q in payload.chunks_exact(QUAD_PAYLOAD) {
            let mut fr = [0u8; QUAD];
            pad_quad(q.try_into().unwrap(), &mut fr);
            layer.extend(fr.chunks_exact(32).map(|c| <Node>::try_from(c).unwrap()));
        }
        while layer.len() > 1 {
            layer = layer
                .chunks_exact(2)
                .map(|p| {
                    let mut h: Node =
                        Sha256::new().chain_update(p[0]).chain_update(p[1]).finalize().into();
                    h[31] &= 0x3f;
                    h
                })
                .collect();
        }
        layer[0]
    }

    #[test]
    fn node_matches_plain_sha256() {
        let (a, b) = ([1u8; 32], [2u8; 32]);
        let mut want: Node = Sha256::new().chain_update(a).chain_update(b).finalize().into();
        want[31] &= 0x3f;
        assert_eq!(node(&a, &b), want);
    }

    #[test]
    fn sizes_and_limits() {
        assert_eq!(commp(&[0; 64]), Err(PieceError::TooSmall(64)));
        let p = commp(&[0; 65]).unwrap();
        assert_eq!((p.padded_size, p.payload_size, p.height(), p.padding()), (128, 65, 2, 62));
        let p = commp(&[0; 128]).unwrap();
        assert_eq!((p.padded_size, p.height(), p.padding()), (256, 3, 126));
        assert_eq!(commp(&[7; 1016]).unwrap().padded_size, 1024);
        assert_eq!(commp(&[7; 1017]).unwrap().padded_size, 2048);
    }

    #[test]
    fn prefix_replaces_the_first_bytes() {
        let mut data: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        let mut c = CommP::new();
        c.update(&data);
        let patched = c.finish_with_prefix(b"header!").unwrap();
        data[..7].copy_from_slice(b"header!");
        assert_eq!(patched, commp(&data).unwrap());
        let mut c = CommP::new();
        c.update(&data);
        assert_eq!(c.finish_with_prefix(&[0; 128]), Err(PieceError::PrefixTooLong(128)));
    }

    proptest! {
        /// Streaming in any split equals the plain reference.
        #[test]
        fn streaming_matches_reference(data in proptest::collection::vec(any::<u8>(), 65..3000),
                                       splits in proptest::collection::vec(1usize..300, 0..20)) {
            let mut c = CommP::new();
            let mut rest = &data[..];
            for s in splits {
                let n = s.min(rest.len());
                c.update(&rest[..n]);
                rest = &rest[n..];
            }
            c.update(rest);
            let info = c.finish().unwrap();
            prop_assert_eq!(info.commp, reference(&data));
            prop_assert_eq!(info.payload_size, data.len() as u64);
        }
    }

    /// The parallel path (large updates on several cores) gives the sequential result.
    #[test]
    fn parallel_matches_sequential() {
        let data: Vec<u8> =
            (0..9_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        let mut big = CommP::new();
        big.update(&data[..5000]);
        big.update(&data[5000..]);
        let mut small = CommP::new();
        for piece in data.chunks(100_000) {
            small.update(piece);
        }
        let (a, b) = (big.finish().unwrap(), small.finish().unwrap());
        assert_eq!(a, b);
        assert_eq!(a.commp, reference(&data));
    }
}
