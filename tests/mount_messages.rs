//! Errno of edge cases at the mount: an over-long vault name at the mount
//! root, an empty `user.` xattr name, and xattrs that could never be listed
//! back.

mod common;

use std::ffi::CString;
use std::io;
use std::path::{Path, PathBuf};

use common::mount::Mounted;
use common::posix::*;
use common::*;

#[test]
fn an_over_long_vault_name_at_the_root_is_enametoolong() {
    let m = Mounted::new();
    let long = "n".repeat(256);
    assert_errno(
        std::fs::create_dir(m.mnt.join(&long)),
        libc::ENAMETOOLONG,
        "mkdir of a 256-byte name at the root",
    );
    assert_errno(
        std::fs::rename(m.v(), m.mnt.join(&long)),
        libc::ENAMETOOLONG,
        "rename of a vault to a 256-byte name",
    );
    // 255 bytes is a valid vault name.
    std::fs::create_dir(m.mnt.join("n".repeat(255))).unwrap();
    assert!(m.v().is_dir());
}

fn setxattr(p: &Path, name: &str, value: &[u8]) -> io::Result<()> {
    let n = CString::new(name).unwrap();
    // SAFETY: valid strings and buffer; the result is checked.
    rc(unsafe {
        libc::setxattr(
            cstr(p).as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    })
}

/// The names listxattr(2) gives, or its error.
fn listxattr(p: &Path) -> io::Result<Vec<String>> {
    let cp = cstr(p);
    let mut buf = vec![0u8; 1 << 17];
    // SAFETY: buffer of its own length; the result is checked.
    let got = unsafe { libc::listxattr(cp.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if got < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(buf[..got as usize]
        .split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect())
}

#[test]
fn an_empty_xattr_name_is_einval() {
    let m = Mounted::new();
    let f = m.path("f");
    std::fs::write(&f, b"x").unwrap();
    assert_errno(setxattr(&f, "user.", b"v"), libc::EINVAL, "set user.");
    let n = CString::new("user.").unwrap();
    // SAFETY: valid strings, a null buffer of size 0; the result is checked.
    let r = rc(
        unsafe { libc::getxattr(cstr(&f).as_ptr(), n.as_ptr(), std::ptr::null_mut(), 0) }
            as libc::c_int,
    );
    assert_errno(r, libc::EINVAL, "get user.");
    assert_eq!(listxattr(&f).unwrap(), Vec::<String>::new());
}

/// Every xattr that was set can be listed back: on a backing file system that
/// takes thousands of them (tmpfs), the one past what listxattr(2) can return
/// is refused.
#[test]
fn xattrs_that_could_not_be_listed_back_are_refused_at_set_time() {
    let Ok(shm) = tempfile::Builder::new()
        .prefix("pkfs-xattr-")
        .tempdir_in("/dev/shm")
    else {
        eprintln!("no /dev/shm: skipped");
        return;
    };
    let n = Node::new();
    let home: PathBuf = shm.path().join("home");
    let with_home = |args: &[&str]| n.cmd().no_home().arg("--home").arg(&home).args(args).run();
    with_home(&["init"]).success();
    with_home(&["vault", "create", "v"]).success();
    let mnt = n.scratch().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let mnt_s = mnt.to_str().unwrap();
    with_home(&["mount", mnt_s]).success();
    let f = mnt.join("v/f");
    let checks = std::panic::catch_unwind(|| {
        std::fs::write(&f, b"x").unwrap();
        let mut set = Vec::new();
        let mut refused = None;
        for i in 0..3000 {
            let name = format!("user.attribute-{i:04}");
            match setxattr(&f, &name, b"v") {
                Ok(()) => set.push(name),
                Err(e) => {
                    refused = Some(e);
                    break;
                }
            }
        }
        let e = refused.expect("some xattr past the list limit is refused");
        assert!(
            matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::E2BIG)),
            "{e}"
        );
        assert!(set.len() > 100, "only {} set", set.len());
        let mut listed = listxattr(&f).expect("what was set lists back");
        listed.sort();
        assert_eq!(listed, set);
        // Replacing one that exists still works.
        setxattr(&f, &set[0], b"new").unwrap();
    });
    let _ = with_home(&["umount", mnt_s]);
    if let Err(p) = checks {
        std::panic::resume_unwind(p);
    }
}

#[test]
fn a_second_mount_says_where_the_home_is_mounted_in_words() {
    let m = Mounted::new();
    let other = m.node.scratch().join("other");
    std::fs::create_dir(&other).unwrap();
    let o = m
        .node
        .fail(ExitCode::MountFailure, ["mount", other.to_str().unwrap()]);
    let mnt = format!("{:?}", m.mnt.display().to_string());
    let line = o.stderr.trim_end();
    assert!(!line.contains('{') && !line.contains('}'), "{line}");
    assert!(line.contains("already mounted at"), "{line}");
    assert!(line.contains(&mnt), "{line}");
    assert!(line.contains("(pid "), "{line}");
}
