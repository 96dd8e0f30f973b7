//! The sealing gate in front of the mount: the kernel talks to a [`GateFs`],
//! which hands every operation to the open file system ([`PkFs`]) while the
//! node is unsealed, and answers for an empty, read-only root while it is
//! sealed. Sealing drops the [`FsCore`] (with it the node, every vault key and
//! the decrypted page cache); unsealing puts a new one in. The mount stays in
//! place throughout.
//!
//! Every operation also stamps the time of the last activity, which the
//! daemon's `--idle` timer reads.

use std::ffi::OsStr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    AccessFlags, BsdFileFlags, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags,
    Generation, INodeNo, KernelConfig, LockOwner, Notifier, OpenFlags, RenameFlags, ReplyAttr,
    ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyLseek,
    ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use parking_lot::{Mutex, RwLock};

use super::core::FsCore;
use super::inodes::ROOT_INO;
use super::PkFs;

/// Told of each change: `Some(core)` once unsealed, `None` once sealed.
pub type Listener = Box<dyn Fn(Option<&Arc<FsCore>>) + Send + Sync>;

/// What the kernel's mount is connected to.
pub struct Gate {
    core: RwLock<Option<Arc<FsCore>>>,
    notifier: Mutex<Option<Notifier>>,
    /// Milliseconds since the epoch of the last file system or CLI activity.
    last_active: AtomicU64,
    ttl: Duration,
    listeners: Mutex<Vec<Listener>>,
    started: SystemTime,
    uid: u32,
    gid: u32,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Gate {
    pub fn new(core: Option<Arc<FsCore>>, ttl: Duration) -> Arc<Gate> {
        Arc::new(Gate {
            core: RwLock::new(core),
            notifier: Mutex::new(None),
            last_active: AtomicU64::new(now_ms()),
            ttl,
            listeners: Mutex::new(Vec::new()),
            started: SystemTime::now(),
            // SAFETY: geteuid/getegid cannot fail.
            uid: unsafe { libc::geteuid() },
            gid: unsafe { libc::getegid() },
        })
    }

    /// The open file system, `None` while sealed.
    pub fn core(&self) -> Option<Arc<FsCore>> {
        self.core.read().clone()
    }

    pub fn is_sealed(&self) -> bool {
        self.core.read().is_none()
    }

    /// Note activity now (file system operations, CLI commands).
    pub fn touch(&self) {
        self.last_active.store(now_ms(), Ordering::Relaxed);
    }

    /// How long since the last activity.
    pub fn idle_for(&self) -> Duration {
        Duration::from_millis(now_ms().saturating_sub(self.last_active.load(Ordering::Relaxed)))
    }

    pub fn set_notifier(&self, n: Notifier) {
        if let Some(core) = self.core() {
            *core.notifier.lock() = Some(n.clone());
        }
        *self.notifier.lock() = Some(n);
    }

    /// Call `l` at each unseal and seal from now on.
    pub fn on_change(&self, l: Listener) {
        self.listeners.lock().push(l);
    }

    /// Connect the mount to `core` (unsealing).
    pub fn open(&self, core: Arc<FsCore>) {
        *core.notifier.lock() = self.notifier.lock().clone();
        for l in self.listeners.lock().iter() {
            l(Some(&core));
        }
        *self.core.write() = Some(core);
        self.invalidate_root(&[]);
        self.touch();
    }

    /// Disconnect the file system and return it (sealing); the caller drops
    /// it once it has committed. The kernel is told to forget the vaults.
    pub fn close(&self) -> Option<Arc<FsCore>> {
        let core = self.core.write().take()?;
        for l in self.listeners.lock().iter() {
            l(None);
        }
        let names: Vec<String> = core.vaults.read().iter().map(|v| v.name()).collect();
        *core.notifier.lock() = None;
        self.invalidate_root(&names);
        Some(core)
    }

    fn invalidate_root(&self, names: &[String]) {
        let Some(n) = self.notifier.lock().clone() else {
            return;
        };
        for name in names {
            let _ = n.inval_entry(INodeNo(ROOT_INO), OsStr::new(name));
        }
        let _ = n.inval_inode(INodeNo(ROOT_INO), 0, 0);
    }

    fn sealed_root(&self) -> FileAttr {
        FileAttr {
            ino: INodeNo(ROOT_INO),
            size: 0,
            blocks: 0,
            atime: self.started,
            mtime: self.started,
            ctime: self.started,
            crtime: self.started,
            kind: FileType::Directory,
            perm: 0o500,
            nlink: 2,
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        }
    }
}

/// The `fuser::Filesystem` of the mount (see the module docs).
pub struct GateFs(pub Arc<Gate>);

impl GateFs {
    fn fs(&self) -> Option<PkFs> {
        self.0.touch();
        self.0.core().map(PkFs)
    }
}

/// What a sealed mount answers to anything but the root: permission denied.
const SEALED: Errno = Errno::EACCES;

impl Filesystem for GateFs {
    fn init(&mut self, req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // The kernel settings do not depend on the node: a sealed mount asks
        // for the same as an open one.
        super::adapter::init_kernel(req, config)
    }

    fn lookup(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.fs() {
            Some(fs) => fs.lookup(req, parent, name, reply),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn forget(&self, req: &Request, ino: INodeNo, nlookup: u64) {
        if let Some(fs) = self.fs() {
            fs.forget(req, ino, nlookup)
        }
    }

    fn getattr(&self, req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.fs() {
            Some(fs) => fs.getattr(req, ino, fh, reply),
            None if ino.0 == ROOT_INO => reply.attr(&self.0.ttl, &self.0.sealed_root()),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        crtime: Option<SystemTime>,
        chgtime: Option<SystemTime>,
        bkuptime: Option<SystemTime>,
        flags: Option<BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        match self.fs() {
            Some(fs) => fs.setattr(
                req, ino, mode, uid, gid, size, atime, mtime, ctime, fh, crtime, chgtime, bkuptime,
                flags, reply,
            ),
            None => reply.error(SEALED),
        }
    }

    fn readlink(&self, req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.fs() {
            Some(fs) => fs.readlink(req, ino, reply),
            None => reply.error(SEALED),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        match self.fs() {
            Some(fs) => fs.mknod(req, parent, name, mode, umask, rdev, reply),
            None => reply.error(SEALED),
        }
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        match self.fs() {
            Some(fs) => fs.mkdir(req, parent, name, mode, umask, reply),
            None => reply.error(SEALED),
        }
    }

    fn unlink(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.fs() {
            Some(fs) => fs.unlink(req, parent, name, reply),
            None => reply.error(SEALED),
        }
    }

    fn rmdir(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.fs() {
            Some(fs) => fs.rmdir(req, parent, name, reply),
            None => reply.error(SEALED),
        }
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        match self.fs() {
            Some(fs) => fs.symlink(req, parent, link_name, target, reply),
            None => reply.error(SEALED),
        }
    }

    fn rename(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        match self.fs() {
            Some(fs) => fs.rename(req, parent, name, newparent, newname, flags, reply),
            None => reply.error(SEALED),
        }
    }

    fn link(
        &self,
        req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        match self.fs() {
            Some(fs) => fs.link(req, ino, newparent, newname, reply),
            None => reply.error(SEALED),
        }
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        match self.fs() {
            Some(fs) => fs.open(req, ino, flags, reply),
            None => reply.error(SEALED),
        }
    }

    fn read(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        flags: OpenFlags,
        lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.fs() {
            Some(fs) => fs.read(req, ino, fh, offset, size, flags, lock_owner, reply),
            None => reply.error(Errno::EBADF),
        }
    }

    fn write(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        write_flags: WriteFlags,
        flags: OpenFlags,
        lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.fs() {
            Some(fs) => fs.write(
                req,
                ino,
                fh,
                offset,
                data,
                write_flags,
                flags,
                lock_owner,
                reply,
            ),
            None => reply.error(Errno::EBADF),
        }
    }

    fn flush(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        match self.fs() {
            Some(fs) => fs.flush(req, ino, fh, lock_owner, reply),
            None => reply.ok(),
        }
    }

    fn release(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        flags: OpenFlags,
        lock_owner: Option<LockOwner>,
        flush: bool,
        reply: ReplyEmpty,
    ) {
        match self.fs() {
            Some(fs) => fs.release(req, ino, fh, flags, lock_owner, flush, reply),
            None => reply.ok(),
        }
    }

    fn fsync(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        match self.fs() {
            Some(fs) => fs.fsync(req, ino, fh, datasync, reply),
            None => reply.ok(),
        }
    }

    fn opendir(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        match self.fs() {
            Some(fs) => fs.opendir(req, ino, flags, reply),
            None if ino.0 == ROOT_INO => reply.opened(FileHandle(0), FopenFlags::empty()),
            None => reply.error(SEALED),
        }
    }

    fn readdir(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        match self.fs() {
            Some(fs) if fh.0 != 0 => fs.readdir(req, ino, fh, offset, reply),
            _ => {
                for (i, name) in [".", ".."].iter().enumerate().skip(offset as usize) {
                    let next = i as u64 + 1;
                    if reply.add(INodeNo(ROOT_INO), next, FileType::Directory, name) {
                        break;
                    }
                }
                reply.ok()
            }
        }
    }

    fn readdirplus(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        match self.fs() {
            Some(fs) if fh.0 != 0 => fs.readdirplus(req, ino, fh, offset, reply),
            _ => {
                let attr = self.0.sealed_root();
                for (i, name) in [".", ".."].iter().enumerate().skip(offset as usize) {
                    let next = i as u64 + 1;
                    let ttl = self.0.ttl;
                    if reply.add(INodeNo(ROOT_INO), next, name, &ttl, &attr, Generation(0)) {
                        break;
                    }
                }
                reply.ok()
            }
        }
    }

    fn releasedir(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        match self.fs() {
            Some(fs) if fh.0 != 0 => fs.releasedir(req, ino, fh, flags, reply),
            _ => reply.ok(),
        }
    }

    fn fsyncdir(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        match self.fs() {
            Some(fs) => fs.fsyncdir(req, ino, fh, datasync, reply),
            None => reply.ok(),
        }
    }

    fn statfs(&self, req: &Request, ino: INodeNo, reply: ReplyStatfs) {
        match self.fs() {
            Some(fs) => fs.statfs(req, ino, reply),
            None => reply.statfs(0, 0, 0, 0, 0, 4096, 255, 4096),
        }
    }

    fn setxattr(
        &self,
        req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        position: u32,
        reply: ReplyEmpty,
    ) {
        match self.fs() {
            Some(fs) => fs.setxattr(req, ino, name, value, flags, position, reply),
            None => reply.error(SEALED),
        }
    }

    fn getxattr(&self, req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        match self.fs() {
            Some(fs) => fs.getxattr(req, ino, name, size, reply),
            None => reply.error(Errno::ENODATA),
        }
    }

    fn listxattr(&self, req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        match self.fs() {
            Some(fs) => fs.listxattr(req, ino, size, reply),
            None if size == 0 => reply.size(0),
            None => reply.data(&[]),
        }
    }

    fn removexattr(&self, req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.fs() {
            Some(fs) => fs.removexattr(req, ino, name, reply),
            None => reply.error(SEALED),
        }
    }

    fn access(&self, req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        match self.fs() {
            Some(fs) => fs.access(req, ino, mask, reply),
            None if ino.0 == ROOT_INO && mask.bits() & libc::W_OK == 0 => reply.ok(),
            None => reply.error(SEALED),
        }
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        match self.fs() {
            Some(fs) => fs.create(req, parent, name, mode, umask, flags, reply),
            None => reply.error(SEALED),
        }
    }

    fn fallocate(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        match self.fs() {
            Some(fs) => fs.fallocate(req, ino, fh, offset, length, mode, reply),
            None => reply.error(Errno::EBADF),
        }
    }

    fn lseek(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: i64,
        whence: i32,
        reply: ReplyLseek,
    ) {
        match self.fs() {
            Some(fs) => fs.lseek(req, ino, fh, offset, whence, reply),
            None => reply.error(Errno::EBADF),
        }
    }
}
