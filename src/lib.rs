//! pkfs: an encrypted, git-versioned vault filesystem.
//!
//! Layers, with dependencies pointing one way (see `docs/ARCHITECTURE.md`):
//!
//! ```text
//! crypto   AEAD, HKDF, RSA wrap, key types     (only place that names cipher crates)
//! format   blob header, page offsets, names    (pure, unit-tested)
//! store    blob files, encrypted tree, git history
//! keys     the key service's store, its file and backups (crypto, store)
//! vault    node home, root key protectors, metadata, VaultManager
//! args     the clap definition (shared by the binary and the man pages)
//! cli      the commands, in the binary crate (thin)
//! ```

pub mod args;
pub mod crypto;
pub mod daemon;
pub mod error;
pub mod fs;
pub mod keys;

pub use error::{Error, ExitCode, Result};
pub mod format;
pub mod store;
pub mod vault;
