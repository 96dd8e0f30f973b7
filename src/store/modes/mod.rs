//! Modes the daemon's own user would be shut out by.
//!
//! Without root, the daemon reads and walks the backing tree with the same
//! user ids the mount's owner has, so a mode set through the mount that takes
//! the owner's read bit from a file, or read or search from a directory
//! (`chmod 600 DIR`, `chmod 000 FILE`), would lock the daemon out of its own
//! data: no commit, no check, no unmount. So the backing entry keeps those
//! bits (file `0400`, directory `0500`) and the sticky bit as a mark, and
//! the mode the user set is kept in the backing entry's extended attribute
//! `user.pkfs-mode` (ASCII octal, at most `7777`), which [`apply`] puts
//! back in the status the mount shows. The write bits are never added: they
//! still stop the owner's writes as the user asked (FORMAT.md, "Modes").
//!
//! That live mode is what the mount shows; each version keeps the modes in
//! its directories' mode records (`format/modes.rs`), which `history.rs`
//! here writes before a commit, applies after a checkout and compares with
//! the live modes for `fsck`.

use std::ffi::CString;
use std::io;
use std::path::Path;

use super::stat::{c_path, Stat};

/// The extended attribute that holds a mode set through the mount.
pub const MODE_XATTR: &str = "user.pkfs-mode";

/// The owner bits the daemon needs on a backing entry of this kind.
pub fn kept_bits(is_dir: bool) -> u32 {
    if is_dir {
        0o500
    } else {
        0o400
    }
}

fn xattr_name() -> CString {
    CString::new(MODE_XATTR).unwrap_or_default()
}

/// The stored mode of the entry at `path` (not following a final symlink,
/// unless `follow`: a `/proc/self/fd/N` link).
fn stored(path: &Path, follow: bool) -> Option<u32> {
    let c = c_path(path).ok()?;
    let mut buf = [0u8; 8];
    let get = if follow {
        libc::getxattr
    } else {
        libc::lgetxattr
    };
    // SAFETY: valid C strings and a buffer of buf.len() bytes; checked.
    let n = unsafe {
        get(
            c.as_ptr(),
            xattr_name().as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n <= 0 {
        return None;
    }
    let text = std::str::from_utf8(&buf[..n as usize]).ok()?;
    u32::from_str_radix(text, 8).ok().filter(|m| *m <= 0o7777)
}

/// `st` of the entry at `path`, with the mode the user set where one is kept
/// (only entries carrying the mark are looked at: one `lgetxattr` for them,
/// none for the others).
pub fn apply(st: Stat, follow: bool, path: impl FnOnce() -> std::path::PathBuf) -> Stat {
    let fmt = st.format();
    let marked = st.mode() & libc::S_ISVTX != 0 && (fmt == libc::S_IFREG || fmt == libc::S_IFDIR);
    if !marked {
        return st;
    }
    match stored(&path(), follow) {
        Some(mode) => st.with_perm(mode),
        None => st,
    }
}

/// The mode the mount shows for the backing entry at `abs`, and whether it is
/// a directory; `None` for anything but a regular file or directory.
pub fn live_mode(abs: &Path) -> Option<(u32, bool)> {
    let c = c_path(abs).ok()?;
    let st = Stat::at(libc::AT_FDCWD, &c, libc::AT_SYMLINK_NOFOLLOW).ok()?;
    let st = apply(st, false, || abs.to_path_buf());
    let is_dir = st.is_dir();
    (is_dir || st.is_file()).then_some((st.mode() & 0o7777, is_dir))
}

/// Add to `findings` every live mode that differs from the committed one
/// (kind `mode-changed`), and every committed record that does not open
/// (`bad-mode-record`), named by the plaintext paths of `seen` (fsck's scan).
pub(crate) fn drift_findings(
    history: &super::history::History,
    seen: &std::collections::BTreeMap<String, super::fsck::Seen>,
    findings: &mut Vec<super::fsck::Finding>,
) {
    for (rel, what) in history.mode_drift() {
        let (entry, kind) =
            match rel.strip_suffix(&format!("/{}", crate::format::modes::MODES_FILE)) {
                Some(dir) => (dir, "bad-mode-record"),
                None => (rel.as_str(), "mode-changed"),
            };
        let shown = seen.get(entry).map_or("/", |s| s.shown.as_str());
        let mut f = super::fsck::Finding::new(shown, kind, what);
        f.rel = Some(rel.clone());
        findings.push(f);
    }
}

/// chmod of the entry at `path` to `mode`, keeping the daemon's access (see
/// the module comment). A mode that keeps it is set as it is, and a stored
/// one is dropped.
/// `follow`: `path` is a `/proc/self/fd/N` link to the entry.
pub fn chmod_keeping_access(path: &Path, mode: u32, is_dir: bool, follow: bool) -> io::Result<()> {
    let mode = mode & 0o7777;
    let need = kept_bits(is_dir);
    let c = c_path(path)?;
    let name = xattr_name();
    let chmod = |m: u32| {
        // SAFETY: a valid C string; checked.
        match unsafe { libc::fchmodat(libc::AT_FDCWD, c.as_ptr(), m as libc::mode_t, 0) } {
            0 => Ok(()),
            _ => Err(io::Error::last_os_error()),
        }
    };
    // A user attribute changes only with write permission: the owner's
    // write bit for as long as it takes.
    chmod(mode | need | 0o200)?;
    let backing = if mode & need == need {
        let remove = if follow {
            libc::removexattr
        } else {
            libc::lremovexattr
        };
        // SAFETY: valid C strings; a missing attribute is the usual case.
        let rc = unsafe { remove(c.as_ptr(), name.as_ptr()) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if !matches!(e.raw_os_error(), Some(libc::ENODATA) | Some(libc::ENOTSUP)) {
                return Err(e);
            }
        }
        mode
    } else {
        let value = format!("{mode:o}");
        let set = if follow {
            libc::setxattr
        } else {
            libc::lsetxattr
        };
        // SAFETY: valid C strings and value buffer; checked.
        let rc = unsafe {
            set(
                c.as_ptr(),
                name.as_ptr(),
                value.as_ptr().cast(),
                value.len(),
                0,
            )
        };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::ENOTSUP) {
                return Err(e);
            }
            // No user attributes on this file system: the mode as asked, as
            // before (the daemon may be shut out until it is changed back).
            mode
        } else {
            mode | need | libc::S_ISVTX
        }
    };
    chmod(backing)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_mode_that_shuts_the_owner_out_is_kept_aside() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("f");
        let sub = d.path().join("sub");
        std::fs::write(&f, b"x").unwrap();
        std::fs::create_dir(&sub).unwrap();
        let backing = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        let shown = |p: &Path| Stat::of_path(p).unwrap().mode() & 0o7777;
        for (p, is_dir, mode, want_backing) in [
            (&f, false, 0o000, 0o1400),
            (&f, false, 0o200, 0o1600),
            (&f, false, 0o644, 0o644),
            (&sub, true, 0o600, 0o1700),
            (&sub, true, 0o000, 0o1500),
            (&sub, true, 0o755, 0o755),
        ] {
            chmod_keeping_access(p, mode, is_dir, false).unwrap();
            if stored(p, false).is_none() && mode != want_backing {
                return; // no user xattrs on this file system
            }
            assert_eq!(backing(p), want_backing, "{p:?} {mode:o}");
            assert_eq!(shown(p), mode, "{p:?} {mode:o}");
        }
        // A mode that keeps access drops the stored one.
        assert!(stored(&f, false).is_none() && stored(&sub, false).is_none());
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod record_tests;
