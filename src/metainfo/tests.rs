use super::*;

/// Builds a single-file torrent's bytes with a chosen `info` body.
fn torrent_with_info(info: &str) -> Vec<u8> {
    format!("d8:announce21:http://t.example/annc4:info{info}e").into_bytes()
}

fn pieces(count: usize) -> String {
    format!("6:pieces{}:{}", count * 20, "a".repeat(count * 20))
}

#[test]
fn parses_a_single_file_torrent() {
    let info = format!(
        "d6:lengthi40000e4:name5:a.bin12:piece lengthi16384e{}e",
        pieces(3)
    );
    let m = Metainfo::from_bytes(&torrent_with_info(&info)).unwrap();
    assert_eq!(m.name, "a.bin");
    assert_eq!(m.total_len(), 40000);
    assert_eq!(m.piece_hashes.len(), 3);
    assert!(!m.multi_file);
    assert_eq!(m.trackers, vec![vec!["http://t.example/annc".to_string()]]);
    let expected: [u8; 20] = Sha1::digest(info.as_bytes()).into();
    assert_eq!(m.info_hash.0, expected);
}

#[test]
fn parses_a_multi_file_torrent_with_announce_list() {
    let info = format!(
        "d5:filesld6:lengthi10e4:pathl1:a5:b.bineed6:lengthi0e4:pathl5:emptyeee4:name4:root12:piece lengthi16384e{}e",
        pieces(1)
    );
    let bytes = format!("d13:announce-listll5:url-ael5:url-b5:url-cee4:info{info}e");
    let m = Metainfo::from_bytes(bytes.as_bytes()).unwrap();
    assert!(m.multi_file);
    assert_eq!(m.files[0].path, PathBuf::from("a/b.bin"));
    assert_eq!(m.files[1].length, 0);
    assert_eq!(m.trackers.len(), 2);
    assert_eq!(m.trackers[1], vec!["url-b", "url-c"]);
}

#[test]
fn info_hash_covers_unknown_keys_and_original_key_order() {
    let info = format!(
        "d4:name5:a.bin6:lengthi1e12:piece lengthi16384e{}7:privatei1e6:source3:xyze",
        pieces(1)
    );
    let m = Metainfo::from_bytes(&torrent_with_info(&info)).unwrap();
    let expected: [u8; 20] = Sha1::digest(info.as_bytes()).into();
    assert_eq!(m.info_hash.0, expected);
}

#[test]
fn a_written_torrent_file_reads_back_with_the_same_info_hash() {
    // Unknown keys and their order must survive: `x-custom` sorts last.
    let info = format!(
        "d6:lengthi40000e4:name5:a.bin12:piece lengthi16384e{}8:x-customi1ee",
        pieces(3)
    );
    let original = Metainfo::from_bytes(&torrent_with_info(&info)).unwrap();
    let fetched = Metainfo::from_info_bytes(
        &original.info_bytes,
        vec![
            vec!["http://a/x".into(), "udp://b:1".into()],
            vec!["http://c/y".into()],
        ],
    )
    .unwrap();
    assert_eq!(fetched.info_hash, original.info_hash);
    let reread = Metainfo::from_bytes(&fetched.to_torrent_file()).unwrap();
    assert_eq!(reread.info_hash, original.info_hash);
    assert_eq!(reread.trackers, fetched.trackers);
    assert_eq!(reread.name, "a.bin");
    let bare = Metainfo::from_info_bytes(&original.info_bytes, vec![]).unwrap();
    let reread = Metainfo::from_bytes(&bare.to_torrent_file()).unwrap();
    assert!(reread.trackers.is_empty());
    assert_eq!(reread.info_hash, original.info_hash);
}

#[test]
fn not_bencode_is_error() {
    let e = Metainfo::from_bytes(b"hello, world").unwrap_err();
    assert!(matches!(e, MetainfoError::NotBencode(_)), "{e}");
    assert!(e.to_string().starts_with("not a torrent file"));
}

#[test]
fn missing_info_is_error() {
    let e = Metainfo::from_bytes(b"d8:announce3:urle").unwrap_err();
    assert_eq!(e, MetainfoError::Invalid("missing key `info`".into()));
}

#[test]
fn missing_piece_length_is_error_naming_the_key() {
    let info = format!("d6:lengthi1e4:name1:x{}e", pieces(1));
    let e = Metainfo::from_bytes(&torrent_with_info(&info)).unwrap_err();
    assert!(e.to_string().contains("piece length"), "{e}");
}

#[test]
fn pieces_not_multiple_of_20_is_error() {
    let info = "d6:lengthi1e4:name1:x12:piece lengthi16384e6:pieces3:abce";
    let e = Metainfo::from_bytes(&torrent_with_info(info)).unwrap_err();
    assert!(e.to_string().contains("not a multiple of 20"), "{e}");
}

#[test]
fn piece_count_not_matching_length_is_error() {
    let info = format!(
        "d6:lengthi40000e4:name1:x12:piece lengthi16384e{}e",
        pieces(2)
    );
    let e = Metainfo::from_bytes(&torrent_with_info(&info)).unwrap_err();
    assert!(e.to_string().contains("2 piece hashes"), "{e}");
}

#[test]
fn zero_piece_length_is_error() {
    let info = format!("d6:lengthi1e4:name1:x12:piece lengthi0e{}e", pieces(1));
    let e = Metainfo::from_bytes(&torrent_with_info(&info)).unwrap_err();
    assert!(e.to_string().contains("piece length 0"), "{e}");
}

fn multi_with_path(path: &str) -> Vec<u8> {
    torrent_with_info(&format!(
        "d5:filesld6:lengthi1e4:path{path}ee4:name4:root12:piece lengthi16384e{}e",
        pieces(1)
    ))
}

#[test]
fn unsafe_paths_are_refused() {
    for path in [
        "l2:..1:xe",
        "l1:a2:..e",
        "l0:e",
        "le",
        "l4:/etce",
        "l3:a/be",
        "l1:.e",
        "l3:a\0be",
    ] {
        let e = Metainfo::from_bytes(&multi_with_path(path)).unwrap_err();
        assert!(matches!(e, MetainfoError::UnsafePath(_)), "{path}: {e}");
    }
    assert!(Metainfo::from_bytes(&multi_with_path("l1:a1:be")).is_ok());
}

#[test]
fn the_windows_path_rules_apply_only_on_windows() {
    for path in ["l3:C:xe", "l28:Movie: The Sequel (2020).mkve", "l3:a\\be"] {
        let result = Metainfo::from_bytes(&multi_with_path(path));
        if cfg!(windows) {
            assert!(
                matches!(result, Err(MetainfoError::UnsafePath(_))),
                "{path}"
            );
        } else {
            let meta = result.unwrap_or_else(|e| panic!("{path}: {e}"));
            assert!(!meta.files[0].path.as_os_str().is_empty());
        }
    }
}

#[test]
fn legal_names_with_colons_spaces_and_non_ascii_load_as_they_are() {
    let name = "Movie: The Sequel (2020) – Größe 東京.mkv";
    let info = format!(
        "d6:lengthi1e4:name{}:{name}12:piece lengthi16384e{}e",
        name.len(),
        pieces(1)
    );
    let result = Metainfo::from_bytes(&torrent_with_info(&info));
    if cfg!(windows) {
        assert!(matches!(result, Err(MetainfoError::UnsafePath(_))));
    } else {
        assert_eq!(result.unwrap().name, name);
    }
}

/// A multi-file torrent of `files`: (path list as bencode, attr).
fn multi_with_files(files: &[(&str, Option<&str>)]) -> Vec<u8> {
    let list: String = files
        .iter()
        .map(|(path, attr)| {
            let attr = attr.map_or(String::new(), |a| format!("4:attr{}:{a}", a.len()));
            format!("d{attr}6:lengthi1e4:path{path}e")
        })
        .collect();
    torrent_with_info(&format!(
        "d5:filesl{list}e4:name4:root12:piece lengthi16384e{}e",
        pieces(1)
    ))
}

#[test]
fn the_same_path_twice_is_refused_naming_both_entries() {
    let bytes = multi_with_files(&[("l1:ae", None), ("l1:b1:ce", None), ("l1:ae", None)]);
    let e = Metainfo::from_bytes(&bytes).unwrap_err();
    assert_eq!(
        e,
        MetainfoError::DuplicatePath {
            path: "a".into(),
            first: 0,
            second: 2
        }
    );
    assert_eq!(
        e.to_string(),
        "invalid torrent: info.files[0] and info.files[2] have the same path \"a\""
    );
}

#[test]
fn a_file_that_is_a_folder_of_another_is_refused_naming_both() {
    for (files, file, index, nested, nested_index) in [
        (&[("l1:ae", None), ("l1:a1:be", None)][..], "a", 0, "a/b", 1),
        (
            &[("l1:a1:b1:ce", None), ("l1:a1:be", None)],
            "a/b",
            1,
            "a/b/c",
            0,
        ),
        (
            &[("l1:xe", None), ("l1:a1:b1:ce", None), ("l1:ae", None)],
            "a",
            2,
            "a/b/c",
            1,
        ),
    ] {
        let e = Metainfo::from_bytes(&multi_with_files(files)).unwrap_err();
        assert_eq!(
            e,
            MetainfoError::FileIsFolder {
                file: file.into(),
                index,
                nested: nested.into(),
                nested_index
            }
        );
        let text = e.to_string();
        assert!(
            text.contains(&format!("info.files[{index}] \"{file}\"")),
            "{text}"
        );
        assert!(
            text.contains(&format!("info.files[{nested_index}] \"{nested}\"")),
            "{text}"
        );
    }
}

#[test]
fn paths_that_only_share_a_prefix_of_characters_do_not_clash() {
    let files = [
        ("l1:ae", None),
        ("l2:ab1:ce", None),
        ("l2:a.1:ce", None),
        ("l1:b1:ae", None),
        ("l1:b1:be", None),
    ];
    let meta = Metainfo::from_bytes(&multi_with_files(&files)).unwrap();
    assert_eq!(meta.files.len(), 5);
}

#[test]
fn padding_files_never_written_may_share_a_path() {
    // libtorrent names every padding file of one size the same.
    let files = [
        ("l1:ae", None),
        ("l4:.pad5:16384e", Some("p")),
        ("l1:be", None),
        ("l4:.pad5:16384e", Some("p")),
        ("l1:a1:be", Some("p")),
    ];
    let meta = Metainfo::from_bytes(&multi_with_files(&files)).unwrap();
    assert!(meta.files[1].padding && meta.files[3].padding);
    // A padding file does not excuse a real file at the same path.
    let files = [("l1:ae", Some("x")), ("l1:ae", None)];
    assert!(matches!(
        Metainfo::from_bytes(&multi_with_files(&files)),
        Err(MetainfoError::DuplicatePath { .. })
    ));
}

#[test]
fn clashing_paths_are_found_among_100k_files_at_once() {
    let count: usize = 100_000;
    let mut list: String = (0..count)
        .map(|i| format!("d6:lengthi1e4:pathl1:{}6:f{i:05}ee", i % 10))
        .collect();
    let torrent = |list: &str| {
        torrent_with_info(&format!(
            "d5:filesl{list}e4:name4:root12:piece lengthi16384e{}e",
            pieces((count + 1).div_ceil(16384))
        ))
    };
    // 100,001 bytes in pieces of 16 KiB: 7 pieces.
    list.push_str("d6:lengthi1e4:pathl1:7ee");
    let started = std::time::Instant::now();
    let e = Metainfo::from_bytes(&torrent(&list)).unwrap_err();
    assert_eq!(
        e,
        MetainfoError::FileIsFolder {
            file: "7".into(),
            index: count,
            nested: "7/f00007".into(),
            nested_index: 7
        }
    );
    // Quadratic pairwise checks would take minutes here.
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
}

#[test]
fn metadata_from_peers_with_clashing_paths_is_refused() {
    let bytes = multi_with_files(&[("l1:ae", None), ("l1:ae", None)]);
    let span = bencode::dict_value_span(&bytes, b"info").unwrap().unwrap();
    let e = Metainfo::from_info_bytes(&bytes[span], vec![]).unwrap_err();
    assert!(matches!(e, MetainfoError::DuplicatePath { .. }), "{e}");
}

#[test]
fn a_huge_integer_in_an_unknown_key_is_ignored_and_hashed() {
    let huge = "9".repeat(10_000);
    let info = format!(
        "d6:lengthi1e4:name1:x12:piece lengthi16384e{}6:x-hugeli{huge}eee",
        pieces(1)
    );
    let bytes = format!("d7:commenti-{huge}e4:info{info}e");
    let m = Metainfo::from_bytes(bytes.as_bytes()).unwrap();
    let expected: [u8; 20] = Sha1::digest(info.as_bytes()).into();
    assert_eq!(m.info_hash.0, expected);
    assert_eq!(m.total_len(), 1);
}

#[test]
fn a_wrong_key_it_uses_is_named_with_a_short_error() {
    let huge = "9".repeat(10_000);
    for (info, key) in [
        (
            format!("d6:lengthi1e4:name1:x12:piece lengthi{huge}e{}e", pieces(1)),
            "info.piece length: integer 9999",
        ),
        (
            format!("d6:lengthi1e4:name1:x12:piece length5:16384{}e", pieces(1)),
            "info.piece length: expected an integer, found a string",
        ),
        (
            format!("d6:lengthi-1e4:name1:x12:piece lengthi16384e{}e", pieces(1)),
            "info.length: -1 is negative",
        ),
        (
            format!("d6:lengthi1e4:namei1e12:piece lengthi16384e{}e", pieces(1)),
            "info.name: expected a string, found an integer",
        ),
        (
            format!(
                "d5:filesld6:lengthi1e4:pathl1:aeed6:lengthi{huge}e4:pathl1:beee4:name1:x12:piece lengthi16384e{}e",
                pieces(1)
            ),
            "info.files[1].length: integer 9999",
        ),
        (
            format!(
                "d5:filesld6:lengthi1e4:pathl1:ai7eeee4:name1:x12:piece lengthi16384e{}e",
                pieces(1)
            ),
            "info.files[0].path[1]: expected a string, found an integer",
        ),
        (
            format!(
                "d5:filesld4:pathl1:aeee4:name1:x12:piece lengthi16384e{}e",
                pieces(1)
            ),
            "missing key `length` in `info.files[0]`",
        ),
    ] {
        let e = Metainfo::from_bytes(&torrent_with_info(&info)).unwrap_err();
        let text = e.to_string();
        assert!(text.contains(key), "{key}: {text}");
        assert!(text.chars().count() < 150, "{} chars: {text}", text.len());
    }
    let mut bytes = b"d4:infod6:lengthi1e4:name2:\xff\xfe12:piece lengthi16384e".to_vec();
    bytes.extend(pieces(1).bytes());
    bytes.extend(b"ee");
    let e = Metainfo::from_bytes(&bytes).unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid torrent: info.name: \"\u{fffd}\u{fffd}\" is not valid utf-8"
    );
}

#[test]
fn a_wrong_tracker_url_is_named() {
    let info = format!("d6:lengthi1e4:name1:x12:piece lengthi16384e{}e", pieces(1));
    let bytes = format!("d13:announce-listll3:urli5eee4:info{info}e");
    let e = Metainfo::from_bytes(bytes.as_bytes()).unwrap_err();
    assert!(
        e.to_string()
            .contains("announce-list[0][1]: expected a string, found an integer"),
        "{e}"
    );
}

#[test]
fn a_torrent_past_the_bound_is_refused_before_parsing() {
    let big = vec![b'x'; MAX_METAINFO_LEN + 1];
    assert_eq!(
        Metainfo::from_bytes(&big).unwrap_err(),
        MetainfoError::TooLarge(MAX_METAINFO_LEN + 1)
    );
    assert_eq!(
        Metainfo::from_info_bytes(&big, vec![]).unwrap_err(),
        MetainfoError::TooLarge(MAX_METAINFO_LEN + 1)
    );
}

#[test]
fn an_escape_sequence_in_a_path_is_shown_inert_in_the_error() {
    let bytes = multi_with_files(&[("l5:\x1b[2J!e", None), ("l5:\x1b[2J!e", None)]);
    let text = Metainfo::from_bytes(&bytes).unwrap_err().to_string();
    assert!(!text.contains('\x1b'), "{text:?}");
    assert!(text.contains("\\u{1b}[2J!"), "{text}");
}

#[test]
fn unsafe_name_is_refused() {
    let info = format!("d6:lengthi1e4:name2:..12:piece lengthi16384e{}e", pieces(1));
    let e = Metainfo::from_bytes(&torrent_with_info(&info)).unwrap_err();
    assert!(matches!(e, MetainfoError::UnsafePath(_)), "{e}");
}

#[test]
fn padding_files_are_marked() {
    let info = format!(
        "d5:filesld6:lengthi1e4:pathl1:aeed4:attr1:p6:lengthi3e4:pathl4:.pad1:3eee4:name4:root12:piece lengthi16384e{}e",
        pieces(1)
    );
    let m = Metainfo::from_bytes(&torrent_with_info(&info)).unwrap();
    assert!(!m.files[0].padding);
    assert!(m.files[1].padding);
}

#[test]
fn private_is_read_from_the_info_dictionary_only_when_it_is_1() {
    let with = |private: &str| {
        let info = format!(
            "d6:lengthi1e4:name5:a.bin12:piece lengthi16384e{}{private}e",
            pieces(1)
        );
        Metainfo::from_bytes(&torrent_with_info(&info)).unwrap()
    };
    assert!(with("7:privatei1e").private);
    assert!(!with("").private, "absent: public");
    for other in [
        "7:privatei0e",
        "7:privatei2e",
        "7:privatei-1e",
        "7:private1:1",
    ] {
        assert!(!with(other).private, "{other}");
    }
    // From peers (a magnet), the same dictionary says the same.
    let info = format!(
        "d6:lengthi1e4:name5:a.bin12:piece lengthi16384e{}7:privatei1ee",
        pieces(1)
    );
    assert!(
        Metainfo::from_info_bytes(info.as_bytes(), vec![])
            .unwrap()
            .private
    );
    // `private` outside `info` is not covered by the info-hash: ignored.
    let outside = format!(
        "d4:infod6:lengthi1e4:name5:a.bin12:piece lengthi16384e{}e7:privatei1ee",
        pieces(1)
    );
    assert!(!Metainfo::from_bytes(outside.as_bytes()).unwrap().private);
}
