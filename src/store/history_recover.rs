//! After a power cut: new directories whose IV never reached the disk.
//!
//! The mount's `mkdir` (`DirFd::mkdir_with_iv`) writes a new directory's
//! `.diriv` without waiting for the disk, as gocryptfs does. The IV becomes
//! durable at the next commit, or before that at the first fsync of anything
//! in the vault, which fsyncs every directory made since
//! ([`History::sync_journal`]). A power cut before either can leave the
//! directory with a missing or empty IV, and every name in it undecryptable.
//! Nothing under such a directory was fsync'd, so it holds only data that a
//! power cut may lose anyway.
//!
//! So at open, while the journal is not empty (the last writer did not
//! commit), every directory whose IV file is missing (ENOENT) or not a whole
//! IV, and which HEAD does not have, is moved
//! (never deleted) to `V/quarantine/<unix-time>-lost-iv/` under its backing
//! path, with its long-name sidecar, and noted in that batch's index
//! (`store/quarantine.rs`), so `pkfs quarantine restore` can put it back.
//! The commit then does not adopt it, and the rest of the vault reads as
//! usual. A directory HEAD has keeps its damaged IV: that is not a lost write
//! but damage, which `fsck` reports and `fsck --restore` repairs. A directory
//! whose IV cannot be looked at (EACCES, EIO, ...) is left alone: only an IV
//! that is really gone or short is a lost write.

use std::collections::HashSet;
use std::fs;
use std::sync::Arc;

use git2::{ObjectType, TreeWalkMode, TreeWalkResult};

use super::seal::sync_fs;
use super::{head_target, Ctx, History};
use crate::error::{Error, Result};
use crate::format::names::{self, DIRIV_FILE, DIRIV_LEN};
use crate::store::dirfd::DirFd;
use crate::store::quarantine;

/// A directory found without its IV: where it is, its backing path, and the
/// path its sidecar would have.
struct Lost {
    /// Its parent directory, and its name there.
    dir: Arc<DirFd>,
    name: String,
    rel: String,
}

impl History {
    /// Move the new directories a power cut left without an IV to quarantine
    /// (see the module comment). Returns their backing paths. Best effort: a
    /// failure (HEAD unreadable, a move refused) is logged and leaves the
    /// directory where it is, for `fsck` to report, so the vault still opens.
    pub(super) fn quarantine_lost_dirs(&self) -> Vec<String> {
        if self.journal.borrow().is_empty() {
            return Vec::new();
        }
        let lost = match self.find_lost_dirs() {
            Ok(lost) => lost,
            Err(e) => {
                tracing::warn!("not looking for directories a crash left without IV: {e}");
                return Vec::new();
            }
        };
        if lost.is_empty() {
            return Vec::new();
        }
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let qdir = self
            .vault_dir
            .join("quarantine")
            .join(format!("{stamp}-lost-iv"));
        if let Err(e) = fs::create_dir_all(&qdir) {
            tracing::warn!(
                "cannot quarantine directories without IV: {}",
                Error::io(&qdir, e)
            );
            return Vec::new();
        }
        let mut moved = Vec::new();
        for l in &lost {
            let to = qdir.join(&l.rel);
            if let Err(e) = quarantine::move_to(&qdir, &l.rel, &l.dir.at(&l.name)) {
                tracing::warn!(
                    "directory {} lost its IV in a crash and cannot be moved aside: {e}",
                    l.rel,
                );
                continue;
            }
            let sidecar = l.dir.at(&names::sidecar_of(&l.name));
            if fs::symlink_metadata(&sidecar).is_ok() {
                let side = match l.rel.rsplit_once('/') {
                    Some((dir, name)) => format!("{dir}/{}", names::sidecar_of(name)),
                    None => names::sidecar_of(&l.rel),
                };
                let _ = quarantine::move_to(&qdir, &side, &sidecar);
            }
            tracing::warn!(
                "directory {} lost its IV in a crash before it was committed or \
                 fsync'd; its contents cannot be named and were moved to {}",
                l.rel,
                to.display()
            );
            moved.push(l.rel.clone());
        }
        if let Err(e) = sync_fs(&self.vault_dir) {
            tracing::warn!("{e}");
        }
        moved
    }

    /// Directories under `contents/` without a whole IV that HEAD does not have.
    fn find_lost_dirs(&self) -> Result<Vec<Lost>> {
        let in_head = self.head_dirs()?;
        let mut lost = Vec::new();
        // Through directory descriptors: a backing path may be longer than
        // PATH_MAX (see `dirfd.rs`).
        let vault = DirFd::open(&self.vault_dir).map_err(|e| Error::io(&self.vault_dir, e))?;
        let mut stack = vec![(
            Arc::new(vault),
            "contents".to_string(),
            "contents".to_string(),
        )];
        while let Some((parent, name, rel)) = stack.pop() {
            let Ok(dir) = parent.child(&name) else {
                continue;
            };
            let dir = Arc::new(dir);
            let Ok(entries) = fs::read_dir(dir.path()) else {
                continue;
            };
            for ent in entries.flatten() {
                if !ent.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                let Some(name) = ent.file_name().to_str().map(str::to_string) else {
                    continue;
                };
                if name.starts_with(".tmp-") {
                    continue;
                }
                let child = format!("{rel}/{name}");
                let iv = dir.at(&format!("{name}/{DIRIV_FILE}"));
                let whole = match fs::symlink_metadata(&iv) {
                    Ok(m) => m.is_file() && m.len() == DIRIV_LEN as u64,
                    // The IV file is gone: what a power cut leaves.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
                    // EACCES (a mode that shuts the daemon out), EIO, ...:
                    // the IV may be there. Never move what cannot be seen.
                    Err(e) => {
                        tracing::warn!(
                            "cannot check the IV of {child}: {}; leaving it where it is",
                            Error::io(format!("{child}/{DIRIV_FILE}"), e)
                        );
                        continue;
                    }
                };
                if whole || in_head.contains(&child) {
                    stack.push((dir.clone(), name, child));
                } else {
                    lost.push(Lost {
                        dir: dir.clone(),
                        name,
                        rel: child,
                    });
                }
            }
        }
        Ok(lost)
    }

    /// The backing paths (`contents/…`) of the directories in HEAD's tree.
    fn head_dirs(&self) -> Result<HashSet<String>> {
        let repo = self.repo.borrow();
        let mut dirs = HashSet::new();
        let Some(head) = head_target(&repo)? else {
            return Ok(dirs);
        };
        let tree = repo
            .find_commit(head)
            .and_then(|c| c.tree())
            .ctx("reading HEAD's tree")?;
        tree.walk(TreeWalkMode::PreOrder, |root, entry| {
            if entry.kind() == Some(ObjectType::Tree) {
                if let Ok(name) = entry.name() {
                    dirs.insert(format!("{root}{name}"));
                }
            }
            TreeWalkResult::Ok
        })
        .ctx("walking HEAD's tree")?;
        Ok(dirs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SymKey;
    use crate::store::{Change, ChangeKind};

    #[test]
    fn only_new_directories_without_a_whole_iv_are_moved() {
        let d = tempfile::tempdir().unwrap();
        let v = d.path();
        let put = |rel: &str, data: &[u8]| {
            let p = v.join("contents").join(rel);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, data).unwrap();
        };
        put(".diriv", &[1; 16]);
        // In HEAD with a damaged IV: damage for fsck, not a lost write.
        put("old/.diriv", b"short");
        put("old/f", b"x");
        let key = SymKey::from_bytes([9; 32]);
        let h = History::init(v, &key, &[Change::new(ChangeKind::Added, "old/f")]).unwrap();
        // Since HEAD: a whole new directory, one whose IV was lost (with a
        // subdirectory in it), and one without an IV file at all.
        put("good/.diriv", &[2; 16]);
        put("lost/.diriv", b"");
        put("lost/sub/.diriv", &[3; 16]);
        put("lost/sub/g", b"y");
        fs::create_dir_all(v.join("contents/bare")).unwrap();
        // An empty journal (the last writer committed): nothing is looked at.
        assert!(h.quarantine_lost_dirs().is_empty());
        assert!(v.join("contents/lost").exists());

        h.mark("contents/lost").unwrap();
        let mut moved = h.quarantine_lost_dirs();
        moved.sort();
        assert_eq!(moved, ["contents/bare", "contents/lost"]);
        assert!(v.join("contents/good/.diriv").exists());
        assert!(v.join("contents/old/f").exists());
        assert!(!v.join("contents/lost").exists());
        let q: Vec<_> = fs::read_dir(v.join("quarantine")).unwrap().collect();
        assert_eq!(q.len(), 1);
        let qd = q[0].as_ref().unwrap().path();
        assert!(qd.join("contents/bare").is_dir() && qd.join("contents/lost/sub").is_dir());
        let index = fs::read_to_string(qd.join("index")).unwrap();
        let mut lines: Vec<&str> = index.lines().collect();
        lines.sort();
        assert_eq!(lines, ["contents/bare", "contents/lost"]);
        // Once moved, a second open finds nothing more.
        assert!(h.quarantine_lost_dirs().is_empty());
    }
}
