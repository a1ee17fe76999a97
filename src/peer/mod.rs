//! Peer connections: one OS thread per connection (BEP 3 "peer protocol").
//!
//! The life of a connection:
//! 1. The piece manager spawns the thread ([`spawn`]) for an address it wants
//!    to dial, or for a socket the listener accepted, and keeps the sending end
//!    of its command channel.
//! 2. The thread connects (outgoing), exchanges handshakes, refuses a wrong
//!    info-hash or our own peer id, and reports
//!    [`PeerEvent::Connected`](crate::piece_manager::PeerEvent::Connected).
//! 3. The manager answers [`PeerCommand::Start`] with our current bitfield (or
//!    [`PeerCommand::Shutdown`] if it refuses the peer); the thread sends the
//!    bitfield as its first message.
//! 4. Main loop ([`conn`]): the thread decodes messages, tells the manager what
//!    the remote has, whether it chokes us and whether it is interested,
//!    fetches the pieces the manager assigns with a request pipeline sized to
//!    the remote's rate, hands each complete piece to the manager, and serves
//!    the remote's requests from [`Storage`] while the manager has it unchoked.
//!    A remote that stops sending blocks is snubbed: its pieces, with the
//!    blocks already received, go back to the manager for other peers.
//! 5. On any exit it reports
//!    [`PeerEvent::Disconnected`](crate::piece_manager::PeerEvent::Disconnected)
//!    with the reason (and whether the remote broke the protocol, which gets
//!    it banned) and the unfinished pieces, so the manager gives them to others.
//!
//! Not owned here: which pieces to fetch (the manager decides) and the bytes
//! of each message ([`wire`]).

pub mod conn;
pub mod pipeline;
pub mod wire;

use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::thread::{self, JoinHandle};

use crossbeam_channel::{Receiver, Sender};

use crate::bitfield::Bitfield;
use crate::buffers::PieceBuffers;
use crate::metainfo::InfoHash;
use crate::piece_manager::Event;
use crate::stats::Stats;
use crate::storage::Storage;
use wire::PeerId;

/// The manager's handle on one connection: an id that is never reused.
pub type PeerKey = u64;

/// Commands from the piece manager to a peer thread.
#[derive(Debug)]
pub enum PeerCommand {
    /// The handshake is accepted: send this bitfield and begin.
    Start {
        /// Our verified pieces.
        have: Bitfield,
    },
    /// Fetch a piece and report it when complete.
    Download(PieceJob),
    /// We now have piece `index`: tell the remote, and stop fetching it if we were.
    Have(u32),
    /// Stop uploading to the remote (send `choke`).
    Choke,
    /// Start uploading to the remote (send `unchoke`).
    Unchoke,
    /// Close the connection.
    Shutdown,
}

/// A piece to fetch, with the blocks already received from other peers.
#[derive(Debug)]
pub struct PieceJob {
    /// Piece index.
    pub index: u32,
    /// Blocks a previous peer delivered before it choked us or left.
    pub partial: Option<Partial>,
}

/// The blocks of a piece received so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partial {
    /// The piece's bytes; only the received blocks are meaningful.
    pub data: Vec<u8>,
    /// Which blocks arrived.
    pub received: Vec<bool>,
}

impl Partial {
    /// How many blocks arrived.
    pub fn received_count(&self) -> usize {
        self.received.iter().filter(|&&r| r).count()
    }
}

/// Per-connection byte counters, written by the peer thread and sampled by
/// the manager to rate the peer for choking.
#[derive(Debug, Default)]
pub struct PeerCounters {
    /// Payload bytes received from the remote (every block, verified or not).
    pub downloaded: AtomicU64,
    /// Payload bytes sent to the remote.
    pub uploaded: AtomicU64,
}

/// The sending end of a peer's command channel, kept by the manager.
pub type CommandSender = Sender<PeerCommand>;

/// What every peer thread shares: the torrent's identity, our identity, the
/// storage it serves from and the channel to the manager.
pub struct PeerContext {
    /// The torrent.
    pub info_hash: InfoHash,
    /// Our peer id (connections to it are refused).
    pub our_id: PeerId,
    /// The content, for serving requests.
    pub storage: Arc<Storage>,
    /// Transfer counters.
    pub stats: Arc<Stats>,
    /// Idle piece buffers, for the pieces it fetches.
    pub buffers: PieceBuffers,
    /// Events to the piece manager.
    pub events_tx: Sender<Event>,
}

/// Where a connection comes from.
pub enum Origin {
    /// We dial this address.
    Outgoing(SocketAddr),
    /// The listener accepted this socket.
    Incoming(TcpStream),
}

/// Spawns the thread for one connection, named after the peer's address.
///
/// # Errors
/// The OS error when the thread cannot be created.
pub fn spawn(
    key: PeerKey,
    addr: SocketAddr,
    origin: Origin,
    ctx: Arc<PeerContext>,
    counters: Arc<PeerCounters>,
    cmd_rx: Receiver<PeerCommand>,
) -> std::io::Result<JoinHandle<()>> {
    thread::Builder::new()
        .name(format!("peer {addr}"))
        .spawn(move || conn::run(key, addr, origin, &ctx, &counters, &cmd_rx))
}
