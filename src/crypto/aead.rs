//! AES-256-GCM with a caller-chosen 96-bit IV and a detached 128-bit tag.
//!
//! Callers choose the byte layout; this module only seals and opens. IVs are random
//! (see `docs/SECURITY.md` for the limits of random 96-bit IVs).

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};

use super::keys::{random_array, SymKey};

pub const IV_LEN: usize = 12;
pub const TAG_LEN: usize = 16;

/// Authentication failed: wrong key, or the data was modified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TagMismatch;

/// An AES-256-GCM cipher bound to one key; cheap to reuse for many pages.
pub struct Gcm(Aes256Gcm);

impl Gcm {
    pub fn new(key: &SymKey) -> Self {
        Gcm(Aes256Gcm::new(key.as_bytes().into()))
    }

    /// Encrypt `buf` in place and return the tag.
    pub fn seal_in_place(&self, iv: &[u8; IV_LEN], aad: &[u8], buf: &mut [u8]) -> [u8; TAG_LEN] {
        let nonce = Nonce::from(*iv);
        match self.0.encrypt_inout_detached(&nonce, aad, buf.into()) {
            Ok(tag) => tag.into(),
            // Only possible past 64 GiB of plaintext or 2^61 bytes of AAD.
            Err(_) => panic!("AES-GCM input over the algorithm's length limit"),
        }
    }

    /// Encrypt `plain` into `out` (same length) and return the tag: one pass,
    /// no copy of the plaintext first.
    pub fn seal_into(
        &self,
        iv: &[u8; IV_LEN],
        aad: &[u8],
        plain: &[u8],
        out: &mut [u8],
    ) -> [u8; TAG_LEN] {
        let nonce = Nonce::from(*iv);
        let (n, m) = (plain.len(), out.len());
        let buf = aes_gcm::aead::inout::InOutBuf::new(plain, out)
            .unwrap_or_else(|_| panic!("seal_into: {n} bytes into {m}"));
        match self.0.encrypt_inout_detached(&nonce, aad, buf) {
            Ok(tag) => tag.into(),
            Err(_) => panic!("AES-GCM input over the algorithm's length limit"),
        }
    }

    /// Decrypt `ct` into `out` (same length) after checking `tag`: one pass,
    /// no copy of the ciphertext first. On failure `out` is zeroed; so is it
    /// when the lengths differ (a mismatch, not a panic: callers pass slices
    /// cut from data read from disk).
    pub fn open_into(
        &self,
        iv: &[u8; IV_LEN],
        aad: &[u8],
        ct: &[u8],
        out: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), TagMismatch> {
        let nonce = Nonce::from(*iv);
        let tag = Tag::from(*tag);
        let res = match aes_gcm::aead::inout::InOutBuf::new(ct, &mut *out) {
            Ok(buf) => self.0.decrypt_inout_detached(&nonce, aad, buf, &tag).ok(),
            Err(_) => None,
        };
        res.ok_or_else(|| {
            out.fill(0);
            TagMismatch
        })
    }

    /// Decrypt `buf` in place after checking `tag`; on failure `buf` is zeroed.
    pub fn open_in_place(
        &self,
        iv: &[u8; IV_LEN],
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), TagMismatch> {
        let nonce = Nonce::from(*iv);
        let tag = Tag::from(*tag);
        self.0
            .decrypt_inout_detached(&nonce, aad, buf.into(), &tag)
            .map_err(|_| {
                buf.fill(0);
                TagMismatch
            })
    }

    /// `iv | tag | ciphertext` of `plain` with a fresh random IV.
    pub fn seal_envelope(&self, aad: &[u8], plain: &[u8]) -> Vec<u8> {
        self.seal_envelope_with_iv(&random_array(), aad, plain)
    }

    pub fn seal_envelope_with_iv(&self, iv: &[u8; IV_LEN], aad: &[u8], plain: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(IV_LEN + TAG_LEN + plain.len());
        out.extend_from_slice(iv);
        out.extend_from_slice(&[0u8; TAG_LEN]);
        out.extend_from_slice(plain);
        let (head, body) = out.split_at_mut(IV_LEN + TAG_LEN);
        let tag = self.seal_in_place(iv, aad, body);
        head[IV_LEN..].copy_from_slice(&tag);
        out
    }

    /// Open an `iv | tag | ciphertext` envelope.
    pub fn open_envelope(
        &self,
        aad: &[u8],
        envelope: &[u8],
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, TagMismatch> {
        if envelope.len() < IV_LEN + TAG_LEN {
            return Err(TagMismatch);
        }
        let (iv, rest) = envelope.split_at(IV_LEN);
        let (tag, ct) = rest.split_at(TAG_LEN);
        let iv: [u8; IV_LEN] = iv.try_into().map_err(|_| TagMismatch)?;
        let tag: [u8; TAG_LEN] = tag.try_into().map_err(|_| TagMismatch)?;
        let mut buf = zeroize::Zeroizing::new(ct.to_vec());
        self.open_in_place(&iv, aad, &mut buf, &tag)?;
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_round_trip_and_tamper() {
        let gcm = Gcm::new(&SymKey::from_bytes([7; 32]));
        let env = gcm.seal_envelope(b"aad", b"hello world");
        assert_eq!(
            &gcm.open_envelope(b"aad", &env).unwrap()[..],
            b"hello world"
        );
        assert!(gcm.open_envelope(b"other", &env).is_err());
        for i in 0..env.len() {
            let mut bad = env.clone();
            bad[i] ^= 1;
            assert!(gcm.open_envelope(b"aad", &bad).is_err(), "flip at {i}");
        }
        assert!(gcm.open_envelope(b"aad", &env[..27]).is_err());
    }
}
