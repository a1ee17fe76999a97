//! The addresses we may dial: from trackers, `--peer` (and a magnet's
//! `x.pe`) and other peers' peer exchange (BEP 11), each tagged with its
//! [`PeerSource`], with a backoff for addresses that fail and a ban list for
//! peers that lied or broke the protocol. Pure data structure: no sockets,
//! time passed in.
//!
//! An address is dialled at once when learned; one that cannot be reached
//! (or drops us during the handshake) is tried again after
//! [`FIRST_RETRY`], doubling each time up to [`MAX_RETRY`], and forgotten
//! after [`MAX_FAILURES`] failures in a row. One that worked and then went
//! away is tried again after [`FIRST_RECONNECT`] the first time (Transmission
//! 3.00 closes every connection once it has a magnet's metadata, checks its
//! files, and waits to be dialled again), then after [`RECONNECT_AFTER`].
//!
//! Bans are by IP address, not address and port: a liar that reconnects
//! from a new port, or listens on several, stays out. A peer id is never
//! a reason for anything here, since the remote chooses it.
//!
//! Costs do not grow with the number of addresses: the next address to dial
//! comes from a queue ordered by retry time (O(log n) per dial), and at most
//! [`MAX_KNOWN`] addresses are kept, so a tracker answer of 100,000 peers
//! costs neither memory nor a dial storm.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// Where we heard of a peer, for the logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeerSource {
    /// A tracker's announce answer.
    Tracker,
    /// The DHT (BEP 5): a `get_peers` lookup's `values`.
    Dht,
    /// Another peer's `ut_pex` message (BEP 11).
    Pex,
    /// `--peer`, or a magnet link's `x.pe`.
    CommandLine,
    /// It connected to us.
    Incoming,
}

impl fmt::Display for PeerSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PeerSource::Tracker => "tracker",
            PeerSource::Pex => "PEX",
            PeerSource::Dht => "DHT",
            PeerSource::CommandLine => "command line",
            PeerSource::Incoming => "incoming",
        })
    }
}

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
/// Most addresses a torrent keeps (libtorrent keeps 3,000 by default, as
/// does Transmission's per-torrent pool): later ones are ignored until
/// failures make room.
pub const MAX_KNOWN: usize = 3000;

#[derive(Debug, Clone, Copy)]
struct Known {
    failures: u32,
    /// Working connections that ended.
    reconnects: u32,
    /// Being dialled or connected: not in the queue.
    connected: bool,
    /// Which queue entry is current; older ones are skipped when popped.
    ticket: u64,
    /// Where it was first heard of.
    source: PeerSource,
}

/// Dialable addresses, their retry times, and the banned IPs.
#[derive(Debug, Default)]
pub struct PeerList {
    known: HashMap<SocketAddr, Known>,
    /// Addresses waiting to be dialled, soonest first; an entry whose
    /// ticket is not its address's current one is stale.
    queue: BinaryHeap<Reverse<(Instant, u64, SocketAddr)>>,
    next_ticket: u64,
    /// Known addresses not being dialled nor connected.
    waiting: usize,
    banned: HashSet<IpAddr>,
}

impl PeerList {
    /// An empty list.
    pub fn new() -> PeerList {
        PeerList::default()
    }

    /// Learns `addr` from `source`; an address already known keeps its
    /// state (and source), a banned one is ignored, and so is a new one
    /// when [`MAX_KNOWN`] are known. Returns whether it was new.
    pub fn add(&mut self, addr: SocketAddr, source: PeerSource, now: Instant) -> bool {
        if self.banned.contains(&host_of(addr.ip()))
            || self.known.contains_key(&addr)
            || self.known.len() >= MAX_KNOWN
        {
            return false;
        }
        let ticket = self.enqueue(addr, now);
        self.known.insert(
            addr,
            Known {
                failures: 0,
                reconnects: 0,
                connected: false,
                ticket,
                source,
            },
        );
        self.waiting += 1;
        true
    }

    /// Where a known address was first heard of.
    pub fn source(&self, addr: SocketAddr) -> Option<PeerSource> {
        self.known.get(&addr).map(|k| k.source)
    }

    fn enqueue(&mut self, addr: SocketAddr, at: Instant) -> u64 {
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.queue.push(Reverse((at, ticket, addr)));
        ticket
    }

    /// An address that may be dialled now, marked as connected; `None` when
    /// every known address is connected, waiting for its retry, or banned.
    /// Addresses come out in the order of their retry times, then of when
    /// they were queued.
    pub fn next_to_dial(&mut self, now: Instant) -> Option<SocketAddr> {
        while let Some(&Reverse((at, ticket, addr))) = self.queue.peek() {
            let current = self
                .known
                .get(&addr)
                .is_some_and(|k| !k.connected && k.ticket == ticket);
            if current && at > now {
                return None;
            }
            self.queue.pop();
            if current {
                let known = self.known.get_mut(&addr).expect("checked above");
                known.connected = true;
                self.waiting -= 1;
                return Some(addr);
            }
        }
        None
    }

    /// Whether an address may be dialled now.
    pub fn is_due(&mut self, now: Instant) -> bool {
        while let Some(&Reverse((at, ticket, addr))) = self.queue.peek() {
            let current = self
                .known
                .get(&addr)
                .is_some_and(|k| !k.connected && k.ticket == ticket);
            if current {
                return at <= now;
            }
            self.queue.pop();
        }
        false
    }

    /// Whether some address waits to be dialled later (or now).
    pub fn has_candidates(&self) -> bool {
        self.waiting > 0
    }

    /// How many addresses are known.
    pub fn len(&self) -> usize {
        self.known.len()
    }

    /// Whether no address is known.
    pub fn is_empty(&self) -> bool {
        self.known.is_empty()
    }

    /// Puts a connected `addr` back in the queue, due at `at`.
    fn requeue(&mut self, addr: SocketAddr, at: Instant) {
        let ticket = self.enqueue(addr, at);
        let known = self.known.get_mut(&addr).expect("the caller checked");
        if known.connected {
            known.connected = false;
            self.waiting += 1;
        }
        known.ticket = ticket;
    }

    /// A dial of `addr` failed before the peer became useful: retry later
    /// with backoff, or forget it after too many failures.
    pub fn failed(&mut self, addr: SocketAddr, now: Instant) {
        let Some(known) = self.known.get_mut(&addr) else {
            return;
        };
        known.failures += 1;
        if known.failures >= MAX_FAILURES {
            self.forget(addr);
            return;
        }
        let backoff = FIRST_RETRY.saturating_mul(1 << (known.failures - 1).min(16));
        self.requeue(addr, now + backoff.min(MAX_RETRY));
    }

    /// A working connection to `addr` ended: it may be dialled again later.
    pub fn disconnected(&mut self, addr: SocketAddr, now: Instant) {
        let Some(known) = self.known.get_mut(&addr) else {
            return;
        };
        known.failures = 0;
        let wait = if known.reconnects == 0 {
            FIRST_RECONNECT
        } else {
            RECONNECT_AFTER
        };
        known.reconnects += 1;
        self.requeue(addr, now + wait);
    }

    fn forget(&mut self, addr: SocketAddr) {
        if let Some(known) = self.known.remove(&addr)
            && !known.connected
        {
            self.waiting -= 1;
        }
    }

    /// Never dial an address of `ip`'s host ([`host_of`]) again, nor
    /// learn one.
    pub fn ban(&mut self, ip: IpAddr) {
        let host = host_of(ip);
        if !self.banned.insert(host) {
            return;
        }
        let gone: Vec<SocketAddr> = self
            .known
            .keys()
            .filter(|a| host_of(a.ip()) == host)
            .copied()
            .collect();
        for addr in gone {
            self.forget(addr);
        }
    }

    /// Whether `addr`'s host ([`host_of`]) is banned.
    pub fn is_banned(&self, addr: SocketAddr) -> bool {
        self.banned.contains(&host_of(addr.ip()))
    }
}

/// The host an address stands for, the unit that bans, blame and per-IP
/// caps count: an IPv4 address itself, an IPv6 one by its /64 (one host
/// can pick any address of its /64, so counting addresses would bound
/// nothing; a /64 is what one IPv4 NAT address is, one site).
pub fn host_of(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => IpAddr::V6((v6.to_bits() & !((1u128 << 64) - 1)).into()),
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
        list.add(addr(1), PeerSource::Tracker, now);
        list.add(addr(1), PeerSource::Tracker, now);
        assert_eq!(list.next_to_dial(now), Some(addr(1)));
        assert_eq!(list.next_to_dial(now), None, "already being dialled");
    }

    #[test]
    fn failed_addresses_are_retried_with_doubling_backoff_then_forgotten() {
        let mut list = PeerList::new();
        let mut now = Instant::now();
        list.add(addr(1), PeerSource::Tracker, now);
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
        list.add(addr(1), PeerSource::Tracker, now);
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
    fn an_ipv6_ban_covers_the_whole_slash_64_and_no_other() {
        let mut list = PeerList::new();
        let now = Instant::now();
        let v6 = |s: &str| SocketAddr::new(s.parse().unwrap(), 6881);
        list.add(v6("2001:db8:0:7::1"), PeerSource::Tracker, now);
        list.add(v6("2001:db8:0:8::1"), PeerSource::Tracker, now);
        list.ban(v6("2001:db8:0:7:ffff::2").ip());
        assert!(list.is_banned(v6("2001:db8:0:7::1")), "same /64, known");
        assert!(list.is_banned(v6("2001:db8:0:7:aaaa::9")), "same /64, new");
        assert!(!list.is_banned(v6("2001:db8:0:8::1")), "another /64");
        assert_eq!(list.next_to_dial(now), Some(v6("2001:db8:0:8::1")));
        assert_eq!(list.next_to_dial(now), None, "the banned one is forgotten");
        list.add(v6("2001:db8:0:7::3"), PeerSource::Pex, now);
        assert_eq!(list.next_to_dial(now), None, "nor learned again");
        // A mapped IPv4 address is the IPv4 host it stands for.
        list.ban("10.0.0.1".parse().unwrap());
        assert!(list.is_banned(v6("::ffff:10.0.0.1")));
    }

    #[test]
    fn banned_addresses_are_never_dialled_nor_learned_again() {
        let mut list = PeerList::new();
        let now = Instant::now();
        list.add(addr(1), PeerSource::Tracker, now);
        list.add(addr(2), PeerSource::Tracker, now);
        list.ban(addr(1).ip());
        list.add(addr(1), PeerSource::Tracker, now);
        list.add(addr(3), PeerSource::Tracker, now);
        assert!(list.is_banned(addr(1)));
        assert!(list.is_banned(addr(3)), "every port of a banned IP");
        assert_eq!(list.next_to_dial(now + MAX_RETRY), None);
        assert!(!list.has_candidates());
        let other = SocketAddr::from(([127, 0, 0, 2], 1));
        list.add(other, PeerSource::Tracker, now);
        assert_eq!(list.next_to_dial(now), Some(other), "other IPs are not");
    }

    #[test]
    fn at_most_max_known_addresses_are_kept_and_failures_make_room() {
        let mut list = PeerList::new();
        let now = Instant::now();
        let many = |i: usize| SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 1));
        for i in 0..100_000 {
            list.add(many(i), PeerSource::Tracker, now);
        }
        assert_eq!(list.len(), MAX_KNOWN);
        // The first ones learned are kept, and dialled in that order.
        assert_eq!(list.next_to_dial(now), Some(many(0)));
        for _ in 0..MAX_FAILURES {
            list.failed(many(0), now);
        }
        assert_eq!(list.len(), MAX_KNOWN - 1, "forgotten after its failures");
        list.add(many(MAX_KNOWN), PeerSource::Tracker, now);
        assert_eq!(list.len(), MAX_KNOWN);
    }

    #[test]
    fn addresses_are_dialled_in_the_order_they_were_learned() {
        let mut list = PeerList::new();
        let now = Instant::now();
        for port in [5, 3, 9, 1] {
            list.add(addr(port), PeerSource::Tracker, now);
        }
        let order: Vec<u16> = std::iter::from_fn(|| list.next_to_dial(now))
            .map(|a| a.port())
            .collect();
        assert_eq!(order, [5, 3, 9, 1]);
        assert!(!list.has_candidates(), "all being dialled");
        assert!(!list.is_due(now));
        list.failed(addr(3), now);
        assert!(!list.is_due(now), "not before its retry");
        assert!(list.is_due(now + FIRST_RETRY));
    }

    #[test]
    fn addresses_that_never_failed_are_dialled_first() {
        let mut list = PeerList::new();
        let now = Instant::now();
        list.add(addr(1), PeerSource::Tracker, now);
        list.next_to_dial(now);
        list.failed(addr(1), now);
        list.add(addr(2), PeerSource::Tracker, now);
        let later = now + MAX_RETRY;
        assert_eq!(list.next_to_dial(later), Some(addr(2)));
        assert_eq!(list.next_to_dial(later), Some(addr(1)));
    }

    #[test]
    fn an_address_keeps_the_source_it_was_first_heard_from() {
        let mut list = PeerList::new();
        let now = Instant::now();
        assert!(list.add(addr(1), PeerSource::CommandLine, now));
        assert!(!list.add(addr(1), PeerSource::Pex, now), "known already");
        assert!(list.add(addr(2), PeerSource::Pex, now));
        assert_eq!(list.source(addr(1)), Some(PeerSource::CommandLine));
        assert_eq!(list.source(addr(2)), Some(PeerSource::Pex));
        assert_eq!(list.source(addr(3)), None);
        list.ban(addr(2).ip());
        assert!(!list.add(addr(4), PeerSource::Pex, now), "a banned IP");
        assert_eq!(PeerSource::Pex.to_string(), "PEX");
        assert_eq!(PeerSource::Dht.to_string(), "DHT");
        assert_eq!(PeerSource::CommandLine.to_string(), "command line");
    }
}
