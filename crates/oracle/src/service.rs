//! Wiring: store, chain connection, watcher and API, with an orderly shutdown.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use alloy::providers::{Provider, ProviderBuilder};
use tokio::{net::TcpListener, sync::watch, task::JoinHandle};
use tokio_util::sync::CancellationToken;
use tracing::info;

use alloy::signers::local::PrivateKeySigner;

use crate::{
    api::{self, ApiState},
    blockstore::{Blockstore, BlockstoreError, FsBlockstore, s3::S3Blockstore},
    config::OracleConfig,
    fetch::Fetcher,
    model::Source,
    p2p::{P2p, P2pError},
    report::ChainReporter,
    store::{JobStore, PgStore, PinStore, RequestStore, SqliteStore, StoreError, TxLedger},
    watcher::{WatchState, Watcher, WatcherConfig},
    worker::{Pipeline, WorkerConfig},
};

/// Why the oracle could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OracleError {
    /// The RPC URL does not parse.
    #[error("invalid RPC URL {0:?}")]
    RpcUrl(String),
    /// The chain could not be reached at start-up.
    #[error("cannot reach the chain at {url}: {reason}")]
    Chain {
        /// The endpoint.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The endpoint serves another chain than configured.
    #[error(
        "the RPC endpoint serves chain {actual}, but the oracle is configured for chain {expected}"
    )]
    WrongChain {
        /// Configured chain id.
        expected: u64,
        /// Reported chain id.
        actual: u64,
    },
    /// The database could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The blockstore could not be opened.
    #[error(transparent)]
    Blockstore(#[from] BlockstoreError),
    /// The operator key is not a private key.
    #[error("the operator key is not a valid private key")]
    OperatorKey,
    /// The API address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The libp2p node could not start.
    #[error(transparent)]
    P2p(#[from] P2pError),
}

/// A running oracle.
#[derive(Debug)]
pub struct Oracle {
    /// The address the API is listening on.
    pub local_addr: SocketAddr,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Oracle {
    /// Opens the store, checks the chain, and starts the watcher and the API.
    pub async fn start(config: OracleConfig) -> Result<Self, OracleError> {
        let url =
            config.rpc_url.parse().map_err(|_| OracleError::RpcUrl(config.rpc_url.clone()))?;
        let provider = ProviderBuilder::new().connect_http(url);
        let chain_id = tokio::time::timeout(config.rpc_timeout, provider.get_chain_id())
            .await
            .map_err(|_| OracleError::Chain {
                url: config.rpc_url.clone(),
                reason: format!("no answer within {:?}", config.rpc_timeout),
            })?
            .map_err(|e| OracleError::Chain {
                url: config.rpc_url.clone(),
                reason: e.to_string(),
            })?;
        if let Some(expected) = config.chain_id
            && expected != chain_id
        {
            return Err(OracleError::WrongChain { expected, actual: chain_id });
        }
        // Fallback endpoints must serve the same chain; one that cannot be reached now is kept
        // (it may come back) but one on another chain is refused.
        let mut providers = vec![provider];
        for url_text in &config.rpc_fallbacks {
            let url = url_text.parse().map_err(|_| OracleError::RpcUrl(url_text.clone()))?;
            let fallback = ProviderBuilder::new().connect_http(url);
            match tokio::time::timeout(config.rpc_timeout, fallback.get_chain_id()).await {
                Ok(Ok(id)) if id != chain_id => {
                    return Err(OracleError::WrongChain { expected: chain_id, actual: id });
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::warn!(url = %url_text, error = %e, "fallback RPC endpoint unreachable for now");
                }
                Err(_) => {
                    tracing::warn!(url = %url_text, "fallback RPC endpoint did not answer in time");
                }
            }
            providers.push(fallback);
        }
        let db = config.database.to_string_lossy().into_owned();
        if db.starts_with("postgres://") || db.starts_with("postgresql://") {
            let store = Arc::new(PgStore::connect(&db).await?);
            Self::start_with(config, providers, chain_id, store).await
        } else {
            let store = Arc::new(SqliteStore::open(&config.database).await?);
            Self::start_with(config, providers, chain_id, store).await
        }
    }

    /// Starts the oracle's tasks over an open store.
    async fn start_with<P, S>(
        config: OracleConfig,
        providers: Vec<P>,
        chain_id: u64,
        store: Arc<S>,
    ) -> Result<Self, OracleError>
    where
        P: Provider + Clone + 'static,
        S: RequestStore + JobStore + PinStore + TxLedger,
    {
        match &config.s3 {
            Some(s3) => {
                let blocks = Arc::new(S3Blockstore::open(s3)?);
                Self::start_full(config, providers, chain_id, store, blocks).await
            }
            None => {
                let blocks = Arc::new(FsBlockstore::open(config.data_dir.clone())?);
                Self::start_full(config, providers, chain_id, store, blocks).await
            }
        }
    }

    /// Starts the oracle's tasks over an open store and blockstore.
    async fn start_full<P, S, B>(
        config: OracleConfig,
        providers: Vec<P>,
        chain_id: u64,
        store: Arc<S>,
        blocks: Arc<B>,
    ) -> Result<Self, OracleError>
    where
        P: Provider + Clone + 'static,
        S: RequestStore + JobStore + PinStore + TxLedger,
        B: Blockstore,
    {
        let source = Source { chain_id, contract: config.pinning };
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| OracleError::Listen { addr: config.listen, source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| OracleError::Listen { addr: config.listen, source })?;

        let packed_dir = config.data_dir.join("packed");
        let shutdown = CancellationToken::new();
        let mut tasks = Vec::new();
        let p2p = P2p::start(
            &config.data_dir.join("p2p.key"),
            &config.p2p_listen,
            Arc::clone(&blocks),
            shutdown.clone(),
        )
        .await?;
        if let Some(key) = &config.operator_key {
            let key: PrivateKeySigner =
                key.trim_start_matches("0x").parse().map_err(|_| OracleError::OperatorKey)?;
            let reporter =
                ChainReporter::new(&config.rpc_url, config.pinning, config.oracle_contract, key, 1)
                    .map_err(|_| OracleError::RpcUrl(config.rpc_url.clone()))?
                    .with_policy(config.tx_policy)
                    .with_ledger(Arc::clone(&store));
            let pipeline = Pipeline::new(
                Arc::clone(&store),
                Arc::clone(&blocks),
                Fetcher::new(config.gateways.clone(), config.fetch_limits).with_p2p(p2p.clone()),
                Arc::new(reporter),
                WorkerConfig {
                    workers: config.workers,
                    lease: config.lease,
                    max_attempts: config.max_attempts,
                    idle: Duration::from_millis(200),
                    packed_dir: packed_dir.clone(),
                },
            );
            tasks.push(tokio::spawn(pipeline.run(shutdown.clone())));
        } else {
            tracing::warn!("no operator key: requests are recorded but not pinned");
        }
        let (state_tx, state_rx) = watch::channel(WatchState::default());
        let watcher_config = WatcherConfig {
            start_block: config.start_block,
            confirmations: config.confirmations,
            finality: config.finality,
            max_block_range: config.max_block_range,
            poll_interval: config.poll_interval,
            rpc_timeout: config.rpc_timeout,
        };
        let watcher = Watcher::new(
            providers.clone(),
            Arc::clone(&store),
            source,
            watcher_config.clone(),
            state_tx,
        );
        let watcher_task = tokio::spawn(watcher.run(shutdown.clone()));
        if let Some(oracle) = config.oracle_contract {
            let jobs = Watcher::new(
                providers.clone(),
                Arc::clone(&store),
                Source { chain_id, contract: oracle },
                watcher_config,
                watch::channel(WatchState::default()).0,
            )
            .for_oracle_jobs();
            tasks.push(tokio::spawn(jobs.run(shutdown.clone())));
        }

        let app = api::router(Arc::new(ApiState {
            store,
            blocks,
            packed_dir,
            uploads_dir: config.data_dir.join("uploads"),
            source,
            watch: state_rx,
            api_token: config.api_token.clone(),
            delegates: if config.delegates.is_empty() {
                let mut own = vec![self_multiaddr(local_addr)];
                own.extend(p2p.addrs().iter().map(ToString::to_string));
                own
            } else {
                config.delegates.clone()
            },
            p2p: Some(p2p),
        }));
        let api_shutdown = shutdown.clone();
        let api_task = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move { api_shutdown.cancelled().await })
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "API server stopped");
            }
        });
        info!(%local_addr, chain_id, contract = %config.pinning, "oracle started");
        tasks.push(watcher_task);
        tasks.push(api_task);
        Ok(Self { local_addr, shutdown, tasks })
    }

    /// Stops the watcher and the API and waits for them.
    pub async fn stop(self) {
        self.shutdown.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// The multiaddr of this oracle's gateway, as the pinning API's `delegates` names it.
fn self_multiaddr(addr: std::net::SocketAddr) -> String {
    let ip = match addr.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => std::net::Ipv4Addr::LOCALHOST.into(),
        ip if ip.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    let proto = if ip.is_ipv4() { "ip4" } else { "ip6" };
    format!("/{proto}/{ip}/tcp/{}/http", addr.port())
}
