//! Crash-safe file replacement: temp file in the same directory, fsync, rename,
//! fsync of the directory.
//!
//! Paths of any length are taken: a path past what the kernel accepts (a deep
//! vault tree, whose encrypted names are longer than plaintext ones) is
//! reached through a descriptor of its directory (`dirfd::short_path`).

use std::fs::File;
use std::io::Write;
use std::path::Path;

use super::dirfd::short;
use crate::error::{Error, Result};

/// Replace `path` with `data` atomically; the file is created with mode 0600.
/// The data is fsynced before the rename and the directory after it, so after a
/// crash `path` holds either its old or its new content, never a mix or nothing.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    write_atomic_at(path, data, None)
}

/// [`write_atomic`] with a test-only crash point (see [`crash_point`]) between
/// the durable temporary file and the rename.
pub fn write_atomic_at(path: &Path, data: &[u8], before_rename: Option<&str>) -> Result<()> {
    let dir = parent_of(path);
    // The directory as a short path (held open while it is used); the file
    // is named through it.
    let near = short(dir)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(&*near)
        .map_err(|e| Error::io(dir, e))?;
    tmp.write_all(data).map_err(|e| Error::io(path, e))?;
    tmp.as_file().sync_all().map_err(|e| Error::io(path, e))?;
    if let Some(point) = before_rename {
        crash_point(point);
    }
    let target = match path.file_name() {
        Some(name) => near.join(name),
        None => path.to_path_buf(),
    };
    tmp.persist(&target).map_err(|e| Error::io(path, e.error))?;
    fsync_open_dir(&near, dir)
}

/// The test-only variable naming a crash point.
pub const ENV_CRASH_AT: &str = "PKFS_TEST_ONLY_CRASH_AT";

/// Test-only: when `PKFS_TEST_ONLY_CRASH_AT` (read once per process) names
/// `point`, end the process at once with `_exit(137)`, as a kill would: no
/// destructor, no cleanup, no flush. The crash tests (`tests/cli_crash.rs`) use
/// it to stop a command between two steps of a multi-file update. Points:
/// `rotate-journal-written`, `rotate-committed`, `rotate-midway`,
/// `metadata-before-rename`, `vault-create-before-metadata`,
/// `vault-delete-before-remove`, `checkout-after-trash`, `commit-after-record`,
/// `checkout-after-record`, `keys-rekey-staged`, `keys-rekey-written`; the slot
/// changes of `root.key` (`vault::slots::change`): `slot-add`, `slot-remove`,
/// `slot-replace` (the new file durable, not yet renamed), each also with
/// `-before-write` and `-after-rename`.
pub fn crash_point(point: &str) {
    static AT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let at = AT.get_or_init(|| std::env::var(ENV_CRASH_AT).ok().filter(|v| !v.is_empty()));
    if at.as_deref() == Some(point) {
        // SAFETY: _exit ends the process without touching any memory of ours.
        unsafe { libc::_exit(137) };
    }
}

/// fsync every file and directory under `root` (and `root`): used once a new
/// tree (a vault's first commit) is complete, before it is referenced.
pub fn fsync_tree(root: &Path) -> Result<()> {
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for ent in std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
            let ent = ent.map_err(|e| Error::io(&dir, e))?;
            let path = ent.path();
            let ft = ent.file_type().map_err(|e| Error::io(&path, e))?;
            if ft.is_dir() {
                stack.push(path);
            } else if ft.is_file() {
                File::open(&path)
                    .and_then(|f| f.sync_all())
                    .map_err(|e| Error::io(&path, e))?;
            }
        }
        fsync_dir(&dir)?;
    }
    Ok(())
}

/// fsync a directory so that renames and creations inside it are durable.
pub fn fsync_dir(dir: &Path) -> Result<()> {
    fsync_open_dir(&short(dir)?, dir)
}

/// fsync the directory at `near` (the short form of `dir`, named in errors).
fn fsync_open_dir(near: &Path, dir: &Path) -> Result<()> {
    File::open(near)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}

/// Create a directory with mode 0700 and make its entry durable.
pub fn create_dir_durable(path: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&*short(path)?)
        .map_err(|e| Error::io(path, e))?;
    fsync_dir(parent_of(path))
}

fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_and_leaves_no_temp_files() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}
