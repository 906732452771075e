//! The chain settings, declared once: flags, `ESTUARY_*` variables and the config file all read
//! this one definition (the oracle and the SP agent flatten it into their commands).

use std::time::Duration;

/// Which blocks count as confirmed.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Finality {
    /// The head minus `--confirmations`.
    #[default]
    Depth,
    /// The RPC's `safe` block.
    Safe,
    /// The RPC's `finalized` block.
    Finalized,
}

/// How to reach the chain and which blocks to trust.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct ChainConfig {
    /// JSON-RPC endpoint of the chain.
    #[arg(long, env = "ESTUARY_RPC_URL", default_value = "http://127.0.0.1:8545")]
    pub rpc_url: String,
    /// More endpoints of the same chain: the watcher fails over to them when a call fails or
    /// hangs, and transactions go out through all of them.
    #[arg(long = "rpc-fallback", env = "ESTUARY_RPC_FALLBACKS", value_delimiter = ',')]
    pub rpc_fallbacks: Vec<String>,
    /// Seconds one watcher step may take on an endpoint before the next endpoint is tried.
    #[arg(long, env = "ESTUARY_RPC_TIMEOUT_SECS", default_value_t = 20)]
    pub rpc_timeout_secs: u64,
    /// Refuse to start unless the endpoint serves this chain.
    #[arg(long, env = "ESTUARY_CHAIN_ID")]
    pub chain_id: Option<u64>,
    /// Blocks a log must be buried under before it is acted on (with `--finality depth`), and
    /// a transaction before it counts as done.
    #[arg(long, env = "ESTUARY_CONFIRMATIONS", default_value_t = 1)]
    pub confirmations: u64,
    /// Which blocks count as confirmed: `depth` (head minus --confirmations), or the RPC's
    /// `safe` or `finalized` block.
    #[arg(long, env = "ESTUARY_FINALITY", value_enum, default_value_t = Finality::Depth)]
    pub finality: Finality,
    /// Most blocks per `eth_getLogs` call.
    #[arg(long, env = "ESTUARY_MAX_BLOCK_RANGE", default_value_t = 1000)]
    pub max_block_range: u64,
    /// Milliseconds between looks at the chain head when caught up.
    #[arg(long, env = "ESTUARY_POLL_INTERVAL_MS", default_value_t = 500)]
    pub poll_interval_ms: u64,
}

impl ChainConfig {
    /// The settings the local stack uses, for `rpc_url`.
    pub fn local(rpc_url: impl Into<String>) -> Self {
        Self {
            rpc_url: rpc_url.into(),
            rpc_fallbacks: Vec::new(),
            rpc_timeout_secs: 20,
            chain_id: None,
            confirmations: 1,
            finality: Finality::Depth,
            max_block_range: 1000,
            poll_interval_ms: 500,
        }
    }

    /// Every endpoint, the preferred one first.
    pub fn endpoints(&self) -> Vec<String> {
        std::iter::once(self.rpc_url.clone()).chain(self.rpc_fallbacks.iter().cloned()).collect()
    }

    /// Longest one step may take on one endpoint.
    pub fn rpc_timeout(&self) -> Duration {
        Duration::from_secs(self.rpc_timeout_secs.max(1))
    }

    /// Pause between looks at the head when caught up.
    pub fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.poll_interval_ms.max(1))
    }
}
