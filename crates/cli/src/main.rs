//! `estuary`: Estuary's command-line interface.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use estuary_cli::{
    add, aggregate_cmd, car_cmd, config_file,
    dev::{self, DevOptions},
    piece_cmd, sp_cmd,
};
use estuary_oracle::{
    Oracle, OracleConfig,
    config::StoreConfig,
    domain::JobKey,
    store::{DatabaseUrl, Store},
};
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
    /// Run a storage provider's agent, or read its state.
    #[command(subcommand)]
    Sp(sp_cmd::SpCommand),
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
    /// Jobs by state; with a key, that one job (reads the database).
    Status {
        #[command(flatten)]
        db: DbArgs,
        /// A job's key: contract/CHAIN/ADDRESS/ID or api/ACCOUNT/ID.
        key: Option<String>,
    },
    /// Failed and quarantined jobs with their keys and reasons.
    Quarantined(DbArgs),
    /// Storage orders for pieces, newest first, with their replicas (reads the database): one
    /// line per order — piece, state, order id, active/target, each replica as
    /// `f0PROVIDER:STATE[#DEAL]`, and the last error.
    Deals {
        #[command(flatten)]
        db: DbArgs,
        /// Only the orders of this piece CID.
        #[arg(long)]
        piece: Option<String>,
        /// At most this many orders.
        #[arg(long, default_value_t = 100)]
        limit: u64,
        /// JSON (as `GET /deals` gives it) instead of lines.
        #[arg(long)]
        json: bool,
    },
    /// Storage providers the orders have seen, best score first (reads the database): one
    /// line per provider — `f0…`, score, success rate, active, in flight, claims, lapsed,
    /// ended early, slashed, mean epochs to publish and to activate, last failure's block,
    /// probes verified and failed, replicas lost, and `suspended` if it is.
    Providers {
        #[command(flatten)]
        db: DbArgs,
        /// JSON (as `GET /providers` gives each) instead of lines.
        #[arg(long)]
        json: bool,
    },
    /// Orders short of their replicas (a replica lost, slashed, ended or ending no longer
    /// counts), as `estuary oracle deals` lists them (reads the database); with `--now`, the
    /// running oracle's deal rounds repair them at once rather than at their next tick
    /// (`--deal-check-secs`), through `POST /deals/repair`.
    Repair {
        #[command(flatten)]
        db: DbArgs,
        /// Ask the running oracle to run its deal rounds now.
        #[arg(long)]
        now: bool,
        /// The running oracle's API.
        #[arg(long, env = "ESTUARY_ORACLE_URL", default_value = "http://127.0.0.1:3000")]
        url: String,
        /// The operator's API token (`--api-token` of `estuary oracle run`).
        #[arg(long, env = "ESTUARY_API_TOKEN", hide_env_values = true)]
        api_token: Option<String>,
    },
    /// Suspend a storage provider (no new deals go to it; its deals are kept and probed) or
    /// resume it (writes the database; a running oracle follows at its next round).
    Provider {
        #[command(flatten)]
        db: DbArgs,
        /// `suspend` or `resume`.
        #[arg(value_parser = ["suspend", "resume"])]
        action: String,
        /// The miner: `f0…`.
        provider: String,
        /// Why (kept with it, shown in `estuary oracle providers --json`).
        #[arg(long)]
        note: Option<String>,
    },
    /// Buckets of pins, newest first (reads the database): one line per bucket — id, state,
    /// pieces, padded bytes used, why it closed, the aggregate's deal size and piece CID, its
    /// order's state and id, and whose it is (`shared`, `requester:…`, `pin:…`); with `--id`,
    /// that bucket's pieces (piece, offset, padded size, CAR
    /// size, root).
    Buckets {
        #[command(flatten)]
        db: DbArgs,
        /// One bucket, with its pieces.
        #[arg(long)]
        id: Option<u64>,
        /// At most this many buckets.
        #[arg(long, default_value_t = 100)]
        limit: u64,
        /// JSON (as `GET /buckets` gives each) instead of lines.
        #[arg(long)]
        json: bool,
    },
    /// Put a failed or quarantined job back in the queue (a running oracle picks it up).
    Requeue {
        #[command(flatten)]
        db: DbArgs,
        /// The job's key: contract/CHAIN/ADDRESS/ID or api/ACCOUNT/ID
        /// (`estuary oracle quarantined` lists them).
        #[arg(required_unless_present = "all_quarantined")]
        key: Option<String>,
        /// Every quarantined job instead of one (after a fault that quarantined many).
        #[arg(long, conflicts_with = "key")]
        all_quarantined: bool,
    },
    /// Delete the blocks, packed CARs and staging areas no live pin needs (also run on a
    /// schedule by `estuary oracle run`, see --gc-interval-secs).
    Gc {
        #[command(flatten)]
        store: StoreConfig,
        /// Keep whatever was written in the last SECONDS, needed or not (an upload waiting for
        /// its pin).
        #[arg(long, value_name = "SECONDS", default_value_t = 86_400)]
        grace_secs: u64,
        /// Keep a live pin's packed CAR this long after it was written (0: while the pin lives).
        #[arg(long, value_name = "SECONDS", default_value_t = 604_800)]
        packed_retention_secs: u64,
    },
    /// Back up the database (a consistent snapshot: SQLite's VACUUM INTO, or pg_dump), the
    /// blocks and the packed CARs into DIR, while the oracle runs.
    Backup {
        #[command(flatten)]
        store: StoreConfig,
        /// An empty or new directory (blocks are hard-linked when on the same filesystem).
        dir: PathBuf,
    },
    /// Restore a backup into a stopped oracle's fresh database and data directory; every block
    /// is checked, and the cursors are where the backup left them.
    Restore {
        #[command(flatten)]
        store: StoreConfig,
        /// The backup's directory.
        dir: PathBuf,
    },
    /// Manage the Pinning Service API's bearer tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// An account's quotas: what it holds, and limits of its own.
    #[command(subcommand)]
    Quota(QuotaCommand),
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
        /// The account (1 to 64 of A-Z a-z 0-9 . _ -): pins made with the token belong to it.
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

#[derive(Debug, Subcommand)]
enum QuotaCommand {
    /// What an account holds (upload bytes, unfinished uploads, pins) and its own limits.
    Show {
        #[command(flatten)]
        db: DbArgs,
        /// The account: a token's name, or a wallet's 0x address.
        account: String,
    },
    /// Gives an account limits of its own; a limit not given is the oracle's default
    /// (`--quota-bytes`, `--wallet-quota-bytes`, `--quota-uploads`, `--quota-pins`).
    Set {
        #[command(flatten)]
        db: DbArgs,
        /// The account: a token's name, or a wallet's 0x address.
        account: String,
        /// Bytes of uploads it may hold.
        #[arg(long)]
        bytes: Option<u64>,
        /// Unfinished uploads it may have at once.
        #[arg(long)]
        uploads: Option<u64>,
        /// Pins it may have.
        #[arg(long)]
        pins: Option<u64>,
    },
}

#[derive(Debug, clap::Args)]
struct DbArgs {
    /// The oracle's database: an SQLite file, or a `postgres://` URL.
    #[arg(long, env = "ESTUARY_DB", default_value = "estuary-oracle.sqlite")]
    db: DatabaseUrl,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// TOML file of settings (keys are these flags' names); flags and ESTUARY_* variables win.
    #[arg(long, env = "ESTUARY_CONFIG")]
    config: Option<PathBuf>,
    #[command(flatten)]
    oracle: OracleConfig,
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
        Command::Oracle(
            cmd @ (OracleCommand::Gc { .. }
            | OracleCommand::Backup { .. }
            | OracleCommand::Restore { .. }),
        ) => data_command(cmd).await,
        Command::Oracle(cmd) => oracle_admin(cmd).await,
        Command::Sp(sp_cmd::SpCommand::Run(args)) => run_sp(args).await,
        Command::Sp(cmd) => print_lines(sp_cmd::run(cmd).await?),
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

/// Opens the oracle's database for a command; an SQLite file must exist unless `create`.
async fn open_store(db: &DatabaseUrl, create: bool) -> Result<Store> {
    if let DatabaseUrl::Sqlite(path) = db
        && !create
        && !path.exists()
    {
        anyhow::bail!("no oracle database at {}", path.display());
    }
    Ok(Store::open(db).await?)
}

/// A job key from the command line; a bare id is refused with the keys it could mean.
async fn job_key(store: &Store, text: &str) -> Result<JobKey> {
    match text.parse::<JobKey>() {
        Ok(key) => Ok(key),
        Err(e) => {
            let candidates = store.jobs_with_id(text).await?;
            if candidates.is_empty() {
                return Err(e.into());
            }
            let keys: Vec<String> = candidates.iter().map(|j| j.key.clone()).collect();
            anyhow::bail!(
                "{text:?} is an id, not a key; name the job by its key: {}",
                keys.join(", ")
            )
        }
    }
}

async fn oracle_admin(cmd: OracleCommand) -> Result<()> {
    use estuary_oracle::{
        blockstore::FsBlockstore,
        commands,
        domain::{
            JobState,
            job::valid_account,
            now_ms,
            pinning::{Scope, new_secret, secret_digest},
            state::{Input, Policy},
        },
    };
    match cmd {
        OracleCommand::Run(_) => unreachable!("handled by run_oracle"),
        OracleCommand::Gc { .. } | OracleCommand::Backup { .. } | OracleCommand::Restore { .. } => {
            unreachable!("handled by data_command")
        }
        OracleCommand::Status { db, key: None } => {
            let store = open_store(&db.db, false).await?;
            let lines = store
                .state_counts()
                .await?
                .into_iter()
                .map(|(s, n)| format!("{}\t{n}", s.as_str()));
            print_lines(lines)
        }
        OracleCommand::Status { db, key: Some(key) } => {
            let store = open_store(&db.db, false).await?;
            let key = job_key(&store, &key).await?;
            let job = store.job(&key).await?.with_context(|| format!("no job {key}"))?;
            print_lines([serde_json::to_string_pretty(&job)?])
        }
        OracleCommand::Deals { db, piece, limit, json } => {
            let store = open_store(&db.db, false).await?;
            let orders = store.deals(piece.as_deref(), limit, 0).await?;
            if json {
                return print_lines([serde_json::to_string_pretty(&orders)?]);
            }
            print_lines(orders.into_iter().map(|o| {
                let replicas: Vec<String> = o
                    .replicas
                    .iter()
                    .map(|r| {
                        let state = r.shown_state();
                        match r.deal_id {
                            Some(id) => format!("f0{}:{state}#{id}", r.provider),
                            None => format!("f0{}:{state}", r.provider),
                        }
                    })
                    .collect();
                format!(
                    "{}\t{}\t{}\t{}/{}\t{}\t{}",
                    o.order.piece_cid,
                    o.order.state.as_str(),
                    o.order.order_id.map_or_else(|| "-".to_owned(), |id| id.to_string()),
                    o.replicas_active,
                    o.order.replicas_target,
                    if replicas.is_empty() { "-".to_owned() } else { replicas.join(",") },
                    o.order.error.unwrap_or_default()
                )
            }))
        }
        OracleCommand::Repair { db, now, url, api_token } => {
            let store = open_store(&db.db, false).await?;
            let short = store.orders_short().await?;
            let mut lines: Vec<String> = short
                .iter()
                .map(|o| {
                    let missing = usize::from(o.order.replicas_target) - o.replicas_active;
                    format!(
                        "{}\t{}\t{}/{}\tmissing {missing}",
                        o.order.piece_cid,
                        o.order.order_id.map_or_else(|| "-".to_owned(), |id| id.to_string()),
                        o.replicas_active,
                        o.order.replicas_target,
                    )
                })
                .collect();
            if now {
                let token = api_token.context("--now needs the operator's --api-token")?;
                let endpoint = format!("{}/deals/repair", url.trim_end_matches('/'));
                let response = reqwest::Client::new()
                    .post(&endpoint)
                    .bearer_auth(token)
                    .send()
                    .await
                    .with_context(|| format!("asking {endpoint}"))?;
                let status = response.status();
                let body: serde_json::Value = response.json().await.unwrap_or_default();
                if !status.is_success() {
                    anyhow::bail!("{endpoint} answered {status}: {body}");
                }
                let woken = body["woken"].as_u64().unwrap_or(0);
                if woken == 0 {
                    anyhow::bail!("the oracle at {url} makes no deals: nothing to run");
                }
                lines.push(format!("asked: {woken} deal round(s) run now"));
            } else if short.is_empty() {
                lines.push("no order is short of its replicas".into());
            }
            print_lines(lines)
        }
        OracleCommand::Providers { db, json } => {
            let store = open_store(&db.db, false).await?;
            let rules = estuary_oracle::domain::provider::ScoreRules::default();
            let mut providers = store.providers(None, &rules).await?;
            providers.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.provider.cmp(&b.provider)));
            if json {
                return print_lines([serde_json::to_string_pretty(&providers)?]);
            }
            let epochs = |e: Option<f64>| e.map_or_else(|| "-".to_owned(), |e| format!("{e:.0}"));
            print_lines(providers.into_iter().map(|p| {
                format!(
                    "f0{}\t{:.3}\t{:.3}\tactive {}\tin-flight {}\tclaims {}\tlapsed {}\tended-early {}\tslashed {}\tpublish {}\tactivate {}\tlast-failure {}\tprobes {}/{}\tlost {}{}",
                    p.provider,
                    p.score,
                    p.success_rate,
                    p.deals_active,
                    p.in_flight,
                    p.claims,
                    p.lapsed,
                    p.ended_early,
                    p.slashed,
                    epochs(p.publish_epochs),
                    epochs(p.activate_epochs),
                    p.last_failure.map_or_else(|| "-".to_owned(), |b| b.to_string()),
                    p.probes_ok,
                    p.probes_ok + p.probes_failed,
                    p.replicas_lost,
                    if p.suspended { "\tsuspended" } else { "" },
                )
            }))
        }
        OracleCommand::Provider { db, action, provider, note } => {
            let id = provider
                .strip_prefix("f0")
                .or_else(|| provider.strip_prefix("t0"))
                .and_then(|id| id.parse::<u64>().ok())
                .with_context(|| format!("{provider:?} is not a miner id (f0…)"))?;
            let store = open_store(&db.db, false).await?;
            let suspend = action == "suspend";
            store.set_suspended(id, suspend, note.as_deref(), now_ms()).await?;
            print_lines([format!("f0{id}\t{}", if suspend { "suspended" } else { "resumed" })])
        }
        OracleCommand::Buckets { db, id: Some(id), json, .. } => {
            let store = open_store(&db.db, false).await?;
            let bucket = store.bucket(id).await?.with_context(|| format!("no bucket {id}"))?;
            let pieces = store.bucket_pieces(id).await?;
            if json {
                let both = serde_json::json!({ "bucket": bucket, "pieces": pieces });
                return print_lines([serde_json::to_string_pretty(&both)?]);
            }
            print_lines(pieces.into_iter().map(|p| {
                format!(
                    "{}\t{}\t{}\t{}\t{}",
                    p.piece_cid, p.offset, p.padded_size, p.car_size, p.payload_cid
                )
            }))
        }
        OracleCommand::Buckets { db, id: None, limit, json } => {
            let store = open_store(&db.db, false).await?;
            let buckets = store.buckets(limit, 0).await?;
            if json {
                return print_lines([serde_json::to_string_pretty(&buckets)?]);
            }
            let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".to_owned());
            print_lines(buckets.into_iter().map(|b| {
                format!(
                    "{}\t{}\t{} pieces\t{} B\t{}\t{}\t{}\t{}\t{}\t{}",
                    b.id,
                    b.state,
                    b.pieces,
                    b.end_bytes,
                    or_dash(b.why),
                    or_dash(b.deal_size.map(|s| s.to_string())),
                    or_dash(b.piece_cid),
                    or_dash(b.order_state),
                    or_dash(b.order_id.map(|id| id.to_string())),
                    b.group.as_deref().unwrap_or("shared"),
                )
            }))
        }
        OracleCommand::Quarantined(db) => {
            let store = open_store(&db.db, false).await?;
            let bad = store.in_states(&[JobState::Quarantined, JobState::Failed], 10_000).await?;
            print_lines(bad.into_iter().map(|j| {
                format!(
                    "{}\t{}\t{}\t{}",
                    j.key,
                    j.status.as_str(),
                    j.cid.unwrap_or_else(|| j.cid_bytes.clone()),
                    j.error.unwrap_or_default()
                )
            }))
        }
        OracleCommand::Requeue { db, all_quarantined: true, .. } => {
            let store = open_store(&db.db, false).await?;
            let (queued, left) = commands::requeue_all_quarantined(&store).await?;
            let mut lines = vec![format!("{} quarantined jobs queued again", queued.len())];
            lines.extend(left.into_iter().map(|(key, why)| format!("{key}\tnot requeued: {why}")));
            print_lines(lines)
        }
        OracleCommand::Requeue { db, key, .. } => {
            let store = open_store(&db.db, false).await?;
            let key = key.context("name a job's key, or --all-quarantined")?;
            let key = job_key(&store, &key).await?;
            match commands::run(&store, &key, &Input::Requeue, &Policy::default()).await {
                Ok(_) => print_lines([format!("{key} queued again")]),
                Err(commands::CommandError::Refused(e)) => {
                    anyhow::bail!("{key} is not failed or quarantined ({e})")
                }
                Err(e) => Err(e.into()),
            }
        }
        OracleCommand::Token(TokenCommand::Add { db, name, read_only }) => {
            if !valid_account(&name) {
                anyhow::bail!("an account name is 1 to 64 of A-Z a-z 0-9 . _ -, not {name:?}");
            }
            let store = open_store(&db.db, true).await?;
            let secret = new_secret();
            let scope = if read_only { Scope::Read } else { Scope::Write };
            if !store.add_token(&name, &secret_digest(&secret), scope, now_ms()).await? {
                anyhow::bail!("a token named {name:?} exists; revoke it first");
            }
            print_lines([secret])
        }
        OracleCommand::Token(TokenCommand::List(db)) => {
            let store = open_store(&db.db, false).await?;
            let tokens = store.tokens().await?;
            print_lines(tokens.into_iter().map(|t| format!("{}\t{}", t.name, t.scope.as_str())))
        }
        OracleCommand::Token(TokenCommand::Revoke { db, name }) => {
            let store = open_store(&db.db, false).await?;
            if !store.revoke_token(&name).await? {
                anyhow::bail!("no token named {name:?}");
            }
            print_lines([format!("token {name} revoked")])
        }
        OracleCommand::Quota(QuotaCommand::Show { db, account }) => {
            let store = open_store(&db.db, false).await?;
            let usage = store.usage(&account).await?;
            let unset = estuary_oracle::domain::upload::Quota {
                max_bytes: u64::MAX,
                max_uploads: u64::MAX,
                max_pins: u64::MAX,
            };
            let own = store.quota(&account, unset).await?;
            let limit = |v: u64| if v == u64::MAX { "default".to_owned() } else { v.to_string() };
            print_lines([
                format!("bytes\t{}\t{}", usage.bytes, limit(own.max_bytes)),
                format!("uploads\t{}\t{}", usage.uploads, limit(own.max_uploads)),
                format!("pins\t{}\t{}", usage.pins, limit(own.max_pins)),
            ])
        }
        OracleCommand::Quota(QuotaCommand::Set { db, account, bytes, uploads, pins }) => {
            let store = open_store(&db.db, false).await?;
            store.set_quota(&account, bytes, uploads, pins).await?;
            print_lines([format!("quota of {account} set")])
        }
        OracleCommand::Reconcile { db, data_dir } => {
            let store = open_store(&db.db, false).await?;
            let blocks = std::sync::Arc::new(FsBlockstore::open(data_dir)?);
            let done = estuary_oracle::reconcile::reconcile(&store, &blocks).await?;
            let summary = format!(
                "{} pinned DAGs checked, {} requeued, {} unreadable (storage failing)",
                done.checked,
                done.requeued.len(),
                done.faults.len()
            );
            print_lines(
                std::iter::once(summary)
                    .chain(done.requeued.into_iter().map(|(key, why)| format!("{key}\t{why}")))
                    .chain(
                        done.faults.into_iter().map(|(key, why)| format!("{key}\tstorage: {why}")),
                    ),
            )
        }
    }
}

/// Runs `gc`, `backup` or `restore` over the blockstore `config` names (a directory, or S3).
async fn data_command(cmd: OracleCommand) -> Result<()> {
    use estuary_oracle::blockstore::{FsBlockstore, s3::S3Blockstore};
    let config = match &cmd {
        OracleCommand::Gc { store, .. }
        | OracleCommand::Backup { store, .. }
        | OracleCommand::Restore { store, .. } => store.clone(),
        _ => unreachable!("only the data commands come here"),
    };
    match config.s3() {
        Some(s3) => data_command_on(cmd, std::sync::Arc::new(S3Blockstore::open(&s3)?)).await,
        None => {
            let blocks = FsBlockstore::open(config.data_dir.clone())?;
            data_command_on(cmd, std::sync::Arc::new(blocks)).await
        }
    }
}

async fn data_command_on<B: estuary_oracle::blockstore::Blockstore>(
    cmd: OracleCommand,
    blocks: std::sync::Arc<B>,
) -> Result<()> {
    use estuary_oracle::{
        backup,
        fetch::FetchLimits,
        gc::{Collector, GcPolicy},
    };
    match cmd {
        OracleCommand::Gc { store: config, grace_secs, packed_retention_secs } => {
            let store = open_store(&config.database, false).await?;
            let policy = GcPolicy {
                grace: std::time::Duration::from_secs(grace_secs),
                packed_retention: (packed_retention_secs > 0)
                    .then(|| std::time::Duration::from_secs(packed_retention_secs)),
                // By hand, deals' copies are kept: the oracle drops them under its own rules.
                cold: None,
            };
            let packed = config.data_dir.join("packed");
            let limits = FetchLimits::default().walk();
            let report = Collector::new(store, blocks, packed, policy, limits).run().await?;
            print_lines([
                format!("{} roots kept {} blocks", report.roots, report.marked),
                format!("freed {} blocks ({} bytes)", report.freed.blocks, report.freed.bytes),
                format!(
                    "freed {} packed CARs ({} bytes)",
                    report.freed.cars, report.freed.car_bytes
                ),
                format!("kept {} unneeded blocks younger than the grace period", report.young),
                format!(
                    "removed {} abandoned staging areas ({} bytes)",
                    report.stages.0, report.stages.1
                ),
            ])
        }
        OracleCommand::Backup { store: config, dir } => {
            let store = open_store(&config.database, false).await?;
            let packed = config.data_dir.join("packed");
            let m = backup::backup(&store, &config.database, &blocks, &packed, &dir).await?;
            print_lines([serde_json::to_string_pretty(&m)?])
        }
        OracleCommand::Restore { store: config, dir } => {
            let packed = config.data_dir.join("packed");
            let m = backup::restore(&dir, &config.database, &blocks, &packed).await?;
            print_lines([format!(
                "restored {} jobs, {} blocks ({} bytes), {} packed CARs; cursors {:?}",
                m.summary.jobs,
                m.blocks,
                m.block_bytes,
                m.packed.len(),
                m.summary.cursors
            )])
        }
        _ => unreachable!("only the data commands come here"),
    }
}

async fn run_sp(args: sp_cmd::RunArgs) -> Result<()> {
    let mut sigterm = signal(SignalKind::terminate())?;
    let agent = estuary_sp::Agent::start(args.sp).await?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = sigterm.recv() => {}
    }
    agent.stop().await;
    Ok(())
}

async fn run_oracle(args: RunArgs) -> Result<()> {
    let mut sigterm = signal(SignalKind::terminate())?;
    let oracle = Oracle::start(args.oracle).await?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = sigterm.recv() => {}
    }
    oracle.stop().await;
    Ok(())
}
