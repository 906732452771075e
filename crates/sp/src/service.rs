//! Wiring: the database, the chain (watchers, the transaction manager), the sealer, the loops
//! and the HTTP server, with an orderly shutdown.
//!
//! ```text
//!  Agent::start ──► Store::open ──► endpoints (same chain id) ──► TxManager (miner's key)
//!     ──► listener bound (its address: the pieces' URL, for the sealer and the registry)
//!     ├─ Watcher per contract ──► LeadLogs ──► Store (leads)
//!     ├─ evaluator ─ worker ─ housekeeping (agent.rs)
//!     └─ HTTP server (api.rs)
//!  Agent::stop ──► cancel, wait for every task
//! ```

use std::{net::SocketAddr, sync::Arc, time::Duration};

use alloy::{
    providers::{DynProvider, Provider, ProviderBuilder},
    signers::local::PrivateKeySigner,
};
use estuary_chain::{ChainError, TxManager, WatchSpec, WatchState, Watcher};
use tokio::{net::TcpListener, sync::watch, task::JoinHandle};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{
    agent::{self, Ctx, Stats},
    api::{self, ApiState},
    chain::{ChainClient, ContractKind, LeadLogs},
    config::{SealerKind, SpConfig},
    fetch::{Fetcher, Guard},
    sealer::{CommandSealer, Sealer, SimulatedSealer},
    store::{Store, StoreError},
};

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// The chain could not be reached, or an endpoint serves another chain.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// The database could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The key is not a private key.
    #[error("the key is not a valid private key")]
    Key,
    /// Nothing to follow.
    #[error("no contract to follow: give --perpetual-address and/or --deal-client-address")]
    NoContracts,
    /// The data directory could not be made.
    #[error("data directory {0}: {1}")]
    DataDir(String, std::io::Error),
    /// `--public-url` cannot be registered (or is missing where the listen address would not do).
    #[error("--public-url: {0}")]
    PublicUrl(String),
    /// The HTTP client could not be built.
    #[error("HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
}

/// A running agent.
#[derive(Debug)]
pub struct Agent {
    /// Where the HTTP server listens.
    pub local_addr: SocketAddr,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

/// Where the agent serves: its bound listener, and the URL it registers (or why it cannot).
struct Served {
    listener: TcpListener,
    local_addr: SocketAddr,
    url: Result<String, AgentError>,
}

/// The URL the agent registers: `--public-url`, or `http://` and the listen address, checked
/// against the registry's rules before anything is sent (`http://` or `https://` and more, at
/// most 256 printable ASCII bytes). An agent listening on every address needs `--public-url`.
fn public_url(given: Option<&str>, listen: SocketAddr) -> Result<String, AgentError> {
    let url = match given {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None if listen.ip().is_unspecified() => {
            return Err(AgentError::PublicUrl(format!(
                "the agent listens on {listen}, which no client can reach: give the address oracles reach it at"
            )));
        }
        None => format!("http://{listen}"),
    };
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
    let printable = url.bytes().all(|b| (0x21..=0x7e).contains(&b));
    if rest.is_some_and(|r| !r.is_empty()) && url.len() <= 256 && printable {
        Ok(url)
    } else {
        Err(AgentError::PublicUrl(format!(
            "{url:?} is not an http(s) URL of at most 256 printable ASCII bytes (the registry's rules)"
        )))
    }
}

/// Connects to every endpoint and checks that they serve one chain (the configured one, if
/// any). The first must answer now; a fallback may come back later.
async fn connect(
    config: &estuary_chain::ChainConfig,
) -> Result<(u64, Vec<(String, DynProvider)>), ChainError> {
    let timeout = config.rpc_timeout();
    let mut providers = Vec::new();
    let mut chain_id = config.chain_id;
    for (i, url) in config.endpoints().into_iter().enumerate() {
        let parsed = url.parse().map_err(|_| ChainError::BadAnswer {
            endpoint: url.clone(),
            what: "not a URL".into(),
        })?;
        let provider = ProviderBuilder::new().connect_http(parsed).erased();
        match tokio::time::timeout(timeout, provider.get_chain_id()).await {
            Ok(Ok(actual)) => match chain_id {
                Some(expected) if expected != actual => {
                    return Err(ChainError::WrongChain { endpoint: url, expected, actual });
                }
                _ => chain_id = Some(actual),
            },
            Ok(Err(source)) if i == 0 => {
                return Err(ChainError::Rpc { endpoint: url, method: "eth_chainId", source });
            }
            Err(_) if i == 0 => return Err(ChainError::Timeout { endpoint: url, after: timeout }),
            Ok(Err(e)) => warn!(%url, error = %e, "fallback RPC endpoint unreachable for now"),
            Err(_) => warn!(%url, "fallback RPC endpoint did not answer in time"),
        }
        providers.push((url, provider));
    }
    Ok((chain_id.expect("the first endpoint answered"), providers))
}

impl Agent {
    /// Opens the store, checks the chain, and starts the watchers, the loops and the server.
    pub async fn start(config: SpConfig) -> Result<Self, AgentError> {
        if config.contracts.perpetual.is_empty() && config.contracts.deal_client.is_empty() {
            return Err(AgentError::NoContracts);
        }
        let (chain_id, providers) = connect(&config.chain).await?;
        let store = Store::open(&config.store.database).await?;
        let key: PrivateKeySigner = config
            .identity
            .key
            .trim()
            .trim_start_matches("0x")
            .parse()
            .map_err(|_| AgentError::Key)?;
        let account = key.address();
        let signer = key.clone();
        let tx = TxManager::new(
            &config.chain.endpoints(),
            chain_id,
            key,
            config.tx_policy(),
            Arc::new(store.clone()),
        )?;
        let chain = ChainClient::new(
            tx,
            config.identity.miner.0,
            config.policy.provider_collateral_per_gib,
        );
        // Bound first: where the agent serves its pieces is known once (a port 0 is chosen
        // here), for the command sealer and the registry alike.
        let listen = config.api.listen;
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|source| AgentError::Listen { addr: listen, source })?;
        let local_addr =
            listener.local_addr().map_err(|source| AgentError::Listen { addr: listen, source })?;
        let url = public_url(config.api.public_url.as_deref(), local_addr);
        let served = Served { listener, local_addr, url };
        match config.sealer.sealer {
            SealerKind::Sim => {
                let sealer = SimulatedSealer::new(
                    chain.clone(),
                    config.sealer.sim_activate_after,
                    config.sealer.faults(),
                )
                .direct(config.sealer.sim_direct);
                Self::start_with(config, chain_id, providers, store, chain, sealer, account, served)
                    .await
            }
            SealerKind::Command => {
                let template = config.sealer.seal_command.clone().unwrap_or_default();
                let timeout = Duration::from_secs(config.sealer.seal_timeout_secs.max(1));
                // Where the agent serves its pieces: the URL it registers, else (listening on
                // every address, with no `--public-url`) its bound address.
                let url = served.url.as_ref().map_or_else(
                    |_| format!("http://{}", served.local_addr),
                    std::clone::Clone::clone,
                );
                let sealer =
                    CommandSealer::new(chain.clone(), template, timeout, signer, chain_id, url);
                Self::start_with(config, chain_id, providers, store, chain, sealer, account, served)
                    .await
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn start_with<S: Sealer>(
        config: SpConfig,
        chain_id: u64,
        providers: Vec<(String, DynProvider)>,
        store: Store,
        chain: ChainClient,
        sealer: S,
        account: alloy::primitives::Address,
        served: Served,
    ) -> Result<Self, AgentError> {
        let data_dir = config.store.data_dir.clone();
        for sub in ["pieces", "partial"] {
            std::fs::create_dir_all(data_dir.join(sub))
                .map_err(|e| AgentError::DataDir(data_dir.display().to_string(), e))?;
        }
        let Served { listener, local_addr, url } = served;
        let shutdown = CancellationToken::new();
        let mut tasks = Vec::new();
        let miner = config.identity.miner.0;

        let mut watchers = Vec::new();
        let follow = config
            .contracts
            .perpetual
            .iter()
            .map(|a| (*a, ContractKind::Perpetual))
            .chain(config.contracts.deal_client.iter().map(|a| (*a, ContractKind::DealClient)));
        for (address, kind) in follow {
            let (state_tx, state_rx) = watch::channel(WatchState::default());
            let spec = WatchSpec {
                stream: format!("{chain_id}:{address:#x}"),
                addresses: vec![address],
                topics: kind.topics(),
                start_block: config.contracts.start_block,
            };
            let logs = LeadLogs::new(store.clone(), kind, address, miner);
            let watcher =
                Watcher::new(providers.clone(), logs, spec, config.chain.clone(), state_tx);
            tasks.push(tokio::spawn(watcher.run(shutdown.clone())));
            watchers.push((format!("{address:#x}"), state_rx));
        }

        let stats = Arc::new(Stats::default());
        let fetcher = Fetcher::new(
            Guard { allow_private: config.fetch.allow_private_origins },
            config.fetch.limits(),
        )?;
        let progress = Arc::new(std::sync::Mutex::new(std::collections::HashMap::new()));
        let ctx = Arc::new(Ctx {
            store: store.clone(),
            chain,
            sealer,
            fetcher,
            policy: config.policy.policy(),
            data_dir,
            downloads: tokio::sync::Semaphore::new(config.policy.max_downloads.max(1)),
            progress: Arc::clone(&progress),
            collect_interval: config.keeper.collect_interval_epochs.max(1),
            perpetual: config.contracts.perpetual.clone(),
            stats: Arc::clone(&stats),
            tick: Duration::from_millis(config.keeper.tick_ms.max(10)),
        });
        if let Some(registry) = config.contracts.provider_registry {
            let url = url?;
            if config.api.public_url.is_none() && local_addr.ip().is_loopback() {
                warn!(%local_addr, "registering a loopback address (no --public-url): only oracles on this host that allow loopback will use it");
            }
            tasks.push(tokio::spawn(agent::run_registration(
                ctx.chain.clone(),
                registry,
                url,
                shutdown.clone(),
            )));
        }
        tasks.push(tokio::spawn(agent::run_evaluator(Arc::clone(&ctx), shutdown.clone())));
        tasks.push(tokio::spawn(agent::run_worker(Arc::clone(&ctx), shutdown.clone())));
        tasks.push(tokio::spawn(agent::run_housekeeping(Arc::clone(&ctx), shutdown.clone())));

        let app = api::router(Arc::new(ApiState {
            store,
            miner,
            account: account.to_checksum(None),
            chain_id,
            watchers,
            stats,
            downloads: progress,
            retrievals: Arc::new(tokio::sync::Semaphore::new(config.api.max_retrievals.max(1))),
            idle: Duration::from_secs(config.api.retrieval_idle_secs.max(1)),
            bytes_served: std::sync::atomic::AtomicU64::new(0),
        }));
        let api_shutdown = shutdown.clone();
        tasks.push(tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move { api_shutdown.cancelled().await })
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "HTTP server stopped");
            }
        }));
        info!(%local_addr, chain_id, miner = %format!("f0{miner}"), %account, "SP agent started");
        Ok(Self { local_addr, shutdown, tasks })
    }

    /// Stops every task and waits for them.
    pub async fn stop(self) {
        self.shutdown.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registered_public_url_follows_the_registrys_rules() {
        let listen: SocketAddr = "127.0.0.1:3100".parse().unwrap();
        let every: SocketAddr = "0.0.0.0:3100".parse().unwrap();
        assert_eq!(public_url(None, listen).unwrap(), "http://127.0.0.1:3100");
        assert_eq!(public_url(Some("https://sp.example/"), every).unwrap(), "https://sp.example");
        assert!(matches!(public_url(None, every), Err(AgentError::PublicUrl(_))));
        for bad in ["ftp://sp.example", "https://", "http://sp example", "sp.example"] {
            assert!(
                matches!(public_url(Some(bad), listen), Err(AgentError::PublicUrl(_))),
                "{bad}"
            );
        }
        let long = format!("https://sp.example/{}", "a".repeat(250));
        assert!(matches!(public_url(Some(&long), listen), Err(AgentError::PublicUrl(_))));
    }
}
