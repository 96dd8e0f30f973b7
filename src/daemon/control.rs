//! The daemon's side of the control socket `HOME/run/pkfs.sock`.
//!
//! [`serve`] accepts connections until its `stop` flag is set. Each connection
//! gets a thread, which
//!
//! 1. asks the kernel who the peer is (`SO_PEERCRED`) and refuses any user other
//!    than the daemon's own effective uid;
//! 2. reads one request frame within [`REQUEST_TIMEOUT`] (a client that sends
//!    nothing, or sends slowly, cannot hold a thread longer than that);
//! 3. calls the handler (a panic in it becomes an error response);
//! 4. writes the response within [`REQUEST_TIMEOUT`], and closes.
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

use super::protocol::{read_frame, write_frame, ProtocolError, Request, Response, MAX_FRAME};

/// The command handler: the daemon's executor.
pub type Handler = Arc<dyn Fn(Request) -> Response + Send + Sync>;

/// How long a client has to send its request, and to take the response.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How often the accept loop looks at its `stop` flag.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Create `run/` (0700) if missing, clear a stale socket file (one nothing
/// answers on), bind, and make the socket 0600.
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
        Ok(_) => match UnixStream::connect(sock_path) {
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
    let listener = UnixListener::bind(sock_path)?;
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

/// The uid of the process at the other end of `stream`, from the kernel.
pub fn peer_uid(stream: &UnixStream) -> io::Result<u32> {
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
    Ok(cred.uid)
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
    let req = match read_frame::<_, Request>(&mut io) {
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
    let resp = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handler(req)))
        .unwrap_or_else(|_| error(1, "internal error: the daemon's handler panicked".into()));
    reply(&mut io, &resp);
}

fn error(code: i32, message: String) -> Response {
    Response::Error { code, message }
}

/// Send `resp`, with a fresh deadline.
fn reply(io: &mut Deadline, resp: &Response) {
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
mod tests {
    use super::*;
    use crate::daemon::client;
    use crate::daemon::protocol::CommandRequest;
    use std::sync::atomic::AtomicUsize;

    /// A server on `<tmp>/run/pkfs.sock` with a test handler; stopped on drop.
    struct Server {
        tmp: tempfile::TempDir,
        stop: Arc<AtomicBool>,
        calls: Arc<AtomicUsize>,
        thread: Option<JoinHandle<()>>,
    }

    /// Status -> Status("status"); Unmount -> panic; Command -> the argument
    /// count as code and stdin echoed on stdout.
    fn handler(calls: Arc<AtomicUsize>) -> Handler {
        Arc::new(move |req| {
            calls.fetch_add(1, Ordering::SeqCst);
            match req {
                Request::Status => Response::Status("status".into()),
                Request::Unmount => panic!("test handler panics on Unmount"),
                Request::Command(mut c) => Response::Command {
                    code: c.args.len() as i32,
                    stdout: c.stdin.take().unwrap_or_default(),
                    stderr: c.cwd.to_string_lossy().as_bytes().to_vec(),
                },
            }
        })
    }

    impl Server {
        fn start(rules: Rules) -> Server {
            let tmp = tempfile::tempdir().unwrap();
            let listener = bind(&client::socket_path(tmp.path())).unwrap();
            let stop = Arc::new(AtomicBool::new(false));
            let calls = Arc::new(AtomicUsize::new(0));
            let (h, s) = (handler(calls.clone()), stop.clone());
            let thread = std::thread::spawn(move || serve_with(listener, h, s, rules));
            Server {
                tmp,
                stop,
                calls,
                thread: Some(thread),
            }
        }

        fn new() -> Server {
            Server::start(Rules {
                allowed_uid: euid(),
                timeout: REQUEST_TIMEOUT,
            })
        }

        fn home(&self) -> &Path {
            self.tmp.path()
        }

        fn raw(&self) -> UnixStream {
            UnixStream::connect(client::socket_path(self.home())).unwrap()
        }

        fn ask(&self, req: &Request) -> Response {
            let s = client::connect(self.home()).expect("the server answers");
            client::call(&s, req).unwrap()
        }

        /// The server still answers a normal request.
        fn assert_alive(&self) {
            assert_eq!(
                self.ask(&Request::Status),
                Response::Status("status".into())
            );
        }

        fn stop(&mut self) -> Duration {
            let t = Instant::now();
            self.stop.store(true, Ordering::SeqCst);
            if let Some(th) = self.thread.take() {
                th.join().unwrap();
            }
            t.elapsed()
        }
    }

    impl Drop for Server {
        fn drop(&mut self) {
            self.stop();
        }
    }

    fn error_code(resp: &Response) -> i32 {
        match resp {
            Response::Error { code, .. } => *code,
            other => panic!("expected an error response, got {other:?}"),
        }
    }

    #[test]
    fn bind_makes_private_socket_and_run_dir() {
        let s = Server::new();
        let sock = client::socket_path(s.home());
        assert_eq!(fs::metadata(&sock).unwrap().mode() & 0o777, 0o600);
        assert_eq!(
            fs::metadata(sock.parent().unwrap()).unwrap().mode() & 0o777,
            0o700
        );
        // A second daemon cannot take over a live socket.
        let err = bind(&sock).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        s.assert_alive();
    }

    #[test]
    fn bind_replaces_a_stale_socket_but_not_other_files() {
        let tmp = tempfile::tempdir().unwrap();
        let sock = client::socket_path(tmp.path());
        drop(bind(&sock).unwrap()); // the file stays, nothing listens
        assert!(fs::symlink_metadata(&sock).is_ok());
        assert!(client::connect(tmp.path()).is_none(), "stale: no daemon");
        let l = bind(&sock).unwrap();
        assert!(client::connect(tmp.path()).is_some());
        drop(l);
        fs::remove_file(&sock).unwrap();
        fs::write(&sock, b"not a socket").unwrap();
        assert_eq!(
            bind(&sock).unwrap_err().kind(),
            io::ErrorKind::AlreadyExists
        );
        assert_eq!(fs::read(&sock).unwrap(), b"not a socket");
    }

    #[test]
    fn connect_without_a_socket_is_none() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(client::connect(tmp.path()).is_none());
        assert!(client::connect(&tmp.path().join("missing/home")).is_none());
    }

    #[test]
    fn round_trip() {
        let s = Server::new();
        s.assert_alive();
        let mut c = CommandRequest::new(vec!["pkfs".into(), "x".into()], "/some/dir".into());
        c.stdin = Some(vec![0, 1, 2, 255]);
        match s.ask(&Request::Command(c)) {
            Response::Command {
                ref stdout,
                ref stderr,
                code,
            } => {
                assert_eq!(code, 2);
                assert_eq!(stdout, &[0, 1, 2, 255]);
                assert_eq!(stderr, b"/some/dir");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(s.calls.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn oversize_request_is_refused_and_the_server_survives() {
        let s = Server::new();
        let mut raw = s.raw();
        raw.write_all(&(MAX_FRAME + 1).to_be_bytes()).unwrap();
        let resp: Response = read_frame(&mut raw).unwrap();
        assert_eq!(error_code(&resp), 2);
        // And the connection is closed afterwards.
        let mut rest = Vec::new();
        raw.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty());
        assert_eq!(s.calls.load(Ordering::SeqCst), 0);
        s.assert_alive();
    }

    #[test]
    fn garbage_is_refused_and_the_server_survives() {
        let s = Server::new();
        for body in [
            &b"\xff\xff\xff\xff garbage"[..],
            b"",
            b"\x00\xff\xff\xff\xff\x0f",
        ] {
            let mut raw = s.raw();
            raw.write_all(&(body.len() as u32).to_be_bytes()).unwrap();
            raw.write_all(body).unwrap();
            let resp: Response = read_frame(&mut raw).unwrap();
            assert_eq!(error_code(&resp), 2, "{body:?}");
        }
        // A connection that closes halfway through a frame, and one that sends nothing.
        let mut raw = s.raw();
        raw.write_all(&[0, 0, 0, 10, 1, 2]).unwrap();
        raw.shutdown(std::net::Shutdown::Write).unwrap();
        let _ = read_frame::<_, Response>(&mut raw);
        drop(s.raw());
        assert_eq!(s.calls.load(Ordering::SeqCst), 0);
        s.assert_alive();
    }

    #[test]
    fn a_panicking_handler_gives_an_error_and_the_server_survives() {
        let s = Server::new();
        assert_eq!(error_code(&s.ask(&Request::Unmount)), 1);
        s.assert_alive();
    }

    #[test]
    fn other_users_are_refused() {
        let s = Server::start(Rules {
            allowed_uid: euid().wrapping_add(1),
            timeout: REQUEST_TIMEOUT,
        });
        let resp = s.ask(&Request::Status);
        match &resp {
            Response::Error { code: 1, message } => assert!(message.contains("permission denied")),
            other => panic!("{other:?}"),
        }
        assert_eq!(s.calls.load(Ordering::SeqCst), 0, "the handler never ran");
    }

    #[test]
    fn a_silent_client_times_out_without_blocking_others() {
        let s = Server::start(Rules {
            allowed_uid: euid(),
            timeout: Duration::from_millis(300),
        });
        let t = Instant::now();
        let mut silent = s.raw();
        s.assert_alive(); // served while the silent one waits
        let resp: Response = read_frame(&mut silent).unwrap();
        assert_eq!(error_code(&resp), 1);
        let waited = t.elapsed();
        assert!(waited >= Duration::from_millis(250), "{waited:?}");
        assert!(waited < Duration::from_secs(10), "{waited:?}");
    }

    #[test]
    fn the_stop_flag_ends_the_loop() {
        let mut s = Server::new();
        s.assert_alive();
        let took = s.stop();
        assert!(took < Duration::from_secs(5), "stopping took {took:?}");
        // Nobody accepts any more: a connection is never answered.
        let stream = UnixStream::connect(client::socket_path(s.home()));
        if let Ok(stream) = stream {
            stream
                .set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            let _ = write_frame(&stream, &Request::Status);
            assert!(read_frame::<_, Response>(&stream).is_err());
        }
        assert_eq!(s.calls.load(Ordering::SeqCst), 1);
    }
}
