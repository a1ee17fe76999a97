//! Piece buffers, recycled: the peer threads fill them with blocks, the
//! verifier workers give them back once the piece is written.
//!
//! A fresh buffer for every piece costs a zero-fill of the whole piece and,
//! for large pieces, fresh pages from the kernel; a recycled one costs
//! neither. A recycled buffer holds the bytes of an earlier piece, which is
//! harmless: a piece is only hashed once every one of its blocks has been
//! written over them. At most [`PieceBuffers::new`]'s `capacity` idle
//! buffers are kept; the rest are freed.

use crossbeam_channel::{Receiver, Sender, bounded};

/// The pool of idle piece buffers, shared by every thread of a session.
#[derive(Debug, Clone)]
pub struct PieceBuffers {
    idle_tx: Sender<Vec<u8>>,
    idle_rx: Receiver<Vec<u8>>,
}

impl PieceBuffers {
    /// A pool keeping at most `capacity` idle buffers.
    pub fn new(capacity: usize) -> PieceBuffers {
        let (idle_tx, idle_rx) = bounded(capacity.max(1));
        PieceBuffers { idle_tx, idle_rx }
    }

    /// A buffer of `len` bytes, recycled when one is idle; its contents
    /// are unspecified.
    pub fn take(&self, len: usize) -> Vec<u8> {
        match self.idle_rx.try_recv() {
            Ok(mut buf) => {
                buf.resize(len, 0);
                buf
            }
            Err(_) => vec![0; len],
        }
    }

    /// Gives a buffer back for reuse (it is freed if the pool is full).
    pub fn give(&self, buf: Vec<u8>) {
        let _ = self.idle_tx.try_send(buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_at_the_length_asked_and_the_pool_stays_bounded() {
        let pool = PieceBuffers::new(2);
        let mut first = pool.take(100);
        assert_eq!(first.len(), 100);
        first[0] = 7;
        let address = first.as_ptr();
        pool.give(first);
        let again = pool.take(60);
        assert_eq!(again.len(), 60);
        assert_eq!(again.as_ptr(), address, "the idle buffer is reused");
        let longer = {
            pool.give(again);
            pool.take(200)
        };
        assert_eq!(longer.len(), 200, "a short idle buffer grows");
        for _ in 0..3 {
            pool.give(vec![0; 10]);
        }
        assert_eq!(pool.idle_rx.len(), 2, "at most `capacity` are kept");
    }
}
