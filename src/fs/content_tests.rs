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

/// A streaming read (a run of pages decrypted straight into the reply) that
/// meets a tampered page fails whole; the pages before it still read.
#[test]
fn a_tampered_page_fails_a_streaming_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("blob");
    let cache = PageCache::new(8 * PAGE_SIZE);
    let mut st = open_state(&path, &cache);
    let data: Vec<u8> = (0..100 * PAGE_SIZE as usize)
        .map(|i| (i % 241) as u8)
        .collect();
    st.write(0, &data, &cache).unwrap();
    st.write_back(&keys(), &cache).unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[offsets::page_blob_offset(60) as usize + 100] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let st = open_state(&path, &cache);
    let len = (50 * PAGE_SIZE) as u32;
    assert!(st.read(3, len, &cache).unwrap() == data[3..3 + len as usize]);
    let err = st.read(40 * PAGE_SIZE + 5, len, &cache).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO));
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

fn read_only(path: &std::path::Path) -> File {
    File::options().read(true).open(path).unwrap()
}

fn read_write(path: &std::path::Path) -> File {
    File::options().read(true).write(true).open(path).unwrap()
}

/// Large appends at a page-aligned end are sealed straight onto the blob (valid
/// on disk after each one); anything else is buffered. Mixed at random with
/// buffered writes, truncations and reopens, the file always matches a model.
#[test]
fn appends_through_match_a_model() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("blob");
    let cache = PageCache::new(16 * PAGE_SIZE);
    let page = PAGE_SIZE as usize;
    for seed in 0..6u64 {
        let _ = std::fs::remove_file(&path);
        let mut rng = Lcg(seed);
        let mut model: Vec<u8> = Vec::new();
        let mut st = open_state(&path, &cache);
        let mut through = 0;
        for step in 0..40 {
            let byte = (step % 250 + 1) as u8;
            match rng.next(6) {
                0..=2 => {
                    let len = 16 * page + rng.next(40 * PAGE_SIZE) as usize;
                    let data: Vec<u8> = (0..len).map(|i| byte ^ (i % 7) as u8).collect();
                    let at = model.len() as u64;
                    // The batch before this one settles first: only then is
                    // the state clean if nothing else is pending.
                    st.settle_append(&cache).unwrap();
                    let eligible = !st.is_dirty() && at.is_multiple_of(PAGE_SIZE);
                    let went = st.append_through(at, &data, &keys(), &cache).unwrap();
                    assert_eq!(went, eligible, "seed {seed} step {step}");
                    if !went {
                        st.write(at, &data, &cache).unwrap();
                    }
                    model.extend_from_slice(&data);
                    if went {
                        through += 1;
                        // In flight until settled (dirty, so a commit waits).
                        assert!(st.is_dirty());
                        assert_eq!(st.size, model.len() as u64);
                        st.settle_append(&cache).unwrap();
                        assert!(!st.is_dirty());
                        assert_eq!(on_disk(&path), model, "seed {seed} step {step}");
                    }
                }
                3 => {
                    let off = rng.next(model.len() as u64 + 1);
                    let len = rng.next(3 * PAGE_SIZE) as usize + 1;
                    st.write(off, &vec![byte; len], &cache).unwrap();
                    let end = off as usize + len;
                    model.resize(model.len().max(end), 0);
                    model[off as usize..end].fill(byte);
                }
                4 => {
                    // Mostly back to a page boundary, so that appends go through.
                    let size = rng.next(model.len() as u64 + 1) / PAGE_SIZE * PAGE_SIZE;
                    st.truncate(size, &cache).unwrap();
                    model.truncate(size as usize);
                    st.write_back(&keys(), &cache).unwrap();
                }
                _ => {
                    st.write_back(&keys(), &cache).unwrap();
                    assert_eq!(on_disk(&path), model, "seed {seed} step {step}");
                    st = open_state(&path, &cache);
                }
            }
            st.settle_append(&cache).unwrap();
            let got = st.read(0, model.len() as u32 + 10, &cache).unwrap();
            assert!(got == model, "seed {seed} step {step}: read differs");
        }
        st.write_back(&keys(), &cache).unwrap();
        assert_eq!(on_disk(&path), model, "seed {seed} at the end");
        assert!(through > 0, "seed {seed}: no append went through");
    }
}

/// Append `len` bytes through (it must go through) to `of` and to `model`.
fn st_append(of: &OpenFile, model: &mut Vec<u8>, len: usize, cache: &PageCache) {
    let salt = model.len() / 4096;
    let data: Vec<u8> = (0..len).map(|i| (i * 31 + salt) as u8).collect();
    let at = model.len() as u64;
    let mut st = of.state.write();
    assert!(
        st.append_through(at, &data, &keys(), cache).unwrap(),
        "at {at}"
    );
    model.extend_from_slice(&data);
}

/// Appends that follow each other without anything settling them but the
/// next append (a streaming writer) leave the blob whole; so does dropping the
/// state with a batch still in flight (it waits for it). Read through
/// `OpenFile::settled`, the file is the model at every point.
#[test]
fn appends_in_flight_settle_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("blob");
    let cache = PageCache::new(16 * PAGE_SIZE);
    for seed in 0..4u64 {
        std::fs::write(&path, b"").unwrap();
        let mut rng = Lcg(seed);
        let mut model: Vec<u8> = Vec::new();
        let of = OpenFile::new(1, "v".into(), open_state(&path, &cache));
        for step in 0..30 {
            // Whole pages, so that each append goes through.
            let pages = 16 + rng.next(48) as usize;
            st_append(&of, &mut model, pages * PAGE_SIZE as usize, &cache);
            if rng.next(4) == 0 {
                let st = of.settled(&cache).unwrap();
                let got = st.read(0, model.len() as u32, &cache).unwrap();
                assert!(got == model, "seed {seed} step {step}: read differs");
            }
        }
        // Dropped with a long batch in flight (8 MiB takes milliseconds to
        // seal): the drop waits, and the blob on disk is whole.
        st_append(&of, &mut model, 2048 * PAGE_SIZE as usize, &cache);
        drop(of);
        assert!(on_disk(&path) == model, "seed {seed}: blob differs");
    }
}

/// A write-back of a new file that fails (here: the descriptor cannot write;
/// in life: a full disk) keeps everything, and the retry writes the header too.
#[test]
fn a_failed_first_write_back_is_retried_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("blob");
    std::fs::File::create(&path).unwrap();
    let cache = PageCache::new(64 * PAGE_SIZE);
    let data: Vec<u8> = (0..5 * PAGE_SIZE as usize + 9)
        .map(|i| (i % 13) as u8)
        .collect();
    let mut st = FileState::open(read_only(&path), &keys(), &cache).unwrap();
    st.write(0, &data, &cache).unwrap();
    assert!(st.write_back(&keys(), &cache).is_err());
    st.replace_file(read_write(&path), true);
    st.write_back(&keys(), &cache).unwrap();
    assert_eq!(on_disk(&path), data);
}

/// An append that cannot be written is kept as dirty pages; nothing is lost,
/// and the write-back that follows reseals the former last page as well.
#[test]
fn a_failed_append_through_is_kept_and_written_back_later() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("blob");
    let cache = PageCache::new(64 * PAGE_SIZE);
    let first: Vec<u8> = (0..20 * PAGE_SIZE as usize)
        .map(|i| (i % 11) as u8)
        .collect();
    let more: Vec<u8> = (0..30 * PAGE_SIZE as usize + 5)
        .map(|i| (i % 17) as u8)
        .collect();
    for existing in [&[][..], &first[..]] {
        std::fs::write(&path, b"").unwrap();
        let mut st = open_state(&path, &cache);
        assert!(st.append_through(0, existing, &keys(), &cache).unwrap() || existing.is_empty());
        st.settle_append(&cache).unwrap();
        let mut st2 = FileState::open(read_only(&path), &keys(), &cache).unwrap();
        let at = existing.len() as u64;
        assert!(st2.append_through(at, &more, &keys(), &cache).unwrap());
        // The failure shows when the batch settles: it is taken in as dirty
        // pages, not reported, so the write that made it stands.
        st2.settle_append(&cache).unwrap();
        assert!(st2.is_dirty());
        let model = [existing, &more[..]].concat();
        assert_eq!(st2.read(0, model.len() as u32, &cache).unwrap(), model);
        st2.replace_file(read_write(&path), true);
        st2.write_back(&keys(), &cache).unwrap();
        assert_eq!(on_disk(&path), model);
        drop(st);
    }
}

/// Opened with the blob that was just read, a file serves its pages from the
/// cache without touching the descriptor; a page that does not authenticate is
/// not cached from it, and reading it still fails; a blob of the wrong length
/// is ignored.
#[test]
fn opened_with_its_blob_a_file_reads_from_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("blob");
    let cache = PageCache::new(64 * PAGE_SIZE);
    let data: Vec<u8> = (0..3 * PAGE_SIZE as usize + 100)
        .map(|i| (i % 7) as u8)
        .collect();
    let mut st = open_state(&path, &cache);
    st.write(0, &data, &cache).unwrap();
    st.write_back(&keys(), &cache).unwrap();
    let blob = std::fs::read(&path).unwrap();
    // The descriptor is of an empty file of the same length: every byte read
    // comes from the blob handed over.
    let other = dir.path().join("other");
    std::fs::write(&other, vec![0u8; blob.len()]).unwrap();
    let st = FileState::open_with(read_only(&other), Some(blob.clone()), &keys(), &cache).unwrap();
    assert_eq!(st.read(0, data.len() as u32, &cache).unwrap(), data);
    // Page 1 tampered in the handed-over blob: not cached; the disk (zeros) fails.
    let mut bad = blob.clone();
    bad[offsets::page_blob_offset(1) as usize + 40] ^= 1;
    let st = FileState::open_with(read_only(&other), Some(bad), &keys(), &cache).unwrap();
    assert_eq!(st.read(0, 10, &cache).unwrap(), data[..10]);
    let err = st.read(PAGE_SIZE, 10, &cache).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO));
    // A blob of another length than the file's is not used.
    let st = FileState::open_with(
        read_only(&path),
        Some(blob[..100].to_vec()),
        &keys(),
        &cache,
    )
    .unwrap();
    assert_eq!(st.read(0, data.len() as u32, &cache).unwrap(), data);
}

/// A streaming append starts the write-out of exactly the whole windows it
/// completes: each window once, none before its last byte is written.
#[test]
fn write_out_covers_each_completed_window_once() {
    use super::inflight::{write_out_range, WRITE_OUT as W};
    assert_eq!(write_out_range(0, W - 1), (0, 0));
    assert_eq!(write_out_range(0, W), (0, W));
    assert_eq!(write_out_range(W - 5, W + 5), (0, W));
    assert_eq!(write_out_range(W, 2 * W - 1), (0, 0));
    assert_eq!(write_out_range(W + 1, 3 * W + 7), (W, 3 * W));
    // Batches of assorted sizes from 0 to 40 windows: every window is covered
    // exactly once, by the batch that writes its last byte.
    let mut rng = Lcg(9);
    let mut covered = vec![0u32; 41];
    let mut at = 0;
    while at < 40 * W {
        let to = (at + 1 + rng.next(3 * W)).min(40 * W);
        let (lo, hi) = write_out_range(at, to);
        for k in lo / W..hi / W {
            assert!(
                (k + 1) * W > at && (k + 1) * W <= to,
                "window {k} from {at}..{to}"
            );
            covered[k as usize] += 1;
        }
        at = to;
    }
    assert!(covered[..40].iter().all(|&c| c == 1), "{covered:?}");
}

/// Disk blocks a file takes, in bytes.
fn allocated(path: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).unwrap().blocks() * 512
}

/// Extending a file leaves holes: no disk for the gap, zeros to read, the
/// blob valid for the whole-file reader; filling and punching them keeps it
/// valid; a zeroed sealed page or a filled hole is an error, not data.
#[test]
fn extensions_and_punches_are_holes_and_zeroed_pages_fail() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("blob");
    let cache = PageCache::new(8 * PAGE_SIZE);
    let mut st = open_state(&path, &cache);
    let mut model = vec![5u8; 5000];
    st.write(0, &model, &cache).unwrap();
    st.truncate(1 << 30, &cache).unwrap();
    st.write(300 * PAGE_SIZE + 7, b"middle", &cache).unwrap();
    st.write_back(&keys(), &cache).unwrap();
    assert!(allocated(&path) < 1 << 20, "{} bytes", allocated(&path));
    assert_eq!(st.read(1 << 29, 100, &cache).unwrap(), vec![0u8; 100]);
    assert_eq!(
        st.read(300 * PAGE_SIZE, 13, &cache).unwrap(),
        b"\0\0\0\0\0\0\0middle"
    );
    assert_eq!(st.version, crate::format::blob::VERSION_HOLES);
    // Reopened (the map found from the file system's holes), then changed.
    let mut st = open_state(&path, &cache);
    assert_eq!(st.read(4000, 2000, &cache).unwrap()[..1000], model[4000..]);
    st.truncate(400 * PAGE_SIZE + 10, &cache).unwrap();
    st.write(2 * PAGE_SIZE, b"fill", &cache).unwrap();
    st.zero_range(300 * PAGE_SIZE, PAGE_SIZE, &keys(), &cache)
        .unwrap();
    st.write_back(&keys(), &cache).unwrap();
    model.resize(400 * PAGE_SIZE as usize + 10, 0);
    model[2 * PAGE_SIZE as usize..][..4].copy_from_slice(b"fill");
    assert_eq!(on_disk(&path), model);
    let st = open_state(&path, &cache);
    assert_eq!(st.read(0, model.len() as u32, &cache).unwrap(), model);
    drop(st);

    let good = std::fs::read(&path).unwrap();
    let slot =
        |i: u64| offsets::page_blob_offset(i) as usize..offsets::page_blob_offset(i + 1) as usize;
    for (what, tamper) in [
        ("page 0 zeroed", slot(0)),
        ("page 2 zeroed", slot(2)),
        ("page 1 zeroed", slot(1)),
    ] {
        let mut bad = good.clone();
        bad[tamper.clone()].fill(0);
        std::fs::write(&path, &bad).unwrap();
        let st = open_state(&path, &cache);
        let err = st.read(tamper.start as u64 / CIPHER_PAGE * PAGE_SIZE, 10, &cache);
        let err = err.expect_err(what);
        assert_eq!(err.raw_os_error(), Some(libc::EIO), "{what}");
        let k = keys();
        assert!(blob::open(|g| k.get(g), &bad).is_err(), "{what}");
    }
    let mut bad = good.clone();
    bad[slot(100)][9] = 1;
    std::fs::write(&path, &bad).unwrap();
    let st = open_state(&path, &cache);
    assert!(
        st.read(100 * PAGE_SIZE, 10, &cache).is_err(),
        "a filled hole"
    );
}

/// A shrinking truncation that fails (its new last page does not
/// authenticate) changes nothing: size, dirty pages and content stay.
#[test]
fn a_failed_shrinking_truncation_is_rolled_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("blob");
    let cache = PageCache::new(8 * PAGE_SIZE);
    let mut st = open_state(&path, &cache);
    let data: Vec<u8> = (0..6 * PAGE_SIZE as usize)
        .map(|i| (i % 199) as u8)
        .collect();
    st.write(0, &data, &cache).unwrap();
    st.write_back(&keys(), &cache).unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[offsets::page_blob_offset(2) as usize + 50] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let mut st = open_state(&path, &cache);
    st.write(5 * PAGE_SIZE, b"pending", &cache).unwrap();
    let err = st.resize(2 * PAGE_SIZE + 100, &keys(), &cache).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO));
    assert_eq!(st.size, data.len() as u64);
    let mut want = data.clone();
    want[5 * PAGE_SIZE as usize..][..7].copy_from_slice(b"pending");
    assert_eq!(
        st.read(5 * PAGE_SIZE, 10, &cache).unwrap(),
        want[5 * PAGE_SIZE as usize..][..10]
    );
    assert_eq!(st.read(0, 100, &cache).unwrap(), want[..100]);
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
}
