//! Timestamps set through the mount come back exactly, before 1970 too
//! (fuser 0.18 converts a negative time with a fraction wrongly; see
//! `fs::adapter::fuser_time_fixed`).

mod common;

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use common::mount::Mounted;

fn set_times(p: &Path, (s, ns): (i64, i64)) {
    let c = CString::new(p.as_os_str().as_bytes()).unwrap();
    let t = libc::timespec {
        tv_sec: s as libc::time_t,
        tv_nsec: ns as _,
    };
    let times = [t, t];
    // SAFETY: a valid path and two timespecs.
    let rc = unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), 0) };
    assert_eq!(rc, 0, "utimensat: {}", std::io::Error::last_os_error());
}

#[test]
fn times_before_1970_with_a_fraction_are_kept_exactly() {
    let mut m = Mounted::new();
    let f = m.path("f");
    fs::write(&f, "x").unwrap();
    let cases = [
        (-1, 999_999_999), // os.utime(f, ns=(0, -1)) sets −1 ns
        (1_700_000_000, 123_456_789),
        (-1_000_000_000, 1),
        (-2, 500_000_000),
    ];
    for want in cases {
        set_times(&f, want);
        let md = fs::metadata(&f).unwrap();
        assert_eq!((md.mtime(), md.mtime_nsec()), want, "mtime");
        assert_eq!((md.atime(), md.atime_nsec()), want, "atime");
    }
    // Stored that way: after a remount too.
    m.umount();
    m.mount(&[]);
    let md = fs::metadata(m.path("f")).unwrap();
    assert_eq!((md.mtime(), md.mtime_nsec()), cases[3]);
}
