//! Where providers serve retrievals: the operator's `url=`, or what a provider registered on
//! chain in a `ProviderRegistry`.
//!
//! ```text
//!   --provider f01000:url=…  ──────────────────────────────► ProviderUrls (trusted)
//!   RegistryReader, each round: providers of open orders' replicas without url=
//!     ──► ProviderRegistry.urlsOf (256 a call; a provider asked again after `refresh`)
//!     ──► check_registered (http(s), no user info, not an internal address)
//!     ──► ProviderUrls (registered)  ──► the prober and the cold reads
//! ```
//!
//! A registered URL is the provider's word, written by one of its miner's controlling
//! addresses (the contract checks that with the miner actor), and nothing more: it may name
//! anything. So it is read like a request's origins: through a client whose resolver keeps only
//! the addresses the providers' network policy permits (every internal range refused unless
//! `--provider-allow-net`, apart from the origins' `--allow-net`), with literal addresses
//! checked here, no proxy, no redirects, and every read bounded and checked as the operator's
//! providers' are. A provider that registers a wrong URL fails its own probes. The operator's `url=` wins
//! over a registered one.

use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use alloy::{primitives::Address, providers::DynProvider};
use estuary_contracts::ProviderRegistry;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{
    fetch::{
        NetPolicy,
        net::{checked_client, direct_client},
    },
    store::Store,
};

/// Most providers asked in one `urlsOf` call (the contract's `MAX_BATCH`).
const BATCH: usize = 256;
/// Most bytes of a registered URL (the contract's `MAX_URL_LENGTH`).
const MAX_URL: usize = 256;
/// Between the reader's rounds (a provider new to the orders is asked within one).
const ROUND: Duration = Duration::from_secs(15);

/// Where one provider serves retrievals.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ProviderUrl {
    /// The base URL (`{url}/piece/{cid}`, `{url}/ipfs/{cid}`).
    pub url: String,
    /// Whether the provider registered it (read under the network policy) rather than the
    /// operator configuring it (`url=`, trusted).
    pub registered: bool,
}

/// The providers' retrieval URLs: the operator's, and those read from the registry.
#[derive(Debug, Default)]
pub struct ProviderUrls {
    configured: HashMap<u64, String>,
    registered: RwLock<HashMap<u64, String>>,
    /// Whether a registry is read (then any provider may come to have a URL).
    reads_registry: bool,
}

impl ProviderUrls {
    /// The operator's `url=`s, and whether a registry is read for the other providers.
    pub fn new(configured: HashMap<u64, String>, reads_registry: bool) -> Self {
        Self { configured, registered: RwLock::default(), reads_registry }
    }

    /// Whether there is, or may come to be, any provider to read from.
    pub fn any(&self) -> bool {
        self.reads_registry || !self.configured.is_empty()
    }

    /// Where `provider` serves, if known.
    pub fn get(&self, provider: u64) -> Option<ProviderUrl> {
        if let Some(url) = self.configured.get(&provider) {
            return Some(ProviderUrl { url: url.clone(), registered: false });
        }
        let registered = self.registered.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        registered.get(&provider).map(|url| ProviderUrl { url: url.clone(), registered: true })
    }

    /// Whether `provider`'s URL is known.
    pub fn contains(&self, provider: u64) -> bool {
        self.get(provider).is_some()
    }

    /// Every provider whose URL is known.
    pub fn all(&self) -> Vec<(u64, ProviderUrl)> {
        let mut all: Vec<(u64, ProviderUrl)> = self
            .configured
            .iter()
            .map(|(p, url)| (*p, ProviderUrl { url: url.clone(), registered: false }))
            .collect();
        let registered = self.registered.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        all.extend(
            registered
                .iter()
                .filter(|(p, _)| !self.configured.contains_key(p))
                .map(|(p, url)| (*p, ProviderUrl { url: url.clone(), registered: true })),
        );
        all.sort_by_key(|(p, _)| *p);
        all
    }

    /// How many URLs the operator configured and how many were registered.
    pub fn counts(&self) -> (usize, usize) {
        let registered = self.registered.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        (self.configured.len(), registered.len())
    }

    /// Whether the operator configured `provider`'s URL.
    fn configured(&self, provider: u64) -> bool {
        self.configured.contains_key(&provider)
    }

    /// Records what `provider` registered (`None`: nothing usable).
    fn set_registered(&self, provider: u64, url: Option<String>) {
        let mut registered =
            self.registered.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        match url {
            Some(url) => registered.insert(provider, url),
            None => registered.remove(&provider),
        };
    }
}

/// Why a registered URL is not used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegisteredUrlError {
    /// Longer than the contract allows (a stand-in contract may not check).
    #[error("longer than {MAX_URL} bytes")]
    TooLong,
    /// Not an absolute `http` or `https` URL.
    #[error("not an http(s) URL: {0}")]
    NotHttp(String),
    /// Names a user or a password (a provider has no business passing credentials).
    #[error("names a user or password")]
    UserInfo,
    /// Has a query or a fragment (paths are appended to it).
    #[error("has a query or fragment")]
    QueryOrFragment,
    /// A literal address the network policy refuses (names are checked when resolved).
    #[error("{0}: an internal address (loopback, private, link-local, CGNAT or reserved)")]
    Internal(IpAddr),
}

/// `url` as a provider registered it, if the oracle may read from it under `policy`: the base
/// URL without a trailing slash.
pub fn check_registered(url: &str, policy: &NetPolicy) -> Result<String, RegisteredUrlError> {
    if url.len() > MAX_URL {
        return Err(RegisteredUrlError::TooLong);
    }
    let parsed =
        reqwest::Url::parse(url).map_err(|e| RegisteredUrlError::NotHttp(e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(RegisteredUrlError::NotHttp(format!("scheme {}", parsed.scheme())));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(RegisteredUrlError::UserInfo);
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(RegisteredUrlError::QueryOrFragment);
    }
    let host = parsed.host_str().ok_or_else(|| RegisteredUrlError::NotHttp("no host".into()))?;
    // A literal address (IPv6 in brackets); a name is checked by the resolver when read.
    let literal = host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>().ok();
    if let Some(ip) = literal.filter(|ip| !policy.permits(*ip)) {
        return Err(RegisteredUrlError::Internal(ip));
    }
    Ok(parsed.as_str().trim_end_matches('/').to_owned())
}

/// The HTTP clients for providers: the operator's (trusted) and the registered ones' (names
/// resolved under the providers' network policy, `--provider-allow-net`). Neither follows
/// redirects nor takes a proxy from the environment; both have `timeout`.
#[derive(Debug, Clone)]
pub struct ProviderClients {
    trusted: reqwest::Client,
    checked: reqwest::Client,
}

impl ProviderClients {
    /// Clients with `timeout` for a whole read, the registered ones' under `policy`.
    pub fn new(timeout: Duration, policy: Arc<NetPolicy>) -> Result<Self, reqwest::Error> {
        let connect = timeout.min(crate::deals::probes::CONNECT_TIMEOUT);
        Ok(Self {
            // The operator's URLs: no resolver check, but no proxy or redirects either.
            trusted: direct_client().connect_timeout(connect).timeout(timeout).build()?,
            checked: checked_client(policy).connect_timeout(connect).timeout(timeout).build()?,
        })
    }

    /// The client to read from `url` with.
    pub fn of(&self, url: &ProviderUrl) -> &reqwest::Client {
        if url.registered { &self.checked } else { &self.trusted }
    }
}

/// Reads the registry for the providers of the orders' replicas.
#[derive(Debug)]
pub struct RegistryReader {
    store: Store,
    registry: ProviderRegistry::ProviderRegistryInstance<DynProvider>,
    urls: Arc<ProviderUrls>,
    policy: Arc<NetPolicy>,
    refresh: Duration,
    /// When each provider was last asked.
    asked: HashMap<u64, Instant>,
    /// What each provider registered, as last read (a change is logged once).
    seen: HashMap<u64, String>,
}

impl RegistryReader {
    /// A reader of `registry` through `chain`, asking each provider again after `refresh`.
    pub fn new(
        store: Store,
        chain: DynProvider,
        registry: Address,
        urls: Arc<ProviderUrls>,
        policy: Arc<NetPolicy>,
        refresh: Duration,
    ) -> Self {
        Self {
            store,
            registry: ProviderRegistry::new(registry, chain),
            urls,
            policy,
            refresh,
            asked: HashMap::new(),
            seen: HashMap::new(),
        }
    }

    /// Runs until `shutdown`.
    pub async fn run(mut self, shutdown: CancellationToken) {
        info!(registry = %self.registry.address(), "reading providers' retrieval URLs from the registry");
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                result = self.round() => if let Err(e) = result {
                    warn!(error = %e, "provider registry round failed; retried");
                },
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(ROUND.min(self.refresh)) => {}
            }
        }
    }

    /// One round: the providers of open orders' replicas that have no `url=` and were not
    /// asked within `refresh`, asked. Returns how many were asked.
    pub async fn round(&mut self) -> Result<usize, String> {
        let held: HashSet<u64> = self
            .store
            .probe_targets()
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|t| t.provider)
            .filter(|p| !self.urls.configured(*p))
            .collect();
        // A provider that holds nothing any more is forgotten (asked again if it comes back).
        self.asked.retain(|p, _| held.contains(p));
        let gone: Vec<u64> = self.seen.keys().filter(|p| !held.contains(p)).copied().collect();
        for provider in gone {
            self.seen.remove(&provider);
            self.urls.set_registered(provider, None);
        }
        let now = Instant::now();
        let mut due: Vec<u64> = held
            .into_iter()
            .filter(|p| self.asked.get(p).is_none_or(|at| now.duration_since(*at) >= self.refresh))
            .collect();
        due.sort_unstable();
        for batch in due.chunks(BATCH) {
            let found = self
                .registry
                .urlsOf(batch.to_vec())
                .call()
                .await
                .map_err(|e| format!("ProviderRegistry.urlsOf: {e}"))?;
            if found.len() != batch.len() {
                return Err(format!(
                    "ProviderRegistry.urlsOf answered {} URLs for {} providers",
                    found.len(),
                    batch.len()
                ));
            }
            for (provider, url) in batch.iter().zip(found) {
                self.asked.insert(*provider, now);
                self.take(*provider, url);
            }
        }
        Ok(due.len())
    }

    /// Records what `provider` registered.
    fn take(&mut self, provider: u64, url: String) {
        let changed = self.seen.get(&provider) != Some(&url);
        let usable = if url.is_empty() {
            if changed {
                info!(provider, "provider registered no retrieval URL: not probed");
            }
            None
        } else {
            match check_registered(&url, &self.policy) {
                Ok(base) => {
                    if changed {
                        info!(provider, url = %base, "provider's registered retrieval URL");
                    }
                    Some(base)
                }
                Err(why) => {
                    if changed {
                        warn!(provider, %url, %why, "provider's registered URL refused: not probed");
                    }
                    None
                }
            }
        };
        self.seen.insert(provider, url);
        self.urls.set_registered(provider, usable);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_urls_are_checked() {
        let strict = NetPolicy::strict();
        let ok = |u: &str| check_registered(u, &strict);
        assert_eq!(ok("https://sp.example/").unwrap(), "https://sp.example");
        assert_eq!(
            ok("http://sp.example:8080/retrieval/").unwrap(),
            "http://sp.example:8080/retrieval"
        );
        assert_eq!(
            ok("https://203.0.113.9").unwrap_err(),
            RegisteredUrlError::Internal("203.0.113.9".parse().unwrap())
        );
        assert!(matches!(ok("http://127.0.0.1:3100"), Err(RegisteredUrlError::Internal(_))));
        assert!(matches!(ok("http://[::1]:3100"), Err(RegisteredUrlError::Internal(_))));
        assert!(matches!(ok("http://169.254.169.254/"), Err(RegisteredUrlError::Internal(_))));
        assert!(matches!(ok("http://10.0.0.1/"), Err(RegisteredUrlError::Internal(_))));
        assert_eq!(ok("http://1.1.1.1/").unwrap(), "http://1.1.1.1");
        assert!(matches!(ok("ftp://sp.example"), Err(RegisteredUrlError::NotHttp(_))));
        assert!(matches!(ok("file:///etc/passwd"), Err(RegisteredUrlError::NotHttp(_))));
        assert!(matches!(ok("sp.example"), Err(RegisteredUrlError::NotHttp(_))));
        assert_eq!(ok("http://me:secret@sp.example/"), Err(RegisteredUrlError::UserInfo));
        assert_eq!(ok("http://sp.example/?x=1"), Err(RegisteredUrlError::QueryOrFragment));
        assert_eq!(ok("http://sp.example/#x"), Err(RegisteredUrlError::QueryOrFragment));
        let long = format!("https://sp.example/{}", "a".repeat(MAX_URL));
        assert_eq!(ok(&long), Err(RegisteredUrlError::TooLong));
        let loopback = NetPolicy::allowing(vec!["127.0.0.0/8".parse().unwrap()]);
        assert_eq!(
            check_registered("http://127.0.0.1:3100", &loopback).unwrap(),
            "http://127.0.0.1:3100"
        );
    }

    #[test]
    fn the_operators_url_wins_and_a_withdrawn_one_goes() {
        let urls = ProviderUrls::new(HashMap::from([(1000, "http://op.example".into())]), true);
        urls.set_registered(1000, Some("http://sp.example".into()));
        urls.set_registered(1001, Some("http://other.example".into()));
        assert_eq!(
            urls.get(1000),
            Some(ProviderUrl { url: "http://op.example".into(), registered: false })
        );
        assert_eq!(
            urls.get(1001),
            Some(ProviderUrl { url: "http://other.example".into(), registered: true })
        );
        assert_eq!(urls.all().len(), 2);
        urls.set_registered(1001, None);
        assert!(!urls.contains(1001));
        assert!(urls.any());
        assert!(!ProviderUrls::new(HashMap::new(), false).any());
    }
}
