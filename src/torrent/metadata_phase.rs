//! A magnet link's first state: fetching the `info` dictionary from peers
//! (BEP 9) before anything that needs it can exist.
//!
//! The torrent thread runs this loop on the torrent's event channel: it
//! dials and accepts peers through the [`PeerTable`] as the piece manager
//! will, tells each accepted peer thread to fetch metadata
//! ([`PeerCommand::FetchMetadata`]), and feeds what they report to the pure
//! [`MetadataFetch`], which says which piece to ask whom and checks the
//! assembled bytes against the info-hash. It returns the verified bytes;
//! the connections stay open, and the piece manager takes the table over.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use log::{debug, info, warn};

use crate::metadata::{Done, MetadataFetch};
use crate::peer::{PeerCommand, PeerKey};
use crate::peer_table::PeerTable;
use crate::piece_manager::{Event, PeerEvent};
use crate::progress::Progress;

/// How often requests are re-issued and the display refreshed.
const TICK: Duration = Duration::from_millis(500);

/// Fetches the metadata. `None` when told to stop first.
pub fn fetch(
    table: &mut PeerTable,
    events_rx: &Receiver<Event>,
    progress: &mut Progress,
) -> Option<Vec<u8>> {
    let mut fetch = MetadataFetch::new(table.ctx().info_hash);
    // Peers that offered the metadata and were not refused.
    let mut offering: HashSet<PeerKey> = HashSet::new();
    let mut next_tick = Instant::now();
    loop {
        let now = Instant::now();
        if now >= next_tick {
            table.pex_tick(now);
            table.dial_more(now);
            for &key in &offering {
                request(table, &mut fetch, key, now);
            }
            let (received, needed) = fetch.received_pieces();
            progress.metadata(table.connected_count(), offering.len(), received, needed);
            next_tick = now + TICK;
        }
        let event = match events_rx.recv_deadline(next_tick) {
            Ok(event) => event,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => continue,
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return None,
        };
        let now = Instant::now();
        match take(table, event, now) {
            Left::Stop => return None,
            Left::Taken => {}
            Left::Gone(key) => {
                offering.remove(&key);
                fetch.remove_peer(key);
            }
            Left::Peer(key, event) => match event {
                PeerEvent::Extensions(remote) => {
                    let Some(addr) = table.get(key).map(|c| c.addr) else {
                        continue;
                    };
                    let (Some(size), Some(_)) = (remote.metadata_size, remote.ut_metadata) else {
                        debug!("{addr}: offers no metadata");
                        // A later handshake may turn ut_metadata off.
                        offering.remove(&key);
                        fetch.remove_peer(key);
                        continue;
                    };
                    match fetch.add_peer(key, addr, size) {
                        Ok(()) => {
                            offering.insert(key);
                            request(table, &mut fetch, key, now);
                        }
                        Err(refusal) => debug!("{addr}: not asked for metadata: {refusal}"),
                    }
                }
                PeerEvent::MetadataPiece {
                    piece,
                    total_size,
                    data,
                } => match fetch.on_data(key, piece, total_size, &data) {
                    Ok(Some(Done::Verified(info))) => {
                        info!("metadata verified ({} bytes)", info.len());
                        return Some(info);
                    }
                    Ok(Some(Done::Mismatch { excluded })) => {
                        warn!(
                            "metadata does not match the info-hash; thrown away, not asking {excluded:?} again"
                        );
                        // The fetch has forgotten them; banning their IPs
                        // keeps a liar that reconnects from another port
                        // from being asked again.
                        let liars: Vec<(PeerKey, std::net::SocketAddr)> = table
                            .iter()
                            .filter(|(_, c)| excluded.contains(&c.addr))
                            .map(|(key, c)| (key, c.addr))
                            .collect();
                        for (key, addr) in liars {
                            offering.remove(&key);
                            table.ban(addr, "sent metadata that fails the info-hash");
                        }
                        for &key in &offering {
                            request(table, &mut fetch, key, now);
                        }
                    }
                    Ok(None) => request(table, &mut fetch, key, now),
                    Err(refusal) => {
                        let addr = table.get(key).map(|c| c.addr);
                        warn!("{addr:?}: bad metadata piece {piece}: {refusal}; closing");
                        offering.remove(&key);
                        fetch.remove_peer(key);
                        table.send(key, PeerCommand::Shutdown);
                    }
                },
                PeerEvent::MetadataRejected(piece) => {
                    fetch.on_reject(key, piece, now);
                    request(table, &mut fetch, key, now);
                }
                // Nothing else comes before the metadata is known.
                _ => {}
            },
        }
    }
}

/// How the wait for the start-up check ended.
pub struct Held<T> {
    /// The check's result.
    pub result: T,
    /// Shutdown was asked for meanwhile.
    pub stopped: bool,
}

/// Between the metadata and the piece manager: keeps taking the torrent's
/// events while the content is checked on another thread, until `done`
/// brings the check's result. Peers that connect meanwhile wait in the
/// metadata phase's mode (their messages held back) for the content.
/// `None` when the check ended without a result (it panicked).
pub fn hold<T>(
    table: &mut PeerTable,
    events_rx: &Receiver<Event>,
    done: &Receiver<T>,
) -> Option<Held<T>> {
    let mut stopped = false;
    loop {
        crossbeam_channel::select! {
            recv(done) -> result => return result.ok().map(|result| Held { result, stopped }),
            recv(events_rx) -> event => match event {
                Err(_) => stopped = true,
                Ok(event) => {
                    if let Left::Stop = take(table, event, Instant::now()) {
                        stopped = true;
                    }
                }
            },
        }
        if stopped && events_rx.is_empty() {
            // Nothing more to take: wait for the check alone.
            return done.recv().ok().map(|result| Held { result, stopped });
        }
    }
}

/// What is left of an event once the connection table has taken its part.
enum Left {
    /// Shutdown was asked for.
    Stop,
    /// Nothing is left.
    Taken,
    /// This connection ended (the table has forgotten it).
    Gone(PeerKey),
    /// A peer event for the caller.
    Peer(PeerKey, PeerEvent),
}

/// The part of an event that is the same in every state before the piece
/// manager: connections accepted and dialled, handshakes answered with
/// [`PeerCommand::FetchMetadata`] (the peer then waits for the content),
/// ended connections forgotten, peer exchange heard.
fn take(table: &mut PeerTable, event: Event, now: Instant) -> Left {
    match event {
        Event::Shutdown => Left::Stop,
        Event::Incoming(stream, handshake, addr) => {
            table.accept(stream, handshake, addr);
            Left::Taken
        }
        Event::Peers(addrs, source) => {
            table.add_addrs(addrs, source, now);
            table.dial_more(now);
            Left::Taken
        }
        Event::Peer {
            key,
            event: PeerEvent::Connected { peer_id },
        } => {
            if table.on_connected(key, peer_id) {
                table.send(key, PeerCommand::FetchMetadata);
            }
            Left::Taken
        }
        Event::Peer {
            key,
            event: PeerEvent::Disconnected { reason, .. },
        } => {
            table.on_disconnected(key, &reason);
            table.dial_more(now);
            Left::Gone(key)
        }
        Event::Peer {
            key,
            event: PeerEvent::Pex(message),
        } => {
            table.on_pex(key, &message, now);
            table.dial_more(now);
            Left::Taken
        }
        Event::Peer {
            key,
            event: PeerEvent::Extensions(remote),
        } => {
            table.on_extensions(key, &remote, now);
            Left::Peer(key, PeerEvent::Extensions(remote))
        }
        Event::Peer { key, event } => Left::Peer(key, event),
    }
}

/// Asks `key` for the metadata pieces the fetch gives it now.
fn request(table: &PeerTable, fetch: &mut MetadataFetch, key: PeerKey, now: Instant) {
    for piece in fetch.requests_for(key, now) {
        table.send(key, PeerCommand::RequestMetadata(piece));
    }
}
