//! A real tracker for the suite: Debian's opentracker on 127.0.0.1, one per
//! test, and its scrape page to see who has announced.
//!
//! It serves HTTP (TCP) and UDP (BEP 15) on the same port number (`-p` and
//! `-P`), over one swarm: a peer that announced over UDP is in the HTTP
//! scrape and in the answers to HTTP announces, and the other way round.
//!
//! Debian builds opentracker with a whitelist: it only tracks the info-hashes
//! listed in a file, so the torrents are made first (their announce URL names
//! the tracker's port) and the tracker is started with their hashes.

use std::fs;
use std::net::{Ipv4Addr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use bittorrent::metainfo::InfoHash;
use serde_bencode::value::Value;

use super::process::{Proc, require, wait_until};

/// How long the tracker may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A running opentracker, stopped when dropped.
pub struct Tracker {
    port: u16,
    _proc: Proc,
}

impl Tracker {
    /// Starts opentracker on 127.0.0.1:`port`, TCP (HTTP) and UDP, tracking
    /// only `info_hashes`; its files live in `dir`.
    pub fn start(dir: &Path, port: u16, info_hashes: &[InfoHash]) -> Tracker {
        require("opentracker", "opentracker");
        // opentracker chroots into its folder (as root it then drops to
        // `nobody`), so the folder must be world-readable and the whitelist
        // path is given relative to it.
        let root = dir.join("opentracker");
        fs::create_dir_all(&root).unwrap();
        let whitelist: String = info_hashes.iter().map(|h| format!("{h}\n")).collect();
        fs::write(root.join("whitelist.txt"), whitelist).unwrap();
        let mut command = Command::new("opentracker");
        command
            .args(["-i", "127.0.0.1", "-p", &port.to_string()])
            .args(["-P", &port.to_string()])
            .arg("-d")
            .arg(&root)
            .args(["-w", "/whitelist.txt"]);
        let mut proc = Proc::spawn("opentracker", command, dir);
        wait_until("opentracker to listen", START_TIMEOUT, || {
            if let Some(status) = proc.exited() {
                panic!("opentracker exited ({status}):\n{}", proc.output());
            }
            TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok()
        });
        Tracker { port, _proc: proc }
    }

    /// The announce URL for torrents of a tracker on `port`.
    pub fn announce_url(port: u16) -> String {
        format!("http://127.0.0.1:{port}/announce")
    }

    /// The UDP announce URL (BEP 15) of a tracker on `port`: the same
    /// tracker, on its UDP socket.
    pub fn udp_announce_url(port: u16) -> String {
        format!("udp://127.0.0.1:{port}/announce")
    }

    /// How many seeders (`complete`) and downloaders (`incomplete`) the
    /// tracker knows for `info_hash`, from its scrape page.
    pub fn scrape(&self, info_hash: InfoHash) -> (i64, i64) {
        let hash: String = info_hash.0.iter().map(|b| format!("%{b:02X}")).collect();
        let url = format!("http://127.0.0.1:{}/scrape?info_hash={hash}", self.port);
        let body = ureq::get(&url)
            .call()
            .and_then(|mut r| r.body_mut().read_to_vec())
            .unwrap_or_else(|e| panic!("scrape of {url} failed: {e}"));
        let value: Value = serde_bencode::from_bytes(&body)
            .unwrap_or_else(|e| panic!("scrape answer is not bencode ({e}): {body:?}"));
        let stats = dict_get(&value, b"files").and_then(|files| dict_get(files, &info_hash.0));
        let Some(stats) = stats else {
            return (0, 0);
        };
        let int = |key: &[u8]| match dict_get(stats, key) {
            Some(Value::Int(n)) => *n,
            _ => 0,
        };
        (int(b"complete"), int(b"incomplete"))
    }

    /// Waits until the tracker knows at least `seeders` seeders and
    /// `downloaders` downloaders of `info_hash`.
    pub fn wait_for_peers(
        &self,
        info_hash: InfoHash,
        seeders: i64,
        downloaders: i64,
        timeout: Duration,
    ) {
        let what =
            format!("the tracker to know {seeders} seeder(s) and {downloaders} downloader(s)");
        wait_until(&what, timeout, || {
            let (complete, incomplete) = self.scrape(info_hash);
            complete >= seeders && incomplete >= downloaders
        });
    }

    /// Waits until the tracker knows at least `peers` peers of `info_hash`,
    /// seeders and downloaders together.
    pub fn wait_for_any_peers(&self, info_hash: InfoHash, peers: i64, timeout: Duration) {
        let what = format!("the tracker to know {peers} peer(s), seeders or not");
        wait_until(&what, timeout, || {
            let (complete, incomplete) = self.scrape(info_hash);
            complete + incomplete >= peers
        });
    }
}

fn dict_get<'a>(value: &'a Value, key: &[u8]) -> Option<&'a Value> {
    match value {
        Value::Dict(dict) => dict.get(key),
        _ => None,
    }
}
