//! Size limits and a full disk, on a small tmpfs home: a request past the
//! maximum file size gets EFBIG, one that does not fit gets ENOSPC at once,
//! and neither leaves anything behind; removing a file gives its space back
//! while the mount stays up; `pkfs umount` on a full disk unmounts, releases
//! the home and says what it could not commit, which the next mount commits.
//! Needs root (tmpfs and FUSE mounts).

mod common;

use std::ffi::CString;
use std::fs;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use common::mount::is_mounted;
use common::tmpfs::TmpfsHome;
use common::*;

fn cstr(b: &[u8]) -> CString {
    CString::new(b).unwrap()
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

fn errno(r: std::io::Result<()>) -> Option<i32> {
    r.err().and_then(|e| e.raw_os_error())
}

/// fallocate(2) on `f`.
fn fallocate(f: &fs::File, mode: i32, offset: u64, len: u64) -> std::io::Result<()> {
    // SAFETY: a valid descriptor; the result is checked.
    let rc = unsafe { libc::fallocate(f.as_raw_fd(), mode, offset as i64, len as i64) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[test]
fn requests_too_big_for_the_file_or_the_disk_fail_and_leave_nothing() {
    let node = Node::new();
    let t = TmpfsHome::new(&node, "64m");
    node.ok(["init"]);
    node.ok(["vault", "create", "v"]);
    node.ok(["mount", &s(&t.mnt), "--commit-delay", "200ms"]);
    let v = t.mnt.join("v");
    let data = pseudo_random(100 * 1024 + 7, 1);
    fs::write(v.join("f"), &data).unwrap();
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(v.join("f"))
        .unwrap();
    f.sync_all().unwrap();
    let before = t.used();

    // Past the maximum size: EFBIG (pjdfstest truncate/12, ftruncate/12).
    assert_eq!(errno(f.set_len(999_999_999_999_999_999)), Some(libc::EFBIG));
    let c = cstr(v.join("f").as_os_str().as_bytes());
    // SAFETY: a valid C string; the result is checked.
    let rc = unsafe { libc::truncate(c.as_ptr(), 999_999_999_999_999_999) };
    assert_eq!(rc, -1);
    assert_eq!(
        std::io::Error::last_os_error().raw_os_error(),
        Some(libc::EFBIG)
    );
    assert_eq!(
        errno(f.write_all_at(b"x", (1 << 43) - 1 + 1)),
        Some(libc::EFBIG)
    );

    // Growth is a hole: a 1 TiB truncation and a write at 10 GiB take no
    // room (tests/mount_holes.rs); space asked for is checked: ENOSPC at
    // once, nothing written.
    let t0 = Instant::now();
    f.set_len(1 << 40).unwrap();
    f.write_all_at(b"far", 10 << 30).unwrap();
    assert!(t.used() < before + (1 << 20), "{} -> {}", before, t.used());
    f.set_len(data.len() as u64).unwrap();
    assert_eq!(errno(fallocate(&f, 0, 0, 1 << 30)), Some(libc::ENOSPC));
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    assert_eq!(f.metadata().unwrap().len(), data.len() as u64);
    assert!(t.used() < before + (1 << 20), "{} -> {}", before, t.used());
    assert_eq!(fs::read(v.join("f")).unwrap(), data);

    // Real data up to a full disk: the write that does not fit fails, and
    // what was acknowledged before it is the file.
    let mut g = fs::File::create(v.join("g")).unwrap();
    let chunk = pseudo_random(1 << 20, 2);
    let mut written = 0u64;
    let err = loop {
        match g.write_all(&chunk) {
            Ok(()) => written += chunk.len() as u64,
            Err(e) => break e,
        }
        assert!(written < 128 << 20, "128 MiB written to a 64 MiB disk");
    };
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");
    assert!(written > 16 << 20, "only {written} bytes fit");
    g.sync_all().unwrap();
    assert_eq!(g.metadata().unwrap().len(), written);
    assert_eq!(fs::read(v.join("f")).unwrap(), data);
    // The CLI still answers while the disk is full.
    node.ok(["status"]);
    node.ok(["fsck"]);
    assert_eq!(node.ls("v:"), ["f", "g"]);

    // Removing it gives the space back with the mount up, open or not.
    let full = t.used();
    drop(g);
    fs::remove_file(v.join("g")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while t.used() + (written / 2) > full {
        assert!(Instant::now() < deadline, "{} still used", t.used());
        std::thread::sleep(Duration::from_millis(100));
    }

    // fallocate: KEEP_SIZE changes nothing, PUNCH_HOLE zeroes, mode 0 grows.
    fallocate(&f, libc::FALLOC_FL_KEEP_SIZE, 0, 1 << 20).unwrap();
    assert_eq!(f.metadata().unwrap().len(), data.len() as u64);
    let punch = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
    fallocate(&f, punch, 5000, 10_000).unwrap();
    assert_eq!(
        errno(fallocate(&f, libc::FALLOC_FL_PUNCH_HOLE, 0, 1)),
        Some(libc::EOPNOTSUPP)
    );
    let mut want = data.clone();
    want[5000..15_000].fill(0);
    fallocate(&f, 0, 0, 200_000).unwrap();
    want.resize(200_000, 0);
    drop(f);
    assert_eq!(fs::read(v.join("f")).unwrap(), want);

    node.ok(["umount", &s(&t.mnt)]);
    node.ok(["fsck"]);
    assert_eq!(node.cat("v:f"), want);
    assert_eq!(node.ls("v:"), ["f"]);
}

#[test]
fn umount_on_a_full_disk_unmounts_and_the_next_mount_commits() {
    let node = Node::new();
    let t = TmpfsHome::new(&node, "32m");
    node.ok(["init"]);
    node.ok(["vault", "create", "v"]);
    // No commit before the unmount.
    node.ok(["mount", &s(&t.mnt), "--commit-delay", "600s"]);
    let v = t.mnt.join("v");
    let data = pseudo_random(3 << 20, 3);
    fs::write(v.join("f"), &data).unwrap();
    // Fill what is left of the home's disk from outside the vault.
    let filler = node.home.join("filler");
    {
        let mut w = fs::File::create(&filler).unwrap();
        let chunk = vec![7u8; 1 << 20];
        while w.write_all(&chunk).is_ok() {}
        let _ = w.sync_all();
    }
    let o = node.run(["umount", &s(&t.mnt)]);
    assert_eq!(o.code, ExitCode::Uncommitted as i32, "{o:?}");
    assert!(o.stderr.contains("next mount"), "{}", o.stderr);
    assert!(!is_mounted(&t.mnt));
    // The home is free: status and fsck run while the disk is still full.
    let st = node.ok(["--json", "status"]).json();
    assert_eq!(st["mounted"], false, "{st}");
    node.ok(["fsck"]);

    fs::remove_file(&filler).unwrap();
    node.ok(["mount", &s(&t.mnt), "--commit-delay", "200ms"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while node.commits("v") < 2 {
        assert!(Instant::now() < deadline, "the leftover was not committed");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(fs::read(v.join("f")).unwrap(), data);
    node.ok(["umount", &s(&t.mnt)]);
    node.ok(["fsck"]);
    assert_eq!(node.cat("v:f"), data);
}

/// Wait until at most `limit` bytes are in use on the tmpfs home.
fn wait_used_below(t: &TmpfsHome, limit: u64, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while t.used() > limit {
        assert!(Instant::now() < deadline, "{what}: {} still used", t.used());
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn removing_or_truncating_a_file_gives_its_space_back_at_once() {
    let node = Node::new();
    let t = TmpfsHome::new(&node, "64m");
    node.ok(["init"]);
    node.ok(["vault", "create", "v"]);
    // No commit meanwhile (it would copy the blobs into git).
    node.ok(["mount", &s(&t.mnt), "--commit-delay", "600s"]);
    let v = t.mnt.join("v");
    let open_files = || node.ok(["--json", "status"]).json()["open_files"].as_u64();
    let base = t.used();

    // Truncation, of a closed file.
    fs::write(v.join("a"), pseudo_random(8 << 20, 4)).unwrap();
    assert!(t.used() > base + (7 << 20));
    fs::OpenOptions::new()
        .write(true)
        .open(v.join("a"))
        .unwrap()
        .set_len(100)
        .unwrap();
    wait_used_below(&t, base + (1 << 20), "after truncating a");

    // A file whose write-back failed (the disk filled behind it): closing
    // it keeps its changes, removing it drops them and its blob.
    let filler = node.home.join("filler");
    let mut attempt = 0;
    let (b, b_path) = loop {
        attempt += 1;
        let p = v.join(format!("b{attempt}"));
        let mut b = fs::File::create(&p).unwrap();
        // Small writes stay in dirty pages (a large append is written at once).
        for part in pseudo_random(300 << 10, 5).chunks(1000) {
            b.write_all(part).unwrap();
        }
        let mut w = fs::File::create(&filler).unwrap();
        let chunk = vec![7u8; 1 << 20];
        while w.write_all(&chunk).is_ok() {}
        drop(w);
        match b.sync_all() {
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
                break (b, p);
            }
            // Another test of this binary started a process meanwhile: the
            // copy of `b`'s descriptor that the fork inherited was closed at
            // its exec, and the kernel's FLUSH wrote `b` back before the disk
            // was full. Again, on a fresh file.
            Ok(()) => {
                assert!(
                    attempt < 5,
                    "fsync on a full disk succeeded {attempt} times"
                );
                drop(b);
                fs::remove_file(&p).unwrap();
                fs::remove_file(&filler).unwrap();
            }
        }
    };
    drop(b);
    assert_eq!(open_files(), Some(1), "the failed write-back is kept");
    fs::remove_file(&b_path).unwrap();
    // (The kernel sends RELEASE after close returns: wait for it.)
    let deadline = Instant::now() + Duration::from_secs(10);
    while open_files() != Some(0) {
        assert!(
            Instant::now() < deadline,
            "the removed file's state is kept"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    fs::remove_file(&filler).unwrap();

    // A file removed while open: its space comes back at its last close.
    fs::write(v.join("c"), pseudo_random(8 << 20, 6)).unwrap();
    let c = fs::File::open(v.join("c")).unwrap();
    fs::remove_file(v.join("c")).unwrap();
    let mut head = [0u8; 16];
    c.read_exact_at(&mut head, 0).unwrap();
    assert_eq!(head[..], pseudo_random(8 << 20, 6)[..16]);
    drop(c);
    wait_used_below(&t, base + (1 << 20), "after closing the removed c");
    assert_eq!(open_files(), Some(0));

    node.ok(["umount", &s(&t.mnt)]);
    node.ok(["fsck"]);
    assert_eq!(node.ls("v:"), ["a"]);
    assert_eq!(node.cat("v:a"), pseudo_random(8 << 20, 4)[..100]);
}

/// Limit the file size the process `pid` may write (RLIMIT_FSIZE).
fn limit_file_size(pid: i32, bytes: u64) {
    let lim = libc::rlimit {
        rlim_cur: bytes,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: a plain struct; the result is checked.
    let rc = unsafe { libc::prlimit(pid, libc::RLIMIT_FSIZE, &lim, std::ptr::null_mut()) };
    assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
}

#[test]
fn an_extension_that_fails_half_way_is_undone() {
    let mut m = common::mount::Mounted::new();
    let data = pseudo_random(100 * 1024 + 3, 7);
    fs::write(m.path("f"), &data).unwrap();
    m.wait_committed();
    let vault = m.node.vault_dir("v");
    let blob = largest_blob(&vault);
    let blob_len = fs::metadata(&blob).unwrap().len();
    let pid = m.status()["pid"].as_i64().unwrap() as i32;
    // The disk has room, but the daemon may not write past 4 MiB: the
    // write-back of a 16 MiB extension fails part-way (EFBIG).
    limit_file_size(pid, 4 << 20);
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(m.path("f"))
        .unwrap();
    assert_eq!(errno(f.set_len(16 << 20)), Some(libc::EFBIG));
    assert_eq!(f.metadata().unwrap().len(), data.len() as u64);
    assert_eq!(fs::metadata(&blob).unwrap().len(), blob_len, "cut back");
    assert_eq!(
        errno(fallocate(&f, 0, 0, 16 << 20)),
        Some(libc::EFBIG),
        "fallocate"
    );
    assert_eq!(f.metadata().unwrap().len(), data.len() as u64);
    assert_eq!(fs::metadata(&blob).unwrap().len(), blob_len, "cut back");
    let mut back = vec![0u8; data.len()];
    f.read_exact_at(&mut back, 0).unwrap();
    assert_eq!(back, data);
    // A write far out is taken into memory; its write-back fails and leaves
    // the blob as it was, and succeeds once the limit is gone.
    f.write_all_at(b"tail", 8 << 20).unwrap();
    assert_eq!(errno(f.sync_all()), Some(libc::EFBIG));
    assert_eq!(fs::metadata(&blob).unwrap().len(), blob_len, "cut back");
    // Streaming appends (written in the background) that run into the limit:
    // the blob on disk stays a valid blob of what was written before.
    let stream = pseudo_random(8 << 20, 8);
    let mut g = fs::File::create(m.path("g")).unwrap();
    let mut failed = false;
    for part in stream.chunks(128 << 10) {
        if g.write_all(part).is_err() {
            failed = true;
            break;
        }
    }
    failed |= g.sync_all().is_err();
    assert!(failed, "8 MiB written past a 4 MiB limit");
    // fsck (through the daemon) decrypts every page of every blob.
    m.node.ok(["fsck"]);
    limit_file_size(pid, libc::RLIM_INFINITY);
    f.sync_all().unwrap();
    drop(f);
    drop(g);
    m.umount();
    m.node.ok(["fsck"]);
    let mut want = data.clone();
    want.resize(8 << 20, 0);
    want.extend_from_slice(b"tail");
    assert_eq!(m.node.cat("v:f"), want);
}
