//! Fetching the info dictionary from peers (BEP 9) when all we have is the
//! info-hash: which metadata piece to ask of whom, assembly, the hash check,
//! and blame.
//!
//! In scope: the state of one fetch across many peers, with time passed in.
//! Out of scope: the messages' bytes ([`crate::peer::ext`]), sockets and
//! threads (the caller feeds events in and sends the requests this returns),
//! and parsing the verified dictionary ([`crate::metainfo`]). Pure code: no
//! I/O, no clock.
//!
//! Policy:
//! - Peers announce a size in their extension handshake; a size of 0 or above
//!   [`MAX_METADATA_LEN`] is refused. There is one assembly at a time, for one
//!   size; peers claiming another size wait until their size's turn (sizes
//!   with the fewest failed attempts go first, then the most claimed).
//! - Memory for the metadata is taken only as pieces arrive, never up front
//!   from a claim: a claim costs one small slot per 16 KiB piece.
//! - At most [`MAX_IN_FLIGHT`] requests per peer; a request unanswered for
//!   [`REQUEST_TIMEOUT`] may be issued again, to any peer. A peer that rejects
//!   a piece is not asked for it again for [`REJECT_BACKOFF`].
//! - On a hash mismatch the bytes are thrown away. If one address sent every
//!   piece, it is excluded from then on. If several did, nobody is excluded
//!   (an honest peer must not pay for a liar's half), but the next attempt is
//!   fetched from a single peer, so that its failure has one author.
//! - A size can only be proven wrong by the verified metadata: after that, a
//!   peer claiming another size is excluded.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sha1::{Digest, Sha1};

use crate::metainfo::InfoHash;
use crate::peer::PeerKey;
use crate::peer::ext::{MAX_METADATA_LEN, METADATA_PIECE_LEN};

/// Most metadata requests outstanding at one peer.
pub const MAX_IN_FLIGHT: usize = 2;
/// A request unanswered this long may be issued again.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a peer that rejected a piece is not asked for it again.
pub const REJECT_BACKOFF: Duration = Duration::from_secs(30);

/// How an attempt ended, when its last piece arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Done {
    /// The assembled info dictionary, hashing to the info-hash.
    Verified(Vec<u8>),
    /// Hash mismatch: the bytes were thrown away, and these addresses are
    /// excluded from now on (already forgotten here: the caller disconnects
    /// them). Empty when several peers contributed.
    Mismatch {
        /// Addresses to disconnect and never ask again.
        excluded: Vec<SocketAddr>,
    },
}

/// Why a peer's claim or message was refused: the caller does not ask that
/// peer for metadata (from [`MetadataFetch::add_peer`]) or drops it (from
/// [`MetadataFetch::on_data`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The peer claimed metadata of 0 bytes.
    EmptyMetadata,
    /// The peer claimed metadata larger than [`MAX_METADATA_LEN`].
    TooLarge {
        /// The claimed size.
        size: u32,
    },
    /// The address sent metadata that failed the hash check.
    Excluded {
        /// The address.
        addr: SocketAddr,
    },
    /// The metadata is verified and has another size.
    WrongSize {
        /// The claimed size.
        size: u32,
        /// The verified size.
        verified: u32,
    },
    /// A data message whose `total_size` is not the size the peer claimed.
    TotalSizeMismatch {
        /// The size from the peer's handshake.
        claimed: u32,
        /// The size in its data message.
        total_size: u32,
    },
    /// A data message for a piece past the end of the metadata.
    PieceOutOfRange {
        /// The piece index.
        piece: u32,
        /// Pieces in metadata of the claimed size.
        piece_count: u32,
    },
    /// A data message whose length is not its piece's.
    WrongPieceLength {
        /// The piece index.
        piece: u32,
        /// Bytes received.
        length: usize,
        /// Bytes that piece has.
        expected: u32,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::EmptyMetadata => f.write_str("claims empty metadata"),
            Refusal::TooLarge { size } => write!(
                f,
                "claims metadata of {size} bytes, more than the limit of {MAX_METADATA_LEN}"
            ),
            Refusal::Excluded { addr } => {
                write!(f, "{addr} sent metadata that failed the hash check")
            }
            Refusal::WrongSize { size, verified } => write!(
                f,
                "claims metadata of {size} bytes, but the verified metadata has {verified}"
            ),
            Refusal::TotalSizeMismatch {
                claimed,
                total_size,
            } => write!(
                f,
                "metadata total_size {total_size} differs from the {claimed} it claimed"
            ),
            Refusal::PieceOutOfRange { piece, piece_count } => write!(
                f,
                "metadata piece {piece} out of range (metadata has {piece_count} pieces)"
            ),
            Refusal::WrongPieceLength {
                piece,
                length,
                expected,
            } => write!(
                f,
                "metadata piece {piece} has {length} bytes instead of {expected}"
            ),
        }
    }
}

impl std::error::Error for Refusal {}

/// One peer that offers metadata.
#[derive(Debug)]
struct Peer {
    addr: SocketAddr,
    size: u32,
    /// Pieces it rejected, and until when it is not asked for them again.
    rejected: BTreeMap<u32, Instant>,
}

/// One metadata piece of the current attempt.
#[derive(Debug)]
enum Slot {
    Missing,
    Asked { peer: PeerKey, at: Instant },
    Received { from: SocketAddr, data: Vec<u8> },
}

/// The assembly in progress, for one size.
#[derive(Debug)]
struct Attempt {
    size: u32,
    slots: Vec<Slot>,
    received: u32,
    /// Every (peer, piece) asked in this attempt: only answers to these count.
    asked: BTreeSet<(PeerKey, u32)>,
    /// Fetch from one peer only, after a mismatch with several authors.
    single_source: bool,
    /// That peer, once chosen.
    sole: Option<PeerKey>,
}

impl Attempt {
    fn new(size: u32, single_source: bool) -> Attempt {
        let count = piece_count(size);
        Attempt {
            size,
            slots: (0..count).map(|_| Slot::Missing).collect(),
            received: 0,
            asked: BTreeSet::new(),
            single_source,
            sole: None,
        }
    }

    /// Throws away what arrived and starts again with the same size and mode.
    fn restart(&mut self) {
        *self = Attempt::new(self.size, self.single_source);
    }
}

/// The state of fetching one torrent's metadata from several peers.
#[derive(Debug)]
pub struct MetadataFetch {
    info_hash: InfoHash,
    peers: BTreeMap<PeerKey, Peer>,
    excluded: HashSet<SocketAddr>,
    /// Failed attempts per size, so other sizes get their turn.
    failures: BTreeMap<u32, u32>,
    attempt: Option<Attempt>,
    /// The next attempt is fetched from one peer.
    single_source_next: bool,
    /// The size of the verified metadata, once done.
    verified: Option<u32>,
}

impl MetadataFetch {
    /// A fetch of the metadata that hashes to `info_hash`, with no peers yet.
    pub fn new(info_hash: InfoHash) -> MetadataFetch {
        MetadataFetch {
            info_hash,
            peers: BTreeMap::new(),
            excluded: HashSet::new(),
            failures: BTreeMap::new(),
            attempt: None,
            single_source_next: false,
            verified: None,
        }
    }

    /// A peer's extension handshake said it has metadata of `size` bytes. A
    /// peer already known under `key` is replaced (its requests are returned).
    ///
    /// # Errors
    /// A [`Refusal`] when `size` is 0 or above [`MAX_METADATA_LEN`], when the
    /// address is excluded, or when the metadata is verified with another
    /// size (the address is then excluded); the caller never asks that peer.
    pub fn add_peer(&mut self, key: PeerKey, addr: SocketAddr, size: u32) -> Result<(), Refusal> {
        self.remove_peer(key);
        if size == 0 {
            return Err(Refusal::EmptyMetadata);
        }
        if size > MAX_METADATA_LEN {
            return Err(Refusal::TooLarge { size });
        }
        if self.excluded.contains(&addr) {
            return Err(Refusal::Excluded { addr });
        }
        if let Some(verified) = self.verified.filter(|&v| v != size) {
            self.excluded.insert(addr);
            return Err(Refusal::WrongSize { size, verified });
        }
        self.peers.insert(
            key,
            Peer {
                addr,
                size,
                rejected: BTreeMap::new(),
            },
        );
        self.choose_attempt();
        Ok(())
    }

    /// A peer left: the pieces it was asked for become requestable again
    /// (those it delivered stay, unless it was the single source).
    pub fn remove_peer(&mut self, key: PeerKey) {
        if self.peers.remove(&key).is_none() {
            return;
        }
        if let Some(attempt) = &mut self.attempt {
            if attempt.sole == Some(key) {
                attempt.restart();
            }
            for slot in &mut attempt.slots {
                if matches!(slot, Slot::Asked { peer, .. } if *peer == key) {
                    *slot = Slot::Missing;
                }
            }
        }
        self.choose_attempt();
    }

    /// The metadata pieces to request from this peer now, at most
    /// [`MAX_IN_FLIGHT`] outstanding; empty for an unknown or waiting peer.
    ///
    /// Call it after each event about the peer and about once a second, so
    /// that requests that timed out are issued again.
    pub fn requests_for(&mut self, key: PeerKey, now: Instant) -> Vec<u32> {
        let (Some(peer), Some(attempt)) = (self.peers.get_mut(&key), self.attempt.as_mut()) else {
            return Vec::new();
        };
        if peer.size != attempt.size || self.verified.is_some() {
            return Vec::new();
        }
        peer.rejected.retain(|_, until| *until > now);
        if attempt.single_source {
            if attempt.sole.is_none() && peer.rejected.is_empty() {
                attempt.sole = Some(key);
            }
            if attempt.sole != Some(key) {
                return Vec::new();
            }
        }
        let waited = |at: Instant| now.saturating_duration_since(at);
        let in_flight = attempt
            .slots
            .iter()
            .filter(|slot| match slot {
                Slot::Asked { peer, at } => *peer == key && waited(*at) < REQUEST_TIMEOUT,
                _ => false,
            })
            .count();
        // A request that timed out goes to another peer; its own peer gets it
        // back only after twice as long (or after the timeout, when it is the
        // single source).
        let own_timeout = if attempt.single_source {
            REQUEST_TIMEOUT
        } else {
            2 * REQUEST_TIMEOUT
        };
        let mut wanted = Vec::new();
        for (index, slot) in attempt.slots.iter_mut().enumerate() {
            if in_flight + wanted.len() >= MAX_IN_FLIGHT {
                break;
            }
            let index = index as u32;
            let free = match slot {
                Slot::Missing => true,
                Slot::Asked { peer, at } if *peer == key => waited(*at) >= own_timeout,
                Slot::Asked { at, .. } => waited(*at) >= REQUEST_TIMEOUT,
                Slot::Received { .. } => false,
            };
            if free && !peer.rejected.contains_key(&index) {
                *slot = Slot::Asked { peer: key, at: now };
                attempt.asked.insert((key, index));
                wanted.push(index);
            }
        }
        wanted
    }

    /// A data message from a peer. Answers to requests of an earlier attempt,
    /// pieces already received and messages from unknown peers are ignored.
    ///
    /// Returns how the attempt ended when this was its last piece.
    ///
    /// # Errors
    /// A [`Refusal`] when `total_size` differs from the size the peer claimed,
    /// the piece is out of range, or the data is not exactly 16 KiB (the
    /// remainder for the last piece); the caller drops the peer.
    pub fn on_data(
        &mut self,
        key: PeerKey,
        piece: u32,
        total_size: u32,
        data: &[u8],
    ) -> Result<Option<Done>, Refusal> {
        let Some(peer) = self.peers.get(&key) else {
            return Ok(None);
        };
        let claimed = peer.size;
        if total_size != claimed {
            return Err(Refusal::TotalSizeMismatch {
                claimed,
                total_size,
            });
        }
        let count = piece_count(claimed);
        if piece >= count {
            return Err(Refusal::PieceOutOfRange {
                piece,
                piece_count: count,
            });
        }
        let expected = piece_len(claimed, piece);
        if data.len() != expected as usize {
            return Err(Refusal::WrongPieceLength {
                piece,
                length: data.len(),
                expected,
            });
        }
        let addr = peer.addr;
        let Some(attempt) = self.attempt.as_mut() else {
            return Ok(None);
        };
        // Same size, so `piece` is in range of the slots.
        if attempt.size != claimed || !attempt.asked.contains(&(key, piece)) {
            return Ok(None);
        }
        let slot = &mut attempt.slots[piece as usize];
        if matches!(slot, Slot::Received { .. }) {
            return Ok(None);
        }
        *slot = Slot::Received {
            from: addr,
            data: data.to_vec(),
        };
        attempt.received += 1;
        if attempt.received < count {
            return Ok(None);
        }
        let attempt = self.attempt.take().expect("the attempt just completed");
        Ok(Some(self.finish(attempt)))
    }

    /// The peer will not send `piece`: it is asked of others, and not of this
    /// peer again for [`REJECT_BACKOFF`]. A single source that rejects is
    /// given up, and the attempt starts again from another peer.
    pub fn on_reject(&mut self, key: PeerKey, piece: u32, now: Instant) {
        // Out of range is not remembered: a hostile peer could fill the map.
        let Some(peer) = self
            .peers
            .get_mut(&key)
            .filter(|p| piece < piece_count(p.size))
        else {
            return;
        };
        peer.rejected.insert(piece, now + REJECT_BACKOFF);
        let Some(attempt) = &mut self.attempt else {
            return;
        };
        if attempt.sole == Some(key) {
            attempt.restart();
            return;
        }
        if let Some(slot) = attempt.slots.get_mut(piece as usize)
            && matches!(slot, Slot::Asked { peer, .. } if *peer == key)
        {
            *slot = Slot::Missing;
        }
    }

    /// Pieces received and pieces needed in the current attempt, for the
    /// progress line; `(0, 0)` before any peer offered metadata.
    pub fn received_pieces(&self) -> (u32, u32) {
        match (&self.attempt, self.verified) {
            (_, Some(size)) => (piece_count(size), piece_count(size)),
            (Some(attempt), None) => (attempt.received, attempt.slots.len() as u32),
            (None, None) => (0, 0),
        }
    }

    /// Hashes a complete attempt and blames its authors on a mismatch.
    fn finish(&mut self, attempt: Attempt) -> Done {
        let mut bytes = Vec::with_capacity(attempt.size as usize);
        let mut authors = BTreeSet::new();
        for slot in attempt.slots {
            let Slot::Received { from, data } = slot else {
                unreachable!("every piece of a finished attempt was received");
            };
            authors.insert(from);
            bytes.extend_from_slice(&data);
        }
        if InfoHash(Sha1::digest(&bytes).into()) == self.info_hash {
            self.verified = Some(attempt.size);
            return Done::Verified(bytes);
        }
        *self.failures.entry(attempt.size).or_default() += 1;
        let excluded: Vec<SocketAddr> = if authors.len() == 1 {
            self.single_source_next = false;
            authors.into_iter().collect()
        } else {
            self.single_source_next = true;
            Vec::new()
        };
        for addr in &excluded {
            self.excluded.insert(*addr);
            self.peers.retain(|_, peer| peer.addr != *addr);
        }
        self.choose_attempt();
        Done::Mismatch { excluded }
    }

    /// Starts an attempt when there is none, or when nobody offers the
    /// current one's size any more and another size is offered.
    fn choose_attempt(&mut self) {
        if self.verified.is_some() {
            return;
        }
        let offered = |size: u32| self.peers.values().any(|p| p.size == size);
        if self.attempt.as_ref().is_some_and(|a| offered(a.size)) {
            return;
        }
        let mut claims: BTreeMap<u32, usize> = BTreeMap::new();
        for peer in self.peers.values() {
            *claims.entry(peer.size).or_default() += 1;
        }
        // Fewest failures first, then the most claimed, then the smallest.
        let best = claims.into_iter().min_by_key(|&(size, count)| {
            let failures = self.failures.get(&size).copied().unwrap_or(0);
            (failures, std::cmp::Reverse(count), size)
        });
        if let Some((size, _)) = best {
            let single_source = std::mem::take(&mut self.single_source_next);
            self.attempt = Some(Attempt::new(size, single_source));
        }
    }
}

/// Metadata pieces in metadata of `size` bytes.
fn piece_count(size: u32) -> u32 {
    size.div_ceil(METADATA_PIECE_LEN)
}

/// Length of metadata piece `piece` (which must be in range).
fn piece_len(size: u32, piece: u32) -> u32 {
    (size - piece * METADATA_PIECE_LEN).min(METADATA_PIECE_LEN)
}

#[cfg(test)]
mod tests;
