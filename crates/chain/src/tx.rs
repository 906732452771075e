//! Sending transactions and seeing them through: the transaction manager the oracle's reports
//! and the SP agent's claims and publications go through.
//!
//! ```text
//!  TxManager::send(call, keys)
//!     │ simulate (eth_estimateGas): a refused call is returned to the caller, nothing sent
//!     │ adopt: a transaction the ledger holds for these keys, still pending → wait for it
//!     ▼
//!  one alloy provider ─ fillers: chain id · nonce (LedgerNonces) · wallet
//!     │                └ transport: every endpoint (FallbackLayer)
//!     │ record (nonce, hash, keys) in the ledger, then send
//!     ▼
//!  wait ─► not mined after `bump_after`: the same nonce again, fees +`bump_percent` (capped)
//!       ─► mined: read the receipt again once `confirmations` deep (a reorg may have dropped it)
//! ```
//!
//! Nonces come from [`LedgerNonces`], an alloy [`NonceManager`] that hands them out one at a
//! time and starts past the newest transaction of ours the ledger holds and the node knows (an
//! endpoint that lost our pending transactions must not make us reuse their nonces; one that
//! never saw them must not leave a gap). Every version of a transaction is recorded in the
//! ledger *before* it is sent, so a process killed at any point finds it after a restart and
//! waits for it rather than sending a second one. Fees come from the node's EIP-1559 estimate,
//! asked at most once a second for every sender, and never above the configured cap.

use std::{marker::PhantomData, num::NonZeroUsize, sync::Arc, time::Duration};

use alloy::{
    consensus::Transaction as _,
    contract::CallBuilder,
    eips::eip1559::Eip1559Estimation,
    network::{Ethereum, EthereumWallet, Network, TransactionBuilder},
    primitives::{Address, B256},
    providers::{
        DynProvider, Identity, PendingTransactionBuilder, Provider, ProviderBuilder, RootProvider,
        SendableTx,
        fillers::{ChainIdFiller, FillProvider, JoinFill, NonceFiller, NonceManager, WalletFiller},
    },
    rpc::{client::RpcClient, types::TransactionReceipt},
    signers::local::PrivateKeySigner,
    sol_types::SolCall,
    transports::{
        TransportResult,
        http::{Http, reqwest},
        layers::FallbackLayer,
    },
};
use futures_util::future::BoxFuture;
use tokio::sync::Mutex;
use tracing::{debug, info, warn};

use crate::error::{ChainError, TxError};

/// What the ledger of sent transactions keeps, per sending account.
pub trait TxLedger: Send + Sync + 'static {
    /// A storage failure.
    type Error: std::error::Error + Send + Sync + 'static;

    /// The newest unsettled transaction of `sender`: (nonce, hash). Settled ones are gone, so
    /// this is what may still be in a mempool.
    fn last_unsettled(
        &self,
        sender: &str,
    ) -> impl Future<Output = Result<Option<(u64, B256)>, Self::Error>> + Send;

    /// The unsettled transactions of `sender` with nonces from `from` up to `to` (excluded):
    /// (nonce, hash).
    fn unsettled_between(
        &self,
        sender: &str,
        from: u64,
        to: u64,
    ) -> impl Future<Output = Result<Vec<(u64, B256)>, Self::Error>> + Send;

    /// Records that `tx`, sent with `nonce`, does what `keys` name.
    fn record_sent(
        &self,
        sender: &str,
        nonce: u64,
        tx: B256,
        keys: &[String],
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// The transactions recorded for `key`, oldest first: (nonce, hash).
    fn sent_for(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<Vec<(u64, B256)>, Self::Error>> + Send;

    /// Forgets the transactions recorded for `keys`: what they do is settled.
    fn settle(&self, keys: &[String]) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

use std::future::Future;

type LedgerFuture<'a, T> = BoxFuture<'a, Result<T, Box<dyn std::error::Error + Send + Sync>>>;

/// [`TxLedger`] with boxed futures, so one manager type serves every store.
trait DynLedger: Send + Sync {
    fn last_unsettled<'a>(&'a self, sender: &'a str) -> LedgerFuture<'a, Option<(u64, B256)>>;
    fn unsettled_between<'a>(
        &'a self,
        sender: &'a str,
        from: u64,
        to: u64,
    ) -> LedgerFuture<'a, Vec<(u64, B256)>>;
    fn record_sent<'a>(
        &'a self,
        sender: &'a str,
        nonce: u64,
        tx: B256,
        keys: &'a [String],
    ) -> LedgerFuture<'a, ()>;
    fn sent_for<'a>(&'a self, key: &'a str) -> LedgerFuture<'a, Vec<(u64, B256)>>;
    fn settle<'a>(&'a self, keys: &'a [String]) -> LedgerFuture<'a, ()>;
}

fn boxed<T>(
    r: Result<T, impl std::error::Error + Send + Sync + 'static>,
) -> Result<T, Box<dyn std::error::Error + Send + Sync>> {
    r.map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
}

impl<T: TxLedger> DynLedger for T {
    fn last_unsettled<'a>(&'a self, sender: &'a str) -> LedgerFuture<'a, Option<(u64, B256)>> {
        Box::pin(async move { boxed(TxLedger::last_unsettled(self, sender).await) })
    }
    fn unsettled_between<'a>(
        &'a self,
        sender: &'a str,
        from: u64,
        to: u64,
    ) -> LedgerFuture<'a, Vec<(u64, B256)>> {
        Box::pin(async move { boxed(TxLedger::unsettled_between(self, sender, from, to).await) })
    }
    fn record_sent<'a>(
        &'a self,
        sender: &'a str,
        nonce: u64,
        tx: B256,
        keys: &'a [String],
    ) -> LedgerFuture<'a, ()> {
        Box::pin(async move { boxed(TxLedger::record_sent(self, sender, nonce, tx, keys).await) })
    }
    fn sent_for<'a>(&'a self, key: &'a str) -> LedgerFuture<'a, Vec<(u64, B256)>> {
        Box::pin(async move { boxed(TxLedger::sent_for(self, key).await) })
    }
    fn settle<'a>(&'a self, keys: &'a [String]) -> LedgerFuture<'a, ()> {
        Box::pin(async move { boxed(TxLedger::settle(self, keys).await) })
    }
}

/// An in-memory [`TxLedger`], for tests and for senders whose transactions need not survive a
/// restart.
#[derive(Debug, Default)]
pub struct MemLedger {
    rows: std::sync::Mutex<Vec<(String, String, u64, B256)>>,
}

impl TxLedger for MemLedger {
    type Error = std::convert::Infallible;

    async fn last_unsettled(&self, sender: &str) -> Result<Option<(u64, B256)>, Self::Error> {
        let rows = self.rows.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(rows.iter().filter(|r| r.1 == sender).max_by_key(|r| r.2).map(|r| (r.2, r.3)))
    }
    async fn unsettled_between(
        &self,
        sender: &str,
        from: u64,
        to: u64,
    ) -> Result<Vec<(u64, B256)>, Self::Error> {
        let rows = self.rows.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(rows
            .iter()
            .filter(|r| r.1 == sender && (from..to).contains(&r.2))
            .map(|r| (r.2, r.3))
            .collect())
    }
    async fn record_sent(
        &self,
        sender: &str,
        nonce: u64,
        tx: B256,
        keys: &[String],
    ) -> Result<(), Self::Error> {
        let mut rows = self.rows.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        rows.extend(keys.iter().map(|k| (k.clone(), sender.to_owned(), nonce, tx)));
        Ok(())
    }
    async fn sent_for(&self, key: &str) -> Result<Vec<(u64, B256)>, Self::Error> {
        let rows = self.rows.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(rows.iter().filter(|r| r.0 == key).map(|r| (r.2, r.3)).collect())
    }
    async fn settle(&self, keys: &[String]) -> Result<(), Self::Error> {
        self.rows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|r| !keys.contains(&r.0));
        Ok(())
    }
}

/// Hands out the sender's nonces one at a time (an alloy [`NonceManager`], the provider's nonce
/// filler): from the chain's pending count at first, or past the newest transaction of ours the
/// ledger holds if the node knows it; after a failed send, from the chain again.
#[derive(Clone)]
pub struct LedgerNonces {
    next: Arc<Mutex<Option<u64>>>,
    ledger: Arc<dyn DynLedger>,
}

impl std::fmt::Debug for LedgerNonces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LedgerNonces").finish_non_exhaustive()
    }
}

impl LedgerNonces {
    /// Forgets the next nonce: the next transaction asks the chain (and the ledger) again.
    pub async fn reset(&self) {
        *self.next.lock().await = None;
    }
}

#[async_trait::async_trait]
impl NonceManager for LedgerNonces {
    async fn get_next_nonce<P, N>(&self, provider: &P, address: Address) -> TransportResult<u64>
    where
        P: Provider<N>,
        N: Network,
    {
        let mut next = self.next.lock().await;
        let nonce = match *next {
            Some(n) => n,
            None => {
                let chain = provider.get_transaction_count(address).pending().await?;
                let sender = format!("{address:#x}");
                let last = self.ledger.last_unsettled(&sender).await.map_err(|e| {
                    alloy::transports::TransportErrorKind::custom_str(&format!("ledger: {e}"))
                })?;
                match last {
                    Some((nonce, hash))
                        if nonce >= chain
                            && provider.get_transaction_by_hash(hash).await?.is_some() =>
                    {
                        nonce + 1
                    }
                    _ => chain,
                }
            }
        };
        *next = Some(nonce + 1);
        Ok(nonce)
    }
}

/// How transactions are priced, replaced and confirmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxPolicy {
    /// Replace a transaction not mined after this long.
    pub bump_after: Duration,
    /// Raise both fees by this much per replacement (nodes want at least 10).
    pub bump_percent: u64,
    /// Never offer more than this per gas (wei); `None`: no cap.
    pub max_fee_per_gas: Option<u128>,
    /// Give up (the caller retries later; the ledger keeps the transaction) after this long.
    pub give_up_after: Duration,
    /// Blocks a transaction must be buried under before it counts (1: mined).
    pub confirmations: u64,
}

impl Default for TxPolicy {
    fn default() -> Self {
        Self {
            bump_after: Duration::from_secs(30),
            bump_percent: 15,
            max_fee_per_gas: None,
            give_up_after: Duration::from_secs(600),
            confirmations: 1,
        }
    }
}

/// `fee` raised by `percent`, rounded up, at least by one wei.
pub fn bumped(fee: u128, percent: u64) -> u128 {
    let raised = fee.saturating_mul(100 + u128::from(percent)).div_ceil(100);
    raised.max(fee.saturating_add(1))
}

type Fillers = JoinFill<
    JoinFill<JoinFill<Identity, ChainIdFiller>, NonceFiller<LedgerNonces>>,
    WalletFiller<EthereumWallet>,
>;

/// The transaction manager of one sending account.
#[derive(Clone)]
pub struct TxManager {
    provider: FillProvider<Fillers, RootProvider>,
    dyn_provider: DynProvider,
    sender: Address,
    nonces: LedgerNonces,
    policy: TxPolicy,
    fees: Arc<Mutex<Option<(tokio::time::Instant, Eip1559Estimation)>>>,
    /// Held from the nonce's assignment to the send, so nonces reach the node in order.
    sending: Arc<Mutex<()>>,
    /// The nonces of the transactions this manager is seeing through now: never gap-filled.
    waiting: Arc<std::sync::Mutex<std::collections::BTreeSet<u64>>>,
    /// Held while gaps are filled: one filling at a time.
    filling: Arc<Mutex<()>>,
    ledger: Arc<dyn DynLedger>,
}

/// Takes a nonce out of [`TxManager::waiting`] when its transaction is through (or given up).
struct Waiting(Arc<std::sync::Mutex<std::collections::BTreeSet<u64>>>, u64);

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&self.1);
    }
}

/// The most nonces one bump fills, lowest first: a larger gap is filled over several bumps.
const MAX_FILLERS: u64 = 16;

impl std::fmt::Debug for TxManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TxManager").field("sender", &self.sender).finish_non_exhaustive()
    }
}

impl TxManager {
    /// A manager for `key`'s account on `chain_id`, sending through every one of `endpoints`,
    /// keeping its transactions in `ledger`.
    pub fn new<L: TxLedger>(
        endpoints: &[String],
        chain_id: u64,
        key: PrivateKeySigner,
        policy: TxPolicy,
        ledger: Arc<L>,
    ) -> Result<Self, ChainError> {
        let mut transports = Vec::new();
        for url in endpoints {
            let parsed: reqwest::Url = url.parse().map_err(|_| ChainError::BadAnswer {
                endpoint: url.clone(),
                what: "not a URL".into(),
            })?;
            transports.push(Http::new(parsed));
        }
        let count = NonZeroUsize::new(transports.len().clamp(1, 3)).expect("at least one");
        let fallback = tower::ServiceBuilder::new()
            .layer(FallbackLayer::default().with_active_transport_count(count))
            .service(transports);
        let client = RpcClient::builder().transport(fallback, false);
        // Receipts are polled for; alloy's default for a local endpoint (250 ms) caps a sender
        // at four transactions a second. A tenth of a second costs a node nothing.
        client.set_poll_interval(Duration::from_millis(100));
        let sender = key.address();
        let ledger: Arc<dyn DynLedger> = ledger;
        let nonces = LedgerNonces { next: Arc::default(), ledger: Arc::clone(&ledger) };
        let provider = ProviderBuilder::new()
            .disable_recommended_fillers()
            .with_chain_id(chain_id)
            .with_nonce_management(nonces.clone())
            .wallet(EthereumWallet::from(key))
            .connect_client(client);
        let dyn_provider = provider.clone().erased();
        Ok(Self {
            provider,
            dyn_provider,
            sender,
            nonces,
            policy,
            fees: Arc::default(),
            sending: Arc::default(),
            waiting: Arc::default(),
            filling: Arc::default(),
            ledger,
        })
    }

    /// The sending account.
    pub fn sender(&self) -> Address {
        self.sender
    }

    /// The provider (every endpoint, with the wallet), for building calls.
    pub fn provider(&self) -> &DynProvider {
        &self.dyn_provider
    }

    /// Simulates `call`, then sends it and sees it through to its confirmations. `keys` name
    /// what it does (one per effect, such as `pinned/<contract>/<id>`): a transaction already
    /// sent for a lone key and still pending is waited for instead of being sent again. A call
    /// the simulation refuses comes back as [`TxError::WouldRevert`], for the caller to decode.
    pub async fn send<P: Provider, C: SolCall + Send + Sync + Unpin>(
        &self,
        call: CallBuilder<P, PhantomData<C>>,
        keys: &[String],
    ) -> Result<Box<TransactionReceipt>, TxError> {
        // Estimating the gas runs the call: a refused call shows here, before anything is sent.
        // The one gas limit serves every version: estimating a replacement would run it on top
        // of the pending original, which a contract may refuse as a repeat.
        let gas = call.estimate_gas().await.map_err(|source| TxError::WouldRevert { source })?;
        let request = call
            .into_transaction_request()
            .with_from(self.sender)
            .with_gas_limit(gas.saturating_add(gas / 5));
        let result = self.send_request(request, keys).await;
        // Mined (and confirmed), whether it succeeded or reverted: nothing is pending for these
        // keys any more. A reverted transaction kept in the ledger would be adopted again by
        // every later send for the same keys, which could then never succeed.
        if matches!(result, Ok(_) | Err(TxError::Reverted { .. })) {
            self.ledger.settle(keys).await.map_err(TxError::Ledger)?;
        }
        result
    }

    async fn send_request(
        &self,
        request: <Ethereum as Network>::TransactionRequest,
        keys: &[String],
    ) -> Result<Box<TransactionReceipt>, TxError> {
        let cap = self.policy.max_fee_per_gas.unwrap_or(u128::MAX);
        let fees = self.fees().await?;
        let (mut max_fee, mut tip) =
            (fees.max_fee_per_gas.min(cap), fees.max_priority_fee_per_gas.min(cap));
        let (nonce, mut hashes) = match self.adopt(keys).await? {
            Some(adopted) => adopted,
            None => {
                let versioned =
                    request.clone().max_fee_per_gas(max_fee).max_priority_fee_per_gas(tip);
                let (nonce, hash) = self.send_version(versioned, None, keys).await?;
                (nonce, vec![hash])
            }
        };
        // A new nonce was put in `waiting` by `send_version`, under the send lock; an adopted
        // one goes in here. Either way it comes out when this returns.
        self.waiting.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(nonce);
        let _waiting = Waiting(Arc::clone(&self.waiting), nonce);
        let started = tokio::time::Instant::now();
        loop {
            // Mined already (before a watcher could see it)?
            for hash in &hashes {
                let receipt = self
                    .dyn_provider
                    .get_transaction_receipt(*hash)
                    .await
                    .map_err(self.rpc("eth_getTransactionReceipt"))?;
                if let Some(receipt) = receipt
                    && let Some(confirmed) = self.confirmed(*hash, receipt).await?
                {
                    return confirmed;
                }
            }
            let left = self.policy.give_up_after.saturating_sub(started.elapsed());
            if left.is_zero() {
                // The nonce may still be used by a late version: ask the chain next time.
                self.nonces.reset().await;
                return Err(TxError::NotMined { nonce, hashes, after: self.policy.give_up_after });
            }
            // Wait for any version to be mined, until it is time to bump. The provider's block
            // watcher serves every pending transaction at once (no polling per transaction).
            let wait = self.policy.bump_after.min(left);
            let watchers = hashes.iter().map(|hash| {
                Box::pin(
                    PendingTransactionBuilder::new(self.dyn_provider.root().clone(), *hash)
                        .with_timeout(Some(wait))
                        .get_receipt(),
                )
            });
            if let Ok((receipt, _)) = futures_util::future::select_ok(watchers).await {
                let hash = receipt.transaction_hash;
                if let Some(confirmed) = self.confirmed(hash, receipt).await? {
                    return confirmed;
                }
                continue;
            }
            // Not mined for two bumps: it may wait on a nonce below it that nothing holds any
            // more.
            if started.elapsed() >= 2 * self.policy.bump_after {
                self.fill_gap(nonce).await;
            }
            if max_fee < cap {
                max_fee = bumped(max_fee, self.policy.bump_percent).min(cap);
                tip = bumped(tip, self.policy.bump_percent).min(max_fee);
                let versioned =
                    request.clone().max_fee_per_gas(max_fee).max_priority_fee_per_gas(tip);
                match self.send_version(versioned, Some(nonce), keys).await {
                    Ok((_, hash)) => {
                        info!(nonce, max_fee, tip, tx = %hash, "transaction not mined yet; replaced with higher fees");
                        hashes.push(hash);
                    }
                    // Often "nonce too low": an earlier version was just mined; the receipts
                    // tell on the next round.
                    Err(e) => debug!(nonce, error = %e, "replacement not accepted"),
                }
            }
        }
    }

    /// Fills the nonces below `nonce` with empty transfers to ourselves, when nothing of ours
    /// can hold them any more, so that the transaction at `nonce` can be mined. Such a gap is
    /// left when a reorg drops a mined transaction of ours and no node takes it back (anvil's
    /// `anvil_reorg` never does; nor does a node that lost its pool in a restart).
    ///
    /// Only where nothing of ours can be, so that a filler never takes the place of a
    /// transaction of ours: from the node's pending count (where its executable transactions of
    /// ours end) up to `nonce`, when this manager is seeing no other transaction through below
    /// `nonce`, and not at a nonce where the ledger holds an unsettled transaction of ours that
    /// the node knows. Fillers are priced at the
    /// node's current estimate, not at the waiting transaction's bumped fees; at most
    /// [`MAX_FILLERS`] go a call, lowest first; one call at a time. Best effort: what fails is
    /// tried again at the next bump. An endpoint that answers too low a count can make us send
    /// fillers the chain refuses as used nonces, nothing more.
    async fn fill_gap(&self, nonce: u64) {
        let Ok(_filling) = self.filling.try_lock() else { return };
        if let Err(e) = self.try_fill_gap(nonce).await {
            debug!(error = %e, "a nonce gap was not filled; tried again at the next bump");
        }
    }

    /// [`fill_gap`](Self::fill_gap)'s work; an error stops it until the next bump.
    async fn try_fill_gap(&self, nonce: u64) -> Result<(), TxError> {
        let pending = self
            .dyn_provider
            .get_transaction_count(self.sender)
            .pending()
            .await
            .map_err(self.rpc("eth_getTransactionCount"))?;
        if pending >= nonce {
            return Ok(());
        }
        // A nonce in the gap that the ledger holds a transaction of ours at, one the node
        // knows, is held (a row the node does not know is a send that never arrived or a
        // transaction dropped from every pool, as `adopt` takes it).
        let sender = format!("{:#x}", self.sender);
        let last = nonce.min(pending.saturating_add(MAX_FILLERS));
        let rows =
            self.ledger.unsettled_between(&sender, pending, last).await.map_err(TxError::Ledger)?;
        let mut held = std::collections::BTreeSet::new();
        for (n, hash) in rows {
            let known = self
                .dyn_provider
                .get_transaction_by_hash(hash)
                .await
                .map_err(self.rpc("eth_getTransactionByHash"))?;
            if known.is_some() {
                held.insert(n);
            }
        }
        let fees = self.fees().await?;
        let cap = self.policy.max_fee_per_gas.unwrap_or(u128::MAX);
        let transfer = <Ethereum as Network>::TransactionRequest::default()
            .with_from(self.sender)
            .with_to(self.sender)
            .max_fee_per_gas(fees.max_fee_per_gas.min(cap))
            .max_priority_fee_per_gas(fees.max_priority_fee_per_gas.min(cap));
        // A transfer's gas differs between chains (the FEVM charges more than 21,000); the same
        // for every filler.
        let gas = self
            .dyn_provider
            .estimate_gas(transfer.clone())
            .await
            .map_err(self.rpc("eth_estimateGas"))?;
        let transfer = transfer.with_gas_limit(gas);
        warn!(
            from = pending,
            to = last - 1,
            waiting = nonce,
            "nonces below a waiting transaction of ours are empty (a reorg dropped a transaction \
             of ours?): filling them with empty transfers to ourselves"
        );
        for n in (pending..last).filter(|n| !held.contains(n)) {
            let _sending = self.sending.lock().await;
            // Checked again where nonces are handed out: a send may have begun below `nonce`
            // since (after a failed send, nonces are asked of the chain again).
            let taken = self
                .waiting
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .range(..nonce)
                .next()
                .is_some();
            if taken {
                return Ok(());
            }
            let sent = match self.sign(transfer.clone().with_nonce(n)).await {
                Ok(envelope) => {
                    self.provider.send_tx_envelope(envelope).await.map(|p| *p.tx_hash())
                }
                Err(e) => Err(e),
            };
            match sent {
                Ok(hash) => info!(nonce = n, tx = %hash, "a nonce gap filled"),
                Err(e) => debug!(nonce = n, error = %e, "a filler was not accepted"),
            }
        }
        Ok(())
    }

    /// `request` with its chain id (and nonce, unless set) filled in, signed.
    async fn sign(
        &self,
        request: <Ethereum as Network>::TransactionRequest,
    ) -> TransportResult<alloy::consensus::TxEnvelope> {
        match self.provider.fill(request).await? {
            SendableTx::Envelope(envelope) => Ok(envelope),
            SendableTx::Builder(_) => unreachable!("the wallet filler signs every transaction"),
        }
    }

    /// Signs one version (the nonce from the filler, or `nonce` for a replacement), records it
    /// in the ledger, then sends it.
    async fn send_version(
        &self,
        request: <Ethereum as Network>::TransactionRequest,
        nonce: Option<u64>,
        keys: &[String],
    ) -> Result<(u64, B256), TxError> {
        let _sending = self.sending.lock().await;
        let fresh = nonce.is_none();
        let request = match nonce {
            Some(n) => request.nonce(n),
            None => request,
        };
        let envelope = self
            .sign(request)
            .await
            .map_err(|source| TxError::Send { nonce: nonce.unwrap_or_default(), source })?;
        let nonce = envelope.nonce();
        let hash = *envelope.tx_hash();
        let sender = format!("{:#x}", self.sender);
        // A new nonce is seen through from here (`send_request` takes it out when it is done);
        // inserted under the lock, so a gap filler never takes a nonce that is being sent.
        if fresh {
            self.waiting.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(nonce);
        }
        let sent = async {
            self.ledger.record_sent(&sender, nonce, hash, keys).await.map_err(TxError::Ledger)?;
            if let Err(source) = self.provider.send_tx_envelope(envelope).await {
                // Sent or not, the ledger has it (and keeps fillers below it away); the next
                // transaction asks the chain for its nonce.
                self.nonces.reset().await;
                return Err(TxError::Send { nonce, source });
            }
            Ok((nonce, hash))
        }
        .await;
        if sent.is_err() && fresh {
            self.waiting.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&nonce);
        }
        sent
    }

    /// A transaction sent for `keys` (one key: batches are not adopted) before, still in the
    /// node's pool or mined: its nonce and every version's hash.
    async fn adopt(&self, keys: &[String]) -> Result<Option<(u64, Vec<B256>)>, TxError> {
        let [key] = keys else { return Ok(None) };
        let sent = self.ledger.sent_for(key).await.map_err(TxError::Ledger)?;
        let Some(&(nonce, _)) = sent.last() else { return Ok(None) };
        let hashes: Vec<B256> = sent.iter().filter(|(n, _)| *n == nonce).map(|(_, h)| *h).collect();
        for hash in &hashes {
            let known = self
                .dyn_provider
                .get_transaction_by_hash(*hash)
                .await
                .map_err(self.rpc("eth_getTransactionByHash"))?;
            if known.is_some() {
                info!(%key, nonce, "a transaction sent before is still pending or mined; waiting for it");
                return Ok(Some((nonce, hashes)));
            }
        }
        // Dropped from every pool: forget it; a new transaction is made.
        self.ledger.settle(keys).await.map_err(TxError::Ledger)?;
        Ok(None)
    }

    fn rpc(
        &self,
        method: &'static str,
    ) -> impl Fn(alloy::transports::TransportError) -> ChainError {
        move |source| ChainError::Rpc {
            endpoint: "the transaction endpoints".into(),
            method,
            source,
        }
    }

    /// The node's fee estimate, asked at most once a second for every sender.
    async fn fees(&self) -> Result<Eip1559Estimation, TxError> {
        let mut cached = self.fees.lock().await;
        if let Some((at, fees)) = *cached
            && at.elapsed() < Duration::from_secs(1)
        {
            return Ok(fees);
        }
        let fees =
            self.dyn_provider.estimate_eip1559_fees().await.map_err(self.rpc("eth_feeHistory"))?;
        *cached = Some((tokio::time::Instant::now(), fees));
        Ok(fees)
    }

    /// The receipt of a mined transaction once `confirmations` deep (an error if it reverted),
    /// or `None` if a reorg took the transaction out of the chain meanwhile (it is waited for
    /// again).
    async fn confirmed(
        &self,
        hash: B256,
        receipt: TransactionReceipt,
    ) -> Result<Option<Result<Box<TransactionReceipt>, TxError>>, TxError> {
        let Some(mined_in) = receipt.block_number else { return Ok(None) };
        let outcome = |receipt: TransactionReceipt| {
            if receipt.status() {
                Ok(Box::new(receipt))
            } else {
                Err(TxError::Reverted { tx: hash })
            }
        };
        if self.policy.confirmations <= 1 {
            return Ok(Some(outcome(receipt)));
        }
        let needed = mined_in + self.policy.confirmations - 1;
        let deadline = tokio::time::Instant::now() + self.policy.give_up_after;
        while self.dyn_provider.get_block_number().await.map_err(self.rpc("eth_blockNumber"))?
            < needed
        {
            if tokio::time::Instant::now() > deadline {
                return Err(TxError::NotMined {
                    nonce: 0,
                    hashes: vec![hash],
                    after: self.policy.give_up_after,
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Read again: a reorg may have taken it out (or put it in another block).
        match self
            .dyn_provider
            .get_transaction_receipt(hash)
            .await
            .map_err(self.rpc("eth_getTransactionReceipt"))?
        {
            Some(receipt) => Ok(Some(outcome(receipt))),
            None => {
                warn!(%hash, "transaction dropped by a reorg; waiting for it again");
                Ok(None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::bumped;

    #[test]
    fn bumps_round_up_and_always_raise() {
        assert_eq!(bumped(100, 15), 115);
        assert_eq!(bumped(101, 15), 117);
        assert_eq!(bumped(1, 15), 2);
        assert_eq!(bumped(0, 15), 1);
        assert_eq!(bumped(u128::MAX, 15), u128::MAX);
    }
}
