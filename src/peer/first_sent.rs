//! Which connection each piece was first served to, shared by the peer
//! threads of one torrent: with an upload limit, a connection serves
//! first the pieces that have not gone out to anyone else yet.
//!
//! Why: while our upload is scarce (an initial seeder limited to U_s with
//! many leechers), a block sent twice before every piece has gone out once
//! is upload the swarm cannot get back. Leechers cannot see each other's
//! requests, so two of them often ask us for the same rarest piece; we
//! are the only ones who see both. The connection that is served a piece's
//! first block claims it ([`FirstSent::claim`]); on every other
//! connection, requests for that piece are then "repeats", which wait
//! while the upload limit has no spare bytes (see the connection's `limit`
//! submodule) and go out once it has, or after a bounded delay.
//!
//! Not owned here: the serving order itself and the limit. Pure atomics:
//! no locks, no sockets; 4 bytes a piece.

use std::sync::atomic::{AtomicU32, Ordering};

/// No connection was served a block of the piece yet.
const NONE: u32 = 0;

/// The first connection served each piece; see the module docs.
#[derive(Debug)]
pub struct FirstSent {
    owners: Box<[AtomicU32]>,
    next_id: AtomicU32,
}

impl FirstSent {
    /// Nothing sent yet, for `piece_count` pieces.
    pub fn new(piece_count: u32) -> FirstSent {
        FirstSent {
            owners: (0..piece_count).map(|_| AtomicU32::new(NONE)).collect(),
            next_id: AtomicU32::new(NONE),
        }
    }

    /// A new connection's id, never 0 (ids are reused only after
    /// four billion connections, which at worst makes one repeat look new).
    pub fn connection_id(&self) -> u32 {
        loop {
            let id = self.next_id.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
            if id != NONE {
                return id;
            }
        }
    }

    /// Whether serving `index` to connection `id` sends it out for the
    /// first time (or goes on with what `id` was first to get).
    pub fn is_new_for(&self, index: u32, id: u32) -> bool {
        self.owners.get(index as usize).is_none_or(|owner| {
            let owner = owner.load(Ordering::Relaxed);
            owner == NONE || owner == id
        })
    }

    /// Records that a block of `index` goes out to connection `id`; the
    /// first connection to get one keeps the piece.
    pub fn claim(&self, index: u32, id: u32) {
        if let Some(owner) = self.owners.get(index as usize) {
            // Only the first claim wins; later ones change nothing.
            let _ = owner.compare_exchange(NONE, id, Ordering::Relaxed, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_piece_is_new_to_everyone_until_one_connection_is_served_it() {
        let sent = FirstSent::new(4);
        let (a, b) = (sent.connection_id(), sent.connection_id());
        assert_ne!(a, b);
        assert!(sent.is_new_for(2, a) && sent.is_new_for(2, b));
        sent.claim(2, a);
        assert!(
            sent.is_new_for(2, a),
            "the first connection goes on with it"
        );
        assert!(!sent.is_new_for(2, b), "for another it is a repeat");
        sent.claim(2, b);
        assert!(
            !sent.is_new_for(2, b),
            "a later claim does not take it over"
        );
        assert!(sent.is_new_for(3, b), "other pieces are untouched");
    }

    #[test]
    fn an_index_out_of_range_is_never_held_back() {
        let sent = FirstSent::new(1);
        let id = sent.connection_id();
        sent.claim(7, id);
        assert!(sent.is_new_for(7, id + 1));
    }
}
