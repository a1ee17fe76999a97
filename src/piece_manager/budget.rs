//! The piece manager's memory budget: the bytes of piece buffers that may
//! exist at once, whatever the piece length and however many peers there are.
//!
//! Every piece buffer outside the idle pool is charged here while it exists:
//! the pieces assigned to peers (from the `Download` command until the piece
//! comes back delivered, returned or with its peer's disconnection), the
//! blocks the manager keeps of unfinished pieces, and the pieces with the
//! verify workers (until their verdict). A piece is charged its length plus
//! [`PIECE_OVERHEAD`] and two bytes per block (its bookkeeping), so a
//! torrent of one-byte pieces is bounded too.
//!
//! Two pots, so that neither kind of work can starve the other:
//! - whole pieces, for peers that have shown they send blocks: at most
//!   [`BUDGET_BYTES`] or two pieces, whichever is larger (one piece is always
//!   possible; a second one lets a peer go on fetching while the first is
//!   verified);
//! - probes, for the others (new peers, snubbed peers): the first
//!   [`PROBE_BLOCKS`] blocks of one piece each, at most [`PROBE_BYTES`] in
//!   all. A peer that delivers its probe is granted the whole piece from the
//!   first pot when it fits.
//!
//! So forty peers that never send a block hold forty probes (3 MiB), not
//! forty pieces; and the memory of the piece buffers stays under
//! [`Budget::limit`]. Pure accounting: the manager calls it on each
//! transition, and nothing here knows about peers.

use crate::layout::BLOCK_LEN;
use crate::peer::pipeline::PROBE_BLOCKS;

/// Bytes of whole pieces outstanding at most (unless two pieces are more).
pub const BUDGET_BYTES: u64 = 64 * 1024 * 1024;
/// Bytes of probes outstanding at most.
pub const PROBE_BYTES: u64 = 4 * 1024 * 1024;
/// Bytes a piece costs beyond its data, besides two per block: the `Vec`
/// headers and allocator chunks of its buffer and block states, its job
/// and its messages.
pub const PIECE_OVERHEAD: u64 = 256;

/// What one outstanding piece is charged, and to which pot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Charge {
    /// Bytes.
    pub len: u64,
    /// Charged to the probes' pot.
    pub probe: bool,
}

/// Bytes charged for a buffer of `data_len` bytes of a piece of `size` bytes.
fn cost(data_len: u64, size: u32) -> u64 {
    data_len + 2 * u64::from(size.div_ceil(BLOCK_LEN)) + PIECE_OVERHEAD
}

/// Bytes charged for a whole piece of `size` bytes.
pub fn piece_cost(size: u32) -> u64 {
    cost(u64::from(size), size)
}

/// Whether a piece of `size` bytes is probed (larger than its probe).
pub fn is_probed(size: u32) -> bool {
    size.div_ceil(BLOCK_LEN) > PROBE_BLOCKS
}

/// The budget and what is charged against it.
#[derive(Debug)]
pub struct Budget {
    whole_limit: u64,
    whole: u64,
    probes: u64,
}

impl Budget {
    /// The budget of a torrent whose pieces are `piece_len` bytes.
    pub fn new(piece_len: u32) -> Budget {
        Budget {
            whole_limit: BUDGET_BYTES.max(2 * piece_cost(piece_len)),
            whole: 0,
            probes: 0,
        }
    }

    /// Most bytes of piece buffers outstanding at once (both pots).
    pub fn limit(&self) -> u64 {
        self.whole_limit + PROBE_BYTES
    }

    /// Bytes charged now (both pots).
    pub fn charged(&self) -> u64 {
        self.whole + self.probes
    }

    /// Charges a whole piece of `size` bytes, if it fits.
    pub fn whole(&mut self, size: u32) -> Option<Charge> {
        let len = piece_cost(size);
        if self.whole + len > self.whole_limit {
            return None;
        }
        self.whole += len;
        Some(Charge { len, probe: false })
    }

    /// Charges a probe of a piece of `size` bytes, if it fits (a piece too
    /// small to be probed is charged whole).
    pub fn probe(&mut self, size: u32) -> Option<Charge> {
        if !is_probed(size) {
            return self.whole(size);
        }
        let len = cost(u64::from(PROBE_BLOCKS * BLOCK_LEN), size);
        if self.probes + len > PROBE_BYTES {
            return None;
        }
        self.probes += len;
        Some(Charge { len, probe: true })
    }

    /// Charges the whole piece of `size` bytes for `probe`, if it fits;
    /// `probe` is released only then.
    pub fn grow(&mut self, probe: Charge, size: u32) -> Option<Charge> {
        let whole = self.whole(size)?;
        self.release(probe);
        Some(whole)
    }

    /// Releases a charge: its buffer is gone or back in the pool.
    pub fn release(&mut self, charge: Charge) {
        let pot = if charge.probe {
            &mut self.probes
        } else {
            &mut self.whole
        };
        *pot = pot
            .checked_sub(charge.len)
            .expect("a charge is released once, from its own pot");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u32 = 1024 * 1024;

    #[test]
    fn one_mib_pieces_share_the_budget_and_a_released_piece_makes_room() {
        let mut budget = Budget::new(MIB);
        let charges: Vec<Charge> = (0..).map_while(|_| budget.whole(MIB)).collect();
        assert_eq!(charges.len(), 63, "64 MiB minus the overheads");
        assert!(budget.charged() <= BUDGET_BYTES);
        assert_eq!(budget.whole(MIB), None);
        budget.release(charges[0]);
        assert!(budget.whole(MIB).is_some());
    }

    #[test]
    fn sixty_four_mib_pieces_allow_two_whole_and_probes_of_64_kib() {
        let mut budget = Budget::new(64 * MIB);
        assert_eq!(budget.limit(), 2 * piece_cost(64 * MIB) + PROBE_BYTES);
        let probes: Vec<Charge> = (0..).map_while(|_| budget.probe(64 * MIB)).collect();
        let probe_cost = 64 * 1024 + 2 * 4096 + PIECE_OVERHEAD;
        assert_eq!(probes.len() as u64, PROBE_BYTES / probe_cost);
        assert!(probes.len() >= 50, "a probe for each of 50 peers");
        let a = budget
            .grow(probes[0], 64 * MIB)
            .expect("a first piece fits");
        let _b = budget.grow(probes[1], 64 * MIB).expect("and a second");
        assert_eq!(budget.grow(probes[2], 64 * MIB), None, "not a third");
        budget.release(a);
        budget.grow(probes[2], 64 * MIB).expect("room again");
        assert_eq!(
            budget.charged(),
            2 * piece_cost(64 * MIB) + (probes.len() as u64 - 3) * probe_cost
        );
    }

    #[test]
    fn one_byte_pieces_are_charged_their_overhead() {
        let mut budget = Budget::new(1);
        let charge = budget.probe(1).expect("fits");
        assert_eq!(
            charge,
            Charge {
                len: 1 + 2 + PIECE_OVERHEAD,
                probe: false
            }
        );
        let mut count = 1u64;
        while budget.whole(1).is_some() {
            count += 1;
        }
        assert_eq!(count, BUDGET_BYTES / (3 + PIECE_OVERHEAD));
    }

    #[test]
    fn a_piece_larger_than_the_budget_still_fits_alone() {
        let mut budget = Budget::new(64 * MIB);
        assert!(budget.whole(64 * MIB).is_some());
        assert!(budget.whole(64 * MIB).is_some());
        assert_eq!(budget.whole(1), None);
    }
}
