//! Choosing which of a torrent's files a download fetches (`--files`,
//! `--exclude`), and what follows from the choice: which pieces are
//! wanted, and where the bytes of unselected files that share a wanted
//! piece are kept (the part file). Pure code: no I/O.
//!
//! A piece is verified by the SHA-1 of all its bytes, so a wanted piece
//! that also holds the first or last bytes of a file the user did not ask
//! for is fetched whole; those bytes must be kept to check the piece again
//! on resume, but never in a file the user did not choose. They go to the
//! part file, `DEST/.NAME.parts` (made by [`crate::storage`] only when some
//! wanted piece needs it). Its layout depends on the torrent alone, not on
//! the selection, so a later run with another selection finds what an
//! earlier one kept: the pieces that hold bytes of two or more files (the
//! *boundary pieces*, at most one per file) are numbered in index order,
//! and boundary piece `k` has a slot of one piece length at offset
//! `k × piece length`, where its bytes sit at their offset in the piece.
//! Only the bytes of unselected files are written there; the rest of a
//! slot is a hole (the file is sparse where the file system allows). A
//! file selected by a later run, created empty, first gets back what the
//! part file kept of it ([`crate::storage`]), so its shared pieces verify
//! without a new fetch.
//!
//! Out of scope: opening, reading and writing the files ([`crate::storage`]).

use std::fmt;
use std::ops::RangeInclusive;

use glob::Pattern;

use crate::layout::{FileSpan, Layout, segments};
use crate::metainfo::Metainfo;

/// The files a download asks for: `--files` indexes (counted from 1, in
/// the torrent's file order) and `--exclude` patterns. The default is
/// every file.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// `--files`: the ranges of indexes chosen, or `None` for every file.
    files: Option<Vec<RangeInclusive<usize>>>,
    /// `--exclude`: files whose path matches any of these are left out.
    exclude: Vec<Pattern>,
}

/// Why a selection cannot be applied to a torrent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectionError(String);

impl fmt::Display for SelectionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SelectionError {}

impl Selection {
    /// Every file.
    pub fn all() -> Selection {
        Selection::default()
    }

    /// The selection `--files LIST` (if given) and `--exclude GLOB`...
    /// describe.
    ///
    /// # Errors
    /// A message naming the malformed list or pattern.
    pub fn new(files: Option<&str>, exclude: &[String]) -> Result<Selection, String> {
        let files = files.map(parse_file_list).transpose()?;
        let exclude = exclude
            .iter()
            .map(|text| {
                Pattern::new(text).map_err(|e| format!("bad --exclude pattern {text:?}: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Selection { files, exclude })
    }

    /// Whether this is every file (no `--files`, no `--exclude`).
    pub fn is_all(&self) -> bool {
        self.files.is_none() && self.exclude.is_empty()
    }

    /// Whether `--files` was given.
    pub fn has_file_list(&self) -> bool {
        self.files.is_some()
    }

    /// Which files of a torrent are selected, given each file's path
    /// inside the torrent (`/` between folders) and whether it is a BEP 47
    /// padding file (never counted as a choice).
    ///
    /// # Errors
    /// An index past the last file, or a selection of no file at all.
    pub fn resolve(&self, files: &[(String, bool)]) -> Result<Vec<bool>, SelectionError> {
        let count = files.len();
        let mut selected = vec![true; count];
        if let Some(ranges) = &self.files {
            if let Some(past) = ranges.iter().map(|r| *r.end()).find(|&end| end > count) {
                let plural = if count == 1 { "" } else { "s" };
                return Err(SelectionError(format!(
                    "--files: there is no file {past}: the torrent has {count} file{plural}, numbered from 1"
                )));
            }
            for (i, chosen) in selected.iter_mut().enumerate() {
                *chosen = ranges.iter().any(|r| r.contains(&(i + 1)));
            }
        }
        for ((path, padding), chosen) in files.iter().zip(&mut selected) {
            // A padding file (BEP 47) holds no content of its own: with a
            // choice of files it is never fetched for itself, or a file
            // left out would still have its last piece fetched for the
            // padding after it.
            if *padding || (*chosen && self.exclude.iter().any(|p| p.matches(path))) {
                *chosen = false;
            }
        }
        let any = files
            .iter()
            .zip(&selected)
            .any(|((_, padding), &chosen)| chosen && !padding);
        if !any {
            return Err(SelectionError(
                "the selection leaves no file to download (see --files and --exclude)".into(),
            ));
        }
        Ok(selected)
    }

    /// Which files of `meta` are selected ([`Selection::resolve`] over its
    /// paths).
    ///
    /// # Errors
    /// As [`Selection::resolve`].
    pub fn resolve_for(&self, meta: &Metainfo) -> Result<Vec<bool>, SelectionError> {
        if self.is_all() {
            return Ok(vec![true; meta.files.len()]);
        }
        let files: Vec<(String, bool)> = (0..meta.files.len())
            .map(|i| (file_path(meta, i), meta.files[i].padding))
            .collect();
        self.resolve(&files)
    }
}

/// The path of file `index` inside the torrent, as `--exclude` matches it:
/// its folders and name joined by `/` (the torrent's name for a
/// single-file torrent).
pub fn file_path(meta: &Metainfo, index: usize) -> String {
    if !meta.multi_file {
        return meta.name.clone();
    }
    meta.files[index]
        .path
        .components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// Parses a `--files` list: indexes from 1 and ranges `A-B`, separated by
/// commas (`1,3-5`).
///
/// # Errors
/// A message naming the part that is not an index or a range.
pub fn parse_file_list(text: &str) -> Result<Vec<RangeInclusive<usize>>, String> {
    let bad = |part: &str, why: &str| format!("bad --files {text:?}: {part:?} {why}");
    let index = |part: &str, number: &str| -> Result<usize, String> {
        let number = number.trim();
        if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad(part, "is not an index or a range like 3-5"));
        }
        match number.parse::<usize>() {
            Ok(0) => Err(bad(part, "is not a file index: files are numbered from 1")),
            Ok(n) => Ok(n),
            Err(_) => Err(bad(part, "is too large")),
        }
    };
    let mut ranges = Vec::new();
    for part in text.split(',') {
        let range = match part.split_once('-') {
            Some((first, last)) => {
                let (first, last) = (index(part, first)?, index(part, last)?);
                if first > last {
                    return Err(bad(part, "is a range that ends before it starts"));
                }
                first..=last
            }
            None => {
                let n = index(part, part)?;
                n..=n
            }
        };
        ranges.push(range);
    }
    Ok(ranges)
}

/// Which pieces hold bytes of a selected file (`selected[i]` for file
/// `i`, laid out as `spans`): the pieces to fetch. Padding files and
/// zero-length files need none.
pub fn wanted_pieces(layout: &Layout, spans: &[FileSpan], selected: &[bool]) -> Vec<bool> {
    let mut wanted = vec![false; layout.piece_count() as usize];
    let piece_len = u64::from(layout.piece_len());
    for (span, _) in spans
        .iter()
        .zip(selected)
        .filter(|(s, chosen)| **chosen && s.length > 0)
    {
        let first = span.offset / piece_len;
        let last = (span.offset + span.length - 1) / piece_len;
        wanted[first as usize..=last as usize].fill(true);
    }
    wanted
}

/// Where a part of a content range lies in the part file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartSpan {
    /// Offset in the part file.
    pub part_offset: u64,
    /// Offset inside the content range where this part starts.
    pub range_offset: usize,
    /// Number of bytes.
    pub len: usize,
}

/// The layout of the part file: a slot per boundary piece (see the module
/// docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartMap {
    layout: Layout,
    /// The boundary pieces, in index order: slot `k` is `slots[k]`'s.
    slots: Vec<u32>,
}

impl PartMap {
    /// The part file's layout for files laid out as `spans`.
    pub fn new(layout: &Layout, spans: &[FileSpan]) -> PartMap {
        let piece_len = u64::from(layout.piece_len());
        let mut slots: Vec<u32> = Vec::new();
        // A piece holds bytes of two files exactly when a file that is not
        // empty starts inside it, past its first byte.
        for span in spans.iter().filter(|s| s.length > 0) {
            if span.offset % piece_len != 0 {
                let piece = (span.offset / piece_len) as u32;
                if slots.last() != Some(&piece) {
                    slots.push(piece);
                }
            }
        }
        PartMap {
            layout: *layout,
            slots,
        }
    }

    /// The boundary pieces, in index order.
    pub fn boundary_pieces(&self) -> &[u32] {
        &self.slots
    }

    /// The slot of piece `index`, when it is a boundary piece.
    pub fn slot(&self, index: u32) -> Option<u32> {
        self.slots.binary_search(&index).ok().map(|k| k as u32)
    }

    /// Length of the part file: every slot, the last one as long as its
    /// piece.
    pub fn part_len(&self) -> u64 {
        match self.slots.last() {
            None => 0,
            Some(&last) => {
                (self.slots.len() as u64 - 1) * u64::from(self.layout.piece_len())
                    + u64::from(self.layout.piece_size(last))
            }
        }
    }

    /// Splits the content range `offset..offset+len` by piece and places
    /// each part in the part file: `Err(piece)` for a part in a piece that
    /// has no slot (it holds bytes of one file only).
    pub fn locate(
        &self,
        offset: u64,
        len: usize,
    ) -> impl Iterator<Item = Result<PartSpan, u32>> + '_ {
        let piece_len = u64::from(self.layout.piece_len());
        let end = offset + len as u64;
        let first = offset / piece_len;
        let last = if len == 0 {
            first
        } else {
            (end - 1) / piece_len
        };
        (first..=last).filter(move |_| len > 0).map(move |piece| {
            let piece_start = piece * piece_len;
            let start = offset.max(piece_start);
            let stop = end.min(piece_start + piece_len);
            let index = piece as u32;
            let slot = self.slot(index).ok_or(index)?;
            Ok(PartSpan {
                part_offset: u64::from(slot) * piece_len + (start - piece_start),
                range_offset: (start - offset) as usize,
                len: (stop - start) as usize,
            })
        })
    }

    /// Whether some wanted piece holds bytes of a file that is not
    /// selected: only then is a part file needed.
    pub fn needed(&self, spans: &[FileSpan], selected: &[bool], wanted: &[bool]) -> bool {
        self.slots.iter().any(|&index| {
            wanted[index as usize]
                && segments(
                    spans,
                    self.layout.piece_offset(index),
                    self.layout.piece_size(index) as usize,
                )
                .any(|seg| !selected[seg.file])
        })
    }
}

/// The part file's name in DEST for a torrent named `name`.
pub fn part_file_name(name: &str) -> String {
    format!(".{name}.parts")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::file_spans;

    fn files(paths: &[&str]) -> Vec<(String, bool)> {
        paths.iter().map(|p| (p.to_string(), false)).collect()
    }

    #[test]
    fn file_lists_take_indexes_and_ranges() {
        assert_eq!(parse_file_list("1").unwrap(), vec![1..=1]);
        assert_eq!(
            parse_file_list("1,3-5, 7").unwrap(),
            vec![1..=1, 3..=5, 7..=7]
        );
        assert_eq!(parse_file_list("2-2").unwrap(), vec![2..=2]);
    }

    #[test]
    fn malformed_file_lists_are_errors_naming_the_part() {
        for (text, part, why) in [
            ("", "\"\"", "not an index"),
            ("1,,2", "\"\"", "not an index"),
            ("0", "\"0\"", "numbered from 1"),
            ("1-0", "\"1-0\"", "numbered from 1"),
            ("5-3", "\"5-3\"", "ends before it starts"),
            ("a", "\"a\"", "not an index"),
            ("1-", "\"1-\"", "not an index"),
            ("-2", "\"-2\"", "not an index"),
            ("1-2-3", "\"1-2-3\"", "not an index"),
            ("+1", "\"+1\"", "not an index"),
            (
                "99999999999999999999999",
                "\"99999999999999999999999\"",
                "too large",
            ),
        ] {
            let e = parse_file_list(text).unwrap_err();
            assert!(
                e.contains("--files") && e.contains(part) && e.contains(why),
                "{text:?}: {e}"
            );
        }
    }

    #[test]
    fn file_indexes_choose_files_counted_from_one() {
        let sel = Selection::new(Some("1,3-4"), &[]).unwrap();
        let got = sel.resolve(&files(&["a", "b", "c", "d", "e"])).unwrap();
        assert_eq!(got, [true, false, true, true, false]);
    }

    #[test]
    fn an_index_past_the_last_file_is_an_error_naming_it() {
        let sel = Selection::new(Some("2,6"), &[]).unwrap();
        let e = sel.resolve(&files(&["a", "b", "c", "d", "e"])).unwrap_err();
        assert!(
            e.to_string().contains("no file 6") && e.to_string().contains("5 files"),
            "{e}"
        );
        let e = Selection::new(Some("2"), &[])
            .unwrap()
            .resolve(&files(&["only"]))
            .unwrap_err();
        assert!(e.to_string().contains("has 1 file,"), "{e}");
    }

    #[test]
    fn exclude_patterns_match_paths_inside_the_torrent() {
        let paths = files(&[
            "movie.mkv",
            "info.nfo",
            "extras/a.nfo",
            "extras/b/c.bin",
            "x/extras/d",
        ]);
        let sel = Selection::new(None, &["*.nfo".into()]).unwrap();
        // `*` crosses folders: every .nfo goes.
        assert_eq!(
            sel.resolve(&paths).unwrap(),
            [true, false, false, true, true]
        );
        let sel = Selection::new(None, &["extras/*".into()]).unwrap();
        assert_eq!(
            sel.resolve(&paths).unwrap(),
            [true, true, false, false, true]
        );
        let sel = Selection::new(None, &["*.nfo".into(), "extras/*".into()]).unwrap();
        assert_eq!(
            sel.resolve(&paths).unwrap(),
            [true, false, false, false, true]
        );
        // Case matters, and a pattern matches whole paths only.
        let sel = Selection::new(None, &["*.NFO".into(), "movie".into()]).unwrap();
        assert_eq!(sel.resolve(&paths).unwrap(), [true; 5]);
    }

    #[test]
    fn exclude_applies_after_the_file_list() {
        let sel = Selection::new(Some("1-3"), &["*.nfo".into()]).unwrap();
        let got = sel
            .resolve(&files(&["a.bin", "a.nfo", "b.bin", "c.bin"]))
            .unwrap();
        assert_eq!(got, [true, false, true, false]);
    }

    #[test]
    fn a_selection_of_no_file_is_an_error() {
        let sel = Selection::new(None, &["*".into()]).unwrap();
        let e = sel.resolve(&files(&["a", "b"])).unwrap_err();
        assert!(e.to_string().contains("no file to download"), "{e}");
        // A padding file alone is no choice either.
        let sel = Selection::new(Some("2"), &[]).unwrap();
        let e = sel
            .resolve(&[("a".into(), false), (".pad/1".into(), true)])
            .unwrap_err();
        assert!(e.to_string().contains("no file to download"), "{e}");
    }

    /// Regression: a padding file stayed chosen when the file it pads was
    /// left out, so that file's last piece was still fetched (and its
    /// bytes kept in the part file) for the padding's sake.
    #[test]
    fn padding_files_are_never_chosen_for_themselves() {
        let files = [
            ("a.iso".to_string(), false),
            (".pad/100".to_string(), true),
            ("b.txt".to_string(), false),
        ];
        let sel = Selection::new(None, &["*.iso".into()]).unwrap();
        assert_eq!(sel.resolve(&files).unwrap(), [false, false, true]);
        let sel = Selection::new(Some("1-3"), &[]).unwrap();
        assert_eq!(sel.resolve(&files).unwrap(), [true, false, true]);
    }

    #[test]
    fn a_bad_pattern_is_an_error_naming_it() {
        let e = Selection::new(None, &["[a".into()]).unwrap_err();
        assert!(e.contains("--exclude") && e.contains("[a"), "{e}");
    }

    /// fixtures/multi.torrent: 32 KiB pieces over deep.bin (70001), an
    /// empty file, big.bin (100000), small.bin (5), readme.txt (1000).
    fn multi() -> (Layout, Vec<FileSpan>) {
        (
            Layout::new(171_006, 32768).unwrap(),
            file_spans([70_001, 0, 100_000, 5, 1000]),
        )
    }

    #[test]
    fn wanted_pieces_are_those_touching_a_selected_file() {
        let (layout, spans) = multi();
        let want = |sel: [bool; 5]| wanted_pieces(&layout, &spans, &sel);
        assert_eq!(
            want([true, false, false, false, false]),
            [true, true, true, false, false, false]
        );
        assert_eq!(
            want([false, false, true, false, false]),
            [false, false, true, true, true, true]
        );
        assert_eq!(
            want([false, false, false, true, false]),
            [false, false, false, false, false, true]
        );
        // The empty file needs no piece.
        assert_eq!(want([false, true, false, false, false]), [false; 6]);
        assert_eq!(want([true; 5]), [true; 6]);
    }

    #[test]
    fn boundary_pieces_hold_bytes_of_two_files_or_more() {
        let (layout, spans) = multi();
        let map = PartMap::new(&layout, &spans);
        // Piece 2 holds deep.bin and big.bin; piece 5 big.bin, small.bin
        // and readme.txt (two files start in it: one slot).
        assert_eq!(map.boundary_pieces(), [2, 5]);
        assert_eq!(map.slot(2), Some(0));
        assert_eq!(map.slot(5), Some(1));
        assert_eq!(map.slot(3), None);
        assert_eq!(map.part_len(), 32768 + 7166);
        // Files that start on a piece's first byte make no boundary.
        let aligned = PartMap::new(&Layout::new(300, 100).unwrap(), &file_spans([100, 0, 200]));
        assert_eq!(aligned.boundary_pieces(), [] as [u32; 0]);
        assert_eq!(aligned.part_len(), 0);
    }

    #[test]
    fn unselected_bytes_of_boundary_pieces_go_to_their_slot() {
        let (layout, spans) = multi();
        let map = PartMap::new(&layout, &spans);
        // deep.bin alone: big.bin's first bytes in piece 2, 70001..98304.
        let big = spans[2];
        let parts: Vec<_> = map
            .locate(big.offset, (98_304 - big.offset) as usize)
            .collect();
        assert_eq!(
            parts,
            [Ok(PartSpan {
                part_offset: 70_001 - 65_536,
                range_offset: 0,
                len: 98_304 - 70_001
            })]
        );
        // The same file past piece 2 is in a piece of its own: no slot.
        let whole: Vec<_> = map.locate(big.offset, big.length as usize).collect();
        assert_eq!(whole.len(), 4);
        assert!(whole[0].is_ok());
        assert_eq!(
            whole[1..],
            [
                Err(3),
                Err(4),
                Ok(PartSpan {
                    part_offset: 32768,
                    range_offset: (163_840 - big.offset) as usize,
                    len: (170_001 - 163_840) as usize,
                })
            ]
        );
        // readme.txt, last bytes of piece 5: slot 1.
        let readme = spans[4];
        let parts: Vec<_> = map.locate(readme.offset, 1000).collect();
        assert_eq!(
            parts,
            [Ok(PartSpan {
                part_offset: 32768 + (170_006 - 163_840),
                range_offset: 0,
                len: 1000
            })]
        );
        assert_eq!(map.locate(5, 0).count(), 0);
    }

    #[test]
    fn a_part_file_is_needed_only_when_a_wanted_piece_is_shared_with_an_unselected_file() {
        let (layout, spans) = multi();
        let map = PartMap::new(&layout, &spans);
        let needed = |sel: [bool; 5]| {
            let wanted = wanted_pieces(&layout, &spans, &sel);
            map.needed(&spans, &sel, &wanted)
        };
        assert!(needed([true, false, false, false, false]));
        assert!(needed([false, false, false, false, true]));
        assert!(!needed([true; 5]));
        // deep.bin and big.bin share piece 2, but big.bin reaches piece 5,
        // which holds small.bin and readme.txt too.
        assert!(needed([true, true, true, false, false]));
        // The empty file alone wants no piece at all.
        assert!(!needed([false, true, false, false, false]));
    }
}
