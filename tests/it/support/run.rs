//! Running sessions in-process and the binary as a child process, each with a
//! deadline and a guard that stops it.

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bittorrent::piece_manager::Outcome;
use bittorrent::session::{Config, Mode, Session, ShutdownHandle};
use bittorrent::stats::Stats;

/// The longest any one session of a test may take.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// A session configuration for tests: any port, no live progress.
pub fn config(torrent: &Path, mode: Mode, peers: Vec<SocketAddr>) -> Config {
    Config {
        torrents: vec![torrent.to_string_lossy().into_owned()],
        save_torrent: None,
        mode,
        port: 0,
        bind: None,
        peers,
        live_progress: false,
        tracker_timeout: Duration::from_secs(5),
        upload_slots: bittorrent::choker::DEFAULT_UPLOAD_SLOTS,
        direct_io: true,
        allow_hard_links: false,
        allow_overwrite: false,
        max_peers: bittorrent::cli::DEFAULT_MAX_PEERS,
        pex: true,
        // Tests never reach the default routers: DHT tests set their own.
        dht: None,
        max_download_rate: 0,
        max_upload_rate: 0,
        selection: bittorrent::selection::Selection::all(),
        seed_limit: bittorrent::seed_limit::SeedLimit::default(),
        announce_interval: None,
        json: false,
    }
}

/// Download mode into `dest`.
pub fn download_to(dest: &Path) -> Mode {
    Mode::Download {
        dest: dest.to_path_buf(),
    }
}

/// Seed mode from `path`.
pub fn seed_from(path: &Path) -> Mode {
    Mode::Seed {
        path: path.to_path_buf(),
    }
}

/// An in-process session that is shut down and joined when dropped.
pub struct Running {
    session: Option<Session>,
    handle: ShutdownHandle,
    pub stats: Arc<Stats>,
    pub addr: SocketAddr,
    /// The session's DHT node, when its config has one.
    pub dht: Option<bittorrent::dht::node::DhtHandle>,
}

impl Running {
    /// Starts a session; panics with the error if it cannot start.
    pub fn start(config: &Config) -> Running {
        let session =
            Session::start(config).unwrap_or_else(|e| panic!("session did not start: {e:?}"));
        Running {
            handle: session.shutdown_handle(),
            stats: session.stats(),
            addr: super::net::loopback(session.listen_addr()),
            dht: session.dht().cloned(),
            session: Some(session),
        }
    }

    /// Waits for the session to end by itself (a download completing), up to `TIMEOUT`.
    pub fn wait(mut self) -> Result<Outcome, bittorrent::Error> {
        let session = self.session.take().expect("not yet waited");
        let (tx, rx) = crossbeam_channel::bounded(1);
        let waiter = std::thread::spawn(move || {
            let _ = tx.send(session.wait());
        });
        let result = match rx.recv_timeout(TIMEOUT) {
            Ok(result) => result,
            Err(_) => {
                self.handle.shutdown();
                let _ = rx.recv_timeout(Duration::from_secs(10));
                panic!("session did not finish within {TIMEOUT:?}");
            }
        };
        waiter.join().unwrap();
        result
    }

    /// Stops the session and returns how it ended.
    pub fn stop(self) -> Result<Outcome, bittorrent::Error> {
        self.handle.shutdown();
        self.wait()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            self.handle.shutdown();
            let _ = session.wait();
        }
    }
}

/// Runs an in-process download to completion and returns its counters.
pub fn download(config: &Config) -> Arc<Stats> {
    let running = Running::start(config);
    let stats = Arc::clone(&running.stats);
    let outcome = running
        .wait()
        .unwrap_or_else(|e| panic!("download failed: {e:?}"));
    assert_eq!(outcome, Outcome::Complete);
    stats
}

/// Polls `condition` until it holds or `TIMEOUT` passes.
pub fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A child process of the binary, killed when dropped. Its output goes to files.
pub struct Binary {
    child: Child,
    stderr_path: PathBuf,
    stdout_path: PathBuf,
}

impl Binary {
    /// Starts `bittorrent` with `args`; output is captured in `log_dir`.
    pub fn spawn(args: &[impl AsRef<OsStr>], log_dir: &Path) -> Binary {
        Binary::spawn_with_env(args, log_dir, &[])
    }

    /// Like [`Binary::spawn`], with extra environment variables.
    pub fn spawn_with_env(
        args: &[impl AsRef<OsStr>],
        log_dir: &Path,
        env: &[(&str, &str)],
    ) -> Binary {
        let mut command = Command::new(env!("CARGO_BIN_EXE_bittorrent"));
        command.args(args).envs(env.iter().copied());
        Binary::spawn_command(command, log_dir)
    }

    /// Like [`Binary::spawn`], under a limit of `nofile` open files (soft
    /// and hard, as `ulimit -n` sets them; `bash` sets it, then execs the
    /// binary, so the child is the binary itself).
    pub fn spawn_with_fd_limit(args: &[impl AsRef<OsStr>], log_dir: &Path, nofile: u64) -> Binary {
        let mut command = Command::new("bash");
        command
            .arg("-c")
            .arg(format!("ulimit -n {nofile} && exec \"$0\" \"$@\""))
            .arg(env!("CARGO_BIN_EXE_bittorrent"))
            .args(args);
        Binary::spawn_command(command, log_dir)
    }

    fn spawn_command(mut command: Command, log_dir: &Path) -> Binary {
        std::fs::create_dir_all(log_dir).unwrap();
        // The binary's DHT never falls back to the routers on the Internet,
        // and keeps its state in the test's folder, not in ~/.local/state.
        command.env(bittorrent::dht::node::NO_DEFAULTS_ENV, "1");
        // And it runs no node at all unless the test names its contacts.
        let dht_named = command
            .get_args()
            .any(|a| a == "--no-dht" || a == "--dht-bootstrap");
        if !dht_named {
            command.arg("--no-dht");
        }
        if !command.get_envs().any(|(k, _)| k == "XDG_STATE_HOME") {
            command.env("XDG_STATE_HOME", log_dir.join("state"));
        }
        let stderr_path =
            log_dir.join(format!("stderr-{}.txt", std::process::id() ^ rand_suffix()));
        let stderr = std::fs::File::create(&stderr_path).unwrap();
        let stdout_path = stderr_path.with_file_name(
            stderr_path
                .file_name()
                .unwrap()
                .to_string_lossy()
                .replace("stderr-", "stdout-"),
        );
        let stdout = std::fs::File::create(&stdout_path).unwrap();
        let child = command
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .unwrap();
        Binary {
            child,
            stderr_path,
            stdout_path,
        }
    }

    /// What the process wrote to stdout so far (the `--json` lines).
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout_path).unwrap_or_default()
    }

    /// Waits for the process to exit, up to `TIMEOUT`; returns its status and stderr.
    pub fn wait(mut self) -> (ExitStatus, String) {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status, self.stderr());
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                panic!(
                    "bittorrent did not exit within {TIMEOUT:?}; stderr:\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The child's process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process has exited (its status is kept for [`Binary::wait`]).
    pub fn has_exited(&mut self) -> bool {
        self.child.try_wait().unwrap().is_some()
    }

    /// Sends SIGINT, as Ctrl-C does.
    pub fn interrupt(&self) {
        self.signal("INT");
    }

    /// Sends the signal named `name` ("INT", "TERM").
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// CPU time the process has used so far (user and system), from
    /// `/proc/PID/stat`, in clock ticks of 10 ms; zero once it is gone.
    pub fn cpu_time(&self) -> Duration {
        super::net::cpu_time(self.child.id()).unwrap_or_default()
    }

    /// What the process wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rand_suffix() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish() as u32
}

/// Runs the binary to its exit with `args`; returns status and stderr.
pub fn run_binary(args: &[impl AsRef<OsStr>], log_dir: &Path) -> (ExitStatus, String) {
    Binary::spawn(args, log_dir).wait()
}

/// The binary's arguments to download `torrent` into `dest` from `peer`
/// only, on any port.
pub fn download_args(torrent: &Path, dest: &Path, peer: SocketAddr) -> Vec<String> {
    vec![
        torrent.to_str().unwrap().to_string(),
        "-d".into(),
        dest.to_str().unwrap().to_string(),
        "--peer".into(),
        peer.to_string(),
        "--port".into(),
        "0".into(),
    ]
}
