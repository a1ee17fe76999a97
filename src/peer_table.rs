//! One torrent's connections: which peer threads exist, whom to dial next,
//! who is banned, and the slots of the process-wide connection budget they
//! hold. Owned by the torrent's manager thread, in every state (fetching
//! metadata, downloading, seeding), so nothing here knows about pieces.
//!
//! A connection takes a [`Permit`] from the client's [`ConnectionBudget`]
//! before its thread is spawned and gives it back when its `Disconnected`
//! event arrives, so `--max-peers` holds across all torrents of the process.
//! A dial also takes a place among the process's connects in flight
//! ([`crate::client::pacing`]), which its thread gives back as soon as the
//! TCP connect returns.
//! Incoming connections may not take the slots kept for our own dials, and
//! at most [`MAX_PER_IP`] come from one IP. When the budget is spent and a
//! newcomer or a dial needs a slot, the least useful incoming connection
//! goes: one that has moved no payload either way for [`EVICT_IDLE_AFTER`]
//! (the newcomer waits for its next try). Ended threads are joined as soon
//! as they are known to have ended, so churn leaves no thread behind.
//!
//! Peer exchange (BEP 11) runs here too, since it is about connections:
//! each connection whose remote offered `ut_pex` is told, about once a
//! minute, which peers we are connected to ([`PeerTable::pex_tick`], policy
//! in [`pex`]); what remotes tell us goes to the [`PeerList`] tagged
//! [`PeerSource::Pex`] ([`PeerTable::on_pex`]). Only peers whose listen
//! address we know are passed on: the ones we dialled, and incoming ones
//! whose extended handshake gave their port. With peer exchange off
//! (`--no-pex`, a private torrent) neither happens.
//!
//! Bans are by IP ([`PeerList::ban`]). A peer id is chosen by the remote, so
//! it bans nobody, and a second connection with an id already connected is
//! refused only when it comes from the same IP: whoever copies an honest
//! peer's id cannot keep it out.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use log::{debug, warn};

pub mod pex;

use crate::client::pacing::DialShare;
use crate::client::{ConnectionBudget, Permit};
use crate::peer::extensions::RemoteExtensions;
use crate::peer::pex::{PexMessage, PexPeer, flags};
use crate::peer::transport::Stream;
use crate::peer::wire::{Handshake, PeerId};
use crate::peer::{
    self, CommandSender, Disconnect, Origin, PeerCommand, PeerContext, PeerCounters, PeerKey,
};
use crate::peer_list::{PeerList, PeerSource, host_of};
use crate::piece_manager::Event;
use pex::{PexIn, PexOut};

/// How long shutdown waits for peer threads to end.
const JOIN_WAIT: Duration = Duration::from_secs(3);
/// Most incoming connections of one torrent from one IP.
pub const MAX_PER_IP: usize = 8;
/// An incoming connection that has moved no payload for this long may be
/// closed to make room, when the budget is spent.
pub const EVICT_IDLE_AFTER: Duration = Duration::from_secs(15);

/// One connection's thread and identity.
pub struct Connection {
    /// The remote's address.
    pub addr: SocketAddr,
    /// We dialled it (its address is in the peer list), rather than it us.
    pub outgoing: bool,
    /// Commands to its thread.
    pub cmd_tx: CommandSender,
    thread: Option<JoinHandle<()>>,
    /// Set once the handshake is accepted.
    pub peer_id: Option<PeerId>,
    /// Its byte counters.
    pub counters: Arc<PeerCounters>,
    opened: Instant,
    /// Told to close to make room.
    evicted: bool,
    /// Where we heard of it.
    pub source: PeerSource,
    /// Where it accepts connections: its address when we dialled it, else
    /// its IP with the port its extended handshake gave, if any.
    pub listen_addr: Option<SocketAddr>,
    /// It has every piece (the manager says so).
    pub seed: bool,
    /// What it was told by peer exchange, once it offered `ut_pex`.
    pex_out: Option<PexOut>,
    /// What it told us.
    pex_in: PexIn,
    _permit: Permit,
}

/// The connections of one torrent.
pub struct PeerTable {
    ctx: Arc<PeerContext>,
    budget: Arc<ConnectionBudget>,
    /// This torrent's share of the process's connects in flight.
    dials: DialShare,
    conns: HashMap<PeerKey, Connection>,
    next_key: PeerKey,
    /// Addresses to dial, their backoff, and the banned ones.
    pub peer_list: PeerList,
    finished: Vec<JoinHandle<()>>,
}

impl PeerTable {
    /// An empty table whose threads share `ctx`.
    pub fn new(ctx: Arc<PeerContext>, budget: Arc<ConnectionBudget>) -> PeerTable {
        PeerTable {
            ctx,
            dials: budget.dialling().torrent(),
            budget,
            conns: HashMap::new(),
            next_key: 0,
            peer_list: PeerList::new(),
            finished: Vec::new(),
        }
    }

    /// The threads' shared context.
    pub fn ctx(&self) -> &Arc<PeerContext> {
        &self.ctx
    }

    /// A connection, if it still exists.
    pub fn get(&self, key: PeerKey) -> Option<&Connection> {
        self.conns.get(&key)
    }

    /// Every connection.
    pub fn iter(&self) -> impl Iterator<Item = (PeerKey, &Connection)> {
        self.conns.iter().map(|(&k, c)| (k, c))
    }

    /// Connections past the handshake.
    pub fn connected_count(&self) -> usize {
        self.conns.values().filter(|c| c.peer_id.is_some()).count()
    }

    /// Connections of any state.
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    /// Whether there is no connection.
    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// Sends a command; a closed channel means the thread is ending, and its
    /// `Disconnected` event follows.
    pub fn send(&self, key: PeerKey, command: PeerCommand) {
        if let Some(conn) = self.conns.get(&key) {
            let _ = conn.cmd_tx.send(command);
        }
    }

    /// Learns addresses to dial, heard of from `source`.
    pub fn add_addrs(&mut self, addrs: Vec<SocketAddr>, source: PeerSource, now: Instant) {
        for addr in addrs {
            self.peer_list.add(addr, source, now);
        }
    }

    /// The remote's extended handshake: its listen port, for an incoming
    /// peer, and whether it takes `ut_pex` messages.
    pub fn on_extensions(&mut self, key: PeerKey, remote: &RemoteExtensions, now: Instant) {
        let Some(conn) = self.conns.get_mut(&key) else {
            return;
        };
        if !conn.outgoing
            && let Some(port) = remote.listen_port.filter(|&p| p != 0)
        {
            conn.listen_addr = Some(SocketAddr::new(conn.addr.ip(), port));
        }
        match remote.ut_pex {
            Some(_) if conn.pex_out.is_none() => conn.pex_out = Some(PexOut::new(now)),
            Some(_) => {}
            None => conn.pex_out = None,
        }
    }

    /// Marks whether a peer has every piece (for the seed flag of PEX).
    pub fn set_seed(&mut self, key: PeerKey, seed: bool) {
        if let Some(conn) = self.conns.get_mut(&key) {
            conn.seed = seed;
        }
    }

    /// A `ut_pex` message from a peer: its addresses join the peer list,
    /// within the peer's bound ([`pex::MAX_LEARNED_PER_PEER`]). Ignored
    /// while peer exchange is off.
    pub fn on_pex(&mut self, key: PeerKey, message: &PexMessage, now: Instant) {
        let our_port = self.ctx.listen_port;
        let enabled = self.ctx.pex_enabled();
        let Some(conn) = self.conns.get_mut(&key) else {
            return;
        };
        if !enabled {
            debug!("{}: peer exchange is off, ignoring its ut_pex", conn.addr);
            return;
        }
        let taken = conn.pex_in.take(message, our_port);
        let from = conn.addr;
        if taken.over_bound > 0 {
            debug!(
                "{from}: ignoring {} PEX addresses past its bound of {}",
                taken.over_bound,
                pex::MAX_LEARNED_PER_PEER
            );
        }
        let offered = taken.addrs.len();
        let new = taken
            .addrs
            .into_iter()
            .filter(|&addr| self.peer_list.add(addr, PeerSource::Pex, now))
            .count();
        debug!(
            "{from}: PEX names {} peers and drops {}; {offered} kept, {new} new",
            message.added.len(),
            message.dropped.len()
        );
    }

    /// Sends each peer that takes `ut_pex` the message due to it now, if
    /// any: the connected peers with a known listen address it has not been
    /// told of, and those gone that it was told of.
    pub fn pex_tick(&mut self, now: Instant) {
        let due = |c: &Connection| c.pex_out.as_ref().is_some_and(|o| o.is_due(now));
        if !self.ctx.pex_enabled() || !self.conns.values().any(due) {
            return;
        }
        let live: Vec<PexPeer> = self
            .conns
            .values()
            .filter(|c| c.peer_id.is_some())
            .filter_map(|c| {
                let addr = c.listen_addr?;
                let mut bits = 0;
                if c.seed {
                    bits |= flags::SEED;
                }
                if c.outgoing {
                    bits |= flags::REACHABLE;
                }
                Some(PexPeer { addr, flags: bits })
            })
            .collect();
        for conn in self.conns.values_mut() {
            let Some(out) = conn.pex_out.as_mut().filter(|o| o.is_due(now)) else {
                continue;
            };
            if conn.peer_id.is_none() {
                continue;
            }
            let own: Vec<SocketAddr> = std::iter::once(conn.addr).chain(conn.listen_addr).collect();
            if let Some(message) = out.next(now, &live, &own) {
                debug!(
                    "{}: PEX: {} added, {} dropped",
                    conn.addr,
                    message.added.len(),
                    message.dropped.len()
                );
                let _ = conn.cmd_tx.send(PeerCommand::Pex(message));
            }
        }
    }

    /// Dials known addresses while the budget has room, at most half the
    /// budget still connecting for this torrent, within the process's limit
    /// and pace of connects in flight and this torrent's fair share of them
    /// ([`crate::client::pacing`]).
    ///
    /// When the budget is spent and an address is due, an idle incoming
    /// connection is closed to make room for it.
    pub fn dial_more(&mut self, now: Instant) {
        // Dials still connecting hold permits too: a torrent dialling many
        // dead addresses would otherwise hold them all, and refuse every
        // incoming connection, the peer it is looking for among them.
        let most_half_open = (self.budget.max() / 2).max(1);
        let mut half_open = self
            .conns
            .values()
            .filter(|c| c.outgoing && c.peer_id.is_none())
            .count();
        while half_open < most_half_open && self.peer_list.is_due(now) {
            let Some(permit) = self.budget.try_acquire() else {
                self.evict_idle(now);
                break;
            };
            // The process's connects in flight, our fair share of them, and
            // their pace (pacing): when they allow none, the next tick or
            // ended dial tries again.
            let Some(dialling) = self.dials.try_start(now) else {
                break;
            };
            let Some(addr) = self.peer_list.next_to_dial(now) else {
                dialling.unused();
                break;
            };
            if self.conns.values().any(|c| c.addr == addr) {
                // It dialled us from its listen port: try again later,
                // rather than leave the address marked as being dialled.
                self.peer_list.disconnected(addr, now);
                dialling.unused();
                continue;
            }
            self.spawn(addr, Origin::Outgoing(addr, dialling), permit);
            half_open += 1;
        }
    }

    /// Takes a connection the client routed here, unless its IP is banned,
    /// already has [`MAX_PER_IP`] connections, or the budget has no slot
    /// left for incoming connections. Peers on one host differ only by
    /// port, so a few connections from one IP are allowed.
    pub fn accept(&mut self, stream: Stream, handshake: Handshake, addr: SocketAddr) {
        if self.peer_list.is_banned(addr) {
            debug!("{addr}: banned, refusing the connection");
            return;
        }
        if self.count_from(addr.ip()) >= MAX_PER_IP {
            debug!("{addr}: {MAX_PER_IP} connections from its IP already, refusing");
            return;
        }
        match self.budget.try_acquire_incoming() {
            Some(permit) => self.spawn(addr, Origin::Incoming(stream, handshake), permit),
            None => {
                debug!(
                    "{addr}: at the limit of {} incoming peers, refusing the connection",
                    self.budget.max_incoming()
                );
                self.evict_idle(Instant::now());
            }
        }
    }

    /// Closes the oldest incoming connection that has moved no payload for
    /// [`EVICT_IDLE_AFTER`], if any and none is closing for this already;
    /// its slot comes back when it has ended.
    fn evict_idle(&mut self, now: Instant) {
        // One at a time: the slot of the one told to close is on its way.
        if self.conns.values().any(|c| c.evicted) {
            return;
        }
        let idle = self
            .conns
            .values_mut()
            .filter(|c| {
                !c.outgoing
                    && !c.evicted
                    && now.saturating_duration_since(c.opened) >= EVICT_IDLE_AFTER
                    && c.counters.downloaded.load(Ordering::Relaxed) == 0
                    && c.counters.uploaded.load(Ordering::Relaxed) == 0
            })
            .min_by_key(|c| c.opened);
        if let Some(conn) = idle {
            debug!("{}: idle, closing it to make room", conn.addr);
            conn.evicted = true;
            let _ = conn.cmd_tx.send(PeerCommand::Shutdown);
        }
    }

    fn count_from(&self, ip: IpAddr) -> usize {
        let host = host_of(ip);
        self.conns
            .values()
            .filter(|c| host_of(c.addr.ip()) == host)
            .count()
    }

    fn spawn(&mut self, addr: SocketAddr, origin: Origin, permit: Permit) {
        self.reap();
        let key = self.next_key;
        self.next_key += 1;
        let outgoing = matches!(origin, Origin::Outgoing(..));
        let source = if outgoing {
            let source = self
                .peer_list
                .source(addr)
                .unwrap_or(PeerSource::CommandLine);
            debug!("{addr}: dialling (from {source})");
            source
        } else {
            PeerSource::Incoming
        };
        let (cmd_tx, cmd_rx, waker) = peer::wake::command_channel();
        let counters = Arc::new(PeerCounters::default());
        let ctx = Arc::clone(&self.ctx);
        match peer::spawn(
            key,
            addr,
            origin,
            ctx,
            Arc::clone(&counters),
            (cmd_rx, waker),
        ) {
            Ok(thread) => {
                let conn = Connection {
                    addr,
                    outgoing,
                    cmd_tx,
                    thread: Some(thread),
                    peer_id: None,
                    counters,
                    opened: Instant::now(),
                    evicted: false,
                    source,
                    listen_addr: outgoing.then_some(addr),
                    seed: false,
                    pex_out: None,
                    pex_in: PexIn::default(),
                    _permit: permit,
                };
                self.conns.insert(key, conn);
            }
            Err(e) => {
                warn!("{addr}: cannot start a peer thread: {e}");
                if outgoing {
                    self.peer_list.failed(addr, Instant::now());
                }
            }
        }
    }

    /// A handshake arrived: accepts the peer (true) unless the same IP is
    /// already connected with the same id, in which case the connection is
    /// told to close. The same id from another IP is kept: ids are public.
    pub fn on_connected(&mut self, key: PeerKey, peer_id: PeerId) -> bool {
        let Some(ip) = self.conns.get(&key).map(|c| c.addr.ip()) else {
            return false;
        };
        let duplicate = self
            .conns
            .values()
            .any(|c| c.peer_id == Some(peer_id) && c.addr.ip() == ip);
        if duplicate {
            debug!(
                "peer id {peer_id:?} is already connected from {ip}, closing the second connection"
            );
        } else if let Some(conn) = self.conns.get_mut(&key) {
            conn.peer_id = Some(peer_id);
            self.ctx.stats.peers.fetch_add(1, Ordering::Relaxed);
            self.ctx.stats.add_seen(ip, peer_id.0);
            debug!("{}: connected (from {})", conn.addr, conn.source);
            return true;
        }
        self.send(key, PeerCommand::Shutdown);
        false
    }

    /// A connection ended: forgets it, bans the remote if it broke the
    /// protocol, or schedules a redial. Returns what was known of it.
    pub fn on_disconnected(&mut self, key: PeerKey, reason: &Disconnect) -> Option<Connection> {
        let mut conn = self.conns.remove(&key)?;
        let now = Instant::now();
        if conn.peer_id.is_some() {
            self.ctx.stats.peers.fetch_sub(1, Ordering::Relaxed);
            debug!("{}: disconnected: {reason}", conn.addr);
        } else {
            debug!("{}: gone before the handshake ({reason})", conn.addr);
        }
        if reason.is_violation() {
            self.ban(conn.addr, &reason.to_string());
        } else if conn.outgoing {
            if conn.peer_id.is_some() {
                self.peer_list.disconnected(conn.addr, now);
            } else {
                self.peer_list.failed(conn.addr, now);
            }
        }
        // Its thread sends this event last, so it is ending now.
        self.finished.extend(conn.thread.take());
        self.reap();
        Some(conn)
    }

    /// Joins the threads that have ended.
    fn reap(&mut self) {
        let (done, running): (Vec<_>, Vec<_>) =
            self.finished.drain(..).partition(|t| t.is_finished());
        self.finished = running;
        for thread in done {
            let _ = thread.join();
        }
    }

    /// Bans `addr`'s IP for good (every port) and closes its connections.
    pub fn ban(&mut self, addr: SocketAddr, reason: &str) {
        if self.peer_list.is_banned(addr) {
            return;
        }
        warn!("{addr}: banned (its IP {}): {reason}", addr.ip());
        self.peer_list.ban(addr.ip());
        self.ctx.stats.add_banned(addr);
        for conn in self.conns.values() {
            if host_of(conn.addr.ip()) == host_of(addr.ip()) {
                let _ = conn.cmd_tx.send(PeerCommand::Shutdown);
            }
        }
    }

    /// Tells every peer to stop and waits a little for their threads,
    /// draining `events_rx` so none stays blocked on a full channel.
    pub fn shutdown(&mut self, events_rx: &Receiver<Event>) {
        let dialling = self.budget.dialling();
        debug!(
            "at most {} of our connects were in flight at once (the limit is {})",
            dialling.most_in_flight(),
            dialling.max()
        );
        for conn in self.conns.values() {
            let _ = conn.cmd_tx.send(PeerCommand::Shutdown);
        }
        let mut threads: Vec<JoinHandle<()>> = self.finished.drain(..).collect();
        threads.extend(self.conns.values_mut().filter_map(|c| c.thread.take()));
        let deadline = Instant::now() + JOIN_WAIT;
        while Instant::now() < deadline && threads.iter().any(|t| !t.is_finished()) {
            let _ = events_rx.recv_timeout(Duration::from_millis(10));
        }
        for thread in threads {
            if thread.is_finished() {
                let _ = thread.join();
            } else {
                debug!("a peer thread is still connecting; leaving it to end on its own");
            }
        }
        self.conns.clear();
    }
}
