//! The `torrent NAME` thread: for a magnet, the metadata phase and the
//! check of existing data on a `check` thread while the connections are
//! held ([`metadata_phase`]); then `--save-torrent`, the [`Verifier`] and
//! its piece buffers, and the [`PieceManager`] until the torrent ends. Not owned here: what starts before the thread (the
//! trackers, routing, the DHT announce, a `.torrent`'s check), which is
//! [`Torrent::start`](super::Torrent::start).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread;

use crossbeam_channel::{Receiver, Sender, bounded};
use log::info;

use super::content::{Prepared, prepare, save_torrent};
use super::{Options, Placement, State, metadata_phase, worker_threads};
use crate::buffers::PieceBuffers;
use crate::error::Error;
use crate::metainfo::Metainfo;
use crate::peer::Loaded;
use crate::peer::first_sent::FirstSent;
use crate::peer_table::PeerTable;
use crate::piece_manager::{Event, ManagerConfig, Outcome, PieceManager};
use crate::progress::Progress;
use crate::stats::Stats;
use crate::tracker::TrackerCommand;
use crate::untrusted;
use crate::verifier::{self, Verifier};

/// The torrent thread's state.
pub(super) struct Run {
    pub(super) name: Arc<OnceLock<String>>,
    pub(super) table: PeerTable,
    pub(super) placement: Placement,
    pub(super) options: Options,
    pub(super) trackers: Vec<Vec<String>>,
    pub(super) tracker_tx: Option<Sender<TrackerCommand>>,
    pub(super) progress: Progress,
    pub(super) stats: Arc<Stats>,
    pub(super) state: Arc<AtomicU8>,
}

impl Run {
    /// The torrent thread: metadata (if needed), check, then the manager.
    pub(super) fn run(
        mut self,
        meta: Option<Metainfo>,
        prepared: Option<Prepared>,
        events_rx: &Receiver<Event>,
    ) -> Result<Outcome, Error> {
        let (meta, prepared) = match (meta, prepared) {
            (Some(meta), Some(prepared)) => (meta, prepared),
            _ => {
                let info_hash = self.table.ctx().info_hash;
                let fetched = metadata_phase::fetch(&mut self.table, events_rx, &mut self.progress);
                let Some(info) = fetched else {
                    self.table.shutdown(events_rx);
                    return Ok(Outcome::Stopped);
                };
                let meta =
                    Metainfo::from_info_bytes(&info, self.trackers.clone()).map_err(|source| {
                        self.table.shutdown(events_rx);
                        Error::Metainfo {
                            path: PathBuf::from(format!("magnet:?xt=urn:btih:{info_hash}")),
                            source,
                        }
                    })?;
                info!(
                    "metadata of \"{}\" received: {} bytes in {} pieces",
                    untrusted::show(&meta.name),
                    meta.total_len(),
                    meta.layout.piece_count()
                );
                if meta.private && self.table.ctx().pex_enabled() {
                    // BEP 27: from now on, no ut_pex sent nor heard.
                    info!("private torrent: peer exchange off");
                    self.table.ctx().disable_pex();
                }
                if meta.private
                    && let Some(dht) = &self.table.ctx().dht
                {
                    // BEP 27: a magnet found private leaves the DHT.
                    info!("private torrent: DHT off");
                    self.table.ctx().disable_dht();
                    dht.forget(info_hash);
                }
                self.state.store(State::Checking as u8, Ordering::Relaxed);
                self.progress.rename(&meta.name);
                let _ = self.name.set(untrusted::show(&meta.name));
                self.progress.set_total(meta.total_len());
                // The check (minutes, for a large resumed magnet) runs on a
                // thread of its own while this one keeps the connections
                // and the event channel going.
                let (done_tx, done_rx) = bounded(1);
                let (placement, options, stats) = (&self.placement, &self.options, &self.stats);
                let table = &mut self.table;
                let held = thread::scope(|scope| {
                    let check =
                        thread::Builder::new()
                            .name("check".into())
                            .spawn_scoped(scope, || {
                                let _ = done_tx.send(prepare(&meta, placement, options, stats));
                            });
                    let failed = |what: String| metadata_phase::Held {
                        result: Err(Error::Thread(what)),
                        stopped: false,
                    };
                    match check {
                        Ok(_) => metadata_phase::hold(table, events_rx, &done_rx)
                            .unwrap_or_else(|| failed("the check of existing data died".into())),
                        Err(e) => failed(format!("cannot start the check: {e}")),
                    }
                });
                match held {
                    metadata_phase::Held {
                        result: Ok(prepared),
                        stopped: false,
                    } => {
                        // Only the selected files' pieces are fetched.
                        self.progress.set_total(prepared.wanted_len);
                        (meta, prepared)
                    }
                    metadata_phase::Held { result, .. } => {
                        self.table.shutdown(events_rx);
                        return result.map(|_| Outcome::Stopped);
                    }
                }
            }
        };
        let saved = match &self.options.save_torrent {
            Some(path) => save_torrent(path, &meta),
            None => Ok(()),
        };
        if let Err(e) = saved {
            self.table.shutdown(events_rx);
            return Err(e);
        }
        let seeding = self.placement.seeding();
        let state = if seeding {
            State::Seeding
        } else {
            State::Downloading
        };
        self.state.store(state as u8, Ordering::Relaxed);
        let threads = worker_threads();
        let piece_len = meta.layout.piece_len() as usize;
        let buffers = PieceBuffers::new(verifier::pool_capacity(threads, piece_len));
        let loaded = Arc::new(Loaded {
            storage: Arc::clone(&prepared.storage),
            buffers: buffers.clone(),
            info_bytes: Arc::clone(&meta.info_bytes),
            first_sent: FirstSent::new(meta.layout.piece_count()),
        });
        let verifier = match Verifier::start(
            Arc::clone(&prepared.storage),
            meta.piece_hashes.clone().into(),
            buffers,
            threads,
        ) {
            Ok(verifier) => verifier,
            Err(e) => {
                self.table.shutdown(events_rx);
                return Err(Error::Thread(format!("cannot start the verifier: {e}")));
            }
        };
        let config = ManagerConfig {
            stop_when_complete: !seeding,
            seed_limit: self.options.seed_limit,
            upload_slots: self.options.upload_slots,
            max_peers: self.options.max_peers,
        };
        let manager = PieceManager::new(
            self.table,
            loaded,
            verifier,
            &prepared.have,
            config,
            self.tracker_tx,
            self.progress,
        );
        let outcome = manager.run(events_rx.clone())?;
        Ok(outcome)
    }
}
