use crate::support::Swarm;
use crate::support::clients::Client;
use crate::support::content::Shape;

/// Their client seeds; ours, started once the tracker knows the seeder,
/// finds it in its first announce, dials it and downloads everything.
fn ours_downloads_from(theirs: Client, shape: Shape) {
    let swarm = Swarm::new(shape);
    let mut seeder = theirs.seed(&swarm.made, swarm.work());
    swarm.wait_for_announces(1, 0);
    let mut downloader = Client::Ours.download(&swarm.made, swarm.work());
    downloader.wait_complete(&swarm.made);
    assert!(seeder.is_running(), "the {theirs:?} seeder stopped");
}

/// Their client downloads; ours seeds. Ours starts second and dials the
/// downloader it learns from the tracker, because Transmission 3.00 never
/// dials peers at 127.x addresses (real seeders dial downloaders anyway).
fn downloads_from_ours(theirs: Client, shape: Shape) {
    let swarm = Swarm::new(shape);
    let mut downloader = theirs.download(&swarm.made, swarm.work());
    swarm.wait_for_announces(0, 1);
    let mut seeder = Client::Ours.seed(&swarm.made, swarm.work());
    downloader.wait_complete(&swarm.made);
    assert!(seeder.is_running(), "our seeder stopped");
}

#[test]
fn ours_downloads_single_file_from_libtorrent() {
    ours_downloads_from(Client::Libtorrent, Shape::Single);
}

#[test]
fn ours_downloads_multi_file_from_libtorrent() {
    ours_downloads_from(Client::Libtorrent, Shape::Multi);
}

#[test]
fn ours_downloads_single_file_from_aria2() {
    ours_downloads_from(Client::Aria2, Shape::Single);
}

#[test]
fn ours_downloads_multi_file_from_aria2() {
    ours_downloads_from(Client::Aria2, Shape::Multi);
}

#[test]
fn ours_downloads_single_file_from_transmission() {
    ours_downloads_from(Client::Transmission, Shape::Single);
}

#[test]
fn ours_downloads_multi_file_from_transmission() {
    ours_downloads_from(Client::Transmission, Shape::Multi);
}

#[test]
fn libtorrent_downloads_single_file_from_ours() {
    downloads_from_ours(Client::Libtorrent, Shape::Single);
}

#[test]
fn libtorrent_downloads_multi_file_from_ours() {
    downloads_from_ours(Client::Libtorrent, Shape::Multi);
}

#[test]
fn aria2_downloads_single_file_from_ours() {
    downloads_from_ours(Client::Aria2, Shape::Single);
}

#[test]
fn aria2_downloads_multi_file_from_ours() {
    downloads_from_ours(Client::Aria2, Shape::Multi);
}

#[test]
fn transmission_downloads_single_file_from_ours() {
    downloads_from_ours(Client::Transmission, Shape::Single);
}

#[test]
fn transmission_downloads_multi_file_from_ours() {
    downloads_from_ours(Client::Transmission, Shape::Multi);
}
