//! All size arithmetic of a torrent: piece lengths, block lengths, and where a
//! byte range of the torrent falls in its files.
//!
//! The content of a torrent is the concatenation of its files in order; pieces
//! cut that stream into equal lengths (the last may be shorter), and blocks cut
//! a piece into 16 KiB requests (the last block of the last piece may be shorter).
//! Pure code: no I/O.

use std::fmt;

/// The size of a block request. Common clients refuse requests above 16 KiB.
pub const BLOCK_LEN: u32 = 16 * 1024;

/// Piece and block arithmetic over a torrent's total length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    total_len: u64,
    piece_len: u32,
    piece_count: u32,
}

/// Why a total length and piece length cannot describe a torrent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayoutError(String);

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LayoutError {}

impl Layout {
    /// Describes `total_len` bytes cut into pieces of `piece_len`.
    ///
    /// # Errors
    /// When the piece length is zero or above 4 GiB, or the piece count does not
    /// fit a `u32` (the wire protocol's piece index).
    pub fn new(total_len: u64, piece_len: u64) -> Result<Layout, LayoutError> {
        let piece_len = u32::try_from(piece_len)
            .ok()
            .filter(|&l| l > 0)
            .ok_or_else(|| LayoutError(format!("piece length {piece_len} is out of range")))?;
        let piece_count = u32::try_from(total_len.div_ceil(u64::from(piece_len)))
            .map_err(|_| LayoutError(format!("total length {total_len} needs too many pieces")))?;
        Ok(Layout {
            total_len,
            piece_len,
            piece_count,
        })
    }

    /// Total length of the content in bytes.
    pub fn total_len(&self) -> u64 {
        self.total_len
    }

    /// The nominal piece length (every piece but possibly the last).
    pub fn piece_len(&self) -> u32 {
        self.piece_len
    }

    /// Number of pieces.
    pub fn piece_count(&self) -> u32 {
        self.piece_count
    }

    /// Byte offset of piece `index` in the content.
    pub fn piece_offset(&self, index: u32) -> u64 {
        u64::from(index) * u64::from(self.piece_len)
    }

    /// Length of piece `index`; the last piece may be shorter.
    ///
    /// # Panics
    /// When `index` is out of range: callers validate indices from peers first.
    pub fn piece_size(&self, index: u32) -> u32 {
        assert!(index < self.piece_count, "piece {index} out of range");
        let rest = self.total_len - self.piece_offset(index);
        rest.min(u64::from(self.piece_len)) as u32
    }

    /// Number of blocks in piece `index`.
    pub fn block_count(&self, index: u32) -> u32 {
        self.piece_size(index).div_ceil(BLOCK_LEN)
    }

    /// Length of block `block` (0-based) of piece `index`.
    pub fn block_size(&self, index: u32, block: u32) -> u32 {
        let begin = block * BLOCK_LEN;
        (self.piece_size(index) - begin).min(BLOCK_LEN)
    }

    /// Whether `begin..begin+length` lies inside piece `index`, with a length
    /// between 1 and [`BLOCK_LEN`]: the test every incoming request must pass.
    pub fn is_valid_request(&self, index: u32, begin: u32, length: u32) -> bool {
        index < self.piece_count
            && length > 0
            && length <= BLOCK_LEN
            && u64::from(begin) + u64::from(length) <= u64::from(self.piece_size(index))
    }

    /// Length in bytes of a bitfield message payload for this torrent.
    pub fn bitfield_len(&self) -> usize {
        (self.piece_count as usize).div_ceil(8)
    }
}

/// Where a file lies in the concatenated content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileSpan {
    /// Offset of the file's first byte in the content.
    pub offset: u64,
    /// Length of the file.
    pub length: u64,
}

/// One part of a content range that falls in a single file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Index of the file in the torrent's file list.
    pub file: usize,
    /// Offset inside that file.
    pub file_offset: u64,
    /// Offset inside the requested range where this segment starts.
    pub range_offset: usize,
    /// Number of bytes.
    pub len: usize,
}

/// Lays files end to end and returns their spans.
pub fn file_spans(lengths: impl IntoIterator<Item = u64>) -> Vec<FileSpan> {
    let mut offset = 0;
    lengths
        .into_iter()
        .map(|length| {
            let span = FileSpan { offset, length };
            offset += length;
            span
        })
        .collect()
}

/// Splits the content range `offset..offset+len` into per-file segments, in order.
/// Zero-length files never get a segment.
pub fn segments(files: &[FileSpan], offset: u64, len: usize) -> impl Iterator<Item = Segment> + '_ {
    let end = offset + len as u64;
    // Files are sorted by offset, so the first candidate is found by binary search.
    let first = files.partition_point(|f| f.offset + f.length <= offset);
    files[first..]
        .iter()
        .enumerate()
        .take_while(move |(_, f)| f.offset < end)
        .filter_map(move |(i, f)| {
            let start = offset.max(f.offset);
            let stop = end.min(f.offset + f.length);
            (stop > start).then(|| Segment {
                file: first + i,
                file_offset: start - f.offset,
                range_offset: (start - offset) as usize,
                len: (stop - start) as usize,
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn piece_and_block_sizes_table() {
        // (total, piece_len, piece_count, last piece size, blocks in last piece, last block size)
        let table = [
            (1u64, 16384u64, 1u32, 1u32, 1u32, 1u32),
            (16384, 16384, 1, 16384, 1, 16384),
            (16385, 16384, 2, 1, 1, 1),
            (200_003, 32768, 7, 3_395, 1, 3_395),
            (100_000, 65536, 2, 34_464, 3, 1_696),
            (1 << 30, 1 << 18, 4096, 1 << 18, 16, 16384),
        ];
        for (total, piece_len, count, last, blocks, last_block) in table {
            let l = Layout::new(total, piece_len).unwrap();
            assert_eq!(l.piece_count(), count, "{total}/{piece_len}");
            assert_eq!(l.piece_size(count - 1), last, "{total}/{piece_len}");
            assert_eq!(l.block_count(count - 1), blocks, "{total}/{piece_len}");
            assert_eq!(l.block_size(count - 1, blocks - 1), last_block);
            if count > 1 {
                assert_eq!(l.piece_size(0), piece_len as u32);
            }
        }
    }

    #[test]
    fn empty_torrent_has_no_pieces() {
        assert_eq!(Layout::new(0, 16384).unwrap().piece_count(), 0);
    }

    #[test]
    fn zero_or_huge_piece_length_is_error() {
        assert!(Layout::new(10, 0).is_err());
        assert!(Layout::new(10, 1 << 33).is_err());
    }

    #[test]
    fn request_validation() {
        let l = Layout::new(40_000, 32768).unwrap();
        assert!(l.is_valid_request(0, 0, 16384));
        assert!(l.is_valid_request(0, 16384, 16384));
        assert!(!l.is_valid_request(0, 16385, 16384), "runs past the piece");
        assert!(!l.is_valid_request(0, 0, 16385), "larger than a block");
        assert!(!l.is_valid_request(0, 0, 0), "empty");
        assert!(l.is_valid_request(1, 0, 7232));
        assert!(!l.is_valid_request(1, 0, 7233), "runs past the last piece");
        assert!(!l.is_valid_request(2, 0, 1), "no such piece");
        assert!(!l.is_valid_request(0, u32::MAX, 16384), "overflowing begin");
    }

    #[test]
    fn segments_cross_files_and_skip_empty_ones() {
        let files = file_spans([5, 0, 10, 3]);
        let got: Vec<_> = segments(&files, 3, 14).collect();
        assert_eq!(
            got,
            vec![
                Segment {
                    file: 0,
                    file_offset: 3,
                    range_offset: 0,
                    len: 2
                },
                Segment {
                    file: 2,
                    file_offset: 0,
                    range_offset: 2,
                    len: 10
                },
                Segment {
                    file: 3,
                    file_offset: 0,
                    range_offset: 12,
                    len: 2
                },
            ]
        );
        let inside: Vec<_> = segments(&files, 7, 2).collect();
        assert_eq!(
            inside,
            vec![Segment {
                file: 2,
                file_offset: 2,
                range_offset: 0,
                len: 2
            }]
        );
    }

    #[test]
    fn segments_cover_every_byte_exactly_once() {
        let files = file_spans([3, 0, 0, 7, 1, 0, 20]);
        for offset in 0..31u64 {
            for len in 0..=(31 - offset) as usize {
                let segs: Vec<_> = segments(&files, offset, len).collect();
                let mut pos = 0;
                for s in &segs {
                    assert_eq!(s.range_offset, pos);
                    assert!(s.len > 0);
                    assert_eq!(files[s.file].offset + s.file_offset, offset + pos as u64);
                    pos += s.len;
                }
                assert_eq!(pos, len, "offset {offset} len {len}");
            }
        }
    }
}
