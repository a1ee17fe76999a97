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
