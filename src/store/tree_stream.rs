//! Streaming reads and writes: a big file decrypted a batch of pages at a
//! time, so that `secret cat` of a file of any size runs in bounded memory,
//! and a file written from a stream one page at a time (`secret write`,
//! `secret add`), sealed into a temporary file that replaces the old one
//! atomically. A rewrite keeps the header and the ciphertext of every page
//! whose plaintext and final flag are unchanged (as `Tree::write` does), so
//! rewriting a file with its own content leaves its blob, and the history,
//! as they were.
//!
//! Integrity is what a whole read gets: when HEAD names the file's blob, the
//! seal vouches for it first, either by its saved tag list (then every page's
//! GCM tag must be the listed one, as the mount checks it: `format::tags`) or
//! by hashing it whole (which saves a tag list for the next read); in the
//! second case each batch is read and then the file's status is checked to be
//! the one that was hashed (size, mtime, ctime: a write in between changes
//! ctime before its data), before the batch is decrypted and given out. A
//! file below [`STREAM_MIN`] is read whole as before.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;

use zeroize::Zeroizing;

use super::{Kind, Tree};
use crate::error::{Error, Result};
use crate::format::blob::{FileCipher, Header};
use crate::format::holes;
use crate::format::offsets::{self, CIPHER_PAGE, HEADER_LEN, IV_LEN, PAGE_OVERHEAD, TAG_LEN};
use crate::store::dirfd::short;
use crate::store::seal::Vouched;
use crate::store::VPath;
use crate::store::{Change, ChangeKind};

/// Files at least this long are streamed.
pub const STREAM_MIN: u64 = 4 << 20;
/// Pages per batch (1 MiB of plaintext).
const BATCH: u64 = 256;

/// What a file's status must stay while it is read.
fn stamp(m: &std::fs::Metadata) -> (u64, i64, i64, i64, i64) {
    (
        m.len(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec(),
    )
}

/// Fill `buf` from `r` as far as it goes; the count read (short only at the end).
fn fill(r: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

impl Tree {
    /// Create or replace the file at `p` with what `input` gives, sealed one
    /// page at a time into a temporary file beside it (synced, renamed over,
    /// directory synced: [`Tree::write`]'s durability). `journal` is called
    /// with the backing path first. An input longer than `max` bytes is
    /// refused once it passes that, and nothing changes.
    pub fn write_streaming(
        &self,
        p: &VPath,
        input: &mut dyn Read,
        max: u64,
        journal: &dyn Fn(&str) -> Result<()>,
    ) -> Result<Change> {
        let loc = self.locate(p)?;
        let (kind, linked) = match Self::kind_at(&loc.path)? {
            Some((Kind::Dir, _)) => return Err(Error::IsADirectory(p.to_string())),
            Some((_, m)) => (
                ChangeKind::Modified,
                std::os::unix::fs::MetadataExt::nlink(&m) > 1,
            ),
            None => (ChangeKind::Added, false),
        };
        // The directory as a short path, held open while it is used: a deep
        // tree's backing path may be longer than the kernel takes.
        let dir = short(&loc.dir)?;
        let target = dir.join(loc.disk.entry());
        let mut tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(&*dir)
            .map_err(|e| Error::io(&loc.dir, e))?;
        // The old version, whose unchanged pages keep their ciphertext (as
        // `Tree::write` does): rewriting a file with its own content leaves
        // its blob as it was, so nothing is committed.
        // One name of a hard-linked file becomes a file of its own, with an
        // id of its own (as in `Tree::write`).
        let old = match kind {
            ChangeKind::Modified if !linked => self.old_blob(&target),
            _ => None,
        };
        let page = offsets::PAGE_SIZE as usize;
        let mut cur = Zeroizing::new(vec![0u8; page]);
        let mut next = Zeroizing::new(vec![0u8; page]);
        let io_in = |e| Error::io("input", e);
        let mut n = fill(input, &mut cur).map_err(io_in)?;
        let mut total = n as u64;
        if n > 0 {
            let (generation, key) = self.keys.current();
            let header = match &old {
                Some(o) => o.header.clone(),
                None => Header::new(generation),
            };
            let fc = FileCipher::new(key, &header);
            let mut w = std::io::BufWriter::with_capacity(1 << 20, tmp.as_file_mut());
            w.write_all(&header.encode())
                .map_err(|e| Error::io(&loc.path, e))?;
            let mut index = 0u64;
            loop {
                let m = if n == page {
                    fill(input, &mut next).map_err(io_in)?
                } else {
                    0
                };
                total += m as u64;
                if total > max {
                    return Err(Error::io(
                        "input",
                        std::io::Error::new(
                            std::io::ErrorKind::FileTooLarge,
                            format!(
                                "longer than {} MiB, the largest secret a command stores \
                                 (copy a larger file through the mount)",
                                max >> 20
                            ),
                        ),
                    ));
                }
                let last = m == 0;
                let kept = old
                    .as_ref()
                    .and_then(|o| o.same_page(index, last, &cur[..n]));
                let sealed = match kept {
                    Some(c) => c,
                    None => fc.seal_page(index, last, &cur[..n]),
                };
                w.write_all(&sealed).map_err(|e| Error::io(&loc.path, e))?;
                if last {
                    break;
                }
                std::mem::swap(&mut cur, &mut next);
                n = m;
                index += 1;
            }
            w.flush().map_err(|e| Error::io(&loc.path, e))?;
        }
        tmp.as_file()
            .sync_all()
            .map_err(|e| Error::io(&loc.path, e))?;
        journal(&self.rel_of(&loc.path, p)?)?;
        Self::write_sidecar(&loc)?;
        tmp.persist(&target)
            .map_err(|e| Error::io(&loc.path, e.error))?;
        File::open(&*dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| Error::io(&loc.dir, e))?;
        self.fresh.lock().insert(loc.path.clone());
        Ok(Change::new(kind, p.to_string()))
    }

    /// The blob at `path` as [`OldBlob`], when its pages can be kept: it is
    /// of the current key generation and its first page authenticates (so
    /// its header is one this vault's key sealed).
    fn old_blob(&self, path: &Path) -> Option<OldBlob> {
        let file = File::open(path).ok()?;
        let len = file.metadata().ok()?.len();
        let plain = offsets::plain_len(len)?;
        if plain == 0 {
            return None;
        }
        let mut head = [0u8; HEADER_LEN as usize];
        file.read_exact_at(&mut head, 0).ok()?;
        let header = Header::decode(&head).ok()?;
        let (generation, key) = self.keys.current();
        if header.generation != generation {
            return None;
        }
        let old = OldBlob {
            fc: FileCipher::new(key, &header),
            header,
            file,
            count: offsets::page_count(plain),
            plain,
        };
        let first = offsets::page_plain_len(plain, 0) as usize;
        let mut probe = Zeroizing::new(vec![0u8; first]);
        old.open(0, &mut probe)?;
        Some(old)
    }

    /// Decrypt the file at `p`, handing its plaintext to `out` in pieces. A
    /// failed check is an error, and `out` has then seen only checked bytes.
    pub fn read_streaming(
        &self,
        p: &VPath,
        out: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<()> {
        let loc = self.locate(p)?;
        match Self::kind_at(&loc.path)? {
            Some((Kind::File, _)) => {}
            _ => return out(&self.read(p)?),
        }
        let file = File::open(&*short(&loc.path)?).map_err(|e| Error::io(&loc.path, e))?;
        let meta = file.metadata().map_err(|e| Error::io(&loc.path, e))?;
        let len = meta.len();
        if len < STREAM_MIN {
            return out(&self.read(p)?);
        }
        let tags = match self.seal_for(&loc.path) {
            Some(seal) => {
                let rel = self.rel_of(&loc.path, p)?;
                match seal
                    .verify_for_reader(&rel, &file, |_| None, 0)
                    .map_err(|e| match e {
                        Error::Corrupt { what, .. } => Error::corrupt(p, what),
                        e => e,
                    })? {
                    Vouched::ByTags(list) => Some(list),
                    Vouched::Whole(_) => None,
                }
            }
            None => None,
        };
        let bad = |what: &str| Error::corrupt(p, what.to_string());
        let mut head = [0u8; HEADER_LEN as usize];
        file.read_exact_at(&mut head, 0)
            .map_err(|e| Error::io(&loc.path, e))?;
        if let Some(list) = &tags {
            if list.blob_len != len || list.header != head {
                return Err(bad("the blob is not the committed one"));
            }
        }
        let header = Header::decode(&head).map_err(|e| bad(&e.to_string()))?;
        let key = self
            .keys
            .get(header.generation)
            .ok_or_else(|| bad("unknown key generation"))?;
        let fc = FileCipher::new(key, &header);
        let plain = offsets::plain_len(len).ok_or_else(|| bad("bad blob length"))?;
        let count = offsets::page_count(plain);
        let before = stamp(&meta);
        let mut cipher = Zeroizing::new(vec![0u8; (BATCH * CIPHER_PAGE) as usize]);
        let mut text = Zeroizing::new(vec![0u8; (BATCH * offsets::PAGE_SIZE) as usize]);
        let holes_allowed = head[4] == 2;
        let mut run = 0u64;
        let mut first = 0;
        while first < count {
            let n = BATCH.min(count - first);
            let start = offsets::page_blob_offset(first);
            let end = if first + n == count {
                len
            } else {
                offsets::page_blob_offset(first + n)
            };
            let buf = &mut cipher[..(end - start) as usize];
            file.read_exact_at(buf, start)
                .map_err(|e| Error::io(&loc.path, e))?;
            match &tags {
                Some(list) => {
                    for k in 0..n {
                        let at = (k * CIPHER_PAGE + IV_LEN) as usize;
                        if list.tag(first + k).map(|t| &t[..]) != buf.get(at..at + TAG_LEN as usize)
                        {
                            return Err(bad("a page is not the committed one"));
                        }
                    }
                }
                None => {
                    let now = file.metadata().map_err(|e| Error::io(&loc.path, e))?;
                    if stamp(&now) != before {
                        return Err(bad("the file changed while it was read"));
                    }
                }
            }
            let mut shown = 0;
            for k in 0..n {
                let i = first + k;
                let last = i + 1 == count;
                let plen = offsets::page_plain_len(plain, i);
                let at = (k * CIPHER_PAGE) as usize;
                let page = &buf[at..at + (plen + PAGE_OVERHEAD) as usize];
                // A hole (version 2) reads as zeros once the sealed page
                // ending its run has opened with the run's length.
                if holes_allowed && !last && holes::is_hole(page) {
                    run += 1;
                    continue;
                }
                fc.open_page_into(
                    (i, last, run),
                    page,
                    &mut text[shown..shown + plen as usize],
                )
                .map_err(|e| bad(&e.to_string()))?;
                if run > 0 {
                    out(&text[..shown])?;
                    text.copy_within(shown..shown + plen as usize, 0);
                    shown = 0;
                    let zeros = [0u8; offsets::PAGE_SIZE as usize];
                    for _ in 0..run {
                        out(&zeros)?;
                    }
                    run = 0;
                }
                shown += plen as usize;
            }
            out(&text[..shown])?;
            first += n;
        }
        Ok(())
    }
}

/// A file's blob before a streamed write replaces it (see
/// [`Tree::write_streaming`]).
struct OldBlob {
    file: File,
    header: Header,
    fc: FileCipher,
    plain: u64,
    count: u64,
}

impl OldBlob {
    /// Read and open page `i` into `out` (its plaintext length); the page's
    /// ciphertext. `None` when it does not authenticate as sealed after no
    /// hole (a hole slot, a page after one, a damaged page).
    fn open(&self, i: u64, out: &mut [u8]) -> Option<Vec<u8>> {
        let len = offsets::page_plain_len(self.plain, i);
        let mut page = vec![0u8; (len + PAGE_OVERHEAD) as usize];
        self.file
            .read_exact_at(&mut page, offsets::page_blob_offset(i))
            .ok()?;
        let last = i + 1 == self.count;
        self.fc.open_page_into((i, last, 0), &page, out).ok()?;
        Some(page)
    }

    /// The old ciphertext of page `i` when it holds `plain` with the same
    /// final flag (and so is exactly what sealing `plain` there would mean).
    fn same_page(&self, i: u64, last: bool, plain: &[u8]) -> Option<Vec<u8>> {
        if i >= self.count || (i + 1 == self.count) != last {
            return None;
        }
        if offsets::page_plain_len(self.plain, i) != plain.len() as u64 {
            return None;
        }
        let mut text = Zeroizing::new(vec![0u8; plain.len()]);
        let page = self.open(i, &mut text)?;
        (text.as_slice() == plain).then_some(page)
    }
}
