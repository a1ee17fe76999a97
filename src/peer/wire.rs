//! The peer wire protocol's bytes (BEP 3 "peer protocol"): the handshake and
//! the length-prefixed messages, including BEP 10's `extended` message (whose
//! payloads are [`crate::peer::ext`]'s business).
//!
//! In scope: encoding into a `Vec<u8>` and decoding from a `&[u8]`, with every
//! length checked against its bound before anything is allocated. Out of scope:
//! sockets, timing and what a message means for the session (see
//! [`crate::peer::conn`]). Pure code: no I/O.

use std::fmt;

use crate::layout::BLOCK_LEN;
use crate::metainfo::InfoHash;

/// The 20-byte identity a client announces for itself.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerId(pub [u8; 20]);

impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "PeerId({})",
            String::from_utf8_lossy(&self.0).escape_debug()
        )
    }
}

/// Length of a handshake on the wire.
pub const HANDSHAKE_LEN: usize = 68;
/// BEP 10: the reserved bit that says the sender speaks the extension
/// protocol (`reserved[5] & 0x10`), as a mask over the 8 reserved bytes.
pub const RESERVED_EXTENSION_PROTOCOL: [u8; 8] = [0, 0, 0, 0, 0, 0x10, 0, 0];
/// BEP 5: the reserved bit that says the sender runs a DHT node and takes
/// the `port` message (`reserved[7] & 0x01`), as a mask over the 8 bytes.
pub const RESERVED_DHT: [u8; 8] = [0, 0, 0, 0, 0, 0, 0, 0x01];
const PROTOCOL: &[u8; 19] = b"BitTorrent protocol";

/// The opening message of every connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handshake {
    /// Extension bits (see [`RESERVED_EXTENSION_PROTOCOL`] and [`RESERVED_DHT`]).
    pub reserved: [u8; 8],
    /// The torrent this connection is about.
    pub info_hash: InfoHash,
    /// The sender's peer id.
    pub peer_id: PeerId,
}

impl Handshake {
    /// Our handshake: it sets the BEP 10 bit, since we always speak the
    /// extension protocol, and no other.
    pub fn new(info_hash: InfoHash, peer_id: PeerId) -> Handshake {
        Handshake {
            reserved: RESERVED_EXTENSION_PROTOCOL,
            info_hash,
            peer_id,
        }
    }

    /// This handshake with the DHT bit (BEP 5) set, when `dht` is true: we
    /// run a DHT node and will send our `port` message.
    pub fn with_dht(mut self, dht: bool) -> Handshake {
        if dht {
            self.reserved[7] |= RESERVED_DHT[7];
        }
        self
    }

    /// Whether the sender runs a DHT node (BEP 5): only then is our `port`
    /// message sent to it.
    pub fn supports_dht(&self) -> bool {
        self.reserved[7] & RESERVED_DHT[7] != 0
    }

    /// Whether the sender speaks the extension protocol (BEP 10): only then
    /// may `extended` messages be sent to it.
    pub fn supports_extensions(&self) -> bool {
        self.reserved[5] & RESERVED_EXTENSION_PROTOCOL[5] != 0
    }

    /// The 68 bytes of this handshake.
    pub fn encode(&self) -> [u8; HANDSHAKE_LEN] {
        let mut out = [0u8; HANDSHAKE_LEN];
        out[0] = 19;
        out[1..20].copy_from_slice(PROTOCOL);
        out[20..28].copy_from_slice(&self.reserved);
        out[28..48].copy_from_slice(&self.info_hash.0);
        out[48..68].copy_from_slice(&self.peer_id.0);
        out
    }

    /// Decodes a handshake from exactly its 68 bytes.
    ///
    /// # Errors
    /// [`WireError::NotBitTorrent`] when the protocol string is not BitTorrent's.
    pub fn decode(bytes: &[u8; HANDSHAKE_LEN]) -> Result<Handshake, WireError> {
        if bytes[0] != 19 || &bytes[1..20] != PROTOCOL {
            return Err(WireError::NotBitTorrent);
        }
        let mut reserved = [0; 8];
        reserved.copy_from_slice(&bytes[20..28]);
        let mut info_hash = [0; 20];
        info_hash.copy_from_slice(&bytes[28..48]);
        let mut peer_id = [0; 20];
        peer_id.copy_from_slice(&bytes[48..68]);
        Ok(Handshake {
            reserved,
            info_hash: InfoHash(info_hash),
            peer_id: PeerId(peer_id),
        })
    }
}

/// One peer message. Payloads borrow from the decode buffer, so a block is
/// copied only once, into the piece it belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    /// Length 0: "still here".
    KeepAlive,
    /// The sender will not answer our requests.
    Choke,
    /// The sender will answer our requests.
    Unchoke,
    /// The sender wants pieces we have.
    Interested,
    /// The sender wants nothing from us.
    NotInterested,
    /// The sender now has piece `index`.
    Have(u32),
    /// Which pieces the sender has, high bit of the first byte for piece 0.
    Bitfield(&'a [u8]),
    /// Please send `length` bytes of piece `index` from `begin`.
    Request {
        /// Piece index.
        index: u32,
        /// Offset in the piece.
        begin: u32,
        /// Bytes wanted.
        length: u32,
    },
    /// A block of piece `index` starting at `begin`.
    Piece {
        /// Piece index.
        index: u32,
        /// Offset in the piece.
        begin: u32,
        /// The data.
        block: &'a [u8],
    },
    /// Withdraws an earlier request.
    Cancel {
        /// Piece index.
        index: u32,
        /// Offset in the piece.
        begin: u32,
        /// Bytes wanted.
        length: u32,
    },
    /// The sender's DHT port (BEP 5); decoded so it is not mistaken for an error.
    Port(u16),
    /// BEP 10's `extended` message (id 20), whose payload
    /// [`crate::peer::ext`] decodes.
    Extended {
        /// The extended message id: 0 for the extension handshake, else the
        /// id the receiver asked for in its handshake.
        id: u8,
        /// The payload after the extended message id.
        payload: &'a [u8],
    },
    /// A message id we do not implement, carried so later extensions can use it.
    Unknown {
        /// Message id.
        id: u8,
        /// Payload after the id.
        payload: &'a [u8],
    },
}

/// Why bytes from a peer are not a valid message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireError {
    /// The handshake did not name the BitTorrent protocol.
    NotBitTorrent,
    /// A length prefix above the largest message this torrent allows.
    TooLong {
        /// The length the peer announced.
        length: u32,
        /// The largest we accept.
        max: u32,
    },
    /// A known message with the wrong payload length.
    BadLength {
        /// Message id.
        id: u8,
        /// Its length prefix.
        length: u32,
    },
    /// A bitfield whose spare trailing bits are set.
    BitfieldSpareBits,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::NotBitTorrent => f.write_str("handshake is not the BitTorrent protocol"),
            WireError::TooLong { length, max } => {
                write!(f, "message length {length} exceeds the limit of {max}")
            }
            WireError::BadLength { id, length } => {
                write!(f, "message id {id} with invalid length {length}")
            }
            WireError::BitfieldSpareBits => f.write_str("bitfield has spare bits set"),
        }
    }
}

impl std::error::Error for WireError {}

impl fmt::Display for Message<'_> {
    /// The message as the wire trace (`-vvv`) shows it, in BEP 3's words:
    /// `request piece 12 begin 32768 length 16384`, `piece 12 begin 32768
    /// length 16384`, `have 7`, `bitfield 3 of 16 pieces`. Payloads are
    /// never printed, only their sizes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Message::KeepAlive => f.write_str("keep-alive"),
            Message::Choke => f.write_str("choke"),
            Message::Unchoke => f.write_str("unchoke"),
            Message::Interested => f.write_str("interested"),
            Message::NotInterested => f.write_str("not interested"),
            Message::Have(index) => write!(f, "have {index}"),
            Message::Bitfield(bits) => {
                let had: u32 = bits.iter().map(|b| b.count_ones()).sum();
                write!(f, "bitfield {had} of {} pieces", bits.len() * 8)
            }
            Message::Request {
                index,
                begin,
                length,
            } => write!(f, "request piece {index} begin {begin} length {length}"),
            Message::Piece {
                index,
                begin,
                block,
            } => write!(f, "piece {index} begin {begin} length {}", block.len()),
            Message::Cancel {
                index,
                begin,
                length,
            } => write!(f, "cancel piece {index} begin {begin} length {length}"),
            Message::Port(port) => write!(f, "port {port}"),
            Message::Extended { id: 0, payload } => {
                write!(f, "extended handshake ({} bytes)", payload.len())
            }
            Message::Extended { id, payload } => {
                write!(f, "extended message {id} ({} bytes)", payload.len())
            }
            Message::Unknown { id, payload } => {
                write!(f, "unknown message {id} ({} bytes)", payload.len())
            }
        }
    }
}

/// Message ids from BEP 3 (and BEP 5's `port`, BEP 10's `extended`).
mod id {
    pub const CHOKE: u8 = 0;
    pub const UNCHOKE: u8 = 1;
    pub const INTERESTED: u8 = 2;
    pub const NOT_INTERESTED: u8 = 3;
    pub const HAVE: u8 = 4;
    pub const BITFIELD: u8 = 5;
    pub const REQUEST: u8 = 6;
    pub const PIECE: u8 = 7;
    pub const CANCEL: u8 = 8;
    pub const PORT: u8 = 9;
    pub const EXTENDED: u8 = 20;
}

/// Length of a piece message's header: 4-byte length, id, index, begin.
pub const PIECE_HEADER_LEN: usize = 13;

/// The longest bitfield accepted before the piece count is known: 256 KiB,
/// enough for 2,097,152 pieces.
pub const MAX_UNKNOWN_BITFIELD_LEN: u32 = 256 * 1024;

/// The longest bencoded header a BEP 9 `data` message may carry before its
/// 16 KiB of metadata; real ones are under 60 bytes.
pub const MAX_METADATA_HEADER_LEN: u32 = 1024;

/// Size limits for decoding, derived from the torrent when it is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Number of pieces, which fixes the exact bitfield length; `None` while
    /// the metadata is being fetched.
    piece_count: Option<u32>,
}

impl Limits {
    /// Limits for a torrent of `piece_count` pieces: a bitfield must have
    /// exactly its length, and its spare trailing bits must be zero.
    pub const fn for_pieces(piece_count: u32) -> Limits {
        Limits {
            piece_count: Some(piece_count),
        }
    }

    /// Limits for a connection that does not know the piece count yet (the
    /// metadata is not fetched): a bitfield of any length up to
    /// [`MAX_UNKNOWN_BITFIELD_LEN`] is accepted, and its spare bits are not
    /// checked. The caller checks them once it knows the piece count.
    pub const fn unknown_pieces() -> Limits {
        Limits { piece_count: None }
    }

    /// The piece count these limits check bitfields against, if known.
    pub fn piece_count(&self) -> Option<u32> {
        self.piece_count
    }

    /// The largest bitfield payload accepted.
    fn max_bitfield_len(&self) -> u32 {
        match self.piece_count {
            Some(count) => count.div_ceil(8),
            None => MAX_UNKNOWN_BITFIELD_LEN,
        }
    }

    /// The largest length prefix accepted: a bitfield, a 16 KiB piece
    /// message, or a BEP 9 `data` message (id, extended id, a header of up to
    /// [`MAX_METADATA_HEADER_LEN`] and 16 KiB of metadata), whichever is
    /// largest.
    pub fn max_message_len(&self) -> u32 {
        let bitfield = 1 + self.max_bitfield_len();
        let piece = 9 + BLOCK_LEN;
        let metadata = 2 + MAX_METADATA_HEADER_LEN + BLOCK_LEN;
        bitfield.max(piece).max(metadata)
    }
}

impl Message<'_> {
    /// Appends this message, with its length prefix, to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match *self {
            Message::KeepAlive => out.extend_from_slice(&0u32.to_be_bytes()),
            Message::Choke => simple(out, id::CHOKE),
            Message::Unchoke => simple(out, id::UNCHOKE),
            Message::Interested => simple(out, id::INTERESTED),
            Message::NotInterested => simple(out, id::NOT_INTERESTED),
            Message::Have(index) => {
                header(out, id::HAVE, 4);
                out.extend_from_slice(&index.to_be_bytes());
            }
            Message::Bitfield(bits) => {
                header(out, id::BITFIELD, bits.len());
                out.extend_from_slice(bits);
            }
            Message::Request {
                index,
                begin,
                length,
            } => triple(out, id::REQUEST, index, begin, length),
            Message::Piece {
                index,
                begin,
                block,
            } => {
                encode_piece_header(out, index, begin, block.len() as u32);
                out.extend_from_slice(block);
            }
            Message::Cancel {
                index,
                begin,
                length,
            } => triple(out, id::CANCEL, index, begin, length),
            Message::Port(port) => {
                header(out, id::PORT, 2);
                out.extend_from_slice(&port.to_be_bytes());
            }
            Message::Extended { id, payload } => {
                header(out, id::EXTENDED, 1 + payload.len());
                out.push(id);
                out.extend_from_slice(payload);
            }
            Message::Unknown { id, payload } => {
                header(out, id, payload.len());
                out.extend_from_slice(payload);
            }
        }
    }

    /// Decodes the message at the start of `buf`.
    ///
    /// Returns `Ok(None)` when more bytes are needed, or the message and the
    /// number of bytes it used. The length prefix is checked against `limits`
    /// before anything else, so a hostile length never causes an allocation.
    ///
    /// A message is judged only once all its bytes are in `buf`: a piece
    /// message carries at most 16 KiB, an `extended` message at least its
    /// extended id byte.
    ///
    /// # Errors
    /// [`WireError`] when the message is too long or malformed.
    pub fn decode(buf: &[u8], limits: Limits) -> Result<Option<(Message<'_>, usize)>, WireError> {
        let Some(prefix) = buf.get(..4) else {
            return Ok(None);
        };
        let length = u32::from_be_bytes(prefix.try_into().expect("4 bytes"));
        let max = limits.max_message_len();
        if length > max {
            return Err(WireError::TooLong { length, max });
        }
        let total = 4 + length as usize;
        let Some(body) = buf.get(4..total) else {
            return Ok(None);
        };
        let Some((&id, payload)) = body.split_first() else {
            return Ok(Some((Message::KeepAlive, 4)));
        };
        let bad = || WireError::BadLength { id, length };
        let u32_at =
            |at: usize| u32::from_be_bytes(payload[at..at + 4].try_into().expect("4 bytes"));
        let message = match id {
            id::CHOKE | id::UNCHOKE | id::INTERESTED | id::NOT_INTERESTED => {
                if !payload.is_empty() {
                    return Err(bad());
                }
                match id {
                    id::CHOKE => Message::Choke,
                    id::UNCHOKE => Message::Unchoke,
                    id::INTERESTED => Message::Interested,
                    _ => Message::NotInterested,
                }
            }
            id::HAVE if payload.len() == 4 => Message::Have(u32_at(0)),
            id::BITFIELD => {
                let max = limits.max_bitfield_len() as usize;
                let Some(piece_count) = limits.piece_count else {
                    if payload.len() > max {
                        return Err(bad());
                    }
                    return Ok(Some((Message::Bitfield(payload), total)));
                };
                if payload.len() != max {
                    return Err(bad());
                }
                let spare = payload.len() * 8 - piece_count as usize;
                if spare > 0 && payload[payload.len() - 1] & ((1u8 << spare) - 1) != 0 {
                    return Err(WireError::BitfieldSpareBits);
                }
                Message::Bitfield(payload)
            }
            id::REQUEST if payload.len() == 12 => Message::Request {
                index: u32_at(0),
                begin: u32_at(4),
                length: u32_at(8),
            },
            id::PIECE if (8..=8 + BLOCK_LEN as usize).contains(&payload.len()) => Message::Piece {
                index: u32_at(0),
                begin: u32_at(4),
                block: &payload[8..],
            },
            id::CANCEL if payload.len() == 12 => Message::Cancel {
                index: u32_at(0),
                begin: u32_at(4),
                length: u32_at(8),
            },
            id::PORT if payload.len() == 2 => {
                Message::Port(u16::from_be_bytes([payload[0], payload[1]]))
            }
            id::EXTENDED => match payload.split_first() {
                Some((&id, payload)) => Message::Extended { id, payload },
                None => return Err(bad()),
            },
            id::HAVE | id::REQUEST | id::PIECE | id::CANCEL | id::PORT => return Err(bad()),
            _ => Message::Unknown { id, payload },
        };
        Ok(Some((message, total)))
    }
}

/// Appends the 13-byte header of a piece message carrying `block_len` bytes,
/// so the caller can read the block from disk straight after it.
pub fn encode_piece_header(out: &mut Vec<u8>, index: u32, begin: u32, block_len: u32) {
    header(out, id::PIECE, 8 + block_len as usize);
    out.extend_from_slice(&index.to_be_bytes());
    out.extend_from_slice(&begin.to_be_bytes());
}

fn header(out: &mut Vec<u8>, id: u8, payload_len: usize) {
    out.extend_from_slice(&(1 + payload_len as u32).to_be_bytes());
    out.push(id);
}

fn simple(out: &mut Vec<u8>, id: u8) {
    header(out, id, 0);
}

fn triple(out: &mut Vec<u8>, id: u8, a: u32, b: u32, c: u32) {
    header(out, id, 12);
    for v in [a, b, c] {
        out.extend_from_slice(&v.to_be_bytes());
    }
}

#[cfg(test)]
mod tests;
