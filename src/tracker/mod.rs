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

pub mod http;

use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use log::{debug, info, warn};

pub use self::http::{HttpTracker, announce_url, check_url, parse_response, percent_encode};
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
            TrackerError::NoTracker => f.write_str("the torrent names no HTTP tracker"),
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

/// The trackers of a torrent, by tier (BEP 12): each announce tries them in
/// order until one answers, and a tracker that answers moves to the front of
/// its tier. `stopped` goes only to the trackers that have answered, so that
/// silent ones cannot hold up the exit.
pub struct TrackerList {
    tiers: Vec<Vec<Listed>>,
}

/// A tracker of the list, and whether it has answered an announce.
struct Listed {
    announcer: Box<dyn Announcer>,
    answered: bool,
}

impl Listed {
    fn new(announcer: Box<dyn Announcer>) -> Listed {
        Listed {
            announcer,
            answered: false,
        }
    }
}

impl TrackerList {
    /// The HTTP trackers of the torrent's tiers, and an error for each URL
    /// left out: other schemes (for now) and URLs that fail [`check_url`].
    pub fn http(tiers: &[Vec<String>], timeout: Duration) -> (TrackerList, Vec<TrackerError>) {
        let mut rejected = Vec::new();
        let tiers = tiers
            .iter()
            .map(|tier| {
                tier.iter()
                    .filter_map(|url| match HttpTracker::new(url.clone(), timeout) {
                        Ok(tracker) => Some(Listed::new(Box::new(tracker))),
                        Err(e) => {
                            rejected.push(e);
                            None
                        }
                    })
                    .collect::<Vec<_>>()
            })
            .filter(|tier| !tier.is_empty())
            .collect();
        (TrackerList { tiers }, rejected)
    }

    /// Whether there is any tracker to announce to.
    pub fn is_empty(&self) -> bool {
        self.tiers.is_empty()
    }

    /// Announces `stopped` to every tracker that has answered before.
    fn announce_stopped(
        &mut self,
        req: &AnnounceRequest,
    ) -> Result<AnnounceResponse, TrackerError> {
        let mut result = Err(TrackerError::NoTracker);
        for listed in self.tiers.iter_mut().flatten().filter(|l| l.answered) {
            match listed.announcer.announce(req) {
                Ok(response) => result = Ok(response),
                Err(e) => {
                    debug!("{e}");
                    if result.is_err() {
                        result = Err(e);
                    }
                }
            }
        }
        result
    }
}

impl Announcer for TrackerList {
    fn announce(&mut self, req: &AnnounceRequest) -> Result<AnnounceResponse, TrackerError> {
        if req.event == Some(Event::Stopped) {
            return self.announce_stopped(req);
        }
        let mut last = TrackerError::NoTracker;
        for tier in &mut self.tiers {
            for i in 0..tier.len() {
                match tier[i].announcer.announce(req) {
                    Ok(response) => {
                        let mut answered = tier.remove(i);
                        answered.answered = true;
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

/// Where the `tracker` thread starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstAnnounce {
    /// Nothing was announced yet: announce `started` at once. The torrent
    /// goes on with the peers it knows meanwhile.
    Now,
    /// `started` was announced (or tried) before the thread: the next
    /// announce is due after `wait`, and not before `min_interval`.
    Done {
        /// Time until the next announce.
        wait: Duration,
        /// Least time between announces.
        min_interval: Duration,
        /// Whether the tracker answered it.
        answered: bool,
    },
}

/// The body of the `tracker` thread: announces every interval until told to
/// stop (or its command channel closes), then announces `stopped`.
///
/// `request` builds an announce with the current counters; `on_peers` receives
/// the peers of each answer. A failed announce is logged and retried with
/// backoff; the session keeps working with the peers it already has. Until
/// a tracker has answered `started`, every announce is `started`.
pub fn run_announce_loop(
    mut announcer: Box<dyn Announcer>,
    first: FirstAnnounce,
    cmd_rx: Receiver<TrackerCommand>,
    request: impl Fn(Option<Event>) -> AnnounceRequest,
    on_peers: impl Fn(Vec<SocketAddr>),
) {
    let (first_wait, mut min_interval, mut started) = match first {
        FirstAnnounce::Now => (Duration::ZERO, Duration::ZERO, false),
        FirstAnnounce::Done {
            wait,
            min_interval,
            answered,
        } => (wait, min_interval, answered),
    };
    let mut next = Instant::now() + first_wait;
    let mut retry = RETRY_DELAY;
    // The first announce (before this thread) counts as the last one.
    let mut last_announce = Instant::now();
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
                // A tracker that never answered `started` does not know us.
                if started {
                    match announcer.announce(&request(Some(Event::Stopped))) {
                        Ok(_) => info!("announced stopped"),
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
                vec![Listed::new(Box::new(Scripted(vec![down(), down()], 0)))],
                vec![
                    Listed::new(Box::new(Scripted(vec![down()], 0))),
                    Listed::new(Box::new(Scripted(
                        vec![Ok(good.clone()), Ok(good.clone()), Ok(good.clone())],
                        0,
                    ))),
                ],
            ],
        };
        assert_eq!(list.announce(&request(None)), Ok(good.clone()));
        // The tracker that answered is now first in its tier, so it is asked
        // before the one that failed.
        assert!(list.announce(&request(None)).is_ok());
        // `stopped` goes only to the tracker that answered: the scripts of
        // the others are spent, and asking them would panic.
        assert_eq!(list.announce(&request(Some(Event::Stopped))), Ok(good));
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

    /// Runs the loop from `first` with `answers`, sending `then` one by one
    /// after each announce, and returns the events announced.
    fn run_loop(
        first: FirstAnnounce,
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
        run_announce_loop(Box::new(announcer), first, cmd_rx, request, |_| {});
        std::sync::Arc::try_unwrap(events)
            .unwrap()
            .into_inner()
            .unwrap()
    }

    #[test]
    fn a_loop_that_starts_now_announces_started_first_then_stopped() {
        let events = run_loop(
            FirstAnnounce::Now,
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
            FirstAnnounce::Now,
            vec![unreachable(), unreachable()],
            vec![TrackerCommand::Completed, TrackerCommand::Stop],
        );
        assert_eq!(events, [Some(Event::Started), Some(Event::Started)]);
    }
}
