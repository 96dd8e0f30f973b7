//! Finding a plaintext path's backing entry: the directory IVs on the way
//! (checked against HEAD), the walk down through directory descriptors, and
//! the depth the history can hold.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use super::{Located, Tree};
use crate::error::{Error, Result};
use crate::format::names::{DirIv, DiskName, DIRIV_FILE, DIRIV_LEN};
use crate::store::dirfd::{short, DirFd};
use crate::store::journal::MAX_BACKING_PATH;
use crate::store::VPath;

impl Tree {
    pub(super) fn diriv(&self, dir: &Path, shown: &VPath) -> Result<DirIv> {
        let p = dir.join(DIRIV_FILE);
        let read = fs::read(&*short(&p)?);
        self.check_diriv(&p, read, shown)
    }

    /// The IV read from `p` (of plaintext directory `shown`), checked.
    fn check_diriv(
        &self,
        p: &Path,
        read: std::io::Result<Vec<u8>>,
        shown: &VPath,
    ) -> Result<DirIv> {
        let bytes = read.map_err(|e| match e.kind() {
            ErrorKind::NotFound => Error::corrupt(shown, "directory IV file is missing"),
            _ => Error::io(p, e),
        })?;
        let seal = self.seal_for(p);
        if let Some(seal) = seal {
            seal.verify_bytes(p, &bytes).map_err(|e| match e {
                Error::Corrupt { what, .. } => {
                    Error::corrupt(shown, format!("directory IV: {what}"))
                }
                e => e,
            })?;
        }
        bytes
            .as_slice()
            .try_into()
            .map_err(|_| Error::corrupt(shown, "directory IV file has the wrong size"))
    }

    /// The backing directory of plaintext directory `p`, walked down through
    /// directory descriptors (one `openat` per level, whatever the depth).
    pub(super) fn backing_dir(&self, p: &VPath) -> Result<PathBuf> {
        let mut dir = self.contents.clone();
        let mut fd = DirFd::open(&dir).map_err(|e| Error::io(&dir, e))?;
        let mut shown = VPath::root();
        for c in p.components() {
            shown = shown.join(c)?;
            let read = fs::read(fd.at(DIRIV_FILE));
            let iv = self.check_diriv(&dir.join(DIRIV_FILE), read, &shown)?;
            let disk = DiskName::from_encoded(self.names.encrypt(&iv, c));
            let next = dir.join(disk.entry());
            match fs::symlink_metadata(fd.at(disk.entry())) {
                Ok(m) if m.is_dir() => {
                    fd = fd.child(disk.entry()).map_err(|e| Error::io(&next, e))?;
                    dir = next;
                }
                Ok(_) => return Err(Error::NotADirectory(shown.to_string())),
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    return Err(Error::NotFound(shown.to_string()))
                }
                Err(e) => return Err(Error::io(&next, e)),
            }
        }
        Ok(dir)
    }

    /// Refuse `p` when its backing path would be longer than the history
    /// holds ([`MAX_BACKING_PATH`], as the mount does with ENAMETOOLONG). An
    /// encrypted name's length depends on its plaintext's length only, so
    /// this is known before the disk is touched.
    pub(super) fn check_depth(&self, p: &VPath) -> Result<()> {
        let mut len = self.contents.file_name().map_or(0, |n| n.len());
        for c in p.components() {
            let disk = DiskName::from_encoded(self.names.encrypt(&[0; DIRIV_LEN], c));
            len += 1 + disk.entry().len();
            if len > MAX_BACKING_PATH {
                return Err(Error::InvalidName {
                    name: p.to_string(),
                    reason:
                        "too deep: its backing path would pass 64 KiB, the most the history holds",
                });
            }
        }
        Ok(())
    }

    /// Where entry `p` lives (or would be created). Its parent must exist.
    pub(super) fn locate(&self, p: &VPath) -> Result<Located> {
        self.check_depth(p)?;
        let (parent, name) = match (p.parent(), p.name()) {
            (Some(parent), Some(name)) => (parent, name),
            _ => {
                return Err(Error::Usage(
                    "the vault root has no entry of its own".into(),
                ))
            }
        };
        let dir = self.backing_dir(&parent)?;
        let iv = self.diriv(&dir, &parent)?;
        let disk = DiskName::from_encoded(self.names.encrypt(&iv, name));
        let path = dir.join(disk.entry());
        Ok(Located { dir, disk, path })
    }
}
