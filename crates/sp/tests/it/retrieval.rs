//! The retrieval server over a real store and piece files: pieces by CID with ranges, blocks
//! through the trustless gateway, and its limits (responses at once, clients that stop
//! reading).

use std::{
    sync::{Arc, Mutex, atomic::AtomicU64},
    time::Duration,
};

use estuary_sp::{
    agent::Stats,
    api::{ApiState, router},
    index::index_car,
    store::{PieceRow, Store},
};
use tokio::sync::Semaphore;

use crate::support::{Car, car};

async fn serve(max: usize, idle: Duration) -> (String, Car, Car, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("sp.sqlite")).await.unwrap();
    let small = car(300_000, 7);
    let big = car(16_000_000, 8);
    for c in [&small, &big] {
        let path = dir.path().join(format!("{}.car", c.v2));
        std::fs::write(&path, &c.bytes).unwrap();
        let v1 = cid::Cid::try_from(c.piece_v1.as_slice()).unwrap().to_string();
        store
            .add_piece(&PieceRow {
                id: 0,
                name: c.v2.clone(),
                piece_v1: v1,
                piece_v2: Some(c.v2.clone()),
                car_size: c.bytes.len() as u64,
                padded_size: c.padded,
                path: path.display().to_string(),
                indexed: 0,
                blocks: 0,
                roots: None,
                index_error: None,
                verified_ms: 1,
            })
            .await
            .unwrap();
        let id = store.piece(&c.v2).await.unwrap().unwrap().id;
        let mut entries = Vec::new();
        index_car(&path, |b| {
            entries.extend(b);
            Ok(())
        })
        .unwrap();
        store.add_blocks(id, &entries).await.unwrap();
        store.set_indexed(id, Ok("[]".into()), entries.len() as u64).await.unwrap();
    }
    let state = Arc::new(ApiState {
        store,
        miner: 1000,
        account: "0x0".into(),
        chain_id: 31337,
        watchers: Vec::new(),
        stats: Arc::new(Stats::default()),
        downloads: Arc::new(Mutex::default()),
        retrievals: Arc::new(Semaphore::new(max)),
        idle,
        bytes_served: AtomicU64::new(0),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router(state)).await });
    (url, small, big, dir)
}

#[tokio::test]
async fn pieces_and_blocks_are_served_as_sps_serve_them() {
    let (url, small, _big, _dir) = serve(8, Duration::from_secs(5)).await;
    let http = reqwest::Client::new();
    let get = |path: String| http.get(format!("{url}{path}"));
    let r = get(format!("/piece/{}", small.v2)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/vnd.ipld.car");
    assert_eq!(r.bytes().await.unwrap(), small.bytes);
    let r = get(format!("/piece/{}", small.v2)).header("range", "bytes=-10").send().await.unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.bytes().await.unwrap(), small.bytes[small.bytes.len() - 10..]);
    let r = get(format!("/piece/{}", small.v2))
        .header("range", "bytes=999999999-")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 416);
    assert_eq!(r.headers()["content-range"], format!("bytes */{}", small.bytes.len()));
    let r = http.head(format!("{url}/piece/{}", small.v2)).send().await.unwrap();
    assert_eq!(r.headers()["content-length"], small.bytes.len().to_string());
    assert_eq!(get("/piece/nonsense".into()).send().await.unwrap().status(), 400);
    let other = car(1000, 99);
    assert_eq!(get(format!("/piece/{}", other.v2)).send().await.unwrap().status(), 404);

    let root = small.root;
    let r = get(format!("/ipfs/{root}?format=raw")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/vnd.ipld.raw");
    assert_eq!(r.bytes().await.unwrap(), small.blocks[0].data);
    assert_eq!(
        get(format!("/ipfs/{root}")).send().await.unwrap().status(),
        406,
        "a trustless gateway only"
    );
    assert_eq!(get(format!("/ipfs/{root}?format=tar")).send().await.unwrap().status(), 400);
    assert_eq!(get("/ipfs/notacid?format=raw".into()).send().await.unwrap().status(), 400);
    assert_eq!(get(format!("/ipfs/{}?format=raw", other.root)).send().await.unwrap().status(), 404);
}

#[tokio::test]
async fn retrievals_are_bounded_and_idle_clients_are_cut_off() {
    let (url, small, big, _dir) = serve(1, Duration::from_millis(300)).await;
    let http = reqwest::Client::new();
    // One response at a time: a second one while the first is unread is refused at once.
    let held = http.get(format!("{url}/piece/{}", big.v2)).send().await.unwrap();
    assert_eq!(held.status(), 200);
    let busy = http.get(format!("{url}/piece/{}", small.v2)).send().await.unwrap();
    assert_eq!(busy.status(), 503);
    assert_eq!(busy.headers()["retry-after"], "5");
    // The held client stops reading: after the idle time its response is cut off, and the
    // permit comes back.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut body = held;
    let mut got = 0usize;
    let cut = loop {
        match body.chunk().await {
            Ok(Some(c)) => got += c.len(),
            Ok(None) => break false,
            Err(_) => break true,
        }
    };
    assert!(
        cut && got < big.bytes.len(),
        "the idle response was cut off ({got} of {} bytes)",
        big.bytes.len()
    );
    let again = http.get(format!("{url}/piece/{}", small.v2)).send().await.unwrap();
    assert_eq!(again.status(), 200);
    assert_eq!(again.bytes().await.unwrap(), small.bytes);
}
