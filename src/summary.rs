//! The end-of-run summary: one line on stderr after every download or
//! seed run, and with `--json` the same figures as one JSON line on stdout.
//!
//! Read from the torrents' [`Stats`] once they have ended; pure apart from
//! that read. With several torrents the figures are their sums (the size
//! of all, the peers of each counted for each). Owns no counter: every
//! figure is kept where it happens (peer threads, piece manager, peer
//! table).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use indicatif::HumanBytes;

use crate::stats::Stats;

/// What a run did, for the summary line and `--json`. Field names are the
/// JSON's, and stable.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Summary {
    /// Always `"summary"` (the JSON line's kind).
    pub event: &'static str,
    /// Bytes of content of the torrents (0 for a magnet whose metadata
    /// never came).
    pub size: u64,
    /// Seconds the run took, from its start to the end of the torrents.
    pub seconds: f64,
    /// Payload bytes received (verified or not) this run.
    pub downloaded: u64,
    /// Average download rate in bytes a second: `downloaded` over the time
    /// until the download completed (the whole run when it did not).
    pub download_rate: u64,
    /// Payload bytes sent to peers this run.
    pub uploaded: u64,
    /// Average upload rate in bytes a second, over the whole run.
    pub upload_rate: u64,
    /// Distinct peers that got past the handshake (by IP and peer id).
    pub peers: usize,
    /// Payload bytes received and thrown away: late or duplicate blocks,
    /// endgame copies, pieces that failed the hash check.
    pub wasted: u64,
    /// Pieces that failed the hash check.
    pub hash_failures: u64,
    /// Peers banned (by IP).
    pub banned: usize,
}

impl Summary {
    /// The summary of the torrents whose counters are `stats`, for a run
    /// that started at `started` and ended at `ended`.
    pub fn of(stats: &[&Stats], started: Instant, ended: Instant) -> Summary {
        let run = ended.saturating_duration_since(started);
        let sum = |f: &dyn Fn(&Stats) -> u64| stats.iter().map(|s| f(s)).sum::<u64>();
        let downloaded = sum(&|s| s.downloaded.load(Ordering::Relaxed));
        let uploaded = sum(&|s| s.uploaded.load(Ordering::Relaxed));
        // The download lasted until the last torrent completed.
        let download_time = stats
            .iter()
            .map(|s| {
                s.completed_at
                    .get()
                    .map_or(run, |at| at.saturating_duration_since(started))
            })
            .max()
            .unwrap_or(run);
        Summary {
            event: "summary",
            size: sum(&|s| s.total_len.load(Ordering::Relaxed)),
            seconds: (run.as_secs_f64() * 1000.0).round() / 1000.0,
            downloaded,
            download_rate: rate(downloaded, download_time),
            uploaded,
            upload_rate: rate(uploaded, run),
            peers: stats.iter().map(|s| s.seen_count()).sum(),
            wasted: sum(&|s| s.wasted.load(Ordering::Relaxed)),
            hash_failures: sum(&|s| u64::from(s.hash_failures.load(Ordering::Relaxed))),
            banned: stats.iter().map(|s| s.banned_count()).sum(),
        }
    }

    /// The line for people, on stderr: `summary: size 2.00 MiB in 1.5s,
    /// downloaded 2.00 MiB (1.33 MiB/s), uploaded 0 B (0 B/s), 1 peer,
    /// wasted 0 B, 0 pieces failed the hash check, 0 peers banned`.
    pub fn line(&self) -> String {
        let plural =
            |n: u64, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
        format!(
            "summary: size {} in {}, downloaded {} ({}/s), uploaded {} ({}/s), {}, wasted {}, \
             {} the hash check, {} banned",
            HumanBytes(self.size),
            show_seconds(self.seconds),
            HumanBytes(self.downloaded),
            HumanBytes(self.download_rate),
            HumanBytes(self.uploaded),
            HumanBytes(self.upload_rate),
            plural(self.peers as u64, "peer", "peers"),
            HumanBytes(self.wasted),
            plural(self.hash_failures, "piece failed", "pieces failed"),
            plural(self.banned as u64, "peer", "peers"),
        )
    }

    /// The JSON line: `{"event":"summary","size":...}`.
    pub fn json(&self) -> String {
        serde_json::to_string(self).expect("a summary is plain numbers and strings")
    }
}

/// Bytes a second, over at least a millisecond.
fn rate(bytes: u64, over: Duration) -> u64 {
    (bytes as f64 / over.as_secs_f64().max(1e-3)) as u64
}

/// `0.4s`, `12.3s`, `2m05s`, `1h02m`.
fn show_seconds(seconds: f64) -> String {
    let whole = seconds as u64;
    match whole {
        0..60 => format!("{seconds:.1}s"),
        60..3600 => format!("{}m{:02}s", whole / 60, whole % 60),
        _ => format!("{}h{:02}m", whole / 3600, whole / 60 % 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(total: u64, down: u64, up: u64) -> Stats {
        let stats = Stats::default();
        stats.total_len.store(total, Ordering::Relaxed);
        stats.downloaded.store(down, Ordering::Relaxed);
        stats.uploaded.store(up, Ordering::Relaxed);
        stats
    }

    #[test]
    fn a_download_summary_carries_every_figure() {
        let start = Instant::now();
        let s = stats(2 << 20, 2 << 20, 1 << 20);
        s.wasted.store(16384, Ordering::Relaxed);
        s.hash_failures.store(1, Ordering::Relaxed);
        s.add_seen([127, 0, 0, 1].into(), [1; 20]);
        s.add_seen([127, 0, 0, 1].into(), [1; 20]);
        s.add_seen([127, 0, 0, 2].into(), [1; 20]);
        s.add_banned(([127, 0, 0, 2], 7000).into());
        let _ = s.completed_at.set(start + Duration::from_secs(1));
        let summary = Summary::of(&[&s], start, start + Duration::from_secs(4));
        assert_eq!(summary.size, 2 << 20);
        assert_eq!(summary.downloaded, 2 << 20);
        assert_eq!(summary.download_rate, 2 << 20, "over the second it took");
        assert_eq!(summary.upload_rate, (1 << 20) / 4, "over the whole run");
        assert_eq!(summary.peers, 2, "the same peer twice is one");
        assert_eq!(summary.banned, 1);
        assert_eq!(summary.seconds, 4.0);
        assert_eq!(
            summary.line(),
            "summary: size 2.00 MiB in 4.0s, downloaded 2.00 MiB (2.00 MiB/s), \
             uploaded 1.00 MiB (256.00 KiB/s), 2 peers, wasted 16.00 KiB, \
             1 piece failed the hash check, 1 peer banned"
        );
    }

    #[test]
    fn the_json_line_has_stable_snake_case_fields() {
        let start = Instant::now();
        let a = stats(100, 0, 300);
        let b = stats(50, 50, 0);
        let summary = Summary::of(&[&a, &b], start, start + Duration::from_millis(1500));
        let value: serde_json::Value = serde_json::from_str(&summary.json()).unwrap();
        assert_eq!(value["event"], "summary");
        assert_eq!(value["size"], 150);
        assert_eq!(value["downloaded"], 50);
        assert_eq!(value["uploaded"], 300);
        assert_eq!(value["upload_rate"], 200);
        assert_eq!(value["seconds"], 1.5);
        assert_eq!(
            value["download_rate"], 33,
            "neither completed: the whole run"
        );
        for field in ["peers", "wasted", "hash_failures", "banned"] {
            assert_eq!(value[field], 0, "{field}");
        }
    }

    #[test]
    fn durations_read_by_their_size() {
        assert_eq!(show_seconds(0.42), "0.4s");
        assert_eq!(show_seconds(59.94), "59.9s");
        assert_eq!(show_seconds(125.0), "2m05s");
        assert_eq!(show_seconds(3720.0), "1h02m");
    }
}
