//! The trackers of a torrent by tier (BEP 12), HTTP and UDP mixed, and the
//! threads that announce to them.
//!
//! Each tier is shuffled once, when the list is made; an announce tries its
//! trackers in order until one answers, and the one that answered moves to
//! the front of its tier. Every tier gets announces (one tracker per tier,
//! as libtorrent's `announce_to_all_tiers` does): [`TrackerList::spawn`]
//! starts one `tracker tier N` thread per tier, each running
//! [`run_announce_loop`] with its own interval, backoff and `started`
//! state, so a tier whose trackers never answer holds up neither another
//! tier nor the download. A `tracker` thread fans the commands
//! ([`TrackerCommand`]) out to every tier and, at the end, waits for the
//! tiers that have answered to send `stopped` (only to their trackers that
//! answered); a tier that never answered is not waited for.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded, unbounded};
use log::{debug, info, warn};

use super::{
    AnnounceRequest, AnnounceResponse, Announcer, Event, HttpTracker, TrackerCommand, TrackerError,
    UdpTracker, run_announce_loop,
};

/// The announcer for `url`: UDP for `udp://`, HTTP for `http://` and
/// `https://`; `key` goes into UDP announces, which go out from `local`
/// when it is given (`--bind`).
///
/// # Errors
/// [`TrackerError::BadUrl`] for another scheme or a URL that is unusable.
pub fn announcer_for(
    url: &str,
    timeout: Duration,
    key: u32,
    local: Option<IpAddr>,
) -> Result<Box<dyn Announcer>, TrackerError> {
    if url.starts_with("udp://") {
        let tracker = UdpTracker::new(url.to_string(), timeout, key)?;
        Ok(Box::new(tracker.from_address(local)))
    } else if url.starts_with("http://") || url.starts_with("https://") {
        Ok(Box::new(HttpTracker::new(url.to_string(), timeout)?))
    } else {
        Err(TrackerError::BadUrl {
            url: url.to_string(),
            reason: "only udp://, http:// and https:// trackers are supported".into(),
        })
    }
}

/// One tier: its trackers in the order they are tried.
pub struct Tier {
    trackers: Vec<Listed>,
}

/// A tracker of a tier, and whether it has answered an announce.
struct Listed {
    announcer: Box<dyn Announcer>,
    answered: bool,
}

impl Announcer for Tier {
    /// `stopped` goes to every tracker of the tier that answered before;
    /// any other announce to the first tracker that answers, which then
    /// moves to the front.
    fn announce(&mut self, req: &AnnounceRequest) -> Result<AnnounceResponse, TrackerError> {
        if req.event == Some(Event::Stopped) {
            let mut result = Err(TrackerError::NoTracker);
            for listed in self.trackers.iter_mut().filter(|l| l.answered) {
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
            return result;
        }
        let mut last = TrackerError::NoTracker;
        for i in 0..self.trackers.len() {
            match self.trackers[i].announcer.announce(req) {
                Ok(response) => {
                    let mut answered = self.trackers.remove(i);
                    answered.answered = true;
                    self.trackers.insert(0, answered);
                    return Ok(response);
                }
                Err(e) => {
                    debug!("{e}");
                    last = e;
                }
            }
        }
        Err(last)
    }
}

/// The tiers of a torrent, each shuffled once.
pub struct TrackerList {
    tiers: Vec<Tier>,
    /// Announce this often instead of at the trackers' interval.
    every: Option<Duration>,
}

impl TrackerList {
    /// The trackers of `tiers` of URLs, with `timeout` for each announce,
    /// and an error for each URL left out (other schemes, bad URLs); UDP
    /// announces go out from `local` when it is given. Nothing is resolved
    /// or sent yet.
    pub fn new(
        tiers: &[Vec<String>],
        timeout: Duration,
        local: Option<IpAddr>,
    ) -> (TrackerList, Vec<TrackerError>) {
        // One key for the session: trackers tell us by it when our
        // address changes.
        let key = fastrand::u32(..);
        let mut rejected = Vec::new();
        let tiers = tiers
            .iter()
            .map(|tier| {
                tier.iter()
                    .filter_map(|url| {
                        announcer_for(url, timeout, key, local)
                            .map_err(|e| rejected.push(e))
                            .ok()
                    })
                    .collect()
            })
            .collect();
        (TrackerList::from_announcers(tiers), rejected)
    }

    /// A list of these announcers by tier, each tier shuffled once (BEP
    /// 12); empty tiers are left out.
    pub fn from_announcers(tiers: Vec<Vec<Box<dyn Announcer>>>) -> TrackerList {
        let tiers = tiers
            .into_iter()
            .filter(|tier| !tier.is_empty())
            .map(|tier| {
                let mut trackers: Vec<Listed> = tier
                    .into_iter()
                    .map(|announcer| Listed {
                        announcer,
                        answered: false,
                    })
                    .collect();
                fastrand::shuffle(&mut trackers);
                Tier { trackers }
            })
            .collect();
        TrackerList { tiers, every: None }
    }

    /// The same list, announcing every `every` (when given) whatever
    /// interval the trackers ask for (`--announce-interval`); failed
    /// announces still back off.
    pub fn with_interval(mut self, every: Option<Duration>) -> TrackerList {
        self.every = every;
        self
    }

    /// Whether there is any tracker to announce to.
    pub fn is_empty(&self) -> bool {
        self.tiers.is_empty()
    }

    /// How many tiers there are.
    pub fn tier_count(&self) -> usize {
        self.tiers.len()
    }

    /// Starts announcing: one thread per tier, each announcing `started`
    /// at once, then every interval, with `request` building each
    /// announce; the peers of every answer go to `on_peers`. With
    /// `wait_first`, the caller is to call [`Trackers::wait_first`]: the
    /// failures of first announces are left to it, to report as the error
    /// when every tier fails, or to log when one answers.
    ///
    /// # Errors
    /// A thread that cannot start (the threads started before it end).
    pub fn spawn(
        self,
        request: impl Fn(Option<Event>) -> AnnounceRequest + Send + Sync + 'static,
        on_peers: impl Fn(Vec<SocketAddr>) + Send + Sync + 'static,
        wait_first: bool,
    ) -> io::Result<Trackers> {
        let request = Arc::new(request);
        let on_peers = Arc::new(on_peers);
        let tier_count = self.tiers.len();
        let quiet = Arc::new(AtomicBool::new(wait_first));
        let failing = Arc::new(AtomicUsize::new(0));
        let every = self.every;
        let (first_tx, first_rx) = unbounded();
        let mut tier_txs = Vec::new();
        let mut handles = Vec::new();
        for (i, tier) in self.tiers.into_iter().enumerate() {
            let (tx, rx) = unbounded();
            let (request, on_peers, first_tx) = (
                Arc::clone(&request),
                Arc::clone(&on_peers),
                first_tx.clone(),
            );
            let answered = Arc::new(AtomicBool::new(false));
            let answered_here = Arc::clone(&answered);
            let quiet_here = Arc::clone(&quiet);
            let failing_here = Arc::clone(&failing);
            let handle = thread::Builder::new()
                .name(format!("tracker tier {}", i + 1))
                .spawn(move || {
                    let mut first_tx = Some(first_tx);
                    // One warning per failure streak: the first failure
                    // says what is wrong; the retries are logged at debug.
                    let mut streak = false;
                    run_announce_loop(
                        Box::new(tier),
                        rx,
                        every,
                        |e| request(e),
                        |answer| {
                            let first = match answer {
                                Ok(peers) => {
                                    answered_here.store(true, Ordering::Relaxed);
                                    if std::mem::take(&mut streak) {
                                        failing_here.fetch_sub(1, Ordering::Relaxed);
                                        info!("tier {}: a tracker answers again", i + 1);
                                    }
                                    on_peers(peers);
                                    Ok(())
                                }
                                Err((e, retry)) => {
                                    if streak {
                                        debug!("{e}; retrying in {}s", retry.as_secs());
                                    } else if quiet_here.load(Ordering::Relaxed) {
                                        // The start reports it if every
                                        // tier fails, else warns of it.
                                        debug!("{e}");
                                    } else {
                                        warn!(
                                            "{e}; retrying in {}s, then less often \
                                             (further failures are logged with -vv)",
                                            retry.as_secs()
                                        );
                                    }
                                    if !std::mem::replace(&mut streak, true) {
                                        failing_here.fetch_add(1, Ordering::Relaxed);
                                    }
                                    Err(e.clone())
                                }
                            };
                            if let Some(tx) = first_tx.take() {
                                let _ = tx.send(first);
                            }
                        },
                    );
                })?;
            tier_txs.push(tx);
            handles.push((handle, answered));
        }
        let (cmd_tx, cmd_rx) = unbounded::<TrackerCommand>();
        let (ended_tx, ended_rx) = bounded::<()>(0);
        let thread = thread::Builder::new()
            .name("tracker".into())
            .spawn(move || {
                let _ended = ended_tx;
                while let Ok(cmd) = cmd_rx.recv() {
                    if cmd == TrackerCommand::Stop {
                        break;
                    }
                    for tx in &tier_txs {
                        let _ = tx.send(cmd);
                    }
                }
                for tx in &tier_txs {
                    let _ = tx.send(TrackerCommand::Stop);
                }
                // A tier that never answered has no `stopped` to send; it
                // may be waiting out an announce to a silent tracker, and
                // the exit does not wait for that (it ends by itself).
                for (handle, answered) in handles {
                    if answered.load(Ordering::Relaxed) {
                        let _ = handle.join();
                    }
                }
            })?;
        Ok(Trackers {
            cmd_tx,
            thread,
            ended_rx,
            first_rx,
            tier_count,
            quiet,
            failing,
        })
    }
}

/// The running tracker threads of a torrent.
pub struct Trackers {
    cmd_tx: Sender<TrackerCommand>,
    thread: JoinHandle<()>,
    /// Disconnects when the `tracker` thread ends.
    ended_rx: Receiver<()>,
    /// The outcome of each tier's first announce.
    first_rx: Receiver<Result<(), TrackerError>>,
    tier_count: usize,
    /// Whether the tier threads leave their failures to [`Trackers::wait_first`].
    quiet: Arc<AtomicBool>,
    /// How many tiers are in a streak of failed announces (each warned of once).
    failing: Arc<AtomicUsize>,
}

impl Trackers {
    /// Whether any tier's last announce failed (and so was warned of).
    pub fn failing(&self) -> bool {
        self.failing.load(Ordering::Relaxed) > 0
    }

    /// The sender of commands to every tier.
    pub fn commands(&self) -> Sender<TrackerCommand> {
        self.cmd_tx.clone()
    }

    /// Waits for the first tier to answer its first announce (its peers
    /// have gone to `on_peers` by then).
    ///
    /// # Errors
    /// When every tier failed its first announce: a refusal
    /// ([`TrackerError::Failure`]) if a tracker sent one, else the first
    /// tier's error.
    pub fn wait_first(&self) -> Result<(), TrackerError> {
        let mut errors = Vec::new();
        while errors.len() < self.tier_count {
            match self.first_rx.recv() {
                Ok(Ok(())) => {
                    self.quiet.store(false, Ordering::Relaxed);
                    for e in &errors {
                        warn!("{e}");
                    }
                    // A failure that came in meanwhile was logged quietly.
                    while let Ok(Err(e)) = self.first_rx.try_recv() {
                        warn!("{e}");
                    }
                    return Ok(());
                }
                Ok(Err(e)) => errors.push(e),
                Err(_) => break,
            }
        }
        let refusal = errors
            .iter()
            .position(|e| matches!(e, TrackerError::Failure(_)));
        Err(match refusal {
            Some(i) => errors.swap_remove(i),
            None => errors.into_iter().next().unwrap_or(TrackerError::NoTracker),
        })
    }

    /// Stops the threads: `completed` first when `completed`, then
    /// `stopped`. Waits at most `wait` for them; `false` when they were
    /// still announcing then (they are left to end by themselves).
    pub fn stop(self, completed: bool, wait: Duration) -> bool {
        if completed {
            let _ = self.cmd_tx.send(TrackerCommand::Completed);
        }
        let _ = self.cmd_tx.send(TrackerCommand::Stop);
        if self.ended_rx.recv_timeout(wait) == Err(RecvTimeoutError::Timeout) {
            return false;
        }
        let _ = self.thread.join();
        true
    }
}

#[cfg(test)]
mod tests;
