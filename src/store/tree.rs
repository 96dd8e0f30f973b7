//! The encrypted backing tree of one vault (`vaults/<id>/contents/`).
//!
//! Each plaintext directory is a backing directory holding a `.diriv` file; each
//! plaintext file is a content blob (see `format::blob`); every entry name is
//! encrypted with the directory's IV (see `format::names`). This module maps
//! validated plaintext paths ([`VPath`]) onto that tree. Long names get a sidecar
//! file, written before the entry and removed after it.

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use zeroize::Zeroizing;

use super::atomic::{create_dir_durable, fsync_dir, write_atomic};
use super::dirfd::short;
use super::seal::Seal;
use super::vpath::VPath;
use super::{Change, ChangeKind};
use crate::crypto::{random_array, Keychain};
use crate::error::{Error, Result};
use crate::format::blob::{self, Header};
use crate::format::names::{self, DiskName, EntryKind, NameCipher, DIRIV_FILE, DIRIV_LEN};
use crate::format::offsets;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    File,
    Dir,
    Symlink,
    /// A FIFO, socket or device node (made through the mount).
    Special,
}

/// One decrypted directory entry.
#[derive(Debug, Clone)]
pub struct Entry {
    pub name: Vec<u8>,
    pub kind: Kind,
    /// Plaintext size (files), 0 otherwise.
    pub size: u64,
    pub mtime: i64,
    pub mode: u32,
}

/// A directory listing; entries whose names do not authenticate are reported
/// separately (by their encrypted name), never shown as plaintext.
#[derive(Debug, Default)]
pub struct Listing {
    pub entries: Vec<Entry>,
    pub undecryptable: Vec<String>,
}

struct Located {
    dir: PathBuf,
    disk: DiskName,
    path: PathBuf,
}

pub struct Tree {
    contents: PathBuf,
    keys: Keychain,
    names: NameCipher,
    /// When set, every file read must match the committed version (seal.rs).
    seal: parking_lot::RwLock<Option<std::sync::Arc<Seal>>>,
    /// Backing files this handle wrote itself (not yet committed): trusted.
    fresh: parking_lot::Mutex<std::collections::HashSet<PathBuf>>,
}

impl Tree {
    /// Create an empty encrypted tree at `contents` (which must not exist).
    pub fn create(contents: &Path, keys: Keychain) -> Result<Tree> {
        create_dir_durable(contents)?;
        write_atomic(&contents.join(DIRIV_FILE), &random_array::<DIRIV_LEN>())?;
        Ok(Tree::open(contents, keys))
    }

    pub fn open(contents: &Path, keys: Keychain) -> Tree {
        let names = NameCipher::new(keys.first());
        Tree {
            contents: contents.to_path_buf(),
            keys,
            names,
            seal: parking_lot::RwLock::new(None),
            fresh: Default::default(),
        }
    }

    /// Check every file read from now on against `seal` (`None`: no checks).
    pub fn set_seal(&self, seal: Option<std::sync::Arc<Seal>>) {
        *self.seal.write() = seal;
        self.fresh.lock().clear();
    }

    /// The seal to check `path` against: none for files this handle wrote.
    fn seal_for(&self, path: &Path) -> Option<std::sync::Arc<Seal>> {
        if self.fresh.lock().contains(path) {
            return None;
        }
        self.seal.read().clone()
    }

    /// The seal reads are checked against, if any.
    pub fn seal(&self) -> Option<std::sync::Arc<Seal>> {
        self.seal.read().clone()
    }

    /// The backing path of entry `p` relative to the vault directory
    /// (`contents/…`), for the change journal. Its parent must exist.
    pub fn backing_rel(&self, p: &VPath) -> Result<String> {
        let path = if p.is_root() {
            self.contents.clone()
        } else {
            self.locate(p)?.path
        };
        self.rel_of(&path, p)
    }

    /// The backing path `path` (of plaintext path `p`) relative to the vault
    /// directory.
    fn rel_of(&self, path: &Path, p: &VPath) -> Result<String> {
        let vault_dir = self.contents.parent().unwrap_or(&self.contents);
        path.strip_prefix(vault_dir)
            .ok()
            .and_then(|r| r.to_str())
            .map(str::to_string)
            .ok_or_else(|| Error::corrupt(p, "backing path is not UTF-8"))
    }

    pub fn keys(&self) -> &Keychain {
        &self.keys
    }

    pub fn contents_dir(&self) -> &Path {
        &self.contents
    }

    fn kind_at(path: &Path) -> Result<Option<(Kind, fs::Metadata)>> {
        match fs::symlink_metadata(&*short(path)?) {
            Ok(m) => {
                let kind = if m.is_dir() {
                    Kind::Dir
                } else if m.file_type().is_symlink() {
                    Kind::Symlink
                } else if m.is_file() {
                    Kind::File
                } else {
                    Kind::Special
                };
                Ok(Some((kind, m)))
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(path, e)),
        }
    }

    fn entry_of(name: Vec<u8>, kind: Kind, m: &fs::Metadata) -> Entry {
        let size = match kind {
            Kind::File => offsets::plain_len(m.len()).unwrap_or(0),
            _ => 0,
        };
        Entry {
            name,
            kind,
            size,
            mtime: m.mtime(),
            mode: m.mode() & 0o7777,
        }
    }

    /// Stat `p`; the root is a directory.
    pub fn stat(&self, p: &VPath) -> Result<Entry> {
        let path = if p.is_root() {
            self.contents.clone()
        } else {
            self.locate(p)?.path
        };
        match Self::kind_at(&path)? {
            Some((kind, m)) => Ok(Self::entry_of(p.name().unwrap_or(b"/").to_vec(), kind, &m)),
            None => Err(Error::NotFound(p.to_string())),
        }
    }

    /// True when `p` is an existing directory; false when missing or not one.
    pub fn is_dir(&self, p: &VPath) -> Result<bool> {
        match self.stat(p) {
            Ok(e) => Ok(e.kind == Kind::Dir),
            Err(Error::NotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub fn exists(&self, p: &VPath) -> Result<bool> {
        match self.stat(p) {
            Ok(_) => Ok(true),
            Err(Error::NotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub fn list(&self, p: &VPath) -> Result<Listing> {
        // Resolving the path already fails with NotFound / NotADirectory.
        let dir = self.backing_dir(p)?;
        let iv = self.diriv(&dir, p)?;
        let mut out = Listing::default();
        let rd = fs::read_dir(&*short(&dir)?).map_err(|e| Error::io(&dir, e))?;
        for ent in rd {
            let ent = ent.map_err(|e| Error::io(&dir, e))?;
            let raw = ent.file_name().to_string_lossy().into_owned();
            let encoded = match names::classify(&raw) {
                EntryKind::DirIv | EntryKind::Modes | EntryKind::Sidecar => continue,
                EntryKind::Direct => raw.clone(),
                EntryKind::Long => match self.read_sidecar(&dir, &raw) {
                    Some(enc) => enc,
                    None => {
                        out.undecryptable.push(raw);
                        continue;
                    }
                },
                EntryKind::Foreign => {
                    if !raw.starts_with(".tmp-") {
                        out.undecryptable.push(raw);
                    }
                    continue;
                }
            };
            let name = match self.names.decrypt(&iv, &encoded) {
                Ok(n) if names::validate(&n).is_ok() => n,
                _ => {
                    out.undecryptable.push(raw);
                    continue;
                }
            };
            if let Some((kind, m)) = Self::kind_at(&dir.join(ent.file_name()))? {
                out.entries.push(Self::entry_of(name, kind, &m));
            }
        }
        out.entries.sort_by(|a, b| a.name.cmp(&b.name));
        out.undecryptable.sort();
        Ok(out)
    }

    /// The encoded name in a long entry's sidecar, if it matches the entry's hash.
    fn read_sidecar(&self, dir: &Path, entry: &str) -> Option<String> {
        let path = short(&dir.join(names::sidecar_of(entry))).ok()?;
        let enc = fs::read_to_string(&*path).ok()?;
        (names::long_entry(&enc) == entry).then_some(enc)
    }

    fn write_sidecar(loc: &Located) -> Result<()> {
        if let DiskName::Long { entry, encoded } = &loc.disk {
            write_atomic(&loc.dir.join(names::sidecar_of(entry)), encoded.as_bytes())?;
        }
        Ok(())
    }

    fn remove_sidecar(loc: &Located) -> Result<()> {
        if let DiskName::Long { entry, .. } = &loc.disk {
            let p = loc.dir.join(names::sidecar_of(entry));
            match fs::remove_file(&*short(&p)?) {
                Err(e) if e.kind() != ErrorKind::NotFound => return Err(Error::io(&p, e)),
                _ => {}
            }
        }
        Ok(())
    }

    /// Decrypt the file at `p`. A failed check is an error, never wrong bytes.
    pub fn read(&self, p: &VPath) -> Result<Zeroizing<Vec<u8>>> {
        let loc = self.locate(p)?;
        match Self::kind_at(&loc.path)? {
            None => return Err(Error::NotFound(p.to_string())),
            Some((Kind::Dir, _)) => return Err(Error::IsADirectory(p.to_string())),
            // Reading a FIFO would block; a symlink's target is not its content.
            Some((Kind::Symlink | Kind::Special, _)) => return Err(Error::NotAFile(p.to_string())),
            Some(_) => {}
        }
        let bytes = fs::read(&*short(&loc.path)?).map_err(|e| Error::io(&loc.path, e))?;
        let seal = self.seal_for(&loc.path);
        if let Some(seal) = seal {
            seal.verify_bytes(&loc.path, &bytes).map_err(|e| match e {
                Error::Corrupt { what, .. } => Error::corrupt(p, what),
                e => e,
            })?;
        }
        match blob::open(|g| self.keys.get(g), &bytes) {
            Ok(Some(opened)) => Ok(opened.plaintext()),
            Ok(None) => Ok(Zeroizing::new(Vec::new())),
            Err(e) => Err(Error::corrupt(p, e.to_string())),
        }
    }

    /// Create or replace the file at `p` with `data`. Pages whose plaintext is
    /// unchanged keep their ciphertext.
    pub fn write(&self, p: &VPath, data: &[u8]) -> Result<Change> {
        self.write_journaled(p, data, &|_| Ok(()))
    }

    /// [`Tree::write`], calling `journal` with the backing path (relative to
    /// the vault directory) before anything on disk changes.
    pub fn write_journaled(&self, p: &VPath, data: &[u8], journal: Journal) -> Result<Change> {
        let loc = self.locate(p)?;
        let (kind, sealed) = match Self::kind_at(&loc.path)? {
            Some((Kind::Dir, _)) => return Err(Error::IsADirectory(p.to_string())),
            // One name of a hard-linked file: the rewrite (a new inode) is a
            // file of its own, with an id of its own (else the other names
            // would hold a copy of its id: fsck's duplicate-file-id).
            Some((_, m)) if std::os::unix::fs::MetadataExt::nlink(&m) > 1 => {
                (ChangeKind::Modified, self.seal_fresh(data))
            }
            Some(_) => {
                let old = fs::read(&*short(&loc.path)?).map_err(|e| Error::io(&loc.path, e))?;
                // A corrupt old version is simply replaced by a fresh blob.
                // Older generations are re-encrypted under the current key.
                let sealed = match blob::open(|g| self.keys.get(g), &old) {
                    Ok(Some(opened)) if opened.header.generation == self.keys.current().0 => {
                        blob::reseal(|g| self.keys.get(g), &opened, data)
                            .unwrap_or_else(|_| self.seal_fresh(data))
                    }
                    _ => self.seal_fresh(data),
                };
                (ChangeKind::Modified, sealed)
            }
            None => (ChangeKind::Added, self.seal_fresh(data)),
        };
        journal(&self.rel_of(&loc.path, p)?)?;
        Self::write_sidecar(&loc)?;
        write_atomic(&loc.path, &sealed)?;
        self.fresh.lock().insert(loc.path.clone());
        Ok(Change::new(kind, p.to_string()))
    }

    fn seal_fresh(&self, data: &[u8]) -> Vec<u8> {
        let (generation, key) = self.keys.current();
        blob::seal(key, &Header::new(generation), data)
    }

    /// Create directory `p` (and its missing parents with `parents`).
    pub fn mkdir(&self, p: &VPath, parents: bool) -> Result<Vec<Change>> {
        self.mkdir_journaled(p, parents, &|_| Ok(()))
    }

    /// [`Tree::mkdir`], calling `journal` with each new directory's backing
    /// path before it is made.
    pub fn mkdir_journaled(
        &self,
        p: &VPath,
        parents: bool,
        journal: Journal,
    ) -> Result<Vec<Change>> {
        if p.is_root() {
            return if parents {
                Ok(vec![])
            } else {
                Err(Error::Exists("/".into()))
            };
        }
        self.check_depth(p)?;
        let mut changes = Vec::new();
        let mut todo = vec![p.clone()];
        if parents {
            todo.clear();
            let mut cur = VPath::root();
            for c in p.components() {
                cur = cur.join(c)?;
                todo.push(cur.clone());
            }
        }
        for d in todo {
            let loc = self.locate(&d)?;
            match Self::kind_at(&loc.path)? {
                Some((Kind::Dir, _)) if parents => continue,
                Some((Kind::Dir, _)) => return Err(Error::Exists(d.to_string())),
                // Without `parents`, the name asked for is taken (as mkdir(2)
                // says); with it, a directory is wanted there and a file is
                // the wrong kind.
                Some(_) if !parents => return Err(Error::Exists(d.to_string())),
                Some(_) => return Err(Error::NotADirectory(d.to_string())),
                None => {}
            }
            journal(&self.rel_of(&loc.path, &d)?)?;
            Self::write_sidecar(&loc)?;
            // Build the directory with its IV under a temporary name, then rename:
            // a directory without an IV never appears.
            let tmp = loc
                .dir
                .join(format!(".tmp-dir-{}", hex16(&random_array::<8>())));
            create_dir_durable(&tmp)?;
            write_atomic(&tmp.join(DIRIV_FILE), &random_array::<DIRIV_LEN>())?;
            fs::rename(&*short(&tmp)?, &*short(&loc.path)?).map_err(|e| Error::io(&loc.path, e))?;
            self.fresh.lock().insert(loc.path.join(DIRIV_FILE));
            fsync_dir(&loc.dir)?;
            changes.push(Change::new(ChangeKind::Added, format!("{d}/")));
        }
        Ok(changes)
    }

    /// Every entry below directory `p`, depth first, with its path.
    pub fn walk(&self, p: &VPath) -> Result<Vec<(VPath, Entry)>> {
        let mut out = Vec::new();
        let mut stack = vec![p.clone()];
        while let Some(dir) = stack.pop() {
            for e in self.list(&dir)?.entries {
                let child = dir.join(&e.name)?;
                if e.kind == Kind::Dir {
                    stack.push(child.clone());
                }
                out.push((child, e));
            }
        }
        Ok(out)
    }

    fn removal_changes(&self, p: &VPath, kind: Kind) -> Result<Vec<Change>> {
        let mut changes = Vec::new();
        if kind == Kind::Dir {
            for (path, e) in self.walk(p)? {
                // FIFOs, sockets and device nodes are not versioned.
                if e.kind == Kind::Special {
                    continue;
                }
                let shown = if e.kind == Kind::Dir {
                    format!("{path}/")
                } else {
                    path.to_string()
                };
                changes.push(Change::new(ChangeKind::Removed, shown));
            }
            changes.push(Change::new(ChangeKind::Removed, format!("{p}/")));
        } else {
            changes.push(Change::new(ChangeKind::Removed, p.to_string()));
        }
        Ok(changes)
    }

    /// Remove a file, or a directory (which must be empty unless `recursive`).
    pub fn remove(&self, p: &VPath, recursive: bool) -> Result<Vec<Change>> {
        self.remove_journaled(p, recursive, &|_| Ok(()))
    }

    /// [`Tree::remove`], calling `journal` with the backing path before
    /// anything is removed.
    pub fn remove_journaled(
        &self,
        p: &VPath,
        recursive: bool,
        journal: Journal,
    ) -> Result<Vec<Change>> {
        if p.is_root() {
            return Err(Error::Usage(
                "refusing to remove the vault root; use `pkfs vault delete`".into(),
            ));
        }
        let loc = self.locate(p)?;
        let kind = match Self::kind_at(&loc.path)? {
            None => return Err(Error::NotFound(p.to_string())),
            Some((k, _)) => k,
        };
        if kind == Kind::Dir && !recursive {
            let l = self.list(p)?;
            if !l.entries.is_empty() || !l.undecryptable.is_empty() {
                return Err(Error::NotEmpty(p.to_string()));
            }
        }
        let changes = self.removal_changes(p, kind)?;
        journal(&self.rel_of(&loc.path, p)?)?;
        let near = short(&loc.path)?;
        let res = if kind == Kind::Dir {
            fs::remove_dir_all(&*near)
        } else {
            fs::remove_file(&*near)
        };
        res.map_err(|e| Error::io(&loc.path, e))?;
        Self::remove_sidecar(&loc)?;
        fsync_dir(&loc.dir)?;
        Ok(changes)
    }

    /// Move `from` to `to`. When `to` is an existing directory the entry moves
    /// into it; an existing file is replaced only by a file.
    pub fn rename(&self, from: &VPath, to: &VPath) -> Result<Vec<Change>> {
        self.rename_journaled(from, to, &|_, _| Ok(()))
    }

    /// [`Tree::rename`], calling `journal` with the two backing paths (relative
    /// to the vault directory) once the move is known to be valid, right
    /// before anything on disk changes.
    pub fn rename_journaled(
        &self,
        from: &VPath,
        to: &VPath,
        journal: &dyn Fn(&str, &str) -> Result<()>,
    ) -> Result<Vec<Change>> {
        let src = self.locate(from)?;
        let kind = match Self::kind_at(&src.path)? {
            None => return Err(Error::NotFound(from.to_string())),
            Some((k, _)) => k,
        };
        let mut target = to.clone();
        if self.is_dir(to)? {
            let name = from.name().unwrap_or_default();
            target = to.join(name)?;
        }
        if target == *from {
            return Err(Error::Usage(format!(
                "{:?} is already at {:?}; nothing to move",
                from.to_string(),
                to.to_string()
            )));
        }
        if target.starts_with(from) {
            return Err(Error::Usage(format!(
                "cannot move {:?} into itself",
                from.to_string()
            )));
        }
        let dst = self.locate(&target)?;
        let replaced = match Self::kind_at(&dst.path)? {
            None => false,
            Some((Kind::Dir, _)) => return Err(Error::Exists(target.to_string())),
            Some(_) if kind == Kind::Dir => return Err(Error::NotADirectory(target.to_string())),
            Some(_) => true,
        };
        let mut changes = self.removal_changes(from, kind)?;
        for c in changes.clone() {
            let rest = &c.path[from.to_string().len()..];
            let kind = if replaced {
                ChangeKind::Modified
            } else {
                ChangeKind::Added
            };
            changes.push(Change::new(kind, format!("{target}{rest}")));
        }
        journal(
            &self.rel_of(&src.path, from)?,
            &self.rel_of(&dst.path, &target)?,
        )?;
        Self::write_sidecar(&dst)?;
        fs::rename(&*short(&src.path)?, &*short(&dst.path)?)
            .map_err(|e| Error::io(&dst.path, e))?;
        Self::remove_sidecar(&src)?;
        fsync_dir(&dst.dir)?;
        if src.dir != dst.dir {
            fsync_dir(&src.dir)?;
        }
        Ok(changes)
    }
}

/// Called with a backing path (relative to the vault directory) right before
/// a change of it reaches the disk: the change journal's hook.
pub type Journal<'a> = &'a dyn Fn(&str) -> Result<()>;

fn hex16(b: &[u8; 8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[path = "tree_link.rs"]
mod link;
#[path = "tree_locate.rs"]
mod locate;
#[path = "tree_stream.rs"]
mod stream;
pub use stream::STREAM_MIN;

#[cfg(test)]
#[path = "tree_tests.rs"]
mod tests;
