//! The `keys` file beside `metadata`: the key service's store, encrypted.
//!
//! ```text
//!   0   8  magic "PKFSKEYS"
//!   8   1  version = 1
//!   9  12  iv (random, fresh on every write)
//!  21  16  GCM tag
//!  37   m  AES-256-GCM ciphertext of the JSON store; AAD = bytes 0 .. 9
//! ```
//!
//! The key is the node's keystore key: 32 random bytes, RSA-OAEP-wrapped under
//! the root public key in the metadata table (setting `keystore-key`), so it
//! is re-wrapped, never changed, when the root key rotates. Only a holder of
//! the root private key can open or write the file.
//!
//! The JSON store (keys as standard Base64 of 32 bytes; ids and names as
//! given; keychains oldest first):
//!
//! ```text
//! {"version":1,"expiration_days":30,
//!  "owners":{"OWNER":{"SERVICE":[{"id":"...","created":UNIX,"key":"B64"}]}}}
//! ```
//!
//! The plaintext only ever exists in zeroizing buffers: keys are decoded
//! straight from the decrypted bytes into locked memory, and encoded into a
//! buffer that is wiped when dropped.

use std::collections::BTreeMap;
use std::path::Path;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::de::{self, Deserializer, Visitor};
use serde::ser::{SerializeStruct, Serializer};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::store::{KeyEntry, KeyStore, OwnerKeys};
use crate::crypto::aead::{Gcm, IV_LEN};
use crate::crypto::secmem::WipingWriter;
use crate::crypto::{random_array, SymKey};
use crate::error::{Error, Result};
use crate::store::atomic::write_atomic;

pub const MAGIC: &[u8; 8] = b"PKFSKEYS";
pub const VERSION: u8 = 1;
/// Bytes before the envelope (the AAD).
pub const HEADER_LEN: usize = 9;
/// The file's name in the home.
pub const FILE_NAME: &str = "keys";

impl Serialize for KeyEntry {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let key = Zeroizing::new(STANDARD.encode(self.key.as_bytes()));
        let mut st = s.serialize_struct("KeyEntry", 3)?;
        st.serialize_field("id", &self.id)?;
        st.serialize_field("created", &self.created)?;
        st.serialize_field("key", key.as_str())?;
        st.end()
    }
}

/// A key decoded from its Base64 text straight into locked memory.
struct KeyB64(SymKey);

impl<'de> Deserialize<'de> for KeyB64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = KeyB64;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a Base64 key of 32 bytes")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> std::result::Result<KeyB64, E> {
                decode_key(s)
                    .map(KeyB64)
                    .ok_or_else(|| E::custom("not a Base64 key of 32 bytes"))
            }
        }
        d.deserialize_str(V)
    }
}

/// For `#[serde(deserialize_with)]`: a Base64 key straight into locked memory.
pub fn deserialize_key<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<SymKey, D::Error> {
    KeyB64::deserialize(d).map(|k| k.0)
}

/// Standard Base64 of exactly 32 bytes, into locked memory.
pub fn decode_key(s: &str) -> Option<SymKey> {
    if s.len() != 44 {
        return None;
    }
    let mut buf = Zeroizing::new([0u8; 48]);
    let n = STANDARD.decode_slice(s, &mut buf[..]).ok()?;
    (n == 32).then(|| SymKey::from_slice(&buf[..32])).flatten()
}

/// Standard Base64 of a key, in a buffer wiped on drop.
pub fn encode_key(key: &SymKey) -> Zeroizing<String> {
    Zeroizing::new(STANDARD.encode(key.as_bytes()))
}

impl<'de> Deserialize<'de> for KeyEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            id: String,
            created: i64,
            key: KeyB64,
        }
        let r = Raw::deserialize(d)?;
        Ok(KeyEntry {
            id: r.id,
            created: r.created,
            key: r.key.0,
        })
    }
}

#[derive(Serialize)]
struct StoreOut<'a> {
    version: u32,
    expiration_days: u32,
    owners: &'a BTreeMap<String, OwnerKeys>,
}

#[derive(Deserialize)]
struct StoreIn {
    version: u32,
    expiration_days: u32,
    owners: BTreeMap<String, OwnerKeys>,
}

/// JSON of `value` in a zeroizing buffer.
pub fn to_json<T: Serialize + ?Sized>(value: &T) -> Zeroizing<Vec<u8>> {
    let mut w = WipingWriter::default();
    if let Err(e) = serde_json::to_writer(&mut w, value) {
        // Maps with string keys and plain fields always serialise.
        panic!("serialising key material failed: {e}");
    }
    w.0
}

/// The store's plaintext (the JSON above).
pub fn store_json(store: &KeyStore) -> Zeroizing<Vec<u8>> {
    to_json(&StoreOut {
        version: 1,
        expiration_days: store.expiration_days,
        owners: &store.owners,
    })
}

/// Parse and check the store's plaintext.
pub fn parse_store(json: &[u8]) -> Result<KeyStore> {
    let bad = |what: String| Error::corrupt(FILE_NAME, what);
    let s: StoreIn =
        serde_json::from_slice(json).map_err(|e| bad(format!("unparseable key store: {e}")))?;
    if s.version != 1 {
        return Err(bad(format!("unsupported key store version {}", s.version)));
    }
    if s.expiration_days == 0 || s.expiration_days > super::store::MAX_EXPIRATION_DAYS {
        return Err(bad("expiration out of range".into()));
    }
    let store = KeyStore {
        expiration_days: s.expiration_days,
        owners: s.owners,
    };
    // Written only by a holder of the keystore key, but checked like input.
    for (o, services) in &store.owners {
        super::store::check_name("owner", o).map_err(|e| bad(e.to_string()))?;
        for (s, chain) in services {
            super::store::check_name("service", s).map_err(|e| bad(e.to_string()))?;
            for k in chain {
                super::store::check_name("key id", &k.id).map_err(|e| bad(e.to_string()))?;
            }
        }
    }
    Ok(store)
}

/// The file's bytes for `store` under `key`, with `iv` (tests and vectors
/// choose it; [`seal`] draws a fresh one).
pub fn seal_with_iv(key: &SymKey, iv: &[u8; IV_LEN], store: &KeyStore) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    out.push(VERSION);
    let body = store_json(store);
    let env = Gcm::new(key).seal_envelope_with_iv(iv, &out, &body);
    out.extend_from_slice(&env);
    out
}

pub fn seal(key: &SymKey, store: &KeyStore) -> Vec<u8> {
    seal_with_iv(key, &random_array(), store)
}

/// Decrypt and parse the file's bytes.
pub fn open(key: &SymKey, file: &[u8]) -> Result<KeyStore> {
    let bad = |what: &str| Error::corrupt(FILE_NAME, what);
    if file.len() < HEADER_LEN || &file[..8] != MAGIC {
        return Err(bad("not a pkfs keys file"));
    }
    if file[8] != VERSION {
        return Err(bad("unsupported keys file version"));
    }
    let body = Gcm::new(key)
        .open_envelope(&file[..HEADER_LEN], &file[HEADER_LEN..])
        .map_err(|_| bad("authentication failed (not written with this node's keystore key)"))?;
    parse_store(&body)
}

/// Read the store at `home/keys` (empty when there is no file yet).
pub fn load(home: &Path, key: &SymKey) -> Result<KeyStore> {
    let path = home.join(FILE_NAME);
    match std::fs::read(&path) {
        Ok(bytes) => open(key, &bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(KeyStore::default()),
        Err(e) => Err(Error::io(&path, e)),
    }
}

/// Write the store to `home/keys` atomically and durably (temp file, fsync,
/// rename, fsync of the home).
pub fn save(home: &Path, key: &SymKey, store: &KeyStore) -> Result<()> {
    write_atomic(&home.join(FILE_NAME), &seal(key, store))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::store::DAY;

    fn sample() -> KeyStore {
        let mut s = KeyStore::default();
        s.default_key("o", "svc", 1_800_000_000).unwrap();
        s.default_key("o", "svc", 1_800_000_000 + 40 * DAY).unwrap();
        s.default_key("p/q", "üñí", 5).unwrap();
        s
    }

    #[test]
    fn round_trip_and_tamper() {
        let key = SymKey::generate();
        let s = sample();
        let file = seal(&key, &s);
        assert_eq!(open(&key, &file).unwrap(), s);
        for i in 0..file.len() {
            let mut bad = file.clone();
            bad[i] ^= 1;
            assert!(open(&key, &bad).is_err(), "flip at {i}");
        }
        assert!(open(&SymKey::generate(), &file).is_err());
        assert!(open(&key, &file[..20]).is_err());
        assert!(open(&key, b"").is_err());
    }

    #[test]
    fn no_key_in_the_file_in_the_clear() {
        let key = SymKey::generate();
        let s = sample();
        let file = seal(&key, &s);
        for l in s.list(None) {
            let k = s.by_id(&l.owner, &l.service, &l.id).unwrap();
            let b64 = encode_key(&k.key);
            assert!(!file.windows(32).any(|w| w == k.key.as_bytes()));
            assert!(!file.windows(44).any(|w| w == b64.as_bytes()));
        }
    }

    #[test]
    fn hostile_plaintext_is_refused() {
        for json in [
            &br#"{"version":2,"expiration_days":30,"owners":{}}"#[..],
            br#"{"version":1,"expiration_days":0,"owners":{}}"#,
            br#"{"version":1,"expiration_days":30,"owners":{"":{}}}"#,
            br#"{"version":1,"expiration_days":30,"owners":{"o":{"s":[{"id":"i","created":1,"key":"AAAA"}]}}}"#,
            br#"not json"#,
        ] {
            assert!(parse_store(json).is_err(), "{}", String::from_utf8_lossy(json));
        }
    }
}
