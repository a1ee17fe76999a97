use std::fs;

use crate::support::bencode::{TFile, make_torrent};
use crate::support::*;

#[test]
fn downloads_single_file_fixture_from_a_seeder_given_by_peer() {
    // single.torrent was made by mktorrent, not by us.
    let dir = tempfile::tempdir().unwrap();
    let torrent = fixtures().join("single.torrent");
    let source = fixtures().join("single/sample.bin");
    let seeder = Running::start(&config(&torrent, seed_from(&source), vec![]));
    let dest = dir.path().join("out");
    let (status, stderr) = run_binary(&download_args(&torrent, &dest, seeder.addr), dir.path());
    assert!(status.success(), "exit {status}; stderr:\n{stderr}");
    assert!(stderr.contains("download complete"), "{stderr}");
    assert_eq!(
        fs::read(dest.join("sample.bin")).unwrap(),
        fs::read(&source).unwrap()
    );
    assert!(
        seeder
            .stats
            .uploaded
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 200_003
    );
}

#[test]
fn downloads_multi_file_torrent_with_nested_folders_and_an_empty_file() {
    // multi.torrent (mktorrent, 32 KiB pieces) lists a zero-length file, and
    // pieces 2 and 5 span three files each.
    let dir = tempfile::tempdir().unwrap();
    let torrent = fixtures().join("multi.torrent");
    let source = fixtures().join("multi");
    let seeder = Running::start(&config(&torrent, seed_from(&source), vec![]));
    let dest = dir.path().join("out");
    download(&config(&torrent, download_to(&dest), vec![seeder.addr]));
    assert_same_tree(&source, &dest.join("multi"));
    let empty = fs::metadata(dest.join("multi/a/empty.txt")).expect("the empty file is created");
    assert_eq!(empty.len(), 0);
}

#[test]
fn downloads_through_the_page_cache_when_direct_io_is_off() {
    let dir = tempfile::tempdir().unwrap();
    let torrent = fixtures().join("multi.torrent");
    let source = fixtures().join("multi");
    let seeder = Running::start(&config(&torrent, seed_from(&source), vec![]));
    let dest = dir.path().join("out");
    let mut buffered = config(&torrent, download_to(&dest), vec![seeder.addr]);
    buffered.direct_io = false;
    download(&buffered);
    assert_same_tree(&source, &dest.join("multi"));
}

#[test]
fn downloads_multi_file_torrent_made_by_transmission_create() {
    // 16 KiB pieces; transmission-create leaves out the empty file.
    let dir = tempfile::tempdir().unwrap();
    let torrent = fixtures().join("multi-transmission.torrent");
    let source = fixtures().join("multi");
    let seeder = Running::start(&config(&torrent, seed_from(&source), vec![]));
    let dest = dir.path().join("out");
    download(&config(&torrent, download_to(&dest), vec![seeder.addr]));
    for file in ["readme.txt", "a/b/deep.bin", "c/small.bin", "c/big.bin"] {
        assert_eq!(
            fs::read(dest.join("multi").join(file)).unwrap(),
            fs::read(source.join(file)).unwrap(),
            "{file}"
        );
    }
}

#[test]
fn downloads_file_whose_size_is_not_a_multiple_of_the_piece_length() {
    // Five full 16 KiB pieces and a last piece of one byte; also a last piece
    // with a short last block.
    for len in [5 * 16384 + 1, 3 * 65536 + 20000] {
        let dir = tempfile::tempdir().unwrap();
        let data = content(len, 3);
        let piece_len = if len % 16384 == 1 { 16384 } else { 65536 };
        let (bytes, _) = make_torrent(
            "uneven.bin",
            &[TFile {
                path: vec![],
                data: data.clone(),
            }],
            piece_len,
            None,
        );
        let torrent = dir.path().join("uneven.torrent");
        fs::write(&torrent, bytes).unwrap();
        let source = dir.path().join("uneven.bin");
        fs::write(&source, &data).unwrap();
        let seeder = Running::start(&config(&torrent, seed_from(&source), vec![]));
        let dest = dir.path().join("out");
        download(&config(&torrent, download_to(&dest), vec![seeder.addr]));
        assert_eq!(
            fs::read(dest.join("uneven.bin")).unwrap(),
            data,
            "length {len}"
        );
    }
}

#[test]
fn downloads_from_three_seeders_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = content(4 * 1024 * 1024 + 123, 5);
    let (bytes, _) = make_torrent(
        "three.bin",
        &[TFile {
            path: vec![],
            data: data.clone(),
        }],
        32768,
        None,
    );
    let torrent = dir.path().join("three.torrent");
    fs::write(&torrent, bytes).unwrap();
    let source = dir.path().join("three.bin");
    fs::write(&source, &data).unwrap();
    let seeders: Vec<Running> = (0..3)
        .map(|_| Running::start(&config(&torrent, seed_from(&source), vec![])))
        .collect();
    let dest = dir.path().join("out");
    let peers = seeders.iter().map(|s| s.addr).collect();
    let mut downloading = config(&torrent, download_to(&dest), peers);
    // About 1.5 s for the whole file, so that a seeder whose connection
    // comes last on a loaded machine still finds pieces left to send (at
    // full speed one seeder could send everything before another is
    // connected).
    downloading.max_download_rate = 3_000_000;
    let stats = download(&downloading);
    assert_eq!(fs::read(dest.join("three.bin")).unwrap(), data);
    for (i, seeder) in seeders.iter().enumerate() {
        let uploaded = seeder
            .stats
            .uploaded
            .load(std::sync::atomic::Ordering::Relaxed);
        assert!(uploaded > 0, "seeder {i} sent nothing");
    }
    assert_eq!(stats.left.load(std::sync::atomic::Ordering::Relaxed), 0);
}

#[test]
fn a_downloader_uploads_pieces_it_has_to_another_downloader() {
    // A holds the first half, B downloads from A and from a full seeder only
    // after A; C gets everything. The point: a session in download mode serves
    // what it has.
    let dir = tempfile::tempdir().unwrap();
    let data = content(512 * 1024, 9);
    let (bytes, _) = make_torrent(
        "share.bin",
        &[TFile {
            path: vec![],
            data: data.clone(),
        }],
        16384,
        None,
    );
    let torrent = dir.path().join("share.torrent");
    fs::write(&torrent, bytes).unwrap();
    // A: a download with the first half already on disk and nobody to fetch from.
    let a_dest = dir.path().join("a");
    fs::create_dir_all(&a_dest).unwrap();
    let mut half = data.clone();
    half[256 * 1024..].fill(0);
    fs::write(a_dest.join("share.bin"), &half).unwrap();
    let a = Running::start(&config(&torrent, download_to(&a_dest), vec![]));
    assert_eq!(
        a.stats
            .have_pieces
            .load(std::sync::atomic::Ordering::Relaxed),
        16
    );
    // B: downloads from A alone; it can get exactly the first half.
    let b_dest = dir.path().join("b");
    let b = Running::start(&config(&torrent, download_to(&b_dest), vec![a.addr]));
    wait_until("B to get A's half", || {
        b.stats
            .have_pieces
            .load(std::sync::atomic::Ordering::Relaxed)
            == 16
    });
    let got = fs::read(b_dest.join("share.bin")).unwrap();
    assert_eq!(&got[..256 * 1024], &data[..256 * 1024]);
    assert!(a.stats.uploaded.load(std::sync::atomic::Ordering::Relaxed) >= 256 * 1024);
}
