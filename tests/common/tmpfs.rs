//! A tmpfs mounted on a node's home, for tests of a small or full disk.

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::mount::is_mounted;
use super::Node;

fn cstr(b: &[u8]) -> CString {
    CString::new(b).unwrap()
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// A tmpfs of `size` mounted on a node's home, and the node's FUSE mount
/// point; both unmounted on drop, even when the test fails.
pub struct TmpfsHome<'a> {
    pub node: &'a Node,
    pub mnt: PathBuf,
}

impl<'a> TmpfsHome<'a> {
    pub fn new(node: &'a Node, size: &str) -> TmpfsHome<'a> {
        fs::create_dir_all(&node.home).unwrap();
        let (src, dir) = (cstr(b"tmpfs"), cstr(node.home.as_os_str().as_bytes()));
        let opts = cstr(format!("size={size},mode=0700").as_bytes());
        // SAFETY: valid C strings; the result is checked.
        let rc = unsafe {
            libc::mount(
                src.as_ptr(),
                dir.as_ptr(),
                src.as_ptr(),
                0,
                opts.as_ptr().cast(),
            )
        };
        assert_eq!(rc, 0, "tmpfs: {}", std::io::Error::last_os_error());
        let mnt = node.scratch().join("mnt");
        fs::create_dir_all(&mnt).unwrap();
        TmpfsHome { node, mnt }
    }

    /// Bytes in use on the home's file system.
    pub fn used(&self) -> u64 {
        let c = cstr(self.node.home.as_os_str().as_bytes());
        // SAFETY: a valid C string and a statvfs to fill; checked.
        let mut v: libc::statvfs = unsafe { std::mem::zeroed() };
        assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut v) }, 0);
        (v.f_blocks - v.f_bfree) * v.f_frsize
    }
}

impl Drop for TmpfsHome<'_> {
    fn drop(&mut self) {
        if is_mounted(&self.mnt) {
            let _ = self.node.run(["umount", &s(&self.mnt)]);
        }
        for dir in [&self.mnt, &self.node.home] {
            let c = cstr(dir.as_os_str().as_bytes());
            for _ in 0..50 {
                // SAFETY: a valid C string; failure is tolerated.
                if !is_mounted(dir) || unsafe { libc::umount2(c.as_ptr(), 0) } == 0 {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            // SAFETY: as above, lazily as a last resort.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
    }
}
