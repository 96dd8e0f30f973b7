//! `user.` extended attribute names up to 255 bytes (ext4's limit) through
//! the mount: names whose encrypted form does not fit in a backing name are
//! stored in front of their value (`format::links`).

mod common;

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use common::mount::Mounted;

fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

fn set(p: &Path, name: &str, value: &[u8]) -> io::Result<()> {
    let n = CString::new(name).unwrap();
    // SAFETY: valid strings and buffer; the result is checked.
    let rc = unsafe {
        libc::setxattr(
            cstr(p).as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn get(p: &Path, name: &str) -> io::Result<Vec<u8>> {
    let n = CString::new(name).unwrap();
    let mut buf = vec![0u8; 65536];
    // SAFETY: buffer of its own length; the result is checked.
    let got = unsafe {
        libc::getxattr(
            cstr(p).as_ptr(),
            n.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if got < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(got as usize);
    Ok(buf)
}

fn list(p: &Path) -> Vec<String> {
    let mut buf = vec![0u8; 1 << 17];
    // SAFETY: buffer of its own length; the result is checked.
    let got = unsafe { libc::listxattr(cstr(p).as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    assert!(got >= 0, "{}", io::Error::last_os_error());
    let mut names: Vec<String> = buf[..got as usize]
        .split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8(s.to_vec()).unwrap())
        .collect();
    names.sort();
    names
}

fn remove(p: &Path, name: &str) -> io::Result<()> {
    let n = CString::new(name).unwrap();
    // SAFETY: valid strings; the result is checked.
    if unsafe { libc::removexattr(cstr(p).as_ptr(), n.as_ptr()) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn name(len: usize, c: char) -> String {
    format!("user.{}", c.to_string().repeat(len - 5))
}

#[test]
fn xattr_names_up_to_255_bytes_set_get_list_and_remove() {
    let mut m = Mounted::new();
    let f = m.path("f");
    std::fs::write(&f, b"x").unwrap();
    std::fs::create_dir(m.path("d")).unwrap();
    let lens = [6, 150, 159, 160, 161, 200, 254, 255];
    let mut want = Vec::new();
    for target in [f.clone(), m.path("d")] {
        for (i, len) in lens.iter().enumerate() {
            let n = name(*len, (b'a' + i as u8) as char);
            set(&target, &n, format!("value {len}").as_bytes())
                .unwrap_or_else(|e| panic!("{len}: {e}"));
            assert_eq!(get(&target, &n).unwrap(), format!("value {len}").as_bytes());
        }
    }
    for (i, len) in lens.iter().enumerate() {
        want.push(name(*len, (b'a' + i as u8) as char));
    }
    want.sort();
    assert_eq!(list(&f), want);
    // Longer than 255: the kernel's ERANGE.
    let e = set(&f, &name(256, 'z'), b"v").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ERANGE));
    // Replacing and removing a long one.
    let long = name(255, 'h');
    set(&f, &long, b"again").unwrap();
    assert_eq!(get(&f, &long).unwrap(), b"again");
    remove(&f, &long).unwrap();
    assert_eq!(
        get(&f, &long).unwrap_err().raw_os_error(),
        Some(libc::ENODATA)
    );
    assert_eq!(list(&f).len(), lens.len() - 1);
    // They survive a remount.
    m.umount();
    m.mount(&[]);
    assert_eq!(get(&m.path("d"), &long).unwrap(), b"value 255");
    assert_eq!(list(&m.path("d")), want);
}
