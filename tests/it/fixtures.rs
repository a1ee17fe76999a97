use std::fs;

use bittorrent::metainfo::Metainfo;

use crate::support::fixtures;

/// fixtures/info-hashes.txt holds hashes computed by tools other than ours
/// (transmission-show, and a raw-span SHA-1 in Python for the hand-made one).
#[test]
fn info_hashes_of_fixtures_match_independent_tools() {
    let list = fs::read_to_string(fixtures().join("info-hashes.txt")).unwrap();
    let mut checked = 0;
    for line in list
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
    {
        let (file, expected) = line.split_once(' ').unwrap();
        let meta = Metainfo::from_bytes(&fs::read(fixtures().join(file)).unwrap()).unwrap();
        assert_eq!(meta.info_hash.to_string(), expected.trim(), "{file}");
        checked += 1;
    }
    assert!(checked >= 5, "only {checked} fixtures listed");
}

#[test]
fn unknown_keys_and_unsorted_keys_change_nothing_but_the_hash() {
    let private =
        Metainfo::from_bytes(&fs::read(fixtures().join("private-source.torrent")).unwrap())
            .unwrap();
    let unsorted =
        Metainfo::from_bytes(&fs::read(fixtures().join("unsorted-keys.torrent")).unwrap()).unwrap();
    let plain =
        Metainfo::from_bytes(&fs::read(fixtures().join("single.torrent")).unwrap()).unwrap();
    assert_eq!(private.piece_hashes, plain.piece_hashes);
    assert_eq!(unsorted.piece_hashes, plain.piece_hashes);
    assert_ne!(private.info_hash, plain.info_hash);
    assert_ne!(unsorted.info_hash, plain.info_hash);
}
