//! UDP trackers (BEP 15): `udp://host:port[/announce]` URLs, and
//! [`UdpTracker`], the [`Announcer`] that talks to one over a UDP socket.
//!
//! The datagrams are in [`codec`] (pure), the clocks in [`schedule`] (pure,
//! time passed in); this file owns the socket. An announce resolves the
//! host (so a name that does not resolve fails that announce, not the
//! start), sends a connect request unless a connection id younger than a
//! minute is known, then the announce. Each request is sent again on the
//! spec's schedule (15 × 2^n s), but an announce gives up after the tracker
//! timeout (`--tracker-timeout`; `stopped` after at most
//! [`super::http::STOPPED_TIMEOUT`]), so a silent tracker costs one timeout
//! and the announce loop's backoff decides when to try again. A datagram
//! with another transaction id is ignored; each request has a random one.

pub mod codec;
pub mod schedule;

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::time::{Duration, Instant};

use log::debug;

use self::codec::UdpAnnounce;
use self::schedule::{Attempt, Connection, Retransmit, Silence};
use super::{AnnounceRequest, AnnounceResponse, Announcer, Event, TrackerError};
use crate::untrusted;

/// The receive buffer: the largest UDP payload, so no answer is cut.
const MAX_DATAGRAM_LEN: usize = 65_536;

/// Splits `udp://host:port[/path]` into its host (an IPv6 literal without
/// its brackets) and port. The path (BEP 41) is accepted and not sent.
///
/// # Errors
/// [`TrackerError::BadUrl`] for another scheme, no host, or a port that is
/// missing or not a number from 1 to 65535.
pub fn parse_url(url: &str) -> Result<(String, u16), TrackerError> {
    let bad = |reason: String| TrackerError::BadUrl {
        url: url.to_string(),
        reason,
    };
    let rest = url
        .strip_prefix("udp://")
        .ok_or_else(|| bad("not a udp:// URL".into()))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| bad("an IPv6 host has no closing ]".into()))?;
            (host, after.strip_prefix(':'))
        }
        None => match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    if host.is_empty() {
        return Err(bad("no host".into()));
    }
    let port = port.ok_or_else(|| bad("a UDP tracker URL needs a port".into()))?;
    match port.parse::<u16>() {
        Ok(n) if n != 0 && port.bytes().all(|b| b.is_ascii_digit()) => Ok((host.to_string(), n)),
        _ => Err(bad(format!(
            "port {:?} is not a number from 1 to 65535",
            untrusted::show(port)
        ))),
    }
}

/// A UDP tracker.
pub struct UdpTracker {
    url: String,
    host: String,
    port: u16,
    timeout: Duration,
    key: u32,
    connection: Connection,
    /// Whom the connection id is from: a host that resolves elsewhere
    /// needs a new one.
    connected_to: Option<SocketAddr>,
    schedule: Retransmit,
    /// Where announces go out from (`--bind`), if not the system's choice.
    local: Option<IpAddr>,
}

impl UdpTracker {
    /// A tracker at `url` (`udp://host:port[/path]`), with `timeout` for
    /// each announce and `key` sent in each (random, one per session, so
    /// the tracker knows us when our address changes). Nothing is resolved
    /// or sent until the first announce.
    ///
    /// # Errors
    /// [`TrackerError::BadUrl`] when `url` fails [`parse_url`].
    pub fn new(url: String, timeout: Duration, key: u32) -> Result<UdpTracker, TrackerError> {
        let (host, port) = parse_url(&url)?;
        Ok(UdpTracker {
            url,
            host,
            port,
            timeout,
            key,
            connection: Connection::default(),
            connected_to: None,
            schedule: Retransmit::default(),
            local: None,
        })
    }

    /// Announces go out from `local` (`--bind`) when it is given and of
    /// the tracker's family, so a tracker on the same machine records the
    /// address we listen on.
    pub fn from_address(mut self, local: Option<IpAddr>) -> UdpTracker {
        self.local = local;
        self
    }

    fn unreachable(&self, reason: impl Into<String>) -> TrackerError {
        TrackerError::Unreachable {
            url: self.url.clone(),
            reason: reason.into(),
        }
    }

    /// The tracker's address: an IP literal as it is, a name resolved now.
    fn resolve(&self) -> Result<SocketAddr, TrackerError> {
        if let Ok(ip) = self.host.parse::<IpAddr>() {
            return Ok(SocketAddr::new(ip, self.port));
        }
        (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| self.unreachable(format!("cannot resolve {}: {e}", self.host)))?
            .next()
            .ok_or_else(|| self.unreachable(format!("{} has no address", self.host)))
    }

    /// Sends `request` and waits for the datagram `decode` takes as its
    /// answer, sending it again on the schedule, until `deadline`.
    fn exchange<T>(
        &mut self,
        socket: &UdpSocket,
        request: &[u8],
        deadline: Instant,
        buf: &mut [u8],
        mut decode: impl FnMut(&[u8]) -> Result<Option<T>, TrackerError>,
    ) -> Result<T, TrackerError> {
        let send = |tracker: &UdpTracker| {
            socket
                .send(request)
                .map_err(|e| tracker.unreachable(format!("cannot send: {e}")))
        };
        send(self)?;
        let mut attempt = Attempt::new(self.schedule, Instant::now(), deadline);
        let mut until = attempt.wait_until();
        loop {
            let wait = until.saturating_duration_since(Instant::now());
            let received = if wait.is_zero() {
                Err(io::ErrorKind::TimedOut.into())
            } else {
                socket
                    .set_read_timeout(Some(wait))
                    .and_then(|()| socket.recv(buf))
            };
            match received {
                Ok(len) => match decode(&buf[..len]) {
                    Ok(Some(answer)) => {
                        self.schedule.answered();
                        return Ok(answer);
                    }
                    Ok(None) => debug!("{}: ignoring a datagram of another transaction", self.url),
                    Err(e) => {
                        // The tracker spoke, so it is not silent.
                        self.schedule.answered();
                        return Err(e);
                    }
                },
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                // An ICMP "port unreachable" for an earlier datagram.
                Err(e) => return Err(self.unreachable(e.to_string())),
            }
            match attempt.silence(&mut self.schedule, Instant::now()) {
                Silence::Wait(at) => until = at,
                Silence::Resend(at) => {
                    debug!("{}: no answer, sending again", self.url);
                    send(self)?;
                    until = at;
                }
                Silence::GiveUp => {
                    let secs = self.timeout.as_secs_f32();
                    return Err(self.unreachable(format!("no answer within {secs}s")));
                }
            }
        }
    }

    fn announce_to(
        &mut self,
        addr: SocketAddr,
        req: &AnnounceRequest,
        deadline: Instant,
    ) -> Result<UdpAnnounce, TrackerError> {
        let local: IpAddr = match (addr, self.local) {
            (_, Some(ip)) if ip.is_ipv4() == addr.is_ipv4() => ip,
            (SocketAddr::V4(_), _) => Ipv4Addr::UNSPECIFIED.into(),
            (SocketAddr::V6(_), _) => Ipv6Addr::UNSPECIFIED.into(),
        };
        let socket = UdpSocket::bind((local, 0))
            .and_then(|s| s.connect(addr).map(|()| s))
            .map_err(|e| self.unreachable(format!("cannot open a UDP socket: {e}")))?;
        let mut buf = vec![0u8; MAX_DATAGRAM_LEN];
        if self.connected_to != Some(addr) {
            self.connection.forget();
        }
        let connection_id = match self.connection.id(Instant::now()) {
            Some(id) => id,
            None => {
                let tx = fastrand::u32(..);
                let mut request = Vec::with_capacity(codec::CONNECT_REQUEST_LEN);
                codec::encode_connect(tx, &mut request);
                let id = self.exchange(&socket, &request, deadline, &mut buf, |b| {
                    codec::decode_connect(b, tx)
                })?;
                self.connection.set(id, Instant::now());
                self.connected_to = Some(addr);
                id
            }
        };
        let tx = fastrand::u32(..);
        let mut request = Vec::with_capacity(codec::ANNOUNCE_REQUEST_LEN);
        codec::encode_announce(connection_id, tx, self.key, req, &mut request);
        let ipv6 = addr.is_ipv6();
        self.exchange(&socket, &request, deadline, &mut buf, |b| {
            codec::decode_announce(b, tx, ipv6)
        })
    }
}

impl Announcer for UdpTracker {
    fn announce(&mut self, req: &AnnounceRequest) -> Result<AnnounceResponse, TrackerError> {
        debug!("announce {:?} to {}", req.event, self.url);
        let timeout = match req.event {
            Some(Event::Stopped) => self.timeout.min(super::http::STOPPED_TIMEOUT),
            _ => self.timeout,
        };
        let deadline = Instant::now() + timeout;
        let addr = self.resolve()?;
        let answer = self.announce_to(addr, req, deadline);
        if let Err(TrackerError::Failure(_)) = &answer {
            // It may no longer know our connection id.
            self.connection.forget();
        }
        let answer = answer?;
        debug!(
            "{}: {} seeders, {} leechers",
            self.url, answer.seeders, answer.leechers
        );
        Ok(AnnounceResponse {
            interval: Some(u64::from(answer.interval)).filter(|&s| s > 0),
            min_interval: None,
            peers: answer.peers,
            tracker_id: None,
            warning: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn udp_urls_give_host_and_port() {
        for (url, host, port) in [
            ("udp://tracker.example:6969", "tracker.example", 6969),
            (
                "udp://tracker.example:6969/announce",
                "tracker.example",
                6969,
            ),
            ("udp://127.0.0.1:1337/announce?x=y", "127.0.0.1", 1337),
            ("udp://[::1]:6969", "::1", 6969),
            ("udp://[::1]:6969/announce", "::1", 6969),
        ] {
            assert_eq!(parse_url(url), Ok((host.to_string(), port)), "{url}");
        }
    }

    #[test]
    fn udp_urls_without_a_host_or_a_good_port_are_refused() {
        for (url, reason) in [
            ("udp://tracker.example/announce", "needs a port"),
            ("udp://tracker.example", "needs a port"),
            ("udp://tracker.example:0", "1 to 65535"),
            ("udp://tracker.example:70000", "1 to 65535"),
            ("udp://tracker.example:+1", "1 to 65535"),
            ("udp://:6969", "no host"),
            ("udp://[::1:6969", "closing ]"),
            ("udp://[::1]", "needs a port"),
            ("http://tracker.example:80", "not a udp"),
        ] {
            let r = parse_url(url);
            assert!(
                matches!(&r, Err(TrackerError::BadUrl { url: u, reason: m }) if u == url && m.contains(reason)),
                "{url}: {r:?}"
            );
        }
    }

    #[test]
    fn a_new_tracker_resolves_and_sends_nothing() {
        // A name that cannot resolve is accepted at start; only an
        // announce finds out.
        let tracker = UdpTracker::new("udp://no-such-host.invalid:1".into(), Duration::ZERO, 1);
        assert!(tracker.is_ok());
    }
}
