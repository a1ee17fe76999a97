//! What the remote sends us: each message decoded from the socket, and the
//! blocks of the pieces we fetch. Part of the connection's loop
//! ([`super::Conn`]); what the remote asks of us is in `serve`.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Instant;

use log::{debug, trace};

use super::{Conn, Outcome};
use crate::bitfield::Bitfield;
use crate::peer::pipeline::BlockOutcome;
use crate::peer::wire::Message;
use crate::peer::{Violation, WIRE_TRACE};
use crate::piece_manager::PeerEvent;

impl Conn<'_> {
    pub(super) fn handle_message(&mut self, message: Message) -> Outcome {
        if self.trace_wire {
            trace!(target: WIRE_TRACE, "{} <- {message}", self.addr);
        }
        match message {
            Message::KeepAlive | Message::Unknown { .. } => {}
            Message::Port(port) => {
                if port != 0 {
                    self.ctx
                        .dht_node_seen(SocketAddr::new(self.addr.ip().to_canonical(), port));
                }
            }
            Message::Extended { id, payload } => self.on_extended(id, payload)?,
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
                    self.drop_held();
                    self.send_event(PeerEvent::Interested(false))?;
                }
            }
            Message::Have(index) => {
                if index >= self.layout.piece_count() {
                    return Err(Violation::HaveOutOfRange(index).into());
                }
                if self.they_have.set(index) {
                    if !self.done.has(index) {
                        self.wanted += 1;
                    }
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
                // After a metadata fetch the decoder could not check it yet.
                if bits.len() != self.layout.bitfield_len()
                    || !Bitfield::spare_bits_clear(bits, self.layout.piece_count())
                {
                    return Err(Violation::BadBitfield.into());
                }
                self.they_have = Bitfield::from_payload(bits, self.layout.piece_count());
                self.wanted = self.they_have.count_missing_from(&self.done);
                self.send_event(PeerEvent::Bitfield(self.they_have.clone()))?;
                self.update_interest();
            }
            Message::Request {
                index,
                begin,
                length,
            } => {
                if !self.layout.is_valid_request(index, begin, length) {
                    return Err(Violation::InvalidRequest {
                        index,
                        begin,
                        length,
                    }
                    .into());
                }
                if !self.we_have.has(index) {
                    return Err(Violation::RequestUnhad(index).into());
                }
                if self.am_choking {
                    // Requests from a choked peer are dropped, as BEP 3 allows.
                } else {
                    self.serve_queue.push((index, begin, length));
                }
            }
            Message::Cancel {
                index,
                begin,
                length,
            } => {
                self.serve_queue.cancel((index, begin, length));
                self.cancel_held((index, begin, length));
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
        // Every block read counts against the limit, wanted or late.
        self.charge_download(block.len());
        let outcome = self
            .pipeline
            .on_block(index, begin, block, Instant::now())
            .map_err(Violation::UnrequestedBlock)?;
        if outcome == BlockOutcome::Ignored {
            // Late or duplicate blocks earn the peer no credit for choking.
            debug!("{}: ignoring a late block of piece {index}", self.addr);
            self.ctx
                .stats
                .wasted
                .fetch_add(block.len() as u64, Ordering::Relaxed);
            return Ok(());
        }
        self.counters
            .downloaded
            .fetch_add(block.len() as u64, Ordering::Relaxed);
        match outcome {
            BlockOutcome::Completed { index, data } => {
                self.send_event(PeerEvent::Piece { index, data })
            }
            BlockOutcome::Probed { index } => self.send_event(PeerEvent::Probed(index)),
            _ => Ok(()),
        }
    }
}
