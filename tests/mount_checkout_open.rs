//! `version checkout` while the vault is in use through the mount: hard links
//! stay one file across a checkout round trip (and `fsck` stays clean), and a
//! descriptor opened before a checkout never answers EIO: it reads what it
//! opened or fails with ESTALE, and a write through it fails with ESTALE
//! (it never lands in the checked-out version, so no commit is discarded).

mod common;

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use common::mount::Mounted;

fn ino(p: &Path) -> u64 {
    fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .ino()
}

fn append(p: &Path, data: &[u8]) {
    let mut f = OpenOptions::new()
        .append(true)
        .open(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    f.write_all(data).unwrap();
}

fn ids(m: &Mounted) -> Vec<String> {
    m.node
        .log("v", false)
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect()
}

fn fsck_clean(m: &Mounted) {
    let o = m.node.run(["fsck"]);
    assert_eq!(o.code, 0, "fsck: {}{}", o.out(), o.stderr);
}

/// Two names of one file are one file again after the round trip.
fn assert_linked(m: &Mounted, a: &str, b: &str, want: &[u8]) {
    let (pa, pb) = (m.path(a), m.path(b));
    assert_eq!(fs::read(&pa).unwrap(), want, "{a}");
    assert_eq!(fs::read(&pb).unwrap(), want, "{b}");
    assert_eq!(
        ino(&pa),
        ino(&pb),
        "{a} and {b} are two files ({:?}, {:?})",
        fs::metadata(&pa).map(|m| (m.nlink(), m.len())),
        fs::metadata(&pb).map(|m| (m.nlink(), m.len())),
    );
    assert_eq!(fs::metadata(&pa).unwrap().nlink(), 2, "{a}");
    append(&pa, b" +more");
    let mut both = want.to_vec();
    both.extend_from_slice(b" +more");
    assert_eq!(
        fs::read(&pb).unwrap(),
        both,
        "a write to {a} is not seen in {b}"
    );
}

#[test]
fn hard_links_survive_a_checkout_round_trip_and_fsck_stays_clean() {
    let m = Mounted::new();
    fs::write(m.path("a"), b"first a").unwrap();
    fs::create_dir(m.path("d1")).unwrap();
    fs::create_dir(m.path("d2")).unwrap();
    fs::write(m.path("d1/x"), b"x never changes").unwrap();
    fs::write(m.path("same1"), b"identical").unwrap();
    m.wait_committed();
    // The later version: `a` changes and gets a second name; `d1/x` gets a
    // second name in another directory without changing. Two distinct files
    // with the same content stay two files.
    fs::write(m.path("a"), b"second a").unwrap();
    fs::hard_link(m.path("a"), m.path("b")).unwrap();
    fs::hard_link(m.path("d1/x"), m.path("d2/y")).unwrap();
    fs::write(m.path("same2"), b"identical").unwrap();
    m.wait_committed();
    let before = ids(&m);
    assert_eq!(ino(&m.path("a")), ino(&m.path("b")));

    m.node.ok(["version", "checkout", "v", "HEAD~1"]);
    assert_eq!(fs::read(m.path("a")).unwrap(), b"first a");
    assert!(!m.path("b").exists());
    assert!(!m.path("d2/y").exists());
    m.node.ok(["version", "checkout", "v", "latest"]);
    assert_eq!(ids(&m), before);

    assert_ne!(ino(&m.path("same1")), ino(&m.path("same2")));
    fsck_clean(&m);
    assert_linked(&m, "a", "b", b"second a");
    assert_linked(&m, "d2/y", "d1/x", b"x never changes");
    m.wait_committed();
    fsck_clean(&m);

    // Unmounted, from the CLI: the same round trip.
    let mut m = m;
    m.umount();
    m.node.ok(["version", "checkout", "v", "HEAD~1"]);
    m.node.ok(["version", "checkout", "v", "latest"]);
    fsck_clean(&m);
    m.mount(&["--commit-delay", "200ms"]);
    assert_linked(&m, "b", "a", b"second a +more");
    assert_linked(&m, "d1/x", "d2/y", b"x never changes +more");
    m.wait_committed();
    fsck_clean(&m);
}

#[test]
fn fsck_restore_links_again_a_hard_link_that_became_a_copy() {
    let mut m = Mounted::new();
    fs::create_dir(m.path("d")).unwrap();
    fs::write(m.path("a"), b"linked content").unwrap();
    fs::hard_link(m.path("a"), m.path("d/b")).unwrap();
    m.wait_committed();
    m.umount();
    // The two backing names of one file: one of them becomes a copy.
    let contents = m.node.vault_dir("v").join("contents");
    let files = common::files_under(&contents);
    let mut pair = None;
    for (i, x) in files.iter().enumerate() {
        for y in &files[i + 1..] {
            if ino(x) == ino(y) {
                pair = Some((x.clone(), y.clone()));
            }
        }
    }
    let (x, y) = pair.expect("no hard-linked backing files");
    let tmp = y.with_extension("copy");
    fs::copy(&x, &tmp).unwrap();
    fs::rename(&tmp, &y).unwrap();
    let o = m.node.run(["fsck"]);
    assert_ne!(o.code, 0, "fsck: {}", o.out());
    assert!(o.out().contains("duplicate-file-id"), "{}", o.out());

    let o = m.node.run(["fsck", "--restore", "v"]);
    assert_eq!(o.code, 0, "fsck --restore: {}{}", o.out(), o.stderr);
    assert!(o.out().contains("relinked"), "{}", o.out());
    assert_eq!(ino(&x), ino(&y));
    fsck_clean(&m);
    m.mount(&["--commit-delay", "200ms"]);
    assert_linked(&m, "a", "d/b", b"linked content");
}

#[test]
fn version_restore_brings_hard_links_back_as_one_file() {
    let m = Mounted::new();
    fs::create_dir(m.path("d")).unwrap();
    fs::write(m.path("a"), b"linked at first").unwrap();
    fs::hard_link(m.path("a"), m.path("d/b")).unwrap();
    m.wait_committed();
    fs::remove_file(m.path("d/b")).unwrap();
    fs::write(m.path("a"), b"alone later").unwrap();
    m.wait_committed();
    let alone = ids(&m)[0].clone();
    m.node.ok(["version", "restore", "v", "HEAD~1", "a", "d/b"]);
    assert_linked(&m, "a", "d/b", b"linked at first");
    m.wait_committed();
    fsck_clean(&m);
    // One name of the linked file restored alone: a file of its own (with
    // an id of its own), the other name keeps the linked file.
    m.node.ok(["version", "restore", "v", &alone, "a"]);
    assert_eq!(fs::read(m.path("a")).unwrap(), b"alone later");
    assert_eq!(fs::read(m.path("d/b")).unwrap(), b"linked at first +more");
    assert_ne!(ino(&m.path("a")), ino(&m.path("d/b")));
    m.wait_committed();
    fsck_clean(&m);
}

/// Read all of `f` from its start: the content, or the errno.
fn read_all(f: &mut File) -> Result<Vec<u8>, i32> {
    let mut buf = Vec::new();
    f.seek(SeekFrom::Start(0))
        .map_err(|e| e.raw_os_error().unwrap_or(0))?;
    f.read_to_end(&mut buf)
        .map_err(|e| e.raw_os_error().unwrap_or(0))?;
    Ok(buf)
}

/// The old content or ESTALE, never anything else.
fn assert_old_or_stale(got: Result<Vec<u8>, i32>, old: &[u8], what: &str) {
    match got {
        Ok(b) => assert_eq!(b, old, "{what}: read another version"),
        Err(e) => assert_eq!(e, libc::ESTALE, "{what}: errno {e}, not ESTALE"),
    }
}

#[test]
fn a_descriptor_opened_before_a_checkout_keeps_its_version_or_is_stale() {
    let m = Mounted::new();
    fs::write(m.path("f"), b"old content").unwrap();
    fs::write(m.path("g"), b"g stays the same").unwrap();
    fs::write(m.path("big"), common::pseudo_random(3 << 20, 1)).unwrap();
    m.wait_committed();
    fs::write(m.path("f"), b"new content, longer").unwrap();
    let big = common::pseudo_random(3 << 20, 2);
    fs::write(m.path("big"), &big).unwrap();
    m.wait_committed();
    let before = ids(&m);

    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(m.path("f"))
        .unwrap();
    let mut g = OpenOptions::new()
        .read(true)
        .write(true)
        .open(m.path("g"))
        .unwrap();
    // Opened, not read yet: nothing of it is cached anywhere.
    let mut big_fd = File::open(m.path("big")).unwrap();
    assert_eq!(read_all(&mut f).unwrap(), b"new content, longer");
    assert_eq!(read_all(&mut g).unwrap(), b"g stays the same");

    m.node.ok(["version", "checkout", "v", "HEAD~1"]);
    // The checked-out version shows by path.
    assert_eq!(fs::read(m.path("f")).unwrap(), b"old content");
    // The descriptors: what they opened, or ESTALE.
    assert_old_or_stale(read_all(&mut big_fd), &big, "big");
    for _ in 0..2 {
        assert_old_or_stale(read_all(&mut f), b"new content, longer", "f");
        assert_old_or_stale(read_all(&mut g), b"g stays the same", "g");
    }
    // Writes fail with ESTALE, and nothing lands in the checked-out version.
    for (h, name) in [(&mut f, "f"), (&mut g, "g")] {
        h.seek(SeekFrom::Start(0)).unwrap();
        let w = h.write_all(b"WRITTEN").and_then(|()| h.sync_all());
        let e = w.expect_err(&format!("a write through {name} after the checkout worked"));
        assert_eq!(e.raw_os_error(), Some(libc::ESTALE), "{name}: {e}");
    }
    // Opened again by name: the checked-out version's file, as usual.
    assert_eq!(fs::read(m.path("g")).unwrap(), b"g stays the same");
    let mut again = File::open(m.path("f")).unwrap();
    assert_eq!(read_all(&mut again).unwrap(), b"old content");
    drop(f);
    drop(g);
    drop(big_fd);
    m.wait_committed();
    assert_eq!(fs::read(m.path("f")).unwrap(), b"old content");
    assert_eq!(fs::read(m.path("g")).unwrap(), b"g stays the same");
    // No commit was made at the old version: none is discarded.
    let all = m.node.log("v", true);
    assert!(
        all.iter().all(|e| e["discarded"] == false),
        "a commit was discarded: {all:?}"
    );
    m.node.ok(["version", "checkout", "v", "latest"]);
    assert_eq!(ids(&m), before);
    assert_eq!(fs::read(m.path("f")).unwrap(), b"new content, longer");
    assert_eq!(fs::read(m.path("g")).unwrap(), b"g stays the same");

    // A descriptor opened after the checkout works as usual.
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(m.path("f"))
        .unwrap();
    f.write_all(b"NEW").unwrap();
    drop(f);
    assert_eq!(fs::read(m.path("f")).unwrap(), b"NEW content, longer");
    m.wait_committed();
    assert_eq!(ids(&m).len(), before.len() + 1);
    fsck_clean(&m);
}
