//! The DHT node's logic without its socket: what it does with each datagram
//! that arrives and at each tick of its clock, written as datagrams to send
//! ([`Engine::take_outbox`]).
//!
//! Owns: the routing table, our queries in flight (matched to replies by
//! transaction id and source address, at most [`MAX_PENDING`]), the running
//! lookups (bootstrap, bucket refresh, and a `get_peers` per registered
//! torrent, followed by `announce_peer` to the closest nodes that gave a
//! token), the timers (refresh, pings of questionable nodes, expiry of
//! stored peers) and the torrents that asked for peers. Answering other
//! nodes' queries is the `server` part of the same type.
//!
//! Out of scope: sockets, threads and the state file ([`super::node`] runs
//! this on its `dht` thread); the pure parts it drives ([`super::routing`],
//! [`super::lookup`], [`super::tokens`], [`super::store`], [`super::krpc`]).
//! Time is passed in, so the whole node is tested here without a network.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::id::{NodeId, NodeInfo};
use super::krpc::{self, Body, Message, Query, Response, TransactionId};
use super::lookup::{Lookup, QUERY_TIMEOUT};
use super::ratelimit::RateLimiter;
use super::routing::{Insert, K, RoutingTable};
use super::store::PeerStore;
use super::tokens::TokenSecrets;

/// Our queries in flight at most; a query past this is not sent (a lookup
/// counts it as failed).
pub const MAX_PENDING: usize = 256;

/// A torrent's `get_peers` lookup and announce are repeated this often (BEP 5
/// peers expire after 30 minutes).
pub const ANNOUNCE_EVERY: Duration = Duration::from_secs(30 * 60);

/// First retry of a torrent's lookup that found nobody to announce to, or
/// (downloading) no peer; doubled each time up to [`MAX_RETRY`].
pub const FIRST_RETRY: Duration = Duration::from_secs(5);

/// Longest wait between a torrent's lookups while they find nothing.
pub const MAX_RETRY: Duration = Duration::from_secs(5 * 60);

/// How often the timers (refresh, pings, expiry, bootstrap retry) run.
pub const MAINTENANCE_EVERY: Duration = Duration::from_secs(10);

/// Questionable nodes pinged per maintenance round.
const PINGS_PER_ROUND: usize = 8;

/// Peers remembered per torrent as already handed over.
const MAX_SENT_PEERS: usize = 2_000;

/// Called with the peers a torrent's lookup finds (new ones only).
pub type PeersCallback = Box<dyn FnMut(Vec<SocketAddr>) + Send>;

/// Why we sent a query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Purpose {
    /// A ping: is this node there?
    Ping,
    /// A step of lookup `id`.
    Lookup(u64),
    /// An `announce_peer` of ours.
    Announce,
}

#[derive(Debug)]
struct Pending {
    addr: SocketAddr,
    sent: Instant,
    purpose: Purpose,
}

/// What a running lookup is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Goal {
    /// `find_node` on our own id from the routers (and saved nodes).
    Bootstrap,
    /// `find_node` on a random id in a stale bucket.
    Refresh,
    /// `get_peers` for a torrent, then `announce_peer`.
    Torrent(NodeId),
}

struct Running {
    goal: Goal,
    lookup: Lookup,
}

/// A torrent that asked for peers.
struct Torrent {
    port: u16,
    seeding: bool,
    on_peers: PeersCallback,
    next_lookup: Instant,
    running: Option<u64>,
    retry: Duration,
    sent: HashSet<SocketAddr>,
}

/// What the node did, for tests and the log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Queries answered (responses and errors sent).
    pub answered: u64,
    /// Queries dropped by the rate limit.
    pub rate_limited: u64,
    /// Datagrams that were not KRPC we could use.
    pub malformed: u64,
    /// `announce_peer` queries of ours that were answered.
    pub announced: u64,
}

/// The node's state and logic.
pub struct Engine {
    pub(super) own_id: NodeId,
    pub(super) table: RoutingTable,
    pub(super) tokens: TokenSecrets,
    pub(super) store: PeerStore,
    pub(super) limiter: RateLimiter,
    pub(super) rng: fastrand::Rng,
    pub(super) counters: Counters,
    pub(super) outbox: Vec<(SocketAddr, Vec<u8>)>,
    routers: Vec<SocketAddr>,
    pending: HashMap<TransactionId, Pending>,
    next_tid: u16,
    lookups: HashMap<u64, Running>,
    next_lookup_id: u64,
    torrents: HashMap<NodeId, Torrent>,
    next_maintenance: Instant,
}

impl Engine {
    /// A node with id `own_id`, the `saved` nodes of an earlier run, and
    /// `routers` to bootstrap from (used when given, and whenever the table
    /// is empty). The bootstrap starts at the first [`Engine::tick`].
    pub fn new(
        own_id: NodeId,
        saved: &[NodeInfo],
        routers: Vec<SocketAddr>,
        mut rng: fastrand::Rng,
        now: Instant,
    ) -> Engine {
        let mut table = RoutingTable::new(own_id, now);
        table.import(saved, now);
        let tokens = TokenSecrets::new(fastrand::Rng::with_seed(rng.u64(..)), now);
        Engine {
            own_id,
            table,
            tokens,
            store: PeerStore::new(),
            limiter: RateLimiter::new(),
            next_tid: rng.u16(..),
            rng,
            counters: Counters::default(),
            outbox: Vec::new(),
            routers,
            pending: HashMap::new(),
            lookups: HashMap::new(),
            next_lookup_id: 0,
            torrents: HashMap::new(),
            next_maintenance: now,
        }
    }

    /// Our node id.
    pub fn own_id(&self) -> NodeId {
        self.own_id
    }

    /// The routing table.
    pub fn table(&self) -> &RoutingTable {
        &self.table
    }

    /// What the node did so far.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Queries of ours waiting for an answer.
    pub fn pending_count(&self) -> usize {
        self.pending.len()
    }

    /// Datagrams to send, oldest first; the outbox is left empty.
    pub fn take_outbox(&mut self) -> Vec<(SocketAddr, Vec<u8>)> {
        std::mem::take(&mut self.outbox)
    }

    /// The nodes worth saving for the next run.
    pub fn export(&self, now: Instant) -> Vec<NodeInfo> {
        self.table.export(now)
    }

    /// Registers a torrent: a `get_peers` lookup at once (at the next tick),
    /// then `announce_peer` of `port`, repeated every [`ANNOUNCE_EVERY`].
    /// Registering again replaces the callback and starts over.
    pub fn announce(
        &mut self,
        info_hash: NodeId,
        port: u16,
        seeding: bool,
        on_peers: PeersCallback,
        now: Instant,
    ) {
        self.torrents.insert(
            info_hash,
            Torrent {
                port,
                seeding,
                on_peers,
                next_lookup: now,
                running: None,
                retry: FIRST_RETRY,
                sent: HashSet::new(),
            },
        );
    }

    /// Stops looking for and announcing `info_hash`.
    pub fn forget(&mut self, info_hash: &NodeId) {
        if let Some(torrent) = self.torrents.remove(info_hash)
            && let Some(id) = torrent.running
        {
            self.lookups.remove(&id);
        }
    }

    /// Torrents registered.
    pub fn torrent_count(&self) -> usize {
        self.torrents.len()
    }

    /// Pings the node at `addr` (a peer's `port` message, BEP 5): if it
    /// answers, it enters the table.
    pub fn add_node(&mut self, addr: SocketAddr, now: Instant) {
        if self.pending.values().any(|p| p.addr == addr) {
            return;
        }
        self.ping(addr, now);
    }

    /// Runs what is due at `now`: timed-out queries, lookup steps, torrents'
    /// lookups, and every [`MAINTENANCE_EVERY`] the bootstrap (while the
    /// table is empty), bucket refresh, pings and expiry.
    pub fn tick(&mut self, now: Instant) {
        self.expire_pending(now);
        if now >= self.next_maintenance {
            self.next_maintenance = now + MAINTENANCE_EVERY;
            self.maintain(now);
        }
        let due: Vec<NodeId> = self
            .torrents
            .iter()
            .filter(|(_, t)| t.running.is_none() && t.next_lookup <= now)
            .map(|(hash, _)| *hash)
            .collect();
        for info_hash in due {
            let id = self.start_lookup(Goal::Torrent(info_hash), info_hash, now);
            if let Some(torrent) = self.torrents.get_mut(&info_hash) {
                torrent.running = Some(id);
            }
        }
        let ids: Vec<u64> = self.lookups.keys().copied().collect();
        for id in ids {
            self.step_lookup(id, now);
        }
    }

    /// When the next tick is worth running: the next maintenance, the next
    /// torrent lookup, or soon while queries are in flight.
    pub fn next_tick(&self, now: Instant) -> Instant {
        let mut next = self.next_maintenance;
        for torrent in self.torrents.values() {
            if torrent.running.is_none() {
                next = next.min(torrent.next_lookup);
            }
        }
        if !self.pending.is_empty() {
            next = next.min(now + Duration::from_millis(250));
        }
        next.max(now)
    }

    /// Handles one datagram from `from`.
    pub fn on_datagram(&mut self, from: SocketAddr, datagram: &[u8], now: Instant) {
        let message = match krpc::decode(datagram) {
            Ok(message) => message,
            Err(e) => {
                self.counters.malformed += 1;
                log::trace!("dht: {from}: dropped a datagram: {e}");
                if let Some(reply) = e.reply()
                    && self.limiter.allow(from, now)
                {
                    self.counters.answered += 1;
                    self.outbox.push((from, reply.encode()));
                }
                return;
            }
        };
        match message.body {
            Body::Query(query) => self.on_query(from, message.tid, query, message.read_only, now),
            Body::Response(response) => {
                self.on_response(from, message.tid, response, message.read_only, now);
            }
            Body::Error(error) => {
                if let Some(pending) = self.take_pending(from, message.tid) {
                    log::debug!(
                        "dht: {from}: error {} to our query: {}",
                        error.code,
                        crate::untrusted::show(&error.message)
                    );
                    if let Purpose::Lookup(id) = pending.purpose
                        && let Some(running) = self.lookups.get_mut(&id)
                    {
                        running.lookup.on_timeout(from);
                        self.step_lookup(id, now);
                    }
                }
            }
        }
    }

    fn on_response(
        &mut self,
        from: SocketAddr,
        tid: TransactionId,
        response: Response,
        read_only: bool,
        now: Instant,
    ) {
        let Some(pending) = self.take_pending(from, tid) else {
            return;
        };
        if !read_only {
            let node = NodeInfo {
                id: response.id,
                addr: from,
            };
            let insert = self.table.on_response(node, now);
            self.inserted(insert, now);
        }
        match pending.purpose {
            Purpose::Ping => {}
            Purpose::Announce => self.counters.announced += 1,
            Purpose::Lookup(id) => {
                let own_id = self.own_id;
                let nodes: Vec<NodeInfo> = response
                    .nodes
                    .iter()
                    .filter(|n| n.id != own_id && n.addr.is_ipv4() && n.addr.port() != 0)
                    .copied()
                    .collect();
                let Some(running) = self.lookups.get_mut(&id) else {
                    return;
                };
                running.lookup.on_response(
                    from,
                    response.id,
                    &nodes,
                    &response.values,
                    response.token.as_deref(),
                );
                if let Goal::Torrent(info_hash) = running.goal {
                    self.give_peers(info_hash, &response.values);
                }
                self.step_lookup(id, now);
            }
        }
    }

    /// Hands the torrent the peers it was not given yet.
    fn give_peers(&mut self, info_hash: NodeId, values: &[SocketAddr]) {
        let Some(torrent) = self.torrents.get_mut(&info_hash) else {
            return;
        };
        let fresh: Vec<SocketAddr> = values
            .iter()
            .filter(|addr| addr.port() != 0 && !addr.ip().is_unspecified())
            .filter(|addr| torrent.sent.len() < MAX_SENT_PEERS && torrent.sent.insert(**addr))
            .copied()
            .collect();
        if !fresh.is_empty() {
            log::debug!("dht: {} peers for {}", fresh.len(), hex(&info_hash));
            (torrent.on_peers)(fresh);
        }
    }

    /// Acts on what the table did with a node: pings the questionable nodes
    /// whose slot it wants.
    pub(super) fn inserted(&mut self, insert: Insert, now: Instant) {
        if let Insert::PingQuestionable(nodes) = insert {
            for node in nodes {
                self.add_node(node.addr, now);
            }
        }
    }

    fn take_pending(&mut self, from: SocketAddr, tid: TransactionId) -> Option<Pending> {
        // A reply from another address than we asked is not the reply.
        match self.pending.get(&tid) {
            Some(pending) if pending.addr == from => self.pending.remove(&tid),
            _ => None,
        }
    }

    fn expire_pending(&mut self, now: Instant) {
        let expired: Vec<TransactionId> = self
            .pending
            .iter()
            .filter(|(_, p)| now.saturating_duration_since(p.sent) >= QUERY_TIMEOUT)
            .map(|(tid, _)| *tid)
            .collect();
        for tid in expired {
            let Some(pending) = self.pending.remove(&tid) else {
                continue;
            };
            self.table.on_failure(pending.addr, now);
            if let Purpose::Lookup(id) = pending.purpose
                && let Some(running) = self.lookups.get_mut(&id)
            {
                running.lookup.on_timeout(pending.addr);
            }
        }
    }

    fn maintain(&mut self, now: Instant) {
        self.store.expire(now);
        let bootstrapping = self.lookups.values().any(|r| r.goal == Goal::Bootstrap);
        if !bootstrapping
            && self.table.len() < K
            && (!self.routers.is_empty() || !self.table.is_empty())
        {
            let own_id = self.own_id;
            self.start_lookup(Goal::Bootstrap, own_id, now);
        }
        let refreshing = self
            .lookups
            .values()
            .filter(|r| r.goal == Goal::Refresh)
            .count();
        if refreshing == 0 && !self.table.is_empty() {
            let targets = self.table.refresh_targets(now, &mut self.rng);
            // A few buckets at a time: the others wait for the next round.
            for target in targets.into_iter().take(4) {
                self.start_lookup(Goal::Refresh, target, now);
            }
        }
        let questionable = self.table.questionable(now);
        for node in questionable.into_iter().take(PINGS_PER_ROUND) {
            self.add_node(node.addr, now);
        }
    }

    fn start_lookup(&mut self, goal: Goal, target: NodeId, now: Instant) -> u64 {
        let seeds = self.table.closest(&target, K, now);
        let mut lookup = Lookup::new(target, &seeds);
        if goal == Goal::Bootstrap || seeds.len() < K {
            for router in &self.routers {
                lookup.add_router(*router);
            }
        }
        if let Goal::Torrent(info_hash) = goal
            && let Some(torrent) = self.torrents.get_mut(&info_hash)
        {
            // Peers are deduplicated per lookup: a batch the torrent could
            // not take, or an address it has forgotten since, is offered
            // again by the next one, and `sent` cannot fill up for good.
            torrent.sent.clear();
        }
        let id = self.next_lookup_id;
        self.next_lookup_id += 1;
        // Its first queries go out with the tick's steps, once the caller
        // has noted the lookup (it may end at once, with nobody to ask).
        self.lookups.insert(id, Running { goal, lookup });
        id
    }

    /// Sends the lookup's next queries, or finishes it.
    fn step_lookup(&mut self, id: u64, now: Instant) {
        let Some(running) = self.lookups.get_mut(&id) else {
            return;
        };
        let target = running.lookup.target();
        let goal = running.goal;
        let addrs = running.lookup.next_queries(now);
        for addr in addrs {
            let query = match goal {
                Goal::Torrent(info_hash) => Query::GetPeers {
                    id: self.own_id,
                    info_hash,
                },
                Goal::Bootstrap | Goal::Refresh => Query::FindNode {
                    id: self.own_id,
                    target,
                },
            };
            if !self.send_query(addr, query, Purpose::Lookup(id), now)
                && let Some(running) = self.lookups.get_mut(&id)
            {
                running.lookup.on_timeout(addr);
            }
        }
        let done = self
            .lookups
            .get(&id)
            .is_some_and(|r| r.lookup.is_done() && r.lookup.in_flight() == 0);
        if done && let Some(running) = self.lookups.remove(&id) {
            self.finish(running, now);
        }
    }

    fn finish(&mut self, running: Running, now: Instant) {
        let Goal::Torrent(info_hash) = running.goal else {
            if running.goal == Goal::Bootstrap {
                log::info!(
                    "dht: bootstrap done: {} nodes in the routing table",
                    self.table.len()
                );
            }
            return;
        };
        let targets = running.lookup.announce_targets();
        let found = running.lookup.peers().len();
        let Some(torrent) = self.torrents.get_mut(&info_hash) else {
            return;
        };
        torrent.running = None;
        let port = torrent.port;
        let success = !targets.is_empty() && (torrent.seeding || found > 0);
        if success {
            torrent.next_lookup = now + ANNOUNCE_EVERY;
            torrent.retry = FIRST_RETRY;
        } else {
            torrent.next_lookup = now + torrent.retry;
            torrent.retry = (torrent.retry * 2).min(MAX_RETRY);
        }
        log::debug!(
            "dht: lookup of {} done: {found} peers, announcing to {} nodes",
            hex(&info_hash),
            targets.len()
        );
        for (node, token) in targets {
            let query = Query::AnnouncePeer {
                id: self.own_id,
                info_hash,
                port,
                implied_port: false,
                token,
            };
            self.send_query(node.addr, query, Purpose::Announce, now);
        }
    }

    fn ping(&mut self, addr: SocketAddr, now: Instant) {
        let query = Query::Ping { id: self.own_id };
        self.send_query(addr, query, Purpose::Ping, now);
    }

    /// Queues a query; `false` when too many are in flight to send it.
    fn send_query(
        &mut self,
        addr: SocketAddr,
        query: Query,
        purpose: Purpose,
        now: Instant,
    ) -> bool {
        if self.pending.len() >= MAX_PENDING {
            log::debug!(
                "dht: {MAX_PENDING} queries in flight: not sending {}",
                query.method()
            );
            return false;
        }
        let tid = loop {
            self.next_tid = self.next_tid.wrapping_add(1);
            let tid = TransactionId::from_u16(self.next_tid);
            if !self.pending.contains_key(&tid) {
                break tid;
            }
        };
        self.pending.insert(
            tid,
            Pending {
                addr,
                sent: now,
                purpose,
            },
        );
        self.outbox
            .push((addr, Message::query(tid, query).encode()));
        true
    }
}

/// An id in hex, for the log.
pub(super) fn hex(id: &NodeId) -> String {
    id.0.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
