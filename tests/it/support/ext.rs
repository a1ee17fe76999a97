//! The BEP 10 extension protocol and BEP 9 ut_metadata written by hand, for
//! the scripted peers of `meta_peer` and for [`Dialer`], the tests' own small
//! client: the handshake with the extension bit, length-prefixed frames, the
//! extended handshake, the three ut_metadata messages, and a [`Wire`] whose
//! every read is bounded by a deadline.
//!
//! Independent of the client's code on purpose: the tests hold the client to
//! the BEPs as read here, not to itself.
//!
//! Out of scope: what a scripted peer answers (see `meta_peer`).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::bencode::{B, Value, decode};

/// Length of a BEP 3 handshake.
pub const HANDSHAKE_LEN: usize = 68;
/// BEP 3 `unchoke`.
pub const UNCHOKE: u8 = 1;
/// BEP 3 `bitfield`.
pub const BITFIELD: u8 = 5;
/// BEP 3 `request`.
pub const REQUEST: u8 = 6;
/// BEP 3 `piece`.
pub const PIECE: u8 = 7;
/// BEP 10: the message id of every extended message.
pub const EXTENDED: u8 = 20;
/// BEP 10: the extended id of the extended handshake.
pub const EXT_HANDSHAKE: u8 = 0;
/// BEP 9: metadata travels in pieces of 16 KiB, the last one shorter.
pub const METADATA_PIECE_LEN: usize = 16 * 1024;
/// BEP 9 `msg_type` of a request.
pub const MSG_REQUEST: i64 = 0;
/// BEP 9 `msg_type` of data (a piece of the metadata follows the dictionary).
pub const MSG_DATA: i64 = 1;
/// BEP 9 `msg_type` of a reject.
pub const MSG_REJECT: i64 = 2;
/// The extended id our [`Dialer`] asks to receive ut_metadata messages with.
pub const DIALER_UT_METADATA: u8 = 7;

/// How long one socket read may block before the stop flag is looked at.
const POLL: Duration = Duration::from_millis(50);
/// Longest a single write may block (the remote may not be reading).
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a connect may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest frame accepted from the client: far above a block or a metadata
/// piece, far below anything that could hurt.
const MAX_FRAME_LEN: usize = 1 << 20;
/// How long a [`Dialer`] lives at most.
const DIALER_LIFETIME: Duration = Duration::from_secs(30);

/// A handshake as received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerHandshake {
    pub reserved: [u8; 8],
    pub info_hash: [u8; 20],
    pub peer_id: [u8; 20],
}

impl PeerHandshake {
    /// Whether the sender set the BEP 10 bit (reserved byte 5, 0x10).
    pub fn supports_extensions(&self) -> bool {
        self.reserved[5] & 0x10 != 0
    }
}

/// A BEP 3 handshake for `info_hash` with the BEP 10 bit set.
pub fn handshake(info_hash: &[u8; 20], peer_id: &[u8; 20]) -> Vec<u8> {
    let mut out = vec![19];
    out.extend_from_slice(b"BitTorrent protocol");
    let mut reserved = [0u8; 8];
    reserved[5] |= 0x10;
    out.extend_from_slice(&reserved);
    out.extend_from_slice(info_hash);
    out.extend_from_slice(peer_id);
    out
}

/// A message: 4-byte big-endian length, id, payload.
pub fn frame(id: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = ((payload.len() + 1) as u32).to_be_bytes().to_vec();
    out.push(id);
    out.extend_from_slice(payload);
    out
}

/// A BEP 10 extended message with extended id `ext_id`.
pub fn extended(ext_id: u8, payload: &[u8]) -> Vec<u8> {
    let mut body = vec![ext_id];
    body.extend_from_slice(payload);
    frame(EXTENDED, &body)
}

/// The payload of an extended handshake: `m` with `ut_metadata`, then
/// `metadata_size` when given, then `v` (keys in sorted order).
pub fn ext_handshake(ut_metadata: u8, metadata_size: Option<u64>) -> Vec<u8> {
    ext_handshake_with_reqq(ut_metadata, metadata_size, None)
}

/// An extended handshake as [`ext_handshake`], with a `reqq` when given.
pub fn ext_handshake_with_reqq(
    ut_metadata: u8,
    metadata_size: Option<u64>,
    reqq: Option<u32>,
) -> Vec<u8> {
    let mut dict = vec![(
        "m",
        B::Dict(vec![("ut_metadata", B::Int(i64::from(ut_metadata)))]),
    )];
    if let Some(size) = metadata_size {
        dict.push(("metadata_size", B::Int(size as i64)));
    }
    if let Some(reqq) = reqq {
        dict.push(("reqq", B::Int(i64::from(reqq))));
    }
    dict.push(("v", B::str("scripted 0.1")));
    B::Dict(dict).encode()
}

/// A ut_metadata `request` for `piece`: `d8:msg_typei0e5:piecei0ee`.
pub fn ut_request(piece: u32) -> Vec<u8> {
    ut_header(MSG_REQUEST, piece, None)
}

/// A ut_metadata `reject` of `piece`.
pub fn ut_reject(piece: u32) -> Vec<u8> {
    ut_header(MSG_REJECT, piece, None)
}

/// A ut_metadata `data` message: the dictionary with `total_size`, then the
/// piece's bytes.
pub fn ut_data(piece: u32, total_size: u64, data: &[u8]) -> Vec<u8> {
    let mut out = ut_header(MSG_DATA, piece, Some(total_size));
    out.extend_from_slice(data);
    out
}

fn ut_header(msg_type: i64, piece: u32, total_size: Option<u64>) -> Vec<u8> {
    let mut dict = vec![
        ("msg_type", B::Int(msg_type)),
        ("piece", B::Int(i64::from(piece))),
    ];
    if let Some(size) = total_size {
        dict.push(("total_size", B::Int(size as i64)));
    }
    B::Dict(dict).encode()
}

/// A ut_metadata message as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UtMessage {
    pub msg_type: i64,
    pub piece: i64,
    pub total_size: Option<i64>,
    /// The bytes after the dictionary (a `data` message's piece).
    pub data: Vec<u8>,
}

/// Parses a ut_metadata payload (after the extended id).
pub fn parse_ut(payload: &[u8]) -> Option<UtMessage> {
    let (dict, used) = decode(payload)?;
    Some(UtMessage {
        msg_type: dict.get("msg_type")?.int()?,
        piece: dict.get("piece")?.int()?,
        total_size: dict.get("total_size").and_then(Value::int),
        data: payload[used..].to_vec(),
    })
}

/// Number of metadata pieces for `len` bytes of metadata.
pub fn metadata_piece_count(len: usize) -> u32 {
    len.div_ceil(METADATA_PIECE_LEN) as u32
}

/// Metadata piece `piece` of `metadata`, `None` past the end.
pub fn metadata_piece(metadata: &[u8], piece: u32) -> Option<&[u8]> {
    let start = piece as usize * METADATA_PIECE_LEN;
    if start >= metadata.len() {
        return None;
    }
    Some(&metadata[start..metadata.len().min(start + METADATA_PIECE_LEN)])
}

/// Why a scripted connection ended.
#[derive(Debug)]
pub enum End {
    /// The script finished.
    ClosedByUs,
    /// The remote closed or reset the connection.
    ClosedByRemote,
    /// The stop flag was raised or the connection's deadline passed.
    Stopped,
    /// The remote sent something this code does not accept.
    Protocol(String),
    /// Any other socket error.
    Io(io::Error),
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            End::ClosedByUs => f.write_str("closed by the script"),
            End::ClosedByRemote => f.write_str("closed by the remote"),
            End::Stopped => f.write_str("stopped (test over or deadline passed)"),
            End::Protocol(e) => write!(f, "protocol error: {e}"),
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
pub type Step<T> = Result<T, End>;

/// One message as received: its id and payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub id: u8,
    pub payload: Vec<u8>,
}

/// A connection whose reads wake every [`POLL`] to look at a stop flag and
/// a deadline, so nothing built on it can hang.
pub struct Wire {
    stream: TcpStream,
    buf: Vec<u8>,
    deadline: Instant,
    stop: Arc<AtomicBool>,
    /// Bytes received in all, for tests that expect none.
    pub received_len: usize,
}

impl Wire {
    /// Wraps `stream` (blocking, with read and write timeouts set here).
    pub fn new(stream: TcpStream, deadline: Instant, stop: Arc<AtomicBool>) -> io::Result<Wire> {
        // An accepted socket may inherit the listener's non-blocking mode.
        stream.set_nonblocking(false)?;
        stream.set_read_timeout(Some(POLL))?;
        stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
        stream.set_nodelay(true)?;
        Ok(Wire {
            stream,
            buf: Vec::new(),
            deadline,
            stop,
            received_len: 0,
        })
    }

    fn should_stop(&self) -> bool {
        self.stop.load(Ordering::SeqCst) || Instant::now() >= self.deadline
    }

    /// One read of at most [`POLL`] into the buffer.
    fn read_some(&mut self) -> Step<()> {
        if self.should_stop() {
            return Err(End::Stopped);
        }
        let mut chunk = [0u8; 64 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => Err(End::ClosedByRemote),
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                self.received_len += n;
                Ok(())
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Sends `bytes`.
    pub fn send(&mut self, bytes: &[u8]) -> Step<()> {
        if self.should_stop() {
            return Err(End::Stopped);
        }
        Ok(self.stream.write_all(bytes)?)
    }

    /// Reads the remote's handshake.
    pub fn read_handshake(&mut self) -> Step<PeerHandshake> {
        while self.buf.len() < HANDSHAKE_LEN {
            self.read_some()?;
        }
        let bytes: Vec<u8> = self.buf.drain(..HANDSHAKE_LEN).collect();
        if bytes[0] != 19 || &bytes[1..20] != b"BitTorrent protocol" {
            return Err(End::Protocol("not a BitTorrent handshake".into()));
        }
        let mut handshake = PeerHandshake {
            reserved: [0; 8],
            info_hash: [0; 20],
            peer_id: [0; 20],
        };
        handshake.reserved.copy_from_slice(&bytes[20..28]);
        handshake.info_hash.copy_from_slice(&bytes[28..48]);
        handshake.peer_id.copy_from_slice(&bytes[48..68]);
        Ok(handshake)
    }

    /// Whether a whole message (or keep-alive) is buffered.
    pub fn has_frame(&self) -> bool {
        self.buf.len() >= 4
            && self.buf.len()
                >= 4 + u32::from_be_bytes(self.buf[..4].try_into().expect("4 bytes")) as usize
    }

    /// Waits up to one poll for more bytes.
    pub fn poll(&mut self) -> Step<()> {
        self.read_some()
    }

    /// The next message other than a keep-alive.
    pub fn next_frame(&mut self) -> Step<Frame> {
        loop {
            if self.buf.len() >= 4 {
                let len = u32::from_be_bytes(self.buf[..4].try_into().expect("4 bytes")) as usize;
                if len > MAX_FRAME_LEN {
                    return Err(End::Protocol(format!("length prefix {len}")));
                }
                if len == 0 {
                    self.buf.drain(..4);
                    continue;
                }
                if self.buf.len() >= 4 + len {
                    let body: Vec<u8> = self.buf.drain(..4 + len).skip(4).collect();
                    return Ok(Frame {
                        id: body[0],
                        payload: body[1..].to_vec(),
                    });
                }
            }
            self.read_some()?;
        }
    }

    /// Reads and discards until the remote closes.
    pub fn wait_closed(&mut self) -> Step<()> {
        loop {
            match self.read_some() {
                Ok(()) => self.buf.clear(),
                Err(End::ClosedByRemote) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }
}

/// A peer id for a scripted peer or dialer, distinct per `n` (sessions
/// close a second connection with an id they already know).
pub fn scripted_peer_id(kind: &str, n: u64) -> [u8; 20] {
    let id = format!("-{kind}0001-{n:012}");
    id.as_bytes()
        .try_into()
        .expect("a 2-letter kind makes 20 bytes")
}

/// The tests' own minimal client: dials a session under test, handshakes
/// with the BEP 10 bit, and fetches metadata by ut_metadata.
pub struct Dialer {
    wire: Wire,
    /// The remote's handshake.
    pub theirs: PeerHandshake,
    their_ut_metadata: Option<u8>,
}

impl Dialer {
    /// Connects to `addr` and exchanges handshakes for `info_hash`; fails
    /// if the remote's names another torrent.
    pub fn connect(addr: SocketAddr, info_hash: &[u8; 20]) -> Step<Dialer> {
        let mut wire = dial(addr)?;
        let port = wire.stream.local_addr().map_or(0, |a| a.port());
        wire.send(&handshake(info_hash, &scripted_peer_id("DI", port.into())))?;
        let theirs = wire.read_handshake()?;
        if &theirs.info_hash != info_hash {
            return Err(End::Protocol("handshake for another torrent".into()));
        }
        Ok(Dialer {
            wire,
            theirs,
            their_ut_metadata: None,
        })
    }

    /// Sends raw bytes.
    pub fn send(&mut self, bytes: &[u8]) -> Step<()> {
        self.wire.send(bytes)
    }

    /// The next message from the remote other than a keep-alive.
    pub fn next_frame(&mut self) -> Step<Frame> {
        self.wire.next_frame()
    }

    /// The port our end of the connection has.
    pub fn local_port(&self) -> u16 {
        self.wire.stream.local_addr().map_or(0, |a| a.port())
    }

    /// Sends our extended handshake and returns the remote's (other
    /// messages before it are skipped).
    pub fn exchange_ext_handshakes(&mut self) -> Step<Value> {
        self.wire.send(&extended(
            EXT_HANDSHAKE,
            &ext_handshake(DIALER_UT_METADATA, None),
        ))?;
        loop {
            let frame = self.wire.next_frame()?;
            if frame.id == EXTENDED && frame.payload.first() == Some(&EXT_HANDSHAKE) {
                let (dict, _) = decode(&frame.payload[1..])
                    .ok_or_else(|| End::Protocol("extended handshake is not bencode".into()))?;
                self.their_ut_metadata = dict
                    .get("m")
                    .and_then(|m| m.get("ut_metadata"))
                    .and_then(Value::int)
                    .and_then(|id| u8::try_from(id).ok());
                return Ok(dict);
            }
        }
    }

    /// Requests metadata pieces `0..piece_count` at once and returns them
    /// joined; a reject or a missing ut_metadata id is an error.
    pub fn fetch_metadata(&mut self, piece_count: u32) -> Step<Vec<u8>> {
        let ut = self
            .their_ut_metadata
            .filter(|&id| id != 0)
            .ok_or_else(|| End::Protocol("no ut_metadata in their m".into()))?;
        for piece in 0..piece_count {
            self.wire.send(&extended(ut, &ut_request(piece)))?;
        }
        let mut pieces: Vec<Option<Vec<u8>>> = vec![None; piece_count as usize];
        while pieces.iter().any(Option::is_none) {
            let frame = self.wire.next_frame()?;
            if frame.id != EXTENDED || frame.payload.first() != Some(&DIALER_UT_METADATA) {
                continue;
            }
            let message = parse_ut(&frame.payload[1..])
                .ok_or_else(|| End::Protocol("bad ut_metadata message".into()))?;
            let slot = usize::try_from(message.piece)
                .ok()
                .and_then(|i| pieces.get_mut(i))
                .ok_or_else(|| End::Protocol(format!("piece {} unasked", message.piece)))?;
            match message.msg_type {
                MSG_DATA => *slot = Some(message.data),
                MSG_REJECT => {
                    return Err(End::Protocol(format!("piece {} rejected", message.piece)));
                }
                other => return Err(End::Protocol(format!("msg_type {other}"))),
            }
        }
        Ok(pieces.into_iter().flatten().flatten().collect())
    }
}

/// Dials `addr` with a handshake for `info_hash` (BEP 10 bit set) and waits
/// for the remote to close the connection; returns the bytes it sent first.
/// `Err(End::Stopped)` when it kept the connection open for
/// [`DIALER_LIFETIME`].
pub fn bytes_before_close(addr: SocketAddr, info_hash: &[u8; 20]) -> Step<usize> {
    let mut wire = dial(addr)?;
    let port = wire.stream.local_addr().map_or(0, |a| a.port());
    wire.send(&handshake(info_hash, &scripted_peer_id("UN", port.into())))?;
    wire.wait_closed()?;
    Ok(wire.received_len)
}

fn dial(addr: SocketAddr) -> Step<Wire> {
    let stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)?;
    let deadline = Instant::now() + DIALER_LIFETIME;
    Ok(Wire::new(
        stream,
        deadline,
        Arc::new(AtomicBool::new(false)),
    )?)
}
