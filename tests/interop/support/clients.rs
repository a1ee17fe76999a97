//! The clients of the matrix, started as seeders or downloaders on 127.0.0.1
//! and configured for loopback only: no DHT, no local peer discovery, no peer
//! exchange, no UPnP or NAT-PMP, no uTP, plaintext connections allowed, and
//! only the test's opentracker (named by the torrent) as a tracker.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::content::{Made, first_difference};
use super::process::{Proc, free_port, require};

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

/// A running client, killed when dropped.
pub struct Peer {
    /// Which implementation.
    pub client: Client,
    /// For a downloader: the file or top folder it writes.
    dest: Option<PathBuf>,
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
        let name = format!("{} seeder", self.label());
        let logs = work.join("logs");
        let proc = match self {
            Client::Ours => {
                let mut command = Command::new(env!("CARGO_BIN_EXE_bittorrent"));
                command
                    .arg(&made.torrent)
                    .arg("-s")
                    .arg(made.content())
                    .args(["--port", "0", "-vv"]);
                let mut proc = Proc::spawn(&name, command, &logs);
                proc.wait_output("seeding on port ", START_TIMEOUT);
                proc
            }
            Client::Libtorrent => {
                let port = free_port();
                let mut proc = Proc::spawn(&name, lt_peer("seed", made, &made.parent, port), &logs);
                // The line alone on stdout; stderr also says "state changed to: seeding".
                proc.wait_output("\nseeding\n", START_TIMEOUT);
                proc
            }
            Client::Aria2 => {
                let port = free_port();
                let mut command = aria2(&made.parent, port);
                // -V checks the existing data; a ratio of 0 seeds until stopped.
                command.args(["--check-integrity=true", "--seed-ratio=0.0"]);
                command.arg(&made.torrent);
                let mut proc = Proc::spawn(&name, command, &logs);
                proc.wait_output("SEED(", START_TIMEOUT);
                proc
            }
            Client::Transmission => {
                let port = free_port();
                let command = transmission(made, &made.parent, port, work, false);
                let mut proc = Proc::spawn(&name, command, &logs);
                proc.wait_output("Seeding", START_TIMEOUT);
                proc
            }
        };
        Peer {
            client: self,
            dest: None,
            proc,
        }
    }

    /// Starts this client downloading `made` into a fresh folder under
    /// `work`, finding peers through the torrent's tracker.
    pub fn download(self, made: &Made, work: &Path) -> Peer {
        let name = format!("{} downloader", self.label());
        let logs = work.join("logs");
        let dir = work.join(format!("{}-download", self.label()));
        fs::create_dir_all(&dir).unwrap();
        let proc = match self {
            Client::Ours => {
                let port = free_port();
                let mut command = Command::new(env!("CARGO_BIN_EXE_bittorrent"));
                command.arg(&made.torrent).arg("-d").arg(&dir).args([
                    "--port",
                    &port.to_string(),
                    "-vv",
                ]);
                Proc::spawn(&name, command, &logs)
            }
            Client::Libtorrent => {
                let port = free_port();
                let command = lt_peer("download", made, &dir, port);
                Proc::spawn(&name, command, &logs)
            }
            Client::Aria2 => {
                let port = free_port();
                let mut command = aria2(&dir, port);
                // Exit as soon as the download is complete and verified.
                command.args(["--seed-time=0"]).arg(&made.torrent);
                Proc::spawn(&name, command, &logs)
            }
            Client::Transmission => {
                let port = free_port();
                let command = transmission(made, &dir, port, work, true);
                Proc::spawn(&name, command, &logs)
            }
        };
        Peer {
            client: self,
            dest: Some(dir.join(&made.name)),
            proc,
        }
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
}

/// `lt_peer.py`, the libtorrent driver, in `mode` ("seed" or "download").
fn lt_peer(mode: &str, made: &Made, dir: &Path, port: u16) -> Command {
    // python3-libtorrent is built for Debian's own Python, which may not be
    // the `python3` first on PATH.
    require("/usr/bin/python3", "python3-libtorrent");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/lt_peer.py");
    let mut command = Command::new("/usr/bin/python3");
    command
        .arg(script)
        .arg(mode)
        .arg(&made.torrent)
        .arg(dir)
        .args(["--port", &port.to_string()]);
    command
}

/// aria2c with loopback-only settings, saving into `dir`.
fn aria2(dir: &Path, port: u16) -> Command {
    require("aria2c", "aria2");
    let mut command = Command::new("aria2c");
    command
        .arg(format!("--dir={}", dir.display()))
        .arg(format!("--listen-port={port}"))
        .args([
            "--enable-dht=false",
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

/// transmission-cli with a settings file for loopback only, saving into (or
/// seeding from) `dir`. A downloader gets a seed ratio limit of 0, so it
/// exits as soon as its download is complete and verified.
fn transmission(made: &Made, dir: &Path, port: u16, work: &Path, downloading: bool) -> Command {
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
        .arg(&made.torrent);
    command
}
