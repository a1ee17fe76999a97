//! The iterative lookup (BEP 5, "get_peers" and Kademlia's node lookup):
//! ask the nodes closest to a target for nodes closer still, [`ALPHA`] at a
//! time, until the [`K`] closest nodes seen have all answered.
//!
//! One [`Lookup`] serves `get_peers` (it collects the peers and the tokens
//! of the answering nodes, for `announce_peer` afterwards) and `find_node`
//! (bootstrap and bucket refresh; the peers and tokens are then simply
//! empty). Owns the candidates and their state (not yet asked, asked at a
//! time, answered, failed), the peers found and the tokens. Out of scope:
//! transaction ids, encoding and sending, which the node thread does with
//! [`super::krpc`]: it sends one query per node [`Lookup::next_queries`]
//! returns and reports each answer or failure back. Pure code, time passed in.
//!
//! Bounded: at most [`MAX_CANDIDATES`] nodes (the farthest are dropped) and
//! [`MAX_PEERS`] peers are kept, whatever the answers say.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::id::{Distance, NodeId, NodeInfo};
use super::routing::K;

/// Queries in flight at once (BEP 5 and Kademlia's alpha).
pub const ALPHA: usize = 3;

/// A query not answered within this time counts as failed.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

/// Candidate nodes kept; the farthest beyond this are forgotten.
pub const MAX_CANDIDATES: usize = 256;

/// Peers kept from the answers.
pub const MAX_PEERS: usize = 1_000;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Status {
    Fresh,
    InFlight(Instant),
    Answered,
    Failed,
}

#[derive(Clone, Debug)]
struct Candidate {
    addr: SocketAddr,
    /// `None` for a bootstrap router whose id we learn from its answer.
    id: Option<NodeId>,
    status: Status,
    token: Option<Vec<u8>>,
}

/// One lookup toward a target (an info-hash for `get_peers`, any id for `find_node`).
#[derive(Debug)]
pub struct Lookup {
    target: NodeId,
    candidates: Vec<Candidate>,
    peers: Vec<SocketAddr>,
    seen_peers: HashSet<SocketAddr>,
}

impl Lookup {
    /// A lookup toward `target` starting from `seeds` (usually the routing
    /// table's closest nodes). Nothing is sent until [`Lookup::next_queries`].
    pub fn new(target: NodeId, seeds: &[NodeInfo]) -> Lookup {
        let mut lookup = Lookup {
            target,
            candidates: Vec::new(),
            peers: Vec::new(),
            seen_peers: HashSet::new(),
        };
        lookup.add_nodes(seeds);
        lookup
    }

    /// Adds a bootstrap router: a node we know only by address. It sorts
    /// after every node of known id until it answers.
    pub fn add_router(&mut self, addr: SocketAddr) {
        if !self.candidates.iter().any(|c| c.addr == addr) {
            self.candidates.push(Candidate {
                addr,
                id: None,
                status: Status::Fresh,
                token: None,
            });
            self.sort_and_bound();
        }
    }

    /// The target.
    pub fn target(&self) -> NodeId {
        self.target
    }

    /// The nodes to query now, marked as asked at `now`: the closest not yet
    /// asked among the [`K`] closest not failed, while fewer than [`ALPHA`]
    /// are in flight. Queries older than [`QUERY_TIMEOUT`] count as failed
    /// first, so call this on every tick and after every answer. A router's
    /// id is given as our target (it is unknown); only its address matters.
    pub fn next_queries(&mut self, now: Instant) -> Vec<SocketAddr> {
        for c in &mut self.candidates {
            if let Status::InFlight(sent) = c.status
                && now.saturating_duration_since(sent) >= QUERY_TIMEOUT
            {
                c.status = Status::Failed;
            }
        }
        let mut in_flight = self.in_flight();
        let mut out = Vec::new();
        for c in self
            .candidates
            .iter_mut()
            .filter(|c| c.status != Status::Failed)
            .take(K)
        {
            if in_flight >= ALPHA {
                break;
            }
            if c.status == Status::Fresh {
                c.status = Status::InFlight(now);
                in_flight += 1;
                out.push(c.addr);
            }
        }
        out
    }

    /// Records the answer of the node at `from` (whose id is `id`): the
    /// `nodes` it gave, the `peers` (`values`) and its `token`. Pass `nodes`
    /// without our own id. An answer from an address we did not ask is ignored;
    /// a late one, after its timeout, still counts.
    pub fn on_response(
        &mut self,
        from: SocketAddr,
        id: NodeId,
        nodes: &[NodeInfo],
        peers: &[SocketAddr],
        token: Option<&[u8]>,
    ) {
        let Some(c) = self
            .candidates
            .iter_mut()
            .find(|c| c.addr == from && c.status != Status::Fresh)
        else {
            return;
        };
        c.status = Status::Answered;
        c.id = Some(id);
        c.token = token.map(<[u8]>::to_vec);
        for peer in peers {
            if self.peers.len() < MAX_PEERS && self.seen_peers.insert(*peer) {
                self.peers.push(*peer);
            }
        }
        self.add_nodes(nodes);
    }

    /// The query to `from` failed (timed out at the node thread, or was
    /// answered with an error).
    pub fn on_timeout(&mut self, from: SocketAddr) {
        if let Some(c) = self
            .candidates
            .iter_mut()
            .find(|c| c.addr == from && matches!(c.status, Status::InFlight(_)))
        {
            c.status = Status::Failed;
        }
    }

    /// Whether the lookup is over: the [`K`] closest nodes not failed have all
    /// answered (or every node has failed). Queries may still be in flight to
    /// farther nodes; their answers no longer matter, so the node thread
    /// may forget those transactions.
    pub fn is_done(&self) -> bool {
        self.candidates
            .iter()
            .filter(|c| c.status != Status::Failed)
            .take(K)
            .all(|c| c.status == Status::Answered)
    }

    /// Queries in flight.
    pub fn in_flight(&self) -> usize {
        self.candidates
            .iter()
            .filter(|c| matches!(c.status, Status::InFlight(_)))
            .count()
    }

    /// The peers found so far, in the order they came, without repeats.
    pub fn peers(&self) -> &[SocketAddr] {
        &self.peers
    }

    /// The [`K`] closest nodes that answered, closest first (the result of a
    /// `find_node` lookup).
    pub fn closest(&self) -> Vec<NodeInfo> {
        self.answered()
            .map(|(c, id)| NodeInfo { id, addr: c.addr })
            .collect()
    }

    /// Where to send `announce_peer` once done: each of the [`K`] closest
    /// answering nodes that gave a token, with its token.
    pub fn announce_targets(&self) -> Vec<(NodeInfo, Vec<u8>)> {
        self.answered()
            .filter_map(|(c, id)| Some((NodeInfo { id, addr: c.addr }, c.token.clone()?)))
            .collect()
    }

    fn answered(&self) -> impl Iterator<Item = (&Candidate, NodeId)> {
        self.candidates
            .iter()
            .filter(|c| c.status == Status::Answered)
            .filter_map(|c| Some((c, c.id?)))
            .take(K)
    }

    fn add_nodes(&mut self, nodes: &[NodeInfo]) {
        for node in nodes {
            let known = self
                .candidates
                .iter()
                .any(|c| c.addr == node.addr || c.id == Some(node.id));
            if !known {
                self.candidates.push(Candidate {
                    addr: node.addr,
                    id: Some(node.id),
                    status: Status::Fresh,
                    token: None,
                });
            }
        }
        self.sort_and_bound();
    }

    fn sort_and_bound(&mut self) {
        let target = self.target;
        let key = |c: &Candidate| -> (bool, Distance) {
            match c.id {
                Some(id) => (false, target.distance(&id)),
                None => (true, Distance([0xff; 20])),
            }
        };
        self.candidates.sort_by_key(key);
        self.candidates.truncate(MAX_CANDIDATES);
    }
}

#[cfg(test)]
#[path = "lookup_tests.rs"]
mod tests;
