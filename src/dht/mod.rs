//! The Mainline DHT (BEP 5): pure parts.
//!
//! Around them, the node ([`node`]): one per process, owned by the
//! [`crate::client::Client`], a `dht` thread with one UDP socket on the
//! listen port running the [`engine`] (lookups, announces, our queries in
//! flight, timers) and its `server` part (answers to other nodes, limited
//! per address by [`ratelimit`]); torrents reach it through
//! [`node::DhtHandle`].

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
