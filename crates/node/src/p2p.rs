//! The browser node's libp2p: a WebSocket connection to the oracle (noise, yamux, identify,
//! ping) over which it answers Bitswap wants for the blocks it holds, so a pin request whose
//! origin is this browser is fetched from it, and over which it downloads files block by block,
//! each block checked against its CID and its place in the file's DAG. The blocks served come
//! from JavaScript (the worker reads them from the CARs in the Origin Private File System); every
//! other part is Rust.

use std::{cell::Cell, rc::Rc, time::Duration};

use cid::Cid;
use estuary_dag::{dfs_file::DfsFileReader, walk::WalkLimits};
use estuary_p2p::{Bitswap, BlockFuture, BlockSource, DfsFetch, NodeBehaviour};
use futures::{FutureExt, StreamExt, channel::oneshot};
use js_sys::{Function, Promise, Uint8Array};
use libp2p::{
    Multiaddr, PeerId, Transport, core::upgrade::Version, identity::Keypair, noise,
    swarm::SwarmEvent, yamux,
};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

use crate::DOWNLOAD_CACHE;

/// Blocks looked up by a JavaScript function `(cid: Uint8Array) => Promise<Uint8Array |
/// undefined>`.
struct JsBlocks(Function);

impl BlockSource for JsBlocks {
    fn block(&self, cid: &Cid) -> BlockFuture<'_> {
        let bytes = Uint8Array::from(cid.to_bytes().as_slice());
        Box::pin(async move {
            let value = self.0.call1(&JsValue::NULL, &bytes).ok()?;
            let value = JsFuture::from(Promise::resolve(&value)).await.ok()?;
            value.dyn_into::<Uint8Array>().ok().map(|a| a.to_vec())
        })
    }
}

/// A libp2p node connected to the oracle, serving blocks over Bitswap until stopped.
#[wasm_bindgen]
pub struct P2pNode {
    peer_id: String,
    key: Vec<u8>,
    oracle: PeerId,
    bitswap: Bitswap,
    connected: Rc<Cell<bool>>,
    stop: Option<oneshot::Sender<()>>,
}

fn js_error(context: &str, e: impl std::fmt::Display) -> JsError {
    JsError::new(&format!("{context}: {e}"))
}

#[wasm_bindgen]
impl P2pNode {
    /// Dials `oracle` (a `/dns|ip4/…/tcp/…/ws/p2p/<peer id>` multiaddr) and answers Bitswap wants
    /// with `blocks(cid) → Promise<Uint8Array | undefined>`. `key` (from an earlier node's
    /// `key`) keeps the peer id across reloads; without it a new identity is made. Resolves
    /// once connected; while it runs, a lost connection is dialled again every 5 s.
    pub async fn start(
        oracle: String,
        blocks: Function,
        key: Option<Vec<u8>>,
    ) -> Result<P2pNode, JsError> {
        let addr: Multiaddr = oracle.parse().map_err(|e| js_error("not a multiaddr", e))?;
        let Some(oracle_peer) = estuary_p2p::peer_of(&addr) else {
            return Err(JsError::new("the oracle's address must end with /p2p/<peer id>"));
        };
        let key = match key {
            Some(bytes) => Keypair::from_protobuf_encoding(&bytes)
                .map_err(|e| js_error("the stored libp2p key is unreadable", e))?,
            None => Keypair::generate_ed25519(),
        };
        let key_bytes = key.to_protobuf_encoding().map_err(|e| js_error("libp2p key", e))?;
        let mut swarm = libp2p::SwarmBuilder::with_existing_identity(key)
            .with_wasm_bindgen()
            .with_other_transport(|key| {
                Ok(libp2p::websocket_websys::Transport::default()
                    .upgrade(Version::V1)
                    .authenticate(noise::Config::new(key)?)
                    .multiplex(yamux::Config::default())
                    .boxed())
            })
            .map_err(|e| js_error("libp2p transport", e))?
            .with_behaviour(|key| {
                NodeBehaviour::new(key, &format!("estuary-browser/{}", env!("CARGO_PKG_VERSION")))
            })
            .map_err(|e| js_error("libp2p behaviour", e))?
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(24 * 3600)))
            .build();
        let peer_id = swarm.local_peer_id().to_string();
        swarm.dial(addr.clone()).map_err(|e| js_error("cannot dial the oracle", e))?;
        loop {
            match swarm.select_next_some().await {
                SwarmEvent::ConnectionEstablished { peer_id, .. } if peer_id == oracle_peer => {
                    break;
                }
                SwarmEvent::OutgoingConnectionError { error, .. } => {
                    return Err(js_error("cannot connect to the oracle", error));
                }
                _ => {}
            }
        }
        let bitswap = Bitswap::new(swarm.behaviour().stream.new_control());
        let serve = bitswap.serve(JsBlocks(blocks)).map_err(|e| js_error("bitswap", e))?;
        let connected = Rc::new(Cell::new(true));
        let (stop, stopped) = oneshot::channel();
        wasm_bindgen_futures::spawn_local(run(
            swarm,
            addr,
            oracle_peer,
            bitswap.clone(),
            Rc::clone(&connected),
            serve,
            stopped,
        ));
        Ok(P2pNode {
            peer_id,
            key: key_bytes,
            oracle: oracle_peer,
            bitswap,
            connected,
            stop: Some(stop),
        })
    }

    /// This node's peer id.
    #[wasm_bindgen(getter, js_name = peerId)]
    pub fn peer_id(&self) -> String {
        self.peer_id.clone()
    }

    /// The node's private key (libp2p protobuf encoding), to keep for `start` after a reload.
    #[wasm_bindgen(getter)]
    pub fn key(&self) -> Uint8Array {
        Uint8Array::from(self.key.as_slice())
    }

    /// Whether the connection to the oracle is up.
    #[wasm_bindgen(getter)]
    pub fn connected(&self) -> bool {
        self.connected.get()
    }

    /// Blocks sent to peers so far.
    #[wasm_bindgen(getter, js_name = blocksSent)]
    pub fn blocks_sent(&self) -> f64 {
        self.bitswap.stats().blocks_sent as f64
    }

    /// Downloads the file `root` (CID text) from the oracle over Bitswap: blocks come depth
    /// first, up to 16 ahead, each checked against its CID by Bitswap and against its place in
    /// the file's DAG by the same reader as a gateway download; `onBytes(bytes)` gets the file's
    /// bytes in order (a returned promise is awaited before going on; a throw stops the
    /// download). Resolves to the file's size. Rejects when the peer lacks a block, sends
    /// nothing for 30 s, the DAG is not a UnixFS file, or the connection is down.
    #[wasm_bindgen(unchecked_return_type = "Promise<number>")]
    pub fn download(
        &self,
        root: &str,
        #[wasm_bindgen(js_name = onBytes)] on_bytes: Function,
    ) -> Promise {
        let root = cid::Cid::try_from(root).map_err(|e| js_error("not a CID", e));
        let bitswap = self.bitswap.clone();
        let (oracle, connected) = (self.oracle, self.connected.get());
        wasm_bindgen_futures::future_to_promise(async move {
            if !connected {
                return Err(JsError::new("not connected to the oracle").into());
            }
            let root = root?;
            let size = download(bitswap, oracle, root, &on_bytes).await?;
            Ok(JsValue::from(size as f64))
        })
    }

    /// Closes the connection and stops serving.
    pub fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Blocks asked for ahead of the one the reader needs next.
const DOWNLOAD_WINDOW: usize = 16;
/// A peer that sends no block for this long fails the download.
const DOWNLOAD_STALL: Duration = Duration::from_secs(30);
/// Bounds on a download: at most a 1 TiB file of 1 MiB leaves and its parents, in blocks;
/// every link read counts, so a file whose links repeat one subtree costs what it reads.
const DOWNLOAD_LIMITS: WalkLimits = WalkLimits {
    max_depth: 64,
    max_links: 1 << 16,
    max_blocks: 1 << 21,
    max_bytes: 1 << 41,
    max_visits: 1 << 22,
    max_queued: 1 << 20,
};

async fn download(
    bitswap: Bitswap,
    peer: PeerId,
    root: cid::Cid,
    on_bytes: &Function,
) -> Result<u64, JsError> {
    let mut fetch = DfsFetch::new(bitswap, peer, root, DOWNLOAD_WINDOW, DOWNLOAD_LIMITS);
    let mut reader = DfsFileReader::with_limits(root, DOWNLOAD_CACHE, DOWNLOAD_LIMITS);
    let mut out = Vec::new();
    loop {
        let next = futures::select! {
            next = fetch.next().fuse() => next,
            () = futures_timer::Delay::new(DOWNLOAD_STALL).fuse() => {
                return Err(JsError::new(&format!(
                    "the oracle sent no block for {} s (after {} blocks)",
                    DOWNLOAD_STALL.as_secs(),
                    fetch.blocks()
                )));
            }
        };
        let done = next.is_none();
        match next {
            Some(block) => {
                let (cid, data, _) = block.map_err(|e| js_error("download failed", e))?;
                reader
                    .push(&cid, &data, &mut out)
                    .map_err(|e| js_error("verification failed", e))?;
            }
            None => {
                reader.finish(&mut out).map_err(|e| js_error("verification failed", e))?;
            }
        }
        if !out.is_empty() {
            let bytes = Uint8Array::from(out.as_slice());
            out.clear();
            let value = on_bytes.call1(&JsValue::NULL, &bytes).map_err(|e| thrown(&e))?;
            JsFuture::from(Promise::resolve(&value)).await.map_err(|e| thrown(&e))?;
        }
        if done {
            return Ok(reader.emitted());
        }
    }
}

/// A JavaScript exception as a `JsError` carrying its message.
fn thrown(value: &JsValue) -> JsError {
    let message = value
        .dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .or_else(|| value.as_string())
        .unwrap_or_else(|| "stopped".to_owned());
    JsError::new(&message)
}

/// The swarm's event loop: keeps the connection to the oracle up and the Bitswap server running.
async fn run(
    mut swarm: libp2p::Swarm<NodeBehaviour>,
    oracle: Multiaddr,
    oracle_peer: PeerId,
    bitswap: Bitswap,
    connected: Rc<Cell<bool>>,
    serve: impl Future<Output = ()>,
    stopped: oneshot::Receiver<()>,
) {
    let mut serve = std::pin::pin!(serve.fuse());
    let mut stopped = stopped.fuse();
    let mut redial = futures_timer::Delay::new(Duration::from_secs(5)).fuse();
    loop {
        futures::select! {
            _ = stopped => return,
            () = serve => return,
            () = redial => {
                if !swarm.is_connected(&oracle_peer) {
                    let _ = swarm.dial(oracle.clone());
                }
                redial = futures_timer::Delay::new(Duration::from_secs(5)).fuse();
            }
            event = swarm.select_next_some() => match event {
                SwarmEvent::ConnectionEstablished { peer_id, .. } if peer_id == oracle_peer => {
                    connected.set(true);
                }
                SwarmEvent::ConnectionClosed { peer_id, num_established: 0, .. } => {
                    if peer_id == oracle_peer {
                        connected.set(false);
                    }
                    bitswap.disconnected(peer_id);
                }
                _ => {}
            },
        }
    }
}
