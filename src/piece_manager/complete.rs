//! What the manager does once the content is complete: a download ends
//! (syncing its files first), or announces `completed` and seeds on until
//! its [`SeedLimit`](crate::seed_limit::SeedLimit); a seed run ends at its
//! limit. Part of the manager's loop ([`super::PieceManager`]).

use std::sync::atomic::Ordering;
use std::time::Instant;

use log::info;

use super::{Outcome, PieceManager};
use crate::storage::StorageError;
use crate::tracker::TrackerCommand;

impl PieceManager {
    /// The content is complete: whether the torrent ends now. A download
    /// with no seed limit ends at once; one with a limit announces
    /// `completed`, then seeds until the limit; a seed run ends at its
    /// limit (as if stopped) or goes on.
    pub(super) fn complete_or_seeding(&mut self) -> Result<Option<Outcome>, StorageError> {
        let limit = self.config.seed_limit;
        let now = Instant::now();
        let since = match self.seeding_since {
            Some(since) => since,
            None => {
                self.seeding_since = Some(now);
                if self.config.stop_when_complete {
                    self.storage.sync()?;
                    let stats = &self.table.ctx().stats;
                    let _ = stats.completed_at.set(now);
                    info!(
                        "download complete: all {} pieces verified",
                        self.have.count()
                    );
                    if !limit.is_set() {
                        return Ok(Some(Outcome::Complete));
                    }
                    if let Some(tx) = &self.tracker_tx {
                        let _ = tx.send(TrackerCommand::Completed);
                    }
                    self.progress.start_seeding(&format!(
                        "download complete; seeding on port {}; stops at {limit}, or press Ctrl-C",
                        self.table.ctx().listen_port
                    ));
                }
                now
            }
        };
        let uploaded = self.table.ctx().stats.uploaded.load(Ordering::Relaxed);
        // The ratio is to what was downloaded: the chosen files' pieces
        // (`--files`), as aria2 divides by the completed length.
        let Some(reached) = limit.reached(uploaded, self.wanted_len, now.duration_since(since))
        else {
            return Ok(None);
        };
        self.progress.note(&format!("seeding ends: {reached}"));
        Ok(Some(if self.config.stop_when_complete {
            Outcome::Complete
        } else {
            Outcome::Stopped
        }))
    }
}
