//! `History` checks for `pkfs fsck`: every object reachable from the refs is
//! present and hashes to its id, every commit message authenticates, and the
//! tracked files of HEAD (and of older versions, for `--restore`) can be read.

use std::collections::{BTreeMap, HashMap};

use git2::ObjectType;

use super::*;

/// A problem found in the repository (not in the working tree).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitProblem {
    /// `git-object`, `git-ref` or `commit-mac`.
    pub kind: &'static str,
    /// The object id (hex) or ref name concerned.
    pub object: String,
    /// The object is a blob (so it may be rebuilt from an intact working file).
    pub blob: bool,
    pub detail: String,
}

/// What [`History::verify`] looked at and found.
#[derive(Debug, Default)]
pub struct GitCheck {
    pub problems: Vec<GitProblem>,
    pub commits: usize,
    pub objects: usize,
}

/// The files HEAD tracks: path relative to the vault dir (`contents/...`) to
/// (blob id, is a symlink). Subtrees that could not be read are listed in
/// `unreadable` (their files are unknown, not missing).
#[derive(Debug, Default)]
pub struct HeadFiles {
    pub commit: String,
    pub files: BTreeMap<String, (Oid, bool)>,
    pub unreadable: Vec<String>,
}

/// Object kinds we expect to meet while walking.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Want {
    Commit,
    Tree,
    Blob,
}

impl Want {
    fn name(self) -> &'static str {
        match self {
            Want::Commit => "commit",
            Want::Tree => "tree",
            Want::Blob => "blob",
        }
    }

    fn kind(self) -> ObjectType {
        match self {
            Want::Commit => ObjectType::Commit,
            Want::Tree => ObjectType::Tree,
            Want::Blob => ObjectType::Blob,
        }
    }
}

impl History {
    /// The tips to check: main, HEAD and every discarded ref, by name. A ref
    /// that cannot be read is a problem of its own.
    fn fsck_tips(&self, repo: &Repository, problems: &mut Vec<GitProblem>) -> Vec<(String, Oid)> {
        let mut tips = Vec::new();
        let mut bad_ref = |name: &str, detail: String| {
            problems.push(GitProblem {
                kind: "git-ref",
                object: name.to_string(),
                blob: false,
                detail,
            })
        };
        match repo.find_reference(MAIN_REF) {
            Ok(r) => match r.target() {
                Some(id) => tips.push((MAIN_REF.to_string(), id)),
                None => bad_ref(MAIN_REF, "main is not a direct reference".into()),
            },
            Err(e) => bad_ref(MAIN_REF, format!("main cannot be read: {}", e.message())),
        }
        match repo.find_reference("HEAD").and_then(|r| r.resolve()) {
            Ok(r) => match r.target() {
                Some(id) => tips.push(("HEAD".to_string(), id)),
                None => bad_ref("HEAD", "HEAD names no commit".into()),
            },
            Err(e) => bad_ref("HEAD", format!("HEAD cannot be resolved: {}", e.message())),
        }
        let glob = format!("{DISCARDED_PREFIX}*");
        match repo.references_glob(&glob) {
            Ok(refs) => {
                for r in refs {
                    match r {
                        Ok(r) => {
                            let name = String::from_utf8_lossy(r.name_bytes()).into_owned();
                            match r.target() {
                                Some(id) => tips.push((name, id)),
                                None => bad_ref(&name, "not a direct reference".into()),
                            }
                        }
                        Err(e) => bad_ref(DISCARDED_PREFIX, e.message().to_string()),
                    }
                }
            }
            Err(e) => bad_ref(DISCARDED_PREFIX, e.message().to_string()),
        }
        tips
    }

    /// Read every commit, tree and blob reachable from main, HEAD and the
    /// discarded refs; check each object's kind and hash, and authenticate
    /// every commit message. `progress` is called once per commit.
    pub fn verify(&self, progress: &mut dyn FnMut()) -> Result<GitCheck> {
        let repo = self.repo.borrow();
        let repo = &*repo;
        let odb = repo.odb().ctx("opening the object database")?;
        let mut out = GitCheck::default();
        let tips = self.fsck_tips(repo, &mut out.problems);
        let mut seen: HashSet<Oid> = HashSet::new();
        let mut commits: Vec<(Oid, String)> = tips
            .into_iter()
            .map(|(name, id)| (id, format!("reached from {name}")))
            .collect();
        let mut objects: Vec<(Oid, Want, String)> = Vec::new();
        let problem = |out: &mut GitCheck, id: Oid, want: Want, detail: String| {
            out.problems.push(GitProblem {
                kind: "git-object",
                object: id.to_string(),
                blob: want == Want::Blob,
                detail: format!("{} {id} {detail}", want.name()),
            })
        };
        // Read (and hash) one object; false when it is missing or damaged.
        let read = |out: &mut GitCheck, id: Oid, want: Want, why: &str| -> bool {
            out.objects += 1;
            // A blob is streamed and hashed, never held whole (a sparse
            // file's blob may be far bigger than memory): `odb_stream.rs`.
            if want == Want::Blob {
                match crate::store::odb_stream::blob_hashes_to_id(&odb, id) {
                    Some(Ok(true)) => return true,
                    Some(Ok(false)) => {
                        problem(out, id, want, format!("does not match its id; {why}"));
                        return false;
                    }
                    Some(Err(what)) => {
                        problem(out, id, want, format!("{what}; {why}"));
                        return false;
                    }
                    None => {}
                }
            }
            match odb.read(id) {
                Err(e) => {
                    let what = if e.code() == ErrorCode::NotFound {
                        "is missing".to_string()
                    } else {
                        format!("cannot be read ({})", e.message())
                    };
                    problem(out, id, want, format!("{what}; {why}"));
                    false
                }
                Ok(obj) if obj.kind() != want.kind() => {
                    problem(out, id, want, format!("has the wrong type; {why}"));
                    false
                }
                Ok(obj) => match Oid::hash_object(obj.kind(), obj.data()) {
                    Ok(h) if h == id => true,
                    _ => {
                        problem(out, id, want, format!("does not match its id; {why}"));
                        false
                    }
                },
            }
        };
        while let Some((id, why)) = commits.pop() {
            if !seen.insert(id) {
                continue;
            }
            progress();
            out.commits += 1;
            if !read(&mut out, id, Want::Commit, &why) {
                continue;
            }
            let commit = match repo.find_commit(id) {
                Ok(c) => c,
                Err(e) => {
                    problem(&mut out, id, Want::Commit, e.message().to_string());
                    continue;
                }
            };
            if let Err(e) = self.open_message(&commit) {
                let detail = match e {
                    Error::Corrupt { what, .. } => what,
                    other => other.to_string(),
                };
                out.problems.push(GitProblem {
                    kind: "commit-mac",
                    object: id.to_string(),
                    blob: false,
                    detail: format!("commit {id}: {detail}"),
                });
            }
            let short = &id.to_string()[..8];
            objects.push((commit.tree_id(), Want::Tree, format!("in commit {short}")));
            for p in commit.parent_ids() {
                commits.push((p, format!("parent of commit {short}")));
            }
            while let Some((oid, want, why)) = objects.pop() {
                if !seen.insert(oid) || !read(&mut out, oid, want, &why) || want != Want::Tree {
                    continue;
                }
                let Ok(tree) = repo.find_tree(oid) else {
                    continue;
                };
                for e in tree.iter() {
                    let want = match e.kind() {
                        Some(ObjectType::Tree) => Want::Tree,
                        Some(ObjectType::Blob) => Want::Blob,
                        _ => continue,
                    };
                    objects.push((e.id(), want, why.clone()));
                }
            }
        }
        Ok(out)
    }

    /// The files HEAD tracks under `contents/`, `None` before the first commit.
    pub fn head_files(&self) -> Result<Option<HeadFiles>> {
        let repo = self.repo.borrow();
        let repo = &*repo;
        let Some(head) = head_target(repo)? else {
            return Ok(None);
        };
        let commit = repo.find_commit(head).ctx("reading HEAD")?;
        let mut out = HeadFiles {
            commit: head.to_string(),
            ..Default::default()
        };
        let root = match commit.tree() {
            Ok(t) => t,
            Err(_) => {
                out.unreadable.push(TRACKED.to_string());
                return Ok(Some(out));
            }
        };
        let Some(contents) = root.get_name(TRACKED) else {
            return Ok(Some(out));
        };
        let mut stack = vec![(contents.id(), TRACKED.to_string())];
        while let Some((id, prefix)) = stack.pop() {
            let Ok(tree) = repo.find_tree(id) else {
                out.unreadable.push(prefix);
                continue;
            };
            for e in tree.iter() {
                let name = String::from_utf8_lossy(e.name_bytes()).into_owned();
                let rel = format!("{prefix}/{name}");
                match e.kind() {
                    Some(ObjectType::Tree) => stack.push((e.id(), rel)),
                    Some(ObjectType::Blob) => {
                        let link = e.filemode() == i32::from(git2::FileMode::Link);
                        out.files.insert(rel, (e.id(), link));
                    }
                    _ => {}
                }
            }
        }
        Ok(Some(out))
    }

    /// The content of blob `id`, if it can be read intact.
    pub fn read_blob(&self, id: Oid) -> Option<Vec<u8>> {
        let repo = self.repo.borrow();
        let odb = repo.odb().ok()?;
        let obj = odb.read(id).ok()?;
        let ok = obj.kind() == ObjectType::Blob
            && Oid::hash_object(ObjectType::Blob, obj.data()).ok() == Some(id);
        ok.then(|| obj.data().to_vec())
    }

    /// The distinct versions of tracked file `rel` in HEAD's first-parent
    /// history, newest first: (commit id, blob id). Unreadable commits end the
    /// walk; versions where the path is absent are skipped.
    pub fn versions_of(&self, rel: &str) -> Vec<(Oid, Oid)> {
        let repo = self.repo.borrow();
        let repo = &*repo;
        let mut out: Vec<(Oid, Oid)> = Vec::new();
        let Ok(Some(mut id)) = head_target(repo) else {
            return out;
        };
        let path = Path::new(rel);
        let mut seen_blobs = HashMap::new();
        for _ in 0..100_000 {
            let Ok(commit) = repo.find_commit(id) else {
                break;
            };
            if let Ok(entry) = commit.tree().and_then(|t| t.get_path(path)) {
                if entry.kind() == Some(ObjectType::Blob)
                    && seen_blobs.insert(entry.id(), ()).is_none()
                {
                    out.push((id, entry.id()));
                }
            }
            match commit.parent_id(0) {
                Ok(p) => id = p,
                Err(_) => break,
            }
        }
        out
    }

    /// Put blob `id` back into the object database with `data` (which must hash
    /// to it). A damaged loose copy is first moved into `quarantine`; returns
    /// where it went. A packed object cannot be repaired this way.
    pub fn rewrite_blob(&self, id: Oid, data: &[u8], quarantine: &Path) -> Result<Option<PathBuf>> {
        if Oid::hash_object(ObjectType::Blob, data).ok() != Some(id) {
            return Err(Error::History(format!("data does not hash to blob {id}")));
        }
        let hex = id.to_string();
        let objects = self.repo.borrow().path().join("objects");
        let loose = objects.join(&hex[..2]).join(&hex[2..]);
        let mut moved = None;
        if fs::symlink_metadata(&loose).is_ok() {
            fs::create_dir_all(quarantine).map_err(|e| Error::io(quarantine, e))?;
            let dest = quarantine.join(&hex);
            fs::rename(&loose, &dest).map_err(|e| Error::io(&dest, e))?;
            moved = Some(dest);
        }
        // A fresh handle: the old one may have cached the damaged object.
        *self.repo.borrow_mut() = open_repo(&self.vault_dir)?;
        let repo = self.repo.borrow();
        let odb = repo.odb().ctx("opening the object database")?;
        let written = odb
            .write(ObjectType::Blob, data)
            .ctx("writing the object")?;
        if written != id || self.read_blob(id).is_none() {
            return Err(Error::History(format!(
                "blob {id} is still unreadable (packed objects cannot be rewritten)"
            )));
        }
        Ok(moved)
    }
}
