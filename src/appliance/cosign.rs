//! What a verdict does to a signature request (a co-signed `sign`, `pnd_`); the request model
//! itself is in [`requests`](super::requests).
//!
//! A request resolves once: every transition is a compare-and-swap on its record, so of
//! concurrent approvals, denials and expiries exactly one takes effect. Approval re-runs the
//! engine on the request's authorization (revocation, expiry, constraints), records the
//! approval, then releases the signature through the same path as an autonomous one (audit entry
//! first). Only the principal approves or denies; only the principal and the requester read a
//! request; anyone else is told it does not exist.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use super::requests::{HumanRequest, closed_error};
use super::{Appliance, Caller, Error};
use crate::approval::canonical;
use crate::approval::decision::Method;
use crate::approval::envelope::{self, Envelope, Signer};
use crate::audit::{Action, Outcome};
use crate::policy::{self, Decision, SignRequest};
use crate::request::{self, RequestKind, RequestStatus};
use crate::store::PendingRequest;
use crate::{sshsig, time};

/// A drawn signature and how its signer proved themselves, for an evidence envelope.
#[derive(Debug)]
pub struct Capture {
    pub image_png: Vec<u8>,
    pub method: Method,
    /// The authenticator that proved the signer (`aut_...`).
    pub authenticator: String,
    /// The client's address (the socket's, or a trusted proxy's forwarded one).
    pub signer_ip: String,
}

/// The envelope for approving `request` with `capture`, as its exact bytes.
fn evidence_envelope(
    caller: &Caller,
    request: &PendingRequest,
    capture: Capture,
) -> Result<Vec<u8>, Error> {
    envelope::check_image(&capture.image_png).map_err(|e| Error::InvalidArgument(e.to_string()))?;
    let scope = serde_json::json!({
        "namespace": request.namespace,
        "key_id": request.key_id,
        "authorization_id": request.authorization_id,
        "requester": request.requester,
        "principal": request.principal,
    });
    let metadata = canonical::with_exact_numbers(&Value::Object(request.metadata.clone()));
    let envelope = Envelope {
        version: 1,
        pending_id: request.pending_id.clone(),
        payload_hash: format!("sha512:{}", request.payload_sha512),
        scope: scope.as_object().cloned().unwrap_or_default(),
        metadata: metadata.as_object().cloned().unwrap_or_default(),
        signer: Signer {
            user_id: caller.id().to_owned(),
            authenticator: capture.authenticator,
            method: capture.method.as_str().to_owned(),
        },
        signer_ip: capture.signer_ip,
        image_hash: envelope::sha256_tag(&capture.image_png),
        signature_image: BASE64.encode(&capture.image_png),
        captured_at: time::now(),
        decision: "approved".to_owned(),
    };
    let bytes = envelope.to_bytes();
    if bytes.is_empty() {
        return Err(Error::Internal(format!(
            "request {} has no canonical envelope",
            request.pending_id
        )));
    }
    Ok(bytes)
}

impl Appliance {
    /// Checks that `caller` may decide signature request `id` now: its principal, who did not
    /// ask for it; the caller holds the request's lock. Anyone else is told it does not exist
    /// unless they asked for it.
    async fn decidable(
        &self,
        caller: &Caller,
        id: &str,
        method: Method,
    ) -> Result<PendingRequest, Error> {
        let request = match self.store.pending(id)? {
            Some(r) if r.requester == caller.id() || r.principal == caller.id() => r,
            _ => return Err(Error::UnknownRequest(id.to_owned())),
        };
        if request.principal != caller.id() {
            return Err(Error::NotPrincipal(id.to_owned()));
        }
        // One's own request is decided only when an agent's key made it, and then by a person
        // on its page: never by another key of the identity over SSH.
        let on_page = method != Method::Ssh && !caller.agent;
        if request.requester == caller.id() && !(request.requested_by_agent && on_page) {
            return Err(Error::SelfApproval(id.to_owned()));
        }
        let request = self
            .expire_held(HumanRequest::Signature(request))
            .await?
            .into_signature()?;
        match request::open(request.status, request.expires_at, time::now()) {
            Ok(()) => Ok(request),
            Err(closed) => Err(closed_error(id, RequestKind::Signature, closed)),
        }
    }

    /// Moves a pending request to `status`, if nobody resolved it first, with the evidence
    /// envelope of an approval that has one.
    fn resolve(
        &self,
        caller: &Caller,
        id: &str,
        status: RequestStatus,
        reason: Option<String>,
        evidence: Option<String>,
    ) -> Result<PendingRequest, Error> {
        self.store.update_pending(id, |mut r| {
            if r.status != RequestStatus::Pending {
                return Err(Error::AlreadyResolved {
                    id: id.to_owned(),
                    status: r.status.word(RequestKind::Signature),
                });
            }
            r.status = status;
            r.resolved_by = Some(caller.id().to_owned());
            r.resolved_at = Some(time::now());
            r.reason = reason.clone();
            r.evidence = evidence.clone();
            Ok(r)
        })
    }

    /// Approves a signature request; with a drawn signature, seals it into an evidence
    /// envelope first (required where the authorization says so). Under the request's lock,
    /// the decision's entry is durable before the request changes; the signature follows.
    pub(super) async fn approve_signature(
        &self,
        caller: &Caller,
        id: &str,
        capture: Option<Capture>,
        method: Method,
        consented: bool,
    ) -> Result<PendingRequest, Error> {
        let held = self.request_locks.hold(id).await?;
        let request = self.decidable(caller, id, method).await?;
        if request.require_signature && capture.is_none() {
            return Err(Error::SignatureRequired {
                url: self.page_url(id, None),
            });
        }
        // A legal agreement is approved only under the disclosure (`approve --confirm`; the
        // page shows it): otherwise the error carries what the person must read.
        if !consented && crate::approval::disclosure::is_legal(&request.namespace) {
            return Err(Error::ConsentRequired {
                id: request.pending_id,
                namespace: request.namespace,
                metadata: Box::new(request.metadata),
            });
        }
        let evidence = capture
            .map(|c| evidence_envelope(caller, &request, c))
            .transpose()?;
        // The terms may have changed since the request: revoked, expired, narrowed.
        let key = self
            .store
            .signing_key(&request.key_id)?
            .ok_or_else(|| Error::UnknownKey(request.key_id.clone()))?;
        let authorization: Vec<_> = self
            .store
            .authorization(&request.authorization_id)?
            .into_iter()
            .collect();
        let again = SignRequest {
            requester: &request.requester,
            namespace: &request.namespace,
            metadata: &request.metadata,
            context: &request.context,
        };
        if let Decision::Deny { rule, reason, .. } =
            policy::decide(key.facts(), &authorization, &again, time::now())
        {
            let mut entry = self.decision_entry(caller, &request, Action::Deny, Outcome::Denied);
            entry.reason = Some(rule.name().to_owned());
            self.record(entry).await?;
            self.resolve(
                caller,
                id,
                RequestStatus::Rejected,
                Some(rule.name().to_owned()),
                None,
            )?;
            self.store.flush().await?;
            return Err(Error::Denied { rule, reason });
        }
        let mut entry = self.decision_entry(caller, &request, Action::Approve, Outcome::Done);
        entry.evidence_sha256 = evidence.as_deref().map(envelope::sha256_tag);
        entry.consent = crate::approval::disclosure::is_legal(&request.namespace)
            .then(crate::approval::disclosure::tag);
        self.record(entry).await?;
        let encoded = evidence.as_ref().map(|bytes| BASE64.encode(bytes));
        let approved = self.resolve(caller, id, RequestStatus::Approved, None, encoded)?;
        self.store.flush().await?;
        drop(held);
        let approved = self.seal_evidence(caller, approved).await?;
        self.release(caller, approved).await
    }

    /// Rejects (denies) a signature request.
    pub(super) async fn reject_signature(
        &self,
        caller: &Caller,
        id: &str,
        reason: Option<String>,
        method: Method,
    ) -> Result<PendingRequest, Error> {
        let _held = self.request_locks.hold(id).await?;
        let request = self.decidable(caller, id, method).await?;
        self.record(self.decision_entry(caller, &request, Action::Deny, Outcome::Denied))
            .await?;
        let denied = self.resolve(caller, id, RequestStatus::Rejected, reason, None)?;
        self.store.flush().await?;
        Ok(denied)
    }

    /// Finishes what an approval of `request` began, if an earlier attempt was cut short:
    /// seals its evidence and makes its signature. Revoked between approval and signing, it
    /// stays approved without a signature.
    pub(super) async fn finish_signature(
        &self,
        caller: &Caller,
        request: PendingRequest,
    ) -> Result<PendingRequest, Error> {
        let request = self.seal_evidence(caller, request).await?;
        if request.status != RequestStatus::Approved || request.signature.is_some() {
            return Ok(request);
        }
        let id = request.pending_id.clone();
        match self.release(caller, request).await {
            Ok(signed) => Ok(signed),
            Err(Error::AlreadyRevoked(_) | Error::AuthorizationAlreadyRevoked(_)) => {
                self.store.pending(&id)?.ok_or(Error::UnknownRequest(id))
            }
            Err(e) => Err(e),
        }
    }

    fn decision_entry(
        &self,
        caller: &Caller,
        request: &PendingRequest,
        action: Action,
        result: Outcome,
    ) -> crate::audit::AuditEntry {
        let mut entry = self.entry(caller, action, result);
        entry.key_id = Some(request.key_id.clone());
        entry.authorization_id = Some(request.authorization_id.clone());
        entry.pending_id = Some(request.pending_id.clone());
        entry.namespace = Some(request.namespace.clone());
        entry.payload_sha512 = Some(request.payload_sha512.clone());
        entry
            .readers
            .extend([request.requester.clone(), request.principal.clone()]);
        entry
    }

    /// Has the token seal an approved request's evidence envelope, if it has one not yet
    /// sealed: the audit entry first, then the decision key signs the envelope's SHA-256.
    async fn seal_evidence(
        &self,
        caller: &Caller,
        request: PendingRequest,
    ) -> Result<PendingRequest, Error> {
        let (Some(encoded), None) = (&request.evidence, &request.evidence_seal) else {
            return Ok(request);
        };
        let bytes = BASE64.decode(encoded).map_err(|_| {
            Error::Internal(format!("request {} has a bad envelope", request.pending_id))
        })?;
        let mut entry =
            self.decision_entry(caller, &request, Action::EvidenceSeal, Outcome::Signed);
        entry.evidence_sha256 = Some(envelope::sha256_tag(&bytes));
        self.record(entry).await?;
        let hash: [u8; 32] = Sha256::digest(&bytes).into();
        let (seal, kid) = self
            .sign_with_decision_key(envelope::seal_message(&hash))
            .await?;
        let sealed = self.store.update_pending(&request.pending_id, |mut r| {
            r.evidence_seal.get_or_insert_with(|| seal.clone());
            r.evidence_key_id.get_or_insert_with(|| kid.clone());
            Ok::<_, Error>(r)
        })?;
        self.store.flush().await?;
        Ok(sealed)
    }

    /// Signs an approved request: its audit entry first, then the token; the signature is
    /// stored in the request. Ed25519 is deterministic, so a retried release yields the same
    /// signature.
    async fn release(
        &self,
        caller: &Caller,
        request: PendingRequest,
    ) -> Result<PendingRequest, Error> {
        let key = self
            .store
            .signing_key(&request.key_id)?
            .ok_or_else(|| Error::UnknownKey(request.key_id.clone()))?;
        let digest: [u8; 64] = crate::hex::decode(&request.payload_sha512)
            .and_then(|d| d.try_into().ok())
            .ok_or_else(|| {
                Error::Internal(format!("request {} has no digest", request.pending_id))
            })?;
        let mut entry = self.decision_entry(caller, &request, Action::Sign, Outcome::Signed);
        entry.metadata_sha256 = Some(super::metadata_hash(&request.metadata));
        entry.readers.push(key.owner.clone());
        self.record(entry).await?;
        let data = sshsig::signed_data_for_digest(&request.namespace, &digest)?;
        let signed = self
            .sign_recorded(&key, &request.authorization_id, &request.namespace, data)
            .await;
        let signature = match signed {
            Ok(signature) => signature.to_armored(),
            Err(e @ (Error::AlreadyRevoked(_) | Error::AuthorizationAlreadyRevoked(_))) => {
                self.store.update_pending(&request.pending_id, |mut r| {
                    r.reason = Some(format!("signature withheld: {}", e.code()));
                    Ok::<_, Error>(r)
                })?;
                self.store.flush().await?;
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        let stored = self.store.update_pending(&request.pending_id, |mut r| {
            r.signature.get_or_insert_with(|| signature.clone());
            Ok::<_, Error>(r)
        })?;
        self.store.flush().await?;
        Ok(stored)
    }
}
