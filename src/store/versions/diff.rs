//! What changed between two versions: their trees compared directory by
//! directory. A subtree whose git id is the same on both sides is skipped
//! unread, so a diff costs what changed, not the size of the vault; a
//! directory whose entries differ is listed on both sides with its names
//! decrypted and matched by plaintext name (a directory made again has a new
//! IV, so its encrypted names differ even where its plaintext names do not).

use super::{VEntry, Versions};
use crate::error::Result;
use crate::store::Kind;

/// How a path differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeltaKind {
    Added,
    Modified,
    Removed,
}

/// One path that differs between two versions.
#[derive(Debug, Clone)]
pub struct Delta {
    pub kind: DeltaKind,
    /// Plaintext path from the vault root, components joined by `/`; a
    /// directory ends in `/`.
    pub path: Vec<u8>,
    pub old: Option<VEntry>,
    pub new: Option<VEntry>,
}

impl Versions {
    /// Every path that differs from `old` (a directory entry, usually a
    /// version's root) to `new`, in path order. An added or removed
    /// directory is listed, then everything inside it; a directory that
    /// holds other entries is not listed itself, only its entries.
    pub fn diff(&self, old: &VEntry, new: &VEntry) -> Result<Vec<Delta>> {
        let mut out = Vec::new();
        self.diff_dirs(old, new, &[], &mut out)?;
        Ok(out)
    }

    fn diff_dirs(&self, a: &VEntry, b: &VEntry, at: &[u8], out: &mut Vec<Delta>) -> Result<()> {
        if a.id == b.id {
            return Ok(());
        }
        let left = self.list(a)?;
        let right = self.list(b)?;
        let (mut i, mut j) = (0, 0);
        while i < left.len() || j < right.len() {
            let order = match (left.get(i), right.get(j)) {
                (Some(l), Some(r)) => l.name.cmp(&r.name),
                (Some(_), None) => std::cmp::Ordering::Less,
                _ => std::cmp::Ordering::Greater,
            };
            match order {
                std::cmp::Ordering::Less => {
                    self.whole(DeltaKind::Removed, &left[i], at, out)?;
                    i += 1;
                }
                std::cmp::Ordering::Greater => {
                    self.whole(DeltaKind::Added, &right[j], at, out)?;
                    j += 1;
                }
                std::cmp::Ordering::Equal => {
                    self.pair(&left[i], &right[j], at, out)?;
                    i += 1;
                    j += 1;
                }
            }
        }
        Ok(())
    }

    /// Entries of the same name on both sides.
    fn pair(&self, l: &VEntry, r: &VEntry, at: &[u8], out: &mut Vec<Delta>) -> Result<()> {
        match (l.kind == Kind::Dir, r.kind == Kind::Dir) {
            (true, true) => self.diff_dirs(l, r, &join(at, &l.name), out),
            (false, false) => {
                let path = join(at, &l.name);
                let shown = String::from_utf8_lossy(&path).into_owned();
                if l.kind != r.kind || l.exec != r.exec || !self.same_content(l, r, &shown)? {
                    out.push(Delta {
                        kind: DeltaKind::Modified,
                        path,
                        old: Some(l.clone()),
                        new: Some(r.clone()),
                    });
                }
                Ok(())
            }
            // A file became a directory or the other way round.
            _ => {
                self.whole(DeltaKind::Removed, l, at, out)?;
                self.whole(DeltaKind::Added, r, at, out)
            }
        }
    }

    /// `e` (and, for a directory, everything inside it) added or removed.
    fn whole(&self, kind: DeltaKind, e: &VEntry, at: &[u8], out: &mut Vec<Delta>) -> Result<()> {
        let mut path = join(at, &e.name);
        if e.kind == Kind::Dir {
            path.push(b'/');
        }
        let (old, new) = match kind {
            DeltaKind::Removed => (Some(e.clone()), None),
            _ => (None, Some(e.clone())),
        };
        out.push(Delta {
            kind,
            path,
            old,
            new,
        });
        if e.kind == Kind::Dir {
            let here = join(at, &e.name);
            for child in self.list(e)? {
                self.whole(kind, &child, &here, out)?;
            }
        }
        Ok(())
    }
}

/// `at/name` (`name` at the root).
fn join(at: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(at.len() + 1 + name.len());
    if !at.is_empty() {
        p.extend_from_slice(at);
        p.push(b'/');
    }
    p.extend_from_slice(name);
    p
}
