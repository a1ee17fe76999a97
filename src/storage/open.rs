//! Opening a torrent's files without being led outside the destination, and
//! refusing what cannot be the torrent's data.
//!
//! Download mode: the folder the user named (DEST) is opened once, following
//! links (the user chose it), and everything below it is reached from that
//! descriptor one component at a time with `openat` and `O_NOFOLLOW`: a
//! symbolic link anywhere below DEST, to a folder or to a file, is refused
//! with an error naming it, never followed, so a link planted in DEST cannot
//! make a run create, cut or write anything elsewhere. Missing folders are
//! made with `mkdirat` in the folder just opened. An existing file is refused
//! when it is not a regular file (a FIFO, a device), when it has other names
//! (hard links, unless [`Allow::hard_links`]), and when it is longer than the
//! torrent's file (it cannot be this torrent's data; unless
//! [`Allow::overwrite`]). Files are opened with `O_NONBLOCK`, cleared once
//! the descriptor is known to be a regular file, so that a FIFO swapped in
//! between the check and the open cannot block.
//!
//! Seed mode writes nothing, so paths are followed as given; only what is not
//! a regular file is refused, before it is opened.
//!
//! Out of scope: which files stay open ([`super::handles`]), reading and
//! writing ([`super::Storage`]).

use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use super::{StorageError, error};

/// What a download may do to files that exist already.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Allow {
    /// Write to a file that has other names too (`st_nlink > 1`), which
    /// changes the content seen through every name (`--allow-hard-links`).
    pub hard_links: bool,
    /// Cut a file that is longer than the torrent's file to its length
    /// (`--allow-overwrite`).
    pub overwrite: bool,
}

/// Where a torrent's files are looked up.
pub(super) enum Base {
    /// Download: DEST, opened once; nothing below it is followed.
    Beneath {
        /// The folder's descriptor.
        dir: OwnedFd,
        /// Its path, for messages.
        path: PathBuf,
    },
    /// Seed: paths as given (nothing is written).
    Paths,
}

/// One file's place.
pub(super) struct Place {
    /// Its whole path: for messages, and for opening in seed mode.
    pub path: PathBuf,
    /// Its components below DEST (download mode).
    pub below: Vec<OsString>,
}

/// The identity of an opened file, so that a reopen (of a handle the cache
/// closed) can tell that it found the same file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FileId {
    dev: u64,
    ino: u64,
}

/// A file opened for the first time.
pub(super) struct Opened {
    /// The handle: read-write in download mode, read-only when seeding.
    pub file: File,
    /// Its identity.
    pub id: FileId,
    /// Its length before it was sized to the torrent's.
    pub old_len: u64,
}

impl Base {
    /// Download mode under `dest`, which is created if missing (following
    /// links: the user named it).
    pub fn beneath(dest: &Path) -> Result<Base, StorageError> {
        fs::create_dir_all(dest).map_err(|e| error(dest, "create folder", e))?;
        let dir = rustix::fs::open(
            dest,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| error(dest, "open folder", e.into()))?;
        Ok(Base::Beneath {
            dir,
            path: dest.to_path_buf(),
        })
    }
}

/// Opens the file at `place` for the first time. Download mode (`Beneath`):
/// creates it (and its folders) if missing, refuses what [`Allow`] does not
/// allow, and sizes it to `length` (sparse). Seed mode: opens it read-only;
/// its length must be `length`.
pub(super) fn open_first(
    base: &Base,
    place: &Place,
    length: u64,
    allow: Allow,
) -> Result<Opened, StorageError> {
    let path = &place.path;
    let Base::Beneath { dir, path: dest } = base else {
        let file = open_seed(path)?;
        let meta = file
            .metadata()
            .map_err(|e| error(path, "read metadata of", e))?;
        if meta.len() != length {
            return Err(error(
                path,
                "seed",
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("file is {} bytes, the torrent says {length}", meta.len()),
                ),
            ));
        }
        return Ok(Opened {
            file,
            id: id_of(&meta),
            old_len: meta.len(),
        });
    };
    let (leaf, folders) = place.below.split_last().expect("a place has a name");
    let parent = walk(dir, dest, folders, true)?;
    let parent = parent.as_ref().map_or(dir.as_fd(), |d| d.as_fd());
    // Checked before the open, so that no device or FIFO is ever opened.
    match rustix::fs::statat(parent, leaf.as_os_str(), AtFlags::SYMLINK_NOFOLLOW) {
        Ok(stat) => refuse_unless(path, file_type(&stat), FileType::RegularFile)?,
        Err(Errno::NOENT) => {}
        Err(e) => return Err(error(path, "open", e.into())),
    }
    let flags = OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::NONBLOCK;
    let file = open_leaf(parent, leaf, path, flags, "create")?;
    let meta = file
        .metadata()
        .map_err(|e| error(path, "read metadata of", e))?;
    if meta.nlink() > 1 && !allow.hard_links {
        return Err(refused(
            path,
            format!(
                "it has {} names (hard links), and writing it would change the file under \
                 its other names too; --allow-hard-links allows it",
                meta.nlink()
            ),
        ));
    }
    let old_len = meta.len();
    if old_len > length && !allow.overwrite {
        return Err(refused(
            path,
            format!(
                "it is {old_len} bytes, longer than the torrent's {length}, so it is not this \
                 torrent's data; refusing to cut it (--allow-overwrite allows it)"
            ),
        ));
    }
    if old_len != length {
        // Growing makes a sparse file and loses nothing.
        file.set_len(length).map_err(|e| error(path, "resize", e))?;
    }
    Ok(Opened {
        file,
        id: id_of(&meta),
        old_len,
    })
}

/// Opens `place` again, after the handle cache closed it: read-write in
/// download mode, read-only when seeding; the same rules as the first open,
/// nothing created, and the file must be the one first opened (`id`).
pub(super) fn reopen(base: &Base, place: &Place, id: FileId) -> Result<File, StorageError> {
    let path = &place.path;
    let file = match base {
        Base::Paths => open_seed(path)?,
        Base::Beneath { dir, path: dest } => {
            let (leaf, folders) = place.below.split_last().expect("a place has a name");
            let parent = walk(dir, dest, folders, false)?;
            let parent = parent.as_ref().map_or(dir.as_fd(), |d| d.as_fd());
            let flags = OFlags::RDWR | OFlags::NOFOLLOW | OFlags::NONBLOCK;
            open_leaf(parent, leaf, path, flags, "open")?
        }
    };
    let meta = file
        .metadata()
        .map_err(|e| error(path, "read metadata of", e))?;
    if id_of(&meta) != id {
        return Err(refused(
            path,
            "it was replaced by another file during the run".into(),
        ));
    }
    Ok(file)
}

/// `place` opened for direct writes (download mode), if the platform and
/// the file system allow, and if it is still the file first opened; then
/// readahead is turned off on `reader`, its reading handle, so that reads
/// never cache blocks that are later written directly.
#[cfg(target_os = "linux")]
pub(super) fn open_direct(base: &Base, place: &Place, id: FileId, reader: &File) -> Option<File> {
    let Base::Beneath { dir, path: dest } = base else {
        return None;
    };
    let (leaf, folders) = place.below.split_last()?;
    let parent = walk(dir, dest, folders, false).ok()?;
    let parent = parent.as_ref().map_or(dir.as_fd(), |d| d.as_fd());
    let flags = OFlags::WRONLY | OFlags::DIRECT | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let direct =
        File::from(rustix::fs::openat(parent, leaf.as_os_str(), flags, Mode::empty()).ok()?);
    if id_of(&direct.metadata().ok()?) != id {
        return None;
    }
    rustix::fs::fadvise(reader, 0, None, rustix::fs::Advice::Random).ok()?;
    Some(direct)
}

#[cfg(not(target_os = "linux"))]
pub(super) fn open_direct(_: &Base, _: &Place, _: FileId, _: &File) -> Option<File> {
    None
}

/// Seed mode: `path` (links followed) opened read-only, once it is known to
/// be a regular file.
fn open_seed(path: &Path) -> Result<File, StorageError> {
    let meta = fs::metadata(path).map_err(|e| error(path, "open", e))?;
    refuse_unless(path, mode_type(&meta), FileType::RegularFile)?;
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(OFlags::NONBLOCK.bits() as i32)
        .open(path)
        .map_err(|e| error(path, "open", e))?;
    regular_and_blocking(file, path)
}

/// Opens `leaf` in `parent` with `flags` (which hold `O_NOFOLLOW` and
/// `O_NONBLOCK`); checks that it is a regular file and clears `O_NONBLOCK`.
fn open_leaf(
    parent: BorrowedFd<'_>,
    leaf: &OsStr,
    path: &Path,
    flags: OFlags,
    action: &'static str,
) -> Result<File, StorageError> {
    let fd = rustix::fs::openat(
        parent,
        leaf,
        flags | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o666),
    )
    .map_err(|e| explain(parent, leaf, path, e, action, FileType::RegularFile))?;
    regular_and_blocking(File::from(fd), path)
}

/// `file` if it is a regular file (it was opened with `O_NONBLOCK`, so a
/// FIFO or device did not block), with `O_NONBLOCK` cleared.
fn regular_and_blocking(file: File, path: &Path) -> Result<File, StorageError> {
    let meta = file
        .metadata()
        .map_err(|e| error(path, "read metadata of", e))?;
    refuse_unless(path, mode_type(&meta), FileType::RegularFile)?;
    rustix::fs::fcntl_setfl(&file, OFlags::empty()).map_err(|e| error(path, "open", e.into()))?;
    Ok(file)
}

/// Opens each of `folders` in turn below `dest` (`dir`), never following a
/// link, creating missing ones when `create`. Returns the last folder, or
/// `None` when there are none (the file is in DEST itself).
fn walk(
    dir: &OwnedFd,
    dest: &Path,
    folders: &[OsString],
    create: bool,
) -> Result<Option<OwnedFd>, StorageError> {
    let mut current: Option<OwnedFd> = None;
    let mut path = dest.to_path_buf();
    for name in folders {
        path.push(name);
        let parent = current.as_ref().map_or(dir.as_fd(), |d| d.as_fd());
        current = Some(open_folder(parent, name, &path, create)?);
    }
    Ok(current)
}

fn open_folder(
    parent: BorrowedFd<'_>,
    name: &OsStr,
    path: &Path,
    create: bool,
) -> Result<OwnedFd, StorageError> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mut made = false;
    loop {
        match rustix::fs::openat(parent, name, flags, Mode::empty()) {
            Ok(fd) => return Ok(fd),
            Err(Errno::NOENT) if create && !made => {
                match rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(0o777)) {
                    // Another thread or process made it: open it all the same.
                    Ok(()) | Err(Errno::EXIST) => made = true,
                    Err(e) => return Err(error(path, "create folder", e.into())),
                }
            }
            Err(e) => {
                return Err(explain(
                    parent,
                    name,
                    path,
                    e,
                    "open folder",
                    FileType::Directory,
                ));
            }
        }
    }
}

/// The error for a failed `openat` of `name`: a refusal when it is a link
/// or not what was `wanted`, else the system's error.
fn explain(
    parent: BorrowedFd<'_>,
    name: &OsStr,
    path: &Path,
    errno: Errno,
    action: &'static str,
    wanted: FileType,
) -> StorageError {
    match rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(stat) => match refuse_unless(path, file_type(&stat), wanted) {
            Err(refusal) => refusal,
            Ok(()) => error(path, action, errno.into()),
        },
        Err(_) => error(path, action, errno.into()),
    }
}

fn refuse_unless(path: &Path, actual: FileType, wanted: FileType) -> Result<(), StorageError> {
    if actual == wanted {
        return Ok(());
    }
    let why = match actual {
        FileType::Symlink => "it is a symbolic link; refusing to follow it".to_string(),
        other => format!(
            "it is {}, not {}; refusing it",
            kind_name(other),
            kind_name(wanted)
        ),
    };
    Err(refused(path, why))
}

fn kind_name(kind: FileType) -> &'static str {
    match kind {
        FileType::RegularFile => "a regular file",
        FileType::Directory => "a folder",
        FileType::Symlink => "a symbolic link",
        FileType::Fifo => "a fifo (named pipe)",
        FileType::Socket => "a socket",
        FileType::CharacterDevice => "a character device",
        FileType::BlockDevice => "a block device",
        FileType::Unknown => "of an unknown type",
    }
}

fn refused(path: &Path, why: String) -> StorageError {
    error(
        path,
        "use",
        io::Error::new(io::ErrorKind::InvalidInput, why),
    )
}

fn file_type(stat: &rustix::fs::Stat) -> FileType {
    FileType::from_raw_mode(stat.st_mode as _)
}

fn mode_type(meta: &fs::Metadata) -> FileType {
    FileType::from_raw_mode(meta.mode() as _)
}

fn id_of(meta: &fs::Metadata) -> FileId {
    FileId {
        dev: meta.dev(),
        ino: meta.ino(),
    }
}
