//! The integration tests: whole sessions over loopback, each bounded by timeouts.
//!
//! Table of contents:
mod support;

/// Seeder and downloader exchange torrents given `--peer`: single-file,
/// multi-file with nested folders and an empty file, uneven last piece,
/// three seeders at once.
mod transfer;

/// Peers finding each other through an HTTP tracker started by the test.
mod tracker;

/// Interrupted downloads resume; corrupted pieces are found and fetched again.
mod resume;

/// Bad input: clear errors, non-zero exits, no panics, nothing written.
mod errors;

/// The info-hash of torrents made by other tools, against their hashes.
mod fixtures;

/// Behaviours of real clients that broke interoperability, replayed by a
/// scripted peer (each found by the interop suite in tests/interop).
mod quirks;
