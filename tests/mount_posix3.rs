//! POSIX semantics inside a mounted vault, part three: edge cases of open files
//! meeting renames and truncations, name and target lengths, creation modes,
//! timestamps updated by writes.

mod common;

use common::posix::assert_errno;

use std::fs::{self, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::mount::Mounted;

fn read_all_from_start(f: &fs::File) -> Vec<u8> {
    let mut f = f;
    f.seek(SeekFrom::Start(0)).unwrap();
    let mut v = Vec::new();
    f.read_to_end(&mut v).unwrap();
    v
}

#[test]
fn rename_over_an_open_file_keeps_its_content_for_the_descriptor() {
    let mut m = Mounted::new();
    let (a, b) = (m.path("a"), m.path("b"));
    fs::write(&a, b"new content from a").unwrap();
    fs::write(&b, b"old content of b").unwrap();
    let held = fs::File::open(&b).unwrap();
    fs::rename(&a, &b).unwrap();
    assert_eq!(fs::read(&b).unwrap(), b"new content from a");
    assert_eq!(
        read_all_from_start(&held),
        b"old content of b",
        "the replaced file lives on for its descriptor"
    );
    drop(held);
    m.umount();
    assert_eq!(m.node.ls("v:"), ["b"]);
    assert_eq!(m.node.cat("v:b"), b"new content from a");
}

#[test]
fn writes_to_an_open_file_follow_it_through_a_rename() {
    let mut m = Mounted::new();
    fs::create_dir(m.path("from")).unwrap();
    fs::create_dir(m.path("to")).unwrap();
    let (old, new) = (m.path("from/f.txt"), m.path("to/g.txt"));
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&old)
        .unwrap();
    f.write_all(b"before the rename; ").unwrap();
    fs::rename(&old, &new).unwrap();
    f.write_all(b"after the rename; ").unwrap();
    // The directory holding it moves too.
    fs::rename(m.path("to"), m.path("moved")).unwrap();
    f.write_all(b"after the directory moved").unwrap();
    drop(f);
    let want = b"before the rename; after the rename; after the directory moved";
    assert_eq!(fs::read(m.path("moved/g.txt")).unwrap(), want);
    assert_errno(fs::metadata(&old), libc::ENOENT, "old name");
    m.umount();
    assert_eq!(m.node.cat("v:moved/g.txt"), want);
    assert!(m.node.ls("v:from").is_empty());
    assert_eq!(m.node.ls("v:"), ["from/", "moved/"]);
}

#[test]
fn o_trunc_is_seen_by_another_open_descriptor() {
    let mut m = Mounted::new();
    let p = m.path("t.txt");
    fs::write(&p, vec![b'x'; 10_000]).unwrap();
    let reader = fs::File::open(&p).unwrap();
    assert_eq!(read_all_from_start(&reader).len(), 10_000);
    fs::write(&p, b"short").unwrap(); // O_TRUNC, then a write
    assert_eq!(reader.metadata().unwrap().len(), 5);
    assert_eq!(read_all_from_start(&reader), b"short");
    let mut buf = [0u8; 16];
    assert_eq!(
        reader.read_at(&mut buf, 5).unwrap(),
        0,
        "nothing past the end"
    );
    drop(reader);
    m.umount();
    assert_eq!(m.node.cat("v:t.txt"), b"short");
}

#[test]
fn hard_links_renamed_onto_each_other_stay() {
    let mut m = Mounted::new();
    let (a, b) = (m.path("a"), m.path("b"));
    fs::write(&a, b"one file").unwrap();
    fs::hard_link(&a, &b).unwrap();
    // rename(2) between two links of one file does nothing.
    fs::rename(&a, &b).unwrap();
    assert_eq!(fs::read(&a).unwrap(), b"one file");
    assert_eq!(fs::read(&b).unwrap(), b"one file");
    assert_eq!(fs::metadata(&a).unwrap().nlink(), 2);
    m.umount();
    assert_eq!(m.node.ls("v:"), ["a", "b"]);
    m.mount(&[]);
    // Links survive a remount: still one inode.
    let (ma, mb) = (fs::metadata(&a).unwrap(), fs::metadata(&b).unwrap());
    assert_eq!(ma.ino(), mb.ino());
    assert_eq!(ma.nlink(), 2);
    fs::write(&a, b"changed through a").unwrap();
    assert_eq!(fs::read(&b).unwrap(), b"changed through a");
}

#[test]
fn name_and_symlink_target_lengths() {
    let mut m = Mounted::new();
    let longest = "n".repeat(255);
    let p = m.path(&longest);
    fs::write(&p, b"longest name").unwrap();
    assert_eq!(fs::read(&p).unwrap(), b"longest name");
    let listed: Vec<_> = fs::read_dir(m.v())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(listed, [std::ffi::OsString::from(&longest)]);
    assert_errno(
        fs::write(m.path(&"n".repeat(256)), b"x"),
        libc::ENAMETOOLONG,
        "a 256-byte name",
    );
    // A directory with a long name, renamed to another long name.
    let (d1, d2) = ("d".repeat(250), "e".repeat(254));
    fs::create_dir(m.path(&d1)).unwrap();
    fs::write(m.path(&format!("{d1}/inner")), b"deep").unwrap();
    fs::rename(m.path(&d1), m.path(&d2)).unwrap();
    assert_eq!(fs::read(m.path(&format!("{d2}/inner"))).unwrap(), b"deep");

    // A long symlink target round-trips; one too long for the disk is refused.
    let target: String = (0..2000).map(|i| (b'a' + (i % 26) as u8) as char).collect();
    std::os::unix::fs::symlink(&target, m.path("longlink")).unwrap();
    assert_eq!(
        fs::read_link(m.path("longlink")).unwrap(),
        Path::new(&target)
    );
    assert_errno(
        std::os::unix::fs::symlink("t".repeat(4000), m.path("toolong")),
        libc::ENAMETOOLONG,
        "a 4000-byte target",
    );
    assert_errno(
        fs::symlink_metadata(m.path("toolong")),
        libc::ENOENT,
        "nothing left behind",
    );
    m.umount();
    m.mount(&[]);
    assert_eq!(fs::read(&p).unwrap(), b"longest name");
    assert_eq!(
        fs::read_link(m.path("longlink")).unwrap(),
        Path::new(&target)
    );
    let mut names: Vec<String> = fs::read_dir(m.v())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, [d2, "longlink".to_string(), longest]);
}

#[test]
fn creation_modes_and_directory_link_counts() {
    let m = Mounted::new();
    let f = m.path("private");
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o640)
        .open(&f)
        .unwrap();
    // The process umask (usually 022) cannot touch 0640.
    assert_eq!(fs::metadata(&f).unwrap().mode() & 0o7777, 0o640);
    assert_eq!(fs::metadata(&f).unwrap().uid(), 0, "created by root");
    std::os::unix::fs::DirBuilderExt::mode(&mut fs::DirBuilder::new(), 0o750)
        .create(m.path("dir"))
        .unwrap();
    assert_eq!(fs::metadata(m.path("dir")).unwrap().mode() & 0o7777, 0o750);
    fs::create_dir(m.path("dir/s1")).unwrap();
    fs::create_dir(m.path("dir/s2")).unwrap();
    fs::write(m.path("dir/file"), b"").unwrap();
    assert_eq!(
        fs::metadata(m.path("dir")).unwrap().nlink(),
        4,
        "2 + one per subdirectory"
    );
    let md = fs::metadata(m.path("dir/file")).unwrap();
    assert!(md.is_file());
    assert_eq!(md.len(), 0);
    assert_eq!(md.nlink(), 1);
}

#[test]
fn writes_update_mtime_and_ctime() {
    let mut m = Mounted::new();
    let p = m.path("stamp.txt");
    fs::write(&p, b"a").unwrap();
    let past = UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    fs::File::options()
        .write(true)
        .open(&p)
        .unwrap()
        .set_modified(past)
        .unwrap();
    assert_eq!(fs::metadata(&p).unwrap().mtime(), 1_000_000_000);
    let before = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let mut f = OpenOptions::new().append(true).open(&p).unwrap();
    f.write_all(b"b").unwrap();
    drop(f);
    let md = fs::metadata(&p).unwrap();
    assert!(
        md.mtime() >= before,
        "a write sets the mtime to now: {} < {before}",
        md.mtime()
    );
    assert!(md.ctime() >= before, "and the ctime");
    let after_write = md.mtime();
    m.umount();
    m.mount(&[]);
    assert_eq!(
        fs::metadata(&p).unwrap().mtime(),
        after_write,
        "mtime persisted"
    );
    assert_eq!(fs::read(&p).unwrap(), b"ab");
}

/// A deterministic stream of numbers below `n` (xorshift64).
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Random writes, truncations and reads on two files at once through a tiny
/// page cache, so that dirty pages are written back and clean ones evicted all
/// the time. Reads use O_DIRECT, so they reach pkfs and not the kernel's cache.
#[test]
fn random_io_on_two_files_through_a_tiny_cache() {
    let mut m = Mounted::with_args(&["--commit-delay", "200ms", "--cache-size", "256K"]);
    let names = ["r0.bin", "r1.bin"];
    let open = |n: &str, direct: bool| {
        let mut o = OpenOptions::new();
        o.read(true).write(!direct).create(!direct);
        if direct {
            o.custom_flags(libc::O_DIRECT);
        }
        o.open(m.path(n)).unwrap()
    };
    let writers: Vec<fs::File> = names.iter().map(|n| open(n, false)).collect();
    let readers: Vec<fs::File> = names.iter().map(|n| open(n, true)).collect();
    let mut models: Vec<Vec<u8>> = vec![Vec::new(), Vec::new()];
    let mut rng = Rng(0x5EED_1234_ABCD_0001);
    const MAX: u64 = 300_000;
    for step in 0..400u64 {
        let k = (step % 2) as usize;
        let (w, model) = (&writers[k], &mut models[k]);
        match rng.below(10) {
            0 => {
                let len = rng.below(MAX) as usize;
                w.set_len(len as u64).unwrap();
                model.resize(len, 0);
            }
            1..=6 => {
                let off = rng.below(MAX) as usize;
                let len = 1 + rng.below(20_000) as usize;
                let data = common::pseudo_random(len, step);
                w.write_all_at(&data, off as u64).unwrap();
                if model.len() < off + len {
                    model.resize(off + len, 0);
                }
                model[off..off + len].copy_from_slice(&data);
            }
            _ => {
                let off = rng.below(model.len() as u64 + 1) as usize;
                let len = rng.below(30_000) as usize;
                let mut buf = vec![0u8; len];
                let mut got = 0;
                while got < len {
                    let n = readers[k]
                        .read_at(&mut buf[got..], (off + got) as u64)
                        .unwrap();
                    if n == 0 {
                        break;
                    }
                    got += n;
                }
                let want = &model[off.min(model.len())..(off + len).min(model.len())];
                assert!(
                    buf[..got] == *want,
                    "step {step}: {} bytes at {off} of {} differ from the model",
                    len,
                    names[k]
                );
            }
        }
        assert_eq!(
            w.metadata().unwrap().len(),
            model.len() as u64,
            "step {step}: size of {}",
            names[k]
        );
    }
    drop((writers, readers));
    for k in 0..2 {
        assert!(
            fs::read(m.path(names[k])).unwrap() == models[k],
            "{} read back",
            names[k]
        );
    }
    m.umount();
    for k in 0..2 {
        assert!(
            m.node.cat(&format!("v:{}", names[k])) == models[k],
            "{} as committed",
            names[k]
        );
    }
}

/// The lock-file pattern of git, editors and package managers: create
/// `config.lock`, write it, rename it over `config`, open `config`. Four threads
/// at once (each in its own directory), so that the kernel's FORGET of each
/// replaced inode races with the next CREATE, which may get the same backing
/// inode number.
#[test]
fn replacing_a_file_by_rename_in_a_loop_keeps_it_openable() {
    let m = Mounted::new();
    std::thread::scope(|s| {
        for t in 0..4 {
            let dir = m.path(&format!("t{t}"));
            s.spawn(move || {
                fs::create_dir(&dir).unwrap();
                let (cfg, lock) = (dir.join("config"), dir.join("config.lock"));
                fs::write(&cfg, b"start\n").unwrap();
                for i in 0..300 {
                    let mut l = OpenOptions::new()
                        .read(true)
                        .write(true)
                        .create_new(true)
                        .open(&lock)
                        .unwrap_or_else(|e| panic!("thread {t}, round {i}: create lock: {e}"));
                    let old = fs::read(&cfg)
                        .unwrap_or_else(|e| panic!("thread {t}, round {i}: read config: {e}"));
                    let prev = match i {
                        0 => "start\n".to_string(),
                        _ => format!("content {}\n", i - 1),
                    };
                    assert_eq!(
                        String::from_utf8_lossy(&old),
                        prev,
                        "thread {t}, round {i}: config before the rename"
                    );
                    let want = format!("content {i}\n");
                    l.write_all(want.as_bytes()).unwrap();
                    drop(l);
                    fs::rename(&lock, &cfg).unwrap();
                    let got = fs::read(&cfg).unwrap_or_else(|e| {
                        panic!("thread {t}, round {i}: open of the renamed file: {e}")
                    });
                    assert_eq!(got, want.as_bytes(), "thread {t}, round {i}");
                }
            });
        }
    });
}

/// How many of the first `len` bytes of `f` are in the kernel's page cache, in
/// pages (mincore(2) on a mapping that is never touched, so nothing is read).
fn resident_pages(f: &fs::File, len: usize) -> usize {
    use std::os::fd::AsRawFd;
    let page = 4096;
    let mut vec = vec![0u8; len.div_ceil(page)];
    // SAFETY: a fresh read-only mapping of an open file, unmapped before return;
    // mincore writes one byte per page into `vec`, which has that many.
    unsafe {
        let addr = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            f.as_raw_fd(),
            0,
        );
        assert_ne!(
            addr,
            libc::MAP_FAILED,
            "{}",
            std::io::Error::last_os_error()
        );
        let rc = libc::mincore(addr, len, vec.as_mut_ptr());
        let err = std::io::Error::last_os_error();
        libc::munmap(addr, len);
        assert_eq!(rc, 0, "mincore: {err}");
    }
    vec.iter().filter(|b| **b & 1 == 1).count()
}

/// Opening a file keeps what the kernel has cached of it. Each open used to
/// drop the cache, which cost a re-read and let a reader racing an appender
/// keep zeros (`one_process_appends_while_others_read` in mount_tools.rs).
#[test]
fn reopening_a_file_keeps_its_pages_in_the_kernel_cache() {
    let m = Mounted::new();
    let p = m.path("cached");
    let len = 64 * 1024;
    fs::write(&p, vec![7u8; len]).unwrap();
    assert_eq!(fs::read(&p).unwrap(), vec![7u8; len]);
    let f = fs::File::open(&p).unwrap();
    assert_eq!(resident_pages(&f, len), len / 4096);
    // A change through the mount is seen by the next open, of course.
    fs::write(&p, vec![8u8; len]).unwrap();
    assert_eq!(fs::read(&p).unwrap(), vec![8u8; len]);
}

/// A file streamed in 128 KiB writes (each one sealed in the background after
/// the write returns) reads as a prefix of what is being written at every
/// moment, from another descriptor, with a size that only grows; the writer's
/// own `fstat` sees every byte it wrote; and after fsync the whole file reads
/// back and is what gets committed. 12 MiB crosses several of the blob's
/// 4 MiB write-out windows.
#[test]
fn a_streamed_file_reads_as_a_prefix_while_it_is_written() {
    let mut m = Mounted::new();
    let p = m.path("stream.bin");
    let data = common::pseudo_random(12 << 20, 7);
    fs::write(&p, b"").unwrap();
    let writer = {
        let (p, data) = (p.clone(), data.clone());
        std::thread::spawn(move || {
            let mut f = OpenOptions::new().write(true).open(&p).unwrap();
            for (k, chunk) in data.chunks(128 << 10).enumerate() {
                f.write_all(chunk).unwrap();
                let written = ((k + 1) * (128 << 10)).min(data.len()) as u64;
                assert_eq!(
                    f.metadata().unwrap().len(),
                    written,
                    "fstat after write {k}"
                );
            }
            f.sync_all().unwrap();
        })
    };
    let mut last = 0;
    let mut reads = 0;
    while !writer.is_finished() {
        // Past the kernel's page cache (which the writes fill), so that the
        // daemon serves the read while a batch may be in flight.
        let mut f = fs::File::open(&p).unwrap();
        // SAFETY: a valid descriptor; advice only.
        unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        let mut got = Vec::new();
        f.read_to_end(&mut got).unwrap();
        assert!(
            data.starts_with(&got),
            "a read of {} bytes is not a prefix of the stream",
            got.len()
        );
        assert!(
            got.len() >= last,
            "the file shrank from {last} to {}",
            got.len()
        );
        last = got.len();
        reads += 1;
    }
    writer.join().unwrap();
    assert!(reads > 0);
    assert!(fs::read(&p).unwrap() == data, "the whole stream reads back");
    m.wait_committed();
    m.umount();
    assert!(
        m.node.cat("v:stream.bin") == data,
        "the commit holds the whole stream"
    );
}
