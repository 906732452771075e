//! Two libp2p nodes over TCP on loopback: one serves blocks, the other fetches them.
#![allow(missing_docs, clippy::unwrap_used)]

use std::{collections::HashMap, sync::Arc, time::Duration};

use cid::{Cid, Version};
use estuary_dag::bitswap::{Message, WantEntry, frame_length};
use estuary_dag::{
    block::sha256_cid,
    walk::{WalkError, WalkLimits},
};
use estuary_p2p::{Bitswap, BitswapError, BlockFuture, BlockSource, Limits, PROTOCOLS};
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
    node_with(blocks, Limits::default()).await
}

/// A node serving `blocks` within `limits`, its address, and its Bitswap.
async fn node_with(blocks: Blocks, limits: Limits) -> (PeerId, Multiaddr, Bitswap) {
    let mut swarm = swarm();
    swarm.listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap()).unwrap();
    let addr = loop {
        if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
            break address;
        }
    };
    let bitswap = Bitswap::with_limits(swarm.behaviour().new_control(), limits);
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

// --- What one peer may cost a node: streams, wants, bytes served, unsolicited bytes, connections.

/// A peer that speaks raw Bitswap frames: its control (to open streams to the server) and the
/// streams the server answers on.
async fn raw_peer(addr: Multiaddr) -> (libp2p_stream::Control, libp2p_stream::IncomingStreams) {
    let mut swarm = swarm();
    swarm.dial(addr).unwrap();
    let mut control = swarm.behaviour().new_control();
    let replies = control.accept(PROTOCOLS[0].clone()).unwrap();
    loop {
        if let SwarmEvent::ConnectionEstablished { .. } = swarm.select_next_some().await {
            break;
        }
    }
    tokio::spawn(async move {
        loop {
            swarm.select_next_some().await;
        }
    });
    (control, replies)
}

/// Writes `msg`; a stream the server closed fails.
async fn send_frame(stream: &mut libp2p::Stream, msg: &Message) -> std::io::Result<()> {
    use futures::AsyncWriteExt;
    let frame = msg.encode_framed();
    assert!(frame.len() <= estuary_dag::bitswap::MAX_MESSAGE + 8, "frame of {}", frame.len());
    stream.write_all(&frame).await?;
    stream.flush().await
}

/// Reads messages from `stream` until `enough` says so.
async fn read_until(stream: &mut libp2p::Stream, mut enough: impl FnMut(&Message) -> bool) {
    use futures::AsyncReadExt;
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 << 10];
    loop {
        while let Some((len, prefix)) = frame_length(&buf).unwrap() {
            if buf.len() < prefix + len {
                break;
            }
            let msg = Message::decode(&buf[prefix..prefix + len]).unwrap();
            buf.drain(..prefix + len);
            if enough(&msg) {
                return;
            }
        }
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "the server closed its answers");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Waits (up to 30 s) until the node's counters satisfy `ok`.
async fn stats_reach(node: &Bitswap, ok: impl Fn(&estuary_p2p::Stats) -> bool) {
    for _ in 0..300 {
        if ok(&node.stats()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("counters never got there: {:?}", node.stats());
}

fn raw_blocks(n: usize, size: usize, seed: u8) -> Vec<(Cid, Vec<u8>)> {
    (0..n)
        .map(|i| {
            let mut data = vec![seed; size];
            data[..8].copy_from_slice(&(i as u64).to_le_bytes());
            (sha256_cid(Version::V1, 0x55, &data), data)
        })
        .collect()
}

/// A want list of 50,000 entries in one 4 MiB message: the first 1,024 wants are answered (as
/// boxo's server keeps 1,024 per peer), the rest ignored and counted, and the node still serves
/// an honest peer.
#[tokio::test]
async fn a_huge_want_list_is_answered_up_to_the_limit() {
    let held = raw_blocks(2000, 100, 1);
    let (server, addr, serving) = node(Blocks(Arc::new(held.iter().cloned().collect()))).await;
    let (mut control, mut replies) = raw_peer(addr.clone()).await;
    let mut wants: Vec<WantEntry> = held
        .iter()
        .map(|(cid, _)| WantEntry { send_dont_have: false, ..WantEntry::block(*cid) })
        .collect();
    wants.extend((0..48_000u32).map(|i| WantEntry {
        send_dont_have: false,
        ..WantEntry::block(sha256_cid(Version::V1, 0x55, &i.to_le_bytes()))
    }));
    let mut out = control.open_stream(server, PROTOCOLS[0].clone()).await.unwrap();
    send_frame(&mut out, &Message { wants, ..Message::default() }).await.unwrap();

    let (_, mut answers) = replies.next().await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(
        Duration::from_secs(30),
        read_until(&mut answers, |msg| {
            got.extend(msg.blocks().map(|(cid, _)| cid));
            got.len() >= 1024
        }),
    )
    .await
    .unwrap();
    stats_reach(&serving, |s| s.blocks_sent == 1024).await;
    let stats = serving.stats();
    assert_eq!(stats.wants_ignored, 50_000 - 1024);
    let first: Vec<Cid> = held[..1024].iter().map(|(cid, _)| *cid).collect();
    assert_eq!(got, first, "the first 1,024 wants, in order");

    let honest = connected_client(addr).await;
    let (cid, data) = &held[1500];
    let block = tokio::time::timeout(Duration::from_secs(10), honest.get(server, *cid)).await;
    assert_eq!(&block.unwrap().unwrap(), data);
}

/// A peer may keep 8 Bitswap streams open at once (here); the 9th and later are closed at once
/// and counted. Another peer is served meanwhile, and once the streams close the peer is served
/// again. Streams that stay silent are closed after the idle limit.
#[tokio::test]
async fn streams_past_a_peers_limit_are_closed() {
    let held = raw_blocks(4, 100, 2);
    let limits =
        Limits { streams_per_peer: 8, stream_idle: Duration::from_secs(2), ..Limits::default() };
    let (server, addr, serving) =
        node_with(Blocks(Arc::new(held.iter().cloned().collect())), limits).await;
    let (mut control, mut replies) = raw_peer(addr.clone()).await;
    let nothing = Message {
        wants: vec![WantEntry {
            send_dont_have: false,
            ..WantEntry::block(sha256_cid(Version::V1, 0x55, b"nobody"))
        }],
        ..Message::default()
    };
    let mut open = Vec::new();
    for _ in 0..12 {
        let mut stream = control.open_stream(server, PROTOCOLS[0].clone()).await.unwrap();
        // The server may close a stream over the limit before the write.
        let _ = send_frame(&mut stream, &nothing).await;
        open.push(stream);
    }
    stats_reach(&serving, |s| s.streams_refused == 4).await;

    let honest = connected_client(addr).await;
    let got = tokio::time::timeout(Duration::from_secs(10), honest.get(server, held[0].0)).await;
    assert_eq!(got.unwrap().unwrap(), held[0].1);

    // Closed streams give their places back (as the server notices them end).
    drop(open);
    let before = serving.stats().blocks_sent;
    let ask = Message { wants: vec![WantEntry::block(held[1].0)], ..Message::default() };
    let mut asked = Vec::new();
    for _ in 0..50 {
        let mut stream = control.open_stream(server, PROTOCOLS[0].clone()).await.unwrap();
        let _ = send_frame(&mut stream, &ask).await;
        asked.push(stream);
        tokio::time::sleep(Duration::from_millis(200)).await;
        if serving.stats().blocks_sent > before {
            break;
        }
    }
    let (_, mut answers) =
        tokio::time::timeout(Duration::from_secs(10), replies.next()).await.unwrap().unwrap();
    let mut block = None;
    read_until(&mut answers, |msg| {
        block = msg.blocks().next().map(|(_, data)| data.to_vec());
        block.is_some()
    })
    .await;
    assert_eq!(block.unwrap(), held[1].1);

    // The streams that asked, then stayed silent, are closed after the idle limit.
    let asked = asked.len() as u64;
    stats_reach(&serving, |s| s.streams_idle >= asked.min(8)).await;
}

/// A peer that has been served its byte budget has its next blocks held back until the budget
/// allows them, or answered "don't have" when that would take too long; another peer has its own
/// budget.
#[tokio::test]
async fn a_peer_is_served_no_faster_than_its_byte_budget() {
    let held = raw_blocks(3, 1 << 20, 3);
    let store = Blocks(Arc::new(held.iter().cloned().collect()));
    for (rate, delayed, throttled) in [(f64::from(1u32 << 20), 1, 0), (1.0, 0, 1)] {
        let limits = Limits {
            peer_bytes_per_second: rate,
            peer_burst: f64::from(2u32 << 20),
            ..Limits::default()
        };
        let (server, addr, serving) = node_with(store.clone(), limits).await;
        let greedy = connected_client(addr.clone()).await;
        for (cid, data) in &held[..2] {
            let got = tokio::time::timeout(Duration::from_secs(10), greedy.get(server, *cid)).await;
            assert_eq!(&got.unwrap().unwrap(), data);
        }
        // 1 MiB over a 2 MiB budget: a second's wait at 1 MiB/s, twelve days at 1 B/s.
        let third = held[2].0;
        let got = tokio::time::timeout(Duration::from_secs(20), greedy.get(server, third)).await;
        if throttled == 0 {
            assert_eq!(got.unwrap().unwrap(), held[2].1);
        } else {
            assert_eq!(got.unwrap(), Err(BitswapError::DontHave { peer: server, cid: third }));
        }
        let stats = serving.stats();
        assert_eq!((stats.blocks_delayed, stats.blocks_throttled), (delayed, throttled));

        let other = connected_client(addr).await;
        let got = tokio::time::timeout(Duration::from_secs(10), other.get(server, third)).await;
        assert_eq!(got.unwrap().unwrap(), held[2].1);
    }
}

/// A peer that pushes blocks nobody asked for has its stream dropped past its allowance
/// (a burst of 10 MiB by default).
#[tokio::test]
async fn a_peer_flooding_unsolicited_blocks_is_cut_off() {
    let (server, addr, serving) = node(Blocks::default()).await;
    let (mut control, _replies) = raw_peer(addr).await;
    let mut stream = control.open_stream(server, PROTOCOLS[0].clone()).await.unwrap();
    let junk = raw_blocks(15, 1 << 20, 4);
    for chunk in junk.chunks(3) {
        let mut msg = Message::default();
        for (cid, data) in chunk {
            msg.push_block(cid, data.clone());
        }
        use futures::AsyncWriteExt;
        if stream.write_all(&msg.encode_framed()).await.is_err() {
            break;
        }
        let _ = stream.flush().await;
    }
    stats_reach(&serving, |s| s.streams_flooding == 1).await;
    let stats = serving.stats();
    assert!(stats.unsolicited_bytes >= 10 << 20, "{stats:?}");
    assert!(stats.unsolicited_bytes < 15 << 20, "{stats:?}");
}

/// Connections past the node's inbound limit are refused by the swarm itself.
#[tokio::test]
async fn inbound_connections_past_the_limit_are_refused() {
    let limits = estuary_p2p::default_connection_limits().with_max_established_incoming(Some(2));
    let mut server = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(tcp::Config::default(), noise::Config::new, yamux::Config::default)
        .unwrap()
        .with_behaviour(|key| {
            estuary_p2p::NodeBehaviour::with_connection_limits(key, "estuary/test", limits)
        })
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    server.listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap()).unwrap();
    let addr = loop {
        if let SwarmEvent::NewListenAddr { address, .. } = server.select_next_some().await {
            break address;
        }
    };
    let mut clients = Vec::new();
    for _ in 0..3 {
        let mut client = swarm();
        client.dial(addr.clone()).unwrap();
        clients.push(client);
    }
    let mut drive = futures::stream::select_all(clients.iter_mut().map(|c| c.map(|_| ())));
    let (mut established, mut refused) = (0, 0);
    tokio::time::timeout(Duration::from_secs(30), async {
        while established + refused < 3 {
            tokio::select! {
                event = server.select_next_some() => match event {
                    SwarmEvent::ConnectionEstablished { .. } => established += 1,
                    SwarmEvent::IncomingConnectionError { error, .. } => {
                        assert!(
                            matches!(error, libp2p::swarm::ListenError::Denied { .. }),
                            "{error}"
                        );
                        refused += 1;
                    }
                    _ => {}
                },
                _ = drive.next() => {}
            }
        }
    })
    .await
    .unwrap();
    assert_eq!((established, refused), (2, 1));
}
