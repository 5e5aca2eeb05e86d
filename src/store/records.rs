//! The records the store keeps. Each is a versioned serde record: it is written as
//! `{"v": VERSION, "r": {...}}`, and reading a version this build does not know is an error, not a
//! guess. None of them holds private key material: a signing key is its token object id and its
//! public half.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// A record type the store can hold.
pub trait Record: Serialize + DeserializeOwned {
    /// Names the record in errors.
    const KIND: &'static str;
    /// The version this build writes and reads.
    const VERSION: u32;
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

/// How much a human must be involved before a key signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// The holder signs on its own.
    Autonomous,
    /// A human approves each signature.
    Cosign,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Autonomous => "autonomous",
            Tier::Cosign => "cosign",
        }
    }
}

/// An Ed25519 signing key whose private half is a token object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigningKeyRecord {
    pub key_id: String,
    /// `user_id` of the owner.
    pub owner: String,
    /// The token object's `CKA_ID`, hex.
    pub token_object_id: String,
    /// The public key, hex.
    pub public_key: String,
    /// SSHSIG namespaces (`sign --type`) the key may sign in.
    pub scopes: Vec<String>,
    pub tier: Tier,
    pub require_signature: bool,
    /// Typed metadata constraints as given at creation (a JSON object).
    pub constraints: serde_json::Map<String, serde_json::Value>,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

impl Record for SigningKeyRecord {
    const KIND: &'static str = "signing key";
    const VERSION: u32 = 1;
}

/// Where a signing key stands at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyStatus {
    Active,
    Expired,
    Revoked,
}

impl SigningKeyRecord {
    pub fn status(&self, now: i64) -> KeyStatus {
        if self.revoked_at.is_some() {
            KeyStatus::Revoked
        } else if self.expires_at.is_some_and(|at| at <= now) {
            KeyStatus::Expired
        } else {
            KeyStatus::Active
        }
    }

    /// The 32-byte public key.
    pub fn public_key_bytes(&self) -> Option<[u8; 32]> {
        crate::hex::decode(&self.public_key)?.try_into().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SigningKeyRecord {
        SigningKeyRecord {
            key_id: "ak_x".into(),
            owner: "usr_x".into(),
            token_object_id: "00".into(),
            public_key: "11".repeat(32),
            scopes: vec!["git".into()],
            tier: Tier::Autonomous,
            require_signature: false,
            constraints: Default::default(),
            created_at: 100,
            expires_at: Some(200),
            revoked_at: None,
        }
    }

    #[test]
    fn status_follows_revocation_then_expiry() {
        let mut k = key();
        assert_eq!(k.status(199), KeyStatus::Active);
        assert_eq!(k.status(200), KeyStatus::Expired);
        k.revoked_at = Some(150);
        assert_eq!(k.status(160), KeyStatus::Revoked);
        assert_eq!(k.public_key_bytes(), Some([0x11; 32]));
    }
}
