//! The process's DHT node: one UDP socket and one thread (`dht`) running
//! the [`Engine`], and the [`DhtHandle`] torrents and peers use to reach it.
//!
//! The socket is bound on the client's listen port number (IPv4:
//! `0.0.0.0:P`, or the `--bind` address when it is IPv4; another port if
//! that one is taken). The thread blocks in `recv_from` with a timeout set
//! to the engine's next timer (at most [`MAX_WAIT`]): no async runtime and
//! no busy polling. Commands from handles go over a channel, and each one
//! wakes the thread with an empty datagram sent to its own socket.
//!
//! Bootstrap: the nodes of `--dht-bootstrap` when given; else the nodes
//! saved by an earlier run, when there are any (they replace the default
//! routers: a second run needs no bootstrap and contacts no router); else
//! [`DEFAULT_BOOTSTRAP`]. Setting [`NO_DEFAULTS_ENV`] (the test suite does,
//! for every binary it starts) empties the defaults, so a test can never
//! reach the routers on the Internet.
//!
//! State: our node id and the good nodes are loaded at the start and saved
//! every [`SAVE_EVERY`] and when the node stops, through [`super::state`],
//! in `DhtConfig::state_dir` or the user's state folder.
//!
//! Stopping: dropping the [`DhtNode`] (the client does when it is dropped)
//! sends the stop command, wakes the thread and joins it; the state is
//! saved on the way out.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError, unbounded};

use super::engine::{Counters, Engine};
use super::id::NodeId;
use crate::metainfo::InfoHash;

/// The routers common clients bootstrap from, used when neither
/// `--dht-bootstrap` nor a saved table names a node.
pub const DEFAULT_BOOTSTRAP: [&str; 4] = [
    "router.bittorrent.com:6881",
    "dht.transmissionbt.com:6881",
    "router.utorrent.com:6881",
    "dht.libtorrent.org:25401",
];

/// When this environment variable is set (to anything), there are no
/// default routers: the test suite sets it for every binary it starts.
pub const NO_DEFAULTS_ENV: &str = "BITTORRENT_DHT_NO_DEFAULTS";

/// The state is saved this often, and when the node stops.
pub const SAVE_EVERY: Duration = Duration::from_secs(10 * 60);

/// Longest the thread sleeps in `recv_from` between looks at its timers.
pub const MAX_WAIT: Duration = Duration::from_secs(1);

/// How the DHT node starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhtConfig {
    /// `--dht-bootstrap` nodes (`HOST:PORT`); empty for the saved nodes or
    /// else the defaults.
    pub bootstrap: Vec<String>,
    /// Where the state file lives; `None` for the user's state folder
    /// (`$XDG_STATE_HOME/bittorrent/`, else `~/.local/state/bittorrent/`).
    pub state_dir: Option<PathBuf>,
}

/// What handles ask of the node thread.
enum Command {
    Announce {
        info_hash: InfoHash,
        port: u16,
        seeding: bool,
        on_peers: super::engine::PeersCallback,
    },
    Forget(InfoHash),
    AddNode(SocketAddr),
    Status(Sender<Status>),
    Stop,
}

/// A snapshot of the node, for tests and diagnostics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// Our node id.
    pub id: NodeId,
    /// Nodes in the routing table.
    pub nodes: usize,
    /// Torrents registered.
    pub torrents: usize,
    /// Queries of ours in flight.
    pub pending: usize,
    /// What the node did so far.
    pub counters: Counters,
}

/// A cheap, cloneable way to reach the node thread.
#[derive(Clone)]
pub struct DhtHandle {
    cmd_tx: Sender<Command>,
    socket: Arc<UdpSocket>,
    wake_addr: SocketAddr,
    /// Whether the node started with anyone to ask: bootstrap nodes or a
    /// saved table.
    has_contacts: bool,
}

impl DhtHandle {
    /// The node's UDP address (its port is the one sent in `port` messages).
    pub fn local_addr(&self) -> SocketAddr {
        self.wake_addr
    }

    /// Whether the node can look for peers at all: it started with
    /// bootstrap nodes or a saved table. One with neither only answers.
    pub fn has_contacts(&self) -> bool {
        self.has_contacts
    }

    /// The node's UDP port.
    pub fn port(&self) -> u16 {
        self.wake_addr.port()
    }

    /// Looks for peers of `info_hash` (then every 30 minutes) and announces
    /// our `port` for it; `on_peers` is called on the `dht` thread with the
    /// peers found (each once), so it must not block.
    pub fn announce(
        &self,
        info_hash: InfoHash,
        port: u16,
        seeding: bool,
        on_peers: impl FnMut(Vec<SocketAddr>) + Send + 'static,
    ) {
        self.send(Command::Announce {
            info_hash,
            port,
            seeding,
            on_peers: Box::new(on_peers),
        });
    }

    /// Stops looking for and announcing `info_hash`.
    pub fn forget(&self, info_hash: InfoHash) {
        self.send(Command::Forget(info_hash));
    }

    /// A peer's `port` message (BEP 5) said a node runs at `addr`: ping it.
    pub fn add_node(&self, addr: SocketAddr) {
        if let IpAddr::V4(_) = addr.ip().to_canonical()
            && addr.port() != 0
        {
            self.send(Command::AddNode(addr));
        }
    }

    /// The node's state now, or `None` when it does not answer within `wait`.
    pub fn status(&self, wait: Duration) -> Option<Status> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.send(Command::Status(tx));
        rx.recv_timeout(wait).ok()
    }

    fn send(&self, command: Command) {
        if self.cmd_tx.send(command).is_ok() {
            // An empty datagram to our own socket wakes its recv_from.
            let _ = self.socket.send_to(&[], self.wake_addr);
        }
    }
}

/// The running node: its thread, stopped and joined when dropped.
pub struct DhtNode {
    handle: DhtHandle,
    thread: Option<JoinHandle<()>>,
}

impl DhtNode {
    /// Binds the socket on `port` (at `bind` when it is IPv4; any free port
    /// when that one is taken), loads the state and starts the `dht` thread.
    ///
    /// # Errors
    /// The I/O error of a socket that cannot be bound at all, or of a
    /// thread that cannot start.
    pub fn start(config: &DhtConfig, bind: Option<IpAddr>, port: u16) -> std::io::Result<DhtNode> {
        let ip = match bind {
            Some(IpAddr::V4(ip)) => ip,
            _ => Ipv4Addr::UNSPECIFIED,
        };
        let socket = match UdpSocket::bind((ip, port)) {
            Ok(socket) => socket,
            Err(e) => {
                log::info!("dht: UDP port {port} not free ({e}): using another");
                UdpSocket::bind((ip, 0))?
            }
        };
        let local = socket.local_addr()?;
        let wake_ip = if ip.is_unspecified() {
            Ipv4Addr::LOCALHOST
        } else {
            ip
        };
        let wake_addr = SocketAddr::new(IpAddr::V4(wake_ip), local.port());
        log::info!("dht: node listening on UDP {local}");
        let socket = Arc::new(socket);
        let (cmd_tx, cmd_rx) = unbounded();
        // A state file counts only with nodes in it (one is saved at every
        // stop, an empty table too).
        let saved = state_file(config)
            .and_then(|path| super::state::load(&path).ok().flatten())
            .is_some_and(|state| !state.nodes.is_empty());
        let handle = DhtHandle {
            cmd_tx,
            socket: Arc::clone(&socket),
            wake_addr,
            has_contacts: saved || !bootstrap_list(config, saved).is_empty(),
        };
        let config = config.clone();
        let thread = thread::Builder::new()
            .name("dht".into())
            .spawn(move || run(&socket, &config, &cmd_rx))?;
        Ok(DhtNode {
            handle,
            thread: Some(thread),
        })
    }

    /// A handle to the node.
    pub fn handle(&self) -> &DhtHandle {
        &self.handle
    }
}

impl Drop for DhtNode {
    fn drop(&mut self) {
        self.handle.send(Command::Stop);
        if let Some(thread) = self.thread.take() {
            // The thread wakes within MAX_WAIT even if the wake-up datagram is lost.
            let _ = thread.join();
        }
    }
}

/// The state file: `DhtConfig::state_dir`/`dht.dat` when set, else in
/// the user's state folder ([`super::state::state_path`]).
pub fn state_file(config: &DhtConfig) -> Option<PathBuf> {
    match &config.state_dir {
        Some(dir) => Some(dir.join(super::state::STATE_FILE_NAME)),
        None => super::state::state_path(
            std::env::var_os("XDG_STATE_HOME").as_deref(),
            std::env::var_os("HOME").as_deref(),
        ),
    }
}

/// The routers to bootstrap from: the configured ones, else (with no saved
/// node) the defaults, unless [`NO_DEFAULTS_ENV`] is set. IPv4 only.
pub fn bootstrap_list(config: &DhtConfig, have_saved_nodes: bool) -> Vec<String> {
    if !config.bootstrap.is_empty() {
        config.bootstrap.clone()
    } else if have_saved_nodes || std::env::var_os(NO_DEFAULTS_ENV).is_some() {
        Vec::new()
    } else {
        DEFAULT_BOOTSTRAP.iter().map(|s| (*s).to_string()).collect()
    }
}

fn resolve(hosts: &[String]) -> Vec<SocketAddr> {
    let mut addrs = Vec::new();
    for host in hosts {
        match host.to_socket_addrs() {
            Ok(mut found) => {
                let v4 = found.find(SocketAddr::is_ipv4);
                match v4 {
                    Some(addr) => addrs.push(addr),
                    None => log::warn!("dht: bootstrap node {host:?} has no IPv4 address"),
                }
            }
            Err(e) => log::warn!("dht: bootstrap node {host:?} skipped: {e}"),
        }
    }
    addrs
}

/// The `dht` thread.
fn run(socket: &UdpSocket, config: &DhtConfig, cmd_rx: &Receiver<Command>) {
    let state_path = state_file(config);
    let saved = match state_path.as_deref().map(super::state::load) {
        Some(Ok(saved)) => saved,
        Some(Err(e)) => {
            log::warn!("{e}: starting with a new node id and an empty table");
            None
        }
        None => {
            log::warn!("dht: no state folder (neither XDG_STATE_HOME nor HOME): state not kept");
            None
        }
    };
    let (id, nodes) = match saved {
        Some(state) => (state.id, state.nodes),
        None => (NodeId::random(), Vec::new()),
    };
    let hosts = bootstrap_list(config, !nodes.is_empty());
    if !nodes.is_empty() {
        log::info!("dht: starting from {} saved nodes", nodes.len());
    }
    let routers = resolve(&hosts);
    let now = Instant::now();
    let mut engine = Engine::new(id, &nodes, routers, fastrand::Rng::new(), now);
    let mut next_save = now + SAVE_EVERY;
    let mut buf = vec![0u8; 4096];
    loop {
        let now = Instant::now();
        loop {
            match cmd_rx.try_recv() {
                Ok(Command::Stop) | Err(TryRecvError::Disconnected) => {
                    save(&engine, state_path.as_deref());
                    return;
                }
                Ok(command) => handle(&mut engine, command, now),
                Err(TryRecvError::Empty) => break,
            }
        }
        engine.tick(now);
        for (to, datagram) in engine.take_outbox() {
            if let Err(e) = socket.send_to(&datagram, to) {
                log::debug!("dht: cannot send to {to}: {e}");
            }
        }
        if now >= next_save {
            next_save = now + SAVE_EVERY;
            save(&engine, state_path.as_deref());
        }
        let wait = engine
            .next_tick(now)
            .saturating_duration_since(now)
            .clamp(Duration::from_millis(10), MAX_WAIT);
        if socket.set_read_timeout(Some(wait)).is_err() {
            return;
        }
        match socket.recv_from(&mut buf) {
            // A handle's wake-up call.
            Ok((0, _)) => {}
            Ok((len, from)) => engine.on_datagram(from, &buf[..len], Instant::now()),
            Err(e) if crate::peer::conn::is_timeout(&e) => {}
            // ICMP "port unreachable" of an earlier send shows up here on Linux.
            Err(e) => log::trace!("dht: recv: {e}"),
        }
    }
}

fn handle(engine: &mut Engine, command: Command, now: Instant) {
    match command {
        Command::Announce {
            info_hash,
            port,
            seeding,
            on_peers,
        } => engine.announce(NodeId(info_hash.0), port, seeding, on_peers, now),
        Command::Forget(info_hash) => engine.forget(&NodeId(info_hash.0)),
        Command::AddNode(addr) => engine.add_node(addr, now),
        Command::Status(tx) => {
            let _ = tx.send(Status {
                id: engine.own_id(),
                nodes: engine.table().len(),
                torrents: engine.torrent_count(),
                pending: engine.pending_count(),
                counters: engine.counters(),
            });
        }
        Command::Stop => {}
    }
}

fn save(engine: &Engine, path: Option<&std::path::Path>) {
    let Some(path) = path else {
        return;
    };
    let nodes = engine.export(Instant::now());
    let state = super::state::State {
        id: engine.own_id(),
        nodes,
    };
    if let Err(e) = super::state::save(path, &state) {
        let cause = std::error::Error::source(&e).map(ToString::to_string);
        log::warn!("{e}: {}", cause.unwrap_or_default());
    }
}
