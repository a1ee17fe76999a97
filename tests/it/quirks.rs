use std::fs;

use bittorrent::metainfo::Metainfo;
use bittorrent::peer::wire::Message;

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
