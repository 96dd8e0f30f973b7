//! `pkfs secret generate`: a password of characters drawn uniformly from the
//! operating system's random source (rejection sampling, no modulo bias), or
//! a phrase of words from the BIP-39 English list.

use pkfs::Error;
use zeroize::Zeroizing;

use crate::cli::cmd_secret::Vaults;
use crate::cli::{parse_entry, write_out};

const LETTERS_DIGITS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const SYMBOLS: &[u8] = b"!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";

/// What to generate.
pub enum Kind {
    Chars { length: usize, symbols: bool },
    Words(usize),
}

/// Fill `buf` from the OS random source.
fn random(buf: &mut [u8]) -> Result<(), Error> {
    getrandom::fill(buf).map_err(|_| Error::Crypto("the system's random source failed"))
}

/// `n` values uniform in `0..bound` (1 <= bound <= 256), by rejection: a byte
/// at or above the largest multiple of `bound` is drawn again.
fn uniform_below(bound: usize, n: usize) -> Result<Zeroizing<Vec<usize>>, Error> {
    debug_assert!((1..=256).contains(&bound));
    let limit = 256 - 256 % bound;
    let mut out = Zeroizing::new(Vec::with_capacity(n));
    let mut pool = Zeroizing::new([0u8; 256]);
    while out.len() < n {
        random(&mut pool[..])?;
        for &b in pool.iter() {
            if (b as usize) < limit && out.len() < n {
                out.push(b as usize % bound);
            }
        }
    }
    Ok(out)
}

/// A fresh secret, without a trailing newline.
pub fn generate(kind: &Kind) -> Result<Zeroizing<Vec<u8>>, Error> {
    match *kind {
        Kind::Chars { length, symbols } => {
            let mut set = LETTERS_DIGITS.to_vec();
            if symbols {
                set.extend_from_slice(SYMBOLS);
            }
            let picks = uniform_below(set.len(), length)?;
            Ok(Zeroizing::new(picks.iter().map(|&i| set[i]).collect()))
        }
        Kind::Words(n) => {
            let list = bip39::Language::English.word_list();
            // 2048 words: 11 random bits each, taken from two bytes.
            let mut raw = Zeroizing::new(vec![0u8; 2 * n]);
            random(&mut raw)?;
            let mut phrase = Zeroizing::new(Vec::new());
            for (i, pair) in raw.chunks_exact(2).enumerate() {
                let idx = (usize::from(pair[0]) << 8 | usize::from(pair[1])) & 0x7ff;
                if i > 0 {
                    phrase.push(b'-');
                }
                phrase.extend_from_slice(list[idx].as_bytes());
            }
            Ok(phrase)
        }
    }
}

/// Generate, store at `target` (refused over an existing entry unless
/// `force`) and print the secret.
pub fn run(vaults: &mut Vaults, target: &str, kind: &Kind, force: bool) -> Result<(), Error> {
    let t = parse_entry(target)?;
    if t.dir {
        return Err(Error::Usage(format!(
            "{target:?}: expected a secret's path, not a directory"
        )));
    }
    let vault = vaults.get(&t.vault)?;
    if !force && vault.tree().exists(&t.path)? {
        return Err(Error::Exists(format!(
            "{}:{} (use --force to replace it)",
            t.vault, t.path
        )));
    }
    let mut secret = generate(kind)?;
    secret.push(b'\n');
    vault.write(&t.path, &secret)?;
    write_out(&secret).map_err(|e| Error::io("stdout", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn characters_come_from_the_set_and_cover_it() {
        let s = generate(&Kind::Chars {
            length: 4000,
            symbols: false,
        })
        .unwrap();
        assert_eq!(s.len(), 4000);
        assert!(s.iter().all(|c| c.is_ascii_alphanumeric()));
        // 4000 draws from 62: every character shows up (miss chance ~1e-26).
        assert!(LETTERS_DIGITS.iter().all(|c| s.contains(c)));
        let s = generate(&Kind::Chars {
            length: 4000,
            symbols: true,
        })
        .unwrap();
        assert!(SYMBOLS.iter().all(|c| s.contains(c)));
    }

    #[test]
    fn rejection_sampling_stays_in_range() {
        for bound in [1, 3, 62, 94, 255, 256] {
            let v = uniform_below(bound, 1000).unwrap();
            assert!(v.iter().all(|&x| x < bound));
        }
    }

    #[test]
    fn words_are_bip39_words() {
        let p = generate(&Kind::Words(6)).unwrap();
        let p = std::str::from_utf8(&p).unwrap();
        let words: Vec<&str> = p.split('-').collect();
        assert_eq!(words.len(), 6);
        let list = bip39::Language::English.word_list();
        assert!(words.iter().all(|w| list.contains(w)));
    }
}
