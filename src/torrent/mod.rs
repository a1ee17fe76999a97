//! One torrent of the client: wiring and lifecycle, from what a `.torrent`
//! or a magnet link gives to a verified download or a seed.
//!
//! A torrent goes through visible [`State`]s: fetching metadata (a magnet
//! link: the `info` dictionary comes from peers, [`metadata_phase`]),
//! checking (existing data, piece by piece), downloading, seeding. What the
//! info-hash alone allows starts at once: the routing of incoming
//! connections, the tracker thread, the peer connections. What needs the
//! `info` dictionary (layout, storage, picker, verifier) is created when it
//! is known, from the file or from peers.
//!
//! Peers come from the trackers, the command line and the magnet's `x.pe`,
//! and, unless the torrent is private (BEP 27), from peer exchange and the
//! client's DHT node, which a torrent registers with at its start
//! ([`crate::dht::node::DhtHandle::announce`]: `get_peers`, then
//! `announce_peer` of our port, also when seeding) and leaves at its end;
//! a magnet found private leaves it when its metadata arrives.
//!
//! Threads: `tracker` (announces), and `torrent NAME` (`run.rs`), which
//! runs the metadata phase if needed, the check, then the
//! [`PieceManager`](crate::piece_manager::PieceManager). A
//! magnet's check runs on a `check` thread while the torrent thread keeps
//! taking its events ([`metadata_phase::hold`]), so the peers found while
//! fetching the metadata stay connected. Peer threads belong to its
//! [`PeerTable`].

mod content;
pub mod metadata_phase;
mod run;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crossbeam_channel::{Sender, bounded};
use indicatif::MultiProgress;
use log::{info, warn};

use content::prepare;
use run::Run;

use crate::client::{Client, Router};
use crate::dht::node::DhtHandle;
use crate::error::Error;
use crate::magnet::Magnet;
use crate::metainfo::{InfoHash, Metainfo};
use crate::peer::PeerContext;
use crate::peer_list::PeerSource;
use crate::peer_table::PeerTable;
use crate::piece_manager::{Event, Outcome};
use crate::progress::Progress;
use crate::seed_limit::SeedLimit;
use crate::selection::Selection;
use crate::stats::Stats;
use crate::storage::{Access, Allow};
use crate::tracker::{AnnounceRequest, TrackerList, Trackers};
use crate::untrusted;

/// Events may queue up to this many before peers wait: bounds memory held in
/// finished pieces that the manager has not verified yet.
const EVENT_QUEUE: usize = 64;
/// Longest the exit waits for the tracker threads: their `stopped`
/// announces (the tiers in parallel, at most
/// [`crate::tracker::http::STOPPED_TIMEOUT`] per tracker of a tier that answered),
/// or an announce one was in the middle of.
const TRACKER_STOP_WAIT: Duration = Duration::from_secs(5);

/// Peers asked of the tracker.
const NUMWANT: u32 = 50;
/// `left` announced while the metadata, and so the size, is unknown.
const LEFT_UNKNOWN: u64 = 16 * 1024;

/// What a torrent starts from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A validated `.torrent`.
    File(Metainfo),
    /// A magnet link: info-hash, trackers and maybe peers; the metadata
    /// comes from peers.
    Magnet(Magnet),
}

/// Where a torrent's content lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// Download into `<dest>/<name>`.
    Download(PathBuf),
    /// Seed the content at exactly this path.
    Seed(PathBuf),
    /// Seed the content at `<dir>/<name>` (several torrents at once).
    SeedUnder(PathBuf),
}

impl Placement {
    fn root(&self, name: &str) -> (PathBuf, Access) {
        match self {
            Placement::Download(dest) => (dest.join(name), Access::ReadWrite),
            Placement::Seed(path) => (path.clone(), Access::ReadOnly),
            Placement::SeedUnder(dir) => (dir.join(name), Access::ReadOnly),
        }
    }

    fn seeding(&self) -> bool {
        !matches!(self, Placement::Download(_))
    }
}

/// Options shared by the torrents of a run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Peers to dial besides the trackers'.
    pub peers: Vec<SocketAddr>,
    /// Show live progress lines instead of log lines.
    pub live_progress: bool,
    /// Timeout of one tracker announce.
    pub tracker_timeout: Duration,
    /// Regular upload slots.
    pub upload_slots: usize,
    /// Most peer connections, for the whole process.
    pub max_peers: usize,
    /// Write pieces past the page cache where possible.
    pub direct_io: bool,
    /// What downloads may do to existing files (`--allow-hard-links`,
    /// `--allow-overwrite`).
    pub allow: Allow,
    /// Write the metainfo here once known.
    pub save_torrent: Option<PathBuf>,
    /// Label progress lines with the torrent's name (several torrents).
    pub labelled: bool,
    /// Peer exchange (BEP 11) for torrents that are not private (BEP 27).
    pub pex: bool,
    /// The files a download fetches (`--files`, `--exclude`); applied
    /// once the metadata is known. Seeding serves every file.
    pub selection: Selection,
    /// When the complete torrent stops seeding (`--seed-ratio`,
    /// `--seed-time`; see
    /// [`ManagerConfig::seed_limit`](crate::piece_manager::ManagerConfig::seed_limit)).
    pub seed_limit: SeedLimit,
    /// Announce this often instead of at the trackers' interval.
    pub announce_interval: Option<Duration>,
    /// Progress as JSON lines on stdout instead of the live line.
    pub json: bool,
}

/// The visible state of a torrent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum State {
    /// Fetching the `info` dictionary from peers (BEP 9).
    FetchingMetadata = 0,
    /// Checking existing data.
    Checking = 1,
    /// Fetching pieces.
    Downloading = 2,
    /// Serving a complete torrent.
    Seeding = 3,
}

/// A running torrent.
pub struct Torrent {
    info_hash: InfoHash,
    label: String,
    /// The name from the metadata, once a magnet's has arrived.
    name: Arc<OnceLock<String>>,
    stats: Arc<Stats>,
    state: Arc<AtomicU8>,
    events_tx: Sender<Event>,
    thread: JoinHandle<Result<Outcome, Error>>,
    /// The tracker threads, when the torrent has trackers.
    tracker: Option<Trackers>,
    router: Arc<Router>,
    /// The DHT node, when the torrent uses it (registered at the start,
    /// forgotten at the end).
    dht: Option<DhtHandle>,
}

impl Torrent {
    /// Starts a torrent in `client`. For a `.torrent` the content is opened
    /// and checked before this returns; for a magnet link that happens once
    /// the metadata has arrived.
    ///
    /// # Errors
    /// Content that cannot be opened (or, when seeding, does not match), a
    /// tracker that does not answer the first announce while no peer is
    /// known, or a thread that cannot start.
    pub fn start(
        client: &Client,
        source: Source,
        placement: Placement,
        options: &Options,
        multi: Option<&MultiProgress>,
    ) -> Result<Torrent, Error> {
        let seeding = placement.seeding();
        let stats = Arc::new(Stats::default());
        let state = Arc::new(AtomicU8::new(State::FetchingMetadata as u8));
        let (info_hash, label, trackers, mut initial_peers, meta) = match source {
            Source::File(meta) => {
                // Names come from outside: logged and shown only escaped.
                let label = untrusted::show(&meta.name);
                (
                    meta.info_hash,
                    label,
                    meta.trackers.clone(),
                    vec![],
                    Some(meta),
                )
            }
            Source::Magnet(magnet) => {
                info!("magnet {}: fetching metadata", magnet.info_hash);
                let tiers = magnet.trackers.iter().map(|t| vec![t.clone()]).collect();
                let peers = resolve_peers(&magnet.peers);
                let label = untrusted::show(&magnet.display_name());
                (magnet.info_hash, label, tiers, peers, None)
            }
        };
        initial_peers.extend(&options.peers);
        // BEP 27: a private torrent's peers come from its trackers only (and
        // the ones the user names). A magnet's is known with its metadata.
        let private = meta.as_ref().is_some_and(|m| m.private);
        let pex = options.pex && !private;
        if private && options.pex {
            info!("{label}: private torrent: no peer exchange");
        }
        // BEP 27 too: a private torrent never uses the DHT.
        let dht = client.dht().filter(|_| !private).cloned();
        if private && client.dht().is_some() {
            info!("{label}: private torrent: no DHT");
        }
        let prepared = match &meta {
            Some(meta) => {
                state.store(State::Checking as u8, Ordering::Relaxed);
                Some(prepare(meta, &placement, options, &stats)?)
            }
            None => {
                stats.left.store(LEFT_UNKNOWN, Ordering::Relaxed);
                None
            }
        };

        let our_id = client.our_id();
        let port = client.listen_addr().port();
        let (events_tx, events_rx) = bounded(EVENT_QUEUE);
        let request = {
            let stats = Arc::clone(&stats);
            move |event| AnnounceRequest {
                info_hash,
                peer_id: our_id,
                port,
                uploaded: stats.uploaded.load(Ordering::Relaxed),
                downloaded: stats.downloaded.load(Ordering::Relaxed),
                left: stats.left.load(Ordering::Relaxed),
                event,
                numwant: NUMWANT,
            }
        };
        // With peers to dial (or as a seeder, which waits for peers anyway,
        // or with a DHT node that has someone to ask) the tracker threads
        // (one per tier) announce while the torrent works. With no other
        // way to find anyone, the start waits for the first tier to answer,
        // so trackers that all fail are an immediate, clear error.
        let (list, rejected) =
            TrackerList::new(&trackers, options.tracker_timeout, client.local_ip());
        let list = list.with_interval(options.announce_interval);
        for e in &rejected {
            warn!("{}: skipping a tracker: {e}", label);
        }
        let dht_searches = dht.as_ref().is_some_and(DhtHandle::has_contacts);
        let must_wait = initial_peers.is_empty() && !seeding && !dht_searches;
        let mut tracker = None;
        if list.is_empty() {
            match rejected.into_iter().next() {
                Some(e) if must_wait => return Err(Error::Tracker(e)),
                _ if initial_peers.is_empty() && dht_searches => info!(
                    "{}: no tracker and no peer known: looking in the DHT",
                    label
                ),
                _ if initial_peers.is_empty() => warn!(
                    "{}: no usable tracker and no peer known: waiting for incoming peers",
                    label
                ),
                _ => {}
            }
        } else {
            let peers_tx = events_tx.clone();
            let on_peers = move |peers: Vec<SocketAddr>| {
                let _ = peers_tx.send(Event::Peers(peers, PeerSource::Tracker));
            };
            let trackers = list
                .spawn(request, on_peers, must_wait)
                .map_err(|e| Error::Thread(format!("cannot start the tracker threads: {e}")))?;
            if must_wait && let Err(e) = trackers.wait_first() {
                trackers.stop(false, TRACKER_STOP_WAIT);
                return Err(Error::Tracker(e));
            }
            tracker = Some(trackers);
        }

        let ctx = Arc::new(PeerContext {
            info_hash,
            our_id,
            listen_port: port,
            stats: Arc::clone(&stats),
            events_tx: events_tx.clone(),
            pex: AtomicBool::new(pex),
            dht_on: AtomicBool::new(dht.is_some()),
            dht: dht.clone(),
            bandwidth: client.bandwidth().clone(),
            local_ip: client.local_ip(),
        });
        let table = PeerTable::new(ctx, Arc::clone(client.budget()));
        let progress = Progress::new(
            prepared.as_ref().map_or(0, |p| p.wanted_len),
            seeding,
            options.live_progress,
            options.labelled.then(|| label.clone()),
            multi,
        );
        let progress = if options.json {
            progress.with_json(&label)
        } else {
            progress
        };
        let name = Arc::new(OnceLock::new());
        let run = Run {
            name: Arc::clone(&name),
            table,
            placement,
            options: options.clone(),
            trackers,
            tracker_tx: tracker.as_ref().map(Trackers::commands),
            progress,
            stats: Arc::clone(&stats),
            state: Arc::clone(&state),
        };
        let thread = thread::Builder::new()
            .name(format!("torrent {}", short(&label)))
            .spawn(move || run.run(meta, prepared, &events_rx));
        let thread = match thread {
            Ok(thread) => thread,
            Err(e) => {
                if let Some(trackers) = tracker {
                    trackers.stop(false, TRACKER_STOP_WAIT);
                }
                return Err(Error::Thread(format!(
                    "cannot start the torrent thread: {e}"
                )));
            }
        };
        client.router().register(info_hash, events_tx.clone());
        if let Some(dht) = &dht {
            let peers_tx = events_tx.clone();
            // Called on the `dht` thread, which must never block: peers
            // that find the queue full are found again by the next lookup.
            dht.announce(info_hash, port, seeding, move |peers| {
                let _ = peers_tx.try_send(Event::Peers(peers, PeerSource::Dht));
            });
        }
        if !initial_peers.is_empty() {
            let _ = events_tx.send(Event::Peers(initial_peers, PeerSource::CommandLine));
        }
        Ok(Torrent {
            info_hash,
            label,
            name,
            stats,
            state,
            events_tx,
            thread,
            tracker,
            router: Arc::clone(client.router()),
            dht,
        })
    }

    /// The torrent's info-hash.
    pub fn info_hash(&self) -> InfoHash {
        self.info_hash
    }

    /// Its name: from the torrent, or the magnet's `dn` (or info-hash)
    /// until the metadata is known; escaped and capped for printing
    /// ([`untrusted::show`]).
    pub fn label(&self) -> &str {
        self.name.get().unwrap_or(&self.label)
    }

    /// Its live counters.
    pub fn stats(&self) -> Arc<Stats> {
        Arc::clone(&self.stats)
    }

    /// Its state now.
    pub fn state(&self) -> State {
        match self.state.load(Ordering::Relaxed) {
            0 => State::FetchingMetadata,
            1 => State::Checking,
            2 => State::Downloading,
            _ => State::Seeding,
        }
    }

    /// A sender that stops the torrent with [`Event::Shutdown`].
    pub fn events_tx(&self) -> Sender<Event> {
        self.events_tx.clone()
    }

    /// Waits for the torrent to end (complete download, or shutdown), then
    /// announces and stops its tracker thread. Returns its name (from the
    /// metadata, for a magnet that got it) and how it ended: `Err` for what
    /// stopped it (bad metadata, storage errors, a thread that died).
    pub fn wait(self) -> (String, Result<Outcome, Error>) {
        let joined = self.thread.join();
        let label = self.name.get().unwrap_or(&self.label).clone();
        let outcome = joined
            .map_err(|_| Error::Thread(format!("the torrent thread of {label} panicked")))
            .and_then(|r| r);
        self.router.unregister(self.info_hash);
        if let Some(dht) = &self.dht {
            dht.forget(self.info_hash);
        }
        if let Some(trackers) = self.tracker {
            // A thread may be in the middle of an announce to trackers that
            // do not answer; the exit waits for them only so long.
            let completed = matches!(outcome, Ok(Outcome::Complete));
            // A tracker that is failing was warned of once already.
            let failing = trackers.failing();
            if !trackers.stop(completed, TRACKER_STOP_WAIT) && !failing {
                warn!(
                    "{}: the tracker did not answer within {}s; not waiting for it",
                    label,
                    TRACKER_STOP_WAIT.as_secs()
                );
            }
        }
        (label, outcome)
    }
}

/// Resolves `x.pe` peers; one that does not resolve is logged and skipped.
fn resolve_peers(peers: &[String]) -> Vec<SocketAddr> {
    peers
        .iter()
        .filter_map(|peer| match crate::cli::peer_address(peer) {
            Ok(addr) => Some(addr),
            Err(e) => {
                warn!("magnet peer {peer:?} skipped: {e}");
                None
            }
        })
        .collect()
}

/// A thread-name-sized form of a torrent's name.
fn short(label: &str) -> String {
    label.chars().take(24).collect()
}

/// Threads that hash: the start-up check, and the verifier while
/// downloading. One per core, up to 4 (beyond that the disk is the limit).
fn worker_threads() -> usize {
    thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(4)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: `x.pe=::1:7000` went to the resolver, which guessed
    /// `[::1]:7000`; a magnet's peers now follow `--peer`'s rules.
    #[test]
    fn magnet_peers_take_bracketed_ipv6_and_skip_the_ambiguous_form() {
        let peers = ["127.0.0.1:7000", "[::1]:7001", "::1:7002", "nonsense"].map(String::from);
        assert_eq!(
            resolve_peers(&peers),
            [
                "127.0.0.1:7000".parse::<SocketAddr>().unwrap(),
                "[::1]:7001".parse().unwrap()
            ]
        );
    }
}
