//! Signing and verifying. The sign path reads top to bottom here: decide, append the entry
//! (durable), check the key and authorization once more, then ask the token
//! ([`Appliance::sign_recorded`]).

use serde_json::{Map, Value};
use sha2::{Digest as _, Sha512};

use super::quota::Rated;
use super::requests::HumanRequest;
use super::{Appliance, Caller, Error, MAX_PAYLOAD, metadata_hash, rules_summary};
use crate::audit::{Action, Outcome};
use crate::hsm::ObjectId;
use crate::ids::IdKind;
use crate::policy::{self, Decision, SignRequest};
use crate::request::RequestStatus;
use crate::sshsig::{self, SshSig};
use crate::store::{PendingRequest, SigningKeyRecord};
use crate::time;
use crate::views::{AuditRef, PendingCosignView, SignedView};

/// A request to sign.
#[derive(Debug, Clone)]
pub struct SignInput {
    pub key_id: String,
    pub namespace: String,
    pub payload: Vec<u8>,
    pub metadata: Map<String, Value>,
    /// What the client states about where it runs (`repository`, `branch`).
    pub context: Map<String, Value>,
    /// How long a co-signed request may wait (default: the appliance's setting).
    pub ttl: Option<i64>,
}

/// What came of it.
#[derive(Debug)]
pub enum SignOutcome {
    /// The token signed.
    Signed(SignedView),
    /// The request waits for its principal.
    Pending(PendingCosignView),
}

/// What `verify` found.
#[derive(Debug)]
pub struct Verified {
    pub signature: SshSig,
    /// The appliance key that made it, if it is one of ours.
    pub key: Option<SigningKeyRecord>,
}

fn check_payload(payload: &[u8]) -> Result<(), Error> {
    if payload.len() > MAX_PAYLOAD {
        return Err(Error::PayloadTooLarge { limit: MAX_PAYLOAD });
    }
    Ok(())
}

impl Appliance {
    /// Signs `input.payload` if an authorization allows it, or queues it for the principal.
    pub async fn sign(&self, caller: &Caller, mut input: SignInput) -> Result<SignOutcome, Error> {
        check_payload(&input.payload)?;
        input.namespace = policy::namespace_of(&input.namespace).to_owned();
        sshsig::check_namespace(&input.namespace)?;
        if input
            .ttl
            .is_some_and(|ttl| !(1..=policy::MAX_PENDING_TTL).contains(&ttl))
        {
            return Err(Error::Invalid {
                field: "ttl",
                reason: "is at most 30 days".into(),
            });
        }
        self.quotas.charge(caller.id(), Rated::Signatures)?;
        let key = self
            .store
            .signing_key(&input.key_id)?
            .ok_or_else(|| Error::UnknownKey(input.key_id.clone()))?;
        let authorizations = self.store.authorizations_of_key(&key.key_id)?;
        let request = SignRequest {
            requester: caller.id(),
            namespace: &input.namespace,
            metadata: &input.metadata,
            context: &input.context,
        };
        let decision = policy::decide(key.facts(), &authorizations, &request, time::now());
        let digest: [u8; 64] = Sha512::digest(&input.payload).into();

        let mut entry = self.entry(caller, Action::Sign, Outcome::default());
        entry.key_id = Some(key.key_id.clone());
        entry.namespace = Some(input.namespace.clone());
        entry.payload_sha512 = Some(crate::hex::encode(&digest));
        entry.metadata_sha256 = Some(metadata_hash(&input.metadata));
        entry.rules = rules_summary(decision.evaluated());
        // The owner reads about every use of the key, but not about strangers' probes.
        if !matches!(
            decision,
            Decision::Deny {
                rule: policy::Rule::UnknownKey,
                ..
            }
        ) {
            entry.readers.push(key.owner.clone());
        }

        let soft = |id: &str| decision.soft_failures(id);
        match decision.clone() {
            Decision::Deny { rule, reason, .. } => {
                entry.result = Outcome::Denied;
                entry.reason = Some(rule.name().to_owned());
                self.record(entry).await?;
                tracing::info!(key = %key.key_id, ?rule, "signature denied");
                Err(Error::Denied { rule, reason })
            }
            Decision::Allow {
                authorization_id,
                warnings,
                ..
            } => {
                entry.result = Outcome::Signed;
                entry.authorization_id = Some(authorization_id.clone());
                entry.warnings = soft(&authorization_id);
                let index = self.record(entry.clone()).await?;
                let data = sshsig::signed_data_for_digest(&input.namespace, &digest)?;
                match self
                    .sign_recorded(&key, &authorization_id, &input.namespace, data)
                    .await
                {
                    Ok(signature) => Ok(SignOutcome::Signed(SignedView {
                        status: "signed",
                        key_id: key.key_id.clone(),
                        authorization_id,
                        namespace: signature.namespace().to_owned(),
                        public_key: key.openssh_line(),
                        fingerprint: key.fingerprint(),
                        signature: signature.to_armored(),
                        warnings,
                        audit: AuditRef::of(index),
                    })),
                    Err(error) => {
                        let mut failed = entry;
                        failed.action = Action::SignFailed;
                        failed.result = Outcome::Failed;
                        failed.reason = Some(error.code().to_owned());
                        if let Err(audit) = self.record(failed).await {
                            tracing::error!(%audit, "recording a failed signature");
                        }
                        Err(error)
                    }
                }
            }
            Decision::NeedsApproval {
                authorization_id,
                principal,
                require_signature,
                warnings,
                ..
            } => {
                let pending_id = self.new_id(IdKind::Pending).await?;
                let now = time::now();
                let request = PendingRequest {
                    pending_id: pending_id.clone(),
                    key_id: key.key_id.clone(),
                    authorization_id: authorization_id.clone(),
                    requester: caller.id().to_owned(),
                    principal: principal.clone(),
                    namespace: input.namespace.clone(),
                    payload_sha512: crate::hex::encode(&digest),
                    metadata: input.metadata.clone(),
                    context: input.context.clone(),
                    require_signature,
                    warnings: warnings.clone(),
                    requested_by_agent: caller.agent,
                    retired_link: (),
                    totp_failures: 0,
                    created_at: now,
                    expires_at: now + input.ttl.unwrap_or(self.settings.pending_ttl),
                    status: RequestStatus::Pending,
                    resolved_by: None,
                    resolved_at: None,
                    reason: None,
                    signature: None,
                    evidence: None,
                    evidence_seal: None,
                    evidence_key_id: None,
                };
                entry.action = Action::CosignRequest;
                entry.result = Outcome::Pending;
                entry.warnings = soft(&authorization_id);
                entry.authorization_id = Some(authorization_id);
                entry.pending_id = Some(pending_id.clone());
                entry.readers.push(principal);
                let index = self.record(entry).await?;
                self.store.create(&request)?;
                self.store.flush().await?;
                let approval_url = self.page_url(&pending_id, None);
                let request = HumanRequest::Signature(request);
                self.notify_deciders(&request).await?;
                let request = request.into_signature()?;
                Ok(SignOutcome::Pending(PendingCosignView::new(
                    &request,
                    approval_url,
                    AuditRef::of(index),
                )))
            }
        }
    }

    /// The key `sign` uses when it is given none, as the seed does: the caller's first active
    /// key (their own before keys granted to them, oldest first) with an active authorization
    /// of theirs that covers `namespace`.
    pub fn default_key(&self, caller: &Caller, namespace: &str) -> Result<String, Error> {
        let namespace = policy::namespace_of(namespace);
        let now = time::now();
        let mut first: Option<(bool, i64, String)> = None;
        for auth in self.store.authorizations_of_grantee(caller.id())? {
            let live = auth.revoked_at.is_none() && auth.terms.expires_at.is_none_or(|at| at > now);
            let covers = auth
                .terms
                .scopes
                .iter()
                .any(|scope| policy::namespace_of(scope) == namespace);
            if !(live && covers) {
                continue;
            }
            let Some(key) = self.store.signing_key(&auth.key_id)? else {
                continue;
            };
            if key.revoked_at.is_some() {
                continue;
            }
            let rank = (key.owner != caller.id(), key.created_at, key.key_id);
            if first.as_ref().is_none_or(|best| rank < *best) {
                first = Some(rank);
            }
        }
        first
            .map(|(_, _, key_id)| key_id)
            .ok_or_else(|| Error::NoKeyFor(namespace.to_owned()))
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
        signature.verify(policy::namespace_of(namespace), payload)?;
        let key = self.store.signing_key_by_public(signature.public_key())?;
        Ok(Verified { signature, key })
    }

    /// Has the token sign `data` with `key`, whose entry is already durable, once the key and
    /// the authorization are confirmed unrevoked.
    pub(super) async fn sign_recorded(
        &self,
        key: &SigningKeyRecord,
        authorization_id: &str,
        namespace: &str,
        data: Vec<u8>,
    ) -> Result<SshSig, Error> {
        let current = self.store.signing_key(&key.key_id)?;
        if current.as_ref().is_none_or(|k| k.revoked_at.is_some()) {
            return Err(Error::AlreadyRevoked(key.key_id.clone()));
        }
        let authorization = self.store.authorization(authorization_id)?;
        if authorization
            .as_ref()
            .is_none_or(|a| a.revoked_at.is_some())
        {
            return Err(Error::AuthorizationAlreadyRevoked(
                authorization_id.to_owned(),
            ));
        }
        let public_key = key.public_key_bytes().ok_or_else(|| super::corrupt(key))?;
        let object_id =
            ObjectId::from_hex(&key.token_object_id).ok_or_else(|| super::corrupt(key))?;
        let data = std::sync::Arc::new(data);
        let sign = |object_id: ObjectId, data: std::sync::Arc<Vec<u8>>| {
            self.token.call(move |hsm| hsm.sign(&object_id, &data))
        };
        let signature = match sign(object_id.clone(), std::sync::Arc::clone(&data)).await {
            // Made through another appliance after this token was restored: brought in from
            // the store, where appliances share one and keys may leave wrapped.
            Err(crate::hsm::Error::KeyNotFound(_)) if self.carry_in(key).await? => {
                sign(object_id, data).await?
            }
            other => other?,
        };
        Ok(SshSig::new(public_key, namespace, signature)?)
    }
}
