//! A chain with the contracts, an oracle process, and ways to poke them.

use std::{path::Path, process::Stdio, time::Duration};

use alloy::{
    network::EthereumWallet,
    primitives::{Address, Bytes},
    providers::{Provider, ProviderBuilder},
};
use estuary_chain::devnet::{self, LocalChain};
use estuary_contracts::EstuaryPinning;
use serde_json::Value;
use tokio::process::{Child, Command};

/// The shared local chain ([`LocalChain`]: anvil mining a block per transaction, the contracts
/// deployed), with what these tests do on it.
pub struct Chain(LocalChain);

impl std::ops::Deref for Chain {
    type Target = LocalChain;
    fn deref(&self) -> &LocalChain {
        &self.0
    }
}

impl Chain {
    /// anvil mining a block per transaction, with the contracts deployed.
    pub async fn start() -> Chain {
        Chain(LocalChain::start(None).await.expect("a local chain"))
    }

    /// A provider sending from account `index`.
    pub fn wallet(&self, index: usize) -> impl alloy::providers::Provider + use<> {
        ProviderBuilder::new()
            .wallet(EthereumWallet::from(self.signer(index)))
            .connect_http(self.anvil.endpoint_url())
    }

    /// The `DealClient`'s owner (the deployer, account 0) sends it `wei` and escrows them in
    /// the market, for its deals.
    pub async fn escrow_for_deals(&self, wei: alloy::primitives::U256) {
        use alloy::{providers::Provider, rpc::types::TransactionRequest};
        let client = self.deployment.contracts["DealClient"];
        let owner = self.wallet(0);
        let sent = TransactionRequest::default().to(client).value(wei);
        assert!(owner.send_transaction(sent).await.unwrap().get_receipt().await.unwrap().status());
        let dc = estuary_contracts::DealClient::new(client, &owner);
        assert!(mined!(dc.addMarketBalance(wei)).status());
    }

    /// The deployed DataDAO, made ready by its owner (the deployer, account 0): accounts
    /// `members` made members, a treasury of 3 FIL sent, and `terms` set when given. Returns
    /// its address.
    pub async fn datadao(
        &self,
        members: &[usize],
        terms: Option<estuary_contracts::DataDAO::OrderTerms>,
    ) -> Address {
        use alloy::{
            network::TransactionBuilder, primitives::U256, rpc::types::TransactionRequest,
        };
        let address = self.deployment.contracts["DataDAO"];
        let owner = self.wallet(0);
        let dao = estuary_contracts::DataDAO::new(address, &owner);
        if let Some(terms) = terms {
            assert!(mined!(dao.setOrderTerms(terms)).status());
        }
        for &member in members {
            assert!(mined!(dao.setMember(self.signer(member).address(), true)).status());
        }
        let treasury = TransactionRequest::default()
            .with_to(address)
            .with_value(U256::from(3_000_000_000_000_000_000u128));
        owner.send_transaction(treasury).await.unwrap().get_receipt().await.unwrap();
        address
    }

    /// A CID accepted by the DataDAO's vote as its proposal `id`: member `proposer` proposes
    /// `cid` (text) of `size` bytes, member `voter` votes for it, the vote period (300 s)
    /// passes, and `executor` executes it.
    pub async fn datadao_accept(
        &self,
        id: u64,
        cid: &str,
        size: u64,
        [proposer, voter, executor]: [usize; 3],
    ) {
        use alloy::primitives::U256;
        use estuary_contracts::DataDAO;
        let address = self.deployment.contracts["DataDAO"];
        let cid = Bytes::from(crate::oracle_pinning::cid_bytes(cid));
        let proposing = self.wallet(proposer);
        assert!(mined!(DataDAO::new(address, &proposing).createCIDProposal(cid, size)).status());
        let voting = self.wallet(voter);
        assert!(
            mined!(DataDAO::new(address, &voting).voteCIDProposal(U256::from(id), true)).status()
        );
        self.travel(301).await;
        let executing = self.wallet(executor);
        assert!(mined!(DataDAO::new(address, &executing).execute(U256::from(id))).status());
    }

    /// Moves the chain's clock `secs` seconds on and mines a block at the new time.
    pub async fn travel(&self, secs: u64) {
        use alloy::providers::Provider;
        let reader = ProviderBuilder::new().connect_http(self.anvil.endpoint_url());
        let _: Value = reader.raw_request("evm_increaseTime".into(), (secs,)).await.unwrap();
        let _: Value = reader.raw_request("evm_mine".into(), ()).await.unwrap();
    }

    /// Sends `pinToEstuary(cid)` from account `index`, paying the contract's fee; returns the
    /// request id.
    pub async fn pin(&self, index: usize, cid: &[u8]) -> u64 {
        let provider = self.wallet(index);
        let pinning = EstuaryPinning::new(self.deployment.pinning, provider);
        let fee = pinning.fee().call().await.expect("fee");
        assert!(fee > 0, "the local profile charges a pin fee");
        let receipt = pinning
            .pinToEstuary_0(Bytes::copy_from_slice(cid))
            .value(alloy::primitives::U256::from(fee))
            // Not the estimate: a report mined first can empty the fee escrow, and filling it
            // again costs more than the estimate saw (a zero slot written).
            .gas(200_000)
            .send()
            .await
            .expect("send")
            .get_receipt()
            .await
            .expect("receipt");
        let log = receipt
            .decoded_log::<EstuaryPinning::PinRequested>()
            .unwrap_or_else(|| panic!("no PinRequested in {receipt:?}"));
        log.data.requestId.try_into().unwrap()
    }
}

/// A CIDv1 (raw, sha2-256) whose digest is `n` repeated.
pub fn cid(n: u8) -> Vec<u8> {
    let mut v = vec![0x01, 0x55, 0x12, 0x20];
    v.extend([n; 32]);
    v
}

/// The variable that makes the test binary an oracle process (see `child`).
pub const CHILD_ARGS: &str = "ESTUARY_TEST_ORACLE";

pub struct OracleProcess {
    pub child: Child,
    pub url: String,
    pub token: String,
}

impl OracleProcess {
    /// Starts `estuary oracle run` against `chain`, with its database at `db`.
    pub async fn start(chain: &Chain, db: &Path) -> OracleProcess {
        Self::start_with(chain, db, &[]).await
    }

    /// [`start`](Self::start) with more arguments.
    pub async fn start_with(chain: &Chain, db: &Path, extra: &[String]) -> OracleProcess {
        Self::start_on(chain, &chain.anvil.endpoint(), db, extra).await
    }

    /// An oracle reading the chain through `rpc_url` (a proxy, say).
    pub async fn start_on(
        chain: &Chain,
        rpc_url: &str,
        db: &Path,
        extra: &[String],
    ) -> OracleProcess {
        // A port another test's process also found free may be taken before the oracle binds
        // it (each test runs in a process of its own): the oracle then exits at once, and is
        // started again on another port.
        for attempt in 1..=3 {
            let port = devnet::free_port().unwrap();
            match Self::start_at(chain, rpc_url, db, extra, port).await {
                Ok(oracle) => return oracle,
                Err(status) if attempt < 3 => {
                    eprintln!("the oracle exited during start-up ({status}); another port");
                }
                Err(status) => panic!("the oracle exited during start-up ({status})"),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// One start on `port`: the oracle once it answers `/health`, or how it exited first.
    async fn start_at(
        chain: &Chain,
        rpc_url: &str,
        db: &Path,
        extra: &[String],
        port: u16,
    ) -> Result<OracleProcess, std::process::ExitStatus> {
        let token = "test-token".to_owned();
        let mut args: Vec<String> = vec![
            "--rpc-url".into(),
            rpc_url.into(),
            "--pinning-address".into(),
            chain.deployment.pinning.to_string(),
            "--start-block".into(),
            chain.deployment.block.to_string(),
            "--confirmations".into(),
            "0".into(),
            "--poll-interval-ms".into(),
            "100".into(),
            "--db".into(),
            db.display().to_string(),
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            // The tests' origins are on loopback, which origins may not reach by default.
            "--allow-net".into(),
            "127.0.0.0/8,::1/128".into(),
        ];
        if !extra.iter().any(|a| a == "--data-dir") {
            // Next to the database, never the working directory.
            let data = db.parent().expect("the database is in a directory").join("oracle-data");
            args.extend(["--data-dir".into(), data.display().to_string()]);
        }
        args.extend(extra.iter().cloned());
        // This test binary, run again as an oracle (see `child`).
        let child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "child::oracle_process_entry", "--nocapture", "--test-threads", "1"])
            .env(CHILD_ARGS, serde_json::to_string(&args).unwrap())
            .env("ESTUARY_API_TOKEN", &token)
            .env("ESTUARY_LOG", "warn")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn the oracle");
        let mut oracle = OracleProcess { child, url: format!("http://127.0.0.1:{port}"), token };
        for _ in 0..300 {
            if let Some(status) = oracle.child.try_wait().unwrap() {
                return Err(status);
            }
            if oracle.get("/health").await.is_some_and(|s| s["status"] == "ok") {
                return Ok(oracle);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the oracle did not answer /health within 30 s")
    }

    pub async fn get(&self, path: &str) -> Option<Value> {
        let res = reqwest::Client::new()
            .get(format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .send()
            .await
            .ok()?;
        res.json().await.ok()
    }

    /// `/metrics`, as the operator reads it.
    pub async fn metrics(&self) -> String {
        let response = reqwest::Client::new()
            .get(format!("{}/metrics", self.url))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        response.text().await.unwrap()
    }

    /// Polls `path` until `ok` holds (30 s at most).
    pub async fn wait_for(&self, ok: impl Fn(&Value) -> bool, path: &str) -> Value {
        self.wait_for_within(ok, path, Duration::from_secs(30)).await
    }

    /// Polls `path` until `ok` holds, for `limit` at most.
    pub async fn wait_for_within(
        &self,
        ok: impl Fn(&Value) -> bool,
        path: &str,
        limit: Duration,
    ) -> Value {
        let mut last = None;
        for _ in 0..limit.as_millis().div_ceil(100) {
            if let Some(v) = self.get(path).await {
                if ok(&v) {
                    return v;
                }
                last = Some(v);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{path} never became ready; last answer: {last:?}");
    }

    /// SIGKILL: no chance to clean up.
    pub async fn kill(mut self) {
        self.child.kill().await.unwrap();
    }
}

/// Deterministic bytes that do not repeat (xorshift64), so no two chunks share a CID.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// `Pinned` events per request, and report transactions per sender.
pub async fn reports(
    chain: &Chain,
) -> (
    std::collections::HashMap<alloy::primitives::U256, usize>,
    std::collections::HashMap<Address, usize>,
) {
    use alloy::{providers::Provider, rpc::types::Filter, sol_types::SolEvent};
    let provider = ProviderBuilder::new().connect_http(chain.anvil.endpoint_url());
    let logs = provider
        .get_logs(
            &Filter::new()
                .address(chain.deployment.pinning)
                .event_signature(EstuaryPinning::Pinned::SIGNATURE_HASH)
                .from_block(0),
        )
        .await
        .unwrap();
    let (mut per_request, mut per_sender) =
        (std::collections::HashMap::new(), std::collections::HashMap::new());
    for log in &logs {
        let id = alloy::primitives::U256::from_be_slice(log.topics()[1].as_slice());
        *per_request.entry(id).or_default() += 1;
        let tx =
            provider.get_transaction_by_hash(log.transaction_hash.unwrap()).await.unwrap().unwrap();
        *per_sender.entry(tx.inner.signer()).or_default() += 1;
    }
    (per_request, per_sender)
}

impl Chain {
    /// anvil with the contracts, then a block every `every` (the SP agents count epochs).
    pub async fn start_mining(every: Duration) -> Chain {
        Chain(LocalChain::start(Some(every)).await.expect("a local chain"))
    }

    /// Mines blocks up to `epoch` at once (`anvil_mine`; one block if the head is there already).
    pub async fn mine_to(&self, epoch: u64) {
        let reader = ProviderBuilder::new().connect_http(self.anvil.endpoint_url());
        let head = reader.get_block_number().await.unwrap();
        let blocks = alloy::primitives::U256::from(epoch.saturating_sub(head).max(1));
        let _: serde_json::Value =
            reader.raw_request("anvil_mine".into(), (blocks,)).await.unwrap();
    }
}

/// The variable that makes the test binary an SP agent process (see `child`).
pub const SP_CHILD_ARGS: &str = "ESTUARY_TEST_SP";

/// An SP agent (`estuary-sp`, simulated sealer) for miner `1000 + index`, controlled by anvil
/// account `index + 1`, as `estuary dev` runs it: this test binary run again.
pub struct SpProcess {
    pub child: Child,
    pub url: String,
}

impl SpProcess {
    pub async fn start(chain: &Chain, index: usize, dir: &Path) -> SpProcess {
        Self::start_with(chain, index, dir, &[]).await
    }

    /// [`Self::start`] with `extra` flags.
    pub async fn start_with(chain: &Chain, index: usize, dir: &Path, extra: &[&str]) -> SpProcess {
        std::fs::create_dir_all(dir).unwrap();
        // As for the oracle: a port another test's process took first gets another.
        for attempt in 1..=3 {
            let port = devnet::free_port().unwrap();
            match Self::start_at(chain, index, dir, extra, port).await {
                Ok(sp) => return sp,
                Err(log) if attempt < 3 && log.contains("Address already in use") => {
                    eprintln!("the SP agent could not listen on {port}; another port");
                }
                Err(log) => panic!("the SP agent exited during start-up:\n{log}"),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// One start on `port`: the agent once it answers `/health`, or its log if it exited.
    async fn start_at(
        chain: &Chain,
        index: usize,
        dir: &Path,
        extra: &[&str],
        port: u16,
    ) -> Result<SpProcess, String> {
        let args: Vec<String> = [
            "--rpc-url",
            &chain.anvil.endpoint(),
            "--miner",
            &format!("f0{}", 1000 + index),
            "--start-block",
            &chain.deployment.block.to_string(),
            "--confirmations",
            "0",
            "--poll-interval-ms",
            "100",
            "--perpetual-address",
            &chain.deployment.contracts["PerpetualStorage"].to_string(),
            "--deal-client-address",
            &chain.deployment.contracts["DealClient"].to_string(),
            "--db",
            &dir.join("sp.sqlite").display().to_string(),
            "--data-dir",
            &dir.join("data").display().to_string(),
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--sealer",
            "sim",
            "--allow-private-origins",
            "--epoch-ms",
            "250",
            "--tick-ms",
            "100",
            "--seal-epochs",
            "8",
            "--sim-activate-after",
            "2",
        ]
        .iter()
        .chain(extra)
        .map(|s| (*s).to_owned())
        .collect();
        let log = std::fs::File::create(dir.join("agent.log")).unwrap();
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "child::sp_process_entry", "--nocapture", "--test-threads", "1"])
            .env(SP_CHILD_ARGS, serde_json::to_string(&args).unwrap())
            .env("ESTUARY_SP_KEY", chain.key_hex(index + 1))
            .env("ESTUARY_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("spawn an SP agent");
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        for _ in 0..300 {
            if let Some(status) = child.try_wait().unwrap() {
                let log = std::fs::read_to_string(dir.join("agent.log")).unwrap_or_default();
                return Err(format!("({status}) {log}"));
            }
            let up = http.get(format!("{url}/health")).send().await;
            if up.is_ok_and(|r| r.status().is_success()) {
                return Ok(SpProcess { child, url });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the SP agent did not answer /health within 30 s")
    }

    /// SIGKILL: the provider is gone.
    pub async fn kill(mut self) {
        self.child.kill().await.unwrap();
    }
}
