//! Which of a torrent's files are open, within a bound on descriptors; and
//! the process's limit on open files.
//!
//! A torrent whose files fit in its budget ([`file_handle_budget`]) keeps
//! them all open for the whole run ([`Handles::Pinned`]): the hot path is an
//! index into a vector, no lock and no reopen (the README's benchmark, one
//! file, is this case). A torrent with more files keeps at most its budget
//! of descriptors open ([`Handles::Cached`], like libtorrent's file pool of
//! 40): a least-recently-used cache under one lock, which closes the oldest
//! handle to open another. The direct-I/O handle of a file counts in the
//! same bound. A handle in use by a thread while it is evicted stays open
//! until that read or write ends, so the descriptors held never pass the
//! budget plus the number of threads doing I/O at that moment.
//!
//! Reopening is the caller's (the [`super::open`] rules, with a check that
//! the file is still the one first opened).

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::ops::Deref;
use std::sync::{Arc, Mutex};

use super::StorageError;

/// Descriptors kept back from the files for everything else: the standard
/// streams, the listen sockets, trackers, dials in progress, a `.torrent`
/// being read, the Ctrl-C handler's pipe. Peer connections are counted
/// apart (`--max-peers`).
const RESERVED_FDS: u64 = 64;
/// Descriptors each connection holds: its socket and its thread's eventfd.
const FDS_PER_PEER: u64 = 2;

/// The fewest descriptors a torrent's files get, whatever the limit: a
/// file and its direct-I/O handle, twice.
const MIN_FILE_FDS: usize = 4;

/// The most descriptors a torrent's files get, however high the limit.
const MAX_FILE_FDS: usize = 512;

/// Raises the soft limit on open files (`RLIMIT_NOFILE`) to the hard
/// limit, and returns the limit then in force (`None`: unlimited).
pub fn raise_open_file_limit() -> Option<u64> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let raised = Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            log::debug!(
                "cannot raise the open file limit to {:?}: {e}",
                limit.maximum
            );
        }
    }
    open_file_limit()
}

/// The soft limit on open files now in force (`None`: unlimited).
pub fn open_file_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).current
}

/// How many descriptors one torrent's files may hold under `limit` (the
/// soft `RLIMIT_NOFILE`) when up to `max_peers` connections are open: half
/// of what is left after the connections (two descriptors each: the socket
/// and the eventfd its thread parks on, [`crate::peer::wake`]) and 64
/// other descriptors (the other half for other torrents and slack),
/// between 4 and 512.
pub fn file_handle_budget(limit: Option<u64>, max_peers: usize) -> usize {
    let Some(limit) = limit else {
        return MAX_FILE_FDS;
    };
    let per_peer = FDS_PER_PEER * max_peers as u64;
    let left = limit.saturating_sub(per_peer + RESERVED_FDS) / 2;
    usize::try_from(left)
        .unwrap_or(MAX_FILE_FDS)
        .clamp(MIN_FILE_FDS, MAX_FILE_FDS)
}

/// A file's open handles.
pub(super) struct OpenFile {
    /// Read-write (download) or read-only (seed).
    pub file: File,
    /// The same file opened for direct writes, when enabled and supported.
    pub direct: Option<File>,
}

impl OpenFile {
    fn fd_count(&self) -> usize {
        1 + usize::from(self.direct.is_some())
    }
}

/// A handle lent for one read or write.
pub(super) enum Handle<'a> {
    /// From [`Handles::Pinned`].
    Pinned(&'a OpenFile),
    /// From [`Handles::Cached`]; kept open while held.
    Cached(Arc<OpenFile>),
}

impl Deref for Handle<'_> {
    type Target = OpenFile;

    fn deref(&self) -> &OpenFile {
        match self {
            Handle::Pinned(file) => file,
            Handle::Cached(file) => file,
        }
    }
}

/// The open files of one torrent, by file index.
pub(super) enum Handles {
    /// Every file open for the whole run (`None`: padding, never opened).
    Pinned(Vec<Option<OpenFile>>),
    /// At most a budget of descriptors open.
    Cached(Mutex<Lru>),
}

impl Handles {
    /// A cache of at most `budget` descriptors over `file_count` files.
    pub fn cached(file_count: usize, budget: usize) -> Handles {
        Handles::Cached(Mutex::new(Lru {
            budget: budget.max(MIN_FILE_FDS),
            entries: (0..file_count).map(|_| None).collect(),
            order: BTreeMap::new(),
            tick: 0,
            fds: 0,
            written: vec![false; file_count],
        }))
    }

    /// The handle of file `index` (not a padding file), opened by `open`
    /// if the cache closed it. `write` records that the file is written
    /// to, for [`Handles::written`].
    pub fn get(
        &self,
        index: usize,
        write: bool,
        open: impl FnMut() -> Result<OpenFile, StorageError>,
    ) -> Result<Handle<'_>, StorageError> {
        match self {
            Handles::Pinned(files) => Ok(Handle::Pinned(
                files[index]
                    .as_ref()
                    .expect("padding files are never opened"),
            )),
            Handles::Cached(lru) => lock(lru).get(index, write, open).map(Handle::Cached),
        }
    }

    /// Closes every cached handle (so that they are reopened with direct
    /// writes); pinned ones stay.
    pub fn close_cached(&self) {
        if let Handles::Cached(lru) = self {
            let mut lru = lock(lru);
            lru.entries.iter_mut().for_each(|e| *e = None);
            lru.order.clear();
            lru.fds = 0;
        }
    }

    /// The files written since the last call (all of them, when pinned),
    /// whose data a sync must reach even if their handle was closed.
    pub fn written(&self) -> Vec<usize> {
        match self {
            Handles::Pinned(files) => (0..files.len()).filter(|&i| files[i].is_some()).collect(),
            Handles::Cached(lru) => {
                let mut lru = lock(lru);
                let written = lru
                    .written
                    .iter()
                    .enumerate()
                    .filter_map(|(i, &w)| w.then_some(i))
                    .collect();
                lru.written.iter_mut().for_each(|w| *w = false);
                written
            }
        }
    }

    /// Descriptors held now (a test's view of the bound).
    #[cfg(test)]
    pub fn open_fds(&self) -> usize {
        match self {
            Handles::Pinned(files) => files.iter().flatten().map(OpenFile::fd_count).sum(),
            Handles::Cached(lru) => lock(lru).fds,
        }
    }
}

fn lock(lru: &Mutex<Lru>) -> std::sync::MutexGuard<'_, Lru> {
    // A panic while holding the lock leaves the cache consistent enough:
    // at worst a handle is counted that was dropped.
    lru.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A least-recently-used set of open files.
pub(super) struct Lru {
    budget: usize,
    /// By file index: the handle and when it was last used.
    entries: Vec<Option<(Arc<OpenFile>, u64)>>,
    /// Last use -> file index, oldest first.
    order: BTreeMap<u64, usize>,
    tick: u64,
    /// Descriptors held by the entries.
    fds: usize,
    written: Vec<bool>,
}

impl Lru {
    fn get(
        &mut self,
        index: usize,
        write: bool,
        mut open: impl FnMut() -> Result<OpenFile, StorageError>,
    ) -> Result<Arc<OpenFile>, StorageError> {
        self.tick += 1;
        let tick = self.tick;
        self.written[index] |= write;
        if let Some((file, used)) = &mut self.entries[index] {
            self.order.remove(used);
            *used = tick;
            self.order.insert(tick, index);
            return Ok(Arc::clone(file));
        }
        // Room for a file and its direct handle.
        while self.fds + 2 > self.budget && self.evict_oldest() {}
        let file = loop {
            match open() {
                Ok(file) => break Arc::new(file),
                // Other torrents or threads took descriptors: give back ours
                // while there are any.
                Err(e) if too_many_open(&e.source) && self.evict_oldest() => continue,
                Err(e) => return Err(e),
            }
        };
        self.fds += file.fd_count();
        self.entries[index] = Some((Arc::clone(&file), tick));
        self.order.insert(tick, index);
        Ok(file)
    }

    /// Closes the least recently used handle; false when none is open.
    fn evict_oldest(&mut self) -> bool {
        let Some((_, index)) = self.order.pop_first() else {
            return false;
        };
        if let Some((file, _)) = self.entries[index].take() {
            self.fds -= file.fd_count();
        }
        true
    }
}

/// Whether `e` is `EMFILE` or `ENFILE`: out of descriptors.
pub fn too_many_open(e: &io::Error) -> bool {
    let emfile = rustix::io::Errno::MFILE.raw_os_error();
    let enfile = rustix::io::Errno::NFILE.raw_os_error();
    matches!(e.raw_os_error(), Some(code) if code == emfile || code == enfile)
}
