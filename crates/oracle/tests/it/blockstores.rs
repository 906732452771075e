//! One suite for both blockstores: the filesystem and S3-compatible object storage (a local
//! moto server, from PyPI, started by the test). Block operations, healing of corrupt blocks,
//! and the pipeline's use: a DAG fetched from a gateway into the store, packed into the same
//! piece, served back by the trustless gateway.

use std::{
    net::SocketAddr,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::Arc,
    time::Duration,
};

use alloy::primitives::Address;
use axum::{Router, extract::Path, routing::get};
use estuary_dag::{
    Block, Profile,
    car::{encode_section, header_v1},
    file::import_bytes,
};
use estuary_oracle::{
    api::{ApiState, router},
    blockstore::{
        Blockstore, BlockstoreError, FsBlockstore,
        s3::{S3Blockstore, S3Config},
    },
    domain::JobSource,
    fetch::{FetchLimits, Fetcher},
    pipeline::pack::pack,
    store::{DatabaseUrl, Store},
};
use object_store::{ObjectStore, PutPayload, aws::AmazonS3Builder, path::Path as ObjectPath};

/// A moto S3 server on a free loopback port with one bucket; killed when dropped.
struct Moto {
    child: Child,
    endpoint: String,
}

fn moto_bin() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let bin = root.join(".cache/moto/bin/moto_server");
    assert!(bin.exists(), "moto is installed by scripts/setup --browser (.cache/moto)");
    bin
}

impl Moto {
    async fn start(bucket: &str) -> Moto {
        let port = estuary_chain::devnet::free_port().unwrap();
        let child = Command::new(moto_bin())
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Owned at once, so the server is stopped however this ends.
        let moto = Moto { child, endpoint: format!("http://127.0.0.1:{port}") };
        let client = reqwest::Client::new();
        for _ in 0..200 {
            if let Ok(r) = client.put(format!("{}/{bucket}", moto.endpoint)).send().await
                && r.status().is_success()
            {
                return moto;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("moto did not start");
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn dag(len: usize) -> (cid::Cid, Vec<Block>) {
    let data: Vec<u8> = (0..len).map(|i| (i * 7 % 253) as u8).collect();
    let mut opts = Profile::KuboCidV1.options();
    opts.chunk_size = 4096;
    let (root, blocks) = import_bytes(&data, opts).unwrap();
    (root.cid, blocks)
}

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

/// The suite: `corrupt` overwrites a stored block's bytes behind the store's back.
async fn suite<B: Blockstore>(
    store: Arc<B>,
    corrupt: impl AsyncFn(&cid::Cid),
    work: &std::path::Path,
) {
    let block = Block::new(cid::Version::V1, 0x55, b"hello".to_vec());
    let s = Arc::clone(&store);
    let b = block.clone();
    let (had, got, bad) = tokio::task::spawn_blocking(move || {
        let had = s.has(&b.cid).unwrap();
        s.put(&b.cid, &b.data).unwrap();
        s.put(&b.cid, &b.data).unwrap();
        let bad = s.put(&b.cid, b"other");
        (had, s.get(&b.cid).unwrap(), bad)
    })
    .await
    .unwrap();
    assert!(!had);
    assert_eq!(got.as_deref(), Some(&b"hello"[..]));
    assert!(matches!(bad, Err(BlockstoreError::Mismatch(_))));
    // A corrupt block is dropped on read, so it is fetched again.
    corrupt(&block.cid).await;
    let s = Arc::clone(&store);
    let cid = block.cid;
    let (after, present) =
        tokio::task::spawn_blocking(move || (s.get(&cid).unwrap(), s.has(&cid).unwrap()))
            .await
            .unwrap();
    assert_eq!(after, None);
    assert!(!present);

    // The pipeline over this store: fetch, pack, serve.
    let (root, blocks) = dag(60_000);
    let mut car = header_v1(&[root]);
    for b in &blocks {
        encode_section(b, &mut car);
    }
    let upstream = serve(Router::new().route(
        "/ipfs/{cid}",
        get(move |Path(_c): Path<String>| {
            let car = car.clone();
            async move { car }
        }),
    ))
    .await;
    let limits = FetchLimits { no_progress: Duration::from_millis(500), ..FetchLimits::default() };
    let stats =
        Fetcher::new(vec![upstream], limits).fetch(&root.to_bytes(), &[], &store).await.unwrap();
    assert_eq!(stats.blocks, blocks.len() as u64);
    let s = Arc::clone(&store);
    let dir = work.join("packed");
    let packed = tokio::task::spawn_blocking(move || pack(&s, &root.to_bytes(), &dir))
        .await
        .unwrap()
        .unwrap();
    // The same piece as packing from the filesystem store.
    let reference = tempfile::tempdir().unwrap();
    let fs = Arc::new(FsBlockstore::open(reference.path()).unwrap());
    for b in &blocks {
        fs.put(&b.cid, &b.data).unwrap();
    }
    let expected = pack(&fs, &root.to_bytes(), &reference.path().join("packed")).unwrap();
    assert_eq!(packed.piece_cid, expected.piece_cid);

    let db = Store::open(&DatabaseUrl::Sqlite(work.join("db"))).await.unwrap();
    let (tx, watch) = tokio::sync::watch::channel(estuary_chain::WatchState::default());
    let base = serve(router(Arc::new(ApiState {
        store: db,
        blocks: Arc::clone(&store),
        packed_dir: work.join("packed"),
        uploads_dir: work.join("uploads"),
        source: JobSource::Contract { chain: 1, address: Address::ZERO },
        watch,
        api_token: None,
        delegates: vec![],
        p2p: None,
        gateway_limits: Default::default(),
        faults: Default::default(),
        policy: estuary_oracle::api::ApiPolicy::default(),
        bucket_size: None,
        aggregates: Default::default(),
        cold: None,
        wake: Default::default(),
        history: Default::default(),
    })))
    .await;
    let served = reqwest::get(format!("{base}/ipfs/{root}?format=car")).await.unwrap();
    assert_eq!(served.status(), 200);
    let fresh = tempfile::tempdir().unwrap();
    let again = Arc::new(FsBlockstore::open(fresh.path()).unwrap());
    let refetched =
        Fetcher::new(vec![base], limits).fetch(&root.to_bytes(), &[], &again).await.unwrap();
    assert_eq!(refetched, stats);
    drop(tx);
}

#[tokio::test(flavor = "multi_thread")]
async fn filesystem_passes_the_suite() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let store = Arc::new(FsBlockstore::open(&root).unwrap());
    let blocks_dir = root.join("blocks");
    suite(
        store,
        async |cid: &cid::Cid| {
            let shard = format!("{:02x}", cid.hash().digest().last().unwrap());
            std::fs::write(blocks_dir.join(shard).join(cid.to_string()), b"rot").unwrap();
        },
        dir.path(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_passes_the_suite() {
    let moto = Moto::start("estuary").await;
    let config = S3Config {
        url: "s3://estuary/oracle-1".into(),
        endpoint: Some(moto.endpoint.clone()),
        region: None,
        // moto accepts any credentials; the client needs some.
        credentials: Some(("test".into(), "test".into())),
    };
    let store = Arc::new(S3Blockstore::open(&config).unwrap());
    // A second client writes behind the store's back.
    let raw = AmazonS3Builder::new()
        .with_access_key_id("test")
        .with_secret_access_key("test")
        .with_bucket_name("estuary")
        .with_region("us-east-1")
        .with_endpoint(&moto.endpoint)
        .with_allow_http(true)
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    suite(
        store,
        async |cid: &cid::Cid| {
            let shard = format!("{:02x}", cid.hash().digest().last().unwrap());
            let key = ObjectPath::from(format!("oracle-1/blocks/{shard}/{cid}"));
            raw.put(&key, PutPayload::from_static(b"rot")).await.unwrap();
        },
        dir.path(),
    )
    .await;
    // Blocks really are objects in the bucket.
    let listed =
        reqwest::get(format!("{}/estuary?list-type=2&prefix=oracle-1/blocks/", moto.endpoint))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
    assert!(listed.matches("<Key>").count() > 10, "{listed}");
}
