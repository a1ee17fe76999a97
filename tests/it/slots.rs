//! Connection slots under attack: connections that never send a byte,
//! drippers that send one byte at a time, and idle peers with full
//! handshakes must not keep an honest peer from being served or dialled.
//! Attackers come from their own loopback addresses (127.0.0.5, 127.0.0.6,
//! 127.0.1.x); the honest sessions use 127.0.0.1. Also `--bind`.

use std::fs;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use bittorrent::metainfo::InfoHash;
use bittorrent::piece_manager::Outcome;

use crate::support::bencode::{SingleFile, write_single_file};
use crate::support::hostile::init_logging;
use crate::support::net::{
    connect_from, exchange_handshakes, free_port, free_port_outside_ephemeral, peer_id, poll_until,
};
use crate::support::*;

/// An honest download must complete within this despite the attack.
const SERVED_WITHIN: Duration = Duration::from_secs(30);

fn single_file(dir: &Path) -> SingleFile {
    write_single_file(dir, "slots.bin", &content(512 * 1024, 31), 32 * 1024, None)
}

/// A thread keeping `count` connections from `from` to `target` open,
/// each playing `play` every 100 ms (`Err`: the connection is over) and
/// replaced by a new one when it ends. Stopped and joined on drop.
struct Attack {
    stop: Arc<AtomicBool>,
    opened: Arc<AtomicUsize>,
    /// How long each connection that ended had been open.
    lifetimes: Arc<Mutex<Vec<Duration>>>,
    /// When each connection open now was opened.
    open_since: Arc<Mutex<Vec<Instant>>>,
    thread: Option<JoinHandle<()>>,
}

/// One round of a connection's script: its stream, when it was opened, and
/// a counter it keeps.
type Play = fn(&mut TcpStream, Instant, &mut usize) -> io::Result<()>;

impl Attack {
    fn start(from: Ipv4Addr, target: SocketAddr, count: usize, play: Play) -> Attack {
        let stop = Arc::new(AtomicBool::new(false));
        let opened = Arc::new(AtomicUsize::new(0));
        let lifetimes = Arc::new(Mutex::new(Vec::new()));
        let open_since = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (stop, opened) = (Arc::clone(&stop), Arc::clone(&opened));
            let (lifetimes, open_since) = (Arc::clone(&lifetimes), Arc::clone(&open_since));
            thread::spawn(move || {
                let deadline = Instant::now() + TIMEOUT;
                let open = || {
                    let stream = connect_from(from, target).ok()?;
                    stream.set_nonblocking(true).ok()?;
                    opened.fetch_add(1, Ordering::Relaxed);
                    Some((stream, Instant::now(), 0))
                };
                let mut conns: Vec<Option<(TcpStream, Instant, usize)>> =
                    (0..count).map(|_| None).collect();
                while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                    for slot in &mut conns {
                        if let Some((stream, since, state)) = slot
                            && play(stream, *since, state).is_err()
                        {
                            lifetimes.lock().unwrap().push(since.elapsed());
                            *slot = None;
                        }
                        if slot.is_none() {
                            *slot = open();
                        }
                    }
                    *open_since.lock().unwrap() = conns.iter().flatten().map(|c| c.1).collect();
                    thread::sleep(Duration::from_millis(100));
                }
            })
        };
        Attack {
            stop,
            opened,
            lifetimes,
            open_since,
            thread: Some(thread),
        }
    }
}

impl Drop for Attack {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Whether the remote closed `stream` (which never blocks).
fn closed(stream: &mut TcpStream) -> bool {
    match stream.read(&mut [0u8; 4096]) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != io::ErrorKind::WouldBlock,
    }
}

/// Never sends a byte.
fn silent(stream: &mut TcpStream, _: Instant, _: &mut usize) -> io::Result<()> {
    if closed(stream) {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}

/// Sends one byte of a handshake at once, then one every 2 s (never all 68).
fn dripping(stream: &mut TcpStream, since: Instant, sent: &mut usize) -> io::Result<()> {
    if closed(stream) {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    let due = (since.elapsed().as_secs() as usize / 2 + 1).min(60);
    while *sent < due {
        stream.write_all(&[19])?;
        *sent += 1;
    }
    Ok(())
}

/// Downloads from `seeder` (dialled at `peer`), asserting it completes
/// within [`SERVED_WITHIN`] with the right bytes.
fn assert_served(made: &SingleFile, dir: &Path, peer: SocketAddr) {
    let started = Instant::now();
    let dest = dir.join("out");
    download(&config(&made.torrent, download_to(&dest), vec![peer]));
    let took = started.elapsed();
    eprintln!("the honest download took {took:?}");
    assert!(took < SERVED_WITHIN, "the honest download took {took:?}");
    let got = fs::read(dest.join("slots.bin")).unwrap();
    assert!(
        got == fs::read(&made.source).unwrap(),
        "the download differs"
    );
}

/// Regression: 500 connections that never sent a byte, reconnecting as
/// soon as they were closed, kept a seeder unreachable.
#[test]
fn connections_that_never_send_a_byte_do_not_keep_a_seeder_from_serving() {
    init_logging();
    let dir = tempfile::tempdir().unwrap();
    let made = single_file(dir.path());
    let seeder = Running::start(&config(&made.torrent, seed_from(&made.source), vec![]));
    let attack = Attack::start(Ipv4Addr::new(127, 0, 0, 5), seeder.addr, 500, silent);
    wait_until("500 silent connections", || {
        attack.opened.load(Ordering::Relaxed) >= 500
    });
    assert_served(&made, dir.path(), seeder.addr);
    drop(attack);
}

/// Regression: the handshake timeout bounded each read, so a byte every
/// few seconds held a slot for as long as the remote liked.
#[test]
fn drippers_sending_a_byte_every_2_s_do_not_hold_a_seeders_slots() {
    init_logging();
    let dir = tempfile::tempdir().unwrap();
    let made = single_file(dir.path());
    let seeder = Running::start(&config(&made.torrent, seed_from(&made.source), vec![]));
    let attack = Attack::start(Ipv4Addr::new(127, 0, 0, 6), seeder.addr, 40, dripping);
    wait_until("40 drippers", || {
        attack.opened.load(Ordering::Relaxed) >= 40
    });
    assert_served(&made, dir.path(), seeder.addr);
    // The drippers that got a handshake slot lose it at the handshake's
    // deadline (10 s), however many bytes they drip.
    let held_long = || {
        attack
            .lifetimes
            .lock()
            .unwrap()
            .iter()
            .any(|&t| t >= Duration::from_secs(5))
    };
    assert!(
        poll_until(Duration::from_secs(20), held_long),
        "no dripper was closed at the handshake's deadline"
    );
    let oldest = attack
        .open_since
        .lock()
        .unwrap()
        .iter()
        .map(|t| t.elapsed())
        .max()
        .unwrap_or_default();
    assert!(
        oldest < Duration::from_secs(14),
        "a dripper held on for {oldest:?}"
    );
    drop(attack);
}

/// Regression: 60 idle incoming connections filled a downloader's slots,
/// so it never dialled the seeder it knew.
#[test]
fn idle_incoming_connections_do_not_keep_a_downloader_from_dialling() {
    init_logging();
    let dir = tempfile::tempdir().unwrap();
    let made = single_file(dir.path());
    let info_hash = InfoHash(made.info_hash);
    // The seeder's port, with nothing on it yet: the first dial fails, and
    // the next comes about 5 s later, once the idle peers are in.
    let port = free_port_outside_ephemeral();
    let seeder_addr = SocketAddr::from(([127, 0, 0, 1], port));
    let dest = dir.path().join("out");
    let started = Instant::now();
    let downloader = Running::start(&config(
        &made.torrent,
        download_to(&dest),
        vec![seeder_addr],
    ));
    let mut idle = Vec::new();
    for n in 0..60u8 {
        let from = Ipv4Addr::new(127, 0, 1, 10 + n % 8);
        let mut stream = connect_from(from, downloader.addr).unwrap();
        let answer =
            exchange_handshakes(&mut stream, info_hash, peer_id(n), Duration::from_secs(5));
        if let Ok(Some(_)) = answer {
            idle.push(stream);
        }
    }
    wait_until("the idle peers connected", || {
        downloader.stats.peers.load(Ordering::Relaxed) as usize >= idle.len()
    });
    eprintln!("{} idle peers accepted", idle.len());
    let mut seeding = config(&made.torrent, seed_from(&made.source), vec![]);
    seeding.port = port;
    let seeder = Running::start(&seeding);
    assert_eq!(seeder.addr.port(), port, "the seeder took another port");
    assert_eq!(downloader.wait().unwrap(), Outcome::Complete);
    let took = started.elapsed();
    assert!(took < SERVED_WITHIN, "the download took {took:?}");
    let got = fs::read(dest.join("slots.bin")).unwrap();
    assert!(
        got == fs::read(&made.source).unwrap(),
        "the download differs"
    );
    drop(idle);
}

/// A seeder whose slots are all taken by idle peers closes the oldest of
/// them (idle for `EVICT_IDLE_AFTER`) when a newcomer is refused, so the
/// newcomer's next try gets in.
#[test]
fn a_full_seeder_makes_room_for_a_downloader_by_closing_an_idle_peer() {
    init_logging();
    let dir = tempfile::tempdir().unwrap();
    let made = single_file(dir.path());
    let info_hash = InfoHash(made.info_hash);
    let mut seeding = config(&made.torrent, seed_from(&made.source), vec![]);
    seeding.max_peers = 10;
    let seeder = Running::start(&seeding);
    let mut idle = Vec::new();
    for n in 0..10u8 {
        let from = Ipv4Addr::new(127, 0, 1, 20 + n % 2);
        let mut stream = connect_from(from, seeder.addr).unwrap();
        let answer =
            exchange_handshakes(&mut stream, info_hash, peer_id(n), Duration::from_secs(5));
        if let Ok(Some(_)) = answer {
            idle.push(stream);
        }
    }
    wait_until("the idle peers connected", || {
        seeder.stats.peers.load(Ordering::Relaxed) as usize >= idle.len()
    });
    let full = Instant::now();
    eprintln!("{} idle peers accepted", idle.len());
    let aged = bittorrent::peer_table::EVICT_IDLE_AFTER + Duration::from_millis(200);
    poll_until(aged, || full.elapsed() >= aged);
    assert_served(&made, dir.path(), seeder.addr);
    drop(idle);
}

/// A peer we dial that answers with one byte of its handshake every
/// second, on 127.0.0.7: how long its first connection lasted, once the
/// session under test closed it. Stopped and joined on drop.
struct DrippingListener {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    lifetime: Arc<Mutex<Option<Duration>>>,
    thread: Option<JoinHandle<()>>,
}

impl DrippingListener {
    fn start(info_hash: InfoHash) -> DrippingListener {
        let listener = std::net::TcpListener::bind(("127.0.0.7", 0)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let lifetime = Arc::new(Mutex::new(None));
        let thread = {
            let (stop, lifetime) = (Arc::clone(&stop), Arc::clone(&lifetime));
            thread::spawn(move || {
                let deadline = Instant::now() + TIMEOUT;
                let mut stream = loop {
                    if stop.load(Ordering::SeqCst) || Instant::now() > deadline {
                        return;
                    }
                    match listener.accept() {
                        Ok((stream, _)) => break stream,
                        Err(_) => thread::sleep(Duration::from_millis(20)),
                    }
                };
                stream.set_nonblocking(true).unwrap();
                let opened = Instant::now();
                let ours = crate::support::net::handshake_bytes(info_hash, peer_id(7));
                let mut sent = 0;
                while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                    let due = (opened.elapsed().as_secs() as usize + 1).min(ours.len() - 1);
                    let wrote = (sent..due).try_for_each(|i| stream.write_all(&ours[i..=i]));
                    sent = due;
                    if wrote.is_err() || closed(&mut stream) {
                        *lifetime.lock().unwrap() = Some(opened.elapsed());
                        return;
                    }
                    thread::sleep(Duration::from_millis(50));
                }
            })
        };
        DrippingListener {
            addr,
            stop,
            lifetime,
            thread: Some(thread),
        }
    }
}

impl Drop for DrippingListener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Regression: our dials bounded each read of the remote's handshake, not
/// the handshake, so a remote dripping it held the connection indefinitely.
#[test]
fn a_dialled_peer_dripping_its_handshake_is_dropped_at_the_deadline() {
    init_logging();
    let dir = tempfile::tempdir().unwrap();
    let made = single_file(dir.path());
    let dripper = DrippingListener::start(InfoHash(made.info_hash));
    let dest = dir.path().join("out");
    let _downloader = Running::start(&config(
        &made.torrent,
        download_to(&dest),
        vec![dripper.addr],
    ));
    let mut lifetime = None;
    let ended = poll_until(Duration::from_secs(30), || {
        lifetime = *dripper.lifetime.lock().unwrap();
        lifetime.is_some()
    });
    assert!(ended, "the dripping connection was still open after 30 s");
    let lifetime = lifetime.unwrap();
    eprintln!("the dripping connection lasted {lifetime:?}");
    assert!(lifetime < Duration::from_secs(13), "it lasted {lifetime:?}");
}

#[test]
fn bind_listens_on_the_given_address_only() {
    let dir = tempfile::tempdir().unwrap();
    let made = single_file(dir.path());
    let mut seeding = config(&made.torrent, seed_from(&made.source), vec![]);
    seeding.bind = Some(Ipv4Addr::LOCALHOST.into());
    let seeder = Running::start(&seeding);
    let port = seeder.addr.port();
    let elsewhere = SocketAddr::from(([127, 0, 0, 2], port));
    let refused = TcpStream::connect(elsewhere).map(|_| ());
    assert!(
        matches!(&refused, Err(e) if e.kind() == io::ErrorKind::ConnectionRefused),
        "{elsewhere}: {refused:?}"
    );
    let mut stream = TcpStream::connect(seeder.addr).unwrap();
    let answer = exchange_handshakes(&mut stream, InfoHash(made.info_hash), peer_id(1), TIMEOUT);
    assert!(matches!(answer, Ok(Some(_))), "{answer:?}");
}

/// Drippers from eight IPs, four each, fill every pending-handshake place
/// (32), reconnecting as soon as one is closed: a newcomer still gets in,
/// since a handshake pending for over a second gives its place up.
#[test]
fn drippers_from_many_ips_filling_every_pending_handshake_do_not_lock_a_seeder() {
    init_logging();
    let dir = tempfile::tempdir().unwrap();
    let made = single_file(dir.path());
    let seeder = Running::start(&config(&made.torrent, seed_from(&made.source), vec![]));
    let attacks: Vec<Attack> = (0..8)
        .map(|n| Attack::start(Ipv4Addr::new(127, 0, 0, 20 + n), seeder.addr, 4, dripping))
        .collect();
    wait_until("32 drippers", || {
        attacks
            .iter()
            .map(|a| a.opened.load(Ordering::Relaxed))
            .sum::<usize>()
            >= 32
    });
    // Every place taken, and held past what an honest handshake needs.
    wait_until("32 drippers held for 1.5 s", || {
        let held: Vec<Instant> = attacks
            .iter()
            .flat_map(|a| a.open_since.lock().unwrap().clone())
            .collect();
        held.len() >= 32
            && held
                .iter()
                .all(|t| t.elapsed() > Duration::from_millis(1500))
    });
    assert_served(&made, dir.path(), seeder.addr);
    drop(attacks);
}

/// With `--bind`, our connections go out from that address too: a peer on
/// the same machine (and a tracker, below) sees the address we listen on,
/// not 127.0.0.1, so peers bound to distinct loopback addresses are told
/// apart by the per-IP caps.
#[test]
fn bind_makes_outgoing_connections_from_the_given_address() {
    let dir = tempfile::tempdir().unwrap();
    let made = single_file(dir.path());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let mut downloading = config(
        &made.torrent,
        download_to(&dir.path().join("out")),
        vec![listener.local_addr().unwrap()],
    );
    let ours = Ipv4Addr::new(127, 0, 0, 5);
    downloading.bind = Some(ours.into());
    let _downloader = Running::start(&downloading);
    let mut from = None;
    poll_until(TIMEOUT, || {
        from = listener.accept().ok().map(|(_, addr)| addr);
        from.is_some()
    });
    assert_eq!(from.map(|a| a.ip()), Some(ours.into()), "dialled from");
}

/// A UDP tracker's announces go out from the `--bind` address.
#[test]
fn bind_makes_udp_announces_from_the_given_address() {
    let dir = tempfile::tempdir().unwrap();
    let tracker = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    tracker.set_read_timeout(Some(TIMEOUT)).unwrap();
    let url = format!("udp://{}/announce", tracker.local_addr().unwrap());
    let made = write_single_file(
        dir.path(),
        "udp.bin",
        &content(64 * 1024, 5),
        32 * 1024,
        Some(&url),
    );
    // A peer that is not there, so that the start does not wait for the
    // tracker.
    let nobody = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut downloading = config(
        &made.torrent,
        download_to(&dir.path().join("out")),
        vec![nobody],
    );
    let ours = Ipv4Addr::new(127, 0, 0, 6);
    downloading.bind = Some(ours.into());
    let _downloader = Running::start(&downloading);
    let mut buf = [0u8; 64];
    let (_, from) = tracker.recv_from(&mut buf).expect("a connect request");
    assert_eq!(from.ip(), std::net::IpAddr::from(ours), "announced from");
}
