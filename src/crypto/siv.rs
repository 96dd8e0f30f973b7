//! AES-SIV (RFC 5297, AES-256-CMAC-SIV): deterministic authenticated encryption,
//! used for file names. The output is the 16-byte synthetic IV followed by the
//! ciphertext.

use super::secmem::SecretBytes;
use aes_siv::siv::Aes256Siv;
use aes_siv::KeyInit;

/// The 64-byte AES-SIV key (two AES-256 keys), in locked memory; zeroized on drop.
#[derive(Clone)]
pub struct SivKey(SecretBytes<64>);

impl SivKey {
    /// Copy `bytes` into locked memory; the argument is zeroized.
    pub fn from_bytes(bytes: [u8; 64]) -> Self {
        SivKey(SecretBytes::from_array(bytes))
    }

    /// A key written in place by `fill`.
    pub fn with(fill: impl FnOnce(&mut [u8; 64])) -> Self {
        SivKey(SecretBytes::with(fill))
    }
}

impl std::fmt::Debug for SivKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SivKey(<redacted>)")
    }
}

fn cipher(key: &SivKey) -> Aes256Siv {
    Aes256Siv::new(key.0.expose().into())
}

/// Encrypt `plain` with `ad` as the single associated-data header.
pub fn seal(key: &SivKey, ad: &[u8], plain: &[u8]) -> Vec<u8> {
    match cipher(key).encrypt([ad], plain) {
        Ok(v) => v,
        Err(_) => panic!("AES-SIV rejected a short input"),
    }
}

/// Decrypt and authenticate; `None` on any mismatch.
pub fn open(key: &SivKey, ad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
    if sealed.len() < 16 {
        return None;
    }
    cipher(key).decrypt([ad], sealed).ok()
}
