//! Checking the data already on disk against the piece hashes (resume, and
//! seeding's check before it serves), on several threads.

use std::io;
use std::sync::atomic::{AtomicU32, Ordering};

use sha1::{Digest, Sha1};

use super::{Storage, StorageError};

impl Storage {
    /// Checks every wanted piece on disk against `hashes` on `threads`
    /// threads and returns which pieces are present and correct (a piece
    /// not wanted is never had). `on_piece` is called after each piece
    /// with the number checked so far (for a progress display).
    ///
    /// A piece that cannot be read (file too short) counts as missing; other read
    /// errors are returned.
    ///
    /// # Errors
    /// The first [`StorageError`] other than a short read.
    pub fn check(
        &self,
        hashes: &[[u8; 20]],
        threads: usize,
        on_piece: &(dyn Fn(u32) + Sync),
    ) -> Result<Vec<bool>, StorageError> {
        let count = self.layout.piece_count();
        let todo: Vec<u32> = (0..count).filter(|&i| self.is_wanted(i)).collect();
        let next = AtomicU32::new(0);
        let done = AtomicU32::new(0);
        let results = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads.max(1))
                .map(|_| {
                    scope.spawn(|| {
                        let mut found = Vec::new();
                        let mut buf = Vec::new();
                        loop {
                            // Pieces are handed out one at a time, so both threads
                            // read the files roughly in order.
                            let k = next.fetch_add(1, Ordering::Relaxed) as usize;
                            let Some(&index) = todo.get(k) else {
                                return Ok(found);
                            };
                            let ok = match self.read_piece(index, &mut buf) {
                                Ok(()) => Sha1::digest(&buf)[..] == hashes[index as usize],
                                Err(e) if e.source.kind() == io::ErrorKind::UnexpectedEof => false,
                                Err(e) => return Err(e),
                            };
                            if ok {
                                found.push(index);
                            }
                            on_piece(done.fetch_add(1, Ordering::Relaxed) + 1);
                        }
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|w| w.join().expect("check thread panicked"))
                .collect::<Result<Vec<_>, _>>()
        })?;
        let mut have = vec![false; count as usize];
        for index in results.into_iter().flatten() {
            have[index as usize] = true;
        }
        Ok(have)
    }
}
