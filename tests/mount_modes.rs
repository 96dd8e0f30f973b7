//! Modes set through the mount never shut the daemon out of its own data.
//! The daemon runs without CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH (as an
//! ordinary user would), so the backing entries' modes bind it: `chmod 600`
//! on a directory or `chmod 000`/`chmod 200` on a file must still leave every
//! commit, the unmount and the next mount working, and the modes are shown
//! as set, across mounts.

mod common;

use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use common::mount;
use common::*;

/// `pkfs ARGS` on node `n` without the capabilities that pass over modes.
fn pkfs_unprivileged(n: &Node, args: &[&str]) -> std::process::Output {
    let mut c = Command::new("setpriv");
    c.args([
        "--inh-caps=-dac_override,-dac_read_search",
        "--bounding-set=-dac_override,-dac_read_search",
        "--",
        BIN,
        "--home",
    ])
    .arg(&n.home)
    .arg("--passfile")
    .arg(&n.passfile)
    .args(args);
    clean_env(&mut c);
    c.env("PKFS_TEST_ONLY_FAST_KDF", "1").output().unwrap()
}

fn ok(n: &Node, args: &[&str]) -> String {
    let o = pkfs_unprivileged(n, args);
    assert!(o.status.success(), "pkfs {args:?}: {o:?}");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[track_caller]
fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().mode() & 0o7777
}

#[track_caller]
fn chmod(p: &Path, m: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
}

/// Wait until the mount has committed everything, and show no error.
fn wait_committed(n: &Node) {
    for _ in 0..300 {
        let s: serde_json::Value = serde_json::from_str(&ok(n, &["--json", "status"])).unwrap();
        let v = &s["vaults"][0];
        assert!(v["last_error"].is_null(), "commit failed: {s}");
        if v["pending_changes"].as_u64() == Some(0) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("changes not committed");
}

/// Detaches the mount if the test fails half-way.
struct Unmount<'a>(&'a Path);

impl Drop for Unmount<'_> {
    fn drop(&mut self) {
        if mount::is_mounted(self.0) {
            let _ = Command::new("umount").arg("-l").arg(self.0).status();
        }
    }
}

#[test]
fn modes_that_shut_the_owner_out_do_not_block_commits_or_unmount() {
    common::need("setpriv");
    common::need("fusermount3");
    let n = Node::with_vault();
    let mnt = n.scratch().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let m = mnt.to_str().unwrap();
    let _guard = Unmount(&mnt);
    ok(&n, &["mount", m, "--commit-delay", "100ms"]);
    let v = mnt.join("v");
    std::fs::create_dir(v.join("d")).unwrap();
    std::fs::write(v.join("d/f"), "IMPORTANT\n").unwrap();
    std::fs::write(v.join("g"), "no access\n").unwrap();
    std::fs::write(v.join("h"), "write only\n").unwrap();
    wait_committed(&n);
    chmod(&v.join("d"), 0o600);
    chmod(&v.join("g"), 0o000);
    chmod(&v.join("h"), 0o200);
    assert_eq!(mode(&v.join("d")), 0o600);
    assert_eq!(mode(&v.join("g")), 0o000);
    assert_eq!(mode(&v.join("h")), 0o200);
    // A change inside after the chmod, entries made with such modes, and a
    // commit of it all.
    std::fs::write(v.join("e"), "later\n").unwrap();
    std::fs::DirBuilder::new()
        .mode(0o000)
        .create(v.join("z"))
        .unwrap();
    let mut w = std::fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o000)
        .open(v.join("w"))
        .unwrap();
    std::io::Write::write_all(&mut w, b"made 000\n").unwrap();
    drop(w);
    assert_eq!(mode(&v.join("z")), 0o000);
    assert_eq!(mode(&v.join("w")), 0o000);
    wait_committed(&n);
    ok(&n, &["umount", m]);

    ok(&n, &["mount", m, "--commit-delay", "100ms"]);
    assert_eq!(mode(&v.join("d")), 0o600, "kept across mounts");
    assert_eq!(mode(&v.join("g")), 0o000);
    assert_eq!(mode(&v.join("h")), 0o200);
    assert_eq!(mode(&v.join("z")), 0o000);
    assert_eq!(mode(&v.join("w")), 0o000);
    chmod(&v.join("d"), 0o700);
    chmod(&v.join("g"), 0o644);
    assert_eq!(mode(&v.join("d")), 0o700);
    assert_eq!(
        std::fs::read_to_string(v.join("d/f")).unwrap(),
        "IMPORTANT\n"
    );
    assert_eq!(std::fs::read_to_string(v.join("g")).unwrap(), "no access\n");
    wait_committed(&n);
    ok(&n, &["umount", m]);
    // Nothing was moved aside, and the history is whole.
    assert_eq!(ok(&n, &["quarantine", "list"]), "");
    ok(&n, &["fsck", "v"]);
    assert_eq!(ok(&n, &["secret", "cat", "v:d/f"]), "IMPORTANT\n");
    assert_eq!(ok(&n, &["secret", "cat", "v:e"]), "later\n");
    assert_eq!(ok(&n, &["secret", "cat", "v:w"]), "made 000\n");
}
