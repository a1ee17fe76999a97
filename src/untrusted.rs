//! Text that comes from outside (a peer, a tracker, a torrent file), made
//! safe to print.
//!
//! A tracker's `failure reason`, a peer's client name or a torrent's file
//! names are chosen by someone else: they can be a megabyte long, or carry
//! terminal escape sequences that move the cursor, rewrite the screen or set
//! the window title. [`show`] and [`show_bytes`] cap such text at
//! [`MAX_SHOWN_CHARS`] characters and escape every control character
//! (`\x1b` becomes `\u{1b}`), so what reaches the terminal or the log is
//! bounded and inert. Printable text, spaces and non-ASCII letters are kept
//! as they are.
//!
//! Owns only the escaping; callers decide where outside text is printed.

use std::fmt::Write;

/// At most this many characters of outside text are printed; longer text is
/// cut and ends with `…`.
pub const MAX_SHOWN_CHARS: usize = 200;

/// `text` capped at [`MAX_SHOWN_CHARS`] characters, with control characters
/// (C0, DEL, C1 and the bidirectional overrides) escaped.
pub fn show(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(MAX_SHOWN_CHARS + 8));
    for (count, c) in text.chars().enumerate() {
        if count == MAX_SHOWN_CHARS {
            out.push('…');
            break;
        }
        if is_unsafe(c) {
            let _ = write!(out, "{}", c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

/// [`show`] of `bytes` read as UTF-8, each invalid sequence replaced by `�`.
pub fn show_bytes(bytes: &[u8]) -> String {
    // Only the first bytes can be shown: a character is at most 4 bytes.
    let head = &bytes[..bytes.len().min(4 * MAX_SHOWN_CHARS + 4)];
    let mut shown = show(&String::from_utf8_lossy(head));
    if head.len() < bytes.len() && !shown.ends_with('…') {
        shown.push('…');
    }
    shown
}

/// Characters that a terminal acts on instead of printing.
fn is_unsafe(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_sequences_are_made_inert() {
        assert_eq!(show("a\x1b[2Jb"), "a\\u{1b}[2Jb");
        assert_eq!(show("title\x1b]0;pwned\x07"), "title\\u{1b}]0;pwned\\u{7}");
        assert_eq!(show("line\nbreak\r"), "line\\u{a}break\\u{d}");
        assert_eq!(show("\u{9b}31m"), "\\u{9b}31m");
        assert_eq!(show("abc\u{202e}fdp.exe"), "abc\\u{202e}fdp.exe");
    }

    #[test]
    fn legal_names_are_kept_as_they_are() {
        let name = "Movie: The Sequel (2020) – Größe 東京.mkv";
        assert_eq!(show(name), name);
    }

    #[test]
    fn long_text_is_capped() {
        let long = "x".repeat(1 << 20);
        let shown = show(&long);
        assert_eq!(shown.chars().count(), MAX_SHOWN_CHARS + 1);
        assert!(shown.ends_with('…'));
        let shown = show_bytes(long.as_bytes());
        assert_eq!(shown.chars().count(), MAX_SHOWN_CHARS + 1);
    }

    #[test]
    fn invalid_utf8_is_replaced_not_dropped() {
        assert_eq!(show_bytes(b"ok\xffok"), "ok\u{fffd}ok");
        assert_eq!(show_bytes(b"\x1b"), "\\u{1b}");
    }
}
