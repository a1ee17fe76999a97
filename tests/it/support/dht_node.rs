//! A scripted DHT node on 127.0.0.1 that records every query it receives
//! and answers as a node that knows nobody: `ping` and `find_node` with its
//! id, `get_peers` with a token and no peers, `announce_peer` with its id.
//! Stopped (and joined) when dropped.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use bittorrent::dht::id::NodeId;
use bittorrent::dht::krpc::{self, Body, Message, Query, Response};

/// One query received: its method and, for `get_peers` and
/// `announce_peer`, the info-hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    /// `ping`, `find_node`, `get_peers`, `announce_peer`.
    pub method: &'static str,
    /// The info-hash asked about or announced.
    pub info_hash: Option<[u8; 20]>,
}

/// The recording node.
pub struct RecorderNode {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl RecorderNode {
    /// Starts the node on a free port of 127.0.0.1.
    pub fn start() -> RecorderNode {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let addr = socket.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen2, stop2) = (Arc::clone(&seen), Arc::clone(&stop));
        let thread = std::thread::Builder::new()
            .name("recorder node".into())
            .spawn(move || {
                let id = NodeId([0x55; 20]);
                let mut buf = [0u8; 4096];
                while !stop2.load(Ordering::SeqCst) {
                    let Ok((len, from)) = socket.recv_from(&mut buf) else {
                        continue;
                    };
                    let Ok(message) = krpc::decode(&buf[..len]) else {
                        continue;
                    };
                    let Body::Query(query) = message.body else {
                        continue;
                    };
                    let mut response = Response::new(id);
                    let info_hash = match &query {
                        Query::GetPeers { info_hash, .. } => {
                            response.token = Some(b"tokn".to_vec());
                            Some(info_hash.0)
                        }
                        Query::AnnouncePeer { info_hash, .. } => Some(info_hash.0),
                        _ => None,
                    };
                    seen2.lock().unwrap().push(Seen {
                        method: query.method(),
                        info_hash,
                    });
                    let reply = Message::response(message.tid, response).encode();
                    let _ = socket.send_to(&reply, from);
                }
            })
            .unwrap();
        RecorderNode {
            addr,
            seen,
            stop,
            thread: Some(thread),
        }
    }

    /// Every query received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for RecorderNode {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
