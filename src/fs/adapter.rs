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

pub struct PkFs(pub Arc<FsCore>);

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
        self.entry(self.0.lookup(parent.0, name.as_bytes()), reply);
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.0.inodes.write().forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
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
        self.entry(
            self.0.mkdir(parent.0, name.as_bytes(), mode, caller(req)),
            reply,
        );
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        Self::empty(self.0.unlink(parent.0, name.as_bytes()), reply);
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
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
        self.entry(self.0.link(ino.0, newparent.0, newname.as_bytes()), reply);
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        match self.0.open(ino.0, flags.0) {
            Ok(fh) => reply.opened(FileHandle(fh), file_open_flags(flags.0)),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.0.read(fh.0, offset, size) {
            Ok(d) => reply.data(&d),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.0.write(fh.0, offset, data) {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        Self::empty(self.0.flush(fh.0, false), reply);
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        Self::empty(self.0.release(fh.0), reply);
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        Self::empty(self.0.flush(fh.0, true), reply);
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.0.opendir(ino.0) {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
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
        mut reply: ReplyDirectoryPlus,
    ) {
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
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
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
        match self.0.fsyncdir(ino.0) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn statfs(&self, _req: &Request, ino: INodeNo, reply: ReplyStatfs) {
        match self.0.statfs(ino.0) {
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
        Self::empty(self.0.setxattr(ino.0, name.as_bytes(), value, flags), reply);
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        xattr_reply(self.0.getxattr(ino.0, name.as_bytes()), size, reply);
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        xattr_reply(self.0.listxattr(ino.0), size, reply);
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        Self::empty(self.0.removexattr(ino.0, name.as_bytes()), reply);
    }

    fn access(&self, _req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
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
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        Self::empty(self.0.fallocate(fh.0, offset, length, mode), reply);
    }

    fn lseek(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: i64,
        whence: i32,
        reply: ReplyLseek,
    ) {
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

/// Undo fuser 0.18's conversion of a time before 1970 (`system_time_from_time`
/// computes `epoch - (secs + nsecs)` for `secs < 0`, where the kernel's
/// `(secs, nsecs)` means `epoch - |secs| + nsecs`: −1 ns arrived as
/// −1.999999999 s). Every time fuser hands over before the epoch went through
/// that branch with `|secs| >= 1` and `nsecs < 1e9`, so both are recovered
/// exactly from the whole and fractional seconds of its distance to the epoch.
pub fn fuser_time_fixed(t: TimeOrNow) -> TimeOrNow {
    use std::time::{Duration, UNIX_EPOCH};
    match t {
        TimeOrNow::SpecificTime(st) => match UNIX_EPOCH.duration_since(st) {
            Ok(d) if !d.is_zero() => TimeOrNow::SpecificTime(
                UNIX_EPOCH - Duration::from_secs(d.as_secs())
                    + Duration::from_nanos(u64::from(d.subsec_nanos())),
            ),
            _ => TimeOrNow::SpecificTime(st),
        },
        now => now,
    }
}

#[cfg(test)]
mod time_tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    /// What fuser 0.18 makes of the kernel's (secs, nsecs).
    fn as_fuser_gives_it(secs: i64, nsecs: u32) -> TimeOrNow {
        TimeOrNow::SpecificTime(if secs >= 0 {
            UNIX_EPOCH + Duration::new(secs as u64, nsecs)
        } else {
            UNIX_EPOCH - Duration::new(secs.unsigned_abs(), nsecs)
        })
    }

    #[test]
    fn times_before_1970_come_out_exact() {
        for (secs, nsecs) in [
            (-1i64, 999_999_999u32),
            (-1, 0),
            (-2, 500_000_000),
            (-86_400 * 365 * 30, 123_456_789),
            (0, 0),
            (0, 1),
            (1_700_000_000, 999_999_999),
        ] {
            let TimeOrNow::SpecificTime(t) = fuser_time_fixed(as_fuser_gives_it(secs, nsecs))
            else {
                panic!("a specific time stays one");
            };
            let ts = crate::store::dirfd::timespec(t);
            assert_eq!((ts.tv_sec, ts.tv_nsec as u32), (secs, nsecs));
        }
    }
}
