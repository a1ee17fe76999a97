//! What the swarm shares: deterministic content in the two shapes the suite
//! covers, torrents made for it by mktorrent (an independent tool), and the
//! byte-for-byte comparison of what a downloader wrote.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use bittorrent::metainfo::{InfoHash, Metainfo};

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
}

impl Made {
    /// The content itself: the file, or the top folder.
    pub fn content(&self) -> PathBuf {
        self.parent.join(&self.name)
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
/// with mktorrent, announcing to `announce`.
pub fn make(shape: Shape, dir: &Path, announce: &str) -> Made {
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
    };
    let torrent = dir.join(format!("{name}.torrent"));
    let output = Command::new("mktorrent")
        .args(["-l", piece_len_log2, "-a", announce, "-o"])
        .arg(&torrent)
        .arg(parent.join(name))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "mktorrent failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let meta = Metainfo::from_bytes(&fs::read(&torrent).unwrap()).unwrap();
    assert_eq!(meta.name, name);
    Made {
        torrent,
        parent,
        name: name.to_string(),
        info_hash: meta.info_hash,
    }
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
