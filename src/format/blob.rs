//! Content blobs: one encrypted file per plaintext file.
//!
//! ```text
//! header (58 bytes):
//!   0   4  magic "PKFS"
//!   4   1  version = 1
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
//! ```
//!
//! An empty file is a zero-byte blob; a header without pages is invalid. The
//! final flag makes truncation at a page boundary fail authentication.

use zeroize::Zeroizing;

use super::offsets::{self, HEADER_LEN, PAGE_SIZE};
use crate::crypto::aead::{Gcm, IV_LEN, TAG_LEN};
use crate::crypto::kdf::hkdf32;
use crate::crypto::{random_array, SymKey};

pub const MAGIC: &[u8; 4] = b"PKFS";
pub const VERSION: u8 = 1;
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
        if bytes[4] != VERSION {
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

    fn aad(&self, index: u64, last: bool) -> [u8; 25] {
        let mut aad = [0u8; 25];
        aad[..16].copy_from_slice(&self.file_id);
        aad[16..24].copy_from_slice(&index.to_be_bytes());
        aad[24] = last as u8;
        aad
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
        // Callers cut pages from the file; an empty or oversized page is a bug
        // that would write a blob no reader accepts.
        assert!(
            !plain.is_empty() && plain.len() as u64 <= PAGE_SIZE,
            "page of {} bytes",
            plain.len()
        );
        self.gcm
            .seal_envelope_with_iv(iv, &self.aad(index, last), plain)
    }

    /// Encrypt page `index` in place: `slot` is `iv | tag | plaintext` on entry
    /// (iv and tag are overwritten), `iv | tag | ciphertext` on return. Same
    /// bytes as [`FileCipher::seal_page_with_iv`], without an allocation or copy.
    pub fn seal_page_in_place(&self, index: u64, last: bool, iv: &[u8; IV_LEN], slot: &mut [u8]) {
        let n = slot.len().saturating_sub(IV_LEN + TAG_LEN);
        assert!(n > 0 && n as u64 <= PAGE_SIZE, "page of {n} bytes");
        let (head, body) = slot.split_at_mut(IV_LEN + TAG_LEN);
        let tag = self.gcm.seal_in_place(iv, &self.aad(index, last), body);
        head[..IV_LEN].copy_from_slice(iv);
        head[IV_LEN..].copy_from_slice(&tag);
    }

    /// Encrypt `plain` as page `index` into `slot` (`plain.len() + 28` bytes):
    /// `iv | tag | ciphertext`, the same bytes as [`FileCipher::seal_page_with_iv`].
    pub fn seal_page_into(
        &self,
        index: u64,
        last: bool,
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
        let tag = self.gcm.seal_into(iv, &self.aad(index, last), plain, body);
        head[..IV_LEN].copy_from_slice(iv);
        head[IV_LEN..].copy_from_slice(&tag);
    }

    /// Authenticate and decrypt page `index` in place: on success `page[28..]`
    /// holds the plaintext; on failure it is zeroed.
    pub fn open_page_in_place(
        &self,
        index: u64,
        last: bool,
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
        self.gcm
            .open_in_place(&iv, &self.aad(index, last), body, &tag)
            .map_err(|_| BlobError::TagMismatch(index))
    }

    /// Authenticate and decrypt page `index` (`iv | tag | ciphertext`) into
    /// `out` (`page.len() - 28` bytes); on failure `out` is zeroed.
    pub fn open_page_into(
        &self,
        index: u64,
        last: bool,
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
        self.gcm
            .open_into(&iv, &self.aad(index, last), body, out, &tag)
            .map_err(|_| BlobError::TagMismatch(index))
    }

    /// Authenticate and decrypt page `index` (`iv | tag | ciphertext`).
    pub fn open_page(
        &self,
        index: u64,
        last: bool,
        page: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, BlobError> {
        if page.len() <= IV_LEN + TAG_LEN {
            return Err(BlobError::TagMismatch(index));
        }
        self.gcm
            .open_envelope(&self.aad(index, last), page)
            .map_err(|_| BlobError::TagMismatch(index))
    }
}

/// Encrypt a whole file into a blob. An empty file is a zero-byte blob.
pub fn seal(vault_key: &SymKey, header: &Header, plain: &[u8]) -> Vec<u8> {
    if plain.is_empty() {
        return Vec::new();
    }
    let fc = FileCipher::new(vault_key, header);
    let pages = offsets::page_count(plain.len() as u64);
    let mut out = Vec::with_capacity(offsets::blob_len(plain.len() as u64) as usize);
    out.extend_from_slice(&header.encode());
    for (i, page) in plain.chunks(PAGE_SIZE as usize).enumerate() {
        let i = i as u64;
        out.extend_from_slice(&fc.seal_page(i, i + 1 == pages, page));
    }
    out
}

/// Rewrite a blob with new content, keeping the header and the ciphertext of every
/// page whose plaintext and final flag did not change, so git can delta successive
/// versions. `key_of` must yield the key of the old blob's generation.
pub fn reseal<'k>(
    key_of: impl Fn(u32) -> Option<&'k SymKey>,
    old: &OpenedBlob,
    plain: &[u8],
) -> Result<Vec<u8>, BlobError> {
    if plain.is_empty() {
        return Ok(Vec::new());
    }
    let generation = old.header.generation;
    let key = key_of(generation).ok_or(BlobError::UnknownGeneration(generation))?;
    let fc = FileCipher::new(key, &old.header);
    let pages = offsets::page_count(plain.len() as u64);
    let old_last = old.pages.len().checked_sub(1);
    let mut out = Vec::with_capacity(offsets::blob_len(plain.len() as u64) as usize);
    out.extend_from_slice(&old.header.encode());
    for (i, page) in plain.chunks(PAGE_SIZE as usize).enumerate() {
        let last = i as u64 + 1 == pages;
        match old.pages.get(i) {
            Some((old_plain, old_cipher))
                if old_plain.as_slice() == page && (old_last == Some(i)) == last =>
            {
                out.extend_from_slice(old_cipher)
            }
            _ => out.extend_from_slice(&fc.seal_page(i as u64, last, page)),
        }
    }
    Ok(out)
}

/// A decrypted blob: its header and each page as (plaintext, ciphertext).
pub struct OpenedBlob {
    pub header: Header,
    pub pages: Vec<(Zeroizing<Vec<u8>>, Vec<u8>)>,
}

impl OpenedBlob {
    pub fn plaintext(&self) -> Zeroizing<Vec<u8>> {
        let len = self.pages.iter().map(|(p, _)| p.len()).sum();
        let mut out = Zeroizing::new(Vec::with_capacity(len));
        for (p, _) in &self.pages {
            out.extend_from_slice(p);
        }
        out
    }
}

/// Decrypt a whole blob. `key_of` maps a key generation to the vault key.
/// `Ok(None)` means a zero-byte blob (empty file without header).
pub fn open<'k>(
    key_of: impl Fn(u32) -> Option<&'k SymKey>,
    blob: &[u8],
) -> Result<Option<OpenedBlob>, BlobError> {
    if blob.is_empty() {
        return Ok(None);
    }
    let plain =
        offsets::plain_len(blob.len() as u64).ok_or(BlobError::BadLength(blob.len() as u64))?;
    let header = Header::decode(blob)?;
    let key = key_of(header.generation).ok_or(BlobError::UnknownGeneration(header.generation))?;
    let fc = FileCipher::new(key, &header);
    let count = offsets::page_count(plain);
    let mut pages = Vec::with_capacity(count as usize);
    for i in 0..count {
        let start = offsets::page_blob_offset(i) as usize;
        let len = (offsets::page_plain_len(plain, i) + offsets::PAGE_OVERHEAD) as usize;
        let cipher = &blob[start..start + len];
        let p = fc.open_page(i, i + 1 == count, cipher)?;
        pages.push((p, cipher.to_vec()));
    }
    Ok(Some(OpenedBlob { header, pages }))
}

#[cfg(test)]
mod tests {
    use super::*;

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
            fc.seal_page_in_place(5, n == 100, &iv, &mut slot);
            assert_eq!(slot, env);
            let mut into = vec![0x55u8; n + IV_LEN + TAG_LEN];
            fc.seal_page_into(5, n == 100, &iv, &plain, &mut into);
            assert_eq!(into, env);
            fc.open_page_in_place(5, n == 100, &mut slot).unwrap();
            assert_eq!(&slot[IV_LEN + TAG_LEN..], &plain[..]);
            let mut bad = env.clone();
            bad[IV_LEN + TAG_LEN] ^= 1;
            assert!(fc.open_page_in_place(5, n == 100, &mut bad).is_err());
            assert!(bad[IV_LEN + TAG_LEN..].iter().all(|b| *b == 0));
            // Into another buffer: the same plaintext; a tampered page, the
            // wrong index or final flag, or a wrong length is an error that
            // leaves zeros, never a panic or unauthenticated bytes.
            let mut out = vec![0x77u8; n];
            fc.open_page_into(5, n == 100, &env, &mut out).unwrap();
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
                assert!(fc.open_page_into(idx, last, page, &mut out).is_err());
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
        bad[4] = 2;
        assert_eq!(open_plain(&bad), Err(BlobError::UnsupportedVersion(2)));
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
