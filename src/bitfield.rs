//! A set of piece indices in the wire protocol's bit order (BEP 3 `bitfield`:
//! the high bit of the first byte is piece 0). Pure code.
//!
//! The bytes are the wire payload as it is; operations over the whole set
//! (iteration, comparison, counts) read them eight at a time as big-endian
//! `u64` words, so they cost a word per 64 pieces plus one step per piece
//! in the set, and the count is kept as pieces are added.

/// Which pieces a peer (or we) have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bitfield {
    bytes: Vec<u8>,
    piece_count: u32,
    set_count: u32,
}

impl Bitfield {
    /// An empty set over `piece_count` pieces.
    pub fn new(piece_count: u32) -> Bitfield {
        Bitfield {
            bytes: vec![0; (piece_count as usize).div_ceil(8)],
            piece_count,
            set_count: 0,
        }
    }

    /// The set of pieces marked `true`.
    pub fn from_bools(have: &[bool]) -> Bitfield {
        let mut bits = Bitfield::new(have.len() as u32);
        for (i, _) in have.iter().enumerate().filter(|(_, h)| **h) {
            bits.set(i as u32);
        }
        bits
    }

    /// Reads a bitfield payload; its length and spare bits were checked by the decoder.
    pub fn from_payload(payload: &[u8], piece_count: u32) -> Bitfield {
        let mut bits = Bitfield::new(piece_count);
        let n = bits.bytes.len().min(payload.len());
        bits.bytes[..n].copy_from_slice(&payload[..n]);
        let spare = (bits.bytes.len() * 8 - piece_count as usize) as u32;
        if let Some(last) = bits.bytes.last_mut() {
            *last &= 0xffu8.checked_shl(spare).unwrap_or(0);
        }
        bits.set_count = bits.bytes.iter().map(|b| b.count_ones()).sum();
        bits
    }

    /// Whether the spare bits after the last of `piece_count` pieces are
    /// clear in a bitfield payload (BEP 3 requires it).
    pub fn spare_bits_clear(payload: &[u8], piece_count: u32) -> bool {
        let spare = (payload.len() * 8).saturating_sub(piece_count as usize);
        match payload.last() {
            Some(&last) if spare > 0 && spare < 8 => last & ((1u8 << spare) - 1) == 0,
            _ => true,
        }
    }

    /// The payload of a `bitfield` message.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Number of pieces the set ranges over.
    pub fn piece_count(&self) -> u32 {
        self.piece_count
    }

    /// Whether piece `index` is in the set (false when out of range).
    pub fn has(&self, index: u32) -> bool {
        index < self.piece_count && self.bytes[(index / 8) as usize] & (0x80 >> (index % 8)) != 0
    }

    /// Removes piece `index`; returns whether it was there.
    pub fn unset(&mut self, index: u32) -> bool {
        if !self.has(index) {
            return false;
        }
        self.bytes[(index / 8) as usize] &= !(0x80 >> (index % 8));
        self.set_count -= 1;
        true
    }

    /// Adds piece `index`; returns whether it is new (false when it was
    /// already there or is out of range).
    pub fn set(&mut self, index: u32) -> bool {
        if index >= self.piece_count {
            return false;
        }
        let byte = &mut self.bytes[(index / 8) as usize];
        let mask = 0x80 >> (index % 8);
        if *byte & mask != 0 {
            return false;
        }
        *byte |= mask;
        self.set_count += 1;
        true
    }

    /// Number of pieces in the set.
    pub fn count(&self) -> u32 {
        self.set_count
    }

    /// Whether every piece is in the set.
    pub fn is_complete(&self) -> bool {
        self.set_count == self.piece_count
    }

    /// Adds every piece of `other` (a set over as many pieces).
    pub fn union_with(&mut self, other: &Bitfield) {
        for (mine, theirs) in self.bytes.iter_mut().zip(&other.bytes) {
            *mine |= theirs;
        }
        self.set_count = self.bytes.iter().map(|b| b.count_ones()).sum();
    }

    /// Whether `self` has some piece that `other` lacks.
    pub fn has_any_missing_from(&self, other: &Bitfield) -> bool {
        (0..self.word_count()).any(|k| self.word(k) & !other.word(k) != 0)
    }

    /// Number of pieces `self` has that `other` lacks.
    pub fn count_missing_from(&self, other: &Bitfield) -> u32 {
        (0..self.word_count())
            .map(|k| (self.word(k) & !other.word(k)).count_ones())
            .sum()
    }

    /// The indices in the set, in order.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        SetBits::new(self.word_count(), move |k| self.word(k))
    }

    /// The indices in both `self` and `other`, in order.
    pub fn iter_and<'a>(&'a self, other: &'a Bitfield) -> impl Iterator<Item = u32> + 'a {
        SetBits::new(self.word_count(), move |k| self.word(k) & other.word(k))
    }

    fn word_count(&self) -> usize {
        self.bytes.len().div_ceil(8)
    }

    /// Pieces `64 k ..= 64 k + 63`, piece `64 k` in the high bit (zero
    /// past the end, and for a word beyond another set's length).
    fn word(&self, k: usize) -> u64 {
        match self.bytes.get(8 * k..8 * k + 8) {
            Some(eight) => u64::from_be_bytes(eight.try_into().expect("eight bytes")),
            None => {
                let mut eight = [0u8; 8];
                let tail = self.bytes.get(8 * k..).unwrap_or_default();
                eight[..tail.len()].copy_from_slice(tail);
                u64::from_be_bytes(eight)
            }
        }
    }
}

/// The set bits of a sequence of words, as piece indices.
struct SetBits<F> {
    word_at: F,
    word_count: usize,
    k: usize,
    word: u64,
}

impl<F: Fn(usize) -> u64> SetBits<F> {
    fn new(word_count: usize, word_at: F) -> SetBits<F> {
        let word = if word_count > 0 { word_at(0) } else { 0 };
        SetBits {
            word_at,
            word_count,
            k: 0,
            word,
        }
    }
}

impl<F: Fn(usize) -> u64> Iterator for SetBits<F> {
    type Item = u32;

    fn next(&mut self) -> Option<u32> {
        while self.word == 0 {
            self.k += 1;
            if self.k >= self.word_count {
                return None;
            }
            self.word = (self.word_at)(self.k);
        }
        let bit = self.word.leading_zeros();
        self.word &= !(1u64 << (63 - bit));
        Some(self.k as u32 * 64 + bit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_order_matches_the_spec() {
        let mut bits = Bitfield::new(10);
        bits.set(0);
        bits.set(9);
        assert_eq!(bits.as_bytes(), &[0x80, 0x40]);
        assert!(bits.has(0) && bits.has(9) && !bits.has(1));
        assert_eq!(bits.count(), 2);
        assert!(!bits.set(10), "out of range");
        // Regression: a repeated `have` used to count as new each time, so
        // one peer could skew rarest-first and flood the manager.
        assert!(!bits.set(9), "already there");
        assert!(bits.set(8), "new");
        assert!(!bits.has(10));
    }

    #[test]
    fn payload_round_trip_and_count() {
        let bits = Bitfield::from_payload(&[0xff, 0xc0], 10);
        assert!(bits.is_complete());
        assert_eq!(bits.iter().collect::<Vec<_>>(), (0..10).collect::<Vec<_>>());
        assert_eq!(
            Bitfield::from_bools(&[true, false, true]).as_bytes(),
            &[0xa0]
        );
    }

    #[test]
    fn missing_from_compares_sets() {
        let a = Bitfield::from_bools(&[true, false]);
        let b = Bitfield::from_bools(&[true, true]);
        assert!(b.has_any_missing_from(&a));
        assert!(!a.has_any_missing_from(&b));
        assert_eq!(b.count_missing_from(&a), 1);
        assert_eq!(a.count_missing_from(&b), 0);
    }

    #[test]
    fn word_wise_operations_agree_with_bit_by_bit_ones() {
        // Sizes around the word and byte boundaries, and a tail shorter than a word.
        for count in [0u32, 1, 7, 8, 9, 63, 64, 65, 130, 1000] {
            let mut rng = fastrand::Rng::with_seed(u64::from(count));
            let a = Bitfield::from_bools(&(0..count).map(|_| rng.bool()).collect::<Vec<_>>());
            let b = Bitfield::from_bools(&(0..count).map(|_| rng.bool()).collect::<Vec<_>>());
            let in_a: Vec<u32> = (0..count).filter(|&i| a.has(i)).collect();
            assert_eq!(a.iter().collect::<Vec<_>>(), in_a, "{count} pieces");
            let both: Vec<u32> = (0..count).filter(|&i| a.has(i) && b.has(i)).collect();
            assert_eq!(a.iter_and(&b).collect::<Vec<_>>(), both);
            let only_a = (0..count).filter(|&i| a.has(i) && !b.has(i)).count() as u32;
            assert_eq!(a.count_missing_from(&b), only_a);
            assert_eq!(a.has_any_missing_from(&b), only_a > 0);
        }
    }

    #[test]
    fn unset_removes_and_counts() {
        let mut bits = Bitfield::from_bools(&[true, true, false]);
        assert!(bits.unset(1));
        assert!(!bits.unset(1), "already gone");
        assert!(!bits.unset(2) && !bits.unset(9));
        assert_eq!(bits.iter().collect::<Vec<_>>(), vec![0]);
        assert_eq!(bits.count(), 1);
    }
}
