//! Misbehaving peers next to a good seeder, played by the scripts of
//! `support::hostile`. In every test the download completes byte-identical
//! within [`COMPLETES_WITHIN`], the good seeder stays up and stops cleanly,
//! and a peer that lied or broke the protocol ends up in `Stats::banned`.
//!
//! The downloader under test dials the hostile peers first and the good
//! seeder last; the hostile peers answer at once, so they are given pieces.

use std::fs;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bittorrent::metainfo::InfoHash;
use bittorrent::piece_manager::Outcome;
use bittorrent::stats::Stats;

use crate::support::bencode::{TFile, make_torrent};
use crate::support::hostile::{
    Behaviour, Flood, HostilePeer, Report, RequestFlood, Torrent, init_logging,
};
use crate::support::*;

/// 32 KiB pieces: two blocks each, so a peer can stop in the middle of one.
const PIECE_LEN: usize = 32 * 1024;
/// Enough pieces for a hostile peer to be given some, and not a multiple of
/// 8, so a bitfield has spare bits.
const PIECE_COUNT: usize = 42;
/// The last piece is shorter, and so is its last block.
const LAST_PIECE_LEN: usize = 20_000;
/// Each download must complete within this (a request timeout is about 10 s).
const COMPLETES_WITHIN: Duration = Duration::from_secs(30);
/// A peer that breaks the protocol must be dropped within this.
const DROPPED_WITHIN: Duration = Duration::from_secs(2);

/// A torrent, its content on disk and a good seeder of it.
struct Swarm {
    dir: tempfile::TempDir,
    torrent_path: PathBuf,
    torrent: Torrent,
    seeder: Running,
    downloads: AtomicUsize,
}

impl Swarm {
    /// Writes a torrent of [`PIECE_COUNT`] pieces with content from `seed`
    /// and starts a seeder of it.
    fn new(seed: u8) -> Swarm {
        init_logging();
        let dir = tempfile::tempdir().unwrap();
        let data = content((PIECE_COUNT - 1) * PIECE_LEN + LAST_PIECE_LEN, seed);
        let (bytes, info_hash) = make_torrent(
            "hostile.bin",
            &[TFile {
                path: vec![],
                data: data.clone(),
            }],
            PIECE_LEN,
            None,
        );
        let torrent_path = dir.path().join("hostile.torrent");
        fs::write(&torrent_path, bytes).unwrap();
        let source = dir.path().join("hostile.bin");
        fs::write(&source, &data).unwrap();
        let seeder = Running::start(&config(&torrent_path, seed_from(&source), vec![]));
        let torrent = Torrent {
            info_hash: InfoHash(info_hash),
            piece_len: PIECE_LEN as u32,
            data: Arc::new(data),
        };
        assert_eq!(torrent.piece_count() as usize, PIECE_COUNT);
        Swarm {
            dir,
            torrent_path,
            torrent,
            seeder,
            downloads: AtomicUsize::new(0),
        }
    }

    /// Downloads into a fresh folder from the `hostile` peers and the good
    /// seeder (dialled in that order); asserts the download completes within
    /// [`COMPLETES_WITHIN`] with the source's bytes. Returns its counters.
    fn download(&self, hostile: &[SocketAddr]) -> Arc<Stats> {
        let n = self.downloads.fetch_add(1, Ordering::Relaxed);
        let dest = self.dir.path().join(format!("out-{n}"));
        let mut peers = hostile.to_vec();
        peers.push(self.seeder.addr);
        let started = Instant::now();
        let downloader = Running::start(&config(&self.torrent_path, download_to(&dest), peers));
        let stats = Arc::clone(&downloader.stats);
        let outcome = downloader
            .wait()
            .unwrap_or_else(|e| panic!("download failed: {e:?}"));
        let elapsed = started.elapsed();
        eprintln!("download completed in {elapsed:?}");
        assert_eq!(outcome, Outcome::Complete);
        let got = fs::read(dest.join("hostile.bin")).unwrap();
        assert!(
            got == *self.torrent.data,
            "the download differs from the source"
        );
        assert!(
            elapsed < COMPLETES_WITHIN,
            "the download took {elapsed:?}, more than {COMPLETES_WITHIN:?}"
        );
        stats
    }

    /// Asserts that the good seeder still accepts connections, then stops it
    /// and asserts it stops cleanly.
    fn assert_seeder_still_up(self) {
        TcpStream::connect_timeout(&self.seeder.addr, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("the seeder no longer accepts connections: {e}"));
        let outcome = self
            .seeder
            .stop()
            .unwrap_or_else(|e| panic!("the seeder failed: {e:?}"));
        assert_eq!(outcome, Outcome::Stopped);
    }
}

/// Asserts that `addr` (a peer playing `what`) is among the banned.
fn assert_banned(stats: &Stats, addr: SocketAddr, what: &str, report: &Report) {
    let banned = stats.banned();
    assert!(
        banned.contains(&addr),
        "the peer that {what} ({addr}) is not banned; banned: {banned:?}; it saw: {report:#?}"
    );
}

/// Asserts that a connection of the peer was dropped within [`DROPPED_WITHIN`]
/// of its misbehaviour.
fn assert_dropped_at_once(report: &Report, what: &str) {
    assert!(
        report.dropped_after.iter().any(|d| *d < DROPPED_WITHIN),
        "the peer that {what} was not dropped within {DROPPED_WITHIN:?}: {report:#?}"
    );
}

#[test]
fn download_completes_and_bans_a_peer_that_sends_corrupt_blocks() {
    let swarm = Swarm::new(21);
    let liar = HostilePeer::start(&swarm.torrent, Behaviour::CorruptBlocks);
    let stats = swarm.download(&[liar.addr()]);
    let report = liar.report();
    eprintln!("corrupt peer: {report:?}");
    assert!(
        report.blocks_sent > 0,
        "the corrupt peer was asked for nothing"
    );
    assert_banned(&stats, liar.addr(), "sent corrupt blocks", &report);
    swarm.assert_seeder_still_up();
}

#[test]
fn download_completes_and_bans_a_peer_that_sends_a_2_gib_length_prefix() {
    let swarm = Swarm::new(22);
    let liar = HostilePeer::start(&swarm.torrent, Behaviour::HugeLengthPrefix);
    let stats = swarm.download(&[liar.addr()]);
    let report = liar.report();
    eprintln!("2 GiB prefix peer: {report:?}");
    assert_eq!(report.handshakes, 1, "{report:#?}");
    assert_dropped_at_once(&report, "sent a 2 GiB length prefix");
    assert_banned(&stats, liar.addr(), "sent a 2 GiB length prefix", &report);
    swarm.assert_seeder_still_up();
}

#[test]
fn download_completes_and_bans_peers_that_send_an_invalid_bitfield() {
    let swarm = Swarm::new(23);
    let spare_bits = HostilePeer::start(&swarm.torrent, Behaviour::BitfieldWithSpareBits);
    let too_long = HostilePeer::start(&swarm.torrent, Behaviour::BitfieldTooLong);
    let stats = swarm.download(&[spare_bits.addr(), too_long.addr()]);
    for (peer, what) in [
        (&spare_bits, "sent a bitfield with spare bits set"),
        (&too_long, "sent a bitfield one byte too long"),
    ] {
        let report = peer.report();
        eprintln!("peer that {what}: {report:?}");
        assert_eq!(report.handshakes, 1, "{what}: {report:#?}");
        assert_dropped_at_once(&report, what);
        assert_banned(&stats, peer.addr(), what, &report);
    }
    swarm.assert_seeder_still_up();
}

#[test]
fn download_completes_when_a_peer_goes_silent_in_the_middle_of_a_piece() {
    // Three blocks answered: one whole piece and half of another, then
    // silence with the socket open and requests outstanding.
    let swarm = Swarm::new(24);
    let silent = HostilePeer::start(&swarm.torrent, Behaviour::GoesSilentAfter { blocks: 3 });
    swarm.download(&[silent.addr()]);
    let report = silent.report();
    eprintln!("silent peer: {report:?}");
    assert_eq!(report.blocks_sent, 3, "{report:#?}");
    assert!(
        report.requests_received > 3,
        "no request was left unanswered, so the silence was not tested: {report:#?}"
    );
    swarm.assert_seeder_still_up();
}

#[test]
fn download_completes_next_to_a_peer_that_chokes_and_unchokes_every_100_ms() {
    // Once serving a block or two per unchoke, once serving none.
    let swarm = Swarm::new(25);
    for blocks in [2, 0] {
        let flapper = HostilePeer::start(
            &swarm.torrent,
            Behaviour::FlapsChoke {
                period: Duration::from_millis(100),
                blocks,
            },
        );
        swarm.download(&[flapper.addr()]);
        let report = flapper.report();
        eprintln!("flapping peer serving {blocks} blocks per unchoke: {report:?}");
        assert_eq!(report.handshakes, 1, "{report:#?}");
    }
    swarm.assert_seeder_still_up();
}

#[test]
fn seeder_bans_a_peer_flooding_invalid_requests_and_keeps_serving_a_good_downloader() {
    // Mostly valid requests with, every 50th, a piece past the end, a
    // 32 KiB block or an offset past the end of the piece.
    let swarm = Swarm::new(26);
    let flood = RequestFlood::start(
        swarm.seeder.addr,
        &swarm.torrent,
        Flood::InvalidRequests { count: 5000 },
    );
    swarm.download(&[]);
    wait_until("the seeder to drop the flooding peer", || {
        !flood.report().dropped_after.is_empty()
    });
    let report = flood.report();
    eprintln!("invalid request flood: {report:?}");
    assert_dropped_at_once(&report, "flooded invalid requests");
    assert_banned(
        &swarm.seeder.stats,
        flood.local_addr(),
        "flooded invalid requests",
        &report,
    );
    swarm.assert_seeder_still_up();
}

#[test]
fn seeder_keeps_serving_a_good_downloader_while_a_peer_floods_valid_requests_unread() {
    // 50,000 valid requests (850 KB of them, 800 MB of answers asked for)
    // from a peer that never reads: the seeder must bound what it queues.
    let swarm = Swarm::new(27);
    let flood = RequestFlood::start(
        swarm.seeder.addr,
        &swarm.torrent,
        Flood::ValidRequests { count: 50_000 },
    );
    swarm.download(&[]);
    let report = flood.report();
    eprintln!("valid request flood: {report:?}");
    assert_eq!(report.handshakes, 1, "{report:#?}");
    drop(flood);
    swarm.assert_seeder_still_up();
}

#[test]
fn download_completes_when_peers_close_during_the_handshake() {
    let swarm = Swarm::new(28);
    let few_bytes = HostilePeer::start(&swarm.torrent, Behaviour::ClosesAfterAFewBytes);
    let half = HostilePeer::start(&swarm.torrent, Behaviour::SendsHalfAHandshake);
    swarm.download(&[few_bytes.addr(), half.addr()]);
    for (peer, what) in [
        (&few_bytes, "closes after a few bytes"),
        (&half, "sends half a handshake"),
    ] {
        let report = peer.report();
        eprintln!("peer that {what}: {report:?}");
        assert!(report.connections >= 1, "{what}: never dialled");
    }
    swarm.assert_seeder_still_up();
}

#[test]
fn download_completes_and_bans_a_peer_that_sends_blocks_nobody_requested() {
    // The blocks carry correct data: only the protocol is broken, so a ban
    // cannot come from a hash check.
    let swarm = Swarm::new(29);
    let pusher = HostilePeer::start(&swarm.torrent, Behaviour::SendsUnrequestedBlocks);
    let stats = swarm.download(&[pusher.addr()]);
    let report = pusher.report();
    eprintln!("unrequested blocks peer: {report:?}");
    assert!(report.blocks_sent > 0, "{report:#?}");
    assert_eq!(
        report.requests_received, 0,
        "a choked downloader sent requests: {report:#?}"
    );
    assert_banned(
        &stats,
        pusher.addr(),
        "sent blocks nobody requested",
        &report,
    );
    swarm.assert_seeder_still_up();
}
