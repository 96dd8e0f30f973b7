//! Tag lists: the GCM tag of every page of one committed blob, so that a big
//! file can be checked page by page as it is read instead of hashed whole on
//! its first open.
//!
//! ```text
//! V/tags/<blob id, 40 hex digits>:
//!   0      8  magic "PKFSTAGS"
//!   8      1  version = 1
//!   9     20  git blob id of the blob (SHA-1 of "blob <len>\0" | bytes)
//!  29      8  blob length in bytes, u64 big-endian
//!  37     58  the blob's header, verbatim
//!  95  16*n  the GCM tag of page 0, 1, …, n-1 (n pages in the blob)
//!  end    32  HMAC-SHA256 over everything before it
//! HMAC key = HKDF-SHA256(ikm = vault key of generation 0, no salt,
//!                        info = "pkfs tags v1")
//! ```
//!
//! Why this is as strong as hashing the whole blob: HEAD's tree names the blob
//! id of every path, and the HMAC (which only a holder of the vault key can
//! make) binds a tag list to one blob id. A page is served only after its GCM
//! check passed *and* its tag equals the listed one. Producing a different
//! ciphertext (an older version of the page, a page of another blob) that
//! authenticates under the same key, IV and AAD with the same tag is a GCM
//! forgery. So a reader gets exactly the committed bytes, or EIO on the first
//! page that differs.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::offsets::{self, CIPHER_PAGE, HEADER_LEN, IV_LEN, TAG_LEN};
use crate::crypto::kdf::hkdf32;
use crate::crypto::SymKey;

pub const MAGIC: &[u8; 8] = b"PKFSTAGS";
pub const VERSION: u8 = 1;
pub const INFO: &[u8] = b"pkfs tags v1";
/// Only blobs at least this long get a tag list: smaller ones are read whole on
/// open anyway, and hashing them is cheap.
pub const MIN_BLOB_LEN: u64 = 1 << 20;

const FIXED: usize = 8 + 1 + 20 + 8 + HEADER_LEN as usize;
const MAC_LEN: usize = 32;

pub type Tag = [u8; TAG_LEN as usize];

/// The key that authenticates a vault's tag lists.
pub struct TagKey(SymKey);

impl TagKey {
    /// Derived from the vault key of generation 0.
    pub fn new(vault_key: &SymKey) -> TagKey {
        TagKey(hkdf32(vault_key, None, INFO))
    }

    fn mac(&self, bytes: &[u8]) -> Hmac<Sha256> {
        let mut m = match <Hmac<Sha256> as KeyInit>::new_from_slice(self.0.as_bytes()) {
            Ok(m) => m,
            Err(_) => panic!("HMAC takes a key of any length"),
        };
        m.update(bytes);
        m
    }
}

/// What one blob's pages carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagList {
    pub blob_id: [u8; 20],
    pub blob_len: u64,
    pub header: [u8; HEADER_LEN as usize],
    pub tags: Vec<Tag>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagsError {
    /// Not a tag list, a version we do not know, or a length that does not add up.
    Malformed,
    /// The HMAC does not verify: damaged, forged, or of another vault.
    Forged,
    /// An authentic list, but of another blob.
    OtherBlob,
}

impl TagList {
    /// The tag page `i` must carry.
    pub fn tag(&self, i: u64) -> Option<&Tag> {
        self.tags.get(usize::try_from(i).ok()?)
    }

    pub fn encode(&self, key: &TagKey) -> Vec<u8> {
        let mut out = Vec::with_capacity(FIXED + self.tags.len() * TAG_LEN as usize + MAC_LEN);
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&self.blob_id);
        out.extend_from_slice(&self.blob_len.to_be_bytes());
        out.extend_from_slice(&self.header);
        for t in &self.tags {
            out.extend_from_slice(t);
        }
        let mac = key.mac(&out).finalize().into_bytes();
        out.extend_from_slice(&mac);
        out
    }

    /// Parse and authenticate `bytes` as the tag list of blob `blob_id`.
    pub fn decode(bytes: &[u8], key: &TagKey, blob_id: &[u8; 20]) -> Result<TagList, TagsError> {
        if bytes.len() < FIXED + MAC_LEN || &bytes[..8] != MAGIC || bytes[8] != VERSION {
            return Err(TagsError::Malformed);
        }
        let (body, mac) = bytes.split_at(bytes.len() - MAC_LEN);
        key.mac(body)
            .verify_slice(mac)
            .map_err(|_| TagsError::Forged)?;
        let mut id = [0u8; 20];
        id.copy_from_slice(&body[9..29]);
        if &id != blob_id {
            return Err(TagsError::OtherBlob);
        }
        let mut len = [0u8; 8];
        len.copy_from_slice(&body[29..37]);
        let blob_len = u64::from_be_bytes(len);
        let mut header = [0u8; HEADER_LEN as usize];
        header.copy_from_slice(&body[37..FIXED]);
        let rest = &body[FIXED..];
        let pages = page_count_of_blob(blob_len).ok_or(TagsError::Malformed)?;
        if rest.len() as u64 != pages * TAG_LEN {
            return Err(TagsError::Malformed);
        }
        let tags = rest
            .chunks_exact(TAG_LEN as usize)
            .map(|c| {
                let mut t = [0u8; TAG_LEN as usize];
                t.copy_from_slice(c);
                t
            })
            .collect();
        Ok(TagList {
            blob_id: id,
            blob_len,
            header,
            tags,
        })
    }
}

/// Pages in a blob of `blob_len` bytes; `None` for a length no blob has (an
/// empty blob has no header and needs no list either).
fn page_count_of_blob(blob_len: u64) -> Option<u64> {
    match offsets::plain_len(blob_len)? {
        0 => None,
        plain => Some(offsets::page_count(plain)),
    }
}

/// Gathers a blob's header and page tags from its bytes, fed in order in
/// chunks of any size.
pub struct Collector {
    at: u64,
    list: TagList,
}

impl Collector {
    /// For a blob of `blob_len` bytes; `None` when no blob has that length.
    pub fn new(blob_len: u64) -> Option<Collector> {
        let pages = page_count_of_blob(blob_len)?;
        Some(Collector {
            at: 0,
            list: TagList {
                blob_id: [0; 20],
                blob_len,
                header: [0; HEADER_LEN as usize],
                tags: vec![[0; TAG_LEN as usize]; usize::try_from(pages).ok()?],
            },
        })
    }

    /// The next `chunk` of the blob.
    pub fn feed(&mut self, chunk: &[u8]) {
        let start = self.at;
        let end = start + chunk.len() as u64;
        self.at = end;
        // Copy the part of [from, to) (blob offsets) that lies in this chunk.
        let copy = |from: u64, to: u64, dst: &mut [u8]| {
            let (lo, hi) = (from.max(start), to.min(end));
            if lo < hi {
                dst[(lo - from) as usize..(hi - from) as usize]
                    .copy_from_slice(&chunk[(lo - start) as usize..(hi - start) as usize]);
            }
        };
        copy(0, HEADER_LEN, &mut self.list.header);
        if end <= HEADER_LEN {
            return;
        }
        let first = start.saturating_sub(HEADER_LEN) / CIPHER_PAGE;
        let last = (end - 1 - HEADER_LEN) / CIPHER_PAGE;
        for i in first..=last {
            let Some(tag) = self.list.tags.get_mut(i as usize) else {
                break;
            };
            let at = offsets::page_blob_offset(i) + IV_LEN;
            copy(at, at + TAG_LEN, tag);
        }
    }

    /// The list, once the whole blob (which hashed to `blob_id`) was fed.
    pub fn finish(mut self, blob_id: [u8; 20]) -> Option<TagList> {
        if self.at != self.list.blob_len {
            return None;
        }
        self.list.blob_id = blob_id;
        Some(self.list)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> TagKey {
        TagKey::new(&SymKey::from_bytes([9; 32]))
    }

    /// A blob-shaped byte string of `pages` full pages plus `tail` bytes of a
    /// last page, each byte its offset mod 251.
    fn fake_blob(plain: u64) -> Vec<u8> {
        (0..offsets::blob_len(plain))
            .map(|i| (i % 251) as u8)
            .collect()
    }

    fn collect(blob: &[u8], chunk: usize) -> TagList {
        let mut c = Collector::new(blob.len() as u64).unwrap();
        for part in blob.chunks(chunk) {
            c.feed(part);
        }
        c.finish([5; 20]).unwrap()
    }

    #[test]
    fn the_collector_finds_each_tag_whatever_the_chunks() {
        for plain in [1, 4095, 4096, 4097, 3 * 4096 + 17] {
            let blob = fake_blob(plain);
            let want = collect(&blob, blob.len());
            assert_eq!(&want.header[..], &blob[..HEADER_LEN as usize]);
            assert_eq!(want.tags.len() as u64, offsets::page_count(plain));
            for (i, t) in want.tags.iter().enumerate() {
                let at = (offsets::page_blob_offset(i as u64) + IV_LEN) as usize;
                assert_eq!(&t[..], &blob[at..at + TAG_LEN as usize], "page {i}");
            }
            for chunk in [1, 7, 16, 57, 58, 59, 4124, 5000] {
                assert_eq!(
                    collect(&blob, chunk),
                    want,
                    "plain {plain}, chunks of {chunk}"
                );
            }
        }
    }

    #[test]
    fn a_short_feed_or_an_impossible_length_gives_no_list() {
        assert!(Collector::new(0).is_none());
        assert!(Collector::new(HEADER_LEN).is_none());
        assert!(Collector::new(HEADER_LEN + 28).is_none());
        let blob = fake_blob(5000);
        let mut c = Collector::new(blob.len() as u64).unwrap();
        c.feed(&blob[..100]);
        assert!(c.finish([0; 20]).is_none());
    }

    #[test]
    fn a_list_round_trips_and_refuses_tampering() {
        let list = collect(&fake_blob(9000), 1000);
        let bytes = list.encode(&key());
        assert_eq!(TagList::decode(&bytes, &key(), &[5; 20]), Ok(list.clone()));
        assert_eq!(
            TagList::decode(&bytes, &key(), &[6; 20]),
            Err(TagsError::OtherBlob)
        );
        let other = TagKey::new(&SymKey::from_bytes([8; 32]));
        assert_eq!(
            TagList::decode(&bytes, &other, &[5; 20]),
            Err(TagsError::Forged)
        );
        for at in [9, 30, 40, 100, bytes.len() - 1] {
            let mut bad = bytes.clone();
            bad[at] ^= 1;
            assert_eq!(
                TagList::decode(&bad, &key(), &[5; 20]),
                Err(TagsError::Forged),
                "byte {at}"
            );
        }
        for cut in [0, 8, 50, bytes.len() - 1] {
            assert!(TagList::decode(&bytes[..cut], &key(), &[5; 20]).is_err());
        }
        // A length that disagrees with the tag count is refused even when
        // authentic (a list made by a buggy writer).
        let mut wrong = list;
        wrong.tags.pop();
        assert_eq!(
            TagList::decode(&wrong.encode(&key()), &key(), &[5; 20]),
            Err(TagsError::Malformed)
        );
    }
}
