//! The values a `.torrent` uses, read in place from its bencode by key, with
//! errors that name the key (`info.files[2].length: ...`).
//!
//! Only the keys the client uses are ever looked at: an unknown key's value
//! (a 10,000-digit integer, a deep list) is skipped as bytes, never decoded,
//! and still counts in the info-hash, which is taken over the raw bytes.
//! Where a dictionary repeats a key, the first one counts, as in
//! [`bencode::dict_value_span`].

use std::ops::Range;

use super::MetainfoError;
use crate::bencode::{self, BencodeError};
use crate::untrusted;

/// Most characters of a wrong value quoted in an error.
const MAX_QUOTED_CHARS: usize = 40;

/// One bencoded value of the document, and where it is in it (`info.name`),
/// for errors.
pub(super) struct Value<'a> {
    doc: &'a [u8],
    range: Range<usize>,
    at: String,
}

/// A dictionary of the document: its entries in order.
pub(super) struct Dict<'a> {
    doc: &'a [u8],
    entries: Vec<bencode::Entry<'a>>,
    at: String,
}

fn invalid(at: &str, what: impl std::fmt::Display) -> MetainfoError {
    MetainfoError::Invalid(format!("{at}: {what}"))
}

fn broken(e: BencodeError) -> MetainfoError {
    MetainfoError::NotBencode(e)
}

impl<'a> Value<'a> {
    /// The whole document `doc`, which must be well-formed bencode.
    pub(super) fn document(doc: &'a [u8]) -> Value<'a> {
        Value {
            doc,
            range: 0..doc.len(),
            at: String::new(),
        }
    }

    fn raw(&self) -> &'a [u8] {
        &self.doc[self.range.clone()]
    }

    /// Where the value is, as `info.files[2].path`.
    pub(super) fn at(&self) -> &str {
        &self.at
    }

    fn kind(&self) -> &'static str {
        match self.raw().first() {
            Some(b'i') => "an integer",
            Some(b'l') => "a list",
            Some(b'd') => "a dictionary",
            _ => "a string",
        }
    }

    fn wrong_type(&self, expected: &str) -> MetainfoError {
        invalid(
            &self.at,
            format_args!("expected {expected}, found {}", self.kind()),
        )
    }

    /// The value as a dictionary.
    pub(super) fn dict(self) -> Result<Dict<'a>, MetainfoError> {
        if self.raw().first() != Some(&b'd') {
            return Err(self.wrong_type("a dictionary"));
        }
        let (entries, _) = bencode::dict_entries(self.doc, self.range.start, bencode::MAX_DEPTH)
            .map_err(broken)?;
        Ok(Dict {
            doc: self.doc,
            entries,
            at: self.at,
        })
    }

    /// The value as a list of values, each named `at[i]`.
    pub(super) fn list(self) -> Result<Vec<Value<'a>>, MetainfoError> {
        if self.raw().first() != Some(&b'l') {
            return Err(self.wrong_type("a list"));
        }
        let (items, _) = bencode::list_items(self.doc, self.range.start).map_err(broken)?;
        Ok(items
            .into_iter()
            .enumerate()
            .map(|(i, range)| Value {
                doc: self.doc,
                range,
                at: format!("{}[{i}]", self.at),
            })
            .collect())
    }

    /// The value as a string of bytes.
    pub(super) fn bytes(&self) -> Result<&'a [u8], MetainfoError> {
        bencode::as_bytes(self.raw()).ok_or_else(|| self.wrong_type("a string"))
    }

    /// The value as a UTF-8 string.
    pub(super) fn text(&self) -> Result<&'a str, MetainfoError> {
        let bytes = self.bytes()?;
        std::str::from_utf8(bytes).map_err(|_| {
            invalid(
                &self.at,
                format_args!("\"{}\" is not valid utf-8", quote(bytes)),
            )
        })
    }

    /// The value as an integer of 0 or more.
    pub(super) fn length(&self) -> Result<u64, MetainfoError> {
        let raw = self.raw();
        if raw.first() != Some(&b'i') {
            return Err(self.wrong_type("an integer"));
        }
        let digits = &raw[1..raw.len() - 1];
        match bencode::as_int(raw) {
            Some(n) if n >= 0 => Ok(n as u64),
            Some(n) => Err(invalid(&self.at, format_args!("{n} is negative"))),
            None => Err(invalid(
                &self.at,
                format_args!("integer {} is out of range", quote(digits)),
            )),
        }
    }
}

impl<'a> Dict<'a> {
    /// The value under `key`, if present.
    pub(super) fn get(&self, key: &str) -> Option<Value<'a>> {
        let (_, range) = self.entries.iter().find(|(k, _)| *k == key.as_bytes())?;
        let at = if self.at.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.at)
        };
        Some(Value {
            doc: self.doc,
            range: range.clone(),
            at,
        })
    }

    /// The value under `key`, which must be present.
    pub(super) fn require(&self, key: &str) -> Result<Value<'a>, MetainfoError> {
        self.get(key).ok_or_else(|| {
            MetainfoError::Invalid(if self.at.is_empty() {
                format!("missing key `{key}`")
            } else {
                format!("missing key `{key}` in `{}`", self.at)
            })
        })
    }
}

/// `bytes` cut to [`MAX_QUOTED_CHARS`] characters and made safe to print.
fn quote(bytes: &[u8]) -> String {
    let head = &bytes[..bytes.len().min(MAX_QUOTED_CHARS)];
    let mut shown = untrusted::show_bytes(head);
    if head.len() < bytes.len() {
        shown.push('…');
    }
    shown
}
