//! The protector of the keyed slot kinds (shares, recovery code, key file):
//! HKDF of a 256-bit secret, AES-256-GCM. The layout is in [`super`].

use zeroize::Zeroizing;

use super::{HEADER_LEN, KEY_FILE, RECOVERY, SHARES};
use crate::crypto::aead::Gcm;
use crate::crypto::kdf::hkdf32;
use crate::crypto::{random_array, SymKey};
use crate::error::{Error, Result};
use crate::vault::node::now_unix;
use crate::vault::protector::Protector;
use sha2::{Digest, Sha256};

/// The shortest key file accepted: 256 bits.
pub const MIN_KEY_FILE: usize = 32;

/// A keyed protector: the kind, its 256-bit input key, and (for shares) the
/// slot it belongs to and the split's shape.
pub struct Keyed {
    kind: u8,
    ikm: SymKey,
    /// Sealing: the new slot's id (random when `None`). Opening: only the
    /// slot with this id is tried.
    slot_id: Option<[u8; 4]>,
    k: u8,
    n: u8,
}

impl Keyed {
    /// The master key of a k-of-n split, for slot `slot_id`.
    pub fn shares(master: SymKey, slot_id: [u8; 4], k: u8, n: u8) -> Keyed {
        Keyed {
            kind: SHARES,
            ikm: master,
            slot_id: Some(slot_id),
            k,
            n,
        }
    }

    /// The entropy of a recovery code.
    pub fn recovery(entropy: SymKey) -> Keyed {
        Keyed {
            kind: RECOVERY,
            ikm: entropy,
            slot_id: None,
            k: 0,
            n: 0,
        }
    }

    /// The bytes of a key file (at least [`MIN_KEY_FILE`]).
    pub fn key_file(bytes: &[u8]) -> Result<Keyed> {
        if bytes.len() < MIN_KEY_FILE {
            return Err(Error::Usage(format!(
                "a key file must hold at least {MIN_KEY_FILE} random bytes \
                 (make one with `head -c 64 /dev/urandom > FILE`)"
            )));
        }
        let digest = Sha256::digest(bytes);
        let mut arr = [0u8; 32];
        arr.copy_from_slice(&digest);
        Ok(Keyed {
            kind: KEY_FILE,
            ikm: SymKey::from_bytes(arr),
            slot_id: None,
            k: 0,
            n: 0,
        })
    }

    fn kek(&self, header: &[u8]) -> SymKey {
        let mut salt = header[0..4].to_vec();
        salt.extend_from_slice(&header[14..30]);
        let mut info = b"pkfs root.key slot ".to_vec();
        info.push(self.kind);
        hkdf32(&self.ikm, Some(&salt), &info)
    }

    fn wrong(&self) -> Error {
        Error::WrongKey(
            match self.kind {
                SHARES => "the shares do not combine to this node's master key",
                RECOVERY => "wrong recovery code",
                _ => "wrong key file",
            }
            .into(),
        )
    }
}

impl Protector for Keyed {
    fn id(&self) -> u8 {
        self.kind
    }

    fn seal(&self, aad: &[u8], secret: &[u8]) -> Vec<u8> {
        let mut body = Vec::with_capacity(HEADER_LEN + 28 + secret.len());
        body.extend_from_slice(&self.slot_id.unwrap_or_else(random_array));
        body.extend_from_slice(&now_unix().to_be_bytes());
        body.push(self.k);
        body.push(self.n);
        body.extend_from_slice(&random_array::<16>());
        let kek = self.kek(&body);
        let mut full_aad = aad.to_vec();
        full_aad.extend_from_slice(&body);
        let env = Gcm::new(&kek).seal_envelope(&full_aad, secret);
        body.extend_from_slice(&env);
        body
    }

    fn open(&self, aad: &[u8], body: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        if body.len() < HEADER_LEN + 28 {
            return Err(Error::corrupt("root.key", "truncated slot"));
        }
        if self.slot_id.is_some_and(|id| body[..4] != id) {
            return Err(self.wrong());
        }
        let header = &body[..HEADER_LEN];
        let kek = self.kek(header);
        let mut full_aad = aad.to_vec();
        full_aad.extend_from_slice(header);
        Gcm::new(&kek)
            .open_envelope(&full_aad, &body[HEADER_LEN..])
            .map_err(|_| self.wrong())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vault::protector::{encode_key_file, open_key_file, seal_slot};

    #[test]
    fn keyed_slots_open_with_their_key_only() {
        let master = || SymKey::from_bytes([7; 32]);
        let s = seal_slot(&Keyed::shares(master(), [1, 2, 3, 4], 2, 3), b"der");
        assert_eq!(s.id, SHARES);
        assert_eq!(&s.body[..4], &[1, 2, 3, 4]);
        assert_eq!((s.body[12], s.body[13]), (2, 3));
        let r = seal_slot(&Keyed::recovery(SymKey::from_bytes([9; 32])), b"der");
        let f = encode_key_file(&[s, r]);
        let opened = open_key_file(&Keyed::shares(master(), [1, 2, 3, 4], 2, 3), &f).unwrap();
        assert_eq!(&opened[..], b"der");
        assert!(matches!(
            open_key_file(&Keyed::shares(master(), [1, 2, 3, 5], 2, 3), &f),
            Err(Error::WrongKey(_))
        ));
        assert!(matches!(
            open_key_file(
                &Keyed::shares(SymKey::from_bytes([8; 32]), [1, 2, 3, 4], 2, 3),
                &f
            ),
            Err(Error::WrongKey(_))
        ));
        let rec = open_key_file(&Keyed::recovery(SymKey::from_bytes([9; 32])), &f).unwrap();
        assert_eq!(&rec[..], b"der");
        assert!(Keyed::key_file(&[1; 31]).is_err());
    }
}
