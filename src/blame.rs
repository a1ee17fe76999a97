//! Who is to blame for a piece that failed its hash check, and when a
//! liar is banned. Pure bookkeeping: no threads, no sockets.
//!
//! A piece's blocks may come from several peers (a peer choked us or left
//! mid-piece, and another finished it). A failed piece with one sender
//! counts against that sender's IP, which is banned after
//! [`BAN_AFTER_BAD_PIECES`]: by IP, so a liar that reconnects from a new
//! port after each bad piece is still counted.
//! A failed piece with several senders blames nobody, since an honest peer
//! that finished a liar's half piece must not be banned; instead it is
//! fetched again whole from one peer ([`Blame::is_whole_only`]), so the next
//! failure has a single author.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};

use crate::peer_list::host_of;

/// Pieces a peer sent alone that failed the hash check before it is banned.
pub const BAN_AFTER_BAD_PIECES: u32 = 2;

/// What to do about a failed piece.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// One sender, not yet past the limit: remembered.
    Counted {
        /// The sender.
        addr: SocketAddr,
        /// Its IP's failed pieces so far.
        bad_count: u32,
    },
    /// One sender, past the limit: ban it.
    Ban(SocketAddr),
    /// Several senders (or none known): nobody is blamed; the piece is
    /// fetched whole from one peer until it verifies.
    Shared(Vec<SocketAddr>),
}

/// Bad pieces per IP, and the pieces to fetch whole.
#[derive(Debug, Default)]
pub struct Blame {
    bad_pieces: HashMap<IpAddr, u32>,
    whole_only: HashSet<u32>,
}

impl Blame {
    /// No blame yet.
    pub fn new() -> Blame {
        Blame::default()
    }

    /// Piece `index`, made of blocks from `senders`, failed its hash check.
    pub fn failed(&mut self, index: u32, senders: &[SocketAddr]) -> Verdict {
        match *senders {
            [liar] => {
                let bad = self.bad_pieces.entry(host_of(liar.ip())).or_default();
                *bad += 1;
                if *bad >= BAN_AFTER_BAD_PIECES {
                    Verdict::Ban(liar)
                } else {
                    Verdict::Counted {
                        addr: liar,
                        bad_count: *bad,
                    }
                }
            }
            _ => {
                self.whole_only.insert(index);
                Verdict::Shared(senders.to_vec())
            }
        }
    }

    /// Piece `index` verified: it no longer needs fetching whole.
    pub fn verified(&mut self, index: u32) {
        self.whole_only.remove(&index);
    }

    /// Whether piece `index` must come whole from one peer, so that blocks
    /// received for it are not kept for another peer to finish.
    pub fn is_whole_only(&self, index: u32) -> bool {
        self.whole_only.contains(&index)
    }
}

/// The senders of a piece's kept blocks after `addr` gave it back with
/// `received` blocks, of which `inherited` came from earlier `senders`:
/// `addr` joins them only if it added blocks of its own.
pub fn contributors(
    mut senders: Vec<SocketAddr>,
    addr: SocketAddr,
    received: usize,
    inherited: usize,
) -> Vec<SocketAddr> {
    if received > inherited && !senders.contains(&addr) {
        senders.push(addr);
    }
    senders
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(last: u8) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, last], 6881))
    }

    #[test]
    fn a_lone_liar_is_counted_then_banned() {
        let mut blame = Blame::new();
        assert_eq!(
            blame.failed(3, &[addr(2)]),
            Verdict::Counted {
                addr: addr(2),
                bad_count: 1
            }
        );
        assert_eq!(blame.failed(4, &[addr(2)]), Verdict::Ban(addr(2)));
        assert!(
            !blame.is_whole_only(3),
            "a lone sender's piece is not shared"
        );
    }

    #[test]
    fn a_liar_is_counted_by_ip_whatever_port_it_sends_from() {
        let mut blame = Blame::new();
        let port = |port: u16| SocketAddr::from(([127, 0, 0, 4], port));
        assert!(matches!(
            blame.failed(1, &[port(40_001)]),
            Verdict::Counted { bad_count: 1, .. }
        ));
        assert_eq!(blame.failed(2, &[port(40_002)]), Verdict::Ban(port(40_002)));
        assert!(
            matches!(
                blame.failed(3, &[addr(2)]),
                Verdict::Counted { bad_count: 1, .. }
            ),
            "another IP has its own count"
        );
    }

    #[test]
    fn an_ipv6_liar_is_counted_by_its_slash_64_whatever_address_it_takes() {
        let mut blame = Blame::new();
        let at = |s: &str| SocketAddr::new(s.parse().unwrap(), 6881);
        assert!(matches!(
            blame.failed(1, &[at("2001:db8:0:7::1")]),
            Verdict::Counted { bad_count: 1, .. }
        ));
        assert_eq!(
            blame.failed(2, &[at("2001:db8:0:7::2")]),
            Verdict::Ban(at("2001:db8:0:7::2"))
        );
    }

    #[test]
    fn shared_pieces_blame_nobody_and_are_refetched_whole() {
        let mut blame = Blame::new();
        for _ in 0..BAN_AFTER_BAD_PIECES + 1 {
            assert_eq!(
                blame.failed(7, &[addr(2), addr(3)]),
                Verdict::Shared(vec![addr(2), addr(3)])
            );
        }
        assert!(blame.is_whole_only(7));
        // The refetch from one peer fails again: now it has an author.
        assert!(matches!(
            blame.failed(7, &[addr(3)]),
            Verdict::Counted { bad_count: 1, .. }
        ));
        blame.verified(7);
        assert!(!blame.is_whole_only(7));
    }

    #[test]
    fn a_failed_piece_with_no_known_sender_blames_nobody() {
        let mut blame = Blame::new();
        assert_eq!(blame.failed(1, &[]), Verdict::Shared(vec![]));
    }

    #[test]
    fn a_peer_joins_the_contributors_only_with_blocks_of_its_own() {
        let earlier = vec![addr(2)];
        assert_eq!(contributors(earlier.clone(), addr(3), 4, 4), vec![addr(2)]);
        assert_eq!(
            contributors(earlier.clone(), addr(3), 5, 4),
            vec![addr(2), addr(3)]
        );
        assert_eq!(contributors(earlier, addr(2), 9, 4), vec![addr(2)]);
    }
}
