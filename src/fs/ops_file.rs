//! File contents: open/create, read/write through the page cache, write-back.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use fuser::{Errno, FileAttr, INodeNo};

use super::content::{FileState, OpenFile};
use super::core::{Entry, FsCore, Handle};
use super::errno::{from_error, FsResult, IoErrno};
use super::inodes::ROOT_INO;
use super::ops_entry::Caller;
use crate::format::offsets::plain_len;
use crate::format::tags::TagList;
use crate::store::seal::Vouched;
use crate::store::stat::Stat;
use crate::store::ChangeKind;

/// A backing file opened (and checked) on the way into [`FsCore::open_state`].
struct Checked {
    file: std::fs::File,
    writable: bool,
    /// The whole blob, when the check read a small one.
    blob: Option<Vec<u8>>,
    /// The committed tag list to check pages against, instead of a whole check.
    tags: Option<Arc<TagList>>,
    /// The file's change counter before the check began (`None`: just made).
    stamp: Option<u64>,
}

/// How often a first open checks a file again when it changed meanwhile,
/// before it gives up the bytes its check read and reads the file afresh.
const CHECK_TRIES: usize = 3;

/// Files up to this size (16 pages of ciphertext) opened for reading keep the
/// bytes their check read; bigger ones are read page by page as usual.
const KEEP_MAX: u64 = 64 * 1024;

impl FsCore {
    /// Count one more handle on `of` (looked up under the open-file lock, which
    /// the caller still holds), reopening its backing file for a writer.
    fn attach(&self, of: &Arc<OpenFile>, e: &Entry, write: bool) -> FsResult<Arc<OpenFile>> {
        if write && !of.state.read().writable {
            let f = e.dir.fd.open_file(e.name(), false).errno()?;
            of.state.write().replace_file(f, true);
        }
        *of.handles.lock() += 1;
        Ok(of.clone())
    }

    /// The open state of `ino` with one more handle, if the file is open.
    fn attach_state(&self, ino: u64, e: &Entry, write: bool) -> FsResult<Option<Arc<OpenFile>>> {
        let open = self.open.lock();
        open.get(&ino)
            .map(|of| self.attach(of, e, write))
            .transpose()
    }

    /// The shared open state of `ino`, created from the checked descriptor `c`
    /// unless another first open installed one meanwhile (then `c` is dropped).
    /// `None` when the daemon may have changed the file since `c`'s check
    /// began (and `stale_ok` is false): check again.
    fn open_state(
        &self,
        ino: u64,
        e: &Entry,
        write: bool,
        mut c: Checked,
        stale_ok: bool,
    ) -> FsResult<Option<Arc<OpenFile>>> {
        let mut open = self.open.lock();
        if let Some(of) = open.get(&ino) {
            return self.attach(of, e, write).map(Some);
        }
        let now = self.changed_of(ino).load(Ordering::Acquire);
        if c.stamp.is_some_and(|s| s != now) {
            if !stale_ok {
                return Ok(None);
            }
            // What the check read may be older than the file: read it afresh
            // (the daemon made the change, so it is journaled).
            c.blob = None;
        }
        let kept_len = c.blob.as_ref().map(|b| b.len() as u64);
        let bad = |err: std::io::Error| {
            tracing::warn!("an open file of vault {} is not a valid blob", e.vault.id);
            super::errno::from_io(&err)
        };
        let mut st =
            FileState::open_with(c.file, c.blob, &e.vault.keys(), &self.cache).map_err(bad)?;
        if let Some(list) = c.tags {
            st.expect_tags(list).map_err(bad)?;
        }
        st.writable = c.writable;
        let whole = kept_len.is_some_and(|n| plain_len(n) == Some(st.size));
        if whole && !write {
            // Still under the lock: no handle of `ino` exists, so no write
            // can be in flight through the kernel.
            self.prefill_kernel_cache(ino, &st);
        }
        let of = Arc::new(OpenFile::new(ino, e.vault.id.clone(), st));
        *of.handles.lock() = 1;
        open.insert(ino, of.clone());
        Ok(Some(of))
    }

    /// Hand the kernel the content of a small file just decrypted whole
    /// (FUSE_NOTIFY_STORE), so the reads after this open are served from its
    /// page cache with no READ round trip (the open keeps that cache). Only
    /// a file whose every page authenticated is handed over (a page that
    /// failed is not in the cache). Best effort.
    fn prefill_kernel_cache(&self, ino: u64, st: &FileState) {
        if st.size == 0 || st.size > KEEP_MAX {
            return;
        }
        let Some(n) = self.notifier.lock().clone() else {
            return;
        };
        let Some(data) = st.cached_whole(&self.cache) else {
            return;
        };
        if let Err(err) = n.store(INodeNo(ino), 0, &data) {
            tracing::debug!("storing a small file in the kernel cache: {err}");
        }
    }

    /// Open the backing file of `e`: read-write unless the mount is read-only;
    /// for a reader, read-only when the daemon may not write it. Returns the
    /// descriptor and whether it can write.
    fn open_backing(&self, e: &Entry, write: bool) -> FsResult<(std::fs::File, bool)> {
        let (f, writable) = match e.dir.fd.open_file(e.name(), self.cfg.ro) {
            Ok(f) => (f, !self.cfg.ro),
            Err(err) if !write && err.raw_os_error() == Some(libc::EACCES) => {
                (e.dir.fd.open_file(e.name(), true).errno()?, false)
            }
            Err(err) => return Err(super::errno::from_io(&err)),
        };
        self.within_fd_budget(&f)?;
        Ok((f, writable))
    }

    /// Open and check the backing file of `e` for a first open. Opening to
    /// truncate keeps nothing of the old content: no check. A small file
    /// opened for reading is decrypted from the bytes the check read
    /// (`md5sum`, `grep -r`, a build: one read(2) per file); a big one with a
    /// saved tag list is checked page by page instead.
    fn check_backing(&self, ino: u64, e: &Entry, write: bool, replaces: bool) -> FsResult<Checked> {
        let stamp = self.changed_of(ino).load(Ordering::Acquire);
        let (file, writable) = self.open_backing(e, write)?;
        let (mut blob, mut tags) = (None, None);
        if !replaces {
            let keep = if write { 0 } else { KEEP_MAX };
            match self.verify(e, &file, keep, !write)? {
                Vouched::Whole(kept) => blob = kept,
                Vouched::ByTags(list) => tags = Some(list),
            }
        }
        Ok(Checked {
            file,
            writable,
            blob,
            tags,
            stamp: Some(stamp),
        })
    }

    pub fn open(&self, ino: u64, flags: i32) -> FsResult<u64> {
        if ino == ROOT_INO {
            return Err(Errno::EISDIR);
        }
        let acc = flags & libc::O_ACCMODE;
        let write = acc == libc::O_WRONLY || acc == libc::O_RDWR;
        if write || flags & libc::O_TRUNC != 0 {
            self.check_writable()?;
        }
        let vault = self.vault_of(ino)?;
        if ino == vault.root_ino {
            return Err(Errno::EISDIR);
        }
        let e = self.entry_of(ino)?;
        if self.uid != 0 {
            // Search and read access the backing entries may keep only for
            // the daemon (`store/modes.rs`).
            self.may_search(&e.dir)?;
            if acc != libc::O_WRONLY {
                self.owner_may(&e.dir.fd.stat(e.name()).errno()?, 4)?;
            }
        }
        let replaces = write && flags & libc::O_TRUNC != 0;
        // Not open in this mount: the blob must be HEAD's (or journaled), and
        // the descriptor that was checked is the one that serves the file (one
        // open(2) per file, and nothing swapped in between). The state is
        // looked up and counted under one lock, so it cannot be released
        // between this test and its use; a file closed meanwhile is checked.
        let of = match self.attach_state(ino, &e, write)? {
            Some(of) => of,
            None => {
                let mut tries = 0;
                loop {
                    tries += 1;
                    let checked = self.check_backing(ino, &e, write, replaces)?;
                    if let Some(of) =
                        self.open_state(ino, &e, write, checked, tries == CHECK_TRIES)?
                    {
                        break of;
                    }
                }
            }
        };
        if flags & libc::O_TRUNC != 0 {
            let _gate = vault.gate.read();
            let mut st = of.state.write();
            if st.size != 0 {
                self.mark(&e)?;
                st.truncate(0, &self.cache).errno()?;
                vault.record(ChangeKind::Modified, self.path_of(ino));
            }
        }
        Ok(self.new_fh(Handle {
            ino,
            append: flags & libc::O_APPEND != 0,
            write,
        }))
    }

    pub fn create(
        &self,
        parent: u64,
        name: &[u8],
        mode: u32,
        flags: i32,
        who: Caller,
    ) -> FsResult<(FileAttr, u64)> {
        // The creator may write even if the new mode says otherwise: the
        // backing file is opened while it still lets its owner write, and
        // then given that mode.
        let mode = mode & 0o7777;
        let mut attr = self.mknod(parent, name, libc::S_IFREG | mode | 0o600, 0, who)?;
        let ino = attr.ino.0;
        let e = self.entry_of(ino)?;
        let acc = flags & libc::O_ACCMODE;
        let write = acc == libc::O_WRONLY || acc == libc::O_RDWR;
        let f = e.dir.fd.open_file(e.name(), false).errno()?;
        self.within_fd_budget(&f)?;
        if mode & 0o600 != 0o600 {
            self.chmod_entry(&e.dir.fd, Some(e.name()), mode).errno()?;
            attr = self.attr(ino, &Stat::of_file(&f).errno()?);
        }
        let created = Checked {
            file: f,
            writable: true,
            blob: None,
            tags: None,
            stamp: None,
        };
        self.open_state(ino, &e, true, created, true)?;
        let fh = self.new_fh(Handle {
            ino,
            append: flags & libc::O_APPEND != 0,
            write,
        });
        Ok((attr, fh))
    }

    fn handle(&self, fh: u64) -> FsResult<(Handle, Arc<OpenFile>)> {
        let h = *self.handles.lock().get(&fh).ok_or(Errno::EBADF)?;
        let of = self.open.lock().get(&h.ino).cloned().ok_or(Errno::EBADF)?;
        Ok((h, of))
    }

    pub fn read(&self, fh: u64, offset: u64, size: u32) -> FsResult<Vec<u8>> {
        let (_, of) = self.handle(fh)?;
        let read = of
            .settled(&self.cache)
            .and_then(|st| st.read(offset, size, &self.cache));
        match read {
            // Opened before a checkout: what it opened, or ESTALE.
            Err(_) if of.is_stale() => Err(Errno::ESTALE),
            r => r.errno(),
        }
    }

    pub fn write(&self, fh: u64, offset: u64, data: &[u8]) -> FsResult<u32> {
        let (h, of) = self.handle(fh)?;
        if !h.write {
            return Err(Errno::EBADF);
        }
        if of.is_stale() {
            return Err(Errno::ESTALE);
        }
        let vault = self.vault_of(h.ino)?;
        let _gate = vault.gate.read();
        let mut st = of.state.write();
        st.settle_tags().errno()?;
        st.settle_append(&self.cache).errno()?;
        let at = if h.append { st.size } else { offset };
        // Refused before anything changes (nothing journaled or recorded
        // either): past the maximum size, or more growth than the disk has
        // room for.
        let end = at.checked_add(data.len() as u64).ok_or(Errno::EFBIG)?;
        st.check_growth(end, data.len() as u64).errno()?;
        // Once per file and commit, before anything reaches the disk: the path
        // walk stays off the write path. A commit runs under the gate held
        // exclusively, so no write races it.
        let commits = vault.commits.load(Ordering::Relaxed);
        if of.recorded.load(Ordering::Relaxed) != commits {
            self.mark_ino(h.ino)?;
            of.recorded.store(commits, Ordering::Relaxed);
            vault.record(ChangeKind::Modified, self.path_of(h.ino));
        } else {
            // Still a change: a long write must not look quiet and be committed
            // half-way (that commit stalled dd for seconds).
            vault.pending.lock().last = Some(std::time::Instant::now());
        }
        // Dirty pages over the budget are written back before this write is
        // applied, so a write that fails leaves nothing of itself.
        if self.cache.over_dirty_budget() || st.dirty_pages() > self.cache.dirty_limit() / 2 {
            st.write_back(&vault.keys(), &self.cache).errno()?;
        }
        if !st
            .append_through(at, data, &vault.keys(), &self.cache)
            .errno()?
        {
            st.write(at, data, &self.cache).errno()?;
        }
        Ok(data.len() as u32)
    }

    /// Write back an open file's changes (close, fsync, release).
    pub fn flush(&self, fh: u64, sync: bool) -> FsResult<()> {
        let (h, of) = self.handle(fh)?;
        if of.is_stale() {
            // Written back before the checkout, and refused writes since.
            return Ok(());
        }
        let vault = self.vault_of(h.ino)?;
        let _gate = vault.gate.read();
        let mut st = of.state.write();
        st.write_back(&vault.keys(), &self.cache).errno()?;
        if sync {
            // The journal first: fsync'd data must not look like tampering.
            vault
                .history
                .lock()
                .sync_journal()
                .map_err(|e| from_error(&e))?;
            st.file().sync_data().errno()?;
        }
        Ok(())
    }

    /// Make a directory's entries durable (after the journal that covers them).
    pub fn fsyncdir(&self, ino: u64) -> FsResult<()> {
        if ino == ROOT_INO {
            return Ok(());
        }
        let vault = self.vault_of(ino)?;
        vault
            .history
            .lock()
            .sync_journal()
            .map_err(|e| from_error(&e))?;
        self.dir(ino)?.fd.fsync().errno()
    }

    pub fn release(&self, fh: u64) -> FsResult<()> {
        let res = self.flush(fh, false);
        let Some(h) = self.handles.lock().remove(&fh) else {
            return res;
        };
        let mut open = self.open.lock();
        if let Some(of) = open.get(&h.ino).cloned() {
            let mut n = of.handles.lock();
            *n = n.saturating_sub(1);
            if *n == 0 && self.may_close(&of) {
                open.remove(&h.ino);
                self.changed_of(h.ino).fetch_add(1, Ordering::Release);
            }
        }
        // A removed file's last close: its write-back error has no file left
        // to be about.
        res.or_else(|e| {
            if open.contains_key(&h.ino) {
                Err(e)
            } else {
                Ok(())
            }
        })
    }

    /// Can the open state `of`, with no handle left, be dropped? Yes when it
    /// has nothing to write back, or when its file was removed: then what it
    /// still held (say, a write-back a full disk refused) is discarded, and
    /// the descriptor closed, so the blob's space comes back at once.
    pub(super) fn may_close(&self, of: &OpenFile) -> bool {
        let mut st = of.state.write();
        if !st.is_dirty() {
            return true;
        }
        if st.unlinked() {
            st.discard(&self.cache);
            return true;
        }
        false
    }

    /// After `ino` lost a name: if that was its last and no handle holds it,
    /// drop its open state (and with it the descriptor of the removed blob).
    pub(super) fn drop_if_removed(&self, ino: u64) {
        let mut open = self.open.lock();
        let Some(of) = open.get(&ino).cloned() else {
            return;
        };
        if *of.handles.lock() == 0 && of.state.read().unlinked() && self.may_close(&of) {
            open.remove(&ino);
            self.changed_of(ino).fetch_add(1, Ordering::Release);
        }
    }

    /// `fallocate`: mode 0 extends the file (zeros: a hole, once the disk
    /// is seen to have room for it), KEEP_SIZE alone checks the range and
    /// changes nothing (pkfs reserves no space ahead: a later write may still
    /// meet a full disk), PUNCH_HOLE (with KEEP_SIZE, as Linux requires) makes
    /// the range read as zeros, its whole pages holes. Other modes: EOPNOTSUPP.
    pub fn fallocate(&self, fh: u64, offset: u64, len: u64, mode: i32) -> FsResult<()> {
        const KEEP: i32 = libc::FALLOC_FL_KEEP_SIZE;
        const PUNCH: i32 = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
        if mode != 0 && mode != KEEP && mode != PUNCH {
            return Err(Errno::EOPNOTSUPP);
        }
        let (h, of) = self.handle(fh)?;
        if !h.write {
            return Err(Errno::EBADF);
        }
        if of.is_stale() {
            return Err(Errno::ESTALE);
        }
        let end = offset.checked_add(len).ok_or(Errno::EFBIG)?;
        if end > crate::format::offsets::MAX_FILE_SIZE {
            return Err(Errno::EFBIG);
        }
        let vault = self.vault_of(h.ino)?;
        let _gate = vault.gate.read();
        let mut st = of.state.write();
        st.settle_append(&self.cache).errno()?;
        let changes = match mode {
            0 => end > st.size,
            KEEP => false,
            _ => offset < st.size,
        };
        if changes {
            st.settle_tags().errno()?;
            if mode == 0 {
                // Asked for space: the whole growth must fit, even though
                // it is not reserved (it becomes a hole).
                let grow = end.saturating_sub(st.size);
                st.check_growth(end, grow).errno()?;
            }
            self.mark_ino(h.ino)?;
            vault.record(ChangeKind::Modified, self.path_of(h.ino));
            if mode == 0 {
                st.resize(end, &vault.keys(), &self.cache).errno()?;
            } else {
                st.zero_range(offset, len, &vault.keys(), &self.cache)
                    .errno()?;
            }
        }
        Ok(())
    }

    /// `lseek` with SEEK_DATA or SEEK_HOLE (the kernel handles the other
    /// kinds itself): hole pages are holes, ENXIO at or past the end.
    pub fn lseek(&self, fh: u64, offset: i64, whence: i32) -> FsResult<i64> {
        let data = match whence {
            libc::SEEK_DATA => true,
            libc::SEEK_HOLE => false,
            _ => return Err(Errno::EINVAL),
        };
        let offset = u64::try_from(offset).map_err(|_| Errno::ENXIO)?;
        let (_, of) = self.handle(fh)?;
        let st = of.settled(&self.cache).errno()?;
        let at = st.seek_data(offset, data).errno()?;
        i64::try_from(at).map_err(|_| Errno::EOVERFLOW)
    }

    /// Space figures of the disk under the home.
    pub fn statfs(&self, ino: u64) -> FsResult<libc::statvfs> {
        let vault = match self.vault_of(ino) {
            Ok(v) => v,
            Err(_) => self.vaults.read().first().cloned().ok_or(Errno::ENOENT)?,
        };
        crate::store::dirfd::DirFd::open(&vault.contents)
            .errno()?
            .statvfs()
            .errno()
    }
}
