//! The messages a torrent's manager thread receives, on one channel: peer
//! events, connections routed by the client, peer addresses, shutdown.
//! Each enum lives with its receiver, the manager.

use std::net::SocketAddr;

use crate::bitfield::Bitfield;
use crate::peer::extensions::RemoteExtensions;
use crate::peer::pex::PexMessage;
use crate::peer::transport::Stream;
use crate::peer::wire::{Handshake, PeerId};
use crate::peer::{Disconnect, Partial, PeerKey};
use crate::peer_list::PeerSource;

/// Everything a torrent's manager hears about, on one channel.
pub enum Event {
    /// Something happened on a peer connection.
    Peer {
        /// Which connection.
        key: PeerKey,
        /// What happened.
        event: PeerEvent,
    },
    /// The client accepted a connection for this torrent and read the
    /// remote's handshake.
    Incoming(Stream, Handshake, SocketAddr),
    /// Peer addresses to dial, and where they come from (a tracker,
    /// `--peer` or `x.pe`).
    Peers(Vec<SocketAddr>, PeerSource),
    /// Stop the torrent (Ctrl-C, or the caller's shutdown handle).
    Shutdown,
}

impl std::fmt::Debug for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Event::Peer { key, event } => write!(f, "Peer({key}, {event:?})"),
            Event::Incoming(_, _, addr) => write!(f, "Incoming({addr})"),
            Event::Peers(addrs, source) => write!(f, "Peers({addrs:?}, from {source})"),
            Event::Shutdown => f.write_str("Shutdown"),
        }
    }
}

/// What a peer thread reports.
#[derive(Debug)]
pub enum PeerEvent {
    /// Handshake done; the manager must answer with `Start`,
    /// `FetchMetadata` or `Shutdown`.
    Connected {
        /// The remote's peer id.
        peer_id: PeerId,
    },
    /// The remote's extended handshake (BEP 10), as far as it matters.
    Extensions(RemoteExtensions),
    /// A `ut_pex` message (BEP 11): peers the remote knows.
    Pex(PexMessage),
    /// A piece of the metadata (BEP 9), not yet checked.
    MetadataPiece {
        /// Metadata piece index.
        piece: u32,
        /// The total size the remote gave.
        total_size: u32,
        /// The piece's bytes.
        data: Vec<u8>,
    },
    /// The remote will not send this metadata piece.
    MetadataRejected(u32),
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
    /// The first blocks of a piece assigned as a probe arrived: the remote
    /// sends blocks, and may be granted the whole piece
    /// ([`PeerCommand::Grow`](crate::peer::PeerCommand::Grow)).
    Probed(u32),
    /// A complete piece, not yet verified.
    Piece {
        /// Piece index.
        index: u32,
        /// Its bytes.
        data: Vec<u8>,
    },
    /// The connection ended; always the last event of a peer.
    Disconnected {
        /// Why; the variant says whether the remote is banned.
        reason: Disconnect,
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
