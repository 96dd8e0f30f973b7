//! The version record of one vault: pkfs's own authenticated, durable copy of
//! where the vault's history is (main's tip, and HEAD).
//!
//! git's refs (`.git/HEAD`, `.git/refs/heads/main`) are plain files that a
//! power cut can leave empty and that anyone with write access to the home can
//! delete or point at an older commit. The record is checked against them at
//! every open (`history_version.rs`): a ref that disagrees is rewritten from
//! the record, so a rewound or deleted ref can neither roll the vault back nor
//! switch rollback detection off.
//!
//! # Layout of `V/version` (90 bytes)
//!
//! ```text
//!  0   8  magic "PKFSVERS"
//!  8   1  format version = 1
//!  9   8  counter, u64 big-endian: grows by one at every write
//! 17  20  main's tip (commit id)
//! 37  20  HEAD's commit (= main's tip when attached)
//! 57   1  1 = HEAD is attached to main, 0 = detached at an older version
//! 58  32  HMAC-SHA256 of bytes 0..58, keyed with
//!         HKDF-SHA256(vault key, no salt, "pkfs version v1")
//! ```
//!
//! The file is replaced atomically and durably (temp file, fsync, rename,
//! fsync of `V`), always *before* the refs move, so after a cut it names the
//! version the refs are moving to (whose objects are already durable) or the
//! one they are at.

use std::path::{Path, PathBuf};

use git2::Oid;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::atomic::write_atomic;
use crate::crypto::kdf::hkdf32;
use crate::crypto::SymKey;
use crate::error::{Error, Result};

/// File name of the record in the vault directory.
pub const VERSION_FILE: &str = "version";
pub const MAGIC: &[u8; 8] = b"PKFSVERS";
pub const FORMAT: u8 = 1;
pub const INFO: &[u8] = b"pkfs version v1";
const BODY_LEN: usize = 58;
pub const RECORD_LEN: usize = BODY_LEN + 32;

/// What the record says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Version {
    pub counter: u64,
    pub main: Oid,
    pub head: Oid,
    pub attached: bool,
}

/// Reads and writes `V/version` of one vault.
pub struct VersionFile {
    path: PathBuf,
    key: SymKey,
}

fn mac(key: &SymKey, body: &[u8]) -> Hmac<Sha256> {
    let mut m = match <Hmac<Sha256> as KeyInit>::new_from_slice(key.as_bytes()) {
        Ok(m) => m,
        Err(_) => panic!("HMAC takes a key of any length"),
    };
    m.update(body);
    m
}

impl VersionFile {
    pub fn new(vault_dir: &Path, vault_key: &SymKey) -> VersionFile {
        VersionFile {
            path: vault_dir.join(VERSION_FILE),
            key: hkdf32(vault_key, None, INFO),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The record's bytes for `v`.
    pub fn encode(&self, v: &Version) -> Vec<u8> {
        let mut out = Vec::with_capacity(RECORD_LEN);
        out.extend_from_slice(MAGIC);
        out.push(FORMAT);
        out.extend_from_slice(&v.counter.to_be_bytes());
        out.extend_from_slice(v.main.as_bytes());
        out.extend_from_slice(v.head.as_bytes());
        out.push(u8::from(v.attached));
        let tag = mac(&self.key, &out).finalize().into_bytes();
        out.extend_from_slice(&tag);
        out
    }

    /// Parse and authenticate a record.
    pub fn decode(&self, bytes: &[u8]) -> Result<Version> {
        let bad = |what: &str| Error::corrupt(self.path.display(), what);
        if bytes.len() != RECORD_LEN || &bytes[..8] != MAGIC || bytes[8] != FORMAT {
            return Err(bad("not a version record of a format this pkfs knows"));
        }
        let (body, tag) = bytes.split_at(BODY_LEN);
        mac(&self.key, body)
            .verify_slice(tag)
            .map_err(|_| bad("the version record does not authenticate"))?;
        let oid = |b: &[u8]| Oid::from_bytes(b).map_err(|_| bad("bad commit id"));
        let attached = match body[57] {
            0 => false,
            1 => true,
            _ => return Err(bad("bad HEAD flag")),
        };
        let mut counter = [0u8; 8];
        counter.copy_from_slice(&body[9..17]);
        Ok(Version {
            counter: u64::from_be_bytes(counter),
            main: oid(&body[17..37])?,
            head: oid(&body[37..57])?,
            attached,
        })
    }

    /// The record, `None` when there is none.
    pub fn load(&self) -> Result<Option<Version>> {
        match std::fs::read(&self.path) {
            Ok(b) => self.decode(&b).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(&self.path, e)),
        }
    }

    /// Replace the record, durably.
    pub fn store(&self, v: &Version) -> Result<()> {
        write_atomic(&self.path, &self.encode(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Version {
        Version {
            counter: 7,
            main: Oid::from_bytes(&[0x11; 20]).unwrap(),
            head: Oid::from_bytes(&[0x22; 20]).unwrap(),
            attached: false,
        }
    }

    #[test]
    fn round_trips_and_refuses_damage_and_other_keys() {
        let d = tempfile::tempdir().unwrap();
        let f = VersionFile::new(d.path(), &SymKey::from_bytes([5; 32]));
        assert_eq!(f.load().unwrap(), None);
        f.store(&sample()).unwrap();
        assert_eq!(f.load().unwrap(), Some(sample()));
        let bytes = std::fs::read(f.path()).unwrap();
        assert_eq!(bytes.len(), RECORD_LEN);
        for i in [0, 8, 9, 20, 40, 57, 60, 89] {
            let mut b = bytes.clone();
            b[i] ^= 1;
            assert!(matches!(f.decode(&b), Err(Error::Corrupt { .. })), "{i}");
        }
        assert!(f.decode(&bytes[..89]).is_err());
        assert!(f.decode(&[]).is_err());
        let other = VersionFile::new(d.path(), &SymKey::from_bytes([6; 32]));
        assert!(matches!(other.load(), Err(Error::Corrupt { .. })));
    }
}
