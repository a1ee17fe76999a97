//! Command-line arguments (clap). The doc comments here are the `--help` text.
//!
//! Arguments are parsed into [`Args`], then validated into a
//! [`session::Config`](crate::session::Config) by [`Args::into_config`]
//! (in `config.rs`, with the `--peer` addresses: [`parse_peer`],
//! [`peer_address`]). This file owns the definition of the command line
//! and the value parsers clap calls on each flag's text; not the meaning
//! of a rate, ratio or duration, which belongs to
//! [`bandwidth`](crate::bandwidth) and [`seed_limit`](crate::seed_limit).

mod config;

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::choker::DEFAULT_UPLOAD_SLOTS;

pub use config::{parse_peer, peer_address};

/// A small BitTorrent client: downloads torrents' content (from .torrent
/// files or magnet links), verifying every piece with SHA-1, or seeds
/// existing content to other peers.
#[derive(Debug, Parser)]
#[command(
    name = "bittorrent",
    version,
    after_help = "\
Examples:
  Download into ~/Downloads/<name>, finding peers through the torrent's tracker:
    bittorrent ubuntu.torrent -d ~/Downloads/

  Download a magnet link (the metadata is fetched from peers), keeping a .torrent:
    bittorrent 'magnet:?xt=urn:btih:...&tr=http://tracker/announce' -d ~/Downloads/ \
      --save-torrent ubuntu.torrent

  Several torrents at once, over one port (exit 0 when all are complete):
    bittorrent a.torrent 'magnet:?xt=urn:btih:...' b.torrent -d ~/Downloads/

  Only files 1 and 3 to 5 of a torrent, leaving out any .nfo file:
    bittorrent album.torrent -d ~/Downloads/ --files 1,3-5 --exclude '*.nfo'

  Seed a file (or a multi-file torrent's folder) until Ctrl-C:
    bittorrent ubuntu.torrent -s ~/Downloads/ubuntu.iso --port 6881

  Two instances on one machine with no tracker:
    bittorrent demo.torrent -s demo.bin --port 7000
    bittorrent demo.torrent -d /tmp/out/ --peer 127.0.0.1:7000
  or over IPv6 (quote the brackets in the shell):
    bittorrent demo.torrent -d /tmp/out/ --peer '[::1]:7000'

  Download, then seed until the upload is twice the size or 2 hours pass:
    bittorrent ubuntu.torrent -d ~/Downloads/ --seed-ratio 2 --seed-time 2h

  Progress and the final summary as JSON lines on stdout, for scripts:
    bittorrent demo.torrent -d out/ --json

  More logging: -v (info), -vv (debug: peers and pieces), -vvv (trace: every
  message on the wire, as in `127.0.0.1:7000 -> request piece 12 begin 32768
  length 16384`); RUST_LOG works too:
    RUST_LOG=bittorrent=debug bittorrent demo.torrent -d out/

Other commands (each has its own --help):
  bittorrent create PATH [-o OUT.torrent] [-t URL]...   make a .torrent
  bittorrent info FILE.torrent|MAGNET [--json]          show what it holds
  bittorrent verify FILE.torrent PATH                   check content against it
  bittorrent completions bash|zsh|fish                  shell completion script
  bittorrent man                                        the man page

Every run ends with a summary line on stderr: size, time, bytes downloaded
and uploaded with their average rates, peers connected, bytes wasted, pieces
that failed the hash check, peers banned.

Exit status: 0 when every download is complete and verified (also when it
seeds on after that), or seeding was stopped with Ctrl-C, SIGTERM or its
--seed-time or --seed-ratio; 1 on any error (with several torrents, when
any of them failed; the others go on), 2 on bad arguments, a malformed
magnet link or a choice of files that does not fit the torrent."
)]
pub struct Args {
    /// The .torrent files or magnet links (magnet:?xt=urn:btih:<40 hex or
    /// 32 base32>&dn=NAME&tr=TRACKER&x.pe=HOST:PORT; quote them in the shell).
    /// The same torrent given twice is one. A .torrent must be a regular
    /// file of at most 16 MiB, the bound on metadata from peers too.
    #[arg(required = true, value_name = "TORRENT")]
    pub torrents: Vec<String>,

    /// Download into DEST/NAME, NAME being the name in the torrent. An interrupted download
    /// resumes: existing data is checked and only missing pieces are fetched.
    #[arg(
        short = 'd',
        long = "download",
        value_name = "DEST",
        conflicts_with = "seed"
    )]
    pub download: Option<PathBuf>,

    /// Seed the content at PATH (the file, or the folder of a multi-file
    /// torrent). With several torrents, PATH is a folder and each is seeded
    /// from PATH/NAME. It is checked first and never written to.
    #[arg(
        short = 's',
        long = "seed",
        value_name = "PATH",
        required_unless_present = "download"
    )]
    pub seed: Option<PathBuf>,

    /// Port to listen on for incoming peers, over IPv4 and IPv6 (if taken
    /// on either, the next port free on both is used); 0 lets the system
    /// choose.
    #[arg(short = 'p', long, default_value_t = 6881, value_name = "N")]
    pub port: u16,

    /// Listen on this address only: for example 127.0.0.1 or ::1 for this
    /// machine only, 0.0.0.0 for every IPv4 address, :: for every IPv6
    /// one. By default every IPv4 and every IPv6 address, on one port
    /// (IPv4 alone on a machine without IPv6). A single address is also
    /// where our connections to peers and UDP trackers come from (HTTP
    /// announces keep the system's choice).
    #[arg(long, value_name = "ADDR")]
    pub bind: Option<IpAddr>,

    /// A peer to connect to, besides the tracker's (repeatable): an IPv4
    /// address, an IPv6 address in brackets (see the examples below), or a
    /// host name (its first address), then the port. Example: --peer
    /// 127.0.0.1:7000
    #[arg(long = "peer", value_name = "HOST:PORT")]
    pub peers: Vec<String>,

    /// More log output: -v info, -vv debug, -vvv trace. Shows log lines
    /// instead of the live progress line.
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Never show the live progress line (log lines are printed instead).
    #[arg(long)]
    pub no_progress: bool,

    /// Seconds to wait for a tracker's answer.
    #[arg(long, default_value_t = 15, value_name = "SECS")]
    pub tracker_timeout: u64,

    /// Peers we upload to at once, chosen every 10 s by the rate they give
    /// us (or take from us while seeding), plus one optimistic slot that
    /// moves every 30 s.
    #[arg(long, default_value_t = DEFAULT_UPLOAD_SLOTS, value_name = "N",
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub upload_slots: usize,

    /// Most peer connections at once, both directions, for all torrents together.
    #[arg(long, default_value_t = DEFAULT_MAX_PEERS, value_name = "N",
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub max_peers: usize,

    /// Write downloaded pieces through the page cache. By default they go
    /// straight to the disk (O_DIRECT) where the file system allows, which
    /// costs less CPU and leaves the cache to the files you use.
    #[arg(long)]
    pub no_direct_io: bool,

    /// Download into files that have other names too (hard links), which
    /// changes their content under every name. By default such a file is
    /// refused. (A symbolic link below DEST is always refused.)
    #[arg(long)]
    pub allow_hard_links: bool,

    /// Cut an existing file that is longer than the torrent's file to the
    /// torrent's length, losing its end. By default such a file, which
    /// cannot be the torrent's data, is refused and left as it is.
    #[arg(long)]
    pub allow_overwrite: bool,

    /// Write the torrent's metainfo to FILE as a .torrent that other
    /// clients open (for a magnet link, once the metadata is fetched). One
    /// torrent only.
    #[arg(long, value_name = "FILE")]
    pub save_torrent: Option<PathBuf>,

    /// Turn peer exchange (BEP 11, ut_pex) off: peers come only from the
    /// trackers, the DHT, --peer and incoming connections. Private torrents
    /// never use it.
    #[arg(long)]
    pub no_pex: bool,

    /// Turn the DHT (BEP 5) off: no node is run, no peers are found or
    /// announced through it. Private torrents never use it. The node (on
    /// UDP, at the listen port's number) keeps its id and the nodes it
    /// knows in $XDG_STATE_HOME/bittorrent/dht.dat, else
    /// ~/.local/state/bittorrent/dht.dat.
    #[arg(long)]
    pub no_dht: bool,

    /// A DHT node to bootstrap from (repeatable); replaces the default
    /// routers (router.bittorrent.com:6881, dht.transmissionbt.com:6881,
    /// router.utorrent.com:6881, dht.libtorrent.org:25401). Nodes saved by
    /// an earlier run, when there are any, are used instead of the defaults.
    #[arg(long = "dht-bootstrap", value_name = "HOST:PORT")]
    pub dht_bootstrap: Vec<String>,

    /// Most bytes a second downloaded from all peers and torrents together,
    /// counting the pieces' data only (not protocol messages). RATE is bytes
    /// a second with an optional unit: K, M, G (or KB, MB, GB) are powers
    /// of 1000, KiB, MiB, GiB powers of 1024; 500K is 500,000 bytes a
    /// second, 1.5MiB is 1,572,864. 0 means no limit.
    #[arg(long, value_name = "RATE", default_value = "0", value_parser = parse_rate_arg)]
    pub max_download_rate: u64,

    /// Most bytes a second uploaded to all peers and torrents together,
    /// counting the pieces' data only; RATE as for --max-download-rate
    /// (K = 1000 bytes, KiB = 1024). 0 means no limit.
    #[arg(long, value_name = "RATE", default_value = "0", value_parser = parse_rate_arg)]
    pub max_upload_rate: u64,

    /// Download only these files: indexes counted from 1 in the torrent's
    /// file order (as aria2's --select-file), commas between them and
    /// ranges allowed, as in 1,3-5. Files not chosen are not created; the
    /// bytes of theirs that share a piece with a chosen file are kept in
    /// DEST/.NAME.parts. The download is complete when the chosen files
    /// are. One torrent only (for a magnet link, applied once its metadata
    /// has arrived); downloads only.
    #[arg(long, value_name = "LIST")]
    pub files: Option<String>,

    /// Do not download the files whose path inside the torrent matches
    /// GLOB (repeatable; after --files): * and ? match any characters,
    /// / included, so '*.nfo' leaves out every .nfo file and 'extras/*'
    /// the folder extras; brackets hold a set of characters. Quote it in the shell. With several
    /// torrents it applies to each. Downloads only.
    #[arg(long = "exclude", value_name = "GLOB")]
    pub exclude: Vec<String>,

    /// After a download (-d) completes, keep seeding until bytes uploaded
    /// in this run (during the download too, as aria2 counts them) reach
    /// RATIO times the size downloaded (with --files, of the chosen files'
    /// pieces), or --seed-time is over, whichever comes first. With -s,
    /// ends the seeding the same way. By default a download exits once
    /// complete. Ctrl-C while seeding exits 0.
    #[arg(long, value_name = "RATIO", value_parser = parse_ratio_arg)]
    pub seed_ratio: Option<f64>,

    /// After a download (-d) completes, keep seeding this long, or until
    /// --seed-ratio is reached, whichever comes first; with -s, seed this
    /// long. DURATION is a whole number with s, m or h (90s, 30m, 2h); a
    /// bare number is minutes, as in aria2.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_arg)]
    pub seed_time: Option<Duration>,

    /// Announce to every tracker this often, whatever interval the tracker
    /// asks for (failed announces still back off). Meant for private swarms
    /// and tests; on public trackers, announcing more often than asked can
    /// get a client refused. At most a year (31536000).
    #[arg(long, value_name = "SECS",
          value_parser = clap::builder::RangedU64ValueParser::<u64>::new().range(1..=MAX_ANNOUNCE_INTERVAL))]
    pub announce_interval: Option<u64>,

    /// Print progress and the final summary as JSON lines on stdout, one
    /// object a line with an "event" field ("progress", "summary"),
    /// instead of the live progress line. Log lines stay on stderr.
    #[arg(long)]
    pub json: bool,
}

/// The longest `--announce-interval`: a year, so that adding it to a clock
/// reading can never overflow.
const MAX_ANNOUNCE_INTERVAL: u64 = 365 * 24 * 3600;

/// A `--seed-ratio` for clap.
fn parse_ratio_arg(text: &str) -> Result<f64, String> {
    crate::seed_limit::parse_ratio(text)
}

/// A `--seed-time` for clap.
fn parse_duration_arg(text: &str) -> Result<Duration, String> {
    crate::seed_limit::parse_duration(text)
}

/// A rate for clap, which names the flag and the value in its error.
fn parse_rate_arg(text: &str) -> Result<u64, String> {
    crate::bandwidth::parse_rate(text)
}

/// Peer connections allowed unless `--max-peers` says otherwise.
pub const DEFAULT_MAX_PEERS: usize = 50;

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn seed_and_download_together_is_a_usage_error() {
        assert!(Args::try_parse_from(["bittorrent", "a.torrent", "-d", "x", "-s", "y"]).is_err());
        assert!(Args::try_parse_from(["bittorrent", "a.torrent"]).is_err());
    }
}
