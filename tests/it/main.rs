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

/// Peers finding each other through a UDP tracker started by the test
/// (BEP 15), and tiers of UDP and HTTP trackers with silent ones (BEP 12).
mod udp_tracker;

/// Choosing files: `--files` and `--exclude` fetch only the chosen files
/// (by `.torrent`, by magnet, several torrents), keep shared pieces' other
/// bytes in the part file, resume, widen, never touch a file left out,
/// show interest and count `left` for the wanted pieces only; bad
/// selections are usage errors.
mod select;

/// Interrupted downloads resume; corrupted pieces are found and fetched again.
mod resume;

/// Bad input: clear errors, non-zero exits, no panics, nothing written.
mod errors;

/// Hostile and odd `.torrent` files: clashing paths, `/dev/zero`, a FIFO,
/// huge files, legal names with `:`, unknown huge keys, escapes in names.
mod torrent_files;

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

/// Files on disk: links below DEST are never followed, hard links, longer
/// files and FIFOs are refused, 2,000 files download under a small limit
/// of open files.
mod disk_safety;

/// The extension protocol on the download side: the remote's `reqq` is
/// honoured.
mod extension;

/// Floods of cheap messages (cancels) cost the seeder about what
/// keep-alives cost, in CPU time.
mod floods;

/// Connection churn against the binary (20,000 connections, a tracker
/// answer of 100,000 unreachable peers, no file descriptors left): threads,
/// memory maps and CPU time stay bounded, and it goes on serving.
mod churn;

/// Bans: an attacker that copies an honest peer's id does not get it
/// refused; a liar that reconnects from new ports is kept out by its IP.
mod bans;

/// Rate limits: `--max-upload-rate` and `--max-download-rate` hold a
/// transfer to the limit, shared by every peer; bad rates are usage errors.
mod rate_limit;

/// Connection slots: silent, dripping and idle connections do not keep an
/// honest peer from being served or dialled; `--bind` listens on one address.
mod slots;

/// Peak memory of the binary, with one-byte pieces and with 64 MiB pieces
/// among forty junk peers, under the bound the README states.
mod memory;

/// IPv6 (BEP 7) over `::1`: `--bind ::1` and `--peer [::1]:PORT`, a
/// default-bound session taking peers on both families at one port, a
/// magnet's `x.pe=[::1]:PORT`.
mod ipv6;
/// Peer exchange (BEP 11): a seeder named only by `ut_pex` completes a
/// download; a seeder tells peers of each other; private torrents (BEP 27)
/// and `--no-pex` neither offer nor act on it.
mod pex;

/// The DHT (BEP 5) over loopback: a magnet with no tracker completes from a
/// seeder found through a network of our nodes; a second run starts from
/// its saved table; private torrents never use it; malformed datagrams,
/// transaction ids of any length and the rate limit.
mod dht;

/// Hundreds of peers: a seeder holds 100 connections at once, lets them
/// go back to its baseline of threads and still serves; 100 addresses that
/// never answer a connect keep no more than the limit of connects in flight.
mod many_peers;

/// Seeding after a download and bounded seed runs (`--seed-ratio`,
/// `--seed-time`), Ctrl-C while seeding, `--announce-interval` over HTTP
/// and UDP.
mod seeding;

/// What a run tells: the summary line and `--json` lines against the run's
/// figures (in a hostile run too), one tracker warning per failure streak,
/// the `-vvv` wire trace.
mod reporting;

/// Idle peer threads park in `poll()`: messages already in a thread's
/// buffer are still acted on when the remote sends nothing more.
mod parking;

/// The verbs: `create` against mktorrent's info-hashes and then downloaded
/// from our own seeder, `info --json` read back field by field, `verify`
/// on complete, short and corrupted content with its exit codes,
/// completions and the man page, bad input.
mod tools;
