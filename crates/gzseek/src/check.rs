//! The round-trip check of the fuzz target `gzip_index` and the tests: an index must decode
//! the stream it was made from to the same bytes.

use std::io::{BufRead, Read};

use crate::index::SeekIndex;
use crate::indexing::IndexingDecoder;

/// Decodes `stored` as gzip noting an access point about every 4 KiB of output, then decodes
/// every segment of that index again; the two must agree. For the fuzz harness: it panics if
/// they do not, or if a segment of an index fails to decode the stream it was made from.
pub fn check_round_trip(stored: &[u8]) {
    // Bounded: a few bytes may inflate to gigabytes (and then no index is kept).
    round_trip(stored, stored, 4096, 64 << 20);
}

/// Decodes `stored` (read through `input`) noting an access point every `spacing` bytes of
/// output, at most `limit` bytes of it, then decodes every segment of the index again, and
/// panics unless each has its length, no piece is longer than asked, and together they give
/// the same bytes. The first decode's output and the index; `None` if that decode failed or
/// left no index.
pub(crate) fn round_trip(
    input: impl BufRead,
    stored: &[u8],
    spacing: u64,
    limit: u64,
) -> Option<(Vec<u8>, SeekIndex)> {
    const PIECE: usize = 64 * 1024;
    let mut decoder = IndexingDecoder::new(input, Some(spacing));
    let mut first = Vec::new();
    (&mut decoder).take(limit).read_to_end(&mut first).ok()?;
    let index = decoder.into_index()?;
    let mut again = Vec::with_capacity(first.len());
    for segment in index.segments() {
        let start = usize::try_from(segment.start).expect("within the input");
        let end = usize::try_from(segment.end).unwrap_or(usize::MAX).min(stored.len());
        let pieces = index
            .decode(segment, &stored[start..end], PIECE, &mut Vec::new)
            .unwrap_or_else(|e| panic!("segment {} of its own stream: {e}", segment.number));
        assert!(pieces.iter().all(|p| p.len() <= PIECE));
        let before = again.len();
        for piece in pieces {
            again.extend_from_slice(&piece);
        }
        assert_eq!((again.len() - before) as u64, segment.out_len, "{segment:?}");
    }
    assert!(again == first, "the segments decode to other bytes than the first read");
    Some((first, index))
}
