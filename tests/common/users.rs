//! Running a command as another, unprivileged user (uid/gid 65534, `nobody`),
//! for the tests that check what root's capabilities would hide.

use std::os::unix::process::CommandExt;
use std::process::Command;

/// The uid and gid of `nobody`.
pub const NOBODY: u32 = 65534;

/// Make `cmd` run as uid/gid [`NOBODY`] with no supplementary groups.
pub fn as_nobody(cmd: &mut Command) -> &mut Command {
    // SAFETY: setgroups/setgid/setuid are async-signal-safe; nothing else runs
    // in the child before exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setgid(NOBODY) != 0
                || libc::setuid(NOBODY) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}
