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
//! assigns no new pieces, which slows the peers instead. The bytes of piece
//! buffers outstanding (assigned, kept, with the workers) stay within its
//! [`budget`], whatever the piece length and the number of peers.

mod assign;
pub mod budget;
mod complete;
mod events;
mod slot;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, select};
use log::{debug, warn};

use budget::{Budget, Charge};
pub use events::{Event, Outcome, PeerEvent, Returned};
use slot::PeerSlot;

use crate::bitfield::Bitfield;
use crate::blame::{Blame, Verdict};
use crate::choker::{ChokeCandidate, Choker, EVALUATE_EVERY};
use crate::layout::BLOCK_LEN;
use crate::peer::{Loaded, Partial, PeerCommand, PeerKey};
use crate::peer_table::PeerTable;
use crate::piece_picker::{PiecePicker, PieceState, RUN_BYTES};
use crate::progress::{Progress, Snapshot};
use crate::seed_limit::SeedLimit;
use crate::storage::{Storage, StorageError};
use crate::tracker::TrackerCommand;
use crate::verifier::{Checked, Job, Verifier};

/// Pieces a snubbed peer gave back that it is not given again.
const AVOID_MAX: usize = 64;
/// How often the progress display is refreshed and the peers' rates sampled.
const TICK: Duration = Duration::from_millis(500);
/// With fewer connected peers than this, ask the tracker for more.
const WANT_PEERS: usize = 10;
/// Least time between two requests to the tracker for more peers (the
/// tracker thread also keeps to the tracker's `min interval`).
const MORE_PEERS_EVERY: Duration = Duration::from_secs(5);

/// Limits and policy of a manager, from the command line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ManagerConfig {
    /// True when the session ends once complete (download mode); with a
    /// `seed_limit`, once that is reached after the download completes.
    pub stop_when_complete: bool,
    /// How long the complete torrent seeds: after a download, until the
    /// first limit (none set: not at all); in a seed run, until the first
    /// limit (none set: until shutdown).
    pub seed_limit: SeedLimit,
    /// Regular upload slots (see [`Choker`]).
    pub upload_slots: usize,
    /// Most peer connections at once, both directions.
    pub max_peers: usize,
}

/// The kept blocks of an unfinished piece, the peers that sent them, and
/// what their buffer is charged.
struct Kept {
    partial: Partial,
    senders: Vec<SocketAddr>,
    charge: Charge,
}

/// The manager's state; [`PieceManager::run`] is the thread's body.
pub struct PieceManager {
    table: PeerTable,
    loaded: Arc<Loaded>,
    storage: Arc<Storage>,
    verifier: Verifier,
    /// Pieces with the workers, the peers whose blocks they are made of,
    /// and what their buffers are charged.
    verifying: HashMap<u32, (Vec<SocketAddr>, Charge)>,
    /// Bytes of piece buffers outstanding, and their limit.
    budget: Budget,
    /// An assignment was held back for the budget: retry when it frees.
    starved: bool,
    picker: PiecePicker,
    have: Bitfield,
    /// Bytes of the verified wanted pieces (kept, so progress is not a
    /// scan), and of all the wanted pieces.
    have_len: u64,
    wanted_len: u64,
    /// The peers whose handshake was accepted.
    peers: HashMap<PeerKey, PeerSlot>,
    /// Bad pieces and the pieces to fetch whole.
    blame: Blame,
    /// Blocks of pieces whose fetchers choked us or left, kept to be finished.
    partials: HashMap<u32, Kept>,
    /// The senders of the kept blocks handed to a peer with its piece, and
    /// how many blocks they were.
    inherited: HashMap<(PeerKey, u32), (Vec<SocketAddr>, usize)>,
    choker: Choker,
    blocks_per_piece: usize,
    config: ManagerConfig,
    tracker_tx: Option<Sender<TrackerCommand>>,
    asked_for_peers: Option<Instant>,
    last_rate_sample: Instant,
    last_choke: Instant,
    progress: Progress,
    /// Since when the content is complete in this run: the end of the
    /// download, or the start of a seed run (what `--seed-time` counts).
    seeding_since: Option<Instant>,
}

impl PieceManager {
    /// A manager of the connections in `table` (any already connected,
    /// from the metadata phase, are started at once), starting from the
    /// verified pieces in `have` and handing delivered pieces to
    /// `verifier`. `tracker_tx`, when there is a tracker, is used to ask it
    /// for more peers.
    pub fn new(
        table: PeerTable,
        loaded: Arc<Loaded>,
        verifier: Verifier,
        have: &[bool],
        config: ManagerConfig,
        tracker_tx: Option<Sender<TrackerCommand>>,
        progress: Progress,
    ) -> PieceManager {
        let storage = Arc::clone(&loaded.storage);
        let layout = *storage.layout();
        let wanted: Vec<bool> = (0..layout.piece_count())
            .map(|i| storage.is_wanted(i))
            .collect();
        let wanted_len = storage.wanted_len();
        let now = Instant::now();
        let mut manager = PieceManager {
            table,
            loaded,
            storage,
            verifier,
            verifying: HashMap::new(),
            budget: Budget::new(layout.piece_len()),
            starved: false,
            picker: PiecePicker::with_wanted(
                have,
                &wanted,
                (RUN_BYTES / u64::from(layout.piece_len())).max(1) as u32,
            ),
            have: Bitfield::from_bools(have),
            have_len: (0..layout.piece_count())
                .zip(have)
                .filter(|(i, h)| **h && wanted[*i as usize])
                .map(|(i, _)| u64::from(layout.piece_size(i)))
                .sum(),
            wanted_len,
            peers: HashMap::new(),
            blame: Blame::new(),
            partials: HashMap::new(),
            inherited: HashMap::new(),
            choker: Choker::new(config.upload_slots),
            blocks_per_piece: (layout.piece_len().div_ceil(BLOCK_LEN) as usize).max(1),
            config,
            tracker_tx,
            asked_for_peers: None,
            last_rate_sample: now,
            last_choke: now,
            progress,
            seeding_since: None,
        };
        let connected: Vec<(PeerKey, SocketAddr)> = manager
            .table
            .iter()
            .filter(|(_, c)| c.peer_id.is_some())
            .map(|(key, c)| (key, c.addr))
            .collect();
        for (key, addr) in connected {
            manager.start_peer(key, addr);
        }
        manager
    }

    /// Starts an accepted peer: its slot here, and our bitfield to it.
    fn start_peer(&mut self, key: PeerKey, addr: SocketAddr) {
        self.peers
            .insert(key, PeerSlot::new(addr, self.have.piece_count()));
        self.table.send(
            key,
            PeerCommand::Start {
                have: self.have.clone(),
                loaded: Arc::clone(&self.loaded),
            },
        );
    }

    /// Runs until complete (in download mode), told to shut down, or a storage
    /// error; then stops every peer thread.
    ///
    /// # Errors
    /// A [`StorageError`] when a verified piece cannot be written.
    pub fn run(mut self, events_rx: Receiver<Event>) -> Result<Outcome, StorageError> {
        let result = self.event_loop(&events_rx);
        self.verifier.stop();
        if result.is_err() {
            // A write failed (a full disk): the pieces the workers wrote
            // before it, or while it failed, are on disk all the same, and
            // are claimed (a batch's results come one by one, and the loop
            // stopped at the first error).
            while let Ok(checked) = self.verifier.results().try_recv() {
                if matches!(checked.result, Ok(true)) {
                    let _ = self.on_checked(checked);
                }
            }
        }
        self.progress.finish(&self.snapshot());
        self.table.shutdown(&events_rx);
        result
    }

    fn event_loop(&mut self, events_rx: &Receiver<Event>) -> Result<Outcome, StorageError> {
        let mut next_tick = Instant::now();
        let results = self.verifier.results().clone();
        loop {
            if self.picker.is_complete()
                && let Some(outcome) = self.complete_or_seeding()?
            {
                return Ok(outcome);
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
                Ok(Event::Incoming(stream, handshake, addr)) => {
                    self.table.accept(stream, handshake, addr);
                }
                Ok(Event::Peers(addrs, source)) => {
                    let now = Instant::now();
                    self.table.add_addrs(addrs, source, now);
                    self.table.dial_more(now);
                }
                // Stopped while seeding after a download: it was complete.
                Ok(Event::Shutdown) | Err(_)
                    if self.config.stop_when_complete && self.seeding_since.is_some() =>
                {
                    return Ok(Outcome::Complete);
                }
                Ok(Event::Shutdown) | Err(_) => return Ok(Outcome::Stopped),
            }
        }
    }

    /// Periodic work: progress, rates, choking, dialling, asking for peers.
    fn tick(&mut self, now: Instant) {
        self.progress.update(&self.snapshot());
        if std::mem::take(&mut self.starved) {
            self.assign_all();
        }
        let elapsed_ms = (now.duration_since(self.last_rate_sample).as_millis() as u64).max(1);
        self.last_rate_sample = now;
        for (key, slot) in &mut self.peers {
            let Some(conn) = self.table.get(*key) else {
                continue;
            };
            let down = conn.counters.downloaded.load(Ordering::Relaxed);
            let up = conn.counters.uploaded.load(Ordering::Relaxed);
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
        self.table.pex_tick(now);
        self.table.dial_more(now);
        let connected = self.table.len();
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
        Snapshot {
            have_len: self.have_len,
            total_len: self.wanted_len,
            peers: self.table.connected_count(),
            uploaded: self.table.ctx().stats.uploaded.load(Ordering::Relaxed),
            downloaded: self.table.ctx().stats.downloaded.load(Ordering::Relaxed),
        }
    }

    fn on_peer_event(&mut self, key: PeerKey, event: PeerEvent) {
        match event {
            PeerEvent::Connected { peer_id } => {
                if self.table.on_connected(key, peer_id) {
                    let addr = self.table.get(key).expect("just accepted").addr;
                    self.start_peer(key, addr);
                }
                return;
            }
            PeerEvent::Disconnected { reason, returned } => {
                if self.peers.contains_key(&key) {
                    self.take_back(key, returned);
                }
                self.on_disconnected(key, &reason);
                return;
            }
            _ => {}
        }
        if !self.peers.contains_key(&key) {
            return;
        }
        match event {
            PeerEvent::Connected { .. } | PeerEvent::Disconnected { .. } => {}
            PeerEvent::Extensions(remote) => {
                self.table.on_extensions(key, &remote, Instant::now());
            }
            PeerEvent::Pex(message) => {
                let now = Instant::now();
                self.table.on_pex(key, &message, now);
                self.table.dial_more(now);
            }
            // The metadata is known: late metadata messages change nothing.
            PeerEvent::MetadataPiece { .. } | PeerEvent::MetadataRejected(_) => {}
            PeerEvent::Bitfield(bits) => {
                // A bitfield replaces what the peer had (it may come late).
                let slot = self.peers.get_mut(&key).expect("checked above");
                self.picker.add_peer_pieces(&slot.has, -1);
                self.picker.add_peer_pieces(&bits, 1);
                slot.has = bits;
                let seed = slot.has.is_complete();
                self.table.set_seed(key, seed);
                if seed && self.picker.is_complete() {
                    // Two seeders have nothing to exchange.
                    self.table.send(key, PeerCommand::Shutdown);
                }
                self.assign(key);
            }
            PeerEvent::Have(index) => {
                let slot = self.peers.get_mut(&key).expect("checked above");
                if slot.has.set(index) {
                    if slot.has.is_complete() {
                        self.table.set_seed(key, true);
                    }
                    self.picker.add_have(index, &slot.has);
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
                    slot.proven = false;
                    slot.avoid.extend(returned.iter().map(|r| r.index));
                    let excess = slot.avoid.len().saturating_sub(AVOID_MAX);
                    slot.avoid.drain(..excess);
                }
                self.take_back(key, returned);
                self.assign_all();
            }
            PeerEvent::Probed(_) => {
                let slot = self.peers.get_mut(&key).expect("checked above");
                slot.proven = true;
                slot.snubbed = false;
                self.assign(key);
            }
            PeerEvent::Piece { index, data } => self.on_piece(key, index, data),
        }
    }

    /// A connection ended: its pieces and its share of availability go.
    fn on_disconnected(&mut self, key: PeerKey, reason: &crate::peer::Disconnect) {
        self.table.on_disconnected(key, reason);
        let now = Instant::now();
        if let Some(slot) = self.peers.remove(&key) {
            self.picker.add_peer_pieces(&slot.has, -1);
            for held in &slot.assigned {
                if !held.charge.probe {
                    self.picker.release(held.index);
                }
                self.inherited.remove(&(key, held.index));
                self.budget.release(held.charge);
            }
            self.choker.remove(key);
            self.rechoke(now);
        }
        self.table.dial_more(now);
        self.assign_all();
    }

    /// A peer delivered a whole piece: the workers verify and write it,
    /// and the peer gets more work at once.
    fn on_piece(&mut self, key: PeerKey, index: u32, data: Vec<u8>) {
        self.table
            .ctx()
            .stats
            .downloaded
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        let slot = self.peers.get_mut(&key).expect("caller checked the key");
        slot.snubbed = false;
        slot.proven = true;
        let Some(pos) = slot.position(index) else {
            debug!(
                "{}: piece {index} was not assigned to it, ignoring",
                slot.addr
            );
            let stats = &self.table.ctx().stats;
            stats.wasted.fetch_add(data.len() as u64, Ordering::Relaxed);
            self.loaded.buffers.give(data);
            return;
        };
        let charge = slot.assigned.swap_remove(pos).charge;
        let addr = slot.addr;
        if matches!(
            self.picker.state(index),
            PieceState::Have | PieceState::Verifying
        ) {
            // Endgame: another peer delivered it first.
            let stats = &self.table.ctx().stats;
            stats.wasted.fetch_add(data.len() as u64, Ordering::Relaxed);
            self.inherited.remove(&(key, index));
            self.budget.release(charge);
            self.loaded.buffers.give(data);
            self.assign(key);
            return;
        }
        let (mut senders, _) = self.inherited.remove(&(key, index)).unwrap_or_default();
        if !senders.contains(&addr) {
            senders.push(addr);
        }
        self.picker.verifying(index);
        self.verifying.insert(index, (senders, charge));
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
        let senders = match self.verifying.remove(&index) {
            Some((senders, charge)) => {
                self.budget.release(charge);
                senders
            }
            None => Vec::new(),
        };
        if self.verifying.len() + 1 == self.verifier.backlog_limit() {
            // Assignments were held back for the workers: resume them.
            self.assign_all();
        }
        if !result? {
            self.picker.failed(index);
            // Any blocks kept for it are suspect too.
            self.drop_partial(index);
            match self.blame.failed(index, &senders) {
                Verdict::Counted { addr, .. } => {
                    warn!("piece {index} failed hash check (from {addr})");
                }
                Verdict::Ban(liar) => {
                    warn!("piece {index} failed hash check (from {liar})");
                    self.table
                        .ban(liar, "sent pieces that failed the hash check");
                }
                Verdict::Shared(senders) => warn!(
                    "piece {index} failed hash check (blocks from {senders:?}); fetching it whole from one peer"
                ),
            }
            // Counted once the verdict (and any ban) has taken effect.
            let stats = &self.table.ctx().stats;
            stats.hash_failures.fetch_add(1, Ordering::Relaxed);
            stats.wasted.fetch_add(len, Ordering::Relaxed);
            self.assign_all();
            return Ok(());
        }
        self.blame.verified(index);
        if !self.inherited.is_empty() {
            // Its entries are all of peers still here (a peer's go with it).
            for other in self.peers.keys() {
                self.inherited.remove(&(*other, index));
            }
        }
        self.picker.complete(index);
        self.drop_partial(index);
        if self.have.set(index) {
            self.have_len += u64::from(self.storage.layout().piece_size(index));
        }
        let stats = &self.table.ctx().stats;
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
            if let Some(pos) = slot.position(index) {
                // The peer drops its copy when it reads the `have`.
                self.budget.release(slot.assigned.swap_remove(pos).charge);
                changed.push(other);
            }
            self.table.send(other, PeerCommand::Have(index));
        }
        for key in changed {
            self.assign(key);
        }
        if std::mem::take(&mut self.starved) {
            // The piece's buffer is free: the peers held back for it may go on.
            self.assign_all();
        }
        Ok(())
    }

    /// Applies the choker's choice: unchokes the chosen peers, chokes the rest.
    fn rechoke(&mut self, now: Instant) {
        let candidates: Vec<ChokeCandidate> = self
            .peers
            .iter()
            .map(|(&key, p)| ChokeCandidate {
                key,
                interested: p.interested,
                rate: p.choke_rate,
            })
            .collect();
        let unchoked = self.choker.unchoked(now, &candidates);
        for (key, slot) in &mut self.peers {
            let unchoke = unchoked.contains(key);
            if unchoke == slot.am_choking {
                slot.am_choking = !unchoke;
                let command = if unchoke {
                    PeerCommand::Unchoke
                } else {
                    PeerCommand::Choke
                };
                debug!("{}: {command:?}", slot.addr);
                self.table.send(*key, command);
            }
        }
    }
}

/// The sending end of the manager's event channel.
pub type EventSender = Sender<Event>;
