//! Warming the loose objects a checkout is about to read.
//!
//! libgit2 reads each blob it writes into the work tree from its loose object
//! file (`.git/objects/xx/yyyy…`, see `stage.rs`), one after the other: for a
//! cold checkout of thousands of files that is thousands of small random
//! reads waiting on the disk in turn. [`Warmer::start`] lists the blobs the
//! target adds or changes under `contents/` (in the order libgit2 writes
//! them) and has a few threads open each object file and ask the kernel to
//! read it ahead (`POSIX_FADV_WILLNEED`), so the disk serves many at once
//! while libgit2 works through them. Best effort: nothing here can fail the
//! checkout, and objects in pack files are left alone.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use git2::{ObjectType, Oid, Repository, Tree};

use super::reaper::{contents_tree, same_name};

/// Threads that open object files at once: each open of a cold file waits on
/// the disk for its directory and inode blocks.
const THREADS: usize = 8;

/// Below this many objects, warming is not worth the threads.
const MIN_OBJECTS: usize = 64;

/// Warming in progress; dropping it stops the threads and waits for them.
pub struct Warmer {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Warmer {
    /// Start warming what checking out `to` (from `from`) will read.
    pub fn start(repo: &Repository, from: Option<&Tree<'_>>, to: &Tree<'_>) -> Warmer {
        let mut ids = Vec::new();
        if let Some(new) = contents_tree(repo, to) {
            let old = from.and_then(|t| contents_tree(repo, t));
            changed_blobs(repo, old.as_ref(), &new, &mut ids);
        }
        let stop = Arc::new(AtomicBool::new(false));
        if ids.len() < MIN_OBJECTS {
            return Warmer {
                stop,
                threads: Vec::new(),
            };
        }
        let objects = repo.path().join("objects");
        let paths: Arc<Vec<PathBuf>> = Arc::new(
            ids.iter()
                .map(|id| {
                    let hex = id.to_string();
                    objects.join(&hex[..2]).join(&hex[2..])
                })
                .collect(),
        );
        let next = Arc::new(AtomicUsize::new(0));
        let threads = (0..THREADS)
            .filter_map(|i| {
                let (paths, next, stop) = (paths.clone(), next.clone(), stop.clone());
                std::thread::Builder::new()
                    .name(format!("pkfs-warm-{i}"))
                    .spawn(move || warm(&paths, &next, &stop))
                    .ok()
            })
            .collect();
        Warmer { stop, threads }
    }
}

impl Drop for Warmer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn warm(paths: &[PathBuf], next: &AtomicUsize, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        let i = next.fetch_add(1, Ordering::Relaxed);
        let Some(p) = paths.get(i) else { return };
        read_ahead(p);
    }
}

fn read_ahead(p: &Path) {
    if let Ok(f) = std::fs::File::open(p) {
        // SAFETY: a valid descriptor; advice only, the result does not matter.
        unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_WILLNEED) };
    }
}

/// Push the ids of the blobs of `new` that `old` does not have at the same
/// path, in tree order (the order libgit2 checks them out in).
fn changed_blobs(repo: &Repository, old: Option<&Tree<'_>>, new: &Tree<'_>, out: &mut Vec<Oid>) {
    for e in new.iter() {
        let before = same_name(old, &e);
        if before.as_ref().is_some_and(|b| b.id() == e.id()) {
            continue;
        }
        match e.kind() {
            Some(ObjectType::Blob) => out.push(e.id()),
            Some(ObjectType::Tree) => {
                let Ok(sub) = repo.find_tree(e.id()) else {
                    continue;
                };
                let old_sub = before
                    .filter(|b| b.kind() == Some(ObjectType::Tree))
                    .and_then(|b| repo.find_tree(b.id()).ok());
                changed_blobs(repo, old_sub.as_ref(), &sub, out);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_only_what_the_target_adds_or_changes() {
        let d = tempfile::tempdir().unwrap();
        let repo = Repository::init(d.path()).unwrap();
        let blob = |b: &[u8]| repo.blob(b).unwrap();
        let tree = |entries: &[(&str, Oid, i32)]| {
            let mut tb = repo.treebuilder(None).unwrap();
            for (n, id, mode) in entries {
                tb.insert(n, *id, *mode).unwrap();
            }
            tb.write().unwrap()
        };
        let (a, b, c, x) = (blob(b"a"), blob(b"b"), blob(b"c"), blob(b"x"));
        let same = tree(&[("s", a, 0o100644)]);
        let old_sub = tree(&[("k", b, 0o100644), ("m", a, 0o100644)]);
        let new_sub = tree(&[("k", b, 0o100644), ("m", c, 0o100644), ("n", x, 0o100644)]);
        let fresh = tree(&[("f", x, 0o100644)]);
        let old = tree(&[("same", same, 0o040000), ("sub", old_sub, 0o040000)]);
        let new = tree(&[
            ("fresh", fresh, 0o040000),
            ("same", same, 0o040000),
            ("sub", new_sub, 0o040000),
            ("top", a, 0o100644),
        ]);
        let (old, new) = (repo.find_tree(old).unwrap(), repo.find_tree(new).unwrap());
        let mut got = Vec::new();
        changed_blobs(&repo, Some(&old), &new, &mut got);
        // fresh/f, sub/m, sub/n, top; not same/s or sub/k.
        assert_eq!(got, vec![x, c, x, a]);
        let mut all = Vec::new();
        changed_blobs(&repo, None, &new, &mut all);
        assert_eq!(all, vec![x, a, b, c, x, a]);
    }

    #[test]
    fn warming_a_big_checkout_reads_ahead_and_stops() {
        let d = tempfile::tempdir().unwrap();
        let repo = Repository::init(d.path()).unwrap();
        let mut tb = repo.treebuilder(None).unwrap();
        for i in 0..200u32 {
            let id = repo.blob(&i.to_le_bytes()).unwrap();
            tb.insert(format!("f{i}"), id, 0o100644).unwrap();
        }
        let contents = tb.write().unwrap();
        let mut root = repo.treebuilder(None).unwrap();
        root.insert(super::super::fsck::CONTENTS, contents, 0o040000)
            .unwrap();
        let to = repo.find_tree(root.write().unwrap()).unwrap();
        let w = Warmer::start(&repo, None, &to);
        assert_eq!(w.threads.len(), THREADS);
        drop(w);
        // Too few objects: no threads.
        let small = repo.find_tree(contents).unwrap();
        assert!(Warmer::start(&repo, None, &small).threads.is_empty());
    }
}
