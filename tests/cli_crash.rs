//! Crash consistency of the node's multi-file updates: `key rotate-root`,
//! `vault create`, `vault rename`, `vault delete` and `version checkout` stopped at named points
//! (`PKFS_TEST_ONLY_CRASH_AT`, which `_exit(137)`s there) and by real SIGKILLs
//! at random moments. Afterwards the node must open with the same passphrase and
//! show either the old or the new state, whole, with every secret readable; a
//! root key is never lost.

mod common;

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use pkfs::crypto::kdf::Argon2Params;
use pkfs::crypto::rsa::RootKeypair;
use pkfs::vault::protector::open_key_file;
use pkfs::vault::Passphrase;
use zeroize::Zeroizing;

const CRASH: &str = "PKFS_TEST_ONLY_CRASH_AT";
/// What `crash_point` exits with.
const CRASHED: i32 = 137;

fn setup(n: &Node) -> Vec<(String, Vec<u8>)> {
    common::fixtures::secrets_in_two_vaults(n)
}

fn vault_names(n: &Node) -> Vec<String> {
    let j = n.ok(["--json", "vault", "list"]).json();
    let mut names: Vec<String> = j
        .as_array()
        .unwrap_or_else(|| panic!("vault list --json: {j}"))
        .iter()
        .map(|v| v["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

/// Every secret reads back, and every listed vault's history reads.
fn assert_whole(n: &Node, secrets: &[(String, Vec<u8>)]) {
    for (t, d) in secrets {
        assert_eq!(&n.cat(t), d, "{t} reads back");
    }
    for v in vault_names(n) {
        assert!(n.commits(&v) >= 1, "vault {v} has a history");
    }
}

/// Node ids of every root key file of the home (`root.key`, `rotate/root.key`)
/// that opens with the test passphrase.
fn openable_root_keys(home: &Path) -> Vec<String> {
    let pp = Passphrase::new(
        Zeroizing::new(PASSPHRASE.as_bytes().to_vec()),
        Argon2Params::TEST_ONLY,
    );
    let mut ids = Vec::new();
    for f in [home.join("root.key"), home.join("rotate/root.key")] {
        let Ok(bytes) = fs::read(&f) else { continue };
        if let Ok(der) = open_key_file(&pp, &bytes) {
            if let Ok(k) = RootKeypair::from_pkcs8_der(&der) {
                ids.push(k.public().node_id());
            }
        }
    }
    ids
}

fn no_temp_files(home: &Path) {
    let temps: Vec<String> = fs::read_dir(home)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".tmp-"))
        .collect();
    assert!(temps.is_empty(), "stale temporary files: {temps:?}");
}

fn crash(n: &Node, point: &str, args: &[&str], root_key_index: usize) {
    let o = n
        .cmd()
        .env(CRASH, point)
        .env("PKFS_TEST_ONLY_ROOT_KEY", root_key(root_key_index))
        .args(args)
        .run();
    assert_eq!(o.code, CRASHED, "{point}: the command died there: {o:?}");
}

#[test]
fn rotate_root_killed_at_each_point_leaves_old_or_new() {
    // (point, whether the new key must have won)
    let points = [
        ("rotate-journal-written", false),
        ("rotate-committed", true),
        ("rotate-midway", true),
    ];
    for (point, new_wins) in points {
        let n = Node::with_vault();
        let secrets = setup(&n);
        let commits = n.commits("v");
        crash(&n, point, &["key", "rotate-root"], 1);
        // Before any recovery: some root key on disk opens with the passphrase,
        // and the one that must win is among them.
        let ids = openable_root_keys(&n.home);
        let winner = key_node_id(if new_wins { 1 } else { 0 });
        assert!(ids.contains(&winner), "{point}: {ids:?} lacks {winner}");
        if point != "rotate-journal-written" {
            assert!(n.home.join("rotate/COMMIT").exists(), "{point}");
        }
        // A wrong passphrase neither recovers nor discards anything.
        let before = snapshot(&n.home);
        n.cmd()
            .passfile(n.scratch_file("wrong", b"wrong\n"))
            .args(["vault", "list"])
            .run()
            .failure(ExitCode::WrongPassphrase);
        if new_wins {
            assert_same_tree(&before, &snapshot(&n.home), "wrong passphrase");
        }
        // The right one: the old or the new node, whole.
        assert_eq!(vault_names(&n), ["v", "w"], "{point}");
        assert!(!n.home.join("rotate").exists(), "{point}: journal resolved");
        assert_eq!(node_id_of_root_pub(&n.home), winner, "{point}");
        assert_eq!(
            openable_root_keys(&n.home),
            std::slice::from_ref(&winner),
            "{point}"
        );
        no_temp_files(&n.home);
        assert_whole(&n, &secrets);
        assert_eq!(n.commits("v"), commits, "{point}: history untouched");
        // And the node rotates normally afterwards.
        let next = if new_wins { 0 } else { 1 };
        n.cmd()
            .env("PKFS_TEST_ONLY_ROOT_KEY", root_key(next))
            .args(["key", "rotate-root"])
            .run()
            .success();
        assert_eq!(node_id_of_root_pub(&n.home), key_node_id(next));
        assert_whole(&n, &secrets);
    }
}

#[test]
fn vault_create_killed_leaves_no_vault_and_can_be_retried() {
    for point in ["vault-create-before-metadata", "metadata-before-rename"] {
        let n = Node::with_vault();
        let secrets = setup(&n);
        crash(&n, point, &["vault", "create", "x"], 0);
        assert_eq!(vault_names(&n), ["v", "w"], "{point}");
        assert_eq!(vault_dirs(&n), 2, "{point}: the half-made vault is removed");
        no_temp_files(&n.home);
        assert_whole(&n, &secrets);
        n.ok(["vault", "create", "x"]);
        n.write("x:s", "in x");
        assert_eq!(n.cat("x:s"), b"in x");
        assert_eq!(vault_names(&n), ["v", "w", "x"]);
    }
}

#[test]
fn vault_rename_killed_keeps_the_old_name() {
    let n = Node::with_vault();
    let secrets = setup(&n);
    crash(
        &n,
        "metadata-before-rename",
        &["vault", "rename", "v", "v2"],
        0,
    );
    assert_eq!(vault_names(&n), ["v", "w"]);
    no_temp_files(&n.home);
    assert_whole(&n, &secrets);
    n.ok(["vault", "rename", "v", "v2"]);
    assert_eq!(vault_names(&n), ["v2", "w"]);
    assert_eq!(n.cat("v2:top"), b"top secret");
}

#[test]
fn vault_delete_killed_leaves_it_whole_or_gone() {
    // Before the table is replaced: the vault is still there, whole.
    let n = Node::with_vault();
    let secrets = setup(&n);
    crash(
        &n,
        "metadata-before-rename",
        &["vault", "delete", "w", "--yes"],
        0,
    );
    assert_eq!(vault_names(&n), ["v", "w"]);
    no_temp_files(&n.home);
    assert_whole(&n, &secrets);

    // After it, before the directory is removed: the vault is gone; the rest reads.
    crash(
        &n,
        "vault-delete-before-remove",
        &["vault", "delete", "w", "--yes"],
        0,
    );
    assert_eq!(vault_names(&n), ["v"]);
    assert_eq!(
        vault_dirs(&n),
        1,
        "the deleted vault's directory is removed"
    );
    n.fail(ExitCode::VaultUndefined, ["secret", "cat", "w:other"]);
    assert_whole(&n, &secrets[..2]);
    // The name is free again.
    n.ok(["vault", "create", "w"]);
    assert!(n.ls("w:").is_empty());
}

/// How many vault directories the home holds. A directory nobody marked as
/// disposable is never removed, whatever the table says.
fn vault_dirs(n: &Node) -> usize {
    let dirs = fs::read_dir(n.home.join("vaults")).unwrap();
    let dirs: Vec<_> = dirs.map(|e| e.unwrap().path()).collect();
    for d in &dirs {
        assert!(!d.join("unlisted-ok").exists(), "{d:?} still marked");
    }
    dirs.len()
}

/// A tiny xorshift generator: the test needs spread, not quality.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// `pkfs key rotate-root` to test key `key`, started but not waited for.
fn spawn_rotate(n: &Node, key: usize) -> std::process::Child {
    let mut c = Command::new(BIN);
    clean_env(&mut c);
    c.arg("--home")
        .arg(&n.home)
        .arg("--passfile")
        .arg(&n.passfile)
        .args(["key", "rotate-root"])
        .env("PKFS_TEST_ONLY_FAST_KDF", "1")
        .env("PKFS_TEST_ONLY_ROOT_KEY", root_key(key))
        .env("XDG_DATA_HOME", n.scratch().join("xdg"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c.spawn().expect("spawning pkfs")
}

#[test]
fn rotate_root_sigkilled_at_random_moments_stays_consistent() {
    let n = Node::with_vault();
    let secrets = setup(&n);
    let ids = [key_node_id(0), key_node_id(1)];
    // How long one rotation takes here, to spread the kills over it.
    let t = Instant::now();
    let status = spawn_rotate(&n, 1).wait().unwrap();
    assert!(status.success());
    let full = t.elapsed();
    let mut current = 1;
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("one rotation takes {full:?}; seed {seed}");
    let mut rng = Rng(seed);
    let mut killed = 0;
    for i in 0..10 {
        let target = 1 - current;
        let delay = Duration::from_micros(rng.next() % (full.as_micros() as u64 * 6 / 5 + 1));
        let mut child = spawn_rotate(&n, target);
        std::thread::sleep(delay);
        // SIGKILL (a no-op if it already finished).
        let _ = child.kill();
        let status = child.wait().unwrap();
        if status.code().is_none() {
            killed += 1;
        }
        // Never both keys lost: some root key on disk opens.
        let on_disk = openable_root_keys(&n.home);
        assert!(
            !on_disk.is_empty(),
            "round {i} ({delay:?}): no root key opens"
        );
        // The next command resolves the journal: old or new node, whole.
        assert_eq!(vault_names(&n), ["v", "w"], "round {i}");
        assert!(!n.home.join("rotate").exists(), "round {i}");
        no_temp_files(&n.home);
        let now = node_id_of_root_pub(&n.home);
        current = ids
            .iter()
            .position(|id| *id == now)
            .unwrap_or_else(|| panic!("round {i}: unknown node id {now}"));
        assert!(
            current == target || status.code().is_none(),
            "round {i}: a rotation that finished ({status:?}) must have taken effect"
        );
        assert_eq!(
            openable_root_keys(&n.home),
            std::slice::from_ref(&now),
            "round {i}"
        );
        assert_whole(&n, &secrets);
    }
    eprintln!("{killed} of 10 rotations were killed part-way");
}

#[test]
fn an_unlisted_vault_directory_without_the_mark_is_kept() {
    // Say, a vault whose record is missing from a `metadata` restored from an
    // older backup: its data must survive until the user sorts it out.
    let n = Node::with_vault();
    let stray = n.home.join("vaults/unknown-id");
    fs::create_dir_all(stray.join("contents")).unwrap();
    fs::write(stray.join("contents/blob"), b"data").unwrap();
    assert_eq!(vault_names(&n), ["v"]);
    assert_eq!(fs::read(stray.join("contents/blob")).unwrap(), b"data");
    // The same directory, marked as left by a create or delete, goes.
    fs::write(stray.join("unlisted-ok"), b"").unwrap();
    assert_eq!(vault_names(&n), ["v"]);
    assert!(!stray.exists());
    assert_eq!(vault_dirs(&n), 1);
}

#[test]
fn checkout_killed_after_moving_dropped_dirs_is_finished_by_the_next_command() {
    let n = Node::with_vault();
    n.write("v:keep", "kept");
    n.write("v:d/e/x", "x");
    n.write("v:d/y", "y");
    let trash = n.vault_dir("v").join("trash");
    crash(
        &n,
        "checkout-after-trash",
        &["version", "checkout", "v", "HEAD~2"],
        0,
    );
    let moved = fs::read_dir(&trash).unwrap().count();
    assert_eq!(moved, 1, "d/ was moved to the trash before the crash");
    // The next command finishes the checkout and empties the trash.
    assert_eq!(n.ls("v:"), ["keep"]);
    assert_eq!(fs::read_dir(&trash).unwrap().count(), 0);
    n.ok(["version", "checkout", "v", "latest"]);
    assert_eq!(n.cat("v:d/e/x"), b"x");
    assert_eq!(n.cat("v:d/y"), b"y");
    assert_eq!(n.cat("v:keep"), b"kept");
}
