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

/// Misbehaving peers scripted over loopback next to a good seeder: the
/// download completes, the liar is banned, the seeder stays up.
mod hostile;

/// Faults: a full disk stops the download with a clear error, and the data
/// left behind resumes.
mod faults;

/// Magnet links: metadata by ut_metadata from our seeder and from scripted
/// peers (split, forged, oversized), `--save-torrent`, resuming by magnet.
mod magnet;

/// Several torrents in one process: at once, seeded from one folder, a bad
/// input among good ones, malformed magnets, unknown info-hashes dropped.
mod several;

/// Property tests over the decoders: arbitrary bytes never panic nor
/// allocate past the bounds; encode and decode round-trip.
mod props;

/// The extension protocol on the download side: the remote's `reqq` is
/// honoured.
mod extension;

/// Peak memory of the binary, with one-byte pieces and with 64 MiB pieces
/// among forty junk peers, under the bound the README states.
mod memory;
