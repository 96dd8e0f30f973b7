//! `vault reencrypt`: every file of the working tree whose blob uses an older
//! key generation is rewritten under the newest one, inside one
//! [`Vault::mutate`] (so as one commit, each backing path journaled before
//! its atomic replacement: a cut is undone at the next open). A rewritten
//! blob keeps its file id, mode, extended attributes and times. Through the
//! mount, files open there are left alone (the mount keeps writing to the
//! blob it opened): the mount publishes them around each control command.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::path::Path;

use serde::Serialize;

use super::super::handle::Vault;
use super::{generation_at, working_files};
use crate::crypto::random_array;
use crate::error::{Error, Result};
use crate::format::blob::{self, Header};
use crate::store::atomic::crash_point;
use crate::store::{Change, ChangeKind, VPath};

/// What a `vault reencrypt` did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Reencrypted {
    /// The generation every rewritten blob now uses.
    pub generation: u32,
    /// Files rewritten.
    pub rewritten: u64,
    /// Files already under the newest generation (or empty).
    pub current: u64,
    /// Files left as they were because they are open in the mount.
    pub skipped: Vec<String>,
    /// The commit made, if anything was rewritten.
    pub commit: Option<String>,
}

/// `vault reencrypt`: rewrite every file whose blob uses an older generation
/// under the newest one, as one commit. `skip` names files to leave alone
/// (open in the mount); `progress` gets (done, total).
pub fn reencrypt(
    vault: &Vault,
    skip: &dyn Fn(&VPath) -> bool,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Reencrypted> {
    let (current, key) = vault.tree().keys().current();
    let key = key.clone();
    let mut report = Reencrypted {
        generation: current,
        ..Reencrypted::default()
    };
    let mut todo = Vec::new();
    for (p, path, rel) in working_files(vault)? {
        match generation_at(&path)? {
            Some(g) if g != current => todo.push((p, path, rel)),
            _ => report.current += 1,
        }
    }
    let total = todo.len() as u64;
    progress(0, total);
    if todo.is_empty() {
        return Ok(report);
    }
    let before = vault.history().head().ok().map(|h| h.id);
    vault.mutate(|txn, changes| {
        for (i, (p, path, rel)) in todo.iter().enumerate() {
            if skip(p) {
                report.skipped.push(p.to_string());
                continue;
            }
            // Read through the tree: checked against HEAD, so a blob swapped
            // at rest is refused, never laundered into a fresh one.
            let plain = txn.read(p)?;
            let old = fs::read(path).map_err(|e| Error::io(path, e))?;
            let header = Header::decode(&old).map_err(|e| Error::corrupt(p, e.to_string()))?;
            let fresh = Header {
                generation: current,
                file_id: header.file_id,
                salt: random_array(),
            };
            let sealed = blob::seal(&key, &fresh, &plain);
            drop(plain);
            txn.journal(rel)?;
            replace_keeping_attributes(path, &sealed)?;
            changes.push(Change::new(ChangeKind::Modified, p.to_string()));
            report.rewritten += 1;
            progress(i as u64 + 1, total);
            if i == 0 {
                crash_point("reencrypt-midway");
            }
        }
        Ok(())
    })?;
    let after = vault.history().head().ok().map(|h| h.id);
    if after != before {
        report.commit = after;
    }
    Ok(report)
}

/// Replace the file at `path` with `data` atomically (temporary file, fsync,
/// rename, fsync of the directory), keeping its mode, extended attributes
/// (`user.pkfs-mode`, encrypted ones) and access and modification times.
fn replace_keeping_attributes(path: &Path, data: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let io = |e| Error::io(path, e);
    let old = File::open(path).map_err(io)?;
    let meta = old.metadata().map_err(io)?;
    let dir = path
        .parent()
        .ok_or_else(|| Error::corrupt(path.display(), "no parent directory"))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(|e| Error::io(dir, e))?;
    tmp.write_all(data).map_err(io)?;
    copy_xattrs(&old, tmp.as_file()).map_err(io)?;
    let times = fs::FileTimes::new()
        .set_accessed(meta.accessed().map_err(io)?)
        .set_modified(meta.modified().map_err(io)?);
    tmp.as_file().set_times(times).map_err(io)?;
    tmp.as_file()
        .set_permissions(fs::Permissions::from_mode(
            meta.permissions().mode() & 0o7777,
        ))
        .map_err(io)?;
    tmp.as_file().sync_all().map_err(io)?;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    crate::store::atomic::fsync_dir(dir)
}

/// Copy every extended attribute of `from` to `to`.
fn copy_xattrs(from: &File, to: &File) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let (src, dst) = (from.as_raw_fd(), to.as_raw_fd());
    // SAFETY: a size query with a null buffer; the descriptor is open.
    let len = unsafe { libc::flistxattr(src, std::ptr::null_mut(), 0) };
    if len < 0 {
        let e = std::io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ENOTSUP) => Ok(()),
            _ => Err(e),
        };
    }
    let mut names = vec![0u8; len as usize];
    // SAFETY: the buffer is valid for `names.len()` bytes.
    let len = unsafe { libc::flistxattr(src, names.as_mut_ptr().cast(), names.len()) };
    if len < 0 {
        return Err(std::io::Error::last_os_error());
    }
    names.truncate(len as usize);
    for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let Ok(cname) = std::ffi::CString::new(name) else {
            continue;
        };
        // SAFETY: valid C string, size query with a null buffer.
        let n = unsafe { libc::fgetxattr(src, cname.as_ptr(), std::ptr::null_mut(), 0) };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut value = vec![0u8; n as usize];
        // SAFETY: the buffer is valid for `value.len()` bytes.
        let n =
            unsafe { libc::fgetxattr(src, cname.as_ptr(), value.as_mut_ptr().cast(), value.len()) };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        value.truncate(n as usize);
        // SAFETY: valid C string and buffer.
        let rc =
            unsafe { libc::fsetxattr(dst, cname.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Files open in the mount, (vault id, plaintext path), while a control
/// command runs: `reencrypt` leaves them alone (the mount keeps writing to
/// the blob it opened).
static OPEN_FILES: std::sync::Mutex<Vec<(String, String)>> = std::sync::Mutex::new(Vec::new());

/// Set by the mount around each control command.
pub fn set_open_files(list: Vec<(String, String)>) {
    if let Ok(mut g) = OPEN_FILES.lock() {
        *g = list;
    }
}

/// The plaintext paths of vault `id` that are open in the mount.
pub fn open_files_of(id: &str) -> BTreeSet<String> {
    OPEN_FILES
        .lock()
        .map(|g| {
            g.iter()
                .filter(|(v, _)| v == id)
                .map(|(_, p)| p.clone())
                .collect()
        })
        .unwrap_or_default()
}
