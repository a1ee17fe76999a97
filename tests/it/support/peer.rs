//! A scripted remote peer for replaying what real clients do on the wire:
//! it connects to a session over loopback, handshakes, and then sends and
//! expects messages one at a time, each read bounded by a timeout.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use bittorrent::metainfo::InfoHash;
use bittorrent::peer::wire::{self, Handshake, Limits, Message, PeerId};

/// How long the scripted peer waits for any one message.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// One message as it arrived, owned, for assertions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// A `bitfield` with its payload.
    Bitfield(Vec<u8>),
    /// A `piece` message.
    Piece {
        /// Piece index.
        index: u32,
        /// Offset in the piece.
        begin: u32,
        /// The block.
        block: Vec<u8>,
    },
    /// A `request` message.
    Request {
        /// Piece index.
        index: u32,
        /// Offset in the piece.
        begin: u32,
        /// Bytes asked for.
        length: u32,
    },
    /// Any other message, by its debug text.
    Other(String),
}

/// A connection to a session under test, playing a remote client.
pub struct ScriptedPeer {
    stream: TcpStream,
    limits: Limits,
    buf: Vec<u8>,
}

impl ScriptedPeer {
    /// Connects to `addr` and exchanges handshakes for `info_hash`. It
    /// connects from 127.0.4.1, not 127.0.0.1: bans are by IP, and the
    /// honest sessions of a test use 127.0.0.1.
    pub fn connect(addr: SocketAddr, info_hash: InfoHash, piece_count: u32) -> ScriptedPeer {
        let from = std::net::Ipv4Addr::new(127, 0, 4, 1);
        ScriptedPeer::connect_as(addr, info_hash, piece_count, from, *b"-XX0001-scriptedpeer")
    }

    /// [`ScriptedPeer::connect`] from the loopback address `from` with
    /// the peer id `peer_id`, for tests with several scripted peers (a
    /// second connection from one IP with the same id is refused).
    pub fn connect_as(
        addr: SocketAddr,
        info_hash: InfoHash,
        piece_count: u32,
        from: std::net::Ipv4Addr,
        peer_id: [u8; 20],
    ) -> ScriptedPeer {
        let mut stream = super::net::connect_from(from, addr).unwrap();
        stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        let ours = Handshake::new(info_hash, PeerId(peer_id));
        stream.write_all(&ours.encode()).unwrap();
        let mut theirs = [0u8; wire::HANDSHAKE_LEN];
        stream.read_exact(&mut theirs).unwrap();
        let theirs = Handshake::decode(&theirs).unwrap();
        assert_eq!(theirs.info_hash, info_hash);
        ScriptedPeer {
            stream,
            limits: Limits::for_pieces(piece_count),
            buf: Vec::new(),
        }
    }

    /// The scripted peer's own address, as the session sees it.
    pub fn local_addr(&self) -> SocketAddr {
        self.stream.local_addr().unwrap()
    }

    /// Sends one message.
    pub fn send(&mut self, message: Message<'_>) {
        let mut out = Vec::new();
        message.encode(&mut out);
        self.stream.write_all(&out).unwrap();
    }

    /// Sends `messages` in one write, so they arrive together.
    pub fn send_together(&mut self, messages: &[Message<'_>]) {
        let mut out = Vec::new();
        for message in messages {
            message.encode(&mut out);
        }
        self.stream.write_all(&out).unwrap();
    }

    /// The next message other than keep-alive, or `None` if none arrives
    /// within `within`.
    ///
    /// # Errors
    /// The session closed the connection, or reading failed.
    pub fn recv_within(&mut self, within: Duration) -> std::io::Result<Option<Received>> {
        self.stream.set_read_timeout(Some(within))?;
        let got = self.try_recv();
        self.stream.set_read_timeout(Some(READ_TIMEOUT))?;
        match got {
            Ok(received) => Ok(Some(received)),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Waits until the session closes the connection; fails the test if it
    /// is still open after the read timeout.
    pub fn wait_closed(&mut self) {
        let mut chunk = [0u8; 64 * 1024];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return,
                Err(e) => panic!("the session did not close the connection: {e}"),
            }
        }
    }

    /// The next message other than keep-alive; fails the test if the
    /// connection closes or nothing arrives in time.
    pub fn recv(&mut self) -> Received {
        self.try_recv()
            .unwrap_or_else(|e| panic!("the session did not answer: {e}"))
    }

    /// The next message other than keep-alive, or why none came: the read
    /// timed out, or the session closed the connection.
    fn try_recv(&mut self) -> std::io::Result<Received> {
        loop {
            if let Some((message, used)) = Message::decode(&self.buf, self.limits).unwrap() {
                let received = match message {
                    Message::KeepAlive => None,
                    Message::Bitfield(bits) => Some(Received::Bitfield(bits.to_vec())),
                    Message::Piece {
                        index,
                        begin,
                        block,
                    } => Some(Received::Piece {
                        index,
                        begin,
                        block: block.to_vec(),
                    }),
                    Message::Request {
                        index,
                        begin,
                        length,
                    } => Some(Received::Request {
                        index,
                        begin,
                        length,
                    }),
                    other => Some(Received::Other(format!("{other:?}"))),
                };
                self.buf.drain(..used);
                match received {
                    Some(received) => return Ok(received),
                    None => continue,
                }
            }
            let mut chunk = [0u8; 64 * 1024];
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the session closed the connection",
                ));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Reads messages until an `unchoke` arrives (a bitfield or `have` may
    /// come first).
    pub fn wait_unchoke(&mut self) {
        while self.recv() != Received::Other("Unchoke".into()) {}
    }

    /// Reads messages until a `piece` arrives and returns it.
    pub fn recv_piece(&mut self) -> (u32, u32, Vec<u8>) {
        loop {
            if let Received::Piece {
                index,
                begin,
                block,
            } = self.recv()
            {
                return (index, begin, block);
            }
        }
    }
}
