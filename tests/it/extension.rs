//! The extension protocol (BEP 10) on the download side: the remote's
//! `reqq` caps the requests we keep in flight to it.

use std::fs;

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
