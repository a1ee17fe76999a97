//! Message floods against the binary as a seeder, costed in its CPU time
//! (read from /proc) rather than in wall-clock time: a flood of cheap
//! messages must cost about what a flood of keep-alives costs.

use std::time::{Duration, Instant};

use crate::support::TIMEOUT;
use crate::support::ext::{Dialer, UNCHOKE};
use crate::support::magnet::{Seeder, arg, single_file};
use bittorrent::peer::wire::Message;

/// 1 MiB in 64 blocks: requests cycle over them.
const CONTENT_LEN: usize = 1 << 20;
const PIECE_LEN: usize = 64 * 1024;
const BLOCK_LEN: u32 = 16 * 1024;
/// Requests queued at the seeder before the flood: just under the 16,384
/// it accepts, so that it keeps reading.
const QUEUED_REQUESTS: u32 = 16_000;
/// Messages in each flood.
const FLOOD_COUNT: usize = 50_000;

/// Bytes the seeder has not read yet from the connection whose remote end
/// (ours) has port `our_port`, from /proc/net/tcp (its `rx_queue`).
fn unread_by_seeder(seeder_port: u16, our_port: u16) -> Option<u64> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let port = |field: &str| u16::from_str_radix(field.rsplit(':').next()?, 16).ok();
        if port(fields.get(1)?)? != seeder_port || port(fields.get(2)?)? != our_port {
            return None;
        }
        let rx = fields.get(4)?.split(':').nth(1)?;
        u64::from_str_radix(rx, 16).ok()
    })
}

/// Sends `flood` to the seeder and returns the CPU time the seeder spent
/// until it had read all of it.
fn cpu_to_read(seeder: &Seeder, dialer: &mut Dialer, flood: &[u8]) -> Duration {
    let before = seeder.binary().cpu_time();
    dialer.send(flood).expect("the seeder reads the flood");
    let deadline = Instant::now() + TIMEOUT;
    while unread_by_seeder(seeder.port, dialer.local_port()) != Some(0) {
        assert!(
            Instant::now() < deadline,
            "the seeder did not read the flood within {TIMEOUT:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    seeder.binary().cpu_time() - before
}

fn encoded(messages: impl Iterator<Item = Message<'static>>) -> Vec<u8> {
    let mut out = Vec::new();
    for message in messages {
        message.encode(&mut out);
    }
    out
}

/// Regression: each `cancel` scanned the queue of up to 16,384 requests
/// waiting to be served, so a flood of them cost the seeder 264 times the
/// CPU per byte of keep-alives.
#[test]
fn a_cancel_flood_costs_about_what_keep_alives_cost() {
    let dir = tempfile::tempdir().unwrap();
    let made = single_file(
        dir.path(),
        "flood.bin",
        crate::support::content(CONTENT_LEN, 5),
        PIECE_LEN,
        None,
    );
    let seeder = Seeder::start(&[arg(&made.torrent)], &made.source, dir.path());
    let mut dialer =
        Dialer::connect(seeder.addr([127, 0, 0, 1]), &made.info_hash).expect("handshake");
    dialer
        .send(&encoded(std::iter::once(Message::Interested)))
        .expect("interested");
    while dialer.next_frame().expect("an unchoke").id != UNCHOKE {}

    // From here on we never read: the seeder's answers fill the socket
    // and the rest of the requests wait in its queue.
    let blocks = (CONTENT_LEN as u32 / BLOCK_LEN) as usize;
    let requests = encoded((0..QUEUED_REQUESTS as usize).map(|i| {
        let block = (i % blocks) as u32 * BLOCK_LEN;
        Message::Request {
            index: block / PIECE_LEN as u32,
            begin: block % PIECE_LEN as u32,
            length: BLOCK_LEN,
        }
    }));
    cpu_to_read(&seeder, &mut dialer, &requests);

    let keep_alives = encoded((0..FLOOD_COUNT).map(|_| Message::KeepAlive));
    let keep_alive_cpu = cpu_to_read(&seeder, &mut dialer, &keep_alives);
    // Cancels for blocks that are not queued (length 1 was never asked),
    // so the queue stays full for every one of them.
    let cancels = encoded((0..FLOOD_COUNT).map(|i| Message::Cancel {
        index: (i % 16) as u32,
        begin: 0,
        length: 1,
    }));
    let cancel_cpu = cpu_to_read(&seeder, &mut dialer, &cancels);

    eprintln!("seeder CPU: {FLOOD_COUNT} cancels {cancel_cpu:?}, keep-alives {keep_alive_cpu:?}");
    // Per byte a cancel (17 bytes) may cost what a keep-alive (4) does;
    // the allowance covers the 10 ms resolution of the CPU clock.
    let allowed = keep_alive_cpu * 5 + Duration::from_millis(300);
    assert!(
        cancel_cpu <= allowed,
        "{FLOOD_COUNT} cancels took {cancel_cpu:?} of the seeder's CPU, \
         {FLOOD_COUNT} keep-alives {keep_alive_cpu:?} (allowed {allowed:?})"
    );
}
