use std::net::SocketAddr;

use super::*;

fn id(text: &[u8; 20]) -> NodeId {
    NodeId(*text)
}

fn tid(bytes: &[u8]) -> TransactionId {
    TransactionId::new(bytes).unwrap()
}

/// BEP 5's examples carry no `v`; ours do, so the examples are checked
/// against messages without one.
fn bare(tid_bytes: &[u8], body: Body) -> Message {
    Message {
        tid: tid(tid_bytes),
        version: None,
        read_only: false,
        external_addr: None,
        body,
    }
}

/// Each example of BEP 5, and the message it is.
fn bep5_examples() -> Vec<(&'static [u8], Message)> {
    let a = id(b"abcdefghij0123456789");
    let m = id(b"mnopqrstuvwxyz123456");
    vec![
        (
            b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe",
            bare(b"aa", Body::Query(Query::Ping { id: a })),
        ),
        (
            b"d1:rd2:id20:mnopqrstuvwxyz123456e1:t2:aa1:y1:re",
            bare(b"aa", Body::Response(Response::new(m))),
        ),
        (
            b"d1:eli201e23:A Generic Error Ocurrede1:t2:aa1:y1:ee",
            bare(
                b"aa",
                Body::Error(ErrorReply {
                    code: 201,
                    message: "A Generic Error Ocurred".into(),
                }),
            ),
        ),
        (
            b"d1:ad2:id20:abcdefghij01234567896:target20:mnopqrstuvwxyz123456e1:q9:find_node1:t2:aa1:y1:qe",
            bare(b"aa", Body::Query(Query::FindNode { id: a, target: m })),
        ),
        (
            b"d1:ad2:id20:abcdefghij01234567899:info_hash20:mnopqrstuvwxyz123456e1:q9:get_peers1:t2:aa1:y1:qe",
            bare(b"aa", Body::Query(Query::GetPeers { id: a, info_hash: m })),
        ),
        (
            b"d1:rd2:id20:abcdefghij01234567895:token8:aoeusnth6:valuesl6:axje.u6:idhtnmee1:t2:aa1:y1:re",
            bare(
                b"aa",
                Body::Response(Response {
                    id: a,
                    nodes: vec![],
                    values: vec![
                        "97.120.106.101:11893".parse().unwrap(),
                        "105.100.104.116:28269".parse().unwrap(),
                    ],
                    token: Some(b"aoeusnth".to_vec()),
                }),
            ),
        ),
        (
            b"d1:ad2:id20:abcdefghij012345678912:implied_porti1e9:info_hash20:mnopqrstuvwxyz1234564:porti6881e5:token8:aoeusnthe1:q13:announce_peer1:t2:aa1:y1:qe",
            bare(
                b"aa",
                Body::Query(Query::AnnouncePeer {
                    id: a,
                    info_hash: m,
                    port: 6881,
                    implied_port: true,
                    token: b"aoeusnth".to_vec(),
                }),
            ),
        ),
    ]
}

#[test]
fn bep5_examples_decode_and_encode_to_the_exact_bytes() {
    for (bytes, message) in bep5_examples() {
        let shown = String::from_utf8_lossy(bytes);
        assert_eq!(decode(bytes).as_ref(), Ok(&message), "{shown}");
        assert_eq!(message.encode(), bytes, "{shown}");
    }
}

#[test]
fn nodes_and_nodes6_encode_compactly_and_decode_into_one_list() {
    let v4 = NodeInfo {
        id: NodeId([1; 20]),
        addr: "10.0.0.1:6881".parse().unwrap(),
    };
    let v6 = NodeInfo {
        id: NodeId([2; 20]),
        addr: "[::1]:51413".parse().unwrap(),
    };
    let mut response = Response::new(NodeId([9; 20]));
    response.nodes = vec![v4, v6];
    let bytes = Message::response(tid(b"xy"), response.clone()).encode();
    let mut expected = b"d1:rd2:id20:".to_vec();
    expected.extend([9; 20]);
    expected.extend(b"5:nodes26:");
    expected.extend([1; 20]);
    expected.extend([10, 0, 0, 1, 0x1a, 0xe1]);
    expected.extend(b"6:nodes638:");
    expected.extend([2; 20]);
    expected.extend([0; 15]);
    expected.extend([1, 0xc8, 0xd5]);
    expected.extend(b"e1:t2:xy1:v4:BT\x00\x011:y1:re");
    assert_eq!(bytes, expected);
    let decoded = decode(&bytes).unwrap();
    assert_eq!(decoded.body, Body::Response(response));
    assert_eq!(decoded.version.as_deref(), Some(&OUR_VERSION[..]));
}

#[test]
fn transaction_ids_of_one_to_max_bytes_are_echoed_exactly() {
    for len in 1..=MAX_TID_LEN {
        let t: Vec<u8> = (0..len as u8).map(|b| b.wrapping_mul(37)).collect();
        let mut bytes = b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t".to_vec();
        bytes.extend(format!("{len}:").as_bytes());
        bytes.extend(&t);
        bytes.extend(b"1:y1:qe");
        let query = decode(&bytes).unwrap();
        assert_eq!(query.tid.as_bytes(), &t[..], "len {len}");
        let reply = Message::response(query.tid, Response::new(NodeId([0; 20]))).encode();
        let mut needle = format!("1:t{len}:").into_bytes();
        needle.extend(&t);
        assert!(
            reply.windows(needle.len()).any(|w| w == needle),
            "len {len}"
        );
    }
}

#[test]
fn transaction_ids_empty_or_too_long_are_refused() {
    assert_eq!(TransactionId::new(b""), None);
    assert_eq!(TransactionId::new(&[0; MAX_TID_LEN + 1]), None);
    assert_eq!(TransactionId::from_u16(0x0102).as_bytes(), [1, 2]);
    let empty = b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t0:1:y1:qe";
    let err = decode(empty).unwrap_err();
    assert_eq!(err.kind, DecodeErrorKind::Invalid("t"));
    assert_eq!(err.reply(), None, "no id to echo, so no reply");
}

#[test]
fn every_truncation_of_every_example_is_an_error() {
    for (bytes, _) in bep5_examples() {
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }
}

#[test]
fn unknown_method_is_answered_with_error_204() {
    let bytes = b"d1:ad2:id20:abcdefghij0123456789e1:q9:sample_me1:t2:zz1:y1:qe";
    let err = decode(bytes).unwrap_err();
    assert_eq!(err.kind, DecodeErrorKind::UnknownMethod("sample_me".into()));
    let reply = err.reply().unwrap().encode();
    assert_eq!(
        reply,
        b"d1:eli204e14:Method Unknowne1:t2:zz1:v4:BT\x00\x011:y1:ee"
    );
}

#[test]
fn malformed_queries_are_answered_with_error_203() {
    let cases: [(&[u8], DecodeErrorKind); 7] = [
        (b"d1:q4:ping1:t2:zz1:y1:qe", DecodeErrorKind::Missing("a")),
        (b"d1:ade1:q4:ping1:t2:zz1:y1:qe", DecodeErrorKind::Missing("id")),
        (b"d1:ad2:id3:abce1:q4:ping1:t2:zz1:y1:qe", DecodeErrorKind::Invalid("id")),
        (
            b"d1:ad2:id20:abcdefghij0123456789e1:q9:find_node1:t2:zz1:y1:qe",
            DecodeErrorKind::Missing("target"),
        ),
        (
            b"d1:ad2:id20:abcdefghij01234567899:info_hash20:mnopqrstuvwxyz1234564:porti70000e5:token1:xe1:q13:announce_peer1:t2:zz1:y1:qe",
            DecodeErrorKind::Invalid("port"),
        ),
        (
            b"d1:ad2:id20:abcdefghij01234567899:info_hash20:mnopqrstuvwxyz1234564:porti1ee1:q13:announce_peer1:t2:zz1:y1:qe",
            DecodeErrorKind::Missing("token"),
        ),
        (b"d1:ai1e1:q4:ping1:t2:zz1:y1:qe", DecodeErrorKind::Invalid("a")),
    ];
    for (bytes, kind) in cases {
        let err = decode(bytes).unwrap_err();
        assert_eq!(err.kind, kind, "{}", String::from_utf8_lossy(bytes));
        let reply = err.reply().unwrap().encode();
        assert!(reply.starts_with(b"d1:eli203e"), "{err}");
        assert!(reply.windows(7).any(|w| w == b"1:t2:zz"));
    }
}

#[test]
fn the_announced_peer_is_the_source_ip_with_the_given_or_implied_port() {
    let from: SocketAddr = "127.0.0.5:40000".parse().unwrap();
    let announce = |implied_port| Query::AnnouncePeer {
        id: NodeId([1; 20]),
        info_hash: NodeId([2; 20]),
        port: 6881,
        implied_port,
        token: vec![],
    };
    assert_eq!(
        announce(false).announced_peer(from),
        Some("127.0.0.5:6881".parse().unwrap())
    );
    assert_eq!(announce(true).announced_peer(from), Some(from));
    assert_eq!(
        Query::Ping {
            id: NodeId([1; 20])
        }
        .announced_peer(from),
        None
    );
}

#[test]
fn implied_port_makes_the_port_value_irrelevant() {
    let bytes = b"d1:ad2:id20:abcdefghij012345678912:implied_porti1e9:info_hash20:mnopqrstuvwxyz1234564:porti0e5:token1:xe1:q13:announce_peer1:t2:aa1:y1:qe";
    match decode(bytes).unwrap().body {
        Body::Query(Query::AnnouncePeer { implied_port, .. }) => assert!(implied_port),
        other => panic!("{other:?}"),
    }
    let zero = b"d1:ad2:id20:abcdefghij01234567899:info_hash20:mnopqrstuvwxyz1234564:porti0e5:token1:xe1:q13:announce_peer1:t2:aa1:y1:qe";
    assert_eq!(
        decode(zero).unwrap_err().kind,
        DecodeErrorKind::Invalid("port")
    );
}

#[test]
fn malformed_responses_and_errors_are_not_answered() {
    let cases: [(&[u8], DecodeErrorKind); 6] = [
        (b"d1:t2:aa1:y1:re", DecodeErrorKind::Missing("r")),
        (b"d1:rde1:t2:aa1:y1:re", DecodeErrorKind::Missing("id")),
        (
            b"d1:rd2:id20:mnopqrstuvwxyz1234565:nodes3:abce1:t2:aa1:y1:re",
            DecodeErrorKind::Invalid("nodes"),
        ),
        (
            b"d1:rd2:id20:mnopqrstuvwxyz1234566:valuesi1ee1:t2:aa1:y1:re",
            DecodeErrorKind::Invalid("values"),
        ),
        (
            b"d1:eli201ee1:t2:aa1:y1:ee",
            DecodeErrorKind::Invalid("e").clone(),
        ),
        (b"d1:t2:aa1:y1:xe", DecodeErrorKind::UnknownType),
    ];
    for (i, (bytes, kind)) in cases.into_iter().enumerate() {
        let err = decode(bytes);
        if i == 4 {
            // An error with a code and no text is understood, the text empty.
            let Body::Error(e) = err.unwrap().body else {
                panic!()
            };
            assert_eq!((e.code, e.message.as_str()), (201, ""));
            continue;
        }
        let err = err.unwrap_err();
        assert_eq!(err.kind, kind, "{}", String::from_utf8_lossy(bytes));
        assert_eq!(err.tid, Some(tid(b"aa")));
        assert_eq!(err.reply(), None);
    }
    let no_code = b"d1:el5:oopsee1:t2:aa1:y1:ee";
    assert_eq!(
        decode(no_code).unwrap_err().kind,
        DecodeErrorKind::Invalid("e")
    );
}

#[test]
fn values_of_unknown_length_are_skipped() {
    let bytes = b"d1:rd2:id20:mnopqrstuvwxyz1234566:valuesl3:abc6:axje.uee1:t2:aa1:y1:re";
    let Body::Response(r) = decode(bytes).unwrap().body else {
        panic!()
    };
    assert_eq!(
        r.values,
        ["97.120.106.101:11893".parse::<SocketAddr>().unwrap()]
    );
}

#[test]
fn oversized_datagrams_and_trailing_bytes_are_refused_before_use() {
    let mut big = b"d1:t2:aa1:y1:r1:rd2:id20:mnopqrstuvwxyz1234561:x".to_vec();
    big.extend(format!("{}:", MAX_DATAGRAM_LEN).as_bytes());
    big.extend(vec![b'x'; MAX_DATAGRAM_LEN]);
    big.extend(b"ee");
    assert_eq!(
        decode(&big).unwrap_err().kind,
        DecodeErrorKind::TooLarge(big.len())
    );
    let trailing = b"d1:rd2:id20:mnopqrstuvwxyz123456e1:t2:aa1:y1:reX";
    assert!(matches!(
        decode(trailing).unwrap_err().kind,
        DecodeErrorKind::Bencode(_)
    ));
    assert!(matches!(
        decode(b"").unwrap_err().kind,
        DecodeErrorKind::Bencode(_)
    ));
    assert!(matches!(
        decode(b"le").unwrap_err().kind,
        DecodeErrorKind::Bencode(_)
    ));
}

#[test]
fn read_only_flag_external_ip_and_version_are_read() {
    let mut bytes = b"d1:ad2:id20:abcdefghij0123456789e2:ip6:".to_vec();
    bytes.extend([127, 0, 0, 1, 0x1a, 0xe1]);
    bytes.extend(b"1:q4:ping2:roi1e1:t1:a1:v4:LT\x01\x021:y1:qe");
    let m = decode(&bytes).unwrap();
    assert!(m.read_only);
    assert_eq!(m.external_addr, Some("127.0.0.1:6881".parse().unwrap()));
    assert_eq!(m.version.as_deref(), Some(&b"LT\x01\x02"[..]));
    assert_eq!(m.encode(), bytes, "ro, ip and v encode back in key order");
    let long_v = b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t1:a1:v17:aaaaaaaaaaaaaaaaa1:y1:qe";
    assert_eq!(decode(long_v).unwrap().version, None);
}

#[test]
fn repeated_keys_take_the_first_value() {
    let bytes = b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:t2:bb1:y1:qe";
    assert_eq!(decode(bytes).unwrap().tid, tid(b"aa"));
}

#[test]
fn compact_helpers_refuse_partial_entries() {
    assert_eq!(compact_addr(&[1, 2, 3, 4, 5]), None);
    assert_eq!(compact_nodes(&[0; 27], COMPACT_NODE_LEN), None);
    assert_eq!(compact_nodes(&[], COMPACT_NODE_LEN), Some(vec![]));
    assert_eq!(
        compact_nodes(&[0; 76], COMPACT_NODE6_LEN).map(|n| n.len()),
        Some(2)
    );
}

mod props {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode(&bytes).map(|m| m.encode());
        }

        #[test]
        fn mutated_examples_never_panic(index in 0usize..7, at in any::<prop::sample::Index>(), byte in any::<u8>()) {
            let (bytes, _) = bep5_examples().swap_remove(index);
            let mut bytes = bytes.to_vec();
            let at = at.index(bytes.len());
            bytes[at] = byte;
            if let Ok(message) = decode(&bytes) {
                // Whatever decodes, re-encodes to something that decodes the same.
                prop_assert_eq!(decode(&message.encode()), Ok(message));
            }
        }

        #[test]
        fn random_dictionaries_of_krpc_keys_never_panic(top in proptest::collection::btree_map(key(), value(), 0..8)) {
            let mut bytes = Vec::new();
            put_value(&Value::Dict(top.into_iter().collect()), &mut bytes);
            let _ = decode(&bytes);
        }

        #[test]
        fn near_valid_messages_decode_or_fail_cleanly(top in message()) {
            let mut bytes = Vec::new();
            put_value(&top, &mut bytes);
            match decode(&bytes) {
                Ok(message) => prop_assert_eq!(decode(&message.encode()), Ok(message)),
                Err(e) => {
                    if let Some(reply) = e.reply() {
                        let back = decode(&reply.encode()).unwrap();
                        prop_assert_eq!(Some(back.tid), e.tid);
                        prop_assert!(matches!(back.body, Body::Error(_)));
                    }
                }
            }
        }

        #[test]
        fn responses_round_trip(
            t in proptest::collection::vec(any::<u8>(), 1..=MAX_TID_LEN),
            nodes in proptest::collection::vec((any::<[u8; 20]>(), any::<SocketAddr>()), 0..8),
            values in proptest::collection::vec(any::<SocketAddr>(), 0..20),
            token in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..MAX_TOKEN_LEN)),
        ) {
            let response = Response {
                id: NodeId([5; 20]),
                nodes: nodes.into_iter().map(|(id, addr)| NodeInfo { id: NodeId(id), addr: unscoped(addr) }).collect(),
                values: values.into_iter().map(unscoped).collect(),
                token,
            };
            let message = Message::response(tid(&t), response);
            let mut decoded = decode(&message.encode()).unwrap();
            // IPv4 nodes come back first (`nodes`), then IPv6 (`nodes6`).
            let mut expected = message.clone();
            if let Body::Response(r) = &mut expected.body {
                r.nodes.sort_by_key(|n| n.addr.is_ipv6());
            }
            if let Body::Response(r) = &mut decoded.body {
                prop_assert!(r.nodes.is_sorted_by_key(|n| n.addr.is_ipv6()));
            }
            prop_assert_eq!(decoded, expected);
        }
    }

    /// A bencoded value, to build messages that reach past the first checks.
    #[derive(Clone, Debug)]
    enum Value {
        Int(i64),
        Bytes(Vec<u8>),
        List(Vec<Value>),
        Dict(Vec<(Vec<u8>, Value)>),
    }

    fn key() -> impl Strategy<Value = Vec<u8>> {
        let keys = [
            "t",
            "y",
            "q",
            "a",
            "r",
            "e",
            "v",
            "ro",
            "ip",
            "id",
            "target",
            "info_hash",
            "port",
            "implied_port",
            "token",
            "nodes",
            "nodes6",
            "values",
            "x",
        ];
        prop::sample::select(keys.to_vec()).prop_map(|k| k.as_bytes().to_vec())
    }

    fn value() -> impl Strategy<Value = Value> {
        let words = [
            "q",
            "r",
            "e",
            "ping",
            "find_node",
            "get_peers",
            "announce_peer",
        ];
        let leaf = prop_oneof![
            (-2i64..70_000).prop_map(Value::Int),
            prop::sample::select(words.to_vec()).prop_map(|w| Value::Bytes(w.as_bytes().to_vec())),
            prop::sample::select(vec![0usize, 1, 2, 6, 18, 20, 26, 38, 52, 65])
                .prop_flat_map(|len| proptest::collection::vec(any::<u8>(), len))
                .prop_map(Value::Bytes),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::List),
                proptest::collection::btree_map(key(), inner, 0..6)
                    .prop_map(|m| Value::Dict(m.into_iter().collect())),
            ]
        })
    }

    /// A message whose keys are mostly right, each of them sometimes
    /// missing or of the wrong type, so that decoding gets past its first checks.
    fn message() -> impl Strategy<Value = Value> {
        use proptest::collection::{btree_map, vec};
        use proptest::option::weighted;
        let bytes = |v: Vec<u8>| Value::Bytes(v);
        let word = |words: &'static [&'static str]| {
            prop::sample::select(words.to_vec()).prop_map(|w| Value::Bytes(w.as_bytes().to_vec()))
        };
        let tid = prop_oneof![4 => vec(any::<u8>(), 1..5).prop_map(bytes), 1 => value()];
        let kind = prop_oneof![4 => word(&["q", "r", "e"]), 1 => value()];
        let method = prop_oneof![
            4 => word(&["ping", "find_node", "get_peers", "announce_peer", "vote"]),
            1 => value()
        ];
        let id = prop_oneof![6 => vec(any::<u8>(), 20).prop_map(bytes), 1 => value()];
        let field = prop_oneof![
            3 => vec(any::<u8>(), 20).prop_map(bytes),
            2 => (0i64..70_000).prop_map(Value::Int),
            1 => (0usize..4).prop_flat_map(|n| vec(any::<u8>(), 26 * n)).prop_map(bytes),
            1 => vec(vec(any::<u8>(), 6).prop_map(bytes), 0..4).prop_map(Value::List),
            1 => value(),
        ];
        let names = [
            "target",
            "info_hash",
            "port",
            "implied_port",
            "token",
            "nodes",
            "values",
        ];
        let args = (
            weighted(0.9, id),
            btree_map(prop::sample::select(names.to_vec()), field, 0..5),
        )
            .prop_map(|(id, rest)| {
                let mut entries: Vec<(Vec<u8>, Value)> = rest
                    .into_iter()
                    .map(|(k, v)| (k.as_bytes().to_vec(), v))
                    .collect();
                if let Some(id) = id {
                    entries.push((b"id".to_vec(), id));
                }
                entries.sort_by(|a, b| a.0.cmp(&b.0));
                Value::Dict(entries)
            });
        let error = vec(
            prop_oneof![(200i64..206).prop_map(Value::Int), value()],
            0..3,
        )
        .prop_map(Value::List);
        (
            weighted(0.95, tid),
            weighted(0.95, kind),
            weighted(0.8, method),
            weighted(0.8, args.clone()),
            weighted(0.5, args),
            weighted(0.3, error),
            weighted(0.2, (0i64..3).prop_map(Value::Int)),
            weighted(0.2, vec(any::<u8>(), 0..20).prop_map(bytes)),
        )
            .prop_map(|(t, y, q, a, r, e, ro, v)| {
                let keys = ["a", "e", "q", "r", "ro", "t", "v", "y"];
                let values = [a, e, q, r, ro, t, v, y];
                let entries = keys
                    .iter()
                    .zip(values)
                    .filter_map(|(k, v)| Some((k.as_bytes().to_vec(), v?)))
                    .collect();
                Value::Dict(entries)
            })
    }

    fn put_value(value: &Value, out: &mut Vec<u8>) {
        match value {
            Value::Int(n) => crate::bencode::put_int(out, *n),
            Value::Bytes(b) => crate::bencode::put_bytes(out, b),
            Value::List(items) => {
                out.push(b'l');
                items.iter().for_each(|v| put_value(v, out));
                out.push(b'e');
            }
            Value::Dict(entries) => {
                out.push(b'd');
                for (k, v) in entries {
                    crate::bencode::put_bytes(out, k);
                    put_value(v, out);
                }
                out.push(b'e');
            }
        }
    }

    /// Compact addresses carry no IPv6 flow info or scope id.
    fn unscoped(addr: SocketAddr) -> SocketAddr {
        SocketAddr::new(addr.ip(), addr.port())
    }
}
