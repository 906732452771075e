//! The crash test: an agent SIGKILLed at 20 random points while it claims, downloads, seals
//! and publishes four orders, and restarted each time. Every order ends with its slot active;
//! the chain holds exactly one claim, one deal, one activation and one publish per order, all
//! sent by the agent's account, none reverted; and each download resumed, fetching at most
//! the CAR plus what the kill lost in flight per interruption.

use std::{collections::HashMap, time::Duration};

use alloy::{
    consensus::Transaction as _, eips::BlockNumberOrTag, primitives::U256, providers::Provider,
    sol_types::SolCall,
};
use estuary_contracts::{MarketSimulator, MinerActorSimulator, PerpetualStorage};
use rand::{Rng, SeedableRng};

use crate::support::{AgentProcess, Chain, Origin, Serve, car, work_for};

/// What one kill may lose of a download: the writer's buffer, the chunks on their way to it
/// (16 KiB each from the throttled origin), and what sat in the sockets.
const LOST_PER_KILL: u64 = estuary_sp::fetch::WRITE_BUFFER as u64
    + estuary_sp::fetch::IN_FLIGHT as u64 * 16 * 1024
    + 64 * 1024;

#[tokio::test(flavor = "multi_thread")]
async fn killed_agent_resumes_without_sending_anything_twice() {
    // Half-second blocks: a one-minute claim window for twenty lives.
    let chain = Chain::start_with(0.5).await;
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let seed: u64 = std::env::var("ESTUARY_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("crash test seed {seed} (ESTUARY_CRASH_SEED to replay)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);

    let cars: Vec<_> = (0..4).map(|i| car(1_500_000, 40 + i)).collect();
    let names: Vec<String> = (0..4).map(|i| format!("c{i}")).collect();
    // Slow enough (about two seconds each) for kills to land in every phase of every order.
    let urls: Vec<String> = cars
        .iter()
        .zip(&names)
        .map(|(c, n)| origin.add(n, &c.bytes, Serve::Throttle(800_000)))
        .collect();
    let mut orders = Vec::new();
    let extra = vec!["--max-downloads".to_owned(), "2".to_owned()];
    let mut agent = AgentProcess::start(&chain, 0, dir.path(), &extra).await;
    let partial_dir = dir.path().join("data/partial");
    let mut interrupted: HashMap<String, u64> = HashMap::new();
    // The partial files' sizes after each kill, by work id: where their downloads must resume.
    let mut resume_at: HashMap<String, Vec<u64>> = HashMap::new();
    for kill in 0..20 {
        // A new order every fourth life, so that claims, downloads and publishes keep coming.
        if kill % 4 == 0 && kill / 4 < 4 {
            let i = kill / 4;
            orders.push(chain.create_order(4, &cars[i], 1, vec![urls[i].clone()]).await);
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(100..1200))).await;
        agent.kill().await;
        // Downloads cut by this kill: their partial files.
        for entry in std::fs::read_dir(&partial_dir).into_iter().flatten().flatten() {
            let id = entry.path().file_stem().unwrap().to_string_lossy().into_owned();
            let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
            resume_at.entry(id.clone()).or_default().push(size);
            *interrupted.entry(id).or_default() += 1;
        }
        agent = AgentProcess::start(&chain, 0, dir.path(), &extra).await;
    }

    let refs: Vec<String> = orders.iter().map(ToString::to_string).collect();
    let works = agent
        .wait_for("/work?limit=1000", 180, "every slot active", |v| {
            let works = v.as_array().unwrap();
            refs.iter().all(|r| work_for(works, "slot", r).iter().any(|w| w["state"] == "active"))
        })
        .await;
    let works = works.as_array().unwrap();
    for (i, r) in refs.iter().enumerate() {
        let mine = work_for(works, "slot", r);
        assert_eq!(mine.len(), 1, "order {r}: one piece of work, none lost or redone: {mine:#?}");
        assert_eq!(chain.slot(orders[i], 1000).await.state, 3, "order {r}: active on chain");
        // Downloads resumed: at most the CAR, plus what each kill lost in flight.
        let id = mine[0]["id"].to_string();
        let kills = interrupted.get(&id).copied().unwrap_or(0);
        let served = origin.served(&names[i]);
        let size = cars[i].bytes.len() as u64;
        eprintln!("order {r}: {served} bytes served for {size}, {kills} interrupted downloads");
        assert!(served >= size);
        // Each download cut with bytes on disk went on from exactly there: the origin saw a
        // request start at that byte (a download restarted from zero would not).
        let starts = origin.starts(&names[i]);
        eprintln!(
            "order {r}: requests from {starts:?}, partial files at kills {:?}",
            resume_at.get(&id)
        );
        for at in resume_at.get(&id).into_iter().flatten() {
            if (1..size).contains(at) {
                assert!(starts.contains(at), "order {r}: not resumed from {at}: {starts:?}");
            }
        }
        assert!(
            served <= size + kills * LOST_PER_KILL,
            "order {r}: {served} bytes for {size} after {kills} kills"
        );
    }

    // Every transaction the agent's account sent, by what it did.
    let reader = chain.reader();
    let sp = chain.address(1);
    let mut sent: HashMap<&str, Vec<U256>> = HashMap::new();
    let head = chain.head().await;
    for n in chain.deployment.block..=head {
        let block =
            reader.get_block_by_number(BlockNumberOrTag::Number(n)).full().await.unwrap().unwrap();
        for tx in block.transactions.txns() {
            if tx.inner.signer() != sp {
                continue;
            }
            let receipt =
                reader.get_transaction_receipt(*tx.inner.tx_hash()).await.unwrap().unwrap();
            assert!(
                receipt.status(),
                "a reverted transaction from the agent: {:#x}",
                tx.inner.tx_hash()
            );
            let input = tx.input();
            let selector: [u8; 4] = input[..4].try_into().unwrap();
            let what = if selector == PerpetualStorage::claimCall::SELECTOR {
                ("claim", PerpetualStorage::claimCall::abi_decode(input).unwrap().orderId)
            } else if selector == PerpetualStorage::publishCall::SELECTOR {
                ("publish", PerpetualStorage::publishCall::abi_decode(input).unwrap().orderId)
            } else if selector == MarketSimulator::publishStorageDealsCall::SELECTOR {
                ("deal", U256::ZERO)
            } else if selector == MinerActorSimulator::activateDealsCall::SELECTOR {
                ("activate", U256::ZERO)
            } else if selector == PerpetualStorage::collectCall::SELECTOR {
                ("collect", PerpetualStorage::collectCall::abi_decode(input).unwrap().orderId)
            } else {
                ("other", U256::ZERO)
            };
            sent.entry(what.0).or_default().push(what.1);
        }
    }
    let mut claims = sent["claim"].clone();
    claims.sort();
    let mut expected: Vec<U256> = orders.iter().map(|o| U256::from(*o)).collect();
    expected.sort();
    assert_eq!(claims, expected, "one claim per order");
    let mut publishes = sent["publish"].clone();
    publishes.sort();
    assert_eq!(publishes, expected, "one publish per order");
    assert_eq!(sent["deal"].len(), 4, "one deal per order");
    assert_eq!(sent["activate"].len(), 4, "one activation per order");
    eprintln!(
        "transactions sent: {:?}",
        sent.iter().map(|(k, v)| (*k, v.len())).collect::<Vec<_>>()
    );
    agent.stop().await;
}
