//! What the adapter asks first for every operation: each hook answers the
//! operation itself when it concerns `.versions` (a version inode, or the
//! reserved name at a vault's top level) and returns `None`, or gives the
//! reply back untouched for the live tree.
//!
//! Errors: EROFS for any change inside `.versions` (and for removing or
//! renaming `.versions` itself); EINVAL for making an entry of the reserved
//! name at a vault's top level (as for `.git`, see `store::vpath`).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use fuser::{
    Errno, FileHandle, FopenFlags, Generation, INodeNo, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyLseek, ReplyOpen, ReplyWrite,
    ReplyXattr,
};

use super::{is_reserved, owns};
use crate::fs::core::FsCore;

/// A reply that can carry an error.
pub trait Refuse {
    fn refuse(self, e: Errno);
}

macro_rules! refuse {
    ($($t:ty),*) => {$(
        impl Refuse for $t {
            fn refuse(self, e: Errno) {
                self.error(e)
            }
        }
    )*};
}
refuse!(
    ReplyAttr,
    ReplyCreate,
    ReplyData,
    ReplyEmpty,
    ReplyEntry,
    ReplyOpen,
    ReplyWrite,
    ReplyXattr,
    ReplyLseek
);

/// A change of inode `ino` (setattr, write, xattrs, fallocate).
pub fn refuse<R: Refuse>(ino: u64, reply: R) -> Option<R> {
    if owns(ino) {
        reply.refuse(Errno::EROFS);
        return None;
    }
    Some(reply)
}

/// Making `name` in `parent` (mknod, mkdir, symlink, create, link's target).
pub fn refuse_new<R: Refuse>(core: &FsCore, parent: u64, name: &[u8], reply: R) -> Option<R> {
    if owns(parent) {
        reply.refuse(Errno::EROFS);
    } else if is_reserved(core, parent, name) {
        reply.refuse(Errno::EINVAL);
    } else {
        return Some(reply);
    }
    None
}

/// Removing `name` from `parent` (unlink, rmdir).
pub fn refuse_remove<R: Refuse>(core: &FsCore, parent: u64, name: &[u8], reply: R) -> Option<R> {
    if owns(parent) || is_reserved(core, parent, name) {
        reply.refuse(Errno::EROFS);
        return None;
    }
    Some(reply)
}

/// A rename: its source is removed, its target made.
pub fn refuse_rename<R: Refuse>(
    core: &FsCore,
    from: (u64, &[u8]),
    to: (u64, &[u8]),
    reply: R,
) -> Option<R> {
    let reply = refuse_remove(core, from.0, from.1, reply)?;
    refuse_new(core, to.0, to.1, reply)
}

/// A hard link of `ino` as `name` in `parent`.
pub fn refuse_link<R: Refuse>(core: &FsCore, ino: u64, to: (u64, &[u8]), reply: R) -> Option<R> {
    let reply = refuse(ino, reply)?;
    refuse_new(core, to.0, to.1, reply)
}

pub fn lookup(core: &FsCore, parent: u64, name: &[u8], reply: ReplyEntry) -> Option<ReplyEntry> {
    if !owns(parent) && !is_reserved(core, parent, name) {
        return Some(reply);
    }
    match core.vlookup(parent, name) {
        Ok((a, ttl)) => reply.entry(&ttl, &a, Generation(0)),
        Err(e) => reply.error(e),
    }
    None
}

/// FORGET: true when it was a version inode's.
pub fn forget(core: &FsCore, ino: u64, n: u64) -> bool {
    if owns(ino) {
        core.versions.table.write().forget(ino, n);
    }
    owns(ino)
}

pub fn getattr(core: &FsCore, ino: u64, reply: ReplyAttr) -> Option<ReplyAttr> {
    if !owns(ino) {
        return Some(reply);
    }
    match core.vgetattr(ino) {
        Ok((a, ttl)) => reply.attr(&ttl, &a),
        Err(e) => reply.error(e),
    }
    None
}

pub fn readlink(core: &FsCore, ino: u64, reply: ReplyData) -> Option<ReplyData> {
    if !owns(ino) {
        return Some(reply);
    }
    match core.vreadlink(ino) {
        Ok(t) => reply.data(&t),
        Err(e) => reply.error(e),
    }
    None
}

/// OPEN of a version file: read-only, and the kernel keeps its pages (a
/// version never changes).
pub fn open(core: &FsCore, ino: u64, flags: i32, reply: ReplyOpen) -> Option<ReplyOpen> {
    if !owns(ino) {
        return Some(reply);
    }
    match core.vopen(ino, flags) {
        Ok(fh) => reply.opened(
            FileHandle(fh),
            FopenFlags::FOPEN_KEEP_CACHE | FopenFlags::FOPEN_NOFLUSH,
        ),
        Err(e) => reply.error(e),
    }
    None
}

pub fn read(
    core: &FsCore,
    (ino, fh): (u64, u64),
    offset: u64,
    size: u32,
    reply: ReplyData,
) -> Option<ReplyData> {
    if !owns(ino) {
        return Some(reply);
    }
    match core.vread(ino, fh, offset, size) {
        Ok(d) => reply.data(&d),
        Err(e) => reply.error(e),
    }
    None
}

pub fn release(core: &FsCore, ino: u64, fh: u64, reply: ReplyEmpty) -> Option<ReplyEmpty> {
    if !owns(ino) {
        return Some(reply);
    }
    core.versions.files.lock().remove(&fh);
    reply.ok();
    None
}

/// FLUSH, FSYNC, FSYNCDIR: nothing to write back.
pub fn nothing(ino: u64, reply: ReplyEmpty) -> Option<ReplyEmpty> {
    if !owns(ino) {
        return Some(reply);
    }
    reply.ok();
    None
}

pub fn opendir(core: &FsCore, ino: u64, reply: ReplyOpen) -> Option<ReplyOpen> {
    if !owns(ino) {
        return Some(reply);
    }
    match core.vopendir(ino) {
        Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
        Err(e) => reply.error(e),
    }
    None
}

pub fn readdir(
    core: &FsCore,
    (ino, fh): (u64, u64),
    offset: u64,
    mut reply: ReplyDirectory,
) -> Option<ReplyDirectory> {
    if !owns(ino) {
        return Some(reply);
    }
    let Some(list) = core.versions.lists.lock().get(&fh).cloned() else {
        reply.error(Errno::EBADF);
        return None;
    };
    for (i, e) in list.iter().enumerate().skip(offset as usize) {
        // The inode shown: the node's when known (counted, then uncounted).
        let shown = match core.vplus(ino, e) {
            Ok((n, _)) if e.make.is_some() => {
                core.versions.table.write().forget(n, 1);
                n
            }
            Ok((n, _)) => n,
            Err(_) => u64::MAX - i as u64,
        };
        let name = OsStr::from_bytes(&e.name);
        if reply.add(INodeNo(shown), i as u64 + 1, e.kind, name) {
            break;
        }
    }
    reply.ok();
    None
}

pub fn readdirplus(
    core: &FsCore,
    (ino, fh): (u64, u64),
    offset: u64,
    mut reply: ReplyDirectoryPlus,
) -> Option<ReplyDirectoryPlus> {
    if !owns(ino) {
        return Some(reply);
    }
    let Some(list) = core.versions.lists.lock().get(&fh).cloned() else {
        reply.error(Errno::EBADF);
        return None;
    };
    for (i, e) in list.iter().enumerate().skip(offset as usize) {
        // An entry that cannot be read is left out (its lookup says why).
        let Ok((n, a)) = core.vplus(ino, e) else {
            continue;
        };
        let name = OsStr::from_bytes(&e.name);
        if reply.add(INodeNo(n), i as u64 + 1, name, &e.ttl, &a, Generation(0)) {
            if e.make.is_some() {
                core.versions.table.write().forget(n, 1);
            }
            break;
        }
    }
    reply.ok();
    None
}

pub fn releasedir(core: &FsCore, ino: u64, fh: u64, reply: ReplyEmpty) -> Option<ReplyEmpty> {
    if !owns(ino) {
        return Some(reply);
    }
    core.versions.lists.lock().remove(&fh);
    reply.ok();
    None
}

/// GETXATTR: the history keeps no extended attributes.
pub fn getxattr(ino: u64, reply: ReplyXattr) -> Option<ReplyXattr> {
    if !owns(ino) {
        return Some(reply);
    }
    reply.error(Errno::ENODATA);
    None
}

pub fn listxattr(ino: u64, size: u32, reply: ReplyXattr) -> Option<ReplyXattr> {
    if !owns(ino) {
        return Some(reply);
    }
    if size == 0 {
        reply.size(0);
    } else {
        reply.data(&[]);
    }
    None
}

/// ACCESS (asked without `default_permissions` only): no writing.
pub fn access(ino: u64, mask: i32, reply: ReplyEmpty) -> Option<ReplyEmpty> {
    if !owns(ino) {
        return Some(reply);
    }
    if mask & libc::W_OK != 0 {
        reply.error(Errno::EROFS);
    } else {
        reply.ok();
    }
    None
}

/// LSEEK with SEEK_DATA or SEEK_HOLE: a version file is all data.
pub fn lseek(
    core: &FsCore,
    (ino, fh): (u64, u64),
    offset: i64,
    whence: i32,
    reply: ReplyLseek,
) -> Option<ReplyLseek> {
    if !owns(ino) {
        return Some(reply);
    }
    let len = core.versions.files.lock().get(&fh).map(|b| b.len() as i64);
    match (len, whence) {
        (None, _) => reply.error(Errno::EBADF),
        (Some(len), _) if offset < 0 || offset >= len => reply.error(Errno::ENXIO),
        (Some(_), libc::SEEK_DATA) => reply.offset(offset),
        (Some(len), libc::SEEK_HOLE) => reply.offset(len),
        _ => reply.error(Errno::EINVAL),
    }
    None
}

/// The live inode whose file system `ino` reports in STATFS: its vault's root.
pub fn statfs_ino(core: &FsCore, ino: u64) -> u64 {
    if !owns(ino) {
        return ino;
    }
    core.versions
        .table
        .read()
        .get(ino)
        .map(|n| n.vault.root_ino)
        .unwrap_or(ino)
}
