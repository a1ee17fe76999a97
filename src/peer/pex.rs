//! The payload of BEP 11 `ut_pex` messages: the peers the sender connected
//! to (`added`, with one flag byte each in `added.f`) and the ones it lost
//! (`dropped`) since its last message, IPv4 in 6-byte compact entries and
//! IPv6 (`added6`, `added6.f`, `dropped6`) in 18-byte ones (address, then
//! port, big-endian).
//!
//! In scope: encoding into a `Vec<u8>` and decoding from a `&[u8]` the bytes
//! after the extended message id, with the payload's length bounded before
//! it is parsed and at most [`MAX_DECODED_ENTRIES`] entries taken from each
//! list. Out of scope: the `extended` message around it, whom to tell what
//! and when ([`crate::peer_table`]), and what to do with the addresses
//! learned ([`crate::peer_list`]). Pure code: no I/O.
//!
//! Decoding is lenient where BEP 10 asks to be: unknown keys and keys of the
//! wrong type are ignored; a list whose length is not a whole number of
//! entries is ignored whole (it cannot be framed); a flag string shorter than
//! its list leaves the rest of the flags at 0, a longer one has its extra
//! bytes ignored.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::bencode::{self, put_bytes};
use crate::peer::ext::ExtError;

/// Name of the peer-exchange extension in the extended handshake's `m`.
pub const UT_PEX_NAME: &str = "ut_pex";
/// Longest `ut_pex` payload accepted: 200 entries of each kind take about
/// 10 KiB; honest clients send at most 50 added and 50 dropped.
pub const MAX_PEX_LEN: usize = 16 * 1024;
/// Most entries decoded from one list (`added`, `added6`, `dropped`,
/// `dropped6`); the rest of a longer list is ignored.
pub const MAX_DECODED_ENTRIES: usize = 200;
/// Values nested deeper than this below the payload's dictionary are refused.
const MAX_DEPTH: usize = 4;

/// `added.f` bits (BEP 11).
pub mod flags {
    /// The peer prefers encrypted connections.
    pub const ENCRYPTION: u8 = 0x01;
    /// The peer is a seed (or upload-only).
    pub const SEED: u8 = 0x02;
    /// The peer supports uTP.
    pub const UTP: u8 = 0x04;
    /// The peer supports the holepunch extension.
    pub const HOLEPUNCH: u8 = 0x08;
    /// The sender reached the peer with an outgoing connection: it is
    /// reachable at this address.
    pub const REACHABLE: u8 = 0x10;
}

/// One peer of `added`/`added6`: its address and its `added.f` flag byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PexPeer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Bits of [`flags`].
    pub flags: u8,
}

/// A `ut_pex` message: peers added and dropped since the last one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PexMessage {
    /// Peers connected since the last message (IPv4 and IPv6 together).
    pub added: Vec<PexPeer>,
    /// Peers disconnected since the last message.
    pub dropped: Vec<SocketAddr>,
}

impl PexMessage {
    /// Whether the message names no peer.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.dropped.is_empty()
    }

    /// Appends the bencoded dictionary (the payload after the extended id).
    /// All six keys are written, in sorted order, empty strings included,
    /// as common clients do; IPv4 peers go in `added`/`dropped`, IPv6 ones
    /// in the `6` keys, each list in the order given.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let v4 = |a: &SocketAddr| a.is_ipv4();
        let added = |ipv4: bool| self.added.iter().filter(move |p| v4(&p.addr) == ipv4);
        let dropped = |ipv4: bool| self.dropped.iter().filter(move |a| v4(a) == ipv4);
        out.push(b'd');
        for (key, ipv4) in [(&b"added"[..], true), (b"added6", false)] {
            let compact: Vec<u8> = added(ipv4).flat_map(|p| compact(p.addr)).collect();
            put_bytes(out, key);
            put_bytes(out, &compact);
            let bits: Vec<u8> = added(ipv4).map(|p| p.flags).collect();
            put_bytes(out, &[key, b".f"].concat());
            put_bytes(out, &bits);
        }
        for (key, ipv4) in [(&b"dropped"[..], true), (b"dropped6", false)] {
            let compact: Vec<u8> = dropped(ipv4).flat_map(|&a| compact(a)).collect();
            put_bytes(out, key);
            put_bytes(out, &compact);
        }
        out.push(b'e');
    }

    /// Decodes a `ut_pex` payload: at most [`MAX_DECODED_ENTRIES`] from
    /// each list, IPv4 entries before IPv6 ones. Bytes after the dictionary
    /// are ignored; when a key repeats, the last one counts.
    ///
    /// # Errors
    /// [`ExtError::TooLong`] past [`MAX_PEX_LEN`] (checked before parsing),
    /// [`ExtError::NotDictionary`], and [`ExtError::Bencode`] for malformed
    /// bencode or nesting deeper than 4 levels.
    pub fn decode(payload: &[u8]) -> Result<PexMessage, ExtError> {
        if payload.len() > MAX_PEX_LEN {
            return Err(ExtError::TooLong {
                length: payload.len(),
                max: MAX_PEX_LEN,
            });
        }
        if payload.first() != Some(&b'd') {
            return Err(ExtError::NotDictionary);
        }
        let (entries, _end) =
            bencode::dict_entries(payload, 0, MAX_DEPTH).map_err(ExtError::Bencode)?;
        let mut keys: [&[u8]; 6] = [&[]; 6];
        for (key, span) in entries {
            let slot = match key {
                b"added" => 0,
                b"added.f" => 1,
                b"added6" => 2,
                b"added6.f" => 3,
                b"dropped" => 4,
                b"dropped6" => 5,
                _ => continue,
            };
            // A key of the wrong type counts as absent.
            keys[slot] = bencode::as_bytes(&payload[span]).unwrap_or(&[]);
        }
        let [added4, flags4, added6, flags6, dropped4, dropped6] = keys;
        let mut message = PexMessage::default();
        for (list, bits, len) in [(added4, flags4, 6), (added6, flags6, 18)] {
            let peers = entries_of(list, len).enumerate().map(|(i, addr)| PexPeer {
                addr,
                flags: bits.get(i).copied().unwrap_or(0),
            });
            message.added.extend(peers);
        }
        message.dropped.extend(entries_of(dropped4, 6));
        message.dropped.extend(entries_of(dropped6, 18));
        Ok(message)
    }
}

/// The compact form of `addr`: 4 or 16 address bytes, then the port.
fn compact(addr: SocketAddr) -> Vec<u8> {
    let mut out = match addr {
        SocketAddr::V4(a) => a.ip().octets().to_vec(),
        SocketAddr::V6(a) => a.ip().octets().to_vec(),
    };
    out.extend_from_slice(&addr.port().to_be_bytes());
    out
}

/// The first [`MAX_DECODED_ENTRIES`] addresses of a compact list of
/// `entry_len`-byte entries (6 or 18); none when `list` is not a whole
/// number of entries.
fn entries_of(list: &[u8], entry_len: usize) -> impl Iterator<Item = SocketAddr> + '_ {
    let whole = list.len().is_multiple_of(entry_len);
    let list = if whole { list } else { &[][..] };
    list.chunks_exact(entry_len)
        .take(MAX_DECODED_ENTRIES)
        .map(move |entry| {
            let (ip, port) = entry.split_at(entry_len - 2);
            let port = u16::from_be_bytes([port[0], port[1]]);
            match <[u8; 4]>::try_from(ip) {
                Ok(v4) => SocketAddr::from((Ipv4Addr::from(v4), port)),
                Err(_) => {
                    let v6 = <[u8; 16]>::try_from(ip).expect("18-byte entries hold 16 bytes");
                    SocketAddr::from((Ipv6Addr::from(v6), port))
                }
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(a: u8, port: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, a], port))
    }

    fn v6(port: u16) -> SocketAddr {
        SocketAddr::from(("2001:db8::1".parse::<Ipv6Addr>().unwrap(), port))
    }

    fn encoded(message: &PexMessage) -> Vec<u8> {
        let mut out = Vec::new();
        message.encode(&mut out);
        out
    }

    fn sample() -> PexMessage {
        PexMessage {
            added: vec![
                PexPeer {
                    addr: v4(1, 6881),
                    flags: flags::SEED | flags::REACHABLE,
                },
                PexPeer {
                    addr: v6(0x1ae1),
                    flags: flags::ENCRYPTION,
                },
                PexPeer {
                    addr: v4(2, 0x0102),
                    flags: 0,
                },
            ],
            dropped: vec![v4(3, 80), v6(443)],
        }
    }

    const SAMPLE_BYTES: &[u8] = b"d5:added12:\x0a\x00\x00\x01\x1a\xe1\x0a\x00\x00\x02\x01\x02\
        7:added.f2:\x12\x00\
        6:added618:\x20\x01\x0d\xb8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x1a\xe1\
        8:added6.f1:\x01\
        7:dropped6:\x0a\x00\x00\x03\x00\x50\
        8:dropped618:\x20\x01\x0d\xb8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x01\xbbe";

    #[test]
    fn encodes_every_key_with_compact_entries_and_flags() {
        assert_eq!(encoded(&sample()), SAMPLE_BYTES);
    }

    #[test]
    fn an_empty_message_writes_six_empty_strings() {
        assert_eq!(
            encoded(&PexMessage::default()),
            b"d5:added0:7:added.f0:6:added60:8:added6.f0:7:dropped0:8:dropped60:e"
        );
        assert!(PexMessage::default().is_empty());
    }

    #[test]
    fn decodes_what_it_encodes_ipv4_before_ipv6() {
        let decoded = PexMessage::decode(SAMPLE_BYTES).unwrap();
        let mut expected = sample();
        // Decoding groups the IPv4 entries first.
        expected.added.swap(1, 2);
        assert_eq!(decoded, expected);
    }

    #[test]
    fn decodes_the_keys_libtorrent_sends_with_only_ipv4() {
        let bytes = b"d5:added6:\x7f\x00\x00\x01\x1b\x587:added.f1:\x107:dropped0:e";
        let message = PexMessage::decode(bytes).unwrap();
        assert_eq!(
            message.added,
            vec![PexPeer {
                addr: SocketAddr::from(([127, 0, 0, 1], 7000)),
                flags: flags::REACHABLE
            }]
        );
        assert!(message.dropped.is_empty());
    }

    #[test]
    fn every_truncation_is_an_error_and_never_a_panic() {
        for cut in 0..SAMPLE_BYTES.len() {
            assert!(
                PexMessage::decode(&SAMPLE_BYTES[..cut]).is_err(),
                "cut {cut}"
            );
        }
    }

    #[test]
    fn a_list_that_is_not_whole_entries_is_ignored_whole() {
        let bytes = b"d5:added7:\x0a\x00\x00\x01\x1a\xe1\x007:dropped6:\x0a\x00\x00\x03\x00\x50e";
        let message = PexMessage::decode(bytes).unwrap();
        assert!(message.added.is_empty());
        assert_eq!(message.dropped, vec![v4(3, 80)]);
        let bytes6 = b"d6:added66:\x0a\x00\x00\x01\x1a\xe1e";
        assert!(
            PexMessage::decode(bytes6).unwrap().is_empty(),
            "6 bytes in added6"
        );
    }

    #[test]
    fn short_flags_leave_zeros_and_long_flags_are_cut() {
        let bytes = b"d5:added12:\x0a\x00\x00\x01\x00\x01\x0a\x00\x00\x02\x00\x027:added.f1:\x02e";
        let message = PexMessage::decode(bytes).unwrap();
        let got: Vec<u8> = message.added.iter().map(|p| p.flags).collect();
        assert_eq!(got, [flags::SEED, 0]);
        let bytes = b"d5:added6:\x0a\x00\x00\x01\x00\x017:added.f3:\x02\x10\x10e";
        let message = PexMessage::decode(bytes).unwrap();
        assert_eq!(message.added.len(), 1);
        assert_eq!(message.added[0].flags, flags::SEED);
    }

    #[test]
    fn unknown_keys_and_wrong_types_are_ignored() {
        let bytes = b"d5:addedi5e7:added.fle4:zzzzd1:ai1ee7:dropped6:\x0a\x00\x00\x03\x00\x50e";
        let message = PexMessage::decode(bytes).unwrap();
        assert!(message.added.is_empty());
        assert_eq!(message.dropped, vec![v4(3, 80)]);
    }

    #[test]
    fn at_most_200_entries_are_taken_from_a_list() {
        let mut list = Vec::new();
        for i in 0..(MAX_DECODED_ENTRIES as u16 + 50) {
            list.extend_from_slice(&[10, 0, (i >> 8) as u8, i as u8, 0, 1]);
        }
        let mut bytes = b"d5:added".to_vec();
        bytes.extend_from_slice(format!("{}:", list.len()).as_bytes());
        bytes.extend_from_slice(&list);
        bytes.push(b'e');
        let message = PexMessage::decode(&bytes).unwrap();
        assert_eq!(message.added.len(), MAX_DECODED_ENTRIES);
        assert_eq!(
            message.added[199].addr,
            SocketAddr::from(([10, 0, 0, 199], 1))
        );
    }

    #[test]
    fn a_payload_longer_than_the_bound_is_refused_before_parsing() {
        let mut bytes = b"d5:added16386:".to_vec();
        bytes.resize(bytes.len() + 16386, 0);
        bytes.push(b'e');
        assert_eq!(
            PexMessage::decode(&bytes),
            Err(ExtError::TooLong {
                length: bytes.len(),
                max: MAX_PEX_LEN
            })
        );
    }

    #[test]
    fn a_payload_that_is_not_a_dictionary_or_is_malformed_is_an_error() {
        for bytes in [&b""[..], b"le", b"i1e", b"5:added"] {
            assert_eq!(PexMessage::decode(bytes), Err(ExtError::NotDictionary));
        }
        for bytes in [
            &b"d5:added"[..],
            b"d5:added3:abe",
            b"di1ei2ee",
            b"d1:xlllllleeeeeee",
        ] {
            assert!(
                matches!(PexMessage::decode(bytes), Err(ExtError::Bencode(_))),
                "{bytes:?}"
            );
        }
    }

    #[test]
    fn bytes_after_the_dictionary_are_ignored() {
        let message = PexMessage::decode(b"d7:dropped6:\x0a\x00\x00\x03\x00\x50eXYZ").unwrap();
        assert_eq!(message.dropped, vec![v4(3, 80)]);
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn any_addr() -> impl Strategy<Value = SocketAddr> {
            prop_oneof![
                (any::<[u8; 4]>(), any::<u16>())
                    .prop_map(|(ip, port)| SocketAddr::from((Ipv4Addr::from(ip), port))),
                (any::<[u8; 16]>(), any::<u16>())
                    .prop_map(|(ip, port)| SocketAddr::from((Ipv6Addr::from(ip), port))),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig { failure_persistence: None, ..Default::default() })]

            #[test]
            fn arbitrary_bytes_never_panic_nor_exceed_the_entry_bound(
                bytes in proptest::collection::vec(any::<u8>(), 0..2048)
            ) {
                if let Ok(message) = PexMessage::decode(&bytes) {
                    prop_assert!(message.added.len() <= 2 * MAX_DECODED_ENTRIES);
                    prop_assert!(message.dropped.len() <= 2 * MAX_DECODED_ENTRIES);
                }
                let mut wrapped = b"d5:added".to_vec();
                wrapped.extend_from_slice(format!("{}:", bytes.len()).as_bytes());
                wrapped.extend_from_slice(&bytes);
                wrapped.push(b'e');
                let message = PexMessage::decode(&wrapped).unwrap();
                let expected = if bytes.len() % 6 == 0 { bytes.len() / 6 } else { 0 };
                prop_assert_eq!(message.added.len(), expected.min(MAX_DECODED_ENTRIES));
            }

            #[test]
            fn messages_round_trip_with_ipv4_first(
                added in proptest::collection::vec((any_addr(), any::<u8>()), 0..60),
                dropped in proptest::collection::vec(any_addr(), 0..60),
            ) {
                let message = PexMessage {
                    added: added.iter().map(|&(addr, flags)| PexPeer { addr, flags }).collect(),
                    dropped: dropped.clone(),
                };
                let decoded = PexMessage::decode(&encoded(&message)).unwrap();
                let (mut v4, v6): (Vec<PexPeer>, Vec<PexPeer>) =
                    message.added.iter().partition(|p| p.addr.is_ipv4());
                v4.extend(v6);
                prop_assert_eq!(decoded.added, v4);
                let (mut d4, d6): (Vec<SocketAddr>, Vec<SocketAddr>) =
                    dropped.iter().partition(|a| a.is_ipv4());
                d4.extend(d6);
                prop_assert_eq!(decoded.dropped, d4);
            }
        }
    }
}
