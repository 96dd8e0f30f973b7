//! `pkfs status` run by a user who cannot reach the home: an error with a
//! non-zero exit code, never "not mounted" while a mount is live. Needs root
//! (to become `nobody`).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

use common::mount::Mounted;

use common::users::as_nobody;

#[test]
fn status_says_it_cannot_reach_a_home_it_may_not_enter() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("needs root (to become nobody); skipped");
        return;
    }
    let m = Mounted::new();
    // The home's parent is private to root; the binary is copied where
    // nobody may run it.
    let dir = tempfile::Builder::new()
        .prefix("pkfs-reach-")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = dir.path().join("pkfs");
    std::fs::copy(env!("CARGO_BIN_EXE_pkfs"), &bin).unwrap();
    let status = |json: bool| {
        let mut cmd = Command::new(&bin);
        cmd.env_clear().arg("--home").arg(&m.node.home);
        if json {
            cmd.arg("--json");
        }
        cmd.arg("status");
        as_nobody(&mut cmd);
        cmd.stdin(Stdio::null()).output().unwrap()
    };
    for json in [false, true] {
        let o = status(json);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{o:?}");
        assert!(o.stdout.is_empty(), "{o:?}");
        assert!(
            err.starts_with("pkfs: cannot reach ") && err.contains("ermission denied"),
            "{err}"
        );
    }
    // The owner still sees the mount.
    assert_eq!(m.status()["mounted"], true);
}
