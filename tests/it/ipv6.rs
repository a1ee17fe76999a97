//! IPv6 (BEP 7) over `::1`: a download where both sides listen on `::1`
//! only (`--bind ::1`, `--peer [::1]:PORT`), a session bound by default
//! that takes peers on `127.0.0.1:P` and `[::1]:P` alike, an in-process
//! download dialling a default-bound seeder over IPv6, and a magnet whose
//! only peer is `x.pe=[::1]:PORT`.

use std::fs;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::time::Duration;

use bittorrent::metainfo::InfoHash;

use crate::support::bencode::write_single_file;
use crate::support::magnet::{Seeder, arg, assert_success, download_cmd, single_file};
use crate::support::net::{exchange_handshakes, on_ipv6_loopback, peer_id};
use crate::support::*;

const LEN: usize = 300_007;

#[test]
fn downloads_over_ipv6_loopback_only() {
    let dir = tempfile::tempdir().unwrap();
    let data = content(LEN, 61);
    let made = write_single_file(dir.path(), "six.bin", &data, 16384, None);
    let mut seeding = config(&made.torrent, seed_from(&made.source), vec![]);
    seeding.bind = Some(Ipv6Addr::LOCALHOST.into());
    let seeder = Running::start(&seeding);
    let port = seeder.addr.port();
    assert_eq!(seeder.addr, on_ipv6_loopback(port));
    let over_ipv4 = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let refused = TcpStream::connect_timeout(&over_ipv4, Duration::from_secs(1)).map(|_| ());
    assert!(
        matches!(&refused, Err(e) if e.kind() == io::ErrorKind::ConnectionRefused),
        "the seeder bound to ::1 answered on {over_ipv4}: {refused:?}"
    );

    let dest = dir.path().join("out");
    let mut args = download_args(&made.torrent, &dest, seeder.addr);
    assert!(args.contains(&format!("[::1]:{port}")), "{args:?}");
    args.extend(["--bind", "::1", "--no-progress", "-v"].map(String::from));
    let (status, stderr) = run_binary(&args, dir.path());
    assert!(status.success(), "exit {status}; stderr:\n{stderr}");
    assert!(stderr.contains("listening on [::1]:"), "{stderr}");
    assert!(!stderr.contains("listening on 0.0.0.0"), "{stderr}");
    assert!(fs::read(dest.join("six.bin")).unwrap() == data);
    assert!(seeder.stats.uploaded.load(Ordering::Relaxed) >= LEN as u64);
}

#[test]
fn a_default_bound_session_takes_peers_on_ipv4_and_ipv6_at_one_port() {
    let dir = tempfile::tempdir().unwrap();
    let made = write_single_file(dir.path(), "both.bin", &content(50_000, 62), 16384, None);
    let seeder = Running::start(&config(&made.torrent, seed_from(&made.source), vec![]));
    let port = seeder.addr.port();
    for (n, addr) in [
        SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        on_ipv6_loopback(port),
    ]
    .into_iter()
    .enumerate()
    {
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("{addr}: {e}"));
        let answer = exchange_handshakes(
            &mut stream,
            InfoHash(made.info_hash),
            peer_id(n as u8 + 1),
            TIMEOUT,
        );
        match answer {
            Ok(Some(theirs)) => assert_eq!(theirs.info_hash, InfoHash(made.info_hash), "{addr}"),
            other => panic!("{addr}: no handshake back: {other:?}"),
        }
    }
}

#[test]
fn a_download_dials_a_default_bound_seeder_over_ipv6() {
    let dir = tempfile::tempdir().unwrap();
    let data = content(LEN, 63);
    let made = write_single_file(dir.path(), "dial6.bin", &data, 32768, None);
    let seeder = Running::start(&config(&made.torrent, seed_from(&made.source), vec![]));
    let over_ipv6 = on_ipv6_loopback(seeder.addr.port());
    let dest = dir.path().join("out");
    download(&config(&made.torrent, download_to(&dest), vec![over_ipv6]));
    assert!(fs::read(dest.join("dial6.bin")).unwrap() == data);
    assert!(seeder.stats.uploaded.load(Ordering::Relaxed) >= LEN as u64);
}

#[test]
fn downloads_by_magnet_from_the_ipv6_peer_in_its_x_pe() {
    let dir = tempfile::tempdir().unwrap();
    let made = single_file(dir.path(), "xpe6.bin", content(LEN, 64), 16384, None);
    let seeder = Seeder::start(&[arg(&made.torrent)], &made.source, dir.path());
    // The binary bound by default says so, one line per family, one port.
    let said = seeder.stderr();
    for line in [
        format!("listening on 0.0.0.0:{}", seeder.port),
        format!("listening on [::]:{}", seeder.port),
    ] {
        assert!(said.contains(&line), "no {line:?} in:\n{said}");
    }
    let uri = made.magnet(&[], &[on_ipv6_loopback(seeder.port)]);
    assert!(
        uri.contains(&format!("&x.pe=[::1]:{}", seeder.port)),
        "{uri}"
    );
    let dest = dir.path().join("out");
    // No --peer: x.pe is the only way to the seeder.
    let (status, stderr) = run_binary(&download_cmd(&[&uri], &dest, &[]), dir.path());
    assert_success(status, &stderr);
    assert!(fs::read(dest.join("xpe6.bin")).unwrap() == made.data);
}
