//! Serving the remote from one connection: its block requests read from
//! storage and its metadata requests (BEP 9), answered while the output has
//! room, and the writes that drain the output without blocking for long.
//! Both request queues are bounded, so a remote that asks without reading
//! cannot grow our memory.

use std::io::Write;
use std::sync::atomic::Ordering;
use std::time::Instant;

use log::debug;

use super::{Conn, Outcome, io_error, is_timeout};
use crate::peer::ext::MetadataMessage;
use crate::peer::extensions::{self, Incoming};
use crate::peer::wire;
use crate::peer::{Closed, Violation};
use crate::piece_manager::PeerEvent;

/// Stop reading blocks from disk for the remote while this much output is queued.
const OUTPUT_HIGH_WATER: usize = 512 * 1024;
/// Most bytes served in one turn of the loop before it reads the socket.
const SERVE_BURST: usize = 4 * 1024 * 1024;
/// Most metadata requests from the remote waiting for an answer: a whole
/// 16 MiB info dictionary has 1,024 pieces, and honest peers ask a few at
/// a time.
const MAX_QUEUED_METADATA: usize = 64;

impl Conn<'_> {
    pub(super) fn pending_output(&self) -> usize {
        self.out.len() - self.out_pos
    }

    /// Serves queued requests and writes, until the socket takes no more at
    /// once, nothing is left to serve, or [`SERVE_BURST`] bytes went out.
    pub(super) fn write_out(&mut self) -> Outcome {
        let mut sent = 0;
        loop {
            self.fill_output()?;
            let before = self.pending_output();
            self.write_some()?;
            sent += before - self.pending_output();
            let nothing_to_serve =
                !self.can_serve_now(Instant::now()) && self.metadata_queue.is_empty();
            if self.pending_output() > 0 || nothing_to_serve || sent >= SERVE_BURST {
                return Ok(());
            }
        }
    }

    /// Sends what is already queued before the connection closes at the
    /// manager's word, for at most [`FLUSH_WAIT`](super::FLUSH_WAIT): the
    /// blocks counted as uploaded (a seed run that ends at its ratio has
    /// counted them), a last `have`. A remote that does not read loses it.
    pub(super) fn flush_before_close(&mut self) {
        let deadline = Instant::now() + super::FLUSH_WAIT;
        while self.pending_output() > 0 && Instant::now() < deadline {
            if self.write_some().is_err() {
                return;
            }
        }
    }

    /// Writes as much queued output as the socket takes within [`WRITE_WAIT`](super::WRITE_WAIT).
    pub(super) fn write_some(&mut self) -> Outcome {
        if self.pending_output() == 0 {
            return Ok(());
        }
        match self.stream.write(&self.out[self.out_pos..]) {
            Ok(n) => {
                self.out_pos += n;
                self.last_sent = Instant::now();
            }
            Err(e) if is_timeout(&e) => {}
            Err(e) => return Err(io_error("write")(e)),
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

    /// Reads requested blocks from disk into the output while it is not
    /// too full and the upload limit allows.
    pub(super) fn fill_output(&mut self) -> Outcome {
        while self.pending_output() < OUTPUT_HIGH_WATER {
            let Some(piece) = self.metadata_queue.pop_front() else {
                break;
            };
            if let Some(remote_id) = self.remote.ut_metadata {
                self.trace_sent(format_args!("extended ut_metadata piece {piece}"));
                let info = Some(&self.loaded.info_bytes[..]);
                extensions::queue_metadata_answer(&mut self.out, remote_id, piece, info);
            }
        }
        while self.pending_output() < OUTPUT_HIGH_WATER {
            let Some((index, begin, length)) = self.next_to_serve() else {
                break;
            };
            wire::encode_piece_header(&mut self.out, index, begin, length);
            let at = self.out.len();
            self.out.resize(at + length as usize, 0);
            let offset = self.layout.piece_offset(index) + u64::from(begin);
            self.loaded
                .storage
                .read_at(offset, &mut self.out[at..])
                .map_err(|e| Closed::Storage(format!("piece {index}: {e}")))?;
            self.ctx
                .stats
                .uploaded
                .fetch_add(u64::from(length), Ordering::Relaxed);
            self.counters
                .uploaded
                .fetch_add(u64::from(length), Ordering::Relaxed);
            self.trace_sent(format_args!("piece {index} begin {begin} length {length}"));
        }
        Ok(())
    }

    /// An extended message (BEP 10): the remote's handshake (reported to
    /// the manager), a request for our metadata (BEP 9), or a `ut_pex`
    /// message (BEP 11, handed to the manager). Anything else is ignored.
    pub(super) fn on_extended(&mut self, id: u8, payload: &[u8]) -> Outcome {
        let pex = self.ctx.pex_enabled();
        match extensions::decode(id, payload, &mut self.remote, pex)
            .map_err(Violation::Extension)?
        {
            Incoming::Handshake => {
                debug!(
                    "{}: extended handshake from {:?}, reqq {:?}",
                    self.addr, self.remote.client, self.remote.reqq
                );
                if let Some(reqq) = self.remote.reqq {
                    self.pipeline.set_remote_queue(reqq as usize);
                }
                self.send_event(PeerEvent::Extensions(self.remote.clone()))?;
            }
            Incoming::Pex(message) => self.send_event(PeerEvent::Pex(message))?,
            Incoming::PexIgnored => {
                debug!("{}: peer exchange is off, ignoring its ut_pex", self.addr);
            }
            Incoming::Metadata(MetadataMessage::Request { piece }) => {
                // Each answer is up to 16 KiB for a request of ~30 bytes:
                // past the bound, requests are dropped, not answered.
                if self.metadata_queue.len() < MAX_QUEUED_METADATA {
                    self.metadata_queue.push_back(piece);
                } else {
                    debug!("{}: too many metadata requests, dropping one", self.addr);
                }
            }
            // Metadata we did not ask for: we have it already.
            Incoming::Metadata(_) | Incoming::Ignored => {}
        }
        Ok(())
    }
}
