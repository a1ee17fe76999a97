//! A set of piece indices in the wire protocol's bit order (BEP 3 `bitfield`:
//! the high bit of the first byte is piece 0). Pure code.

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

    /// Whether `self` has some piece that `other` lacks.
    pub fn has_any_missing_from(&self, other: &Bitfield) -> bool {
        self.bytes
            .iter()
            .zip(&other.bytes)
            .any(|(mine, theirs)| mine & !theirs != 0)
    }

    /// The indices in the set, in order.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.piece_count).filter(|&i| self.has(i))
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
    }
}
