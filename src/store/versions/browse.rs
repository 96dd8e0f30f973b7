//! Browsing a version lazily, for the mount's `.versions` tree: a directory
//! opened once (its IV and its mode record), its children one by one or all
//! together, a file's ciphertext held and opened one page at a time (hole
//! slots of a version 2 blob read as zeros, see `format::blob`), and the
//! commits of main's history and of the discarded refs with their times.
//!
//! Nothing here walks more of a version than it is asked for: looking up a
//! path reads one git tree per component.

use git2::{Oid, Sort};
use zeroize::Zeroizing;

use super::{main_tip, Ctx, VEntry, Versions};
use crate::error::{Error, Result};
use crate::format::blob::{FileCipher, Header, VERSION_AT, VERSION_HOLES};
use crate::format::holes::is_hole;
use crate::format::modes::{default_mode, ModeMap, MODES_FILE, SELF_ENTRY};
use crate::format::names::DirIv;
use crate::format::offsets;
use crate::store::Kind;

/// A directory of a version, opened: its tree, IV and mode record.
pub struct VDir {
    pub entry: VEntry,
    iv: DirIv,
    modes: ModeMap,
}

/// One entry of a version's directory with the mode that version gave it
/// (permission, set-id and sticky bits).
#[derive(Debug, Clone)]
pub struct VChild {
    pub entry: VEntry,
    pub mode: u32,
}

impl VDir {
    /// The directory's own mode in that version.
    pub fn mode(&self) -> u32 {
        self.modes
            .get(SELF_ENTRY)
            .copied()
            .unwrap_or_else(|| default_mode(true, false))
    }

    fn child_mode(&self, disk: &str, e: &VEntry) -> u32 {
        match e.kind {
            Kind::Symlink => 0o777,
            Kind::Dir => self
                .modes
                .get(disk)
                .copied()
                .unwrap_or_else(|| default_mode(true, false)),
            Kind::File | Kind::Special => self
                .modes
                .get(disk)
                .copied()
                .unwrap_or_else(|| default_mode(false, e.exec)),
        }
    }
}

/// A file of a version: its ciphertext, opened one page at a time.
pub struct VBlob {
    bytes: Vec<u8>,
    plain: u64,
    cipher: Option<FileCipher>,
    holes: bool,
    what: String,
}

impl Versions {
    /// Open directory `dir` of a version (`what` names it in errors). A mode
    /// record that does not authenticate is an error.
    pub fn open_dir(&self, dir: &VEntry, what: &str) -> Result<VDir> {
        if dir.kind != Kind::Dir {
            return Err(Error::corrupt(what, "not a directory"));
        }
        let tree = self.repo.find_tree(dir.id).ctx("reading a tree")?;
        let iv = self.diriv(&tree, what)?;
        let modes = match tree.get_name(MODES_FILE) {
            None => ModeMap::new(),
            Some(e) => {
                let blob = self.repo.find_blob(e.id()).ctx("reading a mode record")?;
                self.modes
                    .open(&iv, blob.content())
                    .map_err(|err| Error::corrupt(what, err.to_string()))?
            }
        };
        Ok(VDir {
            entry: dir.clone(),
            iv,
            modes,
        })
    }

    /// The entry `name` of `dir`, `None` when that version had none.
    pub fn child(&self, dir: &VDir, name: &[u8]) -> Result<Option<VChild>> {
        let tree = self.repo.find_tree(dir.entry.id).ctx("reading a tree")?;
        let Some((disk, entry)) = self.entry_named(&tree, &dir.iv, name) else {
            return Ok(None);
        };
        let mode = dir.child_mode(&disk, &entry);
        Ok(Some(VChild { entry, mode }))
    }

    /// Every entry of `dir`, sorted by name, with its mode.
    pub fn children(&self, dir: &VDir) -> Result<Vec<VChild>> {
        let tree = self.repo.find_tree(dir.entry.id).ctx("reading a tree")?;
        let shown = String::from_utf8_lossy(&dir.entry.name).into_owned();
        let mut out: Vec<VChild> = self
            .entries(&tree, &dir.iv, &shown)?
            .into_iter()
            .map(|(disk, entry)| VChild {
                mode: dir.child_mode(&disk, &entry),
                entry,
            })
            .collect();
        out.sort_by(|a, b| a.entry.name.cmp(&b.entry.name));
        Ok(out)
    }

    /// The ciphertext of file `e`, to be opened page by page.
    pub fn blob(&self, e: &VEntry, what: &str) -> Result<VBlob> {
        if e.kind != Kind::File {
            return Err(Error::NotAFile(what.to_string()));
        }
        let blob = self.repo.find_blob(e.id).ctx("reading a blob")?;
        let bytes = blob.content().to_vec();
        let bad = |m: String| Error::corrupt(what, m);
        if bytes.is_empty() {
            return Ok(VBlob {
                bytes,
                plain: 0,
                cipher: None,
                holes: false,
                what: what.to_string(),
            });
        }
        let plain = offsets::plain_len(bytes.len() as u64)
            .ok_or_else(|| bad(format!("blob of {} bytes has no valid length", bytes.len())))?;
        let header = Header::decode(&bytes).map_err(|x| bad(x.to_string()))?;
        let key = self
            .keys
            .get(header.generation)
            .ok_or_else(|| bad(format!("unknown key generation {}", header.generation)))?;
        let holes = bytes.get(VERSION_AT as usize) == Some(&VERSION_HOLES);
        Ok(VBlob {
            cipher: Some(FileCipher::new(key, &header)),
            bytes,
            plain,
            holes,
            what: what.to_string(),
        })
    }

    /// Main's tip, `None` before the first version.
    pub fn main(&self) -> Result<Option<Oid>> {
        main_tip(&self.repo)
    }

    /// The commit time of `id` (Unix seconds; not authenticated).
    pub fn time_of(&self, id: Oid) -> Result<i64> {
        let commit = self.repo.find_commit(id).ctx("reading a commit")?;
        Ok(commit.time().seconds())
    }

    /// Main's history, newest first: (commit, commit time).
    pub fn main_log(&self) -> Result<Vec<(Oid, i64)>> {
        let tips: Vec<Oid> = self.main()?.into_iter().collect();
        self.walk(&tips, &[])
    }

    /// The versions only a discarded ref keeps (until `pkfs gc`), newest first.
    pub fn discarded_log(&self) -> Result<Vec<(Oid, i64)>> {
        let tips: Vec<Oid> = super::super::discarded_refs(&self.repo)?
            .into_iter()
            .map(|(_, id)| id)
            .collect();
        if tips.is_empty() {
            return Ok(Vec::new());
        }
        let hide: Vec<Oid> = self.main()?.into_iter().collect();
        self.walk(&tips, &hide)
    }

    fn walk(&self, tips: &[Oid], hide: &[Oid]) -> Result<Vec<(Oid, i64)>> {
        if tips.is_empty() {
            return Ok(Vec::new());
        }
        let mut walk = super::super::new_walk(&self.repo, tips)?;
        for &h in hide {
            walk.hide(h).ctx("walking the history")?;
        }
        walk.set_sorting(Sort::TIME | Sort::TOPOLOGICAL)
            .ctx("sorting the history")?;
        let mut out = Vec::new();
        for id in walk {
            let id = id.ctx("walking the history")?;
            let commit = self.repo.find_commit(id).ctx("reading a commit")?;
            out.push((id, commit.time().seconds()));
        }
        Ok(out)
    }
}

impl VBlob {
    /// The plaintext length.
    pub fn len(&self) -> u64 {
        self.plain
    }

    pub fn is_empty(&self) -> bool {
        self.plain == 0
    }

    fn slot(&self, i: u64) -> Result<&[u8]> {
        let start = offsets::page_blob_offset(i) as usize;
        let len = (offsets::page_plain_len(self.plain, i) + offsets::PAGE_OVERHEAD) as usize;
        self.bytes
            .get(start..start + len)
            .ok_or_else(|| Error::corrupt(&self.what, "blob is shorter than its pages"))
    }

    /// Decrypt page `i` (a hole of a version 2 blob is zeros).
    pub fn page(&self, i: u64) -> Result<Zeroizing<Vec<u8>>> {
        let Some(fc) = &self.cipher else {
            return Ok(Zeroizing::new(Vec::new()));
        };
        let count = offsets::page_count(self.plain);
        if i >= count {
            return Ok(Zeroizing::new(Vec::new()));
        }
        let last = i + 1 == count;
        let slot = self.slot(i)?;
        if self.holes && !last && is_hole(slot) {
            return Ok(Zeroizing::new(vec![0; offsets::PAGE_SIZE as usize]));
        }
        let mut before = 0;
        if self.holes {
            while before < i && is_hole(self.slot(i - before - 1)?) {
                before += 1;
            }
        }
        fc.open_page_after(i, last, before, slot)
            .map_err(|x| Error::corrupt(&self.what, x.to_string()))
    }

    /// Up to `size` plaintext bytes from `offset` (fewer at the end).
    pub fn read_at(&self, offset: u64, size: u64) -> Result<Zeroizing<Vec<u8>>> {
        let end = offset.saturating_add(size).min(self.plain);
        let mut out = Zeroizing::new(Vec::with_capacity(end.saturating_sub(offset) as usize));
        if offset >= end {
            return Ok(out);
        }
        for i in offsets::pages_touched(offset, end - offset) {
            let page = self.page(i)?;
            let base = i * offsets::PAGE_SIZE;
            let from = offset.saturating_sub(base) as usize;
            let to = ((end - base) as usize).min(page.len());
            if let Some(part) = page.get(from..to) {
                out.extend_from_slice(part);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SymKey;
    use crate::format::offsets::CIPHER_PAGE;

    /// A version 2 blob: two hole slots, then a sealed last page after them
    /// (or, with `holes_seen` != 2, sealed as if another count preceded it).
    fn blob(holes_seen: u64) -> VBlob {
        let key = SymKey::from_bytes([7; 32]);
        let header = Header::new(0);
        let mut bytes = header.encode().to_vec();
        bytes[VERSION_AT as usize] = VERSION_HOLES;
        bytes.extend(vec![0u8; 2 * CIPHER_PAGE as usize]);
        let fc = FileCipher::new(&key, &header);
        bytes.extend(fc.seal_page_after(2, true, holes_seen, &[1; 12], b"tail"));
        let plain = offsets::plain_len(bytes.len() as u64).unwrap();
        VBlob {
            bytes,
            plain,
            cipher: Some(fc),
            holes: true,
            what: "t".into(),
        }
    }

    #[test]
    fn holes_read_as_zeros_and_only_where_the_writer_sealed_them() {
        let b = blob(2);
        assert_eq!(b.len(), 2 * 4096 + 4);
        let all = b.read_at(0, u64::MAX).unwrap();
        assert_eq!(all.len(), 2 * 4096 + 4);
        assert!(all[..8192].iter().all(|x| *x == 0));
        assert_eq!(&all[8192..], b"tail");
        // A read inside one page, and past the end.
        assert_eq!(&*b.read_at(8190, 4).unwrap(), &[0, 0, b't', b'a']);
        assert!(b.read_at(9000, 10).unwrap().is_empty());
        // The last page counts the holes before it: another count fails.
        assert!(blob(1).read_at(8192, 4).is_err());
        assert!(blob(0).page(2).is_err());
    }
}
