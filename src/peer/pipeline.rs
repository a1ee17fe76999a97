//! What we fetch from one peer: the pieces the manager assigned it, the
//! block requests in flight, and the blocks received. Pure bookkeeping: no
//! socket, time passed in, so the peer thread's request logic is unit-tested.
//!
//! - Requests are 16 KiB blocks (BEP 3; larger ones are refused by common
//!   clients), kept in flight up to a depth sized to the peer's rate
//!   ([`pipeline_for_rate`]): enough to cover the round trip, not so many
//!   that a slow peer sits on blocks others could send.
//! - A peer with requests outstanding and no block for [`REQUEST_TIMEOUT`] is
//!   snubbed: the peer thread cancels its requests and gives its pieces back.
//! - Pieces come back with the blocks already received ([`Returned`]), so the
//!   next peer finishes them rather than starting over.
//! - A block for a piece we cancelled (endgame) or were choked out of may
//!   still arrive for a while and is ignored; any other block we did not ask
//!   for is a protocol violation.
//! - A piece assigned as a probe ([`PieceJob::probe`], to a peer that has not
//!   shown yet that it sends blocks) is fetched only up to [`PROBE_BLOCKS`]
//!   blocks, into a buffer of just those blocks; when they have all arrived
//!   ([`BlockOutcome::Probed`]) it waits for the manager to grant the whole
//!   piece ([`Pipeline::grow`]). So a peer that never sends a block holds
//!   [`PROBE_BLOCKS`] blocks of memory, not a piece of up to 64 MiB.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::{Partial, PieceJob};
use crate::layout::{BLOCK_LEN, Layout};
use crate::piece_manager::Returned;

/// Fewest block requests kept in flight to an unchoked peer.
pub const MIN_PIPELINE: usize = 4;
/// Most block requests kept in flight to one peer (4 MiB of blocks).
pub const MAX_PIPELINE: usize = 256;
/// Requests in flight to a new peer, before its rate is known.
pub const START_PIPELINE: usize = 64;
/// The pipeline holds what the peer delivers in this many seconds: enough
/// to cover the round trip and the remote's disk with room to spare.
pub const PIPELINE_SECONDS: u64 = 2;
/// Blocks of a probe piece fetched before the manager grants the rest.
pub const PROBE_BLOCKS: u32 = 4;
/// Requests outstanding with no block arriving for this long: the peer is
/// snubbed, and its pieces go to other peers.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// A block of a piece we cancelled or were choked out of may still arrive
/// for this long without being a protocol violation.
const LATE_BLOCK_GRACE: Duration = Duration::from_secs(60);
/// Most given-up pieces remembered for late blocks, so the list stays small
/// whatever the peer does.
const DROPPED_MAX: usize = 1024;

/// Requests to keep in flight to a peer delivering `rate` bytes a second:
/// [`PIPELINE_SECONDS`] of its data, within [`MIN_PIPELINE`]..=[`MAX_PIPELINE`];
/// [`START_PIPELINE`] while its rate is not `measured` yet.
pub fn pipeline_for_rate(rate: u64, measured: bool) -> usize {
    if !measured {
        return START_PIPELINE;
    }
    let blocks = rate * PIPELINE_SECONDS / u64::from(BLOCK_LEN);
    (blocks as usize).clamp(MIN_PIPELINE, MAX_PIPELINE)
}

/// One block request, as sent in `request` and `cancel` messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockRequest {
    /// Piece index.
    pub index: u32,
    /// Offset in the piece.
    pub begin: u32,
    /// Bytes.
    pub length: u32,
}

/// What an arriving block did.
#[derive(Debug, PartialEq, Eq)]
pub enum BlockOutcome {
    /// Stored; the piece still misses blocks.
    Stored,
    /// The last block of the piece: here it is, whole and not yet verified.
    Completed {
        /// Piece index.
        index: u32,
        /// The piece's bytes.
        data: Vec<u8>,
    },
    /// Stored, and the last of a probe piece's first [`PROBE_BLOCKS`]
    /// blocks: the peer sends blocks; the rest waits for [`Pipeline::grow`].
    Probed {
        /// Piece index.
        index: u32,
    },
    /// A block we no longer wanted (cancelled, choked out of, or a
    /// duplicate): ignored.
    Ignored,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlockState {
    Wanted,
    Requested,
    Received,
}

/// A piece being fetched from this peer.
#[derive(Debug)]
struct Job {
    index: u32,
    data: Vec<u8>,
    blocks: Vec<BlockState>,
    /// Blocks not yet received.
    remaining: usize,
    /// Only the first [`PROBE_BLOCKS`] blocks may be requested, and `data`
    /// holds only them.
    probe: bool,
}

impl Job {
    /// A job for `piece`, starting from the blocks other peers delivered.
    /// (A piece of at most [`PROBE_BLOCKS`] blocks, or one with blocks
    /// already, is fetched whole even when assigned as a probe.)
    fn new(piece: PieceJob, layout: &Layout) -> Job {
        let size = layout.piece_size(piece.index) as usize;
        let block_count = layout.block_count(piece.index) as usize;
        let probe = piece.probe && piece.partial.is_none() && block_count > PROBE_BLOCKS as usize;
        if probe {
            return Job {
                index: piece.index,
                data: vec![0; (PROBE_BLOCKS * BLOCK_LEN) as usize],
                blocks: vec![BlockState::Wanted; block_count],
                remaining: block_count,
                probe,
            };
        }
        let (data, blocks) = match piece.partial {
            Some(p) if p.data.len() == size && p.received.len() == block_count => {
                let blocks = p
                    .received
                    .iter()
                    .map(|&r| {
                        if r {
                            BlockState::Received
                        } else {
                            BlockState::Wanted
                        }
                    })
                    .collect();
                (p.data, blocks)
            }
            _ => (vec![0; size], vec![BlockState::Wanted; block_count]),
        };
        let remaining = blocks
            .iter()
            .filter(|&&b| b != BlockState::Received)
            .count();
        Job {
            index: piece.index,
            data,
            blocks,
            remaining,
            probe,
        }
    }

    /// The blocks that may be requested now.
    fn requestable(&mut self) -> &mut [BlockState] {
        let end = if self.probe {
            PROBE_BLOCKS as usize
        } else {
            self.blocks.len()
        };
        &mut self.blocks[..end]
    }

    /// The piece handed back: with its received blocks, if any arrived
    /// (those of a probe are too few to keep).
    fn into_returned(self) -> Returned {
        if self.probe {
            return Returned {
                index: self.index,
                partial: None,
            };
        }
        let received: Vec<bool> = self
            .blocks
            .iter()
            .map(|&b| b == BlockState::Received)
            .collect();
        let partial = received.contains(&true).then_some(Partial {
            data: self.data,
            received,
        });
        Returned {
            index: self.index,
            partial,
        }
    }
}

/// Our downloads from one peer.
#[derive(Debug)]
pub struct Pipeline {
    layout: Layout,
    jobs: VecDeque<Job>,
    in_flight: usize,
    depth: usize,
    /// The remote's `reqq` (BEP 10): never more requests in flight than it queues.
    remote_queue: usize,
    /// When the last block arrived, or requests were sent after none were out.
    last_progress: Instant,
    /// Pieces whose requests we cancelled or lost to a choke, and when.
    dropped: VecDeque<(u32, Instant)>,
}

impl Pipeline {
    /// An empty pipeline for a torrent of `layout`.
    pub fn new(layout: Layout, now: Instant) -> Pipeline {
        Pipeline {
            layout,
            jobs: VecDeque::new(),
            in_flight: 0,
            depth: START_PIPELINE,
            remote_queue: usize::MAX,
            last_progress: now,
            dropped: VecDeque::new(),
        }
    }

    /// Requests in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Requests kept in flight at most: the depth for the peer's rate,
    /// within what the remote says it queues.
    pub fn depth(&self) -> usize {
        self.depth.min(self.remote_queue)
    }

    /// Caps the requests in flight at the remote's `reqq` (at least one).
    pub fn set_remote_queue(&mut self, reqq: usize) {
        self.remote_queue = reqq.max(1);
    }

    /// Whether piece `index` is being fetched here.
    pub fn is_fetching(&self, index: u32) -> bool {
        self.jobs.iter().any(|j| j.index == index)
    }

    /// Whether piece `index` is being fetched here as a probe.
    pub fn is_probe(&self, index: u32) -> bool {
        self.jobs.iter().any(|j| j.index == index && j.probe)
    }

    /// Fetches the whole of probe piece `index` from now on, into `buffer`
    /// (of the piece's size), where the probe's blocks are copied. Returns
    /// `buffer` when `index` is not a probe here.
    pub fn grow(&mut self, index: u32, mut buffer: Vec<u8>) -> Option<Vec<u8>> {
        let Some(job) = self.jobs.iter_mut().find(|j| j.index == index && j.probe) else {
            return Some(buffer);
        };
        let probed = job.data.len().min(buffer.len());
        buffer[..probed].copy_from_slice(&job.data[..probed]);
        job.data = buffer;
        job.probe = false;
        None
    }

    /// Whether any piece is assigned.
    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    /// Adds a piece to fetch (ignored if it is already being fetched).
    pub fn add(&mut self, piece: PieceJob) {
        if !self.is_fetching(piece.index) {
            self.jobs.push_back(Job::new(piece, &self.layout));
        }
    }

    /// Resizes the depth for a peer delivering `rate` bytes a second.
    pub fn set_rate(&mut self, rate: u64) {
        self.depth = pipeline_for_rate(rate, true);
    }

    /// Collapses the depth to the minimum (a snubbed peer).
    pub fn shrink(&mut self) {
        self.depth = MIN_PIPELINE;
    }

    /// The requests to send now to keep [`Pipeline::depth`] in flight,
    /// finishing the earliest assigned piece first.
    pub fn next_requests(&mut self, now: Instant) -> Vec<BlockRequest> {
        let mut new = Vec::new();
        let depth = self.depth();
        'jobs: for job in &mut self.jobs {
            let index = job.index;
            for (block, state) in job.requestable().iter_mut().enumerate() {
                if self.in_flight + new.len() >= depth {
                    break 'jobs;
                }
                if *state == BlockState::Wanted {
                    *state = BlockState::Requested;
                    let block = block as u32;
                    new.push(BlockRequest {
                        index,
                        begin: block * BLOCK_LEN,
                        length: self.layout.block_size(index, block),
                    });
                }
            }
        }
        if self.in_flight == 0 && !new.is_empty() {
            // The request timeout counts from now, not from the last block.
            self.last_progress = now;
        }
        self.in_flight += new.len();
        new
    }

    /// Takes an arriving block.
    ///
    /// # Errors
    /// The protocol violation, when the block is one we never asked for.
    pub fn on_block(
        &mut self,
        index: u32,
        begin: u32,
        block: &[u8],
        now: Instant,
    ) -> Result<BlockOutcome, String> {
        let Some(pos) = self.jobs.iter().position(|j| j.index == index) else {
            if self.recently_dropped(index, now) {
                return Ok(BlockOutcome::Ignored);
            }
            return Err(format!(
                "sent a block of piece {index}, which we did not request"
            ));
        };
        let job = &mut self.jobs[pos];
        let block_no = begin / BLOCK_LEN;
        let expected_len = (block_no < job.blocks.len() as u32 && begin.is_multiple_of(BLOCK_LEN))
            .then(|| self.layout.block_size(index, block_no) as usize);
        if expected_len != Some(block.len()) {
            return Err(format!(
                "sent a block we did not request: piece {index} begin {begin} length {}",
                block.len()
            ));
        }
        if job.blocks[block_no as usize] != BlockState::Requested {
            // A duplicate, or a block of an earlier request of this piece.
            return Ok(BlockOutcome::Ignored);
        }
        job.data[begin as usize..begin as usize + block.len()].copy_from_slice(block);
        job.blocks[block_no as usize] = BlockState::Received;
        job.remaining -= 1;
        self.in_flight -= 1;
        self.last_progress = now;
        if job.probe {
            let probed = job.requestable().iter().all(|&b| b == BlockState::Received);
            return Ok(if probed {
                BlockOutcome::Probed { index }
            } else {
                BlockOutcome::Stored
            });
        }
        if job.remaining > 0 {
            return Ok(BlockOutcome::Stored);
        }
        let job = self.jobs.remove(pos).expect("found above");
        Ok(BlockOutcome::Completed {
            index,
            data: job.data,
        })
    }

    /// Stops fetching piece `index` (another peer delivered it): the cancels
    /// to send for its outstanding requests.
    pub fn cancel_piece(&mut self, index: u32, now: Instant) -> Vec<BlockRequest> {
        let Some(pos) = self.jobs.iter().position(|j| j.index == index) else {
            return Vec::new();
        };
        let job = self.jobs.remove(pos).expect("found above");
        self.remember_dropped(index, now);
        let cancels = self.cancels_for(&job);
        self.in_flight -= cancels.len();
        cancels
    }

    /// Whether requests have been outstanding for [`REQUEST_TIMEOUT`] with
    /// no block arriving.
    pub fn timed_out(&self, now: Instant) -> bool {
        self.in_flight > 0 && now.duration_since(self.last_progress) >= REQUEST_TIMEOUT
    }

    /// We are not reading the remote's blocks (our download limit holds
    /// us back): [`REQUEST_TIMEOUT`] counts from `now` at the earliest, so
    /// the remote is not snubbed for our own slowness.
    pub fn hold_timeout(&mut self, now: Instant) {
        self.last_progress = self.last_progress.max(now);
    }

    /// Gives up every piece (the peer is snubbed): the cancels to send, and
    /// the pieces with their received blocks for the manager.
    pub fn cancel_all(&mut self, now: Instant) -> (Vec<BlockRequest>, Vec<Returned>) {
        let cancels = self.jobs.iter().flat_map(|j| self.cancels_for(j)).collect();
        self.last_progress = now;
        (cancels, self.drop_all(now))
    }

    /// Gives up every piece without cancels (the remote choked us, which
    /// discards our requests, or the connection ended).
    pub fn drop_all(&mut self, now: Instant) -> Vec<Returned> {
        self.in_flight = 0;
        let jobs: Vec<Job> = self.jobs.drain(..).collect();
        jobs.into_iter()
            .map(|job| {
                self.remember_dropped(job.index, now);
                job.into_returned()
            })
            .collect()
    }

    fn cancels_for(&self, job: &Job) -> Vec<BlockRequest> {
        job.blocks
            .iter()
            .enumerate()
            .filter(|(_, state)| **state == BlockState::Requested)
            .map(|(block, _)| BlockRequest {
                index: job.index,
                begin: block as u32 * BLOCK_LEN,
                length: self.layout.block_size(job.index, block as u32),
            })
            .collect()
    }

    /// Remembers that piece `index` was given up at `now`.
    fn remember_dropped(&mut self, index: u32, now: Instant) {
        self.forget_old_dropped(now);
        if self.dropped.len() >= DROPPED_MAX {
            self.dropped.pop_front();
        }
        self.dropped.push_back((index, now));
    }

    fn forget_old_dropped(&mut self, now: Instant) {
        while self
            .dropped
            .front()
            .is_some_and(|&(_, at)| now.duration_since(at) > LATE_BLOCK_GRACE)
        {
            self.dropped.pop_front();
        }
    }

    /// Whether blocks of piece `index` may still arrive because we gave it
    /// up a short while ago.
    fn recently_dropped(&mut self, index: u32, now: Instant) -> bool {
        self.forget_old_dropped(now);
        self.dropped.iter().any(|&(i, _)| i == index)
    }
}

#[cfg(test)]
mod tests;
