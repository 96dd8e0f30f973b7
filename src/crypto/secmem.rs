//! Locked memory for key material.
//!
//! Two facilities, both best effort: when `mlock(2)` is refused (RLIMIT_MEMLOCK),
//! the memory is still usable, only not locked; the first refusal is logged once
//! and nothing fails.
//!
//! * [`SecretBytes`]: a fixed-size secret (at most [`SLOT`] bytes) in a slot of a
//!   page-aligned arena. Arena pages are `mmap`ed, locked once, excluded from core
//!   dumps (`MADV_DONTDUMP`) and never shared with other data. A slot is zeroized
//!   when freed; an empty page is unmapped once another empty page is spare.
//!   [`SymKey`](super::SymKey) and [`SivKey`](super::siv::SivKey) live here.
//! * [`RegionLock`]: locks the pages under a heap buffer someone else allocated
//!   (the RSA private key's limbs, a passphrase) and excludes them from core
//!   dumps (`MADV_DONTDUMP`) while locked. Pages are reference counted, so two
//!   buffers sharing a page keep it locked until both guards are gone.
//!
//! Neither is the main defence against core dumps: every pkfs process is made
//! non-dumpable at start (`PR_SET_DUMPABLE` 0, see `main.rs`), which also
//! refuses ptrace to other processes of the user. These exclusions matter
//! where a dump happens anyway (`fs.suid_dumpable = 2`, or root's debugger).
//!
//! Memory locks are not inherited across `fork(2)`: a daemon that forked after
//! unlocking calls [`relock_after_fork`] in the child.

use std::collections::BTreeMap;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};

use zeroize::{Zeroize, Zeroizing};

/// Size of one arena slot: the largest secret [`SecretBytes`] can hold.
pub const SLOT: usize = 64;

fn page_size() -> usize {
    static PS: OnceLock<usize> = OnceLock::new();
    *PS.get_or_init(|| {
        // SAFETY: sysconf has no memory-safety preconditions.
        let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        if n >= SLOT as libc::c_long {
            n as usize
        } else {
            4096
        }
    })
}

static LOCK_FAILED: AtomicBool = AtomicBool::new(false);

/// Log the first refused `mlock` of the process, once.
fn note_lock_failure(err: std::io::Error, loud: bool) {
    if LOCK_FAILED.swap(true, Ordering::Relaxed) {
        return;
    }
    if loud {
        tracing::warn!("cannot lock key memory (mlock: {err}); keys may be swapped out. Raise RLIMIT_MEMLOCK (ulimit -l) to avoid it");
    } else {
        tracing::debug!("cannot lock key memory (mlock: {err}); continuing unlocked");
    }
}

/// Whether some `mlock` of this process was refused.
pub fn lock_ever_failed() -> bool {
    LOCK_FAILED.load(Ordering::Relaxed)
}

fn mlock(addr: usize, len: usize, loud: bool) -> bool {
    // SAFETY: mlock only changes residency of pages we map or hold; it never
    // touches their contents. An invalid range is reported as an error.
    let rc = unsafe { libc::mlock(addr as *const libc::c_void, len) };
    if rc != 0 {
        note_lock_failure(std::io::Error::last_os_error(), loud);
    }
    rc == 0
}

fn munlock(addr: usize, len: usize) {
    // SAFETY: as for mlock; a failure (the page was unmapped meanwhile) is harmless.
    unsafe { libc::munlock(addr as *const libc::c_void, len) };
}

/// Exclude a page range from core dumps (`exclude`), or include it again.
fn dontdump(addr: usize, len: usize, exclude: bool) {
    let advice = if exclude {
        libc::MADV_DONTDUMP
    } else {
        libc::MADV_DODUMP
    };
    // SAFETY: the advice only marks whether pages go into a core dump; it
    // never changes their contents. An invalid range is reported as an error,
    // which is harmless here (best effort).
    unsafe { libc::madvise(addr as *mut libc::c_void, len, advice) };
}

fn guard<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while holding these locks; a poisoned one is still consistent.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

// ---------------------------------------------------------------------------
// The arena

struct Page {
    base: usize,
    /// One bit per slot; set = in use.
    used: Vec<u64>,
    in_use: usize,
}

struct Arena {
    pages: Vec<Page>,
}

static ARENA: Mutex<Arena> = Mutex::new(Arena { pages: Vec::new() });

fn slots_per_page() -> usize {
    page_size() / SLOT
}

impl Arena {
    fn new_page(&mut self) -> usize {
        let ps = page_size();
        // SAFETY: an anonymous private mapping; the result is checked.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                ps,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            let layout = std::alloc::Layout::from_size_align(ps, ps)
                .unwrap_or(std::alloc::Layout::new::<[u8; SLOT]>());
            std::alloc::handle_alloc_error(layout);
        }
        // SAFETY: p is our fresh mapping of ps bytes; a refusal is harmless.
        unsafe { libc::madvise(p, ps, libc::MADV_DONTDUMP) };
        mlock(p as usize, ps, false);
        let words = slots_per_page().div_ceil(64);
        self.pages.push(Page {
            base: p as usize,
            used: vec![0; words],
            in_use: 0,
        });
        self.pages.len() - 1
    }

    fn alloc(&mut self) -> NonNull<u8> {
        let n = slots_per_page();
        let idx = match self.pages.iter().position(|p| p.in_use < n) {
            Some(i) => i,
            None => self.new_page(),
        };
        let page = &mut self.pages[idx];
        for slot in 0..n {
            let (w, b) = (slot / 64, slot % 64);
            if page.used[w] & (1 << b) == 0 {
                page.used[w] |= 1 << b;
                page.in_use += 1;
                let addr = page.base + slot * SLOT;
                // SAFETY: addr lies inside a live mapping, so it is not null.
                return unsafe { NonNull::new_unchecked(addr as *mut u8) };
            }
        }
        unreachable!("a page with a free slot has a clear bit")
    }

    /// Return a slot; the caller has zeroized it.
    fn free(&mut self, ptr: NonNull<u8>) {
        let (addr, ps) = (ptr.as_ptr() as usize, page_size());
        let Some(idx) = self
            .pages
            .iter()
            .position(|p| (p.base..p.base + ps).contains(&addr))
        else {
            return;
        };
        let page = &mut self.pages[idx];
        let slot = (addr - page.base) / SLOT;
        page.used[slot / 64] &= !(1 << (slot % 64));
        page.in_use -= 1;
        if page.in_use == 0 && self.pages.iter().filter(|p| p.in_use == 0).count() > 1 {
            let page = self.pages.swap_remove(idx);
            // SAFETY: the page is our mapping and no slot of it is in use.
            unsafe { libc::munmap(page.base as *mut libc::c_void, ps) };
        }
    }
}

/// A secret of `N` bytes (`N <= SLOT`) in locked, non-dumpable memory, zeroized
/// on drop. Owned like a `Box`.
pub struct SecretBytes<const N: usize> {
    ptr: NonNull<[u8; N]>,
}

// SAFETY: SecretBytes uniquely owns its slot, like Box<[u8; N]>.
unsafe impl<const N: usize> Send for SecretBytes<N> {}
// SAFETY: shared access only reads.
unsafe impl<const N: usize> Sync for SecretBytes<N> {}

impl<const N: usize> SecretBytes<N> {
    const FITS: () = assert!(N > 0 && N <= SLOT, "secret larger than an arena slot");

    /// A zeroed secret.
    pub fn zeroed() -> Self {
        #[allow(clippy::let_unit_value)]
        let () = Self::FITS;
        let p = guard(&ARENA).alloc();
        // Slots are zeroed when freed and fresh pages are zero.
        SecretBytes { ptr: p.cast() }
    }

    /// A secret filled in place by `fill`, so that it never exists elsewhere.
    pub fn with(fill: impl FnOnce(&mut [u8; N])) -> Self {
        let mut s = Self::zeroed();
        fill(s.expose_mut());
        s
    }

    /// Copy `bytes` in, then zeroize the caller's copy.
    pub fn from_array(mut bytes: [u8; N]) -> Self {
        let s = Self::with(|b| b.copy_from_slice(&bytes));
        bytes.zeroize();
        s
    }

    pub fn expose(&self) -> &[u8; N] {
        // SAFETY: ptr points at a live slot of at least N bytes that we own.
        unsafe { self.ptr.as_ref() }
    }

    pub fn expose_mut(&mut self) -> &mut [u8; N] {
        // SAFETY: as above, and &mut self gives exclusive access.
        unsafe { self.ptr.as_mut() }
    }
}

impl<const N: usize> Clone for SecretBytes<N> {
    fn clone(&self) -> Self {
        Self::with(|b| b.copy_from_slice(self.expose()))
    }
}

impl<const N: usize> Drop for SecretBytes<N> {
    fn drop(&mut self) {
        self.expose_mut().zeroize();
        guard(&ARENA).free(self.ptr.cast());
    }
}

impl<const N: usize> PartialEq for SecretBytes<N> {
    fn eq(&self, other: &Self) -> bool {
        // Not secret-dependent in timing terms that matter here: keys are
        // compared in tests, never against attacker input.
        self.expose() == other.expose()
    }
}
impl<const N: usize> Eq for SecretBytes<N> {}

impl<const N: usize> std::fmt::Debug for SecretBytes<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBytes(<redacted>)")
    }
}

// ---------------------------------------------------------------------------
// Region locks

/// Locked heap pages by address, with how many guards hold each.
static REGIONS: Mutex<BTreeMap<usize, usize>> = Mutex::new(BTreeMap::new());

/// Keeps the pages under a buffer locked until dropped. Drop it after the
/// buffer has been zeroized (declare it after the buffer in a struct).
#[derive(Debug, Default)]
pub struct RegionLock {
    pages: Vec<usize>,
}

impl RegionLock {
    /// Lock the pages spanning `data`.
    pub fn new<T>(data: &[T]) -> RegionLock {
        let len = std::mem::size_of_val(data);
        let mut out = RegionLock::default();
        out.add(data.as_ptr() as usize, len);
        out
    }

    /// Also lock the pages spanning `data`.
    pub fn add_slice<T>(&mut self, data: &[T]) {
        self.add(data.as_ptr() as usize, std::mem::size_of_val(data));
    }

    fn add(&mut self, addr: usize, len: usize) {
        if len == 0 {
            return;
        }
        let ps = page_size();
        let first = addr & !(ps - 1);
        let last = (addr + len - 1) & !(ps - 1);
        let mut regions = guard(&REGIONS);
        let mut page = first;
        while page <= last {
            let n = regions.entry(page).or_insert(0);
            if *n == 0 {
                mlock(page, ps, false);
                dontdump(page, ps, true);
            }
            *n += 1;
            self.pages.push(page);
            page += ps;
        }
    }
}

impl Drop for RegionLock {
    fn drop(&mut self) {
        if self.pages.is_empty() {
            return;
        }
        let ps = page_size();
        let mut regions = guard(&REGIONS);
        for page in self.pages.drain(..) {
            if let Some(n) = regions.get_mut(&page) {
                *n -= 1;
                if *n == 0 {
                    regions.remove(&page);
                    munlock(page, ps);
                    dontdump(page, ps, false);
                }
            }
        }
    }
}

/// Lock again every arena page and region: `fork(2)` does not carry memory
/// locks into the child. A refusal is logged as a warning (the daemon's log).
pub fn relock_after_fork() {
    let ps = page_size();
    let arena: Vec<usize> = guard(&ARENA).pages.iter().map(|p| p.base).collect();
    for base in arena {
        mlock(base, ps, true);
    }
    let regions: Vec<usize> = guard(&REGIONS).keys().copied().collect();
    for page in regions {
        mlock(page, ps, true);
    }
}

/// `VmLck` of this process, in kB, from `/proc/self/status` (`None` if absent).
pub fn vm_locked_kb() -> Option<u64> {
    vm_locked_kb_of("/proc/self/status")
}

/// `VmLck` in kB from a `/proc/PID/status` file.
pub fn vm_locked_kb_of(path: &str) -> Option<u64> {
    let s = std::fs::read_to_string(path).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmLck:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The soft RLIMIT_MEMLOCK in bytes (`None`: unlimited or unknown).
pub fn memlock_limit() -> Option<u64> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: r is a valid out-parameter.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut r) } != 0
        || r.rlim_cur == libc::RLIM_INFINITY
    {
        return None;
    }
    #[allow(clippy::unnecessary_cast)] // rlim_t is not u64 everywhere
    Some(r.rlim_cur as u64)
}

/// A writer into a zeroizing buffer that grows by copying into a bigger
/// zeroizing buffer (never `realloc`), so no stray copy of what it holds (a
/// key, the plaintext vault table) is left in freed memory.
pub struct WipingWriter(pub Zeroizing<Vec<u8>>);

impl Default for WipingWriter {
    fn default() -> Self {
        WipingWriter(Zeroizing::new(Vec::with_capacity(4096)))
    }
}

impl std::io::Write for WipingWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let need = self.0.len() + data.len();
        if need > self.0.capacity() {
            let mut bigger = Zeroizing::new(Vec::with_capacity(2 * need));
            bigger.extend_from_slice(&self.0);
            self.0 = bigger;
        }
        self.0.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_distinct_zeroed_and_reused() {
        let a = SecretBytes::<32>::from_array([7; 32]);
        let b = SecretBytes::<64>::zeroed();
        assert_eq!(a.expose(), &[7; 32]);
        assert_eq!(b.expose(), &[0; 64]);
        assert_ne!(a.ptr.cast::<u8>(), b.ptr.cast::<u8>());
        let c = a.clone();
        assert_eq!(a, c);
        drop(a);
        // Many keys at once spill onto further pages and come back.
        let many: Vec<_> = (0..500u32)
            .map(|i| SecretBytes::<32>::from_array([i as u8; 32]))
            .collect();
        for (i, k) in many.iter().enumerate() {
            assert_eq!(k.expose(), &[i as u8; 32]);
        }
        drop(many);
        let d = SecretBytes::<32>::zeroed();
        assert_eq!(d.expose(), &[0; 32], "a reused slot comes back zeroed");
    }

    #[test]
    fn region_locks_are_counted_per_page() {
        // A page of our own, so that no other test's lock shares it.
        let ps = page_size();
        let layout = std::alloc::Layout::from_size_align(2 * ps, ps).unwrap();
        // SAFETY: a non-zero-sized layout; freed below with the same layout.
        let base = unsafe { std::alloc::alloc_zeroed(layout) };
        assert!(!base.is_null());
        // SAFETY: base points at 2*ps zeroed bytes that we own.
        let buf = unsafe { std::slice::from_raw_parts(base, 2 * ps) };
        let l1 = RegionLock::new(&buf[..100]);
        let l2 = RegionLock::new(&buf[10..ps + 20]);
        let (p0, p1) = (base as usize, base as usize + ps);
        assert_eq!(guard(&REGIONS).get(&p0), Some(&2));
        assert_eq!(guard(&REGIONS).get(&p1), Some(&1));
        drop(l1);
        assert_eq!(guard(&REGIONS).get(&p0), Some(&1));
        drop(l2);
        assert_eq!(guard(&REGIONS).get(&p0), None);
        assert_eq!(guard(&REGIONS).get(&p1), None);
        assert!(RegionLock::new::<u8>(&[]).pages.is_empty());
        // SAFETY: allocated above with this layout; no reference outlives it.
        unsafe { std::alloc::dealloc(base, layout) };
    }

    #[test]
    fn creating_a_key_raises_vm_lck() {
        if memlock_limit() == Some(0) {
            eprintln!("RLIMIT_MEMLOCK is 0: nothing can be locked; skipped");
            return;
        }
        let key = crate::crypto::SymKey::generate();
        let kb = vm_locked_kb().expect("VmLck in /proc/self/status");
        assert!(kb > 0, "VmLck is {kb} kB with a key alive");
        drop(key);
    }
}
