//! `bittorrent create`: a .torrent of a file or a folder.
//!
//! The files come from [`super::walk`] (its rules are the ones `--help`
//! states), their pieces are hashed on every core ([`super::hash`]), and
//! the torrent is written with [`crate::bencode`]'s writers, keys in
//! sorted order as BEP 3 asks. The `info` dictionary holds what mktorrent
//! puts there and nothing else (`files` or `length`, `name`, `piece
//! length`, `pieces`, then `private` and `source` when asked), so the same
//! content, piece length, private flag and source give mktorrent's
//! info-hash. The written file is read back with [`Metainfo::from_bytes`],
//! which gives the info-hash and checks what we wrote.

use std::fmt::Write as _;
use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use indicatif::HumanBytes;

use super::ToolError;
use super::args::CreateArgs;
use super::hash::{Content, ContentFile};
use super::walk::{Walked, walk};
use crate::bencode::{put_bytes, put_int};
use crate::layout::Layout;
use crate::magnet::Magnet;
use crate::metainfo::Metainfo;

/// Smallest piece length: one block (16 KiB).
pub const MIN_PIECE_LEN: u64 = 16 * 1024;
/// Largest piece length chosen automatically: 16 MiB.
pub const MAX_AUTO_PIECE_LEN: u64 = 16 * 1024 * 1024;
/// Largest piece length `--piece-length` takes: what
/// [`crate::metainfo`] accepts.
pub const MAX_PIECE_LEN: u64 = 64 * 1024 * 1024;
/// The most pieces an automatic piece length gives, unless it is clamped
/// at [`MAX_AUTO_PIECE_LEN`].
pub const TARGET_MAX_PIECES: u64 = 2000;

/// The piece length for `total_len` bytes when none is given: the smallest
/// power of two that makes at most [`TARGET_MAX_PIECES`] pieces (so more
/// than half as many, 1,000 to 2,000), within [`MIN_PIECE_LEN`] and
/// [`MAX_AUTO_PIECE_LEN`].
pub fn auto_piece_len(total_len: u64) -> u64 {
    total_len
        .div_ceil(TARGET_MAX_PIECES)
        .next_power_of_two()
        .clamp(MIN_PIECE_LEN, MAX_AUTO_PIECE_LEN)
}

/// Parses `--piece-length`: bytes, or a number with K, KiB, M or MiB (all
/// powers of 1024), which must be a power of two from [`MIN_PIECE_LEN`] to
/// [`MAX_PIECE_LEN`].
///
/// # Errors
/// A message saying what is wrong with `text`.
pub fn parse_piece_len(text: &str) -> Result<u64, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let scale = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1024,
        "m" | "mb" | "mib" => 1024 * 1024,
        _ => return Err(format!("unknown unit {unit:?} (use K, KiB, M or MiB)")),
    };
    let value = digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .ok_or_else(|| format!("{text:?} is not a size"))?;
    if !value.is_power_of_two() || !(MIN_PIECE_LEN..=MAX_PIECE_LEN).contains(&value) {
        return Err(format!(
            "{value} bytes: a piece length is a power of two from 16KiB to 64MiB"
        ));
    }
    Ok(value)
}

/// What goes in a torrent besides its files.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Announce URLs, one tier each.
    pub trackers: Vec<String>,
    /// BEP 27's `private` = 1.
    pub private: bool,
    /// The top-level `comment`.
    pub comment: Option<String>,
    /// The info dictionary's `source`.
    pub source: Option<String>,
    /// BEP 19 `url-list`.
    pub web_seeds: Vec<String>,
    /// The `creation date` (seconds since 1970), if any.
    pub creation_date: Option<i64>,
}

/// The bytes of the `info` dictionary for `walked` in pieces of
/// `piece_len` with `hashes` (keys in sorted order, as mktorrent writes
/// them).
pub fn info_dict(
    walked: &Walked,
    piece_len: u64,
    hashes: &[[u8; 20]],
    options: &Options,
) -> Vec<u8> {
    let mut out = vec![b'd'];
    if walked.multi_file {
        put_bytes(&mut out, b"files");
        out.push(b'l');
        for file in &walked.files {
            out.push(b'd');
            put_bytes(&mut out, b"length");
            put_int(&mut out, file.length as i64);
            put_bytes(&mut out, b"path");
            out.push(b'l');
            for component in &file.components {
                put_bytes(&mut out, component.as_bytes());
            }
            out.extend_from_slice(b"ee");
        }
        out.push(b'e');
    } else {
        put_bytes(&mut out, b"length");
        put_int(&mut out, walked.files[0].length as i64);
    }
    put_bytes(&mut out, b"name");
    put_bytes(&mut out, walked.name.as_bytes());
    put_bytes(&mut out, b"piece length");
    put_int(&mut out, piece_len as i64);
    put_bytes(&mut out, b"pieces");
    put_bytes(&mut out, hashes.concat().as_slice());
    if options.private {
        put_bytes(&mut out, b"private");
        put_int(&mut out, 1);
    }
    if let Some(source) = &options.source {
        put_bytes(&mut out, b"source");
        put_bytes(&mut out, source.as_bytes());
    }
    out.push(b'e');
    out
}

/// The bytes of the .torrent: `announce` (the first tracker),
/// `announce-list` (one tier per tracker, when there are several, as
/// mktorrent writes it), `comment`, `created by`, `creation date`, `info`
/// and `url-list`, in that (sorted) order.
pub fn torrent_file(info: &[u8], options: &Options) -> Vec<u8> {
    let mut out = vec![b'd'];
    if let Some(first) = options.trackers.first() {
        put_bytes(&mut out, b"announce");
        put_bytes(&mut out, first.as_bytes());
    }
    if options.trackers.len() > 1 {
        put_bytes(&mut out, b"announce-list");
        out.push(b'l');
        for url in &options.trackers {
            out.push(b'l');
            put_bytes(&mut out, url.as_bytes());
            out.push(b'e');
        }
        out.push(b'e');
    }
    if let Some(comment) = &options.comment {
        put_bytes(&mut out, b"comment");
        put_bytes(&mut out, comment.as_bytes());
    }
    put_bytes(&mut out, b"created by");
    put_bytes(
        &mut out,
        concat!("bittorrent ", env!("CARGO_PKG_VERSION")).as_bytes(),
    );
    if let Some(date) = options.creation_date {
        put_bytes(&mut out, b"creation date");
        put_int(&mut out, date);
    }
    put_bytes(&mut out, b"info");
    out.extend_from_slice(info);
    if !options.web_seeds.is_empty() {
        put_bytes(&mut out, b"url-list");
        out.push(b'l');
        for url in &options.web_seeds {
            put_bytes(&mut out, url.as_bytes());
        }
        out.push(b'e');
    }
    out.push(b'e');
    out
}

/// Runs `bittorrent create`.
///
/// # Errors
/// An existing OUT without `--force`, or any failure to list,
/// read or write, each naming the path.
pub fn run(args: &CreateArgs) -> Result<ExitCode, ToolError> {
    let walked = walk(&args.path)?;
    let out_path = args
        .output
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{}.torrent", walked.name)));
    // Checked before hours of hashing; the write below checks again.
    if let Ok(existing) = fs::metadata(&out_path) {
        if existing.is_dir() {
            return Err(ToolError::new(format!(
                "{} is a folder; give the .torrent's file name with -o",
                out_path.display()
            )));
        }
        if walked.ids.contains(&(existing.dev(), existing.ino())) {
            return Err(ToolError::new(format!(
                "{} is one of the files the torrent lists; write it elsewhere with -o",
                out_path.display()
            )));
        }
        if !args.force {
            return Err(ToolError::new(format!(
                "{} exists; give --force to write over it",
                out_path.display()
            )));
        }
    }
    for folder in &walked.empty_folders {
        eprintln!(
            "note: the empty folder {} is not in the torrent (a torrent lists files only)",
            folder.display()
        );
    }
    let total_len = walked.total_len();
    if total_len == 0 {
        return Err(ToolError::new(format!(
            "{} holds no data (every file is empty): a torrent needs at least one byte",
            args.path.display()
        )));
    }
    let piece_len = args
        .piece_length
        .unwrap_or_else(|| auto_piece_len(total_len));
    let layout = Layout::new(total_len, piece_len)
        .map_err(|e| ToolError::caused("cannot cut the content into pieces", e))?;
    let content = Content::new(
        walked
            .files
            .iter()
            .map(|f| ContentFile {
                path: Some(f.path.clone()),
                length: f.length,
            })
            .collect(),
        layout,
    );
    let bar = super::byte_bar("hashing", total_len);
    let hashes = content.hash_all(super::hash_threads(), &bar).map_err(|e| {
        let path = &walked.files[e.file].path;
        if e.source.kind() == std::io::ErrorKind::UnexpectedEof {
            ToolError::new(format!(
                "{} got shorter while it was hashed",
                path.display()
            ))
        } else {
            ToolError::caused(format!("cannot read {}", path.display()), e.source)
        }
    })?;
    bar.finish_and_clear();
    for file in &walked.files {
        let now = fs::metadata(&file.path).map(|m| m.len()).ok();
        if now != Some(file.length) {
            return Err(ToolError::new(format!(
                "{} changed while it was hashed ({} bytes, now {})",
                file.path.display(),
                file.length,
                now.map_or_else(|| "gone".to_string(), |n| format!("{n} bytes"))
            )));
        }
    }

    let options = Options {
        trackers: args.trackers.clone(),
        private: args.private,
        comment: args.comment.clone(),
        source: args.source.clone(),
        web_seeds: args.web_seeds.clone(),
        creation_date: (!args.no_date).then(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64)
        }),
    };
    let info = info_dict(&walked, piece_len, &hashes, &options);
    let bytes = torrent_file(&info, &options);
    let meta = Metainfo::from_bytes(&bytes)
        .map_err(|e| ToolError::caused("the torrent made does not load (a bug)", e))?;
    write_out(&out_path, &bytes, args.force)?;

    let files = walked.files.len();
    let mut text = String::new();
    let _ = writeln!(
        text,
        "created {}: {} ({} file{}, {} in {} pieces of {})",
        out_path.display(),
        walked.name,
        files,
        if files == 1 { "" } else { "s" },
        HumanBytes(total_len),
        layout.piece_count(),
        HumanBytes(piece_len)
    );
    let _ = writeln!(text, "info-hash: {}", meta.info_hash);
    let magnet = Magnet {
        info_hash: meta.info_hash,
        name: Some(walked.name.clone()),
        trackers: args.trackers.clone(),
        peers: Vec::new(),
    };
    let _ = writeln!(text, "magnet: {}", magnet.to_uri());
    super::emit(&text)?;
    Ok(ExitCode::SUCCESS)
}

/// Writes `bytes` to `path`: a new file, or over an existing one when
/// `force` is given.
fn write_out(path: &std::path::Path, bytes: &[u8], force: bool) -> Result<(), ToolError> {
    let mut options = fs::OpenOptions::new();
    options.write(true);
    if force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let mut file = options.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            ToolError::new(format!(
                "{} exists; give --force to write over it",
                path.display()
            ))
        } else {
            ToolError::caused(format!("cannot write {}", path.display()), e)
        }
    })?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| ToolError::caused(format!("cannot write {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KIB: u64 = 1024;
    const MIB: u64 = 1024 * KIB;
    const GIB: u64 = 1024 * MIB;

    #[test]
    fn auto_piece_lengths_give_1000_to_2000_pieces_within_16kib_and_16mib() {
        // (total length, piece length)
        let table = [
            (1, 16 * KIB),
            (200_003, 16 * KIB),
            (31 * MIB, 16 * KIB),
            (32 * MIB, 32 * KIB),
            (700 * MIB, 512 * KIB),
            (GIB, MIB),
            (4 * GIB + 1, 4 * MIB),
            (32 * GIB, 16 * MIB),
            (500 * GIB, 16 * MIB),
        ];
        for (total, want) in table {
            let got = auto_piece_len(total);
            assert_eq!(got, want, "{total} bytes");
            let pieces = total.div_ceil(got);
            if got > MIN_PIECE_LEN && got < MAX_AUTO_PIECE_LEN {
                assert!((1000..=2000).contains(&pieces), "{total}: {pieces} pieces");
            }
        }
    }

    #[test]
    fn piece_lengths_take_units_and_must_be_powers_of_two_in_range() {
        assert_eq!(parse_piece_len("16384"), Ok(16 * KIB));
        assert_eq!(parse_piece_len("256K"), Ok(256 * KIB));
        assert_eq!(parse_piece_len("256KiB"), Ok(256 * KIB));
        assert_eq!(parse_piece_len("4M"), Ok(4 * MIB));
        assert_eq!(parse_piece_len("64mib"), Ok(64 * MIB));
        for bad in ["8K", "128M", "100000", "3M", "0", "", "1.5M", "4Q", "K"] {
            assert!(parse_piece_len(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_torrent_file_has_sorted_keys_and_one_tier_per_tracker() {
        let options = Options {
            trackers: vec!["http://a/announce".into(), "udp://b:1".into()],
            comment: Some("hi".into()),
            web_seeds: vec!["http://w/".into()],
            creation_date: Some(1_700_000_000),
            ..Options::default()
        };
        let bytes = torrent_file(b"d4:name1:xe", &options);
        let text = String::from_utf8(bytes).unwrap();
        let name = concat!("bittorrent ", env!("CARGO_PKG_VERSION"));
        let created_by = format!("{}:{name}", name.len());
        assert_eq!(
            text,
            concat!(
                "d8:announce17:http://a/announce",
                "13:announce-listll17:http://a/announceel9:udp://b:1ee",
                "7:comment2:hi",
                "10:created by",
                "{created_by}",
                "13:creation datei1700000000e",
                "4:infod4:name1:xe",
                "8:url-listl9:http://w/e",
                "e"
            )
            .replace("{created_by}", &created_by)
        );
        let one = torrent_file(
            b"de",
            &Options {
                trackers: vec!["http://a/announce".into()],
                ..Options::default()
            },
        );
        assert!(!String::from_utf8(one).unwrap().contains("announce-list"));
    }
}
