//! The oracle makes a `PerpetualStorage` order for every piece it reports, exactly once: the real
//! process, SIGKILLed at random points while it pins, reports and orders, ends with one order
//! per piece on chain, each bound to its piece in `/deals`, none funded twice.

use std::{collections::HashMap, sync::Arc, time::Duration};

use alloy::{
    providers::{Provider, ProviderBuilder},
    rpc::types::Filter,
    sol_types::SolEvent,
};
use estuary_contracts::{EstuaryPinning, PerpetualStorage};
use serde_json::Value;

use crate::{
    oracle_pinning::{Cars, add, cid_bytes, gateway},
    support::{Chain, OracleProcess, noise},
};

pub(crate) async fn oracle_with(
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

/// Requests `roots` in `kills` batches while the oracle (with `extra`) is SIGKILLed after each,
/// at a random point 0.1–1 s later; returns the oracle running after the last kill.
pub(crate) async fn pin_through_kills(
    chain: &Chain,
    dir: &std::path::Path,
    url: &str,
    roots: &[String],
    kills: usize,
    extra: &[&str],
) -> OracleProcess {
    let pins = roots.len();
    let mut oracle = oracle_with(chain, dir, url, extra).await;
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
        oracle = oracle_with(chain, dir, url, extra).await;
    }
    oracle
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
    let oracle = pin_through_kills(&chain, dir.path(), &url, &roots, kills, &[]).await;
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

/// The replica of `provider` in the order shown by `/deals` for `piece`.
async fn replica(oracle: &OracleProcess, piece: &str, provider: u64) -> Option<Value> {
    let body = oracle.get(&format!("/deals?piece={piece}")).await?;
    body["results"][0]["replicas"].as_array()?.iter().find(|r| r["provider"] == provider).cloned()
}

/// Storage providers acting through the contracts, as the SP agent does: miners f01000,
/// f01001 and f01002 are controlled by accounts 1, 2 and 3.
struct Sps<'a> {
    chain: &'a Chain,
    order: alloy::primitives::U256,
}

impl Sps<'_> {
    fn wallet(&self, miner: u64) -> impl Provider + use<> {
        self.chain.wallet(usize::try_from(miner - 999).unwrap())
    }

    fn perpetual(&self) -> alloy::primitives::Address {
        self.chain.deployment.contracts["PerpetualStorage"]
    }

    /// `miner` claims a slot of the order; returns its proposal id.
    async fn claim(&self, miner: u64) -> alloy::primitives::B256 {
        use alloy::primitives::U256;
        use estuary_contracts::{MARKET_ACTOR, MarketSimulator};
        let sp = self.wallet(miner);
        let ps = PerpetualStorage::new(self.perpetual(), &sp);
        let market = MarketSimulator::new(MARKET_ACTOR, &sp);
        let collateral = market.minProviderCollateral(1 << 20).call().await.unwrap();
        let bond = U256::from(ps.bondFor(self.order).call().await.unwrap()) * U256::from(2u64);
        let receipt = mined!(ps.claim(self.order, miner, collateral).value(bond));
        assert!(receipt.status(), "f0{miner} claims");
        receipt.decoded_log::<PerpetualStorage::SlotClaimed>().unwrap().data.proposalId
    }

    /// `miner` claims, publishes its deal in `sector` and proves it: the replica is active.
    async fn deliver(&self, miner: u64, sector: u64) {
        use estuary_contracts::{
            MARKET_ACTOR, MarketSimulator, MinerActorSimulator, masked_id_address,
        };
        let proposal_id = self.claim(miner).await;
        let sp = self.wallet(miner);
        let ps = PerpetualStorage::new(self.perpetual(), &sp);
        let market = MarketSimulator::new(MARKET_ACTOR, &sp);
        let proposal = ps.getDealProposal(proposal_id).call().await.unwrap();
        let receipt =
            mined!(market.publishStorageDeals(vec![MarketSimulator::ClientDealProposal {
                proposal,
                clientSignature: alloy::primitives::Bytes::from_static(&[0xde, 0xad]),
            }]));
        let deal = receipt.decoded_log::<MarketSimulator::DealPublished>().unwrap().data.id;
        let actor = MinerActorSimulator::new(masked_id_address(miner), &sp);
        mined!(actor.activateDeals(sector, i64::MAX, vec![deal]));
        assert!(mined!(ps.publish(self.order, miner)).status(), "f0{miner} publishes");
    }

    /// `miner`'s `sector` is terminated: the market drops its deals before their end.
    async fn terminate(&self, miner: u64, sector: u64) {
        use estuary_contracts::{MinerActorSimulator, masked_id_address};
        let sp = self.wallet(miner);
        let actor = MinerActorSimulator::new(masked_id_address(miner), &sp);
        mined!(actor.terminateSectors(vec![sector]));
    }
}

/// The keeper's arguments: the market read through the `DealStateView` at `view` every
/// second, `replicas` per piece, and `more`.
fn keeper_args<'a>(view: &'a str, replicas: &'a str, more: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "--deal-state-view-address",
        view,
        "--deal-check-secs",
        "1",
        "--deal-replicas",
        replicas,
    ];
    args.extend_from_slice(more);
    args
}

/// An oracle with deals and the keeper (`extra` added), one pinned piece and its order: the
/// oracle, the piece CID and the order id.
async fn one_order(
    chain: &Chain,
    dir: &std::path::Path,
    extra: &[&str],
) -> (OracleProcess, String, alloy::primitives::U256) {
    let cars: Cars = Arc::default();
    let url = gateway(Arc::clone(&cars)).await;
    let oracle = oracle_with(chain, dir, &url, extra).await;
    let (root, piece, car) = add(dir, "k", &noise(5000, 5));
    cars.lock().unwrap().insert(root.clone(), car);
    chain.pin(4, &cid_bytes(&root)).await;
    let orders = oracle
        .wait_for_within(
            |v| v["results"][0]["order_id"].is_u64(),
            "/deals",
            Duration::from_secs(60),
        )
        .await;
    let order = alloy::primitives::U256::from(orders["results"][0]["order_id"].as_u64().unwrap());
    (oracle, piece, order)
}

/// Polls the replica of `provider` until `ok` holds (30 s at most).
async fn wait_replica(
    oracle: &OracleProcess,
    piece: &str,
    provider: u64,
    ok: impl Fn(&Value) -> bool,
    what: &str,
) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let r = replica(oracle, piece, provider).await;
        if let Some(r) = r.as_ref().filter(|r| ok(r)) {
            return r.clone();
        }
        assert!(std::time::Instant::now() < deadline, "{what}: {r:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn reopenings(chain: &Chain) -> Vec<PerpetualStorage::SlotReopened> {
    let reader = ProviderBuilder::new().connect_http(chain.anvil.endpoint_url());
    let logs = reader
        .get_logs(
            &Filter::new()
                .address(chain.deployment.contracts["PerpetualStorage"])
                .event_signature(PerpetualStorage::SlotReopened::SIGNATURE_HASH)
                .from_block(0),
        )
        .await
        .unwrap();
    logs.iter()
        .map(|l| l.log_decode::<PerpetualStorage::SlotReopened>().unwrap().inner.data)
        .collect()
}

/// The keeper, as storage providers meet it on the local chain: an SP that claims and never
/// publishes has its claim reopened once its deadline passes, and another SP takes the slot;
/// an SP whose deal the market terminates (slashed) is seen through `DealStateView`, stops
/// counting, and its slot is reopened too. `/providers`, `/metrics` and the API show all of it.
#[tokio::test(flavor = "multi_thread")]
async fn the_keeper_reopens_a_lapsed_claim_and_a_slashed_replica_and_scores_the_providers() {
    let chain = Chain::start().await;
    let dir = tempfile::tempdir().unwrap();
    let view = chain.deployment.contracts["DealStateView"].to_string();
    let extra = keeper_args(&view, "2", &["--deal-expiring-epochs", "100"]);
    let (oracle, piece, order) = one_order(&chain, dir.path(), &extra).await;
    let sps = Sps { chain: &chain, order };
    // f01000 claims and is never heard of again; f01001 delivers.
    sps.claim(1000).await;
    sps.deliver(1001, 7).await;
    // The market is read: the replica is active, and so is its deal.
    let active = |r: &Value| r["state"] == "active" && r["market"]["state"] == "active";
    wait_replica(&oracle, &piece, 1001, active, "the market never read").await;
    let claimed = |r: &Value| r["state"] == "claimed";
    let lapsed = wait_replica(&oracle, &piece, 1000, claimed, "the claim never seen").await;
    assert_eq!(lapsed["state"], "claimed");
    let claim_deadline = lapsed["deadline"].as_u64().expect("the claim's deadline");

    // Past f01000's deadline, the keeper reopens its claim (its bond pays the keeper's tip).
    chain.mine_to(claim_deadline + 1).await;
    let reopened = |r: &Value| r["state"] == "reopened";
    wait_replica(&oracle, &piece, 1000, reopened, "the lapsed claim was never reopened").await;
    let events = reopenings(&chain).await;
    assert_eq!(events.len(), 1, "reopened once");
    let operator = *chain.anvil.addresses().last().unwrap();
    let e = &events[0];
    assert_eq!((e.provider, e.keeper, e.bondForfeited), (1000, operator, true));
    // The slot went elsewhere: f01002 takes it.
    sps.claim(1002).await;

    // f01001's sector is terminated: the market drops the deal before its end. The keeper sees
    // it gone, the replica stops counting, and its slot is reopened.
    sps.terminate(1001, 7).await;
    let slashed =
        wait_replica(&oracle, &piece, 1001, reopened, "the slashed replica was never reopened")
            .await;
    assert_eq!(slashed["market"]["state"], "slashed", "{slashed}");
    let order_view = oracle.get(&format!("/deals?piece={piece}")).await.unwrap();
    assert_eq!(order_view["results"][0]["replicas_active"], 0);
    assert_eq!(reopenings(&chain).await.len(), 2);

    // The providers, scored: the one that never failed first.
    let providers = oracle.get("/providers").await.unwrap();
    let by = |id: u64| {
        providers["results"].as_array().unwrap().iter().find(|p| p["provider"] == id).cloned()
    };
    let (p0, p1, p2) = (by(1000).unwrap(), by(1001).unwrap(), by(1002).unwrap());
    assert_eq!((p0["lapsed"].as_u64(), p0["address"].as_str()), (Some(1), Some("f01000")));
    assert_eq!((p1["activated"].as_u64(), p1["ended_early"].as_u64()), (Some(1), Some(1)));
    assert_eq!((p1["slashed"].as_u64(), p2["in_flight"].as_u64()), (Some(1), Some(1)));
    assert_eq!(providers["results"][0]["provider"], 1002, "{providers}");
    assert!(p2["score"].as_f64() > p0["score"].as_f64());
    let metrics = oracle.metrics().await;
    assert!(metrics.contains("estuary_provider_score{provider=\"f01002\"} 0.5"), "{metrics}");
    assert!(metrics.contains("estuary_deals{state=\"claimed\",provider=\"f01002\"} 1"));
    oracle.kill().await;
}

/// The order's replica target as the contract has it now: (replicas, in use, active).
async fn order_slots(chain: &Chain, order: alloy::primitives::U256) -> (u16, u16, u16) {
    let reader = ProviderBuilder::new().connect_http(chain.anvil.endpoint_url());
    let ps = PerpetualStorage::new(chain.deployment.contracts["PerpetualStorage"], &reader);
    let o = ps.getOrder(order).call().await.unwrap();
    (o.replicas, o.inUse, o.active)
}

/// Waits until `order`'s (target, slots in use, active) on chain is `want` (30 s at most).
async fn until_slots(
    chain: &Chain,
    order: alloy::primitives::U256,
    want: (u16, u16, u16),
    what: &str,
) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while order_slots(chain, order).await != want {
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: {:?}",
            order_slots(chain, order).await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every replica target `PerpetualStorage`'s orders were set to, oldest first.
async fn target_changes(chain: &Chain) -> Vec<u16> {
    let reader = ProviderBuilder::new().connect_http(chain.anvil.endpoint_url());
    let logs = reader
        .get_logs(
            &Filter::new()
                .address(chain.deployment.contracts["PerpetualStorage"])
                .event_signature(PerpetualStorage::ReplicaTargetChanged::SIGNATURE_HASH)
                .from_block(0),
        )
        .await
        .unwrap();
    logs.iter()
        .map(|l| l.log_decode::<PerpetualStorage::ReplicaTargetChanged>().unwrap().inner.data)
        .map(|e| e.replicas)
        .collect()
}

/// Renewal of a perpetual replica, as SPs meet it on the local chain: with one replica asked
/// for, an active replica whose term ends within `--deal-renew-epochs` counts as missing, so
/// the keeper raises the order's target to two (once the order can pay for another claim);
/// another SP claims the extra slot, and the keeper lowers the target back to one at once, below
/// the two slots in use. The new replica is active before the old term ends; once it has ended,
/// the old slot is reopened and no slot opens for anyone else. The order never has fewer than
/// one active replica, and each change is made once.
#[tokio::test(flavor = "multi_thread")]
async fn a_replica_near_its_terms_end_is_renewed_at_another_provider_before_it_ends() {
    let chain = Chain::start().await;
    let dir = tempfile::tempdir().unwrap();
    let view = chain.deployment.contracts["DealStateView"].to_string();
    let extra = keeper_args(&view, "1", &["--deal-renew-epochs", "600"]);
    let (oracle, piece, order) = one_order(&chain, dir.path(), &extra).await;
    let sps = Sps { chain: &chain, order };
    sps.deliver(1000, 7).await;
    let active = |r: &Value| r["state"] == "active" && r["end_epoch"].is_u64();
    let first = wait_replica(&oracle, &piece, 1000, active, "the replica never active").await;
    let end = first["end_epoch"].as_u64().unwrap();
    assert_eq!(order_slots(&chain, order).await, (1, 1, 1));

    // Within the renewal window, but funded for one term only (`--deal-funded-terms 1`): the
    // order cannot pay for another claim, so the target stays (a raise would show within a
    // few keeper rounds).
    chain.mine_to(end - 600).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(order_slots(&chain, order).await.0, 1, "raised with nothing to pay a claim");
    // Anyone may fund an order: once it can pay, the target is raised by one.
    let funder = chain.wallet(5);
    let ps = PerpetualStorage::new(chain.deployment.contracts["PerpetualStorage"], &funder);
    let bounty = alloy::primitives::U256::from(ps.currentBounty(order).call().await.unwrap());
    assert!(mined!(ps.fund(order).value(bounty * alloy::primitives::U256::from(2u64))).status());
    until_slots(&chain, order, (2, 1, 1), "the target was never raised").await;
    // Another SP takes it; the target goes back to one at once, below the two slots in use.
    sps.deliver(1001, 8).await;
    until_slots(&chain, order, (1, 2, 2), "the target was never lowered after the claim").await;
    let overlap = |v: &Value| v["results"][0]["replicas_active"] == 2;
    oracle
        .wait_for_within(overlap, &format!("/deals?piece={piece}"), Duration::from_secs(30))
        .await;

    // The first term is over: its slot is reopened, and no slot opens for a third SP.
    chain.mine_to(end).await;
    let reopened = |r: &Value| r["state"] == "reopened";
    wait_replica(&oracle, &piece, 1000, reopened, "the ended replica was never reopened").await;
    assert_eq!(order_slots(&chain, order).await, (1, 1, 1));
    let third = chain.wallet(3);
    let ps3 = PerpetualStorage::new(chain.deployment.contracts["PerpetualStorage"], &third);
    let bond = alloy::primitives::U256::from(ps3.bondFor(order).call().await.unwrap());
    let refused = ps3.claim(order, 1002, alloy::primitives::U256::ZERO).value(bond).call().await;
    let why = refused.expect_err("a slot opened after the renewal");
    let why = why.as_decoded_interface_error::<PerpetualStorage::PerpetualStorageErrors>();
    assert!(
        matches!(
            why,
            Some(PerpetualStorage::PerpetualStorageErrors::PerpetualStorageNoOpenSlot(_))
        ),
        "{why:?}"
    );
    let targets = target_changes(&chain).await;
    assert_eq!(targets, [2, 1], "raised once, lowered once");
    let events = reopenings(&chain).await;
    assert_eq!(events.len(), 1, "reopened once");
    assert_eq!((events[0].provider, events[0].bondForfeited), (1000, false));
    oracle.kill().await;
}

/// A DataDAO's replica near its term's end is renewed through the DAO (the order's client; the
/// oracle is its operator, `DataDAO.renewReplicas`): funded on terms of two replicas, the order
/// is kept at one by the DAO's owner (`setOrderReplicas`, no event the oracle reads); the keeper
/// raises the order's target to two within the renewal window, another SP claims the extra
/// slot, and the target goes back to one, the DAO's, not the terms'. Each change is made once.
#[tokio::test(flavor = "multi_thread")]
async fn a_datadao_replica_near_its_terms_end_is_renewed_through_the_dao() {
    use alloy::primitives::U256;
    use estuary_contracts::DataDAO;
    let chain = Chain::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cars: Cars = Arc::default();
    let url = gateway(Arc::clone(&cars)).await;
    let dao_address = chain.deployment.contracts["DataDAO"];
    let dao_arg = dao_address.to_string();
    let view = chain.deployment.contracts["DealStateView"].to_string();
    let extra =
        keeper_args(&view, "1", &["--datadao-address", &dao_arg, "--deal-renew-epochs", "600"]);
    let oracle = oracle_with(&chain, dir.path(), &url, &extra).await;
    // The DAO funds two replicas of each CID; two members and a treasury.
    let terms = DataDAO::OrderTerms {
        replicas: 2,
        term: 3600,
        bounty: alloy::primitives::Uint::from(100_000_000_000_000_000u128),
        verified: false,
    };
    chain.datadao(&[5, 6], Some(terms)).await;
    let owner = chain.wallet(0);
    let dao = DataDAO::new(dao_address, &owner);
    let (root, piece, car) = add(dir.path(), "daorenew", &noise(5000, 12));
    cars.lock().unwrap().insert(root.clone(), car);
    chain.datadao_accept(1, &root, 5000, [5, 6, 6]).await;
    let orders = oracle
        .wait_for_within(
            |v| v["results"][0]["order_id"].is_u64(),
            "/deals",
            Duration::from_secs(60),
        )
        .await;
    assert_eq!(orders["results"][0]["backend"], "datadao");
    let order = U256::from(orders["results"][0]["order_id"].as_u64().unwrap());
    assert!(mined!(dao.setOrderReplicas(U256::from(1), 1)).status());

    let sps = Sps { chain: &chain, order };
    sps.deliver(1000, 7).await;
    let active = |r: &Value| r["state"] == "active" && r["end_epoch"].is_u64();
    let first = wait_replica(&oracle, &piece, 1000, active, "the replica never active").await;
    let end = first["end_epoch"].as_u64().unwrap();
    assert_eq!(order_slots(&chain, order).await, (1, 1, 1));
    // Within the renewal window: raised through the DAO; another SP claims; back to one.
    chain.mine_to(end - 600).await;
    until_slots(&chain, order, (2, 1, 1), "the DAO's target was never raised").await;
    sps.deliver(1001, 8).await;
    until_slots(&chain, order, (1, 2, 2), "the DAO's target was never lowered after the claim")
        .await;
    let reader = ProviderBuilder::new().connect_http(chain.anvil.endpoint_url());
    let targets = target_changes(&chain).await;
    assert_eq!(targets, [1, 2, 1], "the owner's one, raised once, lowered once");
    let kept =
        DataDAO::new(dao_address, &reader).orderReplicas(U256::from(1)).call().await.unwrap();
    assert_eq!(kept, 1, "the DAO's own replicas unchanged");
    oracle.kill().await;
}

/// A market read that fails is retried and never taken for a deal that is gone: with reads
/// that always fail (the view's address names a contract that is not one), a replica whose
/// deal the market did drop stays active and is not reopened — while a lapsed claim still is.
#[tokio::test(flavor = "multi_thread")]
async fn a_market_read_that_fails_is_never_taken_for_a_deal_gone() {
    let chain = Chain::start().await;
    let dir = tempfile::tempdir().unwrap();
    let not_a_view = chain.deployment.pinning.to_string();
    let extra = keeper_args(&not_a_view, "2", &[]);
    let (oracle, piece, order) = one_order(&chain, dir.path(), &extra).await;
    let sps = Sps { chain: &chain, order };
    sps.deliver(1001, 3).await;
    sps.claim(1000).await;
    let active = |r: &Value| r["state"] == "active";
    wait_replica(&oracle, &piece, 1001, active, "never active").await;
    sps.terminate(1001, 3).await;
    let claimed = |r: &Value| r["state"] == "claimed";
    let lapsed = wait_replica(&oracle, &piece, 1000, claimed, "the claim never seen").await;
    chain.mine_to(lapsed["deadline"].as_u64().unwrap() + 1).await;
    let reopened = |r: &Value| r["state"] == "reopened";
    wait_replica(&oracle, &piece, 1000, reopened, "the lapsed claim was never reopened").await;
    // Rounds after that one: still active, unread, counted, and its slot not reopened.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let kept = replica(&oracle, &piece, 1001).await.unwrap();
    assert_eq!((kept["state"].as_str(), kept.get("market")), (Some("active"), None), "{kept}");
    let order_view = oracle.get(&format!("/deals?piece={piece}")).await.unwrap();
    assert_eq!(order_view["results"][0]["replicas_active"], 1);
    let events = reopenings(&chain).await;
    assert_eq!(events.iter().map(|e| e.provider).collect::<Vec<_>>(), [1000]);
    oracle.kill().await;
}

/// The market tracker's reads: deals checked per second through `DealStateView.getDeals` (200
/// per `eth_call`, four calls in flight: `deals::market::read`, what the keeper runs each
/// round), beside one `getDeal` call per deal, on the local chain. Each id is a real active
/// deal (three, asked about again and again: every answer runs all five market queries).
#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark"]
async fn bench_market_tracker_deals_checked_per_second() {
    use estuary_contracts::DealStateView;
    let chain = Chain::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (oracle, piece, order) = one_order(&chain, dir.path(), &[]).await;
    let sps = Sps { chain: &chain, order };
    for (miner, sector) in [(1000, 1), (1001, 2), (1002, 3)] {
        sps.deliver(miner, sector).await;
    }
    let mut deals = Vec::new();
    for miner in [1000, 1001, 1002] {
        let r = wait_replica(&oracle, &piece, miner, |r| r["state"] == "active", "active").await;
        deals.push(r["deal_id"].as_u64().unwrap());
    }
    oracle.kill().await;
    let view = chain.deployment.contracts["DealStateView"];
    let reader = ProviderBuilder::new().connect_http(chain.anvil.endpoint_url()).erased();
    for n in [1_000usize, 10_000] {
        let ids: Vec<u64> = (0..n).map(|i| deals[i % deals.len()]).collect();
        let started = std::time::Instant::now();
        let reads = estuary_oracle::deals::market::read(&reader, view, &ids).await.unwrap();
        let secs = started.elapsed().as_secs_f64();
        assert!(
            reads.iter().all(|r| r.status == estuary_oracle::domain::market::MarketStatus::Active)
        );
        eprintln!(
            "BENCH market: {n} deals in batches of 200 in {secs:.3} s = {:.0} deals/s",
            n as f64 / secs
        );
    }
    let single = DealStateView::new(view, &reader);
    let n = 300;
    let started = std::time::Instant::now();
    for i in 0..n {
        single.getDeal(deals[i % deals.len()]).call().await.unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "BENCH market: {n} deals one call each in {secs:.3} s = {:.0} deals/s",
        n as f64 / secs
    );
}

/// Buckets, as an SP meets them: three pins requested together are placed in one bucket,
/// closed by age into one FRC-0058 aggregate in the smallest deal that holds them, and ordered
/// once. `/piece/{aggregate}` assembles the aggregate from the pins' CARs: its commP is the
/// aggregate's piece CID (what the SP checks), each CAR is at the offset its index entry names,
/// a resumed download (`Range`) gets the rest, and each pin's inclusion proof verifies. Once an
/// SP's deal is active, each pin's request shows it, inside the aggregate.
#[tokio::test(flavor = "multi_thread")]
async fn pins_share_one_aggregate_order_served_from_their_cars() {
    use estuary_piece::{
        PieceCid,
        aggregate::{Aggregate, unpadded, verify},
        commp::commp,
    };
    let chain = Chain::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cars: Cars = Arc::default();
    let url = gateway(Arc::clone(&cars)).await;
    let mut pins = Vec::new();
    for i in 0..3u64 {
        let (root, piece, car) =
            add(dir.path(), &format!("p{i}"), &noise(3000 + i as usize * 4000, 40 + i));
        cars.lock().unwrap().insert(root.clone(), car.clone());
        chain.pin(1, &cid_bytes(&root)).await;
        pins.push((piece, car));
    }
    // Started after the requests: it reads all three at once, so one bucket takes them.
    let extra =
        ["--bucket-size", "1048576", "--bucket-max-age-secs", "3", "--deal-check-secs", "1"];
    let oracle = oracle_with(&chain, dir.path(), &url, &extra).await;
    let orders = oracle
        .wait_for_within(
            |v| v["results"][0]["order_id"].is_u64(),
            "/deals",
            Duration::from_secs(90),
        )
        .await;
    let orders = orders["results"].as_array().unwrap();
    assert_eq!(orders.len(), 1, "one order for the three pins: {orders:?}");
    let aggregate = orders[0]["piece_cid"].as_str().unwrap().to_owned();
    let buckets = oracle.get("/buckets").await.unwrap();
    let bucket = &buckets["results"][0];
    assert_eq!(buckets["results"].as_array().unwrap().len(), 1, "{buckets}");
    assert_eq!((bucket["state"].as_str(), bucket["why"].as_str()), (Some("closed"), Some("age")));
    assert_eq!(bucket["piece_cid"], aggregate.as_str());
    assert_eq!(bucket["order_state"], "open");
    let deal_size = bucket["deal_size"].as_u64().unwrap();
    assert_eq!(orders[0]["padded_size"], deal_size);
    assert!(deal_size < 1 << 20, "the smallest deal that holds them: {deal_size}");
    let one = oracle.get(&format!("/buckets?id={}", bucket["id"])).await.unwrap();
    let placed = one["results"][0]["pieces"].as_array().unwrap().clone();
    assert_eq!(placed.len(), 3);

    // The aggregate as an SP downloads it.
    let client = reqwest::Client::new();
    let piece_url = format!("{}/piece/{aggregate}", oracle.url);
    let res = client.get(&piece_url).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let bytes = res.bytes().await.unwrap().to_vec();
    assert_eq!(bytes.len() as u64, unpadded(deal_size));
    let info = commp(&bytes).unwrap();
    assert_eq!(PieceCid::v2(&info).to_string(), aggregate, "the download's commP is the aggregate");
    let mut nodes = Vec::new();
    for p in &placed {
        let (piece, car) = pins.iter().find(|(piece, _)| p["piece_cid"] == piece.as_str()).unwrap();
        let at = unpadded(p["offset"].as_u64().unwrap()) as usize;
        assert_eq!(&bytes[at..at + car.len()], car.as_slice(), "{piece} at its offset");
        let cid: PieceCid = piece.parse().unwrap();
        let height = (p["padded_size"].as_u64().unwrap() / 32).trailing_zeros() as u8;
        nodes.push((*cid.commp(), height));
    }
    let agg = Aggregate::build(&nodes, deal_size).unwrap();
    for (n, &(commp, height)) in nodes.iter().enumerate() {
        verify(&agg.proof(n).unwrap(), &commp, height, &info.commp, agg.height).unwrap();
    }
    // A resumed download gets the rest; a range past the end gets 416.
    let res = client.get(&piece_url).header("range", "bytes=1000-").send().await.unwrap();
    assert_eq!(res.status(), 206);
    assert_eq!(res.bytes().await.unwrap().to_vec(), bytes[1000..]);
    let past = format!("bytes={}-", bytes.len());
    let res = client.get(&piece_url).header("range", past).send().await.unwrap();
    assert_eq!(res.status(), 416);

    // An SP takes the order; every pin's request shows the deal, inside the aggregate.
    let order = alloy::primitives::U256::from(orders[0]["order_id"].as_u64().unwrap());
    Sps { chain: &chain, order }.deliver(1000, 1).await;
    wait_replica(&oracle, &aggregate, 1000, |r| r["state"] == "active", "f01000 active").await;
    let requests = oracle.get("/requests").await.unwrap();
    for r in requests["results"].as_array().unwrap() {
        let page = oracle.get(&format!("/requests/{}", r["id"].as_str().unwrap())).await.unwrap();
        let deal = &page["deals"][0];
        assert_eq!(deal["aggregate_piece_cid"], aggregate.as_str(), "{page}");
        assert_eq!(deal["piece_cid"], page["piece_cid"]);
        assert_eq!(deal["state"], "active");
        // Where it stands, in a word for a list: its closed bucket, 1 of the order's replicas.
        assert_eq!(page["bucket"], serde_json::json!({ "id": bucket["id"], "state": "closed" }));
        let target = &orders[0]["replicas_target"];
        assert_eq!(
            page["replicas"],
            serde_json::json!({ "active": 1, "target": target, "failed": false }),
            "{page}"
        );
    }
    // The deal is reported to EstuaryPinning with each pin's inclusion proof, which the
    // contract verified on chain (PoDSI) against the deal's piece as the market gives it.
    let deal_id = replica(&oracle, &aggregate, 1000).await.unwrap()["deal_id"].as_u64().unwrap();
    let reader = ProviderBuilder::new().connect_http(chain.anvil.endpoint_url());
    let proven = |logs: Vec<alloy::rpc::types::Log>| -> Vec<(u64, u64)> {
        logs.iter()
            .map(|l| {
                let e = l.log_decode::<EstuaryPinning::DealProven>().unwrap().inner.data;
                (u64::try_from(e.requestId).unwrap(), e.dealId)
            })
            .collect()
    };
    let filter = Filter::new()
        .address(chain.deployment.contracts["EstuaryPinning"])
        .event_signature(EstuaryPinning::DealProven::SIGNATURE_HASH)
        .from_block(0);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut events = proven(reader.get_logs(&filter).await.unwrap());
    while events.len() < 3 {
        assert!(std::time::Instant::now() < deadline, "three pins proven: {events:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
        events = proven(reader.get_logs(&filter).await.unwrap());
    }
    events.sort_unstable();
    let ids: Vec<u64> = requests["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().parse().unwrap())
        .collect();
    let mut want: Vec<(u64, u64)> = ids.into_iter().map(|id| (id, deal_id)).collect();
    want.sort_unstable();
    assert_eq!(events, want, "each pin proven once in the deal");

    // Each pin's inclusion as a client checks it, trusting no oracle: the proof `GET
    // /inclusion/{piece}` gives verifies here against the aggregate's commitment (what the
    // SP's download hashed to), and on chain against the deal's piece as the market gives it
    // (DealStateView.checkInclusion, PoDSI), as the page's Verify asks it with eth_call.
    inclusion_checked(&oracle, &chain, &pins, &aggregate, &info.commp, agg.height, deal_id).await;
    oracle.kill().await;
}

/// `GET /inclusion/{piece}` for each pin of `pins`: its proof verified here (against `root`, the
/// aggregate `aggregate`'s commitment, of tree height `height`) and by `DealStateView` against
/// deal `deal_id`; a node changed is refused by both; bad pieces get 400 and unknown ones 404.
async fn inclusion_checked(
    oracle: &OracleProcess,
    chain: &Chain,
    pins: &[(String, Vec<u8>)],
    aggregate: &str,
    root: &[u8; 32],
    height: u32,
    deal_id: u64,
) {
    use alloy::primitives::FixedBytes;
    use estuary_contracts::deal_state_view::{DealStateView, PoDSI};
    use estuary_piece::{
        PieceCid,
        aggregate::{InclusionProof, MerkleProof, verify},
    };
    let reader = ProviderBuilder::new().connect_http(chain.anvil.endpoint_url());
    let view = DealStateView::new(chain.deployment.contracts["DealStateView"], &reader);
    let nodes = |v: &Value| -> Vec<[u8; 32]> {
        v["path"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| alloy::hex::decode(n.as_str().unwrap()).unwrap().try_into().unwrap())
            .collect()
    };
    let data = |p: &Value| PoDSI::ProofData {
        index: p["index"].as_u64().unwrap(),
        path: nodes(p).into_iter().map(FixedBytes::from).collect(),
    };
    for (piece, _) in pins {
        let body = oracle.get(&format!("/inclusion/{piece}")).await.unwrap();
        let agg = &body["aggregate"];
        assert_eq!(agg["piece_cid"], aggregate, "{body}");
        assert_eq!(body["piece_cid"], piece.as_str());
        assert!(
            body["deals"].as_array().unwrap().iter().any(|d| d["deal_id"] == deal_id),
            "the deal is named: {body}"
        );
        let cid: PieceCid = piece.parse().unwrap();
        let size_pc = cid.padded_size().unwrap();
        assert_eq!(body["size_pc"], size_pc);
        assert_eq!(body["comm_pc"], alloy::hex::encode_prefixed(cid.commp()));
        assert_eq!(agg["comm_pa"], alloy::hex::encode_prefixed(root));
        let proof = InclusionProof {
            subtree: MerkleProof {
                index: agg["proof_subtree"]["index"].as_u64().unwrap(),
                path: nodes(&agg["proof_subtree"]),
            },
            index: MerkleProof {
                index: agg["proof_index"]["index"].as_u64().unwrap(),
                path: nodes(&agg["proof_index"]),
            },
        };
        let piece_height = (size_pc / 32).trailing_zeros() as u8;
        let segment = verify(&proof, cid.commp(), piece_height, root, height).unwrap();
        assert_eq!(segment.offset, agg["offset"].as_u64().unwrap());

        let mut on_chain = PoDSI::InclusionProof {
            proofSubtree: data(&agg["proof_subtree"]),
            proofIndex: data(&agg["proof_index"]),
        };
        let piece_data = PoDSI::InclusionVerifierData {
            commPc: FixedBytes::from(*cid.commp()),
            sizePc: size_pc,
        };
        let checked = view
            .checkInclusion(deal_id, on_chain.clone(), piece_data.clone())
            .call()
            .await
            .unwrap();
        assert!(checked.proven, "PoDSI on chain: {checked:?}");
        assert_eq!(checked.offset, segment.offset);
        assert_eq!(checked.deal.provider, 1000);
        // One node changed: refused here and on chain.
        let mut bad = proof.clone();
        bad.subtree.path[0][0] ^= 1;
        assert!(verify(&bad, cid.commp(), piece_height, root, height).is_err());
        on_chain.proofSubtree.path[0].0[0] ^= 1;
        let refused = view.checkInclusion(deal_id, on_chain, piece_data).call().await.unwrap();
        assert!(!refused.proven);
        assert_ne!(refused.failure, 0, "a failure named (PoDSI.Failure, 0 is None)");
    }
    let client = reqwest::Client::new();
    let unknown = PieceCid::v2(&estuary_piece::commp::commp(b"no such piece here").unwrap());
    let v1 = aggregate.parse::<PieceCid>().unwrap().to_v1().to_string();
    for (piece, status) in [("nonsense", 400), (v1.as_str(), 400), (&unknown.to_string(), 404)] {
        let res = client.get(format!("{}/inclusion/{piece}", oracle.url)).send().await.unwrap();
        assert_eq!(res.status().as_u16(), status, "{piece}");
        let body: Value = res.json().await.unwrap();
        assert!(body["error"].is_string(), "{body}");
    }
}

/// Buckets through crashes: the real process, SIGKILLed at random points while pins are
/// fetched, reported, bucketed, aggregated and ordered, ends with every pin's piece in exactly
/// one bucket, every bucket closed with exactly one order on chain (funded once), each
/// aggregate served with its own commP; and once an SP holds each aggregate, every pin is
/// proven in its deal on chain exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn crash_test_buckets_each_pin_in_one_aggregate_ordered_once_through_sigkills() {
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
            add(dir.path(), &format!("g{i}"), &noise(2000 + i * 97, 3000 + i as u64));
        cars.lock().unwrap().insert(root.clone(), car);
        roots.push(root);
        pieces.push(piece);
    }
    // 64 KiB buckets hold a handful of these pins: some close full, the rest by age.
    let extra = ["--bucket-size", "65536", "--bucket-max-age-secs", "1", "--deal-check-secs", "1"];
    let oracle = pin_through_kills(&chain, dir.path(), &url, &roots, kills, &extra).await;

    // Every piece in a closed bucket whose order is bound.
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    let buckets = loop {
        let all = oracle
            .get("/buckets?limit=1000")
            .await
            .and_then(|v| v["results"].as_array().cloned())
            .unwrap_or_default();
        let done = all.iter().all(|b| b["state"] == "closed" && b["order_id"].is_u64());
        let held: u64 = all.iter().map(|b| b["pieces"].as_u64().unwrap()).sum();
        if done && held as usize == pins {
            break all;
        }
        assert!(std::time::Instant::now() < deadline, "not every pin bucketed and ordered");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let mut seen: HashMap<String, u64> = HashMap::new();
    let client = reqwest::Client::new();
    for b in &buckets {
        let id = b["id"].as_u64().unwrap();
        let one = oracle.get(&format!("/buckets?id={id}")).await.unwrap();
        for p in one["results"][0]["pieces"].as_array().unwrap() {
            let piece = p["piece_cid"].as_str().unwrap().to_owned();
            assert!(seen.insert(piece.clone(), id).is_none(), "{piece} in two buckets");
        }
        let aggregate = b["piece_cid"].as_str().unwrap();
        let bytes = client
            .get(format!("{}/piece/{aggregate}", oracle.url))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let info = estuary_piece::commp::commp(&bytes).unwrap();
        assert_eq!(estuary_piece::PieceCid::v2(&info).to_string(), aggregate, "bucket {id}");
    }
    for piece in &pieces {
        assert!(seen.contains_key(piece), "{piece} bucketed");
    }

    // On chain: one order per aggregate, none for a pin's own piece, each funded once.
    let reader = ProviderBuilder::new().connect_http(chain.anvil.endpoint_url());
    let perpetual = chain.deployment.contracts["PerpetualStorage"];
    let events = |sig| Filter::new().address(perpetual).event_signature(sig).from_block(0);
    let created = reader.get_logs(&events(PerpetualStorage::OrderCreated::SIGNATURE_HASH)).await;
    let mut per_piece: HashMap<Vec<u8>, usize> = HashMap::new();
    for log in &created.unwrap() {
        let c = log.log_decode::<PerpetualStorage::OrderCreated>().unwrap().inner.data;
        *per_piece.entry(c.pieceCid.to_vec()).or_default() += 1;
    }
    assert_eq!(per_piece.len(), buckets.len(), "an order per bucket and no other");
    assert!(per_piece.values().all(|n| *n == 1), "0 duplicate orders: {per_piece:?}");
    for b in &buckets {
        let v1: estuary_piece::PieceCid = b["piece_cid"].as_str().unwrap().parse().unwrap();
        assert!(per_piece.contains_key(&v1.to_v1().to_cid().to_bytes()), "{b}");
    }
    let funded = reader.get_logs(&events(PerpetualStorage::OrderFunded::SIGNATURE_HASH)).await;
    assert_eq!(funded.unwrap().len(), buckets.len(), "each order funded once");

    // An SP takes every order; every pin is then proven in its aggregate's deal, once.
    for (sector, b) in buckets.iter().enumerate() {
        let order = alloy::primitives::U256::from(b["order_id"].as_u64().unwrap());
        Sps { chain: &chain, order }.deliver(1000, 100 + sector as u64).await;
    }
    let filter = Filter::new()
        .address(chain.deployment.contracts["EstuaryPinning"])
        .event_signature(EstuaryPinning::DealProven::SIGNATURE_HASH)
        .from_block(0);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let proven = loop {
        let logs = reader.get_logs(&filter).await.unwrap();
        if logs.len() >= pins {
            break logs;
        }
        assert!(std::time::Instant::now() < deadline, "{} of {pins} pins proven", logs.len());
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let mut requests: Vec<_> = proven
        .iter()
        .map(|l| l.log_decode::<EstuaryPinning::DealProven>().unwrap().inner.data.requestId)
        .collect();
    requests.sort_unstable();
    requests.dedup();
    assert_eq!((requests.len(), proven.len()), (pins, pins), "each pin proven once");
    eprintln!(
        "bucket crash test: {pins} pins, {kills} SIGKILLs, {} buckets, {} orders",
        buckets.len(),
        per_piece.len()
    );
    oracle.kill().await;
}

/// A CID the DataDAO's members accept is pinned, then funded by the oracle as the DAO's own
/// order — `fundOrder` on the DAO's terms and budget, the DAO its client — with no manual step:
/// its slot is claimed, published and activated like any order's, `/deals` shows it, and the
/// operator funds nothing for that pin (no order of its own, no bucket).
#[tokio::test(flavor = "multi_thread")]
async fn a_datadao_accepted_cid_becomes_a_funded_order_whose_slots_are_taken() {
    use alloy::primitives::U256;
    use estuary_contracts::DataDAO;
    let chain = Chain::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cars: Cars = Arc::default();
    let url = gateway(Arc::clone(&cars)).await;
    let dao_address = chain.deployment.contracts["DataDAO"];
    let dao_arg = dao_address.to_string();
    let extra = [
        "--datadao-address",
        &dao_arg,
        "--deal-check-secs",
        "1",
        "--bucket-size",
        "1048576",
        "--bucket-max-age-secs",
        "1",
    ];
    let oracle = oracle_with(&chain, dir.path(), &url, &extra).await;
    // The DAO: three members and a treasury (its owner is the deployer, account 0). Member 5
    // proposes a CID, member 6 votes for it; after the vote, member 7 executes it.
    chain.datadao(&[5, 6, 7], None).await;
    let (root, piece, car) = add(dir.path(), "dao", &noise(5000, 9));
    cars.lock().unwrap().insert(root.clone(), car);
    chain.datadao_accept(1, &root, 5000, [5, 6, 7]).await;
    let reader = ProviderBuilder::new().connect_http(chain.anvil.endpoint_url());

    // The oracle pins it and funds the DAO's order.
    let orders = oracle
        .wait_for_within(
            |v| v["results"][0]["order_id"].is_u64(),
            "/deals",
            Duration::from_secs(60),
        )
        .await;
    let order = &orders["results"][0];
    assert_eq!(
        (order["backend"].as_str(), order["piece_cid"].as_str()),
        (Some("datadao"), Some(piece.as_str()))
    );
    let order_id = order["order_id"].as_u64().unwrap();
    let on_chain = DataDAO::new(dao_address, &reader);
    let proposal = on_chain.getProposal(U256::from(1)).call().await.unwrap();
    assert_eq!(proposal.state, 4, "funded");
    assert_eq!(on_chain.orderOf(U256::from(1)).call().await.unwrap(), U256::from(order_id));
    let perpetual = chain.deployment.contracts["PerpetualStorage"];
    let storage = PerpetualStorage::new(perpetual, &reader);
    let view = storage.getOrder(U256::from(order_id)).call().await.unwrap();
    assert_eq!(view.client, dao_address, "the DAO is the order's client");
    assert_eq!(view.replicas, 3, "the DAO's terms");
    let fundings = oracle.get("/datadao").await.unwrap();
    let funding = &fundings["results"][0];
    assert_eq!(
        (funding["state"].as_str(), funding["order_id"].as_u64()),
        (Some("funded"), Some(order_id))
    );
    assert_eq!(funding["piece_cid"], piece.as_str());

    // An SP takes a slot: the replica is tracked like the operator's.
    let sps = Sps { chain: &chain, order: U256::from(order_id) };
    sps.deliver(1000, 1).await;
    wait_replica(&oracle, &piece, 1000, |r| r["state"] == "active", "f01000 active").await;
    // The operator funded nothing for it: one order (the DAO's), no bucket.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(bound(&oracle).await.len(), 1);
    let buckets = oracle.get("/buckets").await.unwrap();
    assert_eq!(buckets["results"].as_array().map(Vec::len), Some(0), "{buckets}");
    let created = PerpetualStorage::OrderCreated::SIGNATURE_HASH;
    let logs = reader
        .get_logs(&Filter::new().address(perpetual).event_signature(created).from_block(0))
        .await
        .unwrap();
    assert_eq!(logs.len(), 1, "one order on chain: the DAO's");

    // A CID accepted whose pin never comes (no gateway has it) is expired by the oracle once
    // its funding window closes: the DAO's budget is released and the pin request cancelled.
    let missing = add(dir.path(), "gone", &noise(900, 3)).0;
    chain.datadao_accept(2, &missing, 900, [5, 6, 7]).await;
    let reserved = on_chain.reserved().call().await.unwrap();
    assert!(reserved > U256::ZERO, "its budget is reserved");
    chain.travel(3601).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while on_chain.getProposal(U256::from(2)).call().await.unwrap().state != 5 {
        assert!(std::time::Instant::now() < deadline, "proposal 2 was never expired");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(on_chain.reserved().call().await.unwrap(), U256::ZERO, "its budget released");
    let request = on_chain.pinRequestOf(U256::from(2)).call().await.unwrap();
    let pinning = EstuaryPinning::new(chain.deployment.pinning, &reader);
    assert!(pinning.getRequest(request).call().await.unwrap().cancelled, "its pin cancelled");
    let fundings = oracle.get("/datadao").await.unwrap();
    let expired = fundings["results"].as_array().unwrap().iter().find(|f| f["proposal_id"] == 2);
    assert_eq!(expired.map(|f| f["state"].clone()), Some(Value::from("expired")), "{fundings}");
    oracle.kill().await;
}

/// An `EstuaryOracle` store job is pinned, bucketed and fulfilled once its bucket's aggregate has
/// as many active deals as it asked for — not before: the result carries each deal with the
/// proof that the job's piece is inside it, which `fulfill` checks against the market and
/// `PoDSI` on chain before the callback. A job asking for more replicas than the oracle's orders
/// keep is refused at once, with why.
#[tokio::test(flavor = "multi_thread")]
async fn a_store_job_is_fulfilled_with_its_deals_and_their_proofs_checked_on_chain() {
    use alloy::{primitives::U256, sol_types::SolValue};
    use estuary_contracts::{EstuaryOracle, oracle::EstuaryResults};
    let chain = Chain::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cars: Cars = Arc::default();
    let url = gateway(Arc::clone(&cars)).await;
    let oracle_address = chain.deployment.contracts["EstuaryOracle"];
    let address = oracle_address.to_string();
    let extra = [
        "--oracle-address",
        &address,
        "--deal-replicas",
        "2",
        "--deal-check-secs",
        "1",
        "--bucket-size",
        "1048576",
        "--bucket-max-age-secs",
        "1",
    ];
    let oracle = oracle_with(&chain, dir.path(), &url, &extra).await;
    let (root, piece, car) = add(dir.path(), "stored", &noise(5000, 11));
    cars.lock().unwrap().insert(root.clone(), car);
    let consumer = chain.wallet(5);
    let contract = EstuaryOracle::new(oracle_address, &consumer);
    for replicas in [2u64, 3] {
        let params = (U256::from(replicas), U256::ZERO).abi_encode_params();
        let price = contract.quote(1, 100_000).call().await.unwrap();
        let call = contract.requestJob(1, cid_bytes(&root).into(), params.into(), 100_000);
        assert!(mined!(call.value(price)).status());
    }
    let fulfilled = async |id: u64| {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while contract.jobs(U256::from(id)).call().await.unwrap().state != 2 {
            assert!(std::time::Instant::now() < deadline, "job {id} was never answered");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let logs = consumer
            .get_logs(
                &Filter::new()
                    .address(oracle_address)
                    .event_signature(EstuaryOracle::JobFulfilled::SIGNATURE_HASH)
                    .topic1(U256::from(id))
                    .from_block(0),
            )
            .await
            .unwrap();
        assert_eq!(logs.len(), 1, "job {id} answered once");
        let ok = logs[0].log_decode::<EstuaryOracle::JobFulfilled>().unwrap().inner.data.ok;
        let hash = logs[0].transaction_hash.unwrap();
        let tx = consumer.get_transaction_by_hash(hash).await.unwrap().unwrap();
        let call = <EstuaryOracle::fulfillCall as alloy::sol_types::SolCall>::abi_decode(
            alloy::consensus::Transaction::input(&tx),
        )
        .unwrap();
        (ok, call.result)
    };
    // Three replicas asked, two kept: refused at once.
    let (ok, result) = fulfilled(2).await;
    let reason = String::abi_decode(&result).unwrap();
    assert!(!ok && reason.contains("keeps 2 replicas"), "{reason}");

    // Its piece goes into a bucket; the aggregate gets its order.
    let orders = oracle
        .wait_for_within(
            |v| v["results"][0]["order_id"].is_u64(),
            "/deals",
            Duration::from_secs(60),
        )
        .await;
    let aggregate = orders["results"][0]["piece_cid"].as_str().unwrap().to_owned();
    assert_ne!(aggregate, piece, "ordered as an aggregate");
    let order = U256::from(orders["results"][0]["order_id"].as_u64().unwrap());
    let sps = Sps { chain: &chain, order };
    sps.deliver(1000, 1).await;
    wait_replica(&oracle, &aggregate, 1000, |r| r["state"] == "active", "f01000 active").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(contract.jobs(U256::from(1)).call().await.unwrap().state, 1, "one deal of two");
    sps.deliver(1001, 2).await;

    let (ok, result) = fulfilled(1).await;
    assert!(ok);
    let stored = EstuaryResults::StoreResult::abi_decode(&result).unwrap();
    let parsed: estuary_piece::PieceCid = piece.parse().unwrap();
    assert_eq!(stored.commP.0, *parsed.commp(), "the job's own piece");
    assert_eq!(Some(stored.paddedSize), parsed.padded_size());
    let mut providers: Vec<u64> = stored.deals.iter().map(|d| d.provider).collect();
    providers.sort_unstable();
    assert_eq!(providers, [1000, 1001]);
    // What fulfil checked, asked again: each deal holds the piece now.
    let view = EstuaryOracle::new(oracle_address, &consumer);
    let decoded = view.decodeStoreResult(result.clone()).call().await.unwrap();
    assert_eq!(decoded.deals.len(), 2);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !oracle.metrics().await.contains("estuary_store_jobs{state=\"fulfilled\"} 1") {
        assert!(std::time::Instant::now() < deadline, "{}", oracle.metrics().await);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A store job too large for an aggregate is answered with why, not kept, never ordered.
    let (large, large_piece, large_car) = add(dir.path(), "large", &noise(700_000, 13));
    cars.lock().unwrap().insert(large.clone(), large_car);
    let params = (U256::from(1), U256::ZERO).abi_encode_params();
    let price = contract.quote(1, 100_000).call().await.unwrap();
    let call = contract.requestJob(1, cid_bytes(&large).into(), params.into(), 100_000);
    assert!(mined!(call.value(price)).status());
    let (ok, result) = fulfilled(3).await;
    let reason = String::abi_decode(&result).unwrap();
    assert!(!ok && reason.contains("larger than an aggregate takes"), "{reason}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let orders = oracle.get(&format!("/deals?piece={large_piece}")).await.unwrap();
    assert_eq!(orders["results"].as_array().map(Vec::len), Some(0), "{orders}");

    // A store job its consumer cancels (refunded once the job timed out) is stopped here:
    // nothing more is fetched, bucketed, dealt or fulfilled for it.
    let never = add(dir.path(), "never", &noise(700, 5)).0;
    let params = (U256::from(1), U256::ZERO).abi_encode_params();
    let price = contract.quote(1, 100_000).call().await.unwrap();
    let call = contract.requestJob(1, cid_bytes(&never).into(), params.into(), 100_000);
    assert!(mined!(call.value(price)).status());
    chain.travel(3601).await;
    let refund_to = chain.signer(5).address();
    assert!(mined!(contract.cancelJob(U256::from(4), refund_to)).status());
    let db = estuary_oracle::store::DatabaseUrl::Sqlite(dir.path().join("oracle.sqlite"));
    let store = estuary_oracle::store::Store::open(&db).await.unwrap();
    let chain_id = consumer.get_chain_id().await.unwrap();
    let key: estuary_oracle::domain::JobKey =
        format!("contract/{chain_id}/{oracle_address:#x}/4").parse().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let job = store.job(&key).await.unwrap();
        if job.as_ref().is_some_and(|j| j.status == estuary_oracle::domain::JobState::Cancelled) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "job 4 never stopped: {job:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let key: estuary_oracle::domain::JobKey =
        format!("contract/{chain_id}/{oracle_address:#x}/3").parse().unwrap();
    let job = store.job(&key).await.unwrap().unwrap();
    assert_eq!(
        job.status,
        estuary_oracle::domain::JobState::Cancelled,
        "the failed job is not kept"
    );
    oracle.kill().await;
}

/// A requester named with `--dedicated-bucket-for` (here the contract or wallet of account 2)
/// has its pins in a bucket of its own: two buckets close, each with its own aggregate and
/// order, the shared one holding the other requester's two pins and the dedicated one its pin.
#[tokio::test(flavor = "multi_thread")]
async fn a_dedicated_requesters_pins_are_aggregated_and_ordered_apart() {
    let chain = Chain::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cars: Cars = Arc::default();
    let url = gateway(Arc::clone(&cars)).await;
    let mut pieces = Vec::new();
    for (i, account) in [1usize, 1, 2].into_iter().enumerate() {
        let (root, piece, car) = add(dir.path(), &format!("d{i}"), &noise(3000, 70 + i as u64));
        cars.lock().unwrap().insert(root.clone(), car);
        chain.pin(account, &cid_bytes(&root)).await;
        pieces.push(piece);
    }
    let dedicated = chain.signer(2).address().to_string();
    let extra = [
        "--dedicated-bucket-for",
        &dedicated,
        "--bucket-size",
        "1048576",
        "--bucket-max-age-secs",
        "2",
        "--deal-check-secs",
        "1",
    ];
    let oracle = oracle_with(&chain, dir.path(), &url, &extra).await;
    let two_orders = |v: &Value| {
        v["results"]
            .as_array()
            .is_some_and(|r| r.len() == 2 && r.iter().all(|o| o["order_id"].is_u64()))
    };
    oracle.wait_for_within(two_orders, "/deals", Duration::from_secs(60)).await;
    let buckets = oracle.get("/buckets").await.unwrap();
    let buckets = buckets["results"].as_array().unwrap();
    assert_eq!(buckets.len(), 2, "{buckets:?}");
    let own = buckets.iter().find(|b| b["group"] == "dedicated").expect("the dedicated bucket");
    let shared = buckets.iter().find(|b| b["group"].is_null()).expect("the shared bucket");
    assert_eq!((own["pieces"].as_u64(), shared["pieces"].as_u64()), (Some(1), Some(2)));
    assert_ne!(own["piece_cid"], shared["piece_cid"], "two aggregates");
    let inside = oracle.get(&format!("/buckets?id={}", own["id"])).await.unwrap();
    assert_eq!(inside["results"][0]["pieces"][0]["piece_cid"], pieces[2].as_str());
    oracle.kill().await;
}

/// A pin larger than a deal is split: its CAR into consecutive spans, each a piece within the
/// deal size, each ordered on its own (never the whole). `/requests/{id}` lists the parts; each
/// part downloaded from `/piece/{part}` (as an SP does) has its piece's commP, the parts in
/// order give back the CAR byte for byte, and a range read across the boundary of two parts
/// (the end of one, the start of the next) is the CAR's bytes there.
#[tokio::test(flavor = "multi_thread")]
async fn a_pin_larger_than_a_deal_is_split_into_pieces_read_back_byte_for_byte() {
    use estuary_piece::{PieceCid, commp::commp};
    let chain = Chain::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cars: Cars = Arc::default();
    let url = gateway(Arc::clone(&cars)).await;
    let (root, piece, car) = add(dir.path(), "big", &noise(200_000, 9));
    cars.lock().unwrap().insert(root.clone(), car.clone());
    let extra = ["--bucket-size", "65536", "--bucket-max-age-secs", "1", "--deal-check-secs", "1"];
    let oracle = oracle_with(&chain, dir.path(), &url, &extra).await;
    let id = chain.pin(1, &cid_bytes(&root)).await;
    let request = oracle
        .wait_for_within(
            |v| v["pieces"].as_array().is_some_and(|p| p.len() > 1),
            &format!("/requests/{id}"),
            Duration::from_secs(60),
        )
        .await;
    assert_eq!(request["piece_cid"], piece.as_str());
    let parts = request["pieces"].as_array().unwrap().clone();
    assert_eq!(parts.len(), car.len().div_ceil(65_024), "spans of 64 KiB × 127/128: {parts:?}");

    // Each part, downloaded as an SP does, is its span of the CAR and has its piece's commP.
    let http = reqwest::Client::new();
    let get = |part: &str, range: Option<String>| {
        let mut req = http.get(format!("{}/piece/{part}", oracle.url));
        if let Some(range) = range {
            req = req.header("range", range);
        }
        async move {
            let response = req.send().await.unwrap();
            assert!(response.status().is_success(), "{}", response.status());
            response.bytes().await.unwrap().to_vec()
        }
    };
    let mut whole = Vec::new();
    let mut at = 0u64;
    for part in &parts {
        let (offset, length) = (part["offset"].as_u64().unwrap(), part["length"].as_u64().unwrap());
        assert_eq!(offset, at, "the parts tile the CAR");
        at += length;
        let cid = part["piece_cid"].as_str().unwrap();
        let bytes = get(cid, None).await;
        assert_eq!(bytes.len() as u64, length);
        let info = commp(&bytes).unwrap();
        assert_eq!(PieceCid::v2(&info).to_string(), cid, "the part's commP");
        assert!(info.padded_size <= 65_536 && part["padded_size"] == info.padded_size);
        whole.extend_from_slice(&bytes);
    }
    assert_eq!(whole, car, "the parts in order are the CAR");
    // A range across the boundary of the first two parts: the end of one, the start of the next.
    let first = parts[0]["length"].as_u64().unwrap();
    let tail =
        get(parts[0]["piece_cid"].as_str().unwrap(), Some(format!("bytes={}-", first - 100))).await;
    let head = get(parts[1]["piece_cid"].as_str().unwrap(), Some("bytes=0-99".into())).await;
    let across = [tail, head].concat();
    let first = usize::try_from(first).unwrap();
    assert_eq!(across, car[first - 100..first + 100]);

    // Each part gets its own order; the whole never does.
    let deals = oracle
        .wait_for_within(
            |v| {
                v["results"].as_array().is_some_and(|r| {
                    r.len() == parts.len() && r.iter().all(|o| o["order_id"].is_u64())
                })
            },
            "/deals",
            Duration::from_secs(60),
        )
        .await;
    let mut ordered: Vec<String> = deals["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["piece_cid"].as_str().unwrap().to_owned())
        .collect();
    ordered.sort_unstable();
    let mut expected: Vec<String> =
        parts.iter().map(|p| p["piece_cid"].as_str().unwrap().to_owned()).collect();
    expected.sort_unstable();
    assert_eq!(ordered, expected);
    let metrics = oracle.metrics().await;
    assert!(metrics.contains("estuary_split_pins 1"), "{metrics}");
    assert!(metrics.contains(&format!("estuary_split_parts {}", parts.len())), "{metrics}");
    assert!(
        oracle.get(&format!("/deals?piece={piece}")).await.unwrap()["results"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    oracle.kill().await;
}
