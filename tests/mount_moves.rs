//! A rename, chmod or hard link through the mount does not read the file, so it
//! must not launder a blob that was swapped at rest: the change journal records
//! where the entry came from (`store/changes.rs`), the moved file is still
//! checked against HEAD's blob of its old path, and the commit leaves it out.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::mount::Mounted;

const ARGS: &[&str] = &["--commit-delay", "200ms"];

fn content(tag: u8) -> Vec<u8> {
    vec![tag; 3000]
}

/// `a` and `b` in directory `dir` of the vault (`""`: its root), the two
/// files [`swap_at_rest`] exchanges.
fn write_pair(m: &Mounted, dir: &str) {
    for f in ["a", "b"] {
        let p = m.path(dir).join(f);
        fs::write(p, content(f.as_bytes()[0])).unwrap();
    }
}

/// The blobs of the 3000-byte files under `contents/` (header, one page).
fn blobs(vault_dir: &Path) -> Vec<PathBuf> {
    let mut stack = vec![vault_dir.join("contents")];
    let mut found = Vec::new();
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let m = fs::symlink_metadata(e.path()).unwrap();
            if m.is_dir() {
                stack.push(e.path());
            } else if m.is_file() && m.len() > 2000 {
                found.push(e.path());
            }
        }
    }
    found.sort();
    found
}

/// Unmount, exchange the two committed blobs on disk, mount again.
fn swap_at_rest(m: &mut Mounted) {
    m.wait_committed();
    m.umount();
    let b = blobs(&m.node.vault_dir("v"));
    assert_eq!(b.len(), 2, "{b:?}");
    let (x, y) = (fs::read(&b[0]).unwrap(), fs::read(&b[1]).unwrap());
    fs::write(&b[0], y).unwrap();
    fs::write(&b[1], x).unwrap();
    m.mount(ARGS);
}

fn eio<T>(r: std::io::Result<T>) -> bool {
    r.err().and_then(|e| e.raw_os_error()) == Some(libc::EIO)
}

/// The plaintext paths `pkfs fsck` reports (it must find something).
fn fsck_paths(m: &Mounted) -> Vec<String> {
    let o = m.node.run(["--json", "fsck", "v"]);
    assert_eq!(o.code, 12, "fsck reports tampering: {}", o.out());
    let j = o.json();
    let found = j["findings"].as_array().cloned().unwrap_or_default();
    found
        .iter()
        .map(|f| {
            f["path"]
                .as_str()
                .unwrap_or("")
                .trim_start_matches('/')
                .to_string()
        })
        .collect()
}

/// After the commit, the file still reads as EIO and fsck names it.
fn still_refused_after_commit(m: &mut Mounted, shown: &str) -> Vec<String> {
    m.wait_committed();
    assert!(
        eio(fs::read(m.path(shown))),
        "{shown} adopted by the commit"
    );
    m.umount();
    let paths = fsck_paths(m);
    assert!(paths.iter().any(|p| p == shown), "{paths:?}");
    paths
}

#[test]
fn a_swapped_blob_is_not_laundered_by_renaming_its_directory() {
    let mut m = Mounted::new();
    fs::create_dir(m.path("d")).unwrap();
    write_pair(&m, "d");
    swap_at_rest(&mut m);
    fs::rename(m.path("d"), m.path("e")).unwrap();
    assert!(
        eio(fs::read(m.path("e/a"))),
        "read the other file's content"
    );
    assert!(eio(fs::read(m.path("e/b"))));
    still_refused_after_commit(&mut m, "e/a");
}

#[test]
fn a_swapped_blob_is_not_laundered_by_a_rename_chmod_or_link_but_good_ones_pass() {
    let mut m = Mounted::new();
    write_pair(&m, "");
    fs::write(m.path("ok"), b"untouched at rest").unwrap();
    swap_at_rest(&mut m);
    fs::rename(m.path("a"), m.path("a2")).unwrap();
    fs::set_permissions(m.path("b"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::hard_link(m.path("a2"), m.path("a3")).unwrap();
    for f in ["a2", "a3", "b"] {
        assert!(
            eio(fs::read(m.path(f))),
            "{f}: read the other file's content"
        );
    }
    // An honest rename and chmod of a file nobody touched at rest still work,
    // and a write after the rename is the user's own.
    fs::rename(m.path("ok"), m.path("ok2")).unwrap();
    fs::set_permissions(m.path("ok2"), fs::Permissions::from_mode(0o700)).unwrap();
    assert_eq!(fs::read(m.path("ok2")).unwrap(), b"untouched at rest");
    fs::rename(m.path("ok2"), m.path("ok3")).unwrap();
    fs::write(m.path("ok3"), b"rewritten after the move").unwrap();
    m.wait_committed();
    assert_eq!(
        fs::read(m.path("ok3")).unwrap(),
        b"rewritten after the move"
    );
    let paths = still_refused_after_commit(&mut m, "a2");
    for f in ["a3", "b"] {
        assert!(paths.iter().any(|p| p == f), "fsck names {f}: {paths:?}");
    }
    assert!(!paths.iter().any(|p| p.starts_with("ok")), "{paths:?}");
}

#[test]
fn a_swapped_blob_is_not_laundered_by_a_cli_move() {
    let mut m = Mounted::new();
    write_pair(&m, "");
    swap_at_rest(&mut m);
    m.umount();
    m.node.ok(["secret", "mv", "v:a", "v:c"]);
    let o = m.node.run(["secret", "cat", "v:c"]);
    assert_eq!(o.code, 9, "read the other file's content: {}", o.out());
    let paths = fsck_paths(&m);
    assert!(paths.iter().any(|p| p == "c"), "{paths:?}");
}

/// `truncate(2)` by path: no open, so no open-time check.
fn truncate(path: &Path, len: i64) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    if unsafe { libc::truncate(c.as_ptr(), len) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[test]
fn a_truncation_by_path_checks_what_it_keeps() {
    let mut m = Mounted::new();
    write_pair(&m, "");
    fs::write(m.path("ok"), b"0123456789").unwrap();
    swap_at_rest(&mut m);
    assert!(
        eio(truncate(&m.path("a"), 100)),
        "kept another file's bytes"
    );
    truncate(&m.path("ok"), 4).unwrap();
    assert_eq!(fs::read(m.path("ok")).unwrap(), b"0123");
    // Keeping nothing needs no check.
    truncate(&m.path("b"), 0).unwrap();
    assert_eq!(fs::read(m.path("b")).unwrap(), b"");
    m.wait_committed();
    assert!(eio(fs::read(m.path("a"))));
}

fn exchange(a: &Path, b: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
    let (ca, cb) = (c(a), c(b));
    // SAFETY: valid NUL-terminated paths.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            ca.as_ptr(),
            libc::AT_FDCWD,
            cb.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
}

#[test]
fn committed_entries_moved_honestly_are_committed_at_their_new_paths() {
    let mut m = Mounted::new();
    let long_a = "a".repeat(240);
    let long_b = "b".repeat(250);
    for d in ["x", "y", "x/deep"] {
        fs::create_dir(m.path(d)).unwrap();
    }
    fs::write(m.path(&format!("x/{long_a}")), b"was in x").unwrap();
    fs::write(m.path(&format!("y/{long_b}")), b"was in y").unwrap();
    fs::write(m.path("x/deep/f"), b"deep").unwrap();
    fs::write(m.path("tool"), b"#!/bin/sh\n").unwrap();
    m.wait_committed();
    exchange(
        &m.path(&format!("x/{long_a}")),
        &m.path(&format!("y/{long_b}")),
    );
    fs::rename(m.path("x"), m.path("z")).unwrap();
    fs::hard_link(m.path("z/deep/f"), m.path("y/f-link")).unwrap();
    fs::set_permissions(m.path("tool"), fs::Permissions::from_mode(0o755)).unwrap();
    m.wait_committed();
    m.umount();
    assert_eq!(m.node.cat(&format!("v:z/{long_a}")), b"was in y");
    assert_eq!(m.node.cat(&format!("v:y/{long_b}")), b"was in x");
    assert_eq!(m.node.cat("v:z/deep/f"), b"deep");
    assert_eq!(m.node.cat("v:y/f-link"), b"deep");
    let o = m.node.run(["fsck", "v"]);
    assert_eq!(o.code, 0, "{}", o.out());
    // The chmod was committed: HEAD's tree has one executable blob.
    let tree = common::git(&m.node.vault_dir("v"), &["ls-tree", "-r", "HEAD"]);
    let listing = String::from_utf8_lossy(&tree.stdout).into_owned();
    assert_eq!(listing.matches("100755 blob").count(), 1, "{listing}");
}
