//! Committing what the mount changed, and re-syncing after outside changes
//! (control commands such as `version checkout`).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use fuser::INodeNo;

use super::core::FsCore;
use super::inodes::ROOT_INO;
use super::vaults::VaultFs;
use crate::error::{Error, Result};
use crate::store::history::History;

/// Kernel entries (parent, name) and inodes to invalidate after a re-sync.
type Stale = (Vec<(u64, Vec<u8>)>, Vec<u64>);

impl FsCore {
    /// Write back every open file of `v` and commit its pending changes, holding
    /// the vault's gate so that no file is caught half-written.
    pub fn commit_vault(&self, v: &Arc<VaultFs>) -> Result<Option<String>> {
        let _gate = v.gate.write();
        self.commit_locked(v)
    }

    /// [`FsCore::commit_vault`] with the vault's gate already held exclusively.
    fn commit_locked(&self, v: &Arc<VaultFs>) -> Result<Option<String>> {
        let files: Vec<_> = self
            .open
            .lock()
            .values()
            .filter(|f| f.vault == v.id)
            .cloned()
            .collect();
        for f in files {
            let mut st = f.state.write();
            // A removed file nobody holds open has nothing left to commit.
            if *f.handles.lock() == 0 && st.unlinked() {
                st.discard(&self.cache);
                continue;
            }
            st.write_back(&v.keys(), &self.cache)
                .map_err(|e| Error::io(&v.contents, e))?;
        }
        self.open.lock().retain(|ino, f| {
            let keep = *f.handles.lock() > 0 || f.state.read().is_dirty();
            if !keep {
                self.changed_of(*ino).fetch_add(1, Ordering::Release);
            }
            keep
        });
        let changes = v.pending.lock().changes.clone();
        // Nothing recorded, and nothing journaled by an earlier daemon that died
        // before committing it: nothing to do.
        if changes.is_empty() && v.history.lock().journal_is_empty() {
            return Ok(None);
        }
        // The vault is being written: add a key generation if it is due.
        self.follow_keys(v, true);
        let res = v.history.lock().commit(&changes);
        if res.is_ok() {
            v.reseal();
        }
        let mut p = v.pending.lock();
        match res {
            Ok(id) => {
                p.clear();
                v.commits.fetch_add(1, Ordering::Relaxed);
                p.last_commit = Some((id.clone(), crate::vault::node::now_unix()));
                Ok(Some(id))
            }
            Err(e) => {
                p.last_error = Some(e.to_string());
                // Retry after another quiet period.
                p.last = Some(Instant::now());
                Err(e)
            }
        }
    }

    /// Take the vault's keychain from the node when its generations changed
    /// (a rotation, a dropped generation); with `rotate`, first add a
    /// generation if the vault's `rotate-after` says one is due. Failures are
    /// logged: the vault goes on with the keys it has.
    pub(super) fn follow_keys(&self, v: &VaultFs, rotate: bool) {
        let mut node = self.node.lock();
        if rotate && !self.cfg.ro {
            if let Err(e) = node.rotate_if_due(&v.name()) {
                tracing::warn!("vault {}: automatic key rotation failed: {e}", v.id);
            }
        }
        let listed: Option<Vec<u32>> = node.vaults().iter().find(|r| r.id == v.id).map(|r| {
            let mut g: Vec<u32> = r.keys.iter().map(|k| k.generation).collect();
            g.sort_unstable();
            g
        });
        if listed.is_none() || listed == Some(v.keys().generations()) {
            return;
        }
        match node.keychain_of_id(&v.id) {
            Ok(keys) => v.set_keys(keys),
            Err(e) => tracing::error!("vault {}: reading its new keychain: {e}", v.id),
        }
    }

    /// Commit every vault whose changes have been quiet for the commit delay.
    pub fn commit_due(&self) {
        let vaults = self.vaults.read().clone();
        for v in vaults {
            let due = v
                .pending
                .lock()
                .last
                .is_some_and(|t| t.elapsed() >= self.cfg.commit_delay);
            if due {
                if let Err(e) = self.commit_vault(&v) {
                    tracing::error!("commit of vault {} failed: {e}", v.id);
                }
            }
        }
    }

    /// Commit everything now (unmount, control commands).
    pub fn commit_all(&self) -> Result<()> {
        let mut first_err = None;
        for v in self.vaults.read().clone() {
            if let Err(e) = self.commit_vault(&v) {
                tracing::error!("commit of vault {} failed: {e}", v.id);
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Run `f` (a control command on the node) with the mount quiet: every
    /// vault's gate is taken first and held until the command has ended and,
    /// when `changed`, the mount has reopened each history. Under the gates,
    /// pending changes are committed, then `f` runs, then the vault table and
    /// the histories are re-read. So no write through the mount lands between
    /// the pre-commit and the command (it would be journaled against a HEAD
    /// the command then moves), nor between the command's commit and the
    /// reopening (it would go into a journal the command removed). The
    /// kernel's caches are invalidated only after the gates are released: an
    /// invalidation waits for the directory locks of requests in flight,
    /// which may be waiting for a gate.
    ///
    /// A command that may change data (`changed`) does not run when that
    /// pre-commit fails: a checkout, gc or restore would otherwise overwrite
    /// or drop the pending changes, which `fsync` may have acknowledged.
    pub fn exclusive<R>(&self, changed: bool, f: impl FnOnce() -> R) -> Result<R> {
        let _one = self.control.lock();
        let vaults = self.vaults.read().clone();
        let guards: Vec<_> = vaults.iter().map(|v| v.gate.write()).collect();
        for v in &vaults {
            if let Err(e) = self.commit_locked(v) {
                tracing::error!("committing vault {} before a control command: {e}", v.id);
                if changed {
                    return Err(e);
                }
            }
        }
        crate::vault::keychain::set_open_files(self.open_paths());
        let out = f();
        crate::vault::keychain::set_open_files(Vec::new());
        let moves = crate::vault::handle::take_moves();
        self.stale_checkouts(&crate::store::history::take_checkouts());
        let stale = changed.then(|| {
            let old_names = self.follow_moves(&moves);
            let (mut entries, inodes) = self.resync_locked();
            entries.extend(old_names);
            (entries, inodes)
        });
        drop(guards);
        if let Some((entries, inodes)) = stale {
            self.invalidate(&entries, &inodes);
        }
        Ok(out)
    }

    /// Every file open in a vault that `checked_out` names (its directory)
    /// goes stale: it was opened in the version the checkout left. Its
    /// descriptors keep reading what they opened, or fail with ESTALE; a
    /// write through them fails with ESTALE, so none lands in the version
    /// checked out (where a commit would discard the later versions). All
    /// was written back before the command ran (see [`FsCore::exclusive`]).
    fn stale_checkouts(&self, checked_out: &[std::path::PathBuf]) {
        if checked_out.is_empty() {
            return;
        }
        let vaults: Vec<String> = self
            .vaults
            .read()
            .iter()
            .filter(|v| {
                v.contents
                    .parent()
                    .is_some_and(|d| checked_out.iter().any(|c| same_dir(c, d)))
            })
            .map(|v| v.id.clone())
            .collect();
        for f in self.open.lock().values() {
            if vaults.contains(&f.vault) {
                f.stale.store(true, Ordering::Release);
            }
        }
    }

    /// (vault id, plaintext path) of every file open in the mount.
    fn open_paths(&self) -> Vec<(String, String)> {
        let open: Vec<(u64, String)> = self
            .open
            .lock()
            .values()
            .map(|f| (f.ino, f.vault.clone()))
            .collect();
        let inodes = self.inodes.read();
        open.into_iter()
            .filter_map(|(ino, vault)| Some((vault, inodes.path_of(ino)?)))
            .collect()
    }

    /// Point the inodes of entries that a command moved (`secret mv`) at
    /// their new names, so that descriptors open inside them keep working,
    /// as after a `mv` through the mount. Only in the inode table: a
    /// destination whose directory the kernel never looked up is left to
    /// path lookups. Returns the old names, for the kernel to forget.
    fn follow_moves(&self, moves: &[crate::vault::handle::Moved]) -> Vec<(u64, Vec<u8>)> {
        let vaults = self.vaults.read().clone();
        let mut inodes = self.inodes.write();
        let mut old_names = Vec::new();
        for m in moves {
            let Some(v) = vaults.iter().find(|v| v.id == m.vault) else {
                continue;
            };
            let (Some(from_parent), Some(from_name), Some(to_parent), Some(to_name)) =
                (m.from.parent(), m.from.name(), m.to.parent(), m.to.name())
            else {
                continue;
            };
            let Some(ino) = inodes.at_path(v.root_ino, m.from.components()) else {
                continue;
            };
            let (Some(fp), Some(tp)) = (
                inodes.at_path(v.root_ino, from_parent.components()),
                inodes.at_path(v.root_ino, to_parent.components()),
            ) else {
                continue;
            };
            // What the kernel knew at the destination was replaced.
            if let Some(old) = inodes.child(tp, to_name) {
                inodes.name_removed(old, tp, to_name);
            }
            inodes.moved(ino, (fp, from_name), tp, to_name);
            old_names.push((fp, from_name.to_vec()));
        }
        old_names
    }

    /// Follow the node's vault table and the vaults' trees after outside
    /// changes, with every vault's gate held (see [`FsCore::exclusive`]).
    /// Returns the kernel entries and inodes to invalidate once the gates are
    /// released.
    fn resync_locked(&self) -> Stale {
        let records: Vec<(String, String)> = self
            .node
            .lock()
            .vaults()
            .iter()
            .map(|r| (r.id.clone(), r.name.clone()))
            .collect();
        let mut entries: Vec<(u64, Vec<u8>)> = Vec::new();
        let mut inodes_gone: Vec<u64> = Vec::new();
        let current = self.vaults.read().clone();
        for v in &current {
            let old_name = v.name();
            match records.iter().find(|(id, _)| *id == v.id) {
                None => {
                    self.vaults.write().retain(|x| x.id != v.id);
                    self.inodes.write().remove_vault_root(v.root_ino);
                    entries.push((ROOT_INO, old_name.into_bytes()));
                    continue;
                }
                Some((_, name)) if *name != old_name => {
                    *v.name.write() = name.clone();
                    self.inodes.write().rename_vault_root(v.root_ino, name);
                    entries.push((ROOT_INO, old_name.into_bytes()));
                }
                _ => {}
            }
            self.follow_keys(v, false);
            if let Some(dir) = v.contents.parent() {
                match History::open(dir, v.keys().first()) {
                    Ok(h) => {
                        *v.history.lock() = h;
                        v.reseal();
                    }
                    Err(e) => tracing::error!("reopening the history of {}: {e}", v.id),
                }
            }
            // HEAD may have moved: every open file journals itself again at
            // its next write (see `FsCore::write`).
            v.commits.fetch_add(1, Ordering::Relaxed);
            for (ino, parent, name) in self.inodes.write().detach_vault(&v.id) {
                entries.push((parent, name));
                inodes_gone.push(ino);
            }
            inodes_gone.push(v.root_ino);
        }
        for (id, name) in &records {
            if !current.iter().any(|v| v.id == *id) {
                if let Err(e) = self.add_vault(name) {
                    tracing::error!("adding vault {id} to the mount: {e}");
                }
            }
        }
        {
            let open = self.open.lock();
            for f in open.values() {
                f.state.write().forget_cache(&self.cache);
            }
            // The command may have changed any file: first opens check again.
            for c in &self.changed {
                c.fetch_add(1, Ordering::Release);
            }
        }
        self.forget_dirs();
        (entries, inodes_gone)
    }

    fn invalidate(&self, entries: &[(u64, Vec<u8>)], inodes: &[u64]) {
        let Some(n) = self.notifier.lock().clone() else {
            return;
        };
        for (parent, name) in entries {
            let _ = n.inval_entry(
                INodeNo(*parent),
                <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(name),
            );
        }
        for ino in inodes {
            let _ = n.inval_inode(INodeNo(*ino), 0, 0);
        }
    }
}

/// Are `a` and `b` one directory (by name, or else by device and inode)?
fn same_dir(a: &std::path::Path, b: &std::path::Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    a == b
        || matches!(
            (std::fs::metadata(a), std::fs::metadata(b)),
            (Ok(x), Ok(y)) if x.dev() == y.dev() && x.ino() == y.ino()
        )
}
