//! Helpers shared by the integration tests: torrent building, in-process
//! sessions and binary runs with guards that stop them, test trackers (HTTP
//! in `tracker`, UDP in `udp_tracker`), and
//! scripted peers (BEP 3 in `peer` and `hostile`, BEP 9/10 in `meta_peer`),
//! and a scripted DHT node that records queries (`dht_node`).

pub mod bencode;
pub mod dht_node;
pub mod ext;
pub mod hostile;
pub mod magnet;
pub mod meta_peer;
pub mod net;
pub mod peer;
pub mod pex_peer;
pub mod run;
pub mod tracker;
pub mod udp_tracker;

use std::path::{Path, PathBuf};

pub use run::*;

/// Deterministic content of `len` bytes, different for each `seed`.
pub fn content(len: usize, seed: u8) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ u64::from(seed);
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// The folder holding the repository's fixtures.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// Asserts that two folders hold the same files with the same bytes.
pub fn assert_same_tree(expected: &Path, actual: &Path) {
    let mut stack = vec![PathBuf::new()];
    let mut files = 0;
    while let Some(rel) = stack.pop() {
        for entry in std::fs::read_dir(expected.join(&rel)).unwrap() {
            let entry = entry.unwrap();
            let rel = rel.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                stack.push(rel);
            } else {
                let want = std::fs::read(expected.join(&rel)).unwrap();
                let got = std::fs::read(actual.join(&rel))
                    .unwrap_or_else(|e| panic!("{} missing: {e}", actual.join(&rel).display()));
                assert!(want == got, "{} differs from the source", rel.display());
                files += 1;
            }
        }
    }
    assert!(files > 0, "no files compared under {}", expected.display());
}
