//! `estuary dev`: the whole stack on this machine.
//!
//! ```text
//! estuary dev ──┬─ anvil (child, 127.0.0.1, one block a second)
//!               ├─ contracts deployed with anvil's first account (and the simulated market,
//!               │  with miners f01000–f01002 controlled by anvil's accounts 1–3)
//!               ├─ estuary oracle run (child process, SQLite in the state dir)
//!               ├─ estuary sp run × 3 (child processes, one per simulated miner, simulated
//!               │  sealer, SQLite and pieces in the state dir)
//!               └─ dapp: www/dist served here, with /estuary.json telling it where things are
//! ```
//!
//! The URLs go to stdout and to `<state dir>/dev.json`. Ctrl-C or SIGTERM stops the children and
//! removes `dev.json`; if a child dies, the stack stops and says which.

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use alloy::node_bindings::AnvilInstance;
use alloy::signers::local::PrivateKeySigner;
use anyhow::{Context, Result, bail};
use axum::{Json, Router, routing::get};
use nix::{
    errno::Errno,
    fcntl::{Flock, FlockArg},
    sys::signal::Signal,
    unistd::Pid,
};
use serde::Serialize;
use tokio::{
    net::TcpListener,
    process::{Child, Command},
    signal::unix::{SignalKind, signal},
};
use tower_http::services::{ServeDir, ServeFile};
use tracing::{info, warn};

use crate::devnet;

/// Options of `estuary dev`.
#[derive(Debug, Clone, clap::Args)]
pub struct DevOptions {
    /// Where the stack keeps its state (oracle database, dev.json).
    #[arg(long, default_value = ".estuary")]
    pub state_dir: PathBuf,
    /// anvil's port (0: any free port).
    #[arg(long, default_value_t = 8545)]
    pub anvil_port: u16,
    /// The oracle API's port (0: any free port).
    #[arg(long, default_value_t = 3000)]
    pub oracle_port: u16,
    /// The dapp's port (0: any free port).
    #[arg(long, default_value_t = 5173)]
    pub dapp_port: u16,
    /// The built dapp (`npm run build -w www`).
    #[arg(long, default_value = "www/dist")]
    pub www_dist: PathBuf,
    /// Seconds between blocks.
    #[arg(long, default_value_t = 1)]
    pub block_time: u64,
    /// The first SP agent's port; the others follow (0: any free ports).
    #[arg(long, default_value_t = 3100)]
    pub sp_port: u16,
    /// How pieces get deals: `perpetual` (a PerpetualStorage order per aggregate, whose slots
    /// the SPs claim) or `contract` (a DealClient proposal per replica, each naming the SP the
    /// oracle chose by policy and score; the deployer escrows 10 FIL in the market for it).
    #[arg(long, value_enum, default_value_t = DealMode::Perpetual)]
    pub deals: DealMode,
    /// Let the oracle drop its copy of a pin ordered on its own this many seconds after its
    /// replicas are all active and two of them read back (the pin's blocks too): the gateway,
    /// `/piece` and Bitswap then read it from the SPs. Replicas are then read back every 2 s
    /// rather than every 30 s (none: the oracle keeps its copies).
    #[arg(long)]
    pub cold_after_secs: Option<u64>,
}

/// How the local stack's pieces get deals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DealMode {
    /// PerpetualStorage orders.
    Perpetual,
    /// DealClient contract deals at providers the oracle chooses.
    Contract,
}

/// The deployer (the `DealClient`'s owner) sends the contract 10 FIL and escrows it in the
/// market (`addMarketBalance`), which pays its deals.
async fn fund_deal_client(
    rpc_url: &str,
    owner: &PrivateKeySigner,
    client: alloy::primitives::Address,
) -> anyhow::Result<()> {
    use alloy::{network::TransactionBuilder, providers::Provider};
    let provider = alloy::providers::ProviderBuilder::new()
        .wallet(alloy::network::EthereumWallet::from(owner.clone()))
        .connect_http(rpc_url.parse()?);
    let amount = alloy::primitives::U256::from(10u64)
        * alloy::primitives::U256::from(10u64).pow(alloy::primitives::U256::from(18u64));
    let sent = provider
        .send_transaction(
            alloy::rpc::types::TransactionRequest::default().with_to(client).with_value(amount),
        )
        .await?
        .get_receipt()
        .await?;
    anyhow::ensure!(sent.status(), "sending FIL to the DealClient failed");
    let dc = estuary_contracts::DealClient::new(client, &provider);
    let escrowed = dc.addMarketBalance(amount).send().await?.get_receipt().await?;
    anyhow::ensure!(escrowed.status(), "addMarketBalance failed");
    Ok(())
}

/// The simulated miners the deploy script registers, and the anvil accounts controlling them.
pub const SIMULATED_MINERS: [(u64, usize); 3] = [(1000, 1), (1001, 2), (1002, 3)];

/// An SP agent of the stack, as `dev.json` names it.
#[derive(Debug, Clone, Serialize)]
pub struct SpInfo {
    /// The miner (`f0…`).
    pub miner: String,
    /// The agent's HTTP server (status, metrics, retrievals).
    pub url: String,
}

/// What `dev.json` holds.
#[derive(Debug, Clone, Serialize)]
pub struct DevInfo {
    /// anvil's JSON-RPC URL.
    pub rpc_url: String,
    /// The chain id (31337).
    pub chain_id: u64,
    /// Deployed contracts by name.
    pub contracts: serde_json::Map<String, serde_json::Value>,
    /// The block the contracts were deployed in.
    pub deploy_block: u64,
    /// The oracle API.
    pub oracle_url: String,
    /// The dapp.
    pub dapp_url: String,
    /// Bearer token for the oracle's authenticated routes.
    pub api_token: String,
    /// Funded dev accounts (anvil's), for wallets and scripts.
    pub accounts: Vec<String>,
    /// The SP agents, one per simulated miner.
    pub sps: Vec<SpInfo>,
}

/// The part of [`DevInfo`] the page needs: everything but the operator token.
#[derive(Debug, Clone, Serialize)]
struct PageConfig {
    rpc_url: String,
    chain_id: u64,
    contracts: serde_json::Map<String, serde_json::Value>,
    oracle_url: String,
    /// The block before the deployment: where the contracts' events start.
    deploy_block: u64,
}

fn port(p: u16) -> Result<u16> {
    if p == 0 { Ok(devnet::free_port()?) } else { Ok(p) }
}

/// What `estuary dev` runs once it is up.
struct Stack {
    anvil: AnvilInstance,
    oracle: Child,
    sp_children: Vec<Child>,
    dapp_task: tokio::task::JoinHandle<std::io::Result<()>>,
    info: DevInfo,
}

/// The stack's description, in the state directory.
const DEV_JSON: &str = "dev.json";
/// The oracle's operator key and API token, handed over in files (mode 0600).
const OPERATOR_KEY: &str = "operator.key";
/// See [`OPERATOR_KEY`].
const API_TOKEN: &str = "api.token";

/// Files of the stack's run (`dev.json`, the secrets handed to the oracle), removed when the
/// run ends, however it ends: stopped, failed or interrupted during start-up.
struct RunFiles(Vec<PathBuf>);

impl Drop for RunFiles {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Runs the stack until Ctrl-C or SIGTERM. Either also stops a start-up midway (a deployment,
/// a wait for a child's health): what was started is stopped, and `dev.json` and the secrets
/// are removed (anvil's cache and the oracle's data directory stay until the next run clears
/// them).
pub async fn run(opts: DevOptions) -> Result<()> {
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;

    std::fs::create_dir_all(&opts.state_dir)
        .with_context(|| format!("creating {}", opts.state_dir.display()))?;
    let state_dir = opts.state_dir.canonicalize()?;
    // One stack per state directory: a second would remove the first's databases, its
    // `dev.json` and the secrets its oracle reads. Held until this process ends (the file is
    // closed on exec, so the children do not hold it).
    let _lock = lock_state_dir(&state_dir)?;
    let _files = RunFiles(vec![
        state_dir.join(DEV_JSON),
        state_dir.join(OPERATOR_KEY),
        state_dir.join(API_TOKEN),
    ]);
    // Dropping the start-up midway drops what it started: the children are killed
    // (`kill_on_drop`, a deployment's `forge` too) and so is anvil (its `Drop`).
    let stack = tokio::select! {
        stack = start(&opts, &state_dir) => stack?,
        _ = sigint.recv() => {
            info!("interrupted during start-up: stopped");
            return Ok(());
        }
        _ = sigterm.recv() => {
            info!("terminated during start-up: stopped");
            return Ok(());
        }
    };
    let Stack { anvil, mut oracle, mut sp_children, dapp_task, info } = stack;

    let sp_exit = async {
        let waits = sp_children.iter_mut().map(|c| Box::pin(c.wait()));
        let (status, i, _) = futures_util::future::select_all(waits).await;
        (i, status)
    };
    let outcome = tokio::select! {
        _ = sigint.recv() => Ok(()),
        _ = sigterm.recv() => Ok(()),
        status = oracle.wait() => Err(anyhow::anyhow!("the oracle exited ({status:?})")),
        (i, status) = sp_exit => Err(anyhow::anyhow!("the SP agent for {} exited ({status:?})", info.sps[i].miner)),
        served = dapp_task => Err(anyhow::anyhow!("the dapp server stopped: {served:?}")),
    };
    info!("stopping the stack");
    for child in &mut sp_children {
        stop_child(child).await;
    }
    stop_child(&mut oracle).await;
    drop(anvil); // kills anvil
    outcome
}

/// An exclusive lock on `state_dir/.lock`, or an error naming the other `estuary dev`.
fn lock_state_dir(state_dir: &Path) -> Result<Flock<std::fs::File>> {
    let path = state_dir.join(".lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| {
        if errno == Errno::EWOULDBLOCK {
            anyhow::anyhow!(
                "another `estuary dev` is using {}: stop it first, or give this one another \
                 --state-dir",
                state_dir.display()
            )
        } else {
            anyhow::anyhow!("locking {}: {errno}", path.display())
        }
    })
}

/// Starts the stack in `state_dir` (made and canonical), up to its announcement.
async fn start(opts: &DevOptions, state_dir: &Path) -> Result<Stack> {
    let dev_json = state_dir.join(DEV_JSON);
    let _ = std::fs::remove_file(&dev_json);
    if !opts.www_dist.join("index.html").exists() {
        bail!(
            "{} has no index.html: build the dapp first (npm run build -w www)",
            opts.www_dist.display()
        );
    }

    // A new chain each time, so the oracle's and the agents' databases start empty too.
    let database = state_dir.join("oracle.sqlite");
    let mut stale = vec![database.clone()];
    stale.extend(SIMULATED_MINERS.iter().map(|(m, _)| state_dir.join(format!("sp-f0{m}.sqlite"))));
    for db in &stale {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
        }
    }
    for (m, _) in SIMULATED_MINERS {
        let _ = std::fs::remove_dir_all(state_dir.join(format!("sp-f0{m}-data")));
    }

    // Mining on every transaction while the deploy script runs, then every `block_time` seconds
    // (see `devnet::set_interval_mining`).
    // `forge script` now and then waits for receipts forever (see `devnet::deploy`): a
    // deployment that has not ended in `TEST_DEPLOY_TIMEOUT` is stopped and made again on a
    // fresh anvil, up to three times, instead of holding the stack for `DEPLOY_TIMEOUT`.
    let anvil_port = port(opts.anvil_port)?;
    // Anvil's older states, this run's only (a chain of an earlier run is gone).
    let anvil_cache = state_dir.join("anvil-cache");
    let _ = std::fs::remove_dir_all(&anvil_cache);
    std::fs::create_dir_all(&anvil_cache).context("making anvil's cache directory")?;
    let mut attempt = 0;
    let (anvil, deployment) = loop {
        attempt += 1;
        let anvil = devnet::start_anvil(Some(anvil_port), None, &anvil_cache)?;
        let rpc_url = format!("http://127.0.0.1:{}", anvil.port());
        let signer: PrivateKeySigner = anvil.keys()[0].clone().into();
        // The oracle's account: anvil's last one, apart from the accounts users get.
        let operator = anvil.addresses().last().copied().context("anvil has no accounts")?;
        let deployed = tokio::time::timeout(
            devnet::TEST_DEPLOY_TIMEOUT,
            devnet::deploy(&rpc_url, &signer, operator),
        )
        .await;
        match deployed {
            Ok(Ok(deployment)) => break (anvil, deployment),
            Ok(Err(e)) if attempt >= 3 => return Err(e.into()),
            Err(_) if attempt >= 3 => bail!(
                "the deployment did not finish within {:?}, three times",
                devnet::TEST_DEPLOY_TIMEOUT
            ),
            Ok(Err(e)) => warn!(error = %e, "deployment failed; once more on a fresh chain"),
            Err(_) => warn!("the deployment hung; once more on a fresh chain"),
        }
        drop(anvil); // kills it; the port is taken again by the next one
    };
    let rpc_url = format!("http://127.0.0.1:{}", anvil.port());
    let chain_id = anvil.chain_id();
    let signer: PrivateKeySigner = anvil.keys()[0].clone().into();
    let operator_key: PrivateKeySigner =
        anvil.keys().last().cloned().context("anvil has no keys")?.into();
    devnet::set_interval_mining(&rpc_url, opts.block_time.max(1)).await?;
    info!(pinning = %deployment.pinning, block = deployment.block, "contracts deployed");

    let api_token = hex::encode(rand::random::<[u8; 32]>());
    // Secrets go to the oracle in files only its user can read, never on its command line.
    let operator_key_file = state_dir.join(OPERATOR_KEY);
    write_secret(&operator_key_file, &hex::encode(operator_key.to_bytes()))?;
    let api_token_file = state_dir.join(API_TOKEN);
    write_secret(&api_token_file, &api_token)?;
    let oracle_port = port(opts.oracle_port)?;
    let oracle_url = format!("http://127.0.0.1:{oracle_port}");
    // The dapp's address first: the oracle allows it (CORS) and signs its users in (SIWE).
    let listener =
        TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port(opts.dapp_port)?)))
            .await
            .context("binding the dapp's port")?;
    let dapp_url = format!("http://{}", listener.local_addr()?);
    // The SP agents' ports (each agent registers its own in the ProviderRegistry).
    let sp_ports = (0..SIMULATED_MINERS.len())
        .map(|i| if opts.sp_port == 0 { devnet::free_port() } else { Ok(opts.sp_port + i as u16) })
        .collect::<Result<Vec<u16>, _>>()?;
    let mut deal_args: Vec<String> = Vec::new();
    if opts.deals == DealMode::Contract {
        let client = deployment.contracts["DealClient"];
        fund_deal_client(&rpc_url, &signer, client).await?;
        deal_args.extend(["--deal-client-address".into(), client.to_string()]);
        // A minute from proposal to start: the SP agents fetch, seal (10 epochs) and prove.
        deal_args.extend(["--deal-start-epochs".into(), "60".into()]);
    }
    // The dev term is 3,600 epochs: a replica is renewed in its last 600 (a perpetual order's
    // target is raised by one then: with three SPs holding its three replicas, none is free to
    // claim it, and the slot is claimed again once the ended one reopens).
    deal_args.extend(["--deal-renew-epochs".into(), "600".into()]);
    // The SPs' agents are the oracle's providers: it reads each replica back from its SP (a
    // span of its piece and, for a CAR, its root block, each checked); three failures in a row
    // and it is replaced. Where each SP serves is what its agent registered in the
    // ProviderRegistry (read again every 2 s here), not an operator's `url=`.
    for (miner, _) in SIMULATED_MINERS {
        deal_args.extend(["--provider".into(), format!("f0{miner}:price=0")]);
    }
    let registry = deployment.contracts["ProviderRegistry"].to_string();
    deal_args.extend(["--provider-registry-address".into(), registry.clone()]);
    deal_args.extend(["--provider-registry-refresh-secs".into(), "2".into()]);
    // The agents register loopback addresses, which registered URLs may not reach by default.
    deal_args.extend(["--provider-allow-net".into(), "127.0.0.0/8,::1/128".into()]);
    match opts.cold_after_secs {
        // About every 30 s.
        None => deal_args.extend(["--probe-every-secs", "30"].map(String::from)),
        // Every 2 s, and the copy and the pin's blocks go as soon as the rules allow
        // (collections every 2 s; an upload waits 30 s for its pin before one may take it).
        Some(secs) => {
            deal_args.extend(["--probe-every-secs", "2", "--cold-drop-blocks"].map(String::from));
            deal_args.extend(["--cold-after-secs".into(), secs.to_string()]);
            deal_args.extend(
                [
                    "--cold-verified-within-secs",
                    "120",
                    "--cold-cache-secs",
                    "2",
                    "--gc-interval-secs",
                    "2",
                    "--gc-grace-secs",
                    "30",
                ]
                .map(String::from),
            );
        }
    }
    let mut oracle = Command::new(std::env::current_exe()?)
        .args(["oracle", "run", "--rpc-url", &rpc_url])
        .args(["--chain-id", &chain_id.to_string()])
        .args(["--pinning-address", &deployment.pinning.to_string()])
        .args(["--oracle-address", &deployment.contracts["EstuaryOracle"].to_string()])
        .args(["--start-block", &deployment.block.to_string()])
        .args(["--confirmations", "1"])
        // Every reported piece gets a perpetual-storage order of three replicas, which the
        // three simulated SPs below take; a term of an hour (the local contract's shortest).
        .args(["--perpetual-address", &deployment.contracts["PerpetualStorage"].to_string()])
        .args(["--public-url", &oracle_url, "--deal-term-epochs", "3600"])
        // 1,000 FIL in all (about 16,000 orders at the default bounty; the operator has 10,000).
        .args(["--deal-budget", "1000000000000000000000"])
        // The keeper reads the market through DealStateView every 2 s and reopens lapsed
        // claims and ended replicas.
        .args(["--deal-state-view-address", &deployment.contracts["DealStateView"].to_string()])
        .args(["--deal-check-secs", "2"])
        // The dev term is 3,600 epochs: a deal shows as expiring in its last 600, not all along.
        .args(["--deal-expiring-epochs", "600"])
        // The DataDAO's accepted CIDs are funded as orders of their own (fundOrder).
        .args(["--datadao-address", &deployment.contracts["DataDAO"].to_string()])
        // Pins share 8 MiB aggregates; a bucket closes 5 s after its first pin.
        .args(["--bucket-size", "8388608", "--bucket-max-age-secs", "5"])
        // The operator's dashboard charts the metrics sampled every 2 s (the last hour).
        .args(["--metrics-history-secs", "2", "--metrics-history-points", "1800"])
        .args(&deal_args)
        .arg("--db")
        .arg(&database)
        .arg("--data-dir")
        .arg(state_dir.join("oracle-data"))
        .arg("--operator-key-file")
        .arg(&operator_key_file)
        .arg("--api-token-file")
        .arg(&api_token_file)
        .args(["--cors-origin", &dapp_url])
        .args(["--listen", &format!("127.0.0.1:{oracle_port}")])
        // Browser nodes dial the WebSocket address (the dapp reads it from `/p2p`).
        .args(["--p2p-listen", "/ip4/127.0.0.1/tcp/0,/ip4/127.0.0.1/tcp/0/ws"])
        // Everything of the local stack is on loopback, which origins may not reach by default.
        .args(["--allow-net", "127.0.0.0/8,::1/128"])
        .env_remove("ESTUARY_API_TOKEN")
        .env_remove("ESTUARY_OPERATOR_KEY")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("starting the oracle")?;
    wait_healthy(&format!("{oracle_url}/health"), &mut oracle).await?;

    // One SP agent per simulated miner, from the miner's controlling account.
    let mut sps = Vec::new();
    let mut sp_children = Vec::new();
    for (i, (miner, account)) in SIMULATED_MINERS.into_iter().enumerate() {
        let port = sp_ports[i];
        let key: PrivateKeySigner =
            anvil.keys().get(account).cloned().context("anvil has too few accounts")?.into();
        let mut child = Command::new(std::env::current_exe()?)
            .args(["sp", "run", "--rpc-url", &rpc_url])
            .args(["--chain-id", &chain_id.to_string()])
            .args(["--miner", &format!("f0{miner}")])
            .args(["--perpetual-address", &deployment.contracts["PerpetualStorage"].to_string()])
            .args(["--deal-client-address", &deployment.contracts["DealClient"].to_string()])
            // Where it serves retrievals, registered for its miner (its listen address).
            .args(["--provider-registry-address", &registry])
            .args(["--start-block", &deployment.block.to_string()])
            .args(["--confirmations", "1"])
            .arg("--db")
            .arg(state_dir.join(format!("sp-f0{miner}.sqlite")))
            .arg("--data-dir")
            .arg(state_dir.join(format!("sp-f0{miner}-data")))
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--sealer", "sim"])
            // The local stack's origins (the oracle, the dapp's uploads) are on loopback.
            .arg("--allow-private-origins")
            .args(["--epoch-ms", &(opts.block_time.max(1) * 1000).to_string()])
            .args(["--seal-epochs", "10", "--collect-interval-epochs", "60"])
            .env("ESTUARY_SP_KEY", hex::encode(key.to_bytes()))
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting an SP agent")?;
        let url = format!("http://127.0.0.1:{port}");
        wait_healthy(&format!("{url}/health"), &mut child).await?;
        sps.push(SpInfo { miner: format!("f0{miner}"), url });
        sp_children.push(child);
    }

    let contracts: serde_json::Map<String, serde_json::Value> = deployment
        .contracts
        .iter()
        .map(|(name, address)| (name.clone(), address.to_string().into()))
        .collect();
    let page = PageConfig {
        rpc_url: rpc_url.clone(),
        chain_id,
        contracts: contracts.clone(),
        oracle_url: oracle_url.clone(),
        deploy_block: deployment.block,
    };
    let dapp = dapp_router(&opts.www_dist, page);
    let dapp_task = tokio::spawn(async move { axum::serve(listener, dapp).await });

    let info = DevInfo {
        rpc_url,
        chain_id,
        contracts,
        deploy_block: deployment.block,
        oracle_url,
        dapp_url,
        api_token,
        accounts: anvil.addresses().iter().map(ToString::to_string).collect(),
        sps,
    };
    write_atomically(&dev_json, &serde_json::to_vec_pretty(&info)?)?;
    announce(&info, &dev_json);
    Ok(Stack { anvil, oracle, sp_children, dapp_task, info })
}

fn dapp_router(dist: &Path, page: PageConfig) -> Router {
    let index = ServeFile::new(dist.join("index.html"));
    Router::new()
        .route("/estuary.json", get(move || std::future::ready(Json(page.clone()))))
        .fallback_service(ServeDir::new(dist).fallback(index))
}

#[allow(clippy::print_stdout)] // the URLs are this command's output
fn announce(info: &DevInfo, dev_json: &Path) {
    println!("Estuary is up:");
    println!("  dapp        {}", info.dapp_url);
    println!("  oracle API  {}", info.oracle_url);
    println!("  chain RPC   {} (chain id {})", info.rpc_url, info.chain_id);
    for (name, address) in &info.contracts {
        println!("  {name:<14} {}", address.as_str().unwrap_or_default());
    }
    for sp in &info.sps {
        println!("  SP agent {}  {}", sp.miner, sp.url);
    }
    println!("  written to     {}", dev_json.display());
    println!("Ctrl-C stops everything.");
}

/// Polls `url` until it answers with success, for 30 s at most, and fails as soon as `child`
/// exits. Each poll has a limit of its own: where something else holds the port and accepts
/// connections without answering (an oracle's port taken by another process between its choice
/// and its bind, seen once), a poll without one waited for good, and the stack never stopped.
async fn wait_healthy(url: &str, child: &mut Child) -> Result<()> {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(2)).build()?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::time::Instant::now() < deadline {
        if let Some(status) = child.try_wait()? {
            bail!("a child of the stack exited during start-up ({status}): {url}");
        }
        if client.get(url).send().await.is_ok_and(|r| r.status().is_success()) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("{url} did not answer within 30 s")
}

/// SIGTERM, then SIGKILL if it has not exited within 5 s.
pub async fn stop_child(child: &mut Child) {
    if let Some(pid) = child.id().and_then(|id| i32::try_from(id).ok()) {
        let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGTERM);
        if tokio::time::timeout(Duration::from_secs(5), child.wait()).await.is_ok() {
            return;
        }
        warn!(pid, "child ignored SIGTERM; killing it");
    }
    let _ = child.kill().await;
}

/// Writes a secret to `path`, readable by this user only (mode 0600 from the start).
fn write_secret(path: &Path, secret: &str) -> Result<()> {
    use std::{io::Write, os::unix::fs::OpenOptionsExt};
    let _ = std::fs::remove_file(path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(secret.as_bytes())?;
    Ok(())
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}
