//! The verbs that work on torrents rather than swarms: `create` a
//! .torrent, show its `info`, `verify` content against it, and print shell
//! `completions` or the `man` page.
//!
//! In scope: the verbs' command lines ([`args`]), walking a folder into a
//! file list ([`walk`]), hashing pieces on every core ([`hash`]), and each
//! verb ([`create`], [`info`], [`verify`]). Out of scope: the network;
//! parsing a .torrent (that is [`crate::metainfo`], reused here, as are
//! [`crate::bencode`]'s writers and [`crate::magnet`]).
//!
//! `main` calls [`run`] when the first argument is a verb ([`is_verb`]);
//! every other command line is the download or seed one, unchanged.

use std::error::Error as StdError;
use std::fmt;
use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use indicatif::{ProgressBar, ProgressDrawTarget};

pub mod args;
pub mod create;
pub mod hash;
pub mod info;
pub mod verify;
pub mod walk;

use args::{Shell, Tools, Verb};

/// The names of the verbs: a first argument equal to one of them is a verb,
/// anything else a torrent.
pub const VERBS: [&str; 5] = ["create", "info", "verify", "completions", "man"];

/// Whether `first` (the first argument after the program's name) names a verb.
pub fn is_verb(first: &str) -> bool {
    VERBS.contains(&first)
}

/// Why a verb failed: a message and, possibly, its cause; or another
/// error as it is. Exit code 1, or 2 for bad input on the command line.
#[derive(Debug)]
pub struct ToolError {
    inner: Inner,
    usage: bool,
}

#[derive(Debug)]
enum Inner {
    Message(String, Option<Box<dyn StdError + Send + Sync>>),
    Wrapped(Box<dyn StdError + Send + Sync>),
}

impl ToolError {
    /// An error with no further cause.
    pub fn new(message: impl Into<String>) -> ToolError {
        ToolError {
            inner: Inner::Message(message.into(), None),
            usage: false,
        }
    }

    /// An error caused by `source`.
    pub fn caused(
        message: impl Into<String>,
        source: impl StdError + Send + Sync + 'static,
    ) -> ToolError {
        ToolError {
            inner: Inner::Message(message.into(), Some(Box::new(source))),
            usage: false,
        }
    }

    /// `error` itself, with its own message and causes.
    pub fn wrap(error: impl StdError + Send + Sync + 'static) -> ToolError {
        ToolError {
            inner: Inner::Wrapped(Box::new(error)),
            usage: false,
        }
    }

    /// The same error, as bad input on the command line (exit code 2, as
    /// clap's usage errors and a malformed magnet link given to a download).
    pub fn usage(self) -> ToolError {
        ToolError {
            usage: true,
            ..self
        }
    }

    /// The exit code for this error: 2 for bad input on the command line,
    /// else 1.
    pub fn exit_code(&self) -> u8 {
        if self.usage { 2 } else { 1 }
    }
}

impl fmt::Display for ToolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner {
            Inner::Message(message, _) => f.write_str(message),
            Inner::Wrapped(error) => error.fmt(f),
        }
    }
}

impl StdError for ToolError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match &self.inner {
            Inner::Message(_, source) => source.as_deref().map(|e| e as &(dyn StdError + 'static)),
            Inner::Wrapped(error) => error.source(),
        }
    }
}

/// Runs the verb that `argv` (the whole command line, program name first)
/// names, and returns the exit code: 0 on success, 1 when it failed (the
/// error and its causes are printed), 2 on bad arguments (clap's usage
/// errors; `--help` exits 0).
pub fn run(argv: Vec<std::ffi::OsString>) -> ExitCode {
    let tools = match Tools::try_parse_from(argv) {
        Ok(tools) => tools,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let result = match tools.verb {
        Verb::Create(args) => create::run(&args),
        Verb::Info(args) => info::run(&args),
        Verb::Verify(args) => verify::run(&args),
        Verb::Completions(args) => {
            let mut script = Vec::new();
            completions(args.shell, &mut script);
            emit(&String::from_utf8_lossy(&script)).map(|()| ExitCode::SUCCESS)
        }
        Verb::Man => {
            let mut page = Vec::new();
            man(&mut page).and_then(|code| {
                emit(&String::from_utf8_lossy(&page))?;
                Ok(code)
            })
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            let mut source = e.source();
            while let Some(cause) = source {
                eprintln!("caused by: {cause}");
                source = cause.source();
            }
            ExitCode::from(e.exit_code())
        }
    }
}

/// Writes the completion script for `shell` to `out`.
pub fn completions(shell: Shell, out: &mut dyn std::io::Write) {
    let mut command = args::full_command();
    let generator = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    clap_complete::generate(generator, &mut command, "bittorrent", out);
}

/// Writes the man page (roff) to `out`.
///
/// # Errors
/// When `out` cannot be written.
pub fn man(out: &mut dyn std::io::Write) -> Result<ExitCode, ToolError> {
    clap_mangen::Man::new(args::full_command())
        .render(out)
        .map_err(|e| ToolError::caused("cannot write the man page", e))?;
    Ok(ExitCode::SUCCESS)
}

/// Writes `text` to stdout. A closed pipe (`bittorrent info x | head -1`)
/// ends the output quietly, and the verb keeps its exit code; Rust
/// ignores SIGPIPE, so without this the write would fail.
///
/// # Errors
/// Any other failure to write.
pub(crate) fn emit(text: &str) -> Result<(), ToolError> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(ToolError::caused("cannot write to stdout", e))
        }
        _ => Ok(()),
    }
}

/// How many threads hash: one per core.
pub(crate) fn hash_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A progress bar over `total` bytes, labelled `what`, drawn on stderr
/// when it is a terminal; hidden otherwise.
pub(crate) fn byte_bar(what: &str, total: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    // `what` is ours, never a name from outside, so it may sit in the template.
    // A bar as wide as the terminal leaves, so the line never wraps.
    let template =
        format!("{what} {{bytes}}/{{total_bytes}} {{bytes_per_sec}} eta {{eta}} [{{wide_bar}}]");
    bar.set_style(crate::progress::style(&template));
    bar
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn every_verb_is_a_subcommand_of_the_full_command() {
        let full = args::full_command();
        for verb in VERBS {
            assert!(full.find_subcommand(verb).is_some(), "{verb}");
        }
        assert_eq!(Tools::command().get_subcommands().count(), VERBS.len());
    }

    #[test]
    fn completions_are_generated_for_each_shell() {
        for (shell, marker) in [
            (Shell::Bash, "complete -F"),
            (Shell::Zsh, "#compdef bittorrent"),
            (Shell::Fish, "complete -c bittorrent"),
        ] {
            let mut out = Vec::new();
            completions(shell, &mut out);
            let script = String::from_utf8(out).unwrap();
            assert!(script.contains(marker), "{shell:?}: {script}");
            for word in ["create", "verify", "piece-length", "seed"] {
                assert!(script.contains(word), "{shell:?} lacks {word}");
            }
        }
    }

    #[test]
    fn the_man_page_names_the_verbs_and_the_options() {
        let mut out = Vec::new();
        man(&mut out).unwrap();
        let page = String::from_utf8(out).unwrap();
        assert!(page.starts_with(".ie") || page.contains(".TH"), "{page}");
        for word in ["bittorrent", "create", "verify", "download"] {
            assert!(page.contains(word), "man page lacks {word}");
        }
    }
}
