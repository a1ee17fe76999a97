use crate::support::clients::Client;
use crate::support::content::Shape;
use crate::support::{Announce, Swarm, ours};

/// Their client seeds, announcing to the test's opentracker over UDP only
/// (the torrent's one tracker is `udp://127.0.0.1:PORT/announce`); ours,
/// started once the tracker knows the seeder, can only learn of it from
/// its own UDP announce (a seeder never dials a peer it has not heard
/// of), dials it and downloads everything.
fn ours_downloads_through_udp_from(theirs: Client) {
    let swarm = Swarm::with(Shape::Single, Announce::Udp);
    let mut seeder = theirs.seed(&swarm.made, swarm.work());
    swarm.wait_for_announces(1, 0);
    let mut downloader = ours().download(&swarm.made, swarm.work());
    downloader.wait_complete(&swarm.made);
    assert!(seeder.is_running(), "the {theirs:?} seeder stopped");
}

/// Their client downloads, announcing over UDP only; our seeder starts once
/// the tracker knows it, learns of it from its own UDP announce only (none
/// of the three re-announces within the test, and Transmission 3.00 never
/// dials 127.x peers), dials it and serves everything.
fn downloads_through_udp_from_ours(theirs: Client) {
    let swarm = Swarm::with(Shape::Single, Announce::Udp);
    let mut downloader = theirs.download(&swarm.made, swarm.work());
    swarm.wait_for_announces(0, 1);
    let mut seeder = ours().seed(&swarm.made, swarm.work());
    downloader.wait_complete(&swarm.made);
    assert!(seeder.is_running(), "our seeder stopped");
}

#[test]
fn ours_downloads_through_the_udp_tracker_from_libtorrent() {
    ours_downloads_through_udp_from(Client::Libtorrent);
}

#[test]
fn ours_downloads_through_the_udp_tracker_from_aria2() {
    ours_downloads_through_udp_from(Client::Aria2);
}

#[test]
fn ours_downloads_through_the_udp_tracker_from_transmission() {
    ours_downloads_through_udp_from(Client::Transmission);
}

#[test]
fn libtorrent_downloads_through_the_udp_tracker_from_ours() {
    downloads_through_udp_from_ours(Client::Libtorrent);
}

#[test]
fn aria2_downloads_through_the_udp_tracker_from_ours() {
    downloads_through_udp_from_ours(Client::Aria2);
}

#[test]
fn transmission_downloads_through_the_udp_tracker_from_ours() {
    downloads_through_udp_from_ours(Client::Transmission);
}
