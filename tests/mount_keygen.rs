//! Key generations through the mount: `vault rotate-key` and `reencrypt`
//! run by the daemon while files are open, and `rotate-after` followed by
//! the mount itself.

mod common;

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};

use common::mount::Mounted;
use common::*;

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

#[test]
fn rotation_through_the_mount_keeps_open_files_working() {
    let mut m = Mounted::new();
    fs::write(m.path("old"), b"written before the rotation\n").unwrap();
    let mut writer = fs::File::create(m.path("open")).unwrap();
    writer.write_all(b"first half, ").unwrap();
    writer.flush().unwrap();
    let mut reader = fs::File::open(m.path("old")).unwrap();
    m.wait_committed();

    let out = m.node.ok(["--json", "vault", "rotate-key", "v"]).json();
    assert_eq!(out["generation"], 1);

    // Both open files go on as before.
    writer.write_all(b"second half\n").unwrap();
    writer.sync_all().unwrap();
    let mut got = String::new();
    reader.read_to_string(&mut got).unwrap();
    assert_eq!(got, "written before the rotation\n");
    // A new file takes the new generation.
    fs::write(m.path("new"), b"written after the rotation\n").unwrap();
    drop(writer);
    drop(reader);
    m.wait_committed();
    assert_eq!(
        fs::read(m.path("open")).unwrap(),
        b"first half, second half\n"
    );
    m.umount();
    // Rotation re-encrypted nothing: the two older files keep generation 0.
    assert_eq!(generations(&m.node, "v"), vec![(0, 2), (1, 1)]);
    assert_eq!(m.node.cat("v:new"), b"written after the rotation\n");
    assert_eq!(m.node.cat("v:old"), b"written before the rotation\n");
}

#[test]
fn reencrypt_through_the_mount_leaves_open_files_and_finishes_once_closed() {
    let mut m = Mounted::new();
    fs::write(m.path("a"), b"alpha\n").unwrap();
    fs::write(m.path("b"), b"beta\n").unwrap();
    m.wait_committed();
    m.node.ok(["vault", "rotate-key", "v"]);
    let mut held = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(m.path("b"))
        .unwrap();
    let r = m.node.ok(["--json", "vault", "reencrypt", "v"]).json();
    assert_eq!(r["rewritten"], 1, "{r}");
    assert_eq!(r["skipped"][0], "b", "{r}");
    // The open file still works, and its writes are kept.
    held.seek(SeekFrom::End(0)).unwrap();
    held.write_all(b"more\n").unwrap();
    held.sync_all().unwrap();
    drop(held);
    assert_eq!(fs::read(m.path("a")).unwrap(), b"alpha\n");
    m.wait_committed();
    m.node
        .fail(ExitCode::Usage, ["vault", "drop-key", "v", "0"]);
    let r = m.node.ok(["--json", "vault", "reencrypt", "v"]).json();
    assert_eq!(r["rewritten"], 1, "{r}");
    assert_eq!(fs::read(m.path("b")).unwrap(), b"beta\nmore\n");
    assert_eq!(fs::read(m.path("a")).unwrap(), b"alpha\n");
    m.umount();
    assert_eq!(generations(&m.node, "v"), vec![(0, 0), (1, 2)]);
    m.node.ok(["fsck", "v"]);
}

#[test]
fn the_mount_rotates_by_itself_when_rotate_after_is_due() {
    let mut m = Mounted::new();
    m.node.ok(["vault", "set", "v", "--rotate-after", "1s"]);
    fs::write(m.path("one"), b"1\n").unwrap();
    m.wait_committed();
    std::thread::sleep(std::time::Duration::from_millis(2100));
    // Written: the commit adds a generation, and the next file uses it.
    fs::write(m.path("two"), b"2\n").unwrap();
    m.wait_committed();
    fs::write(m.path("three"), b"3\n").unwrap();
    m.wait_committed();
    m.umount();
    let g = generations(&m.node, "v");
    assert!(g.len() >= 2, "{g:?}");
    assert_eq!(g.iter().map(|(_, b)| b).sum::<u64>(), 3);
    // (Commands run afterwards may add more: the age is one second.)
    assert!(
        g.iter().any(|(gen, blobs)| *gen > 0 && *blobs > 0),
        "a generation added by the mount is used: {g:?}"
    );
    assert_eq!(m.node.cat("v:one"), b"1\n");
    assert_eq!(m.node.cat("v:three"), b"3\n");
}

#[test]
fn shred_through_the_mount_writes_the_backup_first_and_removes_the_vault() {
    use pkfs::crypto::rsa::RootKeypair;
    let m = Mounted::new();
    fs::write(m.path("s"), b"shred me\n").unwrap();
    m.wait_committed();
    m.node.ok(["vault", "rotate-key", "v"]);
    let replica = m.node.scratch().join("replica");
    copy_tree(&m.node.vault_dir("v"), &replica);
    let recipient = RootKeypair::from_pkcs8_pem(&root_key_pem(1)).unwrap();
    let pubkey = m
        .node
        .scratch_file("recipient.pem", recipient.public().to_pem().as_bytes());
    let backup = m.node.scratch().join("v.keys");
    let args = [
        "vault",
        "shred",
        "v",
        "--backup",
        backup.to_str().unwrap(),
        "--backup-to",
        pubkey.to_str().unwrap(),
    ];
    // Without --yes (and no terminal): refused, and no backup is written.
    m.node.fail(ExitCode::Usage, args);
    assert!(!backup.exists());
    let mut yes = args.to_vec();
    yes.push("--yes");
    m.node.ok(yes);
    assert!(!m.path("").exists(), "the vault left the mount");
    m.node
        .fail(ExitCode::VaultUndefined, ["vault", "stat", "v"]);
    let chain = pkfs::vault::keychain::open_backup(&recipient, &fs::read(&backup).unwrap())
        .unwrap()
        .keychain()
        .unwrap();
    assert_eq!(chain.generations(), vec![0, 1]);
    let mut found = false;
    for p in files_under(&replica.join("contents")) {
        let bytes = fs::read(&p).unwrap();
        if pkfs::vault::keychain::generation_of(&bytes).is_some() && bytes.len() >= 58 {
            let opened = pkfs::format::blob::open(|g| chain.get(g), &bytes)
                .unwrap()
                .unwrap();
            assert_eq!(&opened.plaintext()[..], b"shred me\n");
            found = true;
        }
    }
    assert!(found);
}
