//! The verbs, driving the binary: `create` gives mktorrent's info-hashes
//! for the fixtures mktorrent made, and what it makes downloads from our
//! own seeder; `info --json` read back field by field; `verify` on
//! complete, short, corrupted and missing content with its exit codes;
//! completions and the man page; bad input.

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Instant;

use bittorrent::bencode;
use bittorrent::metainfo::Metainfo;
use serde_json::Value;

use crate::support::*;

/// The fixtures' tracker, which no test reaches (port 1).
const FIXTURE_TRACKER: &str = "http://127.0.0.1:1/announce";

/// What a run of the binary printed and how it ended.
struct Ran {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Ran {
    fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// The value of the stdout line that starts with `label: `.
    fn line(&self, label: &str) -> &str {
        let prefix = format!("{label}: ");
        self.stdout
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .map(str::trim_start)
            .unwrap_or_else(|| panic!("no {label:?} line in stdout:\n{}", self.stdout))
    }
}

/// The child, killed when dropped (a test that fails does not leave it).
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `bittorrent ARGS` in `cwd` to its exit (within `TIMEOUT`), with
/// stdout and stderr kept in files in `logs`.
fn tool(args: &[impl AsRef<OsStr>], cwd: &Path, logs: &Path) -> Ran {
    fs::create_dir_all(logs).unwrap();
    let n = fs::read_dir(logs).unwrap().count();
    let out_path = logs.join(format!("stdout-{n}"));
    let err_path = logs.join(format!("stderr-{n}"));
    let child = Command::new(env!("CARGO_BIN_EXE_bittorrent"))
        .args(args)
        .current_dir(cwd)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out_path).unwrap())
        .stderr(fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let mut guard = Guard(child);
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(status) = guard.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "bittorrent did not exit within {TIMEOUT:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    let ran = Ran {
        status,
        stdout: fs::read_to_string(&out_path).unwrap(),
        stderr: fs::read_to_string(&err_path).unwrap(),
    };
    assert!(!ran.stderr.contains("panicked"), "{}", ran.stderr);
    ran
}

/// A test's folder: `work` for the runs, `logs` for their output.
struct Dir {
    _temp: tempfile::TempDir,
    work: PathBuf,
    logs: PathBuf,
}

impl Dir {
    fn new() -> Dir {
        let temp = tempfile::tempdir().unwrap();
        let work = temp.path().join("work");
        fs::create_dir_all(&work).unwrap();
        Dir {
            work,
            logs: temp.path().join("logs"),
            _temp: temp,
        }
    }

    fn run(&self, args: &[impl AsRef<OsStr>]) -> Ran {
        tool(args, &self.work, &self.logs)
    }
}

fn arg(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// The expected info-hash of a fixture, from fixtures/info-hashes.txt.
fn fixture_hash(file: &str) -> String {
    let list = fs::read_to_string(fixtures().join("info-hashes.txt")).unwrap();
    list.lines()
        .find_map(|l| l.strip_prefix(&format!("{file} ")))
        .unwrap_or_else(|| panic!("{file} not in info-hashes.txt"))
        .trim()
        .to_string()
}

/// The raw `info` bytes of the .torrent at `path`.
fn info_bytes(path: &Path) -> Vec<u8> {
    let bytes = fs::read(path).unwrap();
    let span = bencode::dict_value_span(&bytes, b"info").unwrap().unwrap();
    bytes[span].to_vec()
}

#[test]
fn create_gives_mktorrent_s_info_hash_for_the_single_nested_and_private_fixtures() {
    // The fixtures were made by mktorrent 1.1 (commands in fixtures/README.md).
    let dir = Dir::new();
    let cases: [(&str, &str, &[&str]); 3] = [
        ("single.torrent", "single/sample.bin", &[]),
        ("multi.torrent", "multi", &[]),
        (
            "private-source.torrent",
            "single/sample.bin",
            &["--private", "--source", "fixture-source"],
        ),
    ];
    for (fixture, content, extra) in cases {
        let out = dir.work.join(format!("ours-{fixture}"));
        let mut args = vec![
            "create".to_string(),
            arg(&fixtures().join(content)).into(),
            "-o".into(),
            arg(&out).into(),
            "-t".into(),
            FIXTURE_TRACKER.into(),
            "--piece-length".into(),
            "32K".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let ran = dir.run(&args);
        assert_eq!(ran.code(), Some(0), "{fixture}: {}", ran.stderr);
        let want = fixture_hash(fixture);
        assert_eq!(ran.line("info-hash"), want, "{fixture}");
        assert_eq!(
            info_bytes(&out),
            info_bytes(&fixtures().join(fixture)),
            "{fixture}: the info dictionary differs from mktorrent's"
        );
        let meta = Metainfo::from_bytes(&fs::read(&out).unwrap()).unwrap();
        assert_eq!(meta.info_hash.to_string(), want);
        assert_eq!(meta.trackers, [[FIXTURE_TRACKER]]);
        let magnet = ran.line("magnet");
        assert!(
            magnet.starts_with(&format!("magnet:?xt=urn:btih:{want}&dn=")),
            "{magnet}"
        );
    }
}

#[test]
fn created_torrent_downloads_from_our_own_seeder_byte_for_byte() {
    let dir = Dir::new();
    let source = dir.work.join("share");
    let files: [(&str, usize); 5] = [
        ("top.bin", 100_003),
        ("a/b/deep.bin", 250_001),
        ("a/empty.txt", 0),
        (".hidden", 17),
        ("a-b/next.bin", 40_000),
    ];
    for (i, (path, len)) in files.iter().enumerate() {
        let path = source.join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, content(*len, i as u8 + 40)).unwrap();
    }
    let ran = dir.run(&["create", "share", "--no-date"]);
    assert_eq!(ran.code(), Some(0), "{}", ran.stderr);
    let torrent = dir.work.join("share.torrent");
    let meta = Metainfo::from_bytes(&fs::read(&torrent).unwrap()).unwrap();
    assert_eq!(ran.line("info-hash"), meta.info_hash.to_string());
    // 390,021 bytes: the automatic piece length is the smallest, 16 KiB.
    assert_eq!(meta.layout.piece_len(), 16384);
    assert!(meta.trackers.is_empty());
    let paths: Vec<String> = meta
        .files
        .iter()
        .map(|f| f.path.to_str().unwrap().to_string())
        .collect();
    assert_eq!(
        paths,
        [
            ".hidden",
            "a-b/next.bin",
            "a/b/deep.bin",
            "a/empty.txt",
            "top.bin"
        ]
    );

    let seeder = Running::start(&config(&torrent, seed_from(&source), vec![]));
    let dest = dir.work.join("out");
    download(&config(&torrent, download_to(&dest), vec![seeder.addr]));
    assert_same_tree(&source, &dest.join("share"));
    assert_eq!(
        fs::metadata(dest.join("share/a/empty.txt")).unwrap().len(),
        0
    );
}

#[test]
fn create_refuses_to_write_over_an_existing_torrent_without_force() {
    let dir = Dir::new();
    let data = dir.work.join("data.bin");
    fs::write(&data, content(50_000, 3)).unwrap();
    // NAME.torrent, NAME being the file's name.
    let out = dir.work.join("data.bin.torrent");
    fs::write(&out, b"precious").unwrap();
    let ran = dir.run(&["create", "data.bin"]);
    assert_eq!(ran.code(), Some(1), "{}", ran.stderr);
    assert!(
        ran.stderr
            .contains("data.bin.torrent exists; give --force to write over it"),
        "{}",
        ran.stderr
    );
    assert_eq!(fs::read(&out).unwrap(), b"precious");

    let ran = dir.run(&[
        "create",
        "data.bin",
        "--force",
        "-t",
        "udp://127.0.0.1:1/announce",
    ]);
    assert_eq!(ran.code(), Some(0), "{}", ran.stderr);
    let meta = Metainfo::from_bytes(&fs::read(&out).unwrap()).unwrap();
    assert_eq!(meta.total_len(), 50_000);
    assert_eq!(ran.line("info-hash"), meta.info_hash.to_string());
}

#[test]
fn several_trackers_become_one_tier_each_and_options_reach_the_file() {
    let dir = Dir::new();
    fs::write(dir.work.join("f.bin"), content(70_000, 9)).unwrap();
    let ran = dir.run(&[
        "create",
        "f.bin",
        "-t",
        "http://127.0.0.1:1/a",
        "--tracker",
        "udp://127.0.0.1:1/b",
        "-t",
        "http://127.0.0.1:1/c",
        "--web-seed",
        "http://127.0.0.1:1/files/",
        "--comment",
        "made in a test",
        "--piece-length",
        "64KiB",
        "-o",
        "x.torrent",
    ]);
    assert_eq!(ran.code(), Some(0), "{}", ran.stderr);
    let ran = dir.run(&["info", "x.torrent", "--json"]);
    assert_eq!(ran.code(), Some(0), "{}", ran.stderr);
    let json: Value = serde_json::from_str(&ran.stdout).unwrap();
    assert_eq!(
        json["trackers"],
        serde_json::json!([
            ["http://127.0.0.1:1/a"],
            ["udp://127.0.0.1:1/b"],
            ["http://127.0.0.1:1/c"]
        ])
    );
    assert_eq!(
        json["web_seeds"],
        serde_json::json!(["http://127.0.0.1:1/files/"])
    );
    assert_eq!(json["comment"], "made in a test");
    assert_eq!(json["piece_length"], 65536);
    assert_eq!(json["piece_count"], 2);
    assert_eq!(json["private"], false);
    let date = json["creation_date"].as_i64().expect("a creation date");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((now - 600..=now + 5).contains(&date), "{date} vs {now}");
    assert!(
        json["created_by"]
            .as_str()
            .unwrap()
            .starts_with("bittorrent "),
        "{json}"
    );
    let bytes = fs::read(dir.work.join("x.torrent")).unwrap();
    let announce = bencode::dict_value_span(&bytes, b"announce")
        .unwrap()
        .unwrap();
    assert_eq!(&bytes[announce], b"20:http://127.0.0.1:1/a");
}

#[test]
fn create_with_bad_input_fails_with_a_clear_error() {
    let dir = Dir::new();
    let ran = dir.run(&["create", "no-such-folder"]);
    assert_eq!(ran.code(), Some(1));
    assert!(
        ran.stderr.starts_with("error: cannot read no-such-folder"),
        "{}",
        ran.stderr
    );
    assert!(!dir.work.join("no-such-folder.torrent").exists());

    fs::write(dir.work.join("f"), b"x").unwrap();
    let ran = dir.run(&["create", "f", "--piece-length", "1000"]);
    assert_eq!(ran.code(), Some(2), "{}", ran.stderr);
    assert!(ran.stderr.contains("power of two"), "{}", ran.stderr);
    let ran = dir.run(&["create", "f", "-t", "not a url"]);
    assert_eq!(ran.code(), Some(2), "{}", ran.stderr);
    assert!(ran.stderr.contains("expected a URL"), "{}", ran.stderr);
    let ran = dir.run(&["create"]);
    assert_eq!(ran.code(), Some(2), "{}", ran.stderr);
    assert!(ran.stderr.contains("<PATH>"), "{}", ran.stderr);

    fs::create_dir_all(dir.work.join("empty/inner")).unwrap();
    let ran = dir.run(&["create", "empty"]);
    assert_eq!(ran.code(), Some(1));
    assert!(ran.stderr.contains("holds no files"), "{}", ran.stderr);
    assert!(!dir.work.join("f.torrent").exists());
}

#[test]
fn info_json_of_the_nested_fixture_reads_back_field_by_field() {
    let dir = Dir::new();
    let torrent = fixtures().join("multi.torrent");
    let ran = dir.run(&["info", arg(&torrent), "--json"]);
    assert_eq!(ran.code(), Some(0), "{}", ran.stderr);
    let json: Value = serde_json::from_str(&ran.stdout).unwrap();
    let hash = fixture_hash("multi.torrent");
    assert_eq!(json["kind"], "torrent");
    assert_eq!(json["name"], "multi");
    assert_eq!(json["info_hash"], hash.as_str());
    assert_eq!(json["total_size"], 171_006);
    assert_eq!(json["piece_length"], 32_768);
    assert_eq!(json["piece_count"], 6);
    assert_eq!(json["private"], false);
    assert_eq!(json["trackers"], serde_json::json!([[FIXTURE_TRACKER]]));
    assert_eq!(json["web_seeds"], serde_json::json!([]));
    // mktorrent -d writes no date; it names itself.
    assert_eq!(json["creation_date"], Value::Null);
    assert_eq!(json["created_by"], "mktorrent 1.1");
    assert_eq!(json["comment"], Value::Null);
    assert_eq!(json["source"], Value::Null);
    let files: Vec<(u64, &str, u64)> = json["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            assert_eq!(f["padding"], false);
            (
                f["index"].as_u64().unwrap(),
                f["path"].as_str().unwrap(),
                f["size"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        files,
        [
            (1, "a/b/deep.bin", 70_001),
            (2, "a/empty.txt", 0),
            (3, "c/big.bin", 100_000),
            (4, "c/small.bin", 5),
            (5, "readme.txt", 1_000)
        ]
    );
    let magnet = bittorrent::magnet::Magnet::parse(json["magnet"].as_str().unwrap()).unwrap();
    assert_eq!(magnet.info_hash.to_string(), hash);
    assert_eq!(magnet.name.as_deref(), Some("multi"));
    assert_eq!(magnet.trackers, [FIXTURE_TRACKER]);

    // The text form carries the same, the files as a tree.
    let text = dir.run(&["info", arg(&torrent)]);
    assert_eq!(text.code(), Some(0));
    assert_eq!(text.line("info-hash"), hash);
    assert!(
        text.stdout.contains("    3    97.66 KiB    big.bin"),
        "{}",
        text.stdout
    );
}

#[test]
fn info_json_of_a_private_torrent_and_of_a_magnet() {
    let dir = Dir::new();
    let ran = dir.run(&[
        "info",
        arg(&fixtures().join("private-source.torrent")),
        "--json",
    ]);
    assert_eq!(ran.code(), Some(0), "{}", ran.stderr);
    let json: Value = serde_json::from_str(&ran.stdout).unwrap();
    assert_eq!(json["private"], true);
    assert_eq!(json["source"], "fixture-source");
    assert_eq!(
        json["info_hash"],
        fixture_hash("private-source.torrent").as_str()
    );
    assert_eq!(
        json["files"],
        serde_json::json!([{"index": 1, "path": "sample.bin", "size": 200_003, "padding": false}])
    );

    let uri = "magnet:?xt=urn:btih:9c8c6c4dadbbbc3ff4ec8e00de09bed5f5c7c71b&dn=sample.bin\
&tr=http%3A%2F%2F127.0.0.1%3A1%2Fannounce&tr=udp%3A%2F%2F127.0.0.1%3A1&x.pe=127.0.0.1:7000";
    let ran = dir.run(&["info", uri, "--json"]);
    assert_eq!(ran.code(), Some(0), "{}", ran.stderr);
    let json: Value = serde_json::from_str(&ran.stdout).unwrap();
    assert_eq!(json["kind"], "magnet");
    assert_eq!(
        json["info_hash"],
        "9c8c6c4dadbbbc3ff4ec8e00de09bed5f5c7c71b"
    );
    assert_eq!(json["name"], "sample.bin");
    assert_eq!(
        json["trackers"],
        serde_json::json!([[FIXTURE_TRACKER], ["udp://127.0.0.1:1"]])
    );
    assert_eq!(json["peers"], serde_json::json!(["127.0.0.1:7000"]));
    for absent in ["total_size", "piece_length", "piece_count", "private"] {
        assert_eq!(json[absent], Value::Null, "{absent}");
    }
    assert_eq!(json["files"], serde_json::json!([]));
}

#[test]
fn info_of_a_malformed_torrent_or_magnet_is_a_clear_error() {
    let dir = Dir::new();
    fs::write(dir.work.join("bad.torrent"), b"d4:infoi1ee").unwrap();
    let ran = dir.run(&["info", "bad.torrent"]);
    assert_eq!(ran.code(), Some(1));
    assert!(
        ran.stderr.starts_with("error: cannot use torrent file bad.torrent\ncaused by: invalid torrent: `info` is not a dictionary"),
        "{}",
        ran.stderr
    );
    let ran = dir.run(&["info", "missing.torrent"]);
    assert_eq!(ran.code(), Some(1));
    assert!(
        ran.stderr
            .starts_with("error: cannot read torrent file missing.torrent"),
        "{}",
        ran.stderr
    );
    let ran = dir.run(&["info", "magnet:?xt=urn:btih:1234"]);
    assert_eq!(ran.code(), Some(2));
    assert!(
        ran.stderr.contains("is 4 characters, expected 40 hex"),
        "{}",
        ran.stderr
    );
    assert!(ran.stdout.is_empty());
}

/// A copy of the nested fixture's content in `dir`, and its torrent.
fn nested_copy(dir: &Dir) -> (PathBuf, PathBuf) {
    let copy = dir.work.join("multi");
    for (path, _) in [
        ("a/b/deep.bin", ()),
        ("a/empty.txt", ()),
        ("c/big.bin", ()),
        ("c/small.bin", ()),
        ("readme.txt", ()),
    ] {
        let to = copy.join(path);
        fs::create_dir_all(to.parent().unwrap()).unwrap();
        fs::copy(fixtures().join("multi").join(path), to).unwrap();
    }
    (fixtures().join("multi.torrent"), copy)
}

#[test]
fn verify_passes_complete_content_and_names_short_corrupted_and_missing_files() {
    let dir = Dir::new();
    let (torrent, copy) = nested_copy(&dir);
    let ran = dir.run(&["verify", arg(&torrent), arg(&copy)]);
    assert_eq!(ran.code(), Some(0), "{}{}", ran.stdout, ran.stderr);
    assert!(
        ran.stdout
            .contains("5 of 5 files complete; 6 of 6 pieces match"),
        "{}",
        ran.stdout
    );
    for path in [
        "a/b/deep.bin",
        "a/empty.txt",
        "c/big.bin",
        "c/small.bin",
        "readme.txt",
    ] {
        assert!(
            ran.stdout
                .lines()
                .any(|l| l.starts_with("complete") && l.ends_with(path)),
            "{path}: {}",
            ran.stdout
        );
    }

    // One flipped byte in c/big.bin at 50,000: content byte 120,001, in
    // piece 3 (98,304..131,072), which lies inside big.bin alone.
    let big = copy.join("c/big.bin");
    let mut bytes = fs::read(&big).unwrap();
    bytes[50_000] ^= 0xff;
    fs::write(&big, &bytes).unwrap();
    let ran = dir.run(&["verify", arg(&torrent), arg(&copy)]);
    assert_eq!(ran.code(), Some(1), "{}", ran.stdout);
    assert!(
        ran.stdout
            .contains("incomplete     3  c/big.bin: 1 bad piece of 4"),
        "{}",
        ran.stdout
    );
    assert!(
        ran.stdout
            .contains("4 of 5 files complete; 5 of 6 pieces match"),
        "{}",
        ran.stdout
    );
    assert!(ran.stderr.contains("does not match"), "{}", ran.stderr);
    bytes[50_000] ^= 0xff;
    fs::write(&big, &bytes).unwrap();

    // readme.txt cut short: the last piece (also over big.bin's end and
    // small.bin) fails.
    let readme = copy.join("readme.txt");
    let whole = fs::read(&readme).unwrap();
    fs::write(&readme, &whole[..600]).unwrap();
    fs::remove_file(copy.join("a/empty.txt")).unwrap();
    let ran = dir.run(&["verify", arg(&torrent), arg(&copy)]);
    assert_eq!(ran.code(), Some(1), "{}", ran.stdout);
    assert!(
        ran.stdout
            .contains("incomplete     5  readme.txt: short (600 of 1000 bytes)"),
        "{}",
        ran.stdout
    );
    assert!(
        ran.stdout
            .contains("incomplete     2  a/empty.txt: missing"),
        "{}",
        ran.stdout
    );
    assert!(
        ran.stdout
            .contains("incomplete     4  c/small.bin: 1 bad piece of 1"),
        "{}",
        ran.stdout
    );
    assert!(
        ran.stdout
            .contains("incomplete     3  c/big.bin: 1 bad piece of 4"),
        "{}",
        ran.stdout
    );
    assert!(
        ran.stdout
            .contains("1 of 5 files complete; 5 of 6 pieces match"),
        "{}",
        ran.stdout
    );
}

#[test]
fn verify_of_a_single_file_and_bad_arguments() {
    let dir = Dir::new();
    let torrent = fixtures().join("single.torrent");
    let sample = fixtures().join("single/sample.bin");
    let ran = dir.run(&["verify", arg(&torrent), arg(&sample)]);
    assert_eq!(ran.code(), Some(0), "{}{}", ran.stdout, ran.stderr);
    assert!(
        ran.stdout.contains("complete       1  sample.bin\n"),
        "{}",
        ran.stdout
    );

    let longer = dir.work.join("longer.bin");
    let mut bytes = fs::read(&sample).unwrap();
    bytes.push(0);
    fs::write(&longer, &bytes).unwrap();
    let ran = dir.run(&["verify", arg(&torrent), arg(&longer)]);
    assert_eq!(ran.code(), Some(1), "{}", ran.stdout);
    assert!(
        ran.stdout
            .contains("longer than the torrent's file (200004 bytes, not 200003)"),
        "{}",
        ran.stdout
    );

    let ran = dir.run(&["verify", arg(&torrent), "nowhere.bin"]);
    assert_eq!(ran.code(), Some(1));
    assert!(
        ran.stderr.starts_with("error: cannot read nowhere.bin"),
        "{}",
        ran.stderr
    );
    let ran = dir.run(&[
        "verify",
        arg(&fixtures().join("multi.torrent")),
        arg(&sample),
    ]);
    assert_eq!(ran.code(), Some(1));
    assert!(
        ran.stderr
            .contains("is not a folder, but the torrent is a folder of 5 files"),
        "{}",
        ran.stderr
    );
    let ran = dir.run(&["verify", arg(&torrent)]);
    assert_eq!(ran.code(), Some(2), "{}", ran.stderr);
    assert!(ran.stderr.contains("<PATH>"), "{}", ran.stderr);
    fs::write(dir.work.join("junk.torrent"), b"not bencode").unwrap();
    let ran = dir.run(&["verify", "junk.torrent", arg(&sample)]);
    assert_eq!(ran.code(), Some(1));
    assert!(
        ran.stderr.contains("not a torrent file (bad bencode"),
        "{}",
        ran.stderr
    );
}

#[test]
fn completions_for_each_shell_and_the_man_page_print_to_stdout() {
    let dir = Dir::new();
    for (shell, marker) in [
        ("bash", "complete -F _bittorrent"),
        ("zsh", "#compdef bittorrent"),
        ("fish", "complete -c bittorrent"),
    ] {
        let ran = dir.run(&["completions", shell]);
        assert_eq!(ran.code(), Some(0), "{shell}: {}", ran.stderr);
        assert!(ran.stdout.contains(marker), "{shell}: {}", ran.stdout);
        assert!(
            ran.stdout.contains("verify") && ran.stdout.contains("download"),
            "{shell}"
        );
    }
    let ran = dir.run(&["completions", "powershell"]);
    assert_eq!(ran.code(), Some(2));
    let ran = dir.run(&["man"]);
    assert_eq!(ran.code(), Some(0), "{}", ran.stderr);
    assert!(
        ran.stdout.contains(".TH bittorrent"),
        "{}",
        &ran.stdout[..200.min(ran.stdout.len())]
    );
    assert!(
        ran.stdout.contains("create"),
        "the man page names the verbs"
    );
}

#[test]
fn the_download_command_line_and_its_help_are_unchanged_by_the_verbs() {
    let dir = Dir::new();
    let ran = dir.run(&["--help"]);
    assert_eq!(ran.code(), Some(0));
    for text in [
        "--download <DEST>",
        "--seed <PATH>",
        "bittorrent create PATH",
        "bittorrent verify",
    ] {
        assert!(ran.stdout.contains(text), "{text}: {}", ran.stdout);
    }
    // A torrent that is not a verb is still a download's input.
    let ran = dir.run(&["missing.torrent", "-d", "out", "--no-dht"]);
    assert_eq!(ran.code(), Some(1));
    assert!(
        ran.stderr
            .contains("cannot read torrent file missing.torrent"),
        "{}",
        ran.stderr
    );
    let ran = dir.run(&["create.torrent", "-d", "out", "--no-dht"]);
    assert_eq!(ran.code(), Some(1));
    assert!(
        ran.stderr
            .contains("cannot read torrent file create.torrent"),
        "{}",
        ran.stderr
    );
}
