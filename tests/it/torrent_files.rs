//! Hostile and unusual `.torrent` files, driving the binary: a path listed
//! twice or as a folder of another, `/dev/zero`, a FIFO, a folder or a huge
//! file as the torrent, legal names that look odd (`:`), a 10,000-digit
//! integer in a key the client does not use, a wrong key it does use, and
//! terminal escapes in names, which never reach stderr.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::bencode::{TFile, make_torrent, raw_value};
use crate::support::magnet::*;
use crate::support::*;

/// Loopback addresses for the seeders: each its own IP.
const IP_A: [u8; 4] = [127, 0, 0, 2];

/// Runs `bittorrent TORRENT -d DEST`, which must fail with exit 1 within
/// `limit`; returns stderr.
fn refused(torrent: &Path, dest: &Path, log_dir: &Path, limit: Duration) -> String {
    let args = [arg(torrent), "-d", arg(dest), "--port", "0"];
    let mut binary = Binary::spawn(&args, log_dir);
    let deadline = Instant::now() + limit;
    while !binary.has_exited() {
        assert!(
            Instant::now() < deadline,
            "still running after {limit:?}; stderr:\n{}",
            binary.stderr()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let (status, stderr) = binary.wait();
    assert_eq!(status.code(), Some(1), "stderr:\n{stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!dest.exists(), "DEST was created; stderr:\n{stderr}");
    stderr
}

const QUICKLY: Duration = Duration::from_secs(10);

#[test]
fn a_torrent_listing_the_same_path_twice_is_refused_and_nothing_is_created() {
    // Before: "download complete", exit 0, and a file matching neither entry.
    let dir = tempfile::tempdir().unwrap();
    let files = [
        TFile {
            path: vec!["a"],
            data: content(100_000, 1),
        },
        TFile {
            path: vec!["a"],
            data: content(50_000, 2),
        },
    ];
    let (bytes, _) = make_torrent("root", &files, 16384, None);
    let torrent = dir.path().join("twice.torrent");
    fs::write(&torrent, bytes).unwrap();
    let stderr = refused(&torrent, &dir.path().join("out"), dir.path(), QUICKLY);
    assert!(
        stderr.contains("info.files[0] and info.files[1] have the same path \"a\""),
        "{stderr}"
    );
}

#[test]
fn a_torrent_with_a_file_on_another_file_s_folder_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let files = [
        TFile {
            path: vec!["a", "b"],
            data: content(1_000, 1),
        },
        TFile {
            path: vec!["c"],
            data: content(1_000, 2),
        },
        TFile {
            path: vec!["a", "b", "c"],
            data: content(1_000, 3),
        },
    ];
    let (bytes, _) = make_torrent("root", &files, 16384, None);
    let torrent = dir.path().join("nested.torrent");
    fs::write(&torrent, bytes).unwrap();
    let stderr = refused(&torrent, &dir.path().join("out"), dir.path(), QUICKLY);
    assert!(
        stderr.contains(
            "info.files[0] \"a/b\" is a file, but info.files[2] \"a/b/c\" needs it as a folder"
        ),
        "{stderr}"
    );
}

#[test]
fn dev_zero_as_the_torrent_is_refused_at_once() {
    // Before: read until memory ran out (2 GiB in 1.7 s).
    let dir = tempfile::tempdir().unwrap();
    let stderr = refused(
        Path::new("/dev/zero"),
        &dir.path().join("out"),
        dir.path(),
        QUICKLY,
    );
    assert!(
        stderr.contains("cannot read torrent file /dev/zero"),
        "{stderr}"
    );
    assert!(
        stderr.contains("it is a device, not a regular file"),
        "{stderr}"
    );
}

#[test]
fn a_fifo_as_the_torrent_is_refused_at_once() {
    // Before: blocked in open() until a writer came, for ever.
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe.torrent");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    let stderr = refused(&fifo, &dir.path().join("out"), dir.path(), QUICKLY);
    assert!(stderr.contains("pipe.torrent"), "{stderr}");
    assert!(
        stderr.contains("it is a FIFO, not a regular file"),
        "{stderr}"
    );
}

#[test]
fn a_folder_as_the_torrent_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("folder.torrent");
    fs::create_dir(&folder).unwrap();
    let stderr = refused(&folder, &dir.path().join("out"), dir.path(), QUICKLY);
    assert!(
        stderr.contains("it is a folder, not a regular file"),
        "{stderr}"
    );
}

#[test]
fn an_oversized_torrent_file_is_refused_without_reading_it() {
    // 1 GiB, sparse: reading it would take 1 GiB of memory.
    let dir = tempfile::tempdir().unwrap();
    let torrent = dir.path().join("huge.torrent");
    fs::File::create(&torrent)
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    let dest = dir.path().join("out");
    let args = [arg(&torrent), "-d", arg(&dest), "--port", "0"];
    let (status, stderr, vm_peak) = wait_sampling_vm_peak(Binary::spawn(&args, dir.path()));
    assert_eq!(status.code(), Some(1), "stderr:\n{stderr}");
    assert!(
        stderr.contains("it is 1073741824 bytes, more than the limit of 16777216"),
        "{stderr}"
    );
    assert!(vm_peak < 512 << 20, "VmPeak {vm_peak} bytes");
    assert!(!dest.exists());
}

#[test]
fn downloads_a_file_named_with_a_colon_spaces_and_non_ascii() {
    // Before: "unsafe file path" on Linux, where the name is legal.
    let dir = tempfile::tempdir().unwrap();
    let seeds = dir.path().join("seeds");
    fs::create_dir(&seeds).unwrap();
    let name = "Movie: The Sequel (2020) – Größe.mkv";
    let made = single_file(&seeds, name, content(70_001, 7), 16384, None);
    let seeder = Seeder::start(&[arg(&made.torrent)], &made.source, dir.path());
    let dest = dir.path().join("out");
    let args = download_cmd(&[arg(&made.torrent)], &dest, &[seeder.addr(IP_A)]);
    let (status, stderr) = run_binary(&args, dir.path());
    assert_success(status, &stderr);
    assert!(fs::read(dest.join(name)).unwrap() == made.data);
}

/// `torrent` with `raw` (a key and its value, bencoded) added at the end of
/// its `info` dictionary.
fn with_raw_info_entry(torrent: &[u8], raw: &[u8]) -> Vec<u8> {
    let info = raw_value(torrent, "info").unwrap();
    let start = info.as_ptr() as usize - torrent.as_ptr() as usize;
    let end = start + info.len();
    let mut out = torrent[..end - 1].to_vec();
    out.extend_from_slice(raw);
    out.extend_from_slice(&torrent[end - 1..]);
    out
}

#[test]
fn a_huge_integer_in_an_unknown_info_key_still_downloads() {
    // Before: "invalid torrent: Can't parse `999…`", 10 KB long.
    let dir = tempfile::tempdir().unwrap();
    let seeds = dir.path().join("seeds");
    fs::create_dir(&seeds).unwrap();
    let made = single_file(&seeds, "big-int.bin", content(40_000, 9), 16384, None);
    let raw = format!("7:x-extrai{}e", "9".repeat(10_000));
    let bytes = with_raw_info_entry(&fs::read(&made.torrent).unwrap(), raw.as_bytes());
    fs::write(&made.torrent, bytes).unwrap();
    let seeder = Seeder::start(&[arg(&made.torrent)], &made.source, dir.path());
    let dest = dir.path().join("out");
    let args = download_cmd(&[arg(&made.torrent)], &dest, &[seeder.addr(IP_A)]);
    let (status, stderr) = run_binary(&args, dir.path());
    assert_success(status, &stderr);
    assert!(fs::read(dest.join("big-int.bin")).unwrap() == made.data);
}

#[test]
fn a_wrong_key_the_client_uses_is_named_in_a_short_error() {
    let dir = tempfile::tempdir().unwrap();
    let huge = format!("i{}e", "9".repeat(10_000));
    for (value, expected) in [
        (
            "5:16384",
            "info.piece length: expected an integer, found a string",
        ),
        (huge.as_str(), "info.piece length: integer 99999"),
    ] {
        let torrent = dir.path().join("wrong.torrent");
        let info = format!(
            "d6:lengthi1e4:name1:x12:piece length{value}6:pieces20:{}e",
            "a".repeat(20)
        );
        fs::write(&torrent, format!("d4:info{info}e")).unwrap();
        let stderr = refused(&torrent, &dir.path().join("out"), dir.path(), QUICKLY);
        assert!(stderr.contains(expected), "{stderr}");
        for line in stderr.lines() {
            assert!(line.len() < 300, "a line of {} bytes: {line}", line.len());
        }
    }
}

#[test]
fn escape_sequences_in_torrent_and_magnet_names_never_reach_stderr() {
    // Before: the names went to stderr raw, in the labels of several
    // torrents' lines and in "NAME: download complete".
    let dir = tempfile::tempdir().unwrap();
    let seeds = dir.path().join("seeds");
    fs::create_dir(&seeds).unwrap();
    let evil = "evil\x1b]0;pwned\x07\x1b[2J";
    let a = single_file(&seeds, evil, content(50_000, 3), 16384, None);
    let b = single_file(&seeds, "plain.bin", content(30_000, 4), 16384, None);
    let seeder = Seeder::start(&[arg(&a.torrent), arg(&b.torrent)], &seeds, dir.path());
    let dest = dir.path().join("out");
    let uri = magnet(&hex(&b.info_hash), "dn\x1b[31mred", &[], &[]);
    let args = download_cmd(&[arg(&a.torrent), &uri], &dest, &[seeder.addr(IP_A)]);
    let (status, stderr) = run_binary(&args, dir.path());
    assert_success(status, &stderr);
    assert!(fs::read(dest.join(evil)).unwrap() == a.data);
    assert!(fs::read(dest.join("plain.bin")).unwrap() == b.data);
    assert!(
        !stderr.contains(['\x1b', '\x07']),
        "raw escapes in stderr: {stderr:?}"
    );
    assert!(
        stderr.contains("evil\\u{1b}]0;pwned\\u{7}\\u{1b}[2J: download complete"),
        "{stderr}"
    );
}
