//! What pkfs moved out of `contents/`, and putting it back.
//!
//! `fsck --restore` (untracked entries) and the lost-IV recovery at open
//! (`history_recover.rs`) never delete: they move an entry to
//! `V/quarantine/<batch>/<backing path>`, where `<backing path>` is the
//! entry's path relative to `V` (`contents/…`, encrypted names), and append
//! that path to `<batch>/index`, one per line. A long name's sidecar moves
//! with its entry, to its own backing path. So every quarantined entry knows
//! where it came from, and [`restore`] can move it back there. Older batches
//! without an index are listed as such and are left for the user.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::dirfd::DirFd;
use super::tree::Tree;
use super::vpath::VPath;
use crate::error::{Error, Result};
use crate::format::names::{self, DirIv, EntryKind, NameCipher, DIRIV_FILE, DIRIV_LEN};

/// The list of a batch's entries, in the batch directory.
pub const INDEX: &str = "index";

/// One quarantined entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantined {
    /// The batch directory's name (`<unix-time>` or `<unix-time>-lost-iv`).
    pub batch: String,
    /// Where it came from, relative to the vault directory (`contents/…`);
    /// empty for a batch without an index (nothing is known of its entries).
    pub rel: String,
    pub is_dir: bool,
    /// Something now sits where it came from: it cannot go back there.
    pub occupied: bool,
}

/// Move `src` to `batch/rel` and note `rel` in the batch's index (the index
/// line first, so a crash never leaves an entry the index does not name).
pub fn move_to(batch: &Path, rel: &str, src: &Path) -> Result<()> {
    let dest = batch.join(rel);
    fs::create_dir_all(batch).map_err(|e| Error::io(batch, e))?;
    // The directories on the way, through descriptors: `batch/rel` may be
    // longer than PATH_MAX (see `dirfd.rs`).
    let (parent, name) = rel.rsplit_once('/').unwrap_or(("", rel));
    let mut dir = DirFd::open(batch).map_err(|e| Error::io(batch, e))?;
    for part in parent.split('/').filter(|p| !p.is_empty()) {
        match dir.mkdir(part, 0o700) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                return Err(Error::io(&dest, e))
            }
            _ => {}
        }
        dir = dir.child(part).map_err(|e| Error::io(&dest, e))?;
    }
    let index = batch.join(INDEX);
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&index)
        .map_err(|e| Error::io(&index, e))?;
    f.write_all(format!("{rel}\n").as_bytes())
        .and_then(|()| f.sync_data())
        .map_err(|e| Error::io(&index, e))?;
    fs::rename(src, dir.at(name)).map_err(|e| Error::io(&dest, e))
}

/// Every quarantined entry of the vault at `vault_dir`, oldest batch first.
pub fn list(vault_dir: &Path) -> Result<Vec<Quarantined>> {
    let qdir = vault_dir.join("quarantine");
    let mut batches: Vec<String> = match fs::read_dir(&qdir) {
        Ok(rd) => rd
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(&qdir, e)),
    };
    batches.sort();
    let mut out = Vec::new();
    for batch in batches {
        let dir = qdir.join(&batch);
        let index = match fs::read_to_string(dir.join(INDEX)) {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                out.push(Quarantined {
                    batch,
                    rel: String::new(),
                    is_dir: true,
                    occupied: false,
                });
                continue;
            }
            Err(e) => return Err(Error::io(dir.join(INDEX), e)),
        };
        let mut seen = std::collections::HashSet::new();
        for rel in index.lines() {
            if !safe_rel(rel) || names::classify(last(rel)) == EntryKind::Sidecar {
                continue;
            }
            let Ok(m) = fs::symlink_metadata(dir.join(rel)) else {
                continue; // already put back
            };
            if seen.insert(rel.to_string()) {
                out.push(Quarantined {
                    batch: batch.clone(),
                    rel: rel.to_string(),
                    is_dir: m.is_dir(),
                    occupied: fs::symlink_metadata(vault_dir.join(rel)).is_ok(),
                });
            }
        }
    }
    Ok(out)
}

fn last(rel: &str) -> &str {
    rel.rsplit('/').next().unwrap_or(rel)
}

/// A backing path pkfs could have written: under `contents/`, no `.`/`..`.
fn safe_rel(rel: &str) -> bool {
    let mut parts = rel.split('/');
    parts.next() == Some("contents")
        && rel.len() > "contents/".len()
        && rel
            .split('/')
            .skip(1)
            .all(|p| !p.is_empty() && p != "." && p != ".." && p != DIRIV_FILE)
}

/// The plaintext path of the backing path `rel`, decrypted from `contents/`
/// down (the entry itself need not be there: its parent's IV names it).
/// `None` if a name or an IV on the way does not decrypt.
pub fn plain_path(tree: &Tree, sidecars: &Path, rel: &str) -> Option<VPath> {
    let cipher = NameCipher::new(tree.keys().first());
    let vault_dir = tree.contents_dir().parent()?;
    let mut dir = vault_dir.join("contents");
    let mut p = VPath::root();
    for part in rel.split('/').skip(1) {
        let iv: DirIv = fs::read(dir.join(DIRIV_FILE))
            .ok()
            .filter(|b| b.len() == DIRIV_LEN)?
            .try_into()
            .ok()?;
        let encoded = match names::classify(part) {
            EntryKind::Direct => part.to_string(),
            EntryKind::Long => {
                let side = names::sidecar_of(part);
                let rel_dir = dir.strip_prefix(vault_dir).ok()?;
                fs::read_to_string(dir.join(&side))
                    .or_else(|_| fs::read_to_string(sidecars.join(rel_dir).join(&side)))
                    .ok()?
            }
            _ => return None,
        };
        let name = cipher.decrypt(&iv, &encoded).ok()?;
        p = p.join(&name).ok()?;
        dir = dir.join(part);
    }
    Some(p)
}

/// Move the quarantined entry `rel` of `batch` (and its sidecar) back to
/// where it came from. The caller journals `rel` first and commits after.
pub fn put_back(vault_dir: &Path, batch: &str, rel: &str) -> Result<()> {
    let from = vault_dir.join("quarantine").join(batch);
    let src = from.join(rel);
    let dest = vault_dir.join(rel);
    let side = names::sidecar_of(rel);
    if fs::symlink_metadata(from.join(&side)).is_ok()
        && fs::symlink_metadata(vault_dir.join(&side)).is_err()
    {
        fs::rename(from.join(&side), vault_dir.join(&side))
            .map_err(|e| Error::io(vault_dir.join(&side), e))?;
    }
    fs::rename(&src, &dest).map_err(|e| Error::io(&dest, e))
}

/// Why `q` cannot go back, if it cannot.
pub fn blocked(vault_dir: &Path, q: &Quarantined) -> Option<&'static str> {
    if q.rel.is_empty() {
        return Some("a batch from an older pkfs, without an index: restore it by hand");
    }
    if q.occupied {
        return Some("something else is at its place now");
    }
    let parent = vault_dir.join(&q.rel);
    match parent.parent().map(fs::symlink_metadata) {
        Some(Ok(m)) if m.is_dir() => None,
        _ => Some("the directory it came from is gone"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_backing_paths_under_contents_are_accepted() {
        for ok in ["contents/a", "contents/a/.L.x", "contents/a/b"] {
            assert!(safe_rel(ok), "{ok}");
        }
        for bad in [
            "contents",
            "contents/",
            "x/a",
            "contents/../a",
            "contents/a/./b",
            "contents//a",
            "/contents/a",
            "contents/.diriv",
        ] {
            assert!(!safe_rel(bad), "{bad}");
        }
    }

    #[test]
    fn moved_entries_are_listed_until_put_back() {
        let d = tempfile::tempdir().unwrap();
        let v = d.path();
        fs::create_dir_all(v.join("contents/a/b")).unwrap();
        fs::write(v.join("contents/a/b/f"), b"x").unwrap();
        fs::write(v.join("contents/a/.L.s.name"), b"enc").unwrap();
        let batch = v.join("quarantine/100");
        move_to(&batch, "contents/a/b", &v.join("contents/a/b")).unwrap();
        let l = list(v).unwrap();
        assert_eq!(l.len(), 1);
        assert_eq!(
            (l[0].batch.as_str(), l[0].rel.as_str()),
            ("100", "contents/a/b")
        );
        assert!(l[0].is_dir && !l[0].occupied);
        assert_eq!(blocked(v, &l[0]), None);
        fs::create_dir(v.join("contents/a/b")).unwrap();
        assert!(list(v).unwrap()[0].occupied);
        fs::remove_dir(v.join("contents/a/b")).unwrap();
        put_back(v, "100", "contents/a/b").unwrap();
        assert_eq!(fs::read(v.join("contents/a/b/f")).unwrap(), b"x");
        assert!(list(v).unwrap().is_empty());
        // A batch without an index is shown, never restored.
        fs::create_dir_all(v.join("quarantine/50/contents/z")).unwrap();
        let l = list(v).unwrap();
        assert_eq!(l.len(), 1);
        assert!(l[0].rel.is_empty() && blocked(v, &l[0]).is_some());
    }
}
