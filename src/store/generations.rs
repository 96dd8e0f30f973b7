//! Which key generations the blobs of a commit use, read from the blob
//! headers stored in git (`vault drop-key` makes the commits holding blobs of
//! a dropped generation unreadable, and `version log` and `fsck` say which).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use git2::{ObjectType, Oid, Repository, TreeWalkMode, TreeWalkResult};

use crate::error::{Error, Result};

/// For each commit id in `commits`, the generations that `generation_of`
/// finds in the heads of its blobs (symlinks excluded). A commit that cannot
/// be read is left out.
pub fn of_commits(
    vault_dir: &Path,
    commits: &[String],
    generation_of: fn(&[u8]) -> Option<u32>,
) -> Result<BTreeMap<String, BTreeSet<u32>>> {
    let git = |e: git2::Error| Error::History(e.message().to_string());
    let repo = Repository::open(vault_dir.join(".git")).map_err(git)?;
    let mut seen: HashMap<Oid, Option<u32>> = HashMap::new();
    let mut out = BTreeMap::new();
    for id in commits {
        let Ok(oid) = Oid::from_str(id) else { continue };
        let Ok(tree) = repo.find_commit(oid).and_then(|c| c.tree()) else {
            continue;
        };
        let mut gens = BTreeSet::new();
        let _ = tree.walk(TreeWalkMode::PreOrder, |_, entry| {
            if entry.kind() == Some(ObjectType::Blob) && entry.filemode() != 0o120000 {
                let g = *seen.entry(entry.id()).or_insert_with(|| {
                    repo.find_blob(entry.id())
                        .ok()
                        .and_then(|b| generation_of(b.content()))
                });
                gens.extend(g);
            }
            TreeWalkResult::Ok
        });
        out.insert(id.clone(), gens);
    }
    Ok(out)
}
