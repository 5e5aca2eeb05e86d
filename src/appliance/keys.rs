//! Keys and their authorizations: create, grant, list, revoke.

use super::quota::{Counted, Rated};
use super::{Appliance, Caller, Error};
use crate::audit::{Action, Outcome};
use crate::hsm::{ObjectId, TokenKey, WrappedKey, WrappedKind};
use crate::ids::IdKind;
use crate::policy::{Authorization, Terms};
use crate::store::{CarriedKey, KeyStatus, SigningKeyRecord};
use crate::time;
use crate::views::{AuthorizationView, KeyView, ListedKey, PublicKeyView, RevokedKey};

/// An authorization to grant: its terms, and the grantee (`None`: the caller).
#[derive(Debug, Clone)]
pub struct Grant {
    pub terms: Terms,
    /// A `usr_` id or an SSH key fingerprint (`SHA256:...`) of a registered user.
    pub grantee: Option<String>,
}

pub use crate::policy::Role;

/// A key as one caller sees it, while [`Appliance::keys`] gathers them.
struct Listed {
    key: SigningKeyRecord,
    role: Role,
    /// The caller's own authorizations on it (all of them, for the owner).
    authorizations: Vec<Authorization>,
}

impl Appliance {
    /// The grantee a grant names (the caller if none), who must accept grants from the caller.
    fn resolve_grantee(&self, caller: &Caller, grantee: Option<&str>) -> Result<String, Error> {
        let Some(grantee) = grantee else {
            return Ok(caller.id().to_owned());
        };
        let user = self.user_named(grantee)?;
        self.check_consent(&user, caller.id())?;
        Ok(user)
    }

    async fn authorization(
        &self,
        caller: &Caller,
        key_id: &str,
        grant: Grant,
    ) -> Result<Authorization, Error> {
        Ok(Authorization {
            authorization_id: self.new_id(IdKind::Authorization).await?,
            key_id: key_id.to_owned(),
            grantee: self.resolve_grantee(caller, grant.grantee.as_deref())?,
            principal: caller.id().to_owned(),
            terms: grant.terms.checked().map_err(|refusal| Error::Invalid {
                field: refusal.field,
                reason: refusal.reason,
            })?,
            created_at: time::now(),
            revoked_at: None,
        })
    }

    /// Generates a key in the token, owned by `caller`, with its first authorization.
    pub async fn create_key(
        &self,
        caller: &Caller,
        grant: Grant,
    ) -> Result<(KeyView, Authorization), Error> {
        let key_id = self.new_id(IdKind::SigningKey).await?;
        let authorization = self.authorization(caller, &key_id, grant).await?;
        let owned = self.store.signing_keys_of(caller.id())?;
        let live = owned.iter().filter(|k| k.revoked_at.is_none()).count();
        self.quotas.check_count(Counted::Keys, live)?;
        self.quotas.charge(caller.id(), Rated::KeyCreations)?;
        self.quotas.take_key_room()?;
        // Should the process die between the token and the store, start-up finds the object
        // by this note and destroys it.
        let noted = async {
            self.store.put_token_chore(&key_id)?;
            self.store.flush().await
        };
        if let Err(e) = noted.await {
            self.quotas.key_gone();
            return Err(e.into());
        }
        let label = key_id.clone();
        let generated = self
            .token
            .call(move |hsm| hsm.generate_ed25519(&label))
            .await;
        let token_key = match generated {
            Ok(key) => key,
            Err(e) => {
                self.quotas.key_gone();
                self.settle_key_object(&key_id).await;
                return Err(e.into());
            }
        };
        // Where appliances share the store, the key also goes there wrapped, for the others.
        let carried = match self.carry_out(&token_key).await {
            Ok(carried) => carried,
            Err(e) => {
                self.quotas.key_gone();
                self.settle_key_object(&key_id).await;
                return Err(e);
            }
        };
        let record = SigningKeyRecord {
            key_id,
            owner: caller.id().to_owned(),
            token_object_id: token_key.object_id.to_hex(),
            public_key: crate::hex::encode(&token_key.public_key),
            created_at: time::now(),
            revoked_at: None,
        };
        let mut entry = self.entry(caller, Action::CreateKey, Outcome::Done);
        entry.key_id = Some(record.key_id.clone());
        entry.authorization_id = Some(authorization.authorization_id.clone());
        entry.readers.push(authorization.grantee.clone());
        let mut inserted = false;
        let recorded = async {
            self.record(entry).await?;
            if let Some(carried) = &carried {
                self.store.put_carried_key(carried)?;
            }
            self.store.insert_signing_key(&record, &authorization)?;
            inserted = true;
            self.store.flush().await?;
            Ok::<_, Error>(())
        };
        if let Err(e) = recorded.await {
            self.quotas.key_gone();
            // Unrecorded or unstored, the key would be an orphan in the token, and a record
            // without its flush one that may not last: remove both.
            if inserted && let Err(undo) = self.store.remove_signing_key(&record, &authorization) {
                tracing::error!(error = %undo, key = %record.key_id, "a failed key creation left its record");
            }
            if carried.is_some()
                && let Err(undo) = self.store.remove_carried_key(&record.token_object_id)
            {
                tracing::error!(error = %undo, key = %record.key_id, "a failed key creation left its wrapped copy");
            }
            self.settle_key_object(&record.key_id).await;
            return Err(e);
        }
        if let Err(e) = self.store.drop_token_chore(&record.key_id) {
            // Harmless: start-up finds the key live and only drops the note.
            tracing::warn!(error = %e, key = %record.key_id, "key creation note left");
        }
        tracing::info!(key = %record.key_id, owner = %record.owner, "signing key created");
        Ok((KeyView::from(&record), authorization))
    }

    /// A key the caller owns; anything else reads as unknown.
    /// A signing key as anyone may see it: its public half and status (the key id is no
    /// secret; it is in every signature's allowed_signers line).
    pub fn public_key(&self, key_id: &str) -> Result<PublicKeyView, Error> {
        let unknown = || Error::UnknownKey(key_id.to_owned());
        if !crate::ids::IdKind::SigningKey.matches(key_id) {
            return Err(unknown());
        }
        let key = self.store.signing_key(key_id)?.ok_or_else(unknown)?;
        Ok(PublicKeyView::from(&key))
    }

    fn owned_key(&self, caller: &Caller, key_id: &str) -> Result<SigningKeyRecord, Error> {
        match self.store.signing_key(key_id)? {
            Some(key) if key.owner == caller.id() => Ok(key),
            _ => Err(Error::UnknownKey(key_id.to_owned())),
        }
    }

    /// What the token proves about where the caller's key `key_id` was made: the device's
    /// attestation, or why there is none.
    pub async fn attest(
        &self,
        caller: &Caller,
        key_id: &str,
    ) -> Result<crate::attestation::AttestationFile, Error> {
        let key = self.owned_key(caller, key_id)?;
        let object_id =
            ObjectId::from_hex(&key.token_object_id).ok_or_else(|| super::corrupt(&key))?;
        let attestation = self.token.call(move |hsm| hsm.attest(&object_id)).await?;
        if !attestation.available {
            return Err(Error::CannotAttest(attestation.reason.unwrap_or_default()));
        }
        Ok(crate::attestation::AttestationFile {
            format: crate::attestation::FORMAT.to_owned(),
            key_id: key.key_id.clone(),
            public_key: key.public_key.clone(),
            certificates: attestation.certificates,
        })
    }

    /// Grants another authorization on a key the caller owns.
    pub async fn authorize(
        &self,
        caller: &Caller,
        key_id: &str,
        grant: Grant,
    ) -> Result<Authorization, Error> {
        let key = self.owned_key(caller, key_id)?;
        if key.revoked_at.is_some() {
            return Err(Error::AlreadyRevoked(key.key_id));
        }
        let authorization = self.authorization(caller, key_id, grant).await?;
        let live = self
            .store
            .authorizations_of_key(key_id)?
            .iter()
            .filter(|a| a.revoked_at.is_none())
            .count();
        self.quotas.check_count(Counted::GrantsPerKey, live)?;
        self.quotas.charge(caller.id(), Rated::Grants)?;
        let mut entry = self.entry(caller, Action::Authorize, Outcome::Done);
        entry.key_id = Some(key.key_id.clone());
        entry.authorization_id = Some(authorization.authorization_id.clone());
        entry.readers.push(authorization.grantee.clone());
        self.record(entry).await?;
        self.store.create(&authorization)?;
        self.store.flush().await?;
        Ok(authorization)
    }

    /// A key's authorizations: every one for its owner, a grantee's own for a grantee.
    pub fn authorizations(
        &self,
        caller: &Caller,
        key_id: &str,
    ) -> Result<Vec<Authorization>, Error> {
        let key = self
            .store
            .signing_key(key_id)?
            .ok_or_else(|| Error::UnknownKey(key_id.to_owned()))?;
        let all = self.store.authorizations_of_key(key_id)?;
        if key.owner == caller.id() {
            return Ok(all);
        }
        let mine: Vec<_> = all
            .into_iter()
            .filter(|a| a.grantee == caller.id())
            .collect();
        if mine.is_empty() {
            return Err(Error::UnknownKey(key_id.to_owned()));
        }
        Ok(mine)
    }

    /// Revokes one authorization; its key and other authorizations stay. The key's owner or the
    /// authorization's principal may do it.
    pub async fn revoke_authorization(
        &self,
        caller: &Caller,
        authorization_id: &str,
    ) -> Result<Authorization, Error> {
        let unknown = || Error::UnknownAuthorization(authorization_id.to_owned());
        let current = self
            .store
            .authorization(authorization_id)?
            .ok_or_else(unknown)?;
        let key = self
            .store
            .signing_key(&current.key_id)?
            .ok_or_else(unknown)?;
        if caller.id() != key.owner && caller.id() != current.principal {
            return Err(unknown());
        }
        let already = || Error::AuthorizationAlreadyRevoked(authorization_id.to_owned());
        if current.revoked_at.is_some() {
            return Err(already());
        }
        let mut entry = self.entry(caller, Action::RevokeAuthorization, Outcome::Done);
        entry.key_id = Some(current.key_id.clone());
        entry.authorization_id = Some(current.authorization_id.clone());
        entry.readers.extend([key.owner, current.grantee.clone()]);
        self.record(entry).await?;
        let revoked = self
            .store
            .revoke_authorization(authorization_id, time::now(), already)?;
        self.store.flush().await?;
        Ok(revoked)
    }

    /// Carries out every token chore a failure or a crash left: returns how many were done.
    /// Run at start-up, before the appliance serves.
    pub async fn finish_token_chores(&self) -> Result<usize, Error> {
        let chores = self.store.token_chores()?;
        for key_id in &chores {
            self.settle_key_object(key_id).await;
        }
        let left = self.store.token_chores()?.len();
        if left > 0 {
            tracing::error!(
                left,
                "token objects of revoked or unmade keys could not be destroyed"
            );
        }
        Ok(chores.len() - left.min(chores.len()))
    }

    /// `key` wrapped under the group's wrap key, to keep in the store for the other appliances,
    /// where they share it; `None` otherwise.
    async fn carry_out(&self, key: &TokenKey) -> Result<Option<CarriedKey>, Error> {
        let Some(carry) = &self.settings.carry else {
            return Ok(None);
        };
        let (wrap, object_id) = (carry.wrap_key.clone(), key.object_id.clone());
        let wrapped = self
            .token
            .call(move |hsm| hsm.wrap_key(&wrap, WrappedKind::Ed25519, &object_id))
            .await?;
        Ok(Some(CarriedKey {
            object_id: key.object_id.to_hex(),
            label: key.label.clone(),
            public_key: crate::hex::encode(&key.public_key),
            wrap_key: carry.wrap_key.to_hex(),
            wrapped: crate::hex::encode(&wrapped),
        }))
    }

    /// Brings `key`, made through another appliance, into this appliance's token from its
    /// wrapped copy in the store; `false` when there is none to bring. The key must unwrap to
    /// the public key its record names.
    pub(super) async fn carry_in(&self, key: &SigningKeyRecord) -> Result<bool, Error> {
        let Some(carry) = &self.settings.carry else {
            return Ok(false);
        };
        let Some(carried) = self.store.carried_key(&key.token_object_id)? else {
            return Ok(false);
        };
        let public_key = key.public_key_bytes().ok_or_else(|| super::corrupt(key))?;
        let object_id =
            ObjectId::from_hex(&key.token_object_id).ok_or_else(|| super::corrupt(key))?;
        let wrapped = crate::hex::decode(&carried.wrapped).ok_or_else(|| super::corrupt(key))?;
        if carried.public_key != key.public_key || carried.wrap_key != carry.wrap_key.to_hex() {
            return Err(super::corrupt(key));
        }
        let wrapped = WrappedKey {
            kind: WrappedKind::Ed25519,
            object_id: object_id.clone(),
            label: carried.label,
            public_key: Some(public_key),
            wrapped,
        };
        let _one_at_a_time = self.carry_lock.lock().await;
        let (wrap, export) = (carry.wrap_key.clone(), carry.export);
        let sound = self
            .token
            .call(move |hsm| {
                if hsm.find(&object_id)?.is_some() {
                    return Ok(true);
                }
                hsm.unwrap_key(&wrap, &wrapped, export)?;
                // The token makes the public half from the record: the private half must be
                // its match, so it signs once and the signature must verify.
                let mut challenge = [0u8; 32];
                hsm.random(&mut challenge)?;
                let message = [b"sshsign carried key check ".as_slice(), &challenge].concat();
                let signature = hsm.sign(&object_id, &message)?;
                if crate::sshsig::verify_ed25519(&public_key, &message, &signature).is_err() {
                    hsm.destroy(&object_id)?;
                    return Ok(false);
                }
                Ok(true)
            })
            .await?;
        if !sound {
            tracing::error!(key = %key.key_id, "the key's wrapped copy in the store is not the key its record names; it was destroyed again");
            return Err(super::corrupt(key));
        }
        tracing::info!(key = %key.key_id, "brought a key made through another appliance into this token");
        Ok(true)
    }

    /// Makes the token agree with the store about `key_id`: a live key keeps its object; a
    /// revoked key's object, or the object of a key that has no record, is destroyed. The
    /// note is dropped once that holds; on failure it stays for the next start.
    async fn settle_key_object(&self, key_id: &str) {
        let settled = async {
            let objects = match self.store.signing_key(key_id)? {
                Some(key) if key.revoked_at.is_none() => Vec::new(),
                Some(key) => vec![
                    ObjectId::from_hex(&key.token_object_id).ok_or_else(|| super::corrupt(&key))?,
                ],
                None => {
                    let label = key_id.to_owned();
                    self.token
                        .call(move |hsm| hsm.find_by_label(&label))
                        .await?
                        .into_iter()
                        .map(|k| k.object_id)
                        .collect()
                }
            };
            for object_id in objects {
                self.store.remove_carried_key(&object_id.to_hex())?;
                self.token.call(move |hsm| hsm.destroy(&object_id)).await?;
            }
            self.store.drop_token_chore(key_id)?;
            Ok::<_, Error>(())
        };
        if let Err(e) = settled.await {
            // The store already refuses every signature with it; the object is dead weight
            // until the next start tries again.
            tracing::error!(key = %key_id, error = %e, "a token object to destroy was left");
        }
    }

    /// Every key the caller owns or holds an authorization on, oldest first (for counts; a
    /// listing goes a page at a time with [`Appliance::keys_page`]).
    pub fn keys(&self, caller: &Caller) -> Result<Vec<ListedKey>, Error> {
        let owned = self.store.signing_keys_of(caller.id())?;
        let granted = self.store.authorizations_of_grantee(caller.id())?;
        self.listed_keys(caller, owned, granted)
    }

    /// One page of the keys the caller owns (first) and is granted (then, one per
    /// authorization's position: a key granted twice may show on two pages), and where the next
    /// page starts.
    pub fn keys_page(
        &self,
        caller: &Caller,
        page: super::Page,
    ) -> Result<(Vec<ListedKey>, Option<usize>), Error> {
        let me = caller.id();
        let (owned, granted, next) = page.two_part(
            (self.store.signing_keys_count(me)?, |from, limit| {
                self.store.signing_keys_page(me, from, limit)
            }),
            (
                self.store
                    .listed_len(crate::store::table::TreeName::AuthorizationsByGrantee, me)?,
                |from, limit| self.store.authorizations_of_grantee_page(me, from, limit),
            ),
        )?;
        Ok((self.listed_keys(caller, owned, granted)?, next))
    }

    /// Views of `owned` keys (with all their authorizations) and of the keys `granted` names
    /// (with the caller's own authorizations on them).
    fn listed_keys(
        &self,
        caller: &Caller,
        owned: Vec<SigningKeyRecord>,
        granted: Vec<Authorization>,
    ) -> Result<Vec<ListedKey>, Error> {
        let mut views: Vec<Listed> = Vec::new();
        for key in owned {
            let authorizations = self.store.authorizations_of_key(&key.key_id)?;
            views.push(Listed {
                key,
                role: Role::Owner,
                authorizations,
            });
        }
        for authorization in granted {
            if let Some(view) = views
                .iter_mut()
                .find(|v| v.key.key_id == authorization.key_id)
            {
                if view.role == Role::Grantee {
                    view.authorizations.push(authorization);
                }
                continue;
            }
            match self.store.signing_key(&authorization.key_id)? {
                // The caller's own key, listed with the keys they own.
                Some(key) if key.owner == caller.id() => {}
                Some(key) => views.push(Listed {
                    key,
                    role: Role::Grantee,
                    authorizations: vec![authorization],
                }),
                None => {}
            }
        }
        Ok(views
            .iter()
            .map(|listed| ListedKey {
                key: KeyView::from(&listed.key),
                role: listed.role,
                authorizations: listed
                    .authorizations
                    .iter()
                    .map(AuthorizationView::from)
                    .collect(),
            })
            .collect())
    }

    /// Revokes a key: its entry, then the revocation, are durable first; then the private half
    /// is destroyed in the token.
    pub async fn revoke(&self, caller: &Caller, key_id: &str) -> Result<RevokedKey, Error> {
        let already = || Error::AlreadyRevoked(key_id.to_owned());
        if self.owned_key(caller, key_id)?.revoked_at.is_some() {
            return Err(already());
        }
        let mut entry = self.entry(caller, Action::RevokeKey, Outcome::Done);
        entry.key_id = Some(key_id.to_owned());
        entry.readers.extend(
            self.store
                .authorizations_of_key(key_id)?
                .into_iter()
                .map(|a| a.grantee),
        );
        self.record(entry).await?;
        // The note and the revocation are durable together; should the object outlive this
        // call (a token error, a crash), start-up destroys it.
        self.store.put_token_chore(key_id)?;
        let revoked = self
            .store
            .revoke_signing_key(key_id, time::now(), already)?;
        self.store.flush().await?;
        self.quotas.key_gone();
        self.settle_key_object(key_id).await;
        tracing::info!(key = %key_id, "signing key revoked");
        Ok(RevokedKey {
            key_id: revoked.key_id,
            status: KeyStatus::Revoked,
            revoked_at: revoked.revoked_at.map(time::rfc3339),
        })
    }
}
