//! The backup file of `keys delete-owner`: one owner's keychains, encrypted to
//! a recipient's RSA public key (the owner's or an operator's).
//!
//! ```text
//!   0    8  magic "PKFSKBAK"
//!   8    1  version = 1
//!   9    2  n = length of the wrapped file key, u16 BE (512 for RSA-4096)
//!  11    n  a fresh 32-byte file key, RSA-OAEP-SHA256-wrapped under the
//!           recipient's public key
//! 11+n  12  iv
//! 23+n  16  GCM tag
//! 39+n   m  AES-256-GCM ciphertext of the JSON backup; AAD = bytes 0 .. 11+n
//! ```
//!
//! The JSON backup (the shape of imicros-keys' `deleteKeys` answer):
//!
//! ```text
//! {"owner":"OWNER","services":{"SERVICE":[{"id":"...","created":UNIX,"key":"B64"}]}}
//! ```
//!
//! The recipient key is RSA-4096 (SubjectPublicKeyInfo PEM; the private half
//! as unencrypted PKCS#8 PEM), the kind of the node's root key. Anyone with
//! the public key can make a backup file, so restoring one trusts its maker:
//! restore only backups you made.

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::file::to_json;
use super::store::{check_name, OwnerKeys};
use crate::crypto::aead::{Gcm, IV_LEN};
use crate::crypto::rsa::{RootKeypair, RootPublic};
use crate::crypto::{random_array, SymKey};
use crate::error::{Error, Result};

pub const MAGIC: &[u8; 8] = b"PKFSKBAK";
pub const VERSION: u8 = 1;

/// One owner's keychains.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backup {
    pub owner: String,
    pub services: OwnerKeys,
}

impl Backup {
    /// Check the names in a backup from outside.
    pub fn check(&self) -> Result<()> {
        check_name("owner", &self.owner)?;
        for (s, chain) in &self.services {
            check_name("service", s)?;
            for k in chain {
                check_name("key id", &k.id)?;
            }
        }
        Ok(())
    }

    /// How many keys it holds.
    pub fn len(&self) -> usize {
        self.services.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The recipient's public key from its PEM text.
pub fn recipient(pem: &str) -> Result<RootPublic> {
    RootPublic::from_pem(pem).map_err(|_| {
        Error::Usage("the backup recipient is not an RSA-4096 public key (SPKI PEM)".into())
    })
}

/// The file bytes from their parts (vectors fix `wrapped`, `file_key` and `iv`).
pub fn seal_parts(wrapped: &[u8], file_key: &SymKey, iv: &[u8; IV_LEN], json: &[u8]) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    out.push(VERSION);
    out.extend_from_slice(&(wrapped.len() as u16).to_be_bytes());
    out.extend_from_slice(wrapped);
    let env = Gcm::new(file_key).seal_envelope_with_iv(iv, &out, json);
    out.extend_from_slice(&env);
    out
}

/// Encrypt `backup` to `to`.
pub fn seal(to: &RootPublic, backup: &Backup) -> Vec<u8> {
    let file_key = SymKey::generate();
    let wrapped = to.wrap_key(&file_key);
    seal_parts(&wrapped, &file_key, &random_array(), &to_json(backup))
}

/// Split the file and decrypt its JSON with `file_key`.
pub fn open_parts(
    file: &[u8],
    unwrap: impl FnOnce(&[u8]) -> Option<SymKey>,
) -> Result<Zeroizing<Vec<u8>>> {
    let bad = |what: &str| Error::corrupt("the backup", what);
    if file.len() < 11 || &file[..8] != MAGIC {
        return Err(bad("not a pkfs key backup"));
    }
    if file[8] != VERSION {
        return Err(bad("unsupported backup version"));
    }
    let n = u16::from_be_bytes([file[9], file[10]]) as usize;
    if file.len() < 11 + n {
        return Err(bad("truncated"));
    }
    let key = unwrap(&file[11..11 + n]).ok_or_else(|| {
        bad("its key does not unwrap under this private key (another recipient?)")
    })?;
    Gcm::new(&key)
        .open_envelope(&file[..11 + n], &file[11 + n..])
        .map_err(|_| bad("authentication failed"))
}

/// Parse a backup's JSON and check it.
pub fn parse(json: &[u8]) -> Result<Backup> {
    let b: Backup = serde_json::from_slice(json)
        .map_err(|e| Error::corrupt("the backup", format!("unparseable: {e}")))?;
    b.check()?;
    Ok(b)
}

/// Decrypt a backup file with the recipient's private key.
pub fn open(with: &RootKeypair, file: &[u8]) -> Result<Backup> {
    let json = open_parts(file, |w| with.unwrap_key(w).ok())?;
    parse(&json)
}

/// The recipient's private key from its PEM text.
pub fn private_key(pem: &str) -> Result<RootKeypair> {
    RootKeypair::from_pkcs8_pem(pem).map_err(|_| {
        Error::Usage("the backup key is not an RSA-4096 private key (PKCS#8 PEM)".into())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::store::KeyStore;

    #[test]
    fn parts_round_trip_and_tamper() {
        let mut s = KeyStore::default();
        s.default_key("o", "svc", 7).unwrap();
        let b = Backup {
            owner: "o".into(),
            services: s.owner_keys("o"),
        };
        let fk = SymKey::generate();
        let wrapped = [9u8; 16];
        let file = seal_parts(&wrapped, &fk, &[1; 12], &to_json(&b));
        let unwrap = |w: &[u8]| (w == wrapped).then(|| fk.clone());
        let back = parse(&open_parts(&file, unwrap).unwrap()).unwrap();
        assert_eq!(back, b);
        for i in 0..file.len() {
            let mut bad = file.clone();
            bad[i] ^= 1;
            let got = open_parts(&bad, unwrap).and_then(|j| parse(&j));
            assert!(got.is_err(), "flip at {i}");
        }
    }
}
