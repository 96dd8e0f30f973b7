//! Passphrase input: `--passfile`, `PKFS_PASSFILE`, `--extpass`, or the terminal
//! without echo. Never argv. Passphrases live only in zeroizing buffers.
//! Inside the mount daemon there is no such source: a command gets what its
//! client sent (`Provided`), or fails (`Unavailable`); the daemon never prompts.
//!
//! Every source is read once and bounded: the passphrase is the first line,
//! at most [`MAX_PASSPHRASE`] bytes (a longer line, or no line end within the
//! limit, is refused without reading further, so `/dev/zero` fails at once).
//! An `--extpass` helper gets [`EXTPASS_TIMEOUT`] to print its line and exit;
//! only its first line is read (a child it leaves behind holding the pipe does
//! not hold pkfs), and on a timeout its process group is killed. A passphrase
//! file that is the same stream as the command's data input is refused
//! ([`check_not_input`]), so a passphrase never ends up in a secret.

use std::io::{IsTerminal, Read};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pkfs::Error;
use zeroize::Zeroizing;

use super::config::PassSource;

type Pass = Zeroizing<Vec<u8>>;

/// The longest passphrase accepted, in bytes (without the line end).
pub const MAX_PASSPHRASE: usize = 2048;

/// How long an `--extpass` helper may take to print its line and exit (it may
/// be asking someone, as `systemd-ask-password` does).
pub const EXTPASS_TIMEOUT: Duration = Duration::from_secs(120);

/// Read one passphrase. With `confirm` and a terminal, ask twice.
pub fn read(src: &PassSource, prompt: &str, confirm: bool) -> Result<Pass, Error> {
    let pass = match src {
        PassSource::File(p) => from_file(p)?,
        PassSource::Command(c) => from_command(c, EXTPASS_TIMEOUT)?,
        PassSource::Provided(p) => p.clone(),
        PassSource::Unavailable => {
            return Err(Error::Usage(
                "the pkfs daemon cannot ask for a passphrase; the command must send it".into(),
            ))
        }
        PassSource::Terminal => {
            let first = from_terminal(prompt)?;
            if confirm {
                let again = from_terminal("Repeat passphrase: ")?;
                if again != first {
                    return Err(Error::Usage("the passphrases do not match".into()));
                }
            }
            first
        }
    };
    if pass.is_empty() {
        return Err(Error::Usage("an empty passphrase is not allowed".into()));
    }
    if pass.len() > MAX_PASSPHRASE {
        return Err(too_long());
    }
    Ok(pass)
}

fn too_long() -> Error {
    Error::Usage(format!(
        "the passphrase is longer than {MAX_PASSPHRASE} bytes (only its first line is used)"
    ))
}

/// The identity of an open stream: (device, inode).
fn identity(meta: &std::fs::Metadata) -> (u64, u64) {
    (meta.dev(), meta.ino())
}

/// The identity of this process's standard input, if it is open.
fn stdin_identity() -> Option<(u64, u64)> {
    use std::os::fd::AsFd;
    let fd = std::io::stdin().as_fd().try_clone_to_owned().ok()?;
    std::fs::File::from(fd)
        .metadata()
        .ok()
        .map(|m| identity(&m))
}

/// Refuse a passphrase file that is the same stream as the command's data
/// input: standard input (`input == None`) or the file `input`. Reading both
/// would hand part of the data to the passphrase, or the passphrase to a secret.
pub fn check_not_input(src: &PassSource, input: Option<&Path>) -> Result<(), Error> {
    let PassSource::File(pass) = src else {
        return Ok(());
    };
    // A passphrase file that cannot be examined fails later, when it is read.
    let Ok(pass_id) = std::fs::metadata(pass).map(|m| identity(&m)) else {
        return Ok(());
    };
    let (input_id, what) = match input {
        None => (stdin_identity(), "standard input".to_string()),
        Some(p) => (
            std::fs::metadata(p).ok().map(|m| identity(&m)),
            format!("{}", p.display()),
        ),
    };
    if input_id == Some(pass_id) {
        return Err(Error::Usage(format!(
            "the passphrase file {} is the same stream as the command's input ({what}); \
             give the passphrase another way",
            pass.display()
        )));
    }
    Ok(())
}

/// The first line of `bytes` (a trailing `\r` dropped), or `None` when
/// `bytes` holds no line end and more than a passphrase could be.
fn first_line(bytes: &[u8], ended: bool) -> Option<Pass> {
    let end = match bytes.iter().position(|&b| b == b'\n') {
        Some(i) => i,
        None if ended => bytes.len(),
        None => return None,
    };
    let mut line = &bytes[..end];
    if line.last() == Some(&b'\r') {
        line = &line[..line.len() - 1];
    }
    (line.len() <= MAX_PASSPHRASE).then(|| Zeroizing::new(line.to_vec()))
}

/// Read `r` up to its first line end or end of file, and at most
/// `MAX_PASSPHRASE + 2` bytes (room for "\r\n"), into a buffer allocated once
/// (never grown, so no copy of the passphrase is left in freed memory).
/// `wait` is called before each read (a deadline for pipes).
fn read_line(
    r: &mut impl Read,
    mut wait: impl FnMut() -> std::io::Result<()>,
) -> std::io::Result<Option<Pass>> {
    let cap = MAX_PASSPHRASE + 2;
    let mut buf: Pass = Zeroizing::new(vec![0u8; cap]);
    let mut len = 0;
    let mut ended = false;
    while len < cap && !buf[..len].contains(&b'\n') {
        wait()?;
        match r.read(&mut buf[len..]) {
            Ok(0) => {
                ended = true;
                break;
            }
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(first_line(&buf[..len], ended))
}

/// The first line of standard input (a share, say), bounded as a passphrase is.
pub fn first_line_of_stdin() -> Result<Pass, Error> {
    read_line(&mut std::io::stdin().lock(), || Ok(()))
        .map_err(|e| Error::io("stdin", e))?
        .ok_or_else(too_long)
}

pub fn from_file(path: &Path) -> Result<Pass, Error> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    read_line(&mut f, || Ok(()))
        .map_err(|e| Error::io(path, e))?
        .ok_or_else(too_long)
}

/// Run `cmd` by `/bin/sh -c` and take the first line of its output. Its
/// standard input is the terminal when pkfs has one (a helper may ask there),
/// else `/dev/null`: never the command's data. Without a controlling terminal
/// the helper gets its own process group, so that a timeout can kill
/// everything it started (with one, it must stay in the foreground group to
/// be allowed to read the terminal).
fn from_command(cmd: &str, timeout: Duration) -> Result<Pass, Error> {
    let deadline = Instant::now() + timeout;
    let stdin = if std::io::stdin().is_terminal() {
        Stdio::inherit()
    } else {
        Stdio::null()
    };
    let own_group = std::fs::File::open("/dev/tty").is_err();
    let mut command = Command::new("/bin/sh");
    command
        .arg("-c")
        .arg(cmd)
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if own_group {
        command.process_group(0);
    }
    let mut child = command.spawn().map_err(|e| Error::io("/bin/sh", e))?;
    let Some(mut pipe) = child.stdout.take() else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(Error::Usage("--extpass: no output pipe".into()));
    };
    let fd = pipe.as_raw_fd();
    let line = read_line(&mut pipe, || wait_readable(fd, deadline));
    // Too long, or failed: the helper's output is of no further use.
    let status = match &line {
        Ok(Some(_)) => reap(&mut child, &mut pipe, deadline, own_group),
        Ok(None) => {
            kill(&mut child, own_group);
            return Err(too_long());
        }
        Err(_) => kill(&mut child, own_group),
    };
    drop(pipe);
    let line = match line {
        Ok(l) => l,
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
            return Err(Error::Usage(format!(
                "--extpass command printed no passphrase within {} s",
                timeout.as_secs()
            )))
        }
        Err(e) => return Err(Error::io("--extpass output", e)),
    };
    match status {
        Some(s) if s.success() => {}
        Some(s) => return Err(Error::Usage(format!("--extpass command failed ({s})"))),
        None => {
            return Err(Error::Usage(format!(
                "--extpass command did not exit within {} s",
                timeout.as_secs()
            )))
        }
    }
    line.ok_or_else(too_long)
}

/// Wait until `fd` can be read (or is closed), or fail with `TimedOut` at
/// `deadline`.
fn wait_readable(fd: i32, deadline: Instant) -> std::io::Result<()> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        if poll_in(fd, left)? {
            return Ok(());
        }
    }
}

/// poll(2) `fd` for input for up to `wait`: is there input (or end of file)?
fn poll_in(fd: i32, wait: Duration) -> std::io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = wait.as_millis().clamp(1, i32::MAX as u128) as libc::c_int;
    // SAFETY: one valid pollfd, owned by this frame, for the call.
    let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
    if rc < 0 {
        let e = std::io::Error::last_os_error();
        return if e.kind() == std::io::ErrorKind::Interrupted {
            Ok(false)
        } else {
            Err(e)
        };
    }
    Ok(rc > 0)
}

/// Wait for the helper to exit until `deadline`, discarding whatever else it
/// prints (so it never blocks on a full pipe). A child it left behind that
/// holds the pipe does not matter: only the helper is waited for. Past the
/// deadline it is killed: `None`.
fn reap(
    child: &mut std::process::Child,
    pipe: &mut std::process::ChildStdout,
    deadline: Instant,
    own_group: bool,
) -> Option<std::process::ExitStatus> {
    let mut scratch = Zeroizing::new([0u8; 4096]);
    let mut open = true;
    loop {
        match child.try_wait() {
            Ok(Some(s)) => return Some(s),
            Ok(None) if Instant::now() < deadline => {}
            _ => return kill(child, own_group),
        }
        let step = Duration::from_millis(10);
        if open && poll_in(pipe.as_raw_fd(), step).unwrap_or(false) {
            open = !matches!(pipe.read(&mut scratch[..]), Ok(0) | Err(_));
        } else {
            std::thread::sleep(step);
        }
    }
}

/// Kill the helper (and its process group, when it has its own) and reap it.
fn kill(child: &mut std::process::Child, own_group: bool) -> Option<std::process::ExitStatus> {
    if own_group {
        if let Ok(pid) = i32::try_from(child.id()) {
            // SAFETY: kill has no memory preconditions; the group is the
            // helper's own (process_group(0)), and the helper is not reaped
            // yet, so its id cannot have been reused.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

fn from_terminal(prompt: &str) -> Result<Pass, Error> {
    if !std::io::stdin().is_terminal() && std::fs::File::open("/dev/tty").is_err() {
        return Err(Error::Usage(
            "no passphrase source: use --passfile, PKFS_PASSFILE or --extpass, or run on a terminal"
                .into(),
        ));
    }
    let s = rpassword::prompt_password(prompt).map_err(|_| {
        Error::Usage(
            "cannot read a passphrase from the terminal; use --passfile or --extpass".into(),
        )
    })?;
    let s = Zeroizing::new(s);
    Ok(Zeroizing::new(s.as_bytes().to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(bytes: &[u8]) -> Option<Vec<u8>> {
        read_line(&mut &bytes[..], || Ok(()))
            .unwrap()
            .map(|p| p.to_vec())
    }

    #[test]
    fn the_first_line_within_the_limit() {
        assert_eq!(line(b"pw\r\nrest").as_deref(), Some(&b"pw"[..]));
        assert_eq!(line(b"pw").as_deref(), Some(&b"pw"[..]));
        assert_eq!(line(b"").as_deref(), Some(&b""[..]));
        let max = vec![b'a'; MAX_PASSPHRASE];
        let mut with_end = max.clone();
        with_end.extend_from_slice(b"\r\nmore");
        assert_eq!(line(&with_end), Some(max.clone()));
        assert_eq!(line(&max), Some(max.clone()));
        let over = vec![b'a'; MAX_PASSPHRASE + 1];
        assert_eq!(line(&over), None);
        assert_eq!(line(&[0u8; 100_000]), None);
    }

    #[test]
    fn dev_zero_is_refused_at_once() {
        let t = Instant::now();
        let err = from_file(Path::new("/dev/zero")).unwrap_err();
        assert!(err.to_string().contains("longer than 2048"), "{err}");
        assert!(t.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn extpass_takes_one_line_and_does_not_wait_for_lingering_children() {
        let t = Instant::now();
        let pass = from_command("echo pw; (sleep 30 &)", Duration::from_secs(20)).unwrap();
        assert_eq!(&pass[..], b"pw");
        // What follows the first line is read and dropped.
        let pass = from_command(
            "echo first; head -c 100000 /dev/zero",
            Duration::from_secs(20),
        );
        assert_eq!(&pass.unwrap()[..], b"first");
        assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
        assert!(from_command("head -c 5000 /dev/zero", Duration::from_secs(20)).is_err());
        assert!(from_command("echo pw; exit 3", Duration::from_secs(20)).is_err());
    }

    #[test]
    fn a_silent_extpass_helper_times_out_and_is_killed() {
        let tmp = tempfile::tempdir().unwrap();
        let marker = tmp.path().join("late");
        let cmd = format!("sleep 3; touch '{}'", marker.display());
        let t = Instant::now();
        let err = from_command(&cmd, Duration::from_millis(500)).unwrap_err();
        assert!(err.to_string().contains("within"), "{err}");
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        std::thread::sleep(Duration::from_secs(4));
        assert!(!marker.exists(), "the helper's group was killed");
    }
}
