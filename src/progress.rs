//! The progress display: a live line on a terminal (indicatif), periodic log
//! lines otherwise or when `-v` asks for logs, or JSON lines on stdout for
//! scripts (`--json`, [`Progress::with_json`]; fields in [`ProgressLine`]).
//!
//! Owns only presentation; the numbers come from the piece manager as a
//! [`Snapshot`], or while a magnet's metadata is fetched, from the metadata
//! phase ([`Progress::metadata`]). With several torrents every line is
//! labelled with its torrent's name (escaped and capped: it comes from
//! outside), and the live lines share one
//! [`MultiProgress`] with a total line ([`total_bar`]).

use std::time::{Duration, Instant};

use indicatif::{
    HumanBytes, HumanDuration, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle,
};
use log::info;

use crate::untrusted;

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
    /// Payload bytes of pieces received (verified or not).
    pub downloaded: u64,
}

/// One `--json` progress line: `{"event":"progress",...}`. The field
/// names are stable.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ProgressLine<'a> {
    /// Always `"progress"`.
    pub event: &'static str,
    /// The torrent's name (escaped, [`untrusted::show`]).
    pub torrent: &'a str,
    /// `"downloading"` or `"seeding"`.
    pub state: &'static str,
    /// The content's length in bytes.
    pub size: u64,
    /// Bytes of verified pieces.
    pub have: u64,
    /// Percent of the content verified.
    pub percent: f64,
    /// Payload bytes received in this run.
    pub downloaded: u64,
    /// Payload bytes sent in this run.
    pub uploaded: u64,
    /// Peers connected now.
    pub peers: usize,
    /// Bytes a second verified since the previous line.
    pub download_rate: u64,
}

/// One `--json` line while a magnet's metadata is fetched:
/// `{"event":"metadata",...}`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MetadataLine<'a> {
    /// Always `"metadata"`.
    pub event: &'static str,
    /// The torrent's name so far (the magnet's `dn`, or its info-hash).
    pub torrent: &'a str,
    /// Peers connected.
    pub peers: usize,
    /// Peers that offered the metadata.
    pub offering: usize,
    /// Metadata pieces received.
    pub received: u32,
    /// Metadata pieces needed (0 while unknown).
    pub needed: u32,
}

/// Writes one JSON line on stdout, whole. A closed stdout is not an
/// error of the download: the line is dropped.
pub fn print_json_line(value: &impl serde::Serialize) {
    use std::io::Write;
    if let Ok(mut line) = serde_json::to_string(value) {
        line.push('\n');
        let _ = std::io::stdout().lock().write_all(line.as_bytes());
    }
}

/// How often a log line is written when there is no live line.
const LOG_EVERY: Duration = Duration::from_secs(5);
/// How often a `--json` progress line is written.
const JSON_EVERY: Duration = Duration::from_secs(1);

/// A live progress line or periodic log lines.
pub struct Progress {
    bar: Option<ProgressBar>,
    seeding: bool,
    /// Prefix of every line: the torrent's name when there are several.
    label: String,
    last_log: Option<(Instant, u64)>,
    /// With `--json`: the torrent's name for the lines.
    json: Option<String>,
}

/// The bars' style: `template`, drawn with `=> `.
pub(crate) fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .expect("the template is valid")
        .progress_chars("=> ")
}

impl Progress {
    /// A display for a download (or, with `seeding`, for serving) of
    /// `total_len` bytes (0 while a magnet's metadata is unknown). `live`
    /// asks for the terminal line, drawn in `multi` when given; otherwise
    /// log lines are written. `label` prefixes each line.
    pub fn new(
        total_len: u64,
        seeding: bool,
        live: bool,
        label: Option<String>,
        multi: Option<&MultiProgress>,
    ) -> Progress {
        let bar = live.then(|| {
            let bar = ProgressBar::with_draw_target(Some(total_len), ProgressDrawTarget::stderr());
            match multi {
                Some(multi) => multi.add(bar),
                None => bar,
            }
        });
        let mut progress = Progress {
            bar,
            seeding,
            label: label.as_deref().map_or_else(String::new, label_of),
            last_log: None,
            json: None,
        };
        progress.set_total(total_len);
        progress
    }

    /// Writes JSON lines on stdout instead of log lines (`--json`), for
    /// the torrent named `name` (escaped here). A live line, if asked,
    /// is dropped.
    pub fn with_json(mut self, name: &str) -> Progress {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        self.json = Some(untrusted::show(name));
        self
    }

    /// The download is complete and the torrent goes on seeding: the
    /// line says so, after `note`.
    pub fn start_seeding(&mut self, note: &str) {
        self.seeding = true;
        let total = self.bar.as_ref().and_then(ProgressBar::length);
        if let Some(total) = total {
            self.set_total(total);
        }
        self.note(note);
    }

    /// Tells the user something without breaking the live line: printed
    /// above it, or on stderr when there is none.
    pub fn note(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(format!("{}{line}", self.label)),
            None => eprintln!("{}{line}", self.label),
        }
    }

    /// Writes a JSON progress line for `snap` if it is time (or `force`).
    fn json_line(&mut self, snap: &Snapshot, force: bool) {
        let Some(name) = &self.json else { return };
        let now = Instant::now();
        let previous = self.last_log;
        if !force && previous.is_some_and(|(at, _)| now.duration_since(at) < JSON_EVERY) {
            return;
        }
        let rate = previous.map_or(0, |(at, len)| {
            let secs = now.duration_since(at).as_secs_f64().max(1e-3);
            (snap.have_len.saturating_sub(len) as f64 / secs) as u64
        });
        print_json_line(&ProgressLine {
            event: "progress",
            torrent: name,
            state: if self.seeding {
                "seeding"
            } else {
                "downloading"
            },
            size: snap.total_len,
            have: snap.have_len,
            percent: percent(snap),
            downloaded: snap.downloaded,
            uploaded: snap.uploaded,
            peers: snap.peers,
            download_rate: rate,
        });
        self.last_log = Some((now, snap.have_len));
    }

    /// The torrent's name is known (from a magnet's metadata): lines that
    /// were labelled with the info-hash take it.
    pub fn rename(&mut self, name: &str) {
        if self.json.is_some() {
            self.json = Some(untrusted::show(name));
        }
        if !self.label.is_empty() {
            self.label = label_of(name);
            if let Some(bar) = &self.bar {
                bar.set_prefix(self.label.clone());
            }
        }
    }

    /// The content's length is known (from the metadata).
    pub fn set_total(&mut self, total_len: u64) {
        if let Some(bar) = &self.bar {
            bar.set_length(total_len);
            // The label goes in as the prefix, never into the template,
            // where a name's `{` would break it.
            bar.set_prefix(self.label.clone());
            bar.set_style(style(if self.seeding {
                "{prefix}seeding {total_bytes} | {msg}"
            } else {
                "{prefix}{percent:>3}% [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta} | {msg}"
            }));
        }
    }

    /// Shows the state of a metadata fetch: peers connected, how many
    /// offered the metadata, and metadata pieces received of those needed
    /// (0 needed while no peer has said how large it is).
    pub fn metadata(&mut self, peers: usize, offering: usize, received: u32, needed: u32) {
        if let Some(name) = &self.json {
            let now = Instant::now();
            if self
                .last_log
                .is_none_or(|(at, _)| now.duration_since(at) >= JSON_EVERY)
            {
                print_json_line(&MetadataLine {
                    event: "metadata",
                    torrent: name,
                    peers,
                    offering,
                    received,
                    needed,
                });
                self.last_log = Some((now, 0));
            }
            return;
        }
        let line = format!(
            "{}fetching metadata: {peers} peers, {offering} offering it, {received}/{needed} pieces",
            self.label
        );
        if let Some(bar) = &self.bar {
            bar.set_style(style("{msg}"));
            bar.set_message(line);
            return;
        }
        let now = Instant::now();
        if self
            .last_log
            .is_none_or(|(at, _)| now.duration_since(at) >= LOG_EVERY)
        {
            info!("{line}");
            self.last_log = Some((now, 0));
        }
    }

    /// Shows `snap`.
    pub fn update(&mut self, snap: &Snapshot) {
        if self.json.is_some() {
            self.json_line(snap, false);
            return;
        }
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
            return format!("{}seeding: {peers}", self.label);
        }
        let percent = percent(snap);
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
            "{}{percent:.1}% {}/{} at {}/s, {peers}, eta {eta}",
            self.label,
            HumanBytes(snap.have_len),
            HumanBytes(snap.total_len),
            HumanBytes(rate as u64),
        )
    }

    /// Leaves the final state on screen (or in the log).
    pub fn finish(&mut self, snap: &Snapshot) {
        if self.json.is_some() {
            self.json_line(snap, true);
            return;
        }
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

/// Percent of the content verified (100 for an empty torrent).
fn percent(snap: &Snapshot) -> f64 {
    if snap.total_len == 0 {
        100.0
    } else {
        snap.have_len as f64 * 100.0 / snap.total_len as f64
    }
}

/// The prefix of a torrent's lines: its name, which comes from the torrent
/// or the magnet link, made safe to print ([`untrusted::show`]).
fn label_of(name: &str) -> String {
    format!("{}: ", untrusted::show(name))
}

/// The live total line under several torrents' lines.
pub fn total_bar(multi: &MultiProgress) -> ProgressBar {
    let bar = multi.add(ProgressBar::new(0));
    bar.set_style(style(
        "total {percent:>3}% [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} | {msg}",
    ));
    bar
}

/// A live display for the start-up check of existing data.
pub fn check_bar(piece_count: u32, live: bool) -> Option<ProgressBar> {
    live.then(|| {
        let bar = ProgressBar::with_draw_target(
            Some(u64::from(piece_count)),
            ProgressDrawTarget::stderr(),
        );
        bar.set_style(style("checking {pos}/{len} pieces [{bar:30}] {per_sec}"));
        bar
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_with_template_braces_does_not_break_the_live_line() {
        for name in ["{bad", "a}b", "{bar}", "{{", "x{msg"] {
            let mut progress = Progress::new(100, false, true, Some(name.into()), None);
            progress.set_total(200);
            progress.rename(name);
            let mut seeding = Progress::new(100, true, true, Some(name.into()), None);
            seeding.set_total(100);
        }
    }

    #[test]
    fn a_label_from_outside_is_escaped_and_capped() {
        assert_eq!(
            label_of("evil\x1b]0;pwned\x07\x1b[2J"),
            "evil\\u{1b}]0;pwned\\u{7}\\u{1b}[2J: "
        );
        assert_eq!(
            label_of("Movie: The Sequel (2020).mkv"),
            "Movie: The Sequel (2020).mkv: "
        );
        assert!(label_of(&"x".repeat(10_000)).chars().count() < 210);
    }

    #[test]
    fn log_lines_carry_the_escaped_label() {
        let progress = Progress::new(100, false, false, Some("a\x1b[2Jb".into()), None);
        let snap = Snapshot {
            have_len: 50,
            total_len: 100,
            peers: 1,
            uploaded: 0,
            downloaded: 50,
        };
        let line = progress.log_line(&snap, None, Instant::now());
        assert!(line.starts_with("a\\u{1b}[2Jb: 50.0%"), "{line}");
        let mut renamed = progress;
        renamed.rename("\x07bell");
        let line = renamed.log_line(&snap, None, Instant::now());
        assert!(line.starts_with("\\u{7}bell: "), "{line}");
    }
}
