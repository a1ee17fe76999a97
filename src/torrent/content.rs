//! A torrent's content on disk, once its metadata is known: opening (or
//! creating) the files with the run's rules (what existing files may be
//! changed, how many descriptors they may hold), checking what exists of
//! them, and writing the metainfo as a `.torrent` (`--save-torrent`).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use log::{debug, info};

use super::{Options, Placement, worker_threads};
use crate::error::Error;
use crate::metainfo::Metainfo;
use crate::progress::check_bar;
use crate::stats::Stats;
use crate::storage::{self, Access, Storage, StorageOptions};

/// Content opened and checked.
pub(super) struct Prepared {
    /// The content's files.
    pub storage: Arc<Storage>,
    /// Which pieces verified.
    pub have: Vec<bool>,
    /// Bytes of the pieces wanted (all of them unless some files are not
    /// selected).
    pub wanted_len: u64,
}

/// Opens the content and checks what exists of it; records what is left.
pub(super) fn prepare(
    meta: &Metainfo,
    placement: &Placement,
    options: &Options,
    stats: &Stats,
) -> Result<Prepared, Error> {
    info!(
        "torrent \"{}\": {} bytes in {} pieces of {}, info-hash {}",
        crate::untrusted::show(&meta.name),
        meta.total_len(),
        meta.layout.piece_count(),
        meta.layout.piece_len(),
        meta.info_hash
    );
    let (root, access) = placement.root(&meta.name);
    let seeding = access == Access::ReadOnly;
    let storage_options = StorageOptions {
        access,
        allow: options.allow,
        max_open_fds: storage::file_handle_budget(storage::open_file_limit(), options.max_peers),
        direct_io: options.direct_io,
    };
    // Seeding serves every file; a download fetches the selected ones.
    let selected = if seeding {
        vec![true; meta.files.len()]
    } else {
        options
            .selection
            .resolve_for(meta)
            .map_err(|source| Error::Selection {
                name: meta.name.clone(),
                source,
            })?
    };
    let mut storage = Storage::open_selected(meta, &root, storage_options, &selected)?;
    let chosen = selected.iter().filter(|&&s| s).count();
    if chosen < meta.files.len() {
        info!(
            "{chosen} of {} files selected: {} bytes in {} of {} pieces",
            meta.files.len(),
            storage.wanted_len(),
            storage.wanted_count(),
            meta.layout.piece_count()
        );
        if let Some(part) = storage.part_file() {
            debug!(
                "bytes of unselected files in shared pieces go to {}",
                part.display()
            );
        }
    }
    let have = check_existing(&storage, meta, options.live_progress)?;
    if options.direct_io && !seeding {
        let direct = storage.enable_direct_writes();
        debug!("{direct} files written with direct I/O");
    }
    let count = meta.layout.piece_count();
    let have_count = have.iter().filter(|&&h| h).count() as u32;
    if seeding && have_count < count {
        return Err(Error::SeedMismatch {
            path: root,
            bad_count: count - have_count,
            piece_count: count,
            first_bad: have.iter().position(|h| !h).unwrap_or(0) as u32,
        });
    }
    if have_count > 0 && !seeding {
        info!(
            "resuming: {have_count} of {} pieces already verified",
            storage.wanted_count()
        );
    }
    // What is left counts the wanted pieces only (what trackers are told).
    let left: u64 = (0..count)
        .filter(|&i| !have[i as usize] && storage.is_wanted(i))
        .map(|i| u64::from(meta.layout.piece_size(i)))
        .sum();
    let wanted_len = storage.wanted_len();
    stats.left.store(left, Ordering::Relaxed);
    stats.total_len.store(wanted_len, Ordering::Relaxed);
    stats.have_pieces.store(have_count, Ordering::Relaxed);
    Ok(Prepared {
        storage: Arc::new(storage),
        have,
        wanted_len,
    })
}

/// Writes `meta` as a `.torrent` file.
pub(super) fn save_torrent(path: &Path, meta: &Metainfo) -> Result<(), Error> {
    std::fs::write(path, meta.to_torrent_file()).map_err(|source| Error::SaveTorrent {
        path: path.to_path_buf(),
        source,
    })?;
    info!("metainfo saved to {}", path.display());
    Ok(())
}

/// Checks content that already exists on disk; fresh files are skipped.
fn check_existing(storage: &Storage, meta: &Metainfo, live: bool) -> Result<Vec<bool>, Error> {
    if !storage.had_data() {
        let count = meta.layout.piece_count();
        return Ok(vec![false; count as usize]);
    }
    let count = storage.wanted_count();
    info!("checking existing data ({count} pieces)");
    let bar = check_bar(count, live);
    let have = storage.check(&meta.piece_hashes, worker_threads(), &|done| {
        if let Some(bar) = &bar {
            bar.set_position(u64::from(done));
        }
    })?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    Ok(have)
}
