//! Sparse files through the mount, on a small tmpfs home: extending a file
//! (a truncation up, a write far past the end) is instant, takes no disk and
//! reads as zeros; SEEK_DATA/SEEK_HOLE see the holes; a sparse file commits
//! small, checks out back and forth and reads back through the CLI; and a
//! sealed page zeroed on disk (the way a hole looks) is an error, not zeros.
//! Needs root (tmpfs and FUSE mounts).

mod common;

use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::tmpfs::TmpfsHome;
use common::*;

const PAGE: u64 = 4096;
const SLOT: u64 = 4124;
const HEADER: u64 = 58;

fn s(p: &Path) -> String {
    p.display().to_string()
}

fn lseek(f: &fs::File, at: u64, whence: i32) -> Result<u64, i32> {
    // SAFETY: a valid descriptor; the result is checked.
    let r = unsafe { libc::lseek(f.as_raw_fd(), at as libc::off_t, whence) };
    if r < 0 {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    } else {
        Ok(r as u64)
    }
}

fn read_at(f: &fs::File, at: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0xAAu8; len];
    let n = f.read_at(&mut buf, at).unwrap();
    buf.truncate(n);
    buf
}

/// Bytes of git objects under the vault's history.
fn objects_size(dir: &Path) -> u64 {
    files_under(&dir.join(".git").join("objects"))
        .iter()
        .map(|p| fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .sum()
}

/// The backing blob of the only regular file of vault `v` (not the
/// directory IV, a long-name sidecar or the mode record).
fn only_blob(node: &Node) -> PathBuf {
    let dir = node.vault_dir("v");
    let blobs: Vec<PathBuf> = files_under(&dir.join("contents"))
        .into_iter()
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n != ".diriv" && n != ".pkfs-modes" && !n.ends_with(".name")
        })
        .collect();
    assert_eq!(blobs.len(), 1, "{blobs:?}");
    blobs[0].clone()
}

#[test]
fn extending_a_file_is_instant_takes_no_disk_and_reads_zeros() {
    let node = Node::new();
    let t = TmpfsHome::new(&node, "64m");
    node.ok(["init"]);
    node.ok(["vault", "create", "v"]);
    node.ok(["mount", &s(&t.mnt), "--commit-delay", "600s"]);
    let v = t.mnt.join("v");
    let head = pseudo_random(5000, 1);
    fs::write(v.join("big"), &head).unwrap();
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(v.join("big"))
        .unwrap();
    f.sync_all().unwrap();
    let before = t.used();

    // 1 TiB: instant, no disk, zeros (past the end of what was written).
    let t0 = Instant::now();
    f.set_len(1 << 40).unwrap();
    f.sync_all().unwrap();
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    assert!(t.used() < before + (256 << 10), "{before} -> {}", t.used());
    assert_eq!(f.metadata().unwrap().len(), 1 << 40);
    assert_eq!(read_at(&f, 0, 5000), head);
    assert_eq!(read_at(&f, 5000, 3000), vec![0u8; 3000]);
    assert_eq!(read_at(&f, 1 << 39, 8192), vec![0u8; 8192]);
    assert_eq!(read_at(&f, (1 << 40) - 100, 4096), vec![0u8; 100]);
    // The holes are holes to lseek too.
    assert_eq!(lseek(&f, 0, libc::SEEK_DATA), Ok(0));
    assert_eq!(lseek(&f, 0, libc::SEEK_HOLE), Ok(2 * PAGE));
    assert!(lseek(&f, 3 * PAGE, libc::SEEK_DATA).unwrap() >= (1 << 40) - PAGE);
    assert_eq!(lseek(&f, 1 << 40, libc::SEEK_DATA), Err(libc::ENXIO));
    // Past the maximum: EFBIG, nothing changed.
    assert!(f.set_len((1 << 43) + 1).is_err());
    assert_eq!(f.metadata().unwrap().len(), 1 << 40);

    // A write at 10 GiB into a new file: the same.
    let g = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(v.join("far"))
        .unwrap();
    let t0 = Instant::now();
    g.write_all_at(b"far away", 10 << 30).unwrap();
    g.sync_all().unwrap();
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    assert!(t.used() < before + (512 << 10), "{before} -> {}", t.used());
    assert_eq!(g.metadata().unwrap().len(), (10 << 30) + 8);
    assert_eq!(read_at(&g, 10 << 30, 100), b"far away");
    assert_eq!(read_at(&g, 5 << 30, 4096), vec![0u8; 4096]);
    assert_eq!(read_at(&g, 0, 10), vec![0u8; 10]);

    // Shrinking gives it back; a filled hole reads what was written.
    f.write_all_at(b"in the middle", 1 << 30).unwrap();
    f.set_len((1 << 30) + 20).unwrap();
    assert_eq!(read_at(&f, (1 << 30) - 3, 100), {
        let mut w = vec![0u8; 3];
        w.extend_from_slice(b"in the middle\0\0\0\0\0\0\0");
        w
    });
    drop((f, g));
    fs::remove_file(v.join("far")).unwrap();
    fs::write(v.join("big"), b"small again").unwrap();
    node.ok(["umount", &s(&t.mnt)]);
    node.ok(["fsck"]);
    assert_eq!(node.cat("v:big"), b"small again");
}

/// The content of `sparse` in its versions: a hole, data, a hole, and in the
/// second version more data inside the last hole.
fn sparse_versions() -> (Vec<u8>, Vec<u8>) {
    let mut one = vec![0u8; 5 << 20];
    one[(1 << 20) + 123..(1 << 20) + 123 + 100_000].copy_from_slice(&pseudo_random(100_000, 7));
    let mut two = one.clone();
    two[(4 << 20) + 1..(4 << 20) + 9].copy_from_slice(b"later on");
    (one, two)
}

#[test]
fn a_sparse_file_commits_small_checks_out_and_reads_back() {
    let node = Node::new();
    let t = TmpfsHome::new(&node, "256m");
    node.ok(["init"]);
    node.ok(["vault", "create", "v"]);
    node.ok(["mount", &s(&t.mnt), "--commit-delay", "600s"]);
    let v = t.mnt.join("v");
    let (one, two) = sparse_versions();
    let before = t.used();
    let f = fs::File::create(v.join("sparse")).unwrap();
    f.set_len(3 << 20).unwrap();
    f.write_all_at(
        &one[(1 << 20) + 123..(1 << 20) + 123 + 100_000],
        (1 << 20) + 123,
    )
    .unwrap();
    f.set_len(5 << 20).unwrap();
    drop(f);
    assert_eq!(fs::read(v.join("sparse")).unwrap(), one);
    let g = fs::File::open(v.join("sparse")).unwrap();
    assert_eq!(lseek(&g, 0, libc::SEEK_DATA), Ok(1 << 20));
    assert_eq!(
        lseek(&g, 1 << 20, libc::SEEK_HOLE),
        Ok((1 << 20) + 25 * PAGE)
    );
    drop(g);
    node.ok(["umount", &s(&t.mnt)]);
    node.ok(["fsck"]);
    assert_eq!(node.cat("v:sparse"), one);

    // Version 2: more data in the last hole, and a 1 GiB sparse file, whose
    // commit takes little room. Version 3: without it.
    let dir = node.vault_dir("v");
    let objects_before = objects_size(&dir);
    node.ok(["mount", &s(&t.mnt), "--commit-delay", "600s"]);
    fs::OpenOptions::new()
        .write(true)
        .open(v.join("sparse"))
        .unwrap()
        .write_all_at(b"later on", (4 << 20) + 1)
        .unwrap();
    let big = fs::File::create(v.join("gig")).unwrap();
    big.write_all_at(b"end", (1 << 30) - 3).unwrap();
    drop(big);
    let t0 = Instant::now();
    node.ok(["umount", &s(&t.mnt)]);
    let took = t0.elapsed();
    let grown = objects_size(&dir) - objects_before;
    assert!(
        grown > 0 && grown < 4 << 20,
        "the commit wrote {grown} bytes of objects"
    );
    assert!(t.used() < before + (16 << 20), "{before} -> {}", t.used());
    eprintln!("committing a 1 GiB sparse file: {took:?}, {grown} bytes of objects");
    node.ok(["fsck"]);
    assert_eq!(node.cat("v:sparse"), two);
    node.ok(["mount", &s(&t.mnt), "--commit-delay", "600s"]);
    let g = fs::File::open(v.join("gig")).unwrap();
    assert_eq!(read_at(&g, (1 << 30) - 3, 10), b"end");
    assert_eq!(read_at(&g, 1 << 29, 10), vec![0u8; 10]);
    drop(g);
    fs::remove_file(v.join("gig")).unwrap();
    node.ok(["umount", &s(&t.mnt)]);

    // Old versions read back, their holes as zeros.
    assert_eq!(
        node.ok(["version", "show", "v", "HEAD~1:sparse"]).stdout,
        two
    );
    assert_eq!(
        node.ok(["version", "show", "v", "HEAD~2:sparse"]).stdout,
        one
    );
    // The version with the 1 GiB file checks out with its holes: only its
    // data is written (filled, it would not fit in this home).
    node.ok(["version", "checkout", "v", "HEAD~1"]);
    assert!(t.used() < before + (16 << 20), "{before} -> {}", t.used());
    node.ok(["fsck"]);
    node.ok(["mount", &s(&t.mnt), "--commit-delay", "600s"]);
    let g = fs::File::open(v.join("gig")).unwrap();
    assert_eq!(g.metadata().unwrap().len(), 1 << 30);
    assert_eq!(read_at(&g, (1 << 30) - 3, 10), b"end");
    assert_eq!(read_at(&g, 1 << 29, 10), vec![0u8; 10]);
    assert_eq!(lseek(&g, 0, libc::SEEK_DATA), Ok((1 << 30) - PAGE));
    drop(g);
    node.ok(["umount", &s(&t.mnt)]);
    node.ok(["version", "checkout", "v", "latest"]);

    // Back and forth, unmounted and mounted.
    node.ok(["version", "checkout", "v", "HEAD~2"]);
    assert_eq!(node.cat("v:sparse"), one);
    node.ok(["fsck"]);
    node.ok(["mount", &s(&t.mnt), "--commit-delay", "600s"]);
    assert_eq!(fs::read(v.join("sparse")).unwrap(), one);
    node.ok(["version", "checkout", "v", "latest"]);
    assert_eq!(fs::read(v.join("sparse")).unwrap(), two);
    // Written to after a checkout (which left its holes holes).
    fs::OpenOptions::new()
        .write(true)
        .open(v.join("sparse"))
        .unwrap()
        .write_all_at(b"!", 3 << 20)
        .unwrap();
    node.ok(["umount", &s(&t.mnt)]);
    node.ok(["fsck"]);
    let mut three = two.clone();
    three[3 << 20] = b'!';
    assert_eq!(node.cat("v:sparse"), three);
}

/// A change made to a blob's bytes.
type Tamper = Box<dyn Fn(&mut Vec<u8>)>;

#[test]
fn a_zeroed_page_or_a_filled_hole_is_an_error_not_zeros() {
    let node = Node::new();
    let t = TmpfsHome::new(&node, "64m");
    node.ok(["init"]);
    node.ok(["vault", "create", "v"]);
    node.ok(["mount", &s(&t.mnt), "--commit-delay", "600s"]);
    let v = t.mnt.join("v");
    // Pages 0-2 data, 3-9 holes, 10 data (the last).
    let data = pseudo_random(3 * PAGE as usize, 3);
    let f = fs::File::create(v.join("f")).unwrap();
    f.write_all_at(&data, 0).unwrap();
    f.write_all_at(b"tail", 10 * PAGE).unwrap();
    drop(f);
    node.ok(["umount", &s(&t.mnt)]);
    node.ok(["fsck"]);
    let blob = only_blob(&node);
    let good = fs::read(&blob).unwrap();
    assert_eq!(good.len() as u64, HEADER + 10 * SLOT + 4 + 28);
    assert!(
        good[(HEADER + 3 * SLOT) as usize..(HEADER + 10 * SLOT) as usize]
            .iter()
            .all(|b| *b == 0)
    );

    let slot = |i: u64| (HEADER + i * SLOT) as usize..(HEADER + (i + 1) * SLOT) as usize;
    let cases: Vec<(&str, Tamper)> = vec![
        ("page 2 zeroed", Box::new(move |b| b[slot(2)].fill(0))),
        ("page 0 zeroed", Box::new(move |b| b[slot(0)].fill(0))),
        ("page 1 zeroed", Box::new(move |b| b[slot(1)].fill(0))),
        ("a hole filled", Box::new(move |b| b[slot(5)][100] = 1)),
        (
            "the hole cut short",
            Box::new(move |b| {
                let s = slot(2);
                let page: Vec<u8> = b[s.clone()].to_vec();
                b[slot(3)].copy_from_slice(&page);
            }),
        ),
    ];
    for (what, tamper) in &cases {
        let mut bad = good.clone();
        tamper(&mut bad);
        fs::write(&blob, &bad).unwrap();
        // Through the CLI and fsck.
        let o = node.run(["secret", "cat", "v:f"]);
        assert_ne!(o.code, 0, "{what}: secret cat succeeded");
        let o = node.run(["fsck"]);
        assert_ne!(o.code, 0, "{what}: fsck found nothing");
        fs::write(&blob, &good).unwrap();
    }
    // Through the mount: zeroed behind its back, page 1 fails with EIO
    // while the pages around it and the real holes still read.
    node.ok(["mount", &s(&t.mnt), "--commit-delay", "600s"]);
    let g = fs::File::open(v.join("f")).unwrap();
    assert_eq!(read_at(&g, 0, 3 * PAGE as usize), data);
    drop(g);
    node.ok(["umount", &s(&t.mnt)]);
    let mut bad = good.clone();
    bad[slot(1)].fill(0);
    fs::write(&blob, &bad).unwrap();
    node.ok(["mount", &s(&t.mnt), "--commit-delay", "600s"]);
    let g = fs::File::open(v.join("f"));
    if let Ok(g) = g {
        let mut buf = vec![0u8; PAGE as usize];
        let e = g.read_at(&mut buf, PAGE).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
        let e = g.read_at(&mut buf, 5 * PAGE).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
    }
    let _ = node.run(["umount", &s(&t.mnt)]);
    fs::write(&blob, &good).unwrap();
    node.ok(["fsck"]);
    assert_eq!(node.cat("v:f").len() as u64, 10 * PAGE + 4);
}
