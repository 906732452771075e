//! Two oracle processes sharing one PostgreSQL queue (and one data directory, as on shared
//! storage), each with its own operator key: every request is pinned and reported exactly once,
//! both do work, and when one is killed the other takes over its jobs once their leases run out.

use std::{
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use alloy::{network::EthereumWallet, providers::ProviderBuilder};
use estuary_contracts::EstuaryPinning;

use crate::{
    oracle_pinning::{Cars, add, cid_bytes, gateway, reported},
    support::{Chain, OracleProcess, noise, reports},
};

#[tokio::test(flavor = "multi_thread")]
async fn two_oracles_share_one_postgres_queue() {
    const REQUESTS: usize = 30;
    let pg = crate::postgres::Postgres::start();
    let chain = Chain::start().await;
    // A second operator for the second process (each process keeps its own nonces).
    let owner = ProviderBuilder::new()
        .wallet(EthereumWallet::from(chain.signer(0)))
        .connect_http(chain.anvil.endpoint_url());
    let second = chain.address(8);
    mined!(EstuaryPinning::new(chain.deployment.pinning, &owner).setOperator(second, true));

    let dir = tempfile::tempdir().unwrap();
    let cars: Cars = Arc::default();
    let url = gateway(Arc::clone(&cars)).await;
    let mut roots = Vec::new();
    for i in 0..REQUESTS {
        let (root, _, car) =
            add(dir.path(), &format!("f{i}"), &noise(3000 + i * 11, 900 + i as u64));
        cars.lock().unwrap().insert(root.clone(), car);
        roots.push(root);
    }
    let start = |key: String| {
        let args = vec![
            "--gateway".to_owned(),
            url.clone(),
            "--data-dir".to_owned(),
            dir.path().join("data").display().to_string(),
            "--operator-key".to_owned(),
            key,
            "--lease-secs".to_owned(),
            "3".to_owned(),
            "--workers".to_owned(),
            "2".to_owned(),
        ];
        let db = pg.url();
        let chain = &chain;
        async move {
            OracleProcess::start_on(chain, &chain.anvil.endpoint(), Path::new(&db), &args).await
        }
    };
    let mut a = Some(start(chain.operator_key()).await);
    let second_key: alloy::signers::local::PrivateKeySigner = chain.anvil.keys()[8].clone().into();
    let b = start(alloy::hex::encode(second_key.to_bytes())).await;

    let first_operator = chain.anvil.addresses().last().copied().unwrap();
    for (i, root) in roots.iter().enumerate() {
        chain.pin(1 + i % 3, &cid_bytes(root)).await;
        if i == REQUESTS / 2 {
            // Once the first process has reported something, it dies holding whatever else it
            // had claimed.
            let deadline = Instant::now() + Duration::from_secs(60);
            while !reports(&chain).await.1.contains_key(&first_operator) {
                assert!(Instant::now() < deadline, "the first process never reported");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            if let Some(a) = a.take() {
                a.kill().await;
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while reported(&b).await < REQUESTS {
        assert!(Instant::now() < deadline, "not all requests reported: {}", reported(&b).await);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // On chain: one Pinned event per request; both operators reported some.
    let (per_request, per_operator) = reports(&chain).await;
    assert_eq!(per_request.len(), REQUESTS);
    assert!(per_request.values().all(|n| *n == 1), "exactly one report per request");
    assert_eq!(per_operator.len(), 2, "both processes reported: {per_operator:?}");
    eprintln!("reports per operator: {per_operator:?}");
    b.kill().await;
}
