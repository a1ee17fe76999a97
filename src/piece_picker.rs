//! Which piece a peer should fetch next. Pure data structure: no threads, no I/O.
//!
//! Invariant: each piece is in exactly one state, [`Have`](PieceState::Have),
//! [`InFlight`](PieceState::InFlight) (assigned to one or more peers) or
//! [`Missing`](PieceState::Missing), and changes state only through
//! [`PiecePicker::assign`], [`PiecePicker::release`] and [`PiecePicker::complete`].
//!
//! Policy: rarest first among missing pieces the peer has (ties go to the lowest
//! index); when nothing is missing that the peer could give, "endgame": the
//! in-flight piece with the fewest holders is fetched from this peer too, so a
//! slow peer cannot hold up the last pieces.

use crate::bitfield::Bitfield;

/// Most peers fetching the same piece at once in endgame.
const MAX_HOLDERS: u8 = 3;

/// The state of one piece.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PieceState {
    /// Verified and on disk.
    Have,
    /// Being fetched by this many peers.
    InFlight(u8),
    /// Nobody is fetching it.
    Missing,
}

/// Piece states plus how many connected peers have each piece.
#[derive(Debug, Clone)]
pub struct PiecePicker {
    state: Vec<PieceState>,
    availability: Vec<u32>,
    have_count: u32,
}

impl PiecePicker {
    /// A picker where `have[i]` says piece `i` is already verified.
    pub fn new(have: &[bool]) -> PiecePicker {
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
            availability: vec![0; have.len()],
            have_count: have.iter().filter(|&&h| h).count() as u32,
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

    /// The piece `peer_has` can give that should be fetched next, skipping the
    /// pieces in `already` (those this peer is fetching).
    pub fn pick(&self, peer_has: &Bitfield, already: &[u32]) -> Option<u32> {
        let candidates = peer_has.iter().filter(|i| !already.contains(i));
        let mut best: Option<(u32, u32)> = None;
        let mut endgame: Option<(u8, u32)> = None;
        for index in candidates {
            match self.state[index as usize] {
                PieceState::Missing => {
                    let rarity = self.availability[index as usize];
                    if best.is_none_or(|(r, _)| rarity < r) {
                        best = Some((rarity, index));
                    }
                }
                PieceState::InFlight(holders)
                    if holders < MAX_HOLDERS && endgame.is_none_or(|(h, _)| holders < h) =>
                {
                    endgame = Some((holders, index));
                }
                _ => {}
            }
        }
        best.map(|(_, i)| i).or(endgame.map(|(_, i)| i))
    }

    /// Records that one more peer fetches piece `index`.
    pub fn assign(&mut self, index: u32) {
        let s = &mut self.state[index as usize];
        *s = match *s {
            PieceState::Missing => PieceState::InFlight(1),
            PieceState::InFlight(n) => PieceState::InFlight(n + 1),
            PieceState::Have => PieceState::Have,
        };
    }

    /// Records that one peer stopped fetching piece `index` (it left, was
    /// choked, or sent bad data).
    pub fn release(&mut self, index: u32) {
        let s = &mut self.state[index as usize];
        *s = match *s {
            PieceState::InFlight(n) if n > 1 => PieceState::InFlight(n - 1),
            PieceState::InFlight(_) => PieceState::Missing,
            other => other,
        };
    }

    /// Records that piece `index` is verified and written.
    pub fn complete(&mut self, index: u32) {
        if self.state[index as usize] != PieceState::Have {
            self.state[index as usize] = PieceState::Have;
            self.have_count += 1;
        }
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

    #[test]
    fn picks_the_rarest_missing_piece_the_peer_has() {
        let mut p = PiecePicker::new(&[false; 4]);
        p.add_peer_pieces(&bits(&[0, 1, 2, 3], 4), 1);
        p.add_peer_pieces(&bits(&[0, 1, 3], 4), 1);
        p.add_peer_pieces(&bits(&[0, 3], 4), 1);
        let peer = bits(&[0, 1, 2, 3], 4);
        assert_eq!(p.pick(&peer, &[]), Some(2));
        p.assign(2);
        assert_eq!(p.pick(&peer, &[2]), Some(1));
    }

    #[test]
    fn never_picks_pieces_we_have_or_the_peer_lacks() {
        let p = PiecePicker::new(&[true, false, false]);
        assert_eq!(p.pick(&bits(&[0, 2], 3), &[]), Some(2));
        assert_eq!(p.pick(&bits(&[0], 3), &[]), None);
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
    fn release_returns_a_piece_to_missing_when_its_last_holder_leaves() {
        let mut p = PiecePicker::new(&[false]);
        p.assign(0);
        p.assign(0);
        p.release(0);
        assert_eq!(p.state(0), PieceState::InFlight(1));
        p.release(0);
        assert_eq!(p.state(0), PieceState::Missing);
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
    }
}
