//! The torrent's files on disk: creating them, positional reads and writes of
//! content ranges, and checking existing data against the piece hashes.
//!
//! Opening follows the rules of `storage::open`: in download mode nothing below
//! DEST is reached through a symbolic link, and existing files that cannot
//! be the torrent's data (longer, hard-linked, not regular files) are
//! refused unless [`Allow`] says otherwise. Which files stay open is
//! decided in `storage::handles`: all of them when they fit in the torrent's budget of
//! descriptors, else a least-recently-used cache that reopens on demand.
//!
//! [`Storage`] is shared (`Arc`) between the piece manager, which writes
//! verified pieces, and peer threads, which read pieces they serve. Positional
//! I/O (`read_at`/`write_at`) needs no lock and no shared file cursor. In seed
//! mode files are opened read-only, so seeding can never change the content.
//!
//! A download of some files only ([`Storage::open_selected`], `--files`,
//! `--exclude`) neither creates nor opens the files not selected. The
//! pieces it fetches are those that hold bytes of a selected file
//! ([`Storage::unwanted`] are the others); the bytes such a piece holds of
//! a file not selected are read from and written to the part file,
//! `DEST/.NAME.parts`, laid out as [`crate::selection`] says, so that the
//! piece can be checked whole on resume and no file the user did not ask
//! for is ever written. The part file is opened by the same rules as the
//! others, and only when some wanted piece needs it.
//!
//! Direct writes (Linux, downloads; [`Storage::enable_direct_writes`]): a
//! second handle on each file (counted in the budget), opened with `O_DIRECT`, writes verified pieces
//! from the thread's aligned buffer straight to the disk, past the page cache.
//! A buffered write copies every byte into fresh page-cache memory, which the
//! kernel must find, zero-fill on some machines (virtual ones that hand freed
//! memory back to the host pay about 3 CPU seconds per GiB for it), and then
//! write back anyway; and it evicts the user's cached files to hold data
//! nobody reads soon. Only whole aligned blocks go direct: the part of a write
//! that starts unaligned, and the last bytes of one that ends unaligned,
//! are written buffered. No page-cache page ever holds both kinds: a direct
//! block belongs to one piece, which nobody reads before it is written, and
//! readahead (which would cache blocks of pieces still to come) is turned off
//! on the reading handle. A file system that refuses `O_DIRECT` gets
//! buffered writes, as does every file once one direct write fails with
//! `EINVAL`.

use std::fmt;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::bitfield::Bitfield;
use crate::layout::{FileSpan, Layout, file_spans, segments};
use crate::metainfo::Metainfo;
use crate::selection::{PartMap, wanted_pieces};
use crate::untrusted;

mod check;
mod direct;
mod handles;
mod open;
mod parts;
#[cfg(test)]
mod tests;

pub use handles::{file_handle_budget, open_file_limit, raise_open_file_limit, too_many_open};
pub use open::Allow;

use handles::{Handle, Handles, OpenFile};
use open::{Base, FileId, Place};
use parts::Parts;

/// A storage failure, with the path it concerns.
#[derive(Debug)]
pub struct StorageError {
    /// The file or folder involved.
    pub path: PathBuf,
    /// What was being done.
    pub action: &'static str,
    /// The underlying error, or why the file was refused.
    pub source: io::Error,
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The path holds names from the torrent.
        let path = untrusted::show(&self.path.to_string_lossy());
        write!(f, "cannot {} {path}", self.action)
    }
}

impl std::error::Error for StorageError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Whether files may be created and written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Download: create missing folders and files, read and write.
    ReadWrite,
    /// Seed: open existing files read-only; a missing or short file is an error.
    ReadOnly,
}

/// How to open a torrent's files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StorageOptions {
    /// Download or seed.
    pub access: Access,
    /// What a download may do to existing files.
    pub allow: Allow,
    /// Most descriptors the files may hold at once ([`file_handle_budget`]).
    pub max_open_fds: usize,
    /// Whether [`Storage::enable_direct_writes`] will be called: each file
    /// then needs two descriptors.
    pub direct_io: bool,
}

impl StorageOptions {
    /// `access` with nothing extra allowed and a generous budget.
    pub fn new(access: Access) -> StorageOptions {
        StorageOptions {
            access,
            allow: Allow::default(),
            max_open_fds: file_handle_budget(None, 0),
            direct_io: true,
        }
    }
}

/// One file of the torrent.
struct StoredFile {
    place: Place,
    /// `None` for BEP 47 padding files, which read as zeros and are never
    /// opened nor written, and for files not selected.
    id: Option<FileId>,
    /// Not selected: never created; its bytes in wanted pieces live in
    /// the part file.
    parked: bool,
    length: u64,
}

/// Alignment of direct writes: offset, length and memory address. 4 KiB
/// suits disks with 512-byte and 4 KiB sectors alike.
pub(crate) const DIRECT_ALIGN: usize = 4096;

thread_local! {
    /// Each writing thread's aligned buffer for direct writes (one piece).
    static DIRECT_BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The files of one torrent, addressed as one concatenated byte range.
pub struct Storage {
    layout: Layout,
    spans: Vec<FileSpan>,
    files: Vec<StoredFile>,
    base: Base,
    handles: Handles,
    access: Access,
    had_data: bool,
    /// The pieces not wanted: every one of them holds bytes of files not
    /// selected only.
    unwanted: Bitfield,
    /// The part file's layout, and the file when there is one.
    part_map: PartMap,
    parts: Option<Parts>,
    /// Handles the cache opens get a direct one too.
    direct_on_reopen: bool,
    /// Direct writes are in use (cleared when the file system refuses one).
    direct: AtomicBool,
}

impl Storage {
    /// Opens the content of `meta` at `root` (the file itself for a
    /// single-file torrent, the folder for a multi-file one) with default
    /// [`StorageOptions`].
    ///
    /// # Errors
    /// As [`Storage::open_with`].
    pub fn open(meta: &Metainfo, root: &Path, access: Access) -> Result<Storage, StorageError> {
        Storage::open_with(meta, root, StorageOptions::new(access))
    }

    /// Opens the content of `meta` at `root`: the file itself for a
    /// single-file torrent, the folder for a multi-file one.
    ///
    /// With [`Access::ReadWrite`] the parent of `root` is DEST: it is created
    /// if missing, and below it missing folders and files are created
    /// (zero-length files too) and each file is sized to its length (sparse
    /// where the file system allows); nothing below DEST is reached through
    /// a symbolic link.
    ///
    /// # Errors
    /// [`StorageError`] naming the path that could not be created or
    /// opened, that was refused (a symbolic link below DEST, a hard link, a
    /// longer file, what is not a regular file), or whose length is wrong in
    /// read-only mode.
    pub fn open_with(
        meta: &Metainfo,
        root: &Path,
        options: StorageOptions,
    ) -> Result<Storage, StorageError> {
        Storage::open_selected(meta, root, options, &vec![true; meta.files.len()])
    }

    /// As [`Storage::open_with`], for the files where `selected` is true
    /// (one entry per file of `meta`): the others are neither created nor
    /// opened, and the bytes they hold in wanted pieces go to the part
    /// file (see the module docs). Seeding takes every file.
    ///
    /// # Errors
    /// As [`Storage::open_with`], for the part file too.
    pub fn open_selected(
        meta: &Metainfo,
        root: &Path,
        options: StorageOptions,
        selected: &[bool],
    ) -> Result<Storage, StorageError> {
        let access = options.access;
        let all = vec![true; meta.files.len()];
        let selected = match access {
            Access::ReadWrite if selected.len() == meta.files.len() => selected,
            _ => &all,
        };
        let (base, name) = match access {
            Access::ReadOnly => (Base::Paths, None),
            Access::ReadWrite => {
                let name = root.file_name().ok_or_else(|| {
                    error(
                        root,
                        "use",
                        io::Error::new(io::ErrorKind::InvalidInput, "the path has no file name"),
                    )
                })?;
                let dest = root
                    .parent()
                    .filter(|p| !p.as_os_str().is_empty())
                    .unwrap_or(Path::new("."));
                (Base::beneath(dest)?, Some(name))
            }
        };
        let opened_count = meta
            .files
            .iter()
            .zip(selected)
            .filter(|(f, chosen)| !f.padding && **chosen)
            .count();
        let per_file = 1 + usize::from(options.direct_io && access == Access::ReadWrite);
        let pinned = opened_count.saturating_mul(per_file) <= options.max_open_fds;
        let mut files = Vec::with_capacity(meta.files.len());
        let mut open_files = Vec::new();
        let mut had_data = access == Access::ReadOnly;
        let spans = file_spans(meta.files.iter().map(|f| f.length));
        let wanted = wanted_pieces(&meta.layout, &spans, selected);
        let part_map = PartMap::new(&meta.layout, &spans);
        let mut parts = None;
        let mut parts_had_data = false;
        if let Some(name) = name
            && !part_map.boundary_pieces().is_empty()
        {
            if part_map.needed(&spans, selected, &wanted) {
                parts = Parts::open(&base, name, &part_map, options.allow, true)?;
            } else {
                // Only what an earlier run kept is read from one, if any:
                // a file in the way of that is no reason to stop.
                match Parts::open(&base, name, &part_map, options.allow, false) {
                    Ok(found) => parts = found,
                    Err(e) => log::warn!("{e} ({}): not reading from it", e.source),
                }
            }
            if let Some((_, old_len)) = &parts {
                parts_had_data = *old_len > 0;
                had_data |= parts_had_data;
            }
        }
        let parts = parts.map(|(parts, _)| parts);
        for (index, (entry, &chosen)) in meta.files.iter().zip(selected).enumerate() {
            let path = if meta.multi_file {
                root.join(&entry.path)
            } else {
                root.to_path_buf()
            };
            let mut below = Vec::new();
            if let Some(name) = name {
                below.push(name.to_os_string());
                if meta.multi_file {
                    below.extend(entry.path.components().filter_map(|c| match c {
                        Component::Normal(part) => Some(part.to_os_string()),
                        _ => None,
                    }));
                }
            }
            let place = Place { path, below };
            let parked = !chosen && !entry.padding;
            let id = if entry.padding || parked {
                if pinned {
                    open_files.push(None);
                }
                None
            } else {
                let opened = open::open_first(&base, &place, entry.length, options.allow)?;
                had_data |= opened.old_len > 0;
                if let Some(parts) = parts
                    .as_ref()
                    .filter(|_| parts_had_data && opened.old_len == 0)
                {
                    // Selected for the first time: the bytes an earlier run
                    // kept of it in shared pieces come back.
                    had_data |= parts.restore(
                        &part_map,
                        &meta.layout,
                        spans[index],
                        &opened.file,
                        &place.path,
                    )?;
                }
                if pinned {
                    open_files.push(Some(OpenFile {
                        file: opened.file,
                        direct: None,
                    }));
                }
                Some(opened.id)
            };
            files.push(StoredFile {
                place,
                id,
                parked,
                length: entry.length,
            });
        }
        let handles = if pinned {
            Handles::Pinned(open_files)
        } else {
            log::debug!(
                "{opened_count} files, at most {} descriptors: files are opened on demand",
                options.max_open_fds
            );
            Handles::cached(files.len(), options.max_open_fds)
        };
        let unwanted = Bitfield::from_bools(&wanted.iter().map(|w| !w).collect::<Vec<_>>());
        Ok(Storage {
            layout: meta.layout,
            spans,
            files,
            base,
            handles,
            access,
            had_data,
            unwanted,
            part_map,
            parts,
            direct_on_reopen: false,
            direct: AtomicBool::new(false),
        })
    }

    /// Whether any file held data before [`Storage::open`]: only then is a
    /// check of existing pieces worth its reads.
    pub fn had_data(&self) -> bool {
        self.had_data
    }

    /// The layout this storage was opened with.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The pieces not wanted: they hold bytes of files not selected only,
    /// and are never fetched (none, unless some files are not selected).
    pub fn unwanted(&self) -> &Bitfield {
        &self.unwanted
    }

    /// Whether piece `index` is wanted.
    pub fn is_wanted(&self, index: u32) -> bool {
        !self.unwanted.has(index)
    }

    /// Number of wanted pieces.
    pub fn wanted_count(&self) -> u32 {
        self.layout.piece_count() - self.unwanted.count()
    }

    /// Bytes of the wanted pieces: what a download fetches.
    pub fn wanted_len(&self) -> u64 {
        let all = self.layout.total_len();
        all - self
            .unwanted
            .iter()
            .map(|i| u64::from(self.layout.piece_size(i)))
            .sum::<u64>()
    }

    /// The part file's path, when this download has one.
    pub fn part_file(&self) -> Option<&Path> {
        self.parts.as_ref().map(Parts::path)
    }

    /// Reads or writes the bytes at content offset `offset` that belong
    /// to a file not selected: in the part file.
    fn parked_io(
        &self,
        offset: u64,
        len: usize,
        io: impl FnMut(&File, u64, std::ops::Range<usize>) -> io::Result<()>,
        action: &'static str,
    ) -> Result<(), StorageError> {
        match &self.parts {
            Some(parts) => parts.io(&self.part_map, offset, len, io, action),
            None => Err(error(
                Path::new("the part file"),
                action,
                io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "there is none: the piece is not wanted",
                ),
            )),
        }
    }

    /// The open handles of file `index` (not a padding file); `write` when
    /// they are for a write.
    fn handle(&self, index: usize, write: bool) -> Result<Handle<'_>, StorageError> {
        self.handles.get(index, write, || {
            let stored = &self.files[index];
            let id = stored.id.expect("padding files are never opened");
            let file = open::reopen(&self.base, &stored.place, id)?;
            let direct =
                (self.direct_on_reopen && stored.length > 0 && self.direct.load(Ordering::Relaxed))
                    .then(|| open::open_direct(&self.base, &stored.place, id, &file))
                    .flatten();
            Ok(OpenFile { file, direct })
        })
    }

    /// Reads `buf.len()` bytes of content starting at content offset `offset`.
    ///
    /// # Errors
    /// [`StorageError`] for the file whose read failed (a file shorter than
    /// expected reads as an `UnexpectedEof` error).
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), StorageError> {
        for seg in segments(&self.spans, offset, buf.len()) {
            let out = &mut buf[seg.range_offset..seg.range_offset + seg.len];
            let stored = &self.files[seg.file];
            if stored.parked {
                let at = self.spans[seg.file].offset + seg.file_offset;
                self.parked_io(
                    at,
                    seg.len,
                    |file, pos, range| file.read_exact_at(&mut out[range], pos),
                    "read",
                )?;
                continue;
            }
            if stored.id.is_none() {
                out.fill(0);
                continue;
            }
            self.handle(seg.file, false)?
                .file
                .read_exact_at(out, seg.file_offset)
                .map_err(|e| error(&stored.place.path, "read", e))?;
        }
        Ok(())
    }

    /// Writes `data` at content offset `offset`; padding files are skipped.
    ///
    /// # Errors
    /// [`StorageError`] for the file whose write failed (for example a full disk).
    pub fn write_at(&self, offset: u64, data: &[u8]) -> Result<(), StorageError> {
        for seg in segments(&self.spans, offset, data.len()) {
            let stored = &self.files[seg.file];
            let bytes = &data[seg.range_offset..seg.range_offset + seg.len];
            if stored.parked {
                let at = self.spans[seg.file].offset + seg.file_offset;
                self.parked_io(
                    at,
                    seg.len,
                    |file, pos, range| file.write_all_at(&bytes[range], pos),
                    "write",
                )?;
                continue;
            }
            if stored.id.is_none() {
                continue;
            }
            let path = &stored.place.path;
            let handle = self.handle(seg.file, true)?;
            let mut bytes = bytes;
            let mut at = seg.file_offset;
            if let Some(direct) = &handle.direct {
                let written = self
                    .write_direct(direct, bytes, at)
                    .map_err(|e| error(path, "write", e))?;
                bytes = &bytes[written..];
                at += written as u64;
            }
            handle
                .file
                .write_all_at(bytes, at)
                .map_err(|e| error(path, "write", e))?;
        }
        Ok(())
    }

    /// Reads the whole of piece `index` into `buf` (resized to the piece's length).
    ///
    /// # Errors
    /// As [`Storage::read_at`].
    pub fn read_piece(&self, index: u32, buf: &mut Vec<u8>) -> Result<(), StorageError> {
        buf.resize(self.layout.piece_size(index) as usize, 0);
        self.read_at(self.layout.piece_offset(index), buf)
    }

    /// Writes a complete, verified piece.
    ///
    /// # Errors
    /// As [`Storage::write_at`].
    pub fn write_piece(&self, index: u32, data: &[u8]) -> Result<(), StorageError> {
        self.write_at(self.layout.piece_offset(index), data)
    }

    /// Flushes written data to the disk, that of files whose handle the
    /// cache has closed since too.
    ///
    /// # Errors
    /// [`StorageError`] for the file whose sync failed.
    pub fn sync(&self) -> Result<(), StorageError> {
        for index in self.handles.written() {
            self.handle(index, false)?
                .file
                .sync_all()
                .map_err(|e| error(&self.files[index].place.path, "sync", e))?;
        }
        if let Some(parts) = &self.parts {
            parts.sync()?;
        }
        Ok(())
    }
}

fn error(path: &Path, action: &'static str, source: io::Error) -> StorageError {
    StorageError {
        path: path.to_path_buf(),
        action,
        source,
    }
}
