//! The extension protocol (BEP 10): the remote's `reqq` caps the requests
//! we keep in flight to it; a peer flooding our seeder with metadata
//! requests (BEP 9) gets bounded answers.

use std::fs;

use crate::support::ext::{Dialer, extended, ut_request};
use crate::support::magnet::*;
use crate::support::meta_peer::{Content, MetaPeer, MetaScript};
use crate::support::*;

/// A seeder that queues only 4 requests, and answers late: the downloader,
/// which would keep 64 in flight to a new peer, never has more than 4
/// outstanding, and still completes.
#[test]
fn requests_in_flight_never_exceed_the_remotes_reqq() {
    let dir = tempfile::tempdir().unwrap();
    let made = single_file(dir.path(), "queued.bin", content(600_000, 21), 65536, None);
    let peer = MetaPeer::start(
        [127, 0, 0, 2],
        MetaScript {
            content: Some(Content {
                piece_len: 65536,
                data: made.data.clone().into(),
                pieces: 0..10,
            }),
            reqq: Some(4),
            ..MetaScript::serving(made.info_hash, &made.info)
        },
    );
    let dest = dir.path().join("out");
    let args = download_cmd(&[arg(&made.torrent)], &dest, &[peer.addr()]);
    let (status, stderr) = run_binary(&args, dir.path());
    assert_success(status, &stderr);
    assert_eq!(fs::read(dest.join("queued.bin")).unwrap(), made.data);
    let report = peer.report();
    assert!(
        report.block_requests.len() >= 37,
        "the whole file was requested: {report:#?}"
    );
    assert!(
        (1..=4).contains(&report.most_requests_outstanding),
        "at most reqq = 4 requests in flight, saw {}",
        report.most_requests_outstanding
    );
}

/// Regression: each metadata request (about 30 bytes) was answered at once
/// with up to 16 KiB of output, so a peer that asked without reading grew
/// our seeder's memory without bound (60,000 requests: about 1 GB). Now
/// requests wait in a bounded queue and are answered as the output drains.
#[test]
fn a_flood_of_metadata_requests_from_a_peer_that_never_reads_stays_bounded() {
    let dir = tempfile::tempdir().unwrap();
    // 1,300 pieces of 1 KiB: an info dictionary of over 26 KiB, two
    // metadata pieces, the first a whole 16 KiB.
    let made = single_file(
        dir.path(),
        "flood.bin",
        content(1300 * 1024, 22),
        1024,
        None,
    );
    assert!(made.info.len() > 16384);
    let seeder = Seeder::start(&[arg(&made.torrent)], &made.source, dir.path());
    let before = seeder.resident_len();
    let mut dialer = Dialer::connect(seeder.addr([127, 0, 0, 2]), &made.info_hash)
        .unwrap_or_else(|e| panic!("handshake: {e}"));
    let theirs = dialer
        .exchange_ext_handshakes()
        .unwrap_or_else(|e| panic!("extended handshake: {e}"));
    let ut = theirs
        .get("m")
        .and_then(|m| m.get("ut_metadata"))
        .and_then(|id| id.int())
        .expect("the seeder offers ut_metadata") as u8;
    let request = extended(ut, &ut_request(0));
    let burst: Vec<u8> = request.repeat(1000);
    for _ in 0..60 {
        // The seeder may stop reading once its output is full: a write
        // that times out ends the flood, which is the point.
        if dialer.send(&burst).is_err() {
            break;
        }
    }
    // Give it time to read and (not) answer what it took in.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    let mut most = 0;
    while std::time::Instant::now() < deadline {
        most = most.max(seeder.resident_len());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(
        most < before + 64 * 1024 * 1024,
        "the seeder grew from {before} to {most} bytes resident"
    );
}
