//! A reorg under the agent (`anvil_reorg`, with the agent reading at the head: confirmations
//! 0): the blocks holding an order and the agent's claim on it are replaced with empty ones
//! while the agent downloads. The agent's work on the vanished order ends without sending
//! anything, and a new order that takes the orphaned order id (another piece) is claimed,
//! fetched and served as any other: its claim's nonce sits above the dropped claim's, which no
//! node takes back, and the transaction manager fills that gap.

use alloy::{primitives::U256, providers::Provider};
use estuary_contracts::PerpetualStorage;
use serde_json::Value;

use crate::support::{AgentProcess, Chain, Origin, Serve, car, work_for};

#[tokio::test(flavor = "multi_thread")]
async fn a_reorg_dropping_an_order_and_its_claim_ends_the_work_and_the_reused_id_is_served() {
    let chain = Chain::start().await;
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let agent = AgentProcess::start(&chain, 0, dir.path(), &[]).await;
    let gone = car(400_000, 80);
    // Slow (about 4 s), so that the reorg comes while the agent downloads.
    let gone_url = origin.add("gone", &gone.bytes, Serve::Throttle(100_000));
    let before = chain.head().await;
    let order = chain.create_order(4, &gone, 1, vec![gone_url]).await;
    let reference = order.to_string();
    agent
        .wait_for("/work?limit=100", 60, "the order claimed and downloading", |v| {
            work_for(v.as_array().unwrap(), "slot", &reference)
                .iter()
                .any(|w| w["state"] == "fetching")
        })
        .await;
    assert_eq!(chain.slot(order, 1000).await.state, 1, "claimed on chain");

    // Every block since the order was made is replaced by an empty one. A block mined between
    // reading the head and the reorg leaves the oldest of them (the order's) in place: then
    // again, never below `before` (the miners' set-up is there).
    let ps = PerpetualStorage::new(chain.perpetual(), chain.reader());
    while ps.getOrder(U256::from(order)).call().await.is_ok() {
        let depth = chain.head().await - before;
        let _: Value = chain
            .reader()
            .raw_request("anvil_reorg".into(), (depth, Vec::<Value>::new()))
            .await
            .unwrap();
    }
    assert_eq!(chain.slot(order, 1000).await.state, 0, "the claim is gone with its block");

    // The same order id, now another piece from another origin.
    let reused = car(300_000, 81);
    let reused_url = origin.add("reused", &reused.bytes, Serve::Good);
    assert_eq!(chain.create_order(4, &reused, 1, vec![reused_url]).await, order, "the id reused");
    let v = agent
        .wait_for(
            "/work?limit=100",
            120,
            "the vanished order's work ended, the new one active",
            |v| {
                let works = work_for(v.as_array().unwrap(), "slot", &reference);
                works.iter().any(|w| w["state"] == "failed")
                    && works.iter().any(|w| w["state"] == "active")
            },
        )
        .await;
    let works = work_for(v.as_array().unwrap(), "slot", &reference);
    assert_eq!(works.len(), 2, "{works:#?}");
    let old = works.iter().find(|w| w["state"] == "failed").unwrap();
    let new = works.iter().find(|w| w["state"] == "active").unwrap();
    let v1 =
        |c: &crate::support::Car| cid::Cid::try_from(c.piece_v1.as_slice()).unwrap().to_string();
    assert_eq!(old["piece_cid"], v1(&gone), "{old:#}");
    assert!(old["deal_id"].is_null(), "nothing was published for the vanished order: {old:#}");
    assert_eq!(new["piece_cid"], v1(&reused), "{new:#}");
    let slot = chain.slot(order, 1000).await;
    assert_eq!(slot.state, 3, "the new order's replica is active on chain");
    assert_eq!(slot.dealId, new["deal_id"].as_u64().unwrap());
    // The new claim's nonce sat above the dropped claim's, which no node took back: the
    // transaction manager filled the gap.
    let log = std::fs::read_to_string(agent.db.with_file_name("agent.log")).unwrap();
    assert!(log.contains("a nonce gap filled"), "the claim got through another way");
    agent.stop().await;
}
