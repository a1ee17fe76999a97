//! A peer thread before its torrent's metadata is known (a magnet link):
//! the extended handshake, then the `ut_metadata` pieces the manager asks
//! for (BEP 9), until the manager sends the torrent's content with
//! [`PeerCommand::Start`].
//!
//! Without a piece count nothing but the extension messages can be judged,
//! so the remote's other messages (its bitfield, `have`s, chokes) are held
//! back as raw bytes, bounded by [`EARLY_LIMIT`], and handed to the full
//! connection ([`super::conn`]), which decodes them first. The connection
//! stays open across the change: the remote sees one conversation.
//! Requests for our metadata are rejected: we have none yet.

use std::cell::Cell;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Receiver, TryRecvError};
use log::{debug, trace};

use super::conn::{
    BUSY_WAIT, EXPECT_COMMAND_FOR, IDLE_WAIT, KEEPALIVE_AFTER, MAX_QUEUED_REQUESTS, SILENCE_LIMIT,
    WRITE_WAIT, is_timeout,
};
use super::ext::MetadataMessage;
use super::extensions::{self, Incoming, PexOffer, RemoteExtensions};
use super::open::io_error;
use super::transport::Stream;
use super::wire::{Limits, Message};
use super::{Closed, Disconnect, Loaded, PeerCommand, PeerContext, PeerKey, Violation, WIRE_TRACE};
use crate::bitfield::Bitfield;
use crate::piece_manager::{Event, PeerEvent};

/// Most bytes of held-back messages (a bitfield of 2M pieces, and `have`s).
pub const EARLY_LIMIT: usize = 512 * 1024;
/// Output past which requests for our (missing) metadata go unanswered.
const OUT_LIMIT: usize = 64 * 1024;

/// A connection handed over to the full peer loop once the content is known.
pub struct Started {
    /// The stream, with the handshakes done.
    pub stream: Stream,
    /// Our verified pieces.
    pub have: Bitfield,
    /// The torrent's content.
    pub loaded: Arc<Loaded>,
    /// Received bytes not decoded yet: held-back messages first.
    pub early: Vec<u8>,
    /// Output not yet written.
    pub out: Vec<u8>,
    /// What the remote's extended handshake said.
    pub remote: RemoteExtensions,
    /// We sent messages already, so the bitfield can no longer go first.
    pub after_metadata: bool,
}

/// Runs the metadata phase of one connection. `Ok(None)`: told to stop.
///
/// # Errors
/// The [`Disconnect`] that ended the connection.
pub fn run(
    key: PeerKey,
    addr: SocketAddr,
    mut stream: Stream,
    extensions: bool,
    ctx: &PeerContext,
    cmd_rx: &Receiver<PeerCommand>,
) -> Result<Option<Started>, Disconnect> {
    let mut out = Vec::new();
    let trace_wire = super::wire_trace_on();
    if extensions {
        if trace_wire {
            trace!(target: WIRE_TRACE, "{addr} -> extended handshake");
        }
        let queue = MAX_QUEUED_REQUESTS as u32;
        let pex = if ctx.pex_enabled() {
            PexOffer::Offer
        } else {
            PexOffer::Omit
        };
        extensions::queue_our_handshake(&mut out, ctx.listen_port, queue, addr.ip(), None, pex);
    }
    stream
        .set_write_timeout(Some(WRITE_WAIT))
        .map_err(io_error("setting a socket option"))?;
    stream
        .set_read_timeout(Some(IDLE_WAIT))
        .map_err(io_error("setting a socket option"))?;
    let limits = Limits::unknown_pieces();
    let mut rbuf = vec![0u8; 2 * (limits.max_message_len() as usize + 4)];
    let (mut start, mut end) = (0usize, 0usize);
    let mut early = Vec::new();
    let mut remote = RemoteExtensions::default();
    let mut last_sent = Instant::now();
    let mut last_received = Instant::now();
    // After an event the manager usually answers (requests, or the
    // content): watch for it closely for a moment.
    let expect_command_until = Cell::new(Instant::now());
    let mut read_timeout = IDLE_WAIT;
    let send = |event: PeerEvent| {
        expect_command_until.set(Instant::now() + EXPECT_COMMAND_FOR);
        ctx.events_tx
            .send(Event::Peer { key, event })
            .map_err(|_| Disconnect::Closed(Closed::Normal))
    };
    loop {
        loop {
            match cmd_rx.try_recv() {
                Ok(PeerCommand::Start { have, loaded }) => {
                    early.extend_from_slice(&rbuf[start..end]);
                    debug!("{addr}: metadata known, {} bytes held back", early.len());
                    return Ok(Some(Started {
                        stream,
                        have,
                        loaded,
                        early,
                        out,
                        remote,
                        after_metadata: extensions,
                    }));
                }
                Ok(PeerCommand::RequestMetadata(piece)) => {
                    if let Some(id) = remote.ut_metadata {
                        trace!(target: WIRE_TRACE, "{addr} -> extended ut_metadata request piece {piece}");
                        extensions::queue_metadata_request(&mut out, id, piece);
                    }
                }
                Ok(PeerCommand::Pex(message)) => {
                    if let (Some(id), true) = (remote.ut_pex, ctx.pex_enabled()) {
                        trace!(target: WIRE_TRACE, "{addr} -> extended ut_pex {message:?}");
                        extensions::queue_pex(&mut out, id, &message);
                    }
                }
                Ok(PeerCommand::Shutdown) | Err(TryRecvError::Disconnected) => return Ok(None),
                Ok(_) => {}
                Err(TryRecvError::Empty) => break,
            }
        }
        if last_sent.elapsed() >= KEEPALIVE_AFTER && out.is_empty() {
            if trace_wire {
                trace!(target: WIRE_TRACE, "{addr} -> keep-alive");
            }
            Message::KeepAlive.encode(&mut out);
        }
        if last_received.elapsed() >= SILENCE_LIMIT {
            return Err(Closed::Silent(SILENCE_LIMIT.as_secs()).into());
        }
        if !out.is_empty() {
            match stream.write(&out) {
                Ok(n) => {
                    out.drain(..n);
                    last_sent = Instant::now();
                }
                Err(e) if is_timeout(&e) => {}
                Err(e) => return Err(io_error("write")(e)),
            }
        }
        let wait = if out.is_empty() && Instant::now() >= expect_command_until.get() {
            IDLE_WAIT
        } else {
            BUSY_WAIT
        };
        if wait != read_timeout {
            stream
                .set_read_timeout(Some(wait))
                .map_err(io_error("setting a socket option"))?;
            read_timeout = wait;
        }
        match stream.read(&mut rbuf[end..]) {
            Ok(0) => return Err(Closed::ByRemote.into()),
            Ok(n) => {
                end += n;
                last_received = Instant::now();
            }
            Err(e) if is_timeout(&e) => continue,
            Err(e) => return Err(io_error("read")(e)),
        }
        while let Some((message, used)) =
            Message::decode(&rbuf[start..end], limits).map_err(Violation::Wire)?
        {
            if trace_wire {
                trace!(target: WIRE_TRACE, "{addr} <- {message}");
            }
            match message {
                Message::KeepAlive => {}
                Message::Extended { id, payload } => {
                    match extensions::decode(id, payload, &mut remote, ctx.pex_enabled())
                        .map_err(Violation::Extension)?
                    {
                        Incoming::Handshake => send(PeerEvent::Extensions(remote.clone()))?,
                        Incoming::Pex(message) => send(PeerEvent::Pex(message))?,
                        Incoming::PexIgnored => {
                            debug!("{addr}: peer exchange is off, ignoring its ut_pex");
                        }
                        Incoming::Metadata(MetadataMessage::Data {
                            piece,
                            total_size,
                            data,
                        }) => send(PeerEvent::MetadataPiece {
                            piece,
                            total_size,
                            data: data.to_vec(),
                        })?,
                        Incoming::Metadata(MetadataMessage::Reject { piece }) => {
                            send(PeerEvent::MetadataRejected(piece))?;
                        }
                        Incoming::Metadata(MetadataMessage::Request { piece }) => {
                            // Rejects are small, but a remote that does not
                            // read must not grow them without bound.
                            if let (Some(id), true) = (remote.ut_metadata, out.len() < OUT_LIMIT) {
                                if trace_wire {
                                    trace!(
                                        target: WIRE_TRACE,
                                        "{addr} -> extended ut_metadata reject piece {piece}"
                                    );
                                }
                                extensions::queue_metadata_answer(&mut out, id, piece, None);
                            }
                        }
                        Incoming::Ignored => {}
                    }
                }
                _ => {
                    if early.len() + used > EARLY_LIMIT {
                        return Err(Closed::TooMuchBeforeMetadata.into());
                    }
                    early.extend_from_slice(&rbuf[start..start + used]);
                }
            }
            start += used;
        }
        if start == end {
            (start, end) = (0, 0);
        } else {
            rbuf.copy_within(start..end, 0);
            (start, end) = (0, end - start);
        }
    }
}
