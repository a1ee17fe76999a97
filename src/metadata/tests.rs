//! Unit tests of [`super::MetadataFetch`], with a fake clock: `Instant`s
//! moved by hand.

use super::*;

const PIECE: usize = METADATA_PIECE_LEN as usize;

/// Metadata of three pieces, the last one short.
fn metadata() -> Vec<u8> {
    (0..2 * PIECE + 7000).map(|i| (i % 251) as u8).collect()
}

fn fetch_of(meta: &[u8]) -> MetadataFetch {
    MetadataFetch::new(InfoHash(Sha1::digest(meta).into()))
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn piece_of(meta: &[u8], piece: u32) -> &[u8] {
    let start = piece as usize * PIECE;
    &meta[start..(start + PIECE).min(meta.len())]
}

fn size(meta: &[u8]) -> u32 {
    meta.len() as u32
}

/// Answers `pieces` from `key` with `meta`'s bytes (or `corrupt`ed ones);
/// returns how the attempt ended if it did.
fn answer(
    fetch: &mut MetadataFetch,
    key: PeerKey,
    meta: &[u8],
    pieces: &[u32],
    corrupt: bool,
) -> Option<Done> {
    for &piece in pieces {
        let mut data = piece_of(meta, piece).to_vec();
        if corrupt {
            data.iter_mut().for_each(|b| *b ^= 0xff);
        }
        if let Some(done) = fetch.on_data(key, piece, size(meta), &data).unwrap() {
            return Some(done);
        }
    }
    None
}

/// Asks `key` for pieces until it has none to give, answering each; returns
/// how the attempt ended.
fn serve(fetch: &mut MetadataFetch, key: PeerKey, meta: &[u8], corrupt: bool) -> Option<Done> {
    loop {
        let wanted = fetch.requests_for(key, Instant::now());
        if wanted.is_empty() {
            return None;
        }
        if let Some(done) = answer(fetch, key, meta, &wanted, corrupt) {
            return Some(done);
        }
    }
}

#[test]
fn assembles_metadata_from_two_peers() {
    let meta = metadata();
    let mut fetch = fetch_of(&meta);
    assert_eq!(fetch.received_pieces(), (0, 0));
    fetch.add_peer(1, addr(1), size(&meta)).unwrap();
    fetch.add_peer(2, addr(2), size(&meta)).unwrap();
    let now = Instant::now();
    assert_eq!(fetch.requests_for(1, now), [0, 1]);
    assert_eq!(fetch.requests_for(1, now), Vec::<u32>::new());
    assert_eq!(fetch.requests_for(2, now), [2]);
    assert_eq!(fetch.received_pieces(), (0, 3));
    let deliver = |fetch: &mut MetadataFetch, key, piece| {
        fetch.on_data(key, piece, size(&meta), piece_of(&meta, piece))
    };
    assert_eq!(deliver(&mut fetch, 2, 2), Ok(None));
    assert_eq!(deliver(&mut fetch, 1, 0), Ok(None));
    assert_eq!(fetch.received_pieces(), (2, 3));
    assert_eq!(
        deliver(&mut fetch, 1, 1),
        Ok(Some(Done::Verified(meta.clone())))
    );
    assert_eq!(fetch.received_pieces(), (3, 3));
    assert!(fetch.requests_for(2, now).is_empty());
}

#[test]
fn mismatch_from_one_peer_excludes_it_and_a_good_peer_then_completes() {
    let meta = metadata();
    let mut fetch = fetch_of(&meta);
    fetch.add_peer(1, addr(1), size(&meta)).unwrap();
    assert_eq!(
        serve(&mut fetch, 1, &meta, true),
        Some(Done::Mismatch {
            excluded: vec![addr(1)]
        })
    );
    assert_eq!(fetch.received_pieces(), (0, 0));
    // Forgotten, and refused when it comes back under a new key.
    assert!(fetch.requests_for(1, Instant::now()).is_empty());
    assert_eq!(
        fetch.add_peer(3, addr(1), size(&meta)),
        Err(Refusal::Excluded { addr: addr(1) })
    );
    fetch.add_peer(2, addr(2), size(&meta)).unwrap();
    assert_eq!(
        serve(&mut fetch, 2, &meta, false),
        Some(Done::Verified(meta))
    );
}

#[test]
fn mismatch_with_two_contributors_excludes_nobody_then_fetches_from_one_peer() {
    let meta = metadata();
    let mut fetch = fetch_of(&meta);
    fetch.add_peer(1, addr(1), size(&meta)).unwrap();
    fetch.add_peer(2, addr(2), size(&meta)).unwrap();
    let now = Instant::now();
    // The liar (1) sends pieces 0 and 1, the honest peer (2) piece 2.
    for piece in fetch.requests_for(1, now) {
        let bad = vec![0; piece_of(&meta, piece).len()];
        assert_eq!(fetch.on_data(1, piece, size(&meta), &bad), Ok(None));
    }
    assert_eq!(fetch.requests_for(2, now), [2]);
    assert_eq!(
        fetch.on_data(2, 2, size(&meta), piece_of(&meta, 2)),
        Ok(Some(Done::Mismatch { excluded: vec![] }))
    );
    // The next attempt has one source: whoever asks first, here the liar.
    assert_eq!(fetch.requests_for(1, now), [0, 1]);
    assert!(fetch.requests_for(2, now).is_empty());
    assert_eq!(answer(&mut fetch, 1, &meta, &[0, 1], true), None);
    assert!(fetch.requests_for(2, now).is_empty());
    assert_eq!(
        serve(&mut fetch, 1, &meta, true),
        Some(Done::Mismatch {
            excluded: vec![addr(1)]
        })
    );
    assert_eq!(
        serve(&mut fetch, 2, &meta, false),
        Some(Done::Verified(meta))
    );
}

#[test]
fn single_source_that_leaves_or_rejects_is_replaced_from_scratch() {
    let meta = metadata();
    let mut fetch = fetch_of(&meta);
    for key in 1..=3 {
        fetch.add_peer(key, addr(key as u16), size(&meta)).unwrap();
    }
    let now = Instant::now();
    let bad = vec![0; PIECE];
    fetch.requests_for(1, now);
    fetch.on_data(1, 0, size(&meta), &bad).unwrap();
    fetch.on_data(1, 1, size(&meta), &bad).unwrap();
    fetch.requests_for(2, now);
    let done = fetch.on_data(2, 2, size(&meta), piece_of(&meta, 2));
    assert_eq!(done, Ok(Some(Done::Mismatch { excluded: vec![] })));

    assert_eq!(fetch.requests_for(2, now), [0, 1]);
    fetch
        .on_data(2, 0, size(&meta), piece_of(&meta, 0))
        .unwrap();
    fetch.remove_peer(2);
    assert_eq!(fetch.received_pieces(), (0, 3));
    assert_eq!(fetch.requests_for(3, now), [0, 1]);
    fetch.on_reject(3, 1, now);
    assert!(fetch.requests_for(3, now).is_empty(), "in its backoff");
    assert_eq!(fetch.requests_for(1, now), [0, 1]);
}

#[test]
fn claims_of_empty_or_huge_metadata_are_refused() {
    let mut fetch = fetch_of(b"x");
    assert_eq!(fetch.add_peer(1, addr(1), 0), Err(Refusal::EmptyMetadata));
    assert_eq!(
        fetch.add_peer(1, addr(1), MAX_METADATA_LEN + 1),
        Err(Refusal::TooLarge {
            size: MAX_METADATA_LEN + 1
        })
    );
    assert_eq!(fetch.received_pieces(), (0, 0));
    // A claim costs no memory for the metadata itself.
    fetch.add_peer(1, addr(1), MAX_METADATA_LEN).unwrap();
    assert_eq!(fetch.received_pieces(), (0, 1024));
}

#[test]
fn data_of_the_wrong_length_piece_or_total_size_is_refused() {
    let meta = metadata();
    let mut fetch = fetch_of(&meta);
    let total = size(&meta);
    fetch.add_peer(1, addr(1), total).unwrap();
    fetch.requests_for(1, Instant::now());
    assert_eq!(
        fetch.on_data(1, 0, total, &[0; PIECE - 1]),
        Err(Refusal::WrongPieceLength {
            piece: 0,
            length: PIECE - 1,
            expected: PIECE as u32
        })
    );
    assert_eq!(
        fetch.on_data(1, 2, total, &[0; PIECE]),
        Err(Refusal::WrongPieceLength {
            piece: 2,
            length: PIECE,
            expected: 7000
        })
    );
    assert_eq!(
        fetch.on_data(1, 3, total, &[0; 10]),
        Err(Refusal::PieceOutOfRange {
            piece: 3,
            piece_count: 3
        })
    );
    assert_eq!(
        fetch.on_data(1, 0, total + 1, piece_of(&meta, 0)),
        Err(Refusal::TotalSizeMismatch {
            claimed: total,
            total_size: total + 1
        })
    );
    assert_eq!(fetch.received_pieces(), (0, 3));
}

#[test]
fn data_not_asked_for_or_already_received_is_ignored() {
    let meta = metadata();
    let mut fetch = fetch_of(&meta);
    fetch.add_peer(1, addr(1), size(&meta)).unwrap();
    fetch.add_peer(2, addr(2), size(&meta)).unwrap();
    assert_eq!(fetch.requests_for(1, Instant::now()), [0, 1]);
    // Piece 2 was asked of nobody; piece 0 was not asked of peer 2.
    assert_eq!(
        fetch.on_data(1, 2, size(&meta), piece_of(&meta, 2)),
        Ok(None)
    );
    assert_eq!(
        fetch.on_data(2, 0, size(&meta), piece_of(&meta, 0)),
        Ok(None)
    );
    assert_eq!(fetch.received_pieces(), (0, 3));
    assert_eq!(
        fetch.on_data(1, 0, size(&meta), piece_of(&meta, 0)),
        Ok(None)
    );
    assert_eq!(
        fetch.on_data(1, 0, size(&meta), piece_of(&meta, 0)),
        Ok(None)
    );
    assert_eq!(fetch.received_pieces(), (1, 3));
    assert_eq!(fetch.on_data(9, 0, 5, b"x"), Ok(None), "unknown peer");
}

#[test]
fn rejected_piece_goes_to_another_peer_and_not_back_for_a_while() {
    let meta = metadata();
    let mut fetch = fetch_of(&meta);
    fetch.add_peer(1, addr(1), size(&meta)).unwrap();
    let t0 = Instant::now();
    assert_eq!(fetch.requests_for(1, t0), [0, 1]);
    fetch.on_reject(1, 0, t0);
    assert_eq!(fetch.requests_for(1, t0), [2]);
    fetch.add_peer(2, addr(2), size(&meta)).unwrap();
    assert_eq!(fetch.requests_for(2, t0), [0]);
    fetch.on_reject(2, 0, t0);
    fetch
        .on_data(1, 1, size(&meta), piece_of(&meta, 1))
        .unwrap();
    fetch
        .on_data(1, 2, size(&meta), piece_of(&meta, 2))
        .unwrap();
    assert!(fetch.requests_for(1, t0 + REJECT_BACKOFF / 2).is_empty());
    assert_eq!(fetch.requests_for(1, t0 + REJECT_BACKOFF), [0]);
    let done = fetch.on_data(1, 0, size(&meta), piece_of(&meta, 0));
    assert_eq!(done, Ok(Some(Done::Verified(meta))));
}

#[test]
fn unanswered_request_is_reissued_to_another_peer_after_the_timeout() {
    let meta = metadata();
    let mut fetch = fetch_of(&meta);
    fetch.add_peer(1, addr(1), size(&meta)).unwrap();
    fetch.add_peer(2, addr(2), size(&meta)).unwrap();
    let t0 = Instant::now();
    assert_eq!(fetch.requests_for(1, t0), [0, 1]);
    assert_eq!(fetch.requests_for(2, t0), [2]);
    let almost = t0 + REQUEST_TIMEOUT - Duration::from_millis(1);
    assert!(fetch.requests_for(2, almost).is_empty());
    fetch
        .on_data(2, 2, size(&meta), piece_of(&meta, 2))
        .unwrap();
    assert_eq!(fetch.requests_for(2, t0 + REQUEST_TIMEOUT), [0, 1]);
    // The slow peer is not handed its own pieces back meanwhile.
    assert!(fetch.requests_for(1, t0 + REQUEST_TIMEOUT).is_empty());
    // Its late answer still counts.
    fetch
        .on_data(1, 0, size(&meta), piece_of(&meta, 0))
        .unwrap();
    let done = fetch.on_data(2, 1, size(&meta), piece_of(&meta, 1));
    assert_eq!(done, Ok(Some(Done::Verified(meta))));
}

#[test]
fn a_lone_peer_is_asked_again_after_twice_the_timeout() {
    let meta = metadata();
    let mut fetch = fetch_of(&meta);
    fetch.add_peer(1, addr(1), size(&meta)).unwrap();
    let t0 = Instant::now();
    assert_eq!(fetch.requests_for(1, t0), [0, 1]);
    assert_eq!(fetch.requests_for(1, t0 + REQUEST_TIMEOUT), [2]);
    assert_eq!(fetch.requests_for(1, t0 + 2 * REQUEST_TIMEOUT), [0, 1]);
}

#[test]
fn remove_peer_returns_its_pieces() {
    let meta = metadata();
    let mut fetch = fetch_of(&meta);
    fetch.add_peer(1, addr(1), size(&meta)).unwrap();
    fetch.add_peer(2, addr(2), size(&meta)).unwrap();
    let now = Instant::now();
    assert_eq!(fetch.requests_for(1, now), [0, 1]);
    fetch
        .on_data(1, 0, size(&meta), piece_of(&meta, 0))
        .unwrap();
    fetch.remove_peer(1);
    assert_eq!(fetch.received_pieces(), (1, 3), "delivered pieces stay");
    assert_eq!(fetch.requests_for(2, now), [1, 2]);
    assert!(fetch.requests_for(1, now).is_empty());
    assert_eq!(
        answer(&mut fetch, 2, &meta, &[1, 2], false),
        Some(Done::Verified(meta))
    );
}

#[test]
fn peers_claiming_another_size_wait_for_their_turn() {
    let meta = metadata();
    let mut fetch = fetch_of(&meta);
    // A liar claims a smaller size, tried first; the honest peer waits.
    let lie = size(&meta) - PIECE as u32;
    fetch.add_peer(1, addr(1), lie).unwrap();
    fetch.add_peer(2, addr(2), size(&meta)).unwrap();
    let now = Instant::now();
    assert!(fetch.requests_for(2, now).is_empty());
    assert_eq!(fetch.received_pieces(), (0, 2));
    assert_eq!(
        serve(&mut fetch, 1, &meta[..lie as usize], false),
        Some(Done::Mismatch {
            excluded: vec![addr(1)]
        })
    );
    assert_eq!(fetch.received_pieces(), (0, 3));
    assert_eq!(
        serve(&mut fetch, 2, &meta, false),
        Some(Done::Verified(meta.clone()))
    );
    // The verified size proves other claims wrong.
    assert_eq!(
        fetch.add_peer(3, addr(3), lie),
        Err(Refusal::WrongSize {
            size: lie,
            verified: size(&meta)
        })
    );
    assert_eq!(
        fetch.add_peer(4, addr(3), size(&meta)),
        Err(Refusal::Excluded { addr: addr(3) })
    );
}

#[test]
fn the_most_claimed_size_goes_first() {
    let meta = metadata();
    let mut fetch = fetch_of(&meta);
    fetch.add_peer(1, addr(1), 100).unwrap();
    fetch.add_peer(2, addr(2), size(&meta)).unwrap();
    fetch.add_peer(3, addr(3), size(&meta)).unwrap();
    // The attempt at 100 bytes stays while someone offers it...
    assert_eq!(fetch.received_pieces(), (0, 1));
    fetch.remove_peer(1);
    // ...and gives way once nobody does.
    assert_eq!(fetch.received_pieces(), (0, 3));
    fetch.add_peer(1, addr(1), 100).unwrap();
    assert!(fetch.requests_for(1, Instant::now()).is_empty());
}

#[test]
fn refusals_read_as_lowercase_text_with_their_values() {
    let refusal = Refusal::WrongPieceLength {
        piece: 2,
        length: 10,
        expected: 7000,
    };
    assert_eq!(
        refusal.to_string(),
        "metadata piece 2 has 10 bytes instead of 7000"
    );
}

#[test]
fn rejects_of_pieces_out_of_range_are_not_remembered() {
    let meta = metadata();
    let mut fetch = fetch_of(&meta);
    fetch.add_peer(1, addr(1), size(&meta)).unwrap();
    let now = Instant::now();
    for piece in 3..10_000 {
        fetch.on_reject(1, piece, now);
    }
    assert_eq!(fetch.peers[&1].rejected.len(), 0);
    assert_eq!(fetch.requests_for(1, now), [0, 1]);
}
