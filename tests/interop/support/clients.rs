//! The clients of the matrix, started as seeders or downloaders on 127.0.0.1
//! and configured for loopback only: no DHT, no local peer discovery, no peer
//! exchange, no UPnP or NAT-PMP, no uTP, plaintext connections allowed, and
//! only the test's opentracker (named by the torrent or the magnet link) as
//! a tracker.
//!
//! A downloader is given the `.torrent` file or a magnet link (BEP 9); a
//! seeder always seeds from the `.torrent` file, and one started with
//! [`Client::seed_for_magnet`] also serves the info dictionary to peers
//! that came by magnet link.
//!
//! [`Options`] starts a peer with more: peers to dial, listening on `::1`
//! only, peer exchange (BEP 11), a download rate limit, part of the
//! content already on disk, and a DHT (BEP 5) on 127.0.0.1 started from
//! given nodes only (see [`super::dht`]; without them ours gets `--no-dht`
//! once it has a DHT). A torrent whose tracker is `udp://` needs
//! nothing more, except from aria2, which speaks to UDP trackers only
//! through its DHT socket: that socket is then opened on 127.0.0.1 with an
//! empty routing table and no entry point, so it reaches nothing else.

use std::ffi::OsStr;
use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::content::{Made, first_difference, write_partial};
use super::dht;
use super::process::{Proc, free_port, free_tcp_and_udp_port, free_udp_port, require};

/// The longest a client may take to check its content and start serving.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest one download of the suite may take (a few MiB over loopback).
pub const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(120);

/// One BitTorrent implementation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    /// This project's `bittorrent` binary.
    Ours,
    /// libtorrent-rasterbar (python3-libtorrent), through `lt_peer.py`.
    Libtorrent,
    /// aria2 (`aria2c`).
    Aria2,
    /// Transmission (`transmission-cli`).
    Transmission,
}

/// What to start a peer with beyond the defaults; everything is off by
/// default. A client that cannot do what is asked fails the test.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Peers to dial (`--peer`), besides the tracker's (ours and
    /// libtorrent).
    pub peers: Vec<SocketAddr>,
    /// Which loopback addresses to listen on.
    pub listen: Listen,
    /// Peer exchange (BEP 11): libtorrent gets its `ut_pex` plugin and PEX
    /// on for the torrent. Ours has it unless `--no-pex`, so nothing is
    /// added for ours.
    pub pex: bool,
    /// (libtorrent) download at most this many bytes a second.
    pub download_limit: Option<u32>,
    /// (downloader of a single file) the first this many pieces are
    /// written into its folder before it starts, zeros after them.
    pub prefill_pieces: Option<usize>,
    /// A word added to the peer's name and download folder, to tell apart
    /// two peers of one client in a test.
    pub tag: Option<&'static str>,
    /// DHT nodes on 127.0.0.1 to start from (BEP 5), and no others: ours
    /// `--dht-bootstrap`, libtorrent `--dht-node`, aria2 (one only)
    /// `--dht-entry-point`; see [`super::dht`]. Empty: no DHT (ours
    /// `--no-dht`, once it has a DHT).
    pub dht: Vec<SocketAddr>,
}

/// The loopback addresses a peer listens on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Listen {
    /// The suite's default: libtorrent, aria2 and Transmission on 127.0.0.1;
    /// ours with no `--bind`.
    #[default]
    Default,
    /// `::1` only (ours `--bind ::1`, libtorrent `--listen-ip ::1`).
    Ipv6Only,
    /// 127.0.0.1 and `::1` on one port: ours with no `--bind` (its default
    /// listens on both families), libtorrent `--listen-ip both`.
    Both,
}

/// A running client, killed when dropped.
pub struct Peer {
    /// Which implementation.
    pub client: Client,
    /// For a downloader: the file or top folder it writes.
    dest: Option<PathBuf>,
    /// The address it listens on: 127.0.0.1 or ::1.
    ip: IpAddr,
    /// The port it listens on.
    port: u16,
    proc: Proc,
}

impl Client {
    fn label(self) -> &'static str {
        match self {
            Client::Ours => "ours",
            Client::Libtorrent => "libtorrent",
            Client::Aria2 => "aria2c",
            Client::Transmission => "transmission",
        }
    }

    /// Starts this client seeding `made` from its source folder; returns
    /// once it has checked the content and is serving.
    pub fn seed(self, made: &Made, work: &Path) -> Peer {
        self.start_seed(made, work, false, &Options::default())
    }

    /// Like [`Client::seed`], with `options`.
    pub fn seed_with(self, made: &Made, work: &Path, options: &Options) -> Peer {
        self.start_seed(made, work, false, options)
    }

    /// Like [`Client::seed`], for downloaders that came by magnet link: the
    /// seeder also serves the info dictionary (BEP 9 `ut_metadata`, over the
    /// BEP 10 extension protocol). libtorrent needs its ut_metadata plugin
    /// for that; ours, aria2 and Transmission serve it anyway.
    pub fn seed_for_magnet(self, made: &Made, work: &Path) -> Peer {
        self.start_seed(made, work, true, &Options::default())
    }

    /// Like [`Client::seed_for_magnet`], with `options`.
    pub fn seed_for_magnet_with(self, made: &Made, work: &Path, options: &Options) -> Peer {
        self.start_seed(made, work, true, options)
    }

    fn start_seed(self, made: &Made, work: &Path, serve_metadata: bool, options: &Options) -> Peer {
        let name = self.name("seeder", options);
        let logs = work.join("logs");
        self.check_options(options, false);
        let (proc, port) = match self {
            Client::Ours => {
                let mut command = Command::new(env!("CARGO_BIN_EXE_bittorrent"));
                // With a DHT, a port free for UDP too (the DHT's socket has
                // the listen port's number); else ours picks one.
                let port = if options.dht.is_empty() {
                    0
                } else {
                    free_tcp_and_udp_port()
                };
                command
                    .arg(&made.torrent)
                    .arg("-s")
                    .arg(made.content())
                    .args(["--port", &port.to_string(), "-vv"]);
                ours_options(&mut command, options, &logs);
                let mut proc = Proc::spawn(&name, command, &logs);
                let output = proc.wait_output("seeding on port ", START_TIMEOUT);
                let port = port_after(&output, "seeding on port ", &name);
                (proc, port)
            }
            Client::Libtorrent => {
                let port = listen_port(options);
                let mut command = lt_peer("seed", made.torrent.as_os_str(), &made.parent, port);
                if serve_metadata {
                    command.arg("--ut-metadata");
                }
                lt_options(&mut command, options);
                let mut proc = Proc::spawn(&name, command, &logs);
                // The line alone on stdout; stderr also says "state changed to: seeding".
                let output = proc.wait_output("\nseeding\n", START_TIMEOUT);
                // The port it really listens on (another if the chosen one was taken).
                let port = port_after(&output, "listening on ", &name);
                (proc, port)
            }
            Client::Aria2 => {
                let port = free_port();
                let mut command = aria2(&made.parent, port, made, work, options);
                // -V checks the existing data; a ratio of 0 seeds until stopped.
                command.args(["--check-integrity=true", "--seed-ratio=0.0"]);
                command.arg(&made.torrent);
                let mut proc = Proc::spawn(&name, command, &logs);
                proc.wait_output("SEED(", START_TIMEOUT);
                (proc, port)
            }
            Client::Transmission => {
                let port = free_port();
                let source = made.torrent.as_os_str();
                let command = transmission(source, &made.parent, port, work, false);
                let mut proc = Proc::spawn(&name, command, &logs);
                proc.wait_output("Seeding", START_TIMEOUT);
                (proc, port)
            }
        };
        Peer {
            client: self,
            dest: None,
            ip: listen_ip(options),
            port,
            proc,
        }
    }

    /// Starts this client downloading `made` into a fresh folder under
    /// `work`, finding peers through the torrent's tracker.
    pub fn download(self, made: &Made, work: &Path) -> Peer {
        self.start_download(made, None, work, &Options::default())
    }

    /// Like [`Client::download`], with `options`.
    pub fn download_with(self, made: &Made, work: &Path, options: &Options) -> Peer {
        self.start_download(made, None, work, options)
    }

    /// Starts this client downloading by `magnet` (a link to `made`, see
    /// [`Made::magnet`]) into a fresh folder under `work`: it first fetches
    /// the info dictionary from the peers it finds through the link's
    /// trackers and peers, then the content.
    pub fn download_magnet(self, made: &Made, magnet: &str, work: &Path) -> Peer {
        self.start_download(made, Some(magnet), work, &Options::default())
    }

    /// Like [`Client::download_magnet`], with `options`.
    pub fn download_magnet_with(
        self,
        made: &Made,
        magnet: &str,
        work: &Path,
        options: &Options,
    ) -> Peer {
        self.start_download(made, Some(magnet), work, options)
    }

    /// Starts a downloader of `made` given its `magnet` link or, if none,
    /// its `.torrent` file: every client takes either as its argument.
    fn start_download(
        self,
        made: &Made,
        magnet: Option<&str>,
        work: &Path,
        options: &Options,
    ) -> Peer {
        let (name, source) = match magnet {
            Some(magnet) => (self.name("magnet downloader", options), OsStr::new(magnet)),
            None => (self.name("downloader", options), made.torrent.as_os_str()),
        };
        let name = name.as_str();
        let logs = work.join("logs");
        self.check_options(options, true);
        let dir = match options.tag {
            Some(tag) => work.join(format!("{}-{tag}-download", self.label())),
            None => work.join(format!("{}-download", self.label())),
        };
        fs::create_dir_all(&dir).unwrap();
        if let Some(pieces) = options.prefill_pieces {
            write_partial(made, &dir, pieces);
        }
        let port = listen_port(options);
        let proc = match self {
            Client::Ours => {
                let mut command = Command::new(env!("CARGO_BIN_EXE_bittorrent"));
                command
                    .arg(source)
                    .arg("-d")
                    .arg(&dir)
                    .args(["--port", &port.to_string(), "-vv"]);
                ours_options(&mut command, options, &logs);
                Proc::spawn(name, command, &logs)
            }
            Client::Libtorrent => {
                // lt_peer.py adds the ut_metadata plugin for a magnet link.
                let mut command = lt_peer("download", source, &dir, port);
                lt_options(&mut command, options);
                Proc::spawn(name, command, &logs)
            }
            Client::Aria2 => {
                let mut command = aria2(&dir, port, made, work, options);
                // Exit as soon as the download is complete and verified.
                command.args(["--seed-time=0"]);
                if magnet.is_some() {
                    // The defaults, said out loud: for a magnet link, keep
                    // the info dictionary in memory only, and go on to
                    // download the content once it has arrived.
                    command.args(["--bt-save-metadata=false", "--bt-metadata-only=false"]);
                }
                command.arg(source);
                Proc::spawn(name, command, &logs)
            }
            Client::Transmission => {
                let command = transmission(source, &dir, port, work, true);
                Proc::spawn(name, command, &logs)
            }
        };
        Peer {
            client: self,
            dest: Some(dir.join(&made.name)),
            ip: listen_ip(options),
            port,
            proc,
        }
    }

    /// The process's name: the client, its tag if any, and its `role`.
    fn name(self, role: &str, options: &Options) -> String {
        match options.tag {
            Some(tag) => format!("{} {tag} {role}", self.label()),
            None => format!("{} {role}", self.label()),
        }
    }

    /// Fails the test when `options` asks this client for what its driver
    /// cannot do.
    fn check_options(self, options: &Options, downloading: bool) {
        let asked = |what: &str, asked: bool, supported: bool| {
            assert!(
                !asked || supported,
                "the suite cannot start {self:?} with {what}"
            );
        };
        let ours_or_lt = matches!(self, Client::Ours | Client::Libtorrent);
        asked("--peer addresses", !options.peers.is_empty(), ours_or_lt);
        asked("IPv6", options.listen != Listen::Default, ours_or_lt);
        asked("peer exchange", options.pex, ours_or_lt);
        let lt = self == Client::Libtorrent;
        asked("a download limit", options.download_limit.is_some(), lt);
        // Transmission 3.00 drops every DHT packet from 127.x: see super::dht.
        let dht_ok = match self {
            Client::Aria2 => options.dht.len() <= 1,
            client => client != Client::Transmission,
        };
        asked("DHT contacts", !options.dht.is_empty(), dht_ok);
        asked(
            "pieces on disk (seeders have them all)",
            options.prefill_pieces.is_some(),
            downloading,
        );
    }
}

impl Peer {
    /// Waits until this downloader exits with status 0, as each client does
    /// once every piece is verified (Transmission because its seed ratio
    /// limit is 0), then compares what it wrote with the source.
    pub fn wait_complete(&mut self, made: &Made) {
        let dest = self.dest.clone().expect("a downloader");
        let name = self.proc.name().to_string();
        let status = self.proc.wait_exit(DOWNLOAD_TIMEOUT);
        assert!(status.success(), "{name} failed: {status}");
        // Transmission 3.00 does not create zero-length files.
        let skip_empty = self.client == Client::Transmission;
        if let Some(difference) = first_difference(&made.content(), &dest, skip_empty) {
            panic!("{name} finished but {difference}");
        }
    }

    /// Everything the client printed so far.
    pub fn output(&self) -> String {
        self.proc.output()
    }

    /// Whether the client is still running (a seeder must be, at the end).
    pub fn is_running(&mut self) -> bool {
        self.proc.exited().is_none()
    }

    /// Waits until the client has printed `needle` (stdout or stderr);
    /// fails the test if it exits first or [`START_TIMEOUT`] passes.
    pub fn wait_output(&mut self, needle: &str) -> String {
        self.proc.wait_output(needle, START_TIMEOUT)
    }

    /// The address of its DHT node (libtorrent and ours: UDP on 127.0.0.1
    /// at the listen port number), for another peer's DHT bootstrap.
    pub fn dht_addr(&self) -> SocketAddr {
        assert!(
            matches!(self.client, Client::Ours | Client::Libtorrent),
            "the suite does not know where the DHT node of {:?} listens",
            self.client
        );
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), self.port)
    }

    /// The address it listens on, for a magnet link's `x.pe` or a `--peer`:
    /// 127.0.0.1, or ::1 when started with [`Listen::Ipv6Only`].
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::new(self.ip, self.port)
    }
}

/// A free port for a peer started with `options` to listen on: free for
/// UDP too if it runs a DHT, whose socket has the same number.
fn listen_port(options: &Options) -> u16 {
    if options.dht.is_empty() {
        free_port()
    } else {
        free_tcp_and_udp_port()
    }
}

/// The loopback address a peer started with `options` listens on.
fn listen_ip(options: &Options) -> IpAddr {
    if options.listen == Listen::Ipv6Only {
        IpAddr::V6(Ipv6Addr::LOCALHOST)
    } else {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    }
}

/// Our binary's arguments for `options`. Peer exchange is on by default,
/// and so is listening on both families.
fn ours_options(command: &mut Command, options: &Options, logs: &Path) {
    // Never the DHT routers on the Internet (`--no-dht`, or loopback
    // contacts, from dht::ours_args below); no state in ~/.local/state.
    command.env(bittorrent::dht::node::NO_DEFAULTS_ENV, "1");
    command.env("XDG_STATE_HOME", logs.join("state"));
    if options.listen == Listen::Ipv6Only {
        command.args(["--bind", "::1"]);
    }
    for peer in &options.peers {
        command.arg("--peer").arg(peer.to_string());
    }
    command.args(dht::ours_args(&options.dht));
}

/// `lt_peer.py`'s arguments for `options`.
fn lt_options(command: &mut Command, options: &Options) {
    match options.listen {
        Listen::Default => {}
        Listen::Ipv6Only => {
            command.args(["--listen-ip", "::1"]);
        }
        Listen::Both => {
            command.args(["--listen-ip", "both"]);
        }
    }
    if options.pex {
        command.arg("--ut-pex");
    }
    if let Some(limit) = options.download_limit {
        command.arg("--download-limit").arg(limit.to_string());
    }
    for peer in &options.peers {
        command.arg("--peer").arg(peer.to_string());
    }
    command.args(dht::lt_args(&options.dht));
}

/// The port number that follows `prefix` in a client's `output`.
fn port_after(output: &str, prefix: &str, name: &str) -> u16 {
    output
        .split(prefix)
        .nth(1)
        .and_then(|rest| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .unwrap_or_else(|| panic!("{name} printed no port after {prefix:?}"))
}

/// `lt_peer.py`, the libtorrent driver, in `mode` ("seed" or "download"),
/// given `source`: the `.torrent` file or (to download) a magnet link.
fn lt_peer(mode: &str, source: &OsStr, dir: &Path, port: u16) -> Command {
    let mut command = dht::lt_peer_command();
    command
        .arg(mode)
        .arg(source)
        .arg(dir)
        .args(["--port", &port.to_string()]);
    command
}

/// aria2c with loopback-only settings, saving into (or seeding from) `dir`,
/// for `made`'s torrent; `work` holds its DHT file when it needs one.
fn aria2(dir: &Path, port: u16, made: &Made, work: &Path, options: &Options) -> Command {
    require("aria2c", "aria2");
    let mut command = Command::new("aria2c");
    if made.announce.starts_with("udp://") || !options.dht.is_empty() {
        // aria2 1.36 sends UDP tracker requests from its DHT socket only:
        // with DHT off it fails them with "udp is not supported yet". So
        // DHT goes on, on 127.0.0.1 and a port of its own; with no entry
        // point it knows no node and sends nothing but the tracker's
        // requests.
        command.args(dht::aria2_args(&options.dht, free_udp_port(), work));
    } else {
        command.arg("--enable-dht=false");
    }
    command
        .arg(format!("--dir={}", dir.display()))
        .arg(format!("--listen-port={port}"))
        .args([
            "--enable-dht6=false",
            "--bt-enable-lpd=false",
            "--enable-peer-exchange=false",
            "--bt-require-crypto=false",
            "--bt-min-crypto-level=plain",
            "--disable-ipv6=true",
            "--file-allocation=none",
            "--summary-interval=1",
            "--console-log-level=notice",
            "--no-conf=true",
        ]);
    command
}

/// transmission-cli with a settings file for loopback only, given `source`
/// (the `.torrent` file or, to download, a magnet link), saving into (or
/// seeding from) `dir`. A downloader gets a seed ratio limit of 0, so it
/// exits as soon as its download is complete and verified.
fn transmission(source: &OsStr, dir: &Path, port: u16, work: &Path, downloading: bool) -> Command {
    require("transmission-cli", "transmission-cli");
    require("stdbuf", "coreutils");
    // A fresh config folder each run: Transmission keeps resume data there.
    let config = work.join(format!("transmission-config-{port}"));
    fs::create_dir_all(&config).unwrap();
    let settings = format!(
        r#"{{
    "dht-enabled": false,
    "lpd-enabled": false,
    "pex-enabled": false,
    "utp-enabled": false,
    "port-forwarding-enabled": false,
    "blocklist-enabled": false,
    "rpc-enabled": false,
    "encryption": 0,
    "peer-port": {port},
    "peer-port-random-on-start": false,
    "bind-address-ipv4": "127.0.0.1",
    "rename-partial-files": false,
    "incomplete-dir-enabled": false,
    "speed-limit-up-enabled": false,
    "speed-limit-down-enabled": false,
    "alt-speed-enabled": false,
    "ratio-limit-enabled": {downloading},
    "ratio-limit": 0,
    "idle-seeding-limit-enabled": false,
    "message-level": 2
}}
"#
    );
    fs::write(config.join("settings.json"), settings).unwrap();
    // Its status lines go to stdout, block-buffered into a file: unbuffer
    // them so `Seeding` is seen when it happens.
    let mut command = Command::new("stdbuf");
    command
        .args(["-o0", "transmission-cli", "-g"])
        .arg(&config)
        .arg("-w")
        .arg(dir)
        .args(["-p", &port.to_string(), "-et", "-M", "-D", "-U"])
        .arg(source);
    command
}
