//! The engine over an in-memory network: datagrams are handed from one
//! engine's outbox to another's `on_datagram`, with a fake clock.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use super::*;
use crate::dht::krpc::{ERROR_PROTOCOL, decode};

fn addr(n: u8) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, n)), 6881)
}

struct Net {
    nodes: Vec<(SocketAddr, Engine)>,
}

impl Net {
    /// `count` engines; each but the first bootstraps from the first.
    fn new(count: u8, now: Instant) -> Net {
        let nodes = (1..=count)
            .map(|n| {
                let routers = if n == 1 { vec![] } else { vec![addr(1)] };
                let id = NodeId([n.wrapping_mul(37); 20]);
                let rng = fastrand::Rng::with_seed(u64::from(n));
                (addr(n), Engine::new(id, &[], routers, rng, now))
            })
            .collect();
        Net { nodes }
    }

    fn engine(&mut self, n: u8) -> &mut Engine {
        &mut self.nodes[usize::from(n - 1)].1
    }

    /// Ticks every engine and delivers datagrams until none is left.
    fn run(&mut self, now: Instant) {
        for (_, engine) in &mut self.nodes {
            engine.tick(now);
        }
        for _ in 0..1000 {
            let mut flight = Vec::new();
            for (from, engine) in &mut self.nodes {
                for (to, datagram) in engine.take_outbox() {
                    flight.push((*from, to, datagram));
                }
            }
            if flight.is_empty() {
                return;
            }
            for (from, to, datagram) in flight {
                if let Some((_, engine)) = self.nodes.iter_mut().find(|(a, _)| *a == to) {
                    engine.on_datagram(from, &datagram, now);
                }
            }
        }
        panic!("the network never went quiet");
    }
}

fn collector() -> (Arc<Mutex<Vec<SocketAddr>>>, PeersCallback) {
    let found = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&found);
    (
        found,
        Box::new(move |peers| sink.lock().unwrap().extend(peers)),
    )
}

#[test]
fn nodes_bootstrap_from_one_and_know_each_other() {
    let now = Instant::now();
    let mut net = Net::new(5, now);
    net.run(now);
    // The hub pings its questionable queriers at the next round, and hands
    // them out once they answered, at the round after.
    net.run(now + MAINTENANCE_EVERY);
    net.run(now + 2 * MAINTENANCE_EVERY);
    for n in 2..=5 {
        assert!(net.engine(n).table().len() >= 2, "node {n}");
    }
    assert_eq!(net.engine(1).table().len(), 4);
    assert_eq!(net.engine(3).pending_count(), 0);
}

#[test]
fn a_seeder_announced_through_the_network_is_found_by_a_downloader() {
    let now = Instant::now();
    let mut net = Net::new(6, now);
    net.run(now);
    let info_hash = NodeId([0xab; 20]);
    let (_, quiet) = collector();
    net.engine(2).announce(info_hash, 7000, true, quiet, now);
    net.run(now);
    assert!(net.engine(2).counters().announced > 0);
    let (found, on_peers) = collector();
    net.engine(6)
        .announce(info_hash, 7001, false, on_peers, now);
    net.run(now);
    // Node 2's address, with the TCP port it announced.
    let seeder = SocketAddr::new(addr(2).ip(), 7000);
    assert_eq!(*found.lock().unwrap(), vec![seeder]);
    // Each lookup hands a peer over once; the next one offers it again, so
    // a batch the torrent could not take is not lost for good (regression:
    // peers were remembered per torrent, never offered again, and after
    // 2,000 the torrent got no new ones).
    // Half an hour on, the nodes and the seeder are asked again (the
    // rounds before keep the tables good and let the seeder re-announce).
    for round in 1..=200 {
        net.run(now + MAINTENANCE_EVERY * round);
    }
    let offered = found
        .lock()
        .unwrap()
        .iter()
        .filter(|&&a| a == seeder)
        .count();
    assert_eq!(offered, 2, "{:?}", found.lock().unwrap());
    net.engine(6).forget(&info_hash);
    assert_eq!(net.engine(6).torrent_count(), 0);
}

#[test]
fn a_lookup_that_finds_nobody_is_retried_sooner_and_sooner_less() {
    let now = Instant::now();
    let mut engine = Engine::new(
        NodeId([1; 20]),
        &[],
        vec![],
        fastrand::Rng::with_seed(1),
        now,
    );
    let (_, on_peers) = collector();
    engine.announce(NodeId([2; 20]), 7000, false, on_peers, now);
    engine.tick(now);
    // Nobody to ask: the lookup ends at once and is due again in FIRST_RETRY.
    assert_eq!(engine.next_tick(now), now + FIRST_RETRY);
    let later = now + FIRST_RETRY;
    engine.tick(later);
    // Its next retry (2 × FIRST_RETRY later) comes after the maintenance.
    assert_eq!(engine.next_tick(later), now + MAINTENANCE_EVERY);
}

fn query_bytes(tid: &[u8], query: Query) -> Vec<u8> {
    Message::query(TransactionId::new(tid).unwrap(), query).encode()
}

fn reply_to(engine: &mut Engine) -> Message {
    let out = engine.take_outbox();
    assert_eq!(out.len(), 1, "{out:?}");
    decode(&out[0].1).unwrap()
}

#[test]
fn announce_peer_needs_our_token_and_honours_implied_port() {
    let now = Instant::now();
    let mut engine = Engine::new(
        NodeId([1; 20]),
        &[],
        vec![],
        fastrand::Rng::with_seed(3),
        now,
    );
    let from = addr(9);
    let id = NodeId([9; 20]);
    let info_hash = NodeId([5; 20]);
    let announce = |token: Vec<u8>, implied_port: bool| {
        query_bytes(
            b"an",
            Query::AnnouncePeer {
                id,
                info_hash,
                port: 7000,
                implied_port,
                token,
            },
        )
    };
    engine.on_datagram(from, &announce(b"nope".to_vec(), false), now);
    let Body::Error(e) = reply_to(&mut engine).body else {
        panic!("a bad token is an error");
    };
    assert_eq!(e.code, ERROR_PROTOCOL);
    engine.on_datagram(
        from,
        &query_bytes(b"g", Query::GetPeers { id, info_hash }),
        now,
    );
    let Body::Response(r) = reply_to(&mut engine).body else {
        panic!("get_peers is answered");
    };
    let token = r.token.expect("a token");
    assert!(r.values.is_empty());
    engine.on_datagram(from, &announce(token.clone(), true), now);
    assert!(matches!(reply_to(&mut engine).body, Body::Response(_)));
    let other = addr(10);
    engine.on_datagram(
        other,
        &query_bytes(
            b"g2",
            Query::GetPeers {
                id: NodeId([10; 20]),
                info_hash,
            },
        ),
        now,
    );
    let Body::Response(r) = reply_to(&mut engine).body else {
        panic!("get_peers is answered");
    };
    // implied_port: the UDP source port, not the port in the query.
    assert_eq!(r.values, vec![from]);
    // A token is bound to the address it was given to.
    engine.on_datagram(other, &announce(token, false), now);
    assert!(matches!(reply_to(&mut engine).body, Body::Error(_)));
}

#[test]
fn replies_from_another_address_than_asked_are_ignored_and_pending_is_bounded() {
    let now = Instant::now();
    let mut engine = Engine::new(
        NodeId([1; 20]),
        &[],
        vec![],
        fastrand::Rng::with_seed(4),
        now,
    );
    engine.tick(now);
    for n in 0..(MAX_PENDING + 50) {
        let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n as u32));
        engine.add_node(SocketAddr::new(ip, 6881), now);
    }
    assert_eq!(engine.pending_count(), MAX_PENDING);
    let (to, ping) = engine.take_outbox().remove(0);
    let tid = decode(&ping).unwrap().tid;
    let answer = Message::response(tid, Response::new(NodeId([2; 20]))).encode();
    engine.on_datagram(addr(200), &answer, now);
    assert_eq!(engine.pending_count(), MAX_PENDING, "a spoofed reply");
    engine.on_datagram(to, &answer, now);
    assert_eq!(engine.pending_count(), MAX_PENDING - 1);
    assert_eq!(engine.table().len(), 1);
    // Unanswered queries time out and count against their nodes.
    engine.tick(now + QUERY_TIMEOUT);
    assert_eq!(engine.pending_count(), 0);
}
