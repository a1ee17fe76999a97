use std::net::{Ipv6Addr, SocketAddr};

use crate::support::clients::{Client, Listen, Options};
use crate::support::content::Shape;
use crate::support::{Announce, Swarm, ours};

/// Listening on `::1` only, and no tracker: the one address either side
/// knows is the other's `[::1]:PORT`.
fn ipv6_only(peers: Vec<SocketAddr>) -> Options {
    Options {
        listen: Listen::Ipv6Only,
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

/// Our seeder with the default listener (no `--bind`: both families, one
/// port number; the stand-in listens on 127.0.0.1 and `::1`); a libtorrent
/// downloader listening on `[::1]` only is given `[::1]:PORT`, our port on
/// IPv6, and downloads everything over it.
#[test]
fn libtorrent_downloads_over_ipv6_loopback_from_ours_listening_by_default() {
    let swarm = Swarm::with(Shape::Single, Announce::None);
    let both = Options {
        listen: Listen::Both,
        ..Options::default()
    };
    let mut seeder = ours().seed_with(&swarm.made, swarm.work(), &both);
    let ipv6 = SocketAddr::new(Ipv6Addr::LOCALHOST.into(), seeder.addr().port());
    let options = ipv6_only(vec![ipv6]);
    let mut downloader = Client::Libtorrent.download_with(&swarm.made, swarm.work(), &options);
    downloader.wait_complete(&swarm.made);
    assert!(seeder.is_running(), "our seeder stopped");
}
