//! `bittorrent create` against mktorrent, and what it makes opened by
//! libtorrent, aria2 and Transmission.
//!
//! The same content, piece length, trackers, private flag and source must
//! give mktorrent's `info` dictionary byte for byte (so its info-hash) and
//! its `announce` and `announce-list`. The tree is made to catch an order
//! that is not mktorrent's: `a` and `a-b` (mktorrent sorts whole paths with
//! `strcmp`, so `a-b/…` comes before `a/…`), hidden files, an empty file, a
//! symbolic link, non-ASCII names, files smaller than a piece and pieces
//! that span several files.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use bittorrent::bencode;
use bittorrent::metainfo::Metainfo;

use crate::support::content::bytes;
use crate::support::process::{Proc, require};

/// How long one tool may take on these few MB.
const TOOL_TIMEOUT: Duration = Duration::from_secs(60);

/// Files of the tree: path, length.
const TREE: &[(&str, usize)] = &[
    ("a/b/c/deep.bin", 300_001),
    ("a/empty.txt", 0),
    ("a-b/next.bin", 70_000),
    ("a.txt", 5),
    (".hidden", 1_234),
    ("a/.config/x", 17),
    ("Größe 東京.txt", 40_000),
    ("z/big.bin", 1_500_000),
];

/// Makes the tree under `dir/share`, with a link `share/link.bin` to a file.
fn make_tree(dir: &Path) -> PathBuf {
    let root = dir.join("share");
    for (i, (path, len)) in TREE.iter().enumerate() {
        let path = root.join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, bytes(*len, 500 + i as u64)).unwrap();
    }
    std::os::unix::fs::symlink("a-b/next.bin", root.join("link.bin")).unwrap();
    root
}

/// Runs `program ARGS` to a successful exit and returns its output.
fn run(name: &str, mut command: Command, logs: &Path) -> String {
    let mut proc = Proc::spawn(
        name,
        std::mem::replace(&mut command, Command::new("true")),
        logs,
    );
    let status = proc.wait_exit(TOOL_TIMEOUT);
    assert!(
        status.success(),
        "{name} failed ({status}):\n{}",
        proc.output()
    );
    proc.output()
}

/// What the .torrent at `path` holds at `key` (raw bencode), if anything.
fn raw(path: &Path, key: &[u8]) -> Option<Vec<u8>> {
    let file = fs::read(path).unwrap();
    let span = bencode::dict_value_span(&file, key).unwrap()?;
    Some(file[span].to_vec())
}

/// Makes a torrent of `content` with mktorrent and with ours, the same
/// options each, and checks they agree; returns ours.
fn compare(
    dir: &Path,
    label: &str,
    content: &Path,
    piece_log2: u32,
    trackers: &[&str],
    extra: (&[&str], &[&str]),
) -> PathBuf {
    require("mktorrent", "mktorrent");
    let logs = dir.join("logs");
    let theirs = dir.join(format!("{label}-mktorrent.torrent"));
    let ours = dir.join(format!("{label}-ours.torrent"));
    let mut mktorrent = Command::new("mktorrent");
    mktorrent.args(["-d", "-l", &piece_log2.to_string()]);
    for url in trackers {
        mktorrent.args(["-a", url]);
    }
    mktorrent.args(extra.0).arg("-o").arg(&theirs).arg(content);
    run(&format!("mktorrent {label}"), mktorrent, &logs);
    let mut create = Command::new(env!("CARGO_BIN_EXE_bittorrent"));
    create.arg("create").arg(content).args([
        "--no-date",
        "--piece-length",
        &(1u64 << piece_log2).to_string(),
    ]);
    for url in trackers {
        create.args(["-t", url]);
    }
    create.args(extra.1).arg("-o").arg(&ours);
    let printed = run(&format!("create {label}"), create, &logs);

    let (info, their_info) = (raw(&ours, b"info"), raw(&theirs, b"info"));
    // Shown as text: the file list is what differs when the order does.
    let text = |info: &Option<Vec<u8>>| {
        String::from_utf8_lossy(info.as_deref().unwrap_or_default()).into_owned()
    };
    assert!(
        info == their_info,
        "{label}: the info dictionary differs from mktorrent's\nours:      {}\nmktorrent: {}",
        text(&info),
        text(&their_info)
    );
    for key in [&b"announce"[..], b"announce-list"] {
        assert_eq!(
            raw(&ours, key),
            raw(&theirs, key),
            "{label}: {} differs from mktorrent's",
            String::from_utf8_lossy(key)
        );
    }
    let hash = Metainfo::from_bytes(&fs::read(&theirs).unwrap())
        .unwrap()
        .info_hash
        .to_string();
    assert!(
        printed.contains(&format!("info-hash: {hash}")),
        "{label}: {printed}"
    );
    ours
}

/// Checks that libtorrent, aria2 and Transmission open `torrent` and find
/// `files` files under the info-hash `hash`.
fn others_open(torrent: &Path, hash: &str, files: usize, logs: &Path) {
    require("/usr/bin/python3", "python3-libtorrent");
    let mut lt = Command::new("/usr/bin/python3");
    lt.args([
        "-c",
        "import libtorrent as lt, sys\n\
         t = lt.torrent_info(sys.argv[1])\n\
         print('hash', t.info_hash(), 'files', t.num_files())",
    ])
    .arg(torrent);
    let out = run("libtorrent torrent_info", lt, logs);
    assert!(
        out.contains(&format!("hash {hash} files {files}")),
        "libtorrent: {out}"
    );

    require("aria2c", "aria2");
    let mut aria2 = Command::new("aria2c");
    aria2.arg("-S").arg(torrent);
    let out = run("aria2c -S", aria2, logs);
    assert!(out.contains(&format!("Info Hash: {hash}")), "aria2: {out}");

    require("transmission-show", "transmission-cli");
    let mut show = Command::new("transmission-show");
    show.arg(torrent);
    let out = run("transmission-show", show, logs);
    assert!(
        out.contains(&format!("Hash: {hash}")),
        "transmission-show: {out}"
    );
}

#[test]
fn create_matches_mktorrent_for_a_nested_folder_with_several_trackers() {
    let dir = tempfile::tempdir().unwrap();
    let tree = make_tree(dir.path());
    let trackers = [
        "http://127.0.0.1:1/announce",
        "udp://127.0.0.1:1/announce",
        "http://127.0.0.1:2/announce",
    ];
    let ours = compare(dir.path(), "nested", &tree, 15, &trackers, (&[], &[]));
    let meta = Metainfo::from_bytes(&fs::read(&ours).unwrap()).unwrap();
    assert_eq!(meta.files.len(), TREE.len() + 1, "every file and the link");
    assert_eq!(
        meta.trackers,
        trackers.map(|t| vec![t.to_string()]),
        "one tier per tracker"
    );
    others_open(
        &ours,
        &meta.info_hash.to_string(),
        TREE.len() + 1,
        &dir.path().join("logs"),
    );
}

#[test]
fn create_matches_mktorrent_for_a_single_file_and_for_private_with_a_source() {
    let dir = tempfile::tempdir().unwrap();
    let tree = make_tree(dir.path());
    let single = tree.join("z/big.bin");
    let tracker = ["http://127.0.0.1:1/announce"];
    let ours = compare(dir.path(), "single", &single, 18, &tracker, (&[], &[]));
    let meta = Metainfo::from_bytes(&fs::read(&ours).unwrap()).unwrap();
    assert!(!meta.multi_file);
    others_open(
        &ours,
        &meta.info_hash.to_string(),
        1,
        &dir.path().join("logs"),
    );

    let private = compare(
        dir.path(),
        "private",
        &tree,
        16,
        &tracker,
        (
            &["-p", "-s", "interop-source"],
            &["--private", "--source", "interop-source"],
        ),
    );
    assert!(
        Metainfo::from_bytes(&fs::read(&private).unwrap())
            .unwrap()
            .private
    );
}

#[test]
fn create_s_automatic_piece_length_gives_mktorrent_s_info_at_that_length() {
    let dir = tempfile::tempdir().unwrap();
    // 33 MiB and a byte: the automatic piece length is 32 KiB (1,057
    // pieces), which mktorrent 1.1 takes too (it refuses 16 KiB).
    let file = dir.path().join("large.bin");
    fs::write(&file, bytes(33 * 1024 * 1024 + 1, 77)).unwrap();
    let auto = dir.path().join("auto.torrent");
    let mut create = Command::new(env!("CARGO_BIN_EXE_bittorrent"));
    create
        .arg("create")
        .arg(&file)
        .arg("-o")
        .arg(&auto)
        .arg("--no-date");
    run("create auto", create, &dir.path().join("logs"));
    let meta = Metainfo::from_bytes(&fs::read(&auto).unwrap()).unwrap();
    assert_eq!(meta.layout.piece_len(), 32 * 1024);
    assert_eq!(meta.layout.piece_count(), 1057);
    compare(dir.path(), "auto", &file, 15, &[], (&[], &[]));
    let theirs = dir.path().join("auto-mktorrent.torrent");
    assert_eq!(raw(&auto, b"info"), raw(&theirs, b"info"));
}
