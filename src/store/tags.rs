//! Where a vault keeps the tag lists of its big committed blobs (`V/tags/<id>`,
//! the format is in `format::tags`). A list is a cache: one that is missing,
//! torn, forged or of another blob is removed, the file is then hashed whole
//! as before, and that check saves a good list. So lists are written without
//! fsync.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use git2::Oid;

use crate::crypto::SymKey;
use crate::format::tags::{TagKey, TagList};

pub const TAGS_DIR: &str = "tags";

pub struct TagStore {
    dir: PathBuf,
    key: TagKey,
}

impl TagStore {
    /// The lists of the vault at `vault_dir`, under its generation-0 key.
    pub fn new(vault_dir: &Path, vault_key: &SymKey) -> TagStore {
        TagStore {
            dir: vault_dir.join(TAGS_DIR),
            key: TagKey::new(vault_key),
        }
    }

    fn path(&self, id: Oid) -> PathBuf {
        self.dir.join(id.to_string())
    }

    pub fn has(&self, id: Oid) -> bool {
        self.path(id).is_file()
    }

    /// The authentic list of blob `id`, if one is saved.
    pub fn load(&self, id: Oid) -> Option<TagList> {
        let bytes = fs::read(self.path(id)).ok()?;
        let mut want = [0u8; 20];
        want.copy_from_slice(id.as_bytes());
        match TagList::decode(&bytes, &self.key, &want) {
            Ok(list) => Some(list),
            Err(e) => {
                // A cache entry: drop it, so that the next whole check of the
                // blob saves a good one.
                tracing::warn!("removing the unusable tag list of blob {id}: {e:?}");
                let _ = fs::remove_file(self.path(id));
                None
            }
        }
    }

    /// Save `list` (best effort: a list that is not saved only costs a hash).
    pub fn save(&self, list: &TagList) {
        let id = Oid::from_bytes(&list.blob_id).unwrap_or(Oid::ZERO_SHA1);
        let write = || -> std::io::Result<()> {
            fs::create_dir_all(&self.dir)?;
            let mut tmp = tempfile::Builder::new()
                .prefix(".tmp-")
                .tempfile_in(&self.dir)?;
            tmp.write_all(&list.encode(&self.key))?;
            tmp.persist(self.path(id)).map_err(|e| e.error)?;
            Ok(())
        };
        if let Err(e) = write() {
            tracing::warn!("saving the tag list of blob {id}: {e}");
        }
    }

    /// Remove every list whose blob `keep` rejects, and leftover temporary
    /// files. Returns how many files were removed.
    pub fn prune(&self, keep: impl Fn(Oid) -> bool) -> usize {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return 0;
        };
        let mut removed = 0;
        for ent in entries.flatten() {
            let name = ent.file_name();
            let keeps = name
                .to_str()
                .and_then(|n| Oid::from_str(n).ok().filter(|id| id.to_string() == n))
                .is_some_and(&keep);
            if !keeps && fs::remove_file(ent.path()).is_ok() {
                removed += 1;
            }
        }
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::offsets::HEADER_LEN;

    fn list(id: u8) -> TagList {
        TagList {
            blob_id: [id; 20],
            blob_len: HEADER_LEN + 28 + 10,
            header: [1; HEADER_LEN as usize],
            tags: vec![[2; 16]],
        }
    }

    #[test]
    fn lists_are_saved_loaded_and_pruned() {
        let d = tempfile::tempdir().unwrap();
        let s = TagStore::new(d.path(), &SymKey::from_bytes([3; 32]));
        let (a, b) = (list(0xaa), list(0xbb));
        let (ida, idb) = (
            Oid::from_bytes(&a.blob_id).unwrap(),
            Oid::from_bytes(&b.blob_id).unwrap(),
        );
        assert!(s.load(ida).is_none());
        s.save(&a);
        s.save(&b);
        assert!(s.has(ida));
        assert_eq!(s.load(ida), Some(a.clone()));
        // A list copied under another blob's name is refused.
        fs::copy(s.path(ida), s.path(idb)).unwrap();
        assert!(s.load(idb).is_none());
        assert!(!s.has(idb), "an unusable list is removed");
        // Another vault's key does not open it.
        let other = TagStore::new(d.path(), &SymKey::from_bytes([4; 32]));
        assert!(other.load(ida).is_none());
        s.save(&a);
        s.save(&b);
        fs::write(d.path().join(TAGS_DIR).join(".tmp-x"), b"torn").unwrap();
        assert_eq!(s.prune(|id| id == ida), 2);
        assert!(s.has(ida) && !s.has(idb));
        assert_eq!(s.load(ida), Some(a));
    }
}
