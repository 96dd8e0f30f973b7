//! `--clip`: the secret goes to the clipboard tool's standard input (never
//! its argv), and a detached `pkfs clip-clear` clears the clipboard after 45
//! seconds unless it holds something else by then. The clearing process knows
//! only the SHA-256 of what was copied, read from its standard input.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command as Proc, Stdio};
use std::time::Duration;

use pkfs::args::{Command, SecretCmd};
use pkfs::Error;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::cli::write_err;

/// How long the secret stays on the clipboard.
pub const CLEAR_AFTER_SECS: u64 = 45;
/// Test-only: a shorter wait, in seconds.
const ENV_TEST_SECONDS: &str = "PKFS_TEST_ONLY_CLIP_SECONDS";

/// A clipboard tool found on `PATH` for the session's display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    /// `wl-copy` / `wl-paste` (`WAYLAND_DISPLAY` is set).
    Wayland,
    /// `xclip` (`DISPLAY` is set).
    X11,
}

/// Does `cmd` ask for the clipboard?
pub fn requested(cmd: &Command) -> bool {
    matches!(
        cmd,
        Command::Secret(SecretCmd::Cat { clip: true, .. })
            | Command::Secret(SecretCmd::Generate { clip: true, .. })
    )
}

fn set(var: &str) -> bool {
    std::env::var_os(var).is_some_and(|v| !v.is_empty())
}

/// Is `name` an executable file in a directory of `PATH`?
fn on_path(name: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let Some(path) = std::env::var_os("PATH") else {
        return false;
    };
    std::env::split_paths(&path).any(|d| {
        std::fs::metadata(d.join(name))
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

/// The clipboard tool to use, checked before the command runs (a generated
/// password is never stored only to find no clipboard).
pub fn detect() -> Result<Tool, Error> {
    if set("WAYLAND_DISPLAY") && on_path("wl-copy") && on_path("wl-paste") {
        return Ok(Tool::Wayland);
    }
    if set("DISPLAY") && on_path("xclip") {
        return Ok(Tool::X11);
    }
    Err(Error::Usage(
        "--clip needs wl-copy and wl-paste (with WAYLAND_DISPLAY set) or xclip (with DISPLAY \
         set); none was found"
            .into(),
    ))
}

impl Tool {
    fn copy_cmd(self) -> Proc {
        match self {
            Tool::Wayland => Proc::new("wl-copy"),
            Tool::X11 => {
                let mut c = Proc::new("xclip");
                c.args(["-selection", "clipboard", "-in"]);
                c
            }
        }
    }

    /// Put `bytes` on the clipboard, through the tool's standard input.
    fn copy(self, bytes: &[u8]) -> Result<(), Error> {
        let mut cmd = self.copy_cmd();
        // The tool stays behind to serve the selection: it must not hold our
        // output pipes open.
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let name = self.name();
        let mut child = cmd.spawn().map_err(|e| Error::io(name, e))?;
        let written = match child.stdin.take() {
            Some(mut stdin) => stdin.write_all(bytes),
            None => Ok(()),
        };
        let status = child.wait().map_err(|e| Error::io(name, e))?;
        written.map_err(|e| Error::io(name, e))?;
        if !status.success() {
            return Err(Error::Usage(format!(
                "{name} failed ({status}); nothing was copied"
            )));
        }
        Ok(())
    }

    /// What the clipboard holds now (`None` when it cannot be read).
    fn paste(self) -> Option<Zeroizing<Vec<u8>>> {
        let mut cmd = match self {
            Tool::Wayland => {
                let mut c = Proc::new("wl-paste");
                c.arg("--no-newline");
                c
            }
            Tool::X11 => {
                let mut c = Proc::new("xclip");
                c.args(["-selection", "clipboard", "-out"]);
                c
            }
        };
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let mut out = Zeroizing::new(Vec::new());
        let read = child.stdout.take()?.read_to_end(&mut out);
        let ok = child.wait().ok()?.success();
        (read.is_ok() && ok).then_some(out)
    }

    fn clear(self) {
        let _ = match self {
            Tool::Wayland => Proc::new("wl-copy")
                .arg("--clear")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map(|_| ()),
            Tool::X11 => self.copy(b"").map_err(|_| std::io::Error::other("xclip")),
        };
    }

    fn name(self) -> &'static str {
        match self {
            Tool::Wayland => "wl-copy",
            Tool::X11 => "xclip",
        }
    }
}

fn clear_after() -> u64 {
    std::env::var(ENV_TEST_SECONDS)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(CLEAR_AFTER_SECS)
}

/// Copy what a command printed (one trailing newline left out) and start the
/// process that clears it later.
pub fn copy_output(tool: Tool, output: &[u8], quiet: bool) -> Result<(), Error> {
    let secret = output.strip_suffix(b"\n").unwrap_or(output);
    tool.copy(secret)?;
    let digest = Sha256::digest(secret);
    let exe = std::env::current_exe().map_err(|e| Error::io("/proc/self/exe", e))?;
    let spawned = Proc::new(&exe)
        .arg("clip-clear")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Out of the terminal's process group: ^C on the shell does not stop it.
        .process_group(0)
        .spawn();
    let scheduled = spawned.and_then(|mut child| match child.stdin.take() {
        Some(mut stdin) => stdin.write_all(digest.as_slice()),
        None => Err(std::io::Error::other("no pipe")),
    });
    if let Err(e) = scheduled {
        tool.clear();
        return Err(Error::io(exe, e));
    }
    if !quiet {
        write_err(
            format!(
                "Copied to the clipboard; it is cleared in {} seconds.\n",
                clear_after()
            )
            .as_bytes(),
        );
    }
    Ok(())
}

/// `pkfs clip-clear`: read the SHA-256 of what was copied, wait, and clear the
/// clipboard if it still holds that.
pub fn clear_later() -> anyhow::Result<()> {
    // SAFETY: setting a signal's disposition to SIG_IGN touches no memory.
    unsafe { libc::signal(libc::SIGHUP, libc::SIG_IGN) };
    let mut digest = [0u8; 32];
    std::io::stdin()
        .read_exact(&mut digest)
        .map_err(|e| Error::io("stdin", e))?;
    let tool = detect()?;
    std::thread::sleep(Duration::from_secs(clear_after()));
    if let Some(now) = tool.paste() {
        if Sha256::digest(&now[..]).as_slice() == digest {
            tool.clear();
        }
    }
    Ok(())
}
