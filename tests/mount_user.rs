//! A mount made by an ordinary user, without `--allow-other`: the kernel lets
//! only that user in and does not check permissions itself (no
//! `default_permissions`), so the daemon must answer for the user's own modes:
//! `access(2)` and every operation are decided by the backing entry, checked
//! with the user's ids. Needs root (to become `nobody`) and `fusermount3`.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::users::NOBODY;

/// Run `cmd` as uid/gid 65534 with no supplementary groups.
fn as_nobody(cmd: &mut Command) -> Output {
    common::users::as_nobody(cmd)
        .stdin(Stdio::null())
        .output()
        .expect("run as nobody")
}

fn chown_nobody(p: &Path) {
    std::os::unix::fs::chown(p, Some(NOBODY), Some(NOBODY)).unwrap();
}

#[test]
fn without_allow_other_the_users_own_modes_are_enforced() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("needs root (to become nobody); skipped");
        return;
    }
    common::need("fusermount3");
    let _dev = DevFuseOpen::new();
    let base = tempfile::Builder::new()
        .prefix("pkfs-user-")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::set_permissions(base.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    // The test binary's directory may be closed to other users: a copy.
    let bin = base.path().join("pkfs");
    std::fs::copy(env!("CARGO_BIN_EXE_pkfs"), &bin).unwrap();
    let (home, mnt, pass, key) = (
        base.path().join("home"),
        base.path().join("mnt"),
        base.path().join("pass"),
        base.path().join("root.pem"),
    );
    std::fs::create_dir(&mnt).unwrap();
    std::fs::create_dir(&home).unwrap();
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::write(&pass, "user passphrase\n").unwrap();
    std::fs::copy(common::root_key(0), &key).unwrap();
    for p in [&mnt, &home, &pass, &key] {
        chown_nobody(p);
    }
    let pkfs = |args: &[&str]| {
        let mut c = Command::new(&bin);
        c.arg("--home")
            .arg(&home)
            .arg("--passfile")
            .arg(&pass)
            .args(args)
            .env("PKFS_TEST_ONLY_FAST_KDF", "1")
            .env("PKFS_TEST_ONLY_ROOT_KEY", &key)
            .env("HOME", base.path());
        let o = as_nobody(&mut c);
        assert!(
            o.status.success(),
            "pkfs {args:?} as nobody: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    pkfs(&["init"]);
    pkfs(&["vault", "create", "v"]);
    pkfs(&["mount", mnt.to_str().unwrap()]);
    let v = mnt.join("v");
    // Each line must succeed: the owner can do what the modes allow, and not
    // what they forbid (a read-only file, a directory without write).
    let script = r#"
        set -e
        no() { if "$@" 2>/dev/null; then echo "unexpectedly allowed: $*"; exit 1; fi; }
        cd "$1"
        echo hello > f
        chmod 0444 f
        test -r f
        no test -w f
        no sh -c 'echo more >> f'
        [ "$(cat f)" = hello ]
        mkdir d
        chmod 0555 d
        test -x d
        no test -w d
        no touch d/x
        chmod 0755 d
        touch d/x
        test -w d/x
        chmod 0644 f
        test -w f
        mkdir e
        echo IMPORTANT > e/x
        chmod 600 e
        no test -x e
        no cat e/x
        echo secret > g
        chmod 000 g
        no cat g
        no test -r g
        chmod 200 g
        no cat g
        echo again > g
        sleep 3
        chmod 700 e
        [ "$(cat e/x)" = IMPORTANT ]
        chmod 600 e
        echo ok
    "#;
    let o = as_nobody(
        Command::new("sh")
            .args(["-c", script, "sh"])
            .arg(&v)
            .env("HOME", base.path()),
    );
    let out = String::from_utf8_lossy(&o.stdout);
    // The modes are in the history: a checkout round trip (which commits
    // what is pending first) brings them back, `chmod 600` on a directory
    // and `chmod 200` on a file included.
    pkfs(&["version", "checkout", "v", "HEAD~1"]);
    pkfs(&["version", "checkout", "v", "latest"]);
    let modes = as_nobody(
        Command::new("sh")
            .args(["-c", r#"cd "$1" && stat -c '%n %a' f d e g"#, "sh"])
            .arg(&v),
    );
    // Every commit worked, whatever the modes: the unmount commits and exits 0.
    pkfs(&["umount", mnt.to_str().unwrap()]);
    pkfs(&["fsck", "v"]);
    pkfs(&["secret", "cat", "v:e/x"]);
    assert!(
        o.status.success() && out.trim() == "ok",
        "as the mount's owner: exit {:?}\nstdout: {out}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&modes.stdout),
        "f 644\nd 755\ne 600\ng 200\n",
        "modes after a checkout round trip: {}",
        String::from_utf8_lossy(&modes.stderr)
    );
}

/// `/dev/fuse` opened to every user for the test, as Debian ships it (some
/// containers have it 0600; fuser then cannot reach `fusermount3`), and put
/// back as it was on drop.
struct DevFuseOpen(Option<u32>);

impl DevFuseOpen {
    fn new() -> DevFuseOpen {
        let dev = Path::new("/dev/fuse");
        let mode = std::fs::metadata(dev).unwrap().permissions().mode() & 0o7777;
        if mode & 0o006 == 0o006 {
            return DevFuseOpen(None);
        }
        std::fs::set_permissions(dev, std::fs::Permissions::from_mode(0o666)).unwrap();
        DevFuseOpen(Some(mode))
    }
}

impl Drop for DevFuseOpen {
    fn drop(&mut self) {
        if let Some(mode) = self.0 {
            let _ = std::fs::set_permissions("/dev/fuse", std::fs::Permissions::from_mode(mode));
        }
    }
}
