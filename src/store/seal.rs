//! The seal: what the committed version (HEAD) says each backing file must be.
//!
//! Every blob authenticates on its own, but nothing in a blob says *where* it
//! belongs or *which version* of its file it is. The git tree of HEAD does: it
//! maps each backing path to the git blob id (SHA-1 of `"blob <len>\0" | bytes`)
//! of its ciphertext, and HEAD's commit message is sealed with AAD binding that
//! tree and the parents (see `history.rs`), so the tree cannot be forged without
//! the vault key. A backing file that the change journal does not cover must
//! hash to HEAD's entry for its path. This catches, on open:
//!
//! * two blobs swapped (within or across directories): each hashes to the other's id;
//! * a blob rolled back to an older version of itself: an older id;
//! * a blob emptied, planted or restored from elsewhere: not HEAD's id, or no
//!   entry at all.
//!
//! Hashing is done once per file per process: a verified file is remembered by
//! its `(dev, ino, size, mtime, ctime)` until it changes.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use git2::Oid;
use parking_lot::Mutex;
use sha1::{Digest, Sha1};

use super::changes::{Changes, Origin};
use super::tags::TagStore;
use crate::error::{Error, Result};
use crate::format::tags::{Collector, TagList, MIN_BLOB_LEN};

/// What HEAD says about one backing path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Not checked: the journal says it may have changed since HEAD, or the vault
    /// has no commit yet.
    Unchecked,
    /// It must be exactly this git blob.
    Blob(Oid),
    /// HEAD has no file there.
    Absent,
    /// HEAD itself could not be read or does not authenticate: nothing is
    /// trusted until `pkfs fsck` has looked at it.
    Refused,
}

/// How a file was found to be what HEAD committed.
pub enum Vouched {
    /// Hashed whole (or remembered as such); the bytes hashed, when kept.
    Whole(Option<Vec<u8>>),
    /// Not hashed: its pages must match this tag list as they are read.
    ByTags(Arc<TagList>),
}

/// A snapshot of HEAD's tree (backing path → blob id) and of the journal.
pub struct Seal {
    vault_dir: PathBuf,
    /// `None` before the first commit: nothing to check against.
    blobs: Option<HashMap<String, Oid>>,
    journal: Changes,
    verified: Mutex<HashMap<(u64, u64), (Stamp, Oid)>>,
    /// Why HEAD cannot vouch for anything, when it cannot.
    broken: Option<String>,
    /// The vault's tag lists: a big file opened for reading is checked page by
    /// page against its blob's list instead of hashed whole.
    tags: Option<Arc<TagStore>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    fn of(m: &std::fs::Metadata) -> Stamp {
        Stamp {
            size: m.len(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        }
    }
}

impl Seal {
    pub fn new(vault_dir: &Path, blobs: Option<HashMap<String, Oid>>, journal: Changes) -> Seal {
        Seal {
            vault_dir: vault_dir.to_path_buf(),
            blobs,
            journal,
            verified: Mutex::new(HashMap::new()),
            broken: None,
            tags: None,
        }
    }

    /// Use (and fill) the tag lists in `store`.
    pub fn with_tags(mut self, store: Arc<TagStore>) -> Seal {
        self.tags = Some(store);
        self
    }

    /// A seal for a vault whose HEAD is damaged or forged: every check fails
    /// with `why`.
    pub fn broken(vault_dir: &Path, why: String) -> Seal {
        Seal {
            broken: Some(why),
            ..Seal::new(vault_dir, None, Changes::default())
        }
    }

    /// Keep what `old` verified: a file with the same stamp still has the
    /// same blob id, whatever HEAD is now.
    pub fn inherit(&self, old: &Seal) {
        let mut mine = self.verified.lock();
        for (k, v) in old.verified.lock().iter() {
            mine.entry(*k).or_insert(*v);
        }
    }

    /// The path of `abs` relative to the vault directory (`contents/…`).
    pub fn rel<'a>(&self, abs: &'a Path) -> Option<&'a str> {
        abs.strip_prefix(&self.vault_dir).ok()?.to_str()
    }

    /// What HEAD says about `rel`: `live` is the caller's journal, when it
    /// keeps one (`None`: the journal of this snapshot answers). A path moved
    /// since HEAD must be HEAD's entry at its old path.
    pub fn expect(&self, rel: &str, live: impl Fn(&str) -> Option<Origin>) -> Expect {
        if self.broken.is_some() {
            return Expect::Refused;
        }
        let Some(blobs) = &self.blobs else {
            return Expect::Unchecked;
        };
        match live(rel).unwrap_or_else(|| self.journal.origin(rel)) {
            Origin::Changed => Expect::Unchecked,
            Origin::Head(from) => blobs
                .get(&from)
                .map_or(Expect::Absent, |&id| Expect::Blob(id)),
        }
    }

    /// Check the whole ciphertext `bytes` of the file at `abs`.
    pub fn verify_bytes(&self, abs: &Path, bytes: &[u8]) -> Result<()> {
        let expect = self.expect_abs(abs, |_| None);
        self.judge(abs, expect, || Ok(blob_id_of_bytes(bytes)))
    }

    /// Check `bytes`, the whole content of the backing file at `rel`.
    pub fn verify_rel_bytes(
        &self,
        rel: &str,
        bytes: &[u8],
        live: impl Fn(&str) -> Option<Origin>,
    ) -> Result<()> {
        self.judge(Path::new(rel), self.expect(rel, live), || {
            Ok(blob_id_of_bytes(bytes))
        })
    }

    /// Check the open backing file at `rel` (relative to the vault directory),
    /// hashing it unless a check of the same, unchanged file is remembered.
    pub fn verify_file(
        &self,
        rel: &str,
        file: &File,
        live: impl Fn(&str) -> Option<Origin>,
    ) -> Result<()> {
        self.verify_file_keeping(rel, file, live, 0).map(|_| ())
    }

    /// [`Seal::verify_file`], also returning the bytes it hashed when the file
    /// was read whole and is at most `keep_max` bytes long: a reader can then
    /// decrypt a small file from them, without reading it again.
    pub fn verify_file_keeping(
        &self,
        rel: &str,
        file: &File,
        live: impl Fn(&str) -> Option<Origin>,
        keep_max: u64,
    ) -> Result<Option<Vec<u8>>> {
        Ok(match self.check(rel, file, live, keep_max, false)? {
            Vouched::Whole(kept) => kept,
            Vouched::ByTags(_) => None,
        })
    }

    /// [`Seal::verify_file_keeping`] for a reader: a big file whose committed
    /// blob has a saved tag list of its length is not hashed; the caller must
    /// then check its header and every page it reads against the list
    /// (`FileState::expect_tags`).
    pub fn verify_for_reader(
        &self,
        rel: &str,
        file: &File,
        live: impl Fn(&str) -> Option<Origin>,
        keep_max: u64,
    ) -> Result<Vouched> {
        self.check(rel, file, live, keep_max, true)
    }

    fn check(
        &self,
        rel: &str,
        file: &File,
        live: impl Fn(&str) -> Option<Origin>,
        keep_max: u64,
        by_tags: bool,
    ) -> Result<Vouched> {
        let shown = Path::new(rel);
        let expect = self.expect(rel, live);
        let Expect::Blob(want) = expect else {
            return self
                .judge(shown, expect, unreachable_hash)
                .map(|()| Vouched::Whole(None));
        };
        let m = file.metadata().map_err(|e| Error::io(shown, e))?;
        let key = (m.dev(), m.ino());
        let stamp = Stamp::of(&m);
        if let Some(&(s, id)) = self.verified.lock().get(&key) {
            if s == stamp && id == want {
                return Ok(Vouched::Whole(None));
            }
        }
        if by_tags && m.len() >= MIN_BLOB_LEN {
            let list = self.tags.as_ref().and_then(|t| t.load(want));
            if let Some(list) = list.filter(|l| l.blob_len == m.len()) {
                return Ok(Vouched::ByTags(Arc::new(list)));
            }
        }
        let (got, kept) = if m.len() <= keep_max {
            let mut bytes = vec![0u8; m.len() as usize];
            file.read_exact_at(&mut bytes, 0)
                .map_err(|e| Error::io(shown, e))?;
            (blob_id_of_bytes(&bytes), Some(bytes))
        } else {
            // A big blob without a tag list gets one on the way, once it is
            // known to be HEAD's: the next open of it need not hash it.
            let store = self
                .tags
                .as_ref()
                .filter(|t| m.len() >= MIN_BLOB_LEN && !t.has(want));
            let mut collector = store.and_then(|_| Collector::new(m.len()));
            let id = blob_id_of_file(file, m.len(), collector.as_mut())
                .map_err(|e| Error::io(shown, e))?;
            if let (Some(store), Some(c), true) = (store, collector, id == want) {
                if let Some(list) = c.finish(raw_id(id)) {
                    store.save(&list);
                }
            }
            (id, None)
        };
        self.judge(shown, expect, || Ok(got))?;
        self.verified.lock().insert(key, (stamp, got));
        Ok(Vouched::Whole(kept))
    }

    fn expect_abs(&self, abs: &Path, live: impl Fn(&str) -> Option<Origin>) -> Expect {
        match self.rel(abs) {
            Some(rel) => self.expect(rel, live),
            // Outside the vault (cannot happen for our own paths): nothing to say.
            None => Expect::Unchecked,
        }
    }

    /// Compare what HEAD expects with the hash `got` (computed only when needed).
    fn judge(&self, abs: &Path, expect: Expect, got: impl FnOnce() -> Result<Oid>) -> Result<()> {
        judge(abs, expect, got, self.broken.as_deref())
    }
}

fn unreachable_hash() -> Result<Oid> {
    Ok(Oid::ZERO_SHA1)
}

fn judge(
    abs: &Path,
    expect: Expect,
    got: impl FnOnce() -> Result<Oid>,
    broken: Option<&str>,
) -> Result<()> {
    match expect {
        Expect::Unchecked => Ok(()),
        Expect::Refused => Err(Error::corrupt(
            abs.display(),
            format!(
                "the vault's committed version cannot vouch for it ({}); run `pkfs fsck`",
                broken.unwrap_or("HEAD is unreadable")
            ),
        )),
        Expect::Absent => Err(Error::corrupt(
            abs.display(),
            "this file is not in the committed version and no change to it was journaled \
             (planted or moved here); run `pkfs fsck`",
        )),
        Expect::Blob(want) => {
            if got()? == want {
                Ok(())
            } else {
                Err(Error::corrupt(
                    abs.display(),
                    "this file differs from its committed version and no change to it was \
                     journaled (swapped, rolled back or replaced); run `pkfs fsck`",
                ))
            }
        }
    }
}

/// The git blob id of `bytes`.
pub fn blob_id_of_bytes(bytes: &[u8]) -> Oid {
    let mut h = Sha1::new();
    h.update(format!("blob {}\0", bytes.len()).as_bytes());
    h.update(bytes);
    oid(h)
}

/// Read size of the streamed hash.
const HASH_CHUNK: usize = 1 << 20;

thread_local! {
    /// Each thread's read buffer for hashing. Ciphertext only, so it is not
    /// wiped; reusing it avoids a zero-filled megabyte per checked file,
    /// which was the top symbol (21%) of `md5sum` over a tree in `perf`.
    static HASH_BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// An id's 20 bytes.
pub fn raw_id(id: Oid) -> [u8; 20] {
    let mut raw = [0u8; 20];
    raw.copy_from_slice(id.as_bytes());
    raw
}

/// The git blob id of the first `len` bytes of `file`, streamed, feeding them
/// to `tags` too when given.
pub fn blob_id_of_file(file: &File, len: u64, tags: Option<&mut Collector>) -> io::Result<Oid> {
    HASH_BUF.with(|b| {
        let mut buf = b.borrow_mut();
        let want = usize::try_from(len).unwrap_or(HASH_CHUNK).min(HASH_CHUNK);
        if buf.len() < want {
            buf.resize(want, 0);
        }
        stream_blob(file, len, &mut buf[..want], tags, &mut |_| Ok(()))
    })
}

/// Read the first `len` bytes of `file` through `buf`, handing `sink` the git
/// blob header and then each chunk (and `tags` each chunk), and return the blob
/// id. A file shorter than `len` is an error.
pub fn stream_blob(
    file: &File,
    len: u64,
    buf: &mut [u8],
    mut tags: Option<&mut Collector>,
    sink: &mut dyn FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<Oid> {
    let header = format!("blob {len}\0");
    let mut h = Sha1::new();
    h.update(header.as_bytes());
    sink(header.as_bytes())?;
    let mut at = 0u64;
    // Holes of a sparse file (`format::holes`) are zeros: fed from `zeros`
    // without reading them (the kernel would zero-fill each page to copy it).
    let zeros = vec![0u8; buf.len().min(1 << 20)];
    let mut data_at = 0u64;
    while at < len {
        if at >= data_at {
            data_at = next_data(file, at, len);
        }
        if data_at > at {
            let take = usize::try_from(data_at.min(len) - at)
                .unwrap_or(usize::MAX)
                .min(zeros.len());
            let z = &zeros[..take];
            h.update(z);
            if let Some(c) = tags.as_deref_mut() {
                c.feed(z);
            }
            sink(z)?;
            at += take as u64;
            continue;
        }
        let take = usize::try_from(len - at)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let n = file.read_at(&mut buf[..take], at)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file shrank while it was being read",
            ));
        }
        h.update(&buf[..n]);
        if let Some(c) = tags.as_deref_mut() {
            c.feed(&buf[..n]);
        }
        sink(&buf[..n])?;
        at += n as u64;
    }
    Ok(oid(h))
}

/// Where the next data at or after `at` starts in `file` (SEEK_DATA): `len`
/// when only a hole is left, `at` when unknown (read it). Moves the file's
/// offset, which no reader of a blob uses (they read at offsets).
fn next_data(file: &File, at: u64, len: u64) -> u64 {
    use std::os::fd::AsRawFd;
    let Ok(off) = libc::off_t::try_from(at) else {
        return at;
    };
    // SAFETY: a plain system call on a valid descriptor; the result is checked.
    let r = unsafe { libc::lseek(file.as_raw_fd(), off, libc::SEEK_DATA) };
    if r >= 0 {
        return (r as u64).max(at);
    }
    // No data left: a hole up to `len`, unless the file is shorter (then the
    // read that follows reports it).
    match io::Error::last_os_error().raw_os_error() {
        Some(libc::ENXIO) if file.metadata().is_ok_and(|m| m.len() >= len) => len,
        _ => at,
    }
}

fn oid(h: Sha1) -> Oid {
    let d = h.finalize();
    // A SHA-1 digest is always 20 bytes, which is what Oid::from_bytes takes.
    Oid::from_bytes(d.as_slice()).unwrap_or(Oid::ZERO_SHA1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_ids_match_git() {
        for data in [&b""[..], b"hello", &[7u8; 3 << 20]] {
            let want = Oid::hash_object(git2::ObjectType::Blob, data).unwrap();
            assert_eq!(blob_id_of_bytes(data), want);
            let mut f = tempfile::tempfile().unwrap();
            std::io::Write::write_all(&mut f, data).unwrap();
            assert_eq!(blob_id_of_file(&f, data.len() as u64, None).unwrap(), want);
        }
    }

    #[test]
    fn a_swapped_or_planted_file_is_refused_and_a_journaled_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("contents/a");
        let b = dir.path().join("contents/b");
        std::fs::create_dir(dir.path().join("contents")).unwrap();
        std::fs::write(&a, b"AAAA").unwrap();
        std::fs::write(&b, b"BBBB").unwrap();
        let blobs = HashMap::from([
            ("contents/a".to_string(), blob_id_of_bytes(b"AAAA")),
            ("contents/b".to_string(), blob_id_of_bytes(b"BBBB")),
        ]);
        let seal = Seal::new(dir.path(), Some(blobs), Changes::default());
        let open = |p: &Path| File::open(p).unwrap();
        seal.verify_file("contents/a", &open(&a), |_| None).unwrap();
        // Swap the two files.
        std::fs::write(&a, b"BBBB").unwrap();
        std::fs::write(&b, b"AAAA").unwrap();
        assert!(matches!(
            seal.verify_file("contents/a", &open(&a), |_| None),
            Err(Error::Corrupt { .. })
        ));
        assert!(seal.verify_bytes(&b, b"AAAA").is_err());
        // Journaled: not checked.
        seal.verify_file("contents/a", &open(&a), |r| {
            (r == "contents/a").then_some(Origin::Changed)
        })
        .unwrap();
        let planted = dir.path().join("contents/c");
        std::fs::write(&planted, b"CCCC").unwrap();
        assert!(seal
            .verify_file("contents/c", &open(&planted), |_| None)
            .is_err());
        // No commit yet: nothing to check against.
        let fresh = Seal::new(dir.path(), None, Changes::default());
        fresh
            .verify_file("contents/c", &open(&planted), |_| None)
            .unwrap();
    }

    #[test]
    fn a_moved_file_is_checked_against_its_old_path() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("contents")).unwrap();
        let b = dir.path().join("contents/b");
        let blobs = HashMap::from([("contents/a".to_string(), blob_id_of_bytes(b"AAAA"))]);
        let mut moved = Changes::default();
        moved.moved(
            "contents/a",
            "contents/b",
            super::super::changes::MoveKind::Rename,
        );
        let seal = Seal::new(dir.path(), Some(blobs), moved);
        std::fs::write(&b, b"AAAA").unwrap();
        seal.verify_file("contents/b", &File::open(&b).unwrap(), |_| None)
            .unwrap();
        std::fs::write(&b, b"BBBBB").unwrap(); // another size: not the remembered file
        assert!(matches!(
            seal.verify_file("contents/b", &File::open(&b).unwrap(), |_| None),
            Err(Error::Corrupt { .. })
        ));
        // The caller's live journal answers instead of the snapshot's.
        let live = |_: &str| Some(Origin::Changed);
        seal.verify_file("contents/b", &File::open(&b).unwrap(), live)
            .unwrap();
    }
}
