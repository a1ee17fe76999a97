//! `bittorrent info` and `bittorrent verify`: the JSON read back field by
//! field, a magnet's fields, and verify's lines and exit codes on
//! complete, corrupted, short, longer and missing content.

use std::fs;
use std::path::PathBuf;

use serde_json::Value;

use super::*;

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

/// Regression: a FIFO where the torrent lists a file was reported as "not
/// a file", but hashing then opened it for reading, which waits for a
/// writer for ever: verify never ended.
#[test]
fn verify_does_not_wait_on_a_fifo_where_a_file_should_be() {
    let dir = Dir::new();
    let (torrent, copy) = nested_copy(&dir);
    let small = copy.join("c/small.bin");
    fs::remove_file(&small).unwrap();
    crate::disk_safety::mkfifo(&small);
    let ran = dir.run(&["verify", arg(&torrent), arg(&copy)]);
    assert_eq!(ran.code(), Some(1), "{}{}", ran.stdout, ran.stderr);
    let line = ran
        .stdout
        .lines()
        .find(|l| l.ends_with("c/small.bin") || l.contains("c/small.bin:"))
        .unwrap_or_else(|| panic!("no line for c/small.bin: {}", ran.stdout));
    assert!(line.starts_with("incomplete"), "{line}");
    assert!(
        ran.stdout.contains("complete") && ran.stdout.contains("c/big.bin"),
        "the other files are still checked: {}",
        ran.stdout
    );
}
