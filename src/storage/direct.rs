//! Direct writes (see the module docs of [`super`]): opening the second,
//! `O_DIRECT` handles, and writing whole aligned blocks through them.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;

use super::handles::Handles;
use super::{Access, DIRECT_ALIGN, DIRECT_BUF, Storage, open};

impl Storage {
    /// Opens every file a second time for direct writes (see the module
    /// docs), and turns readahead off on the reading handles; with the
    /// handle cache, files are opened so from now on. Returns how many files
    /// will be written directly: none where the platform or the file system
    /// does not support it, which is not an error.
    pub fn enable_direct_writes(&mut self) -> usize {
        if self.access == Access::ReadOnly {
            return 0;
        }
        let mut enabled = 0;
        match &mut self.handles {
            Handles::Pinned(open_files) => {
                for (stored, open) in self.files.iter().zip(open_files.iter_mut()) {
                    let (Some(open), Some(id)) = (open, stored.id) else {
                        continue;
                    };
                    // Zero-length files are never written.
                    if stored.length == 0 {
                        continue;
                    }
                    if let Some(direct) =
                        open::open_direct(&self.base, &stored.place, id, &open.file)
                    {
                        open.direct = Some(direct);
                        enabled += 1;
                    }
                }
            }
            Handles::Cached(_) => {
                let written = self.files.iter().filter(|f| f.id.is_some() && f.length > 0);
                // One file tells whether the file system takes O_DIRECT.
                let probe = written.clone().next().and_then(|stored| {
                    let id = stored.id?;
                    let reader = open::reopen(&self.base, &stored.place, id).ok()?;
                    open::open_direct(&self.base, &stored.place, id, &reader)
                });
                if probe.is_some() {
                    enabled = written.count();
                    self.direct_on_reopen = true;
                    // Reopened with direct handles and readahead off.
                    self.handles.close_cached();
                }
            }
        }
        self.direct.store(enabled > 0, Ordering::Relaxed);
        enabled
    }

    /// Writes the whole aligned blocks at the start of `bytes` (which go to
    /// file offset `at`) with the direct handle, and returns how many bytes
    /// that was: none when `at` is unaligned or direct writes are off.
    pub(super) fn write_direct(&self, direct: &File, bytes: &[u8], at: u64) -> io::Result<usize> {
        let len = bytes.len() / DIRECT_ALIGN * DIRECT_ALIGN;
        if len == 0
            || !at.is_multiple_of(DIRECT_ALIGN as u64)
            || !self.direct.load(Ordering::Relaxed)
        {
            return Ok(0);
        }
        if bytes.as_ptr().addr().is_multiple_of(DIRECT_ALIGN) {
            // Already aligned (the verifier gathers small pieces so): no copy.
            return match direct.write_all_at(&bytes[..len], at) {
                Ok(()) => Ok(len),
                Err(e) => self.direct_refused(e),
            };
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
            Err(e) => self.direct_refused(e),
        }
    }

    /// A direct write failed with `e`: if the file system wants another
    /// alignment, or no direct I/O at all, buffered writes from now on
    /// (nothing was written: `Ok(0)`); any other error is the write's.
    fn direct_refused(&self, e: io::Error) -> io::Result<usize> {
        if e.kind() != io::ErrorKind::InvalidInput {
            return Err(e);
        }
        log::debug!("direct write refused ({e}); writing through the page cache");
        self.direct.store(false, Ordering::Relaxed);
        Ok(0)
    }
}
