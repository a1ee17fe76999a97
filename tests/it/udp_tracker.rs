use std::fs;
use std::time::{Duration, Instant};

use bittorrent::metainfo::InfoHash;
use bittorrent::peer::wire::PeerId;
use bittorrent::tracker::{AnnounceRequest, Announcer, Event, TrackerError, UdpTracker};

use crate::support::bencode::{TFile, make_torrent};
use crate::support::tracker::TestTracker;
use crate::support::udp_tracker::{Behaviour, UdpTestTracker};
use crate::support::*;
use crate::tracker::{download_announcing_to, with_announce_list};

const STARTED: u32 = 2;
const COMPLETED: u32 = 1;
const STOPPED: u32 = 3;

/// Writes a torrent of `data` announcing to `tiers` (and to `tiers[0][0]`
/// as `announce`), and its content; returns (torrent, source, info-hash).
fn torrent_with_tiers(
    dir: &std::path::Path,
    data: &[u8],
    tiers: &[Vec<String>],
) -> (std::path::PathBuf, std::path::PathBuf, [u8; 20]) {
    let files = [TFile {
        path: vec![],
        data: data.to_vec(),
    }];
    let (bytes, info_hash) = make_torrent("udp.bin", &files, 16384, None);
    let torrent = dir.join("udp.torrent");
    fs::write(&torrent, with_announce_list(&bytes, tiers)).unwrap();
    let source = dir.join("udp.bin");
    fs::write(&source, data).unwrap();
    (torrent, source, info_hash)
}

#[test]
fn seeder_and_downloader_find_each_other_through_a_udp_tracker() {
    let tracker = UdpTestTracker::start();
    let dir = tempfile::tempdir().unwrap();
    let data = content(200_000, 21);
    let files = [TFile {
        path: vec![],
        data: data.clone(),
    }];
    let (bytes, info_hash) = make_torrent("udp.bin", &files, 16384, Some(&tracker.url));
    let torrent = dir.path().join("udp.torrent");
    fs::write(&torrent, bytes).unwrap();
    let source = dir.path().join("udp.bin");
    fs::write(&source, &data).unwrap();

    let seeder = Running::start(&config(&torrent, seed_from(&source), vec![]));
    let dest = dir.path().join("out");
    // No --peer: the UDP tracker is the only way to find the seeder.
    let downloader = Running::start(&config(&torrent, download_to(&dest), vec![]));
    let down_port = downloader.addr.port();
    downloader.wait().unwrap();
    assert_eq!(fs::read(dest.join("udp.bin")).unwrap(), data);
    let seed_port = seeder.addr.port();
    seeder.stop().unwrap();

    assert_eq!(tracker.events_of(down_port), [STARTED, COMPLETED, STOPPED]);
    assert_eq!(tracker.events_of(seed_port), [STARTED, STOPPED]);
    let announces = tracker.announces.lock().unwrap().clone();
    assert!(announces.iter().all(|a| a.info_hash == info_hash));
    assert!(announces.iter().all(|a| a.peer_id.starts_with(b"-BT")));
    assert!(announces.iter().all(|a| a.num_want == 50));
    let of = |port: u16| announces.iter().filter(move |a| a.port == port);
    // One key per session, the same in every announce of it.
    let down_key = of(down_port).next().unwrap().key;
    assert!(of(down_port).all(|a| a.key == down_key));
    let seed_key = of(seed_port).next().unwrap().key;
    assert!(of(seed_port).all(|a| a.key == seed_key));
    assert_eq!(of(seed_port).map(|a| a.left).collect::<Vec<_>>(), [0, 0]);
    let down_left: Vec<u64> = of(down_port).map(|a| a.left).collect();
    assert_eq!(down_left, [data.len() as u64, 0, 0]);
    // Each session's announces come within a minute: one connect each.
    assert_eq!(
        tracker.connects.load(std::sync::atomic::Ordering::SeqCst),
        2
    );
}

#[test]
fn an_error_from_the_only_udp_tracker_is_a_clear_error_and_a_failed_exit() {
    let tracker = UdpTestTracker::start_with(
        "127.0.0.1:0",
        Behaviour::Error("torrent not registered \x1b[2J".into()),
        vec![],
    );
    let (status, stderr) = download_announcing_to(&tracker.url);
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains("no tracker answered and no peers were given with --peer"),
        "{stderr}"
    );
    assert!(
        stderr.contains("tracker refused the announce: torrent not registered \\u{1b}[2J"),
        "{stderr}"
    );
    assert!(!stderr.contains('\x1b'), "an escape reached stderr");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// A tier of two silent UDP trackers and a working HTTP one, shuffled:
/// whichever order the shuffle gives, each silent one costs one tracker
/// timeout (1 s), and the download completes long before the 60 s the
/// schedule's first retransmit waits would add up to.
#[test]
fn a_tier_whose_first_trackers_never_answer_still_finds_the_seeder() {
    let silent = [
        UdpTestTracker::start_with("127.0.0.1:0", Behaviour::Silent, vec![]),
        UdpTestTracker::start_with("127.0.0.1:0", Behaviour::Silent, vec![]),
    ];
    let http = TestTracker::start();
    let dir = tempfile::tempdir().unwrap();
    let data = content(100_000, 22);
    let tier = vec![
        silent[0].url.clone(),
        silent[1].url.clone(),
        http.url.clone(),
    ];
    let (seeder, took, down_port) =
        seed_and_download(dir.path(), &data, &[tier], Duration::from_secs(1));
    assert!(took < Duration::from_secs(15), "took {took:?}");
    assert_eq!(
        http.events_of(down_port),
        [
            Some("started".into()),
            Some("completed".into()),
            Some("stopped".into())
        ]
    );
    let tried: usize = silent
        .iter()
        .map(|s| s.datagrams.load(std::sync::atomic::Ordering::SeqCst))
        .sum();
    eprintln!("{tried} datagrams to the silent trackers; took {took:?}");
    drop(seeder);
}

/// Tiers run in parallel: a tier of one silent UDP tracker (timeout 10 s)
/// delays neither the download, found through the second tier, nor the
/// exit (the silent tier never answered, so it has no `stopped` to send).
#[test]
fn a_silent_udp_tier_delays_neither_another_tier_nor_the_exit() {
    let silent = UdpTestTracker::start_with("127.0.0.1:0", Behaviour::Silent, vec![]);
    let working = UdpTestTracker::start();
    let dir = tempfile::tempdir().unwrap();
    let data = content(100_000, 23);
    let tiers = [vec![silent.url.clone()], vec![working.url.clone()]];
    let (seeder, took, down_port) =
        seed_and_download(dir.path(), &data, &tiers, Duration::from_secs(10));
    assert!(took < Duration::from_secs(8), "took {took:?}");
    assert_eq!(working.events_of(down_port), [STARTED, COMPLETED, STOPPED]);
    assert!(silent.datagrams.load(std::sync::atomic::Ordering::SeqCst) > 0);
    drop(seeder);
}

/// Seeds `data` from a torrent announcing to `tiers` and downloads it into
/// `dir/out`, both with `tracker_timeout`, checking the bytes; gives the
/// seeder (still running), how long the download took, and its port.
fn seed_and_download(
    dir: &std::path::Path,
    data: &[u8],
    tiers: &[Vec<String>],
    tracker_timeout: Duration,
) -> (Running, Duration, u16) {
    let (torrent, source, _) = torrent_with_tiers(dir, data, tiers);
    let mut seeding = config(&torrent, seed_from(&source), vec![]);
    seeding.tracker_timeout = tracker_timeout;
    let seeder = Running::start(&seeding);
    let dest = dir.join("out");
    let mut downloading = config(&torrent, download_to(&dest), vec![]);
    downloading.tracker_timeout = tracker_timeout;
    let started = Instant::now();
    let downloader = Running::start(&downloading);
    let down_port = downloader.addr.port();
    downloader.wait().unwrap();
    let took = started.elapsed();
    assert_eq!(fs::read(dest.join("udp.bin")).unwrap(), data);
    (seeder, took, down_port)
}

fn request(port: u16, event: Option<Event>) -> AnnounceRequest {
    AnnounceRequest {
        info_hash: InfoHash([7; 20]),
        peer_id: PeerId(*b"-BT0100-udptest00001"),
        port,
        uploaded: 10,
        downloaded: 20,
        left: 30,
        event,
        numwant: 50,
    }
}

#[test]
fn an_answer_of_another_transaction_is_ignored_and_the_connection_id_reused() {
    let decoy: std::net::SocketAddr = "127.0.0.9:9".parse().unwrap();
    let tracker = UdpTestTracker::start_with(
        "127.0.0.1:0",
        Behaviour::StrayFirst(decoy),
        vec!["127.0.0.2:7002".parse().unwrap()],
    );
    let mut udp = UdpTracker::new(tracker.url.clone(), Duration::from_secs(5), 77).unwrap();
    let first = udp.announce(&request(6881, Some(Event::Started))).unwrap();
    assert_eq!(first.interval, Some(60));
    assert_eq!(first.peers, vec!["127.0.0.2:7002".parse().unwrap()]);
    let again = udp.announce(&request(6881, None)).unwrap();
    assert_eq!(again.peers, first.peers, "the decoy never counts");
    assert_eq!(
        tracker.connects.load(std::sync::atomic::Ordering::SeqCst),
        1
    );
    let announces = tracker.announces.lock().unwrap().clone();
    let got: Vec<_> = announces
        .iter()
        .map(|a| (a.event, a.key, a.port, a.downloaded, a.left, a.uploaded))
        .collect();
    assert_eq!(got, [(2, 77, 6881, 20, 30, 10), (0, 77, 6881, 20, 30, 10)]);
}

#[test]
fn a_udp_tracker_over_ipv6_answers_with_18_byte_peers() {
    let Ok(probe) = std::net::UdpSocket::bind("[::1]:0") else {
        eprintln!("no IPv6 loopback here; skipping");
        return;
    };
    drop(probe);
    let tracker = UdpTestTracker::start_with(
        "[::1]:0",
        Behaviour::Answer,
        vec![
            "[::1]:7000".parse().unwrap(),
            "127.0.0.1:7001".parse().unwrap(),
        ],
    );
    assert!(tracker.addr.is_ipv6());
    assert!(tracker.url.starts_with("udp://[::1]:"), "{}", tracker.url);
    let mut udp = UdpTracker::new(tracker.url.clone(), Duration::from_secs(5), 1).unwrap();
    let answer = udp.announce(&request(6881, Some(Event::Started))).unwrap();
    assert_eq!(answer.peers, vec!["[::1]:7000".parse().unwrap()]);
    let announces = tracker.announces.lock().unwrap().clone();
    assert_eq!(announces.len(), 1);
    assert!(announces[0].from.is_ipv6());
}

#[test]
fn a_silent_udp_tracker_gives_up_after_the_tracker_timeout() {
    let tracker = UdpTestTracker::start_with("127.0.0.1:0", Behaviour::Silent, vec![]);
    let mut udp = UdpTracker::new(tracker.url.clone(), Duration::from_secs(1), 1).unwrap();
    let started = Instant::now();
    let r = udp.announce(&request(6881, Some(Event::Started)));
    let took = started.elapsed();
    assert!(
        matches!(&r, Err(TrackerError::Unreachable { reason, .. }) if reason.contains("no answer within 1s")),
        "{r:?}"
    );
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(3),
        "{took:?}"
    );
}

#[test]
fn a_udp_tracker_on_a_closed_port_is_unreachable_at_once() {
    // A port bound and closed again: the kernel answers "port unreachable".
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("udp://127.0.0.1:{port}");
    let mut udp = UdpTracker::new(url, Duration::from_secs(10), 1).unwrap();
    let started = Instant::now();
    let r = udp.announce(&request(6881, Some(Event::Started)));
    assert!(matches!(r, Err(TrackerError::Unreachable { .. })), "{r:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
}
