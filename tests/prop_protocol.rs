//! Property tests of the control-socket protocol (`pkfs::daemon::protocol`):
//! any frame a peer sends is decoded or refused, never panicked on; an
//! oversized length is refused before the body is read or allocated; every
//! request and response survives a round trip; and the daemon's server answers
//! hostile frames and keeps serving.
//!
//! `PROPTEST_CASES` sets the number of cases (default 256); see the comment at
//! the top of `tests/prop_format.rs` for a longer pass.

mod prop_common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{Cursor, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};

use pkfs::daemon::control::{bind, serve};
use pkfs::daemon::protocol::{
    decode_env_values, encode_env_values, read_frame, write_frame, CommandRequest, ProtocolError,
    Request, Response, MAX_FRAME,
};
use prop_common::config;
use proptest::prelude::*;
use proptest::sample::Index;

// ---------------------------------------------------------------------------
// The largest single allocation made by the current thread, so a test can
// check that a refused frame allocated nothing of its declared size.

struct Tracking;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
}

// SAFETY: every call is forwarded unchanged to the system allocator; `note`
// only touches a const-initialised thread-local `Cell`, which never allocates.
unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: the caller's contract is passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Tracking = Tracking;

/// Run `f` and return its result with the largest allocation it made.
fn largest_allocation<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LARGEST.with(|l| l.set(0));
    let out = f();
    (out, LARGEST.with(Cell::get))
}

// ---------------------------------------------------------------------------
// Strategies.

fn blob() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..200)
}

fn command_request() -> impl Strategy<Value = CommandRequest> {
    (
        proptest::collection::vec(any::<String>(), 0..5),
        any::<String>(),
        proptest::option::of(blob()),
        proptest::option::of(blob()),
        proptest::option::of(blob()),
        any::<(bool, bool)>(),
        proptest::collection::vec(any::<(String, String)>(), 0..3),
    )
        .prop_map(
            |(args, cwd, stdin, passphrase, new_passphrase, (tty, env), test_env)| {
                let mut c = CommandRequest::new(args, PathBuf::from(cwd));
                c.stdin = stdin;
                c.passphrase = passphrase;
                c.new_passphrase = new_passphrase;
                c.stdout_tty = tty;
                c.env_values = env;
                c.test_env = test_env;
                c
            },
        )
}

fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        command_request().prop_map(Request::Command),
        Just(Request::Status),
        Just(Request::Unmount),
    ]
}

fn response() -> impl Strategy<Value = Response> {
    prop_oneof![
        (any::<i32>(), blob(), blob()).prop_map(|(code, stdout, stderr)| Response::Command {
            code,
            stdout,
            stderr
        }),
        any::<String>().prop_map(Response::Status),
        blob().prop_map(Response::Output),
        Just(Response::Ok),
        (any::<i32>(), any::<String>())
            .prop_map(|(code, message)| Response::Error { code, message }),
    ]
}

fn frame_of<T: serde::Serialize>(v: &T) -> Vec<u8> {
    let mut buf = Vec::new();
    write_frame(&mut buf, v).unwrap();
    buf
}

/// What `read_frame` must make of `bytes`, judged from the frame layout only.
#[derive(Debug, PartialEq)]
enum Expect {
    Closed,
    /// Fewer bytes than the header or the declared body.
    Eof,
    TooLarge(u64),
    /// A complete frame: the body decodes, or is malformed.
    Body,
}

fn expect(bytes: &[u8]) -> Expect {
    if bytes.is_empty() {
        return Expect::Closed;
    }
    if bytes.len() < 4 {
        return Expect::Eof;
    }
    let len = u32::from_be_bytes(bytes[..4].try_into().unwrap());
    if len > MAX_FRAME {
        Expect::TooLarge(len.into())
    } else if bytes.len() - 4 < len as usize {
        Expect::Eof
    } else {
        Expect::Body
    }
}

/// Read one `T` frame from `bytes` and check the outcome against the layout.
fn check_read<T>(bytes: &[u8]) -> Result<Option<T>, TestCaseError>
where
    T: serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut cur = Cursor::new(bytes);
    let got = read_frame::<_, T>(&mut cur);
    match (expect(bytes), got) {
        (Expect::Closed, Err(ProtocolError::Closed)) => Ok(None),
        (Expect::Eof, Err(ProtocolError::Io(e))) => {
            prop_assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof);
            Ok(None)
        }
        (Expect::TooLarge(n), Err(ProtocolError::TooLarge(m))) => {
            prop_assert_eq!(n, m);
            prop_assert_eq!(cur.position(), 4, "only the header was read");
            Ok(None)
        }
        (Expect::Body, Err(ProtocolError::Malformed(_))) => Ok(None),
        (Expect::Body, Ok(v)) => Ok(Some(v)),
        (want, got) => Err(TestCaseError::fail(format!(
            "expected {want:?}, got {got:?}"
        ))),
    }
}

// ---------------------------------------------------------------------------
// Frames.

proptest! {
    #![proptest_config(config(1))]

    #[test]
    fn requests_round_trip(req in request(), next in request()) {
        let mut buf = frame_of(&req);
        let len = u32::from_be_bytes(buf[..4].try_into().unwrap()) as usize;
        prop_assert_eq!(len, buf.len() - 4);
        buf.extend(frame_of(&next));
        let mut r = &buf[..];
        prop_assert_eq!(read_frame::<_, Request>(&mut r).unwrap(), req);
        prop_assert_eq!(read_frame::<_, Request>(&mut r).unwrap(), next);
        prop_assert!(matches!(read_frame::<_, Request>(&mut r), Err(ProtocolError::Closed)));
    }

    #[test]
    fn responses_round_trip(resp in response()) {
        let buf = frame_of(&resp);
        prop_assert_eq!(read_frame::<_, Response>(&buf[..]).unwrap(), resp);
    }

    #[test]
    fn arbitrary_frames_are_decoded_or_refused(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        check_read::<Request>(&bytes)?;
        check_read::<Response>(&bytes)?;
    }

    #[test]
    fn arbitrary_bodies_with_a_true_length_are_decoded_or_malformed(body in proptest::collection::vec(any::<u8>(), 0..300)) {
        let mut frame = (body.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(&body);
        // A body that decodes re-encodes to a message that decodes the same.
        if let Some(req) = check_read::<Request>(&frame)? {
            prop_assert_eq!(read_frame::<_, Request>(&frame_of(&req)[..]).unwrap(), req);
        }
        if let Some(resp) = check_read::<Response>(&frame)? {
            prop_assert_eq!(read_frame::<_, Response>(&frame_of(&resp)[..]).unwrap(), resp);
        }
    }

    #[test]
    fn mutated_frames_are_decoded_or_refused(
        req in request(),
        at in any::<Index>(),
        mask in 1u8..=255,
        cut in any::<Index>(),
    ) {
        let frame = frame_of(&req);
        let mut flipped = frame.clone();
        let i = at.index(frame.len());
        flipped[i] ^= mask;
        check_read::<Request>(&flipped)?;
        check_read::<Request>(&frame[..cut.index(frame.len())])?;
        // The body alone, its length fixed up: the decoder sees every byte.
        if i >= 4 {
            let body = &flipped[4..];
            let mut fixed = (body.len() as u32).to_be_bytes().to_vec();
            fixed.extend_from_slice(body);
            check_read::<Request>(&fixed)?;
        }
    }

    #[test]
    fn oversize_lengths_are_refused_without_allocating(
        len in MAX_FRAME + 1..=u32::MAX,
        tail in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut bytes = len.to_be_bytes().to_vec();
        bytes.extend_from_slice(&tail);
        let (res, largest) = largest_allocation(|| check_read::<Request>(&bytes));
        res?;
        prop_assert!(largest < 4096, "{} bytes allocated for a refused frame", largest);
    }

    #[test]
    fn env_values_round_trip_and_garbage_is_refused(
        vars in proptest::collection::vec((any::<String>(), blob()), 0..5),
        junk in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let refs: Vec<(String, &[u8])> = vars.iter().map(|(n, v)| (n.clone(), &v[..])).collect();
        let enc = encode_env_values(&refs);
        let dec = decode_env_values(&enc).unwrap();
        prop_assert_eq!(dec.len(), vars.len());
        for ((n, v), (dn, dv)) in vars.iter().zip(&dec) {
            prop_assert_eq!(n, dn);
            prop_assert_eq!(&v[..], &dv[..]);
        }
        match decode_env_values(&junk) {
            Ok(_) | Err(ProtocolError::Malformed(_)) => {}
            Err(e) => prop_assert!(false, "{:?}", e),
        }
    }

    #[test]
    fn a_path_that_is_not_utf8_is_refused_before_sending(
        mut raw in proptest::collection::vec(any::<u8>(), 0..40),
        at in any::<Index>(),
    ) {
        raw.insert(at.index(raw.len() + 1), 0xff);
        let cwd = PathBuf::from(std::ffi::OsStr::from_bytes(&raw));
        let req = Request::Command(CommandRequest::new(vec!["pkfs".into()], cwd));
        let mut sink = Vec::new();
        prop_assert!(write_frame(&mut sink, &req).is_err());
        prop_assert!(sink.is_empty(), "nothing is sent for a refused frame");
    }
}

#[test]
fn a_declared_length_is_bounded_by_max_frame() {
    // Within the limit, the body buffer is allocated up front: the declared
    // length (here the limit itself) bounds what one connection costs.
    let bytes = MAX_FRAME.to_be_bytes();
    let (res, largest) = largest_allocation(|| read_frame::<_, Request>(&bytes[..]));
    assert!(
        matches!(&res, Err(ProtocolError::Io(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof),
        "{res:?}"
    );
    // This is also what shows the tracking allocator sees the body buffer, so
    // the "without allocating" property above is not vacuous.
    assert!(largest >= MAX_FRAME as usize, "{largest}");
    assert!(largest <= MAX_FRAME as usize + 4096, "{largest}");
}

// ---------------------------------------------------------------------------
// The server (`pkfs::daemon::control::serve`, as the daemon runs it) with a
// handler standing in for the daemon's executor.

fn answer(req: Request) -> Response {
    match req {
        Request::Status => Response::Status("status".into()),
        Request::Unmount => Response::Ok,
        Request::Command(c) => Response::Command {
            code: c.args.len() as i32,
            stdout: c.stdin.clone().unwrap_or_default(),
            stderr: Vec::new(),
        },
    }
}

/// The socket of a server started once for this test binary.
fn server() -> &'static PathBuf {
    static SOCK: OnceLock<PathBuf> = OnceLock::new();
    SOCK.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        let sock = dir.join("run").join("pkfs.sock");
        let listener = bind(&sock).unwrap();
        std::thread::spawn(move || {
            serve(listener, Arc::new(answer), Arc::new(AtomicBool::new(false)))
        });
        sock
    })
}

/// Send `bytes`, close our side, and read the one answer (if any).
fn exchange(bytes: &[u8]) -> Result<Response, ProtocolError> {
    let mut s = UnixStream::connect(server())?;
    // The server may answer (and close) before taking every byte.
    let _ = s.write_all(bytes);
    let _ = s.shutdown(std::net::Shutdown::Write);
    read_frame::<_, Response>(&s)
}

fn hostile_frame() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 1..100),
        (request(), any::<Index>(), 1u8..=255).prop_map(|(r, at, mask)| {
            let mut f = frame_of(&r);
            let i = at.index(f.len());
            f[i] ^= mask;
            f
        }),
        (request(), any::<Index>()).prop_map(|(r, cut)| {
            let f = frame_of(&r);
            f[..cut.index(f.len()).max(1)].to_vec()
        }),
        (MAX_FRAME + 1..=u32::MAX).prop_map(|n| n.to_be_bytes().to_vec()),
    ]
}

proptest! {
    #![proptest_config(config(4))]

    #[test]
    fn the_server_answers_hostile_frames_and_keeps_serving(bytes in hostile_frame()) {
        let got = exchange(&bytes);
        let mut local = Cursor::new(&bytes[..]);
        match read_frame::<_, Request>(&mut local) {
            // A command whose input stream should follow, and does not.
            Ok(Request::Command(c)) if c.input_follows => {
                prop_assert!(matches!(got, Ok(Response::Error { code: 1, .. })), "{:?}", got)
            }
            Ok(req) => prop_assert_eq!(got.unwrap(), answer(req)),
            Err(ProtocolError::TooLarge(_) | ProtocolError::Malformed(_)) => {
                prop_assert!(matches!(got, Ok(Response::Error { code: 2, .. })), "{:?}", got)
            }
            Err(ProtocolError::Closed) => prop_assert!(matches!(got, Err(ProtocolError::Closed))),
            Err(_) => prop_assert!(matches!(got, Ok(Response::Error { code: 1, .. })), "{:?}", got),
        }
        prop_assert_eq!(exchange(&frame_of(&Request::Status)).unwrap(), Response::Status("status".into()));
    }
}
