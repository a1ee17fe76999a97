//! `bittorrent`: a small, synchronous, multi-threaded BitTorrent client (BEP 3).
//!
//! # Architecture
//!
//! ```text
//! cli ─► session::Session::start
//!          ├─ metainfo: .torrent ─► validated Metainfo, info-hash over the raw `info` bytes
//!          ├─ storage: open/create files, check existing pieces (resume, or seed check)
//!          ├─ tracker: first announce (HTTP), then the `tracker` thread re-announces
//!          ├─ `listener` thread: accepted sockets ─► manager
//!          └─ `piece-manager` thread ◄── events (bounded channel) ── `peer ADDR` threads
//!                 │  owns piece state, picks pieces,                    ▲
//!                 │  broadcasts HAVE                                    │
//!                 ├──────────── commands (unbounded, per peer) ─────────┘
//!                 └─ jobs ─► `verify-N` threads (one per core): SHA-1, write ─► results
//! ```
//!
//! A block's journey: the [`piece_manager`] assigns piece `i` to a peer thread
//! ([`peer::PeerCommand::Download`]); the thread ([`peer::conn`]) keeps many
//! 16 KiB requests in flight ([`peer::pipeline`]), copies each arriving block straight from its read
//! buffer into the piece's buffer, and when the last block lands sends the whole
//! piece to the manager ([`piece_manager::PeerEvent::Piece`]), one message per
//! piece. The manager hands it to its [`verifier`] workers, which hash it on
//! another core and write it with positional I/O through [`storage::Storage`]
//! (straight to the disk, past the page cache, where the file system allows),
//! while the manager goes on assigning work. When a worker reports it good, the
//! manager marks it had in the [`piece_picker`] and tells every peer
//! ([`peer::PeerCommand::Have`]); the piece's buffer goes back to a pool
//! ([`buffers`]) for the next piece. Peers serve other peers' requests by
//! reading from the same storage.
//!
//! Policy is pure code too, each piece tested with a fake clock: the
//! [`piece_picker`] (partial pieces first, a few random ones, then rarest
//! first, and endgame), the [`choker`] (upload slots by rate plus an
//! optimistic unchoke), the [`peer_list`] (whom to dial, backoff, bans), and
//! each peer's request [`peer::pipeline`] (sized to its rate; a peer that
//! stops sending blocks is snubbed and its pieces, with the blocks already
//! received, go to others).
//!
//! Wire formats are pure code with no sockets: [`bencode`], [`metainfo`],
//! [`peer::wire`], and the URL and response half of [`tracker`]. Size arithmetic
//! lives in [`layout`].

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod bencode;
pub mod bitfield;
pub mod buffers;
pub mod choker;
pub mod cli;
pub mod error;
pub mod layout;
pub mod metainfo;
pub mod peer;
pub mod peer_list;
pub mod piece_manager;
pub mod piece_picker;
pub mod progress;
pub mod session;
pub mod stats;
pub mod storage;
pub mod tracker;
pub mod verifier;

pub use error::Error;
