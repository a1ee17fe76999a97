//! Peer exchange policy (BEP 11) for one torrent's connections: what to
//! tell each peer and when ([`PexOut`]), and how much to believe of what a
//! peer tells us ([`PexIn`]). Pure code with time passed in; the
//! [`PeerTable`](super::PeerTable) holds one of each per connection and
//! does the sending and the learning.
//!
//! Sending: the first message goes [`FIRST_AFTER`] after the remote's
//! extended handshake offered `ut_pex`, then one every [`INTERVAL`], each the
//! difference since the last: peers connected now that the remote was not
//! told of (`added`, at most [`MAX_ADDED`]) and peers it was told of that
//! are gone (`dropped`, at most [`MAX_DROPPED`]). What does not fit waits
//! for the next message. An empty difference sends nothing.
//!
//! Learning: one connection may feed us at most [`MAX_LEARNED_PER_PEER`]
//! addresses over its life; addresses with port 0, an unspecified,
//! multicast or broadcast IP, or that are our own listen address are
//! dropped before they count.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::peer::pex::{PexMessage, PexPeer};

/// Wait after the remote's extended handshake before the first message
/// (libtorrent sends its first soon after the connection is up).
pub const FIRST_AFTER: Duration = Duration::from_secs(2);
/// Wait between two messages to one peer (BEP 11: about once a minute).
pub const INTERVAL: Duration = Duration::from_secs(60);
/// Most peers in one message's `added` (BEP 11).
pub const MAX_ADDED: usize = 50;
/// Most peers in one message's `dropped` (BEP 11).
pub const MAX_DROPPED: usize = 50;
/// Most addresses one connection may feed us, in all its messages.
pub const MAX_LEARNED_PER_PEER: usize = 200;

/// What one remote has been told, and when it hears next.
#[derive(Debug, Clone)]
pub struct PexOut {
    told: HashSet<SocketAddr>,
    next_at: Instant,
}

impl PexOut {
    /// A remote whose extended handshake offered `ut_pex` at `now`.
    pub fn new(now: Instant) -> PexOut {
        PexOut {
            told: HashSet::new(),
            next_at: now + FIRST_AFTER,
        }
    }

    /// Whether a message is due.
    pub fn is_due(&self, now: Instant) -> bool {
        now >= self.next_at
    }

    /// The message due at `now`, given the peers connected now (`live`)
    /// and the remote's own addresses (`own`, never sent to it); `None`
    /// when none is due or there is nothing new to tell. A message due is
    /// counted as sent: the next one is due [`INTERVAL`] later. With
    /// nothing to tell, nothing is sent and the next look is
    /// [`FIRST_AFTER`] later, so a peer that connects just after is told
    /// of soon, not a minute on.
    pub fn next(
        &mut self,
        now: Instant,
        live: &[PexPeer],
        own: &[SocketAddr],
    ) -> Option<PexMessage> {
        if !self.is_due(now) {
            return None;
        }
        self.next_at = now + INTERVAL;
        let mut message = PexMessage::default();
        let mut seen = HashSet::new();
        for peer in live {
            seen.insert(peer.addr);
            if message.added.len() < MAX_ADDED
                && !own.contains(&peer.addr)
                && !self.told.contains(&peer.addr)
            {
                message.added.push(*peer);
            }
        }
        let mut gone: Vec<SocketAddr> = self
            .told
            .iter()
            .filter(|a| !seen.contains(a))
            .copied()
            .collect();
        gone.sort_unstable();
        gone.truncate(MAX_DROPPED);
        message.dropped = gone;
        for peer in &message.added {
            self.told.insert(peer.addr);
        }
        for addr in &message.dropped {
            self.told.remove(addr);
        }
        if message.is_empty() {
            self.next_at = now + FIRST_AFTER;
            return None;
        }
        Some(message)
    }
}

/// How many addresses one remote has fed us.
#[derive(Debug, Clone, Default)]
pub struct PexIn {
    learned: usize,
}

/// What [`PexIn::take`] kept of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taken {
    /// Addresses to learn.
    pub addrs: Vec<SocketAddr>,
    /// Addresses refused for the remote's bound.
    pub over_bound: usize,
}

impl PexIn {
    /// The routable addresses of `message`'s `added` that are not
    /// `our_port` on a local address, within what is left of the remote's
    /// [`MAX_LEARNED_PER_PEER`]. `dropped` is not acted on: an address the
    /// remote lost may still work for us, and the peer list's backoff
    /// forgets the dead ones.
    pub fn take(&mut self, message: &PexMessage, our_port: u16) -> Taken {
        let mut taken = Taken {
            addrs: Vec::new(),
            over_bound: 0,
        };
        for peer in &message.added {
            if !routable(peer.addr) || is_ours(peer.addr, our_port) {
                continue;
            }
            if self.learned >= MAX_LEARNED_PER_PEER {
                taken.over_bound += 1;
                continue;
            }
            self.learned += 1;
            taken.addrs.push(peer.addr);
        }
        taken
    }
}

/// Whether an address from a peer could be dialled at all.
fn routable(addr: SocketAddr) -> bool {
    let ip = addr.ip();
    let broadcast = matches!(ip, IpAddr::V4(v4) if v4.is_broadcast());
    addr.port() != 0 && !ip.is_unspecified() && !ip.is_multicast() && !broadcast
}

/// Whether `addr` is us: our listen port on a loopback address (a session
/// listens on every local address).
fn is_ours(addr: SocketAddr, our_port: u16) -> bool {
    addr.port() == our_port && addr.ip().is_loopback()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer::pex::flags;

    fn addr(n: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, (n >> 8) as u8, n as u8], 6881))
    }

    fn peer(n: u16) -> PexPeer {
        PexPeer {
            addr: addr(n),
            flags: flags::REACHABLE,
        }
    }

    fn addrs(peers: &[PexPeer]) -> Vec<SocketAddr> {
        peers.iter().map(|p| p.addr).collect()
    }

    /// Regression: with nothing to tell at the first look, the next was a
    /// minute later, so a peer that connected 3 s after another heard of
    /// it only a minute on.
    #[test]
    fn with_nothing_to_tell_the_next_look_comes_soon() {
        let t0 = Instant::now();
        let mut out = PexOut::new(t0);
        assert_eq!(out.next(t0 + FIRST_AFTER, &[], &[]), None);
        let soon = t0 + FIRST_AFTER * 2;
        let told = out.next(soon, &[peer(1)], &[]).expect("due again soon");
        assert_eq!(told.added, vec![peer(1)]);
    }

    #[test]
    fn the_first_message_waits_a_little_then_one_a_minute() {
        let t0 = Instant::now();
        let mut out = PexOut::new(t0);
        let live = [peer(1)];
        let early = t0 + FIRST_AFTER - Duration::from_millis(1);
        assert_eq!(out.next(early, &live, &[]), None);
        let first = out.next(t0 + FIRST_AFTER, &live, &[]).expect("due");
        assert_eq!(first.added, vec![peer(1)]);
        let t1 = t0 + FIRST_AFTER;
        let live = [peer(1), peer(2)];
        assert_eq!(
            out.next(t1 + INTERVAL - Duration::from_millis(1), &live, &[]),
            None
        );
        let second = out
            .next(t1 + INTERVAL, &live, &[])
            .expect("due a minute later");
        assert_eq!(second.added, vec![peer(2)], "only what it was not told");
        assert!(second.dropped.is_empty());
    }

    #[test]
    fn peers_gone_are_dropped_once_and_may_be_added_again() {
        let mut now = Instant::now() + FIRST_AFTER;
        let mut out = PexOut::new(now - FIRST_AFTER);
        out.next(now, &[peer(1), peer(2)], &[]).unwrap();
        now += INTERVAL;
        let message = out.next(now, &[peer(2)], &[]).unwrap();
        assert!(message.added.is_empty());
        assert_eq!(message.dropped, vec![addr(1)]);
        now += INTERVAL;
        assert_eq!(out.next(now, &[peer(2)], &[]), None, "nothing new to tell");
        now += INTERVAL;
        let back = out.next(now, &[peer(1), peer(2)], &[]).unwrap();
        assert_eq!(back.added, vec![peer(1)]);
    }

    #[test]
    fn a_peer_is_never_told_its_own_address() {
        let now = Instant::now();
        let mut out = PexOut::new(now);
        let message = out
            .next(now + FIRST_AFTER, &[peer(1), peer(2)], &[addr(1)])
            .unwrap();
        assert_eq!(addrs(&message.added), [addr(2)]);
    }

    #[test]
    fn at_most_50_added_and_50_dropped_per_message_the_rest_waits() {
        let mut now = Instant::now();
        let mut out = PexOut::new(now);
        now += FIRST_AFTER;
        let many: Vec<PexPeer> = (0..120).map(peer).collect();
        let first = out.next(now, &many, &[]).unwrap();
        assert_eq!(addrs(&first.added), addrs(&many[..50]));
        now += INTERVAL;
        let second = out.next(now, &many, &[]).unwrap();
        assert_eq!(addrs(&second.added), addrs(&many[50..100]));
        now += INTERVAL;
        let third = out.next(now, &many, &[]).unwrap();
        assert_eq!(addrs(&third.added), addrs(&many[100..]));
        now += INTERVAL;
        let gone = out.next(now, &[], &[]).unwrap();
        assert_eq!(gone.dropped.len(), MAX_DROPPED);
        now += INTERVAL;
        let rest = out.next(now, &[], &[]).unwrap();
        assert_eq!(rest.dropped.len(), MAX_DROPPED);
        now += INTERVAL;
        let last = out.next(now, &[], &[]).unwrap();
        assert_eq!(last.dropped.len(), 20);
        let mut all: Vec<SocketAddr> = [gone.dropped, rest.dropped, last.dropped].concat();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 120, "each dropped once");
    }

    #[test]
    fn one_peer_feeds_at_most_200_addresses_in_all() {
        let mut pex_in = PexIn::default();
        let message = |range: std::ops::Range<u16>| PexMessage {
            added: range.map(peer).collect(),
            dropped: vec![],
        };
        let first = pex_in.take(&message(0..150), 7000);
        assert_eq!(first.addrs.len(), 150);
        assert_eq!(first.over_bound, 0);
        let second = pex_in.take(&message(150..300), 7000);
        assert_eq!(second.addrs, (150..200).map(addr).collect::<Vec<_>>());
        assert_eq!(second.over_bound, 100);
        let third = pex_in.take(&message(300..310), 7000);
        assert!(third.addrs.is_empty());
        assert_eq!(third.over_bound, 10);
    }

    #[test]
    fn unroutable_addresses_and_our_own_are_dropped_and_not_counted() {
        let mut pex_in = PexIn::default();
        let bad = [
            "10.0.0.1:0",
            "0.0.0.0:6881",
            "224.0.0.1:6881",
            "255.255.255.255:6881",
            "[::]:6881",
            "127.0.0.1:7000",
            "127.0.0.2:7000",
            "[::1]:7000",
        ];
        let good = ["127.0.0.1:7001", "10.0.0.1:7000", "[2001:db8::1]:7000"];
        let message = PexMessage {
            added: bad
                .iter()
                .chain(&good)
                .map(|a| PexPeer {
                    addr: a.parse().unwrap(),
                    flags: 0,
                })
                .collect(),
            dropped: vec![],
        };
        let taken = pex_in.take(&message, 7000);
        let expected: Vec<SocketAddr> = good.iter().map(|a| a.parse().unwrap()).collect();
        assert_eq!(taken.addrs, expected);
        assert_eq!(pex_in.learned, 3);
    }
}
