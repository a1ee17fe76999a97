//! The remote's block requests waiting to be served, in the order they came,
//! with `cancel` in constant time.
//!
//! A remote may queue thousands of requests (we advertise `reqq` 16,384) and
//! then cancel them one by one, or send cancels for blocks it never asked
//! for. Removing a cancelled request from the middle of a queue by scanning
//! it would make each 17-byte `cancel` cost a pass over 16,384 entries, so a
//! flood of them would burn our CPU. Here a cancel only drops the request's
//! count in a map; the queue entry stays and is skipped when it is reached,
//! and the queue is compacted once cancelled entries outnumber live ones, so
//! it never holds more than about twice the live requests.
//!
//! The map costs about 50 bytes a request, four times the queue itself, and
//! most remotes never cancel (libtorrent cancels only in its endgame): it is
//! built from the queue by the first cancel, in one pass, and dropped when
//! the queue empties. A flood of cancels pays that pass once per queue
//! filled, so each request costs O(1) in all.
//!
//! Pure data structure: no sockets, no storage.

use std::collections::{HashMap, VecDeque};

/// A requested block: `(index, begin, length)` as in the `request` message.
pub type Request = (u32, u32, u32);

/// Queued requests below this many entries are not worth compacting.
const COMPACT_ABOVE: usize = 64;

/// Requests in arrival order; see the module docs.
#[derive(Debug, Default)]
pub struct RequestQueue {
    /// Each entry with the generation of its request when it was queued.
    order: VecDeque<(Request, u32)>,
    /// Built by the first cancel; until then every entry is live.
    keys: Option<HashMap<Request, Key>>,
    /// Entries of `order` that were cancelled and not yet skipped.
    cancelled_len: usize,
}

/// What the queue knows of one request.
#[derive(Debug, Default, Clone, Copy)]
struct Key {
    /// Bumped by each cancel: entries of an older generation are cancelled.
    generation: u32,
    /// Entries of the current generation.
    live: u32,
    /// Entries of any generation still in `order`.
    stored: u32,
}

impl RequestQueue {
    /// An empty queue.
    pub fn new() -> RequestQueue {
        RequestQueue::default()
    }

    /// Requests waiting to be served (cancelled ones not counted).
    pub fn len(&self) -> usize {
        self.order.len() - self.cancelled_len
    }

    /// Whether no request waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Queues `request` behind the others. The same block asked twice is
    /// served twice, as BEP 3 does not forbid it.
    pub fn push(&mut self, request: Request) {
        let generation = match &mut self.keys {
            Some(keys) => {
                let key = keys.entry(request).or_default();
                key.live += 1;
                key.stored += 1;
                key.generation
            }
            None => 0,
        };
        self.order.push_back((request, generation));
    }

    /// The oldest request still wanted, removed from the queue.
    pub fn pop(&mut self) -> Option<Request> {
        let Some(keys) = &mut self.keys else {
            return self.order.pop_front().map(|(request, _)| request);
        };
        while let Some((request, generation)) = self.order.pop_front() {
            let key = keys
                .get_mut(&request)
                .expect("every queued entry has its key");
            key.stored -= 1;
            let live = generation == key.generation;
            if live {
                key.live -= 1;
            }
            if key.stored == 0 {
                keys.remove(&request);
            }
            if live {
                if self.order.is_empty() {
                    self.keys = None;
                }
                return Some(request);
            }
            self.cancelled_len -= 1;
        }
        self.keys = None;
        None
    }

    /// Forgets every queued copy of `request` (BEP 3 `cancel`); a cancel
    /// for a block not queued does nothing.
    pub fn cancel(&mut self, request: Request) {
        if self.order.is_empty() {
            return;
        }
        let order = &self.order;
        let keys = self.keys.get_or_insert_with(|| {
            let mut keys = HashMap::<Request, Key>::with_capacity(order.len());
            for (request, _) in order {
                let key = keys.entry(*request).or_default();
                key.live += 1;
                key.stored += 1;
            }
            keys
        });
        let Some(key) = keys.get_mut(&request) else {
            return;
        };
        key.generation = key.generation.wrapping_add(1);
        self.cancelled_len += key.live as usize;
        key.live = 0;
        if self.is_empty() {
            self.clear();
        } else if self.order.len() > COMPACT_ABOVE && self.cancelled_len * 2 > self.order.len() {
            self.compact();
        }
    }

    /// Forgets every request (we choked the remote, or it lost interest).
    pub fn clear(&mut self) {
        self.order.clear();
        self.keys = None;
        self.cancelled_len = 0;
    }

    /// Drops the cancelled entries, keeping the live ones in order: O(n),
    /// done once per n/2 cancels at most.
    fn compact(&mut self) {
        let Some(keys) = &mut self.keys else {
            return;
        };
        self.order
            .retain(|(request, generation)| keys[request].generation == *generation);
        keys.retain(|_, key| {
            key.stored = key.live;
            key.live > 0
        });
        self.cancelled_len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(queue: &mut RequestQueue) -> Vec<Request> {
        std::iter::from_fn(|| queue.pop()).collect()
    }

    #[test]
    fn requests_are_served_in_arrival_order() {
        let mut queue = RequestQueue::new();
        for begin in [0, 16384, 32768] {
            queue.push((1, begin, 16384));
        }
        assert_eq!(queue.len(), 3);
        assert_eq!(
            drain(&mut queue),
            [(1, 0, 16384), (1, 16384, 16384), (1, 32768, 16384)]
        );
        assert!(queue.is_empty());
    }

    #[test]
    fn a_cancelled_request_is_skipped_and_the_others_keep_their_order() {
        let mut queue = RequestQueue::new();
        for index in 0..5 {
            queue.push((index, 0, 16384));
        }
        queue.cancel((2, 0, 16384));
        assert_eq!(queue.len(), 4);
        let served: Vec<u32> = drain(&mut queue).iter().map(|r| r.0).collect();
        assert_eq!(served, [0, 1, 3, 4]);
    }

    #[test]
    fn a_cancel_for_a_block_never_asked_changes_nothing() {
        let mut queue = RequestQueue::new();
        queue.push((0, 0, 16384));
        queue.cancel((0, 0, 1));
        queue.cancel((9, 0, 16384));
        assert_eq!(drain(&mut queue), [(0, 0, 16384)]);
    }

    #[test]
    fn cancel_drops_every_copy_and_a_later_request_is_served_once() {
        let mut queue = RequestQueue::new();
        queue.push((0, 0, 16384));
        queue.push((1, 0, 16384));
        queue.push((0, 0, 16384));
        queue.cancel((0, 0, 16384));
        assert_eq!(queue.len(), 1);
        queue.push((0, 0, 16384));
        assert_eq!(queue.len(), 2);
        assert_eq!(drain(&mut queue), [(1, 0, 16384), (0, 0, 16384)]);
    }

    #[test]
    fn cancelled_entries_never_outnumber_live_ones_for_long() {
        let mut queue = RequestQueue::new();
        for index in 0..16_384 {
            queue.push((index, 0, 16384));
        }
        // Cancel all but the multiples of 100, in order.
        for index in (0..16_384).filter(|i| i % 100 != 0) {
            queue.cancel((index, 0, 16384));
            assert!(
                queue.order.len() <= 2 * queue.len() + COMPACT_ABOVE,
                "{} entries stored for {} live",
                queue.order.len(),
                queue.len()
            );
        }
        let served: Vec<u32> = drain(&mut queue).iter().map(|r| r.0).collect();
        assert_eq!(served, (0..16_384).step_by(100).collect::<Vec<_>>());
    }

    #[test]
    fn the_index_is_built_by_the_first_cancel_and_dropped_when_the_queue_empties() {
        let mut queue = RequestQueue::new();
        queue.push((0, 0, 16384));
        queue.push((1, 0, 16384));
        assert!(queue.keys.is_none(), "no cancel yet, no index");
        queue.cancel((9, 0, 16384));
        assert!(queue.keys.is_some());
        queue.push((2, 0, 16384));
        queue.cancel((1, 0, 16384));
        assert_eq!(drain(&mut queue), [(0, 0, 16384), (2, 0, 16384)]);
        assert!(queue.keys.is_none(), "an empty queue keeps no index");
        queue.cancel((0, 0, 16384));
        assert!(
            queue.keys.is_none(),
            "a cancel with nothing queued builds nothing"
        );
    }

    #[test]
    fn clear_forgets_everything() {
        let mut queue = RequestQueue::new();
        queue.push((0, 0, 16384));
        queue.cancel((0, 0, 16384));
        queue.push((1, 0, 16384));
        queue.clear();
        assert!(queue.is_empty());
        assert_eq!(queue.pop(), None);
    }
}
