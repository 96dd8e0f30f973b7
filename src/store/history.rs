//! The hidden git history of one vault.
//!
//! # Layout
//!
//! A vault directory `V` holds the repository `V/.git` (work tree `V`) and the
//! encrypted tree `V/contents/...`. Only `contents/` is tracked, and it holds
//! ciphertext only, so git never sees a plaintext name or byte.
//!
//! * `refs/heads/main` is the latest version. HEAD is normally attached to it; after
//!   [`History::checkout`] of an older version HEAD is detached at that commit.
//! * A commit made while HEAD is detached at `B` (main at `D`) continues from `B`
//!   (Polykey's linear history). `D` is first saved under
//!   `refs/pkfs/discarded/<unix-nanos>` so nothing is lost until [`History::gc`].
//! * `.git/info/attributes` unsets every content filter (`-text -eol -ident ...`)
//!   and the repository's configuration is read from `.git/config` only, so user or
//!   system git settings can neither rewrite ciphertext nor leak an identity.
//!   Ignore rules are overridden when staging (`add --force`).
//!
//! # Commit messages
//!
//! Author and committer are `pkfs <pkfs@localhost>`. The message is
//!
//! ```text
//! pkfs
//!
//! base64(iv | tag | AES-256-GCM(json([Change, ...])))
//! ```
//!
//! sealed with `hkdf32(vault_key, None, "pkfs history v1")` and the AAD
//! `"pkfs history v1"` (standard base64 alphabet, padded). [`History::log`]
//! decrypts it; a message that does not authenticate is [`Error::Corrupt`].
//!
//! # Concurrency
//!
//! One `History` per vault at a time, with its calls serialized by the caller: a
//! commit racing a `gc` of the same repository could lose objects.

use std::cell::RefCell;
use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use git2::{
    Commit, Config, ConfigLevel, ErrorCode, Oid, Repository, RepositoryInitOptions,
    RepositoryOpenFlags, Signature, Sort,
};

use super::dirfd::DirFd;
use super::journal::Journal;
use super::stage::{Builder, Touched};
use super::version::{Version, VersionFile};
use super::Change;
use crate::crypto::aead::Gcm;
use crate::crypto::kdf::hkdf32;
use crate::crypto::SymKey;
use crate::error::{Error, Result};

/// The branch that holds the latest version.
pub const MAIN_REF: &str = "refs/heads/main";
/// Prefix of the private refs that keep discarded versions until `gc`.
pub const DISCARDED_PREFIX: &str = "refs/pkfs/discarded/";
/// The only tracked directory of the work tree.
const TRACKED: &str = "contents";
/// HKDF info and AEAD associated data of commit messages.
const MSG_DOMAIN: &[u8] = b"pkfs history v1";
/// The plaintext first line and blank line of every commit message.
const MSG_HEADER: &str = "pkfs\n\n";
const AUTHOR_NAME: &str = "pkfs";
const AUTHOR_EMAIL: &str = "pkfs@localhost";
/// Ciphertext is opaque bytes: no end-of-line conversion, no filters, ever.
const ATTRIBUTES: &str = "* -text -eol -ident -filter -diff -merge -working-tree-encoding\n";

/// One version in [`History::log`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// Full hex commit id.
    pub id: String,
    /// Commit time, unix seconds.
    pub time: i64,
    pub changes: Vec<Change>,
    /// Only with `all`: reachable only from a discarded ref.
    pub discarded: bool,
    /// HEAD points here.
    pub head: bool,
}

/// Where the vault currently is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadInfo {
    pub id: String,
    /// HEAD is main's tip.
    pub at_latest: bool,
    /// Number of commits reachable from HEAD.
    pub commits: usize,
}

/// What [`History::gc`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GcReport {
    pub discarded_refs_removed: usize,
    pub objects_before: usize,
    pub objects_after: usize,
}

/// The git history of one vault. `Send`, not `Sync` (like `git2::Repository`).
pub struct History {
    /// Replaced by a fresh handle after `gc` rewrites the pack files.
    repo: RefCell<Repository>,
    /// Seals and opens commit messages.
    gcm: Gcm,
    vault_dir: PathBuf,
    /// Backing paths that may differ from HEAD (see `journal.rs`).
    journal: RefCell<Journal>,
    /// Tag lists of the big committed blobs (see `tags.rs`).
    tags: std::sync::Arc<super::tags::TagStore>,
    /// Directories made whose IV may not be on disk yet (see
    /// `history_recover.rs`): the next fsync or commit syncs them.
    unsynced_dirs: RefCell<Vec<PathBuf>>,
    /// The version record (see `version.rs`), and what it says now.
    version_file: VersionFile,
    version: std::cell::Cell<Option<Version>>,
    /// What the open repaired in the refs (for `fsck` to report).
    repairs: RefCell<Vec<String>>,
    /// Seals and opens the mode records (`store/modes/history.rs`).
    modes: crate::format::modes::ModeCipher,
}

/// Attach context to a git2 error.
trait Ctx<T> {
    fn ctx(self, what: &str) -> Result<T>;
}

impl<T> Ctx<T> for std::result::Result<T, git2::Error> {
    fn ctx(self, what: &str) -> Result<T> {
        self.map_err(|e| Error::History(format!("{what}: {}", e.message())))
    }
}

impl History {
    /// Create `V/.git` (work tree `V`) and make the initial commit of `V/contents`,
    /// which the caller has already populated, recording `changes`.
    pub fn init(vault_dir: &Path, vault_key: &SymKey, changes: &[Change]) -> Result<History> {
        let git_dir = vault_dir.join(".git");
        if fs::symlink_metadata(&git_dir).is_ok() {
            return Err(Error::History(format!(
                "{} already exists; refusing to create a history there",
                git_dir.display()
            )));
        }
        let made = Self::create_repo(vault_dir, &git_dir)
            .and_then(|()| Self::open_inner(vault_dir, vault_key, true))
            .and_then(|h| h.commit_inner(changes, true).map(|_| h));
        if made.is_err() {
            // Best effort: leave no half-made repository behind.
            let _ = fs::remove_dir_all(&git_dir);
        }
        made
    }

    fn create_repo(vault_dir: &Path, git_dir: &Path) -> Result<()> {
        let mut opts = RepositoryInitOptions::new();
        opts.bare(false)
            .no_reinit(true)
            .mkdir(false)
            .mkpath(false)
            .external_template(false)
            .initial_head("main");
        drop(Repository::init_opts(vault_dir, &opts).ctx("creating the history repository")?);
        let mut cfg =
            Config::open(&git_dir.join("config")).ctx("opening the repository configuration")?;
        for (name, value) in [
            ("core.autocrlf", "false"),
            ("core.safecrlf", "false"),
            ("core.logAllRefUpdates", "false"),
            ("gc.auto", "0"),
        ] {
            cfg.set_str(name, value)
                .ctx("writing the repository configuration")?;
        }
        write_attributes(git_dir)
    }

    /// Open the history of the vault at `vault_dir`.
    ///
    /// The refs are first checked against the version record and repaired
    /// from it (`history_version.rs`); a record that does not authenticate,
    /// or refs that are unreadable with no record, refuse the vault as corrupt.
    pub fn open(vault_dir: &Path, vault_key: &SymKey) -> Result<History> {
        Self::open_inner(vault_dir, vault_key, false)
    }

    /// [`History::open`]; `fresh`: a repository just made, before its first
    /// commit (no refs, no record yet).
    fn open_inner(vault_dir: &Path, vault_key: &SymKey, fresh: bool) -> Result<History> {
        let repo = open_repo(vault_dir)?;
        write_attributes(repo.path())?;
        let key = hkdf32(vault_key, None, MSG_DOMAIN);
        let gcm = Gcm::new(&key);
        let version_file = VersionFile::new(vault_dir, vault_key);
        let (version, repairs, repo) = if fresh {
            (None, Vec::new(), repo)
        } else {
            let (v, mut r, repo) = version::check_refs(vault_dir, &version_file, &gcm, repo)?;
            if let Some(fixed) = version::remove_index(&repo)? {
                tracing::warn!("{}: repaired: {fixed}", vault_dir.display());
                r.push(fixed);
            }
            (Some(v), r, repo)
        };
        // An unreadable HEAD binds no journal record (fsck reports the HEAD).
        let head = head_target(&repo).ok().flatten();
        let journal = Journal::load(vault_dir, vault_key, head)?;
        let h = History {
            repo: RefCell::new(repo),
            gcm,
            vault_dir: vault_dir.to_path_buf(),
            journal: RefCell::new(journal),
            tags: std::sync::Arc::new(super::tags::TagStore::new(vault_dir, vault_key)),
            unsynced_dirs: RefCell::new(Vec::new()),
            version_file,
            version: std::cell::Cell::new(version),
            repairs: RefCell::new(repairs),
            modes: crate::format::modes::ModeCipher::new(vault_key),
        };
        h.finish_interrupted_checkout()?;
        h.finish_interrupted_command();
        h.quarantine_lost_dirs();
        super::reaper::resume(vault_dir);
        Ok(h)
    }

    /// Stage everything under `contents/` (additions, modifications and removals)
    /// and commit it with the encrypted `changes`. When HEAD is detached at an older
    /// version, the later versions are saved under a discarded ref and the new commit
    /// continues from HEAD. Returns the new commit id (hex), or HEAD's id when the
    /// tree did not change (then nothing is committed).
    pub fn commit(&self, changes: &[Change]) -> Result<String> {
        self.commit_inner(changes, false)
    }

    /// [`History::commit`]; only the first commit of [`History::init`] may be
    /// a root commit (`root`): a vault whose main is gone is never restarted.
    fn commit_inner(&self, changes: &[Change], root: bool) -> Result<String> {
        // The modes set since HEAD go into their directories' records first.
        self.refresh_mode_records()?;
        let repo = self.repo.borrow();
        let repo = &*repo;
        // Only files, directories and symlinks are versioned: FIFOs, sockets and
        // device nodes made through the mount stay out of the history.
        // Only paths the journal covers are adopted: anything else that differs
        // from HEAD was not changed by pkfs and stays visible as tampering.
        // A path moved since HEAD (or chmodded) is adopted only if it still
        // holds HEAD's blob of the path it came from. The tree is HEAD's with
        // the journaled paths read again (`stage_build.rs`): no index, no full
        // path, and the files it records are durable once it returns.
        let journal = self.journal.borrow();
        let head = head_target(repo)?;
        let head_tree = match head {
            Some(h) => Some(
                repo.find_commit(h)
                    .and_then(|c| c.tree())
                    .ctx("reading HEAD's tree")?,
            ),
            None => None,
        };
        let touched = match head_tree {
            None => Touched::everything_under(TRACKED),
            Some(_) => Touched::from_paths(TRACKED, journal.changes().touched()),
        };
        let adopt = super::stage::by_journal(&journal, head_tree.as_ref());
        let workdir = DirFd::open(&self.vault_dir).map_err(|e| Error::io(&self.vault_dir, e))?;
        let (tree_id, _) = Builder::new(repo, &adopt, Some(&self.tags))?.build(
            &workdir,
            head_tree.as_ref(),
            &touched,
        )?;
        drop(adopt);
        drop(journal);
        // A mutation that changed no byte (say, rewriting a secret with its own
        // content) makes no commit, and so discards no later versions either.
        if let (Some(head), Some(tree)) = (head, &head_tree) {
            if tree.id() == tree_id {
                self.journal.borrow_mut().reset(Some(head))?;
                return Ok(head.to_string());
            }
        }
        let tree = repo.find_tree(tree_id).ctx("reading the new tree")?;
        let parent = match self.prepare_parent(repo)? {
            Some(id) => Some(repo.find_commit(id).ctx("reading the parent commit")?),
            None if root => None,
            None => {
                return Err(Error::corrupt(
                    repo.path().display(),
                    "the vault has no current version (main is missing); \
                     refusing to start a new history",
                ))
            }
        };
        let parents: Vec<&Commit<'_>> = parent.iter().collect();
        let parent_ids: Vec<Oid> = parents.iter().map(|c| c.id()).collect();
        let message = self.seal_message(changes, tree_id, &parent_ids)?;
        let sig = signature()?;
        // The work tree's files and directories it records, then the objects
        // (blobs and trees by the builder, the commit here), all durable; then
        // the version record, then the ref: a power cut leaves the old version
        // or the new one with the work tree matching it, and a ref that is not
        // the record's is rewritten from it at open (`history_version.rs`).
        let id = repo
            .commit(None, &sig, &sig, &message, &tree, &parents)
            .ctx("creating the commit")?;
        version::sync_commit_objects(repo, &tree, head_tree.as_ref(), id)?;
        // Every directory made since the last commit is journaled, so the
        // builder fsync'd it, its IV and its parent already.
        self.unsynced_dirs.borrow_mut().clear();
        self.record_version(id, id, true)?;
        super::atomic::crash_point("commit-after-record");
        repo.reference(MAIN_REF, id, true, "pkfs: commit")
            .ctx("moving main to the new version")?;
        self.journal.borrow_mut().reset(Some(id))?;
        Ok(id.to_string())
    }

    /// Attach HEAD to main, first moving main back to a detached HEAD (and saving
    /// the versions this discards). Returns the parent of the next commit.
    fn prepare_parent(&self, repo: &Repository) -> Result<Option<Oid>> {
        let main = main_tip(repo)?;
        let detached = repo.head_detached().ctx("reading HEAD")?;
        if !detached {
            let head_ref = repo.find_reference("HEAD").ctx("reading HEAD")?;
            if head_ref.symbolic_target_bytes() != Some(MAIN_REF.as_bytes()) {
                repo.set_head(MAIN_REF).ctx("attaching HEAD to main")?;
            }
            return Ok(main);
        }
        let at = head_target(repo)?
            .ok_or_else(|| Error::History("HEAD is detached but names no commit".into()))?;
        if let Some(latest) = main.filter(|&m| m != at) {
            save_discarded(repo, latest)?;
        }
        repo.reference(MAIN_REF, at, true, "pkfs: continue from an older version")
            .ctx("moving main to HEAD")?;
        repo.set_head(MAIN_REF).ctx("attaching HEAD to main")?;
        Ok(Some(at))
    }

    /// Versions newest first: main's history (and HEAD's, were it elsewhere), plus,
    /// with `all`, the versions only a discarded ref keeps (`discarded: true`).
    pub fn log(&self, limit: Option<usize>, all: bool) -> Result<Vec<LogEntry>> {
        let repo = self.repo.borrow();
        let repo = &*repo;
        let head = head_target(repo)?;
        let mut tips: Vec<Oid> = main_tip(repo)?.into_iter().chain(head).collect();
        let current = if all {
            let current = reachable(repo, &tips)?;
            tips.extend(discarded_refs(repo)?.into_iter().map(|(_, id)| id));
            Some(current)
        } else {
            None
        };
        let mut walk = new_walk(repo, &tips)?;
        walk.set_sorting(Sort::TIME | Sort::TOPOLOGICAL)
            .ctx("sorting the history")?;
        let mut out = Vec::new();
        for id in walk {
            if limit.is_some_and(|n| out.len() >= n) {
                break;
            }
            let id = id.ctx("walking the history")?;
            let commit = repo.find_commit(id).ctx("reading a commit")?;
            out.push(LogEntry {
                id: id.to_string(),
                time: commit.time().seconds(),
                changes: self.open_message(&commit)?,
                discarded: current.as_ref().is_some_and(|c| !c.contains(&id)),
                head: Some(id) == head,
            });
        }
        Ok(out)
    }

    /// Where HEAD is.
    pub fn head(&self) -> Result<HeadInfo> {
        let repo = self.repo.borrow();
        let repo = &*repo;
        let head = head_target(repo)?.ok_or_else(no_versions)?;
        Ok(HeadInfo {
            id: head.to_string(),
            at_latest: main_tip(repo)? == Some(head),
            commits: reachable(repo, &[head])?.len(),
        })
    }

    fn seal_message(&self, changes: &[Change], tree: Oid, parents: &[Oid]) -> Result<String> {
        let json = zeroize::Zeroizing::new(
            serde_json::to_vec(changes)
                .map_err(|e| Error::History(format!("encoding the change list: {e}")))?,
        );
        let env = self.gcm.seal_envelope(&message_aad(tree, parents), &json);
        Ok(format!("{MSG_HEADER}{}\n", B64.encode(env)))
    }

    fn open_message(&self, commit: &Commit<'_>) -> Result<Vec<Change>> {
        open_message_with(&self.gcm, commit)
    }
}

/// Authenticate and decrypt the change list of `commit` with the message key.
fn open_message_with(gcm: &Gcm, commit: &Commit<'_>) -> Result<Vec<Change>> {
    let what = || format!("commit {}", commit.id());
    let bad = || Error::corrupt(what(), "commit message does not authenticate");
    let body = commit
        .message_raw_bytes()
        .strip_prefix(MSG_HEADER.as_bytes())
        .ok_or_else(bad)?;
    let env = B64.decode(body.trim_ascii()).map_err(|_| bad())?;
    let aad = message_aad(commit.tree_id(), &commit.parent_ids().collect::<Vec<_>>());
    let plain = gcm.open_envelope(&aad, &env).map_err(|_| bad())?;
    serde_json::from_slice(&plain)
        .map_err(|_| Error::corrupt(what(), "commit message holds no change list"))
}

fn no_versions() -> Error {
    Error::Usage("the vault has no versions yet".into())
}

fn bad_spec(spec: &str) -> Error {
    Error::Usage(format!(
        "bad version {spec:?}: use `latest`, `HEAD~N`, or a commit id prefix of at least 4 hex digits"
    ))
}

/// Open `V/.git` without searching parents or reading the environment, and make it
/// read its configuration from `.git/config` only.
fn open_repo(vault_dir: &Path) -> Result<Repository> {
    let git_dir = vault_dir.join(".git");
    if !git_dir.is_dir() {
        return Err(Error::History(format!(
            "no history repository at {}",
            git_dir.display()
        )));
    }
    let repo = Repository::open_ext(
        &git_dir,
        RepositoryOpenFlags::NO_SEARCH,
        std::iter::empty::<&std::ffi::OsStr>(),
    )
    .ctx("opening the history repository")?;
    if repo.workdir().is_none() {
        return Err(Error::History(format!(
            "{} is a bare repository",
            git_dir.display()
        )));
    }
    let mut cfg = Config::new().ctx("creating a configuration")?;
    cfg.add_file(&repo.path().join("config"), ConfigLevel::Local, false)
        .ctx("reading the repository configuration")?;
    repo.set_config(&cfg)
        .ctx("isolating the repository configuration")?;
    Ok(repo)
}

/// (Re)write `.git/info/attributes` unless it already says exactly what we want.
fn write_attributes(git_dir: &Path) -> Result<()> {
    let info = git_dir.join("info");
    let path = info.join("attributes");
    if fs::read(&path).is_ok_and(|b| b == ATTRIBUTES.as_bytes()) {
        return Ok(());
    }
    fs::create_dir_all(&info).map_err(|e| Error::io(&info, e))?;
    fs::write(&path, ATTRIBUTES).map_err(|e| Error::io(&path, e))
}

fn signature() -> Result<Signature<'static>> {
    Signature::now(AUTHOR_NAME, AUTHOR_EMAIL).ctx("making the commit signature")
}

/// Main's tip, `None` before the first commit.
fn main_tip(repo: &Repository) -> Result<Option<Oid>> {
    match repo.find_reference(MAIN_REF) {
        Ok(r) => Ok(Some(r.peel_to_commit().ctx("resolving main")?.id())),
        Err(e) if e.code() == ErrorCode::NotFound => Ok(None),
        Err(e) => Err(e).ctx("reading main"),
    }
}

/// The commit HEAD points to, `None` before the first commit.
fn head_target(repo: &Repository) -> Result<Option<Oid>> {
    match repo.head() {
        Ok(r) => Ok(Some(r.peel_to_commit().ctx("resolving HEAD")?.id())),
        Err(e) if matches!(e.code(), ErrorCode::UnbornBranch | ErrorCode::NotFound) => Ok(None),
        Err(e) => Err(e).ctx("reading HEAD"),
    }
}

/// `(name, commit)` of every discarded ref.
fn discarded_refs(repo: &Repository) -> Result<Vec<(String, Oid)>> {
    let mut out = Vec::new();
    let glob = format!("{DISCARDED_PREFIX}*");
    for r in repo.references_glob(&glob).ctx("listing discarded refs")? {
        let r = r.ctx("reading a discarded ref")?;
        let name = String::from_utf8_lossy(r.name_bytes()).into_owned();
        let id = r.peel_to_commit().ctx("resolving a discarded ref")?.id();
        out.push((name, id));
    }
    Ok(out)
}

/// Keep `latest` reachable under a fresh discarded ref.
fn save_discarded(repo: &Repository, latest: Oid) -> Result<()> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    for n in 0..1000u32 {
        let name = match n {
            0 => format!("{DISCARDED_PREFIX}{nanos:020}"),
            _ => format!("{DISCARDED_PREFIX}{nanos:020}-{n}"),
        };
        match repo.reference(&name, latest, false, "pkfs: discard later versions") {
            // Durable: the record does not name it, nothing else keeps it.
            Ok(_) => return version::sync_ref(repo, &name),
            Err(e) if e.code() == ErrorCode::Exists => continue,
            Err(e) => return Err(e).ctx("saving the discarded versions"),
        }
    }
    Err(Error::History("no free name for a discarded ref".into()))
}

fn new_walk<'r>(repo: &'r Repository, tips: &[Oid]) -> Result<git2::Revwalk<'r>> {
    let mut walk = repo.revwalk().ctx("walking the history")?;
    for &t in tips {
        walk.push(t).ctx("walking the history")?;
    }
    Ok(walk)
}

fn reachable(repo: &Repository, tips: &[Oid]) -> Result<HashSet<Oid>> {
    new_walk(repo, tips)?
        .map(|id| id.ctx("walking the history"))
        .collect()
}

/// Resolve a version spec to a commit (not yet checked against main's history).
fn resolve_spec(repo: &Repository, spec: &str, main: Oid) -> Result<Oid> {
    let s = spec.trim();
    if s.eq_ignore_ascii_case("latest") {
        return Ok(main);
    }
    if let Some(rest) = s.strip_prefix("HEAD") {
        let n: u64 = match rest.strip_prefix('~') {
            None if rest.is_empty() => 0,
            Some("") => 1,
            Some(num) if num.bytes().all(|b| b.is_ascii_digit()) => {
                num.parse().map_err(|_| bad_spec(spec))?
            }
            _ => return Err(bad_spec(spec)),
        };
        let mut id = head_target(repo)?.ok_or_else(no_versions)?;
        for back in 0..n {
            let commit = repo.find_commit(id).ctx("reading a commit")?;
            id = commit.parent_id(0).map_err(|_| {
                Error::Usage(format!("{spec}: HEAD has only {back} older version(s)"))
            })?;
        }
        return Ok(id);
    }
    if (4..=40).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return match repo.find_commit_by_prefix(&s.to_ascii_lowercase()) {
            Ok(c) => Ok(c.id()),
            Err(e) if e.code() == ErrorCode::Ambiguous => Err(Error::Usage(format!(
                "version {spec} is ambiguous: give more hex digits"
            ))),
            Err(e) if e.code() == ErrorCode::NotFound => {
                Err(Error::Usage(format!("no version {spec} in this vault")))
            }
            Err(e) => Err(e).ctx("looking up the version"),
        };
    }
    Err(bad_spec(spec))
}

#[path = "history_checkout.rs"]
mod checkout;
pub use checkout::take_checkouts;
#[path = "history_fsck.rs"]
mod fsck;
#[path = "history_gc.rs"]
mod gc;
#[path = "modes/history.rs"]
mod modes_record;
#[path = "history_recover.rs"]
mod recover;
#[path = "history_seal.rs"]
mod seal;
#[path = "history_undo.rs"]
mod undo;
#[path = "history_version.rs"]
mod version;
#[path = "versions/mod.rs"]
pub mod versions;
pub use fsck::{GitCheck, GitProblem, HeadFiles};
#[cfg(test)]
use gc::list_dir;
pub use seal::{message_aad, remove_stale_locks};

#[cfg(test)]
#[path = "history_tests.rs"]
mod tests;
