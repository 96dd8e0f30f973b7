//! Tests of the control socket's server and client.

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
fn input_and_output_stream_in_pieces() {
    let s = Server::new();
    let data: Vec<u8> = (0..3 * CHUNK + 17).map(|i| (i % 251) as u8).collect();
    let mut c = CommandRequest::new(vec!["pkfs".into()], "/d".into());
    c.input_follows = true;
    let stream = client::connect(s.home()).unwrap();
    let mut early = Vec::new();
    let mut pieces = 0;
    let resp = client::call_streaming(&stream, &Request::Command(c), Some(&data), &mut |p| {
        assert!(p.len() <= CHUNK);
        pieces += 1;
        early.extend_from_slice(p);
        Ok(())
    })
    .unwrap();
    let Response::Command { ref stdout, .. } = resp else {
        panic!("{resp:?}")
    };
    assert_eq!(pieces, 3);
    early.extend_from_slice(stdout);
    assert!(early == data, "the input came back whole, in order");
}

#[test]
fn a_request_whose_client_left_mid_input_never_runs() {
    let s = Server::new();
    let mut c = CommandRequest::new(vec!["pkfs".into()], "/d".into());
    c.input_follows = true;
    let mut raw = s.raw();
    write_frame(&mut raw, &Request::Command(c)).unwrap();
    write_frame(&mut raw, &Input::Data(vec![1; 10])).unwrap();
    drop(raw);
    // A request with an incomplete input stream is answered with an
    // error, and the handler is not called.
    let mut c = CommandRequest::new(vec!["pkfs".into()], "/d".into());
    c.input_follows = true;
    let mut raw = s.raw();
    write_frame(&mut raw, &Request::Command(c)).unwrap();
    raw.shutdown(std::net::Shutdown::Write).unwrap();
    let resp: Response = read_frame(&mut raw).unwrap();
    assert_eq!(error_code(&resp), 1);
    s.assert_alive();
    assert_eq!(s.calls.load(Ordering::SeqCst), 1, "only the status ran");
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
