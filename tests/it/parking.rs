//! Idle peer threads park in `poll()` on their socket and command channel
//! (`bittorrent::peer::wake`): a parked thread wakes for new bytes, so it
//! must never park while whole messages it has read still wait in its
//! buffer, undecoded. A remote that sent everything it means to send would
//! otherwise wait on us until its next keep-alive or our snub.

use std::time::{Duration, Instant};

use bittorrent::metainfo::InfoHash;
use bittorrent::peer::wire::Message;

use crate::support::bencode::write_single_file;
use crate::support::peer::{Received, ScriptedPeer};
use crate::support::*;

/// One piece of three blocks (16, 16 and 8 KiB): small enough to be
/// fetched by the first batch of requests, and to be read by one `read()`
/// when it arrives in one write.
const PIECE_LEN: usize = 64 * 1024;
const CONTENT_LEN: usize = 40 * 1024;
/// The download limit, whose burst is one 16 KiB block: after at most two
/// blocks of a batch the thread pauses, with the rest in its buffer.
const RATE: u64 = 100_000;

#[test]
fn blocks_left_in_the_buffer_by_the_download_limit_are_decoded_without_new_bytes() {
    // The regression: the thread decoded a block, stopped for the
    // download limit's pause, then parked; the remote sent nothing more
    // (it had answered every request), so the last block waited until our
    // request timeout (10 s) snubbed the remote. At the limit the 40 KiB
    // take about 0.3 s.
    let dir = tempfile::tempdir().unwrap();
    let data = content(CONTENT_LEN, 61);
    let file = write_single_file(dir.path(), "parked.bin", &data, PIECE_LEN, None);
    let dest = dir.path().join("out");
    let mut config = config(&file.torrent, download_to(&dest), vec![]);
    config.max_download_rate = RATE;
    config.pex = false;
    let downloader = Running::start(&config);
    let started = Instant::now();
    let mut peer = ScriptedPeer::connect(downloader.addr, InfoHash(file.info_hash), 1);
    // A seeder: it has the piece, unchokes, and answers each batch of
    // requests with one write, once no more requests come for 100 ms.
    peer.send_together(&[Message::Bitfield(&[0x80]), Message::Unchoke]);
    let seeder = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut asked = Vec::new();
        while Instant::now() < deadline {
            let Ok(received) = peer.recv_within(Duration::from_millis(100)) else {
                // The download is over: the session closed the connection.
                return;
            };
            match received {
                Some(Received::Request {
                    index: 0,
                    begin,
                    length,
                }) => asked.push((begin as usize, length as usize)),
                Some(_) => {}
                None if asked.is_empty() => {}
                None => {
                    let blocks: Vec<Message<'_>> = asked
                        .iter()
                        .map(|&(begin, length)| Message::Piece {
                            index: 0,
                            begin: begin as u32,
                            block: &data[begin..begin + length],
                        })
                        .collect();
                    peer.send_together(&blocks);
                    asked.clear();
                }
            }
        }
    });
    let outcome = downloader.wait().expect("the download completes");
    let took = started.elapsed();
    assert_eq!(outcome, bittorrent::piece_manager::Outcome::Complete);
    seeder.join().unwrap();
    assert!(
        std::fs::read(dest.join("parked.bin")).unwrap() == file_bytes(&file.source),
        "the content arrived"
    );
    // Well under the 10 s after which the stalled version snubbed the
    // remote, and far over what the limit asks for.
    assert!(
        took < Duration::from_secs(8),
        "40 KiB at 100 KB/s took {took:?}"
    );
}

fn file_bytes(path: &std::path::Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}
