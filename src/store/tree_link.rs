//! A second name for a file (a hard link) made outside the mount, as
//! `version restore` does for the names of one hard-linked file
//! (`store/hardlinks.rs`).

use super::{Journal, Kind, Tree};
use crate::error::{Error, Result};
use crate::store::dirfd::{short, DirFd};
use crate::store::{Change, ChangeKind, VPath};

impl Tree {
    /// Make `to` (which must not exist) one more name of the file `from`:
    /// journaled, then linked, then its directory fsync'd.
    pub fn link_journaled(&self, from: &VPath, to: &VPath, journal: Journal) -> Result<Change> {
        let src = self.locate(from)?;
        match Self::kind_at(&src.path)? {
            Some((Kind::File, _)) => {}
            Some(_) => return Err(Error::Usage(format!("{from} is not a file"))),
            None => return Err(Error::NotFound(from.to_string())),
        }
        let dst = self.locate(to)?;
        if Self::kind_at(&dst.path)?.is_some() {
            return Err(Error::Exists(to.to_string()));
        }
        journal(&self.rel_of(&dst.path, to)?)?;
        Self::write_sidecar(&dst)?;
        std::fs::hard_link(&*short(&src.path)?, &*short(&dst.path)?)
            .map_err(|e| Error::io(&dst.path, e))?;
        DirFd::open(&short(&dst.dir)?)
            .and_then(|d| d.fsync())
            .map_err(|e| Error::io(&dst.dir, e))?;
        Ok(Change::new(ChangeKind::Added, to.to_string()))
    }

    /// Are `a` and `b` names of one file (one backing inode)?
    pub fn same_file(&self, a: &VPath, b: &VPath) -> Result<bool> {
        use std::os::unix::fs::MetadataExt;
        let (a, b) = (self.locate(a)?, self.locate(b)?);
        let (ma, mb) = (Self::kind_at(&a.path)?, Self::kind_at(&b.path)?);
        Ok(match (ma, mb) {
            (Some((_, x)), Some((_, y))) => x.dev() == y.dev() && x.ino() == y.ino(),
            _ => false,
        })
    }
}
