//! Directory listings of a mounted vault: every entry a listing returns carries
//! the inode number and attributes that stat(2) shows (the mount answers
//! READDIRPLUS), across listings that take several replies, and the entries
//! stay usable after the kernel forgets them.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{DirEntryExt, MetadataExt, PermissionsExt};
use std::path::Path;

use common::mount::Mounted;

const FILES: usize = 300;

fn content(i: usize) -> Vec<u8> {
    format!("file {i}\n").repeat(i % 7 * 50 + 1).into_bytes()
}

/// What a listing of `dir` says about each entry: (d_ino, is_dir, is_symlink).
fn listing(dir: &Path) -> BTreeMap<String, (u64, bool, bool)> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let t = e.file_type().unwrap();
            let name = e.file_name().into_string().unwrap();
            (name, (e.ino(), t.is_dir(), t.is_symlink()))
        })
        .collect()
}

fn fill(d: &Path, long: &str) {
    fs::create_dir(d).unwrap();
    for i in 0..FILES {
        fs::write(d.join(format!("f{i:03}")), content(i)).unwrap();
    }
    fs::set_permissions(d.join("f001"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::set_permissions(d.join("f002"), fs::Permissions::from_mode(0o750)).unwrap();
    fs::create_dir(d.join("sub")).unwrap();
    fs::write(d.join("sub/inner"), b"inner").unwrap();
    std::os::unix::fs::symlink("f003", d.join("link")).unwrap();
    fs::hard_link(d.join("f004"), d.join("hard")).unwrap();
    fs::write(d.join(long), b"a long name").unwrap();
}

#[test]
fn every_listed_entry_has_the_inode_and_attributes_stat_shows() {
    let mut m = Mounted::new();
    let d = m.path("d");
    let long = "n".repeat(240); // its encrypted name needs a sidecar
    fill(&d, &long);
    // A fresh daemon and kernel inodes: nothing is known before the listing.
    m.umount();
    m.mount(&[]);

    let listed = listing(&d);
    assert_eq!(listed.len(), FILES + 4, "{:?}", listed.keys());
    let mut inos = std::collections::BTreeSet::new();
    for (name, (d_ino, is_dir, is_symlink)) in &listed {
        let st = fs::symlink_metadata(d.join(name)).unwrap();
        assert_eq!(*d_ino, st.ino(), "{name}: d_ino against st_ino");
        assert_eq!(*is_dir, st.is_dir(), "{name}");
        assert_eq!(*is_symlink, st.file_type().is_symlink(), "{name}");
        if name != "hard" && name != "f004" {
            assert!(inos.insert(st.ino()), "{name}: inode number shared");
        }
    }
    for i in 0..FILES {
        let st = fs::symlink_metadata(d.join(format!("f{i:03}"))).unwrap();
        assert_eq!(st.len(), content(i).len() as u64, "size of f{i:03}");
    }
    let mode = |n: &str| fs::symlink_metadata(d.join(n)).unwrap().mode() & 0o7777;
    assert_eq!((mode("f001"), mode("f002")), (0o600, 0o750));
    assert_eq!(fs::symlink_metadata(d.join("link")).unwrap().len(), 4);
    let (h, f) = (
        fs::metadata(d.join("hard")).unwrap(),
        fs::metadata(d.join("f004")).unwrap(),
    );
    assert_eq!((h.ino(), h.nlink(), f.nlink()), (f.ino(), 2, 2));
    assert_eq!(fs::read(d.join(&long)).unwrap(), b"a long name");
    assert_eq!(fs::read_link(d.join("link")).unwrap(), Path::new("f003"));
}

#[test]
fn listed_entries_stay_usable_when_the_kernel_forgets_them() {
    let mut m = Mounted::new();
    let d = m.path("d");
    fill(&d, &"m".repeat(200));
    m.umount();
    m.mount(&[]);

    let held = fs::File::open(d.join("f010")).unwrap();
    for round in 0..3 {
        let listed = listing(&d);
        assert_eq!(listed.len(), FILES + 4, "round {round}");
        // Drop the kernel's dentries and inodes: it sends FORGET for every
        // entry it was given, counted from the LOOKUPs and the listings.
        let _ = fs::write("/proc/sys/vm/drop_caches", "2");
        for i in 0..FILES {
            let p = d.join(format!("f{i:03}"));
            assert_eq!(fs::read(&p).unwrap(), content(i), "round {round}: {p:?}");
        }
        assert_eq!(held.metadata().unwrap().len(), content(10).len() as u64);
        assert_eq!(fs::read(d.join("sub/inner")).unwrap(), b"inner");
    }
    drop(held);
    // rm -r lists, then removes by name.
    fs::remove_dir_all(&d).unwrap();
    assert!(fs::read_dir(m.v()).unwrap().next().is_none());
    m.umount();
    assert!(m.node.ls("v:").is_empty());
}
