//! What a browser may see and do with a request. A page's address is a pointer, never a
//! credential: whoever holds it sees the request (its requester chose to share it), and only
//! the named approver's own proof decides it: a passkey assertion made for this request and this
//! verdict, or a TOTP code, counted durably per approver and per request (see
//! [`Appliance::authenticate_totp`]). A login session only says whose page it is.

use serde_json::Value;

use super::requests::{Credential, HumanRequest, check_open, view};
use super::{Appliance, Authenticated, Caller, Error};
use crate::approval::decision::{Method, Verdict};
use crate::negotiation::{OfferRecord, OfferType};
use crate::request::{RequestId, RequestKind, RequestStatus};
use crate::store::REQUEST_TOTP_BUDGET;
use crate::views::{PublicKeyView, RequestView};

/// A request as its page shows it.
#[derive(Debug, Clone)]
pub struct RequestPage {
    pub(super) held: HumanRequest,
    pub request: RequestView,
    pub status: RequestStatus,
    /// Who may decide from this page now: those it still waits for (only the viewer, when one
    /// of them is logged in; nobody, when someone else is).
    pub deciders: Vec<String>,
    /// The logged-in user, if any.
    pub viewer: Option<String>,
    /// Who asked, in words: a user, or an API key's label and id and its owner.
    pub requested_by: String,
    /// For a signature request: what would be signed, and under which terms.
    pub signing: Option<SigningTerms>,
}

/// What a signature request's page shows besides the request.
#[derive(Debug, Clone, Default)]
pub struct SigningTerms {
    /// The signing key.
    pub key: Option<PublicKeyView>,
    /// The authorization the request was made under, with its terms.
    pub authorized: Option<crate::policy::Authorization>,
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

/// What a passkey prompt for a decision is bound to (ids of either kind never collide).
fn purpose(id: &RequestId, verdict: Verdict) -> String {
    let word = match verdict {
        Verdict::Approved => "approved",
        Verdict::Rejected => "rejected",
    };
    format!("decide:{id}:{word}")
}

impl Appliance {
    /// Request `id`'s page; `viewer` is the logged-in user, if any.
    pub async fn page(&self, id: &str, viewer: Option<&str>) -> Result<RequestPage, Error> {
        let parsed = RequestId::parse(id).ok_or_else(|| Error::UnknownRequest(id.to_owned()))?;
        self.page_of(&parsed, viewer).await
    }

    async fn page_of(&self, id: &RequestId, viewer: Option<&str>) -> Result<RequestPage, Error> {
        let request = self.settle(self.stored(id)?).await?;
        let waiting = request.waiting_for();
        let deciders = match viewer {
            Some(viewer) => waiting.into_iter().filter(|w| w == viewer).collect(),
            None => waiting,
        };
        let (requested_by, signing) = match &request {
            HumanRequest::Approval(r) => {
                // `api_key` names the credential that asked: an API key, or an SSH key.
                let by = match self.store.api_key(&r.api_key)? {
                    Some(key) => format!("{} (API key {}) for {}", key.label, key.id, r.owner),
                    None if r.api_key.starts_with("SHA256:") => {
                        format!("{} (SSH key {})", r.owner, r.api_key)
                    }
                    None => r.owner.clone(),
                };
                (by, None)
            }
            HumanRequest::Signature(r) => {
                let authorized = self.store.authorization(&r.authorization_id)?;
                let agreed = match r.metadata.get("negotiation_id").and_then(Value::as_str) {
                    Some(negotiation) => self.agreed_terms(negotiation, &r.requester)?,
                    None => None,
                };
                let terms = SigningTerms {
                    key: self
                        .store
                        .signing_key(&r.key_id)?
                        .as_ref()
                        .map(PublicKeyView::from),
                    authorized,
                    agreed,
                };
                (r.requester.clone(), Some(terms))
            }
        };
        Ok(RequestPage {
            request: view(&request, self.page_url(request.id(), None)),
            status: request.status(),
            held: request,
            deciders,
            viewer: viewer.map(str::to_owned),
            requested_by,
            signing,
        })
    }

    /// The passkey prompt for deciding request `id` with `verdict`, offering the passkeys of
    /// those who may decide it from this page (of `approver` alone, when the page names one).
    pub async fn decision_passkey_options(
        &self,
        id: &str,
        viewer: Option<&str>,
        approver: Option<&str>,
        verdict: Verdict,
        from: std::net::IpAddr,
    ) -> Result<(String, Value), Error> {
        let parsed = RequestId::parse(id).ok_or_else(|| Error::UnknownRequest(id.to_owned()))?;
        let mut deciders = self
            .page_to_decide(&parsed, viewer, Method::Passkey)
            .await?
            .deciders;
        if let Some(approver) = approver {
            deciders.retain(|d| d == approver);
        }
        self.passkey_options(&deciders, &purpose(&parsed, verdict), from)
            .await
    }

    /// The page, if someone may decide from it by `method` now.
    pub(super) async fn page_to_decide(
        &self,
        id: &RequestId,
        viewer: Option<&str>,
        method: Method,
    ) -> Result<RequestPage, Error> {
        let page = self.page_of(id, viewer).await?;
        check_open(&page.held, crate::time::now())?;
        if page.deciders.is_empty() {
            let request = &page.held;
            return Err(match (request, viewer) {
                (HumanRequest::Signature(_), _) => Error::NotPrincipal(id.to_string()),
                (HumanRequest::Approval(r), Some(v))
                    if !r.votes.iter().any(|x| x.approver == v) =>
                {
                    Error::Forbidden(format!(
                        "you are logged in as someone who may not decide request {id}"
                    ))
                }
                _ => Error::AlreadyVoted(id.to_string()),
            });
        }
        if !page.held.methods().contains(&method) {
            return Err(Error::MethodNotAllowed {
                method: method.as_str(),
                url: self.page_url(id.as_str(), None),
            });
        }
        Ok(page)
    }

    /// Checks a credential shown on `page` for deciding it with `verdict`; the one who made it
    /// must be among the page's deciders. Returns them as a caller (their "key" is the
    /// authenticator) and the authenticator's id.
    pub(super) async fn prove(
        &self,
        credential: Credential,
        id: &RequestId,
        verdict: Verdict,
        page: &RequestPage,
        client: &str,
    ) -> Result<(Caller, String), Error> {
        let method = credential.method();
        let who: Authenticated = match credential {
            Credential::Passkey {
                ceremony,
                credential,
            } => {
                self.authenticate_passkey(&ceremony, &purpose(id, verdict), credential)
                    .await?
            }
            Credential::Totp { approver, code } => {
                self.prove_totp(&approver, &code, page, client).await?
            }
        };
        if !page.deciders.contains(&who.user_id) {
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
            // A passkey or an authenticator app is a person's.
            agent: false,
        };
        Ok((caller, who.authenticator_id))
    }

    /// A TOTP code for `approver` on `page`'s request: the request's own budget first, then
    /// the approver's; a wrong code counts against both.
    async fn prove_totp(
        &self,
        approver: &str,
        code: &str,
        page: &RequestPage,
        client: &str,
    ) -> Result<Authenticated, Error> {
        let request = &page.held;
        if !page.deciders.iter().any(|d| d == approver) {
            return Err(Error::AuthenticationFailed(format!(
                "{approver} may not decide this request here"
            )));
        }
        if request.totp_failures() >= REQUEST_TOTP_BUDGET {
            return Err(Error::RequestTotpClosed(request.id().to_owned()));
        }
        let outcome = self
            .authenticate_totp(approver, code, request.id(), client, &request.parties())
            .await;
        if matches!(
            outcome,
            Err(Error::AuthenticationFailed(_) | Error::TotpClosed { .. } | Error::TotpRetired(_))
        ) {
            self.count_request_totp_failure(request).await?;
        }
        outcome
    }

    /// Counts a wrong TOTP code against `request`, durably.
    async fn count_request_totp_failure(&self, request: &HumanRequest) -> Result<(), Error> {
        match request.kind() {
            RequestKind::Signature => {
                self.store.update_pending(request.id(), |mut r| {
                    r.totp_failures += 1;
                    Ok::<_, Error>(r)
                })?;
            }
            RequestKind::Approval => {
                self.store.update_approval(request.id(), |mut r| {
                    r.totp_failures += 1;
                    Ok::<_, Error>(r)
                })?;
            }
        }
        self.store.flush().await?;
        Ok(())
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
}
