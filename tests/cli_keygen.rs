//! Vault key generations without a mount: `vault rotate-key`, `rotate-after`
//! (with the test-only clock), `reencrypt`, `drop-key`, `shred`, and the
//! durations every option takes. Each blob's generation is read from its
//! header on disk, so "which key" is checked, not only "readable".

mod common;

use std::path::{Path, PathBuf};

use common::*;
use pkfs::crypto::rsa::RootKeypair;
use pkfs::format::blob;
use serde_json::Value;

/// The key generation in the header of every non-empty blob under `dir`
/// (directory IV files and sidecars have no `PKFS` header and are left out).
fn blob_generations(dir: &Path) -> Vec<(PathBuf, u32)> {
    let mut out = Vec::new();
    for p in files_under(&dir.join("contents")) {
        let bytes = std::fs::read(&p).unwrap();
        if let Some(g) = pkfs::vault::keychain::generation_of(&bytes) {
            if bytes.len() >= 58 {
                out.push((p, g));
            }
        }
    }
    out
}

/// (generation, blobs) of `vault stat --json`.
fn generations(n: &Node, vault: &str) -> Vec<(u64, u64)> {
    n.vault_stat(vault)["generations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["generation"].as_u64().unwrap(),
                g["blobs"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// `version log --json`: (changed paths, unreadable generations) per commit, oldest first.
fn log_marks(n: &Node) -> Vec<(Vec<String>, Vec<u64>)> {
    let mut out: Vec<_> = n
        .log("v", false)
        .iter()
        .map(|e| {
            let paths = e["changes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["path"].as_str().unwrap().to_string())
                .collect();
            let gone = e["unreadable_generations"]
                .as_array()
                .unwrap()
                .iter()
                .map(|g| g.as_u64().unwrap())
                .collect();
            (paths, gone)
        })
        .collect();
    out.reverse();
    out
}

#[test]
fn durations_take_ms_s_m_h_and_d_everywhere() {
    use pkfs::args::parse_duration;
    use std::time::Duration;
    assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
    assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
    assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
    assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
    assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
    assert_eq!(parse_duration("30d"), Ok(Duration::from_secs(30 * 86400)));
    for bad in ["", "h", "1x", "-1s", "1.5h", "1 d", "99999999999999999999d"] {
        assert!(parse_duration(bad).is_err(), "{bad:?} was accepted");
    }
    let n = Node::init();
    n.ok(["vault", "create", "w", "--rotate-after", "30d"]);
    assert_eq!(n.vault_stat("w")["rotate_after_ms"], 30 * 86_400_000u64);
    n.ok(["vault", "set", "w", "--rotate-after", "1h"]);
    assert_eq!(n.vault_stat("w")["rotate_after_ms"], 3_600_000u64);
    assert!(n
        .ok(["vault", "stat", "w"])
        .out()
        .contains("rotate after: 1h"));
    n.fail(
        ExitCode::Usage,
        ["vault", "set", "w", "--rotate-after", "1y"],
    )
    .stderr_has("is not a duration");
    n.ok(["vault", "set", "w", "--rotate-after", "never"]);
    assert_eq!(n.vault_stat("w")["rotate_after_ms"], Value::Null);
    // `--commit-delay 1h` is accepted by the same parser (the mount fails
    // later, on the missing mountpoint, not on the duration).
    let o = n.run(["mount", "/nonexistent-pkfs-mnt", "--commit-delay", "1h"]);
    assert!(
        !o.stderr.contains("not a duration"),
        "1h refused: {}",
        o.stderr
    );
}

#[test]
fn history_written_under_generation_0_reads_after_three_rotations() {
    let n = Node::with_vault();
    n.write("v:zero", "written under generation 0\n");
    let first = n.log("v", false)[0]["id"].as_str().unwrap().to_string();
    for g in 1..=3 {
        let out = n.ok(["--json", "vault", "rotate-key", "v"]).json();
        assert_eq!(out["generation"], g);
        n.write(
            &format!("v:gen{g}"),
            format!("written under generation {g}\n"),
        );
    }
    assert_eq!(generations(&n, "v"), vec![(0, 1), (1, 1), (2, 1), (3, 1)]);
    let on_disk: Vec<u32> = {
        let mut g: Vec<u32> = blob_generations(&n.vault_dir("v"))
            .into_iter()
            .map(|(_, g)| g)
            .collect();
        g.sort();
        g
    };
    assert_eq!(on_disk, vec![0, 1, 2, 3], "rotation re-encrypted nothing");
    assert_eq!(n.cat("v:zero"), b"written under generation 0\n");
    // The version written under generation 0, from the history.
    n.ok(["version", "checkout", "v", &first]);
    assert_eq!(n.cat("v:zero"), b"written under generation 0\n");
    assert!(n.ls("v:").iter().all(|e| !e.starts_with("gen")));
    n.ok(["version", "checkout", "v", "latest"]);
    assert_eq!(n.cat("v:gen3"), b"written under generation 3\n");
    let human = n.ok(["vault", "stat", "v"]).out();
    assert!(human.contains("key generations:"), "{human}");
    assert!(human.contains("(newest)"), "{human}");
}

#[test]
fn drop_key_makes_exactly_the_history_only_it_could_read_unreadable() {
    let n = Node::with_vault();
    n.write("v:a", "under zero\n");
    n.ok(["vault", "rotate-key", "v"]);
    n.write("v:b", "under one\n");
    n.ok(["vault", "rotate-key", "v"]);
    n.write("v:c", "under two\n");
    // Refused: a current file uses it; the newest; generation 0; unknown.
    n.fail(ExitCode::Usage, ["vault", "drop-key", "v", "1"])
        .stderr_has("still use key generation 1");
    n.fail(ExitCode::Usage, ["vault", "drop-key", "v", "2"])
        .stderr_has("is the newest");
    n.fail(ExitCode::Usage, ["vault", "drop-key", "v", "0"])
        .stderr_has("names and history");
    n.fail(ExitCode::Usage, ["vault", "drop-key", "v", "7"])
        .stderr_has("no key generation 7");
    let before = n.commits("v");
    let r = n.ok(["--json", "vault", "reencrypt", "v"]).json();
    assert_eq!(
        (r["rewritten"].as_u64(), r["current"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(
        n.commits("v"),
        before + 1,
        "one commit for the whole rewrite"
    );
    assert_eq!(generations(&n, "v"), vec![(0, 0), (1, 0), (2, 3)]);
    assert!(blob_generations(&n.vault_dir("v"))
        .iter()
        .all(|(_, g)| *g == 2));
    // Nothing left to do: a second run rewrites and commits nothing.
    let again = n.ok(["--json", "vault", "reencrypt", "v"]).json();
    assert_eq!(again["rewritten"], 0);
    assert_eq!(n.commits("v"), before + 1);

    n.ok(["vault", "drop-key", "v", "1"]);
    n.fail(ExitCode::Usage, ["vault", "drop-key", "v", "1"])
        .stderr_has("already dropped");
    for (p, want) in [
        ("v:a", "under zero\n"),
        ("v:b", "under one\n"),
        ("v:c", "under two\n"),
    ] {
        assert_eq!(n.cat(p), want.as_bytes());
    }
    // Exactly the commits whose tree holds b's generation-1 blob.
    let marks = log_marks(&n);
    let unreadable: Vec<&Vec<String>> = marks
        .iter()
        .filter(|(_, g)| !g.is_empty())
        .map(|(p, _)| p)
        .collect();
    assert_eq!(
        unreadable,
        vec![&vec!["b".to_string()], &vec!["c".to_string()]]
    );
    assert!(marks.iter().all(|(_, g)| g.is_empty() || g == &vec![1]));
    let human = n.ok(["version", "log", "v"]).out();
    assert_eq!(
        human.matches("under dropped key generation(s) 1").count(),
        2,
        "{human}"
    );
    // fsck says so, and is not failed by it.
    let f = n.ok(["fsck", "v"]).out();
    assert!(
        f.contains("history: 2 commit(s) hold files under dropped key generation(s) 1"),
        "{f}"
    );
    let stat = n.vault_stat("v");
    assert_eq!(stat["dropped"][0]["generation"], 1);
    // A new generation never reuses a dropped number.
    assert_eq!(
        n.ok(["--json", "vault", "rotate-key", "v"]).json()["generation"],
        3
    );
    // The version that added b: checked out with a warning, b unreadable.
    let log = n.log("v", false);
    let with_b = log
        .iter()
        .find(|e| e["changes"].as_array().unwrap().len() == 1 && e["changes"][0]["path"] == "b")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let o = n.ok(["version", "checkout", "v", &with_b]);
    assert!(
        o.stderr.contains("dropped key generation(s) 1"),
        "{}",
        o.stderr
    );
    n.fail(ExitCode::Corrupt, ["secret", "cat", "v:b"])
        .stderr_has("unknown key generation 1");
    assert_eq!(n.cat("v:a"), b"under zero\n");
    n.ok(["version", "checkout", "v", "latest"]);
    // What generation 0 wrote is still readable in the history.
    let first_a = n.log("v", false).iter().rev().nth(1).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    n.ok(["version", "checkout", "v", &first_a]);
    assert_eq!(n.cat("v:a"), b"under zero\n");
}

#[test]
fn a_cut_in_the_middle_of_reencrypt_leaves_every_blob_readable() {
    let n = Node::with_vault();
    for i in 0..4 {
        n.write(&format!("v:f{i}"), format!("file {i}\n"));
    }
    n.ok(["vault", "rotate-key", "v"]);
    let commits = n.commits("v");
    let o = n
        .cmd()
        .args(["vault", "reencrypt", "v"])
        .env("PKFS_TEST_ONLY_CRASH_AT", "reencrypt-midway")
        .run();
    assert_eq!(o.code, 137, "the cut happened: {}", o.stderr);
    // One blob was replaced before the cut; the next open undoes the command.
    for i in 0..4 {
        assert_eq!(n.cat(&format!("v:f{i}")), format!("file {i}\n").as_bytes());
    }
    n.ok(["fsck", "v"]);
    assert_eq!(n.commits("v"), commits, "nothing half-done was committed");
    n.ok(["vault", "reencrypt", "v"]);
    assert_eq!(generations(&n, "v"), vec![(0, 0), (1, 4)]);
    for i in 0..4 {
        assert_eq!(n.cat(&format!("v:f{i}")), format!("file {i}\n").as_bytes());
    }
}

#[test]
fn a_cut_in_the_middle_of_a_rotation_leaves_every_blob_readable() {
    let n = Node::with_vault();
    n.write("v:s", "secret\n");
    for point in ["rotate-key-before-metadata", "metadata-before-rename"] {
        let o = n
            .cmd()
            .args(["vault", "rotate-key", "v"])
            .env("PKFS_TEST_ONLY_CRASH_AT", point)
            .run();
        assert_eq!(o.code, 137, "{point}: {}", o.stderr);
        assert_eq!(generations(&n, "v"), vec![(0, 1)], "{point}");
        assert_eq!(n.cat("v:s"), b"secret\n", "{point}");
    }
    n.ok(["vault", "rotate-key", "v"]);
    n.write("v:t", "after\n");
    assert_eq!(generations(&n, "v"), vec![(0, 1), (1, 1)]);
    assert_eq!(n.cat("v:s"), b"secret\n");
}

#[test]
fn rotate_after_adds_a_generation_once_the_newest_is_older() {
    let n = Node::init();
    n.ok(["vault", "create", "w", "--rotate-after", "1d"]);
    n.write("w:s", "secret\n");
    let created = n.vault_stat("w")["generations"][0]["created"]
        .as_i64()
        .unwrap();
    let at = |secs: i64| {
        n.cmd()
            .env("PKFS_TEST_ONLY_NOW", secs.to_string())
            .args(["--json", "vault", "stat", "w"])
            .run()
            .success()
            .json()
    };
    // Not yet due.
    assert_eq!(
        at(created + 86_399)["generations"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // Due: opening the vault adds one, once.
    let s = at(created + 86_400);
    let gens = s["generations"].as_array().unwrap();
    assert_eq!(gens.len(), 2, "{s}");
    assert_eq!(gens[1]["created"], created + 86_400);
    assert_eq!(
        at(created + 86_401)["generations"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // The next day, another.
    assert_eq!(
        at(created + 2 * 86_400 + 5)["generations"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert_eq!(n.cat("w:s"), b"secret\n");
}

#[test]
fn shred_destroys_every_key_and_removes_the_vault() {
    let n = Node::with_vault();
    n.write("v:s", "to be shredded\n");
    n.ok(["vault", "rotate-key", "v"]);
    n.write("v:t", "second generation\n");
    // A replica of the vault's ciphertext, as a backup host would keep.
    let replica = n.scratch().join("replica");
    copy_tree(&n.vault_dir("v"), &replica);
    // No terminal, no --yes: refused, nothing changes.
    n.fail(ExitCode::Usage, ["vault", "shred", "v"])
        .stderr_has("without confirmation");
    assert_eq!(n.cat("v:s"), b"to be shredded\n");
    // A backup needs its recipient (clap refuses it, exit code 2).
    let o = n.run(["vault", "shred", "v", "--yes", "--backup", "x"]);
    assert_eq!(o.code, ExitCode::Usage as i32, "{}", o.stderr);
    assert_eq!(n.cat("v:s"), b"to be shredded\n");

    let recipient = RootKeypair::from_pkcs8_pem(&root_key_pem(1)).unwrap();
    let pubkey = n.scratch_file("recipient.pem", recipient.public().to_pem().as_bytes());
    let backup = n.scratch().join("v.keys");
    n.ok([
        "vault",
        "shred",
        "v",
        "--yes",
        "--backup",
        backup.to_str().unwrap(),
        "--backup-to",
        pubkey.to_str().unwrap(),
    ]);
    n.fail(ExitCode::VaultUndefined, ["vault", "stat", "v"]);
    assert!(vault_names(&n).is_empty());
    let meta = std::fs::read(n.home.join("metadata")).unwrap();
    let root = RootKeypair::from_pkcs8_pem(&root_key_pem(0)).unwrap();
    let table = pkfs::vault::metadata::open(&root, &meta).unwrap();
    assert!(table.vaults.is_empty(), "no key of the vault is left");

    // Only the backup's recipient can read the replica now.
    let file = std::fs::read(&backup).unwrap();
    assert!(pkfs::vault::keychain::open_backup(&root, &file).is_err());
    let chain = pkfs::vault::keychain::open_backup(&recipient, &file)
        .unwrap()
        .keychain()
        .unwrap();
    assert_eq!(chain.generations(), vec![0, 1]);
    let mut plain = Vec::new();
    for (p, _) in blob_generations(&replica) {
        let bytes = std::fs::read(&p).unwrap();
        let opened = blob::open(|g| chain.get(g), &bytes).unwrap().unwrap();
        plain.push(String::from_utf8(opened.plaintext().to_vec()).unwrap());
    }
    plain.sort();
    assert_eq!(plain, vec!["second generation\n", "to be shredded\n"]);
}

#[test]
fn reencrypt_killed_at_any_moment_leaves_every_blob_readable() {
    const FILES: usize = 24;
    let body = |i: usize| format!("file {i}\n").repeat(60 * i + 1);
    let n = Node::with_vault();
    for i in 0..FILES {
        n.scratch_file(&format!("src/f{i:02}"), body(i).as_bytes());
    }
    n.ok([
        "secret",
        "import",
        n.scratch().join("src").to_str().unwrap(),
        "v:",
    ]);
    let targets: Vec<String> = (0..FILES).map(|i| format!("v:f{i:02}")).collect();
    let all: Vec<u8> = (0..FILES).flat_map(|i| body(i).into_bytes()).collect();
    let mut cut = false;
    for delay_ms in [60u64, 200, 450] {
        n.ok(["vault", "rotate-key", "v"]);
        let mut c = std::process::Command::new(BIN);
        clean_env(&mut c);
        c.arg("--home")
            .arg(&n.home)
            .arg("--passfile")
            .arg(&n.passfile)
            .args(["vault", "reencrypt", "v"])
            .env("PKFS_TEST_ONLY_FAST_KDF", "1")
            .env("PKFS_TEST_ONLY_ROOT_KEY", root_key(0))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let mut child = c.spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill();
        cut |= !child.wait().unwrap().success();
        // Whatever was done, every file reads, and fsck finds nothing wrong.
        let mut cat = vec!["secret".to_string(), "cat".to_string()];
        cat.extend(targets.iter().cloned());
        assert_eq!(n.ok(&cat).stdout, all, "after a kill at {delay_ms} ms");
        n.ok(["fsck", "v"]);
    }
    assert!(cut, "no run was cut: the test proved nothing");
    n.ok(["vault", "reencrypt", "v"]);
    let g = generations(&n, "v");
    assert_eq!(g.last().unwrap().1, FILES as u64, "{g:?}");
}
