//! The connection's side of the process-wide rate limits
//! ([`crate::bandwidth`]): each block received or sent is charged to the
//! shared bucket, and when the bucket says wait, this connection stops
//! reading blocks (download) or serving them (upload) until then, while
//! the rest of its loop (commands, writes, the other direction) goes on.
//!
//! - Download: each connection holds a [`Share`](crate::bandwidth::Share)
//!   of the limit. A block is charged as it is decoded. While the wait
//!   runs, the loop neither reads the socket nor decodes what is buffered,
//!   so TCP holds the remote back. That silence is ours: the pipeline's
//!   snub timer is held
//!   ([`Pipeline::hold_timeout`](crate::peer::pipeline::Pipeline::hold_timeout)),
//!   and the silence limit does not count it. The pipeline is sized to the
//!   lesser of the peer's rate and its fair part of the limit (the limit
//!   divided by the connections fetching pieces; at first, by every
//!   connection), so all the requests in flight together stay about two
//!   seconds of the limit: the remotes are not asked for far more than we
//!   will read, which would fill the sockets' buffers and arrive in bursts.
//!   (The pipeline's floor of four blocks a peer still applies: below
//!   about 30 KB/s a peer, that is more than two seconds' worth.)
//! - Upload: a request is charged when it comes to be served; when the
//!   bucket says wait, it is held, paid, and served first once the wait is
//!   over. A choke, `not interested` or its cancel drops it.
//! - Repeats: with an upload limit our upload is scarce, so a piece that
//!   went out to another connection first
//!   ([`FirstSent`](crate::peer::first_sent::FirstSent)) waits: it is set
//!   aside, the requests behind it go first, and it is served only when
//!   the bucket has spare bytes (demand below the limit) or after
//!   [`REPEAT_DELAY_MAX`]. So a seeder whose leechers asked it for the same
//!   piece sends every piece once before it sends any twice, and never
//!   holds a request back for long. At most [`REPEATS_MAX`] wait; past
//!   that, repeats are served in turn.
//!
//! With no limit set, each check is an `Option` found `None`: no lock, no
//! clock.

use std::time::{Duration, Instant};

use super::Conn;
use crate::peer::requests::Request;

/// Longest a repeat waits for spare upload before it is served anyway:
/// well under the time common clients wait for a block before they ask
/// someone else (libtorrent gives up on a silent peer after 20 s).
pub(crate) const REPEAT_DELAY_MAX: Duration = Duration::from_secs(5);
/// Most repeats set aside at once, which also bounds what a `cancel`
/// scans among them.
const REPEATS_MAX: usize = 128;
/// How soon a repeat that found no spare upload asks again.
const REPEAT_RETRY: Duration = Duration::from_millis(10);

impl Conn<'_> {
    /// Sizes the pipeline for a peer delivering `rate` bytes a second
    /// (`None`: not measured yet), within its fair part of the download
    /// limit if there is one.
    pub(super) fn size_pipeline(&mut self, rate: Option<u64>) {
        match (rate, &self.download_share) {
            (Some(rate), Some(share)) => self.pipeline.set_rate(rate.min(share.fair_rate())),
            (None, Some(share)) => self.pipeline.set_rate(share.start_rate()),
            (Some(rate), None) => self.pipeline.set_rate(rate),
            (None, None) => {}
        }
    }

    /// Counts this connection among those sharing the download limit while
    /// it has pieces to fetch; one that starts fetching sizes its pipeline
    /// to its part of the limit among every connection before it sends
    /// its first requests (cautious: its measured rate, within its fair
    /// part among the active ones, takes over after a second).
    pub(super) fn update_share(&mut self) {
        let fetching = !self.pipeline.is_empty();
        if let Some(share) = &mut self.download_share
            && share.set_active(fetching)
        {
            let start = share.start_rate().min(share.fair_rate());
            self.pipeline.set_rate(start);
        }
    }

    /// Charges a received block to the download limit.
    pub(super) fn charge_download(&mut self, bytes: usize) {
        if let Some(share) = &self.download_share {
            let wait = share.limiter().take(bytes as u64);
            if !wait.is_zero() {
                self.download_paused_until = Some(Instant::now() + wait);
            }
        }
    }

    /// How long the download limit still holds reading back, if it does.
    pub(super) fn download_pause(&self, now: Instant) -> Option<Duration> {
        let until = self.download_paused_until?;
        (now < until).then(|| until - now)
    }

    /// Whether the download limit holds reading back now.
    pub(super) fn download_paused(&self) -> bool {
        self.download_paused_until.is_some() && self.download_pause(Instant::now()).is_some()
    }

    /// While reading is held back: the remote's silence is not its fault.
    pub(super) fn excuse_silence(&mut self, now: Instant) {
        self.pipeline.hold_timeout(now);
        self.last_received = now;
    }

    /// The next request to serve, if the upload limit allows one now: the
    /// held one first (already paid), then a repeat that waited
    /// [`REPEAT_DELAY_MAX`], then the oldest queued request for a piece
    /// not first sent elsewhere, charged; last a repeat, if the limit has
    /// spare bytes (see the module docs).
    pub(super) fn next_to_serve(&mut self) -> Option<Request> {
        let now = Instant::now();
        if self.upload_pause(now).is_some() {
            return None;
        }
        if let Some(request) = self.held.take() {
            return Some(request);
        }
        let Some(limiter) = self.ctx.bandwidth.upload.clone() else {
            return self.serve_queue.pop();
        };
        let overdue = self
            .repeats
            .front()
            .filter(|(_, since)| now.duration_since(*since) >= REPEAT_DELAY_MAX)
            .is_some();
        let request = if overdue {
            self.repeats.pop_front().map(|(request, _)| request)
        } else {
            self.pop_new(now)
        };
        if let Some(request) = request {
            self.loaded.first_sent.claim(request.0, self.conn_id);
            let wait = limiter.take(u64::from(request.2));
            if !wait.is_zero() {
                self.upload_paused_until = Some(now + wait);
                self.held = Some(request);
                return None;
            }
            return Some(request);
        }
        let &(request, _) = self.repeats.front()?;
        if self.repeats_retry_at.is_some_and(|at| now < at) {
            return None;
        }
        if !limiter.take_if_spare(u64::from(request.2)) {
            self.repeats_retry_at = Some(now + REPEAT_RETRY);
            return None;
        }
        self.repeats_retry_at = None;
        self.repeats.pop_front();
        Some(request)
    }

    /// The oldest queued request for a piece that went out first to this
    /// connection or to none, setting repeats aside on the way (all of
    /// them once [`REPEATS_MAX`] wait).
    fn pop_new(&mut self, now: Instant) -> Option<Request> {
        while let Some(request) = self.serve_queue.pop() {
            if self.repeats.len() >= REPEATS_MAX
                || self.loaded.first_sent.is_new_for(request.0, self.conn_id)
            {
                return Some(request);
            }
            self.repeats.push_back((request, now));
        }
        None
    }

    /// When a repeat set aside may next be tried, if one waits.
    fn repeats_due(&self, now: Instant) -> Option<Instant> {
        let &(_, since) = self.repeats.front()?;
        let retry = self.repeats_retry_at.unwrap_or(now);
        Some(retry.min(since + REPEAT_DELAY_MAX))
    }

    /// How long until the upload limit may let something go that it holds
    /// back now (a held request, or a repeat), if it holds anything.
    pub(super) fn upload_wake(&self, now: Instant) -> Option<Duration> {
        // A held request goes before any repeat: nothing is tried sooner.
        if let Some(pause) = self.upload_pause(now) {
            return Some(pause);
        }
        self.repeats_due(now)
            .filter(|_| self.serve_queue.is_empty())
            .map(|at| at.saturating_duration_since(now))
    }

    /// How long the upload limit still holds a request back, if it does.
    pub(super) fn upload_pause(&self, now: Instant) -> Option<Duration> {
        let until = self.upload_paused_until?;
        (now < until && self.held.is_some()).then(|| until - now)
    }

    /// Whether requests wait to be served that the upload limit does not
    /// hold back.
    pub(super) fn can_serve_now(&self, now: Instant) -> bool {
        let repeat_due = self.repeats_due(now).is_some_and(|at| at <= now);
        (self.held.is_some() || !self.serve_queue.is_empty() || repeat_due)
            && self.upload_pause(now).is_none()
    }

    /// Forgets the held request and the repeats (choked, or the remote
    /// lost interest).
    pub(super) fn drop_held(&mut self) {
        self.held = None;
        self.repeats.clear();
        self.repeats_retry_at = None;
    }

    /// The remote cancelled `request`: it is not served even if held or
    /// set aside.
    pub(super) fn cancel_held(&mut self, request: Request) {
        if self.held == Some(request) {
            self.held = None;
        }
        if !self.repeats.is_empty() {
            self.repeats.retain(|(queued, _)| *queued != request);
        }
    }
}
