// Property tests over the extension protocol's decoders (BEP 10's handshake,
// BEP 9's metadata messages), alone and inside `extended` peer messages.

use bittorrent::peer::ext::{
    ExtError, ExtHandshake, MAX_HANDSHAKE_LEN, MAX_METADATA_LEN, MAX_METADATA_MESSAGE_LEN,
    METADATA_PIECE_LEN, MetadataMessage, encode_extended,
};
use std::net::IpAddr;

use bittorrent::peer::wire::Message;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;

use super::{Value, config, junk, mutate, mutations, small_limits, value};

/// Any extension handshake. Names map to non-zero ids, since decoding drops
/// the disabled ones; client names are printable, since decoding escapes
/// control characters (its unit tests cover that).
fn ext_handshake() -> impl Strategy<Value = ExtHandshake> {
    (
        proptest::collection::btree_map(".{0,12}", 1u8..=255, 0..6),
        proptest::option::of("[a-zA-Z0-9 .:/_µ東-]{0,20}"),
        proptest::option::of(any::<u16>()),
        proptest::option::of(any::<u32>()),
        proptest::option::of(any::<IpAddr>()),
        proptest::option::of(any::<u32>()),
    )
        .prop_map(
            |(extensions, client, listen_port, reqq, yourip, metadata_size)| ExtHandshake {
                extensions,
                client,
                listen_port,
                reqq,
                yourip,
                metadata_size,
            },
        )
}

/// A `ut_metadata` message whose data is owned, so a strategy can generate it.
#[derive(Debug, Clone)]
enum OwnedMetadata {
    Request(u32),
    Data {
        piece: u32,
        total_size: u32,
        data: Vec<u8>,
    },
    Reject(u32),
}

impl OwnedMetadata {
    fn message(&self) -> MetadataMessage<'_> {
        match self {
            OwnedMetadata::Request(piece) => MetadataMessage::Request { piece: *piece },
            OwnedMetadata::Data {
                piece,
                total_size,
                data,
            } => MetadataMessage::Data {
                piece: *piece,
                total_size: *total_size,
                data,
            },
            OwnedMetadata::Reject(piece) => MetadataMessage::Reject { piece: *piece },
        }
    }

    fn encoded(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.message().encode(&mut out);
        out
    }
}

/// Every `ut_metadata` message the decoder accepts.
fn metadata_message() -> impl Strategy<Value = OwnedMetadata> {
    prop_oneof![
        any::<u32>().prop_map(OwnedMetadata::Request),
        any::<u32>().prop_map(OwnedMetadata::Reject),
        (
            any::<u32>(),
            0..=MAX_METADATA_LEN,
            prop_oneof![
                vec(any::<u8>(), 0..64),
                vec(any::<u8>(), 0..=METADATA_PIECE_LEN as usize)
            ],
        )
            .prop_map(|(piece, total_size, data)| OwnedMetadata::Data {
                piece,
                total_size,
                data
            }),
    ]
}

/// The keys the extension decoders read, so generated values reach them.
const EXT_KEYS: [&str; 9] = [
    "m",
    "v",
    "p",
    "reqq",
    "yourip",
    "metadata_size",
    "msg_type",
    "piece",
    "total_size",
];

/// Dictionaries of extension keys holding values of any shape, `m` holding
/// dictionaries of any values.
fn ext_dict_of_any_shape() -> impl Strategy<Value = Value> {
    let value = prop_oneof![
        value(),
        (-2i64..=300).prop_map(Value::Int),
        vec((vec(any::<u8>(), 0..8), value()), 0..4).prop_map(Value::Dict),
    ];
    vec((select(EXT_KEYS.to_vec()), value), 0..6).prop_map(|entries| {
        Value::Dict(
            entries
                .into_iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v))
                .collect(),
        )
    })
}

/// Checks what `MetadataMessage::decode` promises about `payload`.
fn check_metadata_decode(payload: &[u8]) -> Result<(), TestCaseError> {
    match MetadataMessage::decode(payload) {
        Ok(MetadataMessage::Data {
            total_size, data, ..
        }) => {
            prop_assert!(data.len() <= METADATA_PIECE_LEN as usize);
            prop_assert!(total_size <= MAX_METADATA_LEN);
            prop_assert!(payload.ends_with(data));
            prop_assert!(data.len() < payload.len(), "the dictionary comes first");
        }
        Ok(_) => {}
        Err(ExtError::TooLong { length, max }) => {
            prop_assert_eq!(length, payload.len());
            prop_assert!(length > max);
        }
        Err(_) => {}
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn decoding_arbitrary_bytes_as_extension_payloads_never_panics(bytes in junk()) {
        let _ = ExtHandshake::decode(&bytes);
        check_metadata_decode(&bytes)?;
    }

    #[test]
    fn extension_dictionaries_of_any_shape_never_panic(
        dict in ext_dict_of_any_shape(),
        mutations in prop_oneof![Just(vec![]), mutations()],
        trailing in vec(any::<u8>(), 0..32),
    ) {
        let mut bytes = dict.encode();
        mutate(&mut bytes, &mutations);
        bytes.extend(trailing);
        if let Ok(hs) = ExtHandshake::decode(&bytes) {
            prop_assert!(hs.extensions.values().all(|&id| id != 0));
        }
        check_metadata_decode(&bytes)?;
    }

    #[test]
    fn extension_handshake_round_trips(hs in ext_handshake()) {
        let mut bytes = Vec::new();
        hs.encode(&mut bytes);
        prop_assert!(bytes.len() <= MAX_HANDSHAKE_LEN);
        prop_assert_eq!(ExtHandshake::decode(&bytes), Ok(hs.clone()));
        for (name, &id) in &hs.extensions {
            prop_assert_eq!(hs.id_of(name), Some(id));
        }
    }

    #[test]
    fn every_truncation_of_an_extension_handshake_is_an_error(hs in ext_handshake()) {
        let mut bytes = Vec::new();
        hs.encode(&mut bytes);
        for cut in 0..bytes.len() {
            prop_assert!(ExtHandshake::decode(&bytes[..cut]).is_err(), "cut {}", cut);
        }
    }

    #[test]
    fn metadata_message_round_trips(
        owned in metadata_message(),
        trailing in vec(any::<u8>(), 0..16),
    ) {
        let encoded = owned.encoded();
        prop_assert!(encoded.len() <= MAX_METADATA_MESSAGE_LEN);
        prop_assert_eq!(MetadataMessage::decode(&encoded), Ok(owned.message()));
        // Bytes after a request's or a reject's dictionary are ignored.
        if !matches!(owned, OwnedMetadata::Data { .. }) {
            let mut longer = encoded.clone();
            longer.extend(&trailing);
            prop_assert_eq!(MetadataMessage::decode(&longer), Ok(owned.message()));
        }
    }

    #[test]
    fn every_truncation_of_a_metadata_dictionary_is_an_error(owned in metadata_message()) {
        let encoded = owned.encoded();
        let data_len = match &owned {
            OwnedMetadata::Data { data, .. } => data.len(),
            _ => 0,
        };
        for cut in 0..encoded.len() - data_len {
            prop_assert!(MetadataMessage::decode(&encoded[..cut]).is_err(), "cut {}", cut);
        }
    }

    #[test]
    fn extended_messages_carry_metadata_messages_through_the_wire_decoder(
        owned in metadata_message(),
        ext_id in any::<u8>(),
        limits in small_limits(),
    ) {
        let payload = owned.encoded();
        let mut frame = Vec::new();
        encode_extended(&mut frame, ext_id, &payload);
        let decoded = Message::decode(&frame, limits);
        prop_assert_eq!(
            decoded,
            Ok(Some((Message::Extended { id: ext_id, payload: &payload }, frame.len())))
        );
        prop_assert_eq!(MetadataMessage::decode(&payload), Ok(owned.message()));
    }
}
