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
