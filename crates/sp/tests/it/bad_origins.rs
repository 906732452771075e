//! Origins that serve wrong bytes, a short CAR, a slow drip or an endless stream: nothing is
//! published, the claim is released once its deadline passes (the bond is lost by the
//! contract's rule, the slot goes back to the order), the reason is recorded, and the same
//! offer is not taken again. Offers outside the policy are skipped with their reasons.

use crate::support::{AgentProcess, Chain, Origin, Serve, car, work_for};

#[tokio::test(flavor = "multi_thread")]
async fn bad_origins_release_their_claims_and_offers_outside_the_policy_are_skipped() {
    let chain = Chain::start().await;
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let extra: Vec<String> = [
        "--fetch-min-rate",
        "20KiB",
        "--fetch-grace-secs",
        "1",
        "--fetch-attempts",
        "2",
        "--fetch-no-progress-secs",
        "3",
        "--max-piece-size",
        "512KiB",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let agent = AgentProcess::start(&chain, 0, dir.path(), &extra).await;

    let cases = [
        ("wrong", Serve::WrongBytes, "wrong piece"),
        ("short", Serve::Short, "the origin says"),
        ("drip", Serve::Drip, "too slow"),
        ("endless", Serve::Endless, "more than the CAR"),
    ];
    let mut orders = Vec::new();
    for (i, (name, mode, _)) in cases.iter().enumerate() {
        let c = car(200_000, 10 + i as u64);
        let url = origin.add(name, &c.bytes, *mode);
        orders.push(chain.create_order(4, &c, 1, vec![url]).await);
    }
    // Outside the policy: a piece too large.
    let big = car(700_000, 20);
    let big_id = chain.propose(&big, 0, origin.add("big", &big.bytes, Serve::Good), 200).await;

    for (order, (name, _, reason)) in orders.iter().zip(cases) {
        let w = agent
            .wait_for("/work?limit=1000", 120, &format!("the {name} origin given up"), |v| {
                work_for(v.as_array().unwrap(), "slot", &order.to_string())
                    .iter()
                    .any(|w| w["state"] == "releasing")
            })
            .await;
        let w = work_for(w.as_array().unwrap(), "slot", &order.to_string())[0].clone();
        assert!(w["reason"].as_str().unwrap().contains(reason), "{name}: {w:#}");
        assert!(w["deal_id"].is_null());
        let slot = chain.slot(*order, 1000).await;
        assert_eq!(slot.state, 1, "{name}: claimed, no deal published");
    }
    let status = agent.get("/status").await;
    let big_ref = format!("{big_id:#x}");
    let skip = status["recent_skips"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["reference"] == big_ref.as_str())
        .unwrap();
    assert_eq!(skip["reason_code"], "too_large", "{skip:#}");
    assert_eq!(origin.served("big"), 0, "nothing downloaded for a skipped offer");

    // Past the claims' deadlines, the agent reopens its slots itself (the keeper's tip
    // comes back to it; the bond goes to the order).
    chain.mine(130).await;
    for (order, (name, _, reason)) in orders.iter().zip(cases) {
        let v = agent
            .wait_for("/work?limit=1000", 60, &format!("the {name} claim released"), |v| {
                work_for(v.as_array().unwrap(), "slot", &order.to_string())
                    .iter()
                    .any(|w| w["state"] == "failed")
            })
            .await;
        let w = work_for(v.as_array().unwrap(), "slot", &order.to_string())[0].clone();
        assert!(w["reason"].as_str().unwrap().contains(reason), "the reason is kept: {w:#}");
        assert_eq!(chain.slot(*order, 1000).await.state, 0, "{name}: the slot is open again");
    }
    // The reopened orders are looked at again, and not taken from the same origins.
    let status = agent
        .wait_for("/status", 30, "the reopened orders skipped", |s| {
            s["skipped"]["failed_before"] == 4
        })
        .await;
    assert_eq!(status["work"]["slot/failed"], 4);
    agent.stop().await;
}

/// An agent whose key does not control its miner: its claim is refused
/// (`PerpetualStorageNotController`), recorded once, and the offer is not taken again at once.
/// Before, each refusal brought the offer straight back (its work ended), and the agent took
/// it again: a new piece of work every tenth of a second, for good.
#[tokio::test(flavor = "multi_thread")]
async fn a_refused_claim_is_not_taken_again_at_once() {
    let chain = Chain::start().await;
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let port = estuary_chain::devnet::free_port().unwrap();
    let args = crate::support::agent_args(&chain, 0, dir.path(), port);
    // Account 7 controls no miner.
    let agent =
        AgentProcess::start_args(args, &chain.key_hex(7), 1000, dir.path(), port, &[]).await;
    let c = car(100_000, 90);
    let url = origin.add("c", &c.bytes, Serve::Good);
    let order = chain.create_order(4, &c, 1, vec![url]).await.to_string();
    let v = agent
        .wait_for("/work?limit=100", 60, "the claim refused", |v| {
            work_for(v.as_array().unwrap(), "slot", &order).iter().any(|w| w["state"] == "failed")
        })
        .await;
    let works = work_for(v.as_array().unwrap(), "slot", &order);
    let w = works.iter().find(|w| w["state"] == "failed").unwrap();
    assert!(w["reason"].as_str().unwrap().contains("NotController"), "{w:#}");
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let works = agent.works().await;
    assert_eq!(work_for(&works, "slot", &order).len(), 1, "taken again: {works:#?}");
    assert_eq!(origin.served("c"), 0, "nothing downloaded");
    agent.stop().await;
}
