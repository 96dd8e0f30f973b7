//! The edges of secret paths and contents: `..` components refused by every
//! command, `.git` taken as any name, empty, 1 MiB and 255-byte-named files, and a vault name that
//! holds the `:` separating vault from path; every verb on a tree whose
//! backing paths pass PATH_MAX.

mod common;

use common::*;

#[test]
fn dot_dot_and_overlong_names_are_refused_and_create_nothing() {
    let n = Node::with_vault();
    n.write("v:a/file", "x");
    let local = n.scratch_file("local", b"local");
    let local = local.to_str().unwrap();
    let commits = n.commits("v");
    let before = snapshot(&n.home);
    let long = format!("v:{}", "n".repeat(256));
    let bad = [
        "v:../x",
        "v:a/../../x",
        "v:a/../x",
        "v:..",
        "v:a/..",
        "v:./..",
        long.as_str(),
    ];
    for t in bad {
        n.cmd()
            .args(["secret", "write", t])
            .stdin("escaped")
            .run()
            .failure(ExitCode::InvalidName);
        n.fail(ExitCode::InvalidName, ["secret", "mkdir", "-p", t]);
        n.fail(ExitCode::InvalidName, ["secret", "add", local, t]);
        n.fail(ExitCode::InvalidName, ["secret", "cat", t]);
        n.fail(ExitCode::InvalidName, ["secret", "ls", t]);
        n.fail(ExitCode::InvalidName, ["secret", "rm", "-r", t]);
        n.fail(ExitCode::InvalidName, ["secret", "stat", t]);
        n.fail(ExitCode::InvalidName, ["secret", "mv", "v:a/file", t]);
        n.fail(ExitCode::InvalidName, ["secret", "mv", t, "v:z"]);
    }
    n.fail(ExitCode::InvalidName, ["secret", "mv", "v:a/file", "../z"]);
    assert_same_tree(&before, &snapshot(&n.home), "refused paths");
    assert_eq!(n.commits("v"), commits);
    assert!(!n.scratch().join("x").exists() && !n.home.join("x").exists());
    // A name that merely starts like one is fine.
    n.write("v:.gitignore", "fine");
    n.write("v:..hidden", "fine");
    // `.git` inside a vault is an ordinary name (only a vault may not be
    // named so: tests/dot_git.rs).
    n.write("v:a/.git/config", "[core]");
    assert_eq!(n.cat("v:a/.git/config"), b"[core]");
    n.ok(["secret", "mv", "v:a/.git", "v:.git"]);
    assert_eq!(n.ls("v"), ["..hidden", ".git/", ".gitignore", "a/"]);
}

#[test]
fn large_empty_and_long_named_files_round_trip() {
    let n = Node::with_vault();
    // 1 MiB + 123 bytes of random data, through stdin and through `add`.
    let big = pseudo_random(1024 * 1024 + 123, 9);
    n.write("v:big", &big);
    assert_eq!(n.cat("v:big"), big);
    let big_file = n.scratch_file("big.bin", &big);
    n.ok(["secret", "add", big_file.to_str().unwrap(), "v:big-added"]);
    assert_eq!(n.cat("v:big-added"), big);
    let j = n.ok(["--json", "secret", "stat", "v:big"]).json();
    assert_eq!(j["size"], big.len());
    // Changing one byte in the middle changes just that byte.
    let mut big2 = big.clone();
    big2[600_000] ^= 0xff;
    n.write("v:big", &big2);
    assert_eq!(n.cat("v:big"), big2);

    // Empty.
    n.write("v:empty", b"");
    assert_eq!(n.cat("v:empty"), b"");
    assert_eq!(
        n.ok(["--json", "secret", "stat", "v:empty"]).json()["size"],
        0
    );
    n.write("v:big-added", b"");
    assert_eq!(n.cat("v:big-added"), b"");

    // 255-byte names go through the long-name path.
    let long_a = "a".repeat(255);
    let long_u = format!("{}x", "é".repeat(127));
    assert_eq!(long_u.len(), 255);
    let long_dir = "d".repeat(255);
    n.write(&format!("v:{long_a}"), "long a");
    n.write(&format!("v:{long_dir}/{long_u}"), "long u");
    let contents = n.vault_dir("v").join("contents");
    let sidecars = files_under(&contents)
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".name"))
        .count();
    assert_eq!(sidecars, 3, "one sidecar per long name");
    let listed = ls_set(&n, "v");
    assert_eq!(
        listed,
        set(&[
            "big",
            "big-added",
            "empty",
            &long_a,
            format!("{long_dir}/").as_str()
        ])
    );
    assert_eq!(n.ls(&format!("v:{long_dir}")), [long_u.as_str()]);
    assert_eq!(n.cat(&format!("v:{long_a}")), b"long a");
    assert_eq!(n.cat(&format!("v:{long_dir}/{long_u}")), b"long u");
    let j = n.ok(["--json", "secret", "ls", "v"]).json();
    assert!(j
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["name"] == long_a.as_str()));
    // Rename between long names, then remove: no sidecar is left behind.
    let long_b = "b".repeat(255);
    n.ok([
        "secret",
        "mv",
        &format!("v:{long_a}"),
        &format!("v:{long_b}"),
    ]);
    assert_eq!(n.cat(&format!("v:{long_b}")), b"long a");
    n.fail(
        ExitCode::NotFound,
        ["secret", "cat", format!("v:{long_a}").as_str()],
    );
    n.ok(["secret", "rm", format!("v:{long_b}").as_str()]);
    n.ok(["secret", "rm", "-r", format!("v:{long_dir}").as_str()]);
    let left: Vec<_> = files_under(&contents)
        .into_iter()
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(".L."))
        .collect();
    assert!(left.is_empty(), "long-name leftovers: {left:?}");
    assert_eq!(ls_set(&n, "v"), set(&["big", "big-added", "empty"]));
}

#[test]
fn a_vault_name_with_a_colon_is_refused_or_usable() {
    // Targets are VAULT:PATH, split at the first ':'. A vault named "a:b" is either
    // refused as invalid, or every secret command can reach it.
    let n = Node::init();
    let o = n.run(["vault", "create", "a:b"]);
    if o.code != 0 {
        o.failure(ExitCode::InvalidName);
        assert!(vault_names(&n).is_empty());
        return;
    }
    n.cmd()
        .args(["secret", "write", "a:b:s"])
        .stdin("reachable")
        .run()
        .success();
    assert_eq!(n.cat("a:b:s"), b"reachable");
    assert_eq!(n.ls("a:b"), ["s"]);
}

/// The longest path HEAD's tree of vault `v` holds (a backing path relative
/// to the vault dir).
fn longest_committed(n: &Node) -> usize {
    let o = git(&n.vault_dir("v"), &["ls-tree", "-r", "--name-only", "HEAD"]);
    assert!(o.status.success(), "{o:?}");
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::len)
        .max()
        .unwrap_or(0)
}

#[test]
fn every_verb_works_unmounted_on_a_tree_deeper_than_path_max() {
    let n = Node::with_vault();
    // Encrypted names are longer than plaintext ones: 120 levels of `dd`
    // give a backing path past PATH_MAX.
    let deep = vec!["dd"; 120].join("/");
    let at = |name: &str| format!("v:{deep}/{name}");
    n.ok(["secret", "mkdir", "-p", &format!("v:{deep}")]);
    n.ok(["secret", "mkdir", &at("sub")]);
    n.write(&at("TOKEN"), "one");
    let local = n.scratch_file("added.txt", b"added");
    n.ok([
        "secret",
        "add",
        local.to_str().unwrap(),
        &format!("v:{deep}/"),
    ]);
    assert!(longest_committed(&n) > 4096, "{}", longest_committed(&n));
    assert_eq!(n.cat(&at("TOKEN")), b"one");
    assert_eq!(n.cat(&at("added.txt")), b"added");
    assert_eq!(
        n.ls(&format!("v:{deep}")),
        vec!["TOKEN", "added.txt", "sub/"]
    );
    let o = n.ok(["--json", "secret", "stat", &at("TOKEN")]);
    assert_eq!(o.json()["size"], 3);
    // Writing what is there already makes no version.
    let before = n.commits("v");
    n.write(&at("TOKEN"), "one");
    assert_eq!(n.commits("v"), before);
    n.ok(["secret", "mv", &at("added.txt"), &at("sub/moved")]);
    assert_eq!(n.cat(&at("sub/moved")), b"added");
    let ed = n.scratch_file("ed.sh", b"#!/bin/sh\nprintf 'two' >> \"$1\"\n");
    std::fs::set_permissions(&ed, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    n.cmd()
        .args(["secret", "edit", &at("TOKEN")])
        .env("EDITOR", &ed)
        .run()
        .success();
    assert_eq!(n.cat(&at("TOKEN")), b"onetwo");
    let o = n.ok(["secret", "grep", "onet"]);
    assert_eq!(o.out(), format!("v:{deep}/TOKEN:onetwo\n"));
    let o = n.ok(["secret", "env", &at("TOKEN")]);
    assert_eq!(o.out(), "export TOKEN='onetwo'\n");
    let o = n.ok(["secret", "generate", &at("gen")]);
    assert_eq!(n.cat(&at("gen")), o.stdout);
    n.ok(["secret", "rm", &at("gen")]);
    n.fail(ExitCode::NotFound, ["secret", "cat", &at("gen")]);
    n.ok(["secret", "rm", "-r", &at("sub")]);
    assert_eq!(n.ls(&format!("v:{deep}")), vec!["TOKEN"]);
    let o = n.ok(["fsck", "v"]);
    assert!(o.out().contains("v: clean"), "{}", o.out());
    n.ok(["secret", "rm", "-r", "v:dd"]);
    assert!(n.ls("v:").is_empty());
    let o = n.ok(["fsck", "v"]);
    assert!(o.out().contains("v: clean"), "{}", o.out());
}
