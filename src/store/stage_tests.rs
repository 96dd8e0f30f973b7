//! Tests of the index-free staging (`stage_build.rs`).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use git2::{Oid, Repository, Tree};

use super::{Adopt, Builder, Stats, Touched};
use crate::store::dirfd::DirFd;

fn build(
    repo: &Repository,
    w: &Path,
    head: Option<&Tree<'_>>,
    touched: &Touched,
    adopt: &dyn Fn(&str) -> Adopt,
) -> (Oid, Stats) {
    let root = DirFd::open(w).unwrap();
    Builder::new(repo, adopt, None)
        .unwrap()
        .build(&root, head, touched)
        .unwrap()
}

fn id_at(tree: &Tree<'_>, p: &str) -> Option<Oid> {
    tree.get_path(Path::new(p)).ok().map(|e| e.id())
}

#[test]
fn staging_records_modes_links_and_removals_and_skips_the_uncovered() {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::symlink;
    let dir = tempfile::tempdir().unwrap();
    let repo = Repository::init(dir.path()).unwrap();
    let w = dir.path();
    fs::create_dir_all(w.join("contents/d")).unwrap();
    fs::create_dir_all(w.join("contents/empty")).unwrap();
    fs::write(w.join("contents/plain"), b"p").unwrap();
    fs::write(w.join("contents/d/tool"), b"#!").unwrap();
    fs::set_permissions(w.join("contents/d/tool"), fs::Permissions::from_mode(0o755)).unwrap();
    symlink("target-bytes", w.join("contents/link")).unwrap();
    let fifo = std::ffi::CString::new(w.join("contents/fifo").as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    fs::write(w.join("outside"), b"not tracked").unwrap();
    let all = Touched::everything_under("contents");
    let (id, _) = build(&repo, w, None, &all, &|_| Adopt::Yes);
    let tree = repo.find_tree(id).unwrap();
    let mode = |p: &str| tree.get_path(Path::new(p)).map(|e| e.filemode()).ok();
    assert_eq!(mode("contents/plain"), Some(0o100644));
    assert_eq!(mode("contents/d/tool"), Some(0o100755));
    assert_eq!(mode("contents/link"), Some(0o120000));
    assert_eq!(mode("contents/fifo"), None, "FIFOs are not versioned");
    assert_eq!(mode("contents/empty"), None, "git keeps no empty tree");
    assert_eq!(mode("outside"), None, "only the tracked directory");
    let link = id_at(&tree, "contents/link").unwrap();
    assert_eq!(repo.find_blob(link).unwrap().content(), b"target-bytes");
    // A change no record covers is left as HEAD has it; a removal that one
    // covers is recorded.
    fs::write(w.join("contents/plain"), b"changed, not journaled").unwrap();
    fs::remove_file(w.join("contents/d/tool")).unwrap();
    let touched = Touched::from_paths("contents", ["contents/d/tool"]);
    let covered = |p: &str| {
        if p.starts_with("contents/d") {
            Adopt::Yes
        } else {
            Adopt::No
        }
    };
    let (id2, _) = build(&repo, w, Some(&tree), &touched, &covered);
    let tree2 = repo.find_tree(id2).unwrap();
    assert_eq!(
        id_at(&tree2, "contents/plain"),
        id_at(&tree, "contents/plain")
    );
    assert!(
        tree2.get_path(Path::new("contents/d")).is_err(),
        "d/ is empty now"
    );
    // A moved file that is not HEAD's blob any more keeps HEAD's entry.
    fs::write(w.join("contents/plain"), b"swapped").unwrap();
    let touched = Touched::from_paths("contents", ["contents/plain"]);
    let want = id_at(&tree, "contents/plain");
    let (id3, _) = build(&repo, w, Some(&tree2), &touched, &|_| Adopt::IfBlob(want));
    assert_eq!(id3, id2);
}

/// A vault of `dirs` × `per` files two levels down, committed whole.
fn wide(w: &Path, dirs: usize, per: usize) {
    for d in 0..dirs {
        let p = w.join(format!("contents/d{d}/sub"));
        fs::create_dir_all(&p).unwrap();
        for f in 0..per {
            fs::write(p.join(format!("f{f}")), format!("{d}/{f}")).unwrap();
        }
    }
}

#[test]
fn a_commit_of_k_changes_writes_only_the_trees_on_their_paths() {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repository::init(dir.path()).unwrap();
    let w = dir.path();
    wide(w, 20, 50);
    let all = Touched::everything_under("contents");
    let (first, s) = build(&repo, w, None, &all, &|_| Adopt::Yes);
    assert_eq!(s.files, 1000);
    assert_eq!(s.trees, 1 + 1 + 20 * 2, "root, contents, 20 × (dN, sub)");
    let head = repo.find_tree(first).unwrap();
    // One change: the trees on its path (sub, d3, contents, root), one file.
    fs::write(w.join("contents/d3/sub/f7"), b"new").unwrap();
    let one = Touched::from_paths("contents", ["contents/d3/sub/f7"]);
    let (second, s) = build(&repo, w, Some(&head), &one, &|_| Adopt::Yes);
    assert_eq!((s.files, s.trees), (1, 4), "{s:?}");
    // Files: the file and the four directories on its way, fsync'd.
    assert_eq!(s.synced, 1 + 4, "{s:?}");
    let new = repo.find_tree(second).unwrap();
    for d in (0..20).filter(|&d| d != 3) {
        let p = format!("contents/d{d}");
        assert_eq!(id_at(&new, &p), id_at(&head, &p), "{p} kept HEAD's tree");
    }
    assert_ne!(id_at(&new, "contents/d3"), id_at(&head, "contents/d3"));
    let f = id_at(&new, "contents/d3/sub/f7").unwrap();
    assert_eq!(repo.find_blob(f).unwrap().content(), b"new");
    // k = 3 changes in two directories, one of them a removal.
    fs::write(w.join("contents/d5/sub/f1"), b"x").unwrap();
    fs::write(w.join("contents/d5/sub/f2"), b"y").unwrap();
    fs::remove_file(w.join("contents/d9/sub/f0")).unwrap();
    let k = Touched::from_paths(
        "contents",
        [
            "contents/d5/sub/f1",
            "contents/d5/sub/f2",
            "contents/d9/sub/f0",
        ],
    );
    let (third, s) = build(&repo, w, Some(&new), &k, &|_| Adopt::Yes);
    assert_eq!((s.files, s.trees), (2, 6), "{s:?}");
    let t = repo.find_tree(third).unwrap();
    assert!(t.get_path(Path::new("contents/d9/sub/f0")).is_err());
    assert_eq!(
        id_at(&t, "contents/d9/sub/f1"),
        id_at(&new, "contents/d9/sub/f1")
    );
    // The same tree as a whole re-read would give: nothing else changed.
    let (whole, _) = build(&repo, w, None, &all, &|_| Adopt::Yes);
    assert_eq!(third, whole);
    // Nothing touched: HEAD's own tree, nothing written.
    let (same, s) = build(&repo, w, Some(&t), &Touched::default(), &|_| Adopt::Yes);
    assert_eq!((same, s.trees, s.files), (third, 0, 0));
}

#[test]
fn a_tree_far_deeper_than_path_max_is_committed() {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repository::init(dir.path()).unwrap();
    let w = dir.path();
    fs::create_dir(w.join("contents")).unwrap();
    let name = "n".repeat(60);
    let mut d = DirFd::open(&w.join("contents")).unwrap();
    let mut rel = "contents".to_string();
    for _ in 0..100 {
        d.mkdir(&name, 0o700).unwrap();
        d = d.child(&name).unwrap();
        rel = format!("{rel}/{name}");
    }
    assert!(rel.len() > 6000);
    fs::write(d.at("leaf"), b"deep").unwrap();
    let all = Touched::everything_under("contents");
    let (id, _) = build(&repo, w, None, &all, &|_| Adopt::Yes);
    let tree = repo.find_tree(id).unwrap();
    let leaf = id_at(&tree, &format!("{rel}/leaf")).unwrap();
    assert_eq!(repo.find_blob(leaf).unwrap().content(), b"deep");
    // A change at the bottom rebuilds the 100 trees above it, and only them.
    fs::write(d.at("leaf"), b"deeper").unwrap();
    let one = Touched::from_paths("contents", [format!("{rel}/leaf").as_str()]);
    let (id2, s) = build(&repo, w, Some(&tree), &one, &|_| Adopt::Yes);
    assert_eq!((s.files, s.trees), (1, 102), "{s:?}");
    let tree2 = repo.find_tree(id2).unwrap();
    let leaf = id_at(&tree2, &format!("{rel}/leaf")).unwrap();
    assert_eq!(repo.find_blob(leaf).unwrap().content(), b"deeper");
}

#[test]
fn touched_paths_keep_only_the_topmost_and_add_sidecars() {
    let t = Touched::from_paths(
        "contents",
        [
            "contents/a/b",
            "contents/a",
            "contents/c/d",
            "elsewhere",
            "journal",
        ],
    );
    let mut want = Touched::default();
    want.add("contents/a");
    want.add("contents/a.name");
    want.add("contents/c/d");
    want.add("contents/c/d.name");
    assert_eq!(t, want);
    assert!(Touched::default().is_empty() && !t.is_empty());
}

#[test]
fn the_deepest_tree_the_mount_accepts_builds_on_a_small_stack() {
    // MAX_BACKING_PATH of the shortest encoded names (43 bytes and a
    // slash), on a thread with the default 2 MiB stack of a spawned thread.
    let levels = crate::store::journal::MAX_BACKING_PATH / 44;
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || {
            let dir = tempfile::tempdir().unwrap();
            let repo = Repository::init(dir.path()).unwrap();
            let w = dir.path();
            fs::create_dir(w.join("contents")).unwrap();
            let name = "n".repeat(43);
            let mut d = DirFd::open(&w.join("contents")).unwrap();
            for _ in 0..levels {
                d.mkdir(&name, 0o700).unwrap();
                d = d.child(&name).unwrap();
            }
            fs::write(d.at("leaf"), b"deep").unwrap();
            let all = Touched::everything_under("contents");
            let (_, s) = build(&repo, w, None, &all, &|_| Adopt::Yes);
            assert_eq!(s.files, 1);
        })
        .unwrap()
        .join()
        .unwrap();
}
