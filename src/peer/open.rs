//! Opening a connection: dialling (or taking the stream the client
//! accepted), the handshakes, and the manager's answer, which starts the
//! full connection ([`super::conn`]) at once or after the metadata phase
//! ([`super::fetching`]); then the report of how it ended.
//!
//! The remote's handshake has one deadline, not a timeout per `read()`, so
//! a remote dripping a byte at a time cannot hold the connection's slot.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use log::debug;
use socket2::{Domain, Protocol, Socket, Type};

use super::conn::Conn;
use super::extensions::RemoteExtensions;
use super::fetching::{self, Started};
use super::transport::Stream;
use super::wake::Waker;
use super::wire::{self, Handshake};
use super::{
    Closed, Disconnect, Origin, PeerCommand, PeerContext, PeerCounters, PeerKey, Violation,
};
use crate::piece_manager::{Event, PeerEvent};

/// How long to wait for a TCP connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long to wait for the remote's whole handshake and for the manager's answer.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Fills `buf` from `stream` before `deadline`, however the bytes arrive.
///
/// # Errors
/// `TimedOut` at the deadline, `UnexpectedEof` when the remote closes
/// first, or the read's own error.
pub fn read_exact_before(
    stream: &mut TcpStream,
    buf: &mut [u8],
    deadline: Instant,
) -> io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("handshake not complete within {HANDSHAKE_TIMEOUT:?}"),
            ));
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut buf[filled..]) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // A read that timed out: the loop sees the deadline.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Runs one connection to its end and reports the end to the manager.
pub fn run(
    key: PeerKey,
    addr: SocketAddr,
    origin: Origin,
    ctx: &PeerContext,
    counters: &PeerCounters,
    cmd_rx: &Receiver<PeerCommand>,
    waker: Arc<Waker>,
) {
    let mut returned = Vec::new();
    let outcome = connect(origin, ctx).and_then(|(stream, theirs)| {
        debug!("{addr}: handshake done, peer id {:?}", theirs.peer_id);
        let Some(started) = start(key, addr, stream, &theirs, ctx, cmd_rx)? else {
            return Ok(());
        };
        let mut conn = Conn::new(key, addr, started.stream, ctx, counters, started.loaded);
        conn.remote = started.remote;
        conn.remote_dht = theirs.supports_dht();
        conn.out = started.out;
        conn.waker = Some(waker);
        let extensions = theirs.supports_extensions();
        let result = conn.run(
            started.have,
            started.early,
            extensions,
            started.after_metadata,
            cmd_rx,
        );
        returned = conn.return_jobs();
        result
    });
    let reason = match outcome {
        Ok(()) => Disconnect::Closed(Closed::Normal),
        Err(reason) => reason,
    };
    debug!("{addr}: disconnected: {reason}");
    // A closed manager channel means the session is ending: nothing to report to.
    let _ = ctx.events_tx.send(Event::Peer {
        key,
        event: PeerEvent::Disconnected { reason, returned },
    });
}

pub(super) fn io_error(during: &'static str) -> impl Fn(io::Error) -> Disconnect {
    move |e| {
        Closed::Io {
            during,
            error: e.to_string(),
        }
        .into()
    }
}

/// Opens a TCP connection to `addr` within [`CONNECT_TIMEOUT`], from
/// `local` when it is given and of `addr`'s family (`--bind`: a peer on
/// the same machine, or a tracker, then sees the address we listen on).
fn dial(addr: SocketAddr, local: Option<IpAddr>) -> io::Result<TcpStream> {
    let Some(local) = local.filter(|ip| ip.is_ipv4() == addr.is_ipv4()) else {
        return TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT);
    };
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.bind(&SocketAddr::new(local, 0).into())?;
    socket.connect_timeout(&addr.into(), CONNECT_TIMEOUT)?;
    Ok(socket.into())
}

/// Connects (when outgoing) and exchanges handshakes.
fn connect(origin: Origin, ctx: &PeerContext) -> Result<(Stream, Handshake), Disconnect> {
    let ours = Handshake::new(ctx.info_hash, ctx.our_id)
        .with_dht(ctx.dht_port().is_some())
        .encode();
    let (stream, theirs): (Stream, Handshake) = match origin {
        Origin::Outgoing(addr, dialling) => {
            let connected = dial(addr, ctx.local_ip);
            // The connect is over, failed or not: its place goes to the next.
            drop(dialling);
            let mut stream = connected.map_err(|e| Closed::ConnectFailed(e.to_string()))?;
            stream
                .set_nodelay(true)
                .map_err(io_error("setting a socket option"))?;
            let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
            stream
                .set_write_timeout(Some(HANDSHAKE_TIMEOUT))
                .and_then(|()| stream.write_all(&ours))
                .map_err(io_error("sending the handshake"))?;
            let mut theirs = [0u8; wire::HANDSHAKE_LEN];
            read_exact_before(&mut stream, &mut theirs, deadline)
                .map_err(io_error("reading the handshake"))?;
            let theirs = Handshake::decode(&theirs).map_err(Violation::Wire)?;
            (Box::new(stream), theirs)
        }
        // The client read the remote's handshake to route the connection.
        Origin::Incoming(mut stream, theirs) => {
            if theirs.info_hash == ctx.info_hash && theirs.peer_id != ctx.our_id {
                stream
                    .write_all(&ours)
                    .map_err(io_error("sending the handshake"))?;
            }
            (stream, theirs)
        }
    };
    if theirs.info_hash != ctx.info_hash {
        return Err(Closed::WrongTorrent(theirs.info_hash).into());
    }
    if theirs.peer_id == ctx.our_id {
        return Err(Closed::Ourselves.into());
    }
    stream
        .set_read_timeout(Some(HANDSHAKE_TIMEOUT))
        .map_err(io_error("setting a socket option"))?;
    Ok((stream, theirs))
}

/// Reports the handshake and waits for the manager's answer: the torrent's
/// content at once, or after fetching metadata ([`fetching`]). `None`: the
/// manager is gone, a normal end.
fn start(
    key: PeerKey,
    addr: SocketAddr,
    stream: Stream,
    theirs: &Handshake,
    ctx: &PeerContext,
    cmd_rx: &Receiver<PeerCommand>,
) -> Result<Option<Started>, Disconnect> {
    let extensions = theirs.supports_extensions();
    ctx.events_tx
        .send(Event::Peer {
            key,
            event: PeerEvent::Connected {
                peer_id: theirs.peer_id,
            },
        })
        .map_err(|_| Closed::Normal)?;
    match cmd_rx.recv_timeout(HANDSHAKE_TIMEOUT) {
        Ok(PeerCommand::Start { have, loaded }) => Ok(Some(Started {
            stream,
            have,
            loaded,
            early: Vec::new(),
            out: Vec::new(),
            remote: RemoteExtensions::default(),
            after_metadata: false,
        })),
        Ok(PeerCommand::FetchMetadata) => fetching::run(key, addr, stream, extensions, ctx, cmd_rx),
        Ok(PeerCommand::Shutdown) => Err(Closed::Refused.into()),
        Ok(_) | Err(RecvTimeoutError::Timeout) => Err(Closed::NoAnswer.into()),
        Err(RecvTimeoutError::Disconnected) => Ok(None),
    }
}
