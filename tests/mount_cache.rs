//! The kernel's page cache in front of the daemon: a small file opened for
//! reading is handed to the kernel whole at its first open, so the reads that
//! follow never reach the daemon; everything else still does.

mod common;

use std::fs;
use std::io::Read;

use common::mount::Mounted;

/// Lookups in the daemon's page cache so far (hits and misses): every READ
/// that reaches the daemon makes some.
fn daemon_reads(m: &Mounted) -> u64 {
    let c = &m.status()["cache"];
    c["hits"].as_u64().unwrap() + c["misses"].as_u64().unwrap()
}

fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect()
}

#[test]
fn a_small_file_is_read_from_the_kernel_cache_after_its_first_open() {
    let mut m = Mounted::with_args(&["--commit-delay", "50ms"]);
    let files = [
        ("one_page", pattern(3000, 1)),
        ("three_pages", pattern(9000, 2)),
        ("for_writing", pattern(5000, 3)),
    ];
    for (name, data) in &files {
        fs::write(m.path(name), data).unwrap();
    }
    m.wait_committed();
    m.umount();
    m.mount(&["--commit-delay", "50ms"]);

    let before = daemon_reads(&m);
    for (name, data) in &files[..2] {
        assert_eq!(&fs::read(m.path(name)).unwrap(), data, "{name}");
        // And again: the kernel kept it.
        assert_eq!(&fs::read(m.path(name)).unwrap(), data, "{name}");
    }
    assert_eq!(
        daemon_reads(&m),
        before,
        "reads of small files opened read-only reached the daemon"
    );

    // Opened for writing: nothing is handed over, so the read reaches the
    // daemon (which shows that the counter above would have moved).
    let mut f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(m.path("for_writing"))
        .unwrap();
    let mut got = Vec::new();
    f.read_to_end(&mut got).unwrap();
    assert_eq!(got, files[2].1);
    drop(f);
    assert!(daemon_reads(&m) > before, "a READ is counted");

    // What the kernel holds follows later writes and truncations.
    fs::write(m.path("one_page"), b"replaced").unwrap();
    assert_eq!(fs::read(m.path("one_page")).unwrap(), b"replaced");
    fs::OpenOptions::new()
        .write(true)
        .open(m.path("three_pages"))
        .unwrap()
        .set_len(4100)
        .unwrap();
    assert_eq!(
        fs::read(m.path("three_pages")).unwrap(),
        &files[1].1[..4100]
    );
    m.wait_committed();
    m.umount();
    assert_eq!(m.node.cat("v:one_page"), b"replaced");
    assert_eq!(m.node.cat("v:three_pages"), &files[1].1[..4100]);
}

#[test]
fn a_truncation_by_path_after_a_read_is_seen() {
    let m = Mounted::with_args(&["--commit-delay", "1m"]);
    let data = pattern(12000, 4);
    fs::write(m.path("f"), &data).unwrap();
    // Through the CLI (a control command): the mount re-syncs and drops what
    // the kernel cached, including what a first open handed over.
    assert_eq!(fs::read(m.path("f")).unwrap(), data);
    m.node.write("v:f", "from the cli");
    assert_eq!(fs::read(m.path("f")).unwrap(), b"from the cli");
    // truncate(2) by path on a file no one has open.
    let c = std::ffi::CString::new(m.path("f").to_str().unwrap()).unwrap();
    // SAFETY: valid C string; the result is checked.
    assert_eq!(unsafe { libc::truncate(c.as_ptr(), 4) }, 0);
    assert_eq!(fs::read(m.path("f")).unwrap(), b"from");
}
