//! Two libp2p nodes over TCP on loopback: one serves blocks, the other fetches them.
#![allow(missing_docs, clippy::unwrap_used)]

use std::{collections::HashMap, sync::Arc, time::Duration};

use cid::{Cid, Version};
use estuary_dag::{
    block::sha256_cid,
    walk::{WalkError, WalkLimits},
};
use estuary_p2p::{Bitswap, BitswapError, BlockFuture, BlockSource};
use futures::StreamExt;
use libp2p::{Multiaddr, PeerId, Swarm, noise, swarm::SwarmEvent, tcp, yamux};

#[derive(Clone, Default)]
struct Blocks(Arc<HashMap<Cid, Vec<u8>>>);

impl BlockSource for Blocks {
    fn block(&self, cid: &Cid) -> BlockFuture<'_> {
        let found = self.0.get(cid).cloned();
        Box::pin(async move { found })
    }
}

fn swarm() -> Swarm<libp2p_stream::Behaviour> {
    libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(tcp::Config::default(), noise::Config::new, yamux::Config::default)
        .unwrap()
        .with_behaviour(|_| libp2p_stream::Behaviour::new())
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build()
}

/// A node serving `blocks`, its address, and its Bitswap.
async fn node(blocks: Blocks) -> (PeerId, Multiaddr, Bitswap) {
    let mut swarm = swarm();
    swarm.listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap()).unwrap();
    let addr = loop {
        if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
            break address;
        }
    };
    let bitswap = Bitswap::new(swarm.behaviour().new_control());
    tokio::spawn(bitswap.serve(blocks).unwrap());
    let peer = *swarm.local_peer_id();
    tokio::spawn(async move {
        loop {
            swarm.select_next_some().await;
        }
    });
    (peer, addr, bitswap)
}

/// A node holding nothing, connected to `addr`.
async fn connected_client(addr: Multiaddr) -> Bitswap {
    let mut client_swarm = swarm();
    client_swarm.dial(addr).unwrap();
    let client = Bitswap::new(client_swarm.behaviour().new_control());
    tokio::spawn(client.serve(Blocks::default()).unwrap());
    loop {
        if let SwarmEvent::ConnectionEstablished { .. } = client_swarm.select_next_some().await {
            break;
        }
    }
    tokio::spawn(async move {
        loop {
            client_swarm.select_next_some().await;
        }
    });
    client
}

#[tokio::test]
async fn fetches_verified_blocks_and_hears_dont_have() {
    let data: Vec<Vec<u8>> = (0..20u8).map(|i| vec![i; 1000 + usize::from(i)]).collect();
    let held: HashMap<Cid, Vec<u8>> =
        data.iter().map(|d| (sha256_cid(Version::V1, 0x55, d), d.clone())).collect();
    let (server, server_addr, _) = node(Blocks(Arc::new(held.clone()))).await;

    let client = connected_client(server_addr).await;

    // Many at once, as a DAG walk asks.
    let gets = held.keys().map(|cid| {
        let client = client.clone();
        let cid = *cid;
        async move { (cid, client.get(server, cid).await) }
    });
    for (cid, got) in futures::future::join_all(gets).await {
        assert_eq!(&got.unwrap(), &held[&cid]);
    }
    assert_eq!(client.stats().blocks_received, 20);

    let missing = sha256_cid(Version::V1, 0x55, b"nobody has this");
    let got = tokio::time::timeout(Duration::from_secs(10), client.get(server, missing)).await;
    assert_eq!(got.unwrap(), Err(BitswapError::DontHave { peer: server, cid: missing }));

    // A peer that is not connected and has no known address cannot be asked.
    let stranger = PeerId::random();
    let got = tokio::time::timeout(Duration::from_secs(10), client.get(stranger, missing)).await;
    assert!(matches!(got.unwrap(), Err(BitswapError::Unreachable { .. })));
}

/// Serves the same wrong bytes for every CID.
#[derive(Clone)]
struct Liar;

impl BlockSource for Liar {
    fn block(&self, _: &Cid) -> BlockFuture<'_> {
        Box::pin(async { Some(b"not what you asked for".to_vec()) })
    }
}

#[tokio::test]
async fn forged_blocks_are_never_accepted() {
    let mut liar = swarm();
    liar.listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap()).unwrap();
    let addr = loop {
        if let SwarmEvent::NewListenAddr { address, .. } = liar.select_next_some().await {
            break address;
        }
    };
    let liar_peer = *liar.local_peer_id();
    tokio::spawn(Bitswap::new(liar.behaviour().new_control()).serve(Liar).unwrap());
    tokio::spawn(async move {
        loop {
            liar.select_next_some().await;
        }
    });

    let client = connected_client(addr).await;
    let wanted = sha256_cid(Version::V1, 0x55, b"the real block");
    let got = tokio::time::timeout(Duration::from_secs(2), client.get(liar_peer, wanted)).await;
    assert!(got.is_err(), "a forged block was accepted: {got:?}");
    assert_eq!(client.stats().blocks_received, 0);
}

/// A folder whose files repeat leaves and whole files, so the DAG has shared blocks.
fn shared_dag() -> (Cid, HashMap<Cid, Vec<u8>>, Vec<u8>) {
    use estuary_dag::{DirectoryBuilder, ImportOptions, file::import_bytes};
    let opts = ImportOptions { chunk_size: 1024, max_links: 3, ..ImportOptions::default() };
    // 1024-byte leaves that repeat, and tails that do not.
    let mut big: Vec<u8> = (0..20 * 1024).map(|i| ((i / 1024) % 3) as u8).collect();
    big.extend_from_slice(b"the end");
    let mut blocks = HashMap::new();
    let mut dir = DirectoryBuilder::new(opts);
    // `0/c.txt` is `c.txt`: a block met under the first link before its own place further on.
    let files =
        [("0/c.txt", &b"tiny"[..]), ("a.bin", &big[..]), ("b.bin", &big[..]), ("c.txt", b"tiny")];
    for (name, data) in files {
        let (node, file_blocks) = import_bytes(data, opts).unwrap();
        blocks.extend(file_blocks.into_iter().map(|b| (b.cid, b.data)));
        dir.add_file(name, node).unwrap();
    }
    let root = dir.finish(&mut |b| drop(blocks.insert(b.cid, b.data))).unwrap();
    (root.cid, blocks, big)
}

/// Limits of a walk of at most `n` blocks.
fn blocks(n: u64) -> WalkLimits {
    WalkLimits { max_blocks: n, ..WalkLimits::default() }
}

#[tokio::test]
async fn a_dag_comes_depth_first_like_a_gateway_car() {
    let (root, held, big) = shared_dag();
    let (server, addr, _) = node(Blocks(Arc::new(held.clone()))).await;
    let client = connected_client(addr).await;

    // What a trustless gateway's CAR holds, in its order: each block once, depth first.
    let mut expected = Vec::new();
    estuary_dag::walk::dfs(root, WalkLimits::default(), &held, |cid, _| expected.push(*cid))
        .unwrap();

    for window in [1, 4, 64] {
        let mut fetch =
            estuary_p2p::DfsFetch::new(client.clone(), server, root, window, blocks(10_000));
        let mut got = Vec::new();
        while let Some(block) = fetch.next().await {
            let (cid, data, from_peer) = block.unwrap();
            assert_eq!(data, held[&cid]);
            assert!(from_peer);
            got.push(cid);
        }
        assert_eq!(got, expected, "window {window}");
        assert_eq!(fetch.blocks(), expected.len() as u64);
    }

    // A file's blocks in that order rebuild the file through the streaming reader.
    let a = estuary_dag::walk::links(&root, &held[&root]).unwrap()[1]; // a.bin
    let mut fetch = estuary_p2p::DfsFetch::new(client.clone(), server, a, 8, blocks(10_000));
    let mut reader = estuary_dag::dfs_file::DfsFileReader::new(a, 1 << 20);
    let mut file = Vec::new();
    while let Some(block) = fetch.next().await {
        let (cid, data, _) = block.unwrap();
        reader.push(&cid, &data, &mut file).unwrap();
    }
    reader.finish(&mut file).unwrap();
    assert_eq!(file, big);
}

#[tokio::test]
async fn a_dag_with_a_missing_block_or_too_many_blocks_fails() {
    let (root, mut held, _) = shared_dag();
    let total = held.len() as u64;
    let leaf = held.keys().copied().find(|c| c.codec() == 0x55).unwrap();
    let full = held.clone();
    held.remove(&leaf);
    let (server, addr, _) = node(Blocks(Arc::new(held))).await;
    let client = connected_client(addr).await;

    let mut fetch = estuary_p2p::DfsFetch::new(client.clone(), server, root, 4, blocks(10_000));
    let error = loop {
        match fetch.next().await.expect("the fetch ends with an error") {
            Ok((cid, data, _)) => assert_eq!(data, full[&cid]),
            Err(e) => break e,
        }
    };
    assert!(
        matches!(&error, estuary_p2p::DfsError::Bitswap(e) if **e == BitswapError::DontHave { peer: server, cid: leaf }),
        "{error}"
    );
    assert!(fetch.next().await.is_none(), "a failed fetch is over");

    let (server, addr, _) = node(Blocks(Arc::new(full))).await;
    let client = connected_client(addr).await;
    let mut fetch = estuary_p2p::DfsFetch::new(client, server, root, 4, blocks(total - 1));
    let error = loop {
        if let Err(e) = fetch.next().await.expect("the fetch ends with an error") {
            break e;
        }
    };
    assert!(
        matches!(&error, estuary_p2p::DfsError::Walk(e) if matches!(**e, WalkError::TooManyBlocks(_))),
        "{error}"
    );
}

/// The Bitswap driver walks with the same walker as every other traversal: a HAMT bomb (256⁸
/// paths) and an entity-bytes bomb (a file of 64⁸ KiB) are each asked for one block at a time,
/// each block once.
#[tokio::test]
async fn hostile_dags_cost_their_distinct_blocks_over_bitswap() {
    for (root, dag) in
        [estuary_dag::hostile::hamt_bomb(9), estuary_dag::hostile::entity_bytes_bomb(8, 64)]
    {
        let held: HashMap<Cid, Vec<u8>> = dag.iter().map(|b| (b.cid, b.data.clone())).collect();
        let (server, addr, serving) = node(Blocks(Arc::new(held.clone()))).await;
        let client = connected_client(addr).await;
        let limits = WalkLimits { max_visits: 1 << 16, max_queued: 1 << 12, ..blocks(100) };
        let mut fetch = estuary_p2p::DfsFetch::new(client.clone(), server, root, 16, limits);
        let mut got = 0;
        while let Some(block) = fetch.next().await {
            block.unwrap();
            got += 1;
        }
        assert_eq!(got, held.len());
        assert_eq!(serving.stats().blocks_sent, held.len() as u64, "each block asked for once");
    }
}
