//! The command sealer runs a script with the piece and the deal's terms: the script publishes
//! the deal and proves its sector with Foundry's `cast` (standing for Boost's import and the
//! provider's sealing pipeline) and prints the deal ID; the agent reads the activation from
//! the chain and proves the slot.

use estuary_chain::devnet;

use crate::support::{AgentProcess, Chain, Origin, Serve, agent_args, car, work_for};

#[tokio::test(flavor = "multi_thread")]
async fn the_command_sealer_hands_the_piece_to_a_script() {
    let chain = Chain::start().await;
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("seal.sh");
    let log = dir.path().join("seal.log");
    std::fs::write(
        &script,
        r#"#!/bin/sh
set -e
echo "$1 $2 $ESTUARY_PADDED_SIZE $ESTUARY_CAR_SIZE $ESTUARY_KIND $ESTUARY_MINER $ESTUARY_START_EPOCH $ESTUARY_END_EPOCH $3" >> "$SEAL_LOG"
test -s "$1"
market=0xff00000000000000000000000000000000000005
id=$(cast call --rpc-url "$RPC" $market 'nextDealId()(uint64)')
cast send --rpc-url "$RPC" --private-key "$ESTUARY_SP_KEY" $market 'publishStorageDeals((bytes,bytes)[])' "[($ESTUARY_PROPOSAL,0xdead)]" > /dev/null
cast send --rpc-url "$RPC" --private-key "$ESTUARY_SP_KEY" "$MINER_ADDRESS" 'activateDeals(uint64,int64,uint64[])' "$id" "$ESTUARY_END_EPOCH" "[$id]" > /dev/null
echo "published deal $id"
"#,
    )
    .unwrap();
    let c = car(250_000, 30);
    let url = origin.add("c", &c.bytes, Serve::Good);
    let order = chain.create_order(4, &c, 1, vec![url]).await;

    // Port 0: the agent binds a port of its own choosing, which the piece's URL names.
    let port = 0;
    let mut args = agent_args(&chain, 0, dir.path(), port);
    let sealer = args.iter().position(|a| a == "--sealer").unwrap();
    args[sealer + 1] = "command".into();
    args.extend([
        "--seal-command".into(),
        format!("sh {} {{piece_path}} {{piece_cid}} {{piece_url}}", script.display()),
    ]);
    let cast_dir =
        devnet::foundry_tool("cast").parent().map(|p| p.display().to_string()).unwrap_or_default();
    let env = vec![
        ("RPC".to_owned(), chain.anvil.endpoint()),
        ("SEAL_LOG".to_owned(), log.display().to_string()),
        ("MINER_ADDRESS".to_owned(), estuary_contracts::masked_id_address(1000).to_string()),
        ("PATH".to_owned(), format!("{cast_dir}:{}", std::env::var("PATH").unwrap_or_default())),
    ];
    let agent =
        AgentProcess::start_args(args, &chain.key_hex(1), 1000, dir.path(), port, &env).await;
    let reference = order.to_string();
    let v = agent
        .wait_for("/work?limit=100", 120, "the slot active through the command sealer", |v| {
            work_for(v.as_array().unwrap(), "slot", &reference)
                .iter()
                .any(|w| w["state"] == "active")
        })
        .await;
    let w = work_for(v.as_array().unwrap(), "slot", &reference)[0].clone();
    let deal = w["deal_id"].as_u64().unwrap();
    assert_eq!(chain.slot(order, 1000).await.dealId, deal, "the deal the script printed");
    let lines = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = lines.lines().collect();
    assert_eq!(lines.len(), 1, "the script ran once: {lines:?}");
    let fields: Vec<&str> = lines[0].split(' ').collect();
    let v1 = cid::Cid::try_from(c.piece_v1.as_slice()).unwrap().to_string();
    assert!(fields[0].ends_with(".car"));
    assert_eq!(fields[1], v1);
    assert_eq!(fields[2], c.padded.to_string());
    assert_eq!(fields[3], c.bytes.len().to_string());
    assert_eq!(fields[4], "slot");
    assert_eq!(fields[5], "f01000");
    let served = format!("http://127.0.0.1:{}/piece/", agent.port());
    assert!(fields[8].starts_with(&served), "served at the port it bound: {}", fields[8]);
    agent.stop().await;
}

/// The Boost example of `docs/sp-agent.md` (`docs/sealers/boost-contract-deal.sh`), run as the
/// agent runs it (its template rendered by `CommandSealer::render`, `sh -c`, the deal read by
/// `deal_of`), against a stand-in for Boost's GraphQL API answering as Boost v2.5's schema does
/// (`deals(query, limit) { deals { … } }`, Uint64 values as `{"__typename": "BigInt", "n": "…"}`):
/// no deal yet, another deal of the piece, a libp2p client's deal of the same terms, not yet
/// published, or a GraphQL error → 75; published → its deal ID; failed for good → 1; a slot → 1.
#[tokio::test(flavor = "multi_thread")]
async fn the_boost_example_reads_the_deal_boost_published() {
    use std::sync::{Arc, Mutex};

    use axum::{Json, Router, extract::State, routing::post};
    use estuary_sp::sealer::{CommandSealer, Deal, deal_of};
    use serde_json::{Value, json};

    /// What the stand-in answers, and the requests it was sent.
    type Boost = Arc<Mutex<(Value, Vec<Value>)>>;
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs/sealers/boost-contract-deal.sh");
    let boost: Boost = Arc::new(Mutex::new((json!({}), Vec::new())));
    let app = Router::new()
        .route(
            "/graphql/query",
            post(|State(s): State<Boost>, Json(body): Json<Value>| async move {
                let mut s = s.lock().unwrap();
                s.1.push(body);
                Json(s.0.clone())
            }),
        )
        .with_state(Arc::clone(&boost));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gql = format!("http://{}/graphql/query", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let piece = "baga6ea4seaqexample";
    let template =
        format!("sh {} {{kind}} {{piece_cid}} {{start_epoch}} {{end_epoch}}", script.display());
    let run = |kind: &'static str| {
        let values = vec![
            ("kind", kind.to_owned()),
            ("piece_cid", piece.to_owned()),
            ("start_epoch", "1000".to_owned()),
            ("end_epoch", "2000".to_owned()),
        ];
        let command = CommandSealer::render(&template, &values);
        let gql = gql.clone();
        async move {
            let out = tokio::process::Command::new("sh")
                .args(["-c", &command])
                .env("BOOST_GQL", &gql)
                .output()
                .await
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            (out.status.code(), deal_of(&stdout), String::from_utf8_lossy(&out.stderr).into_owned())
        }
    };
    let big = |n: u64| json!({ "__typename": "BigInt", "n": n.to_string() });
    let deal = |id: &str, peer: &str, start: u64, chain_id: u64, checkpoint: &str, retry: &str| {
        json!({
            "ID": id, "ClientPeerID": peer, "StartEpoch": big(start), "EndEpoch": big(2000),
            "ChainDealID": big(chain_id), "Checkpoint": checkpoint,
            "Err": if retry == "fatal" { "no funds" } else { "" }, "Retry": retry,
        })
    };
    let answer =
        |deals: Value| boost.lock().unwrap().0 = json!({ "data": { "deals": { "deals": deals } } });

    answer(json!([]));
    assert_eq!(run("proposal").await.0, Some(75), "no deal yet");
    let asked = boost.lock().unwrap().1[0].clone();
    assert_eq!(asked["variables"]["q"], piece, "asked by piece CID: {asked}");
    assert!(asked["query"].as_str().unwrap().contains("deals(query: $q"), "{asked}");

    answer(json!([deal("u-other", "", 999, 7, "IndexedAndAnnounced", "auto")]));
    assert_eq!(run("proposal").await.0, Some(75), "another deal of the piece (other epochs)");
    answer(json!([deal("u-p2p", "12D3KooWclient", 1000, 9, "IndexedAndAnnounced", "auto")]));
    assert_eq!(run("proposal").await.0, Some(75), "a libp2p client's deal is not this proposal");
    answer(json!([deal("u-1", "", 1000, 0, "Transferred", "auto")]));
    assert_eq!(run("proposal").await.0, Some(75), "not published yet");
    answer(json!([
        deal("u-p2p", "12D3KooWclient", 1000, 9, "IndexedAndAnnounced", "auto"),
        deal("u-0", "", 1000, 0, "Accepted", "auto"),
        deal("u-1", "", 1000, 42, "PublishConfirmed", "auto"),
    ]));
    let (code, id, _) = run("proposal").await;
    assert_eq!(
        (code, id),
        (Some(0), Some(Deal::Market(42))),
        "the published deal's ID, as the agent reads it"
    );
    answer(json!([deal("u-2", "", 1000, 0, "Accepted", "fatal")]));
    assert_eq!(run("proposal").await.0, Some(1), "failed for good");
    assert_eq!(run("slot").await.0, Some(1), "Boost takes proposals only");

    boost.lock().unwrap().0 = json!({ "data": null, "errors": [{ "message": "db locked" }] });
    let (code, id, err) = run("proposal").await;
    assert_eq!((code, id), (Some(75), None), "{err}");
    assert!(err.contains("db locked"), "Boost's words: {err}");
}
