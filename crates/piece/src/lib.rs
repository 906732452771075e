//! Filecoin piece commitments (commP), computed as a stream.
//!
//! ```text
//!  bytes ─► 127-byte quads ─► Fr32 (128 bytes = 4 leaves of 32) ─► sha256-trunc254 binary tree
//!                                                                    │ pending node per level
//!  finish: zero quads to the next power of two ──────────────────────┴─► root (commP)
//! ```
//!
//! Memory is one quad, one pending node per tree level (at most 31) and the leaves of one run
//! (256 KiB) whatever the size. Runs are hashed a layer at a time, four nodes at once in wasm
//! `simd128` lanes, on x86-64 sixteen at once in AVX-512 lanes or two at once on the SHA
//! extensions, whichever this CPU runs faster unless `ESTUARY_PIECE_KERNEL` says ([`tree_kernel`]; the workspace's only modules
//! allowed `unsafe`), and natively on every core; [`run_roots`] and [`CommP::push_run_roots`]
//! let Web Workers share one stream.
//! The first quad is kept aside until [`CommP::finish_with_prefix`], so a writer that patches
//! the first bytes of its output at the end (a CAR header naming a root known only then) still
//! gets the commitment of the final bytes in one pass.
//!
//! - [`fr32`]: the 127 → 128 byte expansion;
//! - [`aggregate`]: FRC-0058 aggregation with index and inclusion proofs;
//! - [`commp`]: the streaming tree;
//! - `parallel` (native): [`ParallelCommP`], the tree hashed on every core beside the caller;
//! - [`piece_cid`]: piece CIDs v1 (`baga…`, size carried separately) and v2 (FRC-0069, `bafkzcib…`).

pub mod aggregate;
pub mod commp;
pub mod fr32;
#[doc(hidden)]
pub mod fuzzing;
mod lanes;
#[cfg(not(target_arch = "wasm32"))]
pub mod parallel;
pub mod piece_cid;

pub use commp::{CommP, PieceError, PieceInfo, RUN_PAYLOAD, run_roots};
#[cfg(not(target_arch = "wasm32"))]
pub use parallel::ParallelCommP;
pub use piece_cid::{PieceCid, PieceCidError};

/// The name of what hashes the piece tree's layers in this process: `avx512` (sixteen nodes at
/// a time), `sha-ni` (two), `simd128` (wasm, four) or `portable` (one, through `sha2`). Tools
/// print it beside their figures; `ESTUARY_PIECE_KERNEL` chooses one on x86-64 (see
/// `docs/benchmarks.md`).
pub fn tree_kernel() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    return lanes::x86::kernel().name();
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    return "simd128";
    #[allow(unreachable_code)]
    "portable"
}
