//! The Curio example of `docs/sp-agent.md` (`docs/sealers/curio-ddo-deal.sh`) end to end: an
//! agent with the command sealer hands a `DealClient` proposal to a stand-in for Curio's `mk20`
//! market API, which checks what Curio checks, downloads the piece from the agent, and seals it
//! as a DDO deal on the simulated miner (the activation notifying the contract); the agent then
//! reads the direct deal's activation from the contract.
//!
//! The stand-in follows curio at `e0294b0` (no Curio binary is available here):
//! - `market/mk20/auth.go`: `Authorization: CurioAuth <type>:<base64 address bytes>:<base64
//!   signature>`, the SHA-256 of address bytes, upper-case method, escaped path and the minute
//!   (RFC 3339) verified for the minute of the request and the one before and after; a delegated
//!   signature (lotus `lib/sigs/delegated`) is type byte 3, then r, s and a recovery id below 4,
//!   over `keccak256(digest)`, recovering to the f4 address; `/status/{id}` only for the deal's
//!   own client;
//! - `market/mk20/utils.go` and `ddo_v1.go`: the deal's client is the header's address as text,
//!   a ULID identifier, piece CID v2, `retrieval_v1` present without `announce_piece`, both or
//!   neither of the notification's fields; with `market_address`, `version()` must be 1 and
//!   `verifyDeal` true (426 otherwise), with `dealId` the `market_deal_id`;
//! - a second deal with the same identifier fails the database insert: 500, `Reason: `;
//! - `GET /status/{id}`: 401 when no deal of that id belongs to the header's client (the
//!   middleware's `AuthenticateClient`), else `{"ddo_v1": {"status", "errorMsg"}}`;
//! - sealing: the piece downloaded from `source_http`, its piece CID checked, the sector proven
//!   with the piece's notification (`requireNotificationSuccess`, as Curio's docs advise).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use alloy::{
    primitives::{Address, Bytes, Signature, U256, keccak256},
    providers::DynProvider,
};
use axum::{
    Router,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use base64::{Engine, engine::general_purpose::STANDARD};
use blake2::{
    Blake2bVar,
    digest::{Update, VariableOutput},
};
use estuary_chain::devnet;
use estuary_contracts::{DealClient, MinerActorSimulator, masked_id_address};
use estuary_sp::sealer::{Deal, curio};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::support::{AgentProcess, Chain, Origin, Serve, agent_args, car, work_for};

/// The stand-in's state.
#[derive(Default)]
struct Deals {
    /// Deal id → status.
    status: HashMap<String, String>,
    /// Deal id → its client's address bytes.
    clients: HashMap<String, Vec<u8>>,
    /// `METHOD path` of every request.
    requests: Vec<String>,
    /// Why requests were refused.
    refused: Vec<String>,
}

struct Curio {
    deals: Mutex<Deals>,
    /// Reads the chain.
    reader: DynProvider,
    /// Sends the miner's proofs (the SP's key, a controlling address of f01000).
    sp: DynProvider,
}

type Shared = Arc<Curio>;

fn refuse(c: &Curio, code: u16, why: impl std::fmt::Display) -> Response {
    c.deals.lock().unwrap().refused.push(format!("{code}: {why}"));
    (StatusCode::from_u16(code).unwrap(), format!("Reason: {why}")).into_response()
}

/// The address bytes the request is signed by, as Curio's `Auth` checks it.
fn authorized(headers: &HeaderMap, method: &str, path: &str) -> Result<Vec<u8>, String> {
    let header = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .ok_or("Missing Authorization header")?;
    let rest = header.strip_prefix("CurioAuth ").ok_or("not CurioAuth")?;
    let parts: Vec<&str> = rest.splitn(3, ':').collect();
    if parts.len() != 3 || !["secp256k1", "bls", "delegated"].contains(&parts[0]) {
        return Err(format!("bad header {header:?}"));
    }
    let addr = STANDARD.decode(parts[1]).map_err(|e| format!("address: {e}"))?;
    let sig = STANDARD.decode(parts[2]).map_err(|e| format!("signature: {e}"))?;
    if sig.len() != 66 || sig[0] != 3 || sig[65] >= 4 {
        return Err(format!("not a delegated signature: {} bytes", sig.len()));
    }
    if addr.len() != 22 || addr[..2] != [4, 10] {
        return Err("not an f4 address of the EAM".into());
    }
    let signature = Signature::new(
        U256::from_be_slice(&sig[1..33]),
        U256::from_be_slice(&sig[33..65]),
        sig[65] & 1 == 1,
    );
    let now = SystemTime::now();
    for at in [now, now - Duration::from_secs(60), now + Duration::from_secs(60)] {
        let mut h = Sha256::new();
        sha2::Digest::update(&mut h, &addr);
        sha2::Digest::update(&mut h, method.as_bytes());
        sha2::Digest::update(&mut h, path.as_bytes());
        sha2::Digest::update(&mut h, curio::minute(at).as_bytes());
        let digest: [u8; 32] = h.finalize().into();
        if signature
            .recover_address_from_prehash(&keccak256(digest))
            .is_ok_and(|who| who.as_slice() == &addr[2..])
        {
            return Ok(addr);
        }
    }
    Err("signature did not match".into())
}

/// The address bytes of an f4 text address (`t410f…`), its checksum checked.
fn f4_bytes(text: &str) -> Option<Vec<u8>> {
    let rest = text.strip_prefix("t410f").or_else(|| text.strip_prefix("f410f"))?;
    let raw = data_encoding::BASE32_NOPAD.decode(rest.to_uppercase().as_bytes()).ok()?;
    if raw.len() != 24 {
        return None;
    }
    let mut bytes = vec![4, 10];
    bytes.extend_from_slice(&raw[..20]);
    let mut sum = [0u8; 4];
    let mut hasher = Blake2bVar::new(4).unwrap();
    hasher.update(&bytes);
    hasher.finalize_variable(&mut sum).unwrap();
    (sum == raw[20..]).then_some(bytes)
}

async fn submit(State(c): State<Shared>, headers: HeaderMap, body: String) -> Response {
    c.deals.lock().unwrap().requests.push("POST /market/mk20/deal".into());
    let who = match authorized(&headers, "POST", "/market/mk20/deal") {
        Ok(who) => who,
        Err(e) => return refuse(&c, 401, e),
    };
    let Ok(deal) = serde_json::from_str::<Value>(&body) else {
        return refuse(&c, 400, "not JSON");
    };
    let id = deal["identifier"].as_str().unwrap_or_default().to_owned();
    let crockford = |ch: char| "0123456789ABCDEFGHJKMNPQRSTVWXYZ".contains(ch);
    if id.len() != 26 || !id.chars().all(crockford) || id.as_bytes()[0] > b'7' {
        return refuse(&c, 400, format!("identifier {id:?} is not a ULID"));
    }
    let signer = Address::from_slice(&who[2..]);
    if deal["client"] != curio::f4_address(signer, false) {
        return refuse(&c, 400, "client in deal does not match client in auth header");
    }
    let data = &deal["data"];
    let Some(v2) = data["piece_cid"]["/"].as_str().and_then(|s| cid::Cid::try_from(s).ok()) else {
        return refuse(&c, 400, "piece_cid");
    };
    if v2.codec() != 0x55 || v2.hash().code() != 0x1011 {
        return refuse(&c, 400, "not a piece CID v2");
    }
    let url = data["source_http"]["urls"][0]["url"].as_str().unwrap_or_default().to_owned();
    if data["format"]["car"].is_null() || url.is_empty() {
        return refuse(&c, 422, "a CAR over HTTP is expected");
    }
    let retrieval = &deal["products"]["retrieval_v1"];
    if retrieval.is_null() || retrieval["announce_piece"] != json!(false) {
        return refuse(&c, 425, "retrieval_v1 is required, without announce_piece");
    }
    let ddo = &deal["products"]["ddo_v1"];
    let (Some(notify), Some(payload)) =
        (ddo["notification_address"].as_str(), ddo["notification_payload"].as_str())
    else {
        return refuse(&c, 425, "notification address and payload go together");
    };
    let (Some(notify), Ok(payload)) = (f4_bytes(notify), STANDARD.decode(payload)) else {
        return refuse(&c, 425, "notification address or payload");
    };
    let provider = ddo["provider"].as_str().and_then(|p| p.get(2..)?.parse::<u64>().ok());
    let market = ddo["market_address"].as_str().and_then(|a| a.parse::<Address>().ok());
    let (Some(provider), Some(market), Some(number), Some(start), Some(duration)) = (
        provider,
        market,
        ddo["market_deal_id"].as_u64(),
        ddo["start_epoch"].as_u64(),
        ddo["duration"].as_u64(),
    ) else {
        return refuse(&c, 400, format!("ddo_v1 {ddo}"));
    };
    let dc = DealClient::new(market, &c.reader);
    if dc.version().call().await.ok() != Some(U256::from(1)) {
        return refuse(&c, 440, "market not enabled");
    }
    let view = DealClient::CurioDealView {
        dealId: U256::from(number),
        state: 0,
        providerActorId: U256::from(provider),
        clientId: Bytes::from(who.clone()),
        pieceCidV2: Bytes::from(v2.to_bytes()),
        startEpoch: U256::from(start),
        duration: U256::from(duration),
        allocationId: U256::ZERO,
        finalizedEpoch: U256::ZERO,
    };
    match dc.verifyDeal(view).call().await {
        Ok(true) => {}
        Ok(false) => return refuse(&c, 426, "deal rejected by market"),
        Err(e) => return refuse(&c, 426, format!("verifyDeal: {e}")),
    }
    {
        let mut d = c.deals.lock().unwrap();
        if d.status.contains_key(&id) {
            drop(d);
            return refuse(&c, 500, String::new());
        }
        d.status.insert(id.clone(), "accepted".into());
        d.clients.insert(id.clone(), who.clone());
    }
    let sealing = Arc::clone(&c);
    let v2 = v2.to_string();
    tokio::spawn(async move {
        let outcome = seal(&sealing, &url, &v2, provider, notify, payload, start + duration).await;
        let status = match outcome {
            Ok(()) => "complete".to_owned(),
            Err(e) => format!("failed: {e}"),
        };
        sealing.deals.lock().unwrap().status.insert(id, status);
    });
    (StatusCode::OK, "Reason: ").into_response()
}

/// Downloads the piece, checks it, and proves it in a sector notifying `notify`.
async fn seal(
    c: &Curio,
    url: &str,
    v2: &str,
    provider: u64,
    notify: Vec<u8>,
    payload: Vec<u8>,
    end: u64,
) -> Result<(), String> {
    let bytes = reqwest::get(url)
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| e.to_string())?
        .bytes()
        .await
        .map_err(|e| e.to_string())?;
    let info = estuary_piece::commp::commp(&bytes).map_err(|e| e.to_string())?;
    if estuary_piece::PieceCid::v2(&info).to_string() != v2 {
        return Err("the downloaded piece is another".into());
    }
    let miner = MinerActorSimulator::new(masked_id_address(provider), &c.sp);
    let activation = MinerActorSimulator::SectorActivation {
        sector: 77,
        expiration: i64::try_from(end).unwrap(),
        pieces: vec![MinerActorSimulator::PieceActivation {
            pieceCid: Bytes::from(estuary_piece::PieceCid::v1(&info).to_cid().to_bytes()),
            size: info.padded_size,
            notify: vec![MinerActorSimulator::Notification {
                addr: Bytes::from(notify),
                payload: Bytes::from(payload),
            }],
        }],
    };
    let receipt = miner
        .proveCommitSectors3(vec![activation], true)
        .send()
        .await
        .map_err(|e| e.to_string())?
        .get_receipt()
        .await
        .map_err(|e| e.to_string())?;
    receipt.status().then_some(()).ok_or_else(|| "the proof reverted".into())
}

async fn status(State(c): State<Shared>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let path = format!("/market/mk20/status/{id}");
    c.deals.lock().unwrap().requests.push(format!("GET {path}"));
    let who = match authorized(&headers, "GET", &path) {
        Ok(who) => who,
        Err(e) => return refuse(&c, 401, e),
    };
    let known = {
        let d = c.deals.lock().unwrap();
        d.clients.get(&id).filter(|client| **client == who).and(d.status.get(&id).cloned())
    };
    let Some(status) = known else {
        // Not refused as a bad request: how Curio answers a deal it does not hold for you.
        return (StatusCode::UNAUTHORIZED, "Unauthorized").into_response();
    };
    let (status, error) = match status.strip_prefix("failed: ") {
        Some(e) => ("failed".to_owned(), e.to_owned()),
        None => (status, String::new()),
    };
    axum::Json(json!({ "ddo_v1": { "status": status, "errorMsg": error } })).into_response()
}

/// Waits for the agent's work on proposal `reference` to be active, as a direct deal.
async fn active_direct(agent: &AgentProcess, reference: &str) {
    let v = agent
        .wait_for("/work?limit=100", 120, "the proposal active as a direct deal", |v| {
            work_for(v.as_array().unwrap(), "proposal", reference)
                .iter()
                .any(|w| w["state"] == "active")
        })
        .await;
    let w = work_for(v.as_array().unwrap(), "proposal", reference)[0].clone();
    assert_eq!((w["direct"].clone(), w["deal_id"].clone()), (json!(true), Value::Null), "{w:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_curio_example_makes_a_direct_deal_the_contract_records() {
    let chain = Chain::start().await;
    let origin = Origin::start().await;
    let c = car(300_000, 41);
    let url = origin.add("c", &c.bytes, Serve::Good);

    let curio = Arc::new(Curio {
        deals: Mutex::default(),
        reader: chain.reader(),
        sp: chain.as_account(1),
    });
    let app = Router::new()
        .route("/market/mk20/deal", post(submit))
        .route("/market/mk20/status/{id}", get(status))
        .with_state(Arc::clone(&curio));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let curio_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let proposal = chain.propose(&c, 1000, url, 200).await;
    let dir = tempfile::tempdir().unwrap();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs/sealers/curio-ddo-deal.sh");
    let port = devnet::free_port().unwrap();
    let mut args = agent_args(&chain, 0, dir.path(), port);
    let sealer = args.iter().position(|a| a == "--sealer").unwrap();
    args[sealer + 1] = "command".into();
    args.extend(["--seal-command".into(), format!("sh {}", script.display())]);
    let env = vec![("CURIO_MARKET_URL".to_owned(), curio_url.clone())];
    let agent =
        AgentProcess::start_args(args, &chain.key_hex(1), 1000, dir.path(), port, &env).await;
    let reference = format!("{proposal:#x}");
    active_direct(&agent, &reference).await;

    // The contract recorded the deal without the market, proven by this miner.
    let view =
        DealClient::new(chain.deal_client(), chain.reader()).getProposal(proposal).call().await;
    let deals = view.unwrap().deals;
    assert_eq!(deals.len(), 1);
    assert_eq!((deals[0].provider, deals[0].dealId), (1000, Deal::NO_DEAL));
    assert!(deals[0].activated >= 0);
    let ulid = curio::ulid(proposal);
    // The stand-in marks the deal complete once its proof's receipt is in, which may come
    // after the agent has seen the activation.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while curio.deals.lock().unwrap().status.get(&ulid).map(String::as_str) != Some("complete") {
        assert!(std::time::Instant::now() < deadline, "the stand-in never completed the deal");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    {
        let d = curio.deals.lock().unwrap();
        assert!(d.refused.is_empty(), "{:?}", d.refused);
        let posts = d.requests.iter().filter(|r| r.starts_with("POST")).count();
        assert_eq!(posts, 1, "submitted once: {:?}", d.requests);
        assert_eq!(d.requests[0], format!("GET /market/mk20/status/{ulid}"), "asked first");
    }
    let deals = agent.get("/deals").await;
    assert!(deals.as_array().unwrap().iter().any(|d| d["reference"] == json!(reference)));
    agent.stop().await;

    // Run again (as after a restart before the hand-over was stored), it finds the deal by its
    // name and submits nothing.
    let signer = chain.signer(1);
    let auth = curio::auth_header(
        &signer,
        "GET",
        &format!("/market/mk20/status/{ulid}"),
        SystemTime::now(),
    )
    .unwrap();
    let out = tokio::process::Command::new("sh")
        .arg(&script)
        .env("ESTUARY_KIND", "proposal")
        .env("ESTUARY_CURIO_ID", &ulid)
        .env("ESTUARY_CURIO_AUTH_STATUS", auth)
        .env("ESTUARY_PROPOSAL_ID", &reference)
        .env("CURIO_MARKET_URL", &curio_url)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(estuary_sp::sealer::deal_of(&stdout), Some(Deal::Direct), "{stdout}");
    assert!(stdout.contains("complete"), "{stdout}");
    let d = curio.deals.lock().unwrap();
    assert_eq!(d.requests.iter().filter(|r| r.starts_with("POST")).count(), 1);
}

/// The simulated market's next deal id: it moves when a deal is published.
async fn next_deal_id(chain: &Chain) -> u64 {
    let reader = chain.reader();
    let market = estuary_contracts::MarketSimulator::new(estuary_contracts::MARKET_ACTOR, &reader);
    market.nextDealId().call().await.unwrap()
}

/// The simulated sealer's direct deals (`--sim-direct`): nothing published; the sector proven
/// with the `DealClient` alone notified, as Curio's sealing does; the work active with no
/// market deal.
#[tokio::test(flavor = "multi_thread")]
async fn the_simulated_sealer_makes_direct_deals() {
    let chain = Chain::start().await;
    let origin = Origin::start().await;
    let c = car(200_000, 43);
    let url = origin.add("c", &c.bytes, Serve::Good);
    let proposal = chain.propose(&c, 1001, url, 200).await;
    let reader = chain.reader();
    let deals_before = next_deal_id(&chain).await;
    let dir = tempfile::tempdir().unwrap();
    let agent = AgentProcess::start(&chain, 1, dir.path(), &["--sim-direct".into()]).await;
    let reference = format!("{proposal:#x}");
    active_direct(&agent, &reference).await;
    let dc = DealClient::new(chain.deal_client(), &reader);
    let deals = dc.getProposal(proposal).call().await.unwrap().deals;
    assert_eq!((deals.len(), deals[0].provider, deals[0].dealId), (1, 1001, Deal::NO_DEAL));
    assert!(deals[0].activated >= 0);
    let deals_after = next_deal_id(&chain).await;
    assert_eq!(deals_after, deals_before, "nothing was published");
    agent.stop().await;
}

/// A `DealClient` whose owner refuses direct deals (`DealPolicy.acceptDirect` false): the
/// simulated sealer asked for direct deals publishes a market deal instead, which the contract
/// records; the Curio script stops before it asks Curio anything.
#[tokio::test(flavor = "multi_thread")]
async fn a_contract_refusing_direct_deals_gets_market_deals() {
    let chain = Chain::start().await;
    let origin = Origin::start().await;
    let c = car(200_000, 44);
    let url = origin.add("c", &c.bytes, Serve::Good);
    let owner = chain.as_account(0);
    let dc = DealClient::new(chain.deal_client(), &owner);
    assert_eq!(dc.owner().call().await.unwrap(), chain.signer(0).address(), "the deployer owns it");
    let policy = dc.dealPolicy().call().await.unwrap();
    assert!(policy.acceptDirect, "the local profile accepts direct deals");
    let refusing = DealClient::DealPolicy {
        minDuration: policy.minDuration,
        maxDuration: policy.maxDuration,
        minStartDelay: policy.minStartDelay,
        maxEndDelay: policy.maxEndDelay,
        minProviderCollateralPerByte: policy.minProviderCollateralPerByte,
        acceptDirect: false,
    };
    assert!(mined!(dc.setDealPolicy(refusing)).status(), "setDealPolicy");
    let proposal = chain.propose(&c, 1001, url, 200).await;
    let deals_before = next_deal_id(&chain).await;
    let dir = tempfile::tempdir().unwrap();
    let agent = AgentProcess::start(&chain, 1, dir.path(), &["--sim-direct".into()]).await;
    let reference = format!("{proposal:#x}");
    let v = agent
        .wait_for("/work?limit=100", 120, "the proposal active", |v| {
            work_for(v.as_array().unwrap(), "proposal", &reference)
                .iter()
                .any(|w| w["state"] == "active")
        })
        .await;
    let w = work_for(v.as_array().unwrap(), "proposal", &reference)[0].clone();
    assert_eq!(w["direct"], json!(false), "{w:#}");
    let deal_id = w["deal_id"].as_u64().expect("a market deal");
    let reader = chain.reader();
    let deals = DealClient::new(chain.deal_client(), &reader).getProposal(proposal).call().await;
    let deals = deals.unwrap().deals;
    assert_eq!((deals.len(), deals[0].provider, deals[0].dealId), (1, 1001, deal_id));
    assert!(deals[0].activated >= 0);
    assert_eq!(next_deal_id(&chain).await, deals_before + 1, "one deal published");
    agent.stop().await;

    // The Curio script, told the contract refuses direct deals, asks Curio nothing.
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs/sealers/curio-ddo-deal.sh");
    let out = tokio::process::Command::new("sh")
        .arg(&script)
        .env("ESTUARY_KIND", "proposal")
        .env("ESTUARY_ACCEPT_DIRECT", "false")
        .env("ESTUARY_CURIO_ID", curio::ulid(proposal))
        .env("CURIO_MARKET_URL", "http://127.0.0.1:9")
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("takes no direct deals"), "{stderr}");
}
