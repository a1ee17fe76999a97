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

use super::wire::{self, Handshake, Limits, Message, PeerId};
use super::{Origin, PeerCommand, PeerContext, PeerKey};
use crate::bitfield::Bitfield;
use crate::layout::{BLOCK_LEN, Layout};
use crate::piece_manager::{Event, PeerEvent};

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
/// Block requests kept in flight to one peer.
pub const PIPELINE_BLOCKS: usize = 128;
/// Stop reading blocks from disk for the remote while this much output is queued.
const OUTPUT_HIGH_WATER: usize = 512 * 1024;
/// Most requests from the remote held at once; common clients keep far fewer.
const MAX_QUEUED_REQUESTS: usize = 2048;

/// Why a connection ended: the text reaches the manager and the debug log.
type Outcome = Result<(), String>;

/// Runs one connection to its end and reports the end to the manager.
pub fn run(
    key: PeerKey,
    addr: SocketAddr,
    origin: Origin,
    ctx: &PeerContext,
    cmd_rx: &Receiver<PeerCommand>,
) {
    let outcome = connect(origin, ctx).and_then(|(stream, peer_id)| {
        debug!("{addr}: handshake done, peer id {peer_id:?}");
        let layout = *ctx.storage.layout();
        let mut conn = Conn::new(key, addr, stream, ctx, layout);
        conn.send_event(PeerEvent::Connected { peer_id })?;
        let have = match cmd_rx.recv_timeout(HANDSHAKE_TIMEOUT) {
            Ok(PeerCommand::Start { have }) => have,
            Ok(PeerCommand::Shutdown) => return Err("refused by the piece manager".into()),
            Ok(other) => return Err(format!("unexpected first command {other:?}")),
            Err(RecvTimeoutError::Timeout) => return Err("no answer from the piece manager".into()),
            Err(RecvTimeoutError::Disconnected) => return Ok(()),
        };
        conn.run(have, cmd_rx)
    });
    let reason = match outcome {
        Ok(()) => "closed".to_string(),
        Err(reason) => reason,
    };
    debug!("{addr}: disconnected: {reason}");
    // A closed manager channel means the session is ending: nothing to report to.
    let _ = ctx.events_tx.send(Event::Peer {
        key,
        event: PeerEvent::Disconnected { reason },
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

/// A piece being fetched from this peer.
struct Job {
    index: u32,
    data: Vec<u8>,
    blocks: Vec<BlockState>,
    /// Blocks not yet received.
    remaining: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlockState {
    Wanted,
    Requested,
    Received,
}

/// The state of one live connection.
struct Conn<'a> {
    key: PeerKey,
    addr: SocketAddr,
    stream: TcpStream,
    ctx: &'a PeerContext,
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
    jobs: Vec<Job>,
    in_flight: usize,
    serve_queue: VecDeque<(u32, u32, u32)>,
    received_any: bool,
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
        layout: Layout,
    ) -> Conn<'a> {
        Conn {
            key,
            addr,
            stream,
            ctx,
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
            jobs: Vec::new(),
            in_flight: 0,
            serve_queue: VecDeque::new(),
            received_any: false,
            expect_command_until: Instant::now(),
            last_sent: Instant::now(),
            last_received: Instant::now(),
        }
    }

    fn send_event(&mut self, event: PeerEvent) -> Outcome {
        if matches!(
            event,
            PeerEvent::Piece { .. }
                | PeerEvent::Unchoked
                | PeerEvent::Bitfield(_)
                | PeerEvent::Have(_)
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
            .map_err(|_| "session ended".to_string())
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
            self.fill_requests();
            self.fill_output()?;
            if self.last_sent.elapsed() >= KEEPALIVE_AFTER && self.pending_output() == 0 {
                self.queue(Message::KeepAlive);
            }
            if self.last_received.elapsed() >= SILENCE_LIMIT {
                return Err(format!("silent for {} s", SILENCE_LIMIT.as_secs()));
            }
            self.write_some()?;

            let busy = self.pending_output() > 0 || Instant::now() < self.expect_command_until;
            let wait = if busy { BUSY_WAIT } else { IDLE_WAIT };
            if self.read_timeout != Some(wait) {
                self.stream
                    .set_read_timeout(Some(wait))
                    .map_err(|e| format!("socket option: {e}"))?;
                self.read_timeout = Some(wait);
            }
            match self.stream.read(&mut rbuf[end..]) {
                Ok(0) => return Err("closed by the remote".into()),
                Ok(n) => {
                    end += n;
                    self.last_received = Instant::now();
                }
                Err(e) if is_timeout(&e) => continue,
                Err(e) => return Err(format!("read failed: {e}")),
            }
            while let Some((message, used)) = Message::decode(&rbuf[start..end], self.limits)
                .map_err(|e| format!("protocol error: {e}"))?
            {
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

    fn pending_output(&self) -> usize {
        self.out.len() - self.out_pos
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
            Err(e) => return Err(format!("write failed: {e}")),
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
            PeerCommand::Download(index) => {
                if self.peer_choking || self.jobs.iter().any(|j| j.index == index) {
                    // Choked since the manager decided: give the piece back.
                    self.send_event(PeerEvent::Released {
                        pieces: vec![index],
                    })?;
                } else {
                    let size = self.layout.piece_size(index) as usize;
                    let block_count = self.layout.block_count(index) as usize;
                    self.jobs.push(Job {
                        index,
                        data: vec![0; size],
                        blocks: vec![BlockState::Wanted; block_count],
                        remaining: block_count,
                    });
                }
            }
            PeerCommand::Have(index) => {
                self.we_have.set(index);
                if !self.they_have.has(index) {
                    self.queue(Message::Have(index));
                }
                if let Some(pos) = self.jobs.iter().position(|j| j.index == index) {
                    // Another peer delivered it first (endgame): withdraw our requests.
                    let job = self.jobs.remove(pos);
                    self.cancel_requests(&job);
                }
                self.update_interest();
            }
            PeerCommand::Start { .. } => return Err("started twice".into()),
            PeerCommand::Shutdown => unreachable!("handled by the loop"),
        }
        Ok(())
    }

    fn cancel_requests(&mut self, job: &Job) {
        for (block, state) in job.blocks.iter().enumerate() {
            if *state == BlockState::Requested {
                self.in_flight -= 1;
                let block = block as u32;
                self.queue(Message::Cancel {
                    index: job.index,
                    begin: block * BLOCK_LEN,
                    length: self.layout.block_size(job.index, block),
                });
            }
        }
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

    /// Keeps [`PIPELINE_BLOCKS`] requests in flight while unchoked.
    fn fill_requests(&mut self) {
        if self.peer_choking {
            return;
        }
        let mut new = Vec::new();
        'jobs: for job in &mut self.jobs {
            for (block, state) in job.blocks.iter_mut().enumerate() {
                if self.in_flight + new.len() >= PIPELINE_BLOCKS {
                    break 'jobs;
                }
                if *state == BlockState::Wanted {
                    *state = BlockState::Requested;
                    new.push((job.index, block as u32));
                }
            }
        }
        self.in_flight += new.len();
        for (index, block) in new {
            let length = self.layout.block_size(index, block);
            self.queue(Message::Request {
                index,
                begin: block * BLOCK_LEN,
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
            trace!(
                "{}: send piece {index} begin {begin} length {length}",
                self.addr
            );
        }
        Ok(())
    }

    fn handle_message(&mut self, message: Message) -> Outcome {
        trace!("{}: received {message:?}", self.addr);
        let first = !self.received_any;
        self.received_any = true;
        match message {
            Message::KeepAlive | Message::Port(_) | Message::Unknown { .. } => {}
            Message::Choke => {
                if !self.peer_choking {
                    self.peer_choking = true;
                    // BEP 3: a choke discards every request we had outstanding.
                    let pieces: Vec<u32> = self.jobs.drain(..).map(|j| j.index).collect();
                    self.in_flight = 0;
                    debug!(
                        "{}: choked us, returning {} pieces",
                        self.addr,
                        pieces.len()
                    );
                    self.send_event(PeerEvent::Choked { pieces })?;
                }
            }
            Message::Unchoke => {
                if self.peer_choking {
                    self.peer_choking = false;
                    self.send_event(PeerEvent::Unchoked)?;
                }
            }
            Message::Interested => {
                // Every interested peer gets an upload slot.
                if self.am_choking {
                    self.am_choking = false;
                    self.queue(Message::Unchoke);
                }
            }
            Message::NotInterested => {
                if !self.am_choking {
                    self.am_choking = true;
                    self.serve_queue.clear();
                    self.queue(Message::Choke);
                }
            }
            Message::Have(index) => {
                if index >= self.layout.piece_count() {
                    return Err(format!("have for piece {index} out of range"));
                }
                if self.they_have.set(index) {
                    self.send_event(PeerEvent::Have(index))?;
                }
                self.update_interest();
            }
            Message::Bitfield(bits) => {
                // BEP 3 puts the bitfield first, but aria2 1.36 sends one later,
                // after `interested` and its first completed piece, instead of
                // `have`. Dropping it would lose a real client, so a late
                // bitfield replaces what we knew of the remote's pieces.
                if !first {
                    debug!("{}: bitfield after the first message, accepted", self.addr);
                }
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
                    return Err(format!(
                        "invalid request: piece {index} begin {begin} length {length}"
                    ));
                }
                if !self.we_have.has(index) {
                    return Err(format!("request for piece {index}, which we do not have"));
                }
                if self.am_choking {
                    // Requests from a choked peer are dropped, as BEP 3 allows.
                } else if self.serve_queue.len() >= MAX_QUEUED_REQUESTS {
                    debug!("{}: request queue full, dropping a request", self.addr);
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
        let Some(pos) = self.jobs.iter().position(|j| j.index == index) else {
            // A block we cancelled or were choked out of can still arrive.
            debug!("{}: ignoring unrequested block of piece {index}", self.addr);
            return Ok(());
        };
        let job = &mut self.jobs[pos];
        let block_no = begin / BLOCK_LEN;
        let expected_len = (block_no < job.blocks.len() as u32 && begin.is_multiple_of(BLOCK_LEN))
            .then(|| self.layout.block_size(index, block_no) as usize);
        if expected_len != Some(block.len())
            || job.blocks[block_no as usize] != BlockState::Requested
        {
            debug!(
                "{}: ignoring unrequested block {index}/{begin}/{}",
                self.addr,
                block.len()
            );
            return Ok(());
        }
        job.data[begin as usize..begin as usize + block.len()].copy_from_slice(block);
        job.blocks[block_no as usize] = BlockState::Received;
        job.remaining -= 1;
        self.in_flight -= 1;
        if job.remaining == 0 {
            let job = self.jobs.swap_remove(pos);
            self.send_event(PeerEvent::Piece {
                index,
                data: job.data,
            })?;
        }
        Ok(())
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}
