//! The mount root: one directory per vault. `mkdir` creates a vault, `mv`
//! renames one; removal is `pkfs vault delete` only (EPERM here).

use std::sync::Arc;

use fuser::{Errno, FileAttr, FileType};

use super::core::FsCore;
use super::errno::{from_error, FsResult, IoErrno};
use super::inodes::ROOT_INO;
use super::ops_dir::{dot, Listed, Source};
use super::vaults::VaultFs;

impl FsCore {
    /// Add a vault to the mount (at start, or when one appears).
    pub fn add_vault(&self, name: &str) -> crate::Result<Arc<VaultFs>> {
        let vault = self.node.lock().open_vault(name)?;
        let ino = self.inodes.write().alloc();
        let v = Arc::new(VaultFs::new(vault, ino));
        self.inodes.write().add_vault_root(ino, v.clone(), name);
        self.vaults.write().push(v.clone());
        Ok(v)
    }

    pub(super) fn root_lookup(&self, name: &[u8]) -> FsResult<FileAttr> {
        let v = self.vault_by_name(name).ok_or(Errno::ENOENT)?;
        let m = crate::store::stat::Stat::of_path(&v.contents).errno()?;
        Ok(self.attr(v.root_ino, &m))
    }

    pub(super) fn root_entries(&self) -> Vec<Listed> {
        let mut out = vec![dot(ROOT_INO, b"."), dot(ROOT_INO, b"..")];
        for v in self.vaults.read().iter() {
            out.push(Listed {
                ino: v.root_ino,
                kind: FileType::Directory,
                name: v.name().into_bytes(),
                source: Source::VaultRoot,
            });
        }
        out
    }

    pub(super) fn root_mkdir(&self, name: &[u8]) -> FsResult<FileAttr> {
        self.check_writable()?;
        let name = std::str::from_utf8(name).map_err(|_| Errno::EINVAL)?;
        self.node
            .lock()
            .create_vault(name)
            .map_err(|e| from_error(&e))?;
        self.add_vault(name).map_err(|e| from_error(&e))?;
        self.root_lookup(name.as_bytes())
    }

    pub(super) fn root_rename(
        &self,
        parent: u64,
        name: &[u8],
        newparent: u64,
        newname: &[u8],
        flags: u32,
    ) -> FsResult<()> {
        if parent != newparent {
            return Err(Errno::EXDEV);
        }
        self.check_writable()?;
        if flags & libc::RENAME_EXCHANGE != 0 {
            return Err(Errno::EINVAL);
        }
        let old = std::str::from_utf8(name).map_err(|_| Errno::ENOENT)?;
        let new = std::str::from_utf8(newname).map_err(|_| Errno::EINVAL)?;
        let v = self.vault_by_name(name).ok_or(Errno::ENOENT)?;
        if old != new && self.vault_by_name(newname).is_some() {
            return Err(Errno::EEXIST);
        }
        self.node
            .lock()
            .rename_vault(old, new)
            .map_err(|e| from_error(&e))?;
        *v.name.write() = new.to_string();
        self.inodes.write().rename_vault_root(v.root_ino, new);
        Ok(())
    }
}
