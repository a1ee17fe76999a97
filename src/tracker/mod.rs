//! Talking to trackers (BEP 3 "trackers", BEP 23 compact peers, BEP 7
//! IPv6 peers, BEP 12 tiers, BEP 15 UDP trackers).
//!
//! Three layers, outermost last:
//! - pure code: [`http`]'s [`announce_url`] builds the GET URL and
//!   [`parse_response`] reads the bencoded answer (compact `peers` and
//!   `peers6`, dictionary peer lists, `failure reason`); [`udp::codec`]
//!   encodes and decodes the UDP datagrams, [`udp::schedule`] holds their
//!   clocks;
//! - [`Announcer`], the one interface every kind of tracker implements:
//!   [`HttpTracker`] (ureq) and [`UdpTracker`] (a UDP socket per announce);
//! - [`tiers`]: the [`TrackerList`] of a torrent (one [`tiers::Tier`] per
//!   BEP 12 tier, shuffled once) and the threads announcing to every tier at
//!   once ([`Trackers`]), each running [`run_announce_loop`]: re-announces
//!   every interval, sends `completed` and `stopped`, and hands peers to a
//!   callback.

pub mod http;
pub mod tiers;
pub mod udp;

use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use log::{debug, info, warn};

pub use self::http::{HttpTracker, announce_url, check_url, parse_response, percent_encode};
pub use self::tiers::{TrackerList, Trackers};
pub use self::udp::UdpTracker;
use crate::metainfo::InfoHash;
use crate::peer::wire::PeerId;
use crate::untrusted;

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
    /// An announce URL that cannot be used.
    BadUrl {
        /// The URL, as the torrent or magnet gave it.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The torrent names no tracker we can talk to.
    NoTracker,
}

impl fmt::Display for TrackerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrackerError::Unreachable { url, reason } => write!(
                f,
                "tracker {} is unreachable: {}",
                untrusted::show(url),
                untrusted::show(reason)
            ),
            TrackerError::BadUrl { url, reason } => {
                write!(
                    f,
                    "tracker URL {} is unusable: {reason}",
                    untrusted::show(url)
                )
            }
            TrackerError::Failure(reason) => write!(f, "tracker refused the announce: {reason}"),
            TrackerError::Invalid(what) => write!(f, "invalid tracker response: {what}"),
            TrackerError::NoTracker => f.write_str("the torrent names no tracker we can talk to"),
        }
    }
}

impl std::error::Error for TrackerError {}

/// Anything that can take an announce and answer with peers.
pub trait Announcer: Send {
    /// Sends one announce.
    ///
    /// # Errors
    /// [`TrackerError`] when the tracker cannot be reached or refuses.
    fn announce(&mut self, req: &AnnounceRequest) -> Result<AnnounceResponse, TrackerError>;
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

/// The body of a tier's thread: announces `started` at once, then every
/// interval (the tracker's, or `every` when given: `--announce-interval`)
/// until told to stop (or its command channel closes), then `stopped` if a
/// tracker answered. `completed` is sent once, however often it is asked.
///
/// `request` builds an announce with the current counters; `on_answer`
/// receives the peers of each answer, or the error of a failed announce
/// (`stopped` excepted) and the time until it is retried (with backoff),
/// to log it; the session keeps working with the peers it already has. Until
/// a tracker has answered `started`, every announce is `started`. A
/// `stopped` that fails is warned of only when the announce before it
/// answered: a tracker already failing was warned of by `on_answer`.
pub fn run_announce_loop(
    mut announcer: Box<dyn Announcer>,
    cmd_rx: Receiver<TrackerCommand>,
    every: Option<Duration>,
    request: impl Fn(Option<Event>) -> AnnounceRequest,
    mut on_answer: impl FnMut(Result<Vec<SocketAddr>, (&TrackerError, Duration)>),
) {
    let mut min_interval = Duration::ZERO;
    let mut started = false;
    let mut completed = false;
    let mut next = Instant::now();
    // With `every`, failures are retried that often at first too (then
    // with backoff), so a private swarm or a test sees them soon.
    let first_retry = every.map_or(RETRY_DELAY, |every| every.min(RETRY_DELAY));
    let mut retry = first_retry;
    let mut last_announce = Instant::now();
    loop {
        let event = match cmd_rx.recv_deadline(next) {
            // A download that seeds on sends it when it completes, and the
            // end of the run asks again.
            Ok(TrackerCommand::Completed) if completed => continue,
            Ok(TrackerCommand::Completed) => Some(Event::Completed),
            Ok(TrackerCommand::NeedPeers) => {
                // While a failing tracker is retried with backoff, the
                // backoff decides, not the wish for peers.
                if last_announce.elapsed() < min_interval || retry > first_retry {
                    continue;
                }
                debug!("asking the tracker for more peers");
                None
            }
            Ok(TrackerCommand::Stop) | Err(RecvTimeoutError::Disconnected) => {
                // A tracker that never answered `started` does not know us.
                if started {
                    // The backoff is past its first step only after a failure.
                    let failing = retry > first_retry;
                    match announcer.announce(&request(Some(Event::Stopped))) {
                        Ok(_) => info!("announced stopped"),
                        Err(e) if failing => debug!("announcing stopped failed: {e}"),
                        Err(e) => warn!("announcing stopped failed: {e}"),
                    }
                }
                return;
            }
            Err(RecvTimeoutError::Timeout) => None,
        };
        let event = if started { event } else { Some(Event::Started) };
        last_announce = Instant::now();
        match announcer.announce(&request(event)) {
            Ok(response) => {
                started = true;
                completed |= event == Some(Event::Completed);
                if let Some(w) = &response.warning {
                    warn!("tracker warning: {w}");
                }
                info!("tracker answered with {} peers", response.peers.len());
                let interval = every.unwrap_or_else(|| next_interval(&response));
                next = Instant::now() + interval;
                min_interval = self::min_interval(&response).min(interval);
                retry = first_retry;
                on_answer(Ok(response.peers));
            }
            Err(e) => {
                on_answer(Err((&e, retry)));
                next = Instant::now() + retry;
                retry = (retry * 2).min(DEFAULT_INTERVAL);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn request(event: Option<Event>) -> AnnounceRequest {
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

    /// Answers from a script, records the event of every announce, and
    /// after each sends the loop the next of its commands.
    struct Recording {
        answers: Vec<Result<AnnounceResponse, TrackerError>>,
        then: Vec<TrackerCommand>,
        cmd_tx: crossbeam_channel::Sender<TrackerCommand>,
        events: std::sync::Arc<std::sync::Mutex<Vec<Option<Event>>>>,
    }

    impl Announcer for Recording {
        fn announce(&mut self, req: &AnnounceRequest) -> Result<AnnounceResponse, TrackerError> {
            self.events.lock().unwrap().push(req.event);
            if !self.then.is_empty() {
                self.cmd_tx.send(self.then.remove(0)).unwrap();
            }
            self.answers.remove(0)
        }
    }

    /// Runs the loop with `answers`, sending `then` one by one
    /// after each announce, and returns the events announced.
    fn run_loop(
        answers: Vec<Result<AnnounceResponse, TrackerError>>,
        then: Vec<TrackerCommand>,
    ) -> Vec<Option<Event>> {
        let events = std::sync::Arc::default();
        let (cmd_tx, cmd_rx) = crossbeam_channel::unbounded();
        let announcer = Recording {
            answers,
            then,
            cmd_tx,
            events: std::sync::Arc::clone(&events),
        };
        run_announce_loop(Box::new(announcer), cmd_rx, None, request, |_| {});
        std::sync::Arc::try_unwrap(events)
            .unwrap()
            .into_inner()
            .unwrap()
    }

    #[test]
    fn a_loop_that_starts_now_announces_started_first_then_stopped() {
        let events = run_loop(
            vec![
                Ok(AnnounceResponse::default()),
                Ok(AnnounceResponse::default()),
            ],
            vec![TrackerCommand::Stop],
        );
        assert_eq!(events, [Some(Event::Started), Some(Event::Stopped)]);
    }

    #[test]
    fn stopped_is_not_sent_when_no_tracker_answered_started() {
        let unreachable = || {
            Err(TrackerError::Unreachable {
                url: "http://t/".into(),
                reason: "timed out".into(),
            })
        };
        // `completed` before any answer is sent as `started` (the tracker
        // does not know us yet), and nothing answered, so no `stopped`.
        let events = run_loop(
            vec![unreachable(), unreachable()],
            vec![TrackerCommand::Completed, TrackerCommand::Stop],
        );
        assert_eq!(events, [Some(Event::Started), Some(Event::Started)]);
    }
}
