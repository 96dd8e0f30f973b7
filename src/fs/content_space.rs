//! Sizes and space: the maximum file size, the room a growing request needs,
//! resizing that undoes itself on failure, zeroing a range (`fallocate`'s
//! PUNCH_HOLE) and letting go of the state of a removed file.
//!
//! A request that would make the file larger than `MAX_FILE_SIZE` fails with
//! EFBIG, and one whose growth of the blob does not fit in the space left on
//! the backing file system fails with ENOSPC, both before anything changes:
//! the daemon never fills the disk on behalf of a request it then refuses
//! (a 1 TiB `truncate` on a small disk fails at once). Space is counted from
//! the length the blob has on disk, so growth still waiting in dirty pages
//! counts too.

use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;

use super::FileState;
use crate::crypto::Keychain;
use crate::format::offsets::{self, MAX_FILE_SIZE, PAGE_SIZE};
use crate::fs::cache::PageCache;

fn efbig() -> io::Error {
    io::Error::from_raw_os_error(libc::EFBIG)
}

/// Pages zeroed per step of [`FileState::zero_range`] before the dirty
/// budget is looked at (1 MiB).
const ZERO_STEP: u64 = 256;

impl FileState {
    /// May the file become `new_size` bytes long? EFBIG past the maximum,
    /// ENOSPC when its blob's growth does not fit on the backing disk.
    pub fn check_growth(&self, new_size: u64) -> io::Result<()> {
        if new_size > MAX_FILE_SIZE {
            return Err(efbig());
        }
        if new_size <= self.size {
            return Ok(());
        }
        let need = offsets::blob_len(new_size).saturating_sub(offsets::blob_len(self.disk_size));
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
    /// leaves the size as it was, and an extension releases what it had
    /// written (`seal_pages` cuts the blob back).
    pub fn resize(&mut self, size: u64, keys: &Keychain, cache: &PageCache) -> io::Result<()> {
        self.settle_append(cache)?;
        self.check_growth(size)?;
        let (old_size, old_mtime) = (self.size, self.pending_mtime);
        self.truncate(size, cache)?;
        let res = self.write_back(keys, cache);
        if res.is_err() && size > old_size {
            self.size = old_size;
            self.pending_mtime = old_mtime;
        }
        res
    }

    /// Make `offset..offset+len` (cut to the file's size) read as zeros, the
    /// size unchanged (PUNCH_HOLE). Whole pages become zero pages; the dirty
    /// budget is kept by writing back on the way.
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
        let zeros = [0u8; PAGE_SIZE as usize];
        let mut at = offset;
        while at < end {
            let step_end = end.min((at / PAGE_SIZE + ZERO_STEP) * PAGE_SIZE);
            while at < step_end {
                let n = (step_end - at).min(PAGE_SIZE - at % PAGE_SIZE);
                self.write(at, &zeros[..n as usize], cache)?;
                at += n;
            }
            if cache.over_dirty_budget() || self.dirty_pages() > cache.dirty_limit() / 2 {
                self.write_back(keys, cache)?;
            }
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
        self.pending_mtime = None;
    }
}
