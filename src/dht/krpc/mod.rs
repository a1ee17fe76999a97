//! KRPC, the DHT's message format (BEP 5, "KRPC Protocol"): bencoded
//! dictionaries in single UDP datagrams, one query, response or error each.
//!
//! In scope: the four queries (`ping`, `find_node`, `get_peers`,
//! `announce_peer` with `implied_port`), the responses to them (`id`,
//! compact `nodes` and `nodes6`, `values`, `token`), errors 201–204, the
//! transaction id echoed byte for byte whatever its length (libtorrent sends 2
//! bytes), the `v` version key, BEP 43's `ro` (read-only) flag and BEP 42's
//! `ip` (the address the responder saw us at). Decoding is bounded: a datagram
//! longer than [`MAX_DATAGRAM_LEN`] is refused before it is parsed, and every
//! string we keep has its own bound. A query we cannot serve decodes to a
//! [`DecodeError`] whose [`DecodeError::reply`] is the error to send back
//! (204 for an unknown method, 203 for a malformed query).
//!
//! Out of scope: which transaction a response answers (the response does not
//! say which query it is for; the node matches it by transaction id) and
//! sockets. Pure code over bytes, in the style of [`crate::bencode`], whose
//! in-place reader it uses.

mod decode;
#[cfg(test)]
mod tests;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

pub use decode::{DecodeError, DecodeErrorKind, decode};

use super::id::{ID_LEN, NodeId, NodeInfo};
use crate::bencode::{put_bytes, put_int};

/// Largest datagram we decode. An unfragmented UDP payload over Ethernet is
/// at most 1,472 bytes (IPv4) and clients keep their messages under that;
/// the margin lets a response with many `values` through, and anything
/// larger is dropped unread.
pub const MAX_DATAGRAM_LEN: usize = 2048;

/// Longest transaction id we accept and echo. BEP 5 suggests 2 bytes
/// (libtorrent's choice); some clients use 4 or 8.
pub const MAX_TID_LEN: usize = 16;

/// Longest `token` we keep from a `get_peers` response (libtorrent's are 4
/// bytes, ours [`super::tokens::TOKEN_LEN`]).
pub const MAX_TOKEN_LEN: usize = 64;

/// Longest `v` (client version) we keep; longer ones are dropped.
pub const MAX_VERSION_LEN: usize = 16;

/// Our `v` key: two letters for the client, then two bytes of version
/// (0.1), the convention libtorrent and others follow.
pub const OUR_VERSION: [u8; 4] = *b"BT\x00\x01";

/// Bytes of one compact IPv4 node (`nodes`): id, address, port.
pub const COMPACT_NODE_LEN: usize = ID_LEN + 6;

/// Bytes of one compact IPv6 node (`nodes6`, BEP 32).
pub const COMPACT_NODE6_LEN: usize = ID_LEN + 18;

/// Error code 201: generic error.
pub const ERROR_GENERIC: i64 = 201;
/// Error code 202: server error.
pub const ERROR_SERVER: i64 = 202;
/// Error code 203: protocol error (malformed packet, invalid arguments, bad token).
pub const ERROR_PROTOCOL: i64 = 203;
/// Error code 204: method unknown.
pub const ERROR_METHOD_UNKNOWN: i64 = 204;

/// A transaction id: 1 to [`MAX_TID_LEN`] opaque bytes chosen by the querier
/// and echoed in the reply. `Copy` and `Hash`, so it can key a table of
/// pending queries.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TransactionId {
    len: u8,
    bytes: [u8; MAX_TID_LEN],
}

impl TransactionId {
    /// The id made of `bytes`, or `None` when they are empty or longer than
    /// [`MAX_TID_LEN`].
    pub fn new(bytes: &[u8]) -> Option<TransactionId> {
        if bytes.is_empty() || bytes.len() > MAX_TID_LEN {
            return None;
        }
        let mut id = TransactionId {
            len: bytes.len() as u8,
            bytes: [0; MAX_TID_LEN],
        };
        id.bytes[..bytes.len()].copy_from_slice(bytes);
        Some(id)
    }

    /// A 2-byte id (big-endian `n`), the length BEP 5 and libtorrent use for
    /// our own queries.
    pub fn from_u16(n: u16) -> TransactionId {
        TransactionId::new(&n.to_be_bytes()).expect("2 bytes is within the bound")
    }

    /// The id's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl fmt::Debug for TransactionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TransactionId(")?;
        for byte in self.as_bytes() {
            write!(f, "{byte:02x}")?;
        }
        write!(f, ")")
    }
}

/// One KRPC message: the keys every message has, and its body.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Message {
    /// `t`: the transaction id, echoed exactly in the reply.
    pub tid: TransactionId,
    /// `v`: the sender's client and version, when given (at most
    /// [`MAX_VERSION_LEN`] bytes; untrusted, escape before printing).
    pub version: Option<Vec<u8>>,
    /// `ro` (BEP 43): the sender is a read-only node, which answers no
    /// queries and so must not enter the routing table.
    pub read_only: bool,
    /// `ip` (BEP 42): in a reply, the address the responder saw the querier at.
    pub external_addr: Option<SocketAddr>,
    /// `y` and what it selects.
    pub body: Body,
}

/// What a message is (`y`: `q`, `r` or `e`).
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Body {
    /// A query (`y` = `q`) with its method and arguments.
    Query(Query),
    /// A response (`y` = `r`).
    Response(Response),
    /// An error (`y` = `e`).
    Error(ErrorReply),
}

/// A query and its arguments (the `q` and `a` keys).
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Query {
    /// `ping`: are you there?
    Ping {
        /// The querier's id.
        id: NodeId,
    },
    /// `find_node`: the nodes you know closest to `target`.
    FindNode {
        /// The querier's id.
        id: NodeId,
        /// The id looked for.
        target: NodeId,
    },
    /// `get_peers`: peers for `info_hash`, or else the closest nodes, and a token.
    GetPeers {
        /// The querier's id.
        id: NodeId,
        /// The torrent's info-hash.
        info_hash: NodeId,
    },
    /// `announce_peer`: the querier is a peer of `info_hash`.
    AnnouncePeer {
        /// The querier's id.
        id: NodeId,
        /// The torrent's info-hash.
        info_hash: NodeId,
        /// The peer's TCP port (meaningless, possibly 0, when `implied_port`).
        port: u16,
        /// `implied_port` = 1: the peer's port is the query's UDP source port
        /// (for peers behind NAT, or on uTP).
        implied_port: bool,
        /// The token our `get_peers` response gave this querier.
        token: Vec<u8>,
    },
}

impl Query {
    /// The querier's id.
    pub fn id(&self) -> NodeId {
        match self {
            Query::Ping { id }
            | Query::FindNode { id, .. }
            | Query::GetPeers { id, .. }
            | Query::AnnouncePeer { id, .. } => *id,
        }
    }

    /// For `announce_peer` received from `from`, the peer to store: the
    /// source IP (never an address the query names) with the announced
    /// port, or the source port when `implied_port` is set. `None` for the
    /// other queries.
    pub fn announced_peer(&self, from: SocketAddr) -> Option<SocketAddr> {
        match self {
            Query::AnnouncePeer {
                port, implied_port, ..
            } => {
                let port = if *implied_port { from.port() } else { *port };
                Some(SocketAddr::new(from.ip(), port))
            }
            _ => None,
        }
    }

    /// The method name on the wire (`q`).
    pub fn method(&self) -> &'static str {
        match self {
            Query::Ping { .. } => "ping",
            Query::FindNode { .. } => "find_node",
            Query::GetPeers { .. } => "get_peers",
            Query::AnnouncePeer { .. } => "announce_peer",
        }
    }
}

/// A response (`r`), whatever query it answers: `id` always, the rest as the
/// query calls for (BEP 5).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Response {
    /// The responder's id.
    pub id: NodeId,
    /// Closest nodes (`find_node`, and `get_peers` without peers): IPv4 ones
    /// travel in `nodes`, IPv6 ones in `nodes6`, both decode into this list.
    pub nodes: Vec<NodeInfo>,
    /// Peers (`get_peers`): compact addresses, 6 bytes (IPv4) or 18 (IPv6).
    /// Encoding does not bound them: send at most
    /// [`crate::dht::store::VALUES_PER_REPLY`], so the datagram stays small.
    pub values: Vec<SocketAddr>,
    /// The token to present in `announce_peer` (`get_peers`).
    pub token: Option<Vec<u8>>,
}

impl Response {
    /// A response carrying only `id` (the answer to `ping` and `announce_peer`).
    pub fn new(id: NodeId) -> Response {
        Response {
            id,
            nodes: Vec::new(),
            values: Vec::new(),
            token: None,
        }
    }
}

/// An error message (`e`: a code and a text).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ErrorReply {
    /// 201 to 204 (see [`ERROR_GENERIC`] and the others); other codes are kept.
    pub code: i64,
    /// The text, decoded lossily (untrusted: escape before printing).
    pub message: String,
}

impl Message {
    /// A query from us, with our version.
    pub fn query(tid: TransactionId, query: Query) -> Message {
        Message::ours(tid, Body::Query(query))
    }

    /// A response from us, with our version.
    pub fn response(tid: TransactionId, response: Response) -> Message {
        Message::ours(tid, Body::Response(response))
    }

    /// An error from us, with our version.
    pub fn error(tid: TransactionId, code: i64, message: &str) -> Message {
        let message = message.to_owned();
        Message::ours(tid, Body::Error(ErrorReply { code, message }))
    }

    fn ours(tid: TransactionId, body: Body) -> Message {
        Message {
            tid,
            version: Some(OUR_VERSION.to_vec()),
            read_only: false,
            external_addr: None,
            body,
        }
    }

    /// The message's bytes: a bencoded dictionary with its keys in sorted
    /// order, as bencode requires.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        out.push(b'd');
        match &self.body {
            Body::Query(query) => {
                put_bytes(&mut out, b"a");
                encode_arguments(query, &mut out);
            }
            Body::Error(error) => {
                put_bytes(&mut out, b"e");
                out.push(b'l');
                put_int(&mut out, error.code);
                put_bytes(&mut out, error.message.as_bytes());
                out.push(b'e');
            }
            Body::Response(_) => {}
        }
        if let Some(addr) = self.external_addr {
            put_bytes(&mut out, b"ip");
            let mut compact = Vec::with_capacity(18);
            put_compact_addr(&addr, &mut compact);
            put_bytes(&mut out, &compact);
        }
        match &self.body {
            Body::Query(query) => {
                put_bytes(&mut out, b"q");
                put_bytes(&mut out, query.method().as_bytes());
            }
            Body::Response(response) => {
                put_bytes(&mut out, b"r");
                encode_response(response, &mut out);
            }
            Body::Error(_) => {}
        }
        if self.read_only {
            put_bytes(&mut out, b"ro");
            put_int(&mut out, 1);
        }
        put_bytes(&mut out, b"t");
        put_bytes(&mut out, self.tid.as_bytes());
        if let Some(version) = &self.version {
            put_bytes(&mut out, b"v");
            put_bytes(&mut out, version);
        }
        put_bytes(&mut out, b"y");
        put_bytes(
            &mut out,
            match self.body {
                Body::Query(_) => b"q",
                Body::Response(_) => b"r",
                Body::Error(_) => b"e",
            },
        );
        out.push(b'e');
        out
    }
}

/// The `a` dictionary; keys in sorted order.
fn encode_arguments(query: &Query, out: &mut Vec<u8>) {
    out.push(b'd');
    put_bytes(out, b"id");
    put_bytes(out, &query.id().0);
    match query {
        Query::Ping { .. } => {}
        Query::FindNode { target, .. } => {
            put_bytes(out, b"target");
            put_bytes(out, &target.0);
        }
        Query::GetPeers { info_hash, .. } => {
            put_bytes(out, b"info_hash");
            put_bytes(out, &info_hash.0);
        }
        Query::AnnouncePeer {
            info_hash,
            port,
            implied_port,
            token,
            ..
        } => {
            if *implied_port {
                put_bytes(out, b"implied_port");
                put_int(out, 1);
            }
            put_bytes(out, b"info_hash");
            put_bytes(out, &info_hash.0);
            put_bytes(out, b"port");
            put_int(out, i64::from(*port));
            put_bytes(out, b"token");
            put_bytes(out, token);
        }
    }
    out.push(b'e');
}

/// The `r` dictionary; keys in sorted order.
fn encode_response(response: &Response, out: &mut Vec<u8>) {
    out.push(b'd');
    put_bytes(out, b"id");
    put_bytes(out, &response.id.0);
    let (mut nodes, mut nodes6) = (Vec::new(), Vec::new());
    for node in &response.nodes {
        match node.addr {
            SocketAddr::V4(_) => put_compact_node(node, &mut nodes),
            SocketAddr::V6(_) => put_compact_node(node, &mut nodes6),
        }
    }
    if !nodes.is_empty() {
        put_bytes(out, b"nodes");
        put_bytes(out, &nodes);
    }
    if !nodes6.is_empty() {
        put_bytes(out, b"nodes6");
        put_bytes(out, &nodes6);
    }
    if let Some(token) = &response.token {
        put_bytes(out, b"token");
        put_bytes(out, token);
    }
    if !response.values.is_empty() {
        put_bytes(out, b"values");
        out.push(b'l');
        let mut compact = Vec::with_capacity(18);
        for peer in &response.values {
            compact.clear();
            put_compact_addr(peer, &mut compact);
            put_bytes(out, &compact);
        }
        out.push(b'e');
    }
    out.push(b'e');
}

/// Appends the compact form of `addr`: 4 or 16 address bytes, then the port
/// big-endian (BEP 5 "Contact Encoding", BEP 32 for IPv6).
pub fn put_compact_addr(addr: &SocketAddr, out: &mut Vec<u8>) {
    match addr.ip() {
        IpAddr::V4(ip) => out.extend_from_slice(&ip.octets()),
        IpAddr::V6(ip) => out.extend_from_slice(&ip.octets()),
    }
    out.extend_from_slice(&addr.port().to_be_bytes());
}

/// The address in a compact form of 6 (IPv4) or 18 (IPv6) bytes; `None` for
/// any other length.
pub fn compact_addr(bytes: &[u8]) -> Option<SocketAddr> {
    let port = |b: &[u8]| u16::from_be_bytes([b[0], b[1]]);
    match bytes.len() {
        6 => {
            let ip: [u8; 4] = bytes[..4].try_into().ok()?;
            Some(SocketAddr::new(
                Ipv4Addr::from(ip).into(),
                port(&bytes[4..]),
            ))
        }
        18 => {
            let ip: [u8; 16] = bytes[..16].try_into().ok()?;
            Some(SocketAddr::new(
                Ipv6Addr::from(ip).into(),
                port(&bytes[16..]),
            ))
        }
        _ => None,
    }
}

/// Appends the compact form of a node: its id, then its compact address
/// (26 bytes for IPv4, 38 for IPv6).
pub fn put_compact_node(node: &NodeInfo, out: &mut Vec<u8>) {
    out.extend_from_slice(&node.id.0);
    put_compact_addr(&node.addr, out);
}

/// The nodes in a string of compact nodes of `entry_len` bytes each
/// ([`COMPACT_NODE_LEN`] or [`COMPACT_NODE6_LEN`]); `None` when the string
/// is not a whole number of entries.
pub fn compact_nodes(bytes: &[u8], entry_len: usize) -> Option<Vec<NodeInfo>> {
    if entry_len <= ID_LEN || !bytes.len().is_multiple_of(entry_len) {
        return None;
    }
    bytes
        .chunks_exact(entry_len)
        .map(|entry| {
            Some(NodeInfo {
                id: NodeId::from_slice(&entry[..ID_LEN])?,
                addr: compact_addr(&entry[ID_LEN..])?,
            })
        })
        .collect()
}
