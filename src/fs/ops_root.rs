//! The mount root: one directory per vault. `mkdir` creates a vault, `mv`
//! renames one; removal is `pkfs vault delete` only (EPERM here). `chmod`
//! sets its mode, kept in the vault table (`Node::set_mount_root_mode`).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use fuser::{Errno, FileAttr, FileType};

use super::core::FsCore;
use super::errno::{from_error, FsResult, IoErrno};
use super::inodes::ROOT_INO;
use super::ops_dir::{dot, Listed, Source};
use super::ops_entry::SetAttr;
use super::vaults::VaultFs;

impl FsCore {
    /// Add a vault to the mount (at start, or when one appears).
    pub fn add_vault(&self, name: &str) -> crate::Result<Arc<VaultFs>> {
        let vault = {
            let mut node = self.node.lock();
            // Opening the vault: add a key generation if one is due.
            if !self.cfg.ro {
                if let Err(e) = node.rotate_if_due(name) {
                    tracing::warn!("automatic key rotation failed: {e}");
                }
            }
            node.open_vault(name)?
        };
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

    /// `access(2)` on the root. Asked only without `default_permissions`,
    /// when the caller is the daemon's own user: its owner bits decide (root
    /// passes, as the kernel would let it).
    pub(super) fn root_access(&self, mask: i32) -> FsResult<()> {
        let owner = (self.root_mode.load(Ordering::Relaxed) >> 6) as i32 & 7;
        if self.uid == 0 || mask & 7 & !owner == 0 {
            Ok(())
        } else {
            Err(Errno::EACCES)
        }
    }

    /// A new or renamed vault needs the root's owner write bit (the kernel
    /// checks it itself under `default_permissions`).
    fn root_check_write(&self) -> FsResult<()> {
        self.check_writable()?;
        self.root_access(libc::W_OK | libc::X_OK)
    }

    /// `chmod` of the mount root: the owner's choice, kept for the next
    /// mounts. Its owner, size and times are the daemon's: a change of any
    /// of them is EPERM.
    pub(super) fn root_setattr(&self, a: &SetAttr) -> FsResult<FileAttr> {
        let foreign = |id: Option<u32>, own: u32| id.is_some_and(|i| i != own);
        let times = a.atime.is_some() || a.mtime.is_some();
        if a.size.is_some() || times || foreign(a.uid, self.uid) || foreign(a.gid, self.gid) {
            return Err(Errno::EPERM);
        }
        if let Some(mode) = a.mode {
            self.check_writable()?;
            let mode = mode & 0o7777;
            self.node
                .lock()
                .set_mount_root_mode(mode)
                .map_err(|e| from_error(&e))?;
            self.root_mode.store(mode, Ordering::Relaxed);
        }
        Ok(self.root_attr())
    }

    pub(super) fn root_mkdir(&self, name: &[u8]) -> FsResult<FileAttr> {
        self.root_check_write()?;
        name_fits(name)?;
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
        self.root_check_write()?;
        name_fits(newname)?;
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

/// A vault name longer than a file name may be is ENAMETOOLONG, as for any
/// entry inside a vault (the other rules give EINVAL).
fn name_fits(name: &[u8]) -> FsResult<()> {
    if name.len() > crate::format::names::NAME_MAX {
        return Err(Errno::ENAMETOOLONG);
    }
    Ok(())
}
