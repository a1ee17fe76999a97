//! The torrent's files on disk: creating them, positional reads and writes of
//! content ranges, and checking existing data against the piece hashes.
//!
//! [`Storage`] is shared (`Arc`) between the piece manager, which writes
//! verified pieces, and peer threads, which read pieces they serve. Positional
//! I/O (`read_at`/`write_at`) needs no lock and no shared file cursor. In seed
//! mode files are opened read-only, so seeding can never change the content.
//!
//! Direct writes (Linux, downloads; [`Storage::enable_direct_writes`]): a
//! second handle on each file, opened with `O_DIRECT`, writes verified pieces
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
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use sha1::{Digest, Sha1};

use crate::layout::{FileSpan, Layout, file_spans, segments};
use crate::metainfo::Metainfo;

/// A storage failure, with the path it concerns.
#[derive(Debug)]
pub struct StorageError {
    /// The file or folder involved.
    pub path: PathBuf,
    /// What was being done.
    pub action: &'static str,
    /// The underlying error.
    pub source: io::Error,
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot {} {}", self.action, self.path.display())
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

struct StoredFile {
    path: PathBuf,
    /// `None` for BEP 47 padding files, which read as zeros and are never written.
    handle: Option<File>,
    /// The same file opened for direct writes, when enabled and supported.
    direct: Option<File>,
}

/// Alignment of direct writes: offset, length and memory address. 4 KiB
/// suits disks with 512-byte and 4 KiB sectors alike.
const DIRECT_ALIGN: usize = 4096;

thread_local! {
    /// Each writing thread's aligned buffer for direct writes (one piece).
    static DIRECT_BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The files of one torrent, addressed as one concatenated byte range.
pub struct Storage {
    layout: Layout,
    spans: Vec<FileSpan>,
    files: Vec<StoredFile>,
    access: Access,
    had_data: bool,
    /// Direct writes are in use (cleared when the file system refuses one).
    direct: AtomicBool,
}

impl Storage {
    /// Opens the content of `meta` at `root`: the file itself for a single-file
    /// torrent, the folder for a multi-file one.
    ///
    /// With [`Access::ReadWrite`] missing folders and files are created (zero-length
    /// files too) and each file is sized to its length (sparse where the file
    /// system allows).
    ///
    /// # Errors
    /// [`StorageError`] naming the path that could not be created or opened, or
    /// whose length is wrong in read-only mode.
    pub fn open(meta: &Metainfo, root: &Path, access: Access) -> Result<Storage, StorageError> {
        let mut files = Vec::with_capacity(meta.files.len());
        let mut had_data = access == Access::ReadOnly;
        for entry in &meta.files {
            let path = if meta.multi_file {
                root.join(&entry.path)
            } else {
                root.to_path_buf()
            };
            had_data |= fs::metadata(&path).is_ok_and(|m| m.len() > 0);
            let handle = if entry.padding {
                None
            } else {
                Some(open_file(&path, entry.length, access)?)
            };
            files.push(StoredFile {
                path,
                handle,
                direct: None,
            });
        }
        Ok(Storage {
            layout: meta.layout,
            spans: file_spans(meta.files.iter().map(|f| f.length)),
            files,
            access,
            had_data,
            direct: AtomicBool::new(false),
        })
    }

    /// Opens every file a second time for direct writes (see the module
    /// docs), and turns readahead off on the reading handles. Returns how
    /// many files will be written directly: none where the platform or the
    /// file system does not support it, which is not an error.
    pub fn enable_direct_writes(&mut self) -> usize {
        let mut enabled = 0;
        if self.access == Access::ReadOnly {
            return 0;
        }
        for file in &mut self.files {
            let Some(handle) = &file.handle else {
                continue;
            };
            if handle.metadata().is_ok_and(|m| m.len() == 0) {
                // Zero-length files are never written.
                continue;
            }
            if let Some(direct) = open_direct(&file.path, handle) {
                file.direct = Some(direct);
                enabled += 1;
            }
        }
        self.direct.store(enabled > 0, Ordering::Relaxed);
        enabled
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

    /// Reads `buf.len()` bytes of content starting at content offset `offset`.
    ///
    /// # Errors
    /// [`StorageError`] for the file whose read failed (a file shorter than
    /// expected reads as an `UnexpectedEof` error).
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), StorageError> {
        for seg in segments(&self.spans, offset, buf.len()) {
            let out = &mut buf[seg.range_offset..seg.range_offset + seg.len];
            let file = &self.files[seg.file];
            match &file.handle {
                Some(handle) => handle
                    .read_exact_at(out, seg.file_offset)
                    .map_err(|e| error(&file.path, "read", e))?,
                None => out.fill(0),
            }
        }
        Ok(())
    }

    /// Writes `data` at content offset `offset`; padding files are skipped.
    ///
    /// # Errors
    /// [`StorageError`] for the file whose write failed (for example a full disk).
    pub fn write_at(&self, offset: u64, data: &[u8]) -> Result<(), StorageError> {
        for seg in segments(&self.spans, offset, data.len()) {
            let file = &self.files[seg.file];
            let Some(handle) = &file.handle else {
                continue;
            };
            let mut bytes = &data[seg.range_offset..seg.range_offset + seg.len];
            let mut at = seg.file_offset;
            if let Some(direct) = &file.direct {
                let written = self
                    .write_direct(direct, bytes, at)
                    .map_err(|e| error(&file.path, "write", e))?;
                bytes = &bytes[written..];
                at += written as u64;
            }
            handle
                .write_all_at(bytes, at)
                .map_err(|e| error(&file.path, "write", e))?;
        }
        Ok(())
    }

    /// Writes the whole aligned blocks at the start of `bytes` (which go to
    /// file offset `at`) with the direct handle, and returns how many bytes
    /// that was: none when `at` is unaligned or direct writes are off.
    fn write_direct(&self, direct: &File, bytes: &[u8], at: u64) -> io::Result<usize> {
        let len = bytes.len() / DIRECT_ALIGN * DIRECT_ALIGN;
        if len == 0
            || !at.is_multiple_of(DIRECT_ALIGN as u64)
            || !self.direct.load(Ordering::Relaxed)
        {
            return Ok(0);
        }
        let result = DIRECT_BUF.with_borrow_mut(|buf| {
            if buf.len() < len + DIRECT_ALIGN {
                buf.resize(len + DIRECT_ALIGN, 0);
            }
            let start = buf.as_ptr().align_offset(DIRECT_ALIGN);
            let aligned = &mut buf[start..start + len];
            aligned.copy_from_slice(&bytes[..len]);
            direct.write_all_at(aligned, at)
        });
        match result {
            Ok(()) => Ok(len),
            Err(e) if e.kind() == io::ErrorKind::InvalidInput => {
                // The file system wants another alignment, or no direct I/O
                // at all: buffered writes from now on.
                log::debug!("direct write refused ({e}); writing through the page cache");
                self.direct.store(false, Ordering::Relaxed);
                Ok(0)
            }
            Err(e) => Err(e),
        }
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

    /// Flushes written data to the disk.
    ///
    /// # Errors
    /// [`StorageError`] for the file whose sync failed.
    pub fn sync(&self) -> Result<(), StorageError> {
        for file in &self.files {
            if let Some(handle) = &file.handle {
                handle
                    .sync_all()
                    .map_err(|e| error(&file.path, "sync", e))?;
            }
        }
        Ok(())
    }

    /// Checks every piece on disk against `hashes` on `threads` threads and
    /// returns which pieces are present and correct. `on_piece` is called after
    /// each piece with the number checked so far (for a progress display).
    ///
    /// A piece that cannot be read (file too short) counts as missing; other read
    /// errors are returned.
    ///
    /// # Errors
    /// The first [`StorageError`] other than a short read.
    pub fn check(
        &self,
        hashes: &[[u8; 20]],
        threads: usize,
        on_piece: &(dyn Fn(u32) + Sync),
    ) -> Result<Vec<bool>, StorageError> {
        let count = self.layout.piece_count();
        let next = AtomicU32::new(0);
        let done = AtomicU32::new(0);
        let results = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads.max(1))
                .map(|_| {
                    scope.spawn(|| {
                        let mut found = Vec::new();
                        let mut buf = Vec::new();
                        loop {
                            // Pieces are handed out one at a time, so both threads
                            // read the files roughly in order.
                            let index = next.fetch_add(1, Ordering::Relaxed);
                            if index >= count {
                                return Ok(found);
                            }
                            let ok = match self.read_piece(index, &mut buf) {
                                Ok(()) => Sha1::digest(&buf)[..] == hashes[index as usize],
                                Err(e) if e.source.kind() == io::ErrorKind::UnexpectedEof => false,
                                Err(e) => return Err(e),
                            };
                            if ok {
                                found.push(index);
                            }
                            on_piece(done.fetch_add(1, Ordering::Relaxed) + 1);
                        }
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|w| w.join().expect("check thread panicked"))
                .collect::<Result<Vec<_>, _>>()
        })?;
        let mut have = vec![false; count as usize];
        for index in results.into_iter().flatten() {
            have[index as usize] = true;
        }
        Ok(have)
    }
}

fn error(path: &Path, action: &'static str, source: io::Error) -> StorageError {
    StorageError {
        path: path.to_path_buf(),
        action,
        source,
    }
}

/// `path` opened for direct writes, if the platform and file system allow;
/// then readahead is turned off on `reader`, its reading handle, so that
/// reading one piece does not cache blocks of the next, which may be written
/// directly.
#[cfg(target_os = "linux")]
fn open_direct(path: &Path, reader: &File) -> Option<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let direct = OpenOptions::new()
        .write(true)
        .custom_flags(rustix::fs::OFlags::DIRECT.bits() as i32)
        .open(path)
        .ok()?;
    rustix::fs::fadvise(reader, 0, None, rustix::fs::Advice::Random).ok()?;
    Some(direct)
}

#[cfg(not(target_os = "linux"))]
fn open_direct(_path: &Path, _reader: &File) -> Option<File> {
    None
}

fn open_file(path: &Path, length: u64, access: Access) -> Result<File, StorageError> {
    match access {
        Access::ReadOnly => {
            let file = File::open(path).map_err(|e| error(path, "open", e))?;
            let actual = file
                .metadata()
                .map_err(|e| error(path, "read metadata of", e))?
                .len();
            if actual != length {
                return Err(error(
                    path,
                    "seed",
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("file is {actual} bytes, the torrent says {length}"),
                    ),
                ));
            }
            Ok(file)
        }
        Access::ReadWrite => {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                fs::create_dir_all(parent).map_err(|e| error(parent, "create folder", e))?;
            }
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(path)
                .map_err(|e| error(path, "create", e))?;
            let actual = file
                .metadata()
                .map_err(|e| error(path, "read metadata of", e))?
                .len();
            if actual != length {
                // Growing makes a sparse file; shrinking drops bytes past the
                // torrent's end, which can never belong to it.
                file.set_len(length).map_err(|e| error(path, "resize", e))?;
            }
            Ok(file)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn multi_meta(lengths: &[u64], piece_len: u64, data: &[u8]) -> Metainfo {
        let mut files = String::new();
        for (i, len) in lengths.iter().enumerate() {
            files += &format!("d6:lengthi{len}e4:pathl3:dir4:f{i:03}ee");
        }
        let hashes: Vec<u8> = data
            .chunks(piece_len as usize)
            .flat_map(|c| <[u8; 20]>::from(Sha1::digest(c)))
            .collect();
        let mut bytes = format!(
            "d4:infod5:filesl{files}e4:name4:root12:piece lengthi{piece_len}e6:pieces{}:",
            hashes.len()
        )
        .into_bytes();
        bytes.extend(&hashes);
        bytes.extend(b"ee");
        Metainfo::from_bytes(&bytes).unwrap()
    }

    fn content(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn writes_pieces_across_files_and_reads_them_back() {
        let data = content(100);
        let meta = multi_meta(&[10, 0, 45, 45], 32, &data);
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let storage = Storage::open(&meta, &root, Access::ReadWrite).unwrap();
        assert_eq!(fs::metadata(root.join("dir/f001")).unwrap().len(), 0);
        for index in 0..4u32 {
            let start = index as usize * 32;
            storage
                .write_piece(index, &data[start..(start + 32).min(100)])
                .unwrap();
        }
        let mut back = Vec::new();
        storage.read_piece(1, &mut back).unwrap();
        assert_eq!(back, &data[32..64]);
        let on_disk: Vec<u8> = (0..4)
            .flat_map(|i| fs::read(root.join(format!("dir/f{i:03}"))).unwrap())
            .collect();
        assert_eq!(on_disk, data);
    }

    #[test]
    fn direct_writes_put_every_byte_in_place_across_aligned_and_unaligned_files() {
        // Files that start and end on and off 4 KiB boundaries, so pieces
        // are written partly direct and partly through the page cache.
        let lengths = [5000, 0, 70_000, 12_288, 3];
        let data = content(lengths.iter().sum::<u64>() as usize);
        let meta = multi_meta(&lengths, 16384, &data);
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let mut storage = Storage::open(&meta, &root, Access::ReadWrite).unwrap();
        let direct = storage.enable_direct_writes();
        // Where the file system refuses O_DIRECT (tmpfs on old kernels) this
        // checks the fallback instead.
        eprintln!("{direct} of 4 non-empty files opened for direct writes");
        let count = meta.layout.piece_count();
        // Out of order, as a swarm delivers them.
        for index in (0..count).rev() {
            let start = index as usize * 16384;
            let end = (start + 16384).min(data.len());
            storage.write_piece(index, &data[start..end]).unwrap();
        }
        storage.sync().unwrap();
        let mut back = Vec::new();
        for index in 0..count {
            storage.read_piece(index, &mut back).unwrap();
            let start = index as usize * 16384;
            assert_eq!(
                back,
                data[start..(start + 16384).min(data.len())],
                "piece {index}"
            );
        }
        let on_disk: Vec<u8> = (0..lengths.len())
            .flat_map(|i| fs::read(root.join(format!("dir/f{i:03}"))).unwrap())
            .collect();
        assert_eq!(on_disk, data);
    }

    #[test]
    fn seeding_storage_never_opens_files_for_writing() {
        let data = content(8192);
        let meta = multi_meta(&[8192], 4096, &data);
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        fs::create_dir_all(root.join("dir")).unwrap();
        fs::write(root.join("dir/f000"), &data).unwrap();
        let mut storage = Storage::open(&meta, &root, Access::ReadOnly).unwrap();
        assert_eq!(storage.enable_direct_writes(), 0);
        assert!(storage.write_piece(0, &data[..4096]).is_err());
    }

    #[test]
    fn check_finds_exactly_the_correct_pieces() {
        let data = content(100);
        let meta = multi_meta(&[60, 40], 16, &data);
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        fs::create_dir_all(root.join("dir")).unwrap();
        let mut first = data[..60].to_vec();
        first[20] ^= 0xff; // corrupt piece 1
        fs::write(root.join("dir/f000"), first).unwrap();
        fs::write(root.join("dir/f001"), &data[60..]).unwrap();
        let storage = Storage::open(&meta, &root, Access::ReadOnly).unwrap();
        let have = storage.check(&meta.piece_hashes, 2, &|_| {}).unwrap();
        let expected: Vec<bool> = (0..7).map(|i| i != 1).collect();
        assert_eq!(have, expected);
    }

    #[test]
    fn read_only_open_of_missing_file_names_it() {
        let data = content(20);
        let meta = multi_meta(&[20], 16, &data);
        let dir = tempfile::tempdir().unwrap();
        let e = Storage::open(&meta, dir.path(), Access::ReadOnly)
            .err()
            .unwrap();
        assert_eq!(e.action, "open");
        assert!(e.to_string().contains("f000"), "{e}");
    }

    #[test]
    fn read_only_open_of_wrong_length_is_error() {
        let data = content(20);
        let meta = multi_meta(&[20], 16, &data);
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("dir")).unwrap();
        fs::write(dir.path().join("dir/f000"), b"short").unwrap();
        let e = Storage::open(&meta, dir.path(), Access::ReadOnly)
            .err()
            .unwrap();
        assert!(e.source.to_string().contains("5 bytes"), "{}", e.source);
    }
}
