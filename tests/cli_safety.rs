//! End-to-end safety properties: no plaintext ever reaches the home (file bytes,
//! names, decompressed git objects), tampered blobs are refused without printing
//! anything, and every error is exactly one line on stderr.

mod common;

use std::fs;
use std::os::unix::io::AsRawFd;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use common::*;
use pkfs::crypto::rsa::RootKeypair;

// ---------------------------------------------------------------------------
// The scanner itself.

#[test]
fn the_plaintext_scan_finds_markers_in_bytes_names_and_git_objects() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    fs::create_dir_all(home.join("dir-MARK-NAME-1/sub")).unwrap();
    fs::write(home.join("dir-MARK-NAME-1/sub/f"), b"xx MARK-BYTES-2 xx").unwrap();
    fs::write(home.join("file-MARK-FILE-3"), b"").unwrap();
    // A loose git object is zlib-compressed: invisible to a raw scan.
    let repo = home.join("vaults/r");
    fs::create_dir_all(&repo).unwrap();
    assert!(git(&repo, &["init", "-q"]).status.success());
    fs::write(tmp.path().join("obj"), b"MARK-IN-GIT-4 ".repeat(50)).unwrap();
    let out = git(
        &repo,
        &[
            "hash-object",
            "-w",
            tmp.path().join("obj").to_str().unwrap(),
        ],
    );
    assert!(out.status.success());
    fs::remove_file(tmp.path().join("obj")).unwrap();

    // Merely encoded (not encrypted) names and contents are caught too.
    let b64 = STANDARD.encode(b"xyMARK-ENCODED-6-abcdefgh tail");
    fs::write(home.join("encoded"), format!("prefix {b64} suffix")).unwrap();
    let name = URL_SAFE_NO_PAD.encode(b"zMARK-ENCNAME-7-abcdefgh");
    fs::write(home.join(&name), b"").unwrap();
    let hex: String = b"..MARK-HEX-8.."
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    fs::write(home.join("hex"), hex).unwrap();

    let found = find_plaintext(
        &home,
        &[
            b"MARK-NAME-1",
            b"MARK-BYTES-2",
            b"MARK-FILE-3",
            b"MARK-IN-GIT-4",
            b"NOT-THERE-5",
            b"MARK-ENCODED-6-abcdefgh",
            b"MARK-ENCNAME-7-abcdefgh",
            b"MARK-HEX-8",
        ],
    );
    let joined = found.join("\n");
    for m in ["MARK-NAME-1", "MARK-BYTES-2", "MARK-FILE-3"] {
        assert!(joined.contains(m), "{m} not found:\n{joined}");
    }
    assert!(
        found
            .iter()
            .any(|f| f.starts_with("a git object") && f.contains("MARK-IN-GIT-4")),
        "{joined}"
    );
    assert!(
        !found
            .iter()
            .any(|f| f.starts_with("bytes") && f.contains("MARK-IN-GIT-4")),
        "the object is compressed on disk, so only the git scan sees it"
    );
    assert!(!joined.contains("NOT-THERE-5"));
    for (what, m) in [
        ("bytes of encoded", "MARK-ENCODED-6-abcdefgh"),
        (&format!("name {name}"), "MARK-ENCNAME-7-abcdefgh"),
        ("bytes of hex", "MARK-HEX-8"),
    ] {
        let forms = encoded_forms(m.as_bytes());
        assert!(
            found.iter().any(|f| f.starts_with(what)
                && forms
                    .iter()
                    .any(|e| f.contains(&format!("{:?}", String::from_utf8_lossy(e))))),
            "the encoded {m} was not found:\n{joined}"
        );
    }
}

// ---------------------------------------------------------------------------
// No plaintext on disk.

/// A `&'static str` for building argument arrays (test-only leak).
fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

const PASS: &str = "PASSPHRASE-MARKER-q8Zt7 with spaces";
const VAULT: &str = "VAULTNAME-MARKER-k2Lw9";
const VAULT_RENAMED: &str = "VAULTRENAMED-MARKER-p3Xs1";
const CONTENT: &str = "CONTENT-MARKER-f4Hd8";
const BIG_CONTENT: &str = "BIGPAGE-MARKER-u6Jn2";
const OVERWRITTEN: &str = "OVERWRITTEN-MARKER-a9Qe3";
const FILE: &str = "FILENAME-MARKER-c5Vb4";
const DIR: &str = "DIRNAME-MARKER-m1Gy6";
const LONG: &str = "LONGNAME-MARKER-w7Rt5";
const MOVED: &str = "MOVEDNAME-MARKER-h8Kp0";
const REMOVED: &str = "REMOVEDNAME-MARKER-z2Cf7";
const REMOVED_CONTENT: &str = "REMOVEDCONTENT-MARKER-n4Ds9";
const IMPORTED: &str = "IMPORTED-MARKER-b6Tg1";
const CROSS: &str = "CROSSVAULT-MARKER-e3Wm8";
const DISCARDED: &str = "DISCARDED-MARKER-y5Lr2";

fn markers() -> Vec<&'static [u8]> {
    [
        PASS,
        VAULT,
        VAULT_RENAMED,
        CONTENT,
        BIG_CONTENT,
        OVERWRITTEN,
        FILE,
        DIR,
        LONG,
        MOVED,
        REMOVED,
        REMOVED_CONTENT,
        IMPORTED,
        CROSS,
        DISCARDED,
        // The shared prefix of every marker, to catch them even split by padding.
        "-MARKER-",
    ]
    .into_iter()
    .map(str::as_bytes)
    .collect()
}

/// Also the root private key must never be on disk unencrypted (DER or PEM).
fn private_key_fragments() -> Vec<Vec<u8>> {
    let pem = root_key_pem(0);
    let der = RootKeypair::from_pkcs8_pem(&pem).unwrap().to_pkcs8_der();
    let mut out = vec![
        der[der.len() / 2..der.len() / 2 + 32].to_vec(),
        der[der.len() - 48..der.len() - 16].to_vec(),
    ];
    let body: Vec<&str> = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    out.push(body[body.len() / 2].as_bytes().to_vec());
    out
}

fn scan(n: &Node, when: &str) {
    let keys = private_key_fragments();
    let mut all = markers();
    all.extend(keys.iter().map(|k| k.as_slice()));
    let found = find_plaintext(&n.home, &all);
    assert!(
        found.is_empty(),
        "{when}: plaintext on disk:\n  {}",
        found.join("\n  ")
    );
    // The scan looked at something real.
    assert!(!git_workdirs(&n.home).is_empty());
}

#[test]
fn no_plaintext_ever_reaches_the_home() {
    let n = Node::new();
    fs::write(&n.passfile, format!("{PASS}\n")).unwrap();
    n.ok(["init"]);
    n.ok(["vault", "create", VAULT]);
    n.ok(["vault", "create", "other"]);
    let v = |p: &str| leak(format!("{VAULT}:{p}"));

    // Contents, file names, directory names, a long name, a multi-page file.
    n.write(v("plain"), format!("{CONTENT}\n"));
    n.write(v(FILE), "x");
    n.write(v(&format!("{DIR}/{FILE}-inner")), CONTENT);
    n.ok(["secret", "mkdir", "-p", v(&format!("{DIR}/empty-{DIR}"))]);
    let long = format!("{LONG}{}", "L".repeat(255 - LONG.len()));
    n.write(v(&long), CONTENT);
    n.write(v(&format!("{DIR}/{long}")), CONTENT);
    let mut big = pseudo_random(3 * 4096, 11);
    for off in [0, 4090, 5000, 3 * 4096 - BIG_CONTENT.len()] {
        big[off..off + BIG_CONTENT.len()].copy_from_slice(BIG_CONTENT.as_bytes());
    }
    n.write(v("big"), &big);
    n.write(v("overwritten"), OVERWRITTEN.repeat(20));
    n.write(v("overwritten"), "new content");
    // Secrets that are moved and removed afterwards.
    n.write(v(REMOVED), REMOVED_CONTENT);
    n.write(v("to-move"), CONTENT);
    n.write(v("cross"), CROSS);
    let tree = n.scratch().join("tree");
    fs::create_dir_all(tree.join(format!("{IMPORTED}-dir"))).unwrap();
    fs::write(tree.join(format!("{IMPORTED}-dir/{IMPORTED}")), IMPORTED).unwrap();
    n.ok(["secret", "import", tree.to_str().unwrap(), v("imported")]);
    assert_eq!(n.cat(v(&long)), CONTENT.as_bytes());
    scan(&n, "after writing");

    n.ok(["secret", "mv", v("to-move"), v(MOVED)]);
    n.ok(["secret", "mv", v(DIR), v(&format!("{MOVED}-dir"))]);
    n.ok(["secret", "rm", v(REMOVED)]);
    n.ok(["secret", "mv", v("cross"), "other:"]);
    n.ok([
        "secret",
        "mv",
        "other:cross",
        leak(format!("other:{CROSS}")),
    ]);
    assert_eq!(n.cat(&format!("other:{CROSS}")), CROSS.as_bytes());
    scan(&n, "after mv and rm");

    // Back in time (the removed secret reappears in the working tree), then a
    // change there that discards the later versions.
    n.ok(["version", "checkout", VAULT, "HEAD~4"]);
    assert_eq!(n.cat(v(REMOVED)), REMOVED_CONTENT.as_bytes());
    scan(&n, "after checkout");
    n.write(v(DISCARDED), DISCARDED);
    scan(&n, "after a discarding write");
    n.ok(["version", "log", VAULT, "--all"]);
    n.ok(["gc"]);
    scan(&n, "after gc");
    n.ok(["vault", "rename", VAULT, VAULT_RENAMED]);
    n.ok(["key", "rotate-root"]);
    scan(&n, "after vault rename and root rotation");
    assert_eq!(
        n.cat(&format!("{VAULT_RENAMED}:{DISCARDED}")),
        DISCARDED.as_bytes()
    );
}

// ---------------------------------------------------------------------------
// Tampered blobs.

#[test]
fn a_tampered_blob_is_refused_and_prints_nothing() {
    let n = Node::with_vault();
    n.ok(["vault", "create", "w"]);
    let big = pseudo_random(10_000, 21);
    n.write("v:big", &big);
    n.write("v:small", "small secret");
    n.write("v:dir/other", "other secret");
    let blob = largest_blob(&n.vault_dir("v"));
    let good = fs::read(&blob).unwrap();
    assert_eq!(
        good.len(),
        58 + 2 * 4124 + (10_000 - 8192) + 28,
        "the big blob"
    );
    let commits = n.commits("v");

    let mid = good.len() / 2;
    let positions = [
        ("middle", mid),
        ("magic", 0),
        ("version", 4),
        ("flags", 5),
        ("key generation", 9),
        ("file id", 15),
        ("salt", 40),
        ("page 0 iv", 58 + 3),
        ("page 0 tag", 58 + 12 + 7),
        ("page 0 ciphertext", 58 + 28 + 100),
        ("page 1 tag", 58 + 4124 + 20),
        ("last byte", good.len() - 1),
    ];
    for (what, pos) in positions {
        let mut bad = good.clone();
        bad[pos] ^= 0x01;
        fs::write(&blob, &bad).unwrap();
        n.fail(ExitCode::Corrupt, ["secret", "cat", "v:big"])
            .stdout_empty()
            .stderr_has("big");
        assert_eq!(
            fs::read(&blob).unwrap(),
            bad,
            "{what}: the read wrote nothing"
        );
        // Every other secret still reads.
        assert_eq!(n.cat("v:small"), b"small secret", "{what}");
        assert_eq!(n.cat("v:dir/other"), b"other secret", "{what}");
    }
    // Cut short or extended.
    for (what, bad) in [
        ("one byte short", good[..good.len() - 1].to_vec()),
        ("mid-page cut", good[..58 + 4124 + 100].to_vec()),
        ("header cut", good[..30].to_vec()),
        ("one byte more", [&good[..], &[0u8]].concat()),
    ] {
        fs::write(&blob, &bad).unwrap();
        n.fail(ExitCode::Corrupt, ["secret", "cat", "v:big"])
            .stdout_empty();
        assert_eq!(fs::read(&blob).unwrap(), bad, "{what}");
    }

    // Other readers of the secret refuse it the same way, and change nothing.
    let mut bad = good.clone();
    bad[mid] ^= 0x01;
    fs::write(&blob, &bad).unwrap();
    let before = snapshot(&n.home);
    n.fail(ExitCode::Corrupt, ["secret", "env", "v:big"])
        .stdout_empty();
    n.fail(ExitCode::Corrupt, ["secret", "env", "v:", "--", "true"])
        .stdout_empty();
    n.fail(ExitCode::Corrupt, ["secret", "mv", "v:big", "w:"]);
    assert_same_tree(&before, &snapshot(&n.home), "refused reads");
    assert!(n.ls("w").is_empty(), "nothing half-moved");
    assert_eq!(n.commits("v"), commits);

    // Restored, it reads again.
    fs::write(&blob, &good).unwrap();
    assert_eq!(n.cat("v:big"), big);
}

#[test]
fn a_blob_truncated_at_a_page_boundary_is_refused() {
    // Dropping whole trailing pages (or every page) must be caught: the final page
    // is sealed as final. (A zero-byte blob is by definition the empty file, a
    // limitation documented in docs/FORMAT.md, so it is not tested here.)
    let n = Node::with_vault();
    let data = pseudo_random(2 * 4096 + 100, 31);
    n.write("v:f", &data);
    let blob = largest_blob(&n.vault_dir("v"));
    let good = fs::read(&blob).unwrap();
    assert_eq!(good.len(), 58 + 2 * 4124 + 128);
    for (what, cut) in [
        ("two whole pages left", 58 + 2 * 4124),
        ("one whole page left", 58 + 4124),
        ("header only", 58),
    ] {
        fs::write(&blob, &good[..cut]).unwrap();
        let o = n.run(["secret", "cat", "v:f"]);
        assert!(
            o.code == ExitCode::Corrupt as i32 && o.stdout.is_empty(),
            "{what}: a blob cut to {cut} of {} bytes must be refused, got exit {} with \
             {} bytes of output (a prefix of the secret)",
            good.len(),
            o.code,
            o.stdout.len()
        );
    }
    fs::write(&blob, &good).unwrap();
    assert_eq!(n.cat("v:f"), data);
}

// ---------------------------------------------------------------------------
// One line per error.

#[test]
fn every_error_is_one_line_starting_with_pkfs() {
    let n = Node::new();
    let check = |o: Output, code: ExitCode| {
        o.failure(code);
    };
    check(n.run(["vault", "list"]), ExitCode::NotInitialized);
    let empty = n.scratch_file("empty", b"\n");
    check(n.cmd().passfile(&empty).arg("init").run(), ExitCode::Usage);
    n.ok(["init"]);
    check(n.run(["init"]), ExitCode::AlreadyInitialized);
    let wrong = n.scratch_file("wrong", b"wrong\n");
    check(
        n.cmd().passfile(&wrong).args(["vault", "list"]).run(),
        ExitCode::WrongPassphrase,
    );
    check(
        n.cmd()
            .no_passfile()
            .args(["--extpass", "false", "vault", "list"])
            .run(),
        ExitCode::Usage,
    );
    n.ok(["vault", "create", "v"]);
    n.write("v:f", "x");
    n.write("v:d/e", "the largest secret of the vault");
    check(n.run(["vault", "create", "v"]), ExitCode::VaultDefined);
    check(n.run(["secret", "cat", "nope:f"]), ExitCode::VaultUndefined);
    check(n.run(["vault", "create", "a/b"]), ExitCode::InvalidName);
    check(n.run(["secret", "cat", "v:../f"]), ExitCode::InvalidName);
    check(n.run(["vault", "create", ".git"]), ExitCode::InvalidName);
    check(n.run(["secret", "cat", "v:missing"]), ExitCode::NotFound);
    check(n.run(["secret", "mkdir", "v:d"]), ExitCode::Exists);
    check(n.run(["secret", "rm", "v:d"]), ExitCode::WrongKind);
    check(n.run(["secret", "cat", "v:d"]), ExitCode::WrongKind);
    check(n.run(["secret", "ls", "v:f"]), ExitCode::WrongKind);
    check(n.run(["vault", "delete", "v"]), ExitCode::Usage);
    check(
        n.run(["version", "checkout", "v", "bogus"]),
        ExitCode::Usage,
    );
    check(
        n.run(["version", "checkout", "v", "HEAD~50"]),
        ExitCode::Usage,
    );
    check(n.run(["secret", "env", "v:f=1BAD"]), ExitCode::Usage);
    check(n.run(["secret", "cat", "v:"]), ExitCode::Usage);
    let file = n.scratch_file("file", b"x");
    check(
        n.run(["secret", "import", file.to_str().unwrap(), "v:x"]),
        ExitCode::WrongKind,
    );
    let o = n.run(["secret", "env", "v:f", "--", "/nonexistent/command"]);
    assert_eq!(o.code, ExitCode::Failure as i32);
    assert_one_error_line(&o);

    // Corrupt blob, corrupt metadata.
    let blob = largest_blob(&n.vault_dir("v"));
    let good_blob = fs::read(&blob).unwrap();
    flip_byte(&blob, good_blob.len() / 2);
    check(n.run(["secret", "cat", "v:d/e"]), ExitCode::Corrupt);
    fs::write(&blob, &good_blob).unwrap();
    let meta = n.home.join("metadata");
    let good_meta = fs::read(&meta).unwrap();
    flip_byte(&meta, good_meta.len() - 3);
    check(n.run(["vault", "list"]), ExitCode::Corrupt);
    fs::write(&meta, &good_meta).unwrap();

    // Home locked.
    let lock = fs::File::open(n.home.join("lock")).unwrap();
    // SAFETY: flock on a descriptor we own.
    assert_eq!(
        unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) },
        0
    );
    check(n.run(["vault", "list"]), ExitCode::HomeLocked);
    drop(lock);

    // Home open to others.
    set_mode(&n.home, 0o755);
    check(n.run(["vault", "list"]), ExitCode::Failure);
    set_mode(&n.home, 0o700);
    n.ok(["vault", "list"]);
}

#[test]
fn errors_stay_on_one_line_whatever_the_names() {
    // Names come from the user (or from a vault shared by someone else): an error
    // about them must still be one line, without raw control characters.
    let n = Node::with_vault();
    n.write("v:d/f", "x");
    let cases: Vec<(ExitCode, Vec<&str>)> = vec![
        (
            ExitCode::VaultUndefined,
            vec!["secret", "cat", "no\nsuch:x"],
        ),
        (
            ExitCode::VaultUndefined,
            vec!["vault", "stat", "evil\n\x1b[2Jname"],
        ),
        (ExitCode::NotFound, vec!["secret", "cat", "v:mis\nsing"]),
        (ExitCode::NotFound, vec!["secret", "cat", "v:\x1b[31mred"]),
        (ExitCode::NotFound, vec!["secret", "rm", "v:a\rb"]),
        (ExitCode::WrongKind, vec!["secret", "ls", "v:d/f"]),
        (ExitCode::InvalidName, vec!["secret", "cat", "v:x\n/../y"]),
    ];
    for (code, args) in &cases {
        let o = n.run(args);
        assert_eq!(o.code, *code as i32, "{o:?}");
        assert_one_error_line(&o);
        assert!(
            !o.stderr
                .trim_end_matches('\n')
                .contains(['\n', '\r', '\x1b']),
            "raw control characters on stderr: {:?}",
            o.stderr
        );
    }
    n.ok(["vault", "create", "new\nline"]);
    let o = n.run(["vault", "create", "new\nline"]);
    assert_eq!(o.code, ExitCode::VaultDefined as i32);
    assert_one_error_line(&o);
}
