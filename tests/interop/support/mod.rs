//! Helpers for the interop suite: child processes with guards, opentracker,
//! content and torrents made by mktorrent, the clients themselves, and a DHT
//! on loopback.

pub mod clients;
pub mod content;
pub mod dht;
pub mod opentracker;
pub mod process;

use std::path::Path;

use clients::{Client, START_TIMEOUT};
use content::{Made, Shape};
use opentracker::Tracker;
use process::free_port;

/// The environment variable that runs the rows written for our client with
/// another client in its place: `INTEROP_STAND_IN=libtorrent` checks that a
/// row's other clients, tracker and design work, so that when the row fails
/// with ours the fault is ours.
pub const STAND_IN_VAR: &str = "INTEROP_STAND_IN";

/// The client that plays "ours" in the rows that use this: our binary, or
/// the client `INTEROP_STAND_IN` names (only `libtorrent` is accepted).
pub fn ours() -> Client {
    match std::env::var(STAND_IN_VAR).as_deref() {
        Err(_) | Ok("") | Ok("ours") => Client::Ours,
        Ok("libtorrent") => Client::Libtorrent,
        Ok(other) => panic!("{STAND_IN_VAR}={other}: expected libtorrent (or ours)"),
    }
}

/// How the torrent of a [`Swarm`] finds peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Announce {
    /// The test's opentracker over HTTP (`http://127.0.0.1:PORT/announce`).
    Http,
    /// The same opentracker over UDP, BEP 15 (`udp://127.0.0.1:PORT/announce`).
    Udp,
    /// No tracker in the torrent, and none started: peers come from
    /// `--peer`, peer exchange or the DHT only.
    None,
}

/// The ground every test stands on: a fresh folder, the content of `shape`
/// with its mktorrent torrent, and (unless [`Announce::None`]) an
/// opentracker that tracks it.
pub struct Swarm {
    /// The torrent and its content.
    pub made: Made,
    /// The tracker named by the torrent, if it names one.
    pub tracker: Option<Tracker>,
    dir: tempfile::TempDir,
}

impl Swarm {
    /// Makes the content and torrent of `shape`, announcing over HTTP, and
    /// starts their tracker.
    pub fn new(shape: Shape) -> Swarm {
        Swarm::with(shape, Announce::Http)
    }

    /// Makes the content and torrent of `shape`, whose announce URL is
    /// given by `announce`, and starts its tracker if it has one.
    pub fn with(shape: Shape, announce: Announce) -> Swarm {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let url = match announce {
            Announce::Http => Some(Tracker::announce_url(port)),
            Announce::Udp => Some(Tracker::udp_announce_url(port)),
            Announce::None => None,
        };
        let made = content::make(shape, dir.path(), url.as_deref());
        let tracker = url.map(|_| Tracker::start(dir.path(), port, &[made.info_hash]));
        Swarm { made, tracker, dir }
    }

    /// The folder the clients of this test work in.
    pub fn work(&self) -> &Path {
        self.dir.path()
    }

    fn tracker(&self) -> &Tracker {
        self.tracker.as_ref().expect("a swarm with a tracker")
    }

    /// Waits until the tracker has heard from `seeders` seeders and
    /// `downloaders` downloaders, so a client started next learns of them in
    /// its first announce. (The tracker's HTTP scrape also counts the peers
    /// that announced over UDP.)
    pub fn wait_for_announces(&self, seeders: i64, downloaders: i64) {
        self.tracker()
            .wait_for_peers(self.made.info_hash, seeders, downloaders, START_TIMEOUT);
    }

    /// Waits until the tracker has heard from `peers` peers, seeders or
    /// not. For a downloader that came by magnet link: until it has the
    /// info dictionary it may announce `left=0` and be counted a seeder
    /// (aria2 1.36 does).
    pub fn wait_for_any_announces(&self, peers: i64) {
        self.tracker()
            .wait_for_any_peers(self.made.info_hash, peers, START_TIMEOUT);
    }
}
