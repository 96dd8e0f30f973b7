use std::fs::OpenOptions;

use super::*;
use crate::crypto::SymKey;
use crate::format::blob;

fn keys() -> Keychain {
    Keychain::new(vec![(0, SymKey::from_bytes([3; 32]))]).unwrap()
}

fn open_state(path: &std::path::Path, cache: &PageCache) -> FileState {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .unwrap();
    FileState::open(f, &keys(), cache).unwrap()
}

/// What the blob on disk decrypts to.
fn on_disk(path: &std::path::Path) -> Vec<u8> {
    let k = keys();
    let bytes = std::fs::read(path).unwrap();
    blob::open(|g| k.get(g), &bytes)
        .unwrap()
        .map(|o| o.plaintext().to_vec())
        .unwrap_or_default()
}

/// A small deterministic generator, so failures replay.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

#[test]
fn random_operations_match_a_model() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("blob");
    // A tiny cache forces evictions and reloads from disk.
    let cache = PageCache::new(8 * PAGE_SIZE);
    for seed in 0..12u64 {
        let _ = std::fs::remove_file(&path);
        let mut rng = Lcg(seed);
        let mut model: Vec<u8> = Vec::new();
        let mut st = open_state(&path, &cache);
        for step in 0..150 {
            match rng.next(10) {
                0..=4 => {
                    let off = rng.next(6 * PAGE_SIZE);
                    let len = rng.next(2 * PAGE_SIZE) as usize + 1;
                    let byte = (step % 250 + 1) as u8;
                    let data = vec![byte; len];
                    st.write(off, &data, &cache).unwrap();
                    let end = off as usize + len;
                    if model.len() < end {
                        model.resize(end, 0);
                    }
                    model[off as usize..end].copy_from_slice(&data);
                }
                5 | 6 => {
                    let size = rng.next(7 * PAGE_SIZE);
                    st.truncate(size, &cache).unwrap();
                    model.resize(size as usize, 0);
                }
                7 => st.write_back(&keys(), &cache).unwrap(),
                8 => {
                    st.write_back(&keys(), &cache).unwrap();
                    assert_eq!(on_disk(&path), model, "seed {seed} step {step}");
                    st = open_state(&path, &cache);
                }
                _ => {
                    let off = rng.next(7 * PAGE_SIZE);
                    let len = rng.next(3 * PAGE_SIZE) as u32;
                    let got = st.read(off, len, &cache).unwrap();
                    let from = (off as usize).min(model.len());
                    let to = (off as usize + len as usize).min(model.len());
                    assert_eq!(got, model[from..to], "seed {seed} step {step}");
                }
            }
            assert_eq!(st.size, model.len() as u64);
        }
        st.write_back(&keys(), &cache).unwrap();
        assert_eq!(on_disk(&path), model, "seed {seed} at the end");
    }
}

#[test]
fn unchanged_pages_keep_their_ciphertext() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("blob");
    let cache = PageCache::new(64 * PAGE_SIZE);
    let mut st = open_state(&path, &cache);
    st.write(0, &vec![7u8; 10 * PAGE_SIZE as usize], &cache)
        .unwrap();
    st.write_back(&keys(), &cache).unwrap();
    let before = std::fs::read(&path).unwrap();
    st.write(5 * PAGE_SIZE + 3, b"x", &cache).unwrap();
    st.write_back(&keys(), &cache).unwrap();
    let after = std::fs::read(&path).unwrap();
    let changed: Vec<u64> = (0..10)
        .filter(|&i| {
            let r =
                offsets::page_blob_offset(i) as usize..offsets::page_blob_offset(i + 1) as usize;
            before[r.clone()] != after[r]
        })
        .collect();
    assert_eq!(changed, vec![5]);
    assert_eq!(before[..HEADER_LEN as usize], after[..HEADER_LEN as usize]);
}

#[test]
fn a_tampered_page_is_an_error_not_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("blob");
    let cache = PageCache::new(64 * PAGE_SIZE);
    let mut st = open_state(&path, &cache);
    st.write(0, &vec![1u8; 3 * PAGE_SIZE as usize], &cache)
        .unwrap();
    st.write_back(&keys(), &cache).unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[offsets::page_blob_offset(1) as usize + 40] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let st = open_state(&path, &cache);
    assert_eq!(st.read(0, 10, &cache).unwrap(), vec![1u8; 10]);
    let err = st.read(PAGE_SIZE, 10, &cache).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO));
    // A length no blob can have is refused at open.
    std::fs::write(&path, &bytes[..HEADER_LEN as usize + 5]).unwrap();
    let f = File::options().read(true).write(true).open(&path).unwrap();
    assert!(FileState::open(f, &keys(), &cache).is_err());
}

/// Long reads take the streaming path (runs of pages read and decrypted in
/// parallel, not cached) and long write-backs the parallel sealing; a truncation
/// not yet written back must still read as zeros there.
#[test]
fn long_runs_match_a_model() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("blob");
    let cache = PageCache::new(64 * PAGE_SIZE);
    let mut st = open_state(&path, &cache);
    let n = 300 * PAGE_SIZE as usize + 123;
    let mut model: Vec<u8> = (0..n).map(|i| (i % 251) as u8 + 1).collect();
    st.write(0, &model, &cache).unwrap();
    st.write_back(&keys(), &cache).unwrap();
    assert_eq!(on_disk(&path), model);
    // Cut mid-page, then grow again: bytes past the cut are zeros.
    let cut = 150 * PAGE_SIZE as usize + 77;
    st.truncate(cut as u64, &cache).unwrap();
    st.truncate(n as u64, &cache).unwrap();
    model[cut..].fill(0);
    for (off, len) in [
        (0usize, n),
        (5, 200 * 4096),
        (cut - 3, 40 * 4096),
        (4096 * 7, 1),
    ] {
        let got = st.read(off as u64, len as u32, &cache).unwrap();
        let end = (off + len).min(n);
        assert_eq!(got, model[off..end], "read {off}+{len}");
    }
    st.write_back(&keys(), &cache).unwrap();
    assert_eq!(on_disk(&path), model);
    let cache2 = PageCache::new(8 * PAGE_SIZE);
    let fresh = open_state(&path, &cache2);
    assert_eq!(fresh.read(0, n as u32, &cache2).unwrap(), model);
}
