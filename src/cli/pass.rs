//! Passphrase input: `--passfile`, `PKFS_PASSFILE`, `--extpass`, or the terminal
//! without echo. Never argv. Passphrases live only in zeroizing buffers.
//! Inside the mount daemon there is no such source: a command gets what its
//! client sent (`Provided`), or fails (`Unavailable`); the daemon never prompts.

use std::io::IsTerminal;
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

pub fn from_file(path: &Path) -> Result<Pass, Error> {
    let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| Error::io(path, e))?);
    Ok(first_line(&bytes))
}

fn from_command(cmd: &str) -> Result<Pass, Error> {
    let out = Command::new("/bin/sh")
        .arg("-c")
        .arg(cmd)
        .stdin(Stdio::inherit())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| Error::io("/bin/sh", e))?;
    let stdout = Zeroizing::new(out.stdout);
    if !out.status.success() {
        return Err(Error::Usage(format!(
            "--extpass command failed ({})",
            out.status
        )));
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
