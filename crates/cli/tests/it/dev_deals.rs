//! The local stack as `scripts/run` starts it (`estuary dev`: anvil with the contracts, the
//! oracle, three SP agents), used the way a person does: a file added with `estuary add --car`,
//! uploaded (tus) and pinned through the Pinning Service API ends with three active replicas at
//! three different SPs — the oracle made the `PerpetualStorage` order itself, the agents claimed,
//! fetched the CAR from the oracle's `/piece/{pieceCid}`, verified it, published and activated
//! their deals — and the chain, `/deals`, `/pins/{id}` and the oracle's piece agree.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use alloy::{
    primitives::{Address, U256},
    providers::ProviderBuilder,
};
use estuary_contracts::PerpetualStorage;
use estuary_piece::PieceCid;
use nix::{sys::signal, unistd::Pid};
use serde_json::{Value, json};
use tokio::process::{Child, Command};

use crate::support::noise;

/// `estuary dev`, stopped with SIGTERM (so it stops its own children) when dropped.
struct Dev {
    child: Child,
    log: std::path::PathBuf,
}

impl Drop for Dev {
    fn drop(&mut self) {
        if let Some(pid) = self.child.id() {
            let _ = signal::kill(Pid::from_raw(pid as i32), signal::Signal::SIGTERM);
            for _ in 0..100 {
                if self.child.try_wait().ok().flatten().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// Spawns `estuary dev` in `dir` (a stand-in dapp, the state directory, the log) on free ports
/// but the oracle's, `oracle_port` ("0": free too); returns the child, its log and its state
/// directory.
fn spawn_dev(dir: &Path, oracle_port: &str, extra: &[&str]) -> (Child, PathBuf, PathBuf) {
    // Canonical, as `estuary dev` hands it to its children (tests look for it in their
    // command lines).
    let dir = &dir.canonicalize().unwrap();
    let dist = dir.join("dist");
    std::fs::create_dir_all(&dist).unwrap();
    std::fs::write(dist.join("index.html"), "<!doctype html><title>test</title>").unwrap();
    let state = dir.join("state");
    let log = dir.join("dev.log");
    let child = Command::new(env!("CARGO_BIN_EXE_estuary"))
        .args(["dev", "--anvil-port", "0", "--oracle-port", oracle_port, "--dapp-port", "0"])
        .args(["--sp-port", "0", "--block-time", "1"])
        .args(extra)
        .arg("--state-dir")
        .arg(&state)
        .arg("--www-dist")
        .arg(&dist)
        .env("ESTUARY_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    (child, log, state)
}

impl Dev {
    async fn start(dir: &Path, extra: &[&str]) -> (Dev, Value) {
        let (mut child, log, state) = spawn_dev(dir, "0", extra);
        for _ in 0..1200 {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("estuary dev exited ({status}):\n{}", tail(&log));
            }
            if let Ok(text) = std::fs::read_to_string(state.join("dev.json"))
                && let Ok(info) = serde_json::from_str::<Value>(&text)
            {
                return (Dev { child, log }, info);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("estuary dev did not start:\n{}", tail(&log));
    }
}

fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Uploads `car` through tus with `token`; returns the root the oracle imported.
async fn upload(client: &reqwest::Client, oracle: &str, token: &str, car: &[u8]) -> String {
    let created = client
        .post(format!("{oracle}/uploads"))
        .bearer_auth(token)
        .header("tus-resumable", "1.0.0")
        .header("upload-length", car.len())
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let location = created.headers()["location"].to_str().unwrap().to_owned();
    let done = client
        .patch(format!("{oracle}{location}"))
        .bearer_auth(token)
        .header("tus-resumable", "1.0.0")
        .header("upload-offset", 0)
        .header("content-type", "application/offset+octet-stream")
        .body(car.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), 204);
    done.headers()["upload-root"].to_str().unwrap().to_owned()
}

/// What [`three_replicas`] leaves: the stack, its `dev.json`, the CAR's path, the pin's root,
/// piece and request id, and the order with three active replicas.
struct Placed {
    dev: Dev,
    info: Value,
    car_path: std::path::PathBuf,
    root: String,
    piece: String,
    requestid: String,
    order: Value,
}

/// `estuary dev` with `extra`; a person's file added with the CLI, uploaded and pinned; waits
/// (three minutes at most) for its order to have three active replicas.
async fn three_replicas(dir: &Path, extra: &[&str]) -> Placed {
    let (dev, info) = Dev::start(dir, extra).await;
    let oracle = info["oracle_url"].as_str().unwrap().to_owned();
    let token = info["api_token"].as_str().unwrap().to_owned();

    // A person's file, its CAR and piece computed by the CLI.
    let file = dir.join("photo.bin");
    std::fs::write(&file, noise(700_000, 17)).unwrap();
    let car_path = dir.join("photo.car");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_estuary"))
        .args(["add", file.to_str().unwrap(), "--json", "--car", car_path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let added: Value = serde_json::from_slice(&out.stdout).unwrap();
    let (root, piece) = (added["root"].as_str().unwrap(), added["piece_cid"].as_str().unwrap());

    let client = reqwest::Client::new();
    assert_eq!(upload(&client, &oracle, &token, &std::fs::read(&car_path).unwrap()).await, root);
    let pin: Value = client
        .post(format!("{oracle}/pins"))
        .bearer_auth(&token)
        .json(&json!({ "cid": root, "name": "photo" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let requestid = pin["requestid"].as_str().unwrap().to_owned();

    // Three active replicas, at three SPs, within three minutes.
    let mut order = Value::Null;
    for _ in 0..360 {
        let deals: Value =
            client.get(format!("{oracle}/deals")).send().await.unwrap().json().await.unwrap();
        if let Some(first) = deals["results"].as_array().and_then(|r| r.first())
            && first["replicas_active"] == 3
        {
            order = first.clone();
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(!order.is_null(), "no order with three active replicas:\n{}", tail(&dev.log));
    Placed { dev, info, car_path, root: root.to_owned(), piece: piece.to_owned(), requestid, order }
}

/// When the oracle's port is held by something that accepts connections and never answers (its
/// port taken between its choice and its bind, seen once in an end-to-end run), `estuary dev`
/// stops with an error, and stops anvil, instead of waiting for the oracle for good.
#[tokio::test(flavor = "multi_thread")]
async fn a_taken_oracle_port_stops_the_stack_with_an_error() {
    let dir = tempfile::tempdir().unwrap();
    // Listening (the kernel completes connections), never accepting, never answering.
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port().to_string();
    let (mut child, log, state) = spawn_dev(dir.path(), &port, &[]);
    // Up to three deployments (`estuary dev` makes a hung one again), then the oracle's start.
    let status = tokio::time::timeout(Duration::from_secs(240), child.wait())
        .await
        .unwrap_or_else(|_| panic!("estuary dev did not stop:\n{}", tail(&log)))
        .unwrap();
    assert!(!status.success(), "estuary dev exited successfully:\n{}", tail(&log));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("exited during start-up"), "{}", tail(&log));
    // Nothing of the run is left: dev.json was never written, and the oracle's secrets (written
    // before it started) are gone.
    for file in ["dev.json", "operator.key", "api.token"] {
        assert!(!state.join(file).exists(), "{file} was left");
    }
    // Its children went with it (anvil's cache is in the state directory).
    let left = running_in(&state, Duration::from_secs(5)).await;
    assert!(left.is_empty(), "still running: {left:?}");
    drop(held);
}

/// A second `estuary dev` on the state directory of one that runs stops at once and says why,
/// and leaves the first alone: its `dev.json`, its databases and its oracle stay.
#[tokio::test(flavor = "multi_thread")]
async fn a_second_stack_on_the_same_state_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (dev, info) = Dev::start(dir.path(), &[]).await;
    let state = dir.path().canonicalize().unwrap().join("state");
    let dev_json = std::fs::read(state.join("dev.json")).unwrap();
    let second_log = dir.path().join("second.log");
    let second = Command::new(env!("CARGO_BIN_EXE_estuary"))
        .args(["dev", "--anvil-port", "0", "--oracle-port", "0", "--dapp-port", "0"])
        .args(["--sp-port", "0", "--state-dir"])
        .arg(&state)
        .arg("--www-dist")
        .arg(dir.path().join("dist"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&second_log).unwrap())
        .kill_on_drop(true)
        .status();
    let status = tokio::time::timeout(Duration::from_secs(30), second)
        .await
        .expect("the second estuary dev did not stop")
        .unwrap();
    let said = std::fs::read_to_string(&second_log).unwrap();
    assert!(!status.success(), "{said}");
    assert!(said.contains("another `estuary dev` is using"), "{said}");
    assert_eq!(std::fs::read(state.join("dev.json")).unwrap(), dev_json, "the first's dev.json");
    assert!(state.join("oracle.sqlite").exists(), "the first's database");
    let oracle = info["oracle_url"].as_str().unwrap();
    let health = reqwest::get(format!("{oracle}/health")).await.unwrap();
    assert!(health.status().is_success(), "the first's oracle still answers");
    drop(dev);
}

/// The command lines of processes that name `state` (the stack's children do: anvil's cache,
/// the oracle's and the agents' databases), once none is left or after `wait`.
async fn running_in(state: &Path, wait: Duration) -> Vec<String> {
    let state_arg = state.to_string_lossy().into_owned();
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let left: Vec<String> = std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
            .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
            .filter(|c| c.contains(&state_arg))
            .collect();
        if left.is_empty() || tokio::time::Instant::now() > deadline {
            return left;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Ctrl-C while the stack starts (here during the contracts' deployment) stops it there:
/// anvil goes, the oracle is never started, nothing is left running and no `dev.json` is written.
#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_during_start_up_stops_the_stack_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, log, state) = spawn_dev(dir.path(), "0", &[]);
    // Anvil is up (its cache is in the state directory; `estuary dev` itself names only the
    // directory) before the deployment, which takes seconds.
    let started = tokio::time::Instant::now();
    while running_in(&state.join("anvil-cache"), Duration::ZERO).await.is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "anvil did not start:\n{}",
            tail(&log)
        );
        assert!(child.try_wait().unwrap().is_none(), "estuary dev exited:\n{}", tail(&log));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!state.join("dev.json").exists(), "already up: the test is too late");
    signal::kill(Pid::from_raw(child.id().unwrap() as i32), signal::Signal::SIGINT).unwrap();
    // Before, it went on with the start-up (the deployment, the oracle, the agents, each waited
    // for: minutes when a deployment hangs) and stopped once all was up.
    // (Anvil is given 10 s to stop on SIGTERM.)
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .unwrap_or_else(|_| panic!("estuary dev did not stop:\n{}", tail(&log)))
        .unwrap();
    assert!(status.success(), "{status}:\n{}", tail(&log));
    assert!(std::fs::read_to_string(&log).unwrap().contains("interrupted during start-up"));
    assert!(!state.join("oracle-data").exists(), "the oracle was started after the Ctrl-C");
    let left = running_in(&state, Duration::from_secs(5)).await;
    assert!(left.is_empty(), "still running: {left:?}");
    assert!(!state.join("dev.json").exists(), "dev.json was left");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pinned_file_gets_three_active_replicas_at_three_sps_on_the_local_stack() {
    let dir = tempfile::tempdir().unwrap();
    let Placed { dev, info, car_path, root, piece, requestid, order } =
        three_replicas(dir.path(), &[]).await;
    let (root, piece, requestid) = (root.as_str(), piece.as_str(), requestid.as_str());
    let oracle = info["oracle_url"].as_str().unwrap().to_owned();
    let token = info["api_token"].as_str().unwrap().to_owned();
    let client = reqwest::Client::new();
    // The pin's piece is in a bucket, whose aggregate is the order's piece; the piece the
    // client computed is the sub-piece inside it.
    let aggregate = order["piece_cid"].as_str().unwrap().to_owned();
    let buckets: Value =
        client.get(format!("{oracle}/buckets")).send().await.unwrap().json().await.unwrap();
    let bucket = buckets["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["piece_cid"] == aggregate.as_str())
        .unwrap_or_else(|| panic!("no bucket for {aggregate}: {buckets}"));
    let id = bucket["id"].as_u64().unwrap();
    let one: Value =
        client.get(format!("{oracle}/buckets?id={id}")).send().await.unwrap().json().await.unwrap();
    let inside = one["results"][0]["pieces"].as_array().unwrap();
    assert!(inside.iter().any(|p| p["piece_cid"] == piece), "the client's piece is inside: {one}");
    assert_eq!(order["payload_cid"], root, "labelled with its first (here its only) pin");
    assert_eq!(
        (order["state"].as_str(), order["backend"].as_str()),
        (Some("open"), Some("perpetual"))
    );
    let mut providers: Vec<u64> = order["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["state"] == "active")
        .map(|r| {
            assert!(r["deal_id"].is_u64() && r["end_epoch"].as_u64() > r["start_epoch"].as_u64());
            r["provider"].as_u64().unwrap()
        })
        .collect();
    providers.sort_unstable();
    assert_eq!(providers, [1000, 1001, 1002], "three different SPs");

    // The chain agrees: the order is the operator's, for the aggregate, with three holders.
    let reader =
        ProviderBuilder::new().connect_http(info["rpc_url"].as_str().unwrap().parse().unwrap());
    let perpetual: Address =
        info["contracts"]["PerpetualStorage"].as_str().unwrap().parse().unwrap();
    let view = PerpetualStorage::new(perpetual, &reader)
        .getOrder(U256::from(order["order_id"].as_u64().unwrap()))
        .call()
        .await
        .unwrap();
    assert_eq!(view.active, 3);
    let mut holders = view.holders.clone();
    holders.sort_unstable();
    assert_eq!(holders, [1000, 1001, 1002]);
    let v1 = aggregate.parse::<PieceCid>().unwrap().to_v1().to_cid().to_bytes();
    assert_eq!(view.pieceCid.to_vec(), v1);
    let operator: Address =
        info["accounts"].as_array().unwrap().last().unwrap().as_str().unwrap().parse().unwrap();
    assert_eq!(view.client, operator, "the oracle's operator made and funded the order");

    // The pin shows its replicas (Pinning Service API `info`, strings) and its request's page.
    let status: Value = client
        .get(format!("{oracle}/pins/{requestid}"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["status"], "pinned");
    assert_eq!(status["info"]["deals_active"], "3/3");
    assert!(status["info"]["deals"].as_str().unwrap().contains("f01001 active #"));
    // The aggregate the SPs downloaded is assembled by the oracle from the pins' CARs.
    let served = client.get(format!("{oracle}/piece/{aggregate}")).send().await.unwrap();
    assert_eq!(served.status(), 200);
    let bytes = served.bytes().await.unwrap();
    let info = estuary_piece::commp::commp(&bytes).unwrap();
    assert_eq!(PieceCid::v2(&info).to_string(), aggregate);
    // What the SPs downloaded is served by the oracle under the order's origin.
    let served = client.get(format!("{oracle}/piece/{piece}")).send().await.unwrap();
    assert_eq!(served.status(), 200);
    assert_eq!(served.bytes().await.unwrap().to_vec(), std::fs::read(&car_path).unwrap());
    // Operators see the orders in the metrics.
    let metrics = client
        .get(format!("{oracle}/metrics"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("estuary_deal_orders{state=\"open\"} 1"), "{metrics}");
    // And `estuary oracle deals` on the oracle's database (SQLite, read while it runs).
    let db = dir.path().join("state/oracle.sqlite");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_estuary"))
        .args(["oracle", "deals", "--db", db.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let line = String::from_utf8(out.stdout).unwrap();
    assert!(line.starts_with(&format!("{aggregate}\topen\t")), "{line}");
    assert!(line.contains("\t3/3\t") && line.contains("f01002:active#"), "{line}");
    // A bad filter is refused.
    let bad = client.get(format!("{oracle}/deals?piece=not-a-piece")).send().await.unwrap();
    assert_eq!(bad.status(), 400);
    // `estuary oracle repair`: nothing short; `--now` runs the deal rounds at once (the
    // operator's token only).
    let repair = |extra: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_estuary"))
            .args(["oracle", "repair", "--db", db.to_str().unwrap()])
            .args(extra)
            .env_remove("ESTUARY_API_TOKEN")
            .output()
            .unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), out.stderr)
    };
    let (ok, lines, _) = repair(&[]);
    assert!(ok && lines.contains("no order is short of its replicas"), "{lines}");
    let (ok, lines, err) = repair(&["--now", "--url", &oracle, "--api-token", &token]);
    assert!(ok, "{}", String::from_utf8_lossy(&err));
    assert!(lines.contains("deal round(s) run now"), "{lines}");
    let (ok, _, err) = repair(&["--now", "--url", &oracle, "--api-token", "wrong"]);
    assert!(
        !ok && String::from_utf8_lossy(&err).contains("401"),
        "{}",
        String::from_utf8_lossy(&err)
    );
    let anonymous = client.post(format!("{oracle}/deals/repair")).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    drop(dev);
}

/// The same stack with contract deals (`estuary dev --deals contract`): the oracle proposes each
/// replica through `DealClient` to an SP it chose, and the SP agents take the proposals naming
/// their miner in Boost's flow — the proposal read from the contract, the CAR fetched from the
/// oracle's `/piece/{pieceCid}` and checked, `publishStorageDeals` authenticated by the
/// contract and recorded through `MarketNotifyDeal`, the sector proven with the client
/// notified. Three active replicas at three SPs, each on chain.
#[tokio::test(flavor = "multi_thread")]
async fn contract_deals_on_the_local_stack_reach_three_chosen_sps() {
    use estuary_contracts::DealClient;
    let dir = tempfile::tempdir().unwrap();
    let Placed { dev, info, requestid, order, .. } =
        three_replicas(dir.path(), &["--deals", "contract"]).await;
    assert_eq!(
        (order["backend"].as_str(), order["state"].as_str()),
        (Some("contract"), Some("open"))
    );
    let proposals = order["proposals"].as_array().unwrap();
    let mut named: Vec<u64> = proposals
        .iter()
        .filter(|p| p["state"] == "offered")
        .map(|p| p["provider"].as_u64().unwrap())
        .collect();
    named.sort_unstable();
    assert_eq!(named, [1000, 1001, 1002], "one proposal per SP: {order}");

    // The chain agrees: each proposal holds its named SP's deal, proven, proposed by the operator.
    let reader =
        ProviderBuilder::new().connect_http(info["rpc_url"].as_str().unwrap().parse().unwrap());
    let client: Address = info["contracts"]["DealClient"].as_str().unwrap().parse().unwrap();
    let operator: Address =
        info["accounts"].as_array().unwrap().last().unwrap().as_str().unwrap().parse().unwrap();
    let dc = DealClient::new(client, &reader);
    for p in proposals {
        let id: alloy::primitives::B256 = p["proposal_id"].as_str().unwrap().parse().unwrap();
        let view = dc.getProposal(id).call().await.unwrap();
        assert_eq!(view.proposer, operator);
        assert_eq!(view.deals.len(), 1, "{p}");
        assert_eq!(view.deals[0].provider, p["provider"].as_u64().unwrap());
        assert!(view.deals[0].activated >= 0);
    }

    // The pin (an API pin: its proofs are for on-chain requests) shows its three replicas.
    let oracle = info["oracle_url"].as_str().unwrap();
    let token = info["api_token"].as_str().unwrap();
    let status: Value = reqwest::Client::new()
        .get(format!("{oracle}/pins/{requestid}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["info"]["deals_active"], "3/3", "{status}");
    drop(dev);
}
