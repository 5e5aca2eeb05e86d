//! The boundary to the token: every private key the appliance uses lives behind [`Hsm`].
//!
//! The trait is deliberately small and *blocking* (as rustls's signing traits are): a PKCS#11
//! call holds a thread until the device answers, so async code reaches the token only through
//! [`Token`], which runs each call on a dedicated pool of token threads. Key objects are named by their
//! `CKA_ID` ([`ObjectId`]); the store keeps that id and the public key, never anything private.
//!
//! Backends: [`pkcs11`] (SoftHSMv2, YubiHSM 2 through `yubihsm_pkcs11.so`, Nitrokey NetHSM).
//! Which device and how it is reached is described by an [`profile::HsmProfile`].

pub mod pkcs11;
pub mod profile;
mod token;

use std::fmt;

pub use self::token::{Token, TokenUsage};

/// A token object's `CKA_ID`: 16 random bytes for keys the appliance generates.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectId(Vec<u8>);

impl ObjectId {
    pub fn new(bytes: Vec<u8>) -> Self {
        ObjectId(bytes)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn to_hex(&self) -> String {
        crate::hex::encode(&self.0)
    }

    /// Parses a non-empty hex id.
    pub fn from_hex(hex: &str) -> Option<Self> {
        crate::hex::decode(hex)
            .filter(|bytes| !bytes.is_empty())
            .map(ObjectId)
    }
}

impl fmt::Debug for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectId({})", self.to_hex())
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// An Ed25519 key pair held by the token: its id, label and public half.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenKey {
    pub object_id: ObjectId,
    pub label: String,
    pub public_key: [u8; 32],
}

/// The protection attributes of a private key object, as the token reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct KeyAttributes {
    pub token: bool,
    pub private: bool,
    pub sensitive: bool,
    pub extractable: bool,
    pub always_sensitive: bool,
    pub never_extractable: bool,
    pub sign: bool,
}

impl KeyAttributes {
    /// True when the private half cannot leave the token and never could.
    pub fn is_non_exportable(&self) -> bool {
        self.token
            && self.private
            && self.sensitive
            && !self.extractable
            && self.always_sensitive
            && self.never_extractable
    }
}

/// What the token is, for logs and health reports.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct TokenDescription {
    pub module: String,
    pub label: String,
    pub manufacturer: String,
    pub model: String,
    pub serial: String,
    pub sessions: usize,
}

/// Errors from the token boundary. Messages are safe to log; they never hold a PIN.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot load PKCS#11 module {module}: {reason}")]
    Module { module: String, reason: String },
    #[error("no token labelled {0:?} is present; `sshsign-server provision slots` lists them")]
    TokenNotFound(String),
    #[error("token login failed: {0}")]
    Login(String),
    #[error(
        "the token session was lost ({cause}); {reconnect}. The request was not signed and was \
         not retried: send it again"
    )]
    SessionLost { cause: String, reconnect: String },
    #[error("timed out after {0:?} waiting for a free token session")]
    Busy(std::time::Duration),
    #[error("no key with id {0} on the token")]
    KeyNotFound(ObjectId),
    #[error("the token returned a {0}-byte CKA_EC_POINT; expected 04 20 followed by 32 bytes")]
    EcPoint(usize),
    #[error("the token returned a {0}-byte signature; Ed25519 signatures are 64 bytes")]
    SignatureLength(usize),
    #[error("the token does not offer {0}")]
    MechanismMissing(&'static str),
    #[error("{0}")]
    Pin(#[from] crate::secret::Error),
    #[error("PKCS#11 {0}")]
    Pkcs11(String),
    #[error("the token worker stopped: {0}")]
    Worker(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A blocking Ed25519 token. Implementations must be safe to call from many threads at once.
pub trait Hsm: Send + Sync + fmt::Debug {
    /// Generates a non-extractable Ed25519 key pair labelled `label`.
    fn generate_ed25519(&self, label: &str) -> Result<TokenKey>;
    /// Finds a key pair by `CKA_ID`.
    fn find(&self, id: &ObjectId) -> Result<Option<TokenKey>>;
    /// Finds the key pairs whose `CKA_LABEL` is `label`.
    fn find_by_label(&self, label: &str) -> Result<Vec<TokenKey>>;
    /// Every Ed25519 key pair on the token.
    fn list(&self) -> Result<Vec<TokenKey>>;
    /// Signs `message` with pure Ed25519 (`CKM_EDDSA`), one shot. Never retried after the token
    /// may have signed: a lost session is reported as [`Error::SessionLost`].
    fn sign(&self, id: &ObjectId, message: &[u8]) -> Result<[u8; 64]>;
    /// Destroys both halves of a key pair.
    fn destroy(&self, id: &ObjectId) -> Result<()>;
    /// Generates a non-extractable AES-256 key labelled `label` that may only encrypt and
    /// decrypt.
    fn generate_aes256(&self, label: &str) -> Result<ObjectId>;
    /// Finds the AES keys labelled `label`.
    fn find_secret_keys(&self, label: &str) -> Result<Vec<ObjectId>>;
    /// AES-CBC with PKCS#7 padding (`CKM_AES_CBC_PAD`) under a token AES key.
    fn encrypt(&self, id: &ObjectId, iv: [u8; 16], plaintext: &[u8]) -> Result<Vec<u8>>;
    /// The inverse of [`Hsm::encrypt`].
    fn decrypt(&self, id: &ObjectId, iv: [u8; 16], ciphertext: &[u8]) -> Result<Vec<u8>>;
    /// Fills `out` from the token's random number generator.
    fn random(&self, out: &mut [u8]) -> Result<()>;
    /// Reads the private key object's protection attributes.
    fn attributes(&self, id: &ObjectId) -> Result<KeyAttributes>;
    /// Describes the token.
    fn describe(&self) -> TokenDescription;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_id_hex_round_trip() {
        let id = ObjectId::new(vec![0x00, 0xab, 0xff]);
        assert_eq!(id.to_hex(), "00abff");
        assert_eq!(ObjectId::from_hex("00abff"), Some(id));
        assert_eq!(ObjectId::from_hex("0ab"), None);
        assert_eq!(ObjectId::from_hex("zz"), None);
        assert_eq!(ObjectId::from_hex(""), None);
    }
}
