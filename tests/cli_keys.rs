//! `pkfs keys` without a mount: the node is opened with the passphrase and
//! `HOME/keys` used directly.

mod common;

use std::path::PathBuf;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use common::{find_plaintext, root_key_pem, ExitCode, Node};
use pkfs::crypto::rsa::RootKeypair;
use pkfs::crypto::SymKey;
use pkfs::keys::backup::{self, Backup};
use pkfs::keys::KeyEntry;
use serde_json::Value;

const DAY: i64 = 86_400;

fn now() -> i64 {
    pkfs::keys::now_unix()
}

/// `keys get` printed as one JSON line: (id, key bytes).
fn get(n: &Node, args: &[&str]) -> (String, Vec<u8>) {
    let mut a = vec!["keys", "get"];
    a.extend_from_slice(args);
    let out = n.ok(a);
    let text = out.out();
    assert_eq!(text.lines().count(), 1, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v.as_object().unwrap().len(), 2, "{v}");
    let key = STANDARD.decode(v["key"].as_str().unwrap()).unwrap();
    assert_eq!(key.len(), 32);
    (v["id"].as_str().unwrap().to_string(), key)
}

/// The backup recipient's keypair (test root key 1): (public PEM file,
/// private PEM file).
fn recipient(n: &Node) -> (PathBuf, PathBuf) {
    let pem = root_key_pem(1);
    let kp = RootKeypair::from_pkcs8_pem(&pem).unwrap();
    let public = n.scratch_file("recipient.pub", kp.public().to_pem().as_bytes());
    let private = n.scratch_file("recipient.key", pem.as_bytes());
    (public, private)
}

/// A backup file of `owner` with the given (service, id, created, key) keys,
/// encrypted to the recipient: keys with creation times in the past.
fn backdated_backup(n: &Node, owner: &str, keys: &[(&str, &str, i64, [u8; 32])]) -> PathBuf {
    let kp = RootKeypair::from_pkcs8_pem(&root_key_pem(1)).unwrap();
    let mut b = Backup {
        owner: owner.into(),
        services: Default::default(),
    };
    for (service, id, created, key) in keys {
        b.services
            .entry(service.to_string())
            .or_default()
            .push(KeyEntry {
                id: id.to_string(),
                created: *created,
                key: SymKey::from_bytes(*key),
            });
    }
    n.scratch_file(
        &format!("backdated-{owner}.bak"),
        &backup::seal(kp.public(), &b),
    )
}

#[test]
fn default_key_is_made_once_and_found_by_id() {
    let n = Node::init();
    let (id, key) = get(&n, &["svc"]);
    assert_eq!(get(&n, &["svc"]), (id.clone(), key.clone()));
    assert_eq!(get(&n, &["svc", "--id", &id]), (id.clone(), key.clone()));
    // --json changes nothing: the answer is JSON already.
    assert_eq!(get(&n, &["svc", "--json"]).0, id);
    // Another owner or service has its own key.
    let (id2, key2) = get(&n, &["svc", "--owner", "alice"]);
    assert_ne!((&id2, &key2), (&id, &key));
    // No such key: its own exit code, one clear line.
    n.fail(ExitCode::NoSuchKey, ["keys", "get", "svc", "--id", "nope"])
        .stderr_has("no key \"nope\"");
    n.fail(
        ExitCode::NoSuchKey,
        ["keys", "get", "svc", "--owner", "alice", "--id", &id],
    );
    // list: owners, services, ids; never a key.
    let list = n.ok(["keys", "list", "--json"]).json();
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&id.as_str()) && ids.contains(&id2.as_str()));
    let text = n.ok(["keys", "list"]).out();
    assert!(text.contains(&id) && text.contains("alice"), "{text}");
    let alice = n.ok(["keys", "list", "--owner", "alice", "--json"]).json();
    assert_eq!(alice.as_array().unwrap().len(), 1);
    for k in [&key, &key2] {
        assert!(!text.contains(&STANDARD.encode(k)));
        assert!(!list.to_string().contains(&STANDARD.encode(k)));
    }
    // The keys are nowhere in the home in the clear (nor encoded).
    let found = find_plaintext(&n.home, &[&key, &key2]);
    assert!(found.is_empty(), "{found:?}");
    // A wrong passphrase opens nothing.
    let bad = n.scratch_file("badpass", b"wrong\n");
    n.cmd()
        .passfile(bad)
        .args(["keys", "get", "svc"])
        .run()
        .failure(ExitCode::WrongPassphrase);
}

#[test]
fn default_then_expired_then_new_with_backdated_keys() {
    let n = Node::init();
    let (_, private) = recipient(&n);
    let t = now();
    // A default key made 31 days ago, and one made 5 years ago.
    let file = backdated_backup(
        &n,
        "o",
        &[
            ("svc", "ancient", t - 5 * 365 * DAY, [1; 32]),
            ("svc", "month", t - 31 * DAY, [2; 32]),
        ],
    );
    n.ok([
        "keys",
        "restore-owner",
        file.to_str().unwrap(),
        "--backup-key",
        private.to_str().unwrap(),
    ]);
    // 31 days is older than the default 30: a new default.
    let (new_id, new_key) = get(&n, &["svc", "--owner", "o"]);
    assert!(new_id != "month" && new_id != "ancient");
    assert_ne!(new_key, [2; 32]);
    assert_eq!(get(&n, &["svc", "--owner", "o"]).0, new_id);
    // Years later, each key is still there by id, byte for byte.
    assert_eq!(
        get(&n, &["svc", "--owner", "o", "--id", "ancient"]),
        ("ancient".into(), vec![1; 32])
    );
    assert_eq!(
        get(&n, &["svc", "--owner", "o", "--id", "month"]).1,
        vec![2; 32]
    );
    // With a longer expiration, a 31-day-old default would have stayed.
    let file = backdated_backup(&n, "p", &[("svc", "p-month", t - 31 * DAY, [3; 32])]);
    n.ok(["keys", "config", "--expiration-days", "60"]);
    assert_eq!(
        n.ok(["keys", "config", "--json"]).json()["expiration_days"],
        60
    );
    n.ok([
        "keys",
        "restore-owner",
        file.to_str().unwrap(),
        "--backup-key",
        private.to_str().unwrap(),
    ]);
    assert_eq!(get(&n, &["svc", "--owner", "p"]).0, "p-month");
    n.fail(
        ExitCode::Usage,
        ["keys", "config", "--expiration-days", "0"],
    );
}

#[test]
fn delete_owner_then_restore_owner_gives_the_same_keys() {
    let n = Node::init();
    let (public, private) = recipient(&n);
    let a = get(&n, &["s1", "--owner", "o"]);
    let b = get(&n, &["s2", "--owner", "o"]);
    let other = get(&n, &["s1", "--owner", "keep"]);
    let bak = n.scratch().join("o.bak");
    let old_keys_file = std::fs::read(n.home.join("keys")).unwrap();
    // No recipient, no deletion (clap's usage error).
    let o = n.run([
        "keys",
        "delete-owner",
        "o",
        "--backup",
        bak.to_str().unwrap(),
    ]);
    assert_eq!(o.code, ExitCode::Usage as i32);
    assert!(o.stderr.contains("--backup-to"), "{}", o.stderr);
    assert!(!bak.exists());
    n.ok([
        "keys",
        "delete-owner",
        "o",
        "--backup",
        bak.to_str().unwrap(),
        "--backup-to",
        public.to_str().unwrap(),
    ]);
    // The backup is encrypted: no key in it in the clear.
    let data = std::fs::read(&bak).unwrap();
    for k in [&a.1, &b.1] {
        assert!(!common::contains(&data, k));
        assert!(!common::contains(&data, STANDARD.encode(k).as_bytes()));
    }
    // Gone from the node; the other owner untouched.
    n.fail(
        ExitCode::NoSuchKey,
        ["keys", "get", "s1", "--owner", "o", "--id", &a.0],
    );
    assert_eq!(get(&n, &["s1", "--owner", "keep", "--id", &other.0]), other);
    assert_eq!(
        n.ok(["keys", "list", "--owner", "o", "--json"]).json(),
        serde_json::json!([])
    );
    let found = find_plaintext(&n.home, &[&a.1, &b.1]);
    assert!(found.is_empty(), "{found:?}");
    // Crypto-shredded: the keystore key was replaced, so a copy of the old
    // `keys` file put back no longer opens.
    let current = std::fs::read(n.home.join("keys")).unwrap();
    std::fs::write(n.home.join("keys"), &old_keys_file).unwrap();
    n.fail(ExitCode::Corrupt, ["keys", "list"]);
    std::fs::write(n.home.join("keys"), &current).unwrap();
    // An existing backup file is never overwritten; an owner without keys
    // has nothing to delete.
    n.fail(
        ExitCode::Exists,
        [
            "keys",
            "delete-owner",
            "keep",
            "--backup",
            bak.to_str().unwrap(),
            "--backup-to",
            public.to_str().unwrap(),
        ],
    );
    let none = n.scratch().join("none.bak");
    n.fail(
        ExitCode::NoSuchKey,
        [
            "keys",
            "delete-owner",
            "o",
            "--backup",
            none.to_str().unwrap(),
            "--backup-to",
            public.to_str().unwrap(),
        ],
    );
    // The wrong private key restores nothing.
    let wrong = n.scratch_file("wrong.key", root_key_pem(0).as_bytes());
    n.fail(
        ExitCode::Corrupt,
        [
            "keys",
            "restore-owner",
            bak.to_str().unwrap(),
            "--backup-key",
            wrong.to_str().unwrap(),
        ],
    );
    n.ok([
        "keys",
        "restore-owner",
        bak.to_str().unwrap(),
        "--backup-key",
        private.to_str().unwrap(),
    ]);
    assert_eq!(get(&n, &["s1", "--owner", "o", "--id", &a.0]), a);
    assert_eq!(get(&n, &["s2", "--owner", "o", "--id", &b.0]), b);
    // The restored keys are the defaults again.
    assert_eq!(get(&n, &["s1", "--owner", "o"]), a);
}

#[test]
fn keys_survive_a_root_key_rotation() {
    let n = Node::init();
    let a = get(&n, &["svc"]);
    n.cmd()
        .env("PKFS_TEST_ONLY_ROOT_KEY", common::root_key(1))
        .args(["key", "rotate-root"])
        .run()
        .success();
    assert_eq!(get(&n, &["svc", "--id", &a.0]), a);
    assert_eq!(get(&n, &["svc"]), a);
}

#[test]
fn a_damaged_keys_file_is_refused() {
    let n = Node::init();
    get(&n, &["svc"]);
    common::flip_byte(&n.home.join("keys"), 40);
    n.fail(ExitCode::Corrupt, ["keys", "get", "svc"]);
    // A symlink where the file should be is refused like any state file.
    let copy = n.scratch_file("keys-copy", &std::fs::read(n.home.join("keys")).unwrap());
    std::fs::remove_file(n.home.join("keys")).unwrap();
    std::os::unix::fs::symlink(&copy, n.home.join("keys")).unwrap();
    n.fail(ExitCode::Failure, ["keys", "list"])
        .stderr_has("symlink");
}

#[test]
fn a_delete_cut_while_re_keying_leaves_every_key_readable() {
    for (point, deleted) in [("keys-rekey-staged", false), ("keys-rekey-written", true)] {
        let n = Node::init();
        let (public, _) = recipient(&n);
        let gone = get(&n, &["s", "--owner", "o"]);
        let kept = get(&n, &["s", "--owner", "p"]);
        let bak = n.scratch().join("o.bak");
        let out = n
            .cmd()
            .env("PKFS_TEST_ONLY_CRASH_AT", point)
            .args(["keys", "delete-owner", "o", "--backup"])
            .arg(&bak)
            .arg("--backup-to")
            .arg(&public)
            .run();
        assert_eq!(out.code, 137, "{point}: {}", out.stderr);
        assert!(bak.exists(), "{point}: the backup is written first");
        // The node opens; the other owner's key is whole; the owner's keys
        // are there exactly when the file had not been rewritten yet.
        for _ in 0..2 {
            assert_eq!(get(&n, &["s", "--owner", "p", "--id", &kept.0]), kept);
            let o = n.run(["keys", "get", "s", "--owner", "o", "--id", &gone.0]);
            if deleted {
                assert_eq!(o.code, ExitCode::NoSuchKey as i32, "{point}: {}", o.stderr);
            } else {
                assert_eq!(o.code, 0, "{point}: {}", o.stderr);
            }
        }
    }
}
