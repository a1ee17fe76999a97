//! Unit tests of the peer wire codec: the exact bytes of BEP 3 and BEP 10,
//! every split point, and each malformed input with its error.

use super::*;

const LIMITS: Limits = Limits::for_pieces(12);

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
        // BEP 10: length, id 20, extended id, payload.
        (
            Message::Extended {
                id: 0,
                payload: b"de",
            },
            vec![0, 0, 0, 4, 20, 0, b'd', b'e'],
        ),
        (
            Message::Extended {
                id: 3,
                payload: b"",
            },
            vec![0, 0, 0, 2, 20, 3],
        ),
        (
            Message::Unknown {
                id: 21,
                payload: b"x",
            },
            vec![0, 0, 0, 2, 21, b'x'],
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
            max: 2 + 1024 + BLOCK_LEN
        })
    );
}

#[test]
fn piece_larger_than_a_block_is_error() {
    let mut bytes = Vec::new();
    encode_piece_header(&mut bytes, 0, 0, BLOCK_LEN + 1);
    // Judged once complete: the length is within the bound, which leaves
    // room for metadata messages.
    assert_eq!(Message::decode(&bytes, LIMITS), Ok(None));
    bytes.resize(bytes.len() + BLOCK_LEN as usize + 1, 0);
    assert_eq!(
        Message::decode(&bytes, LIMITS),
        Err(WireError::BadLength {
            id: 7,
            length: 9 + BLOCK_LEN + 1
        })
    );
    let mut huge = Vec::new();
    encode_piece_header(&mut huge, 0, 0, 1 << 20);
    assert!(matches!(
        Message::decode(&huge, LIMITS),
        Err(WireError::TooLong { .. })
    ));
}

#[test]
fn extended_without_its_extended_id_is_error() {
    assert_eq!(
        Message::decode(&[0, 0, 0, 1, 20], LIMITS),
        Err(WireError::BadLength { id: 20, length: 1 })
    );
}

#[test]
fn a_whole_metadata_data_message_fits_the_bound() {
    let mut bytes = Vec::new();
    let payload = vec![b'x'; 1024 + BLOCK_LEN as usize];
    Message::Extended {
        id: 1,
        payload: &payload,
    }
    .encode(&mut bytes);
    let (message, used) = Message::decode(&bytes, LIMITS).unwrap().unwrap();
    assert_eq!(used, bytes.len());
    assert_eq!(
        message,
        Message::Extended {
            id: 1,
            payload: &payload
        }
    );
    let mut longer = Vec::new();
    longer.extend_from_slice(&(3 + 1024 + BLOCK_LEN).to_be_bytes());
    assert!(matches!(
        Message::decode(&longer, LIMITS),
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
    let limits = Limits::for_pieces(1_000_000);
    assert_eq!(limits.max_message_len(), 1 + 125_000);
    assert_eq!(limits.piece_count(), Some(1_000_000));
}

#[test]
fn unknown_piece_count_accepts_any_bitfield_up_to_its_bound() {
    let limits = Limits::unknown_pieces();
    assert_eq!(limits.piece_count(), None);
    assert_eq!(limits.max_message_len(), 1 + 256 * 1024);
    // Spare bits are the caller's to check once it knows the piece count.
    for bits in [&[][..], &[0xff], &[0xff, 0xf1], &[0x01; 1000]] {
        let mut bytes = Vec::new();
        Message::Bitfield(bits).encode(&mut bytes);
        assert_eq!(
            Message::decode(&bytes, limits),
            Ok(Some((Message::Bitfield(bits), bytes.len())))
        );
    }
    let whole = vec![0xff; 256 * 1024];
    let mut bytes = Vec::new();
    Message::Bitfield(&whole).encode(&mut bytes);
    assert!(Message::decode(&bytes, limits).unwrap().is_some());
    let mut longer = Vec::new();
    longer.extend_from_slice(&(2 + 256 * 1024u32).to_be_bytes());
    longer.push(5);
    assert_eq!(
        Message::decode(&longer, limits),
        Err(WireError::TooLong {
            length: 2 + 256 * 1024,
            max: 1 + 256 * 1024
        })
    );
}

#[test]
fn handshake_round_trip_and_layout() {
    let hs = Handshake::new(InfoHash([7; 20]), PeerId(*b"-BT0100-abcdefghijkl"));
    let bytes = hs.encode();
    assert_eq!(bytes[0], 19);
    assert_eq!(&bytes[1..20], b"BitTorrent protocol");
    // BEP 10: bit 20 from the right, reserved[5] & 0x10.
    assert_eq!(&bytes[20..28], &[0, 0, 0, 0, 0, 0x10, 0, 0]);
    assert_eq!(&bytes[28..48], &[7; 20]);
    assert_eq!(&bytes[48..], b"-BT0100-abcdefghijkl");
    assert_eq!(Handshake::decode(&bytes), Ok(hs));
}

#[test]
fn handshake_tells_whether_the_sender_speaks_the_extension_protocol() {
    let mut hs = Handshake::new(InfoHash([0; 20]), PeerId([0; 20]));
    assert!(hs.supports_extensions());
    hs.reserved = [0xff, 0xff, 0xff, 0xff, 0xff, 0xef, 0xff, 0xff];
    assert!(!hs.supports_extensions());
    hs.reserved = [0, 0, 0, 0, 0, 0x10, 0, 0];
    let decoded = Handshake::decode(&hs.encode()).unwrap();
    assert!(decoded.supports_extensions());
    hs.reserved = [0; 8];
    assert!(
        !Handshake::decode(&hs.encode())
            .unwrap()
            .supports_extensions()
    );
}

#[test]
fn handshake_with_dht_sets_the_last_reserved_bit() {
    let hs = Handshake::new(InfoHash([7; 20]), PeerId([1; 20])).with_dht(true);
    let bytes = hs.encode();
    // BEP 5: the last bit of the reserved bytes, reserved[7] & 0x01.
    assert_eq!(&bytes[20..28], &[0, 0, 0, 0, 0, 0x10, 0, 0x01]);
    let decoded = Handshake::decode(&bytes).unwrap();
    assert!(decoded.supports_dht());
    assert!(decoded.supports_extensions());
    let off = Handshake::new(InfoHash([7; 20]), PeerId([1; 20])).with_dht(false);
    assert_eq!(&off.encode()[20..28], &[0, 0, 0, 0, 0, 0x10, 0, 0]);
    assert!(!off.supports_dht());
    let mut other_bits = off;
    other_bits.reserved = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe];
    assert!(!other_bits.supports_dht());
}

#[test]
fn port_message_has_exact_bytes_and_a_two_byte_payload() {
    let mut out = Vec::new();
    Message::Port(51413).encode(&mut out);
    assert_eq!(out, [0, 0, 0, 3, 9, 0xc8, 0xd5]);
    let limits = Limits::for_pieces(8);
    assert_eq!(
        Message::decode(&out, limits),
        Ok(Some((Message::Port(51413), 7)))
    );
    for split in 0..out.len() {
        assert_eq!(Message::decode(&out[..split], limits), Ok(None));
    }
    for bad in [&[0, 0, 0, 2, 9, 0xc8][..], &[0, 0, 0, 4, 9, 0xc8, 0xd5, 0]] {
        assert_eq!(
            Message::decode(bad, limits),
            Err(WireError::BadLength {
                id: 9,
                length: u32::from(bad[3])
            })
        );
    }
}

#[test]
fn handshake_of_another_protocol_is_error() {
    let mut bytes = Handshake::new(InfoHash([0; 20]), PeerId([0; 20])).encode();
    bytes[5] = b'X';
    assert_eq!(Handshake::decode(&bytes), Err(WireError::NotBitTorrent));
    bytes[0] = 18;
    assert_eq!(Handshake::decode(&bytes), Err(WireError::NotBitTorrent));
}

#[test]
fn messages_read_as_the_wire_trace_shows_them() {
    let block = [7u8; 16384];
    for (message, text) in [
        (
            Message::Request {
                index: 12,
                begin: 32768,
                length: 16384,
            },
            "request piece 12 begin 32768 length 16384",
        ),
        (
            Message::Piece {
                index: 12,
                begin: 32768,
                block: &block,
            },
            "piece 12 begin 32768 length 16384",
        ),
        (
            Message::Cancel {
                index: 1,
                begin: 0,
                length: 100,
            },
            "cancel piece 1 begin 0 length 100",
        ),
        (Message::Have(7), "have 7"),
        (
            Message::Bitfield(&[0b1010_0000, 0b0000_0001]),
            "bitfield 3 of 16 pieces",
        ),
        (Message::KeepAlive, "keep-alive"),
        (Message::NotInterested, "not interested"),
        (Message::Port(6881), "port 6881"),
        (
            Message::Extended {
                id: 0,
                payload: b"de",
            },
            "extended handshake (2 bytes)",
        ),
        (
            Message::Extended {
                id: 3,
                payload: b"d1:ai1ee",
            },
            "extended message 3 (8 bytes)",
        ),
    ] {
        assert_eq!(message.to_string(), text);
    }
}
