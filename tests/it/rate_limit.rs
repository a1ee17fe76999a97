//! `--max-upload-rate` and `--max-download-rate`: transfers take at least
//! the time the limit allows, with the limit shared by every peer of the
//! process, and a bad rate is a usage error. Bounds are loose on purpose:
//! a lower bound the limit guarantees, and an upper bound far above it.
//! (How close the achieved rate comes to the limit is measured by
//! `scripts/rate.sh`, not here.)

use std::fs;
use std::time::{Duration, Instant};

use bittorrent::peer::wire::Message;

use crate::support::bencode::write_single_file;
use crate::support::peer::ScriptedPeer;
use crate::support::*;

/// The limit the tests set: 500,000 bytes a second.
const RATE: u64 = 500_000;
/// Far above the time the limit asks for, well within the session timeout.
const SLOWEST: Duration = Duration::from_secs(40);

#[test]
fn upload_limit_is_shared_by_the_seeders_peers() {
    // Two downloaders of 1 MB each from one seeder limited to 500 KB/s: 2 MB
    // leave it, at least 4 s (less its 25 KB burst). A limit per peer
    // would let them finish in about 2 s.
    let dir = tempfile::tempdir().unwrap();
    let data = content(1_000_000, 41);
    let file = write_single_file(dir.path(), "up.bin", &data, 64 * 1024, None);
    let mut seed_config = config(&file.torrent, seed_from(&file.source), vec![]);
    seed_config.max_upload_rate = RATE;
    seed_config.pex = false;
    let seeder = Running::start(&seed_config);
    let started = Instant::now();
    let downloaders: Vec<Running> = (0..2)
        .map(|n| {
            let dest = dir.path().join(format!("out{n}"));
            let mut config = config(&file.torrent, download_to(&dest), vec![seeder.addr]);
            // Each fetches everything from the seeder: no peer exchange
            // tells one of the other.
            config.pex = false;
            Running::start(&config)
        })
        .collect();
    for downloader in downloaders {
        let outcome = downloader.wait().expect("download completes");
        assert_eq!(outcome, bittorrent::piece_manager::Outcome::Complete);
    }
    let elapsed = started.elapsed();
    let sent = seeder
        .stats
        .uploaded
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(sent >= 2_000_000, "the seeder sent only {sent} bytes");
    for n in 0..2 {
        let got = fs::read(dir.path().join(format!("out{n}/up.bin"))).unwrap();
        assert!(got == data, "downloader {n} has the content");
    }
    assert!(
        elapsed >= Duration::from_secs(3),
        "2 MB at 500 KB/s took only {elapsed:?}"
    );
    assert!(elapsed < SLOWEST, "took {elapsed:?}");
}

#[test]
fn download_limit_from_the_command_line_is_shared_by_every_seeder() {
    // The binary with --max-download-rate 500K fetches 2 MB from two
    // seeders: at least 4 s (less the burst and a block per peer), where a
    // limit per peer would allow 2 s.
    let dir = tempfile::tempdir().unwrap();
    let data = content(2_000_000, 42);
    let file = write_single_file(dir.path(), "down.bin", &data, 64 * 1024, None);
    let seeders: Vec<Running> = (0..2)
        .map(|_| Running::start(&config(&file.torrent, seed_from(&file.source), vec![])))
        .collect();
    let dest = dir.path().join("out");
    let mut args = download_args(&file.torrent, &dest, seeders[0].addr);
    args.extend([
        "--peer".to_string(),
        seeders[1].addr.to_string(),
        "--max-download-rate".into(),
        "500K".into(),
    ]);
    let started = Instant::now();
    let (status, stderr) = run_binary(&args, dir.path());
    let elapsed = started.elapsed();
    assert!(status.success(), "exit {status}; stderr:\n{stderr}");
    assert!(fs::read(dest.join("down.bin")).unwrap() == data);
    assert!(
        elapsed >= Duration::from_secs(3),
        "2 MB at 500 KB/s took only {elapsed:?}"
    );
    assert!(elapsed < SLOWEST, "took {elapsed:?}");
    // Both seeders served: the limit did not starve one of them.
    for (n, seeder) in seeders.iter().enumerate() {
        let sent = seeder
            .stats
            .uploaded
            .load(std::sync::atomic::Ordering::Relaxed);
        assert!(sent > 0, "seeder {n} sent nothing");
    }
}

#[test]
fn a_bad_rate_is_a_usage_error_naming_the_flag_and_the_value() {
    let dir = tempfile::tempdir().unwrap();
    for (flag, value) in [
        ("--max-upload-rate", "10Q"),
        ("--max-download-rate", "-5K"),
        ("--max-download-rate", ""),
    ] {
        let arg = format!("{flag}={value}");
        let (status, stderr) = run_binary(&["x.torrent", "-d", "out", &arg], dir.path());
        assert_eq!(status.code(), Some(2), "{flag} {value:?}: {stderr}");
        assert!(
            stderr.contains(flag) && stderr.contains(&format!("'{value}'")),
            "{stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

/// With an upload limit the seeder's upload is scarce: a piece it already
/// sent to one peer waits while another peer's requests for pieces no one
/// has got yet can go. (Leechers cannot see each other's requests, so in
/// a swarm they often ask the seeder for the same piece; it used to send
/// such pieces twice before every piece had gone out once.)
#[test]
fn a_limited_seeder_sends_new_pieces_before_ones_it_sent_to_another_peer() {
    const PIECE_LEN: usize = 64 * 1024;
    const BLOCK: usize = 16 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let data = content(8 * PIECE_LEN, 43);
    let file = write_single_file(dir.path(), "repeats.bin", &data, PIECE_LEN, None);
    let mut seed_config = config(&file.torrent, seed_from(&file.source), vec![]);
    seed_config.max_upload_rate = 400_000;
    seed_config.pex = false;
    let seeder = Running::start(&seed_config);
    let info_hash = bittorrent::metainfo::InfoHash(file.info_hash);
    let requests = |pieces: std::ops::Range<u32>| -> Vec<Message<'static>> {
        pieces
            .flat_map(|index| {
                (0..PIECE_LEN / BLOCK).map(move |n| Message::Request {
                    index,
                    begin: (n * BLOCK) as u32,
                    length: BLOCK as u32,
                })
            })
            .collect()
    };
    // The first peer gets pieces 0 to 3 whole.
    let mut first = ScriptedPeer::connect(seeder.addr, info_hash, 8);
    first.send(Message::Interested);
    first.wait_unchoke();
    first.send_together(&requests(0..4));
    for _ in 0..4 * PIECE_LEN / BLOCK {
        let (index, begin, block) = first.recv_piece();
        let at = index as usize * PIECE_LEN + begin as usize;
        assert!(block == data[at..at + BLOCK], "block {index}/{begin}");
    }
    // The second asks for every piece in index order, in one write.
    let from = std::net::Ipv4Addr::new(127, 0, 4, 2);
    let mut second =
        ScriptedPeer::connect_as(seeder.addr, info_hash, 8, from, *b"-XX0001-secondpeer00");
    second.send(Message::Interested);
    second.wait_unchoke();
    second.send_together(&requests(0..8));
    let mut order = Vec::new();
    for _ in 0..8 * PIECE_LEN / BLOCK {
        let (index, begin, block) = second.recv_piece();
        let at = index as usize * PIECE_LEN + begin as usize;
        assert!(block == data[at..at + BLOCK], "block {index}/{begin}");
        if order.last() != Some(&index) {
            order.push(index);
        }
    }
    assert_eq!(
        order,
        vec![4, 5, 6, 7, 0, 1, 2, 3],
        "pieces 4 to 7 had gone to no one: they go first, every block still served"
    );
}
