//! Bencode structure scanning (BEP 3, "bencoding"): find the raw byte span of a
//! value without decoding it.
//!
//! In scope: checking that bytes are well-formed bencode, locating the exact
//! bytes of a top-level dictionary value, which is what the info-hash is computed
//! over, and reading a dictionary's entries and its integer and string values
//! in place (for the small, loosely typed extension messages of
//! [`crate::peer::ext`]), and appending integers and strings for the
//! messages and files we write by hand, and listing a list's items in place
//! (for [`crate::metainfo`], which reads the `.torrent` keys it uses this
//! way and never decodes the ones it does not). Out of scope: what the keys
//! mean, and tracker responses, which `serde_bencode` decodes. Pure code: no
//! I/O.

use std::fmt;
use std::ops::Range;

/// Appends the bencoded integer `value` (`i42e`).
pub fn put_int(out: &mut Vec<u8>, value: i64) {
    out.push(b'i');
    out.extend_from_slice(value.to_string().as_bytes());
    out.push(b'e');
}

/// Appends the bencoded string `bytes` (`4:spam`).
pub fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(bytes.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(bytes);
}

/// Why bytes are not well-formed bencode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BencodeError {
    /// Byte offset where the problem was found.
    pub pos: usize,
    /// What was wrong there.
    pub what: &'static str,
}

impl fmt::Display for BencodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.what, self.pos)
    }
}

impl std::error::Error for BencodeError {}

/// Nesting deeper than this is refused, so hostile input cannot exhaust the stack.
pub const MAX_DEPTH: usize = 64;

/// A dictionary key and the byte range of its value.
pub type Entry<'a> = (&'a [u8], Range<usize>);

fn err(pos: usize, what: &'static str) -> BencodeError {
    BencodeError { pos, what }
}

/// Returns the end offset of the value that starts at `pos`.
///
/// # Errors
/// A [`BencodeError`] when the bytes at `pos` are not one well-formed value.
pub fn skip_value(bytes: &[u8], pos: usize) -> Result<usize, BencodeError> {
    skip_at_depth(bytes, pos, 0, MAX_DEPTH)
}

/// Checks that a dictionary starts at `pos` and returns its entries in the
/// order they appear, and the offset where it ends.
///
/// Counting as [`skip_value`] does, with the dictionary at depth 0 and its
/// values at depth 1, any value deeper than `max_depth` is refused: with
/// `max_depth` 1 the values may be containers only if they are empty.
///
/// # Errors
/// A [`BencodeError`] when the bytes at `pos` are not one well-formed
/// dictionary within that depth.
pub fn dict_entries(
    bytes: &[u8],
    pos: usize,
    max_depth: usize,
) -> Result<(Vec<Entry<'_>>, usize), BencodeError> {
    if bytes.get(pos) != Some(&b'd') {
        return Err(err(pos, "not a dictionary"));
    }
    let mut entries = Vec::new();
    let mut at = pos + 1;
    while bytes.get(at) != Some(&b'e') {
        if !bytes.get(at).is_some_and(u8::is_ascii_digit) {
            return Err(err(at, "dictionary key is not a string"));
        }
        let key_end = skip_string(bytes, at)?;
        let (key_start, _) = string_header(bytes, at)?;
        let value_end = skip_at_depth(bytes, key_end, 1, max_depth)?;
        entries.push((&bytes[key_start..key_end], key_end..value_end));
        at = value_end;
    }
    Ok((entries, at + 1))
}

/// Checks that a list starts at `pos` and returns the byte range of each of
/// its items in order, and the offset where it ends.
///
/// # Errors
/// A [`BencodeError`] when the bytes at `pos` are not one well-formed list
/// within [`MAX_DEPTH`].
pub fn list_items(bytes: &[u8], pos: usize) -> Result<(Vec<Range<usize>>, usize), BencodeError> {
    if bytes.get(pos) != Some(&b'l') {
        return Err(err(pos, "not a list"));
    }
    let mut items = Vec::new();
    let mut at = pos + 1;
    while bytes.get(at) != Some(&b'e') {
        let end = skip_at_depth(bytes, at, 1, MAX_DEPTH)?;
        items.push(at..end);
        at = end;
    }
    Ok((items, at + 1))
}

/// The integer that `value` (one whole bencoded value) holds, when it is an
/// integer that fits in an `i64`.
pub fn as_int(value: &[u8]) -> Option<i64> {
    if value.first() != Some(&b'i') || skip_value(value, 0) != Ok(value.len()) {
        return None;
    }
    let digits = value.strip_prefix(b"i")?.strip_suffix(b"e")?;
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// The bytes of the string that `value` (one whole bencoded value) holds,
/// when it is a string.
pub fn as_bytes(value: &[u8]) -> Option<&[u8]> {
    if !value.first().is_some_and(u8::is_ascii_digit) || skip_value(value, 0) != Ok(value.len()) {
        return None;
    }
    let (start, _) = string_header(value, 0).ok()?;
    Some(&value[start..])
}

fn skip_at_depth(
    bytes: &[u8],
    pos: usize,
    depth: usize,
    max_depth: usize,
) -> Result<usize, BencodeError> {
    if depth > max_depth {
        return Err(err(pos, "nesting too deep"));
    }
    match bytes.get(pos) {
        None => Err(err(pos, "unexpected end of input")),
        Some(b'i') => {
            let end = find(bytes, pos + 1, b'e')?;
            let digits = &bytes[pos + 1..end];
            let unsigned = digits.strip_prefix(b"-").unwrap_or(digits);
            let valid = !unsigned.is_empty()
                && unsigned.iter().all(u8::is_ascii_digit)
                && !(unsigned.len() > 1 && unsigned[0] == b'0')
                && digits != b"-0";
            if !valid {
                return Err(err(pos, "malformed integer"));
            }
            Ok(end + 1)
        }
        Some(b'l') => {
            let mut at = pos + 1;
            while bytes.get(at) != Some(&b'e') {
                at = skip_at_depth(bytes, at, depth + 1, max_depth)?;
            }
            Ok(at + 1)
        }
        Some(b'd') => {
            let mut at = pos + 1;
            while bytes.get(at) != Some(&b'e') {
                if !bytes.get(at).is_some_and(u8::is_ascii_digit) {
                    return Err(err(at, "dictionary key is not a string"));
                }
                at = skip_string(bytes, at)?;
                at = skip_at_depth(bytes, at, depth + 1, max_depth)?;
            }
            Ok(at + 1)
        }
        Some(b'0'..=b'9') => skip_string(bytes, pos),
        Some(_) => Err(err(pos, "unexpected byte")),
    }
}

/// Skips a `<length>:<bytes>` string, returning its end offset.
fn skip_string(bytes: &[u8], pos: usize) -> Result<usize, BencodeError> {
    let (start, len) = string_header(bytes, pos)?;
    let end = start
        .checked_add(len)
        .filter(|&end| end <= bytes.len())
        .ok_or_else(|| err(pos, "string runs past end of input"))?;
    Ok(end)
}

/// Parses a string's length prefix: returns where its bytes start and how many there are.
fn string_header(bytes: &[u8], pos: usize) -> Result<(usize, usize), BencodeError> {
    let colon = find(bytes, pos, b':')?;
    let digits = &bytes[pos..colon];
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(err(pos, "malformed string length"));
    }
    let len = std::str::from_utf8(digits)
        .ok()
        .and_then(|s| s.parse::<usize>().ok())
        .ok_or_else(|| err(pos, "string length too large"))?;
    Ok((colon + 1, len))
}

fn find(bytes: &[u8], from: usize, needle: u8) -> Result<usize, BencodeError> {
    bytes
        .get(from..)
        .and_then(|rest| rest.iter().position(|&b| b == needle))
        .map(|i| from + i)
        .ok_or_else(|| err(from, "unexpected end of input"))
}

/// Checks that `bytes` is exactly one dictionary and returns the byte range of the
/// value stored under `key`, if present.
///
/// This is how the info-hash is taken: SHA-1 over the `info` value exactly as it
/// appears in the file, whatever its key order or unknown keys.
///
/// # Errors
/// A [`BencodeError`] when `bytes` is not one well-formed dictionary.
pub fn dict_value_span(bytes: &[u8], key: &[u8]) -> Result<Option<Range<usize>>, BencodeError> {
    if bytes.first() != Some(&b'd') {
        return Err(err(0, "top level is not a dictionary"));
    }
    let end = skip_value(bytes, 0)?;
    if end != bytes.len() {
        return Err(err(end, "trailing bytes after dictionary"));
    }
    let mut at = 1;
    let mut found = None;
    while bytes[at] != b'e' {
        let (start, len) = string_header(bytes, at)?;
        let this_key = &bytes[start..start + len];
        let value_start = start + len;
        let value_end = skip_value(bytes, value_start)?;
        if this_key == key && found.is_none() {
            found = Some(value_start..value_end);
        }
        at = value_end;
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_each_kind_of_value() {
        assert_eq!(skip_value(b"i42e", 0), Ok(4));
        assert_eq!(skip_value(b"i-7e", 0), Ok(4));
        assert_eq!(skip_value(b"i0e", 0), Ok(3));
        assert_eq!(skip_value(b"4:spam", 0), Ok(6));
        assert_eq!(skip_value(b"0:", 0), Ok(2));
        assert_eq!(skip_value(b"l4:spami1ee", 0), Ok(11));
        assert_eq!(skip_value(b"d3:cow3:moo4:spaml1:aee", 0), Ok(23));
        assert_eq!(skip_value(b"le", 0), Ok(2));
    }

    #[test]
    fn malformed_integers_are_errors() {
        for bad in [&b"ie"[..], b"i-0e", b"i03e", b"i1x2e", b"i12"] {
            assert!(
                skip_value(bad, 0).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn string_longer_than_input_is_error() {
        assert_eq!(
            skip_value(b"10:abc", 0),
            Err(err(0, "string runs past end of input"))
        );
        assert!(skip_value(b"99999999999999999999999:x", 0).is_err());
    }

    #[test]
    fn dictionary_with_integer_key_is_error() {
        assert_eq!(
            skip_value(b"di1ei2ee", 0),
            Err(err(1, "dictionary key is not a string"))
        );
    }

    #[test]
    fn unterminated_containers_are_errors() {
        assert!(skip_value(b"l4:spam", 0).is_err());
        assert!(skip_value(b"d3:cow", 0).is_err());
        assert!(skip_value(b"", 0).is_err());
    }

    #[test]
    fn deep_nesting_is_refused_without_overflowing_the_stack() {
        let mut deep = vec![b'l'; 100_000];
        deep.extend(vec![b'e'; 100_000]);
        assert_eq!(skip_value(&deep, 0).unwrap_err().what, "nesting too deep");
    }

    #[test]
    fn finds_the_raw_span_of_a_value_whatever_the_key_order() {
        let doc = b"d4:infod1:zi1e1:ai2ee8:announce3:urle";
        let span = dict_value_span(doc, b"info").unwrap().unwrap();
        assert_eq!(&doc[span], b"d1:zi1e1:ai2ee");
        assert_eq!(dict_value_span(doc, b"missing").unwrap(), None);
    }

    #[test]
    fn span_search_rejects_non_dictionaries_and_trailing_bytes() {
        assert!(dict_value_span(b"l4:infoe", b"info").is_err());
        assert!(dict_value_span(b"d4:infoi1eeXX", b"info").is_err());
        assert!(dict_value_span(b"not bencode at all", b"info").is_err());
    }

    #[test]
    fn dict_entries_lists_keys_and_value_spans_in_order() {
        let doc = b"xd1:bi1e1:al2:hiee...";
        let (entries, end) = dict_entries(doc, 1, 4).unwrap();
        assert_eq!(end, doc.len() - 3);
        let keys: Vec<&[u8]> = entries.iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, [&b"b"[..], b"a"]);
        assert_eq!(&doc[entries[0].1.clone()], b"i1e");
        assert_eq!(&doc[entries[1].1.clone()], b"l2:hie");
        assert_eq!(dict_entries(b"de", 0, 0), Ok((vec![], 2)));
    }

    #[test]
    fn dict_entries_refuses_values_deeper_than_asked() {
        assert!(dict_entries(b"d1:ali1eee", 0, 2).is_ok());
        assert_eq!(
            dict_entries(b"d1:ali1eee", 0, 1).unwrap_err().what,
            "nesting too deep"
        );
        assert!(dict_entries(b"d1:alee", 0, 1).is_ok());
    }

    #[test]
    fn dict_entries_of_a_non_dictionary_or_a_broken_one_is_error() {
        assert_eq!(
            dict_entries(b"li1ee", 0, 4),
            Err(err(0, "not a dictionary"))
        );
        assert_eq!(
            dict_entries(b"di1ei2ee", 0, 4),
            Err(err(1, "dictionary key is not a string"))
        );
        assert!(dict_entries(b"d1:a", 0, 4).is_err());
        assert!(dict_entries(b"", 0, 4).is_err());
    }

    #[test]
    fn list_items_gives_each_item_s_range_in_order() {
        let doc = b"xli1e2:hiled1:ai2eee";
        let (items, end) = list_items(doc, 1).unwrap();
        assert_eq!(end, doc.len());
        let got: Vec<&[u8]> = items.iter().map(|r| &doc[r.clone()]).collect();
        assert_eq!(got, [&b"i1e"[..], b"2:hi", b"le", b"d1:ai2ee"]);
        assert_eq!(list_items(b"le", 0), Ok((vec![], 2)));
    }

    #[test]
    fn list_items_of_a_non_list_or_a_broken_one_is_error() {
        assert_eq!(list_items(b"de", 0), Err(err(0, "not a list")));
        assert!(list_items(b"li1e", 0).is_err());
        assert!(list_items(b"lx", 0).is_err());
    }

    #[test]
    fn reads_integers_and_strings_in_place() {
        assert_eq!(as_int(b"i42e"), Some(42));
        assert_eq!(as_int(b"i-7e"), Some(-7));
        assert_eq!(as_int(b"i99999999999999999999e"), None);
        for not_int in [&b"i+5e"[..], b"i03e", b"i-0e", b"4:spam", b"i1e "] {
            assert_eq!(as_int(not_int), None, "{not_int:?}");
        }
        assert_eq!(as_bytes(b"4:spam"), Some(&b"spam"[..]));
        assert_eq!(as_bytes(b"0:"), Some(&b""[..]));
        for not_bytes in [&b"i4e"[..], b"4:spa", b"4:spamX", b"le"] {
            assert_eq!(as_bytes(not_bytes), None, "{not_bytes:?}");
        }
    }

    #[test]
    fn every_truncation_of_a_valid_document_is_an_error() {
        let doc = b"d8:announce3:url4:infod6:lengthi5e4:name1:x12:piece lengthi16384e6:pieces0:ee";
        assert!(dict_value_span(doc, b"info").unwrap().is_some());
        for cut in 0..doc.len() {
            assert!(
                dict_value_span(&doc[..cut], b"info").is_err(),
                "cut at {cut}"
            );
        }
    }
}
