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
//! Pages past the old end, or cut by a truncation, that nothing wrote become
//! holes (`content_holes.rs`): extending a file costs no time and no disk.
//!
//! Write-back re-encrypts only what changed: dirty pages, pages past the old end,
//! pages cut by a truncation, and the old and new last pages when the size moved
//! (the final-page flag and the last page's length are authenticated). Every other
//! page keeps its ciphertext, so git can delta successive versions.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::{Mutex, RwLock, RwLockReadGuard};

use self::runs::{each_page, runs, with_cipher_buf, with_run_buf};
use super::cache::{wipe, zero_page, PageBuf, PageCache};
use crate::crypto::aead::IV_LEN;
use crate::crypto::Keychain;
use crate::format::blob::{self, FileCipher, Header, VERSION};
use crate::format::holes::RunMap;
use crate::format::offsets::{self, CIPHER_PAGE, HEADER_LEN, PAGE_OVERHEAD, PAGE_SIZE};
use crate::store::dirfd::timespec;

/// Most pages read, or sealed and written, with one system call (256 KiB: each
/// FUSE thread keeps a buffer that size, so a larger one costs resident memory).
const RUN_PAGES: u64 = 64;
/// Runs shorter than this (128 KiB, one FUSE request) are sealed or opened on
/// the calling thread only. With 8, every file over 32 KiB woke the pool, whose
/// idle workers then spun in `sched_yield` (73 000 calls while untarring 15 000
/// files, taking CPU from the FUSE threads on a 2-core machine).
const PAR_MIN_PAGES: usize = 32;
/// A read missing this many neighbouring pages is streaming through the file:
/// its pages are not cached (the kernel's page cache holds them, and they would
/// only evict the pages that small reads and partial writes come back to).
const STREAM_PAGES: u64 = 32;

/// Length of the sealed run of pages `first..first+n` in a file of `size` bytes.
fn run_len(size: u64, first: u64, n: u64) -> usize {
    ((n - 1) * CIPHER_PAGE + offsets::page_plain_len(size, first + n - 1) + PAGE_OVERHEAD) as usize
}

fn eio() -> io::Error {
    io::Error::from_raw_os_error(libc::EIO)
}

pub struct FileState {
    /// Shared with the batch in flight, if any.
    file: Arc<File>,
    cipher: Option<(Header, Arc<FileCipher>)>,
    disk_size: u64,
    disk_valid: u64,
    pub size: u64,
    dirty: BTreeMap<u64, PageBuf>,
    cache_id: u64,
    /// mtime of the last write not yet written back.
    pub pending_mtime: Option<SystemTime>,
    /// The descriptor was opened for writing.
    pub writable: bool,
    /// The committed tag list pages are checked against (`content_tags.rs`).
    tags: Option<Arc<crate::format::tags::TagList>>,
    /// The blob's format version (`format::blob`): 2 once it has holes.
    version: u8,
    /// The hole runs of the blob on disk (`content_holes.rs`).
    holes: Mutex<holes::Holes>,
    /// Pages punched (PUNCH_HOLE) since the last write-back: they read as
    /// zeros, and become holes at write-back unless written again.
    punched: RunMap,
    /// A large append being sealed and written in the background
    /// (`content_inflight.rs`); every use of the state but `attr` settles it.
    inflight: Option<inflight::InFlight>,
    /// The last settled batch's buffer, for the next one (wiped when it is
    /// refilled or dropped).
    spare: inflight::PlainBuf,
}

/// One open inode of vault `vault` (its id), shared by all its handles.
pub struct OpenFile {
    pub ino: u64,
    pub vault: String,
    /// Reads share it (so the kernel's readahead requests overlap); anything
    /// that changes the file holds it alone.
    pub state: RwLock<FileState>,
    pub handles: Mutex<u32>,
    /// The vault's commit count when a write last recorded this file.
    pub recorded: std::sync::atomic::AtomicU64,
    /// Opened in a version that a checkout has since replaced: reads are
    /// served from the descriptor it opened (the version it opened) or fail
    /// with ESTALE, writes fail with ESTALE (`FsCore::stale_checkouts`).
    pub stale: std::sync::atomic::AtomicBool,
}

impl OpenFile {
    pub fn new(ino: u64, vault: String, state: FileState) -> OpenFile {
        OpenFile {
            ino,
            vault,
            state: RwLock::new(state),
            handles: Mutex::new(0),
            recorded: std::sync::atomic::AtomicU64::new(u64::MAX),
            stale: std::sync::atomic::AtomicBool::new(false),
        }
    }

    pub fn is_stale(&self) -> bool {
        self.stale.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The state for reading, with any batch in flight settled first.
    pub fn settled(&self, cache: &PageCache) -> io::Result<RwLockReadGuard<'_, FileState>> {
        let st = self.state.read();
        if st.inflight.is_none() {
            return Ok(st);
        }
        drop(st);
        let mut st = self.state.write();
        st.settle_append(cache)?;
        Ok(parking_lot::RwLockWriteGuard::downgrade(st))
    }
}

impl FileState {
    /// Open the blob in `file`. A blob whose length maps to no plain size, whose
    /// header is invalid, or whose key generation is unknown is refused (EIO).
    pub fn open(file: File, keys: &Keychain, cache: &PageCache) -> io::Result<FileState> {
        FileState::open_with(file, None, keys, cache)
    }

    /// [`FileState::open`], given the whole blob when it was just read (and
    /// checked against HEAD): its pages are then decrypted from it into the
    /// clean cache, so the reads that follow need no system call. A page that
    /// fails authentication is left out; reading it fails as usual.
    pub fn open_with(
        file: File,
        mut blob: Option<Vec<u8>>,
        keys: &Keychain,
        cache: &PageCache,
    ) -> io::Result<FileState> {
        let len = file.metadata()?.len();
        let size = offsets::plain_len(len).ok_or_else(eio)?;
        if blob.as_ref().is_some_and(|b| b.len() as u64 != len) {
            blob = None;
        }
        let mut version = VERSION;
        let cipher = if len == 0 {
            None
        } else {
            let mut hdr = [0u8; HEADER_LEN as usize];
            match &blob {
                Some(b) => hdr.copy_from_slice(&b[..HEADER_LEN as usize]),
                None => file.read_exact_at(&mut hdr, 0)?,
            }
            let header = Header::decode(&hdr).map_err(|_| eio())?;
            version = hdr[crate::format::blob::VERSION_AT as usize];
            let key = keys.get(header.generation).ok_or_else(eio)?;
            let fc = FileCipher::new(key, &header);
            Some((header, Arc::new(fc)))
        };
        let map = match (&blob, version) {
            (_, VERSION) => RunMap::new(),
            (Some(b), _) => holes::scan_bytes(b, size),
            (None, _) => holes::scan(&file, size)?,
        };
        let st = FileState {
            version,
            holes: Mutex::new(holes::Holes::new(map)),
            punched: RunMap::new(),
            file: Arc::new(file),
            cipher,
            disk_size: size,
            disk_valid: size,
            size,
            dirty: BTreeMap::new(),
            cache_id: cache.new_id(),
            pending_mtime: None,
            writable: true,
            tags: None,
            inflight: None,
            spare: inflight::PlainBuf::default(),
        };
        // Each page is decrypted from the blob straight into its cache page,
        // so the blob stays ciphertext and needs no wipe.
        if let (Some(b), Some((_, fc))) = (&blob, &st.cipher) {
            let count = offsets::page_count(size);
            let map = st.holes.lock().disk.clone();
            for i in (0..count).filter(|i| !map.contains(*i)) {
                let at = offsets::page_blob_offset(i) as usize;
                let slot = &b[at..at + run_len(size, i, 1)];
                let mut page = zero_page();
                let plain_len = slot.len() - PAGE_OVERHEAD as usize;
                let pos = (i, i + 1 == count, map.before(i));
                if fc.open_page_into(pos, slot, &mut page[..plain_len]).is_ok() {
                    cache.put(st.cache_id, i, page);
                }
            }
        }
        Ok(st)
    }

    pub fn file(&self) -> &File {
        &self.file
    }

    /// Swap in another descriptor of the same backing file.
    /// (A batch in flight keeps writing through the old one, which is fine.)
    pub fn replace_file(&mut self, file: File, writable: bool) {
        self.file = Arc::new(file);
        self.writable = writable;
    }

    pub fn is_dirty(&self) -> bool {
        self.inflight.is_some()
            || !self.dirty.is_empty()
            || !self.punched.is_empty()
            || self.size != self.disk_size
            || self.disk_valid != self.disk_size
    }

    /// Decrypt page `i` as stored on disk (zeros past `disk_valid`) into `out`.
    fn load_from_disk(&self, i: u64, out: &mut [u8]) -> io::Result<()> {
        out.fill(0);
        if i * PAGE_SIZE >= self.disk_valid || self.punched.contains(i) || self.disk_hole(i)? {
            return Ok(());
        }
        let mut buf = [0u8; CIPHER_PAGE as usize];
        let buf = &mut buf[..run_len(self.disk_size, i, 1)];
        let res = self.read_run(i, 1, buf).map(|()| {
            let plain = &buf[PAGE_OVERHEAD as usize..];
            let valid = self.valid_len(i, plain.len());
            out[..valid].copy_from_slice(&plain[..valid]);
        });
        wipe(buf);
        res
    }

    /// How many bytes of page `i`'s stored plaintext (`len` bytes) are content.
    fn valid_len(&self, i: u64, len: usize) -> usize {
        (self.disk_valid.saturating_sub(i * PAGE_SIZE)).min(len as u64) as usize
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

    /// Write `data` at `offset` into the cache (extending the file as needed).
    pub fn write(&mut self, offset: u64, data: &[u8], cache: &PageCache) -> io::Result<()> {
        self.settle_append(cache)?;
        self.settle_tags()?;
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
        self.settle_append(cache)?;
        match size {
            0 => self.drop_tags(),
            _ => self.settle_tags()?,
        }
        if size < self.size {
            // The page holding the new end keeps its head; its tail becomes
            // zeros. Read first: if that fails, nothing has changed.
            let head = match size.is_multiple_of(PAGE_SIZE) {
                true => None,
                false => Some(self.page(size / PAGE_SIZE, cache)?),
            };
            let keep = offsets::page_count(size);
            let cut: Vec<u64> = self.dirty.range(keep..).map(|(i, _)| *i).collect();
            for i in cut {
                self.dirty.remove(&i);
                cache.add_dirty(-1);
            }
            self.punched.remove(keep, u64::MAX);
            if let Some(mut page) = head {
                let i = size / PAGE_SIZE;
                if self.dirty.remove(&i).is_some() {
                    cache.add_dirty(-1);
                }
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
        self.settle_append(cache)?;
        if !self.is_dirty() {
            return self.apply_mtime();
        }
        if self.size == 0 {
            self.file.set_len(0)?;
            self.cipher = None;
            self.holes_written(RunMap::new())?;
        } else {
            let map = self.seal_pages(keys, cache)?;
            let want = offsets::blob_len(self.size);
            if self.file.metadata()?.len() != want {
                self.file.set_len(want)?;
            }
            self.holes_written(map)?;
        }
        self.punched = RunMap::new();
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

    /// A fresh header (file id, salt) under the vault's current key.
    fn new_cipher(&mut self, keys: &Keychain) {
        let (generation, key) = keys.current();
        let header = Header::new(generation);
        let fc = FileCipher::new(key, &header);
        self.cipher = Some((header, Arc::new(fc)));
        self.version = VERSION;
    }

    /// Seal what changed, in an order that keeps the blob on disk valid for
    /// `disk_size` until the last steps: first the pages past the old end,
    /// then the pages inside both the old and the new file whose final flag,
    /// length and holes before them do not change, and only then the old and
    /// new last pages and the pages after a hole run that changed; then the
    /// slots that become holes are punched. If anything before the last steps
    /// fails (a full disk), the blob is cut back to its old length: the space
    /// is released and the file reads as before (its dirty pages stay, to be
    /// retried). Returns the hole map the blob has afterwards.
    fn seal_pages(&mut self, keys: &Keychain, cache: &PageCache) -> io::Result<RunMap> {
        if self.cipher.is_none() {
            self.new_cipher(keys);
        }
        // The blob on disk has no header yet (it is empty; or the first
        // write-back of this header failed, e.g. on a full disk, and this is the
        // retry): every page is new, and the header is written after them.
        let new_header = self.disk_size == 0;
        let new_pc = offsets::page_count(self.size);
        let old_pc = if new_header {
            0
        } else {
            offsets::page_count(self.disk_size)
        };
        let mut listed = self.pages_to_seal();
        if !new_header {
            // Holes the map missed right before what is resealed (its count
            // goes into each page's AAD).
            self.learn_before(&listed)?;
        }
        let old_map = if new_header {
            RunMap::new()
        } else {
            self.holes.lock().disk.clone()
        };
        let map = self.plan_holes(new_pc, new_header);
        if !map.is_empty() && !new_header {
            self.mark_holes_version()?;
        }
        listed.retain(|i| !map.contains(*i));
        // Sealed pages whose run of holes before them changed.
        let mut moved = BTreeSet::new();
        for (_, m) in old_map.iter().chain(map.iter()) {
            if m < new_pc && !map.contains(m) && (m >= old_pc || old_map.before(m) != map.before(m))
            {
                moved.insert(m);
            }
        }
        let resized = self.size != self.disk_size;
        let tail = |i: u64| (resized && (i + 1 == old_pc || i + 1 == new_pc)) || moved.contains(&i);
        // Every page past the old end that is not a hole is new: written ones
        // from `dirty`, the last one zeros, sealed in runs and never cached.
        let past_end: Vec<(u64, u64)> = holes::gaps(&map, old_pc, new_pc);
        let early = past_end
            .iter()
            .flat_map(|&(s, e)| s..e)
            .chain(listed.range(..old_pc).copied().filter(|i| !tail(*i)));
        let res = runs(early).try_for_each(|(first, n)| {
            with_run_buf(run_len(self.size, first, n), |buf| {
                self.seal_run(first, n, (old_pc, &map), buf, cache)
            })
        });
        if let Err(e) = res {
            let old_len = offsets::blob_len(if new_header { 0 } else { self.disk_size });
            if self.file.metadata().is_ok_and(|m| m.len() > old_len) {
                let _ = self.file.set_len(old_len);
            }
            return Err(e);
        }
        let late: BTreeSet<u64> = listed
            .range(..old_pc)
            .copied()
            .filter(|i| tail(*i))
            .chain(moved.iter().copied().filter(|i| *i < old_pc))
            .collect();
        for (first, n) in runs(late) {
            with_run_buf(run_len(self.size, first, n), |buf| {
                self.seal_run(first, n, (old_pc, &map), buf, cache)
            })?;
        }
        // Slots of the old blob that become holes.
        let mut punch = Vec::new();
        for (s, e) in map.within(0, old_pc) {
            punch.extend(holes::gaps(&old_map, s, e));
        }
        self.punch_slots(&punch)?;
        if new_header {
            if let Some((h, _)) = &self.cipher {
                let mut bytes = h.encode();
                if !map.is_empty() {
                    bytes[crate::format::blob::VERSION_AT as usize] = blob::VERSION_HOLES;
                }
                self.file.write_all_at(&bytes, 0)?;
                self.version = bytes[crate::format::blob::VERSION_AT as usize];
            }
        }
        Ok(map)
    }

    /// Seal pages `first..first+n` into `buf` (`run_len` bytes; in place, in
    /// parallel when there are many, one `getrandom` for all their IVs) and write
    /// them with one call.
    fn seal_run(
        &self,
        first: u64,
        n: u64,
        (old_pc, map): (u64, &RunMap),
        buf: &mut [u8],
        cache: &PageCache,
    ) -> io::Result<()> {
        let (_, fc) = self.cipher.as_ref().ok_or_else(eio)?;
        let new_pc = offsets::page_count(self.size);
        for (k, slot) in buf.chunks_mut(CIPHER_PAGE as usize).enumerate() {
            let i = first + k as u64;
            let dst = &mut slot[PAGE_OVERHEAD as usize..];
            let plain_len = dst.len();
            if self.dirty.contains_key(&i) {
                // Sealed straight from its buffer, below.
                continue;
            }
            if i < old_pc {
                dst.copy_from_slice(&self.page(i, cache)?[..plain_len]);
            } else {
                dst.fill(0);
            }
        }
        seal_and_write(&self.file, (first, n), buf, true, |i, iv, slot| {
            let pos = (i, i + 1 == new_pc, map.before(i));
            match self.dirty.get(&i) {
                Some(p) => {
                    let plain = &p[..slot.len() - PAGE_OVERHEAD as usize];
                    fc.seal_page_into(pos, iv, plain, slot)
                }
                None => fc.seal_page_in_place(pos, iv, slot),
            }
        })
    }

    pub fn dirty_pages(&self) -> usize {
        self.dirty.len()
    }
}

/// Seal each page `i` of the run `first..first+n` in `buf` with
/// `seal(i, iv, slot)` (one `getrandom` for all the IVs; both cores for a long
/// run when `par`), then write the run to `file` with one call.
fn seal_and_write(
    file: &File,
    (first, n): (u64, u64),
    buf: &mut [u8],
    par: bool,
    seal: impl Fn(u64, &[u8; IV_LEN], &mut [u8]) + Sync + Send,
) -> io::Result<()> {
    let ivs = crate::crypto::random_bytes(n as usize * IV_LEN);
    let seal_one = |k: usize, slot: &mut [u8]| {
        let mut iv = [0u8; IV_LEN];
        iv.copy_from_slice(&ivs[k * IV_LEN..(k + 1) * IV_LEN]);
        seal(first + k as u64, &iv, slot);
        Ok::<(), std::convert::Infallible>(())
    };
    each_page(buf, n, par, seal_one).unwrap_or_else(|never| match never {});
    file.write_all_at(buf, offsets::page_blob_offset(first))
}

#[path = "content_append.rs"]
mod append;
#[path = "content_holes.rs"]
mod holes;
#[path = "content_inflight.rs"]
mod inflight;
#[path = "content_read.rs"]
mod read;
#[path = "content_runs.rs"]
mod runs;
#[path = "content_space.rs"]
mod space;
#[path = "content_tags.rs"]
mod tags;

#[cfg(test)]
#[path = "content_tests.rs"]
mod tests;
