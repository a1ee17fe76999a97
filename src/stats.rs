//! Transfer counters shared by every thread of a session.
//!
//! Plain atomics rather than messages: peer threads add to them per block
//! served, the piece manager per piece, and the tracker and progress display
//! only read them. The list of banned peers and the set of peers seen are
//! the exceptions, written only by the torrent's own thread (a lock taken
//! once per connection, never per block). The end-of-run summary
//! ([`crate::summary`]) is read from here.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

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
    /// Payload bytes received and thrown away: late or duplicate blocks,
    /// endgame copies of pieces another peer delivered first, pieces that
    /// failed the hash check and the kept blocks dropped with them.
    pub wasted: AtomicU64,
    /// When the download became complete in this run (set once; not set
    /// in a seed run).
    pub completed_at: OnceLock<Instant>,
    /// Addresses banned for lying or breaking the protocol, in order.
    banned: Mutex<Vec<SocketAddr>>,
    /// The distinct peers that got past the handshake: by IP and peer id,
    /// so a peer that reconnects from another port counts once.
    seen: Mutex<HashSet<(IpAddr, [u8; 20])>>,
}

/// Most distinct peers remembered for the summary (about 3 MiB at most).
const MAX_SEEN: usize = 65_536;

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

    /// Records that a peer got past the handshake.
    pub fn add_seen(&self, ip: IpAddr, peer_id: [u8; 20]) {
        // Bounded: a peer reconnecting with a new id each time must not
        // grow it for ever; past the bound the count says "at least".
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if seen.len() < MAX_SEEN {
            seen.insert((ip, peer_id));
        }
    }

    /// How many distinct peers got past the handshake so far.
    pub fn seen_count(&self) -> usize {
        self.seen
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .len()
    }

    /// How many addresses are banned so far.
    pub fn banned_count(&self) -> usize {
        self.banned
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .len()
    }

    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_seen_are_counted_once_each_and_the_set_stays_bounded() {
        let stats = Stats::default();
        stats.add_seen([127, 0, 0, 1].into(), [1; 20]);
        stats.add_seen([127, 0, 0, 1].into(), [1; 20]);
        assert_eq!(stats.seen_count(), 1);
        // A peer that comes back with a new id every time.
        for n in 0..MAX_SEEN as u32 + 100 {
            let mut id = [0; 20];
            id[..4].copy_from_slice(&n.to_be_bytes());
            stats.add_seen([127, 0, 0, 2].into(), id);
        }
        assert_eq!(stats.seen_count(), MAX_SEEN);
    }
}
