//! The key store as a service sees it: open (the keystore key and the
//! decrypted store in memory) or sealed, shared by every client.
//!
//! [`Keyring`] owns one `RwLock<Option<Unsealed>>`. `None` is the sealed
//! state: every operation then fails at once with [`Error::Sealed`], without
//! waiting on anything. [`Keyring::seal`] drops (and so zeroizes) the key and
//! the store; [`Keyring::unseal`] loads them again. A daemon that seals and
//! unseals its node calls these two; nothing else changes.
//!
//! Reads take the lock shared. A change takes it exclusively, changes the
//! store, writes the file (atomically and durably) and only then answers; a
//! failed write puts the store back as it was. The lock is never held while a
//! client is read from or written to, so a slow client delays nobody. Two
//! clients asking at once for a default key that does not exist yet get the
//! same key: the second finds the first's under the exclusive lock.
//!
//! Deleting an owner also replaces the keystore key, when the keyring knows
//! where it is kept (a [`KeyHolder`]: the node's vault table): the new key is
//! staged beside the old one, the `keys` file rewritten under it, then the old
//! one forgotten. A copy of the old `keys` file then no longer opens with the
//! node, whatever happens to the disk's old blocks. A cut between the steps
//! leaves the file under one of the two keys the table holds; opening tries
//! both ([`Keyring::open_either`]).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use super::backup::Backup;
use super::file;
use super::store::{check_name, KeyEntry, KeyStore, Listed, MAX_EXPIRATION_DAYS};
use crate::crypto::SymKey;
use crate::error::{Error, Result};

/// Where the keystore key is kept, so that a delete can replace it.
pub trait KeyHolder: Send + Sync {
    /// Keep `next` beside the current key, durably.
    fn stage(&self, next: &SymKey) -> Result<()>;
    /// The `keys` file is under the staged key now: make it the key.
    fn commit(&self) -> Result<()>;
}

/// The open state: the keystore key and the store it decrypts.
struct Unsealed {
    key: SymKey,
    store: KeyStore,
}

pub struct Keyring {
    home: PathBuf,
    state: RwLock<Option<Unsealed>>,
    holder: Mutex<Option<Arc<dyn KeyHolder>>>,
    /// Held through a re-keying (stage, rewrite, commit).
    deleting: Mutex<()>,
    /// The file is under a staged key whose commit failed: commit it before
    /// staging another.
    uncommitted: AtomicBool,
}

impl Keyring {
    /// A sealed keyring for the home at `home`.
    pub fn sealed(home: &Path) -> Keyring {
        Keyring {
            home: home.to_path_buf(),
            state: RwLock::new(None),
            holder: Mutex::new(None),
            deleting: Mutex::new(()),
            uncommitted: AtomicBool::new(false),
        }
    }

    /// Replace the keystore key at each delete, through `holder`.
    pub fn set_holder(&self, holder: Arc<dyn KeyHolder>) {
        *self.holder.lock() = Some(holder);
    }

    /// Open the store under `key`, or, failing that, under `next` (a
    /// re-keying was cut after the file was rewritten). `true`: it was
    /// `next`, which the caller should now commit as the keystore key.
    pub fn open_either(home: &Path, key: SymKey, next: Option<SymKey>) -> Result<(Keyring, bool)> {
        let k = Keyring::sealed(home);
        let used_next = k.unseal_either(key, next)?;
        Ok((k, used_next))
    }

    /// [`Keyring::unseal`] under `key`, or failing that `next` (see
    /// [`Keyring::open_either`]); for a node that is unsealed again, with
    /// `Node::keystore_key` and `Node::next_keystore_key`.
    pub fn unseal_either(&self, key: SymKey, next: Option<SymKey>) -> Result<bool> {
        match (self.unseal(key), next) {
            (Ok(()), _) => Ok(false),
            (Err(e), None) => Err(e),
            (Err(e), Some(next)) => match self.unseal(next) {
                Ok(()) => Ok(true),
                Err(_) => Err(e),
            },
        }
    }

    /// An open keyring: the store at `home/keys` under `key`.
    pub fn open(home: &Path, key: SymKey) -> Result<Keyring> {
        let k = Keyring::sealed(home);
        k.unseal(key)?;
        Ok(k)
    }

    /// Load the store under `key` (the node was unlocked).
    pub fn unseal(&self, key: SymKey) -> Result<()> {
        let store = file::load(&self.home, &key)?;
        *self.state.write() = Some(Unsealed { key, store });
        Ok(())
    }

    /// Forget the key and the store (the node was sealed), and let go of
    /// the node that held the keystore key, so that its home lock goes with it.
    pub fn seal(&self) {
        *self.state.write() = None;
        *self.holder.lock() = None;
    }

    pub fn is_sealed(&self) -> bool {
        self.state.read().is_none()
    }

    /// Run `f` on the store, shared.
    fn read<T>(&self, f: impl FnOnce(&KeyStore) -> Result<T>) -> Result<T> {
        match &*self.state.read() {
            Some(u) => f(&u.store),
            None => Err(Error::sealed_keys()),
        }
    }

    /// Run `f` on the store, exclusively; when it says it changed something,
    /// save the store, or undo the change if saving fails.
    fn change<T>(&self, f: impl FnOnce(&mut KeyStore) -> Result<(T, bool)>) -> Result<T> {
        let mut guard = self.state.write();
        let Some(u) = guard.as_mut() else {
            return Err(Error::sealed_keys());
        };
        let before = u.store.clone();
        let (out, changed) = f(&mut u.store)?;
        if changed {
            if let Err(e) = file::save(&self.home, &u.key, &u.store) {
                u.store = before;
                return Err(e);
            }
        }
        Ok(out)
    }

    /// The key `id` of (owner, service), or without `id` the default key at
    /// `now` (made, and saved, when there is none or it expired).
    pub fn get(&self, owner: &str, service: &str, id: Option<&str>, now: i64) -> Result<KeyEntry> {
        check_name("owner", owner)?;
        check_name("service", service)?;
        if let Some(id) = id {
            return self.read(|s| s.by_id(owner, service, id).cloned());
        }
        if let Some(k) = self.read(|s| Ok(s.current(owner, service, now).cloned()))? {
            return Ok(k);
        }
        self.change(|s| s.default_key(owner, service, now))
    }

    /// Every key (of `owner`), without the keys; and the expiration in days.
    pub fn list(&self, owner: Option<&str>) -> Result<(Vec<Listed>, u32)> {
        self.read(|s| Ok((s.list(owner), s.expiration_days)))
    }

    /// Every keychain of `owner`, left in place.
    pub fn export_owner(&self, owner: &str) -> Result<Backup> {
        check_name("owner", owner)?;
        self.read(|s| {
            Ok(Backup {
                owner: owner.to_string(),
                services: s.owner_keys(owner),
            })
        })
    }

    /// Remove every keychain of `owner` from the store, durably; returns
    /// them. After this nothing pkfs keeps holds these keys.
    pub fn delete_owner(&self, owner: &str) -> Result<Backup> {
        check_name("owner", owner)?;
        let holder = self.holder.lock().clone();
        let Some(holder) = holder else {
            return self.change(|s| {
                let services = s.take_owner(owner);
                let changed = !services.is_empty();
                let owner = owner.to_string();
                Ok((Backup { owner, services }, changed))
            });
        };
        // One re-keying at a time; the store is locked only to rewrite the
        // file, never while the holder (the node) is busy.
        let _one = self.deleting.lock();
        if !self.read(|s| Ok(s.owners.contains_key(owner)))? {
            return Ok(Backup {
                owner: owner.to_string(),
                services: Default::default(),
            });
        }
        if self.uncommitted.load(Ordering::SeqCst) {
            holder.commit()?;
            self.uncommitted.store(false, Ordering::SeqCst);
        }
        let next = SymKey::generate();
        // A staged key the file never gets is harmless: the file still
        // opens under the current one, which opening tries first.
        holder.stage(&next)?;
        crate::store::atomic::crash_point("keys-rekey-staged");
        let backup = {
            let mut guard = self.state.write();
            let Some(u) = guard.as_mut() else {
                return Err(Error::sealed_keys());
            };
            let mut store = u.store.clone();
            let services = store.take_owner(owner);
            file::save(&self.home, &next, &store)?;
            crate::store::atomic::crash_point("keys-rekey-written");
            u.store = store;
            u.key = next;
            Backup {
                owner: owner.to_string(),
                services,
            }
        };
        if let Err(e) = holder.commit() {
            tracing::warn!("the new keystore key is not committed yet: {e}");
            self.uncommitted.store(true, Ordering::SeqCst);
        }
        Ok(backup)
    }

    /// Put an owner's keychains back (merged with what it has now); returns
    /// how many keys were added.
    pub fn restore_owner(&self, backup: Backup) -> Result<usize> {
        backup.check()?;
        self.change(|s| {
            let n = s.restore_owner(&backup.owner, backup.services)?;
            Ok((n, n > 0))
        })
    }

    /// The expiration in days of default keys (set when `days` is given).
    pub fn expiration_days(&self, days: Option<u32>) -> Result<u32> {
        let Some(days) = days else {
            return self.read(|s| Ok(s.expiration_days));
        };
        if days == 0 || days > MAX_EXPIRATION_DAYS {
            return Err(Error::Usage(format!(
                "the expiration must be 1 to {MAX_EXPIRATION_DAYS} days"
            )));
        }
        self.change(|s| {
            let changed = s.expiration_days != days;
            s.expiration_days = days;
            Ok((days, changed))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::store::DAY;
    use std::sync::Arc;

    const T0: i64 = 1_800_000_000;

    #[test]
    fn sealed_refuses_everything_and_unseal_brings_the_same_keys_back() {
        let dir = tempfile::tempdir().unwrap();
        let key = SymKey::generate();
        let ring = Keyring::open(dir.path(), key.clone()).unwrap();
        let a = ring.get("o", "s", None, T0).unwrap();
        ring.seal();
        assert!(ring.is_sealed());
        assert!(matches!(
            ring.get("o", "s", None, T0),
            Err(Error::Sealed(_))
        ));
        assert!(matches!(ring.list(None), Err(Error::Sealed(_))));
        assert!(matches!(ring.delete_owner("o"), Err(Error::Sealed(_))));
        ring.unseal(key).unwrap();
        assert_eq!(ring.get("o", "s", None, T0 + 1).unwrap(), a);
        // Another node's key does not open the file.
        assert!(ring.unseal(SymKey::generate()).is_err());
    }

    #[test]
    fn saved_durably_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let key = SymKey::generate();
        let ring = Keyring::open(dir.path(), key.clone()).unwrap();
        let a = ring.get("o", "s", None, T0).unwrap();
        let b = ring.get("o", "s", None, T0 + 31 * DAY).unwrap();
        assert_ne!(a.id, b.id);
        ring.expiration_days(Some(7)).unwrap();
        let again = Keyring::open(dir.path(), key).unwrap();
        assert_eq!(again.get("o", "s", Some(&a.id), T0).unwrap(), a);
        assert_eq!(again.get("o", "s", None, T0 + 32 * DAY).unwrap(), b);
        assert_eq!(again.expiration_days(None).unwrap(), 7);
    }

    #[test]
    fn concurrent_first_gets_agree() {
        let dir = tempfile::tempdir().unwrap();
        let ring = Arc::new(Keyring::open(dir.path(), SymKey::generate()).unwrap());
        let got: Vec<KeyEntry> = std::thread::scope(|sc| {
            let hs: Vec<_> = (0..16)
                .map(|_| {
                    let r = ring.clone();
                    sc.spawn(move || r.get("o", "s", None, T0).unwrap())
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(got.iter().all(|k| *k == got[0]));
        assert_eq!(ring.list(None).unwrap().0.len(), 1);
    }

    /// A holder that keeps the keys in memory, like the vault table would.
    #[derive(Default)]
    struct Table {
        keys: Mutex<(Option<SymKey>, Option<SymKey>)>,
    }

    impl KeyHolder for Table {
        fn stage(&self, next: &SymKey) -> Result<()> {
            self.keys.lock().1 = Some(next.clone());
            Ok(())
        }
        fn commit(&self) -> Result<()> {
            let mut k = self.keys.lock();
            if let Some(n) = k.1.take() {
                k.0 = Some(n);
            }
            Ok(())
        }
    }

    #[test]
    fn deleting_replaces_the_keystore_key() {
        let dir = tempfile::tempdir().unwrap();
        let first = SymKey::generate();
        let ring = Keyring::open(dir.path(), first.clone()).unwrap();
        let table = Arc::new(Table::default());
        table.keys.lock().0 = Some(first.clone());
        ring.set_holder(table.clone());
        let a = ring.get("o", "s", None, T0).unwrap();
        let b = ring.get("p", "s", None, T0).unwrap();
        let old_file = std::fs::read(dir.path().join("keys")).unwrap();
        ring.delete_owner("o").unwrap();
        let now_key = table.keys.lock().0.clone().unwrap();
        assert_ne!(now_key, first);
        // The old copy does not open with the node's key any more; the new
        // file does, without o's keys.
        assert!(file::open(&now_key, &old_file).is_err());
        let again = Keyring::open(dir.path(), now_key.clone()).unwrap();
        assert!(again.get("o", "s", Some(&a.id), T0).is_err());
        assert_eq!(again.get("p", "s", Some(&b.id), T0).unwrap(), b);
        // A re-keying cut after the file was rewritten: opened under `next`.
        let next = SymKey::generate();
        file::save(
            dir.path(),
            &next,
            &file::open(&now_key, &std::fs::read(dir.path().join("keys")).unwrap()).unwrap(),
        )
        .unwrap();
        let (r, used_next) = Keyring::open_either(dir.path(), now_key, Some(next)).unwrap();
        assert!(used_next);
        assert_eq!(r.get("p", "s", Some(&b.id), T0).unwrap(), b);
    }

    #[test]
    fn delete_then_restore_gives_the_same_keys() {
        let dir = tempfile::tempdir().unwrap();
        let ring = Keyring::open(dir.path(), SymKey::generate()).unwrap();
        let a = ring.get("o", "s", None, T0).unwrap();
        let backup = ring.delete_owner("o").unwrap();
        assert!(matches!(
            ring.get("o", "s", Some(&a.id), T0),
            Err(Error::NoSuchKey(_))
        ));
        assert_eq!(ring.restore_owner(backup).unwrap(), 1);
        assert_eq!(ring.get("o", "s", Some(&a.id), T0).unwrap(), a);
        assert_eq!(ring.get("o", "s", None, T0).unwrap(), a);
    }
}
