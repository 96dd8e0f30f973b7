//! Passphrase input: `--passfile`, `PKFS_PASSFILE`, `--extpass`, or the terminal
//! without echo. Never argv. Passphrases live only in zeroizing buffers.
//! Inside the mount daemon there is no such source: a command gets what its
//! client sent (`Provided`), or fails (`Unavailable`); the daemon never prompts.

use std::io::{IsTerminal, Read};
use std::path::Path;
use std::process::{Command, Stdio};

use pkfs::Error;
use zeroize::Zeroizing;

use super::config::PassSource;

type Pass = Zeroizing<Vec<u8>>;

/// Read one passphrase. With `confirm` and a terminal, ask twice.
pub fn read(src: &PassSource, prompt: &str, confirm: bool) -> Result<Pass, Error> {
    let pass = match src {
        PassSource::File(p) => from_file(p)?,
        PassSource::Command(c) => from_command(c)?,
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
    Ok(pass)
}

fn first_line(bytes: &[u8]) -> Pass {
    let end = bytes
        .iter()
        .position(|&b| b == b'\n')
        .unwrap_or(bytes.len());
    let mut line = &bytes[..end];
    if line.last() == Some(&b'\r') {
        line = &line[..line.len() - 1];
    }
    Zeroizing::new(line.to_vec())
}

/// Read `r` to the end into a zeroizing buffer. The buffer grows by copying into
/// a bigger zeroizing one (the old one is wiped), never by `realloc`, which
/// would leave a copy of the passphrase in freed memory.
fn read_all(r: &mut impl Read) -> std::io::Result<Pass> {
    let mut buf: Pass = Zeroizing::new(Vec::with_capacity(256));
    let mut chunk = Zeroizing::new([0u8; 1024]);
    loop {
        let n = match r.read(&mut chunk[..]) {
            Ok(0) => return Ok(buf),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.len() + n > buf.capacity() {
            let mut bigger = Zeroizing::new(Vec::with_capacity(2 * (buf.len() + n)));
            bigger.extend_from_slice(&buf);
            buf = bigger;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

pub fn from_file(path: &Path) -> Result<Pass, Error> {
    let bytes = std::fs::File::open(path)
        .and_then(|mut f| read_all(&mut f))
        .map_err(|e| Error::io(path, e))?;
    Ok(first_line(&bytes))
}

fn from_command(cmd: &str) -> Result<Pass, Error> {
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(cmd)
        .stdin(Stdio::inherit())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| Error::io("/bin/sh", e))?;
    let stdout = match child.stdout.take() {
        Some(mut pipe) => read_all(&mut pipe),
        None => Ok(Zeroizing::new(Vec::new())),
    };
    let status = child.wait().map_err(|e| Error::io("/bin/sh", e))?;
    let stdout = stdout.map_err(|e| Error::io("--extpass output", e))?;
    if !status.success() {
        return Err(Error::Usage(format!("--extpass command failed ({status})")));
    }
    Ok(first_line(&stdout))
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

    #[test]
    fn read_all_grows_without_losing_bytes() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        let got = read_all(&mut &data[..]).unwrap();
        assert_eq!(&got[..], &data[..]);
        assert_eq!(&first_line(b"pw\r\nrest")[..], b"pw");
    }
}
