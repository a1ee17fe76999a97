//! Seeding after a download and bounded seed runs (`--seed-ratio`,
//! `--seed-time`), Ctrl-C while seeding, bad values, and
//! `--announce-interval` against the HTTP and UDP test trackers.

use std::fs;
use std::time::{Duration, Instant};

use crate::support::magnet::*;
use crate::support::tracker::TestTracker;
use crate::support::udp_tracker::UdpTestTracker;
use crate::support::*;

/// Every line of `stdout` as JSON; fails naming a line that is not.
pub fn json_lines(stdout: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}")))
        .collect()
}

/// The one `"event":"summary"` line of a `--json` run's stdout.
pub fn json_summary(stdout: &str) -> serde_json::Value {
    let mut summaries: Vec<_> = json_lines(stdout)
        .into_iter()
        .filter(|v| v["event"] == "summary")
        .collect();
    assert_eq!(summaries.len(), 1, "one summary line; stdout:\n{stdout}");
    summaries.remove(0)
}

/// The N of the first `seeding on port N;` line (a seed run's, or a
/// download's that goes on seeding).
fn seeding_port(stderr: &str) -> Option<u16> {
    let rest = &stderr[stderr.find("seeding on port ")? + "seeding on port ".len()..];
    rest[..rest.find(';')?].parse().ok()
}

/// A downloads with `--seed-ratio 1` from our seeder S, then seeds; B,
/// given only A, fetches everything from A; once A has uploaded the size
/// it exits 0 by itself, and its summary says it uploaded at least that.
#[test]
fn a_download_with_seed_ratio_1_seeds_until_it_uploaded_the_size() {
    let dir = tempfile::tempdir().unwrap();
    let made = single_file(dir.path(), "ratio.bin", content(1 << 20, 41), 32768, None);
    let seeder = Seeder::start(&[arg(&made.torrent)], &made.source, dir.path());
    let dest_a = dir.path().join("a");
    let mut args = download_cmd(
        &[arg(&made.torrent)],
        &dest_a,
        &[seeder.addr([127, 0, 0, 1])],
    );
    args.extend(["--seed-ratio", "1", "--json", "--no-pex"].map(String::from));
    let mut a = Binary::spawn(&args, &dir.path().join("a"));
    let a_port = wait_for_line(&mut a, "A to complete and seed", seeding_port);
    assert_eq!(fs::read(dest_a.join("ratio.bin")).unwrap(), made.data);
    assert!(!a.has_exited(), "A exited before anyone took from it");
    let dest_b = dir.path().join("b");
    let mut b_args = download_cmd(
        &[arg(&made.torrent)],
        &dest_b,
        &[on_ip([127, 0, 0, 1], a_port)],
    );
    b_args.push("--no-pex".into());
    let (status, stderr) = run_binary(&b_args, &dir.path().join("b-log"));
    assert_success(status, &stderr);
    assert_eq!(fs::read(dest_b.join("ratio.bin")).unwrap(), made.data);
    let (status, stderr, stdout) = wait_with_stdout(a);
    assert_success(status, &stderr);
    assert!(stderr.contains("seeding ends: share ratio"), "{stderr}");
    let summary = json_summary(&stdout);
    let size = made.data.len() as u64;
    assert_eq!(summary["size"], size);
    assert!(summary["downloaded"].as_u64().unwrap() >= size, "{summary}");
    assert!(summary["uploaded"].as_u64().unwrap() >= size, "{summary}");
    assert!(
        summary["peers"].as_u64().unwrap() >= 2,
        "S and B: {summary}"
    );
    let progress = json_lines(&stdout);
    assert!(
        progress
            .iter()
            .any(|v| v["event"] == "progress" && v["state"] == "seeding"),
        "a progress line while seeding; stdout:\n{stdout}"
    );
}

/// Regression: with `--files`, `--seed-ratio` was counted against the whole
/// torrent, so a downloader of one small file had to upload the size of
/// every file before it stopped: in practice, never. A downloads readme.txt
/// alone (file 5 of fixtures/multi, in the last piece, 7,166 bytes) with
/// `--seed-ratio 1`; B takes the same file from A; A then stops by itself.
#[test]
fn seed_ratio_counts_only_the_chosen_files_pieces() {
    let dir = tempfile::tempdir().unwrap();
    let torrent = fixtures().join("multi.torrent");
    let seeder = Seeder::start(&[arg(&torrent)], &fixtures().join("multi"), dir.path());
    let dest_a = dir.path().join("a");
    let mut args = download_cmd(&[arg(&torrent)], &dest_a, &[seeder.addr([127, 0, 0, 1])]);
    args.extend(["--files", "5", "--seed-ratio", "1", "--json", "--no-pex"].map(String::from));
    let mut a = Binary::spawn(&args, &dir.path().join("a-log"));
    let a_port = wait_for_line(&mut a, "A to complete and seed", seeding_port);
    let readme = fs::read(fixtures().join("multi/readme.txt")).unwrap();
    assert_eq!(fs::read(dest_a.join("multi/readme.txt")).unwrap(), readme);
    let dest_b = dir.path().join("b");
    let mut b_args = download_cmd(&[arg(&torrent)], &dest_b, &[on_ip([127, 0, 0, 1], a_port)]);
    b_args.extend(["--files", "5", "--no-pex"].map(String::from));
    let (status, stderr) = run_binary(&b_args, &dir.path().join("b-log"));
    assert_success(status, &stderr);
    assert_eq!(fs::read(dest_b.join("multi/readme.txt")).unwrap(), readme);
    let (status, stderr, stdout) = wait_with_stdout(a);
    assert_success(status, &stderr);
    assert!(stderr.contains("seeding ends: share ratio"), "{stderr}");
    let summary = json_summary(&stdout);
    assert!(summary["uploaded"].as_u64().unwrap() >= 7166, "{summary}");
}

/// Polls `binary`'s stderr until `found` finds something in it; fails
/// if the process exits first or [`TIMEOUT`] passes.
pub fn wait_for_line<T>(binary: &mut Binary, what: &str, found: impl Fn(&str) -> Option<T>) -> T {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let stderr = binary.stderr();
        if let Some(value) = found(&stderr) {
            return value;
        }
        assert!(
            !binary.has_exited(),
            "exited before {what}; stderr:\n{stderr}"
        );
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; stderr:\n{stderr}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits for `binary` to exit (up to [`TIMEOUT`]); its status, stderr and
/// stdout.
pub fn wait_with_stdout(mut binary: Binary) -> (std::process::ExitStatus, String, String) {
    let deadline = Instant::now() + TIMEOUT;
    while !binary.has_exited() {
        assert!(
            Instant::now() < deadline,
            "did not exit within {TIMEOUT:?}; stderr:\n{}",
            binary.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let stdout = binary.stdout();
    let (status, stderr) = binary.wait();
    (status, stderr, stdout)
}

/// `-s` with `--seed-time 2s` ends by itself, with exit 0, after about
/// two seconds, saying why, with its summary.
#[test]
fn a_seed_run_with_seed_time_ends_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let made = single_file(dir.path(), "timed.bin", content(100_000, 42), 16384, None);
    let started = Instant::now();
    let (status, stderr) = run_binary(
        &[
            arg(&made.torrent),
            "-s",
            arg(&made.source),
            "--port",
            "0",
            "--seed-time",
            "2s",
        ],
        dir.path(),
    );
    let took = started.elapsed();
    assert_success(status, &stderr);
    assert!(took >= Duration::from_secs(2), "ended after {took:?}");
    assert!(took < Duration::from_secs(30), "ended after {took:?}");
    assert!(stderr.contains("stops at 2s, or press Ctrl-C"), "{stderr}");
    assert!(
        stderr.contains("seeding ends: seed time 2s over"),
        "{stderr}"
    );
    assert!(stderr.contains("summary: size 97.66 KiB in "), "{stderr}");
    assert!(!stderr.contains("interrupted"), "{stderr}");
}

/// A download with `--seed-time` announces `completed` when it completes
/// (not at its end), seeds, and stops by itself: the tracker hears
/// started, completed, stopped, once each.
#[test]
fn a_download_with_seed_time_announces_completed_once_and_stops() {
    let tracker = TestTracker::start();
    let dir = tempfile::tempdir().unwrap();
    let made = single_file(
        dir.path(),
        "tracked.bin",
        content(200_000, 43),
        16384,
        Some(&tracker.url),
    );
    let seeder = Seeder::start(&[arg(&made.torrent)], &made.source, dir.path());
    let dest = dir.path().join("out");
    let port = net::free_port();
    let mut args = download_cmd(&[arg(&made.torrent)], &dest, &[seeder.addr([127, 0, 0, 1])]);
    let at = args.iter().position(|a| a == "--port").unwrap();
    args[at + 1] = port.to_string();
    args.extend(["--seed-time", "3s"].map(String::from));
    let mut child = Binary::spawn(&args, &dir.path().join("down"));
    wait_while_running(
        &mut child,
        "the completed announce",
        || tracker.events_of(port).contains(&Some("completed".into())),
        || format!("announces: {:?}", tracker.events_of(port)),
    );
    assert!(
        !child.has_exited(),
        "completed was announced at the end, not when the download completed"
    );
    let (status, stderr) = child.wait();
    assert_success(status, &stderr);
    assert_eq!(fs::read(dest.join("tracked.bin")).unwrap(), made.data);
    assert_eq!(
        tracker.events_of(port),
        [
            Some("started".into()),
            Some("completed".into()),
            Some("stopped".into())
        ]
    );
}

/// Ctrl-C while a completed download seeds on: exit 0, not the 130 of an
/// interrupted download.
#[test]
fn ctrl_c_while_seeding_after_a_download_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let made = single_file(dir.path(), "ctrlc.bin", content(100_000, 44), 16384, None);
    let seeder = Seeder::start(&[arg(&made.torrent)], &made.source, dir.path());
    let dest = dir.path().join("out");
    let mut args = download_cmd(&[arg(&made.torrent)], &dest, &[seeder.addr([127, 0, 0, 1])]);
    args.extend(["--seed-time", "10m"].map(String::from));
    let mut child = Binary::spawn(&args, &dir.path().join("down"));
    wait_for_line(&mut child, "the download to complete and seed", |e| {
        e.contains("download complete; seeding on port")
            .then_some(())
    });
    child.interrupt();
    let (status, stderr) = child.wait();
    assert_success(status, &stderr);
    assert!(stderr.contains("summary: "), "{stderr}");
    assert!(!stderr.contains("interrupted"), "{stderr}");
    assert_eq!(fs::read(dest.join("ctrlc.bin")).unwrap(), made.data);
}

#[test]
fn bad_seed_and_announce_values_are_usage_errors_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    for (flag, value) in [
        ("--seed-ratio", "-1"),
        ("--seed-ratio", "lots"),
        ("--seed-ratio", "NaN"),
        // Regression: a huge interval overflowed the tracker's clock.
        ("--announce-interval", "18446744073709551615"),
        ("--seed-time", "10d"),
        ("--seed-time", "1.5h"),
        ("--seed-time", "-3"),
        ("--announce-interval", "0"),
        ("--announce-interval", "soon"),
    ] {
        // `=`, or clap takes `-1` for a flag (an error all the same).
        let given = format!("{flag}={value}");
        let (status, stderr) = run_binary(&["x.torrent", "-d", "out", &given], dir.path());
        assert_eq!(status.code(), Some(2), "{flag} {value}: {stderr}");
        assert!(
            stderr.contains(flag) && stderr.contains(value),
            "{flag} {value}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

/// How many announces from `port` arrive at the tracker within `within`.
fn wait_announces(count: impl Fn() -> usize, at_least: usize, within: Duration) -> Duration {
    let started = Instant::now();
    while count() < at_least {
        assert!(
            started.elapsed() < within,
            "{} announces in {within:?}, not {at_least}",
            count()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    started.elapsed()
}

/// The test tracker asks for 60 s; `--announce-interval 1` announces
/// about every second instead (3 announces within 8 s).
#[test]
fn announce_interval_1_announces_every_second_to_an_http_tracker() {
    let tracker = TestTracker::start();
    let dir = tempfile::tempdir().unwrap();
    let made = single_file(
        dir.path(),
        "often.bin",
        content(50_000, 45),
        16384,
        Some(&tracker.url),
    );
    let seeder = Seeder::start_with(
        &[arg(&made.torrent)],
        &made.source,
        dir.path(),
        &["--announce-interval", "1"],
        None,
    );
    let took = wait_announces(
        || tracker.events_of(seeder.port).len(),
        3,
        Duration::from_secs(8),
    );
    assert!(took >= Duration::from_millis(1500), "too soon: {took:?}");
    let events = tracker.events_of(seeder.port);
    assert_eq!(events[0].as_deref(), Some("started"));
    assert!(events[1..].iter().all(Option::is_none), "{events:?}");
}

/// The same over UDP (BEP 15), from an in-process seeder.
#[test]
fn announce_interval_applies_to_udp_trackers() {
    let tracker = UdpTestTracker::start();
    let dir = tempfile::tempdir().unwrap();
    let made = single_file(
        dir.path(),
        "udp.bin",
        content(50_000, 46),
        16384,
        Some(&tracker.url),
    );
    let mut config = config(&made.torrent, seed_from(&made.source), vec![]);
    config.announce_interval = Some(Duration::from_secs(1));
    let seeder = Running::start(&config);
    let port = seeder.addr.port();
    wait_announces(|| tracker.events_of(port).len(), 3, Duration::from_secs(8));
}
