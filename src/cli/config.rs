//! Validation of the parsed [`Args`] into a
//! [`session::Config`](crate::session::Config): the rules between flags
//! (one of `-d` and `-s`, `--files` with a single torrent, ...), the
//! defaults that depend on the terminal, and the `--peer` addresses. Not
//! owned here: the flags themselves and their help text (`mod.rs`).

use std::io::IsTerminal;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use super::Args;
use crate::dht::node::DhtConfig;
use crate::seed_limit::SeedLimit;
use crate::selection::Selection;
use crate::session::{Config, Mode};

impl Args {
    /// Validates the arguments into a session configuration.
    ///
    /// # Errors
    /// A message naming a `--peer` that is not a reachable address, or
    /// `--save-torrent` with several torrents.
    pub fn into_config(self) -> Result<Config, String> {
        if self.save_torrent.is_some() && self.torrents.len() > 1 {
            return Err("--save-torrent takes a single torrent".into());
        }
        let selection = Selection::new(self.files.as_deref(), &self.exclude)?;
        if !selection.is_all() && self.seed.is_some() {
            return Err("--files and --exclude choose files to download (-d); seeding (-s) serves every file".into());
        }
        if selection.has_file_list() && self.torrents.len() > 1 {
            return Err("--files takes a single torrent (--exclude applies to several)".into());
        }
        let mode = match (self.download, self.seed) {
            (Some(dest), None) => Mode::Download { dest },
            (None, Some(path)) => Mode::Seed { path },
            _ => return Err("give exactly one of --download DEST or --seed PATH".into()),
        };
        let peers = self
            .peers
            .iter()
            .map(|peer| parse_peer(peer))
            .collect::<Result<Vec<_>, _>>()?;
        let live_progress =
            self.verbose == 0 && !self.no_progress && !self.json && std::io::stderr().is_terminal();
        Ok(Config {
            torrents: self.torrents,
            save_torrent: self.save_torrent,
            mode,
            port: self.port,
            bind: self.bind,
            peers,
            live_progress,
            tracker_timeout: Duration::from_secs(self.tracker_timeout.max(1)),
            upload_slots: self.upload_slots,
            max_peers: self.max_peers,
            direct_io: !self.no_direct_io,
            allow_hard_links: self.allow_hard_links,
            allow_overwrite: self.allow_overwrite,
            pex: !self.no_pex,
            dht: (!self.no_dht).then_some(DhtConfig {
                bootstrap: self.dht_bootstrap,
                state_dir: None,
            }),
            max_download_rate: self.max_download_rate,
            max_upload_rate: self.max_upload_rate,
            selection,
            seed_limit: SeedLimit {
                ratio: self.seed_ratio,
                time: self.seed_time,
            },
            announce_interval: self.announce_interval.map(Duration::from_secs),
            json: self.json,
        })
    }
}

/// The address a `--peer` names: `IPv4:PORT`, `[IPv6]:PORT` or
/// `HOST:PORT` (resolved, its first address). An IPv4 address in IPv6 form
/// (`[::ffff:127.0.0.1]:7000`) is taken as the IPv4 address it is, as the
/// listener sees such peers.
///
/// # Errors
/// A message naming the `--peer` and why it is not an address.
pub fn parse_peer(peer: &str) -> Result<SocketAddr, String> {
    peer_address(peer).map_err(|reason| format!("bad --peer {peer:?}: {reason}"))
}

/// The address `text` names, in the forms [`parse_peer`] takes; used for
/// `--peer` and for a magnet's `x.pe`.
///
/// # Errors
/// Why `text` is not an address.
pub fn peer_address(text: &str) -> Result<SocketAddr, String> {
    // `::1:7000` is an IPv6 address, or `::1` and a port: RFC 3986 asks
    // for brackets, and so do we rather than guess as the resolver would.
    if text.parse::<SocketAddr>().is_err()
        && text
            .rsplit_once(':')
            .is_some_and(|(host, _)| host.contains(':'))
    {
        return Err("an IPv6 address goes in brackets, as in [::1]:7000".into());
    }
    let addr = text
        .to_socket_addrs()
        .map_err(|e| e.to_string())?
        .next()
        .ok_or_else(|| "no address".to_string())?;
    Ok(SocketAddr::new(addr.ip().to_canonical(), addr.port()))
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;
    use clap::{CommandFactory, Parser};

    #[test]
    fn dht_is_on_by_default_and_flags_turn_it_off_or_name_its_bootstrap() {
        let parse = |extra: &[&str]| {
            let mut argv = vec!["bittorrent", "a.torrent", "-d", "x"];
            argv.extend_from_slice(extra);
            Args::try_parse_from(argv)
                .unwrap()
                .into_config()
                .unwrap()
                .dht
        };
        let default = parse(&[]).expect("on by default");
        assert!(default.bootstrap.is_empty(), "empty means the defaults");
        assert_eq!(default.state_dir, None);
        assert_eq!(parse(&["--no-dht"]), None);
        let named = parse(&[
            "--dht-bootstrap",
            "127.0.0.1:6881",
            "--dht-bootstrap",
            "localhost:7000",
        ])
        .unwrap();
        assert_eq!(named.bootstrap, ["127.0.0.1:6881", "localhost:7000"]);
    }

    #[test]
    fn rate_limits_are_none_unless_given_and_take_units() {
        let parse = |extra: &[&str]| {
            let mut argv = vec!["bittorrent", "a.torrent", "-d", "out"];
            argv.extend(extra);
            Args::try_parse_from(argv).map(|args| {
                let config = args.into_config().unwrap();
                (config.max_download_rate, config.max_upload_rate)
            })
        };
        assert_eq!(parse(&[]).unwrap(), (0, 0));
        assert_eq!(
            parse(&["--max-download-rate", "1.5MiB", "--max-upload-rate", "500K"]).unwrap(),
            (1_572_864, 500_000)
        );
        assert_eq!(parse(&["--max-upload-rate", "0"]).unwrap(), (0, 0));
        let e = parse(&["--max-upload-rate", "10Q"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation);
        let e = e.to_string();
        assert!(e.contains("--max-upload-rate") && e.contains("10Q"), "{e}");
        let help = Args::command().render_long_help().to_string();
        assert!(help.contains("powers of 1000") && help.contains("powers of 1024"));
    }

    #[test]
    fn seed_limits_announce_interval_and_json_become_the_config() {
        let parse = |extra: &[&str]| {
            let mut argv = vec!["bittorrent", "a.torrent", "-d", "out"];
            argv.extend(extra);
            Args::try_parse_from(argv).map(|args| args.into_config().unwrap())
        };
        let default = parse(&[]).unwrap();
        assert!(
            !default.seed_limit.is_set(),
            "a download exits when complete"
        );
        assert_eq!(default.announce_interval, None);
        assert!(!default.json);
        let set = parse(&[
            "--seed-ratio",
            "1.5",
            "--seed-time",
            "90s",
            "--announce-interval",
            "5",
            "--json",
        ])
        .unwrap();
        assert_eq!(set.seed_limit.ratio, Some(1.5));
        assert_eq!(set.seed_limit.time, Some(Duration::from_secs(90)));
        assert_eq!(set.announce_interval, Some(Duration::from_secs(5)));
        assert!(
            set.json && !set.live_progress,
            "JSON replaces the live line"
        );
        assert_eq!(
            parse(&["--seed-time", "5"]).unwrap().seed_limit.time,
            Some(Duration::from_secs(300)),
            "a bare number is minutes"
        );
        for bad in [
            &["--seed-time", "2d"][..],
            &["--seed-ratio", "x"],
            &["--announce-interval", "0"],
        ] {
            let e = parse(bad).unwrap_err();
            assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation, "{bad:?}");
            assert!(e.to_string().contains(bad[0]), "{e}");
        }
        let help = Args::command().render_long_help().to_string();
        assert!(help.contains("private swarms and tests"), "{help}");
    }

    #[test]
    fn download_arguments_become_a_config() {
        let args = Args::try_parse_from([
            "bittorrent",
            "a.torrent",
            "-d",
            "out",
            "--peer",
            "127.0.0.1:7000",
            "--peer",
            "127.0.0.1:7001",
            "--port",
            "0",
        ])
        .unwrap();
        let config = args.into_config().unwrap();
        assert_eq!(config.mode, Mode::Download { dest: "out".into() });
        assert_eq!(config.port, 0);
        assert_eq!(config.peers.len(), 2);
        assert_eq!(config.peers[1], "127.0.0.1:7001".parse().unwrap());
    }

    #[test]
    fn direct_io_is_on_unless_turned_off() {
        let parse = |extra: &[&str]| {
            let mut argv = vec!["bittorrent", "a.torrent", "-d", "out"];
            argv.extend(extra);
            Args::try_parse_from(argv).unwrap().into_config().unwrap()
        };
        assert!(parse(&[]).direct_io);
        assert!(!parse(&["--no-direct-io"]).direct_io);
    }

    #[test]
    fn bind_is_both_families_unless_an_address_is_given() {
        let parse = |extra: &[&str]| {
            let mut argv = vec!["bittorrent", "a.torrent", "-d", "out"];
            argv.extend(extra);
            Args::try_parse_from(argv).map(|args| args.into_config().unwrap().bind)
        };
        assert_eq!(parse(&[]).unwrap(), None);
        assert_eq!(
            parse(&["--bind", "127.0.0.1"]).unwrap(),
            Some(IpAddr::from([127, 0, 0, 1]))
        );
        assert_eq!(
            parse(&["--bind", "0.0.0.0"]).unwrap(),
            Some(IpAddr::from([0, 0, 0, 0]))
        );
        assert_eq!(
            parse(&["--bind", "::1"]).unwrap(),
            Some("::1".parse::<IpAddr>().unwrap())
        );
        let e = parse(&["--bind", "localhost:80"]).unwrap_err().to_string();
        assert!(e.contains("--bind") && e.contains("localhost:80"), "{e}");
        let e = parse(&["--bind", "[::1]"]).unwrap_err().to_string();
        assert!(e.contains("--bind") && e.contains("[::1]"), "{e}");
    }

    #[test]
    fn peers_are_ipv4_or_bracketed_ipv6_addresses() {
        let v6: SocketAddr = "[::1]:7000".parse().unwrap();
        assert_eq!(parse_peer("[::1]:7000"), Ok(v6));
        assert_eq!(
            parse_peer("127.0.0.1:7000"),
            Ok(([127, 0, 0, 1], 7000).into())
        );
        assert_eq!(
            parse_peer("[2001:db8::1]:51413"),
            Ok("[2001:db8::1]:51413".parse().unwrap())
        );
        assert_eq!(
            parse_peer("[::ffff:127.0.0.1]:7000"),
            Ok(([127, 0, 0, 1], 7000).into()),
            "a mapped IPv4 address is the IPv4 address"
        );
        for bad in [
            "::1:7000",
            "[::1]",
            "[::1]:",
            "[::1]:70000",
            "[::1:7000",
            "::1",
        ] {
            let e = parse_peer(bad).unwrap_err();
            assert!(e.contains("--peer") && e.contains(bad), "{bad}: {e}");
        }
        let args =
            Args::try_parse_from(["bittorrent", "a.torrent", "-d", "x", "--peer", "[::1]:7000"])
                .unwrap();
        assert_eq!(args.into_config().unwrap().peers, [v6]);
    }

    #[test]
    fn existing_files_are_protected_unless_a_flag_allows() {
        let parse = |extra: &[&str]| {
            let mut argv = vec!["bittorrent", "a.torrent", "-d", "out"];
            argv.extend(extra);
            Args::try_parse_from(argv).unwrap().into_config().unwrap()
        };
        let default = parse(&[]);
        assert!(!default.allow_hard_links && !default.allow_overwrite);
        let hard = parse(&["--allow-hard-links"]);
        assert!(hard.allow_hard_links && !hard.allow_overwrite);
        let overwrite = parse(&["--allow-overwrite"]);
        assert!(!overwrite.allow_hard_links && overwrite.allow_overwrite);
    }

    #[test]
    fn bad_peer_address_is_an_error_naming_it() {
        let args =
            Args::try_parse_from(["bittorrent", "a.torrent", "-d", "x", "--peer", "nonsense"])
                .unwrap();
        let e = args.into_config().unwrap_err();
        assert!(e.contains("nonsense"), "{e}");
    }

    #[test]
    fn several_torrents_and_magnets_are_inputs_in_order() {
        let args = Args::try_parse_from([
            "bittorrent",
            "a.torrent",
            "magnet:?xt=urn:btih:0123456789abcdef0123456789abcdef01234567",
            "b.torrent",
            "-d",
            "out",
        ])
        .unwrap();
        let config = args.into_config().unwrap();
        assert_eq!(config.torrents.len(), 3);
        assert!(config.torrents[1].starts_with("magnet:"));
    }

    #[test]
    fn files_and_exclude_become_a_selection_for_downloads_only() {
        let parse = |argv: &[&str]| {
            let mut all = vec!["bittorrent"];
            all.extend(argv);
            Args::try_parse_from(all).unwrap().into_config()
        };
        assert!(
            parse(&["a.torrent", "-d", "out"])
                .unwrap()
                .selection
                .is_all()
        );
        let config = parse(&[
            "a.torrent",
            "-d",
            "out",
            "--files",
            "1,3-4",
            "--exclude",
            "*.nfo",
            "--exclude",
            "x/*",
        ])
        .unwrap();
        let paths: Vec<(String, bool)> = ["a", "b", "c.nfo", "x/d", "e"]
            .iter()
            .map(|p| (p.to_string(), false))
            .collect();
        assert_eq!(
            config.selection.resolve(&paths).unwrap(),
            [true, false, false, false, false]
        );
        // --exclude applies to each of several torrents; --files does not.
        let several = parse(&["a.torrent", "b.torrent", "-d", "out", "--exclude", "*.nfo"]);
        assert!(!several.unwrap().selection.is_all());
        let e = parse(&["a.torrent", "b.torrent", "-d", "out", "--files", "1"]).unwrap_err();
        assert!(e.contains("--files takes a single torrent"), "{e}");
        for extra in [["--files", "1"], ["--exclude", "*.nfo"]] {
            let mut argv = vec!["a.torrent", "-s", "content"];
            argv.extend(extra);
            let e = parse(&argv).unwrap_err();
            assert!(
                e.contains("--files and --exclude") && e.contains("-s"),
                "{e}"
            );
        }
        let e = parse(&["a.torrent", "-d", "out", "--files", "1,x"]).unwrap_err();
        assert!(e.contains("--files") && e.contains("\"x\""), "{e}");
        let e = parse(&["a.torrent", "-d", "out", "--exclude", "[x"]).unwrap_err();
        assert!(e.contains("--exclude") && e.contains("[x"), "{e}");
    }

    #[test]
    fn save_torrent_with_several_torrents_is_an_error() {
        let args = Args::try_parse_from([
            "bittorrent",
            "a.torrent",
            "b.torrent",
            "-d",
            "out",
            "--save-torrent",
            "x.torrent",
        ])
        .unwrap();
        let e = args.into_config().unwrap_err();
        assert!(e.contains("--save-torrent"), "{e}");
    }
}
