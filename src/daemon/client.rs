//! The client's side of the control socket: find a running daemon for a home,
//! and make one request of it.

use std::io;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use super::control::{euid, peer_uid};
use super::protocol::{
    read_frame, write_frame, Input, ProtocolError, Request, Response, CHUNK, MAX_FRAME,
};
use crate::error::Error;

/// `HOME/run/pkfs.sock`.
pub fn socket_path(home: &Path) -> PathBuf {
    home.join("run").join("pkfs.sock")
}

/// A connection to the daemon of `home`, if one answers there. A missing socket
/// file, a stale one (`ECONNREFUSED`), or any other failure to connect means no
/// daemon runs: `None`. So is a peer that is not our own user (which only a
/// misconfigured home could allow): nothing is sent to it.
pub fn connect(home: &Path) -> Option<UnixStream> {
    probe(home).unwrap_or_else(|e| {
        tracing::debug!("no daemon reached at {}: {e}", home.display());
        None
    })
}

/// [`connect`], telling "no daemon runs" (`Ok(None)`: no socket file, or a
/// stale one) apart from "cannot tell" (`Err`: the home or its socket cannot
/// be reached by this user, say permission denied).
pub fn probe(home: &Path) -> io::Result<Option<UnixStream>> {
    let path = socket_path(home);
    let stream = match super::control::via_short_path(&path, |p| UnixStream::connect(p)) {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
            ) =>
        {
            tracing::debug!("no daemon at {}: {e}", path.display());
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    match peer_uid(&stream) {
        Ok(uid) if uid == euid() => Ok(Some(stream)),
        Ok(uid) => {
            tracing::warn!(
                "{} is served by uid {uid}, not by this user; ignoring it",
                path.display()
            );
            Ok(None)
        }
        Err(e) => {
            tracing::warn!("{}: cannot identify the daemon: {e}", path.display());
            Ok(None)
        }
    }
}

/// Did a call fail because the daemon went away (killed or crashed while the
/// client connected) rather than because of what it answered? A connection
/// the daemon never accepted, or never read from, is reset when it dies: then
/// it did not see the request at all.
pub fn daemon_gone(e: &Error) -> bool {
    matches!(e, Error::Io { source, .. } if matches!(
        source.kind(),
        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
    ))
}

/// Send `req` and wait for the answer.
pub fn call(stream: &UnixStream, req: &Request) -> Result<Response, Error> {
    call_streaming(stream, req, None, &mut |_| Ok(()))
}

/// Send `req`, then `input` as a stream (the request must say
/// `input_follows`), and wait for the answer; pieces of output that come
/// ahead of it go to `out` as they arrive (see `protocol`).
pub fn call_streaming(
    stream: &UnixStream,
    req: &Request,
    input: Option<&[u8]>,
    out: &mut dyn FnMut(&[u8]) -> io::Result<()>,
) -> Result<Response, Error> {
    let path = stream
        .peer_addr()
        .ok()
        .and_then(|a| a.as_pathname().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("control socket"));
    let fail = |kind: io::ErrorKind, msg: String| Error::io(&path, io::Error::new(kind, msg));
    match write_frame(stream, req) {
        Ok(()) => {}
        Err(ProtocolError::TooLarge(n)) => {
            return Err(Error::Usage(format!(
                "the request ({n} bytes) exceeds the daemon's limit of {} MiB",
                MAX_FRAME >> 20
            )))
        }
        // The daemon may refuse a request before reading it (a caller of
        // another uid) and close: its answer is still there to read.
        Err(ProtocolError::Io(e)) if e.kind() == io::ErrorKind::BrokenPipe => {
            return read_answer(stream, &path, out)
        }
        Err(ProtocolError::Io(e)) => return Err(Error::io(&path, e)),
        Err(e) => return Err(fail(io::ErrorKind::InvalidData, e.to_string())),
    }
    if let Some(input) = input {
        let pieces = input.chunks(CHUNK).map(|c| Input::Data(c.to_vec()));
        for frame in pieces.chain(std::iter::once(Input::End)) {
            match write_frame(stream, &frame) {
                Ok(()) => {}
                Err(ProtocolError::Io(e)) if e.kind() == io::ErrorKind::BrokenPipe => break,
                Err(ProtocolError::Io(e)) => return Err(Error::io(&path, e)),
                Err(e) => return Err(fail(io::ErrorKind::InvalidData, e.to_string())),
            }
        }
    }
    read_answer(stream, &path, out)
}

/// Read the daemon's answer, passing pieces of output that come ahead of it
/// to `out`.
fn read_answer(
    stream: &UnixStream,
    path: &Path,
    out: &mut dyn FnMut(&[u8]) -> io::Result<()>,
) -> Result<Response, Error> {
    let fail = |kind: io::ErrorKind, msg: String| Error::io(path, io::Error::new(kind, msg));
    loop {
        match read_frame::<_, Response>(stream) {
            Ok(Response::Output(ref bytes)) => {
                out(bytes).map_err(|e| Error::io("stdout", e))?;
            }
            Ok(r) => return Ok(r),
            Err(ProtocolError::Closed) => {
                return Err(fail(
                    io::ErrorKind::UnexpectedEof,
                    "the daemon closed the connection without answering".into(),
                ))
            }
            Err(ProtocolError::Io(e)) => return Err(Error::io(path, e)),
            Err(e) => {
                return Err(fail(
                    io::ErrorKind::InvalidData,
                    format!("bad answer from the daemon: {e}"),
                ))
            }
        }
    }
}
