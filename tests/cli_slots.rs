//! Protector slots without a daemon: `init --shares`, `--share-file` k times,
//! `key add/list/remove/rekey`, the recovery code, key files, bad and
//! duplicate shares, and a crash in the middle of each slot change.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::{contains, files_under, ExitCode, Node};

/// A node whose only slot is a 3-of-5 split, shares in `<tmp>/shares`.
fn shares_node() -> (Node, Vec<PathBuf>) {
    let n = Node::new();
    let dir = n.scratch().join("shares");
    fs::create_dir(&dir).unwrap();
    n.cmd()
        .no_passfile()
        .args(["init", "--shares", "5", "--threshold", "3", "--share-dir"])
        .arg(&dir)
        .run()
        .success();
    let files: Vec<PathBuf> = (1..=5)
        .map(|i| dir.join(format!("share-{i}.txt")))
        .collect();
    (n, files)
}

/// Run `args` on `n` opened with the share files `shares` (no passphrase).
fn with_shares(n: &Node, shares: &[&Path], args: &[&str]) -> common::Output {
    let mut c = n.cmd().no_passfile();
    for s in shares {
        c = c.arg("--share-file").arg(s);
    }
    c.args(args).run()
}

fn slots(n: &Node) -> Vec<serde_json::Value> {
    n.cmd()
        .no_passfile()
        .args(["--json", "key", "list"])
        .run()
        .success()
        .json()
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn init_with_shares_writes_private_files_and_k_shares_open_the_node() {
    let (n, f) = shares_node();
    for p in &f {
        assert_eq!(fs::metadata(p).unwrap().permissions().mode() & 0o777, 0o600);
        let line = fs::read_to_string(p).unwrap();
        assert!(line.starts_with("pkfs-share1-") && line.lines().count() == 1);
    }
    let s = slots(&n);
    assert_eq!(s.len(), 1);
    assert_eq!(s[0]["kind"], "shares");
    assert_eq!(
        (s[0]["threshold"].as_u64(), s[0]["shares"].as_u64()),
        (Some(3), Some(5))
    );
    // Any three (in any order) open it.
    with_shares(&n, &[&f[4], &f[1], &f[2]], &["vault", "create", "v"]).success();
    with_shares(&n, &[&f[0], &f[3], &f[4]], &["vault", "list"]).success();
    // Two, a share given three times, or the passphrase: sealed.
    with_shares(&n, &[&f[0], &f[1]], &["vault", "list"])
        .failure(ExitCode::Sealed)
        .stderr_has("2/3");
    with_shares(&n, &[&f[0], &f[0], &f[0]], &["vault", "list"])
        .failure(ExitCode::Sealed)
        .stderr_has("1/3");
    n.fail(ExitCode::Sealed, ["vault", "list"])
        .stderr_has("node is sealed");
    // Another init over the same share files is refused, nothing overwritten.
    let before = fs::read(&f[0]).unwrap();
    let m = Node::new();
    m.cmd()
        .no_passfile()
        .args(["init", "--shares", "5", "--threshold", "3", "--share-dir"])
        .arg(f[0].parent().unwrap())
        .run()
        .failure(ExitCode::Exists);
    assert_eq!(fs::read(&f[0]).unwrap(), before);
    assert!(!m.home.join("root.key").exists());
    // Without --share-dir and no terminal, nothing is printed.
    m.cmd()
        .no_passfile()
        .args(["init", "--shares", "3", "--threshold", "2"])
        .run()
        .failure(ExitCode::Usage)
        .stdout_empty();
}

#[test]
fn bad_shares_are_refused_as_such() {
    let (n, f) = shares_node();
    let good = fs::read_to_string(&f[0]).unwrap();
    let line = good.trim_end();
    // One character changed in the value.
    let mut typo = line.as_bytes().to_vec();
    let i = line.len() - 20;
    typo[i] = if typo[i] == b'0' { b'1' } else { b'0' };
    let typo = n.scratch_file("typo.txt", &typo);
    with_shares(&n, &[&typo, &f[1], &f[2]], &["vault", "list"])
        .failure(ExitCode::BadShare)
        .stderr_has("checksum");
    let cut = n.scratch_file("cut.txt", &line.as_bytes()[..line.len() - 9]);
    with_shares(&n, &[&cut, &f[1], &f[2]], &["vault", "list"]).failure(ExitCode::BadShare);
    // A share of another split of this node (same test root key).
    let (_other, g) = shares_node();
    with_shares(&n, &[&g[0], &f[1], &f[2]], &["vault", "list"])
        .failure(ExitCode::BadShare)
        .stderr_has("split");
    // A share of another node.
    let m = Node::new();
    let mdir = m.scratch().join("shares");
    fs::create_dir(&mdir).unwrap();
    m.cmd()
        .no_passfile()
        .env("PKFS_TEST_ONLY_ROOT_KEY", common::root_key(1))
        .args(["init", "--shares", "3", "--threshold", "2", "--share-dir"])
        .arg(&mdir)
        .run()
        .success();
    with_shares(
        &n,
        &[&mdir.join("share-1.txt"), &f[1], &f[2]],
        &["vault", "list"],
    )
    .failure(ExitCode::BadShare)
    .stderr_has("not this node");
    let foreign = line.replacen("pkfs-share1-", "pkfs-share1-x", 1);
    let foreign = n.scratch_file("foreign.txt", foreign.as_bytes());
    with_shares(&n, &[&foreign, &f[1], &f[2]], &["vault", "list"]).failure(ExitCode::BadShare);
    // The error never echoes the share.
    let out = with_shares(&n, &[&typo, &f[1], &f[2]], &["vault", "list"]);
    let value = &line[line.len() - 73..line.len() - 9];
    assert!(!out.stderr.contains(value), "{}", out.stderr);
}

#[test]
fn slots_added_listed_removed_and_the_last_is_refused() {
    let (n, f) = shares_node();
    let three = [f[0].as_path(), f[1].as_path(), f[2].as_path()];
    let newpass = n.scratch_file("newpass", b"marker-pass-0xC0FFEE\n");
    let mut c = n.cmd().no_passfile();
    for s in three {
        c = c.arg("--share-file").arg(s);
    }
    c.args(["key", "add", "passphrase", "--new-passfile"])
        .arg(&newpass)
        .run()
        .success();
    n.cmd()
        .passfile(&newpass)
        .args(["vault", "create", "w"])
        .run()
        .success();
    let keyfile = n.scratch_file("key.bin", &common::pseudo_random(64, 7));
    n.cmd()
        .passfile(&newpass)
        .args(["key", "add", "keyfile"])
        .arg(&keyfile)
        .run()
        .success();
    n.cmd()
        .no_passfile()
        .arg("--key-file")
        .arg(&keyfile)
        .args(["vault", "list"])
        .run()
        .success();
    let short = n.scratch_file("short.bin", b"too short");
    n.cmd()
        .passfile(&newpass)
        .args(["key", "add", "keyfile"])
        .arg(&short)
        .run()
        .failure(ExitCode::Usage);
    let s = slots(&n);
    let kinds: Vec<&str> = s.iter().map(|x| x["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["shares", "passphrase", "keyfile"]);
    // Vault data and metadata are untouched by slot changes.
    let before: Vec<(PathBuf, Vec<u8>)> = files_under(&n.home)
        .into_iter()
        .filter(|p| !p.ends_with("root.key") && !p.ends_with("lock"))
        .map(|p| (p.clone(), fs::read(&p).unwrap()))
        .collect();
    let id = s[0]["slot"].as_str().unwrap();
    n.cmd()
        .passfile(&newpass)
        .args(["key", "remove", id])
        .run()
        .success();
    with_shares(&n, &three, &["vault", "list"]).failure(ExitCode::BadShare);
    let kf = s[2]["slot"].as_str().unwrap();
    n.cmd()
        .passfile(&newpass)
        .args(["key", "remove", kf])
        .run()
        .success();
    let last = s[1]["slot"].as_str().unwrap();
    n.cmd()
        .passfile(&newpass)
        .args(["key", "remove", last])
        .run()
        .failure(ExitCode::Usage)
        .stderr_has("last slot");
    for (p, bytes) in before {
        assert_eq!(fs::read(&p).unwrap(), bytes, "{} changed", p.display());
    }
    assert_eq!(slots(&n).len(), 1);
}

#[test]
fn a_recovery_code_resets_a_lost_passphrase() {
    let n = Node::init();
    n.ok(["vault", "create", "v"]);
    n.write("v:s", "kept");
    let out = n.ok(["key", "add", "recovery"]).out();
    let words = out.lines().last().unwrap().to_string();
    assert_eq!(words.split(' ').count(), 24);
    // The passphrase is lost; the words open the node and set a new one.
    let newpass = n.scratch_file("newpass", b"a brand new passphrase\n");
    n.cmd()
        .no_passfile()
        .args(["passwd", "--recovery", "--new-passfile"])
        .arg(&newpass)
        .stdin(format!("{words}\n"))
        .run()
        .success();
    n.fail(ExitCode::WrongPassphrase, ["vault", "list"]);
    let cat = n
        .cmd()
        .passfile(&newpass)
        .args(["secret", "cat", "v:s"])
        .run()
        .success();
    assert_eq!(cat.stdout, b"kept");
    // The recovery slot stays; a wrong code is refused.
    let kinds: Vec<String> = slots(&n)
        .iter()
        .map(|x| x["kind"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(kinds, ["recovery", "passphrase"]);
    let mut bad: Vec<&str> = words.split(' ').collect();
    bad[23] = if bad[23] == "zoo" { "abandon" } else { "zoo" };
    let bad_run = n
        .cmd()
        .no_passfile()
        .args(["passwd", "--recovery", "--new-passfile"])
        .arg(&newpass)
        .stdin(bad.join(" "))
        .run();
    assert!(matches!(bad_run.code, 3 | 19), "{bad_run:?}");
    // The marker words and passphrases never reach the home.
    for p in files_under(&n.home) {
        let bytes = fs::read(&p).unwrap_or_default();
        assert!(!contains(&bytes, words.as_bytes()), "{}", p.display());
        assert!(
            !contains(&bytes, b"a brand new passphrase"),
            "{}",
            p.display()
        );
    }
}

#[test]
fn rekey_retires_the_old_shares() {
    let (n, f) = shares_node();
    with_shares(&n, &[&f[0], &f[1], &f[2]], &["vault", "create", "v"]).success();
    let newdir = n.scratch().join("new");
    fs::create_dir(&newdir).unwrap();
    let dir = newdir.display().to_string();
    with_shares(
        &n,
        &[&f[0], &f[1], &f[2]],
        &[
            "key",
            "rekey",
            "--shares",
            "3",
            "--threshold",
            "2",
            "--share-dir",
            &dir,
        ],
    )
    .success();
    with_shares(&n, &[&f[0], &f[1], &f[2]], &["vault", "list"])
        .failure(ExitCode::BadShare)
        .stderr_has("rekey");
    let g: Vec<PathBuf> = (1..=3)
        .map(|i| newdir.join(format!("share-{i}.txt")))
        .collect();
    let out = with_shares(&n, &[&g[2], &g[0]], &["vault", "list"]).success();
    assert!(out.out().contains('v'));
    assert_eq!(slots(&n).len(), 1);
}

/// Kill the command at `point`; the node must open as before with `shares`.
fn crash_at(n: &Node, point: &str, shares: &[&Path], args: &[&str]) {
    let key_before = fs::read(n.home.join("root.key")).unwrap();
    let mut c = n.cmd().no_passfile().env("PKFS_TEST_ONLY_CRASH_AT", point);
    for s in shares {
        c = c.arg("--share-file").arg(s);
    }
    let out = c.args(args).run();
    assert_eq!(out.code, 137, "{point}: {out:?}");
    with_shares(n, shares, &["vault", "list"]).success();
    let after = fs::read(n.home.join("root.key")).unwrap();
    if point.ends_with("-after-rename") {
        assert_ne!(after, key_before, "{point}");
    } else {
        assert_eq!(after, key_before, "{point}");
    }
    let temps: Vec<_> = fs::read_dir(&n.home)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
        .collect();
    // A leftover temp file is removed by the next unlock.
    assert!(temps.is_empty(), "{point}: {temps:?}");
}

#[test]
fn a_crash_in_any_slot_change_leaves_the_node_openable() {
    let (n, f) = shares_node();
    let three = [f[0].as_path(), f[1].as_path(), f[2].as_path()];
    with_shares(&n, &three, &["vault", "create", "v"]).success();
    let newpass = n.scratch_file("np", b"another passphrase\n");
    let np = newpass.display().to_string();
    for point in ["slot-add-before-write", "slot-add", "slot-add-after-rename"] {
        crash_at(
            &n,
            point,
            &three,
            &["key", "add", "passphrase", "--new-passfile", &np],
        );
    }
    let newdir = n.scratch().join("rk");
    for point in ["slot-replace-before-write", "slot-replace"] {
        let _ = fs::remove_dir_all(&newdir);
        fs::create_dir(&newdir).unwrap();
        let d = newdir.display().to_string();
        crash_at(
            &n,
            point,
            &three,
            &[
                "key",
                "rekey",
                "--shares",
                "3",
                "--threshold",
                "2",
                "--share-dir",
                &d,
            ],
        );
        // The new shares were written, but name a split the node lacks.
        let g = newdir.join("share-1.txt");
        let h = newdir.join("share-2.txt");
        with_shares(&n, &[&g, &h], &["vault", "list"]).failure(ExitCode::BadShare);
    }
    let id = slots(&n)[1]["slot"].as_str().unwrap().to_string();
    crash_at(&n, "slot-remove", &three, &["key", "remove", &id]);
    assert_eq!(slots(&n).len(), 2);
}

#[test]
fn without_a_share_dir_the_shares_are_printed_on_a_terminal_once() {
    let n = Node::new();
    let cmd = format!(
        "{} --home {} init --shares 3 --threshold 2",
        common::BIN,
        n.home.display()
    );
    let (ok, shown) = common::fixtures::on_a_terminal(&cmd);
    assert!(ok, "{shown}");
    let lines: Vec<String> = shown
        .lines()
        .filter_map(|l| l.split_once(": ").map(|(_, s)| s.trim().to_string()))
        .filter(|s| s.starts_with("pkfs-share1-"))
        .collect();
    assert_eq!(lines.len(), 3, "{shown}");
    // Any two of what was shown open the node; nothing was written.
    let a = n.scratch_file("a", lines[0].as_bytes());
    let b = n.scratch_file("b", lines[2].as_bytes());
    with_shares(&n, &[&a, &b], &["vault", "list"]).success();
    for p in files_under(&n.home) {
        let bytes = fs::read(&p).unwrap();
        assert!(!contains(&bytes, lines[1].as_bytes()), "{}", p.display());
    }
}
