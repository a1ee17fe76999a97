//! The `.torrent` file (BEP 3 "metainfo files"): parsing, validation and the
//! info-hash.
//!
//! In scope: turning the bytes of a `.torrent` (at most [`MAX_METAINFO_LEN`])
//! into a validated [`Metainfo`] whose file paths are safe to join under a
//! destination folder and can all exist side by side (`paths`), reading
//! only the keys the client uses and naming the key when one is wrong
//! (`fields`). Out of scope: reading the file from disk (the caller does)
//! and size arithmetic (see [`crate::layout`]). Pure code: no I/O.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use sha1::{Digest, Sha1};

use crate::bencode;
use crate::layout::Layout;
use crate::untrusted;
use fields::{Dict, Value};
pub(crate) use paths::check_component;

mod fields;
mod paths;

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
    /// `private` = 1 in the info dictionary (BEP 27): peers come only from
    /// the trackers (and `--peer`), never from peer exchange or the DHT.
    /// Any other value, or none, is a public torrent.
    pub private: bool,
}

/// Why a `.torrent` was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetainfoError {
    /// Longer than [`MAX_METAINFO_LEN`] bytes (the length is carried).
    TooLarge(usize),
    /// The bytes are not bencode.
    NotBencode(bencode::BencodeError),
    /// Bencode, but a key it uses is missing or wrong; the text starts with
    /// the key (`info.piece length: ...`).
    Invalid(String),
    /// A file path in the torrent could escape the destination folder.
    UnsafePath(String),
    /// Two files of the torrent have the same path.
    DuplicatePath {
        /// The path, relative to the torrent's root.
        path: String,
        /// Index of the first in `info.files`.
        first: usize,
        /// Index of the second.
        second: usize,
    },
    /// A file's path is a folder on another file's path (`a` and `a/b`).
    FileIsFolder {
        /// The file's path.
        file: String,
        /// Its index in `info.files`.
        index: usize,
        /// The path of a file that would go under it.
        nested: String,
        /// That file's index.
        nested_index: usize,
    },
}

impl fmt::Display for MetainfoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use untrusted::show;
        match self {
            MetainfoError::TooLarge(len) => write!(
                f,
                "torrent is {len} bytes, more than the limit of {MAX_METAINFO_LEN}"
            ),
            MetainfoError::NotBencode(e) => write!(f, "not a torrent file (bad bencode: {e})"),
            MetainfoError::Invalid(what) => write!(f, "invalid torrent: {what}"),
            MetainfoError::UnsafePath(path) => {
                write!(
                    f,
                    "unsafe file path in torrent, refusing it: \"{}\"",
                    show(path)
                )
            }
            MetainfoError::DuplicatePath {
                path,
                first,
                second,
            } => write!(
                f,
                "invalid torrent: info.files[{first}] and info.files[{second}] have the same path \"{}\"",
                show(path)
            ),
            MetainfoError::FileIsFolder {
                file,
                index,
                nested,
                nested_index,
            } => write!(
                f,
                "invalid torrent: info.files[{index}] \"{}\" is a file, but info.files[{nested_index}] \"{}\" needs it as a folder",
                show(file),
                show(nested)
            ),
        }
    }
}

impl std::error::Error for MetainfoError {}

/// Largest `.torrent` file, and `info` dictionary fetched from peers (BEP 9,
/// [`crate::peer::ext::MAX_METADATA_LEN`]), accepted: 16 MiB. Real torrents
/// stay far below (libtorrent refuses files past 10 MB by default); a
/// torrent of 100,000 files takes a few MB.
pub const MAX_METAINFO_LEN: usize = 16 * 1024 * 1024;

/// Largest piece length accepted; real torrents stay at or below 16 MiB.
const MAX_PIECE_LEN: u64 = 64 * 1024 * 1024;

impl Metainfo {
    /// Parses and validates the bytes of a `.torrent` file.
    ///
    /// Only the keys the client uses are read (`announce`, `announce-list`
    /// and `info`'s `name`, `piece length`, `pieces`, `length`, `files`, with
    /// each file's `length`, `path` and `attr`, and `private`); others are skipped unread,
    /// whatever they hold, and still count in the info-hash.
    ///
    /// # Errors
    /// [`MetainfoError`] when the bytes are more than [`MAX_METAINFO_LEN`] or
    /// not bencode, a key it uses is missing or wrong (the error names it),
    /// values are inconsistent (`pieces` not a multiple of 20, piece count not
    /// matching the total length), a path is unsafe (absolute, `..`, empty
    /// components), or two files' paths clash (the same path, or `a` and
    /// `a/b`).
    pub fn from_bytes(bytes: &[u8]) -> Result<Metainfo, MetainfoError> {
        if bytes.len() > MAX_METAINFO_LEN {
            return Err(MetainfoError::TooLarge(bytes.len()));
        }
        Metainfo::parse(bytes)
    }

    fn parse(bytes: &[u8]) -> Result<Metainfo, MetainfoError> {
        let info_span = bencode::dict_value_span(bytes, b"info")
            .map_err(MetainfoError::NotBencode)?
            .ok_or_else(|| MetainfoError::Invalid("missing key `info`".into()))?;
        if bytes[info_span.start] != b'd' {
            return Err(MetainfoError::Invalid("`info` is not a dictionary".into()));
        }
        let info_bytes: Arc<[u8]> = bytes[info_span.clone()].into();
        let info_hash = InfoHash(Sha1::digest(&bytes[info_span]).into());

        let top = Value::document(bytes).dict()?;
        let info = top.require("info")?.dict()?;
        let name_value = info.require("name")?;
        let name = name_value.text()?;
        check_component(name)?;
        let piece_len_value = info.require("piece length")?;
        let piece_len = piece_len_value.length()?;
        if piece_len == 0 || piece_len > MAX_PIECE_LEN {
            return Err(MetainfoError::Invalid(format!(
                "{}: piece length {piece_len} is out of range (1 to {MAX_PIECE_LEN})",
                piece_len_value.at()
            )));
        }
        let pieces = info.require("pieces")?.bytes()?;
        if !pieces.len().is_multiple_of(20) {
            return Err(MetainfoError::Invalid(format!(
                "info.pieces: {} bytes, not a multiple of 20",
                pieces.len()
            )));
        }
        let piece_hashes: Vec<[u8; 20]> = pieces
            .chunks_exact(20)
            .map(|c| c.try_into().expect("chunks_exact yields 20 bytes"))
            .collect();

        let (files, multi_file) = match (info.get("length"), info.get("files")) {
            (Some(length), None) => (
                vec![FileEntry {
                    path: PathBuf::new(),
                    length: length.length()?,
                    padding: false,
                }],
                false,
            ),
            (None, Some(list)) => (read_files(list)?, true),
            (Some(_), Some(_)) => {
                return Err(MetainfoError::Invalid(
                    "info: both `length` and `files` are present".into(),
                ));
            }
            (None, None) => {
                return Err(MetainfoError::Invalid(
                    "info: neither `length` nor `files` is present".into(),
                ));
            }
        };

        let total_len = files
            .iter()
            .try_fold(0u64, |sum, f| sum.checked_add(f.length))
            .ok_or_else(|| MetainfoError::Invalid("info: total length overflows".into()))?;
        let layout = Layout::new(total_len, piece_len)
            .map_err(|e| MetainfoError::Invalid(format!("info: {e}")))?;
        if layout.piece_count() as usize != piece_hashes.len() {
            return Err(MetainfoError::Invalid(format!(
                "info.pieces: {} piece hashes, but a total length of {} bytes in pieces of {} needs {}",
                piece_hashes.len(),
                total_len,
                piece_len,
                layout.piece_count()
            )));
        }

        Ok(Metainfo {
            info_hash,
            name: name.to_string(),
            trackers: read_trackers(&top)?,
            piece_hashes,
            files,
            multi_file,
            layout,
            info_bytes,
            // BEP 27 names only 1; a `private` of another type or value is
            // not a reason to refuse the torrent.
            private: info
                .get("private")
                .is_some_and(|v| v.length().ok() == Some(1)),
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
        if info.len() > MAX_METAINFO_LEN {
            return Err(MetainfoError::TooLarge(info.len()));
        }
        let mut wrapped = Vec::with_capacity(info.len() + 8);
        wrapped.extend_from_slice(b"d4:info");
        wrapped.extend_from_slice(info);
        wrapped.push(b'e');
        let mut meta = Metainfo::parse(&wrapped)?;
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

/// The files of `info.files`, with safe paths that do not clash.
fn read_files(list: Value<'_>) -> Result<Vec<FileEntry>, MetainfoError> {
    let raw_files = list.list()?;
    if raw_files.is_empty() {
        return Err(MetainfoError::Invalid(
            "info.files: the list is empty".into(),
        ));
    }
    let mut files = Vec::with_capacity(raw_files.len());
    let mut paths = Vec::with_capacity(raw_files.len());
    for raw in raw_files {
        let file = raw.dict()?;
        let length = file.require("length")?.length()?;
        let components = file
            .require("path")?
            .list()?
            .iter()
            .map(Value::text)
            .collect::<Result<Vec<&str>, _>>()?;
        let padding = match file.get("attr") {
            Some(attr) => attr.bytes()?.contains(&b'p'),
            None => false,
        };
        files.push(FileEntry {
            path: paths::safe_relative_path(&components)?,
            length,
            padding,
        });
        paths.push(components);
    }
    paths::check_conflicts(&files, &paths)?;
    Ok(files)
}

/// Tracker tiers: `announce-list` when it names any, else `announce`.
fn read_trackers(top: &Dict<'_>) -> Result<Vec<Vec<String>>, MetainfoError> {
    if let Some(list) = top.get("announce-list") {
        let mut tiers = Vec::new();
        for tier in list.list()? {
            let urls = tier
                .list()?
                .iter()
                .map(|url| url.text().map(str::to_string))
                .collect::<Result<Vec<String>, _>>()?;
            if !urls.is_empty() {
                tiers.push(urls);
            }
        }
        if !tiers.is_empty() {
            return Ok(tiers);
        }
    }
    Ok(match top.get("announce") {
        Some(url) => vec![vec![url.text()?.to_string()]],
        None => vec![],
    })
}

#[cfg(test)]
mod tests;
