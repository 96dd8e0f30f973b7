//! The key store in memory: owners, their services, and each service's
//! keychain of data keys, oldest first.
//!
//! Nothing here reads a clock: every operation that depends on time takes
//! `now` (Unix seconds) from its caller, so expiry is a pure function of the
//! stored creation times and the `now` given (see docs/KEYS.md, "Time").
//!
//! The default key of (owner, service) is the last key of its keychain, kept
//! sorted by creation time. It is replaced (a new key appended) once it is
//! more than `expiration_days` old; older keys stay, and are found by id.

use std::collections::BTreeMap;

use crate::crypto::{random_array, SymKey};
use crate::error::{Error, Result};

/// Seconds in a day.
pub const DAY: i64 = 86_400;
/// The expiration of a new node's default keys.
pub const DEFAULT_EXPIRATION_DAYS: u32 = 30;
/// The longest expiration `keys config` accepts (100 years).
pub const MAX_EXPIRATION_DAYS: u32 = 36_500;
/// The longest owner, service or key id, in bytes.
pub const MAX_NAME: usize = 255;

/// One data key.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyEntry {
    /// Base58 of 16 random bytes for keys made here; any valid name for keys
    /// restored from elsewhere.
    pub id: String,
    /// Unix seconds.
    pub created: i64,
    pub key: SymKey,
}

impl std::fmt::Debug for KeyEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyEntry({}, created {})", self.id, self.created)
    }
}

/// An owner's keychains by service.
pub type OwnerKeys = BTreeMap<String, Vec<KeyEntry>>;

/// What `list` shows of one key: never the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub owner: String,
    pub service: String,
    pub id: String,
    pub created: i64,
    /// The current default key of its (owner, service).
    pub default: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyStore {
    pub expiration_days: u32,
    pub owners: BTreeMap<String, OwnerKeys>,
}

impl Default for KeyStore {
    fn default() -> Self {
        KeyStore {
            expiration_days: DEFAULT_EXPIRATION_DAYS,
            owners: BTreeMap::new(),
        }
    }
}

/// Check an owner, service or key id: 1 to [`MAX_NAME`] bytes, no control
/// characters. `what` names it in the error.
pub fn check_name(what: &str, name: &str) -> Result<()> {
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(Error::Usage(format!(
            "{what} must be 1 to {MAX_NAME} bytes long"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(Error::Usage(format!(
            "{what} {name:?} contains control characters"
        )));
    }
    Ok(())
}

/// A fresh key id: Base58 of 16 random bytes.
pub fn new_id() -> String {
    bs58::encode(random_array::<16>()).into_string()
}

fn no_such_key(owner: &str, service: &str, id: &str) -> Error {
    Error::NoSuchKey(format!(
        "no key {id:?} for service {service:?} of owner {owner:?}"
    ))
}

impl KeyStore {
    /// The expiration in seconds.
    pub fn expiration(&self) -> i64 {
        i64::from(self.expiration_days) * DAY
    }

    /// The current default key of (owner, service) at `now`, if there is one
    /// and it has not expired.
    pub fn current(&self, owner: &str, service: &str, now: i64) -> Option<&KeyEntry> {
        let last = self.owners.get(owner)?.get(service)?.last()?;
        (now.saturating_sub(last.created) <= self.expiration()).then_some(last)
    }

    /// Append a new default key to (owner, service), created at `now` (or at
    /// the creation time of the newest key, if the clock went back since).
    pub fn create_default(&mut self, owner: &str, service: &str, now: i64) -> Result<&KeyEntry> {
        check_name("owner", owner)?;
        check_name("service", service)?;
        let chain = self
            .owners
            .entry(owner.to_string())
            .or_default()
            .entry(service.to_string())
            .or_default();
        let created = chain.last().map_or(now, |l| l.created.max(now));
        let mut id = new_id();
        while chain.iter().any(|k| k.id == id) {
            id = new_id();
        }
        chain.push(KeyEntry {
            id,
            created,
            key: SymKey::generate(),
        });
        chain
            .last()
            .ok_or(Error::Crypto("a keychain lost its new key"))
    }

    /// The default key at `now`, made when there is none or it expired; the
    /// flag says whether it was made (and so must be saved).
    pub fn default_key(
        &mut self,
        owner: &str,
        service: &str,
        now: i64,
    ) -> Result<(KeyEntry, bool)> {
        if let Some(k) = self.current(owner, service, now) {
            return Ok((k.clone(), false));
        }
        Ok((self.create_default(owner, service, now)?.clone(), true))
    }

    /// Exactly the key `id` of (owner, service).
    pub fn by_id(&self, owner: &str, service: &str, id: &str) -> Result<&KeyEntry> {
        self.owners
            .get(owner)
            .and_then(|o| o.get(service))
            .and_then(|c| c.iter().find(|k| k.id == id))
            .ok_or_else(|| no_such_key(owner, service, id))
    }

    /// Every key (of `owner`, when given), without the keys themselves.
    pub fn list(&self, owner: Option<&str>) -> Vec<Listed> {
        let mut out = Vec::new();
        for (o, services) in &self.owners {
            if owner.is_some_and(|w| w != o) {
                continue;
            }
            for (s, chain) in services {
                for (i, k) in chain.iter().enumerate() {
                    out.push(Listed {
                        owner: o.clone(),
                        service: s.clone(),
                        id: k.id.clone(),
                        created: k.created,
                        default: i + 1 == chain.len(),
                    });
                }
            }
        }
        out
    }

    /// Every keychain of `owner` (empty when it has none), left in place.
    pub fn owner_keys(&self, owner: &str) -> OwnerKeys {
        self.owners.get(owner).cloned().unwrap_or_default()
    }

    /// Remove every keychain of `owner`; returns them.
    pub fn take_owner(&mut self, owner: &str) -> OwnerKeys {
        self.owners.remove(owner).unwrap_or_default()
    }

    /// Put keychains back under `owner`, merged with what it has now: a key
    /// whose id is already there with the same key and time is skipped; the
    /// same id with another key is refused (nothing is changed then). Each
    /// keychain stays sorted by creation time. Returns how many keys were added.
    pub fn restore_owner(&mut self, owner: &str, services: OwnerKeys) -> Result<usize> {
        check_name("owner", owner)?;
        let mut merged = self.owner_keys(owner);
        let mut added = 0;
        for (service, chain) in services {
            check_name("service", &service)?;
            let into = merged.entry(service.clone()).or_default();
            for k in chain {
                check_name("key id", &k.id)?;
                match into.iter().find(|have| have.id == k.id) {
                    Some(have) if *have == k => {}
                    Some(_) => {
                        return Err(Error::Exists(format!(
                            "key {:?} of service {service:?} of owner {owner:?} (with another key)",
                            k.id
                        )))
                    }
                    None => {
                        into.push(k);
                        added += 1;
                    }
                }
            }
            into.sort_by_key(|k| k.created);
        }
        merged.retain(|_, chain| !chain.is_empty());
        if !merged.is_empty() {
            self.owners.insert(owner.to_string(), merged);
        }
        Ok(added)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_800_000_000;

    #[test]
    fn default_then_same_then_expired_then_new() {
        let mut s = KeyStore::default();
        let (a, made) = s.default_key("o", "svc", T0).unwrap();
        assert!(made);
        let (a2, made) = s.default_key("o", "svc", T0 + 30 * DAY).unwrap();
        assert!(!made, "30 days old is not older than 30 days");
        assert_eq!(a, a2);
        let (b, made) = s.default_key("o", "svc", T0 + 30 * DAY + 1).unwrap();
        assert!(made);
        assert_ne!(a.id, b.id);
        assert_ne!(a.key, b.key);
        assert_eq!(b.created, T0 + 30 * DAY + 1);
        // The old key stays reachable by id, years later.
        let old = s.by_id("o", "svc", &a.id).unwrap();
        assert_eq!(old, &a);
        assert!(matches!(
            s.by_id("o", "svc", "nope"),
            Err(Error::NoSuchKey(_))
        ));
        assert!(matches!(
            s.by_id("other", "svc", &a.id),
            Err(Error::NoSuchKey(_))
        ));
    }

    #[test]
    fn a_clock_that_went_back_still_makes_the_new_key_the_default() {
        let mut s = KeyStore {
            expiration_days: 1,
            ..Default::default()
        };
        s.restore_owner(
            "o",
            [(
                "svc".to_string(),
                vec![KeyEntry {
                    id: "x".into(),
                    created: T0,
                    key: SymKey::generate(),
                }],
            )]
            .into(),
        )
        .unwrap();
        // Far in the past: the existing key is "fresh" (age negative).
        assert_eq!(s.default_key("o", "svc", T0 - 5).unwrap().0.id, "x");
        let (n, made) = s.default_key("o", "svc", T0 + 2 * DAY).unwrap();
        assert!(made);
        assert_eq!(s.list(None).last().unwrap().id, n.id);
    }

    #[test]
    fn owners_are_taken_and_restored_whole() {
        let mut s = KeyStore::default();
        let a = s.default_key("o", "s1", T0).unwrap().0;
        let b = s.default_key("o", "s2", T0).unwrap().0;
        let c = s.default_key("p", "s1", T0).unwrap().0;
        let taken = s.take_owner("o");
        assert_eq!(taken.len(), 2);
        assert!(s.by_id("o", "s1", &a.id).is_err());
        assert_eq!(s.by_id("p", "s1", &c.id).unwrap(), &c);
        // A new key made meanwhile is kept; restoring twice adds nothing more.
        let d = s.default_key("o", "s1", T0 + 1).unwrap().0;
        assert_eq!(s.restore_owner("o", taken.clone()).unwrap(), 2);
        assert_eq!(s.restore_owner("o", taken.clone()).unwrap(), 0);
        assert_eq!(s.by_id("o", "s1", &a.id).unwrap(), &a);
        assert_eq!(s.by_id("o", "s2", &b.id).unwrap(), &b);
        assert_eq!(s.current("o", "s1", T0 + 1).unwrap(), &d);
        // The same id with another key is refused, and changes nothing.
        let mut bad = taken;
        bad.get_mut("s1").unwrap()[0].key = SymKey::generate();
        let before = s.clone();
        assert!(matches!(s.restore_owner("o", bad), Err(Error::Exists(_))));
        assert_eq!(s, before);
    }

    #[test]
    fn names_are_checked() {
        let mut s = KeyStore::default();
        assert!(s.default_key("", "svc", T0).is_err());
        assert!(s.default_key("o", "a\nb", T0).is_err());
        assert!(s.default_key("o", &"x".repeat(256), T0).is_err());
        assert!(s.owners.is_empty());
    }

    #[test]
    fn list_marks_defaults_and_filters_owners() {
        let mut s = KeyStore::default();
        s.default_key("o", "s", T0).unwrap();
        s.default_key("o", "s", T0 + 31 * DAY).unwrap();
        s.default_key("p", "s", T0).unwrap();
        let all = s.list(None);
        assert_eq!(all.len(), 3);
        let of_o = s.list(Some("o"));
        assert_eq!(of_o.len(), 2);
        assert_eq!(
            of_o.iter().map(|l| l.default).collect::<Vec<_>>(),
            [false, true]
        );
    }
}
