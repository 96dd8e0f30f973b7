//! The mount daemon's life: mount, serve, commit on a timer, and on unmount,
//! SIGTERM or SIGINT write everything back, commit and leave.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;
use std::time::Duration;

use fuser::{MountOption, SessionACL};
use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::fs::gate::{Gate, GateFs};
use crate::fs::{FsCore, MountConfig};
use crate::vault::Node;

static SIGNALLED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    SIGNALLED.store(true, Ordering::SeqCst);
}

/// Settings of one mount.
#[derive(Debug, Clone)]
pub struct MountPlan {
    pub mountpoint: PathBuf,
    pub home: PathBuf,
    pub fs: MountConfig,
    pub allow_other: bool,
    /// Extra kernel mount flags from `-o` (nodev, nosuid, noexec, noatime,
    /// sync, dirsync, default_permissions).
    pub options: Vec<String>,
}

/// Requests from the control socket to the daemon's main loop.
pub enum Ctl {
    Unmount(Sender<std::result::Result<Unmounted, String>>),
    /// Commit, drop every key, leave the mount sealed.
    Seal(Sender<std::result::Result<(), String>>),
}

/// How an unmount asked for over the control socket ended (an `Err` means
/// the mount is still there, say because it is busy).
#[derive(Debug, Clone)]
pub enum Unmounted {
    /// Everything committed.
    Clean,
    /// Unmounted, but the last commit failed with this error: the changes
    /// stay journaled, and the next mount (or command) commits them.
    Uncommitted(String),
}

/// Tell systemd (when it started us with `Type=notify`) how we are doing:
/// `READY=1` once the mount is live, `STOPPING=1` when leaving.
pub fn sd_notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(sock) = std::os::unix::net::UnixDatagram::unbound() else {
        return;
    };
    let bytes = path.as_encoded_bytes();
    let sent = if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(name)
            .and_then(|a| sock.send_to_addr(state.as_bytes(), &a))
    } else {
        sock.send_to(state.as_bytes(), &path)
    };
    if let Err(e) = sent {
        tracing::warn!("notifying systemd: {e}");
    }
}

/// Refuse a mountpoint that is missing, not a directory, or not empty. A dead
/// FUSE mount left by a killed daemon is cleaned up first.
pub fn check_mountpoint(dir: &Path) -> Result<()> {
    match std::fs::read_dir(dir) {
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
            tracing::warn!("cleaning up a dead mount at {}", dir.display());
            detach(dir);
            check_mountpoint(dir)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(Error::Mount(format!("mountpoint {dir:?} does not exist")))
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => Err(Error::Mount(format!(
            "mountpoint {dir:?} is not a directory"
        ))),
        Err(e) => Err(Error::Mount(format!("mountpoint {dir:?}: {e}"))),
        Ok(mut it) => match it.next() {
            None => Ok(()),
            Some(_) => Err(Error::Mount(format!("mountpoint {dir:?} is not empty"))),
        },
    }
}

/// Lazily detach whatever is mounted at `dir` (a dead mount).
pub fn detach(dir: &Path) {
    if let Ok(c) = CString::new(dir.as_os_str().as_bytes()) {
        // SAFETY: valid C string; failure is tolerated (fusermount is tried next).
        if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } == 0 {
            return;
        }
    }
    let _ = std::process::Command::new("fusermount3")
        .arg("-u")
        .arg("-z")
        .arg(dir)
        .status();
}

/// Unmount `dir` (EBUSY when something still uses it).
fn unmount(dir: &Path) -> std::result::Result<(), String> {
    let c = CString::new(dir.as_os_str().as_bytes()).map_err(|e| e.to_string())?;
    // SAFETY: valid C string; the result is checked.
    if unsafe { libc::umount2(c.as_ptr(), 0) } == 0 {
        return Ok(());
    }
    let err = std::io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EBUSY) {
        return Err(format!("{}: mountpoint is busy", dir.display()));
    }
    let out = std::process::Command::new("fusermount3")
        .arg("-u")
        .arg(dir)
        .output()
        .map_err(|e| format!("running fusermount3: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// A mounted, serving file system.
pub struct Mounted {
    /// The open file system behind the mount, or none while sealed.
    pub gate: Arc<Gate>,
    session: fuser::BackgroundSession,
    plan: MountPlan,
    /// Seal after this long without activity (`--idle`).
    pub idle: Option<Duration>,
}

/// The file system of `node`'s vaults.
pub fn open_core(node: Node, cfg: &MountConfig) -> Result<Arc<FsCore>> {
    let names: Vec<String> = node.vaults().iter().map(|r| r.name.clone()).collect();
    let core = Arc::new(FsCore::new(Arc::new(Mutex::new(node)), cfg.clone()));
    for n in names {
        core.add_vault(&n)?;
    }
    Ok(core)
}

/// Seal the mount behind `gate`: refused while files are open; else
/// disconnect the file system, commit it, and drop it with every key. A
/// failed commit connects it again.
pub fn seal(gate: &Gate) -> std::result::Result<(), String> {
    let Some(core) = gate.core() else {
        return Ok(());
    };
    let open = core.open.lock().len().max(core.handles.lock().len());
    if open > 0 {
        return Err(format!(
            "{open} file(s) are open in the mount; close them and seal again"
        ));
    }
    drop(core);
    let Some(core) = gate.close() else {
        return Ok(());
    };
    if let Err(e) = core.commit_all() {
        gate.open(core);
        return Err(format!("not sealed: the commit failed: {e}"));
    }
    let others = Arc::strong_count(&core) - 1;
    if others > 0 {
        tracing::debug!("sealing: {others} request(s) still hold the file system");
    }
    drop(core);
    tracing::info!("sealed: every key dropped from memory");
    Ok(())
}

/// Mount `node`'s vaults as `plan` says and start serving; `None`: mount
/// sealed (an empty root until the unseal service opens the node).
pub fn mount(node: Option<Node>, plan: MountPlan) -> Result<Mounted> {
    check_mountpoint(&plan.mountpoint)?;
    crate::fs::raise_fd_limit();
    let core = node.map(|n| open_core(n, &plan.fs)).transpose()?;
    let gate = Gate::new(core, plan.fs.ttl);
    let mut cfg = fuser::Config::default();
    cfg.n_threads = Some(4);
    cfg.clone_fd = true;
    let mut opts = vec![
        MountOption::FSName(plan.home.display().to_string()),
        MountOption::Subtype("pkfs".into()),
    ];
    // Other users need the kernel to check modes and owners for them. Without
    // `--allow-other` the kernel lets no one but the daemon's own user in, and
    // the backing entries (same modes, same owner, checked with the daemon's
    // ids) already say what that user may do; the kernel's checks would only
    // cost a GETATTR of the directory after every entry created or removed in
    // it. gocryptfs makes the same choice.
    // (`-o default_permissions` asks for them anyway.)
    if plan.allow_other && !plan.options.iter().any(|o| o == "default_permissions") {
        opts.push(MountOption::DefaultPermissions);
    }
    if plan.fs.ro {
        opts.push(MountOption::RO);
    }
    for o in &plan.options {
        opts.push(match o.as_str() {
            "nodev" => MountOption::NoDev,
            "nosuid" => MountOption::NoSuid,
            "noexec" => MountOption::NoExec,
            "noatime" => MountOption::NoAtime,
            "sync" => MountOption::Sync,
            "dirsync" => MountOption::DirSync,
            "default_permissions" => MountOption::DefaultPermissions,
            other => return Err(Error::Usage(format!("unknown mount option {other:?}"))),
        });
    }
    cfg.mount_options = opts;
    if plan.allow_other {
        cfg.acl = SessionACL::All;
    }
    let session = fuser::Session::new(GateFs(gate.clone()), &plan.mountpoint, &cfg)
        .map_err(|e| Error::Mount(format!("{}: {e}", plan.mountpoint.display())))?;
    gate.set_notifier(session.notifier());
    let session = session
        .spawn()
        .map_err(|e| Error::Mount(format!("starting the session: {e}")))?;
    Ok(Mounted {
        gate,
        session,
        plan,
        idle: None,
    })
}

/// Commit every vault of the open file system (nothing while sealed).
fn commit_all(gate: &Gate) -> Result<()> {
    match gate.core() {
        Some(core) => core.commit_all(),
        None => Ok(()),
    }
}

impl Mounted {
    /// Serve until unmounted (by `pkfs umount`, a signal, or `umount`), committing
    /// quiet vaults on the way. Returns once everything is committed.
    pub fn run(self, ctl: Receiver<Ctl>) -> Result<()> {
        // SAFETY: the handler only stores to an atomic.
        unsafe {
            libc::signal(
                libc::SIGTERM,
                on_signal as extern "C" fn(libc::c_int) as *const () as libc::sighandler_t,
            );
            libc::signal(
                libc::SIGINT,
                on_signal as extern "C" fn(libc::c_int) as *const () as libc::sighandler_t,
            );
            libc::signal(libc::SIGHUP, libc::SIG_IGN);
            // A file size limit (RLIMIT_FSIZE) makes a write past it fail with
            // EFBIG, undone like any failed write, instead of killing the daemon.
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        }
        let dir = self.plan.mountpoint.clone();
        loop {
            if self.session.guard.is_finished() {
                tracing::info!("{} was unmounted", dir.display());
                break;
            }
            if SIGNALLED.load(Ordering::SeqCst) {
                tracing::info!("signal received: unmounting {}", dir.display());
                let _ = commit_all(&self.gate);
                if unmount(&dir).is_err() {
                    detach(&dir);
                }
                break;
            }
            match ctl.recv_timeout(Duration::from_millis(200)) {
                Ok(Ctl::Unmount(reply)) => {
                    let _ = commit_all(&self.gate);
                    match unmount(&dir) {
                        Ok(()) => {
                            // Whatever the commit gives, the mount is gone
                            // and the daemon leaves (releasing the home): a
                            // failed commit stays journaled for the next one.
                            let _ = self.session.join();
                            let res = commit_all(&self.gate).map_err(|e| e.to_string());
                            let _ = reply.send(Ok(match &res {
                                Ok(()) => Unmounted::Clean,
                                Err(e) => Unmounted::Uncommitted(e.clone()),
                            }));
                            return res.map_err(Error::Uncommitted);
                        }
                        Err(e) => {
                            let _ = reply.send(Err(e));
                        }
                    }
                }
                Ok(Ctl::Seal(reply)) => {
                    let _ = reply.send(seal(&self.gate));
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {}
            }
            if let Some(core) = self.gate.core() {
                core.commit_due();
            }
            if let Some(idle) = self.idle {
                if !self.gate.is_sealed() && self.gate.idle_for() >= idle {
                    tracing::info!("idle for {} s: sealing", idle.as_secs());
                    if let Err(e) = seal(&self.gate) {
                        tracing::warn!("idle seal refused: {e}");
                        self.gate.touch();
                    }
                }
            }
        }
        let _ = self.session.join();
        commit_all(&self.gate).map_err(|e| Error::Uncommitted(e.to_string()))
    }
}
