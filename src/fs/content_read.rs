//! Reads of an open file: dirty page → clean cache → disk (decrypt) → zeros.
//!
//! Pages missing from memory are read a run of neighbours at a time, with one
//! `pread` per run. A short run (a small file, a random read) is decrypted in
//! place and its pages go into the clean cache. A run of at least
//! `STREAM_PAGES` is a reader streaming through the file: its pages are not
//! cached (the kernel's page cache holds them, and they would only evict the
//! pages that small reads and partial writes come back to), and each one is
//! decrypted straight from the ciphertext into the reply, so the plaintext is
//! neither copied once more nor left in a buffer that must be wiped.

use std::io;
use std::os::unix::fs::FileExt;

use super::{eio, run_len, runs, with_cipher_buf, with_run_buf, FileState, STREAM_PAGES};
use crate::format::offsets::{self, CIPHER_PAGE, PAGE_OVERHEAD, PAGE_SIZE};
use crate::fs::cache::{wipe, zero_page, PageCache};

/// Where page `i`'s bytes of a read of `offset..end` go: (range in the page,
/// range in the reply).
fn span(offset: u64, end: u64, i: u64) -> (std::ops::Range<usize>, std::ops::Range<usize>) {
    let start = i * PAGE_SIZE;
    let from = (offset.max(start) - start) as usize;
    let to = (end.min(start + PAGE_SIZE) - start) as usize;
    let at = (start + from as u64 - offset) as usize;
    (from..to, at..at + (to - from))
}

fn failed(i: u64) -> io::Error {
    tracing::warn!("page {i} of an open file failed authentication");
    eio()
}

impl FileState {
    /// The whole content, when every page of it is in the clean cache and
    /// nothing is dirty or in flight (a file just decrypted whole at its open);
    /// else `None`. Not counted as cache hits.
    pub fn cached_whole(&self, cache: &PageCache) -> Option<zeroize::Zeroizing<Vec<u8>>> {
        if self.inflight.is_some() || !self.dirty.is_empty() {
            return None;
        }
        let len = usize::try_from(self.size).ok()?;
        let mut out = zeroize::Zeroizing::new(vec![0u8; len]);
        for i in 0..offsets::page_count(self.size) {
            let (src, dst) = span(0, self.size, i);
            if !cache.peek_to(self.cache_id, i, src, &mut out[dst]) {
                return None;
            }
        }
        Some(out)
    }

    /// (Settled state only: see [`super::OpenFile::settled`].)
    pub fn read(&self, offset: u64, len: u32, cache: &PageCache) -> io::Result<Vec<u8>> {
        if self.inflight.is_some() {
            // `disk_size` would not cover the batch yet: refuse, never guess.
            debug_assert!(false, "read of a file with a batch in flight");
            return Err(eio());
        }
        if offset >= self.size {
            return Ok(Vec::new());
        }
        let end = (offset + len as u64).min(self.size);
        let mut out = vec![0u8; (end - offset) as usize];
        // Copy straight out of the dirty page or the cache; the misses are read
        // and decrypted afterwards, a run of neighbours at a time.
        let mut missing = Vec::new();
        for i in offsets::pages_touched(offset, end - offset) {
            let (src, dst) = span(offset, end, i);
            if let Some(p) = self.dirty.get(&i) {
                out[dst].copy_from_slice(&p[src]);
            } else if !cache.copy_to(self.cache_id, i, src, &mut out[dst])
                && i * PAGE_SIZE < self.disk_valid
                && !self.punched.contains(i)
            {
                // A hole is zeros, as `out` is already: nothing to read.
                match self.disk_hole(i) {
                    Ok(true) => {}
                    Ok(false) => missing.push(i),
                    Err(e) => {
                        wipe(&mut out);
                        return Err(e);
                    }
                }
            }
        }
        for (first, n) in runs(missing) {
            let len = run_len(self.disk_size, first, n);
            let res = if n >= STREAM_PAGES {
                // Only ciphertext enters the buffer: nothing to wipe.
                with_cipher_buf(len, |buf| {
                    self.read_sealed(first, n, buf)?;
                    self.open_into_reply(first, buf, (offset, end), &mut out)
                })
            } else {
                with_run_buf(len, |buf| {
                    self.read_run(first, n, buf)?;
                    self.cache_run(first, buf, (offset, end), &mut out, cache);
                    Ok(())
                })
            };
            if let Err(e) = res {
                // Pages decrypted so far, or a failed one's zeros: never sent.
                wipe(&mut out);
                return Err(e);
            }
        }
        Ok(out)
    }

    /// Read pages `first..first+n` (all below `disk_valid`) of the blob, still
    /// sealed, into `buf` (`run_len` bytes) with one system call; with a tag
    /// list, each page must carry its listed tag.
    pub(super) fn read_sealed(&self, first: u64, n: u64, buf: &mut [u8]) -> io::Result<()> {
        self.file
            .read_exact_at(buf, offsets::page_blob_offset(first))
            .map_err(|e| {
                if e.kind() == io::ErrorKind::UnexpectedEof {
                    eio()
                } else {
                    e
                }
            })?;
        self.check_tags(first, n, buf)
    }

    /// [`FileState::read_sealed`], then decrypt the pages in place: page `k`
    /// of the run is then `buf[k*CIPHER_PAGE..][28..plain_len+28]`.
    /// On this thread only: the kernel keeps two READs of a streaming reader in
    /// flight, and they run side by side under the shared state lock; handing
    /// each one's pages to the pool as well cost about 15 % more time and 12 %
    /// more CPU (a cold 512 MiB read, `bench/results/2026-11-22-session6.md`).
    pub(super) fn read_run(&self, first: u64, n: u64, buf: &mut [u8]) -> io::Result<()> {
        self.read_sealed(first, n, buf)?;
        for (k, page) in buf.chunks_mut(CIPHER_PAGE as usize).enumerate() {
            self.open_slot(first + k as u64, page)?;
        }
        Ok(())
    }

    /// Decrypt page `i`, read sealed into `slot`, in place (a hole: zeros).
    /// A failure may come from a run of zero slots the hole map missed: then
    /// the map learns it and the page is tried once more.
    fn open_slot(&self, i: u64, slot: &mut [u8]) -> io::Result<()> {
        let (_, fc) = self.cipher.as_ref().ok_or_else(eio)?;
        let last = i + 1 == offsets::page_count(self.disk_size);
        if self.disk_hole(i)? {
            slot.fill(0);
            return Ok(());
        }
        if fc
            .open_page_in_place((i, last, self.holes_before(i)), slot)
            .is_ok()
        {
            return Ok(());
        }
        if !self.rediscover(i)? {
            return Err(failed(i));
        }
        self.read_sealed(i, 1, slot)?;
        if self.disk_hole(i)? {
            slot.fill(0);
            return Ok(());
        }
        fc.open_page_in_place((i, last, self.holes_before(i)), slot)
            .map_err(|_| failed(i))
    }

    /// Decrypt page `i` (sealed `ct`) into `out` (a hole: zeros), learning a
    /// missed run of zero slots as [`FileState::open_slot`] does.
    fn open_slot_into(&self, i: u64, ct: &[u8], out: &mut [u8]) -> io::Result<()> {
        let (_, fc) = self.cipher.as_ref().ok_or_else(eio)?;
        let last = i + 1 == offsets::page_count(self.disk_size);
        for retry in [false, true] {
            if self.disk_hole(i)? {
                out.fill(0);
                return Ok(());
            }
            let pos = (i, last, self.holes_before(i));
            if fc.open_page_into(pos, ct, out).is_ok() {
                return Ok(());
            }
            if retry || !self.rediscover(i)? {
                break;
            }
        }
        Err(failed(i))
    }

    /// Copy the decrypted run `buf` (pages from `first` on) into the reply
    /// `out` of the read `offset..end`, and each page into the clean cache.
    fn cache_run(
        &self,
        first: u64,
        buf: &[u8],
        (offset, end): (u64, u64),
        out: &mut [u8],
        cache: &PageCache,
    ) {
        for (k, ct) in buf.chunks(CIPHER_PAGE as usize).enumerate() {
            let i = first + k as u64;
            let plain = &ct[PAGE_OVERHEAD as usize..];
            let (src, dst) = span(offset, end, i);
            let mut page = zero_page();
            let valid = self.valid_len(i, plain.len());
            page[..valid].copy_from_slice(&plain[..valid]);
            out[dst].copy_from_slice(&page[src]);
            cache.put(self.cache_id, i, page);
        }
    }

    /// Decrypt the sealed run `buf` (pages from `first` on) into the reply
    /// `out` of the read `offset..end`: a page wanted whole goes straight in;
    /// any other (the ends of the read, a page past `disk_valid` in part)
    /// through a page buffer that wipes itself. Bytes past `disk_valid` stay
    /// zeros.
    fn open_into_reply(
        &self,
        first: u64,
        buf: &[u8],
        (offset, end): (u64, u64),
        out: &mut [u8],
    ) -> io::Result<()> {
        for (k, ct) in buf.chunks(CIPHER_PAGE as usize).enumerate() {
            let i = first + k as u64;
            let plain_len = ct.len() - PAGE_OVERHEAD as usize;
            let (src, dst) = span(offset, end, i);
            if src == (0..plain_len) && self.valid_len(i, plain_len) == plain_len {
                self.open_slot_into(i, ct, &mut out[dst])?;
                continue;
            }
            let mut page = zero_page();
            self.open_slot_into(i, ct, &mut page[..plain_len])?;
            let valid = self.valid_len(i, plain_len).max(src.start);
            let len = valid.min(src.end) - src.start;
            out[dst.start..dst.start + len].copy_from_slice(&page[src.start..src.start + len]);
        }
        Ok(())
    }
}
