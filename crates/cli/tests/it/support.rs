//! A chain with the contracts, an oracle process, and ways to poke them.

use alloy::{node_bindings::AnvilInstance, primitives::Address, signers::local::PrivateKeySigner};
use estuary_cli::devnet::{self, Deployment};

pub struct Chain {
    pub anvil: AnvilInstance,
    pub deployment: Deployment,
}

impl Chain {
    /// anvil mining a block per transaction, with the contracts deployed.
    pub async fn start() -> Chain {
        // A deployment that fails (forge's receipt wait has been seen to hang; `deploy` stops it)
        // is tried once more on a fresh chain, so that a test fails for what it tests.
        let mut attempts = 0;
        loop {
            attempts += 1;
            let anvil = devnet::start_anvil(None, None).expect("anvil");
            let signer: PrivateKeySigner = anvil.keys()[0].clone().into();
            let operator = *anvil.addresses().last().expect("accounts");
            match devnet::deploy(&anvil.endpoint(), &signer, operator).await {
                Ok(deployment) => return Chain { anvil, deployment },
                Err(e) if attempts < 2 => eprintln!("deployment failed, retrying: {e:#}"),
                Err(e) => panic!("deploy: {e:#}"),
            }
        }
    }

    pub fn signer(&self, index: usize) -> PrivateKeySigner {
        self.anvil.keys()[index].clone().into()
    }

    pub fn address(&self, index: usize) -> Address {
        self.anvil.addresses()[index]
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
