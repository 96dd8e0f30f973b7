//! Streaming appends, sealed straight from the request.
//!
//! A large write at the end of a file that has nothing pending (`dd`, `cp`,
//! `tar` of a big member, a download) does not go through dirty pages: its pages
//! are sealed from the request buffer into a run of ciphertext and written with
//! one `pwrite`, and the blob on disk is valid after every such write. Compared
//! with buffering, this saves a copy of every byte into a page buffer, that
//! buffer's allocation, its wipe, and its trip through the clean LRU.
//!
//! What must be sealed for an append of pages `first..new_pc` at a page-aligned
//! end (`first` = old page count):
//! - page `first - 1`, the former last page: its plaintext is unchanged, but it
//!   was sealed with final `01` and now needs `00` (read from the cache, or from
//!   disk, before anything is written);
//! - the new pages, the last of them with final `01`.
//!
//! The new last page's plaintext goes into the clean cache, so that the next
//! append finds it there instead of decrypting it again.
//!
//! If a write fails half-way (a full disk), the blob on disk may now end in a
//! page sealed as not-final. Nothing is lost: the former last page and the
//! request go into dirty pages like any buffered write, the write-back that
//! follows (size ≠ disk size) reseals the former last page and everything after
//! it, and the error comes back from that write-back (at fsync, close, or when
//! the dirty budget runs out), as it would have for a buffered write.

use std::io;
use std::os::unix::fs::FileExt;
use std::time::SystemTime;

use super::{eio, run_len, with_cipher_buf, FileState, RUN_PAGES};
use crate::crypto::Keychain;
use crate::format::offsets::{self, PAGE_OVERHEAD, PAGE_SIZE};
use crate::fs::cache::{zero_page, PageBuf, PageCache};

/// Appends shorter than this are buffered: small writes are cheaper to batch,
/// and a page-sized append would reseal the former last page every time.
pub const APPEND_THROUGH_MIN: usize = 64 * 1024;

impl FileState {
    /// Write `data` at `offset` by sealing it straight onto the blob, when this
    /// is a large append at a page-aligned end of a file with nothing pending.
    /// Returns `false` (and changes nothing) when it is not; the caller then
    /// uses [`FileState::write`].
    pub fn append_through(
        &mut self,
        offset: u64,
        data: &[u8],
        keys: &Keychain,
        cache: &PageCache,
    ) -> io::Result<bool> {
        self.settle_tags()?;
        if data.len() < APPEND_THROUGH_MIN
            || offset != self.size
            || !offset.is_multiple_of(PAGE_SIZE)
            || self.is_dirty()
            || !self.writable
        {
            return Ok(false);
        }
        let end = offset
            .checked_add(data.len() as u64)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EFBIG))?;
        let first = offsets::page_count(offset);
        // The former last page, resealed as not-final.
        let prev = match first {
            0 => None,
            _ => Some(self.page(first - 1, cache)?),
        };
        let header_needed = self.disk_size == 0;
        if self.cipher.is_none() {
            self.new_cipher(keys);
        }
        match self.seal_append(first, prev.as_ref(), data, end, header_needed) {
            Ok(()) => {
                self.size = end;
                self.disk_size = end;
                self.disk_valid = end;
                let last = offsets::page_count(end) - 1;
                let from = ((last - first) * PAGE_SIZE) as usize;
                let mut page = zero_page();
                page[..data.len() - from].copy_from_slice(&data[from..]);
                cache.put(self.cache_id, last, page);
            }
            Err(e) => {
                tracing::warn!("an append could not be written, keeping it in memory: {e}");
                if let Some(p) = prev {
                    self.dirty.insert(first - 1, p);
                    cache.add_dirty(1);
                }
                self.write(offset, data, cache)?;
            }
        }
        self.pending_mtime = Some(SystemTime::now());
        Ok(true)
    }

    /// Seal and write the former last page `first - 1` (if `prev`) and the
    /// pages of `data` from page `first` on, for a file that ends at `end`;
    /// then the header, if the blob on disk had none.
    fn seal_append(
        &self,
        first: u64,
        prev: Option<&PageBuf>,
        data: &[u8],
        end: u64,
        header_needed: bool,
    ) -> io::Result<()> {
        let start = if prev.is_some() { first - 1 } else { first };
        let new_pc = offsets::page_count(end);
        let mut at = start;
        while at < new_pc {
            let n = (new_pc - at).min(RUN_PAGES);
            // Only ciphertext ever enters the buffer: nothing to wipe.
            with_cipher_buf(run_len(end, at, n), |buf| {
                self.seal_from(at, n, new_pc, (first, prev, data), buf)
            })?;
            at += n;
        }
        if header_needed {
            let (h, _) = self.cipher.as_ref().ok_or_else(eio)?;
            self.file.write_all_at(&h.encode(), 0)?;
        }
        Ok(())
    }

    /// Seal pages `first..first+n` of a file of `new_pc` pages into `buf` and
    /// write it; `src` is what [`append_plain`] takes.
    fn seal_from(
        &self,
        first: u64,
        n: u64,
        new_pc: u64,
        src: (u64, Option<&PageBuf>, &[u8]),
        buf: &mut [u8],
    ) -> io::Result<()> {
        let (_, fc) = self.cipher.as_ref().ok_or_else(eio)?;
        self.seal_and_write(first, n, buf, |i, iv, slot| {
            let len = slot.len() - PAGE_OVERHEAD as usize;
            fc.seal_page_into(i, i + 1 == new_pc, iv, &append_plain(i, src)[..len], slot)
        })
    }
}

/// The plaintext of page `i` of an append of `data` from page `first` on, with
/// `prev` the former last page (`first - 1`), if any.
fn append_plain<'a>(i: u64, (first, prev, data): (u64, Option<&'a PageBuf>, &'a [u8])) -> &'a [u8] {
    match prev {
        Some(p) if i + 1 == first => &p[..],
        _ => {
            let from = ((i - first) * PAGE_SIZE) as usize;
            let to = (from + PAGE_SIZE as usize).min(data.len());
            &data[from..to]
        }
    }
}
