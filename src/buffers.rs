//! Piece buffers, recycled: the peer threads fill them with blocks, the
//! verifier workers give them back once the piece is written.
//!
//! A fresh buffer for every piece costs a zero-fill of the whole piece and,
//! for large pieces, fresh pages from the kernel; a recycled one costs
//! neither. A recycled buffer holds the bytes of an earlier piece, which is
//! harmless: a piece is only hashed once every one of its blocks has been
//! written over them.
//!
//! The pool is bounded in bytes, not in buffers: idle buffers are kept while
//! they total at most [`PieceBuffers::new`]'s `max_idle_len`, each counted
//! with [`BUFFER_OVERHEAD`], and nothing is allocated up front, so a torrent
//! of one-byte pieces costs no more than one of megabyte pieces. Not owned
//! here: how many buffers are in use (the piece manager's budget bounds that).

use std::sync::{Arc, Mutex, MutexGuard};

/// Bytes an idle buffer costs beyond its capacity: its `Vec` header and
/// the allocator's chunk header and rounding.
pub const BUFFER_OVERHEAD: usize = 64;

/// The pool of idle piece buffers, shared by every thread of a torrent.
#[derive(Debug, Clone)]
pub struct PieceBuffers {
    idle: Arc<Mutex<Idle>>,
    max_idle_len: usize,
}

#[derive(Debug, Default)]
struct Idle {
    buffers: Vec<Vec<u8>>,
    /// What `buffers` cost, overheads included.
    len: usize,
}

impl PieceBuffers {
    /// A pool keeping idle buffers of at most `max_idle_len` bytes in all.
    pub fn new(max_idle_len: usize) -> PieceBuffers {
        PieceBuffers {
            idle: Arc::new(Mutex::new(Idle::default())),
            max_idle_len,
        }
    }

    /// A buffer of `len` bytes, recycled when one is idle; its contents
    /// are unspecified.
    pub fn take(&self, len: usize) -> Vec<u8> {
        let recycled = {
            let mut idle = self.lock();
            let buf = idle.buffers.pop();
            if let Some(buf) = &buf {
                idle.len -= cost(buf);
            }
            buf
        };
        match recycled {
            Some(mut buf) => {
                buf.resize(len, 0);
                buf
            }
            None => vec![0; len],
        }
    }

    /// Gives a buffer back for reuse (it is freed if the pool is full).
    pub fn give(&self, buf: Vec<u8>) {
        let mut idle = self.lock();
        if idle.len + cost(&buf) <= self.max_idle_len {
            idle.len += cost(&buf);
            idle.buffers.push(buf);
        }
        // Otherwise `buf` is freed here, after the lock is released.
    }

    /// Bytes of idle buffers kept, overheads included.
    pub fn idle_len(&self) -> usize {
        self.lock().len
    }

    fn lock(&self) -> MutexGuard<'_, Idle> {
        // A thread that panicked holding the lock left the list consistent:
        // every update is a push or a pop with its count.
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What an idle buffer costs the pool.
fn cost(buf: &Vec<u8>) -> usize {
    buf.capacity() + BUFFER_OVERHEAD
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_at_the_length_asked_and_the_pool_stays_bounded() {
        let pool = PieceBuffers::new(100 + BUFFER_OVERHEAD);
        let mut first = pool.take(100);
        assert_eq!(first.len(), 100);
        first[0] = 7;
        let address = first.as_ptr();
        pool.give(first);
        let again = pool.take(6);
        assert_eq!(again.len(), 6);
        assert_eq!(again.as_ptr(), address, "the idle buffer is reused");
        pool.give(again);
        let longer = pool.take(200);
        assert_eq!(longer.len(), 200, "a short idle buffer grows");
        assert_eq!(pool.idle_len(), 0);
        for _ in 0..3 {
            pool.give(vec![0; 50 - BUFFER_OVERHEAD / 2]);
        }
        assert_eq!(pool.lock().buffers.len(), 2, "two fit");
    }

    #[test]
    fn a_pool_for_tiny_pieces_allocates_nothing_up_front_and_keeps_its_bytes() {
        // The old pool was a channel of `cores * 4 MiB / piece_len` slots,
        // allocated at once: 800 MB for a torrent of one-byte pieces.
        let pool = PieceBuffers::new(1024);
        assert_eq!(pool.lock().buffers.capacity(), 0);
        for _ in 0..10_000 {
            pool.give(vec![1]);
        }
        assert_eq!(pool.lock().buffers.len(), 1024 / (1 + BUFFER_OVERHEAD));
        assert!(pool.idle_len() <= 1024);
    }

    #[test]
    fn a_buffer_larger_than_the_pool_is_freed() {
        let pool = PieceBuffers::new(1000);
        pool.give(vec![0; 1000]);
        assert_eq!(pool.idle_len(), 0);
    }
}
