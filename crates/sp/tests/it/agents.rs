//! Three SP agents (f01000–f01002) on one chain: a perpetual order of three replicas gets its
//! three slots claimed, fetched, verified, sealed, published and collecting; a proposal naming
//! f01001 is taken by it alone, the others skipping it without downloading; the third agent
//! starts after the events and finds them (backfill); and what they hold is retrievable.

use alloy::primitives::U256;
use estuary_contracts::{DealClient, PerpetualStorage};
use estuary_dag::car::{CarItem, CarLimits, read_car};

use crate::support::{AgentProcess, Chain, Origin, Serve, car, work_for};

#[tokio::test(flavor = "multi_thread")]
async fn three_agents_serve_an_order_and_only_the_named_miner_takes_a_proposal() {
    let chain = Chain::start().await;
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let a0 = AgentProcess::start(&chain, 0, &dir.path().join("a0"), &[]).await;
    let a1 = AgentProcess::start(&chain, 1, &dir.path().join("a1"), &[]).await;

    // The client: an order of three replicas, and a contract deal for f01001 only.
    let order_car = car(600_000, 1);
    let url = origin.add("order", &order_car.bytes, Serve::Good);
    let order = chain.create_order(4, &order_car, 3, vec![url]).await;
    let proposal_car = car(300_000, 2);
    let purl = origin.add("proposal", &proposal_car.bytes, Serve::Good);
    let proposal = chain.propose(&proposal_car, 1001, purl, 200).await;
    let reference = format!("{proposal:#x}");

    // The third agent starts once those events are a few blocks deep: it must find them.
    chain.wait_block(chain.head().await + 4).await;
    let a2 = AgentProcess::start(&chain, 2, &dir.path().join("a2"), &[]).await;

    let order_ref = order.to_string();
    for agent in [&a0, &a1, &a2] {
        agent
            .wait_for("/work?limit=1000", 180, "its slot active and collecting", |v| {
                let works = v.as_array().unwrap();
                work_for(works, "slot", &order_ref)
                    .iter()
                    .any(|w| w["state"] == "active" && w["collected"] != "0")
            })
            .await;
    }
    let reader = chain.reader();
    let view = PerpetualStorage::new(chain.perpetual(), &reader)
        .getOrder(U256::from(order))
        .call()
        .await
        .unwrap();
    assert_eq!(view.active, 3, "three replicas active on chain");
    let mut holders = view.holders.clone();
    holders.sort_unstable();
    assert_eq!(holders, [1000, 1001, 1002]);
    for miner in [1000, 1001, 1002] {
        let slot = chain.slot(order, miner).await;
        assert_eq!(slot.state, 3, "f0{miner}'s slot is active");
    }

    // The proposal: f01001's deal, published and proven; nobody else tried.
    a1.wait_for("/work?limit=1000", 120, "the proposal active", |v| {
        work_for(v.as_array().unwrap(), "proposal", &reference)
            .iter()
            .any(|w| w["state"] == "active")
    })
    .await;
    let p =
        DealClient::new(chain.deal_client(), &reader).getProposal(proposal).call().await.unwrap();
    assert_eq!(p.deals.len(), 1);
    assert_eq!(p.deals[0].provider, 1001);
    assert!(p.deals[0].activated >= 0, "DealClient recorded the activation");
    for other in [&a0, &a2] {
        assert!(work_for(&other.works().await, "proposal", &reference).is_empty());
        let status = other.get("/status").await;
        let skip = status["recent_skips"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["reference"] == reference.as_str())
            .unwrap_or_else(|| panic!("f0{} recorded no skip: {status:#}", other.miner));
        assert_eq!(skip["reason_code"], "other_provider");
        assert!(skip["reason"].as_str().unwrap().contains("f01001"));
    }
    assert_eq!(
        origin.served("proposal"),
        proposal_car.bytes.len() as u64,
        "downloaded once, by f01001"
    );
    assert_eq!(
        origin.served("order"),
        3 * order_car.bytes.len() as u64,
        "each replica downloaded once"
    );

    // Retrievals from f01000: the piece by v2 and v1 CID, with ranges; blocks by CID.
    let http = reqwest::Client::new();
    let piece = http.get(format!("{}/piece/{}", a0.url, order_car.v2)).send().await.unwrap();
    assert_eq!(piece.status(), 200);
    assert_eq!(piece.headers()["accept-ranges"], "bytes");
    assert_eq!(piece.bytes().await.unwrap(), order_car.bytes);
    let v1 = cid::Cid::try_from(order_car.piece_v1.as_slice()).unwrap();
    let ranged = http
        .get(format!("{}/piece/{v1}", a0.url))
        .header("range", "bytes=100-199")
        .send()
        .await
        .unwrap();
    assert_eq!(ranged.status(), 206);
    assert_eq!(
        ranged.headers()["content-range"],
        format!("bytes 100-199/{}", order_car.bytes.len())
    );
    assert_eq!(ranged.bytes().await.unwrap(), order_car.bytes[100..200]);
    let root = order_car.root;
    let block = loop {
        let r = http.get(format!("{}/ipfs/{root}?format=raw", a0.url)).send().await.unwrap();
        if r.status() == 200 {
            break r.bytes().await.unwrap();
        }
        // The index is made after the piece is verified.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert_eq!(block, order_car.blocks[0].data);
    let second = order_car.blocks[1].cid;
    let r = http
        .get(format!("{}/ipfs/{second}", a0.url))
        .header("accept", "application/vnd.ipld.raw")
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap(), order_car.blocks[1].data);
    let carred = http.get(format!("{}/ipfs/{root}?format=car", a0.url)).send().await.unwrap();
    assert_eq!(carred.status(), 200);
    let (header, blocks) = read_car(&carred.bytes().await.unwrap(), CarLimits::default()).unwrap();
    assert_eq!(header.roots, [root]);
    assert_eq!(blocks.len(), 1, "a raw root has no links");
    let _ = CarItem::Header(header);
    let missing =
        http.get(format!("{}/ipfs/{}?format=raw", a0.url, proposal_car.root)).send().await.unwrap();
    assert_eq!(missing.status(), 404, "f01000 does not hold the proposal's piece");

    // What the agents say about themselves.
    let metrics =
        http.get(format!("{}/metrics", a1.url)).send().await.unwrap().text().await.unwrap();
    for line in [
        "estuary_sp_work{kind=\"slot\",state=\"active\"} 1",
        "estuary_sp_work{kind=\"proposal\",state=\"active\"} 1",
        "estuary_sp_claims 1",
        "estuary_sp_pieces 2",
    ] {
        assert!(metrics.contains(line), "{line} missing from\n{metrics}");
    }
    // f01001 downloaded the order's CAR and the proposal's once each, both verified.
    let downloaded = order_car.bytes.len() + proposal_car.bytes.len();
    for line in [
        "estuary_sp_downloads_total 2".to_owned(),
        "estuary_sp_download_failures_total 0".to_owned(),
        format!("estuary_sp_downloaded_bytes {downloaded}"),
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} missing from\n{metrics}");
    }
    let value = |text: &str, name: &str| -> u128 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing from\n{text}"))
    };
    assert!(value(&metrics, "estuary_sp_bounty_collected_attofil") > 0, "its slot collected");
    // f01000 skipped the proposal naming f01001, without downloading it.
    let m0 = http.get(format!("{}/metrics", a0.url)).send().await.unwrap().text().await.unwrap();
    assert_eq!(value(&m0, "estuary_sp_skipped{reason=\"other_provider\"}"), 1, "{m0}");
    assert_eq!(value(&m0, "estuary_sp_downloaded_bytes"), order_car.bytes.len() as u128);
    let claims = a1.get("/claims").await;
    assert_eq!(claims.as_array().unwrap().len(), 1);
    let deals = a1.get("/deals").await;
    assert_eq!(deals.as_array().unwrap().len(), 2, "the slot's deal and the proposal's");
    for a in [a0, a1, a2] {
        a.stop().await;
    }
}

/// `--max-downloads`: an agent allowed one download at a time fetches its three orders' CARs one
/// after another; allowed three, it fetches at least two at once (so a broken limit is seen;
/// three need all claims within a download's time, which a loaded machine may stagger). The
/// origin counts the responses it streams at once.
#[tokio::test(flavor = "multi_thread")]
async fn downloads_at_once_keep_to_max_downloads() {
    let chain = Chain::start().await;
    for (index, max) in [(0usize, 1u64), (1, 3)] {
        let origin = Origin::start().await;
        let dir = tempfile::tempdir().unwrap();
        let mut orders = Vec::new();
        // About 1.5 s each: long enough to overlap when allowed to.
        for i in 0..3u64 {
            let c = car(300_000, 60 + 10 * index as u64 + i);
            let url = origin.add(&format!("c{i}"), &c.bytes, Serve::Throttle(200_000));
            orders.push(chain.create_order(4, &c, 1, vec![url]).await.to_string());
        }
        let extra = vec!["--max-downloads".to_owned(), max.to_string()];
        let agent = AgentProcess::start(&chain, index, dir.path(), &extra).await;
        agent
            .wait_for("/work?limit=100", 120, "its three CARs fetched", |v| {
                let works = v.as_array().unwrap();
                orders.iter().all(|o| {
                    work_for(works, "slot", o).iter().any(|w| w["bytes_fetched"] != 0)
                        && work_for(works, "slot", o).iter().all(|w| w["state"] != "fetching")
                })
            })
            .await;
        let peak = origin.peak_streams();
        if max == 1 {
            assert_eq!(peak, 1, "--max-downloads 1");
        } else {
            assert!(peak >= 2, "--max-downloads {max}: at most {peak} at once");
        }
        agent.stop().await;
    }
}

/// A proposal open to any miner, for one replica, seen by two agents: one deal is published
/// and proven; the other agent either skips the proposal as full or, having taken it at the
/// same time, has its publication refused (the contract, asked by the market's
/// AuthenticateMessage, has no replica left) and records the work failed, nothing published.
#[tokio::test(flavor = "multi_thread")]
async fn a_proposal_open_to_any_miner_is_taken_once() {
    let chain = Chain::start().await;
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let c = car(250_000, 5);
    let url = origin.add("any", &c.bytes, Serve::Good);
    let proposal = chain.propose(&c, 0, url, 200).await;
    let reference = format!("{proposal:#x}");
    let agents = [
        AgentProcess::start(&chain, 0, &dir.path().join("a0"), &[]).await,
        AgentProcess::start(&chain, 1, &dir.path().join("a1"), &[]).await,
    ];
    let reader = chain.reader();
    let dc = DealClient::new(chain.deal_client(), &reader);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let deal = loop {
        let deals = dc.getProposal(proposal).call().await.unwrap().deals;
        if let Some(d) = deals.iter().find(|d| d.activated >= 0) {
            assert_eq!(deals.len(), 1, "one replica, one deal");
            break d.clone();
        }
        assert!(std::time::Instant::now() < deadline, "no deal proven: {deals:?}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    for agent in &agents {
        let v = agent
            .wait_for("/work?limit=100", 120, "the proposal active, failed or skipped", |v| {
                let works = work_for(v.as_array().unwrap(), "proposal", &reference);
                if agent.miner == deal.provider {
                    works.iter().any(|w| w["state"] == "active")
                } else {
                    works.is_empty() || works.iter().any(|w| w["state"] == "failed")
                }
            })
            .await;
        let works = work_for(v.as_array().unwrap(), "proposal", &reference);
        if agent.miner == deal.provider {
            assert_eq!(works[0]["deal_id"].as_u64(), Some(deal.dealId));
        } else if let Some(w) = works.first() {
            assert!(w["deal_id"].is_null(), "nothing published by the other: {w:#}");
        } else {
            let skipped = agent
                .wait_for("/status", 30, "the full proposal skipped", |s| {
                    s["recent_skips"].as_array().unwrap().iter().any(|l| {
                        l["reference"] == reference.as_str() && l["reason_code"] == "closed"
                    })
                })
                .await;
            assert!(!skipped.is_null());
        }
    }
    let deals = dc.getProposal(proposal).call().await.unwrap().deals;
    assert_eq!(deals.len(), 1, "still one deal: {deals:?}");
    for agent in agents {
        agent.stop().await;
    }
}
