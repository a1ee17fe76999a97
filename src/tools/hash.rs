//! SHA-1 of every piece of content laid out as files end to end, on every
//! core: what `create` writes into a torrent and what `verify` compares.
//!
//! Threads take pieces one at a time from a shared counter (so together
//! they read the files roughly in order) and each keeps its last file open,
//! since consecutive pieces mostly fall in the same file. Reads are
//! positional; nothing is written. Size arithmetic is
//! [`crate::layout`]'s.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use indicatif::ProgressBar;
use sha1::{Digest, Sha1};

use crate::layout::{FileSpan, Layout, file_spans, segments};

/// One file of the content.
#[derive(Debug, Clone)]
pub struct ContentFile {
    /// Where to read it; `None` for a BEP 47 padding file, which reads as
    /// zeros.
    pub path: Option<PathBuf>,
    /// Its length in the torrent.
    pub length: u64,
}

/// Why a piece could not be read.
#[derive(Debug)]
pub struct ReadError {
    /// The file index (in the content's files) whose read failed.
    pub file: usize,
    /// The error (`UnexpectedEof` for a file shorter than its length).
    pub source: io::Error,
}

/// Opens `path` for reading if it is a regular file. The open does not
/// block (a FIFO put where a file should be would wait for a writer
/// forever), and anything else is an error saying so.
fn open_regular(path: &std::path::Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    Ok(file)
}

/// The content's files and their places in the concatenated bytes.
pub struct Content {
    files: Vec<ContentFile>,
    spans: Vec<FileSpan>,
    layout: Layout,
}

impl Content {
    /// The content of `files` in pieces of `layout`.
    pub fn new(files: Vec<ContentFile>, layout: Layout) -> Content {
        let spans = file_spans(files.iter().map(|f| f.length));
        Content {
            files,
            spans,
            layout,
        }
    }

    /// The piece arithmetic.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The indexes of the files that piece `index` covers, in order (a
    /// zero-length file covers no byte, so no piece).
    pub fn files_of_piece(&self, index: u32) -> impl Iterator<Item = usize> + '_ {
        let offset = self.layout.piece_offset(index);
        let len = self.layout.piece_size(index) as usize;
        segments(&self.spans, offset, len).map(|s| s.file)
    }

    /// Reads piece `index` into `buf`, keeping the last file opened in `open`.
    fn read_piece(
        &self,
        index: u32,
        buf: &mut Vec<u8>,
        open: &mut Option<(usize, File)>,
    ) -> Result<(), ReadError> {
        let offset = self.layout.piece_offset(index);
        buf.resize(self.layout.piece_size(index) as usize, 0);
        for seg in segments(&self.spans, offset, buf.len()) {
            let out = &mut buf[seg.range_offset..seg.range_offset + seg.len];
            let Some(path) = &self.files[seg.file].path else {
                out.fill(0);
                continue;
            };
            let fail = |source| ReadError {
                file: seg.file,
                source,
            };
            if open.as_ref().is_none_or(|(i, _)| *i != seg.file) {
                *open = None;
                *open = Some((seg.file, open_regular(path).map_err(fail)?));
            }
            let (_, file) = open.as_ref().expect("opened above");
            file.read_exact_at(out, seg.file_offset).map_err(fail)?;
        }
        Ok(())
    }

    /// The SHA-1 of every piece, hashed on `threads` threads; a piece that
    /// cannot be read is its [`ReadError`]. `bar` advances by each piece's
    /// length.
    pub fn hash_pieces(
        &self,
        threads: usize,
        bar: &ProgressBar,
    ) -> Vec<Result<[u8; 20], ReadError>> {
        self.hash(threads, bar, false)
            .into_iter()
            .map(|r| r.expect("every piece is hashed unless one fails"))
            .collect()
    }

    /// The SHA-1 of every piece, as [`Content::hash_pieces`], stopping at
    /// the first piece that cannot be read.
    ///
    /// # Errors
    /// That piece's [`ReadError`].
    pub fn hash_all(&self, threads: usize, bar: &ProgressBar) -> Result<Vec<[u8; 20]>, ReadError> {
        let results = self.hash(threads, bar, true);
        let mut hashes = Vec::with_capacity(results.len());
        let mut first_error = None;
        for result in results {
            match result {
                Some(Ok(hash)) => hashes.push(hash),
                Some(Err(e)) => {
                    first_error.get_or_insert(e);
                }
                None => {}
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(hashes),
        }
    }

    /// Hashes pieces on `threads` threads (fewer if the system will not
    /// start them; this one if it starts none); with `stop_at_error`, the
    /// pieces not yet taken when one fails are left `None`.
    fn hash(
        &self,
        threads: usize,
        bar: &ProgressBar,
        stop_at_error: bool,
    ) -> Vec<Option<Result<[u8; 20], ReadError>>> {
        let count = self.layout.piece_count();
        let next = AtomicU32::new(0);
        let stop = AtomicBool::new(false);
        let work = || {
            let mut found = Vec::new();
            let mut buf = Vec::new();
            let mut open = None;
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= count || stop.load(Ordering::Relaxed) {
                    return found;
                }
                let hash = self
                    .read_piece(index, &mut buf, &mut open)
                    .map(|()| Sha1::digest(&buf).into());
                if hash.is_err() && stop_at_error {
                    stop.store(true, Ordering::Relaxed);
                }
                bar.inc(u64::from(self.layout.piece_size(index)));
                found.push((index, hash));
            }
        };
        let found: Vec<_> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads.clamp(1, count.max(1) as usize))
                .filter_map(|i| {
                    std::thread::Builder::new()
                        .name(format!("hash-{i}"))
                        .spawn_scoped(scope, work)
                        .ok()
                })
                .collect();
            if workers.is_empty() {
                return work();
            }
            workers
                .into_iter()
                .flat_map(|w| w.join().expect("a hashing thread does not panic"))
                .collect()
        });
        let mut results: Vec<Option<Result<[u8; 20], ReadError>>> =
            (0..count).map(|_| None).collect();
        for (index, hash) in found {
            results[index as usize] = Some(hash);
        }
        results
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_across_files_hash_as_the_concatenation_on_any_number_of_threads() {
        let dir = tempfile::tempdir().unwrap();
        let lengths = [70_001usize, 0, 100_000, 5, 1_000];
        let mut all = Vec::new();
        let mut files = Vec::new();
        for (i, len) in lengths.iter().enumerate() {
            let data: Vec<u8> = (0..*len).map(|b| (b * 31 + i * 7) as u8).collect();
            let path = dir.path().join(format!("f{i}"));
            std::fs::write(&path, &data).unwrap();
            all.extend_from_slice(&data);
            files.push(ContentFile {
                path: Some(path),
                length: *len as u64,
            });
        }
        let layout = Layout::new(all.len() as u64, 32768).unwrap();
        let want: Vec<[u8; 20]> = all.chunks(32768).map(|c| Sha1::digest(c).into()).collect();
        let content = Content::new(files, layout);
        for threads in [1, 2, 5, 64] {
            let got: Vec<[u8; 20]> = content
                .hash_pieces(threads, &ProgressBar::hidden())
                .into_iter()
                .map(Result::unwrap)
                .collect();
            assert_eq!(got, want, "{threads} threads");
        }
        // Piece 2 (65536..98304) covers files 0 and 2; the empty file 1 none.
        assert_eq!(content.files_of_piece(2).collect::<Vec<_>>(), [0, 2]);
    }

    #[test]
    fn a_missing_or_short_file_fails_only_the_pieces_it_covers() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        std::fs::write(&a, vec![1u8; 40_000]).unwrap();
        let files = vec![
            ContentFile {
                path: Some(a),
                length: 50_000,
            },
            ContentFile {
                path: Some(dir.path().join("missing")),
                length: 20_000,
            },
            ContentFile {
                path: None,
                length: 30_000,
            },
        ];
        let content = Content::new(files, Layout::new(100_000, 32768).unwrap());
        let got = content.hash_pieces(2, &ProgressBar::hidden());
        assert!(got[0].is_ok());
        let short = got[1].as_ref().unwrap_err();
        assert_eq!(short.file, 0);
        assert_eq!(short.source.kind(), io::ErrorKind::UnexpectedEof);
        let missing = got[2].as_ref().unwrap_err();
        assert_eq!(
            (missing.file, missing.source.kind()),
            (1, io::ErrorKind::NotFound)
        );
        let first = content.hash_all(1, &ProgressBar::hidden()).unwrap_err();
        assert_eq!(
            (first.file, first.source.kind()),
            (0, io::ErrorKind::UnexpectedEof)
        );
        // The last piece is padding alone: zeros.
        assert_eq!(
            got[3].as_ref().unwrap(),
            &<[u8; 20]>::from(Sha1::digest(vec![0u8; 1696]))
        );
    }
}
