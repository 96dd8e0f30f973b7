//! Content of one open file: reads and writes through the page cache onto its
//! blob (layout in `format::blob`).
//!
//! State kept per open inode (shared by all its handles, under one lock):
//! - `disk_size`: the plain size the blob on disk encodes;
//! - `disk_valid`: how much of that is still the file's content (a truncation
//!   that is not yet written back lowers it; bytes past it read as zeros);
//! - `size`: the file's logical size;
//! - `dirty`: whole-page buffers changed since the last write-back.
//!
//! Write-back re-encrypts only what changed: dirty pages, pages past the old end,
//! pages cut by a truncation, and the old and new last pages when the size moved
//! (the final-page flag and the last page's length are authenticated). Every other
//! page keeps its ciphertext, so git can delta successive versions.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::time::SystemTime;

use parking_lot::Mutex;

use super::cache::{zero_page, PageBuf, PageCache};
use crate::crypto::Keychain;
use crate::format::blob::{FileCipher, Header};
use crate::format::offsets::{self, HEADER_LEN, PAGE_OVERHEAD, PAGE_SIZE};
use crate::store::dirfd::timespec;

const ZEROS: [u8; PAGE_SIZE as usize] = [0; PAGE_SIZE as usize];

fn eio() -> io::Error {
    io::Error::from_raw_os_error(libc::EIO)
}

pub struct FileState {
    file: File,
    cipher: Option<(Header, FileCipher)>,
    disk_size: u64,
    disk_valid: u64,
    pub size: u64,
    dirty: BTreeMap<u64, PageBuf>,
    cache_id: u64,
    /// mtime of the last write not yet written back.
    pub pending_mtime: Option<SystemTime>,
    /// The descriptor was opened for writing.
    pub writable: bool,
}

/// One open inode of vault `vault` (its id), shared by all its handles.
pub struct OpenFile {
    pub ino: u64,
    pub vault: String,
    pub state: Mutex<FileState>,
    pub handles: Mutex<u32>,
    /// The vault's commit count when a write last recorded this file.
    pub recorded: std::sync::atomic::AtomicU64,
}

impl OpenFile {
    pub fn new(ino: u64, vault: String, state: FileState) -> OpenFile {
        OpenFile {
            ino,
            vault,
            state: Mutex::new(state),
            handles: Mutex::new(0),
            recorded: std::sync::atomic::AtomicU64::new(u64::MAX),
        }
    }
}

impl FileState {
    /// Open the blob in `file`. A blob whose length maps to no plain size, whose
    /// header is invalid, or whose key generation is unknown is refused (EIO).
    pub fn open(file: File, keys: &Keychain, cache: &PageCache) -> io::Result<FileState> {
        let len = file.metadata()?.len();
        let size = offsets::plain_len(len).ok_or_else(eio)?;
        let cipher = if len == 0 {
            None
        } else {
            let mut hdr = [0u8; HEADER_LEN as usize];
            file.read_exact_at(&mut hdr, 0)?;
            let header = Header::decode(&hdr).map_err(|_| eio())?;
            let key = keys.get(header.generation).ok_or_else(eio)?;
            let fc = FileCipher::new(key, &header);
            Some((header, fc))
        };
        Ok(FileState {
            file,
            cipher,
            disk_size: size,
            disk_valid: size,
            size,
            dirty: BTreeMap::new(),
            cache_id: cache.new_id(),
            pending_mtime: None,
            writable: true,
        })
    }

    pub fn file(&self) -> &File {
        &self.file
    }

    /// Swap in another descriptor of the same backing file.
    pub fn replace_file(&mut self, file: File, writable: bool) {
        self.file = file;
        self.writable = writable;
    }

    pub fn is_dirty(&self) -> bool {
        !self.dirty.is_empty() || self.size != self.disk_size || self.disk_valid != self.disk_size
    }

    /// Decrypt page `i` as stored on disk (zeros past `disk_valid`) into `out`.
    fn load_from_disk(&self, i: u64, out: &mut [u8]) -> io::Result<()> {
        out.fill(0);
        let start = i * PAGE_SIZE;
        if start >= self.disk_valid {
            return Ok(());
        }
        let (_, fc) = self.cipher.as_ref().ok_or_else(eio)?;
        let plain_len = offsets::page_plain_len(self.disk_size, i);
        let mut buf = vec![0u8; (plain_len + PAGE_OVERHEAD) as usize];
        self.file
            .read_exact_at(&mut buf, offsets::page_blob_offset(i))
            .map_err(|e| {
                if e.kind() == io::ErrorKind::UnexpectedEof {
                    eio()
                } else {
                    e
                }
            })?;
        let last = i + 1 == offsets::page_count(self.disk_size);
        let plain = fc.open_page(i, last, &buf).map_err(|_| {
            tracing::warn!("page {i} of an open file failed authentication");
            eio()
        })?;
        let valid = (self.disk_valid - start).min(plain.len() as u64) as usize;
        out[..valid].copy_from_slice(&plain[..valid]);
        Ok(())
    }

    /// The current content of page `i` (a whole page, zeros past the end).
    fn page(&self, i: u64, cache: &PageCache) -> io::Result<PageBuf> {
        if let Some(p) = self.dirty.get(&i) {
            return Ok(p.clone());
        }
        let mut buf = zero_page();
        if cache.get(self.cache_id, i, &mut buf) {
            return Ok(buf);
        }
        self.load_from_disk(i, &mut buf)?;
        if i * PAGE_SIZE < self.disk_valid {
            cache.put(self.cache_id, i, buf.clone());
        }
        Ok(buf)
    }

    pub fn read(&self, offset: u64, len: u32, cache: &PageCache) -> io::Result<Vec<u8>> {
        if offset >= self.size {
            return Ok(Vec::new());
        }
        let end = (offset + len as u64).min(self.size);
        let mut out = Vec::with_capacity((end - offset) as usize);
        for i in offsets::pages_touched(offset, end - offset) {
            let start = i * PAGE_SIZE;
            let from = (offset.max(start) - start) as usize;
            let to = (end.min(start + PAGE_SIZE) - start) as usize;
            // Copy straight out of the dirty page or the cache; a page loaded
            // from disk moves into the cache after the copy (no clones).
            if let Some(p) = self.dirty.get(&i) {
                out.extend_from_slice(&p[from..to]);
            } else if !cache.copy_into(self.cache_id, i, from..to, &mut out) {
                let mut buf = zero_page();
                self.load_from_disk(i, &mut buf)?;
                out.extend_from_slice(&buf[from..to]);
                if start < self.disk_valid {
                    cache.put(self.cache_id, i, buf);
                }
            }
        }
        Ok(out)
    }

    /// Write `data` at `offset` into the cache (extending the file as needed).
    pub fn write(&mut self, offset: u64, data: &[u8], cache: &PageCache) -> io::Result<()> {
        let end = offset
            .checked_add(data.len() as u64)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EFBIG))?;
        for i in offsets::pages_touched(offset, data.len() as u64) {
            let start = i * PAGE_SIZE;
            let from = offset.max(start);
            let to = end.min(start + PAGE_SIZE);
            let whole = from == start && to == start + PAGE_SIZE;
            let mut page = match self.dirty.remove(&i) {
                Some(p) => {
                    cache.add_dirty(-1);
                    p
                }
                None if whole => {
                    cache.remove(self.cache_id, i);
                    zero_page()
                }
                None => {
                    let p = self.page(i, cache)?;
                    cache.remove(self.cache_id, i);
                    p
                }
            };
            page[(from - start) as usize..(to - start) as usize]
                .copy_from_slice(&data[(from - offset) as usize..(to - offset) as usize]);
            self.dirty.insert(i, page);
            cache.add_dirty(1);
        }
        self.size = self.size.max(end);
        self.pending_mtime = Some(SystemTime::now());
        Ok(())
    }

    /// Change the logical size. Bytes past a new, smaller size are gone for good:
    /// growing again later reads zeros there.
    pub fn truncate(&mut self, size: u64, cache: &PageCache) -> io::Result<()> {
        if size < self.size {
            let keep = offsets::page_count(size);
            let cut: Vec<u64> = self.dirty.range(keep..).map(|(i, _)| *i).collect();
            for i in cut {
                self.dirty.remove(&i);
                cache.add_dirty(-1);
            }
            // The page holding the new end keeps its head; its tail becomes zeros.
            if size % PAGE_SIZE != 0 {
                let i = size / PAGE_SIZE;
                let mut page = match self.dirty.remove(&i) {
                    Some(p) => {
                        cache.add_dirty(-1);
                        p
                    }
                    None => self.page(i, cache)?,
                };
                page[(size % PAGE_SIZE) as usize..].fill(0);
                self.dirty.insert(i, page);
                cache.add_dirty(1);
            }
            self.disk_valid = self.disk_valid.min(size);
            // Cached clean pages may hold bytes past the new end.
            self.cache_id = cache.new_id();
        }
        self.size = size;
        self.pending_mtime = Some(SystemTime::now());
        Ok(())
    }

    /// Forget every cached page (the blob changed underneath).
    pub fn forget_cache(&mut self, cache: &PageCache) {
        self.cache_id = cache.new_id();
    }

    /// Write every change back to the blob. On error the dirty state is kept, so
    /// nothing is lost and a later write-back can retry.
    pub fn write_back(&mut self, keys: &Keychain, cache: &PageCache) -> io::Result<()> {
        if !self.is_dirty() {
            return self.apply_mtime();
        }
        if self.size == 0 {
            self.file.set_len(0)?;
            self.cipher = None;
        } else {
            self.seal_pages(keys, cache)?;
            let want = offsets::blob_len(self.size);
            if self.file.metadata()?.len() != want {
                self.file.set_len(want)?;
            }
        }
        self.disk_size = self.size;
        self.disk_valid = self.size;
        let dirty = std::mem::take(&mut self.dirty);
        cache.add_dirty(-(dirty.len() as isize));
        for (i, p) in dirty {
            cache.put(self.cache_id, i, p);
        }
        self.apply_mtime()
    }

    fn apply_mtime(&mut self) -> io::Result<()> {
        if let Some(t) = self.pending_mtime.take() {
            let ts = [
                libc::timespec {
                    tv_sec: 0,
                    tv_nsec: libc::UTIME_OMIT,
                },
                timespec(t),
            ];
            use std::os::fd::AsRawFd;
            // SAFETY: valid descriptor and two timespecs; the result is checked.
            let rc = unsafe { libc::futimens(self.file.as_raw_fd(), ts.as_ptr()) };
            if rc < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }

    /// The pages whose ciphertext must be (re)written for the current state.
    fn pages_to_seal(&self) -> BTreeSet<u64> {
        let new_pc = offsets::page_count(self.size);
        let old_pc = offsets::page_count(self.disk_size);
        let mut set: BTreeSet<u64> = self.dirty.range(..new_pc).map(|(i, _)| *i).collect();
        if self.size != self.disk_size || self.disk_valid != self.disk_size {
            if new_pc > 0 {
                set.insert(new_pc - 1);
            }
            if old_pc > 0 && old_pc - 1 < new_pc {
                set.insert(old_pc - 1);
            }
            // Pages cut by a truncation that was not written back.
            let first_cut = self.disk_valid / PAGE_SIZE;
            for i in first_cut..old_pc.min(new_pc) {
                set.insert(i);
            }
        }
        set
    }

    fn seal_pages(&mut self, keys: &Keychain, cache: &PageCache) -> io::Result<()> {
        let new_header = self.cipher.is_none();
        if new_header {
            let (generation, key) = keys.current();
            let header = Header::new(generation);
            let fc = FileCipher::new(key, &header);
            self.cipher = Some((header, fc));
        }
        let new_pc = offsets::page_count(self.size);
        let old_pc = if new_header {
            0
        } else {
            offsets::page_count(self.disk_size)
        };
        let listed = self.pages_to_seal();
        let below: Vec<u64> = listed.range(..old_pc).copied().collect();
        // Every page past the old end is new: written ones from `dirty`, the rest
        // zeros, sealed in a stream and never cached.
        let mut sealed: Vec<(u64, Vec<u8>)> = Vec::new();
        for i in below.into_iter().chain(old_pc..new_pc) {
            let plain_len = offsets::page_plain_len(self.size, i) as usize;
            let last = i + 1 == new_pc;
            let (_, fc) = self.cipher.as_ref().ok_or_else(eio)?;
            let ct = if let Some(p) = self.dirty.get(&i) {
                fc.seal_page(i, last, &p[..plain_len])
            } else if i < old_pc {
                fc.seal_page(i, last, &self.page(i, cache)?[..plain_len])
            } else {
                fc.seal_page(i, last, &ZEROS[..plain_len])
            };
            sealed.push((i, ct));
            if sealed.len() >= 256 {
                self.flush_sealed(&mut sealed)?;
            }
        }
        self.flush_sealed(&mut sealed)?;
        if new_header {
            if let Some((h, _)) = &self.cipher {
                self.file.write_all_at(&h.encode(), 0)?;
            }
        }
        Ok(())
    }

    /// Write sealed pages, joining neighbours into one write.
    fn flush_sealed(&self, sealed: &mut Vec<(u64, Vec<u8>)>) -> io::Result<()> {
        let mut run: Vec<u8> = Vec::new();
        let mut run_start: Option<u64> = None;
        let mut next = 0;
        for (i, ct) in sealed.drain(..) {
            if run_start.is_some() && i != next {
                self.file
                    .write_all_at(&run, offsets::page_blob_offset(run_start.unwrap_or(0)))?;
                run.clear();
                run_start = None;
            }
            if run_start.is_none() {
                run_start = Some(i);
            }
            run.extend_from_slice(&ct);
            next = i + 1;
        }
        if let Some(s) = run_start {
            self.file.write_all_at(&run, offsets::page_blob_offset(s))?;
        }
        Ok(())
    }

    pub fn dirty_pages(&self) -> usize {
        self.dirty.len()
    }
}

#[cfg(test)]
#[path = "content_tests.rs"]
mod tests;
