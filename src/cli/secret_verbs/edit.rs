//! `pkfs secret edit VAULT:PATH`: the secret is copied into a file in a fresh
//! 0700 directory on a memory file system (tmpfs or ramfs: `$XDG_RUNTIME_DIR`,
//! else `/dev/shm`; never a disk), the editor runs on it, and what it left is
//! stored as one change: through the daemon when the home is mounted (as
//! `secret write` would), else straight into the vault. Nothing is stored when
//! the content is unchanged, the editor fails, or a signal came meanwhile.
//!
//! The copy is overwritten with zeros and removed in every case: on return,
//! on error and on SIGINT, SIGTERM, SIGHUP and SIGQUIT, which are blocked in
//! pkfs while it runs (the editor gets them as usual) and taken, once the copy
//! is gone, by restoring the signal mask. Only SIGKILL can leave the copy, on
//! the tmpfs, which the system empties at the latest when it stops.

use std::ffi::OsString;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::Command as Proc;

use pkfs::Error;
use zeroize::Zeroizing;

use super::steps::{daemon_call, Answer};
use crate::cli::config::Config;
use crate::cli::{parse_entry, unlock, write_err, Target};

/// Test-only: do not fall back to /dev/shm.
const ENV_TEST_NO_SHM: &str = "PKFS_TEST_ONLY_EDIT_NO_SHM";
const TMPFS_MAGIC: i64 = 0x0102_1994;
const RAMFS_MAGIC: i64 = 0x8584_58f6;
const SIGNALS: [i32; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

/// Why an edit stopped.
enum Stop {
    Err(anyhow::Error),
    /// The daemon refused a step: its message and exit code.
    Daemon(Answer),
    /// A signal came while the editor ran.
    Signal(i32),
}

impl<E: Into<anyhow::Error>> From<E> for Stop {
    fn from(e: E) -> Self {
        Stop::Err(e.into())
    }
}

pub fn run(cfg: &Config, target: &str) -> anyhow::Result<()> {
    let t = parse_entry(target)?;
    if t.dir {
        return Err(Error::Usage(format!(
            "{target:?}: expected a secret's path, not a directory"
        ))
        .into());
    }
    // Before anything else: threads started later (rayon's) inherit the mask.
    let block = SignalBlock::new();
    let result = edit(cfg, target, &t);
    match result {
        Ok(()) => Ok(()),
        Err(Stop::Err(e)) => Err(e),
        Err(Stop::Daemon(a)) => {
            write_err(&a.stderr);
            drop(block);
            std::process::exit(if a.code == 0 { 1 } else { a.code })
        }
        Err(Stop::Signal(sig)) => {
            write_err(
                format!("pkfs: signal {sig} came while editing; nothing was stored\n").as_bytes(),
            );
            // Taken now that the copy is gone: pkfs ends as the signal says.
            drop(block);
            std::process::exit(128 + sig)
        }
    }
}

fn edit(cfg: &Config, target: &str, t: &Target) -> Result<(), Stop> {
    let dir = PrivateDir::create()?;
    let mounted = daemon_call(cfg, &["secret", "cat", "--", target], None)?;
    let (before, local) = match mounted {
        Some(a) if a.code == 0 => (Some(a.stdout), None),
        Some(a) if a.code == pkfs::ExitCode::NotFound as i32 => (None, None),
        Some(a) => return Err(Stop::Daemon(a)),
        None => {
            let node = unlock(cfg)?;
            let vault = node.open_vault(&t.vault)?;
            let before = match vault.tree().read(&t.path) {
                Ok(d) => Some(d),
                Err(Error::NotFound(_)) => None,
                Err(e) => return Err(e.into()),
            };
            (before, Some((node, vault)))
        }
    };
    let file = dir.path.join(file_name(t));
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&file)
        .map_err(|e| Error::io(&file, e))?;
    f.write_all(before.as_deref().map_or(&[][..], |b| &b[..]))
        .map_err(|e| Error::io(&file, e))?;
    drop(f);
    run_editor(&file)?;
    if let Some(sig) = pending_signal() {
        return Err(Stop::Signal(sig));
    }
    let after = Zeroizing::new(fs::read(&file).map_err(|e| Error::io(&file, e))?);
    let unchanged = match &before {
        Some(b) => b[..] == after[..],
        None => after.is_empty(),
    };
    if unchanged {
        if !cfg.quiet {
            write_err(b"pkfs: unchanged; nothing was stored\n");
        }
        return Ok(());
    }
    match local {
        Some((_node, vault)) => vault.write(&t.path, &after)?,
        None => match daemon_call(cfg, &["secret", "write", "--", target], Some(&after))? {
            Some(a) if a.code == 0 => {}
            Some(a) => return Err(Stop::Daemon(a)),
            None => {
                return Err(Error::Usage(
                    "the pkfs daemon stopped while the secret was edited; nothing was stored"
                        .into(),
                )
                .into())
            }
        },
    }
    Ok(())
}

/// $EDITOR, else $VISUAL, else vi; run by /bin/sh (it may carry arguments, as
/// `code --wait`) on the copy, with no PKFS_* variable in its environment.
fn run_editor(file: &Path) -> Result<(), Error> {
    let nonempty = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    let editor = nonempty("EDITOR")
        .or_else(|| nonempty("VISUAL"))
        .unwrap_or_else(|| OsString::from("vi"));
    let mut script = editor.clone();
    script.push(" \"$@\"");
    let mut cmd = Proc::new("/bin/sh");
    cmd.arg("-c").arg(script).arg(&editor).arg(file);
    for (name, _) in std::env::vars_os() {
        if name.as_encoded_bytes().starts_with(b"PKFS_") {
            cmd.env_remove(name);
        }
    }
    let status = cmd.status().map_err(|e| Error::io("/bin/sh", e))?;
    if !status.success() {
        return Err(Error::Usage(format!(
            "the editor ({}) failed ({status}); nothing was stored",
            editor.to_string_lossy()
        )));
    }
    Ok(())
}

/// The copy's file name: the secret's, in safe characters (editors pick a
/// syntax from it).
fn file_name(t: &Target) -> String {
    let name: String = t
        .path
        .name()
        .unwrap_or_default()
        .iter()
        .map(|&b| {
            if b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_' {
                b as char
            } else {
                '_'
            }
        })
        .collect();
    match name.trim_start_matches('.') {
        "" => "secret".into(),
        n => n.into(),
    }
}

/// Is `dir` on a memory file system?
fn in_memory(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    let mut st = std::mem::MaybeUninit::<libc::statfs>::zeroed();
    // SAFETY: `c` is a NUL-terminated path and `st` is large enough for the
    // kernel's answer.
    if unsafe { libc::statfs(c.as_ptr(), st.as_mut_ptr()) } != 0 {
        return false;
    }
    // SAFETY: statfs succeeded and filled it in. (f_type's width differs
    // between architectures.)
    #[allow(clippy::unnecessary_cast)]
    let kind = unsafe { st.assume_init() }.f_type as i64;
    kind == TMPFS_MAGIC || kind == RAMFS_MAGIC
}

/// A fresh 0700 directory on a memory file system, wiped when dropped.
struct PrivateDir {
    path: PathBuf,
}

impl PrivateDir {
    fn create() -> Result<PrivateDir, Error> {
        let mut bases = Vec::new();
        if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
            bases.push(PathBuf::from(d));
        }
        if std::env::var_os(ENV_TEST_NO_SHM).is_none() {
            bases.push(PathBuf::from("/dev/shm"));
        }
        let Some(base) = bases.into_iter().find(|b| in_memory(b)) else {
            return Err(Error::Usage(
                "secret edit needs a memory file system for its copy ($XDG_RUNTIME_DIR or \
                 /dev/shm on a tmpfs); neither is, and the secret is never written to a disk"
                    .into(),
            ));
        };
        let mut rnd = [0u8; 8];
        getrandom::fill(&mut rnd)
            .map_err(|_| Error::Crypto("the system's random source failed"))?;
        let hex: String = rnd.iter().map(|b| format!("{b:02x}")).collect();
        let path = base.join(format!("pkfs-edit.{hex}"));
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(|e| Error::io(&path, e))?;
        Ok(PrivateDir { path })
    }
}

/// Overwrite every file below `dir` with zeros, then remove it all.
fn wipe(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for ent in entries.flatten() {
        let p = ent.path();
        match ent.file_type() {
            Ok(ft) if ft.is_dir() => wipe(&p),
            Ok(ft) if ft.is_file() => {
                if let Ok(mut f) = OpenOptions::new().write(true).open(&p) {
                    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
                    let zeros = vec![0u8; 64 * 1024];
                    let mut left = len;
                    while left > 0 {
                        let n = left.min(zeros.len() as u64) as usize;
                        if f.write_all(&zeros[..n]).is_err() {
                            break;
                        }
                        left -= n as u64;
                    }
                    let _ = f.sync_data();
                }
                let _ = fs::remove_file(&p);
            }
            _ => {
                let _ = fs::remove_file(&p);
            }
        }
    }
    let _ = fs::remove_dir(dir);
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        wipe(&self.path);
    }
}

/// SIGINT, SIGTERM, SIGHUP and SIGQUIT blocked in this thread (and the threads
/// it starts) until dropped; a child gets an empty mask from std.
struct SignalBlock {
    old: libc::sigset_t,
}

fn our_set() -> libc::sigset_t {
    let mut set = std::mem::MaybeUninit::<libc::sigset_t>::zeroed();
    // SAFETY: sigemptyset initialises the set; sigaddset takes valid signals.
    unsafe {
        libc::sigemptyset(set.as_mut_ptr());
        for s in SIGNALS {
            libc::sigaddset(set.as_mut_ptr(), s);
        }
        set.assume_init()
    }
}

impl SignalBlock {
    fn new() -> SignalBlock {
        let set = our_set();
        let mut old = std::mem::MaybeUninit::<libc::sigset_t>::zeroed();
        // SAFETY: both sets are valid; this changes this thread's mask only.
        unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, old.as_mut_ptr()) };
        // SAFETY: zeroed is a valid (empty) sigset_t, filled in by the call.
        SignalBlock {
            old: unsafe { old.assume_init() },
        }
    }
}

impl Drop for SignalBlock {
    fn drop(&mut self) {
        // SAFETY: restores the mask saved by `new`.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.old, std::ptr::null_mut()) };
    }
}

/// One of our signals that came while they were blocked.
fn pending_signal() -> Option<i32> {
    let mut set = std::mem::MaybeUninit::<libc::sigset_t>::zeroed();
    // SAFETY: sigpending fills the set; sigismember reads it.
    unsafe {
        if libc::sigpending(set.as_mut_ptr()) != 0 {
            return None;
        }
        let set = set.assume_init();
        SIGNALS
            .into_iter()
            .find(|&s| libc::sigismember(&set, s) == 1)
    }
}
