//! Transfer counters shared by every thread of a session.
//!
//! Plain atomics rather than messages: peer threads add to them per block
//! served, the piece manager per piece, and the tracker and progress display
//! only read them. The list of banned peers is the one exception, written
//! only by the piece manager.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Counters for one session.
#[derive(Debug, Default)]
pub struct Stats {
    /// Payload bytes sent to peers.
    pub uploaded: AtomicU64,
    /// Payload bytes of complete pieces received from peers (verified or not).
    pub downloaded: AtomicU64,
    /// Bytes of content still missing, of the wanted pieces only (those
    /// of the files chosen with `--files`/`--exclude`; every piece by default).
    pub left: AtomicU64,
    /// Bytes of the wanted pieces in all (0 until the metadata is known).
    pub total_len: AtomicU64,
    /// Verified pieces.
    pub have_pieces: AtomicU32,
    /// Peers past the handshake.
    pub peers: AtomicU32,
    /// Complete pieces that failed the hash check.
    pub hash_failures: AtomicU32,
    /// Addresses banned for lying or breaking the protocol, in order.
    banned: Mutex<Vec<SocketAddr>>,
}

impl Stats {
    /// Records that `addr` is banned.
    pub fn add_banned(&self, addr: SocketAddr) {
        self.banned
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(addr);
    }

    /// The addresses banned so far.
    pub fn banned(&self) -> Vec<SocketAddr> {
        self.banned
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
