//! Removing, in the background, whole directories that a checkout drops.
//!
//! A checkout to a version that lacks a directory the current version has
//! would unlink every file below it, one by one, before it returns: for a
//! tree of 5000 files that is most of the checkout's time, spent waiting on
//! the disk for cold inodes. Instead, [`defer_dropped_dirs`] renames each such
//! directory (the topmost one of each dropped subtree) into the vault's trash
//!
//! ```text
//! V/trash/<unix-nanos>-<n>/...   ciphertext only, as it was under contents/
//! ```
//!
//! before the checkout writes the work tree (it then finds those paths gone, which is what
//! the target wants), and one process-wide thread removes the trash
//! afterwards. A crash leaves entries in `V/trash/`; [`resume`], called when a
//! vault's history is opened, queues them again.
//!
//! Nothing else reads `V/trash/`: it is outside `contents/`, so git, fsck and
//! the mount never see it. [`pending`] tells `pkfs status` how many removals
//! are left, and [`drain`] waits for them (before a process exits, and before
//! a vault directory is deleted).

use std::collections::{HashSet, VecDeque};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use git2::{ObjectType, Repository, Tree, TreeEntry};
use parking_lot::{Condvar, Mutex};

use super::dirfd::DirFd;
use super::fsck::CONTENTS;

/// The trash of a vault, beside `contents/`.
pub const TRASH_DIR: &str = "trash";

#[derive(Default)]
struct State {
    queue: VecDeque<PathBuf>,
    /// Queued or being removed.
    known: HashSet<PathBuf>,
    worker: bool,
}

struct Shared {
    state: Mutex<State>,
    idle: Condvar,
}

fn shared() -> &'static Shared {
    static S: OnceLock<Shared> = OnceLock::new();
    S.get_or_init(|| Shared {
        state: Mutex::new(State::default()),
        idle: Condvar::new(),
    })
}

/// Queue `path` (a directory inside some vault's trash) for removal.
fn enqueue(path: PathBuf) {
    let s = shared();
    let mut st = s.state.lock();
    if !st.known.insert(path.clone()) {
        return;
    }
    st.queue.push_back(path);
    if st.worker {
        return;
    }
    st.worker = true;
    let spawned = std::thread::Builder::new()
        .name("pkfs-reaper".into())
        .spawn(work);
    if let Err(e) = spawned {
        // Without a thread, remove what is queued on this one.
        tracing::warn!("starting the background removal thread: {e}");
        drop(st);
        work();
    }
}

fn work() {
    let s = shared();
    loop {
        let next = {
            let mut st = s.state.lock();
            match st.queue.pop_front() {
                Some(p) => p,
                None => {
                    st.worker = false;
                    s.idle.notify_all();
                    return;
                }
            }
        };
        match fs::remove_dir_all(&next) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            // Left in the trash; the next open of the vault tries again.
            Err(e) => tracing::warn!("removing {}: {e}", next.display()),
        }
        s.state.lock().known.remove(&next);
    }
}

/// How many trash directories are queued or being removed in this process.
pub fn pending() -> usize {
    shared().state.lock().known.len()
}

/// Wait until every queued removal has been tried.
pub fn drain() {
    let s = shared();
    let mut st = s.state.lock();
    while st.worker || !st.known.is_empty() {
        s.idle.wait(&mut st);
    }
}

/// Queue whatever an earlier process left in the trash of the vault at
/// `vault_dir`. Best effort: a trash that cannot be listed is left alone.
pub fn resume(vault_dir: &Path) {
    let Ok(entries) = fs::read_dir(vault_dir.join(TRASH_DIR)) else {
        return;
    };
    for e in entries.flatten() {
        enqueue(e.path());
    }
}

/// Move every directory under `V/contents/` that `from` (HEAD's tree) has
/// and `to` (the target's) lacks, or has as something other than a
/// directory, into the trash, and queue it for removal. Only the topmost
/// directory of each dropped subtree moves. Call it after the checkout's
/// intent is journaled and before libgit2 runs: a crash in between leaves a
/// checkout that repeating finishes and a trash that [`resume`] empties. Best
/// effort: a directory that cannot be moved is left for libgit2 to remove.
/// Returns how many moved.
pub fn defer_dropped_dirs(
    repo: &Repository,
    vault_dir: &Path,
    from: &Tree<'_>,
    to: &Tree<'_>,
) -> usize {
    let Some(old) = contents_tree(repo, from) else {
        return 0;
    };
    let new = contents_tree(repo, to);
    // Through directory descriptors: a backing path may be longer than
    // PATH_MAX (see `dirfd.rs`).
    let (Ok(vault), Ok(contents)) = (
        DirFd::open(vault_dir),
        DirFd::open(&vault_dir.join(CONTENTS)),
    ) else {
        return 0;
    };
    let mut d = Dropper {
        repo,
        vault_dir,
        vault,
        trash: None,
        found: false,
        moved: 0,
    };
    d.dropped_dirs(&contents, &old, new.as_ref());
    if d.found {
        super::atomic::crash_point("checkout-after-trash");
    }
    d.moved
}

/// The walk of [`defer_dropped_dirs`].
struct Dropper<'a, 'r> {
    repo: &'r Repository,
    vault_dir: &'a Path,
    vault: DirFd,
    /// `V/trash`, once made.
    trash: Option<DirFd>,
    found: bool,
    moved: usize,
}

impl Dropper<'_, '_> {
    /// Move to the trash the directories of `old` (at `dir`) that `new` does
    /// not have as a directory; recurse into those both have but with
    /// different contents.
    fn dropped_dirs(&mut self, dir: &DirFd, old: &Tree<'_>, new: Option<&Tree<'_>>) {
        for e in old.iter() {
            if e.kind() != Some(ObjectType::Tree) {
                continue;
            }
            let Ok(name) = std::str::from_utf8(e.name_bytes()) else {
                continue;
            };
            match same_name(new, &e) {
                Some(n) if n.kind() == Some(ObjectType::Tree) => {
                    if n.id() == e.id() {
                        continue;
                    }
                    let o = self.repo.find_tree(e.id());
                    let n = self.repo.find_tree(n.id());
                    if let (Ok(o), Ok(n), Ok(sub)) = (o, n, dir.child(name)) {
                        self.dropped_dirs(&sub, &o, Some(&n));
                    }
                }
                _ => {
                    self.found = true;
                    if !fs::symlink_metadata(dir.at(name)).is_ok_and(|m| m.is_dir()) {
                        continue;
                    }
                    let Some(trash) = self.trash() else {
                        return;
                    };
                    let dst = unique_name();
                    if dir.rename_to(name, trash, &dst, 0).is_ok() {
                        enqueue(self.vault_dir.join(TRASH_DIR).join(dst));
                        self.moved += 1;
                    }
                }
            }
        }
    }

    fn trash(&mut self) -> Option<&DirFd> {
        if self.trash.is_none() {
            match self.vault.mkdir(TRASH_DIR, 0o700) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(_) => return None,
            }
            self.trash = self.vault.child(TRASH_DIR).ok();
        }
        self.trash.as_ref()
    }
}

/// The tree of `contents/` in a version's root tree.
pub(super) fn contents_tree<'r>(repo: &'r Repository, root: &Tree<'_>) -> Option<Tree<'r>> {
    root.get_name(CONTENTS)
        .filter(|e| e.kind() == Some(ObjectType::Tree))
        .and_then(|e| repo.find_tree(e.id()).ok())
}

/// The entry of `tree` with the same name as `e`, if any.
pub(super) fn same_name<'t>(
    tree: Option<&'t Tree<'_>>,
    e: &TreeEntry<'_>,
) -> Option<TreeEntry<'t>> {
    let name = std::str::from_utf8(e.name_bytes()).ok()?;
    tree?.get_name(name)
}

fn unique_name() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{nanos}-{}", N.fetch_add(1, Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_empties_a_trash_left_behind() {
        let d = tempfile::tempdir().unwrap();
        let left = d.path().join(TRASH_DIR).join("1-0/a/b");
        fs::create_dir_all(&left).unwrap();
        fs::write(left.join("f"), b"x").unwrap();
        resume(d.path());
        drain();
        let rest: Vec<_> = fs::read_dir(d.path().join(TRASH_DIR)).unwrap().collect();
        assert!(rest.is_empty(), "{rest:?}");
        assert_eq!(pending(), 0);
        // Nothing to resume is not an error.
        resume(&d.path().join("missing"));
        drain();
    }

    fn put(v: &Path, rel: &str) {
        let p = v.join(CONTENTS).join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, rel.as_bytes()).unwrap();
    }

    /// Every file under `contents/`, relative to it.
    fn files(v: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![v.join(CONTENTS)];
        while let Some(d) = stack.pop() {
            for e in fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    let rel = p.strip_prefix(v.join(CONTENTS)).unwrap();
                    out.push(rel.to_string_lossy().into_owned());
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn a_checkout_moves_dropped_directories_to_the_trash() {
        use crate::crypto::SymKey;
        use crate::store::history::History;
        let d = tempfile::tempdir().unwrap();
        let v = d.path();
        let key = SymKey::from_bytes([5; 32]);
        for f in [".diriv", "keep/.diriv", "keep/f", "keep/same/f", "gone/g"] {
            put(v, f);
        }
        let h = History::init(v, &key, &[]).unwrap();
        let old = files(v);
        // Dropped: a whole tree, a subtree of a kept directory, and a
        // directory that becomes a file. Kept: `keep/same` (unchanged).
        for f in ["new/a/b/c", "new/d", "keep/sub/x/y", "keep/sub/z", "swap/q"] {
            put(v, f);
        }
        fs::remove_dir_all(v.join("contents/gone")).unwrap();
        h.mark("contents").unwrap();
        let second = h.commit(&[]).unwrap();

        let repo = git2::Repository::open(v).unwrap();
        let tree = |spec: &str| repo.revparse_single(spec).unwrap().peel_to_tree().unwrap();
        let moved = defer_dropped_dirs(&repo, v, &tree("HEAD"), &tree("HEAD~1"));
        assert_eq!(moved, 3);
        for gone in ["keep/sub", "new", "swap"] {
            assert!(!v.join(CONTENTS).join(gone).exists(), "{gone}");
        }
        assert!(v.join("contents/keep/same/f").exists());
        assert_eq!(fs::read_dir(v.join(TRASH_DIR)).unwrap().count(), 3);

        h.checkout("HEAD~1").unwrap();
        assert_eq!(files(v), old);
        drain();
        let trash: Vec<_> = fs::read_dir(v.join(TRASH_DIR)).unwrap().collect();
        assert!(trash.is_empty(), "{trash:?}");
        // The work tree followed: committing now records HEAD~1's tree again.
        h.mark("contents").unwrap();
        let again = h.commit(&[]).unwrap();
        let tree_of = |id: &str| {
            let oid = git2::Oid::from_str(id).unwrap();
            repo.find_commit(oid).unwrap().tree_id()
        };
        let first = h.log(None, false).unwrap().last().unwrap().id.clone();
        assert_eq!(tree_of(&again), tree_of(&first));
        assert_ne!(tree_of(&second), tree_of(&first));
    }

    #[test]
    fn a_checkout_that_drops_directories_then_returns_restores_them() {
        use crate::crypto::SymKey;
        use crate::store::history::History;
        let d = tempfile::tempdir().unwrap();
        let v = d.path();
        let key = SymKey::from_bytes([6; 32]);
        put(v, ".diriv");
        let h = History::init(v, &key, &[]).unwrap();
        for f in ["t/a/1", "t/a/2", "t/b/3", "u"] {
            put(v, f);
        }
        h.mark("contents").unwrap();
        h.commit(&[]).unwrap();
        let full = files(v);
        h.checkout("HEAD~1").unwrap();
        assert_eq!(files(v), vec![".diriv".to_string()]);
        h.checkout("latest").unwrap();
        assert_eq!(files(v), full);
        drain();
        assert_eq!(fs::read_dir(v.join(TRASH_DIR)).unwrap().count(), 0);
    }

    #[test]
    fn names_are_unique() {
        assert_ne!(unique_name(), unique_name());
    }
}
