//! `pkfs fsck --restore`: put back the last good committed version of every
//! damaged, modified or missing tracked file (byte for byte from git: blobs are
//! ciphertext), rebuild damaged git blobs from intact working files, and move
//! (never delete) untracked entries to `V/quarantine/<unix-time>/`.

use std::collections::{BTreeMap, BTreeSet};

use super::*;
use crate::store::atomic::write_atomic;
use crate::store::{Change, ChangeKind};

/// One thing `--restore` did (or could not do). `action` is stable:
/// `restored`, `quarantined`, `rewrote-object`, `committed`, `not-restored`,
/// `relinked`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Action {
    pub path: String,
    pub action: &'static str,
    pub detail: String,
}

impl Action {
    fn new(path: impl Into<String>, action: &'static str, detail: impl Into<String>) -> Self {
        Action {
            path: path.into(),
            action,
            detail: detail.into(),
        }
    }
}

fn short(id: &impl ToString) -> String {
    let s = id.to_string();
    s[..s.len().min(8)].to_string()
}

impl Fsck<'_> {
    /// Check, repair what can be repaired, and check again: returns what was
    /// done and the report of the final check.
    pub fn restore(&self, progress: &mut dyn FnMut()) -> Result<(Vec<Action>, Report)> {
        let scan = self.scan(progress)?;
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let qdir = self.vault_dir.join("quarantine").join(stamp.to_string());
        let mut actions = Vec::new();
        self.rewrite_objects(&scan, &qdir, &mut actions)?;
        let mut changes = Vec::new();
        if let Some(head) = &scan.head {
            let removed = self.quarantine(&scan, head, &qdir, &mut actions, &mut changes)?;
            for (rel, &(id, link)) in &head.files {
                if removed.contains(rel) {
                    continue;
                }
                let seen = scan.seen.get(rel);
                let differs = match seen {
                    None => true,
                    Some(s) => s.hash != Some(id) || s.damaged || s.role == Role::Dir,
                };
                let damaged = seen.is_some_and(|s| s.damaged);
                if !differs || (self.uncommitted(rel, &scan.seen, head) && !damaged) {
                    continue;
                }
                let shown = self.head_path(head, rel);
                if let Some(older) = self.restore_one(rel, &shown, id, link, &qdir, &mut actions)? {
                    changes.push(Change::new(ChangeKind::Modified, older));
                }
            }
            self.relink(&scan, head, &mut actions)?;
        }
        if !changes.is_empty() {
            let id = self.history.commit(&changes)?;
            let what = format!(
                "commit {} records {} change(s): files restored from older versions, \
                 orphaned sidecars removed",
                short(&id),
                changes.len()
            );
            actions.push(Action::new("", "committed", what));
        }
        // Modes changed at rest get their committed ones back (`store/modes/`).
        for (rel, what) in self.history.restore_modes() {
            let shown = scan.seen.get(&rel).map_or("/", |s| s.shown.as_str());
            actions.push(Action::new(shown, "restored", what));
        }
        let after = self.scan(progress)?.report;
        Ok((actions, after))
    }

    /// Damaged git blobs whose content is an intact working file.
    fn rewrite_objects(&self, scan: &Scan, qdir: &Path, actions: &mut Vec<Action>) -> Result<()> {
        for p in scan.git.problems.iter().filter(|p| p.kind == "git-object") {
            let Ok(id) = Oid::from_str(&p.object) else {
                continue;
            };
            let holder = scan
                .seen
                .iter()
                .find(|(_, s)| p.blob && s.hash == Some(id) && !s.damaged);
            let Some((rel, s)) = holder else {
                let why = match p.blob {
                    true => "no intact working file holds its content",
                    false => "only blobs can be rebuilt from the working tree",
                };
                let detail = format!("git object {id} is damaged or missing; {why}");
                actions.push(Action::new("", "not-restored", detail));
                continue;
            };
            let (dir, name) = self.locate(rel, false)?;
            let data = if s.role == Role::Link {
                let t = dir.readlink(&name).map_err(|e| Error::io(rel, e))?;
                t.as_os_str().as_bytes().to_vec()
            } else {
                fs::read(dir.at(&name)).map_err(|e| Error::io(rel, e))?
            };
            match self
                .history
                .rewrite_blob(id, &data, &qdir.join("git-objects"))
            {
                Ok(moved) => {
                    let mut detail = format!("git blob {id} rebuilt from the working file");
                    if let Some(m) = moved {
                        let m = m.strip_prefix(&self.vault_dir).unwrap_or(&m);
                        detail += &format!("; the damaged copy was moved to {}", m.display());
                    }
                    actions.push(Action::new(&s.shown, "rewrote-object", detail));
                }
                Err(e) => actions.push(Action::new(&s.shown, "not-restored", e.to_string())),
            }
        }
        Ok(())
    }

    /// Move every untracked entry (the topmost untracked directory as a whole)
    /// and every orphaned long-name sidecar to the quarantine directory.
    /// Returns the tracked ones moved (their removal goes into `changes`).
    fn quarantine(
        &self,
        scan: &Scan,
        head: &HeadFiles,
        qdir: &Path,
        actions: &mut Vec<Action>,
        changes: &mut Vec<Change>,
    ) -> Result<BTreeSet<String>> {
        let tracked_under = |dir: &str| {
            let prefix = format!("{dir}/");
            head.files
                .range(prefix.clone()..)
                .next()
                .is_some_and(|(k, _)| k.starts_with(&prefix))
        };
        let unreadable = |rel: &str| {
            head.unreadable
                .iter()
                .any(|u| rel == u || rel.starts_with(&format!("{u}/")))
        };
        let mut units = BTreeSet::new();
        for (rel, s) in &scan.seen {
            if s.role == Role::Dir
                || head.files.contains_key(rel)
                || unreadable(rel)
                || self.uncommitted(rel, &scan.seen, head)
            {
                continue;
            }
            // The topmost ancestor (below contents/) that holds nothing tracked.
            let parts: Vec<&str> = rel.split('/').collect();
            let mut unit = rel.clone();
            for n in 2..parts.len() {
                let a = parts[..n].join("/");
                if !tracked_under(&a) && !head.files.contains_key(&a) {
                    unit = a;
                    break;
                }
            }
            units.insert(unit);
        }
        let orphans: BTreeSet<String> = scan
            .report
            .findings
            .iter()
            .filter(|f| f.kind == "orphan-sidecar")
            .filter_map(|f| f.rel.clone())
            .collect();
        let mut removed = BTreeSet::new();
        for rel in &orphans {
            // A sidecar whose entry HEAD has is not orphaned for good: the
            // entry is restored below.
            let entry = rel.strip_suffix(names::LONG_SUFFIX).unwrap_or(rel);
            if head.files.contains_key(entry) {
                continue;
            }
            if head.files.contains_key(rel) && !self.uncommitted(rel, &scan.seen, head) {
                units.insert(rel.clone());
                removed.insert(rel.clone());
                // Journaled, so that the commit below adopts the removal.
                self.history.mark(rel)?;
                let shown = scan
                    .seen
                    .get(rel)
                    .map(|s| s.shown.clone())
                    .unwrap_or_default();
                changes.push(Change::new(ChangeKind::Removed, shown));
            }
        }
        let mut done: Vec<String> = Vec::new();
        for unit in units {
            if done.iter().any(|d| unit.starts_with(&format!("{d}/"))) {
                continue;
            }
            let (dir, name) = self.locate(&unit, false)?;
            let dest = qdir.join(&unit);
            crate::store::quarantine::move_to(qdir, &unit, &dir.at(&name))?;
            let shown = scan
                .seen
                .get(&unit)
                .map(|s| s.shown.clone())
                .unwrap_or_default();
            let rel_dest = dest.strip_prefix(&self.vault_dir).unwrap_or(&dest);
            let what = match orphans.contains(&unit) {
                true => "orphaned long-name sidecar",
                false => "untracked entry",
            };
            let detail = format!("{what} moved to {}", rel_dest.display());
            actions.push(Action::new(shown, "quarantined", detail));
            done.push(unit);
        }
        Ok(removed)
    }

    /// Names of one hard-linked file at HEAD (regular entries with one
    /// non-empty blob id: `hardlinks.rs`) that are separate files now (a
    /// copy, or a file restored above): every name whose file holds that
    /// blob becomes a link of the first such name again.
    fn relink(&self, scan: &Scan, head: &HeadFiles, actions: &mut Vec<Action>) -> Result<()> {
        use std::os::unix::fs::MetadataExt;
        let empty = Oid::hash_object(git2::ObjectType::Blob, b"").ok();
        let mut groups: BTreeMap<Oid, Vec<&str>> = BTreeMap::new();
        for (rel, &(id, link)) in &head.files {
            let last = rel.rsplit('/').next().unwrap_or(rel);
            let regular = matches!(names::classify(last), EntryKind::Direct | EntryKind::Long);
            if !link && regular && Some(id) != empty {
                groups.entry(id).or_default().push(rel);
            }
        }
        let vault = DirFd::open(&self.vault_dir).map_err(|e| Error::io(&self.vault_dir, e))?;
        for (id, rels) in groups.into_iter().filter(|(_, r)| r.len() > 1) {
            let mut anchor: Option<(&str, u64)> = None;
            for rel in rels {
                let (dir, name) = self.locate(rel, false)?;
                let path = dir.at(&name);
                let Ok(meta) = fs::symlink_metadata(&path) else {
                    continue;
                };
                if !meta.is_file() || Oid::hash_file(git2::ObjectType::Blob, &path).ok() != Some(id)
                {
                    continue;
                }
                let Some((first, ino)) = anchor else {
                    anchor = Some((rel, meta.ino()));
                    continue;
                };
                if meta.ino() == ino {
                    continue;
                }
                let tmp = format!(".tmp-relink-{}", short(&id));
                crate::store::hardlinks::link_into(&vault, first, &dir, &tmp, &name)
                    .map_err(|e| Error::io(rel, e))?;
                dir.fsync().map_err(|e| Error::io(rel, e))?;
                let shown = scan
                    .seen
                    .get(rel)
                    .map_or_else(|| self.head_path(head, rel), |s| s.shown.clone());
                let first_shown = scan
                    .seen
                    .get(first)
                    .map_or_else(|| self.head_path(head, first), |s| s.shown.clone());
                let detail = format!("a hard link of {first_shown:?} again (it was a copy)");
                actions.push(Action::new(shown, "relinked", detail));
            }
        }
        Ok(())
    }

    /// The directory holding backing path `rel` (relative to the vault dir),
    /// reached through descriptors, and the entry's name in it. `create`:
    /// make the directories on the way that are missing.
    fn locate(&self, rel: &str, create: bool) -> Result<(DirFd, String)> {
        let (parent, name) = rel.rsplit_once('/').unwrap_or(("", rel));
        let mut dir = DirFd::open(&self.vault_dir).map_err(|e| Error::io(&self.vault_dir, e))?;
        for part in parent.split('/').filter(|p| !p.is_empty()) {
            dir = match dir.child(part) {
                Err(e) if create && e.kind() == std::io::ErrorKind::NotFound => {
                    match dir.mkdir(part, 0o777) {
                        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                            return Err(Error::io(rel, e))
                        }
                        _ => {}
                    }
                    dir.child(part).map_err(|e| Error::io(rel, e))?
                }
                other => other.map_err(|e| Error::io(rel, e))?,
            };
        }
        Ok((dir, name.to_string()))
    }

    /// Put back the newest intact committed version of `rel`. Returns the
    /// plaintext path when that version is older than HEAD's.
    fn restore_one(
        &self,
        rel: &str,
        shown: &str,
        head_id: Oid,
        link: bool,
        qdir: &Path,
        actions: &mut Vec<Action>,
    ) -> Result<Option<String>> {
        let last = rel.rsplit('/').next().unwrap_or(rel);
        let valid = |data: &[u8]| match names::classify(last) {
            EntryKind::DirIv => data.len() == DIRIV_LEN,
            // A mode record is checked when it is applied (`store/modes/`).
            EntryKind::Modes => !data.is_empty(),
            EntryKind::Sidecar => {
                let entry = last.strip_suffix(names::LONG_SUFFIX).unwrap_or(last);
                std::str::from_utf8(data).is_ok_and(|s| names::long_entry(s) == entry)
            }
            _ if link => self.links.open_target(data).is_some(),
            _ => verify_blob(self.tree.keys(), data).is_ok(),
        };
        let mut candidates = vec![(None, head_id)];
        candidates.extend(
            self.history
                .versions_of(rel)
                .into_iter()
                .filter(|(_, b)| *b != head_id)
                .map(|(c, b)| (Some(c), b)),
        );
        let found = candidates.into_iter().find_map(|(commit, blob)| {
            let data = self.history.read_blob(blob)?;
            valid(&data).then_some((commit, blob, data))
        });
        let Some((commit, blob, data)) = found else {
            let detail = "no intact committed version to restore from";
            actions.push(Action::new(shown, "not-restored", detail));
            return Ok(None);
        };
        let (dir, name) = self.locate(rel, true)?;
        let path = dir.at(&name);
        if fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
            crate::store::quarantine::move_to(qdir, rel, &path)?;
            let detail = format!("a directory where a file belongs, moved to the quarantine/{rel}");
            actions.push(Action::new(shown, "quarantined", detail));
        }
        if commit.is_some() {
            // An older version than HEAD's: journaled, so the commit adopts it.
            self.history.mark(rel)?;
        }
        if link {
            let _ = dir.unlink(&name);
            let target = std::str::from_utf8(&data)
                .map_err(|_| Error::corrupt(rel, "a committed symlink target is not UTF-8"))?;
            dir.symlink(&name, target).map_err(|e| Error::io(rel, e))?;
            dir.fsync().map_err(|e| Error::io(rel, e))?;
        } else {
            // Short paths through the directory's descriptor (`dirfd.rs`).
            write_atomic(&path, &data)?;
        }
        let what = meta_note(match names::classify(last) {
            EntryKind::DirIv => Role::DirIv,
            EntryKind::Sidecar => Role::Sidecar,
            EntryKind::Modes => Role::Modes,
            _ => Role::Blob,
        });
        let detail = match commit {
            None => format!(
                "{what}restored from the committed version (blob {})",
                short(&blob)
            ),
            Some(c) => format!(
                "{what}restored from the older version {} (the latest committed copy is damaged)",
                short(&c)
            ),
        };
        actions.push(Action::new(shown, "restored", detail));
        Ok(commit.map(|_| shown.to_string()))
    }
}
