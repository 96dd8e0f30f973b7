//! Streaming appends, sealed straight from the request, in the background.
//!
//! A large write at the end of a file that has nothing pending (`dd`, `cp`,
//! `tar` of a big member, a download) does not go through dirty pages: its bytes
//! are copied into a batch, the request is answered, and the batch's pages are
//! sealed into a run of ciphertext and written with one `pwrite` on the pool
//! (`content_inflight.rs`) while the writer sends its next request. The blob on
//! disk is valid after every batch. Compared with buffering, this saves a page
//! buffer's allocation, its wipe and its trip through the clean LRU for every
//! page (the batch is one buffer, reused); compared with sealing before the
//! reply, the writer no longer waits for the crypto and the disk.
//!
//! What must be sealed for an append of pages `first..new_pc` at a page-aligned
//! end (`first` = old page count):
//! - page `first - 1`, the former last page: its plaintext is unchanged, but it
//!   was sealed with final `01` and now needs `00` (read from the cache, or from
//!   disk, before the batch starts);
//! - the new pages, the last of them with final `01`.
//!
//! When the batch settles, the new last page's plaintext goes into the clean
//! cache, so that the next append finds it there instead of decrypting it again.
//!
//! If a batch's write fails half-way (a full disk), settling cuts the blob back
//! to its length before the batch and seals the former last page as final
//! again, so the blob on disk is the file before the append and the space the
//! batch took is released. Nothing is lost: settling puts the former last page
//! and the batch into dirty pages like any buffered write, the write-back
//! that follows (size ≠ disk size) reseals the former last page and everything
//! after it, and the error comes back from that write-back (at fsync, close, or
//! when the dirty budget runs out), as it would have for a buffered write.

use std::io;
use std::time::SystemTime;

use super::inflight::{Batch, InFlight};
use super::{eio, FileState};
use crate::crypto::Keychain;
use crate::format::offsets::{self, PAGE_SIZE};
use crate::fs::cache::{PageBuf, PageCache};

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
        self.settle_append(cache)?;
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
        // The blob on disk has no header yet: the batch writes it last.
        let header_needed = self.disk_size == 0;
        if self.cipher.is_none() {
            self.new_cipher(keys);
        }
        let (h, fc) = self.cipher.as_ref().ok_or_else(eio)?;
        let header = header_needed.then(|| h.encode());
        let mut buf = std::mem::take(&mut self.spare);
        buf.fill_from(data);
        let batch = Batch {
            first,
            prev,
            prev_holes: first.checked_sub(1).map_or(0, |p| self.holes_before(p)),
            data: buf,
            end,
            header,
        };
        self.inflight = Some(InFlight::start(batch, self.file.clone(), fc.clone()));
        self.size = end;
        self.pending_mtime = Some(SystemTime::now());
        Ok(true)
    }
}

/// The plaintext of page `i` of an append of `data` from page `first` on, with
/// `prev` the former last page (`first - 1`), if any.
pub(super) fn append_plain<'a>(
    i: u64,
    (first, prev, data): (u64, Option<&'a PageBuf>, &'a [u8]),
) -> &'a [u8] {
    match prev {
        Some(p) if i + 1 == first => &p[..],
        _ => {
            let from = ((i - first) * PAGE_SIZE) as usize;
            let to = (from + PAGE_SIZE as usize).min(data.len());
            &data[from..to]
        }
    }
}
