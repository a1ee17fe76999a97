//! The files a new torrent lists: PATH itself, or every regular file below
//! the folder PATH, in the order mktorrent lists them.
//!
//! The rules, which `create --help` states: hidden files and zero-length
//! files are included; symbolic links are followed (to files and folders),
//! and a dangling one, or one that leads back to a folder above it, is an
//! error; anything that is neither a regular file nor a folder (a FIFO, a
//! socket, a device) is an error naming it. Nothing is left out silently:
//! empty folders, which a torrent cannot list, are returned for the caller
//! to name. Files are sorted by the bytes of their path below PATH with `/`
//! between components (mktorrent sorts with `strcmp` on that string, so
//! `a-b/x` comes before `a/x`), which makes the info-hash equal to
//! mktorrent's for the same content and piece length.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::ToolError;
use crate::metainfo::check_component;

/// One file to list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalkedFile {
    /// Its path below PATH, one component each (empty for a single file).
    pub components: Vec<String>,
    /// Where to read it.
    pub path: PathBuf,
    /// Its length when it was listed.
    pub length: u64,
}

/// What PATH holds.
#[derive(Debug, Clone)]
pub struct Walked {
    /// The torrent's name: PATH's last component.
    pub name: String,
    /// Whether PATH is a folder (a multi-file torrent, even with one file).
    pub multi_file: bool,
    /// The files, in the torrent's order.
    pub files: Vec<WalkedFile>,
    /// Folders below PATH with no file anywhere below them.
    pub empty_folders: Vec<PathBuf>,
    /// The identities (device, inode) of the files, for a check that the
    /// output is not one of them.
    pub ids: Vec<(u64, u64)>,
}

impl Walked {
    /// The total length of the files.
    pub fn total_len(&self) -> u64 {
        self.files.iter().map(|f| f.length).sum()
    }
}

/// Lists what `root` holds, by the rules of the module docs.
///
/// # Errors
/// When `root` or anything below it cannot be read, is not a regular file
/// or folder, is a dangling link or a loop, has a name that is not UTF-8
/// (a torrent's names are text), or when there is no file at all.
pub fn walk(root: &Path) -> Result<Walked, ToolError> {
    let meta = metadata(root)?;
    let name = torrent_name(root)?;
    let mut walked = Walked {
        name,
        multi_file: meta.is_dir(),
        files: Vec::new(),
        empty_folders: Vec::new(),
        ids: Vec::new(),
    };
    if meta.is_file() {
        walked.files.push(WalkedFile {
            components: Vec::new(),
            path: root.to_path_buf(),
            length: meta.len(),
        });
        walked.ids.push((meta.dev(), meta.ino()));
    } else if meta.is_dir() {
        let mut ancestors = vec![(meta.dev(), meta.ino())];
        walk_folder(root, &mut Vec::new(), &mut ancestors, &mut walked)?;
        if walked.files.is_empty() {
            return Err(ToolError::new(format!(
                "{} holds no files: a torrent needs at least one",
                root.display()
            )));
        }
        walked.files.sort_by_cached_key(|f| f.components.join("/"));
    } else {
        return Err(not_regular(root, &meta));
    }
    Ok(walked)
}

fn walk_folder(
    folder: &Path,
    below: &mut Vec<String>,
    ancestors: &mut Vec<(u64, u64)>,
    walked: &mut Walked,
) -> Result<(), ToolError> {
    let entries = fs::read_dir(folder)
        .map_err(|e| ToolError::caused(format!("cannot read folder {}", folder.display()), e))?;
    let before = walked.files.len();
    for entry in entries {
        let entry = entry.map_err(|e| {
            ToolError::caused(format!("cannot read folder {}", folder.display()), e)
        })?;
        let path = entry.path();
        let name = entry.file_name().into_string().map_err(|raw| {
            ToolError::new(format!(
                "{}: the name {raw:?} is not UTF-8, which a torrent's names must be",
                folder.display()
            ))
        })?;
        check_component(&name)
            .map_err(|e| ToolError::caused(format!("cannot list {}", path.display()), e))?;
        let meta = metadata(&path)?;
        below.push(name);
        if meta.is_file() {
            walked.files.push(WalkedFile {
                components: below.clone(),
                path,
                length: meta.len(),
            });
            walked.ids.push((meta.dev(), meta.ino()));
        } else if meta.is_dir() {
            let id = (meta.dev(), meta.ino());
            if ancestors.contains(&id) {
                return Err(ToolError::new(format!(
                    "{} leads back to a folder above it (a symbolic link loop)",
                    path.display()
                )));
            }
            ancestors.push(id);
            walk_folder(&path, below, ancestors, walked)?;
            ancestors.pop();
        } else {
            return Err(not_regular(&path, &meta));
        }
        below.pop();
    }
    if walked.files.len() == before && !below.is_empty() {
        walked.empty_folders.push(folder.to_path_buf());
    }
    Ok(())
}

/// The metadata of `path`, following links, with errors that tell a
/// dangling link from a missing file.
fn metadata(path: &Path) -> Result<fs::Metadata, ToolError> {
    fs::metadata(path).map_err(|e| {
        let dangling = fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
        if dangling {
            ToolError::caused(
                format!("{} is a symbolic link to nothing", path.display()),
                e,
            )
        } else {
            ToolError::caused(format!("cannot read {}", path.display()), e)
        }
    })
}

fn not_regular(path: &Path, meta: &fs::Metadata) -> ToolError {
    use std::os::unix::fs::FileTypeExt;
    let kind = meta.file_type();
    let what = if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_char_device() || kind.is_block_device() {
        "a device"
    } else {
        "not a regular file"
    };
    ToolError::new(format!(
        "{} is {what}: a torrent holds regular files only (move it out of the way)",
        path.display()
    ))
}

/// PATH's last component, which names the torrent; for `.`, `..` or a
/// path ending in them, the name of the folder they are.
fn torrent_name(root: &Path) -> Result<String, ToolError> {
    let named = match root.file_name() {
        Some(name) if !root.ends_with("..") => PathBuf::from(name),
        _ => {
            let full = fs::canonicalize(root)
                .map_err(|e| ToolError::caused(format!("cannot read {}", root.display()), e))?;
            full.file_name().map(PathBuf::from).ok_or_else(|| {
                ToolError::new(format!(
                    "{} has no name to give the torrent",
                    root.display()
                ))
            })?
        }
    };
    let name = named.into_os_string().into_string().map_err(|raw| {
        ToolError::new(format!(
            "the name {raw:?} is not UTF-8, which a torrent's name must be"
        ))
    })?;
    check_component(&name)
        .map_err(|e| ToolError::caused(format!("cannot name a torrent {name:?}"), e))?;
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(path: &Path, len: usize) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, vec![7u8; len]).unwrap();
    }

    #[test]
    fn files_are_in_strcmp_order_of_their_paths_hidden_and_empty_ones_included() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("top");
        for (path, len) in [
            ("a/x", 1),
            ("a-b/x", 2),
            (".hidden", 3),
            ("b", 0),
            ("a/.z/y", 4),
        ] {
            touch(&root.join(path), len);
        }
        fs::create_dir_all(root.join("empty/deeper")).unwrap();
        let walked = walk(&root).unwrap();
        assert_eq!(walked.name, "top");
        assert!(walked.multi_file);
        let paths: Vec<String> = walked
            .files
            .iter()
            .map(|f| f.components.join("/"))
            .collect();
        // '-' (0x2d) and '.' (0x2e) sort before '/' (0x2f).
        assert_eq!(paths, [".hidden", "a-b/x", "a/.z/y", "a/x", "b"]);
        assert_eq!(walked.total_len(), 10);
        let mut empty = walked.empty_folders.clone();
        empty.sort();
        assert_eq!(empty, [root.join("empty"), root.join("empty/deeper")]);
    }

    #[test]
    fn a_single_file_is_a_single_file_torrent_named_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("one.bin");
        touch(&file, 5);
        let walked = walk(&file).unwrap();
        assert_eq!(walked.name, "one.bin");
        assert!(!walked.multi_file);
        assert_eq!(walked.files.len(), 1);
        assert!(walked.files[0].components.is_empty());
    }

    #[test]
    fn links_are_followed_and_loops_dangling_links_and_fifos_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("top");
        touch(&root.join("real/f"), 3);
        std::os::unix::fs::symlink(root.join("real"), root.join("link")).unwrap();
        let walked = walk(&root).unwrap();
        let paths: Vec<String> = walked
            .files
            .iter()
            .map(|f| f.components.join("/"))
            .collect();
        assert_eq!(paths, ["link/f", "real/f"]);

        std::os::unix::fs::symlink(&root, root.join("real/up")).unwrap();
        let e = walk(&root).unwrap_err().to_string();
        assert!(e.contains("leads back to a folder above it"), "{e}");
        fs::remove_file(root.join("real/up")).unwrap();

        std::os::unix::fs::symlink(root.join("gone"), root.join("dangling")).unwrap();
        let e = walk(&root).unwrap_err().to_string();
        assert!(
            e.contains("dangling") && e.contains("symbolic link to nothing"),
            "{e}"
        );
        fs::remove_file(root.join("dangling")).unwrap();

        rustix::fs::mknodat(
            rustix::fs::CWD,
            root.join("pipe"),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let e = walk(&root).unwrap_err().to_string();
        assert!(e.contains("pipe") && e.contains("is a FIFO"), "{e}");
    }

    #[test]
    fn an_empty_folder_or_a_missing_path_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("void/inner")).unwrap();
        let e = walk(&dir.path().join("void")).unwrap_err().to_string();
        assert!(e.contains("holds no files"), "{e}");
        let e = walk(&dir.path().join("nothing")).unwrap_err();
        assert!(e.to_string().starts_with("cannot read "), "{e}");
    }

    #[test]
    fn dot_is_named_after_the_folder_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("named");
        touch(&root.join("sub/f"), 1);
        assert_eq!(torrent_name(&root.join(".")).unwrap(), "named");
        assert_eq!(torrent_name(&root.join("sub/..")).unwrap(), "named");
        assert_eq!(torrent_name(&root.join("f")).unwrap(), "f");
    }
}
