//! The missing pieces ordered by availability: one dense vector in which
//! the pieces held by no peer come first, then those held by one, and so
//! on, with each piece's position kept beside it. A piece whose
//! availability changes by one moves to the neighbouring bucket by a
//! single swap; adding or removing a piece walks the bucket boundaries,
//! so it costs one swap per distinct availability above its own (at most
//! the number of peers), never a step per piece.

/// Position of a piece that is not in the vector.
const ABSENT: u32 = u32::MAX;

/// Pieces grouped by availability, rarest first.
#[derive(Debug, Clone)]
pub(super) struct Buckets {
    /// The pieces; bucket `a` is `order[starts[a]..starts[a + 1]]`.
    order: Vec<u32>,
    /// Each piece's position in `order`, or [`ABSENT`].
    pos: Vec<u32>,
    /// Where each bucket begins; the last entry is `order.len()`, so
    /// there are `starts.len() - 1` buckets, at least one.
    starts: Vec<u32>,
}

impl Buckets {
    /// No pieces, out of `piece_count`.
    pub(super) fn new(piece_count: u32) -> Buckets {
        Buckets {
            order: Vec::new(),
            pos: vec![ABSENT; piece_count as usize],
            starts: vec![0, 0],
        }
    }

    /// Number of pieces in the vector.
    pub(super) fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether the vector is empty.
    pub(super) fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// The pieces, rarest first (in no particular order within a bucket).
    #[cfg(test)]
    pub(super) fn rarest_first(&self) -> &[u32] {
        &self.order
    }

    /// The pieces, rarest first, each bucket read from its end: pieces
    /// inserted in descending index order come out ascending, and taking
    /// the last of the rarest bucket moves no other piece, so pieces
    /// equally rare go in index order until availability reshuffles them.
    pub(super) fn scan(&self) -> impl Iterator<Item = u32> + '_ {
        self.starts.windows(2).flat_map(|w| {
            self.order[w[0] as usize..w[1] as usize]
                .iter()
                .rev()
                .copied()
        })
    }

    /// The piece at `position` in [`Buckets::rarest_first`].
    pub(super) fn at(&self, position: usize) -> u32 {
        self.order[position]
    }

    fn swap(&mut self, a: usize, b: usize) {
        self.order.swap(a, b);
        self.pos[self.order[a] as usize] = a as u32;
        self.pos[self.order[b] as usize] = b as u32;
    }

    /// Makes sure bucket `a` exists.
    fn reach(&mut self, a: u32) {
        while self.starts.len() < a as usize + 2 {
            self.starts.push(self.order.len() as u32);
        }
    }

    /// Drops empty buckets at the top (keeping one).
    fn trim(&mut self) {
        let n = self.starts.len();
        if n > 2 && self.starts[n - 2] == self.starts[n - 1] {
            self.starts.pop();
            self.trim();
        }
    }

    /// Moves `piece` from the bucket `a` to `a + 1` (the swap of a rise).
    fn step_up(&mut self, piece: u32, a: u32) {
        self.reach(a + 1);
        let last = self.starts[a as usize + 1] as usize - 1;
        self.swap(self.pos[piece as usize] as usize, last);
        self.starts[a as usize + 1] -= 1;
    }

    /// Moves `piece` from the bucket `a` to `a - 1`.
    fn step_down(&mut self, piece: u32, a: u32) {
        let first = self.starts[a as usize] as usize;
        self.swap(self.pos[piece as usize] as usize, first);
        self.starts[a as usize] += 1;
    }

    /// Adds `piece`, held by `a` peers.
    pub(super) fn insert(&mut self, piece: u32, a: u32) {
        debug_assert_eq!(self.pos[piece as usize], ABSENT, "piece {piece} twice");
        self.reach(a);
        self.pos[piece as usize] = self.order.len() as u32;
        self.order.push(piece);
        *self.starts.last_mut().expect("at least one bucket") += 1;
        // Now in the top bucket: walk down to its own.
        let top = self.starts.len() as u32 - 2;
        for b in (a + 1..=top).rev() {
            self.step_down(piece, b);
        }
    }

    /// Removes `piece`, held by `a` peers.
    pub(super) fn remove(&mut self, piece: u32, a: u32) {
        debug_assert_ne!(self.pos[piece as usize], ABSENT, "piece {piece} absent");
        let top = self.starts.len() as u32 - 2;
        for b in a..top {
            self.step_up(piece, b);
        }
        let last = self.order.len() - 1;
        self.swap(self.pos[piece as usize] as usize, last);
        self.order.pop();
        self.pos[piece as usize] = ABSENT;
        *self.starts.last_mut().expect("at least one bucket") -= 1;
        self.trim();
    }

    /// `piece`, held by `a` peers, is now held by one more.
    pub(super) fn rise(&mut self, piece: u32, a: u32) {
        self.step_up(piece, a);
    }

    /// `piece`, held by `a` peers (at least one), is now held by one fewer.
    pub(super) fn fall(&mut self, piece: u32, a: u32) {
        self.step_down(piece, a);
        self.trim();
    }

    /// Every piece is held by one peer fewer; none was held by no peer.
    pub(super) fn fall_all(&mut self) {
        debug_assert_eq!(self.starts[1], 0, "a piece held by nobody");
        self.starts.remove(0);
        if self.starts.len() < 2 {
            self.starts.push(self.order.len() as u32);
        }
    }

    /// Checks the invariants against the availability of each piece (tests).
    #[cfg(test)]
    pub(super) fn check(&self, availability: &[u32]) {
        assert_eq!(self.starts[0], 0);
        assert_eq!(*self.starts.last().unwrap() as usize, self.order.len());
        for (a, w) in self.starts.windows(2).enumerate() {
            assert!(w[0] <= w[1]);
            for p in w[0]..w[1] {
                let piece = self.order[p as usize];
                assert_eq!(self.pos[piece as usize], p);
                assert_eq!(availability[piece as usize], a as u32, "piece {piece}");
            }
        }
        let present = self.pos.iter().filter(|&&p| p != ABSENT).count();
        assert_eq!(present, self.order.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_moves_keep_the_buckets_sorted() {
        let n = 200u32;
        let mut rng = fastrand::Rng::with_seed(3);
        let mut availability = vec![0u32; n as usize];
        let mut present = vec![false; n as usize];
        let mut buckets = Buckets::new(n);
        for _ in 0..20_000 {
            let piece = rng.u32(..n);
            let i = piece as usize;
            let a = availability[i];
            match rng.u8(..4) {
                0 if !present[i] => {
                    buckets.insert(piece, a);
                    present[i] = true;
                }
                1 if present[i] => {
                    buckets.remove(piece, a);
                    present[i] = false;
                }
                2 => {
                    if present[i] {
                        buckets.rise(piece, a);
                    }
                    availability[i] += 1;
                }
                3 if a > 0 => {
                    if present[i] {
                        buckets.fall(piece, a);
                    }
                    availability[i] -= 1;
                }
                _ => {}
            }
            buckets.check(&availability);
        }
        let mut listed: Vec<u32> = buckets.rarest_first().to_vec();
        listed.sort_unstable();
        let expected: Vec<u32> = (0..n).filter(|&i| present[i as usize]).collect();
        assert_eq!(listed, expected);
    }

    #[test]
    fn fall_all_shifts_every_bucket_down() {
        let mut buckets = Buckets::new(3);
        buckets.insert(0, 1);
        buckets.insert(1, 3);
        buckets.insert(2, 2);
        buckets.fall_all();
        buckets.check(&[0, 2, 1]);
        assert_eq!(buckets.rarest_first(), &[0, 2, 1]);
    }
}
