//! The `.git` rule: no vault and no entry anywhere in a vault may be named
//! `.git`. The CLI refuses to make one (exit 8, invalid name), the mount
//! refuses with EINVAL; `secret import` skips one with a notice (in
//! `cli_secrets_import.rs`).

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
fn the_mount_refuses_to_make_dot_git_anywhere() {
    let m = Mounted::new();
    let v = m.v();
    fs::write(v.join("f"), b"x").unwrap();
    fs::create_dir(v.join("d")).unwrap();
    einval(fs::create_dir(m.mnt.join(".git")), "a vault named .git");
    einval(
        fs::rename(&v, m.mnt.join(".git")),
        "a vault renamed to .git",
    );
    for dir in [v.clone(), v.join("d")] {
        let git = dir.join(".git");
        einval(fs::create_dir(&git), "mkdir");
        einval(fs::File::create(&git), "create");
        einval(std::os::unix::fs::symlink("f", &git), "symlink");
        einval(fs::rename(v.join("f"), &git), "rename");
        einval(fs::hard_link(v.join("f"), &git), "link");
        assert_eq!(
            fs::metadata(&git).unwrap_err().kind(),
            ErrorKind::NotFound,
            "{git:?}"
        );
    }
    // Names that only start like it are fine.
    fs::write(v.join(".gitignore"), b"ok").unwrap();
    fs::create_dir(v.join(".git2")).unwrap();
    m.wait_committed();
    assert_eq!(m.node.ls("v"), [".git2/", ".gitignore", "d/", "f"]);
    m.node
        .fail(ExitCode::InvalidName, ["secret", "mkdir", "v:d/.git"]);
    m.node.fail(ExitCode::NotFound, ["secret", "cat", "v:.git"]);
    assert!(!Path::new(&v.join(".git")).exists());
}
