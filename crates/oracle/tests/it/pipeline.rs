//! Fetching from trustless gateways (good and hostile), the upload endpoint, the gateway's
//! answers and packing — against real HTTP servers on loopback.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::{
    Router,
    body::Body,
    extract::Path,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use estuary_dag::{
    Block, Profile,
    car::{encode_section, header_v1},
    file::import_bytes,
};
use estuary_oracle::{
    blockstore::{Blockstore, FsBlockstore},
    fetch::{FetchError, FetchLimits, Fetcher, SourceFailure},
    pipeline::pack::pack,
};

/// A file DAG with small chunks: several leaves and a root.
fn dag(seed: u8, len: usize) -> (cid::Cid, Vec<Block>) {
    let mut x = 0x9e37_79b9_u32 ^ u32::from(seed);
    let data: Vec<u8> = (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    let mut opts = Profile::KuboCidV1.options();
    opts.chunk_size = 4096;
    let (root, blocks) = import_bytes(&data, opts).unwrap();
    (root.cid, blocks)
}

fn car(root: cid::Cid, blocks: &[Block]) -> Vec<u8> {
    let mut out = header_v1(&[root]);
    for b in blocks {
        encode_section(b, &mut out);
    }
    out
}

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

/// A gateway that answers every CID with the same bytes, optionally slowly.
fn gateway(body: Vec<u8>, drip: Option<Duration>) -> Router {
    Router::new().route(
        "/ipfs/{cid}",
        get(move |Path(_cid): Path<String>| {
            let body = body.clone();
            async move {
                let response: Response = match drip {
                    None => body.into_response(),
                    Some(every) => {
                        let stream = futures_util::stream::unfold(0usize, move |i| {
                            let body = body.clone();
                            async move {
                                if i >= body.len() {
                                    return None;
                                }
                                tokio::time::sleep(every).await;
                                Some((Ok::<_, std::io::Error>(vec![body[i]]), i + 1))
                            }
                        });
                        Body::from_stream(stream).into_response()
                    }
                };
                response
            }
        }),
    )
}

fn store() -> (Arc<FsBlockstore>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    (Arc::new(FsBlockstore::open(dir.path()).unwrap()), dir)
}

fn limits() -> FetchLimits {
    FetchLimits { no_progress: Duration::from_millis(500), ..FetchLimits::default() }
}

#[tokio::test]
async fn fetches_and_verifies_a_dag_then_packs_it_like_estuary_add() {
    let (root, blocks) = dag(1, 50_000);
    let url = serve(gateway(car(root, &blocks), None)).await;
    let (blocks_store, dir) = store();
    let fetcher = Fetcher::new(vec![url], limits());
    let stats = fetcher.fetch(&root.to_bytes(), &[], &blocks_store).await.unwrap();
    assert_eq!(stats.blocks, blocks.len() as u64);
    // A second fetch finds everything locally.
    let again =
        Fetcher::new(vec![], limits()).fetch(&root.to_bytes(), &[], &blocks_store).await.unwrap();
    assert_eq!(again, stats);

    let packed = pack(&blocks_store, &root.to_bytes(), &dir.path().join("packed")).unwrap();
    let bytes = std::fs::read(&packed.path).unwrap();
    assert_eq!(bytes.len() as u64, packed.car_size);
    let info = estuary_piece::commp::commp(&bytes).unwrap();
    assert_eq!(packed.piece_cid, estuary_piece::PieceCid::v2(&info).to_string());
    let (header, read) = estuary_dag::car::read_car(&bytes, Default::default()).unwrap();
    assert_eq!(header.roots, vec![root]);
    // The canonical order: the importer's, each block once (the root last), so the piece is
    // the one `estuary add --car` computes for the same file.
    let mut seen = std::collections::HashSet::new();
    let produced: Vec<cid::Cid> =
        blocks.iter().map(|b| b.cid).filter(|c| seen.insert(*c)).collect();
    assert_eq!(read.iter().map(|b| b.cid).collect::<Vec<_>>(), produced);
    assert_eq!(read.last().unwrap().cid, root, "the root comes last");
}

#[tokio::test]
async fn a_block_that_does_not_match_its_cid_is_refused() {
    let (root, mut blocks) = dag(2, 20_000);
    blocks[0].data[0] ^= 1;
    let url = serve(gateway(car(root, &blocks), None)).await;
    let (s, _dir) = store();
    let err = Fetcher::new(vec![url], limits()).fetch(&root.to_bytes(), &[], &s).await.unwrap_err();
    assert!(matches!(err, FetchError::BadData { .. }), "{err}");
    assert!(err.is_permanent());
}

#[tokio::test]
async fn blocks_over_the_limit_and_dags_over_the_budget_are_refused() {
    let (root, blocks) = dag(3, 40_000);
    let url = serve(gateway(car(root, &blocks), None)).await;
    let (s, _dir) = store();
    let small = FetchLimits { max_block: 1000, ..limits() };
    let err =
        Fetcher::new(vec![url.clone()], small).fetch(&root.to_bytes(), &[], &s).await.unwrap_err();
    assert!(matches!(err, FetchError::BadData { .. }), "{err}");
    let tight = FetchLimits { max_dag_bytes: 10_000, ..limits() };
    let err = Fetcher::new(vec![url], tight).fetch(&root.to_bytes(), &[], &s).await.unwrap_err();
    assert!(matches!(err, FetchError::TooLarge(_)), "{err}");
}

#[tokio::test]
async fn an_incomplete_car_leaves_the_dag_unavailable() {
    let (root, blocks) = dag(4, 30_000);
    let url = serve(gateway(car(root, &blocks[..blocks.len() - 2]), None)).await;
    let (s, _dir) = store();
    let err = Fetcher::new(vec![url], limits()).fetch(&root.to_bytes(), &[], &s).await.unwrap_err();
    assert!(matches!(err, FetchError::Unavailable(_)), "{err}");
    assert!(!err.is_permanent());
}

#[tokio::test]
async fn a_slow_drip_is_cut_off_while_a_good_fetch_finishes() {
    let (slow_root, slow_blocks) = dag(5, 10_000);
    let (good_root, good_blocks) = dag(6, 10_000);
    let slow = serve(gateway(car(slow_root, &slow_blocks), Some(Duration::from_secs(2)))).await;
    let good = serve(gateway(car(good_root, &good_blocks), None)).await;
    let unreachable = "http://127.0.0.1:9".to_owned();
    let (s, _dir) = store();
    let slow_fetch = Fetcher::new(vec![unreachable, slow], limits());
    let good_fetch = Fetcher::new(vec![good], limits());
    let started = std::time::Instant::now();
    let (slow_cid, good_cid) = (slow_root.to_bytes(), good_root.to_bytes());
    let (slow_result, good_result) =
        tokio::join!(slow_fetch.fetch(&slow_cid, &[], &s), good_fetch.fetch(&good_cid, &[], &s));
    assert!(good_result.is_ok());
    let err = slow_result.unwrap_err();
    assert!(
        matches!(&err, FetchError::Unavailable(why) if why.iter().any(|(_, f)| matches!(f, SourceFailure::NoProgress(_)))),
        "{err}"
    );
    assert!(err.to_string().contains("no progress"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[tokio::test]
async fn not_a_cid_is_refused() {
    let (s, _dir) = store();
    let err = Fetcher::new(vec![], limits()).fetch(b"\x01\x02", &[], &s).await.unwrap_err();
    assert!(matches!(err, FetchError::BadCid(_)));
}

// ------------------------------------------------------------------------------ the oracle's API

use alloy::primitives::Address;
use estuary_oracle::{
    api::{ApiState, router},
    domain::JobSource,
    store::{DatabaseUrl, Store},
};

async fn oracle_api() -> (String, Arc<FsBlockstore>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&DatabaseUrl::Sqlite(dir.path().join("db"))).await.unwrap();
    let blocks = Arc::new(FsBlockstore::open(dir.path().join("data")).unwrap());
    let (_tx, watch) = tokio::sync::watch::channel(estuary_chain::WatchState::default());
    std::mem::forget(_tx);
    let state = ApiState {
        store,
        blocks: Arc::clone(&blocks),
        packed_dir: dir.path().join("data/packed"),
        uploads_dir: dir.path().join("data/uploads"),
        source: JobSource::Contract { chain: 1, address: Address::ZERO },
        watch,
        api_token: Some("op".into()),
        delegates: vec!["/ip4/127.0.0.1/tcp/1/http".into()],
        p2p: None,
        gateway_limits: Default::default(),
        faults: Default::default(),
        policy: estuary_oracle::api::ApiPolicy::default(),
        bucket_size: None,
        aggregates: Default::default(),
        cold: None,
        wake: Default::default(),
        history: Default::default(),
    };
    (serve(router(Arc::new(state))).await, blocks, dir)
}

/// `POST /uploads` for `len` bytes; returns the upload's URL.
async fn create_upload(client: &reqwest::Client, base: &str, len: usize) -> String {
    let created =
        client.post(format!("{base}/uploads")).bearer_auth("op").header("upload-length", len);
    let created = created.send().await.unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    format!("{base}{}", created.headers()[header::LOCATION].to_str().unwrap())
}

#[tokio::test]
async fn a_car_uploaded_in_pieces_is_verified_imported_and_served() {
    let (base, blocks_store, _dir) = oracle_api().await;
    let (root, blocks) = dag(7, 60_000);
    let bytes = car(root, &blocks);
    let client = reqwest::Client::new();

    let url = create_upload(&client, &base, bytes.len()).await;

    let half = bytes.len() / 2;
    let r = client
        .patch(&url)
        .bearer_auth("op")
        .header("content-type", "application/offset+octet-stream")
        .header("upload-offset", 0)
        .body(bytes[..half].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    // A client that lost track re-sends from 0: refused with the server's offset.
    let r = client
        .patch(&url)
        .bearer_auth("op")
        .header("content-type", "application/offset+octet-stream")
        .header("upload-offset", 0)
        .body(bytes[..10].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert_eq!(r.headers()["upload-offset"].to_str().unwrap(), half.to_string());
    let r = client.head(&url).bearer_auth("op").send().await.unwrap();
    assert_eq!(r.headers()["upload-offset"].to_str().unwrap(), half.to_string());
    let r = client
        .patch(&url)
        .bearer_auth("op")
        .header("content-type", "application/offset+octet-stream")
        .header("upload-offset", half)
        .body(bytes[half..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(r.headers()["upload-root"].to_str().unwrap(), root.to_string());
    assert!(blocks_store.has(&root).unwrap());

    // The gateway now serves it: a raw block, the whole CAR (verified by a fetch), HEAD, 406, 404.
    let raw = client.get(format!("{base}/ipfs/{root}?format=raw")).send().await.unwrap();
    assert_eq!(raw.headers()[header::CONTENT_TYPE], "application/vnd.ipld.raw");
    assert_eq!(raw.bytes().await.unwrap(), blocks.iter().find(|b| b.cid == root).unwrap().data);
    let (fresh, _d) = store();
    let fetched = Fetcher::new(vec![base.clone()], limits())
        .fetch(&root.to_bytes(), &[], &fresh)
        .await
        .unwrap();
    assert_eq!(fetched.blocks, blocks.len() as u64);
    let head = client.head(format!("{base}/ipfs/{root}?format=car")).send().await.unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    assert!(head.headers()[header::ETAG].to_str().unwrap().contains(&root.to_string()));
    let plain = client.get(format!("{base}/ipfs/{root}")).send().await.unwrap();
    assert_eq!(plain.status(), StatusCode::NOT_ACCEPTABLE);
    let (other, _) = dag(8, 100);
    let missing = client.get(format!("{base}/ipfs/{other}?format=raw")).send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let bad = client.get(format!("{base}/ipfs/not-a-cid?format=raw")).send().await.unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn concurrent_patches_to_one_upload_are_refused() {
    let (base, _blocks, _dir) = oracle_api().await;
    let (root, blocks) = dag(10, 30_000);
    let bytes = car(root, &blocks);
    let client = reqwest::Client::new();
    let url = create_upload(&client, &base, bytes.len()).await;
    // A slow first PATCH holds the upload; a second one meanwhile is refused.
    let first_half = bytes[..100].to_vec();
    let slow = futures_util::stream::unfold(0usize, move |i| {
        let data = first_half.clone();
        async move {
            if i >= data.len() {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            Some((Ok::<_, std::io::Error>(vec![data[i]]), i + 1))
        }
    });
    let first = tokio::spawn({
        let (client, url) = (client.clone(), url.clone());
        async move {
            client
                .patch(&url)
                .bearer_auth("op")
                .header("content-type", "application/offset+octet-stream")
                .header("upload-offset", 0)
                .body(reqwest::Body::wrap_stream(slow))
                .send()
                .await
                .unwrap()
                .status()
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = client
        .patch(&url)
        .bearer_auth("op")
        .header("content-type", "application/offset+octet-stream")
        .header("upload-offset", 0)
        .body(bytes[..10].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(second.status(), StatusCode::CONFLICT);
    assert_eq!(first.await.unwrap(), StatusCode::NO_CONTENT);
    let head = client.head(&url).bearer_auth("op").send().await.unwrap();
    assert_eq!(head.headers()["upload-offset"].to_str().unwrap(), "100");
}

#[tokio::test]
async fn a_bad_upload_is_refused_and_removed() {
    let (base, blocks_store, _dir) = oracle_api().await;
    let (root, mut blocks) = dag(9, 20_000);
    blocks[1].data[0] ^= 1;
    let bytes = car(root, &blocks);
    let client = reqwest::Client::new();
    let url = create_upload(&client, &base, bytes.len()).await;
    let r = client
        .patch(&url)
        .bearer_auth("op")
        .header("content-type", "application/offset+octet-stream")
        .header("upload-offset", 0)
        .body(bytes)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        client.head(&url).bearer_auth("op").send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    assert!(!blocks_store.has(&blocks[1].cid).unwrap());
    let r = client.post(format!("{base}/uploads")).bearer_auth("op").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

/// The CIDs of a CAR's blocks, in order (each verified by the decoder), and its roots.
fn car_blocks(bytes: &[u8]) -> (Vec<cid::Cid>, Vec<cid::Cid>) {
    use estuary_dag::car::{CarDecoder, CarItem, CarLimits};
    let mut decoder = CarDecoder::new(CarLimits::default());
    decoder.push(bytes);
    let (mut roots, mut cids) = (Vec::new(), Vec::new());
    while let Some(item) = decoder.next_item().unwrap() {
        match item {
            CarItem::Header(h) => roots = h.roots,
            CarItem::Block(b) => cids.push(b.cid),
        }
    }
    decoder.finish().unwrap();
    (roots, cids)
}

#[tokio::test]
async fn gateway_paths_scopes_and_byte_ranges() {
    use estuary_dag::{
        dir::DirectoryBuilder,
        traversal::{DagScope, resolve_path, select_blocks},
        walk::WalkLimits,
    };
    let (base, blocks_store, _dir) = oracle_api().await;
    // A folder with a many-block file, stored as pinned.
    let (file_root, file_blocks) = dag(3, 50_000);
    let mut all: Vec<Block> = file_blocks.clone();
    let file = estuary_dag::file::Imported {
        cid: file_root,
        dag_size: file_blocks.iter().map(|b| b.data.len() as u64).sum(),
        file_size: 50_000,
    };
    let mut dir = DirectoryBuilder::new(Profile::KuboCidV1.options());
    dir.add_file("docs/big file.bin", file).unwrap();
    let root = dir.finish(&mut |b| all.push(b)).unwrap().cid;
    for b in &all {
        blocks_store.put_verified(&b.cid, &b.data).unwrap();
    }
    let get = || {
        estuary_dag::source::infallible(|c: &cid::Cid| {
            all.iter().find(|b| b.cid == *c).map(|b| b.data.clone())
        })
    };
    let expected = |path: &str, scope, range: Option<&str>| {
        let resolved = resolve_path(root, path, get()).unwrap();
        let mut out = Vec::new();
        select_blocks(
            &resolved,
            scope,
            range.map(|r| r.parse().unwrap()),
            WalkLimits::default(),
            get(),
            |c, _| {
                out.push(*c);
                true
            },
        )
        .unwrap();
        out
    };
    let client = reqwest::Client::new();
    let url = |q: &str| format!("{base}/ipfs/{root}/docs/big%20file.bin?format=car{q}");

    // dag-scope=all (default) on a path: the path's blocks, then the whole file.
    let r = client.get(url("")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["x-ipfs-path"], format!("/ipfs/{root}/docs/big file.bin"));
    let etag = r.headers()[header::ETAG].to_str().unwrap().to_owned();
    let (roots, cids) = car_blocks(&r.bytes().await.unwrap());
    assert_eq!(roots, vec![root]);
    assert_eq!(cids, expected("docs/big file.bin", DagScope::All, None));
    assert_eq!(cids.len(), file_blocks.len() + 2);
    // entity-bytes: only what covers the range.
    let r = client.get(url("&dag-scope=entity&entity-bytes=10000:12000")).send().await.unwrap();
    let (_, ranged) = car_blocks(&r.bytes().await.unwrap());
    assert_eq!(ranged, expected("docs/big file.bin", DagScope::Entity, Some("10000:12000")));
    assert!(ranged.len() < cids.len() / 2, "{} of {}", ranged.len(), cids.len());
    assert_ne!(r_etag(&client, &url("&dag-scope=entity&entity-bytes=10000:12000")).await, etag);
    // dag-scope=block: the path and the file's root block.
    let r = client.get(url("&dag-scope=block")).send().await.unwrap();
    let (_, block) = car_blocks(&r.bytes().await.unwrap());
    assert_eq!(block.len(), 3);
    assert_eq!(block[2], file_root);
    // Raw with a path: the terminal block.
    let raw = client.get(format!("{base}/ipfs/{root}/docs?format=raw")).send().await.unwrap();
    assert_eq!(raw.status(), StatusCode::OK);
    // A matching If-None-Match: 304 without a body.
    let r = client.get(url("")).header(header::IF_NONE_MATCH, &etag).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    // Not there: 404; bad parameters: 400.
    for (q, status) in [
        (format!("{base}/ipfs/{root}/nope?format=car"), StatusCode::NOT_FOUND),
        (format!("{base}/ipfs/{root}/docs/big%20file.bin/x?format=raw"), StatusCode::NOT_FOUND),
        (url("&dag-scope=most"), StatusCode::BAD_REQUEST),
        (url("&entity-bytes=0:10"), StatusCode::BAD_REQUEST),
        (url("&dag-scope=entity&entity-bytes=ten"), StatusCode::BAD_REQUEST),
    ] {
        assert_eq!(client.get(&q).send().await.unwrap().status(), status, "{q}");
    }
}

async fn r_etag(client: &reqwest::Client, url: &str) -> String {
    let r = client.head(url).send().await.unwrap();
    r.headers()[header::ETAG].to_str().unwrap().to_owned()
}

// ------------------------------------------------------------------------------ hardening

use estuary_oracle::fetch::NetPolicy;

/// What the blockstore holds, as a set of CIDs.
fn held(store: &FsBlockstore) -> std::collections::BTreeSet<cid::Cid> {
    let mut out = std::collections::BTreeSet::new();
    store
        .list(&mut |l| {
            out.insert(l.cid);
            true
        })
        .unwrap();
    out
}

#[tokio::test]
async fn a_hostile_origins_unrelated_blocks_are_dropped_and_a_failed_fetch_leaves_nothing() {
    let (root, blocks) = dag(11, 30_000);
    let (_, junk) = dag(12, 40_000);
    // The DAG's blocks with someone else's between them: all valid, none reachable.
    let mut mixed = Vec::new();
    for (i, b) in blocks.iter().enumerate() {
        mixed.push(b.clone());
        if let Some(j) = junk.get(i) {
            mixed.push(j.clone());
        }
    }
    let url = serve(gateway(car(root, &mixed), None)).await;
    let (s, _dir) = store();
    Fetcher::new(vec![url], limits()).fetch(&root.to_bytes(), &[], &s).await.unwrap();
    let expected: std::collections::BTreeSet<cid::Cid> = blocks.iter().map(|b| b.cid).collect();
    assert_eq!(held(&s), expected, "only the DAG's blocks are kept");
    assert!(s.stages().unwrap().is_empty(), "the staging area is gone");

    // Junk and an incomplete DAG: the fetch fails and nothing stays behind.
    let (other_root, other) = dag(13, 30_000);
    let mut partial: Vec<Block> = other[..other.len() - 2].to_vec();
    partial.extend(junk.iter().cloned());
    let url = serve(gateway(car(other_root, &partial), None)).await;
    let (s, _dir) = store();
    let err =
        Fetcher::new(vec![url], limits()).fetch(&other_root.to_bytes(), &[], &s).await.unwrap_err();
    assert!(matches!(err, FetchError::Unavailable(_)), "{err}");
    assert!(held(&s).is_empty(), "a failed fetch keeps no block");
    assert!(s.stages().unwrap().is_empty());
}

/// A gateway holding `blocks` under `root` that counts the requests it gets.
fn counting_gateway(
    root: cid::Cid,
    blocks: &[Block],
    hits: Arc<std::sync::atomic::AtomicUsize>,
) -> Router {
    let body = car(root, blocks);
    Router::new().route(
        "/ipfs/{cid}",
        get(move |Path(_c): Path<String>| {
            hits.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let body = body.clone();
            async move { body }
        }),
    )
}

#[tokio::test]
async fn origins_inside_the_network_are_refused_even_behind_a_dns_name() {
    let (root, blocks) = dag(14, 20_000);
    let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let url = serve(counting_gateway(root, &blocks, Arc::clone(&hits))).await;
    let port = url.rsplit(':').next().unwrap();
    let origins = vec![
        format!("/ip4/127.0.0.1/tcp/{port}/http"),
        format!("/ip6/::ffff:127.0.0.1/tcp/{port}/http"),
        // A name that resolves to loopback: refused when resolved, before any connection.
        format!("/dns4/localhost/tcp/{port}/http"),
        "/ip4/169.254.169.254/tcp/80/http".into(),
        "/ip4/10.0.0.1/tcp/80/http".into(),
        "/ip4/100.64.0.1/tcp/80/http".into(),
        "/ip4/192.168.1.1/tcp/80/http".into(),
        "/ip6/fd00::1/tcp/80/http".into(),
        "/ip4/10.0.0.2/tcp/4001/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN".into(),
    ];
    let (s, _dir) = store();
    let err =
        Fetcher::new(vec![], limits()).fetch(&root.to_bytes(), &origins, &s).await.unwrap_err();
    let FetchError::Unavailable(why) = &err else { panic!("{err}") };
    let text = err.to_string();
    assert!(text.contains("resolves only to internal addresses"), "{text}");
    assert_eq!(
        why.iter().filter(|(_, f)| matches!(f, SourceFailure::Skipped(_))).count(),
        8,
        "{text}"
    );
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 0, "nothing inside was reached");

    // The operator allows loopback (the local stack, these tests): the same origins work.
    let dev = NetPolicy::allowing(vec!["127.0.0.0/8".parse().unwrap()]);
    let stats = Fetcher::with_policy(vec![], limits(), dev)
        .fetch(&root.to_bytes(), &origins[2..3], &s)
        .await
        .unwrap();
    assert_eq!(stats.blocks, blocks.len() as u64);
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let (root, blocks) = dag(15, 20_000);
    let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let target = serve(counting_gateway(root, &blocks, Arc::clone(&hits))).await;
    let redirect = serve(Router::new().route(
        "/ipfs/{cid}",
        get(move |Path(c): Path<String>| {
            let to = format!("{target}/ipfs/{c}?format=car");
            async move { (StatusCode::FOUND, [(header::LOCATION, to)]).into_response() }
        }),
    ))
    .await;
    let (s, _dir) = store();
    let err =
        Fetcher::new(vec![redirect], limits()).fetch(&root.to_bytes(), &[], &s).await.unwrap_err();
    assert!(err.to_string().contains("HTTP 302"), "{err}");
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_source_under_the_throughput_floor_is_cut_after_its_grace() {
    let (root, blocks) = dag(16, 20_000);
    // 64 bytes every 50 ms: about 1.3 KB/s, under a floor of 4 KiB/s.
    let body = car(root, &blocks);
    let drip = Router::new().route(
        "/ipfs/{cid}",
        get(move |Path(_c): Path<String>| {
            let body = body.clone();
            async move {
                let stream = futures_util::stream::unfold(0usize, move |at| {
                    let body = body.clone();
                    async move {
                        if at >= body.len() {
                            return None;
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        let end = (at + 64).min(body.len());
                        Some((Ok::<_, std::io::Error>(body[at..end].to_vec()), end))
                    }
                });
                Body::from_stream(stream).into_response()
            }
        }),
    );
    let url = serve(drip).await;
    let floor = FetchLimits {
        min_throughput: 4 << 10,
        grace: Duration::from_millis(500),
        no_progress: Duration::from_secs(30),
        ..FetchLimits::default()
    };
    let (s, _dir) = store();
    let err = Fetcher::new(vec![url], floor).fetch(&root.to_bytes(), &[], &s).await.unwrap_err();
    let FetchError::Unavailable(why) = &err else { panic!("{err}") };
    assert!(matches!(why.last().unwrap().1, SourceFailure::TooSlow { .. }), "{err}");
    // A request's size hint scales its budget: the grace and twice the floor's time.
    assert_eq!(floor.budget(Some(40 << 10)), Duration::from_millis(500) + Duration::from_secs(20));
    assert_eq!(floor.budget(None), floor.time_budget);
    assert_eq!(floor.budget(Some(1 << 40)), floor.time_budget);
}

#[test]
fn the_fetch_walk_stops_two_gibibytes_of_identity_links() {
    // What a peer or gateway sending 3,300 nodes of 65,535 identity links makes the fetch's
    // completeness walk do, under the default limits: stop after a few nodes (the chain linked
    // first fills the queue; linked last, the block limit stops it the same way: see
    // estuary-dag's hostile_dags test).
    for chain_first in [true, false] {
        let mut source = estuary_dag::hostile::IdentityLinks {
            nodes: 3300,
            links: 65_535,
            chain_first,
            served: 0,
        };
        let root = source.root();
        let err =
            estuary_dag::walk::dfs(root, FetchLimits::default().walk(), &mut source, |_, _| {})
                .unwrap_err();
        assert!(err.is_limit(), "{err}");
        assert!(source.served < 128 << 20, "{} bytes read of 2 GiB", source.served);
    }
}

/// The oracle's API over a fresh store, with `limits` on the gateway's walks.
async fn oracle_api_within(
    limits: estuary_oracle::api::GatewayLimits,
) -> (String, Arc<FsBlockstore>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&DatabaseUrl::Sqlite(dir.path().join("db"))).await.unwrap();
    let blocks = Arc::new(FsBlockstore::open(dir.path().join("data")).unwrap());
    let (_tx, watch) = tokio::sync::watch::channel(estuary_chain::WatchState::default());
    std::mem::forget(_tx);
    let state = ApiState {
        store,
        blocks: Arc::clone(&blocks),
        packed_dir: dir.path().join("data/packed"),
        uploads_dir: dir.path().join("data/uploads"),
        source: JobSource::Contract { chain: 1, address: Address::ZERO },
        watch,
        api_token: None,
        delegates: vec![],
        p2p: None,
        gateway_limits: limits,
        faults: Default::default(),
        policy: estuary_oracle::api::ApiPolicy::default(),
        bucket_size: None,
        aggregates: Default::default(),
        cold: None,
        wake: Default::default(),
        history: Default::default(),
    };
    (serve(router(Arc::new(state))).await, blocks, dir)
}

#[tokio::test(flavor = "multi_thread")]
async fn hamt_and_entity_bytes_bombs_stay_within_the_gateway_budget_and_the_server_answers() {
    let limits = estuary_oracle::api::GatewayLimits { max_visits: 100_000, ..Default::default() };
    let (base, blocks_store, _dir) = oracle_api_within(limits).await;
    let (hamt, hamt_blocks) = estuary_dag::hostile::hamt_bomb(9);
    let (file, file_blocks) = estuary_dag::hostile::entity_bytes_bomb(8, 64);
    for b in hamt_blocks.iter().chain(&file_blocks) {
        blocks_store.put(&b.cid, &b.data).unwrap();
    }
    let client = reqwest::Client::new();
    // The HAMT's buckets: ten blocks, each once, in a complete CAR.
    for scope in ["entity", "all"] {
        let r = client
            .get(format!("{base}/ipfs/{hamt}?format=car&dag-scope={scope}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let (_, cids) = car_blocks(&r.bytes().await.unwrap());
        assert_eq!(cids.len(), if scope == "entity" { 9 } else { 10 }, "{scope}");
    }
    // The file of 64⁸ KiB: many bombs at once, each cut at its budget (a truncated body),
    // while the server keeps answering.
    let bombs: Vec<_> = (0..8)
        .map(|_| {
            let url = format!("{base}/ipfs/{file}?format=car&dag-scope=entity&entity-bytes=0:*");
            let client = client.clone();
            tokio::spawn(async move {
                let r = client.get(url).send().await.unwrap();
                assert_eq!(r.status(), StatusCode::OK);
                r.bytes().await.is_err()
            })
        })
        .collect();
    let health = client.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let raw = client.get(format!("{base}/ipfs/{hamt}?format=raw")).send().await.unwrap();
    assert_eq!(raw.status(), StatusCode::OK);
    for bomb in bombs {
        assert!(bomb.await.unwrap(), "the bomb's CAR ends with an error, not complete");
    }
}
