//! Property tests of the metadata file (`pkfs::vault::metadata`), and of
//! `root.key` (`pkfs::vault::protector`): whatever its
//! bytes, it opens to the table that was sealed or is refused as corrupt, and a
//! table that authenticates (anyone holding `root.pub` can write one) cannot
//! name a vault directory outside `vaults/`. These properties run a quarter of
//! `PROPTEST_CASES`: each open is an RSA-4096 private-key operation. See
//! `tests/prop_format.rs` for a longer pass.

mod common;
mod prop_common;

use std::collections::BTreeMap;

use pkfs::crypto::aead::Gcm;
use pkfs::crypto::kdf::Argon2Params;
use pkfs::crypto::rsa::RootKeypair;
use pkfs::crypto::SymKey;
use pkfs::format::names;
use pkfs::vault::metadata::{self, Table, VaultRecord, WrappedKey};
use pkfs::vault::protector::{self, open_key_file, seal_key_file};
use pkfs::vault::Passphrase;
use pkfs::Error;
use prop_common::{bytes, config, must, mutate, mutation};
use proptest::prelude::*;
use zeroize::Zeroizing;

fn root() -> &'static RootKeypair {
    static ROOT: std::sync::OnceLock<RootKeypair> = std::sync::OnceLock::new();
    ROOT.get_or_init(|| RootKeypair::from_pkcs8_pem(&common::root_key_pem(0)).unwrap())
}

fn table() -> impl Strategy<Value = Table> {
    let record = (
        "[1-9A-HJ-NP-Za-km-z]{16,22}",
        vault_name(),
        any::<i64>(),
        proptest::collection::vec((any::<u32>(), "[A-Za-z0-9+/=]{0,20}"), 0..3),
        proptest::collection::btree_map(any::<String>(), any::<String>(), 0..3),
    )
        .prop_map(|(id, name, created, keys, settings)| VaultRecord {
            id,
            name,
            created,
            keys: keys
                .into_iter()
                .map(|(generation, wrapped)| WrappedKey {
                    generation,
                    wrapped,
                    created: (generation % 2 == 1).then_some(i64::from(generation)),
                })
                .collect(),
            dropped: Vec::new(),
            settings,
        });
    (any::<u32>(), proptest::collection::vec(record, 0..4)).prop_map(|(version, vaults)| Table {
        version,
        vaults,
        settings: Default::default(),
    })
}

/// The Base58 alphabet (Bitcoin's): vault ids are Base58 of 16 random bytes.
const BASE58: &str = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

/// A name `vault create` accepts.
fn vault_name() -> impl Strategy<Value = String> {
    "[^/:\\x00]{1,60}".prop_filter("not . or ..", |n| n != "." && n != "..")
}

/// Vault ids, good and hostile: paths out of `vaults/`, separators, anything.
fn any_vault_id() -> impl Strategy<Value = String> {
    prop_oneof![
        "[1-9A-HJ-NP-Za-km-z]{1,50}",
        any::<String>(),
        "(\\.\\./){1,4}[a-z]{0,8}",
        "/[a-z/]{0,20}",
        "[a-zA-Z0-9]{1,8}/[a-zA-Z0-9]{1,8}",
        Just(String::new()),
        Just("..".to_string()),
        Just(".".to_string()),
    ]
}

fn is_corrupt(r: &Result<Table, Error>) -> bool {
    matches!(r, Err(Error::Corrupt { .. }))
}

/// A metadata file whose envelope holds `body`, as pkfs writes it: sealed with
/// a key wrapped under the node's public key and authenticated with the HMAC
/// key of the private key. Tests of the table's own checks (defence in depth
/// behind the HMAC) use it.
fn metadata_with_body(body: &[u8]) -> Vec<u8> {
    let mut out = forged_with_public_key(body);
    out.truncate(out.len() - metadata::MAC_LEN);
    let key = root().metadata_mac_key();
    let mut m =
        <hmac::Hmac<sha2::Sha256> as hmac::KeyInit>::new_from_slice(key.as_bytes()).unwrap();
    hmac::Mac::update(&mut m, &out);
    out.extend_from_slice(&hmac::Mac::finalize(m).into_bytes());
    out
}

/// What anyone who can read `root.pub` can write: a valid envelope, with a
/// MAC made under a key they chose (not the private key's).
fn forged_with_public_key(body: &[u8]) -> Vec<u8> {
    let key = SymKey::from_bytes([11; 32]);
    let wrapped = root().public().wrap_key(&key);
    let mut out = metadata::MAGIC.to_vec();
    out.push(metadata::VERSION);
    out.extend_from_slice(&(wrapped.len() as u16).to_be_bytes());
    out.extend_from_slice(&wrapped);
    let env = Gcm::new(&key).seal_envelope(&out, body);
    out.extend_from_slice(&env);
    let mut m = <hmac::Hmac<sha2::Sha256> as hmac::KeyInit>::new_from_slice(&[11; 32]).unwrap();
    hmac::Mac::update(&mut m, &out);
    out.extend_from_slice(&hmac::Mac::finalize(m).into_bytes());
    out
}

#[test]
fn a_table_forged_with_the_public_key_alone_is_refused() {
    let t = Table {
        settings: Default::default(),
        version: 1,
        vaults: vec![VaultRecord {
            id: "a".into(),
            name: "work".into(),
            created: 0,
            keys: vec![],
            dropped: vec![],
            settings: BTreeMap::new(),
        }],
    };
    let body = serde_json::to_vec(&t).unwrap();
    let got = metadata::open(root(), &forged_with_public_key(&body));
    assert!(is_corrupt(&got), "{got:?}");
    // The same table, authenticated with the private key's MAC key, opens.
    assert_eq!(
        metadata::open(root(), &metadata_with_body(&body)).unwrap(),
        t
    );
}

proptest! {
    #![proptest_config(config(4))]

    #[test]
    fn metadata_round_trip(t in table()) {
        let sealed = metadata::seal(root(), &t);
        prop_assert_eq!(must(metadata::open(root(), &sealed))?, t);
    }

    #[test]
    fn mutated_metadata_is_rejected(t in table(), m in mutation()) {
        let sealed = metadata::seal(root(), &t);
        // Header, wrapped key, then the envelope in 64-byte chunks.
        let bad = mutate(&sealed, &m, 11 + 512, 64);
        let got = metadata::open(root(), &bad);
        if bad == sealed {
            prop_assert_eq!(must(got)?, t);
        } else {
            prop_assert!(is_corrupt(&got), "{:?}: {:?}", m, got);
        }
    }

    #[test]
    fn arbitrary_metadata_bytes_are_rejected(
        raw in proptest::collection::vec(any::<u8>(), 0..700),
        n in any::<u16>(),
        well_formed_header in any::<bool>(),
    ) {
        let mut file = raw.clone();
        if well_formed_header {
            // Past the magic and version checks, into the length and RSA paths.
            let mut head = metadata::MAGIC.to_vec();
            head.push(metadata::VERSION);
            head.extend_from_slice(&n.to_be_bytes());
            file.splice(0..0, head);
        }
        prop_assert!(is_corrupt(&metadata::open(root(), &file)));
    }

    #[test]
    fn authenticated_but_hostile_tables_are_refused_not_panicked_on(
        t in table(),
        m in mutation(),
        raw in proptest::collection::vec(any::<u8>(), 0..100),
    ) {
        // The envelope authenticates; only the JSON parser stands in the way.
        let json = serde_json::to_vec(&t).unwrap();
        let changed = mutate(&json, &m, 0, 8);
        match metadata::open(root(), &metadata_with_body(&changed)) {
            Ok(parsed) => prop_assert_eq!(
                serde_json::from_slice::<Table>(&changed).ok(),
                Some(parsed)
            ),
            Err(e) => prop_assert!(matches!(e, Error::Corrupt { .. }), "{}", e),
        }
        match metadata::open(root(), &metadata_with_body(&raw)) {
            Ok(parsed) => prop_assert_eq!(serde_json::from_slice::<Table>(&raw).ok(), Some(parsed)),
            Err(e) => prop_assert!(matches!(e, Error::Corrupt { .. }), "{}", e),
        }
    }

    #[test]
    fn vault_ids_and_names_in_the_table_are_checked(
        id in any_vault_id(),
        name in prop_oneof![vault_name(), any::<String>()],
    ) {
        // A table anyone with `root.pub` can write: an id is used as a path
        // component under `vaults/` (and removed by `vault delete`).
        let t = Table {
            settings: Default::default(),
            version: 1,
            vaults: vec![VaultRecord {
                id: id.clone(),
                name: name.clone(),
                created: 0,
                keys: vec![],
                dropped: vec![],
                settings: BTreeMap::new(),
            }],
        };
        let got = metadata::open(root(), &metadata_with_body(&serde_json::to_vec(&t).unwrap()));
        let id_ok = (1..=44).contains(&id.len()) && id.chars().all(|c| BASE58.contains(c));
        let name_ok = names::validate(name.as_bytes()).is_ok();
        if id_ok && name_ok {
            prop_assert_eq!(must(got)?, t);
            // One plain path component: the vault stays inside vaults/.
            let p = std::path::Path::new("vaults").join(&id);
            prop_assert_eq!(p.components().count(), 2);
            prop_assert!(matches!(p.components().nth(1), Some(std::path::Component::Normal(_))));
        } else {
            prop_assert!(is_corrupt(&got), "{:?} {:?}: {:?}", id, name, got);
        }
        prop_assert_eq!(metadata::is_vault_id(&id), id_ok);
    }
}

#[test]
fn deeply_nested_json_in_the_table_is_refused() {
    // serde_json's recursion limit, not the stack, ends this.
    let mut body = Vec::new();
    body.extend_from_slice(b"{\"version\":1,\"vaults\":");
    body.extend(std::iter::repeat_n(b'[', 100_000));
    let got = metadata::open(root(), &metadata_with_body(&body));
    assert!(matches!(got, Err(Error::Corrupt { .. })), "{got:?}");
    let mut settings = BTreeMap::new();
    settings.insert("k".to_string(), "v".to_string());
    let ok = Table {
        settings: Default::default(),
        version: 1,
        vaults: vec![VaultRecord {
            id: "a".into(),
            name: "n".into(),
            created: 0,
            keys: vec![],
            dropped: vec![],
            settings,
        }],
    };
    let body = serde_json::to_vec(&ok).unwrap();
    assert_eq!(
        metadata::open(root(), &metadata_with_body(&body)).unwrap(),
        ok
    );
}

#[test]
fn a_forged_vault_id_cannot_point_vault_delete_outside_the_home() {
    // Node fixtures use test root key 0, the key `metadata_with_body` wraps under.
    let node = common::Node::init();
    let victim = node.scratch().join("victim");
    std::fs::create_dir_all(&victim).unwrap();
    std::fs::write(victim.join("keep"), b"precious").unwrap();
    for id in [
        victim.to_str().unwrap().to_string(),
        "../../victim".to_string(),
    ] {
        let t = Table {
            settings: Default::default(),
            version: 1,
            vaults: vec![VaultRecord {
                id: id.clone(),
                name: "evil".into(),
                created: 0,
                keys: vec![],
                dropped: vec![],
                settings: BTreeMap::new(),
            }],
        };
        // Forged with the public key alone (refused by the MAC), and even with
        // a valid MAC (refused by the id check).
        for forged in [
            forged_with_public_key(&serde_json::to_vec(&t).unwrap()),
            metadata_with_body(&serde_json::to_vec(&t).unwrap()),
        ] {
            std::fs::write(node.home.join("metadata"), forged).unwrap();
            node.fail(
                common::ExitCode::Corrupt,
                ["vault", "delete", "--yes", "evil"],
            );
            assert_eq!(
                std::fs::read(victim.join("keep")).unwrap(),
                b"precious",
                "id {id:?}"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// root.key: the passphrase-sealed root private key.

fn passphrase(p: &[u8]) -> Passphrase {
    Passphrase::new(Zeroizing::new(p.to_vec()), Argon2Params::TEST_ONLY)
}

/// Whether the Argon2id parameters `root.key` asks for (bytes 10..22) are ones
/// the reader accepts but that cost more than a test can spend: a hostile file
/// may ask for up to 4 GiB and 64 passes (bounded by design, and slow).
fn costly(file: &[u8]) -> bool {
    if file.len() < 22 {
        return false;
    }
    let be = |i: usize| u32::from_be_bytes(file[i..i + 4].try_into().unwrap());
    let p = Argon2Params {
        m_cost_kib: be(10),
        t_cost: be(14),
        p_cost: be(18),
    };
    p.is_sane() && (p.m_cost_kib > 4096 || p.t_cost > 4 || p.p_cost > 4)
}

proptest! {
    #![proptest_config(config(4))]

    #[test]
    fn root_key_file_round_trip_and_mutations_are_refused(
        seed in any::<u64>(),
        len in 1usize..2500,
        m in mutation(),
        pass in proptest::collection::vec(any::<u8>(), 1..40),
    ) {
        let secret = bytes(seed, len);
        let file = seal_key_file(&passphrase(&pass), &secret);
        prop_assert_eq!(&must(open_key_file(&passphrase(&pass), &file))?[..], &secret[..]);
        let bad = mutate(&file, &m, 0, 64);
        prop_assume!(!costly(&bad));
        let got = open_key_file(&passphrase(&pass), &bad);
        if bad == file {
            prop_assert_eq!(&must(got)?[..], &secret[..]);
        } else {
            prop_assert!(got.is_err(), "{:?} opened", m);
        }
        // Another passphrase never opens it.
        let mut other = pass.clone();
        other[0] ^= 1;
        prop_assert!(matches!(
            open_key_file(&passphrase(&other), &file),
            Err(Error::WrongPassphrase)
        ));
    }

    #[test]
    fn arbitrary_root_key_files_are_refused(
        raw in proptest::collection::vec(any::<u8>(), 0..200),
        header in any::<bool>(),
    ) {
        let mut file = raw;
        if header {
            // Past the magic, version and protector checks, with cheap parameters.
            let mut head = protector::MAGIC.to_vec();
            head.extend_from_slice(&[protector::VERSION, Passphrase::ID]);
            head.extend_from_slice(&64u32.to_be_bytes());
            head.extend_from_slice(&1u32.to_be_bytes());
            head.extend_from_slice(&1u32.to_be_bytes());
            file.splice(0..0, head);
        }
        prop_assume!(!costly(&file));
        prop_assert!(open_key_file(&passphrase(b"pass"), &file).is_err());
    }
}
