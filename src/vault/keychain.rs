//! Vault key generations: rotation (by hand and by age), re-encryption of
//! the working tree, dropping a generation, and crypto-shredding a vault.
//!
//! A vault's key is a keychain of generations, each RSA-wrapped under the
//! root key in the metadata with its creation time (see `metadata.rs`). New
//! blobs, and blobs rewritten whole, use the newest generation; a blob names
//! its generation in its header and is read with that key. Generation 0 also
//! keys the vault's names, symlink targets, extended attributes, commit
//! messages and change journal, so it is never dropped (only `shred` destroys
//! it). Generation numbers are never reused: a new one is one past every
//! generation the vault ever had, dropped ones included.
//!
//! Rotating changes only the metadata (one atomic, durable write): nothing is
//! re-encrypted. A cut before that write leaves the old table (and no blob
//! can use a generation the table does not hold yet); a cut after it leaves
//! the new one. Re-encryption is its own command (`reencrypt`), which rewrites
//! each old blob under a change journal, so a cut is undone at the next open.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use super::handle::Vault;
use super::metadata::{self, DroppedKey, VaultRecord, WrappedKey};
use super::node::{now_unix, Node};
use crate::crypto::rsa::RootPublic;
use crate::crypto::{Keychain, SymKey};
use crate::error::{Error, Result};
use crate::format::blob::MAGIC;
use crate::store::atomic::crash_point;
use crate::store::{Kind, VPath};

/// The vault setting holding the automatic rotation age, in milliseconds.
pub const ROTATE_AFTER: &str = "rotate-after";

/// One generation of a vault's keychain, as `vault stat` shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct GenerationInfo {
    pub generation: u32,
    /// Unix seconds.
    pub created: i64,
    /// Files of the working tree whose blob uses it.
    pub blobs: u64,
    /// The newest: what new blobs use.
    pub current: bool,
}

/// The generation in a blob's header, if `bytes` starts like a blob.
pub fn generation_of(bytes: &[u8]) -> Option<u32> {
    if bytes.len() < 10 || &bytes[..4] != MAGIC {
        return None;
    }
    Some(u32::from_be_bytes([bytes[6], bytes[7], bytes[8], bytes[9]]))
}

/// The generation of the blob file at `path`; `None` for an empty file.
fn generation_at(path: &Path) -> Result<Option<u32>> {
    let mut head = [0u8; 10];
    let mut f = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut got = 0;
    while got < head.len() {
        match f.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io(path, e)),
        }
    }
    if got == 0 {
        return Ok(None);
    }
    generation_of(&head[..got])
        .map(Some)
        .ok_or_else(|| Error::corrupt(path.display(), "not a pkfs blob"))
}

/// Every regular file of the working tree: plaintext path and backing path.
fn working_files(vault: &Vault) -> Result<Vec<(VPath, std::path::PathBuf, String)>> {
    let mut out = Vec::new();
    for (p, e) in vault.tree().walk(&VPath::root())? {
        if e.kind != Kind::File {
            continue;
        }
        let rel = vault.tree().backing_rel(&p)?;
        out.push((p, vault.dir().join(&rel), rel));
    }
    Ok(out)
}

/// How many files of the working tree use each generation. A file whose
/// header cannot be read is left out (and logged): `pkfs fsck` reports it.
pub fn usage(vault: &Vault) -> Result<BTreeMap<u32, u64>> {
    let mut counts = BTreeMap::new();
    for (_, path, _) in working_files(vault)? {
        match generation_at(&path) {
            Ok(Some(g)) => *counts.entry(g).or_insert(0) += 1,
            Ok(None) => {}
            Err(e) => tracing::warn!("vault {}: {e}", vault.record.id),
        }
    }
    Ok(counts)
}

/// The generations of `vault`, oldest first, with the files using each.
pub fn generations(vault: &Vault) -> Result<Vec<GenerationInfo>> {
    let used = usage(vault)?;
    let record = &vault.record;
    let newest = record.keys.iter().map(|k| k.generation).max();
    let mut out: Vec<GenerationInfo> = record
        .keys
        .iter()
        .map(|k| GenerationInfo {
            generation: k.generation,
            created: record.created_of(k),
            blobs: used.get(&k.generation).copied().unwrap_or(0),
            current: Some(k.generation) == newest,
        })
        .collect();
    out.sort_by_key(|g| g.generation);
    Ok(out)
}

/// The rotation age of a vault record, if it has one.
pub fn rotate_after_of(record: &VaultRecord) -> Option<Duration> {
    record
        .settings
        .get(ROTATE_AFTER)
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|ms| *ms > 0)
        .map(Duration::from_millis)
}

/// Is the newest generation of `record` older than its rotation age at `now`
/// (Unix milliseconds)?
fn rotation_due(record: &VaultRecord, now_ms: i128) -> bool {
    let Some(age) = rotate_after_of(record) else {
        return false;
    };
    let newest = record
        .keys
        .iter()
        .map(|k| record.created_of(k))
        .max()
        .unwrap_or(record.created);
    now_ms - i128::from(newest) * 1000 >= age.as_millis() as i128
}

/// Now, in Unix milliseconds. `PKFS_TEST_ONLY_NOW` (Unix seconds) stands in
/// for the clock in tests (see docs/SECURITY.md).
fn now_ms() -> i128 {
    if let Some(secs) = std::env::var("PKFS_TEST_ONLY_NOW")
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
    {
        return i128::from(secs) * 1000;
    }
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i128)
        .unwrap_or(0)
}

/// Now in Unix seconds (honouring the test clock).
fn now_secs() -> i64 {
    i64::try_from(now_ms() / 1000).unwrap_or_else(|_| now_unix())
}

impl Node {
    /// The unwrapped keychain of vault `id` (the mount follows rotations with it).
    pub fn keychain_of_id(&self, id: &str) -> Result<Keychain> {
        let record = self
            .vaults()
            .iter()
            .find(|v| v.id == id)
            .ok_or_else(|| Error::VaultUndefined(id.to_string()))?;
        record.keychain(self.root())
    }

    /// Change the table with `f`, and write it; on failure the table in memory
    /// is left as it was.
    fn change_table<T>(&mut self, f: impl FnOnce(&mut Node) -> Result<T>) -> Result<T> {
        let before = self.table_mut().clone();
        let out = f(self).and_then(|out| self.save_table().map(|()| out));
        if out.is_err() {
            *self.table_mut() = before;
        }
        out
    }

    /// `vault rotate-key`: add a generation, one past every generation the
    /// vault ever had, and make it the newest. Returns its number. Only the
    /// metadata changes.
    pub fn rotate_key(&mut self, name: &str) -> Result<u32> {
        let key = SymKey::generate();
        let wrapped = metadata::wrap(self.root().public(), &key);
        let created = now_secs();
        self.change_table(|node| {
            let record = node.table_mut().find_mut(name)?;
            let highest = record
                .keys
                .iter()
                .map(|k| k.generation)
                .chain(record.dropped.iter().map(|d| d.generation))
                .max()
                .unwrap_or(0);
            let generation = highest
                .checked_add(1)
                .ok_or(Error::Crypto("no key generation number is left"))?;
            record.keys.push(WrappedKey {
                generation,
                wrapped,
                created: Some(created),
            });
            crash_point("rotate-key-before-metadata");
            Ok(generation)
        })
    }

    /// `vault set --rotate-after`: `None` turns automatic rotation off.
    pub fn set_rotate_after(&mut self, name: &str, age: Option<Duration>) -> Result<()> {
        self.change_table(|node| {
            let record = node.table_mut().find_mut(name)?;
            match age.filter(|a| !a.is_zero()) {
                Some(a) => record
                    .settings
                    .insert(ROTATE_AFTER.into(), a.as_millis().to_string()),
                None => record.settings.remove(ROTATE_AFTER),
            };
            Ok(())
        })
    }

    /// Rotate vault `name` if its newest generation is older than its
    /// `rotate-after`; the new generation, if one was added.
    pub fn rotate_if_due(&mut self, name: &str) -> Result<Option<u32>> {
        let record = self.table_mut().find(name)?;
        if !rotation_due(record, now_ms()) {
            return Ok(None);
        }
        let g = self.rotate_key(name)?;
        tracing::info!(
            "vault {}: key generation {g} added (rotate-after)",
            record_id(self, name)
        );
        Ok(Some(g))
    }

    /// [`Node::rotate_if_due`] for every vault; a failure is logged, not fatal
    /// (the command at hand goes on with the current generation).
    pub fn rotate_all_due(&mut self) {
        let names: Vec<String> = self.vaults().iter().map(|v| v.name.clone()).collect();
        for n in names {
            if let Err(e) = self.rotate_if_due(&n) {
                tracing::warn!("automatic key rotation failed: {e}");
            }
        }
    }

    /// `vault drop-key`: destroy generation `generation` of vault `name`.
    /// Refused for generation 0, for the newest generation, and while any
    /// file of the working tree uses it.
    pub fn drop_key(&mut self, name: &str, generation: u32) -> Result<()> {
        let vault = self.open_vault(name)?;
        let record = &vault.record;
        if !record.keys.iter().any(|k| k.generation == generation) {
            let dropped = record.dropped.iter().any(|d| d.generation == generation);
            return Err(Error::Usage(if dropped {
                format!("key generation {generation} of vault {name:?} was already dropped")
            } else {
                format!("vault {name:?} has no key generation {generation}")
            }));
        }
        if generation == 0 {
            return Err(Error::Usage(format!(
                "key generation 0 of vault {name:?} also keys its names and history \
                 messages and cannot be dropped (`pkfs vault shred` destroys every generation)"
            )));
        }
        let newest = record.keys.iter().map(|k| k.generation).max();
        if newest == Some(generation) {
            return Err(Error::Usage(format!(
                "key generation {generation} is the newest of vault {name:?}; \
                 `pkfs vault rotate-key {name}` first"
            )));
        }
        let users = usage(&vault)?.get(&generation).copied().unwrap_or(0);
        if users > 0 {
            return Err(Error::Usage(format!(
                "{users} file(s) of vault {name:?} still use key generation {generation}; \
                 `pkfs vault reencrypt {name}` moves them to the newest"
            )));
        }
        drop(vault);
        let when = now_secs();
        self.change_table(|node| {
            let record = node.table_mut().find_mut(name)?;
            record.keys.retain(|k| k.generation != generation);
            record.dropped.push(DroppedKey {
                generation,
                dropped: when,
            });
            Ok(())
        })
    }

    /// `vault shred`: forget every generation of vault `name` and remove it.
    /// Once the table without it is durable, nothing pkfs keeps can read the
    /// vault's ciphertext, wherever copies of it are.
    pub fn shred_vault(&mut self, name: &str) -> Result<()> {
        self.delete_vault(name)
    }

    /// The keychain of vault `name`, encrypted to `recipient` (see
    /// docs/FORMAT.md, "Keychain backup").
    pub fn keychain_backup(&self, name: &str, recipient: &RootPublic) -> Result<Vec<u8>> {
        let record = self
            .vaults()
            .iter()
            .find(|v| v.name == name)
            .ok_or_else(|| Error::VaultUndefined(name.to_string()))?;
        let chain = record.keychain(self.root())?;
        backup::seal(record, &chain, recipient)
    }
}

fn record_id(node: &mut Node, name: &str) -> String {
    node.table_mut()
        .find(name)
        .map(|r| r.id.clone())
        .unwrap_or_default()
}

/// Commits of `vault` (by id) that hold files under a dropped generation, with
/// those generations. Empty when the vault dropped none.
pub fn unreadable_commits(vault: &Vault, commits: &[String]) -> BTreeMap<String, BTreeSet<u32>> {
    let dropped: BTreeSet<u32> = vault.record.dropped.iter().map(|d| d.generation).collect();
    if dropped.is_empty() {
        return BTreeMap::new();
    }
    match crate::store::generations::of_commits(vault.dir(), commits, generation_of) {
        Ok(map) => map
            .into_iter()
            .filter_map(|(c, gens)| {
                let lost: BTreeSet<u32> = gens.intersection(&dropped).copied().collect();
                (!lost.is_empty()).then_some((c, lost))
            })
            .collect(),
        Err(e) => {
            tracing::warn!("reading the key generations of the history: {e}");
            BTreeMap::new()
        }
    }
}

/// How many commits of `vault`'s history (discarded ones included) hold
/// files under a dropped generation, and which generations; `None` when none.
pub fn unreadable_history(vault: &Vault) -> Option<(usize, Vec<u32>)> {
    if vault.record.dropped.is_empty() {
        return None;
    }
    let ids: Vec<String> = vault
        .history()
        .log(None, true)
        .ok()?
        .into_iter()
        .map(|e| e.id)
        .collect();
    let lost = unreadable_commits(vault, &ids);
    if lost.is_empty() {
        return None;
    }
    let gens: BTreeSet<u32> = lost.values().flatten().copied().collect();
    Some((lost.len(), gens.into_iter().collect()))
}

#[path = "keychain_backup.rs"]
mod backup;
pub use backup::{open as open_backup, KeychainBackup};
#[path = "keychain_reencrypt.rs"]
mod reencrypt;
pub use reencrypt::{open_files_of, reencrypt, set_open_files, Reencrypted};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::blob::Header;

    fn record(created: &[Option<i64>], rotate_ms: Option<&str>) -> VaultRecord {
        VaultRecord {
            id: "a".into(),
            name: "v".into(),
            created: 1000,
            keys: created
                .iter()
                .enumerate()
                .map(|(g, c)| WrappedKey {
                    generation: g as u32,
                    wrapped: String::new(),
                    created: *c,
                })
                .collect(),
            dropped: Vec::new(),
            settings: rotate_ms
                .map(|ms| [(ROTATE_AFTER.to_string(), ms.to_string())].into())
                .unwrap_or_default(),
        }
    }

    #[test]
    fn rotation_is_due_from_the_newest_generation_on() {
        // No age, or an unparsable or zero one: never.
        for ms in [None, Some("x"), Some("0"), Some("-5")] {
            assert!(!rotation_due(&record(&[None], ms), i128::MAX / 2), "{ms:?}");
        }
        // Generation 0 without `created` counts from the vault's creation.
        let r = record(&[None], Some("60000"));
        assert!(!rotation_due(&r, 1000 * 1000 + 59_999));
        assert!(rotation_due(&r, 1000 * 1000 + 60_000));
        // The newest generation counts, whatever the order of the list.
        let r = record(&[Some(5000), Some(2000)], Some("60000"));
        assert!(!rotation_due(&r, 5000 * 1000 + 59_999));
        assert!(rotation_due(&r, 5000 * 1000 + 60_000));
        assert_eq!(rotate_after_of(&r), Some(Duration::from_secs(60)));
    }

    #[test]
    fn the_generation_is_read_from_offset_6_of_a_blob() {
        let h = Header::new(0x0102_0304).encode();
        assert_eq!(generation_of(&h), Some(0x0102_0304));
        assert_eq!(generation_of(&h[..10]), Some(0x0102_0304));
        assert_eq!(generation_of(&h[..9]), None);
        assert_eq!(generation_of(b"NOPE\x01\x00\x00\x00\x00\x01"), None);
        assert_eq!(generation_of(&[]), None);
    }
}
