//! Safety of the FUSE mount: nothing written through it reaches the disk (or the
//! daemon's log) in plaintext, bad `pkfs mount` requests are refused cleanly,
//! tampered blobs give EIO without taking the daemon down, and a full disk gives
//! ENOSPC and loses nothing. (The daemon's life, signals and memory are in
//! `mount_lifecycle.rs`.)

mod common;

use std::ffi::CString;
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::io::IntoRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::mount::{is_mounted, Mounted};
use common::tmpfs::TmpfsHome;
use common::*;

// ---------------------------------------------------------------------------
// Helpers.

/// Is process `pid` alive (present and not a zombie)?
fn alive(pid: i32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the parenthesised command name.
    let state = stat.rsplit_once(") ").map(|(_, r)| r.chars().next());
    !matches!(state, Some(Some('Z' | 'X')))
}

/// `close(2)` of a file, returning its error (std ignores it).
fn close(f: fs::File) -> std::io::Result<()> {
    // SAFETY: we own the descriptor and close it exactly once.
    if unsafe { libc::close(f.into_raw_fd()) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn cstr(b: &[u8]) -> CString {
    CString::new(b).unwrap()
}

fn set_xattr(path: &Path, name: &str, value: &[u8]) {
    let (p, n) = (cstr(path.as_os_str().as_bytes()), cstr(name.as_bytes()));
    // SAFETY: valid C strings and buffer.
    let rc = unsafe {
        libc::setxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    assert_eq!(
        rc,
        0,
        "setxattr {} {name}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
}

/// Every extended attribute of `path` (not following symlinks): (name, value).
fn xattrs_of(path: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    let p = cstr(path.as_os_str().as_bytes());
    let mut names = vec![0u8; 64 * 1024];
    // SAFETY: the buffer has room for names.len() bytes.
    let n = unsafe { libc::llistxattr(p.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    if n <= 0 {
        return Vec::new();
    }
    names.truncate(n as usize);
    let mut out = Vec::new();
    for name in names.split(|b| *b == 0).filter(|s| !s.is_empty()) {
        let cn = cstr(name);
        let mut value = vec![0u8; 64 * 1024];
        // SAFETY: the buffer has room for value.len() bytes.
        let got = unsafe {
            libc::lgetxattr(
                p.as_ptr(),
                cn.as_ptr(),
                value.as_mut_ptr().cast(),
                value.len(),
            )
        };
        value.truncate(got.max(0) as usize);
        out.push((name.to_vec(), value));
    }
    out
}

/// Each marker as is and merely encoded.
fn with_encodings(markers: &[&[u8]]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for m in markers {
        out.push(m.to_vec());
        out.extend(encoded_forms(m));
    }
    out
}

/// Wait until every vault of the daemon at `node`'s home has committed.
fn wait_committed(node: &Node) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = node.ok(["--json", "status"]).json();
        let pending: u64 = s["vaults"]
            .as_array()
            .map(|v| v.iter().filter_map(|x| x["pending_changes"].as_u64()).sum())
            .unwrap_or(0);
        if pending == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "changes not committed: {s}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

// ---------------------------------------------------------------------------
// No plaintext on disk.

const CONTENT: &str = "MNTCONTENT-MARKER-r5Tq2";
const BIG_CONTENT: &str = "MNTBIGPAGE-MARKER-t1Wz9";
const FILE: &str = "MNTFILENAME-MARKER-g7Yh3";
const DIR: &str = "MNTDIRNAME-MARKER-j2Kd8";
const LONG: &str = "MNTLONGNAME-MARKER-x9Pw4";
const LONGDIR: &str = "MNTLONGDIR-MARKER-v6Qa0";
const LINK: &str = "MNTLINKTARGET-MARKER-s3Nb6";
const XNAME: &str = "MNTXATTRNAME-MARKER-d4Fv1";
const XVALUE: &str = "MNTXATTRVALUE-MARKER-k8Mc5";
const RENAMED: &str = "MNTRENAMED-MARKER-p2Lu7";
const REMOVED: &str = "MNTREMOVED-MARKER-b5Ce4";
const REMOVED_CONTENT: &str = "MNTREMOVEDCONTENT-MARKER-f9Gs3";

fn markers() -> Vec<&'static [u8]> {
    [
        CONTENT,
        BIG_CONTENT,
        FILE,
        DIR,
        LONG,
        LONGDIR,
        LINK,
        XNAME,
        XVALUE,
        RENAMED,
        REMOVED,
        REMOVED_CONTENT,
        PASSPHRASE,
        "-MARKER-",
    ]
    .into_iter()
    .map(str::as_bytes)
    .collect()
}

/// Where any of `markers` (as is or merely encoded) shows up under `home`: in an
/// entry's name, a regular file's bytes, an extended attribute's name or value,
/// or a decompressed git object. Like `common::find_plaintext`, but it also reads
/// xattrs and skips what cannot be read as a file (the daemon's control socket).
/// Also returns how many xattrs it saw below `home/vaults`.
fn plaintext_under(home: &Path, markers: &[&[u8]]) -> (Vec<String>, usize) {
    let forms = with_encodings(markers);
    let mut found = Vec::new();
    let mut vault_xattrs = 0;
    let mut check = |what: String, data: &[u8]| {
        for f in &forms {
            if contains(data, f) {
                found.push(format!("{what} contains {:?}", String::from_utf8_lossy(f)));
            }
        }
    };
    let mut stack = vec![home.to_path_buf()];
    while let Some(p) = stack.pop() {
        let meta = fs::symlink_metadata(&p).unwrap();
        let rel = p.strip_prefix(home).unwrap();
        check(
            format!("the name {}", rel.display()),
            rel.as_os_str().as_bytes(),
        );
        for (n, v) in xattrs_of(&p) {
            if rel.starts_with("vaults") {
                vault_xattrs += 1;
            }
            check(format!("an xattr name of {}", rel.display()), &n);
            check(format!("an xattr value of {}", rel.display()), &v);
        }
        if meta.is_dir() {
            for e in fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
        } else if meta.is_file() {
            check(
                format!("the bytes of {}", rel.display()),
                &fs::read(&p).unwrap(),
            );
        } else if meta.file_type().is_symlink() {
            let target = fs::read_link(&p).unwrap();
            check(
                format!("the link target of {}", rel.display()),
                target.as_os_str().as_bytes(),
            );
        }
    }
    let repos = git_workdirs(home);
    assert!(!repos.is_empty(), "no repository under {}", home.display());
    for repo in repos {
        check(
            format!("a git object of {}", repo.display()),
            &git_all_objects(&repo),
        );
    }
    (found, vault_xattrs)
}

fn scan_home(m: &Mounted, when: &str) {
    let (found, xattrs) = plaintext_under(&m.node.home, &markers());
    assert!(
        found.is_empty(),
        "{when}: plaintext on disk:\n  {}",
        found.join("\n  ")
    );
    // The scan saw the sealed xattrs set through the mount.
    assert!(
        xattrs >= 2,
        "{when}: the two xattrs set through the mount are not on the backing entries \
         ({xattrs} found)"
    );
}

fn scan_log(m: &Mounted, when: &str) {
    let log = m.log();
    let forms = with_encodings(&markers());
    let found: Vec<String> = forms
        .iter()
        .filter(|f| contains(log.as_bytes(), f))
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect();
    assert!(
        found.is_empty(),
        "{when}: the daemon log holds {found:?}:\n{log}"
    );
}

#[test]
fn nothing_written_through_the_mount_reaches_the_disk_in_plaintext() {
    // -v: the daemon logs at info level, so the log scan reads a real log.
    let mut m = Mounted::with_args(&["--commit-delay", "200ms", "-v"]);
    let long = format!("{LONG}{}", "L".repeat(230 - LONG.len()));
    let longdir = format!("{LONGDIR}{}", "D".repeat(220 - LONGDIR.len()));
    assert!(long.len() > 200 && longdir.len() > 200);
    let mut big = pseudo_random(3 * 4096 + 100, 41);
    for off in [0, 4090, 9000, big.len() - BIG_CONTENT.len()] {
        big[off..off + BIG_CONTENT.len()].copy_from_slice(BIG_CONTENT.as_bytes());
    }
    let link_target = format!("../{LINK}/somewhere");

    fs::write(m.path("plain"), CONTENT.repeat(10)).unwrap();
    fs::write(m.path("big"), &big).unwrap();
    fs::write(m.path(FILE), b"x").unwrap();
    fs::create_dir(m.path(DIR)).unwrap();
    fs::write(m.path(&format!("{DIR}/{FILE}-inner")), CONTENT).unwrap();
    fs::write(m.path(&long), CONTENT).unwrap();
    fs::create_dir(m.path(&longdir)).unwrap();
    fs::write(m.path(&format!("{longdir}/{long}")), CONTENT).unwrap();
    std::os::unix::fs::symlink(&link_target, m.path("link")).unwrap();
    let xname = format!("user.{XNAME}");
    set_xattr(&m.path("plain"), &xname, XVALUE.as_bytes());
    set_xattr(&m.path(DIR), &xname, XVALUE.as_bytes());
    fs::write(m.path("to-rename"), CONTENT).unwrap();
    fs::rename(m.path("to-rename"), m.path(RENAMED)).unwrap();
    fs::write(m.path(REMOVED), REMOVED_CONTENT).unwrap();
    m.wait_committed();
    fs::remove_file(m.path(REMOVED)).unwrap();

    // What was written reads back through the mount (the scan is not vacuous).
    assert_eq!(fs::read(m.path("big")).unwrap(), big);
    assert_eq!(fs::read(m.path(&long)).unwrap(), CONTENT.as_bytes());
    assert_eq!(
        fs::read(m.path(&format!("{longdir}/{long}"))).unwrap(),
        CONTENT.as_bytes()
    );
    assert_eq!(
        fs::read_link(m.path("link")).unwrap(),
        PathBuf::from(&link_target)
    );
    for p in [m.path("plain"), m.path(DIR)] {
        let x = xattrs_of(&p);
        assert!(
            x.iter()
                .any(|(n, v)| n == xname.as_bytes() && v == XVALUE.as_bytes()),
            "{}: {x:?}",
            p.display()
        );
    }
    m.wait_committed();
    scan_home(&m, "committed, mounted");
    scan_log(&m, "committed, mounted");

    m.umount();
    scan_home(&m, "after umount");
    scan_log(&m, "after umount");
    assert!(
        m.log().contains("mounted"),
        "the daemon log is empty: the log scan saw nothing:\n{}",
        m.log()
    );
    // And it was all really stored.
    assert_eq!(m.node.cat(&format!("v:{RENAMED}")), CONTENT.as_bytes());
    assert_eq!(
        m.node.cat(&format!("v:{longdir}/{long}")),
        CONTENT.as_bytes()
    );
    assert_eq!(m.node.cat("v:big"), big);
    let log = m.node.log("v", false).len();
    assert!(log >= 3, "{log} commits");
}

// ---------------------------------------------------------------------------
// Bad input.

#[test]
fn a_bad_mountpoint_is_refused_with_one_line() {
    let n = Node::with_vault();
    let missing = n.scratch().join("missing");
    n.fail(ExitCode::MountFailure, ["mount", &s(&missing)])
        .stderr_has("does not exist")
        .stderr_has(&s(&missing));
    assert!(!missing.exists());

    let file = n.scratch_file("file", b"a file");
    n.fail(ExitCode::MountFailure, ["mount", &s(&file)])
        .stderr_has("not a directory");
    assert_eq!(fs::read(&file).unwrap(), b"a file");

    let full = n.scratch().join("full");
    fs::create_dir(&full).unwrap();
    fs::write(full.join("already-here"), b"x").unwrap();
    n.fail(ExitCode::MountFailure, ["mount", &s(&full)])
        .stderr_has("not empty");
    assert!(!is_mounted(&full));
    assert_eq!(fs::read(full.join("already-here")).unwrap(), b"x");

    // Nothing is left running.
    let st = n.ok(["--json", "status"]).json();
    assert_eq!(st["mounted"], false, "{st}");
    n.ok(["vault", "list"]);
}

#[test]
fn a_home_mounted_twice_is_refused_and_the_first_mount_keeps_working() {
    let m = Mounted::new();
    fs::write(m.path("before"), b"before").unwrap();
    let other = m.node.scratch().join("mnt2");
    fs::create_dir(&other).unwrap();
    m.node
        .fail(ExitCode::MountFailure, ["mount", &s(&other)])
        .stderr_has("already mounted");
    assert!(!is_mounted(&other), "the second mount must not happen");
    assert_eq!(fs::read_dir(&other).unwrap().count(), 0);
    // The first one still serves, reads and writes.
    assert!(is_mounted(&m.mnt));
    assert_eq!(fs::read(m.path("before")).unwrap(), b"before");
    fs::write(m.path("after"), b"after").unwrap();
    assert_eq!(fs::read(m.path("after")).unwrap(), b"after");
    m.wait_committed();
    assert_eq!(m.status()["mountpoint"], s(&m.mnt));
}

#[test]
fn a_wrong_passphrase_mounts_nothing() {
    let n = Node::with_vault();
    let mnt = n.scratch().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let wrong = n.scratch_file("wrong", b"not the passphrase\n");
    n.cmd()
        .passfile(&wrong)
        .args(["mount", &s(&mnt)])
        .run()
        .failure(ExitCode::WrongPassphrase)
        .stderr_has("passphrase");
    assert!(!is_mounted(&mnt), "mounted despite a wrong passphrase");
    assert!(mnt.is_dir());
    assert_eq!(fs::read_dir(&mnt).unwrap().count(), 0);
    let st = n.ok(["--json", "status"]).json();
    assert_eq!(st["mounted"], false, "{st}");
    // The home is not locked by a leftover daemon.
    n.ok(["vault", "list"]);
}

// ---------------------------------------------------------------------------
// Tampering.

#[test]
fn a_tampered_blob_gives_eio_and_the_rest_still_reads() {
    let mut m = Mounted::new();
    let a = pseudo_random(10_000, 51);
    fs::write(m.path("a"), &a).unwrap();
    fs::write(m.path("b"), b"the b secret").unwrap();
    m.wait_committed();
    m.umount();

    let blob = largest_blob(&m.node.vault_dir("v"));
    let len = fs::metadata(&blob).unwrap().len() as usize;
    assert!(
        len > 10_000 + 58,
        "{} is not a's blob ({len} bytes)",
        blob.display()
    );
    flip_byte(&blob, len / 2);
    let bad = fs::read(&blob).unwrap();

    m.mount(&["--commit-delay", "200ms"]);
    let err = fs::read(m.path("a")).expect_err("a tampered blob must not read");
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    assert_eq!(fs::read(m.path("b")).unwrap(), b"the b secret");
    let st = m.status();
    assert_eq!(st["mounted"], true, "{st}");
    // Once more: the daemon did not fall over on the first refusal.
    let err = fs::read(m.path("a")).expect_err("still tampered");
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    fs::write(m.path("c"), b"still writable").unwrap();
    assert_eq!(fs::read(m.path("c")).unwrap(), b"still writable");
    m.umount();
    assert_eq!(fs::read(&blob).unwrap(), bad, "reading wrote nothing back");
    assert_eq!(m.node.cat("v:c"), b"still writable");
}

// ---------------------------------------------------------------------------
// A full disk.

/// Write one file through the mount: create, write, fsync, close.
fn write_file(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut f = fs::File::create(path)?;
    f.write_all(data)?;
    f.sync_all()?;
    close(f)
}

#[test]
fn a_full_disk_gives_enospc_and_loses_nothing() {
    let node = Node::new();
    let t = TmpfsHome::new(&node, "4m");
    node.ok(["init"]);
    node.ok(["vault", "create", "v"]);
    node.ok(["mount", &s(&t.mnt), "--commit-delay", "200ms"]);
    let v = t.mnt.join("v");
    let first = pseudo_random(100 * 1024, 61);
    write_file(&v.join("first"), &first).unwrap();
    // Opened while there is room, written once the disk is full.
    let mut late = fs::File::create(v.join("late")).unwrap();
    wait_committed(&node);
    let pid = node.ok(["--json", "status"]).json()["pid"]
        .as_i64()
        .unwrap() as i32;

    let mut err = None;
    let mut fillers = Vec::new();
    for i in 0..64 {
        let p = v.join(format!("filler-{i}"));
        fillers.push(p.clone());
        if let Err(e) = write_file(&p, &pseudo_random(256 * 1024, 100 + i)) {
            err = Some(e);
            break;
        }
    }
    let err = err.expect("16 MiB written to a 4 MiB tmpfs without an error");
    assert_eq!(
        err.raw_os_error(),
        Some(libc::ENOSPC),
        "a full disk must give ENOSPC after {} files, got {err}",
        fillers.len()
    );

    // The daemon stays up while the disk is full, across several attempts to
    // commit (one per commit delay, each failing and logging an error to
    // HOME/pkfs.log, which is on the full disk too).
    let up = |when: &str| {
        let o = node.run(["--json", "status"]);
        let st = if o.code == 0 {
            o.json()
        } else {
            serde_json::Value::Null
        };
        assert!(
            st["mounted"] == true && st["pid"] == pid && alive(pid),
            "{when}: the daemon (pid {pid}, alive: {}) died while the disk was full.\n\
             status: exit {}, {st}, {:?}\n\
             (suspect: it logs the failed commit to HOME/pkfs.log on the full disk; \
             tracing-subscriber reports the failed write with eprintln!, which panics \
             on the full stderr, and the panic aborts the daemon)",
            alive(pid),
            o.code,
            o.stderr
        );
    };
    for round in 0..10 {
        up(&format!("round {round} after ENOSPC"));
        std::thread::sleep(Duration::from_millis(200));
    }
    // The first file is intact.
    assert_eq!(fs::read(v.join("first")).unwrap(), first);
    up("after reading the first file");
    // A write to a new file that does not fit fails at once (rather than at
    // the write-back) and leaves the file as it was.
    let late_data = pseudo_random(300 * 1024, 62);
    let err = late.write(&late_data).expect_err("a write on a full disk");
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");
    assert_eq!(late.metadata().unwrap().len(), 0);
    late.sync_all().unwrap();

    // Freeing the space lets it write, commit and unmount cleanly.
    for p in &fillers {
        fs::remove_file(p).unwrap_or_else(|e| panic!("removing {}: {e}", p.display()));
    }
    late.write_all(&late_data).unwrap();
    late.sync_all().unwrap();
    close(late).unwrap();
    assert!(fs::read(v.join("late")).unwrap() == late_data);
    wait_committed(&node);
    node.ok(["umount", &s(&t.mnt)]);
    assert!(!is_mounted(&t.mnt));
    assert_eq!(node.cat("v:first"), first);
    assert_eq!(node.ls("v:"), ["first", "late"]);
}
