//! One open vault: its encrypted tree plus its history. Every mutation made
//! through [`Vault::mutate`] becomes exactly one commit.

use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;

use super::metadata::VaultRecord;
use crate::crypto::Keychain;
use crate::error::Result;
use crate::store::changes::MoveKind;
use crate::store::history::History;
use crate::store::seal::Seal;
use crate::store::{Change, Kind, Tree, VPath};

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

    /// Run `f` against the tree, then commit whatever it recorded, even when it
    /// failed part-way (so a partial import is still in the history).
    ///
    /// Each changed path is recorded in the change journal first, so that the
    /// commit adopts it (and a crash before the commit shows it as uncommitted,
    /// not as tampering).
    pub fn mutate<T>(&self, f: impl FnOnce(&Tree, &mut Vec<Change>) -> Result<T>) -> Result<T> {
        let mut changes = Vec::new();
        let out = f(&self.tree, &mut changes);
        if !changes.is_empty() {
            for c in &changes {
                self.history.mark(&self.backing_rel_of_change(&c.path))?;
            }
            self.history.sync_journal()?;
            self.history.commit(&changes)?;
            self.reseal()?;
        }
        out
    }

    /// The backing path a change touched: its own when it can still be located,
    /// else that of its nearest existing ancestor (which then covers it).
    fn backing_rel_of_change(&self, path: &str) -> String {
        let mut p = VPath::parse(path.trim_end_matches('/')).unwrap_or_else(|_| VPath::root());
        loop {
            if let Ok(rel) = self.tree.backing_rel(&p) {
                return rel;
            }
            match p.parent() {
                Some(parent) => p = parent,
                None => return "contents".to_string(),
            }
        }
    }

    /// Move `from` to `to` (see [`Tree::rename`]) and commit it. The move is
    /// journaled as one, not as a change of both paths: the moved files are
    /// committed at their new paths only if they are still HEAD's blobs of
    /// their old ones, so a blob swapped at rest is not laundered by a move.
    pub fn rename(&self, from: &VPath, to: &VPath) -> Result<()> {
        let journal = |src: &str, dst: &str| {
            self.history.mark_move(src, dst, MoveKind::Rename)?;
            self.history.sync_journal()
        };
        let changes = self.tree.rename_journaled(from, to, &journal)?;
        self.history.commit(&changes)?;
        self.reseal()
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
    pub fn apply(&self, op: impl FnOnce(&Tree) -> Result<Vec<Change>>) -> Result<()> {
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
        })
    }
}
