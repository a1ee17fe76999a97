//! Choosing files (`--files`, `--exclude`) over fixtures/multi.torrent:
//! 32 KiB pieces over, in order, 1 `a/b/deep.bin` (70001 bytes, pieces
//! 0-2), 2 `a/empty.txt` (0), 3 `c/big.bin` (100000, pieces 2-5),
//! 4 `c/small.bin` (5, piece 5) and 5 `readme.txt` (1000, piece 5).
//! Pieces 2 and 5 hold bytes of several files: the part file's slots 0
//! and 1.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use bittorrent::piece_manager::Outcome;
use bittorrent::selection::Selection;
use bittorrent::session::Config;

use crate::support::bencode::{TFile, make_torrent};
use bittorrent::peer::wire::Message;

use crate::support::magnet::magnet;
use crate::support::peer::{Received, ScriptedPeer};
use crate::support::tracker::TestTracker;
use crate::support::*;

const PIECE: u64 = 32768;
const TOTAL: u64 = 171_006;
/// Content offsets of the files, in torrent order.
const DEEP: (u64, u64) = (0, 70_001);
const BIG: (u64, u64) = (70_001, 100_000);
const SMALL: (u64, u64) = (170_001, 5);
const README: (u64, u64) = (170_006, 1000);
const INFO_HASH: &str = "4d89ab2b5eecd81c1201d364a3f4d5e9fd772824";

fn torrent() -> PathBuf {
    fixtures().join("multi.torrent")
}

fn source() -> PathBuf {
    fixtures().join("multi")
}

/// The fixture's files joined in torrent order.
fn joined() -> Vec<u8> {
    let mut all = Vec::new();
    for file in [
        "a/b/deep.bin",
        "a/empty.txt",
        "c/big.bin",
        "c/small.bin",
        "readme.txt",
    ] {
        all.extend(fs::read(source().join(file)).unwrap());
    }
    assert_eq!(all.len() as u64, TOTAL);
    all
}

/// Every file and folder below `dir`, as sorted relative paths.
fn tree(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for entry in fs::read_dir(dir.join(&rel)).unwrap() {
            let entry = entry.unwrap();
            let rel = rel.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                stack.push(rel.clone());
            }
            found.push(rel.to_string_lossy().into_owned());
        }
    }
    found.sort();
    found
}

fn selecting(mut config: Config, files: Option<&str>, exclude: &[&str]) -> Config {
    let exclude: Vec<String> = exclude.iter().map(|s| s.to_string()).collect();
    config.selection = Selection::new(files, &exclude).unwrap();
    config
}

fn same_file(dest: &Path, file: &str) {
    assert_eq!(
        fs::read(dest.join("multi").join(file)).unwrap(),
        fs::read(source().join(file)).unwrap(),
        "{file}"
    );
}

#[test]
fn files_downloads_exactly_the_chosen_files_and_keeps_shared_bytes_in_the_part_file() {
    let dir = tempfile::tempdir().unwrap();
    let seeder = Running::start(&config(&torrent(), seed_from(&source()), vec![]));
    let dest = dir.path().join("out");
    let mut args = download_args(&torrent(), &dest, seeder.addr);
    args.extend(["--files".into(), "1,4".into()]);
    let (status, stderr) = run_binary(&args, dir.path());
    assert!(status.success(), "exit {status}; stderr:\n{stderr}");
    assert!(stderr.contains("download complete"), "{stderr}");
    same_file(&dest, "a/b/deep.bin");
    same_file(&dest, "c/small.bin");
    assert_eq!(
        fs::metadata(dest.join("multi/a/b/deep.bin")).unwrap().len(),
        DEEP.1
    );
    // Nothing else below DEST/multi: no empty.txt, big.bin nor readme.txt,
    // and the chosen files are exactly their length (no neighbour's bytes).
    assert_eq!(
        tree(&dest.join("multi")),
        ["a", "a/b", "a/b/deep.bin", "c", "c/small.bin"]
    );
    assert_eq!(
        tree(&dest),
        [
            ".multi.parts",
            "multi",
            "multi/a",
            "multi/a/b",
            "multi/a/b/deep.bin",
            "multi/c",
            "multi/c/small.bin"
        ]
    );
    // The part file holds the unselected bytes of pieces 2 and 5 in slots
    // 0 and 1, at their offset in the piece.
    let all = joined();
    let parts = fs::read(dest.join(".multi.parts")).unwrap();
    assert_eq!(parts.len() as u64, PIECE + (TOTAL - 5 * PIECE));
    let slot = |k: u64, piece: u64, from: u64, to: u64| {
        let at = (k * PIECE + from - piece * PIECE) as usize;
        assert_eq!(
            parts[at..at + (to - from) as usize],
            all[from as usize..to as usize],
            "bytes {from}..{to} in slot {k}"
        );
    };
    slot(0, 2, BIG.0, 3 * PIECE);
    slot(1, 5, 5 * PIECE, BIG.0 + BIG.1);
    slot(1, 5, README.0, README.0 + README.1);
    // Where the chosen files' bytes would be, the part file has nothing.
    assert!(
        parts[..(BIG.0 - 2 * PIECE) as usize]
            .iter()
            .all(|&b| b == 0)
    );
    let small = (PIECE + SMALL.0 - 5 * PIECE) as usize;
    assert!(
        parts[small..small + SMALL.1 as usize]
            .iter()
            .all(|&b| b == 0)
    );
    // Only the wanted pieces were fetched: 0, 1, 2 and 5.
    let wanted = 3 * PIECE + (TOTAL - 5 * PIECE);
    let uploaded = || seeder.stats.uploaded.load(Ordering::Relaxed);
    wait_until("the seeder to count what it sent", || uploaded() >= wanted);
    assert_eq!(uploaded(), wanted, "bytes served");
}

#[test]
fn exclude_leaves_out_the_files_whose_path_matches() {
    let dir = tempfile::tempdir().unwrap();
    let seeder = Running::start(&config(&torrent(), seed_from(&source()), vec![]));
    let dest = dir.path().join("out");
    let down = selecting(
        config(&torrent(), download_to(&dest), vec![seeder.addr]),
        None,
        &["c/*"],
    );
    let stats = download(&down);
    assert_eq!(
        tree(&dest.join("multi")),
        ["a", "a/b", "a/b/deep.bin", "a/empty.txt", "readme.txt"]
    );
    same_file(&dest, "a/b/deep.bin");
    same_file(&dest, "readme.txt");
    assert_eq!(
        fs::metadata(dest.join("multi/a/empty.txt")).unwrap().len(),
        0
    );
    // Pieces 0-2 and 5, and no more.
    assert_eq!(
        stats.total_len.load(Ordering::Relaxed),
        3 * PIECE + (TOTAL - 5 * PIECE)
    );
    assert_eq!(stats.have_pieces.load(Ordering::Relaxed), 4);
    assert_eq!(stats.left.load(Ordering::Relaxed), 0);
    assert_eq!(
        stats.downloaded.load(Ordering::Relaxed),
        3 * PIECE + (TOTAL - 5 * PIECE),
        "pieces 3 and 4 hold big.bin only: never fetched"
    );
}

#[test]
fn the_same_selection_resumes_and_checks_shared_pieces_with_the_part_file() {
    let dir = tempfile::tempdir().unwrap();
    let seeder = Running::start(&config(&torrent(), seed_from(&source()), vec![]));
    let dest = dir.path().join("out");
    let first = selecting(
        config(&torrent(), download_to(&dest), vec![seeder.addr]),
        Some("1"),
        &[],
    );
    download(&first);
    // Again: pieces 0-2 verify from deep.bin and, for piece 2, big.bin's
    // first bytes in the part file; nothing is fetched.
    let again = Running::start(&first);
    assert_eq!(again.stats.have_pieces.load(Ordering::Relaxed), 3);
    assert_eq!(again.stats.left.load(Ordering::Relaxed), 0);
    let stats = std::sync::Arc::clone(&again.stats);
    assert_eq!(again.wait().unwrap(), Outcome::Complete);
    assert_eq!(stats.downloaded.load(Ordering::Relaxed), 0);
    // A corrupted byte in the part file fails piece 2, which is fetched
    // again and put right.
    let part = dest.join(".multi.parts");
    let mut bytes = fs::read(&part).unwrap();
    bytes[PIECE as usize - 1] ^= 0xff;
    fs::write(&part, &bytes).unwrap();
    let third = Running::start(&first);
    assert_eq!(third.stats.have_pieces.load(Ordering::Relaxed), 2);
    assert_eq!(third.stats.left.load(Ordering::Relaxed), PIECE);
    let stats = std::sync::Arc::clone(&third.stats);
    assert_eq!(third.wait().unwrap(), Outcome::Complete);
    assert_eq!(stats.downloaded.load(Ordering::Relaxed), PIECE);
    let all = joined();
    let fixed = fs::read(&part).unwrap();
    let from = (BIG.0 - 2 * PIECE) as usize;
    assert_eq!(
        fixed[from..PIECE as usize],
        all[BIG.0 as usize..3 * PIECE as usize]
    );
    same_file(&dest, "a/b/deep.bin");
    assert_eq!(tree(&dest.join("multi")), ["a", "a/b", "a/b/deep.bin"]);
}

#[test]
fn a_wider_selection_later_fetches_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let seeder = Running::start(&config(&torrent(), seed_from(&source()), vec![]));
    let dest = dir.path().join("out");
    let narrow = selecting(
        config(&torrent(), download_to(&dest), vec![seeder.addr]),
        Some("1"),
        &[],
    );
    download(&narrow);
    // Every file now: deep.bin's pieces 0 to 2 are had (big.bin, new,
    // gets its first bytes back from the part file), and 3 to 5 are
    // fetched.
    let wide = Running::start(&config(&torrent(), download_to(&dest), vec![seeder.addr]));
    assert_eq!(wide.stats.have_pieces.load(Ordering::Relaxed), 3);
    assert_eq!(wide.stats.left.load(Ordering::Relaxed), TOTAL - 3 * PIECE);
    let stats = std::sync::Arc::clone(&wide.stats);
    assert_eq!(wide.wait().unwrap(), Outcome::Complete);
    assert_eq!(stats.downloaded.load(Ordering::Relaxed), TOTAL - 3 * PIECE);
    assert_same_tree(&source(), &dest.join("multi"));
    assert_eq!(
        fs::metadata(dest.join("multi/a/empty.txt")).unwrap().len(),
        0
    );
}

#[test]
fn a_file_selected_later_gets_back_the_bytes_kept_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let seeder = Running::start(&config(&torrent(), seed_from(&source()), vec![]));
    let dest = dir.path().join("out");
    let down = |files: &str| {
        selecting(
            config(&torrent(), download_to(&dest), vec![seeder.addr]),
            Some(files),
            &[],
        )
    };
    // small.bin's piece 5 also holds readme.txt, kept in the part file.
    download(&down("4"));
    assert_eq!(tree(&dest.join("multi")), ["c", "c/small.bin"]);
    // With readme.txt too, piece 5 verifies from small.bin and what the
    // part file gives back to the new readme.txt: nothing is fetched.
    let wider = Running::start(&down("4-5"));
    assert_eq!(wider.stats.have_pieces.load(Ordering::Relaxed), 1);
    assert_eq!(wider.stats.left.load(Ordering::Relaxed), 0);
    let stats = std::sync::Arc::clone(&wider.stats);
    assert_eq!(wider.wait().unwrap(), Outcome::Complete);
    assert_eq!(stats.downloaded.load(Ordering::Relaxed), 0);
    same_file(&dest, "c/small.bin");
    same_file(&dest, "readme.txt");
    assert_eq!(
        tree(&dest.join("multi")),
        ["c", "c/small.bin", "readme.txt"]
    );
}

#[test]
fn a_magnet_download_applies_the_selection_once_the_metadata_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let seeder = Running::start(&config(&torrent(), seed_from(&source()), vec![]));
    let dest = dir.path().join("out");
    let uri = magnet(INFO_HASH, "multi", &[], &[]);
    let down = selecting(
        config(Path::new(&uri), download_to(&dest), vec![seeder.addr]),
        Some("5"),
        &[],
    );
    let stats = download(&down);
    assert_eq!(tree(&dest.join("multi")), ["readme.txt"]);
    same_file(&dest, "readme.txt");
    assert_eq!(stats.total_len.load(Ordering::Relaxed), TOTAL - 5 * PIECE);
    // An index past the last file is found once the metadata is known.
    let other = dir.path().join("other");
    let bad = selecting(
        config(Path::new(&uri), download_to(&other), vec![seeder.addr]),
        Some("6"),
        &[],
    );
    let e = Running::start(&bad).wait().unwrap_err();
    assert_eq!(e.exit_code(), 2, "{e}");
    assert!(e.to_string().contains("no file 6"), "{e}");
    assert!(!other.join("multi").exists(), "nothing created");
}

#[test]
fn left_in_announces_counts_only_the_wanted_pieces() {
    let tracker = TestTracker::start();
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<TFile> = [
        (vec!["a", "b", "deep.bin"], "a/b/deep.bin"),
        (vec!["a", "empty.txt"], "a/empty.txt"),
        (vec!["c", "big.bin"], "c/big.bin"),
        (vec!["c", "small.bin"], "c/small.bin"),
        (vec!["readme.txt"], "readme.txt"),
    ]
    .into_iter()
    .map(|(path, file)| TFile {
        path,
        data: fs::read(source().join(file)).unwrap(),
    })
    .collect();
    let (bytes, _) = make_torrent("multi", &files, PIECE as usize, Some(&tracker.url));
    let tracked = dir.path().join("tracked.torrent");
    fs::write(&tracked, bytes).unwrap();
    let seeder = Running::start(&config(&tracked, seed_from(&source()), vec![]));
    let dest = dir.path().join("out");
    // No --peer: the seeder is found through the tracker.
    let down = selecting(config(&tracked, download_to(&dest), vec![]), Some("3"), &[]);
    let running = Running::start(&down);
    let port = running.addr.port();
    assert_eq!(running.wait().unwrap(), Outcome::Complete);
    same_file(&dest, "c/big.bin");
    drop(seeder);
    let ours: Vec<_> = tracker
        .announces
        .lock()
        .unwrap()
        .iter()
        .filter(|a| a.port == port)
        .cloned()
        .collect();
    // big.bin is in pieces 2 to 5: 3 whole pieces and the short last one.
    let wanted = 3 * PIECE + (TOTAL - 5 * PIECE);
    assert_eq!(ours[0].event.as_deref(), Some("started"));
    assert_eq!(ours[0].left, wanted, "{ours:?}");
    assert!(ours.iter().all(|a| a.left <= wanted), "{ours:?}");
    let completed = ours
        .iter()
        .find(|a| a.event.as_deref() == Some("completed"))
        .unwrap_or_else(|| panic!("no completed announce: {ours:?}"));
    assert_eq!(completed.left, 0);
}

#[test]
fn bad_selections_are_usage_errors_that_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("out");
    let unused = "127.0.0.1:9".parse().unwrap();
    let run = |extra: &[&str], torrents: &[&Path]| {
        let mut args = download_args(torrents[0], &dest, unused);
        for more in &torrents[1..] {
            args.push(more.to_str().unwrap().to_string());
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        run_binary(&args, dir.path())
    };
    let multi = torrent();
    let single = fixtures().join("single.torrent");
    for (extra, torrents, expected) in [
        (
            &["--files", "9"][..],
            &[multi.as_path()][..],
            "no file 9: the torrent has 5 files",
        ),
        (
            &["--files", "2"],
            &[single.as_path()],
            "no file 2: the torrent has 1 file,",
        ),
        (
            &["--files", "0"],
            &[multi.as_path()],
            "files are numbered from 1",
        ),
        (
            &["--files", "1-x"],
            &[multi.as_path()],
            "bad --files \"1-x\"",
        ),
        (
            &["--files", "3-1"],
            &[multi.as_path()],
            "ends before it starts",
        ),
        (&["--files", ""], &[multi.as_path()], "bad --files \"\""),
        (
            &["--exclude", "*"],
            &[multi.as_path()],
            "no file to download",
        ),
        (
            &["--exclude", "*.bin", "--files", "1,3"],
            &[multi.as_path()],
            "no file to download",
        ),
        (
            &["--exclude", "[x"],
            &[multi.as_path()],
            "bad --exclude pattern \"[x\"",
        ),
        (
            &["--files", "1"],
            &[multi.as_path(), single.as_path()],
            "--files takes a single torrent",
        ),
    ] {
        let (status, stderr) = run(extra, torrents);
        assert_eq!(status.code(), Some(2), "{extra:?}: {stderr}");
        assert!(stderr.contains(expected), "{extra:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(!dest.exists(), "{extra:?}: nothing is created");
    }
    // Seeding serves every file.
    let content = source();
    let args = [
        multi.to_str().unwrap(),
        "-s",
        content.to_str().unwrap(),
        "--port",
        "0",
        "--files",
        "1",
    ];
    let (status, stderr) = run_binary(&args, dir.path());
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--files and --exclude choose files to download"),
        "{stderr}"
    );
}

#[test]
fn a_single_file_torrent_has_file_1() {
    let dir = tempfile::tempdir().unwrap();
    let single = fixtures().join("single.torrent");
    let data = fixtures().join("single/sample.bin");
    let seeder = Running::start(&config(&single, seed_from(&data), vec![]));
    let dest = dir.path().join("out");
    let down = selecting(
        config(&single, download_to(&dest), vec![seeder.addr]),
        Some("1"),
        &["*.txt"],
    );
    download(&down);
    assert_eq!(
        fs::read(dest.join("sample.bin")).unwrap(),
        fs::read(&data).unwrap()
    );
    assert_eq!(tree(&dest), ["sample.bin"], "no part file");
}

#[test]
fn the_part_file_is_in_dest_beside_the_content_folder() {
    let dir = tempfile::tempdir().unwrap();
    let seeder = Running::start(&config(&torrent(), seed_from(&source()), vec![]));
    let dest = dir.path().join("out");
    let down = selecting(
        config(&torrent(), download_to(&dest), vec![seeder.addr]),
        Some("5"),
        &[],
    );
    download(&down);
    assert!(dest.join(".multi.parts").is_file());
    assert!(!dest.join("multi/.multi.parts").exists());
    // readme.txt's piece also holds big.bin's end and small.bin, kept apart.
    let all = joined();
    let parts = fs::read(dest.join(".multi.parts")).unwrap();
    let at = (PIECE + SMALL.0 - 5 * PIECE) as usize;
    assert_eq!(
        parts[at..at + 5],
        all[SMALL.0 as usize..(SMALL.0 + SMALL.1) as usize]
    );
}

#[test]
fn interest_follows_the_wanted_pieces_only() {
    let dir = tempfile::tempdir().unwrap();
    let meta = bittorrent::metainfo::Metainfo::from_bytes(&fs::read(torrent()).unwrap()).unwrap();
    let dest = dir.path().join("out");
    // deep.bin: pieces 0 to 2. The --peer is a closed port, so the
    // session starts without waiting for the fixture's dead tracker.
    let closed = "127.0.0.1:9".parse().unwrap();
    let down = selecting(
        config(&torrent(), download_to(&dest), vec![closed]),
        Some("1"),
        &[],
    );
    let running = Running::start(&down);
    let mut peer = ScriptedPeer::connect(running.addr, meta.info_hash, 6);
    // Pieces 3 and 4 hold big.bin only: nothing we want. Our `interested`
    // gets us unchoked; no `interested` may come before that.
    peer.send(Message::Bitfield(&[0b0001_1000]));
    peer.send(Message::Interested);
    loop {
        match peer.recv() {
            Received::Other(m) if m == "Unchoke" => break,
            Received::Other(m) => assert_ne!(m, "Interested", "interested in unwanted pieces"),
            _ => {}
        }
    }
    // Piece 2 is wanted.
    peer.send(Message::Have(2));
    loop {
        match peer.recv() {
            Received::Other(m) if m == "Interested" => break,
            Received::Request { index, .. } => panic!("request for piece {index} while choked"),
            _ => {}
        }
    }
    drop(peer);
    assert_eq!(running.stop().unwrap(), Outcome::Stopped);
}

#[test]
fn a_narrower_selection_never_touches_the_files_it_leaves_out() {
    let dir = tempfile::tempdir().unwrap();
    let seeder = Running::start(&config(&torrent(), seed_from(&source()), vec![]));
    let dest = dir.path().join("out");
    download(&config(&torrent(), download_to(&dest), vec![seeder.addr]));
    // The user changes big.bin; a run for deep.bin alone leaves it so.
    let big = dest.join("multi/c/big.bin");
    let mine = vec![7u8; BIG.1 as usize];
    fs::write(&big, &mine).unwrap();
    let narrow = selecting(
        config(&torrent(), download_to(&dest), vec![seeder.addr]),
        Some("1"),
        &[],
    );
    let stats = download(&narrow);
    assert_eq!(fs::read(&big).unwrap(), mine, "big.bin was not selected");
    same_file(&dest, "a/b/deep.bin");
    // Piece 2's big.bin bytes come from the part file, new here: the piece
    // is fetched again, and its other bytes go there.
    assert_eq!(stats.downloaded.load(Ordering::Relaxed), PIECE);
}

#[test]
fn exclude_applies_to_each_of_several_torrents() {
    let dir = tempfile::tempdir().unwrap();
    let single = fixtures().join("single.torrent");
    let multi_seeder = Running::start(&config(&torrent(), seed_from(&source()), vec![]));
    let single_seeder = Running::start(&config(
        &single,
        seed_from(&fixtures().join("single/sample.bin")),
        vec![],
    ));
    let dest = dir.path().join("out");
    let mut both = selecting(
        config(
            &torrent(),
            download_to(&dest),
            vec![multi_seeder.addr, single_seeder.addr],
        ),
        None,
        &["c/*", "*.txt"],
    );
    both.torrents.push(single.to_string_lossy().into_owned());
    // Waits for both (bounded); the outcome is the first's, and the
    // second's is its file.
    assert_eq!(Running::start(&both).wait().unwrap(), Outcome::Complete);
    assert_eq!(tree(&dest.join("multi")), ["a", "a/b", "a/b/deep.bin"]);
    assert_eq!(
        fs::read(dest.join("sample.bin")).unwrap(),
        fs::read(fixtures().join("single/sample.bin")).unwrap()
    );
}
