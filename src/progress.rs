//! The progress display: a live line on a terminal (indicatif), periodic log
//! lines otherwise or when `-v` asks for logs.
//!
//! Owns only presentation; the numbers come from the piece manager as a
//! [`Snapshot`].

use std::time::{Duration, Instant};

use indicatif::{HumanBytes, HumanDuration, ProgressBar, ProgressDrawTarget, ProgressStyle};
use log::info;

/// What the display shows at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    /// Bytes of verified pieces.
    pub have_len: u64,
    /// Total content length.
    pub total_len: u64,
    /// Connected peers.
    pub peers: usize,
    /// Bytes uploaded.
    pub uploaded: u64,
}

/// How often a log line is written when there is no live line.
const LOG_EVERY: Duration = Duration::from_secs(5);

/// A live progress line or periodic log lines.
pub struct Progress {
    bar: Option<ProgressBar>,
    seeding: bool,
    last_log: Option<(Instant, u64)>,
}

impl Progress {
    /// A display for a download (or, with `seeding`, for serving).
    /// `live` asks for the terminal line; otherwise log lines are written.
    pub fn new(total_len: u64, seeding: bool, live: bool) -> Progress {
        let bar = live.then(|| {
            let bar = ProgressBar::with_draw_target(Some(total_len), ProgressDrawTarget::stderr());
            let template = if seeding {
                "seeding {total_bytes} | {msg}"
            } else {
                "{percent:>3}% [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta} | {msg}"
            };
            bar.set_style(
                ProgressStyle::with_template(template)
                    .expect("the template is valid")
                    .progress_chars("=> "),
            );
            bar
        });
        Progress {
            bar,
            seeding,
            last_log: None,
        }
    }

    /// Shows `snap`.
    pub fn update(&mut self, snap: &Snapshot) {
        if let Some(bar) = &self.bar {
            bar.set_position(snap.have_len);
            bar.set_message(format!(
                "{} peers, {} up",
                snap.peers,
                HumanBytes(snap.uploaded)
            ));
            return;
        }
        let now = Instant::now();
        match self.last_log {
            Some((at, _)) if now.duration_since(at) < LOG_EVERY => {}
            previous => {
                info!("{}", self.log_line(snap, previous, now));
                self.last_log = Some((now, snap.have_len));
            }
        }
    }

    fn log_line(&self, snap: &Snapshot, previous: Option<(Instant, u64)>, now: Instant) -> String {
        let peers = format!(
            "{} peers, {} uploaded",
            snap.peers,
            HumanBytes(snap.uploaded)
        );
        if self.seeding {
            return format!("seeding: {peers}");
        }
        let percent = if snap.total_len == 0 {
            100.0
        } else {
            snap.have_len as f64 * 100.0 / snap.total_len as f64
        };
        let rate = previous.map_or(0.0, |(at, len)| {
            (snap.have_len - len.min(snap.have_len)) as f64
                / now.duration_since(at).as_secs_f64().max(1e-3)
        });
        let eta = if rate > 0.0 {
            let secs = (snap.total_len - snap.have_len) as f64 / rate;
            HumanDuration(Duration::from_secs_f64(secs)).to_string()
        } else {
            "unknown".into()
        };
        format!(
            "{percent:.1}% {}/{} at {}/s, {peers}, eta {eta}",
            HumanBytes(snap.have_len),
            HumanBytes(snap.total_len),
            HumanBytes(rate as u64),
        )
    }

    /// Leaves the final state on screen (or in the log).
    pub fn finish(&mut self, snap: &Snapshot) {
        match &self.bar {
            Some(bar) => {
                bar.set_position(snap.have_len);
                bar.abandon();
            }
            None => {
                let line = self.log_line(snap, self.last_log, Instant::now());
                info!("{line}");
            }
        }
    }
}

/// A live display for the start-up check of existing data.
pub fn check_bar(piece_count: u32, live: bool) -> Option<ProgressBar> {
    live.then(|| {
        let bar = ProgressBar::with_draw_target(
            Some(u64::from(piece_count)),
            ProgressDrawTarget::stderr(),
        );
        bar.set_style(
            ProgressStyle::with_template("checking {pos}/{len} pieces [{bar:30}] {per_sec}")
                .expect("the template is valid")
                .progress_chars("=> "),
        );
        bar
    })
}
