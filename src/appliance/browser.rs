//! What a browser may see and do with a request. A page's address is a pointer, never a
//! credential: whoever holds it sees the request (its requester chose to share it), and only
//! the named approver's own proof decides it: a passkey assertion made for this request and this
//! verdict, or a TOTP code, counted durably per approver and per request (see
//! [`Appliance::authenticate_totp`]). A login session only says whose page it is.

use serde_json::Value;

use super::cosign::{Capture, PendingView};
use super::{Appliance, Authenticated, Caller, Error};
use crate::approval::decision::{Method, Verdict};
use crate::ids::IdKind;
use crate::negotiation::{OfferRecord, OfferType};
use crate::store::{
    ApprovalRecord, ApprovalStatus, PendingRequest, PendingStatus, REQUEST_TOTP_BUDGET,
    SigningKeyRecord,
};

/// A request as its page shows it.
#[derive(Debug, Clone)]
pub struct ApprovalPage {
    pub request: ApprovalRecord,
    /// Who may decide from this page now: the approvers it still waits for (only the viewer,
    /// when a logged-in approver views it; nobody, when someone else is logged in).
    pub deciders: Vec<String>,
    /// The logged-in user, if any.
    pub viewer: Option<String>,
}

/// How the approver proves themselves for a decision.
#[derive(Debug)]
pub enum Proof {
    Passkey {
        ceremony: String,
        credential: Value,
    },
    /// A code from `approver`'s authenticator app.
    Totp {
        approver: String,
        code: String,
    },
}

impl Proof {
    pub fn method(&self) -> Method {
        match self {
            Proof::Passkey { .. } => Method::Passkey,
            Proof::Totp { .. } => Method::Totp,
        }
    }
}

/// What a passkey prompt for a decision is bound to (ids of either kind never collide).
fn purpose(id: &str, verdict: Verdict) -> String {
    format!("decide:{id}:{}", verdict_word(verdict))
}

fn verdict_word(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Approved => "approved",
        Verdict::Rejected => "rejected",
    }
}

/// Who may decide from a page: those `waiting`, narrowed to the viewer when one is logged in.
fn deciders_for(waiting: Vec<String>, viewer: Option<&str>) -> Vec<String> {
    match viewer {
        Some(viewer) => waiting.into_iter().filter(|w| w == viewer).collect(),
        None => waiting,
    }
}

/// The request a decision is made on, as a proof needs it.
struct Decided<'a> {
    id: &'a str,
    /// Wrong TOTP codes this request has seen.
    totp_failures: u32,
    /// Who reads the audit entries of wrong codes besides the approver.
    readers: Vec<String>,
    /// The client's address, for those entries.
    client: &'a str,
}

impl Appliance {
    /// The page for approval request `id`; `viewer` is the logged-in user, if any.
    pub async fn approval_page_for(
        &self,
        id: &str,
        viewer: Option<&str>,
    ) -> Result<ApprovalPage, Error> {
        let unknown = || Error::UnknownRequest(id.to_owned());
        if !IdKind::Approval.matches(id) {
            return Err(unknown());
        }
        let request = self.store.approval(id)?.ok_or_else(unknown)?;
        let request = self.settle_approval(request).await?;
        let waiting = request
            .approvers
            .iter()
            .filter(|a| request.awaits(a))
            .cloned()
            .collect();
        Ok(ApprovalPage {
            deciders: deciders_for(waiting, viewer),
            viewer: viewer.map(str::to_owned),
            request,
        })
    }

    /// The passkey prompt for deciding request `id` (an approval request or a co-signed one)
    /// with `verdict`, offering the passkeys of those who may decide it from this page (of
    /// `approver` alone, when the page names one).
    pub async fn decision_passkey_options(
        &self,
        id: &str,
        viewer: Option<&str>,
        approver: Option<&str>,
        verdict: Verdict,
    ) -> Result<(String, Value), Error> {
        let mut deciders = if IdKind::Pending.matches(id) {
            self.pending_to_decide(id, viewer).await?.deciders
        } else {
            self.page_to_decide(id, viewer, Method::Passkey)
                .await?
                .deciders
        };
        if let Some(approver) = approver {
            deciders.retain(|d| d == approver);
        }
        self.passkey_options(&deciders, &purpose(id, verdict)).await
    }

    /// A decision made in the browser: the proof names the approver, who must be one this page
    /// lets decide.
    pub async fn decide_in_browser(
        &self,
        id: &str,
        viewer: Option<&str>,
        verdict: Verdict,
        proof: Proof,
        reason: Option<String>,
        client: &str,
    ) -> Result<ApprovalRecord, Error> {
        let method = proof.method();
        let page = self.page_to_decide(id, viewer, method).await?;
        let mut readers = page.request.approvers.clone();
        readers.push(page.request.owner.clone());
        let decided = Decided {
            id,
            totp_failures: page.request.totp_failures,
            readers,
            client,
        };
        let (caller, _) = self
            .prove(proof, &purpose(id, verdict), &page.deciders, &decided)
            .await?;
        self.vote(&caller, id, verdict, method, reason).await
    }

    /// Checks a proof made for `purpose`; the one who made it must be among `deciders`.
    /// Returns them as a caller (their "key" is the authenticator) and the authenticator's id.
    async fn prove(
        &self,
        proof: Proof,
        purpose: &str,
        deciders: &[String],
        request: &Decided<'_>,
    ) -> Result<(Caller, String), Error> {
        let method = proof.method();
        let who: Authenticated = match proof {
            Proof::Passkey {
                ceremony,
                credential,
            } => {
                self.authenticate_passkey(&ceremony, purpose, credential)
                    .await?
            }
            Proof::Totp { approver, code } => {
                self.prove_totp(&approver, &code, deciders, request).await?
            }
        };
        if !deciders.contains(&who.user_id) {
            return Err(Error::AuthenticationFailed(
                "that authenticator belongs to someone who may not decide here".into(),
            ));
        }
        let user = self.store.user(&who.user_id)?.ok_or_else(|| {
            Error::Internal(format!("authenticator of missing user {}", who.user_id))
        })?;
        let caller = Caller {
            user,
            fingerprint: format!("{}:{}", method.as_str(), who.authenticator_id),
        };
        Ok((caller, who.authenticator_id))
    }

    /// A TOTP code for `approver` on `request`: the request's own budget first, then the
    /// approver's; a wrong code counts against both.
    async fn prove_totp(
        &self,
        approver: &str,
        code: &str,
        deciders: &[String],
        request: &Decided<'_>,
    ) -> Result<Authenticated, Error> {
        if !deciders.iter().any(|d| d == approver) {
            return Err(Error::AuthenticationFailed(format!(
                "{approver} may not decide this request here"
            )));
        }
        if request.totp_failures >= REQUEST_TOTP_BUDGET {
            return Err(Error::RequestTotpClosed(request.id.to_owned()));
        }
        let outcome = self
            .authenticate_totp(approver, code, request.id, request.client, &request.readers)
            .await;
        if matches!(
            outcome,
            Err(Error::AuthenticationFailed(_) | Error::TotpClosed { .. } | Error::TotpRetired(_))
        ) {
            self.count_request_totp_failure(request.id).await?;
        }
        outcome
    }

    /// Counts a wrong TOTP code against request `id`, durably.
    async fn count_request_totp_failure(&self, id: &str) -> Result<(), Error> {
        if IdKind::Pending.matches(id) {
            self.store.update_pending(id, |mut r| {
                r.totp_failures += 1;
                Ok::<_, Error>(r)
            })?;
        } else {
            self.store.update_approval(id, |mut r| {
                r.totp_failures += 1;
                Ok::<_, Error>(r)
            })?;
        }
        self.store.flush().await?;
        Ok(())
    }

    /// The page, if someone may decide from it by `method`.
    async fn page_to_decide(
        &self,
        id: &str,
        viewer: Option<&str>,
        method: Method,
    ) -> Result<ApprovalPage, Error> {
        let page = self.approval_page_for(id, viewer).await?;
        match page.request.status {
            ApprovalStatus::Pending => {}
            ApprovalStatus::Expired => return Err(Error::RequestExpired(id.to_owned())),
            status => {
                return Err(Error::AlreadyResolved {
                    id: id.to_owned(),
                    status: status.as_str(),
                });
            }
        }
        if page.deciders.is_empty() {
            let voted = viewer.is_some_and(|v| page.request.votes.iter().any(|x| x.approver == v));
            return Err(match viewer {
                Some(_) if !voted => Error::Forbidden(format!(
                    "you are logged in as someone who may not decide request {id}"
                )),
                _ => Error::AlreadyVoted(id.to_owned()),
            });
        }
        if !page.request.methods.contains(&method) {
            return Err(Error::MethodNotAllowed {
                method: method.as_str(),
                url: self.approval_page(id),
            });
        }
        Ok(page)
    }
}

/// A co-signed request as its page shows it, to its principal or its requester.
#[derive(Debug, Clone)]
pub struct PendingPage {
    pub request: PendingRequest,
    /// The principal, while they may decide from this page.
    pub deciders: Vec<String>,
    pub viewer: Option<String>,
    /// The signing key.
    pub key: Option<SigningKeyRecord>,
    /// The authorization's terms: constraints and rules, as `authorizations` shows them.
    pub authorized: Value,
    /// The negotiation the request names (`metadata.negotiation_id`, one its requester is a
    /// party to): the terms on the table, and whether they were accepted.
    pub agreed: Option<AgreedTerms>,
}

/// The terms of the negotiation a co-signed request names.
#[derive(Debug, Clone)]
pub struct AgreedTerms {
    pub negotiation_id: String,
    /// The offer whose terms stand: the accepted one, or the latest.
    pub offer: OfferRecord,
    /// The accepting offer, if the negotiation ended in acceptance.
    pub accepted_by: Option<OfferRecord>,
}

impl Appliance {
    /// A co-signed request's page; `viewer` is the logged-in user, if any.
    pub async fn pending_page_for(
        &self,
        id: &str,
        viewer: Option<&str>,
    ) -> Result<PendingPage, Error> {
        let unknown = || Error::UnknownRequest(id.to_owned());
        if !IdKind::Pending.matches(id) {
            return Err(unknown());
        }
        let request = self.store.pending(id)?.ok_or_else(unknown)?;
        let request = self.expire_if_due(request).await?;
        let waiting =
            if request.status == PendingStatus::Pending && request.principal != request.requester {
                vec![request.principal.clone()]
            } else {
                Vec::new()
            };
        let deciders = deciders_for(waiting, viewer);
        let authorized = self
            .store
            .authorization(&request.authorization_id)?
            .map_or(Value::Null, |a| crate::policy::authorization_json(&a));
        let agreed = match request
            .metadata
            .get("negotiation_id")
            .and_then(Value::as_str)
        {
            Some(negotiation) => self.agreed_terms(negotiation, &request.requester)?,
            None => None,
        };
        Ok(PendingPage {
            key: self.store.signing_key(&request.key_id)?,
            request,
            deciders,
            viewer: viewer.map(str::to_owned),
            authorized,
            agreed,
        })
    }

    /// The terms of `negotiation`, if `requester` is one of its parties.
    fn agreed_terms(
        &self,
        negotiation: &str,
        requester: &str,
    ) -> Result<Option<AgreedTerms>, Error> {
        let Some((_, record)) = self.store.negotiation(negotiation)? else {
            return Ok(None);
        };
        if !record.parties.iter().any(|p| p.user_id == requester) {
            return Ok(None);
        }
        let mut offers = self.store.offers(negotiation)?;
        let Some(last) = offers.pop() else {
            return Ok(None);
        };
        Ok(Some(if last.offer_type == OfferType::Accept {
            AgreedTerms {
                negotiation_id: negotiation.to_owned(),
                offer: offers.pop().unwrap_or_else(|| last.clone()),
                accepted_by: Some(last),
            }
        } else {
            AgreedTerms {
                negotiation_id: negotiation.to_owned(),
                offer: last,
                accepted_by: None,
            }
        }))
    }

    /// The principal's decision on a co-signed request, made in the browser; an approval may
    /// carry a drawn signature (and must, where the authorization says so), sealed into an
    /// evidence envelope with `signer_ip`.
    #[allow(clippy::too_many_arguments)]
    pub async fn decide_pending_in_browser(
        &self,
        id: &str,
        viewer: Option<&str>,
        verdict: Verdict,
        proof: Proof,
        reason: Option<String>,
        drawn: Option<Vec<u8>>,
        client: &str,
    ) -> Result<PendingView, Error> {
        let method = proof.method();
        let page = self.pending_to_decide(id, viewer).await?;
        if verdict == Verdict::Approved && page.request.require_signature && drawn.is_none() {
            return Err(Error::SignatureRequired {
                url: self.approval_page(id),
            });
        }
        // A bad drawing is refused before the proof is spent.
        if let Some(png) = &drawn {
            crate::approval::envelope::check_image(png)
                .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        }
        let decided = Decided {
            id,
            totp_failures: page.request.totp_failures,
            readers: vec![
                page.request.principal.clone(),
                page.request.requester.clone(),
            ],
            client,
        };
        let (caller, authenticator) = self
            .prove(proof, &purpose(id, verdict), &page.deciders, &decided)
            .await?;
        match verdict {
            Verdict::Approved => {
                let capture = drawn.map(|image_png| Capture {
                    image_png,
                    method,
                    authenticator,
                    signer_ip: client.to_owned(),
                });
                self.approve_with(&caller, id, capture).await
            }
            Verdict::Rejected => {
                if reason.as_ref().is_some_and(|r| r.len() > 500) {
                    return Err(Error::InvalidArgument("reason is at most 500 bytes".into()));
                }
                self.deny(&caller, id, reason).await
            }
        }
    }

    /// The page, if its principal may decide from it now.
    async fn pending_to_decide(
        &self,
        id: &str,
        viewer: Option<&str>,
    ) -> Result<PendingPage, Error> {
        let page = self.pending_page_for(id, viewer).await?;
        match page.request.status {
            PendingStatus::Pending if page.deciders.is_empty() => {
                Err(Error::NotPrincipal(id.to_owned()))
            }
            PendingStatus::Pending => Ok(page),
            PendingStatus::Expired => Err(Error::RequestExpired(id.to_owned())),
            status => Err(Error::AlreadyResolved {
                id: id.to_owned(),
                status: super::status_name(status),
            }),
        }
    }
}
