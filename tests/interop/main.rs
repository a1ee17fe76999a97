//! The interoperability suite: our client against independent
//! implementations, over loopback, with peers finding each other through a
//! real tracker (Debian's opentracker).
//!
//! It needs the real clients installed, so it is built only with the
//! `interop` feature: `bash tests/interop/run.sh` installs them (Debian
//! packages, as root) and runs it. The clients are libtorrent-rasterbar
//! (python3-libtorrent, driven by `lt_peer.py`), aria2 and Transmission; a
//! missing one fails the test that needs it with the package to install.
//!
//! The rows of `udp`, `ipv6`, `pex` and `dht` run with libtorrent in place of ours
//! when `INTEROP_STAND_IN=libtorrent` is set: a check of the row itself (its
//! other clients, the tracker's UDP port, the design), so that when the row
//! fails with ours the fault is ours.
//!
//! Table of contents:
mod support;

/// Each client seeds, ours downloads; ours seeds, each client downloads;
/// for a single file with a short last piece and a multi-file torrent with
/// nested folders, both made by mktorrent.
mod matrix;

/// Magnet links (BEP 9 ut_metadata over the BEP 10 extension protocol):
/// ours downloads by magnet from each client, each client downloads by
/// magnet from ours, fetching the info dictionary from the other side; and
/// a magnet link with only a peer address (`x.pe`), no tracker.
mod magnet;

/// Swarms mixing clients: theirs and ours seeding together to ours, ours
/// seeding to two of theirs at once.
mod mixed;

/// Through opentracker's UDP port (BEP 15): ours downloads from libtorrent,
/// aria2 and Transmission seeders announcing there, and each of them
/// downloads from our seeder, every client finding the other through its
/// UDP announce.
mod udp;

/// One transfer each way with libtorrent over `::1` only (BEP 7): both
/// sides listen on `[::1]` and know each other only as `[::1]:PORT`.
mod ipv6;

/// Peer exchange (BEP 11): ours completes from a seeder that only
/// libtorrent's `ut_pex` messages name (no tracker, no `--peer`).
mod pex;

/// The DHT (BEP 5) on 127.0.0.1, with a libtorrent node as every peer's
/// first contact: ours finds a libtorrent or aria2 seeder through the DHT
/// alone, by magnet, and a libtorrent or aria2 downloader finds our seeder
/// with our node as its only contact.
mod dht;

/// `bittorrent create` against mktorrent (the same info dictionary, byte for
/// byte, and the same tiers) for a single file, a nested folder with
/// names that sort differently by component and by whole path, and a
/// private torrent with a source; libtorrent, aria2 and Transmission open
/// what it makes.
mod create;
