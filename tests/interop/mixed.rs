use crate::support::Swarm;
use crate::support::clients::Client;
use crate::support::content::Shape;

#[test]
fn ours_downloads_from_libtorrent_and_ours_seeding_together() {
    let swarm = Swarm::new(Shape::Multi);
    let mut theirs = Client::Libtorrent.seed(&swarm.made, swarm.work());
    let mut ours = Client::Ours.seed(&swarm.made, swarm.work());
    swarm.wait_for_announces(2, 0);
    let mut downloader = Client::Ours.download(&swarm.made, swarm.work());
    downloader.wait_complete(&swarm.made);
    // Our downloader logs each handshake's peer id: libtorrent's start with
    // -LT, ours with -BT.
    let log = downloader.output();
    assert!(log.contains("PeerId(-LT"), "never connected to libtorrent");
    assert!(log.contains("PeerId(-BT"), "never connected to our seeder");
    assert!(theirs.is_running() && ours.is_running(), "a seeder stopped");
}

#[test]
fn ours_seeds_to_aria2_and_transmission_at_once() {
    let swarm = Swarm::new(Shape::Single);
    let mut aria2 = Client::Aria2.download(&swarm.made, swarm.work());
    let mut transmission = Client::Transmission.download(&swarm.made, swarm.work());
    swarm.wait_for_announces(0, 2);
    let mut seeder = Client::Ours.seed(&swarm.made, swarm.work());
    aria2.wait_complete(&swarm.made);
    transmission.wait_complete(&swarm.made);
    assert!(seeder.is_running(), "our seeder stopped");
}
