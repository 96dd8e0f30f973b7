//! The node and its vaults: home layout, root-key protectors, the encrypted
//! metadata table, and the vault manager.

pub mod handle;
pub mod home;
pub mod keychain;
pub mod metadata;
pub mod node;
pub mod protector;
pub mod restore;
pub mod slots;

pub use handle::{Txn, Vault, VaultStat};
pub use node::Node;
pub use protector::{Passphrase, Protector};
