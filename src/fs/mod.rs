//! The FUSE front end, the only layer that knows errno.
//!
//! ```text
//! adapter   fuser::Filesystem: validate, call a helper, reply
//! ops_*     helpers returning Result<_, Errno>: root, listings, entries,
//!           files, xattrs
//! core      shared state; inode → backing directory/entry resolution
//! inodes    the inode table
//! content   one open file's pages and write-back
//! cache     the decrypted page cache (lru)
//! commit    commits of pending changes; re-sync after control commands
//! versions  the read-only `.versions` tree of every vault
//! ```

pub mod adapter;
pub mod cache;
mod commit;
pub mod content;
pub mod core;
pub mod errno;
pub mod gate;
pub mod inodes;
mod ops_dir;
mod ops_entry;
mod ops_file;
mod ops_root;
pub mod vaults;
pub mod versions;
mod xattr;

pub use adapter::PkFs;
pub use core::{raise_fd_limit, FsCore, MountConfig};
