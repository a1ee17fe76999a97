use super::*;

const MIN: Duration = Duration::from_secs(60);

fn node(first: u8, n: u8) -> NodeInfo {
    let mut id = [0; 20];
    id[0] = first;
    id[19] = n;
    NodeInfo {
        id: NodeId(id),
        addr: SocketAddr::from(([127, 0, first, n], 6881)),
    }
}

fn table() -> (RoutingTable, Instant) {
    let now = Instant::now();
    (RoutingTable::new(NodeId([0; 20]), now), now)
}

#[test]
fn only_the_bucket_holding_our_own_id_splits() {
    let (mut t, now) = table();
    for n in 0..K as u8 {
        assert_eq!(t.on_response(node(0x80, n), now), Insert::Added);
    }
    assert_eq!(t.bucket_count(), 1);
    // Full of good nodes far from us: the last bucket splits, but they all
    // stay in the far half, which is full and cannot split again.
    assert_eq!(t.on_response(node(0x80, 100), now), Insert::Full);
    assert_eq!(t.bucket_count(), 2);
    assert_eq!(t.on_response(node(0xc0, 1), now), Insert::Full);
    assert_eq!(t.bucket_count(), 2);
    // The near half (ids starting 0b0) has room.
    assert_eq!(t.on_response(node(0x40, 1), now), Insert::Added);
    assert_eq!(t.len(), K + 1);
}

#[test]
fn random_inserts_keep_every_node_in_its_bucket_and_buckets_at_most_k() {
    let mut rng = fastrand::Rng::with_seed(1);
    let now = Instant::now();
    let own = NodeId::random_with(&mut rng);
    let mut t = RoutingTable::new(own, now);
    for i in 0..5000u32 {
        let info = NodeInfo {
            id: NodeId::random_with(&mut rng),
            addr: SocketAddr::from(([127, 0, 0, 1], (i % 60000) as u16 + 1)),
        };
        t.on_response(info, now);
    }
    let last = t.buckets.len() - 1;
    for (index, bucket) in t.buckets.iter().enumerate() {
        assert!(bucket.nodes.len() <= K);
        for c in &bucket.nodes {
            let cpl = own.common_prefix_len(&c.info.id);
            assert!(if index == last {
                cpl >= index
            } else {
                cpl == index
            });
        }
    }
    // 5,000 random ids fill about log2(5000/8) ≈ 9 buckets deep.
    assert!((8..=14).contains(&t.bucket_count()), "{}", t.bucket_count());
    assert!(t.len() >= 8 * K);
}

#[test]
fn a_node_is_good_for_fifteen_minutes_after_answering() {
    let (mut t, t0) = table();
    let n = node(0x80, 1);
    t.on_response(n, t0);
    let state = |t: &RoutingTable, at| t.get(&n.id).unwrap().state(at);
    assert_eq!(state(&t, t0 + 14 * MIN), NodeState::Good);
    assert_eq!(state(&t, t0 + 15 * MIN), NodeState::Questionable);
    // Having answered once, a query from it makes it good again.
    assert_eq!(t.on_query(n, false, t0 + 20 * MIN), Insert::Updated);
    assert_eq!(state(&t, t0 + 20 * MIN), NodeState::Good);
    assert_eq!(state(&t, t0 + 35 * MIN), NodeState::Questionable);
}

#[test]
fn a_node_that_only_queried_us_is_questionable_and_not_handed_out() {
    let (mut t, t0) = table();
    let n = node(0x80, 1);
    assert_eq!(t.on_query(n, false, t0), Insert::Added);
    assert_eq!(t.get(&n.id).unwrap().state(t0), NodeState::Questionable);
    assert_eq!(t.closest(&n.id, K, t0), []);
    assert_eq!(t.questionable(t0), [n]);
    t.on_response(n, t0 + MIN);
    assert_eq!(t.closest(&n.id, K, t0 + MIN), [n]);
}

#[test]
fn repeated_failures_make_a_node_bad_and_a_response_forgives_them() {
    let (mut t, t0) = table();
    let n = node(0x80, 1);
    t.on_response(n, t0);
    assert_eq!(t.on_failure(n.addr, t0), Some(NodeState::Good));
    assert_eq!(t.on_failure(n.addr, t0), Some(NodeState::Bad));
    assert_eq!(t.closest(&n.id, K, t0), []);
    t.on_response(n, t0 + MIN);
    assert_eq!(t.get(&n.id).unwrap().state(t0 + MIN), NodeState::Good);
    assert_eq!(t.on_failure("127.9.9.9:1".parse().unwrap(), t0), None);
}

#[test]
fn a_bad_node_gives_its_slot_to_a_new_one() {
    let (mut t, t0) = table();
    for n in 0..K as u8 {
        t.on_response(node(0x80, n), t0);
    }
    t.on_response(node(0x40, 1), t0); // splits: the far bucket is now full and fixed
    for _ in 0..MAX_FAILURES {
        t.on_failure(node(0x80, 3).addr, t0);
    }
    assert_eq!(
        t.on_response(node(0x80, 200), t0),
        Insert::Replaced(node(0x80, 3))
    );
    assert!(t.get(&node(0x80, 200).id).is_some());
    assert!(t.get(&node(0x80, 3).id).is_none());
}

#[test]
fn a_full_bucket_of_questionable_nodes_asks_for_pings_and_keeps_a_replacement() {
    let (mut t, t0) = table();
    for n in 0..K as u8 {
        t.on_response(node(0x80, n), t0 + u32::from(n) * MIN);
    }
    t.on_response(node(0x40, 1), t0 + 8 * MIN);
    let later = t0 + 16 * MIN;
    // Nodes 0 and 1 answered 16 and 15 minutes ago: questionable, oldest first.
    assert_eq!(
        t.on_response(node(0x80, 99), later),
        Insert::PingQuestionable(vec![node(0x80, 0), node(0x80, 1)])
    );
    assert!(t.get(&node(0x80, 99).id).is_none());
    for _ in 0..MAX_FAILURES {
        t.on_failure(node(0x80, 1).addr, later);
    }
    assert!(t.get(&node(0x80, 1).id).is_none());
    let replacement = t.get(&node(0x80, 99).id).unwrap();
    assert_eq!(replacement.state(later), NodeState::Good);
}

#[test]
fn read_only_nodes_and_our_own_id_are_never_kept() {
    let (mut t, t0) = table();
    assert_eq!(t.on_query(node(0x80, 1), true, t0), Insert::Refused);
    let own = NodeInfo {
        id: t.own_id(),
        addr: "127.0.0.1:1".parse().unwrap(),
    };
    assert_eq!(t.on_response(own, t0), Insert::Refused);
    assert!(t.is_empty());
}

#[test]
fn closest_sorts_by_xor_distance_to_the_target() {
    let (mut t, t0) = table();
    for (first, n) in [(0x80, 1), (0x40, 2), (0x20, 3), (0x10, 4), (0x08, 5)] {
        t.on_response(node(first, n), t0);
    }
    let target = node(0x41, 0).id;
    let ids: Vec<u8> = t
        .closest(&target, 3, t0)
        .iter()
        .map(|n| n.id.0[0])
        .collect();
    assert_eq!(ids, [0x40, 0x08, 0x10]);
    assert_eq!(t.closest(&target, 100, t0).len(), 5);
}

#[test]
fn a_new_id_from_a_known_address_replaces_the_old_entry() {
    let (mut t, t0) = table();
    let old = node(0x80, 1);
    t.on_response(old, t0);
    let restarted = NodeInfo {
        id: node(0x40, 7).id,
        addr: old.addr,
    };
    t.on_response(restarted, t0);
    assert!(t.get(&old.id).is_none());
    assert_eq!(t.len(), 1);
}

#[test]
fn a_good_node_does_not_move_to_another_address_on_a_query() {
    let (mut t, t0) = table();
    let n = node(0x80, 1);
    t.on_response(n, t0);
    let moved = NodeInfo {
        id: n.id,
        addr: "127.1.1.1:9".parse().unwrap(),
    };
    assert_eq!(t.on_query(moved, false, t0), Insert::Full);
    assert_eq!(t.get(&n.id).unwrap().info.addr, n.addr);
}

#[test]
fn buckets_unchanged_for_fifteen_minutes_get_a_refresh_target_in_their_range() {
    let (mut t, t0) = table();
    let mut rng = fastrand::Rng::with_seed(3);
    for n in 0..K as u8 {
        t.on_response(node(0x80, n), t0);
    }
    t.on_response(node(0x40, 1), t0);
    assert_eq!(t.refresh_targets(t0 + 14 * MIN, &mut rng), []);
    // A response in the near bucket at minute 10 keeps it fresh until 25.
    t.on_response(node(0x40, 1), t0 + 10 * MIN);
    let targets = t.refresh_targets(t0 + 15 * MIN, &mut rng);
    assert_eq!(targets.len(), 1);
    assert_eq!(t.own_id().common_prefix_len(&targets[0]), 0);
    assert_eq!(
        t.refresh_targets(t0 + 16 * MIN, &mut rng),
        [],
        "asked once per period"
    );
    let targets = t.refresh_targets(t0 + 25 * MIN, &mut rng);
    assert_eq!(targets.len(), 1);
    assert!(t.own_id().common_prefix_len(&targets[0]) >= 1);
}

#[test]
fn exported_nodes_import_as_questionable_and_are_used_as_seeds() {
    let (mut t, t0) = table();
    let good = node(0x80, 1);
    let only_queried = node(0x40, 2);
    let bad = node(0x20, 3);
    t.on_response(good, t0);
    t.on_query(only_queried, false, t0);
    t.on_response(bad, t0);
    for _ in 0..MAX_FAILURES {
        t.on_failure(bad.addr, t0);
    }
    let saved = t.export(t0);
    assert_eq!(saved, [good]);
    let later = t0 + 60 * MIN;
    let mut second = RoutingTable::new(t.own_id(), later);
    second.import(&saved, later);
    assert_eq!(
        second.get(&good.id).unwrap().state(later),
        NodeState::Questionable
    );
    assert_eq!(second.closest(&good.id, K, later), [good]);
    assert_eq!(
        second.export(later),
        [good],
        "not lost if saved again before a ping"
    );
}
