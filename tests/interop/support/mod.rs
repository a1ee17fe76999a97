//! Helpers for the interop suite: child processes with guards, opentracker,
//! content and torrents made by mktorrent, and the clients themselves.

pub mod clients;
pub mod content;
pub mod opentracker;
pub mod process;

use std::path::Path;

use clients::START_TIMEOUT;
use content::{Made, Shape};
use opentracker::Tracker;
use process::free_port;

/// The ground every test stands on: a fresh folder, the content of `shape`
/// with its mktorrent torrent, and an opentracker that tracks it.
pub struct Swarm {
    /// The torrent and its content.
    pub made: Made,
    /// The tracker named by the torrent.
    pub tracker: Tracker,
    dir: tempfile::TempDir,
}

impl Swarm {
    /// Makes the content and torrent of `shape` and starts their tracker.
    pub fn new(shape: Shape) -> Swarm {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let made = content::make(shape, dir.path(), &Tracker::announce_url(port));
        let tracker = Tracker::start(dir.path(), port, &[made.info_hash]);
        Swarm { made, tracker, dir }
    }

    /// The folder the clients of this test work in.
    pub fn work(&self) -> &Path {
        self.dir.path()
    }

    /// Waits until the tracker has heard from `seeders` seeders and
    /// `downloaders` downloaders, so a client started next learns of them in
    /// its first announce.
    pub fn wait_for_announces(&self, seeders: i64, downloaders: i64) {
        self.tracker
            .wait_for_peers(self.made.info_hash, seeders, downloaders, START_TIMEOUT);
    }

    /// Waits until the tracker has heard from `peers` peers, seeders or
    /// not. For a downloader that came by magnet link: until it has the
    /// info dictionary it may announce `left=0` and be counted a seeder
    /// (aria2 1.36 does).
    pub fn wait_for_any_announces(&self, peers: i64) {
        self.tracker
            .wait_for_any_peers(self.made.info_hash, peers, START_TIMEOUT);
    }
}
