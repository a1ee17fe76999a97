//! A small HTTP tracker for tests (tiny_http): remembers who announced for
//! which info-hash and answers with compact peer lists.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::bencode::B;

/// One announce the tracker received.
#[derive(Debug, Clone)]
pub struct Announce {
    pub info_hash: Vec<u8>,
    pub peer_id: Vec<u8>,
    pub port: u16,
    pub left: u64,
    pub event: Option<String>,
}

/// A running tracker, stopped when dropped.
pub struct TestTracker {
    pub url: String,
    pub announces: Arc<Mutex<Vec<Announce>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TestTracker {
    pub fn start() -> TestTracker {
        TestTracker::start_with_min_interval(None)
    }

    /// A tracker whose answers carry `min interval` (seconds), when given.
    pub fn start_with_min_interval(min_interval: Option<i64>) -> TestTracker {
        TestTracker::start_with(min_interval, Extra::default())
    }

    /// A tracker that adds `extra` (IPv4) addresses to every answer, the
    /// peers that announced coming after the first `swarm_at` of them.
    pub fn start_with_extra_peers(extra: &[SocketAddr], swarm_at: usize) -> TestTracker {
        let compact = |addrs: &[SocketAddr]| -> Vec<u8> {
            addrs
                .iter()
                .flat_map(|a| match a {
                    SocketAddr::V4(a) => {
                        [a.ip().octets().as_slice(), &a.port().to_be_bytes()].concat()
                    }
                    SocketAddr::V6(_) => panic!("compact peers are IPv4"),
                })
                .collect()
        };
        let swarm_at = swarm_at.min(extra.len());
        TestTracker::start_with(
            None,
            Extra {
                before: compact(&extra[..swarm_at]),
                after: compact(&extra[swarm_at..]),
            },
        )
    }

    fn start_with(min_interval: Option<i64>, extra: Extra) -> TestTracker {
        let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
        let port = server.server_addr().to_ip().unwrap().port();
        let announces = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let announces = Arc::clone(&announces);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || serve(&server, &announces, &stop, min_interval, &extra))
        };
        TestTracker {
            url: format!("http://127.0.0.1:{port}/announce"),
            announces,
            stop,
            thread: Some(thread),
        }
    }

    /// The events received so far, in order, for peers with this port.
    pub fn events_of(&self, port: u16) -> Vec<Option<String>> {
        let all = self.announces.lock().unwrap();
        all.iter()
            .filter(|a| a.port == port)
            .map(|a| a.event.clone())
            .collect()
    }
}

impl Drop for TestTracker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Compact peers put around the announced ones in every answer.
#[derive(Default)]
struct Extra {
    before: Vec<u8>,
    after: Vec<u8>,
}

fn serve(
    server: &tiny_http::Server,
    announces: &Mutex<Vec<Announce>>,
    stop: &AtomicBool,
    min_interval: Option<i64>,
    extra: &Extra,
) {
    // Peers per info-hash: (address, peer id), so a re-announce replaces itself.
    let mut swarms: HashMap<Vec<u8>, Vec<SocketAddr>> = HashMap::new();
    while !stop.load(Ordering::SeqCst) {
        let Ok(Some(request)) = server.recv_timeout(Duration::from_millis(50)) else {
            continue;
        };
        let body = match parse(request.url()) {
            Ok(announce) => {
                let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, announce.port));
                let swarm = swarms.entry(announce.info_hash.clone()).or_default();
                let swarm_peers = swarm.iter().filter(|p| **p != addr).flat_map(|p| {
                    let mut c = vec![127, 0, 0, 1];
                    c.extend(p.port().to_be_bytes());
                    c
                });
                let peers: Vec<u8> = extra
                    .before
                    .iter()
                    .copied()
                    .chain(swarm_peers)
                    .chain(extra.after.iter().copied())
                    .collect();
                swarm.retain(|p| *p != addr);
                if announce.event.as_deref() != Some("stopped") {
                    swarm.push(addr);
                }
                announces.lock().unwrap().push(announce);
                let mut answer = vec![("interval", B::Int(60))];
                answer.extend(min_interval.map(|m| ("min interval", B::Int(m))));
                answer.push(("peers", B::Bytes(peers)));
                B::Dict(answer).encode()
            }
            Err(reason) => B::Dict(vec![("failure reason", B::str(&reason))]).encode(),
        };
        let _ = request.respond(tiny_http::Response::from_data(body));
    }
}

fn parse(url: &str) -> Result<Announce, String> {
    let query = url.split_once('?').ok_or("no query")?.1;
    let mut params = HashMap::new();
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').ok_or("bad pair")?;
        params.insert(k.to_string(), percent_decode(v)?);
    }
    let get = |k: &str| params.get(k).cloned().ok_or(format!("missing {k}"));
    let text = |k: &str| get(k).map(|v| String::from_utf8_lossy(&v).into_owned());
    let info_hash = get("info_hash")?;
    let peer_id = get("peer_id")?;
    if info_hash.len() != 20 || peer_id.len() != 20 {
        return Err("info_hash and peer_id must be 20 bytes".into());
    }
    if text("compact")? != "1" {
        return Err("compact=1 expected".into());
    }
    for k in ["uploaded", "downloaded"] {
        text(k)?.parse::<u64>().map_err(|_| format!("bad {k}"))?;
    }
    Ok(Announce {
        info_hash,
        peer_id,
        port: text("port")?.parse().map_err(|_| "bad port")?,
        left: text("left")?.parse().map_err(|_| "bad left")?,
        event: text("event").ok(),
    })
}

fn percent_decode(s: &str) -> Result<Vec<u8>, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3).ok_or("short escape")?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| "bad escape")?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Ok(out)
}

/// A tracker that answers every announce with the same body, stopped when
/// dropped.
pub struct CannedTracker {
    pub url: String,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl CannedTracker {
    /// Answers `body` (status 200) to every request.
    pub fn start(body: Vec<u8>) -> CannedTracker {
        let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
        let port = server.server_addr().to_ip().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    if let Ok(Some(request)) = server.recv_timeout(Duration::from_millis(50)) {
                        let _ = request.respond(tiny_http::Response::from_data(body.clone()));
                    }
                }
            })
        };
        CannedTracker {
            url: format!("http://127.0.0.1:{port}/announce"),
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for CannedTracker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Trackers that accept connections and never answer: listening sockets
/// that are never `accept`ed, so the kernel completes each connection and
/// the request waits in its buffer. Closed when dropped.
pub struct SilentTrackers {
    _listeners: Vec<std::net::TcpListener>,
    pub urls: Vec<String>,
}

impl SilentTrackers {
    /// `count` of them on 127.0.0.1.
    pub fn start(count: usize) -> SilentTrackers {
        let listeners: Vec<_> = (0..count)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        let urls = listeners
            .iter()
            .map(|l| format!("http://{}/announce", l.local_addr().unwrap()))
            .collect();
        SilentTrackers {
            _listeners: listeners,
            urls,
        }
    }
}
