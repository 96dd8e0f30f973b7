//! Protectors of the root private key, and the `root.key` file.
//!
//! ```text
//! root.key:
//!   0   8  magic "PKFSROOT"
//!   8   1  version = 1
//!   9   1  protector id (1 = passphrase / Argon2id)
//!  10   .  protector body
//! passphrase body:
//!   0   4  Argon2id memory cost in KiB, u32 BE
//!   4   4  Argon2id passes, u32 BE
//!   8   4  Argon2id lanes, u32 BE
//!  12  16  salt
//!  28  12  iv
//!  40  16  GCM tag
//!  56   .  ciphertext of the PKCS#8 DER private key
//! KEK = Argon2id(passphrase, salt, params); AAD = every byte before the iv.
//! ```
//!
//! A protector is one small interface so that a Shamir-split master key can be
//! added beside the passphrase without touching anything else.

use zeroize::Zeroizing;

use crate::crypto::aead::Gcm;
use crate::crypto::kdf::{argon2id, Argon2Params};
use crate::crypto::random_array;
use crate::crypto::secmem::RegionLock;
use crate::error::{Error, Result};

pub const MAGIC: &[u8; 8] = b"PKFSROOT";
pub const VERSION: u8 = 1;

/// Seals and opens the root private key.
pub trait Protector: Send + Sync {
    /// The id written to `root.key`.
    fn id(&self) -> u8;
    /// Seal `secret`; `aad` is the file prefix, which the result must authenticate.
    fn seal(&self, aad: &[u8], secret: &[u8]) -> Vec<u8>;
    /// Open a body produced by `seal`.
    fn open(&self, aad: &[u8], body: &[u8]) -> Result<Zeroizing<Vec<u8>>>;
}

/// The passphrase protector: Argon2id KEK, AES-256-GCM. The daemon keeps one
/// for as long as it runs (`key rotate-root` re-seals with it), so the
/// passphrase's pages are locked in memory (best effort) and zeroized on drop.
pub struct Passphrase {
    pass: Zeroizing<Vec<u8>>,
    params: Argon2Params,
    /// Dropped after `pass`: zeroize, then unlock.
    _locked: RegionLock,
}

impl Passphrase {
    pub const ID: u8 = 1;

    pub fn new(pass: Zeroizing<Vec<u8>>, params: Argon2Params) -> Self {
        // `pass` is never resized again, so its buffer stays where it is locked.
        let locked = RegionLock::new(pass.as_slice());
        Passphrase {
            pass,
            params,
            _locked: locked,
        }
    }
}

fn be32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_be_bytes(a)
}

impl Protector for Passphrase {
    fn id(&self) -> u8 {
        Self::ID
    }

    fn seal(&self, aad: &[u8], secret: &[u8]) -> Vec<u8> {
        let salt: [u8; 16] = random_array();
        let mut body = Vec::new();
        body.extend_from_slice(&self.params.m_cost_kib.to_be_bytes());
        body.extend_from_slice(&self.params.t_cost.to_be_bytes());
        body.extend_from_slice(&self.params.p_cost.to_be_bytes());
        body.extend_from_slice(&salt);
        let Some(kek) = argon2id(&self.pass, &salt, self.params) else {
            panic!("built-in Argon2id parameters rejected");
        };
        let mut full_aad = aad.to_vec();
        full_aad.extend_from_slice(&body);
        body.extend_from_slice(&Gcm::new(&kek).seal_envelope(&full_aad, secret));
        body
    }

    fn open(&self, aad: &[u8], body: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        if body.len() < 28 + 28 {
            return Err(Error::corrupt("root.key", "truncated"));
        }
        let params = Argon2Params {
            m_cost_kib: be32(&body[0..4]),
            t_cost: be32(&body[4..8]),
            p_cost: be32(&body[8..12]),
        };
        if !params.is_sane() {
            return Err(Error::corrupt("root.key", "implausible KDF parameters"));
        }
        let kek = argon2id(&self.pass, &body[12..28], params)
            .ok_or_else(|| Error::corrupt("root.key", "invalid KDF parameters"))?;
        let mut full_aad = aad.to_vec();
        full_aad.extend_from_slice(&body[..28]);
        Gcm::new(&kek)
            .open_envelope(&full_aad, &body[28..])
            .map_err(|_| Error::WrongPassphrase)
    }
}

/// Encode `root.key` for `secret` (the PKCS#8 DER) under `protector`.
pub fn seal_key_file(protector: &dyn Protector, secret: &[u8]) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    out.push(VERSION);
    out.push(protector.id());
    let body = protector.seal(&out, secret);
    out.extend_from_slice(&body);
    out
}

/// Decode `root.key` and open it with `protector`.
pub fn open_key_file(protector: &dyn Protector, file: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    if file.len() < 10 || &file[..8] != MAGIC {
        return Err(Error::corrupt("root.key", "not a pkfs root key file"));
    }
    if file[8] != VERSION {
        return Err(Error::corrupt(
            "root.key",
            format!("unsupported version {}", file[8]),
        ));
    }
    if file[9] != protector.id() {
        return Err(Error::Usage(format!(
            "root.key is protected by protector {} but {} was offered",
            file[9],
            protector.id()
        )));
    }
    protector.open(&file[..10], &file[10..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pp(s: &str) -> Passphrase {
        Passphrase::new(
            Zeroizing::new(s.as_bytes().to_vec()),
            Argon2Params::TEST_ONLY,
        )
    }

    #[test]
    fn round_trip_wrong_passphrase_and_tamper() {
        let f = seal_key_file(&pp("right"), b"private key der");
        assert_eq!(
            &open_key_file(&pp("right"), &f).unwrap()[..],
            b"private key der"
        );
        assert!(matches!(
            open_key_file(&pp("wrong"), &f),
            Err(Error::WrongPassphrase)
        ));
        for i in 0..f.len() {
            let mut bad = f.clone();
            bad[i] ^= 1;
            assert!(open_key_file(&pp("right"), &bad).is_err(), "flip at {i}");
        }
        let mut huge = f.clone();
        huge[10..14].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            open_key_file(&pp("right"), &huge),
            Err(Error::Corrupt { .. })
        ));
    }
}
