//! Misbehaving peers next to a good seeder, played by the scripts of
//! `support::hostile`. In every test the download completes byte-identical
//! within [`COMPLETES_WITHIN`], the good seeder stays up and stops cleanly,
//! and a peer that lied or broke the protocol ends up in `Stats::banned`.
//!
//! Order matters: over loopback a good seeder delivers this torrent in about
//! 100 ms, before most misbehaviours could happen. So the downloader first
//! dials the hostile peer alone, the test waits until the misbehaviour has
//! had its effect (a ban, a request timeout, several chokes), and only then
//! does the good seeder join, by dialling the downloader. Where the hostile
//! peer needs no pieces (handshakes closed early), the downloader dials both
//! at once. The request floods target a seeder, with a good downloader
//! dialling the same seeder.

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
    Behaviour, Flood, HostilePeer, InvalidRequest, Report, RequestFlood, Torrent, init_logging,
    wait_for,
};
use crate::support::peer::ScriptedPeer;
use crate::support::*;
use bittorrent::peer::wire::Message;

/// 32 KiB pieces: two blocks each, so a peer can stop in the middle of one.
const PIECE_LEN: usize = 32 * 1024;
/// Enough pieces for a hostile peer to be given several, and not a multiple
/// of 8, so a bitfield has spare bits.
const PIECE_COUNT: usize = 42;
/// The last piece is shorter, and so is its last block.
const LAST_PIECE_LEN: usize = 20_000;
/// Each download must complete within this, counted from its start (a
/// request timeout alone is about 10 s).
const COMPLETES_WITHIN: Duration = Duration::from_secs(30);
/// A peer that breaks the protocol must be dropped within this.
const DROPPED_WITHIN: Duration = Duration::from_secs(2);
/// A peer that lies must be banned within this of the download's start.
const BANNED_WITHIN: Duration = Duration::from_secs(10);
/// Requests left unanswered must be given up within this (the client's
/// request timeout is about 10 s).
const GIVEN_UP_WITHIN: Duration = Duration::from_secs(15);

/// Most bytes a seeder may read to serve a flood of requests it cannot
/// send (the flooder never reads): socket buffers and an output queue, not
/// the 800 MB asked for.
const FLOOD_READ_BOUND: u64 = 64 * 1024 * 1024;

/// A torrent and its content on disk, from which seeders and downloaders start.
struct Swarm {
    dir: tempfile::TempDir,
    torrent_path: PathBuf,
    source: PathBuf,
    torrent: Torrent,
    downloads: AtomicUsize,
}

impl Swarm {
    /// Writes a torrent of [`PIECE_COUNT`] pieces with content from `seed`.
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
        let torrent = Torrent {
            info_hash: InfoHash(info_hash),
            piece_len: PIECE_LEN as u32,
            data: Arc::new(data),
        };
        assert_eq!(torrent.piece_count() as usize, PIECE_COUNT);
        Swarm {
            dir,
            torrent_path,
            source,
            torrent,
            downloads: AtomicUsize::new(0),
        }
    }

    /// Starts the good seeder, dialling `peers`.
    fn seeder(&self, peers: Vec<SocketAddr>) -> Running {
        Running::start(&config(&self.torrent_path, seed_from(&self.source), peers))
    }

    /// Starts a downloader into a fresh folder, dialling `peers` in order.
    fn download(&self, peers: Vec<SocketAddr>) -> Download {
        let n = self.downloads.fetch_add(1, Ordering::Relaxed);
        let dest = self.dir.path().join(format!("out-{n}"));
        let running = Running::start(&config(&self.torrent_path, download_to(&dest), peers));
        Download {
            stats: Arc::clone(&running.stats),
            running,
            file: dest.join("hostile.bin"),
            started: Instant::now(),
        }
    }
}

/// A download under test.
struct Download {
    running: Running,
    stats: Arc<Stats>,
    file: PathBuf,
    started: Instant,
}

impl Download {
    /// Waits for the download to end by itself and asserts it completed
    /// with the source's bytes within [`COMPLETES_WITHIN`]. Returns its counters.
    fn assert_completes(self, swarm: &Swarm) -> Arc<Stats> {
        let outcome = self
            .running
            .wait()
            .unwrap_or_else(|e| panic!("download failed: {e:?}"));
        let elapsed = self.started.elapsed();
        eprintln!("download completed in {elapsed:?}");
        assert_eq!(outcome, Outcome::Complete);
        let got = fs::read(&self.file).unwrap();
        assert!(
            got == *swarm.torrent.data,
            "the download differs from the source"
        );
        assert!(
            elapsed < COMPLETES_WITHIN,
            "the download took {elapsed:?}, more than {COMPLETES_WITHIN:?}"
        );
        self.stats
    }
}

/// Asserts that the good seeder still accepts connections, then stops it
/// and asserts that it stops cleanly.
fn assert_still_up(seeder: Running) {
    TcpStream::connect_timeout(&seeder.addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("the seeder no longer accepts connections: {e}"));
    let outcome = seeder
        .stop()
        .unwrap_or_else(|e| panic!("the seeder failed: {e:?}"));
    assert_eq!(outcome, Outcome::Stopped);
}

/// Waits (up to [`BANNED_WITHIN`]) until `stats` lists `addr`, the peer that `what`.
fn wait_banned(stats: &Stats, addr: SocketAddr, what: &str, report: impl Fn() -> Report) {
    let banned = || stats.banned().contains(&addr);
    let started = Instant::now();
    while !banned() {
        assert!(
            started.elapsed() < BANNED_WITHIN,
            "the peer that {what} ({addr}) was not banned within {BANNED_WITHIN:?}; \
             banned: {:?}; it saw: {:#?}",
            stats.banned(),
            report()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!(
        "the peer that {what} was banned after {:?}",
        started.elapsed()
    );
}

/// Asserts that `addr` (the peer that `what`) is among the banned.
fn assert_banned(stats: &Stats, addr: SocketAddr, what: &str) {
    let banned = stats.banned();
    assert!(
        banned.contains(&addr),
        "the peer that {what} ({addr}) is not banned; banned: {banned:?}"
    );
}

/// Asserts that a connection of the peer that `what` was dropped within
/// [`DROPPED_WITHIN`] of its misbehaviour.
fn assert_dropped_at_once(report: &Report, what: &str) {
    assert!(
        report.dropped_after.iter().any(|d| *d < DROPPED_WITHIN),
        "the peer that {what} was not dropped within {DROPPED_WITHIN:?}: {report:#?}"
    );
}

#[test]
fn download_completes_and_bans_a_peer_that_sends_corrupt_blocks() {
    // Alone, the liar is given every piece, and each one it delivers fails.
    let swarm = Swarm::new(21);
    let liar = HostilePeer::start(&swarm.torrent, Behaviour::CorruptBlocks);
    let download = swarm.download(vec![liar.addr()]);
    let what = "sent corrupt blocks";
    wait_banned(&download.stats, liar.addr(), what, || liar.report());
    let seeder = swarm.seeder(vec![download.running.addr]);
    let stats = download.assert_completes(&swarm);
    let report = liar.report();
    eprintln!("corrupt peer: {report:?}");
    assert!(report.blocks_sent >= 2, "{report:#?}");
    assert_banned(&stats, liar.addr(), what);
    assert_still_up(seeder);
}

#[test]
fn download_completes_and_bans_a_peer_that_sends_a_2_gib_length_prefix() {
    let swarm = Swarm::new(22);
    let liar = HostilePeer::start(&swarm.torrent, Behaviour::HugeLengthPrefix);
    let download = swarm.download(vec![liar.addr()]);
    let what = "sent a 2 GiB length prefix";
    wait_banned(&download.stats, liar.addr(), what, || liar.report());
    let seeder = swarm.seeder(vec![download.running.addr]);
    let stats = download.assert_completes(&swarm);
    let report = liar.report();
    eprintln!("2 GiB prefix peer: {report:?}");
    assert_dropped_at_once(&report, what);
    assert_banned(&stats, liar.addr(), what);
    assert_still_up(seeder);
}

#[test]
fn download_completes_and_bans_peers_that_send_an_invalid_bitfield() {
    let swarm = Swarm::new(23);
    let spare_bits = HostilePeer::start(&swarm.torrent, Behaviour::BitfieldWithSpareBits);
    let too_long = HostilePeer::start(&swarm.torrent, Behaviour::BitfieldTooLong);
    let download = swarm.download(vec![spare_bits.addr(), too_long.addr()]);
    let peers = [
        (&spare_bits, "sent a bitfield with spare bits set"),
        (&too_long, "sent a bitfield one byte too long"),
    ];
    for (peer, what) in peers {
        wait_banned(&download.stats, peer.addr(), what, || peer.report());
    }
    let seeder = swarm.seeder(vec![download.running.addr]);
    let stats = download.assert_completes(&swarm);
    for (peer, what) in peers {
        let report = peer.report();
        eprintln!("peer that {what}: {report:?}");
        assert_dropped_at_once(&report, what);
        assert_banned(&stats, peer.addr(), what);
    }
    assert_still_up(seeder);
}

#[test]
fn download_completes_when_a_peer_goes_silent_in_the_middle_of_a_piece() {
    // Three blocks answered: one whole piece and half of another, then
    // silence with the socket open and requests outstanding. The client must
    // give those requests up (cancel them, or close) by itself; then the
    // good seeder joins and the silent peer's pieces come from it.
    let swarm = Swarm::new(24);
    let silent = HostilePeer::start(&swarm.torrent, Behaviour::GoesSilentAfter { blocks: 3 });
    let download = swarm.download(vec![silent.addr()]);
    let given_up = wait_for(
        "the client to give up the silent peer's requests",
        GIVEN_UP_WITHIN,
        || {
            let report = silent.report();
            report.cancels_received > 0 || !report.dropped_after.is_empty()
        },
    );
    eprintln!("requests given up {given_up:?} after the download started");
    let seeder = swarm.seeder(vec![download.running.addr]);
    download.assert_completes(&swarm);
    let report = silent.report();
    eprintln!("silent peer: {report:?}");
    assert_eq!(report.blocks_sent, 3, "{report:#?}");
    assert!(
        report.requests_received > 3,
        "no request was left unanswered: {report:#?}"
    );
    assert_still_up(seeder);
}

#[test]
fn download_completes_without_waiting_when_a_seeder_disconnects_mid_piece() {
    // One whole piece and half of another, then the connection closes. The
    // half piece comes back to the manager with its blocks, and the good
    // seeder, joining afterwards, finishes it at once: nothing waits for a
    // request timeout.
    let swarm = Swarm::new(26);
    let dropper = HostilePeer::start(&swarm.torrent, Behaviour::DisconnectsAfter { blocks: 3 });
    let download = swarm.download(vec![dropper.addr()]);
    wait_for(
        "the peer to have served and closed",
        GIVEN_UP_WITHIN,
        || dropper.report().blocks_sent == 3 && dropper.report().connections > 0,
    );
    let joined = Instant::now();
    let seeder = swarm.seeder(vec![download.running.addr]);
    download.assert_completes(&swarm);
    assert!(
        joined.elapsed() < Duration::from_secs(5),
        "the download waited {:?} after the seeder joined",
        joined.elapsed()
    );
    assert_still_up(seeder);
}

#[test]
fn download_completes_next_to_a_peer_that_chokes_and_unchokes_every_100_ms() {
    // Once serving two blocks per unchoke, once serving none. The good
    // seeder joins after five chokes; by then a client that re-requests
    // after each unchoke (BEP 3: a choke discards its requests) has been
    // served in several unchokes.
    let swarm = Swarm::new(25);
    for blocks in [2, 0] {
        let flapper = HostilePeer::start(
            &swarm.torrent,
            Behaviour::FlapsChoke {
                period: Duration::from_millis(100),
                blocks,
            },
        );
        let download = swarm.download(vec![flapper.addr()]);
        wait_for("five chokes", Duration::from_secs(10), || {
            flapper.report().chokes_sent >= 5
        });
        let report = flapper.report();
        if blocks > 0 {
            assert!(
                report.blocks_sent > blocks,
                "served in one unchoke only: requests are not sent again after an unchoke: {report:#?}"
            );
        }
        let seeder = swarm.seeder(vec![download.running.addr]);
        download.assert_completes(&swarm);
        eprintln!(
            "flapping peer serving {blocks} blocks per unchoke: {:?}",
            flapper.report()
        );
        assert_still_up(seeder);
    }
}

#[test]
fn seeder_bans_peers_flooding_invalid_requests_and_keeps_serving_a_good_downloader() {
    // Three flooders at once, 5,000 requests each, every 50th invalid: a
    // piece past the end, a 32 KiB block, an offset past the end of a piece.
    let swarm = Swarm::new(26);
    let seeder = swarm.seeder(vec![]);
    let floods: Vec<(RequestFlood, InvalidRequest)> = [
        InvalidRequest::PiecePastTheEnd,
        InvalidRequest::LongerThanABlock,
        InvalidRequest::BeginPastTheEndOfThePiece,
    ]
    .into_iter()
    .map(|invalid| {
        let flood = Flood::InvalidRequests {
            count: 5000,
            invalid,
        };
        (
            RequestFlood::start(seeder.addr, &swarm.torrent, flood),
            invalid,
        )
    })
    .collect();
    let download = swarm.download(vec![seeder.addr]);
    for (flood, invalid) in &floods {
        let what = format!("flooded requests with {invalid:?}");
        wait_banned(&seeder.stats, flood.local_addr(), &what, || flood.report());
    }
    download.assert_completes(&swarm);
    for (flood, invalid) in &floods {
        let report = flood.report();
        eprintln!("flood with {invalid:?}: {report:?}");
        assert_dropped_at_once(&report, &format!("flooded requests with {invalid:?}"));
    }
    drop(floods);
    assert_still_up(seeder);
}

#[test]
fn seeder_keeps_serving_a_good_downloader_while_a_peer_floods_valid_requests_unread() {
    // 50,000 valid requests (850 KB of them, 800 MB of blocks asked for) from
    // a peer that never reads: the seeder must bound what it reads from disk
    // and queues for it, and go on serving the good downloader.
    let swarm = Swarm::new(27);
    let seeder = swarm.seeder(vec![]);
    let flood = RequestFlood::start(
        seeder.addr,
        &swarm.torrent,
        Flood::ValidRequests { count: 50_000 },
    );
    wait_for("the flood to be sent", Duration::from_secs(10), || {
        flood.report().requests_sent == 50_000
    });
    let report = flood.report();
    assert!(
        report.unchoked,
        "the seeder never unchoked the flooding peer, so the flood tested nothing: {report:#?}"
    );
    let download = swarm.download(vec![seeder.addr]);
    download.assert_completes(&swarm);
    // The seeder counts a block as uploaded when it reads it for sending.
    let watch_until = Instant::now() + Duration::from_millis(500);
    loop {
        let read = Stats::get(&seeder.stats.uploaded);
        assert!(
            read < FLOOD_READ_BOUND,
            "the seeder read {read} bytes to serve a peer that reads nothing"
        );
        if Instant::now() >= watch_until {
            eprintln!("the seeder read {read} bytes in all");
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("valid request flood: {:?}", flood.report());
    drop(flood);
    assert_still_up(seeder);
}

#[test]
fn download_completes_when_peers_close_during_the_handshake() {
    // They hold no pieces, so the downloader dials them and the good seeder
    // at once.
    let swarm = Swarm::new(28);
    let seeder = swarm.seeder(vec![]);
    let few_bytes = HostilePeer::start(&swarm.torrent, Behaviour::ClosesAfterAFewBytes);
    let half = HostilePeer::start(&swarm.torrent, Behaviour::SendsHalfAHandshake);
    let download = swarm.download(vec![few_bytes.addr(), half.addr(), seeder.addr]);
    download.assert_completes(&swarm);
    for (peer, what) in [
        (&few_bytes, "closes after a few bytes"),
        (&half, "sends half a handshake"),
    ] {
        wait_for(
            &format!("the peer that {what} to be dialled"),
            Duration::from_secs(5),
            || !peer.report().endings.is_empty(),
        );
        eprintln!("peer that {what}: {:?}", peer.report());
    }
    assert_still_up(seeder);
}

#[test]
fn download_completes_and_bans_a_peer_that_sends_blocks_nobody_requested() {
    // It keeps the downloader choked, so nothing was requested. The blocks
    // carry correct data: only the protocol is broken, so a ban cannot come
    // from a hash check.
    let swarm = Swarm::new(29);
    let pusher = HostilePeer::start(&swarm.torrent, Behaviour::SendsUnrequestedBlocks);
    let download = swarm.download(vec![pusher.addr()]);
    let what = "sent blocks nobody requested";
    wait_banned(&download.stats, pusher.addr(), what, || pusher.report());
    let seeder = swarm.seeder(vec![download.running.addr]);
    let stats = download.assert_completes(&swarm);
    let report = pusher.report();
    eprintln!("unrequested blocks peer: {report:?}");
    assert_eq!(report.requests_received, 0, "{report:#?}");
    assert_dropped_at_once(&report, what);
    assert_banned(&stats, pusher.addr(), what);
    assert_still_up(seeder);
}

/// Regression: a failed piece used to strike every peer that sent blocks of
/// it, so a liar that sent only corrupt first blocks and then choked got the
/// honest seeder that finished those pieces banned along with it, and the
/// download hung.
#[test]
fn an_honest_seeder_that_finishes_a_liars_partial_pieces_is_not_banned() {
    let swarm = Swarm::new(27);
    let liar = HostilePeer::start(&swarm.torrent, Behaviour::CorruptsFirstBlocksThenChokes);
    let download = swarm.download(vec![liar.addr()]);
    wait_for("three chokes", Duration::from_secs(10), || {
        liar.report().chokes_sent >= 3
    });
    let seeder = swarm.seeder(vec![download.running.addr]);
    let stats = download.assert_completes(&swarm);
    let banned = stats.banned();
    assert!(
        banned.iter().all(|&addr| addr == liar.addr()),
        "only the liar may be banned: {banned:?} (liar {})",
        liar.addr()
    );
    assert_still_up(seeder);
}

#[test]
fn a_downloader_bans_a_peer_that_requests_a_piece_it_does_not_have() {
    // The downloader has nothing yet, so any request is for a piece it lacks.
    let swarm = Swarm::new(28);
    let download = swarm.download(vec![]);
    let mut peer = ScriptedPeer::connect(
        download.running.addr,
        swarm.torrent.info_hash,
        PIECE_COUNT as u32,
    );
    peer.send(Message::Interested);
    peer.send(Message::Request {
        index: 3,
        begin: 0,
        length: 16384,
    });
    peer.wait_closed();
    let me = peer.local_addr();
    wait_for("the ban", Duration::from_secs(5), || {
        download.stats.banned().contains(&me)
    });
    // The download goes on: a good seeder still completes it.
    let seeder = swarm.seeder(vec![download.running.addr]);
    download.assert_completes(&swarm);
    assert_still_up(seeder);
}
