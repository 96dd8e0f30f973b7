//! `version restore`: bring paths back as they were at an older version, as
//! one new commit made through [`Vault::mutate`] like every other change, so
//! each path is journaled before it changes and a failure undoes them all.
//!
//! A file at REF replaces whatever is at its path now (a directory there is
//! removed first). A directory at REF comes back with its whole subtree as it
//! was: entries inside it that exist now but did not at REF are removed (the
//! history keeps them), so the directory afterwards lists exactly what it
//! listed at REF. Parents that are missing are made; a parent that is a file
//! now is replaced by a directory. Contents come back, not modes or times;
//! a symlink cannot be made outside the mount and is skipped and reported.
//! Names of one hard-linked file at REF (one non-empty blob id:
//! `store/hardlinks.rs`) come back as one file: the first is written, the
//! others are linked to it.

use std::collections::HashMap;

use git2::Oid;

use crate::error::{Error, Result};
use crate::store::history::versions::{VEntry, Versions};
use crate::store::{Change, Kind, VPath};

use super::handle::{Txn, Vault};

/// What a restore did.
#[derive(Debug, Default, Clone)]
pub struct Restored {
    /// The full id of the version restored from.
    pub from: String,
    /// The change list of the new commit (empty: nothing differed).
    pub changes: Vec<Change>,
    /// Paths at REF that could not be brought back (symlinks).
    pub skipped: Vec<String>,
    /// The new commit's id, when one was made.
    pub commit: Option<String>,
}

impl Vault {
    /// Bring back `paths` as they were at version `spec` (see the module
    /// comment). Every path must exist at `spec`; else nothing changes and
    /// the error is [`Error::NotFound`].
    pub fn restore(&self, spec: &str, paths: &[VPath]) -> Result<Restored> {
        let versions = self.history().versions(self.tree().keys())?;
        let id = versions.resolve(spec)?;
        let mut found = Vec::new();
        for p in paths {
            match versions.lookup(id, p)? {
                Some(e) => found.push((p.clone(), e)),
                None => {
                    return Err(Error::NotFound(format!(
                        "{p} (at version {})",
                        &id.to_string()[..8]
                    )))
                }
            }
        }
        let before = self.history().head()?.id;
        let mut out = Restored {
            from: id.to_string(),
            ..Restored::default()
        };
        let mut skipped = Vec::new();
        let changes = self.mutate(|t, ch| {
            let mut r = Restorer {
                v: &versions,
                skipped: &mut skipped,
                files: HashMap::new(),
            };
            for (p, e) in &found {
                r.entry(t, p, e, ch)?;
            }
            Ok(ch.clone())
        })?;
        out.changes = changes;
        out.skipped = skipped;
        let after = self.history().head()?.id;
        out.commit = (after != before).then_some(after);
        Ok(out)
    }
}

/// What one restore walks with.
struct Restorer<'a> {
    v: &'a Versions,
    skipped: &'a mut Vec<String>,
    /// The files brought back so far, by their blob id at REF.
    files: HashMap<Oid, VPath>,
}

impl Restorer<'_> {
    /// Make `p` what `e` was.
    fn entry(&mut self, t: &Txn<'_>, p: &VPath, e: &VEntry, ch: &mut Vec<Change>) -> Result<()> {
        let v = self.v;
        let live = match t.stat(p) {
            Ok(s) => Some(s.kind),
            Err(Error::NotFound(_)) => None,
            Err(err) => return Err(err),
        };
        match e.kind {
            Kind::Symlink | Kind::Special => {
                self.skipped.push(p.to_string());
                Ok(())
            }
            Kind::File => {
                if let Some(first) = self.files.get(&e.id).filter(|f| *f != p) {
                    return link_name(t, first, p, live, ch);
                }
                if Some(e.id) != empty_blob() {
                    self.files.insert(e.id, p.clone());
                }
                let data = v.read(e, &p.to_string())?;
                match live {
                    Some(Kind::File) if *t.read(p)? == *data => return Ok(()),
                    Some(Kind::File) => {}
                    Some(_) => ch.extend(t.remove(p, true)?),
                    None => make_parents(t, p, ch)?,
                }
                let c = t.write(p, &data)?;
                if !ch.contains(&c) {
                    ch.push(c);
                }
                Ok(())
            }
            Kind::Dir => {
                match live {
                    Some(Kind::Dir) => {}
                    Some(_) => {
                        ch.extend(t.remove(p, true)?);
                        ch.extend(t.mkdir(p, true)?);
                    }
                    None => {
                        make_parents(t, p, ch)?;
                        ch.extend(t.mkdir(p, true)?);
                    }
                }
                let then = v.list(e)?;
                for now in t.list(p)?.entries {
                    if !then.iter().any(|x| x.name == now.name) {
                        let gone = p.join(&now.name)?;
                        ch.extend(t.remove(&gone, true)?);
                    }
                }
                for child in &then {
                    self.entry(t, &p.join(&child.name)?, child, ch)?;
                }
                Ok(())
            }
        }
    }
}

/// The blob id of the empty file (the same for every empty file: never
/// taken for a hard link).
fn empty_blob() -> Option<Oid> {
    Oid::hash_object(git2::ObjectType::Blob, b"").ok()
}

/// Make `p` one more name of the file restored at `first`.
fn link_name(
    t: &Txn<'_>,
    first: &VPath,
    p: &VPath,
    live: Option<Kind>,
    ch: &mut Vec<Change>,
) -> Result<()> {
    match live {
        Some(Kind::File) if t.same_file(first, p)? => return Ok(()),
        Some(_) => ch.extend(t.remove(p, true)?),
        None => make_parents(t, p, ch)?,
    }
    let mut c = t.link(first, p)?;
    if live == Some(Kind::File) {
        // A file replaced by a link: one modification, not a removal.
        ch.retain(|x| x.path != c.path);
        c = Change::new(crate::store::ChangeKind::Modified, c.path);
    }
    if !ch.contains(&c) {
        ch.push(c);
    }
    Ok(())
}

/// Make the parent directories of `p`, replacing a file that stands where a
/// directory must be.
fn make_parents(t: &Txn<'_>, p: &VPath, ch: &mut Vec<Change>) -> Result<()> {
    let Some(parent) = p.parent() else {
        return Ok(());
    };
    let mut cur = VPath::root();
    for c in parent.components() {
        cur = cur.join(c)?;
        match t.stat(&cur) {
            Ok(s) if s.kind == Kind::Dir => continue,
            Ok(_) => {
                ch.extend(t.remove(&cur, false)?);
                break;
            }
            Err(Error::NotFound(_)) => break,
            Err(err) => return Err(err),
        }
    }
    ch.extend(t.mkdir(&parent, true)?);
    Ok(())
}
