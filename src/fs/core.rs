//! Shared state of the mount and the mapping from inodes to backing entries.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::os::unix::fs::FileTypeExt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{Errno, FileAttr, FileType, INodeNo, Notifier};
use lru::LruCache;
use parking_lot::{Mutex, RwLock};

use super::cache::PageCache;
use super::content::OpenFile;
use super::errno::{from_error, FsResult, IoErrno};
use super::inodes::{Inodes, ROOT_INO};
use super::vaults::VaultFs;
use crate::format::names::{self, DirIv, DiskName};
use crate::format::offsets;
use crate::store::atomic::write_atomic;
use crate::store::changes::MoveKind;
use crate::store::dirfd::DirFd;
use crate::store::journal::MAX_BACKING_PATH;
use crate::store::seal::Vouched;
use crate::store::stat::Stat;
use crate::vault::Node;

/// Descriptors an open through the mount may not take (see
/// [`FsCore::within_fd_budget`]).
pub const FD_RESERVE: u64 = 128;

/// Raise the soft limit on open descriptors to the hard one (the daemon holds
/// one per open file, plus cached directories). Best effort.
pub fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit on one rlimit we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// Validated mount settings.
#[derive(Debug, Clone)]
pub struct MountConfig {
    pub ro: bool,
    pub cache_bytes: u64,
    pub commit_delay: Duration,
    pub ttl: Duration,
}

pub struct DirHandle {
    pub fd: DirFd,
    pub iv: DirIv,
}

/// An open file handle: which inode, and whether writes append.
#[derive(Clone, Copy)]
pub struct Handle {
    pub ino: u64,
    pub append: bool,
    pub write: bool,
}

pub struct FsCore {
    pub node: Arc<Mutex<Node>>,
    pub cfg: MountConfig,
    pub inodes: RwLock<Inodes>,
    pub vaults: RwLock<Vec<Arc<VaultFs>>>,
    dirs: Mutex<LruCache<u64, Arc<DirHandle>>>,
    pub open: Mutex<HashMap<u64, Arc<OpenFile>>>,
    /// Bumped (under the `open` lock) whenever the daemon may have changed a
    /// file that has no open state: a state leaving `open`, a truncation of an
    /// unopened file, a resync. One counter per `ino % 64`; a first open that
    /// sees its counter move between its check and [`FsCore::open_state`]
    /// does not trust the bytes its check read.
    pub(super) changed: [AtomicU64; 64],
    pub handles: Mutex<HashMap<u64, Handle>>,
    pub(super) dir_lists: Mutex<HashMap<u64, DirList>>,
    pub(super) next_fh: AtomicU64,
    pub cache: PageCache,
    pub notifier: Mutex<Option<Notifier>>,
    /// One control command at a time (see [`FsCore::exclusive`]).
    pub(super) control: Mutex<()>,
    pub started: SystemTime,
    pub uid: u32,
    pub gid: u32,
    /// The mount root's permission bits (see `Node::mount_root_mode`).
    pub root_mode: AtomicU32,
    /// Every vault's `.versions` tree.
    pub versions: super::versions::VersionsFs,
}

/// A directory listing taken at opendir, served by offset.
pub type DirList = Arc<Vec<super::ops_dir::Listed>>;

/// Where an entry lives: its parent's backing directory and its disk name.
pub struct Entry {
    /// The directory inode the entry is in.
    pub parent: u64,
    pub vault: Arc<VaultFs>,
    pub dir: Arc<DirHandle>,
    pub disk: DiskName,
}

impl Entry {
    pub fn name(&self) -> &str {
        self.disk.entry()
    }

    pub fn write_sidecar(&self) -> FsResult<()> {
        if let DiskName::Long { entry, encoded } = &self.disk {
            write_atomic(
                &self.dir.fd.at(&names::sidecar_of(entry)),
                encoded.as_bytes(),
            )
            .errno()?;
        }
        Ok(())
    }

    pub fn remove_sidecar(&self) {
        if let DiskName::Long { entry, .. } = &self.disk {
            let _ = self.dir.fd.unlink(&names::sidecar_of(entry));
        }
    }
}

impl FsCore {
    pub fn new(node: Arc<Mutex<Node>>, cfg: MountConfig) -> FsCore {
        let root_mode = AtomicU32::new(node.lock().mount_root_mode());
        FsCore {
            root_mode,
            node,
            cache: PageCache::new(cfg.cache_bytes),
            cfg,
            inodes: RwLock::new(Inodes::default()),
            vaults: RwLock::new(Vec::new()),
            dirs: Mutex::new(LruCache::new(
                NonZeroUsize::new(4096).unwrap_or(NonZeroUsize::MIN),
            )),
            open: Mutex::new(HashMap::new()),
            changed: std::array::from_fn(|_| AtomicU64::new(0)),
            handles: Mutex::new(HashMap::new()),
            dir_lists: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            notifier: Mutex::new(None),
            control: Mutex::new(()),
            started: SystemTime::now(),
            // SAFETY: geteuid/getegid cannot fail.
            uid: unsafe { libc::geteuid() },
            gid: unsafe { libc::getegid() },
            versions: Default::default(),
        }
    }

    /// An open file's backing descriptor `f` must leave [`FD_RESERVE`]
    /// descriptors free under the process's limit, for the control socket,
    /// commits and listings: otherwise it is closed and the opener gets
    /// EMFILE, and nobody else does. Descriptors are handed out lowest
    /// first, so `f`'s number tells how many are in use. The cached
    /// directory descriptors are dropped then too, to free what they hold.
    pub(super) fn within_fd_budget(&self, f: &std::fs::File) -> FsResult<()> {
        use std::os::fd::AsRawFd;
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes one rlimit we own.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
            return Ok(());
        }
        let fd = f.as_raw_fd().max(0) as u64;
        if fd.saturating_add(FD_RESERVE) >= lim.rlim_cur {
            self.forget_dirs();
            return Err(Errno::EMFILE);
        }
        Ok(())
    }

    /// The change counter of `ino` (see [`FsCore::changed`]).
    pub(super) fn changed_of(&self, ino: u64) -> &AtomicU64 {
        &self.changed[(ino % 64) as usize]
    }

    pub fn new_fh(&self, h: Handle) -> u64 {
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        self.handles.lock().insert(fh, h);
        fh
    }

    pub fn dir_listing(&self, fh: u64) -> Option<DirList> {
        self.dir_lists.lock().get(&fh).cloned()
    }

    pub fn releasedir(&self, fh: u64) {
        self.dir_lists.lock().remove(&fh);
    }

    /// The open state of `ino`, if it is open (the map lock is not kept).
    pub fn open_file(&self, ino: u64) -> Option<Arc<OpenFile>> {
        let of = self.open.lock().get(&ino).cloned();
        of
    }

    pub fn vault_of(&self, ino: u64) -> FsResult<Arc<VaultFs>> {
        self.inodes
            .read()
            .get(ino)
            .ok_or(Errno::ENOENT)?
            .vault
            .clone()
            .ok_or(Errno::EPERM)
    }

    pub fn vault_by_name(&self, name: &[u8]) -> Option<Arc<VaultFs>> {
        self.vaults
            .read()
            .iter()
            .find(|v| v.name().as_bytes() == name)
            .cloned()
    }

    pub fn forget_dirs(&self) {
        self.dirs.lock().clear();
    }

    /// The backing directory of directory inode `ino`.
    pub fn dir(&self, ino: u64) -> FsResult<Arc<DirHandle>> {
        let cached = self.dirs.lock().get(&ino).cloned();
        if let Some(d) = cached {
            return Ok(d);
        }
        let (vault, chain) = {
            let inodes = self.inodes.read();
            let i = inodes.get(ino).ok_or(Errno::ENOENT)?;
            let vault = i.vault.clone().ok_or(Errno::EPERM)?;
            (vault, inodes.chain(ino).ok_or(Errno::ENOENT)?)
        };
        let root = self.dirs.lock().get(&vault.root_ino).cloned();
        let mut rel = String::from("contents");
        let mut cur = match root {
            Some(d) => d,
            None => {
                let fd = DirFd::open(&vault.contents).errno()?;
                let iv = fd.read_diriv().errno()?;
                self.verify_diriv(&vault, &rel, &iv)?;
                let h = Arc::new(DirHandle { fd, iv });
                self.dirs.lock().put(vault.root_ino, h.clone());
                h
            }
        };
        for (step, name) in chain {
            let disk = DiskName::from_encoded(vault.names.encrypt(&cur.iv, &name));
            rel.push('/');
            rel.push_str(disk.entry());
            let cached = self.dirs.lock().get(&step).cloned();
            if let Some(d) = cached {
                cur = d;
                continue;
            }
            let fd = cur.fd.child(disk.entry()).errno()?;
            let iv = fd.read_diriv().map_err(|_| Errno::EIO)?;
            self.verify_diriv(&vault, &rel, &iv)?;
            let h = Arc::new(DirHandle { fd, iv });
            self.dirs.lock().put(step, h.clone());
            cur = h;
        }
        Ok(cur)
    }

    /// A directory's IV must be HEAD's too (a copied IV would make names of two
    /// directories comparable).
    fn verify_diriv(&self, vault: &VaultFs, dir_rel: &str, iv: &DirIv) -> FsResult<()> {
        let rel = format!("{dir_rel}/{}", names::DIRIV_FILE);
        let _gate = vault.gate.read_recursive();
        let seal = vault.seal.read().clone();
        let live = |r: &str| Some(vault.history.lock().origin(r));
        seal.verify_rel_bytes(&rel, iv, live).map_err(|err| {
            tracing::error!("vault {}: {err}", vault.id);
            Errno::EIO
        })
    }

    /// The entry `name` in directory inode `parent`.
    pub fn child_entry(&self, parent: u64, name: &[u8]) -> FsResult<Entry> {
        names::validate(name).map_err(|_| {
            if name.len() > names::NAME_MAX {
                Errno::ENAMETOOLONG
            } else {
                Errno::EINVAL
            }
        })?;
        let vault = self.vault_of(parent)?;
        let dir = self.dir(parent)?;
        self.may_search(&dir)?;
        let disk = DiskName::from_encoded(vault.names.encrypt(&dir.iv, name));
        Ok(Entry {
            parent,
            vault,
            dir,
            disk,
        })
    }

    /// Journal entry `e` before changing it, so that the next commit adopts
    /// the change and a crash before that commit does not look like tampering.
    /// A file with other hard links journals the whole vault (its other names
    /// change with it and may not be known here).
    pub fn mark(&self, e: &Entry) -> FsResult<()> {
        self.mark_as(e, self.linked(e))
    }

    /// [`FsCore::mark`] an entry whose backing metadata `m` was just read.
    pub fn mark_stated(&self, e: &Entry, m: &Stat) -> FsResult<()> {
        self.mark_as(e, has_other_links(m))
    }

    fn mark_as(&self, e: &Entry, linked: bool) -> FsResult<()> {
        let rel = if linked {
            "contents".to_string()
        } else {
            self.backing_rel(e)?
        };
        e.vault.history.lock().mark(&rel).map_err(journal_errno(e))
    }

    /// [`FsCore::mark`] a new entry `e`, about to be made; ENAMETOOLONG
    /// when its backing path is longer than the history holds
    /// ([`MAX_BACKING_PATH`]).
    pub fn mark_new(&self, e: &Entry) -> FsResult<()> {
        let rel = self.backing_rel(e)?;
        if rel.len() > MAX_BACKING_PATH {
            return Err(Errno::ENAMETOOLONG);
        }
        e.vault.history.lock().mark(&rel).map_err(journal_errno(e))
    }

    /// Journal, before it happens, that `src` gets to `dst` unchanged:
    /// renamed, exchanged or hard-linked (see `store/changes.rs`). Its content
    /// stays checked against HEAD's blob at the old path, so a blob swapped
    /// at rest is not adopted by a rename. ENAMETOOLONG when `dst`'s backing
    /// path is longer than the history holds ([`MAX_BACKING_PATH`]).
    pub fn mark_move(&self, src: &Entry, dst: &Entry, how: MoveKind) -> FsResult<()> {
        let from = self.backing_rel(src)?;
        let to = self.backing_rel(dst)?;
        if to.len() > MAX_BACKING_PATH || from.len() > MAX_BACKING_PATH {
            return Err(Errno::ENAMETOOLONG);
        }
        let history = src.vault.history.lock();
        history
            .mark_move(&from, &to, how)
            .map_err(journal_errno(src))
    }

    /// Journal a change of `e`'s mode only: its content must stay HEAD's. A
    /// file with other hard links changes the mode of its other names too.
    pub fn mark_mode(&self, e: &Entry) -> FsResult<()> {
        if self.linked(e) {
            return self.mark(e);
        }
        let rel = self.backing_rel(e)?;
        let history = e.vault.history.lock();
        history
            .mark_move(&rel, &rel, MoveKind::Rename)
            .map_err(journal_errno(e))
    }

    /// Is `e` a file with other hard links?
    fn linked(&self, e: &Entry) -> bool {
        e.dir.fd.stat(e.name()).is_ok_and(|m| has_other_links(&m))
    }

    /// Register the entry `name` of `parent`, whose backing metadata is `m`,
    /// as looked up once more (LOOKUP, READDIRPLUS); its attributes.
    pub fn register(&self, vault: &Arc<VaultFs>, parent: u64, name: &[u8], m: &Stat) -> FileAttr {
        let backing = (m.dev(), m.ino());
        let ino = self
            .inodes
            .write()
            .found(vault, parent, name, file_type(m), backing);
        self.attr(ino, m)
    }

    /// The backing path of `e` relative to the vault directory (`contents/…`),
    /// built from the names (no path lookup, so it works past PATH_MAX).
    pub fn backing_rel(&self, e: &Entry) -> FsResult<String> {
        let chain = if e.parent == e.vault.root_ino {
            Vec::new()
        } else {
            self.inodes.read().chain(e.parent).ok_or(Errno::ENOENT)?
        };
        let mut rel = String::from("contents");
        let mut at = e.vault.root_ino;
        for (step, name) in chain {
            let d = self.dir(at)?;
            let disk = DiskName::from_encoded(e.vault.names.encrypt(&d.iv, &name));
            rel.push('/');
            rel.push_str(disk.entry());
            at = step;
        }
        rel.push('/');
        rel.push_str(e.disk.entry());
        Ok(rel)
    }

    /// [`FsCore::mark`] the entry of inode `ino`.
    pub fn mark_ino(&self, ino: u64) -> FsResult<()> {
        self.mark(&self.entry_of(ino)?)
    }

    /// Check that the backing file of `e` is what HEAD committed there (unless
    /// the journal says it changed since): a swapped, rolled-back or planted blob
    /// is EIO, never someone else's plaintext. Returns the checked bytes of a
    /// file of at most `keep_max` bytes that had to be read; for a `reader`,
    /// possibly the tag list a big file is checked against page by page
    /// instead (see `content_tags.rs`).
    pub fn verify(
        &self,
        e: &Entry,
        file: &std::fs::File,
        keep_max: u64,
        reader: bool,
    ) -> FsResult<Vouched> {
        let rel = self.backing_rel(e)?;
        // The seal and the journal must be of one HEAD: no commit in between
        // (recursive: the caller may hold the gate already).
        let _gate = e.vault.gate.read_recursive();
        let seal = e.vault.seal.read().clone();
        let live = |rel: &str| Some(e.vault.history.lock().origin(rel));
        let checked = if reader {
            seal.verify_for_reader(&rel, file, live, keep_max)
        } else {
            seal.verify_file_keeping(&rel, file, live, keep_max)
                .map(Vouched::Whole)
        };
        checked.map_err(|err| {
            tracing::error!("vault {}: {err}", e.vault.id);
            match err {
                crate::error::Error::Corrupt { .. } => Errno::EIO,
                err => from_error(&err),
            }
        })
    }

    /// The entry of inode `ino` (not a root).
    pub fn entry_of(&self, ino: u64) -> FsResult<Entry> {
        let (parent, name, aliases) = {
            let inodes = self.inodes.read();
            let i = inodes.get(ino).ok_or(Errno::ENOENT)?;
            if i.parent == ROOT_INO || ino == ROOT_INO {
                return Err(Errno::EPERM);
            }
            (i.parent, i.name.clone(), i.aliases.clone())
        };
        let main = self.child_entry(parent, &name);
        if aliases.is_empty() || matches!(&main, Ok(e) if e.dir.fd.stat(e.name()).is_ok()) {
            return main;
        }
        // A hard-linked file whose main name is gone: any other link will do.
        for (p, n) in aliases {
            if let Ok(e) = self.child_entry(p, &n) {
                if e.dir.fd.stat(e.name()).is_ok() {
                    return Ok(e);
                }
            }
        }
        main
    }

    /// Attributes of a backing entry as the mount shows them.
    pub fn attr(&self, ino: u64, m: &Stat) -> FileAttr {
        let kind = file_type(m);
        let mut size = match kind {
            FileType::RegularFile => offsets::plain_len(m.len()).unwrap_or(0),
            FileType::Directory => 4096,
            // base64url(iv | tag | target): the plaintext target's length.
            FileType::Symlink => (m.len() * 3 / 4).saturating_sub(28),
            _ => m.len(),
        };
        let mut mtime = ts(m.mtime(), m.mtime_nsec());
        let mut ctime = ts(m.ctime(), m.ctime_nsec());
        if let Some(of) = self.open_file(ino) {
            let st = of.state.read();
            size = st.size;
            if let Some(t) = st.pending_mtime {
                mtime = t;
                ctime = ctime.max(t);
            }
        }
        FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: ts(m.atime(), m.atime_nsec()),
            mtime,
            ctime,
            crtime: ctime,
            kind,
            perm: (m.mode() & 0o7777) as u16,
            nlink: m.nlink() as u32,
            uid: m.uid(),
            gid: m.gid(),
            rdev: m.rdev() as u32,
            blksize: 4096,
            flags: 0,
        }
    }

    /// Attributes of the mount root.
    pub fn root_attr(&self) -> FileAttr {
        let n = self.vaults.read().len() as u32;
        FileAttr {
            ino: INodeNo(ROOT_INO),
            size: 4096,
            blocks: 8,
            atime: self.started,
            mtime: self.started,
            ctime: self.started,
            crtime: self.started,
            kind: FileType::Directory,
            perm: self.root_mode.load(Ordering::Relaxed) as u16,
            nlink: 2 + n,
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        }
    }
}

/// A regular file with other hard links.
fn has_other_links(m: &Stat) -> bool {
    m.is_file() && m.nlink() > 1
}

pub fn file_type(m: &Stat) -> FileType {
    match m.format() {
        libc::S_IFDIR => FileType::Directory,
        libc::S_IFLNK => FileType::Symlink,
        libc::S_IFIFO => FileType::NamedPipe,
        libc::S_IFCHR => FileType::CharDevice,
        libc::S_IFBLK => FileType::BlockDevice,
        libc::S_IFSOCK => FileType::Socket,
        _ => FileType::RegularFile,
    }
}

/// The FUSE type of a backing entry's type.
pub fn kind_of(t: std::fs::FileType) -> FileType {
    if t.is_dir() {
        FileType::Directory
    } else if t.is_symlink() {
        FileType::Symlink
    } else if t.is_fifo() {
        FileType::NamedPipe
    } else if t.is_char_device() {
        FileType::CharDevice
    } else if t.is_block_device() {
        FileType::BlockDevice
    } else if t.is_socket() {
        FileType::Socket
    } else {
        FileType::RegularFile
    }
}

fn ts(sec: i64, nsec: i64) -> SystemTime {
    if sec >= 0 {
        UNIX_EPOCH + Duration::new(sec as u64, nsec as u32)
    } else {
        UNIX_EPOCH - Duration::from_secs(sec.unsigned_abs()) + Duration::from_nanos(nsec as u64)
    }
}

/// The errno of a failed journal write, logged once.
fn journal_errno(e: &Entry) -> impl Fn(crate::error::Error) -> Errno + '_ {
    move |err| {
        tracing::error!("vault {}: writing the change journal: {err}", e.vault.id);
        from_error(&err)
    }
}
