//! The key service's keys: data keys that other programs on the machine get
//! from the node, by owner and service (see `docs/KEYS.md`).
//!
//! * [`store`]: the model: owners, services, keychains, default keys and
//!   their expiry (time is always a parameter).
//! * [`file`]: the `keys` file beside `metadata`, encrypted under the node's
//!   keystore key.
//! * [`backup`]: one owner's keychains encrypted to an RSA public key
//!   (`keys delete-owner` / `restore-owner`).
//! * [`ring`]: the store shared by a service's clients, open or sealed.
//!
//! Dependencies: crypto and store (atomic writes) only; the keystore key
//! itself is kept wrapped in the vault table (`Node::keystore_key`).

pub mod backup;
pub mod file;
pub mod ring;
pub mod store;

pub use ring::Keyring;
pub use store::{KeyEntry, KeyStore};

/// The owner of keys asked for without one.
pub const DEFAULT_OWNER: &str = "default";

/// Now, in Unix seconds, from the system clock. The only clock of the key
/// service: everything below takes `now` as a parameter.
pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
