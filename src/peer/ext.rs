//! The payloads of BEP 10 `extended` messages: the extension handshake, and
//! BEP 9's `ut_metadata` messages that fetch the info dictionary from peers.
//!
//! In scope: encoding into a `Vec<u8>` and decoding from a `&[u8]` the bytes
//! after the extended message id, with every payload bounded in length and
//! nesting before it is parsed. Out of scope: the `extended` message around
//! them (see [`Message::Extended`]),
//! sockets, and what to fetch from whom (see [`crate::metadata`]). The
//! `ut_metadata` messages live in their own file, re-exported here. Pure code:
//! no I/O.
//!
//! Decoding is as lenient as real clients are: unknown keys and optional keys
//! of the wrong type are ignored, as BEP 10 asks.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::bencode::{self, BencodeError, put_bytes, put_int};
use crate::peer::wire::{MAX_METADATA_HEADER_LEN, Message};

mod ut_metadata;

pub use ut_metadata::MetadataMessage;

/// Extended message id 0: the extension handshake (BEP 10).
pub const HANDSHAKE_ID: u8 = 0;
/// The id we ask peers to use for the `ut_metadata` messages they send us.
pub const UT_METADATA: u8 = 1;
/// Name of the metadata extension (BEP 9) in the handshake's `m`.
pub const UT_METADATA_NAME: &str = "ut_metadata";
/// Largest metadata (info dictionary) we accept: the bound on a `.torrent`
/// file, [`crate::metainfo::MAX_METAINFO_LEN`] (16 MiB).
pub const MAX_METADATA_LEN: u32 = crate::metainfo::MAX_METAINFO_LEN as u32;
/// BEP 9 piece size: every metadata piece but the last is this long.
pub const METADATA_PIECE_LEN: u32 = 16 * 1024;
/// Longest extension handshake accepted; real ones are a few hundred bytes.
pub const MAX_HANDSHAKE_LEN: usize = 64 * 1024;
/// Longest `ut_metadata` payload accepted: a header and one metadata piece.
pub const MAX_METADATA_MESSAGE_LEN: usize = (MAX_METADATA_HEADER_LEN + METADATA_PIECE_LEN) as usize;
/// Values nested deeper than this below a payload's dictionary are refused.
const MAX_DEPTH: usize = 16;

/// The extension handshake (BEP 10 "handshake message"): which extensions
/// the sender speaks and a few facts about it. Every key is optional.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExtHandshake {
    /// `m`: extension name to the extended message id the sender wants for
    /// it; 0 means disabled (BEP 10), which a later handshake uses to turn
    /// an extension off, so decoding keeps those entries ([`ExtHandshake::id_of`]
    /// gives `None` for them). Encoding writes every entry.
    pub extensions: BTreeMap<String, u8>,
    /// `v`: the client's name and version.
    pub client: Option<String>,
    /// `p`: the TCP port the sender listens on.
    pub listen_port: Option<u16>,
    /// `reqq`: how many requests the sender queues without dropping any.
    pub reqq: Option<u32>,
    /// `yourip`: our address as the sender sees it.
    pub yourip: Option<IpAddr>,
    /// `metadata_size` (BEP 9): the length of the info dictionary in bytes.
    /// A size above [`MAX_METADATA_LEN`] still decodes, so the caller can log
    /// and refuse it; one that is negative or beyond `u32` decodes as `None`.
    pub metadata_size: Option<u32>,
}

impl ExtHandshake {
    /// Appends the bencoded dictionary, keys sorted: the payload after the
    /// extended id byte (see [`encode_extended`]). `m` is always written.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(b'd');
        put_bytes(out, b"m");
        out.push(b'd');
        for (name, &id) in &self.extensions {
            put_bytes(out, name.as_bytes());
            put_int(out, id.into());
        }
        out.push(b'e');
        if let Some(size) = self.metadata_size {
            put_bytes(out, b"metadata_size");
            put_int(out, size.into());
        }
        if let Some(port) = self.listen_port {
            put_bytes(out, b"p");
            put_int(out, port.into());
        }
        if let Some(reqq) = self.reqq {
            put_bytes(out, b"reqq");
            put_int(out, reqq.into());
        }
        if let Some(client) = &self.client {
            put_bytes(out, b"v");
            put_bytes(out, client.as_bytes());
        }
        if let Some(ip) = self.yourip {
            put_bytes(out, b"yourip");
            match ip {
                IpAddr::V4(v4) => put_bytes(out, &v4.octets()),
                IpAddr::V6(v6) => put_bytes(out, &v6.octets()),
            }
        }
        out.push(b'e');
    }

    /// Decodes an extension handshake's payload.
    ///
    /// Unknown keys, optional keys of the wrong type or out of range, `m`
    /// entries outside 0..=255 and names that are not UTF-8 are ignored; a
    /// `v` that is not UTF-8 is decoded lossily; when a key repeats, the last
    /// one counts. Bytes after the dictionary are ignored.
    ///
    /// # Errors
    /// [`ExtError::TooLong`] past [`MAX_HANDSHAKE_LEN`] (checked before
    /// parsing), [`ExtError::NotDictionary`], and [`ExtError::Bencode`] for
    /// malformed bencode or nesting deeper than 16 levels.
    pub fn decode(payload: &[u8]) -> Result<ExtHandshake, ExtError> {
        if payload.len() > MAX_HANDSHAKE_LEN {
            return Err(ExtError::TooLong {
                length: payload.len(),
                max: MAX_HANDSHAKE_LEN,
            });
        }
        let (entries, _end) = dictionary(payload)?;
        let mut hs = ExtHandshake::default();
        for (key, span) in entries {
            let value = &payload[span];
            match key {
                b"m" => hs.extensions = extensions(value),
                // The remote's name for itself reaches our log: kept as
                // it will be printed, capped and escaped.
                b"v" => hs.client = bencode::as_bytes(value).map(crate::untrusted::show_bytes),
                b"p" => hs.listen_port = int_in(value),
                b"reqq" => hs.reqq = int_in(value),
                b"metadata_size" => hs.metadata_size = int_in(value),
                b"yourip" => {
                    hs.yourip = bencode::as_bytes(value).and_then(|ip| match ip.len() {
                        4 => <[u8; 4]>::try_from(ip)
                            .ok()
                            .map(|o| Ipv4Addr::from(o).into()),
                        16 => <[u8; 16]>::try_from(ip)
                            .ok()
                            .map(|o| Ipv6Addr::from(o).into()),
                        _ => None,
                    });
                }
                _ => {}
            }
        }
        Ok(hs)
    }

    /// The id the sender wants for extension `name`; `None` when it did not
    /// name it or disabled it.
    pub fn id_of(&self, name: &str) -> Option<u8> {
        self.extensions.get(name).copied().filter(|&id| id != 0)
    }
}

/// The entries of `m`, or none when it is not a dictionary.
fn extensions(value: &[u8]) -> BTreeMap<String, u8> {
    let mut map = BTreeMap::new();
    let Ok((entries, _)) = bencode::dict_entries(value, 0, MAX_DEPTH) else {
        return map;
    };
    for (name, span) in entries {
        let (Ok(name), Some(id)) = (std::str::from_utf8(name), int_in::<u8>(&value[span])) else {
            continue;
        };
        map.insert(name.to_string(), id);
    }
    map
}

/// Appends a whole peer message: length prefix, id 20, `ext_id`, `payload`.
///
/// `ext_id` is [`HANDSHAKE_ID`] for the extension handshake, else the id the
/// remote asked for in its handshake (see [`ExtHandshake::id_of`]).
pub fn encode_extended(out: &mut Vec<u8>, ext_id: u8, payload: &[u8]) {
    Message::Extended {
        id: ext_id,
        payload,
    }
    .encode(out);
}

/// Why an extension payload from a peer was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExtError {
    /// The payload is longer than its kind allows.
    TooLong {
        /// Its length.
        length: usize,
        /// The most accepted.
        max: usize,
    },
    /// The payload does not start with a bencoded dictionary.
    NotDictionary,
    /// The dictionary is not well-formed bencode, or is nested too deep.
    Bencode(BencodeError),
    /// A required `ut_metadata` key is missing, not an integer, or out of range.
    InvalidKey {
        /// The key.
        key: &'static str,
    },
    /// A `msg_type` BEP 9 does not define; BEP 9 says to ignore the message.
    UnknownMessageType(i64),
    /// A data message carrying more than one metadata piece.
    DataTooLong {
        /// Metadata piece index.
        piece: u32,
        /// Bytes of data it carried.
        length: usize,
    },
    /// A data message claiming metadata larger than [`MAX_METADATA_LEN`].
    MetadataTooLarge {
        /// The claimed size.
        total_size: i64,
    },
}

impl fmt::Display for ExtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExtError::TooLong { length, max } => {
                write!(f, "extension payload of {length} bytes exceeds {max}")
            }
            ExtError::NotDictionary => f.write_str("extension payload is not a dictionary"),
            ExtError::Bencode(e) => write!(f, "extension payload is bad bencode: {e}"),
            ExtError::InvalidKey { key } => {
                write!(f, "ut_metadata message without a valid `{key}`")
            }
            ExtError::UnknownMessageType(t) => write!(f, "unknown ut_metadata msg_type {t}"),
            ExtError::DataTooLong { piece, length } => write!(
                f,
                "metadata piece {piece} carries {length} bytes, more than {METADATA_PIECE_LEN}"
            ),
            ExtError::MetadataTooLarge { total_size } => write!(
                f,
                "metadata total_size {total_size} exceeds the limit of {MAX_METADATA_LEN}"
            ),
        }
    }
}

impl std::error::Error for ExtError {}

/// The dictionary at the start of `payload`: its entries and its end.
fn dictionary(payload: &[u8]) -> Result<(Vec<bencode::Entry<'_>>, usize), ExtError> {
    if payload.first() != Some(&b'd') {
        return Err(ExtError::NotDictionary);
    }
    bencode::dict_entries(payload, 0, MAX_DEPTH).map_err(ExtError::Bencode)
}

/// The integer a value holds, when it is one that fits in `T`.
fn int_in<T: TryFrom<i64>>(value: &[u8]) -> Option<T> {
    bencode::as_int(value).and_then(|i| T::try_from(i).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handshake_bytes(hs: &ExtHandshake) -> Vec<u8> {
        let mut out = Vec::new();
        hs.encode(&mut out);
        out
    }

    fn full_handshake() -> ExtHandshake {
        ExtHandshake {
            extensions: BTreeMap::from([("ut_metadata".into(), 3), ("ut_pex".into(), 1)]),
            client: Some("bittorrent 0.1".into()),
            listen_port: Some(6881),
            reqq: Some(500),
            yourip: Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))),
            metadata_size: Some(31235),
        }
    }

    #[test]
    fn decodes_the_bep_10_example_handshake() {
        // BEP 10's example, with the string lengths counted in UTF-8 bytes
        // (the spec counts "µT_PEX" as 6).
        let bytes = "d1:md11:LT_metadatai1e7:µT_PEXi2ee1:pi6881e1:v13:µTorrent 1.2e";
        let hs = ExtHandshake::decode(bytes.as_bytes()).unwrap();
        assert_eq!(
            hs,
            ExtHandshake {
                extensions: BTreeMap::from([("LT_metadata".into(), 1), ("µT_PEX".into(), 2)]),
                client: Some("µTorrent 1.2".into()),
                listen_port: Some(6881),
                ..ExtHandshake::default()
            }
        );
        assert_eq!(hs.id_of("µT_PEX"), Some(2));
        assert_eq!(hs.id_of(UT_METADATA_NAME), None);
    }

    #[test]
    fn decodes_the_bep_9_example_handshake() {
        let hs = ExtHandshake::decode(b"d1:md11:ut_metadatai3ee13:metadata_sizei31235ee").unwrap();
        assert_eq!(hs.id_of(UT_METADATA_NAME), Some(3));
        assert_eq!(hs.metadata_size, Some(31235));
    }

    #[test]
    fn handshake_encodes_to_sorted_keys_and_decodes_back() {
        let hs = full_handshake();
        let bytes = handshake_bytes(&hs);
        assert_eq!(
            bytes,
            b"d1:md11:ut_metadatai3e6:ut_pexi1ee13:metadata_sizei31235e1:pi6881e\
              4:reqqi500e1:v14:bittorrent 0.16:yourip4:\x0a\x00\x00\x01e"
        );
        assert_eq!(ExtHandshake::decode(&bytes), Ok(hs));

        let v6 = ExtHandshake {
            yourip: Some("2001:db8::1".parse().unwrap()),
            ..ExtHandshake::default()
        };
        assert_eq!(ExtHandshake::decode(&handshake_bytes(&v6)), Ok(v6));
        let empty = handshake_bytes(&ExtHandshake::default());
        assert_eq!(empty, b"d1:mdee");
        assert_eq!(ExtHandshake::decode(&empty), Ok(ExtHandshake::default()));
    }

    #[test]
    fn every_truncation_of_a_handshake_is_an_error() {
        let bytes = handshake_bytes(&full_handshake());
        for cut in 0..bytes.len() {
            assert!(ExtHandshake::decode(&bytes[..cut]).is_err(), "cut {cut}");
        }
    }

    #[test]
    fn handshake_ignores_unknown_keys_and_wrong_types() {
        let bytes = b"d1:ai1e1:mi5e13:metadata_size3:big1:pi70000e4:reqqi-1e\
                      1:vi7e6:yourip3:abc8:whateverld1:xleeee";
        assert_eq!(ExtHandshake::decode(bytes), Ok(ExtHandshake::default()));
        let negative = ExtHandshake::decode(b"d13:metadata_sizei-5e1:pi-1ee").unwrap();
        assert_eq!((negative.metadata_size, negative.listen_port), (None, None));
        let huge = ExtHandshake::decode(b"d13:metadata_sizei99999999999999999999ee").unwrap();
        assert_eq!(huge.metadata_size, None);
        assert_eq!(
            ExtHandshake::decode(b"d13:metadata_sizei4294967296ee")
                .unwrap()
                .metadata_size,
            None
        );
    }

    #[test]
    fn metadata_size_above_the_limit_still_decodes_for_the_caller_to_refuse() {
        let hs = ExtHandshake::decode(b"d13:metadata_sizei4294967295ee").unwrap();
        assert_eq!(hs.metadata_size, Some(u32::MAX));
    }

    #[test]
    fn handshake_m_keeps_disabled_and_drops_out_of_range_and_non_utf8_entries() {
        let bytes =
            b"d1:md1:ai0e1:bi256e1:ci-1e1:d1:x1:ei255e2:\xff\xfei4e1:fi2e1:fi0e1:gi1e1:gi9eee";
        let hs = ExtHandshake::decode(bytes).unwrap();
        assert_eq!(
            hs.extensions,
            BTreeMap::from([
                ("a".into(), 0),
                ("e".into(), 255),
                ("f".into(), 0),
                ("g".into(), 9)
            ])
        );
        assert_eq!(hs.id_of("a"), None, "0 is disabled");
        assert_eq!(hs.id_of("f"), None, "the last of a repeated key counts");
        assert_eq!(hs.id_of("g"), Some(9));
    }

    #[test]
    fn handshake_client_that_is_not_utf8_decodes_lossily() {
        let hs = ExtHandshake::decode(b"d1:v4:ab\xffce").unwrap();
        assert_eq!(hs.client.as_deref(), Some("ab\u{fffd}c"));
    }

    #[test]
    fn handshake_client_with_escapes_is_kept_inert_and_capped() {
        let mut payload = b"d1:v4000:\x1b[2J".to_vec();
        payload.resize(payload.len() + 4000 - 4, b'x');
        payload.push(b'e');
        let hs = ExtHandshake::decode(&payload).unwrap();
        let client = hs.client.unwrap();
        assert!(client.starts_with("\\u{1b}[2Jxx"), "{client:?}");
        assert!(client.len() < 300, "{} bytes", client.len());
    }

    #[test]
    fn handshake_tolerates_bytes_after_its_dictionary() {
        assert_eq!(
            ExtHandshake::decode(b"d1:pi1eeXYZ").unwrap().listen_port,
            Some(1)
        );
    }

    #[test]
    fn handshake_that_is_not_a_dictionary_is_error() {
        for bytes in [&b""[..], b"li1ee", b"i1e", b"4:spam", b"xd1:pi1ee"] {
            assert_eq!(
                ExtHandshake::decode(bytes),
                Err(ExtError::NotDictionary),
                "{bytes:?}"
            );
        }
    }

    #[test]
    fn malformed_handshake_is_a_bencode_error() {
        for bytes in [&b"d1:pi1e"[..], b"di1ei2ee", b"d1:pi01ee", b"d1:p5:abce"] {
            assert!(
                matches!(ExtHandshake::decode(bytes), Err(ExtError::Bencode(_))),
                "{bytes:?}"
            );
        }
    }

    #[test]
    fn handshake_longer_than_64_kib_is_refused_before_parsing() {
        let mut bytes = b"d1:v65536:".to_vec();
        bytes.resize(bytes.len() + 65536, b'x');
        bytes.push(b'e');
        assert_eq!(
            ExtHandshake::decode(&bytes),
            Err(ExtError::TooLong {
                length: bytes.len(),
                max: MAX_HANDSHAKE_LEN
            })
        );
    }

    /// `d1:x` then `depth` nested lists, then `e`.
    fn nested(depth: usize) -> Vec<u8> {
        let mut bytes = b"d1:x".to_vec();
        bytes.extend(vec![b'l'; depth]);
        bytes.extend(vec![b'e'; depth]);
        bytes.push(b'e');
        bytes
    }

    #[test]
    fn handshake_nested_deeper_than_16_levels_is_error() {
        assert!(ExtHandshake::decode(&nested(16)).is_ok());
        let Err(ExtError::Bencode(e)) = ExtHandshake::decode(&nested(17)) else {
            panic!("17 levels accepted");
        };
        assert_eq!(e.what, "nesting too deep");
        assert!(ExtHandshake::decode(&nested(30_000)).is_err());
    }

    #[test]
    fn errors_read_as_lowercase_text_with_their_values() {
        assert_eq!(
            ExtError::DataTooLong {
                piece: 3,
                length: 20000
            }
            .to_string(),
            "metadata piece 3 carries 20000 bytes, more than 16384"
        );
        assert_eq!(
            ExtError::UnknownMessageType(7).to_string(),
            "unknown ut_metadata msg_type 7"
        );
    }
}
