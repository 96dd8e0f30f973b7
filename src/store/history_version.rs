//! Keeping git's refs in step with the version record (`version.rs`).
//!
//! Every move of main or HEAD writes the record first (durably, after the
//! objects it names are durable) and then the refs. At open the refs are
//! compared with the record; any that is missing, empty, garbled, unborn or
//! names another commit (a power cut, or someone rewinding or deleting it) is
//! rewritten from the record, and the repair is logged and kept for `fsck` to
//! report. A record that does not authenticate, or names a commit the history
//! does not hold (or one whose message does not authenticate), refuses the
//! vault as corrupt (exit 9).
//!
//! A vault made before the record existed gets one at its first open, from
//! refs that must then be readable; a vault whose refs are unreadable and that
//! has no record is refused, never restarted from a new root commit.

use std::path::Path;

use git2::{Oid, Repository};

use super::{open_message_with, open_repo, Ctx, History, MAIN_REF};
use crate::crypto::aead::Gcm;
use crate::error::{Error, Result};
use crate::store::atomic::{create_dir_durable, fsync_dir, write_atomic};
use crate::store::version::{Version, VersionFile};

/// What the refs say now; `None` where one cannot be read.
struct Refs {
    main: Option<Oid>,
    /// `Some(None)`: HEAD is attached to main; `Some(Some(id))`: detached.
    head: Option<Option<Oid>>,
}

fn read_refs(repo: &Repository) -> Refs {
    let main = repo.find_reference(MAIN_REF).ok().and_then(|r| r.target());
    let head = match repo.find_reference("HEAD") {
        Ok(r) => match (r.symbolic_target_bytes(), r.target()) {
            (Some(t), _) if t == MAIN_REF.as_bytes() => Some(None),
            (None, Some(id)) => Some(Some(id)),
            _ => None,
        },
        Err(_) => None,
    };
    Refs { main, head }
}

/// The commit `id` must exist and its message authenticate.
fn check_commit(repo: &Repository, gcm: &Gcm, id: Oid, what: &str) -> Result<()> {
    let git = repo.path().display().to_string();
    let commit = repo.find_commit(id).map_err(|_| {
        Error::corrupt(
            &git,
            format!("the version record names {what} {id}, which the history does not hold"),
        )
    })?;
    open_message_with(gcm, &commit).map(|_| ())
}

/// Rewrite `.git/refs/heads/main` to name `id`, durably.
fn write_main(git_dir: &Path, id: Oid) -> Result<()> {
    let heads = git_dir.join("refs").join("heads");
    if !heads.is_dir() {
        if !git_dir.join("refs").is_dir() {
            create_dir_durable(&git_dir.join("refs"))?;
        }
        create_dir_durable(&heads)?;
    }
    write_atomic(&heads.join("main"), format!("{id}\n").as_bytes())
}

/// Rewrite `.git/HEAD`, durably: attached to main, or detached at `id`.
fn write_head(git_dir: &Path, detached: Option<Oid>) -> Result<()> {
    let text = match detached {
        None => format!("ref: {MAIN_REF}\n"),
        Some(id) => format!("{id}\n"),
    };
    write_atomic(&git_dir.join("HEAD"), text.as_bytes())
}

/// Check the refs of the repository at `vault_dir` against its version record
/// and repair them (see the module comment). Returns the record (made now for
/// a vault that had none), the repairs made, and the repository to use.
pub(super) fn check_refs(
    vault_dir: &Path,
    file: &VersionFile,
    gcm: &Gcm,
    repo: Repository,
) -> Result<(Version, Vec<String>, Repository)> {
    let git_dir = repo.path().to_path_buf();
    let git = git_dir.display().to_string();
    let refs = read_refs(&repo);
    let Some(rec) = file.load()? else {
        // No record yet (a vault made before it existed): the refs must be
        // readable, and become the record.
        let main = refs.main.ok_or_else(|| {
            Error::corrupt(
                &git,
                "main is missing or unreadable and there is no version record to repair it from",
            )
        })?;
        // Only an authentic version becomes the record; a damaged or forged
        // one is left for the seal to refuse and `fsck` to report.
        let mut authentic = check_commit(&repo, gcm, main, "main").is_ok();
        let (head, attached, repairs) = match refs.head {
            Some(None) => (main, true, Vec::new()),
            Some(Some(id)) => {
                authentic &= check_commit(&repo, gcm, id, "HEAD").is_ok();
                (id, false, Vec::new())
            }
            None => {
                write_head(&git_dir, None)?;
                let msg = "HEAD was unreadable: attached it to main".to_string();
                tracing::warn!("{}: {msg}", vault_dir.display());
                (main, true, vec![msg])
            }
        };
        let rec = Version {
            counter: 1,
            main,
            head,
            attached,
        };
        if !authentic {
            return Ok((rec, repairs, repo));
        }
        file.store(&rec)?;
        tracing::info!(
            "{}: recorded the current version {main} in {}",
            vault_dir.display(),
            file.path().display()
        );
        if repairs.is_empty() {
            return Ok((rec, repairs, repo));
        }
        drop(repo);
        return Ok((rec, repairs, open_repo(vault_dir)?));
    };
    // Refs that agree with the record need no check here: a damaged commit
    // there is for the seal to refuse and `fsck` to report. Refs are only
    // ever rewritten to an authentic commit.
    let mut repairs = Vec::new();
    if refs.main != Some(rec.main) {
        check_commit(&repo, gcm, rec.main, "main")?;
        let was = match refs.main {
            Some(id) => format!("named {id}"),
            None => "was missing or unreadable".to_string(),
        };
        write_main(&git_dir, rec.main)?;
        repairs.push(format!(
            "main {was}; set to {} from the version record",
            rec.main
        ));
    }
    let want_head = if rec.attached { None } else { Some(rec.head) };
    if refs.head != Some(want_head) {
        check_commit(&repo, gcm, rec.head, "HEAD")?;
        let was = match refs.head {
            Some(None) => "was attached to main".to_string(),
            Some(Some(id)) => format!("was detached at {id}"),
            None => "was missing or unreadable".to_string(),
        };
        write_head(&git_dir, want_head)?;
        let now = match want_head {
            None => "attached it to main".to_string(),
            Some(id) => format!("detached it at {id}"),
        };
        repairs.push(format!("HEAD {was}; {now} from the version record"));
    }
    if repairs.is_empty() {
        return Ok((rec, repairs, repo));
    }
    for r in &repairs {
        tracing::warn!("{}: repaired: {r}", vault_dir.display());
    }
    // A fresh handle reads the rewritten refs.
    drop(repo);
    Ok((rec, repairs, open_repo(vault_dir)?))
}

/// pkfs keeps no git index (see `stage.rs`): one left by an older pkfs, or
/// by git itself, is removed, so that nothing can come to depend on it and a
/// `git status` in the vault compares with HEAD afresh. Returns the repair
/// made when the file was damaged (what a cut used to leave), else `None`.
pub(super) fn remove_index(repo: &Repository) -> Result<Option<String>> {
    let path = repo.path().join("index");
    let damaged = match std::fs::metadata(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(&path, e)),
        Ok(m) if m.len() == 0 => Some("was empty"),
        Ok(_) => git2::Index::open(&path).err().map(|_| "could not be read"),
    };
    std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
    fsync_dir(repo.path())?;
    Ok(damaged.map(|what| {
        format!("the git index {what}; removed it (pkfs keeps no index: commits build their trees from HEAD's)")
    }))
}

impl History {
    /// Record, durably and before the refs move, that main is at `main` and
    /// HEAD at `head` (attached to main or not). The objects they name must
    /// be durable already.
    pub(super) fn record_version(&self, main: Oid, head: Oid, attached: bool) -> Result<()> {
        let counter = self.version.get().map_or(0, |v| v.counter) + 1;
        let rec = Version {
            counter,
            main,
            head,
            attached,
        };
        self.version_file.store(&rec)?;
        self.version.set(Some(rec));
        Ok(())
    }

    /// What the last open found wrong with the refs and repaired.
    pub fn ref_repairs(&self) -> Vec<String> {
        self.repairs.borrow().clone()
    }
}

/// Make the trees and the commit a commit just wrote durable (libgit2 writes
/// them without fsync): every tree of `new` that `old` does not have at the
/// same place, and the commit object, when they are loose. Done by pkfs
/// rather than by libgit2's own fsync option, which fsyncs each object and
/// its directory one after the other (it tripled the commit of 2000 files in
/// 100 directories); here they go in parallel, after one `syncfs`.
pub(super) fn sync_commit_objects(
    repo: &Repository,
    new: &git2::Tree<'_>,
    old: Option<&git2::Tree<'_>>,
    commit: Oid,
) -> Result<()> {
    let objects = repo.path().join("objects");
    let mut ids = vec![commit];
    new_trees(repo, new, old, &mut ids)?;
    let paths: Vec<std::path::PathBuf> = ids
        .iter()
        .map(|id| {
            let hex = id.to_string();
            objects.join(&hex[..2]).join(&hex[2..])
        })
        .filter(|p| p.is_file())
        .collect();
    crate::store::stage::sync_objects(&objects, &paths)
}

/// The trees of `new` not in `old` at the same place (`new` itself included).
fn new_trees(
    repo: &Repository,
    new: &git2::Tree<'_>,
    old: Option<&git2::Tree<'_>>,
    out: &mut Vec<Oid>,
) -> Result<()> {
    if old.map(|o| o.id()) == Some(new.id()) {
        return Ok(());
    }
    out.push(new.id());
    for entry in new.iter() {
        if entry.kind() != Some(git2::ObjectType::Tree) {
            continue;
        }
        let before = match (old, entry.name().ok()) {
            (Some(o), Some(name)) => o
                .get_name(name)
                .filter(|e| e.kind() == Some(git2::ObjectType::Tree))
                .and_then(|e| repo.find_tree(e.id()).ok()),
            _ => None,
        };
        if before.as_ref().map(|t| t.id()) == Some(entry.id()) {
            continue;
        }
        let sub = repo.find_tree(entry.id()).ctx("reading a new tree")?;
        new_trees(repo, &sub, before.as_ref(), out)?;
    }
    Ok(())
}

/// fsync the loose ref (or `HEAD`) `name` of `repo` and its directory, as
/// libgit2 wrote it without fsync. A ref that is not loose is left alone.
pub(super) fn sync_ref(repo: &Repository, name: &str) -> Result<()> {
    let path = repo.path().join(name);
    match std::fs::File::open(&path) {
        Ok(f) => f.sync_all().map_err(|e| Error::io(&path, e))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(&path, e)),
    }
    match path.parent() {
        Some(dir) => fsync_dir(dir),
        None => Ok(()),
    }
}

#[cfg(test)]
#[path = "history_repair_tests.rs"]
mod tests;
