//! Connection churn and descriptor exhaustion against the binary: what the
//! process holds (threads, memory maps, CPU time, read from /proc) stays
//! bounded whatever the number of connections, and it goes on serving.

use std::fs;
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use bittorrent::metainfo::InfoHash;

use crate::support::bencode::{SingleFile, write_single_file};
use crate::support::magnet::{Seeder, arg};
use crate::support::net::{connect_from, cpu_time, exchange_handshakes, held, peer_id, poll_until};
use crate::support::tracker::TestTracker;
use crate::support::*;

/// 64 pieces of 16 KiB.
const CONTENT_LEN: usize = 1024 * 1024;
const PIECE_LEN: usize = 16 * 1024;

fn single_file(dir: &Path, announce: Option<&str>) -> SingleFile {
    write_single_file(
        dir,
        "churn.bin",
        &content(CONTENT_LEN, 11),
        PIECE_LEN,
        announce,
    )
}

/// Threads that connect to `to`, exchange handshakes and close, `cycles`
/// times in all; with `same_id`, every connection claims one peer id, so
/// all but one are refused as duplicates and reconnect at once. Returns
/// the handshakes answered.
fn churn(to: SocketAddr, info_hash: InfoHash, cycles: usize, same_id: bool) -> usize {
    let done = Arc::new(AtomicUsize::new(0));
    let answered = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..4u8)
        .map(|n| {
            let (done, answered) = (Arc::clone(&done), Arc::clone(&answered));
            thread::spawn(move || {
                let deadline = Instant::now() + TIMEOUT;
                let id = if same_id { peer_id(0xaa) } else { peer_id(n) };
                while done.fetch_add(1, Ordering::Relaxed) < cycles {
                    assert!(Instant::now() < deadline, "churn took over {TIMEOUT:?}");
                    let Ok(mut stream) = TcpStream::connect(to) else {
                        continue;
                    };
                    let within = Duration::from_secs(10);
                    if let Ok(Some(_)) = exchange_handshakes(&mut stream, info_hash, id, within) {
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    answered.load(Ordering::Relaxed)
}

#[test]
fn a_seeders_threads_and_maps_stay_flat_over_20000_connections() {
    let dir = tempfile::tempdir().unwrap();
    let made = single_file(dir.path(), None);
    let seeder = Seeder::start(&[arg(&made.torrent)], &made.source, dir.path());
    let addr = seeder.addr([127, 0, 0, 1]);
    let info_hash = InfoHash(made.info_hash);
    let pid = seeder.pid();
    // Warm up: the allocator's arenas and the first threads' maps.
    churn(addr, info_hash, 200, false);
    let settled = |limit: usize| {
        let mut last = held(pid);
        poll_until(Duration::from_secs(10), || {
            last = held(pid);
            last.is_some_and(|h| h.threads <= limit)
        });
        last.expect("the seeder is running")
    };
    let before = settled(8);
    let answered = churn(addr, info_hash, 16_000, false);
    let answered_dups = churn(addr, info_hash, 4_000, true);
    let after = settled(before.threads);
    eprintln!(
        "before {before:?}, after 20,000 connections ({answered} + {answered_dups} answered) {after:?}"
    );
    // Some are refused: a closed connection stays in the seeder's table
    // until its thread sees the close, and one IP may hold only a few.
    assert!(
        answered >= 8_000,
        "only {answered} of 16,000 handshakes answered"
    );
    assert!(
        after.threads <= before.threads + 4,
        "threads grew: {before:?} -> {after:?}; stderr:\n{}",
        tail(&seeder.stderr())
    );
    assert!(
        after.maps <= before.maps + 40,
        "memory maps grew: {before:?} -> {after:?}"
    );
    // Still serving.
    let dest = dir.path().join("out");
    download(&config(&made.torrent, download_to(&dest), vec![addr]));
    assert!(fs::read(dest.join("churn.bin")).unwrap() == fs::read(&made.source).unwrap());
}

#[test]
fn a_tracker_answer_of_100000_unreachable_peers_costs_little() {
    let dir = tempfile::tempdir().unwrap();
    // 127.1.0.0:1 .. : loopback addresses with nothing listening on port 1.
    let unreachable: Vec<SocketAddr> = (0..100_000u32)
        .map(|i| {
            let [_, a, b, c] = (i + (1 << 16)).to_be_bytes();
            SocketAddr::from((Ipv4Addr::new(127, a, b, c), 1))
        })
        .collect();
    // The honest seeder comes after 1,000 of them in the answer.
    let tracker = TestTracker::start_with_extra_peers(&unreachable, 1_000);
    let made = single_file(dir.path(), Some(&tracker.url));
    let seeder = Running::start(&config(&made.torrent, seed_from(&made.source), vec![]));
    // A seeder announces in the background: the downloader's first answer
    // must already hold it.
    let seeder_port = seeder.addr.port();
    poll_until(TIMEOUT, || !tracker.events_of(seeder_port).is_empty());
    let dest = dir.path().join("out");
    let args = [
        arg(&made.torrent),
        "-d",
        arg(&dest),
        "--port",
        "0",
        "--no-progress",
    ];
    let mut child = Binary::spawn(&args, dir.path());
    let pid = child.id();
    let (mut cpu, mut most_threads) = (Duration::ZERO, 0);
    let deadline = Instant::now() + TIMEOUT;
    while !child.has_exited() {
        cpu = cpu_time(pid).unwrap_or(cpu);
        most_threads = most_threads.max(held(pid).map_or(0, |h| h.threads));
        assert!(
            Instant::now() < deadline,
            "no exit within {TIMEOUT:?} (cpu {cpu:?}); stderr:\n{}",
            tail(&child.stderr())
        );
        thread::sleep(Duration::from_millis(20));
    }
    let (status, stderr) = child.wait();
    eprintln!("cpu {cpu:?}, at most {most_threads} threads");
    assert!(
        status.success(),
        "exit {status}; stderr:\n{}",
        tail(&stderr)
    );
    assert!(fs::read(dest.join("churn.bin")).unwrap() == fs::read(&made.source).unwrap());
    assert!(cpu < Duration::from_secs(5), "cpu {cpu:?}");
    let budget = bittorrent::cli::DEFAULT_MAX_PEERS;
    assert!(most_threads <= budget + 16, "{most_threads} threads");
}

#[test]
fn out_of_file_descriptors_the_listener_backs_off_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let made = single_file(dir.path(), None);
    let extra = ["--max-peers", "500"];
    let seeder = Seeder::start_with(
        &[arg(&made.torrent)],
        &made.source,
        dir.path(),
        &extra,
        Some(64),
    );
    let addr = seeder.addr([127, 0, 0, 1]);
    let info_hash = InfoHash(made.info_hash);
    // Idle connections with full handshakes, from 16 IPs (a few per IP are
    // allowed), until the seeder has no descriptor left to accept with.
    let mut held_open = Vec::new();
    // What accept() says when the process has no descriptor left.
    let warning = "(os error 24)";
    for n in 0..120u8 {
        let from = Ipv4Addr::new(127, 0, 1, 10 + n % 16);
        let mut stream = connect_from(from, addr).unwrap();
        let _ = exchange_handshakes(
            &mut stream,
            info_hash,
            peer_id(n),
            Duration::from_millis(200),
        );
        held_open.push(stream);
        if seeder.stderr().contains(warning) {
            break;
        }
    }
    assert!(
        poll_until(Duration::from_secs(10), || seeder
            .stderr()
            .contains(warning)),
        "accept() never failed; stderr:\n{}",
        tail(&seeder.stderr())
    );
    // Over 3 s of failing accepts, the listener must mostly sleep.
    let cpu_before = cpu_time(seeder.pid()).unwrap();
    let window = Instant::now();
    // A measurement window, not a wait for something to happen.
    poll_until(Duration::from_secs(3), || false);
    let spent = cpu_time(seeder.pid()).unwrap() - cpu_before;
    let warnings = seeder.stderr().matches(warning).count();
    eprintln!(
        "{spent:?} of CPU in {:?}; {warnings} warnings",
        window.elapsed()
    );
    assert!(
        spent < Duration::from_millis(500),
        "{spent:?} of CPU in 3 s"
    );
    assert_eq!(warnings, 1, "one warning per streak");
    // Descriptors come back: the seeder serves again.
    drop(held_open);
    let dest = dir.path().join("out");
    download(&config(&made.torrent, download_to(&dest), vec![addr]));
    assert!(fs::read(dest.join("churn.bin")).unwrap() == fs::read(&made.source).unwrap());
    let mut probe = TcpStream::connect(addr).unwrap();
    let answer = exchange_handshakes(
        &mut probe,
        info_hash,
        peer_id(0xee),
        Duration::from_secs(10),
    );
    assert!(matches!(answer, Ok(Some(_))), "{answer:?}");
    let _ = probe.read(&mut [0u8; 1]);
}

/// The end of a long stderr, for failure messages.
fn tail(text: &str) -> &str {
    &text[text.len().saturating_sub(4000)..]
}
