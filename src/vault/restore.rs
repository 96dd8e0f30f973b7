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
            for (p, e) in &found {
                restore_entry(t, &versions, p, e, ch, &mut skipped)?;
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

/// Make `p` what `e` was.
fn restore_entry(
    t: &Txn<'_>,
    v: &Versions,
    p: &VPath,
    e: &VEntry,
    ch: &mut Vec<Change>,
    skipped: &mut Vec<String>,
) -> Result<()> {
    let live = match t.stat(p) {
        Ok(s) => Some(s.kind),
        Err(Error::NotFound(_)) => None,
        Err(err) => return Err(err),
    };
    match e.kind {
        Kind::Symlink | Kind::Special => {
            skipped.push(p.to_string());
            Ok(())
        }
        Kind::File => {
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
                restore_entry(t, v, &p.join(&child.name)?, child, ch, skipped)?;
            }
            Ok(())
        }
    }
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
