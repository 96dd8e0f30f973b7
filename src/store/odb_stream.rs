//! Blobs streamed out of the object database, never held whole: written
//! into the work tree with their holes kept (`version checkout`, `undo`), and
//! hashed (`fsck`).
//!
//! The hole slots of a version 2 blob (`format::holes`) are zeros in its git
//! object. Written out whole, a 1 GiB sparse file took 1 GiB of disk, and
//! reading the object as one buffer as much memory. Here the object is
//! streamed from the object database where it allows (loose objects; a packed
//! one is read whole), and every aligned 4 KiB block of it that is all zeros
//! is skipped instead of written. The file is given its full length at the
//! end, so the skipped blocks are holes of the backing file system and read
//! as the same zeros: the file's bytes are exactly the blob's, and a hole slot
//! (4124 bytes) always covers at least one whole block. The object is hashed
//! on the way and must be `id`, as libgit2 checks an object read whole.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;

use git2::{ObjectType, Oid, Repository};
use sha1::{Digest, Sha1};

/// Blocks looked at for zeros (the page size of the backing file systems).
const BLOCK: usize = 4096;
/// Bytes read at a time (a multiple of `BLOCK`).
const CHUNK: usize = 1 << 20;

fn git_io(e: git2::Error) -> io::Error {
    io::Error::other(e.message().to_string())
}

/// Write blob `id` into the new, empty `file`, its zero blocks left as holes.
/// Returns the bytes the file holds.
pub fn write_blob_sparse(repo: &Repository, id: Oid, file: &File) -> io::Result<u64> {
    let odb = repo.odb().map_err(git_io)?;
    let (len, at) = match odb.reader(id) {
        Ok((mut r, size, kind)) => {
            if kind != ObjectType::Blob {
                return Err(io::Error::other(format!("object {id} is not a blob")));
            }
            (size as u64, copy_sparse(&mut r, file, size as u64, id)?)
        }
        // Packed: read whole (libgit2 checks its hash).
        Err(_) => {
            let blob = repo.find_blob(id).map_err(git_io)?;
            let content = blob.content();
            let mut r = content;
            let n = content.len() as u64;
            (n, copy_sparse(&mut r, file, n, id)?)
        }
    };
    if at != len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("object {id} ends after {at} of its {len} bytes"),
        ));
    }
    file.set_len(len)?;
    Ok(len)
}

/// Does blob `id` hash to its id, read as a stream? `None` when the object
/// database cannot stream it (packed, or missing: read it whole);
/// `Some(Err)` when it is not a blob or cannot be read.
pub fn blob_hashes_to_id(odb: &git2::Odb<'_>, id: Oid) -> Option<Result<bool, String>> {
    // Only loose objects stream: a packed one is "not found" here too.
    let Ok((mut r, size, kind)) = odb.reader(id) else {
        return None;
    };
    if kind != ObjectType::Blob {
        return Some(Err("has the wrong type".to_string()));
    }
    let mut h = Sha1::new();
    h.update(format!("blob {size}\0").as_bytes());
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        match fill(&mut r, &mut buf) {
            Ok(0) => break,
            Ok(n) => {
                h.update(&buf[..n]);
                total += n as u64;
            }
            Err(e) => return Some(Err(format!("cannot be read ({e})"))),
        }
    }
    Some(Ok(
        total == size as u64 && h.finalize().as_slice() == id.as_bytes()
    ))
}

/// Fill `buf` from `r` as far as it goes; the count read (short only at the end).
pub fn fill(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Copy `r` (a blob of `len` bytes, `id`) into `file`, skipping zero blocks.
fn copy_sparse(r: &mut dyn Read, file: &File, len: u64, id: Oid) -> io::Result<u64> {
    let mut h = Sha1::new();
    h.update(format!("blob {len}\0").as_bytes());
    let mut buf = vec![0u8; CHUNK];
    let mut at = 0u64;
    loop {
        let n = fill(r, &mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        write_nonzero(file, &buf[..n], at)?;
        at += n as u64;
        if n < buf.len() {
            break;
        }
    }
    if at == len && h.finalize().as_slice() != id.as_bytes() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("object {id} does not hash to its id"),
        ));
    }
    Ok(at)
}

/// Write the runs of blocks of `data` that are not all zeros, at `at` on.
fn write_nonzero(file: &File, data: &[u8], at: u64) -> io::Result<()> {
    let zero = |b: &[u8]| b.iter().all(|x| *x == 0);
    let mut i = 0;
    while i < data.len() {
        let end = |i: usize| (i + BLOCK).min(data.len());
        if zero(&data[i..end(i)]) {
            i = end(i);
            continue;
        }
        let start = i;
        while i < data.len() && !zero(&data[i..end(i)]) {
            i = end(i);
        }
        file.write_all_at(&data[start..i], at + start as u64)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn zero_blocks_become_holes_and_the_bytes_are_the_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init(dir.path()).unwrap();
        let mut data = vec![0u8; 64 << 20];
        data[100..5000].fill(7);
        data[(40 << 20) + 3] = 1;
        data.extend_from_slice(b"tail");
        let id = repo.blob(&data).unwrap();
        for packed in [false, true] {
            if packed {
                // The object read whole: a packed one has no stream.
                let odb = repo.odb().unwrap();
                let mut pw = odb.packwriter().unwrap();
                let mut pb = repo.packbuilder().unwrap();
                pb.insert_object(id, None).unwrap();
                let mut pack = git2::Buf::new();
                pb.write_buf(&mut pack).unwrap();
                io::Write::write_all(&mut pw, &pack).unwrap();
                pw.commit().unwrap();
                let hex = id.to_string();
                std::fs::remove_file(repo.path().join("objects").join(&hex[..2]).join(&hex[2..]))
                    .unwrap();
            }
            let p = dir.path().join(format!("out{packed}"));
            let f = File::create_new(&p).unwrap();
            assert_eq!(write_blob_sparse(&repo, id, &f).unwrap(), data.len() as u64);
            drop(f);
            assert!(std::fs::read(&p).unwrap() == data);
            let used = std::fs::metadata(&p).unwrap().blocks() * 512;
            assert!(used < 1 << 20, "{used} bytes on disk");
        }
        // Not the object asked for: an error.
        let other = repo.blob(b"other").unwrap();
        let hex = other.to_string();
        let loose = repo.path().join("objects").join(&hex[..2]).join(&hex[2..]);
        let bytes = std::fs::read(&loose).unwrap();
        let fake = Oid::from_str("0123456789012345678901234567890123456789").unwrap();
        let fhex = fake.to_string();
        let fdir = repo.path().join("objects").join(&fhex[..2]);
        std::fs::create_dir_all(&fdir).unwrap();
        std::fs::write(fdir.join(&fhex[2..]), bytes).unwrap();
        let f = File::create_new(dir.path().join("bad")).unwrap();
        assert!(write_blob_sparse(&repo, fake, &f).is_err());
        let odb = repo.odb().unwrap();
        assert_eq!(blob_hashes_to_id(&odb, fake), Some(Ok(false)));
        assert_eq!(blob_hashes_to_id(&odb, other), Some(Ok(true)));
        // Packed (not streamed) or missing: left to a whole read.
        assert_eq!(blob_hashes_to_id(&odb, id), None);
        let missing = Oid::from_str("1123456789012345678901234567890123456789").unwrap();
        assert_eq!(blob_hashes_to_id(&odb, missing), None);
    }
}
