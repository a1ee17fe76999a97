//! Hundreds of peers against the binary: a seeder holds 100 connections at
//! once and lets them all go, and a downloader given a hundred addresses
//! that never answer a connect keeps no more than the limit of connects in
//! flight, seen from the kernel's table of sockets.

use std::collections::HashSet;
use std::fs;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use bittorrent::client::pacing::MAX_HALF_OPEN;
use bittorrent::metainfo::InfoHash;
use bittorrent::peer::wire::{self, Handshake, Limits, Message};
use rustix::net::{AddressFamily, SocketType, bind, listen, socket};

use crate::support::bencode::{SingleFile, write_single_file};
use crate::support::magnet::{Seeder, arg};
use crate::support::net::{connect_from, handshake_bytes, held, peer_id, poll_until};
use crate::support::*;

/// 64 pieces of 16 KiB.
const CONTENT_LEN: usize = 1024 * 1024;
const PIECE_LEN: usize = 16 * 1024;

fn single_file(dir: &std::path::Path) -> SingleFile {
    write_single_file(dir, "many.bin", &content(CONTENT_LEN, 23), PIECE_LEN, None)
}

/// Reads messages until a bitfield comes, within `within`; returns how
/// many pieces it says the remote has.
fn read_bitfield(stream: &mut TcpStream, pieces: u32, within: Duration) -> io::Result<u32> {
    let deadline = Instant::now() + within;
    let limits = Limits::for_pieces(pieces);
    let mut buf = Vec::new();
    loop {
        let decoded = Message::decode(&buf, limits)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
        if let Some((message, used)) = decoded {
            if let Message::Bitfield(bits) = message {
                return Ok(bits.iter().map(|b| b.count_ones()).sum());
            }
            buf.drain(..used);
            continue;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        stream.set_read_timeout(Some(left))?;
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[test]
fn a_seeder_holds_100_connections_lets_them_go_and_still_serves() {
    let dir = tempfile::tempdir().unwrap();
    let made = single_file(dir.path());
    let extra = ["--max-peers", "200"];
    let seeder = Seeder::start_with(
        &[arg(&made.torrent)],
        &made.source,
        dir.path(),
        &extra,
        None,
    );
    let addr = seeder.addr([127, 0, 0, 1]);
    let info_hash = InfoHash(made.info_hash);
    let pid = seeder.pid();
    let pieces = (CONTENT_LEN / PIECE_LEN) as u32;
    let baseline = stable_threads(pid);

    // One IP each (a torrent takes only a few connections from one IP),
    // all at once: every connection and its handshake go out before any
    // answer is read, more than the listener reads handshakes at a time.
    let mut open = Vec::new();
    for n in 0..100u8 {
        let from = Ipv4Addr::new(127, 0, 5, 1 + n);
        let mut stream = connect_from(from, addr).unwrap();
        stream
            .write_all(&handshake_bytes(info_hash, peer_id(n)))
            .unwrap();
        open.push(stream);
    }
    for (n, stream) in open.iter_mut().enumerate() {
        let within = Duration::from_secs(20);
        let mut theirs = [0u8; wire::HANDSHAKE_LEN];
        stream.set_read_timeout(Some(within)).unwrap();
        let answer = stream.read_exact(&mut theirs);
        assert!(
            answer.is_ok(),
            "connection {n}: no handshake: {answer:?}; stderr:\n{}",
            tail(&seeder.stderr())
        );
        assert_eq!(Handshake::decode(&theirs).unwrap().info_hash, info_hash);
        let had = read_bitfield(stream, pieces, within)
            .unwrap_or_else(|e| panic!("connection {n}: no bitfield: {e}"));
        assert_eq!(had, pieces, "connection {n}: the seeder has every piece");
    }
    // All 100 at once: a peer thread each.
    let mut during = held(pid).expect("the seeder is running").threads;
    assert!(
        poll_until(Duration::from_secs(10), || {
            during = held(pid).map_or(0, |h| h.threads);
            during >= baseline + 100
        }),
        "{during} threads with 100 connections, {baseline} before"
    );
    let peers_line = "seeding: 100 peers";
    assert!(
        poll_until(Duration::from_secs(10), || seeder
            .stderr()
            .contains(peers_line)),
        "the seeder never counted 100 peers; stderr:\n{}",
        tail(&seeder.stderr())
    );

    drop(open);
    let mut after = during;
    assert!(
        poll_until(Duration::from_secs(20), || {
            after = held(pid).map_or(usize::MAX, |h| h.threads);
            after <= baseline
        }),
        "{after} threads 20 s after the 100 closed, {baseline} before"
    );
    eprintln!("threads: {baseline} before, {during} with 100 connections, {after} after");

    // Still serving, to completion.
    let dest = dir.path().join("out");
    download(&config(&made.torrent, download_to(&dest), vec![addr]));
    assert!(fs::read(dest.join("many.bin")).unwrap() == fs::read(&made.source).unwrap());
}

/// The seeder's thread count once it has settled after its start: the
/// same in five reads 100 ms apart (within 10 s; else the last read).
fn stable_threads(pid: u32) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = held(pid).expect("the seeder is running").threads;
    let mut same = 0;
    while same < 5 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        let now = held(pid).expect("the seeder is running").threads;
        same = if now == last { same + 1 } else { 0 };
        last = now;
    }
    last
}

/// A listener on 127.0.0.1 whose accept queue is full, so the kernel drops
/// every further SYN to it: a connect there stays in SYN-SENT until it
/// times out. Holds the listener and the one connection that fills it.
struct Blackhole {
    port: u16,
    _listener: OwnedFd,
    _filler: TcpStream,
}

impl Blackhole {
    fn start() -> Blackhole {
        let listener = socket(AddressFamily::INET, SocketType::STREAM, None).unwrap();
        bind(&listener, &SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
        // A backlog of 0 queues one connection, never accepted.
        listen(&listener, 0).unwrap();
        let local = rustix::net::getsockname(&listener).unwrap();
        let local = SocketAddr::try_from(local).unwrap();
        let filler = TcpStream::connect_timeout(&local, Duration::from_secs(5)).unwrap();
        Blackhole {
            port: local.port(),
            _listener: listener,
            _filler: filler,
        }
    }
}

/// The IPv4 sockets in SYN-SENT towards 127.0.0.1, by their local and
/// remote ports, from the kernel's table.
fn syn_sent() -> HashSet<(u16, u16)> {
    let table = fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // State 02 is SYN_SENT; 0100007F is 127.0.0.1 as the kernel prints it.
            let (ip, port) = fields.get(2)?.split_once(':')?;
            let (_, local) = fields.get(1)?.split_once(':')?;
            let local = u16::from_str_radix(local, 16).ok()?;
            let port = u16::from_str_radix(port, 16).ok()?;
            (fields.get(3)? == &"02" && ip == "0100007F").then_some((local, port))
        })
        .collect()
}

#[test]
fn connects_in_flight_never_exceed_the_limit_with_100_silent_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let made = single_file(dir.path());
    // A hundred, far over the limit of 16: each holds two descriptors in
    // this process, which other tests share.
    let holes: Vec<Blackhole> = (0..100).map(|_| Blackhole::start()).collect();
    let ports: HashSet<u16> = holes.iter().map(|h| h.port).collect();
    let dest = dir.path().join("out");
    let mut args = vec![
        arg(&made.torrent).to_string(),
        "-d".into(),
        arg(&dest).to_string(),
        "--port".into(),
        "0".into(),
        "--no-progress".into(),
        "--no-dht".into(),
        "--max-peers".into(),
        "200".into(),
    ];
    for port in &ports {
        args.extend(["--peer".into(), format!("127.0.0.1:{port}")]);
    }
    let mut child = Binary::spawn(&args, dir.path());
    let ours = || -> HashSet<(u16, u16)> {
        let all = syn_sent();
        all.into_iter().filter(|(_, p)| ports.contains(p)).collect()
    };
    assert!(
        poll_until(Duration::from_secs(20), || !ours().is_empty()),
        "no connect seen in flight; stderr:\n{}",
        tail(&child.stderr())
    );
    // A measurement window past the connect timeout (5 s), so the first
    // connects give up and later ones start. Reading the table is not
    // atomic: a socket closed and a new one opened meanwhile may both be
    // in one read. A socket in two reads in a row was there at the moment
    // between them, so those are in flight at once.
    let (mut most, mut tried, mut last) = (0, HashSet::new(), HashSet::new());
    let window = Instant::now() + Duration::from_secs(8);
    while Instant::now() < window {
        let now = ours();
        most = most.max(now.intersection(&last).count());
        tried.extend(now.iter().map(|&(_, port)| port));
        last = now;
        assert!(
            !child.has_exited(),
            "exited; stderr:\n{}",
            tail(&child.stderr())
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!(
        "at most {most} connects in flight; {} addresses tried",
        tried.len()
    );
    assert!(
        most <= MAX_HALF_OPEN,
        "{most} connects in flight at once, over the limit of {MAX_HALF_OPEN}"
    );
    assert!(
        tried.len() > MAX_HALF_OPEN,
        "only {} addresses tried in 8 s: dialling stalled",
        tried.len()
    );
    assert!(
        tried.len() < ports.len(),
        "all {} tried within 8 s: no pacing",
        tried.len()
    );
    child.interrupt();
    let _ = child.wait();
}

/// The end of a long stderr, for failure messages.
fn tail(text: &str) -> &str {
    &text[text.len().saturating_sub(4000)..]
}
