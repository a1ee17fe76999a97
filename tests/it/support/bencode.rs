//! A minimal bencode writer for building test torrents and tracker answers,
//! independent of the client's own code.

use sha1::{Digest, Sha1};

/// A bencode value.
pub enum B {
    Int(i64),
    Bytes(Vec<u8>),
    List(Vec<B>),
    /// Keys are written in the order given, so tests can choose it.
    Dict(Vec<(&'static str, B)>),
}

impl B {
    pub fn str(s: &str) -> B {
        B::Bytes(s.as_bytes().to_vec())
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write(&mut out);
        out
    }

    fn write(&self, out: &mut Vec<u8>) {
        match self {
            B::Int(i) => out.extend(format!("i{i}e").bytes()),
            B::Bytes(b) => {
                out.extend(format!("{}:", b.len()).bytes());
                out.extend(b);
            }
            B::List(items) => {
                out.push(b'l');
                items.iter().for_each(|i| i.write(out));
                out.push(b'e');
            }
            B::Dict(items) => {
                out.push(b'd');
                for (k, v) in items {
                    B::str(k).write(out);
                    v.write(out);
                }
                out.push(b'e');
            }
        }
    }
}

/// A file of a torrent being built: path components and content.
pub struct TFile {
    pub path: Vec<&'static str>,
    pub data: Vec<u8>,
}

/// Builds a `.torrent`: one file when `files` has a single entry with an
/// empty path, else a multi-file torrent named `name`. Returns the bytes and
/// the info-hash.
pub fn make_torrent(
    name: &str,
    files: &[TFile],
    piece_len: usize,
    announce: Option<&str>,
) -> (Vec<u8>, [u8; 20]) {
    let all: Vec<u8> = files.iter().flat_map(|f| f.data.clone()).collect();
    let pieces: Vec<u8> = all
        .chunks(piece_len)
        .flat_map(|c| <[u8; 20]>::from(Sha1::digest(c)))
        .collect();
    let mut info = vec![];
    if files.len() == 1 && files[0].path.is_empty() {
        info.push(("length", B::Int(all.len() as i64)));
    } else {
        let list = files
            .iter()
            .map(|f| {
                B::Dict(vec![
                    ("length", B::Int(f.data.len() as i64)),
                    ("path", B::List(f.path.iter().map(|p| B::str(p)).collect())),
                ])
            })
            .collect();
        info.push(("files", B::List(list)));
    }
    info.push(("name", B::str(name)));
    info.push(("piece length", B::Int(piece_len as i64)));
    info.push(("pieces", B::Bytes(pieces)));
    let info = B::Dict(info);
    let hash: [u8; 20] = Sha1::digest(info.encode()).into();
    let mut top = vec![];
    if let Some(url) = announce {
        top.push(("announce", B::str(url)));
    }
    top.push(("info", info));
    (B::Dict(top).encode(), hash)
}

/// A single-file torrent written to disk beside its content.
pub struct SingleFile {
    /// `DIR/NAME.torrent`.
    pub torrent: std::path::PathBuf,
    /// `DIR/NAME`, the content to seed.
    pub source: std::path::PathBuf,
    /// The torrent's info-hash.
    pub info_hash: [u8; 20],
}

/// Writes a single-file torrent named `name` over `data`, and the content
/// itself, into `dir`.
pub fn write_single_file(
    dir: &std::path::Path,
    name: &str,
    data: &[u8],
    piece_len: usize,
    announce: Option<&str>,
) -> SingleFile {
    let files = [TFile {
        path: vec![],
        data: data.to_vec(),
    }];
    let (bytes, info_hash) = make_torrent(name, &files, piece_len, announce);
    let torrent = dir.join(format!("{name}.torrent"));
    std::fs::write(&torrent, bytes).unwrap();
    let source = dir.join(name);
    std::fs::write(&source, data).unwrap();
    SingleFile {
        torrent,
        source,
        info_hash,
    }
}

/// A decoded bencode value, owned, for reading what the client under test
/// sent (extended handshakes, ut_metadata messages, saved torrents).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Int(i64),
    Bytes(Vec<u8>),
    List(Vec<Value>),
    /// Keys and values in the order they came.
    Dict(Vec<(Vec<u8>, Value)>),
}

impl Value {
    /// The value of `key` when this is a dictionary holding it.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Dict(items) => items
                .iter()
                .find(|(k, _)| k == key.as_bytes())
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// The integer, when this is one.
    pub fn int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The byte string, when this is one.
    pub fn bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }
}

/// Nesting deeper than this is refused, so hostile input cannot overflow the stack.
const MAX_DEPTH: usize = 32;

/// Decodes the value at the start of `bytes`; returns it and the number of
/// bytes it used (a ut_metadata `data` message carries raw bytes after its
/// dictionary). `None` when the bytes are truncated or not bencode.
pub fn decode(bytes: &[u8]) -> Option<(Value, usize)> {
    parse(bytes, 0, 0)
}

/// The raw bytes of the value of `key` in the dictionary `bytes` (the
/// info-hash is the SHA-1 of the raw `info` value, not of a re-encoding).
pub fn raw_value<'a>(bytes: &'a [u8], key: &str) -> Option<&'a [u8]> {
    if bytes.first() != Some(&b'd') {
        return None;
    }
    let mut pos = 1;
    while bytes.get(pos)? != &b'e' {
        let (k, after_key) = parse(bytes, pos, 1)?;
        let (_, end) = parse(bytes, after_key, 1)?;
        if k.bytes()? == key.as_bytes() {
            return Some(&bytes[after_key..end]);
        }
        pos = end;
    }
    None
}

/// Parses the value at `pos`; returns it and the position after it.
fn parse(bytes: &[u8], pos: usize, depth: usize) -> Option<(Value, usize)> {
    if depth > MAX_DEPTH {
        return None;
    }
    match *bytes.get(pos)? {
        b'i' => {
            let end = pos + 1 + bytes[pos + 1..].iter().position(|&b| b == b'e')?;
            let text = std::str::from_utf8(&bytes[pos + 1..end]).ok()?;
            Some((Value::Int(text.parse().ok()?), end + 1))
        }
        b'l' => {
            let (mut items, mut pos) = (Vec::new(), pos + 1);
            while *bytes.get(pos)? != b'e' {
                let (item, next) = parse(bytes, pos, depth + 1)?;
                items.push(item);
                pos = next;
            }
            Some((Value::List(items), pos + 1))
        }
        b'd' => {
            let (mut items, mut pos) = (Vec::new(), pos + 1);
            while *bytes.get(pos)? != b'e' {
                let (key, next) = parse(bytes, pos, depth + 1)?;
                let (value, next) = parse(bytes, next, depth + 1)?;
                items.push((key.bytes()?.to_vec(), value));
                pos = next;
            }
            Some((Value::Dict(items), pos + 1))
        }
        b'0'..=b'9' => {
            let colon = pos + bytes[pos..].iter().position(|&b| b == b':')?;
            let len: usize = std::str::from_utf8(&bytes[pos..colon]).ok()?.parse().ok()?;
            // Checked against the input before slicing: no allocation past it.
            let end = (colon + 1).checked_add(len)?;
            let data = bytes.get(colon + 1..end)?;
            Some((Value::Bytes(data.to_vec()), end))
        }
        _ => None,
    }
}
