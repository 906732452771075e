//! The oracle makes a `PerpetualStorage` order for every piece it reports, exactly once: the real
//! process, SIGKILLed at random points while it pins, reports and orders, ends with one order
//! per piece on chain, each bound to its piece in `/deals`, none funded twice.

use std::{collections::HashMap, sync::Arc, time::Duration};

use alloy::{
    providers::{Provider, ProviderBuilder},
    rpc::types::Filter,
    sol_types::SolEvent,
};
use estuary_contracts::PerpetualStorage;
use serde_json::Value;

use crate::{
    oracle_pinning::{Cars, add, cid_bytes, gateway},
    support::{Chain, OracleProcess, noise},
};

async fn oracle(chain: &Chain, dir: &std::path::Path, gateway: &str) -> OracleProcess {
    oracle_with(chain, dir, gateway, &[]).await
}

async fn oracle_with(
    chain: &Chain,
    dir: &std::path::Path,
    gateway: &str,
    extra: &[&str],
) -> OracleProcess {
    let perpetual = chain.deployment.contracts["PerpetualStorage"].to_string();
    let mut args: Vec<String> = [
        "--gateway",
        gateway,
        "--data-dir",
        &dir.join("data").display().to_string(),
        "--operator-key",
        &chain.operator_key(),
        "--perpetual-address",
        &perpetual,
        "--deal-term-epochs",
        "3600",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    OracleProcess::start_with(chain, &dir.join("oracle.sqlite"), &args).await
}

/// Orders shown by `/deals` that have their order id.
async fn bound(oracle: &OracleProcess) -> Vec<Value> {
    oracle
        .get("/deals?limit=1000")
        .await
        .and_then(|v| v["results"].as_array().cloned())
        .unwrap_or_default()
        .into_iter()
        .filter(|o| o["order_id"].is_u64())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn crash_test_one_order_per_piece_through_sigkills() {
    let pins: usize =
        std::env::var("ESTUARY_CRASH_ORDERS").ok().and_then(|v| v.parse().ok()).unwrap_or(40);
    let kills: usize =
        std::env::var("ESTUARY_CRASH_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(12);
    let chain = Chain::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cars: Cars = Arc::default();
    let url = gateway(Arc::clone(&cars)).await;
    let mut roots = Vec::new();
    let mut pieces = Vec::new();
    for i in 0..pins {
        let (root, piece, car) =
            add(dir.path(), &format!("f{i}"), &noise(3000 + i * 53, 900 + i as u64));
        cars.lock().unwrap().insert(root.clone(), car);
        roots.push(root);
        pieces.push(piece);
    }
    let mut oracle = oracle(&chain, dir.path(), &url).await;
    let mut sent = 0;
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    for kill in 0..kills {
        let batch = (pins - sent).div_ceil(kills - kill).min(pins - sent);
        for root in &roots[sent..sent + batch] {
            chain.pin(1 + sent % 3, &cid_bytes(root)).await;
            sent += 1;
        }
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        tokio::time::sleep(Duration::from_millis(100 + seed % 900)).await;
        oracle.kill().await;
        oracle = self::oracle(&chain, dir.path(), &url).await;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    while bound(&oracle).await.len() < pins {
        assert!(std::time::Instant::now() < deadline, "not every piece got its order");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // On chain: exactly one order per piece, by the operator, each funded once.
    let reader = ProviderBuilder::new().connect_http(chain.anvil.endpoint_url());
    let perpetual = chain.deployment.contracts["PerpetualStorage"];
    let logs = reader
        .get_logs(
            &Filter::new()
                .address(perpetual)
                .event_signature(PerpetualStorage::OrderCreated::SIGNATURE_HASH)
                .from_block(0),
        )
        .await
        .unwrap();
    let operator = *chain.anvil.addresses().last().unwrap();
    let mut per_piece: HashMap<Vec<u8>, usize> = HashMap::new();
    for log in &logs {
        let created = log.log_decode::<PerpetualStorage::OrderCreated>().unwrap().inner.data;
        assert_eq!(created.client, operator);
        *per_piece.entry(created.pieceCid.to_vec()).or_default() += 1;
    }
    assert_eq!(per_piece.len(), pins, "an order for every piece");
    let repeated: Vec<String> = per_piece
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(piece, n)| format!("{} ×{n}", alloy::hex::encode(piece)))
        .collect();
    assert!(repeated.is_empty(), "0 duplicate orders; repeated: {repeated:?}");
    let funded = reader
        .get_logs(
            &Filter::new()
                .address(perpetual)
                .event_signature(PerpetualStorage::OrderFunded::SIGNATURE_HASH)
                .from_block(0),
        )
        .await
        .unwrap();
    assert_eq!(funded.len(), pins, "each order funded once");
    // And in the oracle: each piece's order bound to the id the chain gave it.
    let orders = bound(&oracle).await;
    let mut ids: Vec<u64> = orders.iter().map(|o| o["order_id"].as_u64().unwrap()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), pins);
    for piece in &pieces {
        assert!(orders.iter().any(|o| o["piece_cid"] == piece.as_str()), "{piece} ordered");
    }
    eprintln!("order crash test: {pins} pins, {kills} SIGKILLs, {} orders on chain", logs.len());
    oracle.kill().await;
}

/// Past its deal budget the oracle sends no more orders: the next one waits, saying why, and
/// nothing of it goes on chain.
#[tokio::test(flavor = "multi_thread")]
async fn past_the_deal_budget_orders_wait_and_say_why() {
    let chain = Chain::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cars: Cars = Arc::default();
    let url = gateway(Arc::clone(&cars)).await;
    // One order: the default bounty (0.01 FIL) risen to twice, × 3 replicas × 1 term.
    let one = 10_000_000_000_000_000u128 * 2 * 3;
    let budget = (one * 2).to_string();
    let oracle = oracle_with(&chain, dir.path(), &url, &["--deal-budget", &budget]).await;
    for i in 0..3 {
        let (root, _, car) =
            add(dir.path(), &format!("b{i}"), &noise(2000 + i * 11, 70 + i as u64));
        cars.lock().unwrap().insert(root.clone(), car);
        chain.pin(1, &cid_bytes(&root)).await;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let waiting = loop {
        let all = oracle
            .get("/deals")
            .await
            .and_then(|v| v["results"].as_array().cloned())
            .unwrap_or_default();
        let open = all.iter().filter(|o| o["state"] == "open").count();
        let waiting: Vec<Value> = all
            .into_iter()
            .filter(|o| {
                o["state"] == "sending"
                    && o["error"].as_str().is_some_and(|e| e.contains("deal budget"))
            })
            .collect();
        if open == 2 && waiting.len() == 1 {
            break waiting;
        }
        assert!(std::time::Instant::now() < deadline, "two open orders and one waiting");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(waiting[0]["order_id"].is_null());
    let reader = ProviderBuilder::new().connect_http(chain.anvil.endpoint_url());
    let logs = reader
        .get_logs(
            &Filter::new()
                .address(chain.deployment.contracts["PerpetualStorage"])
                .event_signature(PerpetualStorage::OrderCreated::SIGNATURE_HASH)
                .from_block(0),
        )
        .await
        .unwrap();
    assert_eq!(logs.len(), 2, "nothing past the budget went on chain");
    oracle.kill().await;
}
