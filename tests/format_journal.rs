//! The change-journal, version-record and commit-message vectors of
//! `docs/FORMAT.md` ("(b3) Change journal", "(b4) Version record", "(f)
//! Commit message"), recomputed from the spec's primitives and read back by
//! the library.
//!
//! As in `format_vectors.rs`, every expected value comes from the document.

mod common;

use common::vectors::{load, vector};
use pkfs::crypto::aead::Gcm;
use pkfs::crypto::kdf::hkdf32;
use pkfs::crypto::SymKey;
use pkfs::store::changes::Origin;
use pkfs::store::journal::{Journal, JOURNAL_FILE};

#[test]
fn journal_vector_matches_the_spec_and_the_library() {
    check("journal-four-records");
}

#[test]
fn journal_command_vector_matches_the_spec_and_the_library() {
    check("journal-command");
}

fn check(id: &str) {
    let vectors = load();
    let v = vector(&vectors, id);
    assert_eq!(v.text("kind"), "journal");
    let vault_key = SymKey::from_bytes(v.array("vault_key"));
    let head: [u8; 20] = v.array("head");
    let key = hkdf32(&vault_key, None, b"pkfs journal v1");
    assert_eq!(key.as_bytes(), &v.array::<32>("journal_key"), "journal_key");
    let gcm = Gcm::new(&key);

    // Each record: len ‖ iv ‖ tag ‖ ciphertext, AAD = domain ‖ HEAD ‖ index.
    let mut file = Vec::new();
    let mut i = 0u64;
    while let Some(iv) = v.opt_bytes(&format!("iv.{i}")) {
        let iv: [u8; 12] = iv.try_into().expect("12-byte iv");
        let mut aad = b"pkfs journal v1".to_vec();
        aad.extend_from_slice(&head);
        aad.extend_from_slice(&i.to_be_bytes());
        let env = gcm.seal_envelope_with_iv(&iv, &aad, &v.bytes(&format!("plain.{i}")));
        let mut rec = (env.len() as u32).to_be_bytes().to_vec();
        rec.extend_from_slice(&env);
        assert_eq!(rec, v.bytes(&format!("record.{i}")), "record.{i}");
        file.extend_from_slice(&rec);
        i += 1;
    }
    assert_eq!(i, 4, "the vector has four records");

    // The library reads the same bytes back, bound to that HEAD.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(JOURNAL_FILE), &file).unwrap();
    let head_id = git2::Oid::from_bytes(&head).unwrap();
    let j = Journal::load(dir.path(), &vault_key, Some(head_id)).unwrap();
    let mut k = 0;
    while let Some(line) = v.opt(&format!("origin.{k}")) {
        let (path, want) = line.split_once(' ').expect("origin.K = PATH ORIGIN");
        let want = match want {
            "changed" => Origin::Changed,
            p => Origin::Head(p.to_string()),
        };
        assert_eq!(j.origin(path), want, "origin of {path}");
        k += 1;
    }
    assert!(k > 0);
    let command = v
        .opt("command")
        .map(|c| c.split(' ').map(str::to_string).collect::<Vec<_>>());
    assert_eq!(j.command_paths(), command, "command");
    // Bound to HEAD: another HEAD reads nothing.
    let other = git2::Oid::from_bytes(&[0u8; 20]).unwrap();
    let stale = Journal::load(dir.path(), &vault_key, Some(other)).unwrap();
    assert!(stale.is_empty());
    v.assert_all_used();
}

#[test]
fn version_record_vector_matches_the_spec_and_the_library() {
    use hmac::{Hmac, KeyInit, Mac};
    use pkfs::store::version::{Version, VersionFile};
    let vectors = load();
    let v = vector(&vectors, "version-detached");
    assert_eq!(v.text("kind"), "version");
    let vault_key = SymKey::from_bytes(v.array("vault_key"));
    let key = hkdf32(&vault_key, None, b"pkfs version v1");
    assert_eq!(key.as_bytes(), &v.array::<32>("version_key"), "version_key");
    let main: [u8; 20] = v.array("main");
    let head: [u8; 20] = v.array("head");
    let counter = v.int("counter");
    let attached = v.int("attached") as u8;
    // From the spec: the fields, then HMAC-SHA256 of them.
    let mut body = b"PKFSVERS\x01".to_vec();
    body.extend_from_slice(&counter.to_be_bytes());
    body.extend_from_slice(&main);
    body.extend_from_slice(&head);
    body.push(attached);
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(&body);
    body.extend_from_slice(&mac.finalize().into_bytes());
    let record = v.bytes("record");
    assert_eq!(body, record, "record");
    // The library writes and reads the same bytes.
    let dir = tempfile::tempdir().unwrap();
    let file = VersionFile::new(dir.path(), &vault_key);
    let want = Version {
        counter,
        main: git2::Oid::from_bytes(&main).unwrap(),
        head: git2::Oid::from_bytes(&head).unwrap(),
        attached: attached == 1,
    };
    assert_eq!(file.encode(&want), record);
    assert_eq!(file.decode(&record).unwrap(), want);
    v.assert_all_used();
}

#[test]
fn commit_message_vector_matches_the_spec_and_the_library() {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    use pkfs::store::history::message_aad;
    use pkfs::store::Change;
    let vectors = load();
    let v = vector(&vectors, "commit-message");
    assert_eq!(v.text("kind"), "message");
    let vault_key = SymKey::from_bytes(v.array("vault_key"));
    let key = hkdf32(&vault_key, None, b"pkfs history v1");
    assert_eq!(key.as_bytes(), &v.array::<32>("history_key"), "history_key");
    let tree = git2::Oid::from_bytes(&v.bytes("tree")).unwrap();
    let parents: Vec<git2::Oid> = v
        .bytes("parents")
        .chunks(20)
        .map(|p| git2::Oid::from_bytes(p).unwrap())
        .collect();
    // From the spec: the domain, the tree, the parents.
    let mut aad = b"pkfs history v2".to_vec();
    aad.extend_from_slice(tree.as_bytes());
    for p in &parents {
        aad.extend_from_slice(p.as_bytes());
    }
    assert_eq!(aad, v.bytes("aad"), "aad");
    assert_eq!(message_aad(tree, &parents), aad, "the library's AAD");
    // The library writes the change list as exactly these bytes.
    let plain = v.bytes("plain");
    let changes: Vec<Change> = serde_json::from_slice(&plain).unwrap();
    assert_eq!(serde_json::to_vec(&changes).unwrap(), plain, "compact JSON");
    let env = Gcm::new(&key).seal_envelope_with_iv(&v.array("iv"), &aad, &plain);
    assert_eq!(STANDARD.encode(&env), v.text("line"), "line");
    let back = Gcm::new(&key)
        .open_envelope(&aad, &STANDARD.decode(v.text("line")).unwrap())
        .unwrap();
    assert_eq!(back.as_slice(), plain.as_slice());
    v.assert_all_used();
}
