//! Which peers we upload to (BEP 3 "choking"). Pure data structure: no
//! threads, no I/O, time passed in, so it is tested with a fake clock.
//!
//! Policy, as mature clients do it: a fixed number of regular upload slots go
//! to the interested peers with the best rate, where the rate is what each
//! peer gives us while we download (tit for tat) or what it takes from us
//! while we seed (so the fastest peers spread the data); the piece manager
//! samples the rates every [`EVALUATE_EVERY`]. One more slot, the optimistic
//! unchoke, goes to an interested peer outside the regular ones and moves on
//! every [`ROTATE_OPTIMISTIC_EVERY`], so a newcomer with nothing to give can
//! still start, and we discover peers faster than the ones we have.
//!
//! Not owned here: sending `choke`/`unchoke` (the peer threads do it when
//! the manager tells them) and measuring rates (the manager does).

use std::time::{Duration, Instant};

use crate::peer::PeerKey;

/// How often rates are sampled and the regular slots chosen again.
pub const EVALUATE_EVERY: Duration = Duration::from_secs(10);
/// How often the optimistic unchoke moves to another peer.
pub const ROTATE_OPTIMISTIC_EVERY: Duration = Duration::from_secs(30);
/// Regular upload slots unless the user says otherwise.
pub const DEFAULT_UPLOAD_SLOTS: usize = 4;

/// What the choker needs to know of one connected peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChokeCandidate {
    /// The connection.
    pub key: PeerKey,
    /// Whether the peer wants something we have.
    pub interested: bool,
    /// Bytes per second: from the peer while we download, to it while we seed.
    pub rate: u64,
}

/// Chooses the unchoked set.
#[derive(Debug, Clone)]
pub struct Choker {
    slots: usize,
    optimistic: Option<PeerKey>,
    rotated_at: Option<Instant>,
    /// Peers that have had the optimistic slot, oldest first, so rotation
    /// goes round every peer before repeating one.
    optimistic_history: Vec<PeerKey>,
}

impl Choker {
    /// A choker with `slots` regular upload slots (plus one optimistic).
    pub fn new(slots: usize) -> Choker {
        Choker {
            slots,
            optimistic: None,
            rotated_at: None,
            optimistic_history: Vec::new(),
        }
    }

    /// The peer holding the optimistic slot, if any.
    pub fn optimistic(&self) -> Option<PeerKey> {
        self.optimistic
    }

    /// The peers to unchoke now, given every connected peer. Uninterested
    /// peers are never unchoked (they would not request anything). Rotates
    /// the optimistic slot when [`ROTATE_OPTIMISTIC_EVERY`] has passed since
    /// the last rotation, or when its holder is gone or no longer eligible.
    pub fn unchoked(&mut self, now: Instant, peers: &[ChokeCandidate]) -> Vec<PeerKey> {
        let mut interested: Vec<&ChokeCandidate> = peers.iter().filter(|p| p.interested).collect();
        // Best rate first; ties go to the older connection (smaller key), so
        // the choice is stable from one evaluation to the next.
        interested.sort_by(|a, b| b.rate.cmp(&a.rate).then(a.key.cmp(&b.key)));
        let mut chosen: Vec<PeerKey> = interested.iter().take(self.slots).map(|p| p.key).collect();
        let others: Vec<PeerKey> = interested.iter().skip(self.slots).map(|p| p.key).collect();

        let holder_still_eligible = self.optimistic.is_some_and(|k| others.contains(&k));
        let due = self
            .rotated_at
            .is_none_or(|at| now.duration_since(at) >= ROTATE_OPTIMISTIC_EVERY);
        if due || !holder_still_eligible {
            self.optimistic = self.next_optimistic(&others);
            self.rotated_at = Some(now);
        }
        if let Some(key) = self.optimistic {
            chosen.push(key);
        }
        chosen
    }

    /// The eligible peer that had the optimistic slot least recently (never
    /// is least recent of all).
    fn next_optimistic(&mut self, others: &[PeerKey]) -> Option<PeerKey> {
        let pick = others
            .iter()
            .copied()
            // Peers never chosen have position None, which sorts first.
            .min_by_key(|k| self.optimistic_history.iter().position(|h| h == k))?;
        self.optimistic_history.retain(|&h| h != pick);
        self.optimistic_history.push(pick);
        Some(pick)
    }

    /// Forgets a disconnected peer.
    pub fn remove(&mut self, key: PeerKey) {
        self.optimistic_history.retain(|&h| h != key);
        if self.optimistic == Some(key) {
            self.optimistic = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(key: PeerKey, rate: u64) -> ChokeCandidate {
        ChokeCandidate {
            key,
            interested: true,
            rate,
        }
    }

    #[test]
    fn regular_slots_go_to_the_fastest_interested_peers() {
        let mut choker = Choker::new(2);
        let now = Instant::now();
        let peers = [peer(1, 10), peer(2, 500), peer(3, 300), peer(4, 50)];
        let unchoked = choker.unchoked(now, &peers);
        assert_eq!(&unchoked[..2], &[2, 3], "the two best rates");
        assert_eq!(unchoked.len(), 3, "plus one optimistic");
        assert!([1, 4].contains(&unchoked[2]));
    }

    #[test]
    fn uninterested_peers_are_never_unchoked() {
        let mut choker = Choker::new(4);
        let mut idle = peer(1, 1_000_000);
        idle.interested = false;
        let unchoked = choker.unchoked(Instant::now(), &[idle, peer(2, 0)]);
        assert_eq!(unchoked, vec![2]);
    }

    #[test]
    fn every_interested_peer_is_unchoked_while_slots_are_free() {
        let mut choker = Choker::new(4);
        let peers = [peer(1, 0), peer(2, 0), peer(3, 0)];
        let mut unchoked = choker.unchoked(Instant::now(), &peers);
        unchoked.sort();
        assert_eq!(unchoked, vec![1, 2, 3]);
        assert_eq!(choker.optimistic(), None, "nobody is left for it");
    }

    #[test]
    fn optimistic_slot_stays_put_until_thirty_seconds_pass() {
        let mut choker = Choker::new(1);
        let start = Instant::now();
        let peers = [peer(1, 100), peer(2, 0), peer(3, 0), peer(4, 0)];
        choker.unchoked(start, &peers);
        let first = choker.optimistic().expect("an optimistic peer");
        for seconds in [10, 20, 29] {
            choker.unchoked(start + Duration::from_secs(seconds), &peers);
            assert_eq!(choker.optimistic(), Some(first), "at {seconds} s");
        }
        choker.unchoked(start + Duration::from_secs(30), &peers);
        let second = choker.optimistic().expect("an optimistic peer");
        assert_ne!(second, first, "rotated at 30 s");
    }

    #[test]
    fn optimistic_rotation_visits_every_peer_before_repeating() {
        let mut choker = Choker::new(1);
        let start = Instant::now();
        let peers = [peer(1, 100), peer(2, 0), peer(3, 0), peer(4, 0)];
        let mut seen = Vec::new();
        for round in 0..3 {
            choker.unchoked(start + ROTATE_OPTIMISTIC_EVERY * round, &peers);
            seen.push(choker.optimistic().expect("an optimistic peer"));
        }
        seen.sort();
        assert_eq!(seen, vec![2, 3, 4]);
    }

    #[test]
    fn optimistic_slot_moves_at_once_when_its_peer_leaves_or_loses_interest() {
        let mut choker = Choker::new(1);
        let now = Instant::now();
        choker.unchoked(now, &[peer(1, 100), peer(2, 0), peer(3, 0)]);
        let first = choker.optimistic().unwrap();
        choker.remove(first);
        let rest: Vec<_> = [peer(1, 100), peer(2, 0), peer(3, 0)]
            .into_iter()
            .filter(|p| p.key != first)
            .collect();
        choker.unchoked(now + Duration::from_secs(1), &rest);
        let second = choker.optimistic().unwrap();
        assert_ne!(second, first);
        let mut bored = rest.clone();
        for p in &mut bored {
            if p.key == second {
                p.interested = false;
            }
        }
        choker.unchoked(now + Duration::from_secs(2), &bored);
        assert_ne!(choker.optimistic(), Some(second));
    }

    #[test]
    fn a_peer_that_speeds_up_takes_a_regular_slot_at_the_next_evaluation() {
        let mut choker = Choker::new(1);
        let now = Instant::now();
        let unchoked = choker.unchoked(now, &[peer(1, 100), peer(2, 10)]);
        assert_eq!(unchoked[0], 1);
        let unchoked = choker.unchoked(now + EVALUATE_EVERY, &[peer(1, 100), peer(2, 900)]);
        assert_eq!(unchoked[0], 2);
    }
}
