//! End-to-end tests of a vault's history: one commit per mutation, decrypted
//! logs, checkout, Polykey's discard-on-write, and gc.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

/// The changes of one log entry as a set of "kind path".
fn changes(entry: &Value) -> BTreeSet<String> {
    entry["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            format!(
                "{} {}",
                c["kind"].as_str().unwrap(),
                c["path"].as_str().unwrap()
            )
        })
        .collect()
}

fn owned(ids: &[&String]) -> Vec<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

fn ids(log: &[Value]) -> Vec<String> {
    log.iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect()
}

/// Run a mutation and check it added exactly one commit recording `expected`.
fn one_commit(n: &Node, expected: &[&str], mutate: impl FnOnce()) -> String {
    let before = n.log("v", false);
    mutate();
    let after = n.log("v", false);
    assert_eq!(after.len(), before.len() + 1, "exactly one new commit");
    assert_eq!(ids(&after[1..]), ids(&before), "the new commit is on top");
    assert_eq!(changes(&after[0]), set(expected), "changes of the commit");
    assert_eq!(after[0]["head"], true);
    after[0]["id"].as_str().unwrap().to_string()
}

/// Plaintext names and contents below `contents/` (modes ignored).
fn contents_of(vault_dir: &Path) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    snapshot(&vault_dir.join("contents"))
        .into_iter()
        .map(|(p, s)| match s {
            Snap::File(_, d) => (p, Some(d)),
            _ => (p, None),
        })
        .collect()
}

#[test]
fn every_mutation_is_exactly_one_commit_with_its_changes() {
    let n = Node::with_vault();
    n.ok(["vault", "create", "w"]);
    let log = n.log("v", false);
    assert_eq!(log.len(), 1, "vault creation is one commit");
    assert!(changes(&log[0]).is_empty());
    let t = log[0]["time"].as_i64().unwrap();
    assert!(t > 1_600_000_000, "commit time {t}");

    one_commit(&n, &["added a"], || n.write("v:a", "1"));
    one_commit(&n, &["added d/", "added d/e/", "added d/e/f"], || {
        n.write("v:d/e/f", "deep")
    });
    one_commit(&n, &["modified a"], || n.write("v:a", "2"));
    one_commit(&n, &["added m/"], || {
        n.ok(["secret", "mkdir", "v:m"]);
    });
    one_commit(&n, &["added m/n/", "added m/n/o/"], || {
        n.ok(["secret", "mkdir", "-p", "v:m/n/o"]);
    });
    one_commit(&n, &["removed a", "added m/a"], || {
        n.ok(["secret", "mv", "v:a", "v:m"]);
    });
    one_commit(&n, &["removed m/a", "added b"], || {
        n.ok(["secret", "mv", "v:m/a", "b"]);
    });
    one_commit(&n, &["removed b"], || {
        n.ok(["secret", "rm", "v:b"]);
    });
    one_commit(&n, &["removed d/", "removed d/e/", "removed d/e/f"], || {
        n.ok(["secret", "rm", "-r", "v:d"]);
    });
    let local = n.scratch_file("local.txt", b"local");
    one_commit(&n, &["added local.txt"], || {
        n.ok(["secret", "add", local.to_str().unwrap(), "v:"]);
    });
    let tree = n.scratch().join("tree");
    std::fs::create_dir_all(tree.join("x")).unwrap();
    std::fs::write(tree.join("x/1"), b"1").unwrap();
    std::fs::write(tree.join("2"), b"2").unwrap();
    one_commit(
        &n,
        &["added imp/", "added imp/x/", "added imp/x/1", "added imp/2"],
        || {
            n.ok(["secret", "import", tree.to_str().unwrap(), "v:imp"]);
        },
    );

    // Failed mutations and read-only commands add no commit.
    let count = n.commits("v");
    n.fail(ExitCode::NotFound, ["secret", "rm", "v:missing"]);
    n.fail(ExitCode::Exists, ["secret", "mkdir", "v:m"]);
    n.fail(ExitCode::WrongKind, ["secret", "rm", "v:m"]);
    n.fail(ExitCode::NotFound, ["secret", "mv", "v:missing", "v:z"]);
    n.cmd()
        .args(["secret", "write", "v:m"])
        .stdin("x")
        .run()
        .failure(ExitCode::WrongKind);
    n.ok(["secret", "mkdir", "-p", "v:m/n"]);
    n.ok(["secret", "cat", "v:local.txt"]);
    n.ok(["secret", "ls", "v:m"]);
    n.ok(["secret", "stat", "v:m"]);
    n.ok(["secret", "env", "v:local.txt"]);
    n.ok(["vault", "stat", "v"]);
    n.ok(["vault", "rename", "v", "v2"]);
    n.ok(["vault", "rename", "v2", "v"]);
    n.ok(["version", "checkout", "v", "latest"]);
    n.ok(["gc"]);
    assert_eq!(n.commits("v"), count, "no commit without a change");

    // A move across vaults is one commit in each.
    let w = n.commits("w");
    one_commit(&n, &["removed local.txt"], || {
        n.ok(["secret", "mv", "v:local.txt", "w:moved"]);
    });
    let wlog = n.log("w", false);
    assert_eq!(wlog.len(), w + 1);
    assert_eq!(changes(&wlog[0]), set(&["added moved"]));

    // The human log shows the same, decrypted: one line per commit, its
    // counts and its first paths; --name-status every path.
    let text = n.ok(["version", "log", "v"]).out();
    assert_eq!(text.lines().count(), n.commits("v"), "{text}");
    assert!(text.contains("(vault created)"), "{text}");
    // The import's four paths (in the order it met them): three, then one more.
    let import = text.lines().find(|l| l.contains("+4 ~0 -0  imp/, "));
    assert!(
        import.is_some_and(|l| l.ends_with(" … and 1 more")),
        "{text}"
    );
    let first = text.lines().next().unwrap();
    assert!(
        first.contains(" (HEAD)") && first.contains("+0 ~0 -1  local.txt"),
        "{text}"
    );
    let full = n.ok(["version", "log", "v", "--name-status"]).out();
    assert!(full.contains("\nD\tlocal.txt\n"), "{full}");
    assert!(full.contains("\nA\timp/x/1\n"), "{full}");
    assert!(full.contains("\nM\ta\n"), "{full}");
    assert!(
        full.lines().next().unwrap().starts_with("commit ")
            && full.lines().next().unwrap().contains("(HEAD)"),
        "{full}"
    );
    assert_eq!(full.matches("\ncommit ").count() + 1, n.commits("v"));
    // -n limits.
    let two = n.ok(["--json", "version", "log", "v", "-n", "2"]).json();
    assert_eq!(two.as_array().unwrap().len(), 2);
}

#[test]
fn checkout_moves_the_vault_through_its_history() {
    let n = Node::with_vault();
    let created = n.log("v", false)[0]["id"].as_str().unwrap().to_string();
    let c1 = one_commit(&n, &["added f1"], || n.write("v:f1", "v1"));
    let c2 = one_commit(&n, &["added dir/", "added dir/f2"], || {
        n.write("v:dir/f2", "two")
    });
    let c3 = one_commit(&n, &["modified f1"], || n.write("v:f1", "v2"));
    let c4 = one_commit(&n, &["removed dir/", "removed dir/f2"], || {
        n.ok(["secret", "rm", "-r", "v:dir"]);
    });
    let vdir = n.vault_dir("v");
    let at_latest = contents_of(&vdir);
    let head = |n: &Node| -> (String, bool) {
        let s = n.vault_stat("v");
        (
            s["head"].as_str().unwrap().to_string(),
            s["at_latest"].as_bool().unwrap(),
        )
    };
    assert_eq!(head(&n), (c4.clone(), true));

    // HEAD~1: the removed directory reappears.
    let j = n
        .ok(["--json", "version", "checkout", "v", "HEAD~1"])
        .json();
    assert_eq!(j["id"], c3.as_str());
    assert_eq!(j["at_latest"], false);
    assert_eq!(n.ls("v"), ["dir/", "f1"]);
    assert_eq!(n.cat("v:dir/f2"), b"two");
    assert_eq!(n.cat("v:f1"), b"v2");
    assert_eq!(head(&n), (c3.clone(), false));
    let log = n.log("v", false);
    assert_eq!(ids(&log), owned(&[&c4, &c3, &c2, &c1, &created]));
    let heads: Vec<bool> = log.iter().map(|e| e["head"].as_bool().unwrap()).collect();
    assert_eq!(heads, [false, true, false, false, false]);

    // HEAD~N is relative to where the vault is now.
    n.ok(["version", "checkout", "v", "HEAD~1"]);
    assert_eq!(head(&n).0, c2);
    assert_eq!(n.cat("v:f1"), b"v1");
    assert_eq!(n.cat("v:dir/f2"), b"two");
    // A commit id prefix (7 digits, and upper case): a file added later is gone.
    n.ok(["version", "checkout", "v", &c1[..7]]);
    assert_eq!(head(&n).0, c1);
    assert_eq!(n.ls("v"), ["f1"]);
    n.fail(ExitCode::NotFound, ["secret", "cat", "v:dir/f2"]);
    n.ok(["version", "checkout", "v", c2[..10].to_uppercase().as_str()]);
    assert_eq!(head(&n).0, c2);
    n.ok(["version", "checkout", "v", "HEAD"]);
    assert_eq!(head(&n).0, c2);
    n.ok(["version", "checkout", "v", created.as_str()]);
    assert!(n.ls("v").is_empty(), "the first version is empty");
    // latest, and a HEAD~N counted from the latest version.
    n.ok(["version", "checkout", "v", "latest"]);
    assert_eq!(head(&n), (c4.clone(), true));
    assert_eq!(n.ls("v"), ["f1"]);
    assert_eq!(n.cat("v:f1"), b"v2");
    n.ok(["version", "checkout", "v", "HEAD~4"]);
    assert_eq!(head(&n).0, created);
    n.ok(["version", "checkout", "v", "LATEST"]);
    assert_eq!(head(&n), (c4, true));
    // Moving around created no commit and left the latest tree byte-identical.
    assert_eq!(n.commits("v"), 5);
    assert_eq!(contents_of(&vdir), at_latest);
}

#[test]
fn a_change_at_an_older_version_discards_the_later_ones_until_gc() {
    let n = Node::with_vault();
    let x = n.log("v", false)[0]["id"].as_str().unwrap().to_string();
    let a = one_commit(&n, &["added a"], || n.write("v:a", "A"));
    let b = one_commit(&n, &["added b"], || n.write("v:b", "B"));
    let c = one_commit(&n, &["added c"], || n.write("v:c", "C"));
    let d = one_commit(&n, &["added d"], || n.write("v:d", "D"));

    n.ok(["version", "checkout", "v", &b[..8]]);
    assert_eq!(n.ls("v"), ["a", "b"]);
    // Writing E here continues from B: the log is E, B, A (and the creation).
    n.write("v:e", "E");
    let log = n.log("v", false);
    let e = log[0]["id"].as_str().unwrap().to_string();
    assert_eq!(ids(&log), owned(&[&e, &b, &a, &x]));
    assert_eq!(changes(&log[0]), set(&["added e"]));
    assert_eq!(n.ls("v"), ["a", "b", "e"]);
    assert_eq!(n.vault_stat("v")["at_latest"], true);
    assert_eq!(n.vault_stat("v")["commits"], 4);

    // --all still shows C and D, marked discarded.
    let all = n.log("v", true);
    let discarded: BTreeMap<String, bool> = all
        .iter()
        .map(|e| {
            (
                e["id"].as_str().unwrap().to_string(),
                e["discarded"].as_bool().unwrap(),
            )
        })
        .collect();
    let expect: BTreeMap<String, bool> = [(&x, false), (&a, false), (&b, false), (&e, false)]
        .into_iter()
        .map(|(k, v)| (k.clone(), v))
        .chain([(c.clone(), true), (d.clone(), true)])
        .collect();
    assert_eq!(discarded, expect);
    let d_entry = all.iter().find(|en| en["id"] == d.as_str()).unwrap();
    assert_eq!(
        changes(d_entry),
        set(&["added d"]),
        "discarded logs decrypt"
    );
    let text = n.ok(["version", "log", "v", "--all"]).out();
    assert!(
        text.contains(&format!("{} ", &c[..8])) && text.contains("(discarded)"),
        "{text}"
    );
    // A discarded version cannot be checked out.
    n.fail(ExitCode::Usage, ["version", "checkout", "v", c.as_str()])
        .stderr_has("discarded");
    assert_eq!(n.ls("v"), ["a", "b", "e"]);

    // A second discard: back to A, write F.
    n.ok(["version", "checkout", "v", "HEAD~2"]);
    assert_eq!(n.ls("v"), ["a"]);
    n.write("v:f", "F");
    let log = n.log("v", false);
    let f = log[0]["id"].as_str().unwrap().to_string();
    assert_eq!(ids(&log), owned(&[&f, &a, &x]));
    let all = n.log("v", true);
    let discarded: BTreeSet<String> = all
        .iter()
        .filter(|e| e["discarded"] == true)
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(discarded, [&b, &c, &d, &e].into_iter().cloned().collect());

    // gc drops them for good.
    let vdir = n.vault_dir("v");
    for id in [&b, &c, &d, &e] {
        assert!(git_has_object(&vdir, id), "before gc {id} is kept");
    }
    let j = n.ok(["--json", "gc", "v"]).json();
    assert_eq!(j[0]["vault"], "v");
    assert_eq!(j[0]["discarded_refs_removed"], 2);
    let all = n.log("v", true);
    assert_eq!(ids(&all), owned(&[&f, &a, &x]), "nothing discarded remains");
    assert!(all.iter().all(|e| e["discarded"] == false));
    for id in [&b, &c, &d, &e] {
        assert!(!git_has_object(&vdir, id), "gc removed commit {id}");
    }
    for id in [&f, &a, &x] {
        assert!(git_has_object(&vdir, id), "gc kept commit {id}");
    }
    let fsck = git(&vdir, &["fsck", "--full", "--no-dangling"]);
    assert!(
        fsck.status.success(),
        "git fsck after gc: {}{}",
        String::from_utf8_lossy(&fsck.stdout),
        String::from_utf8_lossy(&fsck.stderr)
    );
    n.fail(ExitCode::Usage, ["version", "checkout", "v", &c[..12]]);

    // The contents are still right, and the history still works.
    assert_eq!(n.ls("v"), ["a", "f"]);
    assert_eq!(n.cat("v:a"), b"A");
    assert_eq!(n.cat("v:f"), b"F");
    n.ok(["version", "checkout", "v", "HEAD~1"]);
    assert_eq!(n.ls("v"), ["a"]);
    n.ok(["version", "checkout", "v", "latest"]);
    n.write("v:g", "G");
    assert_eq!(n.commits("v"), 4);
    assert_eq!(n.cat("v:f"), b"F");
    // A second gc with nothing discarded is harmless.
    let j = n.ok(["--json", "gc"]).json();
    assert_eq!(j[0]["discarded_refs_removed"], 0);
    assert_eq!(n.ls("v"), ["a", "f", "g"]);
}

#[test]
fn invalid_refs_exit_2_and_change_nothing() {
    let n = Node::with_vault();
    n.write("v:a", "A");
    n.write("v:b", "B");
    let before = snapshot(&n.home);
    for spec in [
        "nonsense",
        "",
        "HEAD~99",
        "HEAD~x",
        "HEAD^",
        "HEAD~-1",
        "abc",
        "zzzz",
        "0000000",
        "0000000000000000000000000000000000000000",
        "main",
        "refs/heads/main",
    ] {
        n.fail(ExitCode::Usage, ["version", "checkout", "v", spec])
            .stdout_empty();
    }
    // Ids of objects that are not commits (a tree, a blob) are not versions.
    let vdir = n.vault_dir("v");
    let tree = git(&vdir, &["rev-parse", "HEAD^{tree}"]);
    let tree = String::from_utf8(tree.stdout).unwrap().trim().to_string();
    let blob = git(&vdir, &["rev-parse", "HEAD:contents/.diriv"]);
    let blob = String::from_utf8(blob.stdout).unwrap().trim().to_string();
    assert_eq!((tree.len(), blob.len()), (40, 40));
    n.fail(ExitCode::Usage, ["version", "checkout", "v", tree.as_str()]);
    n.fail(ExitCode::Usage, ["version", "checkout", "v", &blob[..8]]);
    n.fail(ExitCode::Usage, ["version", "checkout", "v", "bogus"])
        .stderr_has("latest")
        .stderr_has("HEAD~N");
    n.fail(ExitCode::Usage, ["version", "checkout", "v", "HEAD~5"])
        .stderr_has("HEAD~5");
    n.fail(ExitCode::Usage, ["version", "checkout", "v", "0000000"])
        .stderr_has("0000000");
    assert_same_tree(&before, &snapshot(&n.home), "invalid refs");
    assert_eq!(n.vault_stat("v")["at_latest"], true);
}

#[test]
fn commits_carry_no_identity_and_no_plaintext_message() {
    let n = Node::with_vault();
    n.write("v:identity-check", "x");
    let out = git(
        &n.vault_dir("v"),
        &["log", "--all", "--format=%an|%ae|%cn|%ce|%s"],
    );
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 2, "{text}");
    for l in text.lines() {
        assert_eq!(l, "pkfs|pkfs@localhost|pkfs|pkfs@localhost|pkfs");
    }
    let bodies = git(&n.vault_dir("v"), &["log", "--all", "--format=%B"]);
    let bodies = String::from_utf8(bodies.stdout).unwrap();
    assert!(!bodies.contains("identity-check"), "{bodies}");
}

#[test]
fn rewriting_identical_content_makes_no_commit_and_discards_nothing() {
    let n = Node::with_vault();
    n.write("v:a", "one");
    n.write("v:a", "two");
    let before = n.commits("v");
    n.write("v:a", "two");
    assert_eq!(
        n.commits("v"),
        before,
        "an identical rewrite is not a version"
    );
    n.ok(["version", "checkout", "v", "HEAD~1"]);
    n.write("v:a", "one");
    let all = n.log("v", true);
    assert!(
        all.iter().all(|e| e["discarded"] == false),
        "writing what is already there must not discard later versions: {all:?}"
    );
}

#[test]
fn several_targets_in_one_command_make_one_commit_per_vault() {
    let n = Node::with_vault();
    n.ok(["vault", "create", "w"]);
    let (v0, w0) = (n.commits("v"), n.commits("w"));
    n.ok(["secret", "mkdir", "v:a", "v:b", "w:c", "v:d"]);
    assert_eq!((n.commits("v"), n.commits("w")), (v0 + 1, w0 + 1));
    n.ok(["secret", "rm", "v:a", "v:b", "w:c"]);
    assert_eq!((n.commits("v"), n.commits("w")), (v0 + 2, w0 + 2));
    assert_eq!(n.ls("v:"), vec!["d/"]);
    // A bad target anywhere means nothing happens.
    n.fail(ExitCode::InvalidName, ["secret", "mkdir", "v:x", "v:../y"]);
    assert_eq!(n.commits("v"), v0 + 2);
    assert_eq!(n.ls("v:"), vec!["d/"]);
}

#[test]
fn a_trailing_slash_names_a_directory() {
    let n = Node::with_vault();
    let f = n.scratch_file("cred.txt", b"token");
    n.ok([
        "secret".as_ref(),
        "add".as_ref(),
        f.as_os_str(),
        "v:newdir/".as_ref(),
    ]);
    assert_eq!(n.ls("v:newdir"), vec!["cred.txt"]);
    assert_eq!(n.cat("v:newdir/cred.txt"), b"token");
    n.fail(ExitCode::Usage, ["secret", "write", "v:other/"]);
    assert!(n.ls("v:").iter().all(|e| e != "other" && e != "other/"));
}
