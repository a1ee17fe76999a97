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
