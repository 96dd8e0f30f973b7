//! Staging a commit: blobs written by pkfs itself rather than by libgit2,
//! and trees built straight from the journaled changes (`stage_build.rs`),
//! with no index.
//!
//! A commit used to stage with libgit2's `update_all`/`add_all`. Those hash every
//! changed file with git's collision-detecting SHA-1 and deflate it at zlib level
//! 1, and ciphertext does not compress. In a profile of the commit after
//! untarring 264 MB, zlib took 53 % of the time and SHA-1 most of the rest.
//! Here each blob is hashed with the `sha1` crate (SHA-NI) while it is copied
//! into a loose object made of stored (uncompressed) zlib blocks. That is the
//! standard loose-object format, which git and libgit2 read as any other.
//!
//! ```text
//! .git/objects/xx/yyyy… (mode 0444) = zlib(stored blocks)("blob <len>\0" ‖ bytes)
//! id = SHA-1("blob <len>\0" ‖ bytes) = "xx" ‖ "yyyy…" in hex
//! ```
//!
//! What is staged: regular files and symlinks whose path the journal covers
//! (everything when there is no commit yet). A covered entry whose file is
//! gone, or is now something git cannot hold (FIFO, socket, device), is
//! dropped from the tree. A file that was only moved (or chmodded) since HEAD
//! is taken only if it is still HEAD's blob of the path it came from. Anything
//! else that differs from HEAD was not changed by pkfs and is left as HEAD has
//! it, so it stays visible as tampering.
//!
//! No git index is kept: the staging used to go through libgit2's
//! `.git/index`, which was rewritten whole at every commit (O(vault)), was the
//! file a power cut left empty, and needed full backing paths (a commit failed
//! for good once one passed 4096 bytes). An index left by an older pkfs is
//! removed at open (`history_version.rs`).

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use git2::Oid;

use super::changes::Origin;
use super::journal::Journal;
use crate::error::{Error, Result};
use crate::format::tags::Collector;

#[path = "stage_build.rs"]
mod build;
pub use build::{Builder, Stats, SyncBatch, Touched};

/// Whether a commit takes what is at one path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adopt {
    /// Not changed through pkfs: leave HEAD's entry as it is.
    No,
    /// Changed through pkfs: take whatever is there.
    Yes,
    /// Moved or chmodded through pkfs: take it only if it is this blob
    /// (`None`: HEAD had nothing where it came from, so nothing is taken).
    IfBlob(Option<Oid>),
}

/// What a commit takes, per the change journal, given HEAD's tree (`None`:
/// no commit yet, so everything): untouched paths stay as HEAD has them,
/// changed ones are taken, and a moved (or chmodded) one only if it is still
/// HEAD's blob of the path it came from.
pub fn by_journal<'a>(
    journal: &'a Journal,
    head: Option<&'a git2::Tree<'_>>,
) -> impl Fn(&str) -> Adopt + 'a {
    move |rel| match head {
        None => Adopt::Yes,
        Some(_) if !journal.covers(rel) => Adopt::No,
        Some(tree) => match journal.origin(rel) {
            Origin::Changed => Adopt::Yes,
            Origin::Head(from) => Adopt::IfBlob(
                tree.get_path(Path::new(&from))
                    .ok()
                    .filter(|e| e.kind() == Some(git2::ObjectType::Blob))
                    .map(|e| e.id()),
            ),
        },
    }
}

/// Make the loose objects just `written` durable before anything names them:
/// their data (in parallel, which lets the file system batch its journal
/// commits), then the directories holding their entries. One `syncfs` first
/// writes everything back in one go where it works, which leaves each fsync
/// next to nothing to do; where it does nothing, the fsyncs do the work.
/// (It also hurries the work tree's files to disk: see `History::commit`.)
pub(crate) fn sync_objects(objects: &Path, written: &[std::path::PathBuf]) -> Result<()> {
    use rayon::prelude::*;
    let dir = File::open(objects).map_err(|e| Error::io(objects, e))?;
    // SAFETY: syncfs(2) on a descriptor we own; the result is checked.
    if unsafe { libc::syncfs(std::os::fd::AsRawFd::as_raw_fd(&dir)) } != 0 {
        return Err(Error::io(objects, io::Error::last_os_error()));
    }
    written.par_iter().try_for_each(|p| {
        File::open(p)
            .and_then(|f| f.sync_all())
            .map_err(|e| Error::io(p, e))
    })?;
    let mut dirs: Vec<&Path> = written.iter().filter_map(|p| p.parent()).collect();
    dirs.sort_unstable();
    dirs.dedup();
    dirs.par_iter()
        .try_for_each(|d| super::atomic::fsync_dir(d))?;
    if !dirs.is_empty() {
        super::atomic::fsync_dir(objects)?;
    }
    Ok(())
}

/// Is the object database's copy of `id` whole? A loose copy that a power
/// cut left empty or short would otherwise count as present for ever.
/// `ours` is the length of the loose object this process would write.
fn sound(objects: &Path, id: Oid, ours: u64) -> bool {
    let hex = id.to_string();
    match fs::symlink_metadata(objects.join(&hex[..2]).join(&hex[2..])) {
        // Packed (or elsewhere): libgit2 checks packs itself.
        Err(_) => true,
        Ok(m) if m.len() == ours => true,
        Ok(m) if m.len() == 0 => false,
        // Written by libgit2 (compressed): inflated and hashed here, as
        // libgit2 can spin for ever on a truncated stream.
        Ok(_) => loose_hashes_to(&objects.join(&hex[..2]).join(&hex[2..]), id),
    }
}

/// Does the loose object at `path` inflate whole and hash to `id`?
fn loose_hashes_to(path: &Path, id: Oid) -> bool {
    use sha1::{Digest, Sha1};
    use std::io::Read;
    let Ok(file) = File::open(path) else {
        return false;
    };
    let mut z = flate2::read::ZlibDecoder::new(io::BufReader::new(file));
    let mut h = Sha1::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match z.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => h.update(&buf[..n]),
            Err(_) => return false,
        }
    }
    h.finalize().as_slice() == id.as_bytes()
}

/// Copy the first `len` bytes of `file` into a loose blob object under
/// `objects` (unless the object database has a sound copy already) and
/// return its id. A new object's path is added to `written`, to be made
/// durable (see `sync_objects`) before a commit names it; a damaged loose
/// copy is replaced.
pub fn write_blob(
    odb: &git2::Odb<'_>,
    objects: &Path,
    file: &File,
    len: u64,
    buf: &mut [u8],
    tags: Option<&mut Collector>,
    written: &mut Vec<std::path::PathBuf>,
) -> io::Result<Oid> {
    let tmp = tempfile::NamedTempFile::new_in(objects)?;
    // Stored blocks, but zero runs (holes) deflated: `loose_zlib.rs`.
    let mut z = super::loose_zlib::HoleZlib::new(io::BufWriter::with_capacity(1 << 20, tmp));
    let id = super::seal::stream_blob(file, len, buf, tags, &mut |chunk| z.write_all(chunk))?;
    let tmp = z.finish()?.into_inner().map_err(|e| e.into_error())?;
    let ours = tmp.as_file().metadata()?.len();
    if odb.exists(id) {
        if sound(objects, id, ours) {
            return Ok(id); // the temporary file is removed when dropped
        }
        tracing::warn!("replacing the damaged loose object {id} (a cut while it was written)");
    }
    let hex = id.to_string();
    let dir = objects.join(&hex[..2]);
    match fs::create_dir(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    tmp.as_file()
        .set_permissions(fs::Permissions::from_mode(0o444))?;
    let path = dir.join(&hex[2..]);
    tmp.persist(&path).map_err(|e| e.error)?;
    written.push(path);
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use git2::Repository;

    #[test]
    fn blobs_written_here_are_what_git_would_write() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init(dir.path()).unwrap();
        let odb = repo.odb().unwrap();
        let objects = repo.path().join("objects");
        let mut buf = vec![0u8; 4096]; // smaller than the data: several chunks
        for data in [&b""[..], b"x", &[0xA5u8; 100_000]] {
            let p = dir.path().join("f");
            fs::write(&p, data).unwrap();
            let mut write = || {
                let f = File::open(&p).unwrap();
                write_blob(
                    &odb,
                    &objects,
                    &f,
                    data.len() as u64,
                    &mut buf,
                    None,
                    &mut Vec::new(),
                )
                .unwrap()
            };
            let id = write();
            assert_eq!(id, Oid::hash_object(git2::ObjectType::Blob, data).unwrap());
            // A fresh handle reads it back through libgit2's own loose backend.
            let again = Repository::open(dir.path()).unwrap();
            assert_eq!(again.find_blob(id).unwrap().content(), data);
            // Writing it again keeps the one object.
            let id2 = write();
            assert_eq!(id2, id);
        }
        // Nothing left behind but the objects (no temporary files).
        let stray: Vec<_> = fs::read_dir(&objects)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().unwrap().is_file())
            .collect();
        assert!(stray.is_empty(), "{stray:?}");
    }

    #[test]
    fn an_empty_or_short_loose_object_is_replaced_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init(dir.path()).unwrap();
        let objects = repo.path().join("objects");
        let p = dir.path().join("f");
        fs::write(&p, vec![7u8; 10_000]).unwrap();
        let mut buf = vec![0u8; 4096];
        let mut write = |written: &mut Vec<std::path::PathBuf>| {
            let odb = repo.odb().unwrap();
            let f = File::open(&p).unwrap();
            write_blob(&odb, &objects, &f, 10_000, &mut buf, None, written).unwrap()
        };
        let mut written = Vec::new();
        let id = write(&mut written);
        let hex = id.to_string();
        let loose = objects.join(&hex[..2]).join(&hex[2..]);
        assert_eq!(written, std::slice::from_ref(&loose));
        let whole = fs::read(&loose).unwrap();
        // Present and whole: not written again.
        written.clear();
        write(&mut written);
        assert!(written.is_empty());
        // As a cut can leave it: empty, or cut short.
        for damaged in [&whole[..0], &whole[..whole.len() / 2]] {
            fs::remove_file(&loose).unwrap();
            fs::write(&loose, damaged).unwrap();
            written.clear();
            assert_eq!(write(&mut written), id);
            assert_eq!(written.len(), 1);
            assert_eq!(fs::read(&loose).unwrap(), whole);
        }
    }

    #[test]
    fn a_file_that_shrinks_while_committed_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init(dir.path()).unwrap();
        let p = dir.path().join("f");
        fs::write(&p, b"short").unwrap();
        let mut buf = vec![0u8; 16];
        let err = write_blob(
            &repo.odb().unwrap(),
            &repo.path().join("objects"),
            &File::open(&p).unwrap(),
            100,
            &mut buf,
            None,
            &mut Vec::new(),
        )
        .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }
}

#[cfg(test)]
#[path = "stage_tests.rs"]
mod build_tests;
