//! The addresses we may dial: from the tracker and `--peer`, with a backoff
//! for addresses that fail and a ban list for peers that lied or broke the
//! protocol. Pure data structure: no sockets, time passed in.
//!
//! An address is dialled at once when learned; one that cannot be reached
//! (or drops us during the handshake) is tried again after
//! [`FIRST_RETRY`], doubling each time up to [`MAX_RETRY`], and forgotten
//! after [`MAX_FAILURES`] failures in a row. One that worked and then went
//! away is tried again after [`FIRST_RECONNECT`] the first time (Transmission
//! 3.00 closes every connection once it has a magnet's metadata, checks its
//! files, and waits to be dialled again), then after [`RECONNECT_AFTER`]. A
//! banned address is never
//! dialled again.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Wait before the first retry of an address that failed.
pub const FIRST_RETRY: Duration = Duration::from_secs(5);
/// Longest wait between retries.
pub const MAX_RETRY: Duration = Duration::from_secs(300);
/// Failures in a row after which an address is forgotten.
pub const MAX_FAILURES: u32 = 6;
/// Wait before dialling again a peer that worked and then disconnected.
pub const RECONNECT_AFTER: Duration = Duration::from_secs(30);
/// The same wait, the first time a peer that worked disconnects.
pub const FIRST_RECONNECT: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, Copy)]
struct Known {
    failures: u32,
    /// Working connections that ended.
    reconnects: u32,
    next_try: Instant,
    connected: bool,
}

/// Dialable addresses, their retry times, and the banned ones.
#[derive(Debug, Default)]
pub struct PeerList {
    known: HashMap<SocketAddr, Known>,
    banned: HashSet<SocketAddr>,
}

impl PeerList {
    /// An empty list.
    pub fn new() -> PeerList {
        PeerList::default()
    }

    /// Learns `addr` (from a tracker or the command line); an address
    /// already known keeps its state, a banned one is ignored.
    pub fn add(&mut self, addr: SocketAddr, now: Instant) {
        if self.banned.contains(&addr) {
            return;
        }
        self.known.entry(addr).or_insert(Known {
            failures: 0,
            reconnects: 0,
            next_try: now,
            connected: false,
        });
    }

    /// An address that may be dialled now, marked as connected; `None` when
    /// every known address is connected, waiting for its retry, or banned.
    pub fn next_to_dial(&mut self, now: Instant) -> Option<SocketAddr> {
        let (&addr, known) = self
            .known
            .iter_mut()
            .filter(|(_, k)| !k.connected && k.next_try <= now)
            .min_by_key(|(_, k)| (k.failures, k.next_try))?;
        known.connected = true;
        Some(addr)
    }

    /// Whether some address waits to be dialled later (or now).
    pub fn has_candidates(&self) -> bool {
        self.known.values().any(|k| !k.connected)
    }

    /// A dial of `addr` failed before the peer became useful: retry later
    /// with backoff, or forget it after too many failures.
    pub fn failed(&mut self, addr: SocketAddr, now: Instant) {
        let Some(known) = self.known.get_mut(&addr) else {
            return;
        };
        known.failures += 1;
        known.connected = false;
        if known.failures >= MAX_FAILURES {
            self.known.remove(&addr);
            return;
        }
        let backoff = FIRST_RETRY.saturating_mul(1 << (known.failures - 1).min(16));
        known.next_try = now + backoff.min(MAX_RETRY);
    }

    /// A working connection to `addr` ended: it may be dialled again later.
    pub fn disconnected(&mut self, addr: SocketAddr, now: Instant) {
        if let Some(known) = self.known.get_mut(&addr) {
            known.failures = 0;
            known.connected = false;
            let wait = if known.reconnects == 0 {
                FIRST_RECONNECT
            } else {
                RECONNECT_AFTER
            };
            known.reconnects += 1;
            known.next_try = now + wait;
        }
    }

    /// Never dial `addr` again.
    pub fn ban(&mut self, addr: SocketAddr) {
        self.known.remove(&addr);
        self.banned.insert(addr);
    }

    /// Whether `addr` is banned.
    pub fn is_banned(&self, addr: SocketAddr) -> bool {
        self.banned.contains(&addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn a_new_address_is_dialled_once_until_it_ends() {
        let mut list = PeerList::new();
        let now = Instant::now();
        list.add(addr(1), now);
        list.add(addr(1), now);
        assert_eq!(list.next_to_dial(now), Some(addr(1)));
        assert_eq!(list.next_to_dial(now), None, "already being dialled");
    }

    #[test]
    fn failed_addresses_are_retried_with_doubling_backoff_then_forgotten() {
        let mut list = PeerList::new();
        let mut now = Instant::now();
        list.add(addr(1), now);
        let mut backoff = FIRST_RETRY;
        for _ in 0..MAX_FAILURES - 1 {
            assert_eq!(list.next_to_dial(now), Some(addr(1)));
            list.failed(addr(1), now);
            let early = now + backoff - Duration::from_millis(1);
            assert_eq!(list.next_to_dial(early), None, "not before {backoff:?}");
            now += backoff;
            backoff = (backoff * 2).min(MAX_RETRY);
        }
        assert_eq!(list.next_to_dial(now), Some(addr(1)));
        list.failed(addr(1), now);
        assert!(
            !list.has_candidates(),
            "forgotten after {MAX_FAILURES} failures"
        );
    }

    #[test]
    fn a_peer_that_worked_is_dialled_again_after_a_pause() {
        let mut list = PeerList::new();
        let now = Instant::now();
        list.add(addr(1), now);
        list.next_to_dial(now);
        list.disconnected(addr(1), now);
        assert_eq!(list.next_to_dial(now), None);
        let later = now + FIRST_RECONNECT;
        assert_eq!(
            list.next_to_dial(later),
            Some(addr(1)),
            "soon, the first time"
        );
        list.disconnected(addr(1), later);
        assert_eq!(list.next_to_dial(later + FIRST_RECONNECT), None);
        assert_eq!(
            list.next_to_dial(later + RECONNECT_AFTER),
            Some(addr(1)),
            "after a pause, later"
        );
    }

    #[test]
    fn banned_addresses_are_never_dialled_nor_learned_again() {
        let mut list = PeerList::new();
        let now = Instant::now();
        list.add(addr(1), now);
        list.ban(addr(1));
        list.add(addr(1), now);
        assert!(list.is_banned(addr(1)));
        assert_eq!(list.next_to_dial(now + MAX_RETRY), None);
    }

    #[test]
    fn addresses_that_never_failed_are_dialled_first() {
        let mut list = PeerList::new();
        let now = Instant::now();
        list.add(addr(1), now);
        list.next_to_dial(now);
        list.failed(addr(1), now);
        list.add(addr(2), now);
        let later = now + MAX_RETRY;
        assert_eq!(list.next_to_dial(later), Some(addr(2)));
        assert_eq!(list.next_to_dial(later), Some(addr(1)));
    }
}
