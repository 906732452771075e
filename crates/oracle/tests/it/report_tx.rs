//! The report transaction manager on a chain that stops mining: a report not mined in time is
//! replaced with higher fees (same nonce), the replacement is what gets mined, and the request
//! is reported once.

use std::time::Duration;

use alloy::{
    primitives::{Bytes, U256},
    providers::{Provider, ProviderBuilder},
};
use estuary_chain::{TxLedger, TxManager, TxPolicy, tx::MemLedger};
use estuary_oracle::{
    domain::JobKey,
    pipeline::report::{ChainReporter, ReportTargets, Reported, Reporter},
    store::{DatabaseUrl, Store},
};
use estuary_piece::{CommP, PieceCid};
use serde_json::Value;

use crate::support::{Chain, cid};

#[tokio::test(flavor = "multi_thread")]
async fn a_stuck_report_is_replaced_with_higher_fees() {
    let chain = Chain::start().await;
    let id = chain.pin(1, &cid(1)).await;
    let provider = ProviderBuilder::new().connect_http(chain.anvil.endpoint_url());
    let key: alloy::signers::local::PrivateKeySigner =
        chain.anvil.keys().last().unwrap().clone().into();
    let operator = key.address();
    let policy = TxPolicy { bump_after: Duration::from_millis(300), ..TxPolicy::default() };
    let tx = TxManager::new(
        &[chain.anvil.endpoint()],
        31337,
        key,
        policy,
        std::sync::Arc::new(MemLedger::default()),
    )
    .unwrap();
    let reporter = ChainReporter::new(tx, targets(&chain));
    let mut commp = CommP::new();
    commp.update(&[7u8; 1000]);
    let info = commp.finish().unwrap();
    let piece = Bytes::from(PieceCid::v1(&info).to_cid().to_bytes());
    let nonce_before = provider.get_transaction_count(operator).await.unwrap();
    let first_fee = provider.estimate_eip1559_fees().await.unwrap().max_fee_per_gas;

    // The chain stops mining: the report waits in the pool and gets replaced.
    provider.raw_request::<_, Value>("evm_setAutomine".into(), (false,)).await.unwrap();
    let job = JobKey::request(31337, chain.deployment.pinning, U256::from(id));
    let sending = tokio::spawn(async move {
        reporter.report_pinned(&job, &cid(1), piece, info.padded_size).await
    });
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    provider.raw_request::<_, Value>("evm_setAutomine".into(), (true,)).await.unwrap();
    provider.raw_request::<_, Value>("evm_mine".into(), ()).await.unwrap();
    let reported =
        tokio::time::timeout(Duration::from_secs(30), sending).await.unwrap().unwrap().unwrap();
    let Reported::Sent { tx } = reported else { panic!("not sent: {reported:?}") };

    let mined = provider.get_transaction_by_hash(tx).await.unwrap().unwrap();
    let fee = alloy::consensus::Transaction::max_fee_per_gas(&mined);
    assert!(fee > first_fee, "a replacement was mined: {fee} > {first_fee}");
    assert_eq!(
        provider.get_transaction_count(operator).await.unwrap(),
        nonce_before + 1,
        "one nonce used"
    );
    let (per_request, _) = crate::support::reports(&chain).await;
    assert_eq!(per_request.values().sum::<usize>(), 1, "reported once");
    eprintln!("first offer {first_fee} wei/gas, mined at {fee} wei/gas");
}

/// A report still in the mempool when its process dies is waited for by the next process (its
/// nonce and hash are in the database), not sent a second time.
#[tokio::test(flavor = "multi_thread")]
async fn a_report_pending_at_a_restart_is_waited_for_not_sent_again() {
    let chain = Chain::start().await;
    let id = chain.pin(1, &cid(2)).await;
    let provider = ProviderBuilder::new().connect_http(chain.anvil.endpoint_url());
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(
        Store::open(&DatabaseUrl::Sqlite(dir.path().join("o.sqlite"))).await.unwrap(),
    );
    let key: alloy::signers::local::PrivateKeySigner =
        chain.anvil.keys().last().unwrap().clone().into();
    let operator = key.address();
    let reporter = || {
        let tx = TxManager::new(
            &[chain.anvil.endpoint()],
            31337,
            key.clone(),
            TxPolicy::default(),
            std::sync::Arc::clone(&store),
        )
        .unwrap();
        ChainReporter::new(tx, targets(&chain))
    };
    let mut commp = CommP::new();
    commp.update(&[9u8; 1000]);
    let info = commp.finish().unwrap();
    let piece = Bytes::from(PieceCid::v1(&info).to_cid().to_bytes());
    let contract = JobKey::request(31337, chain.deployment.pinning, U256::from(id));
    let ledger_key = format!("pinned/{:#x}/{id}", chain.deployment.pinning);
    let nonce_before = provider.get_transaction_count(operator).await.unwrap();

    // The first process sends the report into a pool that does not mine, then dies.
    provider.raw_request::<_, Value>("evm_setAutomine".into(), (false,)).await.unwrap();
    let first = reporter();
    let (c, p) = (contract.clone(), piece.clone());
    let dying =
        tokio::spawn(async move { first.report_pinned(&c, &cid(2), p, info.padded_size).await });
    let mut sent = Vec::new();
    for _ in 0..100 {
        sent = store.sent_for(&ledger_key).await.unwrap();
        if !sent.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(sent.len(), 1, "the report is in the ledger once sent");
    dying.abort();

    // The next process reports the same request: it adopts the pending transaction.
    let second = reporter();
    let resumed = tokio::spawn(async move {
        second.report_pinned(&contract, &cid(2), piece, info.padded_size).await
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    provider.raw_request::<_, Value>("evm_setAutomine".into(), (true,)).await.unwrap();
    provider.raw_request::<_, Value>("evm_mine".into(), ()).await.unwrap();
    let reported =
        tokio::time::timeout(Duration::from_secs(30), resumed).await.unwrap().unwrap().unwrap();
    assert_eq!(reported, Reported::Sent { tx: sent[0].1 }, "the first transaction");
    assert_eq!(
        provider.get_transaction_count(operator).await.unwrap(),
        nonce_before + 1,
        "one transaction in all"
    );
    assert!(store.sent_for(&ledger_key).await.unwrap().is_empty(), "settled in the ledger");
    let (per_request, _) = crate::support::reports(&chain).await;
    assert_eq!(per_request.values().sum::<usize>(), 1, "reported once");
}

fn targets(chain: &Chain) -> ReportTargets {
    ReportTargets { chain: 31337, pinning: chain.deployment.pinning, oracle: None }
}

/// A report names the request's CID (its keccak256): one for another CID — a request id the
/// chain reassigned in a reorg — is refused by the simulation, nothing is sent, and the job is
/// retried later. A failure goes out as a code and a detail cut to 64 bytes.
#[tokio::test(flavor = "multi_thread")]
async fn reports_name_the_cid_and_failures_are_codes() {
    use estuary_contracts::EstuaryPinning;
    use estuary_oracle::{domain::FailureCode, pipeline::report::ReportError};

    let chain = Chain::start().await;
    let id = chain.pin(1, &cid(1)).await;
    let provider = ProviderBuilder::new().connect_http(chain.anvil.endpoint_url());
    let key: alloy::signers::local::PrivateKeySigner =
        chain.anvil.keys().last().unwrap().clone().into();
    let operator = key.address();
    let tx = TxManager::new(
        &[chain.anvil.endpoint()],
        31337,
        key,
        TxPolicy::default(),
        std::sync::Arc::new(MemLedger::default()),
    )
    .unwrap();
    let reporter = ChainReporter::new(tx, targets(&chain));
    let job = JobKey::request(31337, chain.deployment.pinning, U256::from(id));
    let mut commp = CommP::new();
    commp.update(&[7u8; 1000]);
    let info = commp.finish().unwrap();
    let piece = Bytes::from(PieceCid::v1(&info).to_cid().to_bytes());
    let nonce = provider.get_transaction_count(operator).await.unwrap();

    let err = reporter.report_pinned(&job, &cid(2), piece.clone(), info.padded_size).await;
    assert!(matches!(err, Err(ReportError::OtherCid { .. })), "{err:?}");
    assert!(err.unwrap_err().is_retryable());
    let err = reporter.report_failed(&job, &cid(2), FailureCode::NotFound, "x").await;
    assert!(matches!(err, Err(ReportError::OtherCid { .. })), "{err:?}");
    assert_eq!(provider.get_transaction_count(operator).await.unwrap(), nonce, "nothing sent");

    let long = "é".repeat(100);
    let sent = reporter.report_failed(&job, &cid(1), FailureCode::TooLarge, &long).await.unwrap();
    let Reported::Sent { tx } = sent else { panic!("not sent: {sent:?}") };
    let receipt = provider.get_transaction_receipt(tx).await.unwrap().unwrap();
    let failed = receipt.decoded_log::<EstuaryPinning::PinFailed>().expect("PinFailed");
    assert_eq!(failed.data.code, FailureCode::TooLarge as u8);
    assert_eq!(failed.data.detail, "é".repeat(32), "cut to 64 bytes on a character boundary");
    let status = EstuaryPinning::new(chain.deployment.pinning, &provider)
        .getRequest(U256::from(id))
        .call()
        .await
        .unwrap();
    assert!(status.failed);
    assert_eq!(status.failure, FailureCode::TooLarge as u8);
}
