//! Lookups, attributes, listings and reads of version entries. Errors of the
//! history (a tree or blob that does not decrypt or authenticate) are EIO and
//! logged; a name a version does not have is ENOENT.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use fuser::{Errno, FileAttr, FileType, INodeNo};
use git2::Oid;

use super::{by_time, NewNode, Node, Repo, What, VERSIONS_NAME, VERSION_TTL};
use crate::fs::core::FsCore;
use crate::fs::errno::{from_error, FsResult};
use crate::fs::vaults::VaultFs;
use crate::store::history::versions::{VChild, SHORT_ID};
use crate::store::Kind;

const BY_TIME: &[u8] = b"by-time";
const DISCARDED: &[u8] = b"discarded";
const LATEST: &[u8] = b"latest";

/// How a listed entry becomes a node, when the kernel takes it.
#[derive(Clone)]
pub(in crate::fs) enum Make {
    Fixed(What),
    Commit(Oid, i64),
    Child(VChild),
}

/// One entry of a version listing, registered only when sent.
pub(in crate::fs) struct VListed {
    pub name: Vec<u8>,
    pub kind: FileType,
    pub make: Option<Make>,
    /// "." and "..": the inode shown.
    pub ino: u64,
    /// How long the kernel may keep it.
    pub ttl: Duration,
}

/// What a new node takes from the directory it is found in.
struct Parent {
    vault: Arc<VaultFs>,
    time: i64,
    commit: Option<Oid>,
}

impl From<&Node> for Parent {
    fn from(n: &Node) -> Parent {
        Parent {
            vault: n.vault.clone(),
            time: n.time,
            commit: n.commit,
        }
    }
}

/// A history error as errno: logged, and EIO unless it says what else.
fn fail(vault: &VaultFs, e: crate::Error) -> Errno {
    tracing::error!("vault {}: reading a version: {e}", vault.id);
    match from_error(&e) {
        Errno::ENOENT => Errno::EIO,
        x => x,
    }
}

fn short(id: &Oid) -> Vec<u8> {
    let s = id.to_string();
    s.get(..SHORT_ID).unwrap_or(&s).as_bytes().to_vec()
}

impl FsCore {
    fn vnode(&self, ino: u64) -> FsResult<Node> {
        self.versions
            .table
            .read()
            .get(ino)
            .cloned()
            .ok_or(Errno::ENOENT)
    }

    fn vrepo(&self, vault: &VaultFs) -> FsResult<Arc<Repo>> {
        self.versions.repo(vault).map_err(|e| fail(vault, e))
    }

    /// Main's history, newest first (walked again only when main moved).
    fn vlog(&self, vault: &VaultFs, repo: &Repo) -> FsResult<Arc<Vec<(Oid, i64)>>> {
        let v = repo.versions.lock();
        let Some(tip) = v.main().map_err(|e| fail(vault, e))? else {
            return Ok(Arc::new(Vec::new()));
        };
        if let Some((at, log)) = &*repo.log.lock() {
            if *at == tip {
                return Ok(log.clone());
            }
        }
        let log = Arc::new(v.main_log().map_err(|e| fail(vault, e))?);
        *repo.log.lock() = Some((tip, log.clone()));
        Ok(log)
    }

    /// The node of `key`, made as `make` says if the table does not have
    /// it; counts a lookup. `p` is the directory it is found in.
    fn vget(&self, p: &Parent, key: (u64, Vec<u8>), make: &Make) -> FsResult<(u64, Node)> {
        if let Some(found) = self.versions.table.write().again(&key) {
            return Ok(found);
        }
        let new = self.vnew(p, make)?;
        Ok(self.versions.table.write().found(key, || new))
    }

    fn vnew(&self, p: &Parent, make: &Make) -> FsResult<NewNode> {
        let vault = &p.vault;
        let repo = self.vrepo(vault)?;
        let node = |what, mode, time, size, commit| NewNode {
            vault: vault.clone(),
            what,
            mode,
            time,
            size,
            commit,
        };
        let v = repo.versions.lock();
        let bad = |e| fail(vault, e);
        Ok(match make {
            Make::Fixed(what) => node(what.clone(), 0o555, 0, 0, None),
            Make::Commit(id, time) => {
                if !repo.authentic.lock().contains(id) {
                    v.info(*id).map_err(bad)?;
                    repo.authentic.lock().insert(*id);
                }
                let root = v.root(*id).map_err(bad)?;
                let dir = v.open_dir(&root, "/").map_err(bad)?;
                let mode = dir.mode();
                node(What::Dir(Arc::new(dir)), mode, *time, 4096, Some(*id))
            }
            Make::Child(c) => {
                let what = String::from_utf8_lossy(&c.entry.name).into_owned();
                match c.entry.kind {
                    Kind::Dir => {
                        let d = v.open_dir(&c.entry, &what).map_err(bad)?;
                        let mode = d.mode();
                        node(What::Dir(Arc::new(d)), mode, p.time, 4096, p.commit)
                    }
                    Kind::Symlink => {
                        let t = v.link_target(&c.entry, &what).map_err(bad)?;
                        let size = t.len() as u64;
                        node(What::Link(c.entry.clone()), 0o777, p.time, size, p.commit)
                    }
                    _ => {
                        let size = v.size(&c.entry).map_err(bad)?;
                        node(What::File(c.entry.clone()), c.mode, p.time, size, p.commit)
                    }
                }
            }
        })
    }

    /// LOOKUP of `name` in `parent`, which is a version inode or a vault root
    /// (for `.versions`): the attributes and how long the kernel may keep them.
    pub(super) fn vlookup(&self, parent: u64, name: &[u8]) -> FsResult<(FileAttr, Duration)> {
        if !super::owns(parent) {
            let vault = self
                .vaults
                .read()
                .iter()
                .find(|v| v.root_ino == parent)
                .cloned()
                .ok_or(Errno::ENOENT)?;
            let repo = self.vrepo(&vault)?;
            if self.vlog(&vault, &repo)?.is_empty() {
                return Err(Errno::ENOENT);
            }
            let key = (parent, VERSIONS_NAME.to_vec());
            let top = Parent {
                vault: vault.clone(),
                time: 0,
                commit: None,
            };
            let (ino, n) = self.vget(&top, key, &Make::Fixed(What::Root))?;
            return Ok((self.vattr(ino, &n)?, self.cfg.ttl));
        }
        let p = self.vnode(parent)?;
        let pp = Parent::from(&p);
        let repo = self.vrepo(&p.vault)?;
        let (ino, n, ttl) = match &p.what {
            What::Root => match name {
                BY_TIME | DISCARDED => {
                    // `discarded` is there while it holds a version.
                    if name == DISCARDED {
                        let v = repo.versions.lock();
                        let gone = v.discarded_log().map_err(|e| fail(&p.vault, e))?;
                        if gone.is_empty() {
                            return Err(Errno::ENOENT);
                        }
                    }
                    let what = if name == BY_TIME {
                        What::ByTime
                    } else {
                        What::Discarded
                    };
                    let (i, n) = self.vget(&pp, (parent, name.to_vec()), &Make::Fixed(what))?;
                    (i, n, self.cfg.ttl)
                }
                _ => {
                    let log = self.vlog(&p.vault, &repo)?;
                    let text = std::str::from_utf8(name).map_err(|_| Errno::ENOENT)?;
                    let (id, ttl) = if let Some(c) = hex_match(&log, text) {
                        // A commit leaves main when a change at an older
                        // version discards it, and a shorter prefix may
                        // match more commits later: the name is kept as
                        // long as the mount's other names.
                        let lasting = text.len() >= SHORT_ID;
                        (
                            c,
                            if lasting {
                                self.cfg.ttl
                            } else {
                                Duration::ZERO
                            },
                        )
                    } else if name == LATEST || text.starts_with("HEAD") {
                        let spec = if name == LATEST { "latest" } else { text };
                        // Authenticated when its node is made (`vnew`).
                        let id = repo
                            .versions
                            .lock()
                            .locate(spec)
                            .map_err(|_| Errno::ENOENT)?;
                        (id, Duration::ZERO)
                    } else {
                        return Err(Errno::ENOENT);
                    };
                    let time = self.vtime(&p.vault, &repo, &log, id)?;
                    let (i, n) = self.vget(
                        &pp,
                        (parent, id.as_bytes().to_vec()),
                        &Make::Commit(id, time),
                    )?;
                    (i, n, ttl)
                }
            },
            What::ByTime => {
                let at = std::str::from_utf8(name)
                    .ok()
                    .and_then(by_time::parse)
                    .ok_or(Errno::ENOENT)?;
                let log = self.vlog(&p.vault, &repo)?;
                let &(id, time) = log.iter().find(|c| c.1 <= at).ok_or(Errno::ENOENT)?;
                let root = self.versions_root_of(&p)?;
                let (i, n) =
                    self.vget(&pp, (root, id.as_bytes().to_vec()), &Make::Commit(id, time))?;
                (i, n, Duration::ZERO)
            }
            What::Discarded => {
                let text = std::str::from_utf8(name).map_err(|_| Errno::ENOENT)?;
                let gone = repo
                    .versions
                    .lock()
                    .discarded_log()
                    .map_err(|e| fail(&p.vault, e))?;
                let id = hex_match(&gone, text).ok_or(Errno::ENOENT)?;
                let time = gone.iter().find(|c| c.0 == id).map(|c| c.1).unwrap_or(0);
                let (i, n) = self.vget(
                    &pp,
                    (parent, id.as_bytes().to_vec()),
                    &Make::Commit(id, time),
                )?;
                (i, n, Duration::ZERO)
            }
            What::Dir(d) => {
                let c = repo
                    .versions
                    .lock()
                    .child(d, name)
                    .map_err(|e| fail(&p.vault, e))?
                    .ok_or(Errno::ENOENT)?;
                let (i, n) = self.vget(&pp, (parent, name.to_vec()), &Make::Child(c))?;
                (i, n, VERSION_TTL)
            }
            What::File(_) | What::Link(_) => return Err(Errno::ENOTDIR),
        };
        Ok((self.vattr(ino, &n)?, ttl))
    }

    /// The `.versions` inode of the vault of fixed directory `p`.
    fn versions_root_of(&self, p: &Node) -> FsResult<u64> {
        let key = (p.vault.root_ino, VERSIONS_NAME.to_vec());
        self.versions.table.read().key_of(&key).ok_or(Errno::ENOENT)
    }

    /// The commit time of `id` (from the log, else its commit).
    fn vtime(&self, vault: &VaultFs, repo: &Repo, log: &[(Oid, i64)], id: Oid) -> FsResult<i64> {
        if let Some(c) = log.iter().find(|c| c.0 == id) {
            return Ok(c.1);
        }
        let v = repo.versions.lock();
        v.time_of(id).map_err(|e| fail(vault, e))
    }

    /// The attributes of version inode `ino`.
    pub(super) fn vattr(&self, ino: u64, n: &Node) -> FsResult<FileAttr> {
        let repo = self.vrepo(&n.vault)?;
        let time = match n.what {
            What::Root | What::ByTime | What::Discarded => self
                .vlog(&n.vault, &repo)?
                .first()
                .map(|c| c.1)
                .unwrap_or(0),
            _ => n.time,
        };
        let t = if time >= 0 {
            UNIX_EPOCH + Duration::from_secs(time as u64)
        } else {
            UNIX_EPOCH - Duration::from_secs(time.unsigned_abs())
        };
        let (kind, size, nlink) = match n.what {
            What::File(_) => (FileType::RegularFile, n.size, 1),
            What::Link(_) => (FileType::Symlink, n.size, 1),
            _ => (FileType::Directory, 4096, 2),
        };
        Ok(FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: t,
            mtime: t,
            ctime: t,
            crtime: t,
            kind,
            perm: (n.mode & 0o7777) as u16,
            nlink,
            uid: repo.owner.0,
            gid: repo.owner.1,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        })
    }

    pub(super) fn vgetattr(&self, ino: u64) -> FsResult<(FileAttr, Duration)> {
        let n = self.vnode(ino)?;
        let ttl = match n.what {
            What::Root | What::ByTime | What::Discarded => self.cfg.ttl,
            _ => VERSION_TTL,
        };
        Ok((self.vattr(ino, &n)?, ttl))
    }

    pub(super) fn vreadlink(&self, ino: u64) -> FsResult<Vec<u8>> {
        let n = self.vnode(ino)?;
        let What::Link(e) = &n.what else {
            return Err(Errno::EINVAL);
        };
        let repo = self.vrepo(&n.vault)?;
        let t = repo
            .versions
            .lock()
            .link_target(e, "symlink")
            .map_err(|err| fail(&n.vault, err))?;
        Ok(t.to_vec())
    }

    /// OPEN: read-only descriptors only; the blob's ciphertext is held by the
    /// handle and decrypted a page at a time as it is read.
    pub(super) fn vopen(&self, ino: u64, flags: i32) -> FsResult<u64> {
        if flags & libc::O_ACCMODE != libc::O_RDONLY || flags & libc::O_TRUNC != 0 {
            return Err(Errno::EROFS);
        }
        let n = self.vnode(ino)?;
        let What::File(e) = &n.what else {
            return Err(Errno::EISDIR);
        };
        let repo = self.vrepo(&n.vault)?;
        let what = String::from_utf8_lossy(&e.name).into_owned();
        let blob = repo
            .versions
            .lock()
            .blob(e, &what)
            .map_err(|err| fail(&n.vault, err))?;
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        self.versions.files.lock().insert(fh, Arc::new(blob));
        Ok(fh)
    }

    pub(super) fn vread(&self, ino: u64, fh: u64, offset: u64, size: u32) -> FsResult<Vec<u8>> {
        let blob = self
            .versions
            .files
            .lock()
            .get(&fh)
            .cloned()
            .ok_or(Errno::EBADF)?;
        match blob.read_at(offset, u64::from(size)) {
            Ok(d) => Ok(d.to_vec()),
            Err(e) => {
                tracing::error!("reading a version (inode {ino}): {e}");
                Err(Errno::EIO)
            }
        }
    }

    /// OPENDIR: the listing, taken now; entries become inodes when sent.
    pub(super) fn vopendir(&self, ino: u64) -> FsResult<u64> {
        let n = self.vnode(ino)?;
        let repo = self.vrepo(&n.vault)?;
        let dot = |name: &[u8]| VListed {
            name: name.to_vec(),
            kind: FileType::Directory,
            make: None,
            ino,
            ttl: Duration::ZERO,
        };
        let dir = |name: &[u8], make, ttl| VListed {
            name: name.to_vec(),
            kind: FileType::Directory,
            make: Some(make),
            ino: 0,
            ttl,
        };
        let mut out = vec![dot(b"."), dot(b"..")];
        match &n.what {
            What::Root => {
                let log = self.vlog(&n.vault, &repo)?;
                for &(id, time) in log.iter() {
                    out.push(dir(&short(&id), Make::Commit(id, time), self.cfg.ttl));
                }
                if let Some(&(id, time)) = log.first() {
                    out.push(dir(LATEST, Make::Commit(id, time), Duration::ZERO));
                }
                out.push(dir(BY_TIME, Make::Fixed(What::ByTime), self.cfg.ttl));
                let gone = repo.versions.lock().discarded_log();
                if gone.is_ok_and(|g| !g.is_empty()) {
                    out.push(dir(DISCARDED, Make::Fixed(What::Discarded), self.cfg.ttl));
                }
            }
            What::ByTime => {}
            What::Discarded => {
                let gone = repo
                    .versions
                    .lock()
                    .discarded_log()
                    .map_err(|e| fail(&n.vault, e))?;
                for (id, time) in gone {
                    out.push(dir(&short(&id), Make::Commit(id, time), Duration::ZERO));
                }
            }
            What::Dir(d) => {
                let list = repo
                    .versions
                    .lock()
                    .children(d)
                    .map_err(|e| fail(&n.vault, e))?;
                for c in list {
                    let kind = match c.entry.kind {
                        Kind::Dir => FileType::Directory,
                        Kind::Symlink => FileType::Symlink,
                        _ => FileType::RegularFile,
                    };
                    out.push(VListed {
                        name: c.entry.name.clone(),
                        kind,
                        make: Some(Make::Child(c)),
                        ino: 0,
                        ttl: VERSION_TTL,
                    });
                }
            }
            What::File(_) | What::Link(_) => return Err(Errno::ENOTDIR),
        }
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        self.versions.lists.lock().insert(fh, Arc::new(out));
        Ok(fh)
    }

    /// The inode and attributes of listed entry `e` of directory `dir`,
    /// counted as a lookup (READDIRPLUS).
    pub(super) fn vplus(&self, dir: u64, e: &VListed) -> FsResult<(u64, FileAttr)> {
        let Some(make) = &e.make else {
            let n = self.vnode(e.ino)?;
            return Ok((e.ino, self.vattr(e.ino, &n)?));
        };
        let p = self.vnode(dir)?;
        let pp = Parent::from(&p);
        let (ino, n) = match make {
            Make::Fixed(_) | Make::Child(_) => self.vget(&pp, (dir, e.name.clone()), make)?,
            // Listed in `.versions` or `discarded/`, the key its lookup uses.
            Make::Commit(id, _) => self.vget(&pp, (dir, id.as_bytes().to_vec()), make)?,
        };
        Ok((ino, self.vattr(ino, &n)?))
    }
}

/// The one commit of `log` whose id starts with hex `text` (4 to 40 digits).
fn hex_match(log: &[(Oid, i64)], text: &str) -> Option<Oid> {
    if !(4..=40).contains(&text.len()) || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let lower = text.to_ascii_lowercase();
    let mut hits = log.iter().filter(|c| c.0.to_string().starts_with(&lower));
    let first = hits.next()?;
    hits.next().is_none().then_some(first.0)
}
