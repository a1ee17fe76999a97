//! Tests of the request pipeline, with a fake clock.

use super::*;

/// 3 pieces of 40 KiB (blocks of 16, 16 and 8 KiB), the last of 20 KiB.
fn layout() -> Layout {
    Layout::new(40 * 1024 + 40 * 1024 + 20 * 1024, 40 * 1024).unwrap()
}

fn job(index: u32) -> PieceJob {
    PieceJob {
        index,
        partial: None,
        probe: false,
    }
}

fn block(request: &BlockRequest) -> Vec<u8> {
    vec![request.index as u8 + 1; request.length as usize]
}

#[test]
fn requests_fill_the_depth_in_piece_order_with_exact_block_sizes() {
    let now = Instant::now();
    let mut p = Pipeline::new(layout(), now);
    p.add(job(2));
    p.add(job(0));
    let requests = p.next_requests(now);
    let got: Vec<_> = requests
        .iter()
        .map(|r| (r.index, r.begin, r.length))
        .collect();
    assert_eq!(
        got,
        vec![
            (2, 0, 16384),
            (2, 16384, 4096),
            (0, 0, 16384),
            (0, 16384, 16384),
            (0, 32768, 8192)
        ]
    );
    assert_eq!(p.in_flight(), 5);
    assert!(p.next_requests(now).is_empty(), "all requested");
}

#[test]
fn depth_limits_requests_and_follows_the_rate() {
    let now = Instant::now();
    let mut p = Pipeline::new(layout(), now);
    p.set_rate(0);
    assert_eq!(p.depth(), MIN_PIPELINE);
    p.set_rate(u64::MAX / 4);
    assert_eq!(p.depth(), MAX_PIPELINE);
    p.set_rate(u64::from(BLOCK_LEN) * 5);
    assert_eq!(p.depth(), 10, "two seconds of five blocks a second");
    p.shrink();
    for i in 0..3 {
        p.add(job(i));
    }
    assert_eq!(p.next_requests(now).len(), MIN_PIPELINE);
}

#[test]
fn requests_in_flight_never_exceed_the_remotes_reqq() {
    let now = Instant::now();
    let mut p = Pipeline::new(layout(), now);
    p.set_remote_queue(3);
    for i in 0..3 {
        p.add(job(i));
    }
    assert_eq!(p.depth(), 3);
    assert_eq!(p.next_requests(now).len(), 3);
    assert!(p.next_requests(now).is_empty(), "reqq reached");
    p.set_rate(u64::MAX / 4);
    assert_eq!(
        p.depth(),
        3,
        "a fast peer still gets no more than it queues"
    );
}

#[test]
fn the_last_block_completes_the_piece_with_every_byte_in_place() {
    let now = Instant::now();
    let mut p = Pipeline::new(layout(), now);
    p.add(job(1));
    let requests = p.next_requests(now);
    let mut outcome = BlockOutcome::Ignored;
    for r in requests.iter().rev() {
        outcome = p.on_block(r.index, r.begin, &block(r), now).unwrap();
    }
    assert_eq!(
        outcome,
        BlockOutcome::Completed {
            index: 1,
            data: vec![2; 40 * 1024]
        }
    );
    assert_eq!(p.in_flight(), 0);
    assert!(p.is_empty());
}

#[test]
fn a_partial_piece_resumes_with_only_its_missing_blocks() {
    let now = Instant::now();
    let mut p = Pipeline::new(layout(), now);
    let mut data = vec![0; 40 * 1024];
    data[16384..32768].fill(9);
    p.add(PieceJob {
        index: 0,
        partial: Some(Partial {
            data,
            received: vec![false, true, false],
        }),
        probe: false,
    });
    let requests = p.next_requests(now);
    let begins: Vec<u32> = requests.iter().map(|r| r.begin).collect();
    assert_eq!(begins, vec![0, 32768]);
    p.on_block(0, 0, &[1; 16384], now).unwrap();
    let BlockOutcome::Completed { data, .. } = p.on_block(0, 32768, &[1; 8192], now).unwrap()
    else {
        panic!("the piece is complete");
    };
    assert!(data[16384..32768].iter().all(|&b| b == 9), "kept blocks");
    assert!(data[..16384].iter().all(|&b| b == 1));
}

#[test]
fn endgame_cancel_withdraws_only_the_outstanding_requests_and_tolerates_late_blocks() {
    let now = Instant::now();
    let mut p = Pipeline::new(layout(), now);
    p.add(job(0));
    let requests = p.next_requests(now);
    p.on_block(0, 0, &block(&requests[0]), now).unwrap();
    let cancels = p.cancel_piece(0, now);
    let begins: Vec<u32> = cancels.iter().map(|c| c.begin).collect();
    assert_eq!(begins, vec![16384, 32768], "not the block already here");
    assert_eq!(p.in_flight(), 0);
    assert_eq!(
        p.on_block(0, 16384, &[1; 16384], now + Duration::from_secs(1)),
        Ok(BlockOutcome::Ignored),
        "a block already on the wire when we cancelled"
    );
    assert!(
        p.on_block(0, 16384, &[1; 16384], now + LATE_BLOCK_GRACE * 2)
            .is_err(),
        "long after, it is unsolicited"
    );
}

#[test]
fn blocks_never_requested_are_violations() {
    let now = Instant::now();
    let mut p = Pipeline::new(layout(), now);
    assert!(p.on_block(1, 0, &[0; 16384], now).is_err(), "unknown piece");
    p.add(job(0));
    p.next_requests(now);
    let err = p.on_block(0, 100, &[0; 16384], now).unwrap_err();
    assert!(err.contains("begin 100"), "{err}");
    assert!(p.on_block(0, 0, &[0; 1000], now).is_err(), "wrong length");
    assert_eq!(p.on_block(0, 0, &[0; 16384], now), Ok(BlockOutcome::Stored));
    assert_eq!(
        p.on_block(0, 0, &[0; 16384], now),
        Ok(BlockOutcome::Ignored),
        "a duplicate is harmless"
    );
}

#[test]
fn a_peer_silent_with_requests_outstanding_times_out_and_gives_back_its_blocks() {
    let start = Instant::now();
    let mut p = Pipeline::new(layout(), start);
    assert!(!p.timed_out(start + REQUEST_TIMEOUT * 2), "nothing asked");
    p.add(job(0));
    p.add(job(1));
    let requests = p.next_requests(start);
    p.on_block(0, 0, &block(&requests[0]), start + Duration::from_secs(3))
        .unwrap();
    let almost = start + Duration::from_secs(3) + REQUEST_TIMEOUT - Duration::from_millis(1);
    assert!(!p.timed_out(almost), "the block reset the clock");
    let late = start + Duration::from_secs(3) + REQUEST_TIMEOUT;
    assert!(p.timed_out(late));
    let (cancels, returned) = p.cancel_all(late);
    assert_eq!(cancels.len(), requests.len() - 1);
    assert_eq!(returned.len(), 2);
    let partial = returned[0].partial.as_ref().expect("piece 0 had a block");
    assert_eq!(partial.received, vec![true, false, false]);
    assert!(returned[1].partial.is_none());
    assert!(
        !p.timed_out(late + REQUEST_TIMEOUT),
        "nothing outstanding now"
    );
}

#[test]
fn time_our_download_limit_holds_reading_back_is_not_a_snub() {
    let start = Instant::now();
    let mut p = Pipeline::new(layout(), start);
    p.add(job(0));
    p.next_requests(start);
    // Our limiter kept us from reading for 30 s: the blocks are waiting
    // in the socket, the remote is not silent.
    let unpaused = start + Duration::from_secs(30);
    p.hold_timeout(unpaused);
    assert!(!p.timed_out(unpaused + REQUEST_TIMEOUT - Duration::from_millis(1)));
    assert!(
        p.timed_out(unpaused + REQUEST_TIMEOUT),
        "then the clock runs"
    );
    p.hold_timeout(start);
    assert!(
        p.timed_out(unpaused + REQUEST_TIMEOUT),
        "an earlier time does not turn the clock back"
    );
}

#[test]
fn a_choke_drops_every_piece_without_cancels() {
    let now = Instant::now();
    let mut p = Pipeline::new(layout(), now);
    p.add(job(2));
    p.next_requests(now);
    let returned = p.drop_all(now);
    assert_eq!(returned.len(), 1);
    assert_eq!(p.in_flight(), 0);
    assert_eq!(
        p.on_block(2, 0, &[0; 16384], now),
        Ok(BlockOutcome::Ignored),
        "requests the remote may still have answered"
    );
}

#[test]
fn the_memory_of_given_up_pieces_stays_bounded() {
    // Regression: it was pruned only when an unknown block arrived, so a
    // peer choking and unchoking forever grew it without limit.
    let now = Instant::now();
    let mut p = Pipeline::new(layout(), now);
    for round in 0..(DROPPED_MAX as u32 * 3) {
        p.add(job(round % 3));
        p.next_requests(now);
        p.drop_all(now);
    }
    assert_eq!(p.dropped.len(), DROPPED_MAX);
    p.drop_all(now + LATE_BLOCK_GRACE * 2);
    p.add(job(0));
    p.next_requests(now + LATE_BLOCK_GRACE * 2);
    p.cancel_piece(0, now + LATE_BLOCK_GRACE * 2);
    assert_eq!(p.dropped.len(), 1, "old entries are forgotten");
}

/// 2 pieces of 10 blocks (160 KiB).
fn big_layout() -> Layout {
    Layout::new(2 * 10 * 16384, 10 * 16384).unwrap()
}

fn probe(index: u32) -> PieceJob {
    PieceJob {
        index,
        partial: None,
        probe: true,
    }
}

#[test]
fn a_probe_fetches_its_first_blocks_into_a_small_buffer_then_grows() {
    let now = Instant::now();
    let mut p = Pipeline::new(big_layout(), now);
    p.add(probe(1));
    assert!(p.is_probe(1));
    assert_eq!(
        p.jobs[0].data.len(),
        (PROBE_BLOCKS * BLOCK_LEN) as usize,
        "a probe holds its blocks, not the piece"
    );
    let requests = p.next_requests(now);
    let begins: Vec<u32> = requests.iter().map(|r| r.begin).collect();
    assert_eq!(
        begins,
        (0..PROBE_BLOCKS).map(|b| b * BLOCK_LEN).collect::<Vec<_>>()
    );
    assert!(p.next_requests(now).is_empty(), "no more until it grows");
    for (n, r) in requests.iter().enumerate() {
        let outcome = p.on_block(1, r.begin, &[n as u8 + 1; 16384], now).unwrap();
        if n + 1 < requests.len() {
            assert_eq!(outcome, BlockOutcome::Stored);
        } else {
            assert_eq!(outcome, BlockOutcome::Probed { index: 1 });
        }
    }
    assert!(
        !p.timed_out(now + REQUEST_TIMEOUT),
        "nothing is outstanding"
    );
    assert_eq!(p.grow(1, vec![0; 10 * 16384]), None);
    assert!(!p.is_probe(1));
    let rest = p.next_requests(now);
    assert_eq!(rest.len(), 10 - PROBE_BLOCKS as usize);
    let mut last = None;
    for r in &rest {
        last = Some(p.on_block(1, r.begin, &[9; 16384], now).unwrap());
    }
    let Some(BlockOutcome::Completed { index: 1, data }) = last else {
        panic!("the piece completes: {last:?}");
    };
    for n in 0..PROBE_BLOCKS as usize {
        assert!(
            data[n * 16384..(n + 1) * 16384]
                .iter()
                .all(|&b| b == n as u8 + 1)
        );
    }
    assert!(
        data[(PROBE_BLOCKS * BLOCK_LEN) as usize..]
            .iter()
            .all(|&b| b == 9)
    );
}

#[test]
fn a_probe_given_back_keeps_no_blocks_and_growing_it_then_does_nothing() {
    let now = Instant::now();
    let mut p = Pipeline::new(big_layout(), now);
    p.add(probe(0));
    let requests = p.next_requests(now);
    p.on_block(0, requests[0].begin, &[1; 16384], now).unwrap();
    let (cancels, returned) = p.cancel_all(now);
    assert_eq!(cancels.len(), PROBE_BLOCKS as usize - 1);
    assert_eq!(returned.len(), 1);
    assert!(
        returned[0].partial.is_none(),
        "a probe's blocks are not kept"
    );
    let buffer = vec![0; 10 * 16384];
    assert_eq!(p.grow(0, buffer).map(|b| b.len()), Some(10 * 16384));
    assert!(p.is_empty());
}

#[test]
fn a_piece_of_few_blocks_assigned_as_a_probe_is_fetched_whole() {
    let now = Instant::now();
    let mut p = Pipeline::new(layout(), now);
    p.add(probe(0));
    assert!(!p.is_probe(0), "3 blocks are no more than a probe");
    assert_eq!(p.next_requests(now).len(), 3);
}
