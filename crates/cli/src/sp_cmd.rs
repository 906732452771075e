//! `estuary sp …`: run the SP agent, and read its database (`status`, `work`, `claims`,
//! `deals`) whether it runs or not.

use std::path::PathBuf;

use anyhow::{Context, Result};
use estuary_sp::{
    SpConfig,
    api::is_claim,
    domain::WorkState,
    store::{Store, Work},
};

/// `estuary sp`'s subcommands.
#[derive(Debug, clap::Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once
pub enum SpCommand {
    /// Run the agent for one miner until SIGTERM or Ctrl-C.
    Run(RunArgs),
    /// Work by kind and state, skipped offers by reason, and the latest skips with their
    /// reasons.
    Status(ListArgs),
    /// Work taken, newest first (`--state` to filter).
    Work {
        /// The database and the format.
        #[command(flatten)]
        list: ListArgs,
        /// Only work in this state (claiming, fetching, sealing, activating, proving, active,
        /// releasing, ended, failed).
        #[arg(long)]
        state: Option<String>,
    },
    /// Slots claimed, with their deadlines, deals and bounty collected.
    Claims(ListArgs),
    /// Deals published, with their sectors.
    Deals(ListArgs),
}

/// `estuary sp run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// TOML file of settings (keys are these flags' names); flags and ESTUARY_* variables win.
    #[arg(long, env = "ESTUARY_CONFIG")]
    pub config: Option<PathBuf>,
    /// The agent's settings.
    #[command(flatten)]
    pub sp: SpConfig,
}

/// The database and the output format.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// The agent's SQLite database.
    #[arg(long, env = "ESTUARY_SP_DB", default_value = "estuary-sp.sqlite")]
    pub db: PathBuf,
    /// Most rows.
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
}

/// Runs a command that reads the database; returns the lines to print.
pub async fn run(cmd: SpCommand) -> Result<Vec<String>> {
    match cmd {
        SpCommand::Run(_) => unreachable!("run is handled by the caller"),
        SpCommand::Status(args) => {
            let store = open(&args).await?;
            let (work, skipped, recent) = estuary_sp::api::status_of(&store).await?;
            if args.json {
                return Ok(vec![serde_json::to_string(&serde_json::json!({
                    "work": work, "skipped": skipped, "recent_skips": recent,
                }))?]);
            }
            let mut lines = vec!["# work (kind/state, count)".to_owned()];
            let mut work: Vec<_> = work.into_iter().collect();
            work.sort();
            lines.extend(work.into_iter().map(|(k, n)| format!("{k}\t{n}")));
            lines.push("# skipped offers (reason, count)".to_owned());
            let mut skipped: Vec<_> = skipped.into_iter().collect();
            skipped.sort();
            lines.extend(skipped.into_iter().map(|(k, n)| format!("{k}\t{n}")));
            lines.push("# latest skips (kind, contract, order or proposal, reason)".to_owned());
            lines.extend(recent.into_iter().map(|l| {
                format!(
                    "{}\t{:#x}\t{}\t{}",
                    l.kind.as_str(),
                    l.contract,
                    l.reference,
                    l.reason.unwrap_or_default()
                )
            }));
            Ok(lines)
        }
        SpCommand::Work { list, state } => {
            let store = open(&list).await?;
            let states = match state {
                None => Vec::new(),
                Some(s) => {
                    vec![WorkState::parse(&s).with_context(|| format!("unknown state {s:?}"))?]
                }
            };
            let works = store.works(&states, list.limit).await?;
            format(&works, list.json, |w| {
                format!(
                    "{}\t{}\t{}\t{:#x}\t{}\t{}\t{}\t{}",
                    w.id,
                    w.kind.as_str(),
                    w.state.as_str(),
                    w.contract,
                    w.reference,
                    w.piece_cid,
                    w.deal_text(),
                    w.reason.clone().unwrap_or_default()
                )
            })
        }
        SpCommand::Claims(args) => {
            let store = open(&args).await?;
            let works: Vec<Work> =
                store.works(&[], args.limit).await?.into_iter().filter(is_claim).collect();
            format(&works, args.json, |w| {
                format!(
                    "{:#x}\t{}\t{}\tdeadline {}\tdeal {}\tcollected {}",
                    w.contract,
                    w.reference,
                    w.state.as_str(),
                    w.deadline.unwrap_or_default(),
                    w.deal_text(),
                    w.collected
                )
            })
        }
        SpCommand::Deals(args) => {
            let store = open(&args).await?;
            let works: Vec<Work> = store
                .works(&[], args.limit)
                .await?
                .into_iter()
                .filter(|w| w.deal().is_some())
                .collect();
            format(&works, args.json, |w| {
                format!(
                    "{}\t{}\t{:#x}\t{}\t{}\tsector {}\t{}",
                    w.deal_text(),
                    w.kind.as_str(),
                    w.contract,
                    w.reference,
                    w.state.as_str(),
                    w.sector.map(|s| s.to_string()).unwrap_or_else(|| "-".into()),
                    w.piece_cid
                )
            })
        }
    }
}

async fn open(args: &ListArgs) -> Result<Store> {
    Store::open_existing(&args.db).await.with_context(|| format!("opening {}", args.db.display()))
}

fn format(works: &[Work], json: bool, line: impl Fn(&Work) -> String) -> Result<Vec<String>> {
    if json {
        works.iter().map(|w| Ok(serde_json::to_string(w)?)).collect()
    } else {
        Ok(works.iter().map(line).collect())
    }
}
