//! Library errors to errno, by variant (never by message text).

use std::io;

use fuser::Errno;

use crate::error::Error;

pub fn from_io(e: &io::Error) -> Errno {
    match e.raw_os_error() {
        Some(code) if code > 0 => Errno::from_i32(code),
        _ => Errno::EIO,
    }
}

pub fn from_error(e: &Error) -> Errno {
    match e {
        Error::VaultDefined(_) | Error::Exists(_) => Errno::EEXIST,
        Error::VaultUndefined(_) | Error::NotFound(_) => Errno::ENOENT,
        Error::InvalidName { .. } | Error::Usage(_) | Error::NotAFile(_) => Errno::EINVAL,
        Error::NotADirectory(_) => Errno::ENOTDIR,
        Error::IsADirectory(_) => Errno::EISDIR,
        Error::NotEmpty(_) => Errno::ENOTEMPTY,
        Error::Io { source, .. } => from_io(source),
        Error::HomeLocked { .. } => Errno::EBUSY,
        Error::NotInitialized { .. }
        | Error::AlreadyInitialized { .. }
        | Error::WrongPassphrase
        | Error::WrongKey(_)
        | Error::BadShare(_)
        | Error::Unsafe(_) => Errno::EPERM,
        Error::Sealed(_) => Errno::EACCES,
        Error::Corrupt { .. }
        | Error::History(_)
        | Error::Crypto(_)
        | Error::Mount(_)
        | Error::Uncommitted(_)
        | Error::FsckFindings(_)
        | Error::NoMatch => Errno::EIO,
        Error::NoSuchKey(_) => Errno::ENOENT,
    }
}

pub type FsResult<T> = Result<T, Errno>;

/// `?`-friendly conversion of io errors.
pub trait IoErrno<T> {
    fn errno(self) -> FsResult<T>;
}

impl<T> IoErrno<T> for io::Result<T> {
    fn errno(self) -> FsResult<T> {
        self.map_err(|e| from_io(&e))
    }
}

impl<T> IoErrno<T> for crate::error::Result<T> {
    fn errno(self) -> FsResult<T> {
        self.map_err(|e| from_error(&e))
    }
}
