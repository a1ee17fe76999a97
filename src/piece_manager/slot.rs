//! What the piece manager knows of one accepted peer: its pieces, the
//! choke and interest state both ways, the pieces assigned to it, and the
//! byte counts its rates come from.

use std::net::SocketAddr;

use super::budget::Charge;
use crate::bitfield::Bitfield;

/// A piece assigned to a peer, and what its buffer is charged.
#[derive(Debug, Clone, Copy)]
pub(super) struct Held {
    pub(super) index: u32,
    pub(super) charge: Charge,
}

/// What the manager knows of a peer whose handshake it accepted.
pub(super) struct PeerSlot {
    pub(super) addr: SocketAddr,
    pub(super) has: Bitfield,
    /// The remote unchokes us.
    pub(super) unchoked: bool,
    /// The remote is interested in our pieces.
    pub(super) interested: bool,
    /// We choke the remote (we start choking, as BEP 3 says).
    pub(super) am_choking: bool,
    /// The remote stopped sending blocks: one piece at a time for it.
    pub(super) snubbed: bool,
    /// The remote sent blocks since it connected or was snubbed: it gets
    /// whole pieces; until then, probes (see [`super::budget`]).
    pub(super) proven: bool,
    pub(super) assigned: Vec<Held>,
    /// Pieces it gave back when snubbed: they go to other peers.
    pub(super) avoid: Vec<u32>,
    /// Counters at the last one-second sample, and the rate from them.
    pub(super) sample: (u64, u64),
    pub(super) down_rate: u64,
    /// Counters at the last choke evaluation, and the rate the choker uses.
    pub(super) choke_sample: (u64, u64),
    pub(super) choke_rate: u64,
}

impl PeerSlot {
    pub(super) fn new(addr: SocketAddr, piece_count: u32) -> PeerSlot {
        PeerSlot {
            addr,
            has: Bitfield::new(piece_count),
            unchoked: false,
            interested: false,
            am_choking: true,
            snubbed: false,
            proven: false,
            assigned: Vec::new(),
            avoid: Vec::new(),
            sample: (0, 0),
            down_rate: 0,
            choke_sample: (0, 0),
            choke_rate: 0,
        }
    }

    /// Where piece `index` is in [`PeerSlot::assigned`].
    pub(super) fn position(&self, index: u32) -> Option<usize> {
        self.assigned.iter().position(|h| h.index == index)
    }
}
