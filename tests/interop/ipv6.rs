use crate::support::clients::{Client, Options};
use crate::support::content::Shape;
use crate::support::{Announce, Swarm, ours};

/// Listening on `::1` only, and no tracker: the one address either side
/// knows is the other's `[::1]:PORT`.
fn ipv6_only(peers: Vec<std::net::SocketAddr>) -> Options {
    Options {
        ipv6: true,
        peers,
        ..Options::default()
    }
}

/// A libtorrent seeder listens on `[::1]` only; ours (bound to `::1`) is
/// given `--peer [::1]:PORT` and a torrent with no tracker, dials it over
/// IPv6 and downloads everything.
#[test]
fn ours_downloads_from_libtorrent_over_ipv6_loopback() {
    let swarm = Swarm::with(Shape::Multi, Announce::None);
    let mut seeder = Client::Libtorrent.seed_with(&swarm.made, swarm.work(), &ipv6_only(vec![]));
    let options = ipv6_only(vec![seeder.addr()]);
    let mut downloader = ours().download_with(&swarm.made, swarm.work(), &options);
    downloader.wait_complete(&swarm.made);
    assert!(seeder.is_running(), "the libtorrent seeder stopped");
}

/// Our seeder listens on `[::1]` only (`--bind ::1`); a libtorrent
/// downloader, listening on `[::1]` only too, is given its address and a
/// torrent with no tracker, dials it over IPv6 and downloads everything.
#[test]
fn libtorrent_downloads_from_ours_over_ipv6_loopback() {
    let swarm = Swarm::with(Shape::Multi, Announce::None);
    let mut seeder = ours().seed_with(&swarm.made, swarm.work(), &ipv6_only(vec![]));
    let options = ipv6_only(vec![seeder.addr()]);
    let mut downloader = Client::Libtorrent.download_with(&swarm.made, swarm.work(), &options);
    downloader.wait_complete(&swarm.made);
    assert!(seeder.is_running(), "our seeder stopped");
}
