//! Big committed files are checked page by page against their blob's tag list
//! (`V/tags/<blob id>`) instead of being hashed whole on their first open, and
//! that check is as strict: a page rolled back to an older authentic version
//! fails with EIO, a change to such a file hashes it first, and a missing or
//! forged list only means the whole check again.

mod common;

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use common::mount::Mounted;

const PAGE: u64 = 4096;
const CIPHER_PAGE: u64 = 4096 + 28;
const HEADER: u64 = 58;
/// 3 MiB: above the 1 MiB from which blobs get a tag list.
const LEN: usize = 3 << 20;

fn content(version: u8) -> Vec<u8> {
    (0..LEN).map(|i| (i / 4096) as u8 ^ version).collect()
}

/// The only regular file under `contents/` bigger than 1 MiB: the blob.
fn big_blob(vault_dir: &Path) -> PathBuf {
    let mut stack = vec![vault_dir.join("contents")];
    let mut found = Vec::new();
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            if m.is_dir() {
                stack.push(e.path());
            } else if m.len() > 1 << 20 {
                found.push(e.path());
            }
        }
    }
    assert_eq!(found.len(), 1, "{found:?}");
    found.pop().unwrap()
}

fn tag_lists(vault_dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(vault_dir.join("tags"))
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn sealed_page(i: u64) -> std::ops::Range<usize> {
    let at = (HEADER + i * CIPHER_PAGE) as usize;
    at..at + CIPHER_PAGE as usize
}

fn errno_of(r: std::io::Result<impl Sized>) -> Option<i32> {
    r.err().and_then(|e| e.raw_os_error())
}

#[test]
fn a_big_file_is_checked_page_by_page_and_a_rolled_back_page_is_eio() {
    let mut m = Mounted::new();
    let dir = m.node.vault_dir("v");
    let (v1, mut v2) = (content(1), content(1));
    fs::write(m.path("big"), &v1).unwrap();
    m.wait_committed();
    assert_eq!(
        tag_lists(&dir).len(),
        1,
        "a commit saves the blob's tag list"
    );
    let old_blob = fs::read(big_blob(&dir)).unwrap();

    // Version 2 changes page 100 only.
    v2[100 * 4096..101 * 4096].fill(0xee);
    let f = fs::OpenOptions::new()
        .write(true)
        .open(m.path("big"))
        .unwrap();
    f.write_all_at(&v2[100 * 4096..101 * 4096], 100 * PAGE)
        .unwrap();
    drop(f);
    m.wait_committed();
    assert_eq!(tag_lists(&dir).len(), 2);

    // A fresh daemon (nothing remembered) reads version 2 by its tags.
    m.umount();
    m.mount(&[]);
    assert_eq!(fs::read(m.path("big")).unwrap(), v2);

    // Roll page 100 of the blob back to its older, authentic ciphertext.
    m.umount();
    let blob_path = big_blob(&dir);
    let mut blob = fs::read(&blob_path).unwrap();
    let r = sealed_page(100);
    assert_ne!(blob[r.clone()], old_blob[r.clone()]);
    blob[r.clone()].copy_from_slice(&old_blob[r]);
    fs::write(&blob_path, &blob).unwrap();
    m.mount(&[]);

    // The file opens, and the pages before the rolled-back one read (a whole
    // check on open would have refused the open itself)...
    let mut f = fs::File::open(m.path("big")).unwrap();
    let mut head = vec![0u8; 64 * 1024];
    f.read_exact(&mut head).unwrap();
    assert_eq!(head, v2[..head.len()]);
    // ...but page 100 never shows its old plaintext.
    let mut page = vec![0u8; 4096];
    assert_eq!(
        errno_of(f.read_exact_at(&mut page, 100 * PAGE)),
        Some(libc::EIO)
    );
    assert_eq!(errno_of(fs::read(m.path("big"))), Some(libc::EIO));

    // A change to the file (opened for writing while `f` keeps the checked-by-
    // tags state) hashes it whole first: refused, and nothing is journaled, so
    // nothing is adopted by a commit.
    let mut w = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(m.path("big"))
        .unwrap();
    let r = w.seek(SeekFrom::Start(0)).and_then(|_| w.write_all(b"x"));
    let r = r.and_then(|_| w.sync_all());
    assert_eq!(errno_of(r), Some(libc::EIO));
    drop(w);
    drop(f);
    m.umount();
    let o = m.node.run(["--json", "fsck", "v"]);
    assert_eq!(o.code, 12, "fsck reports the rolled-back blob: {}", o.out());
}

#[test]
fn a_missing_or_forged_tag_list_means_a_whole_check_which_saves_a_new_one() {
    let mut m = Mounted::new();
    let dir = m.node.vault_dir("v");
    let v = content(3);
    fs::write(m.path("big"), &v).unwrap();
    m.wait_committed();
    let lists = tag_lists(&dir);
    assert_eq!(lists.len(), 1);
    let list_path = dir.join("tags").join(&lists[0]);
    m.umount();

    // Forged: one tag byte changed (its HMAC no longer verifies). The file is
    // then hashed whole, and reads back.
    let mut bytes = fs::read(&list_path).unwrap();
    bytes[100] ^= 1;
    fs::write(&list_path, &bytes).unwrap();
    m.mount(&[]);
    assert_eq!(fs::read(m.path("big")).unwrap(), v);
    m.umount();
    // The forged list was dropped, and the whole check saved a good one.
    assert_eq!(tag_lists(&dir), lists);
    assert_ne!(
        fs::read(&list_path).unwrap(),
        bytes,
        "still the forged list"
    );

    // Missing: the whole check that passes saves the list again.
    fs::remove_file(&list_path).unwrap();
    m.mount(&[]);
    assert_eq!(fs::read(m.path("big")).unwrap(), v);
    assert_eq!(tag_lists(&dir), lists, "the list is saved again");
    m.umount();
    m.mount(&[]);
    assert_eq!(fs::read(m.path("big")).unwrap(), v);

    // A blob with a page changed is refused either way: with a list, at the
    // page; hashed whole, at the open.
    m.umount();
    let blob_path = big_blob(&dir);
    let mut blob = fs::read(&blob_path).unwrap();
    let r = sealed_page(3);
    blob[r.start + 40] ^= 1;
    fs::write(&blob_path, &blob).unwrap();
    for remove_list in [false, true] {
        if remove_list {
            fs::remove_file(&list_path).unwrap();
        }
        m.mount(&[]);
        assert_eq!(errno_of(fs::read(m.path("big"))), Some(libc::EIO));
        m.umount();
    }
    assert!(
        tag_lists(&dir).is_empty(),
        "no list is saved for a bad blob"
    );
    // gc keeps only lists of blobs it keeps.
    fs::write(list_path, b"junk").unwrap();
    fs::write(
        dir.join("tags")
            .join("0123456789012345678901234567890123456789"),
        b"x",
    )
    .unwrap();
    m.node.ok(["gc", "v"]);
    assert_eq!(tag_lists(&dir), lists);
}
