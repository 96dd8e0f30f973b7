//! A home whose path is longer than a unix socket address holds (108 bytes)
//! mounts, and its control socket is reached: commands go through the daemon.

mod common;

use std::fs;

use common::mount::Mounted;
use common::*;

#[test]
fn a_home_with_a_200_byte_path_mounts_and_its_daemon_answers() {
    let mut n = Node::new();
    let base = n.scratch().display().to_string();
    let pad = 200 - base.len() - "/home".len() - 1;
    let deep = n.scratch().join("d".repeat(pad));
    n.home = deep.join("home");
    assert!(n.home.as_os_str().len() >= 200, "{:?}", n.home);
    n.ok(["init"]);
    n.ok(["vault", "create", "v"]);
    let mut m = Mounted::unmounted(n);
    m.mount(&["--commit-delay", "200ms"]);
    assert_eq!(m.status()["mounted"], true, "{}", m.status());
    // Through the daemon (a local run would find the home locked: exit 10).
    m.node.write("v:from-cli", "over the socket");
    assert_eq!(fs::read(m.path("from-cli")).unwrap(), b"over the socket");
    fs::write(m.path("from-mount"), b"x").unwrap();
    m.wait_committed();
    assert_eq!(m.node.cat("v:from-mount"), b"x");
    // A second mount finds the daemon and says where it is mounted.
    let other = m.node.scratch().join("mnt2");
    fs::create_dir_all(&other).unwrap();
    m.node
        .fail(ExitCode::MountFailure, ["mount", other.to_str().unwrap()])
        .stderr_has("already mounted at");
    m.umount();
    assert_eq!(m.node.cat("v:from-mount"), b"x");
}
