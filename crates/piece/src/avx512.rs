//! Tree nodes sixteen at a time on AVX-512 (`avx512f`, `avx512bw`).
//!
//! A node is `sha256(left ‖ right)`. Every node of a layer is independent, so sixteen of them
//! go through the sixteen 32-bit lanes of a 512-bit register: one instruction stream does the
//! same round for all of them. AVX-512 has what SHA-256's rounds need in single instructions
//! (a rotate, `vprord`, and any three-input bit function, `vpternlogd`: Ch, Maj and the
//! three-way xors), and 32 registers, enough for the state and the message schedule. The
//! padding block's schedule is the same for every node and is not computed ([`PAD_KW`]).
//!
//! Why our own code: no crate on crates.io hashes many short messages at once with AVX-512
//! (`sha2` hashes one message at a time; see `shani.rs` for the one multi-buffer crate
//! found). On a CPU with both, which of this and the two-stream SHA-NI kernel is faster
//! depends on its SHA and 512-bit units (`docs/benchmarks.md`, "Piece engine", has this
//! project's machine): [`super::x86::kernel`] measures once per process. Checked against
//! `sha2` by `lanes`' property tests (the kernel's contract, whole layers) and by every commP
//! vector of the crate.
//!
//! `unsafe`: calling functions compiled for CPU features after checking that the CPU has them,
//! unaligned 64-byte loads and stores within arrays whose bounds are checked here.
#![allow(unsafe_code)]

use core::arch::x86_64::{
    __m512i, _mm512_add_epi32, _mm512_loadu_si512, _mm512_permutex2var_epi32, _mm512_ror_epi32,
    _mm512_set1_epi32, _mm512_set4_epi32, _mm512_shuffle_epi8, _mm512_srli_epi32,
    _mm512_storeu_si512, _mm512_ternarylogic_epi32,
};

use super::{K, PAD_KW};
use crate::commp::{H0, Node};

/// Nodes hashed at once.
pub(crate) const LANES: usize = 16;

/// Whether this CPU has what [`hash_pairs`] needs.
pub(crate) fn available() -> bool {
    std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512bw")
}

/// Replaces `nodes[i]` with `node(nodes[2i], nodes[2i + 1])` for `i` from `from` below `half`,
/// sixteen at a time, and returns where it stopped: `from` plus a multiple of 16, less than 16
/// short of `half`, or `from` where the CPU lacks AVX-512 (the caller does the rest). Earlier
/// parents must be in place already; later ones are read before they are overwritten.
pub(crate) fn hash_pairs(nodes: &mut [Node], from: usize, half: usize) -> usize {
    if !available() {
        return from;
    }
    // SAFETY: the CPU has every feature `pairs` is compiled for (checked just above).
    unsafe { pairs(nodes, from, half) }
}

#[target_feature(enable = "avx512f,avx512bw")]
fn pairs(nodes: &mut [Node], from: usize, half: usize) -> usize {
    let half = half.min(nodes.len() / 2);
    let mut done = from;
    while done + LANES <= half {
        let Some(input) = nodes[2 * done..].first_chunk::<{ 2 * LANES }>() else { break };
        // All sixteen parents are computed before any is written: at done < 16 they overwrite
        // nodes that are read.
        let parents = sixteen(input);
        nodes[done..done + LANES].copy_from_slice(&parents);
        done += LANES;
    }
    done
}

#[target_feature(enable = "avx512f,avx512bw")]
fn add(a: __m512i, b: __m512i) -> __m512i {
    _mm512_add_epi32(a, b)
}

/// `a ^ b ^ c`.
#[target_feature(enable = "avx512f,avx512bw")]
fn xor3(a: __m512i, b: __m512i, c: __m512i) -> __m512i {
    _mm512_ternarylogic_epi32::<0x96>(a, b, c)
}

/// Σ0 of FIPS 180-4 (4.4).
#[target_feature(enable = "avx512f,avx512bw")]
fn big0(a: __m512i) -> __m512i {
    xor3(_mm512_ror_epi32::<2>(a), _mm512_ror_epi32::<13>(a), _mm512_ror_epi32::<22>(a))
}

/// Σ1.
#[target_feature(enable = "avx512f,avx512bw")]
fn big1(e: __m512i) -> __m512i {
    xor3(_mm512_ror_epi32::<6>(e), _mm512_ror_epi32::<11>(e), _mm512_ror_epi32::<25>(e))
}

/// σ0.
#[target_feature(enable = "avx512f,avx512bw")]
fn small0(w: __m512i) -> __m512i {
    xor3(_mm512_ror_epi32::<7>(w), _mm512_ror_epi32::<18>(w), _mm512_srli_epi32::<3>(w))
}

/// σ1.
#[target_feature(enable = "avx512f,avx512bw")]
fn small1(w: __m512i) -> __m512i {
    xor3(_mm512_ror_epi32::<17>(w), _mm512_ror_epi32::<19>(w), _mm512_srli_epi32::<10>(w))
}

/// Ch(e, f, g): f where e is set, g elsewhere.
#[target_feature(enable = "avx512f,avx512bw")]
fn ch(e: __m512i, f: __m512i, g: __m512i) -> __m512i {
    _mm512_ternarylogic_epi32::<0xCA>(e, f, g)
}

/// Maj(a, b, c): the bit two or three of them have.
#[target_feature(enable = "avx512f,avx512bw")]
fn maj(a: __m512i, b: __m512i, c: __m512i) -> __m512i {
    _mm512_ternarylogic_epi32::<0xE8>(a, b, c)
}

/// Byte order within each 32-bit word: SHA-256 reads big-endian words.
#[target_feature(enable = "avx512f,avx512bw")]
fn bswap_mask() -> __m512i {
    _mm512_set4_epi32(0x0C0D_0E0F, 0x0809_0A0B, 0x0405_0607, 0x0001_0203)
}

/// One round; the caller rotates the names of the eight working variables.
macro_rules! round {
    ($a:ident, $b:ident, $c:ident, $d:ident, $e:ident, $f:ident, $g:ident, $h:ident, $kw:expr) => {
        let t1 = add(add($h, big1($e)), add(ch($e, $f, $g), $kw));
        let t2 = add(big0($a), maj($a, $b, $c));
        $d = add($d, t1);
        $h = add(t1, t2);
    };
}

/// The 64 rounds of one block from `state`, with `kw(i)` = K[i] + W[i] per lane; returns the
/// state after the rounds (before the feed-forward).
#[target_feature(enable = "avx512f,avx512bw")]
fn rounds(state: [__m512i; 8], mut kw: impl FnMut(usize) -> __m512i) -> [__m512i; 8] {
    let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut h] = state;
    let mut i = 0;
    while i < 64 {
        round!(a, b, c, d, e, f, g, h, kw(i));
        round!(h, a, b, c, d, e, f, g, kw(i + 1));
        round!(g, h, a, b, c, d, e, f, kw(i + 2));
        round!(f, g, h, a, b, c, d, e, kw(i + 3));
        round!(e, f, g, h, a, b, c, d, kw(i + 4));
        round!(d, e, f, g, h, a, b, c, kw(i + 5));
        round!(c, d, e, f, g, h, a, b, kw(i + 6));
        round!(b, c, d, e, f, g, h, a, kw(i + 7));
        i += 8;
    }
    [a, b, c, d, e, f, g, h]
}

/// The sixteen 64-byte rows of `rows` transposed: word `t` of row `j` becomes lane `j` of
/// row `t`. Four stages; the stage of width `b` swaps the off-diagonal `b`×`b` blocks of every
/// `2b`×`2b` block (one two-source permutation per row).
#[target_feature(enable = "avx512f,avx512bw")]
fn transpose(rows: [__m512i; 16]) -> [__m512i; 16] {
    let mut r = rows;
    let mut b = 8;
    while b > 0 {
        // Row i (bit b clear) takes, at columns with bit b set, row i + b's columns c - b; row
        // i + b takes, at columns with bit b clear, row i's columns c + b. Indices from 16 name
        // the second source.
        let low: [i32; 16] =
            core::array::from_fn(|c| if c & b == 0 { c as i32 } else { (16 + c - b) as i32 });
        let high: [i32; 16] =
            core::array::from_fn(|c| if c & b == 0 { (c + b) as i32 } else { (16 + c) as i32 });
        // SAFETY: 64-byte loads from 64-byte arrays, unaligned.
        let (low, high) = unsafe {
            (_mm512_loadu_si512(low.as_ptr().cast()), _mm512_loadu_si512(high.as_ptr().cast()))
        };
        for i in (0..16).filter(|i| i & b == 0) {
            let (x, y) = (r[i], r[i + b]);
            r[i] = _mm512_permutex2var_epi32(x, low, y);
            r[i + b] = _mm512_permutex2var_epi32(x, high, y);
        }
        b /= 2;
    }
    r
}

/// `node(input[2j], input[2j + 1])` for j in 0..16.
#[target_feature(enable = "avx512f,avx512bw")]
fn sixteen(input: &[Node; 2 * LANES]) -> [Node; LANES] {
    let bswap = bswap_mask();
    // Row j: pair j's 64 bytes.
    let rows: [__m512i; 16] = core::array::from_fn(|j| {
        // SAFETY: bytes 64·j .. 64·j + 64 lie within the 1,024 bytes of `input` (j < 16); the
        // load is unaligned.
        unsafe { _mm512_loadu_si512(input.as_ptr().add(2 * j).cast()) }
    });
    let mut w = transpose(rows).map(|v| _mm512_shuffle_epi8(v, bswap));
    let init: [__m512i; 8] = core::array::from_fn(|i| _mm512_set1_epi32(H0[i] as i32));
    let s = rounds(init, |i| {
        if i >= 16 {
            let t = i & 15;
            w[t] = add(
                add(w[t], small0(w[(i - 15) & 15])),
                add(w[(i - 7) & 15], small1(w[(i - 2) & 15])),
            );
        }
        add(w[i & 15], _mm512_set1_epi32(K[i] as i32))
    });
    let mid: [__m512i; 8] = core::array::from_fn(|i| add(s[i], init[i]));
    let s = rounds(mid, |i| _mm512_set1_epi32(PAD_KW[i] as i32));
    let mut words = [[0u32; LANES]; 8];
    for (i, row) in words.iter_mut().enumerate() {
        let v = _mm512_shuffle_epi8(add(s[i], mid[i]), bswap);
        // SAFETY: a 64-byte store into a 64-byte array, unaligned.
        unsafe { _mm512_storeu_si512(row.as_mut_ptr().cast(), v) };
    }
    let mut out = [[0u8; 32]; LANES];
    for (j, o) in out.iter_mut().enumerate() {
        for (i, row) in words.iter().enumerate() {
            o[4 * i..4 * i + 4].copy_from_slice(&row[j].to_ne_bytes());
        }
        o[31] &= 0x3f;
    }
    out
}
