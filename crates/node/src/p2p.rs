//! The browser node's libp2p: a WebSocket connection to the oracle (noise, yamux, identify,
//! ping) over which it answers Bitswap wants for the blocks it holds, so a pin request whose
//! origin is this browser is fetched from it. The blocks come from JavaScript (the worker reads
//! them from the CARs in the Origin Private File System); every other part is Rust.

use std::{cell::Cell, rc::Rc, time::Duration};

use cid::Cid;
use estuary_p2p::{Bitswap, BlockFuture, BlockSource, NodeBehaviour};
use futures::{FutureExt, StreamExt, channel::oneshot};
use js_sys::{Function, Promise, Uint8Array};
use libp2p::{
    Multiaddr, PeerId, Transport, core::upgrade::Version, identity::Keypair, noise,
    swarm::SwarmEvent, yamux,
};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

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
        Ok(P2pNode { peer_id, key: key_bytes, bitswap, connected, stop: Some(stop) })
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

    /// Closes the connection and stops serving.
    pub fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
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
