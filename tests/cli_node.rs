//! End-to-end tests of the node: init, passphrases, the root key, the metadata
//! file, the home lock and the home's permissions.

mod common;

use std::fs;
use std::os::unix::io::AsRawFd;
use std::path::Path;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use common::*;
use pkfs::crypto::rsa::RootKeypair;
use sha2::{Digest, Sha256};

/// The id printed as `node id: <id>` on stdout.
fn printed_node_id(o: &Output) -> String {
    let out = o.out();
    let ids: Vec<&str> = out
        .lines()
        .filter_map(|l| l.strip_prefix("node id: "))
        .collect();
    assert_eq!(ids.len(), 1, "one 'node id:' line expected in {out:?}");
    ids[0].trim().to_string()
}

/// Base58(SHA-256(SPKI DER)) computed from the PEM text alone, without the library.
fn node_id_from_pem_by_hand(pem: &str) -> String {
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"), "{pem}");
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = STANDARD.decode(body).expect("PEM body is base64");
    bs58::encode(Sha256::digest(&der)).into_string()
}

fn setup_secrets(n: &Node) -> Vec<(String, Vec<u8>)> {
    common::fixtures::secrets_in_two_vaults(n)
}

fn assert_secrets(n: &Node, secrets: &[(String, Vec<u8>)]) {
    for (t, d) in secrets {
        assert_eq!(&n.cat(t), d, "{t} reads back");
    }
}

#[test]
fn init_creates_a_private_home_and_prints_the_node_id() {
    let n = Node::new();
    let o = n.ok(["init"]);
    assert_eq!(mode_of(&n.home), 0o700, "home mode");
    for f in ["root.key", "root.pub", "metadata"] {
        assert!(n.home.join(f).is_file(), "{f} exists");
    }
    for f in ["root.key", "metadata"] {
        assert_eq!(
            mode_of(&n.home.join(f)) & 0o077,
            0,
            "{f} is private to the user"
        );
    }
    let id = printed_node_id(&o);
    // The library's view of root.pub, a computation from the PEM by hand, and the
    // key the test handed to init all agree.
    assert_eq!(id, node_id_of_root_pub(&n.home));
    let pem = fs::read_to_string(n.home.join("root.pub")).unwrap();
    assert_eq!(id, node_id_from_pem_by_hand(&pem));
    assert_eq!(id, key_node_id(0));
    let raw = bs58::decode(&id).into_vec().expect("node id is base58");
    assert_eq!(raw.len(), 32, "node id is a SHA-256");

    // The JSON form names the same id.
    let m = Node::new();
    let j = m.ok(["--json", "init"]).json();
    assert_eq!(j["node_id"], id.as_str());
}

#[test]
fn init_adopts_an_existing_empty_directory_and_makes_it_private() {
    let n = Node::new();
    fs::create_dir(&n.home).unwrap();
    set_mode(&n.home, 0o755);
    n.ok(["init"]);
    assert_eq!(mode_of(&n.home), 0o700);
    n.ok(["vault", "list"]);
}

#[test]
fn init_on_an_existing_node_fails_with_5_and_changes_nothing() {
    let n = Node::with_vault();
    n.write("v:s", "kept");
    let before = snapshot(&n.home);
    n.fail(ExitCode::AlreadyInitialized, ["init"])
        .stderr_has("already");
    // Even with another root key and another passphrase.
    let other = n.scratch_file("otherpass", b"another passphrase\n");
    n.cmd()
        .passfile(&other)
        .env("PKFS_TEST_ONLY_ROOT_KEY", root_key(1))
        .arg("init")
        .run()
        .failure(ExitCode::AlreadyInitialized);
    assert_same_tree(&before, &snapshot(&n.home), "init on an existing node");
    assert_eq!(n.cat("v:s"), b"kept");
}

#[test]
fn empty_passphrase_is_refused() {
    let n = Node::new();
    for (i, content) in ["", "\n", "\r\n", "\nsecond line"].iter().enumerate() {
        let empty = n.scratch_file(&format!("empty{i}"), content.as_bytes());
        n.cmd()
            .passfile(&empty)
            .arg("init")
            .run()
            .failure(ExitCode::Usage)
            .stderr_has("empty");
        assert!(!n.home.exists(), "a refused init creates no home");
    }
    let empty = n.scratch_file("empty", b"");
    n.cmd()
        .no_passfile()
        .args(["--extpass", "true", "init"])
        .run()
        .failure(ExitCode::Usage);
    assert!(!n.home.exists());

    // Unlocking and passwd refuse it too; the node stays as it was.
    n.ok(["init"]);
    n.cmd()
        .passfile(&empty)
        .args(["vault", "list"])
        .run()
        .failure(ExitCode::Usage);
    let before = snapshot(&n.home);
    n.fail(
        ExitCode::Usage,
        ["passwd", "--new-passfile", empty.to_str().unwrap()],
    )
    .stderr_has("empty");
    assert_same_tree(&before, &snapshot(&n.home), "refused passwd");
    n.ok(["vault", "list"]);
}

#[test]
fn passphrase_from_extpass_and_from_the_environment() {
    let n = Node::new();
    // init with --extpass; the first line of the command's output is the passphrase.
    let file = n.scratch_file(
        "pass-with-lines",
        format!("{PASSPHRASE}\nignored\n").as_bytes(),
    );
    let cat = format!("cat '{}'", file.display());
    n.cmd()
        .no_passfile()
        .args(["--extpass", &cat, "init"])
        .run()
        .success();
    // The passfile (first line, newline stripped) opens what extpass created.
    n.ok(["vault", "create", "v"]);
    n.write("v:s", "x");
    // --extpass
    let o = n
        .cmd()
        .no_passfile()
        .args(["--extpass", &cat, "secret", "cat", "v:s"])
        .run()
        .success();
    assert_eq!(o.stdout, b"x");
    // PKFS_PASSFILE and PKFS_HOME
    let o = n
        .cmd()
        .no_passfile()
        .no_home()
        .env("PKFS_PASSFILE", &n.passfile)
        .env("PKFS_HOME", &n.home)
        .args(["secret", "cat", "v:s"])
        .run()
        .success();
    assert_eq!(o.stdout, b"x");
    // A wrong one through each source is a wrong passphrase.
    let wrong = n.scratch_file("wrong", b"not it\n");
    n.cmd()
        .no_passfile()
        .env("PKFS_PASSFILE", &wrong)
        .args(["vault", "list"])
        .run()
        .failure(ExitCode::WrongPassphrase);
    n.cmd()
        .no_passfile()
        .args(["--extpass", "echo not it", "vault", "list"])
        .run()
        .failure(ExitCode::WrongPassphrase);
    // A failing extpass command is refused (usage), not taken as a passphrase.
    n.cmd()
        .no_passfile()
        .args(["--extpass", "exit 3", "vault", "list"])
        .run()
        .failure(ExitCode::Usage);
    // --passfile wins over PKFS_PASSFILE (documented order).
    n.cmd()
        .env("PKFS_PASSFILE", &wrong)
        .args(["vault", "list"])
        .run()
        .success();
}

#[test]
fn the_passphrase_is_never_an_argument() {
    let n = Node::new();
    let mut helps = vec![n.run(["--help"]).success().out()];
    for sub in [
        vec!["init", "--help"],
        vec!["passwd", "--help"],
        vec!["key", "rotate-root", "--help"],
        vec!["vault", "create", "--help"],
        vec!["secret", "write", "--help"],
        vec!["version", "log", "--help"],
    ] {
        helps.push(n.run(sub).success().out());
    }
    for h in &helps {
        let l = h.to_lowercase();
        for bad in [
            "--passphrase",
            "--password",
            "--pass ",
            "--pass=",
            "--new-passphrase",
        ] {
            assert!(!l.contains(bad), "help mentions {bad}:\n{h}");
        }
    }
    assert!(helps[0].contains("--passfile") && helps[0].contains("--extpass"));
    // Such an option does not exist.
    let o = n.run(["--passphrase", PASSPHRASE, "init"]);
    assert_eq!(o.code, ExitCode::Usage as i32, "{o:?}");
    assert!(!n.home.exists());
}

#[test]
fn wrong_passphrase_exits_3_and_changes_nothing() {
    let n = Node::with_vault();
    n.write("v:s", "secret");
    let wrong = n.scratch_file("wrong", b"correct horse battery stapler\n");
    let before = snapshot(&n.home);
    for args in [
        vec!["vault", "list"],
        vec!["secret", "cat", "v:s"],
        vec!["secret", "rm", "v:s"],
        vec!["vault", "create", "x"],
        vec!["passwd", "--new-passfile", "/dev/null"],
        vec!["key", "rotate-root"],
        vec!["gc"],
    ] {
        n.cmd()
            .passfile(&wrong)
            .args(&args)
            .run()
            .failure(ExitCode::WrongPassphrase)
            .stderr_has("passphrase")
            .stdout_empty();
    }
    n.cmd()
        .passfile(&wrong)
        .args(["secret", "write", "v:s"])
        .stdin("overwritten")
        .run()
        .failure(ExitCode::WrongPassphrase);
    assert_same_tree(&before, &snapshot(&n.home), "wrong passphrase");
    assert_eq!(n.cat("v:s"), b"secret");
}

#[test]
fn missing_home_exits_4_with_a_clear_message() {
    let n = Node::new();
    for args in [
        vec!["vault", "list"],
        vec!["vault", "create", "v"],
        vec!["secret", "cat", "v:s"],
        vec!["version", "log", "v"],
        vec!["passwd", "--new-passfile", "/dev/null"],
        vec!["key", "rotate-root"],
        vec!["gc"],
    ] {
        n.fail(ExitCode::NotInitialized, &args)
            .stderr_has(&n.home.display().to_string())
            .stderr_has("pkfs init");
        assert!(!n.home.exists(), "{args:?} must not create the home");
    }
    // An empty directory is not a node either.
    fs::create_dir(&n.home).unwrap();
    set_mode(&n.home, 0o700);
    n.fail(ExitCode::NotInitialized, ["vault", "list"]);
    // PKFS_HOME pointing nowhere.
    n.cmd()
        .no_home()
        .env("PKFS_HOME", n.scratch().join("nowhere"))
        .args(["vault", "list"])
        .run()
        .failure(ExitCode::NotInitialized);
}

#[test]
fn passwd_replaces_the_passphrase() {
    let n = Node::with_vault();
    n.write("v:a/b", "still here");
    let newpass = n.scratch_file("newpass", b"a whole new passphrase\n");
    let key_before = fs::read(n.home.join("root.key")).unwrap();
    let pub_before = fs::read(n.home.join("root.pub")).unwrap();
    let vaults_before = snapshot(&n.home.join("vaults"));
    n.ok(["passwd", "--new-passfile", newpass.to_str().unwrap()]);
    assert_ne!(fs::read(n.home.join("root.key")).unwrap(), key_before);
    assert_eq!(fs::read(n.home.join("root.pub")).unwrap(), pub_before);
    assert_same_tree(
        &vaults_before,
        &snapshot(&n.home.join("vaults")),
        "passwd touches no vault",
    );
    // The old passphrase no longer opens the node...
    n.fail(ExitCode::WrongPassphrase, ["vault", "list"]);
    n.fail(ExitCode::WrongPassphrase, ["secret", "cat", "v:a/b"]);
    // ...the new one does, and the secrets are intact.
    let o = n
        .cmd()
        .passfile(&newpass)
        .args(["secret", "cat", "v:a/b"])
        .run()
        .success();
    assert_eq!(o.stdout, b"still here");
    assert_eq!(node_id_of_root_pub(&n.home), key_node_id(0));
}

/// Open the metadata file with a test key through the library.
fn metadata_opens_with(home: &Path, key: usize) -> bool {
    let root = RootKeypair::from_pkcs8_pem(&root_key_pem(key)).unwrap();
    let bytes = fs::read(home.join("metadata")).unwrap();
    match pkfs::vault::metadata::open(&root, &bytes) {
        Ok(table) => table.vaults.iter().all(|v| v.keychain(&root).is_ok()),
        Err(_) => false,
    }
}

#[test]
fn rotate_root_rewraps_keys_and_leaves_vault_data_alone() {
    let n = Node::with_vault();
    let secrets = setup_secrets(&n);
    assert_eq!(node_id_of_root_pub(&n.home), key_node_id(0));
    assert_ne!(key_node_id(0), key_node_id(1), "the two test keys differ");
    let commits_before = n.commits("v");
    let vaults_before = snapshot(&n.home.join("vaults"));
    let root_files = ["root.pub", "metadata", "root.key"];
    let files_before: Vec<Vec<u8>> = root_files
        .iter()
        .map(|f| fs::read(n.home.join(f)).unwrap())
        .collect();
    assert!(metadata_opens_with(&n.home, 0) && !metadata_opens_with(&n.home, 1));

    let o = n
        .cmd()
        .env("PKFS_TEST_ONLY_ROOT_KEY", root_key(1))
        .args(["key", "rotate-root"])
        .run()
        .success();
    assert_eq!(printed_node_id(&o), key_node_id(1));
    assert_eq!(node_id_of_root_pub(&n.home), key_node_id(1));

    // Not one byte of any vault (blobs, every .git object, refs, index) changed.
    assert_same_tree(
        &vaults_before,
        &snapshot(&n.home.join("vaults")),
        "rotate-root must not touch vaults/",
    );
    for (f, before) in root_files.iter().zip(&files_before) {
        assert_ne!(&fs::read(n.home.join(f)).unwrap(), before, "{f} changed");
    }
    assert!(
        !n.home.join("rotate").exists(),
        "no rotate/ journal remains"
    );
    // The metadata and every vault key now unwrap under key 1 only.
    assert!(metadata_opens_with(&n.home, 1) && !metadata_opens_with(&n.home, 0));

    // Same passphrase; every secret and the history still read.
    assert_secrets(&n, &secrets);
    assert_eq!(n.commits("v"), commits_before);
    n.write("v:after-rotation", "new");
    assert_eq!(n.cat("v:after-rotation"), b"new");
    n.cmd()
        .passfile(n.scratch_file("wrong", b"wrong\n"))
        .args(["vault", "list"])
        .run()
        .failure(ExitCode::WrongPassphrase);

    // And back to key 0, reported in JSON.
    let j = n
        .cmd()
        .env("PKFS_TEST_ONLY_ROOT_KEY", root_key(0))
        .args(["--json", "key", "rotate-root"])
        .run()
        .success()
        .json();
    assert_eq!(j["old_node_id"], key_node_id(1).as_str());
    assert_eq!(j["node_id"], key_node_id(0).as_str());
    assert_eq!(node_id_of_root_pub(&n.home), key_node_id(0));
    assert_secrets(&n, &secrets);
}

#[test]
fn an_interrupted_rotation_without_commit_is_discarded() {
    let n = Node::with_vault();
    let secrets = setup_secrets(&n);
    let before = snapshot(&n.home);
    let journal = n.home.join("rotate");
    fs::create_dir(&journal).unwrap();
    fs::write(journal.join("metadata"), pseudo_random(700, 7)).unwrap();
    fs::write(journal.join("root.pub"), b"-----BEGIN garbage").unwrap();
    fs::write(journal.join(".tmp-half-written"), pseudo_random(100, 8)).unwrap();
    let o = n.ok(["--json", "vault", "list"]).json();
    assert_eq!(o.as_array().unwrap().len(), 2);
    assert!(!journal.exists(), "the unfinished journal is removed");
    assert_same_tree(&before, &snapshot(&n.home), "recovery keeps the old key");
    assert_eq!(node_id_of_root_pub(&n.home), key_node_id(0));
    assert_secrets(&n, &secrets);
}

/// Build the journal of a committed rotation to key 1 by rotating a copy of the
/// home, then hand `moved` of its files over as if already renamed into place.
fn committed_journal(n: &Node, moved: &[&str]) {
    let copy = n.scratch().join("copy");
    copy_tree(&n.home, &copy);
    n.cmd()
        .no_home()
        .arg("--home")
        .arg(&copy)
        .env("PKFS_TEST_ONLY_ROOT_KEY", root_key(1))
        .args(["key", "rotate-root"])
        .run()
        .success();
    let journal = n.home.join("rotate");
    fs::create_dir(&journal).unwrap();
    for f in ["metadata", "root.pub", "root.key"] {
        let dst = if moved.contains(&f) {
            n.home.join(f)
        } else {
            journal.join(f)
        };
        fs::copy(copy.join(f), dst).unwrap();
    }
    fs::write(journal.join("COMMIT"), b"").unwrap();
}

#[test]
fn an_interrupted_rotation_after_commit_is_finished() {
    for moved in [&[][..], &["metadata"][..], &["metadata", "root.pub"][..]] {
        let n = Node::with_vault();
        let secrets = setup_secrets(&n);
        let vaults_before = snapshot(&n.home.join("vaults"));
        committed_journal(&n, moved);
        n.ok(["vault", "list"]);
        assert!(
            !n.home.join("rotate").exists(),
            "{moved:?}: journal finished"
        );
        assert_eq!(node_id_of_root_pub(&n.home), key_node_id(1), "{moved:?}");
        assert!(metadata_opens_with(&n.home, 1));
        assert_same_tree(
            &vaults_before,
            &snapshot(&n.home.join("vaults")),
            "roll-forward",
        );
        assert_secrets(&n, &secrets);
    }
}

#[test]
fn corrupt_metadata_exits_9_and_is_left_as_it_is() {
    let n = Node::with_vault();
    n.write("v:s", "x");
    let path = n.home.join("metadata");
    let good = fs::read(&path).unwrap();
    // Layout: magic 8 | version 1 | n 2 | wrapped key n | iv 12 | tag 16 | ciphertext.
    let n_len = u16::from_be_bytes([good[9], good[10]]) as usize;
    assert_eq!(n_len, 512, "RSA-4096 wrapped key");
    let iv = 11 + n_len;
    let tag = iv + 12;
    let ct = tag + 16;
    assert!(good.len() > ct + 10);
    let positions = [
        ("magic", 2),
        ("version", 8),
        ("key length", 10),
        ("wrapped key start", 11),
        ("wrapped key middle", 11 + 200),
        ("wrapped key end", iv - 1),
        ("iv", iv + 5),
        ("tag start", tag),
        ("tag end", ct - 1),
        ("ciphertext start", ct),
        ("ciphertext middle", (ct + good.len()) / 2),
        ("ciphertext end", good.len() - 1),
    ];
    for (what, pos) in positions {
        let mut bad = good.clone();
        bad[pos] ^= 0x01;
        fs::write(&path, &bad).unwrap();
        for args in [vec!["vault", "list"], vec!["secret", "cat", "v:s"]] {
            n.fail(ExitCode::Corrupt, &args)
                .stderr_has("metadata")
                .stdout_empty();
            assert_eq!(fs::read(&path).unwrap(), bad, "{what}: metadata unchanged");
        }
    }
    for (what, bad) in [
        ("truncated", good[..good.len() - 1].to_vec()),
        ("cut in the key", good[..100].to_vec()),
        ("empty", Vec::new()),
    ] {
        fs::write(&path, &bad).unwrap();
        n.fail(ExitCode::Corrupt, ["vault", "list"]);
        assert_eq!(fs::read(&path).unwrap(), bad, "{what}: unchanged");
    }
    fs::write(&path, &good).unwrap();
    assert_eq!(n.cat("v:s"), b"x");
}

#[test]
fn a_root_pub_that_does_not_match_root_key_is_corrupt() {
    let n = Node::with_vault();
    let other = RootKeypair::from_pkcs8_pem(&root_key_pem(1)).unwrap();
    fs::write(n.home.join("root.pub"), other.public().to_pem()).unwrap();
    n.fail(ExitCode::Corrupt, ["vault", "list"])
        .stderr_has("root.pub");
}

#[test]
fn a_held_home_lock_exits_10() {
    let n = Node::with_vault();
    n.write("v:s", "x");
    let lock = fs::File::open(n.home.join("lock")).unwrap();
    // SAFETY: flock on a descriptor we own.
    let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    assert_eq!(rc, 0, "the test takes the lock");
    let before = snapshot(&n.home);
    n.fail(ExitCode::HomeLocked, ["vault", "list"])
        .stderr_has("lock");
    n.fail(ExitCode::HomeLocked, ["secret", "cat", "v:s"])
        .stdout_empty();
    n.cmd()
        .args(["secret", "write", "v:s"])
        .stdin("changed")
        .run()
        .failure(ExitCode::HomeLocked);
    n.fail(ExitCode::HomeLocked, ["vault", "create", "w"]);
    assert_same_tree(&before, &snapshot(&n.home), "a locked home");
    // SAFETY: as above.
    assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_UN) }, 0);
    drop(lock);
    assert_eq!(n.cat("v:s"), b"x");
    n.ok(["vault", "create", "w"]);
}

#[test]
fn a_home_open_to_others_is_refused() {
    let n = Node::with_vault();
    n.write("v:s", "x");
    for mode in [0o755, 0o750, 0o701, 0o707] {
        set_mode(&n.home, mode);
        let before = snapshot(&n.home);
        let o = n.run(["secret", "cat", "v:s"]);
        assert_eq!(o.code, ExitCode::Failure as i32, "mode {mode:o}: {o:?}");
        assert_one_error_line(&o);
        let o = o.stderr_has("chmod 700").stdout_empty();
        assert!(o.stderr.contains(&format!("{mode:o}")), "{o:?}");
        assert_same_tree(&before, &snapshot(&n.home), "refused home");
    }
    set_mode(&n.home, 0o700);
    assert_eq!(n.cat("v:s"), b"x");
}
