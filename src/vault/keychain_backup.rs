//! A vault's keychain, encrypted to an RSA public key (`vault shred
//! --backup FILE --backup-to PUBKEY`).
//!
//! ```text
//!   0   8  magic "PKFSKEYB"
//!   8   1  version = 1
//!   9   2  n = length of the wrapped backup key, u16 BE (512 for RSA-4096)
//!  11   n  backup key (32 random bytes), RSA-OAEP-SHA256-wrapped under PUBKEY
//! 11+n 12  iv
//! 23+n 16  GCM tag
//! 39+n  m  AES-256-GCM ciphertext of the JSON body; AAD = bytes 0 .. 11+n
//! ```
//!
//! The body: `{"id", "name", "created", "keys": [{"generation", "created",
//! "key": base64 of the 32-byte vault key}]}`. Only the holder of PUBKEY's
//! private key can open it; it is not authenticated by the node (anyone with
//! PUBKEY could write one), so whoever restores from it must trust the file.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::super::metadata::VaultRecord;
use crate::crypto::aead::Gcm;
use crate::crypto::rsa::{RootKeypair, RootPublic};
use crate::crypto::{Keychain, SymKey};
use crate::error::{Error, Result};

pub const MAGIC: &[u8; 8] = b"PKFSKEYB";
pub const VERSION: u8 = 1;

/// The body of a keychain backup.
#[derive(Serialize, Deserialize)]
pub struct KeychainBackup {
    pub id: String,
    pub name: String,
    pub created: i64,
    pub keys: Vec<BackupKey>,
}

/// One generation: its number, creation time and key (base64).
#[derive(Serialize, Deserialize)]
pub struct BackupKey {
    pub generation: u32,
    pub created: i64,
    pub key: KeyText,
}

/// A key as base64 text, wiped when dropped.
#[derive(Serialize, Deserialize)]
#[serde(transparent)]
pub struct KeyText(pub String);

impl Drop for KeyText {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

impl KeychainBackup {
    /// The generations as a keychain.
    pub fn keychain(&self) -> Result<Keychain> {
        let bad = || Error::corrupt("keychain backup", "a key is not 32 bytes of base64");
        let mut keys = Vec::new();
        for k in &self.keys {
            let raw = Zeroizing::new(STANDARD.decode(k.key.0.as_bytes()).map_err(|_| bad())?);
            keys.push((k.generation, SymKey::from_slice(&raw).ok_or_else(bad)?));
        }
        Keychain::new(keys).ok_or_else(|| Error::corrupt("keychain backup", "no key"))
    }
}

/// Encrypt `record`'s keychain `chain` to `recipient`.
pub(super) fn seal(
    record: &VaultRecord,
    chain: &Keychain,
    recipient: &RootPublic,
) -> Result<Vec<u8>> {
    let mut keys = Vec::new();
    for k in &record.keys {
        if let Some(key) = chain.get(k.generation) {
            keys.push(BackupKey {
                generation: k.generation,
                created: record.created_of(k),
                key: KeyText(STANDARD.encode(key.as_bytes())),
            });
        }
    }
    let body = KeychainBackup {
        id: record.id.clone(),
        name: record.name.clone(),
        created: record.created,
        keys,
    };
    let plain = Zeroizing::new(
        serde_json::to_vec(&body).map_err(|_| Error::Crypto("encoding the keychain failed"))?,
    );
    let key = SymKey::generate();
    let wrapped = recipient.wrap_key(&key);
    let mut out = MAGIC.to_vec();
    out.push(VERSION);
    out.extend_from_slice(&(wrapped.len() as u16).to_be_bytes());
    out.extend_from_slice(&wrapped);
    let env = Gcm::new(&key).seal_envelope(&out, &plain);
    out.extend_from_slice(&env);
    Ok(out)
}

/// Open a backup with the recipient's private key.
pub fn open(private: &RootKeypair, file: &[u8]) -> Result<KeychainBackup> {
    let bad = |what: &str| Error::corrupt("keychain backup", what);
    if file.len() < 11 || &file[..8] != MAGIC {
        return Err(bad("not a pkfs keychain backup"));
    }
    if file[8] != VERSION {
        return Err(bad("unsupported keychain backup version"));
    }
    let n = u16::from_be_bytes([file[9], file[10]]) as usize;
    if file.len() < 11 + n {
        return Err(bad("truncated"));
    }
    let key = private
        .unwrap_key(&file[11..11 + n])
        .map_err(|_| bad("not encrypted to this key"))?;
    let plain = Gcm::new(&key)
        .open_envelope(&file[..11 + n], &file[11 + n..])
        .map_err(|_| bad("authentication failed"))?;
    serde_json::from_slice(&plain).map_err(|_| bad("unparseable"))
}
