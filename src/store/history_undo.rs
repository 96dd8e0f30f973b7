//! Undoing a CLI command that did not commit.
//!
//! A command that changes a vault (`Vault::mutate`, `Vault::rename`) first
//! writes a *command* record into the change journal, then journals each
//! backing path before it changes it, and commits at the end (which empties
//! the journal). When it fails, or when the process dies before its commit,
//! every path journaled after the command record gets HEAD's entry back (or
//! none, where HEAD has none), the index entries below those paths are
//! staged again from what is now on disk, and the journal is cut back to
//! what it held before the command. The failed process does this itself;
//! after a crash, the next open of the vault does. So a command leaves its
//! whole change or nothing, and never a half-made tree that is neither HEAD
//! nor journaled.

use std::fs;
use std::io::ErrorKind;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

use git2::{ObjectType, Repository, TreeEntry};

use super::{head_target, Ctx, History, TRACKED};
use crate::error::{Error, Result};
use crate::format::names::LONG_SUFFIX;
use crate::store::atomic::{fsync_dir, write_atomic};
use crate::store::stage::{self, Adopt};

impl History {
    /// Record, durably, that a CLI command starts changing the vault (see
    /// the module comment).
    pub fn begin_command(&self) -> Result<()> {
        self.journal.borrow_mut().begin_command()
    }

    /// Is a command begun and neither committed nor undone?
    pub fn in_command(&self) -> bool {
        self.journal.borrow().command_paths().is_some()
    }

    /// Give every path the unfinished command touched HEAD's entry back, and
    /// forget its journal records. Nothing to do without such a command.
    pub fn undo_command(&self) -> Result<()> {
        let Some(paths) = self.journal.borrow().command_paths() else {
            return Ok(());
        };
        let paths = topmost(paths);
        if !paths.is_empty() {
            let repo = self.repo.borrow();
            let repo = &*repo;
            let head = head_target(repo)?;
            let tree = match head {
                Some(h) => Some(
                    repo.find_commit(h)
                        .and_then(|c| c.tree())
                        .ctx("reading HEAD's tree")?,
                ),
                None => None,
            };
            for rel in &paths {
                restore(repo, &self.vault_dir, tree.as_ref(), rel)?;
            }
            // The index below those paths must say HEAD again too (a commit
            // that failed half-way may have staged some of them).
            if tree.is_some() {
                let mut index = repo.index().ctx("opening the index")?;
                let adopt = |rel: &str| {
                    if paths.iter().any(|p| covered(rel, p)) {
                        Adopt::Yes
                    } else {
                        Adopt::No
                    }
                };
                stage::stage(repo, &mut index, &self.vault_dir, TRACKED, &adopt, None)?;
                index.write().ctx("writing the index")?;
            }
        }
        self.journal.borrow_mut().drop_command()
    }

    /// After a crash: undo a command that never committed (at open).
    pub(super) fn finish_interrupted_command(&self) {
        if !self.in_command() {
            return;
        }
        tracing::warn!("undoing the changes of a command that did not finish");
        if let Err(e) = self.undo_command() {
            // Its paths stay journaled, so nothing looks like tampering; the
            // next open tries again.
            tracing::error!("undoing an unfinished command: {e}");
        }
    }
}

/// Is `rel` the entry `p`, below it, or its long-name sidecar?
fn covered(rel: &str, p: &str) -> bool {
    match rel.strip_prefix(p) {
        Some(rest) => rest.is_empty() || rest.starts_with('/') || rest == LONG_SUFFIX,
        None => false,
    }
}

/// The paths that no other path of the list covers.
fn topmost(mut paths: Vec<String>) -> Vec<String> {
    paths.sort();
    paths.dedup();
    let all = paths.clone();
    paths.retain(|p| !all.iter().any(|q| q != p && covered(p, q)));
    paths
}

/// Put HEAD's entry at `rel` (and its sidecar) back, or remove what is
/// there when HEAD has none.
fn restore(
    repo: &Repository,
    vault_dir: &Path,
    head: Option<&git2::Tree<'_>>,
    rel: &str,
) -> Result<()> {
    let sidecar = format!("{rel}{LONG_SUFFIX}");
    for r in [rel, sidecar.as_str()] {
        let path = vault_dir.join(r);
        remove_any(&path)?;
        if let Some(e) = head.and_then(|t| t.get_path(Path::new(r)).ok()) {
            write_entry(repo, &e, &path)?;
        }
    }
    match vault_dir.join(rel).parent() {
        Some(dir) if dir.is_dir() => fsync_dir(dir),
        _ => Ok(()),
    }
}

fn remove_any(path: &Path) -> Result<()> {
    let res = match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) => Err(e),
    };
    match res {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(Error::io(path, e)),
        _ => Ok(()),
    }
}

/// Write the git entry `e` (a blob, a symlink or a whole tree) at `path`.
fn write_entry(repo: &Repository, e: &TreeEntry<'_>, path: &Path) -> Result<()> {
    match e.kind() {
        Some(ObjectType::Blob) => {
            let blob = repo.find_blob(e.id()).ctx("reading a committed blob")?;
            if e.filemode() == 0o120000 {
                let target = std::ffi::OsStr::from_bytes(blob.content());
                std::os::unix::fs::symlink(target, path).map_err(|err| Error::io(path, err))
            } else {
                write_atomic(path, blob.content())?;
                let mode = if e.filemode() == 0o100755 {
                    0o700
                } else {
                    0o600
                };
                fs::set_permissions(path, fs::Permissions::from_mode(mode))
                    .map_err(|err| Error::io(path, err))
            }
        }
        Some(ObjectType::Tree) => {
            fs::DirBuilder::new()
                .mode(0o700)
                .create(path)
                .map_err(|err| Error::io(path, err))?;
            let tree = repo.find_tree(e.id()).ctx("reading a committed tree")?;
            for child in tree.iter() {
                let Ok(name) = child.name() else {
                    continue; // pkfs never commits a name that is not UTF-8
                };
                write_entry(repo, &child, &path.join(name))?;
            }
            fsync_dir(path)
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topmost_keeps_the_outermost_paths() {
        let got = topmost(vec![
            "contents/a/b".into(),
            "contents/a".into(),
            "contents/ab".into(),
            "contents/a.name".into(),
            "contents/c".into(),
            "contents/c".into(),
        ]);
        assert_eq!(got, ["contents/a", "contents/ab", "contents/c"]);
    }
}
