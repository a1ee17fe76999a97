use crate::support::clients::{Client, Options};
use crate::support::content::Shape;
use crate::support::dht::Hub;
use crate::support::{Announce, Swarm, ours};

/// Their client seeds a torrent with no tracker, its DHT started from the
/// hub (a libtorrent node with no torrent) and from nothing else; once the
/// hub has its `announce_peer`, ours is started with a magnet link naming
/// only the info-hash and the name (no `tr`, no `x.pe`, no `--peer`) and
/// `--dht-bootstrap HUB`: it can only learn of the seeder from the hub's
/// answer to its `get_peers`. It fetches the info dictionary from the
/// seeder and downloads everything.
fn ours_downloads_through_the_dht_from(theirs: Client) {
    let swarm = Swarm::with(Shape::Single, Announce::None);
    let mut hub = Hub::start(swarm.work());
    let seeder_options = Options {
        dht: vec![hub.addr()],
        ..Options::default()
    };
    let mut seeder = theirs.seed_for_magnet_with(&swarm.made, swarm.work(), &seeder_options);
    hub.wait_announce(swarm.made.info_hash, &mut seeder);
    let magnet = swarm.made.magnet(&[], &[]);
    let options = Options {
        dht: vec![hub.addr()],
        ..Options::default()
    };
    let mut downloader = ours().download_magnet_with(&swarm.made, &magnet, swarm.work(), &options);
    downloader.wait_complete(&swarm.made);
    assert!(seeder.is_running(), "the {theirs:?} seeder stopped");
}

/// Our seeder's DHT starts from the hub; once the hub has our
/// `announce_peer` (with the hub's token), their client is started with a
/// magnet link naming only the info-hash and the name, its DHT knowing one
/// node: ours. Whatever it learns (the hub, the seeder's address) comes
/// through our node's answers to its queries (or to the hub's), so it
/// completes only if our node works as a responder to it: answers its
/// transaction ids (libtorrent's are 2 bytes, aria2's 4), gives a token and
/// the nodes closest to the info-hash, and the peers it knows.
fn downloads_through_the_dht_from_ours(theirs: Client) {
    let swarm = Swarm::with(Shape::Single, Announce::None);
    let mut hub = Hub::start(swarm.work());
    let seeder_options = Options {
        dht: vec![hub.addr()],
        ..Options::default()
    };
    let mut seeder = ours().seed_for_magnet_with(&swarm.made, swarm.work(), &seeder_options);
    hub.wait_announce(swarm.made.info_hash, &mut seeder);
    let magnet = swarm.made.magnet(&[], &[]);
    let options = Options {
        dht: vec![seeder.dht_addr()],
        ..Options::default()
    };
    let mut downloader = theirs.download_magnet_with(&swarm.made, &magnet, swarm.work(), &options);
    downloader.wait_complete(&swarm.made);
    if theirs == Client::Libtorrent {
        let log = downloader.output();
        let reply = format!("dht reply from {}", seeder.dht_addr());
        assert!(
            log.contains(&reply),
            "libtorrent never had a DHT reply from our node: {log}"
        );
    }
    assert!(seeder.is_running(), "our seeder stopped");
}

#[test]
fn ours_downloads_by_magnet_from_libtorrent_found_only_through_the_dht() {
    ours_downloads_through_the_dht_from(Client::Libtorrent);
}

#[test]
fn ours_downloads_by_magnet_from_aria2_found_only_through_the_dht() {
    ours_downloads_through_the_dht_from(Client::Aria2);
}

#[test]
fn libtorrent_downloads_by_magnet_from_ours_found_only_through_our_dht_node() {
    downloads_through_the_dht_from_ours(Client::Libtorrent);
}

#[test]
fn aria2_downloads_by_magnet_from_ours_found_only_through_our_dht_node() {
    downloads_through_the_dht_from_ours(Client::Aria2);
}
