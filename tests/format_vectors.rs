//! The test vectors of `docs/FORMAT.md`, recomputed with the library.
//!
//! Every expected value comes from the ```` ```vectors ```` blocks of the document;
//! nothing expected is hard-coded here, so this test fails when either the format
//! (the code) or the specification (the document) drifts. Where it can, each value
//! is also checked along a second path built only from the spec's primitives
//! (HKDF, AES-GCM, AES-SIV, SHA-256), so the document's prose and the library's
//! composition of those primitives are tied together too.

use std::collections::BTreeSet;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};

mod common;

use common::vectors::{hex, load, vector, Vector};
use pkfs::crypto::aead::Gcm;
use pkfs::crypto::kdf::{argon2id, Argon2Params};
use pkfs::crypto::kdf::{hkdf32, hkdf_into};
use pkfs::crypto::siv::{self, SivKey};
use pkfs::crypto::SymKey;
use pkfs::format::blob::{self, BlobError, FileCipher, Header};
use pkfs::format::links::{self, LinkCipher};
use pkfs::format::modes::{self as mode_record, ModeCipher, ModeMap};
use pkfs::format::names::{self, DiskName, EntryKind, NameCipher};
use pkfs::format::offsets;
use pkfs::format::tags::{Collector, TagKey, TagList};
use pkfs::vault::protector::{encode_key_file, open_key_file, parse_key_file, Slot};
use pkfs::vault::Passphrase;

/// Vectors the document must contain (their values come from the document).
const REQUIRED: &[&str] = &[
    "blob-one-page",
    "blob-two-pages",
    "blob-holes",
    "name-a",
    "name-secret-txt",
    "name-long-200",
    "symlink-target",
    "xattr",
    "tags-two-pages",
    "root-key",
    "commit-message",
    "keys-file",
    "keys-backup",
    "keychain-before-generations",
    "keychain-rotated",
    "mode-record",
];

// ---------------------------------------------------------------------------
// Blob vectors.

fn gen_key(v: &Vector) -> SymKey {
    SymKey::from_bytes(v.array("vault_key"))
}

fn header_of(v: &Vector) -> Header {
    Header {
        generation: u32::try_from(v.int("generation")).expect("generation fits u32"),
        file_id: v.array("file_id"),
        salt: v.array("salt"),
    }
}

/// Recompute a blob vector and check every value; returns the blob.
fn check_blob(v: &Vector) -> Vec<u8> {
    let id = &v.id;
    assert_eq!(v.text("kind"), "blob", "{id}: not a blob vector");
    let key = gen_key(v);
    let header = header_of(v);
    let plain = v.bytes("plaintext");
    assert!(!plain.is_empty(), "{id}: blob vectors need a plaintext");

    // File key: HKDF-SHA256(vault key, salt, "pkfs content v1").
    assert_eq!(blob::CONTENT_INFO, b"pkfs content v1");
    let file_key = hkdf32(&key, Some(&header.salt), b"pkfs content v1");
    assert_eq!(
        hex(file_key.as_bytes()),
        hex(&v.bytes("file_key")),
        "{id}: file_key"
    );

    // Header: the library's encoding and the spec's table agree with the document.
    let doc_header = v.bytes("header");
    assert_eq!(hex(&header.encode()), hex(&doc_header), "{id}: header");
    let mut spec_header = b"PKFS".to_vec();
    spec_header.extend_from_slice(&[1, 0]);
    spec_header.extend_from_slice(&header.generation.to_be_bytes());
    spec_header.extend_from_slice(&header.file_id);
    spec_header.extend_from_slice(&header.salt);
    assert_eq!(hex(&spec_header), hex(&doc_header), "{id}: header layout");
    assert_eq!(doc_header.len() as u64, offsets::HEADER_LEN);
    assert_eq!(
        Header::decode(&doc_header),
        Ok(header.clone()),
        "{id}: header decode"
    );

    let fc = FileCipher::new(&key, &header);
    let gcm = Gcm::new(&file_key);
    let pages = offsets::page_count(plain.len() as u64);
    let mut out = header.encode().to_vec();
    for (i, chunk) in plain.chunks(offsets::PAGE_SIZE as usize).enumerate() {
        let last = i as u64 + 1 == pages;
        let iv: [u8; 12] = v.array(&format!("iv.{i}"));
        let page = fc.seal_page_with_iv(i as u64, last, &iv, chunk);
        assert_eq!(page.len(), 28 + chunk.len(), "{id}: page {i} length");

        // AAD: file id (16) || i as u64 BE (8) || final (1: 01 on the last page).
        let mut aad = header.file_id.to_vec();
        aad.extend_from_slice(&(i as u64).to_be_bytes());
        aad.push(u8::from(last));
        assert_eq!(aad.len(), 25);
        let doc_aad = v.bytes(&format!("page.{i}.aad"));
        assert_eq!(hex(&aad), hex(&doc_aad), "{id}: page {i} aad");

        assert_eq!(
            hex(&page[..28]),
            hex(&v.bytes(&format!("page.{i}.iv_tag"))),
            "{id}: page {i} iv|tag"
        );
        if let Some(ct) = v.opt_bytes(&format!("page.{i}.ciphertext")) {
            assert_eq!(hex(&page[28..]), hex(&ct), "{id}: page {i} ciphertext");
        }

        // Second path: plain AES-256-GCM under the documented key and AAD.
        assert_eq!(
            hex(&gcm.seal_envelope_with_iv(&iv, &doc_aad, chunk)),
            hex(&page),
            "{id}: page {i} is not AES-GCM(file_key, iv, aad) as documented"
        );
        assert_eq!(&gcm.open_envelope(&doc_aad, &page).unwrap()[..], chunk);
        assert_eq!(&fc.open_page(i as u64, last, &page).unwrap()[..], chunk);
        // The final flag is authenticated: the same bytes under the other flag fail.
        assert_eq!(
            fc.open_page(i as u64, !last, &page),
            Err(BlobError::TagMismatch(i as u64)),
            "{id}: page {i} opened with the wrong final flag"
        );
        out.extend_from_slice(&page);
    }

    let blob_len = v.int("blob_len");
    assert_eq!(out.len() as u64, blob_len, "{id}: blob_len");
    assert_eq!(
        offsets::blob_len(plain.len() as u64),
        blob_len,
        "{id}: offsets::blob_len"
    );
    assert_eq!(
        offsets::plain_len(blob_len),
        Some(plain.len() as u64),
        "{id}: offsets::plain_len"
    );
    assert_eq!(
        offsets::page_count(plain.len() as u64),
        pages,
        "{id}: offsets::page_count"
    );
    assert_eq!(
        hex(&Sha256::digest(&out)),
        hex(&v.bytes("blob_sha256")),
        "{id}: blob_sha256"
    );
    if let Some(doc_blob) = v.opt_bytes("blob") {
        assert_eq!(hex(&out), hex(&doc_blob), "{id}: blob");
    }

    // The blob decrypts back to the plaintext through the whole-file reader.
    let generation = header.generation;
    let opened = blob::open(|g| (g == generation).then_some(&key), &out)
        .unwrap_or_else(|e| panic!("{id}: open failed: {e}"))
        .expect("non-empty blob");
    assert_eq!(opened.header, header);
    assert_eq!(
        hex(&opened.plaintext()),
        hex(&plain),
        "{id}: decrypted plaintext"
    );

    v.assert_all_used();
    out
}

// ---------------------------------------------------------------------------
// Name vectors.

fn check_name(v: &Vector) {
    let id = &v.id;
    assert_eq!(v.text("kind"), "name", "{id}: not a name vector");
    let key = gen_key(v);
    let diriv: [u8; 16] = v.array("diriv");
    let name = v.bytes("name");

    // Name key: HKDF-SHA256(vault key, no salt, "pkfs names v1"), 64 bytes.
    assert_eq!(names::NAME_INFO, b"pkfs names v1");
    let mut name_key = [0u8; 64];
    hkdf_into(&key, None, b"pkfs names v1", &mut name_key);
    let doc_name_key: [u8; 64] = v.array("name_key");
    assert_eq!(hex(&name_key), hex(&doc_name_key), "{id}: name_key");

    // Padding 1..=16 bytes of value k to a multiple of 16.
    let k = 16 - name.len() % 16;
    let mut padded = name.clone();
    padded.resize(name.len() + k, k as u8);
    let doc_padded = v.bytes("padded");
    assert_eq!(hex(&padded), hex(&doc_padded), "{id}: padded");

    let nc = NameCipher::new(&key);
    let encoded = nc.encrypt(&diriv, &name);
    let doc_encoded = v.text("encoded");
    assert_eq!(encoded, doc_encoded, "{id}: encoded");

    // Second path: AES-256-SIV(name_key, AD = [diriv], padded), base64url no padding.
    let sealed = siv::seal(&SivKey::from_bytes(doc_name_key), &diriv, &doc_padded);
    assert_eq!(
        URL_SAFE_NO_PAD.encode(&sealed),
        doc_encoded,
        "{id}: SIV path"
    );
    assert_eq!(sealed.len(), 16 + doc_padded.len());

    assert_eq!(
        nc.decrypt(&diriv, doc_encoded),
        Ok(name.clone()),
        "{id}: decrypt"
    );
    let mut other_iv = diriv;
    other_iv[0] ^= 1;
    assert!(
        nc.decrypt(&other_iv, doc_encoded).is_err(),
        "{id}: diriv not bound"
    );

    match (v.text("disk"), DiskName::from_encoded(encoded.clone())) {
        ("direct", DiskName::Direct(e)) => {
            assert_eq!(e, doc_encoded);
            assert!(e.len() <= names::MAX_DIRECT);
            assert_eq!(names::classify(&e), EntryKind::Direct);
        }
        ("long", DiskName::Long { entry, encoded: e }) => {
            assert_eq!(e, doc_encoded);
            assert!(e.len() > 255, "{id}: long names are those over 255 bytes");
            assert_eq!(names::MAX_DIRECT, 255);
            let doc_entry = v.text("entry");
            assert_eq!(entry, doc_entry, "{id}: entry");
            assert_eq!(names::long_entry(doc_encoded), doc_entry);
            let spec_entry = format!(
                ".L.{}",
                URL_SAFE_NO_PAD.encode(Sha256::digest(doc_encoded.as_bytes()))
            );
            assert_eq!(
                spec_entry, doc_entry,
                "{id}: entry is .L. + b64url(sha256(encoded))"
            );
            let sidecar = names::sidecar_of(&entry);
            assert_eq!(sidecar, v.text("sidecar"), "{id}: sidecar");
            assert_eq!(sidecar, format!("{doc_entry}.name"));
            assert_eq!(
                v.text("sidecar_content"),
                doc_encoded,
                "{id}: sidecar_content"
            );
            assert_eq!(names::classify(&entry), EntryKind::Long);
            assert_eq!(names::classify(&sidecar), EntryKind::Sidecar);
        }
        (doc, got) => panic!("{id}: document says disk = {doc}, library gives {got:?}"),
    }
    v.assert_all_used();
}

// ---------------------------------------------------------------------------
// Root key file vectors.

fn check_root_key(v: &Vector) {
    let id = &v.id;
    let pass = v.bytes("passphrase");
    let params = Argon2Params {
        m_cost_kib: v.int("m_cost_kib") as u32,
        t_cost: v.int("t_cost") as u32,
        p_cost: v.int("p_cost") as u32,
    };
    let salt = v.bytes("salt");
    let iv: [u8; 12] = v.array("iv");
    let secret = v.bytes("secret");
    let kek = argon2id(&pass, &salt, params).expect("sane test costs");
    assert_eq!(kek.as_bytes()[..], v.bytes("kek")[..], "{id}: kek");

    // The slot body from the spec's primitives: costs ‖ salt ‖ iv ‖ tag ‖ ct,
    // sealed with AAD = magic ‖ 01 ‖ protector id ‖ costs ‖ salt.
    let mut head = Vec::new();
    for c in [params.m_cost_kib, params.t_cost, params.p_cost] {
        head.extend_from_slice(&c.to_be_bytes());
    }
    head.extend_from_slice(&salt);
    let aad = [&b"PKFSROOT\x01\x01"[..], &head].concat();
    let body = [
        head.clone(),
        Gcm::new(&kek).seal_envelope_with_iv(&iv, &aad, &secret),
    ]
    .concat();
    let doc_body = v.bytes("slot_body");
    assert_eq!(body, doc_body, "{id}: slot_body");

    let mut file = b"PKFSROOT\x02\x01\x01".to_vec();
    file.extend_from_slice(&(doc_body.len() as u32).to_be_bytes());
    file.extend_from_slice(&doc_body);
    let digest = Sha256::digest(&file);
    file.extend_from_slice(&digest);
    let doc_file = v.bytes("file");
    assert_eq!(file, doc_file, "{id}: file");
    let v1 = [&b"PKFSROOT\x01\x01"[..], &doc_body].concat();
    let doc_v1 = v.bytes("file_v1");
    assert_eq!(v1, doc_v1, "{id}: file_v1");

    // The library opens both, and parses the slot out of both.
    let pp = |p: &[u8]| Passphrase::new(zeroize::Zeroizing::new(p.to_vec()), params);
    for f in [&doc_file, &doc_v1] {
        assert_eq!(open_key_file(&pp(&pass), f).unwrap()[..], secret[..]);
        assert!(matches!(
            open_key_file(&pp(b"wrong"), f),
            Err(pkfs::Error::WrongPassphrase)
        ));
        let (_, slots) = parse_key_file(f).unwrap();
        assert_eq!(
            slots,
            vec![Slot {
                id: 1,
                body: doc_body.clone()
            }]
        );
    }
    assert_eq!(
        encode_key_file(&parse_key_file(&doc_v1).unwrap().1),
        doc_file,
        "{id}: version 1 converts to version 2 unchanged"
    );
    v.assert_all_used();
}

/// The version 2 vector: page 0 sealed, page 1 a hole, page 2 sealed after
/// one hole (AAD with `h = 1`); zeroing a sealed page or filling the hole
/// fails.
fn check_blob_holes(v: &Vector) {
    let id = &v.id;
    let key = gen_key(v);
    let header = header_of(v);
    let plain = v.bytes("plaintext");
    assert_eq!(plain.len(), 2 * 4096 + 4);
    let mut doc_header = header.encode().to_vec();
    doc_header[blob::VERSION_AT as usize] = blob::VERSION_HOLES;
    assert_eq!(hex(&doc_header), hex(&v.bytes("header")), "{id}: header");
    let fc = FileCipher::new(&key, &header);
    let file_key = hkdf32(&key, Some(&header.salt), b"pkfs content v1");
    let gcm = Gcm::new(&file_key);
    let iv0: [u8; 12] = v.array("iv.0");
    let iv2: [u8; 12] = v.array("iv.2");
    let page0 = fc.seal_page_with_iv(0, false, &iv0, &plain[..4096]);
    assert_eq!(
        hex(&page0[..28]),
        hex(&v.bytes("page.0.iv_tag")),
        "{id}: page 0"
    );
    let page2 = fc.seal_page_after(2, true, 1, &iv2, &plain[8192..]);
    // AAD: file id ‖ 2 ‖ final 01 ‖ h = 1 as u64 (33 bytes).
    let mut aad = header.file_id.to_vec();
    aad.extend_from_slice(&2u64.to_be_bytes());
    aad.push(1);
    aad.extend_from_slice(&1u64.to_be_bytes());
    assert_eq!(hex(&aad), hex(&v.bytes("page.2.aad")), "{id}: page 2 aad");
    assert_eq!(
        hex(&gcm.seal_envelope_with_iv(&iv2, &aad, &plain[8192..])),
        hex(&page2)
    );
    assert_eq!(
        hex(&page2[..28]),
        hex(&v.bytes("page.2.iv_tag")),
        "{id}: page 2 iv|tag"
    );
    assert_eq!(
        hex(&page2[28..]),
        hex(&v.bytes("page.2.ciphertext")),
        "{id}: page 2 ciphertext"
    );
    let mut out = doc_header.clone();
    out.extend_from_slice(&page0);
    out.extend_from_slice(&[0u8; 4124]);
    out.extend_from_slice(&page2);
    assert_eq!(out.len() as u64, v.int("blob_len"), "{id}: blob_len");
    assert_eq!(
        offsets::plain_len(out.len() as u64),
        Some(plain.len() as u64)
    );
    assert_eq!(
        hex(&Sha256::digest(&out)),
        hex(&v.bytes("blob_sha256")),
        "{id}: blob_sha256"
    );
    let generation = header.generation;
    let open = |b: &[u8]| {
        blob::open(|g| (g == generation).then_some(&key), b)
            .map(|o| o.unwrap().plaintext().to_vec())
    };
    assert_eq!(hex(&open(&out).unwrap()), hex(&plain), "{id}: plaintext");
    // Version 1: a zero slot is not a hole.
    let mut v1 = out.clone();
    v1[blob::VERSION_AT as usize] = blob::VERSION;
    assert!(open(&v1).is_err(), "{id}: a hole in a version 1 blob");
    // Page 0 zeroed: page 1's run is now 2 long, page 2 fails.
    let mut zeroed = out.clone();
    zeroed[58..58 + 4124].fill(0);
    assert_eq!(
        open(&zeroed),
        Err(BlobError::TagMismatch(2)),
        "{id}: page 0 zeroed"
    );
    // The hole filled with anything: it is opened as a page, and fails.
    let mut filled = out.clone();
    filled[58 + 4124 + 50] = 1;
    assert!(open(&filled).is_err(), "{id}: hole filled");
    // The last page zeroed: refused.
    let mut last = out.clone();
    last[58 + 2 * 4124..].fill(0);
    assert!(open(&last).is_err(), "{id}: last page zeroed");
    v.assert_all_used();
}

// ---------------------------------------------------------------------------
// Keychain vectors.

fn ints(v: &Vector, key: &str) -> Vec<u64> {
    v.text(key)
        .split_whitespace()
        .map(|t| t.parse().expect("an int"))
        .collect()
}

fn check_keychain(v: &Vector) {
    use pkfs::vault::metadata::VaultRecord;
    let text = v.text("record");
    let rec: VaultRecord = serde_json::from_str(text).expect("the record parses");
    let mut keys: Vec<_> = rec.keys.iter().collect();
    keys.sort_by_key(|k| k.generation);
    let gens: Vec<u64> = keys.iter().map(|k| u64::from(k.generation)).collect();
    let created: Vec<u64> = keys.iter().map(|k| rec.created_of(k) as u64).collect();
    assert_eq!(gens, ints(v, "generations"), "{}", v.id);
    assert_eq!(created, ints(v, "created"), "{}", v.id);
    assert_eq!(
        gens.iter().max().copied(),
        Some(v.int("newest")),
        "{}",
        v.id
    );
    let dropped: Vec<u64> = rec
        .dropped
        .iter()
        .map(|d| u64::from(d.generation))
        .collect();
    assert_eq!(dropped, ints(v, "dropped"), "{}", v.id);
    let age = pkfs::vault::keychain::rotate_after_of(&rec).map_or(0, |d| d.as_millis() as u64);
    assert_eq!(age, v.int("rotate_after_ms"), "{}", v.id);
    assert_eq!(
        serde_json::to_string(&rec).unwrap(),
        text,
        "{}: written back",
        v.id
    );
    v.assert_all_used();
}

// ---------------------------------------------------------------------------
// Tests.

#[test]
fn document_holds_every_required_vector() {
    let vectors = load();
    let ids: BTreeSet<&str> = vectors.iter().map(|v| v.id.as_str()).collect();
    for id in REQUIRED {
        assert!(ids.contains(id), "FORMAT.md lost vector `{id}`");
    }
}

#[test]
fn every_vector_matches_the_library() {
    let vectors = load();
    let mut checked = 0;
    for v in &vectors {
        match v.text("kind") {
            "blob" => {
                check_blob(v);
            }
            "blob-holes" => check_blob_holes(v),
            "name" => check_name(v),
            "symlink" => check_symlink(v),
            "xattr" => check_xattr(v),
            "xattr-long" => check_xattr_long(v),
            "tags" => check_tags(v, &vectors),
            "journal" | "version" | "message" => {} // checked in format_journal.rs
            "rootkey" => check_root_key(v),
            "keysfile" => check_keys_file(v),
            "keysbackup" => check_keys_backup(v),
            "keyedslot" | "shares" => {} // checked in format_slots.rs
            "keychain" => check_keychain(v),
            "modes" => check_mode_record(v),
            other => panic!("vector {}: unknown kind `{other}`", v.id),
        }
        checked += 1;
    }
    assert!(checked >= REQUIRED.len());
}

#[test]
fn one_page_vector_detects_every_flipped_byte() {
    let vectors = load();
    let v = vector(&vectors, "blob-one-page");
    let good = check_blob(v);
    let key = gen_key(v);
    let generation = header_of(v).generation;
    for i in 0..good.len() {
        for mask in [0x01u8, 0x80, 0xff] {
            let mut bad = good.clone();
            bad[i] ^= mask;
            let r = blob::open(|g| (g == generation).then_some(&key), &bad);
            assert!(
                r.is_err(),
                "flipping byte {i} with {mask:#04x} went unnoticed"
            );
        }
    }
    // Every truncation fails too, including the cut to exactly the header: a
    // header without pages is not a blob (only a zero-byte blob is an empty file).
    for len in 1..good.len() {
        let r = blob::open(|g| (g == generation).then_some(&key), &good[..len]);
        assert!(r.is_err(), "truncation to {len} bytes went unnoticed");
    }
    let header_len = offsets::HEADER_LEN as usize;
    assert_eq!(
        blob::open(|g| (g == generation).then_some(&key), &good[..header_len]).err(),
        Some(BlobError::BadLength(offsets::HEADER_LEN)),
        "a header-only blob must be rejected"
    );
}

#[test]
fn empty_file_forms() {
    let vectors = load();
    let v = vector(&vectors, "blob-one-page");
    let key = gen_key(v);
    let header = header_of(v);
    let generation = header.generation;
    // The only empty file is the zero-byte blob; the writer produces it, and a
    // header without pages (the document's header alone) is rejected.
    assert!(blob::open(|_| Some(&key), &[]).unwrap().is_none());
    assert!(blob::seal(&key, &header, &[]).is_empty());
    let header_only = v.bytes("header");
    assert_eq!(header_only.len() as u64, offsets::HEADER_LEN);
    assert_eq!(
        blob::open(|g| (g == generation).then_some(&key), &header_only).err(),
        Some(BlobError::BadLength(offsets::HEADER_LEN)),
        "a header-only blob must be rejected"
    );
    assert_eq!(offsets::blob_len(0), 0);
    assert_eq!(offsets::plain_len(0), Some(0));
    assert_eq!(offsets::plain_len(offsets::HEADER_LEN), None);
}

#[test]
fn two_page_vector_follows_the_rewrite_rule() {
    let vectors = load();
    let v = vector(&vectors, "blob-two-pages");
    let good = check_blob(v);
    let key = gen_key(v);
    let generation = header_of(v).generation;
    let key_of = |g: u32| (g == generation).then_some(&key);
    let old = blob::open(key_of, &good).unwrap().unwrap();
    let mut plain = old.plaintext().to_vec();

    // Unchanged content: every byte is kept.
    let same = blob::reseal(key_of, &old, &plain).unwrap();
    assert_eq!(
        hex(&same),
        hex(&good),
        "rewrite of unchanged content changed the blob"
    );

    // The key of the old header's generation is used, never another one.
    assert_eq!(
        blob::reseal(|g| (g != generation).then_some(&key), &old, &plain),
        Err(BlobError::UnknownGeneration(generation))
    );
    // Rewriting to empty content gives the zero-byte blob.
    assert_eq!(blob::reseal(key_of, &old, &[]), Ok(Vec::new()));

    // Change page 1 only: header and page 0 kept, page 1 gets a fresh IV.
    let last = plain.len() - 1;
    plain[last] ^= 0x20;
    let new = blob::reseal(key_of, &old, &plain).unwrap();
    let p1 = offsets::page_blob_offset(1) as usize;
    assert_eq!(
        hex(&new[..p1]),
        hex(&good[..p1]),
        "header and page 0 must be kept"
    );
    assert_ne!(
        new[p1..p1 + 12],
        good[p1..p1 + 12],
        "a changed page needs a fresh IV"
    );
    let reopened = blob::open(key_of, &new).unwrap().unwrap();
    assert_eq!(hex(&reopened.plaintext()), hex(&plain));

    // Shrinking to page 0's content: page 0 becomes final, so it is re-sealed
    // even though its plaintext is unchanged.
    let old_plain = old.plaintext();
    let first = &old_plain[..offsets::PAGE_SIZE as usize];
    let shrunk = blob::reseal(key_of, &old, first).unwrap();
    assert_eq!(shrunk.len(), p1);
    assert_eq!(hex(&shrunk[..58]), hex(&good[..58]), "header kept");
    assert_ne!(
        shrunk[58..p1],
        good[58..p1],
        "page 0 became final and must be re-sealed"
    );
    assert_eq!(
        hex(&blob::open(key_of, &shrunk).unwrap().unwrap().plaintext()),
        hex(first)
    );

    // Moving page 1 into page 0's place, or swapping them, fails.
    let p0 = offsets::page_blob_offset(0) as usize;
    let mut moved = good[..p0].to_vec();
    moved.extend_from_slice(&good[p1..]);
    assert!(blob::open(key_of, &moved).is_err());
    let mut swapped = good[..p0].to_vec();
    swapped.extend_from_slice(&good[p1..]);
    swapped.extend_from_slice(&good[p0..p1]);
    assert!(blob::open(key_of, &swapped).is_err());
}

#[test]
fn two_page_vector_binds_the_final_flag() {
    let vectors = load();
    let v = vector(&vectors, "blob-two-pages");
    let good = check_blob(v);
    let key = gen_key(v);
    let header = header_of(v);
    let generation = header.generation;
    let key_of = |g: u32| (g == generation).then_some(&key);
    let plain = v.bytes("plaintext");
    let page_size = offsets::PAGE_SIZE as usize;
    let p1 = offsets::page_blob_offset(1) as usize;

    // Truncating at the page boundary leaves a length-valid blob of one full
    // page, but page 0 was sealed as non-final: authentication fails.
    assert_eq!(offsets::plain_len(p1 as u64), Some(offsets::PAGE_SIZE));
    assert_eq!(
        blob::open(key_of, &good[..p1]).err(),
        Some(BlobError::TagMismatch(0)),
        "truncation at the page boundary went unnoticed"
    );

    // Appending a copy of the last page: the former last page is no longer last.
    let mut longer = good.clone();
    longer.extend_from_slice(&good[p1..]);
    assert!(
        blob::open(key_of, &longer).is_err(),
        "appended page accepted"
    );

    // Re-sealing a page with the other final flag, same key, IV and plaintext,
    // gives a tag different from the document's: the flag is in the AAD.
    let fc = FileCipher::new(&key, &header);
    for (i, last) in [(0u64, true), (1u64, false)] {
        let iv: [u8; 12] = v.array(&format!("iv.{i}"));
        let chunk = &plain[i as usize * page_size..plain.len().min((i as usize + 1) * page_size)];
        let flipped = fc.seal_page_with_iv(i, last, &iv, chunk);
        let doc_iv_tag = v.bytes(&format!("page.{i}.iv_tag"));
        assert_eq!(hex(&flipped[..12]), hex(&doc_iv_tag[..12]), "same IV");
        assert_ne!(
            hex(&flipped[12..28]),
            hex(&doc_iv_tag[12..28]),
            "page {i} sealed with final = {last} has the document's tag"
        );
        // GCM's keystream does not depend on the AAD: only the tag differs.
        let start = offsets::page_blob_offset(i) as usize;
        assert_eq!(
            hex(&flipped[28..]),
            hex(&good[start + 28..start + 28 + chunk.len()])
        );
    }
}

// ---------------------------------------------------------------------------
// Symlink targets and extended attributes.

fn check_symlink(v: &Vector) {
    let key = gen_key(v);
    assert_eq!(
        hex(hkdf32(&key, None, links::LINK_INFO).as_bytes()),
        hex(&v.bytes("link_key")),
        "{}",
        v.id
    );
    let c = LinkCipher::new(&key);
    let disk = c.seal_target_with_iv(&v.array("iv"), &v.bytes("target"));
    assert_eq!(disk.as_deref(), Some(v.text("disk")), "{}", v.id);
    let back = c
        .open_target(v.text("disk").as_bytes())
        .expect("vector target opens");
    assert_eq!(back.as_slice(), v.bytes("target").as_slice());
    v.assert_all_used();
}

fn check_xattr(v: &Vector) {
    let key = gen_key(v);
    assert_eq!(
        hex(hkdf32(&key, None, links::XATTR_INFO).as_bytes()),
        hex(&v.bytes("xattr_key")),
        "{}",
        v.id
    );
    let c = LinkCipher::new(&key);
    let name = c.xattr_name(&v.bytes("name"));
    assert_eq!(name, v.text("disk_name"), "{}", v.id);
    let sealed = c.seal_xattr_with_iv(&name, &v.array("iv"), &v.bytes("value"));
    assert_eq!(hex(&sealed), hex(&v.bytes("sealed")), "{}", v.id);
    assert_eq!(c.xattr_plain_name(&name).unwrap(), v.bytes("name"));
    assert_eq!(
        c.open_xattr(&name, &sealed).unwrap().as_slice(),
        v.bytes("value").as_slice()
    );
    v.assert_all_used();
}

/// A mode record: the library's and the spec's primitives agree.
fn check_mode_record(v: &Vector) {
    let id = &v.id;
    let key = gen_key(v);
    let modes_key = hkdf32(&key, None, mode_record::MODES_INFO);
    assert_eq!(
        hex(modes_key.as_bytes()),
        hex(&v.bytes("modes_key")),
        "{id}"
    );
    let want: ModeMap = [(".".to_string(), 0o755), ("AbCd".to_string(), 0o640)]
        .into_iter()
        .collect();
    assert_eq!(
        hex(&mode_record::encode(&want)),
        hex(&v.bytes("plain")),
        "{id}"
    );
    let dir_iv: [u8; 16] = v.array("dir_iv");
    let c = ModeCipher::new(&key);
    let file = c.seal_with_iv(&v.array("iv"), &dir_iv, &want);
    assert_eq!(hex(&file), hex(&v.bytes("file")), "{id}");
    assert_eq!(c.open(&dir_iv, &v.bytes("file")).unwrap(), want, "{id}");
    // Second path: AES-256-GCM by hand, AAD = "pkfs modes v1" | dir_iv.
    let mut aad = b"pkfs modes v1".to_vec();
    aad.extend_from_slice(&dir_iv);
    let by_hand =
        Gcm::new(&modes_key).seal_envelope_with_iv(&v.array("iv"), &aad, &v.bytes("plain"));
    assert_eq!(hex(&by_hand), hex(&v.bytes("file")), "{id}");
    assert_eq!(names::classify(mode_record::MODES_FILE), EntryKind::Modes);
    v.assert_all_used();
}

/// A name too long for the backing name: SHA-256 of E in the name, E in
/// front of the value.
fn check_xattr_long(v: &Vector) {
    let key = gen_key(v);
    let c = LinkCipher::new(&key);
    let name = v.bytes("name");
    let (disk, long) = c.xattr_disk(&name);
    let enc = long.expect("a long name");
    assert_eq!(disk, v.text("disk_name"), "{}", v.id);
    assert_eq!(enc, v.text("encrypted_name"), "{}", v.id);
    let mut stored = (enc.len() as u16).to_be_bytes().to_vec();
    stored.extend_from_slice(enc.as_bytes());
    stored.extend_from_slice(&c.seal_xattr_with_iv(&disk, &v.array("iv"), &v.bytes("value")));
    assert_eq!(hex(&stored), hex(&v.bytes("stored")), "{}", v.id);
    assert_eq!(c.xattr_long_plain_name(&disk, &stored).unwrap(), name);
    assert_eq!(
        c.open_xattr_value(&disk, &stored).unwrap().as_slice(),
        v.bytes("value").as_slice()
    );
    v.assert_all_used();
}

/// A tag list vector: the list of the blob of vector `of`.
fn check_tags(v: &Vector, all: &[Vector]) {
    use hmac::{Hmac, KeyInit, Mac};
    let id = &v.id;
    let of = all
        .iter()
        .find(|b| b.id == v.text("of"))
        .unwrap_or_else(|| panic!("{id}: no vector {}", v.text("of")));
    let blob = check_blob(of);
    let key = gen_key(v);
    assert_eq!(hex(&v.bytes("vault_key")), hex(&of.bytes("vault_key")));

    // Key: HKDF-SHA256(vault key, no salt, "pkfs tags v1").
    let mut tag_key = [0u8; 32];
    hkdf_into(&key, None, b"pkfs tags v1", &mut tag_key);
    assert_eq!(hex(&tag_key), hex(&v.bytes("tag_key")), "{id}: tag_key");
    // Blob id: git's, computed by libgit2.
    let blob_id = git2::Oid::hash_object(git2::ObjectType::Blob, &blob).unwrap();
    assert_eq!(
        hex(blob_id.as_bytes()),
        hex(&v.bytes("blob_id")),
        "{id}: blob_id"
    );

    // The library's list.
    let mut c = Collector::new(blob.len() as u64).unwrap();
    c.feed(&blob);
    let mut raw = [0u8; 20];
    raw.copy_from_slice(blob_id.as_bytes());
    let list = c.finish(raw).unwrap();
    let doc = v.bytes("tags");
    assert_eq!(
        hex(&list.encode(&TagKey::new(&key))),
        hex(&doc),
        "{id}: tags"
    );
    assert_eq!(
        TagList::decode(&doc, &TagKey::new(&key), &raw).as_ref(),
        Ok(&list),
        "{id}: decode"
    );

    // Second path, from the spec's table: magic, version, id, length, header,
    // each page's tag (bytes 12..28 of the page), then HMAC-SHA256.
    let mut spec = b"PKFSTAGS\x01".to_vec();
    spec.extend_from_slice(blob_id.as_bytes());
    spec.extend_from_slice(&(blob.len() as u64).to_be_bytes());
    spec.extend_from_slice(&blob[..58]);
    for i in 0..offsets::page_count(offsets::plain_len(blob.len() as u64).unwrap()) {
        let at = (offsets::page_blob_offset(i) + 12) as usize;
        spec.extend_from_slice(&blob[at..at + 16]);
    }
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&tag_key).unwrap();
    mac.update(&spec);
    spec.extend_from_slice(&mac.finalize().into_bytes());
    assert_eq!(hex(&spec), hex(&doc), "{id}: tags layout");
}

// ---------------------------------------------------------------------------
// Key service vectors.

fn check_keys_file(v: &Vector) {
    use pkfs::keys::file;
    let key = SymKey::from_bytes(v.array("keystore_key"));
    let iv: [u8; 12] = v.array("iv");
    let plain = v.bytes("plaintext");
    let expect = v.bytes("file");
    let store = file::parse_store(&plain).expect("the vector's store parses");
    assert_eq!(
        &file::store_json(&store)[..],
        &plain[..],
        "{}: store JSON",
        v.id
    );
    assert_eq!(
        hex(&file::seal_with_iv(&key, &iv, &store)),
        hex(&expect),
        "{}",
        v.id
    );
    assert_eq!(file::open(&key, &expect).unwrap(), store);
    // Second path: the spec's primitives (AES-256-GCM, AAD = the 9-byte header).
    let mut ct = plain.clone();
    let tag = Gcm::new(&key).seal_in_place(&iv, &expect[..9], &mut ct);
    assert_eq!(&expect[..9], b"PKFSKEYS\x01");
    assert_eq!(&expect[9..21], &iv);
    assert_eq!(&expect[21..37], &tag);
    assert_eq!(&expect[37..], &ct[..]);
    v.assert_all_used();
}

fn check_keys_backup(v: &Vector) {
    use pkfs::keys::backup;
    let file_key = SymKey::from_bytes(v.array("file_key"));
    let wrapped = v.bytes("wrapped");
    let iv: [u8; 12] = v.array("iv");
    let plain = v.bytes("plaintext");
    let expect = v.bytes("file");
    assert_eq!(
        hex(&backup::seal_parts(&wrapped, &file_key, &iv, &plain)),
        hex(&expect),
        "{}",
        v.id
    );
    let json = backup::open_parts(&expect, |w| (w == &wrapped[..]).then(|| file_key.clone()))
        .expect("the vector opens");
    let b = backup::parse(&json).expect("the vector's backup parses");
    assert_eq!(b.owner, "o");
    assert_eq!(&pkfs::keys::file::to_json(&b)[..], &plain[..]);
    let n = wrapped.len();
    assert_eq!(&expect[9..11], &(n as u16).to_be_bytes());
    let mut ct = plain.clone();
    let tag = Gcm::new(&file_key).seal_in_place(&iv, &expect[..11 + n], &mut ct);
    assert_eq!(&expect[11 + n + 12..11 + n + 28], &tag);
    v.assert_all_used();
}
