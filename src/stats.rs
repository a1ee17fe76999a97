//! Transfer counters shared by every thread of a session.
//!
//! Plain atomics rather than messages: peer threads add to them per block
//! served, the piece manager per piece, and the tracker and progress display
//! only read them.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Counters for one session.
#[derive(Debug, Default)]
pub struct Stats {
    /// Payload bytes sent to peers.
    pub uploaded: AtomicU64,
    /// Payload bytes of complete pieces received from peers (verified or not).
    pub downloaded: AtomicU64,
    /// Bytes of content still missing.
    pub left: AtomicU64,
    /// Verified pieces.
    pub have_pieces: AtomicU32,
    /// Peers past the handshake.
    pub peers: AtomicU32,
}

impl Stats {
    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
