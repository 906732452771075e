//! A chain with the contracts, an oracle process, and ways to poke them.

use estuary_cli::devnet::LocalChain;

/// The shared local chain ([`LocalChain`]: anvil mining a block per transaction, the contracts
/// deployed).
pub struct Chain(LocalChain);

impl std::ops::Deref for Chain {
    type Target = LocalChain;
    fn deref(&self) -> &LocalChain {
        &self.0
    }
}

impl Chain {
    /// anvil mining a block per transaction, with the contracts deployed.
    pub async fn start() -> Chain {
        Chain(LocalChain::start(None).await.expect("a local chain"))
    }
}

/// A CIDv1 (raw, sha2-256) whose digest is `n` repeated.
pub fn cid(n: u8) -> Vec<u8> {
    let mut v = vec![0x01, 0x55, 0x12, 0x20];
    v.extend([n; 32]);
    v
}

/// Deterministic bytes that do not repeat (xorshift64), so no two chunks share a CID.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
