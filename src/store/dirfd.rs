//! Directory handles for the mount: an `O_PATH` descriptor per backing directory.
//!
//! Encrypted names are longer than plaintext ones, so a deep plaintext path can
//! map to a backing path longer than PATH_MAX. Every backing operation of the
//! mount therefore works relative to a directory descriptor: through the `*at`
//! system call where there is one (`openat`, `mkdirat`, `unlinkat`, …), which
//! also spares the kernel a path walk (`stat` is `fstatat`, see `stat.rs`), and
//! otherwise through the `/proc/self/fd/N/NAME` form (listing a directory and
//! reading a symlink), which the kernel resolves from the descriptor and not
//! from the directory's (possibly over-long) path. A descriptor also follows
//! its directory across renames.

use std::ffi::CString;
use std::fs::{self, File};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use super::stat::{c_path, Stat};
use crate::format::names::{DirIv, DIRIV_FILE, DIRIV_LEN};

#[derive(Debug)]
pub struct DirFd {
    fd: OwnedFd,
}

/// An entry name as a C string.
fn cname(name: &str) -> io::Result<CString> {
    CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
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
        DirFd::open_at(libc::AT_FDCWD, &c_path(path)?)
    }

    /// An `O_PATH` descriptor of the directory `c` (not a symlink), relative
    /// to the directory descriptor `at`.
    fn open_at(at: libc::c_int, c: &std::ffi::CStr) -> io::Result<DirFd> {
        // SAFETY: c is a valid NUL-terminated string; the result is checked.
        let fd = unsafe {
            libc::openat(
                at,
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

    fn raw(&self) -> libc::c_int {
        self.fd.as_raw_fd()
    }

    /// The path of the directory itself, resolved through the descriptor.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.fd.as_raw_fd()))
    }

    /// A short path that names entry `name` of this directory.
    pub fn at(&self, name: &str) -> PathBuf {
        self.path().join(name)
    }

    /// The subdirectory `name` (not a symlink).
    pub fn child(&self, name: &str) -> io::Result<DirFd> {
        DirFd::open_at(self.raw(), &cname(name)?)
    }

    /// The status of entry `name` (a symlink itself, not its target).
    pub fn stat(&self, name: &str) -> io::Result<Stat> {
        let st = Stat::at(self.raw(), &cname(name)?, libc::AT_SYMLINK_NOFOLLOW)?;
        Ok(super::modes::apply(st, false, || self.at(name)))
    }

    /// The status of this directory.
    pub fn stat_self(&self) -> io::Result<Stat> {
        let st = Stat::at(self.raw(), c"", libc::AT_EMPTY_PATH)?;
        Ok(super::modes::apply(st, true, || self.path()))
    }

    /// chmod of an entry (or of this directory) that never takes from the
    /// daemon's user what it needs to read the entry (`modes.rs`).
    pub fn chmod_keeping_access(
        &self,
        name: Option<&str>,
        mode: u32,
        is_dir: bool,
    ) -> io::Result<()> {
        match name {
            Some(n) => super::modes::chmod_keeping_access(&self.at(n), mode, is_dir, false),
            None => super::modes::chmod_keeping_access(&self.path(), mode, is_dir, true),
        }
    }

    pub fn read_diriv(&self) -> io::Result<DirIv> {
        let mut bytes = Vec::with_capacity(DIRIV_LEN + 1);
        let f = self.openat(DIRIV_FILE, libc::O_RDONLY, 0)?;
        io::Read::read_to_end(&mut io::Read::take(f, DIRIV_LEN as u64 + 1), &mut bytes)?;
        bytes
            .as_slice()
            .try_into()
            .map_err(|_| io::Error::from_raw_os_error(libc::EIO))
    }

    /// `openat(2)` of entry `name`, never following a final symlink.
    fn openat(&self, name: &str, flags: libc::c_int, mode: u32) -> io::Result<File> {
        let c = cname(name)?;
        let flags = flags | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        // SAFETY: an open directory descriptor and a valid C string; checked.
        let fd = unsafe { libc::openat(self.raw(), c.as_ptr(), flags, mode as libc::c_uint) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor that nothing else owns.
        Ok(unsafe { File::from_raw_fd(fd) })
    }

    /// Open a regular file of this directory for reading and (unless `ro`) writing.
    pub fn open_file(&self, name: &str, ro: bool) -> io::Result<File> {
        let acc = if ro { libc::O_RDONLY } else { libc::O_RDWR };
        self.openat(name, acc, 0)
    }

    /// Create a new regular file (fails if `name` exists).
    pub fn create_file(&self, name: &str, mode: u32) -> io::Result<File> {
        let flags = libc::O_RDWR | libc::O_CREAT | libc::O_EXCL;
        self.openat(name, flags, mode & 0o7777)
    }

    pub fn mkdir(&self, name: &str, mode: u32) -> io::Result<()> {
        let c = cname(name)?;
        let mode = (mode & 0o7777) as libc::mode_t;
        // SAFETY: an open directory descriptor and a valid C string; checked.
        check(unsafe { libc::mkdirat(self.raw(), c.as_ptr(), mode) })
    }

    pub fn mknod(&self, name: &str, mode: u32, rdev: u64) -> io::Result<()> {
        let c = cname(name)?;
        let (mode, rdev) = (mode as libc::mode_t, rdev as libc::dev_t);
        // SAFETY: an open directory descriptor and a valid C string; checked.
        check(unsafe { libc::mknodat(self.raw(), c.as_ptr(), mode, rdev) })
    }

    pub fn symlink(&self, name: &str, target: &str) -> io::Result<()> {
        let (c, t) = (cname(name)?, cname(target)?);
        // SAFETY: an open directory descriptor and valid C strings; checked.
        check(unsafe { libc::symlinkat(t.as_ptr(), self.raw(), c.as_ptr()) })
    }

    pub fn readlink(&self, name: &str) -> io::Result<PathBuf> {
        fs::read_link(self.at(name))
    }

    pub fn unlink(&self, name: &str) -> io::Result<()> {
        let c = cname(name)?;
        // SAFETY: an open directory descriptor and a valid C string; checked.
        check(unsafe { libc::unlinkat(self.raw(), c.as_ptr(), 0) })
    }

    pub fn rmdir(&self, name: &str) -> io::Result<()> {
        let c = cname(name)?;
        // SAFETY: an open directory descriptor and a valid C string; checked.
        check(unsafe { libc::unlinkat(self.raw(), c.as_ptr(), libc::AT_REMOVEDIR) })
    }

    pub fn remove_all(&self, name: &str) -> io::Result<()> {
        fs::remove_dir_all(self.at(name))
    }

    pub fn link_to(&self, name: &str, dst: &DirFd, dst_name: &str) -> io::Result<()> {
        let (a, b) = (cname(name)?, cname(dst_name)?);
        // SAFETY: open directory descriptors and valid C strings; checked.
        check(unsafe { libc::linkat(self.raw(), a.as_ptr(), dst.raw(), b.as_ptr(), 0) })
    }

    /// renameat2 with `flags` (0, RENAME_NOREPLACE or RENAME_EXCHANGE).
    pub fn rename_to(&self, name: &str, dst: &DirFd, dst_name: &str, flags: u32) -> io::Result<()> {
        let (a, b) = (cname(name)?, cname(dst_name)?);
        // SAFETY: both descriptors are open directories; names are valid C strings.
        check(unsafe { libc::renameat2(self.raw(), a.as_ptr(), dst.raw(), b.as_ptr(), flags) })
    }

    /// chmod of an entry (or of the directory itself). Linux has no chmod of a
    /// symlink itself; callers do not chmod symlinks.
    pub fn chmod(&self, name: Option<&str>, mode: u32) -> io::Result<()> {
        let mode = (mode & 0o7777) as libc::mode_t;
        let (dir, c) = match name {
            Some(n) => (self.raw(), cname(n)?),
            None => (libc::AT_FDCWD, c_path(&self.path())?),
        };
        // SAFETY: a valid descriptor (or AT_FDCWD) and C string; checked.
        check(unsafe { libc::fchmodat(dir, c.as_ptr(), mode, 0) })
    }

    /// `faccessat(2)` of an entry (or of the directory itself) with the daemon's
    /// effective ids; an entry that is a symlink is not followed (the
    /// directory's own path is a `/proc` link, which must be).
    pub fn access(&self, name: Option<&str>, mask: i32) -> io::Result<()> {
        let (dir, c, flags) = match name {
            Some(n) => (
                self.raw(),
                cname(n)?,
                libc::AT_EACCESS | libc::AT_SYMLINK_NOFOLLOW,
            ),
            None => (libc::AT_FDCWD, c_path(&self.path())?, libc::AT_EACCESS),
        };
        // SAFETY: a valid descriptor (or AT_FDCWD) and C string; checked.
        check(unsafe { libc::faccessat(dir, c.as_ptr(), mask, flags) })
    }

    /// chown of an entry, not following a final symlink (or of the directory
    /// itself, through its descriptor).
    pub fn chown(&self, name: Option<&str>, uid: Option<u32>, gid: Option<u32>) -> io::Result<()> {
        let u = uid.unwrap_or(u32::MAX);
        let g = gid.unwrap_or(u32::MAX);
        let (c, flags) = match name {
            Some(n) => (cname(n)?, libc::AT_SYMLINK_NOFOLLOW),
            None => (cname("")?, libc::AT_EMPTY_PATH),
        };
        // SAFETY: an open descriptor and a valid C string; -1 leaves an id
        // unchanged; result checked.
        check(unsafe { libc::fchownat(self.raw(), c.as_ptr(), u, g, flags) })
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
            Some(n) => (self.raw(), cname(n)?),
            None => (libc::AT_FDCWD, c_path(&self.path())?),
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
        let c = c_path(&self.path())?;
        // SAFETY: zeroed statvfs is a valid out-parameter; result checked.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        check(unsafe { libc::statvfs(c.as_ptr(), &mut st) })?;
        Ok(st)
    }

    /// Raw entry names of the directory with their inode numbers and types,
    /// as `getdents` gives them (no `stat` per entry, unless the file system
    /// leaves the type out).
    pub fn entries_typed(&self) -> io::Result<Vec<(String, u64, fs::FileType)>> {
        let mut out = Vec::new();
        for e in fs::read_dir(self.path())? {
            let e = e?;
            let Ok(t) = e.file_type() else { continue };
            let name = e.file_name().to_string_lossy().into_owned();
            out.push((name, std::os::unix::fs::DirEntryExt::ino(&e), t));
        }
        Ok(out)
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
    /// under a temporary name and renamed into place (no-replace), so no reader
    /// sees it without its IV. Nothing is fsynced: see the comment inside and
    /// `store/history_recover.rs` for what a power cut can leave.
    pub fn mkdir_with_iv(&self, name: &str, mode: u32, iv: &[u8; DIRIV_LEN]) -> io::Result<()> {
        let tmp = format!(".tmp-dir-{}", hex(&crate::crypto::random_array::<8>()));
        self.mkdir(&tmp, 0o700)?;
        let built = (|| {
            let d = self.child(&tmp)?;
            let mut f = self.create_iv_file(&d)?;
            io::Write::write_all(&mut f, iv)?;
            // Not fsync'd here (two fsyncs cost about 2 ms per directory on a
            // busy disk): the directory appears with its IV in place for
            // every reader, and the IV reaches the disk at the next commit,
            // or before any fsync in the vault (`History::sync_journal`).
            // A power cut before either is recovered at the next open
            // (`History::quarantine_lost_dirs`).
            // Never without the daemon's own read and search (`modes.rs`):
            // the caller sets the mode asked for once it is in place.
            self.chmod(Some(&tmp), mode | super::modes::kept_bits(true))?;
            self.rename_to(&tmp, self, name, libc::RENAME_NOREPLACE)
        })();
        if built.is_err() {
            let _ = self.remove_all(&tmp);
        }
        built
    }

    fn create_iv_file(&self, d: &DirFd) -> io::Result<File> {
        d.openat(
            DIRIV_FILE,
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL,
            0o600,
        )
    }

    pub fn fsync(&self) -> io::Result<()> {
        File::open(self.path())?.sync_all()
    }
}

/// A path the kernel takes whatever its length (see [`short_path`]).
#[derive(Debug)]
pub struct ShortPath {
    /// The directory `path` goes through, held open while it is used.
    _dir: Option<DirFd>,
    path: PathBuf,
}

impl std::ops::Deref for ShortPath {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.path
    }
}

impl AsRef<Path> for ShortPath {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

/// Paths at least this long are walked through descriptors.
const SHORT_MAX: usize = 2048;

/// `path` itself when it is short; otherwise `/proc/self/fd/N/NAME`, where
/// `N` is a descriptor of its parent directory, reached one component at a
/// time from the longest short prefix (no directory on the way may be a
/// symlink). For code that keeps full backing paths for bookkeeping but
/// must still reach entries deeper than PATH_MAX.
pub fn short_path(path: &Path) -> io::Result<ShortPath> {
    use std::os::unix::ffi::OsStrExt;
    if path.as_os_str().len() < SHORT_MAX {
        return Ok(ShortPath {
            _dir: None,
            path: path.to_path_buf(),
        });
    }
    let comps: Vec<&std::ffi::OsStr> = path.iter().collect();
    let Some((last, dirs)) = comps.split_last() else {
        return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
    };
    let mut prefix = PathBuf::new();
    let mut i = 0;
    while i < dirs.len() && prefix.join(dirs[i]).as_os_str().len() < SHORT_MAX {
        prefix.push(dirs[i]);
        i += 1;
    }
    let mut dir = DirFd::open(&prefix)?;
    for c in &dirs[i..] {
        dir = DirFd::open_at(dir.raw(), &CString::new(c.as_bytes())?)?;
    }
    let path = dir.path().join(last);
    Ok(ShortPath {
        _dir: Some(dir),
        path,
    })
}

/// [`short_path`], failing as a pkfs error that names the full path.
pub fn short(path: &Path) -> crate::error::Result<ShortPath> {
    short_path(path).map_err(|e| crate::error::Error::io(path, e))
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
        // The full path is past PATH_MAX; its short form reaches the file.
        let mut full = t.path().to_path_buf();
        for _ in 0..20 {
            full.push(&long);
        }
        full.push("f");
        assert!(fs::read(&full).is_err());
        assert_eq!(fs::read(&*short_path(&full).unwrap()).unwrap(), b"deep");
        let near = short_path(t.path()).unwrap();
        assert_eq!(&*near, t.path());
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
