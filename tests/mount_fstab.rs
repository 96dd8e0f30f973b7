//! The mount helper form `pkfs HOME DIR -o opts`, as mount(8) and fstab run it.

mod common;

use std::path::Path;
use std::process::Command;

use common::mount::is_mounted;
use common::{Node, BIN};

fn vault_readable(mnt: &Path, node: &Node) {
    assert!(mnt.join("v").is_dir(), "vault shown in the mount");
    std::fs::write(mnt.join("v/via-fstab"), b"fstab").unwrap();
    node.ok(["umount", mnt.to_str().unwrap()]);
    assert!(!is_mounted(mnt));
    assert_eq!(node.cat("v:via-fstab"), b"fstab");
}

#[test]
fn the_helper_form_mounts_and_ignores_generic_options() {
    let node = Node::with_vault();
    let mnt = node.scratch().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let opts = format!(
        "rw,dev,suid,exec,auto,_netdev,nofail,fsname=pkfs,x-systemd.automount,passfile={}",
        node.passfile.display()
    );
    // The form mount.fuse3 uses; no --home, no --passfile on the command line.
    node.cmd()
        .no_home()
        .no_passfile()
        .args([
            node.home.as_os_str(),
            mnt.as_os_str(),
            "-o".as_ref(),
            opts.as_ref(),
        ])
        .run()
        .success();
    assert!(is_mounted(&mnt), "mounted when the command returned");
    vault_readable(&mnt, &node);
}

#[test]
fn mount_t_fuse_runs_pkfs_through_mount_fuse3() {
    let helper = Path::new("/sbin/mount.fuse3");
    // SAFETY: geteuid cannot fail.
    if !helper.exists() || unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root and fuse3's mount.fuse3 (CI has both)");
        return;
    }
    let node = Node::with_vault();
    let mnt = node.scratch().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    // `prog#source` lets mount(8) run this build of pkfs (mount.fuse3 resets
    // PATH, so an fstab line for an installed pkfs says `fuse.pkfs` instead).
    let source = format!("{BIN}#{}", node.home.display());
    let out = Command::new("mount")
        .args(["-t", "fuse", &source, mnt.to_str().unwrap(), "-o"])
        .arg(format!(
            "passfile={},allow_other,nodev,nosuid",
            node.passfile.display()
        ))
        .env("PKFS_TEST_ONLY_FAST_KDF", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "mount -t fuse: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // mount(8) returns only after pkfs did, and pkfs only once the mount is live.
    assert!(is_mounted(&mnt));
    vault_readable(&mnt, &node);
}

#[test]
fn a_foreground_mount_tells_systemd_when_it_is_ready_and_stopping() {
    use std::os::unix::net::UnixDatagram;
    use std::time::Duration;

    let node = Node::with_vault();
    let mnt = node.scratch().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let sock_path = node.scratch().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    // What `Type=notify` in packaging/systemd/pkfs@.service relies on.
    let mut child = Command::new(BIN)
        .args(["--home", node.home.to_str().unwrap()])
        .args(["--passfile", node.passfile.to_str().unwrap()])
        .args(["mount", "-f", mnt.to_str().unwrap()])
        .env("NOTIFY_SOCKET", &sock_path)
        .env("PKFS_TEST_ONLY_FAST_KDF", "1")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 64];
    let n = sock.recv(&mut buf).expect("READY=1 from the daemon");
    assert_eq!(&buf[..n], b"READY=1");
    assert!(is_mounted(&mnt), "ready means mounted");
    node.ok(["umount", mnt.to_str().unwrap()]);
    let n = sock.recv(&mut buf).expect("STOPPING=1 from the daemon");
    assert_eq!(&buf[..n], b"STOPPING=1");
    assert!(child.wait().unwrap().success());
    assert!(!is_mounted(&mnt));
}
