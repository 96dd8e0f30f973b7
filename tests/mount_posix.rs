//! POSIX semantics inside a mounted vault: reads and writes at offsets, holes,
//! appends, truncation, unlinked open files, renames, directories, symbolic and
//! hard links. Every test mounts its own node (`common::mount::Mounted`).

mod common;

use common::posix::{assert_errno, create_rw, cstr, names_in, rc};

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;

use common::mount::Mounted;
use common::pseudo_random;

fn renameat2(from: &Path, to: &Path, flags: libc::c_uint) -> io::Result<()> {
    let (f, t) = (cstr(from), cstr(to));
    // SAFETY: valid NUL-terminated paths; the result is checked.
    rc(unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            f.as_ptr(),
            libc::AT_FDCWD,
            t.as_ptr(),
            flags,
        )
    })
}

fn rw(path: &Path) -> File {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()))
}

/// Apply a write to an in-memory model of a file.
fn model_write(model: &mut Vec<u8>, off: usize, data: &[u8]) {
    if model.len() < off + data.len() {
        model.resize(off + data.len(), 0);
    }
    model[off..off + data.len()].copy_from_slice(data);
}

// ---------------------------------------------------------------------------
// Reads and writes.

#[test]
fn writes_and_reads_at_arbitrary_offsets() {
    let mut m = Mounted::new();
    let p = m.path("offsets.bin");
    let f = create_rw(&p);
    let mut model = Vec::new();
    // Page-aligned, page-crossing, unaligned, overlapping and past-the-end writes.
    let writes: &[(usize, usize, u64)] = &[
        (0, 10_000, 1),
        (4090, 20, 2),
        (8192, 4096, 3),
        (123, 1, 4),
        (9_999, 5_000, 5),
        (30_000, 777, 6),
        (4096 * 3 - 1, 2, 7),
    ];
    for &(off, len, seed) in writes {
        let data = pseudo_random(len, seed);
        f.write_all_at(&data, off as u64).unwrap();
        model_write(&mut model, off, &data);
        assert_eq!(f.metadata().unwrap().len(), model.len() as u64);
    }
    // Reads at offsets through the same descriptor.
    for &(off, len) in &[(0usize, 1usize), (4095, 2), (8000, 5000), (29_990, 787)] {
        let mut buf = vec![0u8; len];
        f.read_exact_at(&mut buf, off as u64).unwrap();
        assert_eq!(buf, model[off..off + len], "pread({off}, {len})");
    }
    // A read past the end returns what is left, then nothing.
    let mut buf = vec![0u8; 100];
    let n = f.read_at(&mut buf, model.len() as u64 - 10).unwrap();
    assert_eq!(n, 10);
    assert_eq!(buf[..10], model[model.len() - 10..]);
    assert_eq!(f.read_at(&mut buf, model.len() as u64 + 5).unwrap(), 0);
    drop(f);
    assert_eq!(fs::read(&p).unwrap(), model, "fresh open");
    m.umount();
    assert_eq!(m.node.cat("v:offsets.bin"), model, "committed content");
}

#[test]
fn sparse_hole_reads_as_zeros() {
    let mut m = Mounted::new();
    let p = m.path("sparse");
    let f = create_rw(&p);
    const MIB: u64 = 1 << 20;
    f.write_all_at(b"tail", MIB).unwrap();
    assert_eq!(f.metadata().unwrap().len(), MIB + 4);
    let mut mid = vec![0xAAu8; 8192];
    f.read_exact_at(&mut mid, MIB / 2 - 4096).unwrap();
    assert!(
        mid.iter().all(|&b| b == 0),
        "the middle of the hole is zeros"
    );
    drop(f);
    let all = fs::read(&p).unwrap();
    assert_eq!(all.len() as u64, MIB + 4);
    assert!(all[..MIB as usize].iter().all(|&b| b == 0), "hole is zeros");
    assert_eq!(&all[MIB as usize..], b"tail");
    // Extend a second time, past the end, from a fresh descriptor.
    let f = rw(&p);
    f.write_all_at(b"more", 3 * MIB).unwrap();
    drop(f);
    let all = fs::read(&p).unwrap();
    assert_eq!(all.len() as u64, 3 * MIB + 4);
    assert_eq!(&all[MIB as usize..MIB as usize + 4], b"tail");
    assert!(all[MIB as usize + 4..3 * MIB as usize]
        .iter()
        .all(|&b| b == 0));
    assert_eq!(&all[3 * MIB as usize..], b"more");
    m.umount();
    assert_eq!(m.node.cat("v:sparse"), all);
}

#[test]
fn sequential_writes_extend_an_existing_file() {
    let mut m = Mounted::new();
    let p = m.path("grow.txt");
    let first = pseudo_random(5000, 11);
    fs::write(&p, &first).unwrap();
    let mut f = OpenOptions::new().write(true).open(&p).unwrap();
    assert_eq!(f.seek(SeekFrom::End(0)).unwrap(), 5000);
    let mut model = first.clone();
    // Many small writes of an odd size, crossing page boundaries.
    for i in 0..400u64 {
        let chunk = pseudo_random(37, 100 + i);
        f.write_all(&chunk).unwrap();
        model.extend_from_slice(&chunk);
    }
    assert_eq!(f.metadata().unwrap().len(), model.len() as u64);
    drop(f);
    assert_eq!(fs::read(&p).unwrap(), model);
    m.umount();
    assert_eq!(m.node.cat("v:grow.txt"), model);
}

#[test]
fn o_append_from_two_descriptors_never_overwrites() {
    let mut m = Mounted::new();
    let p = m.path("append.log");
    fs::write(&p, b"head\n").unwrap();
    let open_append = || OpenOptions::new().append(true).open(&p).unwrap();
    let (mut a, mut b) = (open_append(), open_append());
    let mut expected = b"head\n".to_vec();
    for i in 0..50 {
        let la = format!("A{i:03}\n");
        let lb = format!("B{i:03} from the second descriptor\n");
        a.write_all(la.as_bytes()).unwrap();
        b.write_all(lb.as_bytes()).unwrap();
        expected.extend_from_slice(la.as_bytes());
        expected.extend_from_slice(lb.as_bytes());
    }
    drop((a, b));
    assert_eq!(
        String::from_utf8_lossy(&fs::read(&p).unwrap()),
        String::from_utf8_lossy(&expected)
    );
    m.umount();
    assert_eq!(m.node.cat("v:append.log"), expected);
}

// ---------------------------------------------------------------------------
// Truncation.

#[test]
fn truncate_down_then_up_reads_zeros_in_the_cut() {
    let mut m = Mounted::new();
    let p = m.path("trunc.bin");
    let data = pseudo_random(3 * 4096 + 123, 21);
    fs::write(&p, &data).unwrap();
    let truncate = |len: i64| {
        // SAFETY: valid path; the result is checked.
        rc(unsafe { libc::truncate(cstr(&p).as_ptr(), len) }).unwrap()
    };

    truncate(5000);
    assert_eq!(fs::metadata(&p).unwrap().len(), 5000);
    assert_eq!(fs::read(&p).unwrap(), data[..5000]);

    truncate(20_000);
    let got = fs::read(&p).unwrap();
    assert_eq!(got.len(), 20_000);
    assert_eq!(got[..5000], data[..5000]);
    let nonzero = got[5000..].iter().position(|&b| b != 0);
    assert_eq!(nonzero, None, "the cut bytes came back after growing");

    // Down and up again within one page, with set_len on a descriptor.
    let f = rw(&p);
    f.set_len(100).unwrap();
    f.set_len(4000).unwrap();
    drop(f);
    let got2 = fs::read(&p).unwrap();
    assert_eq!(got2.len(), 4000);
    assert_eq!(got2[..100], data[..100]);
    assert!(
        got2[100..].iter().all(|&b| b == 0),
        "cut bytes within a page"
    );

    m.umount();
    assert_eq!(m.node.cat("v:trunc.bin"), got2);
    m.mount(&[]);
    truncate(0);
    assert_eq!(fs::metadata(&p).unwrap().len(), 0);
    assert_eq!(fs::read(&p).unwrap(), b"");
    m.umount();
    assert_eq!(m.node.cat("v:trunc.bin"), b"");
}

#[test]
fn truncate_by_path_while_only_readers_have_it_open() {
    // The first open (for reading) creates the file's shared open state; a
    // truncate by path goes through that state and must write the shorter blob.
    let mut m = Mounted::new();
    let p = m.path("readers.bin");
    let data = pseudo_random(9000, 5);
    fs::write(&p, &data).unwrap();
    m.umount();
    m.mount(&[]);
    let reader = File::open(&p).unwrap();
    let mut head = [0u8; 10];
    reader.read_exact_at(&mut head, 0).unwrap();
    assert_eq!(head, data[..10]);
    let c = cstr(&p);
    // SAFETY: a valid NUL-terminated path.
    rc(unsafe { libc::truncate(c.as_ptr(), 1234) }).unwrap();
    assert_eq!(fs::metadata(&p).unwrap().len(), 1234);
    let mut back = Vec::new();
    (&reader).read_to_end(&mut back).unwrap();
    assert_eq!(back, data[..1234], "the reader sees the cut file");
    drop(reader);
    m.umount();
    assert_eq!(m.node.cat("v:readers.bin"), data[..1234]);
}

#[test]
fn ftruncate_on_an_open_descriptor() {
    let mut m = Mounted::new();
    let p = m.path("ftrunc.bin");
    let data = pseudo_random(10_000, 31);
    let f = create_rw(&p);
    f.write_all_at(&data, 0).unwrap();
    // Not yet written back: truncate while the data is dirty.
    f.set_len(3000).unwrap();
    assert_eq!(f.metadata().unwrap().len(), 3000);
    assert_eq!(fs::metadata(&p).unwrap().len(), 3000, "seen by path too");
    let mut buf = Vec::new();
    (&f).seek(SeekFrom::Start(0)).unwrap();
    (&f).read_to_end(&mut buf).unwrap();
    assert_eq!(buf, data[..3000]);
    // Writing past the new end must not resurrect the cut bytes.
    f.write_all_at(b"X", 6000).unwrap();
    let other = fs::read(&p).unwrap();
    assert_eq!(other.len(), 6001);
    assert_eq!(other[..3000], data[..3000]);
    assert!(
        other[3000..6000].iter().all(|&b| b == 0),
        "the truncated range reads as zeros"
    );
    assert_eq!(other[6000], b'X');
    f.sync_all().unwrap();
    // Truncate after a write-back, still through the open descriptor.
    f.set_len(2000).unwrap();
    drop(f);
    assert_eq!(fs::read(&p).unwrap(), data[..2000]);
    m.umount();
    assert_eq!(m.node.cat("v:ftrunc.bin"), data[..2000]);
}

// ---------------------------------------------------------------------------
// Unlink.

#[test]
fn unlinked_open_file_stays_usable_through_its_descriptor() {
    let mut m = Mounted::new();
    let p = m.path("ghost.txt");
    let f = create_rw(&p);
    f.write_all_at(b"hello", 0).unwrap();
    f.sync_all().unwrap();
    fs::remove_file(&p).unwrap();
    assert_errno(fs::symlink_metadata(&p), libc::ENOENT, "stat after unlink");
    assert!(!names_in(&m.v()).contains(&"ghost.txt".to_string()));
    let mut buf = [0u8; 5];
    f.read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(&buf, b"hello");
    f.write_all_at(b" world", 5).unwrap();
    let mut buf = [0u8; 11];
    f.read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(&buf, b"hello world");
    assert_eq!(f.metadata().unwrap().len(), 11);
    assert_eq!(
        f.metadata().unwrap().nlink(),
        0,
        "fstat of an unlinked file"
    );
    // A new file under the same name is another file.
    fs::write(&p, b"new").unwrap();
    assert_eq!(fs::read(&p).unwrap(), b"new");
    f.read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(
        &buf, b"hello world",
        "the old descriptor keeps the old file"
    );
    drop(f);
    assert_eq!(fs::read(&p).unwrap(), b"new");
    fs::remove_file(&p).unwrap();
    m.umount();
    assert!(!m.node.ls("v:").iter().any(|n| n.starts_with("ghost")));
}

// ---------------------------------------------------------------------------
// Rename.

#[test]
fn rename_overwrites_a_file() {
    let mut m = Mounted::new();
    let (a, b) = (m.path("a.txt"), m.path("b.txt"));
    fs::write(&a, b"from a").unwrap();
    fs::write(&b, b"old b").unwrap();
    let ino_a = fs::metadata(&a).unwrap().ino();
    fs::rename(&a, &b).unwrap();
    assert_errno(fs::metadata(&a), libc::ENOENT, "old name");
    assert_eq!(fs::read(&b).unwrap(), b"from a");
    assert_eq!(fs::metadata(&b).unwrap().ino(), ino_a, "the inode moved");
    assert_eq!(names_in(&m.v()), ["b.txt"]);
    m.umount();
    assert_eq!(m.node.ls("v:"), ["b.txt"]);
    assert_eq!(m.node.cat("v:b.txt"), b"from a");
}

#[test]
fn rename_directory_over_an_empty_directory() {
    let mut m = Mounted::new();
    let (d1, d2) = (m.path("d1"), m.path("d2"));
    fs::create_dir(&d1).unwrap();
    fs::create_dir(d1.join("sub")).unwrap();
    fs::write(d1.join("sub/f"), b"inside").unwrap();
    fs::create_dir(&d2).unwrap();
    fs::rename(&d1, &d2).unwrap();
    assert_errno(fs::metadata(&d1), libc::ENOENT, "old directory");
    assert_eq!(fs::read(d2.join("sub/f")).unwrap(), b"inside");
    assert_eq!(names_in(&d2), ["sub"]);
    m.umount();
    assert_eq!(m.node.ls("v:"), ["d2/"]);
    assert_eq!(m.node.cat("v:d2/sub/f"), b"inside");
}

#[test]
fn rename_onto_a_non_empty_directory_fails() {
    let m = Mounted::new();
    let (d1, d2) = (m.path("d1"), m.path("d2"));
    fs::create_dir(&d1).unwrap();
    fs::write(d1.join("one"), b"1").unwrap();
    fs::create_dir(&d2).unwrap();
    fs::write(d2.join("two"), b"2").unwrap();
    assert_errno(fs::rename(&d1, &d2), libc::ENOTEMPTY, "rename onto d2");
    assert_eq!(fs::read(d1.join("one")).unwrap(), b"1");
    assert_eq!(fs::read(d2.join("two")).unwrap(), b"2");
    // A directory onto a file, and a file onto a directory.
    fs::write(m.path("file"), b"f").unwrap();
    assert_errno(fs::rename(&d1, m.path("file")), libc::ENOTDIR, "dir->file");
    assert_errno(fs::rename(m.path("file"), &d1), libc::EISDIR, "file->dir");
    assert_eq!(names_in(&m.v()), ["d1", "d2", "file"]);
}

#[test]
fn renameat2_noreplace() {
    let mut m = Mounted::new();
    let (a, b, c) = (m.path("a"), m.path("b"), m.path("c"));
    fs::write(&a, b"A").unwrap();
    fs::write(&b, b"B").unwrap();
    assert_errno(
        renameat2(&a, &b, libc::RENAME_NOREPLACE),
        libc::EEXIST,
        "RENAME_NOREPLACE onto an existing file",
    );
    assert_eq!(fs::read(&a).unwrap(), b"A");
    assert_eq!(fs::read(&b).unwrap(), b"B");
    renameat2(&a, &c, libc::RENAME_NOREPLACE).unwrap();
    assert_eq!(names_in(&m.v()), ["b", "c"]);
    assert_eq!(fs::read(&c).unwrap(), b"A");
    m.umount();
    assert_eq!(m.node.cat("v:c"), b"A");
    assert_eq!(m.node.cat("v:b"), b"B");
}

#[test]
fn renameat2_exchange_swaps_a_file_and_a_directory() {
    let mut m = Mounted::new();
    let (f, d) = (m.path("f"), m.path("d"));
    fs::write(&f, b"file content").unwrap();
    fs::create_dir(&d).unwrap();
    fs::write(d.join("inner"), b"inner content").unwrap();
    let (fino, dino) = (
        fs::metadata(&f).unwrap().ino(),
        fs::metadata(&d).unwrap().ino(),
    );
    renameat2(&f, &d, libc::RENAME_EXCHANGE).unwrap();
    assert!(fs::metadata(&f).unwrap().is_dir(), "f is now the directory");
    assert!(fs::metadata(&d).unwrap().is_file(), "d is now the file");
    assert_eq!(fs::metadata(&f).unwrap().ino(), dino);
    assert_eq!(fs::metadata(&d).unwrap().ino(), fino);
    assert_eq!(fs::read(&d).unwrap(), b"file content");
    assert_eq!(fs::read(f.join("inner")).unwrap(), b"inner content");
    assert_errno(
        renameat2(&f, &m.path("missing"), libc::RENAME_EXCHANGE),
        libc::ENOENT,
        "exchange with a missing entry",
    );
    m.umount();
    assert_eq!(m.node.cat("v:d"), b"file content");
    assert_eq!(m.node.cat("v:f/inner"), b"inner content");
}

#[test]
fn renameat2_exchange_across_directories_with_long_names() {
    let mut m = Mounted::new();
    // Names long enough that their encrypted form needs a sidecar.
    let long_a = "a".repeat(240);
    let long_b = "b".repeat(250);
    fs::create_dir(m.path("x")).unwrap();
    fs::create_dir(m.path("y")).unwrap();
    let pa = m.path(&format!("x/{long_a}"));
    let pb = m.path(&format!("y/{long_b}"));
    fs::write(&pa, b"was in x").unwrap();
    fs::write(&pb, b"was in y").unwrap();
    renameat2(&pa, &pb, libc::RENAME_EXCHANGE).unwrap();
    assert_eq!(fs::read(&pa).unwrap(), b"was in y");
    assert_eq!(fs::read(&pb).unwrap(), b"was in x");
    assert_eq!(names_in(&m.path("x")), std::slice::from_ref(&long_a));
    assert_eq!(names_in(&m.path("y")), std::slice::from_ref(&long_b));
    m.umount();
    assert_eq!(m.node.cat(&format!("v:x/{long_a}")), b"was in y");
    assert_eq!(m.node.cat(&format!("v:y/{long_b}")), b"was in x");
    // And once more from a fresh mount: nothing cached.
    m.mount(&[]);
    assert_eq!(names_in(&m.path("x")), [long_a]);
    assert_eq!(fs::read(&pb).unwrap(), b"was in x");
}

// ---------------------------------------------------------------------------
// Directories and links.

#[test]
fn mkdir_and_rmdir() {
    let mut m = Mounted::new();
    let d = m.path("outer");
    fs::create_dir_all(d.join("inner/deeper")).unwrap();
    assert!(fs::metadata(d.join("inner/deeper")).unwrap().is_dir());
    assert_errno(fs::create_dir(&d), libc::EEXIST, "mkdir of an existing dir");
    assert_errno(fs::remove_dir(&d), libc::ENOTEMPTY, "rmdir of non-empty");
    fs::write(d.join("inner/file"), b"x").unwrap();
    assert_errno(
        fs::remove_dir(d.join("inner/file")),
        libc::ENOTDIR,
        "rmdir of a file",
    );
    assert_errno(
        fs::remove_file(d.join("inner")),
        libc::EISDIR,
        "unlink of a directory",
    );
    fs::remove_dir(d.join("inner/deeper")).unwrap();
    assert_errno(
        fs::remove_dir(d.join("inner")),
        libc::ENOTEMPTY,
        "rmdir with a file left",
    );
    fs::remove_file(d.join("inner/file")).unwrap();
    fs::remove_dir(d.join("inner")).unwrap();
    assert!(names_in(&d).is_empty());
    assert_eq!(fs::metadata(&d).unwrap().nlink(), 2, "empty dir nlink");
    fs::create_dir(d.join("kept")).unwrap();
    m.umount();
    assert_eq!(m.node.ls("v:outer"), ["kept/"]);
}

#[test]
fn symlinks_round_trip_and_resolve() {
    let mut m = Mounted::new();
    fs::create_dir(m.path("sub")).unwrap();
    fs::write(m.path("sub/target.txt"), b"through the link").unwrap();
    fs::create_dir(m.path("other")).unwrap();
    let rel = m.path("other/rel");
    std::os::unix::fs::symlink("../sub/target.txt", &rel).unwrap();
    assert_eq!(fs::read_link(&rel).unwrap(), Path::new("../sub/target.txt"));
    assert!(fs::symlink_metadata(&rel).unwrap().file_type().is_symlink());
    assert_eq!(fs::read(&rel).unwrap(), b"through the link");
    // Writing through the link changes the target.
    fs::write(&rel, b"written via link").unwrap();
    assert_eq!(
        fs::read(m.path("sub/target.txt")).unwrap(),
        b"written via link"
    );
    // An absolute, dangling target round-trips byte for byte.
    let abs = m.path("abs");
    let target = "/nonexistent/dir/with spaces/\u{e9}\u{e8}";
    std::os::unix::fs::symlink(target, &abs).unwrap();
    assert_eq!(fs::read_link(&abs).unwrap(), Path::new(target));
    assert_eq!(
        fs::symlink_metadata(&abs).unwrap().len(),
        target.len() as u64,
        "a symlink's size is its target's length"
    );
    assert_errno(
        fs::metadata(&abs),
        libc::ENOENT,
        "following a dangling link",
    );
    m.umount();
    m.mount(&[]);
    assert_eq!(fs::read_link(&abs).unwrap(), Path::new(target));
    assert_eq!(fs::read(&rel).unwrap(), b"written via link");
}

#[test]
fn hard_links_share_one_inode() {
    let mut m = Mounted::new();
    let (a, b) = (m.path("a"), m.path("dir/b"));
    fs::create_dir(m.path("dir")).unwrap();
    fs::write(&a, b"shared").unwrap();
    fs::hard_link(&a, &b).unwrap();
    let (ma, mb) = (fs::metadata(&a).unwrap(), fs::metadata(&b).unwrap());
    assert_eq!(ma.ino(), mb.ino());
    assert_eq!(ma.nlink(), 2);
    assert_eq!(mb.nlink(), 2);
    // A write through one name shows through the other.
    OpenOptions::new()
        .append(true)
        .open(&b)
        .unwrap()
        .write_all(b" content")
        .unwrap();
    assert_eq!(fs::read(&a).unwrap(), b"shared content");
    assert_eq!(fs::metadata(&a).unwrap().len(), 14);
    fs::remove_file(&a).unwrap();
    assert_errno(fs::metadata(&a), libc::ENOENT, "removed name");
    assert_eq!(fs::read(&b).unwrap(), b"shared content");
    assert_eq!(fs::metadata(&b).unwrap().nlink(), 1);
    assert_errno(
        fs::hard_link(m.path("dir"), m.path("dirlink")),
        libc::EPERM,
        "a hard link to a directory",
    );
    m.umount();
    assert_eq!(m.node.cat("v:dir/b"), b"shared content");
    assert_eq!(m.node.ls("v:"), ["dir/"]);
}
