use std::fs;

use crate::support::bencode::{TFile, make_torrent, write_single_file};
use crate::support::tracker::TestTracker;
use crate::support::*;

#[test]
fn seeder_and_downloader_find_each_other_through_a_tracker() {
    let tracker = TestTracker::start();
    let dir = tempfile::tempdir().unwrap();
    let data = content(300_000, 1);
    let (bytes, info_hash) = make_torrent(
        "tracked.bin",
        &[TFile {
            path: vec![],
            data: data.clone(),
        }],
        32768,
        Some(&tracker.url),
    );
    let torrent = dir.path().join("tracked.torrent");
    fs::write(&torrent, bytes).unwrap();
    let source = dir.path().join("tracked.bin");
    fs::write(&source, &data).unwrap();

    let seeder = Running::start(&config(&torrent, seed_from(&source), vec![]));
    let dest = dir.path().join("out");
    // No --peer: the tracker is the only way to find the seeder.
    let downloader = Running::start(&config(&torrent, download_to(&dest), vec![]));
    let down_port = downloader.addr.port();
    downloader.wait().unwrap();
    assert_eq!(fs::read(dest.join("tracked.bin")).unwrap(), data);

    let seed_port = seeder.addr.port();
    seeder.stop().unwrap();
    let announces = tracker.announces.lock().unwrap().clone();
    assert!(
        announces.iter().all(|a| a.info_hash == info_hash),
        "info_hash sent raw, percent-encoded"
    );
    assert!(announces.iter().all(|a| a.peer_id.starts_with(b"-BT")));
    drop(announces);
    assert_eq!(
        tracker.events_of(down_port),
        vec![
            Some("started".into()),
            Some("completed".into()),
            Some("stopped".into())
        ]
    );
    assert_eq!(
        tracker.events_of(seed_port),
        vec![Some("started".into()), Some("stopped".into())]
    );
    let seeder_left: Vec<u64> = {
        let all = tracker.announces.lock().unwrap();
        all.iter()
            .filter(|a| a.port == seed_port)
            .map(|a| a.left)
            .collect()
    };
    assert_eq!(seeder_left, vec![0, 0]);
}

#[test]
fn download_goes_on_with_given_peers_when_the_tracker_is_down() {
    // The fixture's tracker (127.0.0.1:1) refuses connections.
    let dir = tempfile::tempdir().unwrap();
    let torrent = fixtures().join("single.torrent");
    let source = fixtures().join("single/sample.bin");
    let seeder = Running::start(&config(&torrent, seed_from(&source), vec![]));
    let dest = dir.path().join("out");
    download(&config(&torrent, download_to(&dest), vec![seeder.addr]));
    assert_eq!(
        fs::read(dest.join("sample.bin")).unwrap(),
        fs::read(&source).unwrap()
    );
}

#[test]
fn ctrl_c_stops_a_seeder_cleanly_and_announces_stopped() {
    stop_a_seeder_with("INT");
}

/// Regression: SIGTERM (kill's default, and what service managers send) used
/// to kill the process without announcing `stopped`, leaving a dead peer in
/// the tracker's lists for every later peer to dial.
#[test]
fn sigterm_stops_a_seeder_cleanly_and_announces_stopped() {
    stop_a_seeder_with("TERM");
}

fn stop_a_seeder_with(signal: &str) {
    let tracker = TestTracker::start();
    let dir = tempfile::tempdir().unwrap();
    let data = content(50_000, 2);
    let (bytes, _) = make_torrent(
        "c.bin",
        &[TFile {
            path: vec![],
            data: data.clone(),
        }],
        16384,
        Some(&tracker.url),
    );
    let torrent = dir.path().join("c.torrent");
    fs::write(&torrent, bytes).unwrap();
    let source = dir.path().join("c.bin");
    fs::write(&source, &data).unwrap();
    let seeder = Binary::spawn(
        &[
            torrent.to_str().unwrap(),
            "-s",
            source.to_str().unwrap(),
            "--port",
            "0",
        ],
        dir.path(),
    );
    wait_until("the started announce", || {
        !tracker.announces.lock().unwrap().is_empty()
    });
    seeder.signal(signal);
    let (status, stderr) = seeder.wait();
    assert!(status.success(), "exit {status}; stderr:\n{stderr}");
    let events: Vec<_> = tracker
        .announces
        .lock()
        .unwrap()
        .iter()
        .map(|a| a.event.clone())
        .collect();
    assert_eq!(events, vec![Some("started".into()), Some("stopped".into())]);
    assert_eq!(
        fs::read(&source).unwrap(),
        data,
        "seeding never writes the content"
    );
}

#[test]
fn a_seeder_dials_downloaders_it_learns_from_the_tracker() {
    // Some clients never dial out, so the seeder must connect to them.
    let tracker = TestTracker::start();
    let dir = tempfile::tempdir().unwrap();
    let data = content(100_000, 4);
    let (bytes, _) = make_torrent(
        "dial.bin",
        &[TFile {
            path: vec![],
            data: data.clone(),
        }],
        16384,
        Some(&tracker.url),
    );
    let torrent = dir.path().join("dial.torrent");
    fs::write(&torrent, bytes).unwrap();
    let source = dir.path().join("dial.bin");
    fs::write(&source, &data).unwrap();

    // The downloader announces first and hears of no one.
    let dest = dir.path().join("out");
    let downloader = Running::start(&config(&torrent, download_to(&dest), vec![]));
    assert_eq!(tracker.announces.lock().unwrap().len(), 1);
    let seeder = Running::start(&config(&torrent, seed_from(&source), vec![]));
    downloader.wait().unwrap();
    assert_eq!(fs::read(dest.join("dial.bin")).unwrap(), data);
    drop(seeder);
}

#[test]
fn a_downloader_with_too_few_peers_asks_the_tracker_again_for_more() {
    // The tracker knows nobody when the downloader starts. The seeder then
    // registers with the tracker (a bare announce made by the test, so the
    // seeder itself never dials the downloader): only a new announce by the
    // downloader can find it, and the tracker's `min interval` of 1 s allows
    // one long before the 60 s `interval`.
    let tracker = TestTracker::start_with_min_interval(Some(1));
    let dir = tempfile::tempdir().unwrap();
    let data = content(200_000, 3);
    let written = write_single_file(dir.path(), "more.bin", &data, 16384, Some(&tracker.url));
    let (torrent, source, info_hash) = (written.torrent, written.source, written.info_hash);
    // The same info (same info-hash) announcing nowhere, for the seeder.
    let files = [TFile {
        path: vec![],
        data: data.clone(),
    }];
    let (quiet, _) = make_torrent("more.bin", &files, 16384, None);
    let quiet_torrent = dir.path().join("quiet.torrent");
    fs::write(&quiet_torrent, quiet).unwrap();

    let dest = dir.path().join("out");
    let downloader = Running::start(&config(&torrent, download_to(&dest), vec![]));
    let down_port = downloader.addr.port();
    let seeder = Running::start(&config(&quiet_torrent, seed_from(&source), vec![]));
    let hash: String = info_hash.iter().map(|b| format!("%{b:02X}")).collect();
    let url = format!(
        "{}?info_hash={hash}&peer_id=-XX0001-registeredby&port={}&uploaded=0&downloaded=0&left=0&compact=1&event=started",
        tracker.url,
        seeder.addr.port()
    );
    ureq::get(&url).call().unwrap();

    downloader.wait().unwrap();
    assert_eq!(fs::read(dest.join("more.bin")).unwrap(), data);
    let events = tracker.events_of(down_port);
    assert_eq!(events[0], Some("started".into()));
    assert_eq!(events[1], None, "a regular announce asking for more peers");
    drop(seeder);
}

/// `bytes` of a torrent with `announce-list` set to `tiers` of URLs
/// (inserted before `info`, the keys staying sorted).
pub fn with_announce_list(bytes: &[u8], tiers: &[Vec<String>]) -> Vec<u8> {
    assert!(bytes.starts_with(b"d4:info"), "a torrent with no other key");
    let mut out = b"d13:announce-listl".to_vec();
    for tier in tiers {
        out.push(b'l');
        for url in tier {
            out.extend(format!("{}:{url}", url.len()).bytes());
        }
        out.push(b'e');
    }
    out.push(b'e');
    out.extend(&bytes[1..]);
    out
}

/// Regression: ten trackers that never answer held a download that had
/// `--peer` back by 20 s before its first dial (the first announce went
/// through every tier before any peer was dialled) and 40 s at exit
/// (`stopped` went to every tracker again).
#[test]
fn silent_trackers_hold_up_neither_the_download_nor_the_exit() {
    use crate::support::magnet::{Seeder, arg, assert_success, download_cmd};
    use crate::support::tracker::SilentTrackers;
    let silent = SilentTrackers::start(10);
    let dir = tempfile::tempdir().unwrap();
    let data = content(200_000, 9);
    let (bytes, _) = make_torrent(
        "quiet.bin",
        &[TFile {
            path: vec![],
            data: data.clone(),
        }],
        32768,
        None,
    );
    let tiers: Vec<Vec<String>> = silent.urls.iter().map(|u| vec![u.clone()]).collect();
    let torrent = dir.path().join("quiet.torrent");
    fs::write(&torrent, with_announce_list(&bytes, &tiers)).unwrap();
    let source = dir.path().join("quiet.bin");
    fs::write(&source, &data).unwrap();
    let seeder = Seeder::start(&[arg(&torrent)], &source, &dir.path().join("seeder"));

    let dest = dir.path().join("out");
    let mut args = download_cmd(&[arg(&torrent)], &dest, &[seeder.addr([127, 0, 0, 1])]);
    args.extend(["--tracker-timeout".into(), "5".into()]);
    let started = std::time::Instant::now();
    let (status, stderr) = run_binary(&args, &dir.path().join("downloader"));
    let took = started.elapsed();
    eprintln!("download with 10 silent trackers took {took:?}");
    assert_success(status, &stderr);
    assert_eq!(fs::read(dest.join("quiet.bin")).unwrap(), data);
    // One tracker timeout (5 s) each would be 50 s before the first dial
    // and 50 more at exit; the exit may wait 5 s for the tracker thread.
    assert!(
        took < std::time::Duration::from_secs(15),
        "took {took:?}; stderr:\n{stderr}"
    );
}

/// Regression: an announce URL with a port that is not a port
/// (`:99999`, `:x`) quietly became port 80.
/// Runs the binary on a small torrent announcing to `url` only, with no
/// peer; returns its status and stderr.
pub fn download_announcing_to(url: &str) -> (std::process::ExitStatus, String) {
    let dir = tempfile::tempdir().unwrap();
    let torrent =
        write_single_file(dir.path(), "f.bin", &content(1000, 1), 16384, Some(url)).torrent;
    let dest = dir.path().join("out");
    let args = [torrent.to_str().unwrap(), "-d", dest.to_str().unwrap()];
    let args = [&args[..], &["--port", "0", "--no-progress"]].concat();
    run_binary(&args, dir.path())
}

#[test]
fn an_announce_url_with_a_bad_port_is_refused_with_a_clear_error() {
    for (url, port) in [
        ("http://127.0.0.1:99999/announce", "99999"),
        ("http://127.0.0.1:x/announce", "x"),
    ] {
        let (status, stderr) = download_announcing_to(url);
        assert!(!status.success(), "{url}: {stderr}");
        assert!(
            stderr.contains(&format!("port \"{port}\" is not a number from 1 to 65535")),
            "{url}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

/// Regression: a tracker's `failure reason` was printed raw: a 1 MiB one
/// became a 1 MiB error line, and escape sequences reached the terminal.
#[test]
fn a_huge_failure_reason_full_of_escapes_is_capped_and_escaped() {
    use crate::support::tracker::CannedTracker;
    let mut reason = b"\x1b]0;owned\x07\x1b[2J".to_vec();
    reason.resize(1 << 20, b'!');
    let mut body = format!("d14:failure reason{}:", reason.len()).into_bytes();
    body.extend(&reason);
    body.push(b'e');
    let tracker = CannedTracker::start(body);
    let (status, stderr) = download_announcing_to(&tracker.url);
    assert!(!status.success(), "{stderr}");
    assert!(stderr.contains("tracker refused the announce"), "{stderr}");
    assert!(!stderr.contains('\x1b'), "an escape reached stderr");
    assert!(stderr.len() < 4096, "{} bytes of stderr", stderr.len());
}
