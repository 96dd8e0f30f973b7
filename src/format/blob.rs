//! Content blobs: one encrypted file per plaintext file.
//!
//! ```text
//! header (58 bytes):
//!   0   4  magic "PKFS"
//!   4   1  version = 1, or 2 when the blob may hold holes (below)
//!   5   1  flags = 0 (reserved; non-zero is refused)
//!   6   4  key generation, u32 big-endian
//!  10  16  file id (random per file, kept across rewrites)
//!  26  32  salt (random per file)
//! page i (at 58 + i*4124):
//!   0  12  iv (random, fresh each time the page is encrypted)
//!  12  16  GCM tag
//!  28   n  ciphertext, n = 4096 except for the last page (1..=4096)
//! file key = HKDF-SHA256(ikm = vault key of the generation, salt = salt,
//!                        info = "pkfs content v1")
//! AAD of page i = file id || i as u64 big-endian || final (1 byte: 1 on the
//!                 last page of the file, else 0)
//!                 [ || h as u64 big-endian, only when h > 0 (version 2) ]
//! ```
//!
//! An empty file is a zero-byte blob; a header without pages is invalid. The
//! final flag makes truncation at a page boundary fail authentication.
//!
//! Version 2 (holes): identical, except that a page slot whose every byte is
//! zero is a *hole* and reads as 4096 zero bytes. The last page is never a
//! hole. `h` is the number of hole slots right before page i; a page sealed
//! after `h > 0` holes appends `h` to its AAD (with `h = 0` the AAD, and so
//! the page, is version 1's). A reader counts the zero slots before each
//! sealed page and opens it with that count, so zeroing a sealed page changes
//! the count seen by the next sealed page (there always is one: the last page)
//! and that page fails: a hole is only accepted where the writer sealed one.
//! Version 1 blobs have no holes (a zero slot fails). Hole slots cost nothing
//! on a backing file system with sparse files. See `format::holes`.

use zeroize::Zeroizing;

use super::offsets::{HEADER_LEN, PAGE_SIZE};
use crate::crypto::aead::{Gcm, IV_LEN, TAG_LEN};
use crate::crypto::kdf::hkdf32;
use crate::crypto::{random_array, SymKey};

pub const MAGIC: &[u8; 4] = b"PKFS";
pub const VERSION: u8 = 1;
/// The version of a blob that may hold hole slots (same header otherwise).
pub const VERSION_HOLES: u8 = 2;
/// Offset of the version byte in the header.
pub const VERSION_AT: u64 = 4;
pub const CONTENT_INFO: &[u8] = b"pkfs content v1";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobError {
    BadMagic,
    UnsupportedVersion(u8),
    UnknownFlags(u8),
    /// No plain size corresponds to this blob length (truncated).
    BadLength(u64),
    UnknownGeneration(u32),
    /// Authentication of page `i` failed: modified, moved, or wrong key.
    TagMismatch(u64),
}

impl std::fmt::Display for BlobError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BlobError::BadMagic => write!(f, "not a pkfs blob (bad magic)"),
            BlobError::UnsupportedVersion(v) => write!(f, "unsupported blob version {v}"),
            BlobError::UnknownFlags(x) => write!(f, "unknown blob flags {x:#x}"),
            BlobError::BadLength(n) => write!(f, "truncated blob ({n} bytes)"),
            BlobError::UnknownGeneration(g) => write!(f, "unknown key generation {g}"),
            BlobError::TagMismatch(i) => write!(f, "authentication failed on page {i}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub generation: u32,
    pub file_id: [u8; 16],
    pub salt: [u8; 32],
}

impl Header {
    pub fn new(generation: u32) -> Self {
        Header {
            generation,
            file_id: random_array(),
            salt: random_array(),
        }
    }

    pub fn encode(&self) -> [u8; HEADER_LEN as usize] {
        let mut out = [0u8; HEADER_LEN as usize];
        out[0..4].copy_from_slice(MAGIC);
        out[4] = VERSION;
        out[5] = 0;
        out[6..10].copy_from_slice(&self.generation.to_be_bytes());
        out[10..26].copy_from_slice(&self.file_id);
        out[26..58].copy_from_slice(&self.salt);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Header, BlobError> {
        if bytes.len() < HEADER_LEN as usize {
            return Err(BlobError::BadLength(bytes.len() as u64));
        }
        if &bytes[0..4] != MAGIC {
            return Err(BlobError::BadMagic);
        }
        if bytes[4] != VERSION && bytes[4] != VERSION_HOLES {
            return Err(BlobError::UnsupportedVersion(bytes[4]));
        }
        if bytes[5] != 0 {
            return Err(BlobError::UnknownFlags(bytes[5]));
        }
        let mut generation = [0u8; 4];
        generation.copy_from_slice(&bytes[6..10]);
        let mut file_id = [0u8; 16];
        file_id.copy_from_slice(&bytes[10..26]);
        let mut salt = [0u8; 32];
        salt.copy_from_slice(&bytes[26..58]);
        Ok(Header {
            generation: u32::from_be_bytes(generation),
            file_id,
            salt,
        })
    }
}

/// The per-file cipher: the file key is derived once here, never per page.
pub struct FileCipher {
    gcm: Gcm,
    file_id: [u8; 16],
}

impl FileCipher {
    pub fn new(vault_key: &SymKey, header: &Header) -> Self {
        let file_key = hkdf32(vault_key, Some(&header.salt), CONTENT_INFO);
        FileCipher {
            gcm: Gcm::new(&file_key),
            file_id: header.file_id,
        }
    }

    /// The AAD of page `index` sealed after `holes` hole slots (its first 25
    /// bytes when `holes == 0`, as in version 1; all 33 otherwise).
    fn aad(&self, index: u64, last: bool, holes: u64) -> ([u8; 33], usize) {
        let mut aad = [0u8; 33];
        aad[..16].copy_from_slice(&self.file_id);
        aad[16..24].copy_from_slice(&index.to_be_bytes());
        aad[24] = last as u8;
        if holes == 0 {
            return (aad, 25);
        }
        aad[25..].copy_from_slice(&holes.to_be_bytes());
        (aad, 33)
    }

    /// Encrypt page `index` with a fresh random IV: `iv | tag | ciphertext`.
    /// `last` says whether it is the file's final page.
    pub fn seal_page(&self, index: u64, last: bool, plain: &[u8]) -> Vec<u8> {
        self.seal_page_with_iv(index, last, &random_array(), plain)
    }

    /// Encrypt with a given IV. Only test vectors may pass a fixed IV.
    pub fn seal_page_with_iv(
        &self,
        index: u64,
        last: bool,
        iv: &[u8; IV_LEN],
        plain: &[u8],
    ) -> Vec<u8> {
        self.seal_page_after(index, last, 0, iv, plain)
    }

    /// [`FileCipher::seal_page_with_iv`] for a page right after `holes` hole
    /// slots (version 2).
    pub fn seal_page_after(
        &self,
        index: u64,
        last: bool,
        holes: u64,
        iv: &[u8; IV_LEN],
        plain: &[u8],
    ) -> Vec<u8> {
        // Callers cut pages from the file; an empty or oversized page is a bug
        // that would write a blob no reader accepts.
        assert!(
            !plain.is_empty() && plain.len() as u64 <= PAGE_SIZE,
            "page of {} bytes",
            plain.len()
        );
        let (aad, n) = self.aad(index, last, holes);
        self.gcm.seal_envelope_with_iv(iv, &aad[..n], plain)
    }

    /// Encrypt page `index` in place: `slot` is `iv | tag | plaintext` on entry
    /// (iv and tag are overwritten), `iv | tag | ciphertext` on return. Same
    /// bytes as [`FileCipher::seal_page_with_iv`], without an allocation or copy.
    /// `holes`: hole slots right before the page (0 in version 1).
    pub fn seal_page_in_place(
        &self,
        (index, last, holes): (u64, bool, u64),
        iv: &[u8; IV_LEN],
        slot: &mut [u8],
    ) {
        let n = slot.len().saturating_sub(IV_LEN + TAG_LEN);
        assert!(n > 0 && n as u64 <= PAGE_SIZE, "page of {n} bytes");
        let (head, body) = slot.split_at_mut(IV_LEN + TAG_LEN);
        let (aad, an) = self.aad(index, last, holes);
        let tag = self.gcm.seal_in_place(iv, &aad[..an], body);
        head[..IV_LEN].copy_from_slice(iv);
        head[IV_LEN..].copy_from_slice(&tag);
    }

    /// Encrypt `plain` as page `index` into `slot` (`plain.len() + 28` bytes):
    /// `iv | tag | ciphertext`, the same bytes as [`FileCipher::seal_page_with_iv`].
    pub fn seal_page_into(
        &self,
        (index, last, holes): (u64, bool, u64),
        iv: &[u8; IV_LEN],
        plain: &[u8],
        slot: &mut [u8],
    ) {
        assert!(
            !plain.is_empty() && plain.len() as u64 <= PAGE_SIZE,
            "page of {} bytes",
            plain.len()
        );
        let (head, body) = slot.split_at_mut(IV_LEN + TAG_LEN);
        let (aad, n) = self.aad(index, last, holes);
        let tag = self.gcm.seal_into(iv, &aad[..n], plain, body);
        head[..IV_LEN].copy_from_slice(iv);
        head[IV_LEN..].copy_from_slice(&tag);
    }

    /// Authenticate and decrypt page `index` in place: on success `page[28..]`
    /// holds the plaintext; on failure it is zeroed.
    pub fn open_page_in_place(
        &self,
        (index, last, holes): (u64, bool, u64),
        page: &mut [u8],
    ) -> Result<(), BlobError> {
        if page.len() <= IV_LEN + TAG_LEN {
            return Err(BlobError::TagMismatch(index));
        }
        let (head, body) = page.split_at_mut(IV_LEN + TAG_LEN);
        let iv: [u8; IV_LEN] = head[..IV_LEN]
            .try_into()
            .map_err(|_| BlobError::TagMismatch(index))?;
        let tag: [u8; TAG_LEN] = head[IV_LEN..]
            .try_into()
            .map_err(|_| BlobError::TagMismatch(index))?;
        let (aad, n) = self.aad(index, last, holes);
        self.gcm
            .open_in_place(&iv, &aad[..n], body, &tag)
            .map_err(|_| BlobError::TagMismatch(index))
    }

    /// Authenticate and decrypt page `index` (`iv | tag | ciphertext`) into
    /// `out` (`page.len() - 28` bytes); on failure `out` is zeroed.
    pub fn open_page_into(
        &self,
        (index, last, holes): (u64, bool, u64),
        page: &[u8],
        out: &mut [u8],
    ) -> Result<(), BlobError> {
        let fail = |out: &mut [u8]| {
            out.fill(0);
            BlobError::TagMismatch(index)
        };
        if page.len() <= IV_LEN + TAG_LEN {
            return Err(fail(out));
        }
        let (head, body) = page.split_at(IV_LEN + TAG_LEN);
        let (Ok(iv), Ok(tag)) = (
            <[u8; IV_LEN]>::try_from(&head[..IV_LEN]),
            <[u8; TAG_LEN]>::try_from(&head[IV_LEN..]),
        ) else {
            return Err(fail(out));
        };
        let (aad, n) = self.aad(index, last, holes);
        self.gcm
            .open_into(&iv, &aad[..n], body, out, &tag)
            .map_err(|_| BlobError::TagMismatch(index))
    }

    /// Authenticate and decrypt page `index` (`iv | tag | ciphertext`).
    pub fn open_page(
        &self,
        index: u64,
        last: bool,
        page: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, BlobError> {
        self.open_page_after(index, last, 0, page)
    }

    /// [`FileCipher::open_page`] for a page right after `holes` hole slots.
    pub fn open_page_after(
        &self,
        index: u64,
        last: bool,
        holes: u64,
        page: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, BlobError> {
        if page.len() <= IV_LEN + TAG_LEN {
            return Err(BlobError::TagMismatch(index));
        }
        let (aad, n) = self.aad(index, last, holes);
        self.gcm
            .open_envelope(&aad[..n], page)
            .map_err(|_| BlobError::TagMismatch(index))
    }
}

#[path = "blob_whole.rs"]
mod whole;
pub use whole::{failed_pages, open, reseal, seal, OpenedBlob};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::offsets;

    fn key() -> SymKey {
        SymKey::from_bytes([9; 32])
    }

    fn open_plain(blob: &[u8]) -> Result<Vec<u8>, BlobError> {
        let k = key();
        let o = open(|g| (g == 3).then_some(&k), blob)?;
        Ok(o.map(|o| o.plaintext().to_vec()).unwrap_or_default())
    }

    #[test]
    fn in_place_matches_envelope() {
        let fc = FileCipher::new(&key(), &Header::new(3));
        for n in [1usize, 100, 4096] {
            let plain: Vec<u8> = (0..n).map(|i| (i % 253) as u8).collect();
            let iv = [4u8; IV_LEN];
            let env = fc.seal_page_with_iv(5, n == 100, &iv, &plain);
            let mut slot = vec![0xAAu8; n + IV_LEN + TAG_LEN];
            slot[IV_LEN + TAG_LEN..].copy_from_slice(&plain);
            fc.seal_page_in_place((5, n == 100, 0), &iv, &mut slot);
            assert_eq!(slot, env);
            let mut into = vec![0x55u8; n + IV_LEN + TAG_LEN];
            fc.seal_page_into((5, n == 100, 0), &iv, &plain, &mut into);
            assert_eq!(into, env);
            fc.open_page_in_place((5, n == 100, 0), &mut slot).unwrap();
            assert_eq!(&slot[IV_LEN + TAG_LEN..], &plain[..]);
            let mut bad = env.clone();
            bad[IV_LEN + TAG_LEN] ^= 1;
            assert!(fc.open_page_in_place((5, n == 100, 0), &mut bad).is_err());
            assert!(bad[IV_LEN + TAG_LEN..].iter().all(|b| *b == 0));
            // Into another buffer: the same plaintext; a tampered page, the
            // wrong index or final flag, or a wrong length is an error that
            // leaves zeros, never a panic or unauthenticated bytes.
            let mut out = vec![0x77u8; n];
            fc.open_page_into((5, n == 100, 0), &env, &mut out).unwrap();
            assert_eq!(out, plain);
            let mut tampered = env.clone();
            tampered[IV_LEN + TAG_LEN] ^= 1;
            for (idx, last, page, len) in [
                (5, n == 100, &tampered[..], n),
                (6, n == 100, &env[..], n),
                (5, n != 100, &env[..], n),
                (5, n == 100, &env[..], n + 1),
                (5, n == 100, &env[..IV_LEN + TAG_LEN], n),
            ] {
                let mut out = vec![0x77u8; len];
                assert!(fc.open_page_into((idx, last, 0), page, &mut out).is_err());
                assert!(out.iter().all(|b| *b == 0), "n {n}, index {idx}, len {len}");
            }
        }
    }

    #[test]
    fn round_trip_various_sizes() {
        for n in [0usize, 1, 4095, 4096, 4097, 3 * 4096 + 17] {
            let plain: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
            let blob = seal(&key(), &Header::new(3), &plain);
            assert_eq!(blob.len() as u64, offsets::blob_len(n as u64));
            assert_eq!(open_plain(&blob).unwrap(), plain);
        }
        assert_eq!(open_plain(&[]).unwrap(), Vec::<u8>::new());
    }

    #[test]
    fn every_flipped_bit_is_detected() {
        let blob = seal(&key(), &Header::new(3), &[5u8; 5000]);
        for i in 0..blob.len() {
            let mut bad = blob.clone();
            bad[i] ^= 0x10;
            assert!(open_plain(&bad).is_err(), "flip at byte {i} went unnoticed");
        }
    }

    #[test]
    fn swapped_pages_and_truncation_are_detected() {
        let plain: Vec<u8> = (0..8192).map(|i| (i / 4096) as u8).collect();
        let blob = seal(&key(), &Header::new(3), &plain);
        let p0 = 58..58 + 4124;
        let p1 = 58 + 4124..58 + 2 * 4124;
        let mut swapped = blob[..58].to_vec();
        swapped.extend_from_slice(&blob[p1]);
        swapped.extend_from_slice(&blob[p0]);
        assert_eq!(open_plain(&swapped), Err(BlobError::TagMismatch(0)));
        // Mid-page truncation: either no plain size fits, or the last page fails.
        assert_eq!(open_plain(&blob[..78]), Err(BlobError::BadLength(78)));
        assert_eq!(open_plain(&blob[..100]), Err(BlobError::TagMismatch(0)));
        assert!(open_plain(&blob[..blob.len() - 1]).is_err());
        // Truncation at a page boundary: the new last page was not sealed as final.
        assert_eq!(
            open_plain(&blob[..58 + 4124]),
            Err(BlobError::TagMismatch(0))
        );
        // A header alone is not a valid blob.
        assert_eq!(open_plain(&blob[..58]), Err(BlobError::BadLength(58)));
    }

    #[test]
    fn appending_a_page_is_detected() {
        let blob = seal(&key(), &Header::new(3), &[1u8; 4096]);
        let mut longer = blob.clone();
        longer.extend_from_slice(&blob[58..]);
        assert!(open_plain(&longer).is_err());
    }

    #[test]
    fn pages_cannot_move_between_files() {
        let a = seal(&key(), &Header::new(3), &[1u8; 100]);
        let b = seal(&key(), &Header::new(3), &[1u8; 100]);
        let mut mixed = b[..58].to_vec();
        mixed.extend_from_slice(&a[58..]);
        assert!(open_plain(&mixed).is_err());
    }

    #[test]
    fn unknown_generation_and_header_errors() {
        let blob = seal(&key(), &Header::new(4), &[1u8; 10]);
        assert_eq!(open_plain(&blob), Err(BlobError::UnknownGeneration(4)));
        let mut bad = blob.clone();
        bad[0] = b'X';
        assert_eq!(open_plain(&bad), Err(BlobError::BadMagic));
        let mut bad = blob.clone();
        bad[4] = 3;
        assert_eq!(open_plain(&bad), Err(BlobError::UnsupportedVersion(3)));
    }

    #[test]
    fn reseal_keeps_unchanged_pages() {
        let k = key();
        let key_of = |g: u32| (g == 3).then_some(&k);
        let mut plain = vec![7u8; 3 * 4096];
        let blob = seal(&k, &Header::new(3), &plain);
        let old = open(key_of, &blob).unwrap().unwrap();
        plain[5000] = 8;
        let new = reseal(key_of, &old, &plain).unwrap();
        assert_eq!(
            new[..58 + 4124],
            blob[..58 + 4124],
            "header and page 0 kept"
        );
        assert_ne!(
            new[58 + 4124..58 + 2 * 4124],
            blob[58 + 4124..58 + 2 * 4124]
        );
        assert_eq!(new[58 + 2 * 4124..], blob[58 + 2 * 4124..], "page 2 kept");
        assert_eq!(open_plain(&new).unwrap(), plain);
        // Growing the file re-seals the old final page, which is no longer final.
        let old = open(key_of, &new).unwrap().unwrap();
        plain.extend_from_slice(&[9u8; 10]);
        let grown = reseal(key_of, &old, &plain).unwrap();
        assert_eq!(grown[..58 + 2 * 4124], new[..58 + 2 * 4124]);
        assert_ne!(grown[58 + 2 * 4124..58 + 3 * 4124], new[58 + 2 * 4124..]);
        assert_eq!(open_plain(&grown).unwrap(), plain);
        // Another generation's key is refused rather than used.
        assert_eq!(
            reseal(|g| (g == 4).then_some(&k), &old, &plain),
            Err(BlobError::UnknownGeneration(3))
        );
        assert_eq!(reseal(key_of, &old, &[]), Ok(Vec::new()));
    }
}
