//! Property tests of the on-disk parsers: content blobs and their page
//! arithmetic, encrypted names, symlink targets and xattrs, and the metadata
//! file. Whatever bytes are on disk, a parser returns an error or the exact
//! plaintext that was sealed; it never panics and never yields other plaintext.
//!
//! Running a longer pass
//! ---------------------
//! Every property runs 256 cases by default (a few seconds in debug). The
//! `PROPTEST_CASES` environment variable raises (or lowers) that for every
//! `prop_*` suite; the RSA-heavy metadata properties run a quarter of it:
//!
//! ```text
//! PROPTEST_CASES=20000 cargo test --release --test prop_format --test prop_protocol
//! ```
//!
//! A failure prints the minimal input that proptest shrank it to, and the seed
//! is saved under `tests/proptest-regressions/` so the next run tries it first
//! (commit that file with the fix). `PROPTEST_RNG_SEED=N` replays one run.

mod common;

use std::collections::BTreeMap;

use pkfs::crypto::aead::Gcm;
use pkfs::crypto::rsa::RootKeypair;
use pkfs::crypto::SymKey;
use pkfs::format::blob::{self, BlobError, Header};
use pkfs::format::links::LinkCipher;
use pkfs::format::names::{self, DiskName, EntryKind, NameCipher, NameError};
use pkfs::format::offsets::{self, CIPHER_PAGE, HEADER_LEN, PAGE_OVERHEAD, PAGE_SIZE};
use pkfs::vault::metadata::{self, Table, VaultRecord, WrappedKey};
use pkfs::Error;
use proptest::prelude::*;
use proptest::sample::Index;

/// `PROPTEST_CASES` (default 256), divided by `divisor` for costly properties.
fn config(divisor: u32) -> ProptestConfig {
    let base = ProptestConfig::default();
    ProptestConfig {
        cases: (base.cases / divisor).max(8),
        ..base
    }
}

/// A test-case failure for an unexpected error (the error types here are not
/// all `std::error::Error`, so `?` alone does not convert them).
fn must<T, E: std::fmt::Debug>(r: Result<T, E>) -> Result<T, TestCaseError> {
    r.map_err(|e| TestCaseError::fail(format!("unexpected error: {e:?}")))
}

/// `len` pseudo-random bytes from `seed` (xorshift64*): cheap even in debug,
/// and proptest shrinks the seed and the length instead of every byte.
fn bytes(seed: u64, len: usize) -> Vec<u8> {
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
fn plain_size() -> impl Strategy<Value = usize> {
    prop_oneof![
        1usize..=64,
        4090usize..=4100,
        8186usize..=8198,
        1usize..=4 * 4096 + 100,
    ]
}

/// A change to a byte string.
#[derive(Debug, Clone)]
enum Mutation {
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

fn mutation() -> impl Strategy<Value = Mutation> {
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
fn mutate(v: &[u8], m: &Mutation, skip: usize, chunk: usize) -> Vec<u8> {
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

// ---------------------------------------------------------------------------
// The metadata file. The RSA private-key operation makes these the slowest.

fn root() -> &'static RootKeypair {
    static ROOT: std::sync::OnceLock<RootKeypair> = std::sync::OnceLock::new();
    ROOT.get_or_init(|| RootKeypair::from_pkcs8_pem(&common::root_key_pem(0)).unwrap())
}

fn table() -> impl Strategy<Value = Table> {
    let record = (
        "[1-9A-HJ-NP-Za-km-z]{16,22}",
        vault_name(),
        any::<i64>(),
        proptest::collection::vec((any::<u32>(), "[A-Za-z0-9+/=]{0,20}"), 0..3),
        proptest::collection::btree_map(any::<String>(), any::<String>(), 0..3),
    )
        .prop_map(|(id, name, created, keys, settings)| VaultRecord {
            id,
            name,
            created,
            keys: keys
                .into_iter()
                .map(|(generation, wrapped)| WrappedKey {
                    generation,
                    wrapped,
                })
                .collect(),
            settings,
        });
    (any::<u32>(), proptest::collection::vec(record, 0..4))
        .prop_map(|(version, vaults)| Table { version, vaults })
}

/// The Base58 alphabet (Bitcoin's): vault ids are Base58 of 16 random bytes.
const BASE58: &str = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

/// A name `vault create` accepts.
fn vault_name() -> impl Strategy<Value = String> {
    "[^/:\\x00]{1,60}".prop_filter("not . or ..", |n| n != "." && n != "..")
}

/// Vault ids, good and hostile: paths out of `vaults/`, separators, anything.
fn any_vault_id() -> impl Strategy<Value = String> {
    prop_oneof![
        "[1-9A-HJ-NP-Za-km-z]{1,50}",
        any::<String>(),
        "(\\.\\./){1,4}[a-z]{0,8}",
        "/[a-z/]{0,20}",
        "[a-zA-Z0-9]{1,8}/[a-zA-Z0-9]{1,8}",
        Just(String::new()),
        Just("..".to_string()),
        Just(".".to_string()),
    ]
}

fn is_corrupt(r: &Result<Table, Error>) -> bool {
    matches!(r, Err(Error::Corrupt { .. }))
}

/// A metadata file whose envelope holds `body`, sealed with a key wrapped under
/// the node's public key: what anyone who can read `root.pub` can write.
fn metadata_with_body(body: &[u8]) -> Vec<u8> {
    let key = SymKey::from_bytes([11; 32]);
    let wrapped = root().public().wrap_key(&key);
    let mut out = metadata::MAGIC.to_vec();
    out.push(metadata::VERSION);
    out.extend_from_slice(&(wrapped.len() as u16).to_be_bytes());
    out.extend_from_slice(&wrapped);
    let env = Gcm::new(&key).seal_envelope(&out, body);
    out.extend_from_slice(&env);
    out
}

proptest! {
    #![proptest_config(config(4))]

    #[test]
    fn metadata_round_trip(t in table()) {
        let sealed = metadata::seal(root().public(), &t);
        prop_assert_eq!(must(metadata::open(root(), &sealed))?, t);
    }

    #[test]
    fn mutated_metadata_is_rejected(t in table(), m in mutation()) {
        let sealed = metadata::seal(root().public(), &t);
        // Header, wrapped key, then the envelope in 64-byte chunks.
        let bad = mutate(&sealed, &m, 11 + 512, 64);
        let got = metadata::open(root(), &bad);
        if bad == sealed {
            prop_assert_eq!(must(got)?, t);
        } else {
            prop_assert!(is_corrupt(&got), "{:?}: {:?}", m, got);
        }
    }

    #[test]
    fn arbitrary_metadata_bytes_are_rejected(
        raw in proptest::collection::vec(any::<u8>(), 0..700),
        n in any::<u16>(),
        well_formed_header in any::<bool>(),
    ) {
        let mut file = raw.clone();
        if well_formed_header {
            // Past the magic and version checks, into the length and RSA paths.
            let mut head = metadata::MAGIC.to_vec();
            head.push(metadata::VERSION);
            head.extend_from_slice(&n.to_be_bytes());
            file.splice(0..0, head);
        }
        prop_assert!(is_corrupt(&metadata::open(root(), &file)));
    }

    #[test]
    fn authenticated_but_hostile_tables_are_refused_not_panicked_on(
        t in table(),
        m in mutation(),
        raw in proptest::collection::vec(any::<u8>(), 0..100),
    ) {
        // The envelope authenticates; only the JSON parser stands in the way.
        let json = serde_json::to_vec(&t).unwrap();
        let changed = mutate(&json, &m, 0, 8);
        match metadata::open(root(), &metadata_with_body(&changed)) {
            Ok(parsed) => prop_assert_eq!(
                serde_json::from_slice::<Table>(&changed).ok(),
                Some(parsed)
            ),
            Err(e) => prop_assert!(matches!(e, Error::Corrupt { .. }), "{}", e),
        }
        match metadata::open(root(), &metadata_with_body(&raw)) {
            Ok(parsed) => prop_assert_eq!(serde_json::from_slice::<Table>(&raw).ok(), Some(parsed)),
            Err(e) => prop_assert!(matches!(e, Error::Corrupt { .. }), "{}", e),
        }
    }

    #[test]
    fn vault_ids_and_names_in_the_table_are_checked(
        id in any_vault_id(),
        name in prop_oneof![vault_name(), any::<String>()],
    ) {
        // A table anyone with `root.pub` can write: an id is used as a path
        // component under `vaults/` (and removed by `vault delete`).
        let t = Table {
            version: 1,
            vaults: vec![VaultRecord {
                id: id.clone(),
                name: name.clone(),
                created: 0,
                keys: vec![],
                settings: BTreeMap::new(),
            }],
        };
        let got = metadata::open(root(), &metadata_with_body(&serde_json::to_vec(&t).unwrap()));
        let id_ok = (1..=44).contains(&id.len()) && id.chars().all(|c| BASE58.contains(c));
        let name_ok = names::validate(name.as_bytes()).is_ok();
        if id_ok && name_ok {
            prop_assert_eq!(must(got)?, t);
            // One plain path component: the vault stays inside vaults/.
            let p = std::path::Path::new("vaults").join(&id);
            prop_assert_eq!(p.components().count(), 2);
            prop_assert!(matches!(p.components().nth(1), Some(std::path::Component::Normal(_))));
        } else {
            prop_assert!(is_corrupt(&got), "{:?} {:?}: {:?}", id, name, got);
        }
        prop_assert_eq!(metadata::is_vault_id(&id), id_ok);
    }
}

#[test]
fn deeply_nested_json_in_the_table_is_refused() {
    // serde_json's recursion limit, not the stack, ends this.
    let mut body = Vec::new();
    body.extend_from_slice(b"{\"version\":1,\"vaults\":");
    body.extend(std::iter::repeat_n(b'[', 100_000));
    let got = metadata::open(root(), &metadata_with_body(&body));
    assert!(matches!(got, Err(Error::Corrupt { .. })), "{got:?}");
    let mut settings = BTreeMap::new();
    settings.insert("k".to_string(), "v".to_string());
    let ok = Table {
        version: 1,
        vaults: vec![VaultRecord {
            id: "a".into(),
            name: "n".into(),
            created: 0,
            keys: vec![],
            settings,
        }],
    };
    let body = serde_json::to_vec(&ok).unwrap();
    assert_eq!(
        metadata::open(root(), &metadata_with_body(&body)).unwrap(),
        ok
    );
}

#[test]
fn a_forged_vault_id_cannot_point_vault_delete_outside_the_home() {
    // Node fixtures use test root key 0, the key `metadata_with_body` wraps under.
    let node = common::Node::init();
    let victim = node.scratch().join("victim");
    std::fs::create_dir_all(&victim).unwrap();
    std::fs::write(victim.join("keep"), b"precious").unwrap();
    for id in [
        victim.to_str().unwrap().to_string(),
        "../../victim".to_string(),
    ] {
        let t = Table {
            version: 1,
            vaults: vec![VaultRecord {
                id: id.clone(),
                name: "evil".into(),
                created: 0,
                keys: vec![],
                settings: BTreeMap::new(),
            }],
        };
        let forged = metadata_with_body(&serde_json::to_vec(&t).unwrap());
        std::fs::write(node.home.join("metadata"), forged).unwrap();
        node.fail(
            common::ExitCode::Corrupt,
            ["vault", "delete", "--yes", "evil"],
        );
        assert_eq!(
            std::fs::read(victim.join("keep")).unwrap(),
            b"precious",
            "id {id:?}"
        );
    }
}
