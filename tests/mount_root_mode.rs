//! The mount root's mode is the owner's: `chmod` works on it, is kept for the
//! next mounts, and starts as the home's mode (0700), so an `--allow-other`
//! mount does not list the vault names to other users unless the owner opens
//! the root.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::mount::Mounted;
use common::*;

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().mode() & 0o7777
}

fn chmod(p: &Path, m: u32) -> std::io::Result<()> {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(m))
}

/// Run `cmd` as uid/gid 65534 with no supplementary groups.
fn as_nobody(cmd: &mut Command) -> Output {
    // SAFETY: setgroups/setgid/setuid are async-signal-safe; nothing else runs
    // in the child before exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setgid(65534) != 0
                || libc::setuid(65534) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.stdin(Stdio::null()).output().expect("run as nobody")
}

#[test]
fn chmod_of_the_mount_root_works_and_is_kept() {
    let mut m = Mounted::new();
    assert_eq!(mode(&m.mnt), 0o700, "the home's mode by default");
    chmod(&m.mnt, 0o711).expect("chmod of the mount root");
    assert_eq!(mode(&m.mnt), 0o711);
    assert!(m.mnt.join("v").is_dir());
    // Owner, size and times stay the daemon's.
    let err = std::os::unix::fs::chown(&m.mnt, Some(65534), None).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EPERM));
    m.umount();
    m.mount(&[]);
    assert_eq!(mode(&m.mnt), 0o711, "kept across mounts");
    chmod(&m.mnt, 0o755).unwrap();
    m.umount();
    // Kept in the vault table: a rotation of the root key keeps it too.
    m.node
        .cmd()
        .env("PKFS_TEST_ONLY_ROOT_KEY", root_key(1))
        .args(["key", "rotate-root"])
        .run()
        .success();
    m.mount(&[]);
    assert_eq!(mode(&m.mnt), 0o755);
    assert_eq!(std::fs::read_dir(&m.mnt).unwrap().count(), 1);
}

#[test]
fn allow_other_does_not_publish_vault_names_until_the_owner_opens_the_root() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("needs root (for --allow-other and to become nobody); skipped");
        return;
    }
    let node = Node::with_vault();
    node.write("v:s", "x");
    // Other users may reach the mountpoint, not the home.
    chmod(node.scratch(), 0o755).unwrap();
    let mut m = Mounted::unmounted(node);
    m.mount(&["--allow-other"]);
    let ls = |m: &Mounted| as_nobody(Command::new("ls").arg(&m.mnt));
    let o = ls(&m);
    assert!(!o.status.success(), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("ermission denied"),
        "{o:?}"
    );
    assert!(!String::from_utf8_lossy(&o.stdout).contains('v'));
    chmod(&m.mnt, 0o755).unwrap();
    let o = ls(&m);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(String::from_utf8_lossy(&o.stdout), "v\n");
    chmod(&m.mnt, 0o700).unwrap();
    assert!(!ls(&m).status.success());
    m.umount();
}
