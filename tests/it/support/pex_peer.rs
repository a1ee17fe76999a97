//! Scripted peers for the peer-exchange tests (BEP 11): a peer that offers
//! `ut_pex`, tells the session under test of chosen addresses, records the
//! session's extended handshake and every `ut_pex` message it sends; a
//! listener that only counts the connections it gets; and private torrents
//! (BEP 27) written to disk.
//!
//! The `ut_pex` bytes are written here by hand, independent of the client's
//! codec, so the tests hold the client to BEP 11 as read here.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sha1::{Digest, Sha1};

use super::TIMEOUT;
use super::bencode::{B, Value, decode};
use super::ext::{
    EXT_HANDSHAKE, EXTENDED, End, Step, Wire, extended, handshake, scripted_peer_id, ut_request,
};
use super::magnet::Made;
use super::net::connect_from;

/// The extended id this peer asks to receive `ut_pex` messages with.
pub const SCRIPT_UT_PEX: u8 = 1;
/// The extended id this peer asks to receive `ut_metadata` messages with.
pub const SCRIPT_UT_METADATA: u8 = 3;
/// The id a session that does not offer `ut_pex` is sent one with anyway
/// (the id our client would give it).
const UNOFFERED_PEX_ID: u8 = 2;

/// What the scripted peer does.
#[derive(Debug, Clone)]
pub struct PexScript {
    /// The torrent.
    pub info_hash: [u8; 20],
    /// Addresses sent in one `ut_pex` message's `added` (IPv4), with flag
    /// 0x10 (reachable), right after the extended handshakes.
    pub named: Vec<SocketAddr>,
    /// The `p` of our extended handshake.
    pub listen_port: Option<u16>,
}

/// What the scripted peer saw.
#[derive(Debug, Default)]
pub struct PexReport {
    /// The session's extended handshake.
    pub their_ext: Option<Value>,
    /// Our `ut_pex` message was sent, then a `ut_metadata` request, and an
    /// answer to that request came back: the session read the `ut_pex`
    /// message before it.
    pub passed_barrier: bool,
    /// The `ut_pex` messages the session sent us, decoded as BEP 11 says:
    /// the `added` addresses of each.
    pub pex_added: Vec<Vec<SocketAddr>>,
    /// How the connection ended, if it has.
    pub end: Option<String>,
}

/// A scripted peer on its own thread, stopped and joined when dropped.
pub struct PexPeer {
    addr: SocketAddr,
    report: Arc<Mutex<PexReport>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl PexPeer {
    /// Listens on `ip` (any port) and runs `script` on the first connection.
    pub fn listen(ip: [u8; 4], script: PexScript) -> PexPeer {
        let listener = TcpListener::bind((Ipv4Addr::from(ip), 0)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        PexPeer::spawn(addr, script, move |stop| {
            let deadline = Instant::now() + TIMEOUT;
            loop {
                match listener.accept() {
                    Ok((stream, _)) => return Ok(Wire::new(stream, deadline, stop)?),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        if stop.load(Ordering::SeqCst) || Instant::now() >= deadline {
                            return Err(End::Stopped);
                        }
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        })
    }

    /// Dials `to` from loopback address `from` and runs `script`.
    pub fn dial(from: [u8; 4], to: SocketAddr, script: PexScript) -> PexPeer {
        let stream = connect_from(Ipv4Addr::from(from), to).unwrap();
        let addr = stream.local_addr().unwrap();
        PexPeer::spawn(addr, script, move |stop| {
            Ok(Wire::new(stream, Instant::now() + TIMEOUT, stop)?)
        })
    }

    fn spawn(
        addr: SocketAddr,
        script: PexScript,
        open: impl FnOnce(Arc<AtomicBool>) -> Step<Wire> + Send + 'static,
    ) -> PexPeer {
        let report = Arc::new(Mutex::new(PexReport::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (report, stop) = (Arc::clone(&report), Arc::clone(&stop));
            std::thread::spawn(move || {
                let end = open(stop).and_then(|mut wire| run(&mut wire, &script, &report));
                let end = match end {
                    Ok(()) => "closed by the script".to_string(),
                    Err(e) => e.to_string(),
                };
                report.lock().unwrap().end = Some(end);
            })
        };
        PexPeer {
            addr,
            report,
            stop,
            thread: Some(thread),
        }
    }

    /// Its address: where it listens, or its end of the connection it dialled.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Reads the report now.
    pub fn with_report<T>(&self, read: impl FnOnce(&PexReport) -> T) -> T {
        read(&self.report.lock().unwrap())
    }
}

impl Drop for PexPeer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Our extended handshake: `m` with `ut_metadata` and `ut_pex`, `p` when given.
fn our_ext_handshake(listen_port: Option<u16>) -> Vec<u8> {
    let mut dict = vec![(
        "m",
        B::Dict(vec![
            ("ut_metadata", B::Int(i64::from(SCRIPT_UT_METADATA))),
            ("ut_pex", B::Int(i64::from(SCRIPT_UT_PEX))),
        ]),
    )];
    if let Some(port) = listen_port {
        dict.push(("p", B::Int(i64::from(port))));
    }
    dict.push(("v", B::str("scripted pex 0.1")));
    B::Dict(dict).encode()
}

/// A `ut_pex` payload with `added` (IPv4 only), each flagged reachable.
pub fn pex_payload(added: &[SocketAddr]) -> Vec<u8> {
    let mut compact = Vec::new();
    for addr in added {
        let SocketAddr::V4(v4) = addr else {
            panic!("IPv4 only: {addr}");
        };
        compact.extend_from_slice(&v4.ip().octets());
        compact.extend_from_slice(&v4.port().to_be_bytes());
    }
    B::Dict(vec![
        ("added", B::Bytes(compact)),
        ("added.f", B::Bytes(vec![0x10; added.len()])),
        ("dropped", B::Bytes(vec![])),
    ])
    .encode()
}

/// The `added` addresses of a `ut_pex` payload (IPv4 and IPv6).
fn parse_added(payload: &[u8]) -> Option<Vec<SocketAddr>> {
    let (dict, _) = decode(payload)?;
    let mut addrs = Vec::new();
    for (key, len) in [("added", 6), ("added6", 18)] {
        let Some(list) = dict.get(key).and_then(Value::bytes) else {
            continue;
        };
        if list.len() % len != 0 {
            return None;
        }
        for entry in list.chunks(len) {
            let port = u16::from_be_bytes([entry[len - 2], entry[len - 1]]);
            let ip: std::net::IpAddr = if len == 6 {
                <[u8; 4]>::try_from(&entry[..4]).ok()?.into()
            } else {
                <[u8; 16]>::try_from(&entry[..16]).ok()?.into()
            };
            addrs.push(SocketAddr::new(ip, port));
        }
    }
    Some(addrs)
}

fn run(wire: &mut Wire, script: &PexScript, report: &Mutex<PexReport>) -> Step<()> {
    let id = scripted_peer_id("PX", u64::from(script.listen_port.unwrap_or(0)));
    wire.send(&handshake(&script.info_hash, &id))?;
    let theirs = wire.read_handshake()?;
    if theirs.info_hash != script.info_hash {
        return Err(End::Protocol("handshake for another torrent".into()));
    }
    wire.send(&extended(
        EXT_HANDSHAKE,
        &our_ext_handshake(script.listen_port),
    ))?;
    let mut barrier_sent = false;
    loop {
        let frame = wire.next_frame()?;
        if frame.id != EXTENDED || frame.payload.is_empty() {
            continue;
        }
        let (ext_id, payload) = (frame.payload[0], &frame.payload[1..]);
        match ext_id {
            EXT_HANDSHAKE => {
                let (dict, _) = decode(payload)
                    .ok_or_else(|| End::Protocol("extended handshake is not bencode".into()))?;
                let m = dict.get("m");
                let their_id = |name: &str| {
                    m.and_then(|m| m.get(name))
                        .and_then(Value::int)
                        .and_then(|i| u8::try_from(i).ok())
                        .filter(|&i| i != 0)
                };
                let (pex_id, metadata_id) = (their_id("ut_pex"), their_id("ut_metadata"));
                report.lock().unwrap().their_ext = Some(dict);
                if barrier_sent {
                    continue;
                }
                if !script.named.is_empty() {
                    let pex_id = pex_id.unwrap_or(UNOFFERED_PEX_ID);
                    wire.send(&extended(pex_id, &pex_payload(&script.named)))?;
                }
                if let Some(metadata_id) = metadata_id {
                    wire.send(&extended(metadata_id, &ut_request(0)))?;
                }
                barrier_sent = true;
            }
            SCRIPT_UT_METADATA => report.lock().unwrap().passed_barrier = true,
            SCRIPT_UT_PEX => {
                let added = parse_added(payload)
                    .ok_or_else(|| End::Protocol("ut_pex message is not BEP 11".into()))?;
                report.lock().unwrap().pex_added.push(added);
            }
            _ => {}
        }
    }
}

/// A listener that accepts connections and only counts them, stopped and
/// joined when dropped.
pub struct Recorder {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Recorder {
    /// Listens on `ip`, any port.
    pub fn start(ip: [u8; 4]) -> Recorder {
        let listener = TcpListener::bind((Ipv4Addr::from(ip), 0)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (accepted, stop) = (Arc::clone(&accepted), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut held = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            accepted.fetch_add(1, Ordering::SeqCst);
                            held.push(stream);
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            })
        };
        Recorder {
            addr,
            accepted,
            stop,
            thread: Some(thread),
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Writes a single-file torrent with `private` = 1 in its info dictionary
/// (BEP 27), and its content, into `dir`.
pub fn private_single_file(dir: &Path, name: &str, data: Vec<u8>, piece_len: usize) -> Made {
    let pieces: Vec<u8> = data
        .chunks(piece_len)
        .flat_map(|c| <[u8; 20]>::from(Sha1::digest(c)))
        .collect();
    let info = B::Dict(vec![
        ("length", B::Int(data.len() as i64)),
        ("name", B::str(name)),
        ("piece length", B::Int(piece_len as i64)),
        ("pieces", B::Bytes(pieces)),
        ("private", B::Int(1)),
    ])
    .encode();
    let info_hash: [u8; 20] = Sha1::digest(&info).into();
    let mut bytes = b"d4:info".to_vec();
    bytes.extend_from_slice(&info);
    bytes.push(b'e');
    let torrent = dir.join(format!("{name}.torrent"));
    std::fs::write(&torrent, &bytes).unwrap();
    let source = dir.join(name);
    std::fs::write(&source, &data).unwrap();
    Made {
        torrent,
        source,
        name: name.to_string(),
        info_hash,
        info,
        data,
    }
}
