//! The inode table: FUSE inode numbers for the mount root, the vault roots and
//! every entry the kernel has looked up.
//!
//! An inode remembers its parent and plaintext name (the last ones it was seen
//! under), so its backing entry can be found again; hard links share one inode
//! through the backing (device, inode) pair. Numbers are never reused.

use std::collections::HashMap;
use std::sync::Arc;

use fuser::FileType;

use super::vaults::VaultFs;

pub const ROOT_INO: u64 = 1;

pub struct Inode {
    pub parent: u64,
    pub name: Vec<u8>,
    pub kind: FileType,
    /// None only for the mount root.
    pub vault: Option<Arc<VaultFs>>,
    pub lookups: u64,
    backing: Option<(u64, u64)>,
    /// Other names of a hard-linked file, tried when the main one is gone.
    pub aliases: Vec<(u64, Vec<u8>)>,
}

pub struct Inodes {
    map: HashMap<u64, Inode>,
    by_backing: HashMap<(String, u64, u64), u64>,
    next: u64,
}

impl Default for Inodes {
    fn default() -> Self {
        let mut map = HashMap::new();
        map.insert(
            ROOT_INO,
            Inode {
                parent: ROOT_INO,
                name: Vec::new(),
                kind: FileType::Directory,
                vault: None,
                lookups: 1,
                backing: None,
                aliases: Vec::new(),
            },
        );
        Inodes {
            map,
            by_backing: HashMap::new(),
            next: ROOT_INO + 1,
        }
    }
}

impl Inodes {
    pub fn get(&self, ino: u64) -> Option<&Inode> {
        self.map.get(&ino)
    }

    pub fn alloc(&mut self) -> u64 {
        let n = self.next;
        self.next += 1;
        n
    }

    /// Register a vault root (`lookups` is pinned: vault roots live for the mount).
    pub fn add_vault_root(&mut self, ino: u64, vault: Arc<VaultFs>, name: &str) {
        self.map.insert(
            ino,
            Inode {
                parent: ROOT_INO,
                name: name.as_bytes().to_vec(),
                kind: FileType::Directory,
                vault: Some(vault),
                lookups: 1,
                backing: None,
                aliases: Vec::new(),
            },
        );
    }

    pub fn remove_vault_root(&mut self, ino: u64) {
        self.map.remove(&ino);
    }

    pub fn rename_vault_root(&mut self, ino: u64, name: &str) {
        if let Some(i) = self.map.get_mut(&ino) {
            i.name = name.as_bytes().to_vec();
        }
    }

    /// The inode for an entry found at (parent, name) with backing identity
    /// (dev, ino): an existing one (refreshed), or a new one. Counts a lookup.
    pub fn found(
        &mut self,
        vault: &Arc<VaultFs>,
        parent: u64,
        name: &[u8],
        kind: FileType,
        backing: (u64, u64),
    ) -> u64 {
        let key = (vault.id.clone(), backing.0, backing.1);
        if let Some(&ino) = self.by_backing.get(&key) {
            if let Some(i) = self.map.get_mut(&ino) {
                if i.kind == kind {
                    if (i.parent, i.name.as_slice()) != (parent, name) {
                        let old = (i.parent, std::mem::replace(&mut i.name, name.to_vec()));
                        i.aliases
                            .retain(|a| (a.0, a.1.as_slice()) != (parent, name));
                        if !i.aliases.contains(&old) {
                            i.aliases.push(old);
                        }
                        i.parent = parent;
                    }
                    i.lookups += 1;
                    return ino;
                }
            }
        }
        let ino = self.alloc();
        self.map.insert(
            ino,
            Inode {
                parent,
                name: name.to_vec(),
                kind,
                vault: Some(vault.clone()),
                lookups: 1,
                backing: Some(backing),
                aliases: Vec::new(),
            },
        );
        self.by_backing.insert(key, ino);
        ino
    }

    /// The inode known for a backing identity, if any.
    pub fn by_backing(&self, vault_id: &str, dev: u64, ino: u64) -> Option<u64> {
        self.by_backing
            .get(&(vault_id.to_string(), dev, ino))
            .copied()
    }

    /// The name (from_parent, from_name) of `ino` became (parent, name).
    pub fn moved(&mut self, ino: u64, from: (u64, &[u8]), parent: u64, name: &[u8]) {
        if let Some(i) = self.map.get_mut(&ino) {
            if let Some(a) = i.aliases.iter_mut().find(|a| (a.0, a.1.as_slice()) == from) {
                *a = (parent, name.to_vec());
            } else {
                i.parent = parent;
                i.name = name.to_vec();
            }
        }
    }

    /// The inode known as `name` in directory `parent`, if any (a scan: for
    /// rare uses only).
    pub fn child(&self, parent: u64, name: &[u8]) -> Option<u64> {
        self.map
            .iter()
            .find(|(_, i)| i.parent == parent && i.name == name)
            .map(|(ino, _)| *ino)
    }

    /// The inode at plaintext path `components` below `root`, if every step
    /// is known.
    pub fn at_path(&self, root: u64, components: &[Vec<u8>]) -> Option<u64> {
        components
            .iter()
            .try_fold(root, |cur, c| self.child(cur, c))
    }

    /// The name (parent, name) of `ino` was removed; another link, if any,
    /// becomes its main name.
    pub fn name_removed(&mut self, ino: u64, parent: u64, name: &[u8]) {
        if let Some(i) = self.map.get_mut(&ino) {
            if (i.parent, i.name.as_slice()) == (parent, name) {
                if let Some((p, n)) = i.aliases.pop() {
                    i.parent = p;
                    i.name = n;
                }
            } else {
                i.aliases
                    .retain(|a| (a.0, a.1.as_slice()) != (parent, name));
            }
        }
    }

    /// The backing entry is gone (last link removed): a new file that reuses the
    /// backing inode number must get a new FUSE inode.
    pub fn unlinked(&mut self, ino: u64) {
        if let Some(i) = self.map.get(&ino) {
            if let (Some(v), Some(b)) = (&i.vault, i.backing) {
                let key = (v.id.clone(), b.0, b.1);
                // The backing number may already belong to a newer file.
                if self.by_backing.get(&key) == Some(&ino) {
                    self.by_backing.remove(&key);
                }
            }
        }
    }

    pub fn forget(&mut self, ino: u64, n: u64) {
        let gone = match self.map.get_mut(&ino) {
            Some(i) if i.parent != ROOT_INO && ino != ROOT_INO => {
                i.lookups = i.lookups.saturating_sub(n);
                i.lookups == 0
            }
            _ => false,
        };
        if gone {
            self.unlinked(ino);
            self.map.remove(&ino);
        }
    }

    /// Every entry inode of `vault_id` (not its root), for invalidation after the
    /// backing tree changed wholesale, once per name the kernel may know it
    /// by (a hard-linked inode's other names too: else the kernel would keep
    /// one of them pointing at the old inode). They keep working by path; the
    /// backing identities are dropped so that new lookups get new inodes.
    pub fn detach_vault(&mut self, vault_id: &str) -> Vec<(u64, u64, Vec<u8>)> {
        self.by_backing.retain(|k, _| k.0 != vault_id);
        self.map
            .iter()
            .filter(|(_, i)| {
                i.parent != ROOT_INO && i.vault.as_ref().is_some_and(|v| v.id == vault_id)
            })
            .flat_map(|(ino, i)| {
                std::iter::once((*ino, i.parent, i.name.clone()))
                    .chain(i.aliases.iter().map(|(p, n)| (*ino, *p, n.clone())))
            })
            .collect()
    }

    /// The plaintext path of `ino` inside its vault, and the vault root's inode.
    pub fn path_of(&self, ino: u64) -> Option<String> {
        let mut parts: Vec<&[u8]> = Vec::new();
        let mut cur = ino;
        loop {
            let i = self.map.get(&cur)?;
            if i.parent == ROOT_INO || cur == ROOT_INO {
                break;
            }
            parts.push(&i.name);
            cur = i.parent;
        }
        parts.reverse();
        // Path text, as change lists carry it (lossless: `store::vpath`).
        let joined: Vec<String> = parts
            .iter()
            .map(|p| crate::store::vpath::escape_name(p))
            .collect();
        Some(joined.join("/"))
    }

    /// (parent inode, name) chain from the vault root down to `ino` (exclusive of
    /// the root), for resolving backing directories.
    pub fn chain(&self, ino: u64) -> Option<Vec<(u64, Vec<u8>)>> {
        let mut out = Vec::new();
        let mut cur = ino;
        loop {
            let i = self.map.get(&cur)?;
            if i.parent == ROOT_INO || cur == ROOT_INO {
                break;
            }
            out.push((cur, i.name.clone()));
            cur = i.parent;
            if out.len() > 4096 {
                return None;
            }
        }
        out.reverse();
        Some(out)
    }
}
