//! API keys for the REST API: made and revoked over SSH, the secret shown once and only its
//! SHA-256 kept, checked in constant time, each with scopes.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use super::quota::{Counted, Rated};
use super::{Appliance, Caller, Error};
use crate::audit::{Action, Outcome};
use crate::ids::IdKind;
use crate::store::{ApiKeyRecord, ApiScope};
use crate::time;
use crate::views::ApiKeyView;

/// The prefix every API key starts with, so a leaked one is recognisable.
pub const API_KEY_PREFIX: &str = "sshsign_";

/// The API key a REST request authenticated with: who it acts for. What it holds stays
/// inside the appliance.
#[derive(Debug, Clone)]
pub struct ApiCaller(pub(super) ApiKeyRecord);

impl ApiCaller {
    /// `key_…`
    pub fn id(&self) -> &str {
        &self.0.id
    }

    /// The user it acts for.
    pub fn owner(&self) -> &str {
        &self.0.owner
    }
}

fn sha256_hex(text: &str) -> String {
    crate::hex::encode(&Sha256::digest(text.as_bytes()))
}

impl Appliance {
    /// Makes an API key for `caller`; the secret is returned once and only its hash is kept.
    pub async fn create_api_key(
        &self,
        caller: &Caller,
        label: &str,
        scopes: Vec<ApiScope>,
    ) -> Result<(ApiKeyView, String), Error> {
        if label.is_empty() || label.len() > 64 {
            return Err(Error::Invalid {
                field: "label",
                reason: "is 1 to 64 bytes".into(),
            });
        }
        if scopes.is_empty() {
            return Err(Error::Invalid {
                field: "scopes",
                reason: "names at least one scope".into(),
            });
        }
        let live = self
            .store
            .api_keys_of(caller.id())?
            .iter()
            .filter(|k| k.revoked_at.is_none())
            .count();
        self.quotas.check_count(Counted::ApiKeys, live)?;
        self.quotas.charge(caller.id(), Rated::ApiKeyCreations)?;
        let random: [u8; 20] = self.token.random().await?;
        let secret = format!("{API_KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(random));
        let record = ApiKeyRecord {
            id: self.new_id(IdKind::ApiKey).await?,
            owner: caller.id().to_owned(),
            label: label.to_owned(),
            scopes,
            prefix: secret[..API_KEY_PREFIX.len() + 4].to_owned(),
            key_sha256: sha256_hex(&secret),
            created_at: time::now(),
            last_used_at: None,
            revoked_at: None,
        };
        let mut entry = self.entry(caller, Action::ApiKeyCreate, Outcome::Done);
        entry.api_key_id = Some(record.id.clone());
        self.record(entry).await?;
        self.store.create(&record)?;
        self.store.flush().await?;
        Ok((ApiKeyView::from(&record), secret))
    }

    pub fn api_keys(&self, caller: &Caller) -> Result<Vec<ApiKeyView>, Error> {
        let keys = self.store.api_keys_of(caller.id())?;
        Ok(keys.iter().map(ApiKeyView::from).collect())
    }

    /// Revokes an API key; it stops working at once.
    pub async fn revoke_api_key(&self, caller: &Caller, id: &str) -> Result<ApiKeyView, Error> {
        let unknown = || Error::UnknownApiKey(id.to_owned());
        match self.store.api_key(id)? {
            Some(key) if key.owner == caller.id() && key.revoked_at.is_some() => {
                return Err(Error::ApiKeyRevoked(id.to_owned()));
            }
            Some(key) if key.owner == caller.id() => {}
            _ => return Err(unknown()),
        }
        let mut entry = self.entry(caller, Action::ApiKeyRevoke, Outcome::Done);
        entry.api_key_id = Some(id.to_owned());
        self.record(entry).await?;
        let revoked = self.store.update_api_key(id, |mut key| {
            if key.revoked_at.is_some() {
                return Err(Error::ApiKeyRevoked(id.to_owned()));
            }
            key.revoked_at = Some(time::now());
            Ok(key)
        })?;
        self.store.flush().await?;
        Ok(ApiKeyView::from(&revoked))
    }

    /// The API key a bearer secret names, if it is live and carries `scope`.
    pub fn authenticate_api_key(&self, secret: &str, scope: ApiScope) -> Result<ApiCaller, Error> {
        if !secret.starts_with(API_KEY_PREFIX) || secret.len() > 128 {
            return Err(Error::Unauthorized);
        }
        let hash = sha256_hex(secret);
        let key = self
            .store
            .api_key_by_hash(&hash)?
            .ok_or(Error::Unauthorized)?;
        // The lookup was by digest; compare the digests in constant time all the same.
        if !bool::from(key.key_sha256.as_bytes().ct_eq(hash.as_bytes())) || key.revoked_at.is_some()
        {
            return Err(Error::Unauthorized);
        }
        if !key.scopes.contains(&scope) {
            return Err(Error::Forbidden(format!(
                "this API key lacks the {} scope",
                scope.as_str()
            )));
        }
        // When a key was last used, to the minute: enough to spot a dead or a busy key without a
        // write per request.
        let now = time::now();
        if key.last_used_at.is_none_or(|at| now - at >= 60) {
            let used = self.store.update_api_key(&key.id, |mut k| {
                k.last_used_at = Some(now);
                Ok::<_, Error>(k)
            })?;
            return Ok(ApiCaller(used));
        }
        Ok(ApiCaller(key))
    }
}
