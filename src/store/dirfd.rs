//! Directory handles for the mount: an `O_PATH` descriptor per backing directory.
//!
//! Encrypted names are longer than plaintext ones, so a deep plaintext path can
//! map to a backing path longer than PATH_MAX. Every backing operation of the
//! mount therefore works relative to a directory descriptor, through the
//! `/proc/self/fd/N/NAME` form, which the kernel resolves from the descriptor and
//! not from the directory's (possibly over-long) path. A descriptor also follows
//! its directory across renames.

use std::ffi::CString;
use std::fs::{self, File, Metadata, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::format::names::{DirIv, DIRIV_FILE, DIRIV_LEN};

#[derive(Debug)]
pub struct DirFd {
    fd: OwnedFd,
}

fn cstr(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

impl DirFd {
    /// Open the directory at `path` (which must not be a symlink).
    pub fn open(path: &Path) -> io::Result<DirFd> {
        let c = cstr(path)?;
        // SAFETY: c is a valid NUL-terminated string; the result is checked.
        let fd = unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor that nothing else owns.
        Ok(DirFd {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// The path of the directory itself, resolved through the descriptor.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.fd.as_raw_fd()))
    }

    /// A short path that names entry `name` of this directory.
    pub fn at(&self, name: &str) -> PathBuf {
        self.path().join(name)
    }

    pub fn child(&self, name: &str) -> io::Result<DirFd> {
        DirFd::open(&self.at(name))
    }

    pub fn stat(&self, name: &str) -> io::Result<Metadata> {
        fs::symlink_metadata(self.at(name))
    }

    pub fn stat_self(&self) -> io::Result<Metadata> {
        fs::metadata(self.path())
    }

    pub fn read_diriv(&self) -> io::Result<DirIv> {
        let bytes = fs::read(self.at(DIRIV_FILE))?;
        bytes
            .as_slice()
            .try_into()
            .map_err(|_| io::Error::from_raw_os_error(libc::EIO))
    }

    /// Open a regular file of this directory for reading and (unless `ro`) writing.
    pub fn open_file(&self, name: &str, ro: bool) -> io::Result<File> {
        OpenOptions::new()
            .read(true)
            .write(!ro)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(self.at(name))
    }

    /// Create a new regular file (fails if `name` exists).
    pub fn create_file(&self, name: &str, mode: u32) -> io::Result<File> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(mode & 0o7777)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(self.at(name))
    }

    pub fn mkdir(&self, name: &str, mode: u32) -> io::Result<()> {
        let c = cstr(&self.at(name))?;
        // SAFETY: valid C string; result checked.
        check(unsafe { libc::mkdir(c.as_ptr(), (mode & 0o7777) as libc::mode_t) })
    }

    pub fn mknod(&self, name: &str, mode: u32, rdev: u64) -> io::Result<()> {
        let c = cstr(&self.at(name))?;
        // SAFETY: valid C string; result checked.
        check(unsafe { libc::mknod(c.as_ptr(), mode as libc::mode_t, rdev as libc::dev_t) })
    }

    pub fn symlink(&self, name: &str, target: &str) -> io::Result<()> {
        std::os::unix::fs::symlink(target, self.at(name))
    }

    pub fn readlink(&self, name: &str) -> io::Result<PathBuf> {
        fs::read_link(self.at(name))
    }

    pub fn unlink(&self, name: &str) -> io::Result<()> {
        fs::remove_file(self.at(name))
    }

    pub fn rmdir(&self, name: &str) -> io::Result<()> {
        fs::remove_dir(self.at(name))
    }

    pub fn remove_all(&self, name: &str) -> io::Result<()> {
        fs::remove_dir_all(self.at(name))
    }

    pub fn link_to(&self, name: &str, dst: &DirFd, dst_name: &str) -> io::Result<()> {
        fs::hard_link(self.at(name), dst.at(dst_name))
    }

    /// renameat2 with `flags` (0, RENAME_NOREPLACE or RENAME_EXCHANGE).
    pub fn rename_to(&self, name: &str, dst: &DirFd, dst_name: &str, flags: u32) -> io::Result<()> {
        let a = cstr(Path::new(name))?;
        let b = cstr(Path::new(dst_name))?;
        // SAFETY: both descriptors are open directories; names are valid C strings.
        check(unsafe {
            libc::renameat2(
                self.fd.as_raw_fd(),
                a.as_ptr(),
                dst.fd.as_raw_fd(),
                b.as_ptr(),
                flags,
            )
        })
    }

    /// chmod without following a final symlink.
    pub fn chmod(&self, name: Option<&str>, mode: u32) -> io::Result<()> {
        let p = name.map_or_else(|| self.path(), |n| self.at(n));
        let c = cstr(&p)?;
        // SAFETY: valid C string; result checked.
        check(unsafe { libc::chmod(c.as_ptr(), (mode & 0o7777) as libc::mode_t) })
    }

    /// `faccessat(2)` of an entry (or of the directory itself) with the daemon's
    /// effective ids; an entry that is a symlink is not followed (the
    /// directory's own path is a `/proc` link, which must be).
    pub fn access(&self, name: Option<&str>, mask: i32) -> io::Result<()> {
        let p = name.map_or_else(|| self.path(), |n| self.at(n));
        let c = cstr(&p)?;
        let flags = match name {
            Some(_) => libc::AT_EACCESS | libc::AT_SYMLINK_NOFOLLOW,
            None => libc::AT_EACCESS,
        };
        // SAFETY: valid C string; result checked.
        check(unsafe { libc::faccessat(libc::AT_FDCWD, c.as_ptr(), mask, flags) })
    }

    pub fn chown(&self, name: Option<&str>, uid: Option<u32>, gid: Option<u32>) -> io::Result<()> {
        let p = name.map_or_else(|| self.path(), |n| self.at(n));
        let c = cstr(&p)?;
        let u = uid.unwrap_or(u32::MAX);
        let g = gid.unwrap_or(u32::MAX);
        // SAFETY: valid C string; -1 leaves an id unchanged; result checked.
        check(unsafe { libc::lchown(c.as_ptr(), u, g) })
    }

    /// Set times (`None` leaves one unchanged); does not follow a final symlink.
    pub fn utimens(
        &self,
        name: Option<&str>,
        atime: Option<libc::timespec>,
        mtime: Option<libc::timespec>,
    ) -> io::Result<()> {
        let omit = libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        };
        let ts = [atime.unwrap_or(omit), mtime.unwrap_or(omit)];
        let (dir, c) = match name {
            Some(n) => (self.fd.as_raw_fd(), cstr(Path::new(n))?),
            None => (libc::AT_FDCWD, cstr(&self.path())?),
        };
        let flags = if name.is_some() {
            libc::AT_SYMLINK_NOFOLLOW
        } else {
            0
        };
        // SAFETY: valid descriptor and C string, two timespecs; result checked.
        check(unsafe { libc::utimensat(dir, c.as_ptr(), ts.as_ptr(), flags) })
    }

    pub fn statvfs(&self) -> io::Result<libc::statvfs> {
        let c = cstr(&self.path())?;
        // SAFETY: zeroed statvfs is a valid out-parameter; result checked.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        check(unsafe { libc::statvfs(c.as_ptr(), &mut st) })?;
        Ok(st)
    }

    /// Raw entry names of the directory.
    pub fn entries(&self) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        for e in fs::read_dir(self.path())? {
            out.push(e?.file_name().to_string_lossy().into_owned());
        }
        Ok(out)
    }

    /// Make a new backing directory with a fresh IV, all-or-nothing: it is built
    /// under a temporary name and renamed into place (no-replace). The IV file,
    /// the new directory and this one are fsynced, so after a crash the
    /// directory is either absent or present with its IV.
    pub fn mkdir_with_iv(&self, name: &str, mode: u32, iv: &[u8; DIRIV_LEN]) -> io::Result<()> {
        let tmp = format!(".tmp-dir-{}", hex(&crate::crypto::random_array::<8>()));
        self.mkdir(&tmp, 0o700)?;
        let built = (|| {
            let d = self.child(&tmp)?;
            let mut f = self.create_iv_file(&d)?;
            io::Write::write_all(&mut f, iv)?;
            // Durable before the directory can appear: the IV's bytes, then its
            // entry in the new directory. The new directory's own entry in the
            // parent follows POSIX rules, as for any file: durable once the
            // parent is fsync'd (fsyncdir), so mkdir stays one fsync cheaper.
            f.sync_all()?;
            d.fsync()?;
            self.chmod(Some(&tmp), mode)?;
            self.rename_to(&tmp, self, name, libc::RENAME_NOREPLACE)
        })();
        if built.is_err() {
            let _ = self.remove_all(&tmp);
        }
        built
    }

    fn create_iv_file(&self, d: &DirFd) -> io::Result<File> {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(d.at(DIRIV_FILE))
    }

    pub fn fsync(&self) -> io::Result<()> {
        File::open(self.path())?.sync_all()
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A `timespec` for a `SystemTime` (before the epoch counts as negative).
pub fn timespec(t: std::time::SystemTime) -> libc::timespec {
    let (sec, nsec) = match t.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => (d.as_secs() as i64, d.subsec_nanos() as i64),
        Err(e) => {
            let d = e.duration();
            let mut sec = -(d.as_secs() as i64);
            let mut nsec = d.subsec_nanos() as i64;
            if nsec > 0 {
                sec -= 1;
                nsec = 1_000_000_000 - nsec;
            }
            (sec, nsec)
        }
    };
    libc::timespec {
        tv_sec: sec as libc::time_t,
        tv_nsec: nsec as _,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_paths_beyond_path_max_work_through_descriptors() {
        let t = tempfile::tempdir().unwrap();
        let mut d = DirFd::open(t.path()).unwrap();
        let long = "x".repeat(250);
        for _ in 0..20 {
            d.mkdir(&long, 0o700).unwrap();
            d = d.child(&long).unwrap();
        }
        fs::write(d.at("f"), b"deep").unwrap();
        assert_eq!(fs::read(d.at("f")).unwrap(), b"deep");
        assert!(t.path().join(&long).is_dir());
    }

    #[test]
    fn rename_flags() {
        let t = tempfile::tempdir().unwrap();
        let d = DirFd::open(t.path()).unwrap();
        fs::write(d.at("a"), b"A").unwrap();
        fs::write(d.at("b"), b"B").unwrap();
        let err = d
            .rename_to("a", &d, "b", libc::RENAME_NOREPLACE)
            .unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EEXIST));
        d.rename_to("a", &d, "b", libc::RENAME_EXCHANGE).unwrap();
        assert_eq!(fs::read(d.at("a")).unwrap(), b"B");
        d.mkdir_with_iv("dir", 0o750, &[7; 16]).unwrap();
        assert_eq!(d.child("dir").unwrap().read_diriv().unwrap(), [7; 16]);
        assert!(d.entries().unwrap().iter().all(|n| !n.starts_with(".tmp")));
    }
}
