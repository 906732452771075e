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
//! What one peer may cost a node is bounded by [`Limits`]: inbound streams at once (per peer
//! and in all), wants answered per message, block bytes served per second, and unsolicited block
//! bytes taken per second; connections are bounded by [`NodeBehaviour`]'s connection limits.
//!
//! Why not a Bitswap crate: `beetswap` (the maintained one) needs `multihash-codetable` 0.1,
//! whose `core2` dependency is yanked from crates.io in every version, so it no longer resolves.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
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
use web_time::Instant;

/// The protocol versions spoken, newest first; requests go out on the first.
pub const PROTOCOLS: [StreamProtocol; 3] = [
    StreamProtocol::new("/ipfs/bitswap/1.2.0"),
    StreamProtocol::new("/ipfs/bitswap/1.1.0"),
    StreamProtocol::new("/ipfs/bitswap/1.0.0"),
];

/// Largest block served or accepted: 2 MiB, as everywhere in IPFS.
pub const MAX_BLOCK: usize = 2 << 20;

/// What one peer may cost a node that serves blocks. Beyond each limit the peer gets less, never
/// an error of ours: a stream over the limit is closed, wants past the limit are ignored, a block
/// over the byte budget is held back until the budget allows it (up to [`MAX_DELAY`]; past that
/// it is answered "don't have", and the peer asks again later or elsewhere), and a stream that
/// floods unsolicited blocks is dropped.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Inbound Bitswap streams served at once for one peer (a peer needs one; js-libp2p and
    /// boxo open one per message burst and close it).
    pub streams_per_peer: usize,
    /// Inbound Bitswap streams served at once in all.
    pub streams: usize,
    /// An inbound stream that sends nothing for this long is closed (so idle streams cannot
    /// hold the places above).
    pub stream_idle: Duration,
    /// Wants answered per message; the rest are ignored. boxo's server keeps at most 1,024
    /// wants per peer (`MaxQueuedWantlistEntriesPerPeer`, bitswap/server).
    pub wants_per_message: usize,
    /// Block bytes served to one peer per second, on average.
    pub peer_bytes_per_second: f64,
    /// Block bytes one peer may be served at once before the rate applies (at least
    /// [`MAX_BLOCK`]).
    pub peer_burst: f64,
    /// Bytes of blocks nobody wanted that one peer may send per second, on average, with a
    /// burst of ten times that; past it, the stream is dropped.
    pub unsolicited_bytes_per_second: f64,
}

impl Default for Limits {
    /// 16 streams per peer and 512 in all, each closed after 60 s of silence; 1,024 wants per
    /// message; 32 MiB/s served per peer (burst 128 MiB); 1 MiB/s of unsolicited blocks (burst
    /// 10 MiB). A stream buffers at most one 4 MiB message, so inbound streams hold at most 2 GiB.
    fn default() -> Self {
        Self {
            streams_per_peer: 16,
            streams: 512,
            stream_idle: Duration::from_secs(60),
            wants_per_message: 1024,
            peer_bytes_per_second: (32u64 << 20) as f64,
            peer_burst: (128u64 << 20) as f64,
            unsolicited_bytes_per_second: (1u64 << 20) as f64,
        }
    }
}

/// A token bucket of bytes.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(burst: f64, now: Instant) -> Self {
        Self { tokens: burst, at: now }
    }

    fn refill(&mut self, rate: f64, burst: f64, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + rate * elapsed).min(burst);
        self.at = now;
    }

    /// Reserves `n` bytes: at once if the bucket holds them, otherwise in debt, to be sent after
    /// the returned wait, if that wait is at most `max_wait`. `None`: not within `max_wait`.
    fn reserve(
        &mut self,
        n: f64,
        rate: f64,
        burst: f64,
        now: Instant,
        max_wait: Duration,
    ) -> Option<Duration> {
        self.refill(rate, burst, now);
        let short = n - self.tokens;
        let wait =
            if short <= 0.0 { Duration::ZERO } else { Duration::from_secs_f64(short / rate) };
        (wait <= max_wait).then(|| {
            self.tokens -= n;
            wait
        })
    }

    /// Takes `n` bytes if the bucket holds them.
    fn take(&mut self, n: f64, rate: f64, burst: f64, now: Instant) -> bool {
        self.refill(rate, burst, now);
        if self.tokens >= n {
            self.tokens -= n;
            true
        } else {
            false
        }
    }
}

/// What one peer has used.
#[derive(Debug, Clone, Copy)]
struct PeerUse {
    streams: usize,
    served: Bucket,
    unsolicited: Bucket,
}

/// Peers remembered before the idle ones (no stream, buckets full) are forgotten.
const PEER_TABLE: usize = 4096;

/// The longest a block is held back for a peer over its byte budget; past it the peer is
/// answered "don't have".
pub const MAX_DELAY: Duration = Duration::from_secs(10);

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

    /// `Some` if the block `cid` is held (a want-have's answer): a source that can tell
    /// without reading the block (one whose blocks are costly to read) answers an empty `Vec`.
    /// By default, the block itself.
    fn has(&self, cid: &Cid) -> BlockFuture<'_> {
        self.block(cid)
    }
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
    /// Inbound streams being served.
    streams: usize,
    peers: HashMap<PeerId, PeerUse>,
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
    /// Inbound streams closed at once: the peer, or the node, had its streams' limit.
    pub streams_refused: u64,
    /// Streams dropped for sending more unsolicited blocks than the limit.
    pub streams_flooding: u64,
    /// Streams closed after sending nothing for the idle limit.
    pub streams_idle: u64,
    /// Wants ignored past the per-message limit.
    pub wants_ignored: u64,
    /// Blocks held back (then sent) because the peer had used its byte budget.
    pub blocks_delayed: u64,
    /// Blocks answered "don't have" (or not at all) because the peer's byte budget would not
    /// allow them within [`MAX_DELAY`].
    pub blocks_throttled: u64,
    /// Bytes of blocks received that nobody wanted.
    pub unsolicited_bytes: u64,
}

/// One node's Bitswap: a client ([`get`](Self::get)) and a server ([`serve`](Self::serve)).
/// Cheap to clone; clones share wants and streams.
#[derive(Clone)]
pub struct Bitswap {
    control: Control,
    limits: Limits,
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

/// An admitted inbound stream: counted until it ends.
struct StreamPermit {
    state: Arc<Mutex<State>>,
    peer: PeerId,
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.streams = state.streams.saturating_sub(1);
        if let Some(used) = state.peers.get_mut(&self.peer) {
            used.streams = used.streams.saturating_sub(1);
        }
    }
}

impl Bitswap {
    /// A service over the swarm's stream behaviour, with the default [`Limits`].
    pub fn new(control: Control) -> Self {
        Self::with_limits(control, Limits::default())
    }

    /// A service over the swarm's stream behaviour that bounds what each peer may cost it.
    pub fn with_limits(control: Control, mut limits: Limits) -> Self {
        limits.peer_burst = limits.peer_burst.max(MAX_BLOCK as f64);
        Self { control, limits, state: Arc::default(), stats: Arc::default() }
    }

    /// The limits this service applies.
    pub fn limits(&self) -> Limits {
        self.limits
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
                        Some((peer, stream)) => match this.admit(peer) {
                            Some(permit) => handlers.push(this.handle(peer, stream, &source, permit)),
                            None => drop(stream),
                        },
                        None => break,
                    },
                    () = handlers.select_next_some() => {}
                }
            }
        })
    }

    /// Counts a new inbound stream from `peer`, or refuses it when the peer or the node is at
    /// its limit.
    fn admit(&self, peer: PeerId) -> Option<StreamPermit> {
        let now = Instant::now();
        let limits = self.limits;
        let mut state = self.lock();
        if state.peers.len() >= PEER_TABLE {
            // Forget peers that cost nothing now: no stream, and budgets refilled.
            state.peers.retain(|_, used| {
                used.served.refill(limits.peer_bytes_per_second, limits.peer_burst, now);
                let unsolicited_burst = limits.unsolicited_bytes_per_second * 10.0;
                used.unsolicited.refill(
                    limits.unsolicited_bytes_per_second,
                    unsolicited_burst,
                    now,
                );
                used.streams > 0
                    || used.served.tokens < limits.peer_burst
                    || used.unsolicited.tokens < unsolicited_burst
            });
        }
        let state = &mut *state;
        let used = state.peers.entry(peer).or_insert(PeerUse {
            streams: 0,
            served: Bucket::full(limits.peer_burst, now),
            unsolicited: Bucket::full(limits.unsolicited_bytes_per_second * 10.0, now),
        });
        if state.streams >= limits.streams || used.streams >= limits.streams_per_peer {
            debug!(%peer, "inbound bitswap stream over the limit; closed");
            self.stats.lock().unwrap_or_else(PoisonError::into_inner).streams_refused += 1;
            return None;
        }
        used.streams += 1;
        state.streams += 1;
        Some(StreamPermit { state: Arc::clone(&self.state), peer })
    }

    /// Reserves `bytes` of `peer`'s budget of served bytes: when they may be sent, or `None`
    /// when not within [`MAX_DELAY`].
    fn reserve(&self, peer: PeerId, bytes: usize) -> Option<Duration> {
        let now = Instant::now();
        let limits = self.limits;
        let mut state = self.lock();
        let Some(used) = state.peers.get_mut(&peer) else { return Some(Duration::ZERO) };
        let (rate, burst) = (limits.peer_bytes_per_second, limits.peer_burst);
        used.served.reserve(bytes as f64, rate, burst, now, MAX_DELAY)
    }

    /// Takes `bytes` from `peer`'s allowance of unsolicited bytes.
    fn take_unsolicited(&self, peer: PeerId, bytes: usize) -> bool {
        let now = Instant::now();
        let rate = self.limits.unsolicited_bytes_per_second;
        let mut state = self.lock();
        let Some(used) = state.peers.get_mut(&peer) else { return true };
        used.unsolicited.take(bytes as f64, rate, rate * 10.0, now)
    }

    /// Reads messages from one inbound stream until it ends or misbehaves.
    async fn handle<S: BlockSource>(
        &self,
        peer: PeerId,
        mut stream: Stream,
        source: &S,
        _permit: StreamPermit,
    ) {
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
                    Ok(msg) => {
                        if !self.on_message(peer, msg, source).await {
                            return;
                        }
                    }
                    Err(e) => return self.bad_message(peer, &e),
                }
            }
            let read = stream.read(&mut chunk);
            let idle = futures_timer::Delay::new(self.limits.stream_idle);
            match futures::future::select(std::pin::pin!(read), idle).await {
                futures::future::Either::Left((Ok(0) | Err(_), _)) => return,
                futures::future::Either::Left((Ok(n), _)) => buf.extend_from_slice(&chunk[..n]),
                futures::future::Either::Right(_) => {
                    debug!(%peer, "bitswap stream idle; closed");
                    self.stats.lock().unwrap_or_else(PoisonError::into_inner).streams_idle += 1;
                    return;
                }
            }
        }
    }

    fn bad_message(&self, peer: PeerId, e: &dyn std::fmt::Display) {
        debug!(%peer, error = %e, "bad bitswap message; stream dropped");
        self.stats.lock().unwrap_or_else(PoisonError::into_inner).bad_messages += 1;
    }

    /// Handles one message from `peer`; `false` drops its stream.
    async fn on_message<S: BlockSource>(&self, peer: PeerId, msg: Message, source: &S) -> bool {
        // As a client: blocks and presences for what we want.
        {
            let mut state = self.lock();
            let mut received = 0;
            let mut unsolicited = 0;
            for (cid, data) in msg.blocks() {
                if data.len() > MAX_BLOCK {
                    unsolicited += data.len();
                    continue;
                }
                if let Some(waiters) = state.wants.remove(&cid) {
                    received += 1;
                    for w in waiters {
                        let _ = w.tx.send(Ok(data.to_vec()));
                    }
                } else {
                    unsolicited += data.len();
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
            let flooding = unsolicited > 0 && !self.take_unsolicited(peer, unsolicited);
            let mut stats = self.stats.lock().unwrap_or_else(PoisonError::into_inner);
            stats.blocks_received += received;
            stats.unsolicited_bytes += unsolicited as u64;
            if flooding {
                stats.streams_flooding += 1;
                debug!(%peer, "too many unsolicited blocks; stream dropped");
                return false;
            }
        }
        // As a server: answer the wants, in messages under the size limit.
        let mut reply = Message::default();
        let mut size = 0usize;
        let mut sent = 0u64;
        let (mut delayed, mut throttled) = (0u64, 0u64);
        let wants: Vec<&WantEntry> = msg.wants.iter().filter(|w| !w.cancel).collect();
        let ignored = wants.len().saturating_sub(self.limits.wants_per_message);
        if ignored > 0 {
            self.stats.lock().unwrap_or_else(PoisonError::into_inner).wants_ignored +=
                ignored as u64;
            debug!(%peer, ignored, "want list over the limit; the rest ignored");
        }
        for want in wants.into_iter().take(self.limits.wants_per_message) {
            let read = if want.want_type == WantType::Have {
                source.has(&want.cid).await
            } else {
                source.block(&want.cid).await
            };
            let found = match read {
                Some(data) if want.want_type == WantType::Block => {
                    match self.reserve(peer, data.len()) {
                        Some(Duration::ZERO) => Some(data),
                        Some(wait) => {
                            delayed += 1;
                            futures_timer::Delay::new(wait).await;
                            Some(data)
                        }
                        None => {
                            throttled += 1;
                            None
                        }
                    }
                }
                found => found,
            };
            match found {
                Some(data) if data.len() <= MAX_BLOCK => {
                    if want.want_type == WantType::Have {
                        reply.presences.push((want.cid, Presence::Have));
                        size += 64;
                    } else {
                        if size + data.len() + 128 > MAX_MESSAGE {
                            if self.send(peer, &std::mem::take(&mut reply)).await.is_err() {
                                return true;
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
        {
            let mut stats = self.stats.lock().unwrap_or_else(PoisonError::into_inner);
            stats.blocks_delayed += delayed;
            stats.blocks_throttled += throttled;
        }
        if !reply.is_empty() && self.send(peer, &reply).await.is_ok() {
            self.stats.lock().unwrap_or_else(PoisonError::into_inner).blocks_sent += sent;
        }
        true
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

pub use behaviour::{NodeBehaviour, NodeBehaviourEvent};
pub use libp2p::connection_limits::ConnectionLimits;

/// The connections a node accepts unless told otherwise: 512 established inbound, 64 inbound
/// still in their handshake, and 4 with any one peer.
pub fn default_connection_limits() -> ConnectionLimits {
    ConnectionLimits::default()
        .with_max_established_incoming(Some(512))
        .with_max_pending_incoming(Some(64))
        .with_max_established_per_peer(Some(4))
}

pub mod dfs;
#[cfg(not(target_arch = "wasm32"))]
pub use dfs::LocalLookup;
pub use dfs::{DfsError, DfsFetch};

mod behaviour {
    // The derive adds an event enum whose variants (one per field) it leaves undocumented.
    #![allow(missing_docs)]

    /// What an Estuary libp2p node runs: connection limits, generic streams (for
    /// [`Bitswap`](crate::Bitswap)), identify (so peers such as Helia learn the protocols it
    /// speaks) and ping. The oracle and the browser node build their swarms around it, each with
    /// the transports of its platform.
    #[derive(libp2p::swarm::NetworkBehaviour)]
    pub struct NodeBehaviour {
        /// Refuses connections past its limits (first, so nothing else sees them).
        pub limits: libp2p::connection_limits::Behaviour,
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
            Self::with_connection_limits(key, agent, crate::default_connection_limits())
        }

        /// The same, with `limits` on connections.
        pub fn with_connection_limits(
            key: &libp2p::identity::Keypair,
            agent: &str,
            limits: crate::ConnectionLimits,
        ) -> Self {
            Self {
                limits: libp2p::connection_limits::Behaviour::new(limits),
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
