//! The home's own files, checked before any passphrase is tried: a damaged
//! `root.key` is corruption (exit 9 naming the file), never a wrong
//! passphrase; an old version-1 `root.key` still opens and is rewritten with
//! its checksum.

mod common;

use std::fs;

use common::*;
use pkfs::vault::protector::{parse_key_file, MAGIC};

#[test]
fn a_damaged_root_key_is_corrupt_not_a_wrong_passphrase() {
    let n = Node::with_vault();
    n.write("v:s", "x");
    let path = n.home.join("root.key");
    let good = fs::read(&path).unwrap();
    assert_eq!(good[8], 2, "root.key is written in version 2");
    let wrong = n.scratch_file("wrong", b"not the passphrase\n");
    let mut cases: Vec<(String, Vec<u8>)> = Vec::new();
    for pos in [
        10,
        11,
        15,
        40,
        good.len() / 2,
        good.len() - 40,
        good.len() - 1,
    ] {
        let mut bad = good.clone();
        bad[pos] ^= 0x01;
        cases.push((format!("byte {pos} flipped"), bad));
    }
    cases.push(("one byte short".into(), good[..good.len() - 1].to_vec()));
    cases.push(("one byte more".into(), [&good[..], b"\n"].concat()));
    for (what, bad) in cases {
        fs::write(&path, &bad).unwrap();
        for pass in [&n.passfile, &wrong] {
            n.cmd()
                .passfile(pass)
                .args(["secret", "cat", "v:s"])
                .run()
                .failure(ExitCode::Corrupt)
                .stderr_has("root.key")
                .stdout_empty();
        }
        assert_eq!(fs::read(&path).unwrap(), bad, "{what}: left as it is");
    }
    fs::write(&path, &good).unwrap();
    assert_eq!(n.cat("v:s"), b"x");
    n.cmd()
        .passfile(&wrong)
        .args(["vault", "list"])
        .run()
        .failure(ExitCode::WrongPassphrase);
}

#[test]
fn a_version_1_root_key_opens_and_is_rewritten_with_its_checksum() {
    let n = Node::with_vault();
    n.write("v:s", "x");
    let path = n.home.join("root.key");
    let (_, slots) = parse_key_file(&fs::read(&path).unwrap()).unwrap();
    assert_eq!(slots.len(), 1);
    let mut v1 = MAGIC.to_vec();
    v1.push(1);
    v1.push(slots[0].id);
    v1.extend_from_slice(&slots[0].body);
    fs::write(&path, &v1).unwrap();
    assert_eq!(n.cat("v:s"), b"x");
    let now = fs::read(&path).unwrap();
    assert_eq!(now[8], 2, "rewritten in version 2");
    assert_eq!(parse_key_file(&now).unwrap().1, slots, "the same slot");
    assert_eq!(mode_of(&path) & 0o077, 0);
    assert_eq!(n.cat("v:s"), b"x");
}

/// Every entry under `dir` (not following symlinks), with its mode.
fn modes_under(dir: &std::path::Path) -> Vec<(std::path::PathBuf, u32)> {
    let mut out = vec![(dir.to_path_buf(), mode_of(dir))];
    for ent in fs::read_dir(dir).unwrap() {
        let p = ent.unwrap().path();
        let m = fs::symlink_metadata(&p).unwrap();
        if m.is_dir() {
            out.extend(modes_under(&p));
        } else {
            out.push((p.clone(), mode_of(&p)));
        }
    }
    out
}

#[test]
fn everything_pkfs_creates_in_the_home_is_private() {
    let n = Node::with_vault();
    n.write("v:d/e/f", "x");
    n.write("v:g", "y");
    n.ok(["version", "checkout", "v", "HEAD~1"]);
    n.ok(["version", "checkout", "v", "latest"]);
    n.ok(["gc"]);
    let all = modes_under(&n.home);
    assert!(all.iter().any(|(p, _)| p.ends_with(".git/HEAD")));
    for (p, mode) in all {
        assert_eq!(mode & 0o077, 0, "{p:?} is open to others ({mode:o})");
    }
}

#[test]
fn the_homes_missing_parents_get_the_users_umask() {
    let n = Node::new();
    let home = n.scratch().join("a/b/home");
    let script = format!(
        "umask 022; exec {BIN} --home {home:?} --passfile {:?} init",
        n.passfile
    );
    let o = std::process::Command::new("/bin/sh")
        .args(["-c", &script])
        .env("PKFS_TEST_ONLY_FAST_KDF", "1")
        .env("PKFS_TEST_ONLY_ROOT_KEY", root_key(0))
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    assert_eq!(mode_of(&n.scratch().join("a")), 0o755);
    assert_eq!(mode_of(&n.scratch().join("a/b")), 0o755);
    assert_eq!(mode_of(&home), 0o700);
}

#[test]
fn an_older_homes_open_git_directory_is_made_private_at_open() {
    let n = Node::with_vault();
    n.write("v:s", "x");
    let git = fs::read_dir(n.home.join("vaults"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
        .join(".git");
    set_mode(&git, 0o755);
    assert_eq!(n.cat("v:s"), b"x");
    assert_eq!(mode_of(&git), 0o700);
}

#[test]
fn a_program_run_for_the_user_gets_the_users_umask() {
    let n = Node::with_vault();
    n.write("v:s", "x");
    let script = format!(
        "umask 027; exec {BIN} --home {:?} --passfile {:?} secret env v:s=S -- /bin/sh -c umask",
        n.home, n.passfile
    );
    let o = std::process::Command::new("/bin/sh")
        .args(["-c", &script])
        .env("PKFS_TEST_ONLY_FAST_KDF", "1")
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "0027");
}

#[test]
fn state_files_are_checked_as_ssh_checks_a_private_key() {
    let n = Node::with_vault();
    n.write("v:s", "x");
    let refused = |what: &str, needle: &str| {
        let before = snapshot(&n.home);
        let o = n.run(["secret", "cat", "v:s"]);
        assert_eq!(o.code, ExitCode::Failure as i32, "{what}: {o:?}");
        assert_one_error_line(&o);
        o.stderr_has(needle).stdout_empty();
        assert_same_tree(&before, &snapshot(&n.home), what);
    };
    for f in ["root.key", "root.pub", "metadata"] {
        let p = n.home.join(f);
        for mode in [0o644, 0o640, 0o604, 0o660] {
            set_mode(&p, mode);
            refused(&format!("{f} {mode:o}"), "chmod 600");
        }
        set_mode(&p, 0o600);
        // A symlink where the file should be, even to the genuine file.
        let real = n.scratch().join(format!("real-{f}"));
        fs::rename(&p, &real).unwrap();
        std::os::unix::fs::symlink(&real, &p).unwrap();
        refused(&format!("{f} as a symlink"), "symlink");
        fs::remove_file(&p).unwrap();
        fs::rename(&real, &p).unwrap();
        assert_eq!(n.cat("v:s"), b"x");
    }
}

#[test]
fn a_home_or_state_file_owned_by_another_user_is_refused() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("needs root (to give a file away); skipped");
        return;
    }
    let n = Node::with_vault();
    n.write("v:s", "x");
    let chown =
        |p: &std::path::Path, uid: u32| std::os::unix::fs::chown(p, Some(uid), None).unwrap();
    for p in [
        n.home.clone(),
        n.home.join("root.key"),
        n.home.join("metadata"),
    ] {
        chown(&p, 65534);
        let o = n.run(["secret", "cat", "v:s"]);
        assert_eq!(o.code, ExitCode::Failure as i32, "{p:?}: {o:?}");
        o.stderr_has("owned by uid 65534").stdout_empty();
        chown(&p, 0);
    }
    assert_eq!(n.cat("v:s"), b"x");
    // init refuses a directory someone else owns.
    let m = Node::new();
    fs::create_dir(&m.home).unwrap();
    chown(&m.home, 65534);
    m.run(["init"])
        .failure(ExitCode::Failure)
        .stderr_has("owned by uid");
}
