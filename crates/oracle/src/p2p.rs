//! The oracle's libp2p node: TCP and WebSocket transports (noise, yamux), identify and ping, and
//! Bitswap ([`estuary_p2p`]) both ways — it fetches DAGs from the peers a request names as
//! origins (a Helia or kubo node, or the uploader's browser node, which dials in over
//! WebSocket), and serves the blocks it holds.
//!
//! The swarm runs in its own task; [`P2p`] is a cheap handle to it. The node's key is kept in
//! the data directory (`p2p.key`), so its peer id survives restarts.

use std::{
    collections::{HashMap, HashSet},
    path::Path,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use cid::Cid;
use estuary_p2p::{Bitswap, BlockFuture, BlockSource, Limits, NodeBehaviour};
use futures::StreamExt;
use libp2p::{
    Multiaddr, PeerId, Swarm,
    identity::Keypair,
    noise,
    swarm::{SwarmEvent, dial_opts::DialOpts},
    tcp, yamux,
};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::{blockstore::Blockstore, config::P2pConfig, deals::cold::ColdReads};

/// Why the libp2p node could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum P2pError {
    /// The key file cannot be read or written, or holds no key.
    #[error("libp2p key {path}: {reason}")]
    Key {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// The transports could not be built.
    #[error("libp2p transport: {0}")]
    Transport(String),
    /// A listen address is malformed or cannot be bound.
    #[error("cannot listen on {addr}: {reason}")]
    Listen {
        /// The address.
        addr: String,
        /// Why.
        reason: String,
    },
}

type DialReply = oneshot::Sender<Result<(), String>>;

enum Command {
    Connect { peer: PeerId, addrs: Vec<Multiaddr>, reply: DialReply },
}

/// A handle to the running libp2p node.
#[derive(Clone)]
pub struct P2p {
    peer_id: PeerId,
    bitswap: Bitswap,
    commands: mpsc::Sender<Command>,
    listen: Arc<Mutex<Vec<Multiaddr>>>,
    connected: Arc<Mutex<HashSet<PeerId>>>,
}

impl std::fmt::Debug for P2p {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("P2p").field("peer_id", &self.peer_id).finish_non_exhaustive()
    }
}

/// Serves blocks from the oracle's blockstore (reads run on the blocking pool), and a block of a
/// pin whose blocks went, its piece held by providers, from them (each checked).
struct StoreSource<B>(Arc<B>, Option<Arc<ColdReads>>);

impl<B: Blockstore> BlockSource for StoreSource<B> {
    fn block(&self, cid: &Cid) -> BlockFuture<'_> {
        let store = Arc::clone(&self.0);
        let cid = *cid;
        Box::pin(async move {
            let read = tokio::task::spawn_blocking(move || store.get(&cid))
                .await
                .expect("a block read does not panic");
            // Bitswap has no way to say "failed": a storage failure is answered as not held,
            // and logged, so the peer tries elsewhere.
            let held = read.unwrap_or_else(|e| {
                warn!(%cid, error = %e, "cannot read a block to serve");
                None
            });
            match (held, &self.1) {
                (None, Some(cold)) => cold.block(&cid).await.unwrap_or_else(|e| {
                    tracing::debug!(%cid, error = %e, "cannot read a block from providers to serve");
                    None
                }),
                (held, _) => held,
            }
        })
    }

    /// Held here, or of a pin whose piece providers hold: answered without reading it.
    fn has(&self, cid: &Cid) -> BlockFuture<'_> {
        let store = Arc::clone(&self.0);
        let cid = *cid;
        Box::pin(async move {
            let here = tokio::task::spawn_blocking(move || store.has(&cid))
                .await
                .expect("a block lookup does not panic")
                .unwrap_or_else(|e| {
                    warn!(%cid, error = %e, "cannot look a block up to answer a want");
                    false
                });
            let cold = match (&self.1, here) {
                (Some(cold), false) => cold.holds(&cid).await.unwrap_or(false),
                _ => false,
            };
            (here || cold).then(Vec::new)
        })
    }
}

/// Yamux whose stream windows never grow past the 256 KiB default. rust-yamux grows a busy
/// stream's window towards the bandwidth-delay product, but refuses any frame over 1 MiB, while
/// js-yamux (Helia) sends a frame as large as the window allows: past 1 MiB the connection
/// dies (`FrameTooLarge`). The window grows only out of the connection's budget beyond 256 KiB
/// per possible stream; with 4,096 streams that budget (1 GiB) is all spoken for.
fn yamux_config() -> yamux::Config {
    let mut config = yamux::Config::default();
    config.set_max_num_streams(4096);
    config
}

/// Reads the node's key from `path`, or makes one and keeps it there: written whole or not at
/// all (a temporary file, synced, renamed, the directory synced) and readable by its owner
/// only (mode 0600; a key file found readable by others is tightened).
fn load_key(path: &Path) -> Result<Keypair, P2pError> {
    let err = |reason: String| P2pError::Key { path: path.display().to_string(), reason };
    match std::fs::read(path) {
        Ok(bytes) => {
            let key = Keypair::from_protobuf_encoding(&bytes).map_err(|e| err(e.to_string()))?;
            owner_only(path).map_err(|e| err(e.to_string()))?;
            Ok(key)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = Keypair::generate_ed25519();
            let bytes = key.to_protobuf_encoding().map_err(|e| err(e.to_string()))?;
            write_secret(path, &bytes).map_err(|e| err(e.to_string()))?;
            Ok(key)
        }
        Err(e) => Err(err(e.to_string())),
    }
}

/// Makes `path` readable and writable by its owner only, if it is not.
fn owner_only(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)?.permissions().mode();
    if mode & 0o077 != 0 {
        warn!(path = %path.display(), "the libp2p key was readable by others; now 0600");
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

/// Writes `bytes` to `path` atomically, with mode 0600 from the start.
fn write_secret(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::{io::Write, os::unix::fs::OpenOptionsExt};
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let written = (|| {
        let mut file =
            std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

impl P2p {
    /// Starts the node with the key in `key_path`, listening on `config.p2p_listen` (none: it
    /// only dials out), serving blocks from `blocks` within the configured limits, until
    /// `shutdown`; blocks of pins whose pieces are read from providers are read by `cold`.
    pub async fn start<B: Blockstore>(
        key_path: &Path,
        config: &P2pConfig,
        blocks: Arc<B>,
        cold: Option<Arc<ColdReads>>,
        shutdown: CancellationToken,
    ) -> Result<Self, P2pError> {
        let listen = &config.p2p_listen;
        let connection_limits = estuary_p2p::default_connection_limits()
            .with_max_established_incoming(Some(config.p2p_max_connections));
        let per_second = config.p2p_peer_bytes_per_second as f64;
        let limits = Limits {
            peer_bytes_per_second: per_second,
            peer_burst: per_second * 4.0,
            ..Limits::default()
        };
        let key = load_key(key_path)?;
        let transport = |e: &dyn std::fmt::Display| P2pError::Transport(e.to_string());
        let mut swarm: Swarm<NodeBehaviour> = libp2p::SwarmBuilder::with_existing_identity(key)
            .with_tokio()
            .with_tcp(tcp::Config::default().nodelay(true), noise::Config::new, yamux_config)
            .map_err(|e| transport(&e))?
            .with_dns()
            .map_err(|e| transport(&e))?
            .with_websocket(noise::Config::new, yamux_config)
            .await
            .map_err(|e| transport(&e))?
            .with_behaviour(|key| {
                NodeBehaviour::with_connection_limits(
                    key,
                    &format!("estuary/{}", env!("CARGO_PKG_VERSION")),
                    connection_limits,
                )
            })
            .map_err(|e| transport(&e))?
            // Browser nodes stay connected while their uploads may be fetched.
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(3600)))
            .build();
        let mut listeners = Vec::new();
        for text in listen {
            let bad = |reason: String| P2pError::Listen { addr: text.clone(), reason };
            let addr: Multiaddr =
                text.parse().map_err(|e: libp2p::multiaddr::Error| bad(e.to_string()))?;
            listeners.push(swarm.listen_on(addr).map_err(|e| bad(e.to_string()))?);
        }
        // Wait for every listener's first address, so `addrs` is complete once we return.
        let listen_addrs = Arc::new(Mutex::new(Vec::new()));
        let mut pending: HashSet<_> = listeners.into_iter().collect();
        while !pending.is_empty() {
            match swarm.select_next_some().await {
                SwarmEvent::NewListenAddr { listener_id, address } => {
                    pending.remove(&listener_id);
                    lock(&listen_addrs).push(address);
                }
                SwarmEvent::ListenerError { error, .. }
                | SwarmEvent::ListenerClosed { reason: Err(error), .. } => {
                    return Err(P2pError::Listen {
                        addr: listen.join(", "),
                        reason: error.to_string(),
                    });
                }
                _ => {}
            }
        }
        let bitswap = Bitswap::with_limits(swarm.behaviour().stream.new_control(), limits);
        let serve = bitswap
            .serve(StoreSource(blocks, cold))
            .map_err(|e| P2pError::Transport(e.to_string()))?;
        let serve_shutdown = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = serve => {}
                () = serve_shutdown.cancelled() => {}
            }
        });
        let (commands, rx) = mpsc::channel(64);
        let handle = Self {
            peer_id: *swarm.local_peer_id(),
            bitswap,
            commands,
            listen: listen_addrs,
            connected: Arc::default(),
        };
        info!(peer_id = %handle.peer_id, addrs = ?handle.addrs(), "libp2p node started");
        tokio::spawn(run(swarm, rx, handle.clone(), shutdown));
        Ok(handle)
    }

    /// This node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// The addresses this node listens on, each ending with `/p2p/<peer id>`.
    pub fn addrs(&self) -> Vec<Multiaddr> {
        lock(&self.listen)
            .iter()
            .map(|a| a.clone().with(libp2p::multiaddr::Protocol::P2p(self.peer_id)))
            .collect()
    }

    /// Whether `peer` is connected now.
    pub fn is_connected(&self, peer: &PeerId) -> bool {
        lock(&self.connected).contains(peer)
    }

    /// Peers connected now.
    pub fn peers(&self) -> usize {
        lock(&self.connected).len()
    }

    /// The Bitswap service.
    pub fn bitswap(&self) -> &Bitswap {
        &self.bitswap
    }

    /// Connects to `peer` at `addrs` (an existing connection is used as it is; with no address
    /// the peer must already be connected, as a browser node that dialled in is).
    pub async fn connect(&self, peer: PeerId, addrs: Vec<Multiaddr>) -> Result<(), String> {
        if self.is_connected(&peer) {
            return Ok(());
        }
        if addrs.is_empty() {
            return Err(format!("peer {peer} is not connected and no address was given"));
        }
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::Connect { peer, addrs, reply })
            .await
            .map_err(|_| "the libp2p node stopped".to_owned())?;
        rx.await.unwrap_or_else(|_| Err("the libp2p node stopped".into()))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The swarm's event loop.
async fn run(
    mut swarm: Swarm<NodeBehaviour>,
    mut commands: mpsc::Receiver<Command>,
    handle: P2p,
    shutdown: CancellationToken,
) {
    let mut dialing: HashMap<PeerId, Vec<DialReply>> = HashMap::new();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            command = commands.recv() => match command {
                None => return,
                Some(Command::Connect { peer, addrs, reply }) => {
                    if swarm.is_connected(&peer) {
                        let _ = reply.send(Ok(()));
                        continue;
                    }
                    let first = !dialing.contains_key(&peer);
                    dialing.entry(peer).or_default().push(reply);
                    if first {
                        let opts = DialOpts::peer_id(peer).addresses(addrs).build();
                        if let Err(e) = swarm.dial(opts) {
                            for reply in dialing.remove(&peer).unwrap_or_default() {
                                let _ = reply.send(Err(e.to_string()));
                            }
                        }
                    }
                }
            },
            event = swarm.select_next_some() => match event {
                SwarmEvent::ConnectionEstablished { peer_id, endpoint, .. } => {
                    debug!(%peer_id, remote = %endpoint.get_remote_address(), "peer connected");
                    lock(&handle.connected).insert(peer_id);
                    for reply in dialing.remove(&peer_id).unwrap_or_default() {
                        let _ = reply.send(Ok(()));
                    }
                }
                SwarmEvent::ConnectionClosed { peer_id, num_established: 0, .. } => {
                    debug!(%peer_id, "peer disconnected");
                    lock(&handle.connected).remove(&peer_id);
                    handle.bitswap.disconnected(peer_id);
                }
                SwarmEvent::OutgoingConnectionError { peer_id: Some(peer_id), error, .. }
                    if !swarm.is_connected(&peer_id) =>
                {
                    for reply in dialing.remove(&peer_id).unwrap_or_default() {
                        let _ = reply.send(Err(error.to_string()));
                    }
                }
                SwarmEvent::NewListenAddr { address, .. } => {
                    let mut listen = lock(&handle.listen);
                    if !listen.contains(&address) {
                        listen.push(address);
                    }
                }
                SwarmEvent::ListenerError { error, .. } => warn!(%error, "libp2p listener failed"),
                _ => {}
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_key_file_is_the_owners_only_and_kept_across_loads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data/p2p.key");
        let key = load_key(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        // No temporary file is left beside it.
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(names.len(), 1);
        assert_eq!(load_key(&path).unwrap().public(), key.public());
        // A key file others can read (an older oracle's) is tightened.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        load_key(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }
}
