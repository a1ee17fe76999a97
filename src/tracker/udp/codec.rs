//! The datagrams of the UDP tracker protocol (BEP 15), as pure functions
//! over bytes.
//!
//! In scope: encoding the connect, announce and scrape requests into a
//! `Vec<u8>`, and decoding the tracker's answers from one received datagram,
//! checking its action and transaction id. Out of scope: sockets, timers,
//! retransmission and host names ([`super::UdpTracker`] and
//! [`super::schedule`] own those).
//!
//! Every integer is big-endian. A decoder answers `Ok(None)` for a datagram
//! that carries another transaction id (a late answer to an earlier
//! request, or noise): the caller keeps waiting for its own. A datagram
//! with our transaction id and action 3 is the tracker's error message,
//! reported as [`TrackerError::Failure`] like HTTP's `failure reason`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::metainfo::InfoHash;
use crate::tracker::{AnnounceRequest, Event, TrackerError};
use crate::untrusted;

/// The magic constant that opens a connect request.
pub const PROTOCOL_ID: u64 = 0x0417_2710_1980;

/// Action of a connect request and its answer.
pub const ACTION_CONNECT: u32 = 0;
/// Action of an announce request and its answer.
pub const ACTION_ANNOUNCE: u32 = 1;
/// Action of a scrape request and its answer.
pub const ACTION_SCRAPE: u32 = 2;
/// Action of the tracker's error answer.
pub const ACTION_ERROR: u32 = 3;

/// Length of a connect request.
pub const CONNECT_REQUEST_LEN: usize = 16;
/// Length of an announce request (without BEP 41 options).
pub const ANNOUNCE_REQUEST_LEN: usize = 98;
/// Length of an announce answer before its peers.
const ANNOUNCE_HEADER_LEN: usize = 20;
/// Most info-hashes one scrape may carry (BEP 15: about 74 fit a datagram).
pub const MAX_SCRAPE_HASHES: usize = 74;

/// Appends a connect request with `transaction_id` to `out`.
pub fn encode_connect(transaction_id: u32, out: &mut Vec<u8>) {
    out.extend(PROTOCOL_ID.to_be_bytes());
    out.extend(ACTION_CONNECT.to_be_bytes());
    out.extend(transaction_id.to_be_bytes());
}

/// The number BEP 15 gives an announce's event.
pub fn event_number(event: Option<Event>) -> u32 {
    match event {
        None => 0,
        Some(Event::Completed) => 1,
        Some(Event::Started) => 2,
        Some(Event::Stopped) => 3,
    }
}

/// Appends an announce request to `out`: `req`'s fields, the connection
/// id from the connect answer, our `key`, and IP 0 (the tracker takes the
/// address the datagram came from).
pub fn encode_announce(
    connection_id: u64,
    transaction_id: u32,
    key: u32,
    req: &AnnounceRequest,
    out: &mut Vec<u8>,
) {
    out.extend(connection_id.to_be_bytes());
    out.extend(ACTION_ANNOUNCE.to_be_bytes());
    out.extend(transaction_id.to_be_bytes());
    out.extend(req.info_hash.0);
    out.extend(req.peer_id.0);
    out.extend(req.downloaded.to_be_bytes());
    out.extend(req.left.to_be_bytes());
    out.extend(req.uploaded.to_be_bytes());
    out.extend(event_number(req.event).to_be_bytes());
    out.extend(0u32.to_be_bytes());
    out.extend(key.to_be_bytes());
    let num_want = i32::try_from(req.numwant).unwrap_or(i32::MAX);
    out.extend(num_want.to_be_bytes());
    out.extend(req.port.to_be_bytes());
}

/// Appends a scrape request for `info_hashes` (at most
/// [`MAX_SCRAPE_HASHES`]; more are left out) to `out`.
pub fn encode_scrape(
    connection_id: u64,
    transaction_id: u32,
    info_hashes: &[InfoHash],
    out: &mut Vec<u8>,
) {
    out.extend(connection_id.to_be_bytes());
    out.extend(ACTION_SCRAPE.to_be_bytes());
    out.extend(transaction_id.to_be_bytes());
    for hash in info_hashes.iter().take(MAX_SCRAPE_HASHES) {
        out.extend(hash.0);
    }
}

/// An announce answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpAnnounce {
    /// Seconds until the next announce.
    pub interval: u32,
    /// Peers without the whole torrent.
    pub leechers: u32,
    /// Peers with the whole torrent.
    pub seeders: u32,
    /// The peers, as many as the datagram holds.
    pub peers: Vec<SocketAddr>,
}

/// What a scrape answer says of one torrent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScrapeStats {
    /// Peers with the whole torrent.
    pub seeders: u32,
    /// Downloads the tracker has seen complete.
    pub completed: u32,
    /// Peers without the whole torrent.
    pub leechers: u32,
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

/// Checks the header of `bytes` against `transaction_id` and `action`.
/// `Ok(false)`: another transaction, to ignore. `Ok(true)`: ours, with the
/// action expected and at least `len` bytes.
///
/// # Errors
/// [`TrackerError::Failure`] for an error answer to us,
/// [`TrackerError::Invalid`] for another action or a short answer.
fn check_header(
    bytes: &[u8],
    transaction_id: u32,
    action: u32,
    len: usize,
    what: &str,
) -> Result<bool, TrackerError> {
    if bytes.len() < 8 || u32_at(bytes, 4) != transaction_id {
        return Ok(false);
    }
    match u32_at(bytes, 0) {
        ACTION_ERROR => Err(TrackerError::Failure(untrusted::show_bytes(&bytes[8..]))),
        a if a != action => Err(TrackerError::Invalid(format!(
            "action {a} in answer to a {what} (action {action})"
        ))),
        _ if bytes.len() < len => Err(TrackerError::Invalid(format!(
            "{what} answer of {} bytes, shorter than {len}",
            bytes.len()
        ))),
        _ => Ok(true),
    }
}

/// Decodes the answer to the connect request `transaction_id`: the
/// connection id, or `None` when the datagram is another transaction's.
///
/// # Errors
/// [`TrackerError::Failure`] with the tracker's message (action 3);
/// [`TrackerError::Invalid`] for another action or fewer than 16 bytes.
pub fn decode_connect(bytes: &[u8], transaction_id: u32) -> Result<Option<u64>, TrackerError> {
    if !check_header(bytes, transaction_id, ACTION_CONNECT, 16, "connect")? {
        return Ok(None);
    }
    let id = u64::from_be_bytes(bytes[8..16].try_into().expect("8 bytes"));
    Ok(Some(id))
}

/// Decodes the answer to the announce `transaction_id`, with 18-byte IPv6
/// peer entries when the tracker was reached over IPv6 (`ipv6`), 6-byte
/// IPv4 ones otherwise; `None` when the datagram is another transaction's.
/// The peer count is what the datagram holds, so it is bounded by its size.
///
/// # Errors
/// [`TrackerError::Failure`] with the tracker's message (action 3);
/// [`TrackerError::Invalid`] for another action, fewer than 20 bytes, or
/// peers that are not whole entries.
pub fn decode_announce(
    bytes: &[u8],
    transaction_id: u32,
    ipv6: bool,
) -> Result<Option<UdpAnnounce>, TrackerError> {
    if !check_header(
        bytes,
        transaction_id,
        ACTION_ANNOUNCE,
        ANNOUNCE_HEADER_LEN,
        "announce",
    )? {
        return Ok(None);
    }
    let entries = &bytes[ANNOUNCE_HEADER_LEN..];
    let entry_len = if ipv6 { 18 } else { 6 };
    if !entries.len().is_multiple_of(entry_len) {
        return Err(TrackerError::Invalid(format!(
            "announce answer holds {} bytes of peers, not a multiple of {entry_len}",
            entries.len()
        )));
    }
    let peers = entries
        .chunks_exact(entry_len)
        .map(|c| {
            let (ip, port) = c.split_at(entry_len - 2);
            let ip = match <[u8; 16]>::try_from(ip) {
                Ok(v6) => IpAddr::V6(Ipv6Addr::from(v6)),
                Err(_) => IpAddr::V4(Ipv4Addr::new(ip[0], ip[1], ip[2], ip[3])),
            };
            SocketAddr::new(ip, u16::from_be_bytes([port[0], port[1]]))
        })
        .collect();
    Ok(Some(UdpAnnounce {
        interval: u32_at(bytes, 8),
        leechers: u32_at(bytes, 12),
        seeders: u32_at(bytes, 16),
        peers,
    }))
}

/// Decodes the answer to the scrape `transaction_id` of `count` torrents;
/// `None` when the datagram is another transaction's.
///
/// # Errors
/// [`TrackerError::Failure`] with the tracker's message (action 3);
/// [`TrackerError::Invalid`] for another action or an answer that does not
/// hold 12 bytes for each of the `count` torrents.
pub fn decode_scrape(
    bytes: &[u8],
    transaction_id: u32,
    count: usize,
) -> Result<Option<Vec<ScrapeStats>>, TrackerError> {
    let count = count.min(MAX_SCRAPE_HASHES);
    if !check_header(bytes, transaction_id, ACTION_SCRAPE, 8, "scrape")? {
        return Ok(None);
    }
    if bytes.len() != 8 + 12 * count {
        return Err(TrackerError::Invalid(format!(
            "scrape answer of {} bytes for {count} torrents (expected {})",
            bytes.len(),
            8 + 12 * count
        )));
    }
    Ok(Some(
        bytes[8..]
            .chunks_exact(12)
            .map(|c| ScrapeStats {
                seeders: u32_at(c, 0),
                completed: u32_at(c, 4),
                leechers: u32_at(c, 8),
            })
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracker::tests::request;

    const TX: u32 = 0xdead_beef;

    #[test]
    fn connect_request_is_the_magic_action_and_transaction_id() {
        let mut out = Vec::new();
        encode_connect(TX, &mut out);
        assert_eq!(
            out,
            [
                0x00, 0x00, 0x04, 0x17, 0x27, 0x10, 0x19, 0x80, 0, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef
            ]
        );
        assert_eq!(out.len(), CONNECT_REQUEST_LEN);
    }

    #[test]
    fn announce_request_has_every_field_in_place() {
        let mut out = Vec::new();
        let mut req = request(Some(Event::Stopped));
        req.numwant = u32::MAX;
        encode_announce(0x0102_0304_0506_0708, TX, 0xcafe_f00d, &req, &mut out);
        let mut want = vec![1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef];
        want.extend(req.info_hash.0);
        want.extend(req.peer_id.0);
        want.extend([0, 0, 0, 0, 0, 0, 0, 2]); // downloaded
        want.extend([0, 0, 0, 0, 0, 0, 0, 3]); // left
        want.extend([0, 0, 0, 0, 0, 0, 0, 1]); // uploaded
        want.extend([0, 0, 0, 3]); // stopped
        want.extend([0, 0, 0, 0]); // IP: the sender's
        want.extend([0xca, 0xfe, 0xf0, 0x0d]); // key
        want.extend([0x7f, 0xff, 0xff, 0xff]); // num_want, capped to i32
        want.extend([0x1a, 0xe1]); // port 6881
        assert_eq!(out, want);
        assert_eq!(out.len(), ANNOUNCE_REQUEST_LEN);
    }

    #[test]
    fn events_have_the_numbers_of_bep_15() {
        assert_eq!(event_number(None), 0);
        assert_eq!(event_number(Some(Event::Completed)), 1);
        assert_eq!(event_number(Some(Event::Started)), 2);
        assert_eq!(event_number(Some(Event::Stopped)), 3);
    }

    #[test]
    fn scrape_request_lists_the_hashes_up_to_the_bound() {
        let mut out = Vec::new();
        encode_scrape(
            7,
            TX,
            &[InfoHash([0xaa; 20]), InfoHash([0xbb; 20])],
            &mut out,
        );
        let mut want = vec![0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 2, 0xde, 0xad, 0xbe, 0xef];
        want.extend([0xaa; 20]);
        want.extend([0xbb; 20]);
        assert_eq!(out, want);
        let mut out = Vec::new();
        encode_scrape(7, TX, &vec![InfoHash([1; 20]); 100], &mut out);
        assert_eq!(out.len(), 16 + 20 * MAX_SCRAPE_HASHES);
    }

    fn connect_answer() -> Vec<u8> {
        vec![0, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8]
    }

    #[test]
    fn connect_answer_gives_the_connection_id() {
        assert_eq!(
            decode_connect(&connect_answer(), TX),
            Ok(Some(0x0102_0304_0506_0708))
        );
        // Trailing bytes are allowed (later versions may add fields).
        let mut longer = connect_answer();
        longer.push(9);
        assert_eq!(decode_connect(&longer, TX), Ok(Some(0x0102_0304_0506_0708)));
    }

    #[test]
    fn every_short_connect_answer_is_ignored_or_invalid() {
        let answer = connect_answer();
        for len in 0..answer.len() {
            let r = decode_connect(&answer[..len], TX);
            if len < 8 {
                // Too short to carry a transaction id: not ours.
                assert_eq!(r, Ok(None), "{len} bytes");
            } else {
                assert!(
                    matches!(&r, Err(TrackerError::Invalid(m)) if m.contains(&format!("{len} bytes"))),
                    "{len} bytes: {r:?}"
                );
            }
        }
    }

    #[test]
    fn an_answer_to_another_transaction_is_ignored() {
        assert_eq!(decode_connect(&connect_answer(), TX + 1), Ok(None));
        assert_eq!(decode_announce(&connect_answer(), TX + 1, false), Ok(None));
        // Even an error message, which may be for an earlier request.
        let mut error = vec![0, 0, 0, 3, 0, 0, 0, 1];
        error.extend(b"no");
        assert_eq!(decode_announce(&error, TX, false), Ok(None));
    }

    #[test]
    fn an_answer_with_another_action_is_invalid() {
        let r = decode_announce(&connect_answer(), TX, false);
        assert_eq!(
            r,
            Err(TrackerError::Invalid(
                "action 0 in answer to a announce (action 1)".into()
            ))
        );
    }

    #[test]
    fn an_error_answer_is_a_failure_with_its_message_escaped() {
        let mut error = vec![0, 0, 0, 3, 0xde, 0xad, 0xbe, 0xef];
        error.extend(b"torrent not registered\x1b[2J");
        let want = TrackerError::Failure("torrent not registered\\u{1b}[2J".into());
        assert_eq!(decode_connect(&error, TX), Err(want.clone()));
        assert_eq!(decode_announce(&error, TX, true), Err(want.clone()));
        assert_eq!(decode_scrape(&error, TX, 1), Err(want));
        // A huge message is capped.
        error.resize(60_000, b'!');
        let Err(TrackerError::Failure(m)) = decode_connect(&error, TX) else {
            panic!("an error answer is a failure");
        };
        assert!(m.len() < 300, "{} bytes", m.len());
    }

    fn announce_answer(peers: &[u8]) -> Vec<u8> {
        let mut a = vec![0, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef];
        a.extend([0, 0, 0x07, 0x08]); // interval 1800
        a.extend([0, 0, 0, 5]); // leechers
        a.extend([0, 0, 0, 9]); // seeders
        a.extend(peers);
        a
    }

    #[test]
    fn announce_answer_gives_interval_counts_and_ipv4_peers() {
        let answer = announce_answer(&[127, 0, 0, 1, 0x1a, 0xe1, 10, 0, 0, 2, 0, 80]);
        assert_eq!(
            decode_announce(&answer, TX, false),
            Ok(Some(UdpAnnounce {
                interval: 1800,
                leechers: 5,
                seeders: 9,
                peers: vec![
                    "127.0.0.1:6881".parse().unwrap(),
                    "10.0.0.2:80".parse().unwrap()
                ],
            }))
        );
    }

    #[test]
    fn announce_answer_over_ipv6_has_18_byte_entries() {
        let mut entry = [0u8; 18];
        entry[15] = 1;
        entry[16..].copy_from_slice(&[0x1b, 0x58]);
        let answer = announce_answer(&entry);
        let r = decode_announce(&answer, TX, true).unwrap().unwrap();
        assert_eq!(r.peers, vec!["[::1]:7000".parse().unwrap()]);
        // The same 18 bytes are three IPv4 entries over IPv4.
        let r = decode_announce(&answer, TX, false).unwrap().unwrap();
        assert_eq!(r.peers.len(), 3);
    }

    #[test]
    fn every_cut_of_an_announce_answer_is_invalid_or_whole_peers() {
        let answer = announce_answer(&[127, 0, 0, 1, 0x1a, 0xe1, 10, 0, 0, 2, 0, 80]);
        for len in 8..answer.len() {
            let r = decode_announce(&answer[..len], TX, false);
            match len {
                20 | 26 => assert_eq!(r.unwrap().unwrap().peers.len(), (len - 20) / 6),
                _ => assert!(matches!(r, Err(TrackerError::Invalid(_))), "{len}: {r:?}"),
            }
        }
    }

    #[test]
    fn scrape_answer_gives_the_counts_of_each_torrent() {
        let mut answer = vec![0, 0, 0, 2, 0xde, 0xad, 0xbe, 0xef];
        answer.extend([0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3]);
        answer.extend([0, 0, 0, 4, 0, 0, 0, 5, 0, 0, 0, 6]);
        assert_eq!(
            decode_scrape(&answer, TX, 2),
            Ok(Some(vec![
                ScrapeStats {
                    seeders: 1,
                    completed: 2,
                    leechers: 3
                },
                ScrapeStats {
                    seeders: 4,
                    completed: 5,
                    leechers: 6
                },
            ]))
        );
        for len in 8..answer.len() {
            let r = decode_scrape(&answer[..len], TX, 2);
            assert!(matches!(r, Err(TrackerError::Invalid(_))), "{len}: {r:?}");
        }
    }
}
