//! Shares of a master key: Shamir's scheme over GF(256) (`vsss-rs`), and the
//! one-line text a holder keeps.
//!
//! ```text
//! pkfs-share1-NODE-SLOT-K-I-VALUE-CHECK
//!   NODE   the first 12 characters of the node id (base58)
//!   SLOT   the shares slot's id, 8 lowercase hex digits
//!   K      the threshold, decimal (2..=255)
//!   I      the share's index (its x coordinate), decimal (1..=255)
//!   VALUE  the share's 32 bytes, 64 lowercase hex digits
//!   CHECK  the first 4 bytes of SHA-256 of every character before "-CHECK",
//!          8 lowercase hex digits
//! ```
//!
//! The checksum tells a mistyped or truncated share at once, before anything
//! is combined; NODE and SLOT tell a share of another node or another split
//! (say one retired by `pkfs key rekey`). None of it says anything about the
//! other shares or the key: a share is one point of a random polynomial.

use zeroize::{Zeroize, Zeroizing};

use super::{hex, unhex};
use crate::crypto::SymKey;
use crate::error::{Error, Result};
use sha2::{Digest, Sha256};

const PREFIX: &str = "pkfs-share1";
/// Characters of the node id a share carries.
pub const NODE_CHARS: usize = 12;

/// One share, parsed and checked for its form (not yet for a node).
pub struct Share {
    pub node: String,
    pub slot: [u8; 4],
    pub k: u8,
    pub index: u8,
    /// The y values; zeroized on drop.
    pub value: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for Share {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Share({} slot {} {}/{})",
            self.node,
            hex(&self.slot),
            self.index,
            self.k
        )
    }
}

fn bad(what: &str) -> Error {
    Error::BadShare(format!("not a valid share: {what}"))
}

fn checksum(text: &str) -> String {
    hex(&Sha256::digest(text.as_bytes())[..4])
}

impl Share {
    /// The text line (no line end).
    pub fn encode(&self) -> Zeroizing<String> {
        let body = Zeroizing::new(format!(
            "{PREFIX}-{}-{}-{}-{}-{}",
            self.node,
            hex(&self.slot),
            self.k,
            self.index,
            hex(&self.value[..])
        ));
        Zeroizing::new(format!("{}-{}", &*body, checksum(&body)))
    }

    /// Parse one line (surrounding whitespace ignored).
    pub fn parse(line: &str) -> Result<Share> {
        let line = line.trim();
        let Some((body, check)) = line.rsplit_once('-') else {
            return Err(bad("mistyped or truncated"));
        };
        if !body.starts_with(PREFIX) {
            return Err(bad("it does not start with \"pkfs-share1-\""));
        }
        if check.len() != 8 || checksum(body) != check.to_ascii_lowercase() {
            return Err(bad(
                "mistyped or truncated (its checksum does not match); nothing was counted",
            ));
        }
        let fields: Vec<&str> = body[PREFIX.len()..].split('-').collect();
        let [_, node, slot, k, index, value] = fields.as_slice() else {
            return Err(bad("wrong number of fields"));
        };
        let slot: [u8; 4] = unhex(slot)
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| bad("bad slot id"))?;
        let k: u8 = k.parse().map_err(|_| bad("bad threshold"))?;
        let index: u8 = index.parse().map_err(|_| bad("bad index"))?;
        if k < 2 || index == 0 || node.len() != NODE_CHARS {
            return Err(bad("bad threshold, index or node id"));
        }
        let mut raw = Zeroizing::new(unhex(value).ok_or_else(|| bad("bad value"))?);
        if raw.len() != 32 {
            return Err(bad("bad value length"));
        }
        let mut v = Zeroizing::new([0u8; 32]);
        v.copy_from_slice(&raw);
        raw.zeroize();
        Ok(Share {
            node: node.to_string(),
            slot,
            k,
            index,
            value: v,
        })
    }

    /// Refuse a share of another node or of a split `slots` does not hold.
    pub fn check_for(&self, node_id: &str, slots: &[(u8, u8, [u8; 4])]) -> Result<()> {
        let ours = node_prefix(node_id);
        if self.node != ours {
            return Err(Error::BadShare(format!(
                "this share is for node {}, not this node ({ours}); nothing was counted",
                self.node
            )));
        }
        match slots.iter().find(|(_, _, id)| *id == self.slot) {
            None => Err(Error::BadShare(format!(
                "this share belongs to split {}, which this node does not have \
                 (another split, or one retired by `pkfs key rekey`); nothing was counted",
                hex(&self.slot)
            ))),
            Some((k, _, _)) if *k != self.k => Err(bad("its threshold does not match its split")),
            Some(_) => Ok(()),
        }
    }
}

/// The part of a node id a share carries.
pub fn node_prefix(node_id: &str) -> String {
    node_id.chars().take(NODE_CHARS).collect()
}

/// Split a fresh random master key into `n` shares, any `k` of which give it
/// back. Returns the key and the shares.
pub fn split(node_id: &str, slot: [u8; 4], k: u8, n: u8) -> Result<(SymKey, Vec<Share>)> {
    if k < 2 || n < k {
        return Err(Error::Usage(format!(
            "a split needs 2 <= threshold <= shares <= 255 (got threshold {k}, shares {n})"
        )));
    }
    let master = SymKey::generate();
    let mut rng = rand::rng();
    let raw = vsss_rs::Gf256::split_bytes(k as usize, n as usize, master.as_bytes(), &mut rng)
        .map_err(|_| Error::Crypto("splitting the master key failed"))?;
    let node = node_prefix(node_id);
    let mut shares = Vec::with_capacity(raw.len());
    for mut r in raw {
        if r.len() != 33 || r[0] == 0 {
            r.zeroize();
            return Err(Error::Crypto("unexpected share layout"));
        }
        let mut value = Zeroizing::new([0u8; 32]);
        value.copy_from_slice(&r[1..]);
        shares.push(Share {
            node: node.clone(),
            slot,
            k,
            index: r[0],
            value,
        });
        r.zeroize();
    }
    Ok((master, shares))
}

/// Combine `k` shares of one split (distinct indices) into the master key.
/// Wrong shares give a wrong key, which the slot's tag then refuses.
pub fn combine(shares: &[&Share]) -> Result<SymKey> {
    let mut raw: Vec<Vec<u8>> = shares
        .iter()
        .map(|s| {
            let mut v = Vec::with_capacity(33);
            v.push(s.index);
            v.extend_from_slice(&s.value[..]);
            v
        })
        .collect();
    let out = vsss_rs::Gf256::combine_bytes(&raw[..]);
    for r in &mut raw {
        r.zeroize();
    }
    let mut out = Zeroizing::new(out.map_err(|_| Error::Crypto("combining the shares failed"))?);
    let key = SymKey::from_slice(&out).ok_or(Error::Crypto("combined key has the wrong length"));
    out.zeroize();
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_encode_parse_combine() {
        let node = "5HueCGU8rMjxEXxiPuD5BDku4MkFqeZyd4dZ1jvhTVqvbTLvyTJ";
        let (master, shares) = split(node, [0xde, 0xad, 0xbe, 0xef], 3, 5).unwrap();
        assert_eq!(shares.len(), 5);
        let lines: Vec<_> = shares.iter().map(|s| s.encode()).collect();
        let parsed: Vec<Share> = lines.iter().map(|l| Share::parse(l).unwrap()).collect();
        let slots = [(3, 5, [0xde, 0xad, 0xbe, 0xef])];
        for p in &parsed {
            p.check_for(node, &slots).unwrap();
        }
        let got = combine(&[&parsed[4], &parsed[0], &parsed[2]]).unwrap();
        assert_eq!(got.as_bytes(), master.as_bytes());
        let two = combine(&[&parsed[0], &parsed[1]]);
        assert!(two.map_or(true, |k| k.as_bytes() != master.as_bytes()));
        // Every single-character change and every truncation is refused.
        let l = lines[0].as_str();
        for i in 0..l.len() {
            let mut b = l.as_bytes().to_vec();
            b[i] = if b[i] == b'a' { b'b' } else { b'a' };
            let s = String::from_utf8(b).unwrap();
            assert!(Share::parse(&s).is_err(), "change at {i}");
        }
        for cut in 1..l.len() {
            assert!(Share::parse(&l[..cut]).is_err(), "cut {cut}");
        }
        assert!(parsed[0].check_for("other-node-id-xyz", &slots).is_err());
        assert!(parsed[0].check_for(node, &[(3, 5, [0; 4])]).is_err());
        assert!(split(node, [0; 4], 1, 3).is_err());
        assert!(split(node, [0; 4], 4, 3).is_err());
    }
}
