//! `pkfs quarantine list` and `pkfs quarantine restore`: whatever pkfs moves
//! aside (here, untracked entries `fsck --restore` moves) is listed with its
//! plaintext path and can be put back, committed, with one command.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::*;

/// The entries of `contents/` that are not in `before` (`.diriv` aside).
fn new_entries(contents: &Path, before: &[PathBuf]) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = fs::read_dir(contents)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !before.contains(p) && !p.ends_with(".diriv"))
        .collect();
    out.sort();
    out
}

/// Secrets `x` (a file) and `d/` (a directory), removed through pkfs and put
/// back on disk behind its back: untracked, fsck moves them to quarantine.
fn quarantined_pair(n: &Node) -> String {
    let contents = n.vault_dir("v").join("contents");
    n.write("v:keep", "kept");
    let before: Vec<PathBuf> = fs::read_dir(&contents)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    n.write("v:x", "IMPORTANT");
    n.write("v:d/f", "also important");
    let added = new_entries(&contents, &before);
    assert_eq!(added.len(), 2, "{added:?}");
    let saved = n.scratch().join("saved");
    for p in &added {
        let to = saved.join(p.file_name().unwrap());
        if p.is_dir() {
            copy_tree(p, &to);
        } else {
            fs::create_dir_all(&saved).unwrap();
            fs::copy(p, &to).unwrap();
        }
    }
    n.ok(["secret", "rm", "-r", "v:x", "v:d"]);
    for p in &added {
        let from = saved.join(p.file_name().unwrap());
        fs::rename(&from, p).unwrap();
    }
    n.run(["fsck", "v"]).failure(ExitCode::FsckFindings);
    let o = n.ok(["fsck", "--restore", "v"]);
    assert!(o.out().contains("quarantined"), "{}", o.out());
    n.ok(["fsck", "v"]);
    assert!(n.run(["secret", "cat", "v:x"]).code != 0);
    let batches: Vec<String> = fs::read_dir(n.vault_dir("v").join("quarantine"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(batches.len(), 1);
    batches[0].clone()
}

#[test]
fn what_fsck_moved_aside_is_listed_and_restored_with_one_command() {
    let n = Node::with_vault();
    let batch = quarantined_pair(&n);
    let listed = n.ok(["quarantine", "list"]).out();
    let mut lines: Vec<&str> = listed.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            format!("v {batch} d directory"),
            format!("v {batch} x file")
        ],
        "{listed}"
    );
    let json = n.ok(["--json", "quarantine", "list", "v"]).json();
    assert_eq!(json.as_array().unwrap().len(), 2, "{json}");

    let o = n.ok(["quarantine", "restore", "v", &batch]);
    assert!(o.out().contains("restored x"), "{}", o.out());
    assert_eq!(n.cat("v:x"), b"IMPORTANT");
    assert_eq!(n.cat("v:d/f"), b"also important");
    assert_eq!(n.cat("v:keep"), b"kept");
    // Committed: fsck is clean, the log names them, nothing is left to list.
    n.ok(["fsck", "v"]);
    let log = n.ok(["version", "log", "v", "-n", "1"]).out();
    assert!(log.contains("x") && log.contains("d/"), "{log}");
    assert_eq!(n.ok(["quarantine", "list"]).out(), "");
    n.fail(ExitCode::NotFound, ["quarantine", "restore", "v", &batch]);
}

#[test]
fn an_entry_whose_place_is_taken_stays_in_quarantine() {
    let n = Node::with_vault();
    let batch = quarantined_pair(&n);
    n.write("v:x", "newer");
    let listed = n.ok(["quarantine", "list", "v"]).out();
    assert!(
        listed.contains(&format!("v {batch} x file (occupied)")),
        "{listed}"
    );
    let o = n.run(["quarantine", "restore", "v", &batch]);
    assert_eq!(o.code, ExitCode::Failure as i32, "{o:?}");
    o.stderr_has("not restored: x");
    // The other entry came back, and x is the newer one.
    assert_eq!(n.cat("v:d/f"), b"also important");
    assert_eq!(n.cat("v:x"), b"newer");
    n.ok(["fsck", "v"]);
    assert_eq!(
        n.ok(["quarantine", "list"]).out(),
        format!("v {batch} x file (occupied)\n")
    );
}
