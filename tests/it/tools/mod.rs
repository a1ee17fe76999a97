//! The verbs, driving the binary: `create` gives mktorrent's info-hashes
//! for the fixtures mktorrent made, and what it makes downloads from our
//! own seeder (`create`); `info --json` read back field by field, and
//! `verify` on complete, short, corrupted and missing content with its
//! exit codes (`inspect`); completions, the man page and the download
//! command line left as it was (here). This file holds the runner the
//! others use: the binary to its exit, stdout and stderr kept.

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Instant;

use bittorrent::bencode;

use crate::support::*;

mod create;
mod inspect;

/// The fixtures' tracker, which no test reaches (port 1).
pub const FIXTURE_TRACKER: &str = "http://127.0.0.1:1/announce";

/// What a run of the binary printed and how it ended.
pub struct Ran {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// The value of the stdout line that starts with `label: `.
    pub fn line(&self, label: &str) -> &str {
        let prefix = format!("{label}: ");
        self.stdout
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .map(str::trim_start)
            .unwrap_or_else(|| panic!("no {label:?} line in stdout:\n{}", self.stdout))
    }
}

/// The child, killed when dropped (a test that fails does not leave it).
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `bittorrent ARGS` in `cwd` to its exit (within `TIMEOUT`), with
/// stdout and stderr kept in files in `logs`.
pub fn tool(args: &[impl AsRef<OsStr>], cwd: &Path, logs: &Path) -> Ran {
    fs::create_dir_all(logs).unwrap();
    let n = fs::read_dir(logs).unwrap().count();
    let out_path = logs.join(format!("stdout-{n}"));
    let err_path = logs.join(format!("stderr-{n}"));
    let child = Command::new(env!("CARGO_BIN_EXE_bittorrent"))
        .args(args)
        .current_dir(cwd)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out_path).unwrap())
        .stderr(fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let mut guard = Guard(child);
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(status) = guard.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "bittorrent did not exit within {TIMEOUT:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    let ran = Ran {
        status,
        stdout: fs::read_to_string(&out_path).unwrap(),
        stderr: fs::read_to_string(&err_path).unwrap(),
    };
    assert!(!ran.stderr.contains("panicked"), "{}", ran.stderr);
    ran
}

/// A test's folder: `work` for the runs, `logs` for their output.
pub struct Dir {
    _temp: tempfile::TempDir,
    pub work: PathBuf,
    pub logs: PathBuf,
}

impl Dir {
    pub fn new() -> Dir {
        let temp = tempfile::tempdir().unwrap();
        let work = temp.path().join("work");
        fs::create_dir_all(&work).unwrap();
        Dir {
            work,
            logs: temp.path().join("logs"),
            _temp: temp,
        }
    }

    pub fn run(&self, args: &[impl AsRef<OsStr>]) -> Ran {
        tool(args, &self.work, &self.logs)
    }
}

pub fn arg(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// The expected info-hash of a fixture, from fixtures/info-hashes.txt.
pub fn fixture_hash(file: &str) -> String {
    let list = fs::read_to_string(fixtures().join("info-hashes.txt")).unwrap();
    list.lines()
        .find_map(|l| l.strip_prefix(&format!("{file} ")))
        .unwrap_or_else(|| panic!("{file} not in info-hashes.txt"))
        .trim()
        .to_string()
}

/// The raw `info` bytes of the .torrent at `path`.
pub fn info_bytes(path: &Path) -> Vec<u8> {
    let bytes = fs::read(path).unwrap();
    let span = bencode::dict_value_span(&bytes, b"info").unwrap().unwrap();
    bytes[span].to_vec()
}

#[test]
fn completions_for_each_shell_and_the_man_page_print_to_stdout() {
    let dir = Dir::new();
    for (shell, marker) in [
        ("bash", "complete -F _bittorrent"),
        ("zsh", "#compdef bittorrent"),
        ("fish", "complete -c bittorrent"),
    ] {
        let ran = dir.run(&["completions", shell]);
        assert_eq!(ran.code(), Some(0), "{shell}: {}", ran.stderr);
        assert!(ran.stdout.contains(marker), "{shell}: {}", ran.stdout);
        assert!(
            ran.stdout.contains("verify") && ran.stdout.contains("download"),
            "{shell}"
        );
    }
    let ran = dir.run(&["completions", "powershell"]);
    assert_eq!(ran.code(), Some(2));
    let ran = dir.run(&["man"]);
    assert_eq!(ran.code(), Some(0), "{}", ran.stderr);
    assert!(
        ran.stdout.contains(".TH bittorrent"),
        "{}",
        &ran.stdout[..200.min(ran.stdout.len())]
    );
    assert!(
        ran.stdout.contains("create"),
        "the man page names the verbs"
    );
}

#[test]
fn the_download_command_line_and_its_help_are_unchanged_by_the_verbs() {
    let dir = Dir::new();
    let ran = dir.run(&["--help"]);
    assert_eq!(ran.code(), Some(0));
    for text in [
        "--download <DEST>",
        "--seed <PATH>",
        "bittorrent create PATH",
        "bittorrent verify",
    ] {
        assert!(ran.stdout.contains(text), "{text}: {}", ran.stdout);
    }
    // A torrent that is not a verb is still a download's input.
    let ran = dir.run(&["missing.torrent", "-d", "out", "--no-dht"]);
    assert_eq!(ran.code(), Some(1));
    assert!(
        ran.stderr
            .contains("cannot read torrent file missing.torrent"),
        "{}",
        ran.stderr
    );
    let ran = dir.run(&["create.torrent", "-d", "out", "--no-dht"]);
    assert_eq!(ran.code(), Some(1));
    assert!(
        ran.stderr
            .contains("cannot read torrent file create.torrent"),
        "{}",
        ran.stderr
    );
}

#[test]
fn a_closed_stdout_ends_the_output_quietly_and_keeps_the_exit_code() {
    // Rust ignores SIGPIPE: printing to a closed pipe used to panic.
    let dir = Dir::new();
    let torrent = fixtures().join("multi.torrent");
    let content = fixtures().join("multi");
    for (args, code) in [
        (vec!["info", arg(&torrent)], 0),
        (vec!["completions", "zsh"], 0),
        (vec!["verify", arg(&torrent), arg(&content)], 0),
        (
            vec!["verify", arg(&torrent), arg(&fixtures().join("single"))],
            1,
        ),
    ] {
        let err_path = dir.logs.join("closed-stderr");
        fs::create_dir_all(&dir.logs).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_bittorrent"))
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(fs::File::create(&err_path).unwrap())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let mut guard = Guard(child);
        let deadline = Instant::now() + TIMEOUT;
        let status = loop {
            if let Some(status) = guard.0.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "{args:?} did not exit");
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        let stderr = fs::read_to_string(&err_path).unwrap();
        assert_eq!(status.code(), Some(code), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}
