//! Typed key material. Every key zeroizes on drop and never prints itself.

use zeroize::{Zeroize, ZeroizeOnDrop};

/// A 256-bit symmetric key (vault key, metadata key, file key, KEK).
#[derive(Clone, Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
pub struct SymKey([u8; 32]);

impl SymKey {
    pub const LEN: usize = 32;

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        SymKey(bytes)
    }

    /// Copy a key out of a slice; `None` when the length is not 32.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        let arr: [u8; 32] = bytes.try_into().ok()?;
        Some(SymKey(arr))
    }

    pub fn generate() -> Self {
        SymKey(random_array())
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Debug for SymKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SymKey(<redacted>)")
    }
}

/// Fill an array from the operating system's CSPRNG.
pub fn random_array<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    fill_random(&mut out);
    out
}

pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut out = vec![0u8; n];
    fill_random(&mut out);
    out
}

fn fill_random(buf: &mut [u8]) {
    // The OS RNG failing is not a recoverable condition for a key store: continuing
    // with predictable keys would be far worse than stopping.
    if let Err(e) = getrandom::fill(buf) {
        panic!("operating system random number generator failed: {e}");
    }
}
