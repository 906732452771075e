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
    /// Bearer token for the API's operator routes (none: those routes refuse everyone). Prefer
    /// --api-token-file: a flag is visible to other users in the process list.
    #[arg(long, env = "ESTUARY_API_TOKEN", hide_env_values = true, hide_default_value = true)]
    pub api_token: Option<Secret>,
    /// File holding the API token (its first line).
    #[arg(long, env = "ESTUARY_API_TOKEN_FILE", conflicts_with = "api_token")]
    pub api_token_file: Option<PathBuf>,
    /// Multiaddrs the pinning API returns as `delegates` (default: the API's own address).
    #[arg(long = "delegate", env = "ESTUARY_DELEGATES", value_delimiter = ',')]
    pub delegates: Vec<String>,
    /// Seconds between the samples of the metrics kept for `GET /metrics/history` (the
    /// operator's dashboard).
    #[arg(long, env = "ESTUARY_METRICS_HISTORY_SECS", default_value_t = 60)]
    pub metrics_history_secs: u64,
    /// Samples kept (the last ones: 1,440 a minute apart is a day; at most 10,080).
    #[arg(long, env = "ESTUARY_METRICS_HISTORY_POINTS", default_value_t = 1440)]
    pub metrics_history_points: usize,
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
    /// are recorded but not pinned. Prefer --operator-key-file.
    #[arg(long, env = "ESTUARY_OPERATOR_KEY", hide_env_values = true, hide_default_value = true)]
    pub operator_key: Option<Secret>,
    /// File holding the operator's private key (hex, its first line).
    #[arg(long, env = "ESTUARY_OPERATOR_KEY_FILE", conflicts_with = "operator_key")]
    pub operator_key_file: Option<PathBuf>,
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
            cold: None,
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

/// Deals: orders that keep reported pieces on Filecoin.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct DealsConfig {
    /// Address of a PerpetualStorage contract: every piece the oracle packs and reports gets an
    /// order there, funded from the operator's account (none: no deals are made).
    #[arg(long = "perpetual-address", env = "ESTUARY_PERPETUAL_ADDRESS")]
    pub perpetual: Option<Address>,
    /// The oracle's URL as storage providers reach it: orders name
    /// `{public-url}/piece/{pieceCid}` as where to download (default: the listen address).
    #[arg(long, env = "ESTUARY_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Address of a DealClient contract this oracle's operator key is an operator of: every
    /// piece the oracle packs and reports (with buckets: every closed bucket's aggregate) gets
    /// contract deals there instead of a PerpetualStorage order, one proposal per replica, each
    /// naming a provider chosen among the `--provider` ones by policy and score. The deals are
    /// paid from the contract's market escrow (its owner adds it with `addMarketBalance`).
    #[arg(long = "deal-client-address", env = "ESTUARY_DEAL_CLIENT_ADDRESS")]
    pub deal_client: Option<Address>,
    /// A storage provider contract deals may go to, with its policy (repeat, or `;` between
    /// them in the variable): `f01000` or
    /// `f01000:price=0,verified=any,min-size=1MiB,max-size=32GiB,max-in-flight=1TiB,org=acme,region=eu`
    /// (price: attoFIL per GiB per epoch it asks; verified: any, true or false).
    #[arg(long = "provider", env = "ESTUARY_PROVIDERS", value_delimiter = ';')]
    pub providers: Vec<crate::domain::placement::ProviderPolicy>,
    /// Address of a ProviderRegistry: a provider holding the orders' replicas without `url=` in
    /// its `--provider` policy is probed and read from at the retrieval URL its miner
    /// registered there. Such a URL is the provider's word: internal addresses are refused (see
    /// --provider-allow-net), as a request's origins' are.
    #[arg(long = "provider-registry-address", env = "ESTUARY_PROVIDER_REGISTRY_ADDRESS")]
    pub provider_registry: Option<Address>,
    /// Address ranges (CIDRs) a provider's registered URL may reach although they are internal
    /// (loopback, private, link-local, …: refused by default, whatever --allow-net allows
    /// origins). For development and tests: `--provider-allow-net 127.0.0.0/8,::1/128`.
    #[arg(long = "provider-allow-net", env = "ESTUARY_PROVIDER_ALLOW_NET", value_delimiter = ',')]
    pub provider_allow_net: Vec<ipnet::IpNet>,
    /// Seconds before a provider's registered URL is read from the registry again (a provider
    /// new to the orders is asked within 15 s).
    #[arg(long, env = "ESTUARY_PROVIDER_REGISTRY_REFRESH_SECS", default_value_t = 600,
        value_parser = clap::value_parser!(u64).range(1..))]
    pub provider_registry_refresh_secs: u64,
    /// Most the operator pays a provider for a contract deal, in attoFIL per GiB per epoch;
    /// providers asking more are not chosen.
    #[arg(long, env = "ESTUARY_DEAL_MAX_PRICE", default_value_t = 0)]
    pub deal_max_price: u128,
    /// Epochs from a contract deal's proposal to its start: the provider's time to fetch, seal
    /// and prove it (a proposal not published by then is withdrawn and goes elsewhere).
    #[arg(long, env = "ESTUARY_DEAL_START_EPOCHS", default_value_t = 2880,
        value_parser = clap::value_parser!(u64).range(1..))]
    pub deal_start_epochs: u64,
    /// A replica whose deal (contract deals) or paid term (perpetual storage) ends within this
    /// many epochs (21 days) counts as missing, and is renewed ahead of its end. Contract deals:
    /// a new proposal, to the same provider first unless it failed the piece, else elsewhere
    /// (keep it above --deal-start-epochs, so that the two overlap; at most half of
    /// --deal-term-epochs is used). Perpetual storage: the order's replica target raised by one,
    /// for another provider to claim (keep it above the contract's claim window), and lowered
    /// back as soon as it is claimed, or in the window's last quarter; at most half of each
    /// replica's own term; 0 turns renewal off for perpetual orders.
    #[arg(long, env = "ESTUARY_DEAL_RENEW_EPOCHS", default_value_t = 60_480)]
    pub deal_renew_epochs: u64,
    /// Most replicas of one piece at providers of one organisation (`org=` in `--provider`).
    #[arg(long, env = "ESTUARY_PROVIDERS_PER_ORG")]
    pub providers_per_org: Option<u16>,
    /// Most replicas of one piece at providers of one region (`region=` in `--provider`).
    #[arg(long, env = "ESTUARY_PROVIDERS_PER_REGION")]
    pub providers_per_region: Option<u16>,
    /// Replicas per piece (at different providers).
    #[arg(
        long,
        env = "ESTUARY_DEAL_REPLICAS",
        default_value_t = 3,
        value_parser = clap::value_parser!(u16).range(1..=10)
    )]
    pub deal_replicas: u16,
    /// Bounty per replica and term, in attoFIL (what a provider is paid over one term).
    #[arg(long, env = "ESTUARY_DEAL_BOUNTY", default_value_t = 10_000_000_000_000_000)]
    pub deal_bounty: u128,
    /// A replica's term, in epochs (the market's shortest deal is 518,400: 180 days).
    #[arg(long, env = "ESTUARY_DEAL_TERM_EPOCHS", default_value_t = 518_400)]
    pub deal_term_epochs: u64,
    /// Terms funded when the order is made, from the operator: every replica at the highest
    /// bounty a claim can lock (twice the bounty with the contract's `MAX_RISE_BPS`).
    #[arg(long, env = "ESTUARY_DEAL_FUNDED_TERMS", default_value_t = 1)]
    pub deal_funded_terms: u64,
    /// Ask for verified (Fil+) deals.
    #[arg(long, env = "ESTUARY_DEAL_VERIFIED")]
    pub deal_verified: bool,
    /// Most attoFIL the oracle commits to orders in all (their funding, summed over the orders
    /// being sent or open). Past it, new orders wait (with the reason in `/deals`) until it is
    /// raised. None: no limit, which lets anyone who pins make the operator fund an order.
    #[arg(long, env = "ESTUARY_DEAL_BUDGET")]
    pub deal_budget: Option<u128>,
    /// Address of a DealStateView contract: the keeper reads what the storage market says of
    /// the orders' deals through it, 200 deals per `eth_call` (none: only the storage
    /// contract's events are followed, and a deal gone from the market is not seen until its
    /// provider or someone else reopens its slot).
    #[arg(long = "deal-state-view-address", env = "ESTUARY_DEAL_STATE_VIEW_ADDRESS")]
    pub deal_state_view: Option<Address>,
    /// Address of a DataDAO this oracle is an operator of: each CID its members accept is
    /// pinned (its request), then funded as a PerpetualStorage order on the DAO's own terms
    /// and budget (`fundOrder`), and tracked like the operator's orders. The DAO's pins are
    /// never bucketed or ordered with the operator's money. Needs --perpetual-address.
    #[arg(long = "datadao-address", env = "ESTUARY_DATADAO_ADDRESS")]
    pub datadao: Option<Address>,
    /// Requesters whose pins go into buckets of their own instead of the shared one
    /// (comma-separated): a contract or wallet (0x address) making on-chain requests, or an
    /// account of the pinning API. Their pins may also ask for a bucket of their own each (the
    /// pinning API's `meta` entry `"estuary.bucket": "own"`); anyone else's go into the shared
    /// bucket whatever they ask, since a bucket is an order the operator pays for.
    #[arg(
        long = "dedicated-bucket-for",
        env = "ESTUARY_DEDICATED_BUCKET_FOR",
        value_delimiter = ','
    )]
    pub dedicated_buckets: Vec<String>,
    /// Seconds between the keeper's rounds (market reads, reopening lapsed claims and ended
    /// replicas).
    #[arg(long, env = "ESTUARY_DEAL_CHECK_SECS", default_value_t = 30,
        value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub deal_check_secs: u64,
    /// An active deal ending within this many epochs shows as `expiring` (21 days).
    #[arg(long, env = "ESTUARY_DEAL_EXPIRING_EPOCHS", default_value_t = 60_480)]
    pub deal_expiring_epochs: u64,
    /// The keeper collects each active replica's accrued bounty for its provider every this
    /// many epochs (none: left to the providers, whose agent collects on its own schedule; each
    /// collection costs the operator gas).
    #[arg(long, env = "ESTUARY_DEAL_COLLECT_EPOCHS",
        value_parser = clap::value_parser!(u64).range(1..))]
    pub deal_collect_epochs: Option<u64>,
    /// Each active replica at a provider with `url=` in its `--provider` policy, or a URL
    /// registered in `--provider-registry-address`, is read back
    /// about this often (±25 %): a span of its piece, checked against the piece's commitment,
    /// and for a single CAR its root block, checked against its CID.
    #[arg(long, env = "ESTUARY_PROBE_EVERY_SECS", default_value_t = 21_600,
        value_parser = clap::value_parser!(u64).range(1..=31_536_000))]
    pub probe_every_secs: u64,
    /// A replica whose last this-many probes all failed is lost: it no longer counts, and it
    /// is replaced at another provider (contract deals).
    #[arg(long, env = "ESTUARY_PROBE_LOST_AFTER", default_value_t = 3,
        value_parser = clap::value_parser!(u32).range(1..))]
    pub probe_lost_after: u32,
    /// Most probes a minute, in all.
    #[arg(long, env = "ESTUARY_PROBES_PER_MINUTE", default_value_t = 60,
        value_parser = clap::value_parser!(u32).range(1..))]
    pub probes_per_minute: u32,
    /// Most probes a minute of one provider.
    #[arg(long, env = "ESTUARY_PROBES_PER_PROVIDER_PER_MINUTE", default_value_t = 6,
        value_parser = clap::value_parser!(u32).range(1..))]
    pub probes_per_provider_per_minute: u32,
    /// A probe's read that has not ended in this many seconds fails.
    #[arg(long, env = "ESTUARY_PROBE_TIMEOUT_SECS", default_value_t = 60,
        value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub probe_timeout_secs: u64,
    /// Drop the oracle's packed CAR of a piece ordered at least this many seconds ago once all
    /// its replicas are active, `--cold-min-verified` of them market deals verified by their last
    /// `--probe-lost-after` probes within `--cold-verified-within-secs` (`url=` providers), and the
    /// piece read back whole from them, every span checked: `/piece` then reads it from them
    /// (none: the copy is kept while the order lives). Single CARs only, not aggregates or
    /// split pins' parts. The pin's blocks stay unless `--cold-drop-blocks`.
    #[arg(long, env = "ESTUARY_COLD_AFTER_SECS")]
    pub cold_after_secs: Option<u64>,
    /// Replicas verified by a recent probe a piece's copy needs to be dropped.
    #[arg(long, env = "ESTUARY_COLD_MIN_VERIFIED", default_value_t = 2,
        value_parser = clap::value_parser!(u32).range(2..))]
    pub cold_min_verified: u32,
    /// Spans of pieces read from providers are kept in memory (64 MiB at most) this many
    /// seconds, so a piece or range asked for again is not read from a provider again.
    #[arg(long, env = "ESTUARY_COLD_CACHE_SECS", default_value_t = 600)]
    pub cold_cache_secs: u64,
    /// How recent the probes and the read-back a dropped copy needs must be, in seconds (none:
    /// two probe intervals). Probes are also bound by `--probes-per-provider-per-minute`, so a
    /// provider with many replicas probes each less often than `--probe-every-secs`.
    #[arg(long, env = "ESTUARY_COLD_VERIFIED_WITHIN_SECS",
        value_parser = clap::value_parser!(u64).range(1..))]
    pub cold_verified_within_secs: Option<u64>,
    /// Mark lost on chain (`PerpetualStorage.markLost`) an active replica of the operator's
    /// orders its probes have found lost for at least this many seconds, if its provider once
    /// served it and its last probe is recent and failed: the provider is paid what it earned
    /// and a loss fee, excluded from the order for good, and its slot reopens for another SP
    /// (none: never; lost replicas are only not counted). The `--datadao-address` DAO's orders
    /// too, through the DAO (`DataDAO.markReplicaLost`, as its operator).
    #[arg(long, env = "ESTUARY_MARK_LOST_AFTER_SECS")]
    pub mark_lost_after_secs: Option<u64>,
    /// Only CARs of at least this many bytes are dropped.
    #[arg(long, env = "ESTUARY_COLD_MIN_SIZE", default_value_t = 0)]
    pub cold_min_size: u64,
    /// With `--cold-after-secs`, drop the pin's blocks with its CAR (unless another live pin
    /// needs them): the gateway and Bitswap then read them from the providers, each checked,
    /// and they come back with the copy when the replicas falter. Without it, the blocks stay.
    #[arg(long, env = "ESTUARY_COLD_DROP_BLOCKS")]
    pub cold_drop_blocks: bool,
    /// Group packed pins into FRC-0058 aggregates of at most this many padded bytes (a power of
    /// two from 4096: 34359738368 = 32 GiB on mainnet), one order per aggregate; a pin larger
    /// than half of it is ordered on its own (none: every pin is its own order).
    #[arg(long, env = "ESTUARY_BUCKET_SIZE", value_parser = parse_bucket_size)]
    pub bucket_size: Option<u64>,
    /// A bucket closes once its oldest pin has waited this many seconds (48 h), full or not.
    #[arg(long, env = "ESTUARY_BUCKET_MAX_AGE_SECS", default_value_t = 172_800,
        value_parser = clap::value_parser!(u64).range(1..))]
    pub bucket_max_age_secs: u64,
}

fn parse_bucket_size(s: &str) -> Result<u64, String> {
    let size: u64 = s.parse().map_err(|e| format!("{e}"))?;
    let min = crate::domain::bucket::MIN_DEAL_SIZE;
    if size.is_power_of_two() && (min..=64 << 30).contains(&size) {
        Ok(size)
    } else {
        Err(format!("{size} is not a power of two from {min} to 64 GiB"))
    }
}

impl DealsConfig {
    /// When buckets close, if pins are bucketed.
    pub fn buckets(&self) -> Option<crate::domain::bucket::BucketRules> {
        self.bucket_size.map(|deal_size| crate::domain::bucket::BucketRules {
            deal_size,
            max_age_ms: self.bucket_max_age_secs.saturating_mul(1000),
        })
    }

    /// Where providers serve retrievals: the operator's `url=`s, and those the registry will
    /// give (if `--provider-registry-address`).
    pub fn provider_urls(&self) -> crate::deals::registry::ProviderUrls {
        let configured =
            self.providers.iter().filter_map(|p| Some((p.provider, p.url.clone()?))).collect();
        crate::deals::registry::ProviderUrls::new(configured, self.provider_registry.is_some())
    }

    /// What a provider's registered URL may reach (`--provider-allow-net`).
    pub fn provider_net_policy(&self) -> crate::fetch::NetPolicy {
        crate::fetch::NetPolicy::allowing(self.provider_allow_net.clone())
    }

    /// The prober's settings, if any provider has, or may register, a URL to probe at: `urls`
    /// from [`Self::provider_urls`]; `net`, what registered URLs may reach; `rpc`, the chain's
    /// endpoints (whether they are off this host tells whether the network is up).
    pub fn prober(
        &self,
        urls: &std::sync::Arc<crate::deals::registry::ProviderUrls>,
        net: &std::sync::Arc<crate::fetch::NetPolicy>,
        rpc: &[String],
    ) -> Option<crate::deals::probes::ProberConfig> {
        let every = std::time::Duration::from_secs(self.probe_every_secs);
        urls.any().then(|| crate::deals::probes::ProberConfig {
            urls: std::sync::Arc::clone(urls),
            net: std::sync::Arc::clone(net),
            every,
            lost_after: self.probe_lost_after,
            per_minute: self.probes_per_minute,
            per_provider_per_minute: self.probes_per_provider_per_minute,
            timeout: std::time::Duration::from_secs(self.probe_timeout_secs),
            // A round a quarter of the interval, at most every 10 s.
            tick: (every / 4)
                .clamp(std::time::Duration::from_millis(250), std::time::Duration::from_secs(10)),
            rpc_remote: crate::deals::probes::all_remote(rpc),
        })
    }

    /// When deals' copies here may go, if asked for (`--cold-after-secs`) and probes can
    /// verify their replicas (a provider with `url=`, or a registry to read URLs from).
    pub fn cold(&self) -> Option<crate::domain::probe::ColdRules> {
        let after = self.cold_after_secs?;
        let probed =
            self.provider_registry.is_some() || self.providers.iter().any(|p| p.url.is_some());
        probed.then(|| crate::domain::probe::ColdRules {
            after_ms: after.saturating_mul(1000),
            min_verified: self.cold_min_verified,
            min_oks: self.probe_lost_after,
            verified_within_ms: self
                .cold_verified_within_secs
                .unwrap_or(self.probe_every_secs.saturating_mul(2))
                .saturating_mul(1000),
            min_size: self.cold_min_size,
            drop_blocks: self.cold_drop_blocks,
        })
    }

    /// The operator's rules for choosing providers.
    pub fn placement(&self) -> crate::domain::placement::PlacementRules {
        crate::domain::placement::PlacementRules {
            max_price: self.deal_max_price,
            verified: self.deal_verified,
            per_org: self.providers_per_org,
            per_region: self.providers_per_region,
        }
    }

    /// The terms of each order.
    pub fn terms(&self) -> crate::domain::deal::OrderTerms {
        crate::domain::deal::OrderTerms {
            replicas: self.deal_replicas,
            bounty: self.deal_bounty,
            term: self.deal_term_epochs,
            funded_terms: self.deal_funded_terms,
            verified: self.deal_verified,
        }
    }
}

/// The libp2p node.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct P2pConfig {
    /// Multiaddrs the libp2p node listens on, e.g. `/ip4/0.0.0.0/tcp/4001` and
    /// `/ip4/0.0.0.0/tcp/4002/ws` (for browser nodes). None: it only dials out to origins.
    #[arg(long = "p2p-listen", env = "ESTUARY_P2P_LISTEN", value_delimiter = ',')]
    pub p2p_listen: Vec<String>,
    /// Inbound libp2p connections kept at once (4 at most per peer, 64 in their handshake).
    #[arg(
        long = "p2p-max-connections",
        env = "ESTUARY_P2P_MAX_CONNECTIONS",
        default_value_t = 512
    )]
    pub p2p_max_connections: u32,
    /// Block bytes served to one peer per second over Bitswap, on average (a burst of four
    /// seconds' worth first). Past it the peer is answered "don't have" until its budget refills.
    #[arg(
        long = "p2p-peer-bytes-per-second",
        env = "ESTUARY_P2P_PEER_BYTES_PER_SECOND",
        default_value_t = 32 << 20
    )]
    pub p2p_peer_bytes_per_second: u64,
}

/// A secret setting: shown as `[redacted]` by `Debug` (so never in a log or a panic message)
/// and never by `--help`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Reads a secret from the first line of `path`; warns when others may read the file.
    pub fn from_file(path: &std::path::Path) -> Result<Self, SecretError> {
        let failed = |reason: String| SecretError { path: path.to_owned(), reason };
        let text = std::fs::read_to_string(path).map_err(|e| failed(e.to_string()))?;
        let line = text.lines().next().unwrap_or_default().trim();
        if line.is_empty() {
            return Err(failed("the file is empty".into()));
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            if let Ok(meta) = std::fs::metadata(path)
                && meta.permissions().mode() & 0o077 != 0
            {
                tracing::warn!(
                    path = %path.display(),
                    "the secret file may be read by other users: chmod 600 it"
                );
            }
        }
        Ok(Self(line.to_owned()))
    }

    /// The secret given directly, else the one in `file`, else none.
    pub fn resolve(
        direct: Option<&Self>,
        file: Option<&std::path::Path>,
    ) -> Result<Option<Self>, SecretError> {
        match (direct, file) {
            (Some(secret), _) => Ok(Some(secret.clone())),
            (None, Some(path)) => Self::from_file(path).map(Some),
            (None, None) => Ok(None),
        }
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.trim().to_owned()))
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

/// A secret file that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the secret in {}: {reason}", path.display())]
pub struct SecretError {
    /// The file.
    pub path: PathBuf,
    /// Why.
    pub reason: String,
}

/// Uploads: who may make them, how large, how long they are kept, how much each account holds.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct UploadConfig {
    /// Largest upload in bytes (tus `Tus-Max-Size`).
    #[arg(long, env = "ESTUARY_MAX_UPLOAD_BYTES", default_value_t = 32 << 30)]
    pub max_upload_bytes: u64,
    /// Seconds an unfinished upload is kept; then its bytes and record are deleted.
    #[arg(long, env = "ESTUARY_UPLOAD_TTL_SECS", default_value_t = 24 * 3600)]
    pub upload_ttl_secs: u64,
    /// Bytes of uploads (unfinished by their length, and finished) one account may hold.
    #[arg(long, env = "ESTUARY_QUOTA_BYTES", default_value_t = 64 << 30)]
    pub quota_bytes: u64,
    /// Bytes a wallet account (signed in with Ethereum, or uploading for its request) may hold.
    #[arg(long, env = "ESTUARY_WALLET_QUOTA_BYTES", default_value_t = 4 << 30)]
    pub wallet_quota_bytes: u64,
    /// Unfinished uploads one account may have at once.
    #[arg(long, env = "ESTUARY_QUOTA_UPLOADS", default_value_t = 8)]
    pub quota_uploads: u64,
    /// Pins one account may have through the Pinning Service API.
    #[arg(long, env = "ESTUARY_QUOTA_PINS", default_value_t = 100_000)]
    pub quota_pins: u64,
    /// Free bytes the data directory keeps: below, uploads are refused (507) and fetches wait.
    #[arg(long, env = "ESTUARY_MIN_FREE_BYTES", default_value_t = 1 << 30)]
    pub min_free_bytes: u64,
    /// Domain (host or host:port) a Sign-In with Ethereum message may name (repeat; default: the
    /// hosts of --cors-origin).
    #[arg(long = "siwe-domain", env = "ESTUARY_SIWE_DOMAINS", value_delimiter = ',')]
    pub siwe_domains: Vec<String>,
    /// Longest session, in seconds, a Sign-In with Ethereum gives.
    #[arg(long, env = "ESTUARY_SESSION_SECS", default_value_t = 24 * 3600)]
    pub session_secs: u64,
    /// Longest life, in seconds, of a pre-signed upload URL.
    #[arg(long, env = "ESTUARY_PRESIGN_MAX_SECS", default_value_t = 7 * 24 * 3600)]
    pub presign_max_secs: u64,
}

/// The HTTP server's limits against slow and numerous clients, and CORS.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct HttpConfig {
    /// Origin allowed to call the API from a page (repeat; `*` for any). The gateway, /piece
    /// and /health allow any origin.
    #[arg(
        long = "cors-origin",
        env = "ESTUARY_CORS_ORIGINS",
        value_delimiter = ',',
        default_values_t = ["http://127.0.0.1:5173".to_owned(), "http://localhost:5173".to_owned()]
    )]
    pub cors_origins: Vec<String>,
    /// Seconds to receive a request's head, from when the connection awaits it (also closes
    /// idle kept-alive connections).
    #[arg(long, env = "ESTUARY_HTTP_HEADER_TIMEOUT_SECS", default_value_t = 15)]
    pub http_header_timeout_secs: u64,
    /// Longest pause, in seconds, between two pieces of a request body.
    #[arg(long, env = "ESTUARY_HTTP_BODY_TIMEOUT_SECS", default_value_t = 30)]
    pub http_body_timeout_secs: u64,
    /// Seconds a response may wait on a client that does not read it.
    #[arg(long, env = "ESTUARY_HTTP_IDLE_TIMEOUT_SECS", default_value_t = 60)]
    pub http_idle_timeout_secs: u64,
    /// Connections at once (beyond: closed at once).
    #[arg(long, env = "ESTUARY_HTTP_MAX_CONNECTIONS", default_value_t = 1024)]
    pub http_max_connections: usize,
    /// Connections at once from one address.
    #[arg(long, env = "ESTUARY_HTTP_MAX_CONNECTIONS_PER_IP", default_value_t = 128)]
    pub http_max_connections_per_ip: usize,
    /// Requests in flight at once (beyond: 503).
    #[arg(long, env = "ESTUARY_HTTP_MAX_REQUESTS", default_value_t = 512)]
    pub http_max_requests: usize,
    /// Gateway and /piece requests in flight at once (beyond: 503).
    #[arg(long, env = "ESTUARY_GATEWAY_MAX_REQUESTS", default_value_t = 64)]
    pub gateway_max_requests: usize,
}

impl HttpConfig {
    /// The connection limits.
    pub fn server_limits(&self) -> crate::api::serve::ServerLimits {
        crate::api::serve::ServerLimits {
            header_timeout: Duration::from_secs(self.http_header_timeout_secs.max(1)),
            idle_timeout: Duration::from_secs(self.http_idle_timeout_secs.max(1)),
            max_connections: self.http_max_connections.max(1),
            max_per_ip: self.http_max_connections_per_ip.max(1),
        }
    }

    /// The hosts (`host[:port]`) of the CORS origins: the default sign-in domains.
    pub fn origin_hosts(&self) -> Vec<String> {
        self.cors_origins
            .iter()
            .filter(|o| *o != "*")
            .map(|o| o.split("://").nth(1).unwrap_or(o).trim_end_matches('/').to_owned())
            .collect()
    }
}

impl OracleConfig {
    /// The API's policy: uploads, sign-in, quotas, request limits, CORS.
    pub fn api_policy(&self) -> crate::api::ApiPolicy {
        let u = &self.uploads;
        let h = &self.http;
        crate::api::ApiPolicy {
            max_upload: u.max_upload_bytes.max(1),
            upload_ttl: Duration::from_secs(u.upload_ttl_secs.max(1)),
            quota: crate::domain::upload::Quota {
                max_bytes: u.quota_bytes,
                max_uploads: u.quota_uploads,
                max_pins: u.quota_pins,
            },
            wallet_quota_bytes: u.wallet_quota_bytes,
            min_free_bytes: u.min_free_bytes,
            siwe_domains: if u.siwe_domains.is_empty() {
                h.origin_hosts()
            } else {
                u.siwe_domains.clone()
            },
            session: Duration::from_secs(u.session_secs.max(1)),
            presign_max: Duration::from_secs(u.presign_max_secs.max(1)),
            cors_origins: h.cors_origins.clone(),
            body_timeout: Duration::from_secs(h.http_body_timeout_secs.max(1)),
            ..crate::api::ApiPolicy::default()
        }
        .with_limits(h.http_max_requests, h.gateway_max_requests)
    }
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
    /// Uploads and quotas.
    #[command(flatten)]
    pub uploads: UploadConfig,
    /// The HTTP server's limits and CORS.
    #[command(flatten)]
    pub http: HttpConfig,
    /// Deals.
    #[command(flatten)]
    pub deals: DealsConfig,
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

    #[test]
    fn secrets_come_from_files_and_never_show() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "s3cret-token\nignored\n").unwrap();
        let secret = Secret::from_file(&file).unwrap();
        assert_eq!(secret.expose(), "s3cret-token");
        let direct = Secret::from("direct");
        assert_eq!(Secret::resolve(Some(&direct), Some(&file)).unwrap(), Some(direct));
        assert_eq!(Secret::resolve(None, Some(&file)).unwrap(), Some(secret));
        assert_eq!(Secret::resolve(None, None).unwrap(), None);
        std::fs::write(&file, "\n").unwrap();
        assert!(Secret::from_file(&file).is_err());
        assert!(Secret::from_file(&dir.path().join("missing")).is_err());
        let config = OracleConfig::from_args([
            "--pinning-address",
            "0x0101010101010101010101010101010101010101",
            "--api-token",
            "s3cret-token",
            "--operator-key",
            "0xs3cret-key",
            "--db",
            "postgres://estuary:s3cret-password@db.example/estuary",
        ])
        .unwrap();
        let shown = format!("{config:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        // A secret and its file are not both given.
        assert!(
            OracleConfig::from_args([
                "--pinning-address",
                "0x0101010101010101010101010101010101010101",
                "--api-token",
                "a",
                "--api-token-file",
                "b",
            ])
            .is_err()
        );
    }

    #[test]
    fn the_api_policy_follows_the_flags() {
        let config = OracleConfig::from_args([
            "--pinning-address",
            "0x0101010101010101010101010101010101010101",
            "--cors-origin",
            "https://dapp.example,http://127.0.0.1:5173/",
            "--quota-uploads",
            "3",
            "--http-max-requests",
            "7",
        ])
        .unwrap();
        let policy = config.api_policy();
        assert_eq!(policy.siwe_domains, ["dapp.example", "127.0.0.1:5173"]);
        assert_eq!(policy.quota.max_uploads, 3);
        assert_eq!(policy.request_limits, (7, 64));
        assert_eq!(policy.upload_ttl, Duration::from_secs(24 * 3600));
        assert_eq!(config.http.server_limits().header_timeout, Duration::from_secs(15));
    }
}
