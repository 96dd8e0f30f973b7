//! Building a commit's tree straight from the journaled changes, with no
//! index and no full backing path.
//!
//! The journal names every backing path that may differ from HEAD
//! ([`Touched`] keeps them as a tree of names, each with its long-name
//! sidecar). The new tree is HEAD's tree with only those paths rebuilt:
//!
//! * a directory on the way to a touched path gets a treebuilder seeded with
//!   HEAD's entries at that level, and only its touched children change;
//! * a touched path is read from the work tree as it is now (a directory
//!   whole, recursively), each file adopted as [`Adopt`] says;
//! * every other subtree is HEAD's own tree object, by id, never looked at.
//!
//! So a commit of k changes reads k files and writes the trees on their
//! paths to the root: O(k · depth), whatever the vault's size. The work tree
//! is reached through directory descriptors (`openat`, `fstatat` and the
//! short `/proc/self/fd/N/NAME` form, see `dirfd.rs`), so no path longer than
//! one name is ever given to the kernel; git paths inside trees have no limit.
//!
//! Durability: every work-tree file a commit records, and every directory on
//! the way to a change (whose entries were created, removed or renamed), is
//! fsync'd here, before the commit's objects and long before the version
//! record names it: after a power cut the work tree holds what the record's
//! commit holds, so `fsck` is clean without `--restore`. One `syncfs` first
//! writes everything back in one go where it works, which leaves each fsync
//! next to nothing to do; nothing depends on it.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use git2::{ObjectType, Oid, Repository, Tree, TreeBuilder, TreeEntry};

use super::{sync_objects, write_blob, Adopt};
use crate::error::{Error, Result};
use crate::format::names::LONG_SUFFIX;
use crate::format::tags::{Collector, MIN_BLOB_LEN};
use crate::store::dirfd::DirFd;
use crate::store::tags::TagStore;

/// Git's file modes.
const MODE_TREE: i32 = 0o040000;
const MODE_FILE: i32 = 0o100644;
const MODE_EXEC: i32 = 0o100755;
const MODE_LINK: i32 = 0o120000;
/// Open descriptors kept for fsync before they are synced in one batch.
const SYNC_BATCH: usize = 256;
/// Descriptors a batch always leaves free under the process's limit, for
/// what a commit opens beside it (a loose object's temporary file, the
/// directories on the way, libgit2's packs): the mount daemon may run a
/// commit with most of its descriptors taken by open files (it keeps 128 in
/// reserve for this, `fs::core::FD_RESERVE`), so the batch is synced early
/// rather than grown into the limit.
const FD_SPARE: u64 = 64;

/// The touched backing paths as a tree of names: a `whole` node is read
/// from the work tree entirely; the others only lead to touched ones.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Touched {
    whole: bool,
    children: BTreeMap<String, Touched>,
}

impl Touched {
    /// Every path below `rel` (relative to the vault dir), as for a first
    /// commit.
    pub fn everything_under(rel: &str) -> Touched {
        let mut t = Touched::default();
        t.add(rel);
        t
    }

    /// The paths the journal touched (relative to the vault dir), each with
    /// its long-name sidecar; only those under `tracked` count.
    pub fn from_paths<'a>(tracked: &str, paths: impl IntoIterator<Item = &'a str>) -> Touched {
        let mut t = Touched::default();
        let prefix = format!("{tracked}/");
        for p in paths {
            if p == tracked {
                t.add(p);
            } else if p.starts_with(&prefix) && !p.ends_with('/') {
                t.add(p);
                t.add(&format!("{p}{LONG_SUFFIX}"));
            }
        }
        t
    }

    /// Mark `rel` (and so everything below it) as touched.
    pub fn add(&mut self, rel: &str) {
        let mut node = self;
        for part in rel.split('/') {
            if node.whole {
                return;
            }
            node = node.children.entry(part.to_string()).or_default();
        }
        node.whole = true;
        node.children.clear();
    }

    /// Nothing touched.
    pub fn is_empty(&self) -> bool {
        !self.whole && self.children.is_empty()
    }
}

/// What one build did (for tests and measurements).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Trees written that HEAD did not have at the same place.
    pub trees: usize,
    /// Work-tree files read into blobs.
    pub files: usize,
    /// Work-tree files and directories fsync'd.
    pub synced: usize,
}

/// fsync of work-tree files and directories, in parallel batches of open
/// descriptors (see the module comment).
#[derive(Default)]
pub struct SyncBatch {
    pending: Vec<(File, String)>,
    accelerated: bool,
    done: usize,
}

impl SyncBatch {
    /// The directory `d` (at `rel`, for errors).
    pub fn push_dir(&mut self, d: &DirFd, rel: &str) -> Result<()> {
        let f = self
            .with_room(|| File::open(d.path()))?
            .map_err(|e| Error::io(rel, e))?;
        self.push(f, rel)
    }

    /// An open file (at `rel`, for errors).
    pub fn push(&mut self, f: File, rel: &str) -> Result<()> {
        let crowded = near_fd_limit(&f);
        self.pending.push((f, rel.to_string()));
        if self.pending.len() >= SYNC_BATCH || crowded {
            self.flush()?;
        }
        Ok(())
    }

    /// Run `op`, which opens descriptors; when it finds none left (EMFILE),
    /// sync the batch (closing what it holds) and run it once more.
    pub fn with_room<T>(&mut self, mut op: impl FnMut() -> io::Result<T>) -> Result<io::Result<T>> {
        match op() {
            Err(e) if e.raw_os_error() == Some(libc::EMFILE) && !self.pending.is_empty() => {
                self.flush()?;
                Ok(op())
            }
            res => Ok(res),
        }
    }

    /// fsync everything pushed so far.
    pub fn flush(&mut self) -> Result<()> {
        use rayon::prelude::*;
        let Some((first, _)) = self.pending.first() else {
            return Ok(());
        };
        if !self.accelerated {
            self.accelerated = true;
            // Only a speed-up (see the module comment): its result changes
            // nothing, the fsyncs below are what count.
            // SAFETY: syncfs(2) on a descriptor we own.
            let _ = unsafe { libc::syncfs(std::os::fd::AsRawFd::as_raw_fd(first)) };
        }
        self.pending
            .par_iter()
            .try_for_each(|(f, rel)| f.sync_all().map_err(|e| Error::io(rel, e)))?;
        self.done += self.pending.len();
        self.pending.clear();
        Ok(())
    }
}

/// Builds one commit's tree (see the module comment).
pub struct Builder<'a> {
    repo: &'a Repository,
    odb: git2::Odb<'a>,
    objects: PathBuf,
    adopt: &'a dyn Fn(&str) -> Adopt,
    tags: Option<&'a TagStore>,
    buf: Vec<u8>,
    written: Vec<PathBuf>,
    sync: SyncBatch,
    stats: Stats,
}

fn git_err(what: &str, rel: &str, e: git2::Error) -> Error {
    Error::History(format!("{what} {rel}: {}", e.message()))
}

/// "dir/name", or "name" at the top.
fn join(rel: &str, name: &str) -> String {
    if rel.is_empty() {
        name.to_string()
    } else {
        format!("{rel}/{name}")
    }
}

/// The names of a directory's entries (a name that is not UTF-8 is never
/// one pkfs writes, and is not adopted).
fn names_of(dir: &DirFd, rel: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let rd = fs::read_dir(dir.path()).map_err(|e| Error::io(rel, e))?;
    for e in rd {
        let e = e.map_err(|e| Error::io(rel, e))?;
        if let Some(n) = e.file_name().to_str() {
            out.push(n.to_string());
        }
    }
    Ok(out)
}

/// Is `f` one of the last [`FD_SPARE`] descriptors the process may open?
/// Descriptors are handed out lowest first, so its number tells how many
/// are in use at least.
fn near_fd_limit(f: &File) -> bool {
    use std::os::fd::AsRawFd;
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return false;
    }
    let fd = f.as_raw_fd().max(0) as u64;
    fd.saturating_add(FD_SPARE) >= lim.rlim_cur
}

/// The status of entry `name` (a symlink itself), `None` when it is gone.
fn lstat(dir: &DirFd, name: &str, rel: &str) -> Result<Option<fs::Metadata>> {
    match fs::symlink_metadata(dir.at(name)) {
        Ok(m) => Ok(Some(m)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(rel, e)),
    }
}

impl<'a> Builder<'a> {
    pub fn new(
        repo: &'a Repository,
        adopt: &'a dyn Fn(&str) -> Adopt,
        tags: Option<&'a TagStore>,
    ) -> Result<Builder<'a>> {
        let odb = repo
            .odb()
            .map_err(|e| Error::History(format!("opening the object database: {e}")))?;
        Ok(Builder {
            repo,
            odb,
            objects: repo.path().join("objects"),
            adopt,
            tags,
            buf: vec![0u8; 1 << 20],
            written: Vec::new(),
            sync: SyncBatch::default(),
            stats: Stats::default(),
        })
    }

    /// The root tree of the next commit: `head`'s with the `touched` paths
    /// read again from the work tree `root` (the vault dir). Every file and
    /// directory it recorded from the work tree, and every object it wrote,
    /// is durable when it returns.
    pub fn build(
        mut self,
        root: &DirFd,
        head: Option<&Tree<'_>>,
        touched: &Touched,
    ) -> Result<(Oid, Stats)> {
        let id = match self.level(Some(root), "", head, touched)? {
            Some(id) => id,
            None => {
                let tb = self.treebuilder(None, "")?;
                let id = tb
                    .write()
                    .map_err(|e| git_err("writing", "the empty tree", e))?;
                let hex = id.to_string();
                let loose = self.objects.join(&hex[..2]).join(&hex[2..]);
                if loose.is_file() {
                    self.written.push(loose);
                }
                id
            }
        };
        self.sync.flush()?;
        sync_objects(&self.objects, &self.written)?;
        self.stats.synced = self.sync.done;
        Ok((id, self.stats))
    }

    fn treebuilder(&self, head: Option<&Tree<'_>>, rel: &str) -> Result<TreeBuilder<'a>> {
        self.repo
            .treebuilder(head)
            .map_err(|e| git_err("building the tree of", rel, e))
    }

    /// The directory at `rel` (`dir`: the work tree's, if it is a directory)
    /// whose HEAD tree is `head`, with the paths of `node` rebuilt. `None`:
    /// it holds no file (git keeps no empty tree).
    fn level(
        &mut self,
        dir: Option<&DirFd>,
        rel: &str,
        head: Option<&Tree<'_>>,
        node: &Touched,
    ) -> Result<Option<Oid>> {
        if node.whole {
            return match dir {
                Some(d) => self.full(d, rel, head),
                None => Ok(None),
            };
        }
        if let Some(d) = dir {
            self.sync_dir(d, rel)?;
        }
        let mut tb = self.treebuilder(head, rel)?;
        for (name, child) in &node.children {
            let crel = join(rel, name);
            let he = head.and_then(|t| t.get_name(name));
            let new = if child.whole {
                self.entry(dir, name, &crel, he.as_ref())?
            } else {
                let sub = match dir {
                    Some(d) if lstat(d, name, &crel)?.is_some_and(|m| m.is_dir()) => {
                        Some(d.child(name).map_err(|e| Error::io(&crel, e))?)
                    }
                    _ => None,
                };
                let head_sub = self.subtree(he.as_ref(), &crel)?;
                if sub.is_none() && head_sub.is_none() {
                    // Neither side has a directory here: nothing below it
                    // can be recorded, and what HEAD has at it stays.
                    continue;
                }
                self.level(sub.as_ref(), &crel, head_sub.as_ref(), child)?
                    .map(|id| (id, MODE_TREE))
            };
            match new {
                Some((id, mode)) => {
                    tb.insert(name, id, mode)
                        .map_err(|e| git_err("recording", &crel, e))?;
                }
                None => {
                    if tb.get(name).ok().flatten().is_some() {
                        tb.remove(name).map_err(|e| git_err("removing", &crel, e))?;
                    }
                }
            }
        }
        self.write(tb, rel, head)
    }

    /// The directory `dir` at `rel`, read whole from the work tree.
    fn full(&mut self, dir: &DirFd, rel: &str, head: Option<&Tree<'_>>) -> Result<Option<Oid>> {
        self.sync_dir(dir, rel)?;
        let mut tb = self.treebuilder(None, rel)?;
        for name in names_of(dir, rel)? {
            let crel = join(rel, &name);
            let he = head.and_then(|t| t.get_name(&name));
            if let Some((id, mode)) = self.entry(Some(dir), &name, &crel, he.as_ref())? {
                tb.insert(&name, id, mode)
                    .map_err(|e| git_err("recording", &crel, e))?;
            }
        }
        self.write(tb, rel, head)
    }

    /// The entry `name` of `dir` at `rel` as the work tree has it now (HEAD
    /// has `he` there): `None` when it is gone or cannot be versioned (a
    /// FIFO, a socket, a device node, an empty directory).
    fn entry(
        &mut self,
        dir: Option<&DirFd>,
        name: &str,
        rel: &str,
        he: Option<&TreeEntry<'_>>,
    ) -> Result<Option<(Oid, i32)>> {
        let Some(d) = dir else {
            return Ok(None);
        };
        let Some(m) = lstat(d, name, rel)? else {
            return Ok(None);
        };
        let ft = m.file_type();
        if ft.is_dir() {
            let sub = d.child(name).map_err(|e| Error::io(rel, e))?;
            let head_sub = self.subtree(he, rel)?;
            return Ok(self
                .full(&sub, rel, head_sub.as_ref())?
                .map(|id| (id, MODE_TREE)));
        }
        if !(ft.is_file() || ft.is_symlink()) {
            return Ok(None);
        }
        let kept = || he.map(|e| (e.id(), e.filemode()));
        let take = (self.adopt)(rel);
        if take == Adopt::No {
            return Ok(kept());
        }
        let (id, mode) = if ft.is_symlink() {
            self.link(d, name, rel)?
        } else {
            self.file(d, name, rel, &m)?
        };
        if let Adopt::IfBlob(want) = take {
            if want != Some(id) {
                tracing::error!(
                    "{rel} was moved or chmodded through pkfs but is not the committed \
                     file it came from; left out of the commit (run `pkfs fsck`)"
                );
                return Ok(kept());
            }
        }
        Ok(Some((id, mode)))
    }

    fn link(&mut self, d: &DirFd, name: &str, rel: &str) -> Result<(Oid, i32)> {
        let target = d.readlink(name).map_err(|e| Error::io(rel, e))?;
        let id = self
            .repo
            .blob(target.as_os_str().as_bytes())
            .map_err(|e| git_err("storing the symlink", rel, e))?;
        // libgit2 wrote it without fsync: made durable with the blobs.
        let hex = id.to_string();
        let loose = self.objects.join(&hex[..2]).join(&hex[2..]);
        if loose.is_file() {
            self.written.push(loose);
        }
        Ok((id, MODE_LINK))
    }

    fn file(&mut self, d: &DirFd, name: &str, rel: &str, m: &fs::Metadata) -> Result<(Oid, i32)> {
        let file = self
            .sync
            .with_room(|| d.open_file(name, true))?
            .map_err(|e| Error::io(rel, e))?;
        // A big blob's page tags are gathered on the way (see `tags.rs`).
        let mut collector = self
            .tags
            .filter(|_| m.len() >= MIN_BLOB_LEN)
            .and_then(|_| Collector::new(m.len()));
        let (odb, objects, buf, written) =
            (&self.odb, &self.objects, &mut self.buf, &mut self.written);
        let id = self
            .sync
            .with_room(|| {
                // A retry starts the collector again (it saw a partial read).
                if let Some(c) = collector.as_mut() {
                    if let Some(fresh) = Collector::new(m.len()) {
                        *c = fresh;
                    }
                }
                write_blob(
                    odb,
                    objects,
                    &file,
                    m.len(),
                    buf,
                    collector.as_mut(),
                    written,
                )
            })?
            .map_err(|e| Error::io(rel, e))?;
        if let (Some(store), Some(c)) = (self.tags, collector) {
            if !store.has(id) {
                if let Some(list) = c.finish(super::super::seal::raw_id(id)) {
                    store.save(&list);
                }
            }
        }
        self.stats.files += 1;
        self.sync.push(file, rel)?;
        let mode = if m.mode() & 0o100 != 0 {
            MODE_EXEC
        } else {
            MODE_FILE
        };
        Ok((id, mode))
    }

    /// HEAD's tree at an entry, if it is one.
    fn subtree(&self, he: Option<&TreeEntry<'_>>, rel: &str) -> Result<Option<Tree<'a>>> {
        match he {
            Some(e) if e.kind() == Some(ObjectType::Tree) => self
                .repo
                .find_tree(e.id())
                .map(Some)
                .map_err(|e| git_err("reading HEAD's tree of", rel, e)),
            _ => Ok(None),
        }
    }

    fn sync_dir(&mut self, d: &DirFd, rel: &str) -> Result<()> {
        self.sync.push_dir(d, rel)
    }

    fn write(
        &mut self,
        tb: TreeBuilder<'_>,
        rel: &str,
        head: Option<&Tree<'_>>,
    ) -> Result<Option<Oid>> {
        if tb.is_empty() {
            return Ok(None);
        }
        let id = tb
            .write()
            .map_err(|e| git_err("writing the tree of", rel, e))?;
        if head.map(|t| t.id()) != Some(id) {
            self.stats.trees += 1;
            // libgit2 wrote it without fsync: made durable with the blobs.
            let hex = id.to_string();
            let loose = self.objects.join(&hex[..2]).join(&hex[2..]);
            if loose.is_file() {
                self.written.push(loose);
            }
        }
        Ok(Some(id))
    }
}
