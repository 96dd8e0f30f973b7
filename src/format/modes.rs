//! The mode record of a backing directory: the modes the user set on the
//! directory and its entries, kept as a tracked file so that every version
//! holds them (see `store/modes/`).
//!
//! ```text
//! file  = ".pkfs-modes" in the backing directory (a reserved name: it starts
//!         with '.', which base64url never does, and is not ".L.…")
//!       = iv(12) | tag(16) | AES-256-GCM(plain)
//! key   = HKDF-SHA256(vault key of generation 0, no salt, info "pkfs modes v1")
//! AAD   = "pkfs modes v1" | the directory's IV (16 bytes, its ".diriv")
//! plain = version (1 byte, = 1) | entry*
//! entry = name length (1 byte, 1..=255) | name | mode (u16 big-endian, <= 0o7777)
//!         name: a backing entry name of the directory (the encrypted name, or
//!         ".L.<hash>" for a long one), or "." for the directory itself;
//!         strictly increasing by bytes (sorted, no repeats)
//! ```
//!
//! Only entries whose mode differs from the default are listed: a directory
//! `0700`, a file `0600`, or `0700` when its owner execute bit is set (git
//! keeps that bit as `100755`). Binding the directory IV makes a record
//! moved or copied into another directory fail its tag.

use std::collections::BTreeMap;

use crate::crypto::aead::Gcm;
use crate::crypto::kdf::hkdf32;
use crate::crypto::SymKey;

/// File name of the record in a backing directory.
pub const MODES_FILE: &str = ".pkfs-modes";
/// HKDF info and associated-data prefix.
pub const MODES_INFO: &[u8] = b"pkfs modes v1";
/// The record's name for the directory itself.
pub const SELF_ENTRY: &str = ".";
const VERSION: u8 = 1;

/// Backing entry name → mode (permission bits and set-id/sticky, `07777`).
pub type ModeMap = BTreeMap<String, u32>;

/// Why a record is not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordError {
    /// The tag does not verify (damaged, forged, or another directory's).
    Unauthentic,
    /// It authenticates but is not a well-formed record.
    Malformed(&'static str),
}

impl std::fmt::Display for RecordError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecordError::Unauthentic => write!(f, "the mode record does not authenticate"),
            RecordError::Malformed(why) => write!(f, "the mode record is malformed: {why}"),
        }
    }
}

/// The mode a checkout gives an entry the record does not list.
pub fn default_mode(is_dir: bool, owner_exec: bool) -> u32 {
    if is_dir || owner_exec {
        0o700
    } else {
        0o600
    }
}

/// Seals and opens the mode records of one vault.
pub struct ModeCipher {
    gcm: Gcm,
}

fn aad(dir_iv: &[u8; 16]) -> Vec<u8> {
    let mut a = MODES_INFO.to_vec();
    a.extend_from_slice(dir_iv);
    a
}

/// The plaintext of `modes` (see the module comment). Names longer than 255
/// bytes cannot be backing names and are left out.
pub fn encode(modes: &ModeMap) -> Vec<u8> {
    let mut out = vec![VERSION];
    for (name, mode) in modes {
        let Ok(len) = u8::try_from(name.len()) else {
            continue;
        };
        if len == 0 {
            continue;
        }
        out.push(len);
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&((mode & 0o7777) as u16).to_be_bytes());
    }
    out
}

/// Parse a plaintext record.
pub fn decode(plain: &[u8]) -> Result<ModeMap, RecordError> {
    let bad = RecordError::Malformed;
    let (&version, mut rest) = plain.split_first().ok_or(bad("empty"))?;
    if version != VERSION {
        return Err(bad("unknown version"));
    }
    let mut out = ModeMap::new();
    let mut last: Option<String> = None;
    while let Some((&len, tail)) = rest.split_first() {
        let len = usize::from(len);
        if len == 0 || tail.len() < len + 2 {
            return Err(bad("truncated entry"));
        }
        let name = std::str::from_utf8(&tail[..len]).map_err(|_| bad("name is not UTF-8"))?;
        let mode = u32::from(u16::from_be_bytes([tail[len], tail[len + 1]]));
        if mode > 0o7777 {
            return Err(bad("mode out of range"));
        }
        if last.as_deref().is_some_and(|l| l >= name) {
            return Err(bad("entries not sorted"));
        }
        last = Some(name.to_string());
        out.insert(name.to_string(), mode);
        rest = &tail[len + 2..];
    }
    Ok(out)
}

impl ModeCipher {
    pub fn new(first_key: &SymKey) -> ModeCipher {
        ModeCipher {
            gcm: Gcm::new(&hkdf32(first_key, None, MODES_INFO)),
        }
    }

    /// The record file of `modes` for the directory of IV `dir_iv`.
    pub fn seal(&self, dir_iv: &[u8; 16], modes: &ModeMap) -> Vec<u8> {
        self.gcm.seal_envelope(&aad(dir_iv), &encode(modes))
    }

    /// [`ModeCipher::seal`] with a given IV. Only test vectors pass a fixed one.
    pub fn seal_with_iv(&self, iv: &[u8; 12], dir_iv: &[u8; 16], modes: &ModeMap) -> Vec<u8> {
        self.gcm
            .seal_envelope_with_iv(iv, &aad(dir_iv), &encode(modes))
    }

    /// The modes in record file `bytes` of the directory of IV `dir_iv`.
    pub fn open(&self, dir_iv: &[u8; 16], bytes: &[u8]) -> Result<ModeMap, RecordError> {
        let plain = self
            .gcm
            .open_envelope(&aad(dir_iv), bytes)
            .map_err(|_| RecordError::Unauthentic)?;
        decode(&plain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(entries: &[(&str, u32)]) -> ModeMap {
        entries.iter().map(|(n, m)| (n.to_string(), *m)).collect()
    }

    #[test]
    fn a_record_round_trips_and_is_bound_to_its_directory() {
        let c = ModeCipher::new(&SymKey::from_bytes([5; 32]));
        let m = map(&[(".", 0o755), ("AbC", 0o640), ("zz_-9", 0o4711)]);
        let sealed = c.seal(&[1; 16], &m);
        assert_eq!(c.open(&[1; 16], &sealed).unwrap(), m);
        assert_eq!(c.open(&[2; 16], &sealed), Err(RecordError::Unauthentic));
        let mut flipped = sealed.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(c.open(&[1; 16], &flipped), Err(RecordError::Unauthentic));
        assert_eq!(
            c.open(&[1; 16], &sealed[..10]),
            Err(RecordError::Unauthentic)
        );
        let other = ModeCipher::new(&SymKey::from_bytes([6; 32]));
        assert_eq!(other.open(&[1; 16], &sealed), Err(RecordError::Unauthentic));
        assert!(c
            .open(&[1; 16], &c.seal(&[1; 16], &ModeMap::new()))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn malformed_plaintexts_are_refused() {
        for bad in [
            &b""[..],
            &[2],
            &[1, 0],
            &[1, 3, b'a', b'b'],
            &[1, 1, b'a', 0x10, 0x00],
            &[1, 1, b'b', 0, 1, 1, b'a', 0, 1],
            &[1, 1, b'a', 0, 1, 1, b'a', 0, 1],
        ] {
            assert!(decode(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            decode(&[1, 1, b'a', 0x01, 0xa4]).unwrap(),
            map(&[("a", 0o644)])
        );
    }
}
