//! Answering other nodes' queries, as a good node does (BEP 5): `ping`,
//! `find_node`, `get_peers` (a token, the peers stored for the info-hash,
//! and the closest nodes we know) and `announce_peer` (its token checked,
//! `implied_port` honoured).
//!
//! Every reply echoes the query's transaction id byte for byte, whatever
//! its length (up to [`super::krpc::MAX_TID_LEN`]), and carries our `v`.
//! Errors sent: 203 for a malformed query, a bad token or port 0, 204 for
//! an unknown method (both from [`super::krpc::DecodeError::reply`] or
//! here). Queries beyond the per-address rate ([`super::ratelimit`]) are
//! dropped unanswered. The querier enters the routing table unless it is
//! read-only (BEP 43 `ro`).

use std::net::SocketAddr;
use std::time::Instant;

use super::engine::Engine;
use super::id::NodeInfo;
use super::krpc::{ERROR_PROTOCOL, Message, Query, Response, TransactionId};
use super::routing::K;
use super::store::VALUES_PER_REPLY;

impl Engine {
    /// Answers the query `query` (transaction `tid`) from `from`.
    pub(super) fn on_query(
        &mut self,
        from: SocketAddr,
        tid: TransactionId,
        query: Query,
        read_only: bool,
        now: Instant,
    ) {
        if !self.limiter.allow(from, now) {
            self.counters.rate_limited += 1;
            return;
        }
        let reply = self.answer(from, tid, &query, now);
        self.counters.answered += 1;
        self.outbox.push((from, reply.encode()));
        let node = NodeInfo {
            id: query.id(),
            addr: from,
        };
        let insert = self.table.on_query(node, read_only, now);
        self.inserted(insert, now);
    }

    fn answer(
        &mut self,
        from: SocketAddr,
        tid: TransactionId,
        query: &Query,
        now: Instant,
    ) -> Message {
        let mut response = Response::new(self.own_id);
        match query {
            Query::Ping { .. } => {}
            Query::FindNode { target, .. } => {
                response.nodes = self.table.closest(target, K, now);
            }
            Query::GetPeers { info_hash, .. } => {
                response.token = Some(self.tokens.token_for(from.ip(), now).to_vec());
                response.values = self
                    .store
                    .peers(info_hash, VALUES_PER_REPLY, now, &mut self.rng);
                response.nodes = self.table.closest(info_hash, K, now);
            }
            Query::AnnouncePeer {
                info_hash,
                port,
                implied_port,
                token,
                ..
            } => {
                if !self.tokens.check(token, from.ip(), now) {
                    return Message::error(tid, ERROR_PROTOCOL, "Protocol Error: bad token");
                }
                let port = if *implied_port { from.port() } else { *port };
                if port == 0 {
                    return Message::error(tid, ERROR_PROTOCOL, "Protocol Error: port 0");
                }
                let peer = SocketAddr::new(from.ip(), port);
                let stored = self.store.announce(*info_hash, peer, now);
                log::debug!("dht: {from}: announce_peer {peer}: {stored:?}");
            }
        }
        Message::response(tid, response)
    }
}
