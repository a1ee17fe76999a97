//! Scripted hostile peers over loopback, for the tests in `hostile.rs`.
//!
//! Two directions:
//! - [`HostilePeer`] listens on loopback (127.0.0.1 unless told) and is
//!   dialled by a downloader under test (given as a `--peer`). It answers
//!   the handshake properly (same info-hash), claims every piece, usually
//!   unchokes, and then misbehaves as its [`Behaviour`] says: one function
//!   per misbehaviour.
//! - [`RequestFlood`] dials a seeder under test and floods it with requests
//!   ([`Flood`]).
//!
//! What each connection saw is kept in a [`Report`], so a test can check that
//! the misbehaviour really happened and when the session under test dropped it.
//!
//! Nothing here can hang: socket reads time out every [`POLL`] to look at a
//! stop flag, writes time out after [`WRITE_TIMEOUT`], every connection ends
//! after [`super::TIMEOUT`] at the latest, and each guard's `Drop` raises the
//! stop flag and joins its threads.
//!
//! Out of scope: the client's own code beyond the wire codec
//! ([`bittorrent::peer::wire`]), which encodes and decodes the messages.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use bittorrent::metainfo::InfoHash;
use bittorrent::peer::wire::{self, Handshake, Limits, Message, PeerId, WireError};

use super::TIMEOUT;

/// How often a scripted connection wakes up to look at its stop flag.
const POLL: Duration = Duration::from_millis(50);
/// Longest a single write may block (the remote may not be reading).
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a [`RequestFlood`] waits to be unchoked before flooding anyway.
const UNCHOKE_WAIT: Duration = Duration::from_secs(5);
/// BEP 3 block size: requests are for at most this many bytes.
const BLOCK_LEN: u32 = 16 * 1024;

/// Starts logging for a test (once per process), filtered by `RUST_LOG`,
/// e.g. `RUST_LOG=bittorrent=debug,hostile=debug`; the test harness shows
/// the lines of failing tests only.
pub fn init_logging() {
    let _ = env_logger::builder().is_test(true).try_init();
}

/// Polls `condition` every 20 ms until it holds; fails the test naming
/// `what` if it does not within `within`. Returns how long it took.
pub fn wait_for(what: &str, within: Duration, mut condition: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !condition() {
        assert!(
            started.elapsed() < within,
            "timed out after {within:?} waiting for {what}"
        );
        thread::sleep(Duration::from_millis(20));
    }
    started.elapsed()
}

/// What a scripted peer knows of the torrent: its identity and its content.
#[derive(Clone)]
pub struct Torrent {
    /// The info-hash both sides must agree on.
    pub info_hash: InfoHash,
    /// Bytes per piece (the last piece may be shorter).
    pub piece_len: u32,
    /// The whole content, to serve correct blocks from.
    pub data: Arc<Vec<u8>>,
}

impl Torrent {
    /// Number of pieces.
    pub fn piece_count(&self) -> u32 {
        self.data.len().div_ceil(self.piece_len as usize) as u32
    }

    /// Length of piece `index`.
    pub fn piece_size(&self, index: u32) -> u32 {
        let start = index as usize * self.piece_len as usize;
        (self.data.len() - start).min(self.piece_len as usize) as u32
    }

    /// Every `(index, begin, length)` block of the torrent, in order.
    pub fn blocks(&self) -> Vec<(u32, u32, u32)> {
        (0..self.piece_count())
            .flat_map(|index| {
                let size = self.piece_size(index);
                (0..size.div_ceil(BLOCK_LEN)).map(move |block| {
                    let begin = block * BLOCK_LEN;
                    (index, begin, (size - begin).min(BLOCK_LEN))
                })
            })
            .collect()
    }

    /// The bytes a request asks for, or `None` when it is out of range or
    /// longer than a block.
    fn block(&self, index: u32, begin: u32, length: u32) -> Option<&[u8]> {
        if index >= self.piece_count()
            || length == 0
            || length > BLOCK_LEN
            || u64::from(begin) + u64::from(length) > u64::from(self.piece_size(index))
        {
            return None;
        }
        let start = index as usize * self.piece_len as usize + begin as usize;
        Some(&self.data[start..start + length as usize])
    }

    /// A bitfield with every piece set and the spare trailing bits clear.
    pub fn full_bitfield(&self) -> Vec<u8> {
        let count = self.piece_count() as usize;
        let mut bits = vec![0xff; count.div_ceil(8)];
        let spare = bits.len() * 8 - count;
        if spare > 0 {
            *bits.last_mut().expect("at least one piece") = 0xff << spare;
        }
        bits
    }

    fn limits(&self) -> Limits {
        Limits::for_pieces(self.piece_count())
    }
}

/// How a [`HostilePeer`] misbehaves on every connection it accepts. Unless
/// said otherwise it first answers the handshake, sends a full bitfield and
/// unchokes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Answers every request at once with a block of the right length and
    /// the wrong bytes, so each piece it delivers fails its hash check.
    CorruptBlocks,
    /// Sends a 2 GiB length prefix (0x80000000) right after its unchoke.
    HugeLengthPrefix,
    /// Sends a bitfield with its spare trailing bits set (claiming pieces
    /// past the end). Needs a piece count that is not a multiple of 8.
    BitfieldWithSpareBits,
    /// Sends a bitfield one byte longer than the torrent's.
    BitfieldTooLong,
    /// Answers the first `blocks` requests correctly, then never sends
    /// anything again while keeping the socket open and reading.
    GoesSilentAfter {
        /// Requests answered before the silence.
        blocks: usize,
    },
    /// Answers the first `blocks` requests correctly, then closes the
    /// connection: a seeder whose client dies mid-transfer.
    DisconnectsAfter {
        /// Requests answered before closing.
        blocks: usize,
    },
    /// Unchokes, then chokes again after `period`, then unchokes after
    /// `period`, and so on; while unchoked it answers at most `blocks`
    /// requests (correctly) and drops the rest, as a choke allows.
    FlapsChoke {
        /// Time between a choke and the next unchoke, and back.
        period: Duration,
        /// Requests answered per unchoke.
        blocks: usize,
    },
    /// Reads a few bytes of the remote's handshake, then closes.
    ClosesAfterAFewBytes,
    /// Reads the remote's handshake, sends the first half of its own, then closes.
    SendsHalfAHandshake,
    /// Sends a full bitfield but never unchokes, and sends `piece` messages
    /// (with correct data) that nobody requested: every block of the torrent.
    SendsUnrequestedBlocks,
    /// Unchokes for 200 ms, answers only the first block of each requested
    /// piece (with wrong bytes), chokes for 200 ms, and again: its corrupt
    /// blocks are kept as partial pieces that another peer finishes.
    CorruptsFirstBlocksThenChokes,
}

/// What a scripted peer saw and did, over all its connections.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// TCP connections accepted or made.
    pub connections: usize,
    /// Handshakes received with the right info-hash.
    pub handshakes: usize,
    /// `request` messages received.
    pub requests_received: usize,
    /// Whether the remote unchoked it (a [`RequestFlood`] waits for this).
    pub unchoked: bool,
    /// `cancel` messages received.
    pub cancels_received: usize,
    /// How long after the misbehaviour began the first `cancel` arrived.
    pub first_cancel_after: Option<Duration>,
    /// `request` messages sent (by a [`RequestFlood`]).
    pub requests_sent: usize,
    /// `piece` messages sent, correct or not.
    pub blocks_sent: usize,
    /// `choke` messages sent.
    pub chokes_sent: usize,
    /// For each connection the remote closed: how long after the
    /// misbehaviour began (or after the connection began, if it had not).
    pub dropped_after: Vec<Duration>,
    /// How each connection ended, for failure messages.
    pub endings: Vec<String>,
}

/// A stop flag and the thread that watches it; raising the flag and joining
/// happen on drop.
struct Worker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Worker {
    fn spawn(name: String, body: impl FnOnce(Arc<AtomicBool>) + Send + 'static) -> Worker {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = Arc::clone(&stop);
            thread::Builder::new()
                .name(name)
                .spawn(move || body(stop))
                .expect("spawning a scripted peer thread")
        };
        Worker {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let joined = thread.join();
            if joined.is_err() && !thread::panicking() {
                panic!("a scripted peer thread panicked");
            }
        }
    }
}

/// A misbehaving remote peer that the session under test dials: a listener
/// on loopback whose every connection plays one [`Behaviour`]. Dropping it
/// stops and joins its threads.
pub struct HostilePeer {
    addr: SocketAddr,
    report: Arc<Mutex<Report>>,
    _worker: Worker,
}

impl HostilePeer {
    /// Listens on a free port of a loopback address of its own (127.2.x.y);
    /// each accepted connection (on its own thread) plays `behaviour` for
    /// `torrent`.
    pub fn start(torrent: &Torrent, behaviour: Behaviour) -> HostilePeer {
        // Its own loopback address: bans are by IP, and the good seeder
        // comes from 127.0.0.1.
        HostilePeer::start_on(own_loopback_ip(2).octets(), torrent, behaviour)
    }

    /// As [`HostilePeer::start`], on loopback address `ip` (127.0.0.2, ...),
    /// so that each scripted peer has an address of its own.
    pub fn start_on(ip: [u8; 4], torrent: &Torrent, behaviour: Behaviour) -> HostilePeer {
        let listener = TcpListener::bind((std::net::Ipv4Addr::from(ip), 0))
            .unwrap_or_else(|e| panic!("binding {ip:?}:0: {e}"));
        let addr = listener.local_addr().expect("listener address");
        // Polled, so the stop flag is seen without waking a blocked accept().
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let report = Arc::new(Mutex::new(Report::default()));
        let worker = {
            let torrent = torrent.clone();
            let report = Arc::clone(&report);
            Worker::spawn(format!("hostile {addr}"), move |stop| {
                accept_loop(&listener, &torrent, behaviour, &report, &stop);
            })
        };
        log::debug!(target: "hostile", "{addr}: listening, will play {behaviour:?}");
        HostilePeer {
            addr,
            report,
            _worker: worker,
        }
    }

    /// The address to dial.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What it saw so far.
    pub fn report(&self) -> Report {
        lock(&self.report).clone()
    }
}

/// A loopback address 127.0.SUBNET.N that no other scripted peer of this
/// process has had.
fn own_loopback_ip(subnet: u8) -> std::net::Ipv4Addr {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    std::net::Ipv4Addr::new(127, subnet, (n / 250) as u8, (1 + n % 250) as u8)
}

fn lock(report: &Mutex<Report>) -> std::sync::MutexGuard<'_, Report> {
    report
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn accept_loop(
    listener: &TcpListener,
    torrent: &Torrent,
    behaviour: Behaviour,
    report: &Arc<Mutex<Report>>,
    stop: &Arc<AtomicBool>,
) {
    let deadline = Instant::now() + TIMEOUT;
    let peer_id = hostile_peer_id(listener.local_addr().map_or(0, |a| a.port()));
    let mut connections: Vec<JoinHandle<()>> = Vec::new();
    while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
        match listener.accept() {
            Ok((stream, remote)) => {
                lock(report).connections += 1;
                let mut conn = Conn::new(stream, peer_id, torrent, report, stop, deadline);
                let name = format!("hostile {remote}");
                let thread = thread::Builder::new().name(name).spawn(move || {
                    let end = play(&mut conn, behaviour);
                    conn.finish(remote, end);
                });
                match thread {
                    Ok(thread) => connections.push(thread),
                    Err(e) => log::warn!(target: "hostile", "{remote}: no thread: {e}"),
                }
            }
            Err(e) => {
                if e.kind() != io::ErrorKind::WouldBlock {
                    log::warn!(target: "hostile", "accept failed: {e}");
                }
                thread::sleep(Duration::from_millis(10));
            }
        }
    }
    // Each connection sees the same stop flag and deadline, so these end soon.
    let panicked = connections
        .into_iter()
        .map(JoinHandle::join)
        .filter(Result::is_err)
        .count();
    assert_eq!(panicked, 0, "{panicked} scripted connections panicked");
}

/// Runs `behaviour` on one accepted connection until it ends.
fn play(conn: &mut Conn, behaviour: Behaviour) -> End {
    let result = match behaviour {
        Behaviour::CorruptBlocks => corrupt_blocks(conn),
        Behaviour::HugeLengthPrefix => huge_length_prefix(conn),
        Behaviour::BitfieldWithSpareBits | Behaviour::BitfieldTooLong => {
            invalid_bitfield(conn, behaviour == Behaviour::BitfieldTooLong)
        }
        Behaviour::GoesSilentAfter { blocks } => goes_silent_after(conn, blocks),
        Behaviour::DisconnectsAfter { blocks } => disconnects_after(conn, blocks),
        Behaviour::FlapsChoke { period, blocks } => flaps_choke(conn, period, blocks),
        Behaviour::ClosesAfterAFewBytes => closes_after_a_few_bytes(conn),
        Behaviour::SendsHalfAHandshake => sends_half_a_handshake(conn),
        Behaviour::SendsUnrequestedBlocks => sends_unrequested_blocks(conn),
        Behaviour::CorruptsFirstBlocksThenChokes => corrupts_first_blocks_then_chokes(conn),
    };
    match result {
        Ok(()) => End::ClosedByUs,
        Err(end) => end,
    }
}

/// Every request answered at once with wrong bytes of the right length.
fn corrupt_blocks(conn: &mut Conn) -> Step<()> {
    conn.accept_handshake()?;
    conn.send_bitfield_and_unchoke()?;
    conn.misbehaving();
    let deadline = conn.deadline;
    loop {
        for (index, begin, length) in conn.next_requests(deadline)? {
            conn.answer(index, begin, length, Answer::Corrupt)?;
        }
    }
}

/// A length prefix of 2 GiB after the unchoke, then waits for the remote to close.
fn huge_length_prefix(conn: &mut Conn) -> Step<()> {
    conn.accept_handshake()?;
    conn.send_bitfield_and_unchoke()?;
    conn.misbehaving();
    conn.send_raw(&0x8000_0000u32.to_be_bytes())?;
    conn.keep_open()
}

/// A bitfield with spare bits set or one byte too long, then waits.
fn invalid_bitfield(conn: &mut Conn, too_long: bool) -> Step<()> {
    conn.accept_handshake()?;
    let mut bits = conn.torrent.full_bitfield();
    if too_long {
        bits.push(0xff);
    } else {
        let spare = bits.len() * 8 - conn.torrent.piece_count() as usize;
        assert!(
            spare > 0,
            "spare bits need a piece count not a multiple of 8"
        );
        *bits.last_mut().expect("at least one piece") = 0xff;
    }
    conn.misbehaving();
    conn.send(Message::Bitfield(&bits))?;
    conn.send(Message::Unchoke)?;
    conn.keep_open()
}

/// Serves `blocks` requests, then silence with the socket open.
fn goes_silent_after(conn: &mut Conn, blocks: usize) -> Step<()> {
    serve_first_blocks(conn, blocks)?;
    conn.misbehaving();
    conn.keep_open()
}

/// Handshakes, unchokes and answers the first `blocks` requests correctly.
fn serve_first_blocks(conn: &mut Conn, blocks: usize) -> Step<()> {
    conn.accept_handshake()?;
    conn.send_bitfield_and_unchoke()?;
    let deadline = conn.deadline;
    let mut served = 0;
    while served < blocks {
        for (index, begin, length) in conn.next_requests(deadline)? {
            if served < blocks {
                conn.answer(index, begin, length, Answer::Correct)?;
                served += 1;
            }
        }
    }
    Ok(())
}

/// Serves `blocks` requests, then returns, which closes the connection.
fn disconnects_after(conn: &mut Conn, blocks: usize) -> Step<()> {
    serve_first_blocks(conn, blocks)?;
    conn.misbehaving();
    Ok(())
}

/// Corrupt first blocks while unchoked, then a choke, every 200 ms.
fn corrupts_first_blocks_then_chokes(conn: &mut Conn) -> Step<()> {
    conn.accept_handshake()?;
    let bits = conn.torrent.full_bitfield();
    conn.send(Message::Bitfield(&bits))?;
    conn.misbehaving();
    let period = Duration::from_millis(200);
    loop {
        conn.send(Message::Unchoke)?;
        let until = Instant::now() + period;
        while Instant::now() < until {
            for (index, begin, length) in conn.next_requests(until)? {
                if begin == 0 {
                    conn.answer(index, begin, length, Answer::Corrupt)?;
                }
            }
        }
        conn.send(Message::Choke)?;
        lock(&conn.report).chokes_sent += 1;
        let until = Instant::now() + period;
        while Instant::now() < until {
            conn.next_requests(until)?;
        }
    }
}

/// Unchoke and choke alternating every `period`, a few blocks served in between.
fn flaps_choke(conn: &mut Conn, period: Duration, blocks: usize) -> Step<()> {
    conn.accept_handshake()?;
    let bits = conn.torrent.full_bitfield();
    conn.send(Message::Bitfield(&bits))?;
    conn.misbehaving();
    loop {
        conn.send(Message::Unchoke)?;
        let until = Instant::now() + period;
        let mut served = 0;
        while Instant::now() < until {
            for (index, begin, length) in conn.next_requests(until)? {
                if served < blocks {
                    conn.answer(index, begin, length, Answer::Correct)?;
                    served += 1;
                }
            }
        }
        // BEP 3: a choke discards the requests not yet answered.
        conn.send(Message::Choke)?;
        lock(&conn.report).chokes_sent += 1;
        let until = Instant::now() + period;
        while Instant::now() < until {
            conn.next_requests(until)?;
        }
    }
}

/// Reads 10 bytes of the remote's handshake and closes.
fn closes_after_a_few_bytes(conn: &mut Conn) -> Step<()> {
    conn.misbehaving();
    conn.fill(10)
}

/// Reads the remote's handshake, sends half of ours and closes.
fn sends_half_a_handshake(conn: &mut Conn) -> Step<()> {
    conn.read_handshake()?;
    conn.misbehaving();
    let ours = Handshake::new(conn.torrent.info_hash, conn.peer_id).encode();
    conn.send_raw(&ours[..wire::HANDSHAKE_LEN / 2])
}

/// Keeps the remote choked and sends it every block of the torrent unasked.
fn sends_unrequested_blocks(conn: &mut Conn) -> Step<()> {
    conn.accept_handshake()?;
    let bits = conn.torrent.full_bitfield();
    conn.send(Message::Bitfield(&bits))?;
    conn.misbehaving();
    for (index, begin, length) in conn.torrent.blocks() {
        conn.answer(index, begin, length, Answer::Correct)?;
    }
    conn.keep_open()
}

/// What a [`RequestFlood`] sends to the seeder under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flood {
    /// `count` requests cycling over every block, with every 50th replaced
    /// by an `invalid` one (so the first invalid request is the 50th).
    InvalidRequests {
        /// Requests sent in all.
        count: usize,
        /// What is wrong with the invalid ones.
        invalid: InvalidRequest,
    },
    /// `count` valid requests, cycling over every block, without ever
    /// reading the answers.
    ValidRequests {
        /// Requests sent in all.
        count: usize,
    },
}

/// A request no seeder of the torrent can answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidRequest {
    /// A piece index past the last piece.
    PiecePastTheEnd,
    /// 32 KiB at once, where BEP 3 clients accept at most 16 KiB.
    LongerThanABlock,
    /// An offset past the end of its piece.
    BeginPastTheEndOfThePiece,
}

impl InvalidRequest {
    /// The request, as `(index, begin, length)`.
    fn request(self, torrent: &Torrent) -> (u32, u32, u32) {
        match self {
            InvalidRequest::PiecePastTheEnd => (torrent.piece_count(), 0, BLOCK_LEN),
            InvalidRequest::LongerThanABlock => (0, 0, 2 * BLOCK_LEN),
            InvalidRequest::BeginPastTheEndOfThePiece => (0, torrent.piece_len, BLOCK_LEN),
        }
    }
}

/// A misbehaving downloader that dials a seeder under test and floods it
/// with requests. Dropping it stops and joins its thread.
pub struct RequestFlood {
    local_addr: SocketAddr,
    report: Arc<Mutex<Report>>,
    _worker: Worker,
}

impl RequestFlood {
    /// Connects to `target` (failing the test if it cannot), then
    /// handshakes and floods on its own thread.
    pub fn start(target: SocketAddr, torrent: &Torrent, flood: Flood) -> RequestFlood {
        // From its own loopback address: bans are by IP, and the good
        // downloader comes from 127.0.0.1.
        let stream = super::net::connect_from(own_loopback_ip(3), target)
            .unwrap_or_else(|e| panic!("connecting to {target}: {e}"));
        let local_addr = stream.local_addr().expect("local address");
        let report = Arc::new(Mutex::new(Report {
            connections: 1,
            ..Report::default()
        }));
        let worker = {
            let torrent = torrent.clone();
            let report = Arc::clone(&report);
            Worker::spawn(format!("flood {local_addr}"), move |stop| {
                let deadline = Instant::now() + TIMEOUT;
                let peer_id = hostile_peer_id(local_addr.port());
                let mut conn = Conn::new(stream, peer_id, &torrent, &report, &stop, deadline);
                let end = match flood {
                    Flood::InvalidRequests { count, invalid } => {
                        flood_invalid_requests(&mut conn, count, invalid)
                    }
                    Flood::ValidRequests { count } => flood_valid_requests(&mut conn, count),
                };
                conn.finish(target, end.err().unwrap_or(End::ClosedByUs));
            })
        };
        RequestFlood {
            local_addr,
            report,
            _worker: worker,
        }
    }

    /// The flooder's own address: what the seeder sees (and bans).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// What it saw so far.
    pub fn report(&self) -> Report {
        lock(&self.report).clone()
    }
}

/// Interested, unchoked (or tired of waiting), then `count` requests with
/// an `invalid` one every 50th, then waits for the remote to close.
fn flood_invalid_requests(conn: &mut Conn, count: usize, invalid: InvalidRequest) -> Step<()> {
    conn.dial_handshake()?;
    let blocks = conn.torrent.blocks();
    let out = encode_requests((0..count).map(|i| {
        if i % 50 == 49 {
            invalid.request(&conn.torrent)
        } else {
            blocks[i % blocks.len()]
        }
    }));
    conn.misbehaving();
    conn.send_raw(&out)?;
    lock(&conn.report).requests_sent += count;
    conn.keep_open()
}

/// `request` messages for `(index, begin, length)` triples, back to back.
fn encode_requests(requests: impl Iterator<Item = (u32, u32, u32)>) -> Vec<u8> {
    let mut out = Vec::new();
    for (index, begin, length) in requests {
        Message::Request {
            index,
            begin,
            length,
        }
        .encode(&mut out);
    }
    out
}

/// Interested, unchoked (or tired of waiting), then `count` valid requests,
/// and never a read again until stopped.
fn flood_valid_requests(conn: &mut Conn, count: usize) -> Step<()> {
    conn.dial_handshake()?;
    let blocks = conn.torrent.blocks();
    let out = encode_requests((0..count).map(|i| blocks[i % blocks.len()]));
    conn.misbehaving();
    // In slices, so the count sent is right even if the remote stops reading.
    for chunk in out.chunks(17 * 256) {
        conn.send_raw(chunk)?;
        lock(&conn.report).requests_sent += chunk.len() / 17;
    }
    // Not reading is the point: the seeder's answers pile up on its side.
    while !conn.should_stop() {
        thread::sleep(POLL);
    }
    Err(End::Stopped)
}

/// Why a scripted connection ended.
#[derive(Debug)]
enum End {
    /// The script finished and closed the socket itself.
    ClosedByUs,
    /// The remote closed or reset the connection.
    ClosedByRemote,
    /// The test is over (stop flag) or the connection's lifetime ran out.
    Stopped,
    /// The remote sent something that is not a valid message.
    Protocol(WireError),
    /// The remote sent a handshake that does not match.
    BadHandshake(String),
    /// Any other socket error.
    Io(io::Error),
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            End::ClosedByUs => f.write_str("closed by the script"),
            End::ClosedByRemote => f.write_str("closed by the remote"),
            End::Stopped => f.write_str("stopped"),
            End::Protocol(e) => write!(f, "protocol error from the remote: {e}"),
            End::BadHandshake(e) => write!(f, "bad handshake from the remote: {e}"),
            End::Io(e) => write!(f, "socket error: {e}"),
        }
    }
}

impl From<io::Error> for End {
    fn from(e: io::Error) -> End {
        match e.kind() {
            io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::UnexpectedEof => End::ClosedByRemote,
            _ => End::Io(e),
        }
    }
}

/// A step of a script: `Err` ends the connection.
type Step<T> = Result<T, End>;

/// How to answer a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// The torrent's bytes.
    Correct,
    /// Every byte inverted: the right length, the wrong hash.
    Corrupt,
}

/// One scripted connection: its socket, its read buffer and what it reports.
struct Conn {
    stream: TcpStream,
    peer_id: PeerId,
    torrent: Torrent,
    limits: Limits,
    buf: Vec<u8>,
    report: Arc<Mutex<Report>>,
    stop: Arc<AtomicBool>,
    deadline: Instant,
    started: Instant,
    misbehaved_at: Option<Instant>,
}

impl Conn {
    fn new(
        stream: TcpStream,
        peer_id: PeerId,
        torrent: &Torrent,
        report: &Arc<Mutex<Report>>,
        stop: &Arc<AtomicBool>,
        deadline: Instant,
    ) -> Conn {
        // An accepted socket may inherit the listener's non-blocking mode.
        let setup = stream
            .set_nonblocking(false)
            .and_then(|()| stream.set_read_timeout(Some(POLL)))
            .and_then(|()| stream.set_write_timeout(Some(WRITE_TIMEOUT)))
            .and_then(|()| stream.set_nodelay(true));
        if let Err(e) = setup {
            log::warn!(target: "hostile", "socket options: {e}");
        }
        Conn {
            stream,
            peer_id,
            torrent: torrent.clone(),
            limits: torrent.limits(),
            buf: Vec::new(),
            report: Arc::clone(report),
            stop: Arc::clone(stop),
            deadline,
            started: Instant::now(),
            misbehaved_at: None,
        }
    }

    fn should_stop(&self) -> bool {
        self.stop.load(Ordering::SeqCst) || Instant::now() >= self.deadline
    }

    /// Marks the moment the misbehaviour begins, for [`Report::dropped_after`].
    fn misbehaving(&mut self) {
        self.misbehaved_at.get_or_insert_with(Instant::now);
    }

    /// Records how the connection ended.
    fn finish(&mut self, remote: SocketAddr, end: End) {
        let mut report = lock(&self.report);
        if matches!(end, End::ClosedByRemote) {
            let since = self.misbehaved_at.unwrap_or(self.started);
            report.dropped_after.push(since.elapsed());
        }
        log::debug!(target: "hostile", "{remote}: ended: {end}");
        report.endings.push(format!("{remote}: {end}"));
    }

    /// One read of at most [`POLL`]; `Ok(false)` when nothing arrived.
    fn read_some(&mut self) -> Step<bool> {
        if self.should_stop() {
            return Err(End::Stopped);
        }
        let mut chunk = [0u8; 64 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => Err(End::ClosedByRemote),
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(true)
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Reads until at least `len` bytes are buffered.
    fn fill(&mut self, len: usize) -> Step<()> {
        while self.buf.len() < len {
            self.read_some()?;
        }
        Ok(())
    }

    fn send_raw(&mut self, bytes: &[u8]) -> Step<()> {
        if self.should_stop() {
            return Err(End::Stopped);
        }
        Ok(self.stream.write_all(bytes)?)
    }

    fn send(&mut self, message: Message<'_>) -> Step<()> {
        let mut out = Vec::new();
        message.encode(&mut out);
        self.send_raw(&out)
    }

    /// Reads the remote's handshake and checks its info-hash.
    fn read_handshake(&mut self) -> Step<()> {
        self.fill(wire::HANDSHAKE_LEN)?;
        let bytes: [u8; wire::HANDSHAKE_LEN] = self.buf[..wire::HANDSHAKE_LEN]
            .try_into()
            .expect("a handshake's length");
        self.buf.drain(..wire::HANDSHAKE_LEN);
        let theirs = Handshake::decode(&bytes).map_err(End::Protocol)?;
        if theirs.info_hash != self.torrent.info_hash {
            return Err(End::BadHandshake(format!(
                "info-hash {} instead of {}",
                theirs.info_hash, self.torrent.info_hash
            )));
        }
        lock(&self.report).handshakes += 1;
        Ok(())
    }

    /// The answering side of the handshake: theirs first, then ours.
    fn accept_handshake(&mut self) -> Step<()> {
        self.read_handshake()?;
        let ours = Handshake::new(self.torrent.info_hash, self.peer_id).encode();
        self.send_raw(&ours)
    }

    /// The dialling side of the handshake, then `interested`, then waits
    /// (at most [`UNCHOKE_WAIT`]) for `unchoke`.
    fn dial_handshake(&mut self) -> Step<()> {
        let ours = Handshake::new(self.torrent.info_hash, self.peer_id).encode();
        self.send_raw(&ours)?;
        self.read_handshake()?;
        self.send(Message::Interested)?;
        let until = Instant::now() + UNCHOKE_WAIT;
        while Instant::now() < until {
            if self.next_messages()?.contains(&Incoming::Unchoke) {
                lock(&self.report).unchoked = true;
                return Ok(());
            }
            self.read_some()?;
        }
        log::debug!(target: "hostile", "not unchoked within {UNCHOKE_WAIT:?}, going on");
        Ok(())
    }

    fn send_bitfield_and_unchoke(&mut self) -> Step<()> {
        let bits = self.torrent.full_bitfield();
        self.send(Message::Bitfield(&bits))?;
        self.send(Message::Unchoke)
    }

    /// Decodes every complete message buffered; counts requests.
    fn next_messages(&mut self) -> Step<Vec<Incoming>> {
        let mut messages = Vec::new();
        loop {
            let (incoming, used) = match Message::decode(&self.buf, self.limits) {
                Ok(Some((message, used))) => (Incoming::from(message), used),
                Ok(None) => break,
                Err(e) => return Err(End::Protocol(e)),
            };
            self.buf.drain(..used);
            match incoming {
                Incoming::Request { .. } => lock(&self.report).requests_received += 1,
                Incoming::Cancel => {
                    let mut report = lock(&self.report);
                    report.cancels_received += 1;
                    if report.first_cancel_after.is_none() {
                        report.first_cancel_after = self.misbehaved_at.map(|at| at.elapsed());
                    }
                }
                Incoming::Unchoke | Incoming::Other => {}
            }
            messages.push(incoming);
        }
        Ok(messages)
    }

    /// The requests that arrive by `until`: returns as soon as there is at
    /// least one, or empty when `until` passes.
    fn next_requests(&mut self, until: Instant) -> Step<Vec<(u32, u32, u32)>> {
        loop {
            // Callers loop on this until they have their requests: past the
            // connection's deadline it must end them, not return at once.
            if self.should_stop() {
                return Err(End::Stopped);
            }
            let requests: Vec<(u32, u32, u32)> = self
                .next_messages()?
                .into_iter()
                .filter_map(|m| match m {
                    Incoming::Request {
                        index,
                        begin,
                        length,
                    } => Some((index, begin, length)),
                    _ => None,
                })
                .collect();
            if !requests.is_empty() || Instant::now() >= until {
                return Ok(requests);
            }
            self.read_some()?;
        }
    }

    /// Sends nothing more; reads (and counts) until the remote closes or
    /// the test is over.
    fn keep_open(&mut self) -> Step<()> {
        loop {
            if self.next_messages().is_err() {
                // Past a garbage prefix nothing decodes: just drain.
                self.buf.clear();
            }
            self.read_some()?;
        }
    }

    /// Sends the block a request asks for; an invalid request is ignored.
    fn answer(&mut self, index: u32, begin: u32, length: u32, answer: Answer) -> Step<()> {
        let Some(block) = self.torrent.block(index, begin, length) else {
            return Ok(());
        };
        let block: Vec<u8> = match answer {
            Answer::Correct => block.to_vec(),
            Answer::Corrupt => block.iter().map(|b| !b).collect(),
        };
        self.send(Message::Piece {
            index,
            begin,
            block: &block,
        })?;
        lock(&self.report).blocks_sent += 1;
        Ok(())
    }
}

/// The messages a script cares about, owned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Incoming {
    Unchoke,
    Request { index: u32, begin: u32, length: u32 },
    Cancel,
    Other,
}

impl From<Message<'_>> for Incoming {
    fn from(message: Message<'_>) -> Incoming {
        match message {
            Message::Unchoke => Incoming::Unchoke,
            Message::Request {
                index,
                begin,
                length,
            } => Incoming::Request {
                index,
                begin,
                length,
            },
            Message::Cancel { .. } => Incoming::Cancel,
            _ => Incoming::Other,
        }
    }
}

/// A peer id of our own client style, distinct per scripted peer (`port`):
/// sessions close a second connection with an id they already know.
fn hostile_peer_id(port: u16) -> PeerId {
    let id = format!("-HO0001-{port:012}");
    PeerId(id.as_bytes().try_into().expect("20 bytes"))
}
