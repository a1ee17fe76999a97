//! Peer connections: one OS thread per connection (BEP 3 "peer protocol").
//!
//! The life of a connection:
//! 1. The torrent's manager spawns the thread ([`spawn`]) for an address it
//!    wants to dial, or for a stream the [client](crate::client) accepted and
//!    routed to it by the info-hash of the remote's handshake, and keeps the
//!    sending end of its command channel.
//! 2. The thread connects (outgoing), exchanges handshakes (with the BEP 10
//!    bit set), refuses a wrong info-hash or our own peer id, and reports
//!    [`PeerEvent::Connected`](crate::piece_manager::PeerEvent::Connected).
//! 3. The manager answers [`PeerCommand::Start`] with the torrent's
//!    [`Loaded`] content and our bitfield, or, while the torrent is still
//!    fetching its metadata (a magnet link), [`PeerCommand::FetchMetadata`]:
//!    the thread then exchanges extended handshakes and fetches the metadata
//!    pieces the manager asks for ([`fetching`]), holding back the remote's
//!    other messages until `Start` comes ([`PeerCommand::Shutdown`] refuses
//!    the peer). The thread sends our bitfield and extended handshake
//!    ([`extensions`]).
//! 4. Main loop ([`conn`]): the thread decodes messages, tells the manager what
//!    the remote has, whether it chokes us and whether it is interested,
//!    fetches the pieces the manager assigns with a request pipeline sized to
//!    the remote's rate, hands each complete piece to the manager, and serves
//!    the remote's requests from [`Storage`] while the manager has it unchoked.
//!    A remote that stops sending blocks is snubbed: its pieces, with the
//!    blocks already received, go back to the manager for other peers.
//!    An idle connection sleeps in `poll()` on its socket until bytes or a
//!    command come ([`wake`]), so idle peers cost next to no CPU.
//! 5. On any exit it reports
//!    [`PeerEvent::Disconnected`](crate::piece_manager::PeerEvent::Disconnected)
//!    with a typed [`Disconnect`] reason (whose variant says whether the
//!    remote broke the protocol, which gets it banned) and the unfinished
//!    pieces, so the manager gives them to others.
//!
//! At `-vvv` (log target [`WIRE_TRACE`] at trace) each thread logs every
//! message it queues and decodes, one line each, in BEP 3's words
//! (`127.0.0.1:51413 -> request piece 12 begin 32768 length 16384`, `<-`
//! for what arrives; [`wire::Message`]'s `Display`). Whether to is read
//! once per connection, so the trace costs nothing when off.
//!
//! The thread reads and writes a [`transport::Stream`], not a socket, so an
//! encrypted stream can wrap the socket later. Not owned here: which pieces
//! to fetch (the manager decides) and the bytes of each message ([`wire`],
//! [`ext`]).

pub mod conn;
pub mod ext;
pub mod extensions;
pub mod fetching;
pub mod first_sent;
pub mod open;
pub mod pex;
pub mod pipeline;
pub mod reason;
pub mod requests;
pub mod transport;
pub mod wake;
pub mod wire;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};

use crossbeam_channel::{Receiver, Sender};

use crate::bitfield::Bitfield;
use crate::buffers::PieceBuffers;
use crate::client::pacing::DialPermit;
use crate::metainfo::InfoHash;
use crate::piece_manager::Event;
use crate::stats::Stats;
use crate::storage::Storage;
pub use reason::{Closed, Disconnect, Violation};
use transport::Stream;
use wire::{Handshake, PeerId};

/// The log target of the wire trace: `RUST_LOG=bittorrent::wire=trace`
/// shows it alone.
pub const WIRE_TRACE: &str = "bittorrent::wire";

/// Whether the wire trace is on: asked once per connection, never per
/// message.
pub(crate) fn wire_trace_on() -> bool {
    log::log_enabled!(target: WIRE_TRACE, log::Level::Trace)
}

/// The manager's handle on one connection: an id that is never reused.
pub type PeerKey = u64;

/// Commands from the piece manager to a peer thread.
#[derive(Debug)]
pub enum PeerCommand {
    /// The handshake is accepted and the torrent's content is known: send
    /// this bitfield and begin (also ends [`PeerCommand::FetchMetadata`]).
    Start {
        /// Our verified pieces.
        have: Bitfield,
        /// What the info dictionary brought: storage, buffers, raw bytes.
        loaded: Arc<Loaded>,
    },
    /// The handshake is accepted but the metadata is not known yet: exchange
    /// extended handshakes and wait for [`PeerCommand::RequestMetadata`].
    FetchMetadata,
    /// Ask the remote for this piece of the metadata (BEP 9).
    RequestMetadata(u32),
    /// Fetch a piece and report it when complete.
    Download(PieceJob),
    /// The manager now grants the whole of piece `index`, assigned as a
    /// probe ([`PieceJob::probe`]): fetch the rest of it. Ignored when the
    /// piece is no longer being fetched.
    Grow(u32),
    /// We now have piece `index`: tell the remote, and stop fetching it if we were.
    Have(u32),
    /// Stop uploading to the remote (send `choke`).
    Choke,
    /// Start uploading to the remote (send `unchoke`).
    Unchoke,
    /// Send the remote this `ut_pex` message (BEP 11); ignored unless its
    /// extended handshake offered `ut_pex`.
    Pex(pex::PexMessage),
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
    /// Fetch only the first few blocks, into a small buffer, until
    /// [`PeerCommand::Grow`] comes: a peer that has not shown it sends
    /// blocks costs a few KiB, not a piece (see [`pipeline`]).
    pub probe: bool,
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

pub use wake::CommandSender;

/// What every peer thread of a torrent shares from the start: identities,
/// counters and the channel to the manager. All of it is known from the
/// info-hash alone.
pub struct PeerContext {
    /// The torrent.
    pub info_hash: InfoHash,
    /// Our peer id (connections to it are refused).
    pub our_id: PeerId,
    /// The port we listen on, for the extended handshake's `p`.
    pub listen_port: u16,
    /// Transfer counters.
    pub stats: Arc<Stats>,
    /// Events to the piece manager.
    pub events_tx: Sender<Event>,
    /// Peer exchange (BEP 11) is on: `ut_pex` is offered and heard. Off
    /// for `--no-pex` and private torrents (BEP 27), which a magnet's
    /// torrent may turn out to be once its metadata arrives.
    pub pex: AtomicBool,
    /// The process's DHT node, for a torrent that may use it (not private):
    /// our handshake sets the DHT bit, our `port` message goes to peers
    /// that set theirs, and theirs are added as nodes (BEP 5).
    pub dht: Option<crate::dht::node::DhtHandle>,
    /// The DHT is still on for the torrent: off once a magnet's metadata
    /// says the torrent is private (BEP 27).
    pub dht_on: AtomicBool,
    /// The process's rate limits, shared with every other torrent's peers:
    /// each block received or sent is charged ([`conn`]).
    pub bandwidth: crate::bandwidth::Bandwidth,
    /// The address our connections go out from (`--bind`), or `None` for
    /// the system's choice.
    pub local_ip: Option<std::net::IpAddr>,
}

impl PeerContext {
    /// The DHT node's port to send in our `port` message, when the DHT is
    /// on for the torrent.
    pub fn dht_port(&self) -> Option<u16> {
        self.dht
            .as_ref()
            .filter(|_| self.dht_on.load(Ordering::Relaxed))
            .map(crate::dht::node::DhtHandle::port)
    }

    /// A peer's `port` message: its DHT node is at `addr`.
    pub fn dht_node_seen(&self, addr: SocketAddr) {
        if let Some(dht) = self
            .dht
            .as_ref()
            .filter(|_| self.dht_on.load(Ordering::Relaxed))
        {
            dht.add_node(addr);
        }
    }

    /// Turns the DHT off for the torrent for good (it is private).
    pub fn disable_dht(&self) {
        self.dht_on.store(false, Ordering::Relaxed);
    }

    /// Whether peer exchange is on for the torrent.
    pub fn pex_enabled(&self) -> bool {
        self.pex.load(Ordering::Relaxed)
    }

    /// Turns peer exchange off for good (the torrent is private).
    pub fn disable_pex(&self) {
        self.pex.store(false, Ordering::Relaxed);
    }
}

/// What a torrent's info dictionary brings, handed to each peer thread with
/// [`PeerCommand::Start`].
pub struct Loaded {
    /// The content, for serving requests.
    pub storage: Arc<Storage>,
    /// Idle piece buffers, for the pieces it fetches.
    pub buffers: PieceBuffers,
    /// The raw `info` dictionary, served to peers that fetch it (BEP 9).
    pub info_bytes: Arc<[u8]>,
    /// Which connection each piece went out to first, so that with an
    /// upload limit new pieces go out before repeats ([`first_sent`]).
    pub first_sent: first_sent::FirstSent,
}

impl std::fmt::Debug for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Loaded({} bytes of metadata)", self.info_bytes.len())
    }
}

/// Where a connection comes from.
pub enum Origin {
    /// We dial this address, holding a place among the connects in flight
    /// until the TCP connect returns.
    Outgoing(SocketAddr, DialPermit),
    /// The client accepted this stream and read the remote's handshake.
    Incoming(Stream, Handshake),
}

/// Spawns the thread for one connection, named after the peer's address;
/// it parks on `waker` while idle ([`wake`]).
///
/// # Errors
/// The OS error when the thread cannot be created.
pub fn spawn(
    key: PeerKey,
    addr: SocketAddr,
    origin: Origin,
    ctx: Arc<PeerContext>,
    counters: Arc<PeerCounters>,
    (cmd_rx, waker): (Receiver<PeerCommand>, Arc<wake::Waker>),
) -> std::io::Result<JoinHandle<()>> {
    thread::Builder::new()
        .name(format!("peer {addr}"))
        // A peer thread keeps its buffers on the heap: a small stack will do.
        .stack_size(PEER_STACK_LEN)
        .spawn(move || open::run(key, addr, origin, &ctx, &counters, &cmd_rx, waker))
}

/// The stack of a peer thread: virtual memory, of which only the pages a
/// thread touches are resident.
pub const PEER_STACK_LEN: usize = 512 * 1024;
