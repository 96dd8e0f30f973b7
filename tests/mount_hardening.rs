//! The mount daemon's process hardening: its key pages are locked in memory
//! (`VmLck` > 0, despite the fork that daemonizes it) and it is not dumpable, so
//! other processes of the user (and root without CAP_SYS_PTRACE) cannot read its
//! memory through /proc or ptrace.

mod common;

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use common::mount::Mounted;
use pkfs::crypto::secmem;

/// The daemon's pid, from `pkfs --json status`.
fn daemon_pid(m: &Mounted) -> u32 {
    let s = m.status();
    assert_eq!(s["mounted"], true, "{s}");
    let pid = s["pid"].as_u64().unwrap_or_else(|| panic!("no pid in {s}"));
    assert!(pid > 1, "{s}");
    pid as u32
}

#[test]
fn the_daemon_locks_its_key_pages() {
    let m = Mounted::new();
    std::fs::write(m.path("s"), b"secret").unwrap();
    let pid = daemon_pid(&m);
    let root = unsafe { libc::geteuid() } == 0;
    if secmem::memlock_limit() == Some(0) && !root {
        eprintln!("RLIMIT_MEMLOCK is 0: the daemon cannot lock anything; skipped");
        return;
    }
    let kb = secmem::vm_locked_kb_of(&format!("/proc/{pid}/status"))
        .expect("VmLck in the daemon's status");
    assert!(kb > 0, "the daemon's VmLck is {kb} kB");
    assert!(
        !m.log().contains("cannot lock key memory"),
        "log: {}",
        m.log()
    );
}

/// Can `cat` read `/proc/PID/environ`, run without CAP_SYS_PTRACE (dropped
/// from its bounding set before exec, so root loses it too)? `None` when the
/// capability cannot be dropped here.
fn environ_readable(pid: u32) -> Option<bool> {
    let mut c = Command::new("cat");
    c.arg(format!("/proc/{pid}/environ"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let root = unsafe { libc::geteuid() } == 0;
    if root {
        // SAFETY: prctl is async-signal-safe; nothing else runs in the child.
        unsafe {
            c.pre_exec(|| {
                const CAP_SYS_PTRACE: libc::c_ulong = 19;
                if libc::prctl(libc::PR_CAPBSET_DROP, CAP_SYS_PTRACE, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    match c.status() {
        Ok(s) => Some(s.success()),
        Err(_) => None,
    }
}

/// A child of this test (fork, no exec) that made itself non-dumpable, then
/// waits to be killed: the negative control.
fn non_dumpable_child() -> libc::pid_t {
    // SAFETY: the child only calls async-signal-safe functions (prctl, sleep,
    // _exit) before it ends.
    unsafe {
        let pid = libc::fork();
        if pid == 0 {
            libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
            libc::sleep(30);
            libc::_exit(0);
        }
        assert!(pid > 0, "fork failed");
        pid
    }
}

#[test]
fn the_daemon_is_not_dumpable() {
    let m = Mounted::new();
    let pid = daemon_pid(&m);
    // Controls: a dumpable process of the same user is readable this way, and
    // a non-dumpable one is not (under some sandboxes root reads both; then the
    // check cannot tell and is skipped).
    let mut sleeper = Command::new("sleep").arg("30").spawn().unwrap();
    let positive = environ_readable(sleeper.id());
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    let nd = non_dumpable_child();
    std::thread::sleep(std::time::Duration::from_millis(100));
    let negative = environ_readable(nd as u32);
    // SAFETY: nd is our child; kill and reap it.
    unsafe {
        libc::kill(nd, libc::SIGKILL);
        libc::waitpid(nd, std::ptr::null_mut(), 0);
    }
    if positive != Some(true) || negative != Some(false) {
        eprintln!(
            "cannot tell dumpable processes apart here (dumpable: {positive:?}, \
             non-dumpable: {negative:?}); skipped"
        );
        return;
    }
    assert_eq!(
        environ_readable(pid),
        Some(false),
        "the daemon's /proc/{pid}/environ is readable: it is dumpable"
    );
    // The kernel also hands a non-dumpable process's /proc entries to root.
    use std::os::unix::fs::MetadataExt;
    let owner = std::fs::metadata(format!("/proc/{pid}/environ"))
        .unwrap()
        .uid();
    assert_eq!(owner, 0, "owner of /proc/{pid}/environ");
}
