//! Oracle configuration.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use alloy::primitives::Address;

use crate::{fetch::FetchLimits, watcher::Finality};

/// Everything the oracle needs to run.
#[derive(Debug, Clone)]
pub struct OracleConfig {
    /// JSON-RPC endpoint of the chain.
    pub rpc_url: String,
    /// More endpoints of the same chain the watcher fails over to.
    pub rpc_fallbacks: Vec<String>,
    /// Longest a watcher step may take on one endpoint before the next one is tried.
    pub rpc_timeout: Duration,
    /// Chain id the endpoint must report; the oracle refuses to start on another chain.
    pub chain_id: Option<u64>,
    /// The `EstuaryPinning` contract to follow.
    pub pinning: Address,
    /// An `EstuaryOracle` whose pin jobs to serve as well.
    pub oracle_contract: Option<Address>,
    /// First block to read when the store has no cursor yet (the deployment block).
    pub start_block: u64,
    /// Blocks a log must be buried under before it is acted on (0 acts on the head).
    pub confirmations: u64,
    /// Count confirmations, or follow the RPC's `safe`/`finalized` block.
    pub finality: Finality,
    /// Most blocks asked for in one `eth_getLogs`.
    pub max_block_range: u64,
    /// How often to look for new blocks.
    pub poll_interval: Duration,
    /// SQLite database file (created if missing), or a `postgres://` URL for a queue shared by
    /// several oracle processes.
    pub database: PathBuf,
    /// Address the HTTP API listens on.
    pub listen: SocketAddr,
    /// Bearer token for the API's authenticated endpoints.
    pub api_token: Option<String>,
    /// Multiaddrs the pinning API gives clients as `delegates`; empty: the API's own address.
    pub delegates: Vec<String>,
    /// Multiaddrs the libp2p node listens on (TCP, or TCP + `/ws` for browser nodes); empty:
    /// it only dials out.
    pub p2p_listen: Vec<String>,
    /// Directory for blocks (`blocks/`, unless `s3` is set) and packed CARs (`packed/`).
    pub data_dir: PathBuf,
    /// Keep blocks in S3-compatible object storage instead of `data_dir`.
    pub s3: Option<crate::blockstore::s3::S3Config>,
    /// Trustless gateways to fetch DAGs from (base URLs).
    pub gateways: Vec<String>,
    /// The operator's private key (hex) for reports on chain. Without it the oracle records
    /// requests and serves its API but pins nothing.
    pub operator_key: Option<String>,
    /// Jobs worked on at once.
    pub workers: usize,
    /// How long a claimed job stays with its worker without a heartbeat (renewed every third
    /// of it); after that another worker or process takes it over.
    pub lease: Duration,
    /// How report transactions are priced and replaced when they are not mined.
    pub tx_policy: crate::report::TxPolicy,
    /// Retryable failures before a job is quarantined.
    pub max_attempts: u32,
    /// Bounds on each fetch.
    pub fetch_limits: FetchLimits,
}

impl OracleConfig {
    /// A configuration with the defaults the local stack uses.
    pub fn new(rpc_url: impl Into<String>, pinning: Address, database: impl Into<PathBuf>) -> Self {
        Self {
            rpc_url: rpc_url.into(),
            rpc_fallbacks: Vec::new(),
            rpc_timeout: Duration::from_secs(20),
            chain_id: None,
            pinning,
            oracle_contract: None,
            start_block: 0,
            confirmations: 1,
            finality: Finality::Depth,
            max_block_range: 1_000,
            poll_interval: Duration::from_millis(500),
            database: database.into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 3000)),
            api_token: None,
            delegates: Vec::new(),
            p2p_listen: Vec::new(),
            data_dir: PathBuf::from("estuary-data"),
            s3: None,
            gateways: Vec::new(),
            operator_key: None,
            workers: 4,
            max_attempts: 5,
            tx_policy: crate::report::TxPolicy::default(),
            lease: Duration::from_secs(600),
            fetch_limits: FetchLimits::default(),
        }
    }
}
