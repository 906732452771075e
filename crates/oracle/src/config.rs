//! Oracle configuration.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use alloy::primitives::Address;

/// Everything the oracle needs to run.
#[derive(Debug, Clone)]
pub struct OracleConfig {
    /// JSON-RPC endpoint of the chain.
    pub rpc_url: String,
    /// Chain id the endpoint must report; the oracle refuses to start on another chain.
    pub chain_id: Option<u64>,
    /// The `EstuaryPinning` contract to follow.
    pub pinning: Address,
    /// First block to read when the store has no cursor yet (the deployment block).
    pub start_block: u64,
    /// Blocks a log must be buried under before it is acted on (0 acts on the head).
    pub confirmations: u64,
    /// Most blocks asked for in one `eth_getLogs`.
    pub max_block_range: u64,
    /// How often to look for new blocks.
    pub poll_interval: Duration,
    /// SQLite database file (created if missing).
    pub database: PathBuf,
    /// Address the HTTP API listens on.
    pub listen: SocketAddr,
    /// Bearer token for the API's authenticated endpoints.
    pub api_token: Option<String>,
}

impl OracleConfig {
    /// A configuration with the defaults the local stack uses.
    pub fn new(rpc_url: impl Into<String>, pinning: Address, database: impl Into<PathBuf>) -> Self {
        Self {
            rpc_url: rpc_url.into(),
            chain_id: None,
            pinning,
            start_block: 0,
            confirmations: 1,
            max_block_range: 1_000,
            poll_interval: Duration::from_millis(500),
            database: database.into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 3000)),
            api_token: None,
        }
    }
}
