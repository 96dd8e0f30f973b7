//! Per-vault state of the mount: keys, ciphers, history, pending changes, locks.
//!
//! Lock order: `gate` (shared by every mutation, exclusive for a commit or a
//! control command) → `ns` (namespace changes of this vault, one at a time) →
//! an open file's content lock.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::{Mutex, RwLock};

use crate::crypto::Keychain;
use crate::format::links::LinkCipher;
use crate::format::names::NameCipher;
use crate::store::history::History;
use crate::store::seal::Seal;
use crate::store::stat::Stat;
use crate::store::{Change, ChangeKind};
use crate::vault::Vault;

pub struct VaultFs {
    pub id: String,
    pub name: RwLock<String>,
    pub contents: PathBuf,
    /// The keychain, replaced when the vault's key rotates (see [`VaultFs::keys`]).
    keys: RwLock<Arc<Keychain>>,
    pub names: NameCipher,
    pub links: LinkCipher,
    pub history: Mutex<History>,
    pub pending: Mutex<Pending>,
    pub gate: RwLock<()>,
    pub ns: Mutex<()>,
    pub root_ino: u64,
    /// Commits made by the mount: a write records its file once per commit.
    pub commits: std::sync::atomic::AtomicU64,
    /// HEAD's tree, which files must match when opened (renewed after a commit).
    pub seal: RwLock<Arc<Seal>>,
}

#[derive(Default)]
pub struct Pending {
    pub changes: Vec<Change>,
    seen: std::collections::HashSet<(ChangeKind, String)>,
    pub last: Option<Instant>,
    pub last_commit: Option<(String, i64)>,
    pub last_error: Option<String>,
}

impl Pending {
    /// Record a change (repeats of the same change are kept once).
    pub fn record(&mut self, kind: ChangeKind, path: String) {
        self.last = Some(Instant::now());
        if let Some(c) = self.changes.last() {
            if c.kind == kind && c.path == path {
                return;
            }
        }
        // A file added or already modified in this batch needs no "modified".
        if kind == ChangeKind::Modified
            && (self.seen.contains(&(ChangeKind::Added, path.clone()))
                || self.seen.contains(&(ChangeKind::Modified, path.clone())))
        {
            return;
        }
        self.seen.insert((kind, path.clone()));
        self.changes.push(Change::new(kind, path));
    }

    /// The batch was committed.
    pub fn clear(&mut self) {
        self.changes.clear();
        self.seen.clear();
        self.last = None;
        self.last_error = None;
    }
}

impl VaultFs {
    pub fn new(vault: Vault, root_ino: u64) -> VaultFs {
        let keys = vault.tree().keys().clone();
        let contents = vault.tree().contents_dir().to_path_buf();
        let vault_dir = vault.dir().clone();
        let seal = vault
            .tree()
            .seal()
            .unwrap_or_else(|| Arc::new(Seal::new(&vault_dir, None, Default::default())));
        let (record, history) = vault.into_parts();
        // Changes journaled by a daemon that died before committing them are
        // committed after the usual quiet period.
        let pending = Pending {
            last: (!history.journal_is_empty()).then(Instant::now),
            ..Pending::default()
        };
        VaultFs {
            id: record.id.clone(),
            name: RwLock::new(record.name.clone()),
            contents,
            names: NameCipher::new(keys.first()),
            links: LinkCipher::new(keys.first()),
            keys: RwLock::new(Arc::new(keys)),
            history: Mutex::new(history),
            pending: Mutex::new(pending),
            gate: RwLock::new(()),
            ns: Mutex::new(()),
            root_ino,
            commits: std::sync::atomic::AtomicU64::new(0),
            seal: RwLock::new(seal),
        }
    }

    /// Check reads against HEAD as it is now (after a commit or a checkout).
    pub fn reseal(&self) {
        let seal = self.history.lock().seal().unwrap_or_else(|e| {
            tracing::error!("vault {}: HEAD cannot vouch for the files: {e}", self.id);
            let dir = self.contents.parent().unwrap_or(&self.contents);
            Seal::broken(dir, e.to_string())
        });
        seal.inherit(&self.seal.read());
        *self.seal.write() = Arc::new(seal);
    }

    pub fn name(&self) -> String {
        self.name.read().clone()
    }

    /// The vault's keychain as it is now: new blobs use its newest
    /// generation; an open file keeps the key it was opened with.
    pub fn keys(&self) -> Arc<Keychain> {
        self.keys.read().clone()
    }

    /// Follow a key rotation (or a dropped generation). Generation 0, which
    /// keys names and history, never changes.
    pub fn set_keys(&self, keys: Keychain) {
        *self.keys.write() = Arc::new(keys);
    }

    pub fn record(&self, kind: ChangeKind, path: String) {
        self.pending.lock().record(kind, path);
    }

    /// Record a change of the entry at `path`, whose type `m` tells how the
    /// commit message lists it (docs/FORMAT.md, "Commit messages"): a
    /// directory with a trailing `/`, a FIFO, socket or device node (which
    /// the history does not hold) not at all, nor the vault root (`""`),
    /// whose mode and attributes are not versioned either.
    pub fn record_entry(&self, kind: ChangeKind, path: String, m: &Stat) {
        if path.is_empty() {
            return;
        }
        if m.is_dir() {
            if path.ends_with('/') {
                self.record(kind, path);
            } else {
                self.record(kind, format!("{path}/"));
            }
        } else if m.is_file() || m.is_symlink() {
            self.record(kind, path);
        }
    }
}
