//! Deep trees through the mount: a tree whose backing paths pass PATH_MAX
//! (encrypted names are longer than plaintext ones) is committed, checked out
//! back and forth, fsck'd clean and read through `pkfs secret cat`, and its
//! history passes `git fsck`. Commits, checkouts and fsck reach the backing
//! tree through directory descriptors, never by a full path.
//! Needs root (FUSE mounts).

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::git;
use common::mount::Mounted;

/// `levels` nested directories named `name(i)` under the mounted vault; the
/// plaintext path of the deepest one (relative to the vault).
fn make_deep(m: &Mounted, levels: usize, name: &dyn Fn(usize) -> String) -> (PathBuf, String) {
    let mut rel = String::new();
    for i in 0..levels {
        if !rel.is_empty() {
            rel.push('/');
        }
        rel.push_str(&name(i));
    }
    let dir = m.path(&rel);
    fs::create_dir_all(&dir).unwrap();
    (dir, rel)
}

/// The longest path HEAD's tree holds, in bytes (the backing path, relative
/// to the vault dir).
fn longest_committed_path(vault_dir: &Path) -> usize {
    let o = git(vault_dir, &["ls-tree", "-r", "--name-only", "HEAD"]);
    assert!(o.status.success(), "{o:?}");
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::len)
        .max()
        .unwrap_or(0)
}

/// Everything the issue asks of a deep tree: committed, checked out back and
/// forth, fsck clean (without --restore), read through the CLI, `git fsck`.
fn exercise(levels: usize, name: &dyn Fn(usize) -> String, min_backing: usize) {
    let mut m = Mounted::new();
    let (dir, rel) = make_deep(&m, levels, name);
    let leaf = dir.join("leaf");
    fs::write(&leaf, b"first version").unwrap();
    fs::write(m.path("top"), b"top").unwrap();
    m.wait_committed();
    let vault_dir = m.node.vault_dir("v");
    let longest = longest_committed_path(&vault_dir);
    assert!(
        longest > min_backing,
        "the backing path is only {longest} bytes long"
    );
    let first = m.node.commits("v");
    fs::write(&leaf, b"second version").unwrap();
    fs::write(dir.join("new"), b"made in the second version").unwrap();
    m.wait_committed();
    assert_eq!(m.node.commits("v"), first + 1, "one commit for the change");

    // Back and forth.
    m.node.ok(["version", "checkout", "v", "HEAD~1"]);
    assert_eq!(fs::read(&leaf).unwrap(), b"first version");
    assert!(!dir.join("new").exists());
    m.node.ok(["version", "checkout", "v", "latest"]);
    assert_eq!(fs::read(&leaf).unwrap(), b"second version");
    assert_eq!(
        fs::read(dir.join("new")).unwrap(),
        b"made in the second version"
    );

    // Read through the CLI, with the daemon up and with it down.
    let target = format!("v:{rel}/leaf");
    assert_eq!(m.node.cat(&target), b"second version");
    m.umount();
    assert_eq!(m.node.cat(&target), b"second version");
    let o = m.node.ok(["fsck", "v"]);
    assert!(o.out().contains("v: clean"), "{}", o.out());
    assert!(
        !vault_dir.join(".git/index").exists(),
        "no git index is kept"
    );
    let g = git(&vault_dir, &["fsck", "--strict"]);
    assert!(g.status.success(), "{g:?}");

    // A rename of the top of the tree moves every level: committed whole.
    m.mount(&["--commit-delay", "200ms"]);
    let top = rel.split('/').next().unwrap().to_string();
    fs::rename(m.path(&top), m.path("moved")).unwrap();
    m.wait_committed();
    let moved = format!("v:moved/{}/leaf", &rel[top.len() + 1..]);
    assert_eq!(m.node.cat(&moved), b"second version");
    m.umount();
    let o = m.node.ok(["fsck", "v"]);
    assert!(o.out().contains("v: clean"), "{}", o.out());
    let g = git(&vault_dir, &["fsck", "--strict"]);
    assert!(g.status.success(), "{g:?}");
}

#[test]
fn a_120_level_tree_of_short_names_is_committed_checked_out_fscked_and_read() {
    exercise(120, &|_| "dd".to_string(), 4096);
}

#[test]
fn a_16_level_tree_of_200_byte_names_is_committed_checked_out_fscked_and_read() {
    exercise(16, &|i| format!("{i:03}{}", "n".repeat(197)), 400);
}

/// `mkdirat`/`openat` relative to `fd`: the plaintext path itself passes
/// PATH_MAX long before the limit is reached.
fn mkdir_at(fd: i32, name: &str) -> Result<(), i32> {
    let c = std::ffi::CString::new(name).unwrap();
    // SAFETY: an open directory descriptor and a valid C string.
    if unsafe { libc::mkdirat(fd, c.as_ptr(), 0o755) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    }
}

fn open_at(fd: i32, name: &str, flags: i32) -> Result<i32, i32> {
    let c = std::ffi::CString::new(name).unwrap();
    // SAFETY: as above; the result is checked.
    let r = unsafe { libc::openat(fd, c.as_ptr(), flags | libc::O_CLOEXEC, 0o644) };
    if r >= 0 {
        Ok(r)
    } else {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    }
}

#[test]
fn an_entry_deeper_than_the_history_holds_is_refused_with_enametoolong() {
    use std::os::unix::ffi::OsStrExt;
    let mut m = Mounted::new();
    let v = std::ffi::CString::new(m.v().as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid C string; the result is checked.
    let mut fd = unsafe { libc::open(v.as_ptr(), libc::O_DIRECTORY | libc::O_RDONLY) };
    assert!(fd >= 0);
    let mut levels = 0;
    let refused = loop {
        match mkdir_at(fd, "dd") {
            Ok(()) => {}
            Err(e) => break e,
        }
        let next = open_at(fd, "dd", libc::O_DIRECTORY | libc::O_RDONLY).unwrap();
        // SAFETY: closing a descriptor this test opened.
        unsafe { libc::close(fd) };
        fd = next;
        levels += 1;
        assert!(levels < 10_000, "no limit");
    };
    assert_eq!(refused, libc::ENAMETOOLONG, "after {levels} levels");
    assert!(levels > 1000, "refused after only {levels} levels");
    // Neither a file, a symlink nor a rename may land there either.
    let file = open_at(fd, "f", libc::O_CREAT | libc::O_WRONLY);
    assert_eq!(file.err(), Some(libc::ENAMETOOLONG));
    // SAFETY: closing a descriptor this test opened.
    unsafe { libc::close(fd) };
    // What was taken is committed and checks clean.
    m.wait_committed();
    m.umount();
    let o = m.node.ok(["fsck", "v"]);
    assert!(o.out().contains("v: clean"), "{}", o.out());
}
