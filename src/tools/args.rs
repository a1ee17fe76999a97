//! The verbs' command lines (clap): `create`, `info`, `verify`,
//! `completions` and `man`. The doc comments here are their `--help` text.
//!
//! The verbs are parsed apart from the download and seed command line
//! ([`crate::cli::Args`]), which stays as it is: `main` hands the arguments
//! here only when the first one names a verb ([`super::is_verb`]).
//! [`full_command`] puts both together, for completions and the man page.

use std::path::PathBuf;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};

/// The verbs' parser: `bittorrent VERB ...`.
#[derive(Debug, Parser)]
#[command(name = "bittorrent", version)]
pub struct Tools {
    /// The verb and its arguments.
    #[command(subcommand)]
    pub verb: Verb,
}

/// One verb and its arguments.
#[derive(Debug, Subcommand)]
pub enum Verb {
    /// Make a .torrent of a file or a folder.
    Create(CreateArgs),
    /// Show what a .torrent or a magnet link holds.
    Info(InfoArgs),
    /// Check content against a .torrent's piece hashes.
    Verify(VerifyArgs),
    /// Print a shell completion script to stdout.
    Completions(CompletionsArgs),
    /// Print the man page (roff) to stdout.
    Man,
}

/// `bittorrent create`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Which files go in: every regular file below PATH, hidden ones (names that
start with a dot) included, zero-length files included. A symbolic link is
followed, to a file or a folder, as mktorrent follows it; a dangling link or
a link that loops back to a folder above it is an error. Anything else (a
FIFO, a socket, a device) is an error naming it: nothing is left out
silently. Empty folders cannot be listed in a torrent; each is named on
stderr. Files are listed in the byte order of their paths below PATH, as
mktorrent lists them, so the same content, piece length and trackers give
the same info-hash as mktorrent.

Examples:
  bittorrent create ~/photos -t http://tracker.example/announce
  bittorrent create big.iso -o big.torrent --piece-length 4MiB --private \\
    -t udp://tracker.a:6969/announce -t http://tracker.b/announce")]
pub struct CreateArgs {
    /// The file or folder to share (a folder makes a multi-file torrent).
    #[arg(value_name = "PATH")]
    pub path: PathBuf,

    /// Where to write the .torrent; by default NAME.torrent in the current
    /// folder, NAME being PATH's last component.
    #[arg(short = 'o', long = "output", value_name = "OUT.torrent")]
    pub output: Option<PathBuf>,

    /// A tracker's announce URL (repeatable). Each becomes a tier of its
    /// own, in the order given (BEP 12): the first is also `announce`.
    #[arg(short = 't', long = "tracker", value_name = "URL", value_parser = parse_url)]
    pub trackers: Vec<String>,

    /// Piece length: a power of two from 16KiB to 64MiB, in bytes or with a
    /// unit (K, KiB, M, MiB are all powers of 1024 here: 256K is 262,144).
    /// By default the smallest power of two that gives at most 2,000
    /// pieces (so 1,000 to 2,000 pieces), from 16 KiB to 16 MiB.
    #[arg(long, value_name = "SIZE", value_parser = parse_piece_len)]
    pub piece_length: Option<u64>,

    /// Mark the torrent private (BEP 27): clients then find peers through
    /// its trackers only, never the DHT or peer exchange.
    #[arg(long)]
    pub private: bool,

    /// A comment stored in the torrent (outside the info dictionary).
    #[arg(long, value_name = "TEXT")]
    pub comment: Option<String>,

    /// A `source` key in the info dictionary (as mktorrent -s): the same
    /// content with another source has another info-hash, which private
    /// trackers use to tell their torrents apart.
    #[arg(long, value_name = "TEXT")]
    pub source: Option<String>,

    /// A web seed URL (BEP 19, `url-list`; repeatable).
    #[arg(long = "web-seed", value_name = "URL", value_parser = parse_url)]
    pub web_seeds: Vec<String>,

    /// Leave out the creation date, so that the same inputs give the same
    /// .torrent byte for byte.
    #[arg(long)]
    pub no_date: bool,

    /// Write over OUT if it exists (by default an existing OUT is an error).
    #[arg(long)]
    pub force: bool,
}

/// `bittorrent info`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Files are numbered from 1 in the torrent's order; these are the indexes a
download's file selection takes. A magnet link shows what it carries: the
info-hash, the name, the trackers and the peers.

Example:
  bittorrent info ubuntu.torrent --json")]
pub struct InfoArgs {
    /// A .torrent file or a magnet link (quote it in the shell).
    #[arg(value_name = "TORRENT|MAGNET")]
    pub input: String,

    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `bittorrent verify`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Exit status: 0 when every file is complete and every piece matches its
hash, 1 when anything is missing, short, longer or does not match (or the
torrent cannot be read), 2 on bad arguments.

Example:
  bittorrent verify ubuntu.torrent ~/Downloads/ubuntu.iso")]
pub struct VerifyArgs {
    /// The .torrent file.
    #[arg(value_name = "FILE.torrent")]
    pub torrent: PathBuf,

    /// The content: the file of a single-file torrent, or the folder of a
    /// multi-file one (as --seed takes it).
    #[arg(value_name = "PATH")]
    pub path: PathBuf,
}

/// `bittorrent completions`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  bittorrent completions bash > ~/.local/share/bash-completion/completions/bittorrent
  bittorrent completions zsh > ~/.zfunc/_bittorrent
  bittorrent completions fish > ~/.config/fish/completions/bittorrent.fish")]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// A shell that `completions` writes for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    /// GNU bash.
    Bash,
    /// Z shell.
    Zsh,
    /// fish.
    Fish,
}

/// The whole command line, for completions and the man page: the download
/// and seed arguments of [`crate::cli::Args`] with the verbs as
/// subcommands.
pub fn full_command() -> clap::Command {
    let verbs = Tools::command();
    let mut command = crate::cli::Args::command()
        .subcommand_negates_reqs(true)
        .args_conflicts_with_subcommands(true);
    for sub in verbs.get_subcommands() {
        command = command.subcommand(sub.clone());
    }
    command
}

/// A URL for clap: `scheme://rest`.
fn parse_url(text: &str) -> Result<String, String> {
    match text.split_once("://") {
        Some((scheme, rest))
            if !scheme.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
                && !rest.is_empty() =>
        {
            Ok(text.to_string())
        }
        _ => Err("expected a URL such as http://tracker.example/announce".into()),
    }
}

/// A piece length for clap: a power of two from 16 KiB to 64 MiB.
fn parse_piece_len(text: &str) -> Result<u64, String> {
    super::create::parse_piece_len(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clap_definitions_are_consistent() {
        Tools::command().debug_assert();
        full_command().debug_assert();
    }

    #[test]
    fn create_takes_repeated_trackers_and_web_seeds_in_order() {
        let tools = Tools::try_parse_from([
            "bittorrent",
            "create",
            "dir",
            "-t",
            "http://a/announce",
            "--tracker",
            "udp://b:1/announce",
            "--web-seed",
            "http://w/",
            "--piece-length",
            "256K",
            "--private",
            "--no-date",
        ])
        .unwrap();
        let Verb::Create(args) = tools.verb else {
            panic!("not create");
        };
        assert_eq!(args.trackers, ["http://a/announce", "udp://b:1/announce"]);
        assert_eq!(args.web_seeds, ["http://w/"]);
        assert_eq!(args.piece_length, Some(256 * 1024));
        assert!(args.private && args.no_date && !args.force);
    }

    #[test]
    fn a_tracker_or_web_seed_that_is_not_a_url_is_a_usage_error() {
        for flag in ["-t", "--web-seed"] {
            let e = Tools::try_parse_from(["bittorrent", "create", "x", flag, "tracker.example"])
                .unwrap_err();
            assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation);
            let e = e.to_string();
            assert!(
                e.contains("tracker.example") && e.contains("expected a URL"),
                "{e}"
            );
        }
        assert!(Tools::try_parse_from(["bittorrent", "create", "x", "-t", "udp://t:6969"]).is_ok());
        assert!(Tools::try_parse_from(["bittorrent", "create", "x", "-t", "://x"]).is_err());
    }

    #[test]
    fn a_piece_length_that_is_not_a_power_of_two_is_a_usage_error() {
        let e = Tools::try_parse_from(["bittorrent", "create", "x", "--piece-length", "100000"])
            .unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation);
        assert!(e.to_string().contains("power of two"), "{e}");
    }
}
