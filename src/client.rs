//! The process-level client, above the torrents: our peer id, the listen
//! socket, the connection budget shared by every torrent (`--max-peers`),
//! and the routing of incoming connections to the torrent whose info-hash
//! their handshake names. Later the DHT node and global rate limits.
//!
//! The `listener` thread accepts; a short-lived `incoming ADDR` thread reads
//! the remote's 68-byte handshake (bounded in time, and in number by
//! [`MAX_PENDING_HANDSHAKES`]) and hands the stream to the torrent's
//! manager ([`Event::Incoming`]); the peer thread that manager spawns
//! answers the handshake. A handshake for an unknown info-hash is dropped
//! without an answer.

use std::collections::HashMap;
use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crossbeam_channel::Sender;
use log::{debug, warn};

use crate::error::Error;
use crate::metainfo::InfoHash;
use crate::peer::wire::{self, Handshake, PeerId};
use crate::piece_manager::Event;

/// How many ports after the requested one are tried.
const PORT_TRIES: u16 = 10;
/// Handshakes being read at once; more incoming connections wait in the
/// kernel's accept queue.
pub const MAX_PENDING_HANDSHAKES: usize = 32;
/// How long an incoming connection may take to send its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The process-wide limit on peer connections, in both directions.
#[derive(Debug)]
pub struct ConnectionBudget {
    max: usize,
    used: AtomicUsize,
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
        })
    }

    /// A permit for one more connection, or `None` at the limit.
    pub fn try_acquire(self: &Arc<Self>) -> Option<Permit> {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                (used < self.max).then_some(used + 1)
            })
            .ok()
            .map(|_| Permit(Arc::clone(self)))
    }

    /// The limit.
    pub fn max(&self) -> usize {
        self.max
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
    listen_addr: SocketAddr,
    router: Arc<Router>,
    budget: Arc<ConnectionBudget>,
    listener: Option<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
}

impl Client {
    /// Binds the listen port (or the next free one) and starts accepting.
    ///
    /// # Errors
    /// [`Error::Listen`] when no port can be bound, [`Error::Thread`] when
    /// the listener cannot start.
    pub fn start(port: u16, max_peers: usize, our_id: PeerId) -> Result<Client, Error> {
        let listener = bind(port)?;
        let listen_addr = listener
            .local_addr()
            .map_err(|source| Error::Listen { port, source })?;
        log::info!("listening on port {}", listen_addr.port());
        let router = Arc::new(Router::default());
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (router, stop) = (Arc::clone(&router), Arc::clone(&stop));
            thread::Builder::new()
                .name("listener".into())
                .spawn(move || accept_loop(&listener, &router, &stop))
                .map_err(|e| Error::Thread(format!("cannot start the listener: {e}")))?
        };
        Ok(Client {
            our_id,
            listen_addr,
            router,
            budget: ConnectionBudget::new(max_peers),
            listener: Some(thread),
            stop,
        })
    }

    /// Our peer id, the same for every torrent.
    pub fn our_id(&self) -> PeerId {
        self.our_id
    }

    /// The address the listener is bound to.
    pub fn listen_addr(&self) -> SocketAddr {
        self.listen_addr
    }

    /// The routing table of incoming connections.
    pub fn router(&self) -> &Arc<Router> {
        &self.router
    }

    /// The connection budget every torrent draws from.
    pub fn budget(&self) -> &Arc<ConnectionBudget> {
        &self.budget
    }
}

impl Drop for Client {
    /// Stops the listener: a blocked `accept()` is woken by connecting to it.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let wake = SocketAddr::from(([127, 0, 0, 1], self.listen_addr.port()));
        let _ = TcpStream::connect_timeout(&wake, Duration::from_secs(1));
        if let Some(thread) = self.listener.take() {
            let _ = thread.join();
        }
    }
}

fn bind(port: u16) -> Result<TcpListener, Error> {
    if port == 0 {
        return TcpListener::bind(("0.0.0.0", 0)).map_err(|source| Error::Listen { port, source });
    }
    let mut last = None;
    for candidate in port..=port.saturating_add(PORT_TRIES) {
        match TcpListener::bind(("0.0.0.0", candidate)) {
            Ok(listener) => return Ok(listener),
            Err(e) => {
                debug!("port {candidate} unavailable: {e}");
                last = Some(e);
            }
        }
    }
    Err(Error::Listen {
        port,
        source: last.expect("at least one port was tried"),
    })
}

/// The `listener` thread: each accepted connection gets a thread that reads
/// its handshake and routes it.
fn accept_loop(listener: &TcpListener, router: &Arc<Router>, stop: &AtomicBool) {
    let pending = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let (stream, addr) = match stream.and_then(|s| s.peer_addr().map(|addr| (s, addr))) {
            Ok(accepted) => accepted,
            Err(e) => {
                warn!("accepting a connection failed: {e}");
                continue;
            }
        };
        if pending.fetch_add(1, Ordering::AcqRel) >= MAX_PENDING_HANDSHAKES {
            pending.fetch_sub(1, Ordering::AcqRel);
            debug!("{addr}: too many handshakes in progress, closing");
            continue;
        }
        let (router, pending_done) = (Arc::clone(router), Arc::clone(&pending));
        // Detached: it ends within HANDSHAKE_TIMEOUT whatever the remote does.
        let spawned = thread::Builder::new()
            .name(format!("incoming {addr}"))
            .stack_size(64 * 1024)
            .spawn(move || {
                route_incoming(stream, addr, &router);
                pending_done.fetch_sub(1, Ordering::AcqRel);
            });
        if let Err(e) = spawned {
            pending.fetch_sub(1, Ordering::AcqRel);
            warn!("{addr}: cannot start a thread for the connection: {e}");
        }
    }
}

/// Reads the remote's handshake and hands the connection to its torrent.
fn route_incoming(mut stream: TcpStream, addr: SocketAddr, router: &Router) {
    let mut bytes = [0u8; wire::HANDSHAKE_LEN];
    let read = stream
        .set_read_timeout(Some(HANDSHAKE_TIMEOUT))
        .and_then(|()| stream.set_nodelay(true))
        .and_then(|()| stream.read_exact(&mut bytes));
    if let Err(e) = read {
        debug!("{addr}: no handshake: {e}");
        return;
    }
    let handshake = match Handshake::decode(&bytes) {
        Ok(handshake) => handshake,
        Err(e) => {
            debug!("{addr}: {e}, closing");
            return;
        }
    };
    match router.route(&handshake) {
        Route::To(events_tx) => {
            debug!("{addr}: incoming connection");
            // Bounded: a torrent busy checking its data does not read its
            // events, and this thread must end.
            let event = Event::Incoming(Box::new(stream), handshake, addr);
            if events_tx.send_timeout(event, HANDSHAKE_TIMEOUT).is_err() {
                debug!("{addr}: its torrent is not taking connections, closing");
            }
        }
        Route::Unknown(info_hash) => {
            debug!("{addr}: handshake for unknown torrent {info_hash}, closing");
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
}
