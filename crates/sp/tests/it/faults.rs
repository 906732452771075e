//! Sealing faults, told to the simulated sealer: a replica whose sector is terminated ends, its
//! slot is reopened by the agent and claimed again (the piece is already held: nothing is
//! downloaded again); a deal never proven by its start epoch is given up and its claim
//! released; a piece the sealer refuses is given up before anything is published, its claim
//! released too.

use crate::support::{AgentProcess, Chain, Origin, Serve, car, work_for};

#[tokio::test(flavor = "multi_thread")]
async fn a_terminated_replica_is_claimed_again_and_an_unproven_deal_is_released() {
    let chain = Chain::start().await;
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let terminated = car(200_000, 50);
    let expired = car(200_000, 51);
    let refused = car(200_000, 52);
    let extra = vec![
        "--sim-fault".to_owned(),
        format!("{}=fail", refused.v2),
        "--sim-fault".to_owned(),
        format!("{}=terminate", terminated.v2),
        "--sim-fault".to_owned(),
        format!("{}=expire", expired.v2),
    ];
    let agent = AgentProcess::start(&chain, 0, dir.path(), &extra).await;
    let t_url = origin.add("t", &terminated.bytes, Serve::Good);
    let e_url = origin.add("e", &expired.bytes, Serve::Good);
    let t_order = chain.create_order(4, &terminated, 1, vec![t_url]).await.to_string();
    let e_order = chain.create_order(4, &expired, 1, vec![e_url]).await.to_string();
    let f_url = origin.add("f", &refused.bytes, Serve::Good);
    let f_order = chain.create_order(4, &refused, 1, vec![f_url]).await.to_string();

    let v = agent
        .wait_for("/work?limit=100", 120, "the terminated replica ended and claimed again", |v| {
            let works = work_for(v.as_array().unwrap(), "slot", &t_order);
            works.iter().any(|w| w["state"] == "ended")
                && works.iter().any(|w| w["state"] == "active")
        })
        .await;
    let works = work_for(v.as_array().unwrap(), "slot", &t_order);
    let ended = works.iter().find(|w| w["state"] == "ended").unwrap();
    assert!(ended["reason"].as_str().unwrap().contains("terminated"), "{ended:#}");
    let again = works.iter().find(|w| w["state"] == "active").unwrap();
    assert_ne!(again["deal_id"], ended["deal_id"], "a new deal for the new claim");
    assert_eq!(again["bytes_fetched"], 0, "the piece was held already");
    assert_eq!(origin.served("t"), terminated.bytes.len() as u64);
    assert_eq!(chain.slot(t_order.parse().unwrap(), 1000).await.state, 3);

    // The deal never proven: given up at its deadline, its claim released after it.
    let v = agent
        .wait_for("/work?limit=100", 60, "the unproven deal published", |v| {
            work_for(v.as_array().unwrap(), "slot", &e_order)
                .iter()
                .any(|w| w["state"] == "activating")
        })
        .await;
    let deadline =
        work_for(v.as_array().unwrap(), "slot", &e_order)[0]["deadline"].as_u64().unwrap();
    let head = chain.head().await;
    chain.mine(deadline + 1 - head.min(deadline)).await;
    let v = agent
        .wait_for("/work?limit=100", 60, "the unproven deal's claim released", |v| {
            work_for(v.as_array().unwrap(), "slot", &e_order).iter().any(|w| w["state"] == "failed")
        })
        .await;
    let w = work_for(v.as_array().unwrap(), "slot", &e_order)[0].clone();
    assert!(w["reason"].as_str().unwrap().contains("not proven"), "{w:#}");
    assert_eq!(chain.slot(e_order.parse().unwrap(), 1000).await.state, 0, "the slot is open again");

    // The piece the sealer refused: fetched and verified, never published, its claim released.
    let v = agent
        .wait_for("/work?limit=100", 60, "the refused piece's claim released", |v| {
            work_for(v.as_array().unwrap(), "slot", &f_order).iter().any(|w| w["state"] == "failed")
        })
        .await;
    let w = work_for(v.as_array().unwrap(), "slot", &f_order)[0].clone();
    assert!(w["reason"].as_str().unwrap().contains("sealing failed"), "{w:#}");
    assert!(w["deal_id"].is_null(), "nothing published: {w:#}");
    assert_eq!(origin.served("f"), refused.bytes.len() as u64);
    assert_eq!(chain.slot(f_order.parse().unwrap(), 1000).await.state, 0, "the slot is open again");
    agent.stop().await;
}
