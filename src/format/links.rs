//! Encrypted symlink targets and extended attributes.
//!
//! ```text
//! symlink target on disk = base64url-nopad( iv(12) | tag(16) | AES-256-GCM(target) )
//!     key = HKDF-SHA256(gen-0 vault key, info "pkfs symlink v1"), AAD = "pkfs symlink v1"
//! xattr name on disk    = "user.pkfs." + base64url-nopad( AES-SIV(name, AD = 16 x 0xff) )
//!     (the names key; 0xff.. is never a directory IV, as those are random)
//! xattr value on disk   = iv | tag | AES-256-GCM(value)
//!     key = HKDF-SHA256(gen-0 vault key, info "pkfs xattr v1"), AAD = the disk name
//!
//! long xattr names (when "user.pkfs." + E would pass 255 bytes, E being the
//! base64url-nopad AES-SIV form above):
//! xattr name on disk    = "user.pkfs.l." + base64url-nopad( SHA-256(E) )   (55 bytes)
//! xattr value on disk   = len(E) as u16 big-endian | E | iv | tag | AES-256-GCM(value)
//!     (AAD = the disk name, which binds E; a reader checks SHA-256(E) first)
//! ```

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::names::NameCipher;
use crate::crypto::aead::Gcm;
use crate::crypto::kdf::hkdf32;
use crate::crypto::SymKey;

pub const LINK_INFO: &[u8] = b"pkfs symlink v1";
pub const XATTR_INFO: &[u8] = b"pkfs xattr v1";
pub const XATTR_PREFIX: &str = "user.pkfs.";
/// The prefix of a long xattr name (E does not fit in the name; it goes in
/// front of the value). Never a short name: E holds no '.'.
pub const XATTR_LONG_PREFIX: &str = "user.pkfs.l.";
/// The longest xattr name the backing file system takes.
pub const XATTR_NAME_MAX: usize = 255;
const XATTR_AD: [u8; 16] = [0xff; 16];
/// Longest symlink target the backing file system stores (PATH_MAX - 1).
pub const MAX_DISK_TARGET: usize = 4095;

pub struct LinkCipher {
    links: Gcm,
    xattrs: Gcm,
    names: NameCipher,
}

impl LinkCipher {
    pub fn new(first_key: &SymKey) -> LinkCipher {
        LinkCipher {
            links: Gcm::new(&hkdf32(first_key, None, LINK_INFO)),
            xattrs: Gcm::new(&hkdf32(first_key, None, XATTR_INFO)),
            names: NameCipher::new(first_key),
        }
    }

    /// The on-disk target, or None when it would be too long to store.
    pub fn seal_target(&self, target: &[u8]) -> Option<String> {
        let enc = B64.encode(self.links.seal_envelope(LINK_INFO, target));
        (enc.len() <= MAX_DISK_TARGET).then_some(enc)
    }

    /// Seal with a given IV. Only test vectors may pass a fixed IV.
    pub fn seal_target_with_iv(&self, iv: &[u8; 12], target: &[u8]) -> Option<String> {
        let enc = B64.encode(self.links.seal_envelope_with_iv(iv, LINK_INFO, target));
        (enc.len() <= MAX_DISK_TARGET).then_some(enc)
    }

    pub fn open_target(&self, disk: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        let env = B64.decode(disk).ok()?;
        self.links.open_envelope(LINK_INFO, &env).ok()
    }

    pub fn xattr_name(&self, name: &[u8]) -> String {
        format!("{XATTR_PREFIX}{}", self.names.encrypt(&XATTR_AD, name))
    }

    /// The plaintext name of a disk xattr name (None for foreign or forged ones).
    pub fn xattr_plain_name(&self, disk: &str) -> Option<Vec<u8>> {
        let enc = disk.strip_prefix(XATTR_PREFIX)?;
        self.names.decrypt(&XATTR_AD, enc).ok()
    }

    /// The backing name of plaintext xattr `name`, and for a long one (see
    /// the module comment) the encrypted name E that goes before its value.
    pub fn xattr_disk(&self, name: &[u8]) -> (String, Option<String>) {
        let short = self.xattr_name(name);
        if short.len() <= XATTR_NAME_MAX {
            return (short, None);
        }
        let enc = short[XATTR_PREFIX.len()..].to_string();
        let hash = B64.encode(Sha256::digest(enc.as_bytes()));
        (format!("{XATTR_LONG_PREFIX}{hash}"), Some(enc))
    }

    /// The backing value of an xattr: [`LinkCipher::seal_xattr`], behind E
    /// for a long name.
    pub fn seal_xattr_value(&self, disk_name: &str, long: Option<&str>, value: &[u8]) -> Vec<u8> {
        let sealed = self.seal_xattr(disk_name, value);
        match long {
            None => sealed,
            Some(enc) => {
                let mut out = Vec::with_capacity(2 + enc.len() + sealed.len());
                // E is at most ~370 bytes (a 255-byte name): u16 holds it.
                out.extend_from_slice(&(enc.len() as u16).to_be_bytes());
                out.extend_from_slice(enc.as_bytes());
                out.extend_from_slice(&sealed);
                out
            }
        }
    }

    /// Split the backing value of long name `disk_name` into E and the sealed
    /// value; `None` when it is malformed or E does not hash to the name.
    fn split_long<'a>(&self, disk_name: &str, raw: &'a [u8]) -> Option<(&'a str, &'a [u8])> {
        let hash = disk_name.strip_prefix(XATTR_LONG_PREFIX)?;
        let len = usize::from(u16::from_be_bytes([*raw.first()?, *raw.get(1)?]));
        let enc = std::str::from_utf8(raw.get(2..2 + len)?).ok()?;
        if B64.encode(Sha256::digest(enc.as_bytes())) != hash {
            return None;
        }
        Some((enc, &raw[2 + len..]))
    }

    /// The plaintext name of a long disk name, from its backing value.
    pub fn xattr_long_plain_name(&self, disk_name: &str, raw: &[u8]) -> Option<Vec<u8>> {
        let (enc, _) = self.split_long(disk_name, raw)?;
        self.names.decrypt(&XATTR_AD, enc).ok()
    }

    /// Open a backing value, short or long name alike.
    pub fn open_xattr_value(&self, disk_name: &str, raw: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        if disk_name.starts_with(XATTR_LONG_PREFIX) {
            let (_, sealed) = self.split_long(disk_name, raw)?;
            return self.open_xattr(disk_name, sealed);
        }
        self.open_xattr(disk_name, raw)
    }

    pub fn seal_xattr(&self, disk_name: &str, value: &[u8]) -> Vec<u8> {
        self.xattrs.seal_envelope(disk_name.as_bytes(), value)
    }

    /// Seal with a given IV. Only test vectors may pass a fixed IV.
    pub fn seal_xattr_with_iv(&self, disk_name: &str, iv: &[u8; 12], value: &[u8]) -> Vec<u8> {
        self.xattrs
            .seal_envelope_with_iv(iv, disk_name.as_bytes(), value)
    }

    pub fn open_xattr(&self, disk_name: &str, value: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        self.xattrs.open_envelope(disk_name.as_bytes(), value).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_xattr_names_round_trip_and_authenticate() {
        let c = LinkCipher::new(&SymKey::from_bytes([7u8; 32]));
        for len in [1usize, 150, 170, 250] {
            let name = format!("user.{}", "n".repeat(len)).into_bytes();
            let (disk, long) = c.xattr_disk(&name);
            assert!(disk.len() <= XATTR_NAME_MAX);
            assert_eq!(long.is_some(), disk.starts_with(XATTR_LONG_PREFIX), "{len}");
            let raw = c.seal_xattr_value(&disk, long.as_deref(), b"value");
            assert_eq!(&c.open_xattr_value(&disk, &raw).unwrap()[..], b"value");
            let plain = match &long {
                Some(_) => c.xattr_long_plain_name(&disk, &raw),
                None => c.xattr_plain_name(&disk),
            };
            assert_eq!(plain.unwrap(), name);
            if long.is_some() {
                // E swapped for another name's: refused.
                let (d2, l2) = c.xattr_disk(format!("user.{}", "m".repeat(len)).as_bytes());
                let other = c.seal_xattr_value(&d2, l2.as_deref(), b"value");
                assert!(c.xattr_long_plain_name(&disk, &other).is_none());
                assert!(c.open_xattr_value(&disk, &other).is_none());
                let mut bad = raw.clone();
                *bad.last_mut().unwrap() ^= 1;
                assert!(c.open_xattr_value(&disk, &bad).is_none());
                assert!(c.open_xattr_value(&disk, &raw[..1]).is_none());
            }
        }
    }

    #[test]
    fn targets_and_xattrs_round_trip_and_authenticate() {
        let c = LinkCipher::new(&SymKey::from_bytes([5; 32]));
        let t = c.seal_target(b"../secret/target").unwrap();
        assert!(!t.contains("secret"));
        assert_eq!(
            c.open_target(t.as_bytes()).unwrap().as_slice(),
            b"../secret/target"
        );
        let mut bad = t.clone().into_bytes();
        bad[20] = if bad[20] == b'A' { b'B' } else { b'A' };
        assert!(c.open_target(&bad).is_none());
        assert!(
            c.seal_target(&[b'a'; 4000]).is_none(),
            "too long for the disk"
        );
        let n = c.xattr_name(b"user.comment");
        assert_eq!(c.xattr_plain_name(&n).unwrap(), b"user.comment");
        let v = c.seal_xattr(&n, b"hello");
        assert_eq!(c.open_xattr(&n, &v).unwrap().as_slice(), b"hello");
        assert!(c.open_xattr(&c.xattr_name(b"user.other"), &v).is_none());
    }
}
