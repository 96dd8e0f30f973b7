//! Protectors of the root private key, and the `root.key` file.
//!
//! ```text
//! root.key, version 2:
//!   0   8  magic "PKFSROOT"
//!   8   1  version = 2
//!   9   1  slot count n, 1..=32
//!  10   .  n slots, each:
//!            0  1  protector id (1 = passphrase / Argon2id; 2 = shares,
//!                  3 = recovery code, 4 = key file: see `vault::slots`)
//!            1  4  body length L, u32 BE
//!            5  L  protector body
//!   end-32 32  SHA-256 of every byte before it
//! root.key, version 1 (still read; rewritten as version 2 at the next unlock):
//!   0   8  magic, 8 1 version = 1, 9 1 protector id, 10 . protector body
//! passphrase body:
//!   0   4  Argon2id memory cost in KiB, u32 BE
//!   4   4  Argon2id passes, u32 BE
//!   8   4  Argon2id lanes, u32 BE
//!  12  16  salt
//!  28  12  iv
//!  40  16  GCM tag
//!  56   .  ciphertext of the PKCS#8 DER private key
//! KEK = Argon2id(passphrase, salt, params);
//! AAD = magic ‖ 01 ‖ protector id ‖ body[..28] (the bytes before the iv of a
//! version-1 file), so a slot is sealed independently of the file around it.
//! ```
//!
//! The digest is not a MAC: it tells accidental damage (a flipped bit, a
//! truncated copy) from a wrong passphrase without needing the passphrase.
//! Someone who rewrites the file can recompute it; what they cannot do is make
//! a slot open to the real key, since each slot is authenticated on its own.
//!
//! A protector is one small interface; the keyed kinds (a Shamir-split master
//! key, a recovery code, a key file) implement it in `vault::slots`.

use zeroize::Zeroizing;

use crate::crypto::aead::Gcm;
use crate::crypto::kdf::{argon2id, Argon2Params};
use crate::crypto::random_array;
use crate::crypto::secmem::RegionLock;
use crate::error::{Error, Result};
use sha2::{Digest, Sha256};

pub const MAGIC: &[u8; 8] = b"PKFSROOT";
/// The version written; version 1 (one slot, no digest) is still read.
pub const VERSION: u8 = 2;
const VERSION_1: u8 = 1;
/// Most slots a file may hold.
pub const MAX_SLOTS: usize = 32;
const MAX_BODY: usize = 1 << 16;
const DIGEST_LEN: usize = 32;

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

/// One protector slot of `root.key`: which protector, and what it sealed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slot {
    pub id: u8,
    pub body: Vec<u8>,
}

/// The associated data every slot of protector `id` is sealed with: the first
/// ten bytes of a version-1 file, whatever the file's version.
fn slot_aad(id: u8) -> Vec<u8> {
    let mut aad = MAGIC.to_vec();
    aad.push(VERSION_1);
    aad.push(id);
    aad
}

/// Seal `secret` (the PKCS#8 DER) into one slot under `protector`.
pub fn seal_slot(protector: &dyn Protector, secret: &[u8]) -> Slot {
    Slot {
        id: protector.id(),
        body: protector.seal(&slot_aad(protector.id()), secret),
    }
}

/// Encode a version-2 `root.key` holding `slots` (1..=[`MAX_SLOTS`]).
pub fn encode_key_file(slots: &[Slot]) -> Vec<u8> {
    assert!(
        (1..=MAX_SLOTS).contains(&slots.len()),
        "root.key holds 1..={MAX_SLOTS} slots"
    );
    let mut out = MAGIC.to_vec();
    out.push(VERSION);
    out.push(slots.len() as u8);
    for s in slots {
        assert!(s.body.len() <= MAX_BODY, "protector body too long");
        out.push(s.id);
        out.extend_from_slice(&(s.body.len() as u32).to_be_bytes());
        out.extend_from_slice(&s.body);
    }
    let digest = Sha256::digest(&out);
    out.extend_from_slice(&digest);
    out
}

/// Encode `root.key` for `secret` (the PKCS#8 DER) under `protector`.
pub fn seal_key_file(protector: &dyn Protector, secret: &[u8]) -> Vec<u8> {
    encode_key_file(&[seal_slot(protector, secret)])
}

fn damaged(what: impl Into<String>) -> Error {
    Error::corrupt("root.key", what)
}

/// Parse `root.key` into its slots and its version. Every structural fault
/// (a wrong length, a failed digest) is corruption: none of this needs the
/// passphrase, so damage is never mistaken for a wrong one.
pub fn parse_key_file(file: &[u8]) -> Result<(u8, Vec<Slot>)> {
    if file.len() < 10 || &file[..8] != MAGIC {
        return Err(damaged("not a pkfs root key file"));
    }
    match file[8] {
        VERSION_1 => Ok((
            VERSION_1,
            vec![Slot {
                id: file[9],
                body: file[10..].to_vec(),
            }],
        )),
        VERSION => {
            if file.len() < 10 + DIGEST_LEN {
                return Err(damaged("truncated"));
            }
            let (content, digest) = file.split_at(file.len() - DIGEST_LEN);
            if Sha256::digest(content).as_slice() != digest {
                return Err(damaged(
                    "its checksum does not match (the file is damaged or truncated)",
                ));
            }
            let n = content[9] as usize;
            if !(1..=MAX_SLOTS).contains(&n) {
                return Err(damaged(format!("{n} protector slots")));
            }
            let mut slots = Vec::with_capacity(n);
            let mut rest = &content[10..];
            for _ in 0..n {
                if rest.len() < 5 {
                    return Err(damaged("truncated slot"));
                }
                let len = be32(&rest[1..5]) as usize;
                if len > MAX_BODY || rest.len() - 5 < len {
                    return Err(damaged("truncated slot"));
                }
                slots.push(Slot {
                    id: rest[0],
                    body: rest[5..5 + len].to_vec(),
                });
                rest = &rest[5 + len..];
            }
            if !rest.is_empty() {
                return Err(damaged("trailing bytes after the last slot"));
            }
            Ok((VERSION, slots))
        }
        v => Err(damaged(format!("unsupported version {v}"))),
    }
}

/// Decode `root.key` and open it with `protector`: the first of its slots
/// that `protector` opens. Wrong passphrase only if every slot of that kind
/// refuses it.
pub fn open_key_file(protector: &dyn Protector, file: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    Ok(open_key_file_versioned(protector, file)?.0)
}

/// As [`open_key_file`], and the file's version (1 asks for a rewrite).
pub fn open_key_file_versioned(
    protector: &dyn Protector,
    file: &[u8],
) -> Result<(Zeroizing<Vec<u8>>, u8)> {
    let (version, slots) = parse_key_file(file)?;
    let mut last = None;
    for slot in slots.iter().filter(|s| s.id == protector.id()) {
        match protector.open(&slot_aad(slot.id), &slot.body) {
            Ok(secret) => return Ok((secret, version)),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        let ids: Vec<String> = slots.iter().map(|s| s.id.to_string()).collect();
        Error::Usage(format!(
            "root.key is protected by protector {} but {} was offered",
            ids.join(", "),
            protector.id()
        ))
    }))
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
        assert_eq!(f[8], VERSION);
        assert_eq!(
            &open_key_file(&pp("right"), &f).unwrap()[..],
            b"private key der"
        );
        assert!(matches!(
            open_key_file(&pp("wrong"), &f),
            Err(Error::WrongPassphrase)
        ));
        // Any damage is corruption, whatever passphrase is offered.
        for i in 0..f.len() {
            let mut bad = f.clone();
            bad[i] ^= 1;
            for p in ["right", "wrong"] {
                assert!(
                    matches!(open_key_file(&pp(p), &bad), Err(Error::Corrupt { .. })),
                    "flip at {i}"
                );
            }
        }
        for cut in [1, 2, 33, f.len() - 10] {
            assert!(matches!(
                open_key_file(&pp("wrong"), &f[..f.len() - cut]),
                Err(Error::Corrupt { .. })
            ));
        }
        let mut longer = f.clone();
        longer.push(0);
        assert!(matches!(
            open_key_file(&pp("right"), &longer),
            Err(Error::Corrupt { .. })
        ));
    }

    #[test]
    fn version_1_files_open_and_convert_without_resealing() {
        let slot = seal_slot(&pp("right"), b"der");
        let mut v1 = MAGIC.to_vec();
        v1.push(1);
        v1.push(slot.id);
        v1.extend_from_slice(&slot.body);
        let (der, version) = open_key_file_versioned(&pp("right"), &v1).unwrap();
        assert_eq!((&der[..], version), (&b"der"[..], 1));
        assert!(matches!(
            open_key_file(&pp("wrong"), &v1),
            Err(Error::WrongPassphrase)
        ));
        let (_, slots) = parse_key_file(&v1).unwrap();
        let v2 = encode_key_file(&slots);
        assert_eq!(&open_key_file(&pp("right"), &v2).unwrap()[..], b"der");
    }

    #[test]
    fn any_slot_opens_and_slots_are_independent() {
        let a = seal_slot(&pp("one"), b"der");
        let b = seal_slot(&pp("two"), b"der");
        let f = encode_key_file(&[a.clone(), b.clone()]);
        assert_eq!(&open_key_file(&pp("one"), &f).unwrap()[..], b"der");
        assert_eq!(&open_key_file(&pp("two"), &f).unwrap()[..], b"der");
        assert!(matches!(
            open_key_file(&pp("three"), &f),
            Err(Error::WrongPassphrase)
        ));
        // Removing a slot leaves the other openable, unchanged.
        let g = encode_key_file(&[b]);
        assert_eq!(&open_key_file(&pp("two"), &g).unwrap()[..], b"der");
        assert!(open_key_file(&pp("one"), &g).is_err());
        let mut huge = seal_key_file(&pp("right"), b"x");
        huge[15..19].copy_from_slice(&u32::MAX.to_be_bytes());
        let n = huge.len() - 32;
        let d = Sha256::digest(&huge[..n]);
        huge[n..].copy_from_slice(&d);
        assert!(matches!(
            open_key_file(&pp("right"), &huge),
            Err(Error::Corrupt { .. })
        ));
    }
}
