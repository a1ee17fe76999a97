use std::fs;
use std::sync::atomic::Ordering;

use crate::support::bencode::write_single_file;
use crate::support::*;

const PIECE: usize = 16384;
const PIECES: usize = 64;

fn setup(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf, Vec<u8>) {
    let data = content(PIECES * PIECE - 100, 7);
    let written = write_single_file(dir, "resume.bin", &data, PIECE, None);
    (written.torrent, written.source, data)
}

#[test]
fn a_download_stopped_half_way_completes_from_where_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let (torrent, source, data) = setup(dir.path());

    // First run: the only peer has just the first half, so the download
    // stops half-way, when it is shut down.
    let partial_dir = dir.path().join("partial");
    fs::create_dir_all(&partial_dir).unwrap();
    let mut half = data.clone();
    half[PIECES / 2 * PIECE..].fill(0);
    fs::write(partial_dir.join("resume.bin"), &half).unwrap();
    let partial = Running::start(&config(&torrent, download_to(&partial_dir), vec![]));
    let dest = dir.path().join("out");
    let first = Running::start(&config(&torrent, download_to(&dest), vec![partial.addr]));
    wait_until("half the pieces", || {
        first.stats.have_pieces.load(Ordering::Relaxed) == PIECES as u32 / 2
    });
    let outcome = first.stop().unwrap();
    assert_eq!(outcome, bittorrent::piece_manager::Outcome::Stopped);
    drop(partial);

    // Second run, from a full seeder: only the missing half is fetched.
    let seeder = Running::start(&config(&torrent, seed_from(&source), vec![]));
    let second = Running::start(&config(&torrent, download_to(&dest), vec![seeder.addr]));
    assert_eq!(
        second.stats.have_pieces.load(Ordering::Relaxed),
        PIECES as u32 / 2,
        "first half found on disk"
    );
    let stats = std::sync::Arc::clone(&second.stats);
    second.wait().unwrap();
    assert_eq!(fs::read(dest.join("resume.bin")).unwrap(), data);
    let fetched = stats.downloaded.load(Ordering::Relaxed) as usize;
    assert_eq!(
        fetched,
        data.len() - PIECES / 2 * PIECE,
        "only the second half was downloaded"
    );
}

#[test]
fn a_corrupted_piece_in_an_existing_file_is_detected_and_fetched_again() {
    let dir = tempfile::tempdir().unwrap();
    let (torrent, source, data) = setup(dir.path());
    let dest = dir.path().join("out");
    fs::create_dir_all(&dest).unwrap();
    let mut corrupt = data.clone();
    corrupt[10 * PIECE + 5] ^= 0x55;
    fs::write(dest.join("resume.bin"), &corrupt).unwrap();

    let seeder = Running::start(&config(&torrent, seed_from(&source), vec![]));
    let stats = download(&config(&torrent, download_to(&dest), vec![seeder.addr]));
    assert_eq!(fs::read(dest.join("resume.bin")).unwrap(), data);
    assert_eq!(
        stats.downloaded.load(Ordering::Relaxed) as usize,
        PIECE,
        "just piece 10 again"
    );
}

#[test]
fn a_complete_download_run_again_fetches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (torrent, source, data) = setup(dir.path());
    let dest = dir.path().join("out");
    fs::create_dir_all(&dest).unwrap();
    fs::copy(&source, dest.join("resume.bin")).unwrap();
    // No peers at all: completion must come from the check alone.
    let stats = download(&config(&torrent, download_to(&dest), vec![]));
    assert_eq!(stats.downloaded.load(Ordering::Relaxed), 0);
    assert_eq!(fs::read(dest.join("resume.bin")).unwrap(), data);
}

#[test]
fn interrupting_the_binary_leaves_data_that_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let (torrent, source, data) = setup(dir.path());
    let partial_dir = dir.path().join("partial");
    fs::create_dir_all(&partial_dir).unwrap();
    let mut half = data.clone();
    half[PIECES / 2 * PIECE..].fill(0);
    fs::write(partial_dir.join("resume.bin"), &half).unwrap();
    let partial = Running::start(&config(&torrent, download_to(&partial_dir), vec![]));
    let dest = dir.path().join("out");
    let args = download_args(&torrent, &dest, partial.addr);
    let child = Binary::spawn(&args, dir.path());
    let first_half = &data[..PIECES / 2 * PIECE];
    wait_until("the first half on disk", || {
        fs::read(dest.join("resume.bin"))
            .is_ok_and(|got| got.len() == data.len() && &got[..first_half.len()] == first_half)
    });
    child.interrupt();
    let (status, stderr) = child.wait();
    assert_eq!(status.code(), Some(130), "stderr:\n{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    drop(partial);

    let seeder = Running::start(&config(&torrent, seed_from(&source), vec![]));
    let stats = download(&config(&torrent, download_to(&dest), vec![seeder.addr]));
    assert_eq!(fs::read(dest.join("resume.bin")).unwrap(), data);
    assert_eq!(
        stats.downloaded.load(Ordering::Relaxed) as usize,
        data.len() - PIECES / 2 * PIECE
    );
}
