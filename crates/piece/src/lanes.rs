//! A layer of the tree at a time: every node of a layer is independent of its neighbours, so
//! several are hashed at once. Where the target has 128-bit SIMD (wasm `simd128`) four nodes go
//! through four lanes (`simd`). On x86-64, sixteen nodes go through the sixteen lanes of
//! AVX-512 (`avx512`), or two nodes' rounds are interleaved on the SHA unit (`shani`),
//! whichever the CPU has, or runs faster when it has both ([`x86::kernel`]). Elsewhere, and for
//! what is left over, each node goes through [`node`] (`sha2`, which uses the SHA extensions
//! one message at a time).
//!
//! No crate on crates.io offers a multi-lane SHA-256 for wasm, hence the code in `simd`; it is
//! checked against [`node`] in headless Chromium (`crates/node/tests/web.rs`). `shani` and
//! `avx512` say why they are ours too.

use crate::commp::{Node, node};

/// Replaces the first half of `nodes` with the parents of its pairs: `nodes[i]` becomes
/// `node(nodes[2i], nodes[2i + 1])`. An odd last node is ignored.
pub(crate) fn hash_pairs_in_place(nodes: &mut [Node]) {
    let half = nodes.len() / 2;
    #[cfg(target_arch = "x86_64")]
    let done = x86::hash_pairs(nodes, half);
    #[cfg(not(target_arch = "x86_64"))]
    #[allow(unused_mut)]
    let mut done = 0;
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    while done + 4 <= half {
        let i = 2 * done;
        let parents = simd::nodes4([
            (&nodes[i], &nodes[i + 1]),
            (&nodes[i + 2], &nodes[i + 3]),
            (&nodes[i + 4], &nodes[i + 5]),
            (&nodes[i + 6], &nodes[i + 7]),
        ]);
        // The reads above cover indices ≥ 2·done ≥ done + 4 once done ≥ 4, and all reads of
        // this step happened before these writes, so working in place is safe.
        nodes[done..done + 4].copy_from_slice(&parents);
        done += 4;
    }
    for i in done..half {
        nodes[i] = node(&nodes[2 * i], &nodes[2 * i + 1]);
    }
}

/// Hashes `nodes` (a power-of-two count) up to their root, in place.
pub(crate) fn root_in_place(nodes: &mut [Node]) -> Node {
    let mut n = nodes.len();
    while n > 1 {
        hash_pairs_in_place(&mut nodes[..n]);
        n /= 2;
    }
    nodes.first().copied().unwrap_or([0; 32])
}

/// SHA-256 round constants (FIPS 180-4, 4.2.2).
#[cfg(any(target_arch = "x86_64", all(target_arch = "wasm32", target_feature = "simd128")))]
pub(crate) const K: [u32; 64] = [
    0x428a_2f98,
    0x7137_4491,
    0xb5c0_fbcf,
    0xe9b5_dba5,
    0x3956_c25b,
    0x59f1_11f1,
    0x923f_82a4,
    0xab1c_5ed5,
    0xd807_aa98,
    0x1283_5b01,
    0x2431_85be,
    0x550c_7dc3,
    0x72be_5d74,
    0x80de_b1fe,
    0x9bdc_06a7,
    0xc19b_f174,
    0xe49b_69c1,
    0xefbe_4786,
    0x0fc1_9dc6,
    0x240c_a1cc,
    0x2de9_2c6f,
    0x4a74_84aa,
    0x5cb0_a9dc,
    0x76f9_88da,
    0x983e_5152,
    0xa831_c66d,
    0xb003_27c8,
    0xbf59_7fc7,
    0xc6e0_0bf3,
    0xd5a7_9147,
    0x06ca_6351,
    0x1429_2967,
    0x27b7_0a85,
    0x2e1b_2138,
    0x4d2c_6dfc,
    0x5338_0d13,
    0x650a_7354,
    0x766a_0abb,
    0x81c2_c92e,
    0x9272_2c85,
    0xa2bf_e8a1,
    0xa81a_664b,
    0xc24b_8b70,
    0xc76c_51a3,
    0xd192_e819,
    0xd699_0624,
    0xf40e_3585,
    0x106a_a070,
    0x19a4_c116,
    0x1e37_6c08,
    0x2748_774c,
    0x34b0_bcb5,
    0x391c_0cb3,
    0x4ed8_aa4a,
    0x5b9c_ca4f,
    0x682e_6ff3,
    0x748f_82ee,
    0x78a5_636f,
    0x84c8_7814,
    0x8cc7_0208,
    0x90be_fffa,
    0xa450_6ceb,
    0xbef9_a3f7,
    0xc671_78f2,
];

#[cfg(any(target_arch = "x86_64", all(target_arch = "wasm32", target_feature = "simd128")))]
/// `K[i] + W[i]` for the second block of every 64-byte message (0x80, zeros, length 512),
/// whose schedule is the same for every node.
pub(crate) const PAD_KW: [u32; 64] = {
    let mut w = [0u32; 64];
    w[0] = 0x8000_0000;
    w[15] = 512;
    let mut i = 16;
    while i < 64 {
        let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
        let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16].wrapping_add(s0).wrapping_add(w[i - 7]).wrapping_add(s1);
        i += 1;
    }
    let mut kw = [0u32; 64];
    let mut i = 0;
    while i < 64 {
        kw[i] = K[i].wrapping_add(w[i]);
        i += 1;
    }
    kw
};

#[cfg(target_arch = "x86_64")]
#[path = "shani.rs"]
mod shani;

#[cfg(target_arch = "x86_64")]
#[path = "avx512.rs"]
mod avx512;

/// The x86-64 kernels and the choice between them.
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86 {
    use std::sync::OnceLock;
    use std::time::{Duration, Instant};

    use super::{avx512, shani};
    use crate::commp::Node;

    /// What hashes whole layers on this CPU.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Kernel {
        /// Sixteen nodes at a time on AVX-512 (`avx512.rs`), what is left on SHA-NI if present.
        Avx512,
        /// Two nodes at a time on SHA-NI (`shani.rs`).
        ShaNi,
        /// Neither: one node at a time through `sha2`.
        Portable,
    }

    impl Kernel {
        /// Its name, as [`crate::tree_kernel`] says it and `ESTUARY_PIECE_KERNEL` takes it.
        pub fn name(self) -> &'static str {
            match self {
                Kernel::Avx512 => "avx512",
                Kernel::ShaNi => "sha-ni",
                Kernel::Portable => "portable",
            }
        }
    }

    /// The kernel this process uses: the one CPU feature it has, or, where it has both, the
    /// faster of the two on this CPU, measured once (about a millisecond). Either gives
    /// the same bytes; which is faster depends on the CPU's SHA and 512-bit units.
    /// `ESTUARY_PIECE_KERNEL` (`avx512`, `sha-ni`, `portable`) names one instead, if the CPU
    /// has it (benchmarks compare them this way).
    pub fn kernel() -> Kernel {
        static KERNEL: OnceLock<Kernel> = OnceLock::new();
        *KERNEL.get_or_init(|| {
            let (wide, two) = (avx512::available(), shani::available());
            let named = std::env::var("ESTUARY_PIECE_KERNEL").ok().and_then(|name| {
                [Kernel::Avx512, Kernel::ShaNi, Kernel::Portable]
                    .into_iter()
                    .find(|k| k.name() == name)
            });
            match (named, wide, two) {
                (Some(Kernel::Avx512), true, _) => Kernel::Avx512,
                (Some(Kernel::ShaNi), _, true) => Kernel::ShaNi,
                (Some(Kernel::Portable), _, _) => Kernel::Portable,
                (_, true, true) => faster(),
                (_, true, false) => Kernel::Avx512,
                (_, false, true) => Kernel::ShaNi,
                (_, false, false) => Kernel::Portable,
            }
        })
    }

    fn faster() -> Kernel {
        let mut nodes: Vec<Node> = (0..4096u32)
            .map(|i| core::array::from_fn(|b| (i.wrapping_mul(0x9E37_79B9) >> (b % 24)) as u8))
            .collect();
        let mut time = |kernel: Kernel| {
            let t = Instant::now();
            with(kernel, &mut nodes, 2048);
            t.elapsed()
        };
        // One untimed call each (caches, a core's clock change for 512-bit work), then the
        // best of five each, the order alternated so that neither always runs after the other.
        time(Kernel::Avx512);
        time(Kernel::ShaNi);
        let (mut wide, mut two) = (Duration::MAX, Duration::MAX);
        for round in 0..5 {
            if round % 2 == 0 {
                wide = wide.min(time(Kernel::Avx512));
                two = two.min(time(Kernel::ShaNi));
            } else {
                two = two.min(time(Kernel::ShaNi));
                wide = wide.min(time(Kernel::Avx512));
            }
        }
        if wide < two { Kernel::Avx512 } else { Kernel::ShaNi }
    }

    /// Replaces `nodes[i]` with `node(nodes[2i], nodes[2i + 1])` for `i` below `half` with the
    /// kernel, and returns how many it did (the caller does the rest).
    pub(crate) fn hash_pairs(nodes: &mut [Node], half: usize) -> usize {
        with(kernel(), nodes, half)
    }

    /// [`hash_pairs`] with a given kernel (tests and benchmarks compare them).
    pub(crate) fn with(kernel: Kernel, nodes: &mut [Node], half: usize) -> usize {
        match kernel {
            Kernel::Avx512 => {
                let done = avx512::hash_pairs(nodes, 0, half);
                shani::hash_pairs(nodes, done, half)
            }
            Kernel::ShaNi => shani::hash_pairs(nodes, 0, half),
            Kernel::Portable => 0,
        }
    }
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod simd {
    use core::arch::wasm32::{
        u32x4, u32x4_add, u32x4_extract_lane, u32x4_shl, u32x4_shr, u32x4_splat, v128,
        v128_bitselect, v128_or, v128_xor,
    };

    use super::{K, PAD_KW};
    use crate::commp::{H0, Node};

    #[inline(always)]
    fn rotr(x: v128, n: u32) -> v128 {
        v128_or(u32x4_shr(x, n), u32x4_shl(x, 32 - n))
    }

    #[inline(always)]
    fn add(a: v128, b: v128) -> v128 {
        u32x4_add(a, b)
    }

    /// One SHA-256 round on four states; `kw` is K[i] + W[i] per lane.
    #[inline(always)]
    fn round(s: &mut [v128; 8], kw: v128) {
        let [a, b, c, d, e, f, g, h] = *s;
        let s1 = v128_xor(v128_xor(rotr(e, 6), rotr(e, 11)), rotr(e, 25));
        // ch(e, f, g): f where e is set, g elsewhere.
        let ch = v128_bitselect(f, g, e);
        let t1 = add(add(h, s1), add(ch, kw));
        let s0 = v128_xor(v128_xor(rotr(a, 2), rotr(a, 13)), rotr(a, 22));
        // maj(a, b, c): where a and b differ c decides, elsewhere they agree.
        let maj = v128_bitselect(c, a, v128_xor(a, b));
        *s = [add(t1, add(s0, maj)), a, b, c, add(d, t1), e, f, g];
    }

    fn word(bytes: &Node, i: usize) -> u32 {
        u32::from_be_bytes([bytes[i * 4], bytes[i * 4 + 1], bytes[i * 4 + 2], bytes[i * 4 + 3]])
    }

    /// `node(left, right)` for four pairs at once.
    pub(super) fn nodes4(pairs: [(&Node, &Node); 4]) -> [Node; 4] {
        let word_of = |lane: usize, i: usize| -> u32 {
            let (left, right) = pairs[lane];
            if i < 8 { word(left, i) } else { word(right, i - 8) }
        };
        let mut w: [v128; 16] = core::array::from_fn(|i| {
            u32x4(word_of(0, i), word_of(1, i), word_of(2, i), word_of(3, i))
        });
        let init: [v128; 8] = core::array::from_fn(|i| u32x4_splat(H0[i]));
        let mut s = init;
        for i in 0..64 {
            if i >= 16 {
                let w15 = w[(i - 15) & 15];
                let w2 = w[(i - 2) & 15];
                let s0 = v128_xor(v128_xor(rotr(w15, 7), rotr(w15, 18)), u32x4_shr(w15, 3));
                let s1 = v128_xor(v128_xor(rotr(w2, 17), rotr(w2, 19)), u32x4_shr(w2, 10));
                w[i & 15] = add(add(w[i & 15], s0), add(w[(i - 7) & 15], s1));
            }
            round(&mut s, add(w[i & 15], u32x4_splat(K[i])));
        }
        let mid: [v128; 8] = core::array::from_fn(|i| add(s[i], init[i]));
        let mut s = mid;
        for kw in PAD_KW {
            round(&mut s, u32x4_splat(kw));
        }
        let words: [v128; 8] = core::array::from_fn(|i| add(s[i], mid[i]));
        let mut out = [[0u8; 32]; 4];
        for (i, v) in words.iter().enumerate() {
            let lane = [
                u32x4_extract_lane::<0>(*v),
                u32x4_extract_lane::<1>(*v),
                u32x4_extract_lane::<2>(*v),
                u32x4_extract_lane::<3>(*v),
            ];
            for (o, x) in out.iter_mut().zip(lane) {
                o[i * 4..i * 4 + 4].copy_from_slice(&x.to_be_bytes());
            }
        }
        for o in &mut out {
            o[31] &= 0x3f;
        }
        out
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use proptest::prelude::*;

    use super::x86::{Kernel, with};
    use super::*;

    /// A kernel's `hash_pairs(nodes, from, half)`, the pairs it does at a time, and whether this
    /// CPU has it (without, its checks pass vacuously: every layer takes another path there).
    type KernelUnderTest = (fn(&mut [Node], usize, usize) -> usize, usize, bool);

    fn kernels() -> [KernelUnderTest; 2] {
        [(avx512::hash_pairs, 16, avx512::available()), (shani::hash_pairs, 2, shani::available())]
    }

    fn reference(nodes: &[Node]) -> Vec<Node> {
        nodes.chunks_exact(2).map(|p| node(&p[0], &p[1])).collect()
    }

    #[test]
    fn each_kernel_on_zeros_ones_and_the_zero_tree() {
        for (hash_pairs, _, available) in kernels() {
            if !available {
                continue;
            }
            for fill in [0u8, 0xff, 0x5a] {
                let mut nodes = vec![[fill; 32]; 64];
                nodes[3][7] ^= 1;
                nodes[40][31] ^= 0x80;
                let want = reference(&nodes);
                assert_eq!(hash_pairs(&mut nodes, 0, 32), 32);
                assert_eq!(&nodes[..32], &want[..]);
            }
        }
    }

    proptest! {
        /// Each kernel from any `from` (the parents below it in place, as its caller leaves
        /// them) to any `half`: a whole number of its steps, less than one step short, `sha2`'s
        /// parents, and what it did not do left as it was.
        #[test]
        fn each_kernel_keeps_its_contract(
            raw in proptest::collection::vec(any::<[u8; 32]>(), 2..100),
            half_less in 0usize..17,
            from in 0usize..20,
        ) {
            let half = (raw.len() / 2).saturating_sub(half_less);
            let from = from.min(half);
            let want = reference(&raw);
            for (hash_pairs, step, available) in kernels() {
                if !available {
                    continue;
                }
                let mut nodes = raw.clone();
                nodes[..from].copy_from_slice(&want[..from]);
                let before = nodes.clone();
                let done = hash_pairs(&mut nodes, from, half);
                prop_assert!(done <= half && (done - from).is_multiple_of(step) && half - done < step);
                prop_assert_eq!(&nodes[..done], &want[..done]);
                prop_assert_eq!(&nodes[done..], &before[done..]);
            }
        }

        /// Every kernel this CPU has, with what it leaves to the next, gives `node`'s parents.
        #[test]
        fn every_kernel_hashes_a_layer_as_sha2_does(
            raw in proptest::collection::vec(any::<[u8; 32]>(), 0..140),
        ) {
            let half = raw.len() / 2;
            let want = reference(&raw);
            for kernel in [Kernel::Avx512, Kernel::ShaNi, Kernel::Portable] {
                let mut nodes = raw.clone();
                let done = with(kernel, &mut nodes, half);
                for i in done..half {
                    nodes[i] = node(&nodes[2 * i], &nodes[2 * i + 1]);
                }
                prop_assert_eq!(&nodes[..half], &want[..], "{:?}", kernel);
            }
        }
    }

    #[test]
    fn the_kernel_is_one_this_cpu_has() {
        let k = x86::kernel();
        assert_eq!(k, x86::kernel(), "chosen once");
        match k {
            Kernel::Avx512 => assert!(avx512::available()),
            Kernel::ShaNi => assert!(shani::available()),
            Kernel::Portable => {}
        }
        assert_eq!(crate::tree_kernel(), k.name());
    }
}
