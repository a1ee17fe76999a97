//! The extension protocol on one connection (BEP 10), as both of the peer
//! thread's modes use it: what we put in our extended handshake (with
//! `ut_pex`, BEP 11, unless peer exchange is off for the torrent), what we
//! keep of the remote's, how we answer its `ut_metadata` requests (BEP 9),
//! and the `ut_pex` messages we send and receive ([`super::pex`]).
//!
//! Pure code over [`ext`]'s codecs: no socket; the caller queues
//! the bytes. Unknown extended messages are not a violation: they are
//! ignored, since a peer may speak extensions we do not.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::ext::{
    self, ExtError, ExtHandshake, METADATA_PIECE_LEN, MetadataMessage, UT_METADATA,
    UT_METADATA_NAME,
};
use super::pex::{PexMessage, UT_PEX_NAME};

/// The id we ask peers to use for the `ut_pex` messages they send us.
pub const UT_PEX: u8 = 2;

/// Our client name and version, for the extended handshake's `v`.
pub const CLIENT_NAME: &str = concat!("bittorrent/", env!("CARGO_PKG_VERSION"));

/// What we learned from the remote's extended handshake.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemoteExtensions {
    /// The id the remote wants for `ut_metadata` messages, if it speaks it.
    pub ut_metadata: Option<u8>,
    /// How many requests the remote queues for us (`reqq`).
    pub reqq: Option<u32>,
    /// The metadata size it announced (`metadata_size`), unchecked.
    pub metadata_size: Option<u32>,
    /// Its client name (`v`).
    pub client: Option<String>,
    /// The port it listens on (`p`).
    pub listen_port: Option<u16>,
    /// The id the remote wants for `ut_pex` messages (BEP 11), if it speaks it.
    pub ut_pex: Option<u8>,
}

impl RemoteExtensions {
    /// Keeps what matters of a decoded extended handshake. A later handshake
    /// updates the earlier one (BEP 10), key by key.
    pub fn update(&mut self, handshake: &ExtHandshake) {
        if handshake.extensions.contains_key(UT_METADATA_NAME) {
            self.ut_metadata = handshake.id_of(UT_METADATA_NAME);
        }
        if handshake.extensions.contains_key(UT_PEX_NAME) {
            self.ut_pex = handshake.id_of(UT_PEX_NAME);
        }
        self.reqq = handshake.reqq.or(self.reqq);
        self.metadata_size = handshake.metadata_size.or(self.metadata_size);
        self.client = handshake.client.clone().or(self.client.take());
        self.listen_port = handshake.listen_port.or(self.listen_port);
    }
}

/// What our extended handshake says of `ut_pex` (BEP 11).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PexOffer {
    /// Offer it, as [`UT_PEX`].
    Offer,
    /// Leave it out: peer exchange is off (a private torrent, `--no-pex`).
    Omit,
    /// Name it with id 0, which turns it off (BEP 10): an earlier handshake
    /// on this connection offered it, and the torrent turned out private.
    Withdraw,
}

/// Appends our extended handshake message: `m` with `ut_metadata` and,
/// as `pex` says, `ut_pex`; `v`, `p`, `reqq`, `yourip` and, when we have
/// it, `metadata_size`.
pub fn queue_our_handshake(
    out: &mut Vec<u8>,
    listen_port: u16,
    reqq: u32,
    remote_ip: IpAddr,
    metadata_size: Option<u32>,
    pex: PexOffer,
) {
    let mut extensions = BTreeMap::from([(UT_METADATA_NAME.to_string(), UT_METADATA)]);
    match pex {
        PexOffer::Offer => extensions.insert(UT_PEX_NAME.to_string(), UT_PEX),
        PexOffer::Withdraw => extensions.insert(UT_PEX_NAME.to_string(), 0),
        PexOffer::Omit => None,
    };
    let handshake = ExtHandshake {
        extensions,
        client: Some(CLIENT_NAME.to_string()),
        listen_port: (listen_port != 0).then_some(listen_port),
        reqq: Some(reqq),
        yourip: Some(remote_ip),
        metadata_size,
    };
    let mut payload = Vec::new();
    handshake.encode(&mut payload);
    ext::encode_extended(out, ext::HANDSHAKE_ID, &payload);
}

/// Appends our answer to the remote's request for metadata piece `piece`:
/// the piece when we have the metadata and it is in range, else a reject.
pub fn queue_metadata_answer(out: &mut Vec<u8>, remote_id: u8, piece: u32, info: Option<&[u8]>) {
    let start = piece as usize * METADATA_PIECE_LEN as usize;
    let answer = match info {
        Some(info) if start < info.len() => MetadataMessage::Data {
            piece,
            total_size: info.len() as u32,
            data: &info[start..(start + METADATA_PIECE_LEN as usize).min(info.len())],
        },
        _ => MetadataMessage::Reject { piece },
    };
    let mut payload = Vec::new();
    answer.encode(&mut payload);
    ext::encode_extended(out, remote_id, &payload);
}

/// Appends a request for metadata piece `piece`.
pub fn queue_metadata_request(out: &mut Vec<u8>, remote_id: u8, piece: u32) {
    let mut payload = Vec::new();
    MetadataMessage::Request { piece }.encode(&mut payload);
    ext::encode_extended(out, remote_id, &payload);
}

/// Appends a `ut_pex` message for the remote, which asked for id `remote_id`.
pub fn queue_pex(out: &mut Vec<u8>, remote_id: u8, message: &PexMessage) {
    let mut payload = Vec::new();
    message.encode(&mut payload);
    ext::encode_extended(out, remote_id, &payload);
}

/// An extended message, as the peer thread acts on it.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming<'a> {
    /// The remote's extended handshake (already folded into its
    /// [`RemoteExtensions`]).
    Handshake,
    /// A `ut_metadata` message sent to our id.
    Metadata(MetadataMessage<'a>),
    /// A `ut_pex` message sent to our id.
    Pex(PexMessage),
    /// A `ut_pex` message while peer exchange is off for the torrent: ignored.
    PexIgnored,
    /// An extension we do not speak: ignored.
    Ignored,
}

/// Decodes the extended message `id` with `payload`, updating `remote`.
/// `pex` says whether peer exchange is on: when it is off, a `ut_pex`
/// message is not even decoded.
///
/// # Errors
/// The codec's error for a malformed handshake, `ut_metadata` or `ut_pex`
/// message.
pub fn decode<'a>(
    id: u8,
    payload: &'a [u8],
    remote: &mut RemoteExtensions,
    pex: bool,
) -> Result<Incoming<'a>, ExtError> {
    match id {
        ext::HANDSHAKE_ID => {
            remote.update(&ExtHandshake::decode(payload)?);
            Ok(Incoming::Handshake)
        }
        UT_METADATA => match MetadataMessage::decode(payload) {
            Ok(message) => Ok(Incoming::Metadata(message)),
            // BEP 9: a message type we do not know is ignored.
            Err(ExtError::UnknownMessageType(_)) => Ok(Incoming::Ignored),
            Err(e) => Err(e),
        },
        UT_PEX if !pex => Ok(Incoming::PexIgnored),
        UT_PEX => Ok(Incoming::Pex(PexMessage::decode(payload)?)),
        _ => Ok(Incoming::Ignored),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer::wire::{Limits, Message};

    fn decode_message(bytes: &[u8]) -> (u8, Vec<u8>) {
        match Message::decode(bytes, Limits::for_pieces(1))
            .unwrap()
            .unwrap()
        {
            (Message::Extended { id, payload }, used) => {
                assert_eq!(used, bytes.len());
                (id, payload.to_vec())
            }
            (other, _) => panic!("not an extended message: {other:?}"),
        }
    }

    #[test]
    fn our_handshake_offers_ut_metadata_and_says_who_we_are() {
        let mut out = Vec::new();
        queue_our_handshake(
            &mut out,
            6881,
            250,
            "127.0.0.2".parse().unwrap(),
            Some(40000),
            PexOffer::Offer,
        );
        let (id, payload) = decode_message(&out);
        assert_eq!(id, ext::HANDSHAKE_ID);
        let theirs = ExtHandshake::decode(&payload).unwrap();
        assert_eq!(theirs.id_of(UT_METADATA_NAME), Some(UT_METADATA));
        assert_eq!(theirs.id_of(UT_PEX_NAME), Some(UT_PEX));
        assert_eq!(theirs.listen_port, Some(6881));
        assert_eq!(theirs.reqq, Some(250));
        assert_eq!(theirs.metadata_size, Some(40000));
        assert_eq!(theirs.yourip, Some("127.0.0.2".parse().unwrap()));
        assert_eq!(theirs.client.as_deref(), Some(CLIENT_NAME));
    }

    #[test]
    fn metadata_requests_are_answered_in_range_and_rejected_outside() {
        let info = vec![7u8; 20000];
        let mut out = Vec::new();
        queue_metadata_answer(&mut out, 3, 1, Some(&info));
        let (id, payload) = decode_message(&out);
        assert_eq!(id, 3);
        assert_eq!(
            MetadataMessage::decode(&payload).unwrap(),
            MetadataMessage::Data {
                piece: 1,
                total_size: 20000,
                data: &info[16384..]
            }
        );
        for (piece, info) in [(2, Some(&info[..])), (0, None)] {
            let mut out = Vec::new();
            queue_metadata_answer(&mut out, 3, piece, info);
            let (_, payload) = decode_message(&out);
            assert_eq!(
                MetadataMessage::decode(&payload).unwrap(),
                MetadataMessage::Reject { piece }
            );
        }
    }

    #[test]
    fn a_later_handshake_updates_what_it_names() {
        let mut remote = RemoteExtensions::default();
        let mut first = ExtHandshake {
            reqq: Some(500),
            ..ExtHandshake::default()
        };
        first.extensions.insert(UT_METADATA_NAME.to_string(), 2);
        remote.update(&first);
        assert_eq!(remote.ut_metadata, Some(2));
        let mut second = ExtHandshake::default();
        second.extensions.insert(UT_METADATA_NAME.to_string(), 0);
        remote.update(&second);
        assert_eq!(remote.ut_metadata, None, "id 0 turns the extension off");
        assert_eq!(remote.reqq, Some(500));
    }

    #[test]
    fn a_later_decoded_handshake_with_id_0_turns_ut_metadata_off() {
        let mut remote = RemoteExtensions::default();
        let on = b"d1:md11:ut_metadatai2eee";
        assert_eq!(decode(0, on, &mut remote, true), Ok(Incoming::Handshake));
        assert_eq!(remote.ut_metadata, Some(2));
        let off = b"d1:md11:ut_metadatai0eee";
        assert_eq!(decode(0, off, &mut remote, true), Ok(Incoming::Handshake));
        assert_eq!(remote.ut_metadata, None);
    }

    #[test]
    fn unknown_extensions_are_ignored() {
        let mut remote = RemoteExtensions::default();
        assert_eq!(
            decode(9, b"anything", &mut remote, true),
            Ok(Incoming::Ignored)
        );
    }

    #[test]
    fn our_handshake_leaves_ut_pex_out_or_withdraws_it_when_pex_is_off() {
        let ip = "127.0.0.2".parse().unwrap();
        let mut out = Vec::new();
        queue_our_handshake(&mut out, 6881, 250, ip, None, PexOffer::Omit);
        let (_, payload) = decode_message(&out);
        let theirs = ExtHandshake::decode(&payload).unwrap();
        assert!(!theirs.extensions.contains_key(UT_PEX_NAME), "{theirs:?}");
        let mut out = Vec::new();
        queue_our_handshake(&mut out, 6881, 250, ip, None, PexOffer::Withdraw);
        let (_, payload) = decode_message(&out);
        let theirs = ExtHandshake::decode(&payload).unwrap();
        assert_eq!(theirs.extensions.get(UT_PEX_NAME), Some(&0));
        assert_eq!(theirs.id_of(UT_PEX_NAME), None);
    }

    #[test]
    fn the_remotes_ut_pex_id_is_kept_and_turned_off_by_id_0() {
        let mut remote = RemoteExtensions::default();
        let on = b"d1:md6:ut_pexi5eee";
        assert_eq!(decode(0, on, &mut remote, true), Ok(Incoming::Handshake));
        assert_eq!(remote.ut_pex, Some(5));
        let unrelated = b"d1:md11:ut_metadatai2eee";
        decode(0, unrelated, &mut remote, true).unwrap();
        assert_eq!(remote.ut_pex, Some(5), "a handshake without it keeps it");
        decode(0, b"d1:md6:ut_pexi0eee", &mut remote, true).unwrap();
        assert_eq!(remote.ut_pex, None);
    }

    #[test]
    fn pex_to_our_id_is_decoded_when_on_and_ignored_undecoded_when_off() {
        let mut remote = RemoteExtensions::default();
        let payload = b"d7:dropped6:\x0a\x00\x00\x03\x00\x50e";
        let Ok(Incoming::Pex(message)) = decode(UT_PEX, payload, &mut remote, true) else {
            panic!("not decoded as pex");
        };
        assert_eq!(message.dropped, vec!["10.0.0.3:80".parse().unwrap()]);
        assert_eq!(
            decode(UT_PEX, b"garbage", &mut remote, false),
            Ok(Incoming::PexIgnored)
        );
        assert_eq!(
            decode(UT_PEX, b"garbage", &mut remote, true),
            Err(ExtError::NotDictionary)
        );
    }

    #[test]
    fn a_queued_pex_message_goes_to_the_remotes_id() {
        let message = PexMessage {
            added: vec![],
            dropped: vec!["10.0.0.3:80".parse().unwrap()],
        };
        let mut out = Vec::new();
        queue_pex(&mut out, 9, &message);
        let (id, payload) = decode_message(&out);
        assert_eq!(id, 9);
        assert_eq!(PexMessage::decode(&payload), Ok(message));
    }
}
