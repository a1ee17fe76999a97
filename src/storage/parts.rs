//! The part file of a download of some files only, `DEST/.NAME.parts`:
//! the bytes of files not selected that share a wanted piece with a
//! selected one, placed as [`PartMap`] says ([`crate::selection`]).
//!
//! It is opened by the rules of `storage::open` (below DEST, never
//! through a link, refused when longer than its length or hard-linked):
//! created when some wanted piece needs it, and else opened only if an
//! earlier run left one, so that a file selected now for the first time
//! gets back the bytes an earlier run kept of it (see [`Parts::restore`]).
//!
//! Out of scope: which files are selected and which pieces wanted
//! ([`crate::selection`]), the other files ([`super::Storage`]).

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use rustix::fs::AtFlags;

use super::open::{self, Allow, Base, Place};
use super::{StorageError, error};
use crate::layout::{FileSpan, Layout};
use crate::selection::{PartMap, part_file_name};

/// The open part file.
pub(super) struct Parts {
    file: File,
    path: PathBuf,
}

impl Parts {
    /// Opens `DEST/.NAME.parts` for the torrent named `name`, sized to
    /// `map`'s length: created if missing when `create`, else `None` when
    /// there is none. Returns its length before the open too.
    pub(super) fn open(
        base: &Base,
        name: &OsStr,
        map: &PartMap,
        allow: Allow,
        create: bool,
    ) -> Result<Option<(Parts, u64)>, StorageError> {
        let Base::Beneath { dir, path: dest } = base else {
            return Ok(None);
        };
        let part_name = part_file_name(&name.to_string_lossy());
        let path = dest.join(&part_name);
        if !create {
            match rustix::fs::statat(dir, part_name.as_str(), AtFlags::SYMLINK_NOFOLLOW) {
                Err(rustix::io::Errno::NOENT) => return Ok(None),
                // What is there is checked by the open.
                Ok(_) => {}
                Err(e) => return Err(error(&path, "open", e.into())),
            }
        }
        let place = Place {
            path,
            below: vec![part_name.into()],
        };
        let opened = open::open_first(base, &place, map.part_len(), allow)?;
        Ok(Some((
            Parts {
                file: opened.file,
                path: place.path,
            },
            opened.old_len,
        )))
    }

    /// Its path.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `io` over the places of the content range `offset..offset+len`
    /// in the part file: with the file, the offset in it, and the part of
    /// the range.
    ///
    /// # Errors
    /// What `io` returns, or an `UnexpectedEof` error for a part of the
    /// range in a piece with no slot (a piece not wanted).
    pub(super) fn io(
        &self,
        map: &PartMap,
        offset: u64,
        len: usize,
        mut io: impl FnMut(&File, u64, Range<usize>) -> io::Result<()>,
        action: &'static str,
    ) -> Result<(), StorageError> {
        for part in map.locate(offset, len) {
            let part = part.map_err(|piece| {
                error(
                    &self.path,
                    action,
                    io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("piece {piece} has no place in it: the piece is not wanted"),
                    ),
                )
            })?;
            io(
                &self.file,
                part.part_offset,
                part.range_offset..part.range_offset + part.len,
            )
            .map_err(|e| error(&self.path, action, e))?;
        }
        Ok(())
    }

    /// Copies what the part file keeps of a file that was empty until now
    /// (selected for the first time: the bytes an earlier run kept of it in
    /// the file's first and last pieces) into `file`, which lies at `span`
    /// of the content, so that those pieces verify without a new fetch.
    /// Holes read as zeros, which the empty file held anyway; whatever is
    /// copied is checked with the rest. Returns whether anything was.
    ///
    /// # Errors
    /// A read of the part file or a write of `file` (at `path`) that failed.
    pub(super) fn restore(
        &self,
        map: &PartMap,
        layout: &Layout,
        span: FileSpan,
        file: &File,
        path: &Path,
    ) -> Result<bool, StorageError> {
        if span.length == 0 {
            return Ok(false);
        }
        let piece_len = u64::from(layout.piece_len());
        let end = span.offset + span.length;
        let first = (span.offset / piece_len) as u32;
        let last = ((end - 1) / piece_len) as u32;
        let mut copied = false;
        let mut buf = Vec::new();
        // A piece in the middle of a file holds that file only: only its
        // first and last pieces can be shared.
        let ends = if first == last {
            vec![first]
        } else {
            vec![first, last]
        };
        for index in ends {
            if map.slot(index).is_none() {
                continue;
            }
            let piece_start = layout.piece_offset(index);
            let start = span.offset.max(piece_start);
            let stop = end.min(piece_start + u64::from(layout.piece_size(index)));
            buf.resize((stop - start) as usize, 0);
            self.io(
                map,
                start,
                buf.len(),
                |part, at, range| part.read_exact_at(&mut buf[range], at),
                "read",
            )?;
            file.write_all_at(&buf, start - span.offset)
                .map_err(|e| error(path, "write", e))?;
            copied = true;
        }
        Ok(copied)
    }

    /// Flushes it to the disk.
    pub(super) fn sync(&self) -> Result<(), StorageError> {
        self.file
            .sync_all()
            .map_err(|e| error(&self.path, "sync", e))
    }
}
