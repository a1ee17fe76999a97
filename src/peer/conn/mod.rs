//! The full connection, once the torrent's content is known: a loop that
//! alternates between commands from the manager, writing what is queued,
//! and reading what arrives. (The handshakes come before, in
//! [`super::open`]; the metadata phase of a magnet link in
//! [`super::fetching`].) What the remote asks of us, and the writes, are
//! in its `serve` submodule; the messages it receives in `receive`; the
//! rate limits' pauses in its `limit` submodule.
//!
//! One thread both reads and writes its socket without ever blocking on one
//! direction for long: writes go through an output buffer with a short write
//! timeout, and reads use a short read timeout while output is pending. Two
//! clients that upload to each other therefore cannot deadlock with both
//! blocked in `write`.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, TryRecvError};
use log::{debug, trace};

use super::extensions::{self, PexOffer, RemoteExtensions};

use super::open::io_error;
use super::pipeline::{BlockRequest, Pipeline, REQUEST_TIMEOUT};
use super::requests::{Request, RequestQueue};
use super::transport::Stream;
use super::wire::{Limits, Message};
use super::{
    Closed, Disconnect, Loaded, Partial, PeerCommand, PeerContext, PeerCounters, PeerKey, PieceJob,
    Violation, WIRE_TRACE,
};
use crate::bitfield::Bitfield;
use crate::layout::Layout;
use crate::piece_manager::{Event, PeerEvent, Returned};

/// Send a keep-alive after this much silence; common clients drop a peer silent for 120 s.
pub(crate) const KEEPALIVE_AFTER: Duration = Duration::from_secs(60);
/// Drop a remote that has sent nothing for this long.
pub(crate) const SILENCE_LIMIT: Duration = Duration::from_secs(180);
/// Read timeout when nothing is waiting to be written: the longest a command waits.
pub(crate) const IDLE_WAIT: Duration = Duration::from_millis(50);
/// Longest an idle thread that can park ([`super::wake`]) sleeps before it
/// looks at its timers (keep-alive, silence, request timeout).
pub(crate) const PARKED_WAIT: Duration = Duration::from_secs(1);
/// Read timeout while output is pending, so writing resumes quickly.
pub(crate) const BUSY_WAIT: Duration = Duration::from_millis(1);
/// How long after an event that may bring new work the loop polls for commands.
pub(crate) const EXPECT_COMMAND_FOR: Duration = Duration::from_millis(20);
/// Longest a single write may block before the loop goes back to reading.
pub(crate) const WRITE_WAIT: Duration = Duration::from_millis(20);
/// Longest a connection told to close spends sending what it had queued.
pub(crate) const FLUSH_WAIT: Duration = Duration::from_millis(500);
/// How often the peer's rate is measured and the pipeline resized.
const RATE_EVERY: Duration = Duration::from_secs(1);
/// Most requests from the remote held at once (12 bytes each). Past this the
/// thread stops reading the socket until the queue drains, so TCP slows the
/// remote down; requests are never dropped. Transmission 3.00, which gets
/// no `reqq` from us, keeps about ten seconds of requests in flight (several
/// thousand on loopback), and waits 90 s before asking again for a dropped one.
pub(crate) const MAX_QUEUED_REQUESTS: usize = 16384;
mod limit;
mod receive;
mod serve;

type Outcome = Result<(), Disconnect>;

/// The state of one live connection.
pub(super) struct Conn<'a> {
    key: PeerKey,
    addr: SocketAddr,
    stream: Stream,
    ctx: &'a PeerContext,
    counters: &'a PeerCounters,
    loaded: Arc<Loaded>,
    layout: Layout,
    limits: Limits,
    /// What the remote's extended handshake told us (BEP 10).
    pub(super) remote: RemoteExtensions,
    /// The remote set the DHT bit in its handshake (BEP 5).
    pub(super) remote_dht: bool,
    pub(super) out: Vec<u8>,
    out_pos: usize,
    read_timeout: Option<Duration>,
    we_have: Bitfield,
    /// What we have and what we do not want (pieces of files not
    /// selected): the pieces we need nothing of.
    done: Bitfield,
    they_have: Bitfield,
    /// Pieces the remote has that we lack and want: we are interested
    /// while any.
    wanted: u32,
    am_choking: bool,
    am_interested: bool,
    peer_choking: bool,
    peer_interested: bool,
    /// The pieces we fetch from the remote and our requests in flight.
    pipeline: Pipeline,
    /// Bytes received when the rate was last measured, and when.
    rate_mark: (u64, Instant),
    serve_queue: RequestQueue,
    /// A request charged to the upload limit and waiting for its turn
    /// (see the `limit` submodule): served first when the wait is over.
    held: Option<Request>,
    /// The upload limit holds `held` back until then.
    upload_paused_until: Option<Instant>,
    /// This connection's id in [`Loaded::first_sent`](super::Loaded).
    conn_id: u32,
    /// With an upload limit: requests for pieces first sent to another
    /// connection, each with when it was put here; served when the limit
    /// has spare bytes, or once [`limit::REPEAT_DELAY_MAX`] has passed.
    repeats: VecDeque<(Request, Instant)>,
    /// The limit had no spare bytes for `repeats`: not asked again before.
    repeats_retry_at: Option<Instant>,
    /// The download limit holds reading back until then.
    download_paused_until: Option<Instant>,
    /// This connection's part of the download limit, if there is one.
    download_share: Option<crate::bandwidth::Share>,
    /// Metadata pieces the remote asked for (BEP 9), answered like blocks,
    /// while the output is not too full; at most [`MAX_QUEUED_METADATA`].
    metadata_queue: VecDeque<u32>,
    expect_command_until: Instant,
    last_sent: Instant,
    last_received: Instant,
    /// Parks the thread while idle, when set (by [`super::open`]).
    pub(super) waker: Option<Arc<super::wake::Waker>>,
    /// Log each message sent and received ([`super::WIRE_TRACE`]), read
    /// once so that a block costs no check or formatting when off.
    trace_wire: bool,
}

impl<'a> Conn<'a> {
    pub(super) fn new(
        key: PeerKey,
        addr: SocketAddr,
        stream: Stream,
        ctx: &'a PeerContext,
        counters: &'a PeerCounters,
        loaded: Arc<Loaded>,
    ) -> Conn<'a> {
        let now = Instant::now();
        let layout = *loaded.storage.layout();
        let conn_id = loaded.first_sent.connection_id();
        Conn {
            key,
            addr,
            stream,
            ctx,
            counters,
            loaded,
            layout,
            limits: Limits::for_pieces(layout.piece_count()),
            remote: RemoteExtensions::default(),
            remote_dht: false,
            out: Vec::with_capacity(64 * 1024),
            out_pos: 0,
            read_timeout: None,
            we_have: Bitfield::new(layout.piece_count()),
            done: Bitfield::new(layout.piece_count()),
            they_have: Bitfield::new(layout.piece_count()),
            wanted: 0,
            am_choking: true,
            am_interested: false,
            peer_choking: true,
            peer_interested: false,
            pipeline: Pipeline::new(layout, now),
            rate_mark: (0, now),
            serve_queue: RequestQueue::new(),
            held: None,
            upload_paused_until: None,
            conn_id,
            repeats: VecDeque::new(),
            repeats_retry_at: None,
            download_paused_until: None,
            download_share: ctx.bandwidth.download.as_ref().map(|l| l.share()),
            metadata_queue: VecDeque::new(),
            expect_command_until: now,
            last_sent: now,
            last_received: now,
            waker: None,
            trace_wire: super::wire_trace_on(),
        }
    }

    /// Every unfinished piece, handed back with its received blocks.
    pub(super) fn return_jobs(&mut self) -> Vec<Returned> {
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
            .map_err(|_| Closed::Normal.into())
    }

    fn queue(&mut self, message: Message) {
        if self.trace_wire {
            trace!(target: WIRE_TRACE, "{} -> {message}", self.addr);
        }
        message.encode(&mut self.out);
    }

    /// Logs a message queued by other means than [`Conn::queue`] (an
    /// extension message, a block written in place).
    fn trace_sent(&self, what: std::fmt::Arguments<'_>) {
        if self.trace_wire {
            trace!(target: WIRE_TRACE, "{} -> {what}", self.addr);
        }
    }

    /// Sends what opens the conversation: our pieces and, when the remote
    /// speaks BEP 10, our extended handshake. After a metadata fetch the
    /// extended handshake went first, so the bitfield (which BEP 3 allows
    /// only as the first message) becomes `have` messages.
    fn open(&mut self, extensions: bool, after_metadata: bool) {
        if after_metadata {
            let have: Vec<u32> = self.we_have.iter().collect();
            for index in have {
                self.queue(Message::Have(index));
            }
        } else if self.we_have.count() > 0 {
            // BEP 3: a peer with nothing may skip the bitfield.
            let bits = self.we_have.as_bytes().to_vec();
            self.queue(Message::Bitfield(&bits));
        }
        if extensions {
            let size = self.loaded.info_bytes.len() as u32;
            // After a metadata fetch our first handshake offered ut_pex if
            // peer exchange was on then: a torrent found private withdraws it.
            let pex = match (self.ctx.pex_enabled(), after_metadata) {
                (true, _) => PexOffer::Offer,
                (false, true) => PexOffer::Withdraw,
                (false, false) => PexOffer::Omit,
            };
            self.trace_sent(format_args!("extended handshake"));
            extensions::queue_our_handshake(
                &mut self.out,
                self.ctx.listen_port,
                MAX_QUEUED_REQUESTS as u32,
                self.addr.ip(),
                Some(size),
                pex,
            );
        }
        if let Some(reqq) = self.remote.reqq {
            self.pipeline.set_remote_queue(reqq as usize);
        }
        self.size_pipeline(None);
        // BEP 5: our DHT node's port, to a peer that runs one.
        if self.remote_dht
            && let Some(port) = self.ctx.dht_port()
        {
            self.queue(Message::Port(port));
        }
    }

    pub(super) fn run(
        &mut self,
        have: Bitfield,
        early: Vec<u8>,
        extensions: bool,
        after_metadata: bool,
        cmd_rx: &Receiver<PeerCommand>,
    ) -> Outcome {
        self.done = have.clone();
        self.done.union_with(self.loaded.storage.unwanted());
        self.we_have = have;
        self.wanted = self.they_have.count_missing_from(&self.done);
        self.open(extensions, after_metadata);
        self.stream
            .set_write_timeout(Some(WRITE_WAIT))
            .map_err(io_error("setting a socket option"))?;
        let buf_len = (256 * 1024)
            .max(2 * (self.limits.max_message_len() as usize + 4))
            .max(early.len());
        let mut rbuf = vec![0u8; buf_len];
        // Messages that arrived while the metadata was fetched come first.
        rbuf[..early.len()].copy_from_slice(&early);
        let (mut start, mut end) = (0usize, early.len());
        // Whole messages may wait in the buffer, not yet decoded: those held
        // back during the metadata fetch, or ones the decode loop left for
        // a full request queue or the download limit. The thread never
        // parks on them: the remote may send nothing more to wake it.
        let mut undecoded = !early.is_empty();
        loop {
            loop {
                match cmd_rx.try_recv() {
                    Ok(PeerCommand::Shutdown) => {
                        self.flush_before_close();
                        return Ok(());
                    }
                    Err(TryRecvError::Disconnected) => return Ok(()),
                    Ok(command) => self.handle_command(command)?,
                    Err(TryRecvError::Empty) => break,
                }
            }
            let now = Instant::now();
            let download_pause = self.download_pause(now);
            if download_pause.is_some() {
                self.excuse_silence(now);
            }
            self.measure_rate(now);
            self.check_request_timeout(now)?;
            self.fill_requests();
            if self.last_sent.elapsed() >= KEEPALIVE_AFTER && self.pending_output() == 0 {
                self.queue(Message::KeepAlive);
            }
            if self.last_received.elapsed() >= SILENCE_LIMIT {
                return Err(Closed::Silent(SILENCE_LIMIT.as_secs()).into());
            }
            self.write_out()?;

            // Output or requests still to serve: come back quickly. (The
            // remote may have nothing more to say: it sent all its requests.)
            let now = Instant::now();
            let busy = self.pending_output() > 0
                || self.can_serve_now(now)
                || !self.metadata_queue.is_empty()
                || now < self.expect_command_until
                || (undecoded && download_pause.is_none());
            let mut wait = if busy { BUSY_WAIT } else { IDLE_WAIT };
            // Parked, a thread still wakes when a held request may go.
            let mut park_for = PARKED_WAIT;
            if let Some(upload_wake) = self.upload_wake(now) {
                // Wake when the held request (or a repeat) may go.
                wait = wait.min(upload_wake.max(BUSY_WAIT));
                park_for = park_for.min(upload_wake.max(BUSY_WAIT));
            }
            if self.read_timeout != Some(wait) {
                self.stream
                    .set_read_timeout(Some(wait))
                    .map_err(io_error("setting a socket option"))?;
                self.read_timeout = Some(wait);
            }
            // While the buffer is full of messages waiting for the queue,
            // there is nowhere to read into (and a zero-byte read would look
            // like the remote closing).
            let backlogged = self.serve_queue.len() >= MAX_QUEUED_REQUESTS || end == rbuf.len();
            // Idle: sleep until the remote sends something or a command
            // comes (super::wake), not a read timeout's worth at a time.
            let mut readable = true;
            if !busy
                && !backlogged
                && !undecoded
                && let Some(waker) = self.waker.as_deref()
                && waker.can_park()
            {
                readable = waker
                    .park(self.stream.as_fd(), cmd_rx, park_for)
                    .map_err(io_error("waiting for the socket"))?;
            }
            if backlogged {
                // We are the ones not reading: the remote is not silent.
                self.last_received = Instant::now();
            } else if !readable {
                // Woken by a command or the timeout: nothing to read, but
                // what is buffered is still decoded below.
            } else if let Some(pause) = download_pause {
                // Our download limit: read nothing until the wait is over,
                // doing the rest of the loop meanwhile.
                std::thread::sleep(pause.min(if busy { BUSY_WAIT } else { IDLE_WAIT }));
            } else {
                match self.stream.read(&mut rbuf[end..]) {
                    Ok(0) => return Err(Closed::ByRemote.into()),
                    Ok(n) => {
                        end += n;
                        self.last_received = Instant::now();
                    }
                    Err(e) if is_timeout(&e) && start == end => continue,
                    Err(e) if is_timeout(&e) => {}
                    Err(e) => return Err(io_error("read")(e)),
                }
            }
            // Messages wait in the buffer while the request queue is full.
            undecoded = false;
            loop {
                if self.serve_queue.len() >= MAX_QUEUED_REQUESTS || self.download_paused() {
                    undecoded = start != end;
                    break;
                }
                let Some((message, used)) =
                    Message::decode(&rbuf[start..end], self.limits).map_err(Violation::Wire)?
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
        self.size_pipeline(Some(rate));
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
            PeerCommand::Grow(index) => {
                if self.pipeline.is_probe(index) {
                    let buffer = self
                        .loaded
                        .buffers
                        .take(self.layout.piece_size(index) as usize);
                    if let Some(unused) = self.pipeline.grow(index, buffer) {
                        self.loaded.buffers.give(unused);
                    }
                }
            }
            PeerCommand::Have(index) => {
                self.we_have.set(index);
                let new = self.done.set(index);
                if !self.they_have.has(index) {
                    self.queue(Message::Have(index));
                } else if new {
                    self.wanted -= 1;
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
                    self.drop_held();
                    self.queue(Message::Choke);
                }
            }
            PeerCommand::Unchoke => {
                if self.am_choking {
                    self.am_choking = false;
                    self.queue(Message::Unchoke);
                }
            }
            PeerCommand::Pex(message) => {
                if let (Some(id), true) = (self.remote.ut_pex, self.ctx.pex_enabled()) {
                    self.trace_sent(format_args!("extended ut_pex {message:?}"));
                    extensions::queue_pex(&mut self.out, id, &message);
                }
            }
            // Only meaningful before the connection runs: ignored here.
            PeerCommand::Start { .. }
            | PeerCommand::FetchMetadata
            | PeerCommand::RequestMetadata(_) => {}
            PeerCommand::Shutdown => unreachable!("handled by the loop"),
        }
        Ok(())
    }

    /// `piece`, with a recycled buffer to fetch it into if it has none
    /// (a probe gets a small one of its own, see [`Pipeline`]).
    fn with_buffer(&self, mut piece: PieceJob) -> PieceJob {
        let blocks = self.layout.block_count(piece.index);
        let probing = piece.probe && blocks > super::pipeline::PROBE_BLOCKS;
        if piece.partial.is_none() && !probing {
            let size = self.layout.piece_size(piece.index) as usize;
            piece.partial = Some(Partial {
                data: self.loaded.buffers.take(size),
                received: vec![false; blocks as usize],
            });
        }
        piece
    }

    /// Sends `interested` or `not interested` when the answer changes.
    fn update_interest(&mut self) {
        let interested = self.wanted > 0;
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
        self.update_share();
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
}

/// Whether a read or write only timed out (or was interrupted).
pub(crate) fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}
