//! What a browser may see and do with an approval request. A page is opened either with an
//! approver's personal link (its token, compared in constant time on digests) or with a login
//! session; either way it names who may decide from there, and the decision itself is proved
//! with that approver's passkey or TOTP code, never by the link or the session alone.

use serde_json::Value;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use super::{Appliance, Authenticated, Caller, Error};
use crate::approval::decision::{Method, Verdict};
use crate::store::{ApprovalRecord, ApprovalStatus};

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

/// What a passkey prompt for a decision is bound to.
fn purpose(id: &str, verdict: Verdict) -> String {
    format!("approval:{id}:{}", verdict_word(verdict))
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

    /// The passkey prompt for deciding `id` with `verdict` from this page.
    pub async fn approval_passkey_options(
        &self,
        id: &str,
        access: Access<'_>,
        verdict: Verdict,
    ) -> Result<(String, Value), Error> {
        let page = self.page_to_decide(id, access, Method::Passkey).await?;
        self.passkey_options(&page.deciders, &purpose(id, verdict))
            .await
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
        let who: Authenticated = match proof {
            Proof::Passkey {
                ceremony,
                credential,
            } => {
                self.authenticate_passkey(&ceremony, &purpose(id, verdict), credential)
                    .await?
            }
            Proof::Totp { code } => self.authenticate_totp(&page.deciders, &code).await?,
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
        };
        self.vote(&caller, id, verdict, method, reason, page.link.as_deref())
            .await
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
