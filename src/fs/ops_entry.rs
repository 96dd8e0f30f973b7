//! Namespace operations inside a vault: lookup, attributes, create/remove/rename
//! of directories, links, symlinks and special files.

use fuser::{Errno, FileAttr, FileType, TimeOrNow};

use super::core::{file_type, DirHandle, Entry, FsCore};
use super::errno::{FsResult, IoErrno};
use super::inodes::ROOT_INO;
use crate::crypto::random_array;
use crate::format::modes::MODES_FILE;
use crate::format::names::DIRIV_FILE;
use crate::store::changes::MoveKind;
use crate::store::dirfd::{timespec, DirFd};
use crate::store::stat::Stat;
use crate::store::ChangeKind;

/// Who asked: the new entry's owner.
#[derive(Clone, Copy)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
}

pub struct SetAttr {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<TimeOrNow>,
    pub mtime: Option<TimeOrNow>,
}

fn when(t: TimeOrNow) -> libc::timespec {
    match t {
        TimeOrNow::Now => libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_NOW,
        },
        TimeOrNow::SpecificTime(t) => timespec(t),
    }
}

impl FsCore {
    pub(super) fn check_writable(&self) -> FsResult<()> {
        if self.cfg.ro {
            Err(Errno::EROFS)
        } else {
            Ok(())
        }
    }

    pub(super) fn path_of(&self, ino: u64) -> String {
        self.inodes.read().path_of(ino).unwrap_or_default()
    }

    fn child_path(&self, parent: u64, name: &[u8]) -> String {
        let p = self.path_of(parent);
        let n = crate::store::vpath::escape_name(name);
        if p.is_empty() {
            n
        } else {
            format!("{p}/{n}")
        }
    }

    /// Register the entry `name` of `parent` and return its attributes.
    fn found(&self, parent: u64, name: &[u8], e: &Entry) -> FsResult<FileAttr> {
        let m = e.dir.fd.stat(e.name()).errno()?;
        Ok(self.register(&e.vault, parent, name, &m))
    }

    /// Without root and without `default_permissions`, the daemon's user is
    /// the only caller, and `store/modes.rs` may have kept read and search
    /// open on a backing entry that the mode set through the mount closes:
    /// the owner bits of that mode decide (`bits`: 4 read, 2 write, 1 search).
    pub(super) fn owner_may(&self, m: &Stat, bits: u32) -> FsResult<()> {
        if self.uid == 0 || m.uid() != self.uid || (m.mode() >> 6) & bits == bits {
            Ok(())
        } else {
            Err(Errno::EACCES)
        }
    }

    /// Search permission on a directory, as `owner_may` (one `fstat` of it,
    /// without root only).
    pub(super) fn may_search(&self, dir: &DirHandle) -> FsResult<()> {
        if self.uid == 0 {
            return Ok(());
        }
        self.owner_may(&dir.fd.stat_self().errno()?, 1)
    }

    pub fn lookup(&self, parent: u64, name: &[u8]) -> FsResult<FileAttr> {
        if parent == ROOT_INO {
            return self.root_lookup(name);
        }

        let e = self.child_entry(parent, name)?;
        self.found(parent, name, &e)
    }

    pub fn getattr(&self, ino: u64) -> FsResult<FileAttr> {
        if ino == ROOT_INO {
            return Ok(self.root_attr());
        }
        if let Some(of) = self.open_file(ino) {
            let m = Stat::of_file(of.state.read().file()).errno()?;
            return Ok(self.attr(ino, &m));
        }
        let vault = self.vault_of(ino)?;
        if ino == vault.root_ino {
            let m = Stat::of_path(&vault.contents).errno()?;
            return Ok(self.attr(ino, &m));
        }
        let e = self.entry_of(ino)?;
        let m = e.dir.fd.stat(e.name()).errno()?;
        Ok(self.attr(ino, &m))
    }

    /// `access(2)`. The kernel only asks when the mount has no
    /// `default_permissions`, that is without `--allow-other`: then the only
    /// caller is the user the daemon runs as, and the backing entry, which
    /// carries the file's mode and owner, answers for it.
    pub fn access(&self, ino: u64, mask: i32) -> FsResult<()> {
        if ino == ROOT_INO {
            return self.root_access(mask);
        }
        let vault = self.vault_of(ino)?;
        let e = if ino == vault.root_ino {
            None
        } else {
            Some(self.entry_of(ino)?)
        };
        let dir = match &e {
            Some(e) => e.dir.clone(),
            None => self.dir(ino)?,
        };
        let name = e.as_ref().map(|e| e.name());
        if self.uid != 0 {
            // The owner's bits of the mode the user set, which the backing
            // entry may not show (`store/modes.rs`).
            let m = match name {
                Some(n) => dir.fd.stat(n).errno()?,
                None => dir.fd.stat_self().errno()?,
            };
            if m.uid() == self.uid && m.format() != libc::S_IFLNK {
                let owner = (m.mode() >> 6) as i32 & 7;
                return match mask & 7 & !owner {
                    0 => Ok(()),
                    _ => Err(Errno::EACCES),
                };
            }
        }
        dir.fd.access(name, mask).errno()
    }

    pub fn setattr(&self, ino: u64, a: SetAttr) -> FsResult<FileAttr> {
        if ino == ROOT_INO {
            return self.root_setattr(&a);
        }
        self.check_writable()?;
        if a.size
            .is_some_and(|s| s > crate::format::offsets::MAX_FILE_SIZE)
        {
            return Err(Errno::EFBIG);
        }
        if self.open_file(ino).is_some_and(|of| of.is_stale()) {
            // Open since before a checkout: that file is another version's.
            return Err(Errno::ESTALE);
        }
        let vault = self.vault_of(ino)?;
        let _gate = vault.gate.read();
        let entry = if ino == vault.root_ino {
            None
        } else {
            Some(self.entry_of(ino)?)
        };
        let (fd, name) = match &entry {
            Some(e) => (&e.dir.fd, Some(e.name())),
            None => (&self.dir(ino)?.fd, None),
        };
        if let (Some(e), true) = (&entry, a.size.is_some() || a.mode.is_some()) {
            match self.open_file(ino) {
                Some(of) => of.state.write().settle_tags().errno()?,
                // What a truncation keeps must be what HEAD committed.
                None if a.size.is_some_and(|s| s > 0) => self.check_unopened(e)?,
                None => {}
            }
            if a.size.is_some() {
                self.mark(e)?;
            } else {
                self.mark_mode(e)?;
            }
        }
        if entry.is_none() && a.mode.is_some() {
            // The vault's top directory: its mode is kept as a chmod too.
            let history = vault.history.lock();
            history
                .mark_move("contents", "contents", MoveKind::Rename)
                .map_err(|e| super::errno::from_error(&e))?;
        }
        if let Some(size) = a.size {
            self.truncate_ino(ino, size, entry.as_ref())?;
        }
        if a.uid.is_some() || a.gid.is_some() {
            fd.chown(name, a.uid, a.gid).errno()?;
        }
        if let Some(mode) = a.mode {
            self.chmod_entry(fd, name, mode).errno()?;
        }
        if a.atime.is_some() || a.mtime.is_some() {
            // Pending writes carry their own mtime; write them back first so an
            // explicit time wins.
            if let Some(of) = self.open_file(ino) {
                of.state
                    .write()
                    .write_back(&vault.keys(), &self.cache)
                    .errno()?;
            }
            fd.utimens(name, a.atime.map(when), a.mtime.map(when))
                .errno()?;
        }
        let m = match name {
            Some(n) => fd.stat(n),
            None => fd.stat_self(),
        }
        .errno()?;
        vault.record_entry(ChangeKind::Modified, self.path_of(ino), &m);
        self.getattr(ino)
    }

    /// Check a regular file that no open state has checked against HEAD.
    fn check_unopened(&self, e: &Entry) -> FsResult<()> {
        if !e.dir.fd.stat(e.name()).errno()?.is_file() {
            return Ok(());
        }
        let f = e.dir.fd.open_file(e.name(), true).errno()?;
        self.verify(e, &f, 0, false).map(drop)
    }

    fn truncate_ino(&self, ino: u64, size: u64, e: Option<&Entry>) -> FsResult<()> {
        let e = e.ok_or(Errno::EISDIR)?;
        let vault = &e.vault;
        // Held while an unopened file is cut, so that no first open installs
        // (or hands the kernel) what its check read before the cut.
        let open = self.open.lock();
        if let Some(of) = open.get(&ino).cloned() {
            drop(open);
            let mut st = of.state.write();
            if !st.writable {
                // Only read-only opens so far: their descriptor cannot write.
                let f = e.dir.fd.open_file(e.name(), false).errno()?;
                st.replace_file(f, true);
            }
            return st.resize(size, &vault.keys(), &self.cache).errno();
        }
        let m = e.dir.fd.stat(e.name()).errno()?;
        match file_type(&m) {
            FileType::RegularFile => {}
            FileType::Directory => return Err(Errno::EISDIR),
            _ => return Err(Errno::EINVAL),
        }
        let f = e.dir.fd.open_file(e.name(), false).errno()?;
        let mut st = super::content::FileState::open(f, &vault.keys(), &self.cache).errno()?;
        let res = st.resize(size, &vault.keys(), &self.cache);
        self.changed_of(ino)
            .fetch_add(1, std::sync::atomic::Ordering::Release);
        drop(open);
        res.errno()
    }

    pub fn readlink(&self, ino: u64) -> FsResult<Vec<u8>> {
        let e = self.entry_of(ino)?;
        let disk = e.dir.fd.readlink(e.name()).errno()?;
        let plain = e
            .vault
            .links
            .open_target(disk.as_os_str().as_encoded_bytes())
            .ok_or_else(|| {
                tracing::warn!("a symlink target does not authenticate");
                Errno::EIO
            })?;
        Ok(plain.to_vec())
    }

    /// Give a new entry its owner (when running as root) and exact mode.
    fn own(&self, e: &Entry, who: Caller, mode: Option<u32>) -> FsResult<()> {
        if self.uid == 0 {
            let pm = e.dir.fd.stat_self().errno()?;
            let gid = if pm.mode() & libc::S_ISGID != 0 {
                pm.gid()
            } else {
                who.gid
            };
            e.dir
                .fd
                .chown(Some(e.name()), Some(who.uid), Some(gid))
                .errno()?;
        }
        if let Some(mode) = mode {
            self.chmod_entry(&e.dir.fd, Some(e.name()), mode).errno()?;
        }
        Ok(())
    }

    /// chmod of a backing entry (`None`: the directory itself). A regular
    /// file or directory keeps what the daemon needs to read it, and the mode
    /// asked for is kept beside it (`store/modes.rs`).
    pub(super) fn chmod_entry(
        &self,
        fd: &DirFd,
        name: Option<&str>,
        mode: u32,
    ) -> std::io::Result<()> {
        let st = match name {
            Some(n) => fd.stat(n)?,
            None => fd.stat_self()?,
        };
        if st.is_dir() || st.is_file() {
            fd.chmod_keeping_access(name, mode, st.is_dir())
        } else {
            fd.chmod(name, mode)
        }
    }

    pub fn mknod(
        &self,
        parent: u64,
        name: &[u8],
        mode: u32,
        rdev: u32,
        who: Caller,
    ) -> FsResult<FileAttr> {
        let e = self.entry_to_change(parent, name)?;
        let _gate = e.vault.gate.read();
        let _ns = e.vault.ns.lock();
        self.mark_new(&e)?;
        e.write_sidecar()?;
        let made = if mode & libc::S_IFMT == libc::S_IFREG || mode & libc::S_IFMT == 0 {
            e.dir.fd.create_file(e.name(), 0o600).map(drop)
        } else {
            e.dir.fd.mknod(e.name(), mode, rdev as u64)
        };
        if let Err(err) = made {
            if err.raw_os_error() != Some(libc::EEXIST) {
                e.remove_sidecar();
            }
            return Err(super::errno::from_io(&err));
        }
        self.own(&e, who, Some(mode & 0o7777))?;
        let m = e.dir.fd.stat(e.name()).errno()?;
        e.vault
            .record_entry(ChangeKind::Added, self.child_path(parent, name), &m);
        self.found(parent, name, &e)
    }

    pub fn mkdir(&self, parent: u64, name: &[u8], mode: u32, who: Caller) -> FsResult<FileAttr> {
        if parent == ROOT_INO {
            return self.root_mkdir(name);
        }
        self.check_writable()?;
        let e = self.child_entry(parent, name)?;
        let _gate = e.vault.gate.read();
        let _ns = e.vault.ns.lock();
        self.mark_new(&e)?;
        e.write_sidecar()?;
        let iv = random_array();
        e.dir.fd.mkdir_with_iv(e.name(), mode, &iv).errno()?;
        e.vault
            .history
            .lock()
            .note_unsynced_dir(&e.dir.fd.path().join(e.name()));
        let pm = e.dir.fd.stat_self().errno()?;
        let inherit = if pm.mode() & libc::S_ISGID != 0 {
            libc::S_ISGID
        } else {
            0
        };
        self.own(&e, who, Some((mode & 0o7777) | inherit))?;
        e.vault.record(
            ChangeKind::Added,
            format!("{}/", self.child_path(parent, name)),
        );
        self.found(parent, name, &e)
    }

    pub fn symlink(
        &self,
        parent: u64,
        name: &[u8],
        target: &[u8],
        who: Caller,
    ) -> FsResult<FileAttr> {
        let e = self.entry_to_change(parent, name)?;
        let disk_target = e
            .vault
            .links
            .seal_target(target)
            .ok_or(Errno::ENAMETOOLONG)?;
        let _gate = e.vault.gate.read();
        let _ns = e.vault.ns.lock();
        self.mark_new(&e)?;
        e.write_sidecar()?;
        e.dir.fd.symlink(e.name(), &disk_target).errno()?;
        self.own(&e, who, None)?;
        e.vault
            .record(ChangeKind::Added, self.child_path(parent, name));
        self.found(parent, name, &e)
    }

    pub fn link(&self, ino: u64, newparent: u64, newname: &[u8]) -> FsResult<FileAttr> {
        if newparent == ROOT_INO {
            return Err(Errno::EPERM);
        }
        self.check_writable()?;
        let src = self.entry_of(ino)?;
        let dst = self.child_entry(newparent, newname)?;
        if src.vault.id != dst.vault.id {
            return Err(Errno::EXDEV);
        }
        let _gate = dst.vault.gate.read();
        let _ns = dst.vault.ns.lock();
        let sm = src.dir.fd.stat(src.name()).errno()?;
        if file_type(&sm) == FileType::Directory {
            return Err(Errno::EPERM);
        }
        self.mark_move(&src, &dst, MoveKind::Link)?;
        dst.write_sidecar()?;
        src.dir
            .fd
            .link_to(src.name(), &dst.dir.fd, dst.name())
            .errno()?;
        dst.vault
            .record_entry(ChangeKind::Added, self.child_path(newparent, newname), &sm);
        self.found(newparent, newname, &dst)
    }

    /// Entry `name` of `parent` for a change: not at the mount root (vaults are
    /// made and removed otherwise), and not on a read-only mount.
    fn entry_to_change(&self, parent: u64, name: &[u8]) -> FsResult<Entry> {
        if parent == ROOT_INO {
            return Err(Errno::EPERM);
        }
        self.check_writable()?;
        self.child_entry(parent, name)
    }

    /// The inode (if known) of an existing backing entry.
    fn known_ino(&self, e: &Entry) -> Option<(u64, Stat)> {
        let m = e.dir.fd.stat(e.name()).ok()?;
        let ino = self.inodes.read().by_backing(&e.vault.id, m.dev(), m.ino());
        Some((ino.unwrap_or(0), m))
    }

    pub fn unlink(&self, parent: u64, name: &[u8]) -> FsResult<()> {
        let e = self.entry_to_change(parent, name)?;
        let _gate = e.vault.gate.read();
        let _ns = e.vault.ns.lock();
        let (ino, m) = self.known_ino(&e).ok_or(Errno::ENOENT)?;
        if m.is_dir() {
            return Err(Errno::EISDIR);
        }
        self.mark_stated(&e, &m)?;
        e.dir.fd.unlink(e.name()).errno()?;
        e.remove_sidecar();
        if ino != 0 {
            let mut inodes = self.inodes.write();
            inodes.name_removed(ino, parent, name);
            if m.nlink() <= 1 {
                inodes.unlinked(ino);
            }
        }
        if ino != 0 {
            self.drop_if_removed(ino);
        }
        e.vault
            .record_entry(ChangeKind::Removed, self.child_path(parent, name), &m);
        Ok(())
    }

    /// A backing directory with nothing but its IV (and leftovers of ours) in it.
    fn empty_backing_dir(&self, e: &Entry) -> FsResult<bool> {
        let d = e.dir.fd.child(e.name()).errno()?;
        Ok(d.entries()
            .errno()?
            .iter()
            .all(|n| n == DIRIV_FILE || n == MODES_FILE || n.starts_with(".tmp-")))
    }

    /// Remove the empty backing directory of entry `e`.
    fn remove_dir_entry(&self, e: &Entry) -> FsResult<()> {
        if !self.empty_backing_dir(e)? {
            return Err(Errno::ENOTEMPTY);
        }
        let d = e.dir.fd.child(e.name()).errno()?;
        let iv = d.read_diriv().ok();
        for n in d.entries().errno()? {
            let _ = d.unlink(&n);
        }
        if let Err(err) = e.dir.fd.rmdir(e.name()) {
            if let Some(iv) = iv {
                let _ = std::fs::write(d.at(DIRIV_FILE), iv);
            }
            return Err(super::errno::from_io(&err));
        }
        Ok(())
    }

    pub fn rmdir(&self, parent: u64, name: &[u8]) -> FsResult<()> {
        let e = self.entry_to_change(parent, name)?;
        let _gate = e.vault.gate.read();
        let _ns = e.vault.ns.lock();
        let (ino, m) = self.known_ino(&e).ok_or(Errno::ENOENT)?;
        if !m.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        self.mark_stated(&e, &m)?;
        self.remove_dir_entry(&e)?;
        e.remove_sidecar();
        if ino != 0 {
            self.inodes.write().unlinked(ino);
        }
        e.vault.record(
            ChangeKind::Removed,
            format!("{}/", self.child_path(parent, name)),
        );
        Ok(())
    }

    pub fn rename(
        &self,
        parent: u64,
        name: &[u8],
        newparent: u64,
        newname: &[u8],
        flags: u32,
    ) -> FsResult<()> {
        if parent == ROOT_INO || newparent == ROOT_INO {
            return self.root_rename(parent, name, newparent, newname, flags);
        }
        self.check_writable()?;
        let src = self.child_entry(parent, name)?;
        let dst = self.child_entry(newparent, newname)?;
        if src.vault.id != dst.vault.id {
            return Err(Errno::EXDEV);
        }
        let vault = src.vault.clone();
        let _gate = vault.gate.read();
        let _ns = vault.ns.lock();
        let (src_ino, sm) = self.known_ino(&src).ok_or(Errno::ENOENT)?;
        let target = self.known_ino(&dst);
        let old_path = self.child_path(parent, name);
        let new_path = self.child_path(newparent, newname);
        let exchange = flags & libc::RENAME_EXCHANGE != 0;
        let how = if exchange {
            MoveKind::Swap
        } else {
            MoveKind::Rename
        };
        self.mark_move(&src, &dst, how)?;
        if exchange {
            let (dst_ino, _) = target.ok_or(Errno::ENOENT)?;
            src.dir
                .fd
                .rename_to(src.name(), &dst.dir.fd, dst.name(), flags)
                .errno()?;
            let mut inodes = self.inodes.write();
            inodes.moved(src_ino, (parent, name), newparent, newname);
            inodes.moved(dst_ino, (newparent, newname), parent, name);
            drop(inodes);
            for (path, e) in [(old_path, &src), (new_path, &dst)] {
                let m = e.dir.fd.stat(e.name()).errno()?;
                vault.record_entry(ChangeKind::Modified, path, &m);
            }
            return Ok(());
        }
        if let Some((_, tm)) = &target {
            if tm.dev() == sm.dev() && tm.ino() == sm.ino() {
                // Two links to one file: rename(2) does nothing.
                return Ok(());
            }
            if flags & libc::RENAME_NOREPLACE != 0 {
                return Err(Errno::EEXIST);
            }
            match (sm.is_dir(), tm.is_dir()) {
                (true, false) => return Err(Errno::ENOTDIR),
                (false, true) => return Err(Errno::EISDIR),
                (true, true) => self.remove_dir_entry(&dst)?,
                _ => {}
            }
        }
        dst.write_sidecar()?;
        src.dir
            .fd
            .rename_to(src.name(), &dst.dir.fd, dst.name(), flags)
            .errno()?;
        src.remove_sidecar();
        let mut inodes = self.inodes.write();
        let mut replaced = None;
        if let Some((dst_ino, tm)) = target {
            if dst_ino != 0 {
                inodes.name_removed(dst_ino, newparent, newname);
                if tm.is_dir() || tm.nlink() <= 1 {
                    inodes.unlinked(dst_ino);
                }
                replaced = Some(dst_ino);
            }
        }
        if src_ino != 0 {
            inodes.moved(src_ino, (parent, name), newparent, newname);
        }
        drop(inodes);
        if let Some(ino) = replaced {
            self.drop_if_removed(ino);
        }
        vault.record_entry(ChangeKind::Removed, old_path, &sm);
        vault.record_entry(ChangeKind::Added, new_path, &sm);
        Ok(())
    }
}
