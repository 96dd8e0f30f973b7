//! Sizes and space: the maximum file size, the room a growing request needs,
//! resizing that undoes itself on failure, punching a range (`fallocate`'s
//! PUNCH_HOLE: its whole pages become holes) and letting go of the state of a
//! removed file.
//!
//! A request that would make the file larger than `MAX_FILE_SIZE` fails with
//! EFBIG, and one whose growth of the blob does not fit in the space left on
//! the backing file system fails with ENOSPC, both before anything changes:
//! the daemon never fills the disk on behalf of a request it then refuses
//! The gap an extension leaves is a hole and takes no space: a request needs
//! room for the pages it writes, the pages still dirty and the two ends (the
//! old and the new last page), never more than the blob's growth.

use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;

use super::FileState;
use crate::crypto::Keychain;
use crate::format::offsets::{self, CIPHER_PAGE, HEADER_LEN, MAX_FILE_SIZE, PAGE_SIZE};
use crate::fs::cache::PageCache;

fn efbig() -> io::Error {
    io::Error::from_raw_os_error(libc::EFBIG)
}

impl FileState {
    /// May the file become `new_size` bytes long by a request writing
    /// `written` bytes? EFBIG past the maximum, ENOSPC when what its blob
    /// would take more does not fit on the backing disk.
    pub fn check_growth(&self, new_size: u64, written: u64) -> io::Result<()> {
        if new_size > MAX_FILE_SIZE {
            return Err(efbig());
        }
        if new_size <= self.size {
            return Ok(());
        }
        let pages = written.div_ceil(PAGE_SIZE) + 2 + self.dirty.len() as u64;
        let need = offsets::blob_len(new_size)
            .saturating_sub(offsets::blob_len(self.disk_size))
            .min(HEADER_LEN + pages * CIPHER_PAGE);
        // SAFETY: statvfs is plain data, for which all zero bytes are valid.
        let mut vfs: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: a valid descriptor and a statvfs to fill; the result is checked.
        if unsafe { libc::fstatvfs(self.file.as_raw_fd(), &mut vfs) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let free = (vfs.f_bavail as u64).saturating_mul(vfs.f_frsize as u64);
        // A file system that reports no size at all is not checked: the
        // write-back's own ENOSPC is then the only answer.
        if vfs.f_blocks != 0 && need > free {
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        Ok(())
    }

    /// Truncate (or extend) to `size` and write back at once. A failure
    /// leaves the size and the content as they were, and an extension
    /// releases what it had written (`seal_pages` cuts the blob back).
    pub fn resize(&mut self, size: u64, keys: &Keychain, cache: &PageCache) -> io::Result<()> {
        self.settle_append(cache)?;
        self.check_growth(size, 0)?;
        // What the truncation changes in memory, to put back on failure.
        // The blob on disk keeps the old content until the write-back's last
        // steps, which follow the ones that can fail for want of space.
        let saved = (
            self.size,
            self.disk_valid,
            self.pending_mtime,
            self.dirty.clone(),
            self.punched.clone(),
            self.cache_id,
        );
        let res = self
            .truncate(size, cache)
            .and_then(|()| self.write_back(keys, cache));
        if res.is_err() {
            let (size, valid, mtime, dirty, punched, cache_id) = saved;
            cache.add_dirty(dirty.len() as isize - self.dirty.len() as isize);
            self.size = size;
            self.disk_valid = valid;
            self.pending_mtime = mtime;
            self.dirty = dirty;
            self.punched = punched;
            if self.cache_id != cache_id {
                // Clean pages cached since are of the cut file.
                self.cache_id = cache.new_id();
            }
        }
        res
    }

    /// Make `offset..offset+len` (cut to the file's size) read as zeros, the
    /// size unchanged (PUNCH_HOLE). Whole pages become holes at the next
    /// write-back (the last page, zeros); the partial pages at the ends are
    /// written with zeros.
    pub fn zero_range(
        &mut self,
        offset: u64,
        len: u64,
        keys: &Keychain,
        cache: &PageCache,
    ) -> io::Result<()> {
        self.settle_append(cache)?;
        let end = offset.saturating_add(len).min(self.size);
        if offset >= end {
            return Ok(());
        }
        let first = offset.div_ceil(PAGE_SIZE);
        // The last page is never a hole: it is written with zeros.
        let whole_end = (end / PAGE_SIZE).min(offsets::page_count(self.size) - 1);
        if first >= whole_end {
            return self.write_zeros(offset, end, cache);
        }
        self.write_zeros(offset, first * PAGE_SIZE, cache)?;
        self.write_zeros(whole_end * PAGE_SIZE, end, cache)?;
        self.settle_tags()?;
        let gone: Vec<u64> = self
            .dirty
            .range(first..whole_end)
            .map(|(i, _)| *i)
            .collect();
        for i in gone {
            self.dirty.remove(&i);
            cache.add_dirty(-1);
        }
        self.punched.insert(first, whole_end);
        // Clean pages cached may hold what was punched.
        self.forget_cache(cache);
        self.pending_mtime = Some(std::time::SystemTime::now());
        self.write_back(keys, cache)
    }

    /// Write zeros over `from..to` (a few pages at most).
    fn write_zeros(&mut self, mut from: u64, to: u64, cache: &PageCache) -> io::Result<()> {
        let zeros = [0u8; PAGE_SIZE as usize];
        while from < to {
            let n = (to - from).min(PAGE_SIZE - from % PAGE_SIZE);
            self.write(from, &zeros[..n as usize], cache)?;
            from += n;
        }
        Ok(())
    }

    /// Has the backing file been removed (no name left)?
    pub fn unlinked(&self) -> bool {
        self.file.metadata().is_ok_and(|m| m.nlink() == 0)
    }

    /// Forget every change not written back (the file was removed and
    /// nobody holds it open any more: there is nothing left to write to).
    pub fn discard(&mut self, cache: &PageCache) {
        let _ = self.settle_append(cache);
        let dirty = std::mem::take(&mut self.dirty);
        cache.add_dirty(-(dirty.len() as isize));
        self.size = self.disk_size;
        self.disk_valid = self.disk_size;
        self.punched = crate::format::holes::RunMap::new();
        self.pending_mtime = None;
    }
}
