//! Faults of the machine rather than of peers: a disk that fills up during a
//! download. The binary must stop with a clear error and a non-zero exit,
//! every piece it reported verified must be intact on disk, and once space is
//! freed the same command must resume from those pieces.
//!
//! The full disk is a small tmpfs, which needs root (as CI runs the tests).
//! A file size limit (`ulimit -f`), which does not, is met at start-up
//! instead, when the file is sized.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Instant;

use crate::support::bencode::write_single_file;
use crate::support::*;

const PIECE: usize = 64 * 1024;
const PIECES: usize = 64;

/// A tmpfs mounted on a folder, lazily unmounted when dropped (even when the
/// test fails, and even if a process still has a file open on it).
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (as `mount` reads it: "1m") on `dir`, or says
    /// why it could not.
    fn mount(dir: &Path, size: &str) -> Result<Tmpfs, String> {
        fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount exited with {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Tmpfs {
            dir: dir.to_path_buf(),
        })
    }

    /// Grows (or shrinks) the file system, keeping its files.
    fn resize(&self, size: &str) {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "remount failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// Writes a 4 MiB torrent and its content into `dir`; returns the torrent's
/// path, the content's path and the content.
fn setup(dir: &Path) -> (PathBuf, PathBuf, Vec<u8>) {
    let data = content(PIECES * PIECE, 11);
    let written = write_single_file(dir, "full.bin", &data, PIECE, None);
    (written.torrent, written.source, data)
}

/// A child process killed when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs the binary with `args` under a file size limit of `limit_kib` KiB,
/// up to `TIMEOUT`; returns its status and stderr. SIGXFSZ is ignored so
/// that going over the limit is the EFBIG error the client must report, not
/// the signal's default of killing it.
fn run_with_file_size_limit(
    limit_kib: u64,
    args: &[impl AsRef<std::ffi::OsStr>],
    log_dir: &Path,
) -> (ExitStatus, String) {
    let stderr_path = log_dir.join("limited-stderr.txt");
    let mut child = Killed(
        Command::new("bash")
            .arg("-c")
            .arg(format!(
                "trap '' XFSZ; ulimit -f {limit_kib}; exec \"$0\" \"$@\""
            ))
            .arg(env!("CARGO_BIN_EXE_bittorrent"))
            .args(args)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&stderr_path).unwrap())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "bittorrent did not exit within {TIMEOUT:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    (status, fs::read_to_string(&stderr_path).unwrap())
}

/// The pieces a run of the binary with `-vv` reported verified, from its
/// "piece N verified (from ADDR)" debug lines.
fn verified_pieces(stderr: &str) -> BTreeSet<u32> {
    stderr
        .lines()
        .filter_map(|line| {
            let rest = line.split_once("] piece ")?.1;
            let (index, rest) = rest.split_once(' ')?;
            rest.starts_with("verified (from ")
                .then(|| index.parse().ok())
                .flatten()
        })
        .collect()
}

/// The pieces of `file` whose bytes equal `data`'s.
fn correct_pieces(file: &Path, data: &[u8]) -> BTreeSet<u32> {
    let on_disk = fs::read(file).unwrap();
    assert_eq!(
        on_disk.len(),
        data.len(),
        "{} has the wrong length",
        file.display()
    );
    (0..PIECES)
        .filter(|i| on_disk[i * PIECE..(i + 1) * PIECE] == data[i * PIECE..(i + 1) * PIECE])
        .map(|i| i as u32)
        .collect()
}

#[test]
fn a_full_disk_stops_the_download_with_a_clear_error_and_the_data_resumes() {
    let dir = tempfile::tempdir().unwrap();
    // Declared after `dir`, so it is unmounted before the folder is removed.
    // 16 pieces and a half: the write of the 17th piece is torn, half of it
    // reaching the disk before ENOSPC.
    let disk = match Tmpfs::mount(&dir.path().join("disk"), "1056k") {
        Ok(disk) => disk,
        Err(e) if std::env::var_os("CI").is_some() => {
            panic!("the disk-full test needs root for a tmpfs, and CI must run it: {e}")
        }
        Err(e) => {
            eprintln!("skipped: the disk-full test needs root for a tmpfs ({e})");
            return;
        }
    };

    let (torrent, source, data) = setup(dir.path());
    let seeder = Running::start(&config(&torrent, seed_from(&source), vec![]));
    let mut args = download_args(&torrent, &disk.dir, seeder.addr);
    args.push("-vv".into());
    let target = disk.dir.join("full.bin");

    // First run: 4 MiB onto a disk of about 1 MiB. The file itself is sparse,
    // so the start succeeds and the disk fills while pieces are written.
    let (status, stderr) = run_binary(&args, dir.path());
    assert_eq!(status.code(), Some(1), "stderr:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        stderr.contains(&format!("error: cannot write {}", target.display())),
        "{stderr}"
    );
    assert!(
        stderr.contains("caused by: No space left on device"),
        "{stderr}"
    );
    let claimed = verified_pieces(&stderr);
    assert!(
        !claimed.is_empty() && claimed.len() < PIECES,
        "expected some but not all pieces verified before the disk filled, got {claimed:?}; stderr:\n{stderr}"
    );
    // Every piece reported verified is intact: the piece being written when
    // the disk filled is not half-claimed. A piece may be whole on disk and
    // not claimed: its write (part of a batch of adjacent pieces) failed
    // after its bytes landed. The resume finds it by its hash.
    let on_disk = correct_pieces(&target, &data);
    assert!(
        claimed.is_subset(&on_disk),
        "claimed but not intact on disk: {:?}",
        claimed.difference(&on_disk).collect::<Vec<_>>()
    );

    // Space is freed; the same command resumes from the claimed pieces and
    // fetches only the others.
    disk.resize("16m");
    let (status, stderr) = run_binary(&args, dir.path());
    assert!(status.success(), "exit {status}; stderr:\n{stderr}");
    assert!(stderr.contains("download complete"), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "resuming: {} of {PIECES} pieces already verified",
            on_disk.len()
        )),
        "{stderr}"
    );
    let fetched = verified_pieces(&stderr);
    assert!(
        fetched.is_disjoint(&on_disk),
        "fetched again: {:?}",
        fetched.intersection(&on_disk).collect::<Vec<_>>()
    );
    assert_eq!(fetched.len() + on_disk.len(), PIECES, "fetched {fetched:?}");
    assert!(
        fs::read(&target).unwrap() == data,
        "the content differs from the source"
    );
}

#[test]
fn a_file_size_limit_is_a_clear_error_before_anything_is_fetched() {
    // The client sizes the file when it opens it (sparse), so a limit below
    // the file's length is met at once, not after part of the download.
    let dir = tempfile::tempdir().unwrap();
    let (torrent, source, data) = setup(dir.path());
    let seeder = Running::start(&config(&torrent, seed_from(&source), vec![]));
    let dest = dir.path().join("out");
    let args = download_args(&torrent, &dest, seeder.addr);
    let target = dest.join("full.bin");

    let (status, stderr) = run_with_file_size_limit(1024, &args, dir.path());
    assert_eq!(status.code(), Some(1), "stderr:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        stderr.contains(&format!("error: cannot resize {}", target.display())),
        "{stderr}"
    );
    assert!(stderr.contains("caused by: File too large"), "{stderr}");
    assert_eq!(
        seeder
            .stats
            .uploaded
            .load(std::sync::atomic::Ordering::Relaxed),
        0,
        "nothing is fetched that could not be stored"
    );

    // Without the limit the same command completes over what was left.
    let (status, stderr) = run_binary(&args, dir.path());
    assert!(status.success(), "exit {status}; stderr:\n{stderr}");
    assert!(
        fs::read(&target).unwrap() == data,
        "the content differs from the source"
    );
}
