//! Decoding a datagram into a [`Message`], bounded and without panics.

use std::fmt;

use super::{
    Body, COMPACT_NODE_LEN, COMPACT_NODE6_LEN, ERROR_METHOD_UNKNOWN, ERROR_PROTOCOL, ErrorReply,
    MAX_DATAGRAM_LEN, MAX_TOKEN_LEN, MAX_VERSION_LEN, Message, Query, Response, TransactionId,
    compact_addr, compact_nodes,
};
use crate::bencode::{self, BencodeError, Entry, as_bytes, as_int, dict_entries, list_items};
use crate::dht::id::NodeId;
use crate::untrusted::show_bytes;

/// Why a datagram is not a KRPC message we can use.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct DecodeError {
    /// What was wrong.
    pub kind: DecodeErrorKind,
    /// The transaction id, when it could be read.
    pub tid: Option<TransactionId>,
    /// Whether the datagram was a query (`y` = `q`), so that it deserves an
    /// error reply.
    pub in_query: bool,
}

/// What was wrong with a datagram.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum DecodeErrorKind {
    /// Longer than [`MAX_DATAGRAM_LEN`]; not parsed.
    TooLarge(usize),
    /// Not one well-formed bencoded dictionary.
    Bencode(BencodeError),
    /// A key the message needs is missing.
    Missing(&'static str),
    /// A key holds a value of the wrong type, length or range.
    Invalid(&'static str),
    /// `y` is not `q`, `r` or `e`.
    UnknownType,
    /// A query whose method we do not know (its name, escaped for printing).
    UnknownMethod(String),
}

impl DecodeError {
    fn new(kind: DecodeErrorKind) -> DecodeError {
        DecodeError {
            kind,
            tid: None,
            in_query: false,
        }
    }

    /// The error message to send back: 204 for an unknown method, 203 for any
    /// other fault in a query whose transaction id could be read. `None` for
    /// responses and errors (never answered) and for datagrams without a
    /// usable transaction id.
    pub fn reply(&self) -> Option<Message> {
        let tid = self.tid.filter(|_| self.in_query)?;
        Some(match &self.kind {
            DecodeErrorKind::UnknownMethod(_) => {
                Message::error(tid, ERROR_METHOD_UNKNOWN, "Method Unknown")
            }
            _ => Message::error(tid, ERROR_PROTOCOL, "Protocol Error"),
        })
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            DecodeErrorKind::TooLarge(len) => {
                write!(f, "datagram of {len} bytes exceeds {MAX_DATAGRAM_LEN}")
            }
            DecodeErrorKind::Bencode(e) => write!(f, "not a bencoded dictionary: {e}"),
            DecodeErrorKind::Missing(key) => write!(f, "missing key {key}"),
            DecodeErrorKind::Invalid(key) => write!(f, "invalid value for key {key}"),
            DecodeErrorKind::UnknownType => write!(f, "unknown message type"),
            DecodeErrorKind::UnknownMethod(m) => write!(f, "unknown query method {m}"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// A dictionary read in place: its bytes and entries.
struct Dict<'a> {
    bytes: &'a [u8],
    entries: Vec<Entry<'a>>,
}

impl<'a> Dict<'a> {
    fn at(bytes: &'a [u8], pos: usize) -> Result<(Dict<'a>, usize), BencodeError> {
        let (entries, end) = dict_entries(bytes, pos, bencode::MAX_DEPTH)?;
        Ok((Dict { bytes, entries }, end))
    }

    /// The raw value under `key` (the first one, when repeated).
    fn raw(&self, key: &str) -> Option<&'a [u8]> {
        let bytes = self.bytes;
        self.entries
            .iter()
            .find(|(k, _)| *k == key.as_bytes())
            .map(|(_, range)| &bytes[range.clone()])
    }

    fn string(&self, key: &'static str) -> Result<Option<&'a [u8]>, DecodeErrorKind> {
        self.raw(key)
            .map(|v| as_bytes(v).ok_or(DecodeErrorKind::Invalid(key)))
            .transpose()
    }

    fn int(&self, key: &'static str) -> Result<Option<i64>, DecodeErrorKind> {
        self.raw(key)
            .map(|v| as_int(v).ok_or(DecodeErrorKind::Invalid(key)))
            .transpose()
    }

    fn id(&self, key: &'static str) -> Result<NodeId, DecodeErrorKind> {
        let bytes = self.string(key)?.ok_or(DecodeErrorKind::Missing(key))?;
        NodeId::from_slice(bytes).ok_or(DecodeErrorKind::Invalid(key))
    }

    fn dict(&self, key: &'static str) -> Result<Dict<'a>, DecodeErrorKind> {
        let value = self.raw(key).ok_or(DecodeErrorKind::Missing(key))?;
        match Dict::at(value, 0) {
            Ok((dict, _)) => Ok(dict),
            Err(_) => Err(DecodeErrorKind::Invalid(key)),
        }
    }
}

/// Decodes one datagram.
///
/// # Errors
/// A [`DecodeError`] saying what was wrong, with the transaction id when it
/// could be read; [`DecodeError::reply`] gives the error to answer with.
/// Oversized datagrams are refused before any parsing.
pub fn decode(datagram: &[u8]) -> Result<Message, DecodeError> {
    if datagram.len() > MAX_DATAGRAM_LEN {
        return Err(DecodeError::new(DecodeErrorKind::TooLarge(datagram.len())));
    }
    let (top, end) =
        Dict::at(datagram, 0).map_err(|e| DecodeError::new(DecodeErrorKind::Bencode(e)))?;
    if end != datagram.len() {
        let trailing = BencodeError {
            pos: end,
            what: "trailing bytes after dictionary",
        };
        return Err(DecodeError::new(DecodeErrorKind::Bencode(trailing)));
    }
    let tid = top
        .string("t")
        .map_err(DecodeError::new)?
        .ok_or(DecodeError::new(DecodeErrorKind::Missing("t")))?;
    let tid = TransactionId::new(tid).ok_or(DecodeError::new(DecodeErrorKind::Invalid("t")))?;
    let kind = top.string("y");
    let in_query = matches!(kind, Ok(Some(b"q")));
    let fail = |kind| DecodeError {
        kind,
        tid: Some(tid),
        in_query,
    };
    let body = match kind
        .map_err(fail)?
        .ok_or(fail(DecodeErrorKind::Missing("y")))?
    {
        b"q" => Body::Query(decode_query(&top).map_err(fail)?),
        b"r" => Body::Response(decode_response(&top.dict("r").map_err(fail)?).map_err(fail)?),
        b"e" => Body::Error(decode_error(&top).map_err(fail)?),
        _ => return Err(fail(DecodeErrorKind::UnknownType)),
    };
    // The optional keys are read leniently: a bad one is ignored, not fatal.
    let version = top
        .string("v")
        .ok()
        .flatten()
        .filter(|v| v.len() <= MAX_VERSION_LEN)
        .map(<[u8]>::to_vec);
    let read_only = top.int("ro").ok().flatten() == Some(1);
    let external_addr = top.string("ip").ok().flatten().and_then(compact_addr);
    Ok(Message {
        tid,
        version,
        read_only,
        external_addr,
        body,
    })
}

fn decode_query(top: &Dict<'_>) -> Result<Query, DecodeErrorKind> {
    let method = top.string("q")?.ok_or(DecodeErrorKind::Missing("q"))?;
    if !matches!(
        method,
        b"ping" | b"find_node" | b"get_peers" | b"announce_peer"
    ) {
        return Err(DecodeErrorKind::UnknownMethod(show_bytes(
            &method[..method.len().min(32)],
        )));
    }
    let args = top.dict("a")?;
    let id = args.id("id")?;
    Ok(match method {
        b"ping" => Query::Ping { id },
        b"find_node" => Query::FindNode {
            id,
            target: args.id("target")?,
        },
        b"get_peers" => Query::GetPeers {
            id,
            info_hash: args.id("info_hash")?,
        },
        _ => {
            let implied_port = args.int("implied_port")? == Some(1);
            let port = args.int("port")?;
            let port = match (port.map(u16::try_from), implied_port) {
                (Some(Ok(port)), _) if port != 0 || implied_port => port,
                // The port is not used when it is implied, so any value will do.
                (_, true) => 0,
                (None, false) => return Err(DecodeErrorKind::Missing("port")),
                (Some(_), false) => return Err(DecodeErrorKind::Invalid("port")),
            };
            let token = args
                .string("token")?
                .ok_or(DecodeErrorKind::Missing("token"))?;
            if token.len() > MAX_TOKEN_LEN {
                return Err(DecodeErrorKind::Invalid("token"));
            }
            Query::AnnouncePeer {
                id,
                info_hash: args.id("info_hash")?,
                port,
                implied_port,
                token: token.to_vec(),
            }
        }
    })
}

fn decode_response(r: &Dict<'_>) -> Result<Response, DecodeErrorKind> {
    let id = r.id("id")?;
    let mut nodes = Vec::new();
    for (key, entry_len) in [("nodes", COMPACT_NODE_LEN), ("nodes6", COMPACT_NODE6_LEN)] {
        if let Some(compact) = r.string(key)? {
            nodes.extend(compact_nodes(compact, entry_len).ok_or(DecodeErrorKind::Invalid(key))?);
        }
    }
    let mut values = Vec::new();
    if let Some(list) = r.raw("values") {
        let (items, _) = list_items(list, 0).map_err(|_| DecodeErrorKind::Invalid("values"))?;
        // The datagram's bound caps the count (each item takes at least 8 bytes).
        for item in items {
            let peer = as_bytes(&list[item]).ok_or(DecodeErrorKind::Invalid("values"))?;
            // Like other clients, skip an entry of a length we do not know.
            values.extend(compact_addr(peer));
        }
    }
    let token = match r.string("token")? {
        Some(token) if token.len() > MAX_TOKEN_LEN => {
            return Err(DecodeErrorKind::Invalid("token"));
        }
        token => token.map(<[u8]>::to_vec),
    };
    Ok(Response {
        id,
        nodes,
        values,
        token,
    })
}

fn decode_error(top: &Dict<'_>) -> Result<ErrorReply, DecodeErrorKind> {
    let list = top.raw("e").ok_or(DecodeErrorKind::Missing("e"))?;
    let (items, _) = list_items(list, 0).map_err(|_| DecodeErrorKind::Invalid("e"))?;
    let code = items
        .first()
        .and_then(|item| as_int(&list[item.clone()]))
        .ok_or(DecodeErrorKind::Invalid("e"))?;
    let message = items
        .get(1)
        .and_then(|item| as_bytes(&list[item.clone()]))
        .map(|text| String::from_utf8_lossy(text).into_owned())
        .unwrap_or_default();
    Ok(ErrorReply { code, message })
}
