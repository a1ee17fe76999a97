//! HTTP(S) trackers (BEP 3 "trackers", BEP 23 compact peers, BEP 7 `peers6`):
//! the announce URL and the bencoded answer as pure code, and
//! [`HttpTracker`], which sends one announce with ureq.
//!
//! An announce URL comes from a torrent or a magnet link, so it is checked
//! ([`check_url`]) before anything is sent: a port that is not a number from
//! 1 to 65535 is refused instead of quietly becoming port 80. A tracker's
//! texts (`failure reason`, `warning message`) are capped and escaped
//! ([`crate::untrusted`]) before they reach an error or the log.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use log::debug;
use serde::Deserialize;

use super::{AnnounceRequest, AnnounceResponse, Announcer, Event, TrackerError};
use crate::untrusted;

/// Percent-encodes raw bytes for a URL query, keeping RFC 3986 unreserved characters.
pub fn percent_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Builds the announce GET URL for `base` (which may already carry a query).
pub fn announce_url(base: &str, req: &AnnounceRequest, tracker_id: Option<&[u8]>) -> String {
    let sep = if base.contains('?') { '&' } else { '?' };
    let mut url = format!(
        "{base}{sep}info_hash={}&peer_id={}&port={}&uploaded={}&downloaded={}&left={}&compact=1&numwant={}",
        percent_encode(&req.info_hash.0),
        percent_encode(&req.peer_id.0),
        req.port,
        req.uploaded,
        req.downloaded,
        req.left,
        req.numwant,
    );
    if let Some(event) = req.event {
        url.push_str("&event=");
        url.push_str(event.as_str());
    }
    if let Some(id) = tracker_id {
        url.push_str("&trackerid=");
        url.push_str(&percent_encode(id));
    }
    url
}

#[derive(Deserialize)]
struct RawResponse {
    #[serde(rename = "failure reason", default, with = "serde_bytes")]
    failure_reason: Option<Vec<u8>>,
    #[serde(rename = "warning message", default, with = "serde_bytes")]
    warning_message: Option<Vec<u8>>,
    interval: Option<i64>,
    #[serde(rename = "min interval")]
    min_interval: Option<i64>,
    #[serde(rename = "tracker id", default, with = "serde_bytes")]
    tracker_id: Option<Vec<u8>>,
    peers: Option<RawPeers>,
    #[serde(default, with = "serde_bytes")]
    peers6: Option<Vec<u8>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawPeers {
    Compact(#[serde(with = "serde_bytes")] Vec<u8>),
    Dicts(Vec<RawPeer>),
}

#[derive(Deserialize)]
struct RawPeer {
    #[serde(with = "serde_bytes")]
    ip: Vec<u8>,
    port: i64,
}

/// Parses a tracker's bencoded answer.
///
/// # Errors
/// [`TrackerError::Failure`] with the tracker's `failure reason`, or
/// [`TrackerError::Invalid`] when the answer is not a tracker response.
pub fn parse_response(bytes: &[u8]) -> Result<AnnounceResponse, TrackerError> {
    // serde_bencode recurses once per nesting level with no limit, so a
    // hostile answer of a few KiB of `l`s would overflow the stack and abort
    // the process: check the structure with our depth-bounded scanner first.
    crate::bencode::skip_value(bytes, 0).map_err(|e| TrackerError::Invalid(e.to_string()))?;
    let raw: RawResponse =
        serde_bencode::from_bytes(bytes).map_err(|e| TrackerError::Invalid(e.to_string()))?;
    if let Some(reason) = raw.failure_reason {
        return Err(TrackerError::Failure(untrusted::show_bytes(&reason)));
    }
    let mut peers = Vec::new();
    match raw.peers {
        Some(RawPeers::Compact(bytes)) => {
            if bytes.len() % 6 != 0 {
                return Err(TrackerError::Invalid(format!(
                    "compact peers are {} bytes, not a multiple of 6",
                    bytes.len()
                )));
            }
            peers.extend(bytes.chunks_exact(6).map(|c| {
                let ip = Ipv4Addr::new(c[0], c[1], c[2], c[3]);
                SocketAddr::new(IpAddr::V4(ip), u16::from_be_bytes([c[4], c[5]]))
            }));
        }
        Some(RawPeers::Dicts(list)) => {
            for peer in list {
                // Dictionary peers name their host as text: an IP address here;
                // host names are skipped rather than resolved.
                let ip = std::str::from_utf8(&peer.ip)
                    .ok()
                    .and_then(|s| s.parse::<IpAddr>().ok());
                match (ip, u16::try_from(peer.port)) {
                    (Some(ip), Ok(port)) if port != 0 => peers.push(SocketAddr::new(ip, port)),
                    _ => debug!(
                        "skipping tracker peer {}:{}",
                        untrusted::show_bytes(&peer.ip),
                        peer.port
                    ),
                }
            }
        }
        None => {}
    }
    if let Some(bytes) = raw.peers6 {
        if bytes.len() % 18 != 0 {
            return Err(TrackerError::Invalid(format!(
                "compact IPv6 peers are {} bytes, not a multiple of 18",
                bytes.len()
            )));
        }
        peers.extend(bytes.chunks_exact(18).map(|c| {
            let octets: [u8; 16] = c[..16].try_into().expect("16 bytes");
            SocketAddr::new(
                IpAddr::V6(Ipv6Addr::from(octets)),
                u16::from_be_bytes([c[16], c[17]]),
            )
        }));
    }
    let positive = |v: Option<i64>| v.filter(|&s| s > 0).map(|s| s as u64);
    Ok(AnnounceResponse {
        interval: positive(raw.interval),
        min_interval: positive(raw.min_interval),
        peers,
        tracker_id: raw.tracker_id,
        warning: raw.warning_message.map(|w| untrusted::show_bytes(&w)),
    })
}

/// Checks that `url` is an `http://` or `https://` URL with a host and, if
/// it names a port, a port from 1 to 65535.
///
/// # Errors
/// [`TrackerError::BadUrl`] saying what is wrong.
pub fn check_url(url: &str) -> Result<(), TrackerError> {
    let bad = |reason: String| TrackerError::BadUrl {
        url: url.to_string(),
        reason,
    };
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| bad("only http:// and https:// trackers are supported".into()))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    // `user:password@` comes before the host and may hold a colon.
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = match host_port.strip_prefix('[') {
        Some(v6) => {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| bad("an IPv6 host has no closing ]".into()))?;
            match after {
                "" => (host, None),
                _ => match after.strip_prefix(':') {
                    Some(port) => (host, Some(port)),
                    None => return Err(bad(format!("text after the IPv6 host: {after:?}"))),
                },
            }
        }
        None => match host_port.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        },
    };
    if host.is_empty() {
        return Err(bad("no host".into()));
    }
    match port {
        // `http://host:/` means the default port (RFC 3986).
        None | Some("") => Ok(()),
        Some(port) => match port.parse::<u16>() {
            Ok(n) if n != 0 && port.bytes().all(|b| b.is_ascii_digit()) => Ok(()),
            _ => Err(bad(format!(
                "port {:?} is not a number from 1 to 65535",
                untrusted::show(port)
            ))),
        },
    }
}

/// Largest tracker response body read.
const MAX_RESPONSE_LEN: u64 = 2 * 1024 * 1024;

/// Longest a `stopped` announce may take: it is sent while the program
/// exits, and nothing waits for its answer.
pub const STOPPED_TIMEOUT: Duration = Duration::from_secs(3);

/// An HTTP(S) tracker reached with ureq.
pub struct HttpTracker {
    url: String,
    agent: ureq::Agent,
    timeout: Duration,
    tracker_id: Option<Vec<u8>>,
}

impl HttpTracker {
    /// A tracker at announce URL `url`, with `timeout` for each announce.
    ///
    /// # Errors
    /// [`TrackerError::BadUrl`] when `url` fails [`check_url`].
    pub fn new(url: String, timeout: Duration) -> Result<HttpTracker, TrackerError> {
        check_url(&url)?;
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(true)
            .build()
            .into();
        Ok(HttpTracker {
            url,
            agent,
            timeout,
            tracker_id: None,
        })
    }
}

impl Announcer for HttpTracker {
    fn announce(&mut self, req: &AnnounceRequest) -> Result<AnnounceResponse, TrackerError> {
        let url = announce_url(&self.url, req, self.tracker_id.as_deref());
        debug!("announce {:?} to {}", req.event, self.url);
        let unreachable = |reason: String| TrackerError::Unreachable {
            url: self.url.clone(),
            reason,
        };
        let timeout = match req.event {
            Some(Event::Stopped) => self.timeout.min(STOPPED_TIMEOUT),
            _ => self.timeout,
        };
        let mut response = self
            .agent
            .get(&url)
            .config()
            .timeout_global(Some(timeout))
            .build()
            .call()
            .map_err(|e| unreachable(e.to_string()))?;
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_RESPONSE_LEN)
            .read_to_vec()
            .map_err(|e| unreachable(e.to_string()))?;
        let parsed = parse_response(&body)?;
        if let Some(id) = &parsed.tracker_id {
            self.tracker_id = Some(id.clone());
        }
        Ok(parsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracker::tests::request;

    #[test]
    fn url_percent_encodes_raw_bytes_and_carries_every_parameter() {
        let url = announce_url("http://t/announce", &request(Some(Event::Started)), None);
        assert_eq!(
            url,
            "http://t/announce?info_hash=%12%ABa%20%00%00%00%00%00%00%00%00%00%00%00%00%00%00%00%00\
             &peer_id=-BT0100-abc~.-_xyz01&port=6881&uploaded=1&downloaded=2&left=3&compact=1\
             &numwant=50&event=started"
        );
    }

    #[test]
    fn url_appends_to_an_existing_query_and_sends_tracker_id() {
        let url = announce_url("http://t/a?passkey=k", &request(None), Some(b"id 1"));
        assert!(url.starts_with("http://t/a?passkey=k&info_hash="), "{url}");
        assert!(url.ends_with("&trackerid=id%201"), "{url}");
        assert!(!url.contains("event="));
    }

    #[test]
    fn parses_compact_peers() {
        let body = b"d8:intervali900e5:peers12:\x7f\x00\x00\x01\x1a\xe1\x0a\x00\x00\x02\x00\x50e";
        let r = parse_response(body).unwrap();
        assert_eq!(r.interval, Some(900));
        assert_eq!(
            r.peers,
            vec![
                "127.0.0.1:6881".parse().unwrap(),
                "10.0.0.2:80".parse().unwrap()
            ]
        );
    }

    #[test]
    fn parses_dictionary_peers() {
        let body = b"d8:intervali60e12:min intervali30e5:peersld2:ip9:127.0.0.17:peer id20:aaaaaaaaaaaaaaaaaaaa4:porti6882eed2:ip3:::14:porti7000eed2:ip11:example.org4:porti1eeee";
        let r = parse_response(body).unwrap();
        assert_eq!(r.min_interval, Some(30));
        assert_eq!(
            r.peers,
            vec![
                "127.0.0.1:6882".parse().unwrap(),
                "[::1]:7000".parse().unwrap()
            ]
        );
    }

    #[test]
    fn parses_compact_ipv6_peers() {
        let mut body = b"d8:intervali60e5:peers0:6:peers618:".to_vec();
        body.extend([0u8; 15]);
        body.extend([1, 0x1a, 0xe1]);
        body.push(b'e');
        let r = parse_response(&body).unwrap();
        assert_eq!(r.peers, vec!["[::1]:6881".parse().unwrap()]);
    }

    #[test]
    fn compact_ipv6_peers_come_after_the_ipv4_ones() {
        let mut body = b"d5:peers6:\x7f\x00\x00\x01\x1a\xe16:peers636:".to_vec();
        body.extend([0x20, 0x01, 0x0d, 0xb8]);
        body.extend([0u8; 11]);
        body.extend([2, 0x00, 0x50]);
        body.extend([0u8; 15]);
        body.extend([1, 0x1a, 0xe2]);
        body.push(b'e');
        let r = parse_response(&body).unwrap();
        assert_eq!(
            r.peers,
            vec![
                "127.0.0.1:6881".parse().unwrap(),
                "[2001:db8::2]:80".parse().unwrap(),
                "[::1]:6882".parse().unwrap()
            ]
        );
    }

    #[test]
    fn compact_ipv6_peers_that_are_not_whole_entries_are_invalid() {
        for len in [1usize, 6, 17, 19, 35] {
            let mut body = format!("d6:peers6{len}:").into_bytes();
            body.extend(vec![1u8; len]);
            body.push(b'e');
            let r = parse_response(&body);
            assert_eq!(
                r,
                Err(TrackerError::Invalid(format!(
                    "compact IPv6 peers are {len} bytes, not a multiple of 18"
                ))),
                "{len}"
            );
        }
    }

    #[test]
    fn failure_reason_is_an_error_carrying_it() {
        let r = parse_response(b"d14:failure reason17:torrent not founde");
        assert_eq!(r, Err(TrackerError::Failure("torrent not found".into())));
    }

    #[test]
    fn warning_and_tracker_id_are_kept() {
        let r = parse_response(b"d15:warning message4:slow10:tracker id3:xyz5:peers0:e").unwrap();
        assert_eq!(r.warning.as_deref(), Some("slow"));
        assert_eq!(r.tracker_id.as_deref(), Some(&b"xyz"[..]));
    }

    #[test]
    fn compact_peers_of_bad_length_are_invalid() {
        let r = parse_response(b"d5:peers5:abcdee");
        assert!(matches!(r, Err(TrackerError::Invalid(_))), "{r:?}");
    }

    #[test]
    fn non_bencode_answer_is_invalid() {
        assert!(matches!(
            parse_response(b"<html>"),
            Err(TrackerError::Invalid(_))
        ));
    }

    #[test]
    fn a_long_failure_reason_with_escapes_is_capped_and_made_inert() {
        let mut body = b"d14:failure reason1048576:\x1b]0;owned\x07".to_vec();
        body.resize(body.len() + (1 << 20) - 10, b'x');
        body.push(b'e');
        let Err(TrackerError::Failure(reason)) = parse_response(&body) else {
            panic!("a failure reason is a failure");
        };
        assert!(!reason.contains('\x1b'), "{reason:?}");
        assert!(reason.starts_with("\\u{1b}]0;owned\\u{7}"), "{reason:?}");
        // 200 characters shown, a few of them escapes of 6 or 7.
        assert!(reason.len() < 300, "{} bytes", reason.len());
        assert!(TrackerError::Failure(reason).to_string().len() < 1000);
    }

    #[test]
    fn urls_with_a_port_that_is_not_a_port_are_refused() {
        for url in [
            "http://tracker.example:99999/announce",
            "http://tracker.example:x/announce",
            "http://tracker.example:0/announce",
            "http://tracker.example:-1/announce",
            "http://tracker.example:+80/announce",
            "http://[::1]:65536/announce",
            "http://[::1]x/announce",
            "http:///announce",
            "udp://tracker.example:80",
        ] {
            let result = check_url(url);
            assert!(
                matches!(&result, Err(TrackerError::BadUrl { url: u, .. }) if u == url),
                "{url}: {result:?}"
            );
        }
        let message = check_url("http://t:99999/a").unwrap_err().to_string();
        assert!(
            message.contains("99999") && message.contains("1 to 65535"),
            "{message}"
        );
    }

    #[test]
    fn urls_with_good_ports_hosts_and_credentials_are_accepted() {
        for url in [
            "http://tracker.example/announce",
            "http://tracker.example:6969/announce",
            "https://tracker.example:443/a?passkey=a:b",
            "http://tracker.example:/announce",
            "http://user:pass@tracker.example:8080/announce",
            "http://[::1]:6969/announce",
            "http://[::1]/announce",
            "http://127.0.0.1:1/announce?x=http://y:z",
        ] {
            assert_eq!(check_url(url), Ok(()), "{url}");
        }
    }
}
