//! Encrypted symlink targets and extended attributes.
//!
//! ```text
//! symlink target on disk = base64url-nopad( iv(12) | tag(16) | AES-256-GCM(target) )
//!     key = HKDF-SHA256(gen-0 vault key, info "pkfs symlink v1"), AAD = "pkfs symlink v1"
//! xattr name on disk    = "user.pkfs." + base64url-nopad( AES-SIV(name, AD = 16 x 0xff) )
//!     (the names key; 0xff.. is never a directory IV, as those are random)
//! xattr value on disk   = iv | tag | AES-256-GCM(value)
//!     key = HKDF-SHA256(gen-0 vault key, info "pkfs xattr v1"), AAD = the disk name
//! ```

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use zeroize::Zeroizing;

use super::names::NameCipher;
use crate::crypto::aead::Gcm;
use crate::crypto::kdf::hkdf32;
use crate::crypto::SymKey;

pub const LINK_INFO: &[u8] = b"pkfs symlink v1";
pub const XATTR_INFO: &[u8] = b"pkfs xattr v1";
pub const XATTR_PREFIX: &str = "user.pkfs.";
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
