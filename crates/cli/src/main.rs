//! `estuary`: Estuary's command-line interface.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use alloy::primitives::Address;
use anyhow::{Context, Result};
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use estuary_cli::{
    add, aggregate_cmd, car_cmd, config_file,
    dev::{self, DevOptions},
    piece_cmd,
};
use estuary_oracle::{Oracle, OracleConfig};
use tokio::signal::unix::{SignalKind, signal};
use tracing_subscriber::EnvFilter;

#[derive(Debug, Parser)]
#[command(name = "estuary", version, about = "Put data on IPFS and keep it on Filecoin")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once
enum Command {
    /// Operate the oracle.
    #[command(subcommand)]
    Oracle(OracleCommand),
    /// Run the whole stack locally: chain, contracts, oracle and dapp.
    Dev(DevOptions),
    /// Import a file or directory as UnixFS; print its root CID (and write a CAR).
    Add(add::AddArgs),
    /// Inspect CAR files.
    #[command(subcommand)]
    Car(CarCommand),
    /// Write a file from a CAR (or a path inside it) to stdout.
    Cat(car_cmd::CatArgs),
    /// Pack files (usually CARs) into one deal with an FRC-0058 index.
    #[command(args_conflicts_with_subcommands = true)]
    Aggregate {
        #[command(subcommand)]
        verify: Option<AggregateCommand>,
        /// The files, in the order they are placed.
        files: Vec<PathBuf>,
        /// Padded deal size: a power of two, e.g. 32GiB, 512MiB, 1048576.
        #[arg(long, value_parser = aggregate_cmd::parse_size)]
        deal_size: Option<u64>,
        /// Write the deal's bytes here.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Print everything as JSON (the aggregate and each segment's proof).
        #[arg(long)]
        json: bool,
    },
    /// Compute a file's Filecoin piece commitment; print its piece CID v2.
    Piece {
        /// The file (usually a CAR).
        file: PathBuf,
        /// Print {"piece_cid_v1", "piece_cid_v2", "padded_size", "payload_size"}.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum AggregateCommand {
    /// Check one segment's inclusion proof (its "proof" object from `aggregate --json`).
    Verify {
        /// The aggregate's piece CID (v2).
        #[arg(long)]
        aggregate: String,
        /// The piece's CID (v2).
        #[arg(long)]
        piece: String,
        /// A JSON file with the segment's proof.
        #[arg(long)]
        proof: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum CarCommand {
    /// Check every block against its CID and whether the DAG is complete.
    Verify {
        /// The CAR file.
        file: PathBuf,
    },
    /// List the blocks: CID, codec, size.
    Ls {
        /// The CAR file.
        file: PathBuf,
        /// One JSON object per block.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once
enum OracleCommand {
    /// Follow the chain, pin, and serve the API until SIGTERM or Ctrl-C.
    Run(RunArgs),
    /// Requests by state, and the watchers' cursors (reads the database).
    Status(DbArgs),
    /// Failed and quarantined requests with their reasons.
    Quarantined(DbArgs),
    /// Put a failed or quarantined request back in the queue (a running oracle picks it up).
    Requeue {
        #[command(flatten)]
        db: DbArgs,
        /// The request's id.
        id: String,
    },
    /// Manage the Pinning Service API's bearer tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Walk every pinned DAG; requeue those with missing or corrupt blocks.
    Reconcile {
        #[command(flatten)]
        db: DbArgs,
        /// The oracle's data directory.
        #[arg(long, env = "ESTUARY_DATA_DIR", default_value = "estuary-data")]
        data_dir: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Make a token for an account and print its secret (shown only this once).
    Add {
        #[command(flatten)]
        db: DbArgs,
        /// The account: pins made with the token belong to it.
        name: String,
        /// Allow listing and reading pins only.
        #[arg(long)]
        read_only: bool,
    },
    /// List tokens (names and scopes; secrets are not kept).
    List(DbArgs),
    /// Delete a token; its account's pins stay.
    Revoke {
        #[command(flatten)]
        db: DbArgs,
        /// The token's account.
        name: String,
    },
}

#[derive(Debug, clap::Args)]
struct DbArgs {
    /// The oracle's database: an SQLite file, or a `postgres://` URL.
    #[arg(long, env = "ESTUARY_DB", default_value = "estuary-oracle.sqlite")]
    db: PathBuf,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// TOML file of settings (keys are these flags' names); flags and ESTUARY_* variables win.
    #[arg(long, env = "ESTUARY_CONFIG")]
    config: Option<PathBuf>,
    /// JSON-RPC endpoint of the chain.
    #[arg(long, env = "ESTUARY_RPC_URL", default_value = "http://127.0.0.1:8545")]
    rpc_url: String,
    /// More endpoints of the same chain: the watcher fails over to them when a call fails or
    /// hangs.
    #[arg(long = "rpc-fallback", env = "ESTUARY_RPC_FALLBACKS", value_delimiter = ',')]
    rpc_fallbacks: Vec<String>,
    /// Seconds one watcher step may take on an endpoint before the next endpoint is tried.
    #[arg(long, env = "ESTUARY_RPC_TIMEOUT_SECS", default_value_t = 20)]
    rpc_timeout_secs: u64,
    /// Refuse to start unless the endpoint serves this chain.
    #[arg(long, env = "ESTUARY_CHAIN_ID")]
    chain_id: Option<u64>,
    /// Address of the EstuaryPinning contract.
    #[arg(long, env = "ESTUARY_PINNING_ADDRESS")]
    pinning_address: Address,
    /// Address of an EstuaryOracle contract whose pin jobs to serve too.
    #[arg(long, env = "ESTUARY_ORACLE_ADDRESS")]
    oracle_address: Option<Address>,
    /// First block to read when the database has no cursor (the deployment block).
    #[arg(long, env = "ESTUARY_START_BLOCK", default_value_t = 0)]
    start_block: u64,
    /// Blocks a request must be buried under before the oracle acts on it.
    #[arg(long, env = "ESTUARY_CONFIRMATIONS", default_value_t = 1)]
    confirmations: u64,
    /// Which blocks count as confirmed: `depth` (head minus --confirmations), or the RPC's
    /// `safe` or `finalized` block.
    #[arg(long, env = "ESTUARY_FINALITY", default_value = "depth", value_parser = ["depth", "safe", "finalized"])]
    finality: String,
    /// Most blocks per eth_getLogs call.
    #[arg(long, env = "ESTUARY_MAX_BLOCK_RANGE", default_value_t = 1000)]
    max_block_range: u64,
    /// Milliseconds between looks at the chain head when caught up.
    #[arg(long, env = "ESTUARY_POLL_INTERVAL_MS", default_value_t = 500)]
    poll_interval_ms: u64,
    /// SQLite database file, or a `postgres://` URL (a queue shared by several oracles).
    #[arg(long, env = "ESTUARY_DB", default_value = "estuary-oracle.sqlite")]
    db: PathBuf,
    /// Address for the HTTP API.
    #[arg(long, env = "ESTUARY_LISTEN", default_value = "127.0.0.1:3000")]
    listen: SocketAddr,
    /// Bearer token for the API's operator routes (none: those routes refuse everyone).
    #[arg(long, env = "ESTUARY_API_TOKEN", hide_env_values = true)]
    api_token: Option<String>,
    /// Directory for pinned blocks, packed CARs and uploads.
    #[arg(long, env = "ESTUARY_DATA_DIR", default_value = "estuary-data")]
    data_dir: PathBuf,
    /// Trustless gateway to fetch DAGs from (repeat, or comma-separated in the environment).
    #[arg(long = "gateway", env = "ESTUARY_GATEWAYS", value_delimiter = ',')]
    gateways: Vec<String>,
    /// Private key (hex) of the operator account that reports on chain; without it requests are
    /// recorded but not pinned.
    #[arg(long, env = "ESTUARY_OPERATOR_KEY", hide_env_values = true)]
    operator_key: Option<String>,
    /// Jobs worked on at once.
    #[arg(long, env = "ESTUARY_WORKERS", default_value_t = 4)]
    workers: usize,
    /// Retryable failures before a job is quarantined.
    #[arg(long, env = "ESTUARY_MAX_ATTEMPTS", default_value_t = 5)]
    max_attempts: u32,
    /// Keep blocks in S3-compatible object storage (`s3://bucket[/prefix]`) instead of the data
    /// directory; credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY.
    #[arg(long, env = "ESTUARY_S3_URL")]
    s3_url: Option<String>,
    /// S3 endpoint other than AWS's (e.g. http://127.0.0.1:9000).
    #[arg(long, env = "ESTUARY_S3_ENDPOINT", requires = "s3_url")]
    s3_endpoint: Option<String>,
    /// S3 region (default us-east-1).
    #[arg(long, env = "ESTUARY_S3_REGION", requires = "s3_url")]
    s3_region: Option<String>,
    /// Seconds before a report transaction that is not mined is replaced with higher fees.
    #[arg(long, env = "ESTUARY_TX_BUMP_SECS", default_value_t = 30)]
    tx_bump_secs: u64,
    /// Highest fee per gas a report may offer, in gwei (no cap by default).
    #[arg(long, env = "ESTUARY_MAX_FEE_GWEI")]
    max_fee_gwei: Option<u64>,
    /// Seconds a job stays with a worker that stops renewing it (it renews every third).
    #[arg(long, env = "ESTUARY_LEASE_SECS", default_value_t = 600)]
    lease_secs: u64,
    /// Multiaddrs the libp2p node listens on, e.g. `/ip4/0.0.0.0/tcp/4001` and
    /// `/ip4/0.0.0.0/tcp/4002/ws` (for browser nodes). None: it only dials out to origins.
    #[arg(long = "p2p-listen", env = "ESTUARY_P2P_LISTEN", value_delimiter = ',')]
    p2p_listen: Vec<String>,
    /// Multiaddrs the pinning API returns as `delegates` (default: the API's own address).
    #[arg(long = "delegate", env = "ESTUARY_DELEGATES", value_delimiter = ',')]
    delegates: Vec<String>,
    /// Most bytes one DAG may have.
    #[arg(long, env = "ESTUARY_MAX_DAG_BYTES", default_value_t = 32 << 30)]
    max_dag_bytes: u64,
    /// Seconds without a byte from a source before it is given up.
    #[arg(long, env = "ESTUARY_NO_PROGRESS_SECS", default_value_t = 60)]
    no_progress_secs: u64,
}

fn main() -> std::process::ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // A reader that went away (`estuary cat ... | head`) is not an error.
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            // The whole cause chain on one line; no backtrace for a user's mistake.
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("ESTUARY_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let command = config_file::command_with_config(Cli::command(), &argv)?;
    let cli = Cli::from_arg_matches(&command.get_matches_from(argv)).unwrap_or_else(|e| e.exit());
    match cli.command {
        Command::Oracle(OracleCommand::Run(args)) => run_oracle(args).await,
        Command::Oracle(cmd) => oracle_admin(cmd).await,
        Command::Dev(opts) => dev::run(opts).await,
        Command::Add(args) => {
            let summary =
                tokio::task::spawn_blocking(move || add::run(&args).map(|s| (s, args.json)))
                    .await??;
            print_add(&summary.0, summary.1)
        }
        Command::Aggregate {
            verify: Some(AggregateCommand::Verify { aggregate, piece, proof }),
            ..
        } => {
            let seg = aggregate_cmd::verify(&aggregate, &piece, &proof)?;
            print_lines([format!(
                "ok: the piece is at offset {} ({} bytes) and in the index",
                seg.offset, seg.size
            )])
        }
        Command::Aggregate { verify: None, files, deal_size, out, json } => {
            let deal_size = deal_size.context("--deal-size is required")?;
            let report = tokio::task::spawn_blocking(move || {
                aggregate_cmd::aggregate(&files, deal_size, out.as_deref())
            })
            .await??;
            print_lines([if json { serde_json::to_string(&report)? } else { report.piece_cid }])
        }
        Command::Piece { file, json } => {
            let report = tokio::task::spawn_blocking(move || piece_cmd::piece(&file)).await??;
            print_lines([if json { serde_json::to_string(&report)? } else { report.piece_cid_v2 }])
        }
        Command::Car(cmd) => tokio::task::spawn_blocking(move || car_command(&cmd)).await?,
        Command::Cat(args) => {
            tokio::task::spawn_blocking(move || car_cmd::cat(&args, &mut std::io::stdout().lock()))
                .await?
        }
    }
}

fn print_add(summary: &add::AddSummary, json: bool) -> Result<()> {
    let line = if json { serde_json::to_string(summary)? } else { summary.root.clone() };
    print_lines([line])
}

/// Writes lines to stdout; a reader that went away (`| head`) ends the output quietly.
fn print_lines(lines: impl IntoIterator<Item = String>) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    for line in lines {
        match writeln!(out, "{line}") {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn car_command(cmd: &CarCommand) -> Result<()> {
    match cmd {
        CarCommand::Verify { file } => {
            print_lines([serde_json::to_string_pretty(&car_cmd::verify(file)?)?])
        }
        CarCommand::Ls { file, json } => {
            let entries = car_cmd::ls(file)?;
            let mut lines = Vec::with_capacity(entries.len());
            for e in &entries {
                lines.push(if *json {
                    serde_json::to_string(e)?
                } else {
                    format!("{}\t{}\t{}", e.cid, e.codec, e.size)
                });
            }
            print_lines(lines)
        }
    }
}

async fn oracle_admin(cmd: OracleCommand) -> Result<()> {
    use estuary_oracle::{
        blockstore::FsBlockstore,
        model::RequestStatus,
        pinning::{Scope, new_secret, secret_digest},
        store::{JobStore, PgStore, PinStore, SqliteStore},
    };
    /// Runs `$body` with `$store` bound to the oracle's database: a `postgres://` URL or an
    /// SQLite file (which must exist unless `$create`).
    macro_rules! with_store {
        ($db:expr, $create:expr, |$store:ident| $body:expr) => {{
            let db: &std::path::Path = &$db;
            let text = db.to_string_lossy().into_owned();
            if text.starts_with("postgres://") || text.starts_with("postgresql://") {
                let $store = PgStore::connect(&text).await?;
                $body
            } else {
                if !$create && !db.exists() {
                    anyhow::bail!("no oracle database at {}", db.display());
                }
                let $store = SqliteStore::open(db).await?;
                $body
            }
        }};
    }
    match cmd {
        OracleCommand::Run(_) => unreachable!("handled by run_oracle"),
        OracleCommand::Status(db) => with_store!(db.db, false, |store| {
            let lines = store.status_counts().await?.into_iter().map(|(s, n)| format!("{s}\t{n}"));
            print_lines(lines)
        }),
        OracleCommand::Quarantined(db) => with_store!(db.db, false, |store| {
            let bad = store
                .in_status(&[RequestStatus::Quarantined, RequestStatus::Failed], 10_000)
                .await?;
            print_lines(bad.into_iter().map(|r| {
                format!(
                    "{}\t{}\t{}\t{}",
                    r.id,
                    r.status.as_str(),
                    r.cid.unwrap_or_else(|| r.cid_bytes.clone()),
                    r.error.unwrap_or_default()
                )
            }))
        }),
        OracleCommand::Requeue { db, id } => with_store!(db.db, false, |store| {
            let moved =
                store.requeue_id(&id, &[RequestStatus::Quarantined, RequestStatus::Failed]).await?;
            if moved == 0 {
                anyhow::bail!(
                    "request {id} is not failed or quarantined (or its bytes are not a CID)"
                );
            }
            print_lines([format!("request {id} queued again")])
        }),
        OracleCommand::Token(TokenCommand::Add { db, name, read_only }) => {
            with_store!(db.db, true, |store| {
                let secret = new_secret();
                let scope = if read_only { Scope::Read } else { Scope::Write };
                if !store
                    .add_token(
                        &name,
                        &secret_digest(&secret),
                        scope,
                        estuary_oracle::model::now_ms(),
                    )
                    .await?
                {
                    anyhow::bail!("a token named {name:?} exists; revoke it first");
                }
                print_lines([secret])
            })
        }
        OracleCommand::Token(TokenCommand::List(db)) => with_store!(db.db, false, |store| {
            let tokens = store.tokens().await?;
            print_lines(tokens.into_iter().map(|t| format!("{}\t{}", t.name, t.scope.as_str())))
        }),
        OracleCommand::Token(TokenCommand::Revoke { db, name }) => {
            with_store!(db.db, false, |store| {
                if !store.revoke_token(&name).await? {
                    anyhow::bail!("no token named {name:?}");
                }
                print_lines([format!("token {name} revoked")])
            })
        }
        OracleCommand::Reconcile { db, data_dir } => with_store!(db.db, false, |store| {
            let blocks = std::sync::Arc::new(FsBlockstore::open(data_dir)?);
            let done = estuary_oracle::reconcile::reconcile(&store, &blocks).await?;
            let summary =
                format!("{} pinned DAGs checked, {} requeued", done.checked, done.requeued.len());
            print_lines(
                std::iter::once(summary)
                    .chain(done.requeued.into_iter().map(|(id, why)| format!("{id}\t{why}"))),
            )
        }),
    }
}

async fn run_oracle(args: RunArgs) -> Result<()> {
    let mut config = OracleConfig::new(args.rpc_url, args.pinning_address, args.db);
    config.chain_id = args.chain_id;
    config.rpc_fallbacks = args.rpc_fallbacks;
    config.rpc_timeout = Duration::from_secs(args.rpc_timeout_secs.max(1));
    config.start_block = args.start_block;
    config.confirmations = args.confirmations;
    config.oracle_contract = args.oracle_address;
    config.finality = match args.finality.as_str() {
        "safe" => estuary_oracle::watcher::Finality::Safe,
        "finalized" => estuary_oracle::watcher::Finality::Finalized,
        _ => estuary_oracle::watcher::Finality::Depth,
    };
    config.max_block_range = args.max_block_range;
    config.poll_interval = Duration::from_millis(args.poll_interval_ms);
    config.listen = args.listen;
    config.api_token = args.api_token;
    config.data_dir = args.data_dir;
    config.s3 = args.s3_url.map(|url| estuary_oracle::blockstore::s3::S3Config {
        url,
        endpoint: args.s3_endpoint,
        region: args.s3_region,
        credentials: None,
    });
    config.gateways = args.gateways;
    config.delegates = args.delegates;
    config.p2p_listen = args.p2p_listen;
    config.operator_key = args.operator_key;
    config.workers = args.workers;
    config.max_attempts = args.max_attempts;
    config.lease = Duration::from_secs(args.lease_secs.max(1));
    config.tx_policy.bump_after = Duration::from_secs(args.tx_bump_secs.max(1));
    config.tx_policy.max_fee_per_gas = args.max_fee_gwei.map(|g| u128::from(g) * 1_000_000_000);
    config.fetch_limits.max_dag_bytes = args.max_dag_bytes;
    config.fetch_limits.no_progress = Duration::from_secs(args.no_progress_secs);

    let mut sigterm = signal(SignalKind::terminate())?;
    let oracle = Oracle::start(config).await?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = sigterm.recv() => {}
    }
    oracle.stop().await;
    Ok(())
}
