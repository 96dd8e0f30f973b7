//! Checkout writes only what two versions differ by, and puts back modes,
//! symlinks, removals and directories that became files (and back).

use super::*;

fn key() -> SymKey {
    SymKey::from_bytes([4; 32])
}

fn put(v: &Path, rel: &str, data: &[u8]) {
    let p = v.join("contents").join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, data).unwrap();
}

fn get(v: &Path, rel: &str) -> Option<Vec<u8>> {
    fs::read(v.join("contents").join(rel)).ok()
}

/// (files written, files in all) as the last progress report said.
fn checkout(h: &History, spec: &str) -> (usize, usize) {
    let mut last = (0, 0);
    h.checkout_with_progress(spec, &mut |d, t| last = (d, t))
        .unwrap();
    last
}

#[test]
fn a_checkout_writes_only_what_the_versions_differ_by() {
    let d = tempfile::tempdir().unwrap();
    let v = d.path();
    for i in 0..20 {
        for j in 0..20 {
            put(v, &format!("d{i}/f{j}"), format!("{i}/{j}").as_bytes());
        }
    }
    let h = History::init(v, &key(), &[]).unwrap();
    put(v, "d3/f4", b"changed");
    h.mark("contents/d3/f4").unwrap();
    h.commit(&[]).unwrap();
    // One file differs: one written, in either direction.
    assert_eq!(checkout(&h, "HEAD~1"), (1, 1));
    assert_eq!(get(v, "d3/f4").unwrap(), b"3/4");
    assert_eq!(checkout(&h, "latest"), (1, 1));
    assert_eq!(get(v, "d3/f4").unwrap(), b"changed");
}

#[test]
fn a_checkout_puts_back_modes_links_removals_and_kinds() {
    use std::os::unix::fs::{symlink, PermissionsExt};
    let d = tempfile::tempdir().unwrap();
    let v = d.path();
    put(v, "keep", b"k");
    put(v, "tool", b"#!");
    put(v, "x/inner", b"in x");
    let h = History::init(v, &key(), &[]).unwrap();
    let c = v.join("contents");
    fs::set_permissions(c.join("tool"), fs::Permissions::from_mode(0o755)).unwrap();
    symlink("somewhere", c.join("link")).unwrap();
    fs::remove_dir_all(c.join("x")).unwrap();
    fs::write(c.join("x"), b"x is a file now").unwrap();
    fs::remove_file(c.join("keep")).unwrap();
    h.mark("contents").unwrap();
    h.commit(&[]).unwrap();
    checkout(&h, "HEAD~1");
    assert_eq!(get(v, "keep").unwrap(), b"k");
    assert_eq!(get(v, "x/inner").unwrap(), b"in x");
    assert!(fs::symlink_metadata(c.join("link")).is_err());
    let exec = fs::metadata(c.join("tool")).unwrap().permissions().mode() & 0o100;
    assert_eq!(exec, 0);
    checkout(&h, "latest");
    assert!(get(v, "keep").is_none());
    assert_eq!(get(v, "x").unwrap(), b"x is a file now");
    assert_eq!(
        fs::read_link(c.join("link")).unwrap(),
        Path::new("somewhere")
    );
    let exec = fs::metadata(c.join("tool")).unwrap().permissions().mode() & 0o100;
    assert_eq!(exec, 0o100);
    // Nothing left behind: no temporary files, and the tree is HEAD's again.
    let stray: Vec<_> = fs::read_dir(&c)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp"))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
    h.mark("contents").unwrap();
    let head = h.head().unwrap().id;
    assert_eq!(h.commit(&[]).unwrap(), head, "the work tree is HEAD's");
}
