//! The peer wire protocol's bytes (BEP 3 "peer protocol"): the handshake and
//! the length-prefixed messages.
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
const PROTOCOL: &[u8; 19] = b"BitTorrent protocol";

/// The opening message of every connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handshake {
    /// Extension bits; we set none yet.
    pub reserved: [u8; 8],
    /// The torrent this connection is about.
    pub info_hash: InfoHash,
    /// The sender's peer id.
    pub peer_id: PeerId,
}

impl Handshake {
    /// A handshake with no extension bits.
    pub fn new(info_hash: InfoHash, peer_id: PeerId) -> Handshake {
        Handshake {
            reserved: [0; 8],
            info_hash,
            peer_id,
        }
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

/// Message ids from BEP 3 (and BEP 5's `port`).
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
}

/// Length of a piece message's header: 4-byte length, id, index, begin.
pub const PIECE_HEADER_LEN: usize = 13;

/// Size limits for decoding, derived from the torrent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Number of pieces: fixes the exact bitfield length.
    pub piece_count: u32,
}

impl Limits {
    fn bitfield_len(&self) -> usize {
        (self.piece_count as usize).div_ceil(8)
    }

    /// The largest length prefix accepted: a bitfield or a 16 KiB piece
    /// message, whichever is larger, plus room for small extension messages.
    pub fn max_message_len(&self) -> u32 {
        let bitfield = 1 + self.bitfield_len() as u32;
        let piece = 9 + BLOCK_LEN;
        bitfield.max(piece)
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
                if payload.len() != limits.bitfield_len() {
                    return Err(bad());
                }
                let spare = payload.len() * 8 - limits.piece_count as usize;
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
            id::PIECE if payload.len() >= 8 => Message::Piece {
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
mod tests {
    use super::*;

    const LIMITS: Limits = Limits { piece_count: 12 };

    fn encoded(m: &Message) -> Vec<u8> {
        let mut out = Vec::new();
        m.encode(&mut out);
        out
    }

    /// Every message with its exact bytes from BEP 3.
    fn examples() -> Vec<(Message<'static>, Vec<u8>)> {
        vec![
            (Message::KeepAlive, vec![0, 0, 0, 0]),
            (Message::Choke, vec![0, 0, 0, 1, 0]),
            (Message::Unchoke, vec![0, 0, 0, 1, 1]),
            (Message::Interested, vec![0, 0, 0, 1, 2]),
            (Message::NotInterested, vec![0, 0, 0, 1, 3]),
            (Message::Have(258), vec![0, 0, 0, 5, 4, 0, 0, 1, 2]),
            (
                Message::Bitfield(&[0b1010_0000, 0b0001_0000]),
                vec![0, 0, 0, 3, 5, 0xa0, 0x10],
            ),
            (
                Message::Request {
                    index: 1,
                    begin: 16384,
                    length: 16384,
                },
                vec![0, 0, 0, 13, 6, 0, 0, 0, 1, 0, 0, 0x40, 0, 0, 0, 0x40, 0],
            ),
            (
                Message::Piece {
                    index: 2,
                    begin: 0,
                    block: b"abc",
                },
                vec![0, 0, 0, 12, 7, 0, 0, 0, 2, 0, 0, 0, 0, b'a', b'b', b'c'],
            ),
            (
                Message::Cancel {
                    index: 1,
                    begin: 0,
                    length: 5,
                },
                vec![0, 0, 0, 13, 8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 5],
            ),
            (Message::Port(6881), vec![0, 0, 0, 3, 9, 0x1a, 0xe1]),
            (
                Message::Unknown {
                    id: 20,
                    payload: b"x",
                },
                vec![0, 0, 0, 2, 20, b'x'],
            ),
        ]
    }

    #[test]
    fn every_message_encodes_to_its_spec_bytes_and_decodes_back() {
        for (message, bytes) in examples() {
            assert_eq!(encoded(&message), bytes, "{message:?}");
            let (decoded, used) = Message::decode(&bytes, LIMITS).unwrap().unwrap();
            assert_eq!(decoded, message);
            assert_eq!(used, bytes.len());
        }
    }

    #[test]
    fn decoding_at_every_split_point_needs_more_bytes_until_complete() {
        for (message, bytes) in examples() {
            for cut in 0..bytes.len() {
                assert_eq!(
                    Message::decode(&bytes[..cut], LIMITS),
                    Ok(None),
                    "{message:?} cut {cut}"
                );
            }
        }
    }

    #[test]
    fn decode_uses_only_its_own_bytes_of_a_stream() {
        let mut stream = encoded(&Message::Have(7));
        stream.extend(encoded(&Message::Unchoke));
        let (first, used) = Message::decode(&stream, LIMITS).unwrap().unwrap();
        assert_eq!(first, Message::Have(7));
        let (second, _) = Message::decode(&stream[used..], LIMITS).unwrap().unwrap();
        assert_eq!(second, Message::Unchoke);
    }

    #[test]
    fn huge_length_prefix_is_error_before_the_body_arrives() {
        let bytes = [0x80, 0, 0, 0];
        assert_eq!(
            Message::decode(&bytes, LIMITS),
            Err(WireError::TooLong {
                length: 0x8000_0000,
                max: 9 + BLOCK_LEN
            })
        );
    }

    #[test]
    fn piece_larger_than_a_block_is_error() {
        let mut bytes = Vec::new();
        encode_piece_header(&mut bytes, 0, 0, BLOCK_LEN + 1);
        assert!(matches!(
            Message::decode(&bytes, LIMITS),
            Err(WireError::TooLong { .. })
        ));
    }

    #[test]
    fn decode_have_with_short_length_is_error() {
        let bytes = [0, 0, 0, 4, 4, 0, 0, 1];
        assert_eq!(
            Message::decode(&bytes, LIMITS),
            Err(WireError::BadLength { id: 4, length: 4 })
        );
    }

    #[test]
    fn choke_with_payload_is_error() {
        assert_eq!(
            Message::decode(&[0, 0, 0, 2, 0, 9], LIMITS),
            Err(WireError::BadLength { id: 0, length: 2 })
        );
    }

    #[test]
    fn request_with_wrong_length_is_error() {
        let bytes = [0, 0, 0, 9, 6, 0, 0, 0, 1, 0, 0, 0, 0];
        assert_eq!(
            Message::decode(&bytes, LIMITS),
            Err(WireError::BadLength { id: 6, length: 9 })
        );
    }

    #[test]
    fn bitfield_of_wrong_size_is_error() {
        let bytes = [0, 0, 0, 2, 5, 0xff];
        assert_eq!(
            Message::decode(&bytes, LIMITS),
            Err(WireError::BadLength { id: 5, length: 2 })
        );
    }

    #[test]
    fn bitfield_with_spare_bits_set_is_error() {
        // 12 pieces: the low 4 bits of the second byte are spare.
        let bytes = [0, 0, 0, 3, 5, 0xff, 0xf1];
        assert_eq!(
            Message::decode(&bytes, LIMITS),
            Err(WireError::BitfieldSpareBits)
        );
        let ok = [0, 0, 0, 3, 5, 0xff, 0xf0];
        assert!(Message::decode(&ok, LIMITS).unwrap().is_some());
    }

    #[test]
    fn large_torrents_accept_their_whole_bitfield() {
        let limits = Limits {
            piece_count: 1_000_000,
        };
        assert_eq!(limits.max_message_len(), 1 + 125_000);
    }

    #[test]
    fn handshake_round_trip_and_layout() {
        let hs = Handshake::new(InfoHash([7; 20]), PeerId(*b"-BT0100-abcdefghijkl"));
        let bytes = hs.encode();
        assert_eq!(bytes[0], 19);
        assert_eq!(&bytes[1..20], b"BitTorrent protocol");
        assert_eq!(&bytes[20..28], &[0; 8]);
        assert_eq!(&bytes[28..48], &[7; 20]);
        assert_eq!(&bytes[48..], b"-BT0100-abcdefghijkl");
        assert_eq!(Handshake::decode(&bytes), Ok(hs));
    }

    #[test]
    fn handshake_of_another_protocol_is_error() {
        let mut bytes = Handshake::new(InfoHash([0; 20]), PeerId([0; 20])).encode();
        bytes[5] = b'X';
        assert_eq!(Handshake::decode(&bytes), Err(WireError::NotBitTorrent));
        bytes[0] = 18;
        assert_eq!(Handshake::decode(&bytes), Err(WireError::NotBitTorrent));
    }
}
