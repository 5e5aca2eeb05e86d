//! Signing keys carried between the tokens of appliances that share a store: each key made
//! where keys may leave wrapped is also kept here, wrapped under the group's wrap key (which
//! only the group's tokens hold), so that another appliance can bring it into its own token
//! the first time it is asked to sign with it. The store alone opens nothing, as a backup file
//! alone does not.

use serde::{Deserialize, Serialize};

use super::engine::TreeName;
use super::{Error, Result, Store};

/// A signing key as it travels: wrapped, with what it must be once unwrapped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CarriedKey {
    /// The key's `CKA_ID` on every token, hex.
    pub object_id: String,
    pub label: String,
    /// The Ed25519 public key, hex: the unwrapped key must have it.
    pub public_key: String,
    /// The wrap key's `CKA_ID`, hex.
    pub wrap_key: String,
    /// The private key wrapped under it, hex.
    pub wrapped: String,
}

/// The most a carried key's record holds (an Ed25519 key wraps into a few dozen bytes).
const MAX_RECORD: usize = 4096;

impl Store {
    /// Keeps `key` for the other appliances' tokens.
    pub fn put_carried_key(&self, key: &CarriedKey) -> Result<()> {
        let bytes = serde_json::to_vec(key).map_err(|e| Error::Corrupt {
            kind: "carried key",
            key: key.object_id.clone(),
            reason: e.to_string(),
        })?;
        self.engine
            .insert(TreeName::CarriedKeys, key.object_id.as_bytes(), &bytes)
    }

    /// The carried key of token object `object_id` (hex), if one was kept.
    pub fn carried_key(&self, object_id: &str) -> Result<Option<CarriedKey>> {
        let Some(bytes) = self
            .engine
            .get(TreeName::CarriedKeys, object_id.as_bytes())?
        else {
            return Ok(None);
        };
        let corrupt = |reason: String| Error::Corrupt {
            kind: "carried key",
            key: object_id.to_owned(),
            reason,
        };
        if bytes.len() > MAX_RECORD {
            return Err(corrupt(format!("{} bytes", bytes.len())));
        }
        let key: CarriedKey = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
        if key.object_id != object_id {
            return Err(corrupt(format!("it names object {}", key.object_id)));
        }
        Ok(Some(key))
    }

    /// Forgets the carried key of token object `object_id` (its key was revoked).
    pub fn remove_carried_key(&self, object_id: &str) -> Result<()> {
        self.engine
            .remove(TreeName::CarriedKeys, object_id.as_bytes())
            .map(|_| ())
    }
}
