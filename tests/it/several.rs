//! Several torrents in one process, driving only the binary: `.torrent`
//! files and magnets downloaded at once, several seeded from one folder,
//! a bad input among good ones (reported by name, the others complete,
//! exit 1), a single malformed magnet (a usage error, exit 2), and an
//! incoming connection for a torrent the process does not have.

use std::fs;
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use crate::support::bencode::TFile;
use crate::support::ext::bytes_before_close;
use crate::support::magnet::*;
use crate::support::*;

/// Loopback addresses for the seeders: each peer its own IP.
const IP_A: [u8; 4] = [127, 0, 0, 2];
const IP_B: [u8; 4] = [127, 0, 0, 3];
const IP_C: [u8; 4] = [127, 0, 0, 4];

/// Two files and a nested one, the last piece short (32 KiB pieces).
fn folder_files(seed: u8) -> Vec<TFile> {
    vec![
        TFile {
            path: vec!["x.txt"],
            data: content(5_000, seed),
        },
        TFile {
            path: vec!["sub", "y.bin"],
            data: content(90_001, seed.wrapping_add(1)),
        },
    ]
}

/// Three torrents under `dir/seeds`: a single file, a folder, a single file.
fn three_torrents(dir: &Path) -> [Made; 3] {
    let seeds = dir.join("seeds");
    fs::create_dir_all(&seeds).unwrap();
    [
        single_file(&seeds, "alpha.bin", content(400_000, 21), 16384, None),
        multi_file(&seeds, "beta", folder_files(22), 32768, None),
        single_file(&seeds, "gamma.bin", content(250_003, 23), 16384, None),
    ]
}

fn seed(made: &Made, log_dir: &Path) -> Seeder {
    Seeder::start(&[arg(&made.torrent)], &made.source, log_dir)
}

/// Asserts that `made` was downloaded into `dest` byte for byte.
fn assert_downloaded(made: &Made, dest: &Path) {
    let got = dest.join(&made.name);
    if made.source.is_dir() {
        assert_same_tree(&made.source, &got);
    } else {
        let bytes = fs::read(&got).unwrap_or_else(|e| panic!("{}: {e}", got.display()));
        assert!(bytes == made.data, "{} differs from the source", made.name);
    }
}

#[test]
fn downloads_two_torrent_files_and_a_magnet_at_once_from_three_seeders() {
    let dir = tempfile::tempdir().unwrap();
    let [a, b, c] = three_torrents(dir.path());
    let (sa, sb, sc) = (
        seed(&a, dir.path()),
        seed(&b, dir.path()),
        seed(&c, dir.path()),
    );
    let dest = dir.path().join("out");
    let uri = c.magnet(&[], &[]);
    // Every --peer applies to every torrent: each seeder also sees (and
    // drops) handshakes for the two torrents it does not have.
    let peers = [sa.addr(IP_A), sb.addr(IP_B), sc.addr(IP_C)];
    let args = download_cmd(&[arg(&a.torrent), arg(&b.torrent), &uri], &dest, &peers);
    let (status, stderr) = run_binary(&args, dir.path());
    assert_success(status, &stderr);
    for made in [&a, &b, &c] {
        assert_downloaded(made, &dest);
    }
}

#[test]
fn a_seeder_of_several_torrents_seeds_each_from_its_name_in_the_folder() {
    let dir = tempfile::tempdir().unwrap();
    let [a, b, _] = three_torrents(dir.path());
    let folder = a.source.parent().unwrap();
    let seeder = Seeder::start(&[arg(&a.torrent), arg(&b.torrent)], folder, dir.path());
    let dest = dir.path().join("out");
    let uri = a.magnet(&[], &[]);
    let args = download_cmd(&[&uri, arg(&b.torrent)], &dest, &[seeder.addr(IP_A)]);
    let (status, stderr) = run_binary(&args, dir.path());
    assert_success(status, &stderr);
    assert_downloaded(&a, &dest);
    assert_downloaded(&b, &dest);
}

/// Regression: "several" was counted in inputs, so the same torrent given
/// twice (one torrent) made `-s PATH` a folder of contents, and the seeder
/// failed on `PATH/<name>`. With one distinct torrent PATH is the content.
#[test]
fn the_same_torrent_twice_is_one_and_seeds_from_the_path_given() {
    let dir = tempfile::tempdir().unwrap();
    let [a, _, _] = three_torrents(dir.path());
    let twice = [arg(&a.torrent), arg(&a.torrent)];
    let seeder = Seeder::start(&twice, &a.source, dir.path());
    let dest = dir.path().join("out");
    let args = download_cmd(&twice, &dest, &[seeder.addr(IP_A)]);
    let (status, stderr) = run_binary(&args, dir.path());
    assert_success(status, &stderr);
    assert_downloaded(&a, &dest);
}

#[test]
fn a_bad_torrent_file_among_several_is_reported_by_name_and_the_others_complete() {
    let dir = tempfile::tempdir().unwrap();
    let [a, _, c] = three_torrents(dir.path());
    let (sa, sc) = (seed(&a, dir.path()), seed(&c, dir.path()));
    let bad = dir.path().join("bad.torrent");
    fs::write(&bad, b"this is not bencode").unwrap();
    let dest = dir.path().join("out");
    let uri = c.magnet(&[], &[]);
    let peers = [sa.addr(IP_A), sc.addr(IP_C)];
    let args = download_cmd(&[arg(&a.torrent), arg(&bad), &uri], &dest, &peers);
    let (status, stderr) = run_binary(&args, dir.path());
    assert_eq!(status.code(), Some(1), "stderr:\n{stderr}");
    assert!(stderr.contains("bad.torrent"), "{stderr}");
    assert!(stderr.contains("not a torrent file"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_downloaded(&a, &dest);
    assert_downloaded(&c, &dest);
}

#[test]
fn a_malformed_magnet_among_several_is_reported_and_the_others_complete() {
    let dir = tempfile::tempdir().unwrap();
    let [a, b, _] = three_torrents(dir.path());
    let (sa, sb) = (seed(&a, dir.path()), seed(&b, dir.path()));
    let short_hash = &hex(&a.info_hash)[..39];
    let broken = format!("magnet:?xt=urn:btih:{short_hash}&dn=broken");
    let dest = dir.path().join("out");
    let uri = b.magnet(&[], &[]);
    let peers = [sa.addr(IP_A), sb.addr(IP_B)];
    let args = download_cmd(&[arg(&a.torrent), &broken, &uri], &dest, &peers);
    let (status, stderr) = run_binary(&args, dir.path());
    assert_eq!(status.code(), Some(1), "stderr:\n{stderr}");
    assert!(
        stderr.contains(short_hash),
        "the bad magnet is named: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_downloaded(&a, &dest);
    assert_downloaded(&b, &dest);
    assert!(!dest.join("broken").exists());
}

#[test]
fn a_single_malformed_magnet_is_a_usage_error_that_says_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let hash = hex(&[0xab; 20]);
    // RFC 4648 base32 has no 0, 1, 8 or 9.
    let bad_base32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ230189";
    let cases = [
        (
            "magnet:?dn=nohash&tr=http%3A%2F%2F127.0.0.1%3A1%2F".to_string(),
            "xt",
        ),
        (
            format!("magnet:?xt=urn:btih:{}&dn=short", &hash[..39]),
            "39",
        ),
        (format!("magnet:?xt=urn:btih:{bad_base32}&dn=b32"), "base32"),
    ];
    for (uri, says) in cases {
        let dest = dir.path().join("out");
        // No -v: the error must be the first thing on stderr.
        let args = [&uri, "-d", arg(&dest), "--port", "0"];
        let (status, stderr) = run_binary(&args, dir.path());
        assert_eq!(status.code(), Some(2), "{uri}: stderr:\n{stderr}");
        assert!(stderr.starts_with("error: "), "{uri}: {stderr}");
        assert!(
            stderr.contains(says),
            "{uri}: the message says {says:?}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{uri}: {stderr}");
        assert!(!dest.exists(), "{uri}: nothing is created");
    }
}

#[test]
fn an_incoming_connection_for_an_unknown_info_hash_is_dropped_while_a_download_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let made = single_file(dir.path(), "known.bin", content(2_000_000, 24), 32768, None);
    let seeder = seed(&made, dir.path());
    let dest = dir.path().join("out");
    let uri = made.magnet(&[], &[]);
    let child = Binary::spawn(
        &download_cmd(&[&uri], &dest, &[seeder.addr(IP_A)]),
        dir.path(),
    );
    let mut unknown = made.info_hash;
    unknown[0] ^= 0xff;
    let answered = bytes_before_close(seeder.addr(IP_B), &unknown)
        .unwrap_or_else(|e| panic!("the seeder did not drop the connection: {e}"));
    assert_eq!(
        answered, 0,
        "the seeder answered a handshake for a torrent it lacks"
    );
    let (status, stderr) = child.wait();
    assert_success(status, &stderr);
    assert_downloaded(&made, &dest);
    TcpStream::connect_timeout(&seeder.addr(IP_C), Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("the seeder no longer accepts connections: {e}"));
}
