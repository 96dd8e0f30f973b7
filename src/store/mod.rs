//! Storage: the encrypted backing tree of a vault, and its git history.

pub mod atomic;
pub mod changes;
pub mod dirfd;
pub mod fsck;
pub mod generations;
pub mod hardlinks;
pub mod history;
pub mod journal;
pub mod loose_zlib;
pub mod modes;
pub mod odb_stream;
pub mod prefetch;
pub mod quarantine;
pub mod reaper;
pub mod seal;
pub mod stage;
pub mod stat;
pub mod tags;
pub mod tree;
pub mod version;
pub mod vpath;

pub use tree::{Entry, Kind, Listing, Tree};
pub use vpath::VPath;

use serde::{Deserialize, Serialize};

/// What a mutation did to one plaintext path; the list goes, encrypted, into the
/// commit message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    Added,
    Modified,
    Removed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub kind: ChangeKind,
    /// Vault-internal plaintext path, without a leading '/'.
    pub path: String,
}

impl Change {
    pub fn new(kind: ChangeKind, path: impl Into<String>) -> Self {
        Change {
            kind,
            path: path.into(),
        }
    }
}
