//! The Mainline DHT (BEP 5): one node per process, and the pure parts it
//! is made of.
//!
//! Around them, the node ([`node`]): one per process, owned by the
//! [`crate::client::Client`], a `dht` thread with one UDP socket on the
//! listen port running the [`engine`] (lookups, announces, our queries in
//! flight, timers) and its `server` part (answers to other nodes, limited
//! per address by [`ratelimit`]); torrents reach it through
//! [`node::DhtHandle`].
//!
//! # Design
//! A DHT node is one thread that owns one UDP socket (the client's listen
//! port number) and everything in this module, so nothing here is shared
//! or locked, and, but for [`node`], nothing here touches a socket, a
//! thread or the clock:
//! time comes in as [`std::time::Instant`] arguments and randomness from
//! seedable [`fastrand::Rng`]s, so each part is tested with a fake clock.
//!
//! | file | owns |
//! |---|---|
//! | [`id`] | [`NodeId`], XOR [`Distance`], bucket index by common prefix, [`NodeInfo`] (id and address) |
//! | [`krpc`] | the wire format: [`Message`] encode and [`decode`], bounded; error replies for bad queries |
//! | [`routing`] | the [`RoutingTable`]: k-buckets, good/questionable/bad, splitting, replacement, refresh |
//! | [`tokens`] | [`TokenSecrets`]: the tokens we give in `get_peers` and check in `announce_peer` |
//! | [`store`] | the [`PeerStore`]: peers announced to us, expiring and bounded |
//! | [`lookup`] | one iterative [`Lookup`] (`get_peers` or `find_node`), alpha queries at a time |
//! | [`state`] | the [`State`] file (our id and good nodes) and where it lives |
//!
//! # What the node thread does with these
//! - **Receiving** a datagram: [`decode`] it. On error, send
//!   [`DecodeError::reply`] if it gives one (203/204 to a query), else drop it.
//!   A query: answer it (`ping` with our id; `find_node` with
//!   [`RoutingTable::closest`]; `get_peers` with [`PeerStore::peers`] as
//!   `values`, or else the closest nodes, and always
//!   [`TokenSecrets::token_for`] the source IP; `announce_peer` after
//!   [`TokenSecrets::check`], then [`PeerStore::announce`] of
//!   [`Query::announced_peer`] (the source IP, with `port` or the source
//!   port); a bad token gets error 203), echoing the transaction id, and
//!   setting [`Message::external_addr`] to the querier's address (BEP 42);
//!   report the querier with
//!   [`RoutingTable::on_query`] (passing [`Message::read_only`]). A response or
//!   error: match its transaction id to a pending query of ours (and its
//!   source address to the one queried); a response goes to
//!   [`RoutingTable::on_response`] and to the lookup that sent it
//!   ([`Lookup::on_response`]), an error or a timeout to
//!   [`RoutingTable::on_failure`] and [`Lookup::on_timeout`].
//! - **Every tick** (say every second): [`Lookup::next_queries`] of each running
//!   lookup, and send them; finish lookups that are [`Lookup::is_done`] (then
//!   `announce_peer` to [`Lookup::announce_targets`] for a torrent we take
//!   part in); ping a few of [`RoutingTable::questionable`] not already pending;
//!   start a `find_node` lookup for each of [`RoutingTable::refresh_targets`];
//!   now and then [`PeerStore::expire`] and [`state::save`].
//! - **At start**: [`state::load`] (a corrupt file is a warning; start with a
//!   random id), [`RoutingTable::import`] the saved nodes, and look up our own
//!   id (`find_node`), from the table or from the bootstrap routers
//!   ([`Lookup::add_router`]), as BEP 5 asks of a node joining.
//!
//! The node thread also owns what is not here: transaction ids and the table
//! of pending queries (bounded, each with a timeout), rate limits per source
//! address, re-announcing every 30 minutes, and handing peers to torrents.

pub mod id;
pub mod krpc;
pub mod lookup;
pub mod routing;
pub mod state;
pub mod store;
pub mod tokens;

pub mod engine;
pub mod node;
pub mod ratelimit;
mod server;

pub use id::{Distance, NodeId, NodeInfo};
pub use krpc::{Body, DecodeError, ErrorReply, Message, Query, Response, TransactionId, decode};
pub use lookup::Lookup;
pub use routing::{Insert, NodeState, RoutingTable};
pub use state::State;
pub use store::PeerStore;
pub use tokens::TokenSecrets;

#[cfg(test)]
mod tests;
