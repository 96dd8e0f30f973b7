//! Moving a vault's work tree to a version (`version checkout`).

use super::*;
use crate::store::prefetch::Warmer;
use crate::store::reaper::defer_dropped_dirs;

impl History {
    /// Move the vault to `spec` ("latest", a commit id prefix of at least 4 hex
    /// digits, or `HEAD~N`): `contents/` becomes exactly that version's tree. The
    /// version must be in main's history. Journaled (uncommitted) changes are
    /// committed first; if that fails nothing moves. Returns the commit id.
    pub fn checkout(&self, spec: &str) -> Result<String> {
        self.checkout_with_progress(spec, &mut |_, _| {})
    }

    /// [`History::checkout`], reporting (files done, files in all) as it goes.
    pub fn checkout_with_progress(
        &self,
        spec: &str,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<String> {
        // Changes journaled by a writer that did not commit them (a daemon
        // that died) are committed first: the checkout would overwrite them.
        // When that commit fails the checkout does not start.
        if !self.journal.borrow().is_empty() {
            self.commit(&[]).map_err(|e| {
                Error::History(format!(
                    "not checking out: the pending changes could not be committed \
                     first (they are kept): {e}"
                ))
            })?;
        }
        let repo = self.repo.borrow();
        let repo = &*repo;
        let main = main_tip(repo)?.ok_or_else(no_versions)?;
        let target = resolve_spec(repo, spec, main)?;
        if target != main
            && !repo
                .graph_descendant_of(main, target)
                .ctx("comparing versions")?
        {
            return Err(Error::Usage(format!(
                "version {spec} ({target}) is not in the vault's current history \
                 (it was discarded by a later change)"
            )));
        }
        let commit = repo.find_commit(target).ctx("reading the version")?;
        self.open_message(&commit)?;
        self.journal.borrow_mut().begin_checkout(target)?;
        self.checkout_commit(repo, &commit, target == main, progress)?;
        Ok(target.to_string())
    }

    /// Make `contents/` exactly `commit`'s tree, move HEAD there and empty the
    /// journal. Safe to repeat after a crash.
    pub(super) fn checkout_commit(
        &self,
        repo: &Repository,
        commit: &Commit<'_>,
        is_main: bool,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<()> {
        let target = commit.id();
        // Both look at what changes between HEAD's tree and the target's.
        let from = repo.head().and_then(|h| h.peel_to_tree()).ok();
        let to = commit.tree().ctx("reading the version's tree")?;
        let _warm = Warmer::start(repo, from.as_ref(), &to);
        // Directories a mode shut to writes take the files (`store/modes/`).
        let lent = self.lend_dir_write();
        if let Some(from) = &from {
            defer_dropped_dirs(repo, &self.vault_dir, from, &to);
        }
        let mut opts = CheckoutBuilder::new();
        opts.force()
            .remove_untracked(true)
            .remove_ignored(true)
            .path(TRACKED)
            .progress(|_, done, total| progress(done, total));
        // Ciphertext takes no filters (`.git/info/attributes` says so too);
        // skipping the attribute lookups took 15-25% off a 5000-file checkout.
        opts.disable_filters(true);
        repo.checkout_tree(commit.as_object(), Some(&mut opts))
            .ctx("checking out the version")?;
        // The version's modes (`store/modes/history.rs`).
        self.apply_mode_records(repo, &to, lent);
        version::sync_index(repo)?;
        // The record first, then HEAD (see `history_version.rs`).
        let main = main_tip(repo)?.ok_or_else(no_versions)?;
        self.record_version(main, target, is_main)?;
        crate::store::atomic::crash_point("checkout-after-record");
        if is_main {
            repo.set_head(MAIN_REF).ctx("attaching HEAD to main")?;
        } else {
            repo.set_head_detached(target).ctx("detaching HEAD")?;
        }
        self.journal.borrow_mut().reset(Some(target))
    }
}
