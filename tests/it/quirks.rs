use std::fs;

use bittorrent::metainfo::Metainfo;
use bittorrent::peer::wire::Message;

use crate::support::bencode::write_single_file;
use crate::support::peer::ScriptedPeer;
use crate::support::*;

/// Regression: aria2 1.36, downloading from us, sends `interested` before
/// any bitfield and a bitfield later, after its first piece. We used to
/// drop it for "bitfield after the first message", so aria2 never finished.
#[test]
fn seeder_keeps_serving_a_peer_that_sends_its_bitfield_late() {
    let torrent = fixtures().join("single.torrent");
    let source = fixtures().join("single/sample.bin");
    let meta = Metainfo::from_bytes(&fs::read(&torrent).unwrap()).unwrap();
    let seeder = Running::start(&config(&torrent, seed_from(&source), vec![]));
    let piece_count = meta.layout.piece_count();
    let mut peer = ScriptedPeer::connect(seeder.addr, meta.info_hash, piece_count);
    peer.send(Message::Interested);
    peer.wait_unchoke();
    peer.send(Message::Request {
        index: 0,
        begin: 0,
        length: 16384,
    });
    let (index, begin, block) = peer.recv_piece();
    assert_eq!((index, begin), (0, 0));
    // Now the late bitfield (piece 0 only), then another request.
    peer.send(Message::Bitfield(&[0b1000_0000]));
    peer.send(Message::Request {
        index: 1,
        begin: 16384,
        length: 16384,
    });
    let (index, begin, second) = peer.recv_piece();
    assert_eq!((index, begin), (1, 16384));
    let data = fs::read(&source).unwrap();
    assert_eq!(block, data[..16384]);
    assert_eq!(second, data[32768 + 16384..32768 + 32768]);
}

/// Regression: Transmission 3.00 (which gets no `reqq` from us) keeps
/// thousands of requests in flight; the seeder dropped every request past
/// 2048 without a word, and Transmission waits 90 s before asking again, so
/// a 1 GiB download from us never finished. Now every request is served.
#[test]
fn seeder_serves_every_request_of_a_peer_with_thousands_in_flight() {
    let data = content(4 * 1024 * 1024, 9);
    let (_dir, _seeder, mut peer) = unchoked_by_a_seeder_of(&data);
    // 3,072 requests at once: the file's 256 blocks, twelve times over.
    let block_count = data.len() / 16384;
    request_every_block(&mut peer, block_count, 12);
    let mut served = vec![0usize; block_count];
    for _ in 0..12 * block_count {
        served[recv_block(&mut peer, &data)] += 1;
    }
    assert!(served.iter().all(|&n| n == 12), "{served:?}");
}

/// Regression (found by the benchmark): once a downloader had sent all its
/// requests and went quiet, our seeder served 512 KiB, then waited 50 ms for
/// the socket before serving more, so the last pieces of every download
/// from us came at 10 MB/s. Here 4,096 requests (64 MiB) are sent at once
/// and nothing after: served at that pace they would take over 6 s.
#[test]
fn seeder_serves_queued_requests_without_waiting_for_more_messages() {
    let data = content(4 * 1024 * 1024, 11);
    let (_dir, _seeder, mut peer) = unchoked_by_a_seeder_of(&data);
    let block_count = data.len() / 16384;
    let started = std::time::Instant::now();
    request_every_block(&mut peer, block_count, 16);
    for _ in 0..16 * block_count {
        recv_block(&mut peer, &data);
    }
    let took = started.elapsed();
    assert!(
        took < std::time::Duration::from_secs(3),
        "64 MiB of queued requests took {took:?}: the seeder waits between bursts"
    );
}

/// A seeder of `data` (256 KiB pieces) and a scripted peer it has unchoked.
fn unchoked_by_a_seeder_of(data: &[u8]) -> (tempfile::TempDir, Running, ScriptedPeer) {
    let dir = tempfile::tempdir().unwrap();
    let written = write_single_file(dir.path(), "many.bin", data, 256 * 1024, None);
    let seeder = Running::start(&config(
        &written.torrent,
        seed_from(&written.source),
        vec![],
    ));
    let info_hash = bittorrent::metainfo::InfoHash(written.info_hash);
    let mut peer = ScriptedPeer::connect(
        seeder.addr,
        info_hash,
        data.len().div_ceil(256 * 1024) as u32,
    );
    peer.send(Message::Interested);
    peer.wait_unchoke();
    (dir, seeder, peer)
}

/// Requests each of the first `block_count` 16 KiB blocks, `times` over.
fn request_every_block(peer: &mut ScriptedPeer, block_count: usize, times: usize) {
    for i in 0..times * block_count {
        let block = (i % block_count) as u32;
        peer.send(Message::Request {
            index: block / 16,
            begin: block % 16 * 16384,
            length: 16384,
        });
    }
}

/// Receives one block, checks its bytes against `data`, and returns its number.
fn recv_block(peer: &mut ScriptedPeer, data: &[u8]) -> usize {
    let (index, begin, bytes) = peer.recv_piece();
    let block = (index * 16 + begin / 16384) as usize;
    assert_eq!(bytes, data[block * 16384..(block + 1) * 16384]);
    block
}
