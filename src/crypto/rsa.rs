//! The node's RSA-4096 root keypair: OAEP-SHA256 key wrapping and the node id.
//!
//! Decryption is always blinded (the rsa crate blinds with the OS RNG), which is
//! how pkfs lives with RUSTSEC-2023-0071; see `docs/SECURITY.md`.

use rsa::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
};
use rsa::traits::{PrivateKeyParts, PublicKeyParts};
use rsa::{Oaep, RsaPrivateKey, RsaPublicKey};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::keys::SymKey;
use super::secmem::RegionLock;

pub const ROOT_KEY_BITS: usize = 4096;
/// Size of one wrapped key: the modulus size of RSA-4096.
pub const WRAPPED_LEN: usize = ROOT_KEY_BITS / 8;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RsaError {
    /// The key bytes do not parse as an RSA key of the expected size.
    BadKey,
    /// The wrapped key does not decrypt under this private key.
    Unwrap,
}

/// The public half; wraps keys and names the node.
#[derive(Clone, PartialEq, Eq)]
pub struct RootPublic(RsaPublicKey);

/// The private half. The rsa crate zeroizes its limbs on drop; the limbs of
/// d, the primes, dP, dQ and qInv are locked in memory while the key lives.
pub struct RootKeypair {
    private: RsaPrivateKey,
    public: RootPublic,
    /// Dropped after `private` (fields drop in order): zeroize, then unlock.
    _locked: RegionLock,
}

impl RootKeypair {
    /// A fresh RSA-4096 keypair (several seconds of work).
    pub fn generate() -> Result<Self, RsaError> {
        let mut rng = rand::rng();
        let private = RsaPrivateKey::new(&mut rng, ROOT_KEY_BITS).map_err(|_| RsaError::BadKey)?;
        Ok(Self::from_private(private))
    }

    fn from_private(private: RsaPrivateKey) -> Self {
        let public = RootPublic(private.to_public_key());
        let mut locked = RegionLock::default();
        locked.add_slice(private.d().as_words());
        for p in private.primes() {
            locked.add_slice(p.as_words());
        }
        for x in [private.dp(), private.dq()].into_iter().flatten() {
            locked.add_slice(x.as_words());
        }
        if let Some(q) = private.qinv() {
            locked.add_slice(q.as_montgomery().as_words());
        }
        RootKeypair {
            private,
            public,
            _locked: locked,
        }
    }

    /// Parse an unencrypted PKCS#8 DER private key (as recovered by a protector).
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, RsaError> {
        let private = RsaPrivateKey::from_pkcs8_der(der).map_err(|_| RsaError::BadKey)?;
        Self::checked(private)
    }

    /// Parse an unencrypted PKCS#8 PEM private key.
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, RsaError> {
        let private = RsaPrivateKey::from_pkcs8_pem(pem).map_err(|_| RsaError::BadKey)?;
        Self::checked(private)
    }

    fn checked(private: RsaPrivateKey) -> Result<Self, RsaError> {
        if private.size() != WRAPPED_LEN {
            return Err(RsaError::BadKey);
        }
        Ok(Self::from_private(private))
    }

    pub fn to_pkcs8_der(&self) -> Zeroizing<Vec<u8>> {
        match self.private.to_pkcs8_der() {
            Ok(doc) => Zeroizing::new(doc.as_bytes().to_vec()),
            Err(e) => panic!("encoding an in-memory RSA key failed: {e}"),
        }
    }

    pub fn to_pkcs8_pem(&self) -> Zeroizing<String> {
        match self.private.to_pkcs8_pem(LineEnding::LF) {
            Ok(pem) => Zeroizing::new(pem.to_string()),
            Err(e) => panic!("encoding an in-memory RSA key failed: {e}"),
        }
    }

    pub fn public(&self) -> &RootPublic {
        &self.public
    }

    /// The key that authenticates the metadata file: only a holder of the
    /// private key can make a table pkfs accepts (the public key alone can
    /// wrap keys, so it proves nothing).
    pub fn metadata_mac_key(&self) -> SymKey {
        let der = self.to_pkcs8_der();
        SymKey::with(|out| {
            let hk = hkdf::Hkdf::<Sha256>::new(None, &der);
            if hk.expand(b"pkfs metadata mac v1", out).is_err() {
                panic!("HKDF-SHA256 can always expand 32 bytes");
            }
        })
    }

    /// Unwrap a 32-byte key wrapped by [`RootPublic::wrap`].
    pub fn unwrap_key(&self, wrapped: &[u8]) -> Result<SymKey, RsaError> {
        if wrapped.len() != WRAPPED_LEN {
            return Err(RsaError::Unwrap);
        }
        // `decrypt` blinds with the OS RNG when the crate's `getrandom` feature is on.
        let plain = Zeroizing::new(
            self.private
                .decrypt(Oaep::<Sha256>::new(), wrapped)
                .map_err(|_| RsaError::Unwrap)?,
        );
        SymKey::from_slice(&plain).ok_or(RsaError::Unwrap)
    }
}

impl RootPublic {
    pub fn from_pem(pem: &str) -> Result<Self, RsaError> {
        let key = RsaPublicKey::from_public_key_pem(pem).map_err(|_| RsaError::BadKey)?;
        if key.size() != WRAPPED_LEN {
            return Err(RsaError::BadKey);
        }
        Ok(RootPublic(key))
    }

    pub fn to_pem(&self) -> String {
        match self.0.to_public_key_pem(LineEnding::LF) {
            Ok(pem) => pem,
            Err(e) => panic!("encoding an in-memory RSA public key failed: {e}"),
        }
    }

    pub fn spki_der(&self) -> Vec<u8> {
        match self.0.to_public_key_der() {
            Ok(doc) => doc.as_bytes().to_vec(),
            Err(e) => panic!("encoding an in-memory RSA public key failed: {e}"),
        }
    }

    /// Node id: Base58 of SHA-256 of the SubjectPublicKeyInfo DER.
    pub fn node_id(&self) -> String {
        bs58::encode(Sha256::digest(self.spki_der())).into_string()
    }

    /// RSA-OAEP-SHA256 wrap of a 32-byte key; always [`WRAPPED_LEN`] bytes.
    pub fn wrap_key(&self, key: &SymKey) -> Vec<u8> {
        let mut rng = rand::rng();
        match self
            .0
            .encrypt(&mut rng, Oaep::<Sha256>::new(), key.as_bytes())
        {
            Ok(w) => w,
            Err(e) => panic!("RSA-OAEP wrap of a 32-byte key failed: {e}"),
        }
    }
}

impl std::fmt::Debug for RootKeypair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RootKeypair({})", self.public.node_id())
    }
}
