//! Downloads against real HTTP origins: resuming after a drop and from a partial file,
//! checking the piece, and refusing origins that lie, drip, never end or are not public.

use std::{
    sync::{Arc, atomic::AtomicU64},
    time::Duration,
};

use estuary_sp::{
    domain::ExpectedPiece,
    fetch::{FetchError, FetchLimits, Fetcher, Guard, OriginFailure},
};

use crate::support::{Car, Origin, Serve, car};

fn expected(c: &Car) -> ExpectedPiece {
    ExpectedPiece::from_v1_bytes(&c.piece_v1, c.padded, c.bytes.len() as u64).unwrap()
}

fn fetcher(allow_private: bool) -> Fetcher {
    let limits = FetchLimits {
        no_progress: Duration::from_secs(2),
        min_rate: 20 * 1024,
        grace: Duration::from_millis(800),
        attempts: 2,
        hash_threads: 1,
    };
    Fetcher::new(Guard { allow_private }, limits).unwrap()
}

async fn fetch(
    f: &Fetcher,
    urls: &[String],
    c: &Car,
    partial: &std::path::Path,
) -> Result<estuary_sp::fetch::Fetched, FetchError> {
    fetch_counting(f, urls, c, partial).await.0
}

/// The download, and the bytes it received.
async fn fetch_counting(
    f: &Fetcher,
    urls: &[String],
    c: &Car,
    partial: &std::path::Path,
) -> (Result<estuary_sp::fetch::Fetched, FetchError>, u64) {
    let held = Arc::new(AtomicU64::new(0));
    let network = Arc::new(AtomicU64::new(0));
    let r = f.fetch(urls, &expected(c), partial, &held, &network).await;
    (r, network.load(std::sync::atomic::Ordering::Relaxed))
}

#[tokio::test]
async fn a_download_resumes_after_a_drop_and_from_its_partial_file() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let c = car(700_000, 1);
    let url = origin.add("drop", &c.bytes, Serve::DropOnceAt(300_000));
    let partial = dir.path().join("a.part");
    let done = fetch(&fetcher(true), &[url], &c, &partial).await.unwrap();
    assert_eq!(std::fs::read(&partial).unwrap(), c.bytes);
    assert_eq!(done.info.padded_size, c.padded);
    // The origin sends 64 KiB chunks and drops the connection before the one that crosses
    // 300,000 bytes, so 262,144 bytes went out before the drop: a download restarted from zero
    // would receive, and be served, those again. Resumed, every byte comes over the network
    // once, and the origin serves at most what was lost in flight besides.
    assert_eq!(done.network_bytes, c.bytes.len() as u64, "resumed, not restarted");
    assert!(origin.served("drop") < c.bytes.len() as u64 + 262_144, "resumed, not restarted");

    // A partial file from an earlier life: only the rest comes over the network.
    let url = origin.add("rest", &c.bytes, Serve::Good);
    let partial = dir.path().join("b.part");
    std::fs::write(&partial, &c.bytes[..400_000]).unwrap();
    let done = fetch(&fetcher(true), &[url], &c, &partial).await.unwrap();
    assert_eq!(done.resumed_from, 400_000);
    assert_eq!(done.network_bytes, c.bytes.len() as u64 - 400_000);
    assert_eq!(origin.served("rest"), c.bytes.len() as u64 - 400_000);
    assert_eq!(std::fs::read(&partial).unwrap(), c.bytes);
}

#[tokio::test]
async fn bad_origins_are_refused_with_their_reasons_and_a_good_one_is_used() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let c = car(200_000, 2);
    let f = fetcher(true);
    let one = |name: &str, mode| vec![origin.add(name, &c.bytes, mode)];

    let wrong = fetch(&f, &one("wrong", Serve::WrongBytes), &c, &dir.path().join("w")).await;
    assert!(matches!(wrong, Err(FetchError::Mismatch(_))), "{wrong:?}");
    assert!(!dir.path().join("w").exists(), "wrong bytes are not kept");

    let failure = |r: Result<_, FetchError>| match r {
        Err(FetchError::Exhausted(f)) => f[0].1.clone(),
        other => panic!("{other:?}"),
    };
    let short = failure(fetch(&f, &one("short", Serve::Short), &c, &dir.path().join("s")).await);
    assert!(matches!(short, OriginFailure::WrongSize { .. }), "{short}");
    let (endless, read) =
        fetch_counting(&f, &one("endless", Serve::Endless), &c, &dir.path().join("e")).await;
    assert_eq!(failure(endless), OriginFailure::TooLong(c.bytes.len() as u64));
    assert!(read <= c.bytes.len() as u64, "reading stopped at the CAR's size ({read})");
    let drip = failure(fetch(&f, &one("drip", Serve::Drip), &c, &dir.path().join("d")).await);
    assert!(matches!(drip, OriginFailure::TooSlow { .. }), "{drip}");
    let missing =
        failure(fetch(&f, &[format!("{}/car/none", origin.base)], &c, &dir.path().join("m")).await);
    assert_eq!(missing, OriginFailure::Status(404));

    // The guard: an origin on a private address is not even connected to.
    let strict = fetcher(false);
    let good = one("good", Serve::Good);
    let refused = failure(fetch(&strict, &good, &c, &dir.path().join("p")).await);
    assert!(matches!(refused, OriginFailure::Refused(_)), "{refused}");
    assert_eq!(origin.served("good"), 0);
    let by_name = failure(
        fetch(&strict, &[good[0].replace("127.0.0.1", "localhost")], &c, &dir.path().join("n"))
            .await,
    );
    assert!(
        matches!(by_name, OriginFailure::Refused(_)),
        "a name resolving to loopback: {by_name}"
    );

    // Bad origins first, then a good one: the good one is used.
    let mut urls = one("wrong2", Serve::Short);
    urls.extend(good);
    let done = fetch(&f, &urls, &c, &dir.path().join("g")).await.unwrap();
    assert_eq!(done.network_bytes, c.bytes.len() as u64);
}
