//! Page arithmetic of a content blob. Pure functions, no I/O.
//!
//! A blob of a file with plain size `s` is empty when `s == 0`, otherwise:
//!
//! ```text
//! offset 0             header (HEADER_LEN = 58 bytes)
//! offset 58 + i*4124   page i: iv (12) | tag (16) | ciphertext (4096, last page 1..=4096)
//! ```
//!
//! so `blob_len = 58 + full_pages*4124 + (rem > 0 ? rem + 28 : 0)` where
//! `full_pages = s / 4096` and `rem = s % 4096`. A header without pages is not
//! a valid blob.

use std::ops::Range;

pub const HEADER_LEN: u64 = 58;
pub const PAGE_SIZE: u64 = 4096;
pub const IV_LEN: u64 = 12;
pub const TAG_LEN: u64 = 16;
pub const PAGE_OVERHEAD: u64 = IV_LEN + TAG_LEN;
pub const CIPHER_PAGE: u64 = PAGE_SIZE + PAGE_OVERHEAD;
/// The largest plain file size (8 TiB). Its blob (about 8.05 TiB) fits every
/// backing file system pkfs runs on (ext4 with 4 KiB blocks stops at 16 TiB),
/// and every offset and length computed here fits an `i64` (`off_t`). A write
/// or truncation past it is refused with EFBIG, as a disk file system does.
pub const MAX_FILE_SIZE: u64 = 1 << 43;

/// Size of the blob holding `plain` bytes (0 for an empty file).
pub fn blob_len(plain: u64) -> u64 {
    if plain == 0 {
        return 0;
    }
    let full = plain / PAGE_SIZE;
    let rem = plain % PAGE_SIZE;
    HEADER_LEN + full * CIPHER_PAGE + if rem > 0 { rem + PAGE_OVERHEAD } else { 0 }
}

/// Plain size of a blob of `blob_len` bytes; `None` if no plain size maps to it
/// (truncated header, or a last page too short to hold a byte of data).
pub fn plain_len(blob_len: u64) -> Option<u64> {
    if blob_len == 0 {
        return Some(0);
    }
    let body = blob_len.checked_sub(HEADER_LEN).filter(|b| *b > 0)?;
    let full = body / CIPHER_PAGE;
    let rem = body % CIPHER_PAGE;
    match rem {
        0 => Some(full * PAGE_SIZE),
        r if r > PAGE_OVERHEAD => Some(full * PAGE_SIZE + r - PAGE_OVERHEAD),
        _ => None,
    }
}

/// Number of pages of a file of `plain` bytes.
pub fn page_count(plain: u64) -> u64 {
    plain.div_ceil(PAGE_SIZE)
}

/// Index of the page that holds plain byte `offset`.
pub fn page_of(offset: u64) -> u64 {
    offset / PAGE_SIZE
}

/// Pages touched by the plain byte range `offset .. offset+len` (empty when len is 0).
pub fn pages_touched(offset: u64, len: u64) -> Range<u64> {
    if len == 0 {
        return page_of(offset)..page_of(offset);
    }
    page_of(offset)..page_of(offset + len - 1) + 1
}

/// Offset of page `index` inside the blob.
pub fn page_blob_offset(index: u64) -> u64 {
    HEADER_LEN + index * CIPHER_PAGE
}

/// Plain length of page `index` of a file of `plain` bytes (0 past the end).
pub fn page_plain_len(plain: u64, index: u64) -> u64 {
    let start = index * PAGE_SIZE;
    plain.saturating_sub(start).min(PAGE_SIZE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_round_trip() {
        for plain in [
            0u64,
            1,
            2,
            4095,
            4096,
            4097,
            8191,
            8192,
            8193,
            1 << 20,
            (5 << 30) + 7,
        ] {
            let b = blob_len(plain);
            assert_eq!(plain_len(b), Some(plain), "plain {plain}");
        }
        assert_eq!(blob_len(1), 58 + 29);
        assert_eq!(blob_len(4096), 58 + 4124);
        assert_eq!(blob_len(4097), 58 + 4124 + 29);
        let max = blob_len(MAX_FILE_SIZE);
        assert!(max < 16 << 40 && i64::try_from(max).is_ok());
        assert_eq!(plain_len(max), Some(MAX_FILE_SIZE));
    }

    #[test]
    fn impossible_lengths_are_rejected() {
        for bad in [1, 57, 58, 59, 58 + 28, 58 + 4124 + 1, 58 + 4124 + 28] {
            assert_eq!(plain_len(bad), None, "{bad}");
        }
    }

    #[test]
    fn page_ranges() {
        assert_eq!(pages_touched(0, 0), 0..0);
        assert_eq!(pages_touched(0, 1), 0..1);
        assert_eq!(pages_touched(4095, 2), 0..2);
        assert_eq!(pages_touched(4096, 4096), 1..2);
        assert_eq!(pages_touched(10_000, 1), 2..3);
        assert_eq!(page_blob_offset(2), 58 + 2 * 4124);
        assert_eq!(page_plain_len(5000, 0), 4096);
        assert_eq!(page_plain_len(5000, 1), 904);
        assert_eq!(page_plain_len(5000, 2), 0);
        assert_eq!(page_count(0), 0);
        assert_eq!(page_count(4096), 1);
        assert_eq!(page_count(4097), 2);
    }
}
