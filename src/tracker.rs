//! Talking to trackers (BEP 3 "trackers", BEP 23 compact peers, BEP 12 tiers).
//!
//! Three layers, outermost last:
//! - pure code: [`announce_url`] builds the GET URL and [`parse_response`] reads
//!   the bencoded answer (compact and dictionary peer lists, `failure reason`);
//! - [`Announcer`], the one interface every kind of tracker implements, with
//!   [`HttpTracker`] (ureq) as the first, and [`TrackerList`] trying each
//!   tracker of the tiers in turn until one answers;
//! - [`run_announce_loop`], the `tracker` thread: re-announces every interval,
//!   sends `completed` and `stopped`, and hands peers to a callback.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use log::{debug, info, warn};
use serde::Deserialize;

use crate::metainfo::InfoHash;
use crate::peer::wire::PeerId;

/// The `event` parameter of an announce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// First announce of a session.
    Started,
    /// The download just finished.
    Completed,
    /// The session is ending.
    Stopped,
}

impl Event {
    fn as_str(self) -> &'static str {
        match self {
            Event::Started => "started",
            Event::Completed => "completed",
            Event::Stopped => "stopped",
        }
    }
}

/// Everything an announce reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnounceRequest {
    /// The torrent.
    pub info_hash: InfoHash,
    /// Our peer id.
    pub peer_id: PeerId,
    /// Our listen port.
    pub port: u16,
    /// Bytes uploaded this session.
    pub uploaded: u64,
    /// Bytes downloaded this session.
    pub downloaded: u64,
    /// Bytes still missing.
    pub left: u64,
    /// The event, if any.
    pub event: Option<Event>,
    /// How many peers to ask for.
    pub numwant: u32,
}

/// A tracker's answer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AnnounceResponse {
    /// Seconds to wait before the next regular announce.
    pub interval: Option<u64>,
    /// Seconds to wait at least between announces.
    pub min_interval: Option<u64>,
    /// Peers in the swarm.
    pub peers: Vec<SocketAddr>,
    /// To send back on later announces, when given.
    pub tracker_id: Option<Vec<u8>>,
    /// A message to log.
    pub warning: Option<String>,
}

/// Why an announce failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrackerError {
    /// The tracker could not be reached or answered with an HTTP error.
    Unreachable {
        /// The announce URL.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The tracker answered with `failure reason`.
    Failure(String),
    /// The answer was not a valid tracker response.
    Invalid(String),
    /// The torrent names no tracker we can talk to.
    NoTracker,
}

impl fmt::Display for TrackerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrackerError::Unreachable { url, reason } => {
                write!(f, "tracker {url} is unreachable: {reason}")
            }
            TrackerError::Failure(reason) => write!(f, "tracker refused the announce: {reason}"),
            TrackerError::Invalid(what) => write!(f, "invalid tracker response: {what}"),
            TrackerError::NoTracker => f.write_str("the torrent names no HTTP tracker"),
        }
    }
}

impl std::error::Error for TrackerError {}

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
        return Err(TrackerError::Failure(
            String::from_utf8_lossy(&reason).into_owned(),
        ));
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
                        "skipping tracker peer {:?}:{}",
                        String::from_utf8_lossy(&peer.ip),
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
        warning: raw
            .warning_message
            .map(|w| String::from_utf8_lossy(&w).into_owned()),
    })
}

/// Anything that can take an announce and answer with peers.
pub trait Announcer: Send {
    /// Sends one announce.
    ///
    /// # Errors
    /// [`TrackerError`] when the tracker cannot be reached or refuses.
    fn announce(&mut self, req: &AnnounceRequest) -> Result<AnnounceResponse, TrackerError>;
}

/// Largest tracker response body read.
const MAX_RESPONSE_LEN: u64 = 2 * 1024 * 1024;

/// An HTTP(S) tracker reached with ureq.
pub struct HttpTracker {
    url: String,
    agent: ureq::Agent,
    tracker_id: Option<Vec<u8>>,
}

impl HttpTracker {
    /// A tracker at announce URL `url`, with `timeout` for each announce.
    pub fn new(url: String, timeout: Duration) -> HttpTracker {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(true)
            .build()
            .into();
        HttpTracker {
            url,
            agent,
            tracker_id: None,
        }
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
        let mut response = self
            .agent
            .get(&url)
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

/// The trackers of a torrent, by tier (BEP 12): each announce tries them in
/// order until one answers, and a tracker that answers moves to the front of
/// its tier.
pub struct TrackerList {
    tiers: Vec<Vec<Box<dyn Announcer>>>,
}

impl TrackerList {
    /// HTTP trackers for the torrent's tiers; other schemes are skipped for now.
    pub fn http(tiers: &[Vec<String>], timeout: Duration) -> TrackerList {
        let tiers = tiers
            .iter()
            .map(|tier| {
                tier.iter()
                    .filter(|url| {
                        let ok = url.starts_with("http://") || url.starts_with("https://");
                        if !ok {
                            warn!("skipping tracker {url}: only HTTP trackers are supported");
                        }
                        ok
                    })
                    .map(|url| {
                        Box::new(HttpTracker::new(url.clone(), timeout)) as Box<dyn Announcer>
                    })
                    .collect::<Vec<_>>()
            })
            .filter(|tier| !tier.is_empty())
            .collect();
        TrackerList { tiers }
    }

    /// Whether there is any tracker to announce to.
    pub fn is_empty(&self) -> bool {
        self.tiers.is_empty()
    }
}

impl Announcer for TrackerList {
    fn announce(&mut self, req: &AnnounceRequest) -> Result<AnnounceResponse, TrackerError> {
        let mut last = TrackerError::NoTracker;
        for tier in &mut self.tiers {
            for i in 0..tier.len() {
                match tier[i].announce(req) {
                    Ok(response) => {
                        let answered = tier.remove(i);
                        tier.insert(0, answered);
                        return Ok(response);
                    }
                    Err(e) => {
                        debug!("{e}");
                        last = e;
                    }
                }
            }
        }
        Err(last)
    }
}

/// Commands for the tracker thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackerCommand {
    /// The download completed: announce `completed` now.
    Completed,
    /// Too few peers are connected: announce early for more, if the
    /// tracker's `min interval` allows it.
    NeedPeers,
    /// Announce `stopped` and end the thread.
    Stop,
}

/// Default re-announce interval when the tracker names none.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(30 * 60);
/// Least time between two announces when the tracker names no `min interval`.
pub const DEFAULT_MIN_INTERVAL: Duration = Duration::from_secs(60);
/// First retry delay after a failed announce; doubles up to the interval.
pub const RETRY_DELAY: Duration = Duration::from_secs(15);

/// Seconds to wait before the next announce after `response`.
pub fn next_interval(response: &AnnounceResponse) -> Duration {
    let interval = response
        .interval
        .map_or(DEFAULT_INTERVAL, Duration::from_secs);
    let min = response
        .min_interval
        .map_or(Duration::ZERO, Duration::from_secs);
    interval
        .max(min)
        .clamp(Duration::from_secs(10), MAX_INTERVAL)
}

/// Longest wait the tracker may ask for; a larger `interval` is taken as this.
const MAX_INTERVAL: Duration = Duration::from_secs(24 * 60 * 60);

/// Least time before asking the tracker again, after `response`.
pub fn min_interval(response: &AnnounceResponse) -> Duration {
    response
        .min_interval
        .map_or(DEFAULT_MIN_INTERVAL, Duration::from_secs)
        .min(MAX_INTERVAL)
}

/// The body of the `tracker` thread: announces every interval until told to
/// stop (or its command channel closes), then announces `stopped`.
///
/// `request` builds an announce with the current counters; `on_peers` receives
/// the peers of each answer. A failed announce is logged and retried with
/// backoff; the session keeps working with the peers it already has.
pub fn run_announce_loop(
    mut announcer: Box<dyn Announcer>,
    first_wait: Duration,
    first_min_interval: Duration,
    cmd_rx: Receiver<TrackerCommand>,
    request: impl Fn(Option<Event>) -> AnnounceRequest,
    on_peers: impl Fn(Vec<SocketAddr>),
) {
    let mut next = Instant::now() + first_wait;
    let mut retry = RETRY_DELAY;
    // The first announce (before this thread) counts as the last one.
    let mut last_announce = Instant::now();
    let mut min_interval = first_min_interval;
    loop {
        let event = match cmd_rx.recv_deadline(next) {
            Ok(TrackerCommand::Completed) => Some(Event::Completed),
            Ok(TrackerCommand::NeedPeers) => {
                // While a failing tracker is retried with backoff, the
                // backoff decides, not the wish for peers.
                if last_announce.elapsed() < min_interval || retry > RETRY_DELAY {
                    continue;
                }
                debug!("asking the tracker for more peers");
                None
            }
            Ok(TrackerCommand::Stop) | Err(RecvTimeoutError::Disconnected) => {
                match announcer.announce(&request(Some(Event::Stopped))) {
                    Ok(_) => info!("announced stopped"),
                    Err(e) => warn!("announcing stopped failed: {e}"),
                }
                return;
            }
            Err(RecvTimeoutError::Timeout) => None,
        };
        last_announce = Instant::now();
        match announcer.announce(&request(event)) {
            Ok(response) => {
                if let Some(w) = &response.warning {
                    warn!("tracker warning: {w}");
                }
                info!("tracker answered with {} peers", response.peers.len());
                next = Instant::now() + next_interval(&response);
                min_interval = self::min_interval(&response);
                retry = RETRY_DELAY;
                on_peers(response.peers);
            }
            Err(e) => {
                warn!("{e}; retrying in {}s", retry.as_secs());
                next = Instant::now() + retry;
                retry = (retry * 2).min(DEFAULT_INTERVAL);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(event: Option<Event>) -> AnnounceRequest {
        let mut info_hash = [0u8; 20];
        info_hash[..4].copy_from_slice(&[0x12, 0xab, b'a', b' ']);
        AnnounceRequest {
            info_hash: InfoHash(info_hash),
            peer_id: PeerId(*b"-BT0100-abc~.-_xyz01"),
            port: 6881,
            uploaded: 1,
            downloaded: 2,
            left: 3,
            event,
            numwant: 50,
        }
    }

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
    fn interval_honours_min_interval() {
        let r = AnnounceResponse {
            interval: Some(60),
            min_interval: Some(120),
            ..Default::default()
        };
        assert_eq!(next_interval(&r), Duration::from_secs(120));
        assert_eq!(
            next_interval(&AnnounceResponse::default()),
            DEFAULT_INTERVAL
        );
    }

    struct Scripted(Vec<Result<AnnounceResponse, TrackerError>>, usize);

    impl Announcer for Scripted {
        fn announce(&mut self, _: &AnnounceRequest) -> Result<AnnounceResponse, TrackerError> {
            self.1 += 1;
            self.0.remove(0)
        }
    }

    #[test]
    fn tracker_list_tries_each_tracker_until_one_answers() {
        let down = || {
            Err(TrackerError::Unreachable {
                url: "x".into(),
                reason: "refused".into(),
            })
        };
        let good = AnnounceResponse {
            interval: Some(5),
            ..Default::default()
        };
        let mut list = TrackerList {
            tiers: vec![
                vec![Box::new(Scripted(vec![down(), down()], 0))],
                vec![
                    Box::new(Scripted(vec![down()], 0)),
                    Box::new(Scripted(vec![Ok(good.clone()), Ok(good.clone())], 0)),
                ],
            ],
        };
        assert_eq!(list.announce(&request(None)), Ok(good.clone()));
        // The tracker that answered is now first in its tier, so it is asked
        // before the one that failed.
        assert!(list.announce(&request(None)).is_ok());
        let mut empty = TrackerList { tiers: vec![] };
        assert_eq!(empty.announce(&request(None)), Err(TrackerError::NoTracker));
    }

    #[test]
    fn a_huge_interval_is_capped_so_the_next_announce_time_cannot_overflow() {
        // Regression: `interval` near i64::MAX made `Instant::now() + ...`
        // panic and killed the tracker thread.
        let response = AnnounceResponse {
            interval: Some(u64::MAX / 2),
            min_interval: Some(u64::MAX / 2),
            ..AnnounceResponse::default()
        };
        assert_eq!(next_interval(&response), MAX_INTERVAL);
        assert_eq!(min_interval(&response), MAX_INTERVAL);
        let _ = Instant::now() + next_interval(&response);
    }
}
