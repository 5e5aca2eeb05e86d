//! What a browser may see and do with an approval request. A page is opened either with an
//! approver's personal link (its token, compared in constant time on digests) or with a login
//! session; either way it names who may decide from there, and the decision itself is proved
//! with that approver's passkey or TOTP code, never by the link or the session alone.

use serde_json::Value;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use super::cosign::{Capture, PendingView};
use super::{Appliance, Authenticated, Caller, Error};
use crate::approval::decision::{Method, Verdict};
use crate::ids::IdKind;
use crate::negotiation::{OfferRecord, OfferType};
use crate::store::{
    ApprovalRecord, ApprovalStatus, PendingRequest, PendingStatus, SigningKeyRecord,
};

/// How the browser reached the page.
#[derive(Debug, Clone, Copy)]
pub enum Access<'a> {
    /// An approver's personal link; the token from its query string.
    Link(&'a str),
    /// A login session's user.
    Session(&'a str),
}

/// A request as its page shows it.
#[derive(Debug, Clone)]
pub struct ApprovalPage {
    pub request: ApprovalRecord,
    /// Who may decide from this page now (empty once they have, or the request is closed).
    pub deciders: Vec<String>,
    /// Whose page it is: the link's approver, or the session's user.
    pub viewer: String,
    /// The link's digest when the page was opened with one.
    link: Option<String>,
    /// Whether the personal link was already spent by its approver's vote.
    pub link_spent: bool,
}

/// How the approver proves themselves for a decision.
#[derive(Debug)]
pub enum Proof {
    Passkey { ceremony: String, credential: Value },
    Totp { code: String },
}

impl Proof {
    pub fn method(&self) -> Method {
        match self {
            Proof::Passkey { .. } => Method::Passkey,
            Proof::Totp { .. } => Method::Totp,
        }
    }
}

fn digest(token: &str) -> String {
    crate::hex::encode(&Sha256::digest(token.as_bytes()))
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

impl Appliance {
    /// The page for request `id`, as `access` may see it; anyone else is told it does not exist.
    pub async fn approval_page_for(
        &self,
        id: &str,
        access: Access<'_>,
    ) -> Result<ApprovalPage, Error> {
        let unknown = || Error::UnknownRequest(id.to_owned());
        let request = self.store.approval(id)?.ok_or_else(unknown)?;
        let request = self.settle_approval(request).await?;
        let (deciders, viewer, link, link_spent) = match access {
            Access::Link(token) => {
                let wanted = digest(token);
                let link = request
                    .links
                    .iter()
                    .find(|l| bool::from(l.token_sha256.as_bytes().ct_eq(wanted.as_bytes())))
                    .ok_or_else(unknown)?;
                let spent = link.used_at.is_some();
                let deciders = if request.awaits(&link.approver) && !spent {
                    vec![link.approver.clone()]
                } else {
                    Vec::new()
                };
                (deciders, link.approver.clone(), Some(wanted), spent)
            }
            Access::Session(user) => {
                if request.owner != user && !request.approvers.iter().any(|a| a == user) {
                    return Err(unknown());
                }
                let deciders = if request.awaits(user) {
                    vec![user.to_owned()]
                } else {
                    Vec::new()
                };
                (deciders, user.to_owned(), None, false)
            }
        };
        Ok(ApprovalPage {
            request,
            deciders,
            viewer,
            link,
            link_spent,
        })
    }

    /// The passkey prompt for deciding request `id` (an approval request or a co-signed one)
    /// with `verdict`, offering the passkeys of those who may decide it from this page.
    pub async fn decision_passkey_options(
        &self,
        id: &str,
        access: Access<'_>,
        verdict: Verdict,
    ) -> Result<(String, Value), Error> {
        let deciders = if IdKind::Pending.matches(id) {
            self.pending_to_decide(id, access).await?.deciders
        } else {
            self.page_to_decide(id, access, Method::Passkey)
                .await?
                .deciders
        };
        self.passkey_options(&deciders, &purpose(id, verdict)).await
    }

    /// A decision made in the browser: the proof names the approver, who must be one this page
    /// lets decide; a personal link is spent by the vote.
    pub async fn decide_in_browser(
        &self,
        id: &str,
        access: Access<'_>,
        verdict: Verdict,
        proof: Proof,
        reason: Option<String>,
    ) -> Result<ApprovalRecord, Error> {
        let method = proof.method();
        let page = self.page_to_decide(id, access, method).await?;
        let (caller, _) = self
            .prove(proof, &purpose(id, verdict), &page.deciders)
            .await?;
        self.vote(&caller, id, verdict, method, reason, page.link.as_deref())
            .await
    }

    /// Checks a proof made for `purpose`; the one who made it must be among `deciders`.
    /// Returns them as a caller (their "key" is the authenticator) and the authenticator's id.
    async fn prove(
        &self,
        proof: Proof,
        purpose: &str,
        deciders: &[String],
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
            Proof::Totp { code } => self.authenticate_totp(deciders, &code).await?,
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

    /// The page, if someone may decide from it by `method`.
    async fn page_to_decide(
        &self,
        id: &str,
        access: Access<'_>,
        method: Method,
    ) -> Result<ApprovalPage, Error> {
        let page = self.approval_page_for(id, access).await?;
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
        if page.link_spent {
            return Err(Error::LinkSpent);
        }
        if page.deciders.is_empty() {
            return Err(Error::AlreadyVoted(id.to_owned()));
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
    pub viewer: String,
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
    /// A co-signed request's page, as `access` may see it; anyone else is told it does not exist.
    pub async fn pending_page_for(
        &self,
        id: &str,
        access: Access<'_>,
    ) -> Result<PendingPage, Error> {
        let unknown = || Error::UnknownRequest(id.to_owned());
        let request = self.store.pending(id)?.ok_or_else(unknown)?;
        let viewer = match access {
            Access::Link(token) => {
                let wanted = digest(token);
                if !bool::from(
                    wanted
                        .as_bytes()
                        .ct_eq(request.approval_token_sha256.as_bytes()),
                ) {
                    return Err(unknown());
                }
                request.principal.clone()
            }
            Access::Session(user) if user == request.principal || user == request.requester => {
                user.to_owned()
            }
            Access::Session(_) => return Err(unknown()),
        };
        let request = self.expire_if_due(request).await?;
        let deciders = if request.status == PendingStatus::Pending
            && viewer == request.principal
            && request.principal != request.requester
        {
            vec![request.principal.clone()]
        } else {
            Vec::new()
        };
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
            viewer,
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
    pub async fn decide_pending_in_browser(
        &self,
        id: &str,
        access: Access<'_>,
        verdict: Verdict,
        proof: Proof,
        reason: Option<String>,
        drawn: Option<(Vec<u8>, String)>,
    ) -> Result<PendingView, Error> {
        let method = proof.method();
        let page = self.pending_to_decide(id, access).await?;
        if verdict == Verdict::Approved && page.request.require_signature && drawn.is_none() {
            return Err(Error::SignatureRequired {
                url: self.approval_url(id),
            });
        }
        // A bad drawing is refused before the proof is spent.
        if let Some((png, _)) = &drawn {
            crate::approval::envelope::check_image(png)
                .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        }
        let (caller, authenticator) = self
            .prove(proof, &purpose(id, verdict), &page.deciders)
            .await?;
        match verdict {
            Verdict::Approved => {
                let capture = drawn.map(|(image_png, signer_ip)| Capture {
                    image_png,
                    method,
                    authenticator,
                    signer_ip,
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
    async fn pending_to_decide(&self, id: &str, access: Access<'_>) -> Result<PendingPage, Error> {
        let page = self.pending_page_for(id, access).await?;
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
