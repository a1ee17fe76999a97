//! The picker's behaviour and its cost.

use super::*;

fn bits(have: &[u32], count: u32) -> Bitfield {
    let mut b = Bitfield::new(count);
    for &i in have {
        b.set(i);
    }
    b
}

/// A picker of `missing` missing pieces (indices 0..missing) followed by
/// enough had pieces that the random-first phase is over.
fn past_random_first(missing: u32) -> (PiecePicker, u32) {
    let mut have = vec![false; missing as usize];
    have.extend(std::iter::repeat_n(true, RANDOM_FIRST_PIECES as usize));
    (PiecePicker::new(&have, 1), have.len() as u32)
}

#[test]
fn picks_the_rarest_missing_piece_the_peer_has() {
    let (mut p, count) = past_random_first(4);
    p.add_peer_pieces(&bits(&[0, 1, 2, 3], count), 1);
    p.add_peer_pieces(&bits(&[0, 1, 3], count), 1);
    p.add_peer_pieces(&bits(&[0, 3], count), 1);
    p.add_have(3, &bits(&[3], count));
    let peer = bits(&[0, 1, 2, 3], count);
    assert_eq!(p.pick(&peer, &[]), Some(2), "held by one peer");
    p.assign(2);
    assert_eq!(p.pick(&peer, &[2]), Some(1), "held by two");
    p.assign(1);
    assert_eq!(p.pick(&peer, &[1, 2]), Some(0), "three, where 3 has four");
}

#[test]
fn the_first_pieces_are_picked_at_random_among_those_the_peer_has() {
    let have = vec![false; 64];
    let peer = bits(&(0..64).filter(|i| i % 2 == 0).collect::<Vec<_>>(), 64);
    let mut picks = std::collections::HashSet::new();
    for seed in 0..20 {
        let mut p = PiecePicker::with_rng(&have, 1, fastrand::Rng::with_seed(seed));
        // Make piece 0 the rarest: rarest-first would always say 0.
        p.add_peer_pieces(&bits(&(1..64).collect::<Vec<_>>(), 64), 1);
        let index = p.pick(&peer, &[]).unwrap();
        assert_eq!(index % 2, 0, "only pieces the peer has");
        picks.insert(index);
    }
    assert!(picks.len() > 5, "random, not always the same: {picks:?}");
}

#[test]
fn random_first_ends_once_enough_pieces_are_complete() {
    let mut p = PiecePicker::with_rng(&[false; 8], 1, fastrand::Rng::with_seed(7));
    p.add_peer_pieces(&bits(&[0, 1, 2, 3, 4, 5, 6], 8), 1);
    for index in 0..RANDOM_FIRST_PIECES {
        p.complete(index);
    }
    // Piece 7 is the only one nobody else has.
    assert_eq!(p.pick(&bits(&[4, 5, 6, 7], 8), &[]), Some(7));
}

#[test]
fn partial_pieces_are_finished_before_new_ones_are_started() {
    let (mut p, count) = past_random_first(4);
    p.add_peer_pieces(&bits(&[0, 1, 2], count), 1);
    let peer = bits(&[0, 1, 2, 3], count);
    assert_eq!(p.pick(&peer, &[]), Some(3), "the rarest, with no partials");
    p.set_partial(1, true);
    assert_eq!(
        p.pick(&peer, &[]),
        Some(1),
        "the partial piece, though common"
    );
    p.assign(1);
    p.complete(1);
    assert_eq!(p.pick(&peer, &[]), Some(3), "completing clears partial");
    assert_eq!(
        p.pick(&bits(&[0], count), &[]),
        Some(0),
        "a partial piece the peer lacks is not picked"
    );
}

#[test]
fn never_picks_pieces_we_have_or_the_peer_lacks() {
    let mut p = PiecePicker::new(&[true, false, false], 1);
    assert_eq!(p.pick(&bits(&[0, 2], 3), &[]), Some(2));
    assert_eq!(p.pick(&bits(&[0], 3), &[]), None);
}

#[test]
fn endgame_starts_only_when_no_piece_is_missing() {
    let mut p = PiecePicker::new(&[true, false, false], 1);
    p.assign(1);
    assert!(!p.in_endgame());
    assert_eq!(
        p.pick(&bits(&[1], 3), &[]),
        None,
        "piece 2 is still missing: no duplicate of 1 yet"
    );
    p.assign(2);
    assert!(p.in_endgame());
    assert_eq!(p.pick(&bits(&[1], 3), &[]), Some(1));
}

#[test]
fn endgame_duplicates_in_flight_pieces_up_to_a_limit() {
    let mut p = PiecePicker::new(&[true, false], 1);
    let peer = bits(&[0, 1], 2);
    p.assign(1);
    assert_eq!(p.pick(&peer, &[]), Some(1), "endgame");
    assert_eq!(p.pick(&peer, &[1]), None, "not twice to one peer");
    p.assign(1);
    p.assign(1);
    assert_eq!(p.pick(&peer, &[]), None, "enough holders");
}

#[test]
fn endgame_prefers_the_piece_with_the_fewest_holders() {
    let mut p = PiecePicker::new(&[false, false], 1);
    p.assign(0);
    p.assign(0);
    p.assign(1);
    assert_eq!(p.pick(&bits(&[0, 1], 2), &[]), Some(1));
}

#[test]
fn release_returns_a_piece_to_missing_when_its_last_holder_leaves() {
    let mut p = PiecePicker::new(&[false], 1);
    p.assign(0);
    p.assign(0);
    p.release(0);
    assert_eq!(p.state(0), PieceState::InFlight(1));
    p.release(0);
    assert_eq!(p.state(0), PieceState::Missing);
    assert!(!p.in_endgame());
}

#[test]
fn complete_counts_each_piece_once() {
    let mut p = PiecePicker::new(&[false, false], 1);
    p.assign(0);
    p.complete(0);
    p.complete(0);
    assert_eq!(p.have_count(), 1);
    p.release(0);
    assert_eq!(
        p.state(0),
        PieceState::Have,
        "a late release cannot undo a verified piece"
    );
    p.complete(1);
    assert!(p.is_complete());
    assert!(!p.in_endgame());
}

#[test]
fn a_piece_being_verified_is_not_fetched_again_unless_it_fails() {
    let mut p = PiecePicker::new(&[true, false, false], 1);
    let peer = bits(&[1, 2], 3);
    p.assign(1);
    p.assign(1);
    p.verifying(1);
    assert_eq!(p.state(1), PieceState::Verifying);
    p.release(1);
    assert_eq!(
        p.state(1),
        PieceState::Verifying,
        "a holder leaving changes nothing"
    );
    p.assign(2);
    assert!(p.in_endgame());
    assert_eq!(
        p.pick(&peer, &[2]),
        None,
        "no endgame copy of a delivered piece"
    );
    p.failed(1);
    assert_eq!(p.state(1), PieceState::Missing);
    assert!(!p.in_endgame());
    assert_eq!(p.pick(&peer, &[2]), Some(1), "fetched again after failing");
    p.assign(1);
    p.verifying(1);
    p.complete(1);
    p.failed(1);
    assert_eq!(
        p.state(1),
        PieceState::Have,
        "a late failure cannot undo a verified piece"
    );
    assert_eq!(p.have_count(), 2);
}

#[test]
fn a_probe_is_given_a_piece_in_flight_when_none_is_missing() {
    let mut picker = PiecePicker::with_rng(&[false, false], 1, fastrand::Rng::with_seed(1));
    let all = Bitfield::from_bools(&[true, true]);
    picker.add_peer_pieces(&all, 1);
    for _ in 0..MAX_HOLDERS {
        picker.assign(0);
        picker.assign(1);
    }
    assert_eq!(picker.pick(&all, &[]), None, "every piece has its holders");
    assert_eq!(picker.pick_probe(&all, &[]), Some(0));
    assert_eq!(picker.pick_probe(&all, &[0]), Some(1));
    picker.verifying(0);
    assert_eq!(
        picker.pick_probe(&all, &[1]),
        None,
        "not a piece being verified"
    );
}

/// Every piece of `peer` that is missing and not in `already`.
fn eligible(p: &PiecePicker, peer: &Bitfield, already: &[u32]) -> Vec<u32> {
    peer.iter()
        .filter(|&i| p.state(i) == PieceState::Missing && !already.contains(&i))
        .collect()
}

#[test]
fn picks_agree_with_the_policy_through_random_events() {
    let n = 300u32;
    let mut rng = fastrand::Rng::with_seed(11);
    let mut p = PiecePicker::with_rng(&vec![false; n as usize], 1, fastrand::Rng::with_seed(5));
    let mut peers: Vec<Bitfield> = Vec::new();
    let mut partial = vec![false; n as usize];
    for step in 0..4000 {
        let index = rng.u32(..n);
        match rng.u8(..10) {
            0 if peers.len() < 12 => {
                let fill = rng.f32();
                let count = n;
                let has =
                    Bitfield::from_bools(&(0..count).map(|_| rng.f32() < fill).collect::<Vec<_>>());
                p.add_peer_pieces(&has, 1);
                peers.push(has);
            }
            1 if !peers.is_empty() => {
                let gone = peers.swap_remove(rng.usize(..peers.len()));
                p.add_peer_pieces(&gone, -1);
            }
            2 if !peers.is_empty() => {
                let k = rng.usize(..peers.len());
                if peers[k].set(index) {
                    p.add_have(index, &peers[k]);
                }
            }
            3 | 4 => p.assign(index),
            5 => p.release(index),
            6 => p.verifying(index),
            7 if rng.u8(..4) == 0 => p.complete(index),
            7 => p.failed(index),
            _ => {
                let on = rng.bool();
                if p.state(index) != PieceState::Have {
                    p.set_partial(index, on);
                    partial[index as usize] = on;
                }
            }
        }
        for i in 0..n {
            if p.state(i) == PieceState::Have {
                partial[i as usize] = false;
            }
        }
        for i in 0..n {
            let count = peers.iter().filter(|b| b.has(i)).count() as u32;
            assert_eq!(p.availability(i), count, "step {step}, piece {i}");
        }
        p.missing.check(&p.availability);
        let Some(peer) = peers.get(rng.usize(..peers.len().max(1))) else {
            continue;
        };
        let already: Vec<u32> = (0..rng.usize(..4)).map(|_| rng.u32(..n)).collect();
        let picked = p.pick(peer, &already);
        let candidates = eligible(&p, peer, &already);
        let partials: Vec<u32> = candidates
            .iter()
            .copied()
            .filter(|&i| partial[i as usize])
            .collect();
        match picked {
            Some(i) if !partials.is_empty() => assert!(partials.contains(&i), "step {step}"),
            Some(i) if p.have_count() < RANDOM_FIRST_PIECES => {
                assert!(candidates.contains(&i), "step {step}");
            }
            Some(i) if !candidates.is_empty() => {
                let rarest = candidates.iter().map(|&c| p.availability(c)).min();
                assert!(candidates.contains(&i), "step {step}");
                assert_eq!(Some(p.availability(i)), rarest, "step {step}");
            }
            _ => {
                assert!(candidates.is_empty(), "step {step}: {picked:?}");
                let endgame = (0..n)
                    .filter(|&i| peer.has(i) && !already.contains(&i))
                    .filter_map(|i| match p.state(i) {
                        PieceState::InFlight(h) if h < MAX_HOLDERS => Some((h, i)),
                        _ => None,
                    })
                    .min()
                    .map(|(_, i)| i);
                let expected = if p.in_endgame() { endgame } else { None };
                assert_eq!(picked, expected, "step {step}");
            }
        }
    }
}

const BIG: u32 = 262_144;

#[test]
fn a_pick_at_262144_pieces_looks_at_few_of_them() {
    let mut p = PiecePicker::with_rng(&vec![false; BIG as usize], 1, fastrand::Rng::with_seed(2));
    let seeder = Bitfield::from_bools(&vec![true; BIG as usize]);
    p.add_peer_pieces(&seeder, 1);
    // A second peer with every other piece makes the odd pieces rarer.
    let mut half = Bitfield::new(BIG);
    for i in (0..BIG).step_by(2) {
        half.set(i);
    }
    p.add_peer_pieces(&half, 1);
    let mut assigned = Vec::new();
    for round in 0..2000u32 {
        let before = p.visited();
        let index = p.pick(&seeder, &assigned).expect("a piece");
        assert!(
            p.visited() - before <= 2 * RANDOM_TRIES as u64,
            "round {round}: {} pieces looked at",
            p.visited() - before
        );
        if p.have_count() >= RANDOM_FIRST_PIECES {
            assert_eq!(index % 2, 1, "round {round}: the rarer half first");
        }
        p.assign(index);
        assigned.push(index);
        if assigned.len() > 256 {
            // Delivered and verified, as a download goes.
            let done = assigned.remove(0);
            p.verifying(done);
            p.complete(done);
        }
    }
    assert!(
        p.visited() < 2000 * 4,
        "{} pieces looked at by 2000 picks",
        p.visited()
    );
}

#[test]
fn a_peer_with_few_pieces_is_served_from_its_bitfield_not_a_scan() {
    let mut p = PiecePicker::with_rng(&vec![false; BIG as usize], 1, fastrand::Rng::with_seed(4));
    for _ in 0..RANDOM_FIRST_PIECES {
        let index = p.missing.at(0);
        p.complete(index);
    }
    // Most pieces are held by nobody; the peer has ten common ones.
    let mut common = Bitfield::new(BIG);
    for i in 1000..1010 {
        common.set(i);
    }
    p.add_peer_pieces(&common, 1);
    p.add_peer_pieces(&common, 1);
    let peer = bits(&[1000, 1003, 1009, BIG - 1], BIG);
    p.add_peer_pieces(&peer, 1);
    let before = p.visited();
    let index = p.pick(&peer, &[BIG - 1]).expect("a piece");
    assert!(
        [1000, 1003, 1009].contains(&index),
        "not the one it fetches"
    );
    let looked = p.visited() - before;
    assert!(looked <= SCAN_LIMIT as u64 + 4, "{looked} pieces looked at");
}

#[test]
fn a_peer_completing_by_have_is_counted_as_a_seed_and_leaves_cleanly() {
    let mut p = PiecePicker::new(&[false; 3], 1);
    let mut peer = bits(&[0, 1], 3);
    p.add_peer_pieces(&peer, 1);
    peer.set(2);
    p.add_have(2, &peer);
    assert_eq!(
        (0..3).map(|i| p.availability(i)).collect::<Vec<_>>(),
        [1, 1, 1]
    );
    p.missing.check(&p.availability);
    p.add_peer_pieces(&peer, -1);
    assert_eq!(
        (0..3).map(|i| p.availability(i)).collect::<Vec<_>>(),
        [0, 0, 0]
    );
}

/// Picks every piece of a picker made with `run` and `seed`, all of them
/// held by one seeder (past the random-first phase), in pick order.
fn pick_order(missing: u32, run: u32, seed: u64) -> Vec<u32> {
    let mut have = vec![false; missing as usize];
    have.extend(std::iter::repeat_n(true, RANDOM_FIRST_PIECES as usize));
    let mut p = PiecePicker::with_rng(&have, run, fastrand::Rng::with_seed(seed));
    let seeder = Bitfield::from_bools(&vec![true; have.len()]);
    p.add_peer_pieces(&seeder, 1);
    let mut picked = Vec::new();
    while let Some(index) = p.pick(&seeder, &picked) {
        p.assign(index);
        picked.push(index);
    }
    picked
}

/// Regression: equally rare pieces went in index order, so every leecher
/// of one seeder fetched the same pieces from it at the same time and had
/// nothing to trade (4 leechers: the seeder sent 3.8 times the file).
#[test]
fn equally_rare_pieces_go_in_runs_whose_order_differs_between_pickers() {
    let a = pick_order(100, 4, 1);
    let b = pick_order(100, 4, 2);
    for order in [&a, &b] {
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>(), "each piece once");
        for run in order.chunks(4) {
            assert_eq!(run[0] % 4, 0, "a run starts at a multiple of 4: {run:?}");
            assert!(run.windows(2).all(|w| w[1] == w[0] + 1), "{run:?}");
        }
    }
    assert_ne!(a, b, "two pickers, two orders");
    // Leechers starting together mostly start on different pieces.
    let shared = a[..20].iter().filter(|i| b[..20].contains(i)).count();
    assert!(shared < 12, "{shared} of the first 20 picks in common");
    // A run of one piece is the plain random order.
    assert_ne!(pick_order(100, 1, 1), (0..100).collect::<Vec<_>>());
}

#[test]
fn unwanted_pieces_are_never_picked_and_complete_needs_only_the_wanted() {
    // Pieces 0..8: 2, 3 and 6 wanted; 7 had.
    let have = [false, false, false, false, false, false, false, true];
    let wanted = [false, false, true, true, false, false, true, false];
    let mut p = PiecePicker::with_wanted_rng(&have, &wanted, 1, fastrand::Rng::with_seed(9));
    assert_eq!(p.state(0), PieceState::Unwanted);
    assert_eq!(p.state(7), PieceState::Have, "had, wanted or not");
    let seeder = Bitfield::from_bools(&[true; 8]);
    p.add_peer_pieces(&seeder, 1);
    p.add_peer_pieces(&bits(&[0, 1, 4], 8), 1);
    let mut picked = Vec::new();
    while let Some(index) = p.pick(&seeder, &picked) {
        assert!(wanted[index as usize], "picked unwanted piece {index}");
        p.assign(index);
        picked.push(index);
        if picked.len() == 3 {
            break;
        }
    }
    picked.sort_unstable();
    assert_eq!(picked, [2, 3, 6]);
    assert!(p.in_endgame(), "no wanted piece is missing");
    assert_eq!(
        p.pick(&bits(&[0, 1, 4, 5], 8), &[]),
        None,
        "only unwanted ones"
    );
    for &index in &picked {
        assert!(!p.is_complete());
        p.verifying(index);
        p.complete(index);
    }
    assert!(p.is_complete(), "complete without the unwanted pieces");
    assert_eq!(p.have_count(), 4);
    // Unwanted pieces keep their state whatever happens to them.
    p.assign(0);
    p.release(0);
    p.verifying(0);
    p.complete(0);
    assert_eq!(p.state(0), PieceState::Unwanted);
    assert_eq!(p.have_count(), 4);
}

#[test]
fn a_pick_among_few_wanted_of_262144_pieces_looks_at_few_of_them() {
    // The last 100 pieces wanted: availability changes of the others
    // and picks never walk them.
    let have = vec![false; BIG as usize];
    let wanted: Vec<bool> = (0..BIG).map(|i| i >= BIG - 100).collect();
    let mut p = PiecePicker::with_wanted_rng(&have, &wanted, 1, fastrand::Rng::with_seed(5));
    let seeder = Bitfield::from_bools(&vec![true; BIG as usize]);
    p.add_peer_pieces(&seeder, 1);
    let before = p.visited();
    let mut assigned = Vec::new();
    while let Some(index) = p.pick(&seeder, &assigned) {
        assert!(index >= BIG - 100, "piece {index} is not wanted");
        p.assign(index);
        assigned.push(index);
    }
    assert_eq!(assigned.len(), 100);
    assert!(
        p.visited() - before < 100 * 2 * RANDOM_TRIES as u64,
        "{} pieces looked at by 100 picks",
        p.visited() - before
    );
}
