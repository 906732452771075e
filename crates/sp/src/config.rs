//! The agent's settings, declared once, nested per component: each field has its flag, its
//! `ESTUARY_*` variable and its default here, and `estuary sp run` flattens them into its
//! command. Secrets (the key) are never shown by `--help`.

use std::{collections::HashMap, net::SocketAddr, path::PathBuf, time::Duration};

use alloy::primitives::{Address, U256};
use clap::Parser;
pub use estuary_chain::ChainConfig;

use crate::{
    domain::{MinerId, Policy, policy::GIB},
    fetch::FetchLimits,
    sealer::Fault,
};

/// A size: bytes, or with a unit (`512MiB`, `32GiB`, `1KiB`, `100MB`).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(digits);
    let n: u64 = n.parse().map_err(|_| format!("{s:?} is not a size"))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => return Err(format!("unknown unit {other:?} (B, KiB, MiB, GiB, TiB, KB, MB, GB)")),
    };
    n.checked_mul(mult).ok_or_else(|| format!("{s:?} is too large"))
}

fn parse_fault(s: &str) -> Result<(String, Fault), String> {
    let (piece, fault) = s.split_once('=').ok_or("expected PIECE_CID=fail|expire|terminate")?;
    Ok((piece.trim().to_owned(), fault.trim().parse()?))
}

/// Who the agent is.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct IdentityConfig {
    /// The miner actor this agent works for (f0…).
    #[arg(long, env = "ESTUARY_SP_MINER")]
    pub miner: MinerId,
    /// Private key (hex) of an account that controls the miner (owner, worker or control
    /// address): it claims, publishes, proves and collects.
    #[arg(long = "key", env = "ESTUARY_SP_KEY", hide_env_values = true, hide_default_value = true)]
    pub key: String,
}

/// Which contracts to follow.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct ContractsConfig {
    /// A `PerpetualStorage` contract whose orders to serve (repeat for several).
    #[arg(long = "perpetual-address", env = "ESTUARY_PERPETUAL_ADDRESSES", value_delimiter = ',')]
    pub perpetual: Vec<Address>,
    /// A `DealClient` contract whose proposals to serve (repeat for several).
    #[arg(
        long = "deal-client-address",
        env = "ESTUARY_DEAL_CLIENT_ADDRESSES",
        value_delimiter = ','
    )]
    pub deal_client: Vec<Address>,
    /// A `ProviderRegistry` contract: the agent registers `--public-url` there for its miner
    /// (from its key, a controlling address), so that the oracles reading it probe this
    /// provider's replicas and read cold pins from it without an operator listing its URL.
    #[arg(long = "provider-registry-address", env = "ESTUARY_PROVIDER_REGISTRY_ADDRESS")]
    pub provider_registry: Option<Address>,
    /// First block to read when the database has no cursor (the contracts' deployment block):
    /// events from there on are found, however late the agent starts.
    #[arg(long, env = "ESTUARY_START_BLOCK", default_value_t = 0)]
    pub start_block: u64,
}

/// Where the agent keeps its state.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct StoreConfig {
    /// The agent's SQLite database.
    #[arg(long = "db", env = "ESTUARY_SP_DB", default_value = "estuary-sp.sqlite")]
    pub database: PathBuf,
    /// Directory for downloads and pieces.
    #[arg(long, env = "ESTUARY_SP_DATA_DIR", default_value = "estuary-sp-data")]
    pub data_dir: PathBuf,
}

/// The HTTP server (health, metrics, status, retrievals).
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct ApiConfig {
    /// Address for the HTTP server.
    #[arg(long, env = "ESTUARY_SP_LISTEN", default_value = "127.0.0.1:3100")]
    pub listen: SocketAddr,
    /// This server's URL as clients reach it (`{public-url}/piece/{cid}`, `{public-url}/ipfs/{cid}`):
    /// what the agent registers with `--provider-registry-address` (default: `http://` and the
    /// listen address).
    #[arg(long, env = "ESTUARY_SP_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Retrieval requests served at once; more are answered 503.
    #[arg(long, env = "ESTUARY_SP_MAX_RETRIEVALS", default_value_t = 64)]
    pub max_retrievals: usize,
    /// Seconds a retrieval response may wait for its client to read before it is dropped.
    #[arg(long, env = "ESTUARY_SP_RETRIEVAL_IDLE_SECS", default_value_t = 30)]
    pub retrieval_idle_secs: u64,
}

/// What the provider takes.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct PolicyConfig {
    /// Lowest price in attoFIL per GiB (padded) per epoch (a slot's bounty is spread over its
    /// term).
    #[arg(long, env = "ESTUARY_SP_MIN_PRICE", default_value = "0")]
    pub min_price_per_gib_epoch: U256,
    /// Smallest padded piece taken (e.g. 1MiB).
    #[arg(long, env = "ESTUARY_SP_MIN_PIECE_SIZE", default_value = "128", value_parser = parse_size)]
    pub min_piece_size: u64,
    /// Largest padded piece taken (e.g. 32GiB).
    #[arg(long, env = "ESTUARY_SP_MAX_PIECE_SIZE", default_value = "32GiB", value_parser = parse_size)]
    pub max_piece_size: u64,
    /// Take verified (Fil+) deals only.
    #[arg(long, env = "ESTUARY_SP_VERIFIED_ONLY")]
    pub verified_only: bool,
    /// A client (order creator, proposal proposer) to take work from; repeat; none: any.
    #[arg(long = "allow-client", env = "ESTUARY_SP_ALLOW_CLIENTS", value_delimiter = ',')]
    pub allow_clients: Vec<Address>,
    /// Most GiB (padded) of work claimed and not yet active.
    #[arg(long, env = "ESTUARY_SP_MAX_IN_FLIGHT_GIB", default_value_t = 256)]
    pub max_in_flight_gib: u64,
    /// Downloads at once.
    #[arg(long, env = "ESTUARY_SP_MAX_DOWNLOADS", default_value_t = 4)]
    pub max_downloads: usize,
    /// Shortest deal taken, in epochs from now to its end.
    #[arg(long, env = "ESTUARY_SP_MIN_TERM", default_value_t = 0)]
    pub min_term_epochs: u64,
    /// Download rate counted on (bytes per second) when deciding whether work can be finished
    /// in its window.
    #[arg(long, env = "ESTUARY_SP_FETCH_RATE", default_value = "20MB", value_parser = parse_size)]
    pub fetch_rate: u64,
    /// Epochs the sealer needs from a fetched piece to an active deal.
    #[arg(long, env = "ESTUARY_SP_SEAL_EPOCHS", default_value_t = 120)]
    pub seal_epochs: u64,
    /// Milliseconds per epoch (30000 on Filecoin; the local chain's block time).
    #[arg(long, env = "ESTUARY_EPOCH_MS", default_value_t = 30_000)]
    pub epoch_ms: u64,
    /// Provider collateral per padded GiB (attoFIL) offered in claims; default: the simulated
    /// market's minimum (local chain only).
    #[arg(long, env = "ESTUARY_SP_COLLATERAL_PER_GIB")]
    pub provider_collateral_per_gib: Option<U256>,
}

impl PolicyConfig {
    /// The policy the domain evaluates.
    pub fn policy(&self) -> Policy {
        Policy {
            min_price_per_gib_epoch: self.min_price_per_gib_epoch,
            min_piece_size: self.min_piece_size,
            max_piece_size: self.max_piece_size,
            verified_only: self.verified_only,
            allowed_clients: self.allow_clients.clone(),
            max_in_flight_bytes: self.max_in_flight_gib.saturating_mul(GIB),
            min_term: self.min_term_epochs,
            fetch_rate: self.fetch_rate.max(1),
            seal_epochs: self.seal_epochs,
            epoch_ms: self.epoch_ms.max(1),
            margin_epochs: 2,
        }
    }
}

/// Downloads.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct FetchConfig {
    /// Let origins be loopback or private addresses (the local stack only: origins come from
    /// the chain, written by anyone).
    #[arg(long, env = "ESTUARY_SP_ALLOW_PRIVATE_ORIGINS")]
    pub allow_private_origins: bool,
    /// Seconds without a byte before an origin is dropped.
    #[arg(long, env = "ESTUARY_SP_FETCH_NO_PROGRESS_SECS", default_value_t = 60)]
    pub fetch_no_progress_secs: u64,
    /// Slowest average download rate accepted (bytes per second), after the grace period.
    #[arg(long, env = "ESTUARY_SP_FETCH_MIN_RATE", default_value = "64KiB", value_parser = parse_size)]
    pub fetch_min_rate: u64,
    /// Seconds an attempt runs before its rate counts.
    #[arg(long, env = "ESTUARY_SP_FETCH_GRACE_SECS", default_value_t = 30)]
    pub fetch_grace_secs: u64,
    /// Attempts per origin before it is given up.
    #[arg(long, env = "ESTUARY_SP_FETCH_ATTEMPTS", default_value_t = 3)]
    pub fetch_attempts: u32,
    /// Threads hashing a download's piece (0: one per core).
    #[arg(long, env = "ESTUARY_SP_HASH_THREADS", default_value_t = 0)]
    pub hash_threads: usize,
}

impl FetchConfig {
    /// The bounds on one download.
    pub fn limits(&self) -> FetchLimits {
        FetchLimits {
            no_progress: Duration::from_secs(self.fetch_no_progress_secs.max(1)),
            min_rate: self.fetch_min_rate,
            grace: Duration::from_secs(self.fetch_grace_secs),
            attempts: self.fetch_attempts.max(1),
            hash_threads: if self.hash_threads == 0 {
                std::thread::available_parallelism().map_or(1, usize::from)
            } else {
                self.hash_threads
            },
        }
    }
}

/// Which sealer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SealerKind {
    /// The simulated market's paths (local chain only).
    Sim,
    /// A command (`--seal-command`) that hands the piece to Boost or Curio.
    Command,
}

/// Sealing.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct SealerConfig {
    /// `sim` (the local chain's simulated market) or `command` (your stack, with
    /// `--seal-command`).
    #[arg(long, env = "ESTUARY_SP_SEALER", value_enum)]
    pub sealer: SealerKind,
    /// The seal command template (see the docs: `{piece_path}`, `{piece_cid}`, `{proposal}`, …);
    /// it prints the deal ID.
    #[arg(long, env = "ESTUARY_SP_SEAL_COMMAND", required_if_eq("sealer", "command"))]
    pub seal_command: Option<String>,
    /// Seconds the seal command may run.
    #[arg(long, env = "ESTUARY_SP_SEAL_TIMEOUT_SECS", default_value_t = 600)]
    pub seal_timeout_secs: u64,
    /// Simulated sealer: blocks from publishing a deal to proving its sector.
    #[arg(long, env = "ESTUARY_SP_SIM_ACTIVATE_AFTER", default_value_t = 2)]
    pub sim_activate_after: u64,
    /// Simulated sealer: make `DealClient` proposals direct deals (no market deal; the proof
    /// notifies the contract, which records `NO_DEAL`), as Curio's `mk20` DDO deals are.
    #[arg(long, env = "ESTUARY_SP_SIM_DIRECT")]
    pub sim_direct: bool,
    /// Simulated sealer: a fault for a piece, `PIECE_CID=fail|expire|terminate` (repeat).
    #[arg(long = "sim-fault", value_parser = parse_fault)]
    pub sim_faults: Vec<(String, Fault)>,
}

impl SealerConfig {
    /// The simulated sealer's faults by piece CID.
    pub fn faults(&self) -> HashMap<String, Fault> {
        self.sim_faults.iter().cloned().collect()
    }
}

/// Transactions and the keeper's schedule.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct KeeperConfig {
    /// Epochs between collections of each active slot's bounty.
    #[arg(long, env = "ESTUARY_SP_COLLECT_EPOCHS", default_value_t = 2880)]
    pub collect_interval_epochs: u64,
    /// Seconds before a transaction that is not mined is replaced with higher fees.
    #[arg(long, env = "ESTUARY_TX_BUMP_SECS", default_value_t = 30)]
    pub tx_bump_secs: u64,
    /// Highest fee per gas, in gwei (no cap by default).
    #[arg(long, env = "ESTUARY_MAX_FEE_GWEI")]
    pub max_fee_gwei: Option<u64>,
    /// Blocks a transaction must be buried under before it counts (1: mined).
    #[arg(long, env = "ESTUARY_TX_CONFIRMATIONS", default_value_t = 1)]
    pub tx_confirmations: u64,
    /// Milliseconds between looks at the work to do.
    #[arg(long, env = "ESTUARY_SP_TICK_MS", default_value_t = 500)]
    pub tick_ms: u64,
}

/// Everything the agent needs to run.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct SpConfig {
    /// The chain.
    #[command(flatten)]
    pub chain: ChainConfig,
    /// The miner and its key.
    #[command(flatten)]
    pub identity: IdentityConfig,
    /// The contracts.
    #[command(flatten)]
    pub contracts: ContractsConfig,
    /// The database and the data directory.
    #[command(flatten)]
    pub store: StoreConfig,
    /// The HTTP server.
    #[command(flatten)]
    pub api: ApiConfig,
    /// What to take.
    #[command(flatten)]
    pub policy: PolicyConfig,
    /// Downloads.
    #[command(flatten)]
    pub fetch: FetchConfig,
    /// Sealing.
    #[command(flatten)]
    pub sealer: SealerConfig,
    /// Transactions and schedules.
    #[command(flatten)]
    pub keeper: KeeperConfig,
}

#[derive(Parser)]
struct Defaults {
    #[command(flatten)]
    config: SpConfig,
}

impl SpConfig {
    /// The defaults (as `estuary sp run` has them) with `args` given as on the command line.
    pub fn from_args<I: AsRef<std::ffi::OsStr>>(
        args: impl IntoIterator<Item = I>,
    ) -> Result<Self, clap::Error> {
        let argv = std::iter::once(std::ffi::OsString::from("sp"))
            .chain(args.into_iter().map(|a| a.as_ref().to_owned()));
        Defaults::try_parse_from(argv).map(|d| d.config)
    }

    /// The transactions' policy.
    pub fn tx_policy(&self) -> estuary_chain::TxPolicy {
        estuary_chain::TxPolicy {
            bump_after: Duration::from_secs(self.keeper.tx_bump_secs.max(1)),
            max_fee_per_gas: self.keeper.max_fee_gwei.map(|g| u128::from(g) * 1_000_000_000),
            confirmations: self.keeper.tx_confirmations.max(1),
            ..estuary_chain::TxPolicy::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_size("128"), Ok(128));
        assert_eq!(parse_size("32GiB"), Ok(32 << 30));
        assert_eq!(parse_size("20MB"), Ok(20_000_000));
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("99999999999TiB").is_err());
    }

    #[test]
    fn the_settings_parse_with_their_defaults() {
        let c = SpConfig::from_args([
            "--miner",
            "f01000",
            "--key",
            "00",
            "--sealer",
            "sim",
            "--perpetual-address",
            "0x0101010101010101010101010101010101010101",
            "--sim-fault",
            "baga=terminate",
        ])
        .unwrap();
        assert_eq!(c.identity.miner, MinerId(1000));
        assert_eq!(c.policy.max_piece_size, 32 << 30);
        assert_eq!(c.sealer.faults()["baga"], Fault::Terminate);
        assert!(
            SpConfig::from_args(["--miner", "f01000", "--key", "00", "--sealer", "command"])
                .is_err(),
            "a command sealer needs its command"
        );
        assert!(SpConfig::from_args(["--miner", "x", "--key", "00", "--sealer", "sim"]).is_err());
    }
}
