//! Helpers shared by the property suites (`tests/prop_*.rs`): the case count,
//! cheap pseudo-random bytes, and byte-string mutations.

#![allow(dead_code)]

use proptest::prelude::*;
use proptest::sample::Index;

/// `PROPTEST_CASES` (default 256), divided by `divisor` for costly properties.
pub fn config(divisor: u32) -> ProptestConfig {
    let base = ProptestConfig::default();
    ProptestConfig {
        cases: (base.cases / divisor).max(8),
        ..base
    }
}

/// A test-case failure for an unexpected error (the error types here are not
/// all `std::error::Error`, so `?` alone does not convert them).
pub fn must<T, E: std::fmt::Debug>(r: Result<T, E>) -> Result<T, TestCaseError> {
    r.map_err(|e| TestCaseError::fail(format!("unexpected error: {e:?}")))
}

/// `len` pseudo-random bytes from `seed` (xorshift64*): cheap even in debug,
/// and proptest shrinks the seed and the length instead of every byte.
pub fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
        })
        .collect()
}

/// Plaintext sizes, weighted towards the page boundaries.
pub fn plain_size() -> impl Strategy<Value = usize> {
    prop_oneof![
        1usize..=64,
        4090usize..=4100,
        8186usize..=8198,
        1usize..=4 * 4096 + 100,
    ]
}

/// A change to a byte string.
#[derive(Debug, Clone)]
pub enum Mutation {
    Flip(Index, u8),
    Set(Index, u8),
    Truncate(Index),
    Append(Vec<u8>),
    Remove(Index, usize),
    Insert(Index, Vec<u8>),
    Overwrite(Index, Vec<u8>),
    /// Swap two whole chunks of `chunk` bytes after a prefix of `skip` bytes
    /// (pages of a blob).
    SwapChunks(Index, Index),
    /// Repeat one chunk after itself.
    DupChunk(Index),
}

pub fn mutation() -> impl Strategy<Value = Mutation> {
    let small = proptest::collection::vec(any::<u8>(), 1..40);
    prop_oneof![
        (any::<Index>(), 1u8..=255).prop_map(|(i, m)| Mutation::Flip(i, m)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        any::<Index>().prop_map(Mutation::Truncate),
        small.clone().prop_map(Mutation::Append),
        (any::<Index>(), 1usize..64).prop_map(|(i, n)| Mutation::Remove(i, n)),
        (any::<Index>(), small.clone()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        (any::<Index>(), small).prop_map(|(i, b)| Mutation::Overwrite(i, b)),
        (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Mutation::SwapChunks(a, b)),
        any::<Index>().prop_map(Mutation::DupChunk),
    ]
}

/// Apply `m` to `v`, whose first `skip` bytes are a header followed by chunks of
/// `chunk` bytes (the last may be shorter).
pub fn mutate(v: &[u8], m: &Mutation, skip: usize, chunk: usize) -> Vec<u8> {
    let mut out = v.to_vec();
    let n = out.len();
    let chunks = n.saturating_sub(skip).div_ceil(chunk);
    let range = |c: usize| skip + c * chunk..(skip + (c + 1) * chunk).min(n);
    match m {
        Mutation::Flip(i, mask) if n > 0 => out[i.index(n)] ^= mask,
        Mutation::Set(i, b) if n > 0 => out[i.index(n)] = *b,
        Mutation::Truncate(i) => out.truncate(i.index(n.max(1))),
        Mutation::Append(b) => out.extend_from_slice(b),
        Mutation::Remove(i, len) if n > 0 => {
            let at = i.index(n);
            out.drain(at..(at + len).min(n));
        }
        Mutation::Insert(i, b) => {
            let at = i.index(n + 1);
            out.splice(at..at, b.iter().copied());
        }
        Mutation::Overwrite(i, b) if n > 0 => {
            let at = i.index(n);
            let end = (at + b.len()).min(n);
            out[at..end].copy_from_slice(&b[..end - at]);
        }
        Mutation::SwapChunks(a, b) if chunks > 0 => {
            let (a, b) = (a.index(chunks), b.index(chunks));
            let (lo, hi) = (a.min(b), a.max(b));
            let mut rebuilt = out[..skip].to_vec();
            for c in 0..chunks {
                let from = if c == lo {
                    hi
                } else if c == hi {
                    lo
                } else {
                    c
                };
                rebuilt.extend_from_slice(&v[range(from)]);
            }
            out = rebuilt;
        }
        Mutation::DupChunk(c) if chunks > 0 => {
            let r = range(c.index(chunks));
            let copy = v[r.clone()].to_vec();
            out.splice(r.end..r.end, copy);
        }
        _ => {}
    }
    out
}
