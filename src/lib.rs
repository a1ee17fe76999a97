//! `bittorrent`: a small, synchronous, multi-threaded BitTorrent client (BEP 3).
//!
//! # Architecture
//!
//! ```text
//! cli ─► session::Session: parses each input (.torrent or magnet link)
//!          ├─ client::Client (one per process): peer id, listen sockets (IPv4 and IPv6,
//!          │     one port), connection budget, pace of our connects, rate limits
//!          │     (bandwidth)
//!          │     `listener` threads ─► `incoming ADDR`: read the handshake, route it by info-hash
//!          │     `dht` thread (dht::node): one UDP socket, answers nodes, looks up and
//!          │           announces each torrent ─► peers ─► that torrent's events
//!          └─ torrent::Torrent (one per info-hash), states:
//!                fetching metadata ─► checking ─► downloading ─► seeding
//!                ├─ `tracker tier N` threads, one per tier: announce (HTTP, UDP), peers ─► events
//!                └─ `torrent NAME` thread, owner of the peer_table::PeerTable:
//!                     1. metadata_phase (magnets): ut_metadata pieces ─► metadata::MetadataFetch
//!                     2. storage check (resume), then the piece_manager::PieceManager
//!                          ◄── events (bounded channel) ── `peer ADDR` threads (any byte stream)
//!                          ─── commands (unbounded, per peer) ──►
//!                          └─ jobs ─► `verify-N` threads (one per core): SHA-1, write ─► results
//! ```
//!
//! The [`client`] is process scope: one listen port and one `--max-peers`
//! budget for every torrent; it reads each incoming handshake and hands the
//! stream to the [`torrent`] whose info-hash it names. A torrent starts from
//! what the info-hash allows (routing, trackers, peer connections); layout,
//! storage, picker and verifier are created when the `info` dictionary is
//! known, from the `.torrent` or, for a [`magnet`] link, from peers
//! ([`torrent::metadata_phase`], BEP 9 over the BEP 10 extension protocol,
//! [`peer::ext`]). The peer connections opened to fetch the metadata stay
//! open: each peer thread holds the remote's other messages back until the
//! content is known ([`peer::fetching`]).
//!
//! A block's journey: the [`piece_manager`] assigns piece `i` to a peer thread
//! ([`peer::PeerCommand::Download`]) while its byte budget of piece buffers
//! allows ([`piece_manager::budget`]; a peer not proven yet gets a probe of
//! the piece's first blocks); the thread ([`peer::conn`]) keeps many
//! 16 KiB requests in flight ([`peer::pipeline`], never more than the
//! remote's `reqq`), copies each arriving block straight from its read
//! buffer into the piece's buffer, and when the last block lands sends the whole
//! piece to the manager ([`piece_manager::PeerEvent::Piece`]), one message per
//! piece. The manager hands it to its [`verifier`] workers, which hash it on
//! another core and write it with positional I/O through [`storage::Storage`]
//! (straight to the disk, past the page cache, where the file system allows),
//! while the manager goes on assigning work. When a worker reports it good, the
//! manager marks it had in the [`piece_picker`] and tells every peer
//! ([`peer::PeerCommand::Have`]); the piece's buffer goes back to a pool
//! ([`buffers`]) for the next piece. Peers serve other peers' requests by
//! reading from the same storage, and serve the metadata to peers that
//! fetch it by magnet.
//!
//! A download may fetch some files only ([`selection`], `--files` and
//! `--exclude`): the pieces that hold none of their bytes are not wanted,
//! so the [`piece_picker`] never picks them, peers are asked only for the
//! others, and the torrent is complete without them; [`storage`] creates
//! only the chosen files and keeps the other files' bytes of shared pieces
//! in a part file, so each piece is still verified whole.
//!
//! Peers are found through the trackers, `--peer`, incoming connections,
//! peer exchange ([`peer::pex`], BEP 11) and the [`dht`] (BEP 5): the
//! [`peer_table`] tells each peer once a minute which peers came and went
//! ([`peer_table::pex`]) and puts the addresses it is told into the
//! [`peer_list`], which remembers each address's
//! [`peer_list::PeerSource`]. The client's DHT node
//! ([`dht::node::DhtNode`]) is pure parts ([`dht::routing`],
//! [`dht::lookup`], [`dht::krpc`], ...) driven by [`dht::engine`] on one
//! thread; a torrent asks it through a [`dht::node::DhtHandle`]. A private
//! torrent (BEP 27, [`metainfo::Metainfo::private`]) uses neither peer
//! exchange nor the DHT.
//!
//! The client also holds the process's rate limits ([`bandwidth`],
//! `--max-download-rate` and `--max-upload-rate`): one token bucket per
//! direction, shared by every peer thread of every torrent, which charges
//! each block a thread reads or serves and tells it how long to hold back.
//! With an upload limit, a piece already sent to one connection waits on
//! the others while the limit has no spare bytes ([`peer::first_sent`]), so
//! a scarce seeder sends every piece once before it sends any twice.
//!
//! Policy is pure code too, each piece tested with a fake clock: the
//! [`piece_picker`] (partial pieces first, a few random ones, then rarest
//! first, and endgame; no pick or `have` looks at every piece), the
//! [`choker`] (upload slots by rate plus an optimistic unchoke), the [`peer_list`] (whom to dial, backoff, bans), the
//! [`blame`] for pieces that fail their hash, the [`metadata`] fetch, and
//! each peer's request [`peer::pipeline`] (sized to its rate; a peer that
//! stops sending blocks is snubbed and its pieces, with the blocks already
//! received, go to others). Why a connection ended is a type
//! ([`peer::Disconnect`]): its variant, not its text, decides a ban.
//!
//! What a hostile peer, tracker or torrent can do is bounded where it
//! enters. The [`client`] gives each handshake one deadline, caps pending
//! handshakes and incoming connections per IP, keeps a fifth of the budget
//! for our own dials, limits and paces our connects in flight
//! ([`client::pacing`]: a thousand dead addresses open a few sockets at a
//! time, and torrents share the places fairly), and backs off when `accept()` runs out of descriptors; the [`peer_table`] evicts idle incoming peers when a
//! useful one needs the slot, and bans by IP, never by the peer id a remote
//! chooses; the [`peer_list`] keeps a bounded number of addresses in a
//! queue by retry time. [`storage`] reaches every file below `DEST` from
//! `DEST`'s descriptor without following a symbolic link, refuses hard
//! links, longer unrelated files and FIFOs, and keeps a bounded cache of
//! open files. A `.torrent` that is not a regular file, or is larger than
//! [`metainfo::MAX_METAINFO_LEN`], is refused before it is read
//! ([`session`]); the [`metainfo`] loader refuses clashing paths and reads
//! only the keys it uses.
//!
//! A torrent that is complete seeds on while a [`seed_limit::SeedLimit`]
//! (`--seed-ratio`, `--seed-time`) allows; a download with none ends when
//! complete. What every thread counts goes to the torrent's [`stats`]; at
//! the end of the run [`summary::Summary`] reads them into one line (and a
//! `--json` line, as [`progress`] writes its lines then).
//!
//! Wire formats are pure code with no sockets: [`bencode`], [`metainfo`],
//! [`magnet`], [`peer::wire`], [`peer::ext`], [`peer::pex`], [`dht::krpc`],
//! the datagrams of [`tracker::udp::codec`], and the URL and response half
//! of [`tracker::http`]. Text that comes from outside is capped and escaped
//! by [`untrusted`] before it is printed. Size arithmetic lives in [`layout`].
//!
//! The [`tools`] are the verbs that need no swarm, each its own command
//! line (`main` hands them the arguments when the first names one):
//! [`tools::create`] lists a file or folder ([`tools::walk`], in
//! mktorrent's order), hashes its pieces on every core ([`tools::hash`])
//! and writes a .torrent with [`bencode`]'s writers, read back by
//! [`metainfo`]; [`tools::info`] shows a .torrent or a [`magnet`] link, as
//! text or JSON; [`tools::verify`] checks content against a torrent's
//! piece hashes, per file; `completions` and `man` are generated from the
//! clap definitions of both command lines.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod bandwidth;
pub mod bencode;
pub mod bitfield;
pub mod blame;
pub mod buffers;
pub mod choker;
pub mod cli;
pub mod client;
pub mod dht;
pub mod error;
pub mod layout;
pub mod magnet;
pub mod metadata;
pub mod metainfo;
pub mod peer;
pub mod peer_list;
pub mod peer_table;
pub mod piece_manager;
pub mod piece_picker;
pub mod progress;
pub mod seed_limit;
pub mod selection;
pub mod session;
pub mod stats;
pub mod storage;
pub mod summary;
pub mod tools;
pub mod torrent;
pub mod tracker;
pub mod untrusted;
pub mod verifier;

pub use error::Error;
