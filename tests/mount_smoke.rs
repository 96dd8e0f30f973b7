//! The mount fixture itself: mount, write through the mount, unmount, and find
//! the change committed.

mod common;

use common::mount::Mounted;

#[test]
fn write_through_the_mount_is_committed_on_unmount() {
    let mut m = Mounted::new();
    assert!(m.v().is_dir());
    std::fs::write(m.path("hello.txt"), b"hi there").unwrap();
    assert_eq!(std::fs::read(m.path("hello.txt")).unwrap(), b"hi there");
    m.umount();
    assert_eq!(m.node.cat("v:hello.txt"), b"hi there");
    let log = m.node.log("v", false);
    assert!(
        log.to_vec()
            .iter()
            .any(|c| c.to_string().contains("hello.txt")),
        "{log:?}"
    );
}

#[test]
fn the_cli_refuses_to_read_fifos_and_symlinks_made_through_the_mount() {
    let m = Mounted::new();
    let fifo = std::ffi::CString::new(m.path("pipe").to_str().unwrap()).unwrap();
    // SAFETY: valid C string; the result is checked.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    std::os::unix::fs::symlink("target", m.path("link")).unwrap();
    // Through the daemon: a read of the FIFO would hang the mount.
    m.node
        .fail(common::ExitCode::WrongKind, ["secret", "cat", "v:pipe"])
        .stderr_has("not a regular file");
    m.node
        .fail(common::ExitCode::WrongKind, ["secret", "cat", "v:link"])
        .stderr_has("not a regular file");
    // The mount still answers.
    std::fs::write(m.path("after"), b"ok").unwrap();
    assert_eq!(std::fs::read(m.path("after")).unwrap(), b"ok");
    assert_eq!(
        std::fs::read_link(m.path("link")).unwrap().to_str(),
        Some("target")
    );
}

#[test]
fn mount_options_from_o_and_flags() {
    let mut m = Mounted::with_args(&["--ro", "-o", "noatime,nosuid,nodev,default_permissions"]);
    let err = std::fs::write(m.path("x"), b"no").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS));
    m.umount();
    m.node
        .fail(
            common::ExitCode::Usage,
            ["mount", m.mnt.to_str().unwrap(), "-o", "bogus"],
        )
        .stderr_has("unknown mount option");
    m.mount(&["-o", "rw,noexec"]);
    std::fs::write(m.path("x"), b"yes").unwrap();
    assert_eq!(std::fs::read(m.path("x")).unwrap(), b"yes");
}
