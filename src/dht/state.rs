//! The DHT state kept between runs: our node id (so other nodes' tables stay
//! right about us) and the good nodes of our routing table (so a second run
//! needs no bootstrap).
//!
//! The file is a small bencoded dictionary: `id` (20 bytes), `nodes`
//! (compact IPv4 nodes, 26 bytes each) and `nodes6` (compact IPv6 nodes, 38
//! bytes each). [`save`] writes it atomically: a temporary file in the same
//! folder, flushed to disk, then renamed over the old one, so a crash leaves
//! either the old file or the new one, never half of one. [`load`] reads it
//! back; a corrupt or truncated file is an error the caller logs as a
//! warning before starting afresh. Where the file lives is [`state_path`].
//! Owns the file format and its I/O; not when to save (the node thread
//! saves on shutdown and every few minutes).

use std::ffi::OsStr;
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use super::id::{NodeId, NodeInfo};
use super::krpc::{COMPACT_NODE_LEN, COMPACT_NODE6_LEN, compact_nodes, put_compact_node};
use crate::bencode::{as_bytes, dict_entries, put_bytes};

/// Nodes saved at most (the closest-to-good first, as given).
pub const MAX_SAVED_NODES: usize = 500;

/// A state file longer than this is refused unread (500 IPv6 nodes take 19 KB).
pub const MAX_STATE_LEN: u64 = 64 * 1024;

/// The file's name in the state folder.
pub const STATE_FILE_NAME: &str = "dht.dat";

/// What is kept between runs.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct State {
    /// Our node id.
    pub id: NodeId,
    /// Nodes to start from, best first.
    pub nodes: Vec<NodeInfo>,
}

/// Why the state file could not be read or written.
#[derive(Debug)]
pub enum StateError {
    /// Reading or writing failed.
    Io {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: io::Error,
    },
    /// The file is not a state file (corrupt, truncated or too large).
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateError::Io { path, .. } => write!(f, "cannot access DHT state {}", path.display()),
            StateError::Corrupt { path, reason } => {
                write!(f, "DHT state {} is corrupt: {reason}", path.display())
            }
        }
    }
}

impl std::error::Error for StateError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StateError::Io { source, .. } => Some(source),
            StateError::Corrupt { .. } => None,
        }
    }
}

/// Where the state file lives, given the values of `XDG_STATE_HOME` and
/// `HOME` (passed in, so tests do not read the real environment):
/// `$XDG_STATE_HOME/bittorrent/dht.dat`, else
/// `$HOME/.local/state/bittorrent/dht.dat`. A relative or empty
/// `XDG_STATE_HOME` is ignored, as the XDG spec says; `None` when neither
/// gives an absolute folder.
pub fn state_path(xdg_state_home: Option<&OsStr>, home: Option<&OsStr>) -> Option<PathBuf> {
    fn absolute(dir: Option<&OsStr>) -> Option<&Path> {
        dir.map(Path::new).filter(|p| p.is_absolute())
    }
    let base = match absolute(xdg_state_home) {
        Some(state) => state.to_path_buf(),
        None => absolute(home)?.join(".local").join("state"),
    };
    Some(base.join("bittorrent").join(STATE_FILE_NAME))
}

/// The file's bytes for `state` (at most [`MAX_SAVED_NODES`] nodes).
pub fn encode(state: &State) -> Vec<u8> {
    let (mut nodes, mut nodes6) = (Vec::new(), Vec::new());
    for node in state.nodes.iter().take(MAX_SAVED_NODES) {
        if node.addr.is_ipv4() {
            put_compact_node(node, &mut nodes);
        } else {
            put_compact_node(node, &mut nodes6);
        }
    }
    let mut out = b"d".to_vec();
    put_bytes(&mut out, b"id");
    put_bytes(&mut out, &state.id.0);
    put_bytes(&mut out, b"nodes");
    put_bytes(&mut out, &nodes);
    put_bytes(&mut out, b"nodes6");
    put_bytes(&mut out, &nodes6);
    out.push(b'e');
    out
}

/// The state in a file's bytes.
///
/// # Errors
/// A description of what is wrong when `bytes` are not a whole state file.
pub fn decode(bytes: &[u8]) -> Result<State, String> {
    let (entries, end) = dict_entries(bytes, 0, 1).map_err(|e| e.to_string())?;
    if end != bytes.len() {
        return Err(format!("trailing bytes after byte {end}"));
    }
    let get = |key: &str| {
        entries
            .iter()
            .find(|(k, _)| *k == key.as_bytes())
            .and_then(|(_, range)| as_bytes(&bytes[range.clone()]))
            .ok_or_else(|| format!("no string {key}"))
    };
    let id = NodeId::from_slice(get("id")?).ok_or("id is not 20 bytes")?;
    let mut nodes = compact_nodes(get("nodes")?, COMPACT_NODE_LEN).ok_or("nodes are not whole")?;
    nodes.extend(compact_nodes(get("nodes6")?, COMPACT_NODE6_LEN).ok_or("nodes6 are not whole")?);
    nodes.truncate(MAX_SAVED_NODES);
    Ok(State { id, nodes })
}

/// Writes `state` to `path` atomically, creating its folder if needed.
///
/// # Errors
/// [`StateError::Io`] when the folder, the temporary file or the rename fails;
/// the old file, if any, is then left as it was.
pub fn save(path: &Path, state: &State) -> Result<(), StateError> {
    let io_err = |source| StateError::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(io_err)?;
    let name = path.file_name().unwrap_or(OsStr::new(STATE_FILE_NAME));
    // The process id keeps two clients sharing the folder off each other's temporary file.
    let mut temp_name = OsStr::new(".").to_os_string();
    temp_name.push(name);
    temp_name.push(format!(".tmp.{}", std::process::id()));
    let temp = dir.join(temp_name);
    let written = File::create(&temp).and_then(|mut file| {
        file.write_all(&encode(state))?;
        file.sync_all()
    });
    if let Err(e) = written.and_then(|()| fs::rename(&temp, path)) {
        let _ = fs::remove_file(&temp);
        return Err(io_err(e));
    }
    // The rename itself is durable only once the folder is flushed.
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err)
}

/// Reads the state at `path`: `Ok(None)` when there is no file yet.
///
/// # Errors
/// [`StateError::Corrupt`] for a file that is not a whole state file (the
/// caller warns and starts afresh), [`StateError::Io`] when it cannot be read.
pub fn load(path: &Path) -> Result<Option<State>, StateError> {
    let io_err = |source| StateError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(e)),
    };
    let mut bytes = Vec::new();
    file.take(MAX_STATE_LEN + 1)
        .read_to_end(&mut bytes)
        .map_err(io_err)?;
    if bytes.len() as u64 > MAX_STATE_LEN {
        return Err(StateError::Corrupt {
            path: path.to_path_buf(),
            reason: format!("longer than {MAX_STATE_LEN} bytes"),
        });
    }
    decode(&bytes)
        .map(Some)
        .map_err(|reason| StateError::Corrupt {
            path: path.to_path_buf(),
            reason,
        })
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;

    fn state() -> State {
        let node = |n: u8, addr: &str| NodeInfo {
            id: NodeId([n; 20]),
            addr: addr.parse::<SocketAddr>().unwrap(),
        };
        State {
            id: NodeId([7; 20]),
            nodes: vec![node(1, "127.0.0.1:6881"), node(2, "127.0.0.2:6882")],
        }
    }

    #[test]
    fn the_file_is_a_small_bencoded_dictionary() {
        let mut expected = b"d2:id20:".to_vec();
        expected.extend([7; 20]);
        expected.extend(b"5:nodes52:");
        expected.extend([1; 20]);
        expected.extend([127, 0, 0, 1, 0x1a, 0xe1]);
        expected.extend([2; 20]);
        expected.extend([127, 0, 0, 2, 0x1a, 0xe2]);
        expected.extend(b"6:nodes60:e");
        assert_eq!(encode(&state()), expected);
        assert_eq!(decode(&expected), Ok(state()));
    }

    #[test]
    fn saves_and_loads_in_a_new_folder_leaving_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/bittorrent/dht.dat");
        assert!(load(&path).unwrap().is_none());
        let mut with_v6 = state();
        with_v6.nodes.push(NodeInfo {
            id: NodeId([3; 20]),
            addr: "[::1]:7000".parse().unwrap(),
        });
        save(&path, &with_v6).unwrap();
        assert_eq!(load(&path).unwrap(), Some(with_v6));
        save(&path, &state()).unwrap();
        assert_eq!(load(&path).unwrap(), Some(state()));
        let names: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [OsStr::new("dht.dat")]);
    }

    #[test]
    fn a_corrupt_or_truncated_file_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dht.dat");
        let good = encode(&state());
        for cut in 0..good.len() {
            fs::write(&path, &good[..cut]).unwrap();
            let err = load(&path).unwrap_err();
            assert!(
                matches!(err, StateError::Corrupt { .. }),
                "cut at {cut}: {err}"
            );
        }
        fs::write(&path, b"d2:id3:abc5:nodes0:6:nodes60:e").unwrap();
        let err = load(&path).unwrap_err().to_string();
        assert!(err.ends_with("is corrupt: id is not 20 bytes"), "{err}");
        fs::write(&path, vec![b'x'; MAX_STATE_LEN as usize + 1]).unwrap();
        let err = load(&path).unwrap_err().to_string();
        assert!(err.ends_with("longer than 65536 bytes"), "{err}");
    }

    #[test]
    fn a_half_written_temporary_file_left_by_a_crash_is_ignored_and_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dht.dat");
        save(&path, &state()).unwrap();
        let temp = dir
            .path()
            .join(format!(".dht.dat.tmp.{}", std::process::id()));
        fs::write(&temp, &encode(&state())[..10]).unwrap();
        assert_eq!(load(&path).unwrap(), Some(state()));
        let mut next = state();
        next.id = NodeId([9; 20]);
        save(&path, &next).unwrap();
        assert_eq!(load(&path).unwrap(), Some(next));
        assert!(!temp.exists());
    }

    #[test]
    fn a_failed_save_leaves_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dht.dat");
        save(&path, &state()).unwrap();
        // A folder where the temporary file should go makes the write fail.
        fs::create_dir(
            dir.path()
                .join(format!(".dht.dat.tmp.{}", std::process::id())),
        )
        .unwrap();
        assert!(matches!(save(&path, &state()), Err(StateError::Io { .. })));
        assert_eq!(load(&path).unwrap(), Some(state()));
    }

    #[test]
    fn path_follows_xdg_state_home_then_home() {
        let p = |xdg: Option<&str>, home: Option<&str>| {
            state_path(xdg.map(OsStr::new), home.map(OsStr::new))
        };
        assert_eq!(
            p(Some("/x/state"), Some("/home/u")),
            Some(PathBuf::from("/x/state/bittorrent/dht.dat"))
        );
        let fallback = Some(PathBuf::from("/home/u/.local/state/bittorrent/dht.dat"));
        assert_eq!(p(None, Some("/home/u")), fallback);
        assert_eq!(p(Some(""), Some("/home/u")), fallback);
        assert_eq!(p(Some("relative"), Some("/home/u")), fallback);
        assert_eq!(p(None, None), None);
        assert_eq!(p(None, Some("relative")), None);
    }
}
