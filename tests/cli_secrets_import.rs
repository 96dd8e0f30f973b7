//! `secret import` of a local directory tree (including one that holds `.git`)
//! and `secret env`, which hands secrets to a command as environment variables.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::process::Command;

use common::*;

/// Every regular file below `dir`, as (relative path, content).
fn local_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    files_under(dir)
        .into_iter()
        .map(|p| {
            let rel = p.strip_prefix(dir).unwrap().to_str().unwrap().to_string();
            let data = fs::read(&p).unwrap();
            (rel, data)
        })
        .collect()
}

#[test]
fn import_a_directory_tree() {
    let n = Node::with_vault();
    let src = n.scratch().join("tree");
    let all_bytes: Vec<u8> = (0..=255u8).cycle().take(256 * 20).collect();
    for (p, data) in [
        ("top.txt", b"top level\n".to_vec()),
        ("binary.dat", all_bytes),
        ("sub/a.txt", b"a".to_vec()),
        ("sub/deeper/b.bin", pseudo_random(10_000, 5)),
        ("sub/deeper/deepest/c", pseudo_random(4096, 6)),
        ("sub/empty-file", Vec::new()),
        ("other dir/with space", b"spaced".to_vec()),
    ] {
        let path = src.join(p);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, data).unwrap();
    }
    fs::create_dir_all(src.join("sub/empty-dir")).unwrap();
    let expected = local_files(&src);
    assert_eq!(expected.len(), 7);
    let commits = n.commits("v");

    let o = n.ok(["secret", "import", src.to_str().unwrap(), "v:imported"]);
    assert!(o.out().contains("7 file"), "{o:?}");
    assert_eq!(n.commits("v"), commits + 1, "one import is one commit");
    for (rel, data) in &expected {
        assert_eq!(&n.cat(&format!("v:imported/{rel}")), data, "{rel}");
    }
    assert_eq!(
        ls_set(&n, "v:imported/sub"),
        set(&["a.txt", "deeper/", "empty-dir/", "empty-file"])
    );
    assert_eq!(n.vault_stat("v")["files"], 7);

    // Into the root, through the plural alias.
    n.ok(["secrets", "import", src.to_str().unwrap(), "v"]);
    for (rel, data) in &expected {
        assert_eq!(&n.cat(&format!("v:{rel}")), data, "{rel}");
    }
    // Not a directory, or missing.
    let file = n.scratch_file("plain", b"x");
    n.fail(
        ExitCode::WrongKind,
        ["secret", "import", file.to_str().unwrap(), "v:x"],
    );
    let o = n.run([
        "secret",
        "import",
        n.scratch().join("missing").to_str().unwrap(),
        "v:x",
    ]);
    assert_ne!(o.code, 0);
    assert_one_error_line(&o);
}

/// Run `secret env ARGS -- /bin/sh -c SCRIPT` and return stdout.
fn env_sh(n: &Node, targets: &[&str], script: &str) -> Output {
    n.cmd()
        .args(["secret", "env"])
        .args(targets)
        .args(["--", "/bin/sh", "-c", script])
        .run()
}

#[test]
fn env_exports_secrets_to_a_command() {
    let n = Node::with_vault();
    n.write("v:env/db-password.txt", "hunter2");
    n.write("v:env/API_KEY", "it's a 'key'");
    n.write("v:env/nested/token.v2", "tok\nwith newline");
    n.write("v:env/1st", "first");
    n.write("v:other", "other value");

    let o = env_sh(
        &n,
        &["v:env"],
        r#"printf '%s|%s|%s|%s' "$db_password_txt" "$API_KEY" "$token_v2" "$_1st""#,
    )
    .success();
    assert_eq!(
        o.out(),
        "hunter2|it's a 'key'|tok\nwith newline|first",
        "every file of the directory becomes a variable"
    );
    // VAULT:PATH=NAME picks the name; several targets combine.
    let o = env_sh(
        &n,
        &["v:env/db-password.txt=DB_PASS", "v:other"],
        r#"printf '%s|%s|%s' "$DB_PASS" "$other" "${db_password_txt-unset}""#,
    )
    .success();
    assert_eq!(o.out(), "hunter2|other value|unset");
    // The command's exit status is the command's own.
    let o = env_sh(&n, &["v:other"], "exit 42");
    assert_eq!(o.code, 42);
    // The command does not inherit the home lock: it can run pkfs itself.
    let o = n
        .cmd()
        .args(["secret", "env", "v:other", "--", BIN])
        .arg("--home")
        .arg(&n.home)
        .arg("--passfile")
        .arg(&n.passfile)
        .args(["secret", "cat", "v:env/API_KEY"])
        .run()
        .success();
    assert_eq!(o.stdout, b"it's a 'key'");

    // Without a command: `export NAME='value'` lines, quoted for sh.
    let o = n.ok(["secret", "env", "v:env/API_KEY", "v:env/db-password.txt=DB"]);
    assert_eq!(
        o.out(),
        "export API_KEY='it'\\''s a '\\''key'\\'''\nexport DB='hunter2'\n"
    );
    let all = n.ok(["secret", "env", "v:env"]).out();
    let exports: BTreeSet<&str> = all
        .split("\nexport ")
        .map(|l| l.trim_start_matches("export "))
        .collect();
    assert_eq!(exports.len(), 4, "{all}");
    // The printed lines, evaluated by sh, give back the exact values.
    let script = format!(
        "{all}\nprintf '%s|%s|%s|%s' \"$db_password_txt\" \"$API_KEY\" \"$token_v2\" \"$_1st\""
    );
    let sh = Command::new("/bin/sh")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(sh.status.success());
    assert_eq!(
        String::from_utf8(sh.stdout).unwrap(),
        "hunter2|it's a 'key'|tok\nwith newline|first"
    );

    // Bad names and =NAME on a directory are usage errors.
    n.fail(ExitCode::Usage, ["secret", "env", "v:other=1X"]);
    n.fail(ExitCode::Usage, ["secret", "env", "v:other=A-B"]);
    n.fail(ExitCode::Usage, ["secret", "env", "v:env=NAME"]);
    n.fail(ExitCode::NotFound, ["secret", "env", "v:missing"]);
}

#[test]
fn importing_a_project_checkout_takes_its_dot_git_too() {
    let n = Node::with_vault();
    n.write("v:kept", "x");
    let src = n.scratch().join("repo");
    fs::create_dir_all(src.join(".git")).unwrap();
    fs::write(src.join(".git/config"), b"[core]").unwrap();
    fs::write(src.join("a.txt"), b"a").unwrap();
    fs::create_dir_all(src.join("sub/.git")).unwrap();
    fs::write(src.join("sub/.git/HEAD"), b"ref").unwrap();
    fs::write(src.join("sub/b.txt"), b"b").unwrap();
    let commits = n.commits("v");
    let o = n.ok(["secret", "import", src.to_str().unwrap(), "v:dest"]);
    assert!(!o.stderr.contains("skipped"), "{}", o.stderr);
    assert!(o.out().contains("Imported 4 file(s)"), "{}", o.out());
    assert_eq!(n.commits("v"), commits + 1, "one commit");
    assert_eq!(n.ls("v:dest"), [".git/", "a.txt", "sub/"]);
    assert_eq!(n.ls("v:dest/sub"), [".git/", "b.txt"]);
    assert_eq!(n.cat("v:dest/.git/config"), b"[core]");
    assert_eq!(n.cat("v:dest/sub/.git/HEAD"), b"ref");
}
