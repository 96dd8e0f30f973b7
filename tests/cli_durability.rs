//! What a power cut (or someone with write access to the home) can do to a
//! vault's git files, and how pkfs keeps acknowledged data and history:
//! refs and HEAD repaired from the version record, an index or a loose
//! object left empty, and a checkout that must not discard pending changes.

mod common;

use std::fs;
use std::io::Write;

use common::tamper::*;
use common::*;

/// The sequence: a secret rolled back at rest, then main deleted to
/// switch rollback detection off. The ref is repaired from the version
/// record: the old secret is never served, and the next write keeps the
/// whole history.
#[test]
fn deleting_main_after_a_rollback_never_serves_the_old_secret() {
    let mut v = Vault::new();
    v.write("pw", b"OLD-PASSWORD\n");
    let old = fs::read(v.blob("pw")).unwrap();
    v.write("pw", b"NEW-PASSWORD\n");
    let commits = v.node().commits("v");
    fs::write(v.blob("pw"), &old).unwrap();
    v.node().fail(ExitCode::Corrupt, ["secret", "cat", "v:pw"]);
    fs::remove_file(v.dir.join(".git/refs/heads/main")).unwrap();
    let o = v.node().run(["secret", "cat", "v:pw"]);
    assert_eq!(o.code, ExitCode::Corrupt as i32, "{}", o.stderr);
    assert!(o.stdout.is_empty() && o.stderr.contains("repaired: main was missing"));
    assert!(v.dir.join(".git/refs/heads/main").is_file());
    // HEAD pointed at a branch that does not exist: the same.
    fs::write(v.dir.join(".git/HEAD"), b"ref: refs/heads/nope\n").unwrap();
    let o = v.node().run(["secret", "cat", "v:pw"]);
    assert_eq!(o.code, ExitCode::Corrupt as i32, "{}", o.stderr);
    assert!(o.stdout.is_empty() && o.stderr.contains("repaired: HEAD"));
    // The next write continues the history, and fsck still sees the rollback.
    v.node().write("v:other", b"x");
    assert_eq!(v.node().commits("v"), commits + 1);
    let kinds = v.assert_finding("pw");
    assert_eq!(kinds, ["modified-since-commit"]);
    let (rc, out) = v.restore();
    assert_eq!(rc, 0, "{out}");
    assert_eq!(v.node().cat("v:pw"), b"NEW-PASSWORD\n");
    v.assert_clean();
}

/// A vault whose main is gone and that has no version record to repair it
/// from is refused as corrupt: pkfs never starts a second history.
#[test]
fn no_record_and_no_main_refuses_the_vault() {
    let v = Vault::new();
    let commits = v.node().commits("v");
    let tip = fs::read(v.dir.join(".git/refs/heads/main")).unwrap();
    fs::remove_file(v.dir.join("version")).unwrap();
    fs::remove_file(v.dir.join(".git/refs/heads/main")).unwrap();
    let o = v
        .node()
        .fail(ExitCode::Corrupt, ["secret", "cat", "v:a.txt"]);
    assert!(o.stderr.contains("version record"), "{}", o.stderr);
    v.node()
        .cmd()
        .args(["secret", "write", "v:new"])
        .stdin(b"x".to_vec())
        .run()
        .failure(ExitCode::Corrupt);
    assert!(!v.dir.join(".git/refs/heads/main").exists());
    // Put main back by hand: everything is there, in one history.
    fs::write(v.dir.join(".git/refs/heads/main"), &tip).unwrap();
    let roots = git(&v.dir, &["rev-list", "--all", "--max-parents=0"]);
    assert_eq!(String::from_utf8_lossy(&roots.stdout).lines().count(), 1);
    assert_eq!(v.node().commits("v"), commits);
    v.assert_all_readable();
}

/// `.git/index` or `.git/HEAD` left empty by a cut: the next open repairs
/// it, `fsck` says so, and the vault reads and commits as before.
#[test]
fn an_empty_index_or_head_is_repaired_at_open_and_reported() {
    for file in ["index", "HEAD"] {
        let v = Vault::new();
        let commits = v.node().commits("v");
        fs::write(v.dir.join(".git").join(file), b"").unwrap();
        let o = v.node().ok(["fsck", "v"]);
        assert!(
            o.out().contains("v: repaired at open: "),
            "{file}: {}",
            o.out()
        );
        assert!(o.out().contains("v: clean"), "{file}: {}", o.out());
        v.assert_all_readable();
        v.node().write("v:after", b"after the cut");
        assert_eq!(v.node().commits("v"), commits + 1, "{file}");
        v.assert_clean();
        v.assert_all_readable();
        assert!(
            git(&v.dir, &["fsck", "--strict"]).status.success(),
            "{file}"
        );
    }
}

/// A loose object a cut left empty is not taken as present: the commit that
/// stages the same blob again rewrites it, and `git fsck` passes.
#[test]
fn a_zero_byte_loose_object_is_rewritten_not_trusted() {
    let v = Vault::new();
    let id = v.hash_object(v.blob("a.txt"));
    let loose = v.loose_object(&id);
    fs::remove_file(&loose).unwrap();
    fs::File::create(&loose).unwrap().flush().unwrap();
    // A move keeps the blob's bytes: the commit stages the same object.
    v.node().ok(["secret", "mv", "v:a.txt", "v:moved.txt"]);
    assert_ne!(fs::metadata(&loose).unwrap().len(), 0);
    assert!(git(&v.dir, &["fsck", "--strict"]).status.success());
    assert_eq!(v.node().cat("v:moved.txt"), b"alpha secret\n");
    v.assert_clean();
}

/// `version checkout` through the daemon, while the mount holds changes
/// `fsync` acknowledged and committing them fails: the checkout is not run,
/// exits non-zero, and the changes stay.
#[test]
fn a_checkout_whose_commit_of_pending_changes_fails_keeps_them() {
    let mut m = mount::Mounted::new();
    let file = m.path("f");
    fs::write(&file, b"one").unwrap();
    m.wait_committed();
    fs::write(&file, b"two").unwrap();
    m.wait_committed();
    let dir = m.node.vault_dir("v");
    // Any failing step of the commit: here the version record cannot be
    // replaced (a non-empty directory stands where it goes).
    let rec = dir.join("version");
    let saved = fs::read(&rec).unwrap();
    fs::remove_file(&rec).unwrap();
    fs::create_dir(&rec).unwrap();
    fs::write(rec.join("x"), b"").unwrap();
    let mut f = fs::OpenOptions::new().write(true).open(&file).unwrap();
    f.write_all(b"THREE").unwrap();
    f.sync_all().unwrap();
    drop(f);
    let o = m.node.run(["version", "checkout", "v", "HEAD~1"]);
    assert_ne!(o.code, 0, "{}", o.stderr);
    assert!(o.stderr.contains("not run"), "{}", o.stderr);
    assert_eq!(fs::read(&file).unwrap(), b"THREE");
    fs::remove_dir_all(&rec).unwrap();
    fs::write(&rec, saved).unwrap();
    m.node.ok(["version", "checkout", "v", "HEAD~1"]);
    assert_eq!(fs::read(&file).unwrap(), b"two");
    m.node.ok(["version", "checkout", "v", "latest"]);
    assert_eq!(fs::read(&file).unwrap(), b"THREE");
    m.umount();
}

/// Killed after the version record names the new version and before the
/// refs do: the next open moves the refs forward (the objects are durable),
/// and the vault is whole.
#[test]
fn killed_between_the_record_and_the_refs_the_next_open_completes_the_move() {
    let v = Vault::new();
    let commits = v.node().commits("v");
    let o = v
        .node()
        .cmd()
        .env("PKFS_TEST_ONLY_CRASH_AT", "commit-after-record")
        .args(["secret", "write", "v:late"])
        .stdin(b"written before the kill".to_vec())
        .run();
    assert_eq!(o.code, 137, "{}", o.stderr);
    assert_eq!(v.node().cat("v:late"), b"written before the kill");
    assert_eq!(v.node().commits("v"), commits + 1);
    v.assert_clean();
    assert!(git(&v.dir, &["fsck", "--strict"]).status.success());

    let o = v
        .node()
        .cmd()
        .env("PKFS_TEST_ONLY_CRASH_AT", "checkout-after-record")
        .args(["version", "checkout", "v", "HEAD~1"])
        .run();
    assert_eq!(o.code, 137, "{}", o.stderr);
    let head = v.node().vault_stat("v");
    assert_eq!(head["at_latest"], false, "{head}");
    v.node()
        .fail(ExitCode::NotFound, ["secret", "cat", "v:late"]);
    v.node().ok(["version", "checkout", "v", "latest"]);
    assert_eq!(v.node().cat("v:late"), b"written before the kill");
    v.assert_all_readable();
    v.assert_clean();
}
