//! `bittorrent create`: mktorrent's info dictionaries for the fixtures it
//! made, a download of what we make from our own seeder, tiers and
//! options, and refusals.

use std::fs;

use bittorrent::bencode;
use bittorrent::metainfo::Metainfo;
use serde_json::Value;

use super::*;

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
fn create_never_writes_over_a_file_it_lists_nor_into_a_folder() {
    let dir = Dir::new();
    let share = dir.work.join("share");
    fs::create_dir_all(&share).unwrap();
    fs::write(share.join("f.bin"), content(20_000, 5)).unwrap();
    // `create .` in the folder itself: share/share.torrent is written after
    // the folder was listed, so it is not in the torrent.
    let ran = tool(&["create", "."], &share, &dir.logs);
    assert_eq!(ran.code(), Some(0), "{}", ran.stderr);
    let torrent = share.join("share.torrent");
    let meta = Metainfo::from_bytes(&fs::read(&torrent).unwrap()).unwrap();
    assert_eq!(meta.name, "share");
    assert_eq!(meta.files.len(), 1);
    // Again with --force, it would be: refused, and left as it was.
    let before = fs::read(&torrent).unwrap();
    let ran = tool(&["create", ".", "--force"], &share, &dir.logs);
    assert_eq!(ran.code(), Some(1), "{}", ran.stdout);
    assert!(
        ran.stderr
            .contains("share.torrent is one of the files the torrent lists"),
        "{}",
        ran.stderr
    );
    assert_eq!(fs::read(&torrent).unwrap(), before);

    let ran = dir.run(&["create", "share", "-o", "share", "--force"]);
    assert_eq!(ran.code(), Some(1));
    assert!(ran.stderr.contains("share is a folder"), "{}", ran.stderr);
}
