//! What changed between two versions: their trees compared directory by
//! directory. A subtree whose git id is the same on both sides is skipped
//! unread, so a diff costs what changed, not the size of the vault; a
//! directory whose entries differ is listed on both sides with its names
//! decrypted and matched by plaintext name (a directory made again has a new
//! IV, so its encrypted names differ even where its plaintext names do not).
//!
//! Moves are exact, not guessed: a move keeps an entry's ciphertext (a file's
//! blob, a directory's tree with its own IV and names), while a copy or a new
//! file gets a new file id and salt, so its blob differs. An entry removed at
//! one path whose git object is added at another is reported once, as
//! renamed (a directory without the entries inside it). Empty files, whose
//! blobs are all the same, are never paired.

use super::{VEntry, Versions};
use crate::error::Result;
use crate::store::Kind;

/// How a path differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeltaKind {
    Added,
    Modified,
    Removed,
    /// Moved from `from` (its content unchanged).
    Renamed,
}

/// One path that differs between two versions.
#[derive(Debug, Clone)]
pub struct Delta {
    pub kind: DeltaKind,
    /// Plaintext path from the vault root, components joined by `/`; a
    /// directory ends in `/`.
    pub path: Vec<u8>,
    /// Where a renamed entry was.
    pub from: Option<Vec<u8>>,
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
        self.pair_moves(out)
    }

    /// Report an entry removed at one path and added, the same object, at
    /// another as one rename (see the module comment).
    fn pair_moves(&self, deltas: Vec<Delta>) -> Result<Vec<Delta>> {
        use std::collections::HashMap;
        let mut added: HashMap<git2::Oid, Vec<usize>> = HashMap::new();
        for (i, d) in deltas.iter().enumerate() {
            if let (DeltaKind::Added, Some(e)) = (d.kind, &d.new) {
                if e.kind == Kind::Dir || self.size(e)? > 0 {
                    added.entry(e.id).or_default().push(i);
                }
            }
        }
        // (removed index, added index), outermost first: the entries inside a
        // moved directory go with it.
        let mut pairs: Vec<(usize, usize)> = Vec::new();
        let mut gone_under: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let inside = |p: &[u8], dirs: &[(Vec<u8>, Vec<u8>)]| {
            dirs.iter()
                .any(|(from, to)| p.starts_with(from) || p.starts_with(to))
        };
        for (i, d) in deltas.iter().enumerate() {
            let (DeltaKind::Removed, Some(e)) = (d.kind, &d.old) else {
                continue;
            };
            if inside(&d.path, &gone_under) {
                continue;
            }
            let Some(list) = added.get_mut(&e.id) else {
                continue;
            };
            let Some(pos) = list
                .iter()
                .position(|&j| deltas[j].new.as_ref().is_some_and(|n| n.kind == e.kind))
            else {
                continue;
            };
            let j = list.remove(pos);
            if e.kind == Kind::Dir {
                gone_under.push((d.path.clone(), deltas[j].path.clone()));
            }
            pairs.push((i, j));
        }
        let mut drop = vec![false; deltas.len()];
        for (i, d) in deltas.iter().enumerate() {
            let outer = pairs.iter().any(|&(r, a)| r == i || a == i);
            if !outer && matches!(d.kind, DeltaKind::Added | DeltaKind::Removed) {
                drop[i] = inside(&d.path, &gone_under);
            }
        }
        let mut renamed: HashMap<usize, (Vec<u8>, Option<VEntry>)> = HashMap::new();
        for &(r, a) in &pairs {
            drop[r] = true;
            renamed.insert(a, (deltas[r].path.clone(), deltas[r].old.clone()));
        }
        let mut out = Vec::with_capacity(deltas.len());
        for (i, mut d) in deltas.into_iter().enumerate() {
            if drop[i] {
                continue;
            }
            if let Some((from, old)) = renamed.remove(&i) {
                d.kind = DeltaKind::Renamed;
                d.from = Some(from);
                d.old = old;
            }
            out.push(d);
        }
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
                        from: None,
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
            from: None,
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
