//! A pin whose blocks this oracle dropped (cold), pinned again: the fetch reads its DAG from the
//! storage provider holding its piece (each span checked against the piece, each block against
//! its CID), not from the network. A provider serving wrong bytes is passed over for the
//! network; a DAG that is not cold never asks the providers.

use std::sync::{
    Arc,
    atomic::{AtomicBool, AtomicUsize, Ordering},
};

use estuary_oracle::{
    blockstore::{Blockstore, FsBlockstore},
    fetch::{FetchLimits, Fetcher},
};
use estuary_piece::PieceCid;

use crate::{
    bench_cold::cold_oracle,
    oracle_pinning::{Cars, add, cid_bytes},
    probes::counting_gateway,
    support::noise,
};

#[tokio::test(flavor = "multi_thread")]
async fn a_cold_pin_pinned_again_is_read_from_its_provider_not_the_network() {
    let dir = tempfile::tempdir().unwrap();
    let (root, piece, car) = add(dir.path(), "f", &noise(2_500_000, 5));
    let piece: PieceCid = piece.parse().unwrap();
    let car_path = dir.path().join("piece.car");
    std::fs::write(&car_path, &car).unwrap();
    let (_, dag) = estuary_dag::car::read_car(&car, Default::default()).unwrap();
    assert!(dag.len() > 2, "a DAG of several blocks");
    let tamper = Arc::new(AtomicBool::new(false));
    let (_store, reads) =
        cold_oracle(&dir.path().join("o"), &root, &piece, &car_path, 0, Some(Arc::clone(&tamper)))
            .await;
    // A gateway that has the CAR, counting what it is asked.
    let cars: Cars = Arc::default();
    cars.lock().unwrap().insert(root.clone(), car.clone());
    let asked = Arc::new(AtomicUsize::new(0));
    let gateway = counting_gateway(Arc::clone(&cars), Arc::clone(&asked)).await;
    let fetcher =
        Fetcher::new(vec![gateway], FetchLimits::default()).with_cold(Some(reads.clone()));

    // From the provider: every block, the gateway never asked.
    let blocks = Arc::new(FsBlockstore::open(dir.path().join("blocks")).unwrap());
    let stats = fetcher.fetch(&cid_bytes(&root), &[], &blocks).await.unwrap();
    assert_eq!(stats.blocks as usize, dag.len());
    assert_eq!(asked.load(Ordering::SeqCst), 0, "the network was not asked");
    assert!(reads.stats().blocks >= dag.len() as u64, "read from the provider");
    for block in &dag {
        assert_eq!(blocks.get(&block.cid).unwrap().as_deref(), Some(block.data.as_slice()));
    }

    // A provider serving wrong bytes: nothing of it is kept; the network gives the DAG.
    tamper.store(true, Ordering::SeqCst);
    let read_before = reads.stats().blocks;
    let refused =
        |r: &estuary_oracle::deals::cold::ColdReads| r.stats().refused.values().sum::<u64>();
    let refused_before = refused(&reads);
    let again = Arc::new(FsBlockstore::open(dir.path().join("again")).unwrap());
    let stats = fetcher.fetch(&cid_bytes(&root), &[], &again).await.unwrap();
    assert_eq!(stats.blocks as usize, dag.len());
    assert_eq!(asked.load(Ordering::SeqCst), 1, "the network, once the provider failed");
    assert_eq!(reads.stats().blocks, read_before, "no block passed from the tampered provider");
    assert!(refused(&reads) > refused_before, "the provider was asked, and its spans refused");
    for block in &dag {
        assert_eq!(again.get(&block.cid).unwrap().as_deref(), Some(block.data.as_slice()));
    }

    // A DAG that is not cold: the providers are not asked (the provider honest again, so a
    // read would count).
    tamper.store(false, Ordering::SeqCst);
    let bytes_before = reads.stats().bytes.values().sum::<u64>();
    let (other, _, other_car) = add(dir.path(), "g", &noise(50_000, 6));
    cars.lock().unwrap().insert(other.clone(), other_car);
    let third = Arc::new(FsBlockstore::open(dir.path().join("third")).unwrap());
    fetcher.fetch(&cid_bytes(&other), &[], &third).await.unwrap();
    assert_eq!(asked.load(Ordering::SeqCst), 2);
    assert_eq!(reads.stats().blocks, read_before);
    assert_eq!(reads.stats().bytes.values().sum::<u64>(), bytes_before, "nothing read");
}
