//! Tamper evidence of the history: the commit-chain MAC, the change journal and
//! the seal of HEAD's tree (see `seal.rs` and `journal.rs`).
//!
//! A commit message is AES-256-GCM under a key derived from the vault key, with
//! associated data
//!
//! ```text
//! "pkfs history v2" | tree id (20 bytes) | parent ids (20 bytes each, in order)
//! ```
//!
//! so a message authenticates only on the commit it was made for: the tree (a
//! hash of every blob at its path) and the parents (and through them the whole
//! chain) cannot be changed, and no commit can be forged, without the vault key,
//! which only the root key unwraps.

use std::collections::HashMap;

use git2::{ObjectType, Oid, TreeWalkMode, TreeWalkResult};

use super::{head_target, main_tip, Ctx, History};
use crate::error::{Error, Result};
use crate::store::changes::{MoveKind, Origin};
use crate::store::seal::Seal;

const AAD_DOMAIN: &[u8] = b"pkfs history v2";

/// The associated data of the message of a commit of `tree` with `parents`.
pub fn message_aad(tree: Oid, parents: &[Oid]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(AAD_DOMAIN.len() + 20 * (1 + parents.len()));
    aad.extend_from_slice(AAD_DOMAIN);
    aad.extend_from_slice(tree.as_bytes());
    for p in parents {
        aad.extend_from_slice(p.as_bytes());
    }
    aad
}

/// Flush the file system holding `path` (git writes its objects without
/// fsync; one `syncfs` per step is far cheaper than one fsync per object).
pub(super) fn sync_fs(path: &std::path::Path) -> Result<()> {
    let dir = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    // SAFETY: syncfs(2) on a descriptor we own; the result is checked.
    if unsafe { libc::syncfs(std::os::fd::AsRawFd::as_raw_fd(&dir)) } != 0 {
        return Err(Error::io(path, std::io::Error::last_os_error()));
    }
    Ok(())
}

impl History {
    /// A checkout killed half-way left a journal record: finish it, so the vault
    /// holds the new version and never a mix.
    pub(super) fn finish_interrupted_checkout(&self) -> Result<()> {
        let Some(target) = self.journal.borrow().interrupted_checkout() else {
            return Ok(());
        };
        let repo = self.repo.borrow();
        let repo = &*repo;
        let commit = repo
            .find_commit(target)
            .ctx("reading the version of an interrupted checkout")?;
        self.open_message(&commit)?;
        let is_main = main_tip(repo)? == Some(target);
        tracing::warn!("finishing an interrupted checkout of {target}");
        self.checkout_commit(repo, &commit, is_main, true, &mut |_, _| {})
    }

    /// Record, before changing it, that backing path `rel` (relative to the vault
    /// directory, `contents/…`) may now differ from HEAD.
    pub fn mark(&self, rel: &str) -> Result<()> {
        self.journal.borrow_mut().mark(rel)
    }

    /// Record, before it happens, that the entry at `from` gets to `to`
    /// unchanged (renamed, exchanged or linked; a rename onto itself is a
    /// chmod), so that it stays checked against HEAD's entry at `from`.
    pub fn mark_move(&self, from: &str, to: &str, how: MoveKind) -> Result<()> {
        self.journal.borrow_mut().mark_move(from, to, how)
    }

    /// Does the journal touch backing path `rel` (a commit re-stages it)?
    pub fn covers(&self, rel: &str) -> bool {
        self.journal.borrow().covers(rel)
    }

    /// Where the content at backing path `rel` must come from.
    pub fn origin(&self, rel: &str) -> Origin {
        self.journal.borrow().origin(rel)
    }

    /// Is nothing journaled (the work tree is HEAD's)?
    pub fn journal_is_empty(&self) -> bool {
        self.journal.borrow().is_empty()
    }

    /// Make the journal durable (before an fsync of a file it covers), and
    /// the IVs of directories made since the last commit with it: a file
    /// fsync'd in a new directory must not outlive the IV its name needs.
    /// Each is fsync'd itself (its IV file, its entries, its entry in its
    /// parent): `syncfs` does nothing on some file systems.
    pub fn sync_journal(&self) -> Result<()> {
        self.sync_new_dirs()?;
        self.journal.borrow().sync()
    }

    /// fsync the directories made since the last sync (see
    /// [`History::sync_journal`]), parents after children.
    pub(super) fn sync_new_dirs(&self) -> Result<()> {
        let dirs = std::mem::take(&mut *self.unsynced_dirs.borrow_mut());
        let mut parents: Vec<&std::path::Path> = Vec::new();
        for d in &dirs {
            let iv = d.join(crate::format::names::DIRIV_FILE);
            match std::fs::File::open(&iv) {
                Ok(f) => f.sync_all().map_err(|e| Error::io(&iv, e))?,
                // Removed or moved since: nothing of it to keep.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(&iv, e)),
            }
            crate::store::atomic::fsync_dir(d)?;
            if let Some(p) = d.parent() {
                parents.push(p);
            }
        }
        parents.sort_unstable();
        parents.dedup();
        for p in parents {
            crate::store::atomic::fsync_dir(p)?;
        }
        Ok(())
    }

    /// Directory `dir` (absolute) was just made with an IV not yet on disk
    /// (see [`History::sync_journal`]).
    pub fn note_unsynced_dir(&self, dir: &std::path::Path) {
        self.unsynced_dirs.borrow_mut().push(dir.to_path_buf());
    }

    /// HEAD's commit, after checking that its message authenticates (which
    /// proves its tree and parents came from a holder of the vault key).
    pub fn verified_head(&self) -> Result<Option<Oid>> {
        let repo = self.repo.borrow();
        let Some(head) = head_target(&repo)? else {
            return Ok(None);
        };
        let commit = repo.find_commit(head).ctx("reading HEAD")?;
        self.open_message(&commit)?;
        Ok(Some(head))
    }

    /// A snapshot of HEAD's tree and of the journal, to check backing files
    /// against. Fails when HEAD's message does not authenticate.
    pub fn seal(&self) -> Result<Seal> {
        let journal = self.journal.borrow().changes().clone();
        let Some(head) = self.verified_head()? else {
            return Ok(Seal::new(&self.vault_dir, None, journal).with_tags(self.tags.clone()));
        };
        let repo = self.repo.borrow();
        let tree = repo
            .find_commit(head)
            .and_then(|c| c.tree())
            .ctx("reading HEAD's tree")?;
        let mut blobs = HashMap::new();
        let mut bad = None;
        tree.walk(TreeWalkMode::PreOrder, |root, entry| {
            if entry.kind() == Some(ObjectType::Blob) {
                match entry.name() {
                    Ok(name) => {
                        blobs.insert(format!("{root}{name}"), entry.id());
                    }
                    Err(_) => bad = Some(root.to_string()),
                }
            }
            TreeWalkResult::Ok
        })
        .ctx("walking HEAD's tree")?;
        if let Some(root) = bad {
            return Err(Error::corrupt(
                format!("commit {head}"),
                format!("a tree entry under {root:?} has a name that is not UTF-8"),
            ));
        }
        Ok(Seal::new(&self.vault_dir, Some(blobs), journal).with_tags(self.tags.clone()))
    }
}

/// Remove the lock files (`*.lock`) a killed git operation left in the history
/// repository of the vault at `vault_dir`: in `.git/` itself (`index.lock`,
/// `HEAD.lock`, `packed-refs.lock`, …) and under `.git/refs/`. Without this,
/// every later commit or checkout fails with "the index is locked".
///
/// Only call it while no history of this vault is open in this process and
/// the home lock is held (so no other process is writing either). Best effort:
/// returns how many lock files were removed.
pub fn remove_stale_locks(vault_dir: &std::path::Path) -> usize {
    let git = vault_dir.join(".git");
    let mut removed = 0;
    let mut dirs = vec![git.clone(), git.join("refs")];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for ent in entries.flatten() {
            let Ok(kind) = ent.file_type() else { continue };
            let name = ent.file_name();
            if kind.is_dir() {
                // `.git/refs` is queued separately; below it, every level.
                if dir != git {
                    dirs.push(ent.path());
                }
            } else if kind.is_file()
                && name.to_string_lossy().ends_with(".lock")
                && std::fs::remove_file(ent.path()).is_ok()
            {
                tracing::warn!(
                    "removed {} left by an interrupted operation",
                    ent.path().display()
                );
                removed += 1;
            }
        }
    }
    removed
}
