//! What the swarm shares: deterministic content in the shapes the suite
//! covers, torrents made for it by mktorrent (an independent tool), magnet
//! links for them, and the byte-for-byte comparison of what a downloader
//! wrote.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use bittorrent::bencode;
use bittorrent::metainfo::{InfoHash, Metainfo};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use super::process::require;

/// The torrent shapes of the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// One file whose size is not a multiple of the piece length, so the last
    /// piece is short; 256 KiB pieces.
    Single,
    /// Nested folders, an empty file, a 5-byte file and pieces that span
    /// several files; 64 KiB pieces.
    Multi,
    /// 400 small files with long names in 8 folders, so the info dictionary
    /// (40,281 bytes) takes three ut_metadata pieces (BEP 9 sends it in
    /// 16 KiB pieces; the last is short); 64 KiB pieces.
    ManyFiles,
}

/// Files of the multi-file shape: path under the torrent's folder, length.
const MULTI_FILES: &[(&str, usize)] = &[
    ("readme.txt", 1_000),
    ("a/b/deep.bin", 700_001),
    ("a/empty.txt", 0),
    ("c/big.bin", 1_000_000),
    ("c/small.bin", 5),
    ("c/d/e/last.bin", 123_457),
];
/// Length of the single-file shape: 13 pieces of 256 KiB and a short one.
const SINGLE_LEN: usize = 13 * 256 * 1024 + 12_345;
/// What a magnet link's values percent-encode: all but RFC 3986's
/// unreserved characters, as real magnet links do
/// (`tr=http%3A%2F%2F127.0.0.1%3A6969%2Fannounce`).
const MAGNET_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');
/// How many files the many-files shape has.
const MANY_FILES_COUNT: usize = 400;

/// Files of the many-files shape: path under the torrent's folder, length
/// (1 to 5,000 bytes).
fn many_files() -> Vec<(String, usize)> {
    (0..MANY_FILES_COUNT)
        .map(|i| {
            let path = format!(
                "dir-{}/file-with-a-long-name-so-the-info-dictionary-spans-pieces-{i:04}.bin",
                i % 8
            );
            (path, (i * 7919) % 5000 + 1)
        })
        .collect()
}

/// A torrent made by mktorrent and the content it describes.
pub struct Made {
    /// The `.torrent` file.
    pub torrent: PathBuf,
    /// The folder that holds the content: the file or top folder is
    /// `parent/<name>`, which is the layout every client seeds from.
    pub parent: PathBuf,
    /// The torrent's name: the file, or the top folder.
    pub name: String,
    /// The torrent's info-hash.
    pub info_hash: InfoHash,
    /// The torrent's announce URL: the test's opentracker (HTTP or UDP);
    /// empty for a torrent made with no tracker.
    pub announce: String,
    /// The piece length.
    pub piece_len: usize,
}

impl Made {
    /// The content itself: the file, or the top folder.
    pub fn content(&self) -> PathBuf {
        self.parent.join(&self.name)
    }

    /// A magnet link for this torrent (BEP 9): `xt` its info-hash in hex,
    /// `dn` its name, a `tr` for each of `trackers` and an `x.pe` for each
    /// of `peers`. Values are percent-encoded, except the `x.pe` addresses,
    /// which libtorrent 2.0 reads as they are (`HOST:PORT`).
    pub fn magnet(&self, trackers: &[&str], peers: &[SocketAddr]) -> String {
        let encode = |text: &str| utf8_percent_encode(text, MAGNET_VALUE).to_string();
        let mut uri = format!(
            "magnet:?xt=urn:btih:{}&dn={}",
            self.info_hash,
            encode(&self.name)
        );
        for tracker in trackers {
            uri.push_str(&format!("&tr={}", encode(tracker)));
        }
        for peer in peers {
            uri.push_str(&format!("&x.pe={peer}"));
        }
        uri
    }
}

/// Deterministic bytes, different for each `seed`.
pub fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ seed.wrapping_mul(0x2545_f491_4f6c_dd1d);
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// Writes the content of `shape` under `dir/source/` and makes its torrent
/// with mktorrent, announcing to `announce` or, if `None`, with no tracker
/// at all (peers then come only from `--peer` and peer exchange).
pub fn make(shape: Shape, dir: &Path, announce: Option<&str>) -> Made {
    require("mktorrent", "mktorrent");
    let parent = dir.join("source");
    let (name, piece_len_log2) = match shape {
        Shape::Single => {
            let name = "single.bin";
            fs::create_dir_all(&parent).unwrap();
            fs::write(parent.join(name), bytes(SINGLE_LEN, 1)).unwrap();
            (name, "18")
        }
        Shape::Multi => {
            let name = "multi";
            for (i, (path, len)) in MULTI_FILES.iter().enumerate() {
                let path = parent.join(name).join(path);
                fs::create_dir_all(path.parent().unwrap()).unwrap();
                fs::write(path, bytes(*len, 100 + i as u64)).unwrap();
            }
            (name, "16")
        }
        Shape::ManyFiles => {
            let name = "many";
            for (i, (path, len)) in many_files().iter().enumerate() {
                let path = parent.join(name).join(path);
                fs::create_dir_all(path.parent().unwrap()).unwrap();
                fs::write(path, bytes(*len, 1000 + i as u64)).unwrap();
            }
            (name, "16")
        }
    };
    let torrent = dir.join(format!("{name}.torrent"));
    let mut mktorrent = Command::new("mktorrent");
    mktorrent.args(["-l", piece_len_log2]);
    if let Some(announce) = announce {
        mktorrent.args(["-a", announce]);
    }
    let output = mktorrent
        .arg("-o")
        .arg(&torrent)
        .arg(parent.join(name))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "mktorrent failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let torrent_bytes = fs::read(&torrent).unwrap();
    let meta = Metainfo::from_bytes(&torrent_bytes).unwrap();
    assert_eq!(meta.name, name);
    assert_eq!(
        meta.trackers.is_empty(),
        announce.is_none(),
        "trackers: {:?}",
        meta.trackers
    );
    let info = bencode::dict_value_span(&torrent_bytes, b"info").unwrap();
    let info_len = info.expect("mktorrent writes an info dictionary").len();
    if shape == Shape::ManyFiles {
        // What the shape is for: more than two 16 KiB ut_metadata pieces.
        assert!(
            info_len > 2 * 16 * 1024,
            "info dictionary of {info_len} bytes"
        );
    }
    Made {
        torrent,
        parent,
        name: name.to_string(),
        info_hash: meta.info_hash,
        announce: announce.unwrap_or_default().to_string(),
        piece_len: 1 << piece_len_log2.parse::<u32>().unwrap(),
    }
}

/// Writes into `dir/<name>` the first `pieces` pieces of `made`'s content
/// (a single file) and zeros after them, so a client started on `dir`
/// checks it and holds those pieces only.
pub fn write_partial(made: &Made, dir: &Path, pieces: usize) {
    let source = fs::read(made.content()).expect("a single-file torrent");
    let keep = (pieces * made.piece_len).min(source.len());
    let mut partial = vec![0u8; source.len()];
    partial[..keep].copy_from_slice(&source[..keep]);
    fs::create_dir_all(dir).unwrap();
    fs::write(dir.join(&made.name), partial).unwrap();
}

/// The first file of `expected` that `actual` lacks or holds different
/// bytes for, described; `None` when they are the same.
pub fn first_difference(expected: &Path, actual: &Path, skip_empty: bool) -> Option<String> {
    let meta = fs::metadata(expected).unwrap();
    if meta.is_file() {
        if skip_empty && meta.len() == 0 {
            return None;
        }
        return match fs::read(actual) {
            Ok(got) if got == fs::read(expected).unwrap() => None,
            Ok(got) => Some(format!(
                "{} differs from the source ({} bytes, expected {})",
                actual.display(),
                got.len(),
                meta.len()
            )),
            Err(e) => Some(format!("{}: {e}", actual.display())),
        };
    }
    let mut entries: Vec<_> = fs::read_dir(expected)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    entries.sort();
    entries
        .into_iter()
        .find_map(|name| first_difference(&expected.join(&name), &actual.join(&name), skip_empty))
}
