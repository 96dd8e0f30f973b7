//! Inspecting and altering files on disk: tree snapshots and their comparison,
//! blobs of a vault, byte flips, modes, tree copies, and seeded test data.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// One filesystem entry of a [`snapshot`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Snap {
    Dir(u32),
    File(u32, Vec<u8>),
    Link(PathBuf),
}

/// Every entry below `dir` (relative path -> kind, mode and content).
pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Snap> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let e = e.unwrap();
            let p = e.path();
            let rel = p.strip_prefix(dir).unwrap().to_path_buf();
            let m = fs::symlink_metadata(&p).unwrap();
            let mode = m.permissions().mode() & 0o7777;
            if m.file_type().is_symlink() {
                out.insert(rel, Snap::Link(fs::read_link(&p).unwrap()));
            } else if m.is_dir() {
                out.insert(rel, Snap::Dir(mode));
                stack.push(p);
            } else {
                out.insert(rel, Snap::File(mode, fs::read(&p).unwrap()));
            }
        }
    }
    out
}

/// Assert two snapshots are equal, naming the first differences.
pub fn assert_same_tree(
    before: &BTreeMap<PathBuf, Snap>,
    after: &BTreeMap<PathBuf, Snap>,
    what: &str,
) {
    if before == after {
        return;
    }
    let mut diffs = Vec::new();
    for (p, s) in before {
        match after.get(p) {
            None => diffs.push(format!("removed: {}", p.display())),
            Some(t) if t != s => diffs.push(format!("changed: {}", p.display())),
            _ => {}
        }
    }
    for p in after.keys() {
        if !before.contains_key(p) {
            diffs.push(format!("added: {}", p.display()));
        }
    }
    panic!("{what}: the tree changed:\n  {}", diffs.join("\n  "));
}

/// Every regular file below `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    snapshot(dir)
        .into_iter()
        .filter(|(_, s)| matches!(s, Snap::File(..)))
        .map(|(p, _)| dir.join(p))
        .collect()
}

/// The largest content blob of a vault: the biggest regular file under
/// `contents/` that is neither a `.diriv` nor a long-name sidecar `*.name`.
pub fn largest_blob(vault_dir: &Path) -> PathBuf {
    files_under(&vault_dir.join("contents"))
        .into_iter()
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n != ".diriv" && !n.ends_with(".name")
        })
        .max_by_key(|p| fs::metadata(p).unwrap().len())
        .expect("the vault has a blob")
}

/// XOR one byte of a file with 0x01.
pub fn flip_byte(path: &Path, offset: usize) {
    let mut b = fs::read(path).unwrap();
    assert!(offset < b.len(), "{} has {} bytes", path.display(), b.len());
    b[offset] ^= 0x01;
    fs::write(path, b).unwrap();
}

pub fn mode_of(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

pub fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// Deterministic pseudo-random bytes (xorshift64*), good enough for test data.
pub fn pseudo_random(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(n);
    out
}

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Copy a directory tree (files, directories and their modes).
pub fn copy_tree(src: &Path, dst: &Path) {
    fs::create_dir_all(dst).unwrap();
    set_mode(dst, mode_of(src));
    for e in fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let (s, d) = (e.path(), dst.join(e.file_name()));
        let m = fs::symlink_metadata(&s).unwrap();
        if m.is_dir() {
            copy_tree(&s, &d);
        } else if m.file_type().is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(&s).unwrap(), &d).unwrap();
        } else {
            fs::copy(&s, &d).unwrap();
        }
    }
}
