//! Which piece a peer should fetch next. Pure data structure: no threads, no I/O.
//!
//! Invariant: each piece is in exactly one state, [`Have`](PieceState::Have),
//! [`Verifying`](PieceState::Verifying) (delivered, being hashed and written),
//! [`InFlight`](PieceState::InFlight) (assigned to one or more peers),
//! [`Missing`](PieceState::Missing) or [`Unwanted`](PieceState::Unwanted)
//! (it holds bytes of files the user did not select only: never picked,
//! and it never changes state), and changes state only through
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
//!    pieces spread before their holders leave; equally rare pieces go
//!    in runs of consecutive pieces (about [`RUN_BYTES`]), the runs in an
//!    order of this picker's own, so leechers of one seeder fetch
//!    different pieces and can trade them;
//! 4. endgame, once no piece is missing at all: the in-flight piece with the
//!    fewest holders is fetched from this peer too (up to [`MAX_HOLDERS`]),
//!    so a slow peer cannot hold up the last pieces; whichever copy arrives
//!    first wins, and the others are cancelled.
//!
//! Cost: no pick or change of state looks at every piece, nor does a
//! `have`, but the one that completes a peer. The missing pieces are kept ordered by availability (module `buckets`), so a
//! `have` or a state change moves one piece by a swap or a few, and a pick
//! reads from the rarest end; the pieces in flight and the partial ones
//! (both bounded by the manager's memory budget) are kept in lists of their
//! own; peers that have every piece are counted once, not per piece, so a
//! seeder's bitfield costs nothing (another peer's costs a step per piece it
//! has, and a peer that completes while connected one step per piece, once:
//! a step for each of its `have`s). A pick costs a step per piece it looks
//! at: the partial pieces, then the rarest missing pieces until one the peer
//! has; only for a peer that has few of the pieces we lack does it fall back
//! to reading its bitfield a 64-piece word at a time. Memory is about 23
//! bytes per piece.

mod buckets;

use crate::bitfield::Bitfield;
use buckets::Buckets;

/// Most peers fetching the same piece at once in endgame.
pub const MAX_HOLDERS: u8 = 3;
/// Bytes of consecutive pieces that go together among equally rare
/// pieces (see [`PiecePicker::with_rng`]).
pub const RUN_BYTES: u64 = 1024 * 1024;
/// Pieces picked at random before rarest-first takes over.
pub const RANDOM_FIRST_PIECES: u32 = 4;
/// Random missing pieces tried, in the random-first phase, before the
/// rarest the peer has is taken instead.
const RANDOM_TRIES: usize = 64;
/// Missing pieces looked at, rarest first, before the pick reads the
/// peer's bitfield word by word instead.
const SCAN_LIMIT: usize = 256;
/// Position of a piece that is not in the in-flight list.
const ABSENT: u32 = u32::MAX;

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
    /// Not wanted (`--files`, `--exclude`): never picked, and the torrent
    /// is complete without it.
    Unwanted,
}

/// Piece states plus how many connected peers have each piece.
#[derive(Debug, Clone)]
pub struct PiecePicker {
    state: Vec<PieceState>,
    /// Connected peers that have each piece, besides the `seeds`.
    availability: Vec<u32>,
    /// Connected peers that have every piece.
    seeds: u32,
    /// The missing pieces, by availability.
    missing: Buckets,
    /// The same, as a set to intersect with a peer's.
    missing_bits: Bitfield,
    /// The pieces in flight, and each one's position there.
    in_flight: Vec<u32>,
    in_flight_pos: Vec<u32>,
    /// The partial pieces, as a list and per piece.
    partial: Vec<u32>,
    is_partial: Vec<bool>,
    /// The pieces a pick skips are those whose mark is `mark`.
    marks: Vec<u32>,
    mark: u32,
    have_count: u32,
    /// Pieces [`PieceState::Unwanted`].
    unwanted_count: u32,
    /// Pieces looked at by picks so far.
    visited: u64,
    rng: fastrand::Rng,
}

impl PiecePicker {
    /// A picker where `have[i]` says piece `i` is already verified, and
    /// equally rare pieces go in runs of `run` consecutive pieces, the
    /// runs in an order of its own (see [`PiecePicker::with_rng`]).
    pub fn new(have: &[bool], run: u32) -> PiecePicker {
        PiecePicker::with_rng(have, run, fastrand::Rng::new())
    }

    /// As [`PiecePicker::new`], where only the pieces with `wanted[i]`
    /// are to be fetched: the others are [`PieceState::Unwanted`] (unless
    /// had), and the picker is complete without them.
    pub fn with_wanted(have: &[bool], wanted: &[bool], run: u32) -> PiecePicker {
        PiecePicker::with_wanted_rng(have, wanted, run, fastrand::Rng::new())
    }

    /// As [`PiecePicker::new`], with a given random generator (tests seed it).
    ///
    /// Equally rare pieces are picked in runs of `run` consecutive pieces
    /// (the caller makes a run about [`RUN_BYTES`] long), the runs in an
    /// order drawn from `rng`. Random runs, because leechers that all
    /// took the same pieces first (index order) would fetch the same
    /// pieces from a seeder at once and have nothing to trade: a seeder
    /// with 4 leechers then sent the file almost 4 times over. Runs,
    /// because a run of small pieces arrives together and is written in one
    /// write by the verifier, and is read sequentially by the remote.
    pub fn with_rng(have: &[bool], run: u32, rng: fastrand::Rng) -> PiecePicker {
        PiecePicker::with_wanted_rng(have, &vec![true; have.len()], run, rng)
    }

    /// As [`PiecePicker::with_wanted`], with a given random generator.
    pub fn with_wanted_rng(
        have: &[bool],
        wanted: &[bool],
        run: u32,
        mut rng: fastrand::Rng,
    ) -> PiecePicker {
        let count = have.len() as u32;
        let unwanted = |i: usize| !have[i] && !wanted.get(i).copied().unwrap_or(true);
        let mut missing = Buckets::new(count);
        let mut missing_bits = Bitfield::new(count);
        let run = run.max(1);
        let mut runs: Vec<u32> = (0..count.div_ceil(run)).collect();
        rng.shuffle(&mut runs);
        // `Buckets::scan` reads a bucket from its end: insert the wanted
        // order backwards.
        for &first in runs.iter().rev() {
            let pieces = first * run..(first * run + run).min(count);
            for index in pieces
                .rev()
                .filter(|&i| !have[i as usize] && !unwanted(i as usize))
            {
                missing.insert(index, 0);
                missing_bits.set(index);
            }
        }
        PiecePicker {
            state: (0..have.len())
                .map(|i| {
                    if have[i] {
                        PieceState::Have
                    } else if unwanted(i) {
                        PieceState::Unwanted
                    } else {
                        PieceState::Missing
                    }
                })
                .collect(),
            availability: vec![0; have.len()],
            seeds: 0,
            missing,
            missing_bits,
            in_flight: Vec::new(),
            in_flight_pos: vec![ABSENT; have.len()],
            partial: Vec::new(),
            is_partial: vec![false; have.len()],
            marks: vec![0; have.len()],
            mark: 0,
            have_count: count - missing_count(have),
            unwanted_count: (0..have.len()).filter(|&i| unwanted(i)).count() as u32,
            visited: 0,
            rng,
        }
    }

    /// The state of piece `index`.
    pub fn state(&self, index: u32) -> PieceState {
        self.state[index as usize]
    }

    /// How many connected peers have piece `index`.
    pub fn availability(&self, index: u32) -> u32 {
        self.availability[index as usize] + self.seeds
    }

    /// Number of verified pieces.
    pub fn have_count(&self) -> u32 {
        self.have_count
    }

    /// Whether every wanted piece is verified.
    pub fn is_complete(&self) -> bool {
        (self.have_count + self.unwanted_count) as usize == self.state.len()
    }

    /// Whether every piece is had or being fetched: the endgame.
    pub fn in_endgame(&self) -> bool {
        self.missing.is_empty() && !self.is_complete()
    }

    /// How many pieces the picks made so far looked at: what they cost,
    /// independent of the clock (for tests and debugging).
    pub fn visited(&self) -> u64 {
        self.visited
    }

    /// Counts a peer's pieces in (`delta` = 1, on its bitfield) or out (-1,
    /// when it leaves or its bitfield is replaced). A peer with every piece
    /// is counted once, as a seed; [`PiecePicker::add_have`] moves a peer
    /// there when it completes, so the same bitfield counts it out again.
    pub fn add_peer_pieces(&mut self, has: &Bitfield, delta: i32) {
        if has.is_complete() {
            self.seeds = self.seeds.saturating_add_signed(delta);
            return;
        }
        for index in has.iter() {
            if delta > 0 {
                self.rise(index);
            } else {
                self.fall(index);
            }
        }
    }

    /// Counts one `have` message: `peer_has` is the peer's pieces,
    /// `index` among them now.
    pub fn add_have(&mut self, index: u32, peer_has: &Bitfield) {
        if index as usize >= self.state.len() {
            return;
        }
        self.rise(index);
        // Counted per piece until now: from now on, as a seed (if its
        // pieces were all counted in, as they are when every bitfield and
        // `have` of the peer came here).
        if peer_has.is_complete() && self.availability.iter().all(|&a| a > 0) {
            for a in &mut self.availability {
                *a -= 1;
            }
            self.missing.fall_all();
            self.seeds += 1;
        }
    }

    fn rise(&mut self, index: u32) {
        let a = &mut self.availability[index as usize];
        if self.state[index as usize] == PieceState::Missing {
            self.missing.rise(index, *a);
        }
        *a += 1;
    }

    fn fall(&mut self, index: u32) {
        let a = &mut self.availability[index as usize];
        if *a == 0 {
            debug_assert!(false, "piece {index} counted out more than in");
            return;
        }
        if self.state[index as usize] == PieceState::Missing {
            self.missing.fall(index, *a);
        }
        *a -= 1;
    }

    /// Marks piece `index` as partly fetched (or no longer).
    pub fn set_partial(&mut self, index: u32, partial: bool) {
        let flag = &mut self.is_partial[index as usize];
        if *flag == partial {
            return;
        }
        *flag = partial;
        if partial {
            self.partial.push(index);
        } else if let Some(pos) = self.partial.iter().position(|&i| i == index) {
            self.partial.swap_remove(pos);
        }
    }

    /// Marks the pieces in `already` as the ones to skip.
    fn mark_skipped(&mut self, already: &[u32]) {
        self.mark = self.mark.wrapping_add(1);
        if self.mark == 0 {
            self.marks.fill(0);
            self.mark = 1;
        }
        for &index in already {
            if let Some(m) = self.marks.get_mut(index as usize) {
                *m = self.mark;
            }
        }
    }

    /// Whether the peer can be given piece `index` (counted as a visit).
    fn fits(&mut self, index: u32, peer_has: &Bitfield) -> bool {
        self.visited += 1;
        peer_has.has(index) && self.marks[index as usize] != self.mark
    }

    /// The piece `peer_has` can give that should be fetched next, skipping the
    /// pieces in `already` (those this peer is fetching).
    pub fn pick(&mut self, peer_has: &Bitfield, already: &[u32]) -> Option<u32> {
        self.mark_skipped(already);
        self.pick_marked(peer_has)
    }

    fn pick_marked(&mut self, peer_has: &Bitfield) -> Option<u32> {
        for k in 0..self.partial.len() {
            let index = self.partial[k];
            if self.state[index as usize] == PieceState::Missing && self.fits(index, peer_has) {
                return Some(index);
            }
        }
        if self.missing.is_empty() {
            return if self.is_complete() {
                None
            } else {
                self.pick_endgame(peer_has)
            };
        }
        if self.have_count < RANDOM_FIRST_PIECES {
            for _ in 0..RANDOM_TRIES {
                let index = self.missing.at(self.rng.usize(..self.missing.len()));
                if self.fits(index, peer_has) {
                    return Some(index);
                }
            }
        }
        let mut looked = 0;
        let mut found = None;
        for index in self.missing.scan().take(SCAN_LIMIT) {
            looked += 1;
            if peer_has.has(index) && self.marks[index as usize] != self.mark {
                found = Some(index);
                break;
            }
        }
        self.visited += looked;
        if found.is_some() {
            return found;
        }
        if self.missing.len() <= SCAN_LIMIT {
            return None;
        }
        // The peer has few of the pieces we lack, or only common ones:
        // its pieces that we lack, a word at a time.
        let mut best: Option<(u32, u32)> = None;
        for index in peer_has.iter_and(&self.missing_bits) {
            self.visited += 1;
            if self.marks[index as usize] == self.mark {
                continue;
            }
            let a = self.availability[index as usize];
            if best.is_none_or(|(b, _)| a < b) {
                best = Some((a, index));
            }
        }
        best.map(|(_, index)| index)
    }

    /// Endgame: the in-flight piece the peer has with the fewest holders.
    fn pick_endgame(&mut self, peer_has: &Bitfield) -> Option<u32> {
        let mut best: Option<(u8, u32)> = None;
        for k in 0..self.in_flight.len() {
            let index = self.in_flight[k];
            let PieceState::InFlight(holders) = self.state[index as usize] else {
                continue;
            };
            if holders < MAX_HOLDERS
                && best.is_none_or(|b| (holders, index) < b)
                && self.fits(index, peer_has)
            {
                best = Some((holders, index));
            }
        }
        best.map(|(_, index)| index)
    }

    /// A piece for a probe (the first blocks of a piece, from a peer not
    /// proven yet): what [`PiecePicker::pick`] would give, or else any piece
    /// in flight that the peer has and is not fetching. A probe does not
    /// hold its piece (the caller does not [`PiecePicker::assign`] it), so
    /// many peers may probe the same piece while a proven one fetches it.
    pub fn pick_probe(&mut self, peer_has: &Bitfield, already: &[u32]) -> Option<u32> {
        self.mark_skipped(already);
        if let Some(index) = self.pick_marked(peer_has) {
            return Some(index);
        }
        let mut best = None;
        for k in 0..self.in_flight.len() {
            let index = self.in_flight[k];
            if best.is_none_or(|b| index < b) && self.fits(index, peer_has) {
                best = Some(index);
            }
        }
        best
    }

    /// Takes missing piece `index` out of the missing pieces.
    fn leave_missing(&mut self, index: u32) {
        self.missing
            .remove(index, self.availability[index as usize]);
        self.missing_bits.unset(index);
    }

    fn enter_missing(&mut self, index: u32) {
        self.missing
            .insert(index, self.availability[index as usize]);
        self.missing_bits.set(index);
    }

    fn enter_flight(&mut self, index: u32) {
        self.in_flight_pos[index as usize] = self.in_flight.len() as u32;
        self.in_flight.push(index);
    }

    fn leave_flight(&mut self, index: u32) {
        let pos = std::mem::replace(&mut self.in_flight_pos[index as usize], ABSENT) as usize;
        self.in_flight.swap_remove(pos);
        if let Some(&moved) = self.in_flight.get(pos) {
            self.in_flight_pos[moved as usize] = pos as u32;
        }
    }

    /// Records that one more peer fetches piece `index`.
    pub fn assign(&mut self, index: u32) {
        match self.state[index as usize] {
            PieceState::Missing => {
                self.leave_missing(index);
                self.enter_flight(index);
                self.state[index as usize] = PieceState::InFlight(1);
            }
            PieceState::InFlight(n) => {
                self.state[index as usize] = PieceState::InFlight(n.saturating_add(1));
            }
            PieceState::Have | PieceState::Verifying | PieceState::Unwanted => {}
        }
    }

    /// Records that one peer stopped fetching piece `index` (it left, was
    /// choked, or sent bad data).
    pub fn release(&mut self, index: u32) {
        match self.state[index as usize] {
            PieceState::InFlight(n) if n > 1 => {
                self.state[index as usize] = PieceState::InFlight(n - 1);
            }
            PieceState::InFlight(_) => {
                self.leave_flight(index);
                self.state[index as usize] = PieceState::Missing;
                self.enter_missing(index);
            }
            PieceState::Have
            | PieceState::Verifying
            | PieceState::Missing
            | PieceState::Unwanted => {}
        }
    }

    /// Records that piece `index` was delivered whole and is being
    /// verified. Peers still fetching it (in endgame) no longer count.
    pub fn verifying(&mut self, index: u32) {
        match self.state[index as usize] {
            PieceState::Have | PieceState::Verifying | PieceState::Unwanted => return,
            PieceState::Missing => self.leave_missing(index),
            PieceState::InFlight(_) => self.leave_flight(index),
        }
        self.state[index as usize] = PieceState::Verifying;
    }

    /// Records that piece `index` failed its hash check: it is missing again.
    pub fn failed(&mut self, index: u32) {
        if self.state[index as usize] == PieceState::Verifying {
            self.state[index as usize] = PieceState::Missing;
            self.enter_missing(index);
        }
    }

    /// Records that piece `index` is verified and written.
    pub fn complete(&mut self, index: u32) {
        match self.state[index as usize] {
            PieceState::Have | PieceState::Unwanted => return,
            PieceState::Missing => self.leave_missing(index),
            PieceState::InFlight(_) => self.leave_flight(index),
            PieceState::Verifying => {}
        }
        self.state[index as usize] = PieceState::Have;
        self.set_partial(index, false);
        self.have_count += 1;
    }
}

fn missing_count(have: &[bool]) -> u32 {
    have.iter().filter(|&&h| !h).count() as u32
}

#[cfg(test)]
mod tests;
