use crate::support::Swarm;
use crate::support::clients::Client;
use crate::support::content::Shape;

/// Their client seeds from the `.torrent` file, serving the info
/// dictionary; ours, started once the tracker knows the seeder, is given
/// only a magnet link naming the info-hash, the name and the test's
/// tracker. It finds the seeder in its first announce, dials it, fetches
/// the info dictionary (BEP 9) and downloads everything.
fn ours_downloads_by_magnet_from(theirs: Client, shape: Shape) {
    let swarm = Swarm::new(shape);
    let magnet = swarm.made.magnet(&[&swarm.made.announce], &[]);
    let mut seeder = theirs.seed_for_magnet(&swarm.made, swarm.work());
    swarm.wait_for_announces(1, 0);
    let mut downloader = Client::Ours.download_magnet(&swarm.made, &magnet, swarm.work());
    downloader.wait_complete(&swarm.made);
    assert!(seeder.is_running(), "the {theirs:?} seeder stopped");
}

/// Their client, given only a magnet link naming the test's tracker,
/// starts first; our seeder starts once the tracker knows it, dials it and
/// serves the info dictionary, then the content. Transmission 3.00 never
/// dials peers at 127.x addresses, so this is the only way it can download
/// over loopback; it also closes every connection once it has the info
/// dictionary (it pauses the torrent to check its files), so our seeder
/// must dial it again.
fn downloads_by_magnet_from_ours(theirs: Client, shape: Shape) {
    let swarm = Swarm::new(shape);
    let magnet = swarm.made.magnet(&[&swarm.made.announce], &[]);
    let mut downloader = theirs.download_magnet(&swarm.made, &magnet, swarm.work());
    // Until it has the info dictionary aria2 announces left=0, so the
    // tracker counts it as a seeder.
    swarm.wait_for_any_announces(1);
    let mut seeder = Client::Ours.seed_for_magnet(&swarm.made, swarm.work());
    downloader.wait_complete(&swarm.made);
    if theirs == Client::Libtorrent {
        let log = downloader.output();
        assert!(log.contains("metadata received"), "{log}");
    }
    assert!(seeder.is_running(), "our seeder stopped");
}

#[test]
fn ours_downloads_single_file_by_magnet_from_libtorrent() {
    ours_downloads_by_magnet_from(Client::Libtorrent, Shape::Single);
}

#[test]
fn ours_downloads_multi_file_by_magnet_from_libtorrent() {
    ours_downloads_by_magnet_from(Client::Libtorrent, Shape::Multi);
}

#[test]
fn ours_downloads_single_file_by_magnet_from_aria2() {
    ours_downloads_by_magnet_from(Client::Aria2, Shape::Single);
}

#[test]
fn ours_downloads_single_file_by_magnet_from_transmission() {
    ours_downloads_by_magnet_from(Client::Transmission, Shape::Single);
}

#[test]
fn libtorrent_downloads_single_file_by_magnet_from_ours() {
    downloads_by_magnet_from_ours(Client::Libtorrent, Shape::Single);
}

#[test]
fn libtorrent_downloads_multi_file_by_magnet_from_ours() {
    downloads_by_magnet_from_ours(Client::Libtorrent, Shape::Multi);
}

#[test]
fn aria2_downloads_single_file_by_magnet_from_ours() {
    downloads_by_magnet_from_ours(Client::Aria2, Shape::Single);
}

#[test]
fn transmission_downloads_single_file_by_magnet_from_ours() {
    downloads_by_magnet_from_ours(Client::Transmission, Shape::Single);
}

/// An info dictionary of three ut_metadata pieces (BEP 9 sends it in
/// 16 KiB pieces; the last is short): the others fit in one.
#[test]
fn ours_downloads_by_magnet_an_info_dictionary_of_three_pieces_from_libtorrent() {
    ours_downloads_by_magnet_from(Client::Libtorrent, Shape::ManyFiles);
}

#[test]
fn libtorrent_downloads_by_magnet_an_info_dictionary_of_three_pieces_from_ours() {
    downloads_by_magnet_from_ours(Client::Libtorrent, Shape::ManyFiles);
}

/// A magnet link with no tracker, only the seeder's address (`x.pe`): ours
/// dials it, fetches the info dictionary and downloads. (The seeder still
/// announces to the torrent's tracker; the link does not name it.)
#[test]
fn ours_downloads_by_magnet_with_only_a_peer_address_from_libtorrent() {
    let swarm = Swarm::new(Shape::Single);
    let mut seeder = Client::Libtorrent.seed_for_magnet(&swarm.made, swarm.work());
    let magnet = swarm.made.magnet(&[], &[seeder.addr()]);
    let mut downloader = Client::Ours.download_magnet(&swarm.made, &magnet, swarm.work());
    downloader.wait_complete(&swarm.made);
    assert!(seeder.is_running(), "the libtorrent seeder stopped");
}
