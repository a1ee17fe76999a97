//! A run of the client: the [`Client`] and its torrents, from the command
//! line's inputs to their outcomes.
//!
//! [`Session::start`] parses each input (a `.torrent` path or a magnet
//! link), starts the client (peer id, listen port, connection budget) and
//! a [`Torrent`] for each distinct info-hash. With one input a failure is
//! the run's error, as before; with several, a torrent that fails is
//! reported by name ([`Session::failures`]) while the others go on.
//! [`Session::wait_all`] joins every torrent, then stops the client.

use std::collections::HashSet;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crossbeam_channel::Sender;
use indicatif::{HumanBytes, MultiProgress};

use crate::bandwidth::Bandwidth;
use crate::client::Client;
use crate::dht::node::DhtConfig;
use crate::error::Error;
use crate::magnet::Magnet;
use crate::metainfo::{InfoHash, MAX_METAINFO_LEN, Metainfo};
use crate::peer::wire::PeerId;
use crate::piece_manager::{Event, Outcome};
use crate::progress::total_bar;
use crate::seed_limit::SeedLimit;
use crate::selection::Selection;
use crate::stats::Stats;
use crate::storage::Allow;
use crate::torrent::{Options, Placement, Source, Torrent};

/// What the run does with the content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Download each torrent into `<dest>/<torrent name>`, then exit.
    Download {
        /// The destination folder.
        dest: PathBuf,
    },
    /// Serve existing content until stopped: with one torrent the content
    /// is at this path (the file, or the folder of a multi-file torrent);
    /// with several, each is at `<path>/<name>`.
    Seed {
        /// The content, or the folder holding each torrent's content.
        path: PathBuf,
    },
}

/// A validated run configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The inputs: `.torrent` paths and magnet links, in order.
    pub torrents: Vec<String>,
    /// Download or seed.
    pub mode: Mode,
    /// Port to listen on; 0 lets the OS choose. A taken port falls back to the
    /// next free one.
    pub port: u16,
    /// Address to listen on, or `None` for every IPv4 and every IPv6
    /// address on one port (IPv4 alone on a machine without IPv6).
    pub bind: Option<std::net::IpAddr>,
    /// Peers to dial besides the trackers', for every torrent.
    pub peers: Vec<SocketAddr>,
    /// Show live progress lines (on a terminal) instead of log lines.
    pub live_progress: bool,
    /// Timeout of one tracker announce.
    pub tracker_timeout: Duration,
    /// Regular upload slots (peers unchoked for their rate), besides the
    /// optimistic one.
    pub upload_slots: usize,
    /// Most peer connections at once, for the whole process.
    pub max_peers: usize,
    /// Write downloaded pieces past the page cache where possible.
    pub direct_io: bool,
    /// Write to downloaded files that have other names too (hard links).
    pub allow_hard_links: bool,
    /// Cut existing files that are longer than the torrent's.
    pub allow_overwrite: bool,
    /// Peer exchange (BEP 11) for torrents that are not private.
    pub pex: bool,
    /// Write the metainfo as a `.torrent` file here (one torrent only).
    pub save_torrent: Option<PathBuf>,
    /// The DHT node (BEP 5) and how it bootstraps; `None` for `--no-dht`.
    pub dht: Option<DhtConfig>,
    /// Most payload bytes a second received from all peers; 0 for no limit.
    pub max_download_rate: u64,
    /// Most payload bytes a second sent to all peers; 0 for no limit.
    pub max_upload_rate: u64,
    /// The files downloads fetch (`--files`, `--exclude`); every file by
    /// default ([`Selection::all`]). Seeding serves every file.
    pub selection: Selection,
    /// When a complete torrent stops seeding (`--seed-ratio`,
    /// `--seed-time`): a download that sets one keeps seeding after it
    /// completes; a seed run ends at it. None set: a download exits when
    /// complete, a seed run goes on until stopped.
    pub seed_limit: SeedLimit,
    /// Announce this often instead of at the trackers' interval
    /// (`--announce-interval`).
    pub announce_interval: Option<Duration>,
    /// Progress and the summary as JSON lines on stdout (`--json`).
    pub json: bool,
}

/// A running client and its torrents.
pub struct Session {
    handle: ShutdownHandle,
    torrents: Vec<Torrent>,
    failures: Vec<(String, Error)>,
    total: Option<(Arc<AtomicBool>, JoinHandle<()>)>,
    // Dropped last: stops the listener once every torrent has ended.
    client: Client,
}

/// Asks every torrent of a session to stop, from anywhere (a Ctrl-C
/// handler, a test). It can exist before the session: torrents join it as
/// they start, and once it has been used no more start.
#[derive(Clone, Default)]
pub struct ShutdownHandle(Arc<Mutex<Stopper>>);

#[derive(Default)]
struct Stopper {
    torrents: Vec<Sender<Event>>,
    stopping: bool,
}

impl ShutdownHandle {
    /// A handle with no torrent yet.
    pub fn new() -> ShutdownHandle {
        ShutdownHandle::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Stopper> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Asks every torrent to stop, and the session to start no more;
    /// harmless if it already has. Returns whether any torrent was running.
    pub fn shutdown(&self) -> bool {
        let torrents = {
            let mut stopper = self.lock();
            stopper.stopping = true;
            stopper.torrents.clone()
        };
        for tx in &torrents {
            let _ = tx.send(Event::Shutdown);
        }
        !torrents.is_empty()
    }

    fn is_stopping(&self) -> bool {
        self.lock().stopping
    }

    /// Adds a torrent that started; it is stopped at once if the handle
    /// was used meanwhile.
    fn join(&self, tx: Sender<Event>) {
        let mut stopper = self.lock();
        if stopper.stopping {
            let _ = tx.send(Event::Shutdown);
        }
        stopper.torrents.push(tx);
    }
}

/// Reads and validates a `.torrent` file: a regular file of at most
/// [`MAX_METAINFO_LEN`] bytes.
///
/// # Errors
/// [`Error::ReadTorrent`] (also for a FIFO, a device, a folder or a file
/// past the bound) or [`Error::Metainfo`], naming the file.
pub fn load_torrent(path: &Path) -> Result<Metainfo, Error> {
    let bytes = read_torrent_file(path).map_err(|source| Error::ReadTorrent {
        path: path.to_path_buf(),
        source,
    })?;
    Metainfo::from_bytes(&bytes).map_err(|source| Error::Metainfo {
        path: path.to_path_buf(),
        source,
    })
}

/// The bytes of the regular file at `path`, refused past [`MAX_METAINFO_LEN`]
/// bytes without reading them all, even if it grows while it is read.
fn read_torrent_file(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::{Error as IoError, Read};
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    // A FIFO would block the open until someone writes to it.
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(
        &mut options,
        rustix::fs::OFlags::NONBLOCK.bits() as i32,
    );
    let file = options.open(path)?;
    let metadata = file.metadata()?;
    if !metadata.is_file() {
        return Err(IoError::other(format!(
            "it is {}, not a regular file",
            file_kind(metadata.file_type())
        )));
    }
    let len = metadata.len();
    if len > MAX_METAINFO_LEN as u64 {
        return Err(IoError::other(format!(
            "it is {len} bytes, more than the limit of {MAX_METAINFO_LEN}"
        )));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(MAX_METAINFO_LEN as u64 + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() > MAX_METAINFO_LEN {
        return Err(IoError::other(format!(
            "it grew past the limit of {MAX_METAINFO_LEN} bytes while read"
        )));
    }
    Ok(bytes)
}

/// What a file that is not a regular one is, in words.
fn file_kind(file_type: std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if file_type.is_fifo() {
            return "a FIFO";
        }
        if file_type.is_char_device() || file_type.is_block_device() {
            return "a device";
        }
        if file_type.is_socket() {
            return "a socket";
        }
    }
    if file_type.is_dir() {
        "a folder"
    } else {
        "something else"
    }
}

/// Reads one input: a magnet link or the path of a `.torrent` file.
///
/// # Errors
/// [`Error::Magnet`] for a malformed magnet link, else as [`load_torrent`].
pub fn load_source(input: &str) -> Result<Source, Error> {
    if Magnet::is_magnet(input) {
        Magnet::parse(input)
            .map(Source::Magnet)
            .map_err(|source| Error::Magnet {
                input: input.to_string(),
                source,
            })
    } else {
        load_torrent(Path::new(input)).map(Source::File)
    }
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

impl Session {
    /// Starts the client and every torrent.
    ///
    /// # Errors
    /// With one input, any [`Error`] that keeps it from starting: a bad
    /// torrent or magnet, content that cannot be opened (or, when seeding,
    /// does not match), no port, or a tracker that does not answer the
    /// first announce while no peer is known. With several, only errors of
    /// the client itself; a torrent's own go to [`Session::failures`].
    pub fn start(config: &Config) -> Result<Session, Error> {
        Session::start_with(config, ShutdownHandle::new())
    }

    /// As [`Session::start`], with a `handle` made beforehand (so that a
    /// Ctrl-C handler can stop the torrents that started while later ones
    /// are still checking their data).
    ///
    /// # Errors
    /// As [`Session::start`].
    pub fn start_with(config: &Config, handle: ShutdownHandle) -> Result<Session, Error> {
        let single = config.torrents.len() == 1;
        let mut sources = Vec::new();
        let mut failures = Vec::new();
        let mut seen: HashSet<InfoHash> = HashSet::new();
        for input in &config.torrents {
            match load_source(input) {
                Ok(source) => {
                    let info_hash = match &source {
                        Source::File(meta) => meta.info_hash,
                        Source::Magnet(magnet) => magnet.info_hash,
                    };
                    // The same info-hash given twice is one torrent.
                    if seen.insert(info_hash) {
                        sources.push((input.clone(), source));
                    }
                }
                Err(e) if single => return Err(e),
                Err(e) => failures.push((input.clone(), e)),
            }
        }
        let mut client = Client::start(config.bind, config.port, config.max_peers, new_peer_id())?;
        client.set_bandwidth(Bandwidth::new(
            config.max_download_rate,
            config.max_upload_rate,
        ));
        match (&config.dht, config.bind) {
            // The node is IPv4 only (no BEP 32): on an IPv6 address it
            // would listen on every IPv4 one, which the user did not ask.
            (Some(_), Some(ip @ IpAddr::V6(_))) => {
                log::info!("dht: off, since --bind {ip} is IPv6 and the DHT node is IPv4 only");
            }
            (Some(dht), bind) => {
                if let Err(e) = client.start_dht(dht, bind) {
                    log::warn!("cannot start the DHT node: {e}; going on without it");
                }
            }
            (None, _) => {}
        }
        // Several distinct torrents, not inputs: a duplicate or a bad input
        // leaves `-s PATH` meaning the content, as with one.
        let several = sources.len() > 1;
        let multi = (config.live_progress && several).then(MultiProgress::new);
        let options = Options {
            peers: config.peers.clone(),
            live_progress: config.live_progress,
            tracker_timeout: config.tracker_timeout,
            upload_slots: config.upload_slots,
            max_peers: config.max_peers,
            direct_io: config.direct_io,
            allow: Allow {
                hard_links: config.allow_hard_links,
                overwrite: config.allow_overwrite,
            },
            save_torrent: config.save_torrent.clone(),
            labelled: several,
            pex: config.pex,
            selection: config.selection.clone(),
            seed_limit: config.seed_limit,
            announce_interval: config.announce_interval,
            json: config.json,
        };
        let placement = match (&config.mode, several) {
            (Mode::Download { dest }, _) => Placement::Download(dest.clone()),
            (Mode::Seed { path }, false) => Placement::Seed(path.clone()),
            (Mode::Seed { path }, true) => Placement::SeedUnder(path.clone()),
        };
        let mut torrents = Vec::new();
        for (input, source) in sources {
            if handle.is_stopping() {
                break;
            }
            match Torrent::start(&client, source, placement.clone(), &options, multi.as_ref()) {
                Ok(torrent) => {
                    handle.join(torrent.events_tx());
                    torrents.push(torrent);
                }
                Err(e) if single => return Err(e),
                Err(e) => failures.push((input, e)),
            }
        }
        let total = multi.and_then(|multi| {
            let stats: Vec<Arc<Stats>> = torrents.iter().map(Torrent::stats).collect();
            show_total(&multi, stats)
        });
        Ok(Session {
            handle,
            torrents,
            failures,
            total,
            client,
        })
    }

    /// The DHT node, when it runs (not with `--no-dht`).
    pub fn dht(&self) -> Option<&crate::dht::node::DhtHandle> {
        self.client.dht()
    }

    /// The address the listener is bound to.
    pub fn listen_addr(&self) -> SocketAddr {
        self.client.listen_addr()
    }

    /// The torrents that started, in input order.
    pub fn torrents(&self) -> &[Torrent] {
        &self.torrents
    }

    /// The first torrent's info-hash.
    ///
    /// # Panics
    /// When no torrent started (a session of one input always has one).
    pub fn info_hash(&self) -> InfoHash {
        self.torrents[0].info_hash()
    }

    /// The first torrent's live counters.
    ///
    /// # Panics
    /// When no torrent started.
    pub fn stats(&self) -> Arc<Stats> {
        self.torrents[0].stats()
    }

    /// The inputs that could not start, with their errors; taken once.
    pub fn failures(&mut self) -> Vec<(String, Error)> {
        std::mem::take(&mut self.failures)
    }

    /// A handle that stops every torrent from another thread.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.handle.clone()
    }

    /// Waits for every torrent to end, then stops the client. Returns each
    /// torrent's name and outcome, in input order.
    pub fn wait_all(mut self) -> Vec<(String, Result<Outcome, Error>)> {
        let results = self.torrents.drain(..).map(Torrent::wait).collect();
        if let Some((stop, thread)) = self.total.take() {
            stop.store(true, Ordering::Relaxed);
            let _ = thread.join();
        }
        results
    }

    /// Waits for the session's torrents to end; the outcome of a session of
    /// one torrent.
    ///
    /// # Errors
    /// The first torrent's error.
    pub fn wait(self) -> Result<Outcome, Error> {
        let mut results = self.wait_all();
        if results.is_empty() {
            return Ok(Outcome::Stopped);
        }
        results.remove(0).1
    }
}

/// Starts the `progress` thread that draws the total line of several
/// torrents from their counters; without it there is no total line.
fn show_total(
    multi: &MultiProgress,
    stats: Vec<Arc<Stats>>,
) -> Option<(Arc<AtomicBool>, JoinHandle<()>)> {
    let bar = total_bar(multi);
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::clone(&stop);
    let thread = thread::Builder::new()
        .name("progress".into())
        .spawn(move || {
            let draw = || {
                let get = |f: fn(&Stats) -> u64| stats.iter().map(|s| f(s)).sum::<u64>();
                let total = get(|s| s.total_len.load(Ordering::Relaxed));
                let left = get(|s| {
                    let total = s.total_len.load(Ordering::Relaxed);
                    s.left.load(Ordering::Relaxed).min(total)
                });
                let peers = get(|s| u64::from(s.peers.load(Ordering::Relaxed)));
                bar.set_length(total);
                bar.set_position(total - left);
                bar.set_message(format!(
                    "{peers} peers, {} up",
                    HumanBytes(get(|s| s.uploaded.load(Ordering::Relaxed)))
                ));
            };
            while !done.load(Ordering::Relaxed) {
                draw();
                thread::sleep(Duration::from_millis(200));
            }
            draw();
            bar.abandon();
        });
    match thread {
        Ok(thread) => Some((stop, thread)),
        Err(e) => {
            log::warn!("no total progress line: cannot start its thread: {e}");
            None
        }
    }
}

/// Starts a session and waits for it to end.
///
/// # Errors
/// As [`Session::start`] and [`Session::wait`].
pub fn run(config: &Config) -> Result<Outcome, Error> {
    Session::start(config)?.wait()
}
