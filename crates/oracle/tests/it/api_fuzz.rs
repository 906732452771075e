//! The HTTP API driven in process with 10,000 random and malformed requests (methods, paths,
//! CIDs, ids, offsets, ranges, tus headers, tokens, JSON and binary bodies): no request panics
//! the router, every answer has a status the API documents, and the process's memory stays
//! bounded. Run with `PROPTEST_CASES=N` for more.

use std::sync::Arc;

use axum::{body::Body, http::Request};
use estuary_oracle::{
    api::{ApiPolicy, ApiState, router},
    blockstore::{Blockstore, FsBlockstore},
    domain::{
        JobSource,
        pinning::{Scope, secret_digest},
    },
    store::{DatabaseUrl, Store},
};
use http_body_util::BodyExt;
use proptest::{prelude::*, test_runner::TestRunner};
use tower::ServiceExt;

/// Every status the API documents (see `api` and its modules).
const DOCUMENTED: [u16; 21] = [
    200, 201, 202, 204, 206, 304, 400, 401, 403, 404, 405, 406, 409, 410, 412, 413, 415, 416, 422,
    503, 507,
];

fn pick<T: Clone + std::fmt::Debug + 'static>(items: Vec<T>) -> impl Strategy<Value = T> {
    prop::sample::select(items)
}

/// Text that is sometimes valid, often nearly so, sometimes hostile.
fn fragment(cids: Vec<String>) -> impl Strategy<Value = String> {
    prop_oneof![
        pick(cids),
        pick(vec![
            String::new(),
            "0".into(),
            "1".into(),
            "-1".into(),
            "+5".into(),
            "18446744073709551616".into(),
            "99999999999999999999999999999999999999999999999999999999999999999999999999999999"
                .into(),
            "0x10".into(),
            "..".into(),
            "%2e%2e%2f%2e%2e".into(),
            "%00".into(),
            "%ff%fe".into(),
            "é漢字".into(),
            "a".repeat(4000),
            "bafy".into(),
            "Qm".into(),
            "bafkzcibcaapao6o4".into(),
            "00000000000000000000000000000000".into(),
            "ffffffffffffffffffffffffffffffff".into(),
            "11111111-1111-4111-8111-111111111111".into(),
            "contract/31337/0x1111111111111111111111111111111111111111/1".into(),
            "api/alice/x".into(),
        ]),
        "[a-zA-Z0-9%._~/-]{0,40}",
        "\\PC{0,20}",
    ]
}

fn query() -> impl Strategy<Value = String> {
    let key = pick(vec![
        "format",
        "dag-scope",
        "entity-bytes",
        "after",
        "limit",
        "status",
        "cid",
        "name",
        "match",
        "before",
        "meta",
        "presigned",
        "x",
    ]);
    let value = prop_oneof![
        pick(vec![
            "raw",
            "car",
            "block",
            "entity",
            "all",
            "0:*",
            "0:-1",
            "-5:-1",
            "10:5",
            "*",
            "1000",
            "0",
            "1001",
            "queued,pinned",
            "done",
            "exact",
            "regex",
            "2026-01-01T00:00:00Z",
            "yesterday",
            "{\"a\":\"b\"}",
            "[1]",
            "est_p_00",
            "%zz",
        ])
        .prop_map(String::from),
        "[a-z0-9:,*%-]{0,12}",
    ];
    proptest::collection::vec((key, value), 0..4).prop_map(|pairs| {
        let text: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
        if text.is_empty() { String::new() } else { format!("?{}", text.join("&")) }
    })
}

fn path(cids: Vec<String>) -> impl Strategy<Value = String> {
    let prefix = pick(vec![
        "/health",
        "/p2p",
        "/status",
        "/metrics",
        "/metrics/history",
        "/requests",
        "/requests/",
        "/jobs/",
        "/ipfs/",
        "/piece/",
        "/inclusion/",
        "/deals",
        "/providers",
        "/buckets",
        "/uploads",
        "/uploads/",
        "/uploads/presign",
        "/auth/nonce",
        "/auth/siwe",
        "/pins",
        "/pins/",
        "/",
        "/nope/",
    ]);
    (prefix, fragment(cids.clone()), proptest::option::of(fragment(cids)), query()).prop_map(
        |(prefix, a, b, q)| {
            let mut p = prefix.to_owned();
            if prefix.ends_with('/') {
                p.push_str(&a);
                if let Some(b) = b {
                    p.push('/');
                    p.push_str(&b);
                }
            }
            // What a URI may not hold is sent percent-encoded, as a client would.
            let p: String = format!("{p}{q}")
                .bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() || b"-._~:/?@!$&'()*+,;=%".contains(&b) {
                        char::from(b).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect();
            p
        },
    )
}

fn headers() -> impl Strategy<Value = Vec<(String, String)>> {
    let name = pick(vec![
        "authorization",
        "upload-length",
        "upload-offset",
        "upload-metadata",
        "tus-resumable",
        "content-type",
        "range",
        "accept",
        "if-none-match",
        "origin",
        "upload-defer-length",
        "access-control-request-method",
        "content-length",
    ]);
    let value = prop_oneof![
        pick(vec![
            "Bearer op",
            "Bearer alice",
            "Bearer reader",
            "Bearer ",
            "Bearer est_s_00",
            "Basic x",
            "1",
            "0",
            "100",
            "-1",
            "+1",
            " 7",
            "18446744073709551615",
            "18446744073709551616",
            "1.0.0",
            "0.2.2",
            "application/offset+octet-stream",
            "application/json",
            "application/vnd.ipld.car",
            "application/vnd.ipld.raw",
            "bytes=0-10",
            "bytes=-5",
            "bytes=10-0",
            "bytes=0-99999999999",
            "*",
            "\"x\"",
            "http://127.0.0.1:5173",
            "filename YQ==",
            "a b c",
            "request MQ==,signature MHgwMA==",
            ",,",
            "POST",
        ])
        .prop_map(String::from),
        "[ -~]{0,30}",
    ];
    proptest::collection::vec((name, value), 0..6)
        .prop_map(|v| v.into_iter().map(|(n, v)| (n.to_owned(), v)).collect())
}

fn body(car: &[u8]) -> impl Strategy<Value = Vec<u8>> {
    let json = pick(vec![
        serde_json::json!({ "cid": "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy" }),
        serde_json::json!({ "cid": "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy", "name": "n", "origins": ["/ip4/127.0.0.1/tcp/1/http"], "meta": { "a": "b" } }),
        serde_json::json!({ "cid": 5 }),
        serde_json::json!({ "max_bytes": 100, "expires_in": 60 }),
        serde_json::json!({ "max_bytes": -1 }),
        serde_json::json!({ "max_bytes": 18_446_744_073_709_551_615u64, "expires_in": 0 }),
        serde_json::json!({ "message": "x wants you to sign in with your Ethereum account:\n0x0000000000000000000000000000000000000000\n\n\nURI: http://x\nVersion: 1\nChain ID: 1\nNonce: 0123456789abcdef\nIssued At: 2026-01-01T00:00:00Z", "signature": "0x00" }),
        serde_json::json!({ "message": "", "signature": "" }),
        serde_json::json!([1, 2, 3]),
        serde_json::json!(null),
    ])
    .prop_map(|v| v.to_string().into_bytes());
    prop_oneof![
        Just(Vec::new()),
        json,
        Just(car.to_vec()),
        Just(car[..car.len() / 2].to_vec()),
        proptest::collection::vec(any::<u8>(), 0..2048),
    ]
}

fn method() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        8 => pick(vec!["GET", "HEAD", "POST", "PATCH"]),
        1 => pick(vec!["DELETE", "OPTIONS", "PUT", "TRACE", "BREW"]),
    ]
}

/// This process's resident memory, in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

#[test]
fn ten_thousand_random_requests_get_documented_answers_in_bounded_memory() {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (app, cids, car) = runtime.block_on(async {
        let store = Store::open(&DatabaseUrl::Sqlite(dir.path().join("db"))).await.unwrap();
        store.add_token("alice", &secret_digest("alice"), Scope::Write, 1).await.unwrap();
        store.add_token("reader", &secret_digest("reader"), Scope::Read, 1).await.unwrap();
        let blocks = Arc::new(FsBlockstore::open(dir.path().join("data")).unwrap());
        // A small DAG the gateway holds, so CIDs that resolve are in the mix.
        let data = crate::support::noise(20_000, 5);
        let mut opts = estuary_dag::Profile::KuboCidV1.options();
        opts.chunk_size = 4096;
        let (root, dag) = estuary_dag::file::import_bytes(&data, opts).unwrap();
        let mut car = estuary_dag::car::header_v1(&[root.cid]);
        for b in &dag {
            blocks.put(&b.cid, &b.data).unwrap();
            estuary_dag::car::encode_section(b, &mut car);
        }
        let mut cids: Vec<String> = dag.iter().map(|b| b.cid.to_string()).collect();
        cids.push(format!("{}/a/b", root.cid));
        cids.push("bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy".into());
        cids.push("QmQPeNsJPyVWPFDVHb9hMpRKxHZaoDpT2YRH8DF9eYVw9Z".into());
        let (tx, watch) = tokio::sync::watch::channel(estuary_chain::WatchState::default());
        std::mem::forget(tx);
        let state = ApiState {
            store,
            blocks,
            packed_dir: dir.path().join("data/packed"),
            uploads_dir: dir.path().join("data/uploads"),
            source: JobSource::Contract {
                chain: 31337,
                address: alloy::primitives::Address::repeat_byte(1),
            },
            watch,
            api_token: Some("op".into()),
            delegates: vec![],
            p2p: None,
            policy: ApiPolicy { siwe_domains: vec!["x".into()], ..ApiPolicy::default() },
            bucket_size: None,
            aggregates: Default::default(),
            cold: None,
            wake: Default::default(),
            history: Default::default(),
            gateway_limits: Default::default(),
            faults: Default::default(),
        };
        (router(Arc::new(state)), cids, car)
    });
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(10_000);
    let mut runner = TestRunner::new(ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let strategy = (method(), path(cids), headers(), body(&car));
    let before = rss();
    // The runner takes an `Fn`: the tallies live in cells.
    let peak = std::cell::Cell::new(before);
    let seen = std::cell::RefCell::new(std::collections::BTreeMap::<u16, u32>::new());
    let count = std::cell::Cell::new(0u32);
    runner
        .run(&strategy, |(method, uri, headers, body)| {
            let mut request = Request::builder().method(method).uri(&uri);
            for (name, value) in &headers {
                // A value no HTTP parser would deliver is left out, not the whole request.
                if axum::http::HeaderValue::from_str(value).is_ok() {
                    request = request.header(name, value);
                }
            }
            // A request the HTTP layer would refuse to parse never reaches the router.
            let Ok(request) = request.body(Body::from(body)) else { return Ok(()) };
            let (status, size) = runtime.block_on(async {
                let response = app.clone().oneshot(request).await.unwrap();
                let status = response.status().as_u16();
                let bytes = response.into_body().collect().await.map(|b| b.to_bytes().len());
                (status, bytes.unwrap_or(0))
            });
            count.set(count.get() + 1);
            *seen.borrow_mut().entry(status).or_default() += 1;
            prop_assert!(
                DOCUMENTED.contains(&status),
                "{method} {uri} {headers:?} answered {status}"
            );
            prop_assert!(size <= 1 << 20, "{method} {uri}: a {size}-byte answer");
            if count.get().is_multiple_of(500) {
                peak.set(peak.get().max(rss()));
            }
            Ok(())
        })
        .unwrap();
    let (count, seen) = (count.get(), seen.into_inner());
    let grown = peak.get().saturating_sub(before);
    eprintln!("{count} requests; statuses {seen:?}; memory grew {} MiB", grown >> 20);
    assert!(grown < 256 << 20, "memory grew by {} MiB", grown >> 20);
    assert!(seen.len() >= 8, "too few kinds of answer: {seen:?}");
}
