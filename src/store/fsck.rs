//! `pkfs fsck` for one vault: the working tree (every blob page, name, sidecar
//! and directory IV), the git repository (see `history::fsck`), and the
//! working tree against HEAD. `--restore` is in `fsck_restore.rs`.
//!
//! Findings name plaintext paths wherever the names decrypt; an entry whose
//! name does not is shown as its parent's plaintext path plus the encrypted
//! name. No plaintext content is ever part of a finding.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use git2::{ObjectType, Oid};
use serde::Serialize;

use super::changes::Origin;
use super::dirfd::DirFd;
use super::history::{GitCheck, HeadFiles, History};
use super::tree::Tree;
use crate::crypto::Keychain;
use crate::error::{Error, Result};
use crate::format::blob::{BlobError, FileCipher, Header};
use crate::format::links::LinkCipher;
use crate::format::names::{self, DirIv, EntryKind, NameCipher, DIRIV_FILE, DIRIV_LEN};
use crate::format::offsets;

/// The only tracked directory of a vault.
pub(crate) const CONTENTS: &str = "contents";

/// One problem. `path` is the plaintext path inside the vault ("" for the
/// repository itself); `kind` is stable (`tag-mismatch`, `bad-header`,
/// `truncated`, `bad-name`, `bad-diriv`, `bad-symlink`, `foreign-entry`,
/// `orphan-sidecar`, `modified-since-commit`, `missing`, `untracked`,
/// `duplicate-file-id`, `git-object`, `git-ref`, `commit-mac`, `bad-vault`,
/// `mode-changed`, `bad-mode-record`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub path: String,
    pub kind: &'static str,
    /// The first failing page (`tag-mismatch`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page: Option<u64>,
    /// The git object or ref concerned (repository findings).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object: Option<String>,
    pub detail: String,
    /// The backing path relative to the vault dir (`contents/...`).
    #[serde(skip)]
    pub rel: Option<String>,
}

impl Finding {
    pub fn new(path: impl Into<String>, kind: &'static str, detail: impl Into<String>) -> Self {
        Finding {
            path: path.into(),
            kind,
            page: None,
            object: None,
            detail: detail.into(),
            rel: None,
        }
    }

    fn at(mut self, rel: &str) -> Self {
        self.rel = Some(rel.to_string());
        self
    }

    /// `tag-mismatch page 3`, `bad-header`, ...
    pub fn kind_shown(&self) -> String {
        match self.page {
            Some(p) => format!("{} page {p}", self.kind),
            None => self.kind.to_string(),
        }
    }
}

/// What `check` found in one vault.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub findings: Vec<Finding>,
    /// Plaintext paths that differ from HEAD but are recorded as changed since
    /// the last commit (not corruption).
    pub uncommitted: Vec<String>,
    /// What opening the vault found broken and repaired (refs, index: see
    /// `history_version.rs`): fixed, so not findings.
    pub repaired: Vec<String>,
    pub files: usize,
    pub directories: usize,
    pub commits: usize,
    pub objects: usize,
}

/// What a working-tree entry is, for display and for restoring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Blob,
    Dir,
    DirIv,
    Sidecar,
    /// A directory's mode record (`format/modes.rs`).
    Modes,
    Link,
    Foreign,
}

/// One entry of the working tree.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub shown: String,
    pub role: Role,
    /// Git blob id of a file or symlink.
    pub hash: Option<Oid>,
    /// Its content fails a check (so it needs restoring even if committed so).
    pub damaged: bool,
}

/// The whole scan, kept for `--restore`.
pub(crate) struct Scan {
    pub report: Report,
    pub seen: BTreeMap<String, Seen>,
    pub head: Option<HeadFiles>,
    pub git: GitCheck,
}

/// Checks one vault. The caller holds whatever lock keeps it still.
pub struct Fsck<'a> {
    pub(crate) tree: &'a Tree,
    pub(crate) history: &'a History,
    pub(crate) vault_dir: PathBuf,
    pub(crate) names: NameCipher,
    pub(crate) links: LinkCipher,
}

/// The directory being walked.
struct Here<'d> {
    dir: &'d DirFd,
    shown: &'d str,
    iv: Option<DirIv>,
    /// Its names are checked (false inside a foreign directory).
    checked: bool,
    present: Vec<&'d str>,
}

/// Blobs by file id: (plaintext path, backing path, (device, inode)).
type FileIds = HashMap<[u8; 16], Vec<(String, String, (u64, u64))>>;

/// A blob that fails its checks: (kind, first failing page, explanation).
type BlobProblem = (&'static str, Option<u64>, String);

impl<'a> Fsck<'a> {
    pub fn new(tree: &'a Tree, history: &'a History, vault_dir: &Path) -> Fsck<'a> {
        Fsck {
            tree,
            history,
            vault_dir: vault_dir.to_path_buf(),
            names: NameCipher::new(tree.keys().first()),
            links: LinkCipher::new(tree.keys().first()),
        }
    }

    /// Is `rel` (relative to the vault dir, `contents/...`) recorded as
    /// changed since HEAD? Such a difference is not corruption. A file only
    /// moved (or chmodded) through pkfs must still be HEAD's file of the path
    /// it came from, else it is tampering.
    fn uncommitted(&self, rel: &str, seen: &BTreeMap<String, Seen>, head: &HeadFiles) -> bool {
        if !self.history.covers(rel) {
            return false;
        }
        match (self.history.origin(rel), seen.get(rel)) {
            (Origin::Head(from), Some(s)) if s.role != Role::Dir => {
                head.files.get(&from).map(|f| f.0) == s.hash
            }
            _ => true,
        }
    }

    /// Check everything; `progress` is called once per file and commit.
    pub fn check(&self, progress: &mut dyn FnMut()) -> Result<Report> {
        Ok(self.scan(progress)?.report)
    }

    pub(crate) fn scan(&self, progress: &mut dyn FnMut()) -> Result<Scan> {
        let mut report = Report {
            repaired: self.history.ref_repairs(),
            ..Report::default()
        };
        let mut seen = BTreeMap::new();
        let mut ids: FileIds = HashMap::new();
        let contents = self.vault_dir.join(CONTENTS);
        if !fs::symlink_metadata(&contents).is_ok_and(|m| m.is_dir()) {
            return Err(Error::corrupt(
                self.vault_dir.display(),
                "the vault has no contents/ directory",
            ));
        }
        // Walked through directory descriptors (a backing path may be longer
        // than PATH_MAX, see `dirfd.rs`): each pending directory keeps its
        // parent's open, so no more than the depth's worth stay open.
        let vault = DirFd::open(&self.vault_dir).map_err(|e| Error::io(&self.vault_dir, e))?;
        let mut stack = vec![(
            Arc::new(vault),
            CONTENTS.to_string(),
            CONTENTS.to_string(),
            String::new(),
            true,
        )];
        while let Some((parent, name, rel, shown, checked)) = stack.pop() {
            report.directories += 1;
            let dir = Arc::new(parent.child(&name).map_err(|e| Error::io(&rel, e))?);
            drop(parent);
            let entries = self.dir_entries(&dir, &rel)?;
            let iv = if checked {
                self.diriv(&dir, &rel, &shown, &mut report)
            } else {
                None
            };
            let here = Here {
                dir: &dir,
                shown: &shown,
                iv,
                checked,
                present: entries.iter().map(|(n, _)| n.as_str()).collect(),
            };
            for (raw, m) in &entries {
                let crel = format!("{rel}/{raw}");
                let class = match checked {
                    true => names::classify(raw),
                    false => EntryKind::Foreign,
                };
                if m.file_type().is_fifo_or_special() {
                    continue;
                }
                let (cshown, role) = self.name_of(&here, raw, class, m, &crel, &mut report);
                if m.is_dir() {
                    let check_inside = checked && role == Role::Dir;
                    stack.push((
                        dir.clone(),
                        raw.clone(),
                        crel.clone(),
                        cshown.clone(),
                        check_inside,
                    ));
                    seen.insert(crel, Seen::new(cshown, Role::Dir, None));
                    continue;
                }
                progress();
                report.files += 1;
                let mut damaged = false;
                let hash = if m.file_type().is_symlink() {
                    let target = dir.readlink(raw).map_err(|e| Error::io(&crel, e))?;
                    let target = target.as_os_str().as_bytes();
                    if role == Role::Link && self.links.open_target(target).is_none() {
                        damaged = true;
                        report.findings.push(
                            Finding::new(
                                &cshown,
                                "bad-symlink",
                                "symlink target does not authenticate",
                            )
                            .at(&crel),
                        );
                    }
                    Oid::hash_object(ObjectType::Blob, target).ok()
                } else if role == Role::Blob && m.len() >= stream::STREAM_MIN {
                    // Big (a sparse file may pass memory): as a stream.
                    let (id, res) = dir
                        .open_file(raw, true)
                        .and_then(|f| stream::check(self.tree.keys(), &f, m.len()))
                        .map_err(|e| Error::io(&crel, e))?;
                    match res {
                        Ok(Some(fid)) => ids.entry(fid).or_default().push((
                            cshown.clone(),
                            crel.clone(),
                            (m.dev(), m.ino()),
                        )),
                        Ok(None) => {}
                        Err((kind, page, detail)) => {
                            damaged = true;
                            let mut f = Finding::new(&cshown, kind, detail).at(&crel);
                            f.page = page;
                            report.findings.push(f);
                        }
                    }
                    Some(id)
                } else {
                    let mut bytes = Vec::with_capacity(m.len() as usize);
                    dir.open_file(raw, true)
                        .and_then(|mut f| f.read_to_end(&mut bytes))
                        .map_err(|e| Error::io(&crel, e))?;
                    if let Some(problem) =
                        self.check_file(role, raw, &bytes, &mut ids, &cshown, &crel, m)
                    {
                        damaged = true;
                        let (kind, page, detail) = problem;
                        let mut f = Finding::new(&cshown, kind, detail).at(&crel);
                        f.page = page;
                        report.findings.push(f);
                    }
                    Oid::hash_object(ObjectType::Blob, &bytes).ok()
                };
                let mut s = Seen::new(cshown, role, hash);
                s.damaged = damaged;
                seen.insert(crel, s);
            }
        }
        duplicate_ids(ids, &mut report.findings);
        let git = self.history.verify(progress)?;
        report.commits = git.commits;
        report.objects = git.objects;
        for p in &git.problems {
            let mut f = Finding::new("", p.kind, p.detail.clone());
            f.object = Some(p.object.clone());
            report.findings.push(f);
        }
        // A damaged HEAD commit or tree is already a git finding.
        let head = match self.history.head_files() {
            Ok(h) => h,
            Err(e) => {
                if git.problems.is_empty() {
                    let why = format!("HEAD's files cannot be listed: {e}");
                    report.findings.push(Finding::new("", "git-object", why));
                }
                None
            }
        };
        if let Some(head) = &head {
            self.compare(head, &seen, &mut report);
        }
        // Live modes against the committed mode records (`store/modes/`).
        crate::store::modes::drift_findings(self.history, &seen, &mut report.findings);
        Ok(Scan {
            report,
            seen,
            head,
            git,
        })
    }

    /// The plaintext path and role of entry `raw` of directory `d`; a name
    /// that does not decrypt is a finding and is shown encrypted.
    fn name_of(
        &self,
        d: &Here<'_>,
        raw: &str,
        class: EntryKind,
        m: &fs::Metadata,
        crel: &str,
        report: &mut Report,
    ) -> (String, Role) {
        match class {
            EntryKind::DirIv => (or_root(d.shown), Role::DirIv),
            EntryKind::Modes => (or_root(d.shown), Role::Modes),
            EntryKind::Sidecar => {
                let entry = raw.strip_suffix(names::LONG_SUFFIX).unwrap_or(raw);
                let name = d.iv.and_then(|iv| self.long_name(d.dir, entry, &iv));
                let name = join(d.shown, &name.unwrap_or_else(|| entry.to_string()));
                if !d.present.contains(&entry) {
                    let why = "a long-name sidecar whose entry does not exist";
                    report
                        .findings
                        .push(Finding::new(&name, "orphan-sidecar", why).at(crel));
                }
                (name, Role::Sidecar)
            }
            EntryKind::Long | EntryKind::Direct => {
                let name = match (d.iv, &class) {
                    (None, _) => None,
                    (Some(iv), EntryKind::Long) => self.long_name(d.dir, raw, &iv),
                    (Some(iv), _) => self.decrypt(&iv, raw),
                };
                let role = if m.is_dir() {
                    Role::Dir
                } else if m.file_type().is_symlink() {
                    Role::Link
                } else {
                    Role::Blob
                };
                match name {
                    Some(n) => (join(d.shown, &n), role),
                    None => {
                        let why = match (d.iv.is_some(), class == EntryKind::Long) {
                            (false, _) => "cannot be decrypted: the directory IV is bad",
                            (true, true) => "long name whose sidecar is missing, does not match, or does not decrypt",
                            (true, false) => "encrypted name does not authenticate",
                        };
                        let p = join(d.shown, raw);
                        report
                            .findings
                            .push(Finding::new(&p, "bad-name", why).at(crel));
                        (p, role)
                    }
                }
            }
            EntryKind::Foreign => {
                if d.checked && !raw.starts_with(".tmp-") {
                    report.findings.push(
                        Finding::new(
                            join(d.shown, raw),
                            "foreign-entry",
                            "an entry pkfs never writes",
                        )
                        .at(crel),
                    );
                }
                (join(d.shown, raw), Role::Foreign)
            }
        }
    }

    /// Entries of a backing directory, sorted by name (non-UTF-8 names are
    /// shown lossily; pkfs never writes one).
    fn dir_entries(&self, dir: &DirFd, rel: &str) -> Result<Vec<(String, fs::Metadata)>> {
        let rd = fs::read_dir(dir.path()).map_err(|e| Error::io(rel, e))?;
        let mut out = Vec::new();
        for e in rd {
            let e = e.map_err(|e| Error::io(rel, e))?;
            let raw = e.file_name().to_string_lossy().into_owned();
            let m = fs::symlink_metadata(dir.at(&raw))
                .map_err(|err| Error::io(format!("{rel}/{raw}"), err))?;
            out.push((raw, m));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    fn diriv(&self, dir: &DirFd, rel: &str, shown: &str, report: &mut Report) -> Option<DirIv> {
        let crel = format!("{rel}/{DIRIV_FILE}");
        let shown_dir = if shown.is_empty() { "/" } else { shown };
        let bad = |what: &str| Finding::new(shown_dir, "bad-diriv", what).at(&crel);
        match fs::read(dir.at(DIRIV_FILE)) {
            Ok(b) if b.len() == DIRIV_LEN => b.as_slice().try_into().ok(),
            Ok(b) => {
                let what = format!("directory IV file has {} bytes, not {DIRIV_LEN}", b.len());
                report.findings.push(bad(&what));
                None
            }
            Err(_) => {
                report
                    .findings
                    .push(bad("directory IV file is missing or unreadable"));
                None
            }
        }
    }

    fn decrypt(&self, iv: &DirIv, encoded: &str) -> Option<String> {
        let n = self.names.decrypt(iv, encoded).ok()?;
        names::validate(&n).ok()?;
        Some(String::from_utf8_lossy(&n).into_owned())
    }

    /// The plaintext of long entry `entry` through its sidecar.
    fn long_name(&self, dir: &DirFd, entry: &str, iv: &DirIv) -> Option<String> {
        let enc = fs::read_to_string(dir.at(&names::sidecar_of(entry))).ok()?;
        if names::long_entry(&enc) != entry {
            return None;
        }
        self.decrypt(iv, &enc)
    }

    #[allow(clippy::too_many_arguments)]
    fn check_file(
        &self,
        role: Role,
        raw: &str,
        bytes: &[u8],
        ids: &mut FileIds,
        shown: &str,
        rel: &str,
        m: &fs::Metadata,
    ) -> Option<BlobProblem> {
        match role {
            Role::Blob => match verify_blob(self.tree.keys(), bytes) {
                Ok(Some(id)) => {
                    let e = ids.entry(id).or_default();
                    e.push((shown.to_string(), rel.to_string(), (m.dev(), m.ino())));
                    None
                }
                Ok(None) => None,
                Err(p) => Some(p),
            },
            Role::Sidecar => {
                let entry = raw.strip_suffix(names::LONG_SUFFIX).unwrap_or(raw);
                let ok = std::str::from_utf8(bytes).is_ok_and(|s| names::long_entry(s) == entry);
                (!ok).then(|| {
                    (
                        "bad-name",
                        None,
                        "long-name sidecar does not match its entry".to_string(),
                    )
                })
            }
            _ => None,
        }
    }
}

impl Seen {
    fn new(shown: String, role: Role, hash: Option<Oid>) -> Seen {
        Seen {
            shown,
            role,
            hash,
            damaged: false,
        }
    }
}

trait SpecialFile {
    fn is_fifo_or_special(&self) -> bool;
}

impl SpecialFile for fs::FileType {
    /// FIFOs, sockets and device nodes: made through the mount, never versioned.
    fn is_fifo_or_special(&self) -> bool {
        !(self.is_file() || self.is_dir() || self.is_symlink())
    }
}

/// The vault root is shown as "/".
fn or_root(shown: &str) -> String {
    if shown.is_empty() {
        "/".to_string()
    } else {
        shown.to_string()
    }
}

/// "dir/name", or "name" at the root.
fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}/{name}")
    }
}

fn meta_note(role: Role) -> &'static str {
    match role {
        Role::DirIv => "the directory IV file ",
        Role::Sidecar => "the long-name sidecar ",
        Role::Modes => "the mode record ",
        _ => "",
    }
}

/// Check a blob's length, header and every page; `Ok(Some(file id))` when it
/// is valid, `Ok(None)` for the empty file.
pub(crate) fn verify_blob(keys: &Keychain, bytes: &[u8]) -> Result<Option<[u8; 16]>, BlobProblem> {
    if bytes.is_empty() {
        return Ok(None);
    }
    let len = bytes.len() as u64;
    let Some(plain) = offsets::plain_len(len) else {
        return Err((
            "truncated",
            None,
            format!("blob length {len} is impossible (cut inside the header or a page)"),
        ));
    };
    let header = Header::decode(bytes).map_err(|e| ("bad-header", None, e.to_string()))?;
    let key = keys.get(header.generation).ok_or_else(|| {
        (
            "bad-header",
            None,
            BlobError::UnknownGeneration(header.generation).to_string(),
        )
    })?;
    let fc = FileCipher::new(key, &header);
    let count = offsets::page_count(plain);
    let failed = crate::format::blob::failed_pages(&fc, bytes[4], bytes, plain);
    match failed.first() {
        None => Ok(Some(header.file_id)),
        Some(&first) => Err((
            "tag-mismatch",
            Some(first),
            format!(
                "{} of {count} page(s) do not authenticate (modified, moved, cut, or a damaged header)",
                failed.len()
            ),
        )),
    }
}

#[path = "fsck_restore.rs"]
mod restore;
pub use restore::Action;
#[path = "fsck_compare.rs"]
mod compare;
#[path = "fsck_stream.rs"]
mod stream;
use compare::duplicate_ids;

#[cfg(test)]
#[path = "fsck_tests.rs"]
mod tests;
