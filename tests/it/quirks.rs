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
    let dir = tempfile::tempdir().unwrap();
    let data = content(4 * 1024 * 1024, 9);
    let written = write_single_file(dir.path(), "many.bin", &data, 256 * 1024, None);
    let seeder = Running::start(&config(
        &written.torrent,
        seed_from(&written.source),
        vec![],
    ));
    let info_hash = bittorrent::metainfo::InfoHash(written.info_hash);
    let mut peer = ScriptedPeer::connect(seeder.addr, info_hash, 16);
    peer.send(Message::Interested);
    peer.wait_unchoke();
    // 3,072 requests at once: the file's 256 blocks, twelve times over.
    let block_count = data.len() / 16384;
    let requests = 12 * block_count;
    for i in 0..requests {
        let block = (i % block_count) as u32;
        peer.send(Message::Request {
            index: block / 16,
            begin: block % 16 * 16384,
            length: 16384,
        });
    }
    let mut served = vec![0usize; block_count];
    for _ in 0..requests {
        let (index, begin, bytes) = peer.recv_piece();
        let block = (index * 16 + begin / 16384) as usize;
        assert_eq!(bytes, data[block * 16384..(block + 1) * 16384]);
        served[block] += 1;
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
    let dir = tempfile::tempdir().unwrap();
    let data = content(4 * 1024 * 1024, 11);
    let written = write_single_file(dir.path(), "quiet.bin", &data, 256 * 1024, None);
    let seeder = Running::start(&config(
        &written.torrent,
        seed_from(&written.source),
        vec![],
    ));
    let info_hash = bittorrent::metainfo::InfoHash(written.info_hash);
    let mut peer = ScriptedPeer::connect(seeder.addr, info_hash, 16);
    peer.send(Message::Interested);
    peer.wait_unchoke();
    let block_count = data.len() / 16384;
    let requests = 16 * block_count;
    let started = std::time::Instant::now();
    for i in 0..requests {
        let block = (i % block_count) as u32;
        peer.send(Message::Request {
            index: block / 16,
            begin: block % 16 * 16384,
            length: 16384,
        });
    }
    for _ in 0..requests {
        let (index, begin, bytes) = peer.recv_piece();
        let block = (index * 16 + begin / 16384) as usize;
        assert_eq!(bytes, data[block * 16384..(block + 1) * 16384]);
    }
    let took = started.elapsed();
    assert!(
        took < std::time::Duration::from_secs(3),
        "64 MiB of queued requests took {took:?}: the seeder waits between bursts"
    );
}
