//! A scripted remote peer that speaks BEP 10 and BEP 9 (ut_metadata), for
//! the magnet tests: it listens on a loopback address of the test's choice
//! (127.0.0.2, 127.0.0.3, … so each scripted peer has its own IP), is dialled
//! by the client under test, and on every connection:
//!
//! 1. reads the handshake; one for another info-hash is counted and closed;
//! 2. answers with the BEP 10 bit set (reserved byte 5, 0x10);
//! 3. if the client set that bit too, sends an extended handshake with
//!    `m: {ut_metadata: 3}` and the `metadata_size` its [`MetaScript`] says
//!    (which may be a lie);
//! 4. with [`Content`], sends a bitfield and an unchoke;
//! 5. reads the client's extended handshake, whose `m` gives the id to send
//!    ut_metadata answers with, and answers each ut_metadata request as
//!    [`MetaScript::answer`] says ([`Answer`]), and each block request for a
//!    piece it has from its content.
//!
//! Everything it saw and did goes into a [`MetaReport`]. Nothing can hang:
//! reads wake every 50 ms to look at a stop flag, every connection ends after
//! [`super::TIMEOUT`] at the latest, and dropping the [`MetaPeer`] raises
//! the flag and joins every thread.
//!
//! Out of scope: the bytes themselves, in `super::ext`; the client's own code.

use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::TIMEOUT;
use super::bencode::{Value, decode};
use super::ext::{
    self, BITFIELD, EXT_HANDSHAKE, EXTENDED, End, MSG_REQUEST, PIECE, REQUEST, Step, UNCHOKE, Wire,
    extended,
};

/// The extended id the scripted peer asks to receive ut_metadata with.
pub const OUR_UT_METADATA: u8 = 3;
/// BEP 3 block size: longer requests are ignored.
const BLOCK_LEN: u32 = 16 * 1024;

/// How a scripted peer answers a ut_metadata request for one piece.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// A `data` message with the piece of [`MetaScript::metadata`].
    Data,
    /// A `reject` message.
    Reject,
    /// Nothing at all.
    Ignore,
}

/// Content a scripted peer also seeds: it sends a bitfield of `pieces`
/// and an unchoke, and answers block requests within them.
#[derive(Debug, Clone)]
pub struct Content {
    /// The torrent's piece length.
    pub piece_len: u32,
    /// The whole content, in torrent order.
    pub data: Arc<Vec<u8>>,
    /// The pieces it has (and claims); the others are never served.
    pub pieces: Range<u32>,
}

impl Content {
    fn piece_count(&self) -> u32 {
        self.data.len().div_ceil(self.piece_len as usize) as u32
    }

    fn bitfield(&self) -> Vec<u8> {
        let count = self.piece_count();
        let mut bits = vec![0u8; count.div_ceil(8) as usize];
        for index in self.pieces.clone().filter(|&i| i < count) {
            bits[index as usize / 8] |= 0x80 >> (index % 8);
        }
        bits
    }

    /// The bytes a request asks for, when it has that piece and the
    /// request is within it.
    fn block(&self, index: u32, begin: u32, length: u32) -> Option<&[u8]> {
        let start = u64::from(index) * u64::from(self.piece_len) + u64::from(begin);
        let piece_end =
            ((u64::from(index) + 1) * u64::from(self.piece_len)).min(self.data.len() as u64);
        let end = start + u64::from(length);
        if !self.pieces.contains(&index) || length == 0 || length > BLOCK_LEN || end > piece_end {
            return None;
        }
        Some(&self.data[start as usize..end as usize])
    }
}

/// What a scripted peer does on each connection.
#[derive(Debug, Clone)]
pub struct MetaScript {
    /// The torrent it answers for; handshakes for others are closed.
    pub info_hash: [u8; 20],
    /// The bytes it serves as metadata: the info dictionary, or a forgery.
    pub metadata: Arc<Vec<u8>>,
    /// The `metadata_size` (and `total_size`) it announces.
    pub metadata_size: u64,
    /// How it answers a request for each metadata piece; a piece past the
    /// end of [`MetaScript::metadata`] is always rejected.
    pub answer: fn(u32) -> Answer,
    /// Content it seeds besides the metadata, if any.
    pub content: Option<Content>,
    /// A `reqq` to announce. With one, block requests are answered late, in
    /// batches once the remote has stopped sending for a poll, so the
    /// report's `most_requests_outstanding` shows how many the remote keeps
    /// in flight.
    pub reqq: Option<u32>,
}

impl MetaScript {
    /// Serves every piece of `metadata` truthfully, and no content.
    pub fn serving(info_hash: [u8; 20], metadata: &[u8]) -> MetaScript {
        MetaScript {
            info_hash,
            metadata: Arc::new(metadata.to_vec()),
            metadata_size: metadata.len() as u64,
            answer: |_| Answer::Data,
            content: None,
            reqq: None,
        }
    }
}

/// Serves the even metadata pieces, rejects the odd ones.
pub fn even_pieces(piece: u32) -> Answer {
    if piece.is_multiple_of(2) {
        Answer::Data
    } else {
        Answer::Reject
    }
}

/// Serves the odd metadata pieces, rejects the even ones.
pub fn odd_pieces(piece: u32) -> Answer {
    if piece % 2 == 1 {
        Answer::Data
    } else {
        Answer::Reject
    }
}

/// Never answers a metadata request.
pub fn ignore_all(_: u32) -> Answer {
    Answer::Ignore
}

/// Rejects every metadata request.
pub fn reject_all(_: u32) -> Answer {
    Answer::Reject
}

/// What a scripted peer saw and did, over all its connections.
#[derive(Debug, Clone, Default)]
pub struct MetaReport {
    /// TCP connections accepted.
    pub connections: usize,
    /// Handshakes received for its info-hash.
    pub handshakes: usize,
    /// Handshakes received for another info-hash (closed at once).
    pub wrong_info_hashes: usize,
    /// The reserved bytes of each handshake received for its info-hash.
    pub their_reserved: Vec<[u8; 8]>,
    /// Every extended handshake received, decoded.
    pub their_ext_handshakes: Vec<Value>,
    /// The metadata piece of every ut_metadata request, in order.
    pub metadata_requests: Vec<u32>,
    /// Metadata pieces sent in `data` messages.
    pub metadata_served: Vec<u32>,
    /// Metadata pieces rejected.
    pub metadata_rejected: Vec<u32>,
    /// `(index, begin)` of every block request received.
    pub block_requests: Vec<(u32, u32)>,
    /// The most block requests received and not yet answered at once
    /// (counted only with a [`MetaScript::reqq`]).
    pub most_requests_outstanding: usize,
    /// `piece` messages sent.
    pub blocks_sent: usize,
    /// How each connection ended, for failure messages.
    pub endings: Vec<String>,
}

/// A scripted BEP 9 peer listening on a loopback address; dropping it stops
/// and joins its threads.
pub struct MetaPeer {
    addr: SocketAddr,
    report: Arc<Mutex<MetaReport>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MetaPeer {
    /// Listens on a free port of `ip` (a 127.x.y.z address) and plays
    /// `script` on every connection, each on its own thread.
    pub fn start(ip: [u8; 4], script: MetaScript) -> MetaPeer {
        let listener = TcpListener::bind((IpAddr::from(ip), 0))
            .unwrap_or_else(|e| panic!("binding {ip:?}:0: {e}"));
        let addr = listener.local_addr().expect("listener address");
        // Polled, so the stop flag is seen without waking a blocked accept().
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let report = Arc::new(Mutex::new(MetaReport::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (report, stop) = (Arc::clone(&report), Arc::clone(&stop));
            thread::Builder::new()
                .name(format!("meta-peer {addr}"))
                .spawn(move || accept_loop(&listener, &script, &report, &stop))
                .expect("spawning the scripted peer")
        };
        MetaPeer {
            addr,
            report,
            stop,
            thread: Some(thread),
        }
    }

    /// The address to dial (for `--peer` or `x.pe`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What it saw so far.
    pub fn report(&self) -> MetaReport {
        lock(&self.report).clone()
    }
}

impl Drop for MetaPeer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let joined = thread.join();
            if joined.is_err() && !thread::panicking() {
                panic!("a scripted metadata peer thread panicked");
            }
        }
    }
}

fn lock(report: &Mutex<MetaReport>) -> MutexGuard<'_, MetaReport> {
    report
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn accept_loop(
    listener: &TcpListener,
    script: &MetaScript,
    report: &Arc<Mutex<MetaReport>>,
    stop: &Arc<AtomicBool>,
) {
    let deadline = Instant::now() + TIMEOUT;
    let mut connections: Vec<JoinHandle<()>> = Vec::new();
    let mut accepted = 0u64;
    while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
        match listener.accept() {
            Ok((stream, remote)) => {
                lock(report).connections += 1;
                accepted += 1;
                let port = listener.local_addr().map_or(0, |a| a.port());
                let peer_id = ext::scripted_peer_id("MP", u64::from(port) * 1000 + accepted);
                let wire = match Wire::new(stream, deadline, Arc::clone(stop)) {
                    Ok(wire) => wire,
                    Err(e) => {
                        lock(report).endings.push(format!("{remote}: setup: {e}"));
                        continue;
                    }
                };
                let mut conn = Conn {
                    wire,
                    script: script.clone(),
                    report: Arc::clone(report),
                    peer_id,
                    their_ut_metadata: None,
                    held: Vec::new(),
                };
                let thread = thread::Builder::new()
                    .name(format!("meta-peer {remote}"))
                    .spawn(move || {
                        let end = conn.play().err().unwrap_or(End::ClosedByUs);
                        lock(&conn.report).endings.push(format!("{remote}: {end}"));
                    });
                match thread {
                    Ok(thread) => connections.push(thread),
                    Err(e) => lock(report)
                        .endings
                        .push(format!("{remote}: no thread: {e}")),
                }
            }
            Err(e) => {
                if e.kind() != io::ErrorKind::WouldBlock {
                    lock(report).endings.push(format!("accept failed: {e}"));
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

/// One accepted connection playing a [`MetaScript`].
struct Conn {
    wire: Wire,
    script: MetaScript,
    report: Arc<Mutex<MetaReport>>,
    peer_id: [u8; 20],
    /// The id the client asked to receive ut_metadata with, from its `m`.
    their_ut_metadata: Option<u8>,
    /// Block requests held to be answered in a batch (with a `reqq`).
    held: Vec<(u32, u32, u32)>,
}

impl Conn {
    fn play(&mut self) -> Step<()> {
        let theirs = self.wire.read_handshake()?;
        if theirs.info_hash != self.script.info_hash {
            lock(&self.report).wrong_info_hashes += 1;
            return Err(End::Protocol("handshake for another info-hash".into()));
        }
        {
            let mut report = lock(&self.report);
            report.handshakes += 1;
            report.their_reserved.push(theirs.reserved);
        }
        self.wire
            .send(&ext::handshake(&self.script.info_hash, &self.peer_id))?;
        // BEP 10: the extended handshake goes only to peers that set the bit.
        if theirs.supports_extensions() {
            let ours = ext::ext_handshake_with_reqq(
                OUR_UT_METADATA,
                Some(self.script.metadata_size),
                self.script.reqq,
            );
            self.wire.send(&extended(EXT_HANDSHAKE, &ours))?;
        }
        if let Some(content) = &self.script.content {
            let bitfield = ext::frame(BITFIELD, &content.bitfield());
            self.wire.send(&bitfield)?;
            self.wire.send(&ext::frame(UNCHOKE, &[]))?;
        }
        loop {
            if self.script.reqq.is_some() && !self.held.is_empty() && !self.wire.has_frame() {
                // Give the remote a poll to send more before answering.
                self.wire.poll()?;
                if !self.wire.has_frame() {
                    for (index, begin, length) in std::mem::take(&mut self.held) {
                        self.on_request(index, begin, length)?;
                    }
                    continue;
                }
            }
            let frame = self.wire.next_frame()?;
            match frame.id {
                EXTENDED => self.on_extended(&frame.payload)?,
                REQUEST if frame.payload.len() == 12 => {
                    let at = |i: usize| {
                        u32::from_be_bytes(frame.payload[i..i + 4].try_into().expect("4 bytes"))
                    };
                    if self.script.reqq.is_some() {
                        self.held.push((at(0), at(4), at(8)));
                        let mut report = lock(&self.report);
                        report.most_requests_outstanding =
                            report.most_requests_outstanding.max(self.held.len());
                    } else {
                        self.on_request(at(0), at(4), at(8))?;
                    }
                }
                _ => {}
            }
        }
    }

    fn on_extended(&mut self, payload: &[u8]) -> Step<()> {
        let Some((&ext_id, body)) = payload.split_first() else {
            return Err(End::Protocol("empty extended message".into()));
        };
        if ext_id == EXT_HANDSHAKE {
            let (dict, _) = decode(body)
                .ok_or_else(|| End::Protocol("extended handshake is not bencode".into()))?;
            // A later handshake may update the ids; BEP 10 says 0 disables.
            if let Some(id) = dict
                .get("m")
                .and_then(|m| m.get("ut_metadata"))
                .and_then(Value::int)
            {
                self.their_ut_metadata = u8::try_from(id).ok().filter(|&id| id != 0);
            }
            lock(&self.report).their_ext_handshakes.push(dict);
            return Ok(());
        }
        if ext_id != OUR_UT_METADATA {
            return Ok(());
        }
        let message =
            ext::parse_ut(body).ok_or_else(|| End::Protocol("bad ut_metadata message".into()))?;
        // BEP 9: unknown message types are ignored.
        if message.msg_type != MSG_REQUEST {
            return Ok(());
        }
        let piece = u32::try_from(message.piece)
            .map_err(|_| End::Protocol(format!("metadata piece {}", message.piece)))?;
        lock(&self.report).metadata_requests.push(piece);
        let Some(ut) = self.their_ut_metadata else {
            return Err(End::Protocol(
                "ut_metadata request before an extended handshake naming ut_metadata".into(),
            ));
        };
        let data = ext::metadata_piece(&self.script.metadata, piece);
        let answer = match data {
            Some(_) => (self.script.answer)(piece),
            None => Answer::Reject,
        };
        match (answer, data) {
            (Answer::Data, Some(data)) => {
                let message = ext::ut_data(piece, self.script.metadata_size, data);
                self.wire.send(&extended(ut, &message))?;
                lock(&self.report).metadata_served.push(piece);
            }
            (Answer::Reject, _) | (Answer::Data, None) => {
                self.wire.send(&extended(ut, &ext::ut_reject(piece)))?;
                lock(&self.report).metadata_rejected.push(piece);
            }
            (Answer::Ignore, _) => {}
        }
        Ok(())
    }

    fn on_request(&mut self, index: u32, begin: u32, length: u32) -> Step<()> {
        lock(&self.report).block_requests.push((index, begin));
        let Some(block) = self
            .script
            .content
            .as_ref()
            .and_then(|c| c.block(index, begin, length))
        else {
            return Ok(());
        };
        let mut payload = index.to_be_bytes().to_vec();
        payload.extend_from_slice(&begin.to_be_bytes());
        payload.extend_from_slice(block);
        let message = ext::frame(PIECE, &payload);
        self.wire.send(&message)?;
        lock(&self.report).blocks_sent += 1;
        Ok(())
    }
}
