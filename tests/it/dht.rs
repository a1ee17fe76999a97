//! The DHT (BEP 5) over loopback: a network of our nodes in which a magnet
//! with no tracker and no peer completes from a seeder found through the
//! DHT alone; a second run starting from its saved table; private torrents
//! (BEP 27) never asking the DHT; a node that survives malformed and
//! oversized datagrams, echoes transaction ids of any length and rate-limits
//! queries per address. Nothing here can reach the default routers: every
//! config names its bootstrap nodes on 127.0.0.1, or a saved table.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use bittorrent::dht::id::NodeId;
use bittorrent::dht::krpc::{self, Body, Message, Query, TransactionId};
use bittorrent::dht::node::{DhtConfig, DhtHandle, DhtNode, bootstrap_list};
use bittorrent::dht::ratelimit::BURST;
use bittorrent::session::Mode;

use crate::support::dht_node::RecorderNode;
use crate::support::magnet::{Made, single_file};
use crate::support::pex_peer::private_single_file;
use crate::support::{Running, config, content, download, download_to, seed_from, wait_until};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn dht(bootstrap: &[SocketAddr], state_dir: &Path) -> Option<DhtConfig> {
    Some(DhtConfig {
        bootstrap: bootstrap.iter().map(ToString::to_string).collect(),
        state_dir: Some(state_dir.to_path_buf()),
    })
}

/// A bare node of ours on 127.0.0.1 (no torrent), bootstrapped from `from`.
fn node(from: &[SocketAddr], state_dir: &Path) -> DhtNode {
    let config = dht(from, state_dir).unwrap();
    DhtNode::start(&config, Some(LOCALHOST), 0).unwrap()
}

fn status_of(handle: &DhtHandle) -> bittorrent::dht::node::Status {
    handle
        .status(Duration::from_secs(5))
        .expect("the node answers")
}

/// A seeder of `made` on 127.0.0.1 whose node joins through `hub`, once
/// its `announce_peer` has been answered.
fn seed_through_dht(made: &Made, hub: SocketAddr, dir: &Path) -> Running {
    let mut seed_config = config(&made.torrent, seed_from(&made.source), vec![]);
    seed_config.bind = Some(LOCALHOST);
    seed_config.dht = dht(&[hub], &dir.join("seeder"));
    let seeder = Running::start(&seed_config);
    let seeder_dht = seeder.dht.clone().expect("the seeder runs a node");
    wait_until("the seeder's announce_peer answered", || {
        status_of(&seeder_dht).counters.announced > 0
    });
    seeder
}

/// Downloads `input` (a .torrent or a magnet) into `dest` with a node that
/// joins through `hub`, and no other peer.
fn download_through_dht(input: &Path, dest: &Path, hub: SocketAddr, dir: &Path) {
    let mut get_config = config(input, download_to(dest), vec![]);
    get_config.bind = Some(LOCALHOST);
    get_config.dht = dht(&[hub], &dir.join("downloader"));
    download(&get_config);
}

#[test]
fn test_configs_never_fall_back_to_the_default_routers() {
    let dir = tempfile::tempdir().unwrap();
    // The in-process test config runs no DHT at all.
    let base = config(Path::new("x.torrent"), download_to(dir.path()), vec![]);
    assert_eq!(base.dht, None);
    // Bootstrap nodes given replace the defaults; saved nodes do too.
    let named = dht(&["127.0.0.1:6881".parse().unwrap()], dir.path()).unwrap();
    assert_eq!(bootstrap_list(&named, false), ["127.0.0.1:6881"]);
    let empty = DhtConfig {
        bootstrap: vec![],
        state_dir: None,
    };
    assert!(bootstrap_list(&empty, true).is_empty());
}

#[test]
fn a_magnet_with_no_tracker_completes_from_a_seeder_found_through_the_dht() {
    let dir = tempfile::tempdir().unwrap();
    let made = single_file(dir.path(), "dht.bin", content(300_000, 51), 16384, None);
    // The hub, two more bare nodes, the seeder and the downloader: five nodes.
    let hub = node(&[], &dir.path().join("hub"));
    let hub_addr = hub.handle().local_addr();
    let _others: Vec<DhtNode> = (0..2)
        .map(|n| node(&[hub_addr], &dir.path().join(format!("n{n}"))))
        .collect();
    let _seeder = seed_through_dht(&made, hub_addr, dir.path());

    let dest = dir.path().join("out");
    let magnet = made.magnet(&[], &[]);
    download_through_dht(Path::new(&magnet), &dest, hub_addr, dir.path());
    assert_eq!(std::fs::read(dest.join("dht.bin")).unwrap(), made.data);
}

/// With a DHT node that has someone to ask, a torrent whose only tracker
/// is down is no error: the download goes on, through the DHT. (With no
/// DHT, or one with nobody to ask, it still fails at once:
/// `errors::unreachable_tracker_without_peers_is_a_clear_error`.)
#[test]
fn a_torrent_whose_tracker_is_down_completes_through_the_dht() {
    let dir = tempfile::tempdir().unwrap();
    // Port 1 on loopback: nobody listens, so the announce is refused at once.
    let dead = "http://127.0.0.1:1/announce";
    let made = single_file(
        dir.path(),
        "down.bin",
        content(120_000, 53),
        16384,
        Some(dead),
    );
    let hub = node(&[], &dir.path().join("hub"));
    let hub_addr = hub.handle().local_addr();
    let _seeder = seed_through_dht(&made, hub_addr, dir.path());
    let dest = dir.path().join("out");
    download_through_dht(&made.torrent, &dest, hub_addr, dir.path());
    assert_eq!(std::fs::read(dest.join("down.bin")).unwrap(), made.data);
}

#[test]
fn a_second_run_starts_from_its_saved_table_without_bootstrap() {
    let dir = tempfile::tempdir().unwrap();
    let made = single_file(dir.path(), "again.bin", content(100_000, 52), 16384, None);
    let hub = node(&[], &dir.path().join("hub"));
    let hub_addr = hub.handle().local_addr();
    let _seeder = seed_through_dht(&made, hub_addr, dir.path());

    // A first run learns the hub and the seeder's node, and saves them when it stops.
    let state = dir.path().join("state");
    let first = node(&[hub_addr], &state);
    let first_id = status_of(first.handle()).id;
    wait_until("the first run knows two nodes", || {
        status_of(first.handle()).nodes >= 2
    });
    drop(first);
    let first_config = dht(&[], &state).unwrap();
    let file = bittorrent::dht::node::state_file(&first_config).unwrap();
    let saved = bittorrent::dht::state::load(&file)
        .unwrap()
        .expect("a state file");
    assert_eq!(saved.id, first_id, "the node id persists");
    assert!(
        saved.nodes.iter().any(|n| n.addr == hub_addr),
        "{:?}",
        saved.nodes
    );

    // The second run: no --dht-bootstrap, and the saved nodes replace the
    // default routers, so it contacts none of them.
    let no_bootstrap = DhtConfig {
        bootstrap: vec![],
        state_dir: Some(state.clone()),
    };
    assert!(bootstrap_list(&no_bootstrap, !saved.nodes.is_empty()).is_empty());
    let dest = dir.path().join("out");
    let magnet = made.magnet(&[], &[]);
    let mut get_config = config(Path::new(&magnet), download_to(&dest), vec![]);
    get_config.bind = Some(LOCALHOST);
    get_config.dht = Some(no_bootstrap);
    let running = Running::start(&get_config);
    assert_eq!(status_of(running.dht.as_ref().unwrap()).id, first_id);
    let outcome = running.wait().unwrap();
    assert_eq!(outcome, bittorrent::piece_manager::Outcome::Complete);
    assert_eq!(std::fs::read(dest.join("again.bin")).unwrap(), made.data);
}

#[test]
fn a_private_torrent_never_asks_nor_announces_to_the_dht() {
    let dir = tempfile::tempdir().unwrap();
    let public = single_file(dir.path(), "public.bin", content(40_000, 53), 16384, None);
    let private = private_single_file(dir.path(), "private.bin", content(40_000, 54), 16384);
    let recorder = RecorderNode::start();
    let mut seed_config = config(
        &public.torrent,
        Mode::Seed {
            path: dir.path().into(),
        },
        vec![],
    );
    seed_config
        .torrents
        .push(private.torrent.to_string_lossy().into_owned());
    seed_config.bind = Some(LOCALHOST);
    seed_config.dht = dht(&[recorder.addr], &dir.path().join("state"));
    let _seeder = Running::start(&seed_config);
    let announced = |hash: [u8; 20]| {
        recorder
            .seen()
            .iter()
            .any(|s| s.method == "announce_peer" && s.info_hash == Some(hash))
    };
    // The public torrent shows what the private one would have done.
    wait_until("the public torrent announced", || {
        announced(public.info_hash)
    });
    let about_private: Vec<_> = recorder
        .seen()
        .into_iter()
        .filter(|s| s.info_hash == Some(private.info_hash))
        .collect();
    assert!(about_private.is_empty(), "{about_private:?}");
}

fn query(socket: &UdpSocket, to: SocketAddr, tid: &[u8], method: Query) -> Message {
    let message = Message::query(TransactionId::new(tid).unwrap(), method);
    socket.send_to(&message.encode(), to).unwrap();
    receive(socket).expect("an answer")
}

fn receive(socket: &UdpSocket) -> Option<Message> {
    let mut buf = [0u8; 4096];
    let (len, _) = socket.recv_from(&mut buf).ok()?;
    Some(krpc::decode(&buf[..len]).expect("a KRPC answer"))
}

#[test]
fn malformed_datagrams_do_not_stop_the_node_and_queries_are_rate_limited() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(&[], dir.path());
    let to = node.handle().local_addr();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let id = NodeId([7; 20]);
    // Garbage, an oversized datagram, a truncated dictionary: no answer.
    for junk in [&b"\xff\x00garbage"[..], &[b'd'; 5000], b"d1:t2:aa1:y1:q"] {
        socket.send_to(junk, to).unwrap();
    }
    // A query of an unknown method: error 204, with our transaction id.
    socket
        .send_to(
            b"d1:ad2:id20:aaaaaaaaaaaaaaaaaaaae1:q4:blah1:t1:x1:y1:qe",
            to,
        )
        .unwrap();
    let reply = receive(&socket).expect("an error reply");
    assert_eq!(reply.tid.as_bytes(), b"x");
    match reply.body {
        Body::Error(e) => assert_eq!(e.code, krpc::ERROR_METHOD_UNKNOWN),
        other => panic!("expected an error, got {other:?}"),
    }
    // An announce with a token we never gave: error 203.
    let bad = query(
        &socket,
        to,
        b"ab",
        Query::AnnouncePeer {
            id,
            info_hash: NodeId([9; 20]),
            port: 6881,
            implied_port: false,
            token: b"forged".to_vec(),
        },
    );
    assert!(
        matches!(bad.body, Body::Error(ref e) if e.code == krpc::ERROR_PROTOCOL),
        "{bad:?}"
    );
    // Transaction ids of 1 to 8 bytes come back byte for byte.
    for len in 1..=8u8 {
        let tid: Vec<u8> = (0..len).map(|n| n ^ 0xa5).collect();
        let answer = query(&socket, to, &tid, Query::Ping { id });
        assert_eq!(answer.tid.as_bytes(), &tid[..]);
        assert_eq!(answer.version.as_deref(), Some(&krpc::OUR_VERSION[..]));
        assert!(matches!(answer.body, Body::Response(_)));
    }
    // A flood from one address: a burst is answered, the rest dropped.
    let flood = 3 * BURST as usize;
    let ping = Message::query(TransactionId::from_u16(1), Query::Ping { id }).encode();
    let started = Instant::now();
    for _ in 0..flood {
        socket.send_to(&ping, to).unwrap();
    }
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut answers = 0;
    while receive(&socket).is_some() {
        answers += 1;
    }
    let refill = (started.elapsed().as_secs_f64() * 10.0).ceil() as usize + 1;
    assert!(answers < flood, "{answers} of {flood} answered");
    assert!(answers <= BURST as usize + refill, "{answers} answered");
    let status = status_of(node.handle());
    assert!(status.counters.rate_limited > 0);
    assert!(status.counters.malformed >= 4, "{:?}", status.counters);
    // Another address is not limited, and the node still answers.
    let other = UdpSocket::bind("127.0.0.1:0").unwrap();
    other
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let answer = query(&other, to, b"zz", Query::Ping { id });
    assert!(matches!(answer.body, Body::Response(_)));
}

/// Regression: with `--bind ::1` the node (IPv4 only) listened on every
/// IPv4 address, which the user had not asked for; it is now off.
#[test]
fn a_session_bound_to_an_ipv6_address_runs_no_dht_node() {
    let dir = tempfile::tempdir().unwrap();
    let made = single_file(dir.path(), "v6.bin", content(20_000, 54), 16384, None);
    let mut seed_config = config(&made.torrent, seed_from(&made.source), vec![]);
    seed_config.bind = Some(IpAddr::V6(std::net::Ipv6Addr::LOCALHOST));
    seed_config.dht = dht(&["127.0.0.1:9".parse().unwrap()], &dir.path().join("s"));
    let seeder = Running::start(&seed_config);
    assert!(seeder.dht.is_none(), "a DHT node runs beside --bind ::1");
}
