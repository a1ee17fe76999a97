//! Which piece a peer should fetch next. Pure data structure: no threads, no I/O.
//!
//! Invariant: each piece is in exactly one state, [`Have`](PieceState::Have),
//! [`Verifying`](PieceState::Verifying) (delivered, being hashed and written),
//! [`InFlight`](PieceState::InFlight) (assigned to one or more peers) or
//! [`Missing`](PieceState::Missing), and changes state only through
//! [`PiecePicker::assign`], [`PiecePicker::release`], [`PiecePicker::verifying`],
//! [`PiecePicker::failed`] and [`PiecePicker::complete`].
//! Separately, a missing piece may be *partial*: some of its blocks arrived
//! from a peer that then choked us or left, and the manager keeps them.
//!
//! Policy, in order, among the pieces the peer has and is not fetching yet:
//! 1. a partial piece, so half-fetched pieces are finished (and verified and
//!    shared) before new ones are started;
//! 2. while fewer than [`RANDOM_FIRST_PIECES`] pieces are complete, a random
//!    missing piece: the rarest are by definition slow to get, and a first
//!    complete piece gives us something to trade at once;
//! 3. the rarest missing piece (fewest connected peers have it), so rare
//!    pieces spread before their holders leave; ties go to the lowest index;
//! 4. endgame, once no piece is missing at all: the in-flight piece with the
//!    fewest holders is fetched from this peer too (up to [`MAX_HOLDERS`]),
//!    so a slow peer cannot hold up the last pieces; whichever copy arrives
//!    first wins, and the others are cancelled.

use crate::bitfield::Bitfield;

/// Most peers fetching the same piece at once in endgame.
pub const MAX_HOLDERS: u8 = 3;
/// Pieces picked at random before rarest-first takes over.
pub const RANDOM_FIRST_PIECES: u32 = 4;

/// The state of one piece.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PieceState {
    /// Verified and on disk.
    Have,
    /// Delivered whole, being verified and written: not fetched again unless
    /// it fails.
    Verifying,
    /// Being fetched by this many peers.
    InFlight(u8),
    /// Nobody is fetching it.
    Missing,
}

/// Piece states plus how many connected peers have each piece.
#[derive(Debug, Clone)]
pub struct PiecePicker {
    state: Vec<PieceState>,
    partial: Vec<bool>,
    availability: Vec<u32>,
    have_count: u32,
    missing_count: u32,
    rng: fastrand::Rng,
}

impl PiecePicker {
    /// A picker where `have[i]` says piece `i` is already verified.
    pub fn new(have: &[bool]) -> PiecePicker {
        PiecePicker::with_rng(have, fastrand::Rng::new())
    }

    /// As [`PiecePicker::new`], with a given random generator (tests seed it).
    pub fn with_rng(have: &[bool], rng: fastrand::Rng) -> PiecePicker {
        let have_count = have.iter().filter(|&&h| h).count() as u32;
        PiecePicker {
            state: have
                .iter()
                .map(|&h| {
                    if h {
                        PieceState::Have
                    } else {
                        PieceState::Missing
                    }
                })
                .collect(),
            partial: vec![false; have.len()],
            availability: vec![0; have.len()],
            have_count,
            missing_count: have.len() as u32 - have_count,
            rng,
        }
    }

    /// The state of piece `index`.
    pub fn state(&self, index: u32) -> PieceState {
        self.state[index as usize]
    }

    /// Number of verified pieces.
    pub fn have_count(&self) -> u32 {
        self.have_count
    }

    /// Whether every piece is verified.
    pub fn is_complete(&self) -> bool {
        self.have_count as usize == self.state.len()
    }

    /// Whether every piece is had or being fetched: the endgame.
    pub fn in_endgame(&self) -> bool {
        self.missing_count == 0 && !self.is_complete()
    }

    /// Counts a peer's pieces in (`delta` = 1, on its bitfield) or out (-1, when it leaves).
    pub fn add_peer_pieces(&mut self, has: &Bitfield, delta: i32) {
        for index in has.iter() {
            let a = &mut self.availability[index as usize];
            *a = a.saturating_add_signed(delta);
        }
    }

    /// Counts one `have` message.
    pub fn add_have(&mut self, index: u32) {
        if let Some(a) = self.availability.get_mut(index as usize) {
            *a += 1;
        }
    }

    /// Marks piece `index` as partly fetched (or no longer).
    pub fn set_partial(&mut self, index: u32, partial: bool) {
        self.partial[index as usize] = partial;
    }

    /// The piece `peer_has` can give that should be fetched next, skipping the
    /// pieces in `already` (those this peer is fetching).
    pub fn pick(&mut self, peer_has: &Bitfield, already: &[u32]) -> Option<u32> {
        let missing: Vec<u32> = peer_has
            .iter()
            .filter(|&i| self.state[i as usize] == PieceState::Missing && !already.contains(&i))
            .collect();
        if let Some(&index) = missing.iter().find(|&&i| self.partial[i as usize]) {
            return Some(index);
        }
        if !missing.is_empty() && self.have_count < RANDOM_FIRST_PIECES {
            return Some(missing[self.rng.usize(..missing.len())]);
        }
        if let Some(&index) = missing
            .iter()
            .min_by_key(|&&i| (self.availability[i as usize], i))
        {
            return Some(index);
        }
        if !self.in_endgame() {
            return None;
        }
        peer_has
            .iter()
            .filter(|i| !already.contains(i))
            .filter_map(|i| match self.state[i as usize] {
                PieceState::InFlight(holders) if holders < MAX_HOLDERS => Some((holders, i)),
                _ => None,
            })
            .min()
            .map(|(_, i)| i)
    }

    /// A piece for a probe (the first blocks of a piece, from a peer not
    /// proven yet): what [`PiecePicker::pick`] would give, or else any piece
    /// in flight that the peer has and is not fetching. A probe does not
    /// hold its piece (the caller does not [`PiecePicker::assign`] it), so
    /// many peers may probe the same piece while a proven one fetches it.
    pub fn pick_probe(&mut self, peer_has: &Bitfield, already: &[u32]) -> Option<u32> {
        self.pick(peer_has, already).or_else(|| {
            peer_has.iter().find(|&i| {
                matches!(self.state[i as usize], PieceState::InFlight(_)) && !already.contains(&i)
            })
        })
    }

    /// Records that one more peer fetches piece `index`.
    pub fn assign(&mut self, index: u32) {
        let s = &mut self.state[index as usize];
        *s = match *s {
            PieceState::Missing => {
                self.missing_count -= 1;
                PieceState::InFlight(1)
            }
            PieceState::InFlight(n) => PieceState::InFlight(n.saturating_add(1)),
            other => other,
        };
    }

    /// Records that one peer stopped fetching piece `index` (it left, was
    /// choked, or sent bad data).
    pub fn release(&mut self, index: u32) {
        let s = &mut self.state[index as usize];
        *s = match *s {
            PieceState::InFlight(n) if n > 1 => PieceState::InFlight(n - 1),
            PieceState::InFlight(_) => {
                self.missing_count += 1;
                PieceState::Missing
            }
            other => other,
        };
    }

    /// Records that piece `index` was delivered whole and is being
    /// verified. Peers still fetching it (in endgame) no longer count.
    pub fn verifying(&mut self, index: u32) {
        let s = &mut self.state[index as usize];
        match *s {
            PieceState::Have | PieceState::Verifying => return,
            PieceState::Missing => self.missing_count -= 1,
            PieceState::InFlight(_) => {}
        }
        *s = PieceState::Verifying;
    }

    /// Records that piece `index` failed its hash check: it is missing again.
    pub fn failed(&mut self, index: u32) {
        let s = &mut self.state[index as usize];
        if *s == PieceState::Verifying {
            *s = PieceState::Missing;
            self.missing_count += 1;
        }
    }

    /// Records that piece `index` is verified and written.
    pub fn complete(&mut self, index: u32) {
        let s = &mut self.state[index as usize];
        match *s {
            PieceState::Have => return,
            PieceState::Missing => self.missing_count -= 1,
            PieceState::InFlight(_) | PieceState::Verifying => {}
        }
        *s = PieceState::Have;
        self.partial[index as usize] = false;
        self.have_count += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bits(have: &[u32], count: u32) -> Bitfield {
        let mut b = Bitfield::new(count);
        for &i in have {
            b.set(i);
        }
        b
    }

    /// A picker of `missing` missing pieces (indices 0..missing) followed by
    /// enough had pieces that the random-first phase is over.
    fn past_random_first(missing: u32) -> (PiecePicker, u32) {
        let mut have = vec![false; missing as usize];
        have.extend(std::iter::repeat_n(true, RANDOM_FIRST_PIECES as usize));
        (PiecePicker::new(&have), have.len() as u32)
    }

    #[test]
    fn picks_the_rarest_missing_piece_the_peer_has() {
        let (mut p, count) = past_random_first(4);
        p.add_peer_pieces(&bits(&[0, 1, 2, 3], count), 1);
        p.add_peer_pieces(&bits(&[0, 1, 3], count), 1);
        p.add_peer_pieces(&bits(&[0, 3], count), 1);
        p.add_have(3);
        let peer = bits(&[0, 1, 2, 3], count);
        assert_eq!(p.pick(&peer, &[]), Some(2), "held by one peer");
        p.assign(2);
        assert_eq!(p.pick(&peer, &[2]), Some(1), "held by two");
        p.assign(1);
        assert_eq!(p.pick(&peer, &[1, 2]), Some(0), "three, where 3 has four");
    }

    #[test]
    fn the_first_pieces_are_picked_at_random_among_those_the_peer_has() {
        let have = vec![false; 64];
        let peer = bits(&(0..64).filter(|i| i % 2 == 0).collect::<Vec<_>>(), 64);
        let mut picks = std::collections::HashSet::new();
        for seed in 0..20 {
            let mut p = PiecePicker::with_rng(&have, fastrand::Rng::with_seed(seed));
            // Make piece 0 the rarest: rarest-first would always say 0.
            p.add_peer_pieces(&bits(&(1..64).collect::<Vec<_>>(), 64), 1);
            let index = p.pick(&peer, &[]).unwrap();
            assert_eq!(index % 2, 0, "only pieces the peer has");
            picks.insert(index);
        }
        assert!(picks.len() > 5, "random, not always the same: {picks:?}");
    }

    #[test]
    fn random_first_ends_once_enough_pieces_are_complete() {
        let mut p = PiecePicker::with_rng(&[false; 8], fastrand::Rng::with_seed(7));
        p.add_peer_pieces(&bits(&[0, 1, 2, 3, 4, 5, 6], 8), 1);
        for index in 0..RANDOM_FIRST_PIECES {
            p.complete(index);
        }
        // Piece 7 is the only one nobody else has.
        assert_eq!(p.pick(&bits(&[4, 5, 6, 7], 8), &[]), Some(7));
    }

    #[test]
    fn partial_pieces_are_finished_before_new_ones_are_started() {
        let (mut p, count) = past_random_first(4);
        p.add_peer_pieces(&bits(&[0, 1, 2], count), 1);
        let peer = bits(&[0, 1, 2, 3], count);
        assert_eq!(p.pick(&peer, &[]), Some(3), "the rarest, with no partials");
        p.set_partial(1, true);
        assert_eq!(
            p.pick(&peer, &[]),
            Some(1),
            "the partial piece, though common"
        );
        p.assign(1);
        p.complete(1);
        assert_eq!(p.pick(&peer, &[]), Some(3), "completing clears partial");
        assert_eq!(
            p.pick(&bits(&[0], count), &[]),
            Some(0),
            "a partial piece the peer lacks is not picked"
        );
    }

    #[test]
    fn never_picks_pieces_we_have_or_the_peer_lacks() {
        let mut p = PiecePicker::new(&[true, false, false]);
        assert_eq!(p.pick(&bits(&[0, 2], 3), &[]), Some(2));
        assert_eq!(p.pick(&bits(&[0], 3), &[]), None);
    }

    #[test]
    fn endgame_starts_only_when_no_piece_is_missing() {
        let mut p = PiecePicker::new(&[true, false, false]);
        p.assign(1);
        assert!(!p.in_endgame());
        assert_eq!(
            p.pick(&bits(&[1], 3), &[]),
            None,
            "piece 2 is still missing: no duplicate of 1 yet"
        );
        p.assign(2);
        assert!(p.in_endgame());
        assert_eq!(p.pick(&bits(&[1], 3), &[]), Some(1));
    }

    #[test]
    fn endgame_duplicates_in_flight_pieces_up_to_a_limit() {
        let mut p = PiecePicker::new(&[true, false]);
        let peer = bits(&[0, 1], 2);
        p.assign(1);
        assert_eq!(p.pick(&peer, &[]), Some(1), "endgame");
        assert_eq!(p.pick(&peer, &[1]), None, "not twice to one peer");
        p.assign(1);
        p.assign(1);
        assert_eq!(p.pick(&peer, &[]), None, "enough holders");
    }

    #[test]
    fn endgame_prefers_the_piece_with_the_fewest_holders() {
        let mut p = PiecePicker::new(&[false, false]);
        p.assign(0);
        p.assign(0);
        p.assign(1);
        assert_eq!(p.pick(&bits(&[0, 1], 2), &[]), Some(1));
    }

    #[test]
    fn release_returns_a_piece_to_missing_when_its_last_holder_leaves() {
        let mut p = PiecePicker::new(&[false]);
        p.assign(0);
        p.assign(0);
        p.release(0);
        assert_eq!(p.state(0), PieceState::InFlight(1));
        p.release(0);
        assert_eq!(p.state(0), PieceState::Missing);
        assert!(!p.in_endgame());
    }

    #[test]
    fn complete_counts_each_piece_once() {
        let mut p = PiecePicker::new(&[false, false]);
        p.assign(0);
        p.complete(0);
        p.complete(0);
        assert_eq!(p.have_count(), 1);
        p.release(0);
        assert_eq!(
            p.state(0),
            PieceState::Have,
            "a late release cannot undo a verified piece"
        );
        p.complete(1);
        assert!(p.is_complete());
        assert!(!p.in_endgame());
    }

    #[test]
    fn a_piece_being_verified_is_not_fetched_again_unless_it_fails() {
        let mut p = PiecePicker::new(&[true, false, false]);
        let peer = bits(&[1, 2], 3);
        p.assign(1);
        p.assign(1);
        p.verifying(1);
        assert_eq!(p.state(1), PieceState::Verifying);
        p.release(1);
        assert_eq!(
            p.state(1),
            PieceState::Verifying,
            "a holder leaving changes nothing"
        );
        p.assign(2);
        assert!(p.in_endgame());
        assert_eq!(
            p.pick(&peer, &[2]),
            None,
            "no endgame copy of a delivered piece"
        );
        p.failed(1);
        assert_eq!(p.state(1), PieceState::Missing);
        assert!(!p.in_endgame());
        assert_eq!(p.pick(&peer, &[2]), Some(1), "fetched again after failing");
        p.assign(1);
        p.verifying(1);
        p.complete(1);
        p.failed(1);
        assert_eq!(
            p.state(1),
            PieceState::Have,
            "a late failure cannot undo a verified piece"
        );
        assert_eq!(p.have_count(), 2);
    }

    #[test]
    fn a_probe_is_given_a_piece_in_flight_when_none_is_missing() {
        let mut picker = PiecePicker::with_rng(&[false, false], fastrand::Rng::with_seed(1));
        let all = Bitfield::from_bools(&[true, true]);
        picker.add_peer_pieces(&all, 1);
        for _ in 0..MAX_HOLDERS {
            picker.assign(0);
            picker.assign(1);
        }
        assert_eq!(picker.pick(&all, &[]), None, "every piece has its holders");
        assert_eq!(picker.pick_probe(&all, &[]), Some(0));
        assert_eq!(picker.pick_probe(&all, &[0]), Some(1));
        picker.verifying(0);
        assert_eq!(
            picker.pick_probe(&all, &[1]),
            None,
            "not a piece being verified"
        );
    }
}
