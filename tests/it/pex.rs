//! Peer exchange (BEP 11) and private torrents (BEP 27): a seeder that
//! neither a tracker nor `--peer` names is learned through `ut_pex` and the
//! download completes from it; a seeder tells each peer of the others; a
//! private torrent, and `--no-pex`, neither offer `ut_pex` nor act on it.

use std::fs;
use std::time::{Duration, Instant};

use crate::support::bencode::Value;
use crate::support::magnet::*;
use crate::support::pex_peer::{PexPeer, PexScript, Recorder, private_single_file};
use crate::support::*;

/// The id the session's extended handshake gives `ut_pex`, if it offers it.
fn offered_pex_id(ext: &Value) -> Option<i64> {
    ext.get("m")?.get("ut_pex")?.int()
}

/// D is given only A (`--peer`), a scripted peer with no pieces that sends
/// one `ut_pex` message naming S; S, the only one with the data, is not on
/// any tracker. D dials S, says where it heard of it, and completes.
#[test]
fn a_seeder_learned_only_through_pex_completes_the_download() {
    let dir = tempfile::tempdir().unwrap();
    let made = single_file(dir.path(), "pexed.bin", content(300_000, 31), 16384, None);
    let seeder = Seeder::start(&[arg(&made.torrent)], &made.source, dir.path());
    let s_addr = seeder.addr([127, 0, 0, 3]);
    let a = PexPeer::listen(
        [127, 0, 0, 2],
        PexScript {
            info_hash: made.info_hash,
            named: vec![s_addr],
            listen_port: None,
        },
    );
    let dest = dir.path().join("out");
    let mut args = download_cmd(&[arg(&made.torrent)], &dest, &[a.addr()]);
    // Connections are logged at debug (-vv).
    args.push("-v".into());
    let (status, stderr) = run_binary(&args, dir.path());
    assert_success(status, &stderr);
    assert_eq!(fs::read(dest.join("pexed.bin")).unwrap(), made.data);
    assert!(
        stderr.contains(&format!("{s_addr}: connected (from PEX)")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{}: connected (from command line)", a.addr())),
        "{stderr}"
    );
    let offered = a.with_report(|r| r.their_ext.as_ref().and_then(offered_pex_id));
    assert!(
        offered.is_some_and(|id| id > 0),
        "ut_pex offered: {offered:?}"
    );
}

/// Two peers connect to a seeder, each giving its listen port (`p`): within
/// seconds the seeder tells each of the other, and never of itself.
#[test]
fn a_seeder_tells_each_peer_of_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let made = single_file(dir.path(), "told.bin", content(50_000, 32), 16384, None);
    let seeder = Seeder::start(&[arg(&made.torrent)], &made.source, dir.path());
    let to = seeder.addr([127, 0, 0, 1]);
    let script = |port| PexScript {
        info_hash: made.info_hash,
        named: vec![],
        listen_port: Some(port),
    };
    let one = PexPeer::dial([127, 0, 0, 5], to, script(40001));
    let two = PexPeer::dial([127, 0, 0, 6], to, script(40002));
    let one_listen = "127.0.0.5:40001".parse().unwrap();
    let two_listen = "127.0.0.6:40002".parse().unwrap();
    let deadline = Instant::now() + TIMEOUT;
    for (peer, other, own) in [
        (&one, two_listen, one_listen),
        (&two, one_listen, two_listen),
    ] {
        loop {
            let told = peer.with_report(|r| r.pex_added.clone());
            if told.iter().flatten().any(|&a| a == other) {
                assert!(
                    !told.iter().flatten().any(|&a| a == own || a == peer.addr()),
                    "told its own address: {told:?}"
                );
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{} never told of {other}: {told:?}; end {:?}; stderr:\n{}",
                peer.addr(),
                peer.with_report(|r| r.end.clone()),
                seeder.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// D downloads with `extra` arguments from A, which names a listener in a
/// `ut_pex` message and then asks for metadata: once the answer shows D
/// read the `ut_pex` message, the listener is still untouched a while
/// later, D offered no `ut_pex` and sent none.
fn pex_is_neither_offered_nor_heard(made: &Made, extra: &[&str]) {
    let dir = made.torrent.parent().unwrap();
    let listener = Recorder::start([127, 0, 0, 4]);
    let a = PexPeer::listen(
        [127, 0, 0, 2],
        PexScript {
            info_hash: made.info_hash,
            named: vec![listener.addr()],
            listen_port: None,
        },
    );
    let dest = dir.join("out");
    let mut args = download_cmd(&[arg(&made.torrent)], &dest, &[a.addr()]);
    args.extend(extra.iter().map(|s| s.to_string()));
    let mut child = Binary::spawn(&args, dir);
    wait_while_running(
        &mut child,
        "the answer to the request sent after ut_pex",
        || a.with_report(|r| r.passed_barrier),
        || a.with_report(|r| format!("{r:?}")),
    );
    // A ut_pex acted on is dialled at once; give it well over that.
    let watch_until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < watch_until {
        assert_eq!(listener.accepted(), 0, "stderr:\n{}", child.stderr());
        std::thread::sleep(Duration::from_millis(20));
    }
    a.with_report(|r| {
        let ext = r.their_ext.as_ref().expect("an extended handshake");
        assert_eq!(offered_pex_id(ext), None, "ut_pex offered: {ext:?}");
        assert!(r.pex_added.is_empty(), "ut_pex sent: {:?}", r.pex_added);
    });
    assert!(!child.stderr().contains("from PEX"), "{}", child.stderr());
}

#[test]
fn a_private_torrent_offers_no_pex_and_ignores_pex_it_receives() {
    let dir = tempfile::tempdir().unwrap();
    let made = private_single_file(dir.path(), "private.bin", content(40_000, 33), 16384);
    pex_is_neither_offered_nor_heard(&made, &[]);
}

#[test]
fn no_pex_offers_no_pex_and_ignores_pex_it_receives() {
    let dir = tempfile::tempdir().unwrap();
    let made = single_file(dir.path(), "nopex.bin", content(40_000, 34), 16384, None);
    pex_is_neither_offered_nor_heard(&made, &["--no-pex"]);
}

/// The control for the two tests above: the same script against a public
/// torrent without `--no-pex` gets the listener dialled.
#[test]
fn a_public_torrent_dials_the_address_pex_names() {
    let dir = tempfile::tempdir().unwrap();
    let made = single_file(dir.path(), "public.bin", content(40_000, 35), 16384, None);
    let listener = Recorder::start([127, 0, 0, 4]);
    let a = PexPeer::listen(
        [127, 0, 0, 2],
        PexScript {
            info_hash: made.info_hash,
            named: vec![listener.addr()],
            listen_port: None,
        },
    );
    let dest = dir.path().join("out");
    let args = download_cmd(&[arg(&made.torrent)], &dest, &[a.addr()]);
    let mut child = Binary::spawn(&args, dir.path());
    wait_while_running(
        &mut child,
        "a dial of the address named by ut_pex",
        || listener.accepted() > 0,
        || a.with_report(|r| format!("{r:?}")),
    );
}
