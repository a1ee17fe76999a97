//! A small UDP tracker for tests (BEP 15), written from the spec apart from
//! the library's codec: answers connect and announce with the peers that
//! announced (and configured extra ones), records every announce, and can be
//! told to stay silent, to answer errors, or to send a stray datagram of
//! another transaction before each answer. Stopped when dropped.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// One announce the tracker received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpAnnounce {
    pub from: SocketAddr,
    pub info_hash: [u8; 20],
    pub peer_id: [u8; 20],
    pub downloaded: u64,
    pub left: u64,
    pub uploaded: u64,
    /// 0 none, 1 completed, 2 started, 3 stopped.
    pub event: u32,
    pub key: u32,
    pub num_want: i32,
    pub port: u16,
}

/// How the tracker answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Behaviour {
    /// Connect and announce answered.
    Answer,
    /// Every request answered with action 3 and this message.
    Error(String),
    /// Nothing answered (requests are still counted).
    Silent,
    /// Before each answer, a datagram of the same shape with another
    /// transaction id (whose peer list names `decoy`).
    StrayFirst(SocketAddr),
}

/// A running UDP tracker, stopped when dropped.
pub struct UdpTestTracker {
    pub url: String,
    pub addr: SocketAddr,
    pub announces: Arc<Mutex<Vec<UdpAnnounce>>>,
    /// Connect requests received.
    pub connects: Arc<AtomicUsize>,
    /// Datagrams received, of any kind.
    pub datagrams: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl UdpTestTracker {
    /// An answering tracker on 127.0.0.1.
    pub fn start() -> UdpTestTracker {
        UdpTestTracker::start_with("127.0.0.1:0", Behaviour::Answer, vec![])
    }

    /// A tracker bound to `bind` (`127.0.0.1:0` or `[::1]:0`) that behaves
    /// as told and adds `extra` to every peer list (of the family the
    /// tracker is reached over).
    pub fn start_with(bind: &str, behaviour: Behaviour, extra: Vec<SocketAddr>) -> UdpTestTracker {
        let socket = UdpSocket::bind(bind).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let addr = socket.local_addr().unwrap();
        let announces = Arc::default();
        let connects = Arc::default();
        let datagrams = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let state = Serve {
                socket,
                behaviour,
                extra,
                announces: Arc::clone(&announces),
                connects: Arc::clone(&connects),
                datagrams: Arc::clone(&datagrams),
                stop: Arc::clone(&stop),
            };
            std::thread::spawn(move || state.run())
        };
        UdpTestTracker {
            url: format!("udp://{addr}/announce"),
            addr,
            announces,
            connects,
            datagrams,
            stop,
            thread: Some(thread),
        }
    }

    /// The events of the announces from peers with this port, in order.
    pub fn events_of(&self, port: u16) -> Vec<u32> {
        let all = self.announces.lock().unwrap();
        all.iter()
            .filter(|a| a.port == port)
            .map(|a| a.event)
            .collect()
    }
}

impl Drop for UdpTestTracker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct Serve {
    socket: UdpSocket,
    behaviour: Behaviour,
    extra: Vec<SocketAddr>,
    announces: Arc<Mutex<Vec<UdpAnnounce>>>,
    connects: Arc<AtomicUsize>,
    datagrams: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes(b[..4].try_into().unwrap())
}

fn be64(b: &[u8]) -> u64 {
    u64::from_be_bytes(b[..8].try_into().unwrap())
}

impl Serve {
    fn run(self) {
        let mut buf = [0u8; 2048];
        // Connection ids handed out, so an announce with another is refused.
        let mut issued = Vec::new();
        let mut swarms: HashMap<[u8; 20], Vec<SocketAddr>> = HashMap::new();
        while !self.stop.load(Ordering::SeqCst) {
            let Ok((len, from)) = self.socket.recv_from(&mut buf) else {
                continue;
            };
            self.datagrams.fetch_add(1, Ordering::SeqCst);
            let d = &buf[..len];
            if len < 16 {
                continue;
            }
            let (action, tx) = (be32(&d[8..]), be32(&d[12..]));
            if action == 0 && be64(d) == 0x0417_2710_1980 {
                self.connects.fetch_add(1, Ordering::SeqCst);
            }
            let reply = |body: Vec<u8>| {
                let _ = self.socket.send_to(&body, from);
            };
            match &self.behaviour {
                Behaviour::Silent => continue,
                Behaviour::Error(message) => {
                    let mut body = [3u32.to_be_bytes(), tx.to_be_bytes()].concat();
                    body.extend(message.as_bytes());
                    reply(body);
                    continue;
                }
                _ => {}
            }
            let stray = |body: &[u8]| {
                if let Behaviour::StrayFirst(decoy) = &self.behaviour {
                    let mut fake = body.to_vec();
                    fake[4..8].copy_from_slice(&tx.wrapping_add(1).to_be_bytes());
                    if fake.len() >= 20 {
                        fake.truncate(20);
                        fake.extend(compact(&[*decoy], from.is_ipv6()));
                    }
                    reply(fake);
                }
            };
            if action == 0 && be64(d) == 0x0417_2710_1980 {
                let id = fastrand::u64(..);
                issued.push(id);
                let body = [
                    0u32.to_be_bytes().as_slice(),
                    &tx.to_be_bytes(),
                    &id.to_be_bytes(),
                ]
                .concat();
                stray(&body);
                reply(body);
            } else if action == 1 && len >= 98 {
                if !issued.contains(&be64(d)) {
                    let mut body = [3u32.to_be_bytes(), tx.to_be_bytes()].concat();
                    body.extend(b"unknown connection id");
                    reply(body);
                    continue;
                }
                let announce = UdpAnnounce {
                    from,
                    info_hash: d[16..36].try_into().unwrap(),
                    peer_id: d[36..56].try_into().unwrap(),
                    downloaded: be64(&d[56..]),
                    left: be64(&d[64..]),
                    uploaded: be64(&d[72..]),
                    event: be32(&d[80..]),
                    key: be32(&d[88..]),
                    num_want: be32(&d[92..]) as i32,
                    port: u16::from_be_bytes([d[96], d[97]]),
                };
                let me = SocketAddr::new(from.ip(), announce.port);
                let swarm = swarms.entry(announce.info_hash).or_default();
                let mut peers: Vec<SocketAddr> =
                    swarm.iter().copied().filter(|p| *p != me).collect();
                peers.extend(&self.extra);
                swarm.retain(|p| *p != me);
                if announce.event != 3 {
                    swarm.push(me);
                }
                let (seeders, leechers) = (1u32, 2u32);
                let mut body = [1u32, tx, 60, leechers, seeders]
                    .iter()
                    .flat_map(|v| v.to_be_bytes())
                    .collect::<Vec<u8>>();
                body.extend(compact(&peers, from.is_ipv6()));
                self.announces.lock().unwrap().push(announce);
                stray(&body);
                reply(body);
            }
        }
    }
}

/// Peers as 6-byte (IPv4) or 18-byte (IPv6) entries; those of the other
/// family are left out.
fn compact(peers: &[SocketAddr], ipv6: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for peer in peers {
        match (peer.ip(), ipv6) {
            (IpAddr::V4(ip), false) => out.extend(ip.octets()),
            (IpAddr::V6(ip), true) => out.extend(ip.octets()),
            _ => continue,
        }
        out.extend(peer.port().to_be_bytes());
    }
    out
}
