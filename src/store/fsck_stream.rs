//! `pkfs fsck` of a big blob in the work tree without reading it into
//! memory: its git id hashed as a stream that skips the file's holes
//! (`seal::stream_blob`), and its pages checked one slot at a time, a slot
//! that lies wholly in a hole of the backing file taken as a hole slot
//! unread (it reads as zeros). The same rules as [`super::verify_blob`]
//! (`format::blob`, holes in `format::holes`).

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;

use git2::Oid;

use super::BlobProblem;
use crate::crypto::Keychain;
use crate::format::blob::{BlobError, FileCipher, Header, VERSION_HOLES};
use crate::format::holes::is_hole;
use crate::format::offsets;

/// A blob's file id, or what is wrong with it (as `verify_blob`).
type Verdict = Result<Option<[u8; 16]>, BlobProblem>;

/// Work-tree files at least this long are checked as streams.
pub(super) const STREAM_MIN: u64 = 64 << 20;

/// The git id of `file` (`len` bytes), and its blob check.
pub(super) fn check(keys: &Keychain, file: &File, len: u64) -> io::Result<(Oid, Verdict)> {
    let mut buf = vec![0u8; 1 << 20];
    let id = crate::store::seal::stream_blob(file, len, &mut buf, None, &mut |_| Ok(()))?;
    Ok((id, verify(keys, file, len)?))
}

/// Where the next data at or after `at` starts (`end` if none is left).
fn next_data(file: &File, at: u64, end: u64) -> u64 {
    let Ok(off) = libc::off_t::try_from(at) else {
        return at;
    };
    // SAFETY: a plain system call on a valid descriptor; the result is checked.
    let r = unsafe { libc::lseek(file.as_raw_fd(), off, libc::SEEK_DATA) };
    if r >= 0 {
        (r as u64).max(at)
    } else if io::Error::last_os_error().raw_os_error() == Some(libc::ENXIO) {
        end
    } else {
        at
    }
}

fn verify(keys: &Keychain, file: &File, len: u64) -> io::Result<Verdict> {
    let Some(plain) = offsets::plain_len(len) else {
        return Ok(Err((
            "truncated",
            None,
            format!("blob length {len} is impossible (cut inside the header or a page)"),
        )));
    };
    let mut head = [0u8; offsets::HEADER_LEN as usize];
    file.read_exact_at(&mut head, 0)?;
    let header = match Header::decode(&head) {
        Ok(h) => h,
        Err(e) => return Ok(Err(("bad-header", None, e.to_string()))),
    };
    let Some(key) = keys.get(header.generation) else {
        return Ok(Err((
            "bad-header",
            None,
            BlobError::UnknownGeneration(header.generation).to_string(),
        )));
    };
    let fc = FileCipher::new(key, &header);
    let count = offsets::page_count(plain);
    let holes = head[4] == VERSION_HOLES;
    let mut slot = vec![0u8; offsets::CIPHER_PAGE as usize];
    let mut data_at = 0u64;
    let mut run_start = None;
    let mut failed: Vec<u64> = Vec::new();
    for i in 0..count {
        let start = offsets::page_blob_offset(i);
        let n = (offsets::page_plain_len(plain, i) + offsets::PAGE_OVERHEAD) as usize;
        let last = i + 1 == count;
        if holes && !last {
            if data_at <= start {
                data_at = next_data(file, start, len);
            }
            if data_at >= start + n as u64 {
                run_start.get_or_insert(i);
                continue;
            }
        }
        let cipher = &mut slot[..n];
        file.read_exact_at(cipher, start)?;
        if holes && !last && is_hole(cipher) {
            run_start.get_or_insert(i);
            continue;
        }
        let from = run_start.take().unwrap_or(i);
        if fc.open_page_after(i, last, i - from, cipher).is_err() {
            failed.extend(from..=i);
        }
    }
    Ok(match failed.first() {
        None => Ok(Some(header.file_id)),
        Some(&first) => Err((
            "tag-mismatch",
            Some(first),
            format!(
                "{} of {count} page(s) do not authenticate (modified, moved, cut, or a damaged header)",
                failed.len()
            ),
        )),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SymKey;
    use crate::format::offsets::{CIPHER_PAGE, HEADER_LEN, PAGE_SIZE};

    #[test]
    fn holes_pass_unread_and_a_zeroed_page_or_a_filled_hole_fails() {
        let key = SymKey::from_bytes([5; 32]);
        let keys = Keychain::new(vec![(0, SymKey::from_bytes([5; 32]))]).unwrap();
        let header = Header::new(0);
        let fc = FileCipher::new(&key, &header);
        // Pages 0 and 9 sealed, 1-8 holes (9 sealed after a run of 8).
        let mut blob = header.encode().to_vec();
        blob[4] = VERSION_HOLES;
        blob.extend(fc.seal_page_after(0, false, 0, &[7; 12], &[1u8; PAGE_SIZE as usize]));
        blob.resize((HEADER_LEN + 9 * CIPHER_PAGE) as usize, 0);
        blob.extend(fc.seal_page_after(9, true, 8, &[8; 12], b"tail"));
        let dir = tempfile::tempdir().unwrap();
        let check_bytes = |bytes: &[u8], sparse: bool| {
            let p = dir.path().join("b");
            let _ = std::fs::remove_file(&p);
            let f = File::create_new(&p).unwrap();
            if sparse {
                // The hole slots left as holes of the file.
                f.write_all_at(&bytes[..(HEADER_LEN + CIPHER_PAGE) as usize], 0)
                    .unwrap();
                let tail = (HEADER_LEN + 9 * CIPHER_PAGE) as usize;
                f.write_all_at(&bytes[tail..], tail as u64).unwrap();
            } else {
                f.write_all_at(bytes, 0).unwrap();
            }
            let (id, v) = check(&keys, &f, bytes.len() as u64).unwrap();
            assert_eq!(id, Oid::hash_object(git2::ObjectType::Blob, bytes).unwrap());
            v
        };
        assert_eq!(check_bytes(&blob, true).unwrap(), Some(header.file_id));
        assert_eq!(check_bytes(&blob, false).unwrap(), Some(header.file_id));
        let mut filled = blob.clone();
        filled[(HEADER_LEN + 4 * CIPHER_PAGE) as usize + 100] = 1;
        assert_eq!(check_bytes(&filled, false).unwrap_err().0, "tag-mismatch");
        let mut zeroed = blob.clone();
        zeroed[HEADER_LEN as usize..(HEADER_LEN + CIPHER_PAGE) as usize].fill(0);
        assert_eq!(check_bytes(&zeroed, false).unwrap_err().0, "tag-mismatch");
    }
}
