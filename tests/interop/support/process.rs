//! Child processes of a test: started with their output in files, waited on
//! with deadlines, and killed when dropped. When a test fails, every process
//! still alive prints the end of its output, so the failure can be read.

use std::fs;
use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How much of a log a failing test prints.
const LOG_TAIL_LEN: usize = 6000;

/// A child process that is killed when dropped.
pub struct Proc {
    name: String,
    child: Child,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
}

impl Proc {
    /// Starts `command` with stdin closed and stdout and stderr in `log_dir`.
    pub fn spawn(name: &str, mut command: Command, log_dir: &Path) -> Proc {
        fs::create_dir_all(log_dir).unwrap();
        let file_name = name.replace([' ', '/'], "-");
        let stdout_path = log_dir.join(format!("{file_name}.stdout"));
        let stderr_path = log_dir.join(format!("{file_name}.stderr"));
        let child = command
            .stdin(Stdio::null())
            .stdout(fs::File::create(&stdout_path).unwrap())
            .stderr(fs::File::create(&stderr_path).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({command:?}): {e}"));
        Proc {
            name: name.to_string(),
            child,
            stdout_path,
            stderr_path,
        }
    }

    /// The name given at spawn, for messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Everything the process printed so far, stdout then stderr.
    pub fn output(&self) -> String {
        let stdout = fs::read_to_string(&self.stdout_path).unwrap_or_default();
        let stderr = fs::read_to_string(&self.stderr_path).unwrap_or_default();
        format!("{stdout}{stderr}")
    }

    /// Whether the process has exited, and how.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().unwrap()
    }

    /// Waits for the process to exit, failing the test after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let name = self.name.clone();
        wait_until(&format!("{name} to exit"), timeout, || {
            self.exited().is_some()
        });
        self.exited().expect("it exited")
    }

    /// Waits until the output contains `needle` and returns the output; fails
    /// the test if the process exits first or `timeout` passes.
    pub fn wait_output(&mut self, needle: &str, timeout: Duration) -> String {
        let name = self.name.clone();
        wait_until(&format!("{name} to print {needle:?}"), timeout, || {
            if let Some(status) = self.exited() {
                panic!("{name} exited ({status}) before printing {needle:?}");
            }
            self.output().contains(needle)
        });
        self.output()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let output = self.output();
            let tail_from = output.len().saturating_sub(LOG_TAIL_LEN);
            let tail_from = (tail_from..output.len())
                .find(|&i| output.is_char_boundary(i))
                .unwrap_or(output.len());
            eprintln!(
                "----- {} (last {} bytes of output) -----\n{}\n----- end of {} -----",
                self.name,
                output.len() - tail_from,
                &output[tail_from..],
                self.name
            );
        }
    }
}

/// Polls `condition` every 50 ms until it holds; fails the test after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago, for a client that
/// cannot be told to pick its own and report it.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    listener.local_addr().unwrap().port()
}

/// A port number free a moment ago on 127.0.0.1 for both TCP and UDP: the
/// listen port of a peer whose DHT node listens on UDP at the same number
/// (ours and libtorrent).
pub fn free_tcp_and_udp_port() -> u16 {
    for _ in 0..100 {
        let port = free_port();
        if UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return port;
        }
    }
    panic!("no port free for both TCP and UDP on 127.0.0.1 in 100 tries");
}

/// A UDP port on 127.0.0.1 that was free a moment ago (aria2's socket for
/// UDP trackers).
pub fn free_udp_port() -> u16 {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    socket.local_addr().unwrap().port()
}

/// Fails the test with the package to install when `program` is missing, so
/// a missing client is never mistaken for a pass.
pub fn require(program: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
        .unwrap_or(false)
        || Path::new(program).is_file();
    assert!(
        found,
        "{program} is not installed: the interop suite needs the Debian package {package} \
         (bash tests/interop/run.sh installs every client it needs)"
    );
}
