//! The peers other nodes announce to us (BEP 5, `announce_peer`), which we
//! hand out as `values` in answer to `get_peers`.
//!
//! Everything is bounded, since any node may announce: an announcement
//! lasts [`PEER_TTL`] (peers re-announce about every 30 minutes); at most
//! [`MAX_PEERS_PER_HASH`] peers are kept per info-hash (a new one pushes
//! out the peer announced longest ago), and at most [`MAX_INFO_HASHES`]
//! info-hashes and [`MAX_PEERS`] peers in all (beyond those, new
//! announcements are refused until old ones expire). A reply carries at
//! most [`VALUES_PER_REPLY`] peers, drawn at random, which keeps it under
//! 1,280 bytes even for IPv6 peers. Pure code, time passed in.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::id::NodeId;

/// How long an announcement is kept.
pub const PEER_TTL: Duration = Duration::from_secs(30 * 60);

/// Peers kept per info-hash.
pub const MAX_PEERS_PER_HASH: usize = 100;

/// Info-hashes kept.
pub const MAX_INFO_HASHES: usize = 2_000;

/// Peers kept in all.
pub const MAX_PEERS: usize = 20_000;

/// Peers in one `values` reply: 50 × 21 bytes (an IPv6 entry) is 1,050 bytes.
pub const VALUES_PER_REPLY: usize = 50;

/// What [`PeerStore::announce`] did.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Stored {
    /// A new peer was kept.
    Added,
    /// The peer was known; its announcement was renewed.
    Renewed,
    /// Refused: the store is at [`MAX_INFO_HASHES`] or [`MAX_PEERS`].
    Full,
}

/// The announced peers, per info-hash.
#[derive(Debug, Default)]
pub struct PeerStore {
    torrents: HashMap<NodeId, Vec<(SocketAddr, Instant)>>,
    peer_count: usize,
}

impl PeerStore {
    /// An empty store.
    pub fn new() -> PeerStore {
        PeerStore::default()
    }

    /// Peers kept in all.
    pub fn peer_count(&self) -> usize {
        self.peer_count
    }

    /// Info-hashes with at least one peer.
    pub fn info_hash_count(&self) -> usize {
        self.torrents.len()
    }

    /// Keeps `peer` as a peer of `info_hash`, announced at `now`.
    pub fn announce(&mut self, info_hash: NodeId, peer: SocketAddr, now: Instant) -> Stored {
        let known_hash = self.torrents.contains_key(&info_hash);
        if !known_hash && self.torrents.len() >= MAX_INFO_HASHES {
            return Stored::Full;
        }
        let peers = self.torrents.entry(info_hash).or_default();
        if let Some(entry) = peers.iter_mut().find(|(addr, _)| *addr == peer) {
            entry.1 = now;
            return Stored::Renewed;
        }
        if peers.len() >= MAX_PEERS_PER_HASH {
            let oldest = (0..peers.len())
                .min_by_key(|&i| peers[i].1)
                .expect("a full list is not empty");
            peers[oldest] = (peer, now);
            return Stored::Added;
        }
        if self.peer_count >= MAX_PEERS {
            if peers.is_empty() {
                self.torrents.remove(&info_hash);
            }
            return Stored::Full;
        }
        peers.push((peer, now));
        self.peer_count += 1;
        Stored::Added
    }

    /// Up to `max` peers of `info_hash` announced within [`PEER_TTL`],
    /// drawn at random from `rng`.
    pub fn peers(
        &self,
        info_hash: &NodeId,
        max: usize,
        now: Instant,
        rng: &mut fastrand::Rng,
    ) -> Vec<SocketAddr> {
        let Some(peers) = self.torrents.get(info_hash) else {
            return Vec::new();
        };
        let mut live: Vec<SocketAddr> = peers
            .iter()
            .filter(|(_, at)| now.saturating_duration_since(*at) < PEER_TTL)
            .map(|(addr, _)| *addr)
            .collect();
        rng.shuffle(&mut live);
        live.truncate(max);
        live
    }

    /// Forgets every announcement older than [`PEER_TTL`]; the node thread
    /// calls this every minute or so.
    pub fn expire(&mut self, now: Instant) {
        let mut count = 0;
        self.torrents.retain(|_, peers| {
            peers.retain(|(_, at)| now.saturating_duration_since(*at) < PEER_TTL);
            count += peers.len();
            !peers.is_empty()
        });
        self.peer_count = count;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    fn hash(n: u16) -> NodeId {
        let mut id = [0; 20];
        id[..2].copy_from_slice(&n.to_be_bytes());
        NodeId(id)
    }

    fn peer(n: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], n))
    }

    #[test]
    fn announced_peers_are_returned_until_they_expire() {
        let mut store = PeerStore::new();
        let mut rng = fastrand::Rng::with_seed(1);
        let t0 = Instant::now();
        assert_eq!(store.announce(hash(1), peer(1), t0), Stored::Added);
        assert_eq!(
            store.announce(hash(1), peer(2), t0 + 10 * MIN),
            Stored::Added
        );
        let mut got = store.peers(&hash(1), 10, t0 + 29 * MIN, &mut rng);
        got.sort();
        assert_eq!(got, [peer(1), peer(2)]);
        assert_eq!(
            store.peers(&hash(1), 10, t0 + 30 * MIN, &mut rng),
            [peer(2)]
        );
        assert_eq!(store.peers(&hash(2), 10, t0, &mut rng), []);
        store.expire(t0 + 40 * MIN);
        assert_eq!((store.peer_count(), store.info_hash_count()), (0, 0));
    }

    #[test]
    fn re_announcing_renews_without_adding() {
        let mut store = PeerStore::new();
        let mut rng = fastrand::Rng::with_seed(1);
        let t0 = Instant::now();
        store.announce(hash(1), peer(1), t0);
        assert_eq!(
            store.announce(hash(1), peer(1), t0 + 20 * MIN),
            Stored::Renewed
        );
        assert_eq!(store.peer_count(), 1);
        assert_eq!(
            store.peers(&hash(1), 10, t0 + 45 * MIN, &mut rng),
            [peer(1)]
        );
    }

    #[test]
    fn a_full_info_hash_drops_its_oldest_peer() {
        let mut store = PeerStore::new();
        let mut rng = fastrand::Rng::with_seed(1);
        let t0 = Instant::now();
        for n in 0..MAX_PEERS_PER_HASH as u16 {
            store.announce(hash(1), peer(n + 1), t0 + Duration::from_secs(u64::from(n)));
        }
        store.announce(hash(1), peer(60000), t0 + MIN * 5);
        let all = store.peers(&hash(1), usize::MAX, t0 + MIN * 5, &mut rng);
        assert_eq!(all.len(), MAX_PEERS_PER_HASH);
        assert!(all.contains(&peer(60000)));
        assert!(!all.contains(&peer(1)), "the oldest went");
        assert_eq!(store.peer_count(), MAX_PEERS_PER_HASH);
    }

    #[test]
    fn totals_are_bounded_and_refused_beyond() {
        let mut store = PeerStore::new();
        let t0 = Instant::now();
        for n in 0..MAX_INFO_HASHES as u16 {
            for p in 0..(MAX_PEERS / MAX_INFO_HASHES) as u16 {
                assert_eq!(store.announce(hash(n), peer(p + 1), t0), Stored::Added);
            }
        }
        assert_eq!(store.peer_count(), MAX_PEERS);
        assert_eq!(store.announce(hash(60000), peer(1), t0), Stored::Full);
        assert_eq!(store.announce(hash(0), peer(500), t0), Stored::Full);
        assert_eq!(store.info_hash_count(), MAX_INFO_HASHES);
        store.expire(t0 + PEER_TTL);
        assert_eq!(
            store.announce(hash(60000), peer(1), t0 + PEER_TTL),
            Stored::Added
        );
    }

    #[test]
    fn a_reply_is_a_bounded_random_sample() {
        let mut store = PeerStore::new();
        let t0 = Instant::now();
        for n in 0..MAX_PEERS_PER_HASH as u16 {
            store.announce(hash(1), peer(n + 1), t0);
        }
        let mut rng = fastrand::Rng::with_seed(9);
        let a = store.peers(&hash(1), VALUES_PER_REPLY, t0, &mut rng);
        let b = store.peers(&hash(1), VALUES_PER_REPLY, t0, &mut rng);
        assert_eq!((a.len(), b.len()), (VALUES_PER_REPLY, VALUES_PER_REPLY));
        assert_ne!(a, b, "samples differ");
    }
}
