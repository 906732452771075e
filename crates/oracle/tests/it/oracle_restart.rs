//! The oracle resumes from its stored cursor after being killed, and never stores a request
//! twice.

use std::collections::BTreeSet;

use alloy::providers::{Provider, ProviderBuilder};

use crate::support::{Chain, OracleProcess, cid};

#[tokio::test(flavor = "multi_thread")]
async fn killed_oracle_resumes_from_its_cursor_without_duplicates() {
    let chain = Chain::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("oracle.sqlite");

    // First life: three requests from two accounts.
    let oracle = OracleProcess::start(&chain, &db).await;
    for (i, account) in [(1u8, 1usize), (2, 2), (3, 1)] {
        assert_eq!(chain.pin(account, &cid(i)).await, u64::from(i));
    }
    // The request count comes from the store and the cursor from the watcher's last report,
    // which follows the commit: wait for both.
    let provider = ProviderBuilder::new().connect_http(chain.anvil.endpoint_url());
    let head = provider.get_block_number().await.unwrap();
    let status = oracle
        .wait_for(|s| s["requests"] == 3 && s["cursor"].as_u64() == Some(head), "/status")
        .await;
    assert_eq!(status["started_from"], chain.deployment.block);
    let cursor_before = status["cursor"].as_u64().unwrap();
    oracle.kill().await;

    // While it is down: three more requests and some empty blocks.
    for i in 4u8..=6 {
        assert_eq!(chain.pin(2, &cid(i)).await, u64::from(i));
    }
    provider.raw_request::<_, ()>("anvil_mine".into(), (3u64,)).await.unwrap();

    // Second life: it resumes after its cursor, not from the deployment block.
    let oracle = OracleProcess::start(&chain, &db).await;
    let status = oracle.wait_for(|s| s["requests"] == 6, "/status").await;
    assert_eq!(status["started_from"].as_u64().unwrap(), cursor_before + 1);
    let head = provider.get_block_number().await.unwrap();
    let status = oracle.wait_for(|s| s["cursor"].as_u64() == Some(head), "/status").await;
    assert_eq!(status["requests"], 6);

    let list = oracle.get("/requests?limit=100").await.unwrap();
    let results = list["results"].as_array().unwrap();
    let ids: Vec<&str> = results.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["1", "2", "3", "4", "5", "6"], "each request exactly once, in order");
    for r in results {
        assert_eq!(r["status"], "queued");
    }
    let one = oracle.get("/requests/1").await.unwrap();
    assert_eq!(one["requester"], chain.address(1).to_checksum(None));
    let four = oracle.get("/requests/4").await.unwrap();
    assert_eq!(four["requester"], chain.address(2).to_checksum(None));
    let cids: BTreeSet<&str> = results.iter().map(|r| r["cid"].as_str().unwrap()).collect();
    assert_eq!(cids.len(), 6);

    // Third life right after a kill, with nothing new: still six.
    oracle.kill().await;
    let oracle = OracleProcess::start(&chain, &db).await;
    let status = oracle.wait_for(|s| s["cursor"].as_u64() >= Some(head), "/status").await;
    assert_eq!(status["requests"], 6);
    oracle.kill().await;
}
