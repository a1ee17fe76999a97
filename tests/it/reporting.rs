//! What a run tells its user: the summary line on stderr and the `--json`
//! lines on stdout, checked against the run's own figures (a clean
//! download, and one with a liar that gets banned); one warning per
//! failure streak of a tracker; the `-vvv` wire trace.

use std::fs;
use std::net::SocketAddr;
use std::sync::Arc;

use bittorrent::metainfo::InfoHash;

use crate::seeding::{json_lines, json_summary, wait_for_line, wait_with_stdout};
use crate::support::hostile::{Behaviour, HostilePeer, Torrent};
use crate::support::magnet::*;
use crate::support::tracker::TestTracker;
use crate::support::*;

/// The fields of every `--json` progress line.
const PROGRESS_FIELDS: [&str; 10] = [
    "event",
    "torrent",
    "state",
    "size",
    "have",
    "percent",
    "downloaded",
    "uploaded",
    "peers",
    "download_rate",
];

/// The fields of the `--json` summary line.
const SUMMARY_FIELDS: [&str; 11] = [
    "event",
    "size",
    "seconds",
    "downloaded",
    "download_rate",
    "uploaded",
    "upload_rate",
    "peers",
    "wasted",
    "hash_failures",
    "banned",
];

fn keys(value: &serde_json::Value) -> Vec<String> {
    let mut keys: Vec<String> = value.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    keys
}

fn sorted(fields: &[&str]) -> Vec<String> {
    let mut fields: Vec<String> = fields.iter().map(|f| f.to_string()).collect();
    fields.sort();
    fields
}

/// A 1 MiB download from one seeder with `--json`: stdout is only JSON
/// lines, progress with its fields ending at the whole size, then the
/// summary; the summary on stderr reads the same figures.
#[test]
fn json_lines_and_the_summary_line_carry_the_runs_figures() {
    let dir = tempfile::tempdir().unwrap();
    let made = single_file(dir.path(), "json.bin", content(1 << 20, 51), 32768, None);
    let seeder = Seeder::start(&[arg(&made.torrent)], &made.source, dir.path());
    let dest = dir.path().join("out");
    let mut args = download_cmd(&[arg(&made.torrent)], &dest, &[seeder.addr([127, 0, 0, 1])]);
    args.push("--json".into());
    let child = Binary::spawn(&args, &dir.path().join("down"));
    let (status, stderr, stdout) = wait_with_stdout(child);
    assert_success(status, &stderr);
    assert_eq!(fs::read(dest.join("json.bin")).unwrap(), made.data);
    let size = made.data.len() as u64;

    let lines = json_lines(&stdout);
    let progress: Vec<_> = lines.iter().filter(|v| v["event"] == "progress").collect();
    assert!(!progress.is_empty(), "no progress line; stdout:\n{stdout}");
    for line in &progress {
        assert_eq!(keys(line), sorted(&PROGRESS_FIELDS), "{line}");
        assert_eq!(line["torrent"], "json.bin");
        assert_eq!(line["size"], size);
    }
    let last = progress.last().unwrap();
    assert_eq!(last["have"], size, "{last}");
    assert_eq!(last["percent"], 100.0);
    assert_eq!(lines.last().unwrap()["event"], "summary", "{stdout}");

    let summary = json_summary(&stdout);
    assert_eq!(keys(&summary), sorted(&SUMMARY_FIELDS));
    assert_eq!(summary["size"], size);
    // One seeder, one copy of each piece: nothing twice, nothing wasted.
    assert_eq!(summary["downloaded"], size, "{summary}");
    assert_eq!(summary["uploaded"], 0);
    assert_eq!(summary["peers"], 1);
    assert_eq!(summary["wasted"], 0);
    assert_eq!(summary["hash_failures"], 0);
    assert_eq!(summary["banned"], 0);
    assert!(summary["seconds"].as_f64().unwrap() > 0.0);
    assert!(summary["download_rate"].as_u64().unwrap() > 0);

    let line = summary_line(&stderr);
    for part in [
        "summary: size 1.00 MiB in ",
        "downloaded 1.00 MiB (",
        "uploaded 0 B (0 B/s)",
        ", 1 peer,",
        "wasted 0 B",
        "0 pieces failed the hash check, 0 peers banned",
    ] {
        assert!(line.contains(part), "{part:?} not in {line:?}");
    }
    // -v: no wire trace.
    assert!(!stderr.contains(" -> request piece"), "{stderr}");
}

/// The one `summary:` line of `stderr`.
fn summary_line(stderr: &str) -> &str {
    let lines: Vec<&str> = stderr.lines().filter(|l| l.contains("summary: ")).collect();
    assert_eq!(lines.len(), 1, "one summary line; stderr:\n{stderr}");
    lines[0]
}

/// The port of the binary's first `listening on ADDR` line (`-v`).
fn listening_port(stderr: &str) -> Option<u16> {
    let line = stderr.lines().find(|l| l.contains("listening on "))?;
    let addr = &line[line.find("listening on ")? + "listening on ".len()..];
    addr.trim().parse::<SocketAddr>().ok().map(|a| a.port())
}

/// The binary dials a liar alone (every block it sends is wrong), bans it,
/// then completes from our seeder: its summary counts every hash failure
/// it warned of, the one ban, and at least the failed pieces as wasted.
#[test]
fn the_summary_of_a_hostile_run_counts_the_failed_pieces_and_the_ban() {
    const PIECE_LEN: usize = 32 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let made = single_file(
        dir.path(),
        "liar.bin",
        content(20 * PIECE_LEN + 5000, 52),
        PIECE_LEN,
        None,
    );
    let torrent = Torrent {
        info_hash: InfoHash(made.info_hash),
        piece_len: PIECE_LEN as u32,
        data: Arc::new(made.data.clone()),
    };
    let liar = HostilePeer::start_on([127, 0, 0, 2], &torrent, Behaviour::CorruptBlocks);
    let dest = dir.path().join("out");
    let mut args = download_cmd(&[arg(&made.torrent)], &dest, &[liar.addr()]);
    args.push("--json".into());
    let mut child = Binary::spawn(&args, &dir.path().join("down"));
    let port = wait_for_line(&mut child, "the listen port", listening_port);
    wait_for_line(&mut child, "the liar's ban", |e| {
        e.contains(&format!("{}: banned", liar.addr()))
            .then_some(())
    });
    let _seeder = Running::start(&config(
        &made.torrent,
        seed_from(&made.source),
        vec![on_ip([127, 0, 0, 1], port)],
    ));
    let (status, stderr, stdout) = wait_with_stdout(child);
    assert_success(status, &stderr);
    assert_eq!(fs::read(dest.join("liar.bin")).unwrap(), made.data);

    let warned = stderr
        .lines()
        .filter(|l| l.contains("failed hash check"))
        .count() as u64;
    assert!(warned >= 1, "{stderr}");
    let summary = json_summary(&stdout);
    assert_eq!(summary["hash_failures"], warned, "{summary}\n{stderr}");
    assert_eq!(summary["banned"], 1, "{summary}");
    assert_eq!(summary["peers"], 2, "the liar and the seeder: {summary}");
    assert!(
        summary["wasted"].as_u64().unwrap() >= warned * 5000,
        "{summary}"
    );
    let size = made.data.len() as u64;
    assert!(
        summary["downloaded"].as_u64().unwrap() >= size + warned * 5000,
        "the good copy and the bad ones: {summary}"
    );
    let line = summary_line(&stderr);
    let failed = if warned == 1 {
        "1 piece failed the hash check".to_string()
    } else {
        format!("{warned} pieces failed the hash check")
    };
    assert!(line.contains(&failed), "{failed:?} not in {line:?}");
    assert!(line.contains("1 peer banned"), "{line}");
}

/// A seeder whose tracker answered once and then went away, announcing
/// every second: several announces fail, one warning says so; the retries,
/// the failed `stopped` and the wait for it at the end are logged at debug
/// only.
#[test]
fn a_tracker_that_goes_away_is_warned_of_once_per_failure_streak() {
    let tracker = TestTracker::start();
    let url = tracker.url.clone();
    let dir = tempfile::tempdir().unwrap();
    let made = single_file(
        dir.path(),
        "gone.bin",
        content(50_000, 53),
        16384,
        Some(&url),
    );
    let mut seeder = Binary::spawn(
        &[
            arg(&made.torrent),
            "-s",
            arg(&made.source),
            "--port",
            "0",
            "--announce-interval",
            "1",
            "--seed-time",
            "10s",
            // The tracker's keep-alive connection outlives it: announces
            // time out rather than being refused.
            "--tracker-timeout",
            "1",
            "-vv",
        ],
        dir.path(),
    );
    let port = wait_for_line(&mut seeder, "the seeding line", |e| {
        let rest = &e[e.find("seeding on port ")? + "seeding on port ".len()..];
        rest[..rest.find(';')?].parse::<u16>().ok()
    });
    wait_for_line(&mut seeder, "the started announce", |_| {
        (!tracker.events_of(port).is_empty()).then_some(())
    });
    drop(tracker);
    let (status, stderr) = seeder.wait();
    eprintln!("{stderr}");
    assert_success(status, &stderr);
    let about_tracker = |level: &str| {
        stderr
            .lines()
            .filter(|l| l.contains(level) && l.contains("127.0.0.1") && l.contains("unreachable"))
            .count()
    };
    let retries = stderr
        .lines()
        .filter(|l| l.contains("DEBUG") && l.contains("retrying in"))
        .count();
    assert!(retries >= 2, "several failures expected: {stderr}");
    assert_eq!(about_tracker(" WARN "), 1, "{stderr}");
    assert!(about_tracker("DEBUG") >= 2, "{stderr}");
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.contains(" WARN ")).collect();
    assert_eq!(warnings.len(), 1, "one warning in all: {warnings:#?}");
    assert!(
        !warnings[0].contains("stopped"),
        "the failed stopped is not warned of: {stderr}"
    );
}

/// At -vvv each message sent and received is one readable line.
#[test]
fn vvv_traces_every_message_on_the_wire() {
    let dir = tempfile::tempdir().unwrap();
    let made = single_file(dir.path(), "wire.bin", content(40_000, 54), 16384, None);
    let seeder = Seeder::start(&[arg(&made.torrent)], &made.source, dir.path());
    let peer = seeder.addr([127, 0, 0, 1]);
    let dest = dir.path().join("out");
    let mut args = download_cmd(&[arg(&made.torrent)], &dest, &[peer]);
    args.push("-vvv".into());
    let (status, stderr) = run_binary(&args, &dir.path().join("down"));
    assert_success(status, &stderr);
    assert_eq!(fs::read(dest.join("wire.bin")).unwrap(), made.data);
    for line in [
        format!("{peer} <- bitfield 3 of 8 pieces"),
        format!("{peer} -> interested"),
        format!("{peer} <- unchoke"),
        format!("{peer} -> request piece 0 begin 0 length 16384"),
        format!("{peer} <- piece 0 begin 0 length 16384"),
        // The last block of the last piece is shorter.
        format!("{peer} -> request piece 2 begin 0 length 7232"),
        format!("{peer} <- piece 2 begin 0 length 7232"),
    ] {
        assert!(
            stderr.lines().any(|l| l.ends_with(&line)),
            "no line ending {line:?} in:\n{stderr}"
        );
    }
}

/// Regression: the `--json` summary went out with `println!`, which panics
/// when stdout is closed (`bittorrent ... --json | head -1`): a complete
/// download ended with exit 101 and a panic message.
#[test]
fn a_json_run_whose_stdout_is_closed_still_exits_0() {
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let torrent = fixtures().join("single.torrent");
    let seeder = Seeder::start(
        &[arg(&torrent)],
        &fixtures().join("single/sample.bin"),
        dir.path(),
    );
    let dest = dir.path().join("out");
    let mut args = download_cmd(&[arg(&torrent)], &dest, &[seeder.addr([127, 0, 0, 1])]);
    args.extend(["--json", "--no-dht"].map(String::from));
    let stderr_path = dir.path().join("stderr");
    let mut child = Command::new(env!("CARGO_BIN_EXE_bittorrent"))
        .args(&args)
        .env("BITTORRENT_DHT_NO_DEFAULTS", "1")
        .env("XDG_STATE_HOME", dir.path().join("state"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    // The reading end goes away before anything is written.
    drop(child.stdout.take());
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("did not exit within {TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stderr = fs::read_to_string(&stderr_path).unwrap();
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert_eq!(
        fs::read(dest.join("sample.bin")).unwrap(),
        fs::read(fixtures().join("single/sample.bin")).unwrap()
    );
}
