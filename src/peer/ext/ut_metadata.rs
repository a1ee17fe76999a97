//! BEP 9's `ut_metadata` messages: a request for a piece of the info
//! dictionary, the piece, or a refusal. Pure code: no I/O.

use super::{ExtError, MAX_METADATA_LEN, MAX_METADATA_MESSAGE_LEN, METADATA_PIECE_LEN, dictionary};
use crate::bencode::{self, put_bytes, put_int};

/// One `ut_metadata` message (BEP 9): a request for a metadata piece, the
/// piece itself, or a refusal to send it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetadataMessage<'a> {
    /// `msg_type` 0: please send metadata piece `piece`.
    Request {
        /// Metadata piece index (16 KiB each).
        piece: u32,
    },
    /// `msg_type` 1: metadata piece `piece`, its bytes after the dictionary.
    Data {
        /// Metadata piece index.
        piece: u32,
        /// The length of the whole metadata, as the sender claims it.
        total_size: u32,
        /// The piece's bytes: at most 16 KiB.
        data: &'a [u8],
    },
    /// `msg_type` 2: the sender will not send piece `piece`.
    Reject {
        /// Metadata piece index.
        piece: u32,
    },
}

impl MetadataMessage<'_> {
    /// Appends the message's payload (after the extended id byte): its
    /// bencoded dictionary, keys sorted, then for `Data` the piece's bytes.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let (msg_type, piece) = match *self {
            MetadataMessage::Request { piece } => (0, piece),
            MetadataMessage::Data { piece, .. } => (1, piece),
            MetadataMessage::Reject { piece } => (2, piece),
        };
        out.push(b'd');
        put_bytes(out, b"msg_type");
        put_int(out, msg_type);
        put_bytes(out, b"piece");
        put_int(out, piece.into());
        if let MetadataMessage::Data {
            total_size, data, ..
        } = *self
        {
            put_bytes(out, b"total_size");
            put_int(out, total_size.into());
            out.push(b'e');
            out.extend_from_slice(data);
        } else {
            out.push(b'e');
        }
    }

    /// Decodes a `ut_metadata` payload. Unknown keys are ignored, and so are
    /// bytes after the dictionary of a request or a reject.
    ///
    /// # Errors
    /// [`ExtError::TooLong`] past [`MAX_METADATA_MESSAGE_LEN`] (checked
    /// before parsing); [`ExtError::NotDictionary`] and [`ExtError::Bencode`]
    /// for a payload that does not start with a well-formed dictionary;
    /// [`ExtError::InvalidKey`] for `msg_type`, `piece` or (in data)
    /// `total_size` missing or not an integer in range;
    /// [`ExtError::UnknownMessageType`], which BEP 9 says to ignore;
    /// [`ExtError::DataTooLong`] for more than 16 KiB of data; and
    /// [`ExtError::MetadataTooLarge`] for a `total_size` above
    /// [`MAX_METADATA_LEN`].
    pub fn decode(payload: &[u8]) -> Result<MetadataMessage<'_>, ExtError> {
        if payload.len() > MAX_METADATA_MESSAGE_LEN {
            return Err(ExtError::TooLong {
                length: payload.len(),
                max: MAX_METADATA_MESSAGE_LEN,
            });
        }
        let (entries, end) = dictionary(payload)?;
        let int = |name: &str| {
            entries
                .iter()
                .rev()
                .find(|(key, _)| *key == name.as_bytes())
                .and_then(|(_, span)| bencode::as_int(&payload[span.clone()]))
        };
        let msg_type = int("msg_type").ok_or(ExtError::InvalidKey { key: "msg_type" })?;
        let piece = int("piece")
            .and_then(|p| u32::try_from(p).ok())
            .ok_or(ExtError::InvalidKey { key: "piece" })?;
        match msg_type {
            0 => Ok(MetadataMessage::Request { piece }),
            2 => Ok(MetadataMessage::Reject { piece }),
            1 => {
                let total_size = int("total_size")
                    .filter(|&t| t >= 0)
                    .ok_or(ExtError::InvalidKey { key: "total_size" })?;
                if total_size > i64::from(MAX_METADATA_LEN) {
                    return Err(ExtError::MetadataTooLarge { total_size });
                }
                let data = &payload[end..];
                if data.len() > METADATA_PIECE_LEN as usize {
                    return Err(ExtError::DataTooLong {
                        piece,
                        length: data.len(),
                    });
                }
                Ok(MetadataMessage::Data {
                    piece,
                    total_size: total_size as u32,
                    data,
                })
            }
            other => Err(ExtError::UnknownMessageType(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer::ext::{UT_METADATA, encode_extended};
    use crate::peer::wire::{Limits, MAX_METADATA_HEADER_LEN, Message};

    fn metadata_bytes(m: &MetadataMessage) -> Vec<u8> {
        let mut out = Vec::new();
        m.encode(&mut out);
        out
    }

    #[test]
    fn metadata_messages_encode_to_the_bep_9_bytes_and_decode_back() {
        let data = vec![b'x'; 100];
        let mut data_bytes = b"d8:msg_typei1e5:piecei0e10:total_sizei34256ee".to_vec();
        data_bytes.extend(&data);
        let examples = [
            (
                MetadataMessage::Request { piece: 0 },
                b"d8:msg_typei0e5:piecei0ee".to_vec(),
            ),
            (
                MetadataMessage::Data {
                    piece: 0,
                    total_size: 34256,
                    data: &data,
                },
                data_bytes,
            ),
            (
                MetadataMessage::Reject { piece: 0 },
                b"d8:msg_typei2e5:piecei0ee".to_vec(),
            ),
            (
                MetadataMessage::Request { piece: u32::MAX },
                b"d8:msg_typei0e5:piecei4294967295ee".to_vec(),
            ),
        ];
        for (message, bytes) in examples {
            assert_eq!(metadata_bytes(&message), bytes, "{message:?}");
            assert_eq!(MetadataMessage::decode(&bytes), Ok(message));
        }
    }

    #[test]
    fn every_truncation_of_a_metadata_dictionary_is_an_error() {
        let data = [7u8; 20];
        let message = MetadataMessage::Data {
            piece: 2,
            total_size: 32768 + 20,
            data: &data,
        };
        let bytes = metadata_bytes(&message);
        let dict_len = bytes.len() - data.len();
        for cut in 0..dict_len {
            assert!(MetadataMessage::decode(&bytes[..cut]).is_err(), "cut {cut}");
        }
        // Past the dictionary a cut only shortens the data: the fetch checks
        // each piece's length.
        for cut in dict_len..=bytes.len() {
            let Ok(MetadataMessage::Data { data: got, .. }) =
                MetadataMessage::decode(&bytes[..cut])
            else {
                panic!("cut {cut}");
            };
            assert_eq!(got, &data[..cut - dict_len]);
        }
        let request = metadata_bytes(&MetadataMessage::Request { piece: 9 });
        for cut in 0..request.len() {
            assert!(
                MetadataMessage::decode(&request[..cut]).is_err(),
                "cut {cut}"
            );
        }
    }

    #[test]
    fn request_and_reject_tolerate_trailing_bytes_and_unknown_keys() {
        assert_eq!(
            MetadataMessage::decode(b"d8:msg_typei0e5:piecei3eejunk"),
            Ok(MetadataMessage::Request { piece: 3 })
        );
        assert_eq!(
            MetadataMessage::decode(b"d1:a1:b8:msg_typei2e5:piecei1e10:total_sizei5ee"),
            Ok(MetadataMessage::Reject { piece: 1 })
        );
    }

    #[test]
    fn unknown_msg_type_is_its_own_error() {
        assert_eq!(
            MetadataMessage::decode(b"d8:msg_typei3e5:piecei0ee"),
            Err(ExtError::UnknownMessageType(3))
        );
        assert_eq!(
            MetadataMessage::decode(b"d8:msg_typei-1e5:piecei0ee"),
            Err(ExtError::UnknownMessageType(-1))
        );
    }

    #[test]
    fn metadata_message_without_valid_keys_is_error() {
        let cases: [(&[u8], &str); 6] = [
            (b"d5:piecei0ee", "msg_type"),
            (b"d8:msg_type1:05:piecei0ee", "msg_type"),
            (b"d8:msg_typei0ee", "piece"),
            (b"d8:msg_typei0e5:piecei-1ee", "piece"),
            (b"d8:msg_typei2e5:piecei4294967296ee", "piece"),
            (b"d8:msg_typei1e5:piecei0eexx", "total_size"),
        ];
        for (bytes, key) in cases {
            assert_eq!(
                MetadataMessage::decode(bytes),
                Err(ExtError::InvalidKey { key }),
                "{bytes:?}"
            );
        }
        assert_eq!(
            MetadataMessage::decode(b"d8:msg_typei1e5:piecei0e10:total_sizei-5eexx"),
            Err(ExtError::InvalidKey { key: "total_size" })
        );
    }

    #[test]
    fn data_longer_than_a_metadata_piece_is_error() {
        let mut bytes = b"d8:msg_typei1e5:piecei4e10:total_sizei100000ee".to_vec();
        bytes.resize(bytes.len() + 16384, 0);
        assert!(MetadataMessage::decode(&bytes).is_ok());
        bytes.push(0);
        assert_eq!(
            MetadataMessage::decode(&bytes),
            Err(ExtError::DataTooLong {
                piece: 4,
                length: 16385
            })
        );
    }

    #[test]
    fn total_size_above_the_limit_is_error() {
        let at_limit = format!("d8:msg_typei1e5:piecei0e10:total_sizei{MAX_METADATA_LEN}ee");
        assert!(MetadataMessage::decode(at_limit.as_bytes()).is_ok());
        let over = format!(
            "d8:msg_typei1e5:piecei0e10:total_sizei{}ee",
            MAX_METADATA_LEN + 1
        );
        assert_eq!(
            MetadataMessage::decode(over.as_bytes()),
            Err(ExtError::MetadataTooLarge {
                total_size: i64::from(MAX_METADATA_LEN) + 1
            })
        );
    }

    #[test]
    fn metadata_payload_that_is_not_a_dictionary_or_too_long_is_error() {
        assert_eq!(MetadataMessage::decode(b""), Err(ExtError::NotDictionary));
        assert_eq!(
            MetadataMessage::decode(b"li0ee"),
            Err(ExtError::NotDictionary)
        );
        assert!(matches!(
            MetadataMessage::decode(b"d8:msg_typei0e5:piece"),
            Err(ExtError::Bencode(_))
        ));
        let long = vec![b'd'; MAX_METADATA_MESSAGE_LEN + 1];
        assert_eq!(
            MetadataMessage::decode(&long),
            Err(ExtError::TooLong {
                length: MAX_METADATA_MESSAGE_LEN + 1,
                max: MAX_METADATA_MESSAGE_LEN
            })
        );
        assert!(matches!(
            MetadataMessage::decode(&nested(17)),
            Err(ExtError::Bencode(_))
        ));
    }

    #[test]
    fn encode_extended_frames_a_whole_peer_message() {
        let mut out = Vec::new();
        encode_extended(&mut out, UT_METADATA, b"d8:msg_typei0e5:piecei0ee");
        let mut expected = vec![0, 0, 0, 27, 20, 1];
        expected.extend(b"d8:msg_typei0e5:piecei0ee");
        assert_eq!(out, expected);
        let (message, used) = Message::decode(&out, Limits::unknown_pieces())
            .unwrap()
            .unwrap();
        assert_eq!(used, out.len());
        let Message::Extended { id, payload } = message else {
            panic!("{message:?}");
        };
        assert_eq!(id, UT_METADATA);
        assert_eq!(
            MetadataMessage::decode(payload),
            Ok(MetadataMessage::Request { piece: 0 })
        );
    }

    #[test]
    fn a_data_message_with_the_longest_header_passes_the_wire_bound() {
        // A 1 KiB header (padded with an unknown key) and a whole piece.
        let mut payload = b"d1:x".to_vec();
        let pad = MAX_METADATA_HEADER_LEN as usize - 55;
        payload.extend(format!("{pad}:").bytes());
        payload.resize(payload.len() + pad, b'.');
        payload.extend(b"8:msg_typei1e5:piecei1e10:total_sizei16777216ee");
        assert_eq!(payload.len(), MAX_METADATA_HEADER_LEN as usize);
        payload.resize(MAX_METADATA_MESSAGE_LEN, 1);
        let mut out = Vec::new();
        encode_extended(&mut out, UT_METADATA, &payload);
        let (message, _) = Message::decode(&out, Limits::for_pieces(1))
            .unwrap()
            .unwrap();
        let Message::Extended { payload, .. } = message else {
            panic!("{message:?}");
        };
        let Ok(MetadataMessage::Data { data, .. }) = MetadataMessage::decode(payload) else {
            panic!("not data");
        };
        assert_eq!(data.len(), METADATA_PIECE_LEN as usize);
    }

    /// `d1:x` then `depth` nested lists, then `e`.
    fn nested(depth: usize) -> Vec<u8> {
        let mut bytes = b"d1:x".to_vec();
        bytes.extend(vec![b'l'; depth]);
        bytes.extend(vec![b'e'; depth]);
        bytes.push(b'e');
        bytes
    }
}
