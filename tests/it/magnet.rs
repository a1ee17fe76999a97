//! Magnet links (BEP 9 ut_metadata over the BEP 10 extension protocol),
//! driving only the binary: our seeder to our downloader by `--peer`,
//! `x.pe` and a tracker; metadata from scripted peers (`support::meta_peer`)
//! that serve half of it each, a forgery, or announce 1 GiB; `--save-torrent`;
//! a resumed magnet download; and both sides' extended handshakes.
//!
//! Where the order of peers matters, the downloader first meets the scripted
//! peers alone, the test waits until they did their part (their reports say
//! so), and only then does our seeder start: it announces to the test
//! tracker, learns of the downloader, and dials it.

use std::fs;

use sha1::{Digest, Sha1};

use crate::support::bencode::{TFile, decode, raw_value};
use crate::support::ext::{Dialer, metadata_piece_count};
use crate::support::magnet::*;
use crate::support::meta_peer::{
    Content, MetaPeer, MetaScript, OUR_UT_METADATA, even_pieces, ignore_all, odd_pieces, reject_all,
};
use crate::support::tracker::TestTracker;
use crate::support::*;

/// The scripted peers' addresses: each its own IP, as the client may treat
/// peers on one IP as one.
const IP_A: [u8; 4] = [127, 0, 0, 2];
const IP_B: [u8; 4] = [127, 0, 0, 3];

/// Three files whose last piece is one byte long (32 KiB pieces).
fn uneven_files() -> Vec<TFile> {
    let total = 5 * 32768 + 1;
    vec![
        TFile {
            path: vec!["readme.txt"],
            data: content(1000, 1),
        },
        TFile {
            path: vec!["a", "b", "deep.bin"],
            data: content(70_000, 2),
        },
        TFile {
            path: vec!["c", "big.bin"],
            data: content(total - 71_000, 3),
        },
    ]
}

/// 260 small files with long paths: an info dictionary of three metadata
/// pieces (over 32 KiB), for the tests that split the metadata.
fn many_files() -> Vec<TFile> {
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    (0..260usize)
        .map(|i| TFile {
            path: vec![
                leak(format!("folder-{:0>50}", i % 4)),
                leak(format!("file-{i:04}-{}", "x".repeat(80))),
            ],
            data: content(300 + i * 7 % 1200, i as u8),
        })
        .collect()
}

#[test]
fn downloads_a_multi_file_torrent_by_magnet_from_a_seeder_given_by_peer() {
    let dir = tempfile::tempdir().unwrap();
    let made = multi_file(dir.path(), "uneven", uneven_files(), 32768, None);
    let seeder = Seeder::start(&[arg(&made.torrent)], &made.source, dir.path());
    // `dn` is only a display name: the folder is named by the info dictionary.
    let uri = magnet(&hex(&made.info_hash), "a display name", &[], &[]);
    let dest = dir.path().join("out");
    let args = download_cmd(&[&uri], &dest, &[seeder.addr(IP_A)]);
    let (status, stderr) = run_binary(&args, dir.path());
    assert_success(status, &stderr);
    assert_same_tree(&made.source, &dest.join("uneven"));
    assert!(!dest.join("a display name").exists());
}

#[test]
fn downloads_a_single_file_by_magnet_from_a_seeder_given_by_peer() {
    let dir = tempfile::tempdir().unwrap();
    let made = single_file(dir.path(), "single.bin", content(300_007, 4), 16384, None);
    let seeder = Seeder::start(&[arg(&made.torrent)], &made.source, dir.path());
    let dest = dir.path().join("out");
    let uri = made.magnet(&[], &[]);
    let args = download_cmd(&[&uri], &dest, &[seeder.addr(IP_A)]);
    let (status, stderr) = run_binary(&args, dir.path());
    assert_success(status, &stderr);
    assert_eq!(fs::read(dest.join("single.bin")).unwrap(), made.data);
}

#[test]
fn downloads_by_a_base32_magnet_from_the_peer_in_its_x_pe() {
    let dir = tempfile::tempdir().unwrap();
    let made = single_file(dir.path(), "b32.bin", content(100_000, 5), 16384, None);
    let seeder = Seeder::start(&[arg(&made.torrent)], &made.source, dir.path());
    let uri = magnet(
        &base32(&made.info_hash),
        "b32.bin",
        &[],
        &[seeder.addr(IP_A)],
    );
    let dest = dir.path().join("out");
    // No --peer: x.pe is the only way to the seeder.
    let (status, stderr) = run_binary(&download_cmd(&[&uri], &dest, &[]), dir.path());
    assert_success(status, &stderr);
    assert_eq!(fs::read(dest.join("b32.bin")).unwrap(), made.data);
}

#[test]
fn downloads_by_magnet_through_the_tracker_in_its_tr() {
    let tracker = TestTracker::start();
    let dir = tempfile::tempdir().unwrap();
    let data = content(200_000, 6);
    let made = single_file(dir.path(), "tracked.bin", data, 16384, Some(&tracker.url));
    let seeder = Seeder::start(&[arg(&made.torrent)], &made.source, dir.path());
    let uri = made.magnet(&[&tracker.url], &[]);
    assert!(uri.contains("&tr=http%3A%2F%2F127.0.0.1%3A"), "{uri}");
    let dest = dir.path().join("out");
    let (status, stderr) = run_binary(&download_cmd(&[&uri], &dest, &[]), dir.path());
    assert_success(status, &stderr);
    assert_eq!(fs::read(dest.join("tracked.bin")).unwrap(), made.data);
    let announces = tracker.announces.lock().unwrap().clone();
    assert!(
        announces
            .iter()
            .any(|a| a.info_hash == made.info_hash && a.port != seeder.port),
        "the downloader announced the magnet's info-hash: {announces:?}"
    );
}

#[test]
fn metadata_is_assembled_from_two_peers_each_serving_half_of_its_pieces() {
    let tracker = TestTracker::start();
    let dir = tempfile::tempdir().unwrap();
    let made = multi_file(dir.path(), "many", many_files(), 16384, Some(&tracker.url));
    let pieces = metadata_piece_count(made.info.len());
    assert!(pieces >= 3, "{} bytes of metadata", made.info.len());
    let even = MetaPeer::start(
        IP_A,
        MetaScript {
            answer: even_pieces,
            ..MetaScript::serving(made.info_hash, &made.info)
        },
    );
    let odd = MetaPeer::start(
        IP_B,
        MetaScript {
            answer: odd_pieces,
            ..MetaScript::serving(made.info_hash, &made.info)
        },
    );
    let dest = dir.path().join("out");
    let uri = made.magnet(&[&tracker.url], &[]);
    let args = download_cmd(&[&uri], &dest, &[even.addr(), odd.addr()]);
    let mut child = Binary::spawn(&args, dir.path());
    let reports = || format!("even: {:#?}\nodd: {:#?}", even.report(), odd.report());
    wait_while_running(
        &mut child,
        "every metadata piece served by one of the two peers",
        || {
            let (e, o) = (even.report(), odd.report());
            (0..pieces).all(|p| e.metadata_served.contains(&p) || o.metadata_served.contains(&p))
        },
        reports,
    );
    // Only now can the content come: our seeder dials the downloader.
    let _seeder = Seeder::start(&[arg(&made.torrent)], &made.source, dir.path());
    let (status, stderr) = child.wait();
    assert_success(status, &stderr);
    assert_same_tree(&made.source, &dest.join("many"));
    let (e, o) = (even.report(), odd.report());
    assert!(
        e.metadata_served.iter().all(|p| p % 2 == 0),
        "{}",
        reports()
    );
    assert!(
        o.metadata_served.iter().all(|p| p % 2 == 1),
        "{}",
        reports()
    );
    assert!(!o.metadata_served.is_empty(), "{}", reports());
}

#[test]
fn metadata_that_does_not_hash_to_the_info_hash_is_thrown_away() {
    let tracker = TestTracker::start();
    let dir = tempfile::tempdir().unwrap();
    let data = content(150_000, 7);
    let made = single_file(dir.path(), "right.bin", data, 16384, Some(&tracker.url));
    // A valid info dictionary of the same size naming another file: taken
    // for the real one, the download would land in out/wrong.bin.
    let at = made.info.windows(11).position(|w| w == b"9:right.bin");
    let at = at.expect("the name in the info dictionary");
    let mut forged = made.info.clone();
    forged[at..at + 11].copy_from_slice(b"9:wrong.bin");
    assert_eq!(forged.len(), made.info.len());
    let liar = MetaPeer::start(
        IP_A,
        MetaScript {
            metadata: forged.into(),
            ..MetaScript::serving(made.info_hash, &made.info)
        },
    );
    let dest = dir.path().join("out");
    let uri = made.magnet(&[&tracker.url], &[]);
    let mut child = Binary::spawn(&download_cmd(&[&uri], &dest, &[liar.addr()]), dir.path());
    let pieces = metadata_piece_count(made.info.len());
    wait_while_running(
        &mut child,
        "the forged metadata served",
        || liar.report().metadata_served.len() as u32 >= pieces,
        || format!("{:#?}", liar.report()),
    );
    let _seeder = Seeder::start(&[arg(&made.torrent)], &made.source, dir.path());
    let (status, stderr) = child.wait();
    assert_success(status, &stderr);
    assert_eq!(fs::read(dest.join("right.bin")).unwrap(), made.data);
    assert!(!dest.join("wrong.bin").exists(), "the forgery was used");
    let report = liar.report();
    for piece in 0..pieces {
        let asked = report
            .metadata_requests
            .iter()
            .filter(|&&p| p == piece)
            .count();
        assert!(asked <= 1, "the liar was asked again: {report:#?}");
    }
}

#[test]
fn a_peer_that_never_answers_metadata_requests_does_not_stall_the_download() {
    let tracker = TestTracker::start();
    let dir = tempfile::tempdir().unwrap();
    let data = content(120_000, 12);
    let made = single_file(dir.path(), "mute.bin", data, 16384, Some(&tracker.url));
    let mute = MetaPeer::start(
        IP_A,
        MetaScript {
            answer: ignore_all,
            ..MetaScript::serving(made.info_hash, &made.info)
        },
    );
    let dest = dir.path().join("out");
    let uri = made.magnet(&[&tracker.url], &[]);
    let mut child = Binary::spawn(&download_cmd(&[&uri], &dest, &[mute.addr()]), dir.path());
    wait_while_running(
        &mut child,
        "a metadata request to the mute peer",
        || !mute.report().metadata_requests.is_empty(),
        || format!("{:#?}", mute.report()),
    );
    let _seeder = Seeder::start(&[arg(&made.torrent)], &made.source, dir.path());
    let (status, stderr) = child.wait();
    assert_success(status, &stderr);
    assert_eq!(fs::read(dest.join("mute.bin")).unwrap(), made.data);
}

#[test]
fn a_peer_announcing_1_gib_of_metadata_is_never_asked_and_nothing_is_allocated() {
    const GIB: u64 = 1 << 30;
    let tracker = TestTracker::start();
    let dir = tempfile::tempdir().unwrap();
    let data = content(2_000_000, 8);
    let made = single_file(dir.path(), "huge.bin", data, 32768, Some(&tracker.url));
    let huge = MetaPeer::start(
        IP_A,
        MetaScript {
            metadata_size: GIB,
            answer: reject_all,
            ..MetaScript::serving(made.info_hash, &made.info)
        },
    );
    let dest = dir.path().join("out");
    let uri = made.magnet(&[&tracker.url], &[]);
    let args = download_cmd(&[&uri], &dest, &[huge.addr()]);
    // One malloc arena: the process's virtual size is then well under
    // 1 GiB (about 150 MiB measured), so a 1 GiB buffer would show.
    let mut child = Binary::spawn_with_env(&args, dir.path(), &[("MALLOC_ARENA_MAX", "1")]);
    wait_while_running(
        &mut child,
        "the extended handshakes exchanged with the 1 GiB peer",
        || !huge.report().their_ext_handshakes.is_empty(),
        || format!("{:#?}", huge.report()),
    );
    let _seeder = Seeder::start(&[arg(&made.torrent)], &made.source, dir.path());
    let (status, stderr, vm_peak) = wait_sampling_vm_peak(child);
    assert_success(status, &stderr);
    assert_eq!(fs::read(dest.join("huge.bin")).unwrap(), made.data);
    let report = huge.report();
    assert!(report.metadata_requests.is_empty(), "{report:#?}");
    assert!(
        vm_peak < GIB,
        "the client's virtual size reached {vm_peak} bytes"
    );
}

#[test]
fn save_torrent_writes_a_torrent_with_the_magnets_info_hash_that_downloads() {
    let dir = tempfile::tempdir().unwrap();
    let made = multi_file(dir.path(), "saved", uneven_files(), 32768, None);
    let seeder = Seeder::start(&[arg(&made.torrent)], &made.source, dir.path());
    let saved = dir.path().join("saved-from-magnet.torrent");
    let dest = dir.path().join("out");
    let uri = made.magnet(&[], &[]);
    let mut args = download_cmd(&[&uri], &dest, &[seeder.addr(IP_A)]);
    args.extend(["--save-torrent".into(), arg(&saved).into()]);
    let (status, stderr) = run_binary(&args, dir.path());
    assert_success(status, &stderr);
    assert_same_tree(&made.source, &dest.join("saved"));

    let bytes = fs::read(&saved).unwrap();
    let info = raw_value(&bytes, "info").expect("an info dictionary");
    assert_eq!(<[u8; 20]>::from(Sha1::digest(info)), made.info_hash);
    assert_eq!(info, &made.info[..], "the info dictionary as fetched");
    let parsed = bittorrent::metainfo::Metainfo::from_bytes(&bytes)
        .unwrap_or_else(|e| panic!("the saved torrent does not parse: {e:?}"));
    assert_eq!(parsed.info_hash.0, made.info_hash);
    assert_eq!(parsed.name, "saved");

    let again = dir.path().join("again");
    let args = download_cmd(&[arg(&saved)], &again, &[seeder.addr(IP_B)]);
    let (status, stderr) = run_binary(&args, dir.path());
    assert_success(status, &stderr);
    assert_same_tree(&made.source, &again.join("saved"));
}

#[test]
fn an_interrupted_magnet_download_resumes_from_where_it_was() {
    const PIECE_LEN: u32 = 16384;
    const PIECES: u32 = 40;
    let dir = tempfile::tempdir().unwrap();
    let data = content(PIECES as usize * PIECE_LEN as usize - 999, 9);
    let made = single_file(dir.path(), "resume.bin", data, PIECE_LEN as usize, None);
    let half = PIECES / 2;
    let half_len = (half * PIECE_LEN) as usize;
    let seeding = |pieces| MetaScript {
        content: Some(Content {
            piece_len: PIECE_LEN,
            data: made.data.clone().into(),
            pieces,
        }),
        ..MetaScript::serving(made.info_hash, &made.info)
    };
    // First run: the only peer has the first half, so the download stops
    // half-way, where it is interrupted.
    let partial = MetaPeer::start(IP_A, seeding(0..half));
    let dest = dir.path().join("out");
    let uri = made.magnet(&[], &[]);
    let mut child = Binary::spawn(&download_cmd(&[&uri], &dest, &[partial.addr()]), dir.path());
    let file = dest.join("resume.bin");
    wait_while_running(
        &mut child,
        "the first half on disk",
        || fs::read(&file).is_ok_and(|got| got.get(..half_len) == Some(&made.data[..half_len])),
        || format!("{:#?}", partial.report()),
    );
    child.interrupt();
    let (status, stderr) = child.wait();
    assert_eq!(status.code(), Some(130), "stderr:\n{stderr}");
    drop(partial);

    // Second run, same magnet, from a peer with everything: only the second
    // half is asked for.
    let full = MetaPeer::start(IP_B, seeding(0..PIECES));
    let args = download_cmd(&[&uri], &dest, &[full.addr()]);
    let (status, stderr) = run_binary(&args, dir.path());
    assert_success(status, &stderr);
    assert_eq!(fs::read(&file).unwrap(), made.data);
    let report = full.report();
    assert!(!report.block_requests.is_empty(), "{report:#?}");
    assert!(
        report
            .block_requests
            .iter()
            .all(|&(index, _)| index >= half),
        "pieces found on disk were asked for again: {:?}",
        report.block_requests
    );
}

#[test]
fn a_magnet_download_sends_an_extended_handshake_with_ut_metadata_v_p_reqq_and_yourip() {
    // A scripted peer serves both the metadata and the content.
    let dir = tempfile::tempdir().unwrap();
    let made = single_file(dir.path(), "hs.bin", content(50_000, 10), 16384, None);
    let peer = MetaPeer::start(
        IP_A,
        MetaScript {
            content: Some(Content {
                piece_len: 16384,
                data: made.data.clone().into(),
                pieces: 0..4,
            }),
            ..MetaScript::serving(made.info_hash, &made.info)
        },
    );
    let dest = dir.path().join("out");
    let uri = made.magnet(&[], &[]);
    let (status, stderr) = run_binary(&download_cmd(&[&uri], &dest, &[peer.addr()]), dir.path());
    let report = peer.report();
    assert_success(status, &stderr);
    assert_eq!(fs::read(dest.join("hs.bin")).unwrap(), made.data);
    assert!(
        report.their_reserved.iter().all(|r| r[5] & 0x10 != 0),
        "BEP 10 bit: {report:#?}"
    );
    let first = report
        .their_ext_handshakes
        .first()
        .expect("an extended handshake");
    let ut = first.get("m").and_then(|m| m.get("ut_metadata"));
    let ut = ut.and_then(|id| id.int()).expect("m.ut_metadata");
    assert!((1..=255).contains(&ut), "{first:?}");
    assert!(
        first.get("v").and_then(|v| v.bytes()).is_some(),
        "{first:?}"
    );
    let p = first.get("p").and_then(|p| p.int()).expect("p");
    assert!((1..=65535).contains(&p), "{first:?}");
    assert!(
        first
            .get("reqq")
            .and_then(|r| r.int())
            .is_some_and(|r| r > 0)
    );
    let yourip = first.get("yourip").and_then(|y| y.bytes());
    assert_eq!(yourip, Some(&IP_A[..]), "our address as it dialled us");
    assert!(
        first.get("metadata_size").is_none(),
        "no metadata_size before it has the metadata: {first:?}"
    );
    assert!(report.metadata_served.contains(&0), "{report:#?}");
}

#[test]
fn a_seeder_answers_ut_metadata_with_its_info_dictionary() {
    let dir = tempfile::tempdir().unwrap();
    let made = multi_file(dir.path(), "meta", many_files(), 16384, None);
    let seeder = Seeder::start(&[arg(&made.torrent)], &made.source, dir.path());
    let mut dialer = Dialer::connect(seeder.addr([127, 0, 0, 1]), &made.info_hash)
        .unwrap_or_else(|e| panic!("handshake: {e}"));
    assert!(dialer.theirs.supports_extensions(), "{:?}", dialer.theirs);
    let theirs = dialer
        .exchange_ext_handshakes()
        .unwrap_or_else(|e| panic!("extended handshake: {e}"));
    let size = theirs.get("metadata_size").and_then(|s| s.int());
    assert_eq!(size, Some(made.info.len() as i64), "{theirs:?}");
    assert_eq!(
        theirs.get("p").and_then(|p| p.int()),
        Some(seeder.port.into())
    );
    let yourip = theirs.get("yourip").and_then(|y| y.bytes());
    assert_eq!(yourip, Some(&[127, 0, 0, 1][..]), "{theirs:?}");
    let metadata = dialer
        .fetch_metadata(metadata_piece_count(made.info.len()))
        .unwrap_or_else(|e| panic!("ut_metadata: {e}"));
    assert!(
        metadata == made.info,
        "the metadata differs from the info dictionary"
    );
}

/// A check on the scripted peer itself (runs against any client): our own
/// dialler fetches its metadata by BEP 9, pieces in order, and the last
/// piece shorter.
#[test]
fn the_scripted_peer_serves_metadata_that_hashes_to_the_info_hash() {
    let dir = tempfile::tempdir().unwrap();
    let made = multi_file(dir.path(), "self", many_files(), 16384, None);
    let peer = MetaPeer::start(IP_A, MetaScript::serving(made.info_hash, &made.info));
    let mut dialer = Dialer::connect(peer.addr(), &made.info_hash).unwrap();
    assert!(dialer.theirs.supports_extensions());
    let theirs = dialer.exchange_ext_handshakes().unwrap();
    let ut = theirs.get("m").and_then(|m| m.get("ut_metadata"));
    assert_eq!(ut.and_then(|id| id.int()), Some(OUR_UT_METADATA.into()));
    let pieces = metadata_piece_count(made.info.len());
    let metadata = dialer.fetch_metadata(pieces).unwrap();
    assert_eq!(<[u8; 20]>::from(Sha1::digest(&metadata)), made.info_hash);
    assert!(decode(&metadata).is_some_and(|(_, used)| used == metadata.len()));
    assert_eq!(
        peer.report().metadata_served,
        (0..pieces).collect::<Vec<_>>()
    );
    let halves = MetaPeer::start(
        IP_B,
        MetaScript {
            answer: even_pieces,
            ..MetaScript::serving(made.info_hash, &made.info)
        },
    );
    let mut dialer = Dialer::connect(halves.addr(), &made.info_hash).unwrap();
    dialer.exchange_ext_handshakes().unwrap();
    let refused = dialer.fetch_metadata(pieces).unwrap_err().to_string();
    assert!(refused.contains("piece 1 rejected"), "{refused}");
}

/// A check on the scripted peer's content side: a download by `.torrent`
/// (no metadata exchange needed) completes from it alone.
#[test]
fn the_scripted_peer_seeds_its_content_to_a_torrent_file_download() {
    let dir = tempfile::tempdir().unwrap();
    let made = single_file(dir.path(), "plain.bin", content(100_001, 11), 16384, None);
    let peer = MetaPeer::start(
        IP_A,
        MetaScript {
            content: Some(Content {
                piece_len: 16384,
                data: made.data.clone().into(),
                pieces: 0..7,
            }),
            ..MetaScript::serving(made.info_hash, &made.info)
        },
    );
    let dest = dir.path().join("out");
    let args = download_cmd(&[arg(&made.torrent)], &dest, &[peer.addr()]);
    let (status, stderr) = run_binary(&args, dir.path());
    assert_success(status, &stderr);
    assert_eq!(fs::read(dest.join("plain.bin")).unwrap(), made.data);
    assert!(peer.report().blocks_sent >= 7, "{:#?}", peer.report());
}
