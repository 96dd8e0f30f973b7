//! The passthrough: each FUSE operation done on the backing directory.

use std::ffi::{CString, OsStr};
use std::fs::{self, File, OpenOptions};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use fuser::{
    Errno, FileHandle, Filesystem, FopenFlags, Generation, INodeNo, OpenFlags, RenameFlags,
    ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen,
    ReplyStatfs, ReplyWrite, Request, TimeOrNow, WriteFlags,
};

use super::{errno, fd_of, kind, now_or, Shared, State, TTL};

pub struct Passthrough(pub Arc<Shared>);

fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

fn check(rc: i32) -> Result<(), Errno> {
    if rc == 0 {
        Ok(())
    } else {
        Err(errno(std::io::Error::last_os_error()))
    }
}

impl Passthrough {
    fn path(&self, id: INodeNo) -> Result<std::path::PathBuf, Errno> {
        let st = self.0.st.lock().unwrap();
        self.0.path(&st, id.0)
    }

    fn entry(&self, r: Result<fuser::FileAttr, Errno>, reply: ReplyEntry) {
        match r {
            Ok(a) => reply.entry(&TTL, &a, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn empty(r: Result<(), Errno>, reply: ReplyEmpty) {
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn add_handle(&self, id: u64, f: File) -> u64 {
        let mut st = self.0.st.lock().unwrap();
        st.next_fh += 1;
        let fh = st.next_fh;
        st.handles.insert(fh, (id, f));
        fh
    }

    fn file(&self, fh: FileHandle) -> Result<File, Errno> {
        let st = self.0.st.lock().unwrap();
        let (_, f) = st.handles.get(&fh.0).ok_or(Errno::EBADF)?;
        f.try_clone().map_err(errno)
    }

    fn open_flags(flags: i32) -> OpenOptions {
        let mut o = OpenOptions::new();
        match flags & libc::O_ACCMODE {
            libc::O_RDONLY => o.read(true),
            libc::O_WRONLY => o.write(true),
            _ => o.read(true).write(true),
        };
        o.custom_flags(flags & (libc::O_APPEND | libc::O_TRUNC | libc::O_NOFOLLOW));
        o
    }

    #[allow(clippy::too_many_arguments)]
    fn setattr_inner(
        &self,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<SystemTime>,
        mtime: Option<SystemTime>,
    ) -> Result<fuser::FileAttr, Errno> {
        let p = self.path(ino)?;
        if let Some(m) = mode {
            fs::set_permissions(&p, fs::Permissions::from_mode(m & 0o7777)).map_err(errno)?;
        }
        if uid.is_some() || gid.is_some() {
            let (u, g) = (uid.unwrap_or(u32::MAX), gid.unwrap_or(u32::MAX));
            // SAFETY: a valid C string.
            check(unsafe { libc::lchown(cpath(&p).as_ptr(), u, g) })?;
        }
        if let Some(s) = size {
            OpenOptions::new()
                .write(true)
                .open(&p)
                .and_then(|f| f.set_len(s))
                .map_err(errno)?;
        }
        if atime.is_some() || mtime.is_some() {
            let ts = |t: Option<SystemTime>| match t {
                None => libc::timespec {
                    tv_sec: 0,
                    tv_nsec: libc::UTIME_OMIT,
                },
                Some(t) => {
                    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
                    libc::timespec {
                        tv_sec: d.as_secs() as i64,
                        tv_nsec: d.subsec_nanos() as i64,
                    }
                }
            };
            let times = [ts(atime), ts(mtime)];
            // SAFETY: a valid C string and two timespecs.
            check(unsafe {
                libc::utimensat(
                    libc::AT_FDCWD,
                    cpath(&p).as_ptr(),
                    times.as_ptr(),
                    libc::AT_SYMLINK_NOFOLLOW,
                )
            })?;
        }
        let m = fs::symlink_metadata(&p).map_err(errno)?;
        Ok(Shared::attr(ino.0, &m))
    }
}

fn forget_name(st: &mut State, parent: u64, name: &OsStr) {
    st.names
        .retain(|_, (p, n)| !(*p == parent && n.as_os_str() == name));
}

impl Filesystem for Passthrough {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        self.entry(self.0.enter(parent.0, name, false), reply)
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        let m = match fh.map(|fh| self.file(fh)) {
            Some(Ok(f)) => f.metadata().map_err(errno),
            _ => self
                .path(ino)
                .and_then(|p| fs::symlink_metadata(p).map_err(errno)),
        };
        match m {
            Ok(m) => reply.attr(&TTL, &Shared::attr(ino.0, &m)),
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
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let r = self.setattr_inner(ino, mode, uid, gid, size, now_or(atime), now_or(mtime));
        match r {
            Ok(a) => reply.attr(&TTL, &a),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.path(ino).and_then(|p| fs::read_link(p).map_err(errno)) {
            Ok(t) => reply.data(t.as_os_str().as_bytes()),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let r = self.path(parent).and_then(|p| {
            fs::DirBuilder::new()
                .mode(mode & !umask & 0o7777)
                .create(p.join(name))
                .map_err(errno)
        });
        self.entry(r.and_then(|()| self.0.enter(parent.0, name, true)), reply)
    }

    fn mknod(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let r = self.path(parent).and_then(|p| {
            let c = cpath(&p.join(name));
            // SAFETY: a valid C string; the result is checked.
            check(unsafe { libc::mknod(c.as_ptr(), mode & !umask, rdev as libc::dev_t) })
        });
        self.entry(r.and_then(|()| self.0.enter(parent.0, name, true)), reply)
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let r = self
            .path(parent)
            .and_then(|p| fs::remove_file(p.join(name)).map_err(errno));
        if r.is_ok() {
            forget_name(&mut self.0.st.lock().unwrap(), parent.0, name);
        }
        Self::empty(r, reply)
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let r = self
            .path(parent)
            .and_then(|p| fs::remove_dir(p.join(name)).map_err(errno));
        if r.is_ok() {
            forget_name(&mut self.0.st.lock().unwrap(), parent.0, name);
        }
        Self::empty(r, reply)
    }

    fn symlink(
        &self,
        _req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let r = self
            .path(parent)
            .and_then(|p| std::os::unix::fs::symlink(target, p.join(link_name)).map_err(errno));
        self.entry(
            r.and_then(|()| self.0.enter(parent.0, link_name, true)),
            reply,
        )
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
        let r = (|| {
            let mut st = self.0.st.lock().unwrap();
            let from = self.0.path(&st, parent.0)?.join(name);
            let to = self.0.path(&st, newparent.0)?.join(newname);
            let moved = fs::symlink_metadata(&from).map_err(errno)?.ino();
            // SAFETY: valid C strings; the result is checked.
            check(unsafe {
                libc::renameat2(
                    libc::AT_FDCWD,
                    cpath(&from).as_ptr(),
                    libc::AT_FDCWD,
                    cpath(&to).as_ptr(),
                    flags.bits(),
                )
            })?;
            forget_name(&mut st, newparent.0, newname);
            forget_name(&mut st, parent.0, name);
            if let Some(id) = st.by_bino.get(&moved).copied() {
                st.names.insert(id, (newparent.0, newname.to_owned()));
            }
            Ok(())
        })();
        Self::empty(r, reply)
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let r = self.path(ino).and_then(|from| {
            let to = self.path(newparent)?.join(newname);
            fs::hard_link(from, to).map_err(errno)
        });
        self.entry(
            r.and_then(|()| self.0.enter(newparent.0, newname, false)),
            reply,
        )
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let r = self
            .path(ino)
            .and_then(|p| Self::open_flags(flags.0).open(p).map_err(errno));
        match r {
            Ok(f) => reply.opened(FileHandle(self.add_handle(ino.0, f)), FopenFlags::empty()),
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
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyData,
    ) {
        let r = self.file(fh).and_then(|f| {
            let mut buf = vec![0u8; size as usize];
            let mut got = 0;
            while got < buf.len() {
                let n = f
                    .read_at(&mut buf[got..], offset + got as u64)
                    .map_err(errno)?;
                if n == 0 {
                    break;
                }
                got += n;
            }
            buf.truncate(got);
            Ok(buf)
        });
        match r {
            Ok(b) => reply.data(&b),
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
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyWrite,
    ) {
        // The kernel gives the offset (also for O_APPEND): write there.
        match self
            .file(fh)
            .and_then(|f| f.write_all_at(data, offset).map_err(errno))
        {
            Ok(()) => reply.written(data.len() as u32),
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: fuser::LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok()
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.0.st.lock().unwrap().handles.remove(&fh.0);
        reply.ok()
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        Self::empty(self.0.sync(fh.0), reply)
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.path(ino).and_then(|p| File::open(p).map_err(errno)) {
            Ok(f) => reply.opened(FileHandle(self.add_handle(ino.0, f)), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let r = self.file(fh).and_then(|f| {
            let dir = format!("/proc/self/fd/{}", fd_of(&f));
            let mut v = Vec::new();
            for e in fs::read_dir(dir).map_err(errno)? {
                let e = e.map_err(errno)?;
                let m = fs::symlink_metadata(e.path()).map_err(errno)?;
                v.push((e.file_name(), m));
            }
            Ok(v)
        });
        let entries = match r {
            Ok(v) => v,
            Err(e) => return reply.error(e),
        };
        let mut st = self.0.st.lock().unwrap();
        for (i, (name, m)) in entries.iter().enumerate().skip(offset as usize) {
            let id = Shared::id_of(&mut st, m.ino(), false);
            if reply.add(INodeNo(id), i as u64 + 1, kind(m), name) {
                break;
            }
        }
        let _ = ino;
        reply.ok()
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.0.st.lock().unwrap().handles.remove(&fh.0);
        reply.ok()
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        Self::empty(self.0.sync(fh.0), reply)
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let c = cpath(&self.0.backing);
        // SAFETY: a valid C string and a statvfs to fill; checked.
        let mut v: libc::statvfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::statvfs(c.as_ptr(), &mut v) } != 0 {
            return reply.error(errno(std::io::Error::last_os_error()));
        }
        reply.statfs(
            v.f_blocks,
            v.f_bfree,
            v.f_bavail,
            v.f_files,
            v.f_ffree,
            v.f_bsize as u32,
            v.f_namemax as u32,
            v.f_frsize as u32,
        )
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let r = self.path(parent).and_then(|p| {
            let mut o = Self::open_flags(flags);
            o.create(true)
                .mode(mode & !umask & 0o7777)
                .custom_flags(flags & (libc::O_EXCL | libc::O_TRUNC | libc::O_APPEND));
            if flags & libc::O_EXCL != 0 {
                o.create_new(true);
            }
            let existed = fs::symlink_metadata(p.join(name)).is_ok();
            let f = o.open(p.join(name)).map_err(errno)?;
            let a = self.0.enter(parent.0, name, !existed)?;
            Ok((f, a))
        });
        match r {
            Ok((f, a)) => {
                let fh = self.add_handle(a.ino.0, f);
                reply.created(&TTL, &a, Generation(0), FileHandle(fh), FopenFlags::empty())
            }
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
        let r = self.file(fh).and_then(|f| {
            // SAFETY: an open descriptor; the result is checked.
            check(unsafe { libc::fallocate(fd_of(&f), mode, offset as i64, length as i64) })
        });
        Self::empty(r, reply)
    }
}
