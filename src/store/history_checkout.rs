//! Moving a vault's work tree to a version (`version checkout`).
//!
//! The work tree is changed where HEAD's tree and the target's differ, and
//! nowhere else: subtrees with the same id on both sides are skipped without
//! being read, so a checkout costs what the two versions differ by. Every
//! entry is reached through directory descriptors (`dirfd.rs`), never by a
//! full backing path. Files are streamed from their objects under a
//! temporary name, their zero blocks left as holes (`odb_stream.rs`), and
//! renamed into place; every file written and every directory whose entries changed
//! is fsync'd before the version record moves, so after a cut the work tree
//! holds what the record's version holds. A cut before the record leaves the
//! journal's checkout record, and the next open repeats the checkout (each
//! step of it can be repeated). The names of one hard-linked file are
//! written as one file (`hardlinks.rs`).

use std::collections::HashMap;

use git2::{ObjectType, Oid, Tree, TreeEntry};

use super::*;
use crate::store::dirfd::DirFd;
use crate::store::hardlinks;
use crate::store::odb_stream::write_blob_sparse;
use crate::store::prefetch::Warmer;
use crate::store::reaper::defer_dropped_dirs;
use crate::store::stage::SyncBatch;

impl History {
    /// Move the vault to `spec` ("latest", a commit id prefix of at least 4 hex
    /// digits, or `HEAD~N`): `contents/` becomes exactly that version's tree. The
    /// version must be in main's history. Journaled (uncommitted) changes are
    /// committed first; if that fails nothing moves. Returns the commit id.
    pub fn checkout(&self, spec: &str) -> Result<String> {
        self.checkout_with_progress(spec, &mut |_, _| {})
    }

    /// [`History::checkout`], reporting (files done, files in all) as it goes.
    pub fn checkout_with_progress(
        &self,
        spec: &str,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<String> {
        // Changes journaled by a writer that did not commit them (a daemon
        // that died) are committed first: the checkout would overwrite them.
        // When that commit fails the checkout does not start.
        if !self.journal.borrow().is_empty() {
            self.commit(&[]).map_err(|e| {
                Error::History(format!(
                    "not checking out: the pending changes could not be committed \
                     first (they are kept): {e}"
                ))
            })?;
        }
        let repo = self.repo.borrow();
        let repo = &*repo;
        let main = main_tip(repo)?.ok_or_else(no_versions)?;
        let target = resolve_spec(repo, spec, main)?;
        if target != main
            && !repo
                .graph_descendant_of(main, target)
                .ctx("comparing versions")?
        {
            return Err(Error::Usage(format!(
                "version {spec} ({target}) is not in the vault's current history \
                 (it was discarded by a later change)"
            )));
        }
        let commit = repo.find_commit(target).ctx("reading the version")?;
        self.open_message(&commit)?;
        self.journal.borrow_mut().begin_checkout(target)?;
        self.checkout_commit(repo, &commit, target == main, false, progress)?;
        Ok(target.to_string())
    }

    /// Make `contents/` exactly `commit`'s tree, move HEAD there and empty the
    /// journal. Safe to repeat after a crash: `resumed` (finishing a checkout
    /// that was cut) also removes the temporary files the cut one left in the
    /// directories it was changing.
    pub(super) fn checkout_commit(
        &self,
        repo: &Repository,
        commit: &Commit<'_>,
        is_main: bool,
        resumed: bool,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<()> {
        let target = commit.id();
        // Both look at what changes between HEAD's tree and the target's.
        let from = repo.head().and_then(|h| h.peel_to_tree()).ok();
        let to = commit.tree().ctx("reading the version's tree")?;
        let _warm = Warmer::start(repo, from.as_ref(), &to);
        // Directories a mode shut to writes take the files (`store/modes/`).
        let lent = self.lend_dir_write();
        if let Some(from) = &from {
            defer_dropped_dirs(repo, &self.vault_dir, from, &to);
        }
        let from_c = from
            .as_ref()
            .and_then(|t| subtree(repo, t.get_name(TRACKED).as_ref()));
        let to_c = subtree(repo, to.get_name(TRACKED).as_ref());
        let vault = DirFd::open(&self.vault_dir).map_err(|e| Error::io(&self.vault_dir, e))?;
        let contents = match vault.child(TRACKED) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                vault
                    .mkdir(TRACKED, 0o700)
                    .map_err(|e| Error::io(TRACKED, e))?;
                vault.child(TRACKED).map_err(|e| Error::io(TRACKED, e))?
            }
            Err(e) => return Err(Error::io(TRACKED, e)),
        };
        let total = count(repo, from_c.as_ref(), to_c.as_ref())?;
        // Hard links of the target (`hardlinks.rs`): looked for only when
        // files are to be written.
        let linked = match (&to_c, total) {
            (Some(t), 1..) => hardlinks::linked_blobs(t),
            _ => HashMap::new(),
        };
        let mut w = Writer {
            repo,
            sync: SyncBatch::default(),
            resumed,
            done: 0,
            total,
            progress,
            root: &contents,
            from: from_c.as_ref(),
            linked,
            written: HashMap::new(),
        };
        w.apply(&contents, TRACKED, from_c.as_ref(), to_c.as_ref())?;
        // The version's modes (`store/modes/history.rs`), before the sync.
        self.apply_mode_records(repo, &to, lent);
        w.sync.push_dir(&vault, "")?;
        w.sync.flush()?;
        // The record first, then HEAD (see `history_version.rs`).
        let main = main_tip(repo)?.ok_or_else(no_versions)?;
        self.record_version(main, target, is_main)?;
        crate::store::atomic::crash_point("checkout-after-record");
        if is_main {
            repo.set_head(MAIN_REF).ctx("attaching HEAD to main")?;
        } else {
            repo.set_head_detached(target).ctx("detaching HEAD")?;
        }
        self.journal.borrow_mut().reset(Some(target))?;
        if let Ok(mut done) = CHECKED_OUT.lock() {
            done.push(self.vault_dir.clone());
        }
        Ok(())
    }
}

/// The vault directories checked out in this process, see [`take_checkouts`].
static CHECKED_OUT: std::sync::Mutex<Vec<std::path::PathBuf>> = std::sync::Mutex::new(Vec::new());

/// The vault directories checked out since the last call. The mount daemon
/// runs one command at a time and takes them after each: the files open in
/// such a vault were opened in another version, and go stale.
pub fn take_checkouts() -> Vec<std::path::PathBuf> {
    CHECKED_OUT
        .lock()
        .map(|mut d| std::mem::take(&mut *d))
        .unwrap_or_default()
}

/// The tree an entry names, if it is one.
fn subtree<'r>(repo: &'r Repository, e: Option<&TreeEntry<'_>>) -> Option<Tree<'r>> {
    e.filter(|e| e.kind() == Some(ObjectType::Tree))
        .and_then(|e| repo.find_tree(e.id()).ok())
}

/// Do two entries name the same object with the same mode?
fn same(a: Option<&TreeEntry<'_>>, b: Option<&TreeEntry<'_>>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a.id() == b.id() && a.filemode() == b.filemode(),
        (None, None) => true,
        _ => false,
    }
}

/// The names of both trees, sorted, without repeats.
fn names(a: Option<&Tree<'_>>, b: Option<&Tree<'_>>) -> Vec<String> {
    let mut out: Vec<String> = [a, b]
        .into_iter()
        .flatten()
        .flat_map(|t| t.iter())
        .filter_map(|e| e.name().ok().map(str::to_string))
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// How many files (blobs) of `to` differ from `from`: the progress total.
fn count(repo: &Repository, from: Option<&Tree<'_>>, to: Option<&Tree<'_>>) -> Result<usize> {
    let Some(to) = to else {
        return Ok(0);
    };
    if from.map(|f| f.id()) == Some(to.id()) {
        return Ok(0);
    }
    let mut n = 0;
    for e in to.iter() {
        let Ok(name) = e.name() else { continue };
        let f = from.and_then(|t| t.get_name(name));
        if same(f.as_ref(), Some(&e)) {
            continue;
        }
        match e.kind() {
            Some(ObjectType::Tree) => {
                let sub = repo.find_tree(e.id()).ctx("reading a version's tree")?;
                n += count(repo, subtree(repo, f.as_ref()).as_ref(), Some(&sub))?;
            }
            Some(ObjectType::Blob) => n += 1,
            _ => {}
        }
    }
    Ok(n)
}

/// Writes the differences between two trees into the work tree.
struct Writer<'a, 'r, 't> {
    repo: &'r Repository,
    sync: SyncBatch,
    /// Sweep `.tmp-checkout-*` leftovers of a cut checkout from each
    /// directory visited (only those can hold one: HEAD has not moved).
    resumed: bool,
    done: usize,
    total: usize,
    progress: &'a mut dyn FnMut(usize, usize),
    /// `contents/`, and HEAD's tree of it.
    root: &'a DirFd,
    from: Option<&'a Tree<'t>>,
    /// Blob ids of the target named more than once (hard links), with their
    /// paths below `contents/`.
    linked: HashMap<Oid, Vec<String>>,
    /// Those of them written so far, at which path.
    written: HashMap<Oid, String>,
}

impl Writer<'_, '_, '_> {
    /// Make the directory `dir` (at `rel`), which holds `from`, hold `to`.
    fn apply(
        &mut self,
        dir: &DirFd,
        rel: &str,
        from: Option<&Tree<'_>>,
        to: Option<&Tree<'_>>,
    ) -> Result<()> {
        if from.map(|t| t.id()) == to.map(|t| t.id()) && from.is_some() {
            return Ok(());
        }
        if self.resumed {
            let names = dir.entries().map_err(|e| Error::io(rel, e))?;
            for leftover in names.iter().filter(|n| n.starts_with(TMP_PREFIX)) {
                match dir.unlink(leftover) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(Error::io(format!("{rel}/{leftover}"), e))
                    }
                    _ => {}
                }
            }
        }
        for name in names(from, to) {
            let crel = format!("{rel}/{name}");
            let f = from.and_then(|t| t.get_name(&name));
            let t = to.and_then(|t| t.get_name(&name));
            if same(f.as_ref(), t.as_ref()) {
                continue;
            }
            let here = std::fs::symlink_metadata(dir.at(&name)).ok();
            let is_dir = here.as_ref().is_some_and(|m| m.is_dir());
            match t.as_ref().and_then(|t| t.kind()) {
                Some(ObjectType::Tree) => {
                    if here.is_some() && !is_dir {
                        dir.unlink(&name).map_err(|e| Error::io(&crel, e))?;
                    }
                    if !is_dir {
                        dir.mkdir(&name, 0o777).map_err(|e| Error::io(&crel, e))?;
                    }
                    let sub = dir.child(&name).map_err(|e| Error::io(&crel, e))?;
                    let old = subtree(self.repo, f.as_ref());
                    let new = subtree(self.repo, t.as_ref());
                    // A directory made now holds nothing of `from`.
                    let old = if is_dir { old } else { None };
                    self.apply(&sub, &crel, old.as_ref(), new.as_ref())?;
                }
                Some(ObjectType::Blob) => {
                    if is_dir {
                        dir.remove_all(&name).map_err(|e| Error::io(&crel, e))?;
                    }
                    if let Some(t) = &t {
                        self.blob(dir, &name, &crel, t)?;
                    }
                }
                _ => match here {
                    Some(m) if m.is_dir() => {
                        dir.remove_all(&name).map_err(|e| Error::io(&crel, e))?
                    }
                    Some(_) => dir.unlink(&name).map_err(|e| Error::io(&crel, e))?,
                    None => {}
                },
            }
        }
        self.sync.push_dir(dir, rel)
    }

    /// Write the blob `e` as entry `name` of `dir`.
    fn blob(&mut self, dir: &DirFd, name: &str, rel: &str, e: &TreeEntry<'_>) -> Result<()> {
        if e.filemode() == 0o120000 {
            let blob = self
                .repo
                .find_blob(e.id())
                .ctx("reading a version's file")?;
            let target = std::str::from_utf8(blob.content())
                .map_err(|_| Error::corrupt(rel, "a committed symlink target is not UTF-8"))?;
            match dir.unlink(name) {
                Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                    return Err(Error::io(rel, err))
                }
                _ => {}
            }
            dir.symlink(name, target)
                .map_err(|err| Error::io(rel, err))?;
        } else {
            // libgit2's modes (the process umask applies).
            let mode = if e.filemode() == 0o100755 {
                0o755
            } else {
                0o644
            };
            let tmp = format!("{TMP_PREFIX}{}", hex8());
            // A name linked: its directory is synced with the others
            // (`apply` pushes every directory it visits).
            if self.link(dir, &tmp, name, rel, e.id()) {
                self.done += 1;
                (self.progress)(self.done, self.total);
                return Ok(());
            }
            let f = dir
                .create_file(&tmp, mode)
                .map_err(|err| Error::io(rel, err))?;
            // Streamed, its zero blocks (holes) left unwritten.
            let written = write_blob_sparse(self.repo, e.id(), &f)
                .and_then(|_| dir.rename_to(&tmp, dir, name, 0));
            if let Err(err) = written {
                let _ = dir.unlink(&tmp);
                return Err(Error::io(rel, err));
            }
            self.sync.push(f, rel)?;
            if self.linked.contains_key(&e.id()) {
                let at = rel.strip_prefix(TRACKED).unwrap_or(rel);
                self.written
                    .insert(e.id(), at.trim_start_matches('/').into());
            }
        }
        self.done += 1;
        (self.progress)(self.done, self.total);
        Ok(())
    }
}

impl Writer<'_, '_, '_> {
    /// When blob `id` is a hard-linked file of the target whose other name is
    /// already in place (written by this checkout, or unchanged from HEAD),
    /// make `dir/name` one more name of it. False when it has to be written.
    fn link(&mut self, dir: &DirFd, tmp: &str, name: &str, rel: &str, id: Oid) -> bool {
        let Some(names) = self.linked.get(&id) else {
            return false;
        };
        let me = rel.strip_prefix(TRACKED).unwrap_or(rel);
        let me = me.trim_start_matches('/');
        let anchor = self.written.get(&id).cloned().or_else(|| {
            names
                .iter()
                .find(|n| n.as_str() != me && hardlinks::holds(self.from, n, id))
                .cloned()
        });
        let Some(anchor) = anchor else {
            return false;
        };
        match hardlinks::link_into(self.root, &anchor, dir, tmp, name) {
            Ok(()) => true,
            Err(err) => {
                // Written as a file of its own instead (say, at the link limit).
                tracing::warn!("checkout: linking {me} to {anchor}: {err}");
                false
            }
        }
    }
}

/// The name a file being checked out has until it is renamed into place.
const TMP_PREFIX: &str = ".tmp-checkout-";

/// 16 random hex digits, for a temporary name.
fn hex8() -> String {
    let b = crate::crypto::random_array::<8>();
    b.iter().map(|x| format!("{x:02x}")).collect::<String>()
}

#[cfg(test)]
#[path = "history_checkout_tests.rs"]
mod tests;
