//! The boundary to the token: every private key the appliance uses lives behind [`Hsm`].
//!
//! The trait is deliberately small and *blocking* (as rustls's signing traits are): a PKCS#11
//! call holds a thread until the device answers, so async code reaches the token only through
//! [`Token`], which runs each call on a dedicated pool of token threads. Key objects are named by their
//! `CKA_ID` ([`ObjectId`]); the store keeps that id and the public key, never anything private.
//!
//! Backends: [`pkcs11`] (SoftHSMv2, kryoptic, YubiHSM 2 through `yubihsm_pkcs11.so`, Nitrokey
//! NetHSM) and [`yubihsm`] (YubiHSM 2's own protocol). Which device and how it is reached is
//! described by an [`profile::HsmProfile`]; [`open`] opens either.

pub mod pkcs11;
pub mod pool;
pub mod profile;
mod token;
pub mod yubihsm;

use std::fmt;
use std::sync::Arc;

use zeroize::Zeroizing;

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
    /// The key leaves only under a wrap key the security officer marked trusted.
    pub wrap_with_trusted: bool,
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

    /// Whether the key is protected as `export` promises: under `never`, it cannot leave the
    /// token and never could; under `wrapped`, it is sensitive (never readable in the clear)
    /// and leaves only under a trusted wrap key; under `wrapped-untrusted`, only wrapped. A
    /// restored key was wrapped once, so its history attributes (`CKA_NEVER_EXTRACTABLE`,
    /// `CKA_ALWAYS_SENSITIVE`) are false: the wrapped choices judge what it can do now.
    pub fn meets(&self, export: KeyExport) -> bool {
        let sealed = self.token && self.private && self.sensitive;
        match export {
            KeyExport::Never => self.is_non_exportable(),
            KeyExport::Wrapped => sealed && (!self.extractable || self.wrap_with_trusted),
            KeyExport::WrappedUntrusted => sealed,
        }
    }
}

/// Whether the appliance's keys may leave its tokens, chosen per appliance at provisioning
/// (`SSHSIGN_KEY_EXPORT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyExport {
    /// Keys never leave the token (`CKA_EXTRACTABLE` false): a dead token takes them with it,
    /// and nobody, the operator included, can copy them.
    #[default]
    Never,
    /// Keys leave only wrapped under a wrap key the security officer marked trusted
    /// (`CKA_EXTRACTABLE` and `CKA_WRAP_WITH_TRUSTED`), for a backup into the group's tokens.
    Wrapped,
    /// Keys leave wrapped under any wrap key on the token, for tokens that cannot mark one
    /// trusted (kryoptic): whoever holds the user PIN can export them under a key of their own.
    WrappedUntrusted,
}

impl KeyExport {
    /// Parses the setting's value.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "never" => Some(KeyExport::Never),
            "wrapped" => Some(KeyExport::Wrapped),
            "wrapped-untrusted" => Some(KeyExport::WrappedUntrusted),
            _ => None,
        }
    }
}

/// Which kind of token object a backup holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WrappedKind {
    /// An Ed25519 key pair (the private half wrapped, the public half as it is).
    Ed25519,
    /// The AES-256 (PKCS#11) seal key.
    Seal,
}

/// One key as a backup holds it: wrapped under the group's wrap key, with what names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedKey {
    pub kind: WrappedKind,
    pub object_id: ObjectId,
    pub label: String,
    /// The Ed25519 public key, checked against the token after the key is unwrapped.
    pub public_key: Option<[u8; 32]>,
    /// Empty for a retired Ed25519 key: its public half alone is restored.
    pub wrapped: Vec<u8>,
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
    #[error("YubiHSM: {0}")]
    Device(String),
    #[error(
        "the message is {len} bytes; this device signs at most {limit} bytes with Ed25519 (see \
         its profile's message_limit)"
    )]
    MessageTooLong { len: usize, limit: usize },
    #[error(
        "the token is full: it holds {held} objects of {capacity}; revoke keys to make room, or \
         add a token"
    )]
    TokenFull { held: usize, capacity: usize },
    #[error("the label {0:?} is longer than the device allows")]
    Label(String),
    #[error(
        "{0} keeps a key pair as one object, so its private half cannot be destroyed alone; keep \
         the previous key (it is never used to sign) instead of retiring it"
    )]
    CannotRetire(String),
    #[error(
        "{0} cannot wrap keys for a backup; its profile says why (wrap), and \
         `sshsign-server provision profiles` lists the ones that can"
    )]
    NoWrap(String),
    #[error(
        "this token has no wrap key {0}: import the group's wrap key first with \
         `sshsign-server provision wrap-key --from FILE`"
    )]
    NoWrapKey(ObjectId),
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
    /// Generates the non-extractable seal key labelled `label`, which protects the data key
    /// that seals records (PKCS#11: AES-256 for `CKM_AES_CBC_PAD`; YubiHSM: HMAC-SHA256).
    fn generate_seal_key(&self, label: &str) -> Result<ObjectId>;
    /// Finds the seal keys labelled `label`.
    fn find_seal_keys(&self, label: &str) -> Result<Vec<ObjectId>>;
    /// Makes a new data key of [`DATA_KEY_LEN`] bytes under the seal key: the key, and what to
    /// store so that [`Hsm::open_data_key`] gives it back (nothing that reveals it).
    fn new_data_key(&self, seal: &ObjectId) -> Result<(DataKey, Vec<u8>)>;
    /// The data key that [`Hsm::new_data_key`] stored as `stored`.
    fn open_data_key(&self, seal: &ObjectId, stored: &[u8]) -> Result<DataKey>;
    /// Fills `out` from the token's random number generator.
    fn random(&self, out: &mut [u8]) -> Result<()>;
    /// Reads the private key object's protection attributes.
    fn attributes(&self, id: &ObjectId) -> Result<KeyAttributes>;
    /// Describes the token.
    fn describe(&self) -> TokenDescription;
    /// Ends the appliance's login to the token (at shutdown); a later call logs in again.
    fn close(&self) -> Result<()>;
    /// Whether each token answers now (one live call each), for health reports.
    fn health(&self) -> Vec<TokenHealth> {
        let mut probe = [0u8; 8];
        vec![TokenHealth {
            token: self.describe(),
            error: self.random(&mut probe).err().map(|e| e.to_string()),
        }]
    }
    /// The token that holds the appliance's own keys (this one, unless it is a pool).
    fn primary(&self) -> &dyn Hsm;
    /// Proof from the device that it generated the key `id`, or why there is none.
    fn attest(&self, id: &ObjectId) -> Result<crate::attestation::Attestation> {
        let _ = id;
        Ok(crate::attestation::Attestation::unavailable(
            crate::attestation::cannot_attest(&self.describe().module),
        ))
    }
    /// Whether the device can attest keys at all (asking costs a device call per key).
    fn can_attest(&self) -> bool {
        false
    }
    /// [`Hsm::attest`] where it costs nothing or is `asked` for; `None` where the device
    /// could attest but was not asked.
    fn attest_cheaply(
        &self,
        id: &ObjectId,
        asked: bool,
    ) -> Result<Option<crate::attestation::Attestation>> {
        if self.can_attest() && !asked {
            return Ok(None);
        }
        self.attest(id).map(Some)
    }
    /// Destroys the private half of a key pair and keeps its public half, so that the key signs
    /// nothing more and what it signed stays checkable.
    fn retire(&self, id: &ObjectId) -> Result<()> {
        let _ = id;
        Err(Error::CannotRetire(self.describe().module))
    }
    /// The wrap keys (labelled [`WRAP_KEY_LABEL`], named by [`wrap_key_id`]) on every token.
    fn wrap_keys(&self) -> Result<Vec<ObjectId>> {
        Ok(Vec::new())
    }
    /// The key `id` of `kind`, wrapped under the wrap key `wrap`.
    fn wrap_key(&self, wrap: &ObjectId, kind: WrappedKind, id: &ObjectId) -> Result<Vec<u8>> {
        let _ = (wrap, kind, id);
        Err(Error::NoWrap(self.describe().module))
    }
    /// Brings `key` back into the token from under the wrap key `wrap`, with its id and label,
    /// protected as [`KeyExport`] `export` says.
    fn unwrap_key(&self, wrap: &ObjectId, key: &WrappedKey, export: KeyExport) -> Result<()> {
        let _ = (wrap, key, export);
        Err(Error::NoWrap(self.describe().module))
    }
}

/// A wrap key's `CKA_ID`: the first 16 bytes of SHA-256 over a fixed prefix and the key, so
/// that every token of a group names the same key alike and a backup names the key it needs.
pub fn wrap_key_id(key: &[u8; 32]) -> ObjectId {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new()
        .chain_update(b"sshsign backup wrap key v1\0")
        .chain_update(key)
        .finalize();
    ObjectId::new(digest[..16].to_vec())
}

/// The wrap key's label on every token.
pub const WRAP_KEY_LABEL: &str = "sshsign-wrap";

/// One token's answer to a health check.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct TokenHealth {
    pub token: TokenDescription,
    /// Why it did not answer; absent when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Bytes in the data key that seals records.
pub const DATA_KEY_LEN: usize = 32;

/// A data key in memory, wiped when dropped.
pub type DataKey = Zeroizing<Vec<u8>>;

/// How to reach a token: which backend, with its settings.
#[derive(Debug)]
pub enum BackendConfig {
    Pkcs11(pkcs11::Pkcs11Config),
    Yubihsm(yubihsm::YubiHsmConfig),
}

/// Opens the token `config` names and logs in.
pub fn open(config: BackendConfig) -> Result<Arc<dyn Hsm>> {
    Ok(match config {
        BackendConfig::Pkcs11(config) => Arc::new(pkcs11::Pkcs11Hsm::open(config)?),
        BackendConfig::Yubihsm(config) => Arc::new(yubihsm::YubiHsm::open(config)?),
    })
}

/// Opens every token `configs` names: the one token, or a [`pool::TokenPool`] of them, the first
/// being the primary.
pub fn open_all(configs: Vec<BackendConfig>) -> Result<Arc<dyn Hsm>> {
    let mut tokens = configs.into_iter().map(open).collect::<Result<Vec<_>>>()?;
    if tokens.len() == 1 {
        return Ok(tokens.remove(0));
    }
    Ok(Arc::new(pool::TokenPool::new(tokens)?))
}

/// What a backend is told about the device's limits, from its profile.
#[derive(Debug, Clone, Copy, Default)]
pub struct DeviceLimits {
    /// The longest message the device signs, in bytes.
    pub message: Option<usize>,
    /// Objects the device holds in all, and objects one key pair takes.
    pub objects: Option<(usize, usize)>,
}

impl DeviceLimits {
    /// Refuses a message the device would refuse, before it is asked.
    pub fn check_message(&self, message: &[u8]) -> Result<()> {
        match self.message {
            Some(limit) if message.len() > limit => Err(Error::MessageTooLong {
                len: message.len(),
                limit,
            }),
            _ => Ok(()),
        }
    }

    /// Refuses a new key pair when `held` objects leave no room for it.
    pub fn check_room(&self, held: usize) -> Result<()> {
        match self.objects {
            Some((capacity, per_key)) if held + per_key > capacity => {
                Err(Error::TokenFull { held, capacity })
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_limits_refuse_before_the_device_is_asked() {
        let limits = DeviceLimits {
            message: Some(4),
            objects: Some((10, 2)),
        };
        assert!(limits.check_message(b"1234").is_ok());
        let long = limits.check_message(b"12345").unwrap_err();
        assert!(
            matches!(long, Error::MessageTooLong { len: 5, limit: 4 }),
            "{long}"
        );
        assert!(limits.check_room(8).is_ok());
        let full = limits.check_room(9).unwrap_err();
        assert!(full.to_string().contains("holds 9 objects of 10"), "{full}");
        let none = DeviceLimits::default();
        assert!(none.check_message(&[0; 100_000]).is_ok() && none.check_room(1 << 30).is_ok());
    }

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
