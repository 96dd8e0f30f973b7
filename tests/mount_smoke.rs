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
    assert!(log.to_vec().iter().any(|c| c.to_string().contains("hello.txt")), "{log:?}");
}
