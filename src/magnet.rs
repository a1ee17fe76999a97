//! Magnet links (BEP 9 "magnet URI format"): parsing and writing them.
//!
//! In scope: turning a `magnet:?` URI into a [`Magnet`] (the info-hash from
//! `xt=urn:btih:` in hex or base32, the name `dn`, the trackers `tr` and the
//! peers `x.pe`), writing one back with [`Magnet::to_uri`], and choosing a safe
//! name to save under. Out of scope: fetching the metadata from peers (BEP 9's
//! extension messages), resolving `x.pe` addresses (the caller does, as for
//! `--peer`) and BitTorrent v2 hashes (`urn:btmh:` is skipped). Pure code: no
//! I/O.

use std::fmt;

use data_encoding::{BASE32, HEXLOWER_PERMISSIVE};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

use crate::metainfo::{self, InfoHash};
use crate::untrusted::show;

/// Longest magnet link accepted, in bytes; checked before any parsing.
pub const MAX_MAGNET_LEN: usize = 64 * 1024;

/// Longest `dn` used as a file name, in bytes (the usual file system limit).
const MAX_NAME_LEN: usize = 255;

/// Everything but RFC 3986's unreserved characters is escaped in [`Magnet::to_uri`].
const VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A parsed magnet link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Magnet {
    /// The v1 info-hash from the first `xt=urn:btih:`.
    pub info_hash: InfoHash,
    /// `dn`, percent-decoded; None when absent.
    pub name: Option<String>,
    /// Every `tr`, percent-decoded, in order, duplicates removed.
    pub trackers: Vec<String>,
    /// Every `x.pe` (HOST:PORT strings, percent-decoded, not resolved: the caller resolves them like --peer).
    pub peers: Vec<String>,
}

/// Why a magnet link was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MagnetError {
    /// Longer than [`MAX_MAGNET_LEN`] bytes (the length is carried).
    TooLong(usize),
    /// Does not start with `magnet:?` (carries the start of the input).
    NotMagnet(String),
    /// No `xt` parameter at all.
    MissingXt,
    /// `xt` parameters, none of them `urn:btih:` (carries the first one).
    NotBtih(String),
    /// The btih (carried as written) is neither 40 hex nor 32 base32 characters.
    BadHashLength(String),
    /// 40 characters that are not all hex digits.
    BadHex(String),
    /// 32 characters that are not RFC 4648 base32 (no padding).
    BadBase32(String),
    /// A value whose percent-encoding does not decode to UTF-8.
    BadPercentEncoding {
        /// The parameter's name (`xt`, `dn`, `tr` or `x.pe`).
        param: String,
        /// The raw value as written.
        value: String,
    },
}

impl fmt::Display for MagnetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLong(len) => write!(f, "magnet link is {len} bytes, over {MAX_MAGNET_LEN}"),
            Self::NotMagnet(start) => {
                write!(f, "not a magnet link (no `magnet:?`): \"{}\"", show(start))
            }
            Self::MissingXt => write!(f, "magnet link has no `xt` parameter"),
            Self::NotBtih(xt) => write!(
                f,
                "magnet link has no `xt=urn:btih:` (first xt \"{}\")",
                show(xt)
            ),
            Self::BadHashLength(hash) => {
                let len = hash.chars().count();
                write!(
                    f,
                    "btih \"{}\" is {len} characters, expected 40 hex or 32 base32",
                    show(hash)
                )
            }
            Self::BadHex(hash) => write!(f, "btih \"{}\" is not hex", show(hash)),
            Self::BadBase32(hash) => write!(f, "btih \"{}\" is not base32", show(hash)),
            Self::BadPercentEncoding { param, value } => {
                write!(
                    f,
                    "magnet `{}` does not percent-decode to UTF-8: \"{}\"",
                    show(param),
                    show(value)
                )
            }
        }
    }
}

impl std::error::Error for MagnetError {}

impl Magnet {
    /// True when `s` starts with `magnet:?`, the scheme in any case.
    pub fn is_magnet(s: &str) -> bool {
        s.as_bytes()
            .get(..8)
            .is_some_and(|start| start[..7].eq_ignore_ascii_case(b"magnet:") && start[7] == b'?')
    }

    /// Parses a magnet link (BEP 9).
    ///
    /// Parameters are `&`-separated `name=value` pairs; only `xt`, `dn`, `tr`
    /// and `x.pe` are read (names are case-sensitive), others and pairs without
    /// `=` are ignored. The first `xt=urn:btih:` gives the info-hash; other
    /// `xt` (such as v2's `urn:btmh:`) are skipped. In `dn`, `+` is a space, as
    /// in form encoding; the first `dn` wins. An empty value counts as absent
    /// and a repeated one is kept once. A `%` not followed by two hex digits
    /// is kept literally.
    ///
    /// # Errors
    /// One [`MagnetError`] variant per malformed form: too long, wrong scheme,
    /// no `xt`, no `urn:btih:` among the `xt`, a btih of the wrong length, bad
    /// hex or base32, or a value that does not percent-decode to UTF-8.
    pub fn parse(uri: &str) -> Result<Magnet, MagnetError> {
        if uri.len() > MAX_MAGNET_LEN {
            return Err(MagnetError::TooLong(uri.len()));
        }
        if !Magnet::is_magnet(uri) {
            return Err(MagnetError::NotMagnet(uri.chars().take(64).collect()));
        }
        let mut xts = Vec::new();
        let mut names = Vec::new();
        let mut trackers = Vec::new();
        let mut peers = Vec::new();
        // `is_magnet` checked the first 8 bytes are ASCII, so this is a char boundary.
        for pair in uri[8..].split('&') {
            let Some((param, raw)) = pair.split_once('=') else {
                continue;
            };
            let list = match param {
                "xt" => &mut xts,
                "dn" => &mut names,
                "tr" => &mut trackers,
                "x.pe" => &mut peers,
                _ => continue,
            };
            let value = decode(param, raw)?;
            // An empty or repeated value adds nothing.
            if !value.is_empty() && !list.contains(&value) {
                list.push(value);
            }
        }
        let Some(first) = xts.first() else {
            return Err(MagnetError::MissingXt);
        };
        let hash = xts
            .iter()
            .find_map(|xt| strip_prefix_ignore_case(xt, "urn:btih:"))
            .ok_or_else(|| MagnetError::NotBtih(first.clone()))?;
        Ok(Magnet {
            info_hash: decode_btih(hash)?,
            name: names.into_iter().next(),
            trackers,
            peers,
        })
    }

    /// A magnet URI for this link (xt as 40 lowercase hex, dn, tr, x.pe percent-encoded), which parse() reads back equal.
    ///
    /// Equal when the name, trackers and peers are non-empty and the trackers
    /// and peers distinct, as [`Magnet::parse`] makes them.
    pub fn to_uri(&self) -> String {
        let mut uri = format!("magnet:?xt=urn:btih:{}", self.info_hash);
        let params = self.name.iter().map(|n| ("dn", n));
        let params = params
            .chain(self.trackers.iter().map(|t| ("tr", t)))
            .chain(self.peers.iter().map(|p| ("x.pe", p)));
        for (param, value) in params {
            uri.push('&');
            uri.push_str(param);
            uri.push('=');
            uri.extend(utf8_percent_encode(value, VALUE));
        }
        uri
    }

    /// The name to save under: `dn` if present and safe as one path component, else the info-hash in hex.
    ///
    /// Safe means what [`crate::metainfo`] accepts for a torrent's name (not
    /// empty, `.` or `..`; no `/` or NUL; on Windows none of its own
    /// forbidden names) and at most 255 bytes. It comes from outside: print
    /// it through [`crate::untrusted::show`].
    pub fn display_name(&self) -> String {
        match &self.name {
            Some(name) if is_safe_component(name) => name.clone(),
            _ => self.info_hash.to_string(),
        }
    }
}

/// Percent-decodes the value of `param`, which must be UTF-8 once decoded.
fn decode(param: &str, raw: &str) -> Result<String, MagnetError> {
    // Form encoding's `+` for a space, in names only: libtorrent writes `dn` so.
    let spaced = if param == "dn" {
        raw.replace('+', " ")
    } else {
        raw.to_string()
    };
    percent_decode_str(&spaced)
        .decode_utf8()
        .map(|value| value.into_owned())
        .map_err(|_| MagnetError::BadPercentEncoding {
            param: param.to_string(),
            value: raw.to_string(),
        })
}

/// `s` without `prefix`, compared ASCII case-insensitively (URN namespaces are
/// case-insensitive, RFC 8141).
fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// Decodes a btih: 40 hex or 32 base32 characters, either case.
fn decode_btih(hash: &str) -> Result<InfoHash, MagnetError> {
    let decoded = match hash.chars().count() {
        40 => HEXLOWER_PERMISSIVE
            .decode(hash.as_bytes())
            .map_err(|_| MagnetError::BadHex(hash.to_string()))?,
        // 32 × 5 bits is exactly 160: no padding, no trailing bits.
        32 => BASE32
            .decode(hash.to_ascii_uppercase().as_bytes())
            .map_err(|_| MagnetError::BadBase32(hash.to_string()))?,
        _ => return Err(MagnetError::BadHashLength(hash.to_string())),
    };
    // BASE32 accepts `=` padding, which would leave fewer than 20 bytes.
    let bytes =
        <[u8; 20]>::try_from(decoded).map_err(|_| MagnetError::BadBase32(hash.to_string()))?;
    Ok(InfoHash(bytes))
}

/// Whether `name` can be used as one file name under the destination
/// folder: the torrent's own rule for a path component, and not too long.
fn is_safe_component(name: &str) -> bool {
    name.len() <= MAX_NAME_LEN && metainfo::check_component(name).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::collection::vec;
    use proptest::prelude::*;

    const HEX: &str = "c12fe1c06bba254a9dc9f519b335aa7c1367a88a";
    /// The base32 of [`HEX`], from Python's `base64.b32encode(bytes.fromhex(HEX))`.
    const B32: &str = "YEX6DQDLXISUVHOJ6UM3GNNKPQJWPKEK";

    fn hash() -> InfoHash {
        let bytes = HEXLOWER_PERMISSIVE.decode(HEX.as_bytes()).unwrap();
        InfoHash(bytes.try_into().unwrap())
    }

    fn parse_hash(btih: &str) -> Result<InfoHash, MagnetError> {
        Magnet::parse(&format!("magnet:?xt=urn:btih:{btih}")).map(|m| m.info_hash)
    }

    #[test]
    fn parses_hex_hash_in_lower_and_upper_case() {
        assert_eq!(parse_hash(HEX), Ok(hash()));
        assert_eq!(parse_hash(&HEX.to_uppercase()), Ok(hash()));
    }

    #[test]
    fn parses_base32_hash_in_upper_and_lower_case() {
        assert_eq!(parse_hash(B32), Ok(hash()));
        assert_eq!(parse_hash(&B32.to_lowercase()), Ok(hash()));
    }

    #[test]
    fn base32_of_a_hex_hash_parses_to_the_same_hash() {
        let bytes = [0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef].repeat(3);
        let bytes: [u8; 20] = bytes[..20].try_into().unwrap();
        let b32 = BASE32.encode(&bytes);
        assert_eq!(b32.len(), 32);
        let hex = data_encoding::HEXLOWER.encode(&bytes);
        assert_eq!(parse_hash(&b32), parse_hash(&hex));
        assert_eq!(parse_hash(&b32), Ok(InfoHash(bytes)));
    }

    #[test]
    fn is_magnet_accepts_the_scheme_in_any_case_only() {
        assert!(Magnet::is_magnet("magnet:?xt=1"));
        assert!(Magnet::is_magnet("MAGNET:?"));
        assert!(Magnet::is_magnet("MagNet:?dn=x"));
        assert!(!Magnet::is_magnet("magnet:"));
        assert!(!Magnet::is_magnet("magnet:xt=1"));
        assert!(!Magnet::is_magnet("http://x/a.torrent"));
        assert!(!Magnet::is_magnet("magneté?"));
    }

    #[test]
    fn percent_encoding_in_tr_and_dn_is_decoded() {
        let uri = format!(
            "magnet:?xt=urn:btih:{HEX}&dn=My+Film%20%282024%29%2B%C3%A9\
             &tr=http%3A%2F%2F127.0.0.1%3A8000%2Fannounce&tr=udp://a+b:1&dn=second"
        );
        let magnet = Magnet::parse(&uri).unwrap();
        assert_eq!(magnet.name.as_deref(), Some("My Film (2024)+é"));
        // `+` is a space in `dn` only.
        assert_eq!(
            magnet.trackers,
            ["http://127.0.0.1:8000/announce", "udp://a+b:1"]
        );
        assert_eq!(magnet.display_name(), "My Film (2024)+é");
    }

    #[test]
    fn several_tr_are_kept_in_order_without_duplicates_or_empties() {
        let uri = format!(
            "magnet:?tr=http%3A%2F%2Fb&xt=urn:btih:{HEX}&tr=http://a&tr=&tr=http://b&tr=http://c"
        );
        let magnet = Magnet::parse(&uri).unwrap();
        assert_eq!(magnet.trackers, ["http://b", "http://a", "http://c"]);
    }

    #[test]
    fn several_x_pe_are_kept_in_order() {
        let uri = format!(
            "magnet:?xt=urn:btih:{HEX}&x.pe=127.0.0.1:6881&x.pe=%5B%3A%3A1%5D%3A51413\
             &x.pe=example.org:1&X.PE=ignored:1&x.pe="
        );
        let magnet = Magnet::parse(&uri).unwrap();
        assert_eq!(
            magnet.peers,
            ["127.0.0.1:6881", "[::1]:51413", "example.org:1"]
        );
    }

    #[test]
    fn unknown_parameters_and_pairs_without_equals_are_ignored() {
        let uri = format!("magnet:?xl=10&DN=no&flag&xt=urn:btih:{HEX}&ws=http://w&kt=a+b");
        let magnet = Magnet::parse(&uri).unwrap();
        assert_eq!(magnet.name, None);
        assert!(magnet.trackers.is_empty() && magnet.peers.is_empty());
    }

    #[test]
    fn first_btih_is_taken_and_btmh_skipped() {
        let uri = format!(
            "MAGNET:?xt=urn:btmh:1220{HEX}{HEX}&xt=urn%3Abtih%3A{B32}&xt=urn:btih:{}",
            "0".repeat(40)
        );
        assert_eq!(Magnet::parse(&uri).unwrap().info_hash, hash());
    }

    #[test]
    fn missing_or_empty_dn_falls_back_to_hex_name() {
        for uri in [
            format!("magnet:?xt=urn:btih:{B32}"),
            format!("magnet:?dn=&xt=urn:btih:{HEX}"),
        ] {
            let magnet = Magnet::parse(&uri).unwrap();
            assert_eq!(magnet.name, None);
            assert_eq!(magnet.display_name(), HEX);
        }
    }

    #[test]
    fn unsafe_dn_falls_back_to_hex_name() {
        let long = "x".repeat(MAX_NAME_LEN + 1);
        for dn in ["a%2Fb", "..", ".", "a%00", &long] {
            let uri = format!("magnet:?xt=urn:btih:{HEX}&dn={dn}");
            let magnet = Magnet::parse(&uri).unwrap();
            assert!(magnet.name.is_some(), "{dn}");
            assert_eq!(magnet.display_name(), HEX, "{dn}");
        }
    }

    #[test]
    fn a_dn_with_a_colon_or_backslash_is_a_name_except_on_windows() {
        for (dn, name) in [
            ("C%3A", "C:"),
            ("Movie%3A+The+Sequel", "Movie: The Sequel"),
            ("a%5Cb", "a\\b"),
        ] {
            let uri = format!("magnet:?xt=urn:btih:{HEX}&dn={dn}");
            let shown = Magnet::parse(&uri).unwrap().display_name();
            assert_eq!(shown, if cfg!(windows) { HEX } else { name }, "{dn}");
        }
    }

    #[test]
    fn each_malformed_form_is_its_own_error() {
        use MagnetError::*;
        let long = format!(
            "magnet:?xt=urn:btih:{HEX}&dn={}",
            "a".repeat(MAX_MAGNET_LEN)
        );
        assert_eq!(Magnet::parse(&long), Err(TooLong(long.len())));
        let http = "http://x/?xt=1";
        assert_eq!(Magnet::parse(http), Err(NotMagnet(http.into())));
        assert_eq!(Magnet::parse("magnet:?dn=a&tr=b"), Err(MissingXt));
        let v2 = "magnet:?xt=urn:btmh:12&xt=urn:sha1:x";
        assert_eq!(Magnet::parse(v2), Err(NotBtih("urn:btmh:12".into())));
        for hash in ["", "abc", &format!("{HEX}0"), &B32[1..]] {
            assert_eq!(parse_hash(hash), Err(BadHashLength(hash.into())));
        }
        let hex = format!("{}g", &HEX[..39]);
        assert_eq!(parse_hash(&hex), Err(BadHex(hex)));
        let b32 = format!("{}1", &B32[..31]);
        assert_eq!(parse_hash(&b32), Err(BadBase32(b32)));
        // BASE32 itself accepts padding, which would decode to fewer than 20 bytes.
        let padded = format!("{}====", &B32[..28]);
        assert_eq!(parse_hash(&padded), Err(BadBase32(padded)));
        let bad_utf8 = format!("magnet:?xt=urn:btih:{HEX}&tr=%FF");
        let (param, value) = ("tr".into(), "%FF".into());
        assert_eq!(
            Magnet::parse(&bad_utf8),
            Err(BadPercentEncoding { param, value })
        );
    }

    #[test]
    fn error_messages_are_lowercase_and_carry_the_value() {
        let err = Magnet::parse("magnet:?xt=urn:btih:abc").unwrap_err();
        assert_eq!(
            err.to_string(),
            "btih \"abc\" is 3 characters, expected 40 hex or 32 base32"
        );
        let err = Magnet::parse("magnet:?xt=urn:btih:x&dn=a+%C3").unwrap_err();
        assert_eq!(
            err.to_string(),
            "magnet `dn` does not percent-decode to UTF-8: \"a+%C3\""
        );
    }

    #[test]
    fn values_quoted_in_errors_are_escaped_and_capped() {
        let link = format!("magnet:?xt=urn:btih:\x1b[2J{}", "x".repeat(5000));
        let text = Magnet::parse(&link).unwrap_err().to_string();
        assert!(!text.contains('\x1b'), "{text:?}");
        assert!(text.starts_with("btih \"\\u{1b}[2Jxxx"), "{text}");
        assert!(text.chars().count() < 300, "{} chars", text.chars().count());
    }

    #[test]
    fn to_uri_writes_lowercase_hex_and_escapes_values() {
        let magnet = Magnet {
            info_hash: hash(),
            name: Some("a b+c&d".into()),
            trackers: vec!["http://t/a?x=1&y=2".into()],
            peers: vec!["[::1]:1".into()],
        };
        let uri = magnet.to_uri();
        assert_eq!(
            uri,
            format!(
                "magnet:?xt=urn:btih:{HEX}&dn=a%20b%2Bc%26d\
                 &tr=http%3A%2F%2Ft%2Fa%3Fx%3D1%26y%3D2&x.pe=%5B%3A%3A1%5D%3A1"
            )
        );
        assert_eq!(Magnet::parse(&uri), Ok(magnet));
    }

    /// Values without duplicates or empties, as `parse` returns them.
    fn distinct(values: Vec<String>) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for v in values {
            if !v.is_empty() && !out.contains(&v) {
                out.push(v);
            }
        }
        out
    }

    proptest! {
        // The default case count, without writing regression files into the tree.
        #![proptest_config(ProptestConfig { failure_persistence: None, ..Default::default() })]

        #[test]
        fn parsing_arbitrary_strings_never_panics(s in any::<String>()) {
            let _ = Magnet::parse(&s);
        }

        #[test]
        fn parsing_magnet_like_strings_never_panics(
            s in "(?i:magnet:\\?)((xt|dn|tr|x\\.pe)=(urn:btih:)?[a-zA-Z0-9%+:=.é]{0,48}&?){0,4}"
        ) {
            let _ = Magnet::parse(&s);
        }

        #[test]
        fn any_magnet_round_trips_through_to_uri(
            hash in any::<[u8; 20]>(),
            name in proptest::option::of(any::<String>().prop_filter("non-empty", |n| !n.is_empty())),
            trackers in vec(any::<String>(), 0..4),
            peers in vec(any::<String>(), 0..4),
        ) {
            let magnet = Magnet {
                info_hash: InfoHash(hash),
                name,
                trackers: distinct(trackers),
                peers: distinct(peers),
            };
            prop_assert_eq!(Magnet::parse(&magnet.to_uri()), Ok(magnet));
        }
    }
}
