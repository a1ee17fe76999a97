//! The piece manager's workers: they verify finished pieces and write them.
//!
//! Taking a piece in costs two passes over its bytes: the SHA-1 (about 2 GB/s
//! on one core with the CPU's SHA extensions) and the write, which copies the
//! bytes into the page cache. On the manager thread those passes would
//! serialise the whole download behind one core, and while the manager hashed,
//! no peer would get new work. Here a few threads (one per core) do both, one
//! piece (or one batch of small pieces) each, while the manager goes on
//! assigning pieces and answering peers.
//!
//! The manager stays the only owner of the piece state: it hands a piece over
//! with [`Verifier::submit`], which never blocks, and learns the outcome from
//! [`Verifier::results`]; what follows (marking it had, telling peers, or
//! blaming its senders) is its decision. The manager also keeps the pieces
//! waiting here bounded: it assigns no new piece to any peer while
//! [`Verifier::backlog_limit`] pieces are with the workers, so a disk slower
//! than the network slows the peers down instead of filling memory. (These
//! pieces count in the manager's byte budget too, see
//! [`crate::piece_manager::budget`].) A piece is written in chunks of at most
//! [`WRITE_CHUNK_LEN`], so each worker's direct-write buffer stays that size
//! whatever the piece length; small pieces that are queued together and
//! adjacent are written together, up to [`GATHER_LEN`] (see
//! [`GATHER_PIECE_LEN`]).

use std::io;
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use crossbeam_channel::{Receiver, Sender, unbounded};
use sha1::{Digest, Sha1};

use crate::buffers::PieceBuffers;
use crate::peer::PeerKey;
use crate::storage::{DIRECT_ALIGN, Storage, StorageError};

/// Bytes of pieces that may be with the workers, per worker, before the
/// manager stops assigning new ones (at least 4 pieces per worker).
pub const BACKLOG_BYTES_PER_THREAD: usize = 4 * 1024 * 1024;

/// How many pieces of `piece_len` bytes may be with `threads` workers.
pub fn backlog_limit(threads: usize, piece_len: usize) -> usize {
    threads.max(1) * (BACKLOG_BYTES_PER_THREAD / piece_len.max(1)).max(4)
}

/// Most bytes of idle piece buffers kept for reuse (see [`pool_capacity`]).
pub const POOL_BYTES: usize = 32 * 1024 * 1024;

/// Bytes of idle piece buffers of `piece_len` bytes the pool keeps: three
/// times the workers' backlog, within [`POOL_BYTES`] (so none at all for
/// pieces larger than that). Pieces in flight swing by more than the backlog
/// alone as the workers fall behind and catch up; a pool of just the backlog
/// freed about half of all piece buffers and allocated them again (1 GiB in
/// 1 MiB pieces from four seeders: 540 fresh buffers, 90,000 page faults, a
/// quarter more system time). Keeping them costs no more at the peak,
/// which is when every buffer is in use.
pub fn pool_capacity(threads: usize, piece_len: usize) -> usize {
    let backlog_len = backlog_limit(threads, piece_len).saturating_mul(piece_len.max(1));
    backlog_len.saturating_mul(3).min(POOL_BYTES)
}

/// Most bytes written with one call to the storage: its direct writes go
/// through a per-thread aligned buffer of this size, not of a whole piece.
pub const WRITE_CHUNK_LEN: usize = 4 * 1024 * 1024;

/// Pieces up to this length are gathered into one write, when several
/// adjacent ones are queued at once, of up to [`GATHER_LEN`] bytes: a
/// write per piece cost a system call and, with direct writes, a disk
/// request each, which for small pieces bound the download (1 GiB in
/// 16 KiB pieces: 65,536 writes, each waiting for the disk).
pub const GATHER_PIECE_LEN: usize = 256 * 1024;
/// Most bytes of pieces gathered into one write (each worker keeps a
/// buffer of this size once it has gathered).
pub const GATHER_LEN: usize = 1024 * 1024;

/// A finished piece to verify and, if it is right, write.
#[derive(Debug)]
pub struct Job {
    /// The connection that delivered it.
    pub key: PeerKey,
    /// Piece index.
    pub index: u32,
    /// Its bytes.
    pub data: Vec<u8>,
}

/// What became of a [`Job`].
#[derive(Debug)]
pub struct Checked {
    /// The connection that delivered the piece.
    pub key: PeerKey,
    /// Piece index.
    pub index: u32,
    /// Its length in bytes.
    pub len: u64,
    /// `Ok(true)`: the hash matched and the piece is written. `Ok(false)`:
    /// the hash did not match; nothing was written.
    pub result: Result<bool, StorageError>,
}

/// A pool of threads verifying and writing pieces.
pub struct Verifier {
    jobs: Option<Sender<Job>>,
    results: Receiver<Checked>,
    threads: Vec<JoinHandle<()>>,
    backlog_limit: usize,
}

impl Verifier {
    /// Starts `threads` workers (at least one) checking pieces against
    /// `hashes` and writing them to `storage`.
    ///
    /// # Errors
    /// The OS error when a thread cannot be created.
    pub fn start(
        storage: Arc<Storage>,
        hashes: Arc<[[u8; 20]]>,
        buffers: PieceBuffers,
        threads: usize,
    ) -> io::Result<Verifier> {
        let threads = threads.max(1);
        let backlog_limit = backlog_limit(threads, storage.layout().piece_len() as usize);
        // The manager bounds the jobs (see the module docs); the results are
        // as many.
        let (jobs_tx, jobs_rx) = unbounded::<Job>();
        let (results_tx, results) = unbounded();
        let handles = (0..threads)
            .map(|n| {
                let (jobs_rx, results_tx) = (jobs_rx.clone(), results_tx.clone());
                let (storage, hashes) = (Arc::clone(&storage), Arc::clone(&hashes));
                let buffers = buffers.clone();
                thread::Builder::new()
                    .name(format!("verify-{n}"))
                    .spawn(move || work(&jobs_rx, &results_tx, &storage, &hashes, &buffers))
            })
            .collect::<io::Result<Vec<_>>>()?;
        Ok(Verifier {
            jobs: Some(jobs_tx),
            results,
            threads: handles,
            backlog_limit,
        })
    }

    /// How many pieces may be with the workers before the manager stops
    /// assigning new ones.
    pub fn backlog_limit(&self) -> usize {
        self.backlog_limit
    }

    /// Queues a piece.
    pub fn submit(&self, job: Job) {
        if let Some(jobs) = &self.jobs {
            // Workers end only when `jobs` is dropped, so this cannot fail.
            let _ = jobs.send(job);
        }
    }

    /// The outcomes, in the order the workers finish them.
    pub fn results(&self) -> &Receiver<Checked> {
        &self.results
    }

    /// Lets the workers finish what is queued, and waits for them.
    pub fn stop(&mut self) {
        self.jobs = None;
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

impl Drop for Verifier {
    fn drop(&mut self) {
        self.stop();
    }
}

fn work(
    jobs: &Receiver<Job>,
    results: &Sender<Checked>,
    storage: &Storage,
    hashes: &[[u8; 20]],
    buffers: &PieceBuffers,
) {
    let piece_len = (storage.layout().piece_len() as usize).max(1);
    let most = if piece_len <= GATHER_PIECE_LEN {
        GATHER_LEN / piece_len
    } else {
        1
    };
    let mut gathered = Gathered::default();
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < most {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let mut checked: Vec<(Job, Result<bool, StorageError>)> = batch
            .into_iter()
            .map(|job| {
                let matches = hashes
                    .get(job.index as usize)
                    .is_some_and(|expected| Sha1::digest(&job.data)[..] == expected[..]);
                (job, Ok(matches))
            })
            .collect();
        checked.sort_unstable_by_key(|(job, _)| job.index);
        write_runs(storage, &mut checked, &mut gathered);
        for (Job { key, index, data }, result) in checked {
            let checked = Checked {
                key,
                index,
                len: data.len() as u64,
                result,
            };
            buffers.give(data);
            if results.send(checked).is_err() {
                return;
            }
        }
    }
}

/// Writes the good pieces of `checked` (sorted by index), each run of
/// adjacent ones with one write of at most [`GATHER_LEN`] bytes
/// gathered in `gathered`; a run whose write fails is written again piece
/// by piece, so each piece gets its own outcome.
fn write_runs(
    storage: &Storage,
    checked: &mut [(Job, Result<bool, StorageError>)],
    gathered: &mut Gathered,
) {
    let mut start = 0;
    while start < checked.len() {
        if !matches!(checked[start].1, Ok(true)) {
            start += 1;
            continue;
        }
        let mut end = start + 1;
        let mut len = checked[start].0.data.len();
        while let Some((next, Ok(true))) = checked.get(end) {
            if next.index != checked[end - 1].0.index + 1 || len + next.data.len() > GATHER_LEN {
                break;
            }
            len += next.data.len();
            end += 1;
        }
        let run = &mut checked[start..end];
        let whole = if run.len() > 1 {
            gathered.clear();
            for (job, _) in run.iter() {
                gathered.extend_from_slice(&job.data);
            }
            let offset = storage.layout().piece_offset(run[0].0.index);
            storage.write_at(offset, gathered.as_slice()).is_ok()
        } else {
            false
        };
        if !whole {
            for (job, result) in run.iter_mut() {
                *result = write_piece(storage, job.index, &job.data).map(|()| true);
            }
        }
        start = end;
    }
}

/// Bytes of adjacent pieces gathered for one write, starting at an address
/// aligned for direct writes, so the storage writes them from here rather
/// than copying them once more into its own aligned buffer.
#[derive(Default)]
struct Gathered {
    buf: Vec<u8>,
    /// Where the aligned bytes start in `buf`.
    start: usize,
    len: usize,
}

impl Gathered {
    fn clear(&mut self) {
        self.len = 0;
    }

    /// Appends `bytes`; the buffer grows (once) to [`GATHER_LEN`] and past
    /// it only if a caller gathers more.
    fn extend_from_slice(&mut self, bytes: &[u8]) {
        let needed = self.len + bytes.len();
        if self.start + needed > self.buf.len() {
            let mut grown = vec![0u8; needed.max(GATHER_LEN) + DIRECT_ALIGN];
            let start = grown.as_ptr().align_offset(DIRECT_ALIGN);
            grown[start..start + self.len].copy_from_slice(self.as_slice());
            (self.buf, self.start) = (grown, start);
        }
        let at = self.start + self.len;
        self.buf[at..at + bytes.len()].copy_from_slice(bytes);
        self.len = needed;
    }

    fn as_slice(&self) -> &[u8] {
        &self.buf[self.start..self.start + self.len]
    }
}

/// Writes piece `index` in chunks of at most [`WRITE_CHUNK_LEN`] bytes (a
/// multiple of the direct-write alignment, so each chunk starts aligned when
/// the piece does).
fn write_piece(storage: &Storage, index: u32, data: &[u8]) -> Result<(), StorageError> {
    let offset = storage.layout().piece_offset(index);
    for (n, chunk) in data.chunks(WRITE_CHUNK_LEN).enumerate() {
        storage.write_at(offset + (n * WRITE_CHUNK_LEN) as u64, chunk)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metainfo::Metainfo;
    use crate::storage::Access;
    use std::time::Duration;

    /// A single-file torrent of `content` in 16 KiB pieces, and its storage.
    fn setup(content: &[u8], dir: &std::path::Path) -> (Arc<Storage>, Arc<[[u8; 20]]>) {
        let piece_len = 16 * 1024;
        let hashes: Vec<[u8; 20]> = content
            .chunks(piece_len)
            .map(|c| Sha1::digest(c).into())
            .collect();
        let pieces: Vec<u8> = hashes.iter().flatten().copied().collect();
        let mut info = Vec::new();
        info.extend_from_slice(format!("d6:lengthi{}e4:name1:f", content.len()).as_bytes());
        info.extend_from_slice(
            format!("12:piece lengthi{piece_len}e6:pieces{}:", pieces.len()).as_bytes(),
        );
        info.extend_from_slice(&pieces);
        info.push(b'e');
        let mut torrent = b"d4:info".to_vec();
        torrent.extend_from_slice(&info);
        torrent.push(b'e');
        let meta = Metainfo::from_bytes(&torrent).expect("valid torrent");
        let storage = Storage::open(&meta, &dir.join("f"), Access::ReadWrite).expect("storage");
        (Arc::new(storage), hashes.into())
    }

    fn is_aligned(gathered: &Gathered) -> bool {
        gathered
            .as_slice()
            .as_ptr()
            .addr()
            .is_multiple_of(DIRECT_ALIGN)
    }

    #[test]
    fn gathered_bytes_start_aligned_for_direct_writes_and_keep_their_order() {
        let mut gathered = Gathered::default();
        let pieces: Vec<Vec<u8>> = (0..3u8).map(|n| vec![n; 300_000]).collect();
        for piece in &pieces {
            gathered.extend_from_slice(piece);
            assert!(is_aligned(&gathered));
        }
        assert_eq!(gathered.as_slice(), pieces.concat());
        // Past GATHER_LEN it grows and keeps what it held.
        gathered.extend_from_slice(&pieces[0]);
        gathered.extend_from_slice(&pieces[1]);
        assert_eq!(gathered.as_slice().len(), 1_500_000);
        assert!(is_aligned(&gathered));
        assert_eq!(gathered.as_slice()[1_200_000..], pieces[1][..]);
        gathered.clear();
        gathered.extend_from_slice(&pieces[2][..10]);
        assert_eq!(gathered.as_slice(), &pieces[2][..10]);
    }

    #[test]
    fn the_pool_keeps_three_backlogs_within_its_bytes() {
        const MIB: usize = 1024 * 1024;
        assert_eq!(backlog_limit(2, MIB), 8);
        assert_eq!(pool_capacity(2, MIB), 24 * MIB);
        assert_eq!(pool_capacity(1, 16 * 1024), 12 * MIB);
        assert_eq!(pool_capacity(2, 2 * MIB), 32 * MIB, "at most 32 MiB");
        assert_eq!(pool_capacity(4, 64 * MIB), 32 * MIB, "no 64 MiB piece");
        // The old pool counted buffers: 25 million slots for 1-byte pieces.
        assert_eq!(pool_capacity(2, 1), 3 * 8 * MIB);
    }

    #[test]
    fn writes_pieces_that_match_and_refuses_those_that_do_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let content: Vec<u8> = (0..40_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let (storage, hashes) = setup(&content, dir.path());
        let buffers = PieceBuffers::new(4);
        let mut verifier =
            Verifier::start(Arc::clone(&storage), hashes, buffers.clone(), 2).expect("start");
        let piece = |i: usize| content[i * 16384..((i + 1) * 16384).min(content.len())].to_vec();
        let mut bad = piece(1);
        bad[100] ^= 1;
        verifier.submit(Job {
            key: 7,
            index: 0,
            data: piece(0),
        });
        verifier.submit(Job {
            key: 8,
            index: 1,
            data: bad,
        });
        verifier.submit(Job {
            key: 9,
            index: 2,
            data: piece(2),
        });
        let mut outcomes: Vec<(u32, PeerKey, u64, bool)> = (0..3)
            .map(|_| {
                let c = verifier
                    .results()
                    .recv_timeout(Duration::from_secs(10))
                    .expect("a result");
                (c.index, c.key, c.len, c.result.expect("no storage error"))
            })
            .collect();
        outcomes.sort_unstable();
        assert_eq!(
            outcomes,
            vec![
                (0, 7, 16384, true),
                (1, 8, 16384, false),
                (2, 9, 7232, true)
            ]
        );
        verifier.stop();
        let on_disk = std::fs::read(dir.path().join("f")).expect("the file");
        assert_eq!(on_disk[..16384], content[..16384]);
        assert!(
            on_disk[16384..32768].iter().all(|&b| b == 0),
            "the bad piece was written"
        );
        assert_eq!(on_disk[32768..], content[32768..]);
    }

    #[test]
    fn adjacent_pieces_queued_together_are_all_written_and_a_bad_one_is_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let count = 80usize;
        let content: Vec<u8> = (0..count * 16384).map(|i| (i * 13 % 253) as u8).collect();
        let (storage, hashes) = setup(&content, dir.path());
        let buffers = PieceBuffers::new(0);
        let mut verifier =
            Verifier::start(Arc::clone(&storage), hashes, buffers.clone(), 2).expect("start");
        let piece = |i: usize| content[i * 16384..(i + 1) * 16384].to_vec();
        // Out of order, so a worker's batch has to be sorted to find runs.
        let order: Vec<usize> = (0..count).rev().collect();
        for &i in &order {
            let mut data = piece(i);
            if i == 37 {
                data[5] ^= 1;
            }
            verifier.submit(Job {
                key: i as PeerKey,
                index: i as u32,
                data,
            });
        }
        let mut good = Vec::new();
        for _ in 0..count {
            let c = verifier
                .results()
                .recv_timeout(Duration::from_secs(10))
                .expect("a result");
            assert_eq!(c.key, c.index as PeerKey);
            if c.result.expect("no storage error") {
                good.push(c.index);
            }
        }
        good.sort_unstable();
        let expected: Vec<u32> = (0..count as u32).filter(|&i| i != 37).collect();
        assert_eq!(good, expected);
        verifier.stop();
        let on_disk = std::fs::read(dir.path().join("f")).expect("the file");
        for i in 0..count {
            let range = i * 16384..(i + 1) * 16384;
            if i == 37 {
                assert!(on_disk[range].iter().all(|&b| b == 0), "bad piece written");
            } else {
                assert_eq!(on_disk[range.clone()], content[range], "piece {i}");
            }
        }
    }
}
