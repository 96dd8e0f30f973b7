//! The control-socket protocol between a `pkfs` command and the mount daemon.
//!
//! One connection carries one exchange: the client sends one [`Request`] frame,
//! the daemon answers with one [`Response`] frame and closes. A command's
//! input and output, which may be larger than a frame, are streamed around
//! that exchange in pieces of at most [`CHUNK`] bytes:
//!
//! ```text
//! client                                  daemon
//! Request::Command (input_follows: true)  ->
//! Input::Data, Input::Data, ...           ->   gathered into `stdin`
//! Input::End                              ->   (at most MAX_INPUT bytes)
//!                                              the command runs
//!                                         <-   Response::Output, ... (stdout)
//!                                         <-   Response::Command (the rest)
//! ```
//!
//! The daemon reads the whole input before it runs the command, so a command
//! never waits on its client while it holds a vault: a client that stops
//! sending, or goes away, ends its request before anything was changed. The
//! client opens and reads what the command names (a file, its standard input)
//! itself; the daemon never opens a path a request names.
//!
//! ```text
//! frame:
//!   0   4  body length N, u32 big-endian, at most MAX_FRAME
//!   4   N  body: the message, postcard-encoded
//! ```
//!
//! A length above [`MAX_FRAME`] is refused before anything is allocated or read
//! ([`ProtocolError::TooLarge`]); the server then answers with an error and
//! closes the connection. A body that does not decode, or that has bytes left
//! over after the message, is [`ProtocolError::Malformed`]. Decoding never
//! panics, whatever the bytes.
//!
//! Secret-bearing buffers (a command's standard input, passphrases, a command's
//! output) are wiped when dropped: [`CommandRequest`] and [`Response`] zeroize
//! them in `Drop`, and the frame buffers are [`Zeroizing`].

use std::fmt;
use std::io::{Read, Write};
use std::path::PathBuf;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

/// The largest frame body either side accepts: 64 MiB. It bounds what one
/// connection can make the daemon allocate, and so also the size of a secret
/// written (`secret write`) or printed (`secret cat`) through the daemon.
pub const MAX_FRAME: u32 = 64 * 1024 * 1024;

/// The largest piece of a command's input or output in one frame: 1 MiB.
pub const CHUNK: usize = 1024 * 1024;

/// The most input one command may stream to the daemon: 1 GiB. The daemon
/// holds the input in memory (never on disk: it may be a secret) until the
/// command has run, so this bounds what one request can make it allocate.
pub const MAX_INPUT: u64 = 1024 * 1024 * 1024;

/// What a client asks of the daemon.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Request {
    /// Run one `pkfs` command (vault, secret, version, key, passwd, gc) inside
    /// the daemon, against its unlocked node.
    Command(CommandRequest),
    /// Describe the mount (answered with [`Response::Status`]).
    Status,
    /// Flush, commit and unmount (answered with [`Response::Ok`]).
    Unmount,
}

/// One command line, run by the daemon as if the client had run it.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandRequest {
    /// The full argv, `"pkfs"` first, without `--passfile` and `--extpass`
    /// (`PKFS_PASSFILE` is never forwarded either).
    pub args: Vec<String>,
    /// The client's working directory: relative local paths (`secret add FILE`,
    /// `secret import DIR`) resolve against it.
    pub cwd: PathBuf,
    /// The command's input, read by the client: its standard input (`secret
    /// write`) or the file it names (`secret add FILE`). With `input_follows`
    /// it is sent as [`Input`] frames after the request, and the daemon fills
    /// this in before the command runs.
    pub stdin: Option<Vec<u8>>,
    /// The input follows this frame as [`Input`] frames (see the module docs).
    pub input_follows: bool,
    /// The current passphrase (`passwd` only: the daemon verifies it against
    /// `root.key` before changing anything).
    pub passphrase: Option<Vec<u8>>,
    /// The new passphrase (`passwd` only), read and confirmed by the client.
    pub new_passphrase: Option<Vec<u8>>,
    /// Whether the client's standard output is a terminal (names are then shown
    /// with control characters escaped).
    pub stdout_tty: bool,
    /// `secret env VAULT... -- CMD`: the daemon answers with the variables as
    /// [`EnvValues`] (postcard) in `stdout`, and the client runs CMD itself. The
    /// daemon never starts a user's command.
    pub env_values: bool,
    /// The client's `PKFS_TEST_ONLY_*` variables (see docs/SECURITY.md).
    pub test_env: Vec<(String, String)>,
}

impl CommandRequest {
    /// A request for `args` run in `cwd`, with every optional part empty.
    pub fn new(args: Vec<String>, cwd: PathBuf) -> Self {
        CommandRequest {
            args,
            cwd,
            stdin: None,
            input_follows: false,
            passphrase: None,
            new_passphrase: None,
            stdout_tty: false,
            env_values: false,
            test_env: Vec::new(),
        }
    }
}

impl Drop for CommandRequest {
    fn drop(&mut self) {
        self.stdin.zeroize();
        self.passphrase.zeroize();
        self.new_passphrase.zeroize();
    }
}

impl fmt::Debug for CommandRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let len = |b: &Option<Vec<u8>>| b.as_ref().map(Vec::len);
        f.debug_struct("CommandRequest")
            .field("args", &self.args)
            .field("cwd", &self.cwd)
            .field("stdin_len", &len(&self.stdin))
            .field("input_follows", &self.input_follows)
            .field(
                "passphrase",
                &self.passphrase.as_ref().map(|_| "<redacted>"),
            )
            .field(
                "new_passphrase",
                &self.new_passphrase.as_ref().map(|_| "<redacted>"),
            )
            .field("stdout_tty", &self.stdout_tty)
            .field("env_values", &self.env_values)
            .field("test_env", &self.test_env)
            .finish()
    }
}

/// The daemon's answer.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub enum Response {
    /// A command ran: its exit code and everything it printed.
    Command {
        code: i32,
        stdout: Vec<u8>,
        stderr: Vec<u8>,
    },
    /// The mount's status, as JSON text chosen by the daemon.
    Status(String),
    /// A piece of a command's standard output, ahead of its
    /// [`Response::Command`] (which carries the rest).
    Output(Vec<u8>),
    Ok,
    /// The request was refused or failed before any command ran. `message` is
    /// one line without the `pkfs: ` prefix; `code` is the exit code to use.
    Error {
        code: i32,
        message: String,
    },
}

impl Drop for Response {
    fn drop(&mut self) {
        match self {
            Response::Command { stdout, stderr, .. } => {
                stdout.zeroize();
                stderr.zeroize();
            }
            Response::Output(bytes) => bytes.zeroize(),
            _ => {}
        }
    }
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Response::Command {
                code,
                stdout,
                stderr,
            } => f
                .debug_struct("Command")
                .field("code", code)
                .field("stdout_len", &stdout.len())
                .field("stderr", &String::from_utf8_lossy(stderr))
                .finish(),
            Response::Status(s) => f.debug_tuple("Status").field(s).finish(),
            Response::Output(b) => write!(f, "Output({} bytes)", b.len()),
            Response::Ok => f.write_str("Ok"),
            Response::Error { code, message } => f
                .debug_struct("Error")
                .field("code", code)
                .field("message", message)
                .finish(),
        }
    }
}

/// A frame of a command's input stream (see the module docs).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub enum Input {
    /// The next at most [`CHUNK`] bytes.
    Data(Vec<u8>),
    /// The input is complete.
    End,
}

impl Drop for Input {
    fn drop(&mut self) {
        if let Input::Data(bytes) = self {
            bytes.zeroize();
        }
    }
}

impl fmt::Debug for Input {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Input::Data(b) => write!(f, "Data({} bytes)", b.len()),
            Input::End => f.write_str("End"),
        }
    }
}

/// The variables of `secret env` in [`CommandRequest::env_values`] mode: (name,
/// value) pairs, in the order they are to be set.
pub type EnvValues = Vec<(String, Vec<u8>)>;

/// [`EnvValues`] once decoded, each value wiped when dropped.
pub type EnvVars = Vec<(String, Zeroizing<Vec<u8>>)>;

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// The frame's length is over [`MAX_FRAME`].
    #[error("a frame of {0} bytes exceeds the limit of {MAX_FRAME} bytes")]
    TooLarge(u64),
    /// The body is not a valid message.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// The peer closed the connection before sending any byte of a frame.
    #[error("the connection was closed before a message was sent")]
    Closed,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// `value` encoded after `room` zero bytes, in one buffer of exactly that size
/// (computed first: no reallocation leaves copies behind).
fn encode<T: Serialize + ?Sized>(
    value: &T,
    room: usize,
    limit: usize,
) -> Result<Zeroizing<Vec<u8>>, ProtocolError> {
    let malformed = |e: postcard::Error| ProtocolError::Malformed(e.to_string());
    let size = postcard::serialize_with_flavor::<T, postcard::ser_flavors::Size, usize>(
        value,
        postcard::ser_flavors::Size::default(),
    )
    .map_err(malformed)?;
    if size > limit {
        return Err(ProtocolError::TooLarge(size as u64));
    }
    let mut buf = Zeroizing::new(vec![0u8; room + size]);
    postcard::to_slice(value, &mut buf[room..]).map_err(malformed)?;
    Ok(buf)
}

/// Encode `value` and write it as one frame. An oversized message is refused
/// before it is encoded.
pub fn write_frame<W: Write, T: Serialize>(mut w: W, value: &T) -> Result<(), ProtocolError> {
    let mut frame = encode(value, 4, MAX_FRAME as usize)?;
    let len = (frame.len() - 4) as u32;
    frame[..4].copy_from_slice(&len.to_be_bytes());
    w.write_all(&frame)?;
    w.flush()?;
    Ok(())
}

/// Read one frame and decode it. The length is checked before the body is
/// allocated or read.
pub fn read_frame<R: Read, T: DeserializeOwned>(mut r: R) -> Result<T, ProtocolError> {
    let mut header = [0u8; 4];
    let mut got = 0;
    while got < header.len() {
        match r.read(&mut header[got..]) {
            Ok(0) if got == 0 => return Err(ProtocolError::Closed),
            Ok(0) => return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    let len = u32::from_be_bytes(header);
    if len > MAX_FRAME {
        return Err(ProtocolError::TooLarge(len.into()));
    }
    let mut body = Zeroizing::new(vec![0u8; len as usize]);
    r.read_exact(&mut body)?;
    let (value, rest) = postcard::take_from_bytes::<T>(&body)
        .map_err(|e| ProtocolError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(ProtocolError::Malformed(format!(
            "{} unexpected byte(s) after the message",
            rest.len()
        )));
    }
    Ok(value)
}

/// Encode the variables of `secret env` for [`CommandRequest::env_values`].
pub fn encode_env_values(vars: &[(String, &[u8])]) -> Zeroizing<Vec<u8>> {
    // Encoding strings and byte strings into memory cannot fail.
    encode(vars, 0, usize::MAX).unwrap_or_default()
}

/// Decode what [`encode_env_values`] produced.
pub fn decode_env_values(bytes: &[u8]) -> Result<EnvVars, ProtocolError> {
    let (vars, rest) = postcard::take_from_bytes::<EnvValues>(bytes)
        .map_err(|e| ProtocolError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(ProtocolError::Malformed("trailing bytes".into()));
    }
    Ok(vars
        .into_iter()
        .map(|(n, v)| (n, Zeroizing::new(v)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Request {
        let mut c = CommandRequest::new(
            vec!["pkfs".into(), "secret".into(), "write".into(), "v:x".into()],
            "/tmp/somewhere".into(),
        );
        c.stdin = Some(b"secret\0bytes\xff".to_vec());
        c.new_passphrase = Some(b"new".to_vec());
        c.stdout_tty = true;
        c.test_env = vec![("PKFS_TEST_ONLY_FAST_KDF".into(), "1".into())];
        Request::Command(c)
    }

    fn frame_of<T: Serialize>(v: &T) -> Vec<u8> {
        let mut buf = Vec::new();
        write_frame(&mut buf, v).unwrap();
        buf
    }

    #[test]
    fn round_trip() {
        for req in [sample(), Request::Status, Request::Unmount] {
            let buf = frame_of(&req);
            assert_eq!(
                u32::from_be_bytes(buf[..4].try_into().unwrap()) as usize,
                buf.len() - 4
            );
            assert_eq!(read_frame::<_, Request>(&buf[..]).unwrap(), req);
        }
        for resp in [
            Response::Command {
                code: 7,
                stdout: vec![0, 1, 2, 255],
                stderr: b"pkfs: oops\n".to_vec(),
            },
            Response::Status("{\"mounted\":true}".into()),
            Response::Ok,
            Response::Output(vec![9; 100]),
            Response::Error {
                code: 2,
                message: "no".into(),
            },
        ] {
            let buf = frame_of(&resp);
            assert_eq!(read_frame::<_, Response>(&buf[..]).unwrap(), resp);
        }
        for input in [
            Input::Data(vec![1, 2, 255]),
            Input::Data(vec![]),
            Input::End,
        ] {
            let buf = frame_of(&input);
            assert_eq!(read_frame::<_, Input>(&buf[..]).unwrap(), input);
        }
    }

    #[test]
    fn two_frames_in_a_row_are_read_one_at_a_time() {
        let mut buf = frame_of(&Request::Status);
        buf.extend(frame_of(&Request::Unmount));
        let mut r = &buf[..];
        assert_eq!(read_frame::<_, Request>(&mut r).unwrap(), Request::Status);
        assert_eq!(read_frame::<_, Request>(&mut r).unwrap(), Request::Unmount);
        assert!(matches!(
            read_frame::<_, Request>(&mut r),
            Err(ProtocolError::Closed)
        ));
    }

    #[test]
    fn oversize_is_refused_before_reading_the_body() {
        // Only the header exists: reading (or allocating) the body first would
        // end in an I/O error, not TooLarge.
        for len in [MAX_FRAME + 1, u32::MAX] {
            let header = len.to_be_bytes();
            match read_frame::<_, Request>(&header[..]) {
                Err(ProtocolError::TooLarge(n)) => assert_eq!(n, u64::from(len)),
                other => panic!("{len}: {other:?}"),
            }
        }
        // Writing refuses too.
        let big = Response::Command {
            code: 0,
            stdout: vec![0; MAX_FRAME as usize + 1],
            stderr: vec![],
        };
        let mut sink = Vec::new();
        assert!(matches!(
            write_frame(&mut sink, &big),
            Err(ProtocolError::TooLarge(_))
        ));
        assert!(sink.is_empty(), "nothing is sent for a refused frame");
    }

    #[test]
    fn garbage_is_malformed_never_a_panic() {
        let mut cases: Vec<Vec<u8>> = vec![
            vec![],
            vec![0xff; 16],
            vec![9],                         // no such Request variant
            vec![0, 0xff, 0xff, 0xff, 0x7f], // a huge vector length, no data
        ];
        // Every truncation of a valid message, and a trailing extra byte.
        let valid = postcard::to_allocvec(&sample()).unwrap();
        for n in 0..valid.len() {
            cases.push(valid[..n].to_vec());
        }
        let mut extra = valid.clone();
        extra.push(0);
        cases.push(extra);
        for body in cases {
            assert!(
                matches!(read_body(&body), Err(ProtocolError::Malformed(_))),
                "{body:?}"
            );
        }
        // Pseudo-random bodies: an error or (rarely) a valid message, never a panic.
        let mut x = 0x1234_5678_9abc_def0u64;
        for len in 1..300 {
            let body: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            match read_body(&body) {
                Ok(_) | Err(ProtocolError::Malformed(_)) => {}
                Err(e) => panic!("{body:?}: {e:?}"),
            }
        }
    }

    fn read_body(body: &[u8]) -> Result<Request, ProtocolError> {
        let mut frame = (body.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(body);
        read_frame::<_, Request>(&frame[..])
    }

    #[test]
    fn truncated_frames_are_io_errors() {
        let buf = frame_of(&sample());
        assert!(matches!(
            read_frame::<_, Request>(&buf[..2]),
            Err(ProtocolError::Io(_))
        ));
        assert!(matches!(
            read_frame::<_, Request>(&buf[..buf.len() - 1]),
            Err(ProtocolError::Io(_))
        ));
    }

    #[test]
    fn env_values_round_trip() {
        let a = b"va'lue\n".to_vec();
        let enc = encode_env_values(&[("A".into(), &a[..]), ("B".into(), b"")]);
        let dec = decode_env_values(&enc).unwrap();
        assert_eq!(dec.len(), 2);
        assert_eq!((dec[0].0.as_str(), &dec[0].1[..]), ("A", &a[..]));
        assert_eq!((dec[1].0.as_str(), &dec[1].1[..]), ("B", &b""[..]));
        assert!(decode_env_values(&[0xff, 0xff]).is_err());
    }

    #[test]
    fn debug_output_hides_secrets() {
        let text = format!("{:?}", sample());
        assert!(!text.contains("secret\\0bytes") && !text.contains("\"new\""));
        assert!(text.contains("<redacted>"));
    }
}
