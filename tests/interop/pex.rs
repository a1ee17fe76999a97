use crate::support::clients::{Client, Options};
use crate::support::content::Shape;
use crate::support::{Announce, Swarm, ours};

/// Pieces the relay holds from the start, of the single shape's 14.
const RELAY_PIECES: usize = 6;
/// The relay's download limit, bytes a second: under one 256 KiB piece in
/// the whole test, so it never completes and stays connected to the seeder
/// as a downloader.
const RELAY_DOWNLOAD_LIMIT: u32 = 2_000;

/// Ours learns of a seeder only through libtorrent's peer exchange (BEP 11
/// `ut_pex`). The torrent has no tracker. A libtorrent seeder S (no
/// plugins, so it never sends PEX and never dials anyone) is named to
/// nobody but the relay L: a libtorrent downloader with its `ut_pex`
/// plugin, 6 of the 14 pieces on disk and a download limit that keeps it
/// from completing, which dials S. Ours is given only `--peer L`. About a
/// second after our extension handshake, L (then connected to two peers)
/// sends ours its first `ut_pex` message, listing S; ours must dial S to
/// get the 8 pieces L lacks. L is still running at the end, so it never
/// had them: what ours wrote came partly from S.
#[test]
fn ours_downloads_from_a_seeder_it_learns_only_through_libtorrent_pex() {
    let swarm = Swarm::with(Shape::Single, Announce::None);
    let mut seeder = Client::Libtorrent.seed(&swarm.made, swarm.work());
    let relay_options = Options {
        peers: vec![seeder.addr()],
        pex: true,
        download_limit: Some(RELAY_DOWNLOAD_LIMIT),
        prefill_pieces: Some(RELAY_PIECES),
        tag: Some("relay"),
        ..Options::default()
    };
    let mut relay = Client::Libtorrent.download_with(&swarm.made, swarm.work(), &relay_options);
    // Its progress line once it is connected to the seeder and has its
    // bitfield; before that a PEX message would not name the seeder.
    relay.wait_output(&format!("{RELAY_PIECES} pieces) peers 1 (seeds 1)"));
    let options = Options {
        peers: vec![relay.addr()],
        pex: true,
        ..Options::default()
    };
    let mut downloader = ours().download_with(&swarm.made, swarm.work(), &options);
    downloader.wait_complete(&swarm.made);
    assert!(
        relay.is_running(),
        "the relay completed, so the download may not have needed the seeder"
    );
    assert!(seeder.is_running(), "the libtorrent seeder stopped");
}
