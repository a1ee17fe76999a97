//! Connections from chosen loopback addresses and what a process under test
//! holds, for the churn, slot and ban tests: its threads, memory maps and
//! CPU time from /proc.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use bittorrent::metainfo::InfoHash;
use bittorrent::peer::wire::{self, Handshake, PeerId};
use rustix::net::{AddressFamily, SocketType, bind, connect, socket};

/// Connects to `to` from loopback address `from` (any port), so the
/// session under test sees the connection come from that IP.
pub fn connect_from(from: Ipv4Addr, to: SocketAddr) -> io::Result<TcpStream> {
    let fd = socket(AddressFamily::INET, SocketType::STREAM, None)?;
    bind(&fd, &SocketAddrV4::new(from, 0))?;
    connect(&fd, &to)?;
    Ok(TcpStream::from(fd))
}

/// Where a test dials to reach a socket listening on `addr`: loopback of
/// its family when it listens on every address (`0.0.0.0` or `::`), else
/// `addr` itself.
pub fn loopback(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => (Ipv4Addr::LOCALHOST, addr.port()).into(),
        IpAddr::V6(ip) if ip.is_unspecified() => (Ipv6Addr::LOCALHOST, addr.port()).into(),
        _ => addr,
    }
}

/// `port` on `::1`.
pub fn on_ipv6_loopback(port: u16) -> SocketAddr {
    (Ipv6Addr::LOCALHOST, port).into()
}

/// A handshake for `info_hash` with peer id `peer_id`.
pub fn handshake_bytes(info_hash: InfoHash, peer_id: [u8; 20]) -> [u8; wire::HANDSHAKE_LEN] {
    Handshake::new(info_hash, PeerId(peer_id)).encode()
}

/// Sends our handshake and reads the remote's, within `within`. `None`
/// when the remote closes instead of answering: it refused us.
pub fn exchange_handshakes(
    stream: &mut TcpStream,
    info_hash: InfoHash,
    peer_id: [u8; 20],
    within: Duration,
) -> io::Result<Option<Handshake>> {
    stream.set_read_timeout(Some(within))?;
    stream.set_write_timeout(Some(within))?;
    stream.write_all(&handshake_bytes(info_hash, peer_id))?;
    let mut theirs = [0u8; wire::HANDSHAKE_LEN];
    match stream.read_exact(&mut theirs) {
        Ok(()) => {}
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset
            ) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(e),
    }
    Handshake::decode(&theirs)
        .map(Some)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))
}

/// A port of 127.0.0.1 free right now, for a session started later (its
/// dials to it fail until then).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
    listener.local_addr().unwrap().port()
}

/// A free port below the kernel's ephemeral range (32768 and up on Linux),
/// for a test that binds it later: another test's outgoing connection can
/// take a free port of that range as its source port in the meantime.
pub fn free_port_outside_ephemeral() -> u16 {
    for _ in 0..1000 {
        let port = fastrand::u16(20_000..32_000);
        // The seeder listens on every IPv4 and (where there is IPv6)
        // every IPv6 address at the port.
        let no_ipv6 = TcpListener::bind(("::1", 0)).is_err();
        if TcpListener::bind(("0.0.0.0", port)).is_ok()
            && (no_ipv6 || TcpListener::bind(("::", port)).is_ok())
        {
            return port;
        }
    }
    panic!("no free port from 20000 to 32000");
}

/// A peer id made of `byte`, distinct per caller.
pub fn peer_id(byte: u8) -> [u8; 20] {
    let mut id = *b"-XX0001-000000000000";
    id[8..].fill(byte);
    id
}

/// What process `pid` holds now, from /proc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    /// Its threads (`Threads:` in /proc/PID/status).
    pub threads: usize,
    /// Its memory mappings (lines of /proc/PID/maps).
    pub maps: usize,
}

/// A size field of /proc/PID/status (`VmRSS`, `VmHWM`, `VmPeak`, given in
/// kB), in bytes; `None` once the process has exited.
pub fn status_bytes(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse::<u64>()
        .ok()?;
    Some(kib * 1024)
}

/// What `pid` holds now; `None` once it has exited.
pub fn held(pid: u32) -> Option<Held> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let threads = status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))?
        .trim()
        .parse()
        .ok()?;
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .ok()?
        .lines()
        .count();
    Some(Held { threads, maps })
}

/// The CPU time (user + system) `pid` used so far; `None` once it has exited.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name, in parentheses, may hold spaces: count after it.
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split(' ').collect();
    // Fields 14 and 15 of stat(5), utime and stime, in clock ticks (100 Hz
    // on Linux); `after` starts at field 3.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// Polls `done` every 20 ms until it holds or `within` passes; returns
/// whether it held.
pub fn poll_until(within: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
