//! Property tests of the on-disk parsers: content blobs and their page
//! arithmetic, encrypted names, symlink targets and xattrs (the metadata file
//! is in `prop_metadata.rs`). Whatever bytes are on disk, a parser returns an
//! error or the exact plaintext that was sealed; it never panics and never
//! yields other plaintext.
//!
//! Running a longer pass
//! ---------------------
//! Every property runs 256 cases by default (a few seconds in debug). The
//! `PROPTEST_CASES` environment variable raises (or lowers) that for every
//! `prop_*` suite; the RSA-heavy metadata properties and the live-server one
//! run a quarter of it:
//!
//! ```text
//! PROPTEST_CASES=20000 cargo test --release \
//!     --test prop_format --test prop_metadata --test prop_protocol
//! ```
//!
//! A failure prints the minimal input that proptest shrank it to, and its seed
//! is saved beside the suite (`tests/prop_format.proptest-regressions`) so
//! every later run tries it first: commit that file with the fix.

mod prop_common;

use pkfs::crypto::SymKey;
use pkfs::format::blob::{self, BlobError, Header};
use pkfs::format::links::LinkCipher;
use pkfs::format::names::{self, DiskName, EntryKind, NameCipher, NameError};
use pkfs::format::offsets::{self, CIPHER_PAGE, HEADER_LEN, PAGE_OVERHEAD, PAGE_SIZE};
use prop_common::{bytes, config, must, mutate, mutation, plain_size};
use proptest::prelude::*;

// ---------------------------------------------------------------------------
// Page arithmetic. File sizes are `off_t`: at most i64::MAX.

const MAX_PLAIN: u64 = i64::MAX as u64;

proptest! {
    #![proptest_config(config(1))]

    #[test]
    fn blob_len_and_plain_len_are_inverse(plain in 0..=MAX_PLAIN) {
        let b = offsets::blob_len(plain);
        prop_assert_eq!(offsets::plain_len(b), Some(plain));
        prop_assert!(plain == 0 || b > plain + HEADER_LEN);
    }

    #[test]
    fn plain_len_accepts_exactly_the_blob_lengths(b in any::<u64>()) {
        match offsets::plain_len(b) {
            Some(p) => prop_assert_eq!(offsets::blob_len(p), b),
            None => {
                // blob_len grows by at least 1 per byte, and blob_len(p) lies
                // within HEADER_LEN + 2 pages of overhead of p: no p nearby maps to b.
                let guess = (b as u128 * PAGE_SIZE as u128 / CIPHER_PAGE as u128) as u64;
                for p in guess.saturating_sub(200)..guess.saturating_add(200).min(MAX_PLAIN) {
                    prop_assert_ne!(offsets::blob_len(p), b, "plain {}", p);
                }
            }
        }
    }

    #[test]
    fn blob_len_is_strictly_increasing(a in 0..MAX_PLAIN, d in 1u64..=70_000) {
        let b = a.saturating_add(d).min(MAX_PLAIN);
        prop_assume!(b > a);
        prop_assert!(offsets::blob_len(a) < offsets::blob_len(b));
    }

    #[test]
    fn pages_tile_the_file_and_the_blob(plain in 0u64..=64 * PAGE_SIZE) {
        let count = offsets::page_count(plain);
        let mut sum = 0;
        let mut end = if plain == 0 { 0 } else { HEADER_LEN };
        for i in 0..count {
            let len = offsets::page_plain_len(plain, i);
            prop_assert!((1..=PAGE_SIZE).contains(&len), "page {} holds {}", i, len);
            prop_assert!(i + 1 == count || len == PAGE_SIZE);
            prop_assert_eq!(offsets::page_blob_offset(i), end);
            end += len + PAGE_OVERHEAD;
            sum += len;
        }
        prop_assert_eq!(sum, plain);
        prop_assert_eq!(end, offsets::blob_len(plain));
        prop_assert_eq!(offsets::page_plain_len(plain, count), 0);
    }

    #[test]
    fn pages_touched_covers_exactly_the_range(offset in 0..MAX_PLAIN, len in 0u64..1 << 40) {
        let len = len.min(MAX_PLAIN - offset);
        let r = offsets::pages_touched(offset, len);
        if len == 0 {
            prop_assert!(r.is_empty());
        } else {
            let last = offset + len - 1;
            prop_assert_eq!(r.start, offsets::page_of(offset));
            prop_assert_eq!(r.end, offsets::page_of(last) + 1);
            prop_assert!(r.start * PAGE_SIZE <= offset && offset < (r.start + 1) * PAGE_SIZE);
            prop_assert!((r.end - 1) * PAGE_SIZE <= last && last < r.end * PAGE_SIZE);
        }
    }
}

// ---------------------------------------------------------------------------
// Content blobs.

/// Two key generations, as a vault that rotated its key once has.
struct Keys(SymKey, SymKey);

impl Keys {
    fn new() -> Keys {
        Keys(SymKey::from_bytes([7; 32]), SymKey::from_bytes([8; 32]))
    }

    fn of(&self, g: u32) -> Option<&SymKey> {
        match g {
            3 => Some(&self.0),
            4 => Some(&self.1),
            _ => None,
        }
    }

    fn open(&self, blob: &[u8]) -> Result<Vec<u8>, BlobError> {
        let opened = blob::open(|g| self.of(g), blob)?;
        Ok(opened.map(|o| o.plaintext().to_vec()).unwrap_or_default())
    }
}

proptest! {
    #![proptest_config(config(1))]

    #[test]
    fn blob_round_trip(len in plain_size(), seed in any::<u64>(), g in 3u32..=4) {
        let keys = Keys::new();
        let plain = bytes(seed, len);
        let sealed = blob::seal(keys.of(g).unwrap(), &Header::new(g), &plain);
        prop_assert_eq!(sealed.len() as u64, offsets::blob_len(len as u64));
        prop_assert_eq!(must(keys.open(&sealed))?, plain);
        // The other generation's key does not open it.
        let other: u32 = if g == 3 { 4 } else { 3 };
        let mut relabelled = sealed.clone();
        relabelled[6..10].copy_from_slice(&other.to_be_bytes());
        prop_assert!(keys.open(&relabelled).is_err());
    }

    #[test]
    fn mutated_blob_never_opens_to_other_plaintext(
        len in plain_size(),
        seed in any::<u64>(),
        m in mutation(),
    ) {
        let keys = Keys::new();
        let plain = bytes(seed, len);
        let sealed = blob::seal(&keys.0, &Header::new(3), &plain);
        let bad = mutate(&sealed, &m, HEADER_LEN as usize, CIPHER_PAGE as usize);
        let got = keys.open(&bad);
        if bad == sealed {
            prop_assert_eq!(must(got)?, plain);
        } else if bad.is_empty() {
            // The one change the blob format cannot see: a zero-byte blob is
            // the empty file (FORMAT.md). It never yields other non-empty data.
            prop_assert_eq!(must(got)?, Vec::<u8>::new());
        } else {
            prop_assert!(got.is_err(), "{:?} opened", m);
        }
    }

    #[test]
    fn arbitrary_bytes_never_open(body in proptest::collection::vec(any::<u8>(), 1..300)) {
        prop_assert!(Keys::new().open(&body).is_err());
    }

    #[test]
    fn forged_pages_behind_a_valid_header_never_open(
        g in 0u32..=5,
        len in plain_size(),
        seed in any::<u64>(),
    ) {
        // A well-formed header and a length that maps to a plain size: the
        // parser gets as far as authenticating pages.
        let mut forged = Header::new(g).encode().to_vec();
        let total = offsets::blob_len(len as u64) as usize;
        forged.extend_from_slice(&bytes(seed, total - forged.len()));
        match Keys::new().open(&forged) {
            Err(BlobError::TagMismatch(0)) => prop_assert!((3..=4).contains(&g)),
            Err(BlobError::UnknownGeneration(x)) => prop_assert_eq!(x, g),
            other => prop_assert!(false, "{:?}", other.map(|p| p.len())),
        }
    }

    #[test]
    fn header_decode_never_panics_and_round_trips(
        raw in proptest::collection::vec(any::<u8>(), 0..80),
        g in any::<u32>(),
    ) {
        if let Ok(h) = Header::decode(&raw) {
            prop_assert_eq!(&h.encode()[..], &raw[..HEADER_LEN as usize]);
        }
        let h = Header::new(g);
        prop_assert_eq!(Header::decode(&h.encode()), Ok(h));
    }

    #[test]
    fn reseal_keeps_unchanged_pages_and_opens_to_the_new_text(
        len in plain_size(),
        seed in any::<u64>(),
        m in mutation(),
    ) {
        let keys = Keys::new();
        let old_plain = bytes(seed, len);
        let sealed = blob::seal(&keys.1, &Header::new(4), &old_plain);
        let old = must(blob::open(|g| keys.of(g), &sealed))?.unwrap();
        let new_plain = mutate(&old_plain, &m, 0, PAGE_SIZE as usize);
        let resealed = must(blob::reseal(|g| keys.of(g), &old, &new_plain))?;
        prop_assert_eq!(must(keys.open(&resealed))?, new_plain.clone());
        if new_plain.is_empty() {
            return Ok(());
        }
        prop_assert_eq!(&resealed[..HEADER_LEN as usize], &sealed[..HEADER_LEN as usize]);
        // A page whose text and final flag are the same keeps its ciphertext.
        let (old_n, new_n) = (old.pages.len() as u64, offsets::page_count(new_plain.len() as u64));
        let page = |blob: &[u8], i: u64, plain: u64| {
            let at = offsets::page_blob_offset(i) as usize;
            blob[at..at + (offsets::page_plain_len(plain, i) + PAGE_OVERHEAD) as usize].to_vec()
        };
        for i in 0..old_n.min(new_n) {
            let same_text = offsets::page_plain_len(len as u64, i)
                == offsets::page_plain_len(new_plain.len() as u64, i)
                && old.pages[i as usize].0[..] == new_plain[(i * PAGE_SIZE) as usize..]
                    [..offsets::page_plain_len(new_plain.len() as u64, i) as usize];
            let same_flag = (i + 1 == old_n) == (i + 1 == new_n);
            let kept = page(&sealed, i, len as u64) == page(&resealed, i, new_plain.len() as u64);
            prop_assert_eq!(kept, same_text && same_flag, "page {}", i);
        }
    }
}

// ---------------------------------------------------------------------------
// Names, symlink targets, xattrs.

fn name_cipher() -> NameCipher {
    NameCipher::new(&SymKey::from_bytes([3; 32]))
}

/// A string of base64url characters: the alphabet encrypted names use.
fn b64url() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_-]{0,400}"
}

proptest! {
    #![proptest_config(config(1))]

    #[test]
    fn name_round_trip(name in proptest::collection::vec(any::<u8>(), 1..=255), iv in any::<[u8; 16]>()) {
        let nc = name_cipher();
        let enc = nc.encrypt(&iv, &name);
        prop_assert_eq!(names::classify(&enc), EntryKind::Direct);
        prop_assert_eq!(must(nc.decrypt(&iv, &enc))?, name.clone());
        prop_assert_eq!(nc.encrypt(&iv, &name), enc.clone(), "deterministic");
        // The backing entry always fits a file-name component.
        let disk = DiskName::from_encoded(enc.clone());
        prop_assert!(disk.entry().len() <= names::NAME_MAX);
        match &disk {
            DiskName::Direct(e) => prop_assert_eq!(e, &enc),
            DiskName::Long { entry, .. } => {
                prop_assert_eq!(names::classify(entry), EntryKind::Long);
                prop_assert_eq!(names::classify(&names::sidecar_of(entry)), EntryKind::Sidecar);
            }
        }
    }

    #[test]
    fn arbitrary_disk_names_never_decrypt(s in any::<String>(), t in b64url(), iv in any::<[u8; 16]>()) {
        let nc = name_cipher();
        prop_assert_eq!(nc.decrypt(&iv, &s), Err(NameError::Undecryptable));
        prop_assert_eq!(nc.decrypt(&iv, &t), Err(NameError::Undecryptable));
        // Classification and validation take any input.
        let _ = names::classify(&s);
        let _ = names::validate(s.as_bytes());
    }

    #[test]
    fn mutated_names_are_rejected(
        name in proptest::collection::vec(any::<u8>(), 1..=255),
        m in mutation(),
        other_iv in any::<bool>(),
    ) {
        let nc = name_cipher();
        let iv = [5u8; 16];
        let enc = nc.encrypt(&iv, &name);
        // Keep the mutated text a string; only the base64 decoder sees bytes.
        let bad = String::from_utf8_lossy(&mutate(enc.as_bytes(), &m, 0, 16)).into_owned();
        let bad_iv = if other_iv { [6u8; 16] } else { iv };
        let got = nc.decrypt(&bad_iv, &bad);
        if bad == enc && bad_iv == iv {
            prop_assert_eq!(must(got)?, name);
        } else {
            prop_assert_eq!(got, Err(NameError::Undecryptable), "{:?} {:?}", bad, m);
        }
    }

    #[test]
    fn validate_matches_the_rules(name in proptest::collection::vec(any::<u8>(), 0..300)) {
        let ok = !name.is_empty()
            && name != b"."
            && name != b".."
            && !name.contains(&b'/')
            && !name.contains(&0)
            && name.len() <= 255;
        prop_assert_eq!(names::validate(&name).is_ok(), ok);
    }

    #[test]
    fn symlink_targets_and_xattrs_round_trip_and_reject_changes(
        target in proptest::collection::vec(any::<u8>(), 1..600),
        m in mutation(),
        junk in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let lc = LinkCipher::new(&SymKey::from_bytes([4; 32]));
        let disk = lc.seal_target(&target).unwrap();
        prop_assert_eq!(lc.open_target(disk.as_bytes()).unwrap().to_vec(), target.clone());
        let bad = mutate(disk.as_bytes(), &m, 0, 16);
        if bad != disk.as_bytes() {
            prop_assert!(lc.open_target(&bad).is_none());
        }
        prop_assert!(lc.open_target(&junk).is_none());

        let xname = lc.xattr_name(&target[..target.len().min(200)]);
        prop_assert_eq!(lc.xattr_plain_name(&xname).unwrap(), target[..target.len().min(200)].to_vec());
        let value = lc.seal_xattr(&xname, &target);
        prop_assert_eq!(lc.open_xattr(&xname, &value).unwrap().to_vec(), target.clone());
        let bad = mutate(&value, &m, 0, 16);
        if bad != value {
            prop_assert!(lc.open_xattr(&xname, &bad).is_none());
        }
        prop_assert!(lc.open_xattr(&xname, &junk).is_none());
        // A value moved to another attribute name does not open.
        let other = lc.xattr_name(b"other");
        prop_assert!(other == xname || lc.open_xattr(&other, &value).is_none());
    }
}
