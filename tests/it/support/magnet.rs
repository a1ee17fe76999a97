//! Helpers for the magnet and several-torrent tests, which drive only the
//! binary: torrents written to disk with their raw info dictionary, magnet
//! URIs built by hand (hex or base32, percent-encoded `dn` and `tr`, `x.pe`),
//! the binary as a seeder (its port read from the `seeding on port N` line),
//! download command lines, and waits that fail with the child's stderr.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use super::bencode::{TFile, make_torrent, raw_value};
use super::{Binary, TIMEOUT};

/// A torrent written to disk: its `.torrent`, its content, its identity.
pub struct Made {
    /// `DIR/NAME.torrent`.
    pub torrent: PathBuf,
    /// `DIR/NAME`: the file, or the folder of a multi-file torrent.
    pub source: PathBuf,
    /// The name in the info dictionary.
    pub name: String,
    /// SHA-1 of the raw info dictionary.
    pub info_hash: [u8; 20],
    /// The raw info dictionary: what ut_metadata transfers.
    pub info: Vec<u8>,
    /// The content, all files joined in torrent order.
    pub data: Vec<u8>,
}

impl Made {
    /// A magnet for this torrent: hex info-hash, `dn`, and the given
    /// trackers (`tr`) and peers (`x.pe`).
    pub fn magnet(&self, trackers: &[&str], peers: &[SocketAddr]) -> String {
        magnet(&hex(&self.info_hash), &self.name, trackers, peers)
    }
}

/// Writes a single-file torrent named `name` over `data` into `dir`.
pub fn single_file(
    dir: &Path,
    name: &str,
    data: Vec<u8>,
    piece_len: usize,
    announce: Option<&str>,
) -> Made {
    let files = vec![TFile { path: vec![], data }];
    write(dir, name, files, piece_len, announce)
}

/// Writes a multi-file torrent named `name` and its folder into `dir`.
pub fn multi_file(
    dir: &Path,
    name: &str,
    files: Vec<TFile>,
    piece_len: usize,
    announce: Option<&str>,
) -> Made {
    assert!(files.iter().all(|f| !f.path.is_empty()));
    write(dir, name, files, piece_len, announce)
}

fn write(
    dir: &Path,
    name: &str,
    files: Vec<TFile>,
    piece_len: usize,
    announce: Option<&str>,
) -> Made {
    let (bytes, info_hash) = make_torrent(name, &files, piece_len, announce);
    let info = raw_value(&bytes, "info").expect("an info dict").to_vec();
    let torrent = dir.join(format!("{name}.torrent"));
    std::fs::write(&torrent, &bytes).unwrap();
    let source = dir.join(name);
    for file in &files {
        let path = file.path.iter().fold(source.clone(), |p, c| p.join(c));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &file.data).unwrap();
    }
    Made {
        torrent,
        source,
        name: name.to_string(),
        info_hash,
        info,
        data: files.iter().flat_map(|f| f.data.clone()).collect(),
    }
}

/// The 40 lowercase hex digits of `hash`.
pub fn hex(hash: &[u8; 20]) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

/// The 32 base32 characters (RFC 4648, upper case, no padding) of `hash`.
pub fn base32(hash: &[u8; 20]) -> String {
    data_encoding::BASE32.encode(hash)
}

/// Percent-encodes every byte outside RFC 3986's unreserved set.
pub fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `magnet:?xt=urn:btih:HASH&dn=NAME&tr=…&x.pe=…`, with `dn` and each `tr`
/// percent-encoded.
pub fn magnet(hash: &str, name: &str, trackers: &[&str], peers: &[SocketAddr]) -> String {
    let mut uri = format!("magnet:?xt=urn:btih:{hash}&dn={}", percent_encode(name));
    for tracker in trackers {
        uri.push_str(&format!("&tr={}", percent_encode(tracker)));
    }
    for peer in peers {
        uri.push_str(&format!("&x.pe={peer}"));
    }
    uri
}

/// `addr`'s port on loopback address `ip`: a session listens on every
/// address, so giving each its own 127.x address keeps peers' IPs apart.
pub fn on_ip(ip: [u8; 4], port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::from(ip), port))
}

/// The binary's arguments to download `inputs` into `dest` from `peers`,
/// on any port, with info logging for failure messages.
pub fn download_cmd(inputs: &[&str], dest: &Path, peers: &[SocketAddr]) -> Vec<String> {
    let mut args: Vec<String> = inputs.iter().map(|s| s.to_string()).collect();
    args.extend(["-d".into(), dest.to_str().unwrap().to_string()]);
    for peer in peers {
        args.extend(["--peer".into(), peer.to_string()]);
    }
    args.extend(["--port", "0", "--no-progress", "-v"].map(String::from));
    args
}

/// The path of `made`'s `.torrent` as an argument.
pub fn arg(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// The binary seeding, killed when dropped.
pub struct Seeder {
    /// The child process, killed when this is dropped.
    _binary: Binary,
    /// The port from its `seeding on port N` line.
    pub port: u16,
}

impl Seeder {
    /// Starts `bittorrent INPUTS… -s PATH --port 0` and waits for its
    /// `seeding on port N; press Ctrl-C to stop` line on stderr.
    pub fn start(inputs: &[&str], path: &Path, log_dir: &Path) -> Seeder {
        Seeder::start_with(inputs, path, log_dir, &[], None)
    }

    /// Like [`Seeder::start`], with `extra` arguments, and at most
    /// `nofile` open files when given.
    pub fn start_with(
        inputs: &[&str],
        path: &Path,
        log_dir: &Path,
        extra: &[&str],
        nofile: Option<u64>,
    ) -> Seeder {
        let mut args: Vec<&str> = inputs.to_vec();
        args.extend(["-s", arg(path), "--port", "0", "--no-progress", "-v"]);
        args.extend(extra);
        let mut binary = match nofile {
            Some(nofile) => Binary::spawn_with_fd_limit(&args, log_dir, nofile),
            None => Binary::spawn(&args, log_dir),
        };
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let stderr = binary.stderr();
            if let Some(port) = seeding_port(&stderr) {
                return Seeder {
                    _binary: binary,
                    port,
                };
            }
            assert!(
                !binary.has_exited(),
                "the seeder {inputs:?} exited before seeding; stderr:\n{stderr}"
            );
            assert!(
                Instant::now() < deadline,
                "the seeder {inputs:?} did not start within {TIMEOUT:?}; stderr:\n{stderr}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Its address on loopback address `ip`.
    pub fn addr(&self, ip: [u8; 4]) -> SocketAddr {
        on_ip(ip, self.port)
    }

    /// The binary's process.
    pub fn binary(&self) -> &Binary {
        &self._binary
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self._binary.id()
    }

    /// What it wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self._binary.stderr()
    }

    /// Its resident memory now, in bytes (`VmRSS` in /proc).
    pub fn resident_len(&self) -> u64 {
        super::net::status_bytes(self._binary.id(), "VmRSS").unwrap_or(0)
    }
}

/// The N of the first `seeding on port N;` line.
fn seeding_port(stderr: &str) -> Option<u16> {
    let rest = &stderr[stderr.find("seeding on port ")? + "seeding on port ".len()..];
    rest[..rest.find(';')?].parse().ok()
}

/// Polls `condition` until it holds; fails the test naming `what`, with
/// `child`'s stderr and `context()`, if `child` exits first or `TIMEOUT`
/// passes.
pub fn wait_while_running(
    child: &mut Binary,
    what: &str,
    mut condition: impl FnMut() -> bool,
    context: impl Fn() -> String,
) {
    let deadline = Instant::now() + TIMEOUT;
    while !condition() {
        if child.has_exited() {
            panic!(
                "the client exited before {what}; {}\nstderr:\n{}",
                context(),
                child.stderr()
            );
        }
        if Instant::now() >= deadline {
            panic!(
                "timed out waiting for {what}; {}\nstderr:\n{}",
                context(),
                child.stderr()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits for `child` to exit (up to `TIMEOUT`) while sampling its peak
/// virtual size (`VmPeak` in /proc) every 10 ms; returns its status, its
/// stderr and the largest peak seen, in bytes. An untouched allocation
/// counts in `VmPeak` though not in the resident size.
pub fn wait_sampling_vm_peak(mut child: Binary) -> (ExitStatus, String, u64) {
    let pid = child.id();
    let deadline = Instant::now() + TIMEOUT;
    let mut peak = 0;
    while !child.has_exited() {
        if let Some(bytes) = super::net::status_bytes(pid, "VmPeak") {
            peak = peak.max(bytes);
        }
        assert!(
            Instant::now() < deadline,
            "the client did not exit within {TIMEOUT:?}; stderr:\n{}",
            child.stderr()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let (status, stderr) = child.wait();
    (status, stderr, peak)
}

/// Asserts a run ended with exit status 0.
pub fn assert_success(status: ExitStatus, stderr: &str) {
    assert!(status.success(), "exit {status}; stderr:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
