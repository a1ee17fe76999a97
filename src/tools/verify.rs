//! `bittorrent verify`: checks content on disk against a torrent's piece
//! hashes, on every core, and says per file whether it is complete.
//!
//! A file is complete when it exists as a regular file of the torrent's
//! length and every piece that covers it matches its hash; otherwise it is
//! missing, not a file, short, longer, unreadable, or has N bad pieces (a
//! piece that spans two files counts against both). BEP 47 padding files
//! are never on disk and are not checked. Nothing is written; content is
//! read as seeding reads it ([`crate::storage`]'s seed mode follows paths
//! as given, and so does this).

use std::fmt::{self, Write as _};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use indicatif::ProgressBar;

use super::ToolError;
use super::args::VerifyArgs;
use super::hash::{Content, ContentFile};
use crate::metainfo::Metainfo;
use crate::untrusted::show;

/// What was found for one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileState {
    /// The right length, and every piece over it matches.
    Complete,
    /// Not there.
    Missing,
    /// There, but a folder or something else that is not a regular file.
    NotAFile,
    /// Fewer bytes than the torrent's file.
    Short {
        /// Its length on disk.
        have: u64,
    },
    /// More bytes than the torrent's file.
    Longer {
        /// Its length on disk.
        have: u64,
    },
    /// Its metadata could not be read (the error's text).
    Unreadable(String),
    /// The right length, but this many pieces over it fail their hash.
    BadPieces(u32),
}

/// One file's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileCheck {
    /// Its number in the torrent, from 1.
    pub index: usize,
    /// Its path below the torrent's folder (the name for a single file).
    pub path: String,
    /// Its length in the torrent.
    pub length: u64,
    /// What was found.
    pub state: FileState,
    /// How many pieces cover it.
    pub piece_count: u32,
}

impl fmt::Display for FileCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = if self.state == FileState::Complete {
            "complete"
        } else {
            "incomplete"
        };
        write!(f, "{status:<10} {:>5}  {}", self.index, show(&self.path))?;
        let want = self.length;
        match &self.state {
            FileState::Complete => Ok(()),
            FileState::Missing => write!(f, ": missing"),
            FileState::NotAFile => write!(f, ": not a regular file"),
            FileState::Short { have } => write!(f, ": short ({have} of {want} bytes)"),
            FileState::Longer { have } => {
                write!(
                    f,
                    ": longer than the torrent's file ({have} bytes, not {want})"
                )
            }
            FileState::Unreadable(e) => write!(f, ": cannot read it ({e})"),
            FileState::BadPieces(n) => write!(
                f,
                ": {n} bad piece{} of {}",
                if *n == 1 { "" } else { "s" },
                self.piece_count
            ),
        }
    }
}

/// The result of a check.
#[derive(Debug, Clone)]
pub struct Checked {
    /// Each file that is not padding, in the torrent's order.
    pub files: Vec<FileCheck>,
    /// How many pieces match their hash.
    pub good_pieces: u32,
    /// How many pieces there are.
    pub piece_count: u32,
}

impl Checked {
    /// Whether every file is complete and every piece matches.
    pub fn all_good(&self) -> bool {
        self.good_pieces == self.piece_count
            && self.files.iter().all(|f| f.state == FileState::Complete)
    }
}

/// Checks the content of `meta` at `root` (the file of a single-file
/// torrent, the folder of a multi-file one) on `threads` threads.
pub fn check(meta: &Metainfo, root: &Path, threads: usize, bar: &ProgressBar) -> Checked {
    let paths: Vec<Option<PathBuf>> = meta
        .files
        .iter()
        .map(|f| {
            (!f.padding).then(|| {
                if meta.multi_file {
                    root.join(&f.path)
                } else {
                    root.to_path_buf()
                }
            })
        })
        .collect();
    let mut states: Vec<Option<FileState>> = meta
        .files
        .iter()
        .zip(&paths)
        .map(|(entry, path)| {
            let path = path.as_ref()?;
            Some(match std::fs::metadata(path) {
                Err(e) if e.kind() == ErrorKind::NotFound => FileState::Missing,
                Err(e) => FileState::Unreadable(e.to_string()),
                Ok(m) if !m.is_file() => FileState::NotAFile,
                Ok(m) if m.len() < entry.length => FileState::Short { have: m.len() },
                Ok(m) if m.len() > entry.length => FileState::Longer { have: m.len() },
                Ok(_) => FileState::Complete,
            })
        })
        .collect();
    let content = Content::new(
        meta.files
            .iter()
            .zip(paths)
            .map(|(entry, path)| ContentFile {
                path,
                length: entry.length,
            })
            .collect(),
        meta.layout,
    );
    let mut bad = vec![0u32; meta.files.len()];
    let mut covering = vec![0u32; meta.files.len()];
    let mut good_pieces = 0;
    for (index, hash) in content.hash_pieces(threads, bar).into_iter().enumerate() {
        let index = index as u32;
        let good = hash.is_ok_and(|h| h == meta.piece_hashes[index as usize]);
        good_pieces += u32::from(good);
        for file in content.files_of_piece(index) {
            covering[file] += 1;
            bad[file] += u32::from(!good);
        }
    }
    let files = meta
        .files
        .iter()
        .enumerate()
        .filter_map(|(i, entry)| {
            let state = match states[i].take()? {
                FileState::Complete if bad[i] > 0 => FileState::BadPieces(bad[i]),
                state => state,
            };
            Some(FileCheck {
                index: i + 1,
                path: if meta.multi_file {
                    entry.path.to_string_lossy().into_owned()
                } else {
                    meta.name.clone()
                },
                length: entry.length,
                state,
                piece_count: covering[i],
            })
        })
        .collect();
    Checked {
        files,
        good_pieces,
        piece_count: meta.layout.piece_count(),
    }
}

/// Runs `bittorrent verify`: exit 0 when everything matches, 1 otherwise.
///
/// # Errors
/// A torrent that cannot be read or used, or a PATH that does not exist
/// or is a file where the torrent is a folder.
pub fn run(args: &VerifyArgs) -> Result<ExitCode, ToolError> {
    let meta = crate::session::load_torrent(&args.torrent).map_err(ToolError::wrap)?;
    let root = &args.path;
    let kind = std::fs::metadata(root)
        .map_err(|e| ToolError::caused(format!("cannot read {}", root.display()), e))?;
    if meta.multi_file && !kind.is_dir() {
        return Err(ToolError::new(format!(
            "{} is not a folder, but the torrent is a folder of {} files: give the folder",
            root.display(),
            meta.files.len()
        )));
    }
    super::emit(&format!(
        "verifying {} at {}: {} file{}, {} pieces\n",
        show(&meta.name),
        root.display(),
        meta.files.len(),
        if meta.files.len() == 1 { "" } else { "s" },
        meta.layout.piece_count()
    ))?;
    let bar = super::byte_bar("verifying", meta.total_len());
    let checked = check(&meta, root, super::hash_threads(), &bar);
    bar.finish_and_clear();
    let mut text = String::new();
    for file in &checked.files {
        let _ = writeln!(text, "{file}");
    }
    let complete = checked
        .files
        .iter()
        .filter(|f| f.state == FileState::Complete)
        .count();
    let _ = writeln!(
        text,
        "{complete} of {} files complete; {} of {} pieces match",
        checked.files.len(),
        checked.good_pieces,
        checked.piece_count
    );
    if checked.all_good() {
        let _ = writeln!(text, "ok: the content matches the torrent");
    }
    super::emit(&text)?;
    Ok(if checked.all_good() {
        ExitCode::SUCCESS
    } else {
        eprintln!("the content does not match the torrent");
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha1::{Digest, Sha1};

    /// A multi-file torrent `root` of `a` (10 bytes), a BEP 47 padding
    /// file to the piece boundary and `b` (5 bytes), in 16 KiB pieces.
    fn padded() -> (Metainfo, Vec<u8>, Vec<u8>) {
        let (a, b) = (vec![1u8; 10], vec![2u8; 5]);
        let mut first = a.clone();
        first.resize(16384, 0);
        let mut pieces = Sha1::digest(&first).to_vec();
        pieces.extend_from_slice(&Sha1::digest(&b));
        let mut info = b"d5:filesl\
d6:lengthi10e4:pathl1:aee\
d4:attr1:p6:lengthi16374e4:pathl4:.pad5:16374ee\
d6:lengthi5e4:pathl1:bee\
e4:name4:root12:piece lengthi16384e6:pieces40:"
            .to_vec();
        info.extend_from_slice(&pieces);
        info.push(b'e');
        let meta = Metainfo::from_info_bytes(&info, vec![]).unwrap();
        (meta, a, b)
    }

    #[test]
    fn padding_files_are_zeros_never_looked_for_on_disk() {
        let (meta, a, b) = padded();
        assert!(meta.files[1].padding);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), &a).unwrap();
        std::fs::write(dir.path().join("b"), &b).unwrap();
        let checked = check(&meta, dir.path(), 2, &ProgressBar::hidden());
        assert!(checked.all_good(), "{checked:?}");
        let listed: Vec<(usize, &str)> = checked
            .files
            .iter()
            .map(|f| (f.index, f.path.as_str()))
            .collect();
        assert_eq!(
            listed,
            [(1, "a"), (3, "b")],
            "the padding file is not listed"
        );

        std::fs::write(dir.path().join("b"), b"22x22").unwrap();
        let checked = check(&meta, dir.path(), 2, &ProgressBar::hidden());
        assert!(!checked.all_good());
        assert_eq!(checked.files[0].state, FileState::Complete);
        assert_eq!(checked.files[1].state, FileState::BadPieces(1));
        assert_eq!(checked.good_pieces, 1);
        assert_eq!(
            checked.files[1].to_string(),
            "incomplete     3  b: 1 bad piece of 1"
        );
    }
}
