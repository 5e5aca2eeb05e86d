//! What the appliance does, independent of how a request arrived (SSH today, HTTP too later):
//! identify callers, create, list and revoke signing keys, sign and verify.
//!
//! Order of work on every write: check, record durably (`Store::flush`), then act on the token
//! or reply. Token calls go through [`Token`], off the async workers.

mod error;

use std::sync::Arc;

use serde_json::{Map, Value};

pub use self::error::Error;
use crate::hsm::{ObjectId, Token};
use crate::ids::IdKind;
use crate::policy::{self, Decision};
use crate::provision::ApplianceKey;
use crate::sshsig::{self, SshSig};
use crate::store::{SigningKeyRecord, SshKeyRecord, Store, Tier, UserRecord};
use crate::{pubkey, time};

/// The largest payload `sign` and `verify` accept.
pub const MAX_PAYLOAD: usize = 1024 * 1024;

/// A user connected with a given SSH key.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user: UserRecord,
    pub fingerprint: String,
}

/// What `create-key` asks for, validated.
#[derive(Debug, Clone)]
pub struct KeySpec {
    pub scopes: Vec<String>,
    pub tier: Tier,
    pub require_signature: bool,
    pub constraints: Map<String, Value>,
    pub expires_at: Option<i64>,
}

/// A signature made by the token.
#[derive(Debug)]
pub struct Signed {
    pub key: SigningKeyRecord,
    pub signature: SshSig,
}

/// What `verify` found.
#[derive(Debug)]
pub struct Verified {
    pub signature: SshSig,
    /// The appliance key that made it, if it is one of ours.
    pub key: Option<SigningKeyRecord>,
}

/// The running appliance's state, shared by every connection.
#[derive(Debug)]
pub struct Appliance {
    token: Token,
    store: Store,
    appliance_keys: Vec<ApplianceKey>,
}

impl Appliance {
    pub fn new(token: Token, store: Store, appliance_keys: Vec<ApplianceKey>) -> Arc<Self> {
        Arc::new(Appliance {
            token,
            store,
            appliance_keys,
        })
    }

    pub fn token(&self) -> &Token {
        &self.token
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn appliance_keys(&self) -> &[ApplianceKey] {
        &self.appliance_keys
    }

    /// The user an SSH key belongs to, registering a new user the first time a key connects.
    pub async fn identify(&self, key: &ssh_key::PublicKey) -> Result<Caller, Error> {
        let fingerprint = key.fingerprint(ssh_key::HashAlg::Sha256).to_string();
        if let Some(known) = self.store.ssh_key(&fingerprint)? {
            let user = self.store.user(&known.user_id)?.ok_or_else(|| {
                Error::Internal(format!("SSH key {fingerprint} names a missing user"))
            })?;
            return Ok(Caller { user, fingerprint });
        }
        let now = time::now();
        let user = UserRecord {
            user_id: IdKind::User.make(self.token.random().await?),
            created_at: now,
            ssh_keys: vec![fingerprint.clone()],
        };
        let ssh_key = SshKeyRecord {
            fingerprint: fingerprint.clone(),
            user_id: user.user_id.clone(),
            public_key: key
                .to_openssh()
                .map_err(|e| Error::Internal(e.to_string()))?,
            registered_at: now,
        };
        let user = self.store.register(user, ssh_key)?;
        self.store.flush().await?;
        tracing::info!(user = %user.user_id, %fingerprint, "user registered");
        Ok(Caller { user, fingerprint })
    }

    /// Generates a key in the token and records it for `caller`.
    pub async fn create_key(
        &self,
        caller: &Caller,
        spec: KeySpec,
    ) -> Result<SigningKeyRecord, Error> {
        let key_id = IdKind::SigningKey.make(self.token.random().await?);
        let label = key_id.clone();
        let token_key = self
            .token
            .call(move |hsm| hsm.generate_ed25519(&label))
            .await?;
        let record = SigningKeyRecord {
            key_id,
            owner: caller.user.user_id.clone(),
            token_object_id: token_key.object_id.to_hex(),
            public_key: crate::hex::encode(&token_key.public_key),
            scopes: spec.scopes,
            tier: spec.tier,
            require_signature: spec.require_signature,
            constraints: spec.constraints,
            created_at: time::now(),
            expires_at: spec.expires_at,
            revoked_at: None,
        };
        let recorded = match self.store.insert_signing_key(&record) {
            Ok(()) => self.store.flush().await.map_err(Error::from),
            Err(e) => Err(Error::from(e)),
        };
        if let Err(e) = recorded {
            // Unrecorded, the key would be an orphan in the token: remove it.
            let id = token_key.object_id.clone();
            if let Err(cleanup) = self.token.call(move |hsm| hsm.destroy(&id)).await {
                tracing::error!(error = %cleanup, object = %token_key.object_id, "orphan key left in token");
            }
            return Err(e);
        }
        tracing::info!(key = %record.key_id, owner = %record.owner, "signing key created");
        Ok(record)
    }

    /// Every key `caller` owns.
    pub fn keys(&self, caller: &Caller) -> Result<Vec<SigningKeyRecord>, Error> {
        Ok(self.store.signing_keys_of(&caller.user.user_id)?)
    }

    /// A key `caller` owns; another user's key reads as unknown.
    fn owned_key(&self, caller: &Caller, key_id: &str) -> Result<SigningKeyRecord, Error> {
        match self.store.signing_key(key_id)? {
            Some(key) if key.owner == caller.user.user_id => Ok(key),
            _ => Err(Error::UnknownKey(key_id.to_owned())),
        }
    }

    /// Signs `payload` in `namespace` with `key_id`, if the policy allows it.
    pub async fn sign(
        &self,
        caller: &Caller,
        key_id: &str,
        namespace: &str,
        payload: &[u8],
    ) -> Result<Signed, Error> {
        check_payload(payload)?;
        let data = sshsig::signed_data(namespace, payload)?;
        let key = self.owned_key(caller, key_id)?;
        if let Decision::Deny { rule, reason } =
            policy::may_sign(&key, &caller.user.user_id, namespace, time::now())
        {
            tracing::info!(key = %key_id, ?rule, "signature denied");
            return Err(Error::Denied { rule, reason });
        }
        let public_key = key.public_key_bytes().ok_or_else(|| corrupt(&key))?;
        let object_id = ObjectId::from_hex(&key.token_object_id).ok_or_else(|| corrupt(&key))?;
        let signature = self
            .token
            .call(move |hsm| hsm.sign(&object_id, &data))
            .await?;
        let signature = SshSig::new(public_key, namespace, signature)?;
        Ok(Signed { key, signature })
    }

    /// Verifies an SSHSIG over `payload` in `namespace`, and says which of our keys made it.
    pub fn verify(
        &self,
        namespace: &str,
        payload: &[u8],
        armored: &str,
    ) -> Result<Verified, Error> {
        check_payload(payload)?;
        let signature = SshSig::from_armored(armored)?;
        signature.verify(namespace, payload)?;
        let key = self.store.signing_key_by_public(signature.public_key())?;
        Ok(Verified { signature, key })
    }

    /// Revokes a key: recorded durably first, then the private half is destroyed in the token.
    pub async fn revoke(&self, caller: &Caller, key_id: &str) -> Result<SigningKeyRecord, Error> {
        let before = self.owned_key(caller, key_id)?;
        if before.revoked_at.is_some() {
            return Err(Error::AlreadyRevoked(key_id.to_owned()));
        }
        let mut after = before.clone();
        after.revoked_at = Some(time::now());
        self.store.update_signing_key(&before, &after)?;
        self.store.flush().await?;
        let object_id =
            ObjectId::from_hex(&after.token_object_id).ok_or_else(|| corrupt(&after))?;
        if let Err(e) = self.token.call(move |hsm| hsm.destroy(&object_id)).await {
            // The record already refuses every signature; the token object is only dead weight.
            tracing::error!(key = %key_id, error = %e, "revoked, but the token object was not destroyed");
        }
        tracing::info!(key = %key_id, "signing key revoked");
        Ok(after)
    }
}

fn check_payload(payload: &[u8]) -> Result<(), Error> {
    if payload.len() > MAX_PAYLOAD {
        return Err(Error::PayloadTooLarge { limit: MAX_PAYLOAD });
    }
    Ok(())
}

fn corrupt(key: &SigningKeyRecord) -> Error {
    Error::Internal(format!("signing key record {} is corrupt", key.key_id))
}

/// The OpenSSH line for a signing key: `ssh-ed25519 AAAA... ak_...`.
pub fn public_key_line(key: &SigningKeyRecord) -> String {
    key.public_key_bytes()
        .map(|bytes| pubkey::openssh(&bytes, &key.key_id))
        .unwrap_or_default()
}

/// The SHA-256 fingerprint of a signing key.
pub fn public_key_fingerprint(key: &SigningKeyRecord) -> String {
    key.public_key_bytes()
        .map(|bytes| pubkey::fingerprint(&bytes))
        .unwrap_or_default()
}
