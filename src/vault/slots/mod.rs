//! Protector slots of `root.key` beside the passphrase: a Shamir-split master
//! key, a recovery code and a key file; and the slot changes of `pkfs key`.
//!
//! ```text
//! body of a keyed slot (protector id 2 = shares, 3 = recovery code, 4 = key file):
//!   0   4  slot id (random; names the slot in `pkfs key list`, and shares)
//!   4   8  created, Unix seconds, i64 BE
//!  12   1  threshold k (shares; 0 for the other kinds)
//!  13   1  share count n (shares; 0 for the other kinds)
//!  14  16  salt
//!  30  12  iv
//!  42  16  GCM tag
//!  58   .  ciphertext of the PKCS#8 DER private key
//! KEK = HKDF-SHA256(ikm, salt = body[0..4] ‖ body[14..30],
//!                   info = "pkfs root.key slot " ‖ protector id)
//!   ikm: shares: the 32-byte master key the shares combine to;
//!        recovery code: the 32 bytes of entropy of the 24 BIP-39 words;
//!        key file: SHA-256 of the key file's bytes.
//! AAD = "PKFSROOT" ‖ 01 ‖ protector id ‖ body[..30]
//! ```
//!
//! Every ikm holds 256 bits of entropy (a key file shorter than 32 bytes is
//! refused), so no slow KDF is needed: HKDF only separates the slots.
//! A passphrase slot (id 1, see [`super::protector`]) has no header: its id in
//! listings is the first 4 bytes of SHA-256 of its body.
//!
//! * [`keyed`]: the protector of the three keyed kinds.
//! * [`share`]: the one-line text form of a share, and splitting/combining.
//! * [`recovery`]: the 24-word recovery code.
//! * [`change`]: adding, listing, removing and replacing slots, atomically.

pub mod change;
pub mod keyed;
pub mod recovery;
pub mod share;

use sha2::{Digest, Sha256};

use super::protector::{Passphrase, Slot};

pub use keyed::Keyed;

/// Protector ids of the keyed kinds.
pub const SHARES: u8 = 2;
pub const RECOVERY: u8 = 3;
pub const KEY_FILE: u8 = 4;

/// Bytes before the iv in a keyed slot's body.
pub const HEADER_LEN: usize = 30;

/// The kind of a slot, by protector id.
pub fn kind_name(id: u8) -> &'static str {
    match id {
        Passphrase::ID => "passphrase",
        SHARES => "shares",
        RECOVERY => "recovery",
        KEY_FILE => "keyfile",
        _ => "unknown",
    }
}

/// What `pkfs key list` shows of a slot (nothing secret).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SlotInfo {
    /// 8 hex digits.
    pub slot: String,
    pub kind: &'static str,
    /// Unix seconds, when the slot records it (not passphrase slots).
    pub created: Option<i64>,
    /// Shares: (k, n).
    pub threshold: Option<u8>,
    pub shares: Option<u8>,
}

/// The 4-byte id of `slot`.
pub fn slot_id(slot: &Slot) -> [u8; 4] {
    let mut id = [0u8; 4];
    if slot.id != Passphrase::ID && slot.body.len() >= 4 {
        id.copy_from_slice(&slot.body[..4]);
    } else {
        id.copy_from_slice(&Sha256::digest(&slot.body)[..4]);
    }
    id
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Decode lowercase or uppercase hex; `None` on anything else.
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

/// Describe `slot` for listings.
pub fn describe(slot: &Slot) -> SlotInfo {
    let keyed = slot.id != Passphrase::ID && slot.body.len() >= HEADER_LEN;
    let mut created = None;
    let (mut threshold, mut shares) = (None, None);
    if keyed {
        let mut t = [0u8; 8];
        t.copy_from_slice(&slot.body[4..12]);
        created = Some(i64::from_be_bytes(t));
        if slot.id == SHARES {
            threshold = Some(slot.body[12]);
            shares = Some(slot.body[13]);
        }
    }
    SlotInfo {
        slot: hex(&slot_id(slot)),
        kind: kind_name(slot.id),
        created,
        threshold,
        shares,
    }
}

/// The (k, n, slot id) of every shares slot.
pub fn share_slots(slots: &[Slot]) -> Vec<(u8, u8, [u8; 4])> {
    slots
        .iter()
        .filter(|s| s.id == SHARES && s.body.len() >= HEADER_LEN)
        .map(|s| (s.body[12], s.body[13], slot_id(s)))
        .collect()
}
