//! The DHT (BEP 5) of the DHT rows, on 127.0.0.1 only: a libtorrent node
//! that is every peer's common first contact (the hub), the waits on what
//! it hears, and each client's arguments for a DHT bootstrapped from given
//! nodes on loopback and from nothing else.
//!
//! How each client is kept on loopback (measured with strace and each
//! client's own log, see docs/interop.md):
//! - libtorrent (`lt_peer.py --dht-node`): its DHT runs on the
//!   `127.0.0.1:PORT` listen socket, `dht_bootstrap_nodes` is empty (no
//!   default router is resolved or contacted), and the driver exits with an
//!   error if a DHT packet goes to or comes from anywhere else;
//! - aria2: `--interface=127.0.0.1` binds its DHT socket there, a fresh
//!   `--dht-file-path` means no saved nodes, and `--dht-entry-point` is the
//!   one node it starts from (aria2 has no default entry point);
//! - ours: `--dht-bootstrap HOST:PORT`, which replaces the default routers;
//!   every row without a DHT passes `--no-dht` ([`ours_args`]).
//!
//! Transmission 3.00 cannot take part: its DHT library drops every packet
//! from a 127.x (or `::1`) address as "martian", and, never reaching 40
//! good nodes, it resolves and pings its built-in router on the Internet
//! 20 to 60 s after its `dht.bootstrap` file is used up. So no row runs
//! Transmission with its DHT on (its settings say `"dht-enabled": false`).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use bittorrent::metainfo::InfoHash;

use super::clients::Peer;
use super::process::{Proc, free_port, require, wait_until};

/// The longest a peer may take to announce itself to the hub
/// (`announce_peer`) once it is serving: libtorrent and aria2 take under a
/// second.
pub const ANNOUNCE_TIMEOUT: Duration = Duration::from_secs(30);

/// A libtorrent DHT node with no torrent (`lt_peer.py dht-node`) on
/// 127.0.0.1: the first contact of the peers of a DHT row. It stores what
/// they announce and answers their lookups; it is killed when dropped.
pub struct Hub {
    port: u16,
    proc: Proc,
}

impl Hub {
    /// Starts the hub; returns once its DHT socket is up, so that a node
    /// told to contact it is answered at once (a node pinged before the
    /// other's socket is up retries only about 15 s later).
    pub fn start(work: &Path) -> Hub {
        let port = free_port();
        let mut command = lt_peer_command();
        command.args(["dht-node", "--port", &port.to_string()]);
        let mut proc = Proc::spawn("libtorrent dht hub", command, &work.join("logs"));
        proc.wait_output("listening on ", super::clients::START_TIMEOUT);
        Hub { port, proc }
    }

    /// The hub's DHT address, for the others' bootstrap.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// Waits until `peer` has announced itself to the hub for `info_hash`
    /// (BEP 5 `announce_peer`, with the hub's token) at its listen address;
    /// fails the test if `peer` exits first or [`ANNOUNCE_TIMEOUT`] passes.
    pub fn wait_announce(&mut self, info_hash: InfoHash, peer: &mut Peer) {
        let line = format!("dht announce {info_hash} {}", peer.addr());
        let what = format!(
            "{:?} to announce itself to the DHT hub ({line:?})",
            peer.client
        );
        wait_until(&what, ANNOUNCE_TIMEOUT, || {
            assert!(peer.is_running(), "{:?} exited before {what}", peer.client);
            assert!(self.proc.exited().is_none(), "the DHT hub exited");
            self.proc.output().contains(&line)
        });
    }
}

/// `/usr/bin/python3 lt_peer.py`, the libtorrent driver.
pub fn lt_peer_command() -> Command {
    // python3-libtorrent is built for Debian's own Python, which may not be
    // the `python3` first on PATH.
    require("/usr/bin/python3", "python3-libtorrent");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/lt_peer.py");
    let mut command = Command::new("/usr/bin/python3");
    command.arg(script);
    command
}

/// Our binary's DHT arguments: `--dht-bootstrap` for each of `contacts`,
/// or, with none, `--no-dht`.
pub fn ours_args(contacts: &[SocketAddr]) -> Vec<String> {
    assert_loopback(contacts);
    if contacts.is_empty() {
        return vec!["--no-dht".to_string()];
    }
    contacts
        .iter()
        .flat_map(|contact| ["--dht-bootstrap".to_string(), contact.to_string()])
        .collect()
}

/// `lt_peer.py`'s DHT arguments: `--dht-node` for each of `contacts`.
pub fn lt_args(contacts: &[SocketAddr]) -> Vec<String> {
    assert_loopback(contacts);
    contacts
        .iter()
        .flat_map(|contact| ["--dht-node".to_string(), contact.to_string()])
        .collect()
}

/// aria2c's DHT arguments, given its entry points (aria2 takes one: the
/// last `--dht-entry-point` wins), or none for a DHT socket that only
/// serves UDP trackers. Either way the DHT is on, bound to 127.0.0.1
/// (`--interface` binds every socket there), on `dht_port`, with a routing
/// table file that does not exist yet (aria2 logs once that it cannot load
/// it): so it knows no node but its entry point.
pub fn aria2_args(contacts: &[SocketAddr], dht_port: u16, work: &Path) -> Vec<String> {
    assert_loopback(contacts);
    assert!(contacts.len() <= 1, "aria2 takes one DHT entry point");
    let file: PathBuf = work.join(format!("aria2-dht-{dht_port}.dat"));
    let mut args = vec![
        "--enable-dht=true".to_string(),
        "--interface=127.0.0.1".to_string(),
        format!("--dht-listen-port={dht_port}"),
        format!("--dht-file-path={}", file.display()),
    ];
    args.extend(
        contacts
            .iter()
            .map(|contact| format!("--dht-entry-point={contact}")),
    );
    args
}

/// Fails the test if a DHT contact is not on 127.0.0.1.
fn assert_loopback(contacts: &[SocketAddr]) {
    for contact in contacts {
        assert!(
            contact.ip().is_loopback() && contact.is_ipv4(),
            "DHT contact {contact}: the DHT of a test stays on 127.0.0.1"
        );
    }
}
