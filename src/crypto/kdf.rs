//! Key derivation: HKDF-SHA256 for sub-keys, Argon2id for passphrases.

use hkdf::Hkdf;
use sha2::Sha256;

use super::keys::SymKey;

/// HKDF-SHA256(ikm, salt, info) -> 32 bytes.
pub fn hkdf32(ikm: &SymKey, salt: Option<&[u8]>, info: &[u8]) -> SymKey {
    SymKey::with(|out| hkdf_into(ikm, salt, info, out))
}

/// HKDF-SHA256 into an arbitrary-length buffer (at most 8160 bytes).
pub fn hkdf_into(ikm: &SymKey, salt: Option<&[u8]>, info: &[u8], out: &mut [u8]) {
    let hk = Hkdf::<Sha256>::new(salt, ikm.as_bytes());
    if hk.expand(info, out).is_err() {
        panic!("HKDF output length {} over the limit", out.len());
    }
}

/// Argon2id cost parameters, stored beside the salt in `root.key`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Argon2Params {
    pub m_cost_kib: u32,
    pub t_cost: u32,
    pub p_cost: u32,
}

impl Argon2Params {
    /// The default: 64 MiB, 3 passes, 1 lane.
    pub const DEFAULT: Argon2Params = Argon2Params {
        m_cost_kib: 64 * 1024,
        t_cost: 3,
        p_cost: 1,
    };

    /// Cheap parameters for test suites only (see `PKFS_TEST_FAST_KDF`).
    pub const TEST_ONLY: Argon2Params = Argon2Params {
        m_cost_kib: 64,
        t_cost: 1,
        p_cost: 1,
    };

    /// Refuse parameters read from disk that would exhaust memory or time.
    pub fn is_sane(&self) -> bool {
        (8..=4 * 1024 * 1024).contains(&self.m_cost_kib)
            && (1..=64).contains(&self.t_cost)
            && (1..=16).contains(&self.p_cost)
    }
}

/// Derive a key-encryption key from a passphrase. `None` if the parameters are invalid.
pub fn argon2id(passphrase: &[u8], salt: &[u8], params: Argon2Params) -> Option<SymKey> {
    let p = argon2::Params::new(params.m_cost_kib, params.t_cost, params.p_cost, Some(32)).ok()?;
    let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, p);
    let mut ok = false;
    let key = SymKey::with(|out| ok = a.hash_password_into(passphrase, salt, out).is_ok());
    ok.then_some(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hkdf_is_deterministic_and_separated() {
        let k = SymKey::from_bytes([1; 32]);
        assert_eq!(hkdf32(&k, Some(b"s"), b"a"), hkdf32(&k, Some(b"s"), b"a"));
        assert_ne!(hkdf32(&k, Some(b"s"), b"a"), hkdf32(&k, Some(b"s"), b"b"));
        assert_ne!(hkdf32(&k, Some(b"s"), b"a"), hkdf32(&k, Some(b"t"), b"a"));
    }

    #[test]
    fn argon2_depends_on_passphrase_and_salt() {
        let p = Argon2Params::TEST_ONLY;
        let a = argon2id(b"pw", b"0123456789abcdef", p).unwrap();
        assert_eq!(a, argon2id(b"pw", b"0123456789abcdef", p).unwrap());
        assert_ne!(a, argon2id(b"pX", b"0123456789abcdef", p).unwrap());
        assert_ne!(a, argon2id(b"pw", b"0123456789abcdeX", p).unwrap());
        assert!(Argon2Params::DEFAULT.is_sane());
        assert!(!Argon2Params {
            m_cost_kib: u32::MAX,
            t_cost: 1,
            p_cost: 1
        }
        .is_sane());
    }
}
