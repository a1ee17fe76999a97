use std::fs;
use std::path::Path;

use crate::support::bencode::{B, TFile, make_torrent};
use crate::support::*;

/// Runs a download that must fail; returns stderr after checking the exit.
fn failing_download(torrent: &Path, dest: &Path, log_dir: &Path) -> String {
    let (status, stderr) = run_binary(
        &[
            torrent.to_str().unwrap(),
            "-d",
            dest.to_str().unwrap(),
            "--port",
            "0",
        ],
        log_dir,
    );
    assert_eq!(status.code(), Some(1), "stderr:\n{stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

fn entries(dir: &Path) -> usize {
    fs::read_dir(dir).map_or(0, |d| d.count())
}

#[test]
fn malformed_torrent_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let torrent = dir.path().join("bad.torrent");
    fs::write(&torrent, b"this is not bencode").unwrap();
    let dest = dir.path().join("out");
    let stderr = failing_download(&torrent, &dest, dir.path());
    assert!(stderr.contains("bad.torrent"), "{stderr}");
    assert!(stderr.contains("not a torrent file"), "{stderr}");
    assert!(!dest.exists(), "nothing written");
}

#[test]
fn torrent_missing_keys_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let torrent = dir.path().join("nokeys.torrent");
    let info = B::Dict(vec![
        ("name", B::str("x")),
        ("pieces", B::Bytes(vec![0; 20])),
    ]);
    fs::write(&torrent, B::Dict(vec![("info", info)]).encode()).unwrap();
    let stderr = failing_download(&torrent, &dir.path().join("out"), dir.path());
    assert!(stderr.contains("missing key `piece length`"), "{stderr}");
}

#[test]
fn torrent_with_dot_dot_path_is_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let files = [
        TFile {
            path: vec!["ok.txt"],
            data: b"fine".to_vec(),
        },
        TFile {
            path: vec!["..", "..", "escaped.txt"],
            data: b"evil".to_vec(),
        },
    ];
    let (bytes, _) = make_torrent("evil", &files, 16384, None);
    let torrent = dir.path().join("evil.torrent");
    fs::write(&torrent, bytes).unwrap();
    let dest = dir.path().join("deep/out");
    let before = entries(dir.path());
    let stderr = failing_download(&torrent, &dest, dir.path());
    assert!(stderr.contains("unsafe file path"), "{stderr}");
    assert!(stderr.contains("../../escaped.txt"), "{stderr}");
    assert!(!dir.path().join("deep").exists(), "nothing created");
    assert!(!dir.path().join("escaped.txt").exists());
    // Only the stderr and stdout capture files were added next to the torrent.
    assert_eq!(entries(dir.path()), before + 2);
}

#[test]
fn missing_torrent_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let stderr = failing_download(
        &dir.path().join("nope.torrent"),
        &dir.path().join("out"),
        dir.path(),
    );
    assert!(stderr.contains("cannot read torrent file"), "{stderr}");
    assert!(stderr.contains("nope.torrent"), "{stderr}");
    assert!(stderr.contains("No such file"), "{stderr}");
}

#[test]
fn unreachable_tracker_without_peers_is_a_clear_error() {
    // The fixture announces to 127.0.0.1:1, where nothing listens.
    let dir = tempfile::tempdir().unwrap();
    let stderr = failing_download(
        &fixtures().join("single.torrent"),
        &dir.path().join("out"),
        dir.path(),
    );
    assert!(stderr.contains("no tracker answered"), "{stderr}");
    assert!(
        stderr.contains("http://127.0.0.1:1/announce is unreachable"),
        "{stderr}"
    );
}

#[test]
fn seeding_missing_content_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let torrent = fixtures().join("single.torrent");
    let missing = dir.path().join("absent.bin");
    let (status, stderr) = run_binary(
        &[
            torrent.to_str().unwrap(),
            "-s",
            missing.to_str().unwrap(),
            "--port",
            "0",
        ],
        dir.path(),
    );
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot open"), "{stderr}");
    assert!(stderr.contains("absent.bin"), "{stderr}");
    assert!(!missing.exists(), "seeding never creates content");
}

#[test]
fn seeding_content_that_does_not_match_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let torrent = fixtures().join("single.torrent");
    let wrong = dir.path().join("sample.bin");
    let mut data = fs::read(fixtures().join("single/sample.bin")).unwrap();
    data[100_000] ^= 1;
    fs::write(&wrong, &data).unwrap();
    let (status, stderr) = run_binary(
        &[
            torrent.to_str().unwrap(),
            "-s",
            wrong.to_str().unwrap(),
            "--port",
            "0",
        ],
        dir.path(),
    );
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr
            .contains("does not match the torrent: 1 of 7 pieces fail their hash (first: piece 3)"),
        "{stderr}"
    );
    assert_eq!(fs::read(&wrong).unwrap(), data, "content untouched");
}

#[test]
fn bad_arguments_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (status, stderr) = run_binary(&["x.torrent"], dir.path());
    assert_eq!(status.code(), Some(2), "{stderr}");
    let (status, stderr) = run_binary(
        &["x.torrent", "-d", "out", "--peer", "not-an-address"],
        dir.path(),
    );
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("not-an-address"), "{stderr}");
}

#[test]
fn help_documents_every_flag_with_examples() {
    let dir = tempfile::tempdir().unwrap();
    let (status, _) = run_binary(&["--help"], dir.path());
    assert!(status.success());
    let help = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("stderr")
        })
        .map(|p| fs::read_to_string(p).unwrap())
        .unwrap();
    // clap prints help on stdout, which run_binary discards; stderr stays empty.
    assert!(help.is_empty(), "{help}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_bittorrent"))
        .arg("--help")
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--download",
        "--seed",
        "--port",
        "--peer",
        "--verbose",
        "--no-progress",
        "Examples:",
    ] {
        assert!(text.contains(flag), "--help lacks {flag}:\n{text}");
    }
}
