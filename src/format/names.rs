//! File-name encryption inside `contents/`.
//!
//! ```text
//! every encrypted directory holds ".diriv": 16 random bytes (its directory IV)
//! name key  = HKDF-SHA256(ikm = vault key of generation 0, no salt,
//!                         info = "pkfs names v1"), 64 bytes (AES-256-SIV)
//! padded    = name || k bytes of value k, 1 <= k <= 16, to a multiple of 16
//! encoded   = base64url without padding of AES-SIV(name key, ad = [diriv], padded)
//! on disk   = encoded, when it is at most 255 bytes; otherwise the entry is
//!             ".L." || base64url(SHA-256(encoded)) and a sidecar file
//!             ".L." || base64url(SHA-256(encoded)) || ".name" holds `encoded`.
//! ```
//!
//! Names are deterministic within a directory (so lookup needs no scan) and differ
//! between directories. Padding hides the exact name length. Base64url never starts
//! with '.', so the reserved entries cannot collide with an encrypted name.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use lru::LruCache;
use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use std::num::NonZeroUsize;

use crate::crypto::kdf::hkdf_into;
use crate::crypto::siv::{self, SivKey};
use crate::crypto::SymKey;

pub const DIRIV_FILE: &str = ".diriv";
pub const DIRIV_LEN: usize = 16;
pub const LONG_PREFIX: &str = ".L.";
pub const LONG_SUFFIX: &str = ".name";
pub const NAME_INFO: &[u8] = b"pkfs names v1";
/// Longest encoded name stored directly as a directory entry.
pub const MAX_DIRECT: usize = 255;
/// Longest plaintext name, as on Linux.
pub const NAME_MAX: usize = 255;

pub type DirIv = [u8; DIRIV_LEN];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameError {
    /// Not base64url, or authentication failed, or bad padding.
    Undecryptable,
}

/// Validate one plaintext path component. Returns why it is invalid.
pub fn validate(name: &[u8]) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("empty name");
    }
    if name == b"." || name == b".." {
        return Err("'.' and '..' are not names");
    }
    if name.contains(&b'/') {
        return Err("contains '/'");
    }
    if name.contains(&0) {
        return Err("contains a NUL byte");
    }
    if name.len() > NAME_MAX {
        return Err("longer than 255 bytes");
    }
    Ok(())
}

/// How many recent (directory IV, name) encryptions a [`NameCipher`] keeps.
const MEMO_ENTRIES: usize = 16 * 1024;

/// Encrypts and decrypts names of one vault.
pub struct NameCipher {
    key: SivKey,
    /// Recent results, keyed by `iv || name`: the mount encrypts the same names
    /// again and again (every ancestor of every path it journals, and each
    /// name once per request). Plaintext names only, as the inode table holds.
    memo: Mutex<LruCache<Vec<u8>, String>>,
}

impl NameCipher {
    pub fn new(vault_key: &SymKey) -> Self {
        let mut k = [0u8; 64];
        hkdf_into(vault_key, None, NAME_INFO, &mut k);
        let key = SivKey::from_bytes(k);
        zeroize::Zeroize::zeroize(&mut k);
        let cap = NonZeroUsize::new(MEMO_ENTRIES).unwrap_or(NonZeroUsize::MIN);
        NameCipher {
            key,
            memo: Mutex::new(LruCache::new(cap)),
        }
    }

    /// The encoded (base64url) encryption of `name` in the directory with `iv`.
    pub fn encrypt(&self, iv: &DirIv, name: &[u8]) -> String {
        let k = memo_key(iv, name);
        if let Some(hit) = self.memo.lock().get(&k) {
            return hit.clone();
        }
        let encoded = self.seal(iv, name);
        self.memo.lock().put(k, encoded.clone());
        encoded
    }

    fn seal(&self, iv: &DirIv, name: &[u8]) -> String {
        let pad = 16 - name.len() % 16;
        let mut padded = Vec::with_capacity(name.len() + pad);
        padded.extend_from_slice(name);
        padded.resize(name.len() + pad, pad as u8);
        URL_SAFE_NO_PAD.encode(siv::seal(&self.key, iv, &padded))
    }

    /// The name `encoded` stands for in the directory with `iv`.
    pub fn decrypt(&self, iv: &DirIv, encoded: &str) -> Result<Vec<u8>, NameError> {
        let name = self.open(iv, encoded)?;
        // Listings come before lookups of the same names.
        self.memo
            .lock()
            .put(memo_key(iv, &name), encoded.to_string());
        Ok(name)
    }

    fn open(&self, iv: &DirIv, encoded: &str) -> Result<Vec<u8>, NameError> {
        let sealed = URL_SAFE_NO_PAD
            .decode(encoded)
            .map_err(|_| NameError::Undecryptable)?;
        let mut padded = siv::open(&self.key, iv, &sealed).ok_or(NameError::Undecryptable)?;
        let pad = *padded.last().ok_or(NameError::Undecryptable)? as usize;
        if pad == 0 || pad > 16 || pad > padded.len() || padded.len() % 16 != 0 {
            return Err(NameError::Undecryptable);
        }
        if !padded[padded.len() - pad..]
            .iter()
            .all(|&b| b as usize == pad)
        {
            return Err(NameError::Undecryptable);
        }
        padded.truncate(padded.len() - pad);
        Ok(padded)
    }
}

fn memo_key(iv: &DirIv, name: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(iv.len() + name.len());
    k.extend_from_slice(iv);
    k.extend_from_slice(name);
    k
}

/// Where an encoded name lives on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskName {
    /// The directory entry is the encoded name itself.
    Direct(String),
    /// The entry is `entry`; the sidecar `entry + ".name"` holds the encoded name.
    Long { entry: String, encoded: String },
}

impl DiskName {
    pub fn from_encoded(encoded: String) -> Self {
        if encoded.len() <= MAX_DIRECT {
            DiskName::Direct(encoded)
        } else {
            DiskName::Long {
                entry: long_entry(&encoded),
                encoded,
            }
        }
    }

    pub fn entry(&self) -> &str {
        match self {
            DiskName::Direct(e) => e,
            DiskName::Long { entry, .. } => entry,
        }
    }
}

/// `.L.` + base64url(SHA-256(encoded)).
pub fn long_entry(encoded: &str) -> String {
    format!(
        "{LONG_PREFIX}{}",
        URL_SAFE_NO_PAD.encode(Sha256::digest(encoded.as_bytes()))
    )
}

pub fn sidecar_of(entry: &str) -> String {
    format!("{entry}{LONG_SUFFIX}")
}

/// What a directory entry in `contents/` is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    DirIv,
    /// The directory's mode record (`format/modes.rs`).
    Modes,
    /// A `.L.<hash>.name` sidecar; it is listed through its long entry.
    Sidecar,
    /// A `.L.<hash>` entry whose real name is in its sidecar.
    Long,
    Direct,
    /// Something pkfs never writes.
    Foreign,
}

pub fn classify(entry: &str) -> EntryKind {
    if entry == DIRIV_FILE {
        EntryKind::DirIv
    } else if entry == super::modes::MODES_FILE {
        EntryKind::Modes
    } else if let Some(rest) = entry.strip_prefix(LONG_PREFIX) {
        // Exactly 43 base64url characters: an unpadded SHA-256.
        match rest.strip_suffix(LONG_SUFFIX) {
            Some(hash) if is_b64url(hash) && hash.len() == 43 => EntryKind::Sidecar,
            None if is_b64url(rest) && rest.len() == 43 => EntryKind::Long,
            _ => EntryKind::Foreign,
        }
    } else if !entry.is_empty() && is_b64url(entry) {
        EntryKind::Direct
    } else {
        EntryKind::Foreign
    }
}

fn is_b64url(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nc() -> NameCipher {
        NameCipher::new(&SymKey::from_bytes([3; 32]))
    }

    /// Remembered results are the ones a fresh cipher computes, per IV.
    #[test]
    fn the_memo_answers_as_the_cipher_does() {
        let c = nc();
        let (a, b) = ([1u8; 16], [2u8; 16]);
        let ea = c.encrypt(&a, b"name");
        assert_eq!(c.encrypt(&a, b"name"), ea);
        assert_eq!(nc().encrypt(&a, b"name"), ea);
        let eb = c.encrypt(&b, b"name");
        assert_ne!(eb, ea);
        assert_eq!(nc().encrypt(&b, b"name"), eb);
        assert_ne!(c.encrypt(&a, b"name2"), ea);
        // A decrypted listing primes it with the same encoding.
        let fresh = nc();
        let listed = nc().encrypt(&b, b"listed");
        assert_eq!(fresh.decrypt(&b, &listed).unwrap(), b"listed");
        assert_eq!(fresh.encrypt(&b, b"listed"), listed);
        assert!(fresh.decrypt(&a, &listed).is_err());
    }

    #[test]
    fn round_trip_and_determinism() {
        let iv = [1u8; 16];
        for name in [&b"a"[..], b"secret.txt", &[0xff, 0xfe], &[b'x'; 255]] {
            let e = nc().encrypt(&iv, name);
            assert_eq!(e, nc().encrypt(&iv, name));
            assert_eq!(classify(&e), EntryKind::Direct);
            assert_eq!(nc().decrypt(&iv, &e).unwrap(), name);
        }
    }

    #[test]
    fn directory_iv_changes_names_and_binds_them() {
        let e1 = nc().encrypt(&[1; 16], b"same");
        let e2 = nc().encrypt(&[2; 16], b"same");
        assert_ne!(e1, e2);
        assert_eq!(nc().decrypt(&[2; 16], &e1), Err(NameError::Undecryptable));
    }

    #[test]
    fn length_is_padded() {
        let iv = [1u8; 16];
        assert_eq!(
            nc().encrypt(&iv, b"a").len(),
            nc().encrypt(&iv, b"abcdefghijklmno").len()
        );
    }

    #[test]
    fn tampered_names_fail() {
        let iv = [1u8; 16];
        let e = nc().encrypt(&iv, b"hello");
        let mut chars: Vec<char> = e.chars().collect();
        chars[3] = if chars[3] == 'A' { 'B' } else { 'A' };
        let bad: String = chars.into_iter().collect();
        assert!(nc().decrypt(&iv, &bad).is_err());
        assert!(nc().decrypt(&iv, "!!notbase64").is_err());
        assert!(nc().decrypt(&iv, "").is_err());
    }

    #[test]
    fn long_names_go_to_sidecars() {
        let iv = [1u8; 16];
        let short = DiskName::from_encoded(nc().encrypt(&iv, &[b'x'; 150]));
        assert!(matches!(short, DiskName::Direct(_)));
        let long = DiskName::from_encoded(nc().encrypt(&iv, &[b'x'; 200]));
        match &long {
            DiskName::Long { entry, encoded } => {
                assert_eq!(classify(entry), EntryKind::Long);
                assert_eq!(classify(&sidecar_of(entry)), EntryKind::Sidecar);
                assert_eq!(long_entry(encoded), *entry);
                assert!(entry.len() < 64);
            }
            _ => panic!("expected a long name"),
        }
    }

    #[test]
    fn validation() {
        assert!(validate(b"ok").is_ok());
        assert!(validate(&[b'x'; 255]).is_ok());
        for bad in [&b""[..], b".", b"..", b"a/b", b"a\0b", &[b'x'; 256]] {
            assert!(validate(bad).is_err());
        }
        assert_eq!(classify(".diriv"), EntryKind::DirIv);
        assert_eq!(classify("weird.file"), EntryKind::Foreign);
        assert_eq!(classify(".L.short"), EntryKind::Foreign);
        assert_eq!(classify(".L.short.name"), EntryKind::Foreign);
    }
}
