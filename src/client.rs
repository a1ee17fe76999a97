//! The process-level client, above the torrents: our peer id, the listen
//! socket, the connection budget shared by every torrent (`--max-peers`),
//! and the routing of incoming connections to the torrent whose info-hash
//! their handshake names. Later the DHT node and global rate limits.
//!
//! The `listener` thread accepts; a short-lived `incoming ADDR` thread reads
//! the remote's 68-byte handshake and hands the stream to the torrent's
//! manager ([`Event::Incoming`]); the peer thread that manager spawns
//! answers the handshake. A handshake for an unknown info-hash is dropped
//! without an answer.
//!
//! Nothing a remote does can hold the listener: the whole handshake has one
//! deadline ([`HANDSHAKE_TIMEOUT`], however slowly the bytes drip), at most
//! [`MAX_PENDING_HANDSHAKES`] are read at once and at most
//! [`MAX_PENDING_PER_IP`] from one IP (when all places are taken, one
//! pending for over a second gives way to a newcomer), and when `accept()` fails (out of
//! file descriptors) the listener backs off, up to [`MAX_ACCEPT_BACKOFF`],
//! logging once per streak of failures, instead of spinning.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use log::{debug, warn};

use crate::error::Error;
use crate::metainfo::InfoHash;
use crate::peer::open::read_exact_before;
use crate::peer::wire::{self, Handshake, PeerId};
use crate::piece_manager::Event;

/// How many ports after the requested one are tried.
const PORT_TRIES: u16 = 10;
/// Handshakes being read at once; more incoming connections wait in the
/// kernel's accept queue.
pub const MAX_PENDING_HANDSHAKES: usize = 32;
/// Handshakes being read at once from one IP.
pub const MAX_PENDING_PER_IP: usize = 4;
/// How long an incoming connection may take to send its whole handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The first wait after `accept()` fails; it doubles while failures last.
const FIRST_ACCEPT_BACKOFF: Duration = Duration::from_millis(10);
/// The longest wait between two `accept()`s that fail.
pub const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// The process-wide limit on peer connections, in both directions. A fifth
/// of it is kept for our own dials: incoming connections alone never fill
/// it, so peers we choose (from trackers, `--peer`) can always be dialled.
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
    listen_addr: SocketAddr,
    router: Arc<Router>,
    budget: Arc<ConnectionBudget>,
    listener: Option<JoinHandle<()>>,
    /// The listening socket, shared with the `listener` thread so that
    /// dropping the client can wake its `accept()`.
    socket: Arc<TcpListener>,
    stop: Arc<AtomicBool>,
}

impl Client {
    /// Binds the listen port (or the next free one) on address `bind`
    /// (`0.0.0.0`: every IPv4 address) and starts accepting.
    ///
    /// # Errors
    /// [`Error::Listen`] when no port can be bound, [`Error::Thread`] when
    /// the listener cannot start.
    pub fn start(
        bind: IpAddr,
        port: u16,
        max_peers: usize,
        our_id: PeerId,
    ) -> Result<Client, Error> {
        let listener = bind_port(bind, port)?;
        let listen_addr = listener
            .local_addr()
            .map_err(|source| Error::Listen { port, source })?;
        log::info!("listening on {listen_addr}");
        let router = Arc::new(Router::default());
        let stop = Arc::new(AtomicBool::new(false));
        let listener = Arc::new(listener);
        let thread = {
            let (router, stop) = (Arc::clone(&router), Arc::clone(&stop));
            let listener = Arc::clone(&listener);
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
            socket: listener,
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
    /// Stops the listener. On Linux, shutting the listening socket down
    /// wakes a blocked `accept()` (with `EINVAL`); elsewhere, and as a
    /// fallback, connecting to it does. Connecting alone is not enough: a
    /// process out of file descriptors cannot open the socket to connect
    /// with, and its `accept()` would then wait for ever.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let woken = cfg!(target_os = "linux")
            && rustix::net::shutdown(&*self.socket, rustix::net::Shutdown::Read).is_ok();
        if !woken {
            let ip = match self.listen_addr.ip() {
                IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
                ip => ip,
            };
            let wake = SocketAddr::new(ip, self.listen_addr.port());
            let _ = TcpStream::connect_timeout(&wake, Duration::from_secs(1));
        }
        if let Some(thread) = self.listener.take() {
            let _ = thread.join();
        }
    }
}

fn bind_port(ip: IpAddr, port: u16) -> Result<TcpListener, Error> {
    if port == 0 {
        return TcpListener::bind((ip, 0)).map_err(|source| Error::Listen { port, source });
    }
    let mut last = None;
    for candidate in port..=port.saturating_add(PORT_TRIES) {
        match TcpListener::bind((ip, candidate)) {
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
    let pending = Arc::new(Pending::default());
    let mut failing = Failing::default();
    loop {
        let accepted = listener.accept();
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let (stream, addr) = match accepted {
            Ok(accepted) => {
                failing.ended();
                accepted
            }
            // The remote gave up before we took it: nothing is wrong here.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionAborted => continue,
            Err(e) => {
                // Out of file descriptors (or memory): retrying at once
                // would fail again, at full speed.
                thread::sleep(failing.failed(&e));
                continue;
            }
        };
        let Some(slot) = pending.take(addr.ip(), stream.try_clone().ok(), Instant::now()) else {
            debug!("{addr}: too many handshakes in progress from it or in all, closing");
            continue;
        };
        let router = Arc::clone(router);
        // Detached: it ends within HANDSHAKE_TIMEOUT whatever the remote does.
        let spawned = thread::Builder::new()
            .name(format!("incoming {addr}"))
            .stack_size(64 * 1024)
            .spawn(move || {
                let _slot = slot;
                route_incoming(stream, addr, &router);
            });
        if let Err(e) = spawned {
            warn!("{addr}: cannot start a thread for the connection: {e}");
        }
    }
}

/// A streak of failed `accept()`s: its length and the next wait.
#[derive(Debug, Default)]
struct Failing {
    count: u64,
    wait: Duration,
}

impl Failing {
    /// One more failure: logs the first of a streak, returns how long to wait.
    fn failed(&mut self, e: &std::io::Error) -> Duration {
        if self.count == 0 {
            warn!("accepting connections failed: {e}; retrying less often until it works again");
            self.wait = FIRST_ACCEPT_BACKOFF;
        } else {
            self.wait = (self.wait * 2).min(MAX_ACCEPT_BACKOFF);
        }
        self.count += 1;
        self.wait
    }

    /// An `accept()` worked: ends the streak, if any.
    fn ended(&mut self) {
        if self.count > 0 {
            log::info!("accepting connections again after {} failures", self.count);
            self.count = 0;
        }
    }
}

/// Handshakes being read: in all and per IP. When every place is taken, a
/// handshake pending for [`PENDING_EVICT_AFTER`] gives its place up to a
/// newcomer (its connection is shut down): an honest remote sends its
/// handshake within a round trip, so only slow or silent ones lose it, and
/// drippers from many addresses cannot keep newcomers out for the whole
/// handshake deadline.
#[derive(Debug, Default)]
struct Pending {
    state: Mutex<PendingState>,
}

#[derive(Debug, Default)]
struct PendingState {
    per_ip: HashMap<IpAddr, usize>,
    /// Each pending handshake by id: its IP, since when, and a handle on
    /// its socket to shut it down with.
    entries: HashMap<u64, (IpAddr, Instant, Option<TcpStream>)>,
    next_id: u64,
}

/// A handshake pending this long may lose its place to a newcomer.
const PENDING_EVICT_AFTER: Duration = Duration::from_secs(1);

/// One handshake's place in [`Pending`], given back on drop.
struct PendingSlot {
    pending: Arc<Pending>,
    id: u64,
}

impl PendingState {
    fn forget(&mut self, id: u64) -> Option<(IpAddr, Instant, Option<TcpStream>)> {
        let entry = self.entries.remove(&id)?;
        if let Some(count) = self.per_ip.get_mut(&entry.0) {
            *count -= 1;
            if *count == 0 {
                self.per_ip.remove(&entry.0);
            }
        }
        Some(entry)
    }
}

impl Pending {
    fn lock(&self) -> std::sync::MutexGuard<'_, PendingState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A place for a handshake from `ip` at `now`, unless that IP has too
    /// many, or every place is taken by handshakes younger than
    /// [`PENDING_EVICT_AFTER`]. `closer` shuts the connection down if it
    /// loses its place.
    fn take(
        self: &Arc<Self>,
        ip: IpAddr,
        closer: Option<TcpStream>,
        now: Instant,
    ) -> Option<PendingSlot> {
        let mut state = self.lock();
        if state.per_ip.get(&ip).copied().unwrap_or(0) >= MAX_PENDING_PER_IP {
            return None;
        }
        if state.entries.len() >= MAX_PENDING_HANDSHAKES {
            let (&oldest, &(_, since, _)) =
                state.entries.iter().min_by_key(|(_, entry)| entry.1)?;
            if now.saturating_duration_since(since) < PENDING_EVICT_AFTER {
                return None;
            }
            if let Some((evicted, _, Some(stream))) = state.forget(oldest) {
                debug!("{evicted}: handshake too slow, giving its place to {ip}");
                let _ = stream.shutdown(std::net::Shutdown::Both);
            }
        }
        let id = state.next_id;
        state.next_id += 1;
        *state.per_ip.entry(ip).or_default() += 1;
        state.entries.insert(id, (ip, now, closer));
        Some(PendingSlot {
            pending: Arc::clone(self),
            id,
        })
    }
}

impl Drop for PendingSlot {
    fn drop(&mut self) {
        self.pending.lock().forget(self.id);
    }
}

/// Reads the remote's handshake and hands the connection to its torrent.
fn route_incoming(mut stream: TcpStream, addr: SocketAddr, router: &Router) {
    let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
    let mut bytes = [0u8; wire::HANDSHAKE_LEN];
    let read = stream
        .set_nodelay(true)
        .and_then(|()| read_exact_before(&mut stream, &mut bytes, deadline));
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
    fn dropping_the_client_stops_its_listener_at_once() {
        let client = Client::start(IpAddr::from([127, 0, 0, 1]), 0, 10, PeerId([7; 20])).unwrap();
        let addr = client.listen_addr();
        let (done_tx, done_rx) = crossbeam_channel::bounded(1);
        thread::spawn(move || {
            drop(client);
            let _ = done_tx.send(());
        });
        done_rx
            .recv_timeout(Duration::from_secs(5))
            .expect("the listener stopped");
        assert!(
            TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err(),
            "nobody listens on {addr} any more"
        );
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

    #[test]
    fn pending_handshakes_are_capped_per_ip_and_in_all() {
        let pending = Arc::new(Pending::default());
        let now = Instant::now();
        let ip = |last: u8| IpAddr::from([127, 0, 0, last]);
        let one: Vec<PendingSlot> = std::iter::from_fn(|| pending.take(ip(5), None, now)).collect();
        assert_eq!(one.len(), MAX_PENDING_PER_IP);
        assert!(
            pending.take(ip(1), None, now).is_some(),
            "another IP still gets in"
        );
        drop(one);
        let mut all = Vec::new();
        for last in 10..=255 {
            all.extend(pending.take(ip(last), None, now));
        }
        assert_eq!(all.len(), MAX_PENDING_HANDSHAKES);
        drop(all);
        let state = pending.lock();
        assert!(
            state.entries.is_empty() && state.per_ip.is_empty(),
            "every slot came back"
        );
    }

    #[test]
    fn a_handshake_pending_for_a_second_gives_its_place_to_a_newcomer() {
        let pending = Arc::new(Pending::default());
        let start = Instant::now();
        let ip = |n: usize| IpAddr::from([127, 0, 1, n as u8]);
        // The oldest place is the one taken first.
        let held: Vec<PendingSlot> = (0..MAX_PENDING_HANDSHAKES)
            .map(|n| {
                let at = start + Duration::from_millis(n as u64);
                pending.take(ip(n / 4), None, at).expect("a free place")
            })
            .collect();
        let newcomer = ip(200);
        let soon = start + Duration::from_millis(500);
        assert!(
            pending.take(newcomer, None, soon).is_none(),
            "young handshakes keep their places"
        );
        let later = start + PENDING_EVICT_AFTER + Duration::from_millis(50);
        let slot = pending
            .take(newcomer, None, later)
            .expect("the oldest gave way");
        {
            let state = pending.lock();
            assert_eq!(state.entries.len(), MAX_PENDING_HANDSHAKES);
            assert_eq!(state.per_ip.get(&ip(0)), Some(&3), "the first IP lost one");
        }
        // The evicted one's own drop gives nothing back twice.
        drop(held);
        drop(slot);
        assert!(pending.lock().entries.is_empty());
        assert!(pending.lock().per_ip.is_empty());
    }

    #[test]
    fn failing_accepts_back_off_to_a_second_and_log_once_per_streak() {
        let mut failing = Failing::default();
        let e = std::io::Error::from_raw_os_error(24);
        let waits: Vec<Duration> = (0..12).map(|_| failing.failed(&e)).collect();
        assert_eq!(waits[0], FIRST_ACCEPT_BACKOFF);
        assert!(waits.windows(2).all(|w| w[1] >= w[0]));
        assert_eq!(*waits.last().unwrap(), MAX_ACCEPT_BACKOFF);
        failing.ended();
        assert_eq!(failing.failed(&e), FIRST_ACCEPT_BACKOFF, "a new streak");
    }
}
