//! `bittorrent info`: what a .torrent or a magnet link holds, as text or
//! as one JSON object.
//!
//! A .torrent is loaded as a download loads it ([`crate::session::load_torrent`]:
//! a regular file of at most 16 MiB, validated by [`crate::metainfo`]); the
//! keys the client itself does not use (`creation date`, `created by`,
//! `comment`, `url-list`, `info.source`) are read in place with
//! [`crate::bencode`]. Text from the torrent is escaped
//! ([`crate::untrusted::show`]) before it reaches a terminal; JSON escapes
//! it by its own rules.
//!
//! The JSON field names are stable (snake_case): `kind` (`"torrent"` or
//! `"magnet"`), `name`, `info_hash`, `total_size`, `piece_length`,
//! `piece_count`, `private`, `trackers` (a list of tiers, each a list of
//! URLs), `web_seeds`, `creation_date` (seconds since 1970), `created_by`,
//! `comment`, `source`, `files` (each `index` from 1, `path` with `/`,
//! `size`, `padding`), `peers` (a magnet's `x.pe`) and `magnet`. What a
//! magnet does not carry is `null` (or an empty list).

use std::path::Path;
use std::process::ExitCode;

use indicatif::HumanBytes;
use serde::Serialize;

use super::ToolError;
use super::args::InfoArgs;
use crate::bencode;
use crate::magnet::Magnet;
use crate::metainfo::Metainfo;
use crate::untrusted::show;

/// What `info` shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// `"torrent"` or `"magnet"`.
    pub kind: &'static str,
    /// The torrent's name (a magnet's `dn`, if any).
    pub name: Option<String>,
    /// The info-hash, 40 lowercase hex digits.
    pub info_hash: String,
    /// Total length of the content in bytes.
    pub total_size: Option<u64>,
    /// Piece length in bytes.
    pub piece_length: Option<u32>,
    /// Number of pieces.
    pub piece_count: Option<u32>,
    /// BEP 27's private flag.
    pub private: Option<bool>,
    /// Tracker tiers (a magnet's `tr` are a tier each, as a download uses them).
    pub trackers: Vec<Vec<String>>,
    /// BEP 19 web seeds (`url-list`).
    pub web_seeds: Vec<String>,
    /// `creation date`, seconds since 1970.
    pub creation_date: Option<i64>,
    /// `created by`.
    pub created_by: Option<String>,
    /// `comment`.
    pub comment: Option<String>,
    /// `info.source`.
    pub source: Option<String>,
    /// The files in the torrent's order.
    pub files: Vec<FileReport>,
    /// A magnet's peers (`x.pe`).
    pub peers: Vec<String>,
    /// A magnet link for the torrent.
    pub magnet: String,
}

/// One file of a torrent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileReport {
    /// Its number, from 1, in the torrent's order.
    pub index: usize,
    /// Its path below the torrent's folder, `/` between components (the
    /// name itself for a single-file torrent).
    pub path: String,
    /// Its length in bytes.
    pub size: u64,
    /// A BEP 47 padding file (never written to disk).
    pub padding: bool,
}

/// The report for a loaded torrent, whose file bytes are `bytes`.
pub fn torrent_report(meta: &Metainfo, bytes: &[u8]) -> Report {
    let top = bencode::dict_entries(bytes, 0, bencode::MAX_DEPTH)
        .map(|(entries, _)| entries)
        .unwrap_or_default();
    let value = |key: &[u8]| {
        top.iter()
            .find(|(k, _)| *k == key)
            .map(|(_, range)| &bytes[range.clone()])
    };
    let text = |key: &[u8]| {
        value(key)
            .and_then(bencode::as_bytes)
            .map(|b| String::from_utf8_lossy(b).into_owned())
    };
    let web_seeds = match value(b"url-list") {
        Some(raw) if raw.first() == Some(&b'l') => bencode::list_items(raw, 0)
            .map(|(items, _)| {
                items
                    .into_iter()
                    .filter_map(|r| bencode::as_bytes(&raw[r]))
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .collect()
            })
            .unwrap_or_default(),
        Some(raw) => bencode::as_bytes(raw)
            .filter(|b| !b.is_empty())
            .map(|b| vec![String::from_utf8_lossy(b).into_owned()])
            .unwrap_or_default(),
        None => Vec::new(),
    };
    let source = bencode::dict_entries(&meta.info_bytes, 0, bencode::MAX_DEPTH)
        .ok()
        .and_then(|(entries, _)| {
            let (_, range) = entries.into_iter().find(|(k, _)| *k == b"source")?;
            bencode::as_bytes(&meta.info_bytes[range])
                .map(|b| String::from_utf8_lossy(b).into_owned())
        });
    let files = meta
        .files
        .iter()
        .enumerate()
        .map(|(i, f)| FileReport {
            index: i + 1,
            path: if meta.multi_file {
                f.path
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy())
                    .collect::<Vec<_>>()
                    .join("/")
            } else {
                meta.name.clone()
            },
            size: f.length,
            padding: f.padding,
        })
        .collect();
    let magnet = Magnet {
        info_hash: meta.info_hash,
        name: Some(meta.name.clone()),
        trackers: unique(meta.trackers.iter().flatten()),
        peers: Vec::new(),
    };
    Report {
        kind: "torrent",
        name: Some(meta.name.clone()),
        info_hash: meta.info_hash.to_string(),
        total_size: Some(meta.total_len()),
        piece_length: Some(meta.layout.piece_len()),
        piece_count: Some(meta.layout.piece_count()),
        private: Some(meta.private),
        trackers: meta.trackers.clone(),
        web_seeds,
        creation_date: value(b"creation date").and_then(bencode::as_int),
        created_by: text(b"created by"),
        comment: text(b"comment"),
        source,
        files,
        peers: Vec::new(),
        magnet: magnet.to_uri(),
    }
}

/// The report for a magnet link: what it carries.
pub fn magnet_report(magnet: &Magnet) -> Report {
    Report {
        kind: "magnet",
        name: magnet.name.clone(),
        info_hash: magnet.info_hash.to_string(),
        total_size: None,
        piece_length: None,
        piece_count: None,
        private: None,
        trackers: magnet.trackers.iter().map(|t| vec![t.clone()]).collect(),
        web_seeds: Vec::new(),
        creation_date: None,
        created_by: None,
        comment: None,
        source: None,
        files: Vec::new(),
        peers: magnet.peers.clone(),
        magnet: magnet.to_uri(),
    }
}

fn unique<'a>(urls: impl Iterator<Item = &'a String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for url in urls {
        if !out.contains(url) {
            out.push(url.clone());
        }
    }
    out
}

/// Runs `bittorrent info`.
///
/// # Errors
/// A malformed magnet link (a usage error, as for a download), or a torrent file that cannot be read or is
/// not a valid torrent.
pub fn run(args: &InfoArgs) -> Result<ExitCode, ToolError> {
    let report = if Magnet::is_magnet(&args.input) {
        let magnet = Magnet::parse(&args.input).map_err(|e| {
            ToolError::caused(format!("invalid magnet link {}", show(&args.input)), e).usage()
        })?;
        magnet_report(&magnet)
    } else {
        let path = Path::new(&args.input);
        // The same checks as a download's (a regular file, 16 MiB at most).
        crate::session::load_torrent(path).map_err(ToolError::wrap)?;
        let bytes = std::fs::read(path).map_err(|e| {
            ToolError::caused(format!("cannot read torrent file {}", path.display()), e)
        })?;
        let meta = Metainfo::from_bytes(&bytes).map_err(|e| {
            ToolError::caused(format!("cannot use torrent file {}", path.display()), e)
        })?;
        torrent_report(&meta, &bytes)
    };
    if args.json {
        let json = serde_json::to_string_pretty(&report)
            .map_err(|e| ToolError::caused("cannot write JSON", e))?;
        super::emit(&format!("{json}\n"))?;
    } else {
        super::emit(&text(&report))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The report as text for a terminal: one `label: value` line each, the
/// trackers by tier, and the files as a tree with their indexes and sizes.
pub fn text(report: &Report) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let mut line = |label: &str, value: &str| {
        let _ = writeln!(out, "{:<12}{value}", format!("{label}:"));
    };
    line(
        "name",
        &report.name.as_deref().map_or("(none)".into(), show),
    );
    line("info-hash", &report.info_hash);
    if let (Some(total), Some(len), Some(count)) =
        (report.total_size, report.piece_length, report.piece_count)
    {
        line("size", &format!("{} ({total} bytes)", HumanBytes(total)));
        line(
            "pieces",
            &format!("{count} of {} ({len} bytes)", HumanBytes(u64::from(len))),
        );
    }
    if let Some(private) = report.private {
        line("private", if private { "yes" } else { "no" });
    }
    if report.trackers.is_empty() {
        line("trackers", "(none)");
    }
    for (i, tier) in report.trackers.iter().enumerate() {
        let urls: Vec<String> = tier.iter().map(|u| show(u)).collect();
        line(&format!("tier {}", i + 1), &urls.join(" "));
    }
    for url in &report.web_seeds {
        line("web seed", &show(url));
    }
    for peer in &report.peers {
        line("peer", &show(peer));
    }
    if let Some(date) = report.creation_date {
        line("created", &format!("{} ({date})", utc_date(date)));
    }
    let optional = [
        ("created by", &report.created_by),
        ("comment", &report.comment),
        ("source", &report.source),
    ];
    for (label, value) in optional {
        if let Some(value) = value {
            line(label, &show(value));
        }
    }
    line("magnet", &report.magnet);
    if report.kind == "magnet" {
        out.push_str("files:      (not in a magnet link: they come with the metadata)\n");
        return out;
    }
    let _ = writeln!(out, "files:      {}", report.files.len());
    let mut folder: Vec<&str> = Vec::new();
    for file in &report.files {
        let parts: Vec<&str> = file.path.split('/').collect();
        let (name, dirs) = parts.split_last().expect("split gives one part at least");
        let same = folder.iter().zip(dirs).take_while(|(a, b)| a == b).count();
        for (depth, dir) in dirs.iter().enumerate().skip(same) {
            let _ = writeln!(out, "{:>18}  {}{}/", "", "  ".repeat(depth), show(dir));
        }
        folder = dirs.to_vec();
        let padding = if file.padding { " (padding)" } else { "" };
        let _ = writeln!(
            out,
            "{:>5} {:>12}  {}{}{padding}",
            file.index,
            HumanBytes(file.size).to_string(),
            "  ".repeat(dirs.len()),
            show(name)
        );
    }
    out
}

/// `seconds` since 1970 as a UTC date and time, `2023-11-14 22:13:20 UTC`.
fn utc_date(seconds: i64) -> String {
    let days = seconds.div_euclid(86_400);
    let secs = seconds.rem_euclid(86_400);
    // Days to a civil date (proleptic Gregorian), by eras of 400 years.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_shown_in_utc() {
        assert_eq!(utc_date(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc_date(1_700_000_000), "2023-11-14 22:13:20 UTC");
        assert_eq!(utc_date(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc_date(-1), "1969-12-31 23:59:59 UTC");
    }

    #[test]
    fn a_torrent_s_extra_keys_and_nested_files_are_reported() {
        let info = b"d5:filesld6:lengthi3e4:pathl1:a1:b1:cee\
d6:lengthi2e4:pathl1:a1:deed6:lengthi1e4:pathl1:eeee\
4:name4:root12:piece lengthi16384e6:pieces20:aaaaaaaaaaaaaaaaaaaa6:source3:srce";
        let mut bytes =
            b"d8:announce8:http://a7:comment5:hello10:created by2:me13:creation datei5e4:info"
                .to_vec();
        bytes.extend_from_slice(info);
        bytes.extend_from_slice(b"8:url-list8:http://we");
        let meta = Metainfo::from_bytes(&bytes).unwrap();
        let report = torrent_report(&meta, &bytes);
        assert_eq!(report.comment.as_deref(), Some("hello"));
        assert_eq!(report.created_by.as_deref(), Some("me"));
        assert_eq!(report.creation_date, Some(5));
        assert_eq!(report.source.as_deref(), Some("src"));
        assert_eq!(report.web_seeds, ["http://w"]);
        assert_eq!(report.trackers, [["http://a"]]);
        let paths: Vec<(usize, &str)> = report
            .files
            .iter()
            .map(|f| (f.index, f.path.as_str()))
            .collect();
        assert_eq!(paths, [(1, "a/b/c"), (2, "a/d"), (3, "e")]);
        let shown = text(&report);
        let tree: Vec<&str> = shown
            .lines()
            .skip_while(|l| !l.starts_with("files:"))
            .skip(1)
            .map(str::trim_end)
            .collect();
        assert_eq!(
            tree,
            [
                "                    a/",
                "                      b/",
                "    1          3 B      c",
                "    2          2 B    d",
                "    3          1 B  e",
            ]
        );
    }

    #[test]
    fn names_with_escapes_are_shown_escaped() {
        let magnet = Magnet::parse(
            "magnet:?xt=urn:btih:0123456789abcdef0123456789abcdef01234567&dn=a%1B%5B2Jb",
        )
        .unwrap();
        let shown = text(&magnet_report(&magnet));
        assert!(!shown.contains('\x1b'), "{shown}");
        assert!(shown.contains("a\\u{1b}[2Jb"), "{shown}");
    }
}
