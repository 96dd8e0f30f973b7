//! The `.versions` directory of each mounted vault: every version of the vault,
//! read-only, served lazily from the git objects and decrypted on demand.
//!
//! ```text
//! VAULT/.versions/               hidden: absent from readdir, answers lookup
//!   <short id>/                  one per commit of main's history, newest
//!                                first, each with its commit time as mtime
//!   latest/  HEAD/  HEAD~N/      aliases, resolved at lookup, not listed
//!   by-time/<ISO-8601 prefix>/   the version current at that moment (UTC)
//!   discarded/<short id>/        versions only a discarded ref keeps
//! ```
//!
//! This folder owns all of it: the inode table of version entries (numbers
//! from [`FIRST_INO`] up, a range live inodes never reach), the hooks the
//! adapter calls first for every operation (`hooks.rs`), lookups, attributes,
//! listings and reads (`ops.rs`), and the time prefixes (`by_time.rs`).
//! Everything inside a version is EROFS to change; the reserved name
//! `.versions` at a vault's top level is EINVAL to make.
//!
//! A version is immutable, so entries inside one are given to the kernel
//! with a long timeout ([`VERSION_TTL`]); the short ids in `.versions` with
//! the mount's usual one (a commit leaves main's history when a change at an
//! older version discards it), and names whose meaning moves with new
//! commits (`latest`, `HEAD~N`, `by-time/…`, `discarded/…`) with none.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use git2::Oid;
use parking_lot::{Mutex, RwLock};

use super::vaults::VaultFs;
use crate::crypto::Keychain;
use crate::store::history::versions::{VBlob, VDir, VEntry, Versions};

mod by_time;
pub mod hooks;
mod ops;

/// The reserved name at a vault's top level.
pub const VERSIONS_NAME: &[u8] = crate::store::vpath::RESERVED_TOP_NAME;
/// The first inode number of a version entry; live inodes count up from 1
/// and never get there.
pub const FIRST_INO: u64 = 1 << 62;
/// How long the kernel may keep what it learnt of an entry inside a version.
pub const VERSION_TTL: Duration = Duration::from_secs(3600);

/// The end of the range of version inodes (above it: the numbers a live
/// listing shows for entries not looked up yet, see `fs/ops_dir.rs`).
const END_INO: u64 = 1 << 63;

/// Is `ino` a version entry?
pub fn owns(ino: u64) -> bool {
    (FIRST_INO..END_INO).contains(&ino)
}

/// Is (`parent`, `name`) the reserved name at the top of a vault?
pub fn is_reserved(core: &super::FsCore, parent: u64, name: &[u8]) -> bool {
    name == VERSIONS_NAME && core.vaults.read().iter().any(|v| v.root_ino == parent)
}

/// What a version inode is.
#[derive(Clone)]
pub(super) enum What {
    /// `.versions` itself.
    Root,
    /// `.versions/by-time`.
    ByTime,
    /// `.versions/discarded`.
    Discarded,
    /// A directory of a version (its root too).
    Dir(Arc<VDir>),
    File(VEntry),
    Link(VEntry),
}

#[derive(Clone)]
pub(super) struct Node {
    pub vault: Arc<VaultFs>,
    pub what: What,
    /// The mode that version gave it (permission bits).
    pub mode: u32,
    /// Commit time of its version (or of the newest one, for the fixed
    /// directories), Unix seconds.
    pub time: i64,
    /// Plaintext size of a file or symlink target.
    pub size: u64,
    /// The commit it belongs to (none for the fixed directories).
    pub commit: Option<Oid>,
    key: (u64, Vec<u8>),
    lookups: u64,
}

/// The version inodes. A node is found again by (parent inode, name); a
/// version's root by (`.versions` inode, commit id), whichever name reached it.
#[derive(Default)]
pub(super) struct Table {
    nodes: HashMap<u64, Node>,
    by_key: HashMap<(u64, Vec<u8>), u64>,
    next: u64,
}

impl Table {
    pub fn get(&self, ino: u64) -> Option<&Node> {
        self.nodes.get(&ino)
    }

    /// The inode of `key` if the table has it; counts a lookup.
    pub fn again(&mut self, key: &(u64, Vec<u8>)) -> Option<(u64, Node)> {
        let ino = *self.by_key.get(key)?;
        let n = self.nodes.get_mut(&ino)?;
        n.lookups += 1;
        Some((ino, n.clone()))
    }

    pub fn key_of(&self, key: &(u64, Vec<u8>)) -> Option<u64> {
        self.by_key.get(key).copied()
    }

    /// The inode of `key`, made from `make` if new; counts a lookup.
    pub fn found(&mut self, key: (u64, Vec<u8>), make: impl FnOnce() -> NewNode) -> (u64, Node) {
        if let Some(&ino) = self.by_key.get(&key) {
            if let Some(n) = self.nodes.get_mut(&ino) {
                n.lookups += 1;
                return (ino, n.clone());
            }
        }
        let ino = FIRST_INO + self.next;
        self.next += 1;
        let n = make();
        let node = Node {
            vault: n.vault,
            what: n.what,
            mode: n.mode,
            time: n.time,
            size: n.size,
            commit: n.commit,
            key: key.clone(),
            lookups: 1,
        };
        self.nodes.insert(ino, node.clone());
        self.by_key.insert(key, ino);
        (ino, node)
    }

    /// The kernel forgot `n` lookups of `ino`. The fixed directories stay.
    pub fn forget(&mut self, ino: u64, n: u64) {
        let gone = match self.nodes.get_mut(&ino) {
            Some(node) if !matches!(node.what, What::Root | What::ByTime | What::Discarded) => {
                node.lookups = node.lookups.saturating_sub(n);
                node.lookups == 0
            }
            _ => false,
        };
        if gone {
            if let Some(node) = self.nodes.remove(&ino) {
                self.by_key.remove(&node.key);
            }
        }
    }
}

/// A node to add to the table.
pub(super) struct NewNode {
    pub vault: Arc<VaultFs>,
    pub what: What,
    pub mode: u32,
    pub time: i64,
    pub size: u64,
    pub commit: Option<Oid>,
}

/// Commits newest first: (id, commit time).
pub(super) type Log = Arc<Vec<(Oid, i64)>>;

/// The versions of one vault, read through a repository handle of their own.
pub(super) struct Repo {
    pub versions: Mutex<Versions>,
    keys: Arc<Keychain>,
    /// Commits whose message authenticated.
    pub authentic: Mutex<HashSet<Oid>>,
    /// Main's history as of its tip then (newest first).
    pub log: Mutex<Option<(Oid, Log)>>,
    /// Owner of every version entry: the vault root's.
    pub owner: (u32, u32),
}

/// The mount's state for `.versions`: a field of [`super::FsCore`].
#[derive(Default)]
pub struct VersionsFs {
    pub(super) table: RwLock<Table>,
    repos: Mutex<HashMap<String, Arc<Repo>>>,
    pub(super) files: Mutex<HashMap<u64, Arc<VBlob>>>,
    pub(super) lists: Mutex<HashMap<u64, Arc<Vec<ops::VListed>>>>,
}

impl VersionsFs {
    /// The versions of `vault` (a new handle when its keychain changed).
    pub(super) fn repo(&self, vault: &VaultFs) -> crate::Result<Arc<Repo>> {
        let keys = vault.keys();
        if let Some(r) = self.repos.lock().get(&vault.id) {
            if Arc::ptr_eq(&r.keys, &keys) {
                return Ok(r.clone());
            }
        }
        let versions = vault.history.lock().versions(&keys)?;
        let m = crate::store::stat::Stat::of_path(&vault.contents)
            .map_err(|e| crate::Error::io(&vault.contents, e))?;
        let repo = Arc::new(Repo {
            versions: Mutex::new(versions),
            keys,
            authentic: Mutex::new(HashSet::new()),
            log: Mutex::new(None),
            owner: (m.uid(), m.gid()),
        });
        self.repos.lock().insert(vault.id.clone(), repo.clone());
        Ok(repo)
    }
}
