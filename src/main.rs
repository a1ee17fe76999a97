//! The `bittorrent` command: hand a verb (`create`, `info`, `verify`,
//! `completions`, `man`) to [`bittorrent::tools`]; otherwise parse
//! arguments, set up logging, raise the limit on open files, run a
//! session, print the error chain once and choose the exit code.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use bittorrent::cli::Args;
use bittorrent::piece_manager::Outcome;
use bittorrent::session::{Config, Mode, Session, ShutdownHandle};
use bittorrent::stats::Stats;
use bittorrent::summary::Summary;
use clap::Parser;

/// The fewest open files a run needs: the standard streams, the listen
/// socket and the one that wakes it, DEST, a few files, a peer or two.
const MIN_OPEN_FILES: u64 = 32;

fn main() -> ExitCode {
    // `bittorrent create|info|verify|completions|man ...` has its own
    // parser; every other command line is the download or seed one.
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if argv
        .get(1)
        .and_then(|first| first.to_str())
        .is_some_and(bittorrent::tools::is_verb)
    {
        return bittorrent::tools::run(argv);
    }
    let args = Args::parse_from(argv);
    // Without -v only warnings are logged, plus the periodic progress lines
    // that replace the live line when stderr is not a terminal.
    let filter = match args.verbose {
        0 => "bittorrent=warn,bittorrent::progress=info",
        1 => "bittorrent=info",
        2 => "bittorrent=debug",
        _ => "bittorrent=trace",
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(filter))
        .format_timestamp_millis()
        .init();
    // Many-file torrents and many peers need descriptors; the soft limit
    // (often 1024) may be raised to the hard one by anyone.
    let limit = bittorrent::storage::raise_open_file_limit();
    log::debug!("open file limit: {limit:?}");
    if let Some(limit) = limit.filter(|&n| n < MIN_OPEN_FILES) {
        // Below this, some descriptor the run cannot do without (DEST, a
        // file, the socket that wakes the listener at exit) would fail
        // somewhere at random.
        eprintln!(
            "error: too many open files (limit {limit}): bittorrent needs at least \
             {MIN_OPEN_FILES}; raise the limit with ulimit -n"
        );
        return ExitCode::FAILURE;
    }
    let config = match args.into_config() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match start_and_wait(&config) {
        Ok(code) => code,
        Err(e) => {
            print_error(None, &e);
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

/// Prints an error and its chain of causes, once, labelled with its
/// torrent when there are several.
fn print_error(label: Option<&str>, e: &bittorrent::Error) {
    match label {
        Some(label) => eprintln!("error: {label}: {e}"),
        None => eprintln!("error: {e}"),
    }
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        match cause.downcast_ref::<std::io::Error>() {
            // Whatever was being done, the cause is the limit, not the
            // port or the file that was being opened.
            Some(io) if io.raw_os_error() == Some(rustix::io::Errno::MFILE.raw_os_error()) => {
                let limit = bittorrent::storage::open_file_limit()
                    .map_or_else(|| "unlimited".to_string(), |n| n.to_string());
                eprintln!("caused by: too many open files (limit {limit})");
            }
            _ => eprintln!("caused by: {cause}"),
        }
        source = cause.source();
    }
}

fn start_and_wait(config: &Config) -> Result<ExitCode, bittorrent::Error> {
    // Installed before the session starts, for Ctrl-C (SIGINT) and SIGTERM
    // alike: it stops the torrents that run, which announce `stopped`, and
    // no more start; before any runs (the start-up check of the first), it
    // exits at once, since nothing has been written yet.
    let shutdown = ShutdownHandle::new();
    let handler_shutdown = shutdown.clone();
    if let Err(e) = ctrlc::set_handler(move || {
        if !handler_shutdown.shutdown() {
            std::process::exit(130);
        }
    }) {
        log::warn!("cannot install the Ctrl-C handler: {e}");
    }
    let several = config.torrents.len() > 1;
    let started = Instant::now();
    let mut session = Session::start_with(config, shutdown)?;
    // Read for the summary once the torrents have ended.
    let stats: Vec<Arc<Stats>> = session.torrents().iter().map(|t| t.stats()).collect();
    let mut failed = false;
    for (input, e) in session.failures() {
        print_error(Some(&input), &e);
        failed = true;
    }
    let seeding = matches!(config.mode, Mode::Seed { .. });
    if seeding {
        let port = session.listen_addr().port();
        if config.seed_limit.is_set() {
            eprintln!(
                "seeding on port {port}; stops at {}, or press Ctrl-C",
                config.seed_limit
            );
        } else {
            eprintln!("seeding on port {port}; press Ctrl-C to stop");
        }
    }
    let mut interrupted = false;
    let outcomes = session.wait_all();
    let summary = Summary::of(
        &stats.iter().map(|s| &**s).collect::<Vec<_>>(),
        started,
        Instant::now(),
    );
    let print_summary = || {
        eprintln!("{}", summary.line());
        if config.json {
            // Like the progress lines: a closed stdout (`| head -1`) is no
            // reason to panic at the end of a run.
            bittorrent::progress::print_json_line(&summary);
        }
    };
    for (label, outcome) in outcomes {
        match outcome {
            Ok(Outcome::Complete) if several => eprintln!("{label}: download complete"),
            Ok(Outcome::Complete) => eprintln!("download complete"),
            Ok(Outcome::Stopped) => interrupted = true,
            // With one torrent its error is the run's.
            Err(e) if !several => {
                print_summary();
                return Err(e);
            }
            Err(e) => {
                print_error(Some(&label), &e);
                failed = true;
            }
        }
    }
    print_summary();
    Ok(if failed {
        ExitCode::FAILURE
    } else if interrupted && !seeding {
        eprintln!("download interrupted; run the same command again to resume");
        // The shell's convention for a command ended by Ctrl-C.
        ExitCode::from(130)
    } else {
        ExitCode::SUCCESS
    })
}
