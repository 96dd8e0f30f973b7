//! One large append per file sealed and written in the background.
//!
//! `append_through` (`content_append.rs`) copies the request into a [`Batch`],
//! starts it on the pool and returns, so the FUSE request is answered before
//! its pages are sealed. At most one batch per file is in flight: the next
//! append, and every other use of the file's state, first waits for it
//! ([`FileState::settle_append`]). A streaming writer's next request therefore
//! travels through the kernel while the daemon seals the one before.
//!
//! While a batch is in flight, `size` is already its end, but `disk_size` and
//! `disk_valid` are still the values before it: the state counts as dirty, so
//! a commit, fsync, close or release writes it back, which settles it first.
//! Reads settle it too (`OpenFile::settled`); only `attr` reads `size` and
//! the pending mtime without waiting.
//!
//! A batch that fails (a full disk, an I/O error) gives its plaintext back at
//! settling, and it goes into dirty pages like a buffered write: nothing is
//! lost, and the error comes back from the write-back that retries it.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use parking_lot::{Condvar, Mutex};

use super::append::append_plain;
use super::{eio, run_len, seal_and_write, with_cipher_buf, FileState, RUN_PAGES};
use crate::format::blob::FileCipher;
use crate::format::offsets::{self, HEADER_LEN, PAGE_OVERHEAD, PAGE_SIZE};
use crate::fs::cache::{wipe, zero_page, PageBuf, PageCache};

/// Plaintext bytes of a batch, wiped before they are refilled or freed.
#[derive(Default)]
pub(super) struct PlainBuf(Vec<u8>);

impl PlainBuf {
    /// Hold a copy of `data` (reusing the allocation when it is big enough).
    pub(super) fn fill_from(&mut self, data: &[u8]) {
        wipe(&mut self.0);
        self.0.clear();
        if self.0.capacity() < data.len() {
            self.0 = Vec::with_capacity(data.len());
        }
        self.0.extend_from_slice(data);
    }
}

impl std::ops::Deref for PlainBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for PlainBuf {
    fn drop(&mut self) {
        wipe(&mut self.0);
    }
}

/// An append of `data` at page `first` (a page-aligned end) that makes the
/// file `end` bytes long; `prev` is the former last page, resealed as
/// not-final; `header` is written after the pages when the blob had none.
pub(super) struct Batch {
    pub first: u64,
    pub prev: Option<PageBuf>,
    /// Hole slots right before `prev` (its AAD keeps the count).
    pub prev_holes: u64,
    pub data: PlainBuf,
    pub end: u64,
    pub header: Option<[u8; HEADER_LEN as usize]>,
}

#[derive(Default)]
struct Slot {
    done: Mutex<Option<(Batch, io::Result<()>)>>,
    cv: Condvar,
}

/// A batch on the pool; [`InFlight::wait`] gives it back with its outcome.
pub(super) struct InFlight(Arc<Slot>);

impl InFlight {
    pub(super) fn start(batch: Batch, file: Arc<File>, fc: Arc<FileCipher>) -> InFlight {
        let slot = Arc::new(Slot::default());
        let theirs = slot.clone();
        rayon::spawn(move || {
            // A panic here would leave the waiter waiting: it becomes EIO.
            let res = catch_unwind(AssertUnwindSafe(|| seal_batch(&file, &fc, &batch)))
                .unwrap_or_else(|_| Err(eio()));
            *theirs.done.lock() = Some((batch, res));
            theirs.cv.notify_all();
        });
        InFlight(slot)
    }

    fn wait(self) -> (Batch, io::Result<()>) {
        let mut done = self.0.done.lock();
        loop {
            if let Some(out) = done.take() {
                return out;
            }
            self.0.cv.wait(&mut done);
        }
    }
}

/// Seal and write the former last page (if any) and the batch's pages, in
/// runs of at most `RUN_PAGES`; then the header, if the blob had none.
fn seal_batch(file: &File, fc: &FileCipher, b: &Batch) -> io::Result<()> {
    let first = b.first;
    let start = if b.prev.is_some() { first - 1 } else { first };
    let new_pc = offsets::page_count(b.end);
    let src = (first, b.prev.as_ref(), &b.data[..]);
    let mut at = start;
    while at < new_pc {
        let n = (new_pc - at).min(RUN_PAGES);
        // Only ciphertext ever enters the buffer: nothing to wipe. On this
        // pool thread only: a rayon `join` here could run another batch on
        // this thread while the buffer is borrowed (the writer's own thread
        // and the other core are busy with the next request anyway).
        with_cipher_buf(run_len(b.end, at, n), |buf| {
            seal_and_write(file, (at, n), buf, false, |i, iv, slot| {
                let len = slot.len() - PAGE_OVERHEAD as usize;
                let plain = &append_plain(i, src)[..len];
                let holes = if i + 1 == first { b.prev_holes } else { 0 };
                fc.seal_page_into((i, i + 1 == new_pc, holes), iv, plain, slot)
            })
        })?;
        at += n;
    }
    if let Some(h) = &b.header {
        file.write_all_at(h, 0)?;
    }
    start_write_out(
        file,
        offsets::page_blob_offset(start),
        offsets::blob_len(b.end),
    );
    Ok(())
}

/// Streaming appends start the write-out of each whole `WRITE_OUT` window of
/// the blob they complete, so the disk works while the writer goes on instead
/// of all at the final fsync or close (the kernel alone would wait for its
/// background threshold, gigabytes on a large machine, or 30 s).
pub(super) const WRITE_OUT: u64 = 4 << 20;

/// Start (not wait for) the write-out of the windows that the bytes
/// `from..to` of the blob completed. Best effort: this is only a hint.
fn start_write_out(file: &File, from: u64, to: u64) {
    let (lo, hi) = write_out_range(from, to);
    if hi > lo {
        use std::os::fd::AsRawFd;
        // SAFETY: a valid descriptor and a plain range; failure only means
        // the kernel writes the pages back later on its own.
        unsafe {
            libc::sync_file_range(
                file.as_raw_fd(),
                lo as libc::off64_t,
                (hi - lo) as libc::off64_t,
                libc::SYNC_FILE_RANGE_WRITE,
            );
        }
    }
}

/// The whole `WRITE_OUT` windows that end inside `from..to` (at or after
/// `from`, at or before `to`): `lo..hi`, empty when none.
pub(super) fn write_out_range(from: u64, to: u64) -> (u64, u64) {
    let hi = to / WRITE_OUT * WRITE_OUT;
    if hi <= from {
        return (0, 0);
    }
    let lo = from / WRITE_OUT * WRITE_OUT;
    (lo, hi)
}

impl FileState {
    /// Wait for the batch in flight, if any, and take in its outcome.
    pub fn settle_append(&mut self, cache: &PageCache) -> io::Result<()> {
        let Some(job) = self.inflight.take() else {
            return Ok(());
        };
        let (mut b, res) = job.wait();
        let offset = b.first * PAGE_SIZE;
        match res {
            Ok(()) => {
                self.disk_size = b.end;
                self.disk_valid = b.end;
                let last = offsets::page_count(b.end) - 1;
                let from = ((last - b.first) * PAGE_SIZE) as usize;
                let mut page = zero_page();
                page[..b.data.len() - from].copy_from_slice(&b.data[from..]);
                cache.put(self.cache_id, last, page);
            }
            Err(e) => {
                tracing::warn!("an append could not be written, keeping it in memory: {e}");
                self.restore_blob(b.first, b.prev.as_ref(), b.prev_holes);
                self.size = offset;
                if let Some(p) = b.prev.take() {
                    self.dirty.insert(b.first - 1, p);
                    cache.add_dirty(1);
                }
                self.write(offset, &b.data, cache)?;
            }
        }
        self.spare = std::mem::take(&mut b.data);
        Ok(())
    }
}

impl FileState {
    /// After a failed batch from page `first` on: cut the blob back to its
    /// length before the batch (releasing what the batch wrote) and seal the
    /// former last page (`prev`) as final again, so the blob on disk is the
    /// file before the append. Best effort: if this fails too, the dirty
    /// pages still hold everything and the next write-back rewrites it.
    fn restore_blob(&self, first: u64, prev: Option<&PageBuf>, holes: u64) {
        let old_len = offsets::blob_len(self.disk_size);
        if self.file.set_len(old_len).is_err() {
            return;
        }
        if let (Some(p), Some((_, fc))) = (prev, &self.cipher) {
            if self.disk_size == 0 {
                return;
            }
            let i = first - 1;
            let iv = crate::crypto::random_array();
            let sealed = fc.seal_page_after(i, true, holes, &iv, &p[..PAGE_SIZE as usize]);
            let _ = self
                .file
                .write_all_at(&sealed, offsets::page_blob_offset(i));
        }
    }
}

impl Drop for FileState {
    /// Never leave a batch writing behind a closed state (the next open of the
    /// file must see it whole); its error, if any, has nobody left to tell.
    fn drop(&mut self) {
        if let Some(job) = self.inflight.take() {
            if let (_, Err(e)) = job.wait() {
                tracing::error!("a background append failed after its file was dropped: {e}");
            }
        }
    }
}
