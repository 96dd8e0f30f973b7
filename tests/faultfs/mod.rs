//! A fault-injecting FUSE passthrough for power-cut tests.
//!
//! [`FaultFs::mount`] serves a backing directory at a mount point, passing
//! every operation through, and keeps a model of what a disk would have made
//! durable so far:
//!
//! * a file's bytes become durable at `fsync`/`fdatasync` of that file;
//! * a directory's entries (create, unlink, rename, mkdir, link, symlink)
//!   become durable at `fsync` of that directory.
//!
//! `syncfs(2)` and `sync(2)` do not reach a FUSE file system, so they make
//! nothing durable here: the home behaves as a disk whose `syncfs` does
//! nothing. [`FaultFs::cut`] unmounts and rewrites the backing directory to
//! the durable image (file contents as of their last fsync, directory entries
//! as of their directory's last fsync; a file whose name is durable but whose
//! bytes never were is empty), as a power cut does. Mount again after a cut.
//!
//! Files are identified by an id of our own, not the backing inode number,
//! which the backing file system reuses after an unlink.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{Errno, FileAttr, FileType, INodeNo, TimeOrNow};

mod ops;

const TTL: Duration = Duration::from_secs(1);

/// A directory entry as the durable image holds it.
#[derive(Clone, Debug)]
enum DEntry {
    File {
        id: u64,
        mode: u32,
    },
    Dir {
        id: u64,
        mode: u32,
    },
    Symlink(PathBuf),
    /// A socket (or fifo): a reboot leaves a stale one.
    Socket,
}

#[derive(Default)]
struct State {
    /// backing inode number → our id of the file that has it now.
    by_bino: HashMap<u64, u64>,
    /// id → (parent id, name) of one of its names (the root is id 1).
    names: HashMap<u64, (u64, OsString)>,
    next_id: u64,
    /// Open files and directories.
    handles: HashMap<u64, (u64, File)>,
    next_fh: u64,
    /// The durable image: file bytes by id, directory entries by id.
    files: HashMap<u64, Vec<u8>>,
    dirs: HashMap<u64, BTreeMap<OsString, DEntry>>,
    /// Counters, for the test to see that fsyncs arrive.
    pub fsyncs: u64,
    pub dir_fsyncs: u64,
}

pub struct Shared {
    backing: PathBuf,
    st: Mutex<State>,
}

/// A mounted fault file system.
pub struct FaultFs {
    shared: Arc<Shared>,
    session: Option<fuser::BackgroundSession>,
    pub mnt: PathBuf,
    pub backing: PathBuf,
}

fn errno(e: std::io::Error) -> Errno {
    Errno::from(e)
}

impl Shared {
    fn path(&self, st: &State, id: u64) -> Result<PathBuf, Errno> {
        let mut parts = Vec::new();
        let mut cur = id;
        while cur != 1 {
            let (p, n) = st.names.get(&cur).ok_or(Errno::ESTALE)?;
            parts.push(n.clone());
            cur = *p;
        }
        let mut out = self.backing.clone();
        for n in parts.iter().rev() {
            out.push(n);
        }
        Ok(out)
    }

    /// The id of the backing inode `bino` (a new one when `fresh`: just created).
    fn id_of(st: &mut State, bino: u64, fresh: bool) -> u64 {
        if !fresh {
            if let Some(id) = st.by_bino.get(&bino) {
                return *id;
            }
        }
        st.next_id += 1;
        let id = st.next_id;
        st.by_bino.insert(bino, id);
        id
    }

    fn attr(id: u64, m: &fs::Metadata) -> FileAttr {
        let t = |s: i64, ns: i64| {
            if s >= 0 {
                UNIX_EPOCH + Duration::new(s as u64, ns as u32)
            } else {
                UNIX_EPOCH
            }
        };
        FileAttr {
            ino: INodeNo(id),
            size: m.size(),
            blocks: m.blocks(),
            atime: t(m.atime(), m.atime_nsec()),
            mtime: t(m.mtime(), m.mtime_nsec()),
            ctime: t(m.ctime(), m.ctime_nsec()),
            crtime: t(m.ctime(), m.ctime_nsec()),
            kind: kind(m),
            perm: (m.mode() & 0o7777) as u16,
            nlink: m.nlink() as u32,
            uid: m.uid(),
            gid: m.gid(),
            rdev: m.rdev() as u32,
            blksize: 4096,
            flags: 0,
        }
    }

    /// Register `name` in `parent` (just looked up or created) and its attributes.
    fn enter(&self, parent: u64, name: &OsStr, fresh: bool) -> Result<FileAttr, Errno> {
        let mut st = self.st.lock().unwrap();
        let p = self.path(&st, parent)?.join(name);
        let m = fs::symlink_metadata(&p).map_err(errno)?;
        let id = Self::id_of(&mut st, m.ino(), fresh);
        st.names.insert(id, (parent, name.to_owned()));
        Ok(Self::attr(id, &m))
    }

    /// The current entries of directory `dir` (a backing path), for the image.
    fn list(st: &mut State, dir: &Path) -> std::io::Result<BTreeMap<OsString, DEntry>> {
        let mut out = BTreeMap::new();
        for e in fs::read_dir(dir)? {
            let e = e?;
            let m = fs::symlink_metadata(e.path())?;
            let id = Self::id_of(st, m.ino(), false);
            let mode = m.mode() & 0o7777;
            let d = if m.file_type().is_symlink() {
                DEntry::Symlink(fs::read_link(e.path())?)
            } else if m.is_dir() {
                DEntry::Dir { id, mode }
            } else if !m.is_file() {
                DEntry::Socket
            } else {
                DEntry::File { id, mode }
            };
            out.insert(e.file_name(), d);
        }
        Ok(out)
    }

    /// Everything under the backing directory is durable (at mount).
    fn snapshot(&self) -> std::io::Result<()> {
        let mut st = self.st.lock().unwrap();
        let root = fs::metadata(&self.backing)?;
        st.next_id = 1;
        st.by_bino.insert(root.ino(), 1);
        let mut stack = vec![(1u64, self.backing.clone())];
        while let Some((id, dir)) = stack.pop() {
            let entries = Self::list(&mut st, &dir)?;
            for (name, e) in &entries {
                let p = dir.join(name);
                match e {
                    DEntry::Dir { id: c, .. } => {
                        st.names.insert(*c, (id, name.clone()));
                        stack.push((*c, p));
                    }
                    DEntry::File { id: c, .. } => {
                        st.names.insert(*c, (id, name.clone()));
                        let bytes = fs::read(&p)?;
                        st.files.insert(*c, bytes);
                    }
                    DEntry::Symlink(_) | DEntry::Socket => {}
                }
            }
            st.dirs.insert(id, entries);
        }
        Ok(())
    }

    /// fsync of an open file or directory: make its bytes or entries durable.
    fn sync(&self, fh: u64) -> Result<(), Errno> {
        let mut st = self.st.lock().unwrap();
        let (id, f) = st.handles.get(&fh).ok_or(Errno::EBADF)?;
        let id = *id;
        let f = f.try_clone().map_err(errno)?;
        let m = f.metadata().map_err(errno)?;
        if m.is_dir() {
            let dir = PathBuf::from(format!("/proc/self/fd/{}", fd_of(&f)));
            let entries = Self::list(&mut st, &dir).map_err(errno)?;
            st.dirs.insert(id, entries);
            st.dir_fsyncs += 1;
        } else {
            // The handle may be write-only: read through a new descriptor.
            let f = File::open(format!("/proc/self/fd/{}", fd_of(&f))).map_err(errno)?;
            let mut buf = vec![0u8; m.len() as usize];
            let mut off = 0;
            while off < buf.len() {
                let n = f.read_at(&mut buf[off..], off as u64).map_err(errno)?;
                if n == 0 {
                    buf.truncate(off);
                    break;
                }
                off += n;
            }
            st.files.insert(id, buf);
            st.fsyncs += 1;
        }
        Ok(())
    }

    /// Rewrite the backing directory to the durable image.
    fn revert(&self) -> std::io::Result<()> {
        let st = self.st.lock().unwrap();
        for e in fs::read_dir(&self.backing)? {
            let p = e?.path();
            if fs::symlink_metadata(&p)?.is_dir() {
                fs::remove_dir_all(&p)?;
            } else {
                fs::remove_file(&p)?;
            }
        }
        let mut made: HashMap<u64, PathBuf> = HashMap::new();
        let mut stack = vec![(1u64, self.backing.clone())];
        while let Some((id, dir)) = stack.pop() {
            let Some(entries) = st.dirs.get(&id) else {
                continue; // a directory whose entries never became durable: empty
            };
            for (name, e) in entries {
                let p = dir.join(name);
                match e {
                    DEntry::Symlink(t) => std::os::unix::fs::symlink(t, &p)?,
                    DEntry::Socket => drop(std::os::unix::net::UnixListener::bind(&p)?),
                    DEntry::Dir { id: c, mode } => {
                        if made.contains_key(c) {
                            continue; // a directory has one name
                        }
                        fs::create_dir(&p)?;
                        fs::set_permissions(&p, fs::Permissions::from_mode(*mode))?;
                        made.insert(*c, p.clone());
                        stack.push((*c, p));
                    }
                    DEntry::File { id: c, mode } => {
                        if let Some(first) = made.get(c) {
                            fs::hard_link(first, &p)?;
                            continue;
                        }
                        let bytes = st.files.get(c).map(|b| b.as_slice()).unwrap_or(&[]);
                        fs::write(&p, bytes)?;
                        fs::set_permissions(&p, fs::Permissions::from_mode(*mode))?;
                        made.insert(*c, p);
                    }
                }
            }
        }
        Ok(())
    }
}

fn fd_of(f: &File) -> i32 {
    use std::os::fd::AsRawFd;
    f.as_raw_fd()
}

fn kind(m: &fs::Metadata) -> FileType {
    let t = m.file_type();
    if t.is_dir() {
        FileType::Directory
    } else if t.is_symlink() {
        FileType::Symlink
    } else if t.is_socket() {
        FileType::Socket
    } else if t.is_fifo() {
        FileType::NamedPipe
    } else {
        FileType::RegularFile
    }
}

impl FaultFs {
    /// Serve `backing` (everything in it counts as durable) at `mnt`.
    pub fn mount(backing: &Path, mnt: &Path) -> FaultFs {
        fs::create_dir_all(backing).unwrap();
        fs::create_dir_all(mnt).unwrap();
        let shared = Arc::new(Shared {
            backing: backing.to_path_buf(),
            st: Mutex::new(State::default()),
        });
        shared
            .snapshot()
            .expect("snapshot of the backing directory");
        let mut cfg = fuser::Config::default();
        cfg.mount_options = vec![
            fuser::MountOption::FSName("faultfs".into()),
            fuser::MountOption::DefaultPermissions,
        ];
        cfg.n_threads = Some(2);
        let session = fuser::spawn_mount(ops::Passthrough(shared.clone()), mnt, &cfg)
            .expect("mounting the fault file system");
        FaultFs {
            shared,
            session: Some(session),
            mnt: mnt.to_path_buf(),
            backing: backing.to_path_buf(),
        }
    }

    /// (file fsyncs, directory fsyncs) seen so far.
    pub fn fsyncs(&self) -> (u64, u64) {
        let st = self.shared.st.lock().unwrap();
        (st.fsyncs, st.dir_fsyncs)
    }

    /// The power cut: unmount (every process using the mount must be gone),
    /// and leave in the backing directory only what was durable.
    pub fn cut(mut self) {
        self.unmount();
        self.shared
            .revert()
            .expect("reverting to the durable image");
    }

    fn unmount(&mut self) {
        if let Some(s) = self.session.take() {
            // Detach first, so that a stray user cannot keep the session alive.
            let c = std::ffi::CString::new(self.mnt.as_os_str().as_bytes()).unwrap();
            // SAFETY: a valid C string; the result is not needed.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
            drop(s);
        }
    }
}

impl Drop for FaultFs {
    fn drop(&mut self) {
        self.unmount();
    }
}

pub(crate) fn now_or(t: Option<TimeOrNow>) -> Option<SystemTime> {
    t.map(|t| match t {
        TimeOrNow::Now => SystemTime::now(),
        TimeOrNow::SpecificTime(t) => t,
    })
}
