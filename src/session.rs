//! One torrent's session: wiring and lifecycle.
//!
//! [`Session::start`] loads and validates the torrent, opens and checks the
//! content, binds the listen port, makes the first announce, and spawns the
//! named threads: `piece-manager`, `listener` and `tracker` (peer threads are
//! spawned by the manager). [`Session::wait`] joins them in order: the manager
//! first (it ends when the download completes or on shutdown), then the
//! tracker (which announces `completed` and `stopped`), then the listener.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crossbeam_channel::{Sender, bounded, unbounded};
use log::{debug, info, warn};

use crate::buffers::PieceBuffers;
use crate::error::Error;
use crate::metainfo::{InfoHash, Metainfo};
use crate::peer::PeerContext;
use crate::peer::wire::PeerId;
use crate::piece_manager::{Event, ManagerConfig, Outcome, PieceManager};
use crate::progress::{Progress, check_bar};
use crate::stats::Stats;
use crate::storage::{Access, Storage, StorageError};
use crate::tracker::{self, AnnounceRequest, Announcer, TrackerCommand, TrackerList};
use crate::verifier::{self, Verifier};

/// What the session does with the content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Download into `<dest>/<torrent name>`, then exit.
    Download {
        /// The destination folder.
        dest: PathBuf,
    },
    /// Serve existing content at this path (the file, or the folder of a
    /// multi-file torrent) until stopped.
    Seed {
        /// The content.
        path: PathBuf,
    },
}

/// A validated run configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The `.torrent` file.
    pub torrent: PathBuf,
    /// Download or seed.
    pub mode: Mode,
    /// Port to listen on; 0 lets the OS choose. A taken port falls back to the
    /// next free one.
    pub port: u16,
    /// Peers to dial besides the tracker's.
    pub peers: Vec<SocketAddr>,
    /// Show a live progress line (on a terminal) instead of log lines.
    pub live_progress: bool,
    /// Timeout of one tracker announce.
    pub tracker_timeout: Duration,
    /// Regular upload slots (peers unchoked for their rate), besides the
    /// optimistic one.
    pub upload_slots: usize,
    /// Most peer connections at once.
    pub max_peers: usize,
    /// Write downloaded pieces past the page cache where possible
    /// ([`Storage::enable_direct_writes`]).
    pub direct_io: bool,
}

/// Events may queue up to this many before peers wait: bounds memory held in
/// finished pieces that the manager has not verified yet.
const EVENT_QUEUE: usize = 64;
/// How many ports after the requested one are tried.
const PORT_TRIES: u16 = 10;
/// Peers asked of the tracker.
const NUMWANT: u32 = 50;

/// A running session.
pub struct Session {
    listen_addr: SocketAddr,
    info_hash: InfoHash,
    stats: Arc<Stats>,
    events_tx: Sender<Event>,
    manager: JoinHandle<Result<Outcome, StorageError>>,
    tracker: Option<(Sender<TrackerCommand>, JoinHandle<()>)>,
    listener: JoinHandle<()>,
    listener_stop: Arc<AtomicBool>,
}

/// Asks a session to stop from anywhere (a Ctrl-C handler, a test).
#[derive(Clone)]
pub struct ShutdownHandle(Sender<Event>);

impl ShutdownHandle {
    /// Asks the session to stop; harmless if it already has.
    pub fn shutdown(&self) {
        let _ = self.0.send(Event::Shutdown);
    }
}

/// Reads and validates a `.torrent` file.
///
/// # Errors
/// [`Error::ReadTorrent`] or [`Error::Metainfo`], naming the file.
pub fn load_torrent(path: &Path) -> Result<Metainfo, Error> {
    let bytes = std::fs::read(path).map_err(|source| Error::ReadTorrent {
        path: path.to_path_buf(),
        source,
    })?;
    Metainfo::from_bytes(&bytes).map_err(|source| Error::Metainfo {
        path: path.to_path_buf(),
        source,
    })
}

/// A fresh peer id: our client prefix (Azureus style) and 12 random characters.
pub fn new_peer_id() -> PeerId {
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut id = *b"-BT0100-000000000000";
    // RandomState is seeded from the OS per process, so this needs no extra crate.
    let mut bits = RandomState::new().build_hasher().finish();
    for (i, byte) in id[8..].iter_mut().enumerate() {
        if i == 6 {
            bits = RandomState::new().build_hasher().finish();
        }
        *byte = ALPHABET[(bits % ALPHABET.len() as u64) as usize];
        bits /= ALPHABET.len() as u64;
    }
    PeerId(id)
}

fn bind(port: u16) -> Result<TcpListener, Error> {
    if port == 0 {
        return TcpListener::bind(("0.0.0.0", 0)).map_err(|source| Error::Listen { port, source });
    }
    let mut last = None;
    for candidate in port..=port.saturating_add(PORT_TRIES) {
        match TcpListener::bind(("0.0.0.0", candidate)) {
            Ok(listener) => return Ok(listener),
            Err(e) => {
                debug!("port {candidate} unavailable: {e}");
                last = Some(e);
            }
        }
    }
    Err(Error::Listen {
        port,
        source: last.expect("at least one port was tried"),
    })
}

impl Session {
    /// Prepares everything and starts the session's threads.
    ///
    /// # Errors
    /// Any [`Error`]: a bad torrent, content that cannot be opened (or, when
    /// seeding, does not match), no port, or a tracker that does not answer the
    /// first announce while no `--peer` was given.
    pub fn start(config: &Config) -> Result<Session, Error> {
        let meta = load_torrent(&config.torrent)?;
        info!(
            "torrent {:?}: {} bytes in {} pieces of {}, info-hash {}",
            meta.name,
            meta.total_len(),
            meta.layout.piece_count(),
            meta.layout.piece_len(),
            meta.info_hash
        );
        let (root, access) = match &config.mode {
            Mode::Download { dest } => (dest.join(&meta.name), Access::ReadWrite),
            Mode::Seed { path } => (path.clone(), Access::ReadOnly),
        };
        let seeding = access == Access::ReadOnly;
        let mut storage = Storage::open(&meta, &root, access)?;
        let have = check_existing(&storage, &meta, config.live_progress)?;
        if config.direct_io && !seeding {
            let direct = storage.enable_direct_writes();
            debug!("{direct} files written with direct I/O");
        }
        let storage = Arc::new(storage);
        let have_count = have.iter().filter(|&&h| h).count() as u32;
        if seeding && have_count < meta.layout.piece_count() {
            return Err(Error::SeedMismatch {
                path: root,
                bad_count: meta.layout.piece_count() - have_count,
                piece_count: meta.layout.piece_count(),
                first_bad: have.iter().position(|h| !h).unwrap_or(0) as u32,
            });
        }
        if have_count > 0 && !seeding {
            info!(
                "resuming: {have_count} of {} pieces already verified",
                meta.layout.piece_count()
            );
        }

        let stats = Arc::new(Stats::default());
        let left: u64 = (0..meta.layout.piece_count())
            .filter(|&i| !have[i as usize])
            .map(|i| u64::from(meta.layout.piece_size(i)))
            .sum();
        stats.left.store(left, Ordering::Relaxed);
        stats.have_pieces.store(have_count, Ordering::Relaxed);

        let listener = bind(config.port)?;
        let listen_addr = listener.local_addr().map_err(|source| Error::Listen {
            port: config.port,
            source,
        })?;
        info!("listening on port {}", listen_addr.port());

        let our_id = new_peer_id();
        let (events_tx, events_rx) = bounded(EVENT_QUEUE);
        let request = {
            let stats = Arc::clone(&stats);
            let info_hash = meta.info_hash;
            let port = listen_addr.port();
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

        // The first announce happens here, before any thread starts, so an
        // unreachable tracker with no other peers is an immediate, clear error.
        let mut trackers = TrackerList::http(&meta.trackers, config.tracker_timeout);
        let mut first_wait = None;
        let mut first_min_interval = tracker::DEFAULT_MIN_INTERVAL;
        let mut initial_peers = config.peers.clone();
        if !trackers.is_empty() {
            match trackers.announce(&request(Some(tracker::Event::Started))) {
                Ok(response) => {
                    info!("tracker answered with {} peers", response.peers.len());
                    first_wait = Some(tracker::next_interval(&response));
                    first_min_interval = tracker::min_interval(&response);
                    initial_peers.extend(response.peers);
                }
                // A downloader with nobody to download from cannot do anything;
                // a seeder can still be found by peers that know its address.
                Err(e) if config.peers.is_empty() && !seeding => return Err(Error::Tracker(e)),
                Err(e) => {
                    warn!("{e}; will retry, going on with the peers we know");
                    first_wait = Some(tracker::RETRY_DELAY);
                }
            }
        } else if config.peers.is_empty() {
            warn!(
                "the torrent names no HTTP tracker and no --peer was given: waiting for incoming peers"
            );
        }

        let threads = worker_threads();
        // Enough idle buffers for the pieces the workers may hold.
        let piece_len = meta.layout.piece_len() as usize;
        let buffers = PieceBuffers::new(verifier::backlog_limit(threads, piece_len));
        let ctx = Arc::new(PeerContext {
            info_hash: meta.info_hash,
            our_id,
            storage: Arc::clone(&storage),
            stats: Arc::clone(&stats),
            buffers: buffers.clone(),
            events_tx: events_tx.clone(),
        });
        let progress = Progress::new(meta.total_len(), seeding, config.live_progress);
        let tracker_channel = first_wait.map(|_| unbounded::<TrackerCommand>());
        let manager_config = ManagerConfig {
            stop_when_complete: !seeding,
            upload_slots: config.upload_slots,
            max_peers: config.max_peers,
        };
        let verifier = Verifier::start(
            Arc::clone(&storage),
            meta.piece_hashes.clone().into(),
            buffers.clone(),
            threads,
        )
        .map_err(|e| Error::Thread(format!("cannot start the verifier: {e}")))?;
        let manager = PieceManager::new(
            ctx,
            verifier,
            &have,
            manager_config,
            tracker_channel.as_ref().map(|(tx, _)| tx.clone()),
            progress,
        );
        let manager = thread::Builder::new()
            .name("piece-manager".into())
            .spawn(move || manager.run(events_rx))
            .map_err(|e| Error::Thread(format!("cannot start the piece manager: {e}")))?;
        if !initial_peers.is_empty() {
            let _ = events_tx.send(Event::Peers(initial_peers));
        }

        let listener_stop = Arc::new(AtomicBool::new(false));
        let listener = {
            let events_tx = events_tx.clone();
            let stop = Arc::clone(&listener_stop);
            thread::Builder::new()
                .name("listener".into())
                .spawn(move || accept_loop(&listener, &events_tx, &stop))
                .map_err(|e| Error::Thread(format!("cannot start the listener: {e}")))?
        };

        let tracker = match first_wait.zip(tracker_channel) {
            Some((first_wait, (cmd_tx, cmd_rx))) => {
                let events_tx = events_tx.clone();
                let on_peers = move |peers: Vec<SocketAddr>| {
                    let _ = events_tx.send(Event::Peers(peers));
                };
                let thread = thread::Builder::new()
                    .name("tracker".into())
                    .spawn(move || {
                        tracker::run_announce_loop(
                            Box::new(trackers),
                            first_wait,
                            first_min_interval,
                            cmd_rx,
                            request,
                            on_peers,
                        );
                    })
                    .map_err(|e| Error::Thread(format!("cannot start the tracker thread: {e}")))?;
                Some((cmd_tx, thread))
            }
            None => None,
        };

        Ok(Session {
            listen_addr,
            info_hash: meta.info_hash,
            stats,
            events_tx,
            manager,
            tracker,
            listener,
            listener_stop,
        })
    }

    /// The address the listener is bound to.
    pub fn listen_addr(&self) -> SocketAddr {
        self.listen_addr
    }

    /// The torrent's info-hash.
    pub fn info_hash(&self) -> InfoHash {
        self.info_hash
    }

    /// The session's live counters.
    pub fn stats(&self) -> Arc<Stats> {
        Arc::clone(&self.stats)
    }

    /// A handle that stops the session from another thread.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle(self.events_tx.clone())
    }

    /// Waits for the session to end (complete download, or shutdown), then
    /// announces and stops every thread.
    ///
    /// # Errors
    /// A storage error that stopped the download.
    pub fn wait(self) -> Result<Outcome, Error> {
        let outcome = self
            .manager
            .join()
            .map_err(|_| Error::Thread("the piece manager panicked".into()));
        if let Some((cmd_tx, thread)) = self.tracker {
            if matches!(outcome, Ok(Ok(Outcome::Complete))) {
                let _ = cmd_tx.send(TrackerCommand::Completed);
            }
            let _ = cmd_tx.send(TrackerCommand::Stop);
            let _ = thread.join();
        }
        self.listener_stop.store(true, Ordering::SeqCst);
        // A blocked accept() is woken by connecting to it.
        let wake = SocketAddr::from(([127, 0, 0, 1], self.listen_addr.port()));
        let _ = TcpStream::connect_timeout(&wake, Duration::from_secs(1));
        let _ = self.listener.join();
        Ok(outcome??)
    }
}

/// Starts a session and waits for it to end.
///
/// # Errors
/// As [`Session::start`] and [`Session::wait`].
pub fn run(config: &Config) -> Result<Outcome, Error> {
    Session::start(config)?.wait()
}

/// The `listener` thread: hands every accepted socket to the manager.
fn accept_loop(listener: &TcpListener, events_tx: &Sender<Event>, stop: &AtomicBool) {
    for stream in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        match stream.and_then(|s| s.peer_addr().map(|addr| (s, addr))) {
            Ok((stream, addr)) => {
                debug!("{addr}: incoming connection");
                if events_tx.send(Event::Incoming(stream, addr)).is_err() {
                    return;
                }
            }
            Err(e) => warn!("accepting a connection failed: {e}"),
        }
    }
}

/// Checks content that already exists on disk; fresh files are skipped.
fn check_existing(storage: &Storage, meta: &Metainfo, live: bool) -> Result<Vec<bool>, Error> {
    let count = meta.layout.piece_count();
    if !storage.had_data() {
        return Ok(vec![false; count as usize]);
    }
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

/// Threads that hash: the start-up check, and the verifier while
/// downloading. One per core, up to 4 (beyond that the disk is the limit).
fn worker_threads() -> usize {
    thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(4)
}
