//! Typed key material. Every key lives in locked memory (see [`super::secmem`]),
//! zeroizes on drop and never prints itself.

use super::secmem::SecretBytes;

/// A 256-bit symmetric key (vault key, metadata key, file key, KEK).
#[derive(Clone, PartialEq, Eq)]
pub struct SymKey(SecretBytes<32>);

impl SymKey {
    pub const LEN: usize = 32;

    /// Copy `bytes` into locked memory; the argument is zeroized.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        SymKey(SecretBytes::from_array(bytes))
    }

    /// Copy a key out of a slice; `None` when the length is not 32.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != Self::LEN {
            return None;
        }
        Some(SymKey(SecretBytes::with(|k| k.copy_from_slice(bytes))))
    }

    /// A key written in place by `fill` (so it never sits on the stack).
    pub fn with(fill: impl FnOnce(&mut [u8; 32])) -> Self {
        SymKey(SecretBytes::with(fill))
    }

    pub fn generate() -> Self {
        SymKey(SecretBytes::with(|k| fill_random(k)))
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        self.0.expose()
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

/// A vault's keys by generation. New blobs use the current generation; old blobs
/// name theirs in the header.
#[derive(Clone, Debug)]
pub struct Keychain {
    keys: Vec<(u32, SymKey)>,
}

impl Keychain {
    pub fn new(keys: Vec<(u32, SymKey)>) -> Option<Self> {
        if keys.is_empty() {
            return None;
        }
        Some(Keychain { keys })
    }

    pub fn get(&self, generation: u32) -> Option<&SymKey> {
        self.keys
            .iter()
            .find(|(g, _)| *g == generation)
            .map(|(_, k)| k)
    }

    /// The newest generation and its key.
    pub fn current(&self) -> (u32, &SymKey) {
        let mut best = &self.keys[0];
        for k in &self.keys {
            if k.0 > best.0 {
                best = k;
            }
        }
        (best.0, &best.1)
    }

    /// Every generation in the chain, ascending.
    pub fn generations(&self) -> Vec<u32> {
        let mut g: Vec<u32> = self.keys.iter().map(|(g, _)| *g).collect();
        g.sort_unstable();
        g
    }

    /// The oldest key, from which name and history keys derive.
    pub fn first(&self) -> &SymKey {
        let mut best = &self.keys[0];
        for k in &self.keys {
            if k.0 < best.0 {
                best = k;
            }
        }
        &best.1
    }
}
