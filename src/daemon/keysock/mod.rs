//! The key service's socket, `HOME/run/keys.sock` (and optionally a second
//! one where a group can reach it): JSON lines, see [`protocol`] and
//! `docs/KEYS.md`.
//!
//! * The socket file is 0600; with a keys group, 0660 and that group.
//! * Each connection is checked with `SO_PEERCRED` / `SO_PEERGROUPS`: the
//!   daemon's own user, or (with a keys group) a member of that group; anyone
//!   else gets one `denied` line and is closed.
//! * Each connection has a thread of its own, at most [`MAX_CLIENTS`] at once
//!   (more get a `busy` line). A line longer than [`MAX_LINE`] is answered
//!   with `too_large` and the connection closed; a client has [`IDLE_TIMEOUT`]
//!   to finish each line and to take each answer. The store's lock is never
//!   held while a client is read or written, so a slow client holds up
//!   nobody.
//! * Every answer is logged (target [`AUDIT_TARGET`], level info) with the
//!   caller's uid, the op, owner, service and outcome; never a key.

pub mod protocol;

use std::ffi::CString;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

use crate::daemon::control::via_short_path;
use crate::keys::Keyring;
use protocol::{answer, error_line, Caller};

/// The tracing target of the audit lines (let through at info level whatever
/// the log level, see `cli::init_logging`).
pub const AUDIT_TARGET: &str = "pkfs_keys_audit";
/// The longest request line: 1 MiB.
pub const MAX_LINE: usize = 1 << 20;
/// Connections served at once.
pub const MAX_CLIENTS: usize = 256;
/// How long a client has for each request line, and to take each answer.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// The socket's path in a home.
pub fn socket_path(home: &Path) -> PathBuf {
    home.join("run").join("keys.sock")
}

/// Who may connect.
#[derive(Debug, Clone, Copy)]
pub struct Access {
    pub owner_uid: u32,
    pub group: Option<u32>,
}

/// A group's id from its name (or a number).
pub fn group_id(name: &str) -> io::Result<u32> {
    if let Ok(n) = name.parse::<u32>() {
        return Ok(n);
    }
    let c = CString::new(name).map_err(|_| io::Error::other("a group name with a NUL byte"))?;
    // SAFETY: `group` is plain old data; all zeroes is a valid value.
    let mut grp: libc::group = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16384];
    let mut out: *mut libc::group = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the sizes given for the whole call.
    let rc =
        unsafe { libc::getgrnam_r(c.as_ptr(), &mut grp, buf.as_mut_ptr(), buf.len(), &mut out) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    if out.is_null() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no group {name:?}"),
        ));
    }
    Ok(grp.gr_gid)
}

/// Bind `path` (its directory must exist; a stale socket there is replaced),
/// 0600, or 0660 and group `group`.
pub fn bind(path: &Path, group: Option<u32>) -> io::Result<UnixListener> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if !m.file_type().is_socket() => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{path:?} exists and is not a socket"),
            ))
        }
        Ok(_) => match via_short_path(path, |p| UnixStream::connect(p)) {
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("a daemon already answers on {path:?}"),
                ))
            }
            Err(_) => std::fs::remove_file(path)?,
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    // Created owner-only, then opened to the group if asked.
    // SAFETY: umask has no preconditions; restored right after the bind.
    let old = unsafe { libc::umask(0o177) };
    // A path too long for a sockaddr_un is bound through its directory.
    let bound = via_short_path(path, |p| UnixListener::bind(p));
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    let listener = bound?;
    if let Some(gid) = group {
        let c = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| io::Error::other("a socket path with a NUL byte"))?;
        // SAFETY: a valid C string; uid -1 leaves the owner as it is.
        if unsafe { libc::chown(c.as_ptr(), u32::MAX, gid) } != 0 {
            let e = io::Error::last_os_error();
            let _ = std::fs::remove_file(path);
            return Err(e);
        }
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    } else {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(listener)
}

/// The peer's uid, gid and supplementary groups, from the kernel.
pub fn peer(stream: &UnixStream) -> io::Result<(u32, u32, Vec<u32>)> {
    let cred = super::control::peer_cred(stream)?;
    let mut groups = vec![0u32; 1024];
    let mut glen = (groups.len() * 4) as libc::socklen_t;
    // SAFETY: `groups` has room for `glen` bytes.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERGROUPS,
            groups.as_mut_ptr().cast(),
            &mut glen,
        )
    };
    if rc == 0 {
        groups.truncate(glen as usize / 4);
    } else {
        groups.clear();
    }
    Ok((cred.uid, cred.gid, groups))
}

/// Serve `listener` until `stop` is set.
pub fn serve(listener: UnixListener, ring: Arc<Keyring>, access: Access, stop: Arc<AtomicBool>) {
    if let Err(e) = listener.set_nonblocking(true) {
        tracing::warn!("keys socket: cannot make the listener nonblocking: {e}");
    }
    let active = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        workers.retain(|w: &std::thread::JoinHandle<()>| !w.is_finished());
        if !readable(&listener, POLL_INTERVAL) {
            continue;
        }
        let stream = match listener.accept() {
            Ok((s, _)) => s,
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock
                    || e.kind() == io::ErrorKind::Interrupted =>
            {
                continue
            }
            Err(e) => {
                tracing::warn!("keys socket: accept failed: {e}");
                std::thread::sleep(POLL_INTERVAL);
                continue;
            }
        };
        if active.load(Ordering::SeqCst) >= MAX_CLIENTS {
            let _ = stream.set_nonblocking(false);
            let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
            let _ = (&stream).write_all(&error_line("busy", "too many clients; try again"));
            continue;
        }
        active.fetch_add(1, Ordering::SeqCst);
        let (ring, active2, stop2) = (ring.clone(), active.clone(), stop.clone());
        match std::thread::Builder::new()
            .name("pkfs-keys".into())
            .spawn(move || {
                connection(stream, &ring, access, &stop2);
                active2.fetch_sub(1, Ordering::SeqCst);
            }) {
            Ok(w) => workers.push(w),
            Err(e) => {
                active.fetch_sub(1, Ordering::SeqCst);
                tracing::warn!("keys socket: cannot start a thread: {e}");
            }
        }
    }
    for w in workers {
        let _ = w.join();
    }
}

fn readable(fd: &impl AsRawFd, timeout: Duration) -> bool {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
    // SAFETY: one valid pollfd, owned by this frame, for the duration of the call.
    let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
    rc > 0 && pfd.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0
}

fn audit(uid: u32, what: &str) {
    tracing::info!(target: AUDIT_TARGET, "keys.sock: uid {uid}: {what}");
}

/// One connection: check the peer, then answer lines until it closes, errs,
/// sends too long a line, idles past the timeout, or the daemon stops.
fn connection(stream: UnixStream, ring: &Keyring, access: Access, stop: &AtomicBool) {
    if stream.set_nonblocking(false).is_err() {
        return;
    }
    let _ = stream.set_write_timeout(Some(IDLE_TIMEOUT));
    let (uid, gid, groups) = match peer(&stream) {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!("keys socket: cannot identify a peer: {e}");
            return;
        }
    };
    let is_owner = uid == access.owner_uid;
    let member = access
        .group
        .is_some_and(|g| gid == g || groups.contains(&g));
    if !is_owner && !member {
        audit(uid, "refused: not the daemon's user nor in the keys group");
        let _ = (&stream).write_all(&error_line(
            "denied",
            &format!("permission denied: uid {uid} may not use this key service"),
        ));
        return;
    }
    let caller = Caller { uid, is_owner };
    let mut reader = Lines::new(&stream);
    loop {
        let line = match reader.next_line(stop) {
            Ok(Some(l)) => l,
            Ok(None) => return,
            Err(LineError::TooLarge) => {
                audit(uid, "error too_large");
                let _ = (&stream).write_all(&error_line(
                    "too_large",
                    &format!("a request line is limited to {MAX_LINE} bytes"),
                ));
                return;
            }
            Err(LineError::Io(e)) => {
                tracing::debug!("keys socket: uid {uid}: {e}");
                return;
            }
        };
        let (out, a) = answer(ring, caller, &line, crate::keys::now_unix());
        audit(
            uid,
            &format!(
                "{:?} owner={:?} service={:?}: {}",
                a.op,
                a.owner.as_deref().unwrap_or("-"),
                a.service.as_deref().unwrap_or("-"),
                a.outcome
            ),
        );
        if (&stream).write_all(&out).is_err() {
            return;
        }
    }
}

enum LineError {
    TooLarge,
    Io(io::Error),
}

/// Lines read into zeroizing buffers, bounded, each within the timeout.
struct Lines<'a> {
    stream: &'a UnixStream,
    buf: Zeroizing<Vec<u8>>,
}

impl<'a> Lines<'a> {
    fn new(stream: &'a UnixStream) -> Self {
        Lines {
            stream,
            buf: Zeroizing::new(Vec::with_capacity(16 * 1024)),
        }
    }

    /// Append, growing by copying into a bigger zeroizing buffer (never
    /// `realloc`, which would leave a copy behind).
    fn extend(&mut self, bytes: &[u8]) {
        if self.buf.capacity() - self.buf.len() < bytes.len() {
            let want = (self.buf.len() + bytes.len()).max(self.buf.capacity() * 2);
            let mut bigger = Zeroizing::new(Vec::with_capacity(want));
            bigger.extend_from_slice(&self.buf);
            self.buf = bigger;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next line without its newline; `None` at a clean end.
    fn next_line(&mut self, stop: &AtomicBool) -> Result<Option<Zeroizing<Vec<u8>>>, LineError> {
        let mut started: Option<Instant> = None;
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let mut line = Zeroizing::new(self.buf[..i].to_vec());
                self.buf.drain(..=i);
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(Some(line));
            }
            if self.buf.len() > MAX_LINE {
                return Err(LineError::TooLarge);
            }
            if stop.load(Ordering::SeqCst) {
                return Ok(None);
            }
            // A partial line must be finished within the timeout; between
            // requests an idle client may wait as long, then is closed.
            let t0 = *started.get_or_insert_with(Instant::now);
            if t0.elapsed() >= IDLE_TIMEOUT {
                return Err(LineError::Io(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "timed out",
                )));
            }
            if !readable(self.stream, POLL_INTERVAL) {
                continue;
            }
            let mut chunk = Zeroizing::new([0u8; 8192]);
            let room = (MAX_LINE + 1 - self.buf.len().min(MAX_LINE)).min(chunk.len());
            match (&*self.stream).read(&mut chunk[..room]) {
                Ok(0) if self.buf.is_empty() => return Ok(None),
                Ok(0) => {
                    // A last line without a newline still counts.
                    let line = Zeroizing::new(self.buf.to_vec());
                    self.buf.clear();
                    return Ok(Some(line));
                }
                Ok(n) => self.extend(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(LineError::Io(e)),
            }
        }
    }
}
