//! The daemon's side of the control socket `HOME/run/pkfs.sock`.
//!
//! [`serve`] accepts connections until its `stop` flag is set. Each connection
//! gets a thread, which
//!
//! 1. asks the kernel who the peer is (`SO_PEERCRED`) and refuses any user other
//!    than the daemon's own effective uid;
//! 2. reads one request frame within [`REQUEST_TIMEOUT`] (a client that sends
//!    nothing, or sends slowly, cannot hold a thread longer than that), and
//!    the command's input stream if one follows, each frame within the same
//!    time, all of it before anything runs (see `protocol`);
//! 3. abandons the request if the client has gone meanwhile; else calls the
//!    handler (a panic in it becomes an error response);
//! 4. writes the response within [`REQUEST_TIMEOUT`] per frame, a large
//!    output in pieces, and closes.
//!
//! A malformed or oversized request is answered with [`Response::Error`] (code
//! 2); the server keeps serving.
//!
//! Stopping: the listener is polled with a timeout of [`POLL_INTERVAL`], and the
//! flag is checked at least that often, so setting `stop` is enough; a caller
//! that wants no delay may also connect once to wake the loop (that connection
//! is closed without an answer). `serve` returns after the connections it
//! accepted have finished, so no command is cut short.

use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

use super::protocol::{
    read_frame, write_frame, Input, ProtocolError, Request, Response, CHUNK, MAX_FRAME, MAX_INPUT,
};

/// The command handler: the daemon's executor.
pub type Handler = Arc<dyn Fn(Request) -> Response + Send + Sync>;

/// How long a client has to send its request, and to take the response.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How often the accept loop looks at its `stop` flag.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// The longest path a `sockaddr_un` holds (108 bytes with the NUL).
const SUN_PATH_MAX: usize = 107;

/// Run `op` (a bind or a connect) on a path to the socket file `sock_path`
/// that fits in a `sockaddr_un`: the path itself when it fits, else
/// `/proc/self/fd/N/NAME`, where N is an `O_PATH` descriptor of its directory
/// held for the call. The kernel resolves that path like any other, so the
/// socket stays at `HOME/run/pkfs.sock` whatever the length of the home's
/// path, with no change of directory (which is per process, not per thread)
/// and no link to keep anywhere else.
pub fn via_short_path<T>(
    sock_path: &Path,
    op: impl FnOnce(&Path) -> io::Result<T>,
) -> io::Result<T> {
    use std::os::unix::fs::OpenOptionsExt;
    if sock_path.as_os_str().len() <= SUN_PATH_MAX {
        return op(sock_path);
    }
    let (Some(dir), Some(name)) = (sock_path.parent(), sock_path.file_name()) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "socket path has no parent",
        ));
    };
    let dir_fd = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(dir)?;
    let short = Path::new("/proc/self/fd")
        .join(dir_fd.as_raw_fd().to_string())
        .join(name);
    if short.as_os_str().len() > SUN_PATH_MAX {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?}: socket file name too long"),
        ));
    }
    let r = op(&short);
    drop(dir_fd);
    r
}

/// Create `run/` (0700) if missing, clear a stale socket file (one nothing
/// answers on), bind, and make the socket 0600. A socket path longer than a
/// `sockaddr_un` holds is bound through [`via_short_path`].
pub fn bind(sock_path: &Path) -> io::Result<UnixListener> {
    let dir = sock_path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "socket path has no parent"))?;
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let meta = fs::symlink_metadata(dir)?;
    if !meta.is_dir() {
        return Err(io::Error::other(format!("{dir:?} is not a directory")));
    }
    if meta.uid() != euid() {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{dir:?} belongs to another user"),
        ));
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    match fs::symlink_metadata(sock_path) {
        Ok(m) if !m.file_type().is_socket() => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{sock_path:?} exists and is not a socket"),
            ))
        }
        Ok(_) => match via_short_path(sock_path, |p| UnixStream::connect(p)) {
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("a daemon already answers on {sock_path:?}"),
                ))
            }
            Err(_) => fs::remove_file(sock_path)?,
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = via_short_path(sock_path, |p| UnixListener::bind(p))?;
    fs::set_permissions(sock_path, fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Serve requests on `listener` until `stop` is set (see the module docs).
pub fn serve(listener: UnixListener, handler: Handler, stop: Arc<AtomicBool>) {
    let rules = Rules {
        allowed_uid: euid(),
        timeout: REQUEST_TIMEOUT,
    };
    serve_with(listener, handler, stop, rules)
}

/// Who may connect, and how long they have.
#[derive(Debug, Clone, Copy)]
struct Rules {
    allowed_uid: u32,
    timeout: Duration,
}

/// The accept loop of [`serve`].
fn serve_with(listener: UnixListener, handler: Handler, stop: Arc<AtomicBool>, rules: Rules) {
    if let Err(e) = listener.set_nonblocking(true) {
        tracing::warn!("control socket: cannot make the listener nonblocking: {e}");
    }
    let mut workers: Vec<JoinHandle<()>> = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        workers.retain(|w| !w.is_finished());
        if !readable(&listener, POLL_INTERVAL) {
            continue;
        }
        let stream = match listener.accept() {
            Ok((s, _)) => s,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::Interrupted
                        | io::ErrorKind::ConnectionAborted
                ) =>
            {
                continue
            }
            Err(e) => {
                // Out of descriptors or memory: back off rather than spin.
                tracing::warn!("control socket: accept failed: {e}");
                std::thread::sleep(POLL_INTERVAL);
                continue;
            }
        };
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let h = Arc::clone(&handler);
        match std::thread::Builder::new()
            .name("pkfs-control".into())
            .spawn(move || connection(stream, h, rules))
        {
            Ok(w) => workers.push(w),
            Err(e) => tracing::warn!("control socket: cannot start a thread: {e}"),
        }
    }
    for w in workers {
        let _ = w.join();
    }
}

/// Wait up to `timeout` for a connection to be pending.
fn readable(listener: &UnixListener, timeout: Duration) -> bool {
    let mut pfd = libc::pollfd {
        fd: listener.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
    // SAFETY: one valid pollfd, owned by this frame, for the duration of the call.
    let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
    rc > 0 && pfd.revents & libc::POLLIN != 0
}

/// The credentials (pid, uid, gid) of the process at the other end of
/// `stream`, from the kernel: the one SO_PEERCRED call every socket service uses.
pub fn peer_cred(stream: &UnixStream) -> io::Result<libc::ucred> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` and `len` are valid for writes of the sizes given, and the
    // descriptor belongs to `stream` for the duration of the call.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    if len as usize != std::mem::size_of::<libc::ucred>() {
        return Err(io::Error::other("SO_PEERCRED returned a short answer"));
    }
    Ok(cred)
}

/// The uid of the process at the other end of `stream`, from the kernel.
pub fn peer_uid(stream: &UnixStream) -> io::Result<u32> {
    peer_cred(stream).map(|c| c.uid)
}

pub(crate) fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// One connection: check the peer, read one request, answer it, close.
fn connection(stream: UnixStream, handler: Handler, rules: Rules) {
    if let Err(e) = stream.set_nonblocking(false) {
        tracing::debug!("control socket: {e}");
        return;
    }
    let mut io = Deadline {
        stream: &stream,
        timeout: rules.timeout,
        until: Instant::now() + rules.timeout,
    };
    match peer_uid(&stream) {
        Ok(uid) if uid == rules.allowed_uid => {}
        Ok(uid) => {
            tracing::warn!("control socket: refused a connection from uid {uid}");
            return reply(
                &mut io,
                &error(
                    1,
                    format!("permission denied: uid {uid} is not the daemon's user"),
                ),
            );
        }
        Err(e) => {
            return reply(&mut io, &error(1, format!("cannot identify the peer: {e}")));
        }
    }
    let mut req = match read_frame::<_, Request>(&mut io) {
        Ok(r) => r,
        // A client that only checked whether a daemon answers, or a wake-up.
        Err(ProtocolError::Closed) => return,
        Err(e @ (ProtocolError::TooLarge(_) | ProtocolError::Malformed(_))) => {
            return reply(&mut io, &error(2, format!("bad request: {e}")));
        }
        Err(e) => {
            tracing::debug!("control socket: reading a request: {e}");
            return reply(&mut io, &error(1, format!("reading the request: {e}")));
        }
    };
    if let Request::Command(c) = &mut req {
        if c.input_follows {
            match read_input(&mut io) {
                Ok(data) => c.stdin = Some(std::mem::take(&mut *data.into_inner())),
                // Nothing ran; the client, if still there, learns why.
                Err(resp) => return reply(&mut io, &resp),
            }
        }
    }
    if peer_gone(&stream) {
        tracing::debug!("control socket: the client left before its request ran");
        return;
    }
    let resp = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handler(req)))
        .unwrap_or_else(|_| error(1, "internal error: the daemon's handler panicked".into()));
    reply(&mut io, &resp);
}

/// A command's input stream, to its end, each frame within the timeout; or
/// the error to answer.
fn read_input(io: &mut Deadline) -> Result<Grown, Response> {
    let mut data = Grown::default();
    loop {
        io.until = Instant::now() + io.timeout;
        let frame = match read_frame::<_, Input>(&mut *io) {
            Ok(f) => f,
            Err(e @ (ProtocolError::TooLarge(_) | ProtocolError::Malformed(_))) => {
                return Err(error(2, format!("bad input stream: {e}")))
            }
            Err(e) => {
                tracing::debug!("control socket: the client's input ended early: {e}");
                return Err(error(1, format!("the input ended before its end: {e}")));
            }
        };
        match &frame {
            Input::End => return Ok(data),
            Input::Data(bytes) => {
                if (data.len() + bytes.len()) as u64 > MAX_INPUT {
                    return Err(error(
                        2,
                        format!(
                            "the input exceeds the daemon's limit of {} MiB",
                            MAX_INPUT >> 20
                        ),
                    ));
                }
                data.extend(bytes);
            }
        }
    }
}

/// A zeroizing buffer that grows without leaving copies behind: a full one is
/// replaced by a bigger one and the old one wiped.
#[derive(Default)]
struct Grown(Zeroizing<Vec<u8>>);

impl Grown {
    fn len(&self) -> usize {
        self.0.len()
    }

    fn extend(&mut self, bytes: &[u8]) {
        if self.0.capacity() - self.0.len() < bytes.len() {
            let want = (self.0.len() + bytes.len()).max(self.0.capacity() * 2);
            let mut bigger = Zeroizing::new(Vec::with_capacity(want));
            bigger.extend_from_slice(&self.0);
            self.0 = bigger;
        }
        self.0.extend_from_slice(bytes);
    }

    fn into_inner(self) -> Zeroizing<Vec<u8>> {
        self.0
    }
}

/// Has the client closed its socket (killed, or given up)? A request whose
/// client is gone is abandoned rather than run for nobody. A client that only
/// shut down its sending side still waits for the answer: not gone.
fn peer_gone(stream: &UnixStream) -> bool {
    let mut pfd = libc::pollfd {
        fd: stream.as_raw_fd(),
        events: 0,
        revents: 0,
    };
    // SAFETY: one valid pollfd, owned by this frame, for the duration of the call.
    let rc = unsafe { libc::poll(&mut pfd, 1, 0) };
    rc > 0 && pfd.revents & (libc::POLLHUP | libc::POLLERR) != 0
}

fn error(code: i32, message: String) -> Response {
    Response::Error { code, message }
}

/// Send `resp`, with a fresh deadline per frame: a command's output beyond
/// [`CHUNK`] bytes goes first, as [`Response::Output`] pieces.
fn reply(io: &mut Deadline, resp: &Response) {
    if let Response::Command {
        code,
        stdout,
        stderr,
    } = resp
    {
        if stdout.len() > CHUNK {
            let (pieces, last) = stdout.split_at(stdout.len() - CHUNK);
            for piece in pieces.chunks(CHUNK) {
                io.until = Instant::now() + io.timeout;
                if let Err(e) = write_frame(&mut *io, &Response::Output(piece.to_vec())) {
                    tracing::debug!("control socket: writing a response: {e}");
                    return;
                }
            }
            let rest = Response::Command {
                code: *code,
                stdout: last.to_vec(),
                stderr: stderr.clone(),
            };
            return reply(io, &rest);
        }
    }
    io.until = Instant::now() + io.timeout;
    match write_frame(&mut *io, resp) {
        Ok(()) => {}
        Err(ProtocolError::TooLarge(n)) => {
            let msg = format!(
                "the answer ({n} bytes) exceeds the control socket's limit of {} MiB",
                MAX_FRAME >> 20
            );
            let _ = write_frame(&mut *io, &error(1, msg));
        }
        Err(e) => tracing::debug!("control socket: writing a response: {e}"),
    }
}

/// Reads and writes on a stream that give up at `until`, however the peer
/// paces its bytes.
struct Deadline<'a> {
    stream: &'a UnixStream,
    timeout: Duration,
    until: Instant,
}

impl Deadline<'_> {
    fn remaining(&self) -> io::Result<Duration> {
        let left = self.until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "timed out"));
        }
        Ok(left)
    }
}

impl Read for Deadline<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream.set_read_timeout(Some(self.remaining()?))?;
        self.stream.read(buf)
    }
}

impl Write for Deadline<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stream.set_write_timeout(Some(self.remaining()?))?;
        self.stream.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
