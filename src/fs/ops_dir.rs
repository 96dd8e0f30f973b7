//! Directory listings: opendir takes a snapshot, READDIR serves names from it,
//! and READDIRPLUS serves each name with its attributes, so that `ls -l`,
//! `find` and `rm -r` need no LOOKUP per entry.
//!
//! Every entry that READDIRPLUS returns, except "." and "..", counts as one
//! kernel lookup of its inode (the kernel sends FORGET for it later), just as
//! LOOKUP does. An entry that does not fit in the reply is not counted.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use fuser::{Errno, FileAttr, FileType, INodeNo};

use super::core::{kind_of, DirHandle, FsCore};
use super::errno::{FsResult, IoErrno};
use super::inodes::ROOT_INO;
use super::vaults::VaultFs;
use crate::format::names::{self, EntryKind};

/// A decrypted backing entry: plaintext name, backing name, backing inode
/// number, type.
type Entry4 = (Vec<u8>, String, u64, FileType);

/// One entry of a listing.
pub struct Listed {
    /// The inode number readdir shows (d_ino).
    pub ino: u64,
    pub kind: FileType,
    /// The plaintext name.
    pub name: Vec<u8>,
    pub source: Source,
}

/// Where READDIRPLUS finds an entry's attributes.
pub enum Source {
    /// "." or "..": the kernel ignores their attributes.
    Dot,
    /// A vault root in the mount root.
    VaultRoot,
    /// The backing entry of that name in the listed directory.
    Backing(String),
}

/// The listed directory as READDIRPLUS needs it, looked up once per request.
pub struct PlusDir {
    parent: u64,
    inner: Option<(Arc<VaultFs>, Arc<DirHandle>)>,
}

impl FsCore {
    pub fn opendir(&self, ino: u64) -> FsResult<u64> {
        let list = Arc::new(self.read_dir(ino)?);
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        self.dir_lists.lock().insert(fh, list);
        Ok(fh)
    }

    /// A snapshot of a directory's entries with inode numbers, "." and ".." first.
    fn read_dir(&self, ino: u64) -> FsResult<Vec<Listed>> {
        if ino == ROOT_INO {
            return Ok(self.root_entries());
        }
        let parent = self
            .inodes
            .read()
            .get(ino)
            .map(|i| i.parent)
            .ok_or(Errno::ENOENT)?;
        let mut out = vec![dot(ino, b"."), dot(parent, b"..")];
        let vault = self.vault_of(ino)?;
        let dir = self.dir(ino)?;
        // Entries live on their directory's device; getdents gives the rest.
        let st = dir.fd.stat_self().errno()?;
        self.owner_may(&st, 4)?;
        let dev = st.dev();
        for (name, raw, backing_ino, kind) in self.list(&vault, &dir)? {
            if ino == vault.root_ino && name == super::versions::VERSIONS_NAME {
                continue; // shadowed by `.versions`, see `fs/versions`
            }
            let known = self.inodes.read().by_backing(&vault.id, dev, backing_ino);
            // Unknown entries get a number from the far end of the range; the
            // kernel only shows it (readdir's d_ino), lookups assign the real
            // one. READDIRPLUS, which the kernel uses when it can, sends the
            // real one for every entry.
            let shown = known.unwrap_or(u64::MAX - out.len() as u64);
            out.push(Listed {
                ino: shown,
                kind,
                name,
                source: Source::Backing(raw),
            });
        }
        Ok(out)
    }

    /// Decrypted entries of a directory: (name, backing name, backing inode
    /// number, type), without a `stat` per entry.
    fn list(&self, vault: &VaultFs, dir: &DirHandle) -> FsResult<Vec<Entry4>> {
        let mut out = Vec::new();
        for (raw, backing_ino, t) in dir.fd.entries_typed().errno()? {
            let encoded = match names::classify(&raw) {
                EntryKind::Direct => raw.clone(),
                EntryKind::Long => {
                    match std::fs::read_to_string(dir.fd.at(&names::sidecar_of(&raw))) {
                        Ok(enc) if names::long_entry(&enc) == raw => enc,
                        _ => continue,
                    }
                }
                _ => continue,
            };
            let Ok(name) = vault.names.decrypt(&dir.iv, &encoded) else {
                tracing::warn!("an entry name in a directory of a vault does not authenticate");
                continue;
            };
            if names::validate(&name).is_err() {
                continue;
            }
            out.push((name, raw, backing_ino, kind_of(t)));
        }
        Ok(out)
    }

    /// The directory `ino` for a READDIRPLUS request.
    pub fn plus_dir(&self, ino: u64) -> PlusDir {
        let inner = match ino {
            ROOT_INO => None,
            _ => self.vault_of(ino).ok().zip(self.dir(ino).ok()),
        };
        PlusDir { parent: ino, inner }
    }

    /// The attributes READDIRPLUS returns for `e`, counting a lookup as LOOKUP
    /// does; None for an entry that is gone (it is left out of the reply).
    /// Attributes come from a fresh `stat`, not from the opendir snapshot.
    pub fn plus_attr(&self, d: &PlusDir, e: &Listed) -> Option<FileAttr> {
        match &e.source {
            Source::Dot => Some(FileAttr {
                ino: INodeNo(e.ino),
                ..self.root_attr()
            }),
            Source::VaultRoot => self.root_lookup(&e.name).ok(),
            Source::Backing(raw) => {
                let (vault, dir) = d.inner.as_ref()?;
                let m = dir.fd.stat(raw).ok()?;
                Some(self.register(vault, d.parent, &e.name, &m))
            }
        }
    }

    /// `e` with attributes `a` did not fit in the reply: take back its lookup.
    pub fn plus_unsent(&self, e: &Listed, a: &FileAttr) {
        if let Source::Backing(_) = e.source {
            self.inodes.write().forget(a.ino.0, 1);
        }
    }
}

/// "." or ".." of a listing.
pub(super) fn dot(ino: u64, name: &[u8]) -> Listed {
    Listed {
        ino,
        kind: FileType::Directory,
        name: name.to_vec(),
        source: Source::Dot,
    }
}
