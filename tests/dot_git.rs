//! The `.git` rule: no vault may be named `.git` (the CLI exits 8, invalid
//! name; the mount answers EINVAL), and inside a vault it is a name like any
//! other, so a git checkout kept in a vault works through the mount and the
//! CLI alike (`secret import` takes one whole: `cli_secrets_import.rs`).

mod common;

use std::fs;
use std::io::ErrorKind;
use std::path::Path;

use common::mount::Mounted;
use common::*;

fn einval(r: std::io::Result<impl std::fmt::Debug>, what: &str) {
    match r {
        Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EINVAL), "{what}: {e}"),
        Ok(v) => panic!("{what}: accepted ({v:?})"),
    }
}

#[test]
fn dot_git_is_no_vault_name() {
    let n = Node::with_vault();
    n.fail(ExitCode::InvalidName, ["vault", "create", ".git"])
        .stderr_has("reserved");
    n.fail(ExitCode::InvalidName, ["vault", "rename", "v", ".git"]);
    assert_eq!(vault_names(&n), ["v"]);
    n.ok(["vault", "create", ".gitx"]);
}

#[test]
fn the_mount_refuses_a_vault_named_dot_git_and_takes_the_name_inside() {
    let m = Mounted::new();
    let v = m.v();
    fs::write(v.join("f"), b"x").unwrap();
    fs::create_dir(v.join("d")).unwrap();
    einval(fs::create_dir(m.mnt.join(".git")), "a vault named .git");
    einval(
        fs::rename(&v, m.mnt.join(".git")),
        "a vault renamed to .git",
    );
    assert_eq!(
        fs::metadata(m.mnt.join(".git")).unwrap_err().kind(),
        ErrorKind::NotFound
    );
    // Inside a vault every way of making the name works.
    fs::create_dir(v.join(".git")).unwrap();
    fs::write(v.join(".git/HEAD"), b"ref: refs/heads/main\n").unwrap();
    fs::File::create(v.join("d/.git")).unwrap();
    fs::remove_file(v.join("d/.git")).unwrap();
    std::os::unix::fs::symlink("f", v.join("d/.git")).unwrap();
    fs::remove_file(v.join("d/.git")).unwrap();
    fs::hard_link(v.join("f"), v.join("d/.git")).unwrap();
    fs::remove_file(v.join("d/.git")).unwrap();
    fs::rename(v.join("f"), v.join("d/.git")).unwrap();
    fs::write(v.join(".gitignore"), b"ok").unwrap();
    m.wait_committed();
    assert_eq!(m.node.ls("v"), [".git/", ".gitignore", "d/"]);
    // The CLI reads and makes it as well.
    assert_eq!(m.node.cat("v:d/.git"), b"x");
    assert_eq!(m.node.cat("v:.git/HEAD"), b"ref: refs/heads/main\n");
    m.node.ok(["secret", "mkdir", "-p", "v:e/.git/refs"]);
    assert!(Path::new(&v.join("e/.git/refs")).is_dir());
}
