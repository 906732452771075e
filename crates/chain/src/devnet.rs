//! A local chain with Estuary's contracts on it: anvil, and the Foundry deploy script (which on
//! a local chain also installs the simulated market actor). The dev stack (`estuary dev`) and
//! the tests that need a chain use it.

use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, TcpListener},
    path::{Path, PathBuf},
};

use alloy::{
    node_bindings::{Anvil, AnvilInstance},
    primitives::Address,
    providers::{Provider, ProviderBuilder},
    signers::local::PrivateKeySigner,
};
use serde::Deserialize;

/// Why the local chain could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DevnetError {
    /// A port, file or process could not be had.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// anvil did not start.
    #[error("starting anvil ({path}): {reason}; run `npm ci` at the repository root")]
    Anvil {
        /// The binary.
        path: String,
        /// Why.
        reason: String,
    },
    /// The deploy script failed, hung, or wrote nothing usable.
    #[error("the deploy script {0}")]
    Deploy(String),
    /// The chain could not be asked whether the contracts are there.
    #[error("checking the deployment: {0}")]
    Rpc(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> DevnetError {
    let what = what.into();
    move |source| DevnetError::Io { what, source }
}

/// The repository root (two levels above this crate), where `node_modules` and `contracts`
/// live.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
}

/// Finds a Foundry tool (`anvil`, `forge`, `cast`): `$ESTUARY_<TOOL>`, then the npm package's
/// binary under the repository's `node_modules`, then `PATH`.
pub fn foundry_tool(name: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(format!("ESTUARY_{}", name.to_uppercase())) {
        return PathBuf::from(p);
    }
    let bundled =
        repo_root().join(format!("node_modules/@foundry-rs/{name}-linux-amd64/bin/{name}"));
    if bundled.exists() { bundled } else { PathBuf::from(name) }
}

/// A free TCP port on 127.0.0.1 (free when asked; bind it soon), chosen at random below the
/// kernel's ephemeral range.
///
/// Between this call and the caller's bind, the port is nobody's. A port from the ephemeral
/// range (what binding port 0 gives) is also what every outgoing connection takes as its local
/// port, and the tests and `estuary dev` make many: one of them took an oracle's port before
/// the oracle bound it (`cannot listen on 127.0.0.1:41605`, a failed end-to-end run). Below the
/// range only an explicit bind takes a port, and another caller of this function picks the
/// same one in 1 of about 12,000 (within one process, never: a port is handed out once). If
/// the range leaves no room below it, any free port.
pub fn free_port() -> Result<u16, DevnetError> {
    use rand::Rng;
    static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let (low, _) = ephemeral_range();
    if low > PORT_FLOOR + 1_000 {
        let mut rng = rand::rng();
        let mut given = GIVEN.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for _ in 0..64 {
            let port = rng.random_range(PORT_FLOOR..low);
            if !given.contains(&port) && TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
                given.insert(port);
                return Ok(port);
            }
        }
    }
    let listener =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(io("finding a free port"))?;
    Ok(listener.local_addr().map_err(io("finding a free port"))?.port())
}

/// The lowest port [`free_port`] picks (ports below the ephemeral range, from here).
const PORT_FLOOR: u16 = 20_000;

/// The kernel's ephemeral port range (Linux's `ip_local_port_range`; its default elsewhere),
/// read once.
fn ephemeral_range() -> (u16, u16) {
    static RANGE: std::sync::OnceLock<(u16, u16)> = std::sync::OnceLock::new();
    *RANGE.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .ok()
            .and_then(|s| {
                let mut it = s.split_whitespace().map(|n| n.parse::<u16>().ok());
                Some((it.next()??, it.next()??))
            })
            .unwrap_or((32_768, 60_999))
    })
}

/// Starts anvil on 127.0.0.1. `block_time` of `None` mines a block per transaction. The states
/// of older blocks that anvil writes to disk once it holds many (about half a gigabyte on a
/// long-running chain of ours) go to `cache` (`--cache-path`), which the caller removes: in
/// anvil's default place, `~/.foundry/anvil/tmp`, an anvil that is killed leaves them for good.
pub fn start_anvil(
    port: Option<u16>,
    block_time: Option<u64>,
    cache: &std::path::Path,
) -> Result<AnvilInstance, DevnetError> {
    let port = match port {
        Some(0) | None => free_port()?,
        Some(p) => p,
    };
    let mut anvil = Anvil::at(foundry_tool("anvil"))
        .port(port)
        .arg("--host")
        .arg("127.0.0.1")
        .arg("--cache-path")
        .arg(cache.as_os_str());
    if let Some(secs) = block_time {
        anvil = anvil.block_time(secs);
    }
    anvil.try_spawn().map_err(|e| DevnetError::Anvil {
        path: foundry_tool("anvil").display().to_string(),
        reason: e.to_string(),
    })
}

/// Switches `rpc_url`'s anvil from mining on every transaction to mining a block every `secs`
/// seconds (`evm_setIntervalMining`).
///
/// Deploy on an automining chain, then switch: the deploy script gives the simulated actors
/// their code with `anvil_setCode`, and anvil's interval miner can drop such a write when it
/// lands while a block is being mined (seen as `forge script` finding no code at `0xff…05`, or
/// its on-chain simulation of `registerMiner` reverting, in about one stack start in five under
/// load).
pub async fn set_interval_mining(rpc_url: &str, secs: u64) -> Result<(), DevnetError> {
    let url = rpc_url.parse().map_err(|_| DevnetError::Rpc(format!("bad RPC URL {rpc_url}")))?;
    let provider = ProviderBuilder::new().connect_http(url);
    provider
        .raw_request::<_, serde_json::Value>("evm_setIntervalMining".into(), (secs,))
        .await
        .map_err(|e| DevnetError::Rpc(format!("evm_setIntervalMining: {e}")))?;
    Ok(())
}

/// How long [`deploy`] lets the Foundry deploy script run.
pub const DEPLOY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(180);

/// What [`deploy`] put on the chain.
#[derive(Debug, Clone)]
pub struct Deployment {
    /// `EstuaryPinning`.
    pub pinning: Address,
    /// Every deployed contract by name (`EstuaryPinning`, `PerpetualStorage`, `DealClient`,
    /// `EstuaryOracle`, `DataDAO`, `DealStateView`, `ProviderRegistry`).
    pub contracts: BTreeMap<String, Address>,
    /// The block before the deployment: where watchers start.
    pub block: u64,
}

/// The deployment file `contracts/script/Deploy.s.sol` writes.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeployOutput {
    start_block: u64,
    #[serde(rename = "EstuaryPinning")]
    pinning: Address,
    #[serde(rename = "PerpetualStorage")]
    perpetual: Address,
    #[serde(rename = "DealClient")]
    deal_client: Address,
    #[serde(rename = "EstuaryOracle")]
    oracle: Address,
    #[serde(rename = "DataDAO")]
    dao: Address,
    #[serde(rename = "DealStateView")]
    deal_state_view: Address,
    #[serde(rename = "ProviderRegistry")]
    provider_registry: Address,
}

/// Deploys every Estuary contract with `signer` by running the Foundry deploy script
/// (`contracts/script/Deploy.s.sol`). `operator` becomes the contracts' operator (the
/// oracle's account).
pub async fn deploy(
    rpc_url: &str,
    signer: &PrivateKeySigner,
    operator: Address,
) -> Result<Deployment, DevnetError> {
    let contracts_dir = repo_root().join("contracts");
    // A name of its own, so that stacks running side by side do not share the output file.
    let name = format!("dev-{}-{}", std::process::id(), rand::random::<u32>());
    let out_file = contracts_dir.join("deployments").join(format!("{name}.json"));
    let run = tokio::process::Command::new(foundry_tool("forge"))
        .current_dir(&contracts_dir)
        .args(["script", "script/Deploy.s.sol", "--broadcast", "--rpc-url", rpc_url])
        .arg("--private-key")
        .arg(format!("0x{}", alloy::hex::encode(signer.to_bytes())))
        .env("ESTUARY_OPERATOR", operator.to_string())
        .env("ESTUARY_DEPLOY_NAME", &name)
        .kill_on_drop(true)
        .output();
    // `forge script` is known to wait for receipts forever now and then (foundry-rs/foundry
    // #6796, #10630); a deployment takes seconds, so one that has not ended in this time has hung
    // and is killed (`kill_on_drop`) instead of stalling the caller.
    let output = tokio::time::timeout(DEPLOY_TIMEOUT, run)
        .await
        .map_err(|_| {
            DevnetError::Deploy(format!(
                "did not finish within {DEPLOY_TIMEOUT:?} and was stopped; the chain may hold part of the deployment"
            ))
        })?
        .map_err(io(format!("running {}", foundry_tool("forge").display())))?;
    if !output.status.success() {
        let log = String::from_utf8_lossy(&output.stdout);
        let err = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = log.lines().chain(err.lines()).rev().take(20).collect();
        return Err(DevnetError::Deploy(format!(
            "failed ({}):\n{}",
            output.status,
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        )));
    }
    let text = std::fs::read_to_string(&out_file)
        .map_err(io(format!("reading {}", out_file.display())))?;
    let _ = std::fs::remove_file(&out_file);
    let out: DeployOutput = serde_json::from_str(&text)
        .map_err(|e| DevnetError::Deploy(format!("wrote an unreadable deployment file: {e}")))?;
    let url = rpc_url.parse().map_err(|_| DevnetError::Rpc(format!("bad RPC URL {rpc_url}")))?;
    let provider = ProviderBuilder::new().connect_http(url);
    let contracts = BTreeMap::from([
        ("EstuaryPinning".to_owned(), out.pinning),
        ("PerpetualStorage".to_owned(), out.perpetual),
        ("DealClient".to_owned(), out.deal_client),
        ("EstuaryOracle".to_owned(), out.oracle),
        ("DataDAO".to_owned(), out.dao),
        ("DealStateView".to_owned(), out.deal_state_view),
        ("ProviderRegistry".to_owned(), out.provider_registry),
    ]);
    for (name, address) in &contracts {
        let code =
            provider.get_code_at(*address).await.map_err(|e| DevnetError::Rpc(e.to_string()))?;
        if code.is_empty() {
            return Err(DevnetError::Deploy(format!("left no code at {address} ({name})")));
        }
    }
    Ok(Deployment { pinning: out.pinning, contracts, block: out.start_block })
}

/// How long [`LocalChain::start`] gives one deployment (a deployment takes seconds; forge's
/// receipt wait has been seen to hang).
pub const TEST_DEPLOY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// anvil with Estuary's contracts deployed (and the simulated network, miners f01000–f01002
/// controlled by accounts 1–3): the chain every test that needs one starts. The deployment runs
/// while anvil mines one block per transaction (see [`set_interval_mining`]); with a block time,
/// blocks then also come on a timer (`evm_mine`, so sub-second times work). Dropping it stops
/// anvil.
#[derive(Debug)]
pub struct LocalChain {
    /// The anvil process.
    pub anvil: AnvilInstance,
    /// What the deploy script put on it.
    pub deployment: Deployment,
    miner: Option<tokio::task::JoinHandle<()>>,
    /// Where anvil writes older states; removed once anvil is stopped (fields drop in order).
    _cache: tempfile::TempDir,
}

impl Drop for LocalChain {
    fn drop(&mut self) {
        if let Some(miner) = &self.miner {
            miner.abort();
        }
    }
}

impl LocalChain {
    /// Starts anvil and deploys; then, with `block_time`, mines a block every `block_time` too.
    /// A deployment that fails or takes longer than [`TEST_DEPLOY_TIMEOUT`] (forge's receipt
    /// wait has been seen to hang) is tried again on a fresh chain, up to three times, so a
    /// test fails for what it tests.
    pub async fn start(block_time: Option<std::time::Duration>) -> Result<Self, DevnetError> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let cache = tempfile::Builder::new()
                .prefix("estuary-anvil-")
                .tempdir()
                .map_err(io("making anvil's cache directory".to_owned()))?;
            let anvil = start_anvil(None, None, cache.path())?;
            let signer: PrivateKeySigner = anvil.keys()[0].clone().into();
            let operator = *anvil.addresses().last().ok_or_else(|| DevnetError::Anvil {
                path: foundry_tool("anvil").display().to_string(),
                reason: "no accounts".into(),
            })?;
            // A test's chain gets less time than `DEPLOY_TIMEOUT`: a hung forge is stopped
            // (dropping the future kills it) and the deployment tried again on a fresh chain.
            let attempt = tokio::time::timeout(
                TEST_DEPLOY_TIMEOUT,
                deploy(&anvil.endpoint(), &signer, operator),
            )
            .await
            .unwrap_or_else(|_| {
                Err(DevnetError::Deploy(format!(
                    "did not finish within {TEST_DEPLOY_TIMEOUT:?} and was stopped"
                )))
            });
            match attempt {
                Ok(deployment) => {
                    let miner = block_time.map(|every| {
                        let reader =
                            ProviderBuilder::new().connect_http(anvil.endpoint_url()).erased();
                        tokio::spawn(async move {
                            let mut tick = tokio::time::interval(every);
                            loop {
                                tick.tick().await;
                                let _ = reader
                                    .raw_request::<_, serde_json::Value>("evm_mine".into(), ())
                                    .await;
                            }
                        })
                    });
                    return Ok(Self { anvil, deployment, miner, _cache: cache });
                }
                Err(e) if attempts < 3 => {
                    tracing::warn!(error = %e, "deployment failed; once more on a fresh chain");
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Account `index`'s key (anvil's well-known dev keys).
    pub fn signer(&self, index: usize) -> PrivateKeySigner {
        self.anvil.keys()[index].clone().into()
    }

    /// Account `index`'s key, hex without `0x`.
    pub fn key_hex(&self, index: usize) -> String {
        alloy::hex::encode(self.signer(index).to_bytes())
    }

    /// Account `index`'s address.
    pub fn address(&self, index: usize) -> Address {
        self.anvil.addresses()[index]
    }

    /// The contracts' operator key (anvil's last account), hex without `0x`.
    pub fn operator_key(&self) -> String {
        self.key_hex(self.anvil.keys().len() - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_bindable_and_outside_the_ephemeral_range() {
        let (low, high) = ephemeral_range();
        assert!(low <= high, "ip_local_port_range read as {low}..{high}");
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..20 {
            let port = free_port().unwrap();
            if low > PORT_FLOOR + 1_000 {
                assert!((PORT_FLOOR..low).contains(&port), "{port} is not below {low}");
                assert!(seen.insert(port), "{port} was handed out twice");
            }
            TcpListener::bind((Ipv4Addr::LOCALHOST, port)).unwrap();
        }
    }
}
