//! `estuary sp status | work | claims | deals` on an agent's database: what it took, where each
//! piece of work is, and why it skipped the rest.

use std::{path::Path, process::Command};

use alloy::primitives::{Address, B256, U256};
use estuary_chain::Cursor;
use estuary_sp::{
    domain::{Deal, Input, Skip, WorkKind, WorkState},
    store::{Decision, LeadEvent, NewWork, Store},
};

fn sp(db: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_estuary"))
        .arg("sp")
        .args(args)
        .arg("--db")
        .arg(db)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_operator_reads_work_claims_deals_and_skips() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sp.sqlite");
    let (ok, _, err) = sp(&db, &["status"]);
    assert!(!ok && err.contains("no agent database"), "{err}");

    let store = Store::open(&db).await.unwrap();
    let perpetual = Address::repeat_byte(1);
    let deal_client = Address::repeat_byte(2);
    let proposal = B256::repeat_byte(9);
    let events = [
        LeadEvent {
            kind: WorkKind::Slot,
            contract: perpetual,
            reference: "7".into(),
            block: 5,
            settled: None,
        },
        LeadEvent {
            kind: WorkKind::Proposal,
            contract: deal_client,
            reference: format!("{proposal:#x}"),
            block: 6,
            settled: Some(Skip::OtherProvider { named: 1001 }),
        },
    ];
    let cursor = Cursor { block_number: 6, block_hash: B256::repeat_byte(6) };
    store.ingest_leads("31337:x", &events, cursor, 1).await.unwrap();
    let lead = store.pending_leads(10, 10).await.unwrap().remove(0);
    let work = NewWork {
        kind: WorkKind::Slot,
        contract: perpetual,
        reference: "7".into(),
        piece_cid: "baga6ea4seaq".into(),
        padded_size: 2048,
        car_size: 2000,
        origins: vec!["http://origin.example/a.car".into()],
        proposal_id: None,
        start_epoch: None,
        end_epoch: None,
        collateral: U256::from(5),
    };
    let id = store.decide(&lead, &Decision::Take(work), None, 2).await.unwrap().unwrap();
    let claimed = Input::Claimed { deadline: 130, proposal_id: B256::repeat_byte(3) };
    store.transition(id, WorkKind::Slot, WorkState::Claiming, &claimed, 3).await.unwrap();
    store.transition(id, WorkKind::Slot, WorkState::Fetching, &Input::Verified, 4).await.unwrap();
    let published = Input::Published { deal: Deal::Market(42) };
    store.transition(id, WorkKind::Slot, WorkState::Sealing, &published, 5).await.unwrap();
    // A proposal handed over as a direct deal (no market deal ID).
    let direct = B256::repeat_byte(8);
    let event = LeadEvent {
        kind: WorkKind::Proposal,
        contract: deal_client,
        reference: format!("{direct:#x}"),
        block: 7,
        settled: None,
    };
    let cursor = Cursor { block_number: 7, block_hash: B256::repeat_byte(7) };
    store.ingest_leads("31337:x", &[event], cursor, 6).await.unwrap();
    let lead = store.pending_leads(10, 10).await.unwrap().remove(0);
    let work = NewWork {
        kind: WorkKind::Proposal,
        contract: deal_client,
        reference: format!("{direct:#x}"),
        piece_cid: "baga6ea4seaq".into(),
        padded_size: 2048,
        car_size: 2000,
        origins: vec!["http://origin.example/a.car".into()],
        proposal_id: Some(direct),
        start_epoch: Some(200),
        end_epoch: Some(600),
        collateral: U256::from(5),
    };
    let pid = store.decide(&lead, &Decision::Take(work), None, 7).await.unwrap().unwrap();
    let p = WorkKind::Proposal;
    store.transition(pid, p, WorkState::Fetching, &Input::Verified, 8).await.unwrap();
    let handed = Input::Published { deal: Deal::Direct };
    store.transition(pid, p, WorkState::Sealing, &handed, 9).await.unwrap();
    let w = store.work(pid).await.unwrap().unwrap();
    assert_eq!((w.deal(), w.deal_id, w.direct), (Some(Deal::Direct), None, true));
    drop(store);

    let (ok, out, err) = sp(&db, &["status"]);
    assert!(ok, "{err}");
    assert!(out.contains("slot/activating\t1"), "{out}");
    assert!(out.contains("other_provider\t1"), "{out}");
    assert!(out.contains(&format!("{proposal:#x}\tthe proposal names miner f01001")), "{out}");
    let (ok, out, _) = sp(&db, &["work", "--state", "activating"]);
    assert!(ok);
    let slot = format!("{id}\tslot\tactivating\t{perpetual:#x}\t7\tbaga6ea4seaq\t42");
    assert!(out.lines().any(|l| l.starts_with(&slot)), "{out}");
    let handed = format!("{pid}\tproposal\tactivating\t{deal_client:#x}\t{direct:#x}");
    assert!(out.lines().any(|l| l.starts_with(&handed) && l.ends_with("\tdirect\t")), "{out}");
    let (ok, out, _) = sp(&db, &["work", "--json"]);
    assert!(ok);
    let works: Vec<serde_json::Value> =
        out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let w = works.iter().find(|w| w["kind"] == "slot").unwrap();
    let d = works.iter().find(|w| w["kind"] == "proposal").unwrap();
    assert_eq!((d["direct"].clone(), d["deal_id"].clone()), (true.into(), serde_json::Value::Null));
    assert_eq!(w["deadline"], 130);
    assert_eq!(w["collateral"], "5");
    let (_, claims, _) = sp(&db, &["claims"]);
    assert!(claims.contains("deadline 130\tdeal 42"), "{claims}");
    let (_, deals, _) = sp(&db, &["deals"]);
    assert!(deals.lines().any(|l| l.starts_with("42\tslot")), "{deals}");
    assert!(deals.lines().any(|l| l.starts_with("direct\tproposal")), "{deals}");
    let (ok, _, err) = sp(&db, &["work", "--state", "dreaming"]);
    assert!(!ok && err.contains("unknown state"), "{err}");
}
