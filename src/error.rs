//! Domain errors of the pkfs library and the exit code of each failure class.
//!
//! The table of exit codes lives in one place ([`ExitCode`]) and is mirrored in
//! `docs/ARCHITECTURE.md` and the man page. Errno mapping is *not* here: only the
//! FUSE layer knows errno.

use std::path::PathBuf;

/// Every distinct failure class has its own process exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ExitCode {
    Ok = 0,
    Failure = 1,
    Usage = 2,
    WrongPassphrase = 3,
    NotInitialized = 4,
    AlreadyInitialized = 5,
    VaultDefined = 6,
    VaultUndefined = 7,
    InvalidName = 8,
    Corrupt = 9,
    HomeLocked = 10,
    MountFailure = 11,
    FsckFindings = 12,
    NotFound = 13,
    Exists = 14,
    WrongKind = 15,
    Uncommitted = 16,
    NoSuchKey = 17,
    Sealed = 18,
    BadShare = 19,
}

/// Every exit code with its meaning, for documentation (man pages, docs).
pub const EXIT_CODES: &[(ExitCode, &str)] = &[
    (ExitCode::Ok, "success"),
    (ExitCode::Failure, "other failure (I/O, git)"),
    (
        ExitCode::Usage,
        "usage: bad arguments, bad reference, empty passphrase, no confirmation",
    ),
    (ExitCode::WrongPassphrase, "wrong passphrase"),
    (
        ExitCode::NotInitialized,
        "not initialized: no node at the home",
    ),
    (
        ExitCode::AlreadyInitialized,
        "the home already holds a node",
    ),
    (ExitCode::VaultDefined, "the vault already exists"),
    (ExitCode::VaultUndefined, "the vault does not exist"),
    (ExitCode::InvalidName, "invalid name or path"),
    (
        ExitCode::Corrupt,
        "corrupt data: failed authentication or unparseable file",
    ),
    (
        ExitCode::HomeLocked,
        "the home is locked by another pkfs process",
    ),
    (ExitCode::MountFailure, "mount failure"),
    (ExitCode::FsckFindings, "fsck found problems"),
    (ExitCode::NotFound, "no such secret or directory"),
    (ExitCode::Exists, "already exists"),
    (
        ExitCode::WrongKind,
        "not a directory, is a directory, or directory not empty",
    ),
    (
        ExitCode::Uncommitted,
        "unmounted, but the last commit failed: the changes stay journaled in the working tree and the next mount commits them",
    ),
    (ExitCode::NoSuchKey, "the key service has no such key"),
    (
        ExitCode::Sealed,
        "the node is sealed: unseal it (`pkfs unseal`) or give its shares (--share-file); the key service answers nothing",
    ),
    (
        ExitCode::BadShare,
        "a share or recovery code is mistyped, truncated, or of another node or split",
    ),
];

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no pkfs node at {home:?} (run `pkfs init` first)")]
    NotInitialized { home: PathBuf },
    #[error("{home:?} already holds a pkfs node; nothing was changed")]
    AlreadyInitialized { home: PathBuf },
    #[error("wrong passphrase")]
    WrongPassphrase,
    /// A share set, recovery code or key file that does not open its slot.
    #[error("{0}")]
    WrongKey(String),
    /// A share or recovery code refused for its form, node or split.
    #[error("{0}")]
    BadShare(String),
    /// The node is sealed: no key is in memory.
    #[error("node is sealed: {0}")]
    Sealed(String),
    #[error("vault {0:?} already exists")]
    VaultDefined(String),
    #[error("vault {0:?} does not exist (`pkfs vault list` shows the vaults)")]
    VaultUndefined(String),
    #[error("invalid name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },
    #[error("corrupt data in {path:?}: {what}")]
    Corrupt { path: String, what: String },
    #[error("{home:?} is in use by {holder} (the home lock is held; `pkfs status` shows a mount)")]
    HomeLocked { home: PathBuf, holder: String },
    #[error("{0:?}: no such secret or directory")]
    NotFound(String),
    #[error("{0:?}: already exists")]
    Exists(String),
    #[error("{0:?}: not a directory")]
    NotADirectory(String),
    #[error("{0:?}: is a directory")]
    IsADirectory(String),
    /// A symlink or special file (made through the mount) where a file's
    /// contents were wanted.
    #[error("{0:?}: not a regular file (a symlink or special file made through the mount)")]
    NotAFile(String),
    #[error("{0:?}: directory not empty (use -r)")]
    NotEmpty(String),
    /// The message is ours; any user-supplied part in it is quoted with `{:?}`.
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Unsafe(String),
    #[error("{path:?}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("history of vault: {0}")]
    History(String),
    #[error("{0}")]
    Crypto(&'static str),
    #[error("mount failed: {0}")]
    Mount(String),
    /// The mount is gone and the home released, but its last commit failed
    /// (a full disk, an I/O error); the changes stay journaled.
    #[error("unmounted, but the last commit failed ({0}); the changes are kept in the working tree and the next mount commits them")]
    Uncommitted(String),
    /// `pkfs fsck` found this many problems (each already reported).
    #[error("fsck found {0} problem(s)")]
    FsckFindings(usize),
    /// The key service has no key by that id (for that owner and service).
    #[error("{0}")]
    NoSuchKey(String),
    /// `pkfs secret grep` found no matching line: exit code 1, as grep(1),
    /// and nothing printed.
    #[error("no line matched")]
    NoMatch,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// What the key service answers while the node is sealed.
    pub fn sealed_keys() -> Error {
        Error::Sealed("the key service answers nothing until it is unsealed".into())
    }

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub fn corrupt(path: impl std::fmt::Display, what: impl Into<String>) -> Self {
        Error::Corrupt {
            path: path.to_string(),
            what: what.into(),
        }
    }

    pub fn exit_code(&self) -> ExitCode {
        match self {
            Error::NotInitialized { .. } => ExitCode::NotInitialized,
            Error::AlreadyInitialized { .. } => ExitCode::AlreadyInitialized,
            Error::WrongPassphrase | Error::WrongKey(_) => ExitCode::WrongPassphrase,
            Error::BadShare(_) => ExitCode::BadShare,
            Error::Sealed(_) => ExitCode::Sealed,
            Error::VaultDefined(_) => ExitCode::VaultDefined,
            Error::VaultUndefined(_) => ExitCode::VaultUndefined,
            Error::InvalidName { .. } => ExitCode::InvalidName,
            Error::Corrupt { .. } => ExitCode::Corrupt,
            Error::HomeLocked { .. } => ExitCode::HomeLocked,
            Error::NotFound(_) => ExitCode::NotFound,
            Error::Exists(_) => ExitCode::Exists,
            Error::NotADirectory(_)
            | Error::IsADirectory(_)
            | Error::NotAFile(_)
            | Error::NotEmpty(_) => ExitCode::WrongKind,
            Error::Usage(_) => ExitCode::Usage,
            Error::Mount(_) => ExitCode::MountFailure,
            Error::Uncommitted(_) => ExitCode::Uncommitted,
            Error::FsckFindings(_) => ExitCode::FsckFindings,
            Error::NoSuchKey(_) => ExitCode::NoSuchKey,
            Error::Unsafe(_)
            | Error::Io { .. }
            | Error::History(_)
            | Error::Crypto(_)
            | Error::NoMatch => ExitCode::Failure,
        }
    }
}
