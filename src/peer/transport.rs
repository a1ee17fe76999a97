//! The byte stream under a peer connection.
//!
//! The peer protocol code ([`super::conn`]) reads and writes through
//! [`Transport`], never through a socket type, so a stream that wraps the
//! socket (protocol encryption, later) slots in without touching it. Owns
//! nothing but the trait and its implementation for [`TcpStream`].

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsFd;
use std::time::Duration;

/// A bidirectional byte stream with the timeouts the peer loop needs, and
/// the descriptor an idle peer thread polls ([`super::wake`]; a wrapper that
/// buffers bytes it has read must not let the thread park on them).
pub trait Transport: Read + Write + Send + AsFd {
    /// Bounds how long a `read` may block (`None`: forever).
    ///
    /// # Errors
    /// The OS error when the option cannot be set.
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()>;

    /// Bounds how long a `write` may block (`None`: forever).
    ///
    /// # Errors
    /// The OS error when the option cannot be set.
    fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()>;
}

impl Transport for TcpStream {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        TcpStream::set_read_timeout(self, timeout)
    }

    fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        TcpStream::set_write_timeout(self, timeout)
    }
}

/// A boxed stream, as the peer thread holds it.
pub type Stream = Box<dyn Transport>;
