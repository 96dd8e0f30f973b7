//! Holes in an open file's blob (format version 2, `format::blob`): the gap
//! left by extending a file (a truncation up, a write past the end, `dd seek=`)
//! and the whole pages of a PUNCH_HOLE are hole slots, all zero bytes, which
//! cost no disk on a backing file system with sparse files and no time to make.
//!
//! `FileState::holes` keeps the runs of hole slots of the blob on disk. They are
//! found at open from the backing file's own holes (`SEEK_HOLE`/`SEEK_DATA`);
//! zero slots it did not report (a copy that wrote the zeros out, a checkout)
//! are found when a read meets them ([`FileState::rediscover`]).
//!
//! A hole reads as zeros once the sealed page that ends its run opened with the
//! run's length in its AAD; the run end is remembered as checked until the map
//! changes. A zero slot where the writer sealed a page therefore fails: the run
//! it joins no longer has the length sealed after it.
//!
//! Write-back ([`FileState::plan_holes`]) makes every page that reads as zeros
//! because it lies past `disk_valid` (past the old end, or cut by a truncation)
//! and is not dirty a hole, as well as the pages punched since; the last page is
//! always sealed. Pages after a run whose length changed are resealed.

use std::collections::BTreeSet;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;

use super::{eio, run_len, FileState};
use crate::format::blob::VERSION_HOLES;
use crate::format::holes::{is_hole, RunMap};
use crate::format::offsets::{self, CIPHER_PAGE, HEADER_LEN, PAGE_SIZE};

/// The hole map of a blob on disk, and the run ends already checked.
#[derive(Default)]
pub(super) struct Holes {
    pub disk: RunMap,
    checked: BTreeSet<u64>,
}

impl Holes {
    pub fn new(disk: RunMap) -> Holes {
        Holes {
            disk,
            checked: BTreeSet::new(),
        }
    }
}

/// `lseek` with `whence`; `None` past the end (ENXIO) or when unsupported.
fn seek(fd: i32, at: u64, whence: i32) -> Option<u64> {
    // SAFETY: a plain system call on a valid descriptor; the result is checked.
    let r = unsafe { libc::lseek(fd, at as libc::off_t, whence) };
    (r >= 0).then_some(r as u64)
}

/// Slot `k` of the blob (`CIPHER_PAGE` bytes, or fewer at the end) is a hole?
fn slot_is_hole(file: &std::fs::File, k: u64) -> io::Result<bool> {
    let mut buf = [0u8; CIPHER_PAGE as usize];
    let at = offsets::page_blob_offset(k);
    let n = file.read_at(&mut buf, at)?;
    Ok(n == CIPHER_PAGE as usize && is_hole(&buf))
}

/// The runs of hole slots of a version 2 blob of `plain` bytes in `file`,
/// from the file system's holes, each widened over zero slots at its edges.
pub(super) fn scan(file: &std::fs::File, plain: u64) -> io::Result<RunMap> {
    let mut map = RunMap::new();
    let count = offsets::page_count(plain);
    if count < 2 {
        return Ok(map);
    }
    let len = offsets::blob_len(plain);
    let fd = file.as_raw_fd();
    let mut pos = HEADER_LEN;
    while pos < len {
        let Some(hole) = seek(fd, pos, libc::SEEK_HOLE).filter(|h| *h < len) else {
            break;
        };
        let data = seek(fd, hole, libc::SEEK_DATA).unwrap_or(len).min(len);
        let first = (hole - HEADER_LEN).div_ceil(CIPHER_PAGE);
        let end = ((data - HEADER_LEN) / CIPHER_PAGE).min(count - 1);
        if first < end {
            map.insert(first, end);
        }
        if data <= hole {
            break;
        }
        pos = data;
    }
    let runs: Vec<(u64, u64)> = map.iter().collect();
    for (mut s, mut e) in runs {
        while s > 0 && slot_is_hole(file, s - 1)? {
            s -= 1;
        }
        while e + 1 < count && slot_is_hole(file, e)? {
            e += 1;
        }
        map.insert(s, e);
    }
    Ok(map)
}

/// The runs of hole slots of a version 2 blob held whole in `blob`.
pub(super) fn scan_bytes(blob: &[u8], plain: u64) -> RunMap {
    let mut map = RunMap::new();
    let count = offsets::page_count(plain);
    for i in 0..count.saturating_sub(1) {
        let at = offsets::page_blob_offset(i) as usize;
        if blob.get(at..at + CIPHER_PAGE as usize).is_some_and(is_hole) {
            map.insert(i, i + 1);
        }
    }
    map
}

/// Complement of `map` within `start..end`, as runs.
pub(super) fn gaps(map: &RunMap, start: u64, end: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut at = start;
    for (s, e) in map.within(start, end) {
        if s > at {
            out.push((at, s));
        }
        at = e;
    }
    if at < end {
        out.push((at, end));
    }
    out
}

impl FileState {
    /// Hole slots right before page `i` on disk (0 in a version 1 blob).
    pub(super) fn holes_before(&self, i: u64) -> u64 {
        self.holes.lock().disk.before(i)
    }

    /// Is page `i` a hole on disk? If so, its run must be authentic: the page
    /// ending it opens with the run's length (checked once per run).
    pub(super) fn disk_hole(&self, i: u64) -> io::Result<bool> {
        let (s, m) = {
            let h = self.holes.lock();
            match h.disk.run_at(i) {
                None => return Ok(false),
                Some((_, m)) if h.checked.contains(&m) => return Ok(true),
                Some(r) => r,
            }
        };
        let pc = offsets::page_count(self.disk_size);
        if m >= pc {
            return Err(eio());
        }
        let mut buf = [0u8; CIPHER_PAGE as usize];
        let buf = &mut buf[..run_len(self.disk_size, m, 1)];
        self.read_sealed(m, 1, buf)?;
        let (_, fc) = self.cipher.as_ref().ok_or_else(eio)?;
        let res = fc.open_page_in_place((m, m + 1 == pc, m - s), buf);
        crate::fs::cache::wipe(buf);
        if res.is_err() {
            tracing::warn!("the hole before page {m} of an open file is not authentic");
            return Err(eio());
        }
        self.holes.lock().checked.insert(m);
        Ok(true)
    }

    /// After page `i` failed to open, or read as a zero slot the map did not
    /// know: if the blob may hold holes, look for a run of zero slots at `i`
    /// or right before it that the map misses, and add it. `true` when the map
    /// changed (try again), `false` when page `i` is simply not authentic.
    pub(super) fn rediscover(&self, i: u64) -> io::Result<bool> {
        let pc = offsets::page_count(self.disk_size);
        if self.version != VERSION_HOLES || i >= pc {
            return Ok(false);
        }
        let (mut s, mut e) = if i + 1 < pc && slot_is_hole(&self.file, i)? {
            (i, i + 1)
        } else if i > 0 && slot_is_hole(&self.file, i - 1)? {
            (i - 1, i)
        } else {
            return Ok(false);
        };
        while s > 0 && slot_is_hole(&self.file, s - 1)? {
            s -= 1;
        }
        while e + 1 < pc && slot_is_hole(&self.file, e)? {
            e += 1;
        }
        let changed = {
            let mut h = self.holes.lock();
            let before = h.disk.clone();
            h.disk.insert(s, e);
            h.disk != before
        };
        if changed && self.writable {
            // Zeros written out (by a checkout, a copy): give their space back.
            // The bytes stay the same, and so do the file's times.
            if let Err(err) = self.punch_keeping_times(s, e) {
                tracing::debug!("could not punch written-out holes: {err}");
            }
        }
        Ok(changed)
    }

    /// Before pages `pages` are resealed: learn any run of zero slots the map
    /// missed right before one of them (the map is only as good as the file
    /// system's report of its holes, whose blocks do not line up with slots).
    pub(super) fn learn_before(&self, pages: &BTreeSet<u64>) -> io::Result<()> {
        if self.version != VERSION_HOLES {
            return Ok(());
        }
        let pc = offsets::page_count(self.disk_size);
        for &i in pages {
            let Some(p) = i.checked_sub(1) else { continue };
            if p >= pc || pages.contains(&p) || self.holes.lock().disk.contains(p) {
                continue;
            }
            if slot_is_hole(&self.file, p)? {
                self.rediscover(i)?;
            }
        }
        Ok(())
    }

    /// [`FileState::punch_slots`] for one run, putting the access and
    /// modification times back afterwards.
    fn punch_keeping_times(&self, s: u64, e: u64) -> io::Result<()> {
        use std::os::unix::fs::MetadataExt;
        let m = self.file.metadata()?;
        self.punch_slots(&[(s, e)])?;
        let ts = [
            libc::timespec {
                tv_sec: m.atime(),
                tv_nsec: m.atime_nsec(),
            },
            libc::timespec {
                tv_sec: m.mtime(),
                tv_nsec: m.mtime_nsec(),
            },
        ];
        // SAFETY: a valid descriptor and two timespecs; the result is checked.
        if unsafe { libc::futimens(self.file.as_raw_fd(), ts.as_ptr()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// The hole map the blob will have once the current state is written
    /// back (`new_pc` pages; `fresh`: the blob has no header yet).
    pub(super) fn plan_holes(&self, new_pc: u64, fresh: bool) -> RunMap {
        let mut map = if fresh {
            RunMap::new()
        } else {
            self.holes.lock().disk.clone()
        };
        let Some(last) = new_pc.checked_sub(1) else {
            return RunMap::new();
        };
        map.remove(last, u64::MAX);
        let zeros_from = if fresh {
            0
        } else {
            self.disk_valid.div_ceil(PAGE_SIZE)
        };
        map.insert(zeros_from, last);
        for (s, e) in self.punched.iter() {
            map.insert(s, e.min(last));
        }
        for i in self.dirty.range(..new_pc).map(|(i, _)| *i) {
            map.remove(i, i + 1);
        }
        map
    }

    /// Make the slots of the runs `runs` (inside the blob on disk) holes:
    /// punched where the file system can, written as zeros where not.
    pub(super) fn punch_slots(&self, runs: &[(u64, u64)]) -> io::Result<()> {
        let len = self.file.metadata()?.len();
        for &(s, e) in runs {
            let from = offsets::page_blob_offset(s);
            let to = offsets::page_blob_offset(e).min(len);
            if from >= to {
                continue;
            }
            // SAFETY: a valid descriptor and a range inside the file; checked.
            let rc = unsafe {
                libc::fallocate(
                    self.file.as_raw_fd(),
                    libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                    from as libc::off_t,
                    (to - from) as libc::off_t,
                )
            };
            if rc == 0 {
                continue;
            }
            let err = io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EOPNOTSUPP) {
                return Err(err);
            }
            let zeros = vec![0u8; 1 << 20];
            let mut at = from;
            while at < to {
                let n = (to - at).min(zeros.len() as u64) as usize;
                self.file.write_all_at(&zeros[..n], at)?;
                at += n as u64;
            }
        }
        Ok(())
    }

    /// Mark the blob version 2 before its first hole is made (a version 2
    /// blob without holes reads as version 1; a hole in version 1 fails).
    pub(super) fn mark_holes_version(&mut self) -> io::Result<()> {
        if self.version != VERSION_HOLES {
            self.file
                .write_all_at(&[VERSION_HOLES], crate::format::blob::VERSION_AT)?;
            self.version = VERSION_HOLES;
        }
        Ok(())
    }

    /// The blob on disk now has the holes `map`: forget the runs checked so far.
    pub(super) fn holes_written(&mut self, map: RunMap) -> io::Result<()> {
        if !map.is_empty() {
            self.mark_holes_version()?;
        }
        let mut h = self.holes.lock();
        *h = Holes::new(map);
        Ok(())
    }

    /// `lseek`'s SEEK_DATA (`data`) or SEEK_HOLE from `offset`, in plain
    /// bytes: holes are the hole pages on disk not since written, and the end.
    /// ENXIO at or past the end.
    pub fn seek_data(&self, offset: u64, data: bool) -> io::Result<u64> {
        if offset >= self.size {
            return Err(io::Error::from_raw_os_error(libc::ENXIO));
        }
        let pc = offsets::page_count(self.size);
        let map = self.plan_holes(pc, self.disk_size == 0);
        let mut i = offset / PAGE_SIZE;
        loop {
            if i >= pc {
                return match data {
                    true => Err(io::Error::from_raw_os_error(libc::ENXIO)),
                    false => Ok(self.size),
                };
            }
            match (map.run_at(i), data) {
                (Some(_), false) | (None, true) => {
                    return Ok((i * PAGE_SIZE).max(offset));
                }
                (Some((_, e)), true) => i = e,
                (None, false) => {
                    i = match map.within(i, pc).first() {
                        Some((s, _)) => *s,
                        None => pc,
                    }
                }
            }
        }
    }
}
