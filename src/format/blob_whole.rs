//! Whole blobs in memory: sealing a file, resealing it, opening it, and
//! listing the pages that fail (layout and hole rule in `format::blob`).
//!
//! Blobs written here have no holes (version 1 pages); blobs read here may
//! (version 2): each hole slot reads as zeros, and the sealed page after a run
//! of them is opened with the run's length, which authenticates the run.

use zeroize::Zeroizing;

use super::{BlobError, FileCipher, Header, VERSION_HOLES};
use crate::crypto::SymKey;
use crate::format::holes::is_hole;
use crate::format::offsets::{self, PAGE_SIZE};

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
/// page whose plaintext and final flag did not change (and that was sealed
/// after no hole), so git can delta successive versions. The result has no
/// holes. `key_of` must yield the key of the old blob's generation.
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
    // Old pages that may be copied: sealed (not holes), after no hole.
    let mut reusable = Vec::with_capacity(old.pages.len());
    let mut after_hole = false;
    for (_, c) in &old.pages {
        let hole = is_hole(c);
        reusable.push(!hole && !after_hole);
        after_hole = hole;
    }
    let mut out = Vec::with_capacity(offsets::blob_len(plain.len() as u64) as usize);
    out.extend_from_slice(&old.header.encode());
    for (i, page) in plain.chunks(PAGE_SIZE as usize).enumerate() {
        let last = i as u64 + 1 == pages;
        match old.pages.get(i) {
            Some((old_plain, old_cipher))
                if reusable[i] && old_plain.as_slice() == page && (old_last == Some(i)) == last =>
            {
                out.extend_from_slice(old_cipher)
            }
            _ => out.extend_from_slice(&fc.seal_page(i as u64, last, page)),
        }
    }
    Ok(out)
}

/// A decrypted blob: its header and each page as (plaintext, ciphertext); a
/// hole's ciphertext is its zero slot.
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

/// Walk the pages of a non-empty blob: `f(i, Ok(Some(plain)) | Ok(None) for a
/// hole | Err)` for each page, holes reported once their run is authenticated
/// (so out of order: a run's holes come right before the page that ends it).
fn walk(
    fc: &FileCipher,
    version: u8,
    blob: &[u8],
    plain: u64,
    mut f: impl FnMut(u64, Result<Option<Zeroizing<Vec<u8>>>, BlobError>) -> bool,
) {
    let count = offsets::page_count(plain);
    let mut run_start = None;
    for i in 0..count {
        let start = offsets::page_blob_offset(i) as usize;
        let len = (offsets::page_plain_len(plain, i) + offsets::PAGE_OVERHEAD) as usize;
        let cipher = blob.get(start..start + len).unwrap_or_default();
        let last = i + 1 == count;
        if version == VERSION_HOLES && !last && is_hole(cipher) {
            run_start.get_or_insert(i);
            continue;
        }
        let from = run_start.take().unwrap_or(i);
        let res = fc.open_page_after(i, last, i - from, cipher);
        for k in from..i {
            let r = match &res {
                Ok(_) => Ok(None),
                Err(_) => Err(BlobError::TagMismatch(i)),
            };
            if !f(k, r) {
                return;
            }
        }
        if !f(i, res.map(Some)) {
            return;
        }
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
    let mut err = None;
    walk(&fc, blob[4], blob, plain, |i, r| match r {
        Ok(p) => {
            let start = offsets::page_blob_offset(i) as usize;
            let n = offsets::page_plain_len(plain, i) as usize;
            let cipher = blob[start..start + n + offsets::PAGE_OVERHEAD as usize].to_vec();
            let p = p.unwrap_or_else(|| Zeroizing::new(vec![0u8; n]));
            pages.push((p, cipher));
            true
        }
        Err(e) => {
            err = Some(e);
            false
        }
    });
    if let Some(e) = err {
        return Err(e);
    }
    Ok(Some(OpenedBlob { header, pages }))
}

/// The pages of a non-empty blob (of `plain` bytes, read with `fc`) that do
/// not authenticate, ascending; a hole counts as failed when the page ending
/// its run fails.
pub fn failed_pages(fc: &FileCipher, version: u8, blob: &[u8], plain: u64) -> Vec<u64> {
    let mut failed = Vec::new();
    walk(fc, version, blob, plain, |i, r| {
        if r.is_err() {
            failed.push(i);
        }
        true
    });
    failed.sort_unstable();
    failed
}
