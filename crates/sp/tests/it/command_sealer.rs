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
echo "$1 $2 $ESTUARY_PADDED_SIZE $ESTUARY_CAR_SIZE $ESTUARY_KIND $ESTUARY_MINER $ESTUARY_START_EPOCH $ESTUARY_END_EPOCH" >> "$SEAL_LOG"
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

    let port = devnet::free_port().unwrap();
    let mut args = agent_args(&chain, 0, dir.path(), port);
    let sealer = args.iter().position(|a| a == "--sealer").unwrap();
    args[sealer + 1] = "command".into();
    args.extend([
        "--seal-command".into(),
        format!("sh {} {{piece_path}} {{piece_cid}}", script.display()),
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
    agent.stop().await;
}
