//! Bitswap over libp2p for Estuary: the oracle fetches DAGs from the peers named in a request's
//! origins (a Helia or kubo node, or the uploader's browser node), and both serve the blocks they
//! hold.
//!
//! The protocol runs on [`libp2p_stream`]'s generic streams, so it needs no connection handler of
//! its own and no async runtime: the caller builds the swarm for its platform (TCP and WebSocket
//! on tokio in the oracle, WebSocket in the browser) and spawns [`Bitswap::serve`] on its
//! executor. Messages are [`estuary_dag::bitswap`]'s: a block is accepted only under the CID its
//! bytes hash to, so a peer can withhold blocks but never forge them.
//!
//! Why not a Bitswap crate: `beetswap` (the maintained one) needs `multihash-codetable` 0.1,
//! whose `core2` dependency is yanked from crates.io in every version, so it no longer resolves.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
};

use cid::Cid;
use estuary_dag::bitswap::{MAX_MESSAGE, Message, Presence, WantEntry, WantType, frame_length};
use futures::{
    AsyncReadExt, AsyncWriteExt, StreamExt,
    channel::oneshot,
    stream::{FuturesUnordered, SelectAll},
};
use libp2p::{PeerId, Stream, StreamProtocol};
use libp2p_stream::{Control, IncomingStreams};
use tracing::debug;

/// The protocol versions spoken, newest first; requests go out on the first.
pub const PROTOCOLS: [StreamProtocol; 3] = [
    StreamProtocol::new("/ipfs/bitswap/1.2.0"),
    StreamProtocol::new("/ipfs/bitswap/1.1.0"),
    StreamProtocol::new("/ipfs/bitswap/1.0.0"),
];

/// Largest block served or accepted: 2 MiB, as everywhere in IPFS.
pub const MAX_BLOCK: usize = 2 << 20;

/// Why a block could not be had from a peer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BitswapError {
    /// The peer answered that it does not have the block.
    #[error("peer {peer} does not have block {cid}")]
    DontHave {
        /// The peer.
        peer: PeerId,
        /// The block.
        cid: Cid,
    },
    /// No stream could be opened to the peer, or writing to it failed.
    #[error("cannot reach peer {peer}: {reason}")]
    Unreachable {
        /// The peer.
        peer: PeerId,
        /// What failed.
        reason: String,
    },
    /// The Bitswap service was dropped.
    #[error("the bitswap service stopped")]
    Stopped,
}

/// A future of a block lookup: `Send` natively (spawned on tokio), not in the browser (where
/// blocks come from JavaScript promises).
#[cfg(not(target_arch = "wasm32"))]
pub type BlockFuture<'a> = futures::future::BoxFuture<'a, Option<Vec<u8>>>;
/// A future of a block lookup: `Send` natively (spawned on tokio), not in the browser (where
/// blocks come from JavaScript promises).
#[cfg(target_arch = "wasm32")]
pub type BlockFuture<'a> = futures::future::LocalBoxFuture<'a, Option<Vec<u8>>>;

/// Where served blocks come from.
pub trait BlockSource: 'static {
    /// The block `cid`, if held. Errors count as not held.
    fn block(&self, cid: &Cid) -> BlockFuture<'_>;
}

type Reply = Result<Vec<u8>, BitswapError>;

struct Waiter {
    id: u64,
    peer: PeerId,
    tx: oneshot::Sender<Reply>,
}

#[derive(Default)]
struct State {
    next_id: u64,
    wants: HashMap<Cid, Vec<Waiter>>,
    outbound: HashMap<PeerId, Arc<futures::lock::Mutex<Option<Stream>>>>,
}

/// Counters of one [`Bitswap`] service.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Blocks received that someone was waiting for.
    pub blocks_received: u64,
    /// Blocks sent to peers.
    pub blocks_sent: u64,
    /// Messages that failed to decode (the stream was dropped).
    pub bad_messages: u64,
}

/// One node's Bitswap: a client ([`get`](Self::get)) and a server ([`serve`](Self::serve)).
/// Cheap to clone; clones share wants and streams.
#[derive(Clone)]
pub struct Bitswap {
    control: Control,
    state: Arc<Mutex<State>>,
    stats: Arc<Mutex<Stats>>,
}

impl std::fmt::Debug for Bitswap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bitswap").field("stats", &self.stats()).finish_non_exhaustive()
    }
}

/// Removes a waiter when its `get` ends or is dropped (cancelled, timed out).
struct WantGuard {
    state: Arc<Mutex<State>>,
    cid: Cid,
    id: u64,
}

impl Drop for WantGuard {
    fn drop(&mut self) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(waiters) = state.wants.get_mut(&self.cid) {
            waiters.retain(|w| w.id != self.id);
            if waiters.is_empty() {
                state.wants.remove(&self.cid);
            }
        }
    }
}

impl Bitswap {
    /// A service over the swarm's stream behaviour.
    pub fn new(control: Control) -> Self {
        Self { control, state: Arc::default(), stats: Arc::default() }
    }

    /// Counters so far.
    pub fn stats(&self) -> Stats {
        *self.stats.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Asks `peer` for the block `cid` and waits for it (or for the peer's "don't have"). The
    /// bytes returned hash to `cid`. The caller bounds the wait (a peer may stay silent);
    /// dropping the future withdraws the want.
    pub async fn get(&self, peer: PeerId, cid: Cid) -> Result<Vec<u8>, BitswapError> {
        let (tx, rx) = oneshot::channel();
        let id = {
            let mut state = self.lock();
            state.next_id += 1;
            let id = state.next_id;
            state.wants.entry(cid).or_default().push(Waiter { id, peer, tx });
            id
        };
        let _guard = WantGuard { state: Arc::clone(&self.state), cid, id };
        let want = Message { wants: vec![WantEntry::block(cid)], ..Message::default() };
        self.send(peer, &want).await?;
        rx.await.unwrap_or(Err(BitswapError::Stopped))
    }

    /// Tells the service `peer` has no connection left: its pending wants fail at once (rather
    /// than waiting out the caller's timeout) and its stream is forgotten.
    pub fn disconnected(&self, peer: PeerId) {
        let mut state = self.lock();
        state.outbound.remove(&peer);
        for (cid, waiters) in &mut state.wants {
            for w in waiters.extract_if(.., |w| w.peer == peer) {
                let _ = w.tx.send(Err(BitswapError::Unreachable {
                    peer,
                    reason: format!("disconnected while block {cid} was wanted"),
                }));
            }
        }
        state.wants.retain(|_, waiters| !waiters.is_empty());
    }

    /// Sends `msg` to `peer` on the stream kept for it (opened, or reopened once if it broke).
    async fn send(&self, peer: PeerId, msg: &Message) -> Result<(), BitswapError> {
        let frame = msg.encode_framed();
        let slot = Arc::clone(self.lock().outbound.entry(peer).or_default());
        let mut stream = slot.lock().await;
        let unreachable = |reason: String| BitswapError::Unreachable { peer, reason };
        for attempt in 0..2 {
            let open = match stream.as_mut() {
                Some(open) => open,
                None => stream.insert(
                    self.control
                        .clone()
                        .open_stream(peer, PROTOCOLS[0].clone())
                        .await
                        .map_err(|e| unreachable(e.to_string()))?,
                ),
            };
            match async {
                open.write_all(&frame).await?;
                open.flush().await
            }
            .await
            {
                Ok(()) => return Ok(()),
                Err(e) => {
                    *stream = None;
                    if attempt == 1 {
                        return Err(unreachable(e.to_string()));
                    }
                }
            }
        }
        Ok(())
    }

    /// Accepts the peers' Bitswap streams and answers them from `source`, delivering the blocks
    /// and presences they carry to [`get`](Self::get). Runs until the swarm is dropped; fails at
    /// once if something else already accepts these protocols.
    pub fn serve<S: BlockSource>(
        &self,
        source: S,
    ) -> Result<impl Future<Output = ()> + use<S>, libp2p_stream::AlreadyRegistered> {
        let mut control = self.control.clone();
        let mut incoming: SelectAll<IncomingStreams> = SelectAll::new();
        for protocol in PROTOCOLS {
            incoming.push(control.accept(protocol)?);
        }
        let this = self.clone();
        Ok(async move {
            let source = source;
            let mut handlers = FuturesUnordered::new();
            loop {
                futures::select! {
                    next = incoming.next() => match next {
                        Some((peer, stream)) => handlers.push(this.handle(peer, stream, &source)),
                        None => break,
                    },
                    () = handlers.select_next_some() => {}
                }
            }
        })
    }

    /// Reads messages from one inbound stream until it ends or misbehaves.
    async fn handle<S: BlockSource>(&self, peer: PeerId, mut stream: Stream, source: &S) {
        let mut buf: Vec<u8> = Vec::new();
        let mut chunk = vec![0u8; 64 << 10];
        loop {
            // Every whole frame in the buffer first.
            loop {
                let (len, prefix) = match frame_length(&buf) {
                    Ok(Some(frame)) => frame,
                    Ok(None) => break,
                    Err(e) => return self.bad_message(peer, &e),
                };
                if buf.len() < prefix + len {
                    break;
                }
                let decoded = Message::decode(&buf[prefix..prefix + len]);
                buf.drain(..prefix + len);
                match decoded {
                    Ok(msg) => self.on_message(peer, msg, source).await,
                    Err(e) => return self.bad_message(peer, &e),
                }
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    fn bad_message(&self, peer: PeerId, e: &dyn std::fmt::Display) {
        debug!(%peer, error = %e, "bad bitswap message; stream dropped");
        self.stats.lock().unwrap_or_else(PoisonError::into_inner).bad_messages += 1;
    }

    async fn on_message<S: BlockSource>(&self, peer: PeerId, msg: Message, source: &S) {
        // As a client: blocks and presences for what we want.
        {
            let mut state = self.lock();
            let mut received = 0;
            for (cid, data) in msg.blocks() {
                if data.len() > MAX_BLOCK {
                    continue;
                }
                if let Some(waiters) = state.wants.remove(&cid) {
                    received += 1;
                    for w in waiters {
                        let _ = w.tx.send(Ok(data.to_vec()));
                    }
                }
            }
            for (cid, presence) in &msg.presences {
                if *presence != Presence::DontHave {
                    continue;
                }
                if let Some(waiters) = state.wants.get_mut(cid) {
                    let (from_peer, others): (Vec<Waiter>, Vec<Waiter>) =
                        waiters.drain(..).partition(|w| w.peer == peer);
                    *waiters = others;
                    for w in from_peer {
                        let _ = w.tx.send(Err(BitswapError::DontHave { peer, cid: *cid }));
                    }
                }
            }
            drop(state);
            self.stats.lock().unwrap_or_else(PoisonError::into_inner).blocks_received += received;
        }
        // As a server: answer the wants, in messages under the size limit.
        let mut reply = Message::default();
        let mut size = 0usize;
        let mut sent = 0u64;
        for want in msg.wants.iter().filter(|w| !w.cancel) {
            match source.block(&want.cid).await {
                Some(data) if data.len() <= MAX_BLOCK => {
                    if want.want_type == WantType::Have {
                        reply.presences.push((want.cid, Presence::Have));
                        size += 64;
                    } else {
                        if size + data.len() + 128 > MAX_MESSAGE {
                            if self.send(peer, &std::mem::take(&mut reply)).await.is_err() {
                                return;
                            }
                            size = 0;
                        }
                        size += data.len() + 64;
                        reply.push_block(&want.cid, data);
                        sent += 1;
                    }
                }
                _ if want.send_dont_have => {
                    reply.presences.push((want.cid, Presence::DontHave));
                    size += 64;
                }
                _ => {}
            }
        }
        if !reply.is_empty() && self.send(peer, &reply).await.is_ok() {
            self.stats.lock().unwrap_or_else(PoisonError::into_inner).blocks_sent += sent;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

pub use behaviour::{NodeBehaviour, NodeBehaviourEvent};

pub mod dfs;
#[cfg(not(target_arch = "wasm32"))]
pub use dfs::LocalLookup;
pub use dfs::{DfsError, DfsFetch};

mod behaviour {
    // The derive adds an event enum whose variants (one per field) it leaves undocumented.
    #![allow(missing_docs)]

    /// What an Estuary libp2p node runs: generic streams (for [`Bitswap`](crate::Bitswap)), identify (so peers such
    /// as Helia learn the protocols it speaks) and ping. The oracle and the browser node build their
    /// swarms around it, each with the transports of its platform.
    #[derive(libp2p::swarm::NetworkBehaviour)]
    pub struct NodeBehaviour {
        /// Generic streams; [`Bitswap::new`](crate::Bitswap::new) takes its `new_control()`.
        pub stream: libp2p_stream::Behaviour,
        /// Identify, announcing `agent`.
        pub identify: libp2p::identify::Behaviour,
        /// Ping.
        pub ping: libp2p::ping::Behaviour,
    }

    impl NodeBehaviour {
        /// The behaviour of a node with key `key`, announcing itself as `agent`
        /// (e.g. `estuary/0.1.0`).
        pub fn new(key: &libp2p::identity::Keypair, agent: &str) -> Self {
            Self {
                stream: libp2p_stream::Behaviour::new(),
                identify: libp2p::identify::Behaviour::new(
                    libp2p::identify::Config::new("/ipfs/id/1.0.0".into(), key.public())
                        .with_agent_version(agent.to_owned()),
                ),
                ping: libp2p::ping::Behaviour::default(),
            }
        }
    }
}

/// The peer a multiaddr ends with (`…/p2p/<peer id>`), if any.
pub fn peer_of(addr: &libp2p::Multiaddr) -> Option<PeerId> {
    addr.iter().last().and_then(|p| match p {
        libp2p::multiaddr::Protocol::P2p(peer) => Some(peer),
        _ => None,
    })
}
