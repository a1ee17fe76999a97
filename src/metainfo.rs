//! The `.torrent` file (BEP 3 "metainfo files"): parsing, validation and the
//! info-hash.
//!
//! In scope: turning the bytes of a `.torrent` into a validated [`Metainfo`]
//! whose file paths are safe to join under a destination folder. Out of scope:
//! reading the file from disk (the caller does) and size arithmetic (see
//! [`crate::layout`]). Pure code: no I/O.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;
use sha1::{Digest, Sha1};

use crate::bencode;
use crate::layout::Layout;

/// SHA-1 of the raw bytes of the `info` dictionary: the torrent's identity.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct InfoHash(pub [u8; 20]);

impl fmt::Display for InfoHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for InfoHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InfoHash({self})")
    }
}

/// One file of the torrent, in the order the pieces cover them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// Path relative to the torrent's root: for a single-file torrent it is
    /// empty (the root is the file itself); otherwise safe, relative components.
    pub path: PathBuf,
    /// Length in bytes.
    pub length: u64,
    /// A BEP 47 padding file (attr `p`): counted in the pieces, never written.
    pub padding: bool,
}

/// A validated `.torrent`.
#[derive(Debug, Clone)]
pub struct Metainfo {
    /// SHA-1 of the raw `info` dictionary bytes.
    pub info_hash: InfoHash,
    /// Suggested name of the file (single-file) or root folder (multi-file).
    pub name: String,
    /// Tracker tiers: `announce-list` when present, else the single `announce`.
    pub trackers: Vec<Vec<String>>,
    /// The expected SHA-1 of each piece.
    pub piece_hashes: Vec<[u8; 20]>,
    /// Files in piece order.
    pub files: Vec<FileEntry>,
    /// True when the torrent has a `files` list (the content is a folder).
    pub multi_file: bool,
    /// Piece and block arithmetic for this torrent.
    pub layout: Layout,
    /// The exact bytes of the `info` dictionary, served to peers that fetch
    /// the metadata (BEP 9) and written by [`Metainfo::to_torrent_file`].
    pub info_bytes: Arc<[u8]>,
}

/// Why a `.torrent` was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetainfoError {
    /// The bytes are not bencode.
    NotBencode(bencode::BencodeError),
    /// Bencode, but a required key is missing or has the wrong type.
    Invalid(String),
    /// A file path in the torrent could escape the destination folder.
    UnsafePath(String),
}

impl fmt::Display for MetainfoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetainfoError::NotBencode(e) => write!(f, "not a torrent file (bad bencode: {e})"),
            MetainfoError::Invalid(what) => write!(f, "invalid torrent: {what}"),
            MetainfoError::UnsafePath(path) => {
                write!(f, "unsafe file path in torrent, refusing it: {path:?}")
            }
        }
    }
}

impl std::error::Error for MetainfoError {}

#[derive(Deserialize)]
struct RawTorrent {
    announce: Option<String>,
    #[serde(rename = "announce-list")]
    announce_list: Option<Vec<Vec<String>>>,
    info: RawInfo,
}

#[derive(Deserialize)]
struct RawInfo {
    name: String,
    #[serde(rename = "piece length")]
    piece_length: u64,
    #[serde(with = "serde_bytes")]
    pieces: Vec<u8>,
    length: Option<u64>,
    files: Option<Vec<RawFile>>,
}

#[derive(Deserialize)]
struct RawFile {
    length: u64,
    path: Vec<String>,
    attr: Option<String>,
}

/// Largest piece length accepted; real torrents stay at or below 16 MiB.
const MAX_PIECE_LEN: u64 = 64 * 1024 * 1024;

impl Metainfo {
    /// Parses and validates the bytes of a `.torrent` file.
    ///
    /// # Errors
    /// [`MetainfoError`] when the bytes are not bencode, keys are missing or
    /// inconsistent (`pieces` not a multiple of 20, piece count not matching the
    /// total length), or a path is unsafe (absolute, `..`, empty components).
    pub fn from_bytes(bytes: &[u8]) -> Result<Metainfo, MetainfoError> {
        let info_span = bencode::dict_value_span(bytes, b"info")
            .map_err(MetainfoError::NotBencode)?
            .ok_or_else(|| MetainfoError::Invalid("missing key `info`".into()))?;
        if bytes[info_span.start] != b'd' {
            return Err(MetainfoError::Invalid("`info` is not a dictionary".into()));
        }
        let info_bytes: Arc<[u8]> = bytes[info_span.clone()].into();
        let info_hash = InfoHash(Sha1::digest(&bytes[info_span]).into());

        let raw: RawTorrent = serde_bencode::from_bytes(bytes).map_err(|e| {
            MetainfoError::Invalid(match e {
                // serde_bencode words it "Missing Field: `name`".
                serde_bencode::Error::MissingField(text) => {
                    let key = text.split('`').nth(1).unwrap_or(&text);
                    format!("missing key `{key}`")
                }
                other => other.to_string(),
            })
        })?;
        let info = raw.info;

        check_component(&info.name)?;
        if info.piece_length == 0 || info.piece_length > MAX_PIECE_LEN {
            return Err(MetainfoError::Invalid(format!(
                "piece length {} is out of range (1 to {MAX_PIECE_LEN})",
                info.piece_length
            )));
        }
        if !info.pieces.len().is_multiple_of(20) {
            return Err(MetainfoError::Invalid(format!(
                "`pieces` is {} bytes, not a multiple of 20",
                info.pieces.len()
            )));
        }
        let piece_hashes: Vec<[u8; 20]> = info
            .pieces
            .chunks_exact(20)
            .map(|c| c.try_into().expect("chunks_exact yields 20 bytes"))
            .collect();

        let (files, multi_file) = match (info.length, info.files) {
            (Some(length), None) => (
                vec![FileEntry {
                    path: PathBuf::new(),
                    length,
                    padding: false,
                }],
                false,
            ),
            (None, Some(raw_files)) => {
                if raw_files.is_empty() {
                    return Err(MetainfoError::Invalid("`files` is empty".into()));
                }
                let files = raw_files
                    .into_iter()
                    .map(|f| {
                        Ok(FileEntry {
                            path: safe_relative_path(&f.path)?,
                            length: f.length,
                            padding: f.attr.is_some_and(|a| a.contains('p')),
                        })
                    })
                    .collect::<Result<Vec<_>, MetainfoError>>()?;
                (files, true)
            }
            (Some(_), Some(_)) => {
                return Err(MetainfoError::Invalid(
                    "both `length` and `files` are present".into(),
                ));
            }
            (None, None) => {
                return Err(MetainfoError::Invalid(
                    "neither `length` nor `files` is present".into(),
                ));
            }
        };

        let total_len = files
            .iter()
            .try_fold(0u64, |sum, f| sum.checked_add(f.length))
            .ok_or_else(|| MetainfoError::Invalid("total length overflows".into()))?;
        let layout = Layout::new(total_len, info.piece_length)
            .map_err(|e| MetainfoError::Invalid(e.to_string()))?;
        if layout.piece_count() as usize != piece_hashes.len() {
            return Err(MetainfoError::Invalid(format!(
                "{} piece hashes, but a total length of {} bytes in pieces of {} needs {}",
                piece_hashes.len(),
                total_len,
                info.piece_length,
                layout.piece_count()
            )));
        }

        let trackers = match raw.announce_list {
            Some(tiers) if tiers.iter().any(|t| !t.is_empty()) => {
                tiers.into_iter().filter(|t| !t.is_empty()).collect()
            }
            _ => raw.announce.into_iter().map(|url| vec![url]).collect(),
        };

        Ok(Metainfo {
            info_hash,
            name: info.name,
            trackers,
            piece_hashes,
            files,
            multi_file,
            layout,
            info_bytes,
        })
    }

    /// Validates an `info` dictionary fetched from peers (BEP 9) whose SHA-1
    /// the caller has checked, with the trackers the magnet link named.
    ///
    /// # Errors
    /// As [`Metainfo::from_bytes`].
    pub fn from_info_bytes(
        info: &[u8],
        trackers: Vec<Vec<String>>,
    ) -> Result<Metainfo, MetainfoError> {
        let mut wrapped = Vec::with_capacity(info.len() + 8);
        wrapped.extend_from_slice(b"d4:info");
        wrapped.extend_from_slice(info);
        wrapped.push(b'e');
        let mut meta = Metainfo::from_bytes(&wrapped)?;
        meta.trackers = trackers;
        Ok(meta)
    }

    /// The bytes of a `.torrent` file for this torrent: `announce`,
    /// `announce-list` when there are trackers, and the original `info`
    /// bytes, so the file has the same info-hash.
    pub fn to_torrent_file(&self) -> Vec<u8> {
        let string = bencode::put_bytes;
        let mut out = vec![b'd'];
        if let Some(first) = self.trackers.iter().flatten().next() {
            string(&mut out, b"announce");
            string(&mut out, first.as_bytes());
            string(&mut out, b"announce-list");
            out.push(b'l');
            for tier in &self.trackers {
                out.push(b'l');
                for url in tier {
                    string(&mut out, url.as_bytes());
                }
                out.push(b'e');
            }
            out.push(b'e');
        }
        string(&mut out, b"info");
        out.extend_from_slice(&self.info_bytes);
        out.push(b'e');
        out
    }

    /// Total length of the content in bytes.
    pub fn total_len(&self) -> u64 {
        self.layout.total_len()
    }
}

/// Checks one path component: no separators, not `.` or `..`, not empty.
pub(crate) fn check_component(component: &str) -> Result<(), MetainfoError> {
    let bad = component.is_empty()
        || component == "."
        || component == ".."
        || component.contains(['/', '\\', '\0'])
        // A Windows drive prefix such as `C:` would make the path absolute there.
        || component.contains(':');
    if bad {
        Err(MetainfoError::UnsafePath(component.to_string()))
    } else {
        Ok(())
    }
}

/// Joins a torrent's path list into a relative path that stays inside its root.
fn safe_relative_path(components: &[String]) -> Result<PathBuf, MetainfoError> {
    if components.is_empty() {
        return Err(MetainfoError::UnsafePath(String::new()));
    }
    for c in components {
        check_component(c).map_err(|_| MetainfoError::UnsafePath(components.join("/")))?;
    }
    Ok(components.iter().collect())
}

#[cfg(test)]
mod tests {
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
            "l3:C:xe",
        ] {
            let e = Metainfo::from_bytes(&multi_with_path(path)).unwrap_err();
            assert!(matches!(e, MetainfoError::UnsafePath(_)), "{path}: {e}");
        }
        assert!(Metainfo::from_bytes(&multi_with_path("l1:a1:be")).is_ok());
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
}
