//! The oracle's settings, declared once, nested per component: each struct is what one
//! component reads, each field has its flag, its `ESTUARY_*` variable and its default right
//! here, and `estuary oracle run` flattens them into its command (a TOML file given with
//! `--config` sets the same names). Secrets are never shown by `--help`.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use alloy::primitives::Address;
use clap::Parser;
pub use estuary_chain::{ChainConfig, Finality};

use crate::{fetch::FetchLimits, store::DatabaseUrl};

/// Which contracts to follow.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct ContractsConfig {
    /// Address of the EstuaryPinning contract.
    #[arg(long = "pinning-address", env = "ESTUARY_PINNING_ADDRESS")]
    pub pinning: Address,
    /// Address of an EstuaryOracle contract whose pin jobs to serve too.
    #[arg(long = "oracle-address", env = "ESTUARY_ORACLE_ADDRESS")]
    pub oracle: Option<Address>,
    /// First block to read when the database has no cursor (the deployment block).
    #[arg(long, env = "ESTUARY_START_BLOCK", default_value_t = 0)]
    pub start_block: u64,
}

/// Where the oracle keeps its state.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct StoreConfig {
    /// SQLite database file, or a `postgres://` URL (a queue shared by several oracles).
    #[arg(long = "db", env = "ESTUARY_DB", default_value = "estuary-oracle.sqlite")]
    pub database: DatabaseUrl,
    /// Directory for pinned blocks, packed CARs and uploads.
    #[arg(long, env = "ESTUARY_DATA_DIR", default_value = "estuary-data")]
    pub data_dir: PathBuf,
    /// Keep blocks in S3-compatible object storage (`s3://bucket[/prefix]`) instead of the data
    /// directory; credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY.
    #[arg(long, env = "ESTUARY_S3_URL")]
    pub s3_url: Option<String>,
    /// S3 endpoint other than AWS's (e.g. http://127.0.0.1:9000).
    #[arg(long, env = "ESTUARY_S3_ENDPOINT", requires = "s3_url")]
    pub s3_endpoint: Option<String>,
    /// S3 region (default us-east-1).
    #[arg(long, env = "ESTUARY_S3_REGION", requires = "s3_url")]
    pub s3_region: Option<String>,
}

impl StoreConfig {
    /// The S3 blockstore's settings, if blocks go to S3.
    pub fn s3(&self) -> Option<crate::blockstore::s3::S3Config> {
        self.s3_url.clone().map(|url| crate::blockstore::s3::S3Config {
            url,
            endpoint: self.s3_endpoint.clone(),
            region: self.s3_region.clone(),
            credentials: None,
        })
    }
}

/// The HTTP API.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct ApiConfig {
    /// Address for the HTTP API.
    #[arg(long, env = "ESTUARY_LISTEN", default_value = "127.0.0.1:3000")]
    pub listen: SocketAddr,
    /// Bearer token for the API's operator routes (none: those routes refuse everyone).
    #[arg(long, env = "ESTUARY_API_TOKEN", hide_env_values = true, hide_default_value = true)]
    pub api_token: Option<String>,
    /// Multiaddrs the pinning API returns as `delegates` (default: the API's own address).
    #[arg(long = "delegate", env = "ESTUARY_DELEGATES", value_delimiter = ',')]
    pub delegates: Vec<String>,
}

/// Fetching DAGs.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct FetchConfig {
    /// Trustless gateway to fetch DAGs from (repeat, or comma-separated in the environment).
    #[arg(long = "gateway", env = "ESTUARY_GATEWAYS", value_delimiter = ',')]
    pub gateways: Vec<String>,
    /// Most bytes one DAG may have.
    #[arg(long, env = "ESTUARY_MAX_DAG_BYTES", default_value_t = 32 << 30)]
    pub max_dag_bytes: u64,
    /// Seconds without a byte from a source before it is given up.
    #[arg(long, env = "ESTUARY_NO_PROGRESS_SECS", default_value_t = 60)]
    pub no_progress_secs: u64,
    /// Seconds one fetch may take in all (a request with a size hint gets less: the grace plus
    /// twice what the throughput floor needs for that size).
    #[arg(long, env = "ESTUARY_FETCH_BUDGET_SECS", default_value_t = 3600)]
    pub fetch_budget_secs: u64,
    /// Most distinct blocks one DAG may have (a walk keeps 16 bytes per block).
    #[arg(long, env = "ESTUARY_MAX_DAG_BLOCKS", default_value_t = 1 << 22)]
    pub max_dag_blocks: u64,
    /// KiB per second a source must average once its grace is over; a slower one (a slow drip)
    /// is cut off (0: no floor).
    #[arg(long, env = "ESTUARY_MIN_THROUGHPUT_KIB", default_value_t = 8)]
    pub min_throughput_kib: u64,
    /// Seconds a source has before the throughput floor applies.
    #[arg(long, env = "ESTUARY_FETCH_GRACE_SECS", default_value_t = 30)]
    pub fetch_grace_secs: u64,
    /// Address ranges (CIDRs) a request's origins may reach although they are internal
    /// (loopback, private, link-local, …: refused by default). For development and tests:
    /// `--allow-net 127.0.0.0/8,::1/128`.
    #[arg(long = "allow-net", env = "ESTUARY_ALLOW_NET", value_delimiter = ',')]
    pub allow_net: Vec<ipnet::IpNet>,
}

impl FetchConfig {
    /// The bounds on one fetch.
    pub fn limits(&self) -> FetchLimits {
        FetchLimits {
            max_dag_bytes: self.max_dag_bytes,
            max_dag_blocks: self.max_dag_blocks.max(1),
            no_progress: Duration::from_secs(self.no_progress_secs.max(1)),
            time_budget: Duration::from_secs(self.fetch_budget_secs.max(1)),
            min_throughput: self.min_throughput_kib.saturating_mul(1024),
            grace: Duration::from_secs(self.fetch_grace_secs),
            ..FetchLimits::default()
        }
    }

    /// What origins may reach.
    pub fn net_policy(&self) -> crate::fetch::NetPolicy {
        crate::fetch::NetPolicy::allowing(self.allow_net.clone())
    }
}

/// The workers.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct WorkerConfig {
    /// Private key (hex) of the operator account that reports on chain; without it requests
    /// are recorded but not pinned.
    #[arg(long, env = "ESTUARY_OPERATOR_KEY", hide_env_values = true, hide_default_value = true)]
    pub operator_key: Option<String>,
    /// Jobs worked on at once.
    #[arg(long, env = "ESTUARY_WORKERS", default_value_t = 4)]
    pub workers: usize,
    /// Retryable failures before a job is quarantined.
    #[arg(long, env = "ESTUARY_MAX_ATTEMPTS", default_value_t = 5)]
    pub max_attempts: u32,
    /// Seconds a job stays with a worker that stops renewing it (it renews every third).
    #[arg(long, env = "ESTUARY_LEASE_SECS", default_value_t = 600)]
    pub lease_secs: u64,
    /// Most jobs one requester holds at once (default: all workers but one).
    #[arg(long, env = "ESTUARY_MAX_JOBS_PER_REQUESTER")]
    pub max_jobs_per_requester: Option<u32>,
}

impl WorkerConfig {
    /// How long a claimed job stays with a silent worker.
    pub fn lease(&self) -> Duration {
        Duration::from_secs(self.lease_secs.max(1))
    }

    /// Most jobs one requester holds at once.
    pub fn per_requester(&self) -> u32 {
        self.max_jobs_per_requester
            .unwrap_or_else(|| crate::pipeline::worker::default_per_requester(self.workers))
            .max(1)
    }
}

/// Garbage collection and the reconciler, on a schedule.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct MaintenanceConfig {
    /// Seconds between garbage collections (0: only by hand, `estuary oracle gc`).
    #[arg(long, env = "ESTUARY_GC_INTERVAL_SECS", default_value_t = 86_400)]
    pub gc_interval_secs: u64,
    /// Seconds a block, packed CAR or staging area is kept after its last write even when no
    /// pin needs it (an upload waiting for its pin, a fetch under way).
    #[arg(long, env = "ESTUARY_GC_GRACE_SECS", default_value_t = 86_400)]
    pub gc_grace_secs: u64,
    /// Seconds a live pin's packed CAR is kept after it was written (0: while the pin lives).
    #[arg(long, env = "ESTUARY_PACKED_RETENTION_SECS", default_value_t = 604_800)]
    pub packed_retention_secs: u64,
    /// Seconds between reconciliations, which walk every pinned DAG and requeue the damaged
    /// ones (0: only by hand, `estuary oracle reconcile`).
    #[arg(long, env = "ESTUARY_RECONCILE_INTERVAL_SECS", default_value_t = 86_400)]
    pub reconcile_interval_secs: u64,
}

impl MaintenanceConfig {
    /// The collection's policy.
    pub fn gc_policy(&self) -> crate::gc::GcPolicy {
        crate::gc::GcPolicy {
            grace: Duration::from_secs(self.gc_grace_secs),
            packed_retention: (self.packed_retention_secs > 0)
                .then(|| Duration::from_secs(self.packed_retention_secs)),
        }
    }
}

/// Budgets of each walk the gateway makes for a request.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct WalkConfig {
    /// Most block visits (node loads of a byte range included, each repeat counted) one
    /// gateway request may cost.
    #[arg(long, env = "ESTUARY_GATEWAY_MAX_VISITS", default_value_t = 1 << 22)]
    pub gateway_max_visits: u64,
    /// Most bytes one gateway request may read from the store.
    #[arg(long, env = "ESTUARY_GATEWAY_MAX_BYTES", default_value_t = 64 << 30)]
    pub gateway_max_bytes: u64,
    /// Seconds one gateway request may walk.
    #[arg(long, env = "ESTUARY_GATEWAY_MAX_SECS", default_value_t = 3600)]
    pub gateway_max_secs: u64,
}

impl WalkConfig {
    /// The gateway's budgets.
    pub fn gateway_limits(&self) -> crate::api::GatewayLimits {
        crate::api::GatewayLimits {
            max_visits: self.gateway_max_visits.max(1),
            max_bytes: self.gateway_max_bytes.max(1),
            max_time: Duration::from_secs(self.gateway_max_secs.max(1)),
        }
    }
}

/// Report transactions.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct ReportConfig {
    /// Seconds before a report transaction that is not mined is replaced with higher fees.
    #[arg(long, env = "ESTUARY_TX_BUMP_SECS", default_value_t = 30)]
    pub tx_bump_secs: u64,
    /// Highest fee per gas a report may offer, in gwei (no cap by default).
    #[arg(long, env = "ESTUARY_MAX_FEE_GWEI")]
    pub max_fee_gwei: Option<u64>,
    /// Blocks a report transaction must be buried under before it counts (1: mined).
    #[arg(long, env = "ESTUARY_TX_CONFIRMATIONS", default_value_t = 1)]
    pub tx_confirmations: u64,
}

/// The libp2p node.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct P2pConfig {
    /// Multiaddrs the libp2p node listens on, e.g. `/ip4/0.0.0.0/tcp/4001` and
    /// `/ip4/0.0.0.0/tcp/4002/ws` (for browser nodes). None: it only dials out to origins.
    #[arg(long = "p2p-listen", env = "ESTUARY_P2P_LISTEN", value_delimiter = ',')]
    pub p2p_listen: Vec<String>,
}

/// Everything the oracle needs to run.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct OracleConfig {
    /// The chain.
    #[command(flatten)]
    pub chain: ChainConfig,
    /// The contracts.
    #[command(flatten)]
    pub contracts: ContractsConfig,
    /// The database and the data directory.
    #[command(flatten)]
    pub store: StoreConfig,
    /// The HTTP API.
    #[command(flatten)]
    pub api: ApiConfig,
    /// Fetching.
    #[command(flatten)]
    pub fetch: FetchConfig,
    /// The workers.
    #[command(flatten)]
    pub worker: WorkerConfig,
    /// Reports on chain.
    #[command(flatten)]
    pub report: ReportConfig,
    /// libp2p.
    #[command(flatten)]
    pub p2p: P2pConfig,
    /// Garbage collection and reconciliation.
    #[command(flatten)]
    pub maintenance: MaintenanceConfig,
    /// The gateway's walk budgets.
    #[command(flatten)]
    pub walks: WalkConfig,
}

#[derive(Parser)]
struct Defaults {
    #[command(flatten)]
    config: OracleConfig,
}

impl OracleConfig {
    /// The defaults (as `estuary oracle run` has them) with `args` given as on the command line
    /// (`["--pinning-address", "0x…"]`).
    pub fn from_args<I: AsRef<std::ffi::OsStr>>(
        args: impl IntoIterator<Item = I>,
    ) -> Result<Self, clap::Error> {
        let argv = std::iter::once(std::ffi::OsString::from("oracle"))
            .chain(args.into_iter().map(|a| a.as_ref().to_owned()));
        Defaults::try_parse_from(argv).map(|d| d.config)
    }

    /// The defaults for an oracle following `pinning` at `rpc_url`, its database at
    /// `database`.
    pub fn new(rpc_url: &str, pinning: Address, database: &str) -> Self {
        Self::from_args([
            "--rpc-url",
            rpc_url,
            "--pinning-address",
            &pinning.to_string(),
            "--db",
            database,
        ])
        .expect("the built-in defaults parse")
    }

    /// The report transactions' policy.
    pub fn tx_policy(&self) -> estuary_chain::TxPolicy {
        estuary_chain::TxPolicy {
            bump_after: Duration::from_secs(self.report.tx_bump_secs.max(1)),
            max_fee_per_gas: self.report.max_fee_gwei.map(|g| u128::from(g) * 1_000_000_000),
            confirmations: self.report.tx_confirmations.max(1),
            ..estuary_chain::TxPolicy::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_settings_parse_with_their_defaults() {
        let config = OracleConfig::new("http://127.0.0.1:1", Address::repeat_byte(1), "x.sqlite");
        assert_eq!(config.chain.finality, Finality::Depth);
        assert_eq!(config.worker.workers, 4);
        assert_eq!(config.store.database, DatabaseUrl::Sqlite("x.sqlite".into()));
        let pg = OracleConfig::from_args([
            "--pinning-address",
            "0x0101010101010101010101010101010101010101",
            "--db",
            "postgres://u@h/db",
            "--finality",
            "finalized",
        ])
        .unwrap();
        assert_eq!(pg.store.database, DatabaseUrl::Postgres("postgres://u@h/db".into()));
        assert_eq!(pg.chain.finality, Finality::Finalized);
        assert!(OracleConfig::from_args(["--finality", "soon"]).is_err());
    }
}
