//! Contract deals through `DealClient` at providers the oracle chooses, as storage providers
//! meet them on the local chain: the real oracle process proposes each replica to a provider
//! its `--provider` policies allow, best score first; providers take a proposal in Boost's flow
//! (`getDealProposal`, `publishStorageDeals` from the miner's control address, the market's
//! `MarketNotifyDeal` to the contract) and prove it as a DDO-aware provider does
//! (`proveCommitSectors3` notifying the market and the client). A provider that never
//! publishes sees its proposal withdrawn past the deal's start and the replica go elsewhere.

use std::{sync::Arc, time::Duration};

use alloy::{
    primitives::{B256, Bytes, U256},
    providers::{Provider, ProviderBuilder},
    rpc::types::Filter,
    sol_types::SolEvent,
};
use estuary_contracts::{
    DealClient, EstuaryPinning, MARKET_ACTOR, MarketSimulator, MinerActorSimulator, NO_DEAL,
    delegated_address, masked_id_address,
};
use serde_json::Value;

use crate::{
    oracle_pinning::{Cars, add, cid_bytes, gateway},
    support::{Chain, OracleProcess, noise},
};

/// A CBOR unsigned integer (a market deal id, as a notification's payload).
fn cbor_uint(n: u64) -> Vec<u8> {
    match n {
        0..=23 => vec![u8::try_from(n).unwrap()],
        24..=0xff => vec![0x18, u8::try_from(n).unwrap()],
        0x100..=0xffff => [vec![0x19], u16::try_from(n).unwrap().to_be_bytes().to_vec()].concat(),
        0x1_0000..=0xffff_ffff => {
            [vec![0x1a], u32::try_from(n).unwrap().to_be_bytes().to_vec()].concat()
        }
        _ => [vec![0x1b], n.to_be_bytes().to_vec()].concat(),
    }
}

/// `miner` (controlled by account `miner - 999`) takes proposal `id` in Boost's flow and proves
/// it in `sector`, notifying the market and, if `notify_client`, the client contract too (as a
/// DDO-aware provider does; a Boost market deal notifies the market only).
async fn deliver(chain: &Chain, id: B256, miner: u64, sector: u64, notify_client: bool) {
    let sp = chain.wallet(usize::try_from(miner - 999).unwrap());
    let client = chain.deployment.contracts["DealClient"];
    let dc = DealClient::new(client, &sp);
    let proposal = dc.getDealProposal(id).call().await.unwrap();
    let request = dc.getProposal(id).call().await.unwrap().request;
    let market = MarketSimulator::new(MARKET_ACTOR, &sp);
    let receipt = mined!(market.publishStorageDeals(vec![MarketSimulator::ClientDealProposal {
        proposal,
        clientSignature: Bytes::from_static(&[0xde, 0xad]),
    }]));
    let deal = receipt
        .decoded_log::<MarketSimulator::DealPublished>()
        .unwrap_or_else(|| panic!("f0{miner} publishes: {receipt:?}"))
        .data
        .id;
    let payload = Bytes::from(cbor_uint(deal));
    let notify = [
        MinerActorSimulator::Notification {
            addr: Bytes::from_static(&[0x00, 0x05]),
            payload: payload.clone(),
        },
        MinerActorSimulator::Notification { addr: delegated_address(client).into(), payload },
    ]
    .into_iter()
    .take(if notify_client { 2 } else { 1 })
    .collect();
    let proved = prove(&sp, miner, sector, request, notify).await;
    assert!(proved.status(), "f0{miner} proves");
}

/// `miner` (through `sp`, its controlling account) proves `request`'s piece in `sector`, its
/// activation sending `notify`.
async fn prove(
    sp: &impl alloy::providers::Provider,
    miner: u64,
    sector: u64,
    request: DealClient::DealRequest,
    notify: Vec<MinerActorSimulator::Notification>,
) -> alloy::rpc::types::TransactionReceipt {
    let activation = MinerActorSimulator::SectorActivation {
        sector,
        expiration: request.endEpoch,
        pieces: vec![MinerActorSimulator::PieceActivation {
            pieceCid: request.pieceCid,
            size: request.pieceSize,
            notify,
        }],
    };
    let actor = MinerActorSimulator::new(masked_id_address(miner), sp);
    mined!(actor.proveCommitSectors3(vec![activation], true))
}

async fn logs<E: SolEvent>(chain: &Chain) -> Vec<E> {
    logs_of(chain, chain.deployment.contracts["DealClient"]).await
}

async fn pinning_logs<E: SolEvent>(chain: &Chain) -> Vec<E> {
    logs_of(chain, chain.deployment.pinning).await
}

/// `EstuaryPinning`'s `DealProven` events, once there are at least `n` (or after `secs`).
async fn deals_proven(chain: &Chain, n: usize, secs: u64) -> Vec<EstuaryPinning::DealProven> {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let proven = pinning_logs::<EstuaryPinning::DealProven>(chain).await;
        if proven.len() >= n || std::time::Instant::now() > deadline {
            return proven;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn logs_of<E: SolEvent>(chain: &Chain, address: alloy::primitives::Address) -> Vec<E> {
    let reader = ProviderBuilder::new().connect_http(chain.anvil.endpoint_url());
    let found = reader
        .get_logs(&Filter::new().address(address).event_signature(E::SIGNATURE_HASH).from_block(0))
        .await
        .unwrap();
    found.iter().map(|l| l.log_decode::<E>().unwrap().inner.data).collect()
}

/// An oracle making contract deals through the local `DealClient` at f01000 and f01001, its
/// market read through `DealStateView` every second, pinning from a gateway serving `cars`, with
/// `more` arguments.
async fn two_provider_oracle(
    chain: &Chain,
    dir: &std::path::Path,
    cars: &Cars,
    more: &[&str],
) -> OracleProcess {
    let url = gateway(Arc::clone(cars)).await;
    let mut args: Vec<String> = [
        "--gateway",
        &url,
        "--data-dir",
        &dir.join("data").display().to_string(),
        "--operator-key",
        &chain.operator_key(),
        "--deal-client-address",
        &chain.deployment.contracts["DealClient"].to_string(),
        "--deal-state-view-address",
        &chain.deployment.contracts["DealStateView"].to_string(),
        "--deal-check-secs",
        "1",
        "--provider",
        "f01000",
        "--provider",
        "f01001",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    args.extend(more.iter().map(|s| (*s).to_owned()));
    OracleProcess::start_with(chain, &dir.join("oracle.sqlite"), &args).await
}

/// The one contract order's view in `/deals`, once `ok` holds (60 s at most).
async fn order_when(oracle: &OracleProcess, ok: impl Fn(&Value) -> bool, what: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let body = oracle.get("/deals").await;
        let order = body.as_ref().map(|b| b["results"][0].clone());
        if let Some(order) = order.as_ref().filter(|o| ok(o)) {
            return order.clone();
        }
        assert!(std::time::Instant::now() < deadline, "{what}: {order:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn proposals(order: &Value) -> Vec<Value> {
    order["proposals"].as_array().cloned().unwrap_or_default()
}

/// The latest proposal to `provider` in `order`.
fn proposal_to(order: &Value, provider: u64) -> Option<Value> {
    proposals(order).into_iter().rev().find(|p| p["provider"] == provider)
}

fn replica_of(order: &Value, provider: u64) -> Option<Value> {
    order["replicas"].as_array()?.iter().find(|r| r["provider"] == provider).cloned()
}

/// An oracle keeping one replica of each piece (f01000 first), for a 400-epoch term starting
/// 20 epochs after its proposal and renewed 200 epochs before its end, with `more` arguments;
/// a piece of `seed` pinned, and its first proposal once offered, with its id.
async fn one_replica_offered(
    chain: &Chain,
    dir: &std::path::Path,
    seed: u64,
    more: &[&str],
) -> (OracleProcess, Value, B256) {
    let cars: Cars = Arc::default();
    let mut args = vec![
        "--deal-replicas",
        "1",
        "--deal-term-epochs",
        "400",
        "--deal-renew-epochs",
        "200",
        "--deal-start-epochs",
        "20",
    ];
    args.extend_from_slice(more);
    let oracle = two_provider_oracle(chain, dir, &cars, &args).await;
    let (root, _, car) = add(dir, "r", &noise(4000, seed));
    cars.lock().unwrap().insert(root.clone(), car);
    chain.pin(4, &cid_bytes(&root)).await;
    let offered = |o: &Value| proposal_to(o, 1000).is_some_and(|p| p["state"] == "offered");
    let order = order_when(&oracle, offered, "never proposed").await;
    let first = proposal_to(&order, 1000).unwrap();
    let id: B256 = first["proposal_id"].as_str().unwrap().parse().unwrap();
    (oracle, first, id)
}

/// Mines into the renewal window of f01000's deal ending at `end` (200 epochs before it) and
/// waits for the renewal (attempt 1), which must go to f01000: the order, and the renewal.
async fn renewal_in_window(chain: &Chain, oracle: &OracleProcess, end: u64) -> (Value, Value) {
    chain.mine_to(end - 200 + 1).await;
    let renewed = order_when(
        oracle,
        |o| proposals(o).iter().any(|p| p["attempt"] == 1 && p["state"] == "offered"),
        "never renewed",
    )
    .await;
    let renewal = proposals(&renewed).into_iter().find(|p| p["attempt"] == 1).unwrap();
    assert_eq!(renewal["provider"], 1000, "to the provider of the ending deal: {renewed}");
    (renewed, renewal)
}

/// The whole contract-deal path with its failure cases: no escrow (the proposal waits and
/// says why, no gas), escrow added (two proposals, to the best two providers the policies
/// allow: never the one asking more than the operator pays), a SIGKILL and restart (no
/// proposal made twice), one provider delivering, the other never publishing (withdrawn past
/// the start, the replica proposed to the third), and the end: two active replicas at two
/// providers, checked on chain and scored in `/providers`.
#[tokio::test(flavor = "multi_thread")]
async fn contract_deals_go_to_chosen_providers_and_a_lapsed_proposal_goes_elsewhere() {
    let chain = Chain::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cars: Cars = Arc::default();
    let url = gateway(Arc::clone(&cars)).await;
    let client = chain.deployment.contracts["DealClient"];
    let args: Vec<String> = [
        "--gateway",
        &url,
        "--data-dir",
        &dir.path().join("data").display().to_string(),
        "--operator-key",
        &chain.operator_key(),
        "--deal-client-address",
        &client.to_string(),
        "--deal-state-view-address",
        &chain.deployment.contracts["DealStateView"].to_string(),
        "--deal-check-secs",
        "1",
        "--deal-replicas",
        "2",
        "--deal-term-epochs",
        "3600",
        "--deal-start-epochs",
        "40",
        "--deal-expiring-epochs",
        "100",
        // Pins share aggregates: the order is the bucket's, and each deal's proof is reported.
        "--bucket-size",
        "1048576",
        "--bucket-max-age-secs",
        "1",
        "--deal-max-price",
        "10",
        // f01003 asks more than the operator pays: never proposed to.
        "--provider",
        "f01003:price=11",
        "--provider",
        "f01000:price=1",
        "--provider",
        "f01001:price=1",
        "--provider",
        "f01002:price=1,max-size=1MiB",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let db = dir.path().join("oracle.sqlite");
    let oracle = OracleProcess::start_with(&chain, &db, &args).await;
    let (root, piece, car) = add(dir.path(), "c", &noise(5000, 11));
    cars.lock().unwrap().insert(root.clone(), car);
    chain.pin(4, &cid_bytes(&root)).await;

    // No escrow yet: the proposals wait, and the order says why (nothing was sent).
    let waiting = order_when(
        &oracle,
        |o| o["error"].as_str().is_some_and(|e| e.contains("escrow")),
        "the order never said it waits for escrow",
    )
    .await;
    assert_eq!(waiting["backend"].as_str(), Some("contract"));
    // The order is the bucket's aggregate, with the pin's piece inside.
    let buckets = oracle.get("/buckets").await.unwrap();
    assert_eq!(buckets["results"][0]["piece_cid"], waiting["piece_cid"], "{buckets}");
    let id = buckets["results"][0]["id"].as_u64().unwrap();
    let one = oracle.get(&format!("/buckets?id={id}")).await.unwrap();
    assert_eq!(one["results"][0]["pieces"][0]["piece_cid"], piece.as_str());
    assert!(logs::<DealClient::DealProposalOffered>(&chain).await.is_empty());

    // The owner escrows FIL in the market for the contract.
    chain.escrow_for_deals(U256::from(10u64).pow(U256::from(15u64))).await;

    // Two proposals, to f01000 and f01001 (all unscored: the lower ids first).
    let offered = |o: &Value, p: u64| proposal_to(o, p).is_some_and(|x| x["state"] == "offered");
    let order = order_when(
        &oracle,
        |o| offered(o, 1000) && offered(o, 1001),
        "two proposals never offered",
    )
    .await;
    assert!(proposal_to(&order, 1003).is_none() && proposal_to(&order, 1002).is_none());
    assert_eq!(order["error"], Value::Null, "nothing wrong any more: {order}");

    // A SIGKILL and a restart: nothing is proposed again.
    oracle.kill().await;
    let oracle = OracleProcess::start_with(&chain, &db, &args).await;
    let order = order_when(
        &oracle,
        |o| replica_of(o, 1000).is_some() && replica_of(o, 1001).is_some(),
        "the offers were never seen by the watcher",
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(logs::<DealClient::DealProposalOffered>(&chain).await.len(), 2, "no proposal twice");
    let claimed = replica_of(&order, 1000).unwrap();
    assert_eq!(claimed["state"], "claimed", "{claimed}");
    let start = proposal_to(&order, 1000).unwrap()["start_epoch"].as_u64().unwrap();
    assert_eq!(claimed["deadline"].as_u64(), Some(start), "due by the deal's start");

    // f01001 delivers; the market says its deal is active.
    let id = |o: &Value, p: u64| -> B256 {
        proposal_to(o, p).unwrap()["proposal_id"].as_str().unwrap().parse().unwrap()
    };
    deliver(&chain, id(&order, 1001), 1001, 7, true).await;
    order_when(
        &oracle,
        |o| {
            replica_of(o, 1001)
                .is_some_and(|r| r["state"] == "active" && r["market"]["state"] == "active")
        },
        "f01001's replica never active",
    )
    .await;

    // f01000 never publishes: past the start, its proposal is withdrawn and the replica goes to
    // f01002 (f01003 still asks too much).
    chain.mine_to(start + 1).await;
    let order = order_when(
        &oracle,
        |o| {
            proposal_to(o, 1000).is_some_and(|p| p["state"] == "lapsed")
                && offered(o, 1002)
                && replica_of(o, 1000).is_some_and(|r| r["state"] == "reopened")
        },
        "the lapsed proposal never went elsewhere",
    )
    .await;
    let cancelled = logs::<DealClient::DealProposalCancelled>(&chain).await;
    assert_eq!(cancelled.iter().map(|c| c.id).collect::<Vec<_>>(), [id(&order, 1000)]);
    // f01002 proves as a Boost market deal does: only the market is told; its activation is
    // the market's word, read through DealStateView.
    deliver(&chain, id(&order, 1002), 1002, 8, false).await;
    let order =
        order_when(&oracle, |o| o["replicas_active"] == 2, "never two active replicas").await;
    let mut active: Vec<u64> = order["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["state"] == "active")
        .map(|r| r["provider"].as_u64().unwrap())
        .collect();
    active.sort_unstable();
    assert_eq!(active, [1001, 1002], "{order}");
    assert_eq!(logs::<DealClient::DealProposalOffered>(&chain).await.len(), 3);
    let named: Vec<u64> =
        logs::<DealClient::DealProposalOffered>(&chain).await.iter().map(|o| o.provider).collect();
    // The first two were proposed together (in either order), the third after the lapse.
    let (mut first, last) = (named[..2].to_vec(), named[2]);
    first.sort_unstable();
    assert_eq!((first.as_slice(), last), ([1000, 1001].as_slice(), 1002));

    // The chain agrees: each delivered proposal holds its provider's deal, activated.
    let reader = ProviderBuilder::new().connect_http(chain.anvil.endpoint_url());
    let dc = DealClient::new(client, &reader);
    for (provider, notified) in [(1001, true), (1002, false)] {
        let view = dc.getProposal(id(&order, provider)).call().await.unwrap();
        assert_eq!(view.deals.len(), 1);
        assert_eq!(view.deals[0].provider, provider);
        assert_eq!(view.deals[0].activated >= 0, notified, "the client knows only if told");
        assert_eq!(view.proposer, *chain.anvil.addresses().last().unwrap());
    }
    let r = replica_of(&order, 1002).unwrap();
    assert_eq!(
        (r["state"].as_str(), r["market"]["state"].as_str()),
        (Some("active"), Some("active"))
    );
    // Each deal holds the pin, proven on chain against the deal's piece (reportDeal, PoDSI).
    let proven = deals_proven(&chain, 2, 30).await;
    let mut proven: Vec<u64> = proven.iter().map(|p| p.provider).collect();
    proven.sort_unstable();
    assert_eq!(proven, [1001, 1002], "one proof per active deal");

    // The providers, scored: f01000's lapse is remembered.
    let providers = oracle.get("/providers").await.unwrap();
    let by = |p: u64| {
        providers["results"].as_array().unwrap().iter().find(|x| x["provider"] == p).cloned()
    };
    assert_eq!(by(1000).unwrap()["lapsed"], 1, "{providers}");
    assert_eq!(by(1001).unwrap()["activated"], 1);
    assert!(by(1001).unwrap()["score"].as_f64() > by(1000).unwrap()["score"].as_f64());
    assert!(by(1003).is_none());
    // Operators see the proposals in the metrics.
    let metrics = oracle.metrics().await;
    assert!(metrics.contains("estuary_deal_proposals{state=\"offered\"} 2"), "{metrics}");
    assert!(metrics.contains("estuary_deal_proposals{state=\"lapsed\"} 1"), "{metrics}");
    oracle.kill().await;
}

/// The oracle SIGKILLed at random points while it proposes contract deals for many pins: every
/// piece ends with its two proposals, to two different providers, each made exactly once on
/// chain (no proposal twice for a piece and provider), whatever the kills interrupted.
#[tokio::test(flavor = "multi_thread")]
async fn crash_test_each_replica_proposed_once_through_sigkills() {
    use std::collections::HashMap;
    let pins: usize =
        std::env::var("ESTUARY_CRASH_ORDERS").ok().and_then(|v| v.parse().ok()).unwrap_or(24);
    let kills: usize =
        std::env::var("ESTUARY_CRASH_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(10);
    let chain = Chain::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cars: Cars = Arc::default();
    let url = gateway(Arc::clone(&cars)).await;
    let mut roots = Vec::new();
    for i in 0..pins {
        let (root, _, car) =
            add(dir.path(), &format!("k{i}"), &noise(2500 + i * 61, 700 + i as u64));
        cars.lock().unwrap().insert(root.clone(), car);
        roots.push(root);
    }
    let client = chain.deployment.contracts["DealClient"].to_string();
    let view = chain.deployment.contracts["DealStateView"].to_string();
    let extra = [
        "--deal-client-address",
        &client,
        "--deal-state-view-address",
        &view,
        "--deal-check-secs",
        "1",
        "--deal-replicas",
        "2",
        "--deal-start-epochs",
        "100000",
        "--provider",
        "f01000",
        "--provider",
        "f01001",
        "--provider",
        "f01002",
    ];
    let oracle =
        crate::oracle_deals::pin_through_kills(&chain, dir.path(), &url, &roots, kills, &extra)
            .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    let orders = loop {
        let orders = oracle
            .get("/deals?limit=1000")
            .await
            .and_then(|v| v["results"].as_array().cloned())
            .unwrap_or_default();
        let offered =
            |o: &Value| proposals(o).iter().filter(|p| p["state"] == "offered").count() == 2;
        if orders.len() == pins && orders.iter().all(offered) {
            break orders;
        }
        assert!(std::time::Instant::now() < deadline, "not every piece got its two proposals");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    for o in &orders {
        let mut named: Vec<u64> =
            proposals(o).iter().map(|p| p["provider"].as_u64().unwrap()).collect();
        named.sort_unstable();
        named.dedup();
        assert_eq!(named.len(), 2, "two providers, each asked once: {o}");
    }
    // On chain: one offer per piece and provider, two per piece.
    let mut per: HashMap<(Vec<u8>, u64), usize> = HashMap::new();
    for offer in logs::<DealClient::DealProposalOffered>(&chain).await {
        *per.entry((offer.pieceCid.to_vec(), offer.provider)).or_default() += 1;
    }
    let twice: Vec<_> = per.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "proposed twice: {twice:?}");
    assert_eq!(per.len(), pins * 2);
    oracle.kill().await;
}

/// Renewal ahead of a term's end: a replica whose deal ends within `--deal-renew-epochs` no
/// longer counts, and its renewal is proposed before it ends — to the same provider, which
/// renews first unless it failed the piece — so the old and the new deal overlap; both are
/// listed, each its own replica.
#[tokio::test(flavor = "multi_thread")]
async fn an_ending_deal_is_renewed_ahead_of_its_end_at_its_provider() {
    let chain = Chain::start().await;
    let dir = tempfile::tempdir().unwrap();
    let more = ["--deal-expiring-epochs", "50"];
    let (oracle, first, id0) = one_replica_offered(&chain, dir.path(), 21, &more).await;
    deliver(&chain, id0, 1000, 7, true).await;
    order_when(&oracle, |o| o["replicas_active"] == 1, "never active").await;

    // Into the renewal window: 200 epochs before the deal's end.
    let end = first["end_epoch"].as_u64().unwrap();
    let (renewed, renewal) = renewal_in_window(&chain, &oracle, end).await;
    assert!(renewal["start_epoch"].as_u64().unwrap() < end, "it overlaps the ending deal");
    assert!(proposal_to(&renewed, 1001).is_none());
    let id1: B256 = renewal["proposal_id"].as_str().unwrap().parse().unwrap();
    deliver(&chain, id1, 1000, 8, true).await;
    let both = order_when(
        &oracle,
        |o| {
            o["replicas"].as_array().is_some_and(|r| {
                r.iter().filter(|x| x["provider"] == 1000 && x["state"] == "active").count() == 2
            })
        },
        "the renewal never active beside the ending deal",
    )
    .await;
    assert_eq!(both["replicas_active"], 1, "one provider holds it, twice: {both}");
    let providers = oracle.get("/providers").await.unwrap();
    let p0 =
        providers["results"].as_array().unwrap().iter().find(|p| p["provider"] == 1000).cloned();
    assert_eq!(p0.unwrap()["activated"], 2, "{providers}");
    oracle.kill().await;
}

/// `miner` proves proposal `id` as a direct deal (Curio's `mk20` DDO path): nothing is
/// published; the sector's piece notifies the client contract alone, its payload the proposal
/// id, and `DealClient` records the deal as `NO_DEAL`.
async fn deliver_direct(chain: &Chain, id: B256, miner: u64, sector: u64) {
    let sp = chain.wallet(usize::try_from(miner - 999).unwrap());
    let client = chain.deployment.contracts["DealClient"];
    let request = DealClient::new(client, &sp).getProposal(id).call().await.unwrap().request;
    let notify = vec![MinerActorSimulator::Notification {
        addr: delegated_address(client).into(),
        payload: Bytes::copy_from_slice(id.as_slice()),
    }];
    prove(&sp, miner, sector, request, notify).await;
}

/// A direct deal (made without the market: `DealActivated` with `NO_DEAL`) counts as a
/// replica with no market deal, is renewed ahead of its end like a market deal, and stops
/// counting at its end epoch (nothing on chain ends it: its term does).
#[tokio::test(flavor = "multi_thread")]
async fn a_direct_deal_counts_until_its_term_ends_and_is_renewed() {
    let chain = Chain::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (oracle, first, id) = one_replica_offered(&chain, dir.path(), 23, &[]).await;
    deliver_direct(&chain, id, 1000, 7).await;
    let active = order_when(&oracle, |o| o["replicas_active"] == 1, "never active").await;
    let replica = replica_of(&active, 1000).unwrap();
    assert_eq!(replica["state"], "active", "{active}");
    assert!(replica["deal_id"].is_null(), "no market deal: {replica}");

    // Into the renewal window, then past the end with the renewal never delivered.
    let end = first["end_epoch"].as_u64().unwrap();
    renewal_in_window(&chain, &oracle, end).await;
    chain.mine_to(end + 1).await;
    let over = order_when(
        &oracle,
        |o| replica_of(o, 1000).is_some_and(|r| r["market"]["state"] == "expired"),
        "the direct deal never ended",
    )
    .await;
    assert_eq!(over["replicas_active"], 0, "{over}");
    let ended = replica_of(&over, 1000).unwrap();
    assert_eq!(ended["market"]["end_epoch"], end, "its term, as the contract gave it: {ended}");
    oracle.kill().await;
}

/// A direct deal of a bucket's aggregate is reported with its pin's proof
/// (`reportDirectDeal`): the contract checks it against the `DealClient`'s record of the
/// activation and the proposal's piece, and proves the pin as `NO_DEAL` at the provider. It is
/// reported once.
#[tokio::test(flavor = "multi_thread")]
async fn a_direct_deal_is_reported_with_its_pins_proof() {
    let chain = Chain::start().await;
    let dir = tempfile::tempdir().unwrap();
    let buckets = ["--bucket-size", "1048576", "--bucket-max-age-secs", "1"];
    let (oracle, _, id) = one_replica_offered(&chain, dir.path(), 24, &buckets).await;
    deliver_direct(&chain, id, 1000, 7).await;
    let proven = deals_proven(&chain, 1, 60).await;
    assert_eq!(proven.len(), 1, "one proof");
    assert_eq!((proven[0].dealId, proven[0].provider), (NO_DEAL, 1000));
    let reports = pinning_logs::<EstuaryPinning::DirectDealReported>(&chain).await;
    assert_eq!(reports.len(), 1);
    let client = chain.deployment.contracts["DealClient"];
    assert_eq!((reports[0].client, reports[0].proposal, reports[0].provider), (client, id, 1000));
    assert_eq!(reports[0].recorded, U256::from(1), "its one pin");
    let named = pinning_logs::<EstuaryPinning::DirectDealProven>(&chain).await;
    assert_eq!(named.len(), 1, "the pin's proof names its proposal");
    assert_eq!(
        (named[0].requestId, named[0].client, named[0].proposal),
        (proven[0].requestId, client, id)
    );
    // The request holds it, as the chain says.
    let reader = ProviderBuilder::new().connect_http(chain.anvil.endpoint_url());
    let pinning = EstuaryPinning::new(chain.deployment.pinning, &reader);
    let request = pinning.getRequest(proven[0].requestId).call().await.unwrap();
    assert!(request.dealMade);
    assert_eq!((request.dealId, request.provider), (NO_DEAL, 1000));
    // The oracle names where the chain records it, for a client to check.
    let shown = oracle.get(&format!("/requests/{}", proven[0].requestId)).await.unwrap();
    let direct = &shown["deals"][0]["direct"];
    assert_eq!(direct["client"].as_str().map(str::to_lowercase), Some(format!("{client:#x}")));
    assert_eq!(direct["proposal"].as_str(), Some(format!("{id:#x}").as_str()), "{shown}");
    assert!(shown["deals"][0]["deal_id"].is_null(), "{shown}");
    // Reported once: rounds later, nothing more was sent.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(pinning_logs::<EstuaryPinning::DirectDealReported>(&chain).await.len(), 1);
    oracle.kill().await;
}

/// Verified contract deals and the client's DataCap, read from the DataCap actor (f07) through
/// `DealStateView.dataCapOf` before anything is proposed: with none, nothing is proposed (no
/// gas) and the order says why; with one piece's worth, one replica is proposed and the other
/// waits, since the first proposal will take that DataCap when its provider publishes it; with
/// two, the second follows. A provider publishing the deal spends the piece's size of it.
#[tokio::test(flavor = "multi_thread")]
async fn a_verified_deal_is_proposed_only_within_the_clients_datacap() {
    let chain = Chain::start().await;
    let client = chain.deployment.contracts["DealClient"];
    let view = chain.deployment.contracts["DealStateView"];
    let admin = chain.wallet(0);
    let market = MarketSimulator::new(MARKET_ACTOR, &admin);
    assert!(mined!(market.setDataCap(client, U256::ZERO)).status());
    let dir = tempfile::tempdir().unwrap();
    let cars: Cars = Arc::default();
    let more = ["--deal-replicas", "2", "--deal-verified", "--deal-start-epochs", "60"];
    let oracle = two_provider_oracle(&chain, dir.path(), &cars, &more).await;
    // A piece of at least 1 MiB: the verified registry's smallest allocation.
    let (root, _, car) = add(dir.path(), "v", &noise(1_100_000, 33));
    cars.lock().unwrap().insert(root.clone(), car);
    chain.pin(4, &cid_bytes(&root)).await;
    let says = |o: &Value, what: &str| o["error"].as_str().is_some_and(|e| e.contains(what));
    let none =
        order_when(&oracle, |o| says(o, "DataCap: the client has 0 bytes"), "no DataCap").await;
    assert!(proposals(&none).is_empty(), "proposed without DataCap: {none}");
    let padded = none["padded_size"].as_u64().unwrap();

    // One piece's worth: one replica proposed, the other waits for the first's share.
    assert!(mined!(market.setDataCap(client, U256::from(padded))).status());
    let pending = format!("{padded} of them for proposals not yet published");
    let one = order_when(&oracle, |o| proposals(o).len() == 1 && says(o, &pending), "one").await;
    assert_eq!(proposals(&one)[0]["state"], "offered", "{one}");
    // Two pieces' worth: the second follows.
    assert!(mined!(market.setDataCap(client, U256::from(2 * padded))).status());
    let two = order_when(&oracle, |o| proposals(o).len() == 2, "the second never proposed").await;
    let offered: Vec<u64> = proposals(&two).iter().filter_map(|p| p["provider"].as_u64()).collect();
    assert!(offered.contains(&1000) && offered.contains(&1001), "{two}");
    // A provider publishing its verified deal spends the piece's size of the client's DataCap.
    let first = proposal_to(&two, 1000).unwrap();
    let id: B256 = first["proposal_id"].as_str().unwrap().parse().unwrap();
    deliver(&chain, id, 1000, 7, true).await;
    let reader = ProviderBuilder::new().connect_http(chain.anvil.endpoint_url());
    let dsv = estuary_contracts::DealStateView::new(view, &reader);
    let left = dsv.dataCapOf(client).call().await.unwrap();
    assert_eq!(left.dataCap, U256::from(padded));
    oracle.kill().await;
    // What the oracle checks at start with `--deal-verified`: the view answers `dataCapOf`; a
    // contract that does not (an older view; here the pinning contract) is refused, with what
    // to do.
    let check = estuary_oracle::deals::contract::check_datacap_view;
    assert_eq!(check(&reader, view, client).await, Ok(()));
    let pinning = chain.deployment.contracts["EstuaryPinning"];
    let refused = check(&reader, pinning, client).await.unwrap_err();
    assert!(refused.contains("redeploy"), "{refused}");
}

/// The oracle SIGKILLed at random points while it repairs contract deals: each piece's replica
/// at f01000, whose sector the market terminated, is replaced by one proposal to f01002, made
/// exactly once on chain whatever the kills interrupted; the lost replica counts no more, and
/// nobody is asked twice for a piece.
#[tokio::test(flavor = "multi_thread")]
async fn crash_test_each_repair_made_once_through_sigkills() {
    use std::collections::HashMap;
    let pins: usize =
        std::env::var("ESTUARY_CRASH_REPAIRS").ok().and_then(|v| v.parse().ok()).unwrap_or(10);
    let kills: usize =
        std::env::var("ESTUARY_CRASH_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(8);
    let chain = Chain::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cars: Cars = Arc::default();
    let url = gateway(Arc::clone(&cars)).await;
    let mut roots = Vec::new();
    for i in 0..pins {
        let (root, _, car) =
            add(dir.path(), &format!("r{i}"), &noise(2700 + i * 67, 800 + i as u64));
        cars.lock().unwrap().insert(root.clone(), car);
        roots.push(root);
    }
    let client = chain.deployment.contracts["DealClient"].to_string();
    let view = chain.deployment.contracts["DealStateView"].to_string();
    let extra = [
        "--deal-client-address",
        &client,
        "--deal-state-view-address",
        &view,
        "--deal-check-secs",
        "1",
        "--deal-replicas",
        "2",
        // Far enough for every delivery (each transaction is a block here).
        "--deal-start-epochs",
        "5000",
        "--provider",
        "f01000",
        "--provider",
        "f01001",
        "--provider",
        "f01002",
    ];
    let restart = || crate::oracle_deals::oracle_with(&chain, dir.path(), &url, &extra);
    let mut oracle = restart().await;
    for (i, root) in roots.iter().enumerate() {
        chain.pin(1 + i % 3, &cid_bytes(root)).await;
    }
    // Each piece's two proposals, delivered: published and proven, both replicas active.
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    let first = loop {
        let now = orders_of(&oracle).await;
        let offered = |o: &Value| proposals(o).iter().filter(|p| p["state"] == "offered").count();
        if now.len() == pins && now.iter().all(|o| offered(o) == 2) {
            break now;
        }
        assert!(std::time::Instant::now() < deadline, "not every piece got its two proposals");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let mut sectors: HashMap<u64, Vec<u64>> = HashMap::new();
    for o in &first {
        for p in proposals(o) {
            let provider = p["provider"].as_u64().unwrap();
            let id: B256 = p["proposal_id"].as_str().unwrap().parse().unwrap();
            let held = sectors.entry(provider).or_default();
            held.push(held.len() as u64 + 1);
            deliver(&chain, id, provider, *held.last().unwrap(), true).await;
        }
    }
    let at_f01000: Vec<String> = first
        .iter()
        .filter(|o| proposal_to(o, 1000).is_some())
        .map(|o| o["piece_cid"].as_str().unwrap().to_owned())
        .collect();
    assert!(!at_f01000.is_empty(), "f01000 holds replicas: {first:?}");
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while !orders_of(&oracle).await.iter().all(|o| o["replicas_active"] == 2) {
        assert!(std::time::Instant::now() < deadline, "not every replica became active");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // f01000's sectors are terminated: the market drops its deals. The oracle repairs each
    // piece while it is killed again and again.
    let actor = MinerActorSimulator::new(masked_id_address(1000), chain.wallet(1));
    assert!(mined!(actor.terminateSectors(sectors[&1000].clone())).status());
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    for _ in 0..kills {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        tokio::time::sleep(Duration::from_millis(100 + seed % 900)).await;
        oracle.kill().await;
        oracle = restart().await;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    let repaired = loop {
        let now = orders_of(&oracle).await;
        let done = |o: &&Value| proposal_to(o, 1002).is_some_and(|p| p["state"] == "offered");
        if now.iter().filter(done).count() == at_f01000.len() {
            break now;
        }
        assert!(std::time::Instant::now() < deadline, "not every lost replica was replaced");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    for o in repaired.iter().filter(|o| at_f01000.iter().any(|p| o["piece_cid"] == *p)) {
        assert_eq!(o["replicas_active"], 1, "the lost replica counts no more: {o}");
        let mut named: Vec<u64> =
            proposals(o).iter().map(|p| p["provider"].as_u64().unwrap()).collect();
        named.sort_unstable();
        assert_eq!(named, [1000, 1001, 1002], "each provider asked once: {o}");
    }
    // On chain: one offer per piece and provider.
    let mut per: HashMap<(Vec<u8>, u64), usize> = HashMap::new();
    for offer in logs::<DealClient::DealProposalOffered>(&chain).await {
        *per.entry((offer.pieceCid.to_vec(), offer.provider)).or_default() += 1;
    }
    let twice: Vec<_> = per.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "proposed twice: {twice:?}");
    assert_eq!(per.len(), pins * 2 + at_f01000.len());
    oracle.kill().await;
}

/// Every order `/deals` lists (none if it does not answer).
async fn orders_of(oracle: &OracleProcess) -> Vec<Value> {
    oracle
        .get("/deals?limit=1000")
        .await
        .and_then(|v| v["results"].as_array().cloned())
        .unwrap_or_default()
}
