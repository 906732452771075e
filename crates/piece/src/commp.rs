//! The streaming piece commitment.

use sha2::digest::generic_array::GenericArray;

use crate::fr32::{QUAD, QUAD_PAYLOAD, pad_quad};
use crate::lanes::root_in_place;

/// A tree node: 32 bytes.
pub type Node = [u8; 32];

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
    /// More than fits the largest piece (64 GiB padded).
    #[error("a piece holds at most {MAX_PAYLOAD} bytes of payload")]
    TooLarge,
    /// The prefix given at the end is longer than the quad kept aside for it.
    #[error("a prefix of {0} bytes is longer than the 127 bytes that can be replaced")]
    PrefixTooLong(usize),
    /// [`run_roots`] was given a length that is not a whole number of runs.
    #[error("{0} bytes are not a whole number of {RUN_PAYLOAD}-byte runs")]
    NotWholeRuns(usize),
    /// [`CommP::push_run_roots`] was called where the stream is not at a run boundary.
    #[error(
        "run roots can only be added at a run boundary past the first run, not after {0} bytes"
    )]
    NotAtRunBoundary(u64),
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

pub(crate) const H0: [u32; 8] = [
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

/// Quads per run: the unit of batched (and, natively, parallel) hashing. A run is an aligned
/// subtree of 2^13 leaves: 256 KiB of Fr32 output from 254 KiB of payload.
pub const RUN_QUADS: u64 = 1 << 11;
/// Payload bytes per run.
pub const RUN_PAYLOAD: usize = RUN_QUADS as usize * QUAD_PAYLOAD;
/// Tree level of a run's root, counted from the quad roots.
const RUN_LEVEL: usize = RUN_QUADS.trailing_zeros() as usize;

/// Fr32-pads whole quads into `leaves` (four per quad).
fn pad_into(payload: &[u8], leaves: &mut [Node]) {
    for (quad, four) in payload.chunks_exact(QUAD_PAYLOAD).zip(leaves.chunks_exact_mut(4)) {
        let mut fr = [0u8; QUAD];
        pad_quad(quad.try_into().unwrap_or(&[0; QUAD_PAYLOAD]), &mut fr);
        for (leaf, bytes) in four.iter_mut().zip(fr.chunks_exact(32)) {
            leaf.copy_from_slice(bytes);
        }
    }
}

/// The subtree roots of consecutive runs: `data` holds whole runs of [`RUN_PAYLOAD`] bytes.
///
/// Together with [`CommP::push_run_roots`] this lets several threads or Web Workers hash the
/// runs of one stream while a single [`CommP`] keeps the tree.
pub fn run_roots(data: &[u8]) -> Result<Vec<Node>, PieceError> {
    if !data.len().is_multiple_of(RUN_PAYLOAD) {
        return Err(PieceError::NotWholeRuns(data.len()));
    }
    let mut leaves = vec![[0u8; 32]; 4 * RUN_QUADS as usize];
    Ok(data
        .chunks_exact(RUN_PAYLOAD)
        .map(|run| {
            pad_into(run, &mut leaves);
            root_in_place(&mut leaves)
        })
        .collect())
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
    /// Leaves of the run being filled (after the first run, which holds the deferred quad and
    /// goes quad by quad); allocated on first use.
    run: Vec<Node>,
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
            run: Vec::new(),
        }
    }

    /// Payload bytes pushed so far.
    pub fn payload_size(&self) -> u64 {
        self.quads * QUAD_PAYLOAD as u64 + self.fill as u64
    }

    /// Whether the stream stands at a run boundary past the first run, where
    /// [`push_run_roots`](Self::push_run_roots) may add runs hashed elsewhere.
    pub fn at_run_boundary(&self) -> bool {
        self.fill == 0 && self.quads >= RUN_QUADS && self.quads.is_multiple_of(RUN_QUADS)
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

    /// Adds runs whose roots were computed by [`run_roots`], as if their payload had been
    /// pushed here. Only at a run boundary ([`at_run_boundary`](Self::at_run_boundary)).
    pub fn push_run_roots(&mut self, roots: &[Node]) -> Result<(), PieceError> {
        if !self.at_run_boundary() {
            return Err(PieceError::NotAtRunBoundary(self.payload_size()));
        }
        let added = roots.len() as u64 * RUN_PAYLOAD as u64;
        if self.payload_size().saturating_add(added) > MAX_PAYLOAD {
            return Err(PieceError::TooLarge);
        }
        for root in roots {
            self.quads += RUN_QUADS;
            self.carry(RUN_LEVEL, Pending::Known(*root));
        }
        Ok(())
    }

    /// Hashes whole runs on all cores while the stream is at a run boundary; returns the input
    /// left for the sequential path.
    #[cfg(not(target_arch = "wasm32"))]
    fn update_parallel<'a>(&mut self, mut data: &'a [u8]) -> &'a [u8] {
        let threads = std::thread::available_parallelism().map_or(1, usize::from);
        if threads < 2 || self.fill != 0 {
            return data;
        }
        // Reach a run boundary sequentially, if enough input follows to be worth it.
        let align = if self.quads < RUN_QUADS {
            RUN_QUADS - self.quads
        } else {
            (RUN_QUADS - self.quads % RUN_QUADS) % RUN_QUADS
        };
        let align_bytes = align as usize * QUAD_PAYLOAD;
        if data.len() < align_bytes + 2 * RUN_PAYLOAD {
            return data;
        }
        let (head, tail) = data.split_at(align_bytes);
        for quad in head.chunks_exact(QUAD_PAYLOAD) {
            self.push_quad(quad.try_into().unwrap_or(&[0; QUAD_PAYLOAD]));
        }
        data = tail;
        while data.len() >= 2 * RUN_PAYLOAD {
            let runs = (data.len() / RUN_PAYLOAD).min(threads * 8);
            let (batch, rest) = data.split_at(runs * RUN_PAYLOAD);
            let per_thread = runs.div_ceil(threads);
            let roots: Vec<Node> = std::thread::scope(|scope| {
                let handles: Vec<_> = batch
                    .chunks(per_thread * RUN_PAYLOAD)
                    .map(|part| {
                        scope.spawn(move || {
                            run_roots(part).expect("parts are whole runs: split at run size")
                        })
                    })
                    .collect();
                // A hashing thread that panicked must not leave a wrong commitment behind.
                handles
                    .into_iter()
                    .flat_map(|h| h.join().expect("a piece hashing thread panicked"))
                    .collect()
            });
            // Whole runs at a run boundary: this cannot fail.
            let _ = self.push_run_roots(&roots);
            data = rest;
        }
        data
    }

    fn push_quad(&mut self, quad: &[u8; QUAD_PAYLOAD]) {
        if self.first.is_none() {
            self.first = Some(*quad);
            self.quads += 1;
            self.carry(0, Pending::Leftmost);
        } else if self.quads < RUN_QUADS {
            self.quads += 1;
            self.carry(0, Pending::Known(quad_root(quad)));
        } else {
            if self.run.is_empty() {
                self.run = vec![[0; 32]; 4 * RUN_QUADS as usize];
            }
            let slot = (self.quads % RUN_QUADS) as usize * 4;
            pad_into(quad, &mut self.run[slot..slot + 4]);
            self.quads += 1;
            if self.quads.is_multiple_of(RUN_QUADS) {
                let root = root_in_place(&mut self.run);
                self.carry(RUN_LEVEL, Pending::Known(root));
            }
        }
    }

    /// Carries the quads of a partly filled run one by one.
    fn flush_run(&mut self) {
        if self.quads <= RUN_QUADS {
            return;
        }
        let filled = (self.quads % RUN_QUADS) as usize;
        for i in 0..filled {
            let mut four: [Node; 4] = [[0; 32]; 4];
            four.copy_from_slice(&self.run[4 * i..4 * i + 4]);
            let root = root_in_place(&mut four);
            self.carry(0, Pending::Known(root));
        }
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
        if self.quads == 0 {
            // FRC-0069: less than one quad (even nothing) is zero-padded to a whole one.
            self.push_quad(&[0; QUAD_PAYLOAD]);
        }
        self.flush_run();
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
        let p = commp(&[]).unwrap();
        assert_eq!((p.padded_size, p.payload_size, p.height(), p.padding()), (128, 0, 2, 127));
        assert_eq!(p.commp, commp(&[0; 127]).unwrap().commp);
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
        fn streaming_matches_reference(data in proptest::collection::vec(any::<u8>(), 0..3000),
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

    /// Runs hashed elsewhere give the result of hashing them here; misuse is refused.
    #[test]
    fn run_roots_join_the_stream() {
        let data: Vec<u8> =
            (0..5 * RUN_PAYLOAD as u32 + 999).map(|i| (i.wrapping_mul(40503) >> 7) as u8).collect();
        let mut c = CommP::new();
        assert_eq!(c.push_run_roots(&[]), Err(PieceError::NotAtRunBoundary(0)));
        c.update(&data[..RUN_PAYLOAD]);
        assert!(c.at_run_boundary());
        c.push_run_roots(&run_roots(&data[RUN_PAYLOAD..4 * RUN_PAYLOAD]).unwrap()).unwrap();
        c.update(&data[4 * RUN_PAYLOAD..4 * RUN_PAYLOAD + 5]);
        assert!(!c.at_run_boundary());
        assert!(c.push_run_roots(&[]).is_err());
        c.update(&data[4 * RUN_PAYLOAD + 5..]);
        let info = c.finish().unwrap();
        assert_eq!(info, commp(&data).unwrap());
        assert_eq!(info.commp, reference(&data));
        assert_eq!(run_roots(&data[..10]), Err(PieceError::NotWholeRuns(10)));
    }

    /// Streams ending inside, at the end of, and just past a run.
    #[test]
    fn run_edges() {
        let data: Vec<u8> = (0..3 * RUN_PAYLOAD as u32 + 300).map(|i| (i % 253) as u8).collect();
        for len in [RUN_PAYLOAD + 127, 2 * RUN_PAYLOAD - 1, 2 * RUN_PAYLOAD, 2 * RUN_PAYLOAD + 1] {
            let mut c = CommP::new();
            for part in data[..len].chunks(4096) {
                c.update(part);
            }
            assert_eq!(c.finish().unwrap().commp, reference(&data[..len]), "{len}");
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
