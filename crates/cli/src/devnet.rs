//! A local chain with Estuary's contracts on it.

use std::{
    net::{Ipv4Addr, TcpListener},
    path::{Path, PathBuf},
    time::Duration,
};

use alloy::{
    network::EthereumWallet,
    node_bindings::{Anvil, AnvilInstance},
    primitives::Address,
    providers::{Provider, ProviderBuilder},
    signers::local::PrivateKeySigner,
};
use anyhow::{Context, Result, bail};
use estuary_contracts::EstuaryPinning;

/// The repository root (two levels above this crate), where `node_modules` and `www` live.
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

/// A free TCP port on 127.0.0.1 (free when asked; bind it soon).
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()?.port())
}

/// Starts anvil on 127.0.0.1. `block_time` of `None` mines a block per transaction.
pub fn start_anvil(port: Option<u16>, block_time: Option<u64>) -> Result<AnvilInstance> {
    let port = match port {
        Some(0) | None => free_port()?,
        Some(p) => p,
    };
    let mut anvil = Anvil::at(foundry_tool("anvil")).port(port).arg("--host").arg("127.0.0.1");
    if let Some(secs) = block_time {
        anvil = anvil.block_time(secs);
    }
    anvil.try_spawn().with_context(|| {
        format!(
            "starting anvil ({}); run `npm ci` at the repository root",
            foundry_tool("anvil").display()
        )
    })
}

/// What [`deploy`] put on the chain.
#[derive(Debug, Clone, Copy)]
pub struct Deployment {
    /// `EstuaryPinning`.
    pub pinning: Address,
    /// Block of the deployment: where watchers start.
    pub block: u64,
}

/// Deploys Estuary's contracts with `signer`.
pub async fn deploy(rpc_url: &str, signer: PrivateKeySigner) -> Result<Deployment> {
    let provider = ProviderBuilder::new()
        .wallet(EthereumWallet::from(signer))
        .connect_http(rpc_url.parse().context("RPC URL")?);
    let receipt = EstuaryPinning::deploy_builder(&provider)
        .send()
        .await
        .context("sending the EstuaryPinning deployment")?
        .with_timeout(Some(Duration::from_secs(60)))
        .get_receipt()
        .await
        .context("waiting for the EstuaryPinning deployment")?;
    let Some(pinning) = receipt.contract_address else {
        bail!("deployment receipt has no address")
    };
    let block = receipt.block_number.context("deployment receipt has no block")?;
    if provider.get_code_at(pinning).await?.is_empty() {
        bail!("no code at {pinning} after deployment");
    }
    Ok(Deployment { pinning, block })
}
