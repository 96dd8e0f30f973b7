//! One open vault: its encrypted tree plus its history. Every mutation made
//! through [`Vault::mutate`] becomes exactly one commit.

use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;

use super::metadata::VaultRecord;
use crate::crypto::Keychain;
use crate::error::Result;
use crate::store::changes::{MoveKind, Origin};
use crate::store::history::History;
use crate::store::seal::Seal;
use crate::store::{Change, Kind, Tree, VPath};

/// An entry that [`Vault::rename`] moved, so that a mount running the
/// command can keep its inodes (and the descriptors open on them) valid:
/// see [`take_moves`].
#[derive(Debug, Clone)]
pub struct Moved {
    /// The vault's id.
    pub vault: String,
    pub from: VPath,
    pub to: VPath,
}

static MOVES: std::sync::Mutex<Vec<Moved>> = std::sync::Mutex::new(Vec::new());

/// The moves made by [`Vault::rename`] since the last call. The mount daemon
/// runs one command at a time and takes them after each.
pub fn take_moves() -> Vec<Moved> {
    MOVES
        .lock()
        .map(|mut m| std::mem::take(&mut *m))
        .unwrap_or_default()
}

pub struct Vault {
    pub record: VaultRecord,
    dir: PathBuf,
    tree: Tree,
    history: History,
}

#[derive(Debug, Clone, Serialize)]
pub struct VaultStat {
    pub name: String,
    pub id: String,
    pub created: i64,
    pub files: u64,
    pub directories: u64,
    pub bytes: u64,
    pub commits: usize,
    pub head: String,
    pub at_latest: bool,
    /// The key generations, oldest first, with the files using each.
    pub generations: Vec<super::keychain::GenerationInfo>,
    /// Generations destroyed by `vault drop-key`.
    pub dropped: Vec<super::metadata::DroppedKey>,
    /// Automatic rotation age in milliseconds, if set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotate_after_ms: Option<u64>,
}

impl Vault {
    pub(super) fn open(record: VaultRecord, dir: PathBuf, keys: Keychain) -> Result<Vault> {
        let history = History::open(&dir, keys.first())?;
        let tree = Tree::open(&dir.join("contents"), keys);
        // A damaged or forged HEAD does not stop the vault from opening (fsck
        // must look at it), but every read then fails with the reason.
        let seal = history
            .seal()
            .unwrap_or_else(|e| Seal::broken(&dir, e.to_string()));
        tree.set_seal(Some(Arc::new(seal)));
        Ok(Vault {
            record,
            dir,
            tree,
            history,
        })
    }

    pub fn name(&self) -> &str {
        &self.record.name
    }

    pub fn dir(&self) -> &PathBuf {
        &self.dir
    }

    /// Read-only access to the tree.
    pub fn tree(&self) -> &Tree {
        &self.tree
    }

    /// Take the vault apart (the mount keeps the history and the record).
    pub fn into_parts(self) -> (VaultRecord, History) {
        (self.record, self.history)
    }

    pub fn history(&self) -> &History {
        &self.history
    }

    /// Run `f` against the tree, then commit what it recorded as one commit.
    /// The change is the command's whole change or nothing: each backing path
    /// is journaled (durably) before `f` changes it, after a *command* record;
    /// when `f` or the commit fails, every journaled path gets HEAD's entry
    /// back and the error is returned; a process killed before the commit is
    /// undone at the next open (see `store/history_undo.rs`).
    pub fn mutate<T>(&self, f: impl FnOnce(&Txn, &mut Vec<Change>) -> Result<T>) -> Result<T> {
        self.begin()?;
        let txn = Txn {
            tree: &self.tree,
            history: &self.history,
        };
        let mut changes = Vec::new();
        let res = f(&txn, &mut changes);
        self.finish(res, &changes)
    }

    /// Start a command: commit what an earlier process journaled and never
    /// committed (so that undoing this command cannot touch it), then write
    /// the command record.
    fn begin(&self) -> Result<()> {
        if !self.history.journal_is_empty() {
            self.history.commit(&[])?;
            self.reseal()?;
        }
        self.history.begin_command()
    }

    /// Commit the command's change if it succeeded, else undo it.
    fn finish<T>(&self, res: Result<T>, changes: &[Change]) -> Result<T> {
        let res = res.and_then(|out| {
            if !changes.is_empty() {
                self.history.commit(changes)?;
            }
            Ok(out)
        });
        if self.history.in_command() {
            // Failed, or nothing to commit: give back what was touched.
            if let Err(e) = self.history.undo_command() {
                tracing::error!("undoing a failed command: {e}");
            }
        }
        self.reseal()?;
        res
    }

    /// Move `from` to `to` (see [`Tree::rename`]) and commit it. The move is
    /// journaled as one, not as a change of both paths: the moved files are
    /// committed at their new paths only if they are still HEAD's blobs of
    /// their old ones, so a blob swapped at rest is not laundered by a move.
    pub fn rename(&self, from: &VPath, to: &VPath) -> Result<()> {
        // Where the entry ends up (`to` itself, or inside it).
        let target = match from.name() {
            Some(name) if self.tree.is_dir(to).unwrap_or(false) => to.join(name)?,
            _ => to.clone(),
        };
        target.check_new()?;
        self.begin()?;
        let journal = |src: &str, dst: &str| {
            self.history.mark_move(src, dst, MoveKind::Rename)?;
            self.history.sync_journal()
        };
        let res = self.tree.rename_journaled(from, to, &journal);
        let changes = res.as_ref().map(Vec::clone).unwrap_or_default();
        self.finish(res.map(drop), &changes)?;
        if let Ok(mut moves) = MOVES.lock() {
            moves.push(Moved {
                vault: self.record.id.clone(),
                from: from.clone(),
                to: target,
            });
        }
        Ok(())
    }

    /// Check reads against the (new) HEAD from now on.
    pub fn reseal(&self) -> Result<()> {
        let seal = self
            .history
            .seal()
            .unwrap_or_else(|e| Seal::broken(&self.dir, e.to_string()));
        self.tree.set_seal(Some(Arc::new(seal)));
        Ok(())
    }

    /// Run one tree operation that reports its changes, and commit them.
    pub fn apply(&self, op: impl FnOnce(&Txn) -> Result<Vec<Change>>) -> Result<()> {
        self.mutate(|t, ch| {
            ch.extend(op(t)?);
            Ok(())
        })
    }

    /// Write a secret, creating missing parent directories (as `pass insert` does).
    pub fn write(&self, p: &VPath, data: &[u8]) -> Result<()> {
        self.mutate(|t, ch| {
            if let Some(parent) = p.parent() {
                ch.extend(t.mkdir(&parent, true)?);
            }
            ch.push(t.write(p, data)?);
            Ok(())
        })
    }

    /// [`Vault::write`] from a stream, in bounded memory (at most `max`
    /// bytes: see [`Tree::write_streaming`]).
    pub fn write_streaming(
        &self,
        p: &VPath,
        input: &mut dyn std::io::Read,
        max: u64,
    ) -> Result<()> {
        self.mutate(|t, ch| {
            if let Some(parent) = p.parent() {
                ch.extend(t.mkdir(&parent, true)?);
            }
            ch.push(t.write_streaming(p, input, max)?);
            Ok(())
        })
    }

    pub fn stat(&self) -> Result<VaultStat> {
        let (mut files, mut directories, mut bytes) = (0, 0, 0);
        for (_, e) in self.tree.walk(&VPath::root())? {
            match e.kind {
                Kind::Dir => directories += 1,
                _ => {
                    files += 1;
                    bytes += e.size;
                }
            }
        }
        let head = self.history.head()?;
        Ok(VaultStat {
            name: self.record.name.clone(),
            id: self.record.id.clone(),
            created: self.record.created,
            files,
            directories,
            bytes,
            commits: head.commits,
            head: head.id,
            at_latest: head.at_latest,
            generations: super::keychain::generations(self)?,
            dropped: self.record.dropped.clone(),
            rotate_after_ms: super::keychain::rotate_after_of(&self.record)
                .map(|d| d.as_millis() as u64),
        })
    }
}

/// The tree as a command changes it (see [`Vault::mutate`]): every change is
/// journaled before it reaches the disk. Reading goes to the tree as usual.
pub struct Txn<'a> {
    tree: &'a Tree,
    history: &'a History,
}

impl std::ops::Deref for Txn<'_> {
    type Target = Tree;

    fn deref(&self) -> &Tree {
        self.tree
    }
}

impl Txn<'_> {
    /// Journal backing path `rel` durably, unless it is journaled already.
    pub(crate) fn journal(&self, rel: &str) -> Result<()> {
        if self.history.origin(rel) == Origin::Changed {
            return Ok(());
        }
        self.history.mark(rel)?;
        self.history.sync_journal()
    }

    /// [`Tree::write`], journaled; `.versions` at the top is refused
    /// ([`VPath::check_new`]).
    pub fn write(&self, p: &VPath, data: &[u8]) -> Result<Change> {
        p.check_new()?;
        self.tree.write_journaled(p, data, &|rel| self.journal(rel))
    }

    /// [`Tree::write_streaming`], journaled; `.versions` at the top is
    /// refused.
    pub fn write_streaming(
        &self,
        p: &VPath,
        input: &mut dyn std::io::Read,
        max: u64,
    ) -> Result<Change> {
        p.check_new()?;
        self.tree
            .write_streaming(p, input, max, &|rel| self.journal(rel))
    }

    /// [`Tree::link_journaled`]: `to` becomes one more name of file `from`.
    pub fn link(&self, from: &VPath, to: &VPath) -> Result<Change> {
        self.tree.link_journaled(from, to, &|rel| self.journal(rel))
    }

    /// [`Tree::mkdir`], journaled; `.versions` at the top is refused.
    pub fn mkdir(&self, p: &VPath, parents: bool) -> Result<Vec<Change>> {
        p.check_new()?;
        self.tree
            .mkdir_journaled(p, parents, &|rel| self.journal(rel))
    }

    /// [`Tree::remove`], journaled.
    pub fn remove(&self, p: &VPath, recursive: bool) -> Result<Vec<Change>> {
        self.tree
            .remove_journaled(p, recursive, &|rel| self.journal(rel))
    }
}
