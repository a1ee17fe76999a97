//! Peak memory of a download, measured on the binary in a process of its
//! own: it is set by the work in flight, not by the piece length, and stays
//! under the bound the README states (section "Memory"), with one-byte
//! pieces and with 64 MiB pieces among forty peers that never finish one.
//!
//! The peak is the child's `VmHWM` (the kernel's high-water mark of its
//! resident set), polled from /proc until it exits.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bittorrent::metainfo::InfoHash;
use bittorrent::piece_manager::budget::Budget;
use bittorrent::verifier::{WRITE_CHUNK_LEN, pool_capacity};

use crate::support::bencode::{TFile, make_torrent};
use crate::support::hostile::{Behaviour, HostilePeer, Torrent};
use crate::support::magnet::assert_success;
use crate::support::*;

const MIB: u64 = 1024 * 1024;
/// The README's allowance for the binary itself (code, libraries, the
/// threads other than the peers', the logger), debug build included.
const BASE_LEN: u64 = 16 * MIB;
/// The README's allowance per connection: a 256 KiB read buffer, about
/// 1 MiB of queued output, up to 16,384 queued requests with their index
/// (about 1.3 MiB), its thread's stack.
const PER_PEER_LEN: u64 = 3 * MIB;
/// Longest a download here may take (the scripted peers stop after it).
const DOWNLOAD_TIMEOUT: Duration = TIMEOUT;

/// The README's bound on the peak resident memory of a download of pieces
/// of `piece_len` bytes with `peers` connections.
fn stated_bound(piece_len: u32, peers: u64) -> u64 {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    let piece = u64::from(piece_len);
    BASE_LEN
        + Budget::new(piece_len).limit()
        + pool_capacity(workers, piece_len as usize) as u64 / piece * piece
        + workers as u64 * piece.min(WRITE_CHUNK_LEN as u64)
        + peers * PER_PEER_LEN
}

/// Content of `len` bytes, eight at a time from a xorshift generator
/// (the byte-wise `support::content` is slow for hundreds of MiB).
fn fast_content(len: usize, seed: u64) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ seed;
    let mut data = Vec::with_capacity(len + 8);
    while data.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        data.extend_from_slice(&state.to_le_bytes());
    }
    data.truncate(len);
    data
}

/// A single-file torrent of `data` written to `dir/NAME.torrent`, and what
/// scripted peers need to know of it.
fn torrent_of(dir: &Path, name: &str, data: Vec<u8>, piece_len: usize) -> (String, Torrent) {
    let files = [TFile { path: vec![], data }];
    let (bytes, info_hash) = make_torrent(name, &files, piece_len, None);
    let path = dir.join(format!("{name}.torrent"));
    std::fs::write(&path, bytes).unwrap();
    let [TFile { data, .. }] = files;
    let torrent = Torrent {
        info_hash: InfoHash(info_hash),
        piece_len: piece_len as u32,
        data: Arc::new(data),
    };
    (path.to_str().unwrap().to_string(), torrent)
}

/// The `VmHWM` of process `pid` in bytes, while it runs.
fn high_water_mark(pid: u32) -> Option<u64> {
    crate::support::net::status_bytes(pid, "VmHWM")
}

/// Runs the binary downloading `torrent` into `dest` from `peers`; returns
/// its exit status, stderr and peak resident memory. The child is killed
/// (by the guard) if it runs past [`DOWNLOAD_TIMEOUT`].
fn download_measuring_peak(
    torrent: &str,
    dest: &Path,
    peers: &[SocketAddr],
) -> (std::process::ExitStatus, String, u64) {
    let mut args = vec![
        torrent.to_string(),
        "-d".into(),
        dest.to_str().unwrap().into(),
        "--port".into(),
        "0".into(),
        "--no-progress".into(),
    ];
    for peer in peers {
        args.extend(["--peer".into(), peer.to_string()]);
    }
    let mut child = Binary::spawn(&args, &dest.join("logs"));
    let deadline = Instant::now() + DOWNLOAD_TIMEOUT;
    let mut peak = 0;
    while !child.has_exited() {
        // The mark only rises, so the last reading before the exit is the peak.
        if let Some(mark) = high_water_mark(child.id()) {
            peak = peak.max(mark);
        }
        assert!(
            Instant::now() < deadline,
            "the download did not finish within {DOWNLOAD_TIMEOUT:?} (peak resident memory \
             so far {peak} B); stderr:\n{}",
            child.stderr()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let (status, stderr) = child.wait();
    (status, stderr, peak)
}

#[test]
fn one_byte_pieces_take_a_few_mib_not_a_pool_sized_by_the_piece_length() {
    // Before the fix: 800 MB (a pool of `cores * 4 MiB / piece_len` slots).
    let dir = tempfile::tempdir().unwrap();
    let data = fast_content(4000, 1);
    let (torrent_path, torrent) = torrent_of(dir.path(), "tiny.bin", data.clone(), 1);
    let seeder = HostilePeer::start_on(
        [127, 0, 0, 2],
        &torrent,
        Behaviour::GoesSilentAfter { blocks: usize::MAX },
    );
    let dest = dir.path().join("dest");
    let (status, stderr, peak) = download_measuring_peak(&torrent_path, &dest, &[seeder.addr()]);
    assert_success(status, &stderr);
    assert!(
        std::fs::read(dest.join("tiny.bin")).unwrap() == data,
        "bytes differ"
    );
    let bound = stated_bound(1, 1);
    eprintln!("peak {peak} B, bound {bound} B");
    assert!(
        peak < bound,
        "peak resident memory {peak} B is over the stated bound {bound} B"
    );
}

#[test]
fn sixty_four_mib_pieces_among_forty_junk_peers_stay_under_the_stated_bound() {
    // Before the fix: junk peers each held one or two 64 MiB pieces (5.1 GB
    // with 40 of them over a longer download).
    const PIECE_LEN: usize = 64 * 1024 * 1024;
    const JUNK_PEERS: u8 = 40;
    let dir = tempfile::tempdir().unwrap();
    let data = fast_content(6 * PIECE_LEN - 12_345, 2);
    let (torrent_path, torrent) = torrent_of(dir.path(), "big.bin", data, PIECE_LEN);
    // Half never send a block, half send one and then nothing.
    let junk: Vec<HostilePeer> = (0..JUNK_PEERS)
        .map(|n| {
            let blocks = usize::from(n % 2);
            HostilePeer::start_on(
                [127, 0, 0, 10 + n],
                &torrent,
                Behaviour::GoesSilentAfter { blocks },
            )
        })
        .collect();
    let seeder = HostilePeer::start_on(
        [127, 0, 0, 2],
        &torrent,
        Behaviour::GoesSilentAfter { blocks: usize::MAX },
    );
    // The honest seeder last: the junk peers are dialled first.
    let mut peers: Vec<SocketAddr> = junk.iter().map(HostilePeer::addr).collect();
    peers.push(seeder.addr());
    let dest = dir.path().join("dest");
    let (status, stderr, peak) = download_measuring_peak(&torrent_path, &dest, &peers);
    assert_success(status, &stderr);
    let on_disk = std::fs::read(dest.join("big.bin")).unwrap();
    assert!(on_disk == *torrent.data, "bytes differ");
    let handshakes: usize = junk.iter().map(|j| j.report().handshakes).sum();
    assert!(
        handshakes >= usize::from(JUNK_PEERS),
        "only {handshakes} junk peers were connected"
    );
    let bound = stated_bound(PIECE_LEN as u32, u64::from(JUNK_PEERS) + 1);
    eprintln!("peak {peak} B, bound {bound} B");
    assert!(
        peak < bound,
        "peak resident memory {peak} B is over the stated bound {bound} B"
    );
}
