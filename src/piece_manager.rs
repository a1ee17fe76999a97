//! The piece manager thread: the single owner of "what we have and who is
//! fetching what".
//!
//! It receives every [`Event`] of the session on one channel: peer events,
//! sockets accepted by the listener, peer addresses from the tracker or the
//! command line, and shutdown. For each complete piece a peer delivers it
//! verifies the SHA-1, writes it with positional I/O, and broadcasts `have`.
//! It spawns and owns every peer thread, and never blocks sending to one
//! (command channels are unbounded), so peers may block on the bounded event
//! channel without any risk of deadlock.

use std::collections::{HashMap, HashSet};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, unbounded};
use log::{debug, info, warn};
use sha1::{Digest, Sha1};

use crate::bitfield::Bitfield;
use crate::layout::BLOCK_LEN;
use crate::peer::conn::PIPELINE_BLOCKS;
use crate::peer::wire::PeerId;
use crate::peer::{self, CommandSender, Origin, PeerCommand, PeerContext, PeerKey};
use crate::piece_picker::{PiecePicker, PieceState};
use crate::progress::{Progress, Snapshot};
use crate::storage::{Storage, StorageError};

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
    /// The remote's bitfield.
    Bitfield(Bitfield),
    /// The remote has a new piece.
    Have(u32),
    /// The remote unchoked us: pieces may be assigned.
    Unchoked,
    /// The remote choked us: these assigned pieces were dropped.
    Choked {
        /// Pieces given back.
        pieces: Vec<u32>,
    },
    /// Pieces given back without being fetched.
    Released {
        /// Pieces given back.
        pieces: Vec<u32>,
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
    },
}

/// How the manager's run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every piece is verified and on disk.
    Complete,
    /// Shut down before completing (or while seeding).
    Stopped,
}

/// Hash failures after which a peer is disconnected and not dialled again.
const MAX_HASH_FAILURES: u32 = 3;
/// Most peer connections at once.
const MAX_PEERS: usize = 50;
/// How often the progress display is refreshed.
const TICK: Duration = Duration::from_millis(500);
/// How long shutdown waits for peer threads to end.
const JOIN_WAIT: Duration = Duration::from_secs(3);

struct PeerSlot {
    addr: SocketAddr,
    cmd_tx: CommandSender,
    thread: Option<JoinHandle<()>>,
    peer_id: Option<PeerId>,
    has: Bitfield,
    unchoked: bool,
    assigned: Vec<u32>,
    hash_failures: u32,
}

/// The manager's state; [`PieceManager::run`] is the thread's body.
pub struct PieceManager {
    ctx: Arc<PeerContext>,
    storage: Arc<Storage>,
    hashes: Vec<[u8; 20]>,
    picker: PiecePicker,
    have: Bitfield,
    peers: HashMap<PeerKey, PeerSlot>,
    next_key: PeerKey,
    banned: HashSet<SocketAddr>,
    /// Pieces to assign per unchoked peer: enough to keep its pipeline full.
    target_pieces: usize,
    /// True when the session ends once complete (download mode).
    stop_when_complete: bool,
    progress: Progress,
    finished: Vec<JoinHandle<()>>,
}

impl PieceManager {
    /// A manager starting from the verified pieces in `have`.
    pub fn new(
        ctx: Arc<PeerContext>,
        hashes: Vec<[u8; 20]>,
        have: &[bool],
        stop_when_complete: bool,
        progress: Progress,
    ) -> PieceManager {
        let storage = Arc::clone(&ctx.storage);
        let layout = *storage.layout();
        let blocks_per_piece = (layout.piece_len().div_ceil(BLOCK_LEN) as usize).max(1);
        PieceManager {
            ctx,
            storage,
            hashes,
            picker: PiecePicker::new(have),
            have: Bitfield::from_bools(have),
            peers: HashMap::new(),
            next_key: 0,
            banned: HashSet::new(),
            target_pieces: PIPELINE_BLOCKS.div_ceil(blocks_per_piece) + 1,
            stop_when_complete,
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
        self.shutdown_peers(&events_rx);
        result
    }

    fn event_loop(&mut self, events_rx: &Receiver<Event>) -> Result<Outcome, StorageError> {
        let mut next_tick = Instant::now();
        loop {
            if self.stop_when_complete && self.picker.is_complete() {
                self.storage.sync()?;
                info!(
                    "download complete: all {} pieces verified",
                    self.have.count()
                );
                return Ok(Outcome::Complete);
            }
            if Instant::now() >= next_tick {
                self.progress.update(&self.snapshot());
                next_tick = Instant::now() + TICK;
            }
            match events_rx.recv_deadline(next_tick) {
                Ok(Event::Peer { key, event }) => self.on_peer_event(key, event)?,
                Ok(Event::Incoming(stream, addr)) => self.add_peer(addr, Origin::Incoming(stream)),
                Ok(Event::Peers(addrs)) => {
                    for addr in addrs {
                        self.add_peer(addr, Origin::Outgoing(addr));
                    }
                }
                Ok(Event::Shutdown) | Err(RecvTimeoutError::Disconnected) => {
                    return Ok(Outcome::Stopped);
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
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

    fn add_peer(&mut self, addr: SocketAddr, origin: Origin) {
        if self.banned.contains(&addr) {
            debug!("{addr}: banned, not connecting");
            return;
        }
        // Peers on one host differ only by port, so an address is the unit here,
        // and a dialled address already connected (either way) is skipped.
        if matches!(origin, Origin::Outgoing(_)) && self.peers.values().any(|p| p.addr == addr) {
            return;
        }
        if self.peers.len() >= MAX_PEERS {
            debug!("{addr}: at the limit of {MAX_PEERS} peers, not connecting");
            return;
        }
        let key = self.next_key;
        self.next_key += 1;
        let (cmd_tx, cmd_rx) = unbounded();
        match peer::spawn(key, addr, origin, Arc::clone(&self.ctx), cmd_rx) {
            Ok(thread) => {
                self.peers.insert(
                    key,
                    PeerSlot {
                        addr,
                        cmd_tx,
                        thread: Some(thread),
                        peer_id: None,
                        has: Bitfield::new(self.have.piece_count()),
                        unchoked: false,
                        assigned: Vec::new(),
                        hash_failures: 0,
                    },
                );
            }
            Err(e) => warn!("{addr}: cannot start a peer thread: {e}"),
        }
    }

    fn send(&self, key: PeerKey, command: PeerCommand) {
        if let Some(slot) = self.peers.get(&key) {
            // A closed channel means the thread is ending; its Disconnected event follows.
            let _ = slot.cmd_tx.send(command);
        }
    }

    fn on_peer_event(&mut self, key: PeerKey, event: PeerEvent) -> Result<(), StorageError> {
        if !self.peers.contains_key(&key) {
            return Ok(());
        }
        match event {
            PeerEvent::Connected { peer_id } => {
                let duplicate = self.peers.values().any(|p| p.peer_id == Some(peer_id));
                if duplicate {
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
                self.picker.add_have(index);
                let slot = self.peers.get_mut(&key).expect("checked above");
                slot.has.set(index);
                self.assign(key);
            }
            PeerEvent::Unchoked => {
                self.peers.get_mut(&key).expect("checked above").unchoked = true;
                self.assign(key);
            }
            PeerEvent::Choked { pieces } => {
                self.peers.get_mut(&key).expect("checked above").unchoked = false;
                self.release(key, &pieces);
                self.assign_all();
            }
            PeerEvent::Released { pieces } => {
                self.release(key, &pieces);
                self.assign_all();
            }
            PeerEvent::Piece { index, data } => self.on_piece(key, index, data)?,
            PeerEvent::Disconnected { reason } => {
                let mut slot = self.peers.remove(&key).expect("checked above");
                debug!("{}: gone ({reason})", slot.addr);
                if slot.peer_id.is_some() {
                    self.ctx.stats.peers.fetch_sub(1, Ordering::Relaxed);
                    info!("{}: disconnected: {reason}", slot.addr);
                }
                self.picker.add_peer_pieces(&slot.has, -1);
                for &index in &slot.assigned {
                    self.picker.release(index);
                }
                self.finished.extend(slot.thread.take());
                self.assign_all();
            }
        }
        Ok(())
    }

    fn release(&mut self, key: PeerKey, pieces: &[u32]) {
        let slot = self.peers.get_mut(&key).expect("caller checked the key");
        for index in pieces {
            if let Some(pos) = slot.assigned.iter().position(|i| i == index) {
                slot.assigned.swap_remove(pos);
                self.picker.release(*index);
            }
        }
    }

    fn on_piece(&mut self, key: PeerKey, index: u32, data: Vec<u8>) -> Result<(), StorageError> {
        self.ctx
            .stats
            .downloaded
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        let slot = self.peers.get_mut(&key).expect("caller checked the key");
        let Some(pos) = slot.assigned.iter().position(|&i| i == index) else {
            debug!(
                "{}: piece {index} was not assigned to it, ignoring",
                slot.addr
            );
            return Ok(());
        };
        slot.assigned.swap_remove(pos);
        let addr = slot.addr;
        if self.picker.state(index) == PieceState::Have {
            // Endgame: another peer delivered it first.
            self.assign(key);
            return Ok(());
        }
        let hash: [u8; 20] = Sha1::digest(&data).into();
        if hash != self.hashes[index as usize] {
            warn!("piece {index} failed hash check (from {addr})");
            self.picker.release(index);
            let slot = self.peers.get_mut(&key).expect("caller checked the key");
            slot.hash_failures += 1;
            if slot.hash_failures >= MAX_HASH_FAILURES {
                warn!("{addr}: sent {MAX_HASH_FAILURES} bad pieces, banning it");
                self.banned.insert(addr);
                self.send(key, PeerCommand::Shutdown);
            }
            self.assign_all();
            return Ok(());
        }
        self.storage.write_piece(index, &data)?;
        self.picker.complete(index);
        self.have.set(index);
        let stats = &self.ctx.stats;
        stats.have_pieces.fetch_add(1, Ordering::Relaxed);
        stats.left.fetch_sub(data.len() as u64, Ordering::Relaxed);
        debug!(
            "piece {index} verified (from {addr}), {} of {}",
            self.have.count(),
            self.have.piece_count()
        );
        let mut changed = vec![key];
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

    /// Gives an unchoked peer pieces until it has [`Self::target_pieces`].
    fn assign(&mut self, key: PeerKey) {
        let Some(slot) = self.peers.get_mut(&key) else {
            return;
        };
        if !slot.unchoked || slot.peer_id.is_none() {
            return;
        }
        while slot.assigned.len() < self.target_pieces {
            let Some(index) = self.picker.pick(&slot.has, &slot.assigned) else {
                break;
            };
            self.picker.assign(index);
            slot.assigned.push(index);
            let _ = slot.cmd_tx.send(PeerCommand::Download(index));
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
