//! The status of a backing entry, from one `fstatat(2)` on its directory's
//! descriptor.
//!
//! std's `Metadata` can only come from a path or an open `File`; for the mount
//! that meant a walk through `/proc/self/fd/N/NAME` for every `stat`, about
//! twice the cost of the system call itself, on its most frequent operation.

use std::ffi::CStr;
use std::io;
use std::mem::MaybeUninit;

/// `struct stat` of one entry, read through [`crate::store::dirfd::DirFd`].
#[derive(Clone, Copy)]
pub struct Stat(libc::stat);

impl std::fmt::Debug for Stat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stat")
            .field("dev", &self.dev())
            .field("ino", &self.ino())
            .field("mode", &format_args!("{:o}", self.mode()))
            .field("len", &self.len())
            .finish()
    }
}

/// `path` as a C string (EINVAL if it holds a NUL byte).
pub(super) fn c_path(path: &std::path::Path) -> io::Result<std::ffi::CString> {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

// The field types of `struct stat` differ between architectures.
#[allow(clippy::unnecessary_cast)]
impl Stat {
    /// `fstatat(dirfd, name, flags)`.
    pub(crate) fn at(dirfd: libc::c_int, name: &CStr, flags: libc::c_int) -> io::Result<Stat> {
        let mut st = MaybeUninit::<libc::stat>::uninit();
        // SAFETY: name is NUL-terminated and st is writable memory of the
        // right size; the result is checked before st is read.
        let rc = unsafe { libc::fstatat(dirfd, name.as_ptr(), st.as_mut_ptr(), flags) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fstatat succeeded, so it filled st.
        Ok(Stat(unsafe { st.assume_init() }))
    }

    /// `fstat` of an open file, with the mode set through the mount
    /// (`modes.rs`).
    pub fn of_file(f: &std::fs::File) -> io::Result<Stat> {
        let fd = std::os::fd::AsRawFd::as_raw_fd(f);
        let st = Stat::at(fd, c"", libc::AT_EMPTY_PATH)?;
        Ok(super::modes::apply(st, true, || {
            format!("/proc/self/fd/{fd}").into()
        }))
    }

    /// `stat` of `path` (following a symlink, as `std::fs::metadata` does),
    /// with the mode set through the mount (`modes.rs`).
    pub fn of_path(path: &std::path::Path) -> io::Result<Stat> {
        let st = Stat::at(libc::AT_FDCWD, &c_path(path)?, 0)?;
        Ok(super::modes::apply(st, true, || path.to_path_buf()))
    }

    /// This status with permission bits `perm` (the file type is kept).
    pub fn with_perm(mut self, perm: u32) -> Stat {
        let fmt = self.0.st_mode as u32 & libc::S_IFMT;
        self.0.st_mode = (fmt | (perm & 0o7777)) as libc::mode_t;
        self
    }

    pub fn dev(&self) -> u64 {
        self.0.st_dev as u64
    }
    pub fn ino(&self) -> u64 {
        self.0.st_ino as u64
    }
    pub fn mode(&self) -> u32 {
        self.0.st_mode as u32
    }
    pub fn nlink(&self) -> u64 {
        self.0.st_nlink as u64
    }
    pub fn uid(&self) -> u32 {
        self.0.st_uid as u32
    }
    pub fn gid(&self) -> u32 {
        self.0.st_gid as u32
    }
    pub fn rdev(&self) -> u64 {
        self.0.st_rdev as u64
    }
    /// Size in bytes (never negative for an entry the kernel reports).
    pub fn len(&self) -> u64 {
        self.0.st_size.max(0) as u64
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn blksize(&self) -> u64 {
        self.0.st_blksize.max(0) as u64
    }
    pub fn blocks(&self) -> u64 {
        self.0.st_blocks.max(0) as u64
    }
    pub fn atime(&self) -> i64 {
        self.0.st_atime as i64
    }
    pub fn atime_nsec(&self) -> i64 {
        self.0.st_atime_nsec as i64
    }
    pub fn mtime(&self) -> i64 {
        self.0.st_mtime as i64
    }
    pub fn mtime_nsec(&self) -> i64 {
        self.0.st_mtime_nsec as i64
    }
    pub fn ctime(&self) -> i64 {
        self.0.st_ctime as i64
    }
    pub fn ctime_nsec(&self) -> i64 {
        self.0.st_ctime_nsec as i64
    }

    /// The `S_IFMT` bits of the mode.
    pub fn format(&self) -> u32 {
        self.mode() & libc::S_IFMT as u32
    }
    pub fn is_dir(&self) -> bool {
        self.format() == libc::S_IFDIR as u32
    }
    pub fn is_file(&self) -> bool {
        self.format() == libc::S_IFREG as u32
    }
    pub fn is_symlink(&self) -> bool {
        self.format() == libc::S_IFLNK as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn agrees_with_std() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("f"), b"12345").unwrap();
        std::os::unix::fs::symlink("f", d.path().join("l")).unwrap();
        let dir = std::fs::File::open(d.path()).unwrap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&dir);
        for (name, c) in [("f", c"f"), ("l", c"l")] {
            let ours = Stat::at(fd, c, libc::AT_SYMLINK_NOFOLLOW).unwrap();
            let std = std::fs::symlink_metadata(d.path().join(name)).unwrap();
            assert_eq!(
                (
                    ours.dev(),
                    ours.ino(),
                    ours.mode(),
                    ours.nlink(),
                    ours.len()
                ),
                (std.dev(), std.ino(), std.mode(), std.nlink(), std.len())
            );
            assert_eq!(
                (ours.uid(), ours.gid(), ours.rdev()),
                (std.uid(), std.gid(), std.rdev())
            );
            assert_eq!(
                (ours.blocks(), ours.blksize()),
                (std.blocks(), std.blksize())
            );
            assert_eq!(
                (
                    ours.mtime(),
                    ours.mtime_nsec(),
                    ours.ctime(),
                    ours.ctime_nsec()
                ),
                (std.mtime(), std.mtime_nsec(), std.ctime(), std.ctime_nsec())
            );
            assert_eq!(
                (ours.atime(), ours.atime_nsec()),
                (std.atime(), std.atime_nsec())
            );
            assert_eq!(ours.is_file(), std.is_file());
            assert_eq!(ours.is_symlink(), std.is_symlink());
            assert!(!ours.is_dir());
        }
        let me = Stat::at(fd, c"", libc::AT_EMPTY_PATH).unwrap();
        assert!(me.is_dir());
        assert_eq!(Stat::of_file(&dir).unwrap().ino(), me.ino());
        let via = Stat::of_path(&d.path().join("l")).unwrap();
        assert!(via.is_file(), "of_path follows a symlink");
        assert_eq!(via.len(), 5);
        let err = Stat::at(fd, c"missing", libc::AT_SYMLINK_NOFOLLOW).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
    }
}
