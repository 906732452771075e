//! Wiring: the database, the blockstore, the chain (watchers and the transaction manager), the
//! workers, the libp2p node and the API, with an orderly shutdown.
//!
//! ```text
//!  Oracle::start ──► Store::open ──► blockstore (fs | S3) ──► endpoints (same chain id)
//!     ├─ Watcher: EstuaryPinning requests ──┐
//!     ├─ Watcher: EstuaryOracle jobs ───────┴─► RequestLogs ─► Store
//!     ├─ Pipeline (workers) ──► Fetcher (gateways, libp2p) · pack · ChainReporter (TxManager)
//!     ├─ P2p (Bitswap both ways)
//!     ├─ garbage collection and reconciliation, on a schedule
//!     └─ API (axum)
//!  Oracle::stop ──► cancel, wait for every task
//! ```

use std::{net::SocketAddr, sync::Arc, time::Duration};

use alloy::{
    providers::{DynProvider, Provider, ProviderBuilder},
    signers::local::PrivateKeySigner,
};
use estuary_chain::{ChainError, WatchSpec, WatchState, Watcher};
use tokio::{net::TcpListener, sync::watch, task::JoinHandle};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{
    api::{self, ApiState},
    blockstore::{Blockstore, BlockstoreError, FsBlockstore, s3::S3Blockstore},
    config::OracleConfig,
    domain::{JobSource, request::ContractKind, state::Policy},
    fetch::Fetcher,
    gc::{Collector, GcError, GcGate},
    p2p::{P2p, P2pError},
    pipeline::{
        Pipeline, WorkerConfig,
        report::{ChainReporter, ReportTargets},
    },
    reconcile,
    store::{RequestLogs, Store, StoreError},
};

/// Why the oracle could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OracleError {
    /// The chain could not be reached at start-up, or an endpoint serves another chain.
    #[error(transparent)]
    Chain(#[from] ChainError),
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
    /// A secret's file could not be read.
    #[error(transparent)]
    Secret(#[from] crate::config::SecretError),
    /// Settings that do not go together.
    #[error("configuration: {0}")]
    Config(String),
}

/// A running oracle.
#[derive(Debug)]
pub struct Oracle {
    /// The address the API is listening on.
    pub local_addr: SocketAddr,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

/// Connects to every endpoint of `config.chain` and checks that they serve one chain (the one
/// configured, if any); an endpoint that cannot be reached now is kept (it may come back), one
/// on another chain is refused. Returns the chain id and the providers, named by their URLs.
pub async fn connect(
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
            // The preferred endpoint must answer at start-up; a fallback may come back later.
            Ok(Err(source)) if i == 0 => {
                return Err(ChainError::Rpc { endpoint: url, method: "eth_chainId", source });
            }
            Err(_) if i == 0 => return Err(ChainError::Timeout { endpoint: url, after: timeout }),
            Ok(Err(e)) => warn!(%url, error = %e, "fallback RPC endpoint unreachable for now"),
            Err(_) => warn!(%url, "fallback RPC endpoint did not answer in time"),
        }
        providers.push((url, provider));
    }
    let chain_id = chain_id.expect("the first endpoint answered with its chain id");
    Ok((chain_id, providers))
}

impl Oracle {
    /// Opens the store, checks the chain, and starts the watchers, the workers and the API.
    pub async fn start(config: OracleConfig) -> Result<Self, OracleError> {
        let (chain_id, providers) = connect(&config.chain).await?;
        let store = Store::open(&config.store.database).await?;
        match config.store.s3() {
            Some(s3) => {
                let blocks = Arc::new(S3Blockstore::open(&s3)?);
                Self::start_with(config, providers, chain_id, store, blocks).await
            }
            None => {
                let blocks = Arc::new(FsBlockstore::open(config.store.data_dir.clone())?);
                Self::start_with(config, providers, chain_id, store, blocks).await
            }
        }
    }

    /// Starts the oracle's tasks over an open store and blockstore.
    async fn start_with<B: Blockstore>(
        config: OracleConfig,
        providers: Vec<(String, DynProvider)>,
        chain_id: u64,
        store: Store,
        blocks: Arc<B>,
    ) -> Result<Self, OracleError> {
        let pinning = JobSource::Contract { chain: chain_id, address: config.contracts.pinning };
        let listen = config.api.listen;
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|source| OracleError::Listen { addr: listen, source })?;
        let local_addr =
            listener.local_addr().map_err(|source| OracleError::Listen { addr: listen, source })?;
        let api_token = crate::config::Secret::resolve(
            config.api.api_token.as_ref(),
            config.api.api_token_file.as_deref(),
        )?;
        let data_dir = &config.store.data_dir;
        let packed_dir = data_dir.join("packed");
        let shutdown = CancellationToken::new();
        let mut tasks = Vec::new();
        // Cold reads and their read-backs: what the probes read from (providers with `url=`,
        // or a URL registered on chain).
        let provider_urls = Arc::new(config.deals.provider_urls());
        let net = Arc::new(config.deals.provider_net_policy());
        let probes = config.deals.prober(&provider_urls, &net, &config.chain.endpoints());
        let cold = match &probes {
            Some(p) => Some(Arc::new(
                crate::deals::cold::ColdReads::new(
                    store.clone(),
                    Arc::clone(&p.urls),
                    Arc::clone(&net),
                    p.timeout,
                    Duration::from_secs(config.deals.cold_cache_secs),
                )
                .map_err(|e| OracleError::Config(format!("the cold reads' HTTP client: {e}")))?,
            )),
            None => None,
        };
        let p2p = P2p::start(
            &data_dir.join("p2p.key"),
            &config.p2p,
            Arc::clone(&blocks),
            cold.clone(),
            shutdown.clone(),
        )
        .await?;
        let operator = operator_tx(&config, chain_id, &store)?;
        // DAGs from the network: the origins, the gateways and Bitswap.
        let network = Fetcher::with_policy(
            config.fetch.gateways.clone(),
            config.fetch.limits(),
            config.fetch.net_policy(),
        )
        .with_p2p(p2p.clone());
        // As `jobs.requester` has them: addresses checksummed, account names as they are.
        let dedicated: Vec<String> = config
            .deals
            .dedicated_buckets
            .iter()
            .map(|r| {
                r.parse::<alloy::primitives::Address>()
                    .map_or_else(|_| r.trim().to_owned(), |a| a.to_checksum(None))
            })
            .collect();
        store.set_dedicated_requesters(&dedicated).await?;
        if let (Some(dao), Some(_), Some(_)) =
            (config.deals.datadao, config.deals.perpetual, &operator)
        {
            // Before anything is bucketed or ordered: the DAO's pins are its own to fund (only
            // where its funder runs: otherwise they would be neither funded nor ordered).
            store.register_dao(dao).await?;
        }
        let faults = match &operator {
            Some(tx) => {
                // Pins' DAGs: a cold one from the providers first, then origins and gateways.
                let fetcher = network
                    .clone()
                    .with_cold(cold.clone())
                    .with_gc_gate(GcGate::new(store.clone(), config.worker.lease()));
                let (task, faults) =
                    start_pipeline(&config, chain_id, tx, &store, &blocks, fetcher, &shutdown);
                tasks.push(task);
                faults
            }
            None => {
                warn!("no operator key: requests are recorded but not pinned");
                crate::pipeline::Faults::new()
            }
        };
        let (state_tx, state_rx) = watch::channel(WatchState::default());
        tasks.extend(start_watchers(&config, &providers, chain_id, &store, state_tx, &shutdown));
        let dealing = config.deals.perpetual.is_some() || config.deals.deal_client.is_some();
        if !dealing || operator.is_none() {
            let ignored = [
                (config.deals.bucket_size.is_some(), "--bucket-size"),
                (config.deals.datadao.is_some(), "--datadao-address"),
                (!config.deals.dedicated_buckets.is_empty(), "--dedicated-bucket-for"),
                (config.deals.provider_registry.is_some(), "--provider-registry-address"),
            ];
            for (_, flag) in ignored.iter().filter(|(set, _)| *set) {
                warn!(
                    flag,
                    "ignored: deals need --perpetual-address or --deal-client-address, and an operator key"
                );
            }
        }
        if config.deals.datadao.is_some() && config.deals.perpetual.is_none() && dealing {
            warn!(
                flag = "--datadao-address",
                "ignored: the DataDAO's orders are PerpetualStorage orders (--perpetual-address)"
            );
        }
        let wake = crate::deals::Wake::default();
        // Said at start, not on every order: a view that cannot answer the DataCap pre-flight
        // of verified contract deals would leave every one of them waiting.
        if let (true, true, Some(tx), Some(client), Some(view)) = (
            dealing,
            config.deals.deal_verified,
            &operator,
            config.deals.deal_client,
            config.deals.deal_state_view,
        ) {
            crate::deals::contract::check_datacap_view(tx.provider(), view, client)
                .await
                .map_err(OracleError::Config)?;
        }
        if dealing {
            match &operator {
                Some(tx) => tasks.extend(start_deals(
                    &config,
                    &providers,
                    chain_id,
                    tx,
                    &store,
                    local_addr,
                    probes.clone(),
                    &wake,
                    &shutdown,
                )?),
                None => warn!("no operator key: no orders are made for deals"),
            }
        }
        tasks.extend(start_maintenance(&config, &store, &blocks, &packed_dir, &shutdown));
        if let (Some(reads), Some(rules), Some(probes)) = (&cold, config.deals.cold(), &probes) {
            let read_backs = crate::deals::cold::ReadBacks::new(
                store.clone(),
                Arc::clone(&blocks),
                Arc::clone(reads),
                rules,
                packed_dir.clone(),
                probes.tick,
            )
            // A piece no provider gives back: its pin's DAG fetched again as the pins' are.
            .with_network(network.clone(), config.uploads.min_free_bytes);
            tasks.push(tokio::spawn(read_backs.run(shutdown.clone())));
        }
        let api_state = Arc::new(ApiState {
            store,
            blocks,
            packed_dir,
            uploads_dir: data_dir.join("uploads"),
            source: pinning,
            watch: state_rx,
            api_token: api_token.map(|t| t.expose().to_owned()),
            delegates: if config.api.delegates.is_empty() {
                let mut own = vec![self_multiaddr(local_addr)];
                own.extend(p2p.addrs().iter().map(ToString::to_string));
                own
            } else {
                config.api.delegates.clone()
            },
            p2p: Some(p2p),
            gateway_limits: config.walks.gateway_limits(),
            faults,
            policy: config.api_policy(),
            bucket_size: config.deals.bucket_size,
            aggregates: Default::default(),
            cold,
            wake,
            history: Arc::new(api::history::MetricsHistory::new(
                Duration::from_secs(config.api.metrics_history_secs),
                config.api.metrics_history_points,
            )),
        });
        tasks.push(tokio::spawn(api::history::run(Arc::clone(&api_state), shutdown.clone())));
        tasks.push(tokio::spawn(api::upload::janitor(
            Arc::clone(&api_state),
            Duration::from_secs(60),
            shutdown.clone(),
        )));
        let app = api::router(api_state);
        tasks.push(tokio::spawn(api::serve::serve(
            listener,
            app,
            config.http.server_limits(),
            shutdown.clone(),
        )));
        info!(%local_addr, chain_id, contract = %config.contracts.pinning, "oracle started");
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

/// The operator's transaction manager (one per account: reports and orders share its nonces),
/// if an operator key is configured.
fn operator_tx(
    config: &OracleConfig,
    chain_id: u64,
    store: &Store,
) -> Result<Option<estuary_chain::TxManager>, OracleError> {
    let operator_key = crate::config::Secret::resolve(
        config.worker.operator_key.as_ref(),
        config.worker.operator_key_file.as_deref(),
    )?;
    let Some(key) = operator_key else { return Ok(None) };
    let key: PrivateKeySigner =
        key.expose().trim_start_matches("0x").parse().map_err(|_| OracleError::OperatorKey)?;
    Ok(Some(estuary_chain::TxManager::new(
        &config.chain.endpoints(),
        chain_id,
        key,
        config.tx_policy(),
        Arc::new(store.clone()),
    )?))
}

/// The workers (fetch, pack, report), reporting with `tx`: their task and the switch of their
/// storage-fault pause.
fn start_pipeline<B: Blockstore>(
    config: &OracleConfig,
    chain_id: u64,
    tx: &estuary_chain::TxManager,
    store: &Store,
    blocks: &Arc<B>,
    fetcher: Fetcher,
    shutdown: &CancellationToken,
) -> (JoinHandle<()>, crate::pipeline::Faults) {
    let tx = tx.clone();
    let targets = ReportTargets {
        chain: chain_id,
        pinning: config.contracts.pinning,
        oracle: config.contracts.oracle,
    };
    let pipeline = Pipeline::new(
        store.clone(),
        Arc::clone(blocks),
        fetcher,
        Arc::new(ChainReporter::new(tx, targets)),
        WorkerConfig {
            workers: config.worker.workers,
            lease: config.worker.lease(),
            policy: Policy { max_attempts: config.worker.max_attempts, ..Policy::default() },
            idle: Duration::from_millis(200),
            packed_dir: config.store.data_dir.join("packed"),
            per_requester: config.worker.per_requester(),
            probe_every: Duration::from_secs(5),
            min_free_bytes: config.uploads.min_free_bytes,
        },
    );
    let faults = pipeline.faults();
    (tokio::spawn(pipeline.run(shutdown.clone())), faults)
}

/// The deal engine, sending with `tx`: with `--perpetual-address`, its watcher (events about
/// the operator's and the DataDAO's orders), the keeper and the DataDAO's funder; the pieces'
/// deals through the `DealClient` scheduler if `--deal-client-address` is given, else as
/// `PerpetualStorage` orders; and with buckets, the bucketer, the deal reporter and the store-job
/// fulfiller.
#[allow(clippy::too_many_arguments)]
fn start_deals(
    config: &OracleConfig,
    providers: &[(String, DynProvider)],
    chain_id: u64,
    tx: &estuary_chain::TxManager,
    store: &Store,
    local_addr: SocketAddr,
    probes: Option<crate::deals::probes::ProberConfig>,
    wake: &crate::deals::Wake,
    shutdown: &CancellationToken,
) -> Result<Vec<JoinHandle<()>>, OracleError> {
    let public_url = config.deals.public_url.clone().unwrap_or_else(|| {
        if local_addr.ip().is_unspecified() {
            warn!(
                %local_addr,
                "no --public-url: deals name the listen address, which storage providers cannot reach"
            );
        }
        format!("http://{local_addr}")
    });
    if config.deals.deal_state_view.is_none() {
        warn!(
            "no --deal-state-view-address: the market is not read; deals gone from it are not seen"
        );
    }
    let largest = config.deals.buckets().map(|rules| rules.largest_piece());
    let every = std::time::Duration::from_secs(config.deals.deal_check_secs);
    let mut tasks = Vec::new();
    if let Some(probes) = probes {
        if let Some(registry) = config.deals.provider_registry {
            let reader = crate::deals::registry::RegistryReader::new(
                store.clone(),
                tx.provider().clone(),
                registry,
                Arc::clone(&probes.urls),
                Arc::clone(&probes.net),
                std::time::Duration::from_secs(config.deals.provider_registry_refresh_secs),
            );
            tasks.push(tokio::spawn(reader.run(shutdown.clone())));
        }
        let levels = crate::deals::probes::LevelsMaker::new(
            store.clone(),
            config.store.data_dir.join("packed"),
            probes.every,
            probes.tick,
        );
        tasks.push(tokio::spawn(levels.run(shutdown.clone())));
        let prober =
            crate::deals::probes::Prober::new(store.clone(), tx.provider().clone(), probes)
                .map_err(|e| OracleError::Config(format!("the prober's HTTP client: {e}")))?;
        tasks.push(tokio::spawn(prober.run(shutdown.clone())));
    }
    if let Some(contract) = config.deals.perpetual {
        let (state_tx, state_rx) = watch::channel(WatchState::default());
        let spec = WatchSpec {
            stream: format!("deals:{chain_id}:{contract:#x}"),
            addresses: vec![contract],
            topics: crate::deals::events::topics(),
            start_block: config.contracts.start_block,
        };
        let mut logs = crate::store::DealLogs::new(store.clone(), contract, tx.sender());
        if let Some(dao) = config.deals.datadao {
            logs = logs.with_dao(dao);
        }
        let watcher =
            Watcher::new(providers.to_vec(), Arc::new(logs), spec, config.chain.clone(), state_tx);
        tasks.push(tokio::spawn(watcher.run(shutdown.clone())));
        if config.deals.deal_client.is_none() {
            info!(%contract, %public_url, replicas = config.deals.deal_replicas, "making perpetual-storage orders");
            let maker = crate::deals::perpetual::PerpetualMaker::new(
                store.clone(),
                tx.clone(),
                contract,
                config.deals.terms(),
                &public_url,
                state_rx,
            )
            .with_budget(config.deals.deal_budget)
            .with_buckets(largest);
            if config.deals.deal_budget.is_none() {
                warn!(
                    "no --deal-budget: every reported piece is funded from the operator's account"
                );
            }
            tasks.push(tokio::spawn(maker.run(shutdown.clone())));
        }
        let keeper = crate::deals::keeper::Keeper::new(
            store.clone(),
            tx.clone(),
            contract,
            crate::deals::keeper::KeeperConfig {
                view: config.deals.deal_state_view,
                every,
                expiring_epochs: config.deals.deal_expiring_epochs,
                collect_every: config.deals.deal_collect_epochs,
                // A lost replica is probed a quarter as often (`probes::LOST_SLOWER`), ±25 %.
                mark_lost: config.deals.mark_lost_after_secs.map(|secs| {
                    crate::domain::market::MarkLostRules {
                        after_ms: secs.saturating_mul(1000),
                        recent_ms: config.deals.probe_every_secs.saturating_mul(10_000),
                    }
                }),
                datadao: config.deals.datadao,
                // At most half of each replica's own term (`domain::market::renewing`).
                renew_epochs: config.deals.deal_renew_epochs,
            },
        )
        .with_wake(wake);
        tasks.push(tokio::spawn(keeper.run(shutdown.clone())));
        if let Some(dao) = config.deals.datadao {
            info!(%dao, "funding the DataDAO's accepted CIDs (fundOrder)");
            let pinning = config.contracts.pinning;
            let funder = crate::deals::datadao::DaoFunder::new(
                store.clone(),
                tx.clone(),
                dao,
                contract,
                JobSource::Contract { chain: chain_id, address: pinning },
                &public_url,
                every,
            );
            tasks.push(tokio::spawn(funder.run(shutdown.clone())));
        }
    }
    if let Some(client) = config.deals.deal_client {
        if config.deals.providers.is_empty() {
            return Err(OracleError::Config(
                "--deal-client-address needs at least one --provider to propose deals to".into(),
            ));
        }
        if config.deals.deal_state_view.is_none() {
            // The market tells a contract deal's client nothing after publication: whether
            // the deal is active, and stays so, is read from the market.
            return Err(OracleError::Config(
                "--deal-client-address needs --deal-state-view-address (a contract deal's \
                 activation is read from the market)"
                    .into(),
            ));
        }
        if config.deals.deal_budget.is_some() {
            warn!(
                "--deal-budget is ignored by contract deals: the DealClient's escrow bounds them"
            );
        }
        // A window as long as the term would renew every deal as soon as it is active, and
        // its renewal too: at most half the term.
        let renew_epochs = config.deals.deal_renew_epochs.min(config.deals.deal_term_epochs / 2);
        if renew_epochs < config.deals.deal_renew_epochs {
            warn!(
                renew = renew_epochs,
                term = config.deals.deal_term_epochs,
                "--deal-renew-epochs cut to half of --deal-term-epochs"
            );
        }
        if renew_epochs <= config.deals.deal_start_epochs {
            warn!(
                renew = renew_epochs,
                start = config.deals.deal_start_epochs,
                "--deal-renew-epochs is not above --deal-start-epochs: a renewal starts after \
                 the deal it replaces ends"
            );
        }
        let (state_tx, state_rx) = watch::channel(WatchState::default());
        let spec = WatchSpec {
            stream: format!("proposals:{chain_id}:{client:#x}"),
            addresses: vec![client],
            topics: crate::deals::events::proposal_topics(),
            start_block: config.contracts.start_block,
        };
        let logs = Arc::new(crate::store::ProposalLogs::new(store.clone(), client));
        let watcher = Watcher::new(providers.to_vec(), logs, spec, config.chain.clone(), state_tx);
        tasks.push(tokio::spawn(watcher.run(shutdown.clone())));
        info!(
            %client,
            %public_url,
            replicas = config.deals.deal_replicas,
            providers = config.deals.providers.len(),
            "making contract deals at chosen providers"
        );
        let scheduler = crate::deals::contract::Scheduler::new(
            store.clone(),
            crate::deals::contract::ContractBackend::new(tx.clone(), client),
            tx.provider().clone(),
            crate::deals::contract::SchedulerConfig {
                providers: config.deals.providers.clone(),
                rules: config.deals.placement(),
                ask: crate::domain::placement::DealAsk {
                    duration: config.deals.deal_term_epochs,
                    start_delay: config.deals.deal_start_epochs,
                },
                replicas: config.deals.deal_replicas,
                bucketed: largest,
                public_url,
                view: config.deals.deal_state_view,
                expiring_epochs: config.deals.deal_expiring_epochs,
                renew_epochs,
                scores: crate::domain::provider::ScoreRules::default(),
                every,
            },
            state_rx,
        )
        .with_wake(wake);
        tasks.push(tokio::spawn(scheduler.run(shutdown.clone())));
    }
    if let Some(rules) = config.deals.buckets() {
        info!(
            deal_size = rules.deal_size,
            max_age_ms = rules.max_age_ms,
            "bucketing pins into aggregates"
        );
        let packed = config.store.data_dir.join("packed");
        let gate = GcGate::new(store.clone(), config.worker.lease());
        let splitter = crate::deals::splits::Splitter::new(
            store.clone(),
            packed.clone(),
            rules.deal_size,
            GcGate::new(store.clone(), config.worker.lease()),
            every,
        );
        tasks.push(tokio::spawn(splitter.run(shutdown.clone())));
        let bucketer = crate::deals::buckets::Bucketer::new(store.clone(), rules, packed, gate);
        tasks.push(tokio::spawn(bucketer.run(shutdown.clone())));
        let pinning = config.contracts.pinning;
        let reporter = crate::deals::proofs::DealReporter::new(
            store.clone(),
            tx.clone(),
            pinning,
            JobSource::Contract { chain: chain_id, address: pinning },
            every,
        );
        tasks.push(tokio::spawn(reporter.run(shutdown.clone())));
        if let Some(oracle) = config.contracts.oracle {
            let fulfiller = crate::deals::store_jobs::StoreFulfiller::new(
                store.clone(),
                tx.clone(),
                oracle,
                JobSource::Contract { chain: chain_id, address: oracle },
                rules.largest_piece(),
                every,
            )
            .with_max_age(config.deals.bucket_max_age_secs);
            tasks.push(tokio::spawn(fulfiller.run(shutdown.clone())));
        }
    }
    Ok(tasks)
}

/// A watcher per followed contract (`EstuaryPinning`, and `EstuaryOracle` if configured), storing
/// requests through [`RequestLogs`]; the first reports its progress on `state`.
fn start_watchers(
    config: &OracleConfig,
    providers: &[(String, DynProvider)],
    chain_id: u64,
    store: &Store,
    state: watch::Sender<WatchState>,
    shutdown: &CancellationToken,
) -> Vec<JoinHandle<()>> {
    // Store jobs are served when the oracle makes deals in buckets (each pin's inclusion proof
    // is what a store job's result carries).
    let store_offer = ((config.deals.perpetual.is_some() || config.deals.deal_client.is_some())
        && config.deals.buckets().is_some())
    .then_some(crate::domain::request::StoreOffer {
        replicas: config.deals.deal_replicas,
        verified: config.deals.deal_verified,
    });
    let watch_contract = |address: alloy::primitives::Address, kind: ContractKind, state| {
        let source = JobSource::Contract { chain: chain_id, address };
        let spec = WatchSpec {
            stream: format!("{chain_id}:{address:#x}"),
            addresses: vec![address],
            topics: kind.topics(),
            start_block: config.contracts.start_block,
        };
        let logs = RequestLogs::new(store.clone(), source, kind).with_store_offer(store_offer);
        Watcher::new(providers.to_vec(), Arc::new(logs), spec, config.chain.clone(), state)
    };
    let mut tasks = Vec::new();
    let watcher = watch_contract(config.contracts.pinning, ContractKind::Pinning, state);
    tasks.push(tokio::spawn(watcher.run(shutdown.clone())));
    if let Some(oracle) = config.contracts.oracle {
        let jobs = watch_contract(
            oracle,
            ContractKind::OracleJobs,
            watch::channel(WatchState::default()).0,
        );
        tasks.push(tokio::spawn(jobs.run(shutdown.clone())));
    }
    tasks
}

/// Garbage collection and reconciliation, each after its interval and then every interval (an
/// interval of 0 turns it off).
fn start_maintenance<B: Blockstore>(
    config: &OracleConfig,
    store: &Store,
    blocks: &Arc<B>,
    packed_dir: &std::path::Path,
    shutdown: &CancellationToken,
) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::new();
    let walk_limits = config.fetch.limits().walk();
    if config.maintenance.gc_interval_secs > 0 {
        let collector = Arc::new(Collector::new(
            store.clone(),
            Arc::clone(blocks),
            packed_dir.to_owned(),
            crate::gc::GcPolicy { cold: config.deals.cold(), ..config.maintenance.gc_policy() },
            walk_limits,
        ));
        let every = Duration::from_secs(config.maintenance.gc_interval_secs);
        tasks.push(tokio::spawn(periodically(every, shutdown.clone(), move || {
            let collector = Arc::clone(&collector);
            async move {
                match collector.run().await {
                    Ok(_) | Err(GcError::Busy) => {}
                    Err(e) => warn!(error = %e, "scheduled garbage collection failed"),
                }
            }
        })));
    }
    if config.maintenance.reconcile_interval_secs > 0 {
        let (store, blocks) = (store.clone(), Arc::clone(blocks));
        let every = Duration::from_secs(config.maintenance.reconcile_interval_secs);
        tasks.push(tokio::spawn(periodically(every, shutdown.clone(), move || {
            let (store, blocks) = (store.clone(), Arc::clone(&blocks));
            async move {
                match reconcile::reconcile_within(&store, &blocks, walk_limits).await {
                    Ok(done) => info!(
                        checked = done.checked,
                        requeued = done.requeued.len(),
                        faults = done.faults.len(),
                        "scheduled reconciliation done"
                    ),
                    Err(e) => warn!(error = %e, "scheduled reconciliation failed"),
                }
            }
        })));
    }
    tasks
}

/// Runs `job` every `every` (the first time after one interval) until `shutdown`.
async fn periodically<F, Fut>(every: Duration, shutdown: CancellationToken, job: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()>,
{
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = job() => {}
        }
    }
}

/// The multiaddr of this oracle's gateway, as the pinning API's `delegates` names it.
fn self_multiaddr(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => std::net::Ipv4Addr::LOCALHOST.into(),
        ip if ip.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    let proto = if ip.is_ipv4() { "ip4" } else { "ip6" };
    format!("/{proto}/{ip}/tcp/{}/http", addr.port())
}
