//! Crypto core: the only module that names cipher crates.
//!
//! * [`keys`]: small typed keys that zeroize on drop, and randomness.
//! * [`aead`]: AES-256-GCM with explicit IVs (pages, metadata, key files).
//! * [`kdf`]: HKDF-SHA256 sub-keys and the Argon2id passphrase KDF.
//! * [`rsa`]: the RSA-4096 root keypair, OAEP-SHA256 key wrapping, node ids.
//! * [`siv`]: AES-SIV for deterministic name encryption.
//! * [`secmem`]: locked (mlock), non-dumpable memory for key material.

pub mod aead;
pub mod kdf;
pub mod keys;
pub mod rsa;
pub mod secmem;
pub mod siv;

pub use keys::{random_array, random_bytes, Keychain, SymKey};
