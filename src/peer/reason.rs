//! Why a peer connection ended, as a type.
//!
//! Whether the remote broke the protocol (and so is banned) is decided by
//! the variant, never by reading a message: [`Disconnect::Closed`] is no
//! one's fault, [`Disconnect::Violation`] is the remote's. Pure data.

use std::fmt;

use super::ext::ExtError;
use super::wire::WireError;
use crate::metainfo::InfoHash;

/// Why a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disconnect {
    /// Ended for a reason that does not blame the remote.
    Closed(Closed),
    /// The remote broke the protocol: the manager bans it.
    Violation(Violation),
}

/// Endings that are nobody's fault (or ours).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Closed {
    /// We were told to close, or the torrent is ending.
    Normal,
    /// The TCP connection could not be made.
    ConnectFailed(String),
    /// Reading, writing or setting up the socket failed.
    Io {
        /// What we were doing.
        during: &'static str,
        /// The OS error.
        error: String,
    },
    /// The remote closed the connection.
    ByRemote,
    /// The remote's handshake names another torrent.
    WrongTorrent(InfoHash),
    /// The remote is ourselves.
    Ourselves,
    /// The remote sent nothing for this many seconds.
    Silent(u64),
    /// The piece manager refused the peer (banned, duplicate, no room).
    Refused,
    /// The piece manager did not answer the handshake in time.
    NoAnswer,
    /// Content to serve could not be read.
    Storage(String),
    /// Buffered messages before the metadata exceeded their bound.
    TooMuchBeforeMetadata,
}

/// Breaches of the protocol by the remote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// Bytes that are not a valid message.
    Wire(WireError),
    /// An extension message that is not valid.
    Extension(ExtError),
    /// `have` for a piece the torrent does not have.
    HaveOutOfRange(u32),
    /// A request outside the torrent or larger than a block.
    InvalidRequest {
        /// Piece index.
        index: u32,
        /// Offset in the piece.
        begin: u32,
        /// Bytes asked.
        length: u32,
    },
    /// A request for a piece we have not got.
    RequestUnhad(u32),
    /// A block we never asked for.
    UnrequestedBlock(String),
    /// A bitfield that does not fit the torrent (after the metadata came).
    BadBitfield,
    /// Metadata that does not fit what the peer announced.
    BadMetadata(String),
}

impl Disconnect {
    /// Whether the remote is to blame (and so banned).
    pub fn is_violation(&self) -> bool {
        matches!(self, Disconnect::Violation(_))
    }
}

impl From<Closed> for Disconnect {
    fn from(closed: Closed) -> Disconnect {
        Disconnect::Closed(closed)
    }
}

impl From<Violation> for Disconnect {
    fn from(violation: Violation) -> Disconnect {
        Disconnect::Violation(violation)
    }
}

impl fmt::Display for Disconnect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Disconnect::Closed(c) => c.fmt(f),
            Disconnect::Violation(v) => write!(f, "protocol violation: {v}"),
        }
    }
}

impl fmt::Display for Closed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Closed::Normal => f.write_str("closed"),
            Closed::ConnectFailed(e) => write!(f, "connect failed: {e}"),
            Closed::Io { during, error } => write!(f, "{during} failed: {error}"),
            Closed::ByRemote => f.write_str("closed by the remote"),
            Closed::WrongTorrent(hash) => write!(f, "handshake for another torrent ({hash})"),
            Closed::Ourselves => f.write_str("connection to ourselves"),
            Closed::Silent(secs) => write!(f, "silent for {secs} s"),
            Closed::Refused => f.write_str("refused by the piece manager"),
            Closed::NoAnswer => f.write_str("no answer from the piece manager"),
            Closed::Storage(e) => write!(f, "serving a block: {e}"),
            Closed::TooMuchBeforeMetadata => {
                f.write_str("too many messages before the metadata was known")
            }
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::Wire(e) => e.fmt(f),
            Violation::Extension(e) => e.fmt(f),
            Violation::HaveOutOfRange(index) => write!(f, "have for piece {index} out of range"),
            Violation::InvalidRequest {
                index,
                begin,
                length,
            } => write!(
                f,
                "invalid request: piece {index} begin {begin} length {length}"
            ),
            Violation::RequestUnhad(index) => {
                write!(f, "request for piece {index}, which we do not have")
            }
            Violation::UnrequestedBlock(what) => f.write_str(what),
            Violation::BadBitfield => f.write_str("bitfield does not fit the torrent"),
            Violation::BadMetadata(what) => write!(f, "bad metadata: {what}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blame_follows_the_variant_not_the_text() {
        let closed: Disconnect = Closed::Io {
            during: "read",
            error: "protocol violation".into(),
        }
        .into();
        assert!(!closed.is_violation());
        let violation: Disconnect = Violation::HaveOutOfRange(7).into();
        assert!(violation.is_violation());
        assert_eq!(
            violation.to_string(),
            "protocol violation: have for piece 7 out of range"
        );
    }
}
