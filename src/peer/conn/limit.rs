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
//!
//! With no limit set, each check is an `Option` found `None`: no lock, no
//! clock.

use std::time::{Duration, Instant};

use super::Conn;
use crate::peer::requests::Request;

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
    /// held one first (already paid), else the oldest queued, charged.
    pub(super) fn next_to_serve(&mut self) -> Option<Request> {
        if self.upload_pause(Instant::now()).is_some() {
            return None;
        }
        if let Some(request) = self.held.take() {
            return Some(request);
        }
        let request = self.serve_queue.pop()?;
        if let Some(limiter) = &self.ctx.bandwidth.upload {
            let wait = limiter.take(u64::from(request.2));
            if !wait.is_zero() {
                self.upload_paused_until = Some(Instant::now() + wait);
                self.held = Some(request);
                return None;
            }
        }
        Some(request)
    }

    /// How long the upload limit still holds a request back, if it does.
    pub(super) fn upload_pause(&self, now: Instant) -> Option<Duration> {
        let until = self.upload_paused_until?;
        (now < until && self.held.is_some()).then(|| until - now)
    }

    /// Whether requests wait to be served that the upload limit does not
    /// hold back.
    pub(super) fn can_serve_now(&self, now: Instant) -> bool {
        (self.held.is_some() || !self.serve_queue.is_empty()) && self.upload_pause(now).is_none()
    }

    /// Forgets the held request (choked, or the remote lost interest).
    pub(super) fn drop_held(&mut self) {
        self.held = None;
    }

    /// The remote cancelled `request`: it is not served even if held.
    pub(super) fn cancel_held(&mut self, request: Request) {
        if self.held == Some(request) {
            self.held = None;
        }
    }
}
