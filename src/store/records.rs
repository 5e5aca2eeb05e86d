//! The records the store keeps. Each is a versioned serde record, written as
//! `{"v": VERSION, "r": {...}}` or, for sealed kinds, `{"v": VERSION, "s": "<base64>"}` (see
//! [`crate::seal`]); reading a version this build does not know is an error, not a guess. None of
//! them holds private key material: a signing key is its token object id and its public half.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub use crate::policy::Authorization as AuthorizationRecord;

/// A record type the store can hold.
pub trait Record: Serialize + DeserializeOwned {
    /// Names the record in errors and in the seal's associated data.
    const KIND: &'static str;
    /// The version this build writes and reads.
    const VERSION: u32;
    /// Whether the record is stored sealed.
    const SEALED: bool = false;
}

/// A person or agent, known by the SSH keys they connect with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserRecord {
    pub user_id: String,
    pub created_at: i64,
    /// SHA-256 fingerprints of the SSH keys that identify this user.
    pub ssh_keys: Vec<String>,
}

impl Record for UserRecord {
    const KIND: &'static str = "user";
    const VERSION: u32 = 1;
}

/// An SSH public key that authenticates a user; registered the first time it connects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshKeyRecord {
    pub fingerprint: String,
    pub user_id: String,
    /// OpenSSH one-line form.
    pub public_key: String,
    pub registered_at: i64,
}

impl Record for SshKeyRecord {
    const KIND: &'static str = "ssh key";
    const VERSION: u32 = 1;
}

/// An Ed25519 signing key whose private half is a token object. What it may sign lives in its
/// authorizations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigningKeyRecord {
    pub key_id: String,
    /// `user_id` of the owner, who grants its authorizations.
    pub owner: String,
    /// The token object's `CKA_ID`, hex.
    pub token_object_id: String,
    /// The public key, hex.
    pub public_key: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

impl Record for SigningKeyRecord {
    const KIND: &'static str = "signing key";
    const VERSION: u32 = 2;
}

impl SigningKeyRecord {
    /// The 32-byte public key.
    pub fn public_key_bytes(&self) -> Option<[u8; 32]> {
        crate::hex::decode(&self.public_key)?.try_into().ok()
    }

    pub fn facts(&self) -> crate::policy::KeyFacts<'_> {
        crate::policy::KeyFacts {
            key_id: &self.key_id,
            owner: &self.owner,
            revoked: self.revoked_at.is_some(),
        }
    }
}

/// A signing key as version 1 stored it, with its terms inside; read only to migrate it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SigningKeyRecordV1 {
    pub key_id: String,
    pub owner: String,
    pub token_object_id: String,
    pub public_key: String,
    pub scopes: Vec<String>,
    pub tier: crate::policy::Tier,
    pub require_signature: bool,
    pub constraints: serde_json::Map<String, serde_json::Value>,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

impl Record for AuthorizationRecord {
    const KIND: &'static str = "authorization";
    const VERSION: u32 = 1;
    const SEALED: bool = true;
}

/// Where a co-signed request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PendingStatus {
    Pending,
    Approved,
    Denied,
    Expired,
}

/// A request to sign that waits for its principal. It holds the SHA-512 digest SSHSIG signs,
/// never the document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PendingRequest {
    pub pending_id: String,
    pub key_id: String,
    pub authorization_id: String,
    pub requester: String,
    pub principal: String,
    pub namespace: String,
    /// SHA-512 of the payload, hex.
    pub payload_sha512: String,
    pub metadata: serde_json::Map<String, serde_json::Value>,
    pub context: serde_json::Map<String, serde_json::Value>,
    pub require_signature: bool,
    pub warnings: Vec<String>,
    /// SHA-256 of the approval-link token, hex; the token itself is only in the link.
    pub approval_token_sha256: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub status: PendingStatus,
    pub resolved_by: Option<String>,
    pub resolved_at: Option<i64>,
    pub reason: Option<String>,
    /// The armored SSHSIG, once made.
    pub signature: Option<String>,
}

impl Record for PendingRequest {
    const KIND: &'static str = "pending request";
    const VERSION: u32 = 1;
    const SEALED: bool = true;
}

impl Record for crate::negotiation::NegotiationRecord {
    const KIND: &'static str = "negotiation";
    const VERSION: u32 = 1;
    const SEALED: bool = true;
}

impl Record for crate::negotiation::OfferRecord {
    const KIND: &'static str = "offer";
    const VERSION: u32 = 1;
    const SEALED: bool = true;
}

/// Where a signing key stands at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyStatus {
    Active,
    Revoked,
}

impl SigningKeyRecord {
    pub fn status(&self) -> KeyStatus {
        if self.revoked_at.is_some() {
            KeyStatus::Revoked
        } else {
            KeyStatus::Active
        }
    }
}
