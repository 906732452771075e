//! Reorgs of depth 1 to 5 around requests (`anvil_reorg`): the oracle's stored requests end up
//! equal to a clean re-index of the canonical chain.

use alloy::providers::{Provider, ProviderBuilder};
use serde_json::Value;

use crate::support::{Chain, OracleProcess, cid};

/// (id, cid, block, tx) of every stored request, in order.
pub(crate) async fn snapshot(oracle: &OracleProcess) -> Vec<(String, String, u64, String)> {
    let list = oracle.get("/requests?limit=1000").await.unwrap();
    list["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r: &Value| {
            (
                r["id"].as_str().unwrap().to_owned(),
                r["cid"].as_str().unwrap().to_owned(),
                r["block"].as_u64().unwrap(),
                r["tx_hash"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn reorgs_of_depth_one_to_five_leave_a_clean_index() {
    let chain = Chain::start().await;
    let provider = ProviderBuilder::new().connect_http(chain.anvil.endpoint_url());
    let dir = tempfile::tempdir().unwrap();
    // Confirmations 0: the oracle stores requests at the head, so reorgs hit what it stored.
    let oracle = OracleProcess::start(&chain, &dir.path().join("oracle.sqlite")).await;
    let mut n = 0u8;
    for depth in 1u64..=5 {
        for _ in 0..depth + 1 {
            n += 1;
            chain.pin(1, &cid(n)).await;
        }
        let head = provider.get_block_number().await.unwrap();
        oracle.wait_for(|s| s["cursor"].as_u64() == Some(head), "/status").await;
        // Replace the last `depth` blocks (holding `depth` requests) with empty ones.
        provider
            .raw_request::<_, Value>("anvil_reorg".into(), (depth, Vec::<Value>::new()))
            .await
            .unwrap();
        // New requests reuse the orphaned ids with other CIDs.
        for _ in 0..2 {
            n += 1;
            chain.pin(2, &cid(n)).await;
        }
        let head = provider.get_block_number().await.unwrap();
        let status = oracle.wait_for(|s| s["cursor"].as_u64() == Some(head), "/status").await;
        let count: u64 = {
            let pinning =
                estuary_contracts::EstuaryPinning::new(chain.deployment.pinning, &provider);
            pinning.requestCount().call().await.unwrap().try_into().unwrap()
        };
        assert_eq!(status["requests"], count, "depth {depth}: stored requests = requests on chain");
    }
    let stored = snapshot(&oracle).await;
    oracle.kill().await;

    // A clean re-index of the canonical chain, from a fresh database.
    let fresh = OracleProcess::start(&chain, &dir.path().join("fresh.sqlite")).await;
    let head = provider.get_block_number().await.unwrap();
    fresh.wait_for(|s| s["cursor"].as_u64() == Some(head), "/status").await;
    assert_eq!(stored, snapshot(&fresh).await);
    fresh.kill().await;
}

/// With `--finality finalized` the oracle reads only up to the chain's finalized block (anvil
/// finalizes 64 blocks behind the head): a request is stored once it is final, not before.
#[tokio::test(flavor = "multi_thread")]
async fn finality_follows_the_finalized_tag() {
    let chain = Chain::start().await;
    let provider = ProviderBuilder::new().connect_http(chain.anvil.endpoint_url());
    let dir = tempfile::tempdir().unwrap();
    let oracle = OracleProcess::start_with(
        &chain,
        &dir.path().join("oracle.sqlite"),
        &["--finality".to_owned(), "finalized".to_owned()],
    )
    .await;
    chain.pin(1, &cid(200)).await;
    provider.raw_request::<_, ()>("anvil_mine".into(), (10u64,)).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    let status = oracle.get("/status").await.unwrap();
    assert_eq!(status["requests"], 0, "not final yet: {status}");
    provider.raw_request::<_, ()>("anvil_mine".into(), (70u64,)).await.unwrap();
    oracle.wait_for(|s| s["requests"] == 1, "/status").await;
    oracle.kill().await;
}
