//! The metadata file: the node's vault table.
//!
//! ```text
//!   0   8  magic "PKFSMETA"
//!   8   1  version = 2
//!   9   2  n = length of the wrapped metadata key, u16 BE (512 for RSA-4096)
//!  11   n  metadata key, RSA-OAEP-SHA256-wrapped under the root public key
//! 11+n 12  iv
//! 23+n 16  GCM tag
//! 39+n  m  AES-256-GCM ciphertext of the JSON table; AAD = bytes 0 .. 11+n
//! end-32 32 HMAC-SHA256 of every byte before it, keyed with
//!           HKDF-SHA256(ikm = root private key as PKCS#8 DER, no salt,
//!                       info = "pkfs metadata mac v1")
//! ```
//!
//! The envelope alone only proves the writer had the public key (which wraps
//! keys); the HMAC proves the private key, so a forged table is refused.
//!
//! A fresh metadata key is drawn on every write. Inside the table each vault key
//! is again RSA-OAEP-wrapped under the root public key, so rotating the root key
//! re-wraps keys without touching any vault data.
//!
//! Reading refuses (as corrupt) a table with a vault id that is not Base58 or a
//! vault name that is not a valid file name: the envelope only proves that the
//! writer had the public key.
//!
//! A vault's keychain (docs/FORMAT.md, "Metadata file"): `keys` lists its
//! generations, each `{generation, wrapped, created}` (`created` in Unix
//! seconds; absent in tables written before key generations, where it reads
//! as the vault's own `created`). `dropped` lists generations destroyed by
//! `vault drop-key`, `{generation, dropped}`, so that what only they could
//! read is reported as such. The setting `rotate-after` is the age, in
//! milliseconds, after which a new generation is added by itself.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::crypto::aead::Gcm;
use crate::crypto::rsa::{RootKeypair, RootPublic};
use crate::crypto::secmem::WipingWriter;
use crate::crypto::{Keychain, SymKey};
use crate::error::{Error, Result};
use crate::format::names;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

pub const MAGIC: &[u8; 8] = b"PKFSMETA";
pub const VERSION: u8 = 2;
/// Length of the trailing HMAC-SHA256.
pub const MAC_LEN: usize = 32;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct WrappedKey {
    pub generation: u32,
    /// Base64 of the RSA-OAEP-SHA256 wrapped 32-byte vault key.
    pub wrapped: String,
    /// When the generation was made, Unix seconds (absent before key
    /// generations: then the vault's creation time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<i64>,
}

/// A generation destroyed by `vault drop-key`: its key is gone, its number
/// is never used again.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DroppedKey {
    pub generation: u32,
    /// Unix seconds.
    pub dropped: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct VaultRecord {
    pub id: String,
    pub name: String,
    /// Unix seconds.
    pub created: i64,
    pub keys: Vec<WrappedKey>,
    /// Generations destroyed by `vault drop-key` (omitted when none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dropped: Vec<DroppedKey>,
    #[serde(default)]
    pub settings: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Table {
    pub version: u32,
    pub vaults: Vec<VaultRecord>,
    /// Node-wide settings (string to string; unknown ones are preserved):
    /// `mount-root-mode`, the mode of the mount root in octal.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub settings: BTreeMap<String, String>,
}

impl Table {
    pub fn find(&self, name: &str) -> Result<&VaultRecord> {
        self.vaults
            .iter()
            .find(|v| v.name == name)
            .ok_or_else(|| Error::VaultUndefined(name.to_string()))
    }

    pub fn find_mut(&mut self, name: &str) -> Result<&mut VaultRecord> {
        self.vaults
            .iter_mut()
            .find(|v| v.name == name)
            .ok_or_else(|| Error::VaultUndefined(name.to_string()))
    }
}

impl VaultRecord {
    /// Unwrap every key generation of this vault.
    pub fn keychain(&self, root: &RootKeypair) -> Result<Keychain> {
        let mut keys = Vec::with_capacity(self.keys.len());
        for k in &self.keys {
            let wrapped = STANDARD
                .decode(&k.wrapped)
                .map_err(|_| Error::corrupt("metadata", "vault key is not base64"))?;
            let key = root.unwrap_key(&wrapped).map_err(|_| {
                Error::corrupt("metadata", "a vault key does not unwrap under the root key")
            })?;
            keys.push((k.generation, key));
        }
        Keychain::new(keys).ok_or_else(|| Error::corrupt("metadata", "vault has no key"))
    }

    /// When generation `k` was made (the vault's creation time for a table
    /// written before key generations).
    pub fn created_of(&self, k: &WrappedKey) -> i64 {
        k.created.unwrap_or(self.created)
    }

    /// Re-wrap every key of this vault under `new_pub`.
    pub fn rewrap(&mut self, root: &RootKeypair, new_pub: &RootPublic) -> Result<()> {
        let chain = self.keychain(root)?;
        for k in &mut self.keys {
            if let Some(key) = chain.get(k.generation) {
                k.wrapped = wrap(new_pub, key);
            }
        }
        Ok(())
    }
}

pub fn wrap(public: &RootPublic, key: &SymKey) -> String {
    STANDARD.encode(public.wrap_key(key))
}

/// Encrypt the table for the file, authenticated under `root`'s private key.
pub fn seal(root: &RootKeypair, table: &Table) -> Vec<u8> {
    let key = SymKey::generate();
    let wrapped = root.public().wrap_key(&key);
    let mut out = MAGIC.to_vec();
    out.push(VERSION);
    out.extend_from_slice(&(wrapped.len() as u16).to_be_bytes());
    out.extend_from_slice(&wrapped);
    let mut body = WipingWriter::default();
    if let Err(e) = serde_json::to_writer(&mut body, table) {
        panic!("serialising the vault table failed: {e}");
    }
    let body = body.0;
    let env = Gcm::new(&key).seal_envelope(&out, &body);
    out.extend_from_slice(&env);
    let tag = mac(root, &out).finalize().into_bytes();
    out.extend_from_slice(&tag);
    out
}

fn mac(root: &RootKeypair, bytes: &[u8]) -> Hmac<Sha256> {
    let key = root.metadata_mac_key();
    let mut m = match <Hmac<Sha256> as KeyInit>::new_from_slice(key.as_bytes()) {
        Ok(m) => m,
        Err(_) => panic!("HMAC takes a key of any length"),
    };
    m.update(bytes);
    m
}

/// Decrypt and parse the file.
pub fn open(root: &RootKeypair, file: &[u8]) -> Result<Table> {
    let bad = |what: &str| Error::corrupt("metadata", what);
    if file.len() < 11 || &file[..8] != MAGIC {
        return Err(bad("not a pkfs metadata file"));
    }
    if file[8] != VERSION {
        return Err(bad(if file[8] == 1 {
            "metadata version 1 (not authenticated by the private key) is no longer accepted"
        } else {
            "unsupported metadata version"
        }));
    }
    let n = u16::from_be_bytes([file[9], file[10]]) as usize;
    if file.len() < 11 + n + MAC_LEN {
        return Err(bad("truncated"));
    }
    let (file, tag) = file.split_at(file.len() - MAC_LEN);
    mac(root, file)
        .verify_slice(tag)
        .map_err(|_| bad("not written by the holder of the root key (MAC mismatch)"))?;
    let key = root
        .unwrap_key(&file[11..11 + n])
        .map_err(|_| bad("the metadata key does not unwrap under the root key"))?;
    let body = Gcm::new(&key)
        .open_envelope(&file[..11 + n], &file[11 + n..])
        .map_err(|_| bad("authentication failed"))?;
    let table: Table = serde_json::from_slice(&body).map_err(|_| bad("unparseable vault table"))?;
    // The table can be written by anyone holding the public key, so its fields
    // are checked like any input: an id names a directory under `vaults/` (and
    // `vault delete` removes it), a name is an entry of the mount root.
    for v in &table.vaults {
        if !is_vault_id(&v.id) {
            return Err(bad("a vault id is not Base58"));
        }
        if names::validate(v.name.as_bytes()).is_err() {
            return Err(bad("a vault name is not a valid file name"));
        }
    }
    Ok(table)
}

/// Whether `id` has the form of a vault id: Base58 (of 16 random bytes), so a
/// single, plain path component.
pub fn is_vault_id(id: &str) -> bool {
    (1..=44).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() && !b"0OIl".contains(&b))
}
