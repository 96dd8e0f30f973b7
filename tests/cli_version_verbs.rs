//! `version log` (summary lines, --name-status, --json), `version diff`,
//! `version show` and `version restore`, through the real binary; restore
//! also through a real mount.

mod common;

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;

use common::mount::Mounted;
use common::*;
use serde_json::Value;

/// The id of the version the vault is at.
fn head(n: &Node) -> String {
    n.log("v", false)[0]["id"].as_str().unwrap().to_string()
}

/// A vault with a history: `a` and `d/x` first, then one commit of five
/// files, then a change of `a`, a new `b` and `d/x` removed.
fn history(n: &Node) -> (String, String) {
    n.write("v:a", "one\n");
    n.write("v:d/x", "x\n");
    let first = head(n);
    let tree = n.scratch().join("five");
    fs::create_dir_all(&tree).unwrap();
    for i in 0..5 {
        fs::write(tree.join(format!("f{i}")), format!("{i}")).unwrap();
    }
    n.ok(["secret", "import", tree.to_str().unwrap(), "v:five"]);
    n.write("v:a", "two\n");
    n.write("v:b", "bee");
    n.ok(["secret", "rm", "v:d/x"]);
    (first, head(n))
}

#[test]
fn log_prints_one_line_per_commit_with_counts_and_at_most_three_paths() {
    let n = Node::with_vault();
    history(&n);
    let text = n.ok(["version", "log", "v"]).out();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), n.commits("v"), "{text}");
    // The import: 6 paths, three shown.
    let import = lines
        .iter()
        .find(|l| l.contains("five/"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        import.contains("+6 ~0 -0  five/, five/f0, five/f1 … and 3 more"),
        "{import}"
    );
    assert!(lines[0].contains("(HEAD)") && lines[0].contains("+0 ~0 -1  d/x"));
    assert!(lines.last().unwrap().contains("(vault created)"), "{text}");
    let short = &head(&n)[..8];
    assert!(lines[0].starts_with(short), "{text}");
    // -n still limits, --all still works.
    assert_eq!(
        n.ok(["version", "log", "v", "-n", "2"])
            .out()
            .lines()
            .count(),
        2
    );
    n.ok(["version", "log", "v", "--all"]);

    // --name-status: every path.
    let full = n.ok(["version", "log", "v", "--name-status"]).out();
    for i in 0..5 {
        assert!(full.contains(&format!("\nA\tfive/f{i}\n")), "{full}");
    }
    assert!(
        full.contains("\nM\ta\n") && full.contains("\nD\td/x\n"),
        "{full}"
    );

    // --json: the old fields and the counts.
    let json = n.ok(["--json", "version", "log", "v"]).json();
    let e = json
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["changes"].as_array().unwrap().len() == 6)
        .unwrap();
    for field in ["id", "time", "head", "discarded", "changes"] {
        assert!(!e[field].is_null(), "{field} in {e}");
    }
    assert_eq!(e["counts"]["added"], 6);
    assert_eq!(e["counts"]["modified"], 0);
    assert_eq!(e["counts"]["removed"], 0);
}

#[test]
fn diff_between_two_versions_lists_added_modified_and_removed() {
    let n = Node::with_vault();
    let (first, last) = history(&n);
    let ns = n
        .ok([
            "version",
            "diff",
            "v",
            &first[..8],
            &last[..8],
            "--name-status",
        ])
        .out();
    let mut want: Vec<String> = vec!["M\ta".into(), "A\tb".into(), "D\td/x".into()];
    want.push("A\tfive/".into());
    for i in 0..5 {
        want.push(format!("A\tfive/f{i}"));
    }
    let mut got: Vec<&str> = ns.lines().collect();
    got.sort();
    want.sort();
    assert_eq!(got, want, "{ns}");
    // The default output names the kinds and sizes.
    let text = n.ok(["version", "diff", "v", &first, "latest"]).out();
    assert!(text.contains("modified a  (4 -> 4 bytes)"), "{text}");
    assert!(text.contains("added    b  (3 bytes)"), "{text}");
    assert!(text.contains("removed  d/x  (was 2 bytes)"), "{text}");
    let stat = n
        .ok(["version", "diff", "v", &first, &last, "--stat"])
        .out();
    assert_eq!(stat.trim(), "7 added, 1 modified, 1 removed, 0 renamed");
    // One REF: from it to HEAD; none: HEAD's own change.
    assert_eq!(
        n.ok(["version", "diff", "v", &first, "--name-status"])
            .out(),
        ns
    );
    assert_eq!(
        n.ok(["version", "diff", "v", "--name-status"]).out(),
        "D\td/x\n"
    );
    let json = n
        .ok(["--json", "version", "diff", "v", &first, &last])
        .json();
    assert_eq!(json["counts"]["added"], 7, "{json}");
    // A move is one rename, exactly (the ciphertext moved with it): a
    // directory without its entries, and a file.
    n.ok(["secret", "mv", "v:five", "v:six"]);
    n.ok(["secret", "mv", "v:b", "v:c"]);
    n.write("v:empty", "");
    let moved = n.ok(["version", "diff", "v", &last, "--name-status"]).out();
    let mut moved: Vec<&str> = moved.lines().collect();
    moved.sort();
    assert_eq!(moved, ["A\tempty", "R\tb\tc", "R\tfive/\tsix/"]);
    // An empty file is never taken for a moved one.
    n.ok(["secret", "mv", "v:empty", "v:other"]);
    n.write("v:new-empty", "");
    n.ok(["secret", "rm", "v:other"]);
    let text = n
        .ok(["version", "diff", "v", "HEAD~3", "--name-status"])
        .out();
    assert_eq!(text, "D\tempty\nA\tnew-empty\n", "{text}");
    // The same version: nothing.
    assert_eq!(n.ok(["version", "diff", "v", &last, &last]).out(), "");
    n.fail(ExitCode::Usage, ["version", "diff", "v", "nothex"]);
}

#[test]
fn show_describes_a_commit_and_prints_a_file_as_it_was() {
    let n = Node::with_vault();
    let (first, _) = history(&n);
    let text = n.ok(["version", "show", "v", "HEAD"]).out();
    assert!(text.starts_with(&format!("commit {}", head(&n))), "{text}");
    assert!(
        text.contains("Parents: ") && text.contains("\nD\td/x\n"),
        "{text}"
    );
    let json = n.ok(["--json", "version", "show", "v", "HEAD~1"]).json();
    assert_eq!(json["changes"][0]["path"], "b", "{json}");
    assert_eq!(json["parents"].as_array().unwrap().len(), 1);

    // A file as it was, while the vault stays where it is.
    assert_eq!(
        n.ok(["version", "show", "v", &format!("{first}:a")]).out(),
        "one\n"
    );
    assert_eq!(n.ok(["version", "show", "v", "HEAD~2:d/x"]).out(), "x\n");
    assert_eq!(n.cat("v:a"), b"two\n");
    // A directory lists its entries.
    assert_eq!(
        n.ok(["version", "show", "v", "HEAD:five"]).out(),
        "f0\nf1\nf2\nf3\nf4\n"
    );
    assert_eq!(
        n.ok(["version", "show", "v", &format!("{first}:")]).out(),
        "a\nd/\n"
    );
    // Absent there: not found.
    n.fail(
        ExitCode::NotFound,
        ["version", "show", "v", &format!("{first}:b")],
    );
    // A long name (stored under a hash, with a sidecar) is found and listed.
    let long = "L".repeat(200);
    n.write(&format!("v:{long}"), "long");
    n.write(&format!("v:{long}"), "longer");
    let at = format!("HEAD~1:{long}");
    assert_eq!(n.ok(["version", "show", "v", &at]).out(), "long");
    assert_eq!(
        n.ok(["version", "diff", "v", "HEAD~1", "--name-status"])
            .out(),
        format!("M\t{long}\n")
    );
    // A file of several pages comes back whole.
    let big = pseudo_random(3 * 4096 + 17, 7);
    n.cmd()
        .args(["secret", "write", "v:big"])
        .stdin(big.clone())
        .run()
        .success();
    n.write("v:big", "small");
    let o = n.ok(["version", "show", "v", "HEAD~1:big"]);
    assert_eq!(o.stdout, big);
}

#[test]
fn restore_brings_back_a_file_and_a_directory_in_one_commit_each() {
    let n = Node::with_vault();
    let (first, _) = history(&n);
    n.write("v:d/new", "made later");
    let before = n.commits("v");
    // One file.
    n.ok(["version", "restore", "v", &first[..8], "a"]);
    assert_eq!(n.commits("v"), before + 1);
    assert_eq!(n.cat("v:a"), b"one\n");
    assert_eq!(n.cat("v:b"), b"bee", "the rest of the vault stays");
    // A directory: what it held comes back, what it did not hold goes.
    n.ok(["version", "restore", "v", &first, "d"]);
    assert_eq!(n.commits("v"), before + 2);
    assert_eq!(n.ls("v:d"), ["x"]);
    assert_eq!(n.cat("v:d/x"), b"x\n");
    let log = n.log("v", false);
    let kinds: Vec<String> = log[0]["changes"]
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
        .collect();
    assert!(kinds.contains(&"removed d/new".to_string()), "{kinds:?}");
    assert!(kinds.contains(&"added d/x".to_string()), "{kinds:?}");
    // Restoring again changes nothing and makes no commit.
    n.ok(["version", "restore", "v", &first, "d", "a"]);
    assert_eq!(n.commits("v"), before + 2);
    // A path absent at REF: an error, and nothing changes.
    n.fail(
        ExitCode::NotFound,
        ["version", "restore", "v", &first, "a", "b"],
    )
    .stderr_has("b");
    assert_eq!(n.commits("v"), before + 2);
    assert_eq!(n.cat("v:b"), b"bee");
    // The whole vault (`/`): what it held then, as one more commit.
    n.ok(["version", "restore", "v", &first, "/"]);
    assert_eq!(n.commits("v"), before + 3);
    assert_eq!(n.ls("v"), ["a", "d/"]);
    assert_eq!(
        n.ok(["version", "diff", "v", &first, "--name-status"])
            .out(),
        ""
    );
    n.ok(["fsck", "v"]);
}

#[test]
fn restore_through_a_mount_shows_at_once_and_makes_one_commit() {
    let m = Mounted::new();
    fs::write(m.path("a"), "one").unwrap();
    fs::create_dir(m.path("d")).unwrap();
    fs::write(m.path("d/x"), "x").unwrap();
    fs::write(m.path("d/y"), "y").unwrap();
    // A name that is not UTF-8 (only the mount can make one).
    let odd = m.path("d").join(OsStr::from_bytes(b"n\xff"));
    fs::write(&odd, "odd").unwrap();
    std::os::unix::fs::symlink("d/x", m.path("ln")).unwrap();
    m.wait_committed();
    let first = head(&m.node);
    let log = m.node.log("v", false);
    let created = log.last().unwrap()["id"].as_str().unwrap().to_string();
    let made = m
        .node
        .ok(["version", "diff", "v", &created, "--name-status"])
        .out();
    assert!(made.contains("A\td/n\\xFF\n"), "{made}");
    let listed = m
        .node
        .ok(["version", "show", "v", &format!("{first}:d")])
        .out();
    assert_eq!(listed, "n\\xFF\nx\ny\n");
    fs::write(m.path("a"), "two").unwrap();
    fs::remove_file(m.path("d/x")).unwrap();
    fs::remove_file(&odd).unwrap();
    fs::remove_file(m.path("ln")).unwrap();
    fs::write(m.path("d/z"), "z").unwrap();
    m.wait_committed();
    let gone = m
        .node
        .ok(["version", "diff", "v", &first, "--name-status"])
        .out();
    assert!(gone.contains("D\td/n\\xFF\n"), "{gone}");
    assert!(gone.contains("D\tln\n"), "{gone}");
    let before = m.node.commits("v");

    // A symlink cannot be brought back outside the mount: reported, no commit.
    m.node
        .ok(["version", "restore", "v", &first, "ln"])
        .stderr_has("not restored");
    assert_eq!(m.node.commits("v"), before);
    m.node.ok(["version", "restore", "v", &first, "a"]);
    assert_eq!(m.node.commits("v"), before + 1);
    assert_eq!(fs::read(m.path("a")).unwrap(), b"one");

    m.node.ok(["version", "restore", "v", &first, "d"]);
    assert_eq!(m.node.commits("v"), before + 2);
    let mut names: Vec<String> = fs::read_dir(m.path("d"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["n\u{FFFD}", "x", "y"]);
    assert_eq!(
        fs::read(&odd).unwrap(),
        b"odd",
        "the name comes back byte for byte"
    );
    assert_eq!(fs::read(m.path("d/x")).unwrap(), b"x");
    // Show and diff run in the daemon too, without a commit. Everything is
    // as at `first` again but the symlink, which stayed gone.
    let shown = m.node.ok(["version", "show", "v", "HEAD~2:d/z"]).out();
    assert_eq!(shown, "z");
    assert_eq!(
        m.node
            .ok(["version", "diff", "v", &first, "--name-status"])
            .out(),
        "D\tln\n"
    );
    assert_eq!(m.node.commits("v"), before + 2);
    m.node.ok(["fsck", "v"]);
    let v: Value = m
        .node
        .ok(["--json", "version", "log", "v", "-n", "1"])
        .json();
    assert_eq!(v[0]["counts"]["removed"], 1, "{v}");
}
