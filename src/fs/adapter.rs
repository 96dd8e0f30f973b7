//! `fuser::Filesystem` for the mount: each operation checks its input, calls a
//! helper of [`FsCore`] returning `Result<_, Errno>`, and replies.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use fuser::{
    AccessFlags, BsdFileFlags, Errno, FileHandle, Filesystem, FopenFlags, Generation, INodeNo,
    InitFlags, KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyLseek, ReplyOpen, ReplyStatfs,
    ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};

use super::core::FsCore;
use super::ops_entry::{Caller, SetAttr};
use super::versions::hooks as v;

#[path = "adapter_time.rs"]
mod time;
pub use time::fuser_time_fixed;

pub struct PkFs(pub Arc<FsCore>);

/// `hook!(reply = v::op(…, reply))`: let `.versions` answer first (see
/// `fs/versions/hooks.rs`); go on with the reply it gives back, if any.
macro_rules! hook {
    (mut $r:ident = $e:expr) => {
        let Some(mut $r) = $e else { return };
    };
    ($r:ident = $e:expr) => {
        let Some($r) = $e else { return };
    };
}

/// Opening a file keeps the kernel's page cache of it. Every change to a
/// file's content goes through this mount's kernel inode, except the CLI's,
/// and those end in `FsCore::resync`, which invalidates every inode of the
/// vault. Dropping the cache on each open instead would race: a page dropped
/// after a writer copied into it but before its WRITE reached the daemon is
/// read back short, and the kernel fills the tail with zeros it then keeps.
const FILE_OPEN_FLAGS: FopenFlags = FopenFlags::FOPEN_KEEP_CACHE;

/// The open flags of a file opened with `flags`. A descriptor that cannot
/// change the file (read-only, no `O_TRUNC`) also asks the kernel not to send
/// FLUSH when it is closed: its flush had nothing of its own to write back
/// (other descriptors' writes are written back by their own close, and
/// release still writes back whatever is left), POSIX locks are the kernel's
/// (pkfs implements no lock operations), and the round trip was one request in
/// five of a tree reader such as `md5sum -c`.
fn file_open_flags(flags: i32) -> FopenFlags {
    let read_only = flags & libc::O_ACCMODE == libc::O_RDONLY && flags & libc::O_TRUNC == 0;
    if read_only {
        FILE_OPEN_FLAGS | FopenFlags::FOPEN_NOFLUSH
    } else {
        FILE_OPEN_FLAGS
    }
}

/// The kernel settings of the mount (also asked for by a sealed mount, whose
/// kernel connection is made before any node is open).
pub fn init_kernel(_req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
    // 1 MiB writes (fuser's own limit is 16 MiB). The kernel offers its
    // readahead window (128 KiB unless the admin raised it) as the most a
    // daemon may ask for: take all of it. fuser derives max_pages from the
    // larger of the two and asks for FUSE_BIG_WRITES and FUSE_MAX_PAGES.
    let _ = config.set_max_write(1 << 20);
    // READDIRPLUS for every listing (not AUTO): each entry comes with its
    // attributes, so `ls -l`, `find` and `rm -r` need no LOOKUP per entry,
    // and every d_ino is the inode number stat(2) shows.
    let _ = config.add_capabilities(InitFlags::FUSE_DO_READDIRPLUS);
    let readahead = match config.set_max_readahead(u32::MAX) {
        Err(max) => {
            let _ = config.set_max_readahead(max);
            max
        }
        Ok(_) => u32::MAX,
    };
    tracing::debug!(
        "FUSE init: kernel ABI {:?}, max_write {}, max_readahead {readahead} (fuser asks for ASYNC_READ, BIG_WRITES, MAX_PAGES; pkfs for DO_READDIRPLUS), kernel offers {:?}",
        config.kernel_abi(),
        1 << 20,
        config.capabilities()
    );
    Ok(())
}

fn caller(req: &Request) -> Caller {
    Caller {
        uid: req.uid(),
        gid: req.gid(),
    }
}

impl PkFs {
    fn entry(&self, r: Result<fuser::FileAttr, Errno>, reply: ReplyEntry) {
        match r {
            Ok(a) => reply.entry(&self.0.cfg.ttl, &a, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn empty(r: Result<(), Errno>, reply: ReplyEmpty) {
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }
}

impl Filesystem for PkFs {
    fn init(&mut self, req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        init_kernel(req, config)
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        hook!(reply = v::lookup(&self.0, parent.0, name.as_bytes(), reply));
        self.entry(self.0.lookup(parent.0, name.as_bytes()), reply);
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        if v::forget(&self.0, ino.0, nlookup) {
            return;
        }
        self.0.inodes.write().forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        hook!(reply = v::getattr(&self.0, ino.0, reply));
        match self.0.getattr(ino.0) {
            Ok(a) => reply.attr(&self.0.cfg.ttl, &a),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        hook!(reply = v::refuse(ino.0, reply));
        let a = SetAttr {
            mode,
            uid,
            gid,
            size,
            atime: atime.map(fuser_time_fixed),
            mtime: mtime.map(fuser_time_fixed),
        };
        match self.0.setattr(ino.0, a) {
            Ok(a) => reply.attr(&self.0.cfg.ttl, &a),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        hook!(reply = v::readlink(&self.0, ino.0, reply));
        match self.0.readlink(ino.0) {
            Ok(t) => reply.data(&t),
            Err(e) => reply.error(e),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        hook!(reply = v::refuse_new(&self.0, parent.0, name.as_bytes(), reply));
        let r = self
            .0
            .mknod(parent.0, name.as_bytes(), mode, rdev, caller(req));
        self.entry(r, reply);
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        hook!(reply = v::refuse_new(&self.0, parent.0, name.as_bytes(), reply));
        self.entry(
            self.0.mkdir(parent.0, name.as_bytes(), mode, caller(req)),
            reply,
        );
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        hook!(reply = v::refuse_remove(&self.0, parent.0, name.as_bytes(), reply));
        Self::empty(self.0.unlink(parent.0, name.as_bytes()), reply);
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        hook!(reply = v::refuse_remove(&self.0, parent.0, name.as_bytes(), reply));
        Self::empty(self.0.rmdir(parent.0, name.as_bytes()), reply);
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        hook!(reply = v::refuse_new(&self.0, parent.0, link_name.as_bytes(), reply));
        let r = self.0.symlink(
            parent.0,
            link_name.as_bytes(),
            target.as_os_str().as_bytes(),
            caller(req),
        );
        self.entry(r, reply);
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let (from, to) = (
            (parent.0, name.as_bytes()),
            (newparent.0, newname.as_bytes()),
        );
        hook!(reply = v::refuse_rename(&self.0, from, to, reply));
        let r = self.0.rename(
            parent.0,
            name.as_bytes(),
            newparent.0,
            newname.as_bytes(),
            flags.bits(),
        );
        Self::empty(r, reply);
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let to = (newparent.0, newname.as_bytes());
        hook!(reply = v::refuse_link(&self.0, ino.0, to, reply));
        self.entry(self.0.link(ino.0, newparent.0, newname.as_bytes()), reply);
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        hook!(reply = v::open(&self.0, ino.0, flags.0, reply));
        match self.0.open(ino.0, flags.0) {
            Ok(fh) => reply.opened(FileHandle(fh), file_open_flags(flags.0)),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        hook!(reply = v::read(&self.0, (ino.0, fh.0), offset, size, reply));
        match self.0.read(fh.0, offset, size) {
            Ok(d) => reply.data(&d),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        hook!(reply = v::refuse(ino.0, reply));
        match self.0.write(fh.0, offset, data) {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        hook!(reply = v::nothing(ino.0, reply));
        Self::empty(self.0.flush(fh.0, false), reply);
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        hook!(reply = v::release(&self.0, ino.0, fh.0, reply));
        Self::empty(self.0.release(fh.0), reply);
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        hook!(reply = v::nothing(ino.0, reply));
        Self::empty(self.0.flush(fh.0, true), reply);
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        hook!(reply = v::opendir(&self.0, ino.0, reply));
        match self.0.opendir(ino.0) {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        reply: ReplyDirectory,
    ) {
        hook!(mut reply = v::readdir(&self.0, (ino.0, fh.0), offset, reply));
        let Some(list) = self.0.dir_listing(fh.0) else {
            reply.error(Errno::EBADF);
            return;
        };
        for (i, e) in list.iter().enumerate().skip(offset as usize) {
            if reply.add(
                INodeNo(e.ino),
                i as u64 + 1,
                e.kind,
                OsStr::from_bytes(&e.name),
            ) {
                break;
            }
        }
        reply.ok();
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        reply: ReplyDirectoryPlus,
    ) {
        hook!(mut reply = v::readdirplus(&self.0, (ino.0, fh.0), offset, reply));
        let Some(list) = self.0.dir_listing(fh.0) else {
            reply.error(Errno::EBADF);
            return;
        };
        let ttl = self.0.cfg.ttl;
        let dir = self.0.plus_dir(ino.0);
        for (i, e) in list.iter().enumerate().skip(offset as usize) {
            let Some(a) = self.0.plus_attr(&dir, e) else {
                continue;
            };
            let name = OsStr::from_bytes(&e.name);
            if reply.add(a.ino, i as u64 + 1, name, &ttl, &a, Generation(0)) {
                self.0.plus_unsent(e, &a);
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        hook!(reply = v::releasedir(&self.0, ino.0, fh.0, reply));
        self.0.releasedir(fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        hook!(reply = v::nothing(ino.0, reply));
        match self.0.fsyncdir(ino.0) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn statfs(&self, _req: &Request, ino: INodeNo, reply: ReplyStatfs) {
        match self.0.statfs(v::statfs_ino(&self.0, ino.0)) {
            Ok(s) => reply.statfs(
                s.f_blocks,
                s.f_bfree,
                s.f_bavail,
                s.f_files,
                s.f_ffree,
                s.f_bsize as u32,
                255,
                s.f_frsize as u32,
            ),
            Err(e) => reply.error(e),
        }
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        hook!(reply = v::refuse(ino.0, reply));
        Self::empty(self.0.setxattr(ino.0, name.as_bytes(), value, flags), reply);
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        hook!(reply = v::getxattr(ino.0, reply));
        xattr_reply(self.0.getxattr(ino.0, name.as_bytes()), size, reply);
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        hook!(reply = v::listxattr(ino.0, size, reply));
        xattr_reply(self.0.listxattr(ino.0), size, reply);
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        hook!(reply = v::refuse(ino.0, reply));
        Self::empty(self.0.removexattr(ino.0, name.as_bytes()), reply);
    }

    fn access(&self, _req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        hook!(reply = v::access(ino.0, mask.bits(), reply));
        // Only asked without default_permissions (see FsCore::access).
        Self::empty(self.0.access(ino.0, mask.bits()), reply);
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        hook!(reply = v::refuse_new(&self.0, parent.0, name.as_bytes(), reply));
        match self
            .0
            .create(parent.0, name.as_bytes(), mode, flags, caller(req))
        {
            Ok((attr, fh)) => reply.created(
                &self.0.cfg.ttl,
                &attr,
                Generation(0),
                FileHandle(fh),
                FILE_OPEN_FLAGS,
            ),
            Err(e) => reply.error(e),
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        hook!(reply = v::refuse(ino.0, reply));
        Self::empty(self.0.fallocate(fh.0, offset, length, mode), reply);
    }

    fn lseek(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: i64,
        whence: i32,
        reply: ReplyLseek,
    ) {
        hook!(reply = v::lseek(&self.0, (ino.0, fh.0), offset, whence, reply));
        match self.0.lseek(fh.0, offset, whence) {
            Ok(at) => reply.offset(at),
            Err(e) => reply.error(e),
        }
    }
}

fn xattr_reply(r: Result<Vec<u8>, Errno>, size: u32, reply: ReplyXattr) {
    match r {
        Ok(v) if size == 0 => reply.size(v.len() as u32),
        Ok(v) if v.len() > size as usize => reply.error(Errno::ERANGE),
        Ok(v) => reply.data(&v),
        Err(e) => reply.error(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_descriptors_that_cannot_change_the_file_skip_flush() {
        let noflush = |f: i32| file_open_flags(f).contains(FopenFlags::FOPEN_NOFLUSH);
        assert!(noflush(libc::O_RDONLY));
        assert!(noflush(libc::O_RDONLY | libc::O_NOATIME | libc::O_CLOEXEC));
        assert!(!noflush(libc::O_WRONLY));
        assert!(!noflush(libc::O_RDWR));
        assert!(!noflush(libc::O_WRONLY | libc::O_APPEND));
        // Truncating through a read-only descriptor changes the file.
        assert!(!noflush(libc::O_RDONLY | libc::O_TRUNC));
        for f in [libc::O_RDONLY, libc::O_RDWR, libc::O_RDONLY | libc::O_TRUNC] {
            assert!(file_open_flags(f).contains(FopenFlags::FOPEN_KEEP_CACHE));
        }
    }
}
