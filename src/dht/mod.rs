//! The Mainline DHT (BEP 5): pure parts.

pub mod id;
pub mod krpc;
pub mod lookup;
pub mod routing;
pub mod state;
pub mod store;
pub mod tokens;
