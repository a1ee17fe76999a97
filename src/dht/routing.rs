//! The routing table (BEP 5, "Routing Table"): the nodes we know, in
//! k-buckets of [`K`] by their XOR distance to our own id.
//!
//! Owns: which nodes are kept, their state (good, questionable, bad: the
//! 15-minute rule), bucket splitting (only the bucket whose range holds our
//! own id splits), replacement of bad nodes, which buckets need a refresh,
//! and the nodes handed out (`closest`) and saved (`export`). Read-only
//! nodes (BEP 43) and our own id never enter it.
//!
//! Out of scope: sending anything. The node thread reports what happened
//! ([`RoutingTable::on_response`], [`RoutingTable::on_query`],
//! [`RoutingTable::on_failure`]) and acts on what the table asks for (pings
//! of questionable nodes, refresh lookups). Pure code, time passed in.
//!
//! Buckets are a list: bucket `i` holds the nodes whose id shares exactly
//! `i` leading bits with ours, except the last, which holds every node
//! sharing at least as many. The last bucket is the one that covers our own
//! id, so it is the only one that splits.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::id::{ID_BITS, NodeId, NodeInfo};

/// Nodes per bucket, and the number of closest nodes a lookup wants (BEP 5).
pub const K: usize = 8;

/// A node is good for this long after its last response (BEP 5).
pub const GOOD_FOR: Duration = Duration::from_secs(15 * 60);

/// A bucket untouched for this long needs a refresh (BEP 5).
pub const REFRESH_AFTER: Duration = Duration::from_secs(15 * 60);

/// Failed queries in a row after which a node is bad: BEP 5 suggests one
/// more try after a node fails to answer a ping, before replacing it.
pub const MAX_FAILURES: u32 = 2;

/// What we think of a node (BEP 5's good, questionable and bad).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum NodeState {
    /// Answered us within [`GOOD_FOR`], or has answered once and queried us
    /// within [`GOOD_FOR`].
    Good,
    /// Silent for [`GOOD_FOR`], or never answered: ping before trusting.
    Questionable,
    /// Failed [`MAX_FAILURES`] queries in a row: replaced when a node needs its slot.
    Bad,
}

/// A node in the table and what we know of its history.
#[derive(Clone, Debug)]
pub struct Contact {
    /// Its id and address.
    pub info: NodeInfo,
    last_response: Option<Instant>,
    last_query: Option<Instant>,
    ever_responded: bool,
    failures: u32,
}

impl Contact {
    fn new(info: NodeInfo) -> Contact {
        Contact {
            info,
            last_response: None,
            last_query: None,
            ever_responded: false,
            failures: 0,
        }
    }

    /// The node's state at `now`.
    pub fn state(&self, now: Instant) -> NodeState {
        let recent =
            |t: Option<Instant>| t.is_some_and(|t| now.saturating_duration_since(t) < GOOD_FOR);
        if self.failures >= MAX_FAILURES {
            NodeState::Bad
        } else if recent(self.last_response) || (self.ever_responded && recent(self.last_query)) {
            NodeState::Good
        } else {
            NodeState::Questionable
        }
    }

    /// When we last heard from it, by response or query.
    pub fn last_seen(&self) -> Option<Instant> {
        self.last_response.max(self.last_query)
    }
}

/// What [`RoutingTable::on_response`] or [`RoutingTable::on_query`] did with a node.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Insert {
    /// It was new and took a free slot.
    Added,
    /// It was already there; its history was updated.
    Updated,
    /// It took the slot of this bad node.
    Replaced(NodeInfo),
    /// Its bucket is full of questionable nodes: ping these (oldest first).
    /// The new node waits as the bucket's replacement and takes the slot of
    /// the first of them that goes bad.
    PingQuestionable(Vec<NodeInfo>),
    /// Its bucket is full of good nodes and cannot split: not kept.
    Full,
    /// Never kept: our own id, or a read-only node (BEP 43).
    Refused,
}

#[derive(Debug)]
struct Bucket {
    nodes: Vec<Contact>,
    replacement: Option<Contact>,
    last_changed: Instant,
}

impl Bucket {
    fn new(now: Instant) -> Bucket {
        Bucket {
            nodes: Vec::with_capacity(K),
            replacement: None,
            last_changed: now,
        }
    }
}

/// The routing table of one node.
#[derive(Debug)]
pub struct RoutingTable {
    own_id: NodeId,
    buckets: Vec<Bucket>,
}

impl RoutingTable {
    /// An empty table for a node whose id is `own_id`.
    pub fn new(own_id: NodeId, now: Instant) -> RoutingTable {
        RoutingTable {
            own_id,
            buckets: vec![Bucket::new(now)],
        }
    }

    /// Our own id.
    pub fn own_id(&self) -> NodeId {
        self.own_id
    }

    /// Nodes in the table.
    pub fn len(&self) -> usize {
        self.buckets.iter().map(|b| b.nodes.len()).sum()
    }

    /// Whether the table holds no node.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Buckets so far (1 to 160).
    pub fn bucket_count(&self) -> usize {
        self.buckets.len()
    }

    /// The node with id `id`, if kept.
    pub fn get(&self, id: &NodeId) -> Option<&Contact> {
        self.buckets[self.bucket_of(id)]
            .nodes
            .iter()
            .find(|c| c.info.id == *id)
    }

    /// Every node kept, bucket by bucket.
    pub fn contacts(&self) -> impl Iterator<Item = &Contact> {
        self.buckets.iter().flat_map(|b| b.nodes.iter())
    }

    /// `node` answered one of our queries: it is good, and kept if there is room.
    pub fn on_response(&mut self, node: NodeInfo, now: Instant) -> Insert {
        // A new id from a known address is a restarted node: forget the old one.
        self.remove_where(|c| c.info.addr == node.addr && c.info.id != node.id);
        self.insert(node, now, |c| {
            c.last_response = Some(now);
            c.ever_responded = true;
            c.failures = 0;
        })
    }

    /// `node` sent us a query. It is kept if there is room, as questionable
    /// until it answers one of ours; `read_only` nodes (BEP 43 `ro`) are not kept.
    pub fn on_query(&mut self, node: NodeInfo, read_only: bool, now: Instant) -> Insert {
        if read_only {
            return Insert::Refused;
        }
        self.insert(node, now, |c| c.last_query = Some(now))
    }

    /// A query to the node at `addr` timed out or failed. Returns its new
    /// state, or `None` when no such node is kept. A node that goes bad gives
    /// its slot to the bucket's waiting replacement, if any.
    pub fn on_failure(&mut self, addr: SocketAddr, now: Instant) -> Option<NodeState> {
        let bucket = self
            .buckets
            .iter_mut()
            .find(|b| b.nodes.iter().any(|c| c.info.addr == addr))?;
        let at = bucket.nodes.iter().position(|c| c.info.addr == addr)?;
        bucket.nodes[at].failures += 1;
        let state = bucket.nodes[at].state(now);
        if state == NodeState::Bad
            && let Some(replacement) = bucket.replacement.take()
        {
            bucket.nodes[at] = replacement;
            bucket.last_changed = now;
        }
        Some(state)
    }

    /// Adds the nodes of a saved table. They count as having answered once
    /// (they were good when saved) but are questionable until they answer again.
    pub fn import(&mut self, nodes: &[NodeInfo], now: Instant) {
        for node in nodes {
            self.insert(*node, now, |c| c.ever_responded = true);
        }
    }

    /// The nodes worth saving: not bad and known to answer, good ones first.
    pub fn export(&self, now: Instant) -> Vec<NodeInfo> {
        let mut kept: Vec<&Contact> = self
            .contacts()
            .filter(|c| c.ever_responded && c.state(now) != NodeState::Bad)
            .collect();
        kept.sort_by_key(|c| c.state(now) != NodeState::Good);
        kept.into_iter().map(|c| c.info).collect()
    }

    /// Up to `count` nodes closest to `target`, closest first: the answer to
    /// `find_node` and `get_peers`, and the seeds of a lookup. Bad nodes and
    /// nodes that never answered us are left out.
    pub fn closest(&self, target: &NodeId, count: usize, now: Instant) -> Vec<NodeInfo> {
        let mut nodes: Vec<NodeInfo> = self
            .contacts()
            .filter(|c| c.ever_responded && c.state(now) != NodeState::Bad)
            .map(|c| c.info)
            .collect();
        nodes.sort_by(|a, b| target.cmp_distance(&a.id, &b.id));
        nodes.truncate(count);
        nodes
    }

    /// Questionable nodes, least recently seen first: the node thread pings
    /// them (skipping those it is already waiting on) to learn whether they
    /// are good or bad.
    pub fn questionable(&self, now: Instant) -> Vec<NodeInfo> {
        let mut nodes: Vec<&Contact> = self
            .contacts()
            .filter(|c| c.state(now) == NodeState::Questionable)
            .collect();
        nodes.sort_by_key(|c| c.last_seen());
        nodes.into_iter().map(|c| c.info).collect()
    }

    /// Targets for refresh lookups (`find_node`), one random id in the range
    /// of each bucket unchanged for [`REFRESH_AFTER`]. Those buckets count as
    /// changed now, so each is asked for once per period.
    pub fn refresh_targets(&mut self, now: Instant, rng: &mut fastrand::Rng) -> Vec<NodeId> {
        let last = self.buckets.len() - 1;
        let own_id = self.own_id;
        let mut targets = Vec::new();
        for (index, bucket) in self.buckets.iter_mut().enumerate() {
            if now.saturating_duration_since(bucket.last_changed) >= REFRESH_AFTER {
                targets.push(own_id.random_in_range(index, index != last, rng));
                bucket.last_changed = now;
            }
        }
        targets
    }

    fn bucket_of(&self, id: &NodeId) -> usize {
        self.own_id
            .common_prefix_len(id)
            .min(self.buckets.len() - 1)
    }

    fn remove_where(&mut self, pred: impl Fn(&Contact) -> bool) {
        for bucket in &mut self.buckets {
            bucket.nodes.retain(|c| !pred(c));
        }
    }

    fn insert(&mut self, node: NodeInfo, now: Instant, touch: impl Fn(&mut Contact)) -> Insert {
        if node.id == self.own_id {
            return Insert::Refused;
        }
        loop {
            let index = self.bucket_of(&node.id);
            let can_split = index + 1 == self.buckets.len() && self.buckets.len() < ID_BITS;
            let bucket = &mut self.buckets[index];
            if let Some(known) = bucket.nodes.iter_mut().find(|c| c.info.id == node.id) {
                // Another address for a good node is likely spoofed: keep the one that answers.
                if known.info.addr != node.addr && known.state(now) == NodeState::Good {
                    return Insert::Full;
                }
                known.info.addr = node.addr;
                let answered_before = known.last_response;
                touch(known);
                if known.last_response != answered_before {
                    bucket.last_changed = now;
                }
                return Insert::Updated;
            }
            let mut contact = Contact::new(node);
            touch(&mut contact);
            if bucket.nodes.len() < K {
                bucket.nodes.push(contact);
                bucket.last_changed = now;
                return Insert::Added;
            }
            if let Some(bad) = bucket
                .nodes
                .iter()
                .position(|c| c.state(now) == NodeState::Bad)
            {
                let old = std::mem::replace(&mut bucket.nodes[bad], contact);
                bucket.last_changed = now;
                return Insert::Replaced(old.info);
            }
            if can_split {
                self.split_last(now);
                continue;
            }
            let mut questionable: Vec<&Contact> = bucket
                .nodes
                .iter()
                .filter(|c| c.state(now) == NodeState::Questionable)
                .collect();
            if questionable.is_empty() {
                return Insert::Full;
            }
            questionable.sort_by_key(|c| c.last_seen());
            let ping = questionable.into_iter().map(|c| c.info).collect();
            // A node that has answered us is the better replacement; keep it over one that has not.
            if bucket
                .replacement
                .as_ref()
                .is_none_or(|r| !r.ever_responded || contact.ever_responded)
            {
                bucket.replacement = Some(contact);
            }
            return Insert::PingQuestionable(ping);
        }
    }

    /// Splits the last bucket: the nodes sharing more bits with our id move
    /// to a new last bucket.
    fn split_last(&mut self, now: Instant) {
        let index = self.buckets.len() - 1;
        let own_id = self.own_id;
        let old = &mut self.buckets[index];
        let (near, far): (Vec<Contact>, Vec<Contact>) = old
            .nodes
            .drain(..)
            .partition(|c| own_id.common_prefix_len(&c.info.id) > index);
        old.nodes = far;
        old.replacement = None;
        let mut new = Bucket::new(now);
        new.last_changed = old.last_changed;
        new.nodes = near;
        self.buckets.push(new);
    }
}

#[cfg(test)]
#[path = "routing_tests.rs"]
mod tests;
