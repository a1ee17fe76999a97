//! The body of a peer thread: handshake, then a loop that alternates between
//! commands from the manager, writing what is queued, and reading what arrives.
//!
//! One thread both reads and writes its socket without ever blocking on one
//! direction for long: writes go through an output buffer with a short write
//! timeout, and reads use a short read timeout while output is pending. Two
//! clients that upload to each other therefore cannot deadlock with both
//! blocked in `write`.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, TryRecvError};
use log::{debug, trace};

use super::pipeline::{BlockOutcome, BlockRequest, Pipeline, REQUEST_TIMEOUT};
use super::wire::{self, Handshake, Limits, Message, PeerId};
use super::{Origin, Partial, PeerCommand, PeerContext, PeerCounters, PeerKey, PieceJob};
use crate::bitfield::Bitfield;
use crate::layout::Layout;
use crate::piece_manager::{Event, PeerEvent, Returned};

/// How long to wait for a TCP connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long to wait for the remote's handshake and for the manager's answer.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Send a keep-alive after this much silence; common clients drop a peer silent for 120 s.
const KEEPALIVE_AFTER: Duration = Duration::from_secs(60);
/// Drop a remote that has sent nothing for this long.
const SILENCE_LIMIT: Duration = Duration::from_secs(180);
/// Read timeout when nothing is waiting to be written: the longest a command waits.
const IDLE_WAIT: Duration = Duration::from_millis(50);
/// Read timeout while output is pending, so writing resumes quickly.
const BUSY_WAIT: Duration = Duration::from_millis(1);
/// How long after an event that may bring new work the loop polls for commands.
const EXPECT_COMMAND_FOR: Duration = Duration::from_millis(20);
/// Longest a single write may block before the loop goes back to reading.
const WRITE_WAIT: Duration = Duration::from_millis(20);
/// How often the peer's rate is measured and the pipeline resized.
const RATE_EVERY: Duration = Duration::from_secs(1);
/// Stop reading blocks from disk for the remote while this much output is queued.
const OUTPUT_HIGH_WATER: usize = 512 * 1024;
/// Most bytes served in one turn of the loop before it reads the socket.
const SERVE_BURST: usize = 4 * 1024 * 1024;
/// Most requests from the remote held at once (12 bytes each). Past this the
/// thread stops reading the socket until the queue drains, so TCP slows the
/// remote down; requests are never dropped. Transmission 3.00, which gets
/// no `reqq` from us, keeps about ten seconds of requests in flight (several
/// thousand on loopback), and waits 90 s before asking again for a dropped one.
const MAX_QUEUED_REQUESTS: usize = 16384;

/// Why a connection ended: the text reaches the manager and the debug log.
#[derive(Debug)]
enum End {
    /// The connection closed or failed: no one's fault.
    Closed(String),
    /// The remote broke the protocol; the manager bans it.
    Violation(String),
}

impl From<String> for End {
    fn from(reason: String) -> End {
        End::Closed(reason)
    }
}

impl From<&str> for End {
    fn from(reason: &str) -> End {
        End::Closed(reason.to_string())
    }
}

type Outcome = Result<(), End>;

/// Runs one connection to its end and reports the end to the manager.
pub fn run(
    key: PeerKey,
    addr: SocketAddr,
    origin: Origin,
    ctx: &PeerContext,
    counters: &PeerCounters,
    cmd_rx: &Receiver<PeerCommand>,
) {
    let mut returned = Vec::new();
    let outcome = connect(origin, ctx)
        .map_err(End::Closed)
        .and_then(|(stream, peer_id)| {
            debug!("{addr}: handshake done, peer id {peer_id:?}");
            let layout = *ctx.storage.layout();
            let mut conn = Conn::new(key, addr, stream, ctx, counters, layout);
            let result = conn.start(peer_id, cmd_rx);
            returned = conn.return_jobs();
            result
        });
    let (reason, violation) = match outcome {
        Ok(()) => ("closed".to_string(), false),
        Err(End::Closed(reason)) => (reason, false),
        Err(End::Violation(reason)) => (reason, true),
    };
    debug!("{addr}: disconnected: {reason}");
    // A closed manager channel means the session is ending: nothing to report to.
    let _ = ctx.events_tx.send(Event::Peer {
        key,
        event: PeerEvent::Disconnected {
            reason,
            violation,
            returned,
        },
    });
}

/// Connects (when outgoing) and exchanges handshakes.
fn connect(origin: Origin, ctx: &PeerContext) -> Result<(TcpStream, PeerId), String> {
    let ours = Handshake::new(ctx.info_hash, ctx.our_id).encode();
    let incoming = matches!(origin, Origin::Incoming(_));
    let mut stream = match origin {
        Origin::Outgoing(addr) => {
            let mut stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)
                .map_err(|e| format!("connect failed: {e}"))?;
            stream
                .write_all(&ours)
                .map_err(|e| format!("sending handshake: {e}"))?;
            stream
        }
        Origin::Incoming(stream) => stream,
    };
    stream
        .set_read_timeout(Some(HANDSHAKE_TIMEOUT))
        .map_err(|e| format!("socket option: {e}"))?;
    let mut theirs = [0u8; wire::HANDSHAKE_LEN];
    stream
        .read_exact(&mut theirs)
        .map_err(|e| format!("reading handshake: {e}"))?;
    let theirs = Handshake::decode(&theirs).map_err(|e| e.to_string())?;
    if theirs.info_hash != ctx.info_hash {
        return Err(format!(
            "handshake for another torrent ({})",
            theirs.info_hash
        ));
    }
    if theirs.peer_id == ctx.our_id {
        return Err("connection to ourselves".into());
    }
    if incoming {
        stream
            .write_all(&ours)
            .map_err(|e| format!("sending handshake: {e}"))?;
    }
    stream
        .set_nodelay(true)
        .map_err(|e| format!("socket option: {e}"))?;
    Ok((stream, theirs.peer_id))
}

/// The state of one live connection.
struct Conn<'a> {
    key: PeerKey,
    addr: SocketAddr,
    stream: TcpStream,
    ctx: &'a PeerContext,
    counters: &'a PeerCounters,
    layout: Layout,
    limits: Limits,
    out: Vec<u8>,
    out_pos: usize,
    read_timeout: Option<Duration>,
    we_have: Bitfield,
    they_have: Bitfield,
    am_choking: bool,
    am_interested: bool,
    peer_choking: bool,
    peer_interested: bool,
    /// The pieces we fetch from the remote and our requests in flight.
    pipeline: Pipeline,
    /// Bytes received when the rate was last measured, and when.
    rate_mark: (u64, Instant),
    serve_queue: VecDeque<(u32, u32, u32)>,
    expect_command_until: Instant,
    last_sent: Instant,
    last_received: Instant,
}

impl<'a> Conn<'a> {
    fn new(
        key: PeerKey,
        addr: SocketAddr,
        stream: TcpStream,
        ctx: &'a PeerContext,
        counters: &'a PeerCounters,
        layout: Layout,
    ) -> Conn<'a> {
        let now = Instant::now();
        Conn {
            key,
            addr,
            stream,
            ctx,
            counters,
            layout,
            limits: Limits {
                piece_count: layout.piece_count(),
            },
            out: Vec::with_capacity(64 * 1024),
            out_pos: 0,
            read_timeout: None,
            we_have: Bitfield::new(layout.piece_count()),
            they_have: Bitfield::new(layout.piece_count()),
            am_choking: true,
            am_interested: false,
            peer_choking: true,
            peer_interested: false,
            pipeline: Pipeline::new(layout, now),
            rate_mark: (0, now),
            serve_queue: VecDeque::new(),
            expect_command_until: now,
            last_sent: now,
            last_received: now,
        }
    }

    /// Reports the handshake, waits for the manager's answer, and runs.
    fn start(&mut self, peer_id: PeerId, cmd_rx: &Receiver<PeerCommand>) -> Outcome {
        self.send_event(PeerEvent::Connected { peer_id })?;
        let have = match cmd_rx.recv_timeout(HANDSHAKE_TIMEOUT) {
            Ok(PeerCommand::Start { have }) => have,
            Ok(PeerCommand::Shutdown) => return Err("refused by the piece manager".into()),
            Ok(other) => return Err(format!("unexpected first command {other:?}").into()),
            Err(RecvTimeoutError::Timeout) => return Err("no answer from the piece manager".into()),
            Err(RecvTimeoutError::Disconnected) => return Ok(()),
        };
        self.run(have, cmd_rx)
    }

    /// Every unfinished piece, handed back with its received blocks.
    fn return_jobs(&mut self) -> Vec<Returned> {
        self.pipeline.drop_all(Instant::now())
    }

    fn send_event(&mut self, event: PeerEvent) -> Outcome {
        if matches!(
            event,
            PeerEvent::Piece { .. }
                | PeerEvent::Unchoked
                | PeerEvent::Bitfield(_)
                | PeerEvent::Have(_)
                | PeerEvent::Interested(_)
        ) {
            // The manager usually answers these with new work: watch for it
            // closely for a moment rather than sleeping in read().
            self.expect_command_until = Instant::now() + EXPECT_COMMAND_FOR;
        }
        self.ctx
            .events_tx
            .send(Event::Peer {
                key: self.key,
                event,
            })
            .map_err(|_| End::Closed("session ended".to_string()))
    }

    fn queue(&mut self, message: Message) {
        trace!("{}: send {message:?}", self.addr);
        message.encode(&mut self.out);
    }

    fn run(&mut self, have: Bitfield, cmd_rx: &Receiver<PeerCommand>) -> Outcome {
        self.we_have = have;
        // BEP 3: the bitfield may only be the first message; a peer with nothing may skip it.
        if self.we_have.count() > 0 {
            let bits = self.we_have.as_bytes().to_vec();
            self.queue(Message::Bitfield(&bits));
        }
        self.stream
            .set_write_timeout(Some(WRITE_WAIT))
            .map_err(|e| format!("socket option: {e}"))?;
        let buf_len = (256 * 1024).max(2 * (self.limits.max_message_len() as usize + 4));
        let mut rbuf = vec![0u8; buf_len];
        let (mut start, mut end) = (0usize, 0usize);
        loop {
            loop {
                match cmd_rx.try_recv() {
                    Ok(PeerCommand::Shutdown) | Err(TryRecvError::Disconnected) => return Ok(()),
                    Ok(command) => self.handle_command(command)?,
                    Err(TryRecvError::Empty) => break,
                }
            }
            let now = Instant::now();
            self.measure_rate(now);
            self.check_request_timeout(now)?;
            self.fill_requests();
            if self.last_sent.elapsed() >= KEEPALIVE_AFTER && self.pending_output() == 0 {
                self.queue(Message::KeepAlive);
            }
            if self.last_received.elapsed() >= SILENCE_LIMIT {
                return Err(format!("silent for {} s", SILENCE_LIMIT.as_secs()).into());
            }
            self.write_out()?;

            // Output or requests still to serve: come back quickly. (The
            // remote may have nothing more to say: it sent all its requests.)
            let busy = self.pending_output() > 0
                || !self.serve_queue.is_empty()
                || Instant::now() < self.expect_command_until;
            let wait = if busy { BUSY_WAIT } else { IDLE_WAIT };
            if self.read_timeout != Some(wait) {
                self.stream
                    .set_read_timeout(Some(wait))
                    .map_err(|e| format!("socket option: {e}"))?;
                self.read_timeout = Some(wait);
            }
            // While the buffer is full of messages waiting for the queue,
            // there is nowhere to read into (and a zero-byte read would look
            // like the remote closing).
            let backlogged = self.serve_queue.len() >= MAX_QUEUED_REQUESTS || end == rbuf.len();
            if backlogged {
                // We are the ones not reading: the remote is not silent.
                self.last_received = Instant::now();
            } else {
                match self.stream.read(&mut rbuf[end..]) {
                    Ok(0) => return Err("closed by the remote".into()),
                    Ok(n) => {
                        end += n;
                        self.last_received = Instant::now();
                    }
                    Err(e) if is_timeout(&e) && start == end => continue,
                    Err(e) if is_timeout(&e) => {}
                    Err(e) => return Err(format!("read failed: {e}").into()),
                }
            }
            // Messages wait in the buffer while the request queue is full.
            while self.serve_queue.len() < MAX_QUEUED_REQUESTS {
                let Some((message, used)) = Message::decode(&rbuf[start..end], self.limits)
                    .map_err(|e| End::Violation(format!("protocol error: {e}")))?
                else {
                    break;
                };
                self.handle_message(message)?;
                start += used;
            }
            if start == end {
                (start, end) = (0, 0);
            } else if rbuf.len() - end < self.limits.max_message_len() as usize + 4 {
                rbuf.copy_within(start..end, 0);
                (start, end) = (0, end - start);
            }
        }
    }

    /// Resizes the pipeline to what the peer delivered in the last second.
    fn measure_rate(&mut self, now: Instant) {
        let (mark, at) = self.rate_mark;
        let elapsed = now.duration_since(at);
        if elapsed < RATE_EVERY {
            return;
        }
        let received = self.counters.downloaded.load(Ordering::Relaxed);
        self.rate_mark = (received, now);
        if self.pipeline.in_flight() == 0 {
            // Nothing was asked: the rate says nothing about the peer.
            return;
        }
        let rate = (received - mark) * 1000 / (elapsed.as_millis() as u64).max(1);
        self.pipeline.set_rate(rate);
    }

    /// Snubs a peer that has had requests outstanding for
    /// [`REQUEST_TIMEOUT`] without sending a block: cancels them and gives
    /// its pieces back, so other peers fetch them.
    fn check_request_timeout(&mut self, now: Instant) -> Outcome {
        if !self.pipeline.timed_out(now) {
            return Ok(());
        }
        debug!(
            "{}: no block for {} s, snubbed",
            self.addr,
            REQUEST_TIMEOUT.as_secs()
        );
        let (cancels, returned) = self.pipeline.cancel_all(now);
        self.queue_cancels(cancels);
        self.pipeline.shrink();
        self.send_event(PeerEvent::Released {
            returned,
            snubbed: true,
        })
    }

    fn queue_cancels(&mut self, cancels: Vec<BlockRequest>) {
        for BlockRequest {
            index,
            begin,
            length,
        } in cancels
        {
            self.queue(Message::Cancel {
                index,
                begin,
                length,
            });
        }
    }

    fn pending_output(&self) -> usize {
        self.out.len() - self.out_pos
    }

    /// Serves queued requests and writes, until the socket takes no more at
    /// once, nothing is left to serve, or [`SERVE_BURST`] bytes went out.
    fn write_out(&mut self) -> Outcome {
        let mut sent = 0;
        loop {
            self.fill_output()?;
            let before = self.pending_output();
            self.write_some()?;
            sent += before - self.pending_output();
            if self.pending_output() > 0 || self.serve_queue.is_empty() || sent >= SERVE_BURST {
                return Ok(());
            }
        }
    }

    /// Writes as much queued output as the socket takes within [`WRITE_WAIT`].
    fn write_some(&mut self) -> Outcome {
        if self.pending_output() == 0 {
            return Ok(());
        }
        match self.stream.write(&self.out[self.out_pos..]) {
            Ok(n) => {
                self.out_pos += n;
                self.last_sent = Instant::now();
            }
            Err(e) if is_timeout(&e) => {}
            Err(e) => return Err(format!("write failed: {e}").into()),
        }
        if self.out_pos == self.out.len() {
            self.out.clear();
            self.out_pos = 0;
        } else if self.out_pos > OUTPUT_HIGH_WATER {
            self.out.drain(..self.out_pos);
            self.out_pos = 0;
        }
        Ok(())
    }

    fn handle_command(&mut self, command: PeerCommand) -> Outcome {
        match command {
            PeerCommand::Download(piece) => {
                if self.peer_choking || self.pipeline.is_fetching(piece.index) {
                    // Choked since the manager decided: give the piece back.
                    let index = piece.index;
                    let partial = piece.partial;
                    self.send_event(PeerEvent::Released {
                        returned: vec![Returned { index, partial }],
                        snubbed: false,
                    })?;
                } else {
                    self.pipeline.add(self.with_buffer(piece));
                }
            }
            PeerCommand::Have(index) => {
                self.we_have.set(index);
                if !self.they_have.has(index) {
                    self.queue(Message::Have(index));
                }
                // If another peer delivered it first (endgame), withdraw our requests.
                let cancels = self.pipeline.cancel_piece(index, Instant::now());
                self.queue_cancels(cancels);
                self.update_interest();
            }
            PeerCommand::Choke => {
                if !self.am_choking {
                    self.am_choking = true;
                    // BEP 3: choking discards the remote's pending requests.
                    self.serve_queue.clear();
                    self.queue(Message::Choke);
                }
            }
            PeerCommand::Unchoke => {
                if self.am_choking {
                    self.am_choking = false;
                    self.queue(Message::Unchoke);
                }
            }
            PeerCommand::Start { .. } => return Err("started twice".into()),
            PeerCommand::Shutdown => unreachable!("handled by the loop"),
        }
        Ok(())
    }

    /// `piece`, with a recycled buffer to fetch it into if it has none.
    fn with_buffer(&self, mut piece: PieceJob) -> PieceJob {
        if piece.partial.is_none() {
            let size = self.layout.piece_size(piece.index) as usize;
            let blocks = self.layout.block_count(piece.index) as usize;
            piece.partial = Some(Partial {
                data: self.ctx.buffers.take(size),
                received: vec![false; blocks],
            });
        }
        piece
    }

    /// Sends `interested` or `not interested` when the answer changes.
    fn update_interest(&mut self) {
        let interested = self.they_have.has_any_missing_from(&self.we_have);
        if interested != self.am_interested {
            self.am_interested = interested;
            self.queue(if interested {
                Message::Interested
            } else {
                Message::NotInterested
            });
        }
    }

    /// Keeps the pipeline full while unchoked.
    fn fill_requests(&mut self) {
        if self.peer_choking {
            return;
        }
        for BlockRequest {
            index,
            begin,
            length,
        } in self.pipeline.next_requests(Instant::now())
        {
            self.queue(Message::Request {
                index,
                begin,
                length,
            });
        }
    }

    /// Reads requested blocks from disk into the output while it is not too full.
    fn fill_output(&mut self) -> Outcome {
        while self.pending_output() < OUTPUT_HIGH_WATER {
            let Some((index, begin, length)) = self.serve_queue.pop_front() else {
                break;
            };
            wire::encode_piece_header(&mut self.out, index, begin, length);
            let at = self.out.len();
            self.out.resize(at + length as usize, 0);
            let offset = self.layout.piece_offset(index) + u64::from(begin);
            self.ctx
                .storage
                .read_at(offset, &mut self.out[at..])
                .map_err(|e| format!("serving piece {index}: {e}"))?;
            self.ctx
                .stats
                .uploaded
                .fetch_add(u64::from(length), Ordering::Relaxed);
            self.counters
                .uploaded
                .fetch_add(u64::from(length), Ordering::Relaxed);
            trace!(
                "{}: send piece {index} begin {begin} length {length}",
                self.addr
            );
        }
        Ok(())
    }

    fn handle_message(&mut self, message: Message) -> Outcome {
        trace!("{}: received {message:?}", self.addr);
        match message {
            Message::KeepAlive | Message::Port(_) | Message::Unknown { .. } => {}
            Message::Choke => {
                if !self.peer_choking {
                    self.peer_choking = true;
                    // BEP 3: a choke discards every request we had outstanding.
                    let returned = self.return_jobs();
                    debug!(
                        "{}: choked us, returning {} pieces",
                        self.addr,
                        returned.len()
                    );
                    self.send_event(PeerEvent::Choked { returned })?;
                }
            }
            Message::Unchoke => {
                if self.peer_choking {
                    self.peer_choking = false;
                    self.send_event(PeerEvent::Unchoked)?;
                }
            }
            Message::Interested => {
                if !self.peer_interested {
                    self.peer_interested = true;
                    self.send_event(PeerEvent::Interested(true))?;
                }
            }
            Message::NotInterested => {
                if self.peer_interested {
                    self.peer_interested = false;
                    self.serve_queue.clear();
                    self.send_event(PeerEvent::Interested(false))?;
                }
            }
            Message::Have(index) => {
                if index >= self.layout.piece_count() {
                    return Err(End::Violation(format!(
                        "have for piece {index} out of range"
                    )));
                }
                if self.they_have.set(index) {
                    self.send_event(PeerEvent::Have(index))?;
                }
                self.update_interest();
            }
            Message::Bitfield(bits) => {
                // BEP 3 puts the bitfield first, but aria2 1.36 sends one later
                // (after `interested` and its first completed piece) instead of
                // `have`. Dropping it would lose a real client, so a late
                // bitfield replaces what we knew of the remote's pieces. The
                // decoder has already checked its length and spare bits.
                self.they_have = Bitfield::from_payload(bits, self.layout.piece_count());
                self.send_event(PeerEvent::Bitfield(self.they_have.clone()))?;
                self.update_interest();
            }
            Message::Request {
                index,
                begin,
                length,
            } => {
                if !self.layout.is_valid_request(index, begin, length) {
                    return Err(End::Violation(format!(
                        "invalid request: piece {index} begin {begin} length {length}"
                    )));
                }
                if !self.we_have.has(index) {
                    return Err(End::Violation(format!(
                        "request for piece {index}, which we do not have"
                    )));
                }
                if self.am_choking {
                    // Requests from a choked peer are dropped, as BEP 3 allows.
                } else {
                    self.serve_queue.push_back((index, begin, length));
                }
            }
            Message::Cancel {
                index,
                begin,
                length,
            } => {
                self.serve_queue.retain(|r| *r != (index, begin, length));
            }
            Message::Piece {
                index,
                begin,
                block,
            } => self.receive_block(index, begin, block)?,
        }
        Ok(())
    }

    fn receive_block(&mut self, index: u32, begin: u32, block: &[u8]) -> Outcome {
        let outcome = self
            .pipeline
            .on_block(index, begin, block, Instant::now())
            .map_err(End::Violation)?;
        if outcome == BlockOutcome::Ignored {
            // Late or duplicate blocks earn the peer no credit for choking.
            debug!("{}: ignoring a late block of piece {index}", self.addr);
            return Ok(());
        }
        self.counters
            .downloaded
            .fetch_add(block.len() as u64, Ordering::Relaxed);
        match outcome {
            BlockOutcome::Completed { index, data } => {
                self.send_event(PeerEvent::Piece { index, data })
            }
            _ => Ok(()),
        }
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}
