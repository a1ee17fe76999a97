//! The piece manager thread: the single owner of "what we have and who is
//! fetching what".
//!
//! It receives every [`Event`] of the session on one channel: peer events,
//! sockets accepted by the listener, peer addresses from the tracker or the
//! command line, and shutdown. Each complete piece a peer delivers goes to
//! its [`Verifier`] workers, which check the SHA-1 and write it with
//! positional I/O on other cores; when they report it good, the manager marks
//! it had and broadcasts `have`. It spawns and owns every peer thread, and
//! never blocks sending to one (command channels are unbounded), so peers may
//! block on the bounded event channel without any risk of deadlock. Nor does
//! it block handing pieces to the workers: while too many wait for them, it
//! assigns no new pieces, which slows the peers instead.

use std::collections::{HashMap, HashSet};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, select, unbounded};
use log::{debug, info, warn};

use crate::bitfield::Bitfield;
use crate::choker::{ChokeCandidate, Choker, EVALUATE_EVERY};
use crate::layout::BLOCK_LEN;
use crate::peer::pipeline::pipeline_for_rate;
use crate::peer::wire::PeerId;
use crate::peer::{
    self, CommandSender, Origin, Partial, PeerCommand, PeerContext, PeerCounters, PeerKey, PieceJob,
};
use crate::peer_list::PeerList;
use crate::piece_picker::{PiecePicker, PieceState};
use crate::progress::{Progress, Snapshot};
use crate::storage::{Storage, StorageError};
use crate::tracker::TrackerCommand;
use crate::verifier::{Checked, Job, Verifier};

/// Everything the piece manager hears about, on one channel.
#[derive(Debug)]
pub enum Event {
    /// Something happened on a peer connection.
    Peer {
        /// Which connection.
        key: PeerKey,
        /// What happened.
        event: PeerEvent,
    },
    /// The listener accepted a connection.
    Incoming(TcpStream, SocketAddr),
    /// Peer addresses to dial (from the tracker or `--peer`).
    Peers(Vec<SocketAddr>),
    /// Stop the session (Ctrl-C, or the caller's shutdown handle).
    Shutdown,
}

/// What a peer thread reports.
#[derive(Debug)]
pub enum PeerEvent {
    /// Handshake done; the manager must answer with `Start` or `Shutdown`.
    Connected {
        /// The remote's peer id.
        peer_id: PeerId,
    },
    /// The remote's bitfield: every piece it has (it replaces what we knew,
    /// since some clients send it late).
    Bitfield(Bitfield),
    /// The remote has a new piece.
    Have(u32),
    /// The remote became interested (true) or not interested (false) in our pieces.
    Interested(bool),
    /// The remote unchoked us: pieces may be assigned.
    Unchoked,
    /// The remote choked us: these assigned pieces were dropped.
    Choked {
        /// Pieces given back, with any blocks already received.
        returned: Vec<Returned>,
    },
    /// Pieces given back unfinished: the remote stopped sending blocks
    /// (`snubbed`), or it choked us before the piece could be requested.
    Released {
        /// Pieces given back, with any blocks already received.
        returned: Vec<Returned>,
        /// The remote is too slow to be given more than one piece at a time.
        snubbed: bool,
    },
    /// A complete piece, not yet verified.
    Piece {
        /// Piece index.
        index: u32,
        /// Its bytes.
        data: Vec<u8>,
    },
    /// The connection ended; always the last event of a peer.
    Disconnected {
        /// Why.
        reason: String,
        /// The remote broke the protocol: ban it.
        violation: bool,
        /// Pieces it was fetching, with any blocks already received.
        returned: Vec<Returned>,
    },
}

/// An assigned piece a peer gives back unfinished.
#[derive(Debug)]
pub struct Returned {
    /// Piece index.
    pub index: u32,
    /// The blocks received, if any.
    pub partial: Option<Partial>,
}

/// How the manager's run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every piece is verified and on disk.
    Complete,
    /// Shut down before completing (or while seeding).
    Stopped,
}

/// Pieces a peer sent alone that failed the hash check before it is banned.
///
/// A failed piece whose blocks came from several peers blames nobody, since
/// an honest peer that finished a liar's half piece must not be banned; it
/// is fetched again whole, from one peer, so the next failure has one author.
const BAN_AFTER_BAD_PIECES: u32 = 2;
/// Pieces a snubbed peer gave back that it is not given again.
const AVOID_MAX: usize = 64;
/// How often the progress display is refreshed and the peers' rates sampled.
const TICK: Duration = Duration::from_millis(500);
/// How long shutdown waits for peer threads to end.
const JOIN_WAIT: Duration = Duration::from_secs(3);
/// With fewer connected peers than this, ask the tracker for more.
const WANT_PEERS: usize = 10;
/// Least time between two requests to the tracker for more peers (the
/// tracker thread also keeps to the tracker's `min interval`).
const MORE_PEERS_EVERY: Duration = Duration::from_secs(5);

/// Limits and policy of a manager, from the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ManagerConfig {
    /// True when the session ends once complete (download mode).
    pub stop_when_complete: bool,
    /// Regular upload slots (see [`Choker`]).
    pub upload_slots: usize,
    /// Most peer connections at once, both directions.
    pub max_peers: usize,
}

/// The kept blocks of an unfinished piece and the peers that sent them.
struct Kept {
    partial: Partial,
    senders: Vec<SocketAddr>,
}

struct PeerSlot {
    addr: SocketAddr,
    /// We dialled it (its address is in the peer list), rather than it us.
    outgoing: bool,
    cmd_tx: CommandSender,
    thread: Option<JoinHandle<()>>,
    peer_id: Option<PeerId>,
    has: Bitfield,
    /// The remote unchokes us.
    unchoked: bool,
    /// The remote is interested in our pieces.
    interested: bool,
    /// We choke the remote (we start choking, as BEP 3 says).
    am_choking: bool,
    /// The remote stopped sending blocks: one piece at a time for it.
    snubbed: bool,
    assigned: Vec<u32>,
    /// Pieces it gave back when snubbed: they go to other peers.
    avoid: Vec<u32>,
    counters: Arc<PeerCounters>,
    /// Counters at the last one-second sample, and the rate from them.
    sample: (u64, u64),
    down_rate: u64,
    /// Counters at the last choke evaluation, and the rate the choker uses.
    choke_sample: (u64, u64),
    choke_rate: u64,
}

/// The manager's state; [`PieceManager::run`] is the thread's body.
pub struct PieceManager {
    ctx: Arc<PeerContext>,
    storage: Arc<Storage>,
    verifier: Verifier,
    /// Pieces with the workers, and the peers whose blocks they are made of.
    verifying: HashMap<u32, Vec<SocketAddr>>,
    picker: PiecePicker,
    have: Bitfield,
    peers: HashMap<PeerKey, PeerSlot>,
    next_key: PeerKey,
    peer_list: PeerList,
    banned_ids: HashSet<PeerId>,
    /// Bad pieces each address sent alone.
    bad_pieces: HashMap<SocketAddr, u32>,
    /// Blocks of pieces whose fetchers choked us or left, kept to be finished.
    partials: HashMap<u32, Kept>,
    /// The senders of the kept blocks handed to a peer with its piece, and
    /// how many blocks they were.
    inherited: HashMap<(PeerKey, u32), (Vec<SocketAddr>, usize)>,
    /// Pieces that failed with blocks from several peers: fetched whole
    /// from one peer until verified.
    whole_only: HashSet<u32>,
    choker: Choker,
    blocks_per_piece: usize,
    config: ManagerConfig,
    tracker_tx: Option<Sender<TrackerCommand>>,
    asked_for_peers: Option<Instant>,
    last_rate_sample: Instant,
    last_choke: Instant,
    progress: Progress,
    finished: Vec<JoinHandle<()>>,
}

impl PieceManager {
    /// A manager starting from the verified pieces in `have`, handing
    /// delivered pieces to `verifier`. `tracker_tx`, when there is a tracker,
    /// is used to ask it for more peers.
    pub fn new(
        ctx: Arc<PeerContext>,
        verifier: Verifier,
        have: &[bool],
        config: ManagerConfig,
        tracker_tx: Option<Sender<TrackerCommand>>,
        progress: Progress,
    ) -> PieceManager {
        let storage = Arc::clone(&ctx.storage);
        let layout = *storage.layout();
        let now = Instant::now();
        PieceManager {
            ctx,
            storage,
            verifier,
            verifying: HashMap::new(),
            picker: PiecePicker::new(have),
            have: Bitfield::from_bools(have),
            peers: HashMap::new(),
            next_key: 0,
            peer_list: PeerList::new(),
            banned_ids: HashSet::new(),
            bad_pieces: HashMap::new(),
            partials: HashMap::new(),
            inherited: HashMap::new(),
            whole_only: HashSet::new(),
            choker: Choker::new(config.upload_slots),
            blocks_per_piece: (layout.piece_len().div_ceil(BLOCK_LEN) as usize).max(1),
            config,
            tracker_tx,
            asked_for_peers: None,
            last_rate_sample: now,
            last_choke: now,
            progress,
            finished: Vec::new(),
        }
    }

    /// Runs until complete (in download mode), told to shut down, or a storage
    /// error; then stops every peer thread.
    ///
    /// # Errors
    /// A [`StorageError`] when a verified piece cannot be written.
    pub fn run(mut self, events_rx: Receiver<Event>) -> Result<Outcome, StorageError> {
        let result = self.event_loop(&events_rx);
        self.progress.finish(&self.snapshot());
        self.verifier.stop();
        self.shutdown_peers(&events_rx);
        result
    }

    fn event_loop(&mut self, events_rx: &Receiver<Event>) -> Result<Outcome, StorageError> {
        let mut next_tick = Instant::now();
        let results = self.verifier.results().clone();
        loop {
            if self.config.stop_when_complete && self.picker.is_complete() {
                self.storage.sync()?;
                info!(
                    "download complete: all {} pieces verified",
                    self.have.count()
                );
                return Ok(Outcome::Complete);
            }
            let now = Instant::now();
            if now >= next_tick {
                self.tick(now);
                next_tick = now + TICK;
            }
            let event = select! {
                recv(results) -> checked => {
                    if let Ok(checked) = checked {
                        self.on_checked(checked)?;
                    }
                    continue;
                }
                recv(events_rx) -> event => event,
                default(next_tick.saturating_duration_since(Instant::now())) => continue,
            };
            match event {
                Ok(Event::Peer { key, event }) => self.on_peer_event(key, event),
                Ok(Event::Incoming(stream, addr)) => self.accept(stream, addr),
                Ok(Event::Peers(addrs)) => {
                    let now = Instant::now();
                    for addr in addrs {
                        self.peer_list.add(addr, now);
                    }
                    self.dial_more(now);
                }
                Ok(Event::Shutdown) | Err(_) => return Ok(Outcome::Stopped),
            }
        }
    }

    /// Periodic work: progress, rates, choking, dialling, asking for peers.
    fn tick(&mut self, now: Instant) {
        self.progress.update(&self.snapshot());
        let elapsed_ms = (now.duration_since(self.last_rate_sample).as_millis() as u64).max(1);
        self.last_rate_sample = now;
        for slot in self.peers.values_mut() {
            let down = slot.counters.downloaded.load(Ordering::Relaxed);
            let up = slot.counters.uploaded.load(Ordering::Relaxed);
            slot.down_rate = (down - slot.sample.0) * 1000 / elapsed_ms;
            slot.sample = (down, up);
        }
        if now.duration_since(self.last_choke) >= EVALUATE_EVERY {
            let elapsed_ms = (now.duration_since(self.last_choke).as_millis() as u64).max(1);
            self.last_choke = now;
            // Tit for tat while downloading; while seeding, favour the peers
            // that take the most, so the data spreads fastest.
            let seeding = self.picker.is_complete();
            for slot in self.peers.values_mut() {
                let (down, up) = slot.sample;
                let (down0, up0) = slot.choke_sample;
                let delta = if seeding { up - up0 } else { down - down0 };
                slot.choke_rate = delta * 1000 / elapsed_ms;
                slot.choke_sample = (down, up);
            }
            self.rechoke(now);
        }
        self.dial_more(now);
        let connected = self.peers.len();
        let asked_lately = self
            .asked_for_peers
            .is_some_and(|at| now.duration_since(at) < MORE_PEERS_EVERY);
        if connected < WANT_PEERS.min(self.config.max_peers) && !asked_lately {
            if let Some(tx) = &self.tracker_tx {
                debug!("{connected} peers connected, asking the tracker for more");
                let _ = tx.send(TrackerCommand::NeedPeers);
            }
            self.asked_for_peers = Some(now);
        }
    }

    fn snapshot(&self) -> Snapshot {
        let layout = self.storage.layout();
        let missing: u64 = (0..layout.piece_count())
            .filter(|&i| !self.have.has(i))
            .map(|i| u64::from(layout.piece_size(i)))
            .sum();
        Snapshot {
            have_len: layout.total_len() - missing,
            total_len: layout.total_len(),
            peers: self.peers.values().filter(|p| p.peer_id.is_some()).count(),
            uploaded: self.ctx.stats.uploaded.load(Ordering::Relaxed),
        }
    }

    /// Dials known addresses while there is room for more connections.
    fn dial_more(&mut self, now: Instant) {
        while self.peers.len() < self.config.max_peers {
            let Some(addr) = self.peer_list.next_to_dial(now) else {
                break;
            };
            if self.peers.values().any(|p| p.addr == addr) {
                continue;
            }
            self.spawn_peer(addr, Origin::Outgoing(addr));
        }
    }

    /// Takes a connection the listener accepted, unless it is banned or we
    /// are at the limit. Peers on one host differ only by port, so an IP
    /// already connected is no reason to refuse.
    fn accept(&mut self, stream: TcpStream, addr: SocketAddr) {
        if self.peer_list.is_banned(addr) {
            debug!("{addr}: banned, refusing the connection");
        } else if self.peers.len() >= self.config.max_peers {
            debug!(
                "{addr}: at the limit of {} peers, refusing the connection",
                self.config.max_peers
            );
        } else {
            self.spawn_peer(addr, Origin::Incoming(stream));
        }
    }

    fn spawn_peer(&mut self, addr: SocketAddr, origin: Origin) {
        let key = self.next_key;
        self.next_key += 1;
        let outgoing = matches!(origin, Origin::Outgoing(_));
        let (cmd_tx, cmd_rx) = unbounded();
        let counters = Arc::new(PeerCounters::default());
        match peer::spawn(
            key,
            addr,
            origin,
            Arc::clone(&self.ctx),
            Arc::clone(&counters),
            cmd_rx,
        ) {
            Ok(thread) => {
                self.peers.insert(
                    key,
                    PeerSlot {
                        addr,
                        outgoing,
                        cmd_tx,
                        thread: Some(thread),
                        peer_id: None,
                        has: Bitfield::new(self.have.piece_count()),
                        unchoked: false,
                        interested: false,
                        am_choking: true,
                        snubbed: false,
                        assigned: Vec::new(),
                        avoid: Vec::new(),
                        counters,
                        sample: (0, 0),
                        down_rate: 0,
                        choke_sample: (0, 0),
                        choke_rate: 0,
                    },
                );
            }
            Err(e) => {
                warn!("{addr}: cannot start a peer thread: {e}");
                if outgoing {
                    self.peer_list.failed(addr, Instant::now());
                }
            }
        }
    }

    fn send(&self, key: PeerKey, command: PeerCommand) {
        if let Some(slot) = self.peers.get(&key) {
            // A closed channel means the thread is ending; its Disconnected event follows.
            let _ = slot.cmd_tx.send(command);
        }
    }

    fn on_peer_event(&mut self, key: PeerKey, event: PeerEvent) {
        if !self.peers.contains_key(&key) {
            return;
        }
        match event {
            PeerEvent::Connected { peer_id } => {
                let duplicate = self.peers.values().any(|p| p.peer_id == Some(peer_id));
                if self.banned_ids.contains(&peer_id) {
                    debug!("peer id {peer_id:?} is banned, closing the connection");
                    self.send(key, PeerCommand::Shutdown);
                } else if duplicate {
                    debug!(
                        "peer id {peer_id:?} is already connected, closing the second connection"
                    );
                    self.send(key, PeerCommand::Shutdown);
                } else {
                    let slot = self.peers.get_mut(&key).expect("checked above");
                    slot.peer_id = Some(peer_id);
                    self.ctx.stats.peers.fetch_add(1, Ordering::Relaxed);
                    info!("{}: connected", slot.addr);
                    self.send(
                        key,
                        PeerCommand::Start {
                            have: self.have.clone(),
                        },
                    );
                }
            }
            PeerEvent::Bitfield(bits) => {
                // A bitfield replaces what the peer had (it may come late).
                let slot = self.peers.get_mut(&key).expect("checked above");
                self.picker.add_peer_pieces(&slot.has, -1);
                self.picker.add_peer_pieces(&bits, 1);
                slot.has = bits;
                if slot.has.is_complete() && self.picker.is_complete() {
                    // Two seeders have nothing to exchange.
                    self.send(key, PeerCommand::Shutdown);
                }
                self.assign(key);
            }
            PeerEvent::Have(index) => {
                let slot = self.peers.get_mut(&key).expect("checked above");
                if slot.has.set(index) {
                    self.picker.add_have(index);
                    self.assign(key);
                }
            }
            PeerEvent::Interested(interested) => {
                self.peers.get_mut(&key).expect("checked above").interested = interested;
                self.rechoke(Instant::now());
            }
            PeerEvent::Unchoked => {
                self.peers.get_mut(&key).expect("checked above").unchoked = true;
                self.assign(key);
            }
            PeerEvent::Choked { returned } => {
                self.peers.get_mut(&key).expect("checked above").unchoked = false;
                self.take_back(key, returned);
                self.assign_all();
            }
            PeerEvent::Released { returned, snubbed } => {
                let slot = self.peers.get_mut(&key).expect("checked above");
                if snubbed {
                    debug!("{}: snubbed, its pieces go to other peers", slot.addr);
                    slot.snubbed = true;
                    slot.avoid.extend(returned.iter().map(|r| r.index));
                    let excess = slot.avoid.len().saturating_sub(AVOID_MAX);
                    slot.avoid.drain(..excess);
                }
                self.take_back(key, returned);
                self.assign_all();
            }
            PeerEvent::Piece { index, data } => self.on_piece(key, index, data),
            PeerEvent::Disconnected {
                reason,
                violation,
                returned,
            } => {
                self.take_back(key, returned);
                let mut slot = self.peers.remove(&key).expect("checked above");
                debug!("{}: gone ({reason})", slot.addr);
                let now = Instant::now();
                if slot.peer_id.is_some() {
                    self.ctx.stats.peers.fetch_sub(1, Ordering::Relaxed);
                    info!("{}: disconnected: {reason}", slot.addr);
                }
                if violation {
                    self.ban(slot.addr, slot.peer_id, &reason);
                } else if slot.outgoing {
                    if slot.peer_id.is_some() {
                        self.peer_list.disconnected(slot.addr, now);
                    } else {
                        self.peer_list.failed(slot.addr, now);
                    }
                }
                self.picker.add_peer_pieces(&slot.has, -1);
                for &index in &slot.assigned {
                    self.picker.release(index);
                    self.inherited.remove(&(key, index));
                }
                self.choker.remove(key);
                self.finished.extend(slot.thread.take());
                self.rechoke(now);
                self.dial_more(now);
                self.assign_all();
            }
        }
    }

    /// Bans `addr` (and its peer id) for good and closes its connections.
    fn ban(&mut self, addr: SocketAddr, peer_id: Option<PeerId>, reason: &str) {
        if self.peer_list.is_banned(addr) {
            return;
        }
        warn!("{addr}: banned: {reason}");
        self.peer_list.ban(addr);
        self.banned_ids.extend(peer_id);
        self.ctx.stats.add_banned(addr);
        for slot in self.peers.values() {
            if slot.addr == addr || (peer_id.is_some() && slot.peer_id == peer_id) {
                let _ = slot.cmd_tx.send(PeerCommand::Shutdown);
            }
        }
    }

    /// Takes back pieces a peer gives up, keeping any blocks it received so
    /// the next peer finishes the piece instead of starting over.
    fn take_back(&mut self, key: PeerKey, returned: Vec<Returned>) {
        let slot = self.peers.get_mut(&key).expect("caller checked the key");
        for Returned { index, partial } in returned {
            let (mut senders, inherited_count) =
                self.inherited.remove(&(key, index)).unwrap_or_default();
            let Some(pos) = slot.assigned.iter().position(|&i| i == index) else {
                continue;
            };
            slot.assigned.swap_remove(pos);
            self.picker.release(index);
            let Some(partial) = partial else {
                continue;
            };
            let done = matches!(
                self.picker.state(index),
                PieceState::Have | PieceState::Verifying
            );
            if done || self.whole_only.contains(&index) {
                continue;
            }
            if partial.received_count() > inherited_count && !senders.contains(&slot.addr) {
                senders.push(slot.addr);
            }
            let better = self
                .partials
                .get(&index)
                .is_none_or(|kept| kept.partial.received_count() < partial.received_count());
            if better {
                self.partials.insert(index, Kept { partial, senders });
                self.picker.set_partial(index, true);
            }
        }
    }

    /// A peer delivered a whole piece: the workers verify and write it,
    /// and the peer gets more work at once.
    fn on_piece(&mut self, key: PeerKey, index: u32, data: Vec<u8>) {
        self.ctx
            .stats
            .downloaded
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        let slot = self.peers.get_mut(&key).expect("caller checked the key");
        slot.snubbed = false;
        let Some(pos) = slot.assigned.iter().position(|&i| i == index) else {
            debug!(
                "{}: piece {index} was not assigned to it, ignoring",
                slot.addr
            );
            return;
        };
        slot.assigned.swap_remove(pos);
        let addr = slot.addr;
        if matches!(
            self.picker.state(index),
            PieceState::Have | PieceState::Verifying
        ) {
            // Endgame: another peer delivered it first.
            self.assign(key);
            return;
        }
        let (mut senders, _) = self.inherited.remove(&(key, index)).unwrap_or_default();
        if !senders.contains(&addr) {
            senders.push(addr);
        }
        self.picker.verifying(index);
        self.verifying.insert(index, senders);
        self.verifier.submit(Job { key, index, data });
        self.assign(key);
    }

    /// The workers' verdict on a delivered piece.
    fn on_checked(&mut self, checked: Checked) -> Result<(), StorageError> {
        let Checked {
            key,
            index,
            len,
            result,
        } = checked;
        let senders = self.verifying.remove(&index).unwrap_or_default();
        if self.verifying.len() + 1 == self.verifier.backlog_limit() {
            // Assignments were held back for the workers: resume them.
            self.assign_all();
        }
        if !result? {
            self.picker.failed(index);
            // Any blocks kept for it are suspect too.
            self.partials.remove(&index);
            self.picker.set_partial(index, false);
            if let [liar] = senders[..] {
                warn!("piece {index} failed hash check (from {liar})");
                let bad = self.bad_pieces.entry(liar).or_default();
                *bad += 1;
                if *bad >= BAN_AFTER_BAD_PIECES {
                    let peer_id = self
                        .peers
                        .values()
                        .find(|p| p.addr == liar)
                        .and_then(|p| p.peer_id);
                    self.ban(liar, peer_id, "sent pieces that failed the hash check");
                }
            } else {
                warn!(
                    "piece {index} failed hash check (blocks from {senders:?}); fetching it whole from one peer"
                );
                self.whole_only.insert(index);
            }
            self.assign_all();
            return Ok(());
        }
        self.whole_only.remove(&index);
        self.inherited.retain(|&(_, i), _| i != index);
        self.picker.complete(index);
        self.partials.remove(&index);
        self.have.set(index);
        let stats = &self.ctx.stats;
        stats.have_pieces.fetch_add(1, Ordering::Relaxed);
        stats.left.fetch_sub(len, Ordering::Relaxed);
        debug!(
            "piece {index} verified (from {}), {} of {}",
            self.peers
                .get(&key)
                .map_or_else(|| "a peer now gone".to_string(), |p| p.addr.to_string()),
            self.have.count(),
            self.have.piece_count()
        );
        let mut changed = Vec::new();
        for (&other, slot) in &mut self.peers {
            if let Some(pos) = slot.assigned.iter().position(|&i| i == index) {
                slot.assigned.swap_remove(pos);
                changed.push(other);
            }
            if slot.peer_id.is_some() {
                let _ = slot.cmd_tx.send(PeerCommand::Have(index));
            }
        }
        for key in changed {
            self.assign(key);
        }
        Ok(())
    }

    fn assign_all(&mut self) {
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for key in keys {
            self.assign(key);
        }
    }

    /// Gives an unchoked peer pieces until it has enough to keep its request
    /// pipeline full at its current rate (one at a time while it is snubbed).
    fn assign(&mut self, key: PeerKey) {
        if self.verifying.len() >= self.verifier.backlog_limit() {
            // The workers are behind: no new pieces until they catch up.
            return;
        }
        let Some(slot) = self.peers.get_mut(&key) else {
            return;
        };
        if !slot.unchoked || slot.peer_id.is_none() {
            return;
        }
        let target = if slot.snubbed {
            1
        } else {
            pipeline_for_rate(slot.down_rate, slot.sample.0 > 0).div_ceil(self.blocks_per_piece) + 1
        };
        // What the peer fetches already, and what it gave up when snubbed.
        let mut skip: Vec<u32> = slot.assigned.iter().chain(&slot.avoid).copied().collect();
        while slot.assigned.len() < target {
            let Some(index) = self.picker.pick(&slot.has, &skip) else {
                break;
            };
            self.picker.assign(index);
            slot.assigned.push(index);
            skip.push(index);
            let partial = self.partials.remove(&index).map(|kept| {
                self.picker.set_partial(index, false);
                let count = kept.partial.received_count();
                self.inherited.insert((key, index), (kept.senders, count));
                kept.partial
            });
            let _ = slot
                .cmd_tx
                .send(PeerCommand::Download(PieceJob { index, partial }));
        }
    }

    /// Applies the choker's choice: unchokes the chosen peers, chokes the rest.
    fn rechoke(&mut self, now: Instant) {
        let candidates: Vec<ChokeCandidate> = self
            .peers
            .iter()
            .filter(|(_, p)| p.peer_id.is_some())
            .map(|(&key, p)| ChokeCandidate {
                key,
                interested: p.interested,
                rate: p.choke_rate,
            })
            .collect();
        let unchoked = self.choker.unchoked(now, &candidates);
        for (key, slot) in &mut self.peers {
            if slot.peer_id.is_none() {
                continue;
            }
            let unchoke = unchoked.contains(key);
            if unchoke == slot.am_choking {
                slot.am_choking = !unchoke;
                let command = if unchoke {
                    PeerCommand::Unchoke
                } else {
                    PeerCommand::Choke
                };
                debug!("{}: {command:?}", slot.addr);
                let _ = slot.cmd_tx.send(command);
            }
        }
    }

    /// Tells every peer to stop and waits a little for their threads.
    fn shutdown_peers(&mut self, events_rx: &Receiver<Event>) {
        for slot in self.peers.values() {
            let _ = slot.cmd_tx.send(PeerCommand::Shutdown);
        }
        let mut threads: Vec<JoinHandle<()>> = self.finished.drain(..).collect();
        threads.extend(self.peers.values_mut().filter_map(|p| p.thread.take()));
        let deadline = Instant::now() + JOIN_WAIT;
        while Instant::now() < deadline && threads.iter().any(|t| !t.is_finished()) {
            // Keep draining so no peer stays blocked on a full event channel.
            let _ = events_rx.recv_timeout(Duration::from_millis(10));
        }
        for thread in threads {
            if thread.is_finished() {
                let _ = thread.join();
            } else {
                debug!("a peer thread is still connecting; leaving it to end on its own");
            }
        }
    }
}

/// The sending end of the manager's event channel.
pub type EventSender = Sender<Event>;
