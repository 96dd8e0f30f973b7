//! The decrypted page cache, shared by every open file of the mount.
//!
//! Clean pages live in one LRU (the `lru` crate) keyed by (file cache id, page
//! index). Dirty pages belong to their open file (see `content`), which writes
//! them back on fsync, flush/release, commit, and when the dirty budget runs out
//! (that is the dirty pages' eviction). The budget: 3/4 of `--cache-size` for
//! clean pages and 1/4 for dirty ones, so the decrypted data held in memory never
//! exceeds the cache size (plus one page per thread in flight). Every buffer is
//! zeroed when it is dropped (one `memset`, see [`wipe`]).

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use lru::LruCache;
use parking_lot::Mutex;

use crate::format::offsets::PAGE_SIZE;

/// Zero `buf` with one `memset` the optimiser cannot drop: the buffer is handed
/// to `black_box` afterwards. (`zeroize` writes byte by byte through volatile
/// stores: on a 4 KiB page that cost as much as decrypting it, and evicting
/// pages from the cache was the daemon's top symbol in `perf`.)
pub fn wipe(buf: &mut [u8]) {
    buf.fill(0);
    std::sync::atomic::compiler_fence(Ordering::SeqCst);
    std::hint::black_box(buf);
}

/// A whole decrypted page, zeroed when dropped.
pub struct PageBuf(Box<[u8]>);

impl std::ops::Deref for PageBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl std::ops::DerefMut for PageBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.0
    }
}

impl Clone for PageBuf {
    fn clone(&self) -> Self {
        let mut p = zero_page();
        p.copy_from_slice(&self.0);
        p
    }
}

impl Drop for PageBuf {
    fn drop(&mut self) {
        wipe(&mut self.0);
        if self.0.len() == PAGE_SIZE as usize {
            let b = std::mem::take(&mut self.0);
            let mut spare = SPARE.lock().unwrap_or_else(|e| e.into_inner());
            if spare.len() < SPARE_MAX {
                spare.push(b);
            }
        }
    }
}

/// Wiped page buffers kept for reuse: a streaming write or read frees and
/// allocates a page per 4 KiB, and `malloc`/`free` of 4 KiB chunks showed in
/// `perf`. At most `SPARE_MAX` pages (1 MiB); every one is all zeros.
static SPARE: std::sync::Mutex<Vec<Box<[u8]>>> = std::sync::Mutex::new(Vec::new());
const SPARE_MAX: usize = 256;

/// Make every thread allocate from one `malloc` arena.
///
/// Pages are allocated by one FUSE thread and freed by another (eviction,
/// write-back), and glibc gives each thread its own arena: the freed pages sat
/// in arenas their next user did not draw from, so the daemon's peak RSS while
/// streaming 2 GiB was about 2.2× the cache (145 MiB for a 64 MiB cache). With
/// one arena it stays at the cache plus a few MiB, and the spare-page pool
/// above keeps the allocator off the hot path. Call it before threads start.
pub fn one_malloc_arena() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets a tunable; called before the daemon's threads.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// A page of zeros.
pub fn zero_page() -> PageBuf {
    let spare = SPARE.lock().unwrap_or_else(|e| e.into_inner()).pop();
    PageBuf(spare.unwrap_or_else(|| vec![0u8; PAGE_SIZE as usize].into_boxed_slice()))
}

pub struct PageCache {
    clean: Mutex<LruCache<(u64, u64), PageBuf>>,
    dirty_pages: AtomicUsize,
    dirty_limit: usize,
    next_id: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
}

#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct CacheStats {
    pub capacity_bytes: u64,
    pub clean_bytes: u64,
    pub dirty_bytes: u64,
    pub hits: u64,
    pub misses: u64,
}

impl PageCache {
    /// A cache holding at most `bytes` of decrypted data (at least 8 pages).
    pub fn new(bytes: u64) -> PageCache {
        let pages = (bytes / PAGE_SIZE).max(8) as usize;
        let dirty_limit = (pages / 4).max(2);
        let clean = NonZeroUsize::new(pages - dirty_limit).unwrap_or(NonZeroUsize::MIN);
        PageCache {
            clean: Mutex::new(LruCache::new(clean)),
            dirty_pages: AtomicUsize::new(0),
            dirty_limit,
            next_id: AtomicU64::new(1),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// A fresh cache id: pages cached under an old id are never seen again.
    pub fn new_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Run `f` on cached page `(id, page)`. A counted lookup makes the page
    /// recent and counts the hit or the miss; an uncounted one does neither.
    fn lookup(&self, id: u64, page: u64, counted: bool, f: impl FnOnce(&[u8])) -> bool {
        let mut c = self.clean.lock();
        let found = if counted {
            c.get(&(id, page))
        } else {
            c.peek(&(id, page))
        };
        let hit = match found {
            Some(p) => {
                f(&p[..]);
                true
            }
            None => false,
        };
        if counted {
            let counter = if hit { &self.hits } else { &self.misses };
            counter.fetch_add(1, Ordering::Relaxed);
        }
        hit
    }

    /// Copy the start of a cached page into `out`; false on a miss.
    pub fn get(&self, id: u64, page: u64, out: &mut [u8]) -> bool {
        self.lookup(id, page, true, |p| out.copy_from_slice(&p[..out.len()]))
    }

    /// Copy bytes `range` of a cached page into `out` (same length); false on a miss.
    pub fn copy_to(
        &self,
        id: u64,
        page: u64,
        range: std::ops::Range<usize>,
        out: &mut [u8],
    ) -> bool {
        self.lookup(id, page, true, |p| out.copy_from_slice(&p[range]))
    }

    /// [`PageCache::copy_to`] that neither counts a hit or miss nor makes the
    /// page recent.
    pub fn peek_to(
        &self,
        id: u64,
        page: u64,
        range: std::ops::Range<usize>,
        out: &mut [u8],
    ) -> bool {
        self.lookup(id, page, false, |p| out.copy_from_slice(&p[range]))
    }

    pub fn put(&self, id: u64, page: u64, data: PageBuf) {
        self.clean.lock().put((id, page), data);
    }

    pub fn remove(&self, id: u64, page: u64) -> Option<PageBuf> {
        self.clean.lock().pop(&(id, page))
    }

    /// Account for pages becoming dirty (positive) or clean (negative).
    pub fn add_dirty(&self, delta: isize) {
        if delta >= 0 {
            self.dirty_pages
                .fetch_add(delta as usize, Ordering::Relaxed);
        } else {
            self.dirty_pages
                .fetch_sub(delta.unsigned_abs(), Ordering::Relaxed);
        }
    }

    /// True when dirty pages exceed their budget and the writer must write back.
    pub fn over_dirty_budget(&self) -> bool {
        self.dirty_pages.load(Ordering::Relaxed) > self.dirty_limit
    }

    pub fn dirty_limit(&self) -> usize {
        self.dirty_limit
    }

    pub fn stats(&self) -> CacheStats {
        let c = self.clean.lock();
        let pages = c.cap().get() + self.dirty_limit;
        CacheStats {
            capacity_bytes: pages as u64 * PAGE_SIZE,
            clean_bytes: c.len() as u64 * PAGE_SIZE,
            dirty_bytes: self.dirty_pages.load(Ordering::Relaxed) as u64 * PAGE_SIZE,
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_pages_are_bounded_and_ids_isolate_files() {
        let c = PageCache::new(16 * PAGE_SIZE);
        for i in 0..100 {
            c.put(1, i, zero_page());
        }
        assert!(c.stats().clean_bytes <= 12 * PAGE_SIZE);
        let mut out = vec![1u8; 10];
        assert!(c.get(1, 99, &mut out));
        assert_eq!(out, vec![0u8; 10]);
        assert!(!c.get(2, 99, &mut out), "another id sees nothing");
        assert!(!c.get(1, 0, &mut out), "oldest page was evicted");
        c.add_dirty(5);
        assert!(c.over_dirty_budget());
        c.add_dirty(-5);
        assert!(!c.over_dirty_budget());
    }
}
