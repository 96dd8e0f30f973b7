//! Every version of a vault, read-only in the mount under `VAULT/.versions`:
//! hidden from listings but reachable by name, commits newest first with
//! their times as mtimes, `HEAD~N`, `latest` and `by-time/<moment>`, old
//! content, modes and symlinks as they were, EROFS on any change, and the
//! reserved name refused at a vault's top level.

mod common;

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::mount::Mounted;
use common::*;

fn names_in_order(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// `secs` as ISO-8601 UTC (`YYYY-MM-DDThh:mm:ss`), by date(1).
fn iso(secs: i64) -> String {
    let out = Command::new("date")
        .args(["-u", "-d", &format!("@{secs}"), "+%Y-%m-%dT%H:%M:%S"])
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn errno_of(r: std::io::Result<impl std::fmt::Debug>) -> i32 {
    match r {
        Ok(x) => panic!("expected an error, got {x:?}"),
        Err(e) => e.raw_os_error().unwrap_or(0),
    }
}

/// The vault's versions, newest first: (full id, commit time).
fn versions(m: &Mounted) -> Vec<(String, i64)> {
    m.node
        .log("v", false)
        .iter()
        .map(|e| {
            (
                e["id"].as_str().unwrap().to_string(),
                e["time"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// Wait until the next second, so that the next commit's time differs.
fn next_second() {
    std::thread::sleep(Duration::from_millis(1100));
}

/// A vault with two versions made through the mount: the first with `f`,
/// `d/nested`, a symlink and two files of set modes (copied out to `copy`
/// while live), the second changing `f` and adding `later`.
fn two_versions() -> (Mounted, std::path::PathBuf) {
    let m = Mounted::new();
    next_second();
    fs::write(m.path("f"), b"one").unwrap();
    fs::create_dir(m.path("d")).unwrap();
    fs::write(m.path("d/nested"), b"nested one").unwrap();
    std::os::unix::fs::symlink("f", m.path("ln")).unwrap();
    fs::write(m.path("private"), b"private").unwrap();
    fs::set_permissions(m.path("private"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(m.path("shared"), b"shared").unwrap();
    fs::set_permissions(m.path("shared"), fs::Permissions::from_mode(0o640)).unwrap();
    m.wait_committed();
    let copy = m.node.scratch().join("copy-one");
    let st = Command::new("cp")
        .arg("-a")
        .arg(m.v())
        .arg(&copy)
        .status()
        .unwrap();
    assert!(st.success());
    next_second();
    fs::write(m.path("f"), b"two").unwrap();
    fs::write(m.path("later"), b"added later").unwrap();
    m.wait_committed();
    (m, copy)
}

#[test]
fn versions_are_hidden_listed_newest_first_and_read_as_they_were() {
    let (m, copy) = two_versions();
    let dot = m.path(".versions");

    // Not listed, but there.
    let live = names_in_order(&m.v());
    assert!(!live.iter().any(|n| n == ".versions"), "{live:?}");
    assert!(fs::metadata(&dot).unwrap().is_dir());

    // Commits newest first, with their times as mtimes; then the names.
    let log = versions(&m);
    assert!(log.len() >= 2, "{log:?}");
    let listed = names_in_order(&dot);
    let shorts: Vec<String> = log.iter().map(|(id, _)| id[..8].to_string()).collect();
    assert_eq!(listed[..shorts.len()], shorts[..], "{listed:?}");
    assert_eq!(listed[shorts.len()..], ["latest", "by-time"], "{listed:?}");
    for (short, (_, time)) in shorts.iter().zip(&log) {
        assert_eq!(fs::metadata(dot.join(short)).unwrap().mtime(), *time);
    }
    assert_eq!(fs::metadata(&dot).unwrap().mtime(), log[0].1);

    // Old and new content, by alias and by id.
    assert_eq!(fs::read(dot.join("HEAD~1/f")).unwrap(), b"one");
    assert_eq!(fs::read(dot.join("latest/f")).unwrap(), b"two");
    assert_eq!(fs::read(dot.join("HEAD/later")).unwrap(), b"added later");
    assert_eq!(fs::read(dot.join(&shorts[1]).join("f")).unwrap(), b"one");
    assert_eq!(
        errno_of(fs::metadata(dot.join("HEAD~1/later"))),
        libc::ENOENT
    );
    assert_eq!(
        fs::read(dot.join(&shorts[1]).join("d/nested")).unwrap(),
        b"nested one"
    );
    let f = fs::metadata(dot.join("HEAD~1/f")).unwrap();
    assert_eq!((f.len(), f.mtime()), (3, log[1].1));

    // A symlink and modes as they were.
    assert_eq!(
        fs::read_link(dot.join("HEAD~1/ln")).unwrap(),
        Path::new("f")
    );
    let mode = |p: &str| fs::symlink_metadata(dot.join(p)).unwrap().mode() & 0o7777;
    assert_eq!(mode("HEAD~1/private"), 0o600);
    assert_eq!(mode("HEAD~1/shared"), 0o640);

    // The whole old version equals the copy taken when it was live, and
    // the latest the live tree.
    let diff = |a: &Path, b: &Path| {
        let o = Command::new("/usr/bin/diff")
            .arg("-r")
            .arg(a)
            .arg(b)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "diff -r {} {}:\n{}{}",
            a.display(),
            b.display(),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    };
    diff(&dot.join(&shorts[1]), &copy);
    diff(&dot.join("latest"), &m.v());
    // ... and not the other one.
    let o = Command::new("/usr/bin/diff")
        .arg("-r")
        .arg(dot.join("latest"))
        .arg(&copy)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn by_time_finds_the_version_current_at_a_moment() {
    let (m, _copy) = two_versions();
    let by = m.path(".versions/by-time");
    let log = versions(&m);
    let (first, newest) = (log[log.len() - 1].1, log[0].1);
    let older = log[1].1;
    assert!(older < newest, "{log:?}");

    // Before the first version: nothing.
    assert_eq!(
        errno_of(fs::metadata(by.join(iso(first - 1)))),
        libc::ENOENT
    );
    assert_eq!(errno_of(fs::metadata(by.join("1999"))), libc::ENOENT);
    // Exactly at a commit's time, and between two commits.
    assert_eq!(fs::read(by.join(iso(older)).join("f")).unwrap(), b"one");
    assert_eq!(
        fs::read(by.join(iso(newest - 1)).join("f")).unwrap(),
        b"one"
    );
    assert_eq!(fs::read(by.join(iso(newest)).join("f")).unwrap(), b"two");
    // A prefix stands for its start; a moment far ahead is the latest.
    let minute = &iso(newest + 60)[..16];
    assert_eq!(fs::read(by.join(minute).join("f")).unwrap(), b"two");
    assert_eq!(fs::read(by.join("2999-01-01/f")).unwrap(), b"two");
    // Not a moment.
    assert_eq!(errno_of(fs::metadata(by.join("yesterday"))), libc::ENOENT);
}

#[test]
fn nothing_in_a_version_can_change_and_the_name_is_reserved() {
    let (m, _copy) = two_versions();
    let v1 = m.path(".versions/HEAD~1");

    assert_eq!(errno_of(fs::write(v1.join("f"), b"x")), libc::EROFS);
    assert_eq!(errno_of(fs::write(v1.join("new"), b"x")), libc::EROFS);
    assert_eq!(errno_of(fs::create_dir(v1.join("dir"))), libc::EROFS);
    assert_eq!(errno_of(fs::remove_file(v1.join("f"))), libc::EROFS);
    assert_eq!(errno_of(fs::remove_dir(v1.join("d"))), libc::EROFS);
    assert_eq!(
        errno_of(fs::rename(v1.join("f"), v1.join("g"))),
        libc::EROFS
    );
    assert_eq!(
        errno_of(fs::set_permissions(
            v1.join("f"),
            fs::Permissions::from_mode(0o644)
        )),
        libc::EROFS
    );
    assert_eq!(
        errno_of(std::os::unix::fs::symlink("x", v1.join("s"))),
        libc::EROFS
    );
    // Extended attributes: none kept, none to set.
    let c = |p: &Path| std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    let (file, name) = (c(&v1.join("f")), c(Path::new("user.x")));
    // SAFETY: NUL-terminated paths and names, a 1-byte value we own.
    let set = unsafe { libc::setxattr(file.as_ptr(), name.as_ptr(), b"v".as_ptr().cast(), 1, 0) };
    assert_eq!(
        (set, std::io::Error::last_os_error().raw_os_error()),
        (-1, Some(libc::EROFS))
    );
    // SAFETY: as above; a null buffer of size 0 asks for the length.
    let listed = unsafe { libc::listxattr(file.as_ptr(), std::ptr::null_mut(), 0) };
    assert_eq!(listed, 0);
    // Further back than the history goes.
    assert_eq!(
        errno_of(fs::metadata(m.path(".versions/HEAD~99"))),
        libc::ENOENT
    );
    // Nothing changed: still one, still 0600.
    assert_eq!(fs::read(v1.join("f")).unwrap(), b"one");
    assert_eq!(
        fs::metadata(v1.join("private")).unwrap().mode() & 0o7777,
        0o600
    );

    // `.versions` at the top cannot be made, replaced or removed.
    assert!(fs::create_dir(m.path(".versions")).is_err());
    fs::create_dir(m.path("dir")).unwrap();
    assert_eq!(
        errno_of(fs::rename(m.path("dir"), m.path(".versions"))),
        libc::EINVAL
    );
    assert_eq!(errno_of(fs::remove_dir(m.path(".versions"))), libc::EROFS);
    // Below the top the name is an ordinary one.
    fs::create_dir(m.path("dir/.versions")).unwrap();
    assert!(m.path("dir/.versions").is_dir());
    // The CLI refuses it too, with the reason.
    m.node
        .cmd()
        .args(["secret", "write", "v:.versions"])
        .stdin(b"x".to_vec())
        .run()
        .failure(ExitCode::InvalidName)
        .stderr_has("reserved");
    // An import that would make it at the top is refused before it writes
    // anything; below the top it is an ordinary name.
    let src = m.node.scratch().join("import");
    fs::create_dir_all(src.join(".versions")).unwrap();
    fs::write(src.join(".versions/x"), b"x").unwrap();
    fs::write(src.join("y"), b"y").unwrap();
    let src = src.display().to_string();
    m.node
        .fail(ExitCode::InvalidName, ["secret", "import", &src, "v"])
        .stderr_has("reserved");
    assert!(!m.path("y").exists());
    m.node.ok(["secret", "import", &src, "v:sub"]);
    assert_eq!(fs::read(m.path("sub/.versions/x")).unwrap(), b"x");
    // The live vault is as it was.
    assert_eq!(fs::read(m.path("f")).unwrap(), b"two");
    let live = names_in_order(&m.v());
    assert!(!live.iter().any(|n| n == ".versions"), "{live:?}");
    assert!(matches!(
        fs::metadata(m.path(".versions/nope")).map_err(|e| e.kind()),
        Err(ErrorKind::NotFound)
    ));
}

#[test]
fn discarded_versions_are_listed_apart() {
    let (m, _copy) = two_versions();
    let dot = m.path(".versions");
    let latest = versions(&m)[0].0.clone();
    let short = &latest[..8];
    assert!(!dot.join("discarded").exists());

    // A write at an older version discards the later one.
    m.node.ok(["version", "checkout", "v", "HEAD~1"]);
    fs::write(m.path("new"), b"written at an older version").unwrap();
    m.wait_committed();
    let log = versions(&m);
    assert!(log.iter().all(|(id, _)| *id != latest), "{log:?}");

    // Out of the main list, under discarded/ with its content.
    let listed = names_in_order(&dot);
    assert!(!listed.iter().any(|n| n == short), "{listed:?}");
    assert_eq!(listed.last().map(String::as_str), Some("discarded"));
    assert_eq!(names_in_order(&dot.join("discarded")), [short]);
    assert_eq!(
        fs::read(dot.join("discarded").join(short).join("f")).unwrap(),
        b"two"
    );
    assert_eq!(errno_of(fs::metadata(dot.join(short))), libc::ENOENT);
    // `latest` and HEAD follow the new version at once.
    assert_eq!(
        fs::read(dot.join("latest/new")).unwrap(),
        b"written at an older version"
    );
    assert_eq!(fs::read(dot.join("HEAD/f")).unwrap(), b"one");
}

#[test]
fn sparse_files_long_and_odd_names_read_as_they_were() {
    use std::io::{Seek, SeekFrom, Write};
    use std::os::unix::ffi::OsStrExt;
    let m = Mounted::new();
    // A file with a long run of hole pages between two written ones.
    let mut f = fs::File::create(m.path("sparse")).unwrap();
    f.write_all(b"start").unwrap();
    f.seek(SeekFrom::Start(3 << 20)).unwrap();
    f.write_all(b"end").unwrap();
    drop(f);
    let long = "l".repeat(255);
    fs::write(m.path(&long), b"long name").unwrap();
    let odd = std::ffi::OsStr::from_bytes(b"odd-\xff-name");
    fs::write(m.v().join(odd), b"odd name").unwrap();
    m.wait_committed();
    // Change them all, so the version read is not the live one.
    fs::write(m.path("sparse"), b"dense now").unwrap();
    fs::write(m.path(&long), b"changed").unwrap();
    fs::write(m.v().join(odd), b"changed").unwrap();
    m.wait_committed();

    let old = m.path(".versions/HEAD~1");
    let data = fs::read(old.join("sparse")).unwrap();
    assert_eq!(data.len(), (3 << 20) + 3);
    assert_eq!(&data[..5], b"start");
    assert_eq!(&data[3 << 20..], b"end");
    assert!(data[5..3 << 20].iter().all(|b| *b == 0));
    // A version's file is all data to SEEK_DATA / SEEK_HOLE.
    {
        use std::os::fd::AsRawFd;
        let f = fs::File::open(old.join("sparse")).unwrap();
        // SAFETY: a valid descriptor; the results are only compared.
        let (data_at, hole_at) = unsafe {
            (
                libc::lseek(f.as_raw_fd(), 10, libc::SEEK_DATA),
                libc::lseek(f.as_raw_fd(), 10, libc::SEEK_HOLE),
            )
        };
        assert_eq!((data_at, hole_at), (10, (3 << 20) + 3));
    }
    assert_eq!(fs::read(old.join(&long)).unwrap(), b"long name");
    assert_eq!(fs::read(old.join(odd)).unwrap(), b"odd name");
    let mut listed = names_in_order(&old);
    listed.sort();
    assert!(listed.contains(&long), "{listed:?}");
    assert!(
        listed.contains(&"odd-\u{fffd}-name".to_string()),
        "{listed:?}"
    );
    assert!(listed.contains(&"sparse".to_string()), "{listed:?}");
    assert_eq!(
        fs::read(m.path(".versions/latest/sparse")).unwrap(),
        b"dense now"
    );
}

/// A bench figure, not a timed test: `PKFS_BENCH_FILES=100000 cargo test
/// --test mount_versions -- --ignored --nocapture` (README, "Benchmarks"). Prints the
/// time of a first `ls` of one directory and a first read of one file there,
/// live and in the version before the latest.
#[test]
#[ignore]
fn bench_one_directory_and_one_file_live_and_in_a_version() {
    use std::time::Instant;
    let files: usize = std::env::var("PKFS_BENCH_FILES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let dirs = 100;
    let node = Node::with_vault();
    let src = node.scratch().join("src");
    for d in 0..dirs {
        let dir = src.join(format!("d{d:03}"));
        fs::create_dir_all(&dir).unwrap();
        for i in 0..files / dirs {
            fs::write(dir.join(format!("f{i:05}")), format!("file {d} {i}\n")).unwrap();
        }
    }
    node.ok(["secret", "import", &src.display().to_string(), "v"]);
    let mut m = Mounted::unmounted(node);
    m.mount(&["--commit-delay", "200ms"]);
    fs::write(m.path("d000/f00000"), b"changed\n").unwrap();
    m.wait_committed();
    m.umount();
    m.mount(&["--commit-delay", "200ms"]);

    let time = |what: &str, dir: &Path| {
        // Once per mount: open the history, authenticate the commit.
        let t = Instant::now();
        fs::metadata(dir).unwrap();
        let first = t.elapsed();
        let t = Instant::now();
        let n = fs::read_dir(dir.join("d042")).unwrap().count();
        let ls = t.elapsed();
        let t = Instant::now();
        let data = fs::read(dir.join("d042/f00007")).unwrap();
        let read = t.elapsed();
        assert_eq!(data, b"file 42 7\n");
        println!("{what}: first stat {first:?}, ls of {n} entries {ls:?}, first read {read:?}");
    };
    time("live", &m.v());
    time(".versions/HEAD~1", &m.path(".versions/HEAD~1"));
}

#[test]
fn a_read_only_mount_has_them_too() {
    let node = Node::with_vault();
    node.write("v:x", b"first");
    next_second();
    node.write("v:x", b"second");
    let mut m = Mounted::unmounted(node);
    m.mount(&["--ro"]);
    assert_eq!(fs::read(m.path(".versions/HEAD~1/x")).unwrap(), b"first");
    assert_eq!(fs::read(m.path(".versions/latest/x")).unwrap(), b"second");
    assert_eq!(
        errno_of(fs::write(m.path(".versions/latest/x"), b"x")),
        libc::EROFS
    );
}
