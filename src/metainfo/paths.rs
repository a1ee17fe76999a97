//! Which file paths of a torrent are safe to create under the destination,
//! and whether they can all exist side by side.
//!
//! Everywhere, a component may not be empty, `.` or `..`, nor hold `/` or
//! NUL. On Windows, where they mean something, its own rules apply too (a
//! drive prefix such as `C:`, `\`, the reserved characters and device
//! names); on other systems `Movie: The Sequel (2020).mkv` is a legal name.
//!
//! Two files that land on the same path, or a file whose path is a folder of
//! another's (`a` and `a/b`), cannot both be written: the torrent is refused
//! ([`check_conflicts`], O(n log n) in the number of files). BEP 47 padding
//! files are never written (see [`crate::storage`]), so they take no part.

use std::borrow::Cow;
use std::path::PathBuf;

use super::{FileEntry, MetainfoError};

/// Checks one path component: no separators, not `.` or `..`, not empty,
/// and on Windows none of its own forbidden names.
pub(crate) fn check_component(component: &str) -> Result<(), MetainfoError> {
    let bad = component.is_empty()
        || component == "."
        || component == ".."
        || component.contains(['/', '\0'])
        || (cfg!(windows) && unsafe_on_windows(component));
    if bad {
        Err(MetainfoError::UnsafePath(component.to_string()))
    } else {
        Ok(())
    }
}

/// Whether Windows would read `component` as something other than one plain
/// file name: a separator or drive prefix (`a\b`, `C:`), an alternate data
/// stream (`a:b`), a reserved character, a device name (`NUL`, `com1.txt`),
/// or a trailing dot or space, which Windows drops.
fn unsafe_on_windows(component: &str) -> bool {
    const DEVICES: [&str; 4] = ["CON", "PRN", "AUX", "NUL"];
    let stem = component.split('.').next().unwrap_or("").trim_end();
    let numbered = |prefix: &str| {
        stem.len() == 4
            && stem[..3].eq_ignore_ascii_case(prefix)
            && stem.as_bytes()[3].is_ascii_digit()
    };
    component
        .chars()
        .any(|c| matches!(c, '\\' | ':' | '<' | '>' | '"' | '|' | '?' | '*') || c < ' ')
        || component.ends_with(['.', ' '])
        || DEVICES.iter().any(|d| stem.eq_ignore_ascii_case(d))
        || numbered("COM")
        || numbered("LPT")
}

/// Joins a torrent's path list into a relative path that stays inside its root.
pub(super) fn safe_relative_path(components: &[&str]) -> Result<PathBuf, MetainfoError> {
    if components.is_empty() {
        return Err(MetainfoError::UnsafePath(String::new()));
    }
    for c in components {
        check_component(c).map_err(|_| MetainfoError::UnsafePath(components.join("/")))?;
    }
    Ok(components.iter().collect())
}

/// A component as the file system compares it: as it is, or case-folded
/// where the usual file systems ignore case.
fn fs_key(component: &str) -> Cow<'_, str> {
    if cfg!(any(windows, target_os = "macos")) {
        Cow::Owned(component.to_lowercase())
    } else {
        Cow::Borrowed(component)
    }
}

/// Refuses `files` (those of a multi-file torrent, `components[i]` being
/// the path of `files[i]`) when two would be written at the same path, or
/// one at a path that another needs as a folder.
///
/// Sorted by components, a path is directly followed by any path it is a
/// prefix of, so comparing neighbours finds every conflict.
pub(super) fn check_conflicts(
    files: &[FileEntry],
    components: &[Vec<&str>],
) -> Result<(), MetainfoError> {
    let mut keyed: Vec<(Vec<Cow<'_, str>>, usize)> = components
        .iter()
        .enumerate()
        .filter(|&(i, _)| !files[i].padding)
        .map(|(i, path)| (path.iter().map(|c| fs_key(c)).collect(), i))
        .collect();
    keyed.sort_unstable();
    for pair in keyed.windows(2) {
        let ((first, a), (second, b)) = (&pair[0], &pair[1]);
        if second.starts_with(first) {
            let (file, other) = (shown(&files[*a]), shown(&files[*b]));
            return Err(if first.len() == second.len() {
                MetainfoError::DuplicatePath {
                    path: file,
                    first: *a,
                    second: *b,
                }
            } else {
                MetainfoError::FileIsFolder {
                    file,
                    index: *a,
                    nested: other,
                    nested_index: *b,
                }
            });
        }
    }
    Ok(())
}

fn shown(file: &FileEntry) -> String {
    file.path.to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legal_names_with_colons_spaces_and_non_ascii_are_safe_here() {
        for name in [
            "Movie: The Sequel (2020).mkv",
            "a:b",
            "C:x",
            "back\\slash",
            "Größe 東京 – ok.txt",
            "trailing dot.",
        ] {
            assert_eq!(
                check_component(name).is_ok(),
                !cfg!(windows),
                "{name:?} on this system"
            );
        }
    }

    #[test]
    fn components_refused_everywhere() {
        for name in ["", ".", "..", "a/b", "/", "nul\0byte"] {
            assert!(check_component(name).is_err(), "{name:?}");
        }
    }

    #[test]
    fn windows_rules_refuse_what_windows_would_misread() {
        for name in [
            "C:",
            "C:x",
            "Movie: The Sequel (2020).mkv",
            "a\\b",
            "what?",
            "a*b",
            "pipe|",
            "q\"uote",
            "<tag>",
            "tab\tname",
            "NUL",
            "nul.txt",
            "com1",
            "LPT9.log",
            "con .txt",
            "dot.",
            "space ",
        ] {
            assert!(unsafe_on_windows(name), "{name:?}");
        }
        for name in [
            "Movie - The Sequel (2020).mkv",
            "console",
            "com10",
            "comx",
            "a.b",
        ] {
            assert!(!unsafe_on_windows(name), "{name:?}");
        }
    }
}
