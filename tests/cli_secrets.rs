//! End-to-end tests of vaults and of the everyday secret commands inside them
//! (write, cat, add, ls, mkdir, rm, mv, stat). `secret import` and `secret env`
//! are in `cli_secrets_import.rs`; refused paths, long names and large files in
//! `cli_secrets_edges.rs`.

mod common;

use std::fs;

use common::*;
use serde_json::Value;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

// ---------------------------------------------------------------------------
// Vaults.

#[test]
fn vault_create_list_rename_delete() {
    let n = Node::init();
    assert!(n.ok(["vault", "list"]).stdout.is_empty(), "no vaults yet");
    let o = n.ok(["vault", "create", "beta"]);
    assert!(o.out().contains("beta"), "{o:?}");
    let j = n.ok(["--json", "vault", "create", "alpha"]).json();
    assert_eq!(j["name"], "alpha");
    let alpha_id = j["id"].as_str().unwrap().to_string();
    assert_eq!(bs58::decode(&alpha_id).into_vec().unwrap().len(), 16);
    assert!(n.home.join("vaults").join(&alpha_id).join(".git").is_dir());

    // Human list: "name<TAB>id", sorted by name; the plural alias works the same.
    let text = n.ok(["vault", "list"]).out();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(lines[0], format!("alpha\t{alpha_id}"));
    assert!(lines[1].starts_with("beta\t"));
    assert_eq!(n.ok(["vaults", "list"]).out(), text);
    assert_eq!(n.ok(["vaults", "ls"]).out(), text);
    let j = n.ok(["--json", "vaults", "list"]).json();
    let created = j[0]["created"].as_i64().unwrap();
    assert!((now() - created).abs() < 120, "created {created}");

    // Rename keeps the id and the secrets.
    n.write("alpha:s", "kept");
    n.ok(["vault", "rename", "alpha", "gamma"]);
    assert_eq!(vault_names(&n), ["beta", "gamma"]);
    assert_eq!(n.vault_id("gamma"), alpha_id);
    assert_eq!(n.cat("gamma:s"), b"kept");
    n.fail(ExitCode::VaultUndefined, ["secret", "cat", "alpha:s"]);
    n.ok(["vault", "rename", "gamma", "gamma"]);
    n.fail(ExitCode::VaultDefined, ["vault", "rename", "gamma", "beta"]);
    assert_eq!(n.cat("gamma:s"), b"kept");

    // Delete needs --yes when stdin is not a terminal.
    let dir = n.vault_dir("gamma");
    n.fail(ExitCode::Usage, ["vault", "delete", "gamma"])
        .stderr_has("--yes");
    assert!(dir.is_dir());
    assert_eq!(vault_names(&n), ["beta", "gamma"]);
    assert_eq!(n.cat("gamma:s"), b"kept");
    n.ok(["vault", "delete", "gamma", "--yes"]);
    assert!(!dir.exists(), "the vault's directory is removed");
    assert_eq!(vault_names(&n), ["beta"]);
    n.fail(ExitCode::VaultUndefined, ["secret", "cat", "gamma:s"]);
    n.ok(["vaults", "delete", "-y", "beta"]);
    assert!(vault_names(&n).is_empty());
    assert_eq!(
        fs::read_dir(n.home.join("vaults")).unwrap().count(),
        0,
        "nothing left in vaults/"
    );

    // A name can be reused; it is a new vault.
    n.ok(["vault", "create", "gamma"]);
    assert_ne!(n.vault_id("gamma"), alpha_id);
    n.fail(ExitCode::NotFound, ["secret", "cat", "gamma:s"]);
}

#[test]
fn duplicate_vault_exits_6() {
    let n = Node::with_vault();
    n.write("v:s", "x");
    let before = snapshot(&n.home);
    n.fail(ExitCode::VaultDefined, ["vault", "create", "v"])
        .stderr_has("\"v\"");
    n.fail(ExitCode::VaultDefined, ["vaults", "create", "v"]);
    assert_same_tree(&before, &snapshot(&n.home), "duplicate create");
    assert_eq!(vault_names(&n), ["v"]);
}

#[test]
fn undefined_vault_exits_7_in_every_command() {
    let n = Node::with_vault();
    n.write("v:f", "x");
    let local = n.scratch_file("local.txt", b"local");
    let local_dir = n.scratch().join("localdir");
    fs::create_dir(&local_dir).unwrap();
    fs::write(local_dir.join("x"), b"x").unwrap();
    let (local, local_dir) = (
        local.to_str().unwrap().to_string(),
        local_dir.to_str().unwrap().to_string(),
    );
    let before = snapshot(&n.home);
    let cases: Vec<Vec<&str>> = vec![
        vec!["vault", "rename", "nope", "other"],
        vec!["vault", "delete", "nope"],
        vec!["vault", "delete", "nope", "--yes"],
        vec!["vault", "stat", "nope"],
        vec!["secret", "write", "nope:x"],
        vec!["secret", "add", &local, "nope:x"],
        vec!["secret", "add", &local, "nope"],
        vec!["secret", "cat", "nope:x"],
        vec!["secret", "ls", "nope"],
        vec!["secret", "ls", "nope:dir"],
        vec!["secret", "mkdir", "nope:d"],
        vec!["secret", "mkdir", "-p", "nope:d/e"],
        vec!["secret", "rm", "nope:x"],
        vec!["secret", "rm", "-r", "nope:x"],
        vec!["secret", "mv", "nope:a", "nope:b"],
        vec!["secret", "mv", "nope:a", "b"],
        vec!["secret", "mv", "v:f", "nope:b"],
        vec!["secret", "mv", "nope:a", "v:b"],
        vec!["secret", "stat", "nope:x"],
        vec!["secret", "stat", "nope"],
        vec!["secret", "import", &local_dir, "nope"],
        vec!["secret", "env", "nope:x"],
        vec!["secret", "env", "nope:x", "--", "true"],
        vec!["secrets", "cat", "nope:x"],
        vec!["version", "log", "nope"],
        vec!["version", "checkout", "nope", "latest"],
        vec!["gc", "nope"],
    ];
    for args in &cases {
        n.fail(ExitCode::VaultUndefined, args)
            .stderr_has("\"nope\"")
            .stdout_empty();
    }
    assert_same_tree(
        &before,
        &snapshot(&n.home),
        "commands on an undefined vault",
    );
    assert_eq!(n.cat("v:f"), b"x");
}

#[test]
fn invalid_vault_names_exit_8() {
    let n = Node::with_vault();
    let long = "x".repeat(256);
    let before = snapshot(&n.home);
    for name in ["", ".", "..", "a/b", "/", long.as_str()] {
        n.fail(ExitCode::InvalidName, ["vault", "create", name]);
        n.fail(ExitCode::InvalidName, ["vault", "rename", "v", name]);
    }
    assert_same_tree(&before, &snapshot(&n.home), "invalid names");
    assert_eq!(vault_names(&n), ["v"]);
    // The longest valid name, and names that only look odd, are fine.
    let longest = "y".repeat(255);
    for name in [longest.as_str(), ".hidden", "with space", "ünïcødé", "a=b"] {
        n.ok(["vault", "create", name]);
    }
    assert_eq!(vault_names(&n).len(), 6);
    n.write(&format!("{longest}:s"), "in the long-named vault");
    assert_eq!(n.cat(&format!("{longest}:s")), b"in the long-named vault");
}

#[test]
fn vault_delete_without_yes_is_refused_on_a_non_terminal() {
    let n = Node::with_vault();
    n.write("v:s", "x");
    let before = snapshot(&n.home);
    // stdin is /dev/null here, and piped text is not a confirmation either.
    n.fail(ExitCode::Usage, ["vault", "delete", "v"]);
    n.cmd()
        .args(["vault", "delete", "v"])
        .stdin("v\n")
        .run()
        .failure(ExitCode::Usage);
    assert_same_tree(&before, &snapshot(&n.home), "refused delete");
    assert_eq!(n.cat("v:s"), b"x");
}

#[test]
fn vault_stat_reports_id_created_files_bytes_commits_head() {
    let n = Node::init();
    let t0 = now();
    n.ok(["vault", "create", "v"]);
    n.write("v:one", pseudo_random(1234, 1));
    n.write("v:dir/two", pseudo_random(5000, 2));
    let s = n.vault_stat("v");
    let id = n.vault_id("v");
    let log = n.log("v", false);
    assert_eq!(s["name"], "v");
    assert_eq!(s["id"], id.as_str());
    let created = s["created"].as_i64().unwrap();
    assert!(
        created >= t0 - 1 && created <= now() + 1,
        "created {created}"
    );
    assert_eq!(s["files"], 2);
    assert_eq!(s["directories"], 1);
    assert_eq!(s["bytes"], 1234 + 5000);
    assert_eq!(s["commits"], 3);
    assert_eq!(s["commits"].as_u64().unwrap() as usize, log.len());
    assert_eq!(s["head"], log[0]["id"]);
    assert_eq!(s["at_latest"], true);

    let text = n.ok(["vault", "stat", "v"]).out();
    let field = |k: &str| -> String {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}:")))
            .unwrap_or_else(|| panic!("no {k}: in {text}"))
            .trim()
            .to_string()
    };
    assert_eq!(field("id"), id);
    assert!(field("created").ends_with("UTC"), "{text}");
    assert_eq!(field("files"), "2");
    assert_eq!(field("bytes"), "6234");
    assert_eq!(field("commits"), "3");
    assert!(
        field("head").starts_with(log[0]["id"].as_str().unwrap()),
        "{text}"
    );

    // Removing one file is seen too.
    n.ok(["secret", "rm", "v:one"]);
    let s = n.vault_stat("v");
    assert_eq!(
        (s["files"].as_u64(), s["bytes"].as_u64()),
        (Some(1), Some(5000))
    );
    assert_eq!(s["commits"], 4);
}

// ---------------------------------------------------------------------------
// Secrets.

#[test]
fn write_cat_and_cat_of_several_targets() {
    let n = Node::with_vault();
    n.ok(["vault", "create", "w"]);
    n.write("v:a", "alpha\n");
    n.write("v:deep/er/b", "beta");
    n.write("w:c", [0u8, 255, 1, 254]);
    assert_eq!(n.cat("v:a"), b"alpha\n");
    assert_eq!(n.cat("v:/deep//er/./b"), b"beta");
    let o = n.ok(["secret", "cat", "v:a", "v:deep/er/b", "w:c", "v:a"]);
    assert_eq!(o.stdout, b"alpha\nbeta\x00\xff\x01\xfealpha\n");
    // Overwrite.
    n.write("v:a", "ALPHA");
    assert_eq!(n.cat("v:a"), b"ALPHA");
    // Errors.
    n.fail(ExitCode::NotFound, ["secret", "cat", "v:missing"])
        .stdout_empty();
    n.fail(ExitCode::NotFound, ["secret", "cat", "v:nodir/x"]);
    n.fail(ExitCode::WrongKind, ["secret", "cat", "v:deep"])
        .stdout_empty();
    n.fail(ExitCode::Usage, ["secret", "cat", "v:"]);
    n.fail(ExitCode::Usage, ["secret", "cat", ":a"]);
    n.cmd()
        .args(["secret", "write", "v:deep"])
        .stdin("x")
        .run()
        .failure(ExitCode::WrongKind);
    n.cmd()
        .args(["secret", "write", "v:a/under-a-file"])
        .stdin("x")
        .run()
        .failure(ExitCode::WrongKind);
    assert_eq!(n.ls("v:deep/er"), ["b"]);
}

#[test]
fn add_a_local_file_to_a_path_a_directory_or_the_root() {
    let n = Node::with_vault();
    let data = pseudo_random(7000, 3);
    let file = n.scratch_file("local/id_rsa", &data);
    let file = file.to_str().unwrap();
    n.ok(["secret", "add", file, "v:keys/explicit.pem"]);
    assert_eq!(n.cat("v:keys/explicit.pem"), data);
    // An existing directory receives the file under its own name.
    n.ok(["secret", "add", file, "v:keys"]);
    assert_eq!(n.cat("v:keys/id_rsa"), data);
    n.ok(["secret", "add", file, "v:"]);
    n.ok(["secrets", "add", file, "v"]);
    assert_eq!(n.cat("v:id_rsa"), data);
    assert_eq!(ls_set(&n, "v"), set(&["id_rsa", "keys/"]));
    assert_eq!(ls_set(&n, "v:keys"), set(&["explicit.pem", "id_rsa"]));
    let missing = n.scratch().join("missing");
    let o = n.run(["secret", "add", missing.to_str().unwrap(), "v:x"]);
    assert_ne!(o.code, 0);
    assert_one_error_line(&o);
    assert_eq!(ls_set(&n, "v"), set(&["id_rsa", "keys/"]));
}

#[test]
fn ls_lists_names_directories_and_json() {
    let n = Node::with_vault();
    n.write("v:b-file", "12345");
    n.write("v:a-dir/inner", "x");
    n.ok(["secret", "mkdir", "v:c-empty"]);
    n.write("v:.dotfile", "");
    assert_eq!(n.ls("v"), [".dotfile", "a-dir/", "b-file", "c-empty/"]);
    assert_eq!(n.ls("v:"), n.ls("v:/"));
    assert_eq!(n.ls("v:a-dir"), ["inner"]);
    assert!(n.ls("v:c-empty").is_empty());
    assert_eq!(
        n.ok(["secret", "list", "v"]).out(),
        n.ok(["secret", "ls", "v"]).out()
    );
    assert_eq!(
        n.ok(["secrets", "ls", "v"]).out(),
        n.ok(["secret", "ls", "v"]).out()
    );

    let j = n.ok(["--json", "secret", "ls", "v"]).json();
    let arr = j.as_array().unwrap();
    assert_eq!(arr.len(), 4);
    let by_name = |name: &str| -> &Value { arr.iter().find(|e| e["name"] == name).unwrap() };
    assert_eq!(by_name("b-file")["kind"], "file");
    assert_eq!(by_name("b-file")["size"], 5);
    assert_eq!(by_name(".dotfile")["size"], 0);
    assert_eq!(by_name("a-dir")["kind"], "dir");
    assert_eq!(by_name("c-empty")["kind"], "dir");
    assert!(by_name("b-file")["mtime"].as_i64().unwrap() > 0);

    let long = n.ok(["secret", "ls", "-l", "v"]).out();
    let line = long.lines().find(|l| l.ends_with(" b-file")).unwrap();
    assert!(line.starts_with("file") && line.contains(" 5 "), "{long}");
    assert!(long
        .lines()
        .any(|l| l.starts_with("dir") && l.ends_with(" a-dir/")));

    n.fail(ExitCode::NotFound, ["secret", "ls", "v:nothing"]);
    n.fail(ExitCode::WrongKind, ["secret", "ls", "v:b-file"]);
}

#[test]
fn mkdir_and_mkdir_p() {
    let n = Node::with_vault();
    n.ok(["secret", "mkdir", "v:a"]);
    n.fail(ExitCode::Exists, ["secret", "mkdir", "v:a"]);
    n.fail(ExitCode::NotFound, ["secret", "mkdir", "v:x/y/z"]);
    assert_eq!(n.ls("v"), ["a/"]);
    n.ok(["secret", "mkdir", "-p", "v:x/y/z"]);
    n.ok(["secret", "mkdir", "--parents", "v:x/y/z"]);
    n.ok(["secret", "mkdir", "-p", "v:a"]);
    n.ok(["secret", "mkdir", "v:b", "v:c", "v:a/inner"]);
    assert_eq!(n.ls("v"), ["a/", "b/", "c/", "x/"]);
    assert_eq!(n.ls("v:x/y"), ["z/"]);
    assert_eq!(n.ls("v:a"), ["inner/"]);
    n.write("v:file", "f");
    n.fail(ExitCode::Exists, ["secret", "mkdir", "v:file"]);
    n.fail(ExitCode::WrongKind, ["secret", "mkdir", "-p", "v:file/sub"]);
    n.fail(ExitCode::Usage, ["secret", "mkdir", "v:"]);
    let j = n.ok(["--json", "secret", "stat", "v:x/y/z"]).json();
    assert_eq!(j["kind"], "dir");
}

#[test]
fn rm_files_and_directories() {
    let n = Node::with_vault();
    n.write("v:f", "f");
    n.write("v:g", "g");
    n.write("v:d/e/f", "deep");
    n.ok(["secret", "mkdir", "v:empty"]);
    n.ok(["secret", "rm", "v:f"]);
    n.fail(ExitCode::NotFound, ["secret", "cat", "v:f"]);
    n.fail(ExitCode::NotFound, ["secret", "rm", "v:f"]);
    let before = snapshot(&n.home);
    n.fail(ExitCode::WrongKind, ["secret", "rm", "v:d"])
        .stderr_has("-r");
    n.fail(ExitCode::WrongKind, ["secret", "rm", "v:d/e"]);
    assert_same_tree(&before, &snapshot(&n.home), "refused rm");
    assert_eq!(n.cat("v:d/e/f"), b"deep");
    n.ok(["secret", "rm", "v:empty"]);
    n.ok(["secret", "rm", "-r", "v:d"]);
    n.fail(ExitCode::NotFound, ["secret", "cat", "v:d/e/f"]);
    assert_eq!(n.ls("v"), ["g"]);
    n.fail(ExitCode::Usage, ["secret", "rm", "-r", "v:"]);
    n.fail(ExitCode::Usage, ["secret", "rm", "-r", "v"]);
    assert_eq!(n.cat("v:g"), b"g");
    // Nothing of the removed entries is left in the backing tree.
    let contents = n.vault_dir("v").join("contents");
    let entries: Vec<_> = fs::read_dir(&contents).unwrap().collect();
    assert_eq!(
        entries.len(),
        3,
        ".diriv, the mode record and the blob of g only"
    );
}

#[test]
fn mv_renames_moves_into_directories_and_across_vaults() {
    let n = Node::with_vault();
    n.ok(["vault", "create", "w"]);
    n.write("v:a", "A");
    n.write("v:d/x", "X");
    n.write("v:d/sub/y", "Y");
    n.ok(["secret", "mkdir", "v:target"]);

    // Rename.
    n.ok(["secret", "mv", "v:a", "v:b"]);
    n.fail(ExitCode::NotFound, ["secret", "cat", "v:a"]);
    assert_eq!(n.cat("v:b"), b"A");
    // Into an existing directory.
    n.ok(["secret", "mv", "v:b", "v:target"]);
    assert_eq!(n.cat("v:target/b"), b"A");
    // DEST without a vault is a path in the same vault.
    n.ok(["secret", "mv", "v:target/b", "c"]);
    assert_eq!(n.cat("v:c"), b"A");
    // A file replaces a file.
    n.write("v:other", "O");
    n.ok(["secret", "mv", "v:other", "v:c"]);
    assert_eq!(n.cat("v:c"), b"O");
    // A directory with its contents.
    n.ok(["secret", "mv", "v:d", "v:e"]);
    assert_eq!(n.cat("v:e/sub/y"), b"Y");
    assert_eq!(ls_set(&n, "v"), set(&["c", "e/", "target/"]));
    // Refused moves change nothing.
    n.fail(ExitCode::Usage, ["secret", "mv", "v:e", "v:e/sub"]);
    n.fail(ExitCode::NotFound, ["secret", "mv", "v:missing", "v:z"]);
    n.fail(ExitCode::NotFound, ["secret", "mv", "v:c", "v:nodir/z"]);

    // Across vaults: a file, to the root and to a path.
    n.ok(["secret", "mv", "v:c", "w:"]);
    assert_eq!(n.cat("w:c"), b"O");
    n.fail(ExitCode::NotFound, ["secret", "cat", "v:c"]);
    n.ok(["secret", "mv", "w:c", "v:back-again"]);
    assert_eq!(n.cat("v:back-again"), b"O");
    assert!(n.ls("w").is_empty());
    // A directory, into an existing directory of the other vault.
    n.ok(["secret", "mkdir", "w:into"]);
    n.ok(["secret", "mv", "v:e", "w:into"]);
    assert_eq!(n.cat("w:into/e/x"), b"X");
    assert_eq!(n.cat("w:into/e/sub/y"), b"Y");
    assert_eq!(ls_set(&n, "v"), set(&["back-again", "target/"]));
    // An existing directory of the same name is not overwritten.
    n.write("v:e/x", "other");
    n.fail(ExitCode::Exists, ["secret", "mv", "v:e", "w:into"]);
    assert_eq!(n.cat("v:e/x"), b"other");
    assert_eq!(n.cat("w:into/e/x"), b"X");
}

#[test]
fn secret_stat_describes_files_and_directories() {
    let n = Node::with_vault();
    n.write("v:dir/file", pseudo_random(4097, 4));
    let j = n.ok(["--json", "secret", "stat", "v:dir/file"]).json();
    assert_eq!(j["vault"], "v");
    assert_eq!(j["path"], "dir/file");
    assert_eq!(j["kind"], "file");
    assert_eq!(j["size"], 4097);
    assert!((now() - j["mtime"].as_i64().unwrap()).abs() < 120);
    let j = n.ok(["--json", "secret", "stat", "v:dir"]).json();
    assert_eq!(j["kind"], "dir");
    let text = n.ok(["secrets", "stat", "v:dir/file"]).out();
    assert!(text.contains("kind:     file"), "{text}");
    assert!(text.contains("size:     4097"), "{text}");
    assert!(text.contains("v:dir/file"), "{text}");
    n.fail(ExitCode::NotFound, ["secret", "stat", "v:dir/nothing"]);
    let root = n.ok(["--json", "secret", "stat", "v"]).json();
    assert_eq!(root["kind"], "dir");
}
