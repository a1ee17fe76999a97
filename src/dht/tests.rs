//! The parts together, as the node thread will use them: one node answers
//! another's `get_peers` and `announce_peer` over encoded bytes.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::krpc::ERROR_PROTOCOL;
use super::store::VALUES_PER_REPLY;
use super::*;

/// A responder made of the pure parts, answering one datagram.
struct Responder {
    table: RoutingTable,
    tokens: TokenSecrets,
    store: PeerStore,
    rng: fastrand::Rng,
}

impl Responder {
    fn new(id: NodeId, now: Instant) -> Responder {
        Responder {
            table: RoutingTable::new(id, now),
            tokens: TokenSecrets::new(fastrand::Rng::with_seed(1), now),
            store: PeerStore::new(),
            rng: fastrand::Rng::with_seed(2),
        }
    }

    fn answer(&mut self, datagram: &[u8], from: SocketAddr, now: Instant) -> Option<Vec<u8>> {
        let message = match decode(datagram) {
            Ok(message) => message,
            Err(e) => return e.reply().map(|m| m.encode()),
        };
        let Body::Query(query) = &message.body else {
            return None;
        };
        let own = self.table.own_id();
        let mut response = Response::new(own);
        match query {
            Query::Ping { .. } => {}
            Query::FindNode { target, .. } => {
                response.nodes = self.table.closest(target, routing::K, now);
            }
            Query::GetPeers { info_hash, .. } => {
                response.values = self
                    .store
                    .peers(info_hash, VALUES_PER_REPLY, now, &mut self.rng);
                if response.values.is_empty() {
                    response.nodes = self.table.closest(info_hash, routing::K, now);
                }
                response.token = Some(self.tokens.token_for(from.ip(), now).to_vec());
            }
            Query::AnnouncePeer {
                info_hash, token, ..
            } => {
                if !self.tokens.check(token, from.ip(), now) {
                    let error = Message::error(message.tid, ERROR_PROTOCOL, "bad token");
                    return Some(error.encode());
                }
                let peer = query
                    .announced_peer(from)
                    .expect("an announce names a peer");
                self.store.announce(*info_hash, peer, now);
            }
        }
        let info = NodeInfo {
            id: query.id(),
            addr: from,
        };
        self.table.on_query(info, message.read_only, now);
        let mut reply = Message::response(message.tid, response);
        reply.external_addr = Some(from);
        Some(reply.encode())
    }
}

fn response_of(bytes: &[u8]) -> Response {
    match decode(bytes).unwrap().body {
        Body::Response(r) => r,
        other => panic!("not a response: {other:?}"),
    }
}

#[test]
fn a_peer_announced_with_the_token_from_get_peers_is_handed_out() {
    let t0 = Instant::now();
    let mut node = Responder::new(NodeId([0xaa; 20]), t0);
    let us = NodeId([0x11; 20]);
    let from: SocketAddr = "127.0.0.7:50000".parse().unwrap();
    let info_hash = NodeId([0x42; 20]);
    // libtorrent's 2-byte transaction ids come back as they went.
    let tid = TransactionId::from_u16(0x0a0b);
    let get_peers = Message::query(tid, Query::GetPeers { id: us, info_hash }).encode();
    let reply = node.answer(&get_peers, from, t0).unwrap();
    assert_eq!(decode(&reply).unwrap().tid, tid);
    assert_eq!(decode(&reply).unwrap().external_addr, Some(from));
    let first = response_of(&reply);
    assert_eq!(first.values, []);
    let token = first.token.unwrap();

    let announce = Query::AnnouncePeer {
        id: us,
        info_hash,
        port: 6881,
        implied_port: false,
        token: token.clone(),
    };
    let ok = node.answer(
        &Message::query(tid, announce).encode(),
        from,
        t0 + Duration::from_secs(60),
    );
    assert_eq!(response_of(&ok.unwrap()).id, NodeId([0xaa; 20]));

    let again = node
        .answer(&get_peers, from, t0 + Duration::from_secs(120))
        .unwrap();
    assert_eq!(
        response_of(&again).values,
        ["127.0.0.7:6881".parse::<SocketAddr>().unwrap()]
    );

    // The same token from another address is refused with error 203.
    let other: SocketAddr = "127.0.0.8:50000".parse().unwrap();
    let forged = Query::AnnouncePeer {
        id: us,
        info_hash,
        port: 1,
        implied_port: false,
        token,
    };
    let refused = node
        .answer(&Message::query(tid, forged).encode(), other, t0)
        .unwrap();
    match decode(&refused).unwrap().body {
        Body::Error(e) => assert_eq!(e.code, ERROR_PROTOCOL),
        other => panic!("{other:?}"),
    }
}

#[test]
fn unknown_methods_and_read_only_queriers_are_handled() {
    let t0 = Instant::now();
    let mut node = Responder::new(NodeId([0xaa; 20]), t0);
    let from: SocketAddr = "127.0.0.9:4000".parse().unwrap();
    let reply = node
        .answer(
            b"d1:ad2:id20:abcdefghij0123456789e1:q3:put1:t1:x1:y1:qe",
            from,
            t0,
        )
        .unwrap();
    assert!(reply.starts_with(b"d1:eli204e"));
    let mut ping = Message::query(
        TransactionId::from_u16(1),
        Query::Ping {
            id: NodeId([3; 20]),
        },
    );
    ping.read_only = true;
    assert!(
        node.answer(&ping.encode(), from, t0).is_some(),
        "read-only nodes are answered"
    );
    assert!(node.table.is_empty(), "but not kept");
    ping.read_only = false;
    node.answer(&ping.encode(), from, t0);
    assert_eq!(node.table.len(), 1);
}
