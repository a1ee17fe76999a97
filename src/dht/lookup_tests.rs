use std::collections::{HashMap, HashSet};

use super::*;
use crate::dht::routing::RoutingTable;

/// A scripted network: every node keeps a real routing table of all the
/// others and answers with the closest nodes its table holds. The true
/// [`K`] closest live nodes to the target store two peers each.
struct Network {
    tables: HashMap<SocketAddr, RoutingTable>,
    dead: HashSet<SocketAddr>,
    peers_at: HashMap<SocketAddr, Vec<SocketAddr>>,
    queries: usize,
}

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, (i / 250) as u8, (i % 250) as u8 + 1], 6881))
}

impl Network {
    fn new(size: usize, dead_count: usize, target: NodeId, rng: &mut fastrand::Rng) -> Network {
        let now = Instant::now();
        let nodes: Vec<NodeInfo> = (0..size)
            .map(|i| NodeInfo {
                id: NodeId::random_with(rng),
                addr: addr(i),
            })
            .collect();
        let mut tables = HashMap::new();
        for me in &nodes {
            let mut table = RoutingTable::new(me.id, now);
            // Each table keeps whichever nodes it met first, in its own order.
            let mut met = nodes.clone();
            rng.shuffle(&mut met);
            for other in &met {
                table.on_response(*other, now);
            }
            tables.insert(me.addr, table);
        }
        let dead: HashSet<SocketAddr> = nodes[..dead_count].iter().map(|n| n.addr).collect();
        let mut peers_at = HashMap::new();
        for (i, node) in true_closest(&nodes, &dead, target).iter().enumerate() {
            let stored = vec![
                SocketAddr::from(([127, 1, 0, i as u8], 1000)),
                SocketAddr::from(([127, 1, 1, i as u8], 1001)),
            ];
            peers_at.insert(node.addr, stored);
        }
        Network {
            tables,
            dead,
            peers_at,
            queries: 0,
        }
    }

    fn all_nodes(&self) -> Vec<NodeInfo> {
        self.tables
            .iter()
            .map(|(addr, t)| NodeInfo {
                id: t.own_id(),
                addr: *addr,
            })
            .collect()
    }

    /// Runs `lookup` to the end, answering at once for live nodes and letting
    /// the clock run past the timeout when only dead ones are in flight.
    fn run(&mut self, lookup: &mut Lookup, mut now: Instant) {
        for _round in 0..1000 {
            let asked = lookup.next_queries(now);
            assert!(lookup.in_flight() <= ALPHA);
            if asked.is_empty() {
                if lookup.is_done() {
                    return;
                }
                now += QUERY_TIMEOUT;
                continue;
            }
            for to in asked {
                self.queries += 1;
                if self.dead.contains(&to) {
                    continue;
                }
                let table = &self.tables[&to];
                let nodes = table.closest(&lookup.target(), K, now);
                let peers = self.peers_at.get(&to).cloned().unwrap_or_default();
                let token = table.own_id().0[..4].to_vec();
                lookup.on_response(to, table.own_id(), &nodes, &peers, Some(&token));
            }
        }
        panic!("lookup did not finish in 1000 rounds");
    }
}

fn true_closest(nodes: &[NodeInfo], dead: &HashSet<SocketAddr>, target: NodeId) -> Vec<NodeInfo> {
    let mut live: Vec<NodeInfo> = nodes
        .iter()
        .filter(|n| !dead.contains(&n.addr))
        .copied()
        .collect();
    live.sort_by(|a, b| target.cmp_distance(&a.id, &b.id));
    live.truncate(K);
    live
}

fn seeds(net: &Network, rng: &mut fastrand::Rng, count: usize) -> Vec<NodeInfo> {
    let mut all = net.all_nodes();
    all.sort_by_key(|n| n.addr);
    rng.shuffle(&mut all);
    all.truncate(count);
    all
}

#[test]
fn converges_on_the_true_k_closest_and_their_peers() {
    for seed in 0..10 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let target = NodeId::random_with(&mut rng);
        let mut net = Network::new(200, 0, target, &mut rng);
        let mut lookup = Lookup::new(target, &seeds(&net, &mut rng, 3));
        net.run(&mut lookup, Instant::now());
        let expected = true_closest(&net.all_nodes(), &net.dead, target);
        assert_eq!(lookup.closest(), expected, "seed {seed}");
        let mut peers = lookup.peers().to_vec();
        peers.sort();
        let mut stored: Vec<SocketAddr> = net.peers_at.values().flatten().copied().collect();
        stored.sort();
        assert_eq!(peers, stored, "seed {seed}");
        let targets = lookup.announce_targets();
        assert_eq!(targets.len(), K);
        for ((node, token), want) in targets.iter().zip(&expected) {
            assert_eq!(node, want);
            assert_eq!(token[..], want.id.0[..4]);
        }
        // Far fewer queries than nodes: the lookup is directed.
        assert!(net.queries < 60, "seed {seed}: {} queries", net.queries);
    }
}

#[test]
fn converges_exactly_when_dead_seeds_time_out() {
    for seed in 0..5 {
        let mut rng = fastrand::Rng::with_seed(200 + seed);
        let target = NodeId::random_with(&mut rng);
        let mut net = Network::new(200, 40, target, &mut rng);
        // The live nodes have found the dead ones out, so they name only live
        // nodes; our seeds are stale: half of them are dead.
        let now = Instant::now();
        let dead: Vec<SocketAddr> = net.dead.iter().copied().collect();
        for table in net.tables.values_mut() {
            for addr in &dead {
                for _ in 0..crate::dht::routing::MAX_FAILURES {
                    table.on_failure(*addr, now);
                }
            }
        }
        let all = net.all_nodes();
        let mut start: Vec<NodeInfo> = all
            .iter()
            .filter(|n| net.dead.contains(&n.addr))
            .take(3)
            .copied()
            .collect();
        start.extend(all.iter().filter(|n| !net.dead.contains(&n.addr)).take(3));
        let mut lookup = Lookup::new(target, &start);
        net.run(&mut lookup, now);
        assert_eq!(
            lookup.closest(),
            true_closest(&all, &net.dead, target),
            "seed {seed}"
        );
        assert_eq!(lookup.peers().len(), 2 * K, "seed {seed}");
    }
}

#[test]
fn ends_with_live_nodes_when_the_tables_still_name_dead_ones() {
    for seed in 0..5 {
        let mut rng = fastrand::Rng::with_seed(100 + seed);
        let target = NodeId::random_with(&mut rng);
        // The first 40 of 200 nodes never answer, and every table still lists
        // them. Answers name 8 nodes, dead or alive, so a live node ranked
        // just below dead ones may be named by no node the lookup asks: the
        // lookup finds most, not always all, of the true closest.
        let mut net = Network::new(200, 40, target, &mut rng);
        let mut lookup = Lookup::new(target, &seeds(&net, &mut rng, 8));
        net.run(&mut lookup, Instant::now());
        let found = lookup.closest();
        assert_eq!(found.len(), K);
        assert!(found.iter().all(|n| !net.dead.contains(&n.addr)));
        assert!(found.is_sorted_by(|a, b| target.cmp_distance(&a.id, &b.id).is_le()));
        let truth = true_closest(&net.all_nodes(), &net.dead, target);
        let hits = truth.iter().filter(|n| found.contains(n)).count();
        assert!(hits >= K - 2, "seed {seed}: {hits} of the true {K}");
        let mut peers = lookup.peers().to_vec();
        peers.sort();
        let mut stored: Vec<SocketAddr> = found
            .iter()
            .flat_map(|n| net.peers_at.get(&n.addr).cloned().unwrap_or_default())
            .collect();
        stored.sort();
        assert_eq!(peers, stored, "seed {seed}");
    }
}

#[test]
fn starts_from_a_router_known_only_by_address() {
    let mut rng = fastrand::Rng::with_seed(42);
    let target = NodeId::random_with(&mut rng);
    let mut net = Network::new(100, 0, target, &mut rng);
    let router = addr(7);
    let mut lookup = Lookup::new(target, &[]);
    lookup.add_router(router);
    lookup.add_router(router);
    assert_eq!(lookup.next_queries(Instant::now()), [router]);
    let now = Instant::now();
    let table = &net.tables[&router];
    let nodes = table.closest(&target, K, now);
    let id = table.own_id();
    lookup.on_response(router, id, &nodes, &[], None);
    net.run(&mut lookup, now);
    assert_eq!(
        lookup.closest(),
        true_closest(&net.all_nodes(), &net.dead, target)
    );
}

#[test]
fn at_most_alpha_queries_fly_and_timeouts_free_their_slots() {
    let t0 = Instant::now();
    let seeds: Vec<NodeInfo> = (0..5)
        .map(|i| NodeInfo {
            id: NodeId([i as u8 + 1; 20]),
            addr: addr(i),
        })
        .collect();
    let mut lookup = Lookup::new(NodeId([0; 20]), &seeds);
    assert_eq!(lookup.next_queries(t0), [addr(0), addr(1), addr(2)]);
    assert_eq!(lookup.next_queries(t0), []);
    lookup.on_timeout(addr(1));
    assert_eq!(lookup.next_queries(t0), [addr(3)]);
    // Addresses 0, 2 and 3 time out together.
    assert_eq!(lookup.next_queries(t0 + QUERY_TIMEOUT), [addr(4)]);
    assert!(!lookup.is_done());
    // A late answer from a timed-out node still counts; one from a stranger does not.
    lookup.on_response(addr(2), seeds[2].id, &[], &[addr(99)], None);
    lookup.on_response(addr(98), NodeId([9; 20]), &[], &[addr(98)], None);
    assert_eq!(lookup.peers(), [addr(99)]);
    lookup.on_response(addr(4), seeds[4].id, &[], &[], Some(b"tk"));
    assert!(lookup.is_done());
    assert_eq!(lookup.closest(), [seeds[2], seeds[4]]);
    assert_eq!(lookup.announce_targets(), [(seeds[4], b"tk".to_vec())]);
}

#[test]
fn a_lookup_with_no_seed_is_done_at_once_and_every_node_failing_ends_it() {
    let t0 = Instant::now();
    let mut empty = Lookup::new(NodeId([0; 20]), &[]);
    assert_eq!(empty.next_queries(t0), []);
    assert!(empty.is_done());
    let seed = NodeInfo {
        id: NodeId([1; 20]),
        addr: addr(1),
    };
    let mut lookup = Lookup::new(NodeId([0; 20]), &[seed]);
    assert_eq!(lookup.next_queries(t0), [addr(1)]);
    lookup.on_timeout(addr(1));
    assert!(lookup.is_done());
    assert_eq!(lookup.closest(), []);
}

#[test]
fn candidates_and_peers_are_bounded() {
    let t0 = Instant::now();
    let seed = NodeInfo {
        id: NodeId([1; 20]),
        addr: addr(0),
    };
    let mut lookup = Lookup::new(NodeId([0; 20]), &[seed]);
    lookup.next_queries(t0);
    let mut rng = fastrand::Rng::with_seed(1);
    let flood: Vec<NodeInfo> = (0..2 * MAX_CANDIDATES)
        .map(|i| NodeInfo {
            id: NodeId::random_with(&mut rng),
            addr: SocketAddr::from(([127, 2, (i / 256) as u8, i as u8], 1)),
        })
        .collect();
    let peers: Vec<SocketAddr> = (0..2 * MAX_PEERS as u16)
        .map(|p| SocketAddr::from(([127, 3, 0, 1], p)))
        .collect();
    lookup.on_response(addr(0), seed.id, &flood, &peers, None);
    assert_eq!(lookup.candidates.len(), MAX_CANDIDATES);
    assert_eq!(lookup.peers().len(), MAX_PEERS);
}
