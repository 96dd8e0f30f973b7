//! The unseal service of a mount: share holders give their shares here, one
//! connection each, and at the threshold the node opens. The protocol is in
//! `docs/UNSEAL.md`.
//!
//! The socket is separate from the control socket: it lives in the abstract
//! namespace (`\0pkfs-unseal/` and 32 hex digits of SHA-256 of the home's
//! absolute path), so holders who cannot reach the home (mode 0700) can reach
//! it; who may talk on it is decided by the kernel's word on the peer
//! (`SO_PEERCRED`, `SO_PEERGROUPS`): the daemon's own user, root, and members
//! of `--unseal-group`. Only the daemon's own user (or root) may `seal`.
//!
//! Partial shares are held in locked, zeroized memory ([`SecretBytes`]) and
//! dropped [`EXPIRE`] after the last one was given (`PKFS_TEST_ONLY_UNSEAL_EXPIRE_MS`
//! shortens it for tests). A share given twice counts
//! once. Shares that do not open the node reset the progress. Requests are
//! handled one at a time, so a racing second unseal waits and then sees the
//! node open. The log names who gave a share (uid, user name, pid) and its
//! index, never the share.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::crypto::secmem::SecretBytes;
use crate::error::{Error, ExitCode, Result};
use crate::vault::slots::share::{self, Share};
use crate::vault::slots::{self, change, Keyed};

/// Partial shares are forgotten this long after the last one.
pub const EXPIRE: Duration = Duration::from_secs(600);
/// Test-only: another expiry, in milliseconds.
pub const ENV_TEST_EXPIRE_MS: &str = "PKFS_TEST_ONLY_UNSEAL_EXPIRE_MS";

fn expiry() -> Duration {
    static AT: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();
    *AT.get_or_init(|| {
        std::env::var(ENV_TEST_EXPIRE_MS)
            .ok()
            .and_then(|v| v.parse().ok())
            .map_or(EXPIRE, Duration::from_millis)
    })
}
/// The longest request line.
pub const MAX_LINE: usize = 4096;
const IO_TIMEOUT: Duration = Duration::from_secs(30);
const SO_PEERGROUPS: libc::c_int = 59;

/// One request line.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum UnsealRequest {
    /// Which node answers, and its progress.
    Status,
    /// One share, as its text line.
    Share { share: String },
    /// Seal the mount (the daemon's own user only).
    Seal,
}

/// One response line.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct UnsealResponse {
    pub ok: bool,
    /// The exit code of a failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    pub node_id: String,
    pub sealed: bool,
    /// Distinct shares held, and the threshold (0 while unknown).
    pub have: usize,
    pub need: usize,
    /// The share was given before and not counted again.
    #[serde(default)]
    pub duplicate: bool,
}

/// The abstract socket name of `home`.
pub fn socket_name(home: &Path) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let abs = std::path::absolute(home).unwrap_or_else(|_| home.to_path_buf());
    let digest = Sha256::digest(abs.as_os_str().as_encoded_bytes());
    format!("pkfs-unseal/{}", slots::hex(&digest[..16])).into_bytes()
}

/// What the daemon does for the service.
pub struct Hooks {
    /// Open the node with the combined master key and connect the mount.
    pub open: Box<dyn Fn(Keyed) -> Result<()> + Send + Sync>,
    /// Is the mount sealed?
    pub sealed: Box<dyn Fn() -> bool + Send + Sync>,
    /// Seal the mount.
    pub seal: Box<dyn Fn() -> std::result::Result<(), String> + Send + Sync>,
}

struct Held {
    index: u8,
    value: SecretBytes<32>,
}

#[derive(Default)]
struct Progress {
    slot: Option<[u8; 4]>,
    k: usize,
    shares: Vec<Held>,
    last: Option<Instant>,
}

impl Progress {
    fn reset(&mut self) {
        *self = Progress::default();
    }

    fn expire(&mut self) {
        if self.last.is_some_and(|t| t.elapsed() >= expiry()) {
            tracing::info!("unseal: the partial shares expired and were forgotten");
            self.reset();
        }
    }
}

/// The service: its state, and the hooks into the daemon.
pub struct Unsealer {
    home: std::path::PathBuf,
    node_id: String,
    group: Option<u32>,
    hooks: Hooks,
    progress: Mutex<Progress>,
}

/// Who is at the other end.
#[derive(Debug, Clone, Copy)]
struct Peer {
    pid: i32,
    uid: u32,
    gid: u32,
}

fn peer(s: &UnixStream) -> io::Result<Peer> {
    let cred = super::control::peer_cred(s)?;
    Ok(Peer {
        pid: cred.pid,
        uid: cred.uid,
        gid: cred.gid,
    })
}

/// The peer's supplementary groups, from the kernel (empty if unknown).
fn peer_groups(s: &UnixStream) -> Vec<u32> {
    let mut groups = vec![0u32; 256];
    let mut len = (groups.len() * 4) as libc::socklen_t;
    // SAFETY: the buffer is valid for `len` bytes of writes.
    let rc = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_PEERGROUPS,
            groups.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Vec::new();
    }
    groups.truncate(len as usize / 4);
    groups
}

fn user_name(uid: u32) -> String {
    // SAFETY: getpwuid returns a pointer into static storage or null; the name
    // is copied out at once (the daemon handles one request at a time).
    unsafe {
        let pw = libc::getpwuid(uid);
        if pw.is_null() || (*pw).pw_name.is_null() {
            return "?".into();
        }
        std::ffi::CStr::from_ptr((*pw).pw_name)
            .to_string_lossy()
            .into_owned()
    }
}

/// The gid of group `name`.
pub fn group_id(name: &str) -> Result<u32> {
    let c = std::ffi::CString::new(name)
        .map_err(|_| Error::Usage(format!("{name:?} is not a group name")))?;
    // SAFETY: valid C string; the result is read at once.
    let gr = unsafe { libc::getgrnam(c.as_ptr()) };
    if gr.is_null() {
        return Err(Error::Usage(format!("no group {name:?}")));
    }
    // SAFETY: non-null pointer to a group entry.
    Ok(unsafe { (*gr).gr_gid })
}

fn euid() -> u32 {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() }
}

fn fail(code: ExitCode, message: impl Into<String>) -> UnsealResponse {
    UnsealResponse {
        ok: false,
        code: Some(code as i32),
        message: Some(message.into()),
        ..Default::default()
    }
}

impl Unsealer {
    pub fn new(home: &Path, node_id: String, group: Option<u32>, hooks: Hooks) -> Arc<Unsealer> {
        Arc::new(Unsealer {
            home: home.to_path_buf(),
            node_id,
            group,
            hooks,
            progress: Mutex::new(Progress::default()),
        })
    }

    /// (shares held, threshold) for `pkfs status`; the threshold is the
    /// node's split's while none is held.
    pub fn progress(&self) -> (usize, usize) {
        let mut p = self.progress.lock();
        p.expire();
        if p.k > 0 {
            return (p.shares.len(), p.k);
        }
        let k = change::read(&self.home)
            .map(|s| slots::share_slots(&s).first().map_or(0, |x| x.0 as usize))
            .unwrap_or(0);
        (0, k)
    }

    /// Forget partial shares (after sealing, say).
    pub fn forget(&self) {
        self.progress.lock().reset();
    }

    fn allowed(&self, p: Peer, groups: &[u32]) -> bool {
        p.uid == euid()
            || p.uid == 0
            || self
                .group
                .is_some_and(|g| p.gid == g || groups.contains(&g))
    }

    fn answer(&self, req: UnsealRequest, p: Peer) -> UnsealResponse {
        let mut r = match req {
            UnsealRequest::Status => UnsealResponse {
                ok: true,
                ..Default::default()
            },
            UnsealRequest::Seal if p.uid != euid() && p.uid != 0 => {
                fail(ExitCode::Usage, "only the mount's owner may seal it")
            }
            UnsealRequest::Seal => match (self.hooks.seal)() {
                Ok(()) => {
                    self.forget();
                    tracing::warn!("sealed by uid {} ({})", p.uid, user_name(p.uid));
                    UnsealResponse {
                        ok: true,
                        ..Default::default()
                    }
                }
                Err(e) => fail(ExitCode::Failure, e),
            },
            UnsealRequest::Share { share } => {
                let share = Zeroizing::new(share);
                self.give(&share, p)
            }
        };
        let (have, need) = self.progress();
        r.node_id = self.node_id.clone();
        r.sealed = (self.hooks.sealed)();
        r.have = if r.sealed { have } else { need };
        r.need = need;
        r
    }

    /// One share from `p`.
    fn give(&self, text: &str, p: Peer) -> UnsealResponse {
        let who = format!("uid {} ({}) pid {}", p.uid, user_name(p.uid), p.pid);
        let mut prog = self.progress.lock();
        prog.expire();
        if !(self.hooks.sealed)() {
            tracing::warn!("unseal: a share from {who} arrived after the node was unsealed");
            return UnsealResponse {
                ok: true,
                message: Some("the node is already unsealed".into()),
                ..Default::default()
            };
        }
        let share = match Share::parse(text).and_then(|s| {
            let splits = slots::share_slots(&change::read(&self.home)?);
            s.check_for(&self.node_id, &splits)?;
            Ok((s, splits))
        }) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("unseal: {who} gave a share that was refused: {e}");
                return fail(e.exit_code(), e.to_string());
            }
        };
        let (share, splits) = share;
        if prog.slot.is_some_and(|s| s != share.slot) {
            tracing::warn!("unseal: {who} gave a share of another split than the others");
            return fail(
                ExitCode::BadShare,
                "this share belongs to another split than the shares given so far; \
                 nothing was counted",
            );
        }
        let k = splits
            .iter()
            .find(|(_, _, id)| *id == share.slot)
            .map_or(0, |x| x.0);
        prog.slot = Some(share.slot);
        prog.k = k as usize;
        prog.last = Some(Instant::now());
        if prog.shares.iter().any(|h| h.index == share.index) {
            tracing::warn!(
                "unseal: {who} gave share {} again: not counted twice ({}/{k})",
                share.index,
                prog.shares.len()
            );
            return UnsealResponse {
                ok: true,
                duplicate: true,
                ..Default::default()
            };
        }
        prog.shares.push(Held {
            index: share.index,
            value: SecretBytes::with(|v| v.copy_from_slice(&share.value[..])),
        });
        drop(share);
        tracing::warn!(
            "unseal: {who} gave share {} ({}/{k})",
            prog.shares.last().map_or(0, |h| h.index),
            prog.shares.len()
        );
        if prog.shares.len() < prog.k {
            return UnsealResponse {
                ok: true,
                ..Default::default()
            };
        }
        let held: Vec<Share> = prog
            .shares
            .iter()
            .map(|h| Share {
                node: String::new(),
                slot: prog.slot.unwrap_or_default(),
                k,
                index: h.index,
                value: Zeroizing::new(*h.value.expose()),
            })
            .collect();
        let slot = prog.slot.unwrap_or_default();
        prog.reset();
        let refs: Vec<&Share> = held.iter().collect();
        let opened = share::combine(&refs).and_then(|master| {
            let n = splits
                .iter()
                .find(|(_, _, id)| *id == slot)
                .map_or(0, |x| x.1);
            (self.hooks.open)(Keyed::shares(master, slot, k, n))
        });
        drop(held);
        match opened {
            Ok(()) => {
                tracing::warn!("unsealed by {who}: the node is open");
                UnsealResponse {
                    ok: true,
                    ..Default::default()
                }
            }
            Err(e) => {
                tracing::warn!("unseal failed, progress reset: {e}");
                fail(
                    e.exit_code(),
                    format!(
                        "the node did not open ({e}); the progress is reset: give the shares again"
                    ),
                )
            }
        }
    }

    /// One connection: request lines until the end, each answered.
    fn connection(&self, s: UnixStream) {
        let p = match peer(&s) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!("unseal socket: no peer credentials: {e}");
                return;
            }
        };
        if !self.allowed(p, &peer_groups(&s)) {
            tracing::warn!(
                "unseal socket: refused uid {} ({}) pid {}",
                p.uid,
                user_name(p.uid),
                p.pid
            );
            let _ = write_line(&s, &fail(ExitCode::Usage, "permission denied"));
            return;
        }
        let _ = s.set_read_timeout(Some(IO_TIMEOUT));
        let _ = s.set_write_timeout(Some(IO_TIMEOUT));
        let mut reader = BufReader::new(&s).take(MAX_LINE as u64 * 4);
        loop {
            let mut line = Zeroizing::new(String::new());
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(n) if n > MAX_LINE => {
                    let _ = write_line(&s, &fail(ExitCode::Usage, "request too long"));
                    return;
                }
                Ok(_) => {}
            }
            let resp = match serde_json::from_str::<UnsealRequest>(&line) {
                Ok(req) => self.answer(req, p),
                Err(_) => fail(ExitCode::Usage, "malformed request"),
            };
            if write_line(&s, &resp).is_err() {
                return;
            }
        }
    }

    /// Wipe expired partial shares (called by the accept loop).
    fn tick(&self) {
        self.progress.lock().expire();
    }
}

fn write_line(mut s: &UnixStream, r: &UnsealResponse) -> io::Result<()> {
    let mut text = serde_json::to_string(r).map_err(io::Error::other)?;
    text.push('\n');
    s.write_all(text.as_bytes())
}

/// Bind the abstract socket of `home` (failing if another process holds the name).
pub fn bind(home: &Path) -> io::Result<UnixListener> {
    let addr = SocketAddr::from_abstract_name(socket_name(home))?;
    UnixListener::bind_addr(&addr)
}

/// Connect to the unseal socket of `home`.
pub fn connect(home: &Path) -> io::Result<UnixStream> {
    let addr = SocketAddr::from_abstract_name(socket_name(home))?;
    let s = UnixStream::connect_addr(&addr)?;
    s.set_read_timeout(Some(Duration::from_secs(120)))?;
    Ok(s)
}

/// Serve until `stop` is set. One connection at a time per thread; requests
/// are serialized by the progress lock.
pub fn serve(listener: UnixListener, u: Arc<Unsealer>, stop: Arc<AtomicBool>) {
    if let Err(e) = listener.set_nonblocking(true) {
        tracing::warn!("unseal socket: {e}");
    }
    let mut workers: Vec<std::thread::JoinHandle<()>> = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        workers.retain(|w| !w.is_finished());
        u.tick();
        match listener.accept() {
            Ok((s, _)) => {
                let _ = s.set_nonblocking(false);
                let u = u.clone();
                if let Ok(w) = std::thread::Builder::new()
                    .name("pkfs-unseal".into())
                    .spawn(move || u.connection(s))
                {
                    workers.push(w);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => {
                tracing::warn!("unseal socket: accept failed: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
    for w in workers {
        let _ = w.join();
    }
}

/// The client: send `req`, read one response.
pub fn call(s: &UnixStream, req: &UnsealRequest) -> io::Result<UnsealResponse> {
    let mut text = Zeroizing::new(serde_json::to_string(req).map_err(io::Error::other)?);
    text.push('\n');
    let mut w = s;
    w.write_all(text.as_bytes())?;
    let mut line = String::new();
    BufReader::new(s)
        .take(MAX_LINE as u64 * 4)
        .read_line(&mut line)?;
    serde_json::from_str(&line).map_err(io::Error::other)
}
