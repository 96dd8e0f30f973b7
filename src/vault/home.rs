//! The node home: its layout, its permissions, and the lock that lets exactly one
//! process own it at a time.
//!
//! ```text
//! root.key          root private key, sealed by a protector (see protector.rs)
//! root.pub          root public key, PEM (SPKI)
//! metadata          vault table, encrypted (see metadata.rs)
//! keys              the key service's store, encrypted (see keys/file.rs)
//! lock              flock(2) target
//! rotate/           journal of an unfinished root-key rotation
//! vaults/<id>/      one vault: .git and contents/
//! vaults/<id>/unlisted-ok   while a vault is being created or deleted: the
//!                   directory may be removed if the vault table does not list it
//! ```

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::store::atomic::fsync_dir;

/// The mark of a vault directory that may go if the vault table does not list
/// it (see [`Home::remove_unlisted_vaults`]).
pub const UNLISTED_OK: &str = "unlisted-ok";

/// How long a command waits for the home lock unless `PKFS_LOCK_TIMEOUT`
/// (seconds; 0: not at all) says otherwise.
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(30);
/// After this long a waiting command says who holds the lock.
const LOCK_NOTICE: Duration = Duration::from_secs(1);
const LOCK_POLL: Duration = Duration::from_millis(50);

fn lock_timeout() -> Duration {
    std::env::var("PKFS_LOCK_TIMEOUT")
        .ok()
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map_or(LOCK_TIMEOUT, |s| Duration::from_secs_f64(s.min(86400.0)))
}

/// Who holds the lock on `path`, from the kernel's lock table
/// (`/proc/locks`): "pid N (pkfs WORDS)" with the holder's command words
/// only (`pkfs secret write`; never a path, a name or a vault, which may be
/// secret), or "another pkfs process" when that cannot be told (for a mount
/// daemon the table names the process that forked it).
fn holder(path: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    let unknown = || "another pkfs process".to_string();
    let Ok(ino) = std::fs::metadata(path).map(|m| m.ino()) else {
        return unknown();
    };
    let table = std::fs::read_to_string("/proc/locks").unwrap_or_default();
    let pid = table.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        // "1: FLOCK ADVISORY WRITE PID MAJ:MIN:INODE START END"
        let at = f.iter().position(|x| *x == "FLOCK")?;
        let pid = f.get(at + 3)?.parse::<u32>().ok()?;
        let file_ino = f.get(at + 4)?.rsplit(':').next()?.parse::<u64>().ok()?;
        (file_ino == ino).then_some(pid)
    });
    let Some(pid) = pid else {
        return unknown();
    };
    match std::fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(cmdline) if !cmdline.is_empty() => {
            let word = |a: &&str| {
                !a.is_empty()
                    && a.len() <= 12
                    && !a.starts_with('-')
                    && a.bytes().all(|b| b.is_ascii_lowercase() || b == b'-')
            };
            let mut args = cmdline
                .split(|&b| b == 0)
                .filter_map(|a| std::str::from_utf8(a).ok());
            let program = args
                .next()
                .and_then(|a| a.rsplit('/').next())
                .filter(word)
                .unwrap_or("pkfs");
            let words: Vec<&str> = args.filter(word).take(2).collect();
            format!("pid {pid} ({program} {})", words.join(" ")).replace(" )", ")")
        }
        _ => unknown(),
    }
}

/// An open, locked home. The lock is released when this is dropped.
pub struct Home {
    root: PathBuf,
    _lock: File,
}

/// The home directory from `--home`/`PKFS_HOME` or the XDG default.
pub fn default_home() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("pkfs");
    }
    match std::env::var_os("HOME") {
        Some(h) => PathBuf::from(h).join(".local/share/pkfs"),
        None => PathBuf::from(".pkfs"),
    }
}

/// `init` adopts a missing or empty directory, or the leftovers of an interrupted
/// init; never a directory holding anything else (say, the user's own home).
fn refuse_foreign_content(root: &Path) -> Result<()> {
    const OURS: [&str; 4] = ["lock", "metadata", "root.pub", "vaults"];
    let entries = match std::fs::read_dir(root) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(root, e)),
    };
    for ent in entries {
        let name = ent.map_err(|e| Error::io(root, e))?.file_name();
        let name = name.to_string_lossy();
        if !OURS.contains(&name.as_ref()) && !name.starts_with(".tmp-") {
            return Err(Error::Usage(format!(
                "{root:?} is not empty (it holds {name:?}); choose a new or empty directory for the node"
            )));
        }
    }
    Ok(())
}

/// The files that make a node, checked at every open.
const STATE_FILES: [&str; 4] = ["root.key", "root.pub", "metadata", "keys"];

fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() }
}

/// Refuse what another user owns: they could change it under us.
fn check_owner(path: &Path, meta: &std::fs::Metadata) -> Result<()> {
    if meta.uid() != euid() {
        return Err(Error::Unsafe(format!(
            "{path:?} is owned by uid {}, not by you (uid {}); refusing it",
            meta.uid(),
            euid()
        )));
    }
    Ok(())
}

/// A state file of the home, checked as ssh checks a private key: a regular
/// file (never a symlink), owned by this user, closed to group and others.
/// A missing file is left to the reader, which names it.
fn check_state_file(path: &Path) -> Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(path, e)),
    };
    if meta.file_type().is_symlink() {
        return Err(Error::Unsafe(format!(
            "{path:?} is a symlink; refusing it (pkfs writes it as a regular file)"
        )));
    }
    if !meta.is_file() {
        return Err(Error::Unsafe(format!(
            "{path:?} is not a regular file; refusing it"
        )));
    }
    check_owner(path, &meta)?;
    if meta.mode() & 0o077 != 0 {
        return Err(Error::Unsafe(format!(
            "{path:?} is accessible by other users (mode {:o}); run `chmod 600 {}`",
            meta.mode() & 0o777,
            path.display()
        )));
    }
    Ok(())
}

/// Make this process create every file 0600 and every directory 0700 unless
/// told otherwise (libgit2 and `std::fs` ask for 0644/0755), and return the
/// mask it had, for a program pkfs starts in the user's place.
pub fn set_private_umask() -> u32 {
    // SAFETY: umask only swaps the process's mask.
    let old = unsafe { libc::umask(0o077) };
    USER_UMASK.store(old as u32, std::sync::atomic::Ordering::Relaxed);
    old as u32
}

/// Give back the mask the process started with (before `exec` of a user's
/// program).
pub fn restore_user_umask() {
    let old = USER_UMASK.load(std::sync::atomic::Ordering::Relaxed);
    if old != NO_UMASK {
        // SAFETY: as above.
        unsafe { libc::umask(old as libc::mode_t) };
    }
}

/// Run `f` with the mask the process started with.
fn with_user_umask<T>(f: impl FnOnce() -> T) -> T {
    let user = USER_UMASK.load(std::sync::atomic::Ordering::Relaxed);
    if user == NO_UMASK {
        return f();
    }
    // SAFETY: umask only swaps the process's mask; put back below.
    let ours = unsafe { libc::umask(user as libc::mode_t) };
    let out = f();
    // SAFETY: as above.
    unsafe { libc::umask(ours) };
    out
}

const NO_UMASK: u32 = u32::MAX;
static USER_UMASK: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(NO_UMASK);

impl Home {
    /// Create (or adopt an empty) home for `pkfs init`, locked.
    pub fn create(root: &Path) -> Result<Home> {
        if root.join("root.key").exists() {
            return Err(Error::AlreadyInitialized { home: root.into() });
        }
        if let Ok(meta) = std::fs::metadata(root) {
            check_owner(root, &meta)?;
        }
        refuse_foreign_content(root)?;
        // Missing parents (say ~/.local/share) are the user's, made with the
        // user's umask; the home itself is private.
        if let Some(parent) = root.parent().filter(|p| !p.as_os_str().is_empty()) {
            with_user_umask(|| std::fs::create_dir_all(parent))
                .map_err(|e| Error::io(parent, e))?;
        }
        std::fs::create_dir_all(root).map_err(|e| Error::io(root, e))?;
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::io(root, e))?;
        // The home's own entry must be durable before its files are.
        if let Some(parent) = root.parent().filter(|p| !p.as_os_str().is_empty()) {
            fsync_dir(parent)?;
        }
        let home = Self::lock(root)?;
        // Checked again under the lock: another init may have won the race.
        if root.join("root.key").exists() {
            return Err(Error::AlreadyInitialized { home: root.into() });
        }
        Ok(home)
    }

    /// Open an existing home, checking its permissions, and take its lock.
    pub fn open(root: &Path) -> Result<Home> {
        let meta = match std::fs::metadata(root) {
            Ok(m) if m.is_dir() => m,
            Ok(_) => return Err(Error::NotInitialized { home: root.into() }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotInitialized { home: root.into() })
            }
            Err(e) => return Err(Error::io(root, e)),
        };
        check_owner(root, &meta)?;
        if meta.mode() & 0o077 != 0 {
            return Err(Error::Unsafe(format!(
                "{root:?} is accessible by other users (mode {:o}); run `chmod 700 {}`",
                meta.mode() & 0o777,
                root.display()
            )));
        }
        match std::fs::symlink_metadata(root.join("root.key")) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotInitialized { home: root.into() })
            }
            _ => {}
        }
        for f in STATE_FILES {
            check_state_file(&root.join(f))?;
        }
        Self::lock(root)
    }

    fn lock(root: &Path) -> Result<Home> {
        let path = root.join("lock");
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        let limit = lock_timeout();
        let start = Instant::now();
        let mut told = false;
        loop {
            // SAFETY: flock on a file descriptor we own; no memory is involved.
            let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if rc == 0 {
                break;
            }
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
                return Err(Error::io(&path, err));
            }
            let waited = start.elapsed();
            if waited >= limit {
                return Err(Error::HomeLocked {
                    home: root.into(),
                    holder: holder(&path),
                });
            }
            if !told && waited >= LOCK_NOTICE {
                told = true;
                tracing::warn!(
                    "waiting for the home lock, held by {} (up to {} s)",
                    holder(&path),
                    limit.as_secs()
                );
            }
            std::thread::sleep(LOCK_POLL.min(limit - waited));
        }
        Ok(Home {
            root: root.to_path_buf(),
            _lock: f,
        })
    }

    /// Remove the temporary files an interrupted atomic write left in the home
    /// (`.tmp-*`: a sealed copy of a state file that never replaced it). Under
    /// the lock, so no write is in progress. Best effort.
    pub fn remove_stale_temps(&self) {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return;
        };
        let mut removed = false;
        for ent in entries.flatten() {
            let name = ent.file_name();
            let is_temp = name.to_string_lossy().starts_with(".tmp-");
            if is_temp && ent.file_type().is_ok_and(|t| t.is_file()) {
                removed |= std::fs::remove_file(ent.path()).is_ok();
            }
        }
        if removed {
            let _ = fsync_dir(&self.root);
        }
    }

    /// Remove the git lock files a killed command or daemon left in the vaults'
    /// history repositories. Under the home lock and before any vault is opened,
    /// so no git operation can be in progress. Best effort.
    pub fn remove_stale_git_locks(&self) {
        let Ok(entries) = std::fs::read_dir(self.vaults_dir()) else {
            return;
        };
        for ent in entries.flatten() {
            if ent.file_type().is_ok_and(|t| t.is_dir()) {
                crate::store::history::remove_stale_locks(&ent.path());
            }
        }
    }

    /// Remove the vault directories an interrupted `vault create` or `vault
    /// delete` left: those marked [`UNLISTED_OK`] whose id `listed` rejects. A
    /// listed vault keeps its directory and loses the mark. An unmarked
    /// directory is never removed, whatever the table says (an old `metadata`
    /// restored from a backup must not cost a vault). Best effort; under the
    /// home lock.
    pub fn remove_unlisted_vaults(&self, listed: impl Fn(&str) -> bool) {
        let Ok(entries) = std::fs::read_dir(self.vaults_dir()) else {
            return;
        };
        for ent in entries.flatten() {
            let dir = ent.path();
            let mark = dir.join(UNLISTED_OK);
            if !ent.file_type().is_ok_and(|t| t.is_dir()) || !mark.exists() {
                continue;
            }
            let id = ent.file_name().to_string_lossy().into_owned();
            if listed(&id) {
                let _ = std::fs::remove_file(&mark);
            } else if std::fs::remove_dir_all(&dir).is_ok() {
                tracing::warn!(
                    "removed {} left by an interrupted vault create or delete",
                    dir.display()
                );
            }
        }
        let _ = fsync_dir(&self.vaults_dir());
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn root_key(&self) -> PathBuf {
        self.root.join("root.key")
    }
    pub fn root_pub(&self) -> PathBuf {
        self.root.join("root.pub")
    }
    pub fn metadata(&self) -> PathBuf {
        self.root.join("metadata")
    }
    pub fn rotate_dir(&self) -> PathBuf {
        self.root.join("rotate")
    }
    pub fn vaults_dir(&self) -> PathBuf {
        self.root.join("vaults")
    }
    pub fn vault_dir(&self, id: &str) -> PathBuf {
        self.vaults_dir().join(id)
    }
}
