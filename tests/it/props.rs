// Property tests over every decoder of the public API: peer wire messages and
// the handshake, bencode spans, `.torrent` files, tracker responses, and the
// extension protocol's handshake and metadata messages.
// Arbitrary bytes never panic, the wire decoder never asks for more bytes than
// its bound, and whatever is encoded decodes back to itself.
//
// Failures are not persisted to a regressions file: a failing case is printed
// with its minimal input, to be turned into a named regression test.

use std::net::{IpAddr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::path::Path;
use std::sync::LazyLock;

use bittorrent::bencode::{dict_value_span, skip_value};
use bittorrent::layout::BLOCK_LEN;
use bittorrent::metainfo::{InfoHash, Metainfo};
use bittorrent::peer::ext::MAX_METADATA_MESSAGE_LEN;
use bittorrent::peer::wire::{
    HANDSHAKE_LEN, Handshake, Limits, Message, PIECE_HEADER_LEN, PeerId, WireError,
    encode_piece_header,
};
use bittorrent::tracker::{TrackerError, parse_response};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{Index, select};
use sha1::{Digest, Sha1};

/// The extension protocol's handshake and metadata messages.
mod ext;

/// The default case count (256, or `PROPTEST_CASES`), without writing
/// regression files into the source tree.
fn config() -> ProptestConfig {
    ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Arbitrary bytes, and bytes drawn from bencode's alphabet so that the
/// decoders get past their first byte.
fn junk() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        vec(any::<u8>(), 0..64),
        vec(select(b"dilme0123456789:-x".to_vec()), 0..64),
    ]
}

// ---------------------------------------------------------------------------
// Peer wire protocol

/// Torrents from no pieces to a few thousand, for messages that must fit
/// them, or a torrent whose piece count is not known yet.
fn small_limits() -> impl Strategy<Value = Limits> {
    prop_oneof![
        4 => (0u32..=4096).prop_map(Limits::for_pieces),
        1 => Just(Limits::unknown_pieces()),
    ]
}

/// Any torrent, up to `u32::MAX` pieces (a 512 MiB bitfield bound).
fn any_limits() -> impl Strategy<Value = Limits> {
    prop_oneof![small_limits(), any::<u32>().prop_map(Limits::for_pieces)]
}

/// A length prefix: small ones that reach every message id, ones around the
/// bound, and hostile ones such as 2 GiB.
fn length_prefix(max: u32) -> impl Strategy<Value = u32> {
    prop_oneof![
        0u32..=20,
        max.saturating_sub(2)..=max.saturating_add(2),
        Just(0x8000_0000),
        Just(u32::MAX),
        any::<u32>(),
    ]
}

/// Checks everything `Message::decode` promises about `buf`, whatever it holds.
fn check_decode(buf: &[u8], limits: Limits) -> Result<(), TestCaseError> {
    let max = limits.max_message_len();
    let prefix = buf
        .get(..4)
        .map(|p| u32::from_be_bytes(p.try_into().expect("4 bytes")));
    match (Message::decode(buf, limits), prefix) {
        (Ok(None), None) => {}
        (Ok(None), Some(length)) => {
            // "Need more bytes" lets the caller buffer up to 4 + length bytes:
            // that must never exceed the bound.
            prop_assert!(length <= max, "asks for {length} bytes, bound {max}");
            prop_assert!(buf.len() < 4 + length as usize, "the message was complete");
        }
        (Ok(Some((message, used))), Some(length)) => {
            prop_assert_eq!(used, 4 + length as usize);
            prop_assert!(used <= buf.len());
            // Every length check is exact, so a decoded message has one encoding.
            let mut again = Vec::new();
            message.encode(&mut again);
            prop_assert_eq!(&again[..], &buf[..used], "{:?}", message);
        }
        (Ok(Some((message, _))), None) => {
            prop_assert!(false, "{message:?} decoded from {} bytes", buf.len());
        }
        (Err(WireError::TooLong { length, max: told }), Some(prefix)) => {
            prop_assert_eq!(length, prefix);
            prop_assert_eq!(told, max);
            prop_assert!(length > max);
        }
        (Err(WireError::BadLength { length, .. }), Some(prefix)) => {
            prop_assert_eq!(length, prefix);
            prop_assert!(buf.len() >= 4 + length as usize, "judged before complete");
        }
        (Err(WireError::BitfieldSpareBits), Some(length)) => {
            prop_assert!(buf.len() >= 4 + length as usize, "judged before complete");
        }
        (Err(e), prefix) => prop_assert!(false, "{e:?} with prefix {prefix:?}"),
    }
    Ok(())
}

/// A message whose payload is owned, so a strategy can generate it.
#[derive(Debug, Clone)]
enum Owned {
    /// A message that borrows nothing.
    Plain(Message<'static>),
    Bitfield(Vec<u8>),
    Piece {
        index: u32,
        begin: u32,
        block: Vec<u8>,
    },
    Extended {
        id: u8,
        payload: Vec<u8>,
    },
    Unknown {
        id: u8,
        payload: Vec<u8>,
    },
}

impl Owned {
    fn message(&self) -> Message<'_> {
        match self {
            Owned::Plain(message) => *message,
            Owned::Bitfield(bits) => Message::Bitfield(bits),
            Owned::Piece {
                index,
                begin,
                block,
            } => Message::Piece {
                index: *index,
                begin: *begin,
                block,
            },
            Owned::Extended { id, payload } => Message::Extended { id: *id, payload },
            Owned::Unknown { id, payload } => Message::Unknown { id: *id, payload },
        }
    }

    fn encoded(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.message().encode(&mut out);
        out
    }
}

/// Every kind of message valid for a torrent of `limits`: bitfields of the
/// exact length with zero spare bits (of any length and bits when the piece
/// count is unknown), blocks up to 16 KiB, extended payloads up to a whole
/// metadata piece and its header.
fn message(limits: Limits) -> impl Strategy<Value = Owned> {
    let (bitfield_len, spare_mask) = match limits.piece_count() {
        Some(count) => {
            let len = (count as usize).div_ceil(8);
            (len..=len, (1u8 << (len * 8 - count as usize)) - 1)
        }
        None => (0..=64, 0),
    };
    let plain = |m: Message<'static>| Just(Owned::Plain(m));
    let triple = || (any::<u32>(), any::<u32>(), any::<u32>());
    prop_oneof![
        plain(Message::KeepAlive),
        plain(Message::Choke),
        plain(Message::Unchoke),
        plain(Message::Interested),
        plain(Message::NotInterested),
        any::<u32>().prop_map(|index| Owned::Plain(Message::Have(index))),
        vec(any::<u8>(), bitfield_len).prop_map(move |mut bits| {
            if let Some(last) = bits.last_mut() {
                *last &= !spare_mask;
            }
            Owned::Bitfield(bits)
        }),
        triple().prop_map(|(index, begin, length)| Owned::Plain(Message::Request {
            index,
            begin,
            length
        })),
        (
            any::<u32>(),
            any::<u32>(),
            prop_oneof![
                vec(any::<u8>(), 0..64),
                vec(any::<u8>(), 0..=BLOCK_LEN as usize)
            ]
        )
            .prop_map(|(index, begin, block)| Owned::Piece {
                index,
                begin,
                block
            }),
        triple().prop_map(|(index, begin, length)| Owned::Plain(Message::Cancel {
            index,
            begin,
            length
        })),
        any::<u16>().prop_map(|port| Owned::Plain(Message::Port(port))),
        (
            any::<u8>(),
            prop_oneof![
                vec(any::<u8>(), 0..64),
                vec(any::<u8>(), 0..=MAX_METADATA_MESSAGE_LEN)
            ]
        )
            .prop_map(|(id, payload)| Owned::Extended { id, payload }),
        (
            (10u8..=255).prop_filter("20 is extended", |&id| id != 20),
            vec(any::<u8>(), 0..64)
        )
            .prop_map(|(id, payload)| Owned::Unknown { id, payload }),
    ]
}

fn limits_and_message() -> impl Strategy<Value = (Limits, Owned)> {
    small_limits().prop_flat_map(|limits| (Just(limits), message(limits)))
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn decoding_arbitrary_bytes_never_panics_nor_asks_past_the_bound(
        limits in any_limits(),
        buf in vec(any::<u8>(), 0..64),
    ) {
        check_decode(&buf, limits)?;
    }

    #[test]
    fn decoding_any_length_prefix_never_panics_nor_asks_past_the_bound(
        (limits, length) in any_limits()
            .prop_flat_map(|l| (Just(l), length_prefix(l.max_message_len()))),
        id in prop_oneof![0u8..=10, any::<u8>()],
        body in vec(any::<u8>(), 0..64),
    ) {
        let mut buf = length.to_be_bytes().to_vec();
        buf.push(id);
        buf.extend(body);
        for end in 0..=buf.len() {
            check_decode(&buf[..end], limits)?;
        }
    }

    #[test]
    fn every_message_round_trips_using_exactly_its_bytes_before_trailing_ones(
        (limits, owned) in limits_and_message(),
        trailing in vec(any::<u8>(), 0..16),
    ) {
        let encoded = owned.encoded();
        let length = u32::from_be_bytes(encoded[..4].try_into().unwrap());
        prop_assert_eq!(encoded.len(), 4 + length as usize);
        prop_assert!(length <= limits.max_message_len(), "encodes what it refuses");

        let mut stream = encoded.clone();
        stream.extend(&trailing);
        let decoded = Message::decode(&stream, limits);
        prop_assert_eq!(decoded, Ok(Some((owned.message(), encoded.len()))));
    }

    #[test]
    fn decoding_at_every_split_point_needs_more_bytes_until_complete(
        (limits, owned) in limits_and_message(),
    ) {
        let encoded = owned.encoded();
        for cut in 0..encoded.len() {
            prop_assert_eq!(Message::decode(&encoded[..cut], limits), Ok(None), "cut {}", cut);
        }
        prop_assert_eq!(
            Message::decode(&encoded, limits),
            Ok(Some((owned.message(), encoded.len())))
        );
    }

    #[test]
    fn a_stream_of_messages_decodes_back_in_order(
        (limits, messages) in small_limits()
            .prop_flat_map(|l| (Just(l), vec(message(l), 0..8))),
    ) {
        let stream: Vec<u8> = messages.iter().flat_map(Owned::encoded).collect();
        let mut at = 0;
        for owned in &messages {
            let (decoded, used) = Message::decode(&stream[at..], limits).unwrap().unwrap();
            prop_assert_eq!(decoded, owned.message());
            at += used;
        }
        prop_assert_eq!(at, stream.len());
        prop_assert_eq!(Message::decode(&stream[at..], limits), Ok(None));
    }

    #[test]
    fn piece_header_then_block_encodes_like_a_piece_message(
        index in any::<u32>(),
        begin in any::<u32>(),
        block in vec(any::<u8>(), 0..=BLOCK_LEN as usize),
    ) {
        let mut split = Vec::new();
        encode_piece_header(&mut split, index, begin, block.len() as u32);
        prop_assert_eq!(split.len(), PIECE_HEADER_LEN);
        split.extend(&block);
        let whole = Owned::Piece { index, begin, block }.encoded();
        prop_assert_eq!(split, whole);
    }

    #[test]
    fn handshake_round_trips_any_reserved_bits_info_hash_and_peer_id(
        reserved in any::<[u8; 8]>(),
        info_hash in any::<[u8; 20]>(),
        peer_id in any::<[u8; 20]>(),
    ) {
        let handshake = Handshake {
            reserved,
            info_hash: InfoHash(info_hash),
            peer_id: PeerId(peer_id),
        };
        prop_assert_eq!(Handshake::decode(&handshake.encode()), Ok(handshake));
    }

    #[test]
    fn decoding_any_68_bytes_accepts_only_the_bittorrent_protocol(
        bytes in prop_oneof![
            any::<[u8; HANDSHAKE_LEN]>(),
            any::<[u8; HANDSHAKE_LEN]>().prop_map(|mut b| {
                b[0] = 19;
                b[1..20].copy_from_slice(b"BitTorrent protocol");
                b
            }),
        ],
    ) {
        let is_bittorrent = bytes[0] == 19 && &bytes[1..20] == b"BitTorrent protocol";
        match Handshake::decode(&bytes) {
            Ok(handshake) => {
                prop_assert!(is_bittorrent);
                prop_assert_eq!(handshake.encode(), bytes);
            }
            Err(e) => {
                prop_assert!(!is_bittorrent);
                prop_assert_eq!(e, WireError::NotBitTorrent);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Bencode

/// A bencode value, written by the test rather than by the crate. Dictionary
/// keys keep the order given: the scanner must not depend on it.
#[derive(Debug, Clone)]
enum Value {
    Int(i64),
    Bytes(Vec<u8>),
    List(Vec<Value>),
    Dict(Vec<(Vec<u8>, Value)>),
}

impl Value {
    fn str(s: &str) -> Value {
        Value::Bytes(s.as_bytes().to_vec())
    }

    fn dict(entries: Vec<(&str, Value)>) -> Value {
        Value::Dict(
            entries
                .into_iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v))
                .collect(),
        )
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write(&mut out);
        out
    }

    fn write(&self, out: &mut Vec<u8>) {
        match self {
            Value::Int(i) => out.extend(format!("i{i}e").bytes()),
            Value::Bytes(b) => write_bytes(out, b),
            Value::List(items) => {
                out.push(b'l');
                items.iter().for_each(|i| i.write(out));
                out.push(b'e');
            }
            Value::Dict(entries) => {
                out.push(b'd');
                for (k, v) in entries {
                    write_bytes(out, k);
                    v.write(out);
                }
                out.push(b'e');
            }
        }
    }
}

fn write_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend(format!("{}:", bytes.len()).bytes());
    out.extend(bytes);
}

/// Any bencode value, a few levels deep.
fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        any::<i64>().prop_map(Value::Int),
        vec(any::<u8>(), 0..16).prop_map(Value::Bytes),
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Value::List),
            vec((vec(any::<u8>(), 0..8), inner), 0..4).prop_map(Value::Dict),
        ]
    })
}

/// Dictionary entries none of whose keys is `info`.
fn entries_without_info() -> impl Strategy<Value = Vec<(Vec<u8>, Value)>> {
    vec(
        (
            prop_oneof![vec(any::<u8>(), 0..8), Just(b"inf".to_vec())]
                .prop_filter("not info", |k| k != b"info"),
            value(),
        ),
        0..5,
    )
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn scanning_arbitrary_bytes_never_panics_and_stays_in_bounds(
        bytes in junk(),
        pos in 0usize..70,
        key in prop_oneof![Just(b"info".to_vec()), vec(any::<u8>(), 0..3)],
    ) {
        if let Ok(end) = skip_value(&bytes, pos) {
            prop_assert!(pos < end && end <= bytes.len(), "{pos}..{end} of {}", bytes.len());
        }
        if let Ok(Some(span)) = dict_value_span(&bytes, &key) {
            prop_assert!(span.start < span.end && span.end <= bytes.len());
            prop_assert_eq!(skip_value(&bytes, span.start), Ok(span.end));
        }
    }

    #[test]
    fn every_valid_value_is_skipped_whole_whatever_follows(
        value in value(),
        trailing in junk(),
    ) {
        let encoded = value.encode();
        let mut bytes = encoded.clone();
        bytes.extend(&trailing);
        prop_assert_eq!(skip_value(&bytes, 0), Ok(encoded.len()));
    }

    #[test]
    fn the_info_span_is_exactly_the_bytes_of_the_info_value(
        mut entries in entries_without_info(),
        info in value(),
        at in any::<Index>(),
    ) {
        let without = Value::Dict(entries.clone()).encode();
        prop_assert_eq!(dict_value_span(&without, b"info"), Ok(None));

        let at = at.index(entries.len() + 1);
        entries.insert(at, (b"info".to_vec(), info.clone()));
        let doc = Value::Dict(entries).encode();
        let span = dict_value_span(&doc, b"info").unwrap().unwrap();
        prop_assert_eq!(&doc[span], &info.encode()[..]);
    }

    #[test]
    fn every_truncation_of_a_valid_dictionary_is_an_error(
        entries in entries_without_info(),
        info in value(),
    ) {
        let mut entries = entries;
        entries.push((b"info".to_vec(), info));
        let doc = Value::Dict(entries).encode();
        for cut in 0..doc.len() {
            prop_assert!(dict_value_span(&doc[..cut], b"info").is_err(), "cut {}", cut);
        }
    }
}

// ---------------------------------------------------------------------------
// Metainfo

/// The bytes of torrents made by real tools, read once.
static FIXTURES: LazyLock<Vec<Vec<u8>>> = LazyLock::new(|| {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    [
        "single.torrent",
        "multi.torrent",
        "multi-transmission.torrent",
    ]
    .iter()
    .map(|name| std::fs::read(dir.join(name)).expect("fixture is readable"))
    .collect()
});

/// One edit of a byte string.
#[derive(Debug, Clone)]
enum Mutation {
    Set(Index, u8),
    Insert(Index, u8),
    Remove(Index),
    Truncate(Index),
}

fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    // Bencode's own bytes change the structure; others change only content.
    let byte = || prop_oneof![any::<u8>(), select(b"0123456789:-deil".to_vec())];
    let mutation = prop_oneof![
        4 => (any::<Index>(), byte()).prop_map(|(i, b)| Mutation::Set(i, b)),
        2 => (any::<Index>(), byte()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        2 => any::<Index>().prop_map(Mutation::Remove),
        1 => any::<Index>().prop_map(Mutation::Truncate),
    ];
    vec(mutation, 1..6)
}

fn mutate(bytes: &mut Vec<u8>, mutations: &[Mutation]) {
    for m in mutations {
        match m {
            Mutation::Insert(i, b) => bytes.insert(i.index(bytes.len() + 1), *b),
            _ if bytes.is_empty() => {}
            Mutation::Set(i, b) => {
                let at = i.index(bytes.len());
                bytes[at] = *b;
            }
            Mutation::Remove(i) => {
                bytes.remove(i.index(bytes.len()));
            }
            Mutation::Truncate(i) => bytes.truncate(i.index(bytes.len())),
        }
    }
}

/// Checks what an accepted torrent promises: a piece hash per piece, lengths
/// that add up, and the info-hash over the raw `info` bytes.
fn check_accepted(bytes: &[u8], meta: &Metainfo) -> Result<(), TestCaseError> {
    prop_assert_eq!(meta.piece_hashes.len(), meta.layout.piece_count() as usize);
    let total: u64 = meta.files.iter().map(|f| f.length).sum();
    prop_assert_eq!(total, meta.total_len());
    let span = dict_value_span(bytes, b"info").unwrap().unwrap();
    let hash: [u8; 20] = Sha1::digest(&bytes[span]).into();
    prop_assert_eq!(meta.info_hash, InfoHash(hash));
    Ok(())
}

/// Lengths that are ordinary, at the edges of the integer types, or negative.
fn length() -> impl Strategy<Value = i64> {
    prop_oneof![
        0i64..=100_000,
        select(vec![
            -1,
            0,
            1,
            16384,
            u32::MAX as i64,
            u32::MAX as i64 + 1,
            64 * 1024 * 1024,
            64 * 1024 * 1024 + 1,
            i64::MAX,
            i64::MIN,
        ]),
        any::<i64>(),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn parsing_arbitrary_bytes_as_a_torrent_is_an_error(bytes in junk()) {
        prop_assert!(Metainfo::from_bytes(&bytes).is_err());
    }

    #[test]
    fn mutated_fixtures_never_panic(
        fixture in any::<Index>(),
        mutations in mutations(),
    ) {
        let mut bytes = fixture.get(&FIXTURES).clone();
        mutate(&mut bytes, &mutations);
        if let Ok(meta) = Metainfo::from_bytes(&bytes) {
            check_accepted(&bytes, &meta)?;
        }
    }

    #[test]
    fn torrents_with_any_lengths_never_panic(
        file_lengths in vec(length(), 1..4),
        multi_file in any::<bool>(),
        piece_length in length(),
        piece_count in 0usize..4,
    ) {
        let mut info = vec![
            ("name", Value::str("x")),
            ("piece length", Value::Int(piece_length)),
            ("pieces", Value::Bytes(vec![7; 20 * piece_count])),
        ];
        if multi_file {
            let files = file_lengths
                .iter()
                .map(|&l| Value::dict(vec![
                    ("length", Value::Int(l)),
                    ("path", Value::List(vec![Value::str("f")])),
                ]))
                .collect();
            info.push(("files", Value::List(files)));
        } else {
            info.push(("length", Value::Int(file_lengths[0])));
        }
        let bytes = Value::dict(vec![("info", Value::dict(info))]).encode();
        if let Ok(meta) = Metainfo::from_bytes(&bytes) {
            check_accepted(&bytes, &meta)?;
        }
    }
}

// ---------------------------------------------------------------------------
// Tracker responses

/// `d<key>` then `depth` nested lists, then `e`: tiny, but as deep as it is long.
fn nested_in_dict(key: &str, depth: usize) -> Vec<u8> {
    let mut bytes = format!("d{}:{key}", key.len()).into_bytes();
    bytes.extend(vec![b'l'; depth]);
    bytes.extend(vec![b'e'; depth]);
    bytes.push(b'e');
    bytes
}

#[test]
fn deeply_nested_torrent_is_an_error_not_a_stack_overflow() {
    for key in ["info", "announce", "comment"] {
        let e = Metainfo::from_bytes(&nested_in_dict(key, 100_000)).unwrap_err();
        assert!(e.to_string().contains("nesting too deep"), "{key}: {e}");
    }
}

// Regression: serde_bencode recurses once per nesting level with no limit,
// and `parse_response` used to hand it the body unchecked: on a 2 MiB thread
// stack (the `tracker` thread's) about 1,500 levels overflowed in a debug
// build and 7,000 in release, aborting the whole process.
#[test]
fn deeply_nested_tracker_response_is_an_error_not_a_stack_overflow() {
    for key in ["peers", "peers6", "unknown"] {
        let result = parse_response(&nested_in_dict(key, 100_000));
        assert!(
            matches!(result, Err(TrackerError::Invalid(_))),
            "{key}: {result:?}"
        );
    }
}

/// The keys a tracker response may carry, so generated values reach the parser.
const RESPONSE_KEYS: [&str; 7] = [
    "failure reason",
    "warning message",
    "interval",
    "min interval",
    "tracker id",
    "peers",
    "peers6",
];

/// Dictionaries of tracker keys holding values of any shape.
fn response_of_any_shape() -> impl Strategy<Value = Value> {
    vec((select(RESPONSE_KEYS.to_vec()), value()), 0..5).prop_map(|entries| {
        Value::Dict(
            entries
                .into_iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v))
                .collect(),
        )
    })
}

fn compact_v4(peers: &[SocketAddrV4]) -> Vec<u8> {
    peers
        .iter()
        .flat_map(|p| [&p.ip().octets()[..], &p.port().to_be_bytes()].concat())
        .collect()
}

fn compact_v6(peers: &[SocketAddrV6]) -> Vec<u8> {
    peers
        .iter()
        .flat_map(|p| [&p.ip().octets()[..], &p.port().to_be_bytes()].concat())
        .collect()
}

/// A dictionary peer the parser skips: a host name, or a port out of range.
fn skipped_peer() -> impl Strategy<Value = Value> {
    prop_oneof![
        "[a-z]{1,10}\\.example".prop_map(|host| Value::dict(vec![
            ("ip", Value::str(&host)),
            ("port", Value::Int(80))
        ])),
        (
            any::<IpAddr>(),
            prop_oneof![Just(0i64), 65536i64..=i64::MAX, i64::MIN..0]
        )
            .prop_map(|(ip, port)| Value::dict(vec![
                ("ip", Value::str(&ip.to_string())),
                ("port", Value::Int(port)),
            ])),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn parsing_arbitrary_bytes_as_a_tracker_response_never_panics(bytes in junk()) {
        let _ = parse_response(&bytes);
    }

    #[test]
    fn tracker_responses_of_any_shape_never_panic(
        response in response_of_any_shape(),
        mutations in prop_oneof![Just(vec![]), mutations()],
    ) {
        let mut bytes = response.encode();
        mutate(&mut bytes, &mutations);
        let _ = parse_response(&bytes);
    }

    #[test]
    fn compact_peers_parse_to_their_addresses(
        peers in vec(any::<SocketAddrV4>(), 0..20),
        peers6 in vec(any::<SocketAddrV6>(), 0..5),
        interval in any::<i64>(),
    ) {
        let mut entries = vec![
            ("interval", Value::Int(interval)),
            ("peers", Value::Bytes(compact_v4(&peers))),
        ];
        if !peers6.is_empty() {
            entries.push(("peers6", Value::Bytes(compact_v6(&peers6))));
        }
        let response = parse_response(&Value::dict(entries).encode()).unwrap();

        // Compact IPv6 carries no flow info or scope id.
        let expected: Vec<SocketAddr> = peers
            .iter()
            .map(|&p| SocketAddr::V4(p))
            .chain(peers6.iter().map(|p| SocketAddr::new(IpAddr::V6(*p.ip()), p.port())))
            .collect();
        prop_assert_eq!(response.peers, expected);
        prop_assert_eq!(response.interval, u64::try_from(interval).ok().filter(|&i| i > 0));
    }

    #[test]
    fn compact_peers_not_a_multiple_of_6_bytes_are_invalid(
        bytes in vec(any::<u8>(), 0..64).prop_filter("not 6n", |b| b.len() % 6 != 0),
    ) {
        let body = Value::dict(vec![("peers", Value::Bytes(bytes))]).encode();
        prop_assert!(matches!(parse_response(&body), Err(TrackerError::Invalid(_))));
    }

    #[test]
    fn dictionary_peers_parse_to_their_addresses_skipping_the_unusable(
        peers in vec(
            prop_oneof![
                3 => (any::<IpAddr>(), 1u16..).prop_map(|(ip, port)| Ok(SocketAddr::new(ip, port))),
                1 => skipped_peer().prop_map(Err),
            ],
            0..10,
        ),
        peer_id in any::<[u8; 20]>(),
    ) {
        let list = peers
            .iter()
            .map(|peer| match peer {
                Ok(addr) => Value::dict(vec![
                    ("peer id", Value::Bytes(peer_id.to_vec())),
                    ("ip", Value::str(&addr.ip().to_string())),
                    ("port", Value::Int(addr.port().into())),
                ]),
                Err(skipped) => skipped.clone(),
            })
            .collect();
        let body = Value::dict(vec![("interval", Value::Int(60)), ("peers", Value::List(list))]);
        let response = parse_response(&body.encode()).unwrap();
        let expected: Vec<SocketAddr> = peers.into_iter().flatten().collect();
        prop_assert_eq!(response.peers, expected);
    }

    #[test]
    fn failure_reason_is_an_error_carrying_it(reason in ".*", peers in vec(any::<u8>(), 0..12)) {
        let body = Value::dict(vec![
            ("failure reason", Value::str(&reason)),
            ("peers", Value::Bytes(peers)),
        ]);
        // Carried as it will be printed: capped, control characters escaped.
        let shown = bittorrent::untrusted::show(&reason);
        prop_assert_eq!(parse_response(&body.encode()), Err(TrackerError::Failure(shown)));
    }
}
