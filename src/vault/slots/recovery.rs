//! The recovery code: 256 random bits shown once as 24 BIP-39 English words
//! (the last word carries an 8-bit checksum, so a mistyped word is told at
//! once). The entropy is the input key of a recovery slot.

use zeroize::Zeroizing;

use crate::crypto::{random_array, SymKey};
use crate::error::{Error, Result};

/// A fresh code: its entropy and its 24 words (space separated).
pub fn generate() -> Result<(SymKey, Zeroizing<String>)> {
    let mut entropy = Zeroizing::new(random_array::<32>());
    let m = bip39::Mnemonic::from_entropy(&entropy[..])
        .map_err(|_| Error::Crypto("making the recovery code failed"))?;
    let words = Zeroizing::new(m.to_string());
    let key = SymKey::from_bytes(*entropy);
    zeroize::Zeroize::zeroize(&mut *entropy);
    Ok((key, words))
}

/// The entropy of a code given as text (any whitespace between words, any
/// case).
pub fn parse(text: &str) -> Result<SymKey> {
    let norm = Zeroizing::new(
        text.split_whitespace()
            .map(|w| w.to_lowercase())
            .collect::<Vec<_>>()
            .join(" "),
    );
    if norm.split(' ').count() != 24 {
        return Err(Error::BadShare(
            "a recovery code is 24 words; the one given is not".into(),
        ));
    }
    let m =
        bip39::Mnemonic::parse_in_normalized(bip39::Language::English, &norm).map_err(|_| {
            Error::BadShare(
                "the recovery code is mistyped (a word is unknown or its checksum does not match)"
                    .into(),
            )
        })?;
    let entropy = Zeroizing::new(m.to_entropy());
    SymKey::from_slice(&entropy).ok_or(Error::Crypto("recovery code of the wrong length"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip_and_typos_are_refused() {
        let (key, words) = generate().unwrap();
        assert_eq!(words.split(' ').count(), 24);
        assert_eq!(parse(&words).unwrap().as_bytes(), key.as_bytes());
        let upper = words.to_uppercase().replace(' ', "\n  ");
        assert_eq!(parse(&upper).unwrap().as_bytes(), key.as_bytes());
        // BIP-39's all-zero vector; a wrong last word fails the checksum.
        let zero = format!("{}art", "abandon ".repeat(23));
        assert_eq!(parse(&zero).unwrap().as_bytes(), &[0u8; 32]);
        assert!(parse(&format!("{}abandon", "abandon ".repeat(23))).is_err());
        assert!(parse(&format!("{}notaword", "abandon ".repeat(23))).is_err());
        assert!(parse(&words.split(' ').take(23).collect::<Vec<_>>().join(" ")).is_err());
    }
}
