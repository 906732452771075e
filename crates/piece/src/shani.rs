//! Tree nodes two at a time on x86-64's SHA extensions (SHA-NI).
//!
//! A node is `sha256(left ‖ right)`: two compressions, the second over the same padding block
//! for every node. One SHA-256 is a chain of 64 dependent rounds, and the CPU's round
//! instruction (`sha256rnds2`) waits on the one before, so a single stream leaves the SHA unit
//! idle between rounds. Two independent nodes, their rounds interleaved, fill those gaps; the
//! padding block's message schedule is the same for every node and is not computed at all
//! ([`PAD_KW`]).
//!
//! Why our own code: `sha2` hashes one message at a time (its SHA-NI path is the single
//! stream this replaces), and the one multi-buffer crate found (`tape-sha256` 0.2, four
//! streams) was slower than `sha2` for 64-byte messages on this project's machine (see
//! `docs/benchmarks.md`, "Piece engine"). The kernel is checked against `sha2` by `lanes`'
//! property tests and by every commP vector of the crate.
//!
//! One of the workspace's two modules allowed `unsafe` (with `avx512.rs`): calling a function compiled for CPU features after
//! checking that the CPU has them, and unaligned 16-byte loads and stores within arrays.
#![allow(unsafe_code)]

use core::arch::x86_64::{
    __m128i, _mm_add_epi32, _mm_alignr_epi8, _mm_blend_epi16, _mm_loadu_si128, _mm_set_epi64x,
    _mm_sha256msg1_epu32, _mm_sha256msg2_epu32, _mm_sha256rnds2_epu32, _mm_shuffle_epi8,
    _mm_shuffle_epi32, _mm_storeu_si128,
};

use super::{K, PAD_KW};
use crate::commp::{H0, Node};

/// Whether this CPU has what [`hash_pairs`] needs.
pub(crate) fn available() -> bool {
    std::is_x86_feature_detected!("sha")
        && std::is_x86_feature_detected!("sse4.1")
        && std::is_x86_feature_detected!("ssse3")
}

/// Replaces `nodes[i]` with `node(nodes[2i], nodes[2i + 1])` for `i` from `from` below `half`,
/// two at a time, and returns where it stopped: `from` plus an even number, less than two short
/// of `half`, or `from` where the CPU lacks the SHA extensions (the caller does the rest).
/// Earlier parents must be in place already (`from` ≤ what was done); later ones are read
/// before they are overwritten.
pub(crate) fn hash_pairs(nodes: &mut [Node], from: usize, half: usize) -> usize {
    if !available() {
        return from;
    }
    // SAFETY: the CPU has every feature `pairs` is compiled for (checked just above).
    unsafe { pairs(nodes, from, half) }
}

#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
fn pairs(nodes: &mut [Node], from: usize, half: usize) -> usize {
    let half = half.min(nodes.len() / 2);
    let mut done = from;
    while done + 2 <= half {
        let i = 2 * done;
        // Both parents are computed before either is written: nodes[done..done + 2] may be
        // among the four read (at done = 0).
        let parents = two_nodes([&nodes[i], &nodes[i + 1]], [&nodes[i + 2], &nodes[i + 3]]);
        nodes[done..done + 2].copy_from_slice(&parents);
        done += 2;
    }
    done
}

/// Byte order within each 32-bit word: SHA-256 reads big-endian words.
#[target_feature(enable = "sse2")]
fn bswap_mask() -> __m128i {
    _mm_set_epi64x(0x0C0D_0E0F_0809_0A0B, 0x0405_0607_0001_0203)
}

/// The 16 bytes of `node` at `half` (0 or 1), as big-endian words.
#[target_feature(enable = "sse2,ssse3")]
fn load(node: &Node, half: usize) -> __m128i {
    debug_assert!(half < 2);
    // SAFETY: bytes 16·half .. 16·half + 16 lie within the 32-byte array (half < 2); the load
    // is unaligned.
    let v = unsafe { _mm_loadu_si128(node.as_ptr().add(16 * (half & 1)).cast()) };
    _mm_shuffle_epi8(v, bswap_mask())
}

/// Words `4i .. 4i + 4` of `table`.
#[target_feature(enable = "sse2")]
fn words(table: &[u32; 64], i: usize) -> __m128i {
    let i = i & 15;
    // SAFETY: words 4i .. 4i + 4 lie within the 64 (i < 16); the load is unaligned.
    unsafe { _mm_loadu_si128(table.as_ptr().add(4 * i).cast()) }
}

/// The state as SHA-NI keeps it (ABEF, CDGH) from H0..H7.
#[target_feature(enable = "sse2,ssse3,sse4.1")]
fn initial() -> (__m128i, __m128i) {
    // SAFETY: H0 holds 8 words; words 0..4 and 4..8 are read, unaligned.
    let (dcba, hgfe) = unsafe {
        (_mm_loadu_si128(H0.as_ptr().cast()), _mm_loadu_si128(H0.as_ptr().add(4).cast()))
    };
    let cdab = _mm_shuffle_epi32(dcba, 0xB1);
    let efgh = _mm_shuffle_epi32(hgfe, 0x1B);
    (_mm_alignr_epi8(cdab, efgh, 8), _mm_blend_epi16(efgh, cdab, 0xF0))
}

/// The digest (big-endian bytes) of a state kept as ABEF, CDGH, truncated to 254 bits.
#[target_feature(enable = "sse2,ssse3,sse4.1")]
fn digest(abef: __m128i, cdgh: __m128i) -> Node {
    let feba = _mm_shuffle_epi32(abef, 0x1B);
    let dchg = _mm_shuffle_epi32(cdgh, 0xB1);
    let abcd = _mm_shuffle_epi8(_mm_blend_epi16(feba, dchg, 0xF0), bswap_mask());
    let efgh = _mm_shuffle_epi8(_mm_alignr_epi8(dchg, feba, 8), bswap_mask());
    let mut out = [0u8; 32];
    // SAFETY: two 16-byte stores at offsets 0 and 16 of a 32-byte array, unaligned.
    unsafe {
        _mm_storeu_si128(out.as_mut_ptr().cast(), abcd);
        _mm_storeu_si128(out.as_mut_ptr().add(16).cast(), efgh);
    }
    out[31] &= 0x3f;
    out
}

/// The next four schedule words from the last sixteen (`w[0]` oldest).
#[target_feature(enable = "sha,sse2,ssse3")]
fn schedule(w: &[__m128i; 4]) -> __m128i {
    let t = _mm_add_epi32(_mm_sha256msg1_epu32(w[0], w[1]), _mm_alignr_epi8(w[3], w[2], 4));
    _mm_sha256msg2_epu32(t, w[3])
}

/// Four rounds on (ABEF, CDGH) with `wk` = W + K of those rounds.
#[target_feature(enable = "sha,sse2")]
fn rounds4(abef: &mut __m128i, cdgh: &mut __m128i, wk: __m128i) {
    *cdgh = _mm_sha256rnds2_epu32(*cdgh, *abef, wk);
    *abef = _mm_sha256rnds2_epu32(*abef, *cdgh, _mm_shuffle_epi32(wk, 0x0E));
}

/// `[node(a0, a1), node(b0, b1)]`, the two hashes' rounds interleaved.
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
fn two_nodes(a: [&Node; 2], b: [&Node; 2]) -> [Node; 2] {
    let (abef0, cdgh0) = initial();
    let [mut a_abef, mut b_abef] = [abef0; 2];
    let [mut a_cdgh, mut b_cdgh] = [cdgh0; 2];
    let mut aw = [load(a[0], 0), load(a[0], 1), load(a[1], 0), load(a[1], 1)];
    let mut bw = [load(b[0], 0), load(b[0], 1), load(b[1], 0), load(b[1], 1)];
    // The first block: the 64 bytes of the message.
    for i in 0..16 {
        if i >= 4 {
            let (na, nb) = (schedule(&aw), schedule(&bw));
            aw = [aw[1], aw[2], aw[3], na];
            bw = [bw[1], bw[2], bw[3], nb];
        }
        let k = words(&K, i);
        rounds4(&mut a_abef, &mut a_cdgh, _mm_add_epi32(aw[3.min(i)], k));
        rounds4(&mut b_abef, &mut b_cdgh, _mm_add_epi32(bw[3.min(i)], k));
    }
    let (a_mid, b_mid) = (
        (_mm_add_epi32(a_abef, abef0), _mm_add_epi32(a_cdgh, cdgh0)),
        (_mm_add_epi32(b_abef, abef0), _mm_add_epi32(b_cdgh, cdgh0)),
    );
    (a_abef, a_cdgh) = a_mid;
    (b_abef, b_cdgh) = b_mid;
    // The padding block: its W + K are constants.
    for i in 0..16 {
        let wk = words(&PAD_KW, i);
        rounds4(&mut a_abef, &mut a_cdgh, wk);
        rounds4(&mut b_abef, &mut b_cdgh, wk);
    }
    [
        digest(_mm_add_epi32(a_abef, a_mid.0), _mm_add_epi32(a_cdgh, a_mid.1)),
        digest(_mm_add_epi32(b_abef, b_mid.0), _mm_add_epi32(b_cdgh, b_mid.1)),
    ]
}
