//! The error that ends a run, and its exit code.
//!
//! Only failures that stop the whole session live here. A misbehaving peer is
//! not one of them: its thread ends and the manager hears why (see
//! [`crate::piece_manager::PeerEvent::Disconnected`]); there is no conversion
//! from a peer's failure into this type.

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::magnet::MagnetError;
use crate::metainfo::MetainfoError;
use crate::selection::SelectionError;
use crate::storage::StorageError;
use crate::tracker::TrackerError;
use crate::untrusted;

/// Why a run failed.
#[derive(Debug)]
pub enum Error {
    /// The `.torrent` file could not be read.
    ReadTorrent {
        /// Its path.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The `.torrent` file is not a valid torrent.
    Metainfo {
        /// Its path.
        path: PathBuf,
        /// What is wrong with it.
        source: MetainfoError,
    },
    /// A magnet link is malformed.
    Magnet {
        /// The link as given.
        input: String,
        /// What is wrong with it.
        source: MagnetError,
    },
    /// The metainfo could not be written (`--save-torrent`).
    SaveTorrent {
        /// Where it was to go.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// Content files could not be created, read or written.
    Storage(StorageError),
    /// Content to seed does not match the torrent.
    SeedMismatch {
        /// The content's path.
        path: PathBuf,
        /// How many pieces fail their hash.
        bad_count: u32,
        /// How many pieces the torrent has.
        piece_count: u32,
        /// The first failing piece.
        first_bad: u32,
    },
    /// No tracker answered and no peer was given by hand.
    Tracker(TrackerError),
    /// No port to listen on.
    Listen {
        /// The first port tried.
        port: u16,
        /// The last bind error.
        source: io::Error,
    },
    /// A thread of the session could not be started or died.
    Thread(String),
    /// `--files` or `--exclude` do not fit the torrent (an index past its
    /// last file, or no file left).
    Selection {
        /// The torrent's name.
        name: String,
        /// What is wrong.
        source: SelectionError,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::ReadTorrent { path, .. } => {
                write!(f, "cannot read torrent file {}", path.display())
            }
            Error::Metainfo { path, .. } => write!(f, "cannot use torrent file {}", path.display()),
            Error::Magnet { input, .. } => {
                // A magnet can be long: its start is enough to recognise it.
                let start: String = input.chars().take(80).collect();
                let more = if start.len() < input.len() { "..." } else { "" };
                write!(f, "invalid magnet link {}{more}", untrusted::show(&start))
            }
            Error::SaveTorrent { path, .. } => {
                write!(f, "cannot write the torrent file {}", path.display())
            }
            // The path holds the torrent's names, which come from outside.
            Error::Storage(e) => f.write_str(&show_path_text(&e.to_string())),
            Error::SeedMismatch {
                path,
                bad_count,
                piece_count,
                first_bad,
            } => write!(
                f,
                "{} does not match the torrent: {bad_count} of {piece_count} pieces fail their hash (first: piece {first_bad})",
                show_path_text(&path.display().to_string())
            ),
            Error::Tracker(_) => {
                f.write_str("no tracker answered and no peers were given with --peer")
            }
            Error::Listen { port, .. } => {
                write!(f, "cannot listen on port {port} or the ports after it")
            }
            Error::Thread(what) => write!(f, "internal error: {what}"),
            Error::Selection { name, source } => {
                write!(
                    f,
                    "cannot choose files of {}: {source}",
                    untrusted::show(name)
                )
            }
        }
    }
}

/// `text` that holds paths, with each path component made safe to print
/// ([`untrusted::show`]: escaped, and capped, which only a component too
/// long to exist on disk needs).
fn show_path_text(text: &str) -> String {
    text.split('/')
        .map(untrusted::show)
        .collect::<Vec<_>>()
        .join("/")
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::ReadTorrent { source, .. }
            | Error::Listen { source, .. }
            | Error::SaveTorrent { source, .. } => Some(source),
            Error::Magnet { source, .. } => Some(source),
            Error::Metainfo { source, .. } => Some(source),
            // Transparent: the storage error already named the path and action.
            Error::Storage(e) => Some(&e.source),
            Error::Tracker(e) => Some(e),
            // Its text is already in the message.
            Error::Selection { .. } => None,
            Error::SeedMismatch { .. } | Error::Thread(_) => None,
        }
    }
}

impl From<StorageError> for Error {
    fn from(e: StorageError) -> Error {
        Error::Storage(e)
    }
}

impl Error {
    /// The process exit code for this error: 2 for a malformed magnet link
    /// or a selection of files that does not fit the torrent (bad input on
    /// the command line, like clap's usage errors), 1 for every other run
    /// failure.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Magnet { .. } | Error::Selection { .. } => 2,
            _ => 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_a_torrent_in_a_storage_error_are_escaped() {
        let e = Error::Storage(StorageError {
            path: PathBuf::from("/dest/evil\x1b]0;pwned\x07/f\x1b[2J"),
            action: "create",
            source: io::Error::other("no space"),
        });
        assert_eq!(
            e.to_string(),
            "cannot create /dest/evil\\u{1b}]0;pwned\\u{7}/f\\u{1b}[2J"
        );
    }

    #[test]
    fn a_magnet_in_an_error_is_escaped_and_cut() {
        let e = Error::Magnet {
            input: format!("magnet:?dn=\x1b[2J{}", "x".repeat(500)),
            source: MagnetError::MissingXt,
        };
        let text = e.to_string();
        assert!(
            text.starts_with("invalid magnet link magnet:?dn=\\u{1b}[2Jxxx"),
            "{text}"
        );
        assert!(text.ends_with("x..."), "{text}");
        assert!(!text.contains('\x1b'));
    }
}
