//! `user.*` extended attributes, stored encrypted on the backing entry (names
//! and values; layout in `format::links`). Other namespaces are not supported.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use fuser::Errno;

use super::core::FsCore;
use super::errno::FsResult;
use super::inodes::ROOT_INO;
use super::vaults::VaultFs;
use crate::format::links::XATTR_LONG_PREFIX;
use crate::store::stat::Stat;
use crate::store::ChangeKind;

fn c(p: &std::path::Path) -> FsResult<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL)
}

fn last_errno() -> Errno {
    super::errno::from_io(&std::io::Error::last_os_error())
}

impl FsCore {
    fn xattr_target(&self, ino: u64) -> FsResult<PathBuf> {
        if ino == ROOT_INO {
            return Err(Errno::EOPNOTSUPP);
        }
        let v = self.vault_of(ino)?;
        if ino == v.root_ino {
            return Ok(self.dir(ino)?.fd.path());
        }
        let e = self.entry_of(ino)?;
        Ok(e.dir.fd.at(e.name()))
    }

    /// The backing name of `name`, and for a long one the encrypted name that
    /// goes before its value (`format::links`).
    fn disk_xattr_name(&self, ino: u64, name: &[u8]) -> FsResult<(String, Option<String>)> {
        if !name.starts_with(b"user.") {
            return Err(Errno::EOPNOTSUPP);
        }
        // An empty name after the namespace, as ext4 and tmpfs refuse it.
        if name.len() == b"user.".len() {
            return Err(Errno::EINVAL);
        }
        // As ext4: at most 255 bytes (the kernel checks it first anyway).
        if name.len() > crate::format::links::XATTR_NAME_MAX {
            return Err(Errno::ERANGE);
        }
        Ok(self.vault_of(ino)?.links.xattr_disk(name))
    }

    /// A changed attribute changes its entry (listed as such in the commit
    /// message, a directory with its trailing `/`).
    fn record_xattr_change(&self, vault: &VaultFs, ino: u64, target: &Path) {
        match Stat::of_path(target) {
            Ok(m) => vault.record_entry(ChangeKind::Modified, self.path_of(ino), &m),
            Err(_) => vault.record(ChangeKind::Modified, self.path_of(ino)),
        }
    }

    pub fn setxattr(&self, ino: u64, name: &[u8], value: &[u8], flags: i32) -> FsResult<()> {
        self.check_writable()?;
        let (disk, long) = self.disk_xattr_name(ino, name)?;
        let vault = self.vault_of(ino)?;
        let sealed = vault.links.seal_xattr_value(&disk, long.as_deref(), value);
        let target = self.xattr_target(ino)?;
        let path = c(&target)?;
        let n = CString::new(disk).map_err(|_| Errno::EINVAL)?;
        let _gate = vault.gate.read();
        Self::check_list_room(&path, &n)?;
        // SAFETY: valid C strings and buffer; result checked.
        let rc = unsafe {
            libc::lsetxattr(
                path.as_ptr(),
                n.as_ptr(),
                sealed.as_ptr().cast(),
                sealed.len(),
                flags,
            )
        };
        if rc < 0 {
            return Err(last_errno());
        }
        self.record_xattr_change(&vault, ino, &target);
        Ok(())
    }

    /// Refuse (ENOSPC) a new name that would make the backing entry's name
    /// list longer than listxattr(2) can return (XATTR_LIST_MAX): set, it
    /// could never be listed back. The plaintext list is shorter than the
    /// backing one, so it fits too. Replacing an existing name adds nothing.
    fn check_list_room(path: &CString, name: &CString) -> FsResult<()> {
        const XATTR_LIST_MAX: usize = 65536;
        // SAFETY: a null buffer with size 0 asks for the size; result checked.
        let exists =
            unsafe { libc::lgetxattr(path.as_ptr(), name.as_ptr(), std::ptr::null_mut(), 0) };
        if exists >= 0 {
            return Ok(());
        }
        // SAFETY: size query with a null buffer; result checked.
        let len = unsafe { libc::llistxattr(path.as_ptr(), std::ptr::null_mut(), 0) };
        if len < 0 {
            return Err(last_errno());
        }
        if len as usize + name.as_bytes_with_nul().len() > XATTR_LIST_MAX {
            return Err(Errno::ENOSPC);
        }
        Ok(())
    }

    /// The raw (sealed) value of a backing xattr.
    fn raw_get(path: &CString, name: &CString) -> FsResult<Vec<u8>> {
        // SAFETY: a null buffer with size 0 asks for the size; result checked.
        let len = unsafe { libc::lgetxattr(path.as_ptr(), name.as_ptr(), std::ptr::null_mut(), 0) };
        if len < 0 {
            return Err(last_errno());
        }
        let mut buf = vec![0u8; len as usize];
        // SAFETY: buf has room for len bytes; result checked.
        let got = unsafe {
            libc::lgetxattr(
                path.as_ptr(),
                name.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        if got < 0 {
            return Err(last_errno());
        }
        buf.truncate(got as usize);
        Ok(buf)
    }

    pub fn getxattr(&self, ino: u64, name: &[u8]) -> FsResult<Vec<u8>> {
        let (disk, _) = match self.disk_xattr_name(ino, name) {
            Err(Errno::EOPNOTSUPP) => return Err(Errno::ENODATA),
            other => other?,
        };
        let path = c(&self.xattr_target(ino)?)?;
        let n = CString::new(disk.clone()).map_err(|_| Errno::EINVAL)?;
        let raw = Self::raw_get(&path, &n)?;
        let vault = self.vault_of(ino)?;
        let plain = vault.links.open_xattr_value(&disk, &raw).ok_or_else(|| {
            tracing::warn!("an extended attribute does not authenticate");
            Errno::EIO
        })?;
        Ok(plain.to_vec())
    }

    /// NUL-separated plaintext names.
    pub fn listxattr(&self, ino: u64) -> FsResult<Vec<u8>> {
        if ino == ROOT_INO {
            return Ok(Vec::new());
        }
        let path = c(&self.xattr_target(ino)?)?;
        // SAFETY: size query with a null buffer; result checked.
        let len = unsafe { libc::llistxattr(path.as_ptr(), std::ptr::null_mut(), 0) };
        if len < 0 {
            return Err(last_errno());
        }
        let mut buf = vec![0u8; len as usize];
        // SAFETY: buf has room for len bytes; result checked.
        let got = unsafe { libc::llistxattr(path.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if got < 0 {
            return Err(last_errno());
        }
        buf.truncate(got as usize);
        let vault = self.vault_of(ino)?;
        let mut out = Vec::new();
        for raw in buf.split(|b| *b == 0).filter(|s| !s.is_empty()) {
            let Ok(disk) = std::str::from_utf8(raw) else {
                continue;
            };
            let plain = if disk.starts_with(XATTR_LONG_PREFIX) {
                // A long name is in front of its value.
                let n = CString::new(disk).map_err(|_| Errno::EINVAL)?;
                Self::raw_get(&path, &n)
                    .ok()
                    .and_then(|v| vault.links.xattr_long_plain_name(disk, &v))
            } else {
                vault.links.xattr_plain_name(disk)
            };
            if let Some(name) = plain {
                out.extend_from_slice(&name);
                out.push(0);
            }
        }
        Ok(out)
    }

    pub fn removexattr(&self, ino: u64, name: &[u8]) -> FsResult<()> {
        self.check_writable()?;
        let (disk, _) = match self.disk_xattr_name(ino, name) {
            Err(Errno::EOPNOTSUPP) => return Err(Errno::ENODATA),
            other => other?,
        };
        let target = self.xattr_target(ino)?;
        let path = c(&target)?;
        let n = CString::new(disk).map_err(|_| Errno::EINVAL)?;
        let vault = self.vault_of(ino)?;
        let _gate = vault.gate.read();
        // SAFETY: valid C strings; result checked.
        if unsafe { libc::lremovexattr(path.as_ptr(), n.as_ptr()) } < 0 {
            return Err(last_errno());
        }
        self.record_xattr_change(&vault, ino, &target);
        Ok(())
    }
}
