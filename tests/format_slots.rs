//! The test vectors (f) of `docs/FORMAT.md`: keyed `root.key` slots (shares,
//! recovery code, key file) and share lines, recomputed from the spec's
//! primitives (HKDF-SHA256, AES-256-GCM, SHA-256) and checked against the
//! library. Every expected value comes from the document.

use sha2::{Digest, Sha256};

mod common;

use common::vectors::{hex, load, vector, Vector};
use pkfs::crypto::aead::Gcm;
use pkfs::crypto::kdf::hkdf32;
use pkfs::crypto::SymKey;
use pkfs::vault::protector::{encode_key_file, open_key_file, Slot};

const REQUIRED: &[&str] = &[
    "slot-shares",
    "slot-recovery",
    "slot-keyfile",
    "share-lines",
];

/// A keyed slot (shares, recovery code, key file): the body from the spec's
/// primitives, and the library opening it with the slot's key.
fn check_keyed_slot(v: &Vector) {
    use pkfs::vault::slots::{recovery, Keyed};
    let id = &v.id;
    let protector = v.int("protector") as u8;
    let secret = v.bytes("secret");
    let body = v.bytes("slot_body");
    let key_file = v.opt_bytes("key_file");
    let ikm: [u8; 32] = match &key_file {
        Some(f) => Sha256::digest(f).into(),
        None => v.array("ikm"),
    };
    // Header fields as the spec lays them out.
    let head = &body[..30];
    let mut created = [0u8; 8];
    created.copy_from_slice(&head[4..12]);
    assert_eq!(i64::from_be_bytes(created), 1_800_000_000, "{id}: created");
    let salt = [&head[0..4], &head[14..30]].concat();
    let mut info = b"pkfs root.key slot ".to_vec();
    info.push(protector);
    let kek = hkdf32(&SymKey::from_bytes(ikm), Some(&salt), &info);
    assert_eq!(kek.as_bytes()[..], v.bytes("kek")[..], "{id}: kek");
    let aad = [&b"PKFSROOT\x01"[..], &[protector], head].concat();
    let iv: [u8; 12] = body[30..42].try_into().unwrap();
    let sealed = Gcm::new(&kek).seal_envelope_with_iv(&iv, &aad, &secret);
    assert_eq!([head, &sealed[..]].concat(), body, "{id}: slot_body");
    // The library opens it with the key of its kind.
    let file = encode_key_file(&[Slot {
        id: protector,
        body: body.clone(),
    }]);
    let keyed = match protector {
        2 => Keyed::shares(
            SymKey::from_bytes(ikm),
            head[0..4].try_into().unwrap(),
            head[12],
            head[13],
        ),
        3 => {
            let words = v.text("words");
            let entropy = recovery::parse(words).unwrap();
            assert_eq!(entropy.as_bytes(), &ikm, "{id}: words");
            Keyed::recovery(entropy)
        }
        4 => Keyed::key_file(&key_file.unwrap()).unwrap(),
        other => panic!("{id}: protector {other}"),
    };
    assert_eq!(
        open_key_file(&keyed, &file).unwrap()[..],
        secret[..],
        "{id}"
    );
    v.assert_all_used();
}

/// Share lines: the checksum from SHA-256, the library's encoding and
/// parsing, and any two combining to the master key.
fn check_shares(v: &Vector) {
    use pkfs::vault::slots::share::{self, Share};
    let id = &v.id;
    let node = v.text("node_id");
    let mut parsed = Vec::new();
    for i in 1..=3 {
        let line = v.text(&format!("line_{i}"));
        let value = v.bytes(&format!("value_{i}"));
        let (body, check) = line.rsplit_once('-').unwrap();
        let want: String = Sha256::digest(body.as_bytes())[..4]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(check, want, "{id}: check of line {i}");
        assert_eq!(
            body,
            format!("pkfs-share1-{}-a1b2c3d4-2-{i}-{}", &node[..12], hex(&value)),
            "{id}: line {i}"
        );
        let s = Share::parse(line).unwrap();
        assert_eq!((s.index, s.k, &s.value[..]), (i, 2, &value[..]), "{id}");
        s.check_for(node, &[(2, 3, [0xa1, 0xb2, 0xc3, 0xd4])])
            .unwrap();
        assert_eq!(&*s.encode(), line, "{id}: encode {i}");
        parsed.push(s);
    }
    let master = v.bytes("master");
    for (a, b) in [(0, 1), (1, 2), (2, 0)] {
        let k = share::combine(&[&parsed[a], &parsed[b]]).unwrap();
        assert_eq!(k.as_bytes()[..], master[..], "{id}: shares {a} and {b}");
    }
    v.assert_all_used();
}

#[test]
fn slot_and_share_vectors_match_the_library() {
    let vectors = load();
    for id in REQUIRED {
        let v = vector(&vectors, id);
        match v.text("kind") {
            "keyedslot" => check_keyed_slot(v),
            "shares" => check_shares(v),
            other => panic!("vector {id}: unexpected kind `{other}`"),
        }
    }
}
