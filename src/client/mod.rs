//! The process-level client, above the torrents: our peer id, the listen
//! sockets, the connection budget shared by every torrent (`--max-peers`)
//! with the limit and pace of our connects in flight ([`pacing`]), and the
//! routing of incoming connections to the torrent whose info-hash
//! their handshake names, and the DHT node ([`crate::dht::node`], one per
//! process, started by [`Client::start_dht`] unless `--no-dht`; torrents
//! reach it through [`Client::dht`]), and the rate limits every peer
//! thread of the process shares ([`Client::bandwidth`], [`crate::bandwidth`]).
//!
//! By default the client listens on every IPv4 and every IPv6 address on
//! one port (the `bind` submodule; IPv4 alone on a machine without IPv6,
//! said once in the log), or on the one address `--bind` names. A
//! `listener` thread per socket (the `listener` submodule) accepts; a
//! short-lived `incoming ADDR` thread reads
//! the remote's 68-byte handshake and hands the stream to the torrent's
//! manager ([`Event::Incoming`]); the peer thread that manager spawns
//! answers the handshake. A handshake for an unknown info-hash is dropped
//! without an answer.
//!
//! Nothing a remote does can hold the listener: the whole handshake has one
//! deadline ([`HANDSHAKE_TIMEOUT`], however slowly the bytes drip), at most
//! [`MAX_PENDING_HANDSHAKES`] are read at once and at most
//! [`MAX_PENDING_PER_IP`] from one IP (when all places are taken,
//! newcomers wait in the kernel's accept queue, and one pending for over a
//! second gives way to a newcomer), and when `accept()` fails (out of
//! file descriptors) the listener backs off, up to [`MAX_ACCEPT_BACKOFF`],
//! logging once per streak of failures, instead of spinning.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crossbeam_channel::Sender;

use crate::bandwidth::Bandwidth;
use crate::dht::node::{DhtConfig, DhtHandle, DhtNode};
use crate::error::Error;
use crate::metainfo::InfoHash;
use crate::peer::wire::{Handshake, PeerId};
use crate::piece_manager::Event;

mod bind;
mod listener;
pub mod pacing;

pub use listener::{
    HANDSHAKE_TIMEOUT, MAX_ACCEPT_BACKOFF, MAX_PENDING_HANDSHAKES, MAX_PENDING_PER_IP,
};
/// The process-wide limit on peer connections, in both directions. A fifth
/// of it is kept for our own dials: incoming connections alone never fill
/// it, so peers we choose (from trackers, `--peer`) can always be dialled.
/// Our connects in flight are limited and paced apart ([`pacing`]).
#[derive(Debug)]
pub struct ConnectionBudget {
    max: usize,
    used: AtomicUsize,
    dialling: Arc<pacing::Dialling>,
}

/// One connection's share of the [`ConnectionBudget`], given back on drop.
#[derive(Debug)]
pub struct Permit(Arc<ConnectionBudget>);

impl ConnectionBudget {
    /// A budget of `max` connections.
    pub fn new(max: usize) -> Arc<ConnectionBudget> {
        Arc::new(ConnectionBudget {
            max,
            used: AtomicUsize::new(0),
            dialling: pacing::Dialling::new(
                pacing::MAX_HALF_OPEN,
                pacing::DIAL_RATE,
                pacing::DIAL_BURST,
                std::time::Instant::now(),
            ),
        })
    }

    /// Our connects in flight and their pace, for every torrent.
    pub fn dialling(&self) -> &Arc<pacing::Dialling> {
        &self.dialling
    }

    /// A permit for one more connection, or `None` at the limit.
    pub fn try_acquire(self: &Arc<Self>) -> Option<Permit> {
        self.acquire_below(self.max)
    }

    /// A permit for one more incoming connection, or `None` when only the
    /// slots kept for our dials are left.
    pub fn try_acquire_incoming(self: &Arc<Self>) -> Option<Permit> {
        self.acquire_below(self.max_incoming())
    }

    fn acquire_below(self: &Arc<Self>, limit: usize) -> Option<Permit> {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                (used < limit).then_some(used + 1)
            })
            .ok()
            .map(|_| Permit(Arc::clone(self)))
    }

    /// The limit.
    pub fn max(&self) -> usize {
        self.max
    }

    /// The limit for incoming connections: the rest is kept for our dials.
    pub fn max_incoming(&self) -> usize {
        self.max - self.max / 5
    }

    /// Permits held now.
    pub fn in_use(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.used.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Where an incoming handshake goes.
#[derive(Debug)]
pub enum Route {
    /// To this torrent's manager.
    To(Sender<Event>),
    /// No torrent of ours has this info-hash: drop the connection.
    Unknown(InfoHash),
}

/// The torrents of the process, by info-hash.
#[derive(Debug, Default)]
pub struct Router {
    torrents: Mutex<HashMap<InfoHash, Sender<Event>>>,
}

impl Router {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<InfoHash, Sender<Event>>> {
        self.torrents
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Routes connections for `info_hash` to `events_tx` from now on.
    pub fn register(&self, info_hash: InfoHash, events_tx: Sender<Event>) {
        self.lock().insert(info_hash, events_tx);
    }

    /// Stops routing connections for `info_hash`.
    pub fn unregister(&self, info_hash: InfoHash) {
        self.lock().remove(&info_hash);
    }

    /// Where a connection whose handshake is `handshake` goes.
    pub fn route(&self, handshake: &Handshake) -> Route {
        match self.lock().get(&handshake.info_hash) {
            Some(tx) => Route::To(tx.clone()),
            None => Route::Unknown(handshake.info_hash),
        }
    }
}

/// The running client.
pub struct Client {
    our_id: PeerId,
    /// Where the sockets listen, in the order of `sockets`: IPv4 first.
    listen_addrs: Vec<SocketAddr>,
    router: Arc<Router>,
    budget: Arc<ConnectionBudget>,
    /// One `listener` thread per socket.
    listeners: Vec<JoinHandle<()>>,
    /// The listening sockets, shared with the `listener` threads so that
    /// dropping the client can wake their `accept()`.
    sockets: Vec<Arc<TcpListener>>,
    stop: Arc<AtomicBool>,
    /// The places of pending handshakes, shared by the `listener` threads.
    pending: Arc<listener::Pending>,
    /// The DHT node, once started; stopped first when the client is dropped.
    dht: Option<DhtNode>,
    /// `--max-download-rate` and `--max-upload-rate`, for every torrent.
    bandwidth: Bandwidth,
    /// The one address `--bind` named (not `0.0.0.0` or `::`): our
    /// connections to peers and UDP trackers go out from it too.
    local_ip: Option<IpAddr>,
}

impl Client {
    /// Binds the listen port (or the next free one) and starts accepting:
    /// on address `bind` alone, or when it is `None` on every IPv4 and
    /// every IPv6 address, one port number for both (IPv4 alone, with one
    /// log line, on a machine without IPv6).
    ///
    /// # Errors
    /// [`Error::Listen`] when no port can be bound, [`Error::Thread`] when
    /// a listener thread cannot start.
    pub fn start(
        bind: Option<IpAddr>,
        port: u16,
        max_peers: usize,
        our_id: PeerId,
    ) -> Result<Client, Error> {
        let bound = bind::bind(bind, port)?;
        if let Some(e) = &bound.no_ipv6 {
            log::info!("no IPv6 on this machine ({e}): listening on IPv4 only");
        }
        let mut listen_addrs = Vec::new();
        for socket in &bound.listeners {
            let addr = socket
                .local_addr()
                .map_err(|source| Error::Listen { port, source })?;
            log::info!("listening on {addr}");
            listen_addrs.push(addr);
        }
        let mut client = Client {
            our_id,
            listen_addrs,
            router: Arc::new(Router::default()),
            budget: ConnectionBudget::new(max_peers),
            listeners: Vec::new(),
            sockets: bound.listeners.into_iter().map(Arc::new).collect(),
            stop: Arc::new(AtomicBool::new(false)),
            // Shared by every socket: the caps are on the process.
            pending: Arc::new(listener::Pending::default()),
            dht: None,
            bandwidth: Bandwidth::default(),
            local_ip: bind.filter(|ip| !ip.is_unspecified()),
        };
        for (n, socket) in client.sockets.iter().enumerate() {
            let (router, stop) = (Arc::clone(&client.router), Arc::clone(&client.stop));
            let (socket, pending) = (Arc::clone(socket), Arc::clone(&client.pending));
            let name = if n == 0 {
                "listener".into()
            } else {
                format!("listener {n}")
            };
            let thread = thread::Builder::new()
                .name(name)
                .spawn(move || listener::accept_loop(&socket, &pending, &router, &stop));
            match thread {
                Ok(thread) => client.listeners.push(thread),
                // Dropping the client stops the threads already started.
                Err(e) => return Err(Error::Thread(format!("cannot start the listener: {e}"))),
            }
        }
        Ok(client)
    }

    /// Our peer id, the same for every torrent.
    pub fn our_id(&self) -> PeerId {
        self.our_id
    }

    /// The address the listener is bound to: the IPv4 one when it
    /// listens on both families. Its port is the one for trackers and
    /// peers, the same for every address.
    pub fn listen_addr(&self) -> SocketAddr {
        self.listen_addrs[0]
    }

    /// Every address the client listens on, one per socket, all on the
    /// port of [`Client::listen_addr`]: IPv4 first.
    pub fn listen_addrs(&self) -> &[SocketAddr] {
        &self.listen_addrs
    }

    /// The routing table of incoming connections.
    pub fn router(&self) -> &Arc<Router> {
        &self.router
    }

    /// The connection budget every torrent draws from.
    pub fn budget(&self) -> &Arc<ConnectionBudget> {
        &self.budget
    }

    /// The address `--bind` named, if it named one: outgoing connections
    /// to peers and UDP trackers are made from it.
    pub fn local_ip(&self) -> Option<IpAddr> {
        self.local_ip
    }

    /// The rate limits every torrent's peers draw from (none by default).
    pub fn bandwidth(&self) -> &Bandwidth {
        &self.bandwidth
    }

    /// Sets the process's rate limits, for the torrents started from now on.
    pub fn set_bandwidth(&mut self, bandwidth: Bandwidth) {
        self.bandwidth = bandwidth;
    }

    /// Starts the process's DHT node on UDP, on the listen port number
    /// (IPv4: the `bind` address when it is IPv4, else every address).
    ///
    /// # Errors
    /// The I/O error when no UDP socket can be bound or the thread
    /// cannot start.
    pub fn start_dht(&mut self, config: &DhtConfig, bind: Option<IpAddr>) -> std::io::Result<()> {
        let node = DhtNode::start(config, bind, self.listen_addr().port())?;
        self.dht = Some(node);
        Ok(())
    }

    /// The DHT node, when it runs.
    pub fn dht(&self) -> Option<&DhtHandle> {
        self.dht.as_ref().map(DhtNode::handle)
    }
}

impl Drop for Client {
    /// Stops the listeners. On Linux, shutting a listening socket down
    /// wakes a blocked `accept()` (with `EINVAL`); elsewhere, and as a
    /// fallback, connecting to it does. Connecting alone is not enough: a
    /// process out of file descriptors cannot open the socket to connect
    /// with, and its `accept()` would then wait for ever.
    fn drop(&mut self) {
        // Joins the `dht` thread, which saves its state on the way out.
        self.dht = None;
        self.stop.store(true, Ordering::SeqCst);
        self.pending.wake_all();
        for (socket, addr) in self.sockets.iter().zip(&self.listen_addrs) {
            let woken = cfg!(target_os = "linux")
                && rustix::net::shutdown(&**socket, rustix::net::Shutdown::Read).is_ok();
            if !woken {
                let ip = match addr.ip() {
                    IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
                    IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
                    ip => ip,
                };
                let wake = SocketAddr::new(ip, addr.port());
                let _ = TcpStream::connect_timeout(&wake, Duration::from_secs(1));
            }
        }
        for thread in self.listeners.drain(..) {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handshake(hash: u8) -> Handshake {
        Handshake::new(InfoHash([hash; 20]), PeerId([9; 20]))
    }

    #[test]
    fn connections_are_routed_by_the_info_hash_of_their_handshake() {
        let router = Router::default();
        let (a_tx, a_rx) = crossbeam_channel::unbounded();
        let (b_tx, b_rx) = crossbeam_channel::unbounded();
        router.register(InfoHash([1; 20]), a_tx);
        router.register(InfoHash([2; 20]), b_tx);
        for (hash, rx, other) in [(1, &a_rx, &b_rx), (2, &b_rx, &a_rx)] {
            let Route::To(tx) = router.route(&handshake(hash)) else {
                panic!("torrent {hash} not routed");
            };
            tx.send(Event::Shutdown).unwrap();
            assert!(rx.try_recv().is_ok());
            assert!(other.try_recv().is_err());
        }
        assert!(matches!(
            router.route(&handshake(3)),
            Route::Unknown(hash) if hash == InfoHash([3; 20])
        ));
        router.unregister(InfoHash([1; 20]));
        assert!(matches!(router.route(&handshake(1)), Route::Unknown(_)));
    }

    /// Where a test connects to reach `addr` (a wildcard: loopback).
    fn loopback(addr: SocketAddr) -> SocketAddr {
        match addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => (Ipv4Addr::LOCALHOST, addr.port()).into(),
            IpAddr::V6(ip) if ip.is_unspecified() => (Ipv6Addr::LOCALHOST, addr.port()).into(),
            _ => addr,
        }
    }

    #[test]
    fn dropping_the_client_stops_its_listeners_at_once() {
        for bind in [Some(IpAddr::from([127, 0, 0, 1])), None] {
            let client = Client::start(bind, 0, 10, PeerId([7; 20])).unwrap();
            let addrs: Vec<SocketAddr> = client
                .listen_addrs()
                .iter()
                .copied()
                .map(loopback)
                .collect();
            for &addr in &addrs {
                TcpStream::connect_timeout(&addr, Duration::from_secs(1))
                    .unwrap_or_else(|e| panic!("{addr} listens first: {e}"));
            }
            let (done_tx, done_rx) = crossbeam_channel::bounded(1);
            thread::spawn(move || {
                drop(client);
                let _ = done_tx.send(());
            });
            done_rx
                .recv_timeout(Duration::from_secs(5))
                .expect("the listeners stopped");
            for addr in addrs {
                assert!(
                    TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err(),
                    "nobody listens on {addr} any more"
                );
            }
        }
    }

    #[test]
    fn by_default_the_client_listens_on_both_families_on_one_port() {
        let client = Client::start(None, 0, 10, PeerId([7; 20])).unwrap();
        let addrs = client.listen_addrs();
        assert_eq!(addrs.len(), 2, "{addrs:?}");
        assert_eq!(addrs[0], client.listen_addr());
        assert_eq!(addrs[0], (Ipv4Addr::UNSPECIFIED, addrs[0].port()).into());
        assert_eq!(addrs[1], (Ipv6Addr::UNSPECIFIED, addrs[0].port()).into());
    }

    #[test]
    fn the_budget_is_shared_and_permits_come_back_on_drop() {
        let budget = ConnectionBudget::new(2);
        let a = budget.try_acquire().unwrap();
        let _b = budget.try_acquire().unwrap();
        assert!(budget.try_acquire().is_none(), "at the limit");
        drop(a);
        assert_eq!(budget.in_use(), 1);
        assert!(budget.try_acquire().is_some());
    }

    #[test]
    fn incoming_connections_leave_a_fifth_of_the_budget_to_our_dials() {
        let budget = ConnectionBudget::new(10);
        let incoming: Vec<Permit> = std::iter::from_fn(|| budget.try_acquire_incoming()).collect();
        assert_eq!(incoming.len(), 8);
        let dials: Vec<Permit> = std::iter::from_fn(|| budget.try_acquire()).collect();
        assert_eq!(dials.len(), 2, "the kept slots are for dials");
    }
}
