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

/// The backing files and directories of `contents/` (not its reserved files).
fn backing_entries(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        if e.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let t = e.file_type().unwrap();
        if t.is_dir() {
            backing_entries(&e.path(), out);
        }
        if t.is_dir() || t.is_file() {
            out.push(e.path());
        }
    }
}

fn fsck_json(n: &Node, args: &[&str]) -> (i32, serde_json::Value) {
    let mut all = vec!["--json", "fsck"];
    all.extend_from_slice(args);
    let o = pkfs_unprivileged(n, &all);
    let v = serde_json::from_slice(&o.stdout).unwrap_or(serde_json::Value::Null);
    (o.status.code().unwrap_or(-1), v)
}

fn finding_kinds(report: &serde_json::Value) -> Vec<String> {
    let mut out = Vec::new();
    for f in report["findings"].as_array().into_iter().flatten() {
        out.push(format!(
            "{} {}",
            f["kind"].as_str().unwrap_or(""),
            f["path"]
        ));
    }
    out
}

#[test]
fn modes_are_in_the_history_and_come_back_with_each_version() {
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
    std::fs::create_dir(v.join("e")).unwrap();
    std::fs::write(v.join("e/g"), "in e\n").unwrap();
    std::fs::write(v.join("h"), "h\n").unwrap();
    std::fs::write(v.join("x"), "x\n").unwrap();
    chmod(&v.join("h"), 0o640);
    chmod(&v.join("d"), 0o711);
    chmod(&v.join("d/f"), 0o000);
    chmod(&v.join("e"), 0o600);
    chmod(&v.join("x"), 0o4755);
    chmod(&v, 0o750);
    // A directory shut to writes, whose file changes between versions: the
    // checkout must still replace it.
    std::fs::create_dir(v.join("r")).unwrap();
    std::fs::write(v.join("r/k"), "one\n").unwrap();
    chmod(&v.join("r"), 0o555);
    wait_committed(&n);
    std::fs::write(v.join("r/k"), "two\n").unwrap();
    chmod(&v.join("r"), 0o755);
    std::fs::write(v.join("r/n"), "new\n").unwrap();
    chmod(&v.join("r"), 0o555);
    // A second version with other modes.
    chmod(&v.join("h"), 0o604);
    chmod(&v.join("d/f"), 0o444);
    chmod(&v.join("e"), 0o750);
    std::fs::rename(v.join("x"), v.join("d/y")).unwrap();
    wait_committed(&n);
    let second = [
        ("h", 0o604),
        ("d", 0o711),
        ("d/f", 0o444),
        ("e", 0o750),
        ("", 0o750),
    ];
    let first = [("h", 0o640), ("d", 0o711), ("d/f", 0o000), ("e", 0o600)];
    let check = |want: &[(&str, u32)], when: &str| {
        for (p, md) in want {
            assert_eq!(mode(&v.join(p)), *md, "{p} {when}");
        }
    };
    check(&second, "before any checkout");
    ok(&n, &["version", "checkout", "v", "HEAD~1"]);
    check(&first, "in the older version");
    assert_eq!(mode(&v.join("x")), 0o4755, "set-id bits are kept too");
    assert_eq!(std::fs::read_to_string(v.join("e/g")).unwrap(), "in e\n");
    assert_eq!(std::fs::read_to_string(v.join("r/k")).unwrap(), "one\n");
    assert!(!v.join("r/n").exists());
    assert_eq!(mode(&v.join("r")), 0o555);
    ok(&n, &["version", "checkout", "v", "latest"]);
    check(&second, "back at the latest version");
    assert_eq!(std::fs::read_to_string(v.join("r/k")).unwrap(), "two\n");
    assert_eq!(std::fs::read_to_string(v.join("r/n")).unwrap(), "new\n");
    assert_eq!(mode(&v.join("r")), 0o555);
    assert_eq!(mode(&v.join("d/y")), 0o4755, "a rename keeps the mode");
    ok(&n, &["umount", m]);
    ok(&n, &["mount", m, "--commit-delay", "100ms"]);
    check(&second, "after a remount");
    ok(&n, &["version", "checkout", "v", "HEAD~1"]);
    ok(&n, &["version", "checkout", "v", "latest"]);
    check(&second, "after a round trip in a new mount");
    ok(&n, &["umount", m]);
    let (code, report) = fsck_json(&n, &["v"]);
    assert_eq!(code, 0, "{report}");
    // Without the mount: the CLI reads through the modes.
    assert_eq!(ok(&n, &["secret", "cat", "v:d/f"]), "IMPORTANT\n");
}

#[test]
fn tampered_modes_and_records_are_reported_and_never_applied() {
    common::need("setpriv");
    common::need("fusermount3");
    let n = Node::with_vault();
    let mnt = n.scratch().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let m = mnt.to_str().unwrap();
    let _guard = Unmount(&mnt);
    ok(&n, &["mount", m, "--commit-delay", "100ms"]);
    let v = mnt.join("v");
    std::fs::write(v.join("f"), "f\n").unwrap();
    chmod(&v.join("f"), 0o640);
    wait_committed(&n);
    ok(&n, &["umount", m]);
    let contents = n.vault_dir("v").join("contents");
    let record = contents.join(".pkfs-modes");
    let committed = std::fs::read(&record).unwrap();

    // A mode changed at rest is a finding, and --restore sets it back.
    let mut entries = Vec::new();
    backing_entries(&contents, &mut entries);
    assert_eq!(entries.len(), 1, "{entries:?}");
    chmod(&entries[0], 0o666);
    let (code, report) = fsck_json(&n, &["v"]);
    assert_eq!(code, 12, "{report}");
    assert_eq!(finding_kinds(&report), ["mode-changed \"f\""], "{report}");
    let (code, report) = fsck_json(&n, &["--restore", "v"]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(mode(&entries[0]) & 0o777, 0o640);

    // A record changed at rest is a finding, and is not what a checkout
    // applies: the committed one is.
    let mut forged = committed.clone();
    let last = forged.len() - 1;
    forged[last] ^= 0x01;
    std::fs::write(&record, &forged).unwrap();
    let (code, report) = fsck_json(&n, &["v"]);
    assert_eq!(code, 12, "{report}");
    let kinds = finding_kinds(&report);
    assert!(kinds.iter().any(|k| k.starts_with("modified")), "{kinds:?}");
    // An older record put back in place of the new one is the same case.
    ok(&n, &["mount", m, "--commit-delay", "100ms"]);
    assert_eq!(mode(&v.join("f")), 0o640);
    ok(&n, &["version", "checkout", "v", "HEAD~1"]);
    ok(&n, &["version", "checkout", "v", "latest"]);
    assert_eq!(mode(&v.join("f")), 0o640);
    ok(&n, &["umount", m]);
    assert_eq!(std::fs::read(&record).unwrap(), committed);
    let (code, report) = fsck_json(&n, &["v"]);
    assert_eq!(code, 0, "{report}");
}
