//! The mode records in the history: written before each commit for the
//! directories the journal touched, applied after each checkout, compared
//! with the live modes by `fsck` (layout: `format/modes.rs`; the live mode
//! of an entry is the one `store/modes` keeps on its backing entry).
//!
//! A child module of `history` (it reads the journal and HEAD's tree), called
//! from one line in each of `History::commit` and `History::checkout_commit`.
//!
//! Trust: a live mode goes into a record only when the journal says pkfs set
//! it since HEAD (the entry is new or changed, or a chmod was journaled for
//! it, see `Changes::mode_changed`). Any other entry keeps the mode HEAD's
//! record gives the path it came from, so a mode changed at rest is never
//! committed. A vault whose HEAD has no record in `contents/` (made before
//! records existed) is migrated at its next commit: every directory gets its
//! record from the live modes, once. Records are read from git objects under
//! an authenticated HEAD or target, never from the work tree.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use git2::{ObjectType, Repository, Tree};

use super::{head_target, Ctx, History, TRACKED};
use crate::error::{Error, Result};
use crate::format::modes::{default_mode, ModeCipher, ModeMap, MODES_FILE, SELF_ENTRY};
use crate::format::names::{self, EntryKind, DIRIV_FILE};
use crate::store::changes::{Changes, Origin};
use crate::store::modes::live_mode;

/// The parent of backing path `rel` (`contents/a/b` → `contents/a`).
fn parent(rel: &str) -> Option<&str> {
    rel.rfind('/').map(|i| &rel[..i])
}

fn last(rel: &str) -> &str {
    rel.rfind('/').map_or(rel, |i| &rel[i + 1..])
}

/// A backing entry name that names a plaintext entry.
fn is_entry(name: &str) -> bool {
    matches!(names::classify(name), EntryKind::Direct | EntryKind::Long)
}

/// The record of the directory `tree`, whose backing path is `rel`: `None`
/// without a record; an error when it does not open.
fn record_in(
    repo: &Repository,
    cipher: &ModeCipher,
    tree: &Tree<'_>,
    rel: &str,
) -> Result<Option<ModeMap>> {
    let Some(entry) = tree.get_name(MODES_FILE) else {
        return Ok(None);
    };
    let corrupt = |why: String| Error::corrupt(format!("{rel}/{MODES_FILE}"), why);
    let blob = |name: &str| -> Result<Vec<u8>> {
        let e = tree
            .get_name(name)
            .ok_or_else(|| corrupt(format!("the directory has no {name}")))?;
        let b = repo
            .find_blob(e.id())
            .map_err(|e| corrupt(format!("cannot read {name}: {e}")))?;
        Ok(b.content().to_vec())
    };
    let iv: [u8; 16] = blob(DIRIV_FILE)?
        .as_slice()
        .try_into()
        .map_err(|_| corrupt("the directory IV is not 16 bytes".into()))?;
    let bytes = repo
        .find_blob(entry.id())
        .map_err(|e| corrupt(format!("cannot read it: {e}")))?;
    cipher
        .open(&iv, bytes.content())
        .map(Some)
        .map_err(|e| corrupt(e.to_string()))
}

/// HEAD's records, read once per directory.
struct HeadRecords<'r> {
    repo: &'r Repository,
    root: Option<Tree<'r>>,
    cipher: &'r ModeCipher,
    cache: HashMap<String, Option<ModeMap>>,
}

impl HeadRecords<'_> {
    /// HEAD's record of directory `dir` (`None`: no such directory or record).
    fn of(&mut self, dir: &str) -> Result<Option<&ModeMap>> {
        if !self.cache.contains_key(dir) {
            let rec = match &self.root {
                None => None,
                Some(root) => match sub_tree(self.repo, root, dir) {
                    Some(t) => record_in(self.repo, self.cipher, &t, dir)?,
                    None => None,
                },
            };
            self.cache.insert(dir.to_string(), rec);
        }
        Ok(self.cache.get(dir).and_then(|r| r.as_ref()))
    }

    /// The mode HEAD gives the entry at `rel` (a directory keeps its own).
    fn mode_of(&mut self, rel: &str, is_dir: bool, exec: bool) -> Result<u32> {
        let (dir, name) = if is_dir {
            (rel, SELF_ENTRY)
        } else {
            (parent(rel).unwrap_or(rel), last(rel))
        };
        let got = self.of(dir)?.and_then(|m| m.get(name).copied());
        Ok(got.unwrap_or_else(|| default_mode(is_dir, exec)))
    }
}

/// The tree at backing path `rel` (`contents/...`) under the commit's root.
fn sub_tree<'r>(repo: &'r Repository, root: &Tree<'r>, rel: &str) -> Option<Tree<'r>> {
    let e = root.get_path(Path::new(rel)).ok()?;
    (e.kind() == Some(ObjectType::Tree))
        .then(|| repo.find_tree(e.id()).ok())
        .flatten()
}

/// Does the commit tree `root` hold mode records (made by a version that
/// keeps them)?
fn has_records(root: &Tree<'_>) -> bool {
    root.get_path(&Path::new(TRACKED).join(MODES_FILE)).is_ok()
}

/// Every backing directory below `abs` (relative paths from `rel`).
fn all_dirs(abs: &Path, rel: &str, out: &mut BTreeSet<String>) {
    out.insert(rel.to_string());
    let Ok(rd) = std::fs::read_dir(abs) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if is_entry(&name) && e.file_type().is_ok_and(|t| t.is_dir()) {
            all_dirs(&e.path(), &format!("{rel}/{name}"), out);
        }
    }
}

/// The directories whose records a commit of `changes` may change: the
/// directory of each journaled path, the path itself when it is a
/// directory, and all of a directory made since HEAD (the journal has no
/// record of what was made inside it).
fn touched_dirs(vault_dir: &Path, changes: &Changes) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for p in changes.touched_since(0) {
        if p != TRACKED && !p.starts_with(&format!("{TRACKED}/")) {
            continue;
        }
        if let Some(d) = parent(&p).filter(|d| d.starts_with(TRACKED)) {
            out.insert(d.to_string());
        }
        let abs = vault_dir.join(&p);
        if !std::fs::symlink_metadata(&abs).is_ok_and(|m| m.file_type().is_dir()) {
            continue;
        }
        if changes.origin(&p) == Origin::Changed {
            all_dirs(&abs, &p, &mut out);
        } else {
            out.insert(p);
        }
    }
    out.retain(|d| {
        std::fs::symlink_metadata(vault_dir.join(d)).is_ok_and(|m| m.file_type().is_dir())
    });
    out
}

/// Run `f` with the owner's write bit on backing directory `dir`, which a
/// mode the user set may have taken (the daemon's own user needs it to
/// replace the record).
/// Its access and modification times are kept too: the record is not
/// the user's change.
#[allow(clippy::unnecessary_cast)] // time_t and c_long differ between targets
fn with_write(dir: &Path, f: impl FnOnce() -> Result<()>) -> Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let m = std::fs::symlink_metadata(dir).map_err(|e| Error::io(dir, e))?;
    let mode = m.permissions().mode() & 0o7777;
    let set = |m: u32| {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(m))
            .map_err(|e| Error::io(dir, e))
    };
    let lend = mode & 0o200 == 0;
    if lend {
        set(mode | 0o200)?;
    }
    let res = f();
    if lend {
        set(mode)?;
    }
    let times = [
        libc::timespec {
            tv_sec: m.atime() as libc::time_t,
            tv_nsec: m.atime_nsec() as libc::c_long,
        },
        libc::timespec {
            tv_sec: m.mtime() as libc::time_t,
            tv_nsec: m.mtime_nsec() as libc::c_long,
        },
    ];
    let c = crate::store::stat::c_path(dir).map_err(|e| Error::io(dir, e))?;
    // SAFETY: a valid C string and two timespecs; checked.
    let rc = unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), 0) };
    if rc != 0 {
        return Err(Error::io(dir, std::io::Error::last_os_error()));
    }
    res
}

/// Remove the temporary files of [`write_record`] that a crash left in
/// `vault_dir` (only this process writes records while it holds the vault).
fn remove_stale_temps(vault_dir: &Path) {
    let Ok(rd) = std::fs::read_dir(vault_dir) else {
        return;
    };
    for e in rd.flatten() {
        if e.file_name().to_string_lossy().starts_with(".tmp-modes-") {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Replace `path` with `data` durably, through a temporary file in
/// `tmp_dir` (outside `contents/`: one a crash leaves there is nobody's
/// finding) renamed into place; then the directory is fsync'd.
fn write_record(tmp_dir: &Path, path: &Path, data: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(tmp_dir);
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-modes-")
        .tempfile_in(tmp_dir)
        .map_err(|e| Error::io(tmp_dir, e))?;
    tmp.write_all(data).map_err(|e| Error::io(path, e))?;
    tmp.as_file().sync_all().map_err(|e| Error::io(path, e))?;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    crate::store::atomic::fsync_dir(dir)
}

impl History {
    /// Before a commit: bring the mode record of every directory the journal
    /// touched up to date (journaled first, like any other change), so the
    /// commit holds the modes. See the module comment for whose mode counts.
    pub(super) fn refresh_mode_records(&self) -> Result<()> {
        remove_stale_temps(&self.vault_dir);
        let changes = self.journal.borrow().changes().clone();
        let repo = self.repo.borrow();
        let root = match head_target(&repo)? {
            Some(h) => Some(
                repo.find_commit(h)
                    .and_then(|c| c.tree())
                    .ctx("reading HEAD's tree")?,
            ),
            None => None,
        };
        let legacy = !root.as_ref().is_some_and(has_records);
        // The whole tree journaled (a hard-linked file's change): any
        // directory may hold a changed mode.
        let whole = changes.covers(TRACKED);
        let dirs = if legacy || whole {
            let mut all = BTreeSet::new();
            all_dirs(&self.vault_dir.join(TRACKED), TRACKED, &mut all);
            all
        } else {
            touched_dirs(&self.vault_dir, &changes)
        };
        let mut head = HeadRecords {
            repo: &repo,
            root,
            cipher: &self.modes,
            cache: HashMap::new(),
        };
        let mut pending = Vec::new();
        for d in dirs {
            pending.extend(self.refresh_dir(&d, &changes, &mut head, legacy)?);
        }
        if pending.is_empty() {
            return Ok(());
        }
        // Journaled durably before any record changes on disk.
        for p in &pending {
            self.journal.borrow_mut().mark(&p.rel)?;
        }
        self.journal.borrow().sync()?;
        for p in pending {
            p.write(&self.vault_dir)?;
        }
        Ok(())
    }

    /// The new record of backing directory `dir`, when it changes.
    fn refresh_dir(
        &self,
        dir: &str,
        changes: &Changes,
        head: &mut HeadRecords<'_>,
        legacy: bool,
    ) -> Result<Option<Pending>> {
        let abs = self.vault_dir.join(dir);
        let Ok(iv) = std::fs::read(abs.join(DIRIV_FILE)) else {
            return Ok(None); // a lost IV: `history_recover.rs` deals with it
        };
        let Ok(iv) = <[u8; 16]>::try_from(iv.as_slice()) else {
            return Ok(None);
        };
        let mut want = ModeMap::new();
        let mut entries = vec![(SELF_ENTRY.to_string(), dir.to_string())];
        for e in std::fs::read_dir(&abs).map_err(|e| Error::io(&abs, e))? {
            let e = e.map_err(|e| Error::io(&abs, e))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if is_entry(&name) {
                entries.push((name.clone(), format!("{dir}/{name}")));
            }
        }
        for (name, rel) in entries {
            let Some((live, is_dir)) = live_mode(&self.vault_dir.join(&rel)) else {
                continue;
            };
            if is_dir && name != SELF_ENTRY {
                continue; // in its own record
            }
            let exec = live & 0o100 != 0;
            let mode = if legacy || changes.mode_changed(&rel) {
                live
            } else {
                match changes.origin(&rel) {
                    Origin::Head(from) => head.mode_of(&from, is_dir, exec)?,
                    Origin::Changed => live,
                }
            };
            if mode != default_mode(is_dir, exec) {
                want.insert(name, mode);
            }
        }
        let rel = format!("{dir}/{MODES_FILE}");
        let path = abs.join(MODES_FILE);
        // The vault's top directory always has one: it marks a version that
        // keeps records.
        let keep_file = !want.is_empty() || dir == TRACKED;
        let current = std::fs::read(&path).ok();
        let unchanged = match &current {
            Some(bytes) => keep_file && self.modes.open(&iv, bytes).ok().as_ref() == Some(&want),
            None => !keep_file,
        };
        // A file that already says it counts only if the commit will take it:
        // journaled, or HEAD's own (else it stays HEAD's and fsck reports it).
        let committed = || {
            head.root
                .as_ref()
                .and_then(|r| r.get_path(Path::new(&rel)).ok())
                .zip(current.as_ref())
                .is_some_and(|(e, b)| {
                    git2::Oid::hash_object(ObjectType::Blob, b).ok() == Some(e.id())
                })
        };
        if unchanged && (changes.covers(&rel) || committed() || current.is_none()) {
            return Ok(None);
        }
        Ok(Some(Pending {
            rel,
            dir: abs,
            data: keep_file.then(|| self.modes.seal(&iv, &want)),
        }))
    }

    /// Before a checkout: lend the owner's write bit to every backing
    /// directory a mode took it from, so that libgit2 (and the reaper) can
    /// replace what is in it. Returns what to give back
    /// ([`History::apply_mode_records`]).
    pub(super) fn lend_dir_write(&self) -> Lent {
        use std::os::unix::fs::PermissionsExt;
        let mut dirs = BTreeSet::new();
        all_dirs(&self.vault_dir.join(TRACKED), TRACKED, &mut dirs);
        let mut lent = Vec::new();
        for d in dirs {
            let abs = self.vault_dir.join(&d);
            let Ok(m) = std::fs::symlink_metadata(&abs) else {
                continue;
            };
            let mode = m.permissions().mode() & 0o7777;
            if mode & 0o200 == 0
                && std::fs::set_permissions(&abs, std::fs::Permissions::from_mode(mode | 0o200))
                    .is_ok()
            {
                lent.push((abs, mode));
            }
        }
        Lent(lent)
    }

    /// After a checkout of `root`: give back what [`History::lend_dir_write`]
    /// lent, then give every file and directory the mode its version's
    /// record says (or the default). A version without records (made before
    /// them) is left as the checkout wrote it. A record that does not open is
    /// not applied: its directory is logged and keeps the modes it has
    /// (`fsck` reports the record).
    pub(super) fn apply_mode_records(&self, repo: &Repository, root: &Tree<'_>, lent: Lent) {
        use std::os::unix::fs::PermissionsExt;
        for (abs, mode) in lent.0 {
            let _ = std::fs::set_permissions(&abs, std::fs::Permissions::from_mode(mode));
        }
        if !has_records(root) {
            return;
        }
        let Some(top) = sub_tree(repo, root, TRACKED) else {
            return;
        };
        let mut stack = vec![(top, TRACKED.to_string())];
        while let Some((tree, rel)) = stack.pop() {
            let rec = match record_in(repo, &self.modes, &tree, &rel) {
                Ok(r) => r.unwrap_or_default(),
                Err(e) => {
                    tracing::warn!("modes not applied: {e}");
                    continue;
                }
            };
            let mut set = Vec::new();
            for e in tree.iter() {
                let Ok(name) = e.name() else { continue };
                if !is_entry(name) {
                    continue;
                }
                let child = format!("{rel}/{name}");
                match e.kind() {
                    Some(ObjectType::Tree) => {
                        if let Ok(t) = repo.find_tree(e.id()) {
                            stack.push((t, child));
                        }
                    }
                    Some(ObjectType::Blob) if e.filemode() != 0o120000 => {
                        let exec = e.filemode() == 0o100755;
                        let m = rec.get(name).copied().unwrap_or(default_mode(false, exec));
                        set.push((child, m, false));
                    }
                    _ => {}
                }
            }
            let own = rec.get(SELF_ENTRY).copied().unwrap_or(0o700);
            set.push((rel.clone(), own, true));
            for (child, mode, is_dir) in set {
                let abs = self.vault_dir.join(&child);
                // A directory is always set: its backing mode may differ
                // where the shown one does not.
                match live_mode(&abs) {
                    Some((m, d)) if (m == mode && !is_dir) || d != is_dir => continue,
                    None => continue,
                    Some(_) => {}
                }
                if let Err(e) = crate::store::modes::chmod_keeping_access(&abs, mode, is_dir, false)
                {
                    tracing::warn!("cannot set the mode of {child}: {e}");
                }
            }
        }
    }

    /// Entries whose live mode is not the one HEAD's records give them, and
    /// that the journal does not cover: (backing path, what differs). Empty
    /// for a HEAD without records.
    pub fn mode_drift(&self) -> Vec<(String, String)> {
        self.drift()
            .into_iter()
            .map(|d| match d {
                Drift::Mode { rel, live, want } => (
                    rel,
                    format!("mode {live:04o} where the committed mode is {want:04o}"),
                ),
                Drift::Record { rel, why } => (rel, why),
            })
            .collect()
    }

    /// Give every entry [`History::mode_drift`] lists its committed mode
    /// back (`fsck --restore`): the backing paths set, with what was done.
    pub fn restore_modes(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for d in self.drift() {
            if let Drift::Mode { rel, live, want } = d {
                let abs = self.vault_dir.join(&rel);
                let is_dir = abs.is_dir();
                let done =
                    match crate::store::modes::chmod_keeping_access(&abs, want, is_dir, false) {
                        Ok(()) => format!("mode {live:04o} set back to the committed {want:04o}"),
                        Err(e) => format!("mode {live:04o} could not be set to {want:04o}: {e}"),
                    };
                out.push((rel, done));
            }
        }
        out
    }

    fn drift(&self) -> Vec<Drift> {
        let repo = self.repo.borrow();
        let Ok(Some(h)) = head_target(&repo) else {
            return Vec::new();
        };
        let Ok(root) = repo.find_commit(h).and_then(|c| c.tree()) else {
            return Vec::new();
        };
        if !has_records(&root) {
            return Vec::new();
        }
        let mut head = HeadRecords {
            repo: &repo,
            root: Some(root),
            cipher: &self.modes,
            cache: HashMap::new(),
        };
        let changes = self.journal.borrow().changes().clone();
        let mut out = Vec::new();
        let mut dirs = BTreeSet::new();
        all_dirs(&self.vault_dir.join(TRACKED), TRACKED, &mut dirs);
        for dir in dirs {
            let mut entries = vec![dir.clone()];
            if let Ok(rd) = std::fs::read_dir(self.vault_dir.join(&dir)) {
                for e in rd.flatten() {
                    let name = e.file_name().to_string_lossy().into_owned();
                    if is_entry(&name) && !e.file_type().is_ok_and(|t| t.is_dir()) {
                        entries.push(format!("{dir}/{name}"));
                    }
                }
            }
            for rel in entries {
                if changes.covers(&rel) {
                    continue;
                }
                let Some((live, is_dir)) = live_mode(&self.vault_dir.join(&rel)) else {
                    continue;
                };
                match head.mode_of(&rel, is_dir, live & 0o100 != 0) {
                    Ok(want) if want != live => out.push(Drift::Mode { rel, live, want }),
                    Ok(_) => {}
                    Err(e) => {
                        let rel = format!("{dir}/{MODES_FILE}");
                        if !out
                            .iter()
                            .any(|d| matches!(d, Drift::Record { rel: r, .. } if *r == rel))
                        {
                            out.push(Drift::Record {
                                rel,
                                why: e.to_string(),
                            });
                        }
                    }
                }
            }
        }
        out
    }
}

/// A record to replace (or remove: `data` is `None`).
struct Pending {
    /// Its backing path, relative to the vault directory.
    rel: String,
    /// Its directory, absolute.
    dir: std::path::PathBuf,
    data: Option<Vec<u8>>,
}

impl Pending {
    fn write(self, vault_dir: &Path) -> Result<()> {
        let path = self.dir.join(MODES_FILE);
        with_write(&self.dir, || match &self.data {
            Some(data) => write_record(vault_dir, &path, data),
            None => match std::fs::remove_file(&path) {
                Ok(()) => crate::store::atomic::fsync_dir(&self.dir),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(Error::io(&path, e)),
            },
        })
    }
}

/// Backing directories given the owner's write bit for a checkout, with
/// their modes before.
pub(super) struct Lent(Vec<(std::path::PathBuf, u32)>);

/// What [`History::mode_drift`] finds.
enum Drift {
    /// A live mode that is not the committed one.
    Mode { rel: String, live: u32, want: u32 },
    /// A committed record that does not open.
    Record { rel: String, why: String },
}
