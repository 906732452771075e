//! A backup taken while the oracle pins, restored into a fresh database and data directory:
//! every pin verifies, and the restored oracle resumes reading the chain from the backup's
//! cursor — the requests made since are read once each, and nothing is reported twice.

use std::{sync::Arc, time::Duration};

use estuary_dag::walk::{self, WalkLimits};
use estuary_oracle::{
    backup,
    blockstore::{FsBlockstore, Source},
    domain::JobState,
    store::{DatabaseUrl, Store},
};

use crate::{
    oracle_pinning::{Cars, add, cid_bytes, gateway},
    support::{Chain, OracleProcess, noise, reports},
};

async fn start(
    chain: &Chain,
    db: &std::path::Path,
    data: &std::path::Path,
    gateway: &str,
) -> OracleProcess {
    let args = [
        "--gateway".to_owned(),
        gateway.to_owned(),
        "--data-dir".to_owned(),
        data.display().to_string(),
        "--operator-key".to_owned(),
        chain.operator_key(),
    ];
    OracleProcess::start_with(chain, db, &args).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_taken_while_pinning_restores_to_an_oracle_that_resumes_from_its_cursor() {
    let chain = Chain::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cars: Cars = Arc::default();
    let url = gateway(Arc::clone(&cars)).await;
    let roots: Vec<String> = (0..12u64)
        .map(|i| {
            let (root, _, car) = add(dir.path(), "f", &noise(60_000 + i as usize * 1000, 40 + i));
            cars.lock().unwrap().insert(root.clone(), car);
            root
        })
        .collect();
    let (db, data) = (dir.path().join("oracle.sqlite"), dir.path().join("data"));
    let oracle = start(&chain, &db, &data, &url).await;
    for root in &roots[..4] {
        chain.pin(1, &cid_bytes(root)).await;
    }
    oracle.wait_for(|r| r["status"] == "reported", "/requests/4").await;

    // Pins keep coming while the backup is taken.
    let pinning = {
        let roots = roots[4..8].to_vec();
        let chain_url = chain.anvil.endpoint_url();
        let key = chain.signer(2);
        let pinning_address = chain.deployment.pinning;
        tokio::spawn(async move {
            let provider = alloy::providers::ProviderBuilder::new()
                .wallet(alloy::network::EthereumWallet::from(key))
                .connect_http(chain_url);
            let contract = estuary_contracts::EstuaryPinning::new(pinning_address, provider);
            let fee = contract.fee().call().await.unwrap();
            for root in roots {
                contract
                    .pinToEstuary_0(alloy::primitives::Bytes::from(cid_bytes(&root)))
                    .value(alloy::primitives::U256::from(fee))
                    .gas(200_000)
                    .send()
                    .await
                    .unwrap()
                    .get_receipt()
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let store = Store::open(&DatabaseUrl::Sqlite(db.clone())).await.unwrap();
    let blocks = Arc::new(FsBlockstore::open(&data).unwrap());
    let saved = dir.path().join("backup");
    let manifest = backup::backup(
        &store,
        &DatabaseUrl::Sqlite(db.clone()),
        &blocks,
        &data.join("packed"),
        &saved,
    )
    .await
    .unwrap();
    pinning.await.unwrap();
    oracle.wait_for(|r| r["status"] == "reported", "/requests/8").await;
    oracle.kill().await;
    assert!(manifest.summary.jobs >= 4, "{manifest:?}");
    assert!(manifest.blocks > 0 && !manifest.packed.is_empty());
    // More requests while the original is down: the restored oracle must read them.
    for root in &roots[8..12] {
        chain.pin(3, &cid_bytes(root)).await;
    }

    // Restore into a fresh database and data directory.
    let (db2, data2) = (dir.path().join("restored.sqlite"), dir.path().join("restored-data"));
    let restored_blocks = Arc::new(FsBlockstore::open(&data2).unwrap());
    let again = backup::restore(
        &saved,
        &DatabaseUrl::Sqlite(db2.clone()),
        &restored_blocks,
        &data2.join("packed"),
    )
    .await
    .unwrap();
    assert_eq!(again, manifest);
    // A second restore over it is refused.
    assert!(
        backup::restore(&saved, &DatabaseUrl::Sqlite(db2.clone()), &restored_blocks, &data2)
            .await
            .is_err()
    );
    let restored = Store::open(&DatabaseUrl::Sqlite(db2.clone())).await.unwrap();
    assert_eq!(restored.summary().await.unwrap(), manifest.summary, "the cursor is where it was");
    // Every pin the backup holds verifies, block by block, in the restored data directory.
    let held = restored
        .in_states(&[JobState::Pinned, JobState::Packed, JobState::Reported], 1000)
        .await
        .unwrap();
    assert!(held.len() >= 4, "{} pins in the backup", held.len());
    for job in &held {
        let root = cid::Cid::try_from(job.cid.as_deref().unwrap()).unwrap();
        walk::dfs(root, WalkLimits::default(), Source(&*restored_blocks), |_, _| {})
            .unwrap_or_else(|e| panic!("{}: {e}", job.key));
    }
    drop(restored);

    // The restored oracle resumes from the backup's cursor: every request once, all reported,
    // each reported once on chain.
    let oracle = start(&chain, &db2, &data2, &url).await;
    let status = oracle.wait_for(|s| s["requests"] == 12, "/status").await;
    let cursor = manifest.summary.cursors[0].1;
    assert_eq!(status["started_from"].as_u64(), Some(cursor + 1), "{status}");
    for id in 1..=12 {
        oracle.wait_for(|r| r["status"] == "reported", &format!("/requests/{id}")).await;
    }
    let list = oracle.get("/requests?limit=100").await.unwrap();
    let ids: Vec<&str> =
        list["results"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, (1..=12).map(|i| i.to_string()).collect::<Vec<_>>());
    let (per_request, _) = reports(&chain).await;
    assert_eq!(per_request.len(), 12);
    assert!(per_request.values().all(|n| *n == 1), "{per_request:?}");
    oracle.kill().await;
}
