//! Binding the [client](super)'s listen sockets: one address when the user
//! names one (`--bind`), otherwise every IPv4 address and every IPv6
//! address on one port number (BEP 7: peers reach us over either family at
//! the port we announce).
//!
//! The IPv6 socket of the pair is IPv6-only (`IPV6_V6ONLY`), so it does not
//! claim the IPv4 port too, whatever the system's `bindv6only` default. A
//! port taken on either family moves both to the next one. A machine
//! without IPv6 (no `AF_INET6`, or `::` not available) listens on IPv4
//! alone: [`Bound::no_ipv6`] says why, for the caller's one log line.
//!
//! Out of scope: accepting (the `listener` submodule) and dialling
//! ([`crate::peer::open`]).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV6, TcpListener};

use log::debug;
use rustix::net::{AddressFamily, SocketFlags, SocketType, sockopt};

use crate::error::Error;

/// How many ports after the requested one are tried.
const PORT_TRIES: u16 = 10;
/// The accept queue's length, as std's `TcpListener::bind` sets it.
const BACKLOG: i32 = 128;

/// The sockets bound, all on one port.
#[derive(Debug)]
pub(super) struct Bound {
    /// The IPv4 socket first when there are two.
    pub listeners: Vec<TcpListener>,
    /// Why there is no IPv6 socket beside the IPv4 one, when both were
    /// asked for and IPv6 is not available on this machine.
    pub no_ipv6: Option<io::Error>,
}

/// Binds `ip` alone, or when `ip` is `None` both `0.0.0.0` and `[::]`, at
/// `port` or, when it is taken, one of the [`PORT_TRIES`] after it (`0`:
/// a port the system chooses).
///
/// # Errors
/// [`Error::Listen`] with the last failure when no port can be bound.
pub(super) fn bind(ip: Option<IpAddr>, port: u16) -> Result<Bound, Error> {
    match ip {
        Some(ip) => bind_one(ip, port),
        None => bind_pair(
            port,
            |port| TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)),
            |port| bind_v6_only(Ipv6Addr::UNSPECIFIED, port),
        ),
    }
}

/// The ports to try for `port`: `0` asks the system each time.
fn candidates(port: u16) -> impl Iterator<Item = u16> {
    (0..=PORT_TRIES).map(move |n| if port == 0 { 0 } else { port.saturating_add(n) })
}

fn bind_one(ip: IpAddr, port: u16) -> Result<Bound, Error> {
    if port == 0 {
        let listener =
            TcpListener::bind((ip, 0)).map_err(|source| Error::Listen { port, source })?;
        return Ok(Bound {
            listeners: vec![listener],
            no_ipv6: None,
        });
    }
    let mut last = None;
    for candidate in candidates(port) {
        match TcpListener::bind((ip, candidate)) {
            Ok(listener) => {
                return Ok(Bound {
                    listeners: vec![listener],
                    no_ipv6: None,
                });
            }
            Err(e) => {
                debug!("port {candidate} unavailable: {e}");
                last = Some(e);
            }
        }
    }
    Err(Error::Listen {
        port,
        source: last.expect("at least one port was tried"),
    })
}

/// Binds with `bind4` then, at the port it got, `bind6`; a port `bind6`
/// finds taken moves both to the next candidate, any other failure of
/// `bind6` leaves IPv4 alone.
fn bind_pair(
    port: u16,
    mut bind4: impl FnMut(u16) -> io::Result<TcpListener>,
    mut bind6: impl FnMut(u16) -> io::Result<TcpListener>,
) -> Result<Bound, Error> {
    let mut last = None;
    for candidate in candidates(port) {
        let v4 = match bind4(candidate) {
            Ok(v4) => v4,
            Err(e) => {
                debug!("port {candidate} unavailable on IPv4: {e}");
                last = Some(e);
                continue;
            }
        };
        let got = v4
            .local_addr()
            .map_err(|source| Error::Listen { port, source })?
            .port();
        match bind6(got) {
            Ok(v6) => {
                return Ok(Bound {
                    listeners: vec![v4, v6],
                    no_ipv6: None,
                });
            }
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                debug!("port {got} unavailable on IPv6: {e}");
                last = Some(e);
            }
            // EAFNOSUPPORT (no IPv6 in the kernel), EADDRNOTAVAIL (IPv6
            // turned off), or anything else IPv6-only: IPv4 still works.
            Err(e) => {
                return Ok(Bound {
                    listeners: vec![v4],
                    no_ipv6: Some(e),
                });
            }
        }
    }
    Err(Error::Listen {
        port,
        source: last.expect("at least one port was tried"),
    })
}

/// A listening TCP socket on `[ip]:port` that takes IPv6 connections only
/// (`IPV6_V6ONLY`, set before `bind`, which is why std's `bind` cannot
/// make it).
pub(super) fn bind_v6_only(ip: Ipv6Addr, port: u16) -> io::Result<TcpListener> {
    let fd = rustix::net::socket_with(
        AddressFamily::INET6,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )?;
    sockopt::set_ipv6_v6only(&fd, true)?;
    // As std does: a restarted client gets its port back at once.
    sockopt::set_socket_reuseaddr(&fd, true)?;
    rustix::net::bind(&fd, &SocketAddrV6::new(ip, port, 0, 0))?;
    rustix::net::listen(&fd, BACKLOG)?;
    Ok(TcpListener::from(fd))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{SocketAddr, TcpStream};
    use std::time::Duration;

    fn loopback4(port: u16) -> io::Result<TcpListener> {
        TcpListener::bind((Ipv4Addr::LOCALHOST, port))
    }

    fn loopback6(port: u16) -> io::Result<TcpListener> {
        bind_v6_only(Ipv6Addr::LOCALHOST, port)
    }

    fn ports(bound: &Bound) -> Vec<u16> {
        bound
            .listeners
            .iter()
            .map(|l| l.local_addr().unwrap().port())
            .collect()
    }

    #[test]
    fn both_families_share_one_port() {
        let bound = bind_pair(0, loopback4, loopback6).unwrap();
        assert!(bound.no_ipv6.is_none(), "{:?}", bound.no_ipv6);
        let ports = ports(&bound);
        assert_eq!(ports.len(), 2);
        assert_eq!(ports[0], ports[1]);
        assert!(bound.listeners[0].local_addr().unwrap().is_ipv4());
        assert!(bound.listeners[1].local_addr().unwrap().is_ipv6());
    }

    #[test]
    fn a_port_taken_on_ipv6_moves_both_families_to_the_next() {
        let taken = loopback6(0).unwrap();
        let port = taken.local_addr().unwrap().port();
        if loopback4(port).is_err() {
            // Someone else holds it on IPv4 too: the case is not set up.
            return;
        }
        let bound = bind_pair(port, loopback4, loopback6).unwrap();
        let ports = ports(&bound);
        assert_eq!(ports.len(), 2, "{:?}", bound.no_ipv6);
        assert_eq!(ports[0], ports[1]);
        assert!(
            ports[0] > port && ports[0] <= port + PORT_TRIES,
            "{port} -> {ports:?}"
        );
    }

    #[test]
    fn without_ipv6_the_client_listens_on_ipv4_alone_and_says_why() {
        for errno in [
            rustix::io::Errno::AFNOSUPPORT,
            rustix::io::Errno::ADDRNOTAVAIL,
        ] {
            let bound = bind_pair(0, loopback4, |_| Err(io::Error::from(errno))).unwrap();
            assert_eq!(bound.listeners.len(), 1);
            assert!(bound.listeners[0].local_addr().unwrap().is_ipv4());
            let why = bound.no_ipv6.expect("the reason for the log line");
            assert_eq!(why.raw_os_error(), Some(errno.raw_os_error()));
        }
    }

    #[test]
    fn no_free_port_on_either_family_is_an_error_naming_the_port() {
        let mut tried = Vec::new();
        let e = bind_pair(0, loopback4, |port| {
            tried.push(port);
            Err(io::Error::from(io::ErrorKind::AddrInUse))
        })
        .unwrap_err();
        assert!(
            matches!(&e, Error::Listen { port: 0, source } if source.kind() == io::ErrorKind::AddrInUse),
            "{e:?}"
        );
        assert_eq!(tried.len(), usize::from(PORT_TRIES) + 1, "{tried:?}");
    }

    #[test]
    fn the_ipv6_socket_takes_no_ipv4_connections() {
        // Bound to every IPv6 address, it would take IPv4 ones too
        // (mapped) without IPV6_V6ONLY.
        let v6 = bind_v6_only(Ipv6Addr::UNSPECIFIED, 0).unwrap();
        let port = v6.local_addr().unwrap().port();
        let to4 = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let refused = TcpStream::connect_timeout(&to4, Duration::from_secs(1));
        assert!(refused.is_err(), "{to4} answered");
        let to6 = SocketAddr::from((Ipv6Addr::LOCALHOST, port));
        TcpStream::connect_timeout(&to6, Duration::from_secs(1)).unwrap();
    }
}
