//! `pkfs fsck [VAULT...]` and `pkfs fsck --restore VAULT` through the CLI, on
//! real vaults (the tamper matrix is in `tamper.rs`).

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;

use common::tamper::*;
use common::*;
use serde_json::Value;

#[test]
fn clean_vaults_exit_0_and_each_is_listed() {
    let v = Vault::new();
    v.node().ok(["vault", "create", "w"]);
    let (code, j) = fsck_json(v.node(), &["fsck"]);
    assert_eq!(code, 0, "{j:#}");
    let vaults = j["vaults"].as_array().unwrap();
    let names: Vec<&str> = vaults
        .iter()
        .map(|x| x["vault"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["v", "w"]);
    assert!(vaults.iter().all(|x| x["clean"] == true));
    assert!(vaults[0]["commits"].as_u64().unwrap() >= 6, "{j:#}");
    assert_eq!(j["findings"], Value::Array(vec![]));
    assert_eq!(j["actions"], Value::Array(vec![]));
    let out = v.node().ok(["fsck", "w"]).out();
    assert!(out.starts_with("w: clean;") && !out.contains("v:"), "{out}");
    assert!(v.node().ok(["-q", "fsck"]).stdout.is_empty());
}

#[test]
fn usage_errors() {
    let n = Node::with_vault();
    n.fail(ExitCode::VaultUndefined, ["fsck", "nope"]);
    n.fail(ExitCode::Usage, ["fsck", "--restore"]);
    n.ok(["vault", "create", "w"]);
    n.fail(ExitCode::Usage, ["fsck", "--restore", "v", "w"]);
}

#[test]
fn human_lines_name_vault_path_kind_and_page() {
    let v = Vault::new();
    flip_byte(v.blob("big.bin"), HEADER + PAGE + 40);
    let o = v.node().run(["fsck"]).failure(ExitCode::FsckFindings);
    o.clone().stderr_has("fsck found 2 problem(s)");
    let out = o.out();
    assert!(
        out.lines()
            .any(|l| l.starts_with("v:big.bin: tag-mismatch page 1: ")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("v:big.bin: modified-since-commit: ")),
        "{out}"
    );
    assert!(out.contains("v: 2 problem(s);"), "{out}");
    // No plaintext of the damaged file (or any other) is printed.
    for (_, data) in secrets() {
        assert!(!contains(&o.stdout, &data[..data.len().min(12)]));
    }
}

#[test]
fn an_untracked_entry_is_quarantined_not_deleted() {
    let v = Vault::new();
    let junk = v.dir.join("contents/junk file");
    fs::write(&junk, b"dropped here").unwrap();
    let (code, j) = v.fsck();
    assert_eq!(code, 12);
    let kinds = kinds_at(&j, "junk file");
    assert!(kinds.contains(&"foreign-entry".into()), "{kinds:?}");
    assert!(kinds.contains(&"untracked".into()), "{kinds:?}");
    let o = fsck_json(v.node(), &["fsck", "--restore", "v"]);
    assert_eq!(o.0, 0, "{:#}", o.1);
    let actions = o.1["actions"].as_array().unwrap().clone();
    assert_eq!(actions.len(), 1, "{actions:?}");
    assert_eq!(actions[0]["action"], "quarantined");
    assert_eq!(actions[0]["path"], "junk file");
    assert!(!junk.exists());
    let (index, kept): (Vec<_>, Vec<_>) = files_under(&v.dir.join("quarantine"))
        .into_iter()
        .partition(|p| p.ends_with("index"));
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(kept[0].ends_with("contents/junk file"));
    // The batch's index names where it came from.
    assert_eq!(
        fs::read_to_string(&index[0]).unwrap(),
        "contents/junk file\n"
    );
    assert_eq!(fs::read(&kept[0]).unwrap(), b"dropped here");
    v.assert_clean();
    v.assert_all_readable();
}

#[test]
fn a_blob_copied_over_another_shares_its_file_id() {
    let v = Vault::new();
    fs::copy(v.blob("a.txt"), v.blob("other.txt")).unwrap();
    let (_, j) = v.fsck();
    for p in ["a.txt", "other.txt"] {
        assert!(
            kinds_at(&j, p).contains(&"duplicate-file-id".into()),
            "{j:#}"
        );
    }
    assert!(kinds_at(&j, "other.txt").contains(&"modified-since-commit".into()));
    assert_eq!(v.restore().0, 0);
    v.assert_clean();
    v.assert_all_readable();
}

#[test]
fn a_forged_commit_message_is_reported() {
    let v = Vault::new();
    let git_ok = |args: &[&str]| {
        let o = git(&v.dir, args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    let forged = git_ok(&[
        "-c",
        "user.name=x",
        "-c",
        "user.email=x@x",
        "commit-tree",
        "HEAD^{tree}",
        "-p",
        "HEAD",
        "-m",
        "pkfs\n\nbm90IGEgc2VhbGVkIG1lc3NhZ2U=",
    ]);
    // Main moved to it is put back from the version record at open.
    git_ok(&["update-ref", "refs/heads/main", &forged]);
    let o = v.node().ok(["fsck", "v"]);
    assert!(
        o.out().contains("v: repaired at open: main named"),
        "{}",
        o.out()
    );
    assert_ne!(git_ok(&["rev-parse", "refs/heads/main"]), forged);
    // Kept under a discarded ref, it is checked and reported.
    git_ok(&[
        "update-ref",
        "refs/pkfs/discarded/00000000000000000001",
        &forged,
    ]);
    let (code, j) = v.fsck();
    assert_eq!(code, 12);
    let f = findings(&j);
    assert!(
        f.iter()
            .any(|f| f["kind"] == "commit-mac" && f["object"] == forged.as_str()),
        "{j:#}"
    );
    assert_eq!(f.len(), 1, "{j:#}");
}

#[test]
fn restore_falls_back_to_an_older_version_and_commits_it() {
    let mut v = Vault::new();
    v.write("a.txt", b"alpha, second version\n");
    let head_blob = v.hash_object(v.blob("a.txt"));
    let loose = v.loose_object(&head_blob);
    fs::set_permissions(&loose, fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(&loose, b"garbage").unwrap();
    flip_byte(v.blob("a.txt"), 70);
    let commits = v.node().commits("v");
    let (code, out) = v.restore();
    // The damaged object stays in the history (its commit is not rewritten).
    assert_eq!(code, 12, "{out}");
    assert!(
        out.contains("v:a.txt: restored: restored from the older version"),
        "{out}"
    );
    assert!(out.contains("v: committed: "), "{out}");
    assert_eq!(v.node().cat("v:a.txt"), b"alpha secret\n");
    assert_eq!(v.node().commits("v"), commits + 1);
    let (_, j) = v.fsck();
    let kinds: Vec<_> = findings(&j).iter().map(|f| f["kind"].clone()).collect();
    assert_eq!(kinds, ["git-object"], "{j:#}");
    let log = v.node().log("v", false);
    assert_eq!(log[0]["changes"][0]["path"], "a.txt", "{log:?}");
}

#[test]
fn a_damaged_long_name_sidecar() {
    let mut v = Vault::new();
    let long = "L".repeat(200);
    v.write(&long, b"long named");
    let sidecar = files_under(&v.dir.join("contents"))
        .into_iter()
        .find(|p| p.to_string_lossy().ends_with(".name"))
        .unwrap();
    edit(&sidecar, |d| {
        d[10] = if d[10] == b'A' { b'B' } else { b'A' }
    });
    let (code, j) = v.fsck();
    assert_eq!(code, 12);
    let kinds: Vec<String> = findings(&j)
        .iter()
        .map(|f| f["kind"].as_str().unwrap().to_string())
        .collect();
    assert!(kinds.contains(&"bad-name".into()), "{j:#}");
    // A lookup needs no sidecar, but the listing cannot name the entry.
    let o = v.node().run(["secret", "ls", "v:"]);
    assert_eq!(o.code, ExitCode::Corrupt as i32);
    assert!(!o.out().contains(&long) && o.out().contains("a.txt"));
    assert_eq!(v.restore().0, 0);
    v.assert_clean();
    v.assert_all_readable();
}

#[test]
fn a_damaged_directory_iv() {
    let v = Vault::new();
    let diriv = v.blob("docs/note.txt").with_file_name(".diriv");
    edit(&diriv, |d| d.truncate(10));
    let (code, j) = v.fsck();
    assert_eq!(code, 12);
    assert!(kinds_at(&j, "docs").contains(&"bad-diriv".into()), "{j:#}");
    assert!(v.node().run(["secret", "cat", "v:docs/note.txt"]).code != 0);
    assert_eq!(v.restore().0, 0);
    v.assert_clean();
    v.assert_all_readable();
}

#[test]
fn through_the_mount_daemon_check_reads_and_restore_repairs() {
    let mut v = Vault::new();
    v.m.mount(&["--commit-delay", "200ms"]);
    let out = v.node().ok(["fsck"]).out();
    assert!(out.starts_with("v: clean;"), "{out}");
    let junk = v.dir.join("contents/junk");
    fs::write(&junk, b"x").unwrap();
    v.node().run(["fsck"]).failure(ExitCode::FsckFindings);
    let out = v.node().ok(["fsck", "--restore", "v"]).out();
    assert!(out.contains("v:junk: quarantined"), "{out}");
    assert!(!junk.exists());
    // A symlink (versioned, its target encrypted) and a FIFO (not versioned)
    // made through the mount are no problem.
    std::os::unix::fs::symlink("a.txt", v.m.path("ln")).unwrap();
    let fifo =
        std::ffi::CString::new(v.m.path("fifo").into_os_string().into_encoded_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    v.m.wait_committed();
    let out = v.node().ok(["fsck"]).out();
    assert!(out.starts_with("v: clean;"), "{out}");
    for (p, data) in &v.content {
        assert_eq!(&fs::read(v.m.path(p)).unwrap(), data, "{p}");
    }
    v.m.umount();
    v.assert_clean();
}

#[test]
fn a_vault_whose_directory_is_gone_is_a_finding_and_the_others_are_checked() {
    let v = Vault::new();
    v.node().ok(["vault", "create", "w"]);
    let wdir = v.node().vault_dir("w");
    fs::rename(&wdir, v.node().scratch().join("w-moved")).unwrap();
    let (code, j) = v.fsck();
    assert_eq!(code, 12, "{j:#}");
    let f = findings(&j);
    assert_eq!(f.len(), 1, "{j:#}");
    assert_eq!(
        (f[0]["vault"].as_str(), f[0]["kind"].as_str()),
        (Some("w"), Some("bad-vault"))
    );
    assert_eq!(j["vaults"][0]["clean"], true, "{j:#}");
    let out = v.node().run(["fsck"]).out();
    assert!(
        out.contains("w: bad-vault: the vault cannot be opened"),
        "{out}"
    );
}

#[test]
fn a_long_named_blob_deleted_behind_pkfs_is_restored_with_its_sidecar() {
    let mut v = Vault::new();
    let long = "M".repeat(180);
    v.write(&long, b"long");
    fs::remove_file(v.blob(&long)).unwrap();
    // The next write commits only what it journaled: the deletion is not
    // adopted, so it stays visible as tampering.
    v.write("a.txt", b"alpha again\n");
    let (code, j) = v.fsck();
    assert_eq!(code, 12);
    let mut kinds = kinds_at(&j, &long);
    kinds.sort();
    assert_eq!(kinds, ["missing", "orphan-sidecar"], "{j:#}");
    let (code, out) = v.restore();
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(": restored: "), "{out}");
    assert!(!out.contains("quarantined"), "{out}");
    v.assert_clean();
    v.assert_all_readable();
}

#[test]
fn a_damaged_head_commit_is_a_finding_not_a_failure() {
    let v = Vault::new();
    let head = v.node().log("v", false)[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let loose = v.loose_object(&head);
    fs::set_permissions(&loose, fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(&loose, b"not a zlib stream").unwrap();
    let (code, j) = v.fsck();
    assert_eq!(code, 12, "{j:#}");
    assert!(
        findings(&j)
            .iter()
            .any(|f| f["kind"] == "git-object" && f["object"] == head.as_str()),
        "{j:#}"
    );
    // Nothing to rebuild it from: reported, and the problem stays.
    let (code, out) = v.restore();
    assert_eq!(code, 12, "{out}");
    assert!(out.contains("not-restored"), "{out}");
    // A HEAD that cannot vouch for the files lets none be read (a forged or
    // damaged HEAD must not open the door to swapped blobs).
    let o = v
        .node()
        .fail(ExitCode::Corrupt, ["secret", "cat", "v:a.txt"]);
    assert!(o.stderr.contains("pkfs fsck"), "{}", o.stderr);
}

#[test]
fn a_progress_counter_on_a_terminal_only() {
    let v = Vault::new();
    assert!(!v.node().ok(["fsck"]).stderr.contains("Checking v"));
    let cmd = format!(
        "'{BIN}' --home '{}' --passfile '{}' fsck",
        v.node().home.display(),
        v.node().passfile.display(),
    );
    let (ok, text) = common::fixtures::on_a_terminal(&cmd);
    assert!(ok, "{text}");
    assert!(
        text.contains("Checking v"),
        "no progress on a terminal: {text:?}"
    );
    assert!(text.contains("v: clean;"), "{text:?}");
}
