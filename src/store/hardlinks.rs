//! Hard links written back from history.
//!
//! A hard-linked file is one backing inode with several names; git stores
//! each name as its own tree entry, all with the same blob id. Two distinct
//! files never share a blob id: each blob's header carries the file's own
//! random id and every page its own nonce (`format/blob.rs`), so equal
//! plaintext gives different blobs. The one exception is the empty file (a
//! zero-byte blob, the same for every empty file): empty files are never
//! linked by this rule, so hard links of an empty file come back as separate
//! empty files. Hence the rule used by everything that
//! writes files from history (`version checkout`, undo and restore,
//! `fsck --restore`): regular entries of one tree with the same blob id are
//! names of one file, and are written as one inode (the first written, the
//! others `link(2)`ed to it), never as copies (which `fsck` would report as
//! `duplicate-file-id`).

use std::collections::HashMap;
use std::io;

use git2::{ObjectType, Oid, Tree, TreeWalkMode, TreeWalkResult};

use super::dirfd::DirFd;

/// Is `mode` a regular file's git mode?
fn regular(mode: i32) -> bool {
    mode == 0o100644 || mode == 0o100755
}

/// Blob ids that name more than one regular file of `tree`, each with those
/// names' paths relative to `tree` ("dir/sub/name", backing names), sorted.
pub fn linked_blobs(tree: &Tree<'_>) -> HashMap<Oid, Vec<String>> {
    let mut all: HashMap<Oid, Vec<String>> = HashMap::new();
    let empty = Oid::hash_object(ObjectType::Blob, b"").ok();
    let _ = tree.walk(TreeWalkMode::PreOrder, |root, e| {
        if e.kind() == Some(ObjectType::Blob) && regular(e.filemode()) && Some(e.id()) != empty {
            if let Ok(name) = e.name() {
                all.entry(e.id()).or_default().push(format!("{root}{name}"));
            }
        }
        TreeWalkResult::Ok
    });
    all.retain(|_, names| names.len() > 1);
    for names in all.values_mut() {
        names.sort_unstable();
    }
    all
}

/// Does `tree` hold a regular file at `rel` with blob `id`?
pub fn holds(tree: Option<&Tree<'_>>, rel: &str, id: Oid) -> bool {
    tree.and_then(|t| t.get_path(std::path::Path::new(rel)).ok())
        .is_some_and(|e| e.id() == id && regular(e.filemode()))
}

/// The directory of `rel` below `root`, reached one descriptor per level,
/// and the last name.
pub fn locate(root: &DirFd, rel: &str) -> io::Result<(DirFd, String)> {
    let mut parts: Vec<&str> = rel.split('/').filter(|p| !p.is_empty()).collect();
    let name = parts
        .pop()
        .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut dir = root.child(".")?;
    for p in parts {
        dir = dir.child(p)?;
    }
    Ok((dir, name.to_string()))
}

/// Put `dir/name` in place as a new name of the file at `anchor` (below
/// `root`): linked under `tmp`, then renamed over `name`. On error nothing
/// is left under `tmp`.
pub fn link_into(root: &DirFd, anchor: &str, dir: &DirFd, tmp: &str, name: &str) -> io::Result<()> {
    let (from_dir, from_name) = locate(root, anchor)?;
    from_dir.link_to(&from_name, dir, tmp)?;
    if let Err(e) = dir.rename_to(tmp, dir, name, 0) {
        let _ = dir.unlink(tmp);
        return Err(e);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_non_empty_blob_under_several_names_is_a_hard_link_and_empty_files_never_are() {
        let d = tempfile::tempdir().unwrap();
        let repo = git2::Repository::init(d.path()).unwrap();
        let file = repo.blob(b"one file").unwrap();
        let other = repo.blob(b"another file").unwrap();
        let empty = repo.blob(b"").unwrap();
        let mut sub = repo.treebuilder(None).unwrap();
        sub.insert("b", file, 0o100644).unwrap();
        sub.insert("e2", empty, 0o100644).unwrap();
        sub.insert("l", file, 0o120000).unwrap();
        let sub = sub.write().unwrap();
        let mut top = repo.treebuilder(None).unwrap();
        top.insert("a", file, 0o100644).unwrap();
        top.insert("c", other, 0o100644).unwrap();
        top.insert("e1", empty, 0o100644).unwrap();
        top.insert("d", sub, 0o040000).unwrap();
        let tree = repo.find_tree(top.write().unwrap()).unwrap();
        let linked = linked_blobs(&tree);
        assert_eq!(linked.len(), 1, "{linked:?}");
        assert_eq!(linked[&file], ["a", "d/b"]);
        assert!(holds(Some(&tree), "d/b", file));
        assert!(!holds(Some(&tree), "d/l", file));
        assert!(!holds(Some(&tree), "c", file));
        assert!(!holds(None, "a", file));
    }
}
