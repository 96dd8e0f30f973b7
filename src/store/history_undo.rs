//! Undoing a CLI command that did not commit.
//!
//! A command that changes a vault (`Vault::mutate`, `Vault::rename`) first
//! writes a *command* record into the change journal, then journals each
//! backing path before it changes it, and commits at the end (which empties
//! the journal). When it fails, or when the process dies before its commit,
//! every path journaled after the command record gets HEAD's entry back (or
//! none, where HEAD has none), and the journal is cut back to what it held
//! before the command. Entries are reached through directory descriptors,
//! never by a full backing path (`dirfd.rs`). The failed process does this itself;
//! after a crash, the next open of the vault does. So a command leaves its
//! whole change or nothing, and never a half-made tree that is neither HEAD
//! nor journaled. Names of one hard-linked file of HEAD put back as files
//! of their own are linked again (`store/hardlinks.rs`).

use std::io::ErrorKind;
use std::path::Path;

use git2::{ObjectType, Repository, TreeEntry};

use super::{head_target, Ctx, History, TRACKED};
use crate::error::{Error, Result};
use crate::format::names::LONG_SUFFIX;
use crate::store::dirfd::DirFd;
use crate::store::hardlinks;

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
            if let Some(t) = &tree {
                relink(repo, &self.vault_dir, t, &paths)?;
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

/// Give backing path `rel` (and its long-name sidecar) HEAD's entry back,
/// or none where HEAD has none, and make that durable.
fn restore(
    repo: &Repository,
    vault_dir: &Path,
    head: Option<&git2::Tree<'_>>,
    rel: &str,
) -> Result<()> {
    let (parent, name) = match rel.rsplit_once('/') {
        Some(split) => split,
        None => ("", rel),
    };
    let mut dir = DirFd::open(vault_dir).map_err(|e| Error::io(vault_dir, e))?;
    for part in parent.split('/').filter(|p| !p.is_empty()) {
        dir = match dir.child(part) {
            Ok(d) => d,
            // Its directory is gone: so is the entry, and a later undo of
            // the directory itself puts HEAD's back.
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io(rel, e)),
        };
    }
    let sidecar = format!("{name}{LONG_SUFFIX}");
    for n in [name, sidecar.as_str()] {
        let r = format!("{parent}/{n}");
        remove_any(&dir, n, &r)?;
        if let Some(e) = head.and_then(|t| t.get_path(Path::new(&r)).ok()) {
            write_entry(repo, &e, &dir, n, &r)?;
        }
    }
    dir.fsync().map_err(|e| Error::io(parent, e))
}

/// The names of one hard-linked file of HEAD (`store/hardlinks.rs`) that
/// were put back above as files of their own: each becomes a link again of
/// a name that holds the file (one left alone first, else the first put
/// back), durably.
fn relink(
    repo: &Repository,
    vault_dir: &Path,
    head: &git2::Tree<'_>,
    restored: &[String],
) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let Some(contents) = head
        .get_name(TRACKED)
        .filter(|e| e.kind() == Some(ObjectType::Tree))
        .and_then(|e| repo.find_tree(e.id()).ok())
    else {
        return Ok(());
    };
    let touched = |rel: &str| restored.iter().any(|r| covered(rel, r));
    let vault = DirFd::open(vault_dir).map_err(|e| Error::io(vault_dir, e))?;
    for (id, names) in hardlinks::linked_blobs(&contents) {
        let mut names: Vec<String> = names.iter().map(|n| format!("{TRACKED}/{n}")).collect();
        if !names.iter().any(|n| touched(n)) {
            continue;
        }
        // Names left alone first: they hold the file the others link to.
        names.sort_by_key(|n| touched(n));
        let mut anchor: Option<(String, u64)> = None;
        for rel in names {
            let Ok((dir, name)) = hardlinks::locate(&vault, &rel) else {
                continue;
            };
            let path = dir.at(&name);
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if !meta.is_file() || git2::Oid::hash_file(ObjectType::Blob, &path).ok() != Some(id) {
                continue;
            }
            match &anchor {
                None => anchor = Some((rel, meta.ino())),
                Some((_, ino)) if *ino == meta.ino() || !touched(&rel) => {}
                Some((first, _)) => {
                    let tmp = format!(".tmp-relink-{}", &id.to_string()[..8]);
                    hardlinks::link_into(&vault, first, &dir, &tmp, &name)
                        .and_then(|()| dir.fsync())
                        .map_err(|e| Error::io(&rel, e))?;
                }
            }
        }
    }
    Ok(())
}

fn remove_any(dir: &DirFd, name: &str, rel: &str) -> Result<()> {
    let res = match std::fs::symlink_metadata(dir.at(name)) {
        Ok(m) if m.is_dir() => dir.remove_all(name),
        Ok(_) => dir.unlink(name),
        Err(e) => Err(e),
    };
    match res {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(Error::io(rel, e)),
        _ => Ok(()),
    }
}

/// Write HEAD's entry `e` as `name` in `dir`, durably.
fn write_entry(
    repo: &Repository,
    e: &TreeEntry<'_>,
    dir: &DirFd,
    name: &str,
    rel: &str,
) -> Result<()> {
    match e.kind() {
        Some(ObjectType::Blob) => {
            if e.filemode() == 0o120000 {
                let blob = repo.find_blob(e.id()).ctx("reading a committed blob")?;
                let target = std::str::from_utf8(blob.content())
                    .map_err(|_| Error::corrupt(rel, "a committed symlink target is not UTF-8"))?;
                dir.symlink(name, target).map_err(|err| Error::io(rel, err))
            } else {
                let mode = if e.filemode() == 0o100755 {
                    0o700
                } else {
                    0o600
                };
                let f = dir
                    .create_file(name, mode)
                    .map_err(|err| Error::io(rel, err))?;
                // Its zero blocks (holes) left unwritten.
                crate::store::odb_stream::write_blob_sparse(repo, e.id(), &f)
                    .and_then(|_| f.sync_all())
                    .map_err(|err| Error::io(rel, err))
            }
        }
        Some(ObjectType::Tree) => {
            dir.mkdir(name, 0o700).map_err(|err| Error::io(rel, err))?;
            let sub = dir.child(name).map_err(|err| Error::io(rel, err))?;
            let tree = repo.find_tree(e.id()).ctx("reading a committed tree")?;
            for child in tree.iter() {
                let Ok(cname) = child.name() else {
                    continue; // pkfs never commits a name that is not UTF-8
                };
                write_entry(repo, &child, &sub, cname, &format!("{rel}/{cname}"))?;
            }
            sub.fsync().map_err(|err| Error::io(rel, err))
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

    /// Undoing a command that replaced one name of a hard-linked file makes
    /// it a name of that file again, not a copy.
    #[test]
    fn an_undone_rewrite_of_a_hard_link_is_a_link_again() {
        use crate::store::{Change, ChangeKind};
        use std::os::unix::fs::MetadataExt;
        let d = tempfile::tempdir().unwrap();
        let v = d.path();
        let c = v.join(TRACKED);
        std::fs::create_dir_all(c.join("d")).unwrap();
        std::fs::write(c.join(".diriv"), b"iv").unwrap();
        std::fs::write(c.join("a"), b"one file, two names").unwrap();
        std::fs::hard_link(c.join("a"), c.join("d/b")).unwrap();
        let added = [Change::new(ChangeKind::Added, "a")];
        let key = crate::crypto::SymKey::from_bytes([9; 32]);
        let h = History::init(v, &key, &added).unwrap();
        let ino = |p: &str| std::fs::metadata(c.join(p)).unwrap().ino();
        for (rel, other) in [("a", "d/b"), ("d/b", "a")] {
            h.begin_command().unwrap();
            h.mark(&format!("{TRACKED}/{rel}")).unwrap();
            std::fs::write(c.join("tmp"), b"rewritten").unwrap();
            std::fs::rename(c.join("tmp"), c.join(rel)).unwrap();
            assert_ne!(ino(rel), ino(other));
            h.undo_command().unwrap();
            assert_eq!(ino(rel), ino(other), "{rel}");
            assert_eq!(std::fs::read(c.join(rel)).unwrap(), b"one file, two names");
        }
    }
}
